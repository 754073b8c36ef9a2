//! The Authentication-Results header field (RFC 8601): formatting the
//! board's own field from the SPF, DKIM, DMARC (and iprev) results, and
//! the predicate that finds incoming fields claiming our authserv-id,
//! which must be removed before ours is added (RFC 8601 5). Pure text.

use super::dkim::{DkimOutcome, DkimResult, MAX_HEADER_SECTION};
use super::dmarc::DmarcVerdict;

/// The SPF check's own result type (RFC 7208 2.6).
pub use super::spf::SpfResult;

/// The SPF check of one message: its result and the identity checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    pub result: SpfResult,
    /// The domain checked: the MAIL FROM domain, or the HELO name for
    /// the null reverse-path.
    pub domain: String,
    /// True when `domain` is the HELO name (smtp.helo=), not MAIL FROM.
    pub helo: bool,
}

/// An iprev result (RFC 8601 3): the client address and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IprevCheck {
    /// pass, fail, temperror or permerror.
    pub result: &'static str,
    pub ip: std::net::IpAddr,
}

/// A value as a `value` of RFC 8601 2.2: a token when it is one, else a
/// quoted-string.
fn value(v: &str) -> String {
    let token = !v.is_empty()
        && v.bytes().all(|c| {
            c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&c) || c == b'@' || c == b'.'
        });
    if token {
        v.to_string()
    } else {
        let inner: String = v
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                _ => vec![c],
            })
            .collect();
        format!("\"{inner}\"")
    }
}

/// The board's `Authentication-Results:` field with its line break, one
/// method per folded line. An empty `dkim` slice is `dkim=none`.
pub fn format(
    authserv_id: &str,
    iprev: Option<&IprevCheck>,
    spf: Option<&SpfCheck>,
    dkim: &[DkimOutcome],
    dmarc: Option<&DmarcVerdict>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(i) = iprev {
        parts.push(format!(
            "iprev={} policy.iprev={}",
            i.result,
            value(&i.ip.to_string())
        ));
    }
    if let Some(s) = spf {
        let kind = if s.helo { "smtp.helo" } else { "smtp.mailfrom" };
        parts.push(format!(
            "spf={} {kind}={}",
            s.result.as_str(),
            value(&s.domain)
        ));
    }
    if dkim.is_empty() {
        parts.push("dkim=none".into());
    }
    for d in dkim {
        let mut p = format!("dkim={}", d.result.as_str());
        if let Some(r) = &d.reason
            && d.result != DkimResult::Pass
        {
            let r: String = r
                .chars()
                .filter(|c| *c != '(' && *c != ')' && *c != '\\')
                .collect();
            p.push_str(&format!(" ({r})"));
        }
        if let Some(dom) = &d.domain {
            p.push_str(&format!(" header.d={}", value(dom)));
        }
        if let Some(s) = &d.selector {
            p.push_str(&format!(" header.s={}", value(s)));
        }
        parts.push(p);
    }
    if let Some(m) = dmarc {
        let mut p = format!("dmarc={}", m.result.as_str());
        if let Some(pol) = m.policy {
            p.push_str(&format!(" (p={})", pol.as_str()));
        }
        if !m.from_domain.is_empty() {
            p.push_str(&format!(" header.from={}", value(&m.from_domain)));
        }
        parts.push(p);
    }
    let mut out = format!("Authentication-Results: {}", value(authserv_id));
    for p in parts {
        out.push_str(";\r\n\t");
        out.push_str(&p);
    }
    out.push_str("\r\n");
    out
}

/// True when the value of an incoming Authentication-Results field
/// names `authserv_id` (case-insensitively): such a field claims to be
/// ours and must be removed (RFC 8601 5). Comments (CFWS) before the id
/// and an optional version after it are allowed; a field that cannot be
/// parsed is not ours.
pub fn claims_authserv_id(field_value: &[u8], authserv_id: &str) -> bool {
    let mut s = field_value;
    loop {
        while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
            s = rest;
        }
        // Skip a comment (nested parentheses).
        if s.first() == Some(&b'(') {
            let mut depth = 0usize;
            let mut i = 0;
            while i < s.len() {
                match s[i] {
                    b'\\' => i += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i >= s.len() {
                return false;
            }
            s = &s[i + 1..];
            continue;
        }
        break;
    }
    let id: Vec<u8> = if s.first() == Some(&b'"') {
        let Some(end) = s[1..].iter().position(|&c| c == b'"') else {
            return false;
        };
        s[1..1 + end].to_vec()
    } else {
        s.iter()
            .copied()
            .take_while(|c| !matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
            .collect()
    };
    !id.is_empty() && id.eq_ignore_ascii_case(authserv_id.as_bytes())
}

/// Removes, from a message as it streams to the spool, the incoming
/// Authentication-Results fields that claim our authserv-id (RFC 8601 5:
/// a forged "dkim=pass" from us must not reach the household's server).
/// The header section is held until its end (an empty line), at most
/// [`MAX_HEADER_SECTION`] bytes; a longer one is passed on unfiltered
/// (the DKIM verifier gives such a message `permerror` anyway). Every
/// other byte passes unchanged and in order.
pub struct ForgedResults {
    authserv_id: String,
    held: Vec<u8>,
    /// The header section has been passed on: the rest streams through.
    through: bool,
    dropped: usize,
}

impl ForgedResults {
    pub fn new(authserv_id: &str) -> ForgedResults {
        ForgedResults {
            authserv_id: authserv_id.to_string(),
            held: Vec::new(),
            through: false,
            dropped: 0,
        }
    }

    /// The bytes of `chunk` (with any held before) to store now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.through {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        if let Some(end) = header_end(&self.held) {
            let rest = self.held.split_off(end);
            let mut out = self.filter();
            out.extend_from_slice(&rest);
            return out;
        }
        if self.held.len() > MAX_HEADER_SECTION {
            self.through = true;
            return std::mem::take(&mut self.held);
        }
        Vec::new()
    }

    /// As [`ForgedResults::push`], without a copy once the header section
    /// has passed (the listener's hot path).
    pub fn push_owned(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        if self.through {
            return chunk;
        }
        self.push(&chunk)
    }

    /// At the message's end: what is still held (a message that is all
    /// header section), filtered.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.through {
            return Vec::new();
        }
        self.filter()
    }

    /// How many fields were removed.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn filter(&mut self) -> Vec<u8> {
        self.through = true;
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(held.len());
        for span in spans(&held) {
            let forged = span
                .iter()
                .position(|&c| c == b':')
                .filter(|&colon| {
                    span[..colon]
                        .trim_ascii_end()
                        .eq_ignore_ascii_case(b"Authentication-Results")
                })
                .is_some_and(|colon| claims_authserv_id(&span[colon + 1..], &self.authserv_id));
            if forged {
                self.dropped += 1;
            } else {
                out.extend_from_slice(span);
            }
        }
        out
    }
}

/// Where the header section ends: just after the line break of the
/// empty line that ends it (or at 0 when the message starts with one).
fn header_end(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// A header section cut into spans: a field with its continuation lines,
/// or any other line, each with its line break; together, every byte.
fn spans(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let start = i;
        loop {
            match b[i..].iter().position(|&c| c == b'\n') {
                Some(p) => i += p + 1,
                None => i = b.len(),
            }
            // The empty line ends the section: a span of its own.
            if i >= b.len() || b[start..i] == *b"\r\n" || !matches!(b[i], b' ' | b'\t') {
                break;
            }
        }
        Some(&b[start..i])
    })
}

#[cfg(test)]
mod tests {
    use super::super::dmarc::{Disposition, DmarcResult};
    use super::*;

    #[test]
    fn formats_every_method() {
        let spf = SpfCheck {
            result: SpfResult::Pass,
            domain: "example.org".into(),
            helo: false,
        };
        let dkim = vec![
            DkimOutcome {
                result: DkimResult::Pass,
                domain: Some("example.org".into()),
                selector: Some("s1".into()),
                reason: None,
            },
            DkimOutcome {
                result: DkimResult::Fail,
                domain: Some("other.example".into()),
                selector: Some("x".into()),
                reason: Some("body hash did not verify".into()),
            },
        ];
        let dmarc = DmarcVerdict {
            result: DmarcResult::Pass,
            policy: Some(Disposition::Reject),
            from_domain: "example.org".into(),
            pct: 100,
        };
        let iprev = IprevCheck {
            result: "pass",
            ip: "192.0.2.1".parse().unwrap(),
        };
        let f = format(
            "mx.home.example",
            Some(&iprev),
            Some(&spf),
            &dkim,
            Some(&dmarc),
        );
        assert_eq!(
            f,
            "Authentication-Results: mx.home.example;\r\n\
             \tiprev=pass policy.iprev=192.0.2.1;\r\n\
             \tspf=pass smtp.mailfrom=example.org;\r\n\
             \tdkim=pass header.d=example.org header.s=s1;\r\n\
             \tdkim=fail (body hash did not verify) header.d=other.example header.s=x;\r\n\
             \tdmarc=pass (p=reject) header.from=example.org\r\n"
        );
        let bare = format("mx", None, None, &[], None);
        assert_eq!(bare, "Authentication-Results: mx;\r\n\tdkim=none\r\n");
        assert_eq!(value("a b\"c"), "\"a b\\\"c\"");
    }

    #[test]
    fn finds_fields_claiming_our_id() {
        let ours = "mx.home.example";
        assert!(claims_authserv_id(b" mx.home.example; spf=pass", ours));
        assert!(claims_authserv_id(b" MX.Home.Example 1; dkim=pass", ours));
        assert!(claims_authserv_id(
            b" (forged (nested)) mx.home.example;",
            ours
        ));
        assert!(claims_authserv_id(b" \"mx.home.example\"; none", ours));
        assert!(!claims_authserv_id(
            b" mx.home.example.evil; spf=pass",
            ours
        ));
        assert!(!claims_authserv_id(b" other.example; spf=pass", ours));
        assert!(!claims_authserv_id(b" (unclosed mx.home.example", ours));
        assert!(!claims_authserv_id(b"", ours));
    }

    #[test]
    fn forged_results_are_removed_across_chunks_and_the_rest_passes() {
        let msg: &[u8] = b"Received: from x\r\n\
Authentication-Results: board.home.arpa;\r\n dkim=pass header.d=bank.example\r\n\
Authentication-Results: other.example; spf=pass\r\n\
Subject: hi\r\n\
authentication-results: (c) BOARD.home.arpa; dmarc=pass\r\n\
\r\n\
Authentication-Results: board.home.arpa; in the body, kept\r\n";
        let want: &[u8] = b"Received: from x\r\n\
Authentication-Results: other.example; spf=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: board.home.arpa; in the body, kept\r\n";
        for size in [1, 3, 7, 64, msg.len()] {
            let mut f = ForgedResults::new("board.home.arpa");
            let mut out = Vec::new();
            for c in msg.chunks(size) {
                out.extend(f.push(c));
            }
            out.extend(f.finish());
            assert_eq!(out, want, "chunks of {size}");
            assert_eq!(f.dropped(), 2);
        }
        // A message that is all header section, without the empty line.
        let mut f = ForgedResults::new("board.home.arpa");
        assert!(
            f.push(b"Subject: x\r\nAuthentication-Results: board.home.arpa; none\r\n")
                .is_empty()
        );
        assert_eq!(f.finish(), b"Subject: x\r\n");
        // Over the bound: passed on unfiltered, nothing lost.
        let mut f = ForgedResults::new("board.home.arpa");
        let big = vec![b'a'; MAX_HEADER_SECTION + 1];
        let mut out = f.push(b"X: ");
        out.extend(f.push(&big));
        out.extend(f.push(b"\r\n\r\nbody"));
        out.extend(f.finish());
        assert_eq!(out.len(), 3 + big.len() + 8);
    }
}
