//! `pocobelle mail`: runs the mail router (no argument, or `run`), or
//! talks to the running one over `<run_dir>/mail.sock`: `flush` (deliver
//! what waits, now) and `delete ID`. It owns the command line only.

use std::ffi::OsString;
use std::process::ExitCode;

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
    let args = match super::parse_args("mail", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let path = args.config_path();
    let words: Vec<String> = args
        .words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let config = match super::load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
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
