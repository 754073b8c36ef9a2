//! The spool's record codec: self-checking, length-prefixed, typed
//! records. Pure: bytes in, values out; no file access.
//!
//! Two layouts are read; only the second is written:
//!
//! - version 1 (firmware before versioned records; spools on boards hold
//!   it): `0xB5` | type (1) | payload length (u32 LE) | CRC-32 of type,
//!   length and payload (u32 LE) | payload.
//! - the versioned frame (version 2 and every later one): `0xB6` |
//!   version (1) | type (1) | payload length (u32 LE) | message id (u64
//!   LE) | CRC-32 of the 15 bytes before it (u32 LE) | CRC-32 of the
//!   payload (u32 LE) | payload. The header has its own checksum, so a
//!   record whose payload is damaged, does not decode, or has a version
//!   this firmware does not know is still skipped exactly and is known to
//!   belong to its message: recovery loses that message at most. Later
//!   versions may change payloads and types, never this frame, and keep
//!   payloads within [`MAX_PAYLOAD`].
//!
//! The payload of a given type is the same in every version (a body's
//! payload is its id, then its bytes), except the begin record's: from
//! version 3 on, the envelope ends with the message's [`MessageFlags`]
//! (the ESMTP parameters it arrived with, passed on at delivery). A begin
//! record of version 1 or 2 has none and decodes as 7bit, no SMTPUTF8.

use serde::{Deserialize, Serialize};

/// First byte of a version-1 record.
pub const MAGIC: u8 = 0xB5;
/// Bytes before the payload of a version-1 record.
pub const HEADER_LEN_V1: usize = 10;
/// First byte of a versioned record (version 2 and later).
pub const MAGIC_FRAMED: u8 = 0xB6;
/// The version this firmware writes (3: the begin record carries the
/// message's [`MessageFlags`]).
pub const VERSION: u8 = 3;
/// The oldest versioned-frame version this firmware reads.
pub const FIRST_FRAMED_VERSION: u8 = 2;
/// Bytes of the versioned header that its own checksum covers.
const FRAME_CHECKED: usize = 15;
/// Bytes before the payload of a versioned record.
pub const HEADER_LEN: usize = FRAME_CHECKED + 8;
/// Largest payload: a body chunk of 32 KiB plus its id, or an envelope of
/// 1000 recipients of 256 bytes.
pub const MAX_PAYLOAD: usize = 512 * 1024;
/// Largest record of either layout: damage that spans more than this
/// cannot be one record.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_PAYLOAD;

/// The ESMTP parameters a message arrived with on `MAIL FROM`, passed on
/// to the next hop (RFC 6152, RFC 6531).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFlags {
    /// `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// A message's envelope as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnvelope {
    pub id: u64,
    /// Unix seconds when the message was received.
    pub received: u64,
    /// The reverse path, empty for the null sender.
    pub from: String,
    pub rcpts: Vec<String>,
    /// Written from version 3 on (last, so that the fields before keep
    /// their version-2 encoding).
    pub flags: MessageFlags,
}

/// The envelope of version-1 and version-2 begin records: no flags.
#[derive(Serialize, Deserialize)]
struct EnvelopeV2 {
    id: u64,
    received: u64,
    from: String,
    rcpts: Vec<String>,
}

impl From<EnvelopeV2> for StoredEnvelope {
    fn from(e: EnvelopeV2) -> StoredEnvelope {
        StoredEnvelope {
            id: e.id,
            received: e.received,
            from: e.from,
            rcpts: e.rcpts,
            flags: MessageFlags::default(),
        }
    }
}

/// Whether this firmware reads versioned records of `version`.
pub fn is_known_version(version: u8) -> bool {
    (FIRST_FRAMED_VERSION..=VERSION).contains(&version)
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
    /// Header fields to put in front of everything written for the message
    /// so far (its bytes follow the id, as in a body record), written last
    /// because they are known only at the message's end:
    /// `Authentication-Results` needs the whole body. At most
    /// [`MAX_HEAD_BYTES`].
    Head { id: u64, data: Vec<u8> },
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

/// A record's extent and owner, from a header whose checksum is good:
/// such a record can be skipped exactly even when it does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub version: u8,
    pub kind: u8,
    /// The message the record belongs to (versioned records only).
    pub id: Option<u64>,
    /// The whole record's length, header included.
    pub len: usize,
}

/// A decoded record, its length, and where its payload starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub record: Record,
    pub len: usize,
    /// Offset of the payload from the record's start.
    pub payload_at: usize,
}

/// Why bytes do not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the payload it announces: a torn write.
    #[error("record cut short")]
    Short,
    /// The first byte is not a record magic.
    #[error("bad record magic {0:#04x}")]
    BadMagic(u8),
    /// The announced payload is larger than [`MAX_PAYLOAD`].
    #[error("record payload of {0} bytes is over the limit")]
    TooLong(usize),
    /// The (header) checksum does not match: a torn or corrupted write;
    /// the record's length cannot be trusted.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// A versioned record's header is sound but its payload checksum is
    /// not: corrupted after it was written.
    #[error("{} record has a bad payload checksum", kind_name(.0.kind))]
    BadPayloadChecksum(Frame),
    /// The checksum is good but the type is unknown or the payload does
    /// not decode.
    #[error("{} record (type {}) does not decode", kind_name(.0.kind), .0.kind)]
    BadPayload(Frame),
    /// A versioned record of a version this firmware does not read
    /// (written by a newer one).
    #[error("record of unknown version {} (type {})", .0.version, .0.kind)]
    UnknownVersion(Frame),
}

impl DecodeError {
    /// The record's sound header, when there is one: it can be skipped
    /// exactly.
    pub fn frame(&self) -> Option<Frame> {
        match self {
            DecodeError::BadPayloadChecksum(f)
            | DecodeError::BadPayload(f)
            | DecodeError::UnknownVersion(f) => Some(*f),
            _ => None,
        }
    }
}

impl Record {
    /// The message the record is about.
    pub fn id(&self) -> u64 {
        match self {
            Record::Begin(env) => env.id,
            Record::Body { id, .. }
            | Record::Head { id, .. }
            | Record::End { id, .. }
            | Record::Rcpt { id, .. }
            | Record::Retry { id, .. }
            | Record::Delete { id }
            | Record::Warned { id } => *id,
        }
    }
}

/// A name for a record type, for log lines.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        T_BEGIN => "begin",
        T_BODY => "body",
        T_END => "end",
        T_RCPT => "outcome",
        T_RETRY => "retry",
        T_DELETE => "delete",
        T_WARNED => "warned",
        T_HEAD => "head",
        _ => "unknown",
    }
}

/// Whether a record of this type only tracks delivery (an outcome, a retry
/// time, the delay warning): without it the message is still whole, and
/// at worst delivered or warned about twice.
pub fn is_delivery_state(kind: u8) -> bool {
    matches!(kind, T_RCPT | T_RETRY | T_WARNED)
}

pub const T_BEGIN: u8 = 1;
pub const T_BODY: u8 = 2;
pub const T_END: u8 = 3;
pub const T_RCPT: u8 = 4;
pub const T_RETRY: u8 = 5;
pub const T_DELETE: u8 = 6;
pub const T_WARNED: u8 = 7;
pub const T_HEAD: u8 = 8;

/// Largest head record (header fields put in front of a message at its
/// end): an `Authentication-Results` field with a few results fits many
/// times over.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

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

/// A record's type and payload as `version` writes it.
fn payload_of(rec: &Record, version: u8) -> (u8, Vec<u8>) {
    let pc = |v: &dyn erased::Ser| v.to_vec();
    match rec {
        Record::Begin(env) if version < 3 => (
            T_BEGIN,
            pc(&EnvelopeV2 {
                id: env.id,
                received: env.received,
                from: env.from.clone(),
                rcpts: env.rcpts.clone(),
            }),
        ),
        Record::Begin(env) => (T_BEGIN, pc(env)),
        Record::Body { id, data } => {
            let mut p = Vec::with_capacity(8 + data.len());
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(data);
            (T_BODY, p)
        }
        Record::Head { id, data } => {
            let mut p = Vec::with_capacity(8 + data.len());
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(data);
            (T_HEAD, p)
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

/// Appends the record, versioned, to `out`; returns the offset of the
/// payload within `out` (where a body's id starts).
pub fn encode(rec: &Record, out: &mut Vec<u8>) -> usize {
    encode_version(rec, VERSION, out)
}

/// Appends the record in the versioned frame of `version` (tests build
/// spools of earlier firmware with it).
fn encode_version(rec: &Record, version: u8, out: &mut Vec<u8>) -> usize {
    let (t, payload) = payload_of(rec, version);
    let start = out.len();
    out.push(MAGIC_FRAMED);
    out.push(version);
    out.push(t);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&rec.id().to_le_bytes());
    let hcrc = crc32(0, &out[start..]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&crc32(0, &payload).to_le_bytes());
    let at = out.len();
    out.extend_from_slice(&payload);
    at
}

/// Appends the record in the version-1 layout (spools written before
/// versioned records); tests build old spools with it.
#[cfg(test)]
pub fn encode_v1(rec: &Record, out: &mut Vec<u8>) -> usize {
    let (t, payload) = payload_of(rec, 1);
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

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes the record at the start of `buf`, in either layout.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    match buf.first() {
        None => Err(DecodeError::Short),
        Some(&MAGIC) => decode_v1(buf),
        Some(&MAGIC_FRAMED) => decode_framed(buf),
        Some(&b) => Err(DecodeError::BadMagic(b)),
    }
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if buf.len() < HEADER_LEN_V1 {
        return Err(DecodeError::Short);
    }
    let t = buf[1];
    let len = u32_at(buf, 2).unwrap_or_default() as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLong(len));
    }
    let want = u32_at(buf, 6).unwrap_or_default();
    let Some(payload) = buf.get(HEADER_LEN_V1..HEADER_LEN_V1 + len) else {
        return Err(DecodeError::Short);
    };
    let mut crc = crc32(0, &[t]);
    crc = crc32(crc, &buf[2..6]);
    crc = crc32(crc, payload);
    if crc != want {
        return Err(DecodeError::BadChecksum);
    }
    let frame = Frame {
        version: 1,
        kind: t,
        id: None,
        len: HEADER_LEN_V1 + len,
    };
    let record = decode_payload(1, t, payload).ok_or(DecodeError::BadPayload(frame))?;
    Ok(Decoded {
        record,
        len: frame.len,
        payload_at: HEADER_LEN_V1,
    })
}

fn decode_framed(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Short);
    }
    if crc32(0, &buf[..FRAME_CHECKED]) != u32_at(buf, FRAME_CHECKED).unwrap_or_default() {
        return Err(DecodeError::BadChecksum);
    }
    let len = u32_at(buf, 3).unwrap_or_default() as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLong(len));
    }
    let id = u64_at(buf, 7).unwrap_or_default();
    let frame = Frame {
        version: buf[1],
        kind: buf[2],
        id: Some(id),
        len: HEADER_LEN + len,
    };
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(DecodeError::Short);
    };
    if !is_known_version(frame.version) {
        return Err(DecodeError::UnknownVersion(frame));
    }
    if crc32(0, payload) != u32_at(buf, FRAME_CHECKED + 4).unwrap_or_default() {
        return Err(DecodeError::BadPayloadChecksum(frame));
    }
    let record = decode_payload(frame.version, frame.kind, payload)
        .filter(|r| r.id() == id)
        .ok_or(DecodeError::BadPayload(frame))?;
    Ok(Decoded {
        record,
        len: frame.len,
        payload_at: HEADER_LEN,
    })
}

/// A type's payload as `version` wrote it, decoded exactly to its end.
fn decode_payload(version: u8, t: u8, payload: &[u8]) -> Option<Record> {
    fn exact<T>(r: postcard::Result<(T, &[u8])>) -> Option<T> {
        match r {
            Ok((v, [])) => Some(v),
            _ => None,
        }
    }
    let len = payload.len();
    Some(match t {
        T_BEGIN if version < 3 => {
            let e: EnvelopeV2 = exact(postcard::take_from_bytes(payload))?;
            Record::Begin(e.into())
        }
        T_BEGIN => Record::Begin(exact(postcard::take_from_bytes(payload))?),
        T_BODY => Record::Body {
            id: u64_at(payload, 0)?,
            data: payload.get(8..)?.to_vec(),
        },
        T_HEAD if len <= 8 + MAX_HEAD_BYTES => Record::Head {
            id: u64_at(payload, 0)?,
            data: payload.get(8..)?.to_vec(),
        },
        T_END if len == 16 => Record::End {
            id: u64_at(payload, 0)?,
            size: u64_at(payload, 8)?,
        },
        T_RCPT => {
            let r: RcptRec = exact(postcard::take_from_bytes(payload))?;
            Record::Rcpt {
                id: r.id,
                index: r.index,
                outcome: r.outcome,
            }
        }
        T_RETRY => {
            let r: RetryRec = exact(postcard::take_from_bytes(payload))?;
            Record::Retry {
                id: r.id,
                attempts: r.attempts,
                next_at: r.next_at,
                error: r.error,
            }
        }
        T_DELETE if len == 8 => Record::Delete {
            id: u64_at(payload, 0)?,
        },
        T_WARNED if len == 8 => Record::Warned {
            id: u64_at(payload, 0)?,
        },
        _ => return None,
    })
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
                flags: MessageFlags::default(),
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

    /// `samples()` as today's (v1) firmware writes them, byte for byte:
    /// spools on boards in the field hold these, and must keep loading.
    const GOLDEN_V1: &str = concat!(
        "b50128000000f7fa12780780e2cfaa06086140622e74657374020b7540686f6d",
        "652e617270610b7640686f6d652e61727061b5021d0000000f3d80fc07000000",
        "000000005375626a6563743a20780d0a0d0a68656c6c6f0d0ab5031000000077",
        "2b7e1307000000000000001500000000000000b504030000005cdcd3bb070101",
        "b5050c00000072385328070363083432312062757379b50608000000b8e658a3",
        "0700000000000000b507080000003d3fce7e0700000000000000",
    );

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn golden_v1_records_decode() {
        let buf = unhex(GOLDEN_V1);
        let mut at = 0;
        for r in samples() {
            let d = decode(&buf[at..]).unwrap();
            assert_eq!(d.record, r);
            assert_eq!(d.payload_at, HEADER_LEN_V1);
            at += d.len;
        }
        assert_eq!(at, buf.len());
        let mut v1 = Vec::new();
        for r in samples() {
            encode_v1(&r, &mut v1);
        }
        assert_eq!(v1, buf, "the test encoder writes today's format");
    }

    /// `samples()` as the previous firmware wrote them (version 2, the
    /// first versioned frame; begin records without flags), byte for byte.
    const GOLDEN_V2: &str = concat!(
        "b60201280000000700000000000000483f095f78a2883b0780e2cfaa06086140",
        "622e74657374020b7540686f6d652e617270610b7640686f6d652e61727061b6",
        "02021d00000007000000000000009212496e3b67b7a707000000000000005375",
        "626a6563743a20780d0a0d0a68656c6c6f0d0ab6020310000000070000000000",
        "0000f9ca702d6f8c192507000000000000001500000000000000b60204030000",
        "000700000000000000adf3852b40ce1294070101b602050c0000000700000000",
        "00000059b58784e430e5c9070363083432312062757379b60206080000000700",
        "000000000000e8e24b3a70d6e76f0700000000000000b6020708000000070000",
        "00000000006d3bdde770d6e76f0700000000000000",
    );

    /// `samples()` as this firmware writes them (version 3), the message
    /// having arrived with `BODY=8BITMIME` and without `SMTPUTF8`: its
    /// begin payload ends with the flags `01 00`.
    const GOLDEN_V3: &str = concat!(
        "b603012a0000000700000000000000a1403d2e0c29fc870780e2cfaa06086140",
        "622e74657374020b7540686f6d652e617270610b7640686f6d652e6172706101",
        "00b603021d0000000700000000000000e4f346f33b67b7a70700000000000000",
        "5375626a6563743a20780d0a0d0a68656c6c6f0d0ab603031000000007000000",
        "000000008f2b7fb06f8c192507000000000000001500000000000000b6030403",
        "0000000700000000000000db128ab640ce1294070101b603050c000000070000",
        "00000000002f548819e430e5c9070363083432312062757379b6030608000000",
        "07000000000000009e0344a770d6e76f0700000000000000b603070800000007",
        "000000000000001bdad27a70d6e76f0700000000000000",
    );

    fn eight_bit_samples() -> Vec<Record> {
        let mut v = samples();
        if let Record::Begin(env) = &mut v[0] {
            env.flags.eight_bit = true;
        }
        v
    }

    fn decode_all(buf: &[u8]) -> Vec<Record> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < buf.len() {
            let d = decode(&buf[at..]).unwrap();
            assert_eq!(d.payload_at, HEADER_LEN);
            out.push(d.record);
            at += d.len;
        }
        out
    }

    #[test]
    fn golden_v2_records_decode_as_7bit_without_smtputf8() {
        let buf = unhex(GOLDEN_V2);
        let got = decode_all(&buf);
        assert_eq!(got, samples());
        let Record::Begin(env) = &got[0] else {
            panic!("{:?}", got[0]);
        };
        assert_eq!(env.flags, MessageFlags::default());
        let mut v2 = Vec::new();
        for r in samples() {
            encode_version(&r, 2, &mut v2);
        }
        assert_eq!(v2, buf, "the test encoder writes version 2 as it was");
    }

    #[test]
    fn golden_v3_records_carry_the_flags() {
        let buf = unhex(GOLDEN_V3);
        assert_eq!(decode_all(&buf), eight_bit_samples());
        let mut v3 = Vec::new();
        for r in eight_bit_samples() {
            encode(&r, &mut v3);
        }
        assert_eq!(v3, buf, "this firmware writes version 3 so");
        // Both flags survive, in their places.
        for (eight_bit, smtputf8) in [(false, true), (true, true), (false, false)] {
            let r = Record::Begin(StoredEnvelope {
                id: 1,
                received: 2,
                from: String::new(),
                rcpts: vec!["u@x.test".into()],
                flags: MessageFlags {
                    eight_bit,
                    smtputf8,
                },
            });
            let mut b = Vec::new();
            encode(&r, &mut b);
            assert_eq!(decode(&b).unwrap().record, r);
        }
    }

    #[test]
    fn a_begin_payload_decodes_only_as_its_version_wrote_it() {
        // A version-3 payload in a version-2 frame has two bytes too many;
        // a version-2 payload in a version-3 frame two too few.
        let begin = eight_bit_samples().remove(0);
        for (payload_version, frame_version) in [(3, 2), (2, 3)] {
            let (t, payload) = payload_of(&begin, payload_version);
            assert!(decode_payload(frame_version, t, &payload).is_none());
        }
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(crc32(0, b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for r in samples() {
            starts.push(buf.len());
            let at = encode(&r, &mut buf);
            assert_eq!(at, buf.len() - payload_of(&r, VERSION).1.len());
        }
        let mut at = 0;
        for r in samples() {
            let d = decode(&buf[at..]).unwrap();
            assert_eq!(d.record, r);
            assert_eq!(d.payload_at, HEADER_LEN);
            at += d.len;
        }
        assert_eq!(at, buf.len());
        // The header names the message, under its own checksum.
        assert_eq!(buf[starts[1]], MAGIC_FRAMED);
        assert_eq!(buf[starts[1] + 1], VERSION);
        assert_eq!(buf[starts[1] + 7..starts[1] + 15], 7u64.to_le_bytes());
    }

    #[test]
    fn a_head_record_round_trips_within_its_bound() {
        let r = Record::Head {
            id: 7,
            data: b"Authentication-Results: h; none\r\n".to_vec(),
        };
        let mut buf = Vec::new();
        encode(&r, &mut buf);
        assert_eq!(decode(&buf).unwrap().record, r);
        let big = Record::Head {
            id: 7,
            data: vec![b'x'; MAX_HEAD_BYTES + 1],
        };
        buf.clear();
        encode(&big, &mut buf);
        assert!(matches!(decode(&buf), Err(DecodeError::BadPayload(_))));
    }

    #[test]
    fn a_sound_header_is_skipped_exactly() {
        let mut buf = Vec::new();
        encode(&Record::Warned { id: 9 }, &mut buf);
        let n = buf.len();
        buf[n - 1] ^= 1;
        let want = Frame {
            version: VERSION,
            kind: T_WARNED,
            id: Some(9),
            len: n,
        };
        assert_eq!(decode(&buf), Err(DecodeError::BadPayloadChecksum(want)));
        buf[1] = 7;
        let hcrc = crc32(0, &buf[..FRAME_CHECKED]);
        buf[FRAME_CHECKED..FRAME_CHECKED + 4].copy_from_slice(&hcrc.to_le_bytes());
        let future = Frame { version: 7, ..want };
        assert_eq!(decode(&buf), Err(DecodeError::UnknownVersion(future)));
        // A record whose header and payload ids disagree does not decode.
        let mut buf = Vec::new();
        encode(&Record::Delete { id: 5 }, &mut buf);
        buf[HEADER_LEN] = 6;
        let pcrc = crc32(0, &buf[HEADER_LEN..]);
        buf[FRAME_CHECKED + 4..HEADER_LEN].copy_from_slice(&pcrc.to_le_bytes());
        assert!(matches!(decode(&buf), Err(DecodeError::BadPayload(_))));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        for (r, enc) in samples().into_iter().flat_map(|r| {
            [
                (r.clone(), encode as fn(&Record, &mut Vec<u8>) -> usize),
                (r, encode_v1),
            ]
        }) {
            let mut buf = Vec::new();
            enc(&r, &mut buf);
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "{r:?} cut at {cut}");
            }
            for i in 0..buf.len() {
                for bit in 0..8 {
                    let mut b = buf.clone();
                    b[i] ^= 1 << bit;
                    if let Ok(d) = decode(&b) {
                        panic!("flip {i}/{bit} of {r:?} decoded as {:?}", d.record);
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
                buf[0] = if x & 1 == 0 { MAGIC } else { MAGIC_FRAMED };
            }
            let _ = decode(&buf);
        }
    }
}
