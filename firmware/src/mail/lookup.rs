//! DNS lookups for the policy checks (reverse DNS, DNS lists, SPF): one
//! question at a time through the board's own cache (`mail.resolver`),
//! over the same query path as the MX lookups ([`super::mx`]), and every
//! answer classified as records, a real empty answer (NXDOMAIN or no data)
//! or a temporary failure (timeout, SERVFAIL, anything unclear). The
//! checks see only the [`Resolve`] trait, so their verdicts are tested
//! with an in-memory fixture. Answers are bounded ([`MAX_RECORDS`],
//! [`MAX_TXT_BYTES`]). It never decides anything.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use super::mx::{self, LookupError};
use super::name::Name;
use crate::dns::wire;

/// At most this many records of an answer are kept.
pub const MAX_RECORDS: usize = 32;
/// At most this many bytes of TXT data are kept per answer (the strings of
/// each record joined, RFC 7208 3.3); records past it are dropped whole.
pub const MAX_TXT_BYTES: usize = 4096;

/// The record types the checks ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rtype {
    A,
    Aaaa,
    Mx,
    Txt,
    Ptr,
}

impl Rtype {
    fn code(self) -> u16 {
        match self {
            Rtype::A => wire::TYPE_A,
            Rtype::Aaaa => wire::TYPE_AAAA,
            Rtype::Mx => wire::TYPE_MX,
            Rtype::Txt => wire::TYPE_TXT,
            Rtype::Ptr => wire::TYPE_PTR,
        }
    }
}

/// One record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A or AAAA.
    Addr(IpAddr),
    /// PTR's name, or MX's exchange (boxed: a name holds 255 bytes).
    Name(Box<Name>),
    /// TXT: the record's strings joined.
    Txt(Vec<u8>),
}

/// A classified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// At least one record of the type asked for.
    Records(Vec<Record>),
    /// A real answer without records: NXDOMAIN, or NOERROR with no data.
    Empty,
    /// No usable answer (timeout, SERVFAIL, malformed): the check could
    /// not be completed.
    Temporary(String),
}

/// Something that answers questions: the board's cache, or a fixture.
pub trait Resolve: Send + Sync + 'static {
    fn query(&self, name: &Name, rtype: Rtype) -> impl Future<Output = Answer> + Send;
}

/// The board's own DNS cache at this address.
#[derive(Debug, Clone, Copy)]
pub struct Cache(pub SocketAddr);

impl Resolve for Cache {
    async fn query(&self, name: &Name, rtype: Rtype) -> Answer {
        match mx::query(self.0, name, rtype.code()).await {
            Ok(m) => classify(&m, rtype),
            Err(LookupError::NoSuchDomain(_)) => Answer::Empty,
            Err(e) => Answer::Temporary(e.to_string()),
        }
    }
}

fn classify(m: &mx::Answer, rtype: Rtype) -> Answer {
    let mut out = Vec::new();
    let mut txt_bytes = 0;
    let records = m.walked.records.iter();
    let ours = records.filter(|r| r.section == 0 && r.rtype == rtype.code());
    for pos in ours.take(MAX_RECORDS) {
        let d = &m.buf[pos.rdata_at..pos.rdata_at + pos.rdata_len];
        let r = match rtype {
            // check_rdata made sure of the lengths and names.
            Rtype::A => <[u8; 4]>::try_from(d).ok().map(|a| Record::Addr(a.into())),
            Rtype::Aaaa => <[u8; 16]>::try_from(d).ok().map(|a| Record::Addr(a.into())),
            Rtype::Ptr | Rtype::Mx => {
                let at = pos.rdata_at + if rtype == Rtype::Mx { 2 } else { 0 };
                wire::read_name(&m.buf, at)
                    .ok()
                    .map(|n| Record::Name(Box::new(Name::from_wire(&n))))
            }
            Rtype::Txt => {
                let t = txt_strings(d);
                txt_bytes += t.len();
                (txt_bytes <= MAX_TXT_BYTES).then_some(Record::Txt(t))
            }
        };
        out.extend(r);
    }
    if out.is_empty() {
        Answer::Empty
    } else {
        Answer::Records(out)
    }
}

/// A TXT record's character-strings (RFC 1035 3.3.14) joined; a string
/// running past the data is cut at its end.
pub fn txt_strings(mut d: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len());
    while let Some((&len, rest)) = d.split_first() {
        let n = usize::from(len).min(rest.len());
        out.extend_from_slice(&rest[..n]);
        d = &rest[n..];
    }
    out
}

/// The reverse name of an address under `zone`: `4.3.2.1.<zone>` for
/// IPv4, 32 nibbles for IPv6 (RFC 3596 2.5). `in-addr.arpa`/`ip6.arpa`
/// for PTR, a DNS list's zone for a listing.
pub fn reverse_name(ip: IpAddr, zone: &str) -> Option<Name> {
    let mut s = String::with_capacity(80);
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for o in v4.octets().iter().rev() {
                s.push_str(&format!("{o}."));
            }
        }
        IpAddr::V6(v6) => {
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
        }
    }
    s.push_str(zone);
    Name::from_ascii(&s).ok()
}

/// The zone for PTR lookups of `ip`.
pub fn ptr_zone(ip: IpAddr) -> &'static str {
    if ip.to_canonical().is_ipv4() {
        "in-addr.arpa"
    } else {
        "ip6.arpa"
    }
}

/// An in-memory resolver for the checks' unit tests: names (lower case,
/// no final dot) and types mapped to answers; anything else is Empty;
/// `hang` names never answer.
#[cfg(test)]
#[derive(Default)]
pub struct Fixture {
    pub map: std::collections::HashMap<(String, Rtype), Answer>,
    pub hang: Vec<String>,
    pub asked: std::sync::Mutex<Vec<(String, Rtype)>>,
}

#[cfg(test)]
impl Fixture {
    fn key(name: &str) -> String {
        name.trim_end_matches('.').to_ascii_lowercase()
    }

    pub fn set(&mut self, name: &str, rtype: Rtype, a: Answer) -> &mut Self {
        self.map.insert((Fixture::key(name), rtype), a);
        self
    }

    pub fn addr(&mut self, name: &str, ip: &str) -> &mut Self {
        let ip: IpAddr = ip.parse().unwrap();
        let t = if ip.is_ipv4() { Rtype::A } else { Rtype::Aaaa };
        let k = (Fixture::key(name), t);
        match self.map.entry(k).or_insert(Answer::Records(vec![])) {
            Answer::Records(v) => v.push(Record::Addr(ip)),
            other => *other = Answer::Records(vec![Record::Addr(ip)]),
        }
        self
    }

    pub fn txt(&mut self, name: &str, text: &str) -> &mut Self {
        let k = (Fixture::key(name), Rtype::Txt);
        match self.map.entry(k).or_insert(Answer::Records(vec![])) {
            Answer::Records(v) => v.push(Record::Txt(text.as_bytes().to_vec())),
            other => *other = Answer::Records(vec![Record::Txt(text.as_bytes().to_vec())]),
        }
        self
    }

    pub fn names(&mut self, name: &str, rtype: Rtype, names: &[&str]) -> &mut Self {
        let v = names
            .iter()
            .map(|n| Record::Name(Box::new(Name::from_ascii(n).unwrap())))
            .collect();
        self.set(name, rtype, Answer::Records(v))
    }

    pub fn ptr(&mut self, ip: &str, names: &[&str]) -> &mut Self {
        let ip: IpAddr = ip.parse().unwrap();
        let n = reverse_name(ip, ptr_zone(ip)).unwrap().to_ascii();
        self.names(&n, Rtype::Ptr, names)
    }
}

#[cfg(test)]
impl Resolve for std::sync::Arc<Fixture> {
    async fn query(&self, name: &Name, rtype: Rtype) -> Answer {
        let k = Fixture::key(&name.to_ascii());
        self.asked.lock().unwrap().push((k.clone(), rtype));
        if self.hang.contains(&k) {
            std::future::pending::<()>().await;
        }
        match self.map.get(&(k, rtype)) {
            Some(Answer::Records(v)) if v.is_empty() => Answer::Empty,
            Some(a) => a.clone(),
            None => Answer::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let n = |ip: &str, z| reverse_name(ip.parse().unwrap(), z).unwrap().to_ascii();
        assert_eq!(n("192.0.2.3", "in-addr.arpa"), "3.2.0.192.in-addr.arpa.");
        assert_eq!(n("::ffff:192.0.2.3", "bl.test"), "3.2.0.192.bl.test.");
        assert_eq!(
            n("2001:db8::1", "ip6.arpa"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(ptr_zone("::1".parse().unwrap()), "ip6.arpa");
    }

    #[test]
    fn txt_strings_are_joined_and_bounded() {
        assert_eq!(txt_strings(b"\x03v=s\x04pf1 "), b"v=spf1 ");
        assert_eq!(txt_strings(b"\x09abc"), b"abc");
        assert_eq!(txt_strings(b""), b"");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_cache_classifies_answers() {
        use hickory_proto::op::{Message, OpCode, ResponseCode};
        use hickory_proto::rr::rdata::{PTR, TXT};
        use hickory_proto::rr::{Name as HName, RData, Record as HRecord};
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = s.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let qq = q.queries[0].clone();
                let name = qq.name().to_ascii();
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                if name.starts_with("servfail") {
                    r.metadata.response_code = ResponseCode::ServFail;
                } else if name.starts_with("nx") {
                    r.metadata.response_code = ResponseCode::NXDomain;
                } else {
                    let data = match qq.query_type().into() {
                        12u16 => RData::PTR(PTR(HName::from_ascii("Host.Example.").unwrap())),
                        16 => RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
                        _ => {
                            r.add_query(qq);
                            let _ = s.send_to(&r.to_vec().unwrap(), peer).await;
                            continue;
                        }
                    };
                    r.add_answer(HRecord::from_rdata(qq.name().clone(), 60, data));
                }
                r.add_query(qq);
                let _ = s.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        let c = Cache(addr);
        let n = |s: &str| Name::from_ascii(s).unwrap();
        assert_eq!(
            c.query(&n("x.test"), Rtype::Ptr).await,
            Answer::Records(vec![Record::Name(Box::new(n("host.example")))])
        );
        assert_eq!(
            c.query(&n("x.test"), Rtype::Txt).await,
            Answer::Records(vec![Record::Txt(b"v=spf1 -all".to_vec())])
        );
        assert_eq!(c.query(&n("x.test"), Rtype::A).await, Answer::Empty);
        assert_eq!(c.query(&n("nx.test"), Rtype::A).await, Answer::Empty);
        assert!(matches!(
            c.query(&n("servfail.test"), Rtype::A).await,
            Answer::Temporary(_)
        ));
    }
}
