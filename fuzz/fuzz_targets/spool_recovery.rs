//! Spool recovery (mail::spool::Spool::open) over mutated segment files.
//! The input is one or more segments separated by `%SEG`; the first
//! byte picks the mode: bit 0 clear, every record's checksum is made
//! right as the segment is walked (so that replay, not only the torn-tail
//! check, sees the mutations); set, the bytes are used as they are.
//!
//! Recovery either refuses (damage it cannot bound to one record: then
//! no file was changed) or opens; every recovered message has one
//! state per recipient and its body extents read back to its size;
//! recovering a second time gives the same queue (the torn tail was cut
//! durably, nothing was lost); and a new message taken after recovery
//! gets an id of its own and survives the next recovery (or, when a record
//! carried the highest id there is, is refused: ids never wrap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::spool::record::{self, MessageFlags, Outcome};
use pocobelle::mail::spool::{Limits, RcptState, Spool, SpoolError, read_extents};
use pocobelle_fuzz::{Scratch, split};

fn limits() -> Limits {
    Limits {
        max_bytes: 64 << 20,
        min_free_bytes: 0,
        segment_bytes: 64 * 1024,
    }
}

/// Recomputes the CRC of each record in the version-1 layout (spools
/// written before versioned records, still read), walking by the declared
/// lengths.
fn fix_checksums(seg: &mut [u8]) {
    const H: usize = record::HEADER_LEN_V1;
    let mut at = 0;
    while at + H <= seg.len() {
        seg[at] = record::MAGIC;
        let len = u32::from_le_bytes(seg[at + 2..at + 6].try_into().unwrap()) as usize;
        let end = at + H + len;
        if len > record::MAX_PAYLOAD || end > seg.len() {
            return;
        }
        let mut crc = record::crc32(0, &seg[at + 1..at + 2]);
        crc = record::crc32(crc, &seg[at + 2..at + 6]);
        crc = record::crc32(crc, &seg[at + H..end]);
        seg[at + 6..at + 10].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// The queue as a comparable value.
type Queue = Vec<(
    u64,
    Vec<RcptState>,
    u64,
    u32,
    u64,
    String,
    bool,
    Vec<String>,
)>;

fn queue(s: &Spool) -> Queue {
    s.messages()
        .map(|m| {
            (
                m.env.id,
                m.rcpts.clone(),
                m.size,
                m.attempts,
                m.next_at,
                m.last_error.clone(),
                m.warned,
                m.env.rcpts.clone(),
            )
        })
        .collect()
}

fn check(s: &Spool) {
    for m in s.messages() {
        assert_eq!(m.rcpts.len(), m.env.rcpts.len());
        assert!(m.durable, "a recovered message is durable");
        assert!(!m.is_finished(), "a finished message stayed queued");
        let sum: u64 = m.extents.iter().map(|e| e.len as u64).sum();
        assert_eq!(sum, m.size);
        let body = read_extents(s.dir(), &m.extents).expect("recovered extents read back");
        assert_eq!(body.len() as u64, m.size);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let scratch = Scratch::new("spool");
    let dir = scratch.0.join("spool");
    std::fs::create_dir_all(&dir).unwrap();
    let mut written = Vec::new();
    for (i, seg) in split(rest, b"%SEG").into_iter().enumerate().take(8) {
        let mut seg = seg.to_vec();
        if mode & 1 == 0 {
            fix_checksums(&mut seg);
        }
        std::fs::write(dir.join(format!("seg-{:016x}.log", i + 1)), &seg).unwrap();
        written.push((i + 1, seg));
    }
    let s = match Spool::open(&dir, limits()) {
        Ok(s) => s,
        Err(_) => {
            // Refused: every segment must be as it was written.
            for (n, seg) in &written {
                let now = std::fs::read(dir.join(format!("seg-{n:016x}.log"))).unwrap();
                assert_eq!(&now, seg, "a refused recovery changed segment {n}");
            }
            return;
        }
    };
    check(&s);
    let first = queue(&s);
    drop(s);
    let mut s = Spool::open(&dir, limits()).expect("second recovery");
    check(&s);
    assert_eq!(queue(&s), first, "recovering twice gave another queue");
    // A new message after recovery.
    let id = match s.begin(
        "a@b.test".into(),
        vec!["u@home.arpa".into()],
        1,
        MessageFlags::default(),
    ) {
        Ok(id) => id,
        // A record carried the highest id there is: refused, not reused.
        Err(SpoolError::IdsExhausted { .. }) => return,
        Err(e) => panic!("begin after recovery: {e}"),
    };
    assert!(first.iter().all(|m| m.0 != id), "id {id:016X} reused");
    s.body(id, b"new body\r\n").unwrap();
    s.end(id).unwrap();
    s.commit().unwrap();
    if let Some(m) = first.first() {
        s.outcome(m.0, 0, Outcome::Delivered).unwrap();
        s.commit().unwrap();
    }
    drop(s);
    let s = Spool::open(&dir, limits()).expect("third recovery");
    check(&s);
    let m = s
        .messages()
        .find(|m| m.env.id == id)
        .expect("the new message survives");
    assert_eq!(read_extents(s.dir(), &m.extents).unwrap(), b"new body\r\n");
});
