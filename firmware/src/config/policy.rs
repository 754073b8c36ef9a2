//! `[mail.policy]`: the anti-spam checks of the mail router, each on or off
//! and scored; defaults fit a home backup MX. Each key's default and bounds
//! are declared here, once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Invalid;
use crate::mail::policy::dkim::{self, Signer, SigningKey};

/// At most this many signing domains under `[mail.policy.dkim_sign]`.
pub const MAX_SIGNING_DOMAINS: usize = 16;
/// The longest authserv_id (a host name).
pub const MAX_AUTHSERV_ID: usize = 253;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Verify the DKIM signatures and the DMARC policy of incoming mail
    /// and record them in an Authentication-Results field. Default on.
    pub dkim_verify: bool,
    /// Refuse (550 5.7.1) mail that fails DMARC when its domain asks for
    /// p=reject. Default off: a backup MX hands mail to the primary,
    /// which applies its own DMARC policy with the Authentication-Results
    /// field in view; refusing here would refuse forwarded and list mail
    /// the primary accepts, and a refusal at the backup is harder for the
    /// household to see. A lookup that did not complete never refuses.
    pub dmarc_reject: bool,
    /// The authserv-id of the Authentication-Results field (RFC 8601);
    /// incoming fields with this id are removed. Empty (default): the
    /// system host name.
    pub authserv_id: String,
    /// DKIM signing of outgoing mail: From domain -> selector and key.
    pub dkim_sign: BTreeMap<String, DkimSignConfig>,
}

/// One signing domain.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSignConfig {
    /// The selector: the key record is at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PKCS#8 PEM private key (RSA 2048 to 4096 bits, or Ed25519),
    /// readable by the mail service's user.
    pub key_file: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dkim_verify: true,
            dmarc_reject: false,
            authserv_id: String::new(),
            dkim_sign: BTreeMap::new(),
        }
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid {
            key: key.to_string(),
            message,
        };
        if self.authserv_id.len() > MAX_AUTHSERV_ID
            || !(self.authserv_id.is_empty() || dkim::record::is_name(&self.authserv_id))
        {
            return Err(invalid(
                "mail.policy.authserv_id",
                "expected a host name".into(),
            ));
        }
        if self.dkim_sign.len() > MAX_SIGNING_DOMAINS {
            return Err(invalid(
                "mail.policy.dkim_sign",
                format!("at most {MAX_SIGNING_DOMAINS} domains"),
            ));
        }
        self.signers()?;
        Ok(())
    }

    /// The signers of `dkim_sign`, their keys read and checked.
    pub fn signers(&self) -> Result<Vec<Signer>, Invalid> {
        let mut out = Vec::new();
        for (domain, c) in &self.dkim_sign {
            let key = format!("mail.policy.dkim_sign.{domain}.key_file");
            let text = read_bounded(&c.key_file).map_err(|e| Invalid {
                key: key.clone(),
                message: format!("{}: {e}", c.key_file.display()),
            })?;
            let signing_key = SigningKey::from_pem(&text).map_err(|e| Invalid {
                key: key.clone(),
                message: format!("{}: {e}", c.key_file.display()),
            })?;
            out.push(
                Signer::new(domain, &c.selector, signing_key).map_err(|e| Invalid {
                    key: format!("mail.policy.dkim_sign.{domain}"),
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
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
        toml::from_str(text).unwrap()
    }

    /// The commented keys of the shipped example's [mail.policy] parse
    /// once uncommented (the files they name are not read).
    #[test]
    fn shipped_example_keys_parse() {
        let text = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
        let start = text.find("[mail.policy]\n").unwrap();
        let end = start + text[start..].find("[mail.routes]").unwrap();
        let mut out = String::new();
        let mut keys = 0;
        for line in text[start..end].lines() {
            let key = line.strip_prefix("# ").filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '))
            });
            if let Some(l) = key {
                keys += 1;
                out.push_str(l);
            } else if line.starts_with('[') {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert_eq!(keys, 4, "{out}");
        let c: toml::Table = toml::from_str(&out).unwrap();
        let policy: PolicyConfig = c["mail"]["policy"].clone().try_into().unwrap();
        assert!(policy.dkim_verify && !policy.dmarc_reject);
        assert_eq!(policy.dkim_sign["example.org"].selector, "pb2026");
    }

    #[test]
    fn defaults_and_signing_keys_checked_at_load() {
        let c = parse("");
        assert!(c.dkim_verify && !c.dmarc_reject && c.authserv_id.is_empty());
        assert!(c.validate().is_ok());
        let dir = std::env::temp_dir().join(format!("pb-dkim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, dkim::sign::tests::TEST_RSA_PEM).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let c = parse(&format!(
            "[dkim_sign.\"home.example\"]\nselector = \"s1\"\nkey_file = {:?}\n",
            good.display().to_string()
        ));
        assert!(c.validate().is_ok());
        assert_eq!(c.signers().unwrap()[0].domain(), "home.example");
        let c = parse(&format!(
            "[dkim_sign.\"home.example\"]\nselector = \"s1\"\nkey_file = {:?}\n",
            bad.display().to_string()
        ));
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "mail.policy.dkim_sign.home.example.key_file");
        let c =
            parse("[dkim_sign.\"home.example\"]\nselector = \"s1\"\nkey_file = \"/nonexistent\"\n");
        assert!(c.validate().is_err());
        let c = parse("authserv_id = \"not a name\"");
        assert!(c.validate().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
