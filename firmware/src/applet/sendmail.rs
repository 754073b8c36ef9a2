//! `pocobelle sendmail` (also as `sendmail`): the command cron jobs and
//! scripts call to send mail, after Postfix's sendmail(1). It reads a
//! message on stdin as bytes (any charset, binary too) and submits it over
//! SMTP to the local mail router (the first `mail.listen` address, on
//! loopback), so that it goes through the same admission, spool writer
//! and group commit as any other message. It owns the option parsing,
//! the header section's clean-up (Bcc removed; From, Date and Message-ID
//! added when missing; recipients without a domain get `@<hostname>`) and
//! the blocking I/O of the submission; the protocol (replies, commands,
//! the transaction, the byte-clean DATA encoding: line ends to CRLF,
//! dot-stuffing) is the shared client core, [`crate::smtp::client`]. It
//! never queues anything itself: when the router does not take the
//! message, it says nothing was queued and exits with a sysexits code.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{EX_CONFIG, EX_TEMPFAIL};
use crate::config::{self, Config};
use crate::smtp::client::{
    Command, CommandError, DataEncoder, MailParams, Next, Policy, ReplyParser, ServerReply,
    Transaction,
};

/// Longest header section read (for `-t`, Bcc removal and the From,
/// Date and Message-ID checks); the body after it is streamed.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The body is read and written to the router in pieces of at most this.
const CHUNK_BYTES: usize = 32 * 1024;

const HELP: &str = "\
Usage: sendmail [-t] [-i] [-oi] [-f SENDER] [-F NAME] [-B 8BITMIME|7BIT] [--config FILE] [--] [RECIPIENT...]

Reads a message on stdin (any bytes) and hands it to the local mail router.
  -t            recipients from To, Cc and Bcc too (Bcc is removed from the message)
  -i, -oi       a line with a lone dot does not end the input
  -f, -r ADDR   envelope sender (default USER@hostname)
  -F NAME       full name for the From header added when there is none
  -B 8BITMIME   the body is 8-bit MIME (BODY=8BITMIME); -B 7BIT is the default
  -N delay,failure  accepted (what the router does anyway)
  --            ends the options: what follows are recipients
Recipients without a domain get @hostname (the aliases map root, postmaster).
Not supported: -bp (use mailq), -bs, -bd, -bi, -bv, -q (use `pocobelle mail flush`),
-R, -N with other values.
Exit: 0 queued, 64 usage, 75 not queued (router down or busy: try again),
78 bad configuration, 1 refused.
";

#[derive(Debug)]
struct Opts {
    from_headers: bool,
    dot_ends: bool,
    eight_bit: bool,
    sender: Option<String>,
    name: Option<String>,
    rcpts: Vec<String>,
    config: PathBuf,
}

/// Why the command line is refused (EX_USAGE), or `--help`.
#[derive(Debug, PartialEq)]
enum Usage {
    Help,
    Bad(String),
}

/// Options that take a value (getopt's `x:`), attached (`-fuser`) or
/// in the next argument (`-f user`), as Postfix's getopt string has them.
const WITH_VALUE: &[char] = &[
    'B', 'C', 'F', 'L', 'N', 'O', 'R', 'V', 'X', 'b', 'e', 'f', 'h', 'o', 'p', 'r',
];

fn parse(args: Vec<OsString>) -> Result<Opts, Usage> {
    let mut o = Opts {
        from_headers: false,
        dot_ends: true,
        eight_bit: false,
        sender: None,
        name: None,
        rcpts: vec![],
        config: PathBuf::from(config::DEFAULT_PATH),
    };
    let bad = |s: String| Err(Usage::Bad(s));
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    let mut options_end = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if options_end || !a.starts_with('-') || a == "-" {
            o.rcpts.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => {
                options_end = true;
                continue;
            }
            "--help" => return Err(Usage::Help),
            "--config" => {
                let Some(f) = args.get(i) else {
                    return bad("--config needs a file".into());
                };
                o.config = f.into();
                i += 1;
                continue;
            }
            _ => {}
        }
        let flags: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < flags.len() {
            let c = flags[j];
            j += 1;
            if c == 'q' {
                return bad(
                    "-q (run the queue) is not supported: use `pocobelle mail flush`".into(),
                );
            }
            if !WITH_VALUE.contains(&c) {
                match c {
                    't' => o.from_headers = true,
                    'i' => o.dot_ends = false,
                    // Accepted and ignored, as Postfix does.
                    'm' | 'n' | 'v' | 'x' | 'c' | 'U' | 'G' => {}
                    'I' => return bad("-I (newaliases) is not supported: aliases are [mail.aliases] in the configuration".into()),
                    _ => return bad(format!("unknown option -{c}")),
                }
                continue;
            }
            let value = if j < flags.len() {
                let v: String = flags[j..].iter().collect();
                j = flags.len();
                v
            } else if let Some(v) = args.get(i) {
                i += 1;
                v.clone()
            } else {
                return bad(format!("-{c} needs a value"));
            };
            match c {
                'f' | 'r' => o.sender = Some(value),
                'F' => o.name = Some(value),
                'C' => o.config = value.into(),
                'o' if value == "i" => o.dot_ends = false,
                'B' => match value.as_str() {
                    "8BITMIME" => o.eight_bit = true,
                    "7BIT" => o.eight_bit = false,
                    _ => return bad(format!("-B {value}: -B needs 8BITMIME or 7BIT")),
                },
                'b' => match value.as_str() {
                    "m" => {}
                    "p" => return bad("-bp (list the queue) is not supported here: use mailq".into()),
                    "s" => return bad("-bs (SMTP on stdin) is not supported: talk SMTP to the router's mail.listen address".into()),
                    "d" => return bad("-bd (daemon) is not supported: the router is `pocobelle mail`".into()),
                    "i" => return bad("-bi (newaliases) is not supported: aliases are [mail.aliases] in the configuration".into()),
                    _ => return bad(format!("-b{value} is not supported (only -bm, the default)")),
                },
                'N' => dsn_notify(&value).map_err(Usage::Bad)?,
                'R' => return bad(format!("-R {value} (DSN return content) is not supported: the router has no DSN extension; leave -R out")),
                // Accepted and ignored, as Postfix does for most of them.
                _ => {}
            }
        }
    }
    Ok(o)
}

/// `-N`: Postfix's syntax (`never`, or a list of `success`, `delay`,
/// `failure`). Only what the router does anyway, delay and failure
/// notices, is accepted; it has no DSN extension to carry anything else.
fn dsn_notify(value: &str) -> Result<(), String> {
    let words: Vec<String> = value
        .split(',')
        .map(|w| w.trim().to_ascii_lowercase())
        .collect();
    let known = words.len() == 1 && words[0] == "never"
        || words
            .iter()
            .all(|w| matches!(w.as_str(), "success" | "delay" | "failure"));
    if !known {
        return Err(format!(
            "-N {value}: -N needs never, or a list of success, delay, failure"
        ));
    }
    let mut set: Vec<&str> = words.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    if set != ["delay", "failure"] {
        return Err(format!(
            "-N {value} is not supported: the router sends delay and failure notices, no other (-N delay,failure); leave -N out"
        ));
    }
    Ok(())
}

/// An address as given on the command line or in a header, qualified
/// as Postfix's `append_at_myorigin` does: without a domain it gets
/// `@origin`. Angle brackets are dropped. Empty stays empty (the null
/// sender).
fn qualify(addr: &str, origin: &str) -> String {
    let a = addr.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(a)
        .trim();
    if a.is_empty() || a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{origin}")
    }
}

/// The addresses of an address-list header value (RFC 5322 3.4):
/// `Name <a@b>`, bare `a@b` or `root`, quoted names with commas,
/// comments, groups (`undisclosed-recipients:;`).
fn address_list(value: &str) -> Vec<String> {
    let mut out = vec![];
    let mut part = String::new();
    let mut angle: Option<String> = None;
    let (mut quoted, mut escaped, mut comment, mut in_angle) = (false, false, 0u32, false);
    let flush = |part: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let a = angle.take().unwrap_or_else(|| part.trim().to_string());
        let a = a.trim();
        if !a.is_empty() && !a.contains(char::is_whitespace) && !a.contains('"') {
            out.push(a.to_string());
        }
        part.clear();
    };
    for ch in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 && !in_angle => quoted = !quoted,
            _ if quoted => {}
            '(' if !in_angle => comment += 1,
            ')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            '<' => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' => in_angle = false,
            _ if in_angle => {
                if let Some(a) = angle.as_mut() {
                    a.push(ch);
                }
            }
            // A group's display name ends at ':'; its list at ';'.
            ':' => part.clear(),
            ',' | ';' => flush(&mut part, &mut angle, &mut out),
            _ => part.push(ch),
        }
    }
    flush(&mut part, &mut angle, &mut out);
    out
}

/// Whether a header line starts a field: `name:` with name of printable
/// ASCII but colon (RFC 5322 2.2).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// How the header section read from stdin ended.
#[derive(Debug, PartialEq)]
enum HeaderEnd {
    /// An empty line (kept).
    Blank,
    /// A line that is no header field: the body starts with it (an
    /// empty line is put before it).
    Body(Vec<u8>),
    /// The input ended (EOF or a lone dot without -i).
    Input,
}

/// The header section after clean-up, ready for DATA (CRLF, stuffed),
/// and the recipients it names.
#[derive(Debug)]
struct Prepared {
    data: Vec<u8>,
    rcpts: Vec<String>,
}

/// What the added header fields say.
struct Added<'a> {
    sender: &'a str,
    name: Option<&'a str>,
    origin: &'a str,
    date: String,
    message_id: String,
}

/// Cleans the header section as Postfix's cleanup does for sendmail:
/// `Bcc:` fields removed (their recipients still taken with `-t`), From,
/// Date and Message-ID added at the end when missing. `lines` are the
/// raw lines without their line ends.
fn prepare(lines: &[Vec<u8>], end: &HeaderEnd, from_headers: bool, add: &Added) -> Prepared {
    // Fields: a first line and its continuation lines.
    let mut fields: Vec<&[Vec<u8>]> = vec![];
    let mut start = 0;
    for k in 1..=lines.len() {
        if k == lines.len() || !lines[k].starts_with(b" ") && !lines[k].starts_with(b"\t") {
            fields.push(&lines[start..k]);
            start = k;
        }
    }
    let mut enc = DataEncoder::default();
    let mut data = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum::<usize>() + 256);
    let mut rcpts = vec![];
    let (mut has_from, mut has_date, mut has_id) = (false, false, false);
    for f in fields.iter().filter(|f| !f.is_empty()) {
        let name = field_name(&f[0]).unwrap_or_default().to_ascii_lowercase();
        match name.as_slice() {
            b"from" => has_from = true,
            b"date" => has_date = true,
            b"message-id" => has_id = true,
            _ => {}
        }
        if from_headers && matches!(name.as_slice(), b"to" | b"cc" | b"bcc") {
            let value: Vec<u8> = f
                .iter()
                .flat_map(|l| l.iter().copied().chain([b' ']))
                .skip(name.len() + 1)
                .collect();
            rcpts.extend(
                address_list(&String::from_utf8_lossy(&value))
                    .iter()
                    .map(|a| qualify(a, add.origin)),
            );
        }
        if name == b"bcc" {
            continue;
        }
        for l in f.iter() {
            enc.push(l, &mut data);
            enc.push(b"\n", &mut data);
        }
    }
    if !has_from {
        let name = add.name.unwrap_or_default();
        let line = if name.is_empty() {
            format!("From: {}\n", add.sender)
        } else {
            format!("From: {name} <{}>\n", add.sender)
        };
        enc.push(line.as_bytes(), &mut data);
    }
    if !has_date {
        enc.push(format!("Date: {}\n", add.date).as_bytes(), &mut data);
    }
    if !has_id {
        enc.push(
            format!("Message-ID: {}\n", add.message_id).as_bytes(),
            &mut data,
        );
    }
    enc.push(b"\n", &mut data);
    if let HeaderEnd::Body(first) = end {
        enc.push(first, &mut data);
        enc.push(b"\n", &mut data);
    }
    Prepared { data, rcpts }
}

/// Whether a line read (with its line end) is a lone dot.
fn lone_dot(line: &[u8]) -> bool {
    matches!(line, b"." | b".\n" | b".\r\n")
}

/// Reads the header section: lines until an empty one, one that is no
/// header field (nor a continuation), a lone dot (without -i) or EOF.
fn read_headers(
    input: &mut impl BufRead,
    dot_ends: bool,
) -> Result<(Vec<Vec<u8>>, HeaderEnd), String> {
    let mut lines = vec![];
    let mut total = 0;
    loop {
        let mut line = vec![];
        let n = input
            .by_ref()
            .take((MAX_HEADER_BYTES + 2 - total) as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the message: {e}"))?;
        if n == 0 {
            return Ok((lines, HeaderEnd::Input));
        }
        total += n;
        if total > MAX_HEADER_BYTES {
            return Err(format!("header section over {MAX_HEADER_BYTES} bytes"));
        }
        if dot_ends && lone_dot(&line) {
            return Ok((lines, HeaderEnd::Input));
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            return Ok((lines, HeaderEnd::Blank));
        }
        let continuation = (line[0] == b' ' || line[0] == b'\t') && !lines.is_empty();
        if !continuation && field_name(&line).is_none() {
            return Ok((lines, HeaderEnd::Body(line)));
        }
        lines.push(line);
    }
}

/// A Message-ID for this board: time, process and random bits.
fn message_id(now: u64, origin: &str) -> String {
    let mut r = [0u8; 8];
    // SAFETY: getrandom writes at most `r.len()` bytes into `r`.
    let _ = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
    format!(
        "<{now}.{}.{:016x}@{origin}>",
        std::process::id(),
        u64::from_ne_bytes(r)
    )
}

/// Why a submission failed; nothing was queued in any case.
enum Failed {
    /// The router could not be reached or the connection broke.
    Down(String),
    /// The router answered with this reply.
    Refused(ServerReply),
    /// The message is larger than `mail.max_message_bytes`.
    TooBig(u64),
    /// An address cannot go in a command.
    Address(CommandError),
}

fn io(e: impl std::fmt::Display) -> Failed {
    Failed::Down(e.to_string())
}

/// The router's next reply (bytes after it stay in the buffer).
fn read_reply(r: &mut BufReader<TcpStream>) -> Result<ServerReply, Failed> {
    let mut parser = ReplyParser::default();
    loop {
        let buf = r.fill_buf().map_err(io)?;
        let n = buf.len();
        match parser.feed(buf) {
            _ if n == 0 => return Err(io("the router closed the connection")),
            Ok(Some((used, parsed))) => {
                r.consume(used);
                return Ok(parsed.reply);
            }
            Ok(None) => r.consume(n),
            Err(e) => return Err(io(e)),
        }
    }
}

/// Sends `c`; its reply must be in the class of `want` (2xx, 3xx).
fn cmd(r: &mut BufReader<TcpStream>, c: Command, want: u16) -> Result<(), Failed> {
    let mut line = Vec::new();
    c.encode_into(&mut line).map_err(Failed::Address)?;
    r.get_mut().write_all(&line).map_err(io)?;
    let reply = read_reply(r)?;
    if reply.code / 100 != want / 100 {
        return Err(Failed::Refused(reply));
    }
    Ok(())
}

/// Writes the content: `head` (already encoded), then the rest of the
/// input (`more`; up to a lone dot when `dot_ends`) through the DATA
/// encoder, in pieces of about [`CHUNK_BYTES`], and the final dot. Over
/// `max_bytes` it stops: the router would refuse the message.
fn write_content(
    w: &mut TcpStream,
    head: Vec<u8>,
    more: Option<&mut impl BufRead>,
    dot_ends: bool,
    max_bytes: u64,
) -> Result<(), Failed> {
    let mut out = head;
    let mut total = out.len() as u64;
    let mut enc = DataEncoder::default();
    if let Some(input) = more {
        let mut line_start = true;
        let mut line = Vec::with_capacity(CHUNK_BYTES);
        loop {
            line.clear();
            let n = input
                .by_ref()
                .take(CHUNK_BYTES as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| Failed::Down(format!("reading the message: {e}")))?;
            if n == 0 || dot_ends && line_start && lone_dot(&line) {
                break;
            }
            line_start = line.last() == Some(&b'\n');
            let before = out.len();
            enc.push(&line, &mut out);
            total += (out.len() - before) as u64;
            if total > max_bytes {
                return Err(Failed::TooBig(max_bytes));
            }
            if out.len() >= CHUNK_BYTES {
                w.write_all(&out).map_err(io)?;
                out.clear();
            }
        }
    }
    enc.finish(&mut out);
    w.write_all(&out).map_err(io)
}

pub fn run(args: Vec<OsString>) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(Usage::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(Usage::Bad(e)) => return super::usage_error("sendmail", e),
    };
    let config = match Config::load(&o.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: {e}; nothing was queued");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let origin = config.system.hostname.clone();
    let max_bytes = config.mail.max_message_bytes;
    // The header section first (bounded), then the body streamed.
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let (lines, end) = match read_headers(&mut input, o.dot_ends) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sendmail: {e}; nothing was queued");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let sender = match o.sender.as_deref() {
        Some(s) => qualify(s, &origin),
        None => qualify(&user, &origin),
    };
    let now = crate::mail::spool::Spool::unix_now();
    let from_addr = if sender.is_empty() {
        qualify(&user, &origin)
    } else {
        sender.clone()
    };
    let mut head = prepare(
        &lines,
        &end,
        o.from_headers,
        &Added {
            sender: &from_addr,
            name: o.name.as_deref(),
            origin: &origin,
            date: crate::mail::listener::rfc5322_date(now),
            message_id: message_id(now, &origin),
        },
    );
    // (The index is the transaction's tag for each; sendmail needs none.)
    let mut rcpts: Vec<(u32, String)> = o.rcpts.iter().map(|r| (0, qualify(r, &origin))).collect();
    rcpts.extend(head.rcpts.into_iter().map(|r| (0, r)));
    rcpts.retain(|(_, r)| !r.is_empty());
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|(_, r)| seen.insert(r.to_ascii_lowercase()));
    if rcpts.is_empty() {
        return super::usage_error(
            "sendmail",
            "no recipients (give some, or -t with To/Cc/Bcc)",
        );
    }
    let addr = config
        .mail
        .listen
        .first()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a
        });
    let Some(addr) = addr else {
        eprintln!("sendmail: mail.listen has no address; nothing was queued");
        return ExitCode::FAILURE;
    };
    let input_done = end == HeaderEnd::Input;
    let result = (|| -> Result<(), Failed> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| Failed::Down(format!("cannot reach the mail router at {addr}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(300)));
        let mut r = BufReader::new(tcp);
        let greeting = read_reply(&mut r)?;
        if greeting.code != 220 {
            return Err(Failed::Refused(greeting));
        }
        cmd(&mut r, Command::Ehlo(&origin), 250)?;
        let params = MailParams {
            eight_bit: o.eight_bit,
            ..MailParams::default()
        };
        let mut out = Vec::new();
        let mut t = Transaction::start(&sender, params, &rcpts, Policy::AllOrNothing, &mut out)
            .map_err(Failed::Address)?;
        let finished = loop {
            r.get_mut().write_all(&out).map_err(io)?;
            out.clear();
            let reply = read_reply(&mut r)?;
            t = match t.reply(reply, &mut out) {
                Next::Command(next) => next,
                Next::Body(next) => {
                    r.get_mut().write_all(&out).map_err(io)?;
                    out.clear();
                    let head = std::mem::take(&mut head.data);
                    let more = (!input_done).then_some(&mut input);
                    write_content(r.get_mut(), head, more, o.dot_ends, max_bytes)?;
                    next
                }
                Next::Done(f) => break f,
            };
        };
        // All or nothing: any refusal refused them all.
        let refused = finished
            .outcomes
            .into_iter()
            .find(|o| !o.reply.is_positive());
        if let Some(refused) = refused {
            return Err(Failed::Refused(refused.reply));
        }
        let _ = cmd(&mut r, Command::Quit, 221);
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Down(e)) => {
            eprintln!("sendmail: {e}; nothing was queued, try again when the router runs");
            ExitCode::from(EX_TEMPFAIL)
        }
        Err(Failed::Refused(reply)) if reply.code < 500 => {
            eprintln!("sendmail: the router answered {reply}; nothing was queued, try again later");
            ExitCode::from(EX_TEMPFAIL)
        }
        Err(Failed::Refused(reply)) => {
            eprintln!("sendmail: the router refused the message: {reply}; nothing was queued");
            ExitCode::FAILURE
        }
        Err(Failed::Address(e)) => super::usage_error("sendmail", e.to_string()),
        Err(Failed::TooBig(n)) => {
            eprintln!(
                "sendmail: the message is larger than mail.max_message_bytes ({n} bytes); nothing was queued"
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn refused(a: &[&str]) -> String {
        match parse(args(a)) {
            Err(Usage::Bad(e)) => e,
            other => panic!("{a:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn options_as_postfix_takes_them() {
        let o = parse(args(&[
            "-t",
            "-oi",
            "-f",
            "cron@box",
            "-FCron Daemon",
            "x@home.arpa",
        ]))
        .unwrap();
        assert!(o.from_headers && !o.dot_ends && !o.eight_bit);
        assert_eq!(o.sender.as_deref(), Some("cron@box"));
        assert_eq!(o.name.as_deref(), Some("Cron Daemon"));
        assert_eq!(o.rcpts, vec!["x@home.arpa"]);
        // Clustered flags, a value attached, `--` ending the options.
        let o = parse(args(&["-ti", "-B8BITMIME", "-rme", "--", "-odd", "root"])).unwrap();
        assert!(o.from_headers && !o.dot_ends && o.eight_bit);
        assert_eq!(o.sender.as_deref(), Some("me"));
        assert_eq!(o.rcpts, vec!["-odd", "root"]);
        let o = parse(args(&[
            "-B",
            "8BITMIME",
            "-B",
            "7BIT",
            "-N",
            "failure, delay",
            "-bm",
            "-v",
            "-odb",
            "a",
        ]))
        .unwrap();
        assert!(!o.eight_bit);
        assert_eq!(o.rcpts, vec!["a"]);
        assert!(refused(&["-bp"]).contains("use mailq"));
        assert!(refused(&["-bs"]).contains("-bs"));
        assert!(refused(&["-q"]).contains("mail flush"));
        assert!(refused(&["-q1h"]).contains("mail flush"));
        assert!(refused(&["-B", "9BIT"]).contains("8BITMIME or 7BIT"));
        assert!(refused(&["-R", "hdrs"]).contains("-R"));
        assert!(refused(&["-N", "never"]).contains("not supported"));
        assert!(refused(&["-N", "sometimes"]).contains("needs never"));
        assert!(refused(&["-f"]).contains("needs a value"));
        assert!(refused(&["-k"]).contains("unknown option -k"));
        assert!(matches!(parse(args(&["--help"])), Err(Usage::Help)));
    }

    #[test]
    fn local_names_get_the_hostname() {
        assert_eq!(qualify("root", "box.home.arpa"), "root@box.home.arpa");
        assert_eq!(qualify(" <root> ", "box"), "root@box");
        assert_eq!(qualify("a@b.test", "box"), "a@b.test");
        assert_eq!(qualify("<>", "box"), "");
        assert_eq!(qualify("", "box"), "");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            address_list(" A <a@home.arpa>, b@home.arpa, root (the admin)"),
            vec!["a@home.arpa", "b@home.arpa", "root"]
        );
        assert_eq!(
            address_list("\"Doe, John\" <j@x.test>, friends: c@x.test, d@y.test; e@z.test"),
            vec!["j@x.test", "c@x.test", "d@y.test", "e@z.test"]
        );
        assert!(address_list("undisclosed-recipients:;").is_empty());
        assert!(address_list("").is_empty());
    }

    fn added() -> Added<'static> {
        Added {
            sender: "cron@box",
            name: Some("Cron Daemon"),
            origin: "box",
            date: "Sat, 5 Dec 2026 08:00:00 +0000".into(),
            message_id: "<1.2.3@box>".into(),
        }
    }

    fn read(input: &[u8]) -> (Vec<Vec<u8>>, HeaderEnd) {
        read_headers(&mut std::io::Cursor::new(input), true).unwrap()
    }

    #[test]
    fn bcc_removed_recipients_taken_missing_fields_added() {
        let (lines, end) = read(b"To: root, A <a@home.arpa>\nBcc: Hidden\n <h@home.arpa>\nSubject: caf\xe9\n .dot\n\nbody\n");
        assert_eq!(end, HeaderEnd::Blank);
        let p = prepare(&lines, &end, true, &added());
        assert_eq!(p.rcpts, vec!["root@box", "a@home.arpa", "h@home.arpa"]);
        assert_eq!(
            p.data,
            b"To: root, A <a@home.arpa>\r\nSubject: caf\xe9\r\n .dot\r\nFrom: Cron Daemon <cron@box>\r\nDate: Sat, 5 Dec 2026 08:00:00 +0000\r\nMessage-ID: <1.2.3@box>\r\n\r\n"
        );
        // Without -t the Bcc field is still removed, its address not taken.
        let p = prepare(&lines, &end, false, &added());
        assert!(p.rcpts.is_empty());
        assert!(!String::from_utf8_lossy(&p.data).contains("Hidden"));
        // Present fields are kept, not added twice.
        let (lines, end) = read(b"From: me@x.test\r\nDate: today\r\nMessage-Id: <m@x>\r\n\r\n");
        let p = prepare(&lines, &end, false, &added());
        assert_eq!(
            p.data,
            b"From: me@x.test\r\nDate: today\r\nMessage-Id: <m@x>\r\n\r\n"
        );
    }

    #[test]
    fn input_without_header_section_is_all_body() {
        let (lines, end) = read(b"backup done\nline two\n");
        assert!(lines.is_empty());
        assert_eq!(end, HeaderEnd::Body(b"backup done".to_vec()));
        let p = prepare(&lines, &end, false, &added());
        assert!(
            p.data.ends_with(b"<1.2.3@box>\r\n\r\nbackup done\r\n"),
            "{:?}",
            String::from_utf8_lossy(&p.data)
        );
        // A lone dot ends the input there, unless -i.
        assert_eq!(read(b"Subject: x\n.\nmore").1, HeaderEnd::Input);
        let long = vec![b'X'; MAX_HEADER_BYTES + 10];
        let mut l = b"X-Long: ".to_vec();
        l.extend(long);
        assert!(read_headers(&mut std::io::Cursor::new(l), true).is_err());
    }

    #[test]
    fn message_ids_differ() {
        let a = message_id(1, "box");
        assert!(a.starts_with("<1.") && a.ends_with("@box>"));
        assert_ne!(a, message_id(1, "box"));
    }
}
