//! `[mail.policy]`: the anti-spam checks of the mail router, each on or off
//! and scored; defaults fit a home backup MX. Each key's default and bounds
//! are declared here, once.
//!
//! The checks that need no DNS (issue 13, part 1) are grouped in the
//! sub-tables `greeting`, `limits`, `recipients` and `greylist`; other
//! checks add their own sub-tables beside them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Invalid, check_range};

/// At most this many valid recipients in all (`recipients.valid` and the
/// lines of `recipients.file` together).
pub const MAX_VALID_RECIPIENTS: usize = 4096;
/// `recipients.file` is read only up to this size.
pub const MAX_RECIPIENTS_FILE_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
}

/// `[mail.policy.greeting]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreetingConfig {
    /// The 220 greeting waits this long, milliseconds; a client that
    /// talks first is refused (554 5.5.1). 0: no delay and no check.
    /// Relay networks get no delay. Default 3000 (0 .. 30000).
    pub delay_ms: u64,
    /// Under load (more than half of the session slots taken) the delay
    /// grows towards this, milliseconds. Default 6000 (`delay_ms` .. 60000).
    pub max_delay_ms: u64,
}

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecipientsConfig {
    /// `"domain" = ["local", ...]`. Default none. At most
    /// [`MAX_VALID_RECIPIENTS`] in all.
    pub valid: BTreeMap<String, Vec<String>>,
    /// A file of `local@domain` lines (`#` comments), read at start, at
    /// most [`MAX_RECIPIENTS_FILE_BYTES`]; an unreadable file is a
    /// warning (its domains stay accept-all). Default none.
    pub file: Option<PathBuf>,
}

/// `[mail.policy.greylist]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
            auto_allow_s = 0\nsave_interval_s = 10\n";
        let c = crate::config::Config::parse(Path::new("/etc/p.toml"), text).unwrap();
        let p = &c.mail.policy;
        assert_eq!((p.limits.max_sessions, p.limits.max_recipients), (2, 5));
        assert!(p.greylist.enabled && p.greylist.min_delay_s == 1);
        assert_eq!(p.recipients.valid["example.org"], vec!["alice".to_string()]);
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
}
