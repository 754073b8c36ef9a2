//! DKIM (RFC 6376, RFC 8301, RFC 8463): verification of incoming
//! signatures and signing of the household's outgoing mail, on `ring`
//! (already linked through rustls). Sans-I/O: the message comes in as
//! chunks, the key records as answers to names the verifier asks for,
//! the time as a number; nothing here opens a socket or a file.
//!
//! Verification, at DATA end, in three steps:
//! ```text
//! let mut v = Verifier::new();
//! v.update(chunk);                      // each chunk of the message as received
//! let checked = v.finish();             // body hashes done
//! for name in checked.key_names() { ... resolve TXT ... }  // async, in the caller
//! let outcomes = checked.verify(&answers, now);            // answers: impl KeyLookup
//! ```
//! A lookup that did not complete is a temperror, never a fail.
//!
//! Modules: `tags` (tag=value lists), `record` (DKIM-Signature and key
//! record), `canon` (canonicalization and the body hasher), `sign`.

pub mod canon;
pub mod record;
pub mod sign;
pub mod tags;

use ring::{digest, signature as sig};

use self::canon::{BodyHasher, Field};
pub use self::record::{Algorithm, KeyError, KeyKind, KeyRecord, SigError, Signature};
pub use self::sign::{MessageSigning, SignError, Signer, SigningKey};

/// The header section is held until its end, up to this many octets; a
/// longer one is not verified (every signature on it is a permerror).
pub const MAX_HEADER_SECTION: usize = 64 * 1024;
/// At most this many DKIM-Signature fields are verified, the topmost
/// first; the rest are ignored (each costs a DNS lookup and an RSA
/// operation, which an attacker could multiply).
pub const MAX_SIGNATURES: usize = 5;
/// A key record longer than this (after joining its strings) is refused
/// as malformed; a 4096-bit RSA key needs about 800.
pub const MAX_KEY_RECORD: usize = 4096;

/// A DKIM result per signature (RFC 8601 2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimResult {
    /// No signature (only for the message as a whole).
    None,
    Pass,
    /// The signature or the body hash does not verify.
    Fail,
    /// A failure under a key in testing mode (t=y), which must not be
    /// treated differently from unsigned mail.
    Neutral,
    /// The key lookup did not complete.
    TempError,
    /// The signature or its key cannot be used (syntax, revoked key, no
    /// key, algorithm refused, expired).
    PermError,
}

impl DkimResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::None => "none",
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

/// The outcome of one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimOutcome {
    pub result: DkimResult,
    /// d= and s=, when the signature was parsed that far.
    pub domain: Option<String>,
    pub selector: Option<String>,
    /// Why it did not pass, for the A-R comment and the log.
    pub reason: Option<String>,
}

/// The answer to a TXT lookup, as the caller's resolver gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT records at the name, each with its strings joined.
    Records(Vec<Vec<u8>>),
    /// NXDOMAIN or no TXT records: a real negative answer.
    NotFound,
    /// Timeout, SERVFAIL, or not looked up: temporary.
    TempFail,
}

/// TXT records by name. `HashMap<String, TxtAnswer>` implements it; a
/// name missing from the map is a TempFail (not looked up).
pub trait TxtLookup {
    fn txt(&self, name: &str) -> TxtAnswer;
}

impl TxtLookup for std::collections::HashMap<String, TxtAnswer> {
    fn txt(&self, name: &str) -> TxtAnswer {
        self.get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or(TxtAnswer::TempFail)
    }
}

enum State {
    /// Collecting the header section.
    Head(Vec<u8>),
    /// In the body: the header section and a hasher per signature.
    Body(Vec<u8>, Vec<Pending>),
    /// The header section was over [`MAX_HEADER_SECTION`].
    TooLarge,
}

struct Pending {
    /// The parsed signature (and its hasher), or why it was refused.
    sig: Result<(Signature, BodyHasher), (SigError, Option<String>)>,
    /// Index of its field among the header fields.
    field: usize,
}

/// Verifies the DKIM signatures of one message, fed in chunks.
pub struct Verifier {
    state: State,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

/// The end of the header section in `buf`, searching from `from`: the
/// index after the empty line, and the length of the section without it.
pub(crate) fn header_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    if from == 0 {
        if buf.starts_with(b"\r\n") {
            return Some((2, 0));
        }
        if buf.starts_with(b"\n") {
            return Some((1, 0));
        }
    }
    (from..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some((i + 2, i + 1)),
            (Some(b'\r'), Some(b'\n')) => Some((i + 3, i + 1)),
            _ => None,
        }
    })
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier {
            state: State::Head(Vec::new()),
        }
    }

    /// Feeds the next bytes of the message (header section, then body).
    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.state {
            State::Head(buf) => {
                // Search from a little before the new bytes only.
                let from = buf.len().saturating_sub(2);
                buf.extend_from_slice(chunk);
                match header_end(buf, from) {
                    Some((body_at, head_len)) => {
                        let mut head = std::mem::take(buf);
                        let body = head.split_off(body_at);
                        head.truncate(head_len);
                        if head.len() > MAX_HEADER_SECTION {
                            self.state = State::TooLarge;
                            return;
                        }
                        let pending = start(&head);
                        self.state = State::Body(head, pending);
                        self.update(&body);
                    }
                    None if buf.len() > MAX_HEADER_SECTION + 4 => self.state = State::TooLarge,
                    None => {}
                }
            }
            State::Body(_, pending) => {
                for p in pending.iter_mut() {
                    if let Ok((_, h)) = &mut p.sig {
                        h.update(chunk);
                    }
                }
            }
            State::TooLarge => {}
        }
    }

    /// The end of the message: body hashes are final.
    pub fn finish(self) -> Checked {
        let (head, pending) = match self.state {
            // A message without an empty line is all header section.
            State::Head(buf) if buf.len() <= MAX_HEADER_SECTION => {
                let p = start(&buf);
                (buf, p)
            }
            State::Head(_) | State::TooLarge => {
                return Checked {
                    head: Vec::new(),
                    sigs: Vec::new(),
                    too_large: true,
                };
            }
            State::Body(head, pending) => (head, pending),
        };
        let sigs = pending
            .into_iter()
            .map(|p| Done {
                field: p.field,
                sig: p.sig.map(|(s, h)| {
                    let (hash, fits) = h.finish();
                    let body_ok = fits && hash.as_ref() == s.body_hash.as_slice();
                    (s, body_ok)
                }),
            })
            .collect();
        Checked {
            head,
            sigs,
            too_large: false,
        }
    }
}

/// The first [`MAX_SIGNATURES`] DKIM-Signature fields of `head`, parsed.
fn start(head: &[u8]) -> Vec<Pending> {
    canon::fields(head)
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is("dkim-signature"))
        .take(MAX_SIGNATURES)
        .map(|(i, f)| Pending {
            field: i,
            sig: match Signature::parse(f.value()) {
                Ok(s) => {
                    let h = BodyHasher::new(s.body_canon, s.length);
                    Ok((s, h))
                }
                Err(e) => Err((e, domain_hint(f.value()))),
            },
        })
        .collect()
}

/// d= of a field that did not parse, for the report.
fn domain_hint(value: &[u8]) -> Option<String> {
    let tags = tags::parse(value).ok()?;
    tags::get(&tags, "d")
        .filter(|d| record::is_name(d))
        .map(str::to_ascii_lowercase)
}

struct Done {
    field: usize,
    sig: Result<(Signature, bool), (SigError, Option<String>)>,
}

/// A message whose body was hashed, waiting for its keys.
pub struct Checked {
    head: Vec<u8>,
    sigs: Vec<Done>,
    too_large: bool,
}

impl Checked {
    /// The header section (without the empty line that ends it); empty
    /// when it was over [`MAX_HEADER_SECTION`].
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The TXT names to resolve (`<s>._domainkey.<d>`), without repeats.
    pub fn key_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for d in &self.sigs {
            if let Ok((s, _)) = &d.sig {
                let n = s.key_name();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }

    /// The outcome of each signature, topmost first; empty when the
    /// message has none (dkim=none). `now`: Unix seconds, for x=.
    pub fn verify(&self, keys: &dyn TxtLookup, now: u64) -> Vec<DkimOutcome> {
        if self.too_large {
            return vec![DkimOutcome {
                result: DkimResult::PermError,
                domain: None,
                selector: None,
                reason: Some("header section too large".into()),
            }];
        }
        let fields = canon::fields(&self.head);
        self.sigs
            .iter()
            .map(|d| match &d.sig {
                Err((e, domain)) => DkimOutcome {
                    result: DkimResult::PermError,
                    domain: domain.clone(),
                    selector: None,
                    reason: Some(e.to_string()),
                },
                Ok((s, body_ok)) => {
                    let (result, reason) = check(s, *body_ok, &fields, d.field, keys, now);
                    DkimOutcome {
                        result,
                        domain: Some(s.domain.clone()),
                        selector: Some(s.selector.clone()),
                        reason: reason.map(str::to_string),
                    }
                }
            })
            .collect()
    }
}

/// The data a signature covers (RFC 6376 3.7): the fields of h=, each
/// name taking the next instance from the bottom, then the signature
/// field itself with b= empty and without its line break.
pub(crate) fn signed_data(s: &Signature, fields: &[Field<'_>], own: &Field<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = vec![false; fields.len()];
    for name in &s.headers {
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].is(name))
        {
            used[i] = true;
            canon::header(s.header_canon, &fields[i], &mut out);
        }
    }
    // The own field, with the b= value cut out of its value.
    let value = own.value();
    let mut blanked = Vec::with_capacity(value.len());
    blanked.extend_from_slice(&value[..s.b_span.start]);
    blanked.extend_from_slice(&value[s.b_span.end..]);
    match s.header_canon {
        canon::Canon::Simple => {
            out.extend_from_slice(&own.raw[..own.name.len() + 1]);
            out.extend_from_slice(&blanked);
        }
        canon::Canon::Relaxed => canon::relaxed_header(own.name, &blanked, &mut out),
    }
    out
}

fn check(
    s: &Signature,
    body_ok: bool,
    fields: &[Field<'_>],
    own: usize,
    keys: &dyn TxtLookup,
    now: u64,
) -> (DkimResult, Option<&'static str>) {
    use DkimResult::*;
    if s.expires.is_some_and(|x| x < now) {
        return (PermError, Some("signature expired"));
    }
    let records = match keys.txt(&s.key_name()) {
        TxtAnswer::TempFail => return (TempError, Some("key lookup failed")),
        TxtAnswer::NotFound => return (PermError, Some("no key")),
        TxtAnswer::Records(r) => r,
    };
    // The first record that is a usable key; else the first error.
    let mut key = Err(KeyError::Missing);
    for r in records.iter().filter(|r| r.len() <= MAX_KEY_RECORD) {
        key = KeyRecord::parse(r);
        if key.is_ok() {
            break;
        }
    }
    let key = match key {
        Ok(k) => k,
        Err(KeyError::Revoked) => return (PermError, Some("key revoked")),
        Err(_) => return (PermError, Some("bad key record")),
    };
    let kind_ok = matches!(
        (s.algorithm, key.kind),
        (Algorithm::RsaSha256, KeyKind::Rsa) | (Algorithm::Ed25519Sha256, KeyKind::Ed25519)
    );
    if !kind_ok {
        return (PermError, Some("key type does not match a="));
    }
    if key.strict && s.auid_domain() != s.domain {
        return (PermError, Some("i= is a subdomain and the key says t=s"));
    }
    let failed = |why| (if key.testing { Neutral } else { Fail }, Some(why));
    if !body_ok {
        return failed("body hash did not verify");
    }
    let data = signed_data(s, fields, &fields[own]);
    let ok = match s.algorithm {
        Algorithm::RsaSha256 => sig::UnparsedPublicKey::new(
            &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            &key.public,
        )
        .verify(&data, &s.signature)
        .is_ok(),
        Algorithm::Ed25519Sha256 => {
            let hash = digest::digest(&digest::SHA256, &data);
            sig::UnparsedPublicKey::new(&sig::ED25519, &key.public)
                .verify(hash.as_ref(), &s.signature)
                .is_ok()
        }
    };
    if ok {
        (Pass, Option::None)
    } else {
        failed("signature did not verify")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// RFC 8463 A.3: one message signed twice by football.example.com.
    pub const RFC8463_MESSAGE: &str = concat!(
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n",
        " d=football.example.com; i=@football.example.com;\r\n",
        " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n",
        " subject : date : message-id : from : subject : date;\r\n",
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n",
        " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n",
        " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n",
        " d=football.example.com; i=@football.example.com;\r\n",
        " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n",
        " date : message-id : from : subject : date;\r\n",
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n",
        " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n",
        " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n",
        " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n",
        "From: Joe SixPack <joe@football.example.com>\r\n",
        "To: Suzie Q <suzie@shopping.example.net>\r\n",
        "Subject: Is dinner ready?\r\n",
        "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n",
        "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n",
        "\r\n",
        "Hi.\r\n",
        "\r\n",
        "We lost the game.  Are you hungry yet?\r\n",
        "\r\n",
        "Joe.\r\n",
    );

    /// RFC 8463 A.2's key records.
    pub fn rfc8463_keys() -> HashMap<String, TxtAnswer> {
        let mut m = HashMap::new();
        m.insert(
            "brisbane._domainkey.football.example.com".into(),
            TxtAnswer::Records(vec![
                b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec(),
            ]),
        );
        m.insert(
            "test._domainkey.football.example.com".into(),
            TxtAnswer::Records(vec![record::tests::RFC8463_RSA.as_bytes().to_vec()]),
        );
        m
    }

    pub fn verify_chunked(msg: &[u8], chunk: usize, keys: &dyn TxtLookup) -> Vec<DkimResult> {
        let mut v = Verifier::new();
        for c in msg.chunks(chunk) {
            v.update(c);
        }
        let checked = v.finish();
        checked
            .verify(keys, 1_600_000_000)
            .iter()
            .map(|o| o.result)
            .collect()
    }

    #[test]
    fn rfc8463_both_signatures_pass_in_any_chunking() {
        let keys = rfc8463_keys();
        for chunk in [1, 2, 3, 7, 64, 32 * 1024] {
            assert_eq!(
                verify_chunked(RFC8463_MESSAGE.as_bytes(), chunk, &keys),
                [DkimResult::Pass, DkimResult::Pass],
                "chunk {chunk}"
            );
        }
        let v = {
            let mut v = Verifier::new();
            v.update(RFC8463_MESSAGE.as_bytes());
            v.finish()
        };
        assert_eq!(
            v.key_names(),
            [
                "brisbane._domainkey.football.example.com",
                "test._domainkey.football.example.com"
            ]
        );
    }

    #[test]
    fn tampering_fails() {
        let keys = rfc8463_keys();
        let body = RFC8463_MESSAGE.replace("hungry", "thirsty");
        assert_eq!(
            verify_chunked(body.as_bytes(), 100, &keys),
            [DkimResult::Fail, DkimResult::Fail]
        );
        let head = RFC8463_MESSAGE.replace("Is dinner ready?", "Is lunch ready?");
        assert_eq!(
            verify_chunked(head.as_bytes(), 100, &keys),
            [DkimResult::Fail, DkimResult::Fail]
        );
        // An added From is covered by the over-signing in h=.
        let added =
            RFC8463_MESSAGE.replace("\r\n\r\nHi.", "\r\nFrom: mallory@evil.example\r\n\r\nHi.");
        assert_eq!(
            verify_chunked(added.as_bytes(), 100, &keys),
            [DkimResult::Fail, DkimResult::Fail]
        );
        // Relaxed canonicalization tolerates whitespace changes.
        let ws = RFC8463_MESSAGE.replace("Subject: Is dinner", "Subject:   Is \t dinner");
        assert_eq!(
            verify_chunked(ws.as_bytes(), 100, &keys),
            [DkimResult::Pass, DkimResult::Pass]
        );
    }

    #[test]
    fn dns_outcomes() {
        let mut keys = rfc8463_keys();
        keys.insert(
            "test._domainkey.football.example.com".into(),
            TxtAnswer::TempFail,
        );
        keys.insert(
            "brisbane._domainkey.football.example.com".into(),
            TxtAnswer::NotFound,
        );
        let m = RFC8463_MESSAGE.as_bytes();
        assert_eq!(
            verify_chunked(m, 100, &keys),
            [DkimResult::PermError, DkimResult::TempError]
        );
        keys.insert(
            "brisbane._domainkey.football.example.com".into(),
            TxtAnswer::Records(vec![b"v=DKIM1; k=ed25519; p=".to_vec()]),
        );
        keys.insert(
            "test._domainkey.football.example.com".into(),
            TxtAnswer::Records(vec![
                b"v=DKIM1; k=ed25519; t=y; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec(),
            ]),
        );
        assert_eq!(
            verify_chunked(m, 100, &keys),
            [DkimResult::PermError, DkimResult::PermError]
        );
        // A testing key turns a failure into neutral.
        let mut keys = rfc8463_keys();
        keys.insert(
            "brisbane._domainkey.football.example.com".into(),
            TxtAnswer::Records(vec![
                b"v=DKIM1; k=ed25519; t=y; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec(),
            ]),
        );
        let body = RFC8463_MESSAGE.replace("hungry", "thirsty");
        assert_eq!(
            verify_chunked(body.as_bytes(), 100, &keys),
            [DkimResult::Neutral, DkimResult::Fail]
        );
    }

    #[test]
    fn no_signature_too_large_and_too_many() {
        let keys = rfc8463_keys();
        assert!(verify_chunked(b"From: a@b\r\n\r\nhi\r\n", 5, &keys).is_empty());
        let mut big = vec![b'X'; MAX_HEADER_SECTION + 10];
        big.splice(0..0, b"X-Pad: ".iter().copied());
        assert_eq!(
            verify_chunked(&big, 32 * 1024, &keys),
            [DkimResult::PermError]
        );
        let one = &RFC8463_MESSAGE[..RFC8463_MESSAGE.find("DKIM-Signature: v=1; a=rsa").unwrap()];
        let many = one.repeat(MAX_SIGNATURES + 2) + &RFC8463_MESSAGE[one.len()..];
        assert_eq!(
            verify_chunked(many.as_bytes(), 4096, &keys).len(),
            MAX_SIGNATURES
        );
    }

    #[test]
    fn rfc6376_appendix_a_body_hash() {
        // RFC 6376 A.2 (simple/simple): the field parses (i= in a
        // subdomain of d=) and its bh= is reproduced. Its b= is known not
        // to verify (errata), so the signature is not checked.
        let field = concat!(
            " v=1; a=rsa-sha256; s=brisbane; d=example.com;\r\n",
            "      c=simple/simple; q=dns/txt; i=joe@football.example.com;\r\n",
            "      h=Received : From : To : Subject : Date : Message-ID;\r\n",
            "      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n",
            "      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB\r\n",
            "      4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHutKVdk\r\n",
            "      LLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV4bmp/YzhwvcubU4=;",
        );
        let s = Signature::parse(field.as_bytes()).unwrap();
        assert_eq!(
            (s.header_canon, s.body_canon),
            (canon::Canon::Simple, canon::Canon::Simple)
        );
        assert_eq!(s.headers.len(), 6);
        assert_eq!(s.auid_domain(), "football.example.com");
        assert_eq!(s.signature.len(), 128);
        let mut h = BodyHasher::new(canon::Canon::Simple, None);
        h.update(b"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n\r\n\r\n");
        assert_eq!(
            crate::smtp::auth::base64_encode(h.finish().0.as_ref()),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
    }
}
