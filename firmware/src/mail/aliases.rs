//! Aliases (`[mail.aliases]`): local recipients of this board (`root`,
//! `postmaster`, `root@board.home.arpa`) to the real addresses of its
//! owner. The table is checked and fully expanded once, when the
//! configuration is loaded (loops, depth, counts are configuration
//! errors); at RCPT time a lookup is a map access. It also says which
//! recipients are the board's `postmaster`, which RFC 5321 4.5.1 requires
//! to be deliverable. Pure: no I/O, no DNS; it never decides relaying.

use std::collections::BTreeMap;

use crate::config::mail::{MAX_ALIAS_DEPTH, MAX_ALIAS_EXPANSION, MAX_ALIAS_TARGETS, MAX_ALIASES};
use crate::config::{Invalid, MailConfig};
use crate::smtp::command::parse_mailbox;
use crate::smtp::{Domain, Mailbox, Reply};

/// The local part RFC 5321 reserves.
pub const POSTMASTER: &str = "postmaster";

/// What an accepted recipient is recorded as.
#[derive(Debug, PartialEq)]
pub enum Rcpt<'a> {
    /// Itself (no alias).
    Itself,
    /// The addresses of its alias.
    Alias(&'a [Mailbox]),
    /// The board's postmaster with no alias (nor `root`): recorded as
    /// `postmaster@<hostname>`; it waits in the queue (this board is no
    /// mailbox) until an alias is added.
    Postmaster(Mailbox),
}

/// The checked, expanded alias table of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// This board's names, lower case, without a trailing dot: the
    /// hostname and `my_names`.
    local_domains: Vec<String>,
    /// The hostname (lower case): the domain given to `<Postmaster>`.
    hostname: String,
    /// Local part (lower case) to its final addresses, none local.
    map: BTreeMap<String, Vec<Mailbox>>,
}

fn invalid(key: String, message: String) -> Invalid {
    Invalid { key, message }
}

fn normalize(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// A key's local part, or a target that is a local name: atext and dots.
fn valid_local(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$&'*+-/=?^_`{|}~.".contains(c))
}

/// One right-hand side entry, parsed.
enum Target {
    /// Another alias (a local name, or `local@` a name of this board).
    Alias(String),
    /// A real address.
    Address(Mailbox),
}

impl Aliases {
    /// Checks `config.aliases` against this board's names and expands it.
    /// Errors name the key (`mail.aliases.root`) and say what is wrong.
    pub fn new(config: &MailConfig, hostname: &str) -> Result<Aliases, Invalid> {
        let mut local_domains = vec![normalize(hostname)];
        local_domains.extend(config.my_names.iter().map(|n| normalize(n)));
        let mut a = Aliases {
            local_domains,
            hostname: normalize(hostname),
            map: BTreeMap::new(),
        };
        if config.aliases.len() > MAX_ALIASES {
            return Err(invalid(
                "mail.aliases".into(),
                format!(
                    "expected at most {MAX_ALIASES} aliases, found {}",
                    config.aliases.len()
                ),
            ));
        }
        // Keys to local parts; targets parsed.
        let mut raw: BTreeMap<String, (String, Vec<Target>)> = BTreeMap::new();
        for (key, targets) in &config.aliases {
            let k = format!("mail.aliases.{key}");
            let local = a.local_key(key).ok_or_else(|| {
                invalid(
                    k.clone(),
                    format!(
                        "expected a local name (\"root\") or local@ one of this board's names ({}), found {key:?}",
                        a.local_domains.join(", ")
                    ),
                )
            })?;
            if targets.0.is_empty() || targets.0.len() > MAX_ALIAS_TARGETS {
                return Err(invalid(
                    k,
                    format!(
                        "expected 1 to {MAX_ALIAS_TARGETS} addresses, found {}",
                        targets.0.len()
                    ),
                ));
            }
            let mut parsed = vec![];
            for t in &targets.0 {
                parsed.push(a.target(t).ok_or_else(|| {
                    invalid(
                        k.clone(),
                        format!(
                            "expected addresses like \"me@example.org\" or alias names, found {t:?}"
                        ),
                    )
                })?);
            }
            if raw.insert(local.clone(), (k.clone(), parsed)).is_some() {
                return Err(invalid(k, format!("{local} has two aliases")));
            }
        }
        for local in raw.keys() {
            let mut out = vec![];
            let mut path = vec![local.clone()];
            expand(&raw, local, &mut path, &mut out)?;
            a.map.insert(local.clone(), out);
        }
        Ok(a)
    }

    /// The local part of an alias key, lower case; `None` when it is no
    /// local name or names another domain.
    fn local_key(&self, key: &str) -> Option<String> {
        let (local, domain) = match key.rsplit_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (key, None),
        };
        if !valid_local(local) {
            return None;
        }
        if let Some(d) = domain
            && !self.local_domains.contains(&normalize(d))
        {
            return None;
        }
        Some(local.to_ascii_lowercase())
    }

    fn target(&self, t: &str) -> Option<Target> {
        let t = t.trim();
        if !t.contains('@') {
            return valid_local(t).then(|| Target::Alias(t.to_ascii_lowercase()));
        }
        let m = parse_mailbox(t).ok()?;
        if m.has_routing_characters() {
            return None;
        }
        if self.is_local(&m.domain) {
            return Some(Target::Alias(m.local.to_ascii_lowercase()));
        }
        Some(Target::Address(m))
    }

    /// True when `d` is one of this board's names (the hostname or
    /// `my_names`), or empty (the bare `<Postmaster>` of RFC 5321).
    pub fn is_local(&self, d: &Domain) -> bool {
        match d {
            Domain::Name(n) => n.is_empty() || self.local_domains.contains(&normalize(n)),
            Domain::Literal(_) => false,
        }
    }

    /// True when `to` is this board's postmaster (any case; RFC 5321
    /// 4.5.1): always accepted, from anyone.
    pub fn is_postmaster(&self, to: &Mailbox) -> bool {
        to.local.eq_ignore_ascii_case(POSTMASTER) && self.is_local(&to.domain)
    }

    /// The addresses a local recipient stands for, when it is an alias.
    /// `postmaster` without an alias of its own takes `root`'s (the
    /// usual `postmaster: root`).
    pub fn expand(&self, to: &Mailbox) -> Option<&[Mailbox]> {
        if !self.is_local(&to.domain) {
            return None;
        }
        let local = to.local.to_ascii_lowercase();
        self.map
            .get(&local)
            .or_else(|| {
                (local == POSTMASTER)
                    .then(|| self.map.get("root"))
                    .flatten()
            })
            .map(Vec::as_slice)
    }

    /// The verdict on an RCPT: the board's postmaster is accepted
    /// whatever `relay` (the relay policy's verdict) says; any other
    /// recipient needs `relay`, then is expanded when it is an alias.
    pub fn rcpt(&self, to: &Mailbox, relay: Result<(), Reply>) -> Result<Rcpt<'_>, Reply> {
        if self.is_postmaster(to) {
            return Ok(match self.expand(to) {
                Some(list) => Rcpt::Alias(list),
                None => Rcpt::Postmaster(self.local_postmaster()),
            });
        }
        relay?;
        Ok(self.expand(to).map_or(Rcpt::Itself, Rcpt::Alias))
    }

    /// `postmaster@<hostname>`: where the board's postmaster mail waits
    /// when no alias names its owner.
    pub fn local_postmaster(&self) -> Mailbox {
        Mailbox {
            local: POSTMASTER.into(),
            domain: Domain::Name(self.hostname.clone()),
        }
    }
}

/// Depth-first expansion of `local` into `out` (deduplicated); `path`
/// holds the aliases being expanded, to name a loop.
fn expand(
    raw: &BTreeMap<String, (String, Vec<Target>)>,
    local: &str,
    path: &mut Vec<String>,
    out: &mut Vec<Mailbox>,
) -> Result<(), Invalid> {
    let targets = &raw[local].1;
    let key = raw[&path[0]].0.clone();
    for t in targets {
        match t {
            Target::Address(m) => {
                if !out.contains(m) {
                    if out.len() == MAX_ALIAS_EXPANSION {
                        return Err(invalid(
                            key.clone(),
                            format!("expands to more than {MAX_ALIAS_EXPANSION} addresses"),
                        ));
                    }
                    out.push(m.clone());
                }
            }
            Target::Alias(next) => {
                if path.contains(next) {
                    path.push(next.clone());
                    return Err(invalid(
                        key.clone(),
                        format!("alias loop: {}", path.join(" -> ")),
                    ));
                }
                if !raw.contains_key(next) {
                    return Err(invalid(
                        key.clone(),
                        format!(
                            "{next} is no alias, and this board keeps no mailboxes: name a real address"
                        ),
                    ));
                }
                if path.len() > MAX_ALIAS_DEPTH {
                    return Err(invalid(
                        key.clone(),
                        format!(
                            "aliases nested deeper than {MAX_ALIAS_DEPTH}: {} -> {next}",
                            path.join(" -> ")
                        ),
                    ));
                }
                path.push(next.clone());
                expand(raw, next, path, out)?;
                path.pop();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mail::AliasTargets;
    use crate::smtp::command::parse_path;

    fn table(entries: &[(&str, &[&str])]) -> MailConfig {
        MailConfig {
            my_names: vec!["mx2.example.org".into()],
            aliases: entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        AliasTargets(v.iter().map(|s| s.to_string()).collect()),
                    )
                })
                .collect(),
            ..MailConfig::default()
        }
    }

    fn aliases(entries: &[(&str, &[&str])]) -> Result<Aliases, Invalid> {
        Aliases::new(&table(entries), "Board.Home.Arpa")
    }

    fn rcpt(s: &str) -> Mailbox {
        parse_path(s).unwrap()
    }

    fn names(v: Option<&[Mailbox]>) -> Vec<String> {
        v.unwrap_or_default()
            .iter()
            .map(|m| m.to_string())
            .collect()
    }

    #[test]
    fn local_recipients_expand_at_any_name_of_the_board() {
        let a = aliases(&[
            ("root", &["owner@example.org", "spouse@example.org"]),
            ("postmaster", &["root"]),
            (
                "backup@board.home.arpa",
                &["ROOT@board.home.arpa", "owner@example.org"],
            ),
        ])
        .unwrap();
        let both = vec!["owner@example.org", "spouse@example.org"];
        assert_eq!(names(a.expand(&rcpt("<root@board.home.arpa>"))), both);
        assert_eq!(names(a.expand(&rcpt("<Root@BOARD.home.arpa>"))), both);
        assert_eq!(names(a.expand(&rcpt("<root@mx2.example.org>"))), both);
        assert_eq!(names(a.expand(&rcpt("<PostMaster@board.home.arpa>"))), both);
        // Deduplicated across the nesting.
        assert_eq!(names(a.expand(&rcpt("<backup@board.home.arpa>"))), both);
        // Not ours, or not an alias: untouched.
        assert!(a.expand(&rcpt("<root@example.org>")).is_none());
        assert!(a.expand(&rcpt("<bob@board.home.arpa>")).is_none());
        assert!(a.expand(&rcpt("<root@[192.0.2.1]>")).is_none());
    }

    #[test]
    fn postmaster_is_always_ours_and_falls_back_to_root() {
        let a = aliases(&[("root", &["owner@example.org"])]).unwrap();
        assert!(a.is_postmaster(&rcpt("<POSTMASTER@board.home.arpa>")));
        assert!(!a.is_postmaster(&rcpt("<postmaster@example.org>")));
        assert_eq!(
            names(a.expand(&rcpt("<postmaster@board.home.arpa>"))),
            vec!["owner@example.org"]
        );
        let none = aliases(&[]).unwrap();
        assert!(none.expand(&rcpt("<postmaster@board.home.arpa>")).is_none());
        assert_eq!(
            none.local_postmaster().to_string(),
            "postmaster@board.home.arpa"
        );
    }

    #[test]
    fn rcpt_verdicts() {
        let a = aliases(&[("root", &["owner@example.org"])]).unwrap();
        let denied = || Err(Reply::new(554, "5.7.1", "Relay access denied"));
        // Postmaster from anywhere, any case, bare too.
        let bare = match crate::smtp::command::Command::parse(b"RCPT TO:<Postmaster>").unwrap() {
            crate::smtp::command::Command::Rcpt(m) => m,
            _ => unreachable!(),
        };
        for pm in [rcpt("<POSTMASTER@board.home.arpa>"), bare] {
            assert_eq!(
                names(match a.rcpt(&pm, denied()).unwrap() {
                    Rcpt::Alias(l) => Some(l),
                    other => panic!("{other:?}"),
                }),
                vec!["owner@example.org"]
            );
        }
        let none = aliases(&[]).unwrap();
        assert_eq!(
            none.rcpt(&rcpt("<postmaster@mx2.example.org>"), denied())
                .unwrap(),
            Rcpt::Postmaster(rcpt("<postmaster@board.home.arpa>"))
        );
        // Anything else follows the relay verdict, then the table.
        assert_eq!(
            a.rcpt(&rcpt("<root@board.home.arpa>"), denied())
                .unwrap_err()
                .code,
            554
        );
        assert!(matches!(
            a.rcpt(&rcpt("<root@board.home.arpa>"), Ok(())),
            Ok(Rcpt::Alias(_))
        ));
        assert_eq!(
            a.rcpt(&rcpt("<bob@board.home.arpa>"), Ok(())).unwrap(),
            Rcpt::Itself
        );
        assert_eq!(
            a.rcpt(&rcpt("<postmaster@example.org>"), denied())
                .unwrap_err()
                .code,
            554
        );
    }

    #[test]
    fn bad_tables_are_named() {
        let err = |e: &[(&str, &[&str])]| aliases(e).unwrap_err();
        let e = err(&[("root", &["postmaster"]), ("postmaster", &["root"])]);
        assert!(e.message.contains("alias loop"), "{}", e.message);
        let e = err(&[("root", &["root"])]);
        assert!(
            e.message.contains("alias loop: root -> root"),
            "{}",
            e.message
        );
        let e = err(&[("root", &["bob"])]);
        assert_eq!(e.key, "mail.aliases.root");
        assert!(e.message.contains("no mailboxes"), "{}", e.message);
        let e = err(&[("root@example.org", &["a@example.org"])]);
        assert_eq!(e.key, "mail.aliases.root@example.org");
        assert!(
            err(&[("ro ot", &["a@example.org"])])
                .message
                .contains("local name")
        );
        assert!(
            err(&[("root", &["a%b@example.org"])])
                .message
                .contains("expected addresses")
        );
        assert!(err(&[("root", &[])]).message.contains("expected 1 to"));
        let e = err(&[
            ("root", &["a@x.test"]),
            ("ROOT@board.home.arpa", &["b@x.test"]),
        ]);
        assert!(e.message.contains("two aliases"), "{}", e.message);
        // Depth: a0 -> a1 -> ... -> a6.
        let chain: Vec<(String, Vec<String>)> = (0..7)
            .map(|i| {
                let t = if i == 6 {
                    "x@y.test".to_string()
                } else {
                    format!("a{}", i + 1)
                };
                (format!("a{i}"), vec![t])
            })
            .collect();
        let entries: Vec<(&str, Vec<&str>)> = chain
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
            .collect();
        let entries: Vec<(&str, &[&str])> =
            entries.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        assert!(err(&entries).message.contains("deeper"));
        // Counts.
        let many: Vec<String> = (0..=MAX_ALIASES).map(|i| format!("u{i}")).collect();
        let entries: Vec<(&str, &[&str])> = many
            .iter()
            .map(|k| (k.as_str(), &["a@x.test"][..]))
            .collect();
        assert_eq!(err(&entries).key, "mail.aliases");
        let wide: Vec<String> = (0..MAX_ALIAS_EXPANSION)
            .map(|i| format!("w{i}@x.test"))
            .collect();
        let half: Vec<&str> = wide.iter().map(String::as_str).collect();
        let e = err(&[
            ("a", &half[..16]),
            ("b", &half[16..]),
            ("c", &["a", "b", "one@more.test"]),
        ]);
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}
