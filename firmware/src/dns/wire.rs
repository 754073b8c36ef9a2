//! DNS wire format on the serving path: a bounded, checked parse of client
//! queries, a walk over upstream responses that finds every TTL field,
//! and the few replies we build by hand (errors, truncation, answers from
//! stored bytes with patched ID, flags, question case and TTLs).
//!
//! Everything here is pure: bytes in, bytes out, no I/O, no clock. After
//! [`parse_query`] or [`walk`] succeeds, no offset they return can index
//! outside the buffer. Nothing here allocates more than the packet it was
//! given plus one OPT record.

use heapless::Vec as HVec;

/// Largest encoded domain name (RFC 1035 3.1).
pub const MAX_NAME_BYTES: usize = 255;
/// Largest label (RFC 1035 3.1).
pub const MAX_LABEL_BYTES: usize = 63;
/// A client query larger than this is malformed for a stub resolver and
/// gets FORMERR; it also sizes the receive buffers.
pub const MAX_QUERY_BYTES: usize = 4096;
/// The EDNS(0) payload we advertise and accept at most (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// A UDP client without EDNS gets at most this many bytes.
pub const PLAIN_UDP_PAYLOAD: usize = 512;
/// Compression pointers followed per name before the name is rejected.
pub const MAX_POINTER_HOPS: usize = 16;
/// Records walked in one response; more is treated as malformed.
pub const MAX_RECORDS: usize = 512;

pub const HEADER_LEN: usize = 12;
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const FLAG_CD: u16 = 0x0010;

/// An encoded domain name, bounded by [`MAX_NAME_BYTES`].
pub type NameBuf = HVec<u8, MAX_NAME_BYTES>;
/// Longest cache key: a name, then type and class.
pub const MAX_KEY_BYTES: usize = MAX_NAME_BYTES + 4;
/// A cache key built on the stack (the lookup of a cache hit allocates
/// nothing).
pub type KeyBuf = HVec<u8, MAX_KEY_BYTES>;

/// Why a packet could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header, or a response where a query was expected:
    /// nothing trustworthy to answer to, so it is dropped in silence.
    #[error("not a DNS query (too short or a response)")]
    Garbage,
    /// A header was read, but the rest is malformed: the client gets
    /// FORMERR (carried in the [`Rejected`] with its ID).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// The EDNS(0) options of a client query that matter to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The client's advertised UDP payload size.
    pub payload: u16,
    /// EDNS version; only 0 is supported (others get BADVERS).
    pub version: u8,
}

/// A validated client query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// RD and CD as the client sent them.
    pub rd: bool,
    pub cd: bool,
    /// The question name exactly as sent (original case).
    pub qname: NameBuf,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

/// A query that must be answered with an error rather than looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub rcode: u8,
    /// The question, when it was read before the problem was found.
    pub question: Option<(NameBuf, u16, u16)>,
    pub edns: Option<Edns>,
    pub reason: &'static str,
}

/// What [`parse_query`] makes of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Query(Query),
    /// Answer with an error (FORMERR, NOTIMP, BADVERS...).
    Reject(Rejected),
    /// Drop silently.
    Drop,
}

impl Query {
    /// The cache and coalescing key: lower-cased name, type, class.
    pub fn key(&self) -> Key {
        Key::new(&self.qname, self.qtype, self.qclass)
    }

    /// The same bytes as [`Query::key`], without an allocation.
    pub fn key_buf(&self) -> KeyBuf {
        let mut k = KeyBuf::new();
        // A NameBuf holds at most MAX_NAME_BYTES, so this always fits.
        for &b in self.qname.iter() {
            let _ = k.push(b.to_ascii_lowercase());
        }
        let _ = k.extend_from_slice(&self.qtype.to_be_bytes());
        let _ = k.extend_from_slice(&self.qclass.to_be_bytes());
        k
    }

    /// Largest reply this client can take over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.payload as usize).clamp(PLAIN_UDP_PAYLOAD, EDNS_PAYLOAD as usize),
            None => PLAIN_UDP_PAYLOAD,
        }
    }

    /// The question name in dotted text (for logs and stats).
    pub fn name_text(&self) -> String {
        name_to_text(&self.qname)
    }
}

/// Cache key: the lower-cased wire name, then type and class. Boxed so a
/// cached entry pays only for the bytes its name has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub Box<[u8]>);

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Key {
    pub fn new(qname: &[u8], qtype: u16, qclass: u16) -> Key {
        let mut v = Vec::with_capacity(qname.len() + 4);
        v.extend(qname.iter().map(|b| b.to_ascii_lowercase()));
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&qclass.to_be_bytes());
        Key(v.into_boxed_slice())
    }
    pub fn name(&self) -> &[u8] {
        &self.0[..self.0.len().saturating_sub(4)]
    }
    pub fn qtype(&self) -> u16 {
        let n = self.0.len();
        if n < 4 {
            return 0;
        }
        u16::from_be_bytes([self.0[n - 4], self.0[n - 3]])
    }
    pub fn qclass(&self) -> u16 {
        let n = self.0.len();
        if n < 4 {
            return 0;
        }
        u16::from_be_bytes([self.0[n - 2], self.0[n - 1]])
    }
    /// A key is valid when its name is a well-formed uncompressed name.
    pub fn is_valid(&self) -> bool {
        self.0.len() >= 5 && read_plain_name(&self.0, 0).map(|(_, end)| end) == Ok(self.0.len() - 4)
    }
    /// `name TYPE` for logs and stats.
    pub fn text(&self) -> String {
        format!("{} {}", name_to_text(self.name()), type_text(self.qtype()))
    }
}

/// The mnemonic of the common record types, else `TYPEnnn` (RFC 3597).
pub fn type_text(t: u16) -> String {
    match t {
        TYPE_A => "A".into(),
        TYPE_NS => "NS".into(),
        5 => "CNAME".into(),
        TYPE_SOA => "SOA".into(),
        TYPE_PTR => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        TYPE_AAAA => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        other => format!("TYPE{other}"),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an uncompressed name at `at`; returns it and the offset after it.
fn read_plain_name(buf: &[u8], mut at: usize) -> Result<(NameBuf, usize), WireError> {
    let mut name = NameBuf::new();
    loop {
        let len = *buf
            .get(at)
            .ok_or(WireError::Malformed("name runs past the end"))? as usize;
        if len & 0xC0 != 0 {
            return Err(WireError::Malformed(
                "compressed or extended label in question",
            ));
        }
        if at + 1 + len > buf.len() {
            return Err(WireError::Malformed("label runs past the end"));
        }
        name.extend_from_slice(&buf[at..at + 1 + len])
            .map_err(|_| WireError::Malformed("name longer than 255 bytes"))?;
        at += 1 + len;
        if len == 0 {
            return Ok((name, at));
        }
    }
}

/// Skips a possibly compressed name at `at`; returns the offset after it.
/// Pointers must point strictly backwards, past the header, at most
/// [`MAX_POINTER_HOPS`].
pub fn skip_name(buf: &[u8], at: usize) -> Result<usize, WireError> {
    let mut pos = at;
    let mut end = None;
    let mut hops = 0;
    let mut total = 0usize;
    loop {
        let len = *buf
            .get(pos)
            .ok_or(WireError::Malformed("name runs past the end"))? as usize;
        match len & 0xC0 {
            0x00 => {
                if pos + 1 + len > buf.len() {
                    return Err(WireError::Malformed("label runs past the end"));
                }
                total += 1 + len;
                if total > MAX_NAME_BYTES {
                    return Err(WireError::Malformed("name longer than 255 bytes"));
                }
                pos += 1 + len;
                if len == 0 {
                    return Ok(end.unwrap_or(pos));
                }
            }
            0xC0 => {
                let b2 = *buf
                    .get(pos + 1)
                    .ok_or(WireError::Malformed("pointer cut"))? as usize;
                let target = ((len & 0x3F) << 8) | b2;
                if target >= pos {
                    return Err(WireError::Malformed(
                        "compression pointer does not point back",
                    ));
                }
                // No name lives in the header, and the header is what a
                // stored answer has patched (ID, flags) before it is sent:
                // a pointer there would read another name then.
                if target < HEADER_LEN {
                    return Err(WireError::Malformed("compression pointer into the header"));
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(WireError::Malformed("too many compression pointers"));
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                pos = target;
            }
            _ => return Err(WireError::Malformed("unknown label type")),
        }
    }
}

/// Parses a client packet. Never panics; see [`Parsed`].
pub fn parse_query(buf: &[u8]) -> Parsed {
    if buf.len() < HEADER_LEN {
        return Parsed::Drop;
    }
    let id = be16(buf, 0);
    let flags = be16(buf, 2);
    if flags & FLAG_QR != 0 {
        return Parsed::Drop;
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & FLAG_RD != 0;
    let reject = |rcode, question, edns, reason| {
        Parsed::Reject(Rejected {
            id,
            opcode,
            rd,
            rcode,
            question,
            edns,
            reason,
        })
    };
    if buf.len() > MAX_QUERY_BYTES {
        return reject(RCODE_FORMERR, None, None, "query larger than 4096 bytes");
    }
    if opcode != 0 {
        return reject(RCODE_NOTIMP, None, None, "opcode other than QUERY");
    }
    let (qd, an, ns, ar) = (be16(buf, 4), be16(buf, 6), be16(buf, 8), be16(buf, 10));
    if qd != 1 {
        return reject(RCODE_FORMERR, None, None, "question count is not 1");
    }
    if an != 0 || ns != 0 {
        return reject(
            RCODE_FORMERR,
            None,
            None,
            "query carries answer or authority records",
        );
    }
    let (qname, at) = match read_plain_name(buf, HEADER_LEN) {
        Ok(v) => v,
        Err(e) => {
            let r = match e {
                WireError::Malformed(r) => r,
                WireError::Garbage => "bad question name",
            };
            return reject(RCODE_FORMERR, None, None, r);
        }
    };
    if at + 4 > buf.len() {
        return reject(RCODE_FORMERR, None, None, "question cut short");
    }
    let qtype = be16(buf, at);
    let qclass = be16(buf, at + 2);
    let question = Some((qname.clone(), qtype, qclass));
    let mut pos = at + 4;
    let mut edns = None;
    for _ in 0..ar {
        let Ok(name_end) = skip_name(buf, pos) else {
            return reject(
                RCODE_FORMERR,
                question,
                None,
                "bad name in additional record",
            );
        };
        if name_end + 10 > buf.len() {
            return reject(RCODE_FORMERR, question, None, "additional record cut short");
        }
        let rtype = be16(buf, name_end);
        let rdlen = be16(buf, name_end + 8) as usize;
        let end = name_end + 10 + rdlen;
        if end > buf.len() {
            return reject(
                RCODE_FORMERR,
                question,
                None,
                "record data runs past the end",
            );
        }
        if rtype == TYPE_OPT {
            if edns.is_some() || name_end != pos + 1 || buf[pos] != 0 {
                return reject(
                    RCODE_FORMERR,
                    question,
                    None,
                    "second OPT or OPT not at root",
                );
            }
            let ttl = be32(buf, name_end + 4);
            edns = Some(Edns {
                payload: be16(buf, name_end + 2),
                version: ((ttl >> 16) & 0xFF) as u8,
            });
        }
        pos = end;
    }
    if pos != buf.len() {
        return reject(
            RCODE_FORMERR,
            question,
            edns,
            "trailing bytes after the message",
        );
    }
    if let Some(e) = edns
        && e.version != 0
    {
        // BADVERS is extended rcode 16: OPT carries the high bits.
        return reject(16, question, edns, "unsupported EDNS version");
    }
    if qtype == TYPE_OPT || qtype == 0 {
        return reject(RCODE_FORMERR, question, edns, "meta type in question");
    }
    if qtype == TYPE_AXFR || qtype == TYPE_IXFR {
        return reject(
            RCODE_NOTIMP,
            question,
            edns,
            "zone transfers are not served",
        );
    }
    if qclass != CLASS_IN {
        return reject(RCODE_REFUSED, question, edns, "only class IN is served");
    }
    Parsed::Query(Query {
        id,
        rd,
        cd: flags & FLAG_CD != 0,
        qname,
        qtype,
        qclass,
        edns,
    })
}

fn push_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Our OPT record: root name, payload [`EDNS_PAYLOAD`], extended rcode.
pub fn push_opt(out: &mut Vec<u8>, ext_rcode: u8) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[ext_rcode, 0, 0, 0, 0, 0]);
}

fn response_flags(opcode: u8, rd: bool, cd: bool, aa: bool, tc: bool, rcode: u8) -> u16 {
    let mut f = FLAG_QR | FLAG_RA | ((opcode as u16 & 0xF) << 11) | (rcode as u16 & 0xF);
    if rd {
        f |= FLAG_RD;
    }
    if cd {
        f |= FLAG_CD;
    }
    if aa {
        f |= FLAG_AA;
    }
    if tc {
        f |= FLAG_TC;
    }
    f
}

/// The reply to a [`Rejected`] query.
pub fn reject_reply(r: &Rejected) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let qd = r.question.is_some() as u16;
    let ar = r.edns.is_some() as u16;
    push_header(
        &mut out,
        r.id,
        response_flags(r.opcode, r.rd, false, false, false, r.rcode & 0xF),
        [qd, 0, 0, ar],
    );
    if let Some((name, t, c)) = &r.question {
        out.extend_from_slice(name);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&c.to_be_bytes());
    }
    if r.edns.is_some() {
        push_opt(&mut out, r.rcode >> 4);
    }
    out
}

/// A reply with no records: REFUSED, SERVFAIL, or a truncated (TC) stub.
pub fn empty_reply(q: &Query, rcode: u8, tc: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + q.qname.len() + 4 + 11);
    push_header(
        &mut out,
        q.id,
        response_flags(0, q.rd, q.cd, false, tc, rcode),
        [1, 0, 0, q.edns.is_some() as u16],
    );
    push_question(&mut out, q);
    if q.edns.is_some() {
        push_opt(&mut out, 0);
    }
    out
}

fn push_question(out: &mut Vec<u8>, q: &Query) {
    out.extend_from_slice(&q.qname);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
}

/// One record of locally built answers.
pub struct LocalRecord<'a> {
    /// Owner name; `None` means "the question name" (a pointer to it).
    pub owner: Option<&'a [u8]>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

/// An authoritative reply built from local data.
pub fn local_reply(
    q: &Query,
    rcode: u8,
    answers: &[LocalRecord<'_>],
    authority: &[LocalRecord<'_>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push_header(
        &mut out,
        q.id,
        response_flags(0, q.rd, q.cd, true, false, rcode),
        [
            1,
            answers.len() as u16,
            authority.len() as u16,
            q.edns.is_some() as u16,
        ],
    );
    push_question(&mut out, q);
    for r in answers.iter().chain(authority) {
        match r.owner {
            None => out.extend_from_slice(&[0xC0, HEADER_LEN as u8]),
            Some(n) => out.extend_from_slice(n),
        }
        out.extend_from_slice(&r.rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        out.extend_from_slice(&(r.rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(r.rdata);
    }
    if q.edns.is_some() {
        push_opt(&mut out, 0);
    }
    out
}

/// Cuts `reply` to what a UDP client can take: if it is larger than
/// `limit`, it becomes an empty reply with TC set (the client retries
/// over TCP).
pub fn fit_udp(q: &Query, reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit || reply.len() < HEADER_LEN {
        return reply;
    }
    let rcode = reply[3] & 0xF;
    let mut r = empty_reply(q, rcode, true);
    if reply[2] & (FLAG_AA >> 8) as u8 != 0 {
        r[2] |= (FLAG_AA >> 8) as u8;
    }
    r
}

/// One record found by [`walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// 0 answer, 1 authority, 2 additional.
    pub section: u8,
    pub rtype: u16,
    /// Offset of the 4-byte TTL field.
    pub ttl_at: usize,
    pub rdata_at: usize,
    pub rdata_len: usize,
    /// Offset where the record starts (its owner name).
    pub start: usize,
}

/// The structure of a whole message (an upstream response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    pub id: u16,
    pub flags: u16,
    pub qname: NameBuf,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just after the question.
    pub question_end: usize,
    pub records: Vec<RecordPos>,
}

impl Walked {
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xF) as u8
    }
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xF) as u8
    }
}

/// Whether the name at `at` (already checked by [`skip_name`]) reads a
/// byte of one of `records`' TTLs (in offset order): a stored answer has
/// its TTLs rewritten, so that name would change.
fn reads_a_ttl(buf: &[u8], mut at: usize, records: &[RecordPos]) -> bool {
    for _ in 0..=MAX_POINTER_HOPS + MAX_NAME_BYTES {
        let Some(&len) = buf.get(at) else {
            return false;
        };
        let span = if len & 0xC0 == 0xC0 {
            2
        } else {
            1 + len as usize
        };
        // Records are in offset order: the first whose TTL ends after
        // `at` is the only one this span can reach first.
        let i = records.partition_point(|r| r.ttl_at + 4 <= at);
        if records.get(i).is_some_and(|r| r.ttl_at < at + span) {
            return true;
        }
        match len & 0xC0 {
            0xC0 => {
                let Some(&b2) = buf.get(at + 1) else {
                    return false;
                };
                at = ((len as usize & 0x3F) << 8) | b2 as usize;
            }
            _ if len == 0 => return false,
            _ => at += span,
        }
    }
    false
}

/// Walks a complete message with exactly one question: every record's
/// position is checked against the buffer, names are checked for loops
/// and length, and trailing bytes are an error.
pub fn walk(buf: &[u8]) -> Result<Walked, WireError> {
    if buf.len() < HEADER_LEN {
        return Err(WireError::Garbage);
    }
    let (qd, an, ns, ar) = (be16(buf, 4), be16(buf, 6), be16(buf, 8), be16(buf, 10));
    if qd != 1 {
        return Err(WireError::Malformed("question count is not 1"));
    }
    let total = an as usize + ns as usize + ar as usize;
    if total > MAX_RECORDS {
        return Err(WireError::Malformed("too many records"));
    }
    let (qname, at) = read_plain_name(buf, HEADER_LEN)?;
    if at + 4 > buf.len() {
        return Err(WireError::Malformed("question cut short"));
    }
    let mut records = Vec::with_capacity(total);
    let mut pos = at + 4;
    for (section, count) in [(0u8, an), (1, ns), (2, ar)] {
        for _ in 0..count {
            let name_end = skip_name(buf, pos)?;
            if name_end + 10 > buf.len() {
                return Err(WireError::Malformed("record cut short"));
            }
            let rdlen = be16(buf, name_end + 8) as usize;
            if name_end + 10 + rdlen > buf.len() {
                return Err(WireError::Malformed("record data runs past the end"));
            }
            records.push(RecordPos {
                section,
                rtype: be16(buf, name_end),
                ttl_at: name_end + 4,
                rdata_at: name_end + 10,
                rdata_len: rdlen,
                start: pos,
            });
            pos = name_end + 10 + rdlen;
        }
    }
    if pos != buf.len() {
        return Err(WireError::Malformed("trailing bytes after the message"));
    }
    // No name may read a byte of any record's TTL, its own or a later
    // one's included (found by `make fuzz-long`: an owner name whose
    // labels ran through its own record's TTL), whether by a pointer or
    // by its labels running on: a stored answer has its TTLs rewritten,
    // so that name would change. Owner names, and the names inside the
    // data of the types that carry them (NS, CNAME, PTR, MX, SOA).
    for r in &records {
        // The owner was checked by `skip_name` above; a name in the data
        // must end within it.
        let data = &buf[..r.rdata_at + r.rdata_len];
        let mut in_data = [None, None];
        match r.rtype {
            TYPE_NS | TYPE_CNAME | TYPE_PTR => in_data[0] = Some(r.rdata_at),
            TYPE_MX if r.rdata_len > 2 => in_data[0] = Some(r.rdata_at + 2),
            TYPE_SOA => {
                in_data[0] = Some(r.rdata_at);
                in_data[1] = Some(skip_name(data, r.rdata_at)?);
            }
            _ => {}
        }
        for at in in_data.into_iter().flatten() {
            skip_name(data, at)?;
        }
        let mut names = std::iter::once(r.start).chain(in_data.into_iter().flatten());
        if names.any(|at| reads_a_ttl(buf, at, &records)) {
            return Err(WireError::Malformed("compression pointer into a TTL"));
        }
    }
    Ok(Walked {
        id: be16(buf, 0),
        flags: be16(buf, 2),
        qname,
        qtype: be16(buf, at),
        qclass: be16(buf, at + 2),
        question_end: at + 4,
        records,
    })
}

/// Reads a possibly compressed name at `at` (checked as [`skip_name`]
/// checks it), uncompressed, in the case it was sent.
pub fn read_name(buf: &[u8], at: usize) -> Result<NameBuf, WireError> {
    skip_name(buf, at)?;
    let mut out = NameBuf::new();
    let mut pos = at;
    // skip_name bounded the hops and the length: this loop ends.
    loop {
        let len = buf[pos] as usize;
        if len & 0xC0 == 0xC0 {
            pos = ((len & 0x3F) << 8) | buf[pos + 1] as usize;
            continue;
        }
        out.extend_from_slice(&buf[pos..pos + 1 + len])
            .map_err(|_| WireError::Malformed("name longer than 255 bytes"))?;
        if len == 0 {
            return Ok(out);
        }
        pos += 1 + len;
    }
}

/// Checks the data of a record [`walk`] found, for the types whose data
/// has a fixed shape: A (4 bytes), AAAA (16), NS, CNAME and PTR (one
/// name), MX (preference, name), SOA (two names, five numbers); names
/// must end exactly where the data does. Other types pass as opaque.
pub fn check_rdata(buf: &[u8], r: &RecordPos) -> Result<(), WireError> {
    let data = &buf[..r.rdata_at + r.rdata_len];
    let bad = Err(WireError::Malformed("record data does not fit its type"));
    let ends_at = match r.rtype {
        TYPE_A => r.rdata_at + 4,
        TYPE_AAAA => r.rdata_at + 16,
        TYPE_NS | TYPE_CNAME | TYPE_PTR => skip_name(data, r.rdata_at)?,
        TYPE_MX if r.rdata_len > 2 => skip_name(data, r.rdata_at + 2)?,
        TYPE_SOA => {
            let rname = skip_name(data, r.rdata_at)?;
            skip_name(data, rname)? + 20
        }
        TYPE_MX => return bad,
        _ => return Ok(()),
    };
    if ends_at == data.len() { Ok(()) } else { bad }
}

/// Reads the TTL at `at` (callers pass offsets from [`walk`]).
pub fn ttl_at(buf: &[u8], at: usize) -> u32 {
    be32(buf, at)
}

/// Writes a TTL at `at`.
pub fn set_ttl(buf: &mut [u8], at: usize, ttl: u32) {
    buf[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
}

/// The SOA MINIMUM field of a SOA record's data (its last 4 bytes).
pub fn soa_minimum(buf: &[u8], r: &RecordPos) -> Option<u32> {
    if r.rtype != TYPE_SOA || r.rdata_len < 22 {
        return None;
    }
    Some(be32(buf, r.rdata_at + r.rdata_len - 4))
}

/// Builds an upstream query: random `id`, RD set, EDNS(0) with our payload.
pub fn build_upstream_query(id: u16, key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + key.0.len() + 11);
    push_header(&mut out, id, FLAG_RD, [1, 0, 0, 1]);
    out.extend_from_slice(&key.0);
    push_opt(&mut out, 0);
    out
}

/// Sets the header of a stored answer for one client: ID, flags (QR, RA,
/// the client's RD and CD, stored rcode, AA and TC clear) and the
/// question name in the client's case. `stored` must have come from
/// [`walk`] with the same lower-cased name.
pub fn patch_header(out: &mut [u8], q: &Query) {
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    let rcode = out[3] & 0xF;
    let f = response_flags(0, q.rd, q.cd, false, false, rcode);
    out[2..4].copy_from_slice(&f.to_be_bytes());
    let n = q.qname.len();
    if out.len() >= HEADER_LEN + n && out[HEADER_LEN..HEADER_LEN + n].eq_ignore_ascii_case(&q.qname)
    {
        out[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&q.qname);
    }
}

/// Appends our OPT record to a finished message and counts it.
pub fn append_opt(out: &mut Vec<u8>) {
    let ar = be16(out, 10).saturating_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
    push_opt(out, 0);
}

/// Encodes dotted text (`nas.home.arpa`, trailing dot optional) as a wire
/// name, lower-cased.
pub fn name_from_text(s: &str) -> Result<NameBuf, WireError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let mut out = NameBuf::new();
    if !s.is_empty() {
        for label in s.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_BYTES {
                return Err(WireError::Malformed("empty or over-long label"));
            }
            out.push(label.len() as u8)
                .and_then(|_| {
                    out.extend_from_slice(label.to_ascii_lowercase().as_bytes())
                        .map_err(|_| 0)
                })
                .map_err(|_| WireError::Malformed("name longer than 255 bytes"))?;
        }
    }
    out.push(0)
        .map_err(|_| WireError::Malformed("name longer than 255 bytes"))?;
    Ok(out)
}

/// Dotted text of an uncompressed wire name (`.` for the root).
pub fn name_to_text(name: &[u8]) -> String {
    let mut s = String::new();
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        let len = len as usize;
        if len == 0 || len & 0xC0 != 0 || at + 1 + len > name.len() {
            break;
        }
        for &b in &name[at + 1..at + 1 + len] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        at += 1 + len;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// True when `name` equals `zone` or lies below it (both lower-cased,
/// uncompressed wire names).
pub fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    if zone.len() > name.len() {
        return false;
    }
    let tail = name.len() - zone.len();
    if !name[tail..].eq_ignore_ascii_case(zone) {
        return false;
    }
    // `tail` must fall on a label boundary.
    let mut at = 0;
    while at < tail {
        at += 1 + name[at] as usize;
    }
    at == tail
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, Query as HQuery};
    use hickory_proto::rr::{Name, RecordType};

    pub(crate) fn query_bytes(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            let mut e = HEdns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// Record data checked by shape; a compressed MX exchange read back
    /// whole. Messages made by hickory-proto (an independent encoder).
    #[test]
    fn record_data_is_checked_by_type() {
        use hickory_proto::op::{Message, OpCode};
        use hickory_proto::rr::rdata::{A, MX};
        use hickory_proto::rr::{RData, Record};
        let mut m = Message::response(7, OpCode::Query);
        let owner = Name::from_ascii("example.org.").unwrap();
        m.add_query(HQuery::query(owner.clone(), RecordType::MX));
        let exchange = Name::from_ascii("mx1.Example.org.").unwrap();
        m.add_answer(Record::from_rdata(
            owner.clone(),
            60,
            RData::MX(MX::new(10, exchange)),
        ));
        m.add_answer(Record::from_rdata(
            owner,
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let buf = m.to_vec().unwrap();
        let w = walk(&buf).unwrap();
        for r in &w.records {
            check_rdata(&buf, r).unwrap();
        }
        let mx = w.records[0];
        assert_eq!(
            name_to_text(&read_name(&buf, mx.rdata_at + 2).unwrap()),
            "mx1.Example.org."
        );
        // An A record whose data is 5 bytes long: walk still passes it (the
        // lengths add up), check_rdata does not.
        let a = w.records[1];
        let mut bad = buf[..a.rdata_at - 2].to_vec();
        bad.extend_from_slice(&[0, 5, 192, 0, 2, 1, 0]);
        let w = walk(&bad).unwrap();
        assert!(check_rdata(&bad, &w.records[1]).is_err());
        // An MX without a name, and one whose name runs past its data
        // (the A record left out: one answer).
        let mut bad = buf[..mx.rdata_at - 2].to_vec();
        bad[7] = 1;
        bad.extend_from_slice(&[0, 2, 0, 10]);
        let w = walk(&bad[..]).unwrap();
        assert!(check_rdata(&bad, &w.records[0]).is_err());
        let mut bad = buf[..mx.rdata_at - 2].to_vec();
        bad[7] = 1;
        bad.extend_from_slice(&[0, 4, 0, 10, 3, b'm']);
        // walk reads the names in record data itself (for pointers into
        // a TTL): it refuses this one already.
        assert!(walk(&bad[..]).is_err());
    }

    #[test]
    fn parses_a_query_and_keeps_case() {
        let b = query_bytes("WwW.Example.ORG.", RecordType::AAAA, true);
        let Parsed::Query(q) = parse_query(&b) else {
            panic!("not a query")
        };
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.qtype, TYPE_AAAA);
        assert_eq!(q.name_text(), "WwW.Example.ORG.");
        assert_eq!(q.edns.unwrap().payload, 4096);
        assert_eq!(q.udp_limit(), 1232);
        assert_eq!(q.key().text(), "www.example.org. AAAA");
        assert!(q.key().is_valid());
    }

    #[test]
    fn garbage_is_dropped_and_bad_bodies_get_formerr() {
        assert_eq!(parse_query(&[1, 2, 3]), Parsed::Drop);
        let mut b = query_bytes("a.example.", RecordType::A, false);
        b[2] |= 0x80; // a response
        assert_eq!(parse_query(&b), Parsed::Drop);
        let mut b = query_bytes("a.example.", RecordType::A, false);
        b.truncate(b.len() - 2);
        match parse_query(&b) {
            Parsed::Reject(r) => {
                assert_eq!(r.rcode, RCODE_FORMERR);
                let reply = reject_reply(&r);
                let m = Message::from_vec(&reply).unwrap();
                assert_eq!(m.metadata.id, 0x1234);
                assert_eq!(u16::from(m.metadata.response_code), 1);
            }
            other => panic!("{other:?}"),
        }
        let mut b = query_bytes("a.example.", RecordType::A, false);
        b.push(0);
        assert!(matches!(parse_query(&b), Parsed::Reject(r) if r.rcode == RCODE_FORMERR));
    }

    #[test]
    fn axfr_and_chaos_are_not_served() {
        let b = query_bytes("example.", RecordType::AXFR, false);
        assert!(matches!(parse_query(&b), Parsed::Reject(r) if r.rcode == RCODE_NOTIMP));
    }

    #[test]
    fn names_round_trip_and_zones() {
        let n = name_from_text("NAS.home.arpa").unwrap();
        assert_eq!(name_to_text(&n), "nas.home.arpa.");
        let z = name_from_text("home.arpa.").unwrap();
        assert!(in_zone(&n, &z));
        assert!(in_zone(&z, &z));
        assert!(!in_zone(&name_from_text("xhome.arpa").unwrap(), &z));
        assert!(name_from_text(&"a".repeat(64)).is_err());
    }

    #[test]
    fn pointer_loops_are_rejected() {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&[0xC0, 12]);
        assert!(skip_name(&b, 12).is_err());
    }

    /// Found by fuzz/fuzz_targets/dns_cache.rs: an upstream answer whose
    /// owner name pointed at offset 0 (the ID, 0x00: the root) walked and
    /// was cached; once the ID was patched for a client the pointer read
    /// 0x42.. as a label and the client got a malformed reply.
    #[test]
    fn pointers_into_the_header_are_rejected() {
        let mut m = vec![0x00, 0x50, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01t\x07example\x00\x00\x10\x00\x01");
        m.extend_from_slice(&[0xC0, 0x00, 0, 16, 0, 1, 0, 0, 0, 5, 0, 1, 0]);
        assert_eq!(
            walk(&m),
            Err(WireError::Malformed("compression pointer into the header"))
        );
        // The same answer with the owner pointing at the question walks.
        let at = m.len() - 13;
        m[at + 1] = HEADER_LEN as u8;
        assert!(walk(&m).is_ok());
    }

    /// The same for a pointer to an earlier record's TTL, which the cache
    /// rewrites (clamped, counted down) in every reply.
    #[test]
    fn pointers_into_a_ttl_are_rejected() {
        let mut m = vec![0x00, 0x50, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01t\x07example\x00\x00\x10\x00\x01");
        let first = m.len();
        // TTL 0x00000000: its first byte reads as the root name.
        m.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
        let ttl_at = first + 6;
        m.extend_from_slice(&[0xC0, ttl_at as u8, 0, 16, 0, 1, 0, 0, 0, 9, 0, 1, 0]);
        assert_eq!(
            walk(&m),
            Err(WireError::Malformed("compression pointer into a TTL"))
        );
        let at = m.len() - 12;
        m[at] = first as u8; // the first record's owner name instead
        assert!(walk(&m).is_ok());
    }

    #[test]
    fn names_may_not_read_their_own_or_a_later_records_ttl() {
        // Found by `make fuzz-long` (dns_cache, 2026-12-05): an owner name
        // pointing back into the question, whose labels then ran on
        // through the record's own TTL; once the cache rewrote that TTL,
        // the stored answer no longer walked.
        let mut m = vec![0x00, 0x50, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        // Question: the root, type A; at 14 the bytes `01 00` read as a
        // one-byte label, then at 16 `09` as a nine-byte label running
        // over the record's owner pointer, type, class and TTL.
        m.extend_from_slice(&[0x00, 0x00, 0x01, 0x00, 0x09]);
        let rec = m.len();
        m.extend_from_slice(&[0xC0, 14, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1]);
        assert_eq!(rec, 17);
        assert_eq!(
            walk(&m),
            Err(WireError::Malformed("compression pointer into a TTL"))
        );
        // A first record whose owner points forward at the second
        // record's TTL: refused already (pointers only point back).
        let mut m = vec![0x00, 0x50, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01t\x07example\x00\x00\x01\x00\x01");
        let first = m.len();
        m.extend_from_slice(&[0xC0, 0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 1]);
        let second_ttl = m.len() + 6;
        m[first + 1] = second_ttl as u8;
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 2]);
        assert!(walk(&m).is_err());
        // The same owner pointing at the question's name: fine.
        m[first + 1] = HEADER_LEN as u8;
        assert!(walk(&m).is_ok());
    }

    /// Names inside record data too (issue 14's open item): a CNAME
    /// whose target points at an earlier record's TTL.
    #[test]
    fn pointers_from_record_data_into_a_ttl_are_rejected() {
        let mut m = vec![0x00, 0x50, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01t\x07example\x00\x00\x05\x00\x01");
        let first = m.len();
        // An A record whose TTL 0x00000000 reads as the root name.
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1]);
        let ttl_at = first + 6;
        // A CNAME whose target is a pointer to that TTL.
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xC0, ttl_at as u8]);
        assert_eq!(
            walk(&m),
            Err(WireError::Malformed("compression pointer into a TTL"))
        );
        // Pointing at the question's name instead: fine.
        let at = m.len() - 1;
        m[at] = HEADER_LEN as u8;
        assert!(walk(&m).is_ok());
        // And in an MX and a SOA (second name).
        let mut mx = m.clone();
        let n = mx.len();
        mx.truncate(n - 14);
        mx.extend_from_slice(&[
            0xC0,
            12,
            0,
            15,
            0,
            1,
            0,
            0,
            0,
            9,
            0,
            4,
            0,
            10,
            0xC0,
            ttl_at as u8,
        ]);
        assert!(walk(&mx).is_err());
        let mut soa = m.clone();
        soa.truncate(n - 14);
        soa.extend_from_slice(&[
            0xC0,
            12,
            0,
            6,
            0,
            1,
            0,
            0,
            0,
            9,
            0,
            24,
            0xC0,
            12,
            0xC0,
            ttl_at as u8,
        ]);
        soa.extend_from_slice(&[0; 20]);
        assert!(walk(&soa).is_err());
    }

    /// Bounded property test: random and mutated packets never panic,
    /// and a reply, when there is one, is a well-formed message that
    /// carries the query's ID.
    #[test]
    fn random_and_mutated_packets_never_panic() {
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let bases = [
            query_bytes("www.example.org.", RecordType::A, true),
            query_bytes("x.home.arpa.", RecordType::PTR, false),
        ];
        for i in 0..20_000 {
            let mut b = if i % 3 == 0 {
                let n = (rnd() % 80) as usize;
                (0..n).map(|_| rnd() as u8).collect()
            } else {
                bases[i % 2].clone()
            };
            if !b.is_empty() {
                for _ in 0..(rnd() % 4 + 1) {
                    let at = (rnd() as usize) % b.len();
                    b[at] = rnd() as u8;
                }
            }
            if rnd() % 5 == 0 {
                let cut = (rnd() as usize) % (b.len() + 1);
                b.truncate(cut);
            }
            match parse_query(&b) {
                Parsed::Drop => {}
                Parsed::Reject(r) => {
                    let reply = reject_reply(&r);
                    assert_eq!(&reply[0..2], &b[0..2]);
                    assert!(walk(&reply).is_ok() || r.question.is_none());
                }
                Parsed::Query(q) => {
                    let reply = empty_reply(&q, RCODE_SERVFAIL, false);
                    walk(&reply).unwrap();
                }
            }
            let _ = walk(&b);
        }
    }
}
