//! DKIM signing of outgoing mail (RFC 6376 5): relaxed/relaxed, a fixed
//! list of header fields to sign, rsa-sha256 (2048 to 4096-bit keys, what
//! ring signs with) or ed25519-sha256. A pure `Signer`: the caller passes
//! the header section, then the body in chunks, and receives the
//! `DKIM-Signature:` field to put on top. Keys come from PKCS#8 PEM text
//! (the caller reads the file); nothing here does I/O.

use ring::rand::SystemRandom;
use ring::signature::{self as sig, Ed25519KeyPair, RsaKeyPair};

use super::MAX_HEADER_SECTION;
use super::canon::{self, BodyHasher, Canon};
use super::record::{Algorithm, Signature, is_name};
use crate::smtp::auth::{base64_decode, base64_encode};

/// The header fields signed when present, each instance of them (RFC
/// 6376 5.4.1's list, less what relays change). `from` is signed once
/// more than it occurs, so a second From cannot be added.
pub const SIGNED_HEADERS: &[&str] = &[
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
];
/// A PEM key file larger than this is refused (a 4096-bit RSA key is
/// about 3.3 KiB).
pub const MAX_KEY_FILE: usize = 16 * 1024;
/// Lines of the produced field are folded at about this width.
const FOLD: usize = 76;

/// A private key that can sign.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rsa(_) => "SigningKey::Rsa(..)",
            SigningKey::Ed25519(_) => "SigningKey::Ed25519(..)",
        })
    }
}

/// Why a key or a signature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The text has no `PRIVATE KEY` PEM block, or its base64 is bad.
    #[error("not a PEM private key (PKCS#8 `BEGIN PRIVATE KEY`)")]
    Pem,
    /// The key is neither an RSA key of 2048 to 4096 bits nor Ed25519.
    #[error("not an RSA (2048 to 4096 bits) or Ed25519 PKCS#8 key")]
    Key,
    /// The key file is over [`MAX_KEY_FILE`].
    #[error("key file over {MAX_KEY_FILE} octets")]
    TooLarge,
    /// The domain or selector is not a DNS name.
    #[error("{0:?} is not a domain name")]
    Name(String),
    /// The header section has no From field (RFC 6376 5.4 requires it).
    #[error("no From header field")]
    NoFrom,
    /// The RSA operation failed.
    #[error("signing failed")]
    Crypto,
}

impl SigningKey {
    /// A key from PEM text: PKCS#8 (`PRIVATE KEY`, RSA or Ed25519) or
    /// PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(text: &str) -> Result<SigningKey, SignError> {
        if text.len() > MAX_KEY_FILE {
            return Err(SignError::TooLarge);
        }
        for label in ["PRIVATE KEY", "RSA PRIVATE KEY"] {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let Some(a) = text.find(&begin) else { continue };
            let rest = &text[a + begin.len()..];
            let b = rest.find(&end).ok_or(SignError::Pem)?;
            let b64: String = rest[..b].chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64_decode(&b64).map_err(|_| SignError::Pem)?;
            return if label == "RSA PRIVATE KEY" {
                RsaKeyPair::from_der(&der)
                    .map(SigningKey::Rsa)
                    .map_err(|_| SignError::Key)
            } else {
                SigningKey::from_pkcs8(&der)
            };
        }
        Err(SignError::Pem)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, SignError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(SigningKey::Rsa(k));
        }
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey::Ed25519)
            .map_err(|_| SignError::Key)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Rsa(_) => Algorithm::RsaSha256,
            SigningKey::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The key record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        use ring::signature::KeyPair;
        match self {
            SigningKey::Rsa(k) => {
                // SubjectPublicKeyInfo around the PKCS#1 key ring gives.
                let pkcs1 = k.public_key().as_ref();
                let mut bits = vec![0u8];
                bits.extend_from_slice(pkcs1);
                let alg: &[u8] = &[
                    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
                    0x05, 0x00,
                ];
                let mut body = alg.to_vec();
                body.extend(der(0x03, &bits));
                format!("v=DKIM1; k=rsa; p={}", base64_encode(&der(0x30, &body)))
            }
            SigningKey::Ed25519(k) => format!(
                "v=DKIM1; k=ed25519; p={}",
                base64_encode(k.public_key().as_ref())
            ),
        }
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// Signs mail of one domain with one key and selector.
#[derive(Debug)]
pub struct Signer {
    domain: String,
    selector: String,
    key: SigningKey,
}

/// One message being signed: the header section is held, the body is
/// hashed as it passes.
pub struct Signing<'a> {
    signer: &'a Signer,
    head: &'a [u8],
    body: BodyHasher,
}

impl Signer {
    pub fn new(domain: &str, selector: &str, key: SigningKey) -> Result<Signer, SignError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let selector = selector.to_ascii_lowercase();
        for n in [&domain, &selector] {
            if !is_name(n) {
                return Err(SignError::Name(n.clone()));
            }
        }
        Ok(Signer {
            domain,
            selector,
            key,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Starts a message; `head` is its header section (without the empty
    /// line that ends it).
    pub fn begin<'a>(&'a self, head: &'a [u8]) -> Signing<'a> {
        Signing {
            signer: self,
            head,
            body: BodyHasher::new(Canon::Relaxed, None),
        }
    }
}

impl Signing<'_> {
    /// The next bytes of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.body.update(chunk);
    }

    /// The `DKIM-Signature: ...\r\n` field to put on top of the header
    /// section; `now` (Unix seconds) is its t=.
    pub fn finish(self, now: u64) -> Result<String, SignError> {
        self.signer.field(self.head, self.body, now)
    }
}

impl Signer {
    /// The field for header section `head` and the hashed body.
    fn field(&self, head: &[u8], body: BodyHasher, now: u64) -> Result<String, SignError> {
        let s = self;
        let fields = canon::fields(head);
        let mut names: Vec<&str> = Vec::new();
        for name in SIGNED_HEADERS {
            let n = fields.iter().filter(|f| f.is(name)).count();
            names.extend(std::iter::repeat_n(*name, n));
        }
        if !names.contains(&"from") {
            return Err(SignError::NoFrom);
        }
        names.push("from");
        let (hash, _) = body.finish();
        let mut text = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed;\r\n\td={}; s={}; t={};\r\n\th=",
            s.key.algorithm().name(),
            s.domain,
            s.selector,
            now
        );
        let mut line = 3;
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                text.push(':');
                if line > FOLD {
                    text.push_str("\r\n\t");
                    line = 0;
                }
            }
            text.push_str(n);
            line += n.len();
        }
        text.push_str(";\r\n\tbh=");
        text.push_str(&base64_encode(hash.as_ref()));
        text.push_str(";\r\n\tb=");
        // The data to sign: the verifier's own view of this field.
        let field_value = &text.as_bytes()[b"DKIM-Signature:".len()..];
        let parsed =
            Signature::parse(&[field_value, b"AA=="].concat()).map_err(|_| SignError::Crypto)?;
        let own = canon::Field {
            name: b"DKIM-Signature",
            raw: &[text.as_bytes(), b"AA==\r\n"].concat(),
        };
        let data = super::signed_data(&parsed, &fields, &own);
        let signature = match &s.key {
            SigningKey::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(
                    &sig::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    &data,
                    &mut out,
                )
                .map_err(|_| SignError::Crypto)?;
                out
            }
            SigningKey::Ed25519(k) => {
                let h = ring::digest::digest(&ring::digest::SHA256, &data);
                k.sign(h.as_ref()).as_ref().to_vec()
            }
        };
        let b = base64_encode(&signature);
        for (i, part) in b.as_bytes().chunks(FOLD - 4).enumerate() {
            if i > 0 {
                text.push_str("\r\n\t ");
            }
            text.push_str(std::str::from_utf8(part).map_err(|_| SignError::Crypto)?);
        }
        text.push_str("\r\n");
        Ok(text)
    }
}

/// Signs a whole message fed in chunks:
/// the header section is held (at most [`MAX_HEADER_SECTION`]), the
/// signer is chosen by the From domain, the body is hashed as it passes.
/// The listener signs submitted mail with it as it is spooled; the field
/// then goes before the content (a spool HEAD record).
pub struct MessageSigning<'a> {
    signers: &'a [Signer],
    head: Vec<u8>,
    /// Once the header section is complete: the signer and its hasher,
    /// or `None` when no signer applies.
    body: Option<Option<(&'a Signer, BodyHasher)>>,
}

impl<'a> MessageSigning<'a> {
    pub fn new(signers: &'a [Signer]) -> MessageSigning<'a> {
        MessageSigning {
            signers,
            head: Vec::new(),
            body: None,
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.body {
            Some(Some((_, h))) => h.update(chunk),
            Some(None) => {}
            None => {
                let from = self.head.len().saturating_sub(2);
                self.head.extend_from_slice(chunk);
                if let Some((body_at, head_len)) = super::header_end(&self.head, from) {
                    let rest = self.head.split_off(body_at);
                    self.head.truncate(head_len);
                    self.start();
                    self.update(&rest);
                } else if self.head.len() > MAX_HEADER_SECTION {
                    self.body = Some(None);
                }
            }
        }
    }

    fn start(&mut self) {
        let signer = super::super::dmarc::from_domain(&self.head)
            .and_then(|d| self.signers.iter().find(|s| s.domain == d));
        self.body = Some(signer.map(|s| (s, BodyHasher::new(Canon::Relaxed, None))));
    }

    /// The DKIM-Signature field, or `None` when the From domain has no
    /// signer (or the header section was too large to sign).
    pub fn finish(mut self, now: u64) -> Result<Option<String>, SignError> {
        if self.body.is_none() && self.head.len() <= MAX_HEADER_SECTION {
            self.start();
        }
        match self.body {
            Some(Some((s, h))) => s.field(&self.head, h, now).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::super::{DkimResult, TxtAnswer, tests::verify_chunked};
    use super::*;

    /// A 2048-bit RSA key made with `openssl genpkey` for these tests.
    pub const TEST_RSA_PEM: &str = include_str!("testdata/rsa2048.pem");

    fn ed25519() -> SigningKey {
        let rng = SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        SigningKey::from_pkcs8(der.as_ref()).unwrap()
    }

    const HEAD: &str = "From: Ann <ann@home.example>\r\nTo: bob@example.net\r\nSubject: hello  there\r\nDate: Sat, 5 Dec 2026 14:00:00 +0000\r\nX-Unsigned: 1\r\n";
    const BODY: &str = "Hi Bob,\r\n\r\n  see you  at 8.\r\n\r\n\r\n";

    fn sign_and_verify(key: SigningKey, tamper: &str) -> DkimResult {
        let record = key.dns_record();
        let signer = Signer::new("Home.Example.", "sel1", key).unwrap();
        let mut s = signer.begin(HEAD.as_bytes());
        for c in BODY.as_bytes().chunks(3) {
            s.update(c);
        }
        let field = s.finish(1_700_000_000).unwrap();
        assert!(field.starts_with("DKIM-Signature: v=1; a="));
        assert!(field.lines().all(|l| l.len() <= 80), "{field}");
        let msg = format!("{field}{HEAD}\r\n{BODY}").replacen("see you", tamper, 1);
        let mut keys = HashMap::new();
        keys.insert(
            "sel1._domainkey.home.example".to_string(),
            TxtAnswer::Records(vec![record.into_bytes()]),
        );
        let r = verify_chunked(msg.as_bytes(), 10, &keys);
        assert_eq!(r.len(), 1);
        r[0]
    }

    #[test]
    fn signs_what_the_verifier_accepts() {
        let rsa = || SigningKey::from_pem(TEST_RSA_PEM).unwrap();
        assert!(matches!(rsa(), SigningKey::Rsa(_)));
        // The same key as PKCS#1 (`openssl pkey -traditional`).
        let pkcs1 = SigningKey::from_pem(include_str!("testdata/rsa2048-pkcs1.pem")).unwrap();
        assert_eq!(pkcs1.dns_record(), rsa().dns_record());
        assert_eq!(sign_and_verify(rsa(), "see you"), DkimResult::Pass);
        assert_eq!(sign_and_verify(rsa(), "see ya"), DkimResult::Fail);
        assert_eq!(sign_and_verify(ed25519(), "see you"), DkimResult::Pass);
        assert_eq!(sign_and_verify(ed25519(), "see ya"), DkimResult::Fail);
    }

    #[test]
    fn message_signing_picks_the_from_domain() {
        let signers = [
            Signer::new("other.example", "s", ed25519()).unwrap(),
            Signer::new("home.example", "sel1", ed25519()).unwrap(),
        ];
        let record = signers[1].key().dns_record();
        let msg = format!("{HEAD}\r\n{BODY}");
        let mut m = MessageSigning::new(&signers);
        for c in msg.as_bytes().chunks(5) {
            m.update(c);
        }
        let field = m.finish(1).unwrap().unwrap();
        assert!(field.contains("d=home.example; s=sel1;"));
        let mut keys = HashMap::new();
        keys.insert(
            "sel1._domainkey.home.example".to_string(),
            TxtAnswer::Records(vec![record.into_bytes()]),
        );
        let signed = format!("{field}{msg}");
        assert_eq!(
            verify_chunked(signed.as_bytes(), 9, &keys),
            [DkimResult::Pass]
        );
        let mut m = MessageSigning::new(&signers[..1]);
        m.update(msg.as_bytes());
        assert_eq!(m.finish(1), Ok(None));
    }

    #[test]
    fn key_and_header_refusals() {
        assert_eq!(SigningKey::from_pem("nothing").unwrap_err(), SignError::Pem);
        assert_eq!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            SignError::Key
        );
        assert!(matches!(
            Signer::new("bad domain", "s", ed25519()),
            Err(SignError::Name(_))
        ));
        let signer = Signer::new("home.example", "s", ed25519()).unwrap();
        let s = signer.begin(b"To: a@b\r\n");
        assert_eq!(s.finish(0), Err(SignError::NoFrom));
    }
}
