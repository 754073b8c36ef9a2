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
use super::policy::spf::{self, Identity, SpfOutcome};
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
                v.forged.push(&chunk)
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
    use authres::SpfResult as A;
    SpfCheck {
        result: match o.result {
            spf::SpfResult::None => A::None,
            spf::SpfResult::Neutral => A::Neutral,
            spf::SpfResult::Pass => A::Pass,
            spf::SpfResult::Fail => A::Fail,
            spf::SpfResult::SoftFail => A::SoftFail,
            spf::SpfResult::TempError => A::TempError,
            spf::SpfResult::PermError => A::PermError,
        },
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
        let dmarc = self
            .from
            .as_deref()
            .map(|f| dmarc::evaluate(f, spf, &dkim, answers));
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
