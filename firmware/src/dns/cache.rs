//! The answer cache: upstream responses stored as wire bytes, bounded by
//! bytes (not entries), evicted with CLOCK so that names asked again and
//! again stay, TTLs clamped, negative answers kept per RFC 2308, expired
//! entries kept as serve-stale candidates (RFC 8767) up to a maximum age,
//! and a hit count per entry for the hot set.
//!
//! Memory: the entries live in ONE ring of bytes ([`Region`]: mapped
//! zero pages, resident only once written), appended at the head and
//! reclaimed at the tail. At the tail, an entry asked for since it was
//! written is copied to the head with its mark cleared (a second chance,
//! as CLOCK gives); any other is dropped. A fixed-size hash index of ring
//! offsets ([`Index`]), keyed with a per-process random seed, finds an
//! entry by its key (the answer's own question). `cache_bytes` is split
//! once, at start: the index gets at most 1/[`INDEX_SHARE`] of it, the
//! ring the rest, and neither ever grows. No entry is a heap allocation,
//! so there is no per-entry allocator overhead, and the short-lived
//! allocations of the miss path cannot fragment the heap around entries.
//!
//! Replies are made from the stored bytes by patching ID, flags, question
//! case and TTLs; nothing is decoded or re-encoded on a hit. This module
//! does no I/O and reads no clock: `now` (milliseconds on the service's
//! monotonic clock, possibly negative for entries loaded from a snapshot)
//! is always passed in.

use std::hash::{BuildHasher, RandomState};

use super::index::{self, Index};
use super::wire::{self, Key, Query, Walked};
use crate::sys::region::Region;

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
/// One entry may take at most this fraction (1/N) of the cache.
pub const MAX_ENTRY_SHARE: usize = 8;
/// The hash index takes at most this fraction (1/N) of `cache_bytes`.
pub const INDEX_SHARE: usize = 16;
/// The largest entry (its length is a `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

// Layout of an entry in the ring: a fixed header, then the TTL offsets
// (u16 each), then the stored wire answer, whose question (at
// [`wire::HEADER_LEN`]) is the entry's key.
const AT_LEN: usize = 0; // u16, the whole entry
const AT_FLAGS: usize = 2; // u8
const AT_N_TTL: usize = 3; // u16
const AT_STORED: usize = 5; // i32, whole seconds on the service clock
const AT_FAILED: usize = 9; // u32, seconds after AT_STORED; NO_FAILURE: none
const AT_TTL: usize = 13; // u32
const AT_HITS: usize = 17; // u32
/// Bytes of an entry's header.
pub const ENTRY_HEADER_BYTES: usize = 21;
const FLAG_LIVE: u8 = 1;
const FLAG_REFERENCED: u8 = 2;
const NO_FAILURE: u32 = u32::MAX;

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
        if stored.cost() > (lim.max_bytes / MAX_ENTRY_SHARE).min(MAX_ENTRY_BYTES) {
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

    /// Bytes this answer takes in the cache's ring.
    pub fn cost(&self) -> usize {
        self.packed_len()
    }

    /// The reply to `q` made from the stored bytes (see [`render_parts`]).
    /// Not yet cut to a UDP size.
    pub fn render(&self, q: &Query, now: Millis, stale: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 11);
        let offsets = self.ttl_offsets.iter().map(|&a| a as usize);
        render_parts(&self.wire, offsets, self.stored_at, q, now, stale, &mut out);
        out
    }

    /// Writes this answer as one ring entry with `hits` into `out`, which
    /// is exactly [`Stored::cost`] bytes long.
    fn pack_into(&self, hits: u32, out: &mut [u8]) {
        let (head, rest) = out.split_at_mut(ENTRY_HEADER_BYTES);
        head[AT_LEN..AT_LEN + 2].copy_from_slice(&(self.packed_len() as u16).to_ne_bytes());
        head[AT_FLAGS] = FLAG_LIVE;
        head[AT_N_TTL..AT_N_TTL + 2]
            .copy_from_slice(&(self.ttl_offsets.len() as u16).to_ne_bytes());
        head[AT_STORED..AT_STORED + 4].copy_from_slice(&stored_secs(self.stored_at).to_ne_bytes());
        head[AT_FAILED..AT_FAILED + 4].copy_from_slice(&NO_FAILURE.to_ne_bytes());
        head[AT_TTL..AT_TTL + 4].copy_from_slice(&self.ttl.to_ne_bytes());
        head[AT_HITS..AT_HITS + 4].copy_from_slice(&hits.to_ne_bytes());
        let (offsets, wire_out) = rest.split_at_mut(2 * self.ttl_offsets.len());
        for (c, &o) in offsets.chunks_exact_mut(2).zip(self.ttl_offsets.iter()) {
            c.copy_from_slice(&o.to_ne_bytes());
        }
        wire_out.copy_from_slice(&self.wire);
    }
}

/// A read-only view of one cache entry in the ring (header, TTL offsets,
/// wire answer). Entries are only made by [`Stored::pack_into`] from an
/// answer whose question is its key, so the accessors cannot go out of
/// bounds.
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
    /// When it was stored, on the service's clock (to the second, rounded
    /// down: an entry's TTL counts down and expires at most a second early).
    pub fn stored_at(self) -> Millis {
        self.u32_at(AT_STORED) as i32 as Millis * 1000
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
        let after = self.u32_at(AT_FAILED);
        (after != NO_FAILURE).then(|| self.stored_at() + after as Millis * 1000)
    }
    fn live(self) -> bool {
        self.0[AT_FLAGS] & FLAG_LIVE != 0
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
        question_of(self.wire())
    }
    /// Whether this entry's key is `key` (a question section). Labels are
    /// length-prefixed, so an equal prefix of the key's length, which ends
    /// with the root label, type and class, is the whole question.
    fn has_key(self, key: &[u8]) -> bool {
        self.wire()
            .get(wire::HEADER_LEN..wire::HEADER_LEN + key.len())
            .is_some_and(|k| k == key)
    }
    /// Bytes this entry takes in the ring.
    pub fn cost(self) -> usize {
        self.0.len()
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

/// `stored_at` as whole seconds, rounded down, within an `i32` (an entry
/// stored 68 years ago is long past any stale age either way).
fn stored_secs(stored_at: Millis) -> i32 {
    stored_at
        .div_euclid(1000)
        .clamp(i32::MIN as Millis, i32::MAX as Millis) as i32
}

/// The entry at offset `at` of `ring`.
fn entry_at(ring: &[u8], at: usize) -> Entry<'_> {
    let len = u16::from_ne_bytes([ring[at + AT_LEN], ring[at + AT_LEN + 1]]);
    Entry(&ring[at..at + len as usize])
}

/// How `cache_bytes` is split between the hash index and the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    /// Slots of the index.
    slots: usize,
    /// Bytes of the ring.
    ring_bytes: usize,
}

impl Split {
    fn of(max_bytes: usize) -> Split {
        // The largest power-of-two table within the index's share; at
        // least 8 slots.
        let share = max_bytes / INDEX_SHARE;
        let mut slots = 8usize;
        while 2 * slots * index::SLOT_BYTES <= share {
            slots *= 2;
        }
        let index_bytes = slots * index::SLOT_BYTES;
        Split {
            slots,
            ring_bytes: max_bytes
                .saturating_sub(index_bytes)
                .min(index::MAX_OFFSET + 1),
        }
    }
}

/// The cache itself. See the module header. The ring's live bytes run
/// from `tail` to `head`; once the head has wrapped around to the start
/// (`wrapped`), they run from `tail` to `end` and on from 0 to `head`.
pub struct Cache {
    lim: CacheLimits,
    index: Index,
    hasher: RandomState,
    ring: Region,
    tail: usize,
    head: usize,
    end: usize,
    wrapped: bool,
    pub counters: CacheCounters,
}

impl Cache {
    pub fn new(lim: CacheLimits) -> Cache {
        let split = Split::of(lim.max_bytes);
        Cache {
            lim,
            index: Index::with_slots(split.slots),
            hasher: RandomState::new(),
            ring: Region::zeroed(split.ring_bytes),
            tail: 0,
            head: 0,
            end: 0,
            wrapped: false,
            counters: CacheCounters::default(),
        }
    }

    pub fn limits(&self) -> &CacheLimits {
        &self.lim
    }

    /// Bytes in use: the ring from tail to head (entries, and gaps left
    /// by removed ones until the tail passes them) and the index. Always
    /// <= `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.ring_used() + self.index.bytes()
    }

    fn ring_used(&self) -> usize {
        if self.wrapped {
            self.end - self.tail + self.head
        } else {
            self.head - self.tail
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The entry at ring offset `at`.
    fn entry(&self, at: usize) -> Entry<'_> {
        entry_at(&self.ring, at)
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.index
            .find(self.hasher.hash_one(key), |at| self.entry(at).has_key(key))
    }

    /// Looks `key` (as made by [`wire::Key`]) up; a hit counts towards the
    /// entry's hit count.
    pub fn get(&mut self, key: &[u8], now: Millis) -> Lookup<'_> {
        let Some(at) = self.find(key) else {
            self.counters.misses += 1;
            return Lookup::Miss;
        };
        let e = self.entry(at);
        let (expires, failed, hits) = (e.expires_at(), e.failed_at(), e.hits());
        let hits = hits.saturating_add(1);
        self.ring[at + AT_HITS..at + AT_HITS + 4].copy_from_slice(&hits.to_ne_bytes());
        self.ring[at + AT_FLAGS] |= FLAG_REFERENCED;
        let stale_limit = self.lim.stale_max_age as Millis * 1000;
        if now < expires {
            self.counters.hits += 1;
            return Lookup::Fresh(self.entry(at));
        }
        if now < expires.saturating_add(stale_limit) {
            self.counters.stale_candidates += 1;
            let failed_recently = failed.is_some_and(|t| now - t < FAILED_REFRESH_HOLD_MS);
            return Lookup::Stale {
                entry: self.entry(at),
                failed_recently,
            };
        }
        self.counters.misses += 1;
        self.remove(at);
        Lookup::Miss
    }

    /// Notes that a refresh of `key` failed at `now`.
    pub fn mark_refresh_failed(&mut self, key: &[u8], now: Millis) {
        if let Some(at) = self.find(key) {
            let after = ((now - self.entry(at).stored_at()).max(0) / 1000)
                .min(NO_FAILURE as Millis - 1) as u32;
            self.ring[at + AT_FAILED..at + AT_FAILED + 4].copy_from_slice(&after.to_ne_bytes());
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
        let len = stored.cost();
        if len > (self.lim.max_bytes / MAX_ENTRY_SHARE).min(MAX_ENTRY_BYTES) {
            self.counters.rejected += 1;
            return Err(CacheError::TooLarge(len));
        }
        let mut hits = hits;
        if let Some(at) = self.find(key) {
            hits = hits.max(self.entry(at).hits());
            self.remove(at);
        }
        self.make_room(len);
        let at = self.head;
        stored.pack_into(hits, &mut self.ring[at..at + len]);
        self.head += len;
        self.index_insert(key, at);
        self.counters.inserts += 1;
        Ok(())
    }

    fn index_insert(&mut self, key: &[u8], at: usize) {
        // make_room left a place, and the ring is no longer than an
        // offset can say, so this cannot fail.
        let filed = self.index.insert(self.hasher.hash_one(key), at);
        debug_assert!(filed);
    }

    /// Takes the entry at `at` out of the index.
    fn unindex(&mut self, at: usize) {
        let Cache {
            index,
            hasher,
            ring,
            ..
        } = self;
        let key_hash = |o: usize| hasher.hash_one(entry_at(ring, o).key_bytes());
        index.remove(key_hash(at), at, key_hash);
    }

    /// Drops the entry at `at` from the index; its bytes stay in the ring
    /// (not live) until the tail passes them.
    fn remove(&mut self, at: usize) {
        self.unindex(at);
        self.ring[at + AT_FLAGS] &= !FLAG_LIVE;
        if self.index.is_empty() {
            // Nothing live: the whole ring is free again.
            (self.tail, self.head, self.end, self.wrapped) = (0, 0, 0, false);
        }
    }

    /// Frees `len` contiguous bytes at the head, and a place in the index.
    fn make_room(&mut self, len: usize) {
        loop {
            let fits = if self.wrapped {
                self.head + len <= self.tail
            } else {
                self.head + len <= self.ring.len()
            };
            if fits && self.index.len() < self.index.capacity() {
                return;
            }
            if !fits && !self.wrapped {
                self.wrap_head();
                continue;
            }
            self.step_tail();
        }
    }

    /// Goes on writing at the start of the ring; the bytes from the head
    /// to the end of the ring stay unused until the tail wraps too.
    fn wrap_head(&mut self) {
        self.end = self.head;
        self.head = 0;
        self.wrapped = true;
    }

    /// One step of the tail: the entry there is dropped, or (when it was
    /// asked for since it was written) copied to the head unmarked.
    fn step_tail(&mut self) {
        if self.ring_used() == 0 {
            return;
        }
        let at = self.tail;
        let e = self.entry(at);
        let (len, live) = (e.cost(), e.live());
        let referenced = self.ring[at + AT_FLAGS] & FLAG_REFERENCED != 0;
        if live && referenced {
            if !self.wrapped && self.head + len > self.ring.len() {
                self.wrap_head();
            }
            // The head is at or before the tail, so the copy ends at or
            // before the entry's end: it only overwrites free bytes and
            // the entry itself (copy_within handles the overlap).
            let to = self.head;
            self.ring.copy_within(at..at + len, to);
            self.ring[to + AT_FLAGS] &= !FLAG_REFERENCED;
            self.head += len;
            let hash = self.hasher.hash_one(self.entry(to).key_bytes());
            self.index.r#move(hash, at, to);
        } else if live {
            self.unindex(at);
            self.counters.evictions += 1;
        }
        self.tail += len;
        if self.wrapped && self.tail >= self.end {
            (self.tail, self.end, self.wrapped) = (0, 0, false);
        }
        if self.index.is_empty() {
            (self.tail, self.head, self.end, self.wrapped) = (0, 0, 0, false);
        }
    }

    /// Ring offsets of the entries from tail to head, live or not.
    fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let (first, second) = if self.wrapped {
            (self.tail..self.end, 0..self.head)
        } else {
            (self.tail..self.head, 0..0)
        };
        [first, second].into_iter().flat_map(move |range| {
            let mut at = range.start;
            std::iter::from_fn(move || {
                (at < range.end).then(|| {
                    let here = at;
                    at += self.entry(here).cost();
                    here
                })
            })
        })
    }

    /// The `n` entries with the most hits, most first (ties by key).
    pub fn hot(&self, n: usize) -> Vec<(Key, u32)> {
        // Rank ring offsets first, so only the `n` winners are copied.
        let mut ranked: Vec<(u32, u32)> = self
            .offsets()
            .map(|at| (at as u32, self.entry(at)))
            .filter(|(_, e)| e.live() && e.hits() > 0)
            .map(|(at, e)| (at, e.hits()))
            .collect();
        let key_of = |at: u32| self.entry(at as usize).key_bytes();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| key_of(a.0).cmp(key_of(b.0))));
        ranked.truncate(n);
        ranked
            .into_iter()
            .map(|(at, hits)| (Key(key_of(at).into()), hits))
            .collect()
    }

    /// Every live entry, oldest first (for the snapshot).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.offsets().map(|at| self.entry(at)).filter(|e| e.live())
    }

    /// Whether the entry for `key` has its reference mark set.
    #[cfg(test)]
    fn referenced(&self, key: &[u8]) -> Option<bool> {
        let at = self.find(key)?;
        Some(self.entry(at).referenced())
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
        assert_eq!(c.bytes(), c.index.bytes());
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
    fn accounting_counts_ring_bytes_and_the_index() {
        let mut c = Cache::new(limits());
        let idx = c.index.bytes();
        assert!(idx <= limits().max_bytes / INDEX_SHARE);
        assert!(idx + c.ring.len() <= limits().max_bytes);
        assert_eq!(c.bytes(), idx);
        let s = store(&answer("acct.example.", 300, Ipv4Addr::LOCALHOST), 0);
        // A header, one TTL offset, the answer: nothing else.
        assert_eq!(s.cost(), ENTRY_HEADER_BYTES + 2 + s.wire.len());
        let k = q("acct.example.").key();
        c.insert(&k.0, &s).unwrap();
        assert_eq!(c.bytes(), idx + s.cost());
        let other = store(&answer("other.example.", 300, Ipv4Addr::LOCALHOST), 0);
        let ko = q("other.example.").key();
        c.insert(&ko.0, &other).unwrap();
        // Replacing keeps one entry per name; the old bytes stay in the
        // ring until the tail passes them.
        c.insert(&k.0, &s).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.bytes(), idx + 2 * s.cost() + other.cost());
        let sum: usize = c.entries().map(|e| e.cost()).sum();
        assert_eq!(sum, s.cost() + other.cost());
        assert!(matches!(c.get(&ko.0, 1_000_000_000), Lookup::Miss));
        // An A answer costs about a sixth of what it did (~430 bytes).
        assert!(s.cost() <= 80, "{}", s.cost());
        // Once nothing is live, the whole ring is free again.
        assert!(matches!(c.get(&k.0, 1_000_000_000), Lookup::Miss));
        assert_eq!((c.len(), c.bytes()), (0, idx));
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
        assert_eq!(
            (c.len(), c.bytes(), c.counters.rejected),
            (0, c.index.bytes(), 1)
        );
    }

    #[test]
    fn bound_holds_and_a_full_ring_is_used_to_within_an_entry() {
        let mut c = Cache::new(limits());
        for i in 0..20_000 {
            a_entry(&mut c, &format!("host{i}.example.org."), 600, 0);
            assert!(c.bytes() <= limits().max_bytes);
            assert!(c.len() <= c.index.capacity());
        }
        let sum: usize = c.entries().map(|e| e.cost()).sum();
        assert_eq!(c.entries().count(), c.len());
        // Nothing was removed, so the live entries are all the ring holds;
        // the ring is full but for the gap before its end, or the index is.
        assert_eq!(sum, c.ring_used());
        assert!(
            c.ring_used() + 80 > c.ring.len() || c.len() == c.index.capacity(),
            "{} {}",
            c.ring_used(),
            c.len()
        );
        assert_eq!(c.counters.evictions + c.len() as u64, 20_000);
    }

    #[test]
    fn the_index_bounds_entries_when_they_are_small() {
        // Tiny entries: the index, not the ring, is what fills first.
        let lim = CacheLimits {
            max_bytes: 64 * 1024,
            ..limits()
        };
        let mut c = Cache::new(lim);
        for i in 0..5000 {
            a_entry(&mut c, &format!("{i}."), 600, 0);
            assert!(c.len() <= c.index.capacity());
        }
        assert_eq!(c.len(), c.index.capacity());
        assert!(c.bytes() <= lim.max_bytes);
    }

    /// Random names, sizes, hits, replacements and expiries against a
    /// model: whatever the cache still holds is exactly what was last
    /// stored under that name, and a name is only missing when it was
    /// evicted or expired.
    #[test]
    fn random_churn_matches_a_model_across_wraps() {
        use std::collections::HashMap;
        let mut c = Cache::new(CacheLimits {
            max_bytes: 64 * 1024,
            stale_max_age: 0,
            ..limits()
        });
        let mut model: HashMap<String, (Ipv4Addr, u32)> = HashMap::new();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = 0;
        for step in 0..60_000u32 {
            now += 10;
            let n = rnd() % 3000;
            // Names of very different lengths, so entries differ in size.
            let name = format!("{}{n}.example.", "x".repeat((n % 50) as usize));
            let k = q(&name).key();
            match rnd() % 4 {
                0 | 1 => {
                    let ip = Ipv4Addr::from(step);
                    let ttl = 5 + (rnd() % 100) as u32;
                    let resp = answer(&name, ttl, ip);
                    c.insert(&k.0, &store(&resp, now)).unwrap();
                    model.insert(name, (ip, ttl));
                }
                _ => match c.get(&k.0, now) {
                    Lookup::Fresh(e) => {
                        let m = Message::from_vec(e.wire()).unwrap();
                        let (ip, _) = model[&name];
                        assert_eq!(m.answers[0].data, RData::A(A(ip)), "step {step}");
                    }
                    Lookup::Stale { .. } => panic!("no stale age here"),
                    Lookup::Miss => {
                        model.remove(&name);
                    }
                },
            }
            assert!(c.bytes() <= 64 * 1024);
            assert!(c.len() <= model.len());
        }
        assert!(c.counters.evictions > 1000, "{:?}", c.counters);
        assert_eq!(c.entries().count(), c.len());
        for e in c.entries() {
            assert_eq!(
                c.find(e.key_bytes()).map(|at| c.entry(at).wire()),
                Some(e.wire())
            );
        }
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
