//! Greylisting (`[mail.policy.greylist]`, off by default): the first
//! sighting of a triplet (client network /24 or /64, envelope sender,
//! recipient) gets 450 4.7.1; a retry at least `min_delay_s` later and
//! within `retry_window_s` passes, and its client network is then let
//! through without delay for `auto_allow_s` (postgrey's auto-whitelist).
//! Real MTAs retry; most spam engines do not.
//!
//! Known sender domains: the domain of a MAIL FROM whose triplet passed
//! (a proper retry) is known until `auto_allow_s` after its last pass. A
//! client that passed SPF for the MAIL FROM domain ([`Greylist::check`]'s
//! `spf_pass`, the caller's SPF result) and whose domain is known is let
//! through at once, and its network allowed as after a passed retry: big
//! providers send from many addresses, and once a domain has shown that
//! its servers retry, a new address SPF vouches for waits no more. The
//! null sender has no domain and is never known; an allowed network's
//! mail (which skips the triplets) teaches no domain.
//!
//! Triplets, networks and domains are kept as 64-bit HMAC-SHA256 digests
//! under a secret made at first start and kept with the table (no
//! addresses stored, fixed-size records, and no crafting of collisions by
//! outsiders). The table holds at most [`MAX_TRIPLETS`] triplets,
//! [`MAX_ALLOWED`] networks and [`MAX_KNOWN_DOMAINS`] domains; past them
//! expired entries go, then the oldest.
//!
//! Snapshot (written by the caller in batches through `sys::atomic`):
//! [`MAGIC`], the secret, records of kind (1 waiting, 2 passed, 3 allowed
//! network, 4 known domain), digest and Unix time (u8, u64, u64
//! big-endian), then the FNV-1a 64 of all that. A file of the previous
//! version ([`MAGIC_V1`], the same layout without kind 4) still loads,
//! with no known domains. [`Greylist::decode`] checks size, checksum and
//! every record before anything is used. Pure: `now` is passed in.

use std::collections::HashMap;
use std::net::IpAddr;

use ring::hmac;

use crate::config::policy::GreylistConfig;
use crate::dns::snapshot::fnv1a64;
use crate::smtp::Reply;

/// Triplets kept at once.
pub const MAX_TRIPLETS: usize = 4096;
/// Auto-allowed client networks kept at once.
pub const MAX_ALLOWED: usize = 1024;
/// Known sender domains kept at once.
pub const MAX_KNOWN_DOMAINS: usize = 1024;
/// The snapshot's first bytes (version 2: known domains).
pub const MAGIC: &[u8; 8] = b"PBGREY2\n";
/// The first bytes of a version 1 snapshot (no known domains), still read.
pub const MAGIC_V1: &[u8; 8] = b"PBGREY1\n";
/// Bytes of the secret that keys the digests.
pub const SECRET_BYTES: usize = 16;
/// Magic and secret.
pub const HEADER_BYTES: usize = MAGIC.len() + SECRET_BYTES;
/// One record: kind, digest, time.
pub const RECORD_BYTES: usize = 17;
/// The largest snapshot accepted (a full table).
pub const MAX_SNAPSHOT_BYTES: usize =
    HEADER_BYTES + (MAX_TRIPLETS + MAX_ALLOWED + MAX_KNOWN_DOMAINS) * RECORD_BYTES + 8;

const WAITING: u8 = 1;
const PASSED: u8 = 2;
const ALLOWED: u8 = 3;
/// Version 2 only.
const KNOWN_DOMAIN: u8 = 4;

/// Why a snapshot was not loaded (the caller starts with an empty table).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The file is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("larger than {MAX_SNAPSHOT_BYTES} bytes ({0})")]
    TooLarge(usize),
    /// The file starts with neither [`MAGIC`] nor [`MAGIC_V1`].
    #[error("not a greylist snapshot")]
    BadMagic,
    /// The file ends inside its header or a record.
    #[error("truncated")]
    Truncated,
    /// The checksum does not match the contents.
    #[error("checksum mismatch")]
    Checksum,
    /// A record of an unknown kind (or of kind 4 in a version 1 file), a
    /// duplicate, or more records of a kind than the table holds.
    #[error("bad record {0}")]
    BadRecord(usize),
}

/// A triplet's state and the time it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Triplet {
    /// Seen first at this time; retries before `min_delay_s` wait.
    Waiting(u64),
    /// Passed; last seen at this time.
    Passed(u64),
}

impl Triplet {
    fn time(self) -> u64 {
        match self {
            Triplet::Waiting(t) | Triplet::Passed(t) => t,
        }
    }
}

/// The greylist table.
#[derive(Debug)]
pub struct Greylist {
    config: GreylistConfig,
    secret: [u8; SECRET_BYTES],
    key: hmac::Key,
    triplets: HashMap<u64, Triplet>,
    /// Network digest to the time it last passed.
    allowed: HashMap<u64, u64>,
    /// Sender domain digest to the time a triplet of it last passed.
    known: HashMap<u64, u64>,
    dirty: bool,
}

/// The network a client is greylisted by: IPv4 /24 (IPv4-mapped IPv6
/// included), IPv6 /64, as 16 bytes.
fn network(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128 & !0xff).to_be_bytes(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => (u128::from(v6) & !((1u128 << 64) - 1)).to_be_bytes(),
        },
    }
}

/// The domain of an envelope sender, lower case, without the final dot;
/// `None` for the null sender, an address without a domain, or an address
/// literal (no SPF for those).
fn sender_domain(from: &str) -> Option<String> {
    let (_, d) = from.rsplit_once('@')?;
    let d = d.trim_end_matches('.');
    (!d.is_empty() && !d.starts_with('[')).then(|| d.to_ascii_lowercase())
}

/// Inserts `k` into `map`, bounded by `max`: when full, entries for which
/// `expired` holds go first, then the oldest by `time`.
fn bounded_insert<V: Copy>(
    map: &mut HashMap<u64, V>,
    max: usize,
    k: u64,
    v: V,
    expired: impl Fn(&V) -> bool,
    time: impl Fn(&V) -> u64,
) {
    if !map.contains_key(&k) && map.len() >= max {
        map.retain(|_, v| !expired(v));
        if map.len() >= max
            && let Some(old) = map.iter().min_by_key(|(_, v)| time(v)).map(|(k, _)| *k)
        {
            map.remove(&old);
        }
    }
    map.insert(k, v);
}

impl Greylist {
    /// An empty table keyed by `secret` (random, made once).
    pub fn new(config: &GreylistConfig, secret: [u8; SECRET_BYTES]) -> Greylist {
        Greylist {
            config: config.clone(),
            secret,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            triplets: HashMap::new(),
            allowed: HashMap::new(),
            known: HashMap::new(),
            dirty: false,
        }
    }

    fn digest(&self, parts: &[&[u8]]) -> u64 {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut b = [0u8; 8];
        b.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(b)
    }

    fn network_digest(&self, client: IpAddr) -> u64 {
        self.digest(&[b"net", &network(client)])
    }

    fn domain_digest(&self, domain: &str) -> u64 {
        self.digest(&[b"domain", domain.as_bytes()])
    }

    /// Triplets and allowed networks held.
    pub fn len(&self) -> (usize, usize) {
        (self.triplets.len(), self.allowed.len())
    }

    /// Known sender domains held.
    pub fn known_domains(&self) -> usize {
        self.known.len()
    }

    /// `domain` (lower case, no final dot) had a triplet pass within
    /// `auto_allow_s`.
    fn knows(&self, domain: &str, now: u64) -> bool {
        self.known
            .get(&self.domain_digest(domain))
            .is_some_and(|&t| self.allowed_now(t, now))
    }

    /// A triplet of `from`'s domain passed at `now`: the domain is known
    /// until `auto_allow_s` later (never without auto-allow).
    fn learn(&mut self, from: &str, now: u64) {
        let Some(domain) = sender_domain(from) else {
            return;
        };
        if self.config.auto_allow_s == 0 {
            return;
        }
        let k = self.domain_digest(&domain);
        let window = self.config.auto_allow_s;
        bounded_insert(
            &mut self.known,
            MAX_KNOWN_DOMAINS,
            k,
            now,
            |&t| now.saturating_sub(t) > window,
            |&t| t,
        );
        self.dirty = true;
    }

    /// True when something changed since the last [`Greylist::saved`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The caller took a snapshot to write.
    pub fn saved(&mut self) {
        self.dirty = false;
    }

    /// The snapshot was not written: mark the table changed again.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    fn allowed_now(&self, t: u64, now: u64) -> bool {
        now.saturating_sub(t) <= self.config.auto_allow_s && self.config.auto_allow_s > 0
    }

    /// How long a passed triplet is remembered after its last message:
    /// `auto_allow_s`, and at least `retry_window_s` (so that
    /// `auto_allow_s = 0` does not greylist every message again).
    fn passed_life(&self) -> u64 {
        self.config.auto_allow_s.max(self.config.retry_window_s)
    }

    /// Lets `client`'s network through without delay for `auto_allow_s`
    /// from `now` (after a passed retry; or, through `check`, a client
    /// that passed SPF for a known sender domain).
    pub fn allow(&mut self, client: IpAddr, now: u64) {
        if self.config.auto_allow_s == 0 {
            return;
        }
        let k = self.network_digest(client);
        let window = self.config.auto_allow_s;
        bounded_insert(
            &mut self.allowed,
            MAX_ALLOWED,
            k,
            now,
            |&t| now.saturating_sub(t) > window,
            |&t| t,
        );
        self.dirty = true;
    }

    /// The verdict on one recipient: `Ok` to accept, or 450 4.7.1.
    /// `from` is the envelope sender (empty for `<>`), `to` the
    /// recipient; both compared without case.
    /// `spf_pass`: the client passed SPF for the domain of `from` (a
    /// check still running is not a pass); when that domain is known (see
    /// the module's notes) the client passes at once and its network is
    /// allowed like a client that retried.
    pub fn check(
        &mut self,
        now: u64,
        client: IpAddr,
        from: &str,
        to: &str,
        spf_pass: bool,
    ) -> Result<(), Reply> {
        if spf_pass && sender_domain(from).is_some_and(|d| self.knows(&d, now)) {
            self.allow(client, now);
            return Ok(());
        }
        let net = self.network_digest(client);
        if let Some(&t) = self.allowed.get(&net)
            && self.allowed_now(t, now)
        {
            self.allowed.insert(net, now);
            self.dirty = true;
            return Ok(());
        }
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        let k = self.digest(&[b"triplet", &network(client), from.as_bytes(), to.as_bytes()]);
        let c = &self.config;
        let state = match self.triplets.get(&k) {
            Some(&Triplet::Passed(t)) if now.saturating_sub(t) <= self.passed_life() => {
                Triplet::Passed(now)
            }
            Some(&Triplet::Waiting(first))
                if now.saturating_sub(first) <= c.retry_window_s && now >= first =>
            {
                if now - first >= c.min_delay_s {
                    Triplet::Passed(now)
                } else {
                    Triplet::Waiting(first)
                }
            }
            _ => Triplet::Waiting(now),
        };
        let (window, allow) = (c.retry_window_s, self.passed_life());
        bounded_insert(
            &mut self.triplets,
            MAX_TRIPLETS,
            k,
            state,
            |v| match *v {
                Triplet::Waiting(t) => now.saturating_sub(t) > window,
                Triplet::Passed(t) => now.saturating_sub(t) > allow,
            },
            |v| v.time(),
        );
        self.dirty = true;
        match state {
            Triplet::Passed(_) => {
                self.allow(client, now);
                self.learn(&from, now);
                Ok(())
            }
            Triplet::Waiting(_) => Err(Reply::new(
                450,
                "4.7.1",
                "Greylisted: please try again in a few minutes",
            )),
        }
    }

    /// Drops expired entries.
    pub fn prune(&mut self, now: u64) {
        let c = &self.config;
        let (window, life) = (c.retry_window_s, self.passed_life());
        let allow = c.auto_allow_s;
        let before = self.len();
        self.triplets.retain(|_, v| match *v {
            Triplet::Waiting(t) => now.saturating_sub(t) <= window,
            Triplet::Passed(t) => now.saturating_sub(t) <= life,
        });
        self.allowed
            .retain(|_, t| allow > 0 && now.saturating_sub(*t) <= allow);
        let domains = self.known.len();
        self.known
            .retain(|_, t| allow > 0 && now.saturating_sub(*t) <= allow);
        if self.len() != before || self.known.len() != domains {
            self.dirty = true;
        }
    }

    /// The snapshot of the table (expired entries are left out).
    pub fn encode(&mut self, now: u64) -> Vec<u8> {
        self.prune(now);
        let n = self.triplets.len() + self.allowed.len() + self.known.len();
        let mut out = Vec::with_capacity(HEADER_BYTES + n * RECORD_BYTES + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.secret);
        let mut record = |kind: u8, k: u64, t: u64| {
            out.push(kind);
            out.extend_from_slice(&k.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        };
        for (&k, &v) in &self.triplets {
            match v {
                Triplet::Waiting(t) => record(WAITING, k, t),
                Triplet::Passed(t) => record(PASSED, k, t),
            }
        }
        for (&k, &t) in &self.allowed {
            record(ALLOWED, k, t);
        }
        for (&k, &t) in &self.known {
            record(KNOWN_DOMAIN, k, t);
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }

    /// A table from a snapshot (this version or [`MAGIC_V1`]), checked
    /// whole before use; expired entries are dropped. An error leaves
    /// nothing loaded.
    pub fn decode(
        config: &GreylistConfig,
        bytes: &[u8],
        now: u64,
    ) -> Result<Greylist, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge(bytes.len()));
        }
        let v1 = bytes.starts_with(MAGIC_V1);
        if !v1 && !bytes.starts_with(MAGIC) {
            return Err(SnapshotError::BadMagic);
        }
        if bytes.len() < HEADER_BYTES + 8
            || !(bytes.len() - HEADER_BYTES - 8).is_multiple_of(RECORD_BYTES)
        {
            return Err(SnapshotError::Truncated);
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if fnv1a64(body).to_be_bytes() != sum {
            return Err(SnapshotError::Checksum);
        }
        let mut secret = [0u8; SECRET_BYTES];
        secret.copy_from_slice(&body[MAGIC.len()..HEADER_BYTES]);
        let mut g = Greylist::new(config, secret);
        for (i, r) in body[HEADER_BYTES..].chunks_exact(RECORD_BYTES).enumerate() {
            let k = u64::from_be_bytes(r[1..9].try_into().expect("8 bytes"));
            let t = u64::from_be_bytes(r[9..17].try_into().expect("8 bytes"));
            let dup = match r[0] {
                WAITING => g.triplets.insert(k, Triplet::Waiting(t)).is_some(),
                PASSED => g.triplets.insert(k, Triplet::Passed(t)).is_some(),
                ALLOWED => g.allowed.insert(k, t).is_some(),
                KNOWN_DOMAIN if !v1 => g.known.insert(k, t).is_some(),
                _ => return Err(SnapshotError::BadRecord(i)),
            };
            if dup
                || g.triplets.len() > MAX_TRIPLETS
                || g.allowed.len() > MAX_ALLOWED
                || g.known.len() > MAX_KNOWN_DOMAINS
            {
                // A duplicate digest or more than the table holds: not a
                // file this code wrote.
                return Err(SnapshotError::BadRecord(i));
            }
        }
        g.prune(now);
        g.dirty = false;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GreylistConfig {
        GreylistConfig {
            enabled: true,
            min_delay_s: 300,
            retry_window_s: 86_400,
            auto_allow_s: 30 * 86_400,
            save_interval_s: 900,
        }
    }

    const T0: u64 = 1_800_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn code(r: Result<(), Reply>) -> (u16, &'static str) {
        match r {
            Ok(()) => (250, ""),
            Err(r) => (r.code, r.enhanced.unwrap()),
        }
    }

    #[test]
    fn first_sighting_450_then_a_retry_after_the_delay_passes() {
        let mut g = Greylist::new(&config(), [7; SECRET_BYTES]);
        let c = ip("203.0.113.5");
        assert_eq!(
            code(g.check(T0, c, "a@x.test", "u@home.arpa", false)),
            (450, "4.7.1")
        );
        // Too early: still 450, and the clock is not restarted.
        assert_eq!(
            code(g.check(T0 + 299, c, "a@x.test", "u@home.arpa", false)),
            (450, "4.7.1")
        );
        // Another address of the same /24, after the delay: passes.
        assert_eq!(
            code(g.check(
                T0 + 300,
                ip("203.0.113.77"),
                "A@X.test",
                "u@home.arpa",
                false
            )),
            (250, "")
        );
        // The network is now allowed: a new triplet passes at once.
        assert_eq!(
            code(g.check(T0 + 400, c, "b@y.test", "v@home.arpa", false)),
            (250, "")
        );
        // Another network does not.
        assert_eq!(
            code(g.check(
                T0 + 400,
                ip("198.51.100.1"),
                "b@y.test",
                "v@home.arpa",
                false
            )),
            (450, "4.7.1")
        );
        // Allowed until auto_allow_s after the last pass.
        assert_eq!(
            code(g.check(T0 + 400 + 30 * 86_400, c, "q@z.test", "v@home.arpa", false)),
            (250, "")
        );
        assert_eq!(
            code(g.check(
                T0 + 401 + 60 * 86_400 + 1,
                c,
                "r@z.test",
                "v@home.arpa",
                false
            )),
            (450, "4.7.1")
        );
    }

    #[test]
    fn a_retry_after_the_window_starts_over() {
        let mut g = Greylist::new(&config(), [1; SECRET_BYTES]);
        let c = ip("2001:db8:5:6::1");
        assert!(g.check(T0, c, "", "u@home.arpa", false).is_err());
        assert_eq!(
            code(g.check(T0 + 86_401, c, "", "u@home.arpa", false)),
            (450, "4.7.1")
        );
        assert_eq!(
            code(g.check(T0 + 86_401 + 299, c, "", "u@home.arpa", false)),
            (450, "4.7.1")
        );
        // The same /64.
        assert_eq!(
            code(g.check(
                T0 + 86_401 + 300,
                ip("2001:db8:5:6::99"),
                "",
                "u@home.arpa",
                false
            )),
            (250, "")
        );
    }

    #[test]
    fn without_auto_allow_a_passed_triplet_is_still_remembered() {
        let mut g = Greylist::new(
            &GreylistConfig {
                auto_allow_s: 0,
                ..config()
            },
            [1; SECRET_BYTES],
        );
        let c = ip("192.0.2.1");
        assert!(g.check(T0, c, "a@x", "u@h", false).is_err());
        assert!(g.check(T0 + 300, c, "a@x", "u@h", false).is_ok());
        assert!(g.check(T0 + 400, c, "a@x", "u@h", false).is_ok());
        // No network allowed: a new triplet waits.
        assert_eq!(
            code(g.check(T0 + 400, c, "b@x", "u@h", false)),
            (450, "4.7.1")
        );
        assert_eq!(g.len().1, 0);
    }

    /// A file with `body` (magic, secret, records) and its checksum.
    fn with_sum(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        let sum = fnv1a64(&f);
        f.extend_from_slice(&sum.to_be_bytes());
        f
    }

    #[test]
    fn a_domain_is_known_only_after_a_pass_and_spf_then_lets_new_clients_in() {
        let mut g = Greylist::new(&config(), [1; SECRET_BYTES]);
        let (c1, c2) = (ip("203.0.113.5"), ip("198.51.100.1"));
        // SPF passes, but nothing of x.test has passed yet: greylisted.
        assert_eq!(
            code(g.check(T0, c1, "a@x.test", "u@home.arpa", true)),
            (450, "4.7.1")
        );
        assert_eq!(
            code(g.check(T0 + 10, c2, "b@x.test", "u@home.arpa", true)),
            (450, "4.7.1")
        );
        assert_eq!(g.known_domains(), 0, "waiting teaches nothing");
        // A proper retry: x.test is known.
        assert!(
            g.check(T0 + 300, c1, "a@x.test", "u@home.arpa", false)
                .is_ok()
        );
        assert_eq!(g.known_domains(), 1);
        // A new network, a new address, SPF passes for x.test: at once,
        // and the network is allowed as after a retry.
        assert_eq!(
            code(g.check(T0 + 301, c2, "n@X.Test.", "v@home.arpa", true)),
            (250, "")
        );
        assert_eq!(
            code(g.check(T0 + 302, c2, "m@other.test", "v@home.arpa", false)),
            (250, "")
        );
        // Without the SPF pass, for an unknown domain, or the null
        // sender: greylisted.
        let c3 = ip("192.0.2.1");
        for (from, spf) in [("o@x.test", false), ("o@y.test", true), ("", true)] {
            assert_eq!(
                code(g.check(T0 + 303, c3, from, "u@home.arpa", spf)),
                (450, "4.7.1"),
                "{from} {spf}"
            );
        }
        // A bounce's triplet passing teaches nothing: the null sender is
        // never known.
        let c5 = ip("192.0.8.200");
        assert!(g.check(T0 + 303, c5, "", "w@home.arpa", false).is_err());
        assert!(g.check(T0 + 603, c5, "", "w@home.arpa", false).is_ok());
        assert_eq!(
            code(g.check(T0 + 604, ip("192.0.9.1"), "", "w@home.arpa", true)),
            (450, "4.7.1")
        );
        // Mail through an allowed network skips the triplets and teaches
        // no domain (other.test went through c2's network above).
        assert_eq!(
            code(g.check(T0 + 304, c3, "o@other.test", "u@home.arpa", true)),
            (450, "4.7.1")
        );
        assert_eq!(g.known_domains(), 1);
        // Known until auto_allow_s after the last pass; SPF passes do
        // not extend it.
        let c4 = ip("2001:db8::1");
        assert!(
            g.check(T0 + 300 + 30 * 86_400, c4, "p@x.test", "u@home.arpa", true)
                .is_ok()
        );
        assert_eq!(
            code(g.check(
                T0 + 301 + 30 * 86_400,
                ip("2001:db8:1::1"),
                "p@x.test",
                "u@home.arpa",
                true
            )),
            (450, "4.7.1")
        );
    }

    #[test]
    fn without_auto_allow_no_domain_is_known() {
        let mut g = Greylist::new(
            &GreylistConfig {
                auto_allow_s: 0,
                ..config()
            },
            [1; SECRET_BYTES],
        );
        let c = ip("192.0.2.1");
        assert!(g.check(T0, c, "a@x.test", "u@h", true).is_err());
        assert!(g.check(T0 + 300, c, "a@x.test", "u@h", true).is_ok());
        assert_eq!(g.known_domains(), 0);
        assert!(
            g.check(T0 + 301, ip("198.51.100.1"), "b@x.test", "u@h", true)
                .is_err()
        );
    }

    #[test]
    fn known_domains_are_bounded() {
        let mut g = Greylist::new(&config(), [1; SECRET_BYTES]);
        let n = MAX_KNOWN_DOMAINS + 10;
        // One network per domain (an allowed network would skip the
        // triplets and teach nothing).
        let client = |i: usize| IpAddr::from([10, (i >> 8) as u8, i as u8, 1]);
        for i in 0..n {
            let _ = g.check(
                T0 + i as u64,
                client(i),
                &format!("s@d{i}.test"),
                "u@h",
                false,
            );
        }
        for i in 0..n {
            let at = T0 + 10_000 + i as u64;
            assert!(
                g.check(at, client(i), &format!("s@d{i}.test"), "u@h", false)
                    .is_ok()
            );
            assert!(g.known_domains() <= MAX_KNOWN_DOMAINS);
        }
        assert_eq!(g.known_domains(), MAX_KNOWN_DOMAINS);
        // The oldest went, the newest stayed.
        let stranger = |i: u8| IpAddr::from([198, 51, 100, i]);
        let late = T0 + 20_000;
        assert!(
            g.check(late, stranger(1), "n@d0.test", "u@h", true)
                .is_err()
        );
        let last = format!("n@d{}.test", n - 1);
        assert!(g.check(late, ip("192.0.2.1"), &last, "u@h", true).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut g = Greylist::new(&config(), [1; SECRET_BYTES]);
        for i in 0..(MAX_TRIPLETS + 50) {
            let _ = g.check(
                T0 + i as u64,
                ip("192.0.2.1"),
                &format!("s{i}@x"),
                "u@h",
                false,
            );
            assert!(g.len().0 <= MAX_TRIPLETS);
        }
        // The oldest went, the newest stayed.
        assert!(
            g.check(T0 + 4000, ip("192.0.2.1"), "s0@x", "u@h", false)
                .is_err()
        );
        let last = format!("s{}@x", MAX_TRIPLETS + 49);
        assert!(
            g.check(T0 + 9000, ip("192.0.2.1"), &last, "u@h", false)
                .is_ok()
        );
    }

    #[test]
    fn snapshots_round_trip_and_bad_files_are_refused() {
        let mut g = Greylist::new(&config(), [9; SECRET_BYTES]);
        let c = ip("203.0.113.5");
        let _ = g.check(T0, c, "a@x.test", "u@home.arpa", false);
        let _ = g.check(T0, ip("198.51.100.1"), "a@x.test", "u@home.arpa", false);
        let _ = g.check(
            T0 + 300,
            ip("198.51.100.1"),
            "a@x.test",
            "u@home.arpa",
            false,
        );
        let snap = g.encode(T0 + 300);
        assert!(snap.starts_with(MAGIC));
        // Two triplets, a network, a domain.
        assert_eq!(snap.len(), HEADER_BYTES + 4 * RECORD_BYTES + 8);
        let mut back = Greylist::decode(&config(), &snap, T0 + 310).unwrap();
        assert_eq!(back.len(), (2, 1));
        assert_eq!(back.known_domains(), 1);
        assert!(!back.is_dirty());
        // The known domain came back: a new network with SPF passes.
        assert!(
            back.check(T0 + 305, ip("192.0.2.7"), "z@x.test", "w@home.arpa", true)
                .is_ok()
        );
        // The waiting triplet keeps its first sighting.
        assert!(
            back.check(T0 + 300, c, "a@x.test", "u@home.arpa", false)
                .is_ok()
        );
        assert!(
            back.check(T0 + 310, ip("198.51.100.9"), "n@x", "m@h", false)
                .is_ok()
        );
        // Expired entries are dropped on load.
        let later = Greylist::decode(&config(), &snap, T0 + 100 * 86_400).unwrap();
        assert_eq!(later.len(), (0, 0));
        assert_eq!(later.known_domains(), 0);

        let mut bad = snap.clone();
        bad[HEADER_BYTES + 3] ^= 1;
        assert_eq!(
            Greylist::decode(&config(), &bad, T0).unwrap_err(),
            SnapshotError::Checksum
        );
        assert_eq!(
            Greylist::decode(&config(), &snap[..snap.len() - 1], T0).unwrap_err(),
            SnapshotError::Truncated
        );
        assert_eq!(
            Greylist::decode(&config(), b"junk", T0).unwrap_err(),
            SnapshotError::BadMagic
        );
        let huge = vec![0u8; MAX_SNAPSHOT_BYTES + 1];
        assert!(matches!(
            Greylist::decode(&config(), &huge, T0),
            Err(SnapshotError::TooLarge(_))
        ));
        let mut kind = snap[..snap.len() - 8].to_vec();
        kind[HEADER_BYTES] = 9;
        let sum = fnv1a64(&kind);
        kind.extend_from_slice(&sum.to_be_bytes());
        assert_eq!(
            Greylist::decode(&config(), &kind, T0).unwrap_err(),
            SnapshotError::BadRecord(0)
        );
    }

    #[test]
    fn a_version_1_snapshot_loads_its_triplets_and_no_domains() {
        let mut g = Greylist::new(&config(), [9; SECRET_BYTES]);
        let (c, d) = (ip("203.0.113.5"), ip("198.51.100.1"));
        let _ = g.check(T0, c, "a@x.test", "u@home.arpa", false);
        let _ = g.check(T0, d, "a@x.test", "u@home.arpa", false);
        let _ = g.check(T0 + 300, d, "a@x.test", "u@home.arpa", false);
        let snap = g.encode(T0 + 300);
        // What the previous version wrote: its magic, no kind 4.
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&snap[MAGIC.len()..HEADER_BYTES]);
        for r in snap[HEADER_BYTES..snap.len() - 8].chunks_exact(RECORD_BYTES) {
            if r[0] != KNOWN_DOMAIN {
                v1.extend_from_slice(r);
            }
        }
        let v1 = with_sum(&v1);
        assert_eq!(v1.len(), HEADER_BYTES + 3 * RECORD_BYTES + 8);
        let mut back = Greylist::decode(&config(), &v1, T0 + 310).unwrap();
        assert_eq!((back.len(), back.known_domains()), ((2, 1), 0));
        // x.test is not known; the triplets and networks work (and the
        // waiting triplet's pass makes x.test known again).
        assert!(
            back.check(T0 + 310, ip("192.0.2.7"), "z@x.test", "w@home.arpa", true)
                .is_err()
        );
        assert!(
            back.check(T0 + 310, d, "q@y.test", "u@home.arpa", false)
                .is_ok()
        );
        assert_eq!(back.known_domains(), 0);
        assert!(
            back.check(T0 + 310, c, "a@x.test", "u@home.arpa", false)
                .is_ok()
        );
        assert_eq!(back.known_domains(), 1);
        // Written again as version 2.
        assert!(back.encode(T0 + 310).starts_with(MAGIC));
        // A kind 4 record in a version 1 file is not one it wrote.
        let mut bad = v1[..v1.len() - 8].to_vec();
        bad[HEADER_BYTES] = KNOWN_DOMAIN;
        assert_eq!(
            Greylist::decode(&config(), &with_sum(&bad), T0).unwrap_err(),
            SnapshotError::BadRecord(0)
        );
    }
}
