//! DKIM interop with dkimpy (Debian's python3-dkim, a peer no one here
//! wrote; `make setup` installs it): (a) Pocobelle signs, RSA and
//! Ed25519, and dkimpy verifies; (b) dkimpy signs (RSA and Ed25519,
//! relaxed and simple canonicalization) and Pocobelle verifies. A
//! tampered copy fails on both sides. Key records are handed to dkimpy
//! through its `dnsfunc`; nothing leaves the machine.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use pocobelle::mail::policy::dkim::{DkimResult, Signer, SigningKey, TxtAnswer, Verifier};

/// Debian's interpreter, whose dist-packages hold python3-dkim (a pyenv
/// or venv python3 earlier in PATH would not see it).
const PYTHON: &str = "/usr/bin/python3";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dkim_interop.py");
const RSA_PEM: &str = include_str!("../src/mail/policy/dkim/testdata/rsa2048.pem");
/// RFC 8032's first test seed (also RFC 8463's example key).
const ED_SEED_B64: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
/// PKCS#8 v1 for an Ed25519 seed (RFC 8410): this prefix, then the seed.
const ED_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const HEAD: &str = "From: Ann Example <ann@home.example>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Dinner  at eight?\r\n\
Date: Sat, 05 Dec 2026 14:00:00 +0000\r\n\
Message-ID: <interop.1@home.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n";
const BODY: &str = "Hi Bob,\r\n\r\n  dinner at  eight?\r\n\r\nAnn\r\n\r\n\r\n";

fn python(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(PYTHON)
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{PYTHON} (run `make setup`): {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dkimpy failed (python3-dkim missing? `make setup` installs it): {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ed25519_key() -> SigningKey {
    let seed = pocobelle::smtp::auth::base64_decode(ED_SEED_B64).unwrap();
    SigningKey::from_pkcs8(&[&ED_PKCS8_PREFIX[..], &seed].concat()).unwrap()
}

fn pocobelle_verify(message: &str, record: &str) -> Vec<DkimResult> {
    let mut v = Verifier::new();
    for chunk in message.as_bytes().chunks(32 * 1024) {
        v.update(chunk);
    }
    let checked = v.finish();
    let names = checked.key_names();
    assert_eq!(names, ["sel1._domainkey.home.example"]);
    let mut keys = HashMap::new();
    keys.insert(
        names[0].clone(),
        TxtAnswer::Records(vec![record.as_bytes().to_vec()]),
    );
    checked
        .verify(&keys, 1_800_000_000)
        .iter()
        .map(|o| o.result)
        .collect()
}

fn records_json(record: &str) -> String {
    format!("{{\"sel1._domainkey.home.example\": \"{record}\"}}")
}

#[test]
fn pocobelle_signs_dkimpy_verifies() {
    for key in [SigningKey::from_pem(RSA_PEM).unwrap(), ed25519_key()] {
        let alg = key.algorithm().name();
        let record = key.dns_record();
        let signer = Signer::new("home.example", "sel1", key).unwrap();
        let mut s = signer.begin(HEAD.as_bytes());
        for chunk in BODY.as_bytes().chunks(7) {
            s.update(chunk);
        }
        let field = s.finish(1_796_000_000).unwrap();
        let message = format!("{field}{HEAD}\r\n{BODY}");
        let json = records_json(&record);
        assert_eq!(
            python(&["verify", &json], message.as_bytes()).trim(),
            "pass",
            "{alg}\n{message}"
        );
        let tampered = message.replace("eight?\r\n\r\nAnn", "nine?\r\n\r\nAnn");
        assert_eq!(
            python(&["verify", &json], tampered.as_bytes()).trim(),
            "fail",
            "{alg}"
        );
        let tampered = message.replace("Subject: Dinner", "Subject: Lunch");
        assert_eq!(
            python(&["verify", &json], tampered.as_bytes()).trim(),
            "fail",
            "{alg}"
        );
    }
}

#[test]
fn dkimpy_signs_pocobelle_verifies() {
    let dir = std::env::temp_dir().join(format!("pocobelle-dkim-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("rsa.pem");
    std::fs::write(&pem, RSA_PEM).unwrap();
    let rsa_record = SigningKey::from_pem(RSA_PEM).unwrap().dns_record();
    let ed_record = ed25519_key().dns_record();
    let message = format!("{HEAD}\r\n{BODY}");
    for canon in ["relaxed/relaxed", "simple/simple", "relaxed/simple"] {
        for (alg, key, record) in [
            ("rsa-sha256", pem.to_str().unwrap(), &rsa_record),
            ("ed25519-sha256", ED_SEED_B64, &ed_record),
        ] {
            let field = python(
                &["sign", "sel1", "home.example", alg, canon, key],
                message.as_bytes(),
            );
            assert!(field.starts_with("DKIM-Signature:"), "{field}");
            let signed = format!("{field}{message}");
            assert_eq!(
                pocobelle_verify(&signed, record),
                [DkimResult::Pass],
                "{alg} {canon}\n{signed}"
            );
            let tampered = signed.replace("eight?\r\n\r\nAnn", "nine?\r\n\r\nAnn");
            assert_eq!(
                pocobelle_verify(&tampered, record),
                [DkimResult::Fail],
                "{alg} {canon}"
            );
            let tampered = signed.replace("Subject: Dinner", "Subject: Lunch");
            assert_eq!(
                pocobelle_verify(&tampered, record),
                [DkimResult::Fail],
                "{alg} {canon}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
