//! SMTP command lines (RFC 5321 section 4.1) and the addresses they carry:
//! a checked parse of one line (without its CRLF) into a [`Command`].
//! It owns syntax only: whether an address may be relayed is the relay
//! policy's business, and this file never allocates more than the line.

use std::fmt;

/// Longest local part (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// At most this many ESMTP parameters on MAIL or RCPT.
pub const MAX_PARAMS: usize = 8;

/// A syntactically valid mailbox `local@domain`, as it was written
/// (quoted local parts keep their quotes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mailbox {
    pub local: String,
    pub domain: Domain,
}

/// The domain part of a mailbox: a name (lower-cased) or an address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Domain {
    Name(String),
    Literal(std::net::IpAddr),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(std::net::IpAddr::V4(a)) => write!(f, "[{a}]"),
            Domain::Literal(std::net::IpAddr::V6(a)) => write!(f, "[IPv6:{a}]"),
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl Mailbox {
    /// True when the local part, once unquoted, contains a character that
    /// old software reads as routing (`%`, `!`, `@`): the classic relay
    /// tricks.
    pub fn has_routing_characters(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }
}

/// The reverse path of MAIL FROM: the null sender `<>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReversePath {
    Null,
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str(""),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// ESMTP parameters understood on MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// `AUTH=` was given (RFC 4954 5): accepted and not used, since this
    /// server does not relay authorization identities.
    pub auth: bool,
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail(ReversePath, MailParams),
    Rcpt(Mailbox),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    StartTls,
    Etrn(String),
    /// `AUTH mechanism [initial-response]` (RFC 4954); the mechanism is
    /// upper-cased, the response is still base64.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// `BDAT size [LAST]` (RFC 3030): `size` octets of message follow the
    /// command line.
    Bdat {
        size: u64,
        last: bool,
    },
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// The verb is not one this server knows.
    #[error("command not recognized")]
    UnknownCommand,
    /// The verb is known but its arguments do not parse.
    #[error("syntax error in parameters: {0}")]
    BadArguments(&'static str),
    /// The address does not parse as an RFC 5321 path.
    #[error("bad address syntax: {0}")]
    BadAddress(&'static str),
    /// An ESMTP parameter that this server does not implement.
    #[error("parameter not implemented")]
    UnknownParameter,
    /// The line is not UTF-8.
    #[error("command line is not valid UTF-8")]
    NotUtf8,
}

impl Command {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, SyntaxError> {
        let line = std::str::from_utf8(line).map_err(|_| SyntaxError::NotUtf8)?;
        let (verb, rest) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        let no_args = |c: Command| {
            if rest.trim().is_empty() {
                Ok(c)
            } else {
                Err(SyntaxError::BadArguments("this command takes no argument"))
            }
        };
        match verb.as_str() {
            "HELO" => Ok(Command::Helo(parse_helo(rest)?)),
            "EHLO" => Ok(Command::Ehlo(parse_helo(rest)?)),
            "MAIL" => {
                let arg = strip_prefix_ci(rest, "FROM:")
                    .ok_or(SyntaxError::BadArguments("expected MAIL FROM:<address>"))?;
                let (path, params) = split_path(arg)?;
                let rp = if path == "<>" {
                    ReversePath::Null
                } else {
                    ReversePath::Mailbox(parse_path(path)?)
                };
                Ok(Command::Mail(rp, parse_mail_params(params)?))
            }
            "RCPT" => {
                let arg = strip_prefix_ci(rest, "TO:")
                    .ok_or(SyntaxError::BadArguments("expected RCPT TO:<address>"))?;
                let (path, params) = split_path(arg)?;
                if !params.trim().is_empty() {
                    return Err(SyntaxError::UnknownParameter);
                }
                // RFC 5321 4.1.1.3: `<Postmaster>` without a domain is
                // this server's postmaster; the empty domain says so.
                if path.len() == 12
                    && path[1..11].eq_ignore_ascii_case("postmaster")
                    && path.starts_with('<')
                    && path.ends_with('>')
                {
                    return Ok(Command::Rcpt(Mailbox {
                        local: path[1..11].to_string(),
                        domain: Domain::Name(String::new()),
                    }));
                }
                Ok(Command::Rcpt(parse_path(path)?))
            }
            "DATA" => no_args(Command::Data),
            "RSET" => no_args(Command::Rset),
            "QUIT" => no_args(Command::Quit),
            "STARTTLS" => no_args(Command::StartTls),
            "NOOP" => Ok(Command::Noop),
            "VRFY" => Ok(Command::Vrfy),
            "ETRN" => {
                let d = rest.trim().trim_start_matches(['@', '#']);
                if d.is_empty() || d.contains(' ') || d.len() > MAX_DOMAIN {
                    return Err(SyntaxError::BadArguments("expected ETRN domain"));
                }
                Ok(Command::Etrn(d.to_ascii_lowercase()))
            }
            "AUTH" => {
                let mut words = rest.split(' ');
                let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
                let initial = words.next().map(str::to_string);
                if mechanism.is_empty() || words.next().is_some() || initial.as_deref() == Some("")
                {
                    return Err(SyntaxError::BadArguments(
                        "expected AUTH mechanism [initial-response]",
                    ));
                }
                Ok(Command::Auth { mechanism, initial })
            }
            "BDAT" => {
                let bad = SyntaxError::BadArguments("expected BDAT size [LAST]");
                let mut words = rest.split(' ');
                let n = words.next().unwrap_or("");
                if n.is_empty() || n.len() > 19 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad);
                }
                let size = n.parse().map_err(|_| bad.clone())?;
                let last = match words.next() {
                    None => false,
                    Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                    Some(_) => return Err(bad),
                };
                if words.next().is_some() {
                    return Err(bad);
                }
                Ok(Command::Bdat { size, last })
            }
            _ => Err(SyntaxError::UnknownCommand),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start())
}

fn parse_helo(rest: &str) -> Result<String, SyntaxError> {
    let name = rest.trim();
    if name.is_empty() || name.contains(' ') || name.len() > MAX_DOMAIN {
        return Err(SyntaxError::BadArguments("expected a host name"));
    }
    Ok(name.to_string())
}

/// Splits `<path> params` at the closing bracket that ends the path,
/// honouring quoted strings.
fn split_path(arg: &str) -> Result<(&str, &str), SyntaxError> {
    if !arg.starts_with('<') {
        return Err(SyntaxError::BadAddress(
            "the address must be in angle brackets",
        ));
    }
    let bytes = arg.as_bytes();
    let mut in_quote = false;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => {
                let rest = &arg[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(SyntaxError::BadAddress("text after the closing bracket"));
                }
                return Ok((&arg[..=i], rest));
            }
            _ => {}
        }
        i += 1;
    }
    Err(SyntaxError::BadAddress("missing closing bracket"))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Parses `<local@domain>`. Source routes (`<@a,@b:user@c>`) are refused:
/// RFC 5321 lets a server ignore them, and refusing leaves no doubt about
/// where a message goes.
pub fn parse_path(path: &str) -> Result<Mailbox, SyntaxError> {
    if path.len() > MAX_PATH {
        return Err(SyntaxError::BadAddress("path longer than 256 octets"));
    }
    let inner = path
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .ok_or(SyntaxError::BadAddress(
            "the address must be in angle brackets",
        ))?;
    if inner.starts_with('@') {
        return Err(SyntaxError::BadAddress("source routes are not accepted"));
    }
    parse_mailbox(inner)
}

/// Parses `local@domain` (no brackets).
pub fn parse_mailbox(s: &str) -> Result<Mailbox, SyntaxError> {
    let (local, rest) = if let Some(q) = s.strip_prefix('"') {
        // Quoted string: find the closing quote, honouring backslashes.
        let b = q.as_bytes();
        let mut i = 0;
        let mut end = None;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => {
                    end = Some(i);
                    break;
                }
                c if c < 0x20 || c == 0x7f => {
                    return Err(SyntaxError::BadAddress(
                        "control character in quoted local part",
                    ));
                }
                _ => i += 1,
            }
        }
        let end = end.ok_or(SyntaxError::BadAddress("unterminated quoted local part"))?;
        (&s[..end + 2], &q[end + 1..])
    } else {
        let at = s
            .find('@')
            .ok_or(SyntaxError::BadAddress("expected local@domain"))?;
        let local = &s[..at];
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.chars().all(|c| c == '.' || is_atext(c))
        {
            return Err(SyntaxError::BadAddress("bad local part"));
        }
        (local, &s[at..])
    };
    if local.len() > MAX_LOCAL_PART {
        return Err(SyntaxError::BadAddress("local part longer than 64 octets"));
    }
    let domain = rest
        .strip_prefix('@')
        .ok_or(SyntaxError::BadAddress("expected @ after the local part"))?;
    Ok(Mailbox {
        local: local.to_string(),
        domain: parse_domain(domain)?,
    })
}

/// Parses a domain name or an address literal.
pub fn parse_domain(d: &str) -> Result<Domain, SyntaxError> {
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit
            .strip_suffix(']')
            .ok_or(SyntaxError::BadAddress("unterminated address literal"))?;
        let ip = if let Some(v6) = lit.strip_prefix("IPv6:") {
            v6.parse::<std::net::Ipv6Addr>().map(std::net::IpAddr::V6)
        } else {
            lit.parse::<std::net::Ipv4Addr>().map(std::net::IpAddr::V4)
        };
        return ip
            .map(Domain::Literal)
            .map_err(|_| SyntaxError::BadAddress("bad address literal"));
    }
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return Err(SyntaxError::BadAddress("bad domain length"));
    }
    let ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    });
    if !ok {
        return Err(SyntaxError::BadAddress("bad domain"));
    }
    Ok(Domain::Name(d.to_lowercase()))
}

fn parse_mail_params(params: &str) -> Result<MailParams, SyntaxError> {
    let mut p = MailParams::default();
    for (n, word) in params.split_ascii_whitespace().enumerate() {
        if n >= MAX_PARAMS {
            return Err(SyntaxError::BadArguments("too many parameters"));
        }
        let (key, value) = match word.find('=') {
            Some(i) => (&word[..i], Some(&word[i + 1..])),
            None => (word, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                p.size = Some(
                    v.parse()
                        .map_err(|_| SyntaxError::BadArguments("SIZE must be a number"))?,
                )
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => p.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {}
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("AUTH", Some(v)) if !v.is_empty() => p.auth = true,
            _ => return Err(SyntaxError::UnknownParameter),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Result<Mailbox, SyntaxError> {
        parse_path(s)
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            Command::parse(b"ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        let c = Command::parse(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME").unwrap();
        let Command::Mail(ReversePath::Mailbox(m), p) = c else {
            panic!()
        };
        assert_eq!(m.to_string(), "a@b.example");
        assert_eq!(p.size, Some(1000));
        assert!(p.eight_bit);
        assert_eq!(
            Command::parse(b"MAIL FROM:<>").unwrap(),
            Command::Mail(ReversePath::Null, MailParams::default())
        );
        assert_eq!(
            Command::parse(b"mail from: <x@Y.Example>").unwrap(),
            Command::Mail(
                ReversePath::Mailbox(Mailbox {
                    local: "x".into(),
                    domain: Domain::Name("y.example".into())
                }),
                MailParams::default()
            )
        );
        assert_eq!(Command::parse(b"DATA").unwrap(), Command::Data);
        assert!(Command::parse(b"DATA now").is_err());
        assert_eq!(
            Command::parse(b"FOO").unwrap_err(),
            SyntaxError::UnknownCommand
        );
        assert_eq!(
            Command::parse(b"MAIL FROM:<a@b> XFOO=1").unwrap_err(),
            SyntaxError::UnknownParameter
        );
        assert!(Command::parse(&[0xff, 0xfe]).is_err());
        assert_eq!(
            Command::parse(b"ETRN @home.arpa").unwrap(),
            Command::Etrn("home.arpa".into())
        );
    }

    #[test]
    fn auth_and_bdat_parse() {
        assert_eq!(
            Command::parse(b"auth plain AGEAYg==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(
            Command::parse(b"AUTH LOGIN").unwrap(),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
        assert!(Command::parse(b"AUTH").is_err());
        assert!(Command::parse(b"AUTH PLAIN a b").is_err());
        assert_eq!(
            Command::parse(b"BDAT 0 LAST").unwrap(),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        assert_eq!(
            Command::parse(b"bdat 1234 last").unwrap(),
            Command::Bdat {
                size: 1234,
                last: true
            }
        );
        assert_eq!(
            Command::parse(b"BDAT 7").unwrap(),
            Command::Bdat {
                size: 7,
                last: false
            }
        );
        for bad in [
            &b"BDAT"[..],
            b"BDAT -1",
            b"BDAT 1 FIRST",
            b"BDAT 1 LAST x",
            b"BDAT 99999999999999999999",
            b"BDAT +5",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
        let Command::Mail(_, p) = Command::parse(b"MAIL FROM:<a@b.test> AUTH=<>").unwrap() else {
            panic!()
        };
        assert!(p.auth);
    }

    #[test]
    fn address_tricks() {
        assert!(matches!(
            mb("<@a.example:b@c.example>"),
            Err(SyntaxError::BadAddress(_))
        ));
        assert!(mb("<@a.example,@b.example:u@c.example>").is_err());
        assert!(mb("<user@domain@other.example>").is_err());
        assert!(mb("<user@>").is_err());
        assert!(mb("<@>").is_err());
        assert!(mb("<user>").is_err());
        assert!(mb("user@x").is_err());
        assert!(mb("<a..b@x>").is_err());
        let q = mb("<\"a@b\"@home.arpa>").unwrap();
        assert!(q.has_routing_characters());
        assert_eq!(q.domain, Domain::Name("home.arpa".into()));
        assert!(
            mb("<u%other.example@home.arpa>")
                .unwrap()
                .has_routing_characters()
        );
        assert!(mb("<other!u@home.arpa>").unwrap().has_routing_characters());
        assert_eq!(
            mb("<u@[1.2.3.4]>").unwrap().domain,
            Domain::Literal("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            mb("<u@[IPv6:::1]>").unwrap().domain,
            Domain::Literal("::1".parse().unwrap())
        );
        assert!(mb("<u@[1.2.3]>").is_err());
        assert!(mb(&format!("<{}@x.example>", "a".repeat(65))).is_err());
        assert_eq!(mb("<δοκιμή@παράδειγμα.δοκιμή>").unwrap().local, "δοκιμή");
    }

    #[test]
    fn bare_postmaster_is_a_recipient_only() {
        let c = Command::parse(b"RCPT TO:<PostMaster>").unwrap();
        let Command::Rcpt(m) = c else { panic!() };
        assert_eq!(
            (m.local.as_str(), m.domain),
            ("PostMaster", Domain::Name(String::new()))
        );
        assert!(Command::parse(b"RCPT TO:<postmasters>").is_err());
        assert!(Command::parse(b"RCPT TO:<root>").is_err());
        assert!(Command::parse(b"MAIL FROM:<postmaster>").is_err());
    }

    #[test]
    fn quoted_brackets_do_not_end_the_path() {
        let c = Command::parse(b"RCPT TO:<\"a>b\"@home.arpa>").unwrap();
        let Command::Rcpt(m) = c else { panic!() };
        assert_eq!(m.local, "\"a>b\"");
    }

    #[test]
    fn random_lines_never_panic() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let alphabet = b"<>@:.,\"\\ %![]MAILFROMRCPTTO:=SIZE0123456789abc\x00\xff";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize;
            let mut line = Vec::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                line.push(alphabet[(y % alphabet.len() as u64) as usize]);
            }
            if x.is_multiple_of(3) {
                line.splice(0..0, b"RCPT TO:".iter().copied());
            }
            let _ = Command::parse(&line);
        }
    }
}
