//! The answer cache: upstream responses stored as wire bytes, bounded by
//! bytes (not entries), evicted with CLOCK so that names asked again and
//! again stay, TTLs clamped, negative answers kept per RFC 2308, expired
//! entries kept as serve-stale candidates (RFC 8767) up to a maximum age,
//! and a hit count per entry for the hot set.
//!
//! Memory: each entry is ONE allocation (header, TTL offsets, wire
//! answer; the key is the answer's own question), found through a
//! compact hash index of slot numbers keyed with a per-process random
//! seed. What an entry is charged against `cache_bytes` is what it
//! really takes: its allocation as malloc sizes it plus its share of the
//! slot vector, index and free list ([`SLOT_OVERHEAD_BYTES`]).
//!
//! Replies are made from the stored bytes by patching ID, flags, question
//! case and TTLs; nothing is decoded or re-encoded on a hit. This module
//! does no I/O and reads no clock: `now` (milliseconds on the service's
//! monotonic clock, possibly negative for entries loaded from a snapshot)
//! is always passed in.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

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
/// Bytes charged per entry on top of its own allocation: its slot in the
/// slot vector (one boxed-slice pointer, counted twice for the vector's
/// growth), its place in the hash index (a `u32` and a control byte at a
/// load of at most 7/8, counted twice for the table's growth) and its
/// place in the free list (a `u32`). 48 bytes on 64-bit, 32 on 32-bit.
pub const SLOT_OVERHEAD_BYTES: usize = 2 * size_of::<Option<Box<[u8]>>>() + 2 * 6 + 4;
/// One entry may take at most this fraction (1/N) of the cache.
pub const MAX_ENTRY_SHARE: usize = 8;

// Layout of an entry's single allocation: a fixed header, then the TTL
// offsets (u16 each), then the stored wire answer, whose question (at
// [`wire::HEADER_LEN`], `key_len` bytes) is the entry's key.
const AT_STORED: usize = 0; // i64, service clock
const AT_FAILED: usize = 8; // i64, i64::MIN when no refresh failed
const AT_TTL: usize = 16; // u32
const AT_HITS: usize = 20; // u32
const AT_N_TTL: usize = 24; // u16
const AT_KEY_LEN: usize = 26; // u16
const AT_FLAGS: usize = 28; // u8
const FLAG_REFERENCED: u8 = 1;
/// Bytes of an entry's header.
pub const ENTRY_HEADER_BYTES: usize = 29;
const NO_FAILURE: Millis = Millis::MIN;

/// What the allocator really takes for `len` bytes (glibc malloc: a
/// `size_t` header, rounded up to two `size_t`, at least four).
pub const fn alloc_bytes(len: usize) -> usize {
    const W: usize = size_of::<usize>();
    let n = (len + W + 2 * W - 1) & !(2 * W - 1);
    if n < 4 * W { 4 * W } else { n }
}

/// Bytes charged against the cache bound for an entry allocation of
/// `len` bytes.
pub const fn charge(len: usize) -> usize {
    alloc_bytes(len) + SLOT_OVERHEAD_BYTES
}

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

/// One answer on its way into (or out of) the cache: the response as
/// sent upstream, without OPT, with ID 0, the question lower-cased and
/// every TTL clamped. In the cache it is packed into one allocation
/// ([`Entry`]); this unpacked form is what waiters of a resolution share.
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

/// Writes the reply to `q` from stored bytes into `out` (cleared first):
/// ID, flags and question case patched, TTLs counted down (or
/// [`STALE_TTL`] when `stale`), OPT appended when the client sent one.
fn render_parts(
    wire_bytes: &[u8],
    ttl_offsets: impl Iterator<Item = usize>,
    stored_at: Millis,
    q: &Query,
    now: Millis,
    stale: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(wire_bytes);
    wire::patch_header(out, q);
    let age = ((now - stored_at).max(0) / 1000) as u32;
    for at in ttl_offsets {
        let ttl = if stale {
            STALE_TTL
        } else {
            wire::ttl_at(out, at).saturating_sub(age)
        };
        wire::set_ttl(out, at, ttl);
    }
    if q.edns.is_some() {
        wire::append_opt(out);
    }
}

/// The question section (lower-cased name, type, class) of a stored
/// answer, or an empty slice when it has none.
fn question_of(w: &[u8]) -> &[u8] {
    let mut at = wire::HEADER_LEN;
    while let Some(&len) = w.get(at) {
        if len == 0 || len & 0xC0 != 0 {
            break;
        }
        at += 1 + len as usize;
    }
    let end = (at + 5).min(w.len());
    &w[wire::HEADER_LEN.min(end)..end]
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
        if stored.cost() > lim.max_bytes / MAX_ENTRY_SHARE {
            return Err(CacheError::TooLarge(stored.wire.len()));
        }
        Ok(stored)
    }

    /// The cache key this answer is stored under: its question section
    /// (lower-cased name, type, class) read in place, without a copy.
    pub fn key_bytes(&self) -> &[u8] {
        question_of(&self.wire)
    }

    #[cfg(test)]
    pub fn rcode(&self) -> u8 {
        self.wire
            .get(3)
            .map(|b| b & 0xF)
            .unwrap_or(wire::RCODE_SERVFAIL)
    }

    /// Bytes of this answer packed as one cache entry.
    fn packed_len(&self) -> usize {
        ENTRY_HEADER_BYTES + 2 * self.ttl_offsets.len() + self.wire.len()
    }

    /// Bytes this answer is charged against the cache bound once stored:
    /// its one allocation as the allocator sizes it, plus
    /// [`SLOT_OVERHEAD_BYTES`].
    pub fn cost(&self) -> usize {
        charge(self.packed_len())
    }

    /// The reply to `q` made from the stored bytes (see [`render_parts`]).
    /// Not yet cut to a UDP size.
    pub fn render(&self, q: &Query, now: Millis, stale: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 11);
        let offsets = self.ttl_offsets.iter().map(|&a| a as usize);
        render_parts(&self.wire, offsets, self.stored_at, q, now, stale, &mut out);
        out
    }

    /// This answer packed as one cache entry with `hits`.
    fn pack(&self, hits: u32) -> Box<[u8]> {
        let mut v = Vec::with_capacity(self.packed_len());
        v.extend_from_slice(&self.stored_at.to_ne_bytes());
        v.extend_from_slice(&NO_FAILURE.to_ne_bytes());
        v.extend_from_slice(&self.ttl.to_ne_bytes());
        v.extend_from_slice(&hits.to_ne_bytes());
        v.extend_from_slice(&(self.ttl_offsets.len() as u16).to_ne_bytes());
        v.extend_from_slice(&(self.key_bytes().len() as u16).to_ne_bytes());
        v.push(0);
        for &o in self.ttl_offsets.iter() {
            v.extend_from_slice(&o.to_ne_bytes());
        }
        v.extend_from_slice(&self.wire);
        v.into_boxed_slice()
    }
}

/// A read-only view of one packed cache entry (header, TTL offsets, wire
/// answer in one allocation). Entries are only made by [`Stored::pack`]
/// from an answer whose question is its key, so the accessors cannot
/// go out of bounds.
#[derive(Clone, Copy)]
pub struct Entry<'a>(&'a [u8]);

impl<'a> Entry<'a> {
    fn u16_at(self, at: usize) -> u16 {
        u16::from_ne_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32_at(self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_ne_bytes(b)
    }
    fn i64_at(self, at: usize) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        i64::from_ne_bytes(b)
    }
    /// When it was stored, on the service's clock.
    pub fn stored_at(self) -> Millis {
        self.i64_at(AT_STORED)
    }
    /// Seconds it is fresh for.
    pub fn ttl(self) -> u32 {
        self.u32_at(AT_TTL)
    }
    pub fn hits(self) -> u32 {
        self.u32_at(AT_HITS)
    }
    pub fn expires_at(self) -> Millis {
        self.stored_at() + self.ttl() as Millis * 1000
    }
    fn failed_at(self) -> Option<Millis> {
        Some(self.i64_at(AT_FAILED)).filter(|&t| t != NO_FAILURE)
    }
    #[cfg(test)]
    fn referenced(self) -> bool {
        self.0[AT_FLAGS] & FLAG_REFERENCED != 0
    }
    fn n_ttl(self) -> usize {
        self.u16_at(AT_N_TTL) as usize
    }
    fn ttl_offsets(self) -> impl Iterator<Item = usize> + 'a {
        let n = self.n_ttl();
        self.0[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + 2 * n]
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]) as usize)
    }
    /// The stored answer (ID 0, lower-cased question, TTLs as stored).
    pub fn wire(self) -> &'a [u8] {
        &self.0[ENTRY_HEADER_BYTES + 2 * self.n_ttl()..]
    }
    /// The key: the stored answer's question section.
    pub fn key_bytes(self) -> &'a [u8] {
        let k = self.u16_at(AT_KEY_LEN) as usize;
        &self.wire()[wire::HEADER_LEN..wire::HEADER_LEN + k]
    }
    /// Bytes charged against the cache bound for this entry.
    pub fn cost(self) -> usize {
        charge(self.0.len())
    }
    /// Writes the reply to `q` into `out` (see [`render_parts`]).
    pub fn render_into(self, q: &Query, now: Millis, stale: bool, out: &mut Vec<u8>) {
        render_parts(
            self.wire(),
            self.ttl_offsets(),
            self.stored_at(),
            q,
            now,
            stale,
            out,
        );
    }
    /// An unpacked copy (for a client that waits on a refresh).
    pub fn to_stored(self) -> Stored {
        Stored {
            wire: self.wire().into(),
            ttl_offsets: self.ttl_offsets().map(|o| o as u16).collect(),
            stored_at: self.stored_at(),
            ttl: self.ttl(),
        }
    }
}

fn set_hits(e: &mut [u8], hits: u32) {
    e[AT_HITS..AT_HITS + 4].copy_from_slice(&hits.to_ne_bytes());
}

/// What the cache has for a key.
#[derive(Clone, Copy)]
pub enum Lookup<'a> {
    Fresh(Entry<'a>),
    /// Expired but within the stale age; `failed_recently` when a refresh
    /// failed less than [`FAILED_REFRESH_HOLD_MS`] ago.
    Stale {
        entry: Entry<'a>,
        failed_recently: bool,
    },
    Miss,
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

/// The cache itself. See the module header. Each entry is one allocation
/// in `slots`; `index` maps the hash of a key (keyed with a random seed
/// per process: keys are chosen by clients) to slot numbers.
pub struct Cache {
    lim: CacheLimits,
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Option<Box<[u8]>>>,
    free: Vec<u32>,
    hand: usize,
    bytes: usize,
    pub counters: CacheCounters,
}

impl Cache {
    pub fn new(lim: CacheLimits) -> Cache {
        Cache {
            lim,
            index: HashTable::new(),
            hasher: RandomState::new(),
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
        self.index.len()
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(key), |&i| {
                slots[i as usize]
                    .as_deref()
                    .is_some_and(|e| Entry(e).key_bytes() == key)
            })
            .map(|&i| i as usize)
    }

    /// Looks `key` (as made by [`wire::Key`]) up; a hit counts towards the
    /// entry's hit count.
    pub fn get(&mut self, key: &[u8], now: Millis) -> Lookup<'_> {
        let Some(i) = self.find(key) else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        let (expires, failed) = match self.slots[i].as_deref_mut() {
            Some(e) => {
                let hits = Entry(e).hits().saturating_add(1);
                set_hits(e, hits);
                e[AT_FLAGS] |= FLAG_REFERENCED;
                (Entry(e).expires_at(), Entry(e).failed_at())
            }
            None => (Millis::MIN, None),
        };
        let stale_limit = self.lim.stale_max_age as Millis * 1000;
        if now < expires {
            self.counters.hits += 1;
            return match self.slots[i].as_deref() {
                Some(e) => Lookup::Fresh(Entry(e)),
                None => Lookup::Miss,
            };
        }
        if now < expires.saturating_add(stale_limit) {
            self.counters.stale_candidates += 1;
            let failed_recently = failed.is_some_and(|t| now - t < FAILED_REFRESH_HOLD_MS);
            return match self.slots[i].as_deref() {
                Some(e) => Lookup::Stale {
                    entry: Entry(e),
                    failed_recently,
                },
                None => Lookup::Miss,
            };
        }
        self.counters.misses += 1;
        self.remove_slot(i);
        Lookup::Miss
    }

    /// Notes that a refresh of `key` failed at `now`.
    pub fn mark_refresh_failed(&mut self, key: &[u8], now: Millis) {
        if let Some(i) = self.find(key)
            && let Some(e) = self.slots[i].as_deref_mut()
        {
            e[AT_FAILED..AT_FAILED + 8].copy_from_slice(&now.to_ne_bytes());
        }
    }

    /// Stores `stored` under `key`, evicting cold entries to stay within
    /// the byte bound. Keeps the hit count of an entry it replaces.
    pub fn insert(&mut self, key: &[u8], stored: &Stored) -> Result<(), CacheError> {
        self.insert_with_hits(key, stored, 0)
    }

    /// As [`Cache::insert`], with a starting hit count (snapshot load).
    pub fn insert_with_hits(
        &mut self,
        key: &[u8],
        stored: &Stored,
        hits: u32,
    ) -> Result<(), CacheError> {
        if stored.key_bytes() != key {
            self.counters.rejected += 1;
            return Err(CacheError::KeyMismatch);
        }
        let cost = stored.cost();
        if cost > self.lim.max_bytes / MAX_ENTRY_SHARE {
            self.counters.rejected += 1;
            return Err(CacheError::TooLarge(cost));
        }
        let mut hits = hits;
        if let Some(i) = self.find(key) {
            if let Some(old) = self.slots[i].as_deref() {
                hits = hits.max(Entry(old).hits());
            }
            self.remove_slot(i);
        }
        while self.bytes + cost > self.lim.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        let packed = stored.pack(hits);
        debug_assert_eq!(charge(packed.len()), cost);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(packed);
                i
            }
            None => {
                self.slots.push(Some(packed));
                (self.slots.len() - 1) as u32
            }
        };
        let Cache {
            index,
            hasher,
            slots,
            ..
        } = self;
        index.insert_unique(hasher.hash_one(key), i, |&j| {
            slots[j as usize]
                .as_deref()
                .map_or(0, |e| hasher.hash_one(Entry(e).key_bytes()))
        });
        self.bytes += cost;
        self.counters.inserts += 1;
        Ok(())
    }

    fn remove_slot(&mut self, i: usize) {
        let Some(e) = self.slots[i].take() else {
            return;
        };
        let view = Entry(&e);
        self.bytes -= view.cost();
        let hash = self.hasher.hash_one(view.key_bytes());
        if let Ok(found) = self.index.find_entry(hash, |&j| j as usize == i) {
            found.remove();
        }
        self.free.push(i as u32);
    }

    /// One step of CLOCK: the first unreferenced entry from the hand is
    /// evicted; referenced ones get their bit cleared and a second chance.
    fn evict_one(&mut self) -> bool {
        let n = self.slots.len();
        if n == 0 || self.index.is_empty() {
            return false;
        }
        for _ in 0..2 * n + 1 {
            let i = self.hand % n;
            self.hand = (i + 1) % n;
            if let Some(e) = self.slots[i].as_deref_mut() {
                if e[AT_FLAGS] & FLAG_REFERENCED != 0 {
                    e[AT_FLAGS] &= !FLAG_REFERENCED;
                } else {
                    self.remove_slot(i);
                    self.counters.evictions += 1;
                    return true;
                }
            }
        }
        false
    }

    /// The `n` entries with the most hits, most first (ties by key).
    pub fn hot(&self, n: usize) -> Vec<(Key, u32)> {
        // Rank slot numbers first, so only the `n` winners are copied.
        let mut ranked: Vec<(u32, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_deref().map(|e| (i as u32, Entry(e).hits())))
            .filter(|&(_, hits)| hits > 0)
            .collect();
        let key_of = |i: u32| {
            self.slots[i as usize]
                .as_deref()
                .map_or(&[][..], |e| Entry(e).key_bytes())
        };
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| key_of(a.0).cmp(key_of(b.0))));
        ranked.truncate(n);
        ranked
            .into_iter()
            .map(|(i, hits)| (Key(key_of(i).into()), hits))
            .collect()
    }

    /// Every entry (for the snapshot).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.slots.iter().flatten().map(|e| Entry(e))
    }

    /// Whether the entry for `key` has its CLOCK reference bit set.
    #[cfg(test)]
    fn referenced(&self, key: &[u8]) -> Option<bool> {
        let i = self.find(key)?;
        self.slots[i].as_deref().map(|e| Entry(e).referenced())
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

    fn store(resp: &[u8], now: Millis) -> Stored {
        let w = wire::walk(resp).unwrap();
        Stored::from_response(resp, &w, now, &limits()).unwrap()
    }

    fn a_entry(c: &mut Cache, name: &str, ttl: u32, now: Millis) -> Key {
        let k = q(name).key();
        c.insert(&k.0, &store(&answer(name, ttl, Ipv4Addr::LOCALHOST), now))
            .unwrap();
        k
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
        let k = a_entry(&mut c, "www.example.", 60, 0);
        assert!(matches!(c.get(&k.0, 59_000), Lookup::Fresh(_)));
        assert!(matches!(
            c.get(&k.0, 61_000),
            Lookup::Stale {
                failed_recently: false,
                ..
            }
        ));
        c.mark_refresh_failed(&k.0, 61_000);
        assert!(matches!(
            c.get(&k.0, 62_000),
            Lookup::Stale {
                failed_recently: true,
                ..
            }
        ));
        assert!(matches!(c.get(&k.0, 60_000 + 86_400_000 + 1), Lookup::Miss));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn byte_bound_holds_and_hot_entries_survive() {
        let mut c = Cache::new(limits());
        let hot = a_entry(&mut c, "hot.example.", 600, 0);
        for i in 0..5000 {
            a_entry(&mut c, &format!("n{i}.example."), 600, 0);
            assert!(c.bytes() <= limits().max_bytes);
            // The household keeps asking for the hot name.
            assert!(
                matches!(c.get(&hot.0, 1000), Lookup::Fresh(_)),
                "evicted at {i}"
            );
        }
        assert!(c.counters.evictions > 4000);
        assert_eq!(c.hot(1)[0].0, hot);
        assert!(c.len() < 5000);
    }

    #[test]
    fn a_hit_renders_from_the_packed_entry_like_the_unpacked_answer() {
        let mut c = Cache::new(limits());
        let s = store(
            &answer("www.example.", 300, Ipv4Addr::new(192, 0, 2, 7)),
            1000,
        );
        let k = q("www.example.").key();
        c.insert(&k.0, &s).unwrap();
        let query = q("wWw.Example.");
        let mut out = vec![0xAA; 3]; // rendering clears what was there
        match c.get(&k.0, 61_000) {
            Lookup::Fresh(e) => {
                assert_eq!(e.key_bytes(), &k.0[..]);
                assert_eq!(e.to_stored(), s);
                e.render_into(&query, 61_000, false, &mut out);
            }
            _ => panic!("expected a hit"),
        }
        assert_eq!(out, s.render(&query, 61_000, false));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.queries[0].name().to_ascii(), "wWw.Example.");
        assert_eq!(m.answers[0].ttl, 240);
    }

    #[test]
    fn accounting_charges_the_real_allocation_and_returns_to_zero() {
        let mut c = Cache::new(limits());
        let s = store(&answer("acct.example.", 300, Ipv4Addr::LOCALHOST), 0);
        let len = ENTRY_HEADER_BYTES + 2 * s.ttl_offsets.len() + s.wire.len();
        // A header, one TTL offset, the answer: charged as malloc sizes
        // it, rounded to two words, plus the slot's share.
        assert_eq!(s.cost(), alloc_bytes(len) + SLOT_OVERHEAD_BYTES);
        assert!(alloc_bytes(len) >= len + size_of::<usize>());
        assert_eq!(alloc_bytes(len) % (2 * size_of::<usize>()), 0);
        let k = q("acct.example.").key();
        c.insert(&k.0, &s).unwrap();
        assert_eq!(c.bytes(), s.cost());
        // Replacing keeps one entry and its charge.
        c.insert(&k.0, &s).unwrap();
        assert_eq!((c.len(), c.bytes()), (1, s.cost()));
        let sum: usize = c.entries().map(|e| e.cost()).sum();
        assert_eq!(sum, c.bytes());
        // An A answer costs about a tenth of what it did (~430 bytes).
        assert!(s.cost() <= 160, "{}", s.cost());
        assert!(matches!(c.get(&k.0, 1_000_000_000), Lookup::Miss));
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn key_mismatch_and_oversized_entries_are_refused() {
        let mut c = Cache::new(limits());
        let s = store(&answer("one.example.", 300, Ipv4Addr::LOCALHOST), 0);
        let other = q("two.example.").key();
        assert_eq!(c.insert(&other.0, &s), Err(CacheError::KeyMismatch));
        let small = CacheLimits {
            max_bytes: 8 * (s.cost() - 1),
            ..limits()
        };
        let mut c = Cache::new(small);
        let k = q("one.example.").key();
        assert!(matches!(c.insert(&k.0, &s), Err(CacheError::TooLarge(_))));
        assert_eq!((c.len(), c.bytes(), c.counters.rejected), (0, 0, 1));
    }

    #[test]
    fn bound_holds_exactly_and_slots_are_reused() {
        let mut c = Cache::new(limits());
        let mut peak = 0;
        for i in 0..20_000 {
            a_entry(&mut c, &format!("host{i}.example.org."), 600, 0);
            assert!(c.bytes() <= limits().max_bytes);
            peak = peak.max(c.len());
        }
        let sum: usize = c.entries().map(|e| e.cost()).sum();
        assert_eq!(sum, c.bytes());
        assert_eq!(c.entries().count(), c.len());
        // Full: within one entry's charge of the bound.
        assert!(c.bytes() + 160 > limits().max_bytes);
        // Evicted slots are reused: the slot vector never grew past the
        // most entries ever held at once (+1 for the one being inserted;
        // on 32-bit, longer names cost more, so fewer fit later on).
        assert!(c.slots.len() <= peak + 1, "{} {}", c.slots.len(), peak);
        assert_eq!(c.index.len(), c.len());
    }

    #[test]
    fn clock_clears_reference_bits_and_evicts_unreferenced_first() {
        let lim = limits();
        let mut c = Cache::new(lim);
        let first = a_entry(&mut c, "first.example.", 600, 0);
        let hot = a_entry(&mut c, "hot.example.", 600, 0);
        assert_eq!(c.referenced(&hot.0), Some(false));
        assert!(matches!(c.get(&hot.0, 1), Lookup::Fresh(_)));
        assert_eq!(c.referenced(&hot.0), Some(true));
        let mut i = 0;
        while c.counters.evictions < 2 {
            a_entry(&mut c, &format!("fill{i}.example."), 600, 0);
            i += 1;
        }
        // The unreferenced oldest went first; the hand then passed the
        // hot one (clearing its bit: a second chance) and took the next.
        assert_eq!(c.referenced(&hot.0), Some(false));
        assert!(matches!(c.get(&first.0, 2), Lookup::Miss));
        let fill0 = q("fill0.example.").key();
        assert!(matches!(c.get(&fill0.0, 2), Lookup::Miss));
        assert!(matches!(c.get(&hot.0, 2), Lookup::Fresh(_)));
    }

    #[test]
    fn hot_ranks_by_hits_then_key_and_survives_replacement() {
        let mut c = Cache::new(limits());
        let a = a_entry(&mut c, "a.example.", 600, 0);
        let b = a_entry(&mut c, "b.example.", 600, 0);
        let z = a_entry(&mut c, "z.example.", 600, 0);
        a_entry(&mut c, "cold.example.", 600, 0);
        for _ in 0..3 {
            let _ = c.get(&z.0, 1);
        }
        let _ = c.get(&b.0, 1);
        let _ = c.get(&a.0, 1);
        let hot = c.hot(10);
        assert_eq!(
            hot,
            vec![(z.clone(), 3), (a.clone(), 1), (b.clone(), 1)],
            "cold names are not hot"
        );
        assert_eq!(c.hot(1), vec![(z.clone(), 3)]);
        // A refreshed answer keeps the hit count.
        a_entry(&mut c, "z.example.", 600, 5);
        assert_eq!(c.hot(1), vec![(z, 3)]);
    }
}
