//! DMARC (RFC 7489): the policy record, its discovery for the
//! RFC5322.From domain, and the alignment of the SPF and DKIM identities
//! with that domain. Pure: the caller resolves the names
//! [`query_names`] gives (TXT, through the local cache), then calls
//! [`evaluate`]; time and randomness (pct=) are passed in.
//!
//! The organizational domain. RFC 7489 uses the Public Suffix List,
//! about 200 KiB of text that would have to be kept current on the
//! board. Instead, the DNS tree walk of DMARCbis: `_dmarc` is queried at
//! the From domain and at each parent down to two labels (at most
//! [`MAX_WALK`] names); the policy record is the first found (the From
//! domain's, else the nearest parent's, whose sp= applies); the
//! organizational domain is the shortest name holding a record (one
//! label below it when that record says psd=y). Its limit: a domain
//! whose registrable parent publishes no DMARC record is its own
//! organizational domain, so relaxed alignment with a sibling or parent
//! d= fails there (a stricter answer, never a laxer one).

use super::authres::{SpfCheck, SpfResult};
use super::dkim::record::{is_name, within};
use super::dkim::tags::{self, TagError};
use super::dkim::{DkimOutcome, DkimResult, TxtAnswer, TxtLookup};
use crate::smtp::Reply;

/// At most this many `_dmarc` names are queried for one message
/// (DMARCbis' tree walk bound).
pub const MAX_WALK: usize = 8;
/// A DMARC TXT record longer than this is ignored as malformed.
pub const MAX_RECORD: usize = 2048;

/// A requested handling of failing mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    None,
    Quarantine,
    Reject,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::None => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }

    fn parse(v: &str) -> Option<Disposition> {
        match v {
            "none" => Some(Disposition::None),
            "quarantine" => Some(Disposition::Quarantine),
            "reject" => Some(Disposition::Reject),
            _ => None,
        }
    }
}

/// Identifier alignment mode (adkim=, aspf=).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Relaxed,
    Strict,
}

/// Why a DMARC record was refused (a permerror).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmarcError {
    #[error("{0}")]
    Tags(#[from] TagError),
    /// v=DMARC1 is not the first tag.
    #[error("not a DMARC1 record")]
    Version,
    /// p= is missing or not none, quarantine or reject (or sp= is bad).
    #[error("bad p= or sp=")]
    Policy,
    /// adkim= or aspf= is not r or s.
    #[error("bad adkim= or aspf=")]
    Alignment,
    /// pct= is not a number from 0 to 100.
    #[error("bad pct=")]
    Pct,
}

/// A validated DMARC record (rua=, ruf=, fo=, rf=, ri= are not used:
/// the board sends no reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcRecord {
    pub policy: Disposition,
    pub subdomain_policy: Option<Disposition>,
    pub adkim: Alignment,
    pub aspf: Alignment,
    pub pct: u8,
    /// psd=y (DMARCbis): the record of a public suffix.
    pub psd: bool,
}

impl DmarcRecord {
    pub fn parse(text: &[u8]) -> Result<DmarcRecord, DmarcError> {
        let tags = tags::parse(text)?;
        if tags.first().map(|t| (t.name, t.value)) != Some(("v", "DMARC1")) {
            return Err(DmarcError::Version);
        }
        let disp = |n| tags::get(&tags, n).map(|v| Disposition::parse(v).ok_or(DmarcError::Policy));
        let policy = disp("p").ok_or(DmarcError::Policy)??;
        let subdomain_policy = disp("sp").transpose()?;
        let align = |n| match tags::get(&tags, n) {
            None | Some("r") => Ok(Alignment::Relaxed),
            Some("s") => Ok(Alignment::Strict),
            Some(_) => Err(DmarcError::Alignment),
        };
        let pct = match tags::get(&tags, "pct") {
            None => 100,
            Some(v) => match v.parse::<u8>() {
                Ok(n) if n <= 100 && v.bytes().all(|c| c.is_ascii_digit()) => n,
                _ => return Err(DmarcError::Pct),
            },
        };
        Ok(DmarcRecord {
            policy,
            subdomain_policy,
            adkim: align("adkim")?,
            aspf: align("aspf")?,
            pct,
            psd: tags::get(&tags, "psd") == Some("y"),
        })
    }
}

/// A DMARC result (RFC 8601 2.7.1 / RFC 7489 11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcResult {
    None,
    Pass,
    Fail,
    TempError,
    PermError,
}

impl DmarcResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcResult::None => "none",
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

/// The DMARC verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcVerdict {
    pub result: DmarcResult,
    /// The domain owner's requested policy (p= or sp=), when a record
    /// was found.
    pub policy: Option<Disposition>,
    /// The RFC5322.From domain ("" when it could not be found).
    pub from_domain: String,
    /// pct= of the record (100 without one).
    pub pct: u8,
}

impl DmarcVerdict {
    /// The disposition to apply: the policy on a fail, after pct=
    /// sampling (`roll`: uniform in 0..100), stepping reject down to
    /// quarantine and quarantine to none when not sampled (RFC 7489 6.6.4).
    pub fn disposition(&self, roll: u8) -> Disposition {
        match (self.result, self.policy) {
            (DmarcResult::Fail, Some(p)) if roll < self.pct => p,
            (DmarcResult::Fail, Some(Disposition::Reject)) => Disposition::Quarantine,
            _ => Disposition::None,
        }
    }

    /// The reply refusing the message, when `honour_reject` is on and the
    /// disposition is reject: 550 5.7.1. Never for a temperror (nor
    /// anything but a real fail).
    pub fn reply(&self, honour_reject: bool, roll: u8) -> Option<Reply> {
        (honour_reject && self.disposition(roll) == Disposition::Reject).then(|| {
            Reply::new(
                550,
                "5.7.1",
                format!(
                    "Rejected by the DMARC policy of {} (no aligned SPF or DKIM pass)",
                    self.from_domain
                ),
            )
        })
    }
}

/// The `_dmarc` names to query for `from_domain`, From domain first,
/// then its parents down to two labels; at most [`MAX_WALK`] (a longer
/// name skips to its last `MAX_WALK - 1` labels, as DMARCbis does).
pub fn query_names(from_domain: &str) -> Vec<String> {
    let d = from_domain.trim_end_matches('.').to_ascii_lowercase();
    if !is_name(&d) {
        return Vec::new();
    }
    let labels: Vec<&str> = d.split('.').collect();
    let mut names = vec![format!("_dmarc.{d}")];
    let first_parent = 1.max(labels.len().saturating_sub(MAX_WALK - 1));
    for i in first_parent..labels.len().saturating_sub(1) {
        names.push(format!("_dmarc.{}", labels[i..].join(".")));
    }
    names
}

/// The domain of the one address in the one From field of `head`, lower
/// case; `None` when there is no From, more than one, or its address is
/// not a domain name (DMARC cannot apply; RFC 7489 6.6.1).
pub fn from_domain(head: &[u8]) -> Option<String> {
    let fields = super::dkim::canon::fields(head);
    let mut from = fields.iter().filter(|f| f.is("from"));
    let f = from.next()?;
    if from.next().is_some() {
        return None;
    }
    let v = std::str::from_utf8(f.value()).ok()?;
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    if addr.contains(',') {
        return None;
    }
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    is_name(&domain).then_some(domain)
}

fn aligned(identifier: &str, from: &str, org: &str, mode: Alignment) -> bool {
    let id = identifier.trim_end_matches('.').to_ascii_lowercase();
    match mode {
        Alignment::Strict => id == from,
        Alignment::Relaxed => within(&id, org),
    }
}

/// The DMARC verdict for a message whose From domain is `from`, given
/// the SPF check (MAIL FROM identity), the DKIM outcomes and the TXT
/// answers for [`query_names`]`(from)`.
pub fn evaluate(
    from: &str,
    spf: Option<&SpfCheck>,
    dkim: &[DkimOutcome],
    dns: &dyn TxtLookup,
) -> DmarcVerdict {
    let from = from.trim_end_matches('.').to_ascii_lowercase();
    let mut verdict = DmarcVerdict {
        result: DmarcResult::None,
        policy: None,
        from_domain: from.clone(),
        pct: 100,
    };
    let names = query_names(&from);
    // (policy record, found at the From domain), shortest record name.
    let mut found: Option<(Result<DmarcRecord, DmarcError>, bool)> = None;
    let mut org: Option<(String, bool)> = None;
    let mut temp = false;
    for (i, name) in names.iter().enumerate() {
        let records = match dns.txt(name) {
            TxtAnswer::TempFail => {
                if found.is_none() {
                    verdict.result = DmarcResult::TempError;
                    return verdict;
                }
                temp = true;
                continue;
            }
            TxtAnswer::NotFound => continue,
            TxtAnswer::Records(r) => r,
        };
        let dmarc: Vec<&Vec<u8>> = records
            .iter()
            .filter(|r| r.len() <= MAX_RECORD && r.trim_ascii_start().starts_with(b"v=DMARC1"))
            .collect();
        if dmarc.len() != 1 {
            if dmarc.len() > 1 && found.is_none() {
                // More than one record: no policy (RFC 7489 6.6.3).
                return verdict;
            }
            continue;
        }
        let rec = DmarcRecord::parse(dmarc[0]);
        let domain = name.trim_start_matches("_dmarc.").to_string();
        let psd = rec.as_ref().is_ok_and(|r| r.psd);
        org = Some((domain, psd));
        if found.is_none() {
            found = Some((rec, i == 0));
        }
    }
    let Some((rec, at_from)) = found else {
        return verdict;
    };
    let rec = match rec {
        Ok(r) => r,
        Err(_) => {
            verdict.result = DmarcResult::PermError;
            return verdict;
        }
    };
    let org = match org {
        // One label below a public suffix's record, toward From.
        Some((o, true)) => names
            .iter()
            .map(|n| n.trim_start_matches("_dmarc."))
            .filter(|n| within(n, &o) && n.len() > o.len())
            .min_by_key(|n| n.len())
            .unwrap_or(&from)
            .to_string(),
        Some((o, false)) => o,
        None => from.clone(),
    };
    verdict.policy = Some(if at_from {
        rec.policy
    } else {
        rec.subdomain_policy.unwrap_or(rec.policy)
    });
    verdict.pct = rec.pct;
    let spf_ok = spf
        .is_some_and(|s| s.result == SpfResult::Pass && aligned(&s.domain, &from, &org, rec.aspf));
    let dkim_ok = dkim.iter().any(|d| {
        d.result == DkimResult::Pass
            && d.domain
                .as_deref()
                .is_some_and(|dom| aligned(dom, &from, &org, rec.adkim))
    });
    verdict.result = if spf_ok || dkim_ok {
        DmarcResult::Pass
    } else if temp {
        // A parent's lookup failed: the organizational domain may be
        // shorter than found, so the fail is not certain.
        DmarcResult::TempError
    } else {
        DmarcResult::Fail
    };
    verdict
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn dns(records: &[(&str, TxtAnswer)]) -> HashMap<String, TxtAnswer> {
        let mut m: HashMap<String, TxtAnswer> = HashMap::new();
        for (n, a) in records {
            m.insert(n.to_string(), a.clone());
        }
        m
    }

    fn rec(s: &str) -> TxtAnswer {
        TxtAnswer::Records(vec![s.as_bytes().to_vec()])
    }

    fn dkim_pass(d: &str) -> DkimOutcome {
        DkimOutcome {
            result: DkimResult::Pass,
            domain: Some(d.into()),
            selector: Some("s".into()),
            reason: None,
        }
    }

    fn spf(result: SpfResult, d: &str) -> SpfCheck {
        SpfCheck {
            result,
            domain: d.into(),
            helo: false,
        }
    }

    #[test]
    fn record_parsing() {
        let r = DmarcRecord::parse(b"v=DMARC1; p=reject; sp=none; adkim=s; pct=50; rua=mailto:x@y")
            .unwrap();
        assert_eq!(r.policy, Disposition::Reject);
        assert_eq!(r.subdomain_policy, Some(Disposition::None));
        assert_eq!(
            (r.adkim, r.aspf, r.pct),
            (Alignment::Strict, Alignment::Relaxed, 50)
        );
        assert_eq!(
            DmarcRecord::parse(b"p=reject; v=DMARC1"),
            Err(DmarcError::Version)
        );
        assert_eq!(DmarcRecord::parse(b"v=DMARC1"), Err(DmarcError::Policy));
        assert_eq!(
            DmarcRecord::parse(b"v=DMARC1; p=drop"),
            Err(DmarcError::Policy)
        );
        assert_eq!(
            DmarcRecord::parse(b"v=DMARC1; p=none; aspf=x"),
            Err(DmarcError::Alignment)
        );
        assert_eq!(
            DmarcRecord::parse(b"v=DMARC1; p=none; pct=101"),
            Err(DmarcError::Pct)
        );
        assert_eq!(
            DmarcRecord::parse(b"v=DMARC1; p=none; pct=+5"),
            Err(DmarcError::Pct)
        );
    }

    #[test]
    fn query_names_walk_to_two_labels() {
        assert_eq!(
            query_names("a.b.Example.com."),
            [
                "_dmarc.a.b.example.com",
                "_dmarc.b.example.com",
                "_dmarc.example.com"
            ]
        );
        assert_eq!(query_names("example.com"), ["_dmarc.example.com"]);
        let long = query_names("1.2.3.4.5.6.7.8.9.10.example.com");
        assert!(long.len() <= MAX_WALK);
        assert_eq!(long[1], "_dmarc.6.7.8.9.10.example.com");
        assert_eq!(long.last().unwrap(), "_dmarc.example.com");
        assert!(query_names("bad..name").is_empty());
    }

    #[test]
    fn from_domain_of_header() {
        assert_eq!(
            from_domain(b"To: x@y\r\nFrom: \"Joe\" <Joe@Mail.Example.COM>\r\n").as_deref(),
            Some("mail.example.com")
        );
        assert_eq!(
            from_domain(b"From: a@b.example\r\n").as_deref(),
            Some("b.example")
        );
        assert_eq!(
            from_domain(b"From: a@x.example\r\nFrom: b@y.example\r\n"),
            None
        );
        assert_eq!(from_domain(b"From: a@x.example, b@y.example\r\n"), None);
        assert_eq!(from_domain(b"To: a@x.example\r\n"), None);
    }

    #[test]
    fn alignment_and_policy() {
        let d = dns(&[
            (
                "_dmarc.example.com",
                rec("v=DMARC1; p=reject; sp=quarantine"),
            ),
            ("_dmarc.mail.example.com", TxtAnswer::NotFound),
        ]);
        // Relaxed DKIM alignment through the organizational domain.
        let v = evaluate("mail.example.com", None, &[dkim_pass("example.com")], &d);
        assert_eq!(v.result, DmarcResult::Pass);
        assert_eq!(v.policy, Some(Disposition::Quarantine));
        // SPF aligned (relaxed), DKIM of another domain.
        let v = evaluate(
            "example.com",
            Some(&spf(SpfResult::Pass, "bounces.example.com")),
            &[dkim_pass("other.example")],
            &d,
        );
        assert_eq!(
            (v.result, v.policy),
            (DmarcResult::Pass, Some(Disposition::Reject))
        );
        // Nothing aligned: fail, and reject only when honoured.
        let v = evaluate(
            "example.com",
            Some(&spf(SpfResult::Pass, "example.net")),
            &[dkim_pass("notexample.com")],
            &d,
        );
        assert_eq!(v.result, DmarcResult::Fail);
        assert_eq!(v.reply(false, 0), None);
        let r = v.reply(true, 0).unwrap();
        assert_eq!((r.code, r.enhanced), (550, Some("5.7.1")));
        // SPF softfail does not count.
        let v = evaluate(
            "example.com",
            Some(&spf(SpfResult::SoftFail, "example.com")),
            &[],
            &d,
        );
        assert_eq!(v.result, DmarcResult::Fail);
        // Strict alignment.
        let s = dns(&[(
            "_dmarc.example.com",
            rec("v=DMARC1; p=reject; adkim=s; aspf=s"),
        )]);
        let v = evaluate("example.com", None, &[dkim_pass("mail.example.com")], &s);
        assert_eq!(v.result, DmarcResult::Fail);
        let v = evaluate("example.com", None, &[dkim_pass("Example.com.")], &s);
        assert_eq!(v.result, DmarcResult::Pass);
    }

    #[test]
    fn none_temperror_permerror_and_pct() {
        let empty = dns(&[("_dmarc.example.com", TxtAnswer::NotFound)]);
        assert_eq!(
            evaluate("example.com", None, &[], &empty).result,
            DmarcResult::None
        );
        let other = dns(&[("_dmarc.example.com", rec("v=spf1 -all"))]);
        assert_eq!(
            evaluate("example.com", None, &[], &other).result,
            DmarcResult::None
        );
        let two = dns(&[(
            "_dmarc.example.com",
            TxtAnswer::Records(vec![
                b"v=DMARC1; p=reject".to_vec(),
                b"v=DMARC1; p=none".to_vec(),
            ]),
        )]);
        assert_eq!(
            evaluate("example.com", None, &[], &two).result,
            DmarcResult::None
        );
        // A lookup that did not complete: temperror, never a 5xx.
        let t = dns(&[("_dmarc.example.com", TxtAnswer::TempFail)]);
        let v = evaluate("example.com", None, &[], &t);
        assert_eq!(v.result, DmarcResult::TempError);
        assert_eq!(v.reply(true, 0), None);
        // The parent failed after the From domain's record: a fail is
        // not certain (the organizational domain may be the parent).
        let t = dns(&[
            ("_dmarc.a.example.com", rec("v=DMARC1; p=reject")),
            ("_dmarc.example.com", TxtAnswer::TempFail),
        ]);
        let v = evaluate("a.example.com", None, &[dkim_pass("b.example.com")], &t);
        assert_eq!(v.result, DmarcResult::TempError);
        assert_eq!(v.reply(true, 0), None);
        let bad = dns(&[("_dmarc.example.com", rec("v=DMARC1; p=bounce"))]);
        assert_eq!(
            evaluate("example.com", None, &[], &bad).result,
            DmarcResult::PermError
        );
        // pct=: outside the sample, reject becomes quarantine.
        let p = dns(&[("_dmarc.example.com", rec("v=DMARC1; p=reject; pct=20"))]);
        let v = evaluate("example.com", None, &[], &p);
        assert_eq!(v.disposition(19), Disposition::Reject);
        assert_eq!(v.disposition(20), Disposition::Quarantine);
        assert_eq!(v.reply(true, 50), None);
    }

    #[test]
    fn public_suffix_record() {
        // A record at a public suffix (psd=y): the organizational domain
        // is one label below it, not the suffix.
        let d = dns(&[
            ("_dmarc.a.b.co.example", TxtAnswer::NotFound),
            ("_dmarc.b.co.example", TxtAnswer::NotFound),
            ("_dmarc.co.example", rec("v=DMARC1; p=reject; psd=y")),
        ]);
        let v = evaluate("a.b.co.example", None, &[dkim_pass("b.co.example")], &d);
        assert_eq!(v.result, DmarcResult::Pass);
        let v = evaluate("a.b.co.example", None, &[dkim_pass("evil.co.example")], &d);
        assert_eq!(v.result, DmarcResult::Fail);
    }
}
