//! The DHCP-offered DNS server file (dns::dhcp::parse, as written by
//! `dhcp-event` and read by the DNS service). At most MAX_DHCP_DNS
//! servers, never twice the same, never port 0 or a non-unicast
//! address; at most MAX_REPORTED_ERRORS errors kept, the rest counted,
//! line numbers within the file; and what `render` writes for the
//! servers found parses back to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::dns::dhcp;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    if data.len() > dhcp::MAX_FILE_BYTES {
        return; // read() refuses longer files before parsing
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = dhcp::parse(text);
    assert!(p.servers.len() <= dhcp::MAX_DHCP_DNS);
    assert!(p.errors.len() <= dhcp::MAX_REPORTED_ERRORS);
    assert!(p.unreported == 0 || p.errors.len() == dhcp::MAX_REPORTED_ERRORS);
    let lines = text.lines().count();
    assert!(p.errors.iter().all(|(n, _)| *n >= 1 && *n <= lines));
    assert!(p.errors.windows(2).all(|w| w[0].0 < w[1].0));
    for (i, a) in p.servers.iter().enumerate() {
        assert_ne!(a.port(), 0);
        assert!(!p.servers[..i].contains(a), "a server listed twice");
        let ip = a.ip().to_canonical();
        assert!(!ip.is_unspecified() && !ip.is_multicast());
        assert_eq!(dhcp::parse_line(&a.to_string()), Ok(*a));
    }
    // What dhcp-event would write for these servers' addresses reads back
    // as them (on port 53).
    let ips: Vec<IpAddr> = p.servers.iter().map(|a| a.ip()).collect();
    if ips.iter().enumerate().all(|(i, ip)| !ips[..i].contains(ip)) {
        let back = dhcp::parse(&dhcp::render(&ips));
        assert!(back.errors.is_empty(), "{:?}", back.errors);
        let back_ips: Vec<IpAddr> = back.servers.iter().map(|a| a.ip()).collect();
        assert_eq!(back_ips, ips);
        assert!(back.servers.iter().all(|a| a.port() == dhcp::DEFAULT_PORT));
    }
});
