//! The applets around PID 1: `init` (also run as `/sbin/init`), and the
//! clients of its control socket: `status`, `log`, `poweroff`, `reboot`,
//! `halt`, and `shutdown` (the command NUT's upsmon and other tools
//! call).
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
                Ok(Ok(m::Response::Summary {
                    messages,
                    bytes,
                    policy,
                })) => Some((messages, bytes, policy)),
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

/// What `shutdown [OPTIONS] [TIME] [MESSAGE]` asked for.
#[derive(Debug, PartialEq, Eq)]
struct ShutdownArgs {
    how: Halt,
    /// Seconds to wait before asking init (`+N` minutes; `now` is 0).
    delay_secs: u64,
    /// `-k`: only warn, do not shut down.
    warn_only: bool,
    config: Option<PathBuf>,
}

/// The longest delay `shutdown +N` accepts: a day.
const MAX_SHUTDOWN_DELAY_MINUTES: u64 = 24 * 60;

/// Parses the sysvinit/systemd `shutdown` command line as far as a board
/// needs it: `-h`/`-P` power off (the default), `-r` reboot, `-H` halt,
/// `-k` warn only, TIME `now` or `+N` (minutes); a message after TIME is
/// accepted and logged. `hh:mm` and `-c` need a clock and a pending
/// shutdown to cancel, which a board whose init shuts down at once has
/// not: they are refused with a sentence saying so.
fn parse_shutdown(args: Vec<OsString>) -> Result<ShutdownArgs, String> {
    let mut p = lexopt::Parser::from_args(args);
    let mut a = ShutdownArgs {
        how: Halt::Poweroff,
        delay_secs: 0,
        warn_only: false,
        config: None,
    };
    let mut time_seen = false;
    loop {
        let arg = match p.next() {
            Ok(None) => return Ok(a),
            Ok(Some(arg)) => arg,
            Err(e) => return Err(e.to_string()),
        };
        match arg {
            lexopt::Arg::Short('h' | 'P') | lexopt::Arg::Long("poweroff") => a.how = Halt::Poweroff,
            lexopt::Arg::Short('r') | lexopt::Arg::Long("reboot") => a.how = Halt::Reboot,
            lexopt::Arg::Short('H') | lexopt::Arg::Long("halt") => a.how = Halt::Halt,
            lexopt::Arg::Short('k') => a.warn_only = true,
            // sysvinit's "seconds between warning and kill" and "force
            // fsck" flags: init's own shutdown order applies.
            lexopt::Arg::Short('f' | 'F' | 'n') => {}
            lexopt::Arg::Short('t') => {
                p.value().map_err(|e| e.to_string())?;
            }
            lexopt::Arg::Short('c') => {
                return Err("-c: nothing to cancel (init shuts down at once)".into());
            }
            lexopt::Arg::Long("config") => {
                a.config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?));
            }
            lexopt::Arg::Value(v) if !time_seen => {
                time_seen = true;
                let v = v.to_string_lossy();
                a.delay_secs = match v.as_ref() {
                    "now" | "+0" => 0,
                    t if t.starts_with('+') => {
                        let m: u64 = t[1..]
                            .parse()
                            .map_err(|_| format!("{t}: not a time (now or +MINUTES)"))?;
                        if m > MAX_SHUTDOWN_DELAY_MINUTES {
                            return Err(format!(
                                "{t}: more than {MAX_SHUTDOWN_DELAY_MINUTES} minutes"
                            ));
                        }
                        m * 60
                    }
                    t => {
                        return Err(format!(
                            "{t}: not supported (now or +MINUTES; a wall-clock time needs a \
                             clock this board may not have yet)"
                        ));
                    }
                };
            }
            // The wall message: there are no terminals to write it to;
            // init's log says why it shut down.
            lexopt::Arg::Value(_) => {}
            other => return Err(other.unexpected().to_string()),
        }
    }
}

/// `shutdown [-h|-P|-r|-H] [-k] [now|+MINUTES] [MESSAGE]`: asks init to
/// power off, reboot or halt, as NUT's upsmon (`SHUTDOWNCMD
/// "/sbin/shutdown -h +0"`) and scripts written for other systems call it.
pub fn run_shutdown(args: Vec<OsString>) -> ExitCode {
    if args.iter().any(|a| a == "--help") {
        println!(
            "Usage: shutdown [-h|-P|-r|-H] [-k] [now|+MINUTES] [MESSAGE]\n\
             Asks init to power off (-h, -P, the default), reboot (-r) or halt (-H);\n\
             -k only says what would happen."
        );
        return ExitCode::SUCCESS;
    }
    let a = match parse_shutdown(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pocobelle shutdown: {e}");
            return ExitCode::from(64);
        }
    };
    let what = match a.how {
        Halt::Poweroff => "power off",
        Halt::Reboot => "reboot",
        Halt::Halt => "halt",
    };
    if a.warn_only {
        println!("pocobelle shutdown: would {what} (-k: nothing done)");
        return ExitCode::SUCCESS;
    }
    if a.delay_secs > 0 {
        println!(
            "pocobelle shutdown: will {what} in {} minute(s); interrupt to cancel",
            a.delay_secs / 60
        );
        std::thread::sleep(std::time::Duration::from_secs(a.delay_secs));
    }
    let mut args = Vec::new();
    if let Some(c) = a.config {
        args.push(OsString::from("--config"));
        args.push(c.into_os_string());
    }
    shutdown("shutdown", a.how, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ShutdownArgs, String> {
        parse_shutdown(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn shutdown_command_lines_as_other_tools_write_them() {
        // NUT's upsmon default SHUTDOWNCMD.
        let a = p(&["-h", "+0"]).unwrap();
        assert_eq!(
            (a.how, a.delay_secs, a.warn_only),
            (Halt::Poweroff, 0, false)
        );
        let a = p(&["-r", "now", "kernel", "update"]).unwrap();
        assert_eq!((a.how, a.delay_secs), (Halt::Reboot, 0));
        assert_eq!(p(&[]).unwrap().how, Halt::Poweroff);
        assert_eq!(p(&["-H", "now"]).unwrap().how, Halt::Halt);
        assert_eq!(p(&["-P", "+5"]).unwrap().delay_secs, 300);
        assert!(p(&["-k", "now"]).unwrap().warn_only);
        assert_eq!(p(&["-t", "5", "-h", "now"]).unwrap().how, Halt::Poweroff);
    }

    #[test]
    fn shutdown_refuses_what_it_cannot_do_with_a_reason() {
        assert!(p(&["-c"]).unwrap_err().contains("nothing to cancel"));
        assert!(p(&["-h", "23:00"]).unwrap_err().contains("not supported"));
        assert!(p(&["-h", "+x"]).unwrap_err().contains("not a time"));
        assert!(p(&["-h", "+100000"]).unwrap_err().contains("more than"));
        assert!(p(&["-z"]).is_err());
    }
}
