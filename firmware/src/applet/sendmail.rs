//! `pocobelle sendmail` (also as `sendmail`): the command cron jobs and
//! scripts call to send mail. It reads a message on stdin and submits it
//! over SMTP to the local mail router (the first `mail.listen` address,
//! on loopback), so that it goes through the same admission, spool writer
//! and group commit as any other message. Options: `-t` (recipients from
//! To/Cc/Bcc), `-i`/`-oi` (a lone dot does not end the input), `-f` (envelope
//! sender), `-F` (full name for a From header it adds when there is none).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config};

/// Longest header block read for `-t` and the From check.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Exit status for a temporary failure (sysexits EX_TEMPFAIL).
const EX_TEMPFAIL: u8 = 75;

const HELP: &str = "\
Usage: sendmail [-t] [-i] [-oi] [-f SENDER] [-F NAME] [--config FILE] [RECIPIENT...]

Reads a message on stdin and hands it to the local mail router.
";

struct Opts {
    from_headers: bool,
    dot_ends: bool,
    sender: Option<String>,
    name: Option<String>,
    rcpts: Vec<String>,
    config: PathBuf,
}

fn parse(args: Vec<OsString>) -> Result<Opts, String> {
    let mut o = Opts {
        from_headers: false,
        dot_ends: true,
        sender: None,
        name: None,
        rcpts: vec![],
        config: PathBuf::from(config::DEFAULT_PATH),
    };
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "-t" => o.from_headers = true,
            "-i" | "-oi" => o.dot_ends = false,
            "-h" | "--help" => return Err(String::new()),
            "-f" | "-r" => o.sender = Some(it.next().ok_or("-f needs an address")?),
            "-F" => o.name = Some(it.next().ok_or("-F needs a name")?),
            "--config" | "-C" => o.config = it.next().ok_or("--config needs a file")?.into(),
            s if s.starts_with("-f") && s.len() > 2 => o.sender = Some(s[2..].to_string()),
            s if s.starts_with("-F") && s.len() > 2 => o.name = Some(s[2..].to_string()),
            // Accepted and ignored, as other small sendmails do.
            s if s.starts_with("-o") || s == "-bm" || s == "-v" => {}
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => o.rcpts.push(a),
        }
    }
    Ok(o)
}

/// Addresses in To/Cc/Bcc header values (with or without angle brackets).
fn header_rcpts(headers: &str) -> Vec<String> {
    let mut out = vec![];
    let mut current: Option<String> = None;
    let mut fields = vec![];
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = current.take() {
            fields.push(c);
        }
        current = Some(line.to_string());
    }
    fields.extend(current);
    for f in fields {
        let Some((name, value)) = f.split_once(':') else {
            continue;
        };
        if !["to", "cc", "bcc"].contains(&name.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        for part in value.split(',') {
            let part = part.trim();
            let addr = match (part.rfind('<'), part.rfind('>')) {
                (Some(a), Some(b)) if a < b => &part[a + 1..b],
                _ => part,
            };
            if addr.contains('@') && !addr.contains(' ') {
                out.push(addr.to_string());
            }
        }
    }
    out
}

fn reply(r: &mut BufReader<TcpStream>) -> Result<(u16, String), String> {
    let mut text = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        r.by_ref()
            .take(1000)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.len() < 4 {
            return Err(format!("bad reply {line:?}"));
        }
        text.push_str(line.trim_end());
        if line.as_bytes()[3] != b'-' {
            let code = line[..3]
                .parse()
                .map_err(|_| format!("bad reply {line:?}"))?;
            return Ok((code, text));
        }
        text.push(' ');
    }
    Err("reply too long".into())
}

fn cmd(r: &mut BufReader<TcpStream>, line: &str, want: u16) -> Result<(), (u16, String)> {
    r.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .map_err(|e| (0, e.to_string()))?;
    let (code, text) = reply(r).map_err(|e| (0, e))?;
    if code / 100 != want / 100 {
        return Err((code, text));
    }
    Ok(())
}

pub fn run(args: Vec<OsString>) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return super::usage_error("sendmail", e),
    };
    let config = match Config::load(&o.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The message: header block first (bounded), then the body streamed.
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("sendmail: reading the message: {e}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        }
        let end = line.trim_end_matches(['\r', '\n']).is_empty();
        headers.push_str(&line);
        if end {
            break;
        }
        if headers.len() > MAX_HEADER_BYTES {
            eprintln!("sendmail: header block over {MAX_HEADER_BYTES} bytes");
            return ExitCode::FAILURE;
        }
    }
    let mut rcpts = o.rcpts.clone();
    if o.from_headers {
        rcpts.extend(header_rcpts(&headers));
    }
    if rcpts.is_empty() {
        return super::usage_error("sendmail", "no recipients");
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let sender = o
        .sender
        .clone()
        .unwrap_or_else(|| format!("{user}@{}", config.system.hostname));
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
        eprintln!("sendmail: mail.listen has no address");
        return ExitCode::FAILURE;
    };
    let result = (|| -> Result<(), (u16, String)> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| (0, format!("{addr}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(300)));
        let mut r = BufReader::new(tcp);
        let (code, text) = reply(&mut r).map_err(|e| (0, e))?;
        if code != 220 {
            return Err((code, text));
        }
        cmd(&mut r, &format!("EHLO {}", config.system.hostname), 250)?;
        cmd(&mut r, &format!("MAIL FROM:<{sender}>"), 250)?;
        for rc in &rcpts {
            cmd(&mut r, &format!("RCPT TO:<{rc}>"), 250)?;
        }
        cmd(&mut r, "DATA", 354)?;
        let mut out = Vec::with_capacity(64 * 1024);
        let has_from = headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("from:"));
        if !has_from {
            let name = o.name.clone().unwrap_or_default();
            out.extend_from_slice(format!("From: {name} <{sender}>\r\n").as_bytes());
        }
        let emit = |line: &str, out: &mut Vec<u8>| {
            let l = line.trim_end_matches(['\r', '\n']);
            if l.starts_with('.') {
                out.push(b'.');
            }
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        for l in headers.split_inclusive('\n') {
            emit(l, &mut out);
        }
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err((0, e.to_string())),
            }
            if o.dot_ends && line.trim_end_matches(['\r', '\n']) == "." {
                break;
            }
            emit(&line, &mut out);
            if out.len() >= 32 * 1024 {
                r.get_mut()
                    .write_all(&out)
                    .map_err(|e| (0, e.to_string()))?;
                out.clear();
            }
        }
        r.get_mut()
            .write_all(&out)
            .map_err(|e| (0, e.to_string()))?;
        cmd(&mut r, ".", 250)?;
        let _ = cmd(&mut r, "QUIT", 221);
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, text)) => {
            eprintln!("sendmail: {text}");
            if code >= 500 {
                ExitCode::FAILURE
            } else {
                ExitCode::from(EX_TEMPFAIL)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_header_recipients() {
        let o = parse(
            [
                "-t",
                "-oi",
                "-f",
                "cron@box",
                "-FCron Daemon",
                "x@home.arpa",
            ]
            .iter()
            .map(OsString::from)
            .collect(),
        )
        .unwrap();
        assert!(o.from_headers && !o.dot_ends);
        assert_eq!(o.sender.as_deref(), Some("cron@box"));
        assert_eq!(o.name.as_deref(), Some("Cron Daemon"));
        assert_eq!(o.rcpts, vec!["x@home.arpa"]);
        assert!(parse(vec![OsString::from("-q")]).is_err());
        let h = "Subject: x\nTo: A <a@home.arpa>, b@home.arpa\nCc:\n c@x.test\nBcc: \"D\" <d@y.test>\n\n";
        assert_eq!(
            header_rcpts(h),
            vec!["a@home.arpa", "b@home.arpa", "c@x.test", "d@y.test"]
        );
    }
}
