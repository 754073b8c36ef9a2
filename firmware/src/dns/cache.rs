//! The answer cache: upstream responses stored as wire bytes, bounded by
//! bytes (not entries), evicted with CLOCK so that names asked again and
//! again stay, TTLs clamped, negative answers kept per RFC 2308, expired
//! entries kept as serve-stale candidates (RFC 8767) up to a maximum age,
//! and a hit count per entry for the hot set.
//!
//! Replies are made from the stored bytes by patching ID, flags, question
//! case and TTLs; nothing is decoded or re-encoded on a hit. This module
//! does no I/O and reads no clock: `now` (milliseconds on the service's
//! monotonic clock, possibly negative for entries loaded from a snapshot)
//! is always passed in.

use std::collections::HashMap;
use std::sync::Arc;

use super::wire::{self, Key, Query, Walked};

/// Milliseconds on the service's clock.
pub type Millis = i64;

/// The TTL a stale answer is given (RFC 8767 recommends 30 s).
pub const STALE_TTL: u32 = 30;
/// A negative answer without a SOA record is kept this long (seconds).
pub const NEGATIVE_TTL_WITHOUT_SOA: u32 = 10;
/// After a failed refresh, a stale entry is served at once (without
/// waiting for the client timeout) for this long (RFC 8767's
/// "failure recheck" timer).
pub const FAILED_REFRESH_HOLD_MS: Millis = 30_000;
/// Bytes counted per entry on top of its wire bytes and key (counted
/// twice, for the map and the question): the slot,
/// the map entry, the `Arc`, the boxes and allocator headers. Measured:
/// about 500 bytes of resident memory per cached name in all (2026-11-29,
/// x86-64), of which ~60 are wire bytes and ~50 the two key copies.
pub const ENTRY_OVERHEAD_BYTES: usize = 320;
/// One entry may take at most this fraction (1/N) of the cache.
pub const MAX_ENTRY_SHARE: usize = 8;

/// The cache's bounds and clamps, from `[dns]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_bytes: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub negative_max_ttl: u32,
    /// Seconds past expiry during which an entry may be served stale.
    pub stale_max_age: u32,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The answer's question is not the key it was offered under.
    #[error("the answer does not match its cache key")]
    KeyMismatch,
    /// Only NOERROR and NXDOMAIN answers are cached.
    #[error("response code {0} is not cached")]
    Rcode(u8),
    /// A truncated answer is never cached (it is retried over TCP).
    #[error("truncated responses are not cached")]
    Truncated,
    /// The entry would take more than 1/[`MAX_ENTRY_SHARE`] of the cache.
    #[error("an entry of {0} bytes is too large for the cache")]
    TooLarge(usize),
}

/// One cached answer: the response as sent upstream, without OPT, with
/// ID 0, the question lower-cased and every TTL clamped.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    pub wire: Box<[u8]>,
    /// Offsets of every record's TTL field in `wire`.
    pub ttl_offsets: Box<[u16]>,
    /// When it was stored, on the service's clock.
    pub stored_at: Millis,
    /// Seconds it is fresh for (the smallest TTL of its records).
    pub ttl: u32,
}

impl Stored {
    /// Makes a cache entry from an upstream response already checked by
    /// [`wire::walk`].
    pub fn from_response(
        resp: &[u8],
        w: &Walked,
        now: Millis,
        lim: &CacheLimits,
    ) -> Result<Stored, CacheError> {
        let rcode = w.rcode();
        if rcode != wire::RCODE_NOERROR && rcode != wire::RCODE_NXDOMAIN {
            return Err(CacheError::Rcode(rcode));
        }
        if w.truncated() {
            return Err(CacheError::Truncated);
        }
        // Keep everything before the first OPT (it is hop-by-hop).
        let keep = w
            .records
            .iter()
            .position(|r| r.rtype == wire::TYPE_OPT)
            .unwrap_or(w.records.len());
        let end = w.records.get(keep).map(|r| r.start).unwrap_or(resp.len());
        let mut buf = resp[..end].to_vec();
        let records = &w.records[..keep];
        let counts = [0u8, 1, 2].map(|s| records.iter().filter(|r| r.section == s).count() as u16);
        buf[0..2].copy_from_slice(&[0, 0]);
        buf[2] = 0x80 | (buf[2] & 0x01); // QR, keep RD
        buf[3] = 0x80 | (rcode & 0xF); // RA, rcode
        for (i, c) in counts.iter().enumerate() {
            buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        let qlen = w.qname.len();
        buf[wire::HEADER_LEN..wire::HEADER_LEN + qlen].make_ascii_lowercase();

        let negative = rcode == wire::RCODE_NXDOMAIN || counts[0] == 0;
        let ttl = if negative {
            let soa = records.iter().filter(|r| r.section == 1).find_map(|r| {
                wire::soa_minimum(resp, r).map(|m| m.min(wire::ttl_at(resp, r.ttl_at)))
            });
            let t = soa
                .unwrap_or(NEGATIVE_TTL_WITHOUT_SOA)
                .min(lim.negative_max_ttl)
                .max(1);
            for r in records {
                wire::set_ttl(&mut buf, r.ttl_at, t);
            }
            t
        } else {
            let mut min = u32::MAX;
            for r in records {
                let t = wire::ttl_at(&buf, r.ttl_at).clamp(lim.min_ttl, lim.max_ttl);
                wire::set_ttl(&mut buf, r.ttl_at, t);
                min = min.min(t);
            }
            min
        };
        let stored = Stored {
            ttl_offsets: records.iter().map(|r| r.ttl_at as u16).collect(),
            wire: buf.into_boxed_slice(),
            stored_at: now,
            ttl,
        };
        if stored.cost(w.qname.len() + 4) > lim.max_bytes / MAX_ENTRY_SHARE {
            return Err(CacheError::TooLarge(stored.wire.len()));
        }
        Ok(stored)
    }

    /// The cache key this answer is stored under: its question section
    /// (lower-cased name, type, class) read in place, without a copy.
    pub fn key_bytes(&self) -> &[u8] {
        let mut at = wire::HEADER_LEN;
        while let Some(&len) = self.wire.get(at) {
            if len == 0 || len & 0xC0 != 0 {
                break;
            }
            at += 1 + len as usize;
        }
        let end = (at + 5).min(self.wire.len());
        &self.wire[wire::HEADER_LEN.min(end)..end]
    }

    pub fn expires_at(&self) -> Millis {
        self.stored_at + self.ttl as Millis * 1000
    }

    #[cfg(test)]
    pub fn rcode(&self) -> u8 {
        self.wire
            .get(3)
            .map(|b| b & 0xF)
            .unwrap_or(wire::RCODE_SERVFAIL)
    }

    /// Bytes this entry is charged against the cache bound.
    pub fn cost(&self, key_len: usize) -> usize {
        self.wire.len() + self.ttl_offsets.len() * 2 + 2 * key_len + ENTRY_OVERHEAD_BYTES
    }

    /// The reply to `q` made from the stored bytes: ID, flags and question
    /// case patched, TTLs counted down (or [`STALE_TTL`] when `stale`),
    /// OPT appended when the client sent one. Not yet cut to a UDP size.
    pub fn render(&self, q: &Query, now: Millis, stale: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 11);
        out.extend_from_slice(&self.wire);
        wire::patch_header(&mut out, q);
        let age = ((now - self.stored_at).max(0) / 1000) as u32;
        for &at in self.ttl_offsets.iter() {
            let at = at as usize;
            let ttl = if stale {
                STALE_TTL
            } else {
                wire::ttl_at(&out, at).saturating_sub(age)
            };
            wire::set_ttl(&mut out, at, ttl);
        }
        if q.edns.is_some() {
            wire::append_opt(&mut out);
        }
        out
    }
}

/// What the cache has for a key.
#[derive(Debug, Clone)]
pub enum Lookup {
    Fresh(Arc<Stored>),
    /// Expired but within the stale age; `failed_recently` when a refresh
    /// failed less than [`FAILED_REFRESH_HOLD_MS`] ago.
    Stale {
        stored: Arc<Stored>,
        failed_recently: bool,
    },
    Miss,
}

/// One cache slot. The key is not kept here: it is the stored answer's
/// question ([`Stored::key_bytes`]), which saves a copy per entry.
struct Slot {
    stored: Arc<Stored>,
    referenced: bool,
    hits: u32,
    failed_at: Option<Millis>,
}

/// Counters the cache keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub stale_candidates: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub rejected: u64,
}

/// The cache itself. See the module header.
pub struct Cache {
    lim: CacheLimits,
    map: HashMap<Key, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
    pub counters: CacheCounters,
}

impl Cache {
    pub fn new(lim: CacheLimits) -> Cache {
        Cache {
            lim,
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            bytes: 0,
            counters: CacheCounters::default(),
        }
    }

    pub fn limits(&self) -> &CacheLimits {
        &self.lim
    }

    /// Bytes charged to entries now (always <= `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Looks `key` up; a hit counts towards the entry's hit count.
    pub fn get(&mut self, key: &Key, now: Millis) -> Lookup {
        let Some(&i) = self.map.get(key) else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        let stale_limit = self.lim.stale_max_age as Millis * 1000;
        let Some(slot) = self.slots[i].as_mut() else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        slot.referenced = true;
        slot.hits = slot.hits.saturating_add(1);
        let exp = slot.stored.expires_at();
        if now < exp {
            self.counters.hits += 1;
            return Lookup::Fresh(slot.stored.clone());
        }
        if now < exp + stale_limit {
            self.counters.stale_candidates += 1;
            let failed_recently = slot
                .failed_at
                .is_some_and(|t| now - t < FAILED_REFRESH_HOLD_MS);
            return Lookup::Stale {
                stored: slot.stored.clone(),
                failed_recently,
            };
        }
        self.counters.misses += 1;
        self.remove_slot(i);
        Lookup::Miss
    }

    /// Notes that a refresh of `key` failed at `now`.
    pub fn mark_refresh_failed(&mut self, key: &Key, now: Millis) {
        if let Some(&i) = self.map.get(key)
            && let Some(s) = self.slots[i].as_mut()
        {
            s.failed_at = Some(now);
        }
    }

    /// Stores `stored` under `key`, evicting cold entries to stay within
    /// the byte bound. Keeps the hit count of an entry it replaces.
    pub fn insert(&mut self, key: Key, stored: Arc<Stored>) -> Result<(), CacheError> {
        self.insert_with_hits(key, stored, 0)
    }

    /// As [`Cache::insert`], with a starting hit count (snapshot load).
    pub fn insert_with_hits(
        &mut self,
        key: Key,
        stored: Arc<Stored>,
        hits: u32,
    ) -> Result<(), CacheError> {
        if stored.key_bytes() != &key.0[..] {
            self.counters.rejected += 1;
            return Err(CacheError::KeyMismatch);
        }
        let cost = stored.cost(key.0.len());
        if cost > self.lim.max_bytes / MAX_ENTRY_SHARE {
            self.counters.rejected += 1;
            return Err(CacheError::TooLarge(cost));
        }
        let mut hits = hits;
        if let Some(&i) = self.map.get(&key) {
            if let Some(old) = self.slots[i].as_ref() {
                hits = hits.max(old.hits);
            }
            self.remove_slot(i);
        }
        while self.bytes + cost > self.lim.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        let slot = Slot {
            stored,
            referenced: false,
            hits,
            failed_at: None,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.bytes += cost;
        self.counters.inserts += 1;
        Ok(())
    }

    fn remove_slot(&mut self, i: usize) {
        if let Some(s) = self.slots[i].take() {
            let key = s.stored.key_bytes();
            self.bytes -= s.stored.cost(key.len());
            self.map.remove(key);
            self.free.push(i);
        }
    }

    /// One step of CLOCK: the first unreferenced entry from the hand is
    /// evicted; referenced ones get their bit cleared and a second chance.
    fn evict_one(&mut self) -> bool {
        let n = self.slots.len();
        if n == 0 || self.map.is_empty() {
            return false;
        }
        for _ in 0..2 * n + 1 {
            let i = self.hand % n;
            self.hand = (i + 1) % n;
            if let Some(s) = self.slots[i].as_mut() {
                if s.referenced {
                    s.referenced = false;
                } else {
                    self.remove_slot(i);
                    self.counters.evictions += 1;
                    return true;
                }
            }
        }
        false
    }

    /// The `n` entries with the most hits, most first.
    pub fn hot(&self, n: usize) -> Vec<(Key, u32)> {
        let mut v: Vec<(Key, u32)> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.hits > 0)
            .map(|s| (Key(s.stored.key_bytes().into()), s.hits))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Every entry with its hit count (for the snapshot).
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<Stored>, u32)> {
        self.slots.iter().flatten().map(|s| (&s.stored, s.hits))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::wire::{Parsed, parse_query};
    use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    pub(crate) fn limits() -> CacheLimits {
        CacheLimits {
            max_bytes: 64 * 1024,
            min_ttl: 5,
            max_ttl: 3600,
            negative_max_ttl: 600,
            stale_max_age: 86400,
        }
    }

    pub(crate) fn answer(name: &str, ttl: u32, ip: Ipv4Addr) -> Vec<u8> {
        let mut m = Message::new(77, MessageType::Response, OpCode::Query);
        let n = Name::from_ascii(name).unwrap();
        m.add_query(HQuery::query(n.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(n, ttl, RData::A(A(ip))));
        m.to_vec().unwrap()
    }

    pub(crate) fn nxdomain(name: &str, soa_ttl: u32, minimum: u32) -> Vec<u8> {
        let mut m = Message::new(78, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let n = Name::from_ascii(name).unwrap();
        m.add_query(HQuery::query(n, RecordType::A));
        let zone = Name::from_ascii("example.").unwrap();
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 2, 3, 4, minimum);
        m.add_authority(Record::from_rdata(zone, soa_ttl, RData::SOA(soa)));
        m.to_vec().unwrap()
    }

    fn q(name: &str) -> Query {
        let b = crate::dns::wire::tests::query_bytes(name, RecordType::A, false);
        match parse_query(&b) {
            Parsed::Query(q) => q,
            other => panic!("{other:?}"),
        }
    }

    fn store(resp: &[u8], now: Millis) -> Arc<Stored> {
        let w = wire::walk(resp).unwrap();
        Arc::new(Stored::from_response(resp, &w, now, &limits()).unwrap())
    }

    #[test]
    fn hit_patches_id_case_and_counts_ttl_down() {
        let s = store(&answer("www.example.", 300, Ipv4Addr::new(192, 0, 2, 1)), 0);
        let query = q("WWW.example.");
        let out = s.render(&query, 100_500, false);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_available);
        assert_eq!(m.queries[0].name().to_ascii(), "WWW.example.");
        assert_eq!(m.answers[0].ttl, 200);
        let stale = s.render(&query, 400_000, true);
        assert_eq!(Message::from_vec(&stale).unwrap().answers[0].ttl, STALE_TTL);
    }

    #[test]
    fn ttls_are_clamped() {
        let s = store(&answer("a.example.", 1, Ipv4Addr::LOCALHOST), 0);
        assert_eq!(s.ttl, 5);
        let s = store(&answer("a.example.", 1_000_000, Ipv4Addr::LOCALHOST), 0);
        assert_eq!(s.ttl, 3600);
    }

    #[test]
    fn negative_ttl_is_soa_minimum() {
        let s = store(&nxdomain("nope.example.", 900, 120), 0);
        assert_eq!(s.ttl, 120);
        assert_eq!(s.rcode(), wire::RCODE_NXDOMAIN);
        let s = store(&nxdomain("nope.example.", 60, 120), 0);
        assert_eq!(s.ttl, 60);
        let s = store(&nxdomain("nope.example.", 9000, 9000), 0);
        assert_eq!(s.ttl, 600);
    }

    #[test]
    fn fresh_then_stale_then_gone() {
        let mut c = Cache::new(limits());
        let k = q("www.example.").key();
        c.insert(
            k.clone(),
            store(&answer("www.example.", 60, Ipv4Addr::LOCALHOST), 0),
        )
        .unwrap();
        assert!(matches!(c.get(&k, 59_000), Lookup::Fresh(_)));
        assert!(matches!(
            c.get(&k, 61_000),
            Lookup::Stale {
                failed_recently: false,
                ..
            }
        ));
        c.mark_refresh_failed(&k, 61_000);
        assert!(matches!(
            c.get(&k, 62_000),
            Lookup::Stale {
                failed_recently: true,
                ..
            }
        ));
        assert!(matches!(c.get(&k, 60_000 + 86_400_000 + 1), Lookup::Miss));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn byte_bound_holds_and_hot_entries_survive() {
        let mut c = Cache::new(limits());
        let hot = q("hot.example.").key();
        c.insert(
            hot.clone(),
            store(&answer("hot.example.", 600, Ipv4Addr::LOCALHOST), 0),
        )
        .unwrap();
        for i in 0..5000 {
            let name = format!("n{i}.example.");
            c.insert(
                q(&name).key(),
                store(&answer(&name, 600, Ipv4Addr::LOCALHOST), 0),
            )
            .unwrap();
            assert!(c.bytes() <= limits().max_bytes);
            // The household keeps asking for the hot name.
            assert!(
                matches!(c.get(&hot, 1000), Lookup::Fresh(_)),
                "evicted at {i}"
            );
        }
        assert!(c.counters.evictions > 4000);
        assert_eq!(c.hot(1)[0].0, hot);
        assert!(c.len() < 5000);
    }
}
