//! What the DNS service counts, and the typed messages of its control
//! socket (`<run_dir>/dns.sock`): `Stats` (cache size, hit rate, upstream
//! RTTs, the hot set) and `Prime`. Counters are plain atomics; nothing
//! here does I/O.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::upstream::Source;

/// One event counter. ARMv5 has no 64-bit atomics, and a 32-bit one
/// would wrap within the life of a board, so it is a u64 behind an
/// uncontended mutex (one runtime thread).
#[derive(Debug, Default)]
pub struct Counter(Mutex<u64>);

impl Counter {
    pub fn inc(&self) {
        if let Ok(mut v) = self.0.lock() {
            *v = v.saturating_add(1);
        }
    }
    pub fn get(&self) -> u64 {
        self.0.lock().map(|v| *v).unwrap_or(0)
    }
}

/// Event counters of the service.
#[derive(Debug, Default)]
pub struct Counters {
    pub queries_udp: Counter,
    pub queries_tcp: Counter,
    pub local_answers: Counter,
    pub cache_answers: Counter,
    pub upstream_answers: Counter,
    pub stale_answers: Counter,
    pub servfail: Counter,
    pub refused: Counter,
    pub formerr: Counter,
    pub dropped: Counter,
    pub rate_limited: Counter,
    pub truncated: Counter,
    pub coalesced: Counter,
    pub busy: Counter,
    pub upstream_queries: Counter,
    pub upstream_dropped: Counter,
    pub upstream_timeouts: Counter,
    pub tcp_fallbacks: Counter,
    pub tcp_rejected: Counter,
}

impl Counters {
    pub fn bump(c: &Counter) {
        c.inc();
    }

    /// `(name, value)` pairs, in a stable order, for the report.
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let g = |c: &Counter| c.get();
        [
            ("queries_udp", g(&self.queries_udp)),
            ("queries_tcp", g(&self.queries_tcp)),
            ("local_answers", g(&self.local_answers)),
            ("cache_answers", g(&self.cache_answers)),
            ("upstream_answers", g(&self.upstream_answers)),
            ("stale_answers", g(&self.stale_answers)),
            ("servfail", g(&self.servfail)),
            ("refused", g(&self.refused)),
            ("formerr", g(&self.formerr)),
            ("dropped", g(&self.dropped)),
            ("rate_limited", g(&self.rate_limited)),
            ("truncated", g(&self.truncated)),
            ("coalesced", g(&self.coalesced)),
            ("busy", g(&self.busy)),
            ("upstream_queries", g(&self.upstream_queries)),
            ("upstream_dropped", g(&self.upstream_dropped)),
            ("upstream_timeouts", g(&self.upstream_timeouts)),
            ("tcp_fallbacks", g(&self.tcp_fallbacks)),
            ("tcp_rejected", g(&self.tcp_rejected)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A request on `dns.sock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Stats,
    Prime,
}

/// The answer on `dns.sock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Stats(Report),
    /// Priming started.
    PrimeStarted {
        names: u32,
    },
    /// A priming run is already going on.
    PrimeBusy,
}

/// One forwarder in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamReport {
    pub addr: String,
    pub srtt_ms: u32,
    pub failures: u32,
    pub backed_off: bool,
    pub queries: u64,
    pub answers: u64,
}

/// What `pocobelle dns stats` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub uptime_secs: u64,
    pub cache_bytes: u64,
    pub cache_max_bytes: u64,
    pub cache_entries: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub evictions: u64,
    pub primed: bool,
    pub inflight: u32,
    pub counters: Vec<(String, u64)>,
    pub upstreams: Vec<UpstreamReport>,
    /// Where `upstreams` come from.
    pub upstream_source: Source,
    /// Hottest entries (`name TYPE`, hits), most first.
    pub hot: Vec<(String, u32)>,
}

/// Most hot names carried in one report (the control frame is bounded).
pub const REPORT_HOT_NAMES: usize = 50;

impl Report {
    /// Hits over lookups, 0.0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }

    /// The text `pocobelle dns stats` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "cache: {} entries, {} of {} bytes, hit rate {:.1}% ({} hits, {} misses), {} evictions\n",
            self.cache_entries,
            self.cache_bytes,
            self.cache_max_bytes,
            self.hit_rate() * 100.0,
            self.cache_hits,
            self.cache_misses,
            self.evictions
        ));
        s.push_str(&format!(
            "primed: {}   in flight: {}   up: {} s\n",
            if self.primed { "yes" } else { "no" },
            self.inflight,
            self.uptime_secs
        ));
        let file = super::dhcp::FILE_NAME;
        s.push_str(&match (self.upstream_source, self.upstreams.is_empty()) {
            (Source::Config, _) => "upstreams (configured):\n".to_string(),
            (Source::Dhcp, false) => format!("upstreams (offered by DHCP, <run_dir>/{file}):\n"),
            (Source::Dhcp, true) => format!(
                "upstreams: none (none configured, none offered by DHCP in <run_dir>/{file})\n"
            ),
        });
        for u in &self.upstreams {
            s.push_str(&format!(
                "  {:<40} srtt {:>5} ms  queries {:>8}  answers {:>8}  failures {}{}\n",
                u.addr,
                u.srtt_ms,
                u.queries,
                u.answers,
                u.failures,
                if u.backed_off { "  (backed off)" } else { "" }
            ));
        }
        s.push_str("counters:\n");
        for (k, v) in &self.counters {
            s.push_str(&format!("  {k:<18} {v}\n"));
        }
        s.push_str("hot names:\n");
        for (name, hits) in &self.hot {
            s.push_str(&format!("  {hits:>8}  {name}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fits_a_control_frame_and_renders() {
        let r = Report {
            uptime_secs: 5,
            cache_bytes: 1000,
            cache_max_bytes: 2000,
            cache_entries: 3,
            cache_hits: 3,
            cache_misses: 1,
            evictions: 0,
            primed: true,
            inflight: 0,
            counters: Counters::default().pairs(),
            upstreams: vec![],
            upstream_source: Source::Dhcp,
            hot: (0..REPORT_HOT_NAMES)
                .map(|i| {
                    (
                        format!("{}.example.org. AAAA", "x".repeat(200) + &i.to_string()),
                        1,
                    )
                })
                .collect(),
        };
        let frame = crate::control::encode(&Response::Stats(r.clone())).unwrap();
        assert!(frame.len() < crate::control::MAX_FRAME_BYTES);
        let text = r.render();
        assert!(text.contains("hit rate 75.0%"), "{text}");
        assert!(text.contains("upstreams: none (none configured"), "{text}");
    }
}
