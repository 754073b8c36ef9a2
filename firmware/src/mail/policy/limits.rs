//! Per-client limits (`[mail.policy.limits]`): concurrent sessions and new
//! connections per window (421 4.7.0), messages (450 4.7.0) and accepted
//! recipients (452 4.7.0) per window, each counted per client address
//! (IPv6 by /64). Every refusal is temporary: a real MTA retries, a
//! backlog only arrives later. The table holds at most [`MAX_CLIENTS`]
//! clients; past it the one seen longest ago (with no session open, if
//! there is one) is forgotten. Exemptions (relay networks, authenticated
//! clients) are the caller's. Pure: `now` is passed in.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::policy::LimitsConfig;
use crate::smtp::Reply;

/// Clients tracked at once.
pub const MAX_CLIENTS: usize = 1024;

/// A client as the limits count it: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u32::from(v4) as u128),
                None => ClientKey(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

/// A count over a fixed window starting at `start`.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: u64,
    count: u32,
}

impl Window {
    /// Counts one more unless that goes over `max` within the window.
    fn take(&mut self, now: u64, window: u64, max: u32) -> bool {
        if now >= self.start.saturating_add(window) || now < self.start {
            *self = Window {
                start: now,
                count: 0,
            };
        }
        if self.count >= max {
            return false;
        }
        self.count += 1;
        true
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Client {
    sessions: u32,
    last_seen: u64,
    connections: Window,
    messages: Window,
    recipients: Window,
}

/// The per-client counts.
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    clients: HashMap<ClientKey, Client>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            config: config.clone(),
            clients: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    fn client(&mut self, key: ClientKey, now: u64) -> &mut Client {
        if !self.clients.contains_key(&key) && self.clients.len() >= MAX_CLIENTS {
            // Forget the one seen longest ago, idle ones first.
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, c)| (c.sessions > 0, c.last_seen))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.clients.remove(&k);
            }
        }
        let c = self.clients.entry(key).or_default();
        c.last_seen = now;
        c
    }

    /// A new connection: counted and its session opened, or 421 4.7.0.
    /// Each `Ok` is paired with one [`Limits::disconnect`].
    pub fn connect(&mut self, key: ClientKey, now: u64) -> Result<(), Reply> {
        let (max_sessions, window, max) = (
            self.config.max_sessions,
            self.config.window_s,
            self.config.max_connections,
        );
        let c = self.client(key, now);
        if c.sessions >= max_sessions {
            return Err(Reply::new(
                421,
                "4.7.0",
                "Too many connections from your address, try again later",
            ));
        }
        if !c.connections.take(now, window, max) {
            return Err(Reply::new(
                421,
                "4.7.0",
                "Too many connections from your address recently, try again later",
            ));
        }
        c.sessions += 1;
        Ok(())
    }

    /// A session opened by [`Limits::connect`] ended.
    pub fn disconnect(&mut self, key: ClientKey) {
        if let Some(c) = self.clients.get_mut(&key) {
            c.sessions = c.sessions.saturating_sub(1);
        }
    }

    /// A MAIL command: counted, or 450 4.7.0.
    pub fn message(&mut self, key: ClientKey, now: u64) -> Result<(), Reply> {
        let (window, max) = (self.config.window_s, self.config.max_messages);
        if self.client(key, now).messages.take(now, window, max) {
            return Ok(());
        }
        Err(Reply::new(
            450,
            "4.7.0",
            "Too many messages from your address, try again later",
        ))
    }

    /// A recipient about to be accepted: counted, or 452 4.7.0.
    pub fn recipient(&mut self, key: ClientKey, now: u64) -> Result<(), Reply> {
        let (window, max) = (self.config.window_s, self.config.max_recipients);
        if self.client(key, now).recipients.take(now, window, max) {
            return Ok(());
        }
        Err(Reply::new(
            452,
            "4.7.0",
            "Too many recipients from your address, try again later",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LimitsConfig {
        LimitsConfig {
            max_sessions: 2,
            window_s: 60,
            max_connections: 3,
            max_messages: 2,
            max_recipients: 3,
        }
    }

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    fn code(r: Result<(), Reply>) -> (u16, &'static str) {
        match r {
            Ok(()) => (250, ""),
            Err(r) => (r.code, r.enhanced.unwrap()),
        }
    }

    #[test]
    fn concurrent_sessions_and_connection_rate_get_421_4_7_0() {
        let mut l = Limits::new(&config());
        let a = key("203.0.113.5");
        assert_eq!(code(l.connect(a, 100)), (250, ""));
        assert_eq!(code(l.connect(a, 100)), (250, ""));
        assert_eq!(code(l.connect(a, 100)), (421, "4.7.0"));
        // Another client is not affected.
        assert_eq!(code(l.connect(key("203.0.113.6"), 100)), (250, ""));
        l.disconnect(a);
        assert_eq!(code(l.connect(a, 101)), (250, ""));
        l.disconnect(a);
        // The third connection of the window was used; the fourth is over.
        assert_eq!(code(l.connect(a, 102)), (421, "4.7.0"));
        // A new window.
        assert_eq!(code(l.connect(a, 160)), (250, ""));
    }

    #[test]
    fn messages_450_and_recipients_452_per_window() {
        let mut l = Limits::new(&config());
        let a = key("2001:db8:1:2::7");
        // The same /64 is the same client.
        let b = key("2001:db8:1:2::8");
        assert_eq!(code(l.message(a, 0)), (250, ""));
        assert_eq!(code(l.message(b, 1)), (250, ""));
        assert_eq!(code(l.message(a, 2)), (450, "4.7.0"));
        assert_eq!(code(l.message(key("2001:db8:1:3::7"), 2)), (250, ""));
        assert_eq!(code(l.message(a, 61)), (250, ""));
        for _ in 0..3 {
            assert_eq!(code(l.recipient(a, 5)), (250, ""));
        }
        assert_eq!(code(l.recipient(a, 5)), (452, "4.7.0"));
        assert_eq!(code(l.recipient(a, 65)), (250, ""));
        // IPv4-mapped is the IPv4 client.
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_clients_first() {
        let mut l = Limits::new(&config());
        let busy = key("10.0.0.1");
        l.connect(busy, 0).unwrap();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let k = ClientKey::of(std::net::Ipv4Addr::from(0x0b00_0000 + i).into());
            l.message(k, 1 + i as u64).unwrap();
            assert!(l.len() <= MAX_CLIENTS);
        }
        assert_eq!(l.len(), MAX_CLIENTS);
        // The client with an open session was kept: its count stands.
        l.connect(busy, 5000).unwrap();
        assert_eq!(code(l.connect(busy, 5000)), (421, "4.7.0"));
    }
}
