//! Message authentication of one message as the listener receives it
//! (the call sequence of `policy/mod.rs`, at DATA end). For an
//! outsider's message: incoming Authentication-Results fields claiming
//! our authserv-id are removed as it streams, its DKIM signatures are
//! verified and the DMARC policy of its From domain evaluated at the
//! final dot, and the board's own Authentication-Results field is to go
//! in front of it. Submitted mail whose From domain has a signer gets a
//! DKIM-Signature instead. Only the header section is held (at most
//! `dkim::MAX_HEADER_SECTION`, by each filter); bodies are hashed as they
//! pass, never buffered. It never writes to the spool nor the socket: the
//! listener stores what it returns, and the one SMTP answer it can give is
//! DMARC's 550 (a real fail under p=reject, when configured), never a 5xx
//! for a lookup that did not complete.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::lookup::{Answer, Record, Resolve, Rtype};
use super::name::Name;
use super::policy::authres::{self, ForgedResults, IprevCheck, SpfCheck};
use super::policy::dkim::{
    self, Checked, DkimOutcome, MessageSigning, Signer, TxtAnswer, Verifier,
};
use super::policy::dmarc::{self, DmarcVerdict};
use super::policy::rdns::Rdns;
use super::policy::spf::{Identity, SpfOutcome};
use crate::config::PolicyConfig;
use crate::smtp::Reply;

/// At most this many TXT names are looked up for one message: a key per
/// verified signature, and the DMARC walk.
pub const MAX_TXT_NAMES: usize = dkim::MAX_SIGNATURES + dmarc::MAX_WALK;

/// What is done to the message being received.
pub enum MessageAuth<'a> {
    /// Nothing: the chunks are stored as they come.
    Off,
    /// An outsider's message: filtered and verified.
    Verify(Box<Verifying>),
    /// Submitted mail: signed when its From domain has a signer.
    Sign(Box<MessageSigning<'a>>),
}

/// An outsider's message as it streams.
pub struct Verifying {
    forged: ForgedResults,
    /// The DKIM verifier (it also holds the header section for DMARC's
    /// From domain); `None` when neither DKIM nor DMARC is enabled.
    dkim: Option<Verifier>,
}

/// What to do with the message at its end.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Store it as it is.
    Keep,
    /// Put these header fields in front of it (a spool HEAD record).
    Head(Vec<u8>),
    /// Refuse it with this reply (DMARC reject).
    Refuse(Reply),
}

impl<'a> MessageAuth<'a> {
    /// The treatment of a message: `submitted` (relay network or
    /// authenticated) mail is signed when there are signers; an
    /// `outsider`'s (port 25, neither) is filtered and verified.
    pub fn start(
        c: &PolicyConfig,
        signers: &'a [Signer],
        authserv_id: &str,
        submitted: bool,
        outsider: bool,
    ) -> MessageAuth<'a> {
        if submitted {
            if signers.is_empty() {
                return MessageAuth::Off;
            }
            return MessageAuth::Sign(Box::new(MessageSigning::new(signers)));
        }
        if !outsider {
            return MessageAuth::Off;
        }
        MessageAuth::Verify(Box::new(Verifying {
            forged: ForgedResults::new(authserv_id),
            dkim: (c.dkim.verify || c.dmarc.enabled).then(Verifier::new),
        }))
    }

    /// The next chunk of the message (after the listener's Received
    /// field): returns the bytes to store now.
    pub fn chunk(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        match self {
            MessageAuth::Off => chunk,
            MessageAuth::Sign(m) => {
                m.update(&chunk);
                chunk
            }
            MessageAuth::Verify(v) => {
                if let Some(d) = &mut v.dkim {
                    d.update(&chunk);
                }
                v.forged.push_owned(chunk)
            }
        }
    }

    /// At the final dot: the bytes still held, to store before the end.
    pub fn rest(&mut self) -> Vec<u8> {
        match self {
            MessageAuth::Verify(v) => {
                let out = v.forged.finish();
                if v.forged.dropped() > 0 {
                    log::info!(
                        "mail: {} incoming Authentication-Results field(s) claiming our id removed",
                        v.forged.dropped()
                    );
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

/// The signature of a submitted message (`None`: no signer for its From
/// domain, or it could not be signed, which is logged).
pub fn signature(m: MessageSigning<'_>, now: u64) -> Option<String> {
    m.finish(now)
        .inspect_err(|e| log::warn!("mail: DKIM signing failed: {e}"))
        .ok()
        .flatten()
}

/// An outsider's message at its end: the body hashes final, the From
/// domain found, and the TXT names to look up.
pub struct Finished {
    checked: Option<Checked>,
    from: Option<String>,
    pub names: Vec<String>,
}

impl Verifying {
    pub fn finish(self, c: &PolicyConfig) -> Finished {
        let checked = self.dkim.map(Verifier::finish);
        let from = checked
            .as_ref()
            .and_then(|k| dmarc::from_domain(k.head()))
            .filter(|_| c.dmarc.enabled);
        let mut names = Vec::new();
        if let (Some(k), true) = (&checked, c.dkim.verify) {
            names.extend(k.key_names());
        }
        if let Some(f) = &from {
            names.extend(dmarc::query_names(f));
        }
        names.truncate(MAX_TXT_NAMES);
        Finished {
            checked,
            from,
            names,
        }
    }
}

/// The TXT lookups of one message, running concurrently as tasks (aborted
/// when dropped).
pub struct TxtLookups {
    tasks: tokio::task::JoinSet<(String, TxtAnswer)>,
    deadline: tokio::time::Instant,
}

impl TxtLookups {
    /// Starts a lookup per name through `r` (`None`: no resolver, every
    /// name a TempFail), each to be answered within `budget`.
    pub fn start<R: Resolve + Clone>(r: Option<&R>, names: &[String], budget: Duration) -> Self {
        let mut tasks = tokio::task::JoinSet::new();
        for n in names {
            let key = n.to_ascii_lowercase();
            let Some(r) = r.cloned() else { break };
            let Ok(name) = Name::from_ascii(n) else {
                // Not a name one can ask: nothing is published there.
                tasks.spawn(async move { (key, TxtAnswer::NotFound) });
                continue;
            };
            tasks.spawn(async move {
                let a = match r.query(&name, Rtype::Txt).await {
                    Answer::Records(v) => TxtAnswer::Records(
                        v.into_iter()
                            .filter_map(|r| match r {
                                Record::Txt(t) => Some(t),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Answer::Empty => TxtAnswer::NotFound,
                    Answer::Temporary(_) => TxtAnswer::TempFail,
                };
                (key, a)
            });
        }
        TxtLookups {
            tasks,
            deadline: tokio::time::Instant::now() + budget,
        }
    }

    /// The answers in by the deadline; a name without one is missing,
    /// which [`dkim::TxtLookup`] reads as TempFail.
    pub async fn answers(mut self) -> HashMap<String, TxtAnswer> {
        let mut out = HashMap::new();
        while let Ok(Some(done)) =
            tokio::time::timeout_at(self.deadline, self.tasks.join_next()).await
        {
            if let Ok((k, a)) = done {
                out.insert(k, a);
            }
        }
        out
    }
}

/// The SPF outcome as Authentication-Results and DMARC take it.
pub fn spf_check(o: &SpfOutcome) -> SpfCheck {
    SpfCheck {
        result: o.result,
        domain: o.domain.clone(),
        helo: o.identity == Identity::Helo,
    }
}

/// The reverse DNS check as an iprev result (RFC 8601 3).
pub fn iprev(r: &Rdns, ip: IpAddr) -> IprevCheck {
    IprevCheck {
        result: match r {
            Rdns::Confirmed(_) => "pass",
            Rdns::Missing | Rdns::Mismatch(_) => "fail",
            Rdns::Incomplete(_) => "temperror",
        },
        ip,
    }
}

/// The results of an outsider's message.
pub struct Results {
    pub dkim: Vec<DkimOutcome>,
    pub dmarc: Option<DmarcVerdict>,
}

impl Finished {
    /// Verifies and evaluates with the `answers` to [`Finished::names`].
    pub fn results(
        &self,
        c: &PolicyConfig,
        spf: Option<&SpfCheck>,
        answers: &HashMap<String, TxtAnswer>,
        now: u64,
    ) -> Results {
        let dkim = match (&self.checked, c.dkim.verify) {
            (Some(k), true) => k.verify(answers, now),
            _ => Vec::new(),
        };
        let dmarc = match (&self.from, c.dmarc.enabled) {
            (Some(f), _) => Some(dmarc::evaluate(f, spf, &dkim, answers)),
            // No single From domain: DMARC cannot apply (RFC 7489 6.6.1).
            (None, true) => Some(DmarcVerdict {
                result: dmarc::DmarcResult::None,
                policy: None,
                from_domain: String::new(),
                pct: 100,
            }),
            (None, false) => None,
        };
        Results { dkim, dmarc }
    }
}

impl Results {
    /// The end of the message: refused when DMARC says so (`roll`:
    /// uniform in 0..100, for pct=), else the Authentication-Results
    /// field to put in front of it.
    pub fn ending(
        &self,
        c: &PolicyConfig,
        authserv_id: &str,
        iprev: Option<&IprevCheck>,
        spf: Option<&SpfCheck>,
        roll: u8,
    ) -> Ending {
        if let Some(r) = self
            .dmarc
            .as_ref()
            .and_then(|d| d.reply(c.dmarc.reject, roll))
        {
            return Ending::Refuse(r);
        }
        let field = authres::format(authserv_id, iprev, spf, &self.dkim, self.dmarc.as_ref());
        Ending::Head(field.into_bytes())
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .dkim
            .iter()
            .map(|d| {
                let mut p = format!("dkim={}", d.result.as_str());
                if let Some(dom) = &d.domain {
                    p.push_str(&format!(" d={dom}"));
                }
                if let Some(r) = d
                    .reason
                    .as_ref()
                    .filter(|_| d.result != dkim::DkimResult::Pass)
                {
                    p.push_str(&format!(" ({r})"));
                }
                p
            })
            .collect();
        if parts.is_empty() {
            parts.push("dkim=none".into());
        }
        match &self.dmarc {
            Some(m) => {
                let mut p = format!("dmarc={}", m.result.as_str());
                if let Some(pol) = m.policy {
                    p.push_str(&format!(" (p={})", pol.as_str()));
                }
                p.push_str(&format!(" from={}", m.from_domain));
                parts.push(p);
            }
            None => parts.push("dmarc=off".into()),
        }
        parts.join(", ")
    }
}

/// A uniform roll in 0..100 for DMARC's pct= sampling.
pub fn roll() -> u8 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u16::from_le_bytes(b) % 100) as u8
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mail::lookup::Fixture;
    use crate::mail::policy::dkim::SigningKey;
    use crate::mail::policy::dkim::sign::tests::TEST_RSA_PEM;

    const BODY: &str = "Hi,\r\n\r\n  eight  o'clock.\r\n";

    fn signer(domain: &str) -> Signer {
        Signer::new(domain, "sel", SigningKey::from_pem(TEST_RSA_PEM).unwrap()).unwrap()
    }

    /// A message From `from`, signed by d=signed.test, with a forged
    /// field claiming `mx.test` on top.
    fn message(from: &str) -> String {
        let head =
            format!("From: <{from}>\r\nSubject: x\r\nDate: Sat, 5 Dec 2026 14:00:00 +0000\r\n");
        let s = signer("signed.test");
        let mut m = s.begin(head.as_bytes());
        m.update(BODY.as_bytes());
        let field = m.finish(1_796_000_000).unwrap();
        format!(
            "Authentication-Results: mx.test; dkim=pass header.d=bank.test\r\n{field}{head}\r\n{BODY}"
        )
    }

    fn dns(hang: bool) -> Arc<Fixture> {
        let mut f = Fixture::default();
        let record = SigningKey::from_pem(TEST_RSA_PEM).unwrap().dns_record();
        f.txt("sel._domainkey.signed.test", &record);
        f.txt("_dmarc.signed.test", "v=DMARC1; p=reject");
        f.txt("_dmarc.reject.test", "v=DMARC1; p=reject");
        if hang {
            f.hang = vec![
                "sel._domainkey.signed.test".into(),
                "_dmarc.reject.test".into(),
            ];
        }
        Arc::new(f)
    }

    /// Streams `msg` in small chunks as an outsider's message and ends it:
    /// (what was stored, the ending, the log line).
    async fn outsider(c: &PolicyConfig, msg: &str, r: &Arc<Fixture>) -> (String, Ending, String) {
        let mut a = MessageAuth::start(c, &[], "mx.test", false, true);
        let mut stored = Vec::new();
        for chunk in msg.as_bytes().chunks(7) {
            stored.extend(a.chunk(chunk.to_vec()));
        }
        stored.extend(a.rest());
        let MessageAuth::Verify(v) = a else {
            panic!("not verified")
        };
        let done = v.finish(c);
        let answers = TxtLookups::start(Some(r), &done.names, Duration::from_millis(200))
            .answers()
            .await;
        let res = done.results(c, None, &answers, 1_796_000_100);
        let ending = res.ending(c, "mx.test", None, None, 0);
        (String::from_utf8(stored).unwrap(), ending, res.summary())
    }

    fn head(e: &Ending) -> String {
        match e {
            Ending::Head(h) => String::from_utf8(h.clone()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn outsiders_mail_is_filtered_verified_and_judged() {
        let c = PolicyConfig::default();
        let (stored, ending, line) = outsider(&c, &message("a@signed.test"), &dns(false)).await;
        assert!(!stored.contains("bank.test"), "{stored}");
        assert!(stored.starts_with("DKIM-Signature:") && stored.ends_with(BODY));
        let ar = head(&ending);
        assert!(ar.contains("dkim=pass header.d=signed.test"), "{ar}");
        assert!(ar.contains("dmarc=pass (p=reject)"), "{ar}");
        assert_eq!(
            line,
            "dkim=pass d=signed.test, dmarc=pass (p=reject) from=signed.test"
        );

        // Not aligned under p=reject: recorded, refused only when
        // configured.
        let msg = message("a@reject.test");
        let (_, ending, _) = outsider(&c, &msg, &dns(false)).await;
        assert!(head(&ending).contains("dmarc=fail (p=reject)"));
        let mut strict = PolicyConfig::default();
        strict.dmarc.reject = true;
        let (_, ending, _) = outsider(&strict, &msg, &dns(false)).await;
        let Ending::Refuse(r) = ending else {
            panic!("{ending:?}")
        };
        assert_eq!((r.code, r.enhanced), (550, Some("5.7.1")));
        // The lookups hang past the budget: temperror, never refused.
        let t = std::time::Instant::now();
        let (_, ending, line) = outsider(&strict, &msg, &dns(true)).await;
        assert!(t.elapsed() < Duration::from_secs(2));
        let ar = head(&ending);
        assert!(
            ar.contains("dkim=temperror") && ar.contains("dmarc=temperror"),
            "{ar}"
        );
        assert!(line.starts_with("dkim=temperror"), "{line}");

        // DKIM and DMARC off: still filtered, A-R with dkim=none.
        let mut off = PolicyConfig::default();
        off.dkim.verify = false;
        off.dmarc.enabled = false;
        let (stored, ending, _) = outsider(&off, &message("a@signed.test"), &dns(false)).await;
        assert!(!stored.contains("bank.test"));
        let ar = head(&ending);
        assert!(ar.contains("dkim=none") && !ar.contains("dmarc"), "{ar}");
    }

    #[test]
    fn submitted_mail_is_signed_for_its_domains_only() {
        let c = PolicyConfig::default();
        let signers = [signer("home.example")];
        let msg = "From: <a@home.example>\r\nSubject: x\r\n\r\nhello\r\n";
        let mut a = MessageAuth::start(&c, &signers, "mx.test", true, false);
        let mut stored = Vec::new();
        for chunk in msg.as_bytes().chunks(5) {
            stored.extend(a.chunk(chunk.to_vec()));
        }
        assert_eq!(stored, msg.as_bytes(), "stored unchanged");
        assert!(a.rest().is_empty());
        let MessageAuth::Sign(m) = a else {
            panic!("not signing")
        };
        let field = signature(*m, 1_796_000_000).unwrap();
        assert!(field.contains("d=home.example; s=sel;"), "{field}");
        // Another From domain, or no signers: nothing.
        let mut a = MessageAuth::start(&c, &signers, "mx.test", true, false);
        a.chunk(b"From: <a@else.example>\r\n\r\nhi\r\n".to_vec());
        let MessageAuth::Sign(m) = a else { panic!() };
        assert_eq!(signature(*m, 1), None);
        assert!(matches!(
            MessageAuth::start(&c, &[], "mx.test", true, false),
            MessageAuth::Off
        ));
        // Neither submitted nor an outsider (the submission port
        // without AUTH cannot send): nothing.
        assert!(matches!(
            MessageAuth::start(&c, &signers, "mx.test", false, false),
            MessageAuth::Off
        ));
    }
}
