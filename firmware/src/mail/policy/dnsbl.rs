//! DNS block lists and allow lists (RFC 5782): the client's address,
//! reversed (IPv4 octets, IPv6 nibbles), under each configured zone.
//! A listing counts only on an A answer in 127.0.0.0/8 from that list
//! (and, when the list names its codes, on 127.0.0.<code>); anything else,
//! a failed lookup included, counts as not listed. A list's weight adds
//! to the score (negative for an allow list). An allow list that could not
//! be asked may still have lowered the score: then a refusal it might
//! have prevented is a 451, not a 550 ([`finding`]'s `low`).

use std::net::{IpAddr, Ipv4Addr};

use super::Finding;
use crate::config::DnsList;
use crate::mail::lookup::{Answer, Record, Resolve, Rtype, reverse_name};

/// What one list says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Listed(Ipv4Addr),
    NotListed,
    /// The lookup is still running: it may yet list the client.
    Running,
    /// The lookup failed or ran past its budget: counts as not listed.
    Incomplete(String),
}

/// Whether `a` is a listing answer for `list`.
fn counts(a: Ipv4Addr, list: &DnsList) -> bool {
    let o = a.octets();
    if o[0] != 127 {
        return false;
    }
    if list.codes.is_empty() {
        // 127.255.255.0/24: the lists' "query refused" codes.
        return o[1..3] != [255, 255];
    }
    o[1..3] == [0, 0] && list.codes.contains(&o[3])
}

/// Asks `list` about `ip`.
pub async fn check<R: Resolve>(r: &R, ip: IpAddr, list: &DnsList) -> Listing {
    let Some(name) = reverse_name(ip, &list.zone) else {
        return Listing::NotListed;
    };
    match r.query(&name, Rtype::A).await {
        Answer::Temporary(why) => Listing::Incomplete(why),
        Answer::Empty => Listing::NotListed,
        Answer::Records(v) => v
            .iter()
            .find_map(|r| match r {
                Record::Addr(IpAddr::V4(a)) if counts(*a, list) => Some(Listing::Listed(*a)),
                _ => None,
            })
            .unwrap_or(Listing::NotListed),
    }
}

/// The verdict's part of a result.
pub fn finding(result: &Listing, ip: IpAddr, list: &DnsList) -> Option<Finding> {
    match result {
        Listing::Listed(a) => Some(Finding::Score(
            list.weight,
            format!("{ip} listed in {} ({a})", list.zone),
        )),
        Listing::NotListed => None,
        Listing::Running => Some(Finding::Incomplete {
            what: format!("{} still being asked", list.zone),
            low: list.weight.min(0),
            high: list.weight.max(0),
            reject: None,
        }),
        Listing::Incomplete(why) if list.weight < 0 => Some(Finding::Incomplete {
            what: format!("allow list {} not asked ({why})", list.zone),
            low: list.weight,
            high: 0,
            reject: None,
        }),
        Listing::Incomplete(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::lookup::Fixture;
    use std::sync::Arc;

    fn list(zone: &str, weight: i32, codes: &[u8]) -> DnsList {
        DnsList {
            zone: zone.into(),
            weight,
            codes: codes.to_vec(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn listed_unlisted_failing_and_codes() {
        let mut f = Fixture::default();
        f.addr("2.0.0.127.bl.test", "127.0.0.2")
            .addr("3.2.0.192.bl.test", "127.0.0.4")
            .addr("4.2.0.192.bl.test", "192.0.2.1")
            .addr("5.2.0.192.bl.test", "127.255.255.254")
            .set(
                "6.2.0.192.bl.test",
                Rtype::A,
                Answer::Temporary("timed out".into()),
            )
            .addr(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test",
                "127.0.0.2",
            );
        let f = Arc::new(f);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let any = list("bl.test", 5, &[]);
        let only2 = list("bl.test", 5, &[2]);
        assert_eq!(
            check(&f, ip("127.0.0.2"), &any).await,
            Listing::Listed("127.0.0.2".parse().unwrap())
        );
        assert!(matches!(
            check(&f, ip("192.0.2.3"), &any).await,
            Listing::Listed(_)
        ));
        assert_eq!(check(&f, ip("192.0.2.3"), &only2).await, Listing::NotListed);
        assert_eq!(check(&f, ip("192.0.2.4"), &any).await, Listing::NotListed);
        assert_eq!(check(&f, ip("192.0.2.5"), &any).await, Listing::NotListed);
        assert_eq!(check(&f, ip("192.0.2.7"), &any).await, Listing::NotListed);
        let r = check(&f, ip("192.0.2.6"), &any).await;
        assert!(matches!(r, Listing::Incomplete(_)));
        assert_eq!(finding(&r, ip("192.0.2.6"), &any), None);
        let allow = list("wl.test", -5, &[]);
        assert!(matches!(
            finding(&r, ip("192.0.2.6"), &allow),
            Some(Finding::Incomplete {
                low: -5,
                high: 0,
                ..
            })
        ));
        assert!(matches!(
            finding(&Listing::Running, ip("192.0.2.6"), &any),
            Some(Finding::Incomplete {
                low: 0,
                high: 5,
                ..
            })
        ));
        assert!(matches!(
            check(&f, ip("2001:db8::1"), &any).await,
            Listing::Listed(_)
        ));
    }
}
