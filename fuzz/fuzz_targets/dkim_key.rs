//! A DKIM key record from DNS (mail::policy::dkim::KeyRecord): the
//! tag-list, the version, key type, service and flags, the base64 key
//! and the DER of an RSA SubjectPublicKeyInfo.
//!
//! Checked: a parsed Ed25519 key has 32 octets; a parsed RSA key is a
//! DER SEQUENCE that ring's verifier can be given without a panic; a
//! revoked key (empty p=) is never parsed as a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::policy::dkim::{KeyError, KeyKind, KeyRecord, tags};
use ring::signature::{RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, UnparsedPublicKey};

fuzz_target!(|data: &[u8]| {
    match KeyRecord::parse(data) {
        Ok(k) => {
            match k.kind {
                KeyKind::Ed25519 => assert_eq!(k.public.len(), 32),
                KeyKind::Rsa => {
                    assert_eq!(k.public[0], 0x30);
                    let key = UnparsedPublicKey::new(
                        &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                        &k.public,
                    );
                    let _ = key.verify(b"data", &[0u8; 128]);
                }
            }
            let t = tags::parse(data).unwrap();
            assert!(!tags::squeeze(tags::get(&t, "p").unwrap()).is_empty());
        }
        Err(KeyError::Revoked) => {
            let t = tags::parse(data).unwrap();
            assert!(tags::squeeze(tags::get(&t, "p").unwrap()).is_empty());
        }
        Err(_) => {}
    }
});
