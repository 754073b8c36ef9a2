//! SPF records (RFC 7208) as a domain publishes them in TXT: bytes
//! through mail::lookup::txt_strings (the TXT record data) and the
//! record parser (mail::policy::spf::parse), and every domain-spec of a
//! parsed record through the macro expander (spf::expand).
//!
//! Checked: the joined strings are never longer than the data; a record
//! parses only when it starts with `v=spf1` and fits MAX_RECORD_BYTES;
//! prefix lengths are within 32 and 128; every domain-spec the parser
//! kept expands (the parser checked its macros) to printable ASCII within
//! MAX_EXPANDED_BYTES (or is long enough to pass it); the expander never
//! panics on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::lookup::txt_strings;
use pocobelle::mail::policy::spf::{self, MacroCtx, Mechanism, SpfSyntax};

fn ctx(ip: std::net::IpAddr) -> MacroCtx<'static> {
    MacroCtx {
        sender: "strong-bad@email.example.com",
        local: "strong-bad",
        sender_domain: "email.example.com",
        domain: "email.example.com",
        ip,
        helo: "mx.example.com",
    }
}

fuzz_target!(|data: &[u8]| {
    let joined = txt_strings(data);
    assert!(joined.len() <= data.len());
    let v4 = ctx("192.0.2.3".parse().unwrap());
    let v6 = ctx("2001:db8::cb01".parse().unwrap());
    if let Ok(text) = std::str::from_utf8(data) {
        for c in [&v4, &v6] {
            for exp in [false, true] {
                if let Some(out) = spf::expand(text, c, exp) {
                    assert!(out.len() <= spf::MAX_EXPANDED_BYTES);
                    assert!(out.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
                }
            }
        }
    }
    for record in [data, joined.as_slice()] {
        match spf::parse(record) {
            Ok(r) => {
                assert!(spf::is_spf(record) && record.len() <= spf::MAX_RECORD_BYTES);
                if let Some(e) = &r.exp {
                    assert!(spf::expand(e, &v4, true).is_some());
                }
                let mut specs: Vec<&String> = r.redirect.iter().collect();
                for (_, m) in &r.directives {
                    match m {
                        Mechanism::Include(s) | Mechanism::Exists(s) => specs.push(s),
                        Mechanism::A(s, c4, c6) | Mechanism::Mx(s, c4, c6) => {
                            assert!(*c4 <= 32 && *c6 <= 128);
                            specs.extend(s.iter());
                        }
                        Mechanism::Ptr(s) => specs.extend(s.iter()),
                        Mechanism::Ip4(_, c) => assert!(*c <= 32),
                        Mechanism::Ip6(_, c) => assert!(*c <= 128),
                        Mechanism::All => {}
                    }
                }
                for s in specs {
                    for c in [&v4, &v6] {
                        match spf::expand(s, c, false) {
                            Some(out) => {
                                assert!(out.len() <= spf::MAX_EXPANDED_BYTES);
                                assert!(out.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
                            }
                            // A checked domain-spec fails only on the
                            // bound (no macro here grows 21-fold).
                            None => assert!(s.len() * 21 > spf::MAX_EXPANDED_BYTES, "{s}"),
                        }
                    }
                }
            }
            Err(SpfSyntax::NotSpf) => assert!(!spf::is_spf(record)),
            Err(SpfSyntax::TooLong) => assert!(record.len() > spf::MAX_RECORD_BYTES),
            Err(_) => assert!(spf::is_spf(record)),
        }
    }
});
