//! `[dns]`: the household DNS cache (`pocobelle dns`). Every key has its
//! default and bounds declared here; defaults fit a 64 MB board. This
//! module only describes and checks configuration; it opens no socket.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::net::Prefix;
use super::read::toml_table;
use super::{Invalid, check_range};

/// At most this many static host entries.
pub const MAX_HOSTS: usize = 1024;
/// At most this many addresses per host entry.
pub const MAX_ADDRS_PER_HOST: usize = 16;
/// At most this many listening addresses, upstreams, allow prefixes or
/// priming times.
pub const MAX_LIST: usize = 32;

/// One static host: `name` (a single label is placed in `local_domain`)
/// and its addresses; PTR records are answered for each address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostEntry {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}
toml_table!(HostEntry { name, addrs } required { name, addrs });

/// Port of a DNS-over-TLS upstream when `addr` names none (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// A DNS-over-TLS forwarder (`[[dns.tls_upstreams]]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsUpstream {
    /// `"ip"` or `"ip:port"` (`"[v6]:port"`); port 853 when omitted.
    pub addr: String,
    /// The name the server's certificate must carry (e.g. `dns.quad9.net`).
    pub name: String,
    /// PEM CA certificates that verify the server. Default none: the
    /// system bundle `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: Option<PathBuf>,
}
toml_table!(TlsUpstream { addr, name, ca_file } required { addr, name });

impl TlsUpstream {
    /// The server's address, with port 853 when none is given.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        if let Ok(a) = self.addr.parse::<SocketAddr>() {
            return Some(a);
        }
        let ip: IpAddr = self
            .addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        Some(SocketAddr::new(ip, DOT_PORT))
    }
}

/// A time of day, `HH:MM` (local time of the board).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl TimeOfDay {
    pub fn parse(s: &str) -> Option<TimeOfDay> {
        let (h, m) = s.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let hour: u8 = h.parse().ok()?;
        let minute: u8 = m.parse().ok()?;
        (hour < 24 && minute < 60).then_some(TimeOfDay { hour, minute })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// UDP and TCP listening addresses. Default `["127.0.0.1:53", "[::1]:53"]`.
    pub listen: Vec<SocketAddr>,
    /// Forwarders, IPv4 or IPv6, `addr:port`. Default none: with no
    /// `tls_upstreams` either, the servers the DHCP lease offered
    /// (`<system.run_dir>/dhcp-dns`), else only local data and the cache
    /// are answered, everything else is SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
    /// DNS-over-TLS forwarders, tried alongside `upstreams` with the same
    /// budget, RTT ranking, racing and backoff. Default none.
    pub tls_upstreams: Vec<TlsUpstream>,
    /// Persistent TLS connections kept per DNS-over-TLS upstream (queries
    /// are pipelined over them). Default 2 (1..=8).
    pub tls_connections: usize,
    /// A DNS-over-TLS connection idle this long is closed, ms. Default
    /// 30000 (1000..=600000).
    pub tls_idle_ms: u32,
    /// Client prefixes that get answers; others get REFUSED. Default
    /// loopback, RFC 1918, 169.254/16, ULA fc00::/7, link-local fe80::/10.
    pub allow: Vec<String>,
    /// Local domain answered authoritatively. Default `home.arpa`.
    pub local_domain: String,
    /// Static hosts (`[[dns.hosts]]`). Default none.
    pub hosts: Vec<HostEntry>,
    /// TTL of local answers, seconds. Default 300 (1..=86400).
    pub local_ttl: u32,
    /// Cache bound in bytes. Default 2 MiB (64 KiB..=64 MiB).
    pub cache_bytes: usize,
    /// Smallest TTL kept, seconds. Default 10 (0..=3600).
    pub min_ttl: u32,
    /// Largest TTL kept, seconds. Default 86400 (60..=604800).
    pub max_ttl: u32,
    /// Largest TTL of a negative answer, seconds. Default 3600 (1..=86400).
    pub negative_max_ttl: u32,
    /// Total time one upstream resolution may take, ms. Default 10000
    /// (500..=60000). When it runs out the answer is SERVFAIL (or stale).
    pub budget_ms: u32,
    /// After this long without a fresh answer a stale one is served, ms.
    /// Default 1800 (100..=10000).
    pub stale_after_ms: u32,
    /// How long past expiry an entry may be served stale, seconds.
    /// Default 259200 (3 days; 0..=2592000).
    pub stale_max_age: u32,
    /// Distinct questions being resolved upstream at once. Default 256
    /// (1..=4096).
    pub max_inflight: usize,
    /// Clients waiting on one in-flight question. Default 64 (1..=1024).
    pub max_waiters: usize,
    /// Open TCP client connections. Default 32 (1..=1024).
    pub tcp_max_connections: usize,
    /// A TCP client idle this long is closed, ms. Default 10000
    /// (500..=120000).
    pub tcp_idle_ms: u32,
    /// Queries per second per client address. Default 200 (1..=1000000).
    pub rate_limit_qps: u32,
    /// Burst allowed per client. Default 400 (1..=1000000).
    pub rate_limit_burst: u32,
    /// Client addresses tracked by the rate limiter. Default 1024
    /// (16..=65536).
    pub rate_limit_clients: usize,
    /// Seconds between snapshots. Default 3600 (60..=86400).
    pub snapshot_interval_secs: u32,
    /// Hottest names kept in the snapshot and primed. Default 200 (0..=5000).
    pub hot_names: usize,
    /// Times of day (`HH:MM`, local time) to re-resolve the hot set.
    /// Default `["06:30"]`.
    pub prime_times: Vec<String>,
    /// Priming resolutions started per second. Default 20 (1..=1000).
    pub prime_rate: u32,
    /// Priming gives up (and reports primed) after this long, seconds.
    /// Default 60 (1..=3600).
    pub prime_budget_secs: u32,
}
toml_table!(DnsConfig {
    listen,
    upstreams,
    tls_upstreams,
    tls_connections,
    tls_idle_ms,
    allow,
    local_domain,
    hosts,
    local_ttl,
    cache_bytes,
    min_ttl,
    max_ttl,
    negative_max_ttl,
    budget_ms,
    stale_after_ms,
    stale_max_age,
    max_inflight,
    max_waiters,
    tcp_max_connections,
    tcp_idle_ms,
    rate_limit_qps,
    rate_limit_burst,
    rate_limit_clients,
    snapshot_interval_secs,
    hot_names,
    prime_times,
    prime_rate,
    prime_budget_secs
});

pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec![
                "127.0.0.1:53".parse().expect("literal"),
                "[::1]:53".parse().expect("literal"),
            ],
            upstreams: Vec::new(),
            tls_upstreams: Vec::new(),
            tls_connections: 2,
            tls_idle_ms: 30_000,
            allow: DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect(),
            local_domain: "home.arpa".into(),
            hosts: Vec::new(),
            local_ttl: 300,
            cache_bytes: 2 * 1024 * 1024,
            min_ttl: 10,
            max_ttl: 86400,
            negative_max_ttl: 3600,
            budget_ms: 10_000,
            stale_after_ms: 1800,
            stale_max_age: 3 * 86400,
            max_inflight: 256,
            max_waiters: 64,
            tcp_max_connections: 32,
            tcp_idle_ms: 10_000,
            rate_limit_qps: 200,
            rate_limit_burst: 400,
            rate_limit_clients: 1024,
            snapshot_interval_secs: 3600,
            hot_names: 200,
            prime_times: vec!["06:30".into()],
            prime_rate: 20,
            prime_budget_secs: 60,
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl DnsConfig {
    /// Whether the forwarders come from the DHCP lease: neither
    /// `upstreams` nor `tls_upstreams` names one.
    pub fn uses_dhcp_servers(&self) -> bool {
        self.upstreams.is_empty() && self.tls_upstreams.is_empty()
    }

    /// The allow list, parsed (validated by [`DnsConfig::validate`]).
    pub fn allow_prefixes(&self) -> Vec<Prefix> {
        self.allow.iter().filter_map(|s| Prefix::parse(s)).collect()
    }

    pub fn prime_times_parsed(&self) -> Vec<TimeOfDay> {
        self.prime_times
            .iter()
            .filter_map(|s| TimeOfDay::parse(s))
            .collect()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        check_range("dns.local_ttl", self.local_ttl, 1, 86400)?;
        check_range("dns.tls_connections", self.tls_connections, 1, 8)?;
        check_range("dns.tls_idle_ms", self.tls_idle_ms, 1000, 600_000)?;
        check_range(
            "dns.cache_bytes",
            self.cache_bytes,
            64 * 1024,
            64 * 1024 * 1024,
        )?;
        check_range("dns.min_ttl", self.min_ttl, 0, 3600)?;
        check_range("dns.max_ttl", self.max_ttl, 60, 604_800)?;
        check_range("dns.negative_max_ttl", self.negative_max_ttl, 1, 86400)?;
        check_range("dns.budget_ms", self.budget_ms, 500, 60_000)?;
        check_range("dns.stale_after_ms", self.stale_after_ms, 100, 10_000)?;
        check_range("dns.stale_max_age", self.stale_max_age, 0, 2_592_000)?;
        check_range("dns.max_inflight", self.max_inflight, 1, 4096)?;
        check_range("dns.max_waiters", self.max_waiters, 1, 1024)?;
        check_range("dns.tcp_max_connections", self.tcp_max_connections, 1, 1024)?;
        check_range("dns.tcp_idle_ms", self.tcp_idle_ms, 500, 120_000)?;
        check_range("dns.rate_limit_qps", self.rate_limit_qps, 1, 1_000_000)?;
        check_range("dns.rate_limit_burst", self.rate_limit_burst, 1, 1_000_000)?;
        check_range(
            "dns.rate_limit_clients",
            self.rate_limit_clients,
            16,
            65_536,
        )?;
        check_range(
            "dns.snapshot_interval_secs",
            self.snapshot_interval_secs,
            60,
            86_400,
        )?;
        check_range("dns.hot_names", self.hot_names, 0, 5000)?;
        check_range("dns.prime_rate", self.prime_rate, 1, 1000)?;
        check_range("dns.prime_budget_secs", self.prime_budget_secs, 1, 3600)?;
        if self.min_ttl > self.max_ttl {
            return Err(invalid("dns.min_ttl", "must not exceed dns.max_ttl"));
        }
        for (key, len) in [
            ("dns.listen", self.listen.len()),
            ("dns.upstreams", self.upstreams.len()),
            ("dns.tls_upstreams", self.tls_upstreams.len()),
            ("dns.allow", self.allow.len()),
            ("dns.prime_times", self.prime_times.len()),
        ] {
            if len > MAX_LIST {
                return Err(invalid(
                    key,
                    format!("at most {MAX_LIST} items, found {len}"),
                ));
            }
        }
        if self.listen.is_empty() {
            return Err(invalid("dns.listen", "expected at least one address"));
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.port() == 0 || u.ip().is_unspecified() {
                return Err(invalid(
                    format!("dns.upstreams[{i}]"),
                    format!("expected a server address and port, found {u}"),
                ));
            }
        }
        for (i, u) in self.tls_upstreams.iter().enumerate() {
            if u.socket_addr()
                .is_none_or(|a| a.port() == 0 || a.ip().is_unspecified())
            {
                return Err(invalid(
                    format!("dns.tls_upstreams[{i}].addr"),
                    format!("expected \"ip\" or \"ip:port\", found {:?}", u.addr),
                ));
            }
            if crate::tls::server_name(&u.name).is_err() {
                return Err(invalid(
                    format!("dns.tls_upstreams[{i}].name"),
                    format!("expected the server's certificate name, found {:?}", u.name),
                ));
            }
        }
        for (i, a) in self.allow.iter().enumerate() {
            if Prefix::parse(a).is_none() {
                return Err(invalid(
                    format!("dns.allow[{i}]"),
                    format!("expected a prefix like 192.168.0.0/16 or fc00::/7, found {a:?}"),
                ));
            }
        }
        for (i, t) in self.prime_times.iter().enumerate() {
            if TimeOfDay::parse(t).is_none() {
                return Err(invalid(
                    format!("dns.prime_times[{i}]"),
                    format!("expected a time of day HH:MM, found {t:?}"),
                ));
            }
        }
        // The zone's SOA names its contact `hostmaster.<local_domain>`,
        // which must fit a DNS name too (found by `make fuzz-long`).
        if !ldh_name(&self.local_domain) || !ldh_name(&format!("hostmaster.{}", self.local_domain))
        {
            return Err(invalid(
                "dns.local_domain",
                format!(
                    "expected a domain name of letters, digits, '-' and '.', short enough \
                     for `hostmaster.` in front (at most 242 characters), found {:?}",
                    self.local_domain
                ),
            ));
        }
        if self.hosts.len() > MAX_HOSTS {
            return Err(invalid(
                "dns.hosts",
                format!("at most {MAX_HOSTS} hosts, found {}", self.hosts.len()),
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            // A single label is served inside the local domain: the whole
            // name must fit a DNS name too (found by fuzzing: a long label
            // and a long local domain passed apart and stopped the DNS).
            let full = if h.name.trim_end_matches('.').contains('.') {
                h.name.clone()
            } else {
                format!("{}.{}", h.name, self.local_domain)
            };
            if !ldh_name(&h.name) || !ldh_name(&full) {
                return Err(invalid(
                    format!("dns.hosts[{i}].name"),
                    format!(
                        "expected a host name of letters, digits, '-' and '.', found {:?}",
                        h.name
                    ),
                ));
            }
            if h.addrs.is_empty() || h.addrs.len() > MAX_ADDRS_PER_HOST {
                return Err(invalid(
                    format!("dns.hosts[{i}].addrs"),
                    format!("expected 1 to {MAX_ADDRS_PER_HOST} addresses"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `name` is a DNS name of letter-digit-hyphen labels (a
/// trailing dot allowed) within the wire format's bounds.
fn ldh_name(name: &str) -> bool {
    let labels = name.strip_suffix('.').unwrap_or(name);
    !labels.is_empty()
        && labels
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && crate::dns::wire::name_from_text(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn defaults_are_valid_and_fit_a_small_board() {
        let d = DnsConfig::default();
        d.validate().unwrap();
        assert_eq!(d.cache_bytes, 2 * 1024 * 1024);
        assert_eq!(d.budget_ms, 10_000);
    }

    /// Found by `make fuzz-long` (2026-12-05): each name passed alone,
    /// but the host's full name in the local domain was over 255 octets
    /// and the DNS service refused to start on a configuration that
    /// `check-config` had passed.
    #[test]
    fn a_host_name_must_fit_inside_the_local_domain() {
        let label = "h".repeat(63);
        let domain = [
            "d".repeat(63),
            "e".repeat(63),
            "f".repeat(63),
            "arpa".into(),
        ]
        .join(".");
        let mut d = DnsConfig {
            local_domain: domain.clone(),
            hosts: vec![HostEntry {
                name: label.clone(),
                addrs: vec!["10.0.0.2".parse().unwrap()],
            }],
            ..DnsConfig::default()
        };
        let e = d.validate().unwrap_err();
        assert_eq!(e.key, "dns.hosts[0].name");
        d.local_domain = "home.arpa".into();
        d.validate().unwrap();
        crate::dns::local::LocalData::from_config(&d).unwrap();
        d.local_domain = domain;
        d.hosts[0].name = format!("{label}.example");
        d.validate().unwrap();
        crate::dns::local::LocalData::from_config(&d).unwrap();
    }

    #[test]
    fn the_local_domain_is_letters_digits_and_hyphens() {
        for bad in ["", ".", "home\tarpa", "a..b", "we ird.arpa", "x!.arpa"] {
            let d = DnsConfig {
                local_domain: bad.into(),
                ..DnsConfig::default()
            };
            assert_eq!(d.validate().unwrap_err().key, "dns.local_domain", "{bad:?}");
        }
        // Found by `make fuzz-long`: a domain the DNS could not make its
        // SOA contact (`hostmaster.` in front) for.
        let long = [
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
        ]
        .join(".");
        assert!(crate::dns::wire::name_from_text(&long).is_ok());
        let d = DnsConfig {
            local_domain: long,
            ..DnsConfig::default()
        };
        assert_eq!(d.validate().unwrap_err().key, "dns.local_domain");
        for good in ["lan", "home.arpa.", "my-house.example.org"] {
            let d = DnsConfig {
                local_domain: good.into(),
                ..DnsConfig::default()
            };
            d.validate().unwrap();
            crate::dns::local::LocalData::from_config(&d).unwrap();
        }
    }

    #[test]
    fn prefixes_match() {
        let p = Prefix::parse("192.168.0.0/16").unwrap();
        assert!(p.contains("192.168.4.5".parse().unwrap()));
        assert!(p.contains("::ffff:192.168.4.5".parse().unwrap()));
        assert!(!p.contains("192.169.0.1".parse().unwrap()));
        let p = Prefix::parse("fc00::/7").unwrap();
        assert!(p.contains("fd12::1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Prefix::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let text = "[dns]\nupstreams = [\"127.0.0.1:5353\"]\nallow = [\"10.0.0.0/8\", \"bogus\"]\n";
        let e = Config::parse(Path::new("f.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml:3:") && e.contains("dns.allow[1]"), "{e}");
        let e = Config::parse(Path::new("f.toml"), "[dns]\ncache_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:") && e.contains("dns.cache_bytes"), "{e}");
        let e = Config::parse(Path::new("f.toml"), "[dns]\nprime_times = [\"6:30\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.prime_times[0]"), "{e}");
        let text = "[dns]\n[[dns.hosts]]\nname = \"nas\"\naddrs = [\"192.168.1.2\"]\n[[dns.hosts]]\nname = \"bad name\"\naddrs = [\"192.168.1.3\"]\n";
        let e = Config::parse(Path::new("f.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.hosts[1].name") && e.contains(":6:"), "{e}");
        let text = "[dns]\n[[dns.tls_upstreams]]\naddr = \"9.9.9.9\"\nname = \"dns.quad9.net\"\n[[dns.tls_upstreams]]\naddr = \"nowhere\"\nname = \"x\"\n";
        let e = Config::parse(Path::new("f.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.tls_upstreams[1].addr"), "{e}");
        let ok = Config::parse(
            Path::new("f.toml"),
            "[dns]\n[[dns.tls_upstreams]]\naddr = \"[2620:fe::9]\"\nname = \"dns.quad9.net\"\n",
        )
        .unwrap();
        assert_eq!(ok.dns.tls_upstreams[0].socket_addr().unwrap().port(), 853);
    }
}
