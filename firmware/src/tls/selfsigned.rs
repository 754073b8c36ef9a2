//! A self-signed X.509 v3 certificate for a name or two: the mail
//! service's STARTTLS certificate when none is configured, and the
//! self-test's. It owns the DER encoding of that one certificate shape
//! (RFC 5280): ECDSA P-256 with SHA-256, issuer = subject = one CN, a
//! validity passed in by the caller, a subjectAltName with the names, and
//! nothing else. It replaces rcgen (with yasna, time and pem), about
//! 45 KiB of text on ARMv5 for this one shape.
//!
//! It does no I/O: the caller passes the time window and the random
//! source, and writes the PEM where it wants. It never parses
//! certificates (rustls and webpki do that).

use std::net::IpAddr;

use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

/// At most this many names in one certificate.
pub const MAX_NAMES: usize = 16;
/// A DNS name longer than this is refused (RFC 1035's 253 octets of text).
pub const MAX_NAME_LEN: usize = 253;
/// RFC 5280 4.1.2.5's "no well-defined expiration date":
/// 9999-12-31T23:59:59Z, in Unix seconds.
pub const NO_EXPIRY: u64 = 253_402_300_799;
/// The start of validity used when the clock cannot be trusted (a board
/// before its first SNTP answer): 1975-01-01T00:00:00Z, as rcgen's
/// default was.
pub const LONG_AGO: u64 = 157_766_400;
/// UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
const GENERALIZED_FROM: u64 = 2_524_608_000; // 2050-01-01T00:00:00Z

// DER tags.
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const EXPLICIT_0: u8 = 0xa0;
const EXPLICIT_3: u8 = 0xa3;
const DNS_NAME: u8 = 0x82; // GeneralName [2] IMPLICIT IA5String
const IP_ADDRESS: u8 = 0x87; // GeneralName [7] IMPLICIT OCTET STRING

// Object identifiers, content octets.
/// ecdsa-with-SHA256, 1.2.840.10045.4.3.2.
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (secp256r1), 1.2.840.10045.3.1.7.
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Length of the random serial number, in octets (RFC 5280: at most 20).
const SERIAL_LEN: usize = 16;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// No name was given, or more than [`MAX_NAMES`].
    #[error("a certificate needs 1 to {MAX_NAMES} names, not {0}")]
    NameCount(usize),
    /// A name is neither an IP address nor an ASCII DNS name of at most
    /// [`MAX_NAME_LEN`] octets.
    #[error("{0:?} cannot be a certificate name")]
    BadName(String),
    /// The validity window is empty or outside what X.509 can encode.
    #[error("validity {0}..{1} (Unix seconds) is empty or past 9999")]
    BadValidity(u64, u64),
    /// The random source or the key generation failed.
    #[error("key generation or signing failed")]
    Crypto,
}

/// A certificate and its private key.
pub struct SelfSigned {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
}

impl SelfSigned {
    /// The certificate as PEM (`CERTIFICATE`).
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// The private key as PEM (`PRIVATE KEY`, PKCS#8).
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_pkcs8)
    }
}

/// Makes a new P-256 key and a certificate for `names` (the first is
/// also the CN), valid from `not_before` to `not_after` (Unix seconds,
/// inclusive).
pub fn generate(
    names: &[&str],
    not_before: u64,
    not_after: u64,
    rng: &dyn SecureRandom,
) -> Result<SelfSigned, CertError> {
    if names.is_empty() || names.len() > MAX_NAMES {
        return Err(CertError::NameCount(names.len()));
    }
    if not_before > not_after || not_after > NO_EXPIRY {
        return Err(CertError::BadValidity(not_before, not_after));
    }
    let mut alt_names = Vec::new();
    for name in names {
        alt_names.extend(general_name(name)?);
    }

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
        .map_err(|_| CertError::Crypto)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), rng)
        .map_err(|_| CertError::Crypto)?;

    let mut serial = [0u8; SERIAL_LEN];
    rng.fill(&mut serial).map_err(|_| CertError::Crypto)?;
    // Positive, and minimal in DER: the top bit clear, the first octet
    // not zero.
    serial[0] = (serial[0] & 0x7f) | 0x40;

    let algorithm = tlv(SEQUENCE, &tlv(OID, ECDSA_WITH_SHA256));
    let name = tlv(
        SEQUENCE,
        &tlv(
            SET,
            &tlv(
                SEQUENCE,
                &[tlv(OID, COMMON_NAME), tlv(UTF8_STRING, names[0].as_bytes())].concat(),
            ),
        ),
    );
    let validity = tlv(SEQUENCE, &[time(not_before), time(not_after)].concat());
    let spki = tlv(
        SEQUENCE,
        &[
            tlv(
                SEQUENCE,
                &[tlv(OID, EC_PUBLIC_KEY), tlv(OID, PRIME256V1)].concat(),
            ),
            bit_string(key.public_key().as_ref()),
        ]
        .concat(),
    );
    let san = tlv(
        SEQUENCE,
        &[
            tlv(OID, SUBJECT_ALT_NAME),
            tlv(OCTET_STRING, &tlv(SEQUENCE, &alt_names)),
        ]
        .concat(),
    );
    let tbs = tlv(
        SEQUENCE,
        &[
            tlv(EXPLICIT_0, &tlv(INTEGER, &[2])), // v3
            tlv(INTEGER, &serial),
            algorithm.clone(),
            name.clone(),
            validity,
            name,
            spki,
            tlv(EXPLICIT_3, &tlv(SEQUENCE, &san)),
        ]
        .concat(),
    );
    let signature = key.sign(rng, &tbs).map_err(|_| CertError::Crypto)?;
    let cert_der = tlv(
        SEQUENCE,
        &[tbs, algorithm, bit_string(signature.as_ref())].concat(),
    );
    Ok(SelfSigned {
        cert_der,
        key_pkcs8: pkcs8.as_ref().to_vec(),
    })
}

/// One GeneralName: an iPAddress for an address, else a dNSName.
fn general_name(name: &str) -> Result<Vec<u8>, CertError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(a) => tlv(IP_ADDRESS, &a.octets()),
            IpAddr::V6(a) => tlv(IP_ADDRESS, &a.octets()),
        });
    }
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b));
    if !ok {
        return Err(CertError::BadName(name.to_string()));
    }
    Ok(tlv(DNS_NAME, name.as_bytes()))
}

/// A DER tag-length-value (definite length, minimal).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A BIT STRING of whole octets (no unused bits).
fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(BIT_STRING, &[&[0u8][..], bytes].concat())
}

/// A Time: UTCTime (YYMMDDHHMMSSZ) before 2050, GeneralizedTime
/// (YYYYMMDDHHMMSSZ) from 2050 on (RFC 5280 4.1.2.5). `t` is at most
/// [`NO_EXPIRY`].
fn time(t: u64) -> Vec<u8> {
    let (y, mo, d) = civil_from_days(t / 86_400);
    let s = t % 86_400;
    let rest = format!(
        "{mo:02}{d:02}{:02}{:02}{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    );
    if t >= GENERALIZED_FROM {
        tlv(GENERALIZED_TIME, format!("{y:04}{rest}").as_bytes())
    } else {
        tlv(UTC_TIME, format!("{:02}{rest}", y % 100).as_bytes())
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// PEM (RFC 7468): base64 in lines of 64 characters.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::smtp::auth::base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::io::{Read, Write};
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;

    fn make(names: &[&str]) -> SelfSigned {
        generate(names, LONG_AGO, NO_EXPIRY, &SystemRandom::new()).unwrap()
    }

    /// Runs a rustls client trusting `cert` against a rustls server using
    /// it, in memory, to the end of the handshake and one record each way.
    fn handshake(ck: &SelfSigned, server_name: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from(ck.cert_der.clone());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pkcs8.clone()));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(Arc::new(server))?;
        c.writer().write_all(b"ping").unwrap();
        s.writer().write_all(b"pong").unwrap();
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets()?;
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets()?;
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        let mut got = [0u8; 4];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        c.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        Ok(())
    }

    #[test]
    fn rustls_trusts_it_for_its_names_only() {
        let ck = make(&["cert.test", "mail.cert.test", "192.0.2.1"]);
        handshake(&ck, "cert.test").unwrap();
        handshake(&ck, "mail.cert.test").unwrap();
        handshake(&ck, "192.0.2.1").unwrap();
        let e = handshake(&ck, "other.test").unwrap_err().to_string();
        assert!(e.contains("not valid for name"), "{e}");
    }

    #[test]
    fn rustls_refuses_it_outside_its_validity() {
        let rng = SystemRandom::new();
        let old = generate(&["cert.test"], LONG_AGO, LONG_AGO + 86_400, &rng).unwrap();
        let e = handshake(&old, "cert.test").unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        let late = generate(&["cert.test"], NO_EXPIRY - 86_400, NO_EXPIRY, &rng).unwrap();
        let e = handshake(&late, "cert.test").unwrap_err().to_string();
        assert!(e.contains("not valid yet"), "{e}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let rng = SystemRandom::new();
        assert!(matches!(
            generate(&[], 0, 1, &rng),
            Err(CertError::NameCount(0))
        ));
        assert!(matches!(
            generate(&["a"; MAX_NAMES + 1], 0, 1, &rng),
            Err(CertError::NameCount(_))
        ));
        for bad in ["", "bad name", "ünï.test", &"a".repeat(MAX_NAME_LEN + 1)] {
            assert!(
                matches!(generate(&[bad], 0, 1, &rng), Err(CertError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            generate(&["a.test"], 2, 1, &rng),
            Err(CertError::BadValidity(2, 1))
        ));
        assert!(matches!(
            generate(&["a.test"], 0, NO_EXPIRY + 1, &rng),
            Err(CertError::BadValidity(..))
        ));
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert_eq!(time(0), tlv(UTC_TIME, b"700101000000Z"));
        assert_eq!(time(LONG_AGO), tlv(UTC_TIME, b"750101000000Z"));
        assert_eq!(time(951_782_400), tlv(UTC_TIME, b"000229000000Z"));
        assert_eq!(time(GENERALIZED_FROM - 1), tlv(UTC_TIME, b"491231235959Z"));
        assert_eq!(
            time(GENERALIZED_FROM),
            tlv(GENERALIZED_TIME, b"20500101000000Z")
        );
        assert_eq!(time(NO_EXPIRY), tlv(GENERALIZED_TIME, b"99991231235959Z"));
    }

    #[test]
    fn lengths_are_minimal() {
        assert_eq!(tlv(OCTET_STRING, &[0; 0x7f])[..2], [OCTET_STRING, 0x7f]);
        assert_eq!(
            tlv(OCTET_STRING, &[0; 0x80])[..3],
            [OCTET_STRING, 0x81, 0x80]
        );
        assert_eq!(
            tlv(OCTET_STRING, &[0; 0x100])[..4],
            [OCTET_STRING, 0x82, 0x01, 0x00]
        );
    }

    fn openssl(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs the openssl command (Debian package openssl): {e}")
            });
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl {args:?}: {text}");
        text
    }

    /// OpenSSL, which no one here wrote, reads the certificate and the
    /// key, verifies the certificate's signature against itself, and
    /// finds the key's public half in it.
    #[test]
    fn openssl_accepts_it() {
        let ck = make(&["cert.test", "192.0.2.1"]);
        let dir = std::env::temp_dir().join(format!("pocobelle-selfsigned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert_pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.key_pem()).unwrap();
        let text = openssl(&dir, &["x509", "-noout", "-text", "-in", "cert.pem"]);
        for want in [
            "Version: 3 (0x2)",
            "Signature Algorithm: ecdsa-with-SHA256",
            "Issuer: CN = cert.test",
            "Subject: CN = cert.test",
            "Not Before: Jan  1 00:00:00 1975 GMT",
            "Not After : Dec 31 23:59:59 9999 GMT",
            "Public Key Algorithm: id-ecPublicKey",
            "NIST CURVE: P-256",
            "X509v3 Subject Alternative Name",
            "DNS:cert.test, IP Address:192.0.2.1",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
        let verify = openssl(
            &dir,
            &["verify", "-x509_strict", "-CAfile", "cert.pem", "cert.pem"],
        );
        assert!(verify.contains("cert.pem: OK"), "{verify}");
        let from_cert = openssl(&dir, &["x509", "-noout", "-pubkey", "-in", "cert.pem"]);
        let from_key = openssl(&dir, &["pkey", "-pubout", "-in", "key.pem"]);
        assert_eq!(from_cert, from_key);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
