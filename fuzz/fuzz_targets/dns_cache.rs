//! The DNS cache's stored entries: dns::cache::Stored::from_response (the
//! parse step from an upstream answer into a stored entry), the packed
//! ring entry (Entry) and its replies, and the ring itself under a
//! scripted sequence of inserts, lookups and clock steps.
//!
//! Input: the first byte picks the mode. Even: the rest is one upstream
//! answer; once stored, its key is its question, it walks without OPT,
//! it comes back from the cache unchanged, its replies walk with the
//! client's ID and counted-down TTLs, and it survives a snapshot. Odd:
//! the rest is a script over a small cache; after every step the cache
//! stays within its byte bound and every live entry walks and is found
//! under its own key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::dns::cache::{Cache, CacheError, CacheLimits, Lookup, Millis, STALE_TTL, Stored};
use pocobelle::dns::snapshot;
use pocobelle::dns::wire::{self, Key, Parsed, Query};
use pocobelle_fuzz::Input;

fn limits(max_bytes: usize) -> CacheLimits {
    CacheLimits {
        max_bytes,
        min_ttl: 5,
        max_ttl: 3600,
        negative_max_ttl: 600,
        stale_max_age: 86400,
    }
}

/// The query a client would send for `key`, if it is one we serve.
fn query_for(key: &Key, id: u16) -> Option<Query> {
    match wire::parse_query(&wire::build_upstream_query(id, key)) {
        Parsed::Query(q) => Some(q),
        _ => None,
    }
}

fn check_cache(c: &Cache) {
    assert!(c.bytes() <= c.limits().max_bytes, "{} > bound", c.bytes());
    let mut n = 0;
    for e in c.entries() {
        let w = wire::walk(e.wire()).expect("a cached entry walks");
        assert!(w.records.iter().all(|r| r.rtype != wire::TYPE_OPT));
        let key = Key(e.key_bytes().into());
        assert!(key.is_valid());
        assert!(e.cost() <= c.limits().max_bytes);
        n += 1;
    }
    assert_eq!(n, c.len());
}

fn one_answer(data: &[u8]) {
    let Ok(w) = wire::walk(data) else { return };
    let lim = limits(256 * 1024);
    let now: Millis = 1_000_000;
    let Ok(s) = Stored::from_response(data, &w, now, &lim) else {
        return;
    };
    let key = Key::new(&w.qname, w.qtype, w.qclass);
    assert_eq!(s.key_bytes(), &key.0[..], "an entry's key is its question");
    assert!(s.ttl >= 1 && s.ttl <= lim.max_ttl.max(lim.negative_max_ttl));
    assert!(s.cost() <= lim.max_bytes / 8);
    let sw = wire::walk(&s.wire).expect("a stored answer walks");
    assert_eq!(sw.id, 0);
    assert!(sw.records.iter().all(|r| r.rtype != wire::TYPE_OPT));
    assert_eq!(sw.records.len(), s.ttl_offsets.len());
    for (r, &o) in sw.records.iter().zip(s.ttl_offsets.iter()) {
        assert_eq!(r.ttl_at, o as usize);
        assert!(wire::ttl_at(&s.wire, r.ttl_at) >= s.ttl);
    }

    let mut cache = Cache::new(lim);
    cache
        .insert(&key.0, &s)
        .expect("a stored answer fits its cache");
    check_cache(&cache);
    let entry = match cache.get(&key.0, now) {
        Lookup::Fresh(e) => e,
        _ => panic!("a fresh insert is not fresh"),
    };
    assert_eq!(
        entry.to_stored(),
        s,
        "the packed entry unpacks to the same answer"
    );
    if let Some(q) = query_for(&key, 0x4242) {
        let later = now + 1500;
        let mut out = Vec::new();
        entry.render_into(&q, later, false, &mut out);
        assert_eq!(out, s.render(&q, later, false));
        let rw = wire::walk(&out).expect("a reply from the cache walks");
        assert_eq!(rw.id, 0x4242);
        assert!(rw.qname.eq_ignore_ascii_case(&key.0[..key.0.len() - 4]));
        assert_eq!(
            rw.records.len(),
            sw.records.len() + 1,
            "our OPT is appended"
        );
        for (r, o) in rw.records.iter().zip(sw.records.iter()) {
            assert!(wire::ttl_at(&out, r.ttl_at) <= wire::ttl_at(&s.wire, o.ttl_at));
        }
        let fitted = wire::fit_udp(&q, out, q.udp_limit());
        assert!(fitted.len() <= q.udp_limit());
        let mut stale = Vec::new();
        entry.render_into(&q, later, true, &mut stale);
        let stw = wire::walk(&stale).expect("a stale reply walks");
        for r in stw.records.iter().filter(|r| r.rtype != wire::TYPE_OPT) {
            assert_eq!(wire::ttl_at(&stale, r.ttl_at), STALE_TTL);
        }
    }
    // Through a snapshot and back.
    let file = snapshot::encode_cache(&cache, now, 10, 1000).expect("encodes");
    let mut again = Cache::new(lim);
    let (loaded, skipped, _) =
        snapshot::restore(&mut again, std::io::Cursor::new(&file), now, 1000).expect("restores");
    assert_eq!((loaded, skipped), (1, 0));
    match again.get(&key.0, now) {
        Lookup::Fresh(e) => assert_eq!(e.wire(), &s.wire[..]),
        _ => panic!("a restored entry is not fresh"),
    }
    // Expiry: stale after its TTL, gone after the stale age.
    let ttl_ms = s.ttl as Millis * 1000;
    assert!(matches!(
        cache.get(&key.0, now + ttl_ms),
        Lookup::Stale { .. }
    ));
    let gone = now + ttl_ms + lim.stale_max_age as Millis * 1000;
    assert!(matches!(cache.get(&key.0, gone), Lookup::Miss));
    assert!(cache.is_empty());
}

/// An answer for `n<idx>.example.` TXT with `pad` bytes of data.
fn answer(idx: u8, ttl: u32, pad: usize, fill: u8) -> Vec<u8> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    let label = format!("n{idx}");
    m.push(label.len() as u8);
    m.extend_from_slice(label.as_bytes());
    m.extend_from_slice(b"\x07example\x00\x00\x10\x00\x01");
    m.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&(pad as u16).to_be_bytes());
    m.extend(std::iter::repeat_n(fill, pad));
    m
}

fn script(mut inp: Input<'_>) {
    let lim = limits(16 * 1024 + inp.u16() as usize);
    let mut cache = Cache::new(lim);
    let mut now: Millis = inp.u32() as Millis - (1 << 31);
    let mut steps = 0;
    while !inp.is_empty() && steps < 2000 {
        steps += 1;
        match inp.u8() % 5 {
            0 | 1 => {
                let idx = inp.u8() % 64;
                let ttl = inp.u16() as u32;
                let pad = inp.u16() as usize % 3000;
                let resp = answer(idx, ttl, pad, inp.u8());
                let w = wire::walk(&resp).expect("our template walks");
                let s = match Stored::from_response(&resp, &w, now, &lim) {
                    Ok(s) => s,
                    Err(CacheError::TooLarge(_)) => continue,
                    Err(e) => panic!("our template is refused: {e}"),
                };
                let key = Key::new(&w.qname, w.qtype, w.qclass);
                cache
                    .insert(&key.0, &s)
                    .expect("an entry within the bound is stored");
                match cache.get(&key.0, now) {
                    Lookup::Fresh(e) => assert_eq!(e.wire(), &s.wire[..]),
                    _ => panic!("an entry just stored is not fresh"),
                }
            }
            2 => {
                let resp = answer(inp.u8() % 64, 60, 0, 0);
                let w = wire::walk(&resp).expect("our template walks");
                let key = Key::new(&w.qname, w.qtype, w.qclass);
                match cache.get(&key.0, now) {
                    Lookup::Fresh(e) | Lookup::Stale { entry: e, .. } => {
                        assert_eq!(e.key_bytes(), &key.0[..]);
                    }
                    Lookup::Miss => {}
                }
            }
            3 => now += inp.u16() as Millis * 100,
            _ => {
                let resp = answer(inp.u8() % 64, 60, 0, 0);
                let w = wire::walk(&resp).expect("our template walks");
                cache.mark_refresh_failed(&Key::new(&w.qname, w.qtype, w.qclass).0, now);
            }
        }
        check_cache(&cache);
    }
    let hot = cache.hot(8);
    assert!(hot.len() <= 8);
    assert!(hot.windows(2).all(|p| p[0].1 >= p[1].1));
    let file = snapshot::encode_cache(&cache, now, 8, 5000).expect("encodes");
    let mut again = Cache::new(lim);
    let (loaded, skipped, hot_keys) =
        snapshot::restore(&mut again, std::io::Cursor::new(&file), now, 5000).expect("restores");
    assert_eq!(skipped, 0);
    assert_eq!(loaded, cache.len());
    assert_eq!(hot_keys.len(), hot.len());
    check_cache(&again);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    if inp.u8() & 1 == 0 {
        one_answer(inp.rest());
    } else {
        script(inp);
    }
});
