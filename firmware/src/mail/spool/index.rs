//! The spool's in-memory message table: messages being received (open),
//! queued messages with their recipients' states, retry times and body
//! extents, and which of them are durable yet. Rebuilt by recovery at
//! start, kept by the spool's operations after it. No file access: where
//! bytes are is the log's business, and every bound here is named.

use std::collections::{BTreeMap, BTreeSet};

use super::SpoolError;
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
    /// How many of `extents` are heads (at the front, in the order
    /// written).
    pub(super) heads: usize,
}

impl Open {
    pub(super) fn new(env: StoredEnvelope, seq: u64) -> Open {
        Open {
            env,
            extents: Vec::new(),
            size: 0,
            segs: BTreeSet::from([seq]),
            heads: 0,
        }
    }

    /// Adds the bytes of a body record (at the end) or of a head record
    /// (in front of the body, after earlier heads), from segment `seq`.
    pub(super) fn add(&mut self, seq: u64, offset: u64, len: usize, head: bool) {
        let e = Extent {
            seg: seq,
            offset,
            len: len as u32,
        };
        if head {
            self.extents.insert(self.heads, e);
            self.heads += 1;
        } else {
            self.extents.push(e);
        }
        self.size += len as u64;
        self.segs.insert(seq);
    }
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
    /// Open messages whose first records were in a commit that failed
    /// (their bytes may be gone): dropped, and their End fails.
    /// Bounded by [`MAX_OPEN_MESSAGES`].
    pub(super) uncommitted: BTreeSet<u64>,
    /// Messages ended since the last successful commit, which marks them
    /// durable; a subset of `msgs` (bounded by [`MAX_MESSAGES`]).
    pub(super) fresh: Vec<u64>,
}

impl Index {
    /// The next message id: above every id so far, and at least the time
    /// in microseconds (`now_micros`), so ids sort by arrival. Ids never
    /// wrap: past `u64::MAX` (only a record carrying an id from far off
    /// gets there) there is none, and the message is refused.
    pub(super) fn next_id(&mut self, now_micros: u64) -> Result<u64, SpoolError> {
        let id = self
            .last_id
            .checked_add(1)
            .ok_or(SpoolError::IdsExhausted { last: self.last_id })?
            .max(now_micros);
        self.last_id = id;
        Ok(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_from_the_last_or_the_clock_and_never_wrap() {
        let mut ix = Index {
            last_id: 10,
            ..Index::default()
        };
        assert_eq!(ix.next_id(5).unwrap(), 11);
        assert_eq!(ix.next_id(100).unwrap(), 100);
        ix.last_id = u64::MAX - 1;
        assert_eq!(ix.next_id(7).unwrap(), u64::MAX);
        for _ in 0..2 {
            assert!(matches!(
                ix.next_id(7),
                Err(SpoolError::IdsExhausted { last: u64::MAX })
            ));
        }
        assert_eq!(ix.last_id, u64::MAX);
    }
}
