//! Upstream answers: dns::wire::walk (the checked view) and
//! dns::upstream::accept (the validation before caching, with the data
//! of known record types checked by wire::check_rdata, as the mail
//! lookups check theirs). After walk succeeds no offset it returns may
//! index outside the buffer, records are in order and sections do not go
//! back; accept never takes what walk refuses, nor an answer to another
//! question or ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::dns::upstream;
use pocobelle::dns::wire::{self, Key};

fuzz_target!(|data: &[u8]| {
    let walked = wire::walk(data);
    let Ok(w) = &walked else {
        assert!(upstream::accept(data, 0, &Key::new(&[0], 1, 1)).is_none());
        return;
    };
    assert!(w.records.len() <= wire::MAX_RECORDS);
    assert!(w.question_end <= data.len());
    let mut last_end = w.question_end;
    let mut last_section = 0;
    for r in &w.records {
        assert!(r.start >= last_end, "records overlap");
        assert!(r.section >= last_section && r.section <= 2);
        assert_eq!(r.ttl_at + 6, r.rdata_at);
        let end = r.rdata_at + r.rdata_len;
        assert!(end <= data.len());
        let _ = wire::ttl_at(data, r.ttl_at);
        let _ = wire::soa_minimum(data, r);
        last_end = end;
        last_section = r.section;
    }
    assert_eq!(last_end, data.len(), "walk ends at the end");
    let key = Key::new(&w.qname, w.qtype, w.qclass);
    assert!(key.is_valid());
    if let Some(a) = upstream::accept(data, w.id, &key) {
        assert_eq!(&a, w);
        assert!(a.is_response() && a.opcode() == 0);
    }
    assert!(upstream::accept(data, w.id.wrapping_add(1), &key).is_none());
    let other = Key::new(&w.qname, w.qtype.wrapping_add(1), w.qclass);
    assert!(upstream::accept(data, w.id, &other).is_none());
    // TTLs can be rewritten in place at every offset walk gave.
    let mut copy = data.to_vec();
    for r in &w.records {
        wire::set_ttl(&mut copy, r.ttl_at, 7);
        assert_eq!(wire::ttl_at(&copy, r.ttl_at), 7);
    }
});
