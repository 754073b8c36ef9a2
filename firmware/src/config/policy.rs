//! `[mail.policy]`: the anti-spam checks of the mail router, each on or off
//! and scored; defaults fit a home backup MX. Each key's default and bounds
//! are declared here, once.

use serde::Deserialize;

use super::{Invalid, check_range};

/// Bounds of every score and weight.
pub const MAX_SCORE: i32 = 1000;
/// At most this many `[[mail.policy.dnsbl]]` zones.
pub const MAX_DNS_LISTS: usize = 8;
/// Bounds of `lookup_budget_ms`.
pub const MIN_BUDGET_MS: u64 = 100;
pub const MAX_BUDGET_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
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
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            reject_score: 10,
            lookup_budget_ms: 5000,
            rdns: RdnsConfig::default(),
            spf: SpfConfig::default(),
            dnsbl: Vec::new(),
        }
    }
}

/// What a check's bad result does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Adds its score to the client's total.
    Score,
    /// Refuses the recipient (5xx) on its own.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsList {
    /// The list's zone (`bl.example.org`).
    pub zone: String,
    /// Added to the score when the client is listed; negative for an
    /// allow list.
    pub weight: i32,
    /// Which answers 127.0.0.x count, by their last octet; empty: any
    /// answer in 127.0.0.0/8 but 127.255.255.0/24 (the lists' error codes).
    #[serde(default)]
    pub codes: Vec<u8>,
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
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
        Ok(())
    }

    /// The budget as a duration.
    pub fn budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lookup_budget_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bounds_hold() {
        assert!(PolicyConfig::default().validate().is_ok());
        let c: PolicyConfig = toml::from_str(
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
        assert!(toml::from_str::<PolicyConfig>("[spf]\nfail = \"bounce\"\n").is_err());
    }

    /// The shipped example's commented keys, uncommented, are valid and
    /// their values are the defaults (the DNS lists aside).
    #[test]
    fn shipped_comments_are_the_defaults() {
        let text = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
        let section = &text[text.find("[mail.policy]").unwrap() + "[mail.policy]".len()..];
        let mut toml_text = String::new();
        for line in section.lines() {
            let l = line.strip_prefix("# ").unwrap_or(line);
            if l.contains(" = ") || l.starts_with('[') {
                toml_text.push_str(&l.replace("mail.policy.", ""));
                toml_text.push('\n');
            }
        }
        let c: PolicyConfig = toml::from_str(&toml_text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.dnsbl.len(), 2);
        assert_eq!(PolicyConfig { dnsbl: vec![], ..c }, PolicyConfig::default());
    }
}
