//! Mail policy: what the board accepts, from whom, and what it says about
//! it. `relay` decides who may send to which domain (never an open relay);
//! the anti-spam checks of a home backup MX live beside it, one module a
//! check, each configured under `[mail.policy]`. Without DNS:
//! `recipients` (valid users of the backup-MX domains), `greeting`
//! (greeting delay, early talkers), `limits` (per-client counts) and
//! `greylist`. Asking DNS: `rdns` (reverse and forward-confirmed reverse
//! DNS), `dnsbl` (DNS block and allow lists), `spf` (RFC 7208). Each DNS
//! check's lookups go through [`crate::mail::lookup::Resolve`]; its result
//! becomes a [`Finding`], and [`Checks::verdict`] (pure) turns a session's
//! findings into the answer to a recipient. The listener runs the lookups
//! and fills [`Checks`].
//!
//! The rule above all: a check that could not be completed (a timeout, a
//! SERVFAIL, a lookup still running) gives a temporary answer (4xx) at
//! most, never a rejection. Only a real answer can make a 5xx.
//!
//! Where the verdict is given: at RCPT, after the relay decision allowed
//! the recipient, so that `postmaster@` can be exempt (RFC 5321 4.5.1);
//! authenticated clients are exempt, and clients in `relay_networks` or on
//! the submission port get no checks (not even started).
//!
//! Message authentication (`dkim`, `dmarc`, `authres`), for outsiders'
//! mail (port 25, not a relay network, not authenticated), done by
//! [`crate::mail::msgauth`] as the listener spools the message: each
//! chunk goes through `authres::ForgedResults` (incoming fields for
//! which `authres::claims_authserv_id` holds are dropped) before it is
//! stored, and the original chunk to a `dkim::Verifier`. At the final
//! dot, before the spool's end: `finish()`, resolve `key_names()` and
//! `dmarc::query_names(from)` concurrently (TXT, through the local cache,
//! within the lookup budget: unanswered is TempFail; `from` =
//! `dmarc::from_domain(checked.head())`), then `verify(&answers, now)`,
//! `dmarc::evaluate(from, spf, &dkim, &answers)` with the session's SPF
//! outcome, `verdict.reply(config.dmarc.reject, roll)` (a 550 only for a
//! real fail under p=reject: the message is aborted and that is the
//! answer), else `authres::format(...)` goes in front of the message (a
//! spool HEAD record). Submitted mail (relay networks, authenticated) is
//! not verified: when its From domain has a signer it goes through
//! `dkim::MessageSigning`, and the DKIM-Signature goes in front instead.

pub mod authres;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod greeting;
pub mod greylist;
pub mod limits;
pub mod rdns;
pub mod recipients;
pub mod relay;
pub mod spf;

use std::net::IpAddr;

pub use relay::Policy;

use crate::config::PolicyConfig;
use crate::smtp::Reply;

/// What the checks decided since the mail service started, for `pocobelle
/// status`: recipients (RCPT commands) accepted and refused by reason,
/// connections and transactions refused over the per-client limits or
/// for talking early, and messages refused by DMARC. Shared by the
/// sessions; they start again at zero with the service. A mutex, not
/// atomics: ARMv5 has no 64-bit atomic operations.
#[derive(Debug, Default)]
pub struct Counters(std::sync::Mutex<Counts>);

/// A copy of [`Counters`], as the control socket carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub accepted: u64,
    pub relay_denied: u64,
    pub unknown_user: u64,
    pub refused: u64,
    pub deferred: u64,
    pub greylisted: u64,
    pub over_limits: u64,
    pub early_talkers: u64,
    pub dmarc_rejected: u64,
}

impl Counters {
    /// Counts one in the field `which` picks.
    pub fn add(&self, which: fn(&mut Counts) -> &mut u64) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = which(&mut c);
        *n = n.saturating_add(1);
    }

    pub fn counts(&self) -> Counts {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counts {
    /// `status`'s wording: recipients first, then what was refused
    /// before any recipient.
    pub fn render(&self) -> String {
        format!(
            "recipients {} accepted, {} greylisted, {} relay denied, {} unknown user, \
             {} refused and {} deferred by DNS checks; {} refused over the client \
             limits, {} early talkers, {} messages refused by DMARC",
            self.accepted,
            self.greylisted,
            self.relay_denied,
            self.unknown_user,
            self.refused,
            self.deferred,
            self.over_limits,
            self.early_talkers,
            self.dmarc_rejected
        )
    }
}

/// One check's contribution to the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A real answer: adds this to the score, for this reason.
    Score(i32, String),
    /// A real answer: refuses the recipient on its own (a 5xx).
    Reject(Reply),
    /// The check could not be completed: it might have added from `low`
    /// to `high`, or refused (then `reject`, a 4xx, is the answer).
    Incomplete {
        what: String,
        low: i32,
        high: i32,
        reject: Option<Reply>,
    },
}

/// The 451 of a check that could not be completed and might have refused.
pub fn incomplete_reply(enhanced: &'static str, what: &str) -> Reply {
    Reply::new(
        451,
        enhanced,
        format!("{what} check could not be completed, try again later"),
    )
}

/// A session's check results, filled by the listener as they come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    /// `None`: not run (disabled or exempt).
    pub rdns: Option<rdns::Rdns>,
    /// Per `[[mail.policy.dnsbl]]` entry, by index.
    pub lists: Vec<(usize, dnsbl::Listing)>,
    /// The current transaction's SPF outcome (`None`: not run). Read by
    /// DMARC, Authentication-Results and greylisting.
    pub spf: Option<spf::SpfOutcome>,
}

impl Checks {
    /// Every check's finding for `client`.
    pub fn findings(&self, c: &PolicyConfig, client: IpAddr) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(r) = &self.rdns {
            out.extend(rdns::finding(r, client, &c.rdns));
        }
        for (i, l) in &self.lists {
            if let Some(list) = c.dnsbl.get(*i) {
                out.extend(dnsbl::finding(l, client, list));
            }
        }
        if let Some(o) = &self.spf {
            out.extend(spf::finding(o, &c.spf));
        }
        out
    }

    /// A line for the log: the score and every finding; `None` when
    /// there is nothing to say.
    pub fn summary(&self, c: &PolicyConfig, client: IpAddr) -> Option<String> {
        let findings = self.findings(c, client);
        if findings.is_empty() {
            return None;
        }
        let mut score = 0i32;
        let mut what = Vec::new();
        for f in &findings {
            match f {
                Finding::Score(s, why) => {
                    score = score.saturating_add(*s);
                    what.push(format!("{why} ({s:+})"));
                }
                Finding::Reject(r) => what.push(r.lines.join(" ")),
                Finding::Incomplete { what: w, .. } => what.push(w.clone()),
            }
        }
        Some(format!(
            "score {score} (limit {}): {}",
            c.reject_score,
            what.join("; ")
        ))
    }

    /// The answer to a recipient: see [`decide`].
    pub fn verdict(&self, c: &PolicyConfig, client: IpAddr) -> Result<(), Reply> {
        decide(&self.findings(c, client), c.reject_score)
    }
}

/// Findings to an answer: a check's own refusal (5xx, real answers only);
/// else 550 5.7.1 with the reasons when the score reaches `reject_score`
/// even if every incomplete check had come out at its best; else a check's
/// 451 when an incomplete one might have refused; else 451 4.7.1 when the
/// incomplete checks could have brought the score to the threshold; else
/// accepted.
pub fn decide(findings: &[Finding], reject_score: i32) -> Result<(), Reply> {
    let mut score = 0i32;
    let (mut low, mut high) = (0i32, 0i32);
    let mut reasons = Vec::new();
    let mut temp = None;
    for f in findings {
        match f {
            Finding::Reject(r) => return Err(r.clone()),
            Finding::Score(s, why) => {
                score = score.saturating_add(*s);
                if *s != 0 {
                    reasons.push(why.as_str());
                }
            }
            Finding::Incomplete {
                low: l,
                high: h,
                reject,
                ..
            } => {
                low = low.saturating_add(*l);
                high = high.saturating_add(*h);
                if temp.is_none() {
                    temp = reject.clone();
                }
            }
        }
    }
    if score.saturating_add(low) >= reject_score {
        return Err(Reply::new(
            550,
            "5.7.1",
            format!(
                "Refused (score {score}, limit {reject_score}): {}",
                reasons.join("; ")
            ),
        ));
    }
    if let Some(r) = temp {
        return Err(r);
    }
    if score.saturating_add(high) >= reject_score {
        return Err(Reply::new(
            451,
            "4.7.1",
            "Checks on your client could not be completed, try again later",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::dnsbl::Listing;
    use super::rdns::Rdns;
    use super::spf::{Identity, SpfOutcome, SpfResult};
    use super::*;
    use crate::config::{Action, DnsList};

    fn ip() -> IpAddr {
        "192.0.2.9".parse().unwrap()
    }

    fn spf(result: SpfResult) -> Option<SpfOutcome> {
        Some(SpfOutcome {
            result,
            identity: Identity::MailFrom,
            domain: "example.org".into(),
            sender: "a@example.org".into(),
            client: ip(),
        })
    }

    fn code(r: Result<(), Reply>) -> (u16, &'static str) {
        match r {
            Ok(()) => (250, "2.1.5"),
            Err(r) => (r.code, r.enhanced.unwrap()),
        }
    }

    fn config() -> PolicyConfig {
        PolicyConfig {
            dnsbl: vec![
                DnsList {
                    zone: "bl.test".into(),
                    weight: 10,
                    codes: vec![],
                },
                DnsList {
                    zone: "wl.test".into(),
                    weight: -10,
                    codes: vec![],
                },
            ],
            ..PolicyConfig::default()
        }
    }

    /// The defaults never refuse nor defer without a DNS list: the outage
    /// drill's senders without PTR, or with every lookup timing out, pass.
    #[test]
    fn defaults_accept_everything_incomplete_or_missing() {
        let c = PolicyConfig::default();
        let worst = Checks {
            rdns: Some(Rdns::Missing),
            lists: vec![],
            spf: spf(SpfResult::Fail),
        };
        assert_eq!(code(worst.verdict(&c, ip())), (250, "2.1.5"));
        let line = worst.summary(&c, ip()).unwrap();
        assert!(line.starts_with("score 7 (limit 10): "), "{line}");
        assert_eq!(Checks::default().summary(&c, ip()), None);
        let timed_out = Checks {
            rdns: Some(Rdns::Incomplete("timed out".into())),
            lists: vec![],
            spf: spf(SpfResult::TempError),
        };
        assert_eq!(code(timed_out.verdict(&c, ip())), (250, "2.1.5"));
        let mismatch = Checks {
            rdns: Some(Rdns::Mismatch(
                crate::mail::name::Name::from_ascii("x.test").unwrap(),
            )),
            ..Checks::default()
        };
        assert_eq!(code(mismatch.verdict(&c, ip())), (250, "2.1.5"));
    }

    #[test]
    fn listed_unlisted_and_allowlisted_clients() {
        let c = config();
        let listed = Listing::Listed("127.0.0.2".parse().unwrap());
        let mut k = Checks {
            lists: vec![(0, listed.clone()), (1, Listing::NotListed)],
            ..Checks::default()
        };
        let r = k.verdict(&c, ip()).unwrap_err();
        assert_eq!((r.code, r.enhanced), (550, Some("5.7.1")));
        assert!(r.lines[0].contains("listed in bl.test"), "{r:?}");
        // Allow-listed too: the weights cancel.
        k.lists[1].1 = listed.clone();
        assert_eq!(code(k.verdict(&c, ip())), (250, "2.1.5"));
        // The allow list could not be asked: 451, not 550.
        k.lists[1].1 = Listing::Incomplete("timed out".into());
        assert_eq!(code(k.verdict(&c, ip())), (451, "4.7.1"));
        // The block list could not be asked: not listed.
        k.lists = vec![(0, Listing::Incomplete("timed out".into()))];
        assert_eq!(code(k.verdict(&c, ip())), (250, "2.1.5"));
        k.lists = vec![(0, Listing::NotListed)];
        assert_eq!(code(k.verdict(&c, ip())), (250, "2.1.5"));
    }

    #[test]
    fn scores_add_up_and_incomplete_checks_defer_at_most() {
        let c = PolicyConfig {
            reject_score: 5,
            ..PolicyConfig::default()
        };
        // Missing PTR (3) + SPF softfail (2) = 5.
        let k = Checks {
            rdns: Some(Rdns::Missing),
            spf: spf(SpfResult::SoftFail),
            ..Checks::default()
        };
        let r = k.verdict(&c, ip()).unwrap_err();
        assert_eq!((r.code, r.enhanced), (550, Some("5.7.1")));
        assert!(r.lines[0].contains("no reverse DNS") && r.lines[0].contains("softfail"));
        // PTR timing out + softfail: could have reached 5: 451.
        let k = Checks {
            rdns: Some(Rdns::Incomplete("timed out".into())),
            spf: spf(SpfResult::SoftFail),
            ..Checks::default()
        };
        assert_eq!(code(k.verdict(&c, ip())), (451, "4.7.1"));
        // PTR present and confirmed + softfail: 2 < 5.
        let k = Checks {
            rdns: Some(Rdns::Confirmed(
                crate::mail::name::Name::from_ascii("x.test").unwrap(),
            )),
            spf: spf(SpfResult::SoftFail),
            ..Checks::default()
        };
        assert_eq!(code(k.verdict(&c, ip())), (250, "2.1.5"));
    }

    #[test]
    fn spf_results_with_reject_configured() {
        let mut c = PolicyConfig::default();
        c.spf.fail = Action::Reject;
        let v = |r| {
            code(
                Checks {
                    spf: spf(r),
                    ..Checks::default()
                }
                .verdict(&c, ip()),
            )
        };
        assert_eq!(v(SpfResult::Fail), (550, "5.7.23"));
        assert_eq!(v(SpfResult::TempError), (451, "4.7.24"));
        assert_eq!(v(SpfResult::SoftFail), (250, "2.1.5"));
        assert_eq!(v(SpfResult::PermError), (250, "2.1.5"));
        assert_eq!(v(SpfResult::Pass), (250, "2.1.5"));
        assert_eq!(v(SpfResult::None), (250, "2.1.5"));
        assert_eq!(v(SpfResult::Neutral), (250, "2.1.5"));
        c.spf.softfail = Action::Reject;
        assert_eq!(
            code(
                Checks {
                    spf: spf(SpfResult::SoftFail),
                    ..Checks::default()
                }
                .verdict(&c, ip())
            ),
            (550, "5.7.23")
        );
    }

    #[test]
    fn rdns_reject_configured() {
        let mut c = PolicyConfig::default();
        c.rdns.missing = Action::Reject;
        let v = |r| {
            code(
                Checks {
                    rdns: Some(r),
                    ..Checks::default()
                }
                .verdict(&c, ip()),
            )
        };
        assert_eq!(v(Rdns::Missing), (550, "5.7.25"));
        assert_eq!(v(Rdns::Incomplete("timed out".into())), (451, "4.7.25"));
        assert_eq!(
            v(Rdns::Mismatch(
                crate::mail::name::Name::from_ascii("x.test").unwrap()
            )),
            (250, "2.1.5")
        );
    }
}
