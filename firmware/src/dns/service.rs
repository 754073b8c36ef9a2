//! The query path shared by the UDP and TCP servers: parse, access check,
//! local data, cache, then the in-flight table that coalesces identical
//! questions into one upstream resolution, with serve-stale when the
//! answer is late or fails. It owns the cache, the in-flight table (bounded
//! by `dns.max_inflight`, each entry by `dns.max_waiters`) and the
//! forwarders' state (the current set, which `dhcp` may replace). It
//! never answers NXDOMAIN for a lookup that did not complete: that is
//! SERVFAIL or a stale answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::cache::{Cache, CacheLimits, Lookup, Millis, Stored};
use super::local::{LocalData, LocalError};
use super::ratelimit::RateLimiter;
use super::stats::{Counters, REPORT_HOT_NAMES, Report, UpstreamReport};
use super::upstream::{self, Current, Upstreams};
use super::wire::{self, Key, Parsed, Query};
use crate::config::{DnsConfig, Prefix};

/// What waiters of one resolution receive.
pub type Outcome = Result<Arc<Stored>, upstream::ResolveError>;

/// Why a question could not join the in-flight table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// `dns.max_inflight` distinct questions are already being resolved.
    #[error("the in-flight table is full")]
    TableFull,
    /// `dns.max_waiters` clients already wait on this question.
    #[error("too many clients wait on this question")]
    TooManyWaiters,
}

/// The first, synchronous step of answering a packet.
pub enum Step {
    /// The reply is in the buffer given to [`Service::begin`].
    Reply,
    Drop,
    /// Needs an upstream answer: continue with [`Service::finish`].
    Wait {
        query: Box<Query>,
        key: Key,
        stale: Option<Stored>,
    },
}

pub struct Service {
    pub cfg: DnsConfig,
    pub local: LocalData,
    pub cache: Mutex<Cache>,
    /// The forwarder set; a resolution takes the set of its start.
    pub upstreams: Current,
    pub counters: Arc<Counters>,
    pub limiter: Mutex<RateLimiter>,
    pub primed: AtomicBool,
    pub priming: AtomicBool,
    /// Where "primed" is reported, taken on first use.
    pub ready: Mutex<Option<super::prime::Readiness>>,
    inflight: Mutex<HashMap<Key, Vec<oneshot::Sender<Outcome>>>>,
    allow: Vec<Prefix>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock aborts the process (panic = abort), so
    // a poisoned lock can only be seen in tests; use the data anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    pub fn new(cfg: DnsConfig) -> Result<Service, LocalError> {
        let local = LocalData::from_config(&cfg)?;
        let limits = CacheLimits {
            max_bytes: cfg.cache_bytes,
            min_ttl: cfg.min_ttl,
            max_ttl: cfg.max_ttl,
            negative_max_ttl: cfg.negative_max_ttl,
            stale_max_age: cfg.stale_max_age,
        };
        Ok(Service {
            local,
            cache: Mutex::new(Cache::new(limits)),
            upstreams: Current::new(Upstreams::from_config(&cfg)),
            counters: Arc::new(Counters::default()),
            limiter: Mutex::new(RateLimiter::new(
                cfg.rate_limit_qps,
                cfg.rate_limit_burst,
                cfg.rate_limit_clients,
            )),
            primed: AtomicBool::new(false),
            priming: AtomicBool::new(false),
            ready: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            allow: cfg.allow_prefixes(),
            started: Instant::now(),
            cfg,
        })
    }

    /// Milliseconds since the service started (the cache's clock).
    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    pub fn cache(&self) -> MutexGuard<'_, Cache> {
        lock(&self.cache)
    }

    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|p| p.contains(ip))
    }

    /// Token-bucket check for one query from `ip`.
    /// Whether `ip` is within its rate limit at `now` (see [`Service::now`]).
    pub fn rate_ok(&self, ip: IpAddr, now: Millis) -> bool {
        let ok = lock(&self.limiter).allow(ip, now);
        if !ok {
            Counters::bump(&self.counters.rate_limited);
        }
        ok
    }

    /// Everything that can be answered without waiting. A reply is
    /// written into `out` (cleared first; reused from query to query, so
    /// a cache hit allocates nothing). `now` is [`Service::now`], read
    /// once per batch of datagrams by the UDP server.
    pub fn begin(
        &self,
        packet: &[u8],
        client: IpAddr,
        udp: bool,
        now: Millis,
        out: &mut Vec<u8>,
    ) -> Step {
        let reply = |out: &mut Vec<u8>, r: Vec<u8>| {
            out.clear();
            out.extend_from_slice(&r);
            Step::Reply
        };
        let q = match wire::parse_query(packet) {
            Parsed::Drop => {
                Counters::bump(&self.counters.dropped);
                return Step::Drop;
            }
            Parsed::Reject(r) => {
                log::debug!("rejected query from {client}: {}", r.reason);
                Counters::bump(&self.counters.formerr);
                return reply(out, wire::reject_reply(&r));
            }
            Parsed::Query(q) => q,
        };
        if !self.allowed(client) {
            Counters::bump(&self.counters.refused);
            return reply(out, wire::empty_reply(&q, wire::RCODE_REFUSED, false));
        }
        if let Some(r) = self.local.answer(&q) {
            Counters::bump(&self.counters.local_answers);
            return reply(out, self.fit(&q, r, udp));
        }
        let key = q.key_buf();
        let stale = {
            let mut cache = self.cache();
            match cache.get(&key, now) {
                Lookup::Fresh(e) => {
                    Counters::bump(&self.counters.cache_answers);
                    e.render_into(&q, now, false, out);
                    None
                }
                Lookup::Stale {
                    entry,
                    failed_recently: true,
                } => {
                    Counters::bump(&self.counters.stale_answers);
                    entry.render_into(&q, now, true, out);
                    None
                }
                Lookup::Stale { entry, .. } => Some(Some(entry.to_stored())),
                Lookup::Miss => Some(None),
            }
        };
        match stale {
            None => {
                if udp && out.len() > q.udp_limit() {
                    let r = self.fit(&q, std::mem::take(out), udp);
                    *out = r;
                }
                Step::Reply
            }
            Some(stale) => Step::Wait {
                key: q.key(),
                query: Box::new(q),
                stale,
            },
        }
    }

    /// Waits for the upstream answer to `query` (joining or starting the
    /// resolution), serving `stale` after `dns.stale_after_ms` or when the
    /// resolution fails.
    pub async fn finish(
        self: &Arc<Self>,
        query: Box<Query>,
        key: Key,
        stale: Option<Stored>,
        udp: bool,
    ) -> Vec<u8> {
        let rx = match self.join(key) {
            Ok(rx) => Some(rx),
            Err(e) => {
                log::debug!("{e} for {}", query.name_text());
                Counters::bump(&self.counters.busy);
                None
            }
        };
        let outcome = match (rx, &stale) {
            (None, _) => None,
            (Some(rx), Some(_)) => {
                let wait = Duration::from_millis(self.cfg.stale_after_ms as u64);
                tokio::time::timeout(wait, rx)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
            }
            (Some(rx), None) => {
                let wait = Duration::from_millis(self.cfg.budget_ms as u64 + 1000);
                tokio::time::timeout(wait, rx)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
            }
        };
        let now = self.now();
        let reply = match (outcome, stale) {
            (Some(Ok(fresh)), _) => {
                Counters::bump(&self.counters.upstream_answers);
                fresh.render(&query, now, false)
            }
            (_, Some(stale)) => {
                Counters::bump(&self.counters.stale_answers);
                stale.render(&query, now, true)
            }
            (_, None) => {
                Counters::bump(&self.counters.servfail);
                wire::empty_reply(&query, wire::RCODE_SERVFAIL, false)
            }
        };
        self.fit(&query, reply, udp)
    }

    /// Cuts a UDP reply to the client's size (TC set when it does not fit).
    fn fit(&self, q: &Query, reply: Vec<u8>, udp: bool) -> Vec<u8> {
        if !udp || reply.len() <= q.udp_limit() {
            return reply;
        }
        Counters::bump(&self.counters.truncated);
        wire::fit_udp(q, reply, q.udp_limit())
    }

    /// Joins the resolution of `key`, starting it when none is running.
    pub fn join(self: &Arc<Self>, key: Key) -> Result<oneshot::Receiver<Outcome>, Busy> {
        let (tx, rx) = oneshot::channel();
        let mut table = lock(&self.inflight);
        if let Some(waiters) = table.get_mut(&key) {
            if waiters.len() >= self.cfg.max_waiters {
                return Err(Busy::TooManyWaiters);
            }
            waiters.push(tx);
            Counters::bump(&self.counters.coalesced);
            return Ok(rx);
        }
        if table.len() >= self.cfg.max_inflight {
            return Err(Busy::TableFull);
        }
        table.insert(key.clone(), vec![tx]);
        drop(table);
        let me = self.clone();
        tokio::spawn(async move { me.resolve_and_store(key).await });
        Ok(rx)
    }

    pub fn inflight(&self) -> usize {
        lock(&self.inflight).len()
    }

    async fn resolve_and_store(self: Arc<Self>, key: Key) {
        let budget = Duration::from_millis(self.cfg.budget_ms as u64);
        let result = upstream::resolve(
            self.upstreams.get(),
            self.counters.clone(),
            key.clone(),
            budget,
        )
        .await;
        let now = self.now();
        let outcome: Outcome = match result {
            Ok((bytes, walked)) => {
                let limits = *self.cache().limits();
                match Stored::from_response(&bytes, &walked, now, &limits) {
                    Ok(stored) => {
                        if let Err(e) = self.cache().insert(&key.0, &stored) {
                            log::debug!("not cached: {}: {e}", key.text());
                        }
                        Ok(Arc::new(stored))
                    }
                    Err(e) => {
                        // Too large to cache: still answer the waiters.
                        log::debug!("not cached: {}: {e}", key.text());
                        let mut lim = limits;
                        lim.max_bytes = usize::MAX;
                        Stored::from_response(&bytes, &walked, now, &lim)
                            .map(Arc::new)
                            .map_err(|_| upstream::ResolveError::Exhausted)
                    }
                }
            }
            Err(e) => {
                // Having no forwarders at all is logged once, when the
                // set is installed, not per question.
                if e == upstream::ResolveError::NoUpstreams {
                    log::debug!("{}: {e}", key.text());
                } else {
                    log::info!("{}: {e}", key.text());
                }
                self.cache().mark_refresh_failed(&key.0, now);
                Err(e)
            }
        };
        let waiters = lock(&self.inflight).remove(&key).unwrap_or_default();
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }

    /// The report for `pocobelle dns stats`.
    pub fn report(&self) -> Report {
        let (bytes, max, entries, counters, hot) = {
            let c = self.cache();
            (
                c.bytes(),
                c.limits().max_bytes,
                c.len(),
                c.counters,
                c.hot(REPORT_HOT_NAMES),
            )
        };
        let now = Instant::now();
        let set = self.upstreams.get();
        let set = lock(&set);
        let upstream_source = set.source;
        let upstreams = set
            .servers
            .iter()
            .map(|s| UpstreamReport {
                addr: match s.tls {
                    Some(_) => format!("{} (TLS)", s.addr),
                    None => s.addr.to_string(),
                },
                srtt_ms: s.srtt_ms,
                failures: s.failures,
                backed_off: s.backoff_until.is_some_and(|t| t > now),
                queries: s.queries,
                answers: s.answers,
            })
            .collect();
        Report {
            uptime_secs: self.started.elapsed().as_secs(),
            cache_bytes: bytes as u64,
            cache_max_bytes: max as u64,
            cache_entries: entries as u64,
            cache_hits: counters.hits,
            cache_misses: counters.misses + counters.stale_candidates,
            evictions: counters.evictions,
            primed: self.primed.load(Ordering::Relaxed),
            inflight: self.inflight() as u32,
            counters: self.counters.pairs(),
            upstreams,
            upstream_source,
            hot: hot.into_iter().map(|(k, n)| (k.text(), n)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    fn svc(allow: &[&str]) -> Arc<Service> {
        let cfg = DnsConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..DnsConfig::default()
        };
        Arc::new(Service::new(cfg).unwrap())
    }

    #[test]
    fn outside_clients_are_refused_and_garbage_dropped() {
        let s = svc(&["127.0.0.1/32"]);
        let q = crate::dns::wire::tests::query_bytes("www.example.org.", RecordType::A, false);
        let mut out = Vec::new();
        match s.begin(&q, "127.0.0.2".parse().unwrap(), true, s.now(), &mut out) {
            Step::Reply => assert_eq!(out[3] & 0xF, wire::RCODE_REFUSED),
            _ => panic!("expected REFUSED"),
        }
        assert!(matches!(
            s.begin(
                &[0u8; 5],
                "127.0.0.1".parse().unwrap(),
                true,
                s.now(),
                &mut out
            ),
            Step::Drop
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_upstreams_a_miss_is_servfail_never_nxdomain() {
        let s = svc(&["127.0.0.0/8"]);
        let q = crate::dns::wire::tests::query_bytes("www.example.org.", RecordType::A, false);
        let Step::Wait { query, key, stale } = s.begin(
            &q,
            "127.0.0.1".parse().unwrap(),
            true,
            s.now(),
            &mut Vec::new(),
        ) else {
            panic!("expected a miss")
        };
        let r = s.finish(query, key, stale, true).await;
        assert_eq!(r[3] & 0xF, wire::RCODE_SERVFAIL);
    }
}
