//! The mail queue's storage interface: what the spool writer
//! ([`crate::mail::spool::writer`]), and through its handle the listener
//! and the scheduler, need from a queue backend, and nothing more. The
//! segment log ([`crate::mail::spool::Spool`]) is the real backend; tests
//! use an in-memory one (`MemQueue`), so that the listener's and the
//! scheduler's rules can be checked without files.
//!
//! The contract every backend keeps: a message is acknowledged (250) only
//! after its [`Queue::end`] and then a [`Queue::commit`] that returned
//! `Ok`; until that commit it is not listed ([`Queue::list`] shows durable
//! messages only); outcomes, retry times and warnings need no commit of
//! their own (lost in a crash, a message is delivered or warned about
//! again: at least once). A backend never talks to the network and never
//! decides what to deliver when (the scheduler does).

use std::path::Path;
use std::sync::Arc;

use super::spool::record::{MessageFlags, Outcome};
use super::spool::{Extent, SpoolError};

/// Longest error text kept for a deferred message, in bytes: the
/// scheduler's (every address tried, in order, each with its reason) is
/// built within it, and every backend keeps that much of what it is
/// given ([`clip_error`]). The spool's retry record carries it far
/// within the codec's payload bound; `mailq` shows the start of it
/// (`service::LISTED_ERROR_CHARS`).
pub const MAX_ERROR_TEXT: usize = 1000;

/// `error` cut to [`MAX_ERROR_TEXT`] bytes, on a character boundary.
pub fn clip_error(error: &str) -> &str {
    if error.len() <= MAX_ERROR_TEXT {
        return error;
    }
    let mut end = MAX_ERROR_TEXT;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// A queued message as the scheduler and `mailq` see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: u64,
    pub from: String,
    /// (index, address) of recipients still pending.
    pub pending: Vec<(u32, String)>,
    pub size: u64,
    pub received: u64,
    pub attempts: u32,
    pub next_at: u64,
    pub last_error: String,
    /// The sender got its "delayed" DSN.
    #[serde(default)]
    pub warned: bool,
    /// The ESMTP parameters it arrived with, passed on at delivery.
    #[serde(skip)]
    pub flags: MessageFlags,
    #[serde(skip)]
    pub extents: Vec<Extent>,
}

/// Reads the body pieces a [`QueueEntry`] names, without the writer (a
/// delivery reads while the writer appends).
pub trait BodyReader: Send + Sync {
    /// The bytes of `extents`, in order. Bounded by the message size
    /// limit (extents only ever describe one stored message).
    fn read(&self, extents: &[Extent]) -> Result<Vec<u8>, SpoolError>;
}

/// A queue backend. One owner (the spool writer thread) calls it; every
/// call is synchronous and may block on the disk.
pub trait Queue: Send {
    /// Starts a message; returns its id. `flags`: the ESMTP parameters it
    /// arrived with, passed on at delivery.
    fn begin(
        &mut self,
        from: String,
        rcpts: Vec<String>,
        received: u64,
        flags: MessageFlags,
    ) -> Result<u64, SpoolError>;

    /// Appends a body chunk of an open message. After an error the caller
    /// aborts the message (the spool has already dropped it when it is
    /// full, and then fails its [`Queue::end`] with `Full`).
    fn body(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError>;

    /// Puts header fields in front of an open message, after those put
    /// there before: fields known only at its end (`Authentication-Results`).
    /// Errors as [`Queue::body`].
    fn head(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError>;

    /// Ends a message: acknowledged once the next [`Queue::commit`]
    /// returns `Ok`, not before.
    fn end(&mut self, id: u64) -> Result<(), SpoolError>;

    /// Forgets an open message (the session failed or it was refused).
    fn abort(&mut self, id: u64);

    /// Makes everything appended so far durable (one fsync for all).
    /// When it fails, the messages ended since the last commit that
    /// returned `Ok` are dropped (their senders get 451 and send them
    /// again): never listed, not even after a later commit succeeds.
    fn commit(&mut self) -> Result<(), SpoolError>;

    /// Records a recipient's final outcome.
    fn outcome(&mut self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError>;

    /// Records a failed attempt and when to try again; `error` is kept
    /// up to [`MAX_ERROR_TEXT`] ([`clip_error`]).
    fn retry(&mut self, id: u64, next_at: u64, error: &str) -> Result<(), SpoolError>;

    /// Records that the sender got its "delayed" DSN.
    fn warned(&mut self, id: u64) -> Result<(), SpoolError>;

    /// Removes a message (operator's `mail delete`).
    fn delete(&mut self, id: u64) -> Result<(), SpoolError>;

    /// Makes every waiting message due now (`mail flush`, ETRN).
    fn flush_all(&mut self);

    /// The durable queued messages, oldest first.
    fn list(&self) -> Vec<QueueEntry>;

    /// How many durable messages are queued, and their bytes.
    fn summary(&self) -> (u64, u64);

    /// Messages begun and not yet ended or aborted.
    fn open_count(&self) -> usize;

    /// True when new mail would not fit (452 at MAIL FROM).
    fn is_full(&self) -> bool;

    /// Housekeeping after a successful commit (the segment log removes
    /// finished segments); returns how many pieces it removed.
    fn collect_garbage(&mut self) -> Result<usize, SpoolError> {
        Ok(0)
    }

    /// The reader of this queue's bodies, for deliveries and DSNs.
    fn reader(&self) -> Arc<dyn BodyReader>;

    /// The directory of the backend's files (`mail/client.rs` reads
    /// bodies from segment files there); empty for a backend without
    /// files.
    fn dir(&self) -> &Path;
}

#[cfg(test)]
pub use mem::{MemProbe, MemQueue, Step};

/// The in-memory backend, for tests: the same contract, no files, and a
/// journal of the calls (with a way to hold or fail commits) so that a
/// test can check what happened before what.
#[cfg(test)]
mod mem {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Condvar, Mutex};

    use super::{BodyReader, Queue, QueueEntry, clip_error};
    use crate::mail::spool::record::{MessageFlags, Outcome};
    use crate::mail::spool::{Extent, RcptState, SpoolError};

    /// One call, as the journal keeps it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Step {
        Begin(u64),
        Body(u64, usize),
        End(u64),
        Abort(u64),
        /// A commit returned (`true`: Ok).
        Commit(bool),
        Outcome(u64, usize, Outcome),
        Retry(u64, u64),
        Warned(u64),
        Delete(u64),
    }

    #[derive(Default)]
    struct Control {
        journal: Vec<Step>,
        /// Commits wait while this is set.
        hold: bool,
        /// Commits fail while this is set.
        fail: bool,
    }

    #[derive(Default)]
    struct Shared {
        control: Mutex<Control>,
        released: Condvar,
        /// Body bytes by message id; an extent's `seg` is the id.
        bodies: Mutex<BTreeMap<u64, Vec<u8>>>,
    }

    /// The test's side of a [`MemQueue`] that moved into the writer.
    #[derive(Clone)]
    pub struct MemProbe(Arc<Shared>);

    impl MemProbe {
        pub fn journal(&self) -> Vec<Step> {
            self.0.control.lock().unwrap().journal.clone()
        }

        /// While held, a commit blocks (the writer thread waits in it).
        pub fn hold_commits(&self, hold: bool) {
            self.0.control.lock().unwrap().hold = hold;
            self.0.released.notify_all();
        }

        /// While set, a commit fails (as an fsync error would).
        pub fn fail_commits(&self, fail: bool) {
            self.0.control.lock().unwrap().fail = fail;
        }
    }

    struct Msg {
        from: String,
        rcpts: Vec<String>,
        state: Vec<RcptState>,
        received: u64,
        flags: MessageFlags,
        size: u64,
        attempts: u32,
        next_at: u64,
        last_error: String,
        warned: bool,
        ended: bool,
        durable: bool,
        /// Bytes of heads at the body's front.
        heads: usize,
    }

    /// Messages in a map, bodies in memory.
    pub struct MemQueue {
        msgs: BTreeMap<u64, Msg>,
        next_id: u64,
        /// At most this many messages (queued or open); past it, `Full`.
        max_messages: usize,
        shared: Arc<Shared>,
    }

    impl MemQueue {
        pub fn new() -> (MemQueue, MemProbe) {
            let shared = Arc::new(Shared::default());
            let q = MemQueue {
                msgs: BTreeMap::new(),
                next_id: 1,
                max_messages: 1000,
                shared: shared.clone(),
            };
            (q, MemProbe(shared))
        }

        fn log(&self, s: Step) {
            self.shared.control.lock().unwrap().journal.push(s);
        }

        fn queued(&mut self, id: u64) -> Result<&mut Msg, SpoolError> {
            self.msgs
                .get_mut(&id)
                .filter(|m| m.ended)
                .ok_or(SpoolError::NoSuchMessage(id))
        }

        fn finish_if_done(&mut self, id: u64) {
            if self
                .msgs
                .get(&id)
                .is_some_and(|m| m.state.iter().all(|s| *s != RcptState::Pending))
            {
                self.msgs.remove(&id);
                self.shared.bodies.lock().unwrap().remove(&id);
            }
        }
    }

    struct MemReader(Arc<Shared>);

    impl BodyReader for MemReader {
        fn read(&self, extents: &[Extent]) -> Result<Vec<u8>, SpoolError> {
            let bodies = self.0.bodies.lock().unwrap();
            let mut out = Vec::new();
            for e in extents {
                let b = bodies.get(&e.seg).ok_or(SpoolError::NoSuchMessage(e.seg))?;
                let at = e.offset as usize;
                let piece = b
                    .get(at..at + e.len as usize)
                    .ok_or(SpoolError::NoSuchMessage(e.seg))?;
                out.extend_from_slice(piece);
            }
            Ok(out)
        }
    }

    impl Queue for MemQueue {
        fn begin(
            &mut self,
            from: String,
            rcpts: Vec<String>,
            received: u64,
            flags: MessageFlags,
        ) -> Result<u64, SpoolError> {
            if self.msgs.len() >= self.max_messages {
                return Err(SpoolError::Full {
                    used: self.msgs.len() as u64,
                    max: self.max_messages as u64,
                });
            }
            let id = self.next_id;
            self.next_id += 1;
            let n = rcpts.len();
            self.msgs.insert(
                id,
                Msg {
                    from,
                    rcpts,
                    state: vec![RcptState::Pending; n],
                    received,
                    flags,
                    size: 0,
                    attempts: 0,
                    next_at: 0,
                    last_error: String::new(),
                    warned: false,
                    ended: false,
                    durable: false,
                    heads: 0,
                },
            );
            self.shared.bodies.lock().unwrap().insert(id, Vec::new());
            self.log(Step::Begin(id));
            Ok(id)
        }

        fn body(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
            let m = self
                .msgs
                .get_mut(&id)
                .filter(|m| !m.ended)
                .ok_or(SpoolError::NoSuchMessage(id))?;
            m.size += data.len() as u64;
            if let Some(b) = self.shared.bodies.lock().unwrap().get_mut(&id) {
                b.extend_from_slice(data);
            }
            self.log(Step::Body(id, data.len()));
            Ok(())
        }

        fn head(&mut self, id: u64, data: &[u8]) -> Result<(), SpoolError> {
            let m = self
                .msgs
                .get_mut(&id)
                .filter(|m| !m.ended)
                .ok_or(SpoolError::NoSuchMessage(id))?;
            m.size += data.len() as u64;
            let at = m.heads;
            m.heads += data.len();
            if let Some(b) = self.shared.bodies.lock().unwrap().get_mut(&id) {
                b.splice(at..at, data.iter().copied());
            }
            self.log(Step::Body(id, data.len()));
            Ok(())
        }

        fn end(&mut self, id: u64) -> Result<(), SpoolError> {
            let m = self
                .msgs
                .get_mut(&id)
                .filter(|m| !m.ended)
                .ok_or(SpoolError::NoSuchMessage(id))?;
            m.ended = true;
            self.log(Step::End(id));
            Ok(())
        }

        fn abort(&mut self, id: u64) {
            if self.msgs.get(&id).is_some_and(|m| !m.ended) {
                self.msgs.remove(&id);
                self.shared.bodies.lock().unwrap().remove(&id);
                self.log(Step::Abort(id));
            }
        }

        fn commit(&mut self) -> Result<(), SpoolError> {
            let mut c = self.shared.control.lock().unwrap();
            while c.hold {
                c = self.shared.released.wait(c).unwrap();
            }
            if c.fail {
                c.journal.push(Step::Commit(false));
                drop(c);
                // The messages ended since the last commit are dropped.
                let lost: Vec<u64> = self
                    .msgs
                    .iter()
                    .filter(|(_, m)| m.ended && !m.durable)
                    .map(|(&id, _)| id)
                    .collect();
                for id in lost {
                    self.msgs.remove(&id);
                    self.shared.bodies.lock().unwrap().remove(&id);
                }
                return Err(SpoolError::Io {
                    path: "memory".into(),
                    source: std::io::Error::other("commit failed (test)"),
                });
            }
            c.journal.push(Step::Commit(true));
            drop(c);
            for m in self.msgs.values_mut() {
                m.durable |= m.ended;
            }
            Ok(())
        }

        fn outcome(&mut self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError> {
            let m = self.queued(id)?;
            if let Some(s) = m.state.get_mut(index) {
                *s = RcptState::Done(outcome);
            }
            self.log(Step::Outcome(id, index, outcome));
            self.finish_if_done(id);
            Ok(())
        }

        fn retry(&mut self, id: u64, next_at: u64, error: &str) -> Result<(), SpoolError> {
            let m = self.queued(id)?;
            m.attempts += 1;
            m.next_at = next_at;
            m.last_error = clip_error(error).to_string();
            self.log(Step::Retry(id, next_at));
            Ok(())
        }

        fn warned(&mut self, id: u64) -> Result<(), SpoolError> {
            self.queued(id)?.warned = true;
            self.log(Step::Warned(id));
            Ok(())
        }

        fn delete(&mut self, id: u64) -> Result<(), SpoolError> {
            self.queued(id)?;
            self.msgs.remove(&id);
            self.shared.bodies.lock().unwrap().remove(&id);
            self.log(Step::Delete(id));
            Ok(())
        }

        fn flush_all(&mut self) {
            for m in self.msgs.values_mut() {
                m.next_at = 0;
            }
        }

        fn list(&self) -> Vec<QueueEntry> {
            self.msgs
                .iter()
                .filter(|(_, m)| m.durable)
                .map(|(&id, m)| QueueEntry {
                    id,
                    from: m.from.clone(),
                    pending: m
                        .state
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| **s == RcptState::Pending)
                        .map(|(i, _)| (i as u32, m.rcpts[i].clone()))
                        .collect(),
                    size: m.size,
                    received: m.received,
                    attempts: m.attempts,
                    next_at: m.next_at,
                    last_error: m.last_error.clone(),
                    warned: m.warned,
                    flags: m.flags,
                    extents: vec![Extent {
                        seg: id,
                        offset: 0,
                        len: m.size as u32,
                    }],
                })
                .collect()
        }

        fn summary(&self) -> (u64, u64) {
            self.msgs
                .values()
                .filter(|m| m.durable)
                .fold((0, 0), |(n, b), m| (n + 1, b + m.size))
        }

        fn open_count(&self) -> usize {
            self.msgs.values().filter(|m| !m.ended).count()
        }

        fn is_full(&self) -> bool {
            self.msgs.len() >= self.max_messages
        }

        fn reader(&self) -> Arc<dyn BodyReader> {
            Arc::new(MemReader(self.shared.clone()))
        }

        fn dir(&self) -> &std::path::Path {
            std::path::Path::new("")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::spool::{Limits, Spool};

    /// The contract, run against each backend.
    fn contract<Q: Queue>(q: &mut Q) {
        let flags = MessageFlags {
            eight_bit: true,
            smtputf8: false,
        };
        let rcpts = vec!["u@x.test".to_string(), "v@y.test".to_string()];
        let a = q
            .begin("a@b.test".into(), rcpts.clone(), 100, flags)
            .unwrap();
        q.body(a, b"Subject: a\r\n\r\n").unwrap();
        q.body(a, b"body a\r\n").unwrap();
        let b = q
            .begin(String::new(), rcpts, 101, MessageFlags::default())
            .unwrap();
        assert_eq!(q.open_count(), 2);
        q.end(a).unwrap();
        assert_eq!(q.open_count(), 1);
        assert!(
            q.list().is_empty(),
            "ended is not durable before the commit"
        );
        q.commit().unwrap();
        let l = q.list();
        assert_eq!(l.len(), 1);
        let e = &l[0];
        assert_eq!(
            (e.id, e.from.as_str(), e.received, e.size),
            (a, "a@b.test", 100, 22)
        );
        assert_eq!(e.flags, flags);
        assert_eq!(e.pending.len(), 2);
        assert_eq!(
            q.reader().read(&e.extents).unwrap(),
            b"Subject: a\r\n\r\nbody a\r\n"
        );
        assert_eq!(q.summary(), (1, 22));
        // An aborted message never shows.
        q.abort(b);
        assert_eq!(q.open_count(), 0);
        assert!(q.end(b).is_err());
        q.commit().unwrap();
        assert_eq!(q.list().len(), 1);
        // Delivery state.
        q.outcome(a, 0, Outcome::Delivered).unwrap();
        q.retry(a, 5000, "451 later").unwrap();
        q.warned(a).unwrap();
        let e = q.list().remove(0);
        assert_eq!(e.pending, vec![(1, "v@y.test".to_string())]);
        assert_eq!((e.attempts, e.next_at, e.warned), (1, 5000, true));
        assert_eq!(e.last_error, "451 later");
        // The scheduler's error text (every address tried, each with its
        // reason) is kept whole up to its bound, and cut on a character
        // boundary past it.
        let bound = MAX_ERROR_TEXT;
        let whole = "\u{e9}".repeat(bound / 2);
        q.retry(a, 5000, &whole).unwrap();
        assert_eq!(q.list()[0].last_error, whole);
        let over = format!("x{whole}");
        q.retry(a, 5000, &over).unwrap();
        assert_eq!(q.list()[0].last_error, over[..bound - 1]);
        q.retry(a, 5000, "451 later").unwrap();
        q.flush_all();
        assert_eq!(q.list()[0].next_at, 0);
        assert!(q.outcome(12345, 0, Outcome::Delivered).is_err());
        assert!(q.warned(12345).is_err());
        // The last outcome finishes it.
        q.outcome(a, 1, Outcome::Bounced).unwrap();
        q.commit().unwrap();
        assert!(q.list().is_empty());
        q.collect_garbage().unwrap();
        // Delete.
        let c = q
            .begin(
                "c@b.test".into(),
                vec!["w@x.test".into()],
                102,
                MessageFlags::default(),
            )
            .unwrap();
        q.end(c).unwrap();
        q.commit().unwrap();
        q.delete(c).unwrap();
        assert!(q.list().is_empty());
        assert!(q.delete(c).is_err());
        assert!(!q.is_full());
    }

    #[test]
    fn the_in_memory_queue_keeps_the_contract() {
        contract(&mut MemQueue::new().0);
    }

    #[test]
    fn the_segment_log_keeps_the_contract() {
        let d = std::env::temp_dir().join(format!("pocobelle-queue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut s = Spool::open(
            &d,
            Limits {
                max_bytes: 64 << 20,
                min_free_bytes: 0,
                segment_bytes: 64 * 1024,
            },
        )
        .unwrap();
        contract(&mut s);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }
}
