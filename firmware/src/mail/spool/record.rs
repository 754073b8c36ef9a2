//! The spool's record codec: self-checking, length-prefixed, typed
//! records. Layout: magic (1) | type (1) | payload length (u32 LE) |
//! CRC-32 of type, length and payload (u32 LE) | payload. A record that is
//! cut short or fails its checksum is a torn tail. Pure: bytes in, values
//! out; no file access.

use serde::{Deserialize, Serialize};

/// First byte of every record.
pub const MAGIC: u8 = 0xB5;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// Largest payload: a body chunk of 32 KiB plus its id, or an envelope of
/// 1000 recipients of 256 bytes.
pub const MAX_PAYLOAD: usize = 512 * 1024;

/// A message's envelope as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnvelope {
    pub id: u64,
    /// Unix seconds when the message was received.
    pub received: u64,
    /// The reverse path, empty for the null sender.
    pub from: String,
    pub rcpts: Vec<String>,
}

/// What happened to one recipient, final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Delivered,
    Bounced,
}

/// One spool record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message begins: its envelope.
    Begin(StoredEnvelope),
    /// A body chunk (its bytes follow the id in the payload).
    Body { id: u64, data: Vec<u8> },
    /// The message is complete with this many body bytes: after the commit
    /// that holds this record, it is acknowledged.
    End { id: u64, size: u64 },
    /// A recipient's final outcome.
    Rcpt {
        id: u64,
        index: u32,
        outcome: Outcome,
    },
    /// A delivery attempt failed temporarily.
    Retry {
        id: u64,
        attempts: u32,
        next_at: u64,
        error: String,
    },
    /// The message is gone (deleted by the operator, or expired and bounced).
    Delete { id: u64 },
    /// The sender was sent its one "delayed" DSN.
    Warned { id: u64 },
}

#[derive(Serialize, Deserialize)]
struct RcptRec {
    id: u64,
    index: u32,
    outcome: Outcome,
}

#[derive(Serialize, Deserialize)]
struct RetryRec {
    id: u64,
    attempts: u32,
    next_at: u64,
    error: String,
}

/// Why bytes do not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the payload it announces: a torn write.
    #[error("record cut short")]
    Short,
    /// The first byte is not the record magic.
    #[error("bad record magic {0:#04x}")]
    BadMagic(u8),
    /// The announced payload is larger than [`MAX_PAYLOAD`].
    #[error("record payload of {0} bytes is over the limit")]
    TooLong(usize),
    /// The checksum does not match: a torn or corrupted write.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// The type byte is unknown or the payload does not decode.
    #[error("record of type {0} does not decode")]
    BadPayload(u8),
}

const T_BEGIN: u8 = 1;
const T_BODY: u8 = 2;
const T_END: u8 = 3;
const T_RCPT: u8 = 4;
const T_RETRY: u8 = 5;
const T_DELETE: u8 = 6;
const T_WARNED: u8 = 7;

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}
static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE), continued from `crc` (start with 0).
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn payload_of(rec: &Record) -> (u8, Vec<u8>) {
    let pc = |v: &dyn erased::Ser| v.to_vec();
    match rec {
        Record::Begin(env) => (T_BEGIN, pc(env)),
        Record::Body { id, data } => {
            let mut p = Vec::with_capacity(8 + data.len());
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(data);
            (T_BODY, p)
        }
        Record::End { id, size } => {
            let mut p = id.to_le_bytes().to_vec();
            p.extend_from_slice(&size.to_le_bytes());
            (T_END, p)
        }
        Record::Rcpt { id, index, outcome } => (
            T_RCPT,
            pc(&RcptRec {
                id: *id,
                index: *index,
                outcome: *outcome,
            }),
        ),
        Record::Retry {
            id,
            attempts,
            next_at,
            error,
        } => (
            T_RETRY,
            pc(&RetryRec {
                id: *id,
                attempts: *attempts,
                next_at: *next_at,
                error: error.clone(),
            }),
        ),
        Record::Delete { id } => (T_DELETE, id.to_le_bytes().to_vec()),
        Record::Warned { id } => (T_WARNED, id.to_le_bytes().to_vec()),
    }
}

mod erased {
    pub trait Ser {
        fn to_vec(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_vec(&self) -> Vec<u8> {
            // Our own types always encode; an empty payload would fail to
            // decode and be reported, never silently accepted.
            postcard::to_allocvec(self).unwrap_or_default()
        }
    }
}

/// Appends the encoded record to `out`; returns the offset of the
/// payload within `out` (where a body's id starts).
pub fn encode(rec: &Record, out: &mut Vec<u8>) -> usize {
    let (t, payload) = payload_of(rec);
    let len = payload.len() as u32;
    let mut crc = crc32(0, &[t]);
    crc = crc32(crc, &len.to_le_bytes());
    crc = crc32(crc, &payload);
    out.push(MAGIC);
    out.push(t);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    let at = out.len();
    out.extend_from_slice(&payload);
    at
}

fn u64_at(p: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes the record at the start of `buf`; returns it and its length.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Short);
    }
    if buf[0] != MAGIC {
        return Err(DecodeError::BadMagic(buf[0]));
    }
    let t = buf[1];
    let len = u32::from_le_bytes(buf[2..6].try_into().unwrap_or_default()) as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLong(len));
    }
    let want = u32::from_le_bytes(buf[6..10].try_into().unwrap_or_default());
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(DecodeError::Short);
    };
    let mut crc = crc32(0, &[t]);
    crc = crc32(crc, &buf[2..6]);
    crc = crc32(crc, payload);
    if crc != want {
        return Err(DecodeError::BadChecksum);
    }
    let bad = DecodeError::BadPayload(t);
    let exact = |p: &[u8]| -> Result<(), DecodeError> {
        if p.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::BadPayload(t))
        }
    };
    let rec = match t {
        T_BEGIN => {
            let (env, rest) = postcard::take_from_bytes(payload).map_err(|_| bad.clone())?;
            exact(rest)?;
            Record::Begin(env)
        }
        T_BODY => Record::Body {
            id: u64_at(payload, 0).ok_or(bad.clone())?,
            data: payload[8..].to_vec(),
        },
        T_END if len == 16 => Record::End {
            id: u64_at(payload, 0).ok_or(bad.clone())?,
            size: u64_at(payload, 8).ok_or(bad.clone())?,
        },
        T_RCPT => {
            let (r, rest): (RcptRec, _) =
                postcard::take_from_bytes(payload).map_err(|_| bad.clone())?;
            exact(rest)?;
            Record::Rcpt {
                id: r.id,
                index: r.index,
                outcome: r.outcome,
            }
        }
        T_RETRY => {
            let (r, rest): (RetryRec, _) =
                postcard::take_from_bytes(payload).map_err(|_| bad.clone())?;
            exact(rest)?;
            Record::Retry {
                id: r.id,
                attempts: r.attempts,
                next_at: r.next_at,
                error: r.error,
            }
        }
        T_DELETE if len == 8 => Record::Delete {
            id: u64_at(payload, 0).ok_or(bad.clone())?,
        },
        T_WARNED if len == 8 => Record::Warned {
            id: u64_at(payload, 0).ok_or(bad.clone())?,
        },
        _ => return Err(bad),
    };
    Ok((rec, HEADER_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Begin(StoredEnvelope {
                id: 7,
                received: 1_700_000_000,
                from: "a@b.test".into(),
                rcpts: vec!["u@home.arpa".into(), "v@home.arpa".into()],
            }),
            Record::Body {
                id: 7,
                data: b"Subject: x\r\n\r\nhello\r\n".to_vec(),
            },
            Record::End { id: 7, size: 21 },
            Record::Rcpt {
                id: 7,
                index: 1,
                outcome: Outcome::Bounced,
            },
            Record::Retry {
                id: 7,
                attempts: 3,
                next_at: 99,
                error: "421 busy".into(),
            },
            Record::Delete { id: 7 },
            Record::Warned { id: 7 },
        ]
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(crc32(0, b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for r in samples() {
            encode(&r, &mut buf);
        }
        let mut at = 0;
        for r in samples() {
            let (got, n) = decode(&buf[at..]).unwrap();
            assert_eq!(got, r);
            at += n;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        for r in samples() {
            let mut buf = Vec::new();
            encode(&r, &mut buf);
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "{r:?} cut at {cut}");
            }
            for i in 0..buf.len() {
                for bit in 0..8 {
                    let mut b = buf.clone();
                    b[i] ^= 1 << bit;
                    if let Ok((got, _)) = decode(&b) {
                        panic!("flip {i}/{bit} of {r:?} decoded as {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 88172645463325252;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            if len > 2 {
                buf[0] = MAGIC;
            }
            let _ = decode(&buf);
        }
    }
}
