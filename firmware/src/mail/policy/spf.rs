//! SPF (RFC 7208): is the client allowed to send for the MAIL FROM
//! domain, or for its HELO name when the reverse path is null? The record
//! parser ([`parse`], pure, fuzzed) checks the whole record first (a
//! syntax error anywhere is a permerror, 4.6); [`check_host`] evaluates it
//! through a [`Resolve`]: every mechanism (all, include, a, mx, ptr, ip4,
//! ip6, exists), the redirect modifier, the macros of section 7 in
//! domain-specs, the 10 DNS-term limit and the 2 void-lookup limit
//! (4.6.4). The `exp` modifier is parsed and ignored (we never explain a
//! fail to the sender), so the `c`, `r`, `t` macros (exp only) are a
//! permerror elsewhere; `%{p}` expands to `unknown` (7.3 allows it; the
//! validated-name lookups are not worth their DNS traffic). It decides no
//! reply: [`super::Checks`] turns the result into a score or a refusal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

use crate::config::{Action, SpfConfig};
use crate::mail::lookup::{Answer, Record, Resolve, Rtype, reverse_name};
use crate::mail::name::Name;

/// DNS-querying terms (include, a, mx, ptr, exists, redirect) per check.
pub const MAX_DNS_TERMS: u32 = 10;
/// Lookups answering nothing (NXDOMAIN, no data) per check.
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// MX names, PTR names and address lookups per mechanism (4.6.4).
pub const MAX_NAMES_PER_TERM: usize = 10;
/// Longest record parsed (more is a permerror).
pub const MAX_RECORD_BYTES: usize = crate::mail::lookup::MAX_TXT_BYTES;
/// Longest expanded domain-spec (7.3: longer ones lose left labels).
const MAX_DOMAIN_BYTES: usize = 253;
/// Longest macro expansion before that cut: more is an error (a record of
/// a few kilobytes of `%{S}` must not make a megabyte).
pub const MAX_EXPANDED_BYTES: usize = 2048;

/// The result of a check (RFC 7208 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    /// The result's name as Authentication-Results (RFC 8601) and
    /// Received-SPF write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// Which identity was checked (RFC 7208 2.3, 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The MAIL FROM domain.
    MailFrom,
    /// The HELO name, for a null reverse path.
    Helo,
}

/// A finished check, kept for the rest of the session: the
/// Authentication-Results writer reads `identity`, `domain` and `result`
/// (`smtp.mailfrom` or `smtp.helo`), DMARC aligns `domain`, greylisting
/// auto-allows with [`SpfOutcome::passes_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    pub result: SpfResult,
    pub identity: Identity,
    /// The domain checked, lower case, without the final dot.
    pub domain: String,
    /// The sender checked: the MAIL FROM address, or `postmaster@<helo>`.
    pub sender: String,
    pub client: IpAddr,
}

impl SpfOutcome {
    /// The result as an Authentication-Results method (RFC 8601 2.7.2):
    /// `spf=pass smtp.mailfrom=user@example.org`, or `smtp.helo=<name>`.
    pub fn auth_results(&self) -> String {
        match self.identity {
            Identity::MailFrom => {
                format!("spf={} smtp.mailfrom={}", self.result.as_str(), self.sender)
            }
            Identity::Helo => format!("spf={} smtp.helo={}", self.result.as_str(), self.domain),
        }
    }

    /// The client passed SPF for `domain` (the MAIL FROM identity).
    pub fn passes_for(&self, domain: &str) -> bool {
        self.result == SpfResult::Pass
            && self.identity == Identity::MailFrom
            && self
                .domain
                .eq_ignore_ascii_case(domain.trim_end_matches('.'))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

/// A mechanism; domain-specs are kept as macro-strings (checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(String),
    /// Target, IPv4 prefix length, IPv6 prefix length.
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ptr(Option<String>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(String),
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecord {
    pub directives: Vec<(Qualifier, Mechanism)>,
    pub redirect: Option<String>,
    /// Parsed and ignored.
    pub exp: Option<String>,
}

/// Why a record is a permerror before evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpfSyntax {
    #[error("not an SPF record (no v=spf1)")]
    NotSpf,
    #[error("record over {MAX_RECORD_BYTES} bytes")]
    TooLong,
    #[error("bad term {0:?}")]
    BadTerm(String),
    #[error("bad macro in {0:?}")]
    BadMacro(String),
    #[error("modifier {0} given twice")]
    Twice(&'static str),
}

/// True when a TXT string is an SPF version 1 record (4.5).
pub fn is_spf(txt: &[u8]) -> bool {
    txt.len() >= 6 && txt[..6].eq_ignore_ascii_case(b"v=spf1") && (txt.len() == 6 || txt[6] == b' ')
}

/// Parses a whole record (`v=spf1 ...`).
pub fn parse(record: &[u8]) -> Result<SpfRecord, SpfSyntax> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(SpfSyntax::TooLong);
    }
    if !is_spf(record) {
        return Err(SpfSyntax::NotSpf);
    }
    let text = std::str::from_utf8(&record[6..])
        .ok()
        .filter(|t| t.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
        .ok_or_else(|| SpfSyntax::BadTerm(String::from_utf8_lossy(record).into_owned()))?;
    let mut out = SpfRecord {
        directives: Vec::new(),
        redirect: None,
        exp: None,
    };
    for term in text.split(' ').filter(|t| !t.is_empty()) {
        let bad = || SpfSyntax::BadTerm(term.to_string());
        // A modifier: name "=" macro-string.
        if let Some((name, value)) = term.split_once('=')
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            if name.eq_ignore_ascii_case("redirect") {
                check_domain_spec(value)?;
                if out.redirect.replace(value.to_string()).is_some() {
                    return Err(SpfSyntax::Twice("redirect"));
                }
            } else if name.eq_ignore_ascii_case("exp") {
                // Explanations may use c, r, t (7.2).
                expand_checked(value, true).ok_or_else(|| SpfSyntax::BadMacro(term.into()))?;
                if out.exp.replace(value.to_string()).is_some() {
                    return Err(SpfSyntax::Twice("exp"));
                }
            } else {
                // Unknown modifiers are ignored, but must be well formed.
                expand_checked(value, true).ok_or_else(|| SpfSyntax::BadMacro(term.into()))?;
            }
            continue;
        }
        let (q, rest) = match term.as_bytes()[0] {
            b'+' => (Qualifier::Pass, &term[1..]),
            b'-' => (Qualifier::Fail, &term[1..]),
            b'~' => (Qualifier::SoftFail, &term[1..]),
            b'?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let split = rest.find([':', '/']).unwrap_or(rest.len());
        let (name, arg) = rest.split_at(split);
        let spec = arg.strip_prefix(':');
        let m = match name.to_ascii_lowercase().as_str() {
            "all" if arg.is_empty() => Mechanism::All,
            "include" => Mechanism::Include(required_spec(spec, term)?),
            "exists" => Mechanism::Exists(required_spec(spec, term)?),
            "ptr" => Mechanism::Ptr(match spec {
                Some(s) => Some(required_spec(Some(s), term)?),
                None if arg.is_empty() => None,
                None => return Err(bad()),
            }),
            "a" | "mx" => {
                let (target, c4, c6) = dual_cidr(arg).ok_or_else(bad)?;
                let target = match target {
                    Some(t) => Some(required_spec(Some(t), term)?),
                    None => None,
                };
                if name.eq_ignore_ascii_case("a") {
                    Mechanism::A(target, c4, c6)
                } else {
                    Mechanism::Mx(target, c4, c6)
                }
            }
            "ip4" => {
                let (a, len) = spec
                    .ok_or_else(bad)?
                    .split_once('/')
                    .map_or((spec.unwrap_or_default(), Some(32)), |(a, l)| {
                        (a, cidr(l, 32))
                    });
                Mechanism::Ip4(a.parse().map_err(|_| bad())?, len.ok_or_else(bad)?)
            }
            "ip6" => {
                let (a, len) = spec
                    .ok_or_else(bad)?
                    .split_once('/')
                    .map_or((spec.unwrap_or_default(), Some(128)), |(a, l)| {
                        (a, cidr(l, 128))
                    });
                Mechanism::Ip6(a.parse().map_err(|_| bad())?, len.ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        };
        out.directives.push((q, m));
    }
    Ok(out)
}

fn cidr(digits: &str, max: u8) -> Option<u8> {
    if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse::<u8>().ok().filter(|&n| n <= max)
}

/// `a`/`mx` arguments: `[:domain-spec][/cidr4][//cidr6]`.
fn dual_cidr(arg: &str) -> Option<(Option<&str>, u8, u8)> {
    let mut rest = arg;
    let mut c6 = 128;
    let mut c4 = 32;
    if let Some(i) = rest.rfind("//") {
        c6 = cidr(&rest[i + 2..], 128)?;
        rest = &rest[..i];
    }
    if let Some(i) = rest.rfind('/')
        && rest[i + 1..].bytes().all(|b| b.is_ascii_digit())
    {
        c4 = cidr(&rest[i + 1..], 32)?;
        rest = &rest[..i];
    }
    if rest.is_empty() {
        return Some((None, c4, c6));
    }
    Some((Some(rest.strip_prefix(':')?), c4, c6))
}

fn required_spec(spec: Option<&str>, term: &str) -> Result<String, SpfSyntax> {
    let s = spec
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SpfSyntax::BadTerm(term.to_string()))?;
    check_domain_spec(s)?;
    Ok(s.to_string())
}

/// A domain-spec's macros are well formed, and one without macros ends in
/// a top label (not all digits).
fn check_domain_spec(s: &str) -> Result<(), SpfSyntax> {
    let bad = || SpfSyntax::BadMacro(s.to_string());
    expand_checked(s, false).ok_or_else(bad)?;
    if !s.contains('%') {
        let top = s.trim_end_matches('.').rsplit('.').next().unwrap_or("");
        if top.is_empty() || top.bytes().all(|b| b.is_ascii_digit()) || !s.contains('.') {
            return Err(SpfSyntax::BadTerm(s.to_string()));
        }
    }
    Ok(())
}

/// The values the macros expand to.
#[derive(Debug, Clone)]
pub struct MacroCtx<'a> {
    pub sender: &'a str,
    pub local: &'a str,
    pub sender_domain: &'a str,
    pub domain: &'a str,
    pub ip: IpAddr,
    pub helo: &'a str,
}

/// Checks a macro-string's syntax with placeholder values.
fn expand_checked(s: &str, exp: bool) -> Option<String> {
    let ctx = MacroCtx {
        sender: "a@b.c",
        local: "a",
        sender_domain: "b.c",
        domain: "b.c",
        ip: IpAddr::from([0, 0, 0, 0]),
        helo: "b.c",
    };
    expand(s, &ctx, exp)
}

/// Expands a macro-string (RFC 7208 section 7); `None` on a syntax error
/// or past [`MAX_EXPANDED_BYTES`]. `exp`: the `c`, `r`, `t` macros are
/// allowed (explanations only).
pub fn expand(s: &str, ctx: &MacroCtx<'_>, exp: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if out.len() > MAX_EXPANDED_BYTES {
            return None;
        }
        let c = b[i];
        if c != b'%' {
            if !(0x21..=0x7e).contains(&c) {
                return None;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            b'%' => out.push('%'),
            b'_' => out.push(' '),
            b'-' => out.push_str("%20"),
            b'{' => {
                let end = i + 2 + s[i + 2..].find('}')?;
                out.push_str(&macro_expand(&s[i + 2..end], ctx, exp)?);
                i = end + 1;
                continue;
            }
            _ => return None,
        }
        i += 2;
    }
    (out.len() <= MAX_EXPANDED_BYTES).then_some(out)
}

/// One `%{...}` body: letter, digits, `r`, delimiters.
fn macro_expand(body: &str, ctx: &MacroCtx<'_>, exp: bool) -> Option<String> {
    let mut chars = body.chars();
    let letter = chars.next()?;
    let rest = chars.as_str();
    let digits_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
    let keep = if digits_len > 0 {
        let n: usize = rest[..digits_len].parse().ok()?;
        if n == 0 {
            return None;
        }
        Some(n)
    } else {
        None
    };
    let mut rest = &rest[digits_len..];
    let reverse = if let Some(r) = rest.strip_prefix(['r', 'R']) {
        rest = r;
        true
    } else {
        false
    };
    if !rest.bytes().all(|b| b"-.+,/_=".contains(&b)) {
        return None;
    }
    let delims: &str = if rest.is_empty() { "." } else { rest };
    let value = match letter.to_ascii_lowercase() {
        's' => ctx.sender.to_string(),
        'l' => ctx.local.to_string(),
        'o' => ctx.sender_domain.to_string(),
        'd' => ctx.domain.to_string(),
        'i' => match ctx.ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let mut s = String::with_capacity(64);
                for b in v6.octets() {
                    s.push_str(&format!("{:x}.{:x}.", b >> 4, b & 0xf));
                }
                s.pop();
                s
            }
        },
        'p' => "unknown".into(),
        'v' => if ctx.ip.to_canonical().is_ipv4() {
            "in-addr"
        } else {
            "ip6"
        }
        .into(),
        'h' => ctx.helo.to_string(),
        'c' | 'r' | 't' if exp => String::new(),
        _ => return None,
    };
    let mut parts: Vec<&str> = value.split(|c| delims.contains(c)).collect();
    if reverse {
        parts.reverse();
    }
    if let Some(n) = keep
        && n < parts.len()
    {
        parts.drain(..parts.len() - n);
    }
    let joined = parts.join(".");
    if letter.is_ascii_uppercase() {
        let mut esc = String::with_capacity(joined.len() * 3);
        for b in joined.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                esc.push(b as char);
            } else {
                esc.push_str(&format!("%{b:02X}"));
            }
        }
        return Some(esc);
    }
    Some(joined)
}

/// A name from an expanded domain-spec: left labels dropped past 253
/// bytes (7.3); `None` when it is not a name.
fn target_name(expanded: &str) -> Option<Name> {
    let mut t = expanded.trim_end_matches('.');
    while t.len() > MAX_DOMAIN_BYTES {
        t = t.split_once('.')?.1;
    }
    Name::from_ascii(t).ok()
}

/// A domain fit for a check (4.3): at least two labels, each 1 to 63
/// bytes, 253 in all.
fn valid_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    d.len() <= MAX_DOMAIN_BYTES
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && Name::from_ascii(d).is_ok()
}

/// The check of one identity, with the limits' counters.
struct Ctx<'a, R> {
    r: &'a R,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    dns_terms: u32,
    void: u32,
}

type Eval = Result<bool, SpfResult>;

/// The outcome of a check not yet finished: the identity checked, with
/// a temperror (what it stays if it does not finish within its budget).
/// `from` is the MAIL FROM address `local@domain`; `None` for a null
/// reverse path (the HELO identity).
pub fn pending(ip: IpAddr, helo: &str, from: Option<&str>) -> SpfOutcome {
    let helo = helo.trim_end_matches('.').to_ascii_lowercase();
    let (identity, sender) = match from {
        Some(f) => (Identity::MailFrom, f.to_string()),
        None => (Identity::Helo, format!("postmaster@{helo}")),
    };
    let domain = sender
        .rsplit_once('@')
        .map_or(sender.as_str(), |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    SpfOutcome {
        result: SpfResult::TempError,
        identity,
        domain,
        sender,
        client: ip,
    }
}

/// Runs the SPF check of a session: the MAIL FROM identity, or the HELO
/// identity for a null reverse path (see [`pending`]).
pub async fn check<R: Resolve>(r: &R, ip: IpAddr, helo: &str, from: Option<&str>) -> SpfOutcome {
    let mut out = pending(ip, helo, from);
    let local = match out.sender.rsplit_once('@') {
        Some((l, _)) if !l.is_empty() => l.to_string(),
        _ => "postmaster".into(),
    };
    let mut ctx = Ctx {
        r,
        ip: ip.to_canonical(),
        sender: out.sender.clone(),
        local,
        sender_domain: out.domain.clone(),
        helo: helo.trim_end_matches('.').to_ascii_lowercase(),
        dns_terms: 0,
        void: 0,
    };
    out.result = if valid_domain(&out.domain) {
        check_host(&mut ctx, out.domain.clone()).await
    } else {
        SpfResult::None
    };
    out
}

/// check_host() of RFC 7208 section 4 for `domain`.
fn check_host<'a, R: Resolve>(
    ctx: &'a mut Ctx<'_, R>,
    domain: String,
) -> Pin<Box<dyn std::future::Future<Output = SpfResult> + Send + 'a>> {
    Box::pin(async move {
        let Some(name) = target_name(&domain) else {
            return SpfResult::None;
        };
        let records = match ctx.r.query(&name, Rtype::Txt).await {
            Answer::Temporary(_) => return SpfResult::TempError,
            Answer::Empty => return SpfResult::None,
            Answer::Records(v) => v,
        };
        let mut spf = records.iter().filter_map(|r| match r {
            Record::Txt(t) if is_spf(t) => Some(t),
            _ => None,
        });
        let (Some(text), None) = (spf.next(), spf.next()) else {
            // None, or more than one record (4.5).
            return if records
                .iter()
                .any(|r| matches!(r, Record::Txt(t) if is_spf(t)))
            {
                SpfResult::PermError
            } else {
                SpfResult::None
            };
        };
        let Ok(record) = parse(text) else {
            return SpfResult::PermError;
        };
        for (q, m) in &record.directives {
            match mechanism(ctx, &domain, m).await {
                Err(e) => return e,
                Ok(true) => {
                    return match q {
                        Qualifier::Pass => SpfResult::Pass,
                        Qualifier::Fail => SpfResult::Fail,
                        Qualifier::SoftFail => SpfResult::SoftFail,
                        Qualifier::Neutral => SpfResult::Neutral,
                    };
                }
                Ok(false) => {}
            }
        }
        if let Some(target) = &record.redirect {
            if let Err(e) = count_term(ctx) {
                return e;
            }
            let Some(t) = spec(ctx, &domain, target) else {
                return SpfResult::PermError;
            };
            return match check_host(ctx, t).await {
                SpfResult::None => SpfResult::PermError,
                other => other,
            };
        }
        SpfResult::Neutral
    })
}

fn count_term<R>(ctx: &mut Ctx<'_, R>) -> Result<(), SpfResult> {
    ctx.dns_terms += 1;
    if ctx.dns_terms > MAX_DNS_TERMS {
        return Err(SpfResult::PermError);
    }
    Ok(())
}

/// A domain-spec expanded for the current `domain`.
fn spec<R>(ctx: &Ctx<'_, R>, domain: &str, s: &str) -> Option<String> {
    let m = MacroCtx {
        sender: &ctx.sender,
        local: &ctx.local,
        sender_domain: &ctx.sender_domain,
        domain,
        ip: ctx.ip,
        helo: &ctx.helo,
    };
    expand(s, &m, false)
}

/// A lookup for a mechanism: records, or none (counted as void), or
/// temperror.
async fn lookup<R: Resolve>(
    ctx: &mut Ctx<'_, R>,
    name: &Name,
    t: Rtype,
) -> Result<Vec<Record>, SpfResult> {
    match ctx.r.query(name, t).await {
        Answer::Records(v) => Ok(v),
        Answer::Empty => {
            ctx.void += 1;
            if ctx.void > MAX_VOID_LOOKUPS {
                return Err(SpfResult::PermError);
            }
            Ok(Vec::new())
        }
        Answer::Temporary(_) => Err(SpfResult::TempError),
    }
}

fn addr_type(ip: IpAddr) -> Rtype {
    if ip.is_ipv4() { Rtype::A } else { Rtype::Aaaa }
}

fn in_prefix(ip: IpAddr, net: IpAddr, c4: u8, c6: u8) -> bool {
    match (ip, net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(c4)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(c6)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

async fn mechanism<R: Resolve>(ctx: &mut Ctx<'_, R>, domain: &str, m: &Mechanism) -> Eval {
    let ip = ctx.ip;
    let target = |ctx: &Ctx<'_, R>, t: &Option<String>| match t {
        Some(s) => spec(ctx, domain, s),
        None => Some(domain.to_string()),
    };
    match m {
        Mechanism::All => Ok(true),
        Mechanism::Ip4(n, c) => Ok(in_prefix(ip, IpAddr::V4(*n), *c, 0)),
        Mechanism::Ip6(n, c) => Ok(in_prefix(ip, IpAddr::V6(*n), 0, *c)),
        Mechanism::Include(s) => {
            count_term(ctx)?;
            let t = spec(ctx, domain, s).ok_or(SpfResult::PermError)?;
            match check_host(ctx, t).await {
                SpfResult::Pass => Ok(true),
                SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                SpfResult::TempError => Err(SpfResult::TempError),
                SpfResult::PermError | SpfResult::None => Err(SpfResult::PermError),
            }
        }
        Mechanism::A(t, c4, c6) => {
            count_term(ctx)?;
            let Some(name) = target(ctx, t).as_deref().and_then(target_name) else {
                return Ok(false);
            };
            let recs = lookup(ctx, &name, addr_type(ip)).await?;
            Ok(matches_any(&recs, ip, *c4, *c6))
        }
        Mechanism::Mx(t, c4, c6) => {
            count_term(ctx)?;
            let Some(name) = target(ctx, t).as_deref().and_then(target_name) else {
                return Ok(false);
            };
            let hosts = lookup(ctx, &name, Rtype::Mx).await?;
            if hosts.len() > MAX_NAMES_PER_TERM {
                return Err(SpfResult::PermError);
            }
            for h in hosts {
                if let Record::Name(h) = h {
                    let recs = lookup(ctx, &h, addr_type(ip)).await?;
                    if matches_any(&recs, ip, *c4, *c6) {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        }
        Mechanism::Ptr(t) => {
            count_term(ctx)?;
            let Some(want) = target(ctx, t) else {
                return Ok(false);
            };
            let want = want.trim_end_matches('.').to_ascii_lowercase();
            let Some(rev) = reverse_name(ip, crate::mail::lookup::ptr_zone(ip)) else {
                return Ok(false);
            };
            // A DNS error on the PTR lookup: no match (5.5).
            let names = match lookup(ctx, &rev, Rtype::Ptr).await {
                Ok(v) => v,
                Err(SpfResult::PermError) => return Err(SpfResult::PermError),
                Err(_) => return Ok(false),
            };
            for n in names.into_iter().take(MAX_NAMES_PER_TERM) {
                let Record::Name(n) = n else { continue };
                let text = n.to_ascii().trim_end_matches('.').to_string();
                let under = text == want || text.ends_with(&format!(".{want}"));
                if !under {
                    continue;
                }
                // Errors on the address lookups skip the name.
                if let Answer::Records(recs) = ctx.r.query(&n, addr_type(ip)).await
                    && matches_any(&recs, ip, 32, 128)
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Mechanism::Exists(s) => {
            count_term(ctx)?;
            let Some(name) = spec(ctx, domain, s).as_deref().and_then(target_name) else {
                return Ok(false);
            };
            Ok(!lookup(ctx, &name, Rtype::A).await?.is_empty())
        }
    }
}

fn matches_any(recs: &[Record], ip: IpAddr, c4: u8, c6: u8) -> bool {
    recs.iter()
        .any(|r| matches!(r, Record::Addr(a) if in_prefix(ip, *a, c4, c6)))
}

/// The verdict's part of an outcome, per `[mail.policy.spf]`: fail and
/// softfail score or refuse (550 5.7.23); temperror is incomplete (451
/// 4.7.24 at most, and only when fail or softfail would refuse); none,
/// neutral, pass and permerror count nothing.
pub fn finding(o: &SpfOutcome, c: &SpfConfig) -> Option<super::Finding> {
    use super::Finding;
    let what = |r: &str| {
        format!(
            "SPF {r}: {} may not send for {} ({})",
            o.client,
            o.domain,
            if o.identity == Identity::Helo {
                "HELO"
            } else {
                "MAIL FROM"
            }
        )
    };
    let act = |a: Action, score: i32, w: String| match a {
        Action::Reject => Finding::Reject(crate::smtp::Reply::new(550, "5.7.23", w)),
        Action::Score => Finding::Score(score, w),
    };
    match o.result {
        SpfResult::Fail => Some(act(c.fail, c.fail_score, what("fail"))),
        SpfResult::SoftFail => Some(act(c.softfail, c.softfail_score, what("softfail"))),
        SpfResult::TempError => {
            let score = |a, s: i32| if a == Action::Score { s } else { 0 };
            let scores = [
                score(c.fail, c.fail_score),
                score(c.softfail, c.softfail_score),
            ];
            let rejects = c.fail == Action::Reject || c.softfail == Action::Reject;
            Some(Finding::Incomplete {
                what: format!("SPF of {} incomplete (temperror)", o.domain),
                low: scores.iter().copied().min().unwrap_or(0).min(0),
                high: scores.iter().copied().max().unwrap_or(0).max(0),
                reject: rejects.then(|| super::incomplete_reply("4.7.24", "SPF")),
            })
        }
        SpfResult::None | SpfResult::Neutral | SpfResult::Pass | SpfResult::PermError => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::lookup::Fixture;
    use std::sync::Arc;

    /// RFC 7208 appendix A's zone.
    fn appendix_a() -> Fixture {
        let mut f = Fixture::default();
        f.names(
            "example.com",
            Rtype::Mx,
            &["mail-a.example.com", "mail-b.example.com"],
        )
        .addr("example.com", "192.0.2.10")
        .addr("example.com", "192.0.2.11")
        .addr("amy.example.com", "192.0.2.65")
        .addr("bob.example.com", "192.0.2.66")
        .addr("mail-a.example.com", "192.0.2.129")
        .addr("mail-b.example.com", "192.0.2.130")
        .addr("www.example.com", "192.0.2.10")
        .addr("www.example.com", "192.0.2.11")
        .addr("mail-c.example.org", "192.0.2.140")
        .names("example.org", Rtype::Mx, &["mail-c.example.org"])
        .ptr("192.0.2.10", &["example.com"])
        .ptr("192.0.2.11", &["example.com"])
        .ptr("192.0.2.65", &["amy.example.com"])
        .ptr("192.0.2.66", &["bob.example.com"])
        .ptr("192.0.2.129", &["mail-a.example.com"])
        .ptr("192.0.2.130", &["mail-b.example.com"])
        .ptr("192.0.2.140", &["mail-c.example.org"])
        .ptr("10.0.0.4", &["bob.example.com"]);
        f
    }

    async fn run(mut f: Fixture, record: &str, ip: &str) -> SpfResult {
        f.txt("example.com", record);
        let f = Arc::new(f);
        check(
            &f,
            ip.parse().unwrap(),
            "mx.example.com",
            Some("joe@example.com"),
        )
        .await
        .result
    }

    /// Appendix A.1: each record, and which of the zone's hosts pass.
    #[tokio::test(flavor = "current_thread")]
    async fn appendix_a1_simple_examples() {
        let hosts = [
            "192.0.2.10",
            "192.0.2.11",
            "192.0.2.65",
            "192.0.2.66",
            "192.0.2.129",
            "192.0.2.130",
            "192.0.2.140",
            "10.0.0.4",
        ];
        let cases: [(&str, &[&str]); 9] = [
            ("v=spf1 +all", &hosts),
            ("v=spf1 a -all", &["192.0.2.10", "192.0.2.11"]),
            ("v=spf1 a:example.org -all", &[]),
            ("v=spf1 mx -all", &["192.0.2.129", "192.0.2.130"]),
            ("v=spf1 mx:example.org -all", &["192.0.2.140"]),
            (
                "v=spf1 mx mx:example.org -all",
                &["192.0.2.129", "192.0.2.130", "192.0.2.140"],
            ),
            (
                "v=spf1 mx/30 mx:example.org/30 -all",
                &["192.0.2.129", "192.0.2.130", "192.0.2.140"],
            ),
            (
                "v=spf1 ptr -all",
                &[
                    "192.0.2.10",
                    "192.0.2.11",
                    "192.0.2.65",
                    "192.0.2.66",
                    "192.0.2.129",
                    "192.0.2.130",
                ],
            ),
            (
                "v=spf1 ip4:192.0.2.128/28 -all",
                &["192.0.2.129", "192.0.2.130", "192.0.2.140"],
            ),
        ];
        for (record, pass) in cases {
            for h in hosts {
                let want = if pass.contains(&h) {
                    SpfResult::Pass
                } else {
                    SpfResult::Fail
                };
                assert_eq!(run(appendix_a(), record, h).await, want, "{record} {h}");
            }
        }
        // mx/30 also takes the neighbours of the MX hosts.
        assert_eq!(
            run(
                appendix_a(),
                "v=spf1 mx/30 mx:example.org/30 -all",
                "192.0.2.131"
            )
            .await,
            SpfResult::Pass
        );
    }

    /// Appendix A.2 (multiple domains), A.3 (DNSBL style) and A.4
    /// (multiple requirements).
    #[tokio::test(flavor = "current_thread")]
    async fn appendix_a2_a3_a4() {
        let run = |f: Fixture| {
            let f = Arc::new(f);
            move |ip: &str, from: &str| {
                let f = f.clone();
                let ip: IpAddr = ip.parse().unwrap();
                let from = from.to_string();
                async move { check(&f, ip, "h.test", Some(&from)).await.result }
            }
        };
        // A.2.
        let mut f = appendix_a();
        f.txt("la.example.org", "v=spf1 redirect=example.org")
            .txt(
                "example.org",
                "v=spf1 include:example.com include:example.net -all",
            )
            .txt("example.com", "v=spf1 mx -all")
            .txt("example.net", "v=spf1 ip4:198.51.100.0/24 -all");
        let c = run(f);
        assert_eq!(c("192.0.2.129", "a@la.example.org").await, SpfResult::Pass);
        assert_eq!(c("198.51.100.7", "a@la.example.org").await, SpfResult::Pass);
        assert_eq!(c("192.0.2.65", "a@la.example.org").await, SpfResult::Fail);
        // A.3.
        let mut f = appendix_a();
        f.txt(
            "example.com",
            "v=spf1 mx include:mobile-users._spf.%{d} include:remote-users._spf.%{d} -all",
        )
        .txt(
            "mobile-users._spf.example.com",
            "v=spf1 exists:%{l1r+}.%{d}",
        )
        .txt(
            "remote-users._spf.example.com",
            "v=spf1 exists:%{ir}.%{l1r+}.%{d}",
        )
        .addr("mary.mobile-users._spf.example.com", "127.0.0.2")
        .addr("fred.mobile-users._spf.example.com", "127.0.0.2")
        .addr(
            "15.15.168.192.joel.remote-users._spf.example.com",
            "127.0.0.2",
        )
        .addr(
            "16.15.168.192.joel.remote-users._spf.example.com",
            "127.0.0.2",
        );
        let c = run(f);
        assert_eq!(c("1.2.3.4", "mary@example.com").await, SpfResult::Pass);
        assert_eq!(c("1.2.3.4", "fred@example.com").await, SpfResult::Pass);
        assert_eq!(
            c("1.2.3.4", "fred+wildcard@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(c("1.2.3.4", "joel@example.com").await, SpfResult::Fail);
        assert_eq!(
            c("192.168.15.15", "joel@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            c("192.168.15.16", "joel@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            c("192.168.15.17", "joel@example.com").await,
            SpfResult::Fail
        );
        assert_eq!(
            c("192.0.2.129", "anyone@example.com").await,
            SpfResult::Pass
        );
        // A.4, as printed: `ptr` in ptr._spf.example.com defaults to that
        // domain, which no PTR name is under: every host fails.
        let a4 = |ptr_record: &str| {
            let mut f = appendix_a();
            f.txt(
                "example.com",
                "v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all",
            )
            .txt("ip4._spf.example.com", "v=spf1 -ip4:192.0.2.0/24 +all")
            .txt("ptr._spf.example.com", ptr_record);
            run(f)
        };
        let c = a4("v=spf1 -ptr +all");
        for ip in ["192.0.2.10", "192.0.2.65", "10.0.0.4", "198.51.100.1"] {
            assert_eq!(c(ip, "joe@example.com").await, SpfResult::Fail, "{ip}");
        }
        // As meant (`-ptr:example.com`): in 192.0.2.0/24 with a validated
        // PTR name in example.com passes, everything else fails.
        let c = a4("v=spf1 -ptr:example.com +all");
        assert_eq!(c("192.0.2.10", "joe@example.com").await, SpfResult::Pass);
        assert_eq!(c("192.0.2.65", "joe@example.com").await, SpfResult::Pass);
        assert_eq!(c("192.0.2.1", "joe@example.com").await, SpfResult::Fail);
        assert_eq!(c("192.0.2.140", "joe@example.com").await, SpfResult::Fail);
        assert_eq!(c("198.51.100.1", "joe@example.com").await, SpfResult::Fail);
        // `exp` is parsed and ignored.
        let mut f = appendix_a();
        f.txt("example.com", "v=spf1 mx -all exp=explain._spf.%{d}");
        let c = run(f);
        assert_eq!(c("192.0.2.10", "joe@example.com").await, SpfResult::Fail);
        assert_eq!(c("192.0.2.129", "joe@example.com").await, SpfResult::Pass);
    }

    /// Section 7.4's macro examples.
    #[test]
    fn macro_examples() {
        let ctx = MacroCtx {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: "192.0.2.3".parse().unwrap(),
            helo: "h.example.com",
        };
        let cases = [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
            ("%{S}", "strong-bad%40email.example.com"),
            ("a%%b%_c%-d", "a%b c%20d"),
        ];
        for (m, want) in cases {
            assert_eq!(expand(m, &ctx, false).as_deref(), Some(want), "{m}");
        }
        let v6 = MacroCtx {
            ip: "2001:db8::cb01".parse().unwrap(),
            ..ctx.clone()
        };
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", &v6, false).unwrap(),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
        for bad in ["%{d0}", "%{x}", "%{c}", "%", "%x", "%{d", "a b"] {
            assert_eq!(expand(bad, &ctx, false), None, "{bad}");
        }
        assert!(expand("%{c}", &ctx, true).is_some());
        // Bounded: 60 senders fit, 100 escaped ones do not.
        assert!(expand(&"%{s}".repeat(60), &ctx, false).is_some());
        assert_eq!(expand(&"%{S}".repeat(100), &ctx, false), None);
    }

    #[test]
    fn parsing() {
        let r = parse(b"v=spf1 a/24//64 mx:m.example.org/28 -ptr ~ip6:2001:db8::/32 ?exists:%{i}.x.test include:_spf.test redirect=r.test exp=e.%{d} unknown=%{h}").unwrap();
        assert_eq!(r.directives.len(), 6);
        assert_eq!(
            r.directives[0],
            (Qualifier::Pass, Mechanism::A(None, 24, 64))
        );
        assert_eq!(
            r.directives[1].1,
            Mechanism::Mx(Some("m.example.org".into()), 28, 128)
        );
        assert_eq!(r.redirect.as_deref(), Some("r.test"));
        assert!(parse(b"v=spf1 -all exp=%{c}.%{r}.%{t}.x.test").is_ok());
        for bad in [
            "v=spf1 a:",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3",
            "v=spf1 foo",
            "v=spf1 redirect=a.test redirect=b.test",
            "v=spf1 include:%{q}.test",
            "v=spf1 all:x",
            "v=spf1 a//129",
            "v=spf1 a:example.123",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(parse(b"v=spf10"), Err(SpfSyntax::NotSpf));
        assert!(parse(b"V=SPF1").unwrap().directives.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn results_limits_and_errors() {
        let ip = "192.0.2.1";
        // No record: none; two records: permerror; syntax error: permerror.
        assert_eq!(run(Fixture::default(), "hello", ip).await, SpfResult::None);
        let mut two = Fixture::default();
        two.txt("example.com", "v=spf1 -all");
        assert_eq!(run(two, "v=spf1 +all", ip).await, SpfResult::PermError);
        assert_eq!(
            run(Fixture::default(), "v=spf1 bogus", ip).await,
            SpfResult::PermError
        );
        assert_eq!(
            run(Fixture::default(), "v=spf1", ip).await,
            SpfResult::Neutral
        );
        assert_eq!(
            run(Fixture::default(), "v=spf1 ~all", ip).await,
            SpfResult::SoftFail
        );
        assert_eq!(
            run(Fixture::default(), "v=spf1 ?all", ip).await,
            SpfResult::Neutral
        );
        // The TXT lookup fails: temperror; an `a` lookup fails: temperror.
        let mut t = Fixture::default();
        t.set(
            "example.com",
            Rtype::Txt,
            Answer::Temporary("timed out".into()),
        );
        let f = Arc::new(t);
        let r = check(&f, ip.parse().unwrap(), "h", Some("a@example.com")).await;
        assert_eq!(r.result, SpfResult::TempError);
        let mut t = Fixture::default();
        t.set("slow.test", Rtype::A, Answer::Temporary("SERVFAIL".into()));
        assert_eq!(
            run(t, "v=spf1 a:slow.test -all", ip).await,
            SpfResult::TempError
        );
        // Three void lookups: permerror; two are fine.
        assert_eq!(
            run(Fixture::default(), "v=spf1 a:x.test a:y.test -all", ip).await,
            SpfResult::Fail
        );
        assert_eq!(
            run(
                Fixture::default(),
                "v=spf1 a:x.test a:y.test a:z.test -all",
                ip
            )
            .await,
            SpfResult::PermError
        );
        // Eleven DNS terms: permerror (the records exist: no void).
        let mut f = Fixture::default();
        for i in 0..11 {
            f.addr(&format!("h{i}.test"), "198.51.100.1");
        }
        let ten: String = (0..10).map(|i| format!(" a:h{i}.test")).collect();
        let eleven: String = (0..11).map(|i| format!(" a:h{i}.test")).collect();
        let f2 = Fixture {
            map: f.map.clone(),
            ..Fixture::default()
        };
        assert_eq!(
            run(f, &format!("v=spf1{ten} -all"), ip).await,
            SpfResult::Fail
        );
        assert_eq!(
            run(f2, &format!("v=spf1{eleven} -all"), ip).await,
            SpfResult::PermError
        );
        // include of a domain without a record: permerror; a redirect loop
        // ends at the term limit.
        assert_eq!(
            run(Fixture::default(), "v=spf1 include:none.test -all", ip).await,
            SpfResult::PermError
        );
        assert_eq!(
            run(Fixture::default(), "v=spf1 redirect=example.com", ip).await,
            SpfResult::PermError
        );
        // IPv6 clients and ip6.
        assert_eq!(
            run(
                Fixture::default(),
                "v=spf1 ip6:2001:db8::/32 -all",
                "2001:db8::5"
            )
            .await,
            SpfResult::Pass
        );
        assert_eq!(
            run(
                Fixture::default(),
                "v=spf1 ip4:192.0.2.0/24 -all",
                "::ffff:192.0.2.9"
            )
            .await,
            SpfResult::Pass
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn null_sender_checks_helo() {
        let mut f = Fixture::default();
        f.txt("mta.example.net", "v=spf1 ip4:192.0.2.5 -all");
        let f = Arc::new(f);
        let o = check(&f, "192.0.2.5".parse().unwrap(), "MTA.example.net", None).await;
        assert_eq!(o.result, SpfResult::Pass);
        assert_eq!(o.identity, Identity::Helo);
        assert_eq!(o.sender, "postmaster@mta.example.net");
        assert!(
            !o.passes_for("mta.example.net"),
            "HELO is not a sender domain"
        );
        let o = check(&f, "192.0.2.5".parse().unwrap(), "[192.0.2.5]", None).await;
        assert_eq!(o.result, SpfResult::None);
        let mut f = Fixture::default();
        f.txt("example.net", "v=spf1 ip4:192.0.2.5 -all");
        let f = Arc::new(f);
        let o = check(&f, "192.0.2.5".parse().unwrap(), "h", Some("x@Example.NET")).await;
        assert!(o.passes_for("example.net."));
        assert_eq!(o.result.as_str(), "pass");
        assert_eq!(o.auth_results(), "spf=pass smtp.mailfrom=x@Example.NET");
    }
}
