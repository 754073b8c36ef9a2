//! The upsd network protocol (NUT, TCP 3493, `docs/net-protocol.txt`),
//! sans-I/O: requests are encoded into bytes, reply bytes are cut into
//! bounded lines and parsed into typed replies, a `LIST VAR` reply is
//! collected into a bounded list, and the variables Pocobelle acts on
//! (`ups.status`, `battery.charge`, `battery.runtime`) are decoded.
//! This file never opens a socket, never sleeps and never panics on any
//! input; the client (`client.rs`) does the I/O.

use std::fmt;

/// Longest reply line accepted, LF included. upsd caps a value at 256
/// bytes (`ST_MAX_VALUE_LEN`); a `VAR` line adds the UPS and variable
/// names and the quoting.
pub const MAX_LINE: usize = 512;
/// Most variables in one `LIST VAR` reply (a USB HID UPS lists 40 to 80).
pub const MAX_VARS: usize = 256;
/// Longest argument (UPS name, variable name, user name, password) a
/// request may carry.
pub const MAX_ARG: usize = 256;
/// Most words in one reply line (`VAR ups name "value"` has 4; `ERR`
/// lines may carry a few extra words).
pub const MAX_WORDS: usize = 16;

/// What went wrong while encoding a request or decoding a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A request argument is empty, longer than [`MAX_ARG`], or holds a
    /// control character that cannot be sent on one line.
    #[error("request argument is empty, too long or holds a control character")]
    BadArgument,
    /// A reply line is longer than [`MAX_LINE`] bytes.
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A reply line is not valid UTF-8.
    #[error("reply line is not UTF-8")]
    NotUtf8,
    /// A reply line has an unterminated quote or a trailing backslash.
    #[error("reply line has an unterminated quote or escape")]
    BadQuoting,
    /// A reply line has more than [`MAX_WORDS`] words.
    #[error("reply line has more than {MAX_WORDS} words")]
    TooManyWords,
    /// A reply line is empty or is not a reply this client knows.
    #[error("unrecognised reply line")]
    Unrecognised,
    /// A reply is well formed but not the one the request expects (for
    /// example a `VAR` for another UPS, or a list that does not begin).
    #[error("reply does not answer the request")]
    Unexpected,
    /// A `LIST VAR` reply holds more than [`MAX_VARS`] variables.
    #[error("variable list longer than {MAX_VARS} entries")]
    TooManyVars,
    /// upsd answered with `ERR`.
    #[error("upsd refused: {0}")]
    Server(ErrCode),
}

/// A request to upsd. Arguments are checked and quoted when encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `USERNAME <user>`
    Username(&'a str),
    /// `PASSWORD <password>`
    Password(&'a str),
    /// `LOGIN <ups>` (declares this host draws power from the UPS).
    Login(&'a str),
    /// `LIST VAR <ups>`
    ListVar(&'a str),
    /// `GET VAR <ups> <name>`
    GetVar(&'a str, &'a str),
    /// `FSD <ups>` (sets the forced-shutdown flag; needs `upsmon primary`).
    Fsd(&'a str),
    /// `LOGOUT`
    Logout,
}

impl Request<'_> {
    /// Appends the request's line, LF-terminated, to `out`; nothing is
    /// appended when an argument cannot be sent.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let (verb, args): (&str, &[&str]) = match self {
            Request::Username(u) => ("USERNAME", &[*u][..]),
            Request::Password(p) => ("PASSWORD", &[*p][..]),
            Request::Login(u) => ("LOGIN", &[*u][..]),
            Request::ListVar(u) => ("LIST VAR", &[*u][..]),
            Request::GetVar(u, n) => ("GET VAR", &[*u, *n][..]),
            Request::Fsd(u) => ("FSD", &[*u][..]),
            Request::Logout => ("LOGOUT", &[][..]),
        };
        let mut line = String::from(verb);
        for a in args {
            line.push(' ');
            quote_into(a, &mut line)?;
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
        Ok(())
    }

    /// The request's line, LF-terminated.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = Vec::new();
        self.encode_into(&mut v)?;
        Ok(v)
    }
}

/// Appends `arg` as one protocol word: bare when it is a plain token,
/// else in double quotes with `"` and `\` escaped by a backslash.
fn quote_into(arg: &str, out: &mut String) -> Result<(), ProtoError> {
    if arg.is_empty() || arg.len() > MAX_ARG || arg.chars().any(char::is_control) {
        return Err(ProtoError::BadArgument);
    }
    let plain = arg
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'#');
    if plain {
        out.push_str(arg);
        return Ok(());
    }
    out.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

/// Splits a reply line into words: blanks separate words, `"..."` makes
/// one word (possibly empty), a backslash takes the next character
/// literally, inside quotes or not.
pub fn split_words(line: &str) -> Result<Vec<String>, ProtoError> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or(ProtoError::BadQuoting)?;
                cur.push(next);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    push_word(&mut words, std::mem::take(&mut cur))?;
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(ProtoError::BadQuoting);
    }
    if in_word {
        push_word(&mut words, cur)?;
    }
    Ok(words)
}

fn push_word(words: &mut Vec<String>, w: String) -> Result<(), ProtoError> {
    if words.len() >= MAX_WORDS {
        return Err(ProtoError::TooManyWords);
    }
    words.push(w);
    Ok(())
}

/// An `ERR` code from upsd (the protocol's documented list; others are
/// kept as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrCode {
    AccessDenied,
    UnknownUps,
    VarNotSupported,
    InvalidArgument,
    DriverNotConnected,
    DataStale,
    AlreadyLoggedIn,
    InvalidPassword,
    InvalidUsername,
    UsernameRequired,
    PasswordRequired,
    UnknownCommand,
    /// Any other code, as sent (at most one line long).
    Other(String),
}

impl ErrCode {
    fn parse(word: &str) -> ErrCode {
        match word {
            "ACCESS-DENIED" => ErrCode::AccessDenied,
            "UNKNOWN-UPS" => ErrCode::UnknownUps,
            "VAR-NOT-SUPPORTED" => ErrCode::VarNotSupported,
            "INVALID-ARGUMENT" => ErrCode::InvalidArgument,
            "DRIVER-NOT-CONNECTED" => ErrCode::DriverNotConnected,
            "DATA-STALE" => ErrCode::DataStale,
            "ALREADY-LOGGED-IN" => ErrCode::AlreadyLoggedIn,
            "INVALID-PASSWORD" => ErrCode::InvalidPassword,
            "INVALID-USERNAME" => ErrCode::InvalidUsername,
            "USERNAME-REQUIRED" => ErrCode::UsernameRequired,
            "PASSWORD-REQUIRED" => ErrCode::PasswordRequired,
            "UNKNOWN-COMMAND" => ErrCode::UnknownCommand,
            other => ErrCode::Other(other.to_string()),
        }
    }

    /// Whether the code means upsd is up but has no fresh data from the
    /// UPS (its driver is gone or silent): "no reading", not a fault of
    /// this client.
    pub fn is_no_data(&self) -> bool {
        matches!(self, ErrCode::DriverNotConnected | ErrCode::DataStale)
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrCode::AccessDenied => "ACCESS-DENIED",
            ErrCode::UnknownUps => "UNKNOWN-UPS",
            ErrCode::VarNotSupported => "VAR-NOT-SUPPORTED",
            ErrCode::InvalidArgument => "INVALID-ARGUMENT",
            ErrCode::DriverNotConnected => "DRIVER-NOT-CONNECTED",
            ErrCode::DataStale => "DATA-STALE",
            ErrCode::AlreadyLoggedIn => "ALREADY-LOGGED-IN",
            ErrCode::InvalidPassword => "INVALID-PASSWORD",
            ErrCode::InvalidUsername => "INVALID-USERNAME",
            ErrCode::UsernameRequired => "USERNAME-REQUIRED",
            ErrCode::PasswordRequired => "PASSWORD-REQUIRED",
            ErrCode::UnknownCommand => "UNKNOWN-COMMAND",
            ErrCode::Other(s) => s,
        };
        f.write_str(s)
    }
}

/// One reply line from upsd, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`, or `OK <word>` (`OK Goodbye`, `OK FSD-SET`).
    Ok(Option<String>),
    /// `Goodbye...`: older servers' answer to `LOGOUT`.
    Goodbye,
    /// `ERR <code> [extra...]`
    Err(ErrCode),
    /// `VAR <ups> <name> "<value>"`
    Var {
        ups: String,
        name: String,
        value: String,
    },
    /// `BEGIN LIST VAR <ups>`
    BeginListVar(String),
    /// `END LIST VAR <ups>`
    EndListVar(String),
}

impl Reply {
    /// Parses one line, with or without its LF (and CR).
    pub fn parse(line: &[u8]) -> Result<Reply, ProtoError> {
        if line.len() > MAX_LINE {
            return Err(ProtoError::LineTooLong);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| ProtoError::NotUtf8)?;
        let mut words = split_words(line)?.into_iter();
        let first = words.next().ok_or(ProtoError::Unrecognised)?;
        let rest: Vec<String> = words.collect();
        let w = |i: usize| rest.get(i).map(String::as_str);
        match (first.as_str(), rest.len()) {
            ("OK", 0) => Ok(Reply::Ok(None)),
            ("OK", _) => Ok(Reply::Ok(Some(rest.join(" ")))),
            ("Goodbye...", 0) => Ok(Reply::Goodbye),
            ("ERR", n) if n >= 1 => Ok(Reply::Err(ErrCode::parse(&rest[0]))),
            ("VAR", 3) => {
                let mut it = rest.into_iter();
                match (it.next(), it.next(), it.next()) {
                    (Some(ups), Some(name), Some(value)) => Ok(Reply::Var { ups, name, value }),
                    _ => Err(ProtoError::Unrecognised),
                }
            }
            ("BEGIN", 3) if w(0) == Some("LIST") && w(1) == Some("VAR") => {
                Ok(Reply::BeginListVar(rest[2].clone()))
            }
            ("END", 3) if w(0) == Some("LIST") && w(1) == Some("VAR") => {
                Ok(Reply::EndListVar(rest[2].clone()))
            }
            _ => Err(ProtoError::Unrecognised),
        }
    }
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes (LF
/// included). Holds at most [`MAX_LINE`] bytes of an unfinished line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Takes bytes from `input` until a line is complete; returns the
    /// line (LF included) and how many bytes of `input` were used. `None`
    /// when `input` ran out first (its bytes are kept). A line longer
    /// than [`MAX_LINE`] is an error, and its first bytes are dropped
    /// (the connection is out of step: the client closes it). Uses at
    /// least one byte of a non-empty `input`.
    pub fn push(&mut self, input: &[u8]) -> (Result<Option<Vec<u8>>, ProtoError>, usize) {
        let room = MAX_LINE - self.buf.len().min(MAX_LINE);
        let window = &input[..input.len().min(room)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.buf.extend_from_slice(&window[..=i]);
                (Ok(Some(std::mem::take(&mut self.buf))), i + 1)
            }
            None => {
                self.buf.extend_from_slice(window);
                if self.buf.len() >= MAX_LINE {
                    self.buf.clear();
                    (Err(ProtoError::LineTooLong), window.len())
                } else {
                    (Ok(None), window.len())
                }
            }
        }
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A `LIST VAR <ups>` reply as its lines arrive: `BEGIN LIST VAR ups`,
/// up to [`MAX_VARS`] `VAR ups name "value"` lines, `END LIST VAR ups`.
/// An `ERR` in place of `BEGIN` is [`ProtoError::Server`].
#[derive(Debug)]
pub struct VarList {
    ups: String,
    begun: bool,
    vars: Vec<(String, String)>,
}

impl VarList {
    /// Expects the reply to `LIST VAR <ups>`.
    pub fn new(ups: &str) -> VarList {
        VarList {
            ups: ups.to_string(),
            begun: false,
            vars: Vec::new(),
        }
    }

    /// Adds one reply line; the variables once it was the `END` line.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Vec<(String, String)>>, ProtoError> {
        match (self.begun, Reply::parse(line)?) {
            (false, Reply::BeginListVar(u)) if u == self.ups => {
                self.begun = true;
                Ok(None)
            }
            (false, Reply::Err(code)) => Err(ProtoError::Server(code)),
            (true, Reply::Var { ups, name, value }) if ups == self.ups => {
                if self.vars.len() >= MAX_VARS {
                    return Err(ProtoError::TooManyVars);
                }
                self.vars.push((name, value));
                Ok(None)
            }
            (true, Reply::EndListVar(u)) if u == self.ups => {
                Ok(Some(std::mem::take(&mut self.vars)))
            }
            _ => Err(ProtoError::Unexpected),
        }
    }
}

/// The answer to `GET VAR <ups> <name>`: the value.
pub fn parse_get_var(ups: &str, name: &str, line: &[u8]) -> Result<String, ProtoError> {
    match Reply::parse(line)? {
        Reply::Var {
            ups: u,
            name: n,
            value,
        } if u == ups && n == name => Ok(value),
        Reply::Err(code) => Err(ProtoError::Server(code)),
        _ => Err(ProtoError::Unexpected),
    }
}

/// The answer to a command that replies `OK` (`USERNAME`, `PASSWORD`,
/// `LOGIN`, `FSD`, `LOGOUT`): the word after `OK`, if any.
pub fn parse_ok(line: &[u8]) -> Result<Option<String>, ProtoError> {
    match Reply::parse(line)? {
        Reply::Ok(detail) => Ok(detail),
        Reply::Goodbye => Ok(Some("Goodbye".into())),
        Reply::Err(code) => Err(ProtoError::Server(code)),
        _ => Err(ProtoError::Unexpected),
    }
}

/// The flags of `ups.status` (NUT's status words). Unknown words are
/// ignored: drivers add new ones over time.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Status(u32);

impl Status {
    /// On line (mains present).
    pub const OL: Status = Status(1 << 0);
    /// On battery.
    pub const OB: Status = Status(1 << 1);
    /// Low battery.
    pub const LB: Status = Status(1 << 2);
    /// High battery.
    pub const HB: Status = Status(1 << 3);
    /// The battery needs replacing.
    pub const RB: Status = Status(1 << 4);
    /// Charging.
    pub const CHRG: Status = Status(1 << 5);
    /// Discharging.
    pub const DISCHRG: Status = Status(1 << 6);
    /// On bypass.
    pub const BYPASS: Status = Status(1 << 7);
    /// Runtime calibration.
    pub const CAL: Status = Status(1 << 8);
    /// The UPS output is off.
    pub const OFF: Status = Status(1 << 9);
    /// Overloaded.
    pub const OVER: Status = Status(1 << 10);
    /// Trimming high input voltage.
    pub const TRIM: Status = Status(1 << 11);
    /// Boosting low input voltage.
    pub const BOOST: Status = Status(1 << 12);
    /// Forced shutdown (set by the primary upsmon, or by the UPS).
    pub const FSD: Status = Status(1 << 13);
    /// An alarm is active.
    pub const ALARM: Status = Status(1 << 14);
    /// A battery test is running.
    pub const TEST: Status = Status(1 << 15);
    /// upsd has no data from the driver yet (`WAIT`, NUT 2.8).
    pub const WAIT: Status = Status(1 << 16);

    const WORDS: [(&'static str, Status); 17] = [
        ("OL", Status::OL),
        ("OB", Status::OB),
        ("LB", Status::LB),
        ("HB", Status::HB),
        ("RB", Status::RB),
        ("CHRG", Status::CHRG),
        ("DISCHRG", Status::DISCHRG),
        ("BYPASS", Status::BYPASS),
        ("CAL", Status::CAL),
        ("OFF", Status::OFF),
        ("OVER", Status::OVER),
        ("TRIM", Status::TRIM),
        ("BOOST", Status::BOOST),
        ("FSD", Status::FSD),
        ("ALARM", Status::ALARM),
        ("TEST", Status::TEST),
        ("WAIT", Status::WAIT),
    ];

    /// Decodes a `ups.status` value (`"OB DISCHRG LB"`).
    pub fn parse(value: &str) -> Status {
        let mut s = Status(0);
        for word in value.split_ascii_whitespace() {
            if let Some((_, f)) = Status::WORDS.iter().find(|(w, _)| *w == word) {
                s.0 |= f.0;
            }
        }
        s
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two flag sets.
    pub fn union(self, other: Status) -> Status {
        Status(self.0 | other.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (w, flag) in Status::WORDS {
            if self.contains(flag) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(w)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({self})")
    }
}

/// One poll's worth of what the UPS says, decoded from its variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub status: Status,
    /// `battery.charge`, percent (0..=100), when reported.
    pub charge: Option<u8>,
    /// `battery.runtime`, seconds, when reported.
    pub runtime: Option<u32>,
}

impl Reading {
    /// Decodes the variables of a `LIST VAR` reply. `None` when
    /// `ups.status` is missing, has no known flag, or is `WAIT` (upsd
    /// has no data yet): that is no reading at all.
    pub fn from_vars<'a, I>(vars: I) -> Option<Reading>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut status = None;
        let mut charge = None;
        let mut runtime = None;
        for (name, value) in vars {
            match name {
                "ups.status" => status = Some(Status::parse(value)),
                "battery.charge" => charge = parse_charge(value),
                "battery.runtime" => runtime = parse_seconds(value),
                _ => {}
            }
        }
        let status = status?;
        if status.is_empty() || status.contains(Status::WAIT) {
            return None;
        }
        Some(Reading {
            status,
            charge,
            runtime,
        })
    }
}

/// `battery.charge`: a decimal number of percent (`"87"`, `"87.5"`),
/// cut to a whole percent and clamped to 100. `None` if not a number.
pub fn parse_charge(value: &str) -> Option<u8> {
    let whole = parse_decimal(value)?;
    Some(whole.min(100) as u8)
}

/// `battery.runtime`: a decimal number of seconds, cut to whole
/// seconds; `None` if not a number or over `u32::MAX`.
pub fn parse_seconds(value: &str) -> Option<u32> {
    u32::try_from(parse_decimal(value)?).ok()
}

/// The whole part of a non-negative decimal number (`"123"`,
/// `"123.45"`); `None` for anything else (signs, exponents, commas).
fn parse_decimal(value: &str) -> Option<u64> {
    let v = value.trim();
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    int.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_to_golden_lines() {
        let cases: &[(Request, &str)] = &[
            (Request::Username("monuser"), "USERNAME monuser\n"),
            (Request::Password("secret"), "PASSWORD secret\n"),
            (
                Request::Password("pw with \"q\" \\"),
                "PASSWORD \"pw with \\\"q\\\" \\\\\"\n",
            ),
            (Request::Password("a#b"), "PASSWORD \"a#b\"\n"),
            (Request::Login("ups"), "LOGIN ups\n"),
            (Request::ListVar("su700"), "LIST VAR su700\n"),
            (
                Request::GetVar("ups", "ups.status"),
                "GET VAR ups ups.status\n",
            ),
            (Request::Fsd("ups"), "FSD ups\n"),
            (Request::Logout, "LOGOUT\n"),
        ];
        for (req, want) in cases {
            assert_eq!(String::from_utf8(req.encode().unwrap()).unwrap(), *want);
        }
    }

    #[test]
    fn unsendable_arguments_are_refused() {
        for bad in ["", "a\nLOGOUT", "x\r", "t\tab", &"x".repeat(MAX_ARG + 1)] {
            let mut out = b"kept".to_vec();
            assert_eq!(
                Request::Password(bad).encode_into(&mut out),
                Err(ProtoError::BadArgument)
            );
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn quoted_argument_splits_back_to_itself() {
        for arg in ["p w", "\"", "\\", "a \\\" b", "é ü"] {
            let line = Request::Password(arg).encode().unwrap();
            let words = split_words(std::str::from_utf8(&line).unwrap().trim_end()).unwrap();
            assert_eq!(words, vec!["PASSWORD".to_string(), arg.to_string()]);
        }
    }

    #[test]
    fn golden_reply_lines() {
        let var = |u: &str, n: &str, v: &str| Reply::Var {
            ups: u.into(),
            name: n.into(),
            value: v.into(),
        };
        let cases: &[(&[u8], Reply)] = &[
            (b"OK\n", Reply::Ok(None)),
            (b"OK Goodbye\n", Reply::Ok(Some("Goodbye".into()))),
            (b"OK FSD-SET\r\n", Reply::Ok(Some("FSD-SET".into()))),
            (b"Goodbye...\n", Reply::Goodbye),
            (b"ERR ACCESS-DENIED\n", Reply::Err(ErrCode::AccessDenied)),
            (b"ERR DATA-STALE\n", Reply::Err(ErrCode::DataStale)),
            (
                b"ERR DRIVER-NOT-CONNECTED\n",
                Reply::Err(ErrCode::DriverNotConnected),
            ),
            (
                b"ERR SOMETHING-NEW extra words\n",
                Reply::Err(ErrCode::Other("SOMETHING-NEW".into())),
            ),
            (
                b"VAR ups ups.status \"OB LB\"\n",
                var("ups", "ups.status", "OB LB"),
            ),
            (
                b"VAR su700 ups.mfr.date \"10/17/96\"\n",
                var("su700", "ups.mfr.date", "10/17/96"),
            ),
            (
                b"VAR ups ups.id \"say \\\"hi\\\" \\\\o/\"\n",
                var("ups", "ups.id", "say \"hi\" \\o/"),
            ),
            (b"VAR ups x \"\"\n", var("ups", "x", "")),
            (b"BEGIN LIST VAR ups\n", Reply::BeginListVar("ups".into())),
            (b"END LIST VAR ups\n", Reply::EndListVar("ups".into())),
        ];
        for (line, want) in cases {
            assert_eq!(
                Reply::parse(line).as_ref(),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn bad_reply_lines_are_typed_errors() {
        let long = [b'a'; MAX_LINE + 1];
        let cases: &[(&[u8], ProtoError)] = &[
            (b"\n", ProtoError::Unrecognised),
            (b"HELLO\n", ProtoError::Unrecognised),
            (b"VAR ups ups.status\n", ProtoError::Unrecognised),
            (b"VAR ups ups.status \"OL\n", ProtoError::BadQuoting),
            (b"VAR ups ups.status OL\\", ProtoError::BadQuoting),
            (b"VAR ups \xff \"OL\"\n", ProtoError::NotUtf8),
            (b"ERR\n", ProtoError::Unrecognised),
            (b"BEGIN LIST RW ups\n", ProtoError::Unrecognised),
            (&long, ProtoError::LineTooLong),
            (
                b"OK a b c d e f g h i j k l m n o p q\n",
                ProtoError::TooManyWords,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Reply::parse(line).as_ref(), Err(want));
        }
    }

    /// A `LIST VAR` reply recorded from upsd 2.8.0 with dummy-ups.
    const LIST_FIXTURE: &[u8] = b"BEGIN LIST VAR ups\n\
VAR ups battery.charge \"100\"\n\
VAR ups battery.runtime \"1800\"\n\
VAR ups device.mfr \"Dummy Manufacturer\"\n\
VAR ups device.model \"Dummy UPS\"\n\
VAR ups device.type \"ups\"\n\
VAR ups driver.name \"dummy-ups\"\n\
VAR ups driver.parameter.mode \"dummy-once\"\n\
VAR ups driver.parameter.pollinterval \"2\"\n\
VAR ups driver.version \"2.8.0\"\n\
VAR ups ups.status \"OL\"\n\
END LIST VAR ups\n";

    fn collect(ups: &str, bytes: &[u8]) -> Result<Option<Vec<(String, String)>>, ProtoError> {
        let mut split = LineSplitter::default();
        let mut list = VarList::new(ups);
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, used) = split.push(rest);
            rest = &rest[used..];
            if let Some(line) = line?
                && let Some(vars) = list.push(&line)?
            {
                return Ok(Some(vars));
            }
        }
        Ok(None)
    }

    #[test]
    fn list_var_fixture_decodes_to_a_reading() {
        let vars = collect("ups", LIST_FIXTURE).unwrap().unwrap();
        assert_eq!(vars.len(), 10);
        assert_eq!(vars[0], ("battery.charge".into(), "100".into()));
        let r = Reading::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))).unwrap();
        assert_eq!(
            r,
            Reading {
                status: Status::OL,
                charge: Some(100),
                runtime: Some(1800)
            }
        );
        // One byte at a time gives the same.
        let mut split = LineSplitter::default();
        let mut list = VarList::new("ups");
        let mut got = None;
        for b in LIST_FIXTURE.chunks(1) {
            let (line, used) = split.push(b);
            assert_eq!(used, 1);
            if let Some(line) = line.unwrap() {
                got = list.push(&line).unwrap().or(got);
            }
        }
        assert_eq!(got.unwrap(), vars);
        assert_eq!(split.pending(), 0);
    }

    #[test]
    fn list_var_errors() {
        assert_eq!(
            collect("ups", b"ERR DRIVER-NOT-CONNECTED\n"),
            Err(ProtoError::Server(ErrCode::DriverNotConnected))
        );
        assert!(
            ProtoError::Server(ErrCode::DataStale)
                .to_string()
                .contains("DATA-STALE")
        );
        assert_eq!(
            collect("ups", b"VAR ups a \"1\"\n"),
            Err(ProtoError::Unexpected)
        );
        assert_eq!(
            collect("ups", b"BEGIN LIST VAR other\n"),
            Err(ProtoError::Unexpected)
        );
        assert_eq!(
            collect("ups", b"BEGIN LIST VAR ups\nVAR other a \"1\"\n"),
            Err(ProtoError::Unexpected)
        );
        assert_eq!(
            collect("ups", b"BEGIN LIST VAR ups\nEND LIST VAR ups2\n"),
            Err(ProtoError::Unexpected)
        );
        let mut many = b"BEGIN LIST VAR ups\n".to_vec();
        for i in 0..=MAX_VARS {
            many.extend_from_slice(format!("VAR ups v{i} \"1\"\n").as_bytes());
        }
        assert_eq!(collect("ups", &many), Err(ProtoError::TooManyVars));
        let mut long = b"BEGIN LIST VAR ups\nVAR ups x \"".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        assert_eq!(collect("ups", &long), Err(ProtoError::LineTooLong));
        // The splitter goes on after an over-long line (its rest is the
        // next "line"), and always uses input.
        let mut split = LineSplitter::default();
        let (r, used) = split.push(&[b'a'; MAX_LINE + 10]);
        assert_eq!((r, used), (Err(ProtoError::LineTooLong), MAX_LINE));
        assert_eq!(split.pending(), 0);
        let (r, used) = split.push(b"aaaaaaaaaa\nOK\n");
        assert_eq!((r, used), (Ok(Some(b"aaaaaaaaaa\n".to_vec())), 11));
        // An unfinished list is no answer yet.
        assert_eq!(
            collect("ups", b"BEGIN LIST VAR ups\nVAR ups a \"1\"\n"),
            Ok(None)
        );
    }

    #[test]
    fn get_var_and_ok_replies() {
        assert_eq!(
            parse_get_var("ups", "ups.status", b"VAR ups ups.status \"OL CHRG\"\n"),
            Ok("OL CHRG".into())
        );
        assert_eq!(
            parse_get_var("ups", "ups.status", b"VAR ups battery.charge \"5\"\n"),
            Err(ProtoError::Unexpected)
        );
        assert_eq!(
            parse_get_var("ups", "x", b"ERR VAR-NOT-SUPPORTED\n"),
            Err(ProtoError::Server(ErrCode::VarNotSupported))
        );
        assert_eq!(parse_ok(b"OK\n"), Ok(None));
        assert_eq!(parse_ok(b"OK FSD-SET\n"), Ok(Some("FSD-SET".into())));
        assert_eq!(parse_ok(b"Goodbye...\n"), Ok(Some("Goodbye".into())));
        assert_eq!(
            parse_ok(b"ERR ACCESS-DENIED\n"),
            Err(ProtoError::Server(ErrCode::AccessDenied))
        );
        assert_eq!(
            parse_ok(b"BEGIN LIST VAR ups\n"),
            Err(ProtoError::Unexpected)
        );
    }

    #[test]
    fn status_words_decode_to_flags() {
        let s = Status::parse("OB DISCHRG LB");
        assert!(s.contains(Status::OB) && s.contains(Status::LB) && s.contains(Status::DISCHRG));
        assert!(!s.contains(Status::OL));
        assert_eq!(s.to_string(), "OB LB DISCHRG");
        let s = Status::parse("FSD OB LB");
        assert!(s.contains(Status::FSD.union(Status::OB).union(Status::LB)));
        let s = Status::parse("OL CHRG RB BYPASS OFF TRIM BOOST OVER CAL HB ALARM TEST");
        for f in [
            Status::OL,
            Status::CHRG,
            Status::RB,
            Status::BYPASS,
            Status::OFF,
            Status::TRIM,
            Status::BOOST,
            Status::OVER,
            Status::CAL,
            Status::HB,
            Status::ALARM,
            Status::TEST,
        ] {
            assert!(s.contains(f), "{f:?}");
        }
        assert!(Status::parse("NEWWORD ol").is_empty());
        assert_eq!(Status::parse("  OL\tNEWWORD "), Status::OL);
    }

    #[test]
    fn readings_need_a_status() {
        let r = |v: &[(&'static str, &'static str)]| Reading::from_vars(v.iter().copied());
        assert_eq!(r(&[("battery.charge", "50")]), None);
        assert_eq!(r(&[("ups.status", "WAIT")]), None);
        assert_eq!(r(&[("ups.status", "")]), None);
        let got = r(&[
            ("ups.status", "OB DISCHRG"),
            ("battery.charge", "42.7"),
            ("battery.runtime", "612.00"),
        ])
        .unwrap();
        assert_eq!(got.charge, Some(42));
        assert_eq!(got.runtime, Some(612));
        let got = r(&[
            ("ups.status", "OL"),
            ("battery.charge", "-3"),
            ("battery.runtime", "1e3"),
        ])
        .unwrap();
        assert_eq!((got.charge, got.runtime), (None, None));
    }

    #[test]
    fn numbers_are_decimal_only() {
        assert_eq!(parse_charge("100"), Some(100));
        assert_eq!(parse_charge("250"), Some(100));
        assert_eq!(parse_charge(" 7 "), Some(7));
        for bad in [
            "",
            ".",
            "5.",
            ".5",
            "+5",
            "1,5",
            "0x10",
            "9999999999999",
            "NaN",
        ] {
            assert_eq!(parse_charge(bad), None, "{bad}");
        }
        assert_eq!(parse_seconds("4294967295"), Some(u32::MAX));
        assert_eq!(parse_seconds("4294967296"), None);
    }
}
