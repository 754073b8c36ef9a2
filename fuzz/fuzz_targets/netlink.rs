//! Netlink replies (init::netlink) from the kernel: acknowledgements and
//! address dumps, split into messages by their own lengths. At most
//! MAX_ADDRS addresses; an acknowledgement or a finished dump found for
//! a sequence number means the reply is complete for it; what
//! `is_complete` says matches what the parsers found.
//!
//! Input: 4 bytes of the sequence number, then the reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::init::netlink::{self, NetlinkError};
use pocobelle_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let seq = inp.u32();
    let reply = inp.rest();
    let complete = netlink::is_complete(reply, seq);
    match netlink::parse_ack(reply, seq) {
        Ok(()) | Err(NetlinkError::Refused(_)) => assert!(complete),
        Err(_) => {}
    }
    match netlink::parse_addresses(reply, seq) {
        Ok(addrs) => {
            assert!(complete, "a finished dump that is not complete");
            assert!(addrs.len() <= netlink::MAX_ADDRS);
            for a in &addrs {
                let _ = a.usable();
            }
        }
        Err(NetlinkError::Refused(_)) => assert!(complete),
        Err(_) => {}
    }
});
