//! `[mail]`: the mail router's listener, limits, relay policy, spool and
//! delivery. Each key's default and bounds are declared here, once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use toml::de::DeValue;

use super::net::Prefix;
use super::read::{self, FromToml, ReadError, Value, toml_enum, toml_table};
use super::{Invalid, check_range};

/// At most this many entries in `mail.my_names`, and in `mail.my_addresses`.
pub const MAX_SELF_ENTRIES: usize = 16;

/// At most this many entries in `[mail.aliases]`.
pub const MAX_ALIASES: usize = 64;
/// At most this many addresses on the right of one alias.
pub const MAX_ALIAS_TARGETS: usize = 16;
/// Aliases naming aliases (`postmaster = "root"`), at most this deep.
pub const MAX_ALIAS_DEPTH: usize = 4;
/// One recipient expands to at most this many addresses.
pub const MAX_ALIAS_EXPANSION: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    /// Addresses to listen on. Default `["0.0.0.0:25", "[::]:25"]`.
    pub listen: Vec<String>,
    /// Submission listener addresses (port 587 for LAN clients): MAIL
    /// needs STARTTLS then AUTH. Default none (off); needs `passwd_file`.
    pub submission_listen: Vec<String>,
    /// Password file for AUTH PLAIN/LOGIN: `user:$6$...` lines (SHA-512
    /// crypt). AUTH is offered only under TLS, on every listener, when
    /// this is set. Default none (no AUTH).
    pub passwd_file: Option<PathBuf>,
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
    /// A message whose header section has more `Received:` fields than
    /// this is refused at the end of DATA/BDAT with 554 5.4.6 (a mail
    /// loop; Postfix's `hopcount_limit`). Default 50 (1 .. 1000).
    pub hopcount_limit: u32,
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
    /// Per-domain next hops, `"domain" = "host:port"` or
    /// `"domain" = { hop = "host:port", tls = "required", auth_file = "/path" }`.
    /// Default none.
    pub routes: BTreeMap<String, Route>,
    /// Next hop for every other domain, in the same two forms as a route.
    /// Default none (MX lookup).
    pub smarthost: Option<Route>,
    /// PEM file of CA certificates that verify next hops whose route says
    /// `tls = "required"`. Default none: the system bundle
    /// `/etc/ssl/certs/ca-certificates.crt`.
    pub tls_ca_file: Option<PathBuf>,
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
    /// A message still waiting after this many seconds gets one "delayed"
    /// DSN to its sender (never for null-sender mail). Default 4 hours;
    /// 0 disables (0 .. 30 days).
    pub delay_warning_s: u64,
    /// Routes with waiting mail are probed this often, seconds. Default 30
    /// (1 .. 3600).
    pub probe_interval_s: u64,
    /// DNS server for MX, AAAA and A lookups (the board's own cache).
    /// Default `127.0.0.1:53`.
    pub resolver: String,
    /// Port used to reach MX hosts. Default 25 (1 .. 65535).
    pub mx_port: u16,
    /// Host names of this board, to recognise itself among a domain's MX
    /// hosts (RFC 5321 5.1). Default empty: `system.hostname`. At most
    /// [`MAX_SELF_ENTRIES`].
    pub my_names: Vec<String>,
    /// Addresses that reach this board although no interface carries
    /// them (the public address a NAT router forwards). The interface
    /// addresses, read at each MX delivery, and loopback count too when
    /// `listen` takes connections there on `mx_port`. Default none. At
    /// most [`MAX_SELF_ENTRIES`].
    pub my_addresses: Vec<String>,
    /// Local recipients to real addresses: `root = "me@example.org"`,
    /// `postmaster = "root"`, `"backup@board.home.arpa" = ["a@x", "b@y"]`.
    /// A key is a local part, or `local@name` with a name of this board
    /// (`system.hostname`, `my_names`); a target is an address, or a
    /// local name that is itself an alias. Applied at RCPT time to
    /// recipients at this board's names. Default none. At most
    /// [`MAX_ALIASES`] entries of [`MAX_ALIAS_TARGETS`] targets,
    /// [`MAX_ALIAS_DEPTH`] deep, [`MAX_ALIAS_EXPANSION`] addresses in
    /// all; loops are errors.
    pub aliases: BTreeMap<String, AliasTargets>,
    /// `[mail.policy]`: the anti-spam checks.
    pub policy: super::PolicyConfig,
}
toml_table!(MailConfig {
    listen,
    submission_listen,
    passwd_file,
    domains,
    relay_networks,
    max_message_bytes,
    max_recipients,
    max_errors,
    error_delay_ms,
    hopcount_limit,
    inbound_limit,
    tarpit_connections,
    command_timeout_s,
    spool_max_bytes,
    min_free_bytes,
    segment_bytes,
    commit_delay_ms,
    tls_cert,
    tls_key,
    routes,
    smarthost,
    tls_ca_file,
    outbound_limit,
    per_destination_limit,
    retry_min_s,
    retry_max_s,
    max_lifetime_s,
    delay_warning_s,
    probe_interval_s,
    resolver,
    mx_port,
    my_names,
    my_addresses,
    aliases,
    policy
});

/// The right side of an alias: one address or a list of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasTargets(pub Vec<String>);

// A string or an array.
impl FromToml for AliasTargets {
    fn read(v: &Value<'_>, path: &str) -> Result<AliasTargets, ReadError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(AliasTargets(vec![s.to_string()])),
            DeValue::Array(a) if a.len() > MAX_ALIAS_TARGETS => Err(read::invalid_value(
                v,
                path,
                format!("expected at most {MAX_ALIAS_TARGETS} addresses"),
            )),
            DeValue::Array(_) => Vec::read(v, path).map(AliasTargets),
            _ => Err(read::invalid_type(
                v,
                path,
                "an address or a list of addresses",
            )),
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            listen: vec!["0.0.0.0:25".into(), "[::]:25".into()],
            submission_listen: vec![],
            passwd_file: None,
            domains: vec![],
            relay_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            error_delay_ms: 1000,
            hopcount_limit: 50,
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
            tls_ca_file: None,
            outbound_limit: 4,
            per_destination_limit: 2,
            retry_min_s: 60,
            retry_max_s: 3600,
            max_lifetime_s: 5 * 24 * 3600,
            delay_warning_s: 4 * 3600,
            probe_interval_s: 30,
            resolver: "127.0.0.1:53".into(),
            mx_port: 25,
            my_names: vec![],
            my_addresses: vec![],
            aliases: BTreeMap::new(),
            policy: super::PolicyConfig::default(),
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
        self.policy.validate()?;
        self.policy.validate_with(&self.domains)?;
        for (key, list) in [
            ("mail.listen", &self.listen),
            ("mail.submission_listen", &self.submission_listen),
        ] {
            for l in list {
                l.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        key,
                        format!(
                            "expected addresses like \"0.0.0.0:25\" or \"[::]:25\", found {l:?}"
                        ),
                    )
                })?;
            }
        }
        if !self.submission_listen.is_empty() && self.passwd_file.is_none() {
            return Err(invalid(
                "mail.submission_listen",
                "the submission port needs mail.passwd_file (AUTH is required there)".into(),
            ));
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
        for (key, r) in self.all_routes() {
            if !valid_hop(&r.hop) {
                return Err(invalid(
                    &key,
                    format!("expected \"host:port\", found {:?}", r.hop),
                ));
            }
            if let Some(f) = &r.auth_file
                && !f.is_absolute()
            {
                return Err(invalid(
                    &format!("{key}.auth_file"),
                    format!("expected an absolute path, found {f:?}"),
                ));
            }
        }
        self.resolver.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "mail.resolver",
                format!("expected \"ip:port\", found {:?}", self.resolver),
            )
        })?;
        check_range("mail.mx_port", self.mx_port, 1, 65535)?;
        for (key, n) in [
            ("mail.my_names", self.my_names.len()),
            ("mail.my_addresses", self.my_addresses.len()),
        ] {
            if n > MAX_SELF_ENTRIES {
                return Err(invalid(
                    key,
                    format!("expected at most {MAX_SELF_ENTRIES} entries, found {n}"),
                ));
            }
        }
        for n in &self.my_names {
            use crate::smtp::command::{Domain, parse_domain};
            if !matches!(parse_domain(n.trim_end_matches('.')), Ok(Domain::Name(_))) {
                return Err(invalid(
                    "mail.my_names",
                    format!("expected host names, found {n:?}"),
                ));
            }
        }
        for a in &self.my_addresses {
            a.parse::<IpAddr>().map_err(|_| {
                invalid(
                    "mail.my_addresses",
                    format!(
                        "expected IP addresses like \"192.0.2.1\" or \"2001:db8::1\", found {a:?}"
                    ),
                )
            })?;
        }
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
        check_range("mail.hopcount_limit", self.hopcount_limit, 1, 1000)?;
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
        check_range("mail.delay_warning_s", self.delay_warning_s, 0, 30 * 86_400)?;
        check_range("mail.probe_interval_s", self.probe_interval_s, 1, 3600)?;
        Ok(())
    }

    /// Every configured route with its dotted key (`mail.routes.DOMAIN`,
    /// `mail.smarthost`).
    pub fn all_routes(&self) -> Vec<(String, &Route)> {
        let mut v: Vec<(String, &Route)> = self
            .routes
            .iter()
            .map(|(d, r)| (format!("mail.routes.{d}"), r))
            .collect();
        if let Some(s) = &self.smarthost {
            v.push(("mail.smarthost".into(), s));
        }
        v
    }

    /// True when some route asks for a verified certificate.
    pub fn needs_verification(&self) -> bool {
        self.all_routes()
            .iter()
            .any(|(_, r)| r.tls == TlsMode::Required)
    }

    /// `my_addresses`, parsed (validation has checked them).
    pub fn my_ips(&self) -> Vec<IpAddr> {
        self.my_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    pub fn relay_cidrs(&self) -> Vec<Prefix> {
        self.relay_networks
            .iter()
            .filter_map(|n| Prefix::parse(n))
            .collect()
    }
}

/// TLS on the way to a next hop (STARTTLS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsMode {
    /// Plaintext, even when the server offers STARTTLS.
    None,
    /// Opportunistic (the default): STARTTLS when offered, any
    /// certificate accepted; plaintext when not offered or when the
    /// handshake fails.
    #[default]
    May,
    /// STARTTLS with a certificate verified against `mail.tls_ca_file`
    /// (or the system bundle) and the route's host name; otherwise the
    /// mail stays queued (temporary failure).
    Required,
}
toml_enum!(TlsMode { "none" => None, "may" => May, "required" => Required });

/// A configured next hop: `"host:port"`, or a table with its TLS mode
/// and an AUTH credentials file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// `host:port`.
    pub hop: String,
    /// Default `"may"`.
    pub tls: TlsMode,
    /// File with `user:password` for AUTH PLAIN/LOGIN (sent over TLS
    /// only). Default none (no AUTH).
    pub auth_file: Option<PathBuf>,
}

impl From<&str> for Route {
    fn from(hop: &str) -> Route {
        Route {
            hop: hop.to_string(),
            tls: TlsMode::May,
            auth_file: None,
        }
    }
}

/// A route written as a table; `hop` is required.
#[derive(Default)]
struct RouteTable {
    hop: String,
    tls: TlsMode,
    auth_file: Option<PathBuf>,
}
toml_table!(RouteTable { hop, tls, auth_file } required { hop });

// A string or a table.
impl FromToml for Route {
    fn read(v: &Value<'_>, path: &str) -> Result<Route, ReadError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(Route::from(s.as_ref())),
            DeValue::Table(_) => RouteTable::read(v, path).map(|t| Route {
                hop: t.hop,
                tls: t.tls,
                auth_file: t.auth_file,
            }),
            _ => Err(read::invalid_type(
                v,
                path,
                "\"host:port\" or a table { hop, tls, auth_file }",
            )),
        }
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
    fn routes_are_strings_or_tables() {
        use crate::config::Config;
        let text = "[mail]\nsmarthost = { hop = \"relay.test:587\", tls = \"required\", auth_file = \"/etc/pocobelle/relay.auth\" }\n[mail.routes]\n\"a.test\" = \"10.0.0.1:25\"\n\"b.test\" = { hop = \"b.test:25\", tls = \"none\" }\n";
        let c = Config::parse(std::path::Path::new("f.toml"), text).unwrap();
        let s = c.mail.smarthost.as_ref().unwrap();
        assert_eq!(s.tls, TlsMode::Required);
        assert_eq!(
            s.auth_file.as_deref(),
            Some(std::path::Path::new("/etc/pocobelle/relay.auth"))
        );
        assert_eq!(c.mail.routes["a.test"], Route::from("10.0.0.1:25"));
        assert_eq!(c.mail.routes["b.test"].tls, TlsMode::None);
        assert!(c.mail.needs_verification());
        let bad = "[mail.routes]\n\"a.test\" = { hop = \"a:25\", tls = \"maybe\" }\n";
        let e = Config::parse(std::path::Path::new("f.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml:2"), "{e}");
    }

    #[test]
    fn aliases_are_strings_or_lists_and_errors_name_their_line() {
        use crate::config::Config;
        let text = "[system]\nhostname = \"box.home.arpa\"\n[mail.aliases]\nroot = \"me@example.org\"\npostmaster = [\"root\", \"ops@example.org\"]\n";
        let c = Config::parse(std::path::Path::new("f.toml"), text).unwrap();
        assert_eq!(
            c.mail.aliases["root"],
            AliasTargets(vec!["me@example.org".into()])
        );
        assert_eq!(c.mail.aliases["postmaster"].0.len(), 2);
        for (bad, line) in [
            (
                "[mail.aliases]\nroot = \"me@example.org\"\nops = \"nobody\"\n",
                "f.toml:3",
            ),
            (
                "[mail.aliases]\nroot = \"postmaster\"\npostmaster = \"root\"\n",
                "f.toml:3",
            ),
            (
                "[mail.aliases]\n\"root@example.org\" = \"me@example.org\"\n",
                "f.toml:1",
            ),
            ("[mail.aliases]\nroot = 7\n", "f.toml:2"),
        ] {
            let e = Config::parse(std::path::Path::new("f.toml"), bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(line), "{bad:?}: {e}");
        }
        let many = format!(
            "[mail.aliases]\nroot = [{}]\n",
            vec!["\"a@x.test\""; MAX_ALIAS_TARGETS + 1].join(", ")
        );
        let e = Config::parse(std::path::Path::new("f.toml"), &many)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 16"), "{e}");
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        MailConfig::default().validate().unwrap();
        let mut c = MailConfig::default();
        c.routes.insert("home.arpa".into(), "laptop".into());
        assert_eq!(c.validate().unwrap_err().key, "mail.routes.home.arpa");
        let c = MailConfig {
            smarthost: Some(Route {
                auth_file: Some("relative.auth".into()),
                ..Route::from("relay.test:587")
            }),
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.smarthost.auth_file");
        let c = MailConfig {
            hopcount_limit: 0,
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.hopcount_limit");
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
        let c = MailConfig {
            submission_listen: vec!["0.0.0.0:587".into()],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.submission_listen");
        let c = MailConfig {
            submission_listen: vec!["0.0.0.0:587".into()],
            passwd_file: Some("/etc/pocobelle/passwd".into()),
            ..MailConfig::default()
        };
        c.validate().unwrap();
        let c = MailConfig {
            submission_listen: vec!["587".into()],
            passwd_file: Some("/etc/pocobelle/passwd".into()),
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.submission_listen");
        let c = MailConfig {
            delay_warning_s: 31 * 86_400,
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.delay_warning_s");
        let c = MailConfig {
            my_names: vec!["mx2.example.org".into(), "Board.Home.Arpa.".into()],
            my_addresses: vec!["192.0.2.25".into(), "2001:db8::25".into()],
            ..MailConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(c.my_ips().len(), 2);
        let c = MailConfig {
            my_names: vec!["not a name".into()],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.my_names");
        let c = MailConfig {
            my_names: vec!["[192.0.2.1]".into()],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.my_names");
        let c = MailConfig {
            my_addresses: vec!["192.0.2.0/24".into()],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.my_addresses");
        let c = MailConfig {
            my_addresses: vec!["192.0.2.1".into(); MAX_SELF_ENTRIES + 1],
            ..MailConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "mail.my_addresses");
    }
}
