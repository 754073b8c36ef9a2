//! The DNS snapshot loader (dns::snapshot::restore) over a whole file.
//! The first byte picks the mode: even, the rest is a snapshot body and
//! the header (magic, version, length, checksum) is made right for it,
//! so that the decoder and the per-entry checks are reached; odd, the
//! rest is the file as is. Whatever loads walks, is found under its own
//! key, stays within the cache's bound, and survives a second snapshot
//! unchanged; a file whose header or checksum is wrong adds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::dns::cache::{Cache, CacheLimits, Lookup};
use pocobelle::dns::snapshot::{self, SnapshotError};
use pocobelle::dns::wire::{self, Key};
use std::io::Cursor;

const NOW: i64 = 5_000_000;
const NOW_UNIX: u64 = 1_700_000_000;

fn limits() -> CacheLimits {
    CacheLimits {
        max_bytes: 64 * 1024,
        min_ttl: 5,
        max_ttl: 3600,
        negative_max_ttl: 600,
        stale_max_age: 86400,
    }
}

fn check(c: &mut Cache) {
    assert!(c.bytes() <= c.limits().max_bytes);
    let keys: Vec<Key> = c.entries().map(|e| Key(e.key_bytes().into())).collect();
    assert_eq!(keys.len(), c.len());
    for e in c.entries() {
        wire::walk(e.wire()).expect("a loaded entry walks");
    }
    for k in &keys {
        assert!(k.is_valid());
        // Far in the past, so that nothing is dropped as too old here.
        match c.get(&k.0, i64::MIN / 4) {
            Lookup::Fresh(e) | Lookup::Stale { entry: e, .. } => {
                assert_eq!(e.key_bytes(), &k.0[..])
            }
            Lookup::Miss => panic!("a loaded entry is not found under its key"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        let mut f = Vec::with_capacity(snapshot::HEADER_BYTES + rest.len());
        f.extend_from_slice(snapshot::MAGIC);
        f.extend_from_slice(&snapshot::VERSION.to_be_bytes());
        f.extend_from_slice(&(rest.len() as u64).to_be_bytes());
        f.extend_from_slice(&snapshot::fnv1a64(rest).to_be_bytes());
        f.extend_from_slice(rest);
        f
    } else {
        rest.to_vec()
    };
    let mut cache = Cache::new(limits());
    match snapshot::restore(&mut cache, Cursor::new(&file), NOW, NOW_UNIX) {
        Ok((loaded, _skipped, hot)) => {
            assert!(loaded >= cache.len(), "more entries than were loaded");
            assert!(hot.iter().all(Key::is_valid));
        }
        Err(
            SnapshotError::BadMagic
            | SnapshotError::Version(_)
            | SnapshotError::Truncated
            | SnapshotError::TooLarge(_),
        ) => assert!(cache.is_empty(), "a refused file added entries"),
        Err(_) => {}
    }
    check(&mut cache);
    // What loaded is saved and loaded again whole.
    let n = cache.len();
    let again = snapshot::encode_cache(&cache, NOW, 16, NOW_UNIX).expect("encodes");
    let mut second = Cache::new(limits());
    let (loaded, skipped, _) =
        snapshot::restore(&mut second, Cursor::new(&again), NOW, NOW_UNIX).expect("restores");
    assert_eq!((loaded, skipped), (n, 0));
    assert_eq!(second.len(), n);
});
