//! The spool's single writer: one OS thread owns the [`Spool`] and does
//! all its blocking file I/O, so that an fsync never stalls the sessions
//! on the (single-threaded) async runtime. Requests arrive on a bounded
//! channel; the thread applies every request that is waiting, then makes
//! them durable with one commit (group commit) and only then answers the
//! ones that wait for durability: a 250 reply always follows the fsync
//! that holds its message.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::record::Outcome;
use super::{Spool, SpoolError};

/// Requests waiting for the writer; senders wait when it is full, so
/// sessions slow down to the disk's pace instead of growing memory.
pub const QUEUE_DEPTH: usize = 64;

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
    #[serde(skip)]
    pub extents: Vec<super::Extent>,
}

type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

enum Op {
    Begin {
        from: String,
        rcpts: Vec<String>,
        received: u64,
        reply: Reply<u64>,
    },
    Body {
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
    Snapshot {
        reply: oneshot::Sender<Vec<QueueEntry>>,
    },
}

/// A cheap handle to the writer thread.
#[derive(Clone)]
pub struct SpoolHandle {
    tx: mpsc::Sender<Op>,
    dir: std::path::PathBuf,
    full: Arc<AtomicBool>,
}

/// A durable answer that is sent after the next commit.
enum Pending {
    Unit(Reply<()>, Result<(), SpoolError>),
}

impl SpoolHandle {
    /// Starts the writer thread for `spool`. `commit_delay` lets a commit
    /// wait a little to gather more messages into the same fsync.
    pub fn start(spool: Spool, commit_delay: Duration) -> SpoolHandle {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let dir = spool.dir().to_path_buf();
        let full = Arc::new(AtomicBool::new(spool.admit(0).is_err()));
        let flag = full.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || run(spool, rx, commit_delay, flag))
            .expect("the spool writer thread starts");
        SpoolHandle { tx, dir, full }
    }

    /// True when the spool was over a limit after the last commit: new
    /// mail gets 452 at MAIL FROM.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    async fn send(&self, op: Op) -> Result<(), SpoolError> {
        self.tx.send(op).await.map_err(|_| SpoolError::WriterGone)
    }

    pub async fn begin(
        &self,
        from: String,
        rcpts: Vec<String>,
        received: u64,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Begin {
            from,
            rcpts,
            received,
            reply,
        })
        .await?;
        rx.await.map_err(|_| SpoolError::WriterGone)?
    }

    pub async fn body(&self, id: u64, data: Vec<u8>) -> Result<(), SpoolError> {
        self.send(Op::Body { id, data }).await
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

fn run(
    mut spool: Spool,
    mut rx: mpsc::Receiver<Op>,
    commit_delay: Duration,
    full: Arc<AtomicBool>,
) {
    let mut waiting: Vec<Pending> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut dirty = apply(&mut spool, first, &mut waiting);
        if !commit_delay.is_zero() && !waiting.is_empty() {
            std::thread::sleep(commit_delay);
        }
        while let Ok(op) = rx.try_recv() {
            dirty |= apply(&mut spool, op, &mut waiting);
        }
        if dirty || !waiting.is_empty() {
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
        full.store(spool.admit(0).is_err(), Ordering::Relaxed);
    }
    // All handles are gone: make what was appended durable.
    let _ = spool.commit();
}

/// Applies one request; returns true when it appended something that
/// needs a commit.
fn apply(spool: &mut Spool, op: Op, waiting: &mut Vec<Pending>) -> bool {
    match op {
        // A message's beginning and body need no commit of their own:
        // its End brings them to disk.
        Op::Begin {
            from,
            rcpts,
            received,
            reply,
        } => {
            let _ = reply.send(spool.begin(from, rcpts, received));
            false
        }
        Op::Body { id, data } => {
            if let Err(e) = spool.body(id, &data) {
                log::debug!("spool: message {id:016X}: {e}");
            }
            false
        }
        Op::End { id, reply } => {
            waiting.push(Pending::Unit(reply, spool.end(id)));
            true
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
            true
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
        Op::Snapshot { reply } => {
            let list = spool
                .messages()
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
                    extents: m.extents.clone(),
                })
                .collect();
            let _ = reply.send(list);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::spool::Limits;

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
                    .begin("a@b.test".into(), vec![format!("u{i}@home.arpa")], 1)
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
}
