//! The durable spool: a log of segment files (`seg-<16 hex>.log`) under
//! `<data_dir>/spool`, holding self-checking records (see `record`).
//! Messages from concurrent sessions are appended as they stream in;
//! [`Spool::commit`] writes the buffered tail and fsyncs once for all of
//! them (group commit). Delivery outcomes are appended the same way, never
//! rewritten in place. A segment is deleted, oldest first, once every
//! message with a record in it is finished; recovery replays the
//! segments, skips damaged records (losing at most the message they belong
//! to, see `recovery`), cuts a torn tail and rebuilds the queue; it
//! refuses to start rather than drop damage it cannot bound. This is the
//! only code that writes spool files; it never talks to the network, and
//! never rewrites a segment beyond cutting a torn tail.

#[cfg(test)]
mod damage_tests;
pub mod record;
pub mod recovery;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::record::{DecodeError, MessageFlags, Outcome, Record, StoredEnvelope};
use self::recovery::Verdict;
use super::queue::{BodyReader, Queue, QueueEntry};

/// Buffered bytes are written to the segment once the buffer holds this
/// much, so flash sees large sequential writes.
pub const WRITE_BUFFER: usize = 256 * 1024;

/// At most this many messages may be open (receiving DATA) at once; the
/// listener's session limit keeps it far lower.
pub const MAX_OPEN_MESSAGES: usize = 256;

/// At most this many queued messages; past it, new mail gets 452.
pub const MAX_MESSAGES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation on the spool failed.
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The spool is at its configured size (or message count) limit.
    #[error("spool is full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    /// The data partition is below its free-space floor.
    #[error("data partition has {free} bytes free, under the {floor}-byte floor")]
    LowSpace { free: u64, floor: u64 },
    /// Too many messages are being received at once.
    #[error("too many messages open at once")]
    TooManyOpen,
    /// An operation named a message the spool does not know.
    #[error("no message {0:016X} in the spool")]
    NoSuchMessage(u64),
    /// The writer thread is gone (the service is stopping).
    #[error("the spool writer has stopped")]
    WriterGone,
    /// Recovery found damage it cannot bound to one record: skipping it
    /// could drop several acknowledged messages, so the spool is not
    /// opened and nothing is cut.
    #[error(
        "spool {path}: {len} damaged bytes at offset {offset} span more than one record; \
         refusing to start rather than drop acknowledged mail (nothing was changed; \
         copy the file for inspection, then move it out of the spool directory to start without it)"
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// Where a piece of a body lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub seg: u64,
    pub offset: u64,
    pub len: u32,
}

/// Delivery state of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    Pending,
    Done(Outcome),
}

/// A queued (acknowledged) message.
#[derive(Debug, Clone)]
pub struct Message {
    pub env: StoredEnvelope,
    pub rcpts: Vec<RcptState>,
    pub extents: Vec<Extent>,
    pub size: u64,
    pub attempts: u32,
    pub next_at: u64,
    pub last_error: String,
    /// The sender got its "delayed" DSN.
    pub warned: bool,
    segs: BTreeSet<u64>,
    /// False from its End until the commit that makes it durable: until
    /// then its body may still be in the write buffer, and it is not
    /// handed to delivery.
    pub durable: bool,
}

impl Message {
    pub fn pending(&self) -> impl Iterator<Item = (usize, &str)> {
        self.rcpts
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == RcptState::Pending)
            .map(|(i, _)| (i, self.env.rcpts[i].as_str()))
    }

    pub fn is_finished(&self) -> bool {
        self.rcpts.iter().all(|s| *s != RcptState::Pending)
    }
}

#[derive(Debug)]
struct Open {
    env: StoredEnvelope,
    extents: Vec<Extent>,
    size: u64,
    segs: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    live: BTreeSet<u64>,
}

struct Active {
    seq: u64,
    file: File,
    /// Bytes already written to the file (not necessarily synced).
    written: u64,
}

/// Counters for the service's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub fsyncs: u64,
    pub write_calls: u64,
    pub bytes_written: u64,
    /// Torn tails cut at recovery.
    pub torn_records: u64,
    /// Damaged bytes skipped at recovery (torn tails not counted).
    pub skipped_bytes: u64,
    /// Acknowledged messages dropped at recovery because a record of
    /// theirs was damaged.
    pub lost_messages: u64,
}

/// Limits of one spool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub segment_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    active: Active,
    buf: Vec<u8>,
    segments: BTreeMap<u64, Segment>,
    open: BTreeMap<u64, Open>,
    msgs: BTreeMap<u64, Message>,
    last_id: u64,
    /// Open messages dropped because the spool filled up while their
    /// body streamed in; their End gets `Full` (452), not a local error.
    /// Bounded by [`MAX_OPEN_MESSAGES`].
    refused: BTreeSet<u64>,
    /// Messages ended since the last successful commit, which marks them
    /// durable; a subset of `msgs` (bounded by [`MAX_MESSAGES`]).
    fresh: Vec<u64>,
    pub stats: Stats,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn seg_name(seq: u64) -> String {
    format!("seg-{seq:016x}.log")
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, replays it and starts
    /// a fresh active segment.
    pub fn open(dir: &Path, limits: Limits) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
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
        let mut segments = BTreeMap::new();
        let mut r = Replay::default();
        let mut stats = Stats::default();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(seg_name(seq));
            let mut data = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io_err(&path))?;
            let newest = i + 1 == seqs.len();
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
                    r.damaged_frame(&path, at, &e, f);
                    at += f.len;
                    continue;
                }
                match recovery::verdict(&data, at, newest) {
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
        let seq = seqs.last().map_or(1, |s| s + 1);
        let active = Self::create_segment(dir, seq)?;
        segments.insert(seq, Segment::default());
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            active,
            buf: Vec::with_capacity(WRITE_BUFFER),
            segments,
            open: BTreeMap::new(),
            msgs,
            last_id,
            refused: BTreeSet::new(),
            fresh: Vec::new(),
            stats,
        };
        spool.collect_garbage()?;
        Ok(spool)
    }

    fn create_segment(dir: &Path, seq: u64) -> Result<Active, SpoolError> {
        let path = dir.join(seg_name(seq));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        fsync_dir(dir)?;
        Ok(Active {
            seq,
            file,
            written: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(seg_name(seq))
    }

    /// Bytes the spool occupies on disk, counting unwritten buffer.
    pub fn used_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum::<u64>() + self.buf.len() as u64
    }

    /// Messages begun and not yet ended or aborted.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.msgs.values()
    }

    #[cfg(test)]
    pub fn message(&self, id: u64) -> Option<&Message> {
        self.msgs.get(&id)
    }

    /// Checks that `extra` more bytes fit under the limits.
    pub fn admit(&self, extra: u64) -> Result<(), SpoolError> {
        let used = self.used_bytes();
        if used + extra > self.limits.max_bytes || self.msgs.len() >= MAX_MESSAGES {
            return Err(SpoolError::Full {
                used,
                max: self.limits.max_bytes,
            });
        }
        if self.limits.min_free_bytes > 0
            && let Ok(st) = nix::sys::statvfs::statvfs(&self.dir)
        {
            // 32 bits on the ARM boards, 64 on the build host.
            #[allow(clippy::unnecessary_cast)]
            let free = st.blocks_available() as u64 * st.fragment_size() as u64;
            if free < self.limits.min_free_bytes + extra {
                return Err(SpoolError::LowSpace {
                    free,
                    floor: self.limits.min_free_bytes,
                });
            }
        }
        Ok(())
    }

    /// Appends a record to the buffer; returns (segment, file offset of
    /// its payload).
    fn append(&mut self, rec: &Record) -> Result<(u64, u64), SpoolError> {
        if self.active.written + self.buf.len() as u64 >= self.limits.segment_bytes {
            self.roll()?;
        }
        let base = self.active.written + self.buf.len() as u64;
        let start = self.buf.len();
        let at = record::encode(rec, &mut self.buf);
        let seq = self.active.seq;
        let grown = (self.buf.len() - start) as u64;
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.bytes += grown;
        }
        if self.buf.len() >= WRITE_BUFFER {
            self.write_out()?;
        }
        Ok((seq, base + (at - start) as u64))
    }

    fn write_out(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.segment_path(self.active.seq);
        self.active
            .file
            .write_all(&self.buf)
            .map_err(io_err(&path))?;
        self.stats.write_calls += 1;
        self.stats.bytes_written += self.buf.len() as u64;
        self.active.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything appended so far durable: one write, one fsync.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        self.write_out()?;
        let path = self.segment_path(self.active.seq);
        self.active.file.sync_data().map_err(io_err(&path))?;
        self.stats.fsyncs += 1;
        for id in self.fresh.drain(..) {
            if let Some(m) = self.msgs.get_mut(&id) {
                m.durable = true;
            }
        }
        Ok(())
    }

    /// Closes the active segment (durably) and starts the next one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.commit()?;
        let seq = self.active.seq + 1;
        self.active = Self::create_segment(&self.dir, seq)?;
        self.segments.insert(seq, Segment::default());
        Ok(())
    }

    fn touch(&mut self, id: u64, seq: u64) {
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.live.insert(id);
        }
    }

    /// Starts a message; returns its id. `flags`: the ESMTP parameters it
    /// arrived with, recorded to be passed on at delivery.
    pub fn begin(
        &mut self,
        from: String,
        rcpts: Vec<String>,
        received: u64,
        flags: MessageFlags,
    ) -> Result<u64, SpoolError> {
        if self.open.len() >= MAX_OPEN_MESSAGES {
            return Err(SpoolError::TooManyOpen);
        }
        self.admit(0)?;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let id = (self.last_id + 1).max(micros);
        self.last_id = id;
        let env = StoredEnvelope {
            id,
            received,
            from,
            rcpts,
            flags,
        };
        let (seq, _) = self.append(&Record::Begin(env.clone()))?;
        self.touch(id, seq);
        self.open.insert(
            id,
            Open {
                env,
                extents: Vec::new(),
                size: 0,
                segs: BTreeSet::from([seq]),
            },
        );
        Ok(id)
    }

    /// Appends a body chunk of an open message.
    pub fn body(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
        if !self.open.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        if let Err(e) = self.admit(data.len() as u64) {
            self.abort(id);
            if self.refused.len() < MAX_OPEN_MESSAGES {
                self.refused.insert(id);
            }
            return Err(e);
        }
        let (seq, at) = self.append(&Record::Body {
            id,
            data: data.to_vec(),
        })?;
        self.touch(id, seq);
        let o = self
            .open
            .get_mut(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?;
        o.extents.push(Extent {
            seg: seq,
            offset: at + 8,
            len: data.len() as u32,
        });
        o.size += data.len() as u64;
        o.segs.insert(seq);
        Ok(())
    }

    /// Ends a message. It is acknowledged once the next [`commit`]
    /// returns.
    ///
    /// [`commit`]: Spool::commit
    pub fn end(&mut self, id: u64) -> Result<(), SpoolError> {
        if self.refused.remove(&id) {
            return Err(SpoolError::Full {
                used: self.used_bytes(),
                max: self.limits.max_bytes,
            });
        }
        let size = self
            .open
            .get(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?
            .size;
        let (seq, _) = self.append(&Record::End { id, size })?;
        let Some(mut o) = self.open.remove(&id) else {
            return Err(SpoolError::NoSuchMessage(id));
        };
        self.touch(id, seq);
        o.segs.insert(seq);
        let n = o.env.rcpts.len();
        self.msgs.insert(
            id,
            Message {
                next_at: 0,
                env: o.env,
                rcpts: vec![RcptState::Pending; n],
                extents: o.extents,
                size,
                attempts: 0,
                last_error: String::new(),
                warned: false,
                segs: o.segs,
                durable: false,
            },
        );
        self.fresh.push(id);
        Ok(())
    }

    /// Forgets an open message (the session failed or the message was
    /// refused). Its records stay in the log, without an End.
    pub fn abort(&mut self, id: u64) {
        if let Some(o) = self.open.remove(&id) {
            for s in o.segs {
                if let Some(seg) = self.segments.get_mut(&s) {
                    seg.live.remove(&id);
                }
            }
        }
    }

    /// Records a recipient's final outcome.
    pub fn outcome(&mut self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError> {
        if !self.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        let (seq, _) = self.append(&Record::Rcpt {
            id,
            index: index as u32,
            outcome,
        })?;
        self.touch(id, seq);
        if let Some(m) = self.msgs.get_mut(&id) {
            m.segs.insert(seq);
            if let Some(r) = m.rcpts.get_mut(index) {
                *r = RcptState::Done(outcome);
            }
        }
        self.finish_if_done(id);
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn retry(&mut self, id: u64, next_at: u64, error: &str) -> Result<(), SpoolError> {
        let attempts = self
            .msgs
            .get(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?
            .attempts
            + 1;
        let error: String = error.chars().take(200).collect();
        let (seq, _) = self.append(&Record::Retry {
            id,
            attempts,
            next_at,
            error: error.clone(),
        })?;
        self.touch(id, seq);
        if let Some(m) = self.msgs.get_mut(&id) {
            m.segs.insert(seq);
            m.attempts = attempts;
            m.next_at = next_at;
            m.last_error = error;
        }
        Ok(())
    }

    /// Records that the sender was sent the "delayed" DSN (once per message).
    pub fn warned(&mut self, id: u64) -> Result<(), SpoolError> {
        if !self.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        let (seq, _) = self.append(&Record::Warned { id })?;
        self.touch(id, seq);
        if let Some(m) = self.msgs.get_mut(&id) {
            m.segs.insert(seq);
            m.warned = true;
        }
        Ok(())
    }

    /// Removes a message (operator's `mail delete`, or expiry).
    pub fn delete(&mut self, id: u64) -> Result<(), SpoolError> {
        if !self.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        self.append(&Record::Delete { id })?;
        if let Some(m) = self.msgs.remove(&id) {
            self.release(id, &m.segs);
        }
        Ok(())
    }

    /// Makes every waiting message due now (`mail flush`, ETRN).
    pub fn flush_all(&mut self) {
        for m in self.msgs.values_mut() {
            m.next_at = 0;
        }
    }

    fn finish_if_done(&mut self, id: u64) {
        if self.msgs.get(&id).is_some_and(Message::is_finished)
            && let Some(m) = self.msgs.remove(&id)
        {
            self.release(id, &m.segs);
        }
    }

    fn release(&mut self, id: u64, segs: &BTreeSet<u64>) {
        for s in segs {
            if let Some(seg) = self.segments.get_mut(s) {
                seg.live.remove(&id);
            }
        }
        // The record that finished the message sits in the active
        // segment, which stays until it is rolled and everything older is
        // gone.
    }

    /// Deletes, oldest first, segments in which every message is
    /// finished. Call after a commit, so that the records that finished
    /// them are durable first.
    pub fn collect_garbage(&mut self) -> Result<usize, SpoolError> {
        let mut removed = 0;
        while let Some((&seq, seg)) = self.segments.iter().next() {
            if seq == self.active.seq || !seg.live.is_empty() {
                break;
            }
            let path = self.segment_path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.segments.remove(&seq);
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&self.dir)?;
        }
        // A fully finished active segment that has grown large is rolled,
        // so that it can go too.
        Ok(removed)
    }

    /// Reads a queued message's body.
    #[cfg(test)]
    pub fn read_body(&self, id: u64) -> Result<Vec<u8>, SpoolError> {
        let m = self.msgs.get(&id).ok_or(SpoolError::NoSuchMessage(id))?;
        read_extents(&self.dir, &m.extents)
    }

    pub fn unix_now() -> u64 {
        now_unix()
    }
}

/// Reads body extents from segment files (delivery does this without the
/// writer). Bounded by the message size limit.
pub fn read_extents(dir: &Path, extents: &[Extent]) -> Result<Vec<u8>, SpoolError> {
    let mut out = Vec::new();
    let mut file: Option<(u64, File)> = None;
    for e in extents {
        if file.as_ref().is_none_or(|(s, _)| *s != e.seg) {
            let path = dir.join(seg_name(e.seg));
            file = Some((e.seg, File::open(&path).map_err(io_err(&path))?));
        }
        let Some((_, f)) = &file else { continue };
        let start = out.len();
        out.resize(start + e.len as usize, 0);
        f.read_exact_at(&mut out[start..], e.offset)
            .map_err(io_err(&dir.join(seg_name(e.seg))))?;
    }
    Ok(out)
}

/// Reads bodies from the segment files of one spool directory.
pub struct SegmentReader {
    dir: PathBuf,
}

impl BodyReader for SegmentReader {
    fn read(&self, extents: &[Extent]) -> Result<Vec<u8>, SpoolError> {
        read_extents(&self.dir, extents)
    }
}

/// The segment log as a [`Queue`]: the inherent methods above.
impl Queue for Spool {
    fn begin(
        &mut self,
        from: String,
        rcpts: Vec<String>,
        received: u64,
        flags: MessageFlags,
    ) -> Result<u64, SpoolError> {
        Spool::begin(self, from, rcpts, received, flags)
    }

    fn body(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
        Spool::body(self, id, data)
    }

    fn end(&mut self, id: u64) -> Result<(), SpoolError> {
        Spool::end(self, id)
    }

    fn abort(&mut self, id: u64) {
        Spool::abort(self, id)
    }

    fn commit(&mut self) -> Result<(), SpoolError> {
        Spool::commit(self)
    }

    fn outcome(&mut self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError> {
        Spool::outcome(self, id, index, outcome)
    }

    fn retry(&mut self, id: u64, next_at: u64, error: &str) -> Result<(), SpoolError> {
        Spool::retry(self, id, next_at, error)
    }

    fn warned(&mut self, id: u64) -> Result<(), SpoolError> {
        Spool::warned(self, id)
    }

    fn delete(&mut self, id: u64) -> Result<(), SpoolError> {
        Spool::delete(self, id)
    }

    fn flush_all(&mut self) {
        Spool::flush_all(self)
    }

    /// Only durable messages: a body not yet committed may not be in the
    /// segment file yet.
    fn list(&self) -> Vec<QueueEntry> {
        self.messages()
            .filter(|m| m.durable)
            .map(|m| QueueEntry {
                id: m.env.id,
                from: m.env.from.clone(),
                pending: m
                    .pending()
                    .map(|(i, a)| (i as u32, a.to_string()))
                    .collect(),
                size: m.size,
                received: m.env.received,
                attempts: m.attempts,
                next_at: m.next_at,
                last_error: m.last_error.clone(),
                warned: m.warned,
                flags: m.env.flags,
                extents: m.extents.clone(),
            })
            .collect()
    }

    fn summary(&self) -> (u64, u64) {
        self.messages()
            .filter(|m| m.durable)
            .fold((0u64, 0u64), |(n, b), m| (n + 1, b + m.size))
    }

    fn open_count(&self) -> usize {
        Spool::open_count(self)
    }

    fn is_full(&self) -> bool {
        self.admit(0).is_err()
    }

    fn collect_garbage(&mut self) -> Result<usize, SpoolError> {
        Spool::collect_garbage(self)
    }

    fn reader(&self) -> Arc<dyn BodyReader> {
        Arc::new(SegmentReader {
            dir: self.dir.clone(),
        })
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
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
    /// later records are ignored, so they cannot come back, and a record
    /// never touches another message. Bounded by the records read.
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
}

impl Replay {
    /// A record with a sound header that does not decode: its message is
    /// dropped, unless it only tracked delivery.
    fn damaged_frame(&mut self, path: &Path, at: usize, e: &DecodeError, f: record::Frame) {
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
        if self.lost.contains(&id) {
            return;
        }
        if let Record::Begin(_) = rec
            && !self.begun.insert(id)
        {
            self.damaged = true;
            if self.open.contains_key(&id) {
                // Its body is no longer known to be one message's.
                log::error!(
                    "spool: message {id:016X}: a second begin record before its end; dropped"
                );
                self.lose(id);
            } else {
                log::error!(
                    "spool: message {id:016X}: a second begin record (repeated bytes); \
                     it and the records of that copy are ignored"
                );
                self.doubled.insert(id);
            }
            return;
        }
        if self.doubled.contains(&id) && matches!(rec, Record::Body { .. } | Record::End { .. }) {
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
            open.insert(
                id,
                Open {
                    env,
                    extents: Vec::new(),
                    size: 0,
                    segs: BTreeSet::from([seq]),
                },
            );
        }
        Record::Body { id, data } => {
            if let Some(o) = open.get_mut(&id) {
                seg.live.insert(id);
                o.extents.push(Extent {
                    seg: seq,
                    offset: payload_at + 8,
                    len: data.len() as u32,
                });
                o.size += data.len() as u64;
                o.segs.insert(seq);
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

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pocobelle-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 64 << 20,
            min_free_bytes: 0,
            segment_bytes: 64 * 1024,
        }
    }

    fn store(s: &mut Spool, body: &[u8], rcpts: usize) -> u64 {
        let id = s
            .begin(
                "a@b.test".into(),
                (0..rcpts).map(|i| format!("u{i}@home.arpa")).collect(),
                1,
                MessageFlags::default(),
            )
            .unwrap();
        for c in body.chunks(1000) {
            s.body(id, c).unwrap();
        }
        s.end(id).unwrap();
        id
    }

    #[test]
    fn committed_messages_survive_reopen() {
        let d = tmp("reopen");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, &[b'a'; 5000], 2);
        let b = store(&mut s, b"short body\r\n", 1);
        s.commit().unwrap();
        assert_eq!(s.stats.fsyncs, 1, "one fsync for both messages");
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.messages().count(), 2);
        assert_eq!(s.read_body(a).unwrap(), vec![b'a'; 5000]);
        assert_eq!(s.read_body(b).unwrap(), b"short body\r\n");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_warned_mark_survives_reopen() {
        let d = tmp("warned");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"a\r\n", 1);
        let b = store(&mut s, b"b\r\n", 1);
        s.commit().unwrap();
        s.warned(a).unwrap();
        assert!(s.warned(12345).is_err());
        s.commit().unwrap();
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert!(s.message(a).unwrap().warned);
        assert!(!s.message(b).unwrap().warned);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_message_is_durable_only_after_the_commit() {
        let d = tmp("durable");
        let mut s = Spool::open(&d, limits()).unwrap();
        let id = store(&mut s, b"body\r\n", 1);
        // Ended but not committed: its body is still in the write buffer.
        assert!(!s.message(id).unwrap().durable);
        s.commit().unwrap();
        assert!(s.message(id).unwrap().durable);
        assert_eq!(s.read_body(id).unwrap(), b"body\r\n");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn esmtp_flags_survive_a_restart() {
        let d = tmp("flags");
        let mut s = Spool::open(&d, limits()).unwrap();
        let flags = MessageFlags {
            eight_bit: true,
            smtputf8: true,
        };
        let id = s
            .begin("a@b.test".into(), vec!["u@home.arpa".into()], 1, flags)
            .unwrap();
        s.body(id, b"caf\xc3\xa9\r\n").unwrap();
        s.end(id).unwrap();
        let plain = store(&mut s, b"plain\r\n", 1);
        s.commit().unwrap();
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.message(id).unwrap().env.flags, flags);
        assert_eq!(s.message(plain).unwrap().env.flags, MessageFlags::default());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn unended_messages_are_dropped_at_recovery() {
        let d = tmp("unended");
        let mut s = Spool::open(&d, limits()).unwrap();
        let id = s
            .begin(
                "a@b.test".into(),
                vec!["u@home.arpa".into()],
                1,
                MessageFlags::default(),
            )
            .unwrap();
        s.body(id, b"partial").unwrap();
        let done = store(&mut s, b"whole\r\n", 1);
        s.commit().unwrap();
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        let ids: Vec<u64> = s.messages().map(|m| m.env.id).collect();
        assert_eq!(ids, vec![done]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn outcomes_persist_and_finished_segments_are_removed() {
        let d = tmp("gc");
        let mut s = Spool::open(&d, limits()).unwrap();
        let mut ids = vec![];
        for _ in 0..40 {
            ids.push(store(&mut s, &[b'x'; 4000], 2));
        }
        s.commit().unwrap();
        assert!(s.segment_count() > 2);
        // First recipient of every message delivered: nothing can go.
        for &id in &ids {
            s.outcome(id, 0, Outcome::Delivered).unwrap();
        }
        s.retry(ids[0], 12345, "451 try later").unwrap();
        s.commit().unwrap();
        assert_eq!(s.collect_garbage().unwrap(), 0);
        drop(s);
        let mut s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.messages().count(), 40);
        for m in s.messages() {
            assert_eq!(m.pending().count(), 1);
        }
        let m0 = s.message(ids[0]).unwrap();
        assert_eq!((m0.attempts, m0.next_at), (1, 12345));
        assert_eq!(m0.last_error, "451 try later");
        for &id in &ids {
            s.outcome(id, 1, Outcome::Delivered).unwrap();
        }
        s.commit().unwrap();
        s.collect_garbage().unwrap();
        assert_eq!(s.messages().count(), 0);
        // Only the active segment remains.
        assert_eq!(s.segment_count(), 1);
        let files = fs::read_dir(&d).unwrap().count();
        assert_eq!(files, 1);
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.messages().count(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn an_old_live_message_keeps_later_outcomes() {
        // Message A (old segment) stays queued; B finishes in a later
        // segment. After restart B must not come back.
        let d = tmp("order");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, &[b'a'; 100], 1);
        for _ in 0..30 {
            store(&mut s, &[b'f'; 4000], 1);
        }
        let b = store(&mut s, b"b\r\n", 1);
        s.commit().unwrap();
        let all: Vec<u64> = s
            .messages()
            .map(|m| m.env.id)
            .filter(|&id| id != a)
            .collect();
        for id in all {
            s.outcome(id, 0, Outcome::Delivered).unwrap();
        }
        s.commit().unwrap();
        s.collect_garbage().unwrap();
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        let ids: Vec<u64> = s.messages().map(|m| m.env.id).collect();
        assert_eq!(ids, vec![a]);
        assert!(s.message(b).is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_at_every_length_is_dropped_cleanly() {
        let d = tmp("torn");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"first\r\n", 1);
        s.commit().unwrap();
        let seq = s.active.seq;
        let committed_len = s.active.written;
        let b = store(&mut s, b"second message body\r\n", 1);
        s.commit().unwrap();
        let full_len = s.active.written;
        drop(s);
        let path = d.join(seg_name(seq));
        let full = fs::read(&path).unwrap();
        for cut in committed_len..full_len {
            let dd = tmp(&format!("torn-{cut}"));
            fs::create_dir_all(&dd).unwrap();
            fs::write(dd.join(seg_name(seq)), &full[..cut as usize]).unwrap();
            let s = Spool::open(&dd, limits()).unwrap();
            let ids: Vec<u64> = s.messages().map(|m| m.env.id).collect();
            assert_eq!(ids, vec![a], "cut at {cut}");
            assert_eq!(s.read_body(a).unwrap(), b"first\r\n");
            drop(s);
            // A torn record was cut off: the file ends at a record
            // boundary, and a second recovery sees the same queue.
            let len = fs::metadata(dd.join(seg_name(seq))).unwrap().len();
            assert!(len >= committed_len && len <= cut, "cut at {cut}: {len}");
            let s = Spool::open(&dd, limits()).unwrap();
            assert_eq!(s.messages().count(), 1);
            assert_eq!(s.stats.torn_records, 0, "cut at {cut}");
            drop(s);
            let _ = fs::remove_dir_all(&dd);
        }
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.read_body(b).unwrap(), b"second message body\r\n");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn garbage_in_the_tail_is_dropped() {
        let d = tmp("garbage");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"ok\r\n", 1);
        s.commit().unwrap();
        let seq = s.active.seq;
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(seg_name(seq)))
            .unwrap();
        f.write_all(&[0xB5, 2, 0xff, 0, 0, 0, 1, 2, 3, 4, 5])
            .unwrap();
        drop(f);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.messages().map(|m| m.env.id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(s.stats.torn_records, 1);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn full_spool_refuses_with_a_typed_error() {
        let d = tmp("full");
        let mut s = Spool::open(
            &d,
            Limits {
                max_bytes: 20_000,
                ..limits()
            },
        )
        .unwrap();
        let id = s
            .begin(
                "a@b.test".into(),
                vec!["u@home.arpa".into()],
                1,
                MessageFlags::default(),
            )
            .unwrap();
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = s.body(id, &[b'z'; 1000]) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(SpoolError::Full { .. })));
        assert!(s.used_bytes() <= 20_000 + 2000);
        assert!(matches!(s.end(id), Err(SpoolError::Full { .. })));
        assert!(matches!(s.end(id), Err(SpoolError::NoSuchMessage(_))));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn delete_is_durable() {
        let d = tmp("delete");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"a\r\n", 1);
        let b = store(&mut s, b"b\r\n", 1);
        s.commit().unwrap();
        s.delete(a).unwrap();
        s.commit().unwrap();
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.messages().map(|m| m.env.id).collect::<Vec<_>>(), vec![b]);
        let _ = fs::remove_dir_all(&d);
    }
}
