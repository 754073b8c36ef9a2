//! The spool's record codec (mail::spool::record), both layouts. The
//! first byte picks the mode: even, the rest is a record type, a message
//! id byte and a payload, framed here in the current versioned layout
//! with both checksums right, so that the payload decoders are reached;
//! odd, the rest is decoded as it is (either layout, or garbage).
//!
//! A record that decodes re-encodes (current layout) to one that decodes
//! to the same record; every cut-short prefix of what decoded is `Short`
//! (a torn tail); a bit flipped in it never decodes to a different record
//! (it is an error, or, in a version-1 record's unchecked parts, nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::spool::record::{self, DecodeError};

/// The versioned frame of the codec's module header: magic, version,
/// type, length, id, header CRC, payload CRC, payload.
fn framed(t: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![record::MAGIC_FRAMED, record::VERSION, t];
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let hcrc = record::crc32(0, &out);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&record::crc32(0, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let buf = match (mode & 1, rest) {
        (0, [t, id, payload @ ..]) => framed(*t, *id as u64, payload),
        _ => rest.to_vec(),
    };
    let Ok(d) = record::decode(&buf) else {
        return;
    };
    let n = d.len;
    assert!(d.payload_at <= n && n <= buf.len());
    assert!(n - d.payload_at <= record::MAX_PAYLOAD);
    assert!(n <= record::MAX_RECORD);
    let mut again = Vec::new();
    let at = record::encode(&d.record, &mut again);
    assert_eq!(at, record::HEADER_LEN);
    let back = record::decode(&again).expect("a re-encoded record decodes");
    assert_eq!(back.record, d.record);
    assert_eq!(back.len, again.len());
    for cut in [0, 1, d.payload_at - 1, d.payload_at, n / 2, n - 1] {
        if cut < n {
            assert_eq!(
                record::decode(&buf[..cut]).map(|d| d.len),
                Err(DecodeError::Short),
                "prefix {cut}"
            );
        }
    }
    let bit = (data.len() * 7919) % (n * 8);
    let mut flipped = buf[..n].to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    if let Ok(other) = record::decode(&flipped) {
        panic!(
            "a flipped bit {bit} still decodes: {:?} (was {:?})",
            other.record, d.record
        );
    }
});
