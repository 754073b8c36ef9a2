//! `pocobelle mailq` (also as `mailq`): lists the queue of the running
//! mail router with sizes, ages, next attempt and last error, and ends
//! with Postfix's summary line (`-- N Kbytes in M Requests.`, or `Mail
//! queue is empty`) that monitoring scripts parse. Exit statuses follow
//! sysexits(3) as Postfix's `postqueue -p` does. Read-only.

use std::ffi::OsString;
use std::process::ExitCode;

use super::{EX_CONFIG, EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE};
use crate::control::ControlError;
use crate::mail::service::{self, Request, Response};
use crate::mail::spool::Spool;
use crate::mail::spool::writer::QueueEntry;

const HELP: &str = "\
Usage: pocobelle mailq [--config FILE]

Lists queued messages: ID, size, age, attempts, next attempt, sender,
pending recipients and the last error. The last line is Postfix's:
\"-- N Kbytes in M Requests.\", or \"Mail queue is empty\".

Exit status: 0 listed; 69 (EX_UNAVAILABLE) the mail router is not
running; 75 (EX_TEMPFAIL) it did not answer or could not read its queue;
78 (EX_CONFIG) the configuration file is wrong.
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
    let config = match crate::config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailq: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let sock = service::control_socket(&config);
    let call = |req| rt.block_on(crate::control::call::<Request, Response>(&sock, &req));
    let q = match call(Request::List) {
        Ok(Response::Queue(q)) => q,
        Ok(Response::Error(e)) => {
            eprintln!("mailq: the mail router cannot read its queue: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
        Ok(other) => {
            eprintln!("mailq: unexpected answer {other:?}");
            return ExitCode::from(EX_SOFTWARE);
        }
        Err(e) => {
            let (text, code) = failure(&e);
            eprintln!("mailq: {text}");
            return ExitCode::from(code);
        }
    };
    // The list is bounded (MAX_LISTED); the totals come from the spool.
    let summary = match call(Request::Summary) {
        Ok(Response::Summary {
            messages, bytes, ..
        }) => Some((messages, bytes)),
        _ => None,
    };
    print!("{}", render(&q, summary, Spool::unix_now()));
    ExitCode::SUCCESS
}

/// What a failed call to the router means, and its exit status: no
/// router to connect to is EX_UNAVAILABLE (Postfix's postqueue says
/// "Queue report unavailable - mail system is down"); anything after
/// connecting is temporary.
fn failure(e: &ControlError) -> (String, u8) {
    match e {
        ControlError::Connect { .. } => (
            format!("Queue report unavailable - mail system is down ({e})"),
            EX_UNAVAILABLE,
        ),
        _ => (e.to_string(), EX_TEMPFAIL),
    }
}

/// The listing: one block per message, then Postfix's summary line
/// (Kbytes rounded down, "Request" for one), or `Mail queue is empty`.
/// `summary` is the spool's (messages, bytes); without it, the listed
/// messages are counted.
pub fn render(q: &[QueueEntry], summary: Option<(u64, u64)>, now: u64) -> String {
    use std::fmt::Write;
    if q.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>7} {:>4} {:>9}  sender",
        "ID", "size", "age", "try", "next"
    );
    for e in q {
        let next = if e.next_at <= now {
            "now".to_string()
        } else {
            format!("in {}s", e.next_at - now)
        };
        let _ = writeln!(
            out,
            "{:016X} {:>9} {:>6}s {:>4} {:>9}  <{}>",
            e.id,
            e.size,
            now.saturating_sub(e.received),
            e.attempts,
            next,
            e.from
        );
        for (_, r) in &e.pending {
            let _ = writeln!(out, "    <{r}>");
        }
        if !e.last_error.is_empty() {
            let _ = writeln!(out, "    last error: {}", e.last_error);
        }
    }
    let listed = q.len() as u64;
    let (messages, bytes) =
        summary.unwrap_or_else(|| (listed, q.iter().map(|e| e.size).sum::<u64>()));
    if messages > listed {
        let _ = writeln!(out, "(the first {listed} of {messages} are listed)");
    }
    let _ = write!(
        out,
        "\n-- {} Kbytes in {messages} Request{}.\n",
        bytes / 1024,
        if messages == 1 { "" } else { "s" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, size: u64) -> QueueEntry {
        QueueEntry {
            id,
            from: "a@b.test".into(),
            pending: vec![(0, "u@home.arpa".into())],
            size,
            received: 100,
            attempts: 2,
            next_at: 160,
            last_error: "127.0.0.1:25: connection refused".into(),
            warned: false,
            flags: Default::default(),
            extents: vec![],
        }
    }

    #[test]
    fn the_last_line_is_postfix_summary() {
        assert_eq!(render(&[], Some((0, 0)), 0), "Mail queue is empty\n");
        let one = render(&[entry(1, 5000)], Some((1, 5000)), 130);
        assert!(one.ends_with("\n\n-- 4 Kbytes in 1 Request.\n"), "{one}");
        assert!(
            one.contains("0000000000000001      5000     30s    2    in 30s  <a@b.test>\n"),
            "{one}"
        );
        assert!(
            one.contains("    <u@home.arpa>\n    last error: 127.0.0.1:25: connection refused\n")
        );
        let two = render(&[entry(1, 1000), entry(2, 100)], None, 130);
        assert!(two.ends_with("\n-- 1 Kbytes in 2 Requests.\n"), "{two}");
        // More queued than listed: a note above, totals from the spool.
        let many = render(&[entry(1, 1000)], Some((300, 10 << 20)), 130);
        assert!(
            many.ends_with("(the first 1 of 300 are listed)\n\n-- 10240 Kbytes in 300 Requests.\n"),
            "{many}"
        );
    }

    #[test]
    fn exit_statuses_follow_sysexits() {
        let down = ControlError::Connect {
            path: "/run/pocobelle/mail.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let (text, code) = failure(&down);
        assert_eq!(code, 69);
        assert!(text.starts_with("Queue report unavailable - mail system is down"));
        assert_eq!(failure(&ControlError::Timeout).1, 75);
    }
}
