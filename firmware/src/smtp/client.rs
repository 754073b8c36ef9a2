//! The client side of SMTP (RFC 5321) as a sans-I/O core, shared by the
//! delivery client (`mail/client.rs`) and `sendmail` (`applet/sendmail.rs`).
//! It owns the reply parser (bytes in, bounded, typed errors), the EHLO
//! extensions, the command encoders, the one DATA encoder (line ends to
//! CRLF, dot-stuffing, the final dot) and the mail transaction as a state
//! machine (MAIL, RCPT, DATA, end of data) that turns replies into the
//! next command and per-recipient outcomes. It never touches a socket, a
//! file or the clock: the caller reads and writes, and keeps the timeouts;
//! TLS and the choice of what to do after a failed transaction are the
//! caller's too.

use super::auth::base64_encode;

/// Longest reply line accepted, its line end included (RFC 5321 4.5.3.1.5
/// gives 512 octets; twice the text line's limit is generous).
pub const MAX_REPLY_LINE: usize = 1000;
/// Most lines in one (multi-line) reply.
pub const MAX_REPLY_LINES: usize = 100;

/// A reply from the server: its code, and its lines' text (after the
/// code and separator) joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub text: String,
}

impl ServerReply {
    /// 2xx or 3xx.
    pub fn is_ok(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 2xx: positive completion (what MAIL and RCPT need).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced status code (RFC 3463) the text starts with, when its
    /// class matches the reply code's first digit (2, 4 or 5).
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        let word = self.text.split(' ').next()?;
        let mut parts = word.split('.');
        let mut num = |max_digits: usize| -> Option<u16> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > max_digits || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let (class, subject, detail) = (num(1)?, num(3)?, num(3)?);
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || class != self.code / 100 {
            return None;
        }
        Some(EnhancedCode {
            class: class as u8,
            subject,
            detail,
        })
    }
}

impl std::fmt::Display for ServerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl std::fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line has no LF within [`MAX_REPLY_LINE`] bytes.
    #[error("a reply line is longer than 1000 bytes")]
    LineTooLong,
    /// A multi-line reply goes on past [`MAX_REPLY_LINES`] lines.
    #[error("a reply has more than 100 lines")]
    TooManyLines,
    /// A line does not start with three digits followed by a space, a
    /// hyphen or its end.
    #[error("malformed reply from the server")]
    Malformed,
}

/// A whole reply, and the text of each of its lines (EHLO's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub reply: ServerReply,
    pub lines: Vec<String>,
}

/// Reads replies from bytes as they arrive, in chunks of any size. Holds
/// at most one line ([`MAX_REPLY_LINE`]) and one reply's lines.
#[derive(Debug, Default)]
pub struct ReplyParser {
    line: Vec<u8>,
    text: String,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes bytes from `input`. `Ok(Some((used, reply)))` when a reply
    /// ended after `used` bytes (the rest of `input` is not taken: bytes a
    /// server sent after its reply stay with the caller); `Ok(None)` when
    /// all of `input` was taken and the reply goes on. After an error
    /// the parser starts afresh (the caller should close the connection).
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<(usize, Parsed)>, ReplyError> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let room = MAX_REPLY_LINE - self.line.len();
            let window = &rest[..rest.len().min(room)];
            let Some(lf) = window.iter().position(|&b| b == b'\n') else {
                if rest.len() >= room {
                    self.reset();
                    return Err(ReplyError::LineTooLong);
                }
                self.line.extend_from_slice(rest);
                return Ok(None);
            };
            self.line.extend_from_slice(&rest[..=lf]);
            used += lf + 1;
            let done = self.line_done();
            self.line.clear();
            match done {
                Ok(None) => {}
                Ok(Some(p)) => return Ok(Some((used, p))),
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Whether part of a reply has been read.
    pub fn is_partial(&self) -> bool {
        !self.line.is_empty() || !self.lines.is_empty()
    }

    fn reset(&mut self) {
        self.line.clear();
        self.text.clear();
        self.lines.clear();
    }

    /// One line (in `self.line`, with its LF) is complete.
    fn line_done(&mut self) -> Result<Option<Parsed>, ReplyError> {
        let mut l: &[u8] = &self.line;
        while let [rest @ .., last] = l
            && last.is_ascii_whitespace()
        {
            l = rest;
        }
        // Three ASCII digits, then a space, a hyphen or nothing.
        let Some((digits, rest)) = l.split_first_chunk::<3>() else {
            return Err(ReplyError::Malformed);
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed);
        }
        let code = digits
            .iter()
            .fold(0u16, |c, d| c * 10 + u16::from(d - b'0'));
        let (last, text) = match rest.split_first() {
            None => (true, &[][..]),
            Some((b' ', t)) => (true, t),
            Some((b'-', t)) => (false, t),
            Some(_) => return Err(ReplyError::Malformed),
        };
        let text = String::from_utf8_lossy(text);
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(&text);
        self.lines.push(text.into_owned());
        if last {
            return Ok(Some(Parsed {
                reply: ServerReply {
                    code,
                    text: std::mem::take(&mut self.text),
                },
                lines: std::mem::take(&mut self.lines),
            }));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        Ok(None)
    }
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// SIZE, with or without a limit (RFC 1870).
    pub size: bool,
    /// The limit SIZE gave (none: no number, or 0).
    pub size_limit: Option<u64>,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// CHUNKING, BDAT (RFC 3030).
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
}

impl Extensions {
    /// The extensions in an EHLO reply's lines (the first line is the
    /// server's greeting, not an extension). Keywords are case-blind;
    /// `AUTH=` (an old form) counts as `AUTH`.
    pub fn parse(lines: &[String]) -> Extensions {
        let mut x = Extensions::default();
        for l in lines.iter().skip(1) {
            let u = l.to_ascii_uppercase();
            let mut words = u.split([' ', '=']);
            match words.next() {
                Some("STARTTLS") => x.starttls = true,
                Some("8BITMIME") => x.eight_bit_mime = true,
                Some("SMTPUTF8") => x.smtputf8 = true,
                Some("PIPELINING") => x.pipelining = true,
                Some("CHUNKING") => x.chunking = true,
                Some("ENHANCEDSTATUSCODES") => x.enhanced_status_codes = true,
                Some("DSN") => x.dsn = true,
                Some("SIZE") => {
                    x.size = true;
                    x.size_limit = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                Some("AUTH") => {
                    for w in words {
                        x.auth_plain |= w == "PLAIN";
                        x.auth_login |= w == "LOGIN";
                    }
                }
                _ => {}
            }
        }
        x
    }
}

/// Why a command cannot be put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An argument holds CR, LF or NUL: it would end the command line
    /// early and smuggle in another.
    #[error("a command argument holds a line break")]
    LineBreak,
}

/// The ESMTP parameters of `MAIL FROM`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

/// Why a message cannot be handed to a server at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsendable {
    /// The message arrived with `SMTPUTF8` and the server does not offer
    /// it: RFC 6531 3.4 forbids sending it there; it fails permanently
    /// (5.6.7) rather than waiting for a server that will never change.
    SmtpUtf8NotOffered,
}

impl Unsendable {
    /// The permanent reply recorded for each recipient (its status is the
    /// DSN's); `peer` names the server.
    pub fn reply(self, peer: &str) -> ServerReply {
        match self {
            Unsendable::SmtpUtf8NotOffered => ServerReply {
                code: 553,
                text: format!("5.6.7 SMTPUTF8 is required, but was not offered by host {peer}"),
            },
        }
    }
}

impl MailParams {
    /// The parameters for a message (arrived with `BODY=8BITMIME` when
    /// `eight_bit`, with `SMTPUTF8` when `smtputf8`; `size` bytes) to a
    /// server that offered `ext`: `BODY=8BITMIME` and `SMTPUTF8` when the
    /// message has them and the server offers them, `SIZE=` when it
    /// offers SIZE. An 8BITMIME message to a server without 8BITMIME goes
    /// as it is, without `BODY=` and unconverted (sendmail's "pass8";
    /// Postfix would convert it to quoted-printable unless
    /// `disable_mime_output_conversion`). An SMTPUTF8 message to a server
    /// without SMTPUTF8 cannot go at all.
    pub fn for_hop(
        eight_bit: bool,
        smtputf8: bool,
        size: u64,
        ext: &Extensions,
    ) -> Result<MailParams, Unsendable> {
        if smtputf8 && !ext.smtputf8 {
            return Err(Unsendable::SmtpUtf8NotOffered);
        }
        Ok(MailParams {
            size: ext.size.then_some(size),
            eight_bit: eight_bit && ext.eight_bit_mime,
            smtputf8,
        })
    }
}

/// A command the client sends. Arguments are put on the wire as given,
/// after a check that they hold no line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO name`.
    Ehlo(&'a str),
    /// `HELO name`.
    Helo(&'a str),
    /// `MAIL FROM:<path>` and its parameters (empty path: the null sender).
    MailFrom(&'a str, MailParams),
    /// `RCPT TO:<path>`.
    RcptTo(&'a str),
    Data,
    Rset,
    Quit,
    Noop,
    StartTls,
    /// `AUTH PLAIN` with its initial response (RFC 4616).
    AuthPlain {
        user: &'a str,
        password: &'a str,
    },
    /// `AUTH LOGIN`; the user and password follow as [`Command::AuthResponse`].
    AuthLogin,
    /// One response line of an AUTH exchange: `data` in base64.
    AuthResponse(&'a [u8]),
}

impl Command<'_> {
    /// Appends the command line, CRLF included, to `out` (nothing when
    /// it fails).
    #[inline(never)]
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        // The verb (and what comes before the argument), the argument,
        // what follows it.
        let (verb, arg, close): (&str, &str, &str) = match *self {
            Command::Ehlo(a) => ("EHLO ", a, ""),
            Command::Helo(a) => ("HELO ", a, ""),
            Command::MailFrom(a, _) => ("MAIL FROM:<", a, ">"),
            Command::RcptTo(a) => ("RCPT TO:<", a, ">"),
            Command::Data => ("DATA", "", ""),
            Command::Rset => ("RSET", "", ""),
            Command::Quit => ("QUIT", "", ""),
            Command::Noop => ("NOOP", "", ""),
            Command::StartTls => ("STARTTLS", "", ""),
            Command::AuthPlain { user, password } => ("AUTH PLAIN ", user, password),
            Command::AuthLogin => ("AUTH LOGIN", "", ""),
            Command::AuthResponse(_) => ("", "", ""),
        };
        check_arg(arg)?;
        check_arg(close)?;
        let base64 = match *self {
            Command::AuthPlain { user, password } => {
                let mut raw = vec![0];
                raw.extend_from_slice(user.as_bytes());
                raw.push(0);
                raw.extend_from_slice(password.as_bytes());
                base64_encode(&raw)
            }
            Command::AuthResponse(data) => base64_encode(data),
            _ => String::new(),
        };
        let (arg, close) = if base64.is_empty() {
            (arg, close)
        } else {
            (base64.as_str(), "")
        };
        let mut digits = [0u8; 20];
        let mut parts: [&[u8]; 7] = [
            verb.as_bytes(),
            arg.as_bytes(),
            close.as_bytes(),
            b"",
            b"",
            b"",
            b"",
        ];
        if let Command::MailFrom(_, p) = *self {
            if let Some(n) = p.size {
                parts[3] = b" SIZE=";
                parts[4] = decimal(n, &mut digits);
            }
            if p.eight_bit {
                parts[5] = b" BODY=8BITMIME";
            }
            if p.smtputf8 {
                parts[6] = b" SMTPUTF8";
            }
        }
        for part in parts.iter().chain([&&b"\r\n"[..]]) {
            out.extend_from_slice(part);
        }
        Ok(())
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[inline(never)]
fn check_arg(arg: &str) -> Result<(), CommandError> {
    if arg.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(CommandError::LineBreak);
    }
    Ok(())
}

/// Turns message bytes into DATA content, in pieces of any size: LF,
/// CRLF and a bare CR each end a line (sent as CRLF: servers refuse bare
/// CR and LF, as ours does), a dot at the start of a line is doubled,
/// every other byte (8-bit, NUL) passes unchanged. [`finish`] ends the
/// last line and adds the final dot.
///
/// [`finish`]: DataEncoder::finish
#[derive(Debug)]
pub struct DataEncoder {
    line_start: bool,
    cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder {
            line_start: true,
            cr: false,
        }
    }
}

impl DataEncoder {
    /// Appends `input`, encoded, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 2);
        for &b in input {
            if self.cr {
                // A CR ends the line whatever follows; a LF after it is
                // the same line end.
                self.cr = false;
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                }
                _ => {
                    if self.line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.line_start = false;
                }
            }
        }
    }

    /// Ends the content: a line end when the last line has none, then
    /// the lone dot (`.` CRLF) that ends DATA.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.cr || !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.cr = false;
        self.line_start = true;
    }
}

/// How a transaction treats a refused recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each recipient has its own outcome: the message goes to those the
    /// server accepted (delivery).
    PerRecipient,
    /// The first refused recipient ends the transaction before DATA,
    /// and every recipient gets its reply (submission: `sendmail` must
    /// not queue a message for some of its recipients and then fail).
    AllOrNothing,
}

/// The result for one recipient: the index the caller gave it, and the
/// reply that decided it (its RCPT reply when that refused it, else the
/// reply to MAIL, DATA or the end of the data). A reply that
/// [`is_ok`](ServerReply::is_ok) means delivered: it comes only from
/// the end of the data. A 2xx or 3xx where it makes no sense (354 to
/// MAIL, 250 to DATA) is recorded as [`unexpected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub index: u32,
    pub reply: ServerReply,
}

/// The end of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// One per recipient, in the order they were given.
    pub outcomes: Vec<Outcome>,
    /// The transaction was abandoned part-way: send RSET (and read its
    /// reply) before another one on the same connection.
    pub reset: bool,
}

/// What to do after a reply.
#[derive(Debug)]
pub enum Next<'a> {
    /// Write the bytes put in `out`, read a reply, pass it on.
    Command(Transaction<'a>),
    /// Write the bytes put in `out` (if any), then the message through a
    /// [`DataEncoder`] (its `finish` included), read the reply to the end
    /// of the data and pass it on.
    Body(Transaction<'a>),
    /// The transaction is over.
    Done(Finished),
}

/// The code of a recipient without an outcome yet: no reply has it
/// (codes have three digits).
const PENDING: u16 = u16::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mail,
    /// The reply to RCPT for this recipient.
    Rcpt(usize),
    Data,
    DataEnd,
}

/// One mail transaction (RFC 5321 3.3): `MAIL FROM`, a `RCPT TO` per
/// recipient, `DATA`, the content and its end. Commands go one at a
/// time (no pipelining); the caller feeds each reply to [`reply`], which
/// consumes the transaction and returns what comes next.
///
/// [`reply`]: Transaction::reply
#[derive(Debug)]
pub struct Transaction<'a> {
    /// The caller's recipients: their index and address.
    rcpts: &'a [(u32, String)],
    /// One per recipient: its reply once one decided it, [`PENDING`]
    /// while it is accepted and waits for the end of the data.
    outcomes: Vec<Outcome>,
    policy: Policy,
    expect: Expect,
}

impl<'a> Transaction<'a> {
    /// Starts a transaction for `rcpts` (the caller's index, the
    /// address): `MAIL FROM` goes into `out`. Every address is checked
    /// first, so that nothing is sent for a transaction that could not
    /// be finished.
    pub fn start(
        from: &str,
        params: MailParams,
        rcpts: &'a [(u32, String)],
        policy: Policy,
        out: &mut Vec<u8>,
    ) -> Result<Transaction<'a>, CommandError> {
        for (_, a) in rcpts {
            check_arg(a)?;
        }
        let outcomes = rcpts
            .iter()
            .map(|&(index, _)| Outcome {
                index,
                reply: ServerReply {
                    code: PENDING,
                    text: String::new(),
                },
            })
            .collect();
        Command::MailFrom(from, params).encode_into(out)?;
        Ok(Transaction {
            rcpts,
            outcomes,
            policy,
            expect: Expect::Mail,
        })
    }

    /// Takes the server's reply to what was last written; any next
    /// command goes into `out`.
    pub fn reply(mut self, reply: ServerReply, out: &mut Vec<u8>) -> Next<'a> {
        let next = match self.expect {
            Expect::Mail if !reply.is_positive() => return self.finish(reply, true, true),
            Expect::Mail => 0,
            Expect::Rcpt(i) => {
                if !reply.is_positive() {
                    if self.policy == Policy::AllOrNothing {
                        return self.finish(reply, true, true);
                    }
                    self.outcomes[i].reply = unexpected(reply.clone());
                }
                i + 1
            }
            Expect::Data if reply.code != 354 => return self.finish(reply, true, false),
            Expect::Data => {
                self.expect = Expect::DataEnd;
                return Next::Body(self);
            }
            Expect::DataEnd => return self.finish(reply, false, false),
        };
        if let Some((_, a)) = self.rcpts.get(next) {
            // Checked in `start`.
            let _ = Command::RcptTo(a).encode_into(out);
            self.expect = Expect::Rcpt(next);
            return Next::Command(self);
        }
        if self.outcomes.iter().all(|o| o.reply.code != PENDING) {
            // None accepted (or none at all).
            return self.finish(reply, true, false);
        }
        let _ = Command::Data.encode_into(out);
        self.expect = Expect::Data;
        Next::Command(self)
    }

    /// Ends the transaction: the recipients still waiting (`all`: every
    /// one) get `reply`, a 2xx or 3xx only after the end of the data.
    fn finish(self, reply: ServerReply, reset: bool, all: bool) -> Next<'a> {
        let reply = if self.expect == Expect::DataEnd && reply.is_positive() {
            reply
        } else {
            unexpected(reply)
        };
        let mut outcomes = self.outcomes;
        for o in &mut outcomes {
            if all || o.reply.code == PENDING {
                o.reply = reply.clone();
            }
        }
        Next::Done(Finished { outcomes, reset })
    }
}

/// A reply that ends a recipient's chance: kept when it is a failure
/// (4xx, 5xx, or no known class), made a temporary failure (451 4.5.0)
/// when it is a 2xx or 3xx, which must not read as delivered.
pub fn unexpected(reply: ServerReply) -> ServerReply {
    if !reply.is_ok() {
        return reply;
    }
    ServerReply {
        code: 451,
        text: format!("4.5.0 unexpected reply from the server: {reply}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<Result<Parsed, ReplyError>> {
        let mut p = ReplyParser::default();
        let mut rest = input;
        let mut out = vec![];
        loop {
            match p.feed(rest) {
                Ok(Some((n, r))) => {
                    out.push(Ok(r));
                    rest = &rest[n..];
                }
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply {
            code,
            text: text.into(),
        }
    }

    #[test]
    fn replies_parse_in_any_chunks() {
        let wire = b"220 mx.test ESMTP\r\n250-mx.test hi\r\n250-SIZE 10\r\n250 8BITMIME\r\n550 5.1.1 no\r\n";
        let whole = parse_all(wire);
        assert_eq!(whole.len(), 3);
        let ehlo = whole[1].as_ref().unwrap();
        assert_eq!(ehlo.reply, reply(250, "mx.test hi SIZE 10 8BITMIME"));
        assert_eq!(ehlo.lines, ["mx.test hi", "SIZE 10", "8BITMIME"]);
        // Byte by byte: the same replies, each ending at its last LF.
        let mut p = ReplyParser::default();
        let mut got = vec![];
        for (i, b) in wire.iter().enumerate() {
            if let Some((n, r)) = p.feed(std::slice::from_ref(b)).unwrap() {
                assert_eq!(n, 1);
                got.push((i, r));
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1, *ehlo);
        assert_eq!(got[2].0, wire.len() - 1);
        assert!(!p.is_partial());
        // Bytes after a reply are left to the caller.
        let (n, r) = ReplyParser::default()
            .feed(b"220 go ahead\r\n\x16\x03\x01")
            .unwrap()
            .unwrap();
        assert_eq!((n, r.reply.code), (14, 220));
    }

    #[test]
    fn reply_lines_parse_without_io() {
        let mut r = ReplyParser::default();
        assert!(r.feed(b"250-mx.test hi\r\n").unwrap().is_none());
        assert!(r.is_partial());
        let (_, p) = r.feed(b"250 SIZE 10\r\n").unwrap().unwrap();
        assert_eq!(p.reply.code, 250);
        assert_eq!(p.reply.text, "mx.test hi SIZE 10");
        assert_eq!(p.lines, ["mx.test hi", "SIZE 10"]);
        // A bare code, a bare LF and trailing blanks.
        let r = parse_all(b"250\n354 go \t\r\n");
        assert_eq!(r[0].as_ref().unwrap().reply, reply(250, ""));
        assert_eq!(r[1].as_ref().unwrap().reply, reply(354, "go"));
    }

    #[test]
    fn bounds_and_garbage_are_typed_errors() {
        let mut r = ReplyParser::default();
        for _ in 0..MAX_REPLY_LINES - 1 {
            assert!(r.feed(b"250-x\r\n").unwrap().is_none());
        }
        assert_eq!(r.feed(b"250-x\r\n"), Err(ReplyError::TooManyLines));
        // ... and the parser starts afresh.
        assert_eq!(r.feed(b"221 bye\r\n").unwrap().unwrap().1.reply.code, 221);
        let mut ok = b"250 ".to_vec();
        ok.resize(MAX_REPLY_LINE - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert!(ReplyParser::default().feed(&ok).unwrap().is_some());
        let mut long = b"250 ".to_vec();
        long.resize(MAX_REPLY_LINE - 1, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(
            ReplyParser::default().feed(&long),
            Err(ReplyError::LineTooLong)
        );
        // Too long across chunks too.
        let mut r = ReplyParser::default();
        assert!(r.feed(&long[..600]).unwrap().is_none());
        assert_eq!(r.feed(&long[600..]), Err(ReplyError::LineTooLong));
        for bad in [
            &b"25\r\n"[..],
            b"+25 x\r\n",
            b"2x0 x\r\n",
            b"250x\r\n",
            b"garbage\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                ReplyParser::default().feed(bad),
                Err(ReplyError::Malformed),
                "{bad:?}"
            );
        }
    }

    /// Found while writing fuzz/fuzz_targets/smtp_reply.rs: a reply whose
    /// first three bytes split a UTF-8 character made the mail service
    /// panic (the code was read by slicing the text at byte 3).
    #[test]
    fn a_split_character_in_the_code_is_malformed_not_a_panic() {
        for bad in ["22\u{e9} ok\r\n", "2\u{20ac} ok\r\n", "\u{e9}\r\n"] {
            let r = ReplyParser::default().feed(bad.as_bytes());
            assert_eq!(r, Err(ReplyError::Malformed), "{bad:?}");
        }
        // Invalid UTF-8 in the text is replaced, not refused.
        let r = parse_all(b"550 caf\xe9\r\n");
        assert_eq!(r[0].as_ref().unwrap().reply.text, "caf\u{fffd}");
    }

    #[test]
    fn error_messages_name_the_bounds() {
        let m = ReplyError::LineTooLong.to_string();
        assert!(m.contains(&MAX_REPLY_LINE.to_string()), "{m}");
        let m = ReplyError::TooManyLines.to_string();
        assert!(m.contains(&MAX_REPLY_LINES.to_string()), "{m}");
    }

    #[test]
    fn enhanced_codes() {
        let e = reply(550, "5.1.1 no such user").enhanced().unwrap();
        assert_eq!((e.class, e.subject, e.detail), (5, 1, 1));
        assert_eq!(e.to_string(), "5.1.1");
        assert_eq!(
            reply(451, "4.3.0").enhanced().map(|e| e.to_string()),
            Some("4.3.0".into())
        );
        assert_eq!(reply(250, "2.100.999 ok").enhanced().unwrap().subject, 100);
        // 1*3DIGIT: leading zeros are allowed, and read as numbers.
        assert_eq!(
            reply(250, "2.0.050 ok").enhanced().map(|e| e.to_string()),
            Some("2.0.50".into())
        );
        for (code, text) in [
            (550, "4.1.1 class differs"),
            (550, "no code"),
            (550, "5.1 short"),
            (550, "5.1.1.1 long"),
            (550, "5.1000.1 too many digits"),
            (550, "5..1 empty"),
            (354, "3.0.0 no such class"),
            (250, ""),
        ] {
            assert_eq!(reply(code, text).enhanced(), None, "{text}");
        }
    }

    #[test]
    fn extensions_parse() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let x = Extensions::parse(&l(&["mx.test hi", "SIZE 1000", "STARTTLS", "AUTH LOGIN"]));
        assert!(x.starttls && x.auth_login && !x.auth_plain);
        assert_eq!(x.size_limit, Some(1000));
        let x = Extensions::parse(&l(&["STARTTLS", "AUTH=PLAIN"]));
        assert!(!x.starttls, "the first line is the greeting");
        assert!(x.auth_plain);
        let x = Extensions::parse(&l(&["mx.test", "SIZE 10240000", "8bitmime", "SMTPUTF8"]));
        assert!(x.size && x.eight_bit_mime && x.smtputf8);
        let x = Extensions::parse(&l(&[
            "mx.test",
            "SIZE",
            "PIPELINING",
            "CHUNKING",
            "ENHANCEDSTATUSCODES",
            "DSN",
        ]));
        assert!(x.size && x.size_limit.is_none() && !x.eight_bit_mime && !x.smtputf8);
        assert!(x.pipelining && x.chunking && x.enhanced_status_codes && x.dsn);
        assert_eq!(
            Extensions::parse(&l(&["mx", "SIZE 0"])).size_limit,
            None,
            "0: no limit"
        );
    }

    fn wire(c: Command) -> String {
        let mut v = vec![];
        c.encode_into(&mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn commands_encode() {
        assert_eq!(wire(Command::Ehlo("me.test")), "EHLO me.test\r\n");
        assert_eq!(wire(Command::Helo("me.test")), "HELO me.test\r\n");
        assert_eq!(
            wire(Command::MailFrom("", MailParams::default())),
            "MAIL FROM:<>\r\n"
        );
        let all = MailParams {
            size: Some(1234),
            eight_bit: true,
            smtputf8: true,
        };
        assert_eq!(
            wire(Command::MailFrom("a@b.test", all)),
            "MAIL FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n"
        );
        for (n, w) in [(0, "0"), (7, "7"), (u64::MAX, "18446744073709551615")] {
            let p = MailParams {
                size: Some(n),
                ..MailParams::default()
            };
            assert_eq!(
                wire(Command::MailFrom("", p)),
                format!("MAIL FROM:<> SIZE={w}\r\n")
            );
        }
        assert_eq!(wire(Command::RcptTo("u@x.test")), "RCPT TO:<u@x.test>\r\n");
        for (c, w) in [
            (Command::Data, "DATA\r\n"),
            (Command::Rset, "RSET\r\n"),
            (Command::Quit, "QUIT\r\n"),
            (Command::Noop, "NOOP\r\n"),
            (Command::StartTls, "STARTTLS\r\n"),
            (Command::AuthLogin, "AUTH LOGIN\r\n"),
            (Command::AuthResponse(b"me"), "bWU=\r\n"),
        ] {
            assert_eq!(wire(c), w);
        }
        // RFC 4616's example.
        assert_eq!(
            wire(Command::AuthPlain {
                user: "tim",
                password: "tanstaaftanstaaf"
            }),
            "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"
        );
        let mut v = vec![];
        for bad in [
            Command::RcptTo("a@b\r\nDATA"),
            Command::MailFrom("a\n", MailParams::default()),
            Command::Ehlo("x\0"),
            Command::AuthPlain {
                user: "a\0b",
                password: "p",
            },
        ] {
            assert_eq!(bad.encode_into(&mut v), Err(CommandError::LineBreak));
        }
        assert!(v.is_empty());
    }

    #[test]
    fn mail_params_pass_on_what_the_hop_offers() {
        let all = Extensions {
            eight_bit_mime: true,
            smtputf8: true,
            size: true,
            ..Extensions::default()
        };
        let none = Extensions::default();
        let line = |e8, u8, x: &Extensions| {
            MailParams::for_hop(e8, u8, 1234, x).map(|p| wire(Command::MailFrom("a@b.test", p)))
        };
        assert_eq!(
            line(true, true, &all).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert_eq!(
            line(false, false, &all).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234\r\n"
        );
        assert_eq!(
            line(false, false, &none).unwrap(),
            "MAIL FROM:<a@b.test>\r\n"
        );
        // 8BITMIME not offered: sent as it is, without BODY=.
        let no8 = Extensions {
            eight_bit_mime: false,
            ..all
        };
        assert_eq!(
            line(true, false, &no8).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234\r\n"
        );
        let only8 = Extensions {
            eight_bit_mime: true,
            ..none
        };
        assert_eq!(
            line(true, false, &only8).unwrap(),
            "MAIL FROM:<a@b.test> BODY=8BITMIME\r\n"
        );
        // SMTPUTF8 not offered: the message cannot go (RFC 6531 3.4).
        let no_utf8 = Extensions {
            smtputf8: false,
            ..all
        };
        assert_eq!(
            line(false, true, &no_utf8),
            Err(Unsendable::SmtpUtf8NotOffered)
        );
        let r = Unsendable::SmtpUtf8NotOffered.reply("192.0.2.1:25");
        assert!(r.is_permanent());
        assert_eq!(r.enhanced().unwrap().to_string(), "5.6.7");
    }

    fn encode(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![];
        let mut e = DataEncoder::default();
        for p in pieces {
            e.push(p, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn data_encoding_is_byte_clean() {
        assert_eq!(
            encode(&[b".lead\n\xe9\x00\xff\r\nbar\rprogress\r", b"\n.x"]),
            b"..lead\r\n\xe9\x00\xff\r\nbar\r\nprogress\r\n..x\r\n.\r\n"
        );
        assert_eq!(encode(&[b"end\n"]), b"end\r\n.\r\n");
        assert_eq!(encode(&[]), b".\r\n");
        assert_eq!(encode(&[b"", b"x", b""]), b"x\r\n.\r\n");
        // A lone dot in the content is not the end.
        assert_eq!(encode(&[b"a\r\n.\r\nb\r\n"]), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(encode(&[b"a\r"]), b"a\r\n.\r\n");
        assert_eq!(encode(&[b"\r\r\n\n"]), b"\r\n\r\n\r\n.\r\n");
    }

    /// Content already in CRLF lines (the spool's) passes unchanged but
    /// for the doubled dots, however it is cut.
    #[test]
    fn data_encoding_of_crlf_content_in_any_pieces() {
        let body = b"Subject: x\r\n\r\n.one\r\n..two\r\nthree.\r\n.\r\n\r\nend";
        let want = b"Subject: x\r\n\r\n..one\r\n...two\r\nthree.\r\n..\r\n\r\nend\r\n.\r\n";
        assert_eq!(encode(&[body]), want);
        for cut in 0..=body.len() {
            assert_eq!(encode(&[&body[..cut], &body[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(encode(&bytes), want);
    }

    /// Runs a transaction against canned replies; returns what was
    /// written (BODY where the content goes) and how it finished.
    fn run(rcpts: &[&str], policy: Policy, replies: &[(u16, &str)]) -> (String, Finished) {
        let mut out = vec![];
        let rcpts: Vec<(u32, String)> = (0..).zip(rcpts.iter().map(|a| a.to_string())).collect();
        let rcpts = &rcpts;
        let mut t =
            Transaction::start("a@b.test", MailParams::default(), rcpts, policy, &mut out).unwrap();
        let mut written = String::new();
        for &(code, text) in replies {
            written.push_str(&String::from_utf8_lossy(&out));
            out.clear();
            match t.reply(reply(code, text), &mut out) {
                Next::Command(n) => t = n,
                Next::Body(n) => {
                    written.push_str(&String::from_utf8_lossy(&out));
                    out.clear();
                    written.push_str("BODY\r\n");
                    t = n;
                }
                Next::Done(f) => return (written, f),
            }
        }
        panic!("not done after {replies:?}: wrote {written:?}");
    }

    fn outcome(index: u32, code: u16, text: &str) -> Outcome {
        Outcome {
            index,
            reply: reply(code, text),
        }
    }

    #[test]
    fn transaction_per_recipient() {
        let (w, f) = run(
            &["x@t", "y@t", "z@t"],
            Policy::PerRecipient,
            &[
                (250, "ok"),
                (250, "ok"),
                (550, "5.1.1 no y"),
                (250, "ok"),
                (354, "go"),
                (250, "2.0.0 queued"),
            ],
        );
        assert_eq!(
            w,
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@t>\r\nRCPT TO:<y@t>\r\nRCPT TO:<z@t>\r\nDATA\r\nBODY\r\n"
        );
        assert_eq!(
            f,
            Finished {
                outcomes: vec![
                    outcome(0, 250, "2.0.0 queued"),
                    outcome(1, 550, "5.1.1 no y"),
                    outcome(2, 250, "2.0.0 queued"),
                ],
                reset: false,
            }
        );
    }

    #[test]
    fn transaction_failures() {
        // MAIL refused: every recipient, and RSET.
        let (w, f) = run(&["x@t", "y@t"], Policy::PerRecipient, &[(452, "full")]);
        assert_eq!(w, "MAIL FROM:<a@b.test>\r\n");
        assert!(f.reset);
        assert_eq!(
            f.outcomes,
            [outcome(0, 452, "full"), outcome(1, 452, "full")]
        );
        // A 3xx is no answer to MAIL, and must not read as delivered.
        let (_, f) = run(&["x@t"], Policy::PerRecipient, &[(354, "what")]);
        let odd = "4.5.0 unexpected reply from the server: ";
        assert_eq!(f.outcomes, [outcome(0, 451, &format!("{odd}354 what"))]);
        let (_, f) = run(
            &["x@t", "y@t"],
            Policy::PerRecipient,
            &[(250, ""), (250, ""), (354, "odd"), (250, "no body?")],
        );
        assert!(f.reset);
        assert_eq!(
            f.outcomes,
            [
                outcome(0, 451, &format!("{odd}250 no body?")),
                outcome(1, 451, &format!("{odd}354 odd")),
            ]
        );
        let (w, f) = run(
            &["x@t"],
            Policy::PerRecipient,
            &[(250, ""), (250, ""), (354, ""), (354, "again")],
        );
        assert!(w.ends_with("BODY\r\n") && !f.reset);
        assert_eq!(f.outcomes, [outcome(0, 451, &format!("{odd}354 again"))]);
        // Every RCPT refused: no DATA.
        let (w, f) = run(
            &["x@t", "y@t"],
            Policy::PerRecipient,
            &[(250, ""), (550, "a"), (450, "b")],
        );
        assert!(!w.contains("DATA"));
        assert!(f.reset);
        assert_eq!(f.outcomes, [outcome(0, 550, "a"), outcome(1, 450, "b")]);
        // DATA refused: the accepted ones get its reply.
        let (_, f) = run(
            &["x@t", "y@t"],
            Policy::PerRecipient,
            &[(250, ""), (550, "a"), (250, ""), (451, "later")],
        );
        assert!(f.reset);
        assert_eq!(f.outcomes, [outcome(0, 550, "a"), outcome(1, 451, "later")]);
        // The end of data refused: no RSET needed.
        let (_, f) = run(
            &["x@t"],
            Policy::PerRecipient,
            &[(250, ""), (250, ""), (354, ""), (554, "5.7.1 spam")],
        );
        assert!(!f.reset);
        assert_eq!(f.outcomes, [outcome(0, 554, "5.7.1 spam")]);
        // No recipients at all.
        let (_, f) = run(&[], Policy::PerRecipient, &[(250, "")]);
        assert!(f.reset && f.outcomes.is_empty());
    }

    #[test]
    fn transaction_all_or_nothing() {
        let (w, f) = run(
            &["x@t", "y@t", "z@t"],
            Policy::AllOrNothing,
            &[(250, ""), (250, ""), (550, "5.1.1 no y")],
        );
        assert!(!w.contains("z@t") && !w.contains("DATA"));
        assert!(f.reset);
        assert_eq!(f.outcomes.len(), 3);
        assert!(f.outcomes.iter().all(|o| o.reply.code == 550));
        let (_, f) = run(
            &["x@t"],
            Policy::AllOrNothing,
            &[(250, ""), (250, ""), (354, ""), (250, "ok")],
        );
        assert_eq!(f.outcomes, [outcome(0, 250, "ok")]);
    }

    #[test]
    fn transaction_refuses_smuggled_lines_before_sending_anything() {
        let mut out = vec![];
        let rcpts = [(0, "ok@t".into()), (1, "x@t>\r\nRCPT TO:<evil@t".into())];
        let r = Transaction::start(
            "a@b.test",
            MailParams::default(),
            &rcpts,
            Policy::PerRecipient,
            &mut out,
        );
        assert_eq!(r.unwrap_err(), CommandError::LineBreak);
        assert!(out.is_empty());
    }
}
