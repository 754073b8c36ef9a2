//! `pocobelle check-config [FILE]`: parses and validates a configuration
//! file, prints the first error with its file, line and key, and exits
//! non-zero when the file is not valid. It never changes anything.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config};

const HELP: &str = "\
Usage: pocobelle check-config [FILE]

Validates FILE (default /etc/pocobelle.toml; --config FILE is accepted too)
and exits 0 when it is valid, 1 when it is not. Errors name the file, the
line and the key. CA and credentials files the configuration names are
read and checked too.
";

pub fn run(args: Vec<OsString>) -> ExitCode {
    let args = match super::parse_args("check-config", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut path = args.config.clone();
    for w in args.words {
        if path.is_some() {
            return super::usage_error("check-config", format!("unexpected argument {w:?}"));
        }
        path = Some(w.into());
    }
    let path = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    match Config::load(&path) {
        Ok(c) if let Err(e) = crate::tls::check_files(&c) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
