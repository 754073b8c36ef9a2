//! Next-hop lookup: for domains without a route, MX records (RFC 5321
//! section 5) with the implicit-MX fallback, then AAAA and A; for a
//! configured route or smart host (`host:port`), AAAA and A of its host.
//! Everything goes through one configured resolver (the board's own DNS
//! cache), never the system's. Only a real answer can
//! make a permanent failure (NXDOMAIN, or a null MX); a timeout, SERVFAIL
//! or anything else unclear is temporary. The board recognises itself
//! among a domain's MX hosts ([`Me`]) and plans only hosts with a better
//! preference than its own ([`plan`], pure); when it is the best, the mail
//! stays queued ([`LookupError::LoopsToMe`]). It never decides about
//! retries.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use super::name::Name;
use crate::dns::wire;

/// Each query waits this long for its answer, per try.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per query before the lookup is a temporary failure.
pub const QUERY_TRIES: usize = 2;
/// Largest DNS answer read over UDP.
pub const MAX_ANSWER_BYTES: usize = 4096;
/// UDP payload size advertised with EDNS(0) (RFC 6891): 1232 bytes, the
/// DNS flag day 2020 value, fits an IPv6 packet without fragments.
pub const EDNS_UDP_PAYLOAD: u16 = 1232;
// The query is wire::build_upstream_query's, which advertises this.
const _: () = assert!(wire::EDNS_PAYLOAD == EDNS_UDP_PAYLOAD);
/// Largest DNS answer read over TCP (after a truncated UDP answer).
pub const MAX_TCP_ANSWER_BYTES: usize = 16 * 1024;
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
    /// This board is the domain's best MX host (or its only one): there
    /// is no better host to hand the mail to, and delivering it to
    /// ourselves would loop (RFC 5321 5.1). Temporary: the mail waits
    /// for the primary to be listed again, or for its lifetime to end.
    #[error(
        "mail for {domain} loops back to myself: this board is its best MX host \
         (preference {preference}); kept queued until a better MX host is listed"
    )]
    LoopsToMe { domain: String, preference: u16 },
}

impl LookupError {
    pub fn is_permanent(&self) -> bool {
        match self {
            LookupError::NoSuchDomain(_) | LookupError::NullMx(_) => true,
            LookupError::Temporary(..) | LookupError::LoopsToMe { .. } => false,
        }
    }
}

/// One MX host of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    pub name: Name,
}

/// Who this board is, to recognise itself among a domain's MX hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Me {
    /// Host names (`mail.my_names`, else `system.hostname`), lower case,
    /// without the final dot.
    pub names: Vec<String>,
    /// Addresses that are ours whatever the port (`mail.my_addresses`:
    /// e.g. the public address a NAT router forwards to the board).
    pub addresses: Vec<IpAddr>,
    /// The board's interface addresses, read at delivery time.
    pub local: Vec<IpAddr>,
    /// Where our SMTP listener accepts connections (`mail.listen`).
    pub listen: Vec<SocketAddr>,
    /// The port MX hosts are reached on (`mail.mx_port`).
    pub mx_port: u16,
}

impl Me {
    /// From the configuration and the interface addresses of the moment.
    pub fn new(config: &crate::config::MailConfig, hostname: &str, local: Vec<IpAddr>) -> Me {
        let names = if config.my_names.is_empty() {
            vec![hostname.to_string()]
        } else {
            config.my_names.clone()
        };
        Me {
            names: names.iter().map(|n| normalize(n)).collect(),
            addresses: config.my_ips(),
            local,
            listen: config
                .listen
                .iter()
                .filter_map(|l| l.parse().ok())
                .collect(),
            mx_port: config.mx_port,
        }
    }

    /// The host is named as this board.
    pub fn has_name(&self, host: &Name) -> bool {
        let n = normalize(&host.to_ascii());
        self.names.contains(&n)
    }

    /// Connecting to `ip` at the MX port reaches this board: the address
    /// is in `mail.my_addresses`, or it is loopback, unspecified or one
    /// of our interfaces' and our listener takes connections there on
    /// the MX port.
    pub fn has_address(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.addresses.iter().any(|a| a.to_canonical() == ip) {
            return true;
        }
        let on_board = ip.is_loopback()
            || ip.is_unspecified()
            || self.local.iter().any(|a| a.to_canonical() == ip);
        on_board
            && self.listen.iter().any(|l| {
                let lip = l.ip().to_canonical();
                l.port() == self.mx_port
                    && (lip == ip || (lip.is_unspecified() && lip.is_ipv4() == ip.is_ipv4()))
            })
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The addresses of the board's network interfaces now (getifaddrs: one
/// netlink dump, no DNS). Empty when they cannot be read: loopback and
/// `mail.my_addresses` still count.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// An MX host with the result of its address lookup.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub host: MxHost,
    /// Its addresses; empty when the host was not looked up because its
    /// name is ours.
    pub addrs: Result<Vec<IpAddr>, LookupError>,
}

/// The addresses to try for `domain`, in order, each with its host's
/// name (RFC 5321 5.1): `hosts` in preference order, each with its
/// lookup. A host that is this board (by name or by any address) and
/// every host with the same or a worse preference are dropped; when the
/// board is a host and nothing better remains,
/// [`LookupError::LoopsToMe`]. A host whose lookup failed is skipped;
/// when no host has an address, the first failure, always temporary
/// (only the recipient's own domain can be NXDOMAIN).
pub fn plan(
    domain: &str,
    hosts: Vec<Resolved>,
    me: &Me,
) -> Result<Vec<(IpAddr, String)>, LookupError> {
    let is_me = |r: &Resolved| {
        me.has_name(&r.host.name)
            || r.addrs
                .as_ref()
                .is_ok_and(|a| a.iter().any(|ip| me.has_address(*ip)))
    };
    let mine = hosts
        .iter()
        .filter(|r| is_me(r))
        .map(|r| r.host.preference)
        .min();
    let better: Vec<Resolved> = hosts
        .into_iter()
        .filter(|r| mine.is_none_or(|p| r.host.preference < p))
        .collect();
    if let Some(preference) = mine
        && better.is_empty()
    {
        return Err(LookupError::LoopsToMe {
            domain: domain.to_string(),
            preference,
        });
    }
    let mut out = Vec::new();
    let mut first_err = None;
    for r in better {
        match r.addrs {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| (ip, r.host.name.to_ascii()))),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if out.is_empty() {
        let e = first_err.unwrap_or_else(|| {
            LookupError::Temporary(domain.to_string(), "no MX host has an address".into())
        });
        return Err(match e {
            LookupError::Temporary(..) => e,
            other => LookupError::Temporary(domain.to_string(), other.to_string()),
        });
    }
    Ok(out)
}

/// MX delivery targets for `domain`: its MX hosts, each looked up in
/// preference order until the board finds itself (the hosts after it
/// are no better and need no lookup), then [`plan`].
pub async fn mx_targets(
    resolver: SocketAddr,
    domain: &str,
    me: &Me,
) -> Result<Vec<(IpAddr, String)>, LookupError> {
    let hosts = mx_hosts(resolver, domain).await?;
    let mut resolved = Vec::with_capacity(hosts.len());
    for host in hosts {
        if me.has_name(&host.name) {
            resolved.push(Resolved {
                host,
                addrs: Ok(Vec::new()),
            });
            break;
        }
        let addrs = addresses(resolver, &host.name).await;
        let mine = addrs
            .as_ref()
            .is_ok_and(|a| a.iter().any(|ip| me.has_address(*ip)));
        resolved.push(Resolved { host, addrs });
        if mine {
            break;
        }
    }
    plan(domain, resolved, me)
}

/// An answer to our question, checked: the whole message walked
/// ([`wire::walk`]), the data of each answer record checked
/// ([`wire::check_rdata`]).
pub(super) struct Answer {
    pub(super) buf: Vec<u8>,
    pub(super) walked: wire::Walked,
}

impl Answer {
    /// The data of each answer-section record of type `rtype`.
    fn rdata(&self, rtype: u16) -> impl Iterator<Item = &[u8]> {
        self.walked
            .records
            .iter()
            .filter(move |r| r.section == 0 && r.rtype == rtype)
            .map(|r| &self.buf[r.rdata_at..r.rdata_at + r.rdata_len])
    }
}

/// What came back for a question.
enum Reply {
    /// A complete answer (boxed: a walked message holds a whole name).
    Answer(Box<Answer>),
    /// The header says truncated (TC): ask again over TCP.
    Truncated,
}

/// Reads `buf` as the reply to our question (`id`, `name`, `rtype`);
/// `None` when it is not one (another ID, not a response, another
/// question, malformed).
fn reply_to(buf: Vec<u8>, id: u16, name: &Name, rtype: u16) -> Option<Reply> {
    // A truncated reply may be cut anywhere after its header.
    if buf.len() >= wire::HEADER_LEN
        && u16::from_be_bytes([buf[0], buf[1]]) == id
        && buf[2] & 0x80 != 0
        && buf[2] & 0x02 != 0
    {
        return Some(Reply::Truncated);
    }
    let walked = wire::walk(&buf).ok()?;
    let ours = walked.id == id
        && walked.is_response()
        && walked.opcode() == 0
        && walked.qtype == rtype
        && walked.qclass == wire::CLASS_IN
        && walked.qname.eq_ignore_ascii_case(name.wire());
    let checked = walked
        .records
        .iter()
        .filter(|r| r.section == 0)
        .all(|r| wire::check_rdata(&buf, r).is_ok());
    (ours && checked).then_some(Reply::Answer(Box::new(Answer { buf, walked })))
}

/// A response code's name (RFC 1035, 6895), else its number.
fn rcode_text(rcode: u8) -> String {
    match rcode {
        wire::RCODE_FORMERR => "FORMERR".into(),
        wire::RCODE_SERVFAIL => "SERVFAIL".into(),
        wire::RCODE_NOTIMP => "NOTIMP".into(),
        wire::RCODE_REFUSED => "REFUSED".into(),
        other => other.to_string(),
    }
}

/// One question to `resolver`: over UDP with EDNS(0)
/// ([`EDNS_UDP_PAYLOAD`]), [`QUERY_TRIES`] tries of [`QUERY_TIMEOUT`];
/// a truncated answer (TC) asks the same question again over TCP
/// (RFC 7766), within [`QUERY_TIMEOUT`]. NOERROR is an answer, NXDOMAIN
/// is permanent, anything else temporary.
pub(super) async fn query(
    resolver: SocketAddr,
    name: &Name,
    rtype: u16,
) -> Result<Answer, LookupError> {
    let temp = |why: String| LookupError::Temporary(name.to_ascii(), why);
    let id = crate::dns::upstream::random_id();
    // RD set, EDNS(0) advertising EDNS_UDP_PAYLOAD.
    let bytes = wire::build_upstream_query(id, &wire::Key::new(name.wire(), rtype, wire::CLASS_IN));
    let m = match query_udp(resolver, &bytes, id, name, rtype)
        .await
        .map_err(temp)?
    {
        Reply::Answer(m) => *m,
        Reply::Truncated => {
            match tokio::time::timeout(QUERY_TIMEOUT, query_tcp(resolver, &bytes, id, name, rtype))
                .await
                .map_err(|_| temp("truncated answer, and timed out over TCP".into()))?
                .map_err(|e| temp(format!("truncated answer, and over TCP: {e}")))?
            {
                Reply::Answer(m) => *m,
                Reply::Truncated => return Err(temp("truncated answer over TCP".into())),
            }
        }
    };
    match m.walked.rcode() {
        wire::RCODE_NOERROR => Ok(m),
        wire::RCODE_NXDOMAIN => Err(LookupError::NoSuchDomain(name.to_ascii())),
        wire::RCODE_SERVFAIL => Err(temp("SERVFAIL".into())),
        other => Err(temp(format!("rcode {}", rcode_text(other)))),
    }
}

/// The query `bytes` over UDP: the first answer to it, truncated or not.
async fn query_udp(
    resolver: SocketAddr,
    bytes: &[u8],
    id: u16,
    name: &Name,
    rtype: u16,
) -> Result<Reply, String> {
    let bind: SocketAddr = if resolver.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(resolver).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_ANSWER_BYTES];
    let mut last = String::from("no answer");
    for _ in 0..QUERY_TRIES {
        if let Err(e) = sock.send(bytes).await {
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
            if let Some(r) = reply_to(buf[..n].to_vec(), id, name, rtype) {
                return Ok(r);
            }
        }
    }
    Err(last)
}

/// The query `bytes` over TCP (RFC 1035 4.2.2: a 2-byte length before
/// each message); the answer is bounded by that length.
async fn query_tcp(
    resolver: SocketAddr,
    bytes: &[u8],
    id: u16,
    name: &Name,
    rtype: u16,
) -> Result<Reply, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(resolver)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = Vec::with_capacity(2 + bytes.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.map_err(|e| e.to_string())?;
    let n = s.read_u16().await.map_err(|e| e.to_string())? as usize;
    if n > MAX_TCP_ANSWER_BYTES {
        return Err(format!("answer of {n} bytes over TCP"));
    }
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    reply_to(buf, id, name, rtype)
        .ok_or_else(|| "a malformed answer, or one to another question, over TCP".into())
}

/// Puts each run of MX hosts with the same preference in a random order
/// (RFC 5321 5.1: "randomized to spread the load"), `random` giving the
/// draws; `hosts` is sorted by preference.
pub fn shuffle_equal_preferences(hosts: &mut [MxHost], mut random: impl FnMut() -> u64) {
    let mut start = 0;
    while start < hosts.len() {
        let p = hosts[start].preference;
        let end = start
            + hosts[start..]
                .iter()
                .take_while(|h| h.preference == p)
                .count();
        // Fisher-Yates on hosts[start..end].
        for i in (start + 1..end).rev() {
            let j = start + (random() % (i - start + 1) as u64) as usize;
            hosts.swap(i, j);
        }
        start = end;
    }
}

/// A random source for [`shuffle_equal_preferences`]: xorshift seeded by
/// the kernel's random bytes (getrandom), one seed per lookup.
fn random_source() -> impl FnMut() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most `seed.len()` bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    let mut x = u64::from_ne_bytes(seed);
    if n != 8 || x == 0 {
        // Never expected on Linux >= 3.17; the clock's noise will do for
        // spreading load.
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            | 1;
    }
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// MX hosts of `domain`, most preferred first; the domain itself (with
/// preference 0) when it has no MX (implicit MX).
pub async fn mx_hosts(resolver: SocketAddr, domain: &str) -> Result<Vec<MxHost>, LookupError> {
    let name = Name::from_utf8(domain)
        .map_err(|e| LookupError::Temporary(domain.to_string(), e.to_string()))?;
    let m = query(resolver, &name, wire::TYPE_MX).await?;
    let mut mx: Vec<(u16, Name)> = m
        .walked
        .records
        .iter()
        .filter(|r| r.section == 0 && r.rtype == wire::TYPE_MX)
        .filter_map(|r| {
            // check_rdata made sure of the preference and the name.
            let preference = u16::from_be_bytes([m.buf[r.rdata_at], m.buf[r.rdata_at + 1]]);
            let exchange = wire::read_name(&m.buf, r.rdata_at + 2).ok()?;
            Some((preference, Name::from_wire(&exchange)))
        })
        .collect();
    if mx.is_empty() {
        return Ok(vec![MxHost {
            preference: 0,
            name,
        }]);
    }
    if mx.len() == 1 && mx[0].1.is_root() {
        return Err(LookupError::NullMx(domain.to_string()));
    }
    mx.sort_by_key(|(p, _)| *p);
    let mut hosts: Vec<MxHost> = mx
        .into_iter()
        .filter(|(_, n)| !n.is_root())
        .map(|(preference, name)| MxHost { preference, name })
        .collect();
    shuffle_equal_preferences(&mut hosts, random_source());
    hosts.truncate(MAX_MX_HOSTS);
    Ok(hosts)
}

/// AAAA and A addresses of a host (IPv6 first).
pub async fn addresses(resolver: SocketAddr, host: &Name) -> Result<Vec<IpAddr>, LookupError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for t in [wire::TYPE_AAAA, wire::TYPE_A] {
        match query(resolver, host, t).await {
            // check_rdata made sure of the lengths.
            Ok(m) => {
                out.extend(
                    m.rdata(wire::TYPE_AAAA)
                        .filter_map(|d| <[u8; 16]>::try_from(d).ok().map(IpAddr::from)),
                );
                out.extend(
                    m.rdata(wire::TYPE_A)
                        .filter_map(|d| <[u8; 4]>::try_from(d).ok().map(IpAddr::from)),
                );
            }
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
    let name = Name::from_utf8(host).map_err(|e| bad(&e.to_string()))?;
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
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, MX};
    use hickory_proto::rr::{Name as HName, RData, Record};

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
        let mx = |p, n: &str| RData::MX(MX::new(p, HName::from_ascii(n).unwrap()));
        let r = fake(
            ResponseCode::NoError,
            vec![mx(20, "b.test."), mx(10, "a.test.")],
            false,
        )
        .await;
        let hosts = mx_hosts(r, "x.test").await.unwrap();
        assert_eq!(hosts[0].name.to_ascii(), "a.test.");
        assert_eq!(hosts[0].preference, 10);
        let r = fake(
            ResponseCode::NoError,
            vec![RData::A(A::new(127, 0, 0, 9))],
            false,
        )
        .await;
        let hosts = mx_hosts(r, "x.test").await.unwrap();
        assert_eq!(hosts[0].name.to_ascii(), "x.test.", "implicit MX");
        assert_eq!(
            addresses(r, &hosts[0].name).await.unwrap(),
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

    /// A fake resolver that truncates every UDP answer (TC, no records)
    /// and answers in full over TCP on the same port; it records the
    /// EDNS payload size of each UDP query (`None`: no EDNS).
    async fn fake_tc(
        answers: Vec<RData>,
    ) -> (
        SocketAddr,
        std::sync::Arc<std::sync::Mutex<Vec<Option<u16>>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tcp, udp) = loop {
            let t = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = t.local_addr().unwrap().port();
            if let Ok(u) = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await {
                break (t, u);
            }
        };
        let addr = udp.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = move |q: &Message| {
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            let qq = q.queries[0].clone();
            for a in &answers {
                if a.record_type() == qq.query_type() {
                    r.add_answer(Record::from_rdata(qq.name().clone(), 60, a.clone()));
                }
            }
            r.add_query(qq);
            r
        };
        let udp_answer = answer.clone();
        let udp_seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                udp_seen
                    .lock()
                    .unwrap()
                    .push(q.edns.as_ref().map(|e| e.max_payload()));
                let mut r = udp_answer(&q);
                r.metadata.truncation = true;
                r.answers.clear();
                let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut c, _)) = tcp.accept().await {
                let Ok(len) = c.read_u16().await else {
                    continue;
                };
                let mut q = vec![0u8; len as usize];
                if c.read_exact(&mut q).await.is_err() {
                    continue;
                }
                let r = answer(&Message::from_vec(&q).unwrap()).to_vec().unwrap();
                let _ = c.write_all(&(r.len() as u16).to_be_bytes()).await;
                let _ = c.write_all(&r).await;
            }
        });
        (addr, seen)
    }

    fn mx(preference: u16, name: &str) -> RData {
        RData::MX(MX::new(preference, HName::from_ascii(name).unwrap()))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_truncated_answer_is_asked_again_over_tcp_with_edns() {
        // Far more than 512 bytes of MX records.
        let mut answers = vec![mx(10, "a.test.")];
        for i in 0..40 {
            answers.push(mx(
                20,
                &format!("filler-{i:02}-with-a-rather-long-name.x.test."),
            ));
        }
        answers.push(RData::A(A::new(127, 0, 0, 9)));
        let (r, edns) = fake_tc(answers).await;
        let hosts = mx_hosts(r, "x.test").await.unwrap();
        assert_eq!(hosts[0].name.to_ascii(), "a.test.");
        assert_eq!(hosts.len(), MAX_MX_HOSTS);
        assert!(hosts[1..].iter().all(|h| h.preference == 20));
        assert_eq!(
            addresses(r, &hosts[0].name).await.unwrap(),
            vec![IpAddr::from([127, 0, 0, 9])]
        );
        let seen = edns.lock().unwrap().clone();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|e| *e == Some(1232)), "{seen:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn equal_preferences_are_shuffled_per_lookup() {
        let r = fake(
            ResponseCode::NoError,
            vec![
                mx(10, "a.test."),
                mx(10, "b.test."),
                mx(10, "c.test."),
                mx(5, "first.test."),
                mx(20, "last.test."),
            ],
            false,
        )
        .await;
        let mut orders = std::collections::HashSet::new();
        for _ in 0..40 {
            let h = mx_hosts(r, "x.test").await.unwrap();
            let names: Vec<String> = h.iter().map(|h| h.name.to_ascii()).collect();
            assert_eq!(names[0], "first.test.");
            assert_eq!(names[4], "last.test.");
            orders.insert(names[1..4].to_vec());
        }
        assert!(orders.len() > 1, "never shuffled: {orders:?}");
    }

    #[test]
    fn shuffling_keeps_preferences_and_reaches_every_order() {
        let h = |p, n: &str| MxHost {
            preference: p,
            name: Name::from_ascii(n).unwrap(),
        };
        let sorted = vec![
            h(5, "first."),
            h(10, "a."),
            h(10, "b."),
            h(10, "c."),
            h(20, "last1."),
            h(20, "last2."),
        ];
        let mut orders = std::collections::HashSet::new();
        let mut draws = 0u64;
        for _ in 0..300 {
            let mut v = sorted.clone();
            shuffle_equal_preferences(&mut v, || {
                draws = draws
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                draws >> 33
            });
            let prefs: Vec<u16> = v.iter().map(|h| h.preference).collect();
            assert_eq!(prefs, [5, 10, 10, 10, 20, 20]);
            orders.insert(v.iter().map(|h| h.name.to_ascii()).collect::<Vec<_>>());
        }
        // 3! orders of the 10s times 2 of the 20s.
        assert_eq!(orders.len(), 12, "{orders:?}");
        let mut one = vec![h(1, "only.")];
        shuffle_equal_preferences(&mut one, || 7);
        shuffle_equal_preferences(&mut [], || 7);
        assert_eq!(one[0].name.to_ascii(), "only.");
    }

    fn me() -> Me {
        Me {
            names: vec!["mx2.example.org".into()],
            addresses: vec!["203.0.113.25".parse().unwrap()],
            local: vec!["192.168.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            listen: vec!["0.0.0.0:25".parse().unwrap(), "[::]:25".parse().unwrap()],
            mx_port: 25,
        }
    }

    fn host(preference: u16, name: &str, addrs: &[&str]) -> Resolved {
        Resolved {
            host: MxHost {
                preference,
                name: Name::from_ascii(name).unwrap(),
            },
            addrs: Ok(addrs.iter().map(|a| a.parse().unwrap()).collect()),
        }
    }

    #[test]
    fn the_board_knows_its_names_and_addresses() {
        let m = me();
        assert!(m.has_name(&Name::from_ascii("MX2.Example.Org.").unwrap()));
        assert!(!m.has_name(&Name::from_ascii("mx1.example.org.").unwrap()));
        for ours in [
            "203.0.113.25",
            "192.168.1.5",
            "::ffff:192.168.1.5",
            "fd00::5",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "0.0.0.0",
        ] {
            assert!(m.has_address(ours.parse().unwrap()), "{ours}");
        }
        assert!(!m.has_address("192.168.1.6".parse().unwrap()));
        // Our interfaces and loopback reach us only where the listener
        // takes the MX port; a configured address is ours whatever the port.
        let other_port = Me {
            listen: vec!["127.0.0.1:2525".parse().unwrap()],
            ..me()
        };
        assert!(!other_port.has_address("127.0.0.1".parse().unwrap()));
        assert!(other_port.has_address("203.0.113.25".parse().unwrap()));
        let one = Me {
            listen: vec!["127.0.0.1:25".parse().unwrap()],
            ..me()
        };
        assert!(one.has_address("127.0.0.1".parse().unwrap()));
        assert!(!one.has_address("127.0.0.2".parse().unwrap()));
        assert!(!one.has_address("192.168.1.5".parse().unwrap()));
        // Defaults: system.hostname is the name.
        let c = crate::config::MailConfig::default();
        let d = Me::new(&c, "Board.Home.Arpa", vec![]);
        assert_eq!(d.names, vec!["board.home.arpa".to_string()]);
        assert!(d.addresses.is_empty());
    }

    #[test]
    fn only_hosts_better_than_the_board_are_planned() {
        let m = me();
        // The board at 20 (by address): 10 is tried, 20 and 30 are not.
        let got = plan(
            "example.org",
            vec![
                host(10, "mx1.example.org.", &["198.51.100.1"]),
                host(20, "peer.example.org.", &["198.51.100.2"]),
                host(20, "self.example.org.", &["192.168.1.5"]),
                host(30, "mx3.example.org.", &["198.51.100.3"]),
            ],
            &m,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![(
                "198.51.100.1".parse().unwrap(),
                "mx1.example.org.".to_string()
            )]
        );
        // The board is the best (by name, not looked up): queued.
        let e = plan(
            "example.org",
            vec![
                host(10, "mx2.example.org.", &[]),
                host(10, "peer.example.org.", &["198.51.100.2"]),
                host(20, "mx3.example.org.", &["198.51.100.3"]),
            ],
            &m,
        )
        .unwrap_err();
        assert_eq!(
            e,
            LookupError::LoopsToMe {
                domain: "example.org".into(),
                preference: 10
            }
        );
        assert!(!e.is_permanent());
        assert!(e.to_string().contains("loops back to myself"), "{e}");
        // The only MX (implicit MX included) is us: queued too.
        let e = plan(
            "example.org",
            vec![host(0, "example.org.", &["127.0.0.1"])],
            &m,
        );
        assert!(matches!(e, Err(LookupError::LoopsToMe { .. })), "{e:?}");
        // Better hosts without an address: a temporary failure.
        let mut down = host(5, "mx1.example.org.", &[]);
        down.addrs = Err(LookupError::NoSuchDomain("mx1.example.org".into()));
        let e = plan(
            "example.org",
            vec![down, host(10, "mx2.example.org.", &[])],
            &m,
        )
        .unwrap_err();
        assert!(matches!(e, LookupError::Temporary(..)), "{e}");
        // Not among the hosts: every host, in order.
        let got = plan(
            "example.org",
            vec![
                host(10, "a.example.org.", &["198.51.100.1", "2001:db8::1"]),
                host(20, "b.example.org.", &["198.51.100.2"]),
            ],
            &m,
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].1, "b.example.org.");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_resolver_is_temporary() {
        let r = fake(ResponseCode::NoError, vec![], true).await;
        let e = mx_hosts(r, "x.test").await.unwrap_err();
        assert!(matches!(e, LookupError::Temporary(..)), "{e}");
    }
}
