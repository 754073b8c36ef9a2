//! `pocobelle mailq` (also as `mailq`): lists the queue of the running
//! mail router with sizes, ages, next attempt and last error. Read-only.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::mail::service::{self, Request, Response};
use crate::mail::spool::Spool;

const HELP: &str = "\
Usage: pocobelle mailq [--config FILE]

Lists queued messages: ID, size, age, attempts, next attempt, sender,
pending recipients and the last error.
";

pub fn run(args: Vec<OsString>) -> ExitCode {
    let args = match super::parse_args("mailq", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let path = args.config_path();
    if let Some(w) = args.words.first() {
        return super::usage_error("mailq", format!("unexpected argument {w:?}"));
    }
    let config = match super::load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailq: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sock = service::control_socket(&config);
    let q = match rt.block_on(crate::control::call::<Request, Response>(
        &sock,
        &Request::List,
    )) {
        Ok(Response::Queue(q)) => q,
        Ok(other) => {
            eprintln!("mailq: unexpected answer {other:?}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("mailq: {e}");
            return ExitCode::FAILURE;
        }
    };
    if q.is_empty() {
        println!("Mail queue is empty");
        return ExitCode::SUCCESS;
    }
    let now = Spool::unix_now();
    println!(
        "{:<16} {:>9} {:>7} {:>4} {:>9}  sender",
        "ID", "size", "age", "try", "next"
    );
    for e in &q {
        let next = if e.next_at <= now {
            "now".to_string()
        } else {
            format!("in {}s", e.next_at - now)
        };
        println!(
            "{:016X} {:>9} {:>6}s {:>4} {:>9}  <{}>",
            e.id,
            e.size,
            now.saturating_sub(e.received),
            e.attempts,
            next,
            e.from
        );
        for (_, r) in &e.pending {
            println!("    <{r}>");
        }
        if !e.last_error.is_empty() {
            println!("    last error: {}", e.last_error);
        }
    }
    // The list is bounded (MAX_LISTED); the count comes from the spool.
    match rt.block_on(crate::control::call::<Request, Response>(
        &sock,
        &Request::Summary,
    )) {
        Ok(Response::Summary { messages, bytes }) if messages > q.len() as u64 => println!(
            "-- {messages} message(s), {bytes} bytes; the first {} are listed",
            q.len()
        ),
        Ok(Response::Summary { messages, bytes }) => {
            println!("-- {messages} message(s), {bytes} bytes")
        }
        _ => println!("-- {} message(s)", q.len()),
    }
    ExitCode::SUCCESS
}
