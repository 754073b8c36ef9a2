//! Spool recovery: the replay of the segment files at start, and its
//! rules over damaged bytes.
//!
//! `recover` reads every segment, oldest first, replays its records
//! into the message table (see `replay`), drops messages without an end
//! record (never acknowledged), and cuts a torn tail of the newest
//! segment; that cut is the only change it ever makes to a segment, and
//! when damage cannot be bounded it changes nothing and refuses.
//!
//! The rules over damaged bytes are pure (bytes in, decisions out; no
//! file access):
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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::Path;

use super::index::{Message, Open, RcptState};
use super::log::{Segment, io_err, seg_name};
use super::record::{self, HEADER_LEN_V1, MAGIC, MAGIC_FRAMED, MAX_PAYLOAD, MAX_RECORD};
use super::record::{DecodeError, Record};
use super::{SpoolError, Stats};

/// Most bytes one resynchronisation may checksum.
pub const SCAN_BUDGET: usize = 64 << 20;

/// Most replays of the segments at one recovery (see [`recover`]): each
/// one after the first follows damage and sets aside at least one
/// segment, and reads the rest again. Past it the last replay's decisions
/// stand (the next start may then decide again). Above the 8 segments
/// the fuzz target writes, so its runs never meet the bound.
pub const MAX_REPLAYS: usize = 16;

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

/// What the segment files held: the queue they describe.
pub(super) struct Recovered {
    pub(super) segments: BTreeMap<u64, Segment>,
    /// Queued (ended, unfinished) messages.
    pub(super) msgs: BTreeMap<u64, Message>,
    /// The highest message id seen.
    pub(super) last_id: u64,
    pub(super) stats: Stats,
    /// The sequence number of the next segment.
    pub(super) next_seq: u64,
}

/// Replays the spool in `dir` (which exists).
///
/// With damage, what the records decide about a message can depend on
/// records in a segment that holds nothing queued any more: a damaged
/// copy of the message's records, or records that finished it before a
/// later copy of its begin. Such a segment is removed as soon as the
/// spool opens (oldest first, like every segment with nothing live), and
/// the next recovery, without it, decided otherwise: a finished message
/// came back, or a queued one was dropped (found by `make fuzz-long`,
/// 2026-12-05). So the decisions are made without them: after a replay
/// that saw damage, the oldest segments that it leaves with nothing live
/// are set aside and the rest is replayed again, until no segment at the
/// front is left empty; the set-aside segments are then removed like any
/// finished one. And a message that stays queued keeps alive every
/// segment where a record of its id was read after the damage began
/// (see `Replay::touched`), so what bore on it stays while it does.
pub(super) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let hex = n.strip_prefix("seg-")?.strip_suffix(".log")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect();
    seqs.sort_unstable();
    let next_seq = seqs.last().map_or(1, |s| s + 1);
    let mut set_aside: BTreeMap<u64, Segment> = BTreeMap::new();
    let mut torn_records = 0;
    // The damage the first pass skipped covers every segment, the
    // set-aside ones included.
    let mut skipped_bytes = None;
    let mut last_id = 0;
    let mut from = 0;
    let mut replay = 0;
    loop {
        replay += 1;
        let (mut pass, damaged) = replay_all(dir, &seqs[from..], next_seq)?;
        torn_records += pass.stats.torn_records;
        let skipped = *skipped_bytes.get_or_insert(pass.stats.skipped_bytes);
        // Ids are never reused: the highest one any record ever carried
        // counts, set-aside segments included.
        last_id = last_id.max(pass.last_id);
        let empty = if damaged {
            pass.segments
                .values()
                .take_while(|s| s.live.is_empty())
                .count()
        } else {
            // Without damage the records of a finished message never
            // outlive the record that finished it (segments go oldest
            // first), so removing empty segments changes no decision.
            0
        };
        if empty > 0 && replay == MAX_REPLAYS {
            log::warn!(
                "spool: {MAX_REPLAYS} replays after damage and segment(s) are still left \
                 with nothing queued; keeping this replay's decisions"
            );
        }
        if empty == 0 || replay == MAX_REPLAYS {
            pass.stats.torn_records = torn_records;
            pass.stats.skipped_bytes = skipped;
            pass.last_id = last_id;
            // The set-aside segments come first and hold nothing live:
            // the first collection after opening removes them.
            pass.segments.append(&mut set_aside);
            return Ok(pass);
        }
        let aside = &seqs[from..from + empty];
        log::warn!(
            "spool: after damage, segment(s) {:016x}..{:016x} hold nothing queued; \
             deciding again without them (they are removed)",
            aside[0],
            aside[aside.len() - 1]
        );
        for s in aside {
            if let Some(seg) = pass.segments.remove(s) {
                set_aside.insert(*s, seg);
            }
        }
        from += empty;
    }
}

/// One replay of segments `seqs` (oldest first, a suffix of the spool's;
/// the newest one, before `next_seq`, has its torn tail cut), and whether
/// it saw damage (then its decisions may depend on which segments it
/// read).
fn replay_all(dir: &Path, seqs: &[u64], next_seq: u64) -> Result<(Recovered, bool), SpoolError> {
    let mut segments = BTreeMap::new();
    let mut r = Replay::default();
    let mut stats = Stats::default();
    for &seq in seqs {
        let path = dir.join(seg_name(seq));
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(&path))?;
        let newest = seq + 1 == next_seq;
        let mut seg = Segment::default();
        let mut at = 0usize;
        let mut cut = None;
        while at < data.len() {
            let e = match record::decode(&data[at..]) {
                Ok(d) => {
                    let payload_at = (at + d.payload_at) as u64;
                    r.replay(seq, payload_at, d.record, &mut seg);
                    at += d.len;
                    continue;
                }
                Err(e) => e,
            };
            if let Some(f) = e.frame() {
                // A sound header: skip exactly this record.
                stats.skipped_bytes += f.len as u64;
                r.damaged_frame(&path, seq, at, &e, f);
                at += f.len;
                continue;
            }
            match verdict(&data, at, newest) {
                Verdict::Skip(next) => {
                    stats.skipped_bytes += (next - at) as u64;
                    r.damaged_bytes(&path, at, next, &e);
                    at = next;
                }
                Verdict::CutTail => {
                    stats.torn_records += 1;
                    log_torn(&path, at, &e, data.len());
                    cut = Some(at);
                    break;
                }
                Verdict::Unbounded { len } => {
                    // The service logs it and exits non-zero.
                    return Err(SpoolError::Damaged {
                        path: path.clone(),
                        offset: at as u64,
                        len: len as u64,
                    });
                }
            }
        }
        if let Some(at) = cut {
            // Only the tail of the newest segment can be torn by a
            // crash; cut it so that it is not read again.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(at as u64).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        seg.bytes = cut.unwrap_or(data.len()) as u64;
        segments.insert(seq, seg);
    }
    let Replay {
        mut open,
        mut msgs,
        last_id,
        damage,
        damaged,
        touched,
        ..
    } = r;
    // Messages without an End record were never acknowledged (or,
    // after damage, their End was in it).
    for (id, o) in std::mem::take(&mut open) {
        if damage.is_empty() {
            log::info!(
                "spool: dropping unacknowledged message {id:016X} ({} bytes)",
                o.size
            );
        } else {
            log::warn!(
                "spool: dropping message {id:016X} ({} bytes): it has no end record \
                 (never acknowledged, or its end record was damaged)",
                o.size
            );
        }
        for s in o.segs {
            if let Some(seg) = segments.get_mut(&s) {
                seg.live.remove(&id);
            }
        }
    }
    stats.lost_messages = damage.len() as u64;
    if stats.skipped_bytes > 0 || !damage.is_empty() {
        let shown: Vec<String> = damage
            .iter()
            .take(LOGGED_IDS)
            .map(|id| format!("{id:016X}"))
            .collect();
        log::error!(
            "spool: recovery skipped {} damaged bytes; {} acknowledged message(s) lost: {}{}",
            stats.skipped_bytes,
            damage.len(),
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(" ")
            },
            if damage.len() > LOGGED_IDS {
                " ..."
            } else {
                ""
            }
        );
    }
    // Finished messages release their segments.
    let finished: Vec<u64> = msgs
        .iter()
        .filter(|(_, m)| m.is_finished())
        .map(|(id, _)| *id)
        .collect();
    for id in finished {
        if let Some(m) = msgs.remove(&id) {
            for s in m.segs {
                if let Some(seg) = segments.get_mut(&s) {
                    seg.live.remove(&id);
                }
            }
        }
    }
    // Records about messages no longer present keep nothing alive.
    for seg in segments.values_mut() {
        seg.live.retain(|id| msgs.contains_key(id));
    }
    // A queued message keeps every segment that bore on it after damage.
    for (id, seq) in touched {
        if msgs.contains_key(&id)
            && let Some(seg) = segments.get_mut(&seq)
        {
            seg.live.insert(id);
        }
    }
    // And releases, when it finishes, every segment that keeps it: also
    // one that only held a dropped copy of its records (an unended begin
    // before the begin it was replayed from), which was otherwise kept
    // for good, and every segment after it with it.
    for (&seq, seg) in &segments {
        for id in &seg.live {
            if let Some(m) = msgs.get_mut(id) {
                m.segs.insert(seq);
            }
        }
    }
    // Skipped bytes set `damaged` too.
    let rec = Recovered {
        segments,
        msgs,
        last_id,
        stats,
        next_seq,
    };
    Ok((rec, damaged))
}

fn log_torn(path: &Path, at: usize, e: &DecodeError, len: usize) {
    log::warn!(
        "spool: {}: {e} at offset {at}; dropping the {} bytes after it",
        path.display(),
        len - at
    );
}

/// At most this many message ids in recovery's summary line.
const LOGGED_IDS: usize = 32;

/// Replay state: the queue as the records so far describe it.
#[derive(Default)]
struct Replay {
    open: BTreeMap<u64, Open>,
    msgs: BTreeMap<u64, Message>,
    last_id: u64,
    /// Messages dropped because a record of theirs is damaged: their
    /// later records are ignored, so that a record never touches another
    /// message, until a begin record for the id replays the message again
    /// (see `replay`). Bounded by the records read.
    lost: BTreeSet<u64>,
    /// Acknowledged (or possibly acknowledged) messages lost to damage.
    damage: BTreeSet<u64>,
    /// Damage was seen before this point of the replay.
    damaged: bool,
    /// Every message id a begin record was replayed for. Ids are never
    /// reused (the writer counts up from the highest id recovered), so a
    /// second begin record for one of them is damage: repeated bytes.
    /// Bounded by the records read.
    begun: BTreeSet<u64>,
    /// Ids whose second begin record was ignored: their later body and
    /// end records belong to the copy and are ignored too, so the message
    /// queued first is neither doubled nor cut.
    doubled: BTreeSet<u64>,
    /// (message id, segment) for every record read once damage was seen,
    /// applied or not, and every damaged record that names its message: a
    /// message still queued at the end keeps these segments. Bounded by
    /// the records read.
    touched: BTreeSet<(u64, u64)>,
}

impl Replay {
    /// A record with a sound header that does not decode: its message is
    /// dropped, unless it only tracked delivery.
    fn damaged_frame(
        &mut self,
        path: &Path,
        seq: u64,
        at: usize,
        e: &DecodeError,
        f: record::Frame,
    ) {
        self.damaged = true;
        let kind = record::kind_name(f.kind);
        let Some(id) = f.id else {
            // A version-1 record: its payload is all that names the
            // message; the message falls out when its records do not add
            // up (see `replay`).
            log::error!(
                "spool: {}: {e} at offset {at}: skipped its {} bytes ({kind} record)",
                path.display(),
                f.len
            );
            return;
        };
        self.last_id = self.last_id.max(id);
        self.touched.insert((id, seq));
        if record::is_delivery_state(f.kind) && record::is_known_version(f.version) {
            log::warn!(
                "spool: {}: {e} at offset {at}: skipped its {} bytes; message {id:016X} \
                 is kept (a {kind} record only; it may be delivered or warned about again)",
                path.display(),
                f.len
            );
            return;
        }
        log::error!(
            "spool: {}: {e} at offset {at}: skipped its {} bytes; message {id:016X} is dropped",
            path.display(),
            f.len
        );
        self.lose(id);
    }

    /// Bytes without a sound header, up to the next record.
    fn damaged_bytes(&mut self, path: &Path, at: usize, next: usize, e: &DecodeError) {
        self.damaged = true;
        log::error!(
            "spool: {}: {e} at offset {at}: skipped {} bytes, offsets {at}..{next}; \
             a message with a begin, body or end record there is dropped",
            path.display(),
            next - at
        );
    }

    fn lose(&mut self, id: u64) {
        self.damaged = true;
        if !self.lost.insert(id) {
            return;
        }
        let finished = self.msgs.get(&id).is_some_and(Message::is_finished);
        self.open.remove(&id);
        self.msgs.remove(&id);
        if !finished {
            self.damage.insert(id);
        }
    }

    fn replay(&mut self, seq: u64, payload_at: u64, rec: Record, seg: &mut Segment) {
        let id = rec.id();
        self.last_id = self.last_id.max(id);
        if self.damaged {
            self.touched.insert((id, seq));
        }
        // A begin record for a message dropped earlier in the replay
        // starts it again. A message's records are written in order and
        // ids are never reused, so what dropped it (a stray end record
        // after damage, a damaged copy in an older segment) was not this
        // begin's message, or was a copy of its bytes; the message stands
        // if its own records add up, and is dropped again if they do not.
        // Keeping it dropped was not even stable: the older segment that
        // held the cause, with nothing live left, was removed, and the
        // message came back at the next recovery (found by `make
        // fuzz-long`, 2026-12-05).
        let revived = matches!(rec, Record::Begin(_))
            && !self.open.contains_key(&id)
            && self.lost.remove(&id);
        if revived {
            log::warn!(
                "spool: message {id:016X}: a begin record after the message was dropped; \
                 replayed again from it"
            );
            self.damage.remove(&id);
        }
        if self.lost.contains(&id) {
            return;
        }
        if let Record::Begin(_) = rec
            && !self.begun.insert(id)
            && !revived
        {
            self.damaged = true;
            if self.open.remove(&id).is_some() {
                // One of the two is not the message's (ids are never
                // reused): the earlier, unended one is dropped with what
                // it gathered, and the message is replayed from this one,
                // standing only if its own records add up. Dropping the
                // message instead was not stable: when the earlier copy
                // sat in an older segment with nothing else live, that
                // segment was removed and the next recovery kept the
                // message (found by `make fuzz-long`, 2026-12-05).
                log::error!(
                    "spool: message {id:016X}: a second begin record before its end; \
                     replayed from the second"
                );
                replay(seq, payload_at, rec, &mut self.open, &mut self.msgs, seg);
            } else {
                log::error!(
                    "spool: message {id:016X}: a second begin record (repeated bytes); \
                     it and the records of that copy are ignored"
                );
                self.doubled.insert(id);
            }
            return;
        }
        if self.doubled.contains(&id)
            && matches!(
                rec,
                Record::Body { .. } | Record::Head { .. } | Record::End { .. }
            )
        {
            return;
        }
        // An end record without its begin after damage: the message was
        // acknowledged and its begin or a body record was in the damaged
        // bytes. (Body records alone, without their begin, are also left
        // by a message aborted before a roll; they are ignored below.)
        if self.damaged && matches!(rec, Record::End { .. }) && !self.open.contains_key(&id) {
            log::error!(
                "spool: message {id:016X}: end record after damage without its begin record; dropped"
            );
            self.lose(id);
            return;
        }
        if let Record::End { size, .. } = rec
            && self.open.get(&id).is_some_and(|o| o.size != size)
        {
            log::warn!("spool: message {id:016X}: body length mismatch; dropped");
            self.lose(id);
            return;
        }
        replay(seq, payload_at, rec, &mut self.open, &mut self.msgs, seg);
    }
}

fn replay(
    seq: u64,
    payload_at: u64,
    rec: Record,
    open: &mut BTreeMap<u64, Open>,
    msgs: &mut BTreeMap<u64, Message>,
    seg: &mut Segment,
) {
    match rec {
        Record::Begin(env) => {
            let id = env.id;
            seg.live.insert(id);
            open.insert(id, Open::new(env, seq));
        }
        Record::Body { id, data } => {
            if let Some(o) = open.get_mut(&id) {
                seg.live.insert(id);
                o.add(seq, payload_at + 8, data.len(), false);
            }
        }
        Record::Head { id, data } => {
            if let Some(o) = open.get_mut(&id) {
                seg.live.insert(id);
                o.add(seq, payload_at + 8, data.len(), true);
            }
        }
        Record::End { id, size } => {
            if let Some(mut o) = open.remove(&id) {
                if o.size != size {
                    return;
                }
                seg.live.insert(id);
                o.segs.insert(seq);
                let n = o.env.rcpts.len();
                msgs.insert(
                    id,
                    Message {
                        env: o.env,
                        rcpts: vec![RcptState::Pending; n],
                        extents: o.extents,
                        size,
                        attempts: 0,
                        next_at: 0,
                        last_error: String::new(),
                        warned: false,
                        segs: o.segs,
                        durable: true,
                    },
                );
            }
        }
        Record::Rcpt { id, index, outcome } => {
            if let Some(m) = msgs.get_mut(&id) {
                seg.live.insert(id);
                m.segs.insert(seq);
                if let Some(r) = m.rcpts.get_mut(index as usize) {
                    *r = RcptState::Done(outcome);
                }
            }
        }
        Record::Retry {
            id,
            attempts,
            next_at,
            error,
        } => {
            if let Some(m) = msgs.get_mut(&id) {
                seg.live.insert(id);
                m.segs.insert(seq);
                m.attempts = attempts;
                m.next_at = next_at;
                m.last_error = error;
            }
        }
        Record::Delete { id } => {
            if let Some(m) = msgs.remove(&id) {
                let _ = m;
            }
        }
        Record::Warned { id } => {
            if let Some(m) = msgs.get_mut(&id) {
                seg.live.insert(id);
                m.segs.insert(seq);
                m.warned = true;
            }
        }
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
