//! `pocobelle mail`: runs the mail router (no argument, or `run`), or
//! talks to the running one over `<run_dir>/mail.sock`: `flush` (deliver
//! what waits, now) and `delete ID`. It owns the command line only.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::mail::service::{self, Request, Response};

const HELP: &str = "\
Usage: pocobelle mail [--config FILE] [run]
       pocobelle mail [--config FILE] flush
       pocobelle mail [--config FILE] delete ID

run      run the mail router (the default)
flush    make every queued message due now and start delivering
delete   remove one message (its 16-digit hex ID, as `mailq` shows)
";

pub fn run(args: Vec<OsString>) -> ExitCode {
    let mut path = PathBuf::from(config::DEFAULT_PATH);
    let mut words: Vec<String> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        match parser.next() {
            Ok(None) => break,
            Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            Ok(Some(lexopt::Arg::Short('c') | lexopt::Arg::Long("config"))) => match parser.value()
            {
                Ok(v) => path = v.into(),
                Err(e) => return super::usage_error("mail", e),
            },
            Ok(Some(lexopt::Arg::Value(v))) => words.push(v.to_string_lossy().into_owned()),
            Ok(Some(other)) => return super::usage_error("mail", other.unexpected()),
            Err(e) => return super::usage_error("mail", e),
        }
    }
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init("mail", config.log.level.to_filter());
    let request = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["run"] => None,
        ["flush"] => Some(Request::Flush),
        ["delete", id] => match u64::from_str_radix(id, 16) {
            Ok(id) => Some(Request::Delete(id)),
            Err(_) => return super::usage_error("mail", format!("bad message id {id:?}")),
        },
        _ => return super::usage_error("mail", format!("unexpected arguments {words:?}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mail: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match request {
        None => match rt.block_on(service::run(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(req) => {
            let sock = service::control_socket(&config);
            match rt.block_on(crate::control::call::<Request, Response>(&sock, &req)) {
                Ok(Response::Done) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Ok(Response::Error(e)) => {
                    eprintln!("mail: {e}");
                    ExitCode::FAILURE
                }
                Ok(other) => {
                    eprintln!("mail: unexpected answer {other:?}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("mail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
