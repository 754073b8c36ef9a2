//! Relay policy: which recipients this board accepts from which client.
//! Mail for a configured domain is accepted from anyone (backup MX); mail
//! for any other domain only from a relay network (the LAN) or from a
//! client that passed SMTP AUTH. Everything
//! else is refused, and local parts carrying routing characters (`%`, `!`,
//! `@`) are refused from everyone, so the board is never an open relay.
//! Pure decisions: no I/O, no DNS.

use std::net::IpAddr;

use crate::config::{MailConfig, Prefix};
use crate::smtp::{Domain, Mailbox, Reply};

/// The relay policy of one configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    domains: Vec<String>,
    relay_networks: Vec<Prefix>,
}

impl Policy {
    pub fn new(config: &MailConfig) -> Policy {
        Policy {
            domains: config
                .domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            relay_networks: config.relay_cidrs(),
        }
    }

    /// True when `client` may relay to any domain.
    pub fn may_relay(&self, client: IpAddr) -> bool {
        self.relay_networks.iter().any(|n| n.contains(client))
    }

    /// True when `domain` is one of ours (backup MX).
    pub fn is_ours(&self, domain: &Domain) -> bool {
        match domain {
            Domain::Name(n) => self.domains.iter().any(|d| d == n.trim_end_matches('.')),
            Domain::Literal(_) => false,
        }
    }

    /// The verdict on one recipient from a client at `client`;
    /// `authenticated`: the client passed AUTH.
    pub fn check_rcpt(
        &self,
        to: &Mailbox,
        client: IpAddr,
        authenticated: bool,
    ) -> Result<(), Reply> {
        if to.has_routing_characters() {
            return Err(Reply::new(
                553,
                "5.1.3",
                "Routing characters (% ! @) in the local part are not accepted",
            ));
        }
        if self.is_ours(&to.domain) || authenticated || self.may_relay(client) {
            return Ok(());
        }
        Err(Reply::new(554, "5.7.1", "Relay access denied"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::{Command, parse_path};

    fn policy() -> Policy {
        Policy::new(&MailConfig {
            domains: vec!["home.arpa".into(), "Family.Example".into()],
            relay_networks: vec!["192.168.1.0/24".into(), "fd00::/8".into()],
            ..MailConfig::default()
        })
    }

    const OUTSIDE: &str = "203.0.113.9";
    const LAN: &str = "192.168.1.20";

    fn verdict(rcpt: &str, client: &str) -> Result<(), u16> {
        // Through the real command parser, as a client would send it.
        let line = format!("RCPT TO:{rcpt}");
        match Command::parse(line.as_bytes()) {
            Ok(Command::Rcpt(m)) => policy()
                .check_rcpt(&m, client.parse().unwrap(), false)
                .map_err(|r| r.code),
            Ok(_) => unreachable!(),
            Err(_) => Err(553),
        }
    }

    #[test]
    fn our_domains_from_anyone() {
        assert_eq!(verdict("<u@home.arpa>", OUTSIDE), Ok(()));
        assert_eq!(verdict("<u@HOME.ARPA>", OUTSIDE), Ok(()));
        assert_eq!(verdict("<u@family.example>", OUTSIDE), Ok(()));
        assert_eq!(verdict("<u@home.arpa.>", OUTSIDE), Err(553));
    }

    #[test]
    fn other_domains_only_from_the_lan() {
        assert_eq!(verdict("<u@example.org>", OUTSIDE), Err(554));
        assert_eq!(verdict("<u@example.org>", LAN), Ok(()));
        assert_eq!(verdict("<u@example.org>", "fd00::5"), Ok(()));
        assert_eq!(verdict("<u@example.org>", "::ffff:192.168.1.9"), Ok(()));
        assert_eq!(verdict("<u@example.org>", "::ffff:192.168.2.9"), Err(554));
        // A sub-domain or a look-alike is not ours.
        assert_eq!(verdict("<u@sub.home.arpa>", OUTSIDE), Err(554));
        assert_eq!(verdict("<u@home.arpa.evil.test>", OUTSIDE), Err(554));
        assert_eq!(verdict("<u@evilhome.arpa>", OUTSIDE), Err(554));
    }

    #[test]
    fn classic_relay_tricks_are_refused() {
        for trick in [
            "<u%example.org@home.arpa>",
            "<example.org!u@home.arpa>",
            "<\"u@example.org\"@home.arpa>",
            "<\"u%example.org\"@home.arpa>",
            "<@home.arpa:u@example.org>",
            "<@home.arpa,@x.test:u@example.org>",
            "<u@example.org@home.arpa>",
            "<u@home.arpa@example.org>",
            "<u@[203.0.113.5]>",
            "<u@[IPv6:2001:db8::1]>",
            "<u@[127.0.0.1]>",
            "u@example.org",
            "<u@example.org> ",
            "<u@example.org>x",
        ] {
            let v = verdict(trick, OUTSIDE);
            assert!(v.is_err(), "{trick} was accepted");
            assert!(v.unwrap_err() >= 500, "{trick}");
        }
    }

    #[test]
    fn parsed_mailbox_domain_is_the_one_checked() {
        let m = parse_path("<\"a@b\"@home.arpa>").unwrap();
        assert!(
            policy()
                .check_rcpt(&m, LAN.parse().unwrap(), false)
                .is_err()
        );
        assert!(policy().check_rcpt(&m, LAN.parse().unwrap(), true).is_err());
    }

    #[test]
    fn authenticated_clients_relay_anywhere_but_tricks_stay_refused() {
        let outside: IpAddr = OUTSIDE.parse().unwrap();
        let m = parse_path("<u@example.org>").unwrap();
        assert_eq!(
            policy().check_rcpt(&m, outside, false).unwrap_err().code,
            554
        );
        assert!(policy().check_rcpt(&m, outside, true).is_ok());
        let m = parse_path("<u%evil.test@example.org>").unwrap();
        assert_eq!(
            policy().check_rcpt(&m, outside, true).unwrap_err().code,
            553
        );
    }
}
