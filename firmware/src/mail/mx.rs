//! Next-hop lookup: for domains without a route, MX records (RFC 5321
//! section 5) with the implicit-MX fallback, then AAAA and A; for a
//! configured route or smart host (`host:port`), AAAA and A of its host.
//! Everything goes through one configured resolver (the board's own DNS
//! cache), never the system's. Only a real answer can
//! make a permanent failure (NXDOMAIN, or a null MX); a timeout, SERVFAIL
//! or anything else unclear is temporary. It never decides about retries.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Each query waits this long for its answer, per try.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per query before the lookup is a temporary failure.
pub const QUERY_TRIES: usize = 2;
/// Largest DNS answer read over UDP.
pub const MAX_ANSWER_BYTES: usize = 4096;
/// At most this many MX hosts are tried for a domain.
pub const MAX_MX_HOSTS: usize = 8;

/// Why a lookup gave no next hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The resolver did not answer in time, answered SERVFAIL or
    /// something unusable: try again later.
    #[error("DNS lookup of {0} failed temporarily: {1}")]
    Temporary(String, String),
    /// The resolver answered NXDOMAIN: the domain does not exist.
    #[error("domain {0} does not exist (NXDOMAIN)")]
    NoSuchDomain(String),
    /// The domain publishes a null MX (RFC 7505): it takes no mail.
    #[error("domain {0} accepts no mail (null MX)")]
    NullMx(String),
}

impl LookupError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, LookupError::Temporary(..))
    }
}

async fn query(
    resolver: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, LookupError> {
    let temp = |why: String| LookupError::Temporary(name.to_ascii(), why);
    let bind: SocketAddr = if resolver.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| temp(e.to_string()))?;
    sock.connect(resolver)
        .await
        .map_err(|e| temp(e.to_string()))?;
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name.clone(), rtype));
    let id = q.metadata.id;
    let bytes = q.to_vec().map_err(|e| temp(e.to_string()))?;
    let mut buf = vec![0u8; MAX_ANSWER_BYTES];
    let mut last = String::from("no answer");
    for _ in 0..QUERY_TRIES {
        if let Err(e) = sock.send(&bytes).await {
            last = e.to_string();
            continue;
        }
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => {
                    last = "timed out".into();
                    break;
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    break;
                }
                Ok(Ok(n)) => n,
            };
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
                continue;
            }
            if m.metadata.truncation {
                return Err(temp("truncated answer".into()));
            }
            return match m.metadata.response_code {
                ResponseCode::NoError => Ok(m),
                ResponseCode::NXDomain => Err(LookupError::NoSuchDomain(name.to_ascii())),
                ResponseCode::ServFail => Err(temp("SERVFAIL".into())),
                other => Err(temp(format!("rcode {other}"))),
            };
        }
    }
    Err(temp(last))
}

/// MX hosts of `domain`, most preferred first; the domain itself when it
/// has no MX (implicit MX).
pub async fn mx_hosts(resolver: SocketAddr, domain: &str) -> Result<Vec<Name>, LookupError> {
    let name = Name::from_utf8(format!("{}.", domain.trim_end_matches('.')))
        .map_err(|e| LookupError::Temporary(domain.to_string(), e.to_string()))?;
    let m = query(resolver, &name, RecordType::MX).await?;
    let mut mx: Vec<(u16, Name)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
            _ => None,
        })
        .collect();
    if mx.is_empty() {
        return Ok(vec![name]);
    }
    if mx.len() == 1 && mx[0].1.is_root() {
        return Err(LookupError::NullMx(domain.to_string()));
    }
    mx.sort_by_key(|(p, _)| *p);
    Ok(mx
        .into_iter()
        .filter(|(_, n)| !n.is_root())
        .take(MAX_MX_HOSTS)
        .map(|(_, n)| n)
        .collect())
}

/// AAAA and A addresses of a host (IPv6 first).
pub async fn addresses(resolver: SocketAddr, host: &Name) -> Result<Vec<IpAddr>, LookupError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for t in [RecordType::AAAA, RecordType::A] {
        match query(resolver, host, t).await {
            Ok(m) => out.extend(m.answers.iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) => errors.push(e),
        }
    }
    if out.is_empty() {
        return Err(errors
            .into_iter()
            .next()
            .unwrap_or_else(|| LookupError::Temporary(host.to_ascii(), "no address".into())));
    }
    Ok(out)
}

/// The addresses of a configured next hop `host:port` (a route or the
/// smart host), IPv6 first. An IP address is used as it is; a name is
/// looked up (AAAA and A) through `resolver`. Every failure here is
/// temporary, NXDOMAIN included: the name comes from our configuration,
/// not from the recipient, so it is no reason to bounce.
pub async fn hop_addresses(
    resolver: SocketAddr,
    hop: &str,
) -> Result<Vec<SocketAddr>, LookupError> {
    let bad = |why: &str| LookupError::Temporary(hop.to_string(), why.to_string());
    let (host, port) = hop
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // RFC 6761 section 6.3: `localhost` is the loopback interface and is
    // never sent to a DNS server.
    if bare.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
            SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let name = Name::from_utf8(format!("{}.", host.trim_end_matches('.')))
        .map_err(|e| bad(&e.to_string()))?;
    match addresses(resolver, &name).await {
        Ok(ips) => Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()),
        Err(LookupError::Temporary(n, why)) => Err(LookupError::Temporary(n, why)),
        Err(e) => Err(LookupError::Temporary(host.to_string(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, MX};

    /// A one-shot fake resolver answering with `rcode` and `answers`.
    async fn fake(rcode: ResponseCode, answers: Vec<RData>, silent: bool) -> SocketAddr {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = s.recv_from(&mut buf).await else {
                    return;
                };
                if silent {
                    continue;
                }
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.metadata.response_code = rcode;
                let qq = q.queries[0].clone();
                for a in &answers {
                    if a.record_type() == qq.query_type() {
                        r.add_answer(Record::from_rdata(qq.name().clone(), 60, a.clone()));
                    }
                }
                r.add_query(qq);
                let _ = s.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_are_sorted_and_failures_classified() {
        let mx = |p, n: &str| RData::MX(MX::new(p, Name::from_ascii(n).unwrap()));
        let r = fake(
            ResponseCode::NoError,
            vec![mx(20, "b.test."), mx(10, "a.test.")],
            false,
        )
        .await;
        let hosts = mx_hosts(r, "x.test").await.unwrap();
        assert_eq!(hosts[0].to_ascii(), "a.test.");
        let r = fake(
            ResponseCode::NoError,
            vec![RData::A(A::new(127, 0, 0, 9))],
            false,
        )
        .await;
        let hosts = mx_hosts(r, "x.test").await.unwrap();
        assert_eq!(hosts[0].to_ascii(), "x.test.", "implicit MX");
        assert_eq!(
            addresses(r, &hosts[0]).await.unwrap(),
            vec![IpAddr::from([127, 0, 0, 9])]
        );
        let r = fake(ResponseCode::NXDomain, vec![], false).await;
        let e = mx_hosts(r, "x.test").await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        let r = fake(ResponseCode::ServFail, vec![], false).await;
        let e = mx_hosts(r, "x.test").await.unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        let r = fake(ResponseCode::NoError, vec![mx(0, ".")], false).await;
        assert!(matches!(
            mx_hosts(r, "x.test").await,
            Err(LookupError::NullMx(_))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn route_hosts_resolve_through_our_resolver() {
        use hickory_proto::rr::rdata::AAAA;
        let r = fake(
            ResponseCode::NoError,
            vec![
                RData::A(A::new(127, 0, 0, 7)),
                RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1)),
            ],
            false,
        )
        .await;
        let got = hop_addresses(r, "laptop.home.arpa:2525").await.unwrap();
        assert_eq!(
            got,
            vec![
                "[::1]:2525".parse::<SocketAddr>().unwrap(),
                "127.0.0.7:2525".parse().unwrap()
            ]
        );
        // Literal addresses need no lookup (the resolver is not asked:
        // this one never answers).
        let silent = fake(ResponseCode::NoError, vec![], true).await;
        assert_eq!(
            hop_addresses(silent, "192.0.2.1:25").await.unwrap(),
            vec!["192.0.2.1:25".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            hop_addresses(silent, "[2001:db8::1]:587").await.unwrap(),
            vec!["[2001:db8::1]:587".parse::<SocketAddr>().unwrap()]
        );
        // `localhost` is loopback without asking anyone (RFC 6761).
        assert_eq!(
            hop_addresses(silent, "LocalHost.:2525").await.unwrap(),
            vec![
                "127.0.0.1:2525".parse::<SocketAddr>().unwrap(),
                "[::1]:2525".parse().unwrap()
            ]
        );
        // NXDOMAIN for a configured host is temporary, not a bounce.
        let r = fake(ResponseCode::NXDomain, vec![], false).await;
        let e = hop_addresses(r, "laptop.home.arpa:25").await.unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        let r = fake(ResponseCode::ServFail, vec![], false).await;
        assert!(
            !hop_addresses(r, "laptop.home.arpa:25")
                .await
                .unwrap_err()
                .is_permanent()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_resolver_is_temporary() {
        let r = fake(ResponseCode::NoError, vec![], true).await;
        let e = mx_hosts(r, "x.test").await.unwrap_err();
        assert!(matches!(e, LookupError::Temporary(..)), "{e}");
    }
}
