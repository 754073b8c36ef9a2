//! A DMARC record from DNS and the From field of a message
//! (mail::policy::dmarc), and the Authentication-Results predicate
//! (mail::policy::authres) on the same bytes.
//!
//! Checked: a parsed record's pct is at most 100 and it starts with
//! v=DMARC1; a From domain found is a DNS name in lower case; the tree
//! walk asks for at most MAX_WALK names, each under `_dmarc.`; with only
//! this record in DNS (at every name), the verdict without SPF or DKIM
//! is never a pass, and a reply (550) is made only for a fail with
//! p=reject.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::policy::authres::claims_authserv_id;
use pocobelle::mail::policy::dkim::{TxtAnswer, record::is_name};
use pocobelle::mail::policy::dmarc::{
    self, Disposition, DmarcRecord, DmarcResult, MAX_WALK, query_names,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = DmarcRecord::parse(data) {
        assert!(r.pct <= 100);
        assert!(data.trim_ascii_start().starts_with(b"v"));
    }
    let _ = claims_authserv_id(data, "mx.home.example");
    if let Some(d) = dmarc::from_domain(data) {
        assert!(is_name(&d) && d == d.to_ascii_lowercase());
        let names = query_names(&d);
        assert!(!names.is_empty() && names.len() <= MAX_WALK);
        assert!(names.iter().all(|n| n.starts_with("_dmarc.")));
        let dns: HashMap<String, TxtAnswer> = names
            .iter()
            .map(|n| (n.clone(), TxtAnswer::Records(vec![data.to_vec()])))
            .collect();
        let v = dmarc::evaluate(&d, None, &[], &dns);
        assert_ne!(v.result, DmarcResult::Pass);
        if v.reply(true, 0).is_some() {
            assert_eq!(v.result, DmarcResult::Fail);
            assert_eq!(v.policy, Some(Disposition::Reject));
        }
    }
});
