//! The spool's single writer: one OS thread owns the queue (the segment log,
//! [`super::Spool`], in the service) and does
//! all its blocking file I/O, so that an fsync never stalls the sessions
//! on the (single-threaded) async runtime. Requests arrive on a bounded
//! channel; the thread applies every request that is waiting, then makes
//! them durable with one commit (group commit) and only then answers the
//! ones that wait for durability: a 250 reply always follows the fsync
//! that holds its message. It works over any [`Queue`] backend (the
//! segment log in the service, the in-memory one in tests); generic, and
//! instantiated once in the binary.

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::record::{MessageFlags, Outcome};
use super::{Extent, SpoolError};
use crate::mail::queue::{BodyReader, Queue};

/// Requests waiting for the writer; senders wait when it is full, so
/// sessions slow down to the disk's pace instead of growing memory.
pub const QUEUE_DEPTH: usize = 64;

pub use crate::mail::queue::QueueEntry;

type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

enum Op {
    Begin {
        from: String,
        rcpts: Vec<String>,
        received: u64,
        flags: MessageFlags,
        reply: Reply<u64>,
    },
    Body {
        id: u64,
        data: Vec<u8>,
    },
    Head {
        id: u64,
        data: Vec<u8>,
    },
    End {
        id: u64,
        reply: Reply<()>,
    },
    Abort {
        id: u64,
    },
    Outcome {
        id: u64,
        index: usize,
        outcome: Outcome,
    },
    Retry {
        id: u64,
        next_at: u64,
        error: String,
    },
    Delete {
        id: u64,
        reply: Reply<()>,
    },
    Warned {
        id: u64,
    },
    Flush,
    /// How many durable messages are queued, and their bytes.
    Summary {
        reply: oneshot::Sender<(u64, u64)>,
    },
    /// Make everything appended so far durable now (at shutdown).
    Commit {
        reply: Reply<()>,
    },
    Snapshot {
        reply: oneshot::Sender<Vec<QueueEntry>>,
    },
}

/// A cheap handle to the writer thread.
#[derive(Clone)]
pub struct SpoolHandle {
    tx: mpsc::Sender<Op>,
    dir: std::path::PathBuf,
    reader: Arc<dyn BodyReader>,
    full: Arc<AtomicBool>,
}

/// A durable answer that is sent after the next commit.
enum Pending {
    Unit(Reply<()>, Result<(), SpoolError>),
}

impl SpoolHandle {
    /// Starts the writer thread for `spool`. `commit_delay` lets a commit
    /// wait a little to gather more messages into the same fsync.
    pub fn start<Q: Queue + 'static>(spool: Q, commit_delay: Duration) -> SpoolHandle {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let dir = spool.dir().to_path_buf();
        let reader = spool.reader();
        let full = Arc::new(AtomicBool::new(spool.is_full()));
        let flag = full.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || run(spool, rx, commit_delay, flag))
            .expect("the spool writer thread starts");
        SpoolHandle {
            tx,
            dir,
            reader,
            full,
        }
    }

    /// True when the spool was over a limit after the last commit: new
    /// mail gets 452 at MAIL FROM.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// The directory of the backend's files (see [`Queue::dir`]).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Reads body pieces of a queued message, without the writer.
    pub fn read(&self, extents: &[Extent]) -> Result<Vec<u8>, SpoolError> {
        self.reader.read(extents)
    }

    async fn send(&self, op: Op) -> Result<(), SpoolError> {
        self.tx.send(op).await.map_err(|_| SpoolError::WriterGone)
    }

    pub async fn begin(
        &self,
        from: String,
        rcpts: Vec<String>,
        received: u64,
        flags: MessageFlags,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Begin {
            from,
            rcpts,
            received,
            flags,
            reply,
        })
        .await?;
        rx.await.map_err(|_| SpoolError::WriterGone)?
    }

    pub async fn body(&self, id: u64, data: Vec<u8>) -> Result<(), SpoolError> {
        self.send(Op::Body { id, data }).await
    }

    /// Puts header fields in front of the message (see [`Queue::head`]).
    pub async fn head(&self, id: u64, data: Vec<u8>) -> Result<(), SpoolError> {
        self.send(Op::Head { id, data }).await
    }

    /// Ends the message and returns once it is durable.
    pub async fn end(&self, id: u64) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::End { id, reply }).await?;
        rx.await.map_err(|_| SpoolError::WriterGone)?
    }

    pub async fn abort(&self, id: u64) {
        let _ = self.send(Op::Abort { id }).await;
    }

    /// Records a recipient's outcome. It is not waited for: outcomes of
    /// many deliveries share the next commit. If it is lost in a crash the
    /// recipient gets the message again (at least once, never zero times).
    pub async fn outcome(&self, id: u64, index: usize, outcome: Outcome) -> Result<(), SpoolError> {
        self.send(Op::Outcome { id, index, outcome }).await
    }

    pub async fn retry(&self, id: u64, next_at: u64, error: String) -> Result<(), SpoolError> {
        self.send(Op::Retry { id, next_at, error }).await
    }

    /// Records that the sender got its "delayed" DSN. Not waited for,
    /// like outcomes: lost in a crash, the warning is sent again.
    pub async fn warned(&self, id: u64) -> Result<(), SpoolError> {
        self.send(Op::Warned { id }).await
    }

    pub async fn delete(&self, id: u64) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Delete { id, reply }).await?;
        rx.await.map_err(|_| SpoolError::WriterGone)?
    }

    /// The number of queued (durable) messages and their total size,
    /// without listing them.
    pub async fn summary(&self) -> Result<(u64, u64), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Summary { reply }).await?;
        rx.await.map_err(|_| SpoolError::WriterGone)
    }

    /// Returns once everything appended so far is durable: outcomes and
    /// retry records that would otherwise wait for the next batch. Called
    /// when the service stops, so a clean stop redelivers nothing.
    pub async fn commit(&self) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Commit { reply }).await?;
        rx.await.map_err(|_| SpoolError::WriterGone)?
    }

    /// Makes every queued message due now.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.send(Op::Flush).await
    }

    pub async fn snapshot(&self) -> Result<Vec<QueueEntry>, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Snapshot { reply }).await?;
        rx.await.map_err(|_| SpoolError::WriterGone)
    }
}

/// Delivery outcomes and retry records need no fsync of their own: they
/// ride on the next fsync that a message batch needs anyway, or, when no
/// mail arrives, are committed at most this long after the first of them.
/// One lost in a crash means the recipient gets the message again (at
/// least once), never that a message is lost.
pub const OUTCOME_COMMIT_DELAY: Duration = Duration::from_millis(500);

/// What the writer loop is waiting for.
enum Wait {
    /// The next request, however long it takes.
    Forever,
    /// The next request, or this instant (then commit).
    Until(Instant),
}

/// The writer thread's loop. A commit happens when a request waits for
/// durability (a message's End, a Delete): first the writer keeps taking
/// requests for up to `commit_delay` while other messages are still being
/// received, so that their Ends share the fsync (group commit), and
/// outcomes appended meanwhile are folded in. Outcomes alone are
/// committed after [`OUTCOME_COMMIT_DELAY`].
fn run<Q: Queue>(
    mut spool: Q,
    mut rx: mpsc::Receiver<Op>,
    commit_delay: Duration,
    full: Arc<AtomicBool>,
) {
    // Only for timed receives on this thread; it runs no tasks.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("spool writer: no timer: {e}");
            return;
        }
    };
    let recv = |rx: &mut mpsc::Receiver<Op>, wait: &Wait| -> Received {
        match wait {
            Wait::Forever => rx.blocking_recv().map_or(Received::Closed, Received::Op),
            Wait::Until(at) => rt.block_on(async {
                match tokio::time::timeout_at((*at).into(), rx.recv()).await {
                    Ok(Some(op)) => Received::Op(op),
                    Ok(None) => Received::Closed,
                    Err(_) => Received::Timeout,
                }
            }),
        }
    };
    let mut waiting: Vec<Pending> = Vec::new();
    let mut batch = BatchSize::default();
    // Set while outcomes are appended but not yet durable.
    let mut lazy_until: Option<Instant> = None;
    loop {
        let wait = lazy_until.map_or(Wait::Forever, Wait::Until);
        match recv(&mut rx, &wait) {
            Received::Closed => break,
            Received::Timeout => {}
            Received::Op(op) => {
                if apply(&mut spool, op, &mut waiting) && lazy_until.is_none() {
                    lazy_until = Some(Instant::now() + OUTCOME_COMMIT_DELAY);
                }
            }
        }
        // Take everything already queued.
        while let Ok(op) = rx.try_recv() {
            if apply(&mut spool, op, &mut waiting) && lazy_until.is_none() {
                lazy_until = Some(Instant::now() + OUTCOME_COMMIT_DELAY);
            }
        }
        if !waiting.is_empty() {
            // Group commit window: wait for messages still streaming in,
            // and for as many as the last batches had.
            let until = Instant::now() + commit_delay;
            let mut timed_out = false;
            while (spool.open_count() > 0 || waiting.len() < batch.target) && !timed_out {
                match recv(&mut rx, &Wait::Until(until)) {
                    Received::Op(op) => {
                        if apply(&mut spool, op, &mut waiting) && lazy_until.is_none() {
                            lazy_until = Some(Instant::now() + OUTCOME_COMMIT_DELAY);
                        }
                    }
                    Received::Timeout | Received::Closed => timed_out = true,
                }
            }
            batch.learn(waiting.len(), timed_out);
        } else if lazy_until.is_none_or(|t| Instant::now() < t) {
            continue;
        }
        lazy_until = None;
        commit(&mut spool, &mut waiting);
        full.store(spool.is_full(), Ordering::Relaxed);
    }
    // All handles are gone: make what was appended durable.
    commit(&mut spool, &mut waiting);
}

/// Most messages one commit waits for: at most this many sessions can be
/// waiting at once in practice (the inbound limit's bound).
pub const MAX_BATCH_TARGET: usize = 64;

/// After this many commits in a row that filled up before the window
/// closed, the next one waits for one message more.
pub const BATCH_GROWTH_AFTER: u32 = 8;

/// How many messages a commit waits for (within `commit_delay`): the
/// batch size that recent commits reached. It grows by one after
/// [`BATCH_GROWTH_AFTER`] full batches in a row and drops to what arrived
/// when the window closes first, so that a steady set of senders shares
/// each fsync and a lone sender waits the window rarely.
struct BatchSize {
    target: usize,
    full_in_a_row: u32,
}

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize {
            target: 1,
            full_in_a_row: 0,
        }
    }
}

impl BatchSize {
    fn learn(&mut self, got: usize, timed_out: bool) {
        if timed_out {
            self.target = got.clamp(1, MAX_BATCH_TARGET);
            self.full_in_a_row = 0;
            return;
        }
        self.target = self.target.max(got).min(MAX_BATCH_TARGET);
        self.full_in_a_row += 1;
        if self.full_in_a_row >= BATCH_GROWTH_AFTER {
            self.target = (self.target + 1).min(MAX_BATCH_TARGET);
            self.full_in_a_row = 0;
        }
    }
}

enum Received {
    Op(Op),
    Timeout,
    Closed,
}

/// One write and one fsync for everything appended; then the answers
/// that waited for it, and the removal of finished segments.
fn commit<Q: Queue>(spool: &mut Q, waiting: &mut Vec<Pending>) {
    let committed = spool.commit();
    if let Err(e) = &committed {
        log::error!("spool commit failed: {e}");
    }
    for p in waiting.drain(..) {
        let Pending::Unit(reply, result) = p;
        let result = match (&committed, result) {
            (Err(e), Ok(())) => Err(SpoolError::Io {
                path: spool.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            }),
            (_, r) => r,
        };
        let _ = reply.send(result);
    }
    if committed.is_ok()
        && let Err(e) = spool.collect_garbage()
    {
        log::warn!("spool: removing finished segments: {e}");
    }
}

/// Applies one request; returns true when it appended a record that no
/// one waits for (an outcome, a retry time): it needs a commit, but not
/// at once. Requests that wait for durability go to `waiting`.
fn apply<Q: Queue>(spool: &mut Q, op: Op, waiting: &mut Vec<Pending>) -> bool {
    match op {
        // A message's beginning and body need no commit of their own:
        // its End brings them to disk.
        Op::Begin {
            from,
            rcpts,
            received,
            flags,
            reply,
        } => {
            let _ = reply.send(spool.begin(from, rcpts, received, flags));
            false
        }
        Op::Body { id, data } => {
            if let Err(e) = spool.body(id, &data) {
                log::debug!("spool: message {id:016X}: {e}");
            }
            false
        }
        Op::Head { id, data } => {
            if let Err(e) = spool.head(id, &data) {
                log::warn!("spool: message {id:016X}: {e}");
            }
            false
        }
        Op::End { id, reply } => {
            waiting.push(Pending::Unit(reply, spool.end(id)));
            false
        }
        Op::Abort { id } => {
            spool.abort(id);
            false
        }
        Op::Outcome { id, index, outcome } => {
            if let Err(e) = spool.outcome(id, index, outcome) {
                log::debug!("spool: outcome of {id:016X}: {e}");
            }
            true
        }
        Op::Retry { id, next_at, error } => {
            if let Err(e) = spool.retry(id, next_at, &error) {
                log::debug!("spool: retry of {id:016X}: {e}");
            }
            true
        }
        Op::Delete { id, reply } => {
            waiting.push(Pending::Unit(reply, spool.delete(id)));
            false
        }
        Op::Warned { id } => {
            if let Err(e) = spool.warned(id) {
                log::debug!("spool: warning of {id:016X}: {e}");
            }
            true
        }
        Op::Flush => {
            spool.flush_all();
            false
        }
        Op::Summary { reply } => {
            let _ = reply.send(spool.summary());
            false
        }
        Op::Commit { reply } => {
            waiting.push(Pending::Unit(reply, Ok(())));
            false
        }
        Op::Snapshot { reply } => {
            let _ = reply.send(spool.list());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::spool::{Limits, Spool};

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_messages_share_fsyncs() {
        let d = std::env::temp_dir().join(format!("pocobelle-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let spool = Spool::open(
            &d,
            Limits {
                max_bytes: 64 << 20,
                min_free_bytes: 0,
                segment_bytes: 4 << 20,
            },
        )
        .unwrap();
        let h = SpoolHandle::start(spool, Duration::from_millis(2));
        let mut tasks = vec![];
        for i in 0..50 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let id = h
                    .begin(
                        "a@b.test".into(),
                        vec![format!("u{i}@home.arpa")],
                        1,
                        MessageFlags::default(),
                    )
                    .await
                    .unwrap();
                h.body(id, format!("message {i}\r\n").into_bytes())
                    .await
                    .unwrap();
                h.end(id).await.unwrap();
                id
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.len(), 50);
        for e in &snap {
            let body = crate::mail::spool::read_extents(&d, &e.extents).unwrap();
            assert!(body.starts_with(b"message "));
        }
        drop(h);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn outcomes_wait_for_a_batch_but_not_longer_than_the_bound() {
        let d = std::env::temp_dir().join(format!("pocobelle-writer-o-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let spool = Spool::open(
            &d,
            Limits {
                max_bytes: 64 << 20,
                min_free_bytes: 0,
                segment_bytes: 4 << 20,
            },
        )
        .unwrap();
        let h = SpoolHandle::start(spool, Duration::from_millis(2));
        let mut ids = vec![];
        for i in 0..3 {
            let id = h
                .begin(
                    "a@b.test".into(),
                    vec![format!("u{i}@home.arpa")],
                    1,
                    MessageFlags::default(),
                )
                .await
                .unwrap();
            h.body(id, b"x\r\n".to_vec()).await.unwrap();
            h.end(id).await.unwrap();
            ids.push(id);
        }
        let size = |d: &std::path::Path| -> u64 {
            std::fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        };
        let acked = size(&d);
        let started = std::time::Instant::now();
        h.outcome(ids[0], 0, Outcome::Delivered).await.unwrap();
        // A snapshot is answered after the outcome was applied.
        assert_eq!(h.snapshot().await.unwrap().len(), 2);
        assert_eq!(size(&d), acked, "an outcome alone is not written at once");
        // The next message's commit carries it.
        let id = h
            .begin(
                "a@b.test".into(),
                vec!["v@home.arpa".into()],
                1,
                MessageFlags::default(),
            )
            .await
            .unwrap();
        h.end(id).await.unwrap();
        let with_msg = size(&d);
        // Recovery (a second reader of the same files) sees the outcome.
        let again = Spool::open(
            &d,
            Limits {
                max_bytes: 64 << 20,
                min_free_bytes: 0,
                segment_bytes: 4 << 20,
            },
        )
        .unwrap();
        assert_eq!(again.messages().count(), 3, "the delivered one is finished");
        drop(again);
        // With no more mail, an outcome is committed within the bound.
        h.outcome(ids[1], 0, Outcome::Delivered).await.unwrap();
        assert_eq!(h.snapshot().await.unwrap().len(), 2);
        tokio::time::sleep(OUTCOME_COMMIT_DELAY + Duration::from_millis(300)).await;
        assert!(size(&d) > with_msg, "outcome committed within the bound");
        assert!(started.elapsed() >= OUTCOME_COMMIT_DELAY);
        drop(h);
        let _ = std::fs::remove_dir_all(&d);
    }
}
