//! Per-client rate limit: a token bucket per client address in a table
//! bounded by `dns.rate_limit_clients`. When the table is full, idle
//! clients (full buckets) are forgotten first, then the least recently
//! seen one. Pure: `now` in milliseconds is passed in.

use std::collections::HashMap;
use std::net::IpAddr;

use super::cache::Millis;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths, to stay in integers.
    milli_tokens: u64,
    last: Millis,
}

pub struct RateLimiter {
    qps: u64,
    burst: u64,
    max_clients: usize,
    table: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(qps: u32, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter {
            qps: qps as u64,
            burst: burst.max(1) as u64,
            max_clients: max_clients.max(1),
            table: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.table.len()
    }

    /// True when `ip` may send one more query at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Millis) -> bool {
        let full = self.burst * 1000;
        if !self.table.contains_key(&ip) && self.table.len() >= self.max_clients {
            self.make_room(now);
        }
        let (qps, burst_milli) = (self.qps, full);
        let b = self.table.entry(ip).or_insert(Bucket {
            milli_tokens: burst_milli,
            last: now,
        });
        let elapsed = (now - b.last).max(0) as u64;
        b.milli_tokens = (b.milli_tokens + elapsed * qps).min(burst_milli);
        b.last = now;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn make_room(&mut self, now: Millis) {
        let (qps, full) = (self.qps, self.burst * 1000);
        self.table
            .retain(|_, b| b.milli_tokens + (now - b.last).max(0) as u64 * qps < full);
        if self.table.len() >= self.max_clients
            && let Some(oldest) = self
                .table
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| *k)
        {
            self.table.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut r = RateLimiter::new(10, 5, 16);
        let ip: IpAddr = "192.168.1.2".parse().unwrap();
        assert!((0..5).all(|_| r.allow(ip, 0)));
        assert!(!r.allow(ip, 0));
        assert!(r.allow(ip, 100), "one token after 100 ms at 10 qps");
        assert!(!r.allow(ip, 100));
    }

    #[test]
    fn table_stays_bounded() {
        let mut r = RateLimiter::new(10, 5, 16);
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(r.allow(ip, i as Millis));
            assert!(r.clients() <= 16);
        }
    }
}
