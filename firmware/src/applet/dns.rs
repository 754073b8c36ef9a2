//! `pocobelle dns [--config F]` runs the DNS cache in the foreground
//! (logs to stderr); `pocobelle dns stats` and `pocobelle dns prime` talk
//! to a running one over `<run_dir>/dns.sock`. This file parses the
//! command line and starts the runtime; the service lives in `crate::dns`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::dns::stats::{Request, Response};

const HELP: &str = "\
Usage: pocobelle dns [--config FILE]          run the DNS cache (foreground)
       pocobelle dns stats [--config FILE]    cache size, hit rate, upstream RTTs, hot set
       pocobelle dns prime [--config FILE]    re-resolve the hot names now

FILE defaults to /etc/pocobelle.toml; the control socket is
<system.run_dir>/dns.sock.
";

enum Command {
    Serve,
    Stats,
    Prime,
}

pub fn run(args: Vec<OsString>) -> ExitCode {
    let mut path: Option<PathBuf> = None;
    let mut command = Command::Serve;
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return super::usage_error("dns", e),
        };
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            lexopt::Arg::Short('c') | lexopt::Arg::Long("config") => match parser.value() {
                Ok(v) => path = Some(v.into()),
                Err(e) => return super::usage_error("dns", e),
            },
            lexopt::Arg::Value(v) if v == "stats" => command = Command::Stats,
            lexopt::Arg::Value(v) if v == "prime" => command = Command::Prime,
            other => return super::usage_error("dns", other.unexpected()),
        }
    }
    let path = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init("dns", cfg.log.level.to_filter());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dns: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Serve => match rt.block_on(crate::dns::run(cfg)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Stats | Command::Prime => {
            let sock = cfg.system.run_dir.join(crate::dns::SOCKET_NAME);
            let req = match command {
                Command::Stats => Request::Stats,
                _ => Request::Prime,
            };
            match rt.block_on(crate::control::call::<Request, Response>(&sock, &req)) {
                Ok(Response::Stats(r)) => {
                    print!("{}", r.render());
                    ExitCode::SUCCESS
                }
                Ok(Response::PrimeStarted { names }) => {
                    println!("priming {names} hot names");
                    ExitCode::SUCCESS
                }
                Ok(Response::PrimeBusy) => {
                    println!("priming is already running");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dns: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
