//! Network values shared by several sections: an address prefix in CIDR
//! notation (`10.0.0.0/8`, `fe80::/10`, or a bare address meaning a
//! single host), as used by `dns.allow` and `mail.relay_networks`.
//! Parsing and matching only; no I/O.

use std::net::IpAddr;

/// An address prefix: the network address and its length in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// Parses `ADDR/LEN`, or a bare `ADDR` as a host prefix (/32, /128).
    pub fn parse(s: &str) -> Option<Prefix> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.trim().parse::<u8>().ok().filter(|&l| l <= max)?,
            None => max,
        };
        Some(Prefix { addr, len })
    }

    /// True when `ip` lies in the prefix (IPv4-mapped IPv6 addresses are
    /// compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.len as u32).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.len as u32).unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Prefix::parse("192.168.0.0/16").unwrap();
        assert!(p.contains("192.168.44.1".parse().unwrap()));
        assert!(!p.contains("192.169.0.1".parse().unwrap()));
        assert!(p.contains("::ffff:192.168.1.1".parse().unwrap()));
        let v6 = Prefix::parse("fc00::/7").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8::1".parse().unwrap()));
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let host = Prefix::parse("10.1.2.3").unwrap();
        assert_eq!(host.len, 32);
        assert!(!host.contains("10.1.2.4".parse().unwrap()));
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("::/129").is_none());
        assert!(Prefix::parse("nonsense").is_none());
    }
}
