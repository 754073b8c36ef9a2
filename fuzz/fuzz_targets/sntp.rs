//! SNTP (init::sntp): a server's reply to our request, the configured
//! server names and the state file line. A reply that is used matches
//! our request, comes from stratum 1..=MAX_STRATUM, and its round trip
//! is non-negative and within MAX_DELAY; a server parsed has a port
//! other than 0 and a name within bounds; a state line reads back.
//!
//! Input: 8 bytes of our send time, 8 of our receive time, then the
//! reply packet (also read as text for the name and state parsers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::init::sntp::{self, NtpTime, SyncState};
use pocobelle_fuzz::Input;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let t1 = NtpTime(inp.u64());
    let t4 = NtpTime(inp.u64());
    let p = inp.rest();
    // Half the inputs answer our own request (the originate field is
    // ours), so that the later checks are reached.
    let mut pkt = p.to_vec();
    if pkt.len() >= sntp::PACKET_LEN && pkt[0] & 0x80 != 0 {
        pkt[24..32].copy_from_slice(&t1.0.to_be_bytes());
    }
    if let Ok(s) = sntp::parse_reply(&pkt, t1, t4) {
        assert!(s.stratum >= 1 && s.stratum <= sntp::MAX_STRATUM);
        assert!(s.delay_ns >= 0 && s.delay_ns as u128 <= sntp::MAX_DELAY.as_nanos());
        assert_eq!(pkt[24..32], t1.0.to_be_bytes());
        let _ = sntp::correction(s.offset_ns, Duration::from_secs(1));
    }
    let req = sntp::request(t1);
    assert_eq!(req.len(), sntp::PACKET_LEN);
    assert!(
        sntp::parse_reply(&req, t1, t4).is_err(),
        "our request is not a reply"
    );
    let Ok(text) = std::str::from_utf8(p) else {
        return;
    };
    if let Some((host, port)) = sntp::parse_server(text) {
        assert_ne!(port, 0, "server {text:?} on port 0");
        assert!(!host.is_empty() && host.len() <= sntp::MAX_SERVER_NAME + 8);
    }
    if let Some(st) = SyncState::parse(text) {
        assert_eq!(SyncState::parse(&st.to_line()), Some(st));
    }
});
