//! The two DKIM records that come from outside: the DKIM-Signature
//! header field (RFC 6376 3.5) and the key record in DNS (3.6.1, RFC
//! 8463 4.2). Each is parsed once into a validated representation; a
//! value the RFCs require a verifier to refuse is a typed error here, so
//! the verifier only ever sees usable values. It checks no signature and
//! reads no DNS.

use std::ops::Range;

use super::canon::Canon;
use super::tags::{self, TagError};
use crate::smtp::auth::base64_decode;

/// At most this many names in h= (a header list longer than this is
/// refused rather than walked).
pub const MAX_SIGNED_HEADERS: usize = 64;
/// A domain or selector longer than this is refused (RFC 1035's 253
/// octets of text for a name).
pub const MAX_NAME_LEN: usize = 253;

/// A signing algorithm this verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of at least 1024 bits
    /// (RFC 8301).
    RsaSha256,
    /// Ed25519 over the SHA-256 of the signed data (RFC 8463).
    Ed25519Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// Why a DKIM-Signature field was refused (a permerror).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("{0}")]
    Tags(#[from] TagError),
    /// A required tag (v, a, b, bh, d, h, s) is missing.
    #[error("missing tag {0}=")]
    Missing(&'static str),
    /// v= is not 1.
    #[error("unsupported version")]
    Version,
    /// a=rsa-sha1: no longer valid (RFC 8301 3.1).
    #[error("rsa-sha1 is not accepted (RFC 8301)")]
    Sha1,
    /// a= names an algorithm not implemented here.
    #[error("unsupported algorithm")]
    Algorithm,
    /// c= is not simple or relaxed, for the header or the body.
    #[error("unsupported canonicalization")]
    Canon,
    /// d= or s= is not a domain name.
    #[error("bad d= or s=")]
    Name,
    /// h= is empty, malformed, too long or lacks From (RFC 6376 5.4).
    #[error("h= must list From")]
    Headers,
    /// i= is not in d= or one of its subdomains (RFC 6376 3.5).
    #[error("i= domain outside d=")]
    Auid,
    /// q= does not offer dns/txt.
    #[error("unsupported query method")]
    Query,
    /// l=, t= or x= is not a number, or x= precedes t=.
    #[error("bad l=, t= or x=")]
    Number,
    /// b= or bh= is not base64, or b= is empty.
    #[error("bad base64 in b= or bh=")]
    Base64,
}

/// A validated DKIM-Signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub algorithm: Algorithm,
    pub signature: Vec<u8>,
    pub body_hash: Vec<u8>,
    pub header_canon: Canon,
    pub body_canon: Canon,
    /// d=, lower case, without a trailing dot.
    pub domain: String,
    /// s=, lower case.
    pub selector: String,
    /// h=, lower case, in order.
    pub headers: Vec<String>,
    /// i=, as written (defaults to `@` + d=).
    pub auid: Option<String>,
    pub length: Option<u64>,
    pub timestamp: Option<u64>,
    pub expires: Option<u64>,
    /// Where the b= value lies in the field's value (blanked when hashing).
    pub b_span: Range<usize>,
}

/// True when `name` is a DNS name of ASCII letters, digits, `-` and `_`
/// labels (1 to 63 octets each), at most [`MAX_NAME_LEN`] octets.
pub fn is_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

fn number(v: &str) -> Result<u64, SigError> {
    if v.is_empty() || v.len() > 76 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(SigError::Number);
    }
    // Up to 76 digits are valid; past u64 they saturate (a far future).
    Ok(v.parse().unwrap_or(u64::MAX))
}

fn b64(v: &str) -> Result<Vec<u8>, SigError> {
    base64_decode(&tags::squeeze(v)).map_err(|_| SigError::Base64)
}

/// `true` when `sub` is `domain` or one of its subdomains (lower case).
pub fn within(sub: &str, domain: &str) -> bool {
    sub == domain
        || sub
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

impl Signature {
    /// Parses and validates the value of one DKIM-Signature field.
    pub fn parse(value: &[u8]) -> Result<Signature, SigError> {
        let tags = tags::parse(value)?;
        let need = |n: &'static str| tags::get(&tags, n).ok_or(SigError::Missing(n));
        if need("v")? != "1" {
            return Err(SigError::Version);
        }
        let algorithm = match need("a")? {
            "rsa-sha256" => Algorithm::RsaSha256,
            "ed25519-sha256" => Algorithm::Ed25519Sha256,
            "rsa-sha1" => return Err(SigError::Sha1),
            _ => return Err(SigError::Algorithm),
        };
        let b_tag = tags
            .iter()
            .find(|t| t.name == "b")
            .ok_or(SigError::Missing("b"))?;
        let signature = b64(b_tag.value)?;
        if signature.is_empty() {
            return Err(SigError::Base64);
        }
        let body_hash = b64(need("bh")?)?;
        let domain = need("d")?.to_ascii_lowercase();
        let domain = domain.trim_end_matches('.').to_string();
        let selector = need("s")?.to_ascii_lowercase();
        if !is_name(&domain) || !is_name(&selector) {
            return Err(SigError::Name);
        }
        let headers: Vec<String> = need("h")?
            .split(':')
            .map(|h| tags::squeeze(h).to_ascii_lowercase())
            .collect();
        if headers.len() > MAX_SIGNED_HEADERS
            || headers
                .iter()
                .any(|h| h.is_empty() || !h.bytes().all(|c| (33..=126).contains(&c) && c != b':'))
            || !headers.iter().any(|h| h == "from")
        {
            return Err(SigError::Headers);
        }
        let (header_canon, body_canon) = match tags::get(&tags, "c") {
            None => (Canon::Simple, Canon::Simple),
            Some(c) => {
                let one = |s: &str| match s {
                    "simple" => Ok(Canon::Simple),
                    "relaxed" => Ok(Canon::Relaxed),
                    _ => Err(SigError::Canon),
                };
                match c.split_once('/') {
                    Some((h, b)) => (one(h)?, one(b)?),
                    None => (one(c)?, Canon::Simple),
                }
            }
        };
        let auid = tags::get(&tags, "i").map(str::to_string);
        if let Some(i) = &auid {
            let (_, d) = i.rsplit_once('@').ok_or(SigError::Auid)?;
            let d = d.to_ascii_lowercase();
            if !within(d.trim_end_matches('.'), &domain) {
                return Err(SigError::Auid);
            }
        }
        if let Some(q) = tags::get(&tags, "q")
            && !q.split(':').any(|m| tags::squeeze(m) == "dns/txt")
        {
            return Err(SigError::Query);
        }
        let length = tags::get(&tags, "l").map(number).transpose()?;
        let timestamp = tags::get(&tags, "t").map(number).transpose()?;
        let expires = tags::get(&tags, "x").map(number).transpose()?;
        if let (Some(t), Some(x)) = (timestamp, expires)
            && x < t
        {
            return Err(SigError::Number);
        }
        Ok(Signature {
            algorithm,
            signature,
            body_hash,
            header_canon,
            body_canon,
            domain,
            selector,
            headers,
            auid,
            length,
            timestamp,
            expires,
            b_span: b_tag.span.clone(),
        })
    }

    /// The DNS name of this signature's key record.
    pub fn key_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The domain of i= (or d=), lower case.
    pub fn auid_domain(&self) -> String {
        match &self.auid {
            Some(i) => i
                .rsplit_once('@')
                .map_or(&self.domain[..], |(_, d)| d)
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            None => self.domain.clone(),
        }
    }
}

/// A key type of a key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ed25519,
}

/// Why a key record is unusable (a permerror for the signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Tags(#[from] TagError),
    /// v= is present and is not DKIM1, or is not the first tag.
    #[error("not a DKIM1 key record")]
    Version,
    /// h= does not allow sha256.
    #[error("key does not allow sha256")]
    Hash,
    /// k= is neither rsa nor ed25519.
    #[error("unsupported key type")]
    Kind,
    /// s= does not include email or *.
    #[error("key not for email")]
    Service,
    /// p= is missing.
    #[error("missing p=")]
    Missing,
    /// p= is empty: the key was revoked (RFC 6376 3.6.1).
    #[error("key revoked")]
    Revoked,
    /// p= is not base64 of a key of its type.
    #[error("malformed public key")]
    Format,
    /// An RSA key shorter than 1024 bits (RFC 8301 3.2) or longer than
    /// 8192 (more than ring checks).
    #[error("RSA key of {0} bits (1024 to 8192 accepted)")]
    Size(usize),
}

/// A validated key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kind: KeyKind,
    /// RSA: the PKCS#1 RSAPublicKey DER (unwrapped from the
    /// SubjectPublicKeyInfo); Ed25519: the 32-octet public key.
    pub public: Vec<u8>,
    /// t=y: the domain is testing DKIM.
    pub testing: bool,
    /// t=s: i= must be exactly d=, not a subdomain.
    pub strict: bool,
}

impl KeyRecord {
    pub fn parse(text: &[u8]) -> Result<KeyRecord, KeyError> {
        let tags = tags::parse(text)?;
        if let Some(pos) = tags.iter().position(|t| t.name == "v")
            && (pos != 0 || tags[0].value != "DKIM1")
        {
            return Err(KeyError::Version);
        }
        if let Some(h) = tags::get(&tags, "h")
            && !h.split(':').any(|a| tags::squeeze(a) == "sha256")
        {
            return Err(KeyError::Hash);
        }
        let kind = match tags::get(&tags, "k").unwrap_or("rsa") {
            "rsa" => KeyKind::Rsa,
            "ed25519" => KeyKind::Ed25519,
            _ => return Err(KeyError::Kind),
        };
        if let Some(s) = tags::get(&tags, "s")
            && !s
                .split(':')
                .any(|a| matches!(&tags::squeeze(a)[..], "*" | "email"))
        {
            return Err(KeyError::Service);
        }
        let flags: Vec<String> = tags::get(&tags, "t")
            .unwrap_or("")
            .split(':')
            .map(tags::squeeze)
            .collect();
        let p = tags::squeeze(tags::get(&tags, "p").ok_or(KeyError::Missing)?);
        if p.is_empty() {
            return Err(KeyError::Revoked);
        }
        let der = base64_decode(&p).map_err(|_| KeyError::Format)?;
        let public = match kind {
            KeyKind::Ed25519 if der.len() == 32 => der,
            KeyKind::Ed25519 => return Err(KeyError::Format),
            KeyKind::Rsa => rsa_public_key(&der)?,
        };
        Ok(KeyRecord {
            kind,
            public,
            testing: flags.iter().any(|f| f == "y"),
            strict: flags.iter().any(|f| f == "s"),
        })
    }
}

// DER, just enough for SubjectPublicKeyInfo and RSAPublicKey.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One DER element of `tag` at the front of `input`: (contents, rest).
fn der(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), KeyError> {
    let (&t, rest) = input.split_first().ok_or(KeyError::Format)?;
    let (&l, mut rest) = rest.split_first().ok_or(KeyError::Format)?;
    if t != tag {
        return Err(KeyError::Format);
    }
    let len = if l < 0x80 {
        l as usize
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return Err(KeyError::Format);
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(KeyError::Format);
    }
    Ok(rest.split_at(len))
}

/// The PKCS#1 RSAPublicKey in `der`: a SubjectPublicKeyInfo with
/// rsaEncryption (RFC 6376's format), or a bare RSAPublicKey (seen in
/// the wild); its modulus must be 1024 to 8192 bits.
fn rsa_public_key(der_bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (spki, rest) = der(der_bytes, SEQUENCE)?;
    if !rest.is_empty() {
        return Err(KeyError::Format);
    }
    let pkcs1 = match der(spki, SEQUENCE) {
        Ok((alg, rest)) => {
            let (oid, _) = der(alg, OID)?;
            if oid != RSA_ENCRYPTION {
                return Err(KeyError::Format);
            }
            let (bits, tail) = der(rest, BIT_STRING)?;
            if !tail.is_empty() || bits.first() != Some(&0) {
                return Err(KeyError::Format);
            }
            &bits[1..]
        }
        Err(_) => der_bytes,
    };
    let (key, tail) = der(pkcs1, SEQUENCE)?;
    let (n, rest) = der(key, INTEGER)?;
    let (_e, rest) = der(rest, INTEGER)?;
    if !rest.is_empty() || !tail.is_empty() {
        return Err(KeyError::Format);
    }
    let n = &n[n.iter().take_while(|&&b| b == 0).count()..];
    let bits = n
        .first()
        .map_or(0, |&b| n.len() * 8 - b.leading_zeros() as usize);
    if !(1024..=8192).contains(&bits) {
        return Err(KeyError::Size(bits));
    }
    Ok(pkcs1.to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SIG: &[u8] = b" v=1; a=rsa-sha256; c=relaxed/simple; d=Example.COM;\r\n s=sel; h=From : To; bh=YWJj; b=ZG\r\n Vm; i=joe@mail.example.com; l=10; t=5; x=6";

    #[test]
    fn signature_fields() {
        let s = Signature::parse(SIG).unwrap();
        assert_eq!(s.algorithm, Algorithm::RsaSha256);
        assert_eq!(
            (s.header_canon, s.body_canon),
            (Canon::Relaxed, Canon::Simple)
        );
        assert_eq!(s.domain, "example.com");
        assert_eq!(s.headers, ["from", "to"]);
        assert_eq!(
            (s.signature.as_slice(), s.body_hash.as_slice()),
            (&b"def"[..], &b"abc"[..])
        );
        assert_eq!(&SIG[s.b_span.clone()], b"ZG\r\n Vm");
        assert_eq!(s.key_name(), "sel._domainkey.example.com");
        assert_eq!(s.auid_domain(), "mail.example.com");
        assert_eq!(
            (s.length, s.timestamp, s.expires),
            (Some(10), Some(5), Some(6))
        );
    }

    #[test]
    fn signature_refusals() {
        let base = "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=YWJj; b=ZGVm";
        assert!(Signature::parse(base.as_bytes()).is_ok());
        let bad = [
            ("v=1", "v=2", SigError::Version),
            ("rsa-sha256", "rsa-sha1", SigError::Sha1),
            ("rsa-sha256", "dsa-sha256", SigError::Algorithm),
            ("h=from", "h=to", SigError::Headers),
            ("h=from", "h=from::to", SigError::Headers),
            ("d=example.com", "d=exa mple.com", SigError::Name),
            ("b=ZGVm", "b=", SigError::Base64),
            ("bh=YWJj", "bh=Y!Jj", SigError::Base64),
            ("s=sel", "s=sel; i=a@example.org", SigError::Auid),
            ("s=sel", "s=sel; i=a@badexample.com", SigError::Auid),
            ("s=sel", "s=sel; q=http", SigError::Query),
            ("s=sel", "s=sel; c=relaxed/fancy", SigError::Canon),
            ("s=sel", "s=sel; t=9; x=8", SigError::Number),
            ("s=sel", "s=sel; l=-1", SigError::Number),
            ("s=sel", "s=sel; s=two", SigError::Tags(TagError::Duplicate)),
            ("d=example.com; ", "", SigError::Missing("d")),
        ];
        for (from, to, err) in bad {
            let text = base.replacen(from, to, 1);
            assert_eq!(Signature::parse(text.as_bytes()), Err(err), "{text}");
        }
    }

    // RFC 8463 A.2's RSA key record (a 1024-bit SubjectPublicKeyInfo).
    pub(crate) const RFC8463_RSA: &str = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

    #[test]
    fn key_records() {
        let k = KeyRecord::parse(RFC8463_RSA.as_bytes()).unwrap();
        assert_eq!(k.kind, KeyKind::Rsa);
        assert_eq!(k.public[0], SEQUENCE);
        let e = KeyRecord::parse(
            b"v=DKIM1; k=ed25519; t=y:s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        )
        .unwrap();
        assert_eq!(
            (e.kind, e.public.len(), e.testing, e.strict),
            (KeyKind::Ed25519, 32, true, true)
        );
        assert_eq!(KeyRecord::parse(b"v=DKIM1; p="), Err(KeyError::Revoked));
        assert_eq!(
            KeyRecord::parse(b"k=rsa; v=DKIM1; p=YQ=="),
            Err(KeyError::Version)
        );
        assert_eq!(
            KeyRecord::parse(b"v=DKIM1; h=sha1; p=YQ=="),
            Err(KeyError::Hash)
        );
        assert_eq!(KeyRecord::parse(b"k=dsa; p=YQ=="), Err(KeyError::Kind));
        assert_eq!(
            KeyRecord::parse(b"s=tlsrpt; p=YQ=="),
            Err(KeyError::Service)
        );
        assert_eq!(
            KeyRecord::parse(b"k=ed25519; p=YQ=="),
            Err(KeyError::Format)
        );
        assert_eq!(KeyRecord::parse(b"v=DKIM1"), Err(KeyError::Missing));
        // A 512-bit RSA key (SPKI, made with openssl for this test).
        let small = "p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALi0NUbRYW1PdTAVec7E9+xZ0PDYOctIzOJum8D7qnlz77C/tMHWYO80j2trY1MyqJ6dXRq9CY4ctgmRrVU6OckCAwEAAQ==";
        assert_eq!(KeyRecord::parse(small.as_bytes()), Err(KeyError::Size(512)));
    }
}
