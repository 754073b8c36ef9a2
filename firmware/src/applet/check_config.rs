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
line and the key.
";

pub fn run(args: Vec<OsString>) -> ExitCode {
    let mut path: Option<PathBuf> = None;
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return super::usage_error("check-config", e),
        };
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            lexopt::Arg::Short('c') | lexopt::Arg::Long("config") => match parser.value() {
                Ok(v) => path = Some(v.into()),
                Err(e) => return super::usage_error("check-config", e),
            },
            lexopt::Arg::Value(v) if path.is_none() => path = Some(v.into()),
            other => return super::usage_error("check-config", other.unexpected()),
        }
    }
    let path = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    match Config::load(&path) {
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
