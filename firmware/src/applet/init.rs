//! The applets around PID 1: `init` (also run as `/sbin/init`), and the
//! clients of its control socket: `status`, `log`, `poweroff`, `reboot`,
//! `halt`.
//! This module parses command lines and prints; the work is in
//! `crate::init`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::init::control::{self, Halt, Request, Response};
use crate::init::pid1;

fn parse_config_flag(applet: &str, args: Vec<OsString>) -> Result<Option<PathBuf>, ExitCode> {
    let mut p = lexopt::Parser::from_args(args);
    let mut config = None;
    loop {
        match p.next() {
            Ok(None) => return Ok(config),
            Ok(Some(lexopt::Arg::Long("config"))) => match p.value() {
                Ok(v) => config = Some(PathBuf::from(v)),
                Err(e) => return Err(super::usage_error(applet, e)),
            },
            Ok(Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h'))) => {
                println!("Usage: pocobelle {applet} [--config FILE]");
                return Err(ExitCode::SUCCESS);
            }
            Ok(Some(other)) => return Err(super::usage_error(applet, other.unexpected())),
            Err(e) => return Err(super::usage_error(applet, e)),
        }
    }
}

/// `pocobelle init`: PID 1. Run as any other pid it refuses, unless
/// `POCOBELLE_INIT_FORCE=1` (for experiments in a container).
pub fn run_init(args: Vec<OsString>) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "Usage: init   (as PID 1, the kernel's init=/sbin/init)\nBoots the board, supervises dns and mail, shuts down on poweroff/reboot."
        );
        return ExitCode::SUCCESS;
    }
    if std::process::id() != 1 && std::env::var("POCOBELLE_INIT_FORCE").as_deref() != Ok("1") {
        eprintln!(
            "pocobelle init: not PID 1; use `pocobelle status`, `poweroff` or `reboot` to talk to init"
        );
        return ExitCode::from(1);
    }
    pid1::run()
}

pub fn run_status(args: Vec<OsString>) -> ExitCode {
    let config = match parse_config_flag("status", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run_dir = pid1::run_dir_for_clients(config.as_deref());
    match control::call(&run_dir, &Request::Status) {
        Ok(Response::Status(r)) => {
            print!("{}", control::render(&r));
            let figures = service_figures(&run_dir);
            if figures != control::ServiceFigures::default() {
                print!("\n{}", control::render_figures(&figures));
            }
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("pocobelle status: unexpected answer from init: {other:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pocobelle status: {e}");
            ExitCode::from(1)
        }
    }
}

/// How long `status` waits for each service's own socket.
const FIGURES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks dns and mail over their control sockets in `run_dir` for their
/// figures; a service that is not running or does not answer within
/// [`FIGURES_TIMEOUT`] is left out.
fn service_figures(run_dir: &std::path::Path) -> control::ServiceFigures {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return control::ServiceFigures::default();
    };
    rt.block_on(async {
        use crate::dns::stats as d;
        use crate::mail::service as m;
        let dns_sock = run_dir.join(crate::dns::SOCKET_NAME);
        let mail_sock = run_dir.join(m::SOCKET_NAME);
        let dns = tokio::time::timeout(
            FIGURES_TIMEOUT,
            crate::control::call::<d::Request, d::Response>(&dns_sock, &d::Request::Stats),
        );
        let mail = tokio::time::timeout(
            FIGURES_TIMEOUT,
            crate::control::call::<m::Request, m::Response>(&mail_sock, &m::Request::Summary),
        );
        let (dns, mail) = tokio::join!(dns, mail);
        control::ServiceFigures {
            dns: match dns {
                Ok(Ok(d::Response::Stats(r))) => Some((r.cache_entries, r.hit_rate())),
                _ => None,
            },
            mail: match mail {
                Ok(Ok(m::Response::Summary { messages, bytes })) => Some((messages, bytes)),
                _ => None,
            },
        }
    })
}

pub fn run_log(args: Vec<OsString>) -> ExitCode {
    let config = match parse_config_flag("log", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run_dir = pid1::run_dir_for_clients(config.as_deref());
    match control::call(&run_dir, &Request::Log) {
        Ok(Response::Log(lines)) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("pocobelle log: unexpected answer from init: {other:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pocobelle log: {e}");
            ExitCode::from(1)
        }
    }
}

fn shutdown(applet: &str, how: Halt, args: Vec<OsString>) -> ExitCode {
    let config = match parse_config_flag(applet, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run_dir = pid1::run_dir_for_clients(config.as_deref());
    match control::call(&run_dir, &Request::Shutdown(how)) {
        Ok(Response::ShuttingDown(_)) => {
            println!("pocobelle {applet}: init is shutting down");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("pocobelle {applet}: unexpected answer from init: {other:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pocobelle {applet}: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn run_poweroff(args: Vec<OsString>) -> ExitCode {
    shutdown("poweroff", Halt::Poweroff, args)
}

pub fn run_reboot(args: Vec<OsString>) -> ExitCode {
    shutdown("reboot", Halt::Reboot, args)
}

pub fn run_halt(args: Vec<OsString>) -> ExitCode {
    shutdown("halt", Halt::Halt, args)
}
