//! Upstream forwarders: per-server smoothed RTT, backoff of failing
//! servers (and probing them again when the backoff ends), the per-try
//! timeout derived from the RTT, racing a second server after a short
//! delay, TCP retry when a UDP answer is truncated, and the total budget
//! of one resolution.
//!
//! Every upstream query has a fresh random ID and a fresh socket (random
//! source port chosen by the kernel). A response is accepted only from
//! the server's address and port, with the query's ID, as a response, and
//! with the same question; anything else is dropped and counted. It never
//! turns a failure into NXDOMAIN: the caller gets an error and answers
//! SERVFAIL (or stale).
//!
//! DNS-over-TLS servers (`dot`) sit in the same list and go through the
//! same ranking, racing, backoff and budget; only the transport differs.
//!
//! The list comes from the configuration or, when it names none, from
//! the DHCP lease (`dhcp`). A list is never changed in place: a new one
//! replaces the whole set in [`Current`], and each resolution keeps the
//! set it started with (its server indices stay valid to its end).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::dot::{DotError, DotPool};
use super::stats::Counters;
use super::wire::{self, Key, Walked};

/// Smoothed RTT given to a server never heard from.
pub const INITIAL_SRTT_MS: u32 = 300;
/// Bounds of one try's timeout (4 x SRTT in between).
pub const MIN_TRY_TIMEOUT_MS: u32 = 400;
pub const MAX_TRY_TIMEOUT_MS: u32 = 4000;
/// Bounds of the delay before the next server is raced (2 x SRTT).
pub const MIN_RACE_DELAY_MS: u32 = 80;
pub const MAX_RACE_DELAY_MS: u32 = 1000;
/// Tries running at once for one question.
pub const MAX_PARALLEL_TRIES: usize = 3;
/// Tries started for one question before it fails, whatever the budget.
pub const MAX_TRIES_PER_QUERY: usize = 12;
/// Pause before the next try after a try failed outright.
pub const RETRY_PAUSE_MS: u64 = 50;
/// A server that failed this many times in a row is backed off.
pub const BACKOFF_AFTER_FAILURES: u32 = 2;
/// First backoff, doubled per further failure, up to the maximum.
pub const BACKOFF_BASE_MS: u64 = 1000;
pub const BACKOFF_MAX_MS: u64 = 60_000;

/// How one try at one server ended.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    /// No acceptable response within the try's timeout.
    #[error("timed out")]
    Timeout,
    /// Socket error (unreachable, refused, reset...).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an rcode that says it could not help
    /// (SERVFAIL, REFUSED, NOTIMP, FORMERR...).
    #[error("server answered rcode {0}")]
    Rcode(u8),
    /// A TCP answer that did not match or did not parse.
    #[error("malformed or mismatched TCP response")]
    Malformed,
    /// The DNS-over-TLS transport failed.
    #[error("DNS-over-TLS: {0}")]
    Tls(#[from] DotError),
}

/// Why a resolution produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No forwarders: none configured and none offered by DHCP.
    #[error("no upstream servers (none configured, none from DHCP)")]
    NoUpstreams,
    /// The budget ran out, or every try failed.
    #[error("no upstream answered within the budget")]
    Exhausted,
}

/// What we know about one forwarder.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub addr: SocketAddr,
    pub srtt_ms: u32,
    pub failures: u32,
    pub backoff_until: Option<Instant>,
    pub queries: u64,
    pub answers: u64,
    /// Set for a DNS-over-TLS server: its connection pool.
    pub tls: Option<Arc<DotPool>>,
}

/// Where the forwarders come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// `dns.upstreams` and `dns.tls_upstreams`.
    Config,
    /// `<run_dir>/dhcp-dns`, written from the DHCP lease (both
    /// configured lists are empty).
    Dhcp,
}

/// The forwarders and their health. Pure bookkeeping: `now` is passed in.
/// `servers` is fixed once built (resolutions hold indices into it); a
/// new list is a new `Upstreams`, installed with [`Current::replace`].
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub servers: Vec<ServerState>,
    pub source: Source,
}

impl Upstreams {
    pub fn new(addrs: &[SocketAddr], source: Source) -> Upstreams {
        Upstreams {
            source,
            servers: addrs
                .iter()
                .map(|&addr| ServerState {
                    addr,
                    srtt_ms: INITIAL_SRTT_MS,
                    failures: 0,
                    backoff_until: None,
                    queries: 0,
                    answers: 0,
                    tls: None,
                })
                .collect(),
        }
    }

    /// `dns.upstreams`, then `dns.tls_upstreams`. A DNS-over-TLS server
    /// whose CA file cannot be loaded is left out with an error in the
    /// log (`pocobelle check-config` reports it before). With both lists
    /// empty, an empty set from DHCP (filled by `dhcp::Watch`).
    pub fn from_config(cfg: &crate::config::DnsConfig) -> Upstreams {
        if cfg.uses_dhcp_servers() {
            return Upstreams::new(&[], Source::Dhcp);
        }
        let mut u = Upstreams::new(&cfg.upstreams, Source::Config);
        let idle = Duration::from_millis(cfg.tls_idle_ms as u64);
        for (i, t) in cfg.tls_upstreams.iter().enumerate() {
            let (Some(addr), Ok(name)) = (t.socket_addr(), crate::tls::server_name(&t.name)) else {
                continue; // refused by validation
            };
            let config = match crate::tls::verifying_config_from(t.ca_file.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("dns: tls_upstreams[{i}] ({addr}): {e}; not used");
                    continue;
                }
            };
            let pool = DotPool::new(addr, name, config, cfg.tls_connections, idle);
            let mut s = Upstreams::new(&[addr], Source::Config).servers.remove(0);
            s.tls = Some(Arc::new(pool));
            u.servers.push(s);
        }
        u
    }

    /// Servers in the order to try them: those not backed off by smoothed
    /// RTT, then the backed-off ones, soonest-to-recover first (so that
    /// with everyone down we still probe).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..self.servers.len())
            .partition(|&i| self.servers[i].backoff_until.is_none_or(|t| t <= now));
        up.sort_by_key(|&i| self.servers[i].srtt_ms);
        down.sort_by_key(|&i| self.servers[i].backoff_until);
        up.extend(down);
        up
    }

    pub fn try_timeout(&self, i: usize) -> Duration {
        let ms = (self.servers[i].srtt_ms.saturating_mul(4))
            .clamp(MIN_TRY_TIMEOUT_MS, MAX_TRY_TIMEOUT_MS);
        Duration::from_millis(ms as u64)
    }

    pub fn race_delay(&self, i: usize) -> Duration {
        let ms =
            (self.servers[i].srtt_ms.saturating_mul(2)).clamp(MIN_RACE_DELAY_MS, MAX_RACE_DELAY_MS);
        Duration::from_millis(ms as u64)
    }

    pub fn success(&mut self, i: usize, rtt: Duration) {
        let s = &mut self.servers[i];
        let sample = rtt.as_millis().min(u32::MAX as u128) as u32;
        s.srtt_ms = ((s.srtt_ms as u64 * 7 + sample as u64) / 8).max(1) as u32;
        s.failures = 0;
        s.backoff_until = None;
        s.answers += 1;
    }

    pub fn failure(&mut self, i: usize, timed_out: bool, now: Instant) {
        let s = &mut self.servers[i];
        s.failures = s.failures.saturating_add(1);
        if timed_out {
            s.srtt_ms = s.srtt_ms.saturating_mul(2).min(MAX_TRY_TIMEOUT_MS / 4);
        }
        if s.failures >= BACKOFF_AFTER_FAILURES {
            let exp = (s.failures - BACKOFF_AFTER_FAILURES).min(16);
            let ms = BACKOFF_BASE_MS.saturating_mul(1 << exp).min(BACKOFF_MAX_MS);
            s.backoff_until = Some(now + Duration::from_millis(ms));
        }
    }
}

/// The forwarder set in use. [`Current::get`] hands a resolution the
/// set of the moment, which it keeps to its end; [`Current::replace`]
/// installs a new list for the resolutions that start afterwards, so a
/// change never moves a server under a resolution in flight. The health
/// (RTT, failures, backoff, counts) of a server in both lists is carried
/// over; what in-flight resolutions learn about the old set afterwards
/// is dropped with it.
#[derive(Debug)]
pub struct Current(Mutex<Arc<Mutex<Upstreams>>>);

impl Current {
    pub fn new(u: Upstreams) -> Current {
        Current(Mutex::new(Arc::new(Mutex::new(u))))
    }

    /// The set for one resolution (a reference count, no copy).
    pub fn get(&self) -> Arc<Mutex<Upstreams>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs `new` in place of the current set.
    pub fn replace(&self, mut new: Upstreams) {
        let mut cur = self.0.lock().unwrap_or_else(|p| p.into_inner());
        {
            let old = cur.lock().unwrap_or_else(|p| p.into_inner());
            for s in &mut new.servers {
                if let Some(o) = old
                    .servers
                    .iter()
                    .find(|o| o.addr == s.addr && o.tls.is_none() && s.tls.is_none())
                {
                    *s = o.clone();
                }
            }
        }
        *cur = Arc::new(Mutex::new(new));
    }
}

/// A fresh random query ID.
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 2 {
        // Never expected on Linux >= 3.17; fall back to the clock's noise.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return (t ^ (t >> 16)) as u16;
    }
    u16::from_ne_bytes(b)
}

/// Checks that `resp` answers the query `id` for `key`.
pub fn accept(resp: &[u8], id: u16, key: &Key) -> Option<Walked> {
    let w = wire::walk(resp).ok()?;
    if !w.is_response()
        || w.id != id
        || w.opcode() != 0
        || !w.qname.eq_ignore_ascii_case(key.name())
        || w.qtype != key.qtype()
        || w.qclass != key.qclass()
    {
        return None;
    }
    // The data of the records whose shape is known, before it is cached
    // (walk checked the structure around it).
    if !w.records.iter().all(|r| wire::check_rdata(resp, r).is_ok()) {
        return None;
    }
    Some(w)
}

fn unspecified_for(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// A try reports its soft timeout (the scheduler then counts the server
/// as slow and races another) and, later, how it ended. The outcome is
/// boxed: the channel allocates its slots 32 at a time, so an unboxed
/// event (a `Walked` holds a whole name) cost every in-flight resolution
/// about 16 KB of heap, 1 MB with 64 in flight.
#[derive(Debug)]
pub enum TryEvent {
    SoftTimeout(usize),
    Done {
        server: usize,
        sent: Instant,
        soft_timed_out: bool,
        result: Box<Result<(Vec<u8>, Walked), TryError>>,
    },
}

/// One try over UDP (and over TCP when the answer is truncated). After
/// `soft` without an answer it sends [`TryEvent::SoftTimeout`] but keeps
/// listening until `hard`: a slow server's late answer is still taken.
pub async fn try_server(
    server: SocketAddr,
    key: &Key,
    soft: tokio::time::Instant,
    hard: tokio::time::Instant,
    counters: &Counters,
    soft_fired: impl FnOnce(),
) -> Result<(Vec<u8>, Walked), TryError> {
    let id = random_id();
    let query = wire::build_upstream_query(id, key);
    let sock = UdpSocket::bind(unspecified_for(server)).await?;
    sock.connect(server).await?;
    sock.send(&query).await?;
    counters.upstream_queries.inc();
    // We advertise EDNS_PAYLOAD; a larger datagram is cut by the kernel,
    // fails the walk and is dropped like any other bad response.
    let mut buf = vec![0u8; wire::EDNS_PAYLOAD as usize + 1];
    let mut soft_fired = Some(soft_fired);
    loop {
        let recv = tokio::time::timeout_at(hard, sock.recv_from(&mut buf));
        let (n, from) = tokio::select! {
            r = recv => match r {
                Err(_) => return Err(TryError::Timeout),
                Ok(r) => r?,
            },
            _ = tokio::time::sleep_until(soft), if soft_fired.is_some() => {
                if let Some(f) = soft_fired.take() {
                    f();
                }
                continue;
            }
        };
        if from != server {
            counters.upstream_dropped.inc();
            continue;
        }
        let Some(w) = accept(&buf[..n], id, key) else {
            counters.upstream_dropped.inc();
            continue;
        };
        if w.truncated() {
            counters.tcp_fallbacks.inc();
            return match tokio::time::timeout_at(hard, try_tcp(server, key, counters)).await {
                Err(_) => Err(TryError::Timeout),
                Ok(r) => r,
            };
        }
        return check_rcode(buf[..n].to_vec(), w);
    }
}

fn check_rcode(resp: Vec<u8>, w: Walked) -> Result<(Vec<u8>, Walked), TryError> {
    match w.rcode() {
        wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN => Ok((resp, w)),
        other => Err(TryError::Rcode(other)),
    }
}

/// One try over DNS-over-TLS: a fresh ID, pipelined on one of the
/// server's persistent connections. Soft and hard timeouts as for UDP.
pub async fn try_dot(
    pool: &DotPool,
    key: &Key,
    soft: tokio::time::Instant,
    hard: tokio::time::Instant,
    counters: &Counters,
    soft_fired: impl FnOnce(),
) -> Result<(Vec<u8>, Walked), TryError> {
    let id = random_id();
    let query = wire::build_upstream_query(id, key);
    counters.upstream_queries.inc();
    let answer = pool.query(id, &query);
    tokio::pin!(answer);
    let resp = tokio::select! {
        r = tokio::time::timeout_at(hard, &mut answer) => r,
        _ = tokio::time::sleep_until(soft) => {
            soft_fired();
            tokio::time::timeout_at(hard, &mut answer).await
        }
    }
    .map_err(|_| TryError::Timeout)??;
    let Some(w) = accept(&resp, id, key) else {
        counters.upstream_dropped.inc();
        return Err(TryError::Malformed);
    };
    if w.truncated() {
        // Nothing larger can come over a stream: unusable.
        return Err(TryError::Malformed);
    }
    check_rcode(resp, w)
}

/// One try over TCP (fresh connection, fresh ID).
pub async fn try_tcp(
    server: SocketAddr,
    key: &Key,
    counters: &Counters,
) -> Result<(Vec<u8>, Walked), TryError> {
    let id = random_id();
    let query = wire::build_upstream_query(id, key);
    let mut s = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(&query);
    s.write_all(&framed).await?;
    counters.upstream_queries.inc();
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    let Some(w) = accept(&buf, id, key) else {
        counters.upstream_dropped.inc();
        return Err(TryError::Malformed);
    };
    check_rcode(buf, w)
}

/// Resolves `key` through the forwarders within `budget`.
pub async fn resolve(
    ups: Arc<Mutex<Upstreams>>,
    counters: Arc<Counters>,
    key: Key,
    budget: Duration,
) -> Result<(Vec<u8>, Walked), ResolveError> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + budget;
    let order = ups.lock().map(|u| u.order(start)).unwrap_or_default();
    if order.is_empty() {
        return Err(ResolveError::NoUpstreams);
    }
    let key = Arc::new(key);
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<TryEvent>(2 * MAX_TRIES_PER_QUERY);
    let mut tries = JoinSet::new();
    let (mut launched, mut finished, mut active) = (0usize, 0usize, 0usize);
    let mut next_launch = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let can_launch = launched < MAX_TRIES_PER_QUERY && active < MAX_PARALLEL_TRIES;
        if can_launch && now >= next_launch {
            let i = order[launched % order.len()];
            launched += 1;
            active += 1;
            let (addr, tls, timeout, race) = {
                let mut u = ups.lock().map_err(|_| ResolveError::Exhausted)?;
                u.servers[i].queries += 1;
                (
                    u.servers[i].addr,
                    u.servers[i].tls.clone(),
                    u.try_timeout(i),
                    u.race_delay(i),
                )
            };
            let soft = (now + timeout).min(deadline);
            let (key, counters, tx) = (key.clone(), counters.clone(), ev_tx.clone());
            tries.spawn(async move {
                let fired = std::sync::atomic::AtomicBool::new(false);
                let sent = Instant::now();
                let on_soft = || {
                    fired.store(true, Ordering::Relaxed);
                    let _ = tx.try_send(TryEvent::SoftTimeout(i));
                };
                let result = match &tls {
                    Some(pool) => try_dot(pool, &key, soft, deadline, &counters, on_soft).await,
                    None => try_server(addr, &key, soft, deadline, &counters, on_soft).await,
                };
                let _ = tx
                    .send(TryEvent::Done {
                        server: i,
                        sent,
                        soft_timed_out: fired.load(Ordering::Relaxed),
                        result: Box::new(result),
                    })
                    .await;
            });
            next_launch = now + race;
            continue;
        }
        if launched >= MAX_TRIES_PER_QUERY && finished >= launched {
            break;
        }
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                Some(TryEvent::SoftTimeout(i)) => {
                    active = active.saturating_sub(1);
                    counters.upstream_timeouts.inc();
                    log::debug!("upstream {i} slow for {}", key.text());
                    if let Ok(mut u) = ups.lock() {
                        u.failure(i, true, Instant::now());
                    }
                    next_launch = tokio::time::Instant::now();
                }
                Some(TryEvent::Done { server, sent, soft_timed_out, result }) => {
                    finished += 1;
                    if !soft_timed_out {
                        active = active.saturating_sub(1);
                    }
                    match *result {
                        Ok(answer) => {
                            if let Ok(mut u) = ups.lock() {
                                u.success(server, sent.elapsed());
                            }
                            tries.abort_all();
                            return Ok(answer);
                        }
                        Err(e) => {
                            log::debug!("upstream try for {} failed: {e}", key.text());
                            if !soft_timed_out && let Ok(mut u) = ups.lock() {
                                u.failure(server, matches!(e, TryError::Timeout), Instant::now());
                            }
                            let pause = tokio::time::Instant::now() + Duration::from_millis(RETRY_PAUSE_MS);
                            next_launch = next_launch.min(pause);
                        }
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(next_launch), if can_launch => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    tries.abort_all();
    Err(ResolveError::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(n: usize) -> Upstreams {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5300 + i as u16)))
            .collect();
        Upstreams::new(&addrs, Source::Config)
    }

    #[test]
    fn a_replaced_set_leaves_the_old_one_alone_and_keeps_known_servers() {
        let cur = Current::new(ups(2));
        let old = cur.get();
        old.lock().unwrap().success(1, Duration::from_millis(20));
        let kept = old.lock().unwrap().servers[1].clone();
        let addrs = [
            SocketAddr::from(([127, 0, 0, 1], 5301)),
            SocketAddr::from(([127, 0, 0, 1], 5399)),
        ];
        cur.replace(Upstreams::new(&addrs, Source::Dhcp));
        let new = cur.get();
        assert!(!Arc::ptr_eq(&old, &new));
        // A resolution holding the old set still indexes its two servers.
        assert_eq!(old.lock().unwrap().servers.len(), 2);
        let n = new.lock().unwrap();
        assert_eq!(n.source, Source::Dhcp);
        assert_eq!(n.servers[0].addr, kept.addr);
        assert_eq!(
            (n.servers[0].srtt_ms, n.servers[0].answers),
            (kept.srtt_ms, 1)
        );
        assert_eq!(n.servers[1].srtt_ms, INITIAL_SRTT_MS);
    }

    #[test]
    fn fastest_first_and_failing_servers_back_off() {
        let mut u = ups(3);
        let now = Instant::now();
        u.success(2, Duration::from_millis(5));
        u.success(1, Duration::from_millis(100));
        assert_eq!(u.order(now), vec![2, 1, 0]);
        u.failure(2, false, now);
        assert_eq!(u.order(now)[0], 2, "one failure is not a backoff");
        u.failure(2, false, now);
        assert_eq!(u.order(now), vec![1, 0, 2]);
        // After the backoff the server is probed again.
        assert_eq!(u.order(now + Duration::from_secs(2))[0], 2);
        u.success(2, Duration::from_millis(5));
        assert!(u.servers[2].backoff_until.is_none());
    }

    #[test]
    fn timeouts_follow_the_rtt() {
        let mut u = ups(1);
        assert_eq!(u.try_timeout(0), Duration::from_millis(1200));
        for _ in 0..50 {
            u.success(0, Duration::from_millis(2));
        }
        assert_eq!(
            u.try_timeout(0),
            Duration::from_millis(MIN_TRY_TIMEOUT_MS as u64)
        );
        assert_eq!(
            u.race_delay(0),
            Duration::from_millis(MIN_RACE_DELAY_MS as u64)
        );
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 50);
    }
}
