//! The scheduler: decides what to deliver when, and does it. The
//! decisions are pure ([`plan()`]: from a queue snapshot, the time, the
//! limits and what is in flight, the batches per next hop, the messages
//! to bounce for their age and the senders to warn). This module is the
//! executor around them: it reads the queue from the spool writer, keeps
//! the record of what is in flight, runs one connection per batch (reuse
//! for several messages), and turns results into spool records:
//! delivered, bounced (with a DSN to the sender), or a retry with
//! exponential backoff and jitter. A message waiting longer than
//! `delay_warning_s` gets one "delayed" DSN, marked in the spool so that
//! it is sent once. It never writes spool files itself and never bounces
//! on a temporary failure. While the UPS monitor says the board runs on
//! battery (`init::power`'s `throttle`), delivery drops to a trickle:
//! one connection at a time, `ups.trickle_gap_secs` apart.

pub mod plan;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use self::plan::{Batch, InFlight, Limits, plan};
use super::client::{Client, Credentials, OutboundTls, Outgoing, ServerReply, Session};
use super::dsn::{Dsn, DsnKind, MAX_DSN_HEADERS};
use super::queue::QueueEntry;
use super::spool::record::{MessageFlags, Outcome};
use super::spool::writer::SpoolHandle;
use super::spool::{Extent, Spool};
use crate::config::{MailConfig, Route, TlsMode};

/// How often the scheduler looks at the queue when nothing wakes it.
pub const TICK: Duration = Duration::from_secs(1);

/// At most this many messages go over one connection before it is closed
/// and the rest wait for the next round.
pub const MAX_MESSAGES_PER_CONNECTION: usize = 100;

/// At most this many delay warnings are queued per scheduler round (each
/// waits for a durable commit); the rest follow in the next rounds.
pub const MAX_WARNINGS_PER_ROUND: usize = 32;
/// Longest error text kept for a deferred message (every address tried,
/// in order, each with its reason): the queue's bound.
pub use super::queue::MAX_ERROR_TEXT;

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hop {
    /// A configured route or the smart host.
    Fixed(Route),
    /// No route: MX lookup for this domain.
    Mx(String),
}

/// The routing table from configuration.
pub fn route(config: &MailConfig, domain: &str) -> Hop {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(h) = config.routes.get(&d) {
        return Hop::Fixed(h.clone());
    }
    if let Some(h) = &config.smarthost {
        return Hop::Fixed(h.clone());
    }
    Hop::Mx(d)
}

fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Next retry time: `min * 2^(attempts-1)`, capped at `max`, with +-25%
/// jitter so a backlog does not retry in lockstep.
pub fn backoff(min_s: u64, max_s: u64, attempts: u32, jitter_seed: u64) -> u64 {
    let exp = attempts.saturating_sub(1).min(30);
    let base = min_s.saturating_mul(1u64 << exp).min(max_s);
    let mut x = jitter_seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let quarter = base / 4;
    if quarter == 0 {
        return base.max(1);
    }
    (base - quarter + x % (2 * quarter + 1)).max(1)
}

pub struct Scheduler {
    config: MailConfig,
    hostname: String,
    spool: SpoolHandle,
    kick: Arc<Notify>,
    tls: OutboundTls,
    /// What is under way: the planner's view of it.
    state: Mutex<InFlight>,
    /// The run directory holding the UPS monitor's power file, when a
    /// UPS is watched, and the pause between connections on battery.
    power_dir: Option<(std::path::PathBuf, Duration)>,
    /// Delivery is slowed to a trickle (on battery): said once per change.
    trickling: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    pub fn new(
        config: MailConfig,
        hostname: String,
        spool: SpoolHandle,
        kick: Arc<Notify>,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            tls: OutboundTls::new(&config),
            config,
            hostname,
            spool,
            kick,
            state: Mutex::new(InFlight::default()),
            power_dir: None,
            trickling: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Slows delivery to a trickle, connections `gap` apart, while the
    /// power file in `run_dir` says the board is on battery.
    pub fn with_power_dir(
        mut self: Arc<Self>,
        run_dir: &std::path::Path,
        gap: Duration,
    ) -> Arc<Self> {
        if let Some(s) = Arc::get_mut(&mut self) {
            s.power_dir = Some((run_dir.to_path_buf(), gap));
        }
        self
    }

    /// The pause between connections the UPS monitor asks for now.
    fn trickle_gap(&self) -> Option<Duration> {
        let (dir, gap) = self.power_dir.as_ref()?;
        let p = crate::init::power::read(dir)?.ok()?;
        p.throttle.then_some(*gap)
    }

    /// Runs forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.clone().round().await {
                log::warn!("mail: scheduler: {e}");
            }
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn round(self: Arc<Self>) -> Result<(), super::spool::SpoolError> {
        let now = Spool::unix_now();
        // Everything finished so far is reflected in the snapshot
        // requested next; what finishes meanwhile is left for a round.
        self.locked().finished.clear();
        let queue = self.spool.snapshot().await?;
        let trickle = self.trickle_gap();
        let was = self
            .trickling
            .swap(trickle.is_some(), std::sync::atomic::Ordering::Relaxed);
        if was != trickle.is_some() {
            log::info!(
                "mail: {}",
                if trickle.is_some() {
                    "on battery: outbound delivery slowed to one connection at a time"
                } else {
                    "power back: outbound delivery at full speed"
                }
            );
        }
        let mut limits = Limits::new(&self.config);
        if trickle.is_some() {
            limits.outbound_limit = 1;
        }
        let plan = {
            let mut st = self.locked();
            let p = plan(&queue, now, &limits, &st);
            if p.probed {
                st.last_probe = now;
            }
            p
        };
        for &k in &plan.expire {
            let told = self.expire(&queue[k]).await;
            self.locked().noticed(queue[k].id, told, now, &limits);
        }
        for &k in &plan.warn {
            let told = self.warn_delayed(&queue[k]).await;
            self.locked().noticed(queue[k].id, told, now, &limits);
        }
        self.locked().forget_notices(&queue);
        for batch in plan.batches {
            // Batches only finish meanwhile: the plan's limits hold.
            self.locked().start(&batch);
            let Batch { hop, msgs } = batch;
            let me = self.clone();
            tokio::spawn(async move {
                let ids: Vec<u64> = msgs.iter().map(|m| m.id).collect();
                me.deliver(&hop, msgs).await;
                if let Some(gap) = trickle {
                    // The connection's slot stays taken for the gap.
                    tokio::time::sleep(gap).await;
                }
                me.locked().finish(&hop, &ids);
                // A batch may have been left out for this connection's slot (or
                // more mail came while it ran): look again now, not at the
                // next tick.
                me.kick.notify_one();
            });
        }
        Ok(())
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses to try for a hop, in order, each with the name its
    /// certificate should carry; `Err` when the hop cannot be reached now
    /// (temporary) or never (permanent DNS answer).
    async fn targets(
        &self,
        hop: &Hop,
    ) -> Result<Vec<(std::net::SocketAddr, String)>, super::mx::LookupError> {
        let name = match hop {
            Hop::Fixed(r) => &r.hop,
            Hop::Mx(d) => d,
        };
        let resolver: std::net::SocketAddr =
            self.config.resolver.parse().map_err(|_| {
                super::mx::LookupError::Temporary(name.clone(), "bad resolver".into())
            })?;
        let domain = match hop {
            // A route or the smart host: its name through our resolver
            // (never the system's), AAAA and A; failures are temporary.
            // The certificate must carry the configured host name.
            Hop::Fixed(r) => {
                let host = r.hop.rsplit_once(':').map_or(r.hop.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                return Ok(super::mx::hop_addresses(resolver, &r.hop)
                    .await?
                    .into_iter()
                    .map(|a| (a, host.to_string()))
                    .collect());
            }
            Hop::Mx(d) => d,
        };
        // The board must not hand mail to itself (RFC 5321 5.1): its
        // names and addresses of the moment, against the MX hosts.
        let me = super::mx::Me::new(
            &self.config,
            &self.hostname,
            super::mx::interface_addresses(),
        );
        Ok(super::mx::mx_targets(resolver, domain, &me)
            .await?
            .into_iter()
            .map(|(ip, host)| (std::net::SocketAddr::new(ip, self.config.mx_port), host))
            .collect())
    }

    async fn deliver(&self, hop: &Hop, msgs: Vec<Outgoing>) {
        let targets = match self.targets(hop).await {
            Ok(t) => t,
            Err(e) if e.is_permanent() => {
                // A real answer says the domain takes no mail: bounce.
                for m in msgs.iter().filter(|m| m.due) {
                    let reply = ServerReply {
                        code: 550,
                        text: format!("5.1.2 {e}"),
                    };
                    let results = m.rcpts.iter().map(|(i, _)| (*i, reply.clone())).collect();
                    self.record(m, results, "").await;
                }
                return;
            }
            Err(e) => {
                if matches!(e, super::mx::LookupError::LoopsToMe { .. }) {
                    // A configuration matter (DNS or my_names): say it louder.
                    log::warn!("mail: {e}; deferred");
                } else {
                    log::info!("mail: {e}; deferred");
                }
                for m in msgs.iter().filter(|m| m.due) {
                    self.defer(m, &e.to_string()).await;
                }
                return;
            }
        };
        let (mode, auth) = match hop {
            Hop::Fixed(r) => (r.tls, r.auth_file.as_deref()),
            Hop::Mx(_) => (TlsMode::May, None),
        };
        // Read at each connection, so a changed password needs no restart.
        let creds = match auth.map(Credentials::load).transpose() {
            Ok(c) => c,
            Err(e) => {
                log::error!("mail: {e}; deferred");
                for m in msgs.iter().filter(|m| m.due) {
                    self.defer(m, &e.to_string()).await;
                }
                return;
            }
        };
        let mut connected = None;
        let mut last_err = String::new();
        for (t, name) in &targets {
            let session = Session {
                hostname: &self.hostname,
                tls: mode,
                peer_name: name,
                configs: &self.tls,
                auth: creds.as_ref(),
            };
            match Client::connect(*t, &session).await {
                Ok(c) => {
                    connected = Some((*t, c));
                    break;
                }
                Err(e) => {
                    // Every address's reason, not only the last one: a
                    // refused IPv6 connection must not hide the TLS
                    // failure of the IPv4 address before it.
                    let sep = if last_err.is_empty() { "" } else { "; " };
                    let more = format!("{sep}{t}: {e}");
                    if last_err.len() + more.len() <= MAX_ERROR_TEXT {
                        last_err.push_str(&more);
                    }
                }
            }
        }
        let Some((target, mut client)) = connected else {
            // Only messages whose time had come get a retry record: a
            // failed probe writes nothing to flash.
            let due: Vec<&Outgoing> = msgs.iter().filter(|m| m.due).collect();
            log::info!("mail: {last_err}; {} message(s) deferred", due.len());
            for m in due {
                self.defer(m, &last_err).await;
            }
            return;
        };
        let dir = self.spool.dir().to_path_buf();
        let via = format!("via {target}, {}", client.tls_info());
        for (k, m) in msgs.iter().enumerate() {
            match client.send(&dir, m).await {
                Ok(results) => {
                    self.record(
                        m,
                        results.into_iter().map(|r| (r.index, r.reply)).collect(),
                        &via,
                    )
                    .await
                }
                Err(e) => {
                    log::info!("mail: {target}: {e}");
                    for rest in &msgs[k..] {
                        self.defer(rest, &format!("{target}: {e}")).await;
                    }
                    return;
                }
            }
        }
        client.quit().await;
    }

    /// Records each recipient's outcome; `via` names the connection
    /// (target and TLS) for the log. A refused recipient is recorded as
    /// bounced only once its bounce notice is queued durably (or none is
    /// due: the null sender); if the notice cannot be queued, the message
    /// stays queued for those recipients and is retried, so the sender is
    /// told at least once, never not at all.
    async fn record(&self, m: &Outgoing, results: Vec<(u32, ServerReply)>, via: &str) {
        let mut temp = None;
        let mut bounced = Vec::new();
        let mut bounced_at = Vec::new();
        for (index, reply) in results {
            let addr = m
                .rcpts
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            if reply.is_ok() {
                log::info!("mail: {:016X} to <{addr}>: delivered {via} ({reply})", m.id);
                if let Err(e) = self
                    .spool
                    .outcome(m.id, index as usize, Outcome::Delivered)
                    .await
                {
                    log::warn!("mail: recording delivery of {:016X}: {e}", m.id);
                }
            } else if reply.is_permanent() {
                log::info!("mail: {:016X} to <{addr}>: bounced ({reply})", m.id);
                bounced.push((addr, reply.to_string()));
                bounced_at.push(index);
            } else {
                temp = Some(reply.to_string());
            }
        }
        if !bounced.is_empty() {
            let told = m.from.is_empty()
                || self
                    .send_dsn(
                        m.id,
                        &m.from,
                        &bounced,
                        DsnKind::Failed,
                        m.received,
                        &m.extents,
                    )
                    .await;
            if told {
                for index in bounced_at {
                    if let Err(e) = self
                        .spool
                        .outcome(m.id, index as usize, Outcome::Bounced)
                        .await
                    {
                        log::warn!("mail: recording bounce of {:016X}: {e}", m.id);
                    }
                }
            } else {
                temp.get_or_insert_with(|| {
                    "refused, and the bounce notice could not be queued; retried".to_string()
                });
            }
        }
        if let Some(err) = temp {
            self.defer(m, &err).await;
        }
    }

    async fn defer(&self, m: &Outgoing, error: &str) {
        let now = Spool::unix_now();
        let next = Limits::new(&self.config).retry_at(m.attempts + 1, now, m.id ^ now);
        let _ = self.spool.retry(m.id, next, error.to_string()).await;
    }

    /// Bounces what is still pending of a message past its lifetime: the
    /// notice first, then the outcomes (if the notice cannot be queued,
    /// nothing is recorded, and false is returned: it is tried again after
    /// a backoff).
    async fn expire(&self, e: &QueueEntry) -> bool {
        let bounced: Vec<(String, String)> = e
            .pending
            .iter()
            .map(|(_, a)| {
                (
                    a.clone(),
                    format!(
                        "gave up after {} s; last error: {}",
                        self.config.max_lifetime_s, e.last_error
                    ),
                )
            })
            .collect();
        let told = e.from.is_empty()
            || self
                .send_dsn(
                    e.id,
                    &e.from,
                    &bounced,
                    DsnKind::Failed,
                    e.received,
                    &e.extents,
                )
                .await;
        if !told {
            return false;
        }
        for (i, _) in &e.pending {
            if let Err(err) = self
                .spool
                .outcome(e.id, *i as usize, Outcome::Bounced)
                .await
            {
                log::warn!("mail: recording the expiry of {:016X}: {err}", e.id);
            }
        }
        true
    }

    /// Sends the sender one "delayed" DSN for the recipients still
    /// waiting, then marks the message so that it never gets another
    /// (if the mark is lost in a crash, the warning goes again: at least
    /// once, like everything in the spool). False when it could not be
    /// queued.
    async fn warn_delayed(&self, e: &QueueEntry) -> bool {
        let waiting: Vec<(String, String)> = e
            .pending
            .iter()
            .map(|(_, a)| (a.clone(), e.last_error.clone()))
            .collect();
        let until = e.received + self.config.max_lifetime_s;
        if self
            .send_dsn(
                e.id,
                &e.from,
                &waiting,
                DsnKind::Delayed { until },
                e.received,
                &e.extents,
            )
            .await
        {
            log::info!("mail: {:016X}: delay warning sent to <{}>", e.id, e.from);
            if let Err(err) = self.spool.warned(e.id).await {
                log::warn!("mail: recording the delay warning of {:016X}: {err}", e.id);
            }
            true
        } else {
            false
        }
    }

    /// Queues an RFC 3464 delivery status notification to `from`, from
    /// the null sender; returns true once it is queued durably. Nothing
    /// is ever sent to the null sender (no bounce of a bounce).
    async fn send_dsn(
        &self,
        id: u64,
        from: &str,
        rcpts: &[(String, String)],
        kind: DsnKind,
        arrival: u64,
        extents: &[Extent],
    ) -> bool {
        if from.is_empty() || rcpts.is_empty() {
            return false;
        }
        // The start of the original, for its header section.
        let mut original = Vec::new();
        for e in extents {
            if original.len() >= MAX_DSN_HEADERS {
                break;
            }
            match self.spool.read(std::slice::from_ref(e)) {
                Ok(b) => original.extend_from_slice(&b),
                Err(err) => {
                    log::warn!("mail: {id:016X}: the DSN goes without the original headers: {err}");
                    original.clear();
                    break;
                }
            }
        }
        let body = Dsn {
            host: &self.hostname,
            id,
            to: from,
            rcpts,
            now: Spool::unix_now(),
            arrival,
            original: &original,
            kind,
        }
        .render();
        // The DSN declares 8bit for original headers that are not ASCII,
        // and needs SMTPUTF8 to reach a sender whose address is not.
        let flags = MessageFlags {
            eight_bit: !body.is_ascii(),
            smtputf8: !from.is_ascii(),
        };
        let spool = &self.spool;
        let r = async {
            let new = spool
                .begin(
                    String::new(),
                    vec![from.to_string()],
                    Spool::unix_now(),
                    flags,
                )
                .await?;
            for chunk in body.chunks(crate::smtp::session::BODY_CHUNK) {
                spool.body(new, chunk.to_vec()).await?;
            }
            spool.end(new).await?;
            Ok::<u64, super::spool::SpoolError>(new)
        }
        .await;
        match r {
            Ok(n) => {
                log::info!("mail: {id:016X}: DSN {n:016X} queued to <{from}>");
                self.kick.notify_one();
                true
            }
            Err(e) => {
                log::error!("mail: {id:016X}: cannot queue a DSN: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let a: Vec<u64> = (1..=10).map(|n| backoff(60, 3600, n, 42)).collect();
        assert!((45..=75).contains(&a[0]), "{a:?}");
        assert!((90..=150).contains(&a[1]), "{a:?}");
        assert!(a[9] <= 4500 && a[9] >= 2700, "{a:?}");
        let spread: std::collections::HashSet<u64> =
            (0..50).map(|s| backoff(60, 3600, 3, s)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn routes_then_smarthost_then_mx() {
        let mut c = MailConfig::default();
        c.routes.insert("home.arpa".into(), "127.0.0.1:2525".into());
        assert_eq!(
            route(&c, "HOME.ARPA"),
            Hop::Fixed(Route::from("127.0.0.1:2525"))
        );
        assert_eq!(route(&c, "example.org"), Hop::Mx("example.org".into()));
        c.smarthost = Some("relay.isp.test:587".into());
        assert_eq!(
            route(&c, "example.org"),
            Hop::Fixed(Route::from("relay.isp.test:587"))
        );
    }
}
