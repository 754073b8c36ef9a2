//! The spool's record codec (mail::spool::record). The first byte picks
//! the mode: even, the rest is a record type and payload and the header
//! (magic, length, CRC) is made right for them, so that the payload
//! decoders are reached; odd, the rest is decoded as it is.
//!
//! A record that decodes re-encodes to one that decodes to the same
//! record, never longer (byte for byte the same for the fixed layouts);
//! every cut-short prefix of it is `Short` (a torn tail); every single
//! bit flipped in it is an error (the checksum).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::spool::record::{self, DecodeError, Record};

fn framed(t: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut crc = record::crc32(0, &[t]);
    crc = record::crc32(crc, &len.to_le_bytes());
    crc = record::crc32(crc, payload);
    let mut out = vec![record::MAGIC, t];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let buf = match (mode & 1, rest.split_first()) {
        (0, Some((&t, payload))) => framed(t, payload),
        _ => rest.to_vec(),
    };
    let Ok((rec, n)) = record::decode(&buf) else {
        return;
    };
    assert!((record::HEADER_LEN..=buf.len()).contains(&n));
    assert!(n - record::HEADER_LEN <= record::MAX_PAYLOAD);
    let mut again = Vec::new();
    let at = record::encode(&rec, &mut again);
    assert_eq!(at, record::HEADER_LEN);
    assert!(again.len() <= n, "re-encoding grew the record");
    assert_eq!(record::decode(&again), Ok((rec.clone(), again.len())));
    if matches!(
        rec,
        Record::Body { .. } | Record::End { .. } | Record::Delete { .. } | Record::Warned { .. }
    ) {
        assert_eq!(again[..], buf[..n]);
    }
    for cut in [
        0,
        1,
        record::HEADER_LEN - 1,
        record::HEADER_LEN,
        n / 2,
        n - 1,
    ] {
        if cut < n {
            assert_eq!(
                record::decode(&buf[..cut]),
                Err(DecodeError::Short),
                "prefix {cut}"
            );
        }
    }
    let bit = (data.len() * 7919) % (n * 8);
    let mut flipped = buf[..n].to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        record::decode(&flipped).is_err(),
        "a flipped bit {bit} went unnoticed"
    );
});
