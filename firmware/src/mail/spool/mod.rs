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
//!
//! This file is the façade, [`Spool`], and its [`Queue`] implementation;
//! the parts: `record` (the codec), `log` (segment files: append, commit,
//! roll, removal), `index` (the in-memory message table), `recovery`
//! (the replay at start), `writer` (the single writer thread).

#[cfg(test)]
mod damage_tests;
mod index;
mod log;
pub mod record;
pub mod recovery;
pub mod writer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::index::{Index, Open};
use self::log::Log;
use self::record::{MessageFlags, Outcome, Record, StoredEnvelope};
use super::queue::{BodyReader, Queue, QueueEntry, clip_error};

pub use self::index::{Extent, MAX_MESSAGES, MAX_OPEN_MESSAGES, Message, RcptState};
#[cfg(test)]
use self::log::seg_name;
pub use self::log::{WRITE_BUFFER, read_extents};

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
    /// Every message id is used: a recovered record carries the highest
    /// one there is (damage, or a clock set far ahead when it was
    /// written). Ids are never reused, so new mail is refused (451, try
    /// again later) until the spool is looked at.
    #[error(
        "no message id left after {last:016X} (a spool record carries it); new mail is refused \
         rather than given an id used before"
    )]
    IdsExhausted { last: u64 },
    /// A commit of some of this message's records failed (their bytes may
    /// never reach the disk): the message was dropped, and its End fails
    /// (451: the sender sends it again).
    #[error("message {0:016X}: a commit of its first records failed; dropped")]
    Uncommitted(u64),
    /// Header fields put in front of a message are over
    /// [`record::MAX_HEAD_BYTES`]: they are left out (the message stays).
    #[error("{0} bytes of header fields to put in front of a message, over the bound")]
    HeadTooLong(usize),
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
    limits: Limits,
    log: Log,
    index: Index,
    pub stats: Stats,
    /// A commit failed where its caller could not say so to the waiting
    /// senders (rolling to a new segment inside an append): the next
    /// [`Spool::commit`] fails with it.
    unreported: Option<String>,
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
        fs::create_dir_all(dir).map_err(log::io_err(dir))?;
        let r = recovery::recover(dir)?;
        let log = Log::start(dir, limits.segment_bytes, r.segments, r.next_seq)?;
        let mut spool = Spool {
            limits,
            log,
            index: Index {
                msgs: r.msgs,
                last_id: r.last_id,
                ..Index::default()
            },
            stats: r.stats,
            unreported: None,
        };
        spool.collect_garbage()?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    pub fn segment_path(&self, seq: u64) -> PathBuf {
        self.log.segment_path(seq)
    }

    /// Bytes the spool occupies on disk, counting unwritten buffer.
    pub fn used_bytes(&self) -> u64 {
        self.log.used_bytes()
    }

    /// Messages begun and not yet ended or aborted.
    pub fn open_count(&self) -> usize {
        self.index.open.len()
    }

    pub fn segment_count(&self) -> usize {
        self.log.segment_count()
    }

    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.index.msgs.values()
    }

    #[cfg(test)]
    pub fn message(&self, id: u64) -> Option<&Message> {
        self.index.msgs.get(&id)
    }

    /// Checks that `extra` more bytes fit under the limits.
    pub fn admit(&self, extra: u64) -> Result<(), SpoolError> {
        let used = self.used_bytes();
        if used + extra > self.limits.max_bytes || self.index.msgs.len() >= MAX_MESSAGES {
            return Err(SpoolError::Full {
                used,
                max: self.limits.max_bytes,
            });
        }
        if self.limits.min_free_bytes > 0
            && let Ok(st) = nix::sys::statvfs::statvfs(self.dir())
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

    /// Appends a record to the log (rolling to a new segment first when
    /// the active one is full); returns (segment, file offset of its
    /// payload).
    fn append(&mut self, rec: &Record) -> Result<(u64, u64), SpoolError> {
        if self.log.needs_roll() {
            self.roll()?;
        }
        self.log.append(rec, &mut self.stats)
    }

    /// Makes everything appended so far durable: one write, one fsync.
    /// When it fails (or an earlier one failed unreported), the messages
    /// ended since the last successful commit get 451 from the writer,
    /// and are dropped: see [`Spool::forget_uncommitted`].
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        let synced = self.log.sync(&mut self.stats);
        let failed = match (synced, self.unreported.take()) {
            (Err(e), _) => e,
            (Ok(()), Some(earlier)) => SpoolError::Io {
                path: self.dir().to_path_buf(),
                source: io::Error::other(format!("an earlier commit failed: {earlier}")),
            },
            (Ok(()), None) => {
                self.index.mark_durable();
                return Ok(());
            }
        };
        self.forget_uncommitted();
        Err(failed)
    }

    /// A commit failed: the senders of the messages ended since the last
    /// successful one get 451 and send them again, and the bytes of their
    /// records may be gone (after an fsync error the page cache may drop
    /// them), so those messages are dropped from the queue. Their records
    /// may still reach the file with a later commit; a delete record for
    /// each, appended now, goes with that commit (or a later one), so
    /// recovery does not bring them back either (only a crash between
    /// the two could: then the message is delivered and sent again, a
    /// duplicate, never a loss). Messages still open had records in the
    /// failed commit too: they are dropped, and their End fails.
    fn forget_uncommitted(&mut self) {
        for id in std::mem::take(&mut self.index.fresh) {
            if let Some(m) = self.index.msgs.remove(&id) {
                self.log.release(id, &m.segs);
                // Into the buffer, without rolling: an error here only
                // means the buffer was not written out yet.
                let _ = self.log.append(&Record::Delete { id }, &mut self.stats);
            }
        }
        let open: Vec<u64> = self.index.open.keys().copied().collect();
        for id in open {
            self.abort(id);
            // Past the bound its End fails all the same (no such message).
            if self.index.uncommitted.len() < MAX_OPEN_MESSAGES {
                self.index.uncommitted.insert(id);
            }
        }
    }

    /// Closes the active segment (durably) and starts the next one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        if let Err(e) = self.commit() {
            // The senders waiting for the writer's next commit learn it
            // from that one.
            self.unreported = Some(e.to_string());
            return Err(e);
        }
        self.log.next_segment()
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
        if self.index.open.len() >= MAX_OPEN_MESSAGES {
            return Err(SpoolError::TooManyOpen);
        }
        self.admit(0)?;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let id = self.index.next_id(micros)?;
        let env = StoredEnvelope {
            id,
            received,
            from,
            rcpts,
            flags,
        };
        let (seq, _) = self.append(&Record::Begin(env.clone()))?;
        self.log.touch(id, seq);
        self.index.open.insert(id, Open::new(env, seq));
        Ok(id)
    }

    /// Appends a body chunk of an open message.
    pub fn body(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
        self.add(id, data, false)
    }

    /// Puts header fields in front of an open message (after the heads
    /// already put there): fields known only at its end, such as
    /// `Authentication-Results`. At most [`record::MAX_HEAD_BYTES`].
    pub fn head(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
        if data.len() > record::MAX_HEAD_BYTES {
            return Err(SpoolError::HeadTooLong(data.len()));
        }
        self.add(id, data, true)
    }

    fn add(&mut self, id: u64, data: &[u8], head: bool) -> Result<(), SpoolError> {
        if !self.index.open.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        if let Err(e) = self.admit(data.len() as u64) {
            self.abort(id);
            if self.index.refused.len() < MAX_OPEN_MESSAGES {
                self.index.refused.insert(id);
            }
            return Err(e);
        }
        let rec = if head {
            Record::Head {
                id,
                data: data.to_vec(),
            }
        } else {
            Record::Body {
                id,
                data: data.to_vec(),
            }
        };
        let (seq, at) = self.append(&rec)?;
        self.log.touch(id, seq);
        self.index
            .open
            .get_mut(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?
            .add(seq, at + 8, data.len(), head);
        Ok(())
    }

    /// Ends a message. It is acknowledged once the next [`commit`]
    /// returns.
    ///
    /// [`commit`]: Spool::commit
    pub fn end(&mut self, id: u64) -> Result<(), SpoolError> {
        if self.index.uncommitted.remove(&id) {
            return Err(SpoolError::Uncommitted(id));
        }
        if self.index.refused.remove(&id) {
            return Err(SpoolError::Full {
                used: self.used_bytes(),
                max: self.limits.max_bytes,
            });
        }
        let size = self
            .index
            .open
            .get(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?
            .size;
        let (seq, _) = self.append(&Record::End { id, size })?;
        let Some(mut o) = self.index.open.remove(&id) else {
            return Err(SpoolError::NoSuchMessage(id));
        };
        self.log.touch(id, seq);
        o.segs.insert(seq);
        let n = o.env.rcpts.len();
        self.index.msgs.insert(
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
        self.index.fresh.push(id);
        Ok(())
    }

    /// Forgets an open message (the session failed or the message was
    /// refused). Its records stay in the log, without an End. A message
    /// the spool dropped already (refused for space, or caught in a
    /// failed commit) is forgotten for good: its mark would otherwise
    /// stay, and once the marks were at their bound, the next refused
    /// message's End would get "no such message" (451) instead of `Full`
    /// (452).
    pub fn abort(&mut self, id: u64) {
        if let Some(o) = self.index.open.remove(&id) {
            self.log.release(id, &o.segs);
        } else {
            self.index.uncommitted.remove(&id);
            self.index.refused.remove(&id);
        }
    }

    /// Records a recipient's final outcome.
    pub fn outcome(&mut self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError> {
        if !self.index.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        let (seq, _) = self.append(&Record::Rcpt {
            id,
            index: index as u32,
            outcome,
        })?;
        self.log.touch(id, seq);
        if let Some(m) = self.index.msgs.get_mut(&id) {
            m.segs.insert(seq);
            if let Some(r) = m.rcpts.get_mut(index) {
                *r = RcptState::Done(outcome);
            }
        }
        if let Some(m) = self.index.take_if_finished(id) {
            self.log.release(id, &m.segs);
        }
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn retry(&mut self, id: u64, next_at: u64, error: &str) -> Result<(), SpoolError> {
        let attempts = self
            .index
            .msgs
            .get(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?
            .attempts
            + 1;
        let error = clip_error(error).to_string();
        let (seq, _) = self.append(&Record::Retry {
            id,
            attempts,
            next_at,
            error: error.clone(),
        })?;
        self.log.touch(id, seq);
        if let Some(m) = self.index.msgs.get_mut(&id) {
            m.segs.insert(seq);
            m.attempts = attempts;
            m.next_at = next_at;
            m.last_error = error;
        }
        Ok(())
    }

    /// Records that the sender was sent the "delayed" DSN (once per message).
    pub fn warned(&mut self, id: u64) -> Result<(), SpoolError> {
        if !self.index.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        let (seq, _) = self.append(&Record::Warned { id })?;
        self.log.touch(id, seq);
        if let Some(m) = self.index.msgs.get_mut(&id) {
            m.segs.insert(seq);
            m.warned = true;
        }
        Ok(())
    }

    /// Removes a message (operator's `mail delete`, or expiry).
    pub fn delete(&mut self, id: u64) -> Result<(), SpoolError> {
        if !self.index.msgs.contains_key(&id) {
            return Err(SpoolError::NoSuchMessage(id));
        }
        self.append(&Record::Delete { id })?;
        if let Some(m) = self.index.msgs.remove(&id) {
            self.log.release(id, &m.segs);
        }
        Ok(())
    }

    /// Makes every waiting message due now (`mail flush`, ETRN).
    pub fn flush_all(&mut self) {
        for m in self.index.msgs.values_mut() {
            m.next_at = 0;
        }
    }

    /// Deletes, oldest first, segments in which every message is
    /// finished. Call after a commit, so that the records that finished
    /// them are durable first.
    pub fn collect_garbage(&mut self) -> Result<usize, SpoolError> {
        self.log.collect_garbage()
    }

    /// Reads a queued message's body.
    #[cfg(test)]
    pub fn read_body(&self, id: u64) -> Result<Vec<u8>, SpoolError> {
        let m = self
            .index
            .msgs
            .get(&id)
            .ok_or(SpoolError::NoSuchMessage(id))?;
        read_extents(self.dir(), &m.extents)
    }

    pub fn unix_now() -> u64 {
        now_unix()
    }
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

    fn head(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
        Spool::head(self, id, data)
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
            dir: self.dir().to_path_buf(),
        })
    }

    fn dir(&self) -> &Path {
        Spool::dir(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

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
    fn heads_go_in_front_of_the_body_and_survive_reopen() {
        let d = tmp("heads");
        let mut s = Spool::open(&d, limits()).unwrap();
        let id = s
            .begin("a@b".into(), vec!["c@d".into()], 0, Default::default())
            .unwrap();
        s.body(id, b"Received: x\r\n").unwrap();
        s.body(id, b"Subject: y\r\n\r\nbody\r\n").unwrap();
        s.head(id, b"Authentication-Results: h; spf=pass\r\n")
            .unwrap();
        s.head(id, b"X-Second: 2\r\n").unwrap();
        let too_long = vec![b'x'; record::MAX_HEAD_BYTES + 1];
        assert!(matches!(
            s.head(id, &too_long),
            Err(SpoolError::HeadTooLong(_))
        ));
        s.end(id).unwrap();
        s.commit().unwrap();
        let want: &[u8] = b"Authentication-Results: h; spf=pass\r\nX-Second: 2\r\n\
            Received: x\r\nSubject: y\r\n\r\nbody\r\n";
        assert_eq!(s.read_body(id).unwrap(), want);
        assert_eq!(s.message(id).unwrap().size, want.len() as u64);
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(s.read_body(id).unwrap(), want, "after recovery");
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
        let seq = s.log.active.seq;
        let committed_len = s.log.active.written;
        let b = store(&mut s, b"second message body\r\n", 1);
        s.commit().unwrap();
        let full_len = s.log.active.written;
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
        let seq = s.log.active.seq;
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
    fn ids_never_wrap_and_new_mail_is_refused_once_they_are_used_up() {
        // A record carrying the last id there is (damage that passed its
        // checksum: the fuzzer's spool_recovery/regress-94ee710f).
        let d = tmp("ids");
        fs::create_dir_all(&d).unwrap();
        let mut seg = Vec::new();
        record::encode(&Record::Warned { id: u64::MAX }, &mut seg);
        fs::write(d.join(seg_name(1)), &seg).unwrap();
        let mut s = Spool::open(&d, limits()).unwrap();
        let begin = |s: &mut Spool| {
            s.begin(
                "a@b.test".into(),
                vec!["u@home.arpa".into()],
                1,
                MessageFlags::default(),
            )
        };
        // Refused, not given an id already used (wrapped to 0, then the
        // clock's), and again at the next try.
        for _ in 0..2 {
            let e = begin(&mut s).expect_err("no id after u64::MAX");
            assert!(
                matches!(e, SpoolError::IdsExhausted { last: u64::MAX }),
                "{e}"
            );
            assert_eq!(s.open_count(), 0);
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_commit_drops_its_messages_for_good() {
        let d = tmp("failed-commit");
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"a\r\n", 1);
        s.commit().unwrap();
        // The fsync of b's commit fails (its records reached the file):
        // the client gets 451 and sends it again later.
        let b = store(&mut s, b"b\r\n", 1);
        // An open message whose first records were in that commit.
        let open = s
            .begin(
                "a@b.test".into(),
                vec!["u@home.arpa".into()],
                1,
                MessageFlags::default(),
            )
            .unwrap();
        s.body(open, b"first part, ").unwrap();
        let (seq, committed) = (s.log.active.seq, s.log.active.written);
        s.log.fail_syncs = true;
        assert!(s.commit().is_err());
        s.log.fail_syncs = false;
        assert!(s.message(b).is_none(), "dropped from the queue");
        // The failed commit's bytes may be anything on the medium (and
        // wider than a record): the segment is cut back to a's commit, and
        // the next records go to a new segment.
        let len = fs::metadata(s.segment_path(seq)).unwrap().len();
        assert_eq!(len, committed, "cut back to the last good commit");
        assert_eq!(s.log.active.seq, seq + 1, "a new segment");
        // The open one cannot be acknowledged any more: its first bytes
        // may be gone.
        let _ = s.body(open, b"second part\r\n");
        assert!(s.end(open).is_err());
        // The next commit succeeds: b does not come back with it.
        let c = store(&mut s, b"c\r\n", 1);
        s.commit().unwrap();
        let ids = |s: &Spool| s.messages().map(|m| m.env.id).collect::<Vec<_>>();
        assert_eq!(ids(&s), vec![a, c]);
        assert!(s.messages().all(|m| m.durable));
        drop(s);
        // Nor at recovery.
        let s = Spool::open(&d, limits()).unwrap();
        assert_eq!(ids(&s), vec![a, c]);
        assert_eq!(s.stats.skipped_bytes, 0, "no damage left to skip");
        let _ = fs::remove_dir_all(&d);
    }

    /// a committed; then b's commit, whose write stores 7 bytes and
    /// fails (and, with `fail_cut`, cutting the segment back to a's commit
    /// fails too); `at_failure` gets the spool, the segment and a's commit
    /// length; then c committed. Returns the directory, the spool opened
    /// again, a and c.
    fn short_write(
        name: &str,
        fail_cut: bool,
        at_failure: impl FnOnce(&Spool, u64, u64),
    ) -> (PathBuf, Spool, u64, u64) {
        let d = tmp(name);
        let mut s = Spool::open(&d, limits()).unwrap();
        let a = store(&mut s, b"first message\r\n", 1);
        s.commit().unwrap();
        let (seq, committed) = (s.log.active.seq, s.log.active.written);
        let b = store(&mut s, b"second message\r\n", 1);
        s.log.short_write = Some(7);
        s.log.fail_cut = fail_cut;
        assert!(s.commit().is_err());
        s.log.fail_cut = false;
        assert!(s.message(b).is_none(), "b got 451");
        at_failure(&s, seq, committed);
        let c = store(&mut s, b"third message\r\n", 1);
        s.commit().unwrap();
        assert_eq!(s.read_body(c).unwrap(), b"third message\r\n");
        drop(s);
        let s = Spool::open(&d, limits()).unwrap();
        let ids: Vec<u64> = s.messages().map(|m| m.env.id).collect();
        assert_eq!(ids, vec![a, c]);
        (d, s, a, c)
    }

    /// When even the cut back fails, the next commit retries the buffer
    /// at its planned offset: c's body is where its extents say.
    #[test]
    fn a_write_that_fails_half_way_leaves_every_later_extent_true() {
        let (d, s, a, c) = short_write("short-write", true, |_, _, _| {});
        assert_eq!(s.read_body(a).unwrap(), b"first message\r\n");
        assert_eq!(s.read_body(c).unwrap(), b"third message\r\n");
        let _ = fs::remove_dir_all(&d);
    }

    /// A write that fails half way (a full disk) leaves its partial bytes
    /// in the file; they are cut off, and the next commit goes to a new
    /// segment.
    #[test]
    fn a_write_that_fails_half_way_is_cut_off() {
        let (d, s, _, _) = short_write("short-write-cut", false, |s, seq, committed| {
            assert_eq!(fs::metadata(s.segment_path(seq)).unwrap().len(), committed);
        });
        assert_eq!((s.stats.skipped_bytes, s.stats.torn_records), (0, 0));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_message_refused_for_space_gets_452_however_many_were_aborted_before() {
        let d = tmp("refused");
        let max = 64 * 1024;
        let mut s = Spool::open(
            &d,
            Limits {
                max_bytes: max,
                ..limits()
            },
        )
        .unwrap();
        let chunk = vec![b'z'; max as usize];
        let refused = |s: &mut Spool| {
            let id = s
                .begin(
                    "a@b.test".into(),
                    vec!["u@home.arpa".into()],
                    1,
                    MessageFlags::default(),
                )
                .unwrap();
            assert!(matches!(s.body(id, &chunk), Err(SpoolError::Full { .. })));
            id
        };
        // Refused, then aborted (the client went away, or the session
        // refused the message too): more than MAX_OPEN_MESSAGES of them.
        for _ in 0..MAX_OPEN_MESSAGES + 10 {
            let id = refused(&mut s);
            s.abort(id);
        }
        // The next one refused for space still gets Full (452) at its
        // end, not "no such message" (451).
        let id = refused(&mut s);
        assert!(matches!(s.end(id), Err(SpoolError::Full { .. })));
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
