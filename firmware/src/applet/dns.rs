//! `pocobelle dns [--config F]` runs the DNS cache in the foreground
//! (logs to stderr); `pocobelle dns stats` and `pocobelle dns prime` talk
//! to a running one over `<run_dir>/dns.sock`. This file parses the
//! command line and starts the runtime; the service lives in `crate::dns`.

use std::ffi::OsString;
use std::process::ExitCode;

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
    let args = match super::parse_args("dns", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut command = Command::Serve;
    for w in &args.words {
        command = match w.to_str() {
            Some("stats") => Command::Stats,
            Some("prime") => Command::Prime,
            _ => return super::usage_error("dns", format!("unexpected argument {w:?}")),
        };
    }
    let path = args.config_path();
    let cfg = match super::load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
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
