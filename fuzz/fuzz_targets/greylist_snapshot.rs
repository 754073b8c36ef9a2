//! The greylist snapshot decoder (mail::policy::greylist::Greylist::decode)
//! over a whole file. The first byte picks the mode: even, the rest is a
//! body (secret and records) and the magic and checksum are made right
//! for it, so that the record checks are reached; odd, the rest is the
//! file as is (either version). Whatever loads stays within the table's
//! bounds, answers a check, and survives a second snapshot unchanged;
//! nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::config::policy::GreylistConfig;
use pocobelle::dns::snapshot::fnv1a64;
use pocobelle::mail::policy::greylist::{
    Greylist, MAGIC, MAX_ALLOWED, MAX_KNOWN_DOMAINS, MAX_SNAPSHOT_BYTES, MAX_TRIPLETS,
};

const NOW: u64 = 1_800_000_000;

fn config() -> GreylistConfig {
    GreylistConfig {
        enabled: true,
        min_delay_s: 300,
        retry_window_s: 86_400,
        auto_allow_s: 30 * 86_400,
        save_interval_s: 900,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(rest);
        let sum = fnv1a64(&f);
        f.extend_from_slice(&sum.to_be_bytes());
        f
    } else {
        rest.to_vec()
    };
    let Ok(mut g) = Greylist::decode(&config(), &file, NOW) else {
        return;
    };
    assert!(file.len() <= MAX_SNAPSHOT_BYTES);
    let (t, a) = g.len();
    let d = g.known_domains();
    assert!(t <= MAX_TRIPLETS && a <= MAX_ALLOWED && d <= MAX_KNOWN_DOMAINS);
    let again = g.encode(NOW);
    assert!(again.starts_with(MAGIC) && again.len() <= MAX_SNAPSHOT_BYTES);
    let back = Greylist::decode(&config(), &again, NOW).expect("a snapshot it wrote loads");
    assert_eq!((back.len(), back.known_domains()), ((t, a), d));
    for spf_pass in [false, true] {
        let _ = g.check(
            NOW,
            "192.0.2.1".parse().unwrap(),
            "a@b.test",
            "u@home.arpa",
            spf_pass,
        );
    }
    assert!(g.len().0 <= MAX_TRIPLETS && g.known_domains() <= MAX_KNOWN_DOMAINS);
});
