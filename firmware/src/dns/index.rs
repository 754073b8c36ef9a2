//! The cache's hash index: ring offsets filed under the hash of their
//! entry's key, in a table whose size is fixed when the cache is made.
//! Open addressing with linear probing and backward-shift deletion, so a
//! removal leaves no tombstone and the table never needs rebuilding or
//! growing (a general-purpose table may grow when deletions pile up,
//! which would break the cache's byte bound). Each slot is one `u32`: a
//! ring offset in the low [`OFFSET_BITS`] bits and a few bits of the hash
//! above them, so most probes that cannot match are skipped without
//! looking at the entry. The index knows nothing of keys: the caller
//! passes hashes, and closures that compare an entry with a key or hash
//! an entry's key.

/// Bits of a slot that hold the ring offset: rings up to 64 MiB, the
/// largest `dns.cache_bytes`.
pub const OFFSET_BITS: u32 = 26;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
/// An empty slot (its offset part is beyond any ring).
const EMPTY: u32 = u32::MAX;
/// Bytes per slot.
pub const SLOT_BYTES: usize = size_of::<u32>();
/// At most 3 of 4 slots are used (a short probe sequence).
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

/// The largest ring offset a slot can hold.
pub const MAX_OFFSET: usize = OFFSET_MASK as usize - 1;

pub struct Index {
    slots: Box<[u32]>,
    mask: usize,
    len: usize,
}

fn tag(hash: u64) -> u32 {
    ((hash >> (64 - (32 - OFFSET_BITS))) as u32) << OFFSET_BITS
}

impl Index {
    /// A table of `slots` slots (a power of two, at least 4).
    pub fn with_slots(slots: usize) -> Index {
        debug_assert!(slots.is_power_of_two() && slots >= 4);
        Index {
            slots: vec![EMPTY; slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
        }
    }

    /// Entries it may hold.
    pub fn capacity(&self) -> usize {
        self.slots.len() / LOAD_DEN * LOAD_NUM
    }

    /// Bytes it takes.
    pub fn bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// The slot holding an offset filed under `hash` for which `is` holds.
    fn slot_of(&self, hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        let t = tag(hash);
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s & !OFFSET_MASK == t && is((s & OFFSET_MASK) as usize) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The offset filed under `hash` for which `is` holds.
    pub fn find(&self, hash: u64, is: impl FnMut(usize) -> bool) -> Option<usize> {
        self.slot_of(hash, is)
            .map(|i| (self.slots[i] & OFFSET_MASK) as usize)
    }

    /// Files `offset` under `hash`. The caller keeps `len() < capacity()`
    /// and `offset <= MAX_OFFSET`; a full table refuses (returns false).
    pub fn insert(&mut self, hash: u64, offset: usize) -> bool {
        if self.len >= self.capacity() || offset > MAX_OFFSET {
            return false;
        }
        let mut i = self.home(hash);
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = tag(hash) | offset as u32;
        self.len += 1;
        true
    }

    /// Files the offset `from` (under `hash`) as `to` instead.
    pub fn r#move(&mut self, hash: u64, from: usize, to: usize) {
        if let Some(i) = self.slot_of(hash, |o| o == from) {
            self.slots[i] = (self.slots[i] & !OFFSET_MASK) | to as u32;
        }
    }

    /// Removes the offset `offset` filed under `hash`; `hash_of` gives the
    /// hash of the entry at another offset (to move it back towards its
    /// home slot, so that no probe sequence is broken).
    pub fn remove(&mut self, hash: u64, offset: usize, mut hash_of: impl FnMut(usize) -> u64) {
        let Some(mut hole) = self.slot_of(hash, |o| o == offset) else {
            return;
        };
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(hash_of((s & OFFSET_MASK) as usize));
            // The entry at j may move into the hole unless its home lies
            // cyclically in (hole, j]: then the hole is before its home.
            let home_after_hole = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !home_after_hole {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A weak hash on purpose (many collisions, long runs, wrap-around at
    /// the table's end) with the tag bits varied.
    fn h(key: u32) -> u64 {
        let home = (key % 7) as u64 * 9 + 60; // near the end of 64 slots
        home | ((key as u64 % 3) << 60)
    }

    #[test]
    fn matches_a_map_through_random_inserts_and_removes() {
        let mut idx = Index::with_slots(64);
        assert_eq!(idx.capacity(), 48);
        // offset -> key; keys are offsets / 10 here.
        let mut model: HashMap<usize, u32> = HashMap::new();
        let mut seed = 12345u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..20_000 {
            let key = (rnd() % 100) as u32;
            let off = key as usize * 10;
            let present = model.contains_key(&off);
            if present && rnd() % 2 == 0 {
                idx.remove(h(key), off, |o| h((o / 10) as u32));
                model.remove(&off);
            } else if !present && idx.len() < idx.capacity() {
                assert!(idx.insert(h(key), off));
                model.insert(off, key);
            }
            assert_eq!(idx.len(), model.len(), "step {step}");
            for k in 0..100u32 {
                let o = k as usize * 10;
                let found = idx.find(h(k), |x| x == o);
                assert_eq!(
                    found.is_some(),
                    model.contains_key(&o),
                    "step {step} key {k}"
                );
            }
        }
    }

    #[test]
    fn full_table_refuses_and_move_refiles() {
        let mut idx = Index::with_slots(8);
        for k in 0..6u32 {
            assert!(idx.insert(h(k), k as usize));
        }
        assert!(!idx.insert(h(6), 6), "3/4 of 8 slots is the limit");
        assert!(!Index::with_slots(8).insert(1, MAX_OFFSET + 1));
        idx.r#move(h(2), 2, 1000);
        assert_eq!(idx.find(h(2), |o| o == 1000), Some(1000));
        assert_eq!(idx.find(h(2), |o| o == 2), None);
        assert_eq!(idx.bytes(), 8 * SLOT_BYTES);
    }
}
