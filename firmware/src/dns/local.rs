//! Local data answered authoritatively: the static hosts of `[dns]` and
//! the local domain (default `home.arpa`), forward (A/AAAA) and reverse
//! (PTR). Questions inside the local domain never go upstream: an unknown
//! name there is NXDOMAIN, a known name without the asked type is NODATA,
//! both with the zone's SOA. Pure: no I/O, built once from config.

use std::collections::HashMap;
use std::net::IpAddr;

use super::wire::{self, LocalRecord, NameBuf, Query};
use crate::config::DnsConfig;

/// Why the local data could not be built (config validation normally
/// catches these first).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A configured name is not a valid domain name.
    #[error("{0:?} is not a valid domain name")]
    BadName(String),
}

pub struct LocalData {
    zone: NameBuf,
    ttl: u32,
    soa_rdata: Vec<u8>,
    hosts: HashMap<NameBuf, Vec<IpAddr>>,
    reverse: HashMap<NameBuf, NameBuf>,
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa.` or
/// nibbles under `ip6.arpa.`).
pub fn reverse_name(ip: IpAddr) -> NameBuf {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xF, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    };
    wire::name_from_text(&text).expect("reverse names are always valid")
}

impl LocalData {
    pub fn from_config(cfg: &DnsConfig) -> Result<LocalData, LocalError> {
        let zone = wire::name_from_text(&cfg.local_domain)
            .map_err(|_| LocalError::BadName(cfg.local_domain.clone()))?;
        let mut hosts: HashMap<NameBuf, Vec<IpAddr>> = HashMap::new();
        let mut reverse = HashMap::new();
        for h in &cfg.hosts {
            let full = if h.name.trim_end_matches('.').contains('.') {
                h.name.clone()
            } else {
                format!("{}.{}", h.name, cfg.local_domain)
            };
            let name =
                wire::name_from_text(&full).map_err(|_| LocalError::BadName(full.clone()))?;
            for ip in &h.addrs {
                reverse
                    .entry(reverse_name(*ip))
                    .or_insert_with(|| name.clone());
            }
            hosts
                .entry(name)
                .or_default()
                .extend(h.addrs.iter().copied());
        }
        let mut soa_rdata = Vec::new();
        soa_rdata.extend_from_slice(&zone);
        let rname = wire::name_from_text(&format!("hostmaster.{}", cfg.local_domain))
            .map_err(|_| LocalError::BadName(cfg.local_domain.clone()))?;
        soa_rdata.extend_from_slice(&rname);
        for v in [1u32, 3600, 600, 86400, cfg.local_ttl] {
            soa_rdata.extend_from_slice(&v.to_be_bytes());
        }
        Ok(LocalData {
            zone,
            ttl: cfg.local_ttl,
            soa_rdata,
            hosts,
            reverse,
        })
    }

    /// The authoritative reply to `q`, or `None` when the question is not
    /// local and goes to the cache and upstreams.
    pub fn answer(&self, q: &Query) -> Option<Vec<u8>> {
        let mut name = q.qname.clone();
        name.make_ascii_lowercase();
        let soa = [LocalRecord {
            owner: Some(&self.zone),
            rtype: wire::TYPE_SOA,
            ttl: self.ttl,
            rdata: &self.soa_rdata,
        }];
        if let Some(host) = self.reverse.get(&name) {
            if q.qtype == wire::TYPE_PTR || q.qtype == 255 {
                let rec = [LocalRecord {
                    owner: None,
                    rtype: wire::TYPE_PTR,
                    ttl: self.ttl,
                    rdata: host,
                }];
                return Some(wire::local_reply(q, wire::RCODE_NOERROR, &rec, &[]));
            }
            return Some(wire::local_reply(q, wire::RCODE_NOERROR, &[], &[]));
        }
        let known = self.hosts.get(&name);
        if known.is_none() && !wire::in_zone(&name, &self.zone) {
            return None;
        }
        if known.is_none() && name == self.zone {
            if q.qtype == wire::TYPE_SOA {
                return Some(wire::local_reply(q, wire::RCODE_NOERROR, &soa, &[]));
            }
            return Some(wire::local_reply(q, wire::RCODE_NOERROR, &[], &soa));
        }
        let Some(addrs) = known else {
            return Some(wire::local_reply(q, wire::RCODE_NXDOMAIN, &[], &soa));
        };
        let datas: Vec<Vec<u8>> = addrs
            .iter()
            .filter_map(|ip| match (ip, q.qtype) {
                (IpAddr::V4(v4), wire::TYPE_A | 255) => Some(v4.octets().to_vec()),
                (IpAddr::V6(v6), wire::TYPE_AAAA | 255) => Some(v6.octets().to_vec()),
                _ => None,
            })
            .collect();
        let recs: Vec<LocalRecord<'_>> = datas
            .iter()
            .map(|d| LocalRecord {
                owner: None,
                rtype: if d.len() == 4 {
                    wire::TYPE_A
                } else {
                    wire::TYPE_AAAA
                },
                ttl: self.ttl,
                rdata: d,
            })
            .collect();
        if recs.is_empty() {
            return Some(wire::local_reply(q, wire::RCODE_NOERROR, &[], &soa));
        }
        Some(wire::local_reply(q, wire::RCODE_NOERROR, &recs, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostEntry;
    use crate::dns::wire::{Parsed, parse_query};
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};

    fn data() -> LocalData {
        let cfg = DnsConfig {
            hosts: vec![
                HostEntry {
                    name: "nas".into(),
                    addrs: vec!["192.168.1.10".parse().unwrap(), "fd00::10".parse().unwrap()],
                },
                HostEntry {
                    name: "printer.lan".into(),
                    addrs: vec!["192.168.1.11".parse().unwrap()],
                },
            ],
            ..DnsConfig::default()
        };
        LocalData::from_config(&cfg).unwrap()
    }

    fn ask(d: &LocalData, name: &str, t: RecordType) -> Option<Message> {
        let b = crate::dns::wire::tests::query_bytes(name, t, true);
        let Parsed::Query(q) = parse_query(&b) else {
            panic!()
        };
        d.answer(&q).map(|r| Message::from_vec(&r).unwrap())
    }

    #[test]
    fn forward_reverse_and_negative() {
        let d = data();
        let m = ask(&d, "NAS.home.arpa.", RecordType::A).unwrap();
        assert!(m.metadata.authoritative);
        assert_eq!(m.queries[0].name().to_ascii(), "NAS.home.arpa.");
        assert!(matches!(m.answers[0].data, RData::A(a) if a.0.to_string() == "192.168.1.10"));
        let m = ask(&d, "nas.home.arpa.", RecordType::AAAA).unwrap();
        assert_eq!(m.answers.len(), 1);
        let m = ask(&d, "10.1.168.192.in-addr.arpa.", RecordType::PTR).unwrap();
        assert!(matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "nas.home.arpa."));
        let rev6 = Message::from_vec(&wire::local_reply(
            &match parse_query(&crate::dns::wire::tests::query_bytes(
                &wire::name_to_text(&reverse_name("fd00::10".parse().unwrap())),
                RecordType::PTR,
                false,
            )) {
                Parsed::Query(q) => q,
                _ => panic!(),
            },
            0,
            &[],
            &[],
        ))
        .unwrap();
        assert_eq!(rev6.queries.len(), 1);
        let m = ask(&d, "printer.lan.", RecordType::A).unwrap();
        assert_eq!(m.answers.len(), 1);
        let m = ask(&d, "ghost.home.arpa.", RecordType::A).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        let m = ask(&d, "nas.home.arpa.", RecordType::MX).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert!(ask(&d, "www.example.org.", RecordType::A).is_none());
    }
}
