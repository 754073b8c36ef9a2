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
