//! Recipient validation for the backup-MX domains (`mail.domains`): a
//! domain listed in `[mail.policy.recipients]` accepts only its valid
//! local parts (any case); an unknown user there is refused at RCPT with
//! 550 5.1.1, so the board never accepts mail it would later have to
//! bounce to a forged sender (backscatter). A domain listed nowhere
//! accepts every local part. `postmaster` (RFC 5321 4.5.1) is always
//! valid; aliases are checked by the caller before this. Pure: the file
//! is read once by [`Recipients::load`], lookups are set accesses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::config::policy::{
    MAX_RECIPIENTS_FILE_BYTES, MAX_VALID_RECIPIENTS, RecipientsConfig, valid_local_part,
};
use crate::smtp::{Domain, Mailbox, Reply};

use super::super::aliases::POSTMASTER;

/// The valid recipients of the validated domains.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    /// Domain (lower case, no trailing dot) to its local parts (lower case).
    domains: BTreeMap<String, BTreeSet<String>>,
}

fn norm(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

impl Recipients {
    /// The table of `config.valid` (already validated) plus `config.file`.
    /// A file that cannot be read or is too large is a warning: its
    /// domains stay accept-all (never a 5xx because of it).
    pub fn load(config: &RecipientsConfig) -> Recipients {
        let mut r = Recipients::default();
        for (d, locals) in &config.valid {
            let set = r.domains.entry(norm(d)).or_default();
            set.extend(locals.iter().map(|l| l.to_ascii_lowercase()));
        }
        if let Some(path) = &config.file {
            let mut text = String::new();
            let read = std::fs::File::open(path).and_then(|f| {
                f.take(MAX_RECIPIENTS_FILE_BYTES + 1)
                    .read_to_string(&mut text)
            });
            match read {
                Ok(n) if n as u64 > MAX_RECIPIENTS_FILE_BYTES => log::warn!(
                    "mail: {}: larger than {MAX_RECIPIENTS_FILE_BYTES} bytes, not used",
                    path.display()
                ),
                Ok(_) => {
                    if let Err(e) = r.add_lines(&text) {
                        log::warn!("mail: {}: {e}; not used", path.display());
                        r = Recipients::load(&RecipientsConfig {
                            file: None,
                            ..config.clone()
                        });
                    }
                }
                Err(e) => log::warn!("mail: {}: {e}; not used", path.display()),
            }
        }
        r
    }

    /// Adds `local@domain` lines (blank lines and `#` comments skipped).
    /// Errors name the line; the count stays within
    /// [`MAX_VALID_RECIPIENTS`].
    pub fn add_lines(&mut self, text: &str) -> Result<(), String> {
        let mut count: usize = self.domains.values().map(BTreeSet::len).sum();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || format!("line {}: expected local@domain, found {line:?}", i + 1);
            let (local, domain) = line.rsplit_once('@').ok_or_else(bad)?;
            if !valid_local_part(local) || domain.is_empty() || domain.contains(' ') {
                return Err(bad());
            }
            if count == MAX_VALID_RECIPIENTS {
                return Err(format!(
                    "more than {MAX_VALID_RECIPIENTS} recipients (line {})",
                    i + 1
                ));
            }
            if self
                .domains
                .entry(norm(domain))
                .or_default()
                .insert(local.to_ascii_lowercase())
            {
                count += 1;
            }
        }
        Ok(())
    }

    /// True when `domain` has a list of valid recipients.
    pub fn validates(&self, domain: &str) -> bool {
        self.domains.contains_key(&norm(domain))
    }

    /// The verdict on a recipient of one of our domains: 550 5.1.1 for an
    /// unknown user of a validated domain. Callers check aliases first.
    pub fn check(&self, to: &Mailbox) -> Result<(), Reply> {
        let Domain::Name(d) = &to.domain else {
            return Ok(());
        };
        let Some(set) = self.domains.get(&norm(d)) else {
            return Ok(());
        };
        let local = to.local.to_ascii_lowercase();
        if local == POSTMASTER || set.contains(&local) {
            return Ok(());
        }
        Err(Reply::new(550, "5.1.1", "User unknown in this domain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::parse_path;

    fn table() -> Recipients {
        let mut valid = BTreeMap::new();
        valid.insert("Home.Arpa".to_string(), vec!["Alice".to_string()]);
        let mut r = Recipients::load(&RecipientsConfig { valid, file: None });
        r.add_lines("# family\nbob@home.arpa\n\ncarol@other.test  # x\n")
            .unwrap();
        r
    }

    fn code(r: &Recipients, to: &str) -> u16 {
        match r.check(&parse_path(to).unwrap()) {
            Ok(()) => 250,
            Err(reply) => {
                assert_eq!((reply.code, reply.enhanced), (550, Some("5.1.1")));
                reply.code
            }
        }
    }

    #[test]
    fn unknown_users_of_validated_domains_get_550_5_1_1() {
        let r = table();
        assert_eq!(code(&r, "<alice@home.arpa>"), 250);
        assert_eq!(code(&r, "<ALICE@HOME.ARPA>"), 250);
        assert_eq!(code(&r, "<Bob@home.arpa>"), 250);
        assert_eq!(code(&r, "<PostMaster@home.arpa>"), 250);
        assert_eq!(code(&r, "<mallory@home.arpa>"), 550);
        assert_eq!(code(&r, "<carol@other.test>"), 250);
        assert_eq!(code(&r, "<alice@other.test>"), 550);
        // Not listed: accept-all, as before.
        assert_eq!(code(&r, "<anyone@family.example>"), 250);
        assert!(r.validates("home.arpa.") && !r.validates("family.example"));
    }

    #[test]
    fn bad_lines_and_too_many_are_errors() {
        let mut r = Recipients::default();
        assert!(r.add_lines("no-at-sign\n").unwrap_err().contains("line 1"));
        assert!(r.add_lines("ok@a.test\na b@a.test\n").is_err());
        let many: String = (0..=MAX_VALID_RECIPIENTS)
            .map(|i| format!("u{i}@a.test\n"))
            .collect();
        let mut r = Recipients::default();
        assert!(r.add_lines(&many).unwrap_err().contains("more than"));
    }

    #[test]
    fn an_unreadable_file_leaves_the_domain_accept_all() {
        let r = Recipients::load(&RecipientsConfig {
            valid: BTreeMap::new(),
            file: Some("/nonexistent/pocobelle-recipients".into()),
        });
        assert_eq!(code(&r, "<x@home.arpa>"), 250);
    }
}
