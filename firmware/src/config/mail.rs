//! `[mail]`: the mail router's listener, limits, relay policy, spool and
//! delivery. Each key's default and bounds are declared here, once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::net::Prefix;
use super::{Invalid, check_range};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// Addresses to listen on. Default `["0.0.0.0:25", "[::]:25"]`.
    pub listen: Vec<String>,
    /// Domains this board accepts mail for from anyone (backup MX). Default none.
    pub domains: Vec<String>,
    /// Client networks (CIDR) that may relay to any domain. Default
    /// loopback only.
    pub relay_networks: Vec<String>,
    /// Largest message accepted, in bytes. Default 25 MiB (1 KiB .. 1 GiB).
    pub max_message_bytes: u64,
    /// Most recipients per message. Default 100 (1 .. 1000).
    pub max_recipients: usize,
    /// Protocol errors before a session is closed. Default 10 (1 .. 100).
    pub max_errors: u32,
    /// Delay added per protocol error, milliseconds. Default 1000 (0 .. 10000).
    pub error_delay_ms: u64,
    /// Concurrent inbound sessions. Default 4 (1 .. 64).
    pub inbound_limit: usize,
    /// Extra connections held in the tarpit beyond the limit, greeting
    /// delayed; past these, 421. Default 8 (0 .. 256).
    pub tarpit_connections: usize,
    /// Per-command timeout, seconds. Default 300 (1 .. 3600).
    pub command_timeout_s: u64,
    /// Largest spool on disk, bytes; over it new mail gets 452. Default
    /// 256 MiB (1 MiB .. 1 TiB).
    pub spool_max_bytes: u64,
    /// Free space kept on the data partition; below it new mail gets 452.
    /// Default 16 MiB (0 .. 1 TiB).
    pub min_free_bytes: u64,
    /// A spool segment is closed and a new one started past this size.
    /// Default 4 MiB (64 KiB .. 256 MiB).
    pub segment_bytes: u64,
    /// Group commit: the longest the spool writer holds a commit open
    /// for messages still being received (and as many as recent batches
    /// had) to share its fsync, milliseconds. Default 2 (0 .. 100).
    pub commit_delay_ms: u64,
    /// PEM certificate chain for STARTTLS. Default none: a self-signed
    /// pair is generated and kept under `<data_dir>/mail/`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Per-domain next hops, `"domain" = "host:port"`. Default none.
    pub routes: BTreeMap<String, String>,
    /// Next hop for every other domain, `host:port`. Default none (MX lookup).
    pub smarthost: Option<String>,
    /// Outbound connections in total. Default 4 (1 .. 64).
    pub outbound_limit: usize,
    /// Outbound connections per destination. Default 2 (1 .. 16).
    pub per_destination_limit: usize,
    /// First retry delay, seconds; doubles per attempt, with jitter.
    /// Default 60 (1 .. 86400).
    pub retry_min_s: u64,
    /// Longest retry delay, seconds. Default 3600 (1 .. 86400).
    pub retry_max_s: u64,
    /// A message still undelivered after this is bounced. Default 5 days.
    pub max_lifetime_s: u64,
    /// Routes with waiting mail are probed this often, seconds. Default 30
    /// (1 .. 3600).
    pub probe_interval_s: u64,
    /// DNS server for MX, AAAA and A lookups (the board's own cache).
    /// Default `127.0.0.1:53`.
    pub resolver: String,
    /// Port used to reach MX hosts. Default 25 (1 .. 65535).
    pub mx_port: u16,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            listen: vec!["0.0.0.0:25".into(), "[::]:25".into()],
            domains: vec![],
            relay_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            error_delay_ms: 1000,
            inbound_limit: 4,
            tarpit_connections: 8,
            command_timeout_s: 300,
            spool_max_bytes: 256 * 1024 * 1024,
            min_free_bytes: 16 * 1024 * 1024,
            segment_bytes: 4 * 1024 * 1024,
            commit_delay_ms: 2,
            tls_cert: None,
            tls_key: None,
            routes: BTreeMap::new(),
            smarthost: None,
            outbound_limit: 4,
            per_destination_limit: 2,
            retry_min_s: 60,
            retry_max_s: 3600,
            max_lifetime_s: 5 * 24 * 3600,
            probe_interval_s: 30,
            resolver: "127.0.0.1:53".into(),
            mx_port: 25,
        }
    }
}

fn invalid(key: &str, message: String) -> Invalid {
    Invalid {
        key: key.into(),
        message,
    }
}

impl MailConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        for l in &self.listen {
            l.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "mail.listen",
                    format!("expected addresses like \"0.0.0.0:25\" or \"[::]:25\", found {l:?}"),
                )
            })?;
        }
        for n in &self.relay_networks {
            Prefix::parse(n).ok_or_else(|| {
                invalid(
                    "mail.relay_networks",
                    format!("expected networks like \"192.168.1.0/24\", found {n:?}"),
                )
            })?;
        }
        for d in &self.domains {
            crate::smtp::command::parse_domain(d).map_err(|_| {
                invalid(
                    "mail.domains",
                    format!("expected domain names, found {d:?}"),
                )
            })?;
        }
        for (d, hop) in &self.routes {
            if !valid_hop(hop) {
                return Err(invalid(
                    &format!("mail.routes.{d}"),
                    format!("expected \"host:port\", found {hop:?}"),
                ));
            }
        }
        if let Some(h) = &self.smarthost
            && !valid_hop(h)
        {
            return Err(invalid(
                "mail.smarthost",
                format!("expected \"host:port\", found {h:?}"),
            ));
        }
        self.resolver.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "mail.resolver",
                format!("expected \"ip:port\", found {:?}", self.resolver),
            )
        })?;
        check_range("mail.mx_port", self.mx_port, 1, 65535)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "mail.tls_key",
                "tls_cert and tls_key go together".into(),
            ));
        }
        check_range(
            "mail.max_message_bytes",
            self.max_message_bytes,
            1024,
            1 << 30,
        )?;
        check_range("mail.max_recipients", self.max_recipients, 1, 1000)?;
        check_range("mail.max_errors", self.max_errors, 1, 100)?;
        check_range("mail.error_delay_ms", self.error_delay_ms, 0, 10_000)?;
        check_range("mail.inbound_limit", self.inbound_limit, 1, 64)?;
        check_range("mail.tarpit_connections", self.tarpit_connections, 0, 256)?;
        check_range("mail.command_timeout_s", self.command_timeout_s, 1, 3600)?;
        check_range(
            "mail.spool_max_bytes",
            self.spool_max_bytes,
            1 << 20,
            1 << 40,
        )?;
        check_range("mail.min_free_bytes", self.min_free_bytes, 0, 1 << 40)?;
        check_range(
            "mail.segment_bytes",
            self.segment_bytes,
            64 * 1024,
            256 << 20,
        )?;
        check_range("mail.commit_delay_ms", self.commit_delay_ms, 0, 100)?;
        check_range("mail.outbound_limit", self.outbound_limit, 1, 64)?;
        check_range(
            "mail.per_destination_limit",
            self.per_destination_limit,
            1,
            16,
        )?;
        check_range("mail.retry_min_s", self.retry_min_s, 1, 86_400)?;
        check_range(
            "mail.retry_max_s",
            self.retry_max_s,
            self.retry_min_s,
            86_400,
        )?;
        check_range("mail.max_lifetime_s", self.max_lifetime_s, 60, 30 * 86_400)?;
        check_range("mail.probe_interval_s", self.probe_interval_s, 1, 3600)?;
        Ok(())
    }

    pub fn relay_cidrs(&self) -> Vec<Prefix> {
        self.relay_networks
            .iter()
            .filter_map(|n| Prefix::parse(n))
            .collect()
    }
}

fn valid_hop(hop: &str) -> bool {
    match hop.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let n = Prefix::parse("192.168.1.0/24").unwrap();
        assert!(n.contains("192.168.1.77".parse().unwrap()));
        assert!(n.contains("::ffff:192.168.1.7".parse().unwrap()));
        assert!(!n.contains("192.168.2.1".parse().unwrap()));
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = Prefix::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("nonsense").is_none());
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        MailConfig::default().validate().unwrap();
        let mut c = MailConfig::default();
        c.routes.insert("home.arpa".into(), "laptop".into());
        assert_eq!(c.validate().unwrap_err().key, "mail.routes.home.arpa");
        let c = MailConfig {
            inbound_limit: 0,
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.inbound_limit");
        let c = MailConfig {
            relay_networks: vec!["10.0.0.0/99".into()],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.relay_networks");
    }
}
