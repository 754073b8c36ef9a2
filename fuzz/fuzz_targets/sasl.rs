//! SASL for SMTP AUTH (smtp::auth): strict base64 and the PLAIN and
//! LOGIN messages inside it. Encoding then decoding gives the bytes
//! back; what decodes re-encodes to text that decodes the same;
//! credentials are never empty, never over MAX_USER / MAX_PASSWORD,
//! never hold NUL, and a PLAIN authzid other than the user is refused.
//! The same text as a password file's SHA-512 crypt hash
//! (`mail::shacrypt::parse`): what parses has rounds within bounds, a salt
//! and an 86-character hash in the crypt alphabet, and prints back to the
//! text it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::shacrypt;
use pocobelle::smtp::auth::{self, SaslError};

fuzz_target!(|data: &[u8]| {
    let enc = auth::base64_encode(data);
    assert_eq!(enc.len(), data.len().div_ceil(3) * 4);
    assert_eq!(auth::base64_decode(&enc).as_deref(), Ok(data));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = shacrypt::parse(text, 20_000) {
        assert!((shacrypt::MIN_ROUNDS..=20_000).contains(&h.rounds));
        assert!(!h.salt.is_empty() && h.salt.len() <= shacrypt::MAX_SALT);
        assert_eq!(h.hash.len(), 86);
        let rounds = if h.explicit_rounds {
            format!("rounds={}$", h.rounds)
        } else {
            String::new()
        };
        let again = format!(
            "$6${rounds}{}${}",
            String::from_utf8_lossy(h.salt),
            String::from_utf8_lossy(h.hash)
        );
        assert_eq!(again, text);
    }
    if let Ok(raw) = auth::base64_decode(text) {
        assert!(raw.len() <= text.len() / 4 * 3);
        let again = auth::base64_encode(&raw);
        assert_eq!(auth::base64_decode(&again), Ok(raw.clone()));
        match auth::plain(text) {
            Ok(c) => {
                assert!(!c.user.is_empty() && c.user.len() <= auth::MAX_USER);
                assert!(!c.password.is_empty() && c.password.len() <= auth::MAX_PASSWORD);
                assert!(!c.password.contains(&0) && !c.user.contains('\0'));
                assert!(
                    !format!("{c:?}").contains("password: ["),
                    "Debug shows the password"
                );
                // The same message with our own encoding decodes the same.
                let mut m = Vec::new();
                m.push(0);
                m.extend_from_slice(c.user.as_bytes());
                m.push(0);
                m.extend_from_slice(&c.password);
                assert_eq!(auth::plain(&auth::base64_encode(&m)), Ok(c));
            }
            Err(SaslError::Base64) => panic!("PLAIN refused base64 that decodes"),
            Err(_) => {}
        }
        if let Ok(u) = auth::login_user(text) {
            assert_eq!(u.as_bytes(), &raw[..]);
        }
        if let Ok(p) = auth::login_password(text) {
            assert_eq!(p, raw);
        }
    } else {
        assert_eq!(auth::plain(text), Err(SaslError::Base64));
    }
});
