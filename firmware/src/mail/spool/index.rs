//! The spool's in-memory message table: messages being received (open),
//! queued messages with their recipients' states, retry times and body
//! extents, and which of them are durable yet. Rebuilt by recovery at
//! start, kept by the spool's operations after it. No file access: where
//! bytes are is the log's business, and every bound here is named.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{Outcome, StoredEnvelope};

/// At most this many messages may be open (receiving DATA) at once; the
/// listener's session limit keeps it far lower.
pub const MAX_OPEN_MESSAGES: usize = 256;

/// At most this many queued messages; past it, new mail gets 452.
pub const MAX_MESSAGES: usize = 100_000;

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
    pub(super) segs: BTreeSet<u64>,
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

/// A message whose body is still arriving.
#[derive(Debug)]
pub(super) struct Open {
    pub(super) env: StoredEnvelope,
    pub(super) extents: Vec<Extent>,
    pub(super) size: u64,
    pub(super) segs: BTreeSet<u64>,
}

/// The table.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Bounded by [`MAX_OPEN_MESSAGES`].
    pub(super) open: BTreeMap<u64, Open>,
    /// Bounded by [`MAX_MESSAGES`].
    pub(super) msgs: BTreeMap<u64, Message>,
    /// The highest id given or recovered; ids count up from it.
    pub(super) last_id: u64,
    /// Open messages dropped because the spool filled up while their
    /// body streamed in; their End gets `Full` (452), not a local error.
    /// Bounded by [`MAX_OPEN_MESSAGES`].
    pub(super) refused: BTreeSet<u64>,
    /// Messages ended since the last successful commit, which marks them
    /// durable; a subset of `msgs` (bounded by [`MAX_MESSAGES`]).
    pub(super) fresh: Vec<u64>,
}

impl Index {
    /// The next message id: above every id so far, and at least the time
    /// in microseconds (`now_micros`), so ids sort by arrival.
    pub(super) fn next_id(&mut self, now_micros: u64) -> u64 {
        let id = (self.last_id + 1).max(now_micros);
        self.last_id = id;
        id
    }

    /// A commit succeeded: the messages ended before it are durable.
    pub(super) fn mark_durable(&mut self) {
        for id in self.fresh.drain(..) {
            if let Some(m) = self.msgs.get_mut(&id) {
                m.durable = true;
            }
        }
    }

    /// Removes `id` if every recipient has its outcome; returns it.
    pub(super) fn take_if_finished(&mut self, id: u64) -> Option<Message> {
        if self.msgs.get(&id).is_some_and(Message::is_finished) {
            self.msgs.remove(&id)
        } else {
            None
        }
    }
}
