//! The few rtnetlink messages init needs, encoded and decoded by hand
//! without I/O: set a link up, add or delete an address (IPv4 or IPv6
//! with its prefix length), add or replace a route, dump the addresses;
//! and the kernel's replies (acknowledgement, error, address dump). The
//! caller sends the bytes through `Sys::netlink` and feeds the reply back
//! here. Netlink uses the host's byte order (little-endian on every board
//! we build for). Replies are parsed with bounds checks and never panic;
//! a reply larger than [`MAX_REPLY`] is refused by the I/O side.

use std::net::IpAddr;

/// The largest reply (all datagrams of one request) read from the kernel.
pub const MAX_REPLY: usize = 64 * 1024;
/// The most addresses one dump yields to the caller.
pub const MAX_ADDRS: usize = 64;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
#[cfg(test)]
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 0x1;
/// The address is still being checked for duplicates (IPv6 DAD).
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// Duplicate address detection failed: the address is unusable.
pub const IFA_F_DADFAILED: u32 = 0x08;

/// Who installed a route (rtm_protocol), as `ip route` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From the configuration (RTPROT_STATIC).
    Static = 4,
    /// From a DHCP lease (RTPROT_DHCP).
    Dhcp = 16,
}

fn family(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// A message being built: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        Msg(b)
    }
    fn put(mut self, bytes: &[u8]) -> Msg {
        self.0.extend_from_slice(bytes);
        self
    }
    fn attr(mut self, kind: u16, payload: &[u8]) -> Msg {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// RTM_NEWLINK setting IFF_UP on interface `index`.
pub fn link_up(seq: u32, index: u32) -> Vec<u8> {
    let mut ifi = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    ifi.extend_from_slice(&(index as i32).to_ne_bytes());
    ifi.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
    ifi.extend_from_slice(&IFF_UP.to_ne_bytes()); // change mask
    Msg::new(RTM_NEWLINK, NLM_F_ACK, seq).put(&ifi).done()
}

fn ifaddrmsg(addr: IpAddr, prefix: u8, index: u32) -> Vec<u8> {
    let scope = if addr.is_loopback() {
        254
    } else if matches!(addr, IpAddr::V6(v) if v.is_unicast_link_local()) {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut b = vec![family(addr), prefix, 0, scope];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

/// RTM_NEWADDR: `addr/prefix` on interface `index` (replaced if present).
/// IPv4 addresses get their broadcast address, as `ip addr add ... brd +`.
pub fn add_address(seq: u32, index: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
    let o = octets(addr);
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq)
        .put(&ifaddrmsg(addr, prefix, index))
        .attr(IFA_LOCAL, &o)
        .attr(IFA_ADDRESS, &o);
    if let IpAddr::V4(v) = addr
        && prefix < 31
    {
        let host = u32::MAX.checked_shr(prefix as u32).unwrap_or(0);
        m = m.attr(IFA_BROADCAST, &(u32::from(v) | host).to_be_bytes());
    }
    m.done()
}

/// RTM_DELADDR: removes `addr/prefix` from interface `index`.
pub fn del_address(seq: u32, index: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
    let o = octets(addr);
    Msg::new(RTM_DELADDR, NLM_F_ACK, seq)
        .put(&ifaddrmsg(addr, prefix, index))
        .attr(IFA_LOCAL, &o)
        .attr(IFA_ADDRESS, &o)
        .done()
}

/// A route in the main table through interface `oif`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix; `dst_len` 0 is the default route.
    pub dst: IpAddr,
    pub dst_len: u8,
    /// Next hop; `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub origin: Origin,
}

fn rtmsg(r: &Route) -> Vec<u8> {
    let scope = if r.gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let mut b = vec![
        family(r.dst),
        r.dst_len,
        0,
        0,
        RT_TABLE_MAIN,
        r.origin as u8,
        scope,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

fn route_msg(kind: u16, flags: u16, seq: u32, r: &Route) -> Vec<u8> {
    let mut m = Msg::new(kind, flags, seq).put(&rtmsg(r));
    if r.dst_len > 0 {
        m = m.attr(RTA_DST, &octets(r.dst));
    }
    if let Some(gw) = r.gateway {
        m = m.attr(RTA_GATEWAY, &octets(gw));
    }
    m.attr(RTA_OIF, &r.oif.to_ne_bytes()).done()
}

/// RTM_NEWROUTE, replacing a route to the same destination.
pub fn add_route(seq: u32, r: &Route) -> Vec<u8> {
    route_msg(
        RTM_NEWROUTE,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        r,
    )
}

/// RTM_NEWROUTE that fails with EEXIST if the route exists (tests).
#[cfg(test)]
pub fn add_route_excl(seq: u32, r: &Route) -> Vec<u8> {
    route_msg(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, r)
}

/// RTM_DELROUTE.
pub fn del_route(seq: u32, r: &Route) -> Vec<u8> {
    route_msg(RTM_DELROUTE, NLM_F_ACK, seq, r)
}

/// RTM_GETADDR dump of every address of one family (`None`: all).
pub fn dump_addresses(seq: u32, v6: Option<bool>) -> Vec<u8> {
    let fam = match v6 {
        None => libc::AF_UNSPEC as u8,
        Some(false) => libc::AF_INET as u8,
        Some(true) => libc::AF_INET6 as u8,
    };
    Msg::new(RTM_GETADDR, NLM_F_DUMP, seq)
        .put(&[fam, 0, 0, 0, 0, 0, 0, 0])
        .done()
}

/// What went wrong with a netlink exchange.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetlinkError {
    #[error("the kernel refused the request: {}", std::io::Error::from_raw_os_error(*.0))]
    Refused(i32),
    #[error("the reply is truncated or malformed")]
    Malformed,
    #[error("the reply has no acknowledgement or end of dump for our request")]
    NoEnd,
}

/// One netlink message in a reply: type, sequence number, payload.
struct Part<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn parts(mut b: &[u8]) -> Result<Vec<Part<'_>>, NetlinkError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32_at(b, 0).ok_or(NetlinkError::Malformed)? as usize;
        if len < NLMSG_HDR || len > b.len() {
            return Err(NetlinkError::Malformed);
        }
        out.push(Part {
            kind: u16_at(b, 4).ok_or(NetlinkError::Malformed)?,
            seq: u32_at(b, 8).ok_or(NetlinkError::Malformed)?,
            payload: &b[NLMSG_HDR..len],
        });
        let next = len.div_ceil(4) * 4;
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The error of an NLMSG_ERROR: the kernel sends a negative errno; one
/// that has no positive counterpart (i32::MIN) is malformed.
fn refused(err: i32) -> Result<NetlinkError, NetlinkError> {
    err.checked_neg()
        .map(NetlinkError::Refused)
        .ok_or(NetlinkError::Malformed)
}

/// Whether `reply` holds the end of request `seq` (an acknowledgement,
/// an error or the end of a dump): the I/O side reads until it does.
pub fn is_complete(reply: &[u8], seq: u32) -> bool {
    parts(reply).is_ok_and(|p| {
        p.iter()
            .any(|m| m.seq == seq && (m.kind == NLMSG_ERROR || m.kind == NLMSG_DONE))
    })
}

/// Checks the acknowledgement of request `seq`.
pub fn parse_ack(reply: &[u8], seq: u32) -> Result<(), NetlinkError> {
    for m in parts(reply)? {
        if m.seq != seq || m.kind != NLMSG_ERROR {
            continue;
        }
        let err = u32_at(m.payload, 0).ok_or(NetlinkError::Malformed)? as i32;
        return if err == 0 { Ok(()) } else { Err(refused(err)?) };
    }
    Err(NetlinkError::NoEnd)
}

/// One address from a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// IFA_F_* flags (IFA_FLAGS when present, else the 8-bit field).
    pub flags: u32,
}

impl AddrInfo {
    /// Usable: not tentative (DAD under way) and not failed.
    pub fn usable(&self) -> bool {
        self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }
}

/// Parses the reply to [`dump_addresses`] (at most [`MAX_ADDRS`]).
pub fn parse_addresses(reply: &[u8], seq: u32) -> Result<Vec<AddrInfo>, NetlinkError> {
    let mut out = Vec::new();
    let mut ended = false;
    for m in parts(reply)? {
        if m.seq != seq {
            continue;
        }
        match m.kind {
            NLMSG_DONE => ended = true,
            NLMSG_ERROR => {
                let err = u32_at(m.payload, 0).ok_or(NetlinkError::Malformed)? as i32;
                return Err(refused(err)?);
            }
            RTM_NEWADDR if out.len() < MAX_ADDRS => {
                if let Some(a) = parse_ifaddr(m.payload) {
                    out.push(a);
                }
            }
            _ => {}
        }
    }
    if ended {
        Ok(out)
    } else {
        Err(NetlinkError::NoEnd)
    }
}

fn parse_ifaddr(p: &[u8]) -> Option<AddrInfo> {
    let fam = *p.first()?;
    let prefix = *p.get(1)?;
    let mut flags = *p.get(2)? as u32;
    let index = u32_at(p, 4)?;
    let mut addr = None;
    let mut local = None;
    let mut i = 8;
    while i + 4 <= p.len() {
        let len = u16_at(p, i)? as usize;
        let kind = u16_at(p, i + 2)?;
        if len < 4 || i + len > p.len() {
            return None;
        }
        let v = &p[i + 4..i + len];
        let ip = match (fam as i32, v.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
            (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
            _ => None,
        };
        match kind {
            IFA_ADDRESS => addr = ip,
            IFA_LOCAL => local = ip,
            IFA_FLAGS if v.len() == 4 => flags = u32_at(v, 0)?,
            _ => {}
        }
        i += len.div_ceil(4) * 4;
    }
    Some(AddrInfo {
        index,
        addr: local.or(addr)?,
        prefix,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Golden bytes, little-endian: the same layout as `ip link set up`,
    // `ip addr add` and `ip route replace` send (compared with strace of
    // iproute2 6.1; only the sequence number and NLM_F_EXCL/REPLACE differ).
    #[test]
    fn link_up_golden() {
        assert_eq!(
            hex(&link_up(7, 2)),
            "20000000100005000700000000000000\
             00000000020000000100000001000000"
        );
    }

    #[test]
    fn add_ipv4_address_golden() {
        let m = add_address(1, 2, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)), 24);
        assert_eq!(
            hex(&m),
            "30000000140005050100000000000000\
             021800000200000008000200 0a00020f\
             080001000a00020f080004000a0002ff"
                .replace(' ', "")
        );
    }

    #[test]
    fn add_ipv6_address_golden() {
        let a: Ipv6Addr = "fec0::15".parse().unwrap();
        let m = add_address(3, 2, IpAddr::V6(a), 64);
        assert_eq!(
            hex(&m),
            "40000000140005050300000000000000\
             0a40000002000000 14000200fec00000000000000000000000000015\
             14000100fec00000000000000000000000000015"
                .replace(' ', "")
        );
    }

    #[test]
    fn default_routes_golden() {
        let v4 = Route {
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_len: 0,
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))),
            oif: 2,
            origin: Origin::Static,
        };
        assert_eq!(
            hex(&add_route(4, &v4)),
            "2c000000180005050400000000000000\
             02000000fe04000100000000\
             080005000a000202\
             0800040002000000"
        );
        let v6 = Route {
            dst: "2001:db8::".parse().unwrap(),
            dst_len: 32,
            gateway: Some("fe80::1".parse().unwrap()),
            oif: 3,
            origin: Origin::Dhcp,
        };
        assert_eq!(
            hex(&add_route(5, &v6)),
            "4c000000180005050500000000000000\
             0a200000fe10000100000000\
             1400010020010db8000000000000000000000000\
             14000500fe800000000000000000000000000001\
             0800040003000000"
        );
    }

    #[test]
    fn dump_request_golden() {
        assert_eq!(
            hex(&dump_addresses(9, Some(true))),
            "18000000160001030900000000000000 0a00000000000000".replace(' ', "")
        );
    }

    fn ack(seq: u32, err: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&err.to_ne_bytes());
        b.extend_from_slice(&[0; 16]);
        b
    }

    /// Found by fuzz/fuzz_targets/netlink.rs: an error code of i32::MIN
    /// overflowed its negation (a panic in PID 1 with overflow checks).
    #[test]
    fn an_error_code_without_a_positive_errno_is_malformed() {
        assert_eq!(
            parse_ack(&ack(5, i32::MIN), 5),
            Err(NetlinkError::Malformed)
        );
        let mut d = ack(9, i32::MIN);
        d.extend(ack(9, 0));
        assert_eq!(parse_addresses(&d, 9), Err(NetlinkError::Malformed));
        assert_eq!(
            parse_ack(&ack(5, i32::MAX), 5),
            Err(NetlinkError::Refused(-i32::MAX))
        );
    }

    #[test]
    fn acks_and_errors() {
        assert_eq!(parse_ack(&ack(5, 0), 5), Ok(()));
        assert_eq!(
            parse_ack(&ack(5, -libc::EEXIST), 5),
            Err(NetlinkError::Refused(libc::EEXIST))
        );
        assert_eq!(parse_ack(&ack(4, 0), 5), Err(NetlinkError::NoEnd));
        assert!(is_complete(&ack(5, 0), 5));
        assert!(!is_complete(&ack(4, 0), 5));
        assert_eq!(parse_ack(&ack(5, 0)[..20], 5), Err(NetlinkError::Malformed));
    }

    /// A dump as the kernel sends it: one RTM_NEWADDR then NLMSG_DONE.
    pub fn addr_dump(seq: u32, index: u32, addr: IpAddr, prefix: u8, flags: u32) -> Vec<u8> {
        let mut m = Msg::new(RTM_NEWADDR, 0, seq)
            .put(&ifaddrmsg(addr, prefix, index))
            .attr(IFA_ADDRESS, &octets(addr))
            .attr(IFA_FLAGS, &flags.to_ne_bytes())
            .done();
        let mut done = Msg::new(NLMSG_DONE, 0, seq).put(&0u32.to_ne_bytes()).done();
        m.append(&mut done);
        m
    }

    #[test]
    fn address_dump_parsed_with_flags() {
        let a: IpAddr = "fec0::15".parse().unwrap();
        let d = addr_dump(9, 2, a, 64, IFA_F_TENTATIVE);
        let v = parse_addresses(&d, 9).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].index, v[0].addr, v[0].prefix), (2, a, 64));
        assert!(!v[0].usable());
        let d = addr_dump(9, 2, a, 64, 0x80);
        assert!(parse_addresses(&d, 9).unwrap()[0].usable());
        assert_eq!(
            parse_addresses(&d[..d.len() - 20], 9),
            Err(NetlinkError::NoEnd)
        );
    }

    #[test]
    fn reply_fuzz_never_panics() {
        let base = addr_dump(1, 2, "10.0.2.15".parse().unwrap(), 24, 0);
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..(x % 4 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            b.truncate((x >> 40) as usize % (b.len() + 1));
            let _ = parse_addresses(&b, 1);
            let _ = parse_ack(&b, 1);
            let _ = is_complete(&b, 1);
        }
    }
}
