//! DNS client queries (dns::wire::parse_query) and the replies built for
//! them: a dropped packet is too short or a response; a rejected one
//! gets a reply that echoes its ID (and its question, which then walks);
//! an accepted one has a valid key, and every reply made for it walks,
//! carries its ID and question, and fits the client's UDP limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::dns::wire::{self, Key, Parsed};

fuzz_target!(|data: &[u8]| {
    match wire::parse_query(data) {
        Parsed::Drop => {
            assert!(data.len() < wire::HEADER_LEN || data[2] & 0x80 != 0);
        }
        Parsed::Reject(r) => {
            let out = wire::reject_reply(&r);
            assert!(out.len() <= wire::PLAIN_UDP_PAYLOAD);
            assert_eq!(out[..2], data[..2], "the reply carries the query's ID");
            assert!(out[2] & 0x80 != 0, "QR set");
            if let Some((name, t, c)) = &r.question {
                let w = wire::walk(&out).expect("a reject reply with a question walks");
                assert_eq!(&w.qname, name);
                assert_eq!((w.qtype, w.qclass), (*t, *c));
                assert_eq!(w.rcode(), r.rcode & 0xF);
            }
        }
        Parsed::Query(q) => {
            let key = q.key();
            assert!(key.is_valid());
            assert_eq!(&q.key_buf()[..], &key.0[..]);
            assert_eq!((key.qtype(), key.qclass()), (q.qtype, q.qclass));
            let _ = key.text();
            assert!(q.name_text().is_ascii());
            let limit = q.udp_limit();
            assert!((wire::PLAIN_UDP_PAYLOAD..=wire::EDNS_PAYLOAD as usize).contains(&limit));
            for rcode in [wire::RCODE_SERVFAIL, wire::RCODE_REFUSED] {
                for tc in [false, true] {
                    let out = wire::empty_reply(&q, rcode, tc);
                    let w = wire::walk(&out).expect("an empty reply walks");
                    assert_eq!((w.id, w.rcode(), w.truncated()), (q.id, rcode, tc));
                    assert!(w.qname == q.qname && w.qtype == q.qtype);
                    assert!(out.len() <= limit);
                }
            }
            // A reply too large for the client becomes a TC stub.
            let big = vec![0u8; limit + 1 + data.len()];
            let mut big_reply = wire::empty_reply(&q, 0, false);
            big_reply.extend_from_slice(&big);
            let cut = wire::fit_udp(&q, big_reply, limit);
            assert!(cut.len() <= limit);
            assert!(wire::walk(&cut).expect("the TC stub walks").truncated());
            // The query we would send upstream parses back to the same key.
            let up = wire::build_upstream_query(q.id, &key);
            match wire::parse_query(&up) {
                Parsed::Query(u) => assert_eq!(u.key(), key),
                other => panic!("our own upstream query does not parse: {other:?}"),
            }
            // A local answer pointing at the question name walks.
            let rec = wire::LocalRecord {
                owner: None,
                rtype: wire::TYPE_A,
                ttl: 60,
                rdata: &[192, 0, 2, 1],
            };
            let local = wire::local_reply(&q, 0, &[rec], &[]);
            let w = wire::walk(&local).expect("a local reply walks");
            assert_eq!(w.records.iter().filter(|r| r.section == 0).count(), 1);
            assert!(wire::in_zone(key.name(), &[0]));
            let k2 = Key::new(key.name(), q.qtype, q.qclass);
            assert_eq!(k2, key);
        }
    }
});
