//! The Authentication-Results header field (RFC 8601): formatting the
//! board's own field from the SPF, DKIM, DMARC (and iprev) results, and
//! the predicate that finds incoming fields claiming our authserv-id,
//! which must be removed before ours is added (RFC 8601 5). Pure text.

use super::dkim::{DkimOutcome, DkimResult};
use super::dmarc::DmarcVerdict;

/// An SPF result (RFC 7208 2.6), as the SPF check reports it.
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
}
