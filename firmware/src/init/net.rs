//! The board's network interface with a static IPv4 address and default
//! gateway from `[init.network]`, set with the classic interface ioctls
//! (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS, SIOCADDRT). The address
//! parser is bounded and fuzzed. It waits for the interface to appear at
//! most [`IFACE_WAIT`]. Not handled yet: IPv6 static addresses, DHCP.
//! It never touches an interface the configuration does not name.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long init waits for a configured interface to appear (its driver
/// may probe after the module loaded).
pub const IFACE_WAIT: Duration = Duration::from_secs(5);
/// Linux IFNAMSIZ minus the NUL.
pub const MAX_IFNAME: usize = 15;

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len` (len 0 to 32).
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        if s.len() > 18 {
            return None;
        }
        let (a, p) = s.split_once('/')?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = p.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        Some(Ipv4Cidr {
            addr: a.parse().ok()?,
            prefix,
        })
    }

    pub fn netmask(&self) -> Ipv4Addr {
        let bits = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        };
        Ipv4Addr::from(bits)
    }
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; the
    // value is fully initialised (zeroed, then family, port 0, address).
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin)
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: a zeroed ifreq is valid; the name is at most MAX_IFNAME bytes.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(MAX_IFNAME)) {
        *d = s as libc::c_char;
    }
    ifr
}

fn ioctl<T>(fd: libc::c_int, req: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is the structure the request expects.
    let r = unsafe { libc::ioctl(fd, req as _, arg as *mut T) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Configures `iface` with `cidr` and, when given, a default route via
/// `gateway`. Logs each step; returns whether the address is set.
pub fn configure(iface: &str, cidr: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> bool {
    // SAFETY: a plain socket for the ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        log::error!("net: socket: {}", std::io::Error::last_os_error());
        return false;
    }
    let ok = configure_fd(fd, iface, cidr, gateway);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    ok
}

fn configure_fd(fd: libc::c_int, iface: &str, cidr: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> bool {
    let deadline = Instant::now() + IFACE_WAIT;
    let mut flags = ifreq(iface);
    while let Err(e) = ioctl(fd, libc::SIOCGIFFLAGS as _, &mut flags) {
        if Instant::now() >= deadline {
            log::error!(
                "net: interface {iface} not found within {} s: {e}",
                IFACE_WAIT.as_secs()
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut r = ifreq(iface);
    r.ifr_ifru.ifru_addr = sockaddr(cidr.addr);
    if let Err(e) = ioctl(fd, libc::SIOCSIFADDR as _, &mut r) {
        log::error!("net: {iface}: cannot set {}: {e}", cidr.addr);
        return false;
    }
    let mut r = ifreq(iface);
    r.ifr_ifru.ifru_netmask = sockaddr(cidr.netmask());
    if let Err(e) = ioctl(fd, libc::SIOCSIFNETMASK as _, &mut r) {
        log::error!("net: {iface}: cannot set netmask {}: {e}", cidr.netmask());
    }
    // SAFETY: reading the flags union member SIOCGIFFLAGS filled in.
    unsafe { flags.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    if let Err(e) = ioctl(fd, libc::SIOCSIFFLAGS as _, &mut flags) {
        log::error!("net: {iface}: cannot bring it up: {e}");
        return false;
    }
    log::info!("net: {iface} up with {}/{}", cidr.addr, cidr.prefix);
    if let Some(gw) = gateway {
        // SAFETY: a zeroed rtentry is valid; the fields set are plain data.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as _;
        match ioctl(fd, libc::SIOCADDRT as _, &mut rt) {
            Ok(()) => log::info!("net: default route via {gw}"),
            Err(e) => log::error!("net: default route via {gw}: {e}"),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let c = Ipv4Cidr::parse("192.168.1.20/24").unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            Ipv4Cidr::parse("10.0.0.1/0").unwrap().netmask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            Ipv4Cidr::parse("10.0.0.1/32").unwrap().netmask(),
            Ipv4Addr::BROADCAST
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0/24",
            "10.0.0.1/",
            "10.0.0.1/+4",
            "x/24",
            "",
        ] {
            assert_eq!(Ipv4Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidr_fuzz_never_panics() {
        let mut x: u64 = 0xabcdef12345;
        for _ in 0..5000 {
            let n = (x % 22) as usize;
            let mut s = String::new();
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(b"0123456789./-"[(x % 13) as usize] as char);
            }
            if let Some(c) = Ipv4Cidr::parse(&s) {
                assert!(c.prefix <= 32);
            }
        }
    }
}
