//! The scheduler's decisions, pure: from a snapshot of the queue, the
//! time, the limits and what is in flight, which messages bounce for
//! their age, which senders get a "delayed" DSN, and which recipients go
//! out now, grouped by next hop into one batch per connection. No I/O, no
//! clock, no DNS: the executor ([`super::Scheduler`]) does those, and
//! records what happened through the spool writer.
//!
//! The rules:
//! - A message a delivery task holds, or whose task finished after the
//!   snapshot was requested (the snapshot may still show it pending), is
//!   left alone: no batch, no warning, no bounce. A message with
//!   recipients at several hops goes out in several batches at once; it
//!   is held until the last of them finishes (the first one finishing
//!   must not free the others' recipients for another connection).
//! - Past `received + max_lifetime_s` (and only then, whatever the
//!   errors so far said) a message's pending recipients bounce.
//! - A message is due at `next_at`; a configured route with waiting mail
//!   is also tried every `probe_interval_s` (a probe), with what waits
//!   for it. MX destinations are never probed.
//! - One batch per hop per round, at most [`MAX_MESSAGES_PER_CONNECTION`]
//!   messages, due ones first; no hop over `per_destination_limit`
//!   connections, no more than `outbound_limit` in all. When the total
//!   limit leaves out batches, those holding the oldest due mail go first
//!   (a busy destination cannot starve a quiet one); the rest wait for
//!   the next round.
//! - Recipients with a final outcome are not in the snapshot's pending
//!   list, so they are never sent again.
//! - A message whose bounce or delay notice could not be queued (a full
//!   spool) gets no other notice attempt until its backoff has passed
//!   ([`InFlight::noticed`]), rather than one every round (a round
//!   is at most a second apart) with an error logged each time.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Hop, MAX_MESSAGES_PER_CONNECTION, MAX_WARNINGS_PER_ROUND, backoff, domain_of, route};
use crate::config::MailConfig;
use crate::mail::client::Outgoing;
use crate::mail::queue::QueueEntry;

/// What the planner sees of a queued message: the queue's own listing
/// (durable messages only, pending recipients only).
pub type QueuedView = QueueEntry;

/// The configuration the planner follows.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Routes and smart host: where each domain's mail goes.
    pub routes: &'a MailConfig,
    /// Connections at once, in all.
    pub outbound_limit: usize,
    /// Connections at once to one hop.
    pub per_destination_limit: usize,
    /// A message older than this bounces.
    pub max_lifetime_s: u64,
    /// A message waiting this long gets one "delayed" DSN (0: never).
    pub delay_warning_s: u64,
    /// Configured routes with waiting mail are tried this often.
    pub probe_interval_s: u64,
    /// Backoff bounds (see [`backoff`]).
    pub retry_min_s: u64,
    pub retry_max_s: u64,
}

impl<'a> Limits<'a> {
    pub fn new(config: &'a MailConfig) -> Limits<'a> {
        Limits {
            routes: config,
            outbound_limit: config.outbound_limit,
            per_destination_limit: config.per_destination_limit,
            max_lifetime_s: config.max_lifetime_s,
            delay_warning_s: config.delay_warning_s,
            probe_interval_s: config.probe_interval_s,
            retry_min_s: config.retry_min_s,
            retry_max_s: config.retry_max_s,
        }
    }

    /// When a message that has now failed `attempts` times (this one
    /// included) is tried again; `seed` spreads the jitter.
    pub fn retry_at(&self, attempts: u32, now: u64, seed: u64) -> u64 {
        now.saturating_add(backoff(self.retry_min_s, self.retry_max_s, attempts, seed))
    }
}

/// What the executor has under way; it updates this as batches start
/// and finish. Bounded by the queue's size.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Messages delivery tasks hold: how many batches hold each (one per
    /// hop it has recipients at, at most).
    pub ids: HashMap<u64, usize>,
    /// Messages whose delivery task finished since the last snapshot was
    /// requested (cleared at each round's start).
    pub finished: HashSet<u64>,
    /// Connections under way per hop.
    pub per_hop: HashMap<Hop, usize>,
    /// When configured routes were last probed.
    pub last_probe: u64,
    /// Messages whose last notice (bounce or delay warning) could not be
    /// queued: when the next try may be, and how many tries failed.
    /// Bounded by the queue's size (see [`InFlight::forget_notices`]).
    pub notices_held: HashMap<u64, (u64, u32)>,
}

impl InFlight {
    pub fn busy(&self, id: u64) -> bool {
        self.ids.contains_key(&id) || self.finished.contains(&id)
    }

    /// Whether message `id`'s notice waits for its backoff at `now`.
    pub fn notice_held(&self, id: u64, now: u64) -> bool {
        self.notices_held.get(&id).is_some_and(|&(at, _)| now < at)
    }

    /// Message `id`'s notice was queued (`told`) at `now`, or could not
    /// be: then the next try waits as a failed delivery would.
    pub fn noticed(&mut self, id: u64, told: bool, now: u64, limits: &Limits) {
        if told {
            self.notices_held.remove(&id);
            return;
        }
        let fails = self.notices_held.get(&id).map_or(1, |&(_, n)| n + 1);
        let at = limits.retry_at(fails, now, id ^ now);
        self.notices_held.insert(id, (at, fails));
    }

    /// Drops what is held for messages no longer in `snapshot`.
    pub fn forget_notices(&mut self, snapshot: &[QueuedView]) {
        if self.notices_held.is_empty() {
            return;
        }
        let ids: HashSet<u64> = snapshot.iter().map(|e| e.id).collect();
        self.notices_held.retain(|id, _| ids.contains(id));
    }

    /// Connections under way, in all.
    pub fn connections(&self) -> usize {
        self.per_hop.values().sum()
    }

    /// A batch of the plan starts: its connection and its messages are
    /// taken until [`InFlight::finish`].
    pub fn start(&mut self, b: &Batch) {
        *self.per_hop.entry(b.hop.clone()).or_default() += 1;
        for m in &b.msgs {
            *self.ids.entry(m.id).or_default() += 1;
        }
    }

    /// The batch to `hop` holding `ids` finished (its outcomes are on
    /// their way to the queue). A message is free once no batch holds it.
    pub fn finish(&mut self, hop: &Hop, ids: &[u64]) {
        for id in ids {
            if let Some(n) = self.ids.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.ids.remove(id);
                }
            }
            self.finished.insert(*id);
        }
        if let Some(n) = self.per_hop.get_mut(hop) {
            *n = n.saturating_sub(1);
        }
    }
}

/// One connection's worth of messages.
#[derive(Debug, Clone)]
pub struct Batch {
    pub hop: Hop,
    /// Due messages first; each with only its recipients at this hop.
    pub msgs: Vec<Outgoing>,
}

/// What to do this round.
#[derive(Debug, Default)]
pub struct Plan {
    /// Indices (in the snapshot) of messages past their lifetime: their
    /// pending recipients bounce, with a DSN to the sender.
    pub expire: Vec<usize>,
    /// Indices of messages whose sender gets the "delayed" DSN now (at
    /// most [`MAX_WARNINGS_PER_ROUND`]).
    pub warn: Vec<usize>,
    /// Connections to open, at most as many as the limits leave room for.
    pub batches: Vec<Batch>,
    /// Configured routes were probed: the executor sets `last_probe`.
    pub probed: bool,
}

/// The scheduler's round, decided.
pub fn plan(snapshot: &[QueuedView], now: u64, limits: &Limits, in_flight: &InFlight) -> Plan {
    let probe = now >= in_flight.last_probe.saturating_add(limits.probe_interval_s);
    let mut out = Plan {
        probed: probe,
        ..Plan::default()
    };
    let mut by_hop: BTreeMap<Hop, Vec<Outgoing>> = BTreeMap::new();
    for (k, e) in snapshot.iter().enumerate() {
        if in_flight.busy(e.id) || e.pending.is_empty() {
            continue;
        }
        let held = in_flight.notice_held(e.id, now);
        if now > e.received.saturating_add(limits.max_lifetime_s) {
            if !held {
                out.expire.push(k);
            }
            continue;
        }
        if limits.delay_warning_s > 0
            && out.warn.len() < MAX_WARNINGS_PER_ROUND
            && !held
            && !e.warned
            && !e.from.is_empty()
            && now >= e.received.saturating_add(limits.delay_warning_s)
        {
            out.warn.push(k);
        }
        let mut rcpts_by_hop: BTreeMap<Hop, Vec<(u32, String)>> = BTreeMap::new();
        for (i, r) in &e.pending {
            rcpts_by_hop
                .entry(route(limits.routes, domain_of(r)))
                .or_default()
                .push((*i, r.clone()));
        }
        let due = e.next_at <= now;
        for (hop, rcpts) in rcpts_by_hop {
            // Probing: a route with waiting mail is tried at the probe
            // interval, whatever the backoff says (the laptop may be back).
            if due || (probe && matches!(hop, Hop::Fixed(_))) {
                by_hop.entry(hop).or_default().push(Outgoing {
                    id: e.id,
                    from: e.from.clone(),
                    rcpts,
                    extents: e.extents.clone(),
                    received: e.received,
                    due,
                    attempts: e.attempts,
                    flags: e.flags,
                    size: e.size,
                });
            }
        }
    }
    let batches: Vec<Batch> = by_hop
        .into_iter()
        .filter(|(hop, _)| {
            in_flight.per_hop.get(hop).copied().unwrap_or(0) < limits.per_destination_limit
        })
        .map(|(hop, msgs)| {
            // A probe alone is not worth a connection to an MX; a route
            // with nothing due is probed with what waits for it. (A
            // stable partition, due first: no sort code in the binary.)
            let (mut msgs, probes): (Vec<Outgoing>, Vec<Outgoing>) =
                msgs.into_iter().partition(|m| m.due);
            msgs.extend(probes);
            msgs.truncate(MAX_MESSAGES_PER_CONNECTION);
            Batch { hop, msgs }
        })
        .collect();
    // Within the total limit, the oldest due mail first, then hop order;
    // probes last. A selection of at most `outbound_limit` batches.
    let keys: Vec<(bool, u64)> = batches
        .iter()
        .map(|b| {
            b.msgs
                .iter()
                .filter(|m| m.due)
                .map(|m| m.received)
                .min()
                .map_or((true, 0), |r| (false, r))
        })
        .collect();
    let room = limits
        .outbound_limit
        .saturating_sub(in_flight.connections());
    let mut left: Vec<Option<Batch>> = batches.into_iter().map(Some).collect();
    while out.batches.len() < room {
        let Some(i) = (0..left.len())
            .filter(|&i| left[i].is_some())
            .min_by_key(|&i| keys[i])
        else {
            break;
        };
        if let Some(b) = left[i].take() {
            out.batches.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Route;

    const NOW: u64 = 1_000_000;

    fn config() -> MailConfig {
        let mut c = MailConfig {
            outbound_limit: 4,
            per_destination_limit: 2,
            max_lifetime_s: 5 * 86_400,
            delay_warning_s: 4 * 3600,
            probe_interval_s: 30,
            retry_min_s: 60,
            retry_max_s: 3600,
            ..MailConfig::default()
        };
        c.routes.insert("lan.test".into(), "192.0.2.9:25".into());
        c
    }

    fn entry(id: u64, rcpts: &[&str]) -> QueuedView {
        QueuedView {
            id,
            from: "sender@b.test".into(),
            pending: rcpts
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u32, r.to_string()))
                .collect(),
            size: 100,
            received: NOW - 60,
            attempts: 0,
            next_at: 0,
            last_error: String::new(),
            warned: false,
            flags: Default::default(),
            extents: Vec::new(),
        }
    }

    /// (hop, message ids) of each batch.
    fn shape(p: &Plan) -> Vec<(Hop, Vec<u64>)> {
        p.batches
            .iter()
            .map(|b| (b.hop.clone(), b.msgs.iter().map(|m| m.id).collect()))
            .collect()
    }

    fn mx(d: &str) -> Hop {
        Hop::Mx(d.into())
    }

    fn quiet() -> InFlight {
        InFlight {
            last_probe: NOW,
            ..InFlight::default()
        }
    }

    #[test]
    fn a_retry_waits_for_its_time() {
        let c = config();
        let l = Limits::new(&c);
        let mut e = entry(1, &["u@x.test"]);
        e.attempts = 1;
        e.next_at = NOW + 10;
        let q = [e];
        assert!(plan(&q, NOW, &l, &quiet()).batches.is_empty());
        assert!(plan(&q, NOW + 9, &l, &quiet()).batches.is_empty());
        let p = plan(&q, NOW + 10, &l, &quiet());
        assert_eq!(shape(&p), vec![(mx("x.test"), vec![1])]);
        assert!(p.batches[0].msgs[0].due);
        assert_eq!(p.batches[0].msgs[0].attempts, 1);
    }

    #[test]
    fn the_backoff_grows_to_its_cap_and_each_retry_waits_for_it() {
        let c = config();
        let l = Limits::new(&c);
        let mut e = entry(7, &["u@x.test"]);
        let mut now = NOW;
        let mut delays = Vec::new();
        for attempts in 1..=12 {
            // The attempt fails: the executor records the next time.
            e.attempts = attempts;
            e.next_at = l.retry_at(attempts, now, 7 ^ now);
            delays.push(e.next_at - now);
            let q = [e.clone()];
            assert!(plan(&q, e.next_at - 1, &l, &quiet()).batches.is_empty());
            assert_eq!(plan(&q, e.next_at, &l, &quiet()).batches.len(), 1);
            now = e.next_at;
        }
        // Doubling from 60 s (+-25%) up to 3600 s (+-25%).
        assert!((45..=75).contains(&delays[0]), "{delays:?}");
        for w in delays.windows(2).take(5) {
            assert!(w[1] > w[0], "{delays:?}");
        }
        for d in &delays[7..] {
            assert!((2700..=4500).contains(d), "{delays:?}");
        }
    }

    #[test]
    fn a_message_bounces_after_its_lifetime_and_never_before() {
        let c = config();
        let l = Limits::new(&c);
        let mut e = entry(3, &["u@x.test", "v@lan.test"]);
        e.received = NOW - c.max_lifetime_s;
        // However hopeless the errors so far: DNS failing for days.
        e.attempts = 60;
        e.last_error = "x.test: DNS lookup failed (SERVFAIL); no answer over TCP either".into();
        let q = [e];
        let p = plan(&q, NOW, &l, &quiet());
        assert!(p.expire.is_empty(), "not before the lifetime");
        assert_eq!(p.batches.len(), 2, "still delivered at the last second");
        let p = plan(&q, NOW + 1, &l, &quiet());
        assert_eq!(p.expire, vec![0]);
        assert!(p.batches.is_empty(), "an expired message is not sent");
        assert!(p.warn.is_empty(), "nor warned about");
    }

    #[test]
    fn per_destination_and_total_limits_hold_across_domains() {
        let c = config();
        let l = Limits::new(&c);
        let mut q = vec![
            entry(1, &["u@a.test"]),
            entry(2, &["u@b.test", "v@c.test"]),
            entry(3, &["u@a.test"]),
            entry(4, &["u@d.test"]),
        ];
        q[3].received -= 100; // the oldest mail
        let mut f = quiet();
        // a.test is at its limit; b.test has one connection of two.
        f.per_hop.insert(mx("a.test"), 2);
        f.per_hop.insert(mx("b.test"), 1);
        let p = plan(&q, NOW, &l, &f);
        // 3 connections under way, 4 in all: one more, the oldest mail's.
        assert_eq!(shape(&p), vec![(mx("d.test"), vec![4])]);
        f.per_hop.insert(mx("a.test"), 0);
        let p = plan(&q, NOW, &l, &f);
        // Room for 3 of the 4 hops: the oldest mail first, then in hop
        // order; c.test waits for the next round.
        assert_eq!(
            shape(&p),
            vec![
                (mx("d.test"), vec![4]),
                (mx("a.test"), vec![1, 3]),
                (mx("b.test"), vec![2]),
            ]
        );
        // Each batch carries only its hop's recipients.
        for b in &p.batches {
            for m in &b.msgs {
                for (_, r) in &m.rcpts {
                    assert_eq!(route(&c, domain_of(r)), b.hop);
                }
            }
        }
        // Without connections under way, every hop gets one batch up to
        // the total.
        let p = plan(&q, NOW, &l, &quiet());
        assert_eq!(p.batches.len(), 4);
        let hops: HashSet<Hop> = p.batches.iter().map(|b| b.hop.clone()).collect();
        assert_eq!(hops.len(), 4, "one batch per hop per round");
    }

    #[test]
    fn a_connection_carries_at_most_its_bound() {
        let c = config();
        let l = Limits::new(&c);
        let q: Vec<QueuedView> = (1..=MAX_MESSAGES_PER_CONNECTION as u64 + 20)
            .map(|id| entry(id, &["u@x.test"]))
            .collect();
        let p = plan(&q, NOW, &l, &quiet());
        assert_eq!(p.batches.len(), 1);
        assert_eq!(p.batches[0].msgs.len(), MAX_MESSAGES_PER_CONNECTION);
    }

    #[test]
    fn the_delay_warning_goes_once() {
        let c = config();
        let l = Limits::new(&c);
        let mut e = entry(5, &["u@x.test"]);
        e.received = NOW - c.delay_warning_s;
        e.next_at = NOW + 500;
        let mut q = vec![e];
        assert!(plan(&q, NOW - 1, &l, &quiet()).warn.is_empty());
        let p = plan(&q, NOW, &l, &quiet());
        assert_eq!(p.warn, vec![0]);
        assert!(p.batches.is_empty(), "a warning is not a delivery");
        // Marked once sent: never again.
        q[0].warned = true;
        assert!(plan(&q, NOW + 3600, &l, &quiet()).warn.is_empty());
        // Not to the null sender (no DSN about a DSN), not when disabled.
        q[0].warned = false;
        q[0].from.clear();
        assert!(plan(&q, NOW, &l, &quiet()).warn.is_empty());
        q[0].from = "s@b.test".into();
        let off = MailConfig {
            delay_warning_s: 0,
            ..config()
        };
        assert!(plan(&q, NOW, &Limits::new(&off), &quiet()).warn.is_empty());
        // At most so many per round; the rest next round.
        let many: Vec<QueuedView> = (0..MAX_WARNINGS_PER_ROUND as u64 + 5)
            .map(|id| {
                let mut e = entry(id, &["u@x.test"]);
                e.received = NOW - c.delay_warning_s;
                e
            })
            .collect();
        assert_eq!(
            plan(&many, NOW, &l, &quiet()).warn.len(),
            MAX_WARNINGS_PER_ROUND
        );
    }

    /// With a full spool the bounce notice of an expired message cannot
    /// be queued: it was tried again every round (a second apart), each
    /// time reading the original's headers and logging an error. Now it
    /// waits its backoff, growing with each failure, like a delivery.
    #[test]
    fn a_notice_that_could_not_be_queued_waits_its_backoff() {
        let c = config();
        let l = Limits::new(&c);
        let mut old = entry(7, &["u@x.test"]);
        old.received = 0; // past its lifetime
        let mut warn = entry(8, &["u@x.test"]);
        warn.received = NOW - c.delay_warning_s;
        let mut q = vec![old, warn];
        let mut st = quiet();
        let p = plan(&q, NOW, &l, &st);
        assert_eq!((p.expire.clone(), p.warn.clone()), (vec![0], vec![1]));
        st.noticed(7, false, NOW, &l);
        st.noticed(8, false, NOW, &l);
        let p = plan(&q, NOW + 1, &l, &st);
        assert!(p.expire.is_empty() && p.warn.is_empty(), "{p:?}");
        // Held, the expired message is not delivered meanwhile either.
        assert!(!shape(&p).iter().any(|(_, ids)| ids.contains(&7)));
        let (first, _) = st.notices_held[&7];
        assert!((NOW + 45..=NOW + 75).contains(&first), "{first}");
        let p = plan(&q, first, &l, &st);
        assert_eq!(p.expire, vec![0]);
        // A second failure waits longer.
        st.noticed(7, false, first, &l);
        let (second, n) = st.notices_held[&7];
        assert_eq!(n, 2);
        assert!(second - first >= 90, "{first} {second}");
        // Queued: no longer held. Gone from the queue: forgotten.
        st.noticed(7, true, first, &l);
        assert_eq!(plan(&q, first + 1, &l, &st).expire, vec![0]);
        q.remove(1);
        st.forget_notices(&q);
        assert!(st.notices_held.is_empty());
    }

    #[test]
    fn a_message_in_flight_is_not_planned_twice() {
        let c = config();
        let l = Limits::new(&c);
        let mut old = entry(2, &["u@x.test"]);
        old.received = 0; // past its lifetime and its warning
        let q = [
            entry(1, &["u@x.test", "v@lan.test"]),
            old,
            entry(3, &["u@x.test"]),
        ];
        let mut f = InFlight::default();
        f.ids.insert(1, 1);
        // Its task finished after the snapshot was asked for: the
        // snapshot may predate its outcomes.
        f.finished.insert(2);
        let p = plan(&q, NOW, &l, &f);
        assert_eq!(shape(&p), vec![(mx("x.test"), vec![3])]);
        assert!(p.expire.is_empty() && p.warn.is_empty());
    }

    #[test]
    fn a_message_at_two_hops_is_not_planned_again_while_one_batch_runs() {
        let c = config();
        let l = Limits::new(&c);
        // One message, recipients at two hops: two batches.
        let q = [entry(1, &["u@x.test", "v@y.test"])];
        let mut f = quiet();
        let p = plan(&q, NOW, &l, &f);
        assert_eq!(
            shape(&p),
            vec![(mx("x.test"), vec![1]), (mx("y.test"), vec![1])]
        );
        for b in &p.batches {
            f.start(b);
        }
        // The batch to x.test finishes first; the one to y.test still
        // runs (y.test has room for a second connection).
        f.finish(&mx("x.test"), &[1]);
        // The next round: its snapshot came after that finish, and still
        // lists y.test's recipient as pending (its delivery runs).
        f.finished.clear();
        let mut q = q;
        q[0].pending.remove(0);
        let p = plan(&q, NOW, &l, &f);
        assert!(
            p.batches.is_empty(),
            "y.test's recipient planned again while its batch runs: {:?}",
            shape(&p)
        );
        assert!(p.expire.is_empty() && p.warn.is_empty());
        // Once the second batch finishes (and a round later), the
        // message is free again.
        f.finish(&mx("y.test"), &[1]);
        assert!(plan(&q, NOW, &l, &f).batches.is_empty(), "finished");
        f.finished.clear();
        assert_eq!(shape(&plan(&q, NOW, &l, &f)), vec![(mx("y.test"), vec![1])]);
        assert!(f.per_hop.values().all(|&n| n == 0));
    }

    #[test]
    fn recipients_already_done_are_not_sent_again() {
        let c = config();
        let l = Limits::new(&c);
        // Recipient 1 has its outcome: the queue lists 0 and 2 only.
        let mut e = entry(9, &["u@x.test", "v@x.test", "w@x.test"]);
        e.pending.remove(1);
        let p = plan(&[e], NOW, &l, &quiet());
        let idx: Vec<u32> = p.batches[0].msgs[0].rcpts.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 2]);
    }

    #[test]
    fn recipients_done_in_the_queue_are_left_out_of_the_plan() {
        use crate::mail::queue::{MemQueue, Queue};
        use crate::mail::spool::record::{MessageFlags, Outcome};
        let c = config();
        let l = Limits::new(&c);
        let (mut q, _) = MemQueue::new();
        let rcpts = ["u@x.test", "v@x.test", "w@lan.test"];
        let id = q
            .begin(
                "s@b.test".into(),
                rcpts.iter().map(|r| r.to_string()).collect(),
                NOW - 10,
                MessageFlags::default(),
            )
            .unwrap();
        q.end(id).unwrap();
        q.commit().unwrap();
        q.outcome(id, 0, Outcome::Delivered).unwrap();
        q.outcome(id, 2, Outcome::Bounced).unwrap();
        let p = plan(&q.list(), NOW, &l, &quiet());
        assert_eq!(shape(&p), vec![(mx("x.test"), vec![id])]);
        assert_eq!(
            p.batches[0].msgs[0].rcpts,
            vec![(1, "v@x.test".to_string())]
        );
        q.outcome(id, 1, Outcome::Delivered).unwrap();
        assert!(plan(&q.list(), NOW, &l, &quiet()).batches.is_empty());
    }

    #[test]
    fn configured_routes_are_probed_mx_hosts_are_not() {
        let c = config();
        let l = Limits::new(&c);
        let mut waiting = entry(1, &["u@lan.test", "v@x.test"]);
        waiting.next_at = NOW + 1000;
        let due = entry(2, &["w@lan.test"]);
        let q = [waiting, due];
        let hop = Hop::Fixed(Route::from("192.0.2.9:25"));
        // Probe time: the route gets its due mail, then what waits.
        let f = InFlight {
            last_probe: NOW - 30,
            ..InFlight::default()
        };
        let p = plan(&q, NOW, &l, &f);
        assert!(p.probed);
        assert_eq!(shape(&p), vec![(hop.clone(), vec![2, 1])]);
        assert_eq!(
            p.batches[0].msgs.iter().map(|m| m.due).collect::<Vec<_>>(),
            vec![true, false]
        );
        // Between probes: the due message only.
        let f = InFlight {
            last_probe: NOW - 29,
            ..InFlight::default()
        };
        let p = plan(&q, NOW, &l, &f);
        assert!(!p.probed);
        assert_eq!(shape(&p), vec![(hop, vec![2])]);
    }
}
