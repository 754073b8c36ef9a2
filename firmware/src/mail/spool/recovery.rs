//! Spool recovery's rules over damaged bytes, pure (bytes in, decisions
//! out; no file access): where the next record starts after damage, and
//! whether the damage is bounded to one record. [`super::Spool::open`]
//! applies them; nothing here ever rewrites a segment.
//!
//! - A record whose header is sound (a versioned header's own checksum, or
//!   a version-1 record's whole checksum) is skipped exactly, and, when
//!   its header names its message, costs that message at most.
//! - Other damage is resynchronised on: the next offset where a whole
//!   record decodes (or a sound header starts). If that is at most
//!   [`MAX_RECORD`] bytes on, the damage fits in one record and is
//!   skipped; farther, it may have held several acknowledged messages and
//!   recovery refuses to start ([`Verdict::Unbounded`]).
//! - When nothing decodes after the damage: in the newest segment it is a
//!   torn tail (the write a crash interrupted) and is cut, as always; in
//!   an older segment (synced before the next began) it is skipped if it
//!   fits in one record, refused otherwise.
//! - The scan itself is bounded: a body can hold bytes that look like
//!   record headers, each asking for a checksum over up to
//!   [`record::MAX_PAYLOAD`] bytes; past [`SCAN_BUDGET`] checksummed bytes
//!   the damage counts as unbounded.

use super::record::{self, HEADER_LEN_V1, MAGIC, MAGIC_FRAMED, MAX_PAYLOAD, MAX_RECORD};

/// Most bytes one resynchronisation may checksum.
pub const SCAN_BUDGET: usize = 64 << 20;

/// What to do with damage that starts at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Skip to this offset: the next record starts there (or the file
    /// ends there, in an older segment).
    Skip(usize),
    /// A torn tail: cut the file at the damage.
    CutTail,
    /// More than one record's worth of damage before the next record
    /// (`len` bytes): refuse to start.
    Unbounded { len: usize },
}

/// Whether a record, or a sound header, starts at `at`.
fn starts_record(data: &[u8], at: usize) -> bool {
    let buf = &data[at..];
    matches!(buf.first(), Some(&MAGIC | &MAGIC_FRAMED))
        && match record::decode(buf) {
            Ok(_) => true,
            Err(e) => e.frame().is_some(),
        }
}

/// What a scan for the next record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Found(usize),
    /// No record up to the end of the data.
    NoneToEnd,
    /// [`SCAN_BUDGET`] ran out at this offset.
    OverBudget(usize),
}

/// The first offset after `at` where a record starts, within the
/// segment's length and [`SCAN_BUDGET`].
pub fn resync(data: &[u8], at: usize) -> Scan {
    let mut budget = SCAN_BUDGET;
    for i in at + 1..data.len() {
        // What checking a candidate here may cost: a version-1 record's
        // checksum covers its payload (a versioned header is checked on
        // its own first).
        if data[i] == MAGIC {
            let len = data
                .get(i + 2..i + 6)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            if len <= MAX_PAYLOAD && i + HEADER_LEN_V1 + len <= data.len() {
                if len > budget {
                    return Scan::OverBudget(i);
                }
                budget -= len;
            }
        }
        if starts_record(data, i) {
            return Scan::Found(i);
        }
    }
    Scan::NoneToEnd
}

/// The rule for damage at `at` in a segment holding `data`.
pub fn verdict(data: &[u8], at: usize, newest: bool) -> Verdict {
    match resync(data, at) {
        Scan::Found(next) if next - at <= MAX_RECORD => Verdict::Skip(next),
        Scan::Found(next) | Scan::OverBudget(next) => Verdict::Unbounded { len: next - at },
        Scan::NoneToEnd if newest => Verdict::CutTail,
        Scan::NoneToEnd if data.len() - at <= MAX_RECORD => Verdict::Skip(data.len()),
        Scan::NoneToEnd => Verdict::Unbounded {
            len: data.len() - at,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::spool::record::{Record, encode, encode_v1};

    fn recs(enc: fn(&Record, &mut Vec<u8>) -> usize) -> (Vec<u8>, Vec<usize>) {
        let mut b = vec![];
        let mut starts = vec![];
        for id in 1..=3 {
            starts.push(b.len());
            enc(&Record::Delete { id }, &mut b);
        }
        (b, starts)
    }

    #[test]
    fn resync_finds_the_next_record_in_either_layout() {
        for enc in [encode, encode_v1] {
            let (mut b, starts) = recs(enc);
            b[starts[1] + 1] ^= 0xff;
            assert_eq!(verdict(&b, starts[1], true), Verdict::Skip(starts[2]));
            b[starts[2] + 1] ^= 0xff;
            assert_eq!(verdict(&b, starts[2], true), Verdict::CutTail);
        }
    }

    #[test]
    fn damage_without_a_record_after_it() {
        let (b, starts) = recs(encode);
        let at = starts[2] + 1;
        assert_eq!(verdict(&b, at, true), Verdict::CutTail);
        assert_eq!(verdict(&b, at, false), Verdict::Skip(b.len()));
        let mut big = b.clone();
        big.extend(vec![0u8; MAX_RECORD + 1]);
        assert_eq!(verdict(&big, b.len(), true), Verdict::CutTail);
        assert_eq!(
            verdict(&big, b.len(), false),
            Verdict::Unbounded {
                len: MAX_RECORD + 1
            }
        );
    }

    #[test]
    fn the_scan_stops_at_its_budget() {
        // Fake version-1 headers every 16 bytes, each announcing a full
        // payload with a wrong checksum: without a budget, checking them
        // all would cost terabytes.
        let mut b = vec![0u8; 2 * MAX_PAYLOAD + 64];
        for i in (16..MAX_PAYLOAD).step_by(16) {
            b[i] = MAGIC;
            b[i + 1] = 2;
            b[i + 2..i + 6].copy_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        }
        let per = MAX_PAYLOAD;
        let stop = 16 * (SCAN_BUDGET / per + 1);
        assert_eq!(resync(&b, 0), Scan::OverBudget(stop));
        assert_eq!(verdict(&b, 0, true), Verdict::Unbounded { len: stop });
    }

    #[test]
    fn damage_wider_than_a_record_is_unbounded() {
        let mut b = vec![0u8; MAX_RECORD + 1];
        encode(&Record::Delete { id: 1 }, &mut b);
        assert_eq!(
            verdict(&b, 0, true),
            Verdict::Unbounded {
                len: MAX_RECORD + 1
            }
        );
        let mut b = vec![0u8; MAX_RECORD];
        encode(&Record::Delete { id: 1 }, &mut b);
        assert_eq!(verdict(&b, 0, true), Verdict::Skip(MAX_RECORD));
    }
}
