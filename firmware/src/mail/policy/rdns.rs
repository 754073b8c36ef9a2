//! Reverse DNS and forward-confirmed reverse DNS of the client: its PTR
//! names, then the addresses (A for IPv4, AAAA for IPv6) of at most
//! [`MAX_PTR_NAMES`] of them; confirmed when one maps back to the client.
//! [`check`] does the lookups through a [`Resolve`]; [`finding`] turns the
//! result into a score, a refusal or an incomplete check, per
//! `[mail.policy.rdns]`. A lookup that failed is never "missing".

use std::net::IpAddr;

use super::{Finding, incomplete_reply};
use crate::config::Action;
use crate::config::RdnsConfig;
use crate::mail::lookup::{Answer, Record, Resolve, Rtype, ptr_zone, reverse_name};
use crate::mail::name::Name;
use crate::smtp::Reply;

/// PTR names whose addresses are looked up.
pub const MAX_PTR_NAMES: usize = 4;

/// What reverse DNS says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdns {
    /// This PTR name maps back to the client.
    Confirmed(Name),
    /// A real answer: the address has no PTR name.
    Missing,
    /// Real answers: no PTR name (of the first few) maps back.
    Mismatch(Name),
    /// A lookup failed or is still running.
    Incomplete(String),
}

/// The lookups for `ip`.
pub async fn check<R: Resolve>(r: &R, ip: IpAddr) -> Rdns {
    let ip = ip.to_canonical();
    let Some(rev) = reverse_name(ip, ptr_zone(ip)) else {
        return Rdns::Incomplete("no reverse name".into());
    };
    let names = match r.query(&rev, Rtype::Ptr).await {
        Answer::Temporary(why) => return Rdns::Incomplete(format!("PTR lookup: {why}")),
        Answer::Empty => return Rdns::Missing,
        Answer::Records(v) => v,
    };
    let t = if ip.is_ipv4() { Rtype::A } else { Rtype::Aaaa };
    let mut failed = None;
    let mut first = None;
    for n in names.into_iter().take(MAX_PTR_NAMES) {
        let Record::Name(n) = n else { continue };
        match r.query(&n, t).await {
            Answer::Records(addrs) if addrs.contains(&Record::Addr(ip)) => {
                return Rdns::Confirmed(*n);
            }
            Answer::Temporary(why) => failed = Some(format!("{n}: {why}")),
            _ => {}
        }
        first.get_or_insert(*n);
    }
    match (failed, first) {
        (Some(why), _) => Rdns::Incomplete(why),
        (None, Some(n)) => Rdns::Mismatch(n),
        (None, None) => Rdns::Missing,
    }
}

/// The verdict's part of a result: `None` when it counts nothing.
pub fn finding(result: &Rdns, ip: IpAddr, c: &RdnsConfig) -> Option<Finding> {
    let reject = |what: String| Finding::Reject(Reply::new(550, "5.7.25", what));
    match result {
        Rdns::Confirmed(_) => None,
        Rdns::Missing => {
            let what = format!("{ip} has no reverse DNS (PTR)");
            Some(match c.missing {
                Action::Reject => reject(what),
                Action::Score => Finding::Score(c.missing_score, what),
            })
        }
        Rdns::Mismatch(n) => {
            let what = format!("reverse DNS of {ip} ({n}) does not map back to it");
            Some(match c.mismatch {
                Action::Reject => reject(what),
                Action::Score => Finding::Score(c.mismatch_score, what),
            })
        }
        Rdns::Incomplete(why) => {
            // Either outcome could have come: the worse one bounds it.
            let rejects = c.missing == Action::Reject || c.mismatch == Action::Reject;
            let score = |a, s: i32| if a == Action::Score { s } else { 0 };
            let scores = [
                score(c.missing, c.missing_score),
                score(c.mismatch, c.mismatch_score),
            ];
            Some(Finding::Incomplete {
                what: format!("reverse DNS of {ip} incomplete ({why})"),
                low: scores.iter().copied().min().unwrap_or(0).min(0),
                high: scores.iter().copied().max().unwrap_or(0).max(0),
                reject: rejects.then(|| incomplete_reply("4.7.25", "reverse DNS")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::lookup::Fixture;
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ptr_present_absent_mismatched_failing() {
        let mut f = Fixture::default();
        f.ptr("192.0.2.1", &["mx.example.org"])
            .addr("mx.example.org", "192.0.2.1")
            .ptr("192.0.2.2", &["liar.example.org"])
            .addr("liar.example.org", "198.51.100.1")
            .ptr("192.0.2.3", &["slow.example.org"])
            .set(
                "slow.example.org",
                Rtype::A,
                Answer::Temporary("timed out".into()),
            )
            .ptr("2001:db8::1", &["v6.example.org"])
            .addr("v6.example.org", "2001:db8::1")
            .set(
                "4.2.0.192.in-addr.arpa",
                Rtype::Ptr,
                Answer::Temporary("SERVFAIL".into()),
            );
        let many: Vec<String> = (0..8).map(|i| format!("n{i}.example.org")).collect();
        let refs: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        f.ptr("192.0.2.5", &refs)
            .addr("n7.example.org", "192.0.2.5");
        let f = Arc::new(f);
        let n = |s| Name::from_ascii(s).unwrap();
        assert_eq!(
            check(&f, ip("192.0.2.1")).await,
            Rdns::Confirmed(n("mx.example.org"))
        );
        assert_eq!(
            check(&f, ip("::ffff:192.0.2.1")).await,
            Rdns::Confirmed(n("mx.example.org"))
        );
        assert_eq!(
            check(&f, ip("192.0.2.2")).await,
            Rdns::Mismatch(n("liar.example.org"))
        );
        assert!(matches!(
            check(&f, ip("192.0.2.3")).await,
            Rdns::Incomplete(_)
        ));
        assert!(matches!(
            check(&f, ip("192.0.2.4")).await,
            Rdns::Incomplete(_)
        ));
        assert_eq!(check(&f, ip("192.0.2.9")).await, Rdns::Missing);
        assert_eq!(
            check(&f, ip("2001:db8::1")).await,
            Rdns::Confirmed(n("v6.example.org"))
        );
        // Only the first MAX_PTR_NAMES names are looked up.
        assert_eq!(
            check(&f, ip("192.0.2.5")).await,
            Rdns::Mismatch(n("n0.example.org"))
        );
        let asked = f.asked.lock().unwrap();
        assert!(!asked.iter().any(|(n, _)| n == "n4.example.org"));
    }

    #[test]
    fn findings_per_config() {
        let c = RdnsConfig::default();
        let a = ip("192.0.2.9");
        assert_eq!(
            finding(&Rdns::Confirmed(Name::from_ascii("x.test").unwrap()), a, &c),
            None
        );
        assert!(matches!(
            finding(&Rdns::Missing, a, &c),
            Some(Finding::Score(3, _))
        ));
        let strict = RdnsConfig {
            missing: Action::Reject,
            ..c.clone()
        };
        match finding(&Rdns::Missing, a, &strict) {
            Some(Finding::Reject(r)) => assert_eq!((r.code, r.enhanced), (550, Some("5.7.25"))),
            other => panic!("{other:?}"),
        }
        match finding(&Rdns::Incomplete("t".into()), a, &strict) {
            Some(Finding::Incomplete {
                reject: Some(r), ..
            }) => assert_eq!(r.code, 451),
            other => panic!("{other:?}"),
        }
        match finding(&Rdns::Incomplete("t".into()), a, &c) {
            Some(Finding::Incomplete {
                reject: None,
                low: 0,
                high: 3,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
