//! The board's network from `[init.network]`, over rtnetlink (the
//! messages are in `netlink`, the socket behind `Sys::netlink`): loopback
//! and the configured interface up, static IPv4 and IPv6 addresses with
//! their prefix lengths, default routes (v4 and v6) and extra routes;
//! IPv6 autoconfiguration left to the kernel or switched off through the
//! interface's accept_ra/autoconf sysctls; the wait for carrier and
//! usable addresses within `wait_secs`; and a DHCP lease from udhcpc
//! applied with the same messages (the `dhcp-event` applet), whose DNS
//! servers become the text of `<run_dir>/dhcp-dns` ([`offered_dns`]), the
//! DNS cache's forwarders when it configures none (never resolv.conf: the
//! local cache is the resolver). It never touches an interface the
//! configuration does not name (besides `lo`), and a failed step is
//! logged, not fatal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{NetworkConfig, Prefix, Readiness, ServiceConfig};
use crate::init::netlink::{self, NetlinkError, Origin, Route};
use crate::sys::Sys;

/// How long init waits for a configured interface to appear (its driver
/// may probe after the module loaded).
pub const IFACE_WAIT: Duration = Duration::from_secs(5);
/// Linux IFNAMSIZ minus the NUL.
pub const MAX_IFNAME: usize = 15;
/// How often the link and addresses are looked at while waiting.
pub const WAIT_STEP: Duration = Duration::from_millis(100);
/// The lease file under `system.run_dir`, written by `dhcp-event`.
pub const LEASE_FILE: &str = "dhcp.lease";
/// The udhcpc script: a symlink to this binary in `system.run_dir`.
pub const DHCP_SCRIPT: &str = "dhcp-event";
/// A lease file is never longer than this (bytes).
pub const MAX_LEASE_FILE: usize = 1024;
/// At most this many DNS servers or routers are taken from a lease.
pub const MAX_LEASE_LIST: usize = 4;

/// Parses `ADDR/LEN` of one family (the length is required).
pub fn parse_cidr(s: &str, v6: bool) -> Option<(IpAddr, u8)> {
    if s.len() > 64 || !s.contains('/') {
        return None;
    }
    let p = Prefix::parse(s)?;
    (p.addr.is_ipv6() == v6).then_some((p.addr, p.len))
}

/// An extra route from `init.network.routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpAddr,
    pub len: u8,
    pub via: IpAddr,
}

/// Parses `PREFIX via GATEWAY` (both of one family).
pub fn parse_route(s: &str) -> Option<RouteSpec> {
    if s.len() > 128 {
        return None;
    }
    let mut w = s.split_whitespace();
    let (p, via, g, end) = (w.next()?, w.next()?, w.next()?, w.next());
    if via != "via" || end.is_some() {
        return None;
    }
    let p = Prefix::parse(p)?;
    let via: IpAddr = g.parse().ok()?;
    (p.addr.is_ipv6() == via.is_ipv6()).then_some(RouteSpec {
        dst: p.addr,
        len: p.len,
        via,
    })
}

/// Why a network step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Kernel(#[from] NetlinkError),
}

/// Sends netlink requests through a [`Sys`], numbering them.
pub struct Netlink<'a> {
    sys: &'a mut dyn Sys,
    seq: u32,
}

impl<'a> Netlink<'a> {
    pub fn new(sys: &'a mut dyn Sys) -> Netlink<'a> {
        Netlink { sys, seq: 0 }
    }

    fn next(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn ack(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> Result<(), NetError> {
        let seq = self.next();
        let msg = build(seq);
        let reply = self.sys.netlink(seq, &msg)?;
        Ok(netlink::parse_ack(&reply, seq)?)
    }

    pub fn link_up(&mut self, index: u32) -> Result<(), NetError> {
        self.ack(|s| netlink::link_up(s, index))
    }

    pub fn add_address(&mut self, index: u32, a: IpAddr, len: u8) -> Result<(), NetError> {
        self.ack(|s| netlink::add_address(s, index, a, len))
    }

    pub fn del_address(&mut self, index: u32, a: IpAddr, len: u8) -> Result<(), NetError> {
        self.ack(|s| netlink::del_address(s, index, a, len))
    }

    pub fn add_route(&mut self, r: &Route) -> Result<(), NetError> {
        self.ack(|s| netlink::add_route(s, r))
    }

    pub fn del_route(&mut self, r: &Route) -> Result<(), NetError> {
        self.ack(|s| netlink::del_route(s, r))
    }

    pub fn addresses(&mut self) -> Result<Vec<netlink::AddrInfo>, NetError> {
        let seq = self.next();
        let reply = self.sys.netlink(seq, &netlink::dump_addresses(seq, None))?;
        Ok(netlink::parse_addresses(&reply, seq)?)
    }
}

/// The interface index from /sys/class/net/NAME/ifindex.
pub fn if_index(sys: &dyn Sys, name: &str) -> Option<u32> {
    sys.read_to_string(&Path::new("/sys/class/net").join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn carrier(sys: &dyn Sys, name: &str) -> bool {
    sys.read_to_string(&Path::new("/sys/class/net").join(name).join("carrier"))
        .is_ok_and(|s| s.trim() == "1")
}

fn default_route(gw: IpAddr, oif: u32, origin: Origin) -> Route {
    let dst = match gw {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    Route {
        dst,
        dst_len: 0,
        gateway: Some(gw),
        oif,
        origin,
    }
}

/// Brings `lo` up (the kernel gives it 127.0.0.1 and ::1).
pub fn loopback_up(sys: &mut dyn Sys) {
    let Some(lo) = if_index(sys, "lo") else {
        log::warn!("net: no lo interface");
        return;
    };
    match Netlink::new(sys).link_up(lo) {
        Ok(()) => log::info!("net: lo up"),
        Err(e) => log::warn!("net: cannot bring lo up: {e}"),
    }
}

/// What [`bring_up`] configured: what [`wait_ready`] then waits for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Configured {
    pub index: u32,
    pub addresses: Vec<IpAddr>,
}

/// Configures the interface from `cfg`, waiting up to `iface_wait` for it
/// to appear. Every step is logged; failed steps are skipped.
pub fn bring_up(
    sys: &mut dyn Sys,
    cfg: &NetworkConfig,
    iface_wait: Duration,
) -> Result<Configured, NetError> {
    let name = cfg.interface.as_str();
    let deadline = Instant::now() + iface_wait;
    let index = loop {
        if let Some(i) = if_index(sys, name) {
            break i;
        }
        if Instant::now() >= deadline {
            log::error!(
                "net: interface {name} did not appear within {} s",
                iface_wait.as_secs()
            );
            return Err(NetError::NoInterface(name.into()));
        }
        std::thread::sleep(WAIT_STEP);
    };
    // Before the link is up, so that the first router advertisement is
    // handled (or ignored) as configured.
    let v = if cfg.ipv6_autoconf { "1" } else { "0" };
    for knob in ["accept_ra", "autoconf"] {
        let p = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{name}/{knob}"));
        if let Err(e) = sys.write_file(&p, format!("{v}\n").as_bytes()) {
            log::warn!("net: {name}: ipv6 {knob}={v}: {e}");
        }
    }
    log::info!(
        "net: {name}: ipv6 autoconfiguration {}",
        if cfg.ipv6_autoconf { "on" } else { "off" }
    );
    let mut nl = Netlink::new(sys);
    if let Err(e) = nl.link_up(index) {
        log::error!("net: {name}: cannot bring it up: {e}");
        return Err(e);
    }
    log::info!("net: {name} up (index {index})");
    let mut out = Configured {
        index,
        addresses: Vec::new(),
    };
    for (text, v6) in [(&cfg.address, false), (&cfg.address6, true)] {
        let Some((a, len)) = parse_cidr(text, v6) else {
            continue;
        };
        match nl.add_address(index, a, len) {
            Ok(()) => {
                log::info!("net: {name} address {a}/{len}");
                out.addresses.push(a);
            }
            Err(e) => log::error!("net: {name}: cannot add {a}/{len}: {e}"),
        }
    }
    // With DHCP the IPv4 routes wait for the lease (their gateways are
    // not reachable before): `dhcp-event` adds them.
    add_static_routes(&mut nl, cfg, index, !cfg.dhcp, true);
    Ok(out)
}

/// The static routes of `cfg` of the families asked for: the default
/// routes via `gateway`/`gateway6` and the extra `routes`. Each is logged;
/// a refused one is skipped.
pub fn add_static_routes(nl: &mut Netlink, cfg: &NetworkConfig, index: u32, v4: bool, v6: bool) {
    let mut routes = Vec::new();
    if let Ok(gw) = cfg.gateway.parse::<Ipv4Addr>() {
        routes.push(default_route(gw.into(), index, Origin::Static));
    }
    if let Ok(gw) = cfg.gateway6.parse::<Ipv6Addr>() {
        routes.push(default_route(gw.into(), index, Origin::Static));
    }
    for r in cfg.routes.iter().filter_map(|r| parse_route(r)) {
        routes.push(Route {
            dst: r.dst,
            dst_len: r.len,
            gateway: Some(r.via),
            oif: index,
            origin: Origin::Static,
        });
    }
    routes.retain(|r| if r.dst.is_ipv4() { v4 } else { v6 });
    for r in &routes {
        let gw = r.gateway.map(|g| g.to_string()).unwrap_or_default();
        match nl.add_route(r) {
            Ok(()) if r.dst_len == 0 => log::info!("net: default route via {gw}"),
            Ok(()) => log::info!("net: route {}/{} via {gw}", r.dst, r.dst_len),
            Err(e) => log::error!("net: route {}/{} via {gw}: {e}", r.dst, r.dst_len),
        }
    }
}

/// What is still missing when the wait ends.
pub fn missing(carrier: bool, want: &[IpAddr], have: &[netlink::AddrInfo]) -> Vec<String> {
    let mut m = Vec::new();
    if !carrier {
        m.push("carrier (cable or link partner)".into());
    }
    for a in want {
        match have.iter().find(|h| h.addr == *a) {
            None => m.push(format!("address {a}")),
            Some(h) if h.flags & netlink::IFA_F_DADFAILED != 0 => {
                m.push(format!("address {a} (duplicate on the network)"))
            }
            Some(h) if !h.usable() => m.push(format!("address {a} (still tentative)")),
            Some(_) => {}
        }
    }
    m
}

/// Waits up to `budget` for carrier on the interface and for every
/// configured address to be usable (IPv6 duplicate address detection
/// done). Logs the outcome; returns whether all was there in time.
pub fn wait_ready(sys: &mut dyn Sys, name: &str, c: &Configured, budget: Duration) -> bool {
    let start = Instant::now();
    loop {
        let up = carrier(sys, name);
        let have = Netlink::new(sys).addresses().unwrap_or_default();
        let have: Vec<_> = have.into_iter().filter(|h| h.index == c.index).collect();
        let miss = missing(up, &c.addresses, &have);
        if miss.is_empty() {
            log::info!(
                "net: {name} ready (link and addresses) after {} ms",
                start.elapsed().as_millis()
            );
            return true;
        }
        if start.elapsed() >= budget {
            log::warn!(
                "net: {name} not ready after {} s (missing: {}); starting services anyway",
                budget.as_secs(),
                miss.join(", ")
            );
            return false;
        }
        std::thread::sleep(WAIT_STEP);
    }
}

/// The supervised DHCP client, when `dhcp` is on: udhcpc in the
/// foreground, its script a symlink to this binary (`dhcp-event`); primed
/// once a lease is applied, so the services after it wait for an address.
pub fn dhcp_service(cfg: &NetworkConfig, run_dir: &Path) -> Option<ServiceConfig> {
    if !cfg.dhcp || cfg.interface.is_empty() {
        return None;
    }
    let script = run_dir.join(DHCP_SCRIPT);
    Some(ServiceConfig {
        name: "dhcp".into(),
        argv: vec![
            cfg.dhcp_client.display().to_string(),
            "-f".into(),
            "-i".into(),
            cfg.interface.clone(),
            "-s".into(),
            script.display().to_string(),
            // Three discovers 3 s apart, then 10 s of rest, forever.
            "-t".into(),
            "3".into(),
            "-T".into(),
            "3".into(),
            "-A".into(),
            "10".into(),
        ],
        user: Some("root".into()),
        oom_score_adj: -500,
        memory_max_mib: 0,
        ready: Readiness::Primed,
        safe_mode: true,
        env: Vec::new(),
    })
}

/// A DHCP lease as udhcpc hands it to its script (environment variables
/// `interface`, `ip`, `mask` or `subnet`, `router`, `dns`, `lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub interface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<IpAddr>,
    pub lease_secs: u32,
}

fn mask_len(m: Ipv4Addr) -> Option<u8> {
    let v = u32::from(m);
    let len = v.leading_ones();
    (v.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

impl Lease {
    /// From udhcpc's variables; `None` when `interface` or `ip` is
    /// missing or malformed.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Lease> {
        let interface = get("interface").filter(|i| !i.is_empty() && i.len() <= MAX_IFNAME)?;
        let ip: Ipv4Addr = get("ip")?.trim().parse().ok()?;
        let prefix = match get("mask").and_then(|m| m.trim().parse::<u8>().ok()) {
            Some(p) if p <= 32 => p,
            _ => match get("subnet") {
                Some(s) => mask_len(s.trim().parse().ok()?)?,
                None => 32,
            },
        };
        let list = |k: &str| -> Vec<String> {
            get(k)
                .unwrap_or_default()
                .split_whitespace()
                .take(MAX_LEASE_LIST)
                .map(String::from)
                .collect()
        };
        Some(Lease {
            interface,
            ip,
            prefix,
            routers: list("router")
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            dns: list("dns").iter().filter_map(|r| r.parse().ok()).collect(),
            lease_secs: get("lease")
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0),
        })
    }

    /// The lease file text (the same variables, one per line).
    pub fn to_file(&self) -> String {
        let j = |v: &[String]| v.join(" ");
        format!(
            "interface={}\nip={}\nmask={}\nrouter={}\ndns={}\nlease={}\n",
            self.interface,
            self.ip,
            self.prefix,
            j(&self
                .routers
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()),
            j(&self.dns.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
            self.lease_secs
        )
    }

    /// Parses [`Lease::to_file`]'s text.
    pub fn from_file(text: &str) -> Option<Lease> {
        if text.len() > MAX_LEASE_FILE {
            return None;
        }
        Lease::from_env(|k| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(String::from)
        })
    }
}

/// Applies `new` (udhcpc `bound` or `renew`): the address, replacing
/// `old`'s when it differs, and the default route via the first router;
/// then the static IPv4 routes of `cfg` (its `gateway` only when the
/// lease names no router).
pub fn apply_lease(
    sys: &mut dyn Sys,
    cfg: &NetworkConfig,
    old: Option<&Lease>,
    new: &Lease,
) -> Result<(), NetError> {
    let index = if_index(sys, &new.interface)
        .ok_or_else(|| NetError::NoInterface(new.interface.clone()))?;
    let mut nl = Netlink::new(sys);
    if let Some(o) = old.filter(|o| (o.ip, o.prefix) != (new.ip, new.prefix))
        && let Err(e) = nl.del_address(index, o.ip.into(), o.prefix)
    {
        log::warn!("dhcp: removing the old address {}/{}: {e}", o.ip, o.prefix);
    }
    nl.add_address(index, new.ip.into(), new.prefix)?;
    let mut cfg = cfg.clone();
    if let Some(gw) = new.routers.first() {
        nl.add_route(&default_route((*gw).into(), index, Origin::Dhcp))?;
        cfg.gateway.clear();
    }
    add_static_routes(&mut nl, &cfg, index, true, false);
    Ok(())
}

/// Entries of udhcpc's `dns` variable looked at; further ones are only
/// counted.
pub const MAX_OFFERED_DNS: usize = 32;

/// Why an offered DNS server is left out of `dhcp-dns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkippedDns {
    #[error("not an IP address")]
    Malformed,
    #[error("the board's own address")]
    Own,
    #[error("a loopback or unspecified address")]
    Loopback,
    #[error("not a unicast address")]
    NotUnicast,
    #[error("listed twice")]
    Duplicate,
    #[error("more than {} servers", crate::dns::dhcp::MAX_DHCP_DNS)]
    TooMany,
}

/// The DNS servers of a lease that the DNS cache may forward to, and the
/// `<run_dir>/dhcp-dns` text that lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedDns {
    /// At most [`crate::dns::dhcp::MAX_DHCP_DNS`], in the offered order.
    pub servers: Vec<IpAddr>,
    /// Entries left out, with why.
    pub skipped: Vec<(String, SkippedDns)>,
    /// Entries beyond [`MAX_OFFERED_DNS`], not looked at.
    pub unexamined: usize,
    pub text: String,
}

/// From udhcpc's `dns` (space-separated addresses) and the lease's own
/// address: the board itself, loopback and unspecified addresses are
/// left out (forwarding there would loop back to the cache), as are
/// multicast and broadcast addresses, repeats and servers over the bound.
pub fn offered_dns(own: Ipv4Addr, offered: &str) -> OfferedDns {
    use crate::dns::dhcp::{MAX_DHCP_DNS, render};
    let mut servers: Vec<IpAddr> = Vec::new();
    let mut skipped = Vec::new();
    let mut words = offered.split_whitespace();
    for w in words.by_ref().take(MAX_OFFERED_DNS) {
        let why = match w.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Err(_) => Some(SkippedDns::Malformed),
            Ok(ip) if ip == IpAddr::V4(own) => Some(SkippedDns::Own),
            Ok(ip) if ip.is_loopback() || ip.is_unspecified() => Some(SkippedDns::Loopback),
            Ok(ip) if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) => {
                Some(SkippedDns::NotUnicast)
            }
            Ok(ip) if servers.contains(&ip) => Some(SkippedDns::Duplicate),
            Ok(_) if servers.len() >= MAX_DHCP_DNS => Some(SkippedDns::TooMany),
            Ok(ip) => {
                servers.push(ip);
                None
            }
        };
        if let Some(why) = why {
            skipped.push((w.to_string(), why));
        }
    }
    let text = render(&servers);
    OfferedDns {
        servers,
        skipped,
        unexamined: words.count(),
        text,
    }
}

/// Removes what `old` set (udhcpc `deconfig`, `leasefail`, `nak`).
pub fn drop_lease(sys: &mut dyn Sys, old: &Lease) -> Result<(), NetError> {
    let index = if_index(sys, &old.interface)
        .ok_or_else(|| NetError::NoInterface(old.interface.clone()))?;
    let mut nl = Netlink::new(sys);
    if let Some(gw) = old.routers.first() {
        let _ = nl.del_route(&default_route((*gw).into(), index, Origin::Dhcp));
    }
    nl.del_address(index, old.ip.into(), old.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, netlink_ack};

    #[test]
    fn cidr_and_route_parsing() {
        assert_eq!(
            parse_cidr("192.168.1.20/24", false),
            Some(("192.168.1.20".parse().unwrap(), 24))
        );
        assert_eq!(
            parse_cidr("fd00::20/64", true),
            Some(("fd00::20".parse().unwrap(), 64))
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0/24",
            "10.0.0.1/",
            "x/24",
            "",
        ] {
            assert_eq!(parse_cidr(bad, false), None, "{bad}");
        }
        assert_eq!(parse_cidr("fd00::1/64", false), None);
        assert_eq!(parse_cidr("10.0.0.1/8", true), None);
        let r = parse_route("192.168.2.0/24 via 192.168.1.1").unwrap();
        assert_eq!((r.len, r.via), (24, "192.168.1.1".parse().unwrap()));
        assert!(parse_route("fd01::/48 via fe80::1").is_some());
        assert!(parse_route("192.168.2.0/24 via fe80::1").is_none());
        assert!(parse_route("192.168.2.0/24 192.168.1.1").is_none());
        assert!(parse_route("192.168.2.0/24 via 192.168.1.1 x").is_none());
    }

    fn fake_with_eth0() -> FakeSys {
        let mut f = FakeSys::default();
        f.files
            .insert("/sys/class/net/eth0/ifindex".into(), "2\n".into());
        f.files
            .insert("/sys/class/net/eth0/carrier".into(), "1\n".into());
        f
    }

    fn cfg() -> NetworkConfig {
        NetworkConfig {
            interface: "eth0".into(),
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            address6: "fec0::15/64".into(),
            gateway6: "fec0::2".into(),
            routes: vec!["192.168.7.0/24 via 10.0.2.3".into()],
            ipv6_autoconf: false,
            ..NetworkConfig::default()
        }
    }

    #[test]
    fn static_config_sends_the_expected_messages_in_order() {
        let mut f = fake_with_eth0();
        let c = bring_up(&mut f, &cfg(), Duration::ZERO).unwrap();
        assert_eq!(c.index, 2);
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(
            f.calls,
            [
                "write /proc/sys/net/ipv6/conf/eth0/accept_ra 0",
                "write /proc/sys/net/ipv6/conf/eth0/autoconf 0",
                "netlink type 16",
                "netlink type 20",
                "netlink type 20",
                "netlink type 24",
                "netlink type 24",
                "netlink type 24",
            ]
        );
        let s = &f.netlink_sent;
        assert_eq!(
            s[1],
            netlink::add_address(2, 2, "10.0.2.15".parse().unwrap(), 24)
        );
        assert_eq!(
            s[2],
            netlink::add_address(3, 2, "fec0::15".parse().unwrap(), 64)
        );
        let v6 = default_route("fec0::2".parse().unwrap(), 2, Origin::Static);
        assert_eq!(s[4], netlink::add_route(5, &v6));
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn refused_steps_are_skipped_not_fatal() {
        let mut f = fake_with_eth0();
        // link up ok, v4 address refused (EADDRNOTAVAIL), the rest ok.
        f.netlink_replies.push_back(netlink_ack(1, 0));
        f.netlink_replies
            .push_back(netlink_ack(2, libc::EADDRNOTAVAIL));
        let c = bring_up(&mut f, &cfg(), Duration::ZERO).unwrap();
        assert_eq!(c.addresses, ["fec0::15".parse::<IpAddr>().unwrap()]);
        assert_eq!(f.netlink_sent.len(), 6);
        // A missing interface: no message at all.
        let mut f = FakeSys::default();
        assert!(matches!(
            bring_up(&mut f, &cfg(), Duration::ZERO),
            Err(NetError::NoInterface(_))
        ));
        assert!(f.netlink_sent.is_empty());
    }

    #[test]
    fn wait_reports_what_is_missing() {
        let a4: IpAddr = "10.0.2.15".parse().unwrap();
        let a6: IpAddr = "fec0::15".parse().unwrap();
        let info = |addr, flags| netlink::AddrInfo {
            index: 2,
            addr,
            prefix: 24,
            flags,
        };
        assert!(missing(true, &[a4, a6], &[info(a4, 0), info(a6, 0x80)]).is_empty());
        assert_eq!(
            missing(false, &[a4, a6], &[info(a6, netlink::IFA_F_TENTATIVE)]),
            [
                "carrier (cable or link partner)",
                "address 10.0.2.15",
                "address fec0::15 (still tentative)"
            ]
        );
        // The budget runs out: the answer is false, quickly.
        let mut f = fake_with_eth0();
        f.files
            .insert("/sys/class/net/eth0/carrier".into(), "0\n".into());
        let c = Configured {
            index: 2,
            addresses: vec![a4],
        };
        let t = Instant::now();
        assert!(!wait_ready(&mut f, "eth0", &c, Duration::from_millis(250)));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn lease_from_udhcpc_variables() {
        let l = Lease::from_env(env(&[
            ("interface", "eth0"),
            ("ip", "10.0.2.15"),
            ("subnet", "255.255.255.0"),
            ("router", "10.0.2.2 10.0.2.1"),
            ("dns", "10.0.2.3"),
            ("lease", "86400"),
        ]))
        .unwrap();
        assert_eq!(l.prefix, 24);
        assert_eq!(l.routers.len(), 2);
        assert_eq!(l.dns, ["10.0.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(Lease::from_file(&l.to_file()), Some(l.clone()));
        let m = Lease::from_env(env(&[
            ("interface", "eth0"),
            ("ip", "10.1.2.3"),
            ("mask", "16"),
        ]));
        assert_eq!(m.unwrap().prefix, 16);
        assert!(Lease::from_env(env(&[("interface", "eth0"), ("ip", "x")])).is_none());
        assert!(Lease::from_env(env(&[("ip", "10.0.2.15")])).is_none());
        assert!(
            Lease::from_env(env(&[
                ("interface", "eth0"),
                ("ip", "10.0.2.15"),
                ("subnet", "255.0.255.0")
            ]))
            .is_none()
        );
    }

    #[test]
    fn lease_applied_and_renumbered() {
        let mut f = fake_with_eth0();
        let old =
            Lease::from_file("interface=eth0\nip=10.0.2.15\nmask=24\nrouter=10.0.2.2\n").unwrap();
        let mut new = old.clone();
        let c = NetworkConfig {
            dhcp: true,
            address: String::new(),
            gateway: "10.0.2.9".into(),
            ..cfg()
        };
        apply_lease(&mut f, &c, None, &new).unwrap();
        // Address, default route from the lease, the extra IPv4 route;
        // not the configured gateway (the lease has a router), no IPv6.
        assert_eq!(
            f.calls,
            ["netlink type 20", "netlink type 24", "netlink type 24"]
        );
        assert_eq!(
            f.netlink_sent[2],
            netlink::add_route(
                3,
                &Route {
                    dst: "192.168.7.0".parse().unwrap(),
                    dst_len: 24,
                    gateway: Some("10.0.2.3".parse().unwrap()),
                    oif: 2,
                    origin: Origin::Static
                }
            )
        );
        // Without a router in the lease, the configured gateway is used.
        f.calls.clear();
        f.netlink_sent.clear();
        let mut bare = new.clone();
        bare.routers.clear();
        apply_lease(&mut f, &c, None, &bare).unwrap();
        assert_eq!(
            f.netlink_sent[1],
            netlink::add_route(
                2,
                &default_route("10.0.2.9".parse().unwrap(), 2, Origin::Static)
            )
        );
        let c = NetworkConfig {
            routes: Vec::new(),
            ..c
        };
        f.calls.clear();
        f.netlink_sent.clear();
        apply_lease(&mut f, &c, None, &new).unwrap();
        assert_eq!(f.calls, ["netlink type 20", "netlink type 24"]);
        assert_eq!(
            f.netlink_sent[1],
            netlink::add_route(
                2,
                &default_route("10.0.2.2".parse().unwrap(), 2, Origin::Dhcp)
            )
        );
        // Same address on renew: no deletion.
        f.calls.clear();
        apply_lease(&mut f, &c, Some(&old), &new).unwrap();
        assert_eq!(f.calls, ["netlink type 20", "netlink type 24"]);
        // A new address: the old one is removed first.
        f.calls.clear();
        new.ip = "10.0.2.16".parse().unwrap();
        apply_lease(&mut f, &c, Some(&old), &new).unwrap();
        assert_eq!(
            f.calls,
            ["netlink type 21", "netlink type 20", "netlink type 24"]
        );
        f.calls.clear();
        drop_lease(&mut f, &new).unwrap();
        assert_eq!(f.calls, ["netlink type 25", "netlink type 21"]);
    }

    #[test]
    fn offered_dns_servers_become_the_dhcp_dns_text() {
        let own: Ipv4Addr = "192.168.1.20".parse().unwrap();
        let o = offered_dns(own, "192.168.1.1  8.8.8.8");
        assert_eq!(
            o.text,
            "# DNS servers of the DHCP lease, written by pocobelle dhcp-event\n192.168.1.1\n8.8.8.8\n"
        );
        assert!(o.skipped.is_empty());
        let o = offered_dns(
            own,
            "192.168.1.20 127.0.0.1 0.0.0.0 x 224.0.0.1 255.255.255.255 ::1 ::ffff:127.0.0.1 \
             10.0.0.1 10.0.0.1 10.0.0.2 fd00::53 10.0.0.3 10.0.0.4",
        );
        assert_eq!(
            o.servers,
            ["10.0.0.1", "10.0.0.2", "fd00::53", "10.0.0.3"].map(|s| s.parse::<IpAddr>().unwrap())
        );
        let why: Vec<SkippedDns> = o.skipped.iter().map(|(_, w)| *w).collect();
        use SkippedDns::*;
        assert_eq!(
            why,
            [
                Own, Loopback, Loopback, Malformed, NotUnicast, NotUnicast, Loopback, Loopback,
                Duplicate, TooMany
            ]
        );
        assert_eq!(TooMany.to_string(), "more than 4 servers");
        assert_eq!(o.skipped[9].0, "10.0.0.4");
        // What the DNS service reads back: the same servers, port 53.
        let back = crate::dns::dhcp::parse(&o.text);
        assert!(back.errors.is_empty());
        assert_eq!(
            back.servers,
            o.servers
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, 53))
                .collect::<Vec<_>>()
        );
        // None offered: a file that lists none; the rest is bounded.
        let o = offered_dns(own, "");
        assert!(o.servers.is_empty());
        assert!(crate::dns::dhcp::parse(&o.text).servers.is_empty());
        let o = offered_dns(own, &"x ".repeat(MAX_OFFERED_DNS + 5));
        assert_eq!((o.skipped.len(), o.unexamined), (MAX_OFFERED_DNS, 5));
    }

    /// The real kernel, in a network namespace of this thread's own:
    /// the messages must be accepted and the address dump must show them.
    #[test]
    fn real_kernel_in_a_private_network_namespace() {
        let h = std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread (a new net namespace).
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!(
                    "SKIPPED: cannot create a network namespace ({}); needs root",
                    std::io::Error::last_os_error()
                );
                return;
            }
            let mut sys = crate::sys::RealSys;
            // /sys shows the mounting namespace's interfaces, so use lo
            // (index 1 in every new namespace).
            let mut nl = Netlink::new(&mut sys);
            nl.link_up(1).unwrap();
            nl.add_address(1, "10.9.8.7".parse().unwrap(), 24).unwrap();
            nl.add_address(1, "fd00:9::7".parse().unwrap(), 64).unwrap();
            nl.add_route(&default_route(
                "10.9.8.1".parse().unwrap(),
                1,
                Origin::Static,
            ))
            .unwrap();
            let r = Route {
                dst: "192.168.77.0".parse().unwrap(),
                dst_len: 24,
                gateway: Some("10.9.8.2".parse().unwrap()),
                oif: 1,
                origin: Origin::Static,
            };
            nl.add_route(&r).unwrap();
            // Replace is idempotent; an exclusive add of the same route
            // is refused with EEXIST, which shows the first one exists.
            nl.add_route(&r).unwrap();
            let e = nl.ack(|s| netlink::add_route_excl(s, &r)).unwrap_err();
            assert!(matches!(
                e,
                NetError::Kernel(NetlinkError::Refused(libc::EEXIST))
            ));
            let have = nl.addresses().unwrap();
            let v4 = have
                .iter()
                .find(|a| a.addr == "10.9.8.7".parse::<IpAddr>().unwrap())
                .expect("the IPv4 address is on lo");
            assert_eq!((v4.index, v4.prefix), (1, 24));
            assert!(
                have.iter()
                    .any(|a| a.addr == "fd00:9::7".parse::<IpAddr>().unwrap() && a.prefix == 64)
            );
            nl.del_address(1, "10.9.8.7".parse().unwrap(), 24).unwrap();
            let have = nl.addresses().unwrap();
            assert!(
                !have
                    .iter()
                    .any(|a| a.addr == "10.9.8.7".parse::<IpAddr>().unwrap())
            );
        });
        h.join().unwrap();
    }
}
