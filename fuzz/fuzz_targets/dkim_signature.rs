//! A DKIM-Signature field value from a sender (mail::policy::dkim): the
//! tag-list parser, the validated Signature, and the whole verifier on a
//! message carrying the field.
//!
//! Checked: a parsed signature has a domain and selector that are DNS
//! names, lists From in h=, has an i= inside d=, x= not before t=, and
//! its b= span lies in the input and decodes to the signature; the
//! verifier gives the same results whether the message comes at once or
//! byte by byte, at most MAX_SIGNATURES of them, and with no key at hand
//! (every lookup TempFail) none of them is a pass or a fail.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::policy::dkim::{
    DkimResult, MAX_SIGNATURES, Signature, TxtAnswer, Verifier, record, tags,
};

fn results(msg: &[u8], chunk: usize) -> Vec<DkimResult> {
    let mut v = Verifier::new();
    for c in msg.chunks(chunk.max(1)) {
        v.update(c);
    }
    let keys: HashMap<String, TxtAnswer> = HashMap::new();
    v.finish()
        .verify(&keys, 0)
        .iter()
        .map(|o| o.result)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Signature::parse(data) {
        assert!(record::is_name(&s.domain) && record::is_name(&s.selector));
        assert!(s.headers.iter().any(|h| h == "from"));
        assert!(record::within(&s.auid_domain(), &s.domain));
        if let (Some(t), Some(x)) = (s.timestamp, s.expires) {
            assert!(x >= t);
        }
        let b = std::str::from_utf8(&data[s.b_span.clone()]).unwrap();
        let b = pocobelle::smtp::auth::base64_decode(&tags::squeeze(b)).unwrap();
        assert_eq!(b, s.signature);
    }
    let mut msg = b"DKIM-Signature:".to_vec();
    msg.extend_from_slice(data);
    msg.extend_from_slice(b"\r\nFrom: a@b.example\r\n\r\nbody\r\n");
    let whole = results(&msg, msg.len());
    assert!(whole.len() <= MAX_SIGNATURES);
    assert!(
        whole
            .iter()
            .all(|r| matches!(r, DkimResult::TempError | DkimResult::PermError)),
        "{whole:?}"
    );
    assert_eq!(results(&msg, 1), whole);
});
