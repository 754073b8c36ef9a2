//! `[mail.policy]`: the anti-spam checks of the mail router, each on or off
//! and scored; defaults fit a home backup MX. Each key's default and bounds
//! are declared here, once.
//!
//! The checks that need no DNS (issue 13, part 1) are grouped in the
//! sub-tables `greeting`, `limits`, `recipients` and `greylist`; other
//! checks add their own sub-tables beside them. Message authentication
//! (part 3): `dkim`, `dmarc` and `auth_results`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::read::{toml_enum, toml_table};
use super::{Invalid, check_range};
use crate::mail::policy::dkim::{self, Signer, SigningKey};

/// At most this many valid recipients in all (`recipients.valid` and the
/// lines of `recipients.file` together).
pub const MAX_VALID_RECIPIENTS: usize = 4096;
/// `recipients.file` is read only up to this size.
pub const MAX_RECIPIENTS_FILE_BYTES: u64 = 256 * 1024;
/// At most this many signing domains under `[mail.policy.dkim.sign]`.
pub const MAX_SIGNING_DOMAINS: usize = 16;
/// The longest authserv_id (a host name).
pub const MAX_AUTHSERV_ID: usize = 253;
/// Bounds of every score and weight.
pub const MAX_SCORE: i32 = 1000;
/// At most this many `[[mail.policy.dnsbl]]` zones.
pub const MAX_DNS_LISTS: usize = 8;
/// Bounds of `lookup_budget_ms`.
pub const MIN_BUDGET_MS: u64 = 100;
pub const MAX_BUDGET_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    // --- checks that need no DNS (issue 13, part 1) ---
    /// `[mail.policy.greeting]`: greeting delay, early talkers.
    pub greeting: GreetingConfig,
    /// `[mail.policy.limits]`: per-client limits.
    pub limits: LimitsConfig,
    /// `[mail.policy.recipients]`: valid local parts per backup-MX domain.
    pub recipients: RecipientsConfig,
    /// `[mail.policy.greylist]`: greylisting (off by default).
    pub greylist: GreylistConfig,
    // --- checks that ask DNS (issue 13, part 2) ---
    /// A client whose checks add up to this score is refused at RCPT
    /// (550 5.7.1, with the reasons). 1 to 1000; default 10.
    pub reject_score: i32,
    /// Wall time a check may still take once its verdict is needed (at
    /// RCPT), counted from its start; past it the check is incomplete.
    /// 100 to 30000 ms; default 5000.
    pub lookup_budget_ms: u64,
    /// `[mail.policy.rdns]`: reverse DNS and forward-confirmed reverse DNS.
    pub rdns: RdnsConfig,
    /// `[mail.policy.spf]`: SPF (RFC 7208) of the MAIL FROM (or HELO).
    pub spf: SpfConfig,
    /// `[[mail.policy.dnsbl]]`: DNS block lists (positive weight) and
    /// allow lists (negative weight). None by default.
    pub dnsbl: Vec<DnsList>,
    // --- message authentication (issue 13, part 3) ---
    /// `[mail.policy.dkim]`: DKIM verification and signing.
    pub dkim: DkimConfig,
    /// `[mail.policy.dmarc]`: the DMARC policy of the From domain.
    pub dmarc: DmarcConfig,
    /// `[mail.policy.auth_results]`: the Authentication-Results field.
    pub auth_results: AuthResultsConfig,
}
toml_table!(PolicyConfig {
    greeting,
    limits,
    recipients,
    greylist,
    reject_score,
    lookup_budget_ms,
    rdns,
    spf,
    dnsbl,
    dkim,
    dmarc,
    auth_results
});

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            greeting: GreetingConfig::default(),
            limits: LimitsConfig::default(),
            recipients: RecipientsConfig::default(),
            greylist: GreylistConfig::default(),
            reject_score: 10,
            lookup_budget_ms: 5000,
            rdns: RdnsConfig::default(),
            spf: SpfConfig::default(),
            dnsbl: Vec::new(),
            dkim: DkimConfig::default(),
            dmarc: DmarcConfig::default(),
            auth_results: AuthResultsConfig::default(),
        }
    }
}

/// `[mail.policy.dkim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DkimConfig {
    /// Verify the DKIM signatures of incoming mail (the result goes in
    /// the Authentication-Results field). Default true.
    pub verify: bool,
    /// `[mail.policy.dkim.sign]`: signing of outgoing mail, From domain
    /// -> selector and key. Default none; at most [`MAX_SIGNING_DOMAINS`].
    pub sign: BTreeMap<String, DkimSignConfig>,
}
toml_table!(DkimConfig { verify, sign });

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            verify: true,
            sign: BTreeMap::new(),
        }
    }
}

/// One signing domain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DkimSignConfig {
    /// The selector: the key record is at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PKCS#8 PEM private key (RSA 2048 to 4096 bits, or Ed25519),
    /// readable by the mail service's user; read and checked when the
    /// configuration is loaded.
    pub key_file: PathBuf,
}
toml_table!(DkimSignConfig { selector, key_file } required { selector, key_file });

/// `[mail.policy.dmarc]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DmarcConfig {
    /// Evaluate DMARC (needs `dkim.verify` for its DKIM half). Default
    /// true.
    pub enabled: bool,
    /// Refuse (550 5.7.1) mail that fails DMARC when its domain asks for
    /// p=reject. Default false: a backup MX hands mail to the primary,
    /// which applies its own DMARC policy with the Authentication-Results
    /// field in view; refusing here would refuse forwarded and list mail
    /// the primary accepts, where the household cannot see it. A lookup
    /// that did not complete never refuses.
    pub reject: bool,
}
toml_table!(DmarcConfig { enabled, reject });

impl Default for DmarcConfig {
    fn default() -> Self {
        DmarcConfig {
            enabled: true,
            reject: false,
        }
    }
}

/// `[mail.policy.auth_results]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthResultsConfig {
    /// The authserv-id of the Authentication-Results field (RFC 8601);
    /// incoming fields with this id are removed. Empty (default): the
    /// system host name.
    pub authserv_id: String,
}
toml_table!(AuthResultsConfig { authserv_id });

/// `[mail.policy.greeting]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GreetingConfig {
    /// The 220 greeting waits this long, milliseconds; a client that
    /// talks first is refused (554 5.5.1). 0: no delay and no check.
    /// Relay networks get no delay. Default 3000 (0 .. 30000).
    pub delay_ms: u64,
    /// Under load (more than half of the session slots taken) the delay
    /// grows towards this, milliseconds. Default 6000 (`delay_ms` .. 60000).
    pub max_delay_ms: u64,
}
toml_table!(GreetingConfig {
    delay_ms,
    max_delay_ms
});

impl Default for GreetingConfig {
    fn default() -> Self {
        GreetingConfig {
            delay_ms: 3000,
            max_delay_ms: 6000,
        }
    }
}

/// `[mail.policy.limits]`: per client address (IPv6 by /64); relay
/// networks and, for messages and recipients, authenticated clients are
/// exempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Concurrent connections from one client; past it, 421 4.7.0.
    /// Default 4 (1 .. 256).
    pub max_sessions: u32,
    /// The window the three counts below are taken over, seconds.
    /// Default 60 (1 .. 86400).
    pub window_s: u64,
    /// New connections per window from one client; past it, 421 4.7.0.
    /// Default 120 (1 .. 100000).
    pub max_connections: u32,
    /// Messages (MAIL) per window from one client; past it, 450 4.7.0.
    /// Default 300 (1 .. 100000).
    pub max_messages: u32,
    /// Accepted recipients per window from one client; past it, 452
    /// 4.7.0. Default 1000 (1 .. 1000000).
    pub max_recipients: u32,
}
toml_table!(LimitsConfig {
    max_sessions,
    window_s,
    max_connections,
    max_messages,
    max_recipients
});

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 4,
            window_s: 60,
            max_connections: 120,
            max_messages: 300,
            max_recipients: 1000,
        }
    }
}

/// `[mail.policy.recipients]`: recipient validation for the domains of
/// `mail.domains`. A domain named here (or in `file`) accepts only its
/// listed local parts (any case), `postmaster` and the aliases; others
/// get 550 5.1.1. A domain named nowhere accepts every local part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipientsConfig {
    /// `"domain" = ["local", ...]`. Default none. At most
    /// [`MAX_VALID_RECIPIENTS`] in all.
    pub valid: BTreeMap<String, Vec<String>>,
    /// A file of `local@domain` lines (`#` comments), read at start, at
    /// most [`MAX_RECIPIENTS_FILE_BYTES`]; an unreadable file is a
    /// warning (its domains stay accept-all). Default none.
    pub file: Option<PathBuf>,
}
toml_table!(RecipientsConfig { valid, file });

/// `[mail.policy.greylist]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GreylistConfig {
    /// Default false.
    pub enabled: bool,
    /// A retry of a (client /24 or /64, sender, recipient) triplet passes
    /// this long after its first sighting, seconds. Default 300 (0 .. 3600).
    pub min_delay_s: u64,
    /// ... and no later than this after it (else it starts over),
    /// seconds. Default 2 days (`min_delay_s` .. 7 days).
    pub retry_window_s: u64,
    /// A client network that passed is let through without delay for
    /// this long after its last message, seconds; a passed triplet is
    /// remembered as long (at least `retry_window_s`). 0: no network is
    /// let through on its own. Default 35 days (0 .. 365 days).
    pub auto_allow_s: u64,
    /// The table is saved to `<data_dir>/mail/greylist.db` at most this
    /// often (and at clean shutdown), seconds. Default 900 (10 .. 86400).
    pub save_interval_s: u64,
}
toml_table!(GreylistConfig {
    enabled,
    min_delay_s,
    retry_window_s,
    auto_allow_s,
    save_interval_s
});

impl Default for GreylistConfig {
    fn default() -> Self {
        GreylistConfig {
            enabled: false,
            min_delay_s: 300,
            retry_window_s: 2 * 86_400,
            auto_allow_s: 35 * 86_400,
            save_interval_s: 900,
        }
    }
}

/// What a check's bad result does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Adds its score to the client's total.
    Score,
    /// Refuses the recipient (5xx) on its own.
    Reject,
}
toml_enum!(Action { "score" => Score, "reject" => Reject });

#[derive(Debug, Clone, PartialEq)]
pub struct RdnsConfig {
    pub enabled: bool,
    /// The client's address has no PTR name. Default score.
    pub missing: Action,
    /// Default 3.
    pub missing_score: i32,
    /// No PTR name maps back to the client's address. Default score.
    pub mismatch: Action,
    /// Default 2.
    pub mismatch_score: i32,
}
toml_table!(RdnsConfig {
    enabled,
    missing,
    missing_score,
    mismatch,
    mismatch_score
});

impl Default for RdnsConfig {
    fn default() -> Self {
        RdnsConfig {
            enabled: true,
            missing: Action::Score,
            missing_score: 3,
            mismatch: Action::Score,
            mismatch_score: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpfConfig {
    pub enabled: bool,
    /// SPF fail. Default score: a backup MX sees forwarded mail.
    pub fail: Action,
    /// Default 4.
    pub fail_score: i32,
    /// SPF softfail. Default score.
    pub softfail: Action,
    /// Default 2.
    pub softfail_score: i32,
}
toml_table!(SpfConfig {
    enabled,
    fail,
    fail_score,
    softfail,
    softfail_score
});

impl Default for SpfConfig {
    fn default() -> Self {
        SpfConfig {
            enabled: true,
            fail: Action::Score,
            fail_score: 4,
            softfail: Action::Score,
            softfail_score: 2,
        }
    }
}

/// One DNS list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DnsList {
    /// The list's zone (`bl.example.org`).
    pub zone: String,
    /// Added to the score when the client is listed; negative for an
    /// allow list.
    pub weight: i32,
    /// Which answers 127.0.0.x count, by their last octet; empty: any
    /// answer in 127.0.0.0/8 but 127.255.255.0/24 (the lists' error codes).
    pub codes: Vec<u8>,
}
toml_table!(DnsList { zone, weight, codes } required { zone, weight });

/// A local part as written in `recipients`: atext and dots, 1..64 bytes.
pub fn valid_local_part(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$&'*+-/=?^_`{|}~.".contains(c))
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let g = &self.greeting;
        check_range("mail.policy.greeting.delay_ms", g.delay_ms, 0, 30_000)?;
        check_range(
            "mail.policy.greeting.max_delay_ms",
            g.max_delay_ms,
            g.delay_ms,
            60_000,
        )?;
        let l = &self.limits;
        check_range("mail.policy.limits.max_sessions", l.max_sessions, 1, 256)?;
        check_range("mail.policy.limits.window_s", l.window_s, 1, 86_400)?;
        check_range(
            "mail.policy.limits.max_connections",
            l.max_connections,
            1,
            100_000,
        )?;
        check_range(
            "mail.policy.limits.max_messages",
            l.max_messages,
            1,
            100_000,
        )?;
        check_range(
            "mail.policy.limits.max_recipients",
            l.max_recipients,
            1,
            1_000_000,
        )?;
        let r = &self.recipients;
        let mut n = 0;
        for (domain, locals) in &r.valid {
            let key = format!("mail.policy.recipients.valid.{domain}");
            for l in locals {
                if !valid_local_part(l) {
                    return Err(Invalid {
                        key,
                        message: format!("expected local parts like \"alice\", found {l:?}"),
                    });
                }
            }
            n += locals.len();
        }
        if n > MAX_VALID_RECIPIENTS {
            return Err(Invalid {
                key: "mail.policy.recipients.valid".into(),
                message: format!("expected at most {MAX_VALID_RECIPIENTS} recipients, found {n}"),
            });
        }
        if let Some(f) = &r.file
            && !f.is_absolute()
        {
            return Err(Invalid {
                key: "mail.policy.recipients.file".into(),
                message: format!("expected an absolute path, found {f:?}"),
            });
        }
        let gl = &self.greylist;
        check_range("mail.policy.greylist.min_delay_s", gl.min_delay_s, 0, 3600)?;
        check_range(
            "mail.policy.greylist.retry_window_s",
            gl.retry_window_s,
            gl.min_delay_s,
            7 * 86_400,
        )?;
        check_range(
            "mail.policy.greylist.auto_allow_s",
            gl.auto_allow_s,
            0,
            365 * 86_400,
        )?;
        check_range(
            "mail.policy.greylist.save_interval_s",
            gl.save_interval_s,
            10,
            86_400,
        )?;
        let score = |key: &str, v: i32| check_range(key, v, -MAX_SCORE, MAX_SCORE);
        check_range("mail.policy.reject_score", self.reject_score, 1, MAX_SCORE)?;
        check_range(
            "mail.policy.lookup_budget_ms",
            self.lookup_budget_ms,
            MIN_BUDGET_MS,
            MAX_BUDGET_MS,
        )?;
        score("mail.policy.rdns.missing_score", self.rdns.missing_score)?;
        score("mail.policy.rdns.mismatch_score", self.rdns.mismatch_score)?;
        score("mail.policy.spf.fail_score", self.spf.fail_score)?;
        score("mail.policy.spf.softfail_score", self.spf.softfail_score)?;
        if self.dnsbl.len() > MAX_DNS_LISTS {
            return Err(Invalid {
                key: "mail.policy.dnsbl".into(),
                message: format!("at most {MAX_DNS_LISTS} lists"),
            });
        }
        for l in &self.dnsbl {
            score("mail.policy.dnsbl.weight", l.weight)?;
            // Room for the 32 nibbles of an IPv6 address before the zone.
            let ok = l.zone.len() <= 180
                && crate::mail::name::Name::from_ascii(&l.zone).is_ok_and(|n| !n.is_root());
            if !ok {
                return Err(Invalid {
                    key: "mail.policy.dnsbl.zone".into(),
                    message: format!("{:?} is not a DNS list's zone", l.zone),
                });
            }
        }
        let id = &self.auth_results.authserv_id;
        if id.len() > MAX_AUTHSERV_ID || !(id.is_empty() || dkim::record::is_name(id)) {
            return Err(Invalid {
                key: "mail.policy.auth_results.authserv_id".into(),
                message: format!("expected a host name, found {id:?}"),
            });
        }
        if self.dkim.sign.len() > MAX_SIGNING_DOMAINS {
            return Err(Invalid {
                key: "mail.policy.dkim.sign".into(),
                message: format!("expected at most {MAX_SIGNING_DOMAINS} domains"),
            });
        }
        self.signers()?;
        Ok(())
    }

    /// The signers of `dkim.sign`, their keys read and checked.
    pub fn signers(&self) -> Result<Vec<Signer>, Invalid> {
        let mut out = Vec::new();
        for (domain, c) in &self.dkim.sign {
            let key = format!("mail.policy.dkim.sign.{domain}.key_file");
            let bad = |e: &dyn std::fmt::Display| Invalid {
                key: key.clone(),
                message: format!("{}: {e}", c.key_file.display()),
            };
            let text = read_bounded(&c.key_file).map_err(|e| bad(&e))?;
            let signing_key = SigningKey::from_pem(&text).map_err(|e| bad(&e))?;
            out.push(
                Signer::new(domain, &c.selector, signing_key).map_err(|e| Invalid {
                    key: format!("mail.policy.dkim.sign.{domain}"),
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// The budget of the DNS checks as a duration.
    pub fn budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lookup_budget_ms)
    }

    /// Checks against the rest of `[mail]`: every domain of
    /// `recipients.valid` is one of `domains`.
    pub fn validate_with(&self, domains: &[String]) -> Result<(), Invalid> {
        for d in self.recipients.valid.keys() {
            let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
            if !domains.iter().any(|x| norm(x) == norm(d)) {
                return Err(Invalid {
                    key: format!("mail.policy.recipients.valid.{d}"),
                    message: format!("{d:?} is not one of mail.domains"),
                });
            }
        }
        Ok(())
    }
}

fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(dkim::sign::MAX_KEY_FILE as u64 + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PolicyConfig {
        crate::config::read::from_str(text).unwrap()
    }

    #[test]
    fn authentication_defaults_and_signing_keys_checked_at_load() {
        let c = parse("");
        assert!(c.dkim.verify && c.dmarc.enabled && !c.dmarc.reject);
        assert!(c.auth_results.authserv_id.is_empty());
        assert!(c.validate().is_ok());
        let dir = std::env::temp_dir().join(format!("pb-dkim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, dkim::sign::tests::TEST_RSA_PEM).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let with = |path: &std::path::Path| {
            parse(&format!(
                "[dkim.sign.\"home.example\"]\nselector = \"s1\"\nkey_file = {:?}\n",
                path.display().to_string()
            ))
        };
        let c = with(&good);
        assert!(c.validate().is_ok());
        assert_eq!(c.signers().unwrap()[0].domain(), "home.example");
        let e = with(&bad).validate().unwrap_err();
        assert_eq!(e.key, "mail.policy.dkim.sign.home.example.key_file");
        assert!(
            with(std::path::Path::new("/nonexistent"))
                .validate()
                .is_err()
        );
        let c = parse("[auth_results]\nauthserv_id = \"not a name\"");
        assert_eq!(
            c.validate().unwrap_err().key,
            "mail.policy.auth_results.authserv_id"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_are_valid_and_bounds_name_the_key() {
        PolicyConfig::default().validate().unwrap();
        let mut p = PolicyConfig::default();
        p.greeting.max_delay_ms = 100;
        let e = p.validate().unwrap_err();
        assert_eq!(e.key, "mail.policy.greeting.max_delay_ms");
        let mut p = PolicyConfig::default();
        p.recipients
            .valid
            .insert("home.arpa".into(), vec!["a b".into()]);
        assert_eq!(
            p.validate().unwrap_err().key,
            "mail.policy.recipients.valid.home.arpa"
        );
        p.recipients
            .valid
            .insert("home.arpa".into(), vec!["Alice".into()]);
        p.validate().unwrap();
        assert!(p.validate_with(&["home.arpa".into()]).is_ok());
        assert!(p.validate_with(&["other.test".into()]).is_err());
    }

    #[test]
    fn every_key_parses_from_toml_and_errors_name_the_key() {
        use std::path::Path;
        let text = "[mail]\ndomains = [\"example.org\"]\n\
            [mail.policy.greeting]\ndelay_ms = 0\nmax_delay_ms = 0\n\
            [mail.policy.limits]\nmax_sessions = 2\nwindow_s = 10\nmax_connections = 3\n\
            max_messages = 4\nmax_recipients = 5\n\
            [mail.policy.recipients]\nfile = \"/data/r.txt\"\n\
            [mail.policy.recipients.valid]\n\"example.org\" = [\"alice\"]\n\
            [mail.policy.greylist]\nenabled = true\nmin_delay_s = 1\nretry_window_s = 60\n\
            auto_allow_s = 0\nsave_interval_s = 10\n\
            [mail.policy.dkim]\nverify = false\n[mail.policy.dkim.sign]\n\
            [mail.policy.dmarc]\nenabled = false\nreject = true\n\
            [mail.policy.auth_results]\nauthserv_id = \"mx2.example.org\"\n";
        let c = crate::config::Config::parse(Path::new("/etc/p.toml"), text).unwrap();
        let p = &c.mail.policy;
        assert_eq!((p.limits.max_sessions, p.limits.max_recipients), (2, 5));
        assert!(p.greylist.enabled && p.greylist.min_delay_s == 1);
        assert_eq!(p.recipients.valid["example.org"], vec!["alice".to_string()]);
        assert!(!p.dkim.verify && !p.dmarc.enabled && p.dmarc.reject);
        assert_eq!(p.auth_results.authserv_id, "mx2.example.org");
        let bad = text.replace("\"example.org\" = [", "\"other.test\" = [");
        let e = crate::config::Config::parse(Path::new("/etc/p.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mail.policy.recipients.valid.other.test"), "{e}");
        let bad = text.replace("window_s = 10", "window_s = 0");
        let e = crate::config::Config::parse(Path::new("/etc/p.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":8:") && e.contains("mail.policy.limits.window_s"),
            "{e}"
        );
    }

    #[test]
    fn defaults_validate_and_bounds_hold() {
        assert!(PolicyConfig::default().validate().is_ok());
        let c: PolicyConfig = crate::config::read::from_str(
            "reject_score = 5\n[spf]\nfail = \"reject\"\n[[dnsbl]]\nzone = \"bl.test\"\nweight = 6\ncodes = [2, 4]\n",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.spf.fail, Action::Reject);
        assert_eq!(c.dnsbl[0].codes, vec![2, 4]);
        let bad = PolicyConfig {
            reject_score: 0,
            ..PolicyConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "mail.policy.reject_score");
        let bad = PolicyConfig {
            dnsbl: vec![DnsList {
                zone: "bad..zone".into(),
                weight: 1,
                codes: vec![],
            }],
            ..PolicyConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "mail.policy.dnsbl.zone");
        assert!(
            crate::config::read::from_str::<PolicyConfig>("[spf]\nfail = \"bounce\"\n").is_err()
        );
    }

    /// The shipped example's commented keys, uncommented, are valid and
    /// their values are the defaults (the DNS lists aside; the signing key
    /// and authserv-id examples left out).
    #[test]
    fn shipped_comments_are_the_defaults() {
        let text = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
        let section = &text[text.find("[mail.policy]").unwrap() + "[mail.policy]".len()..];
        let mut toml_text = String::new();
        for line in section.lines() {
            let l = line.strip_prefix("# ").unwrap_or(line);
            // Examples, not defaults: a signing key and an authserv-id.
            if l.contains("key_file") || l.starts_with("authserv_id") {
                continue;
            }
            if l.contains(" = ") || l.starts_with('[') {
                toml_text.push_str(&l.replace("mail.policy.", ""));
                toml_text.push('\n');
            }
        }
        let c: PolicyConfig = crate::config::read::from_str(&toml_text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.dnsbl.len(), 2);
        assert_eq!(PolicyConfig { dnsbl: vec![], ..c }, PolicyConfig::default());
    }
}
