//! End-to-end tests of the anti-spam checks that ask DNS (`[mail.policy]`:
//! reverse DNS, DNS lists, SPF): `pocobelle mail` started with its own
//! config, its `mail.resolver` a crafted DNS server on loopback (answers
//! built with hickory-proto) that serves fixed data or stays silent, and
//! an SMTP client here speaking line by line. The client is 127.0.0.1,
//! an outsider (relay_networks is elsewhere) unless a test says
//! otherwise. Message authentication (DKIM, DMARC,
//! Authentication-Results, signing) is checked on what reaches a
//! downstream SMTP sink here. Nothing leaves the machine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{Kill, command, free_port};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use pocobelle::mail::policy::dkim::{DkimResult, Signer, SigningKey, TxtAnswer, Verifier};

/// A crafted DNS server: `data` by (name without the final dot, type);
/// a name it has no data for at all is NXDOMAIN, another type of a known
/// name is NOERROR without records; `silent`: it never answers.
fn dns_fixture(data: Vec<(&str, RecordType, RData)>, silent: bool) -> u16 {
    let mut map: HashMap<(String, RecordType), Vec<RData>> = HashMap::new();
    for (n, t, d) in data {
        map.entry((n.to_ascii_lowercase(), t)).or_default().push(d);
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            if silent {
                continue;
            }
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(qq) = q.queries.first().cloned() else {
                continue;
            };
            let name = qq
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            match map.get(&(name.clone(), qq.query_type())) {
                Some(v) => {
                    for d in v {
                        r.add_answer(Record::from_rdata(qq.name().clone(), 60, d.clone()));
                    }
                }
                None if map.keys().any(|(k, _)| *k == name) => {}
                None => r.metadata.response_code = ResponseCode::NXDomain,
            }
            r.add_query(qq);
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    port
}

fn a(o: [u8; 4]) -> RData {
    RData::A(A::new(o[0], o[1], o[2], o[3]))
}

/// A TXT record, in strings of at most 255 octets (a DKIM key is longer).
fn txt(s: &str) -> RData {
    let strings = s
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    RData::TXT(TXT::new(strings))
}

/// A downstream SMTP server on loopback keeping every message it gets
/// (the DATA content, dot-unstuffed).
struct Sink {
    port: u16,
    got: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    fn start() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let keep = keep.clone();
                std::thread::spawn(move || Sink::session(s, keep));
            }
        });
        Sink { port, got }
    }

    fn session(s: TcpStream, keep: Arc<Mutex<Vec<String>>>) {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let _ = w.write_all(b"220 sink.test\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let answer: &[u8] = match verb.as_str() {
                "DATA" => {
                    let _ = w.write_all(b"354 go\r\n");
                    let mut msg = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        msg.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                    keep.lock().unwrap().push(msg);
                    b"250 kept\r\n"
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n");
                    return;
                }
                "EHLO" | "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                _ => b"502 no\r\n",
            };
            let _ = w.write_all(answer);
        }
    }

    /// The `n`th message to arrive, waiting for it.
    fn message(&self, n: usize, r: &Router) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(m) = self.got.lock().unwrap().get(n) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "message {n} not delivered:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

struct Router {
    dir: PathBuf,
    port: u16,
    _child: Kill,
}

impl Router {
    fn new(name: &str, dns_port: u16, policy: &str) -> Router {
        Router::with(name, dns_port, "192.0.2.0/24", policy, "")
    }

    /// With these relay networks, and `tail` (more tables) at the end.
    fn with(name: &str, dns_port: u16, relay: &str, policy: &str, tail: &str) -> Router {
        let dir = common::tmpdir("pocobelle-policy-e2e", name);
        let port = free_port();
        let config = dir.join("pocobelle.toml");
        std::fs::write(
            &config,
            format!(
                "[system]\nhostname = \"mx.test\"\ndata_dir = \"{d}/data\"\nrun_dir = \"{d}/run\"\n\n\
                 [mail]\nlisten = [\"127.0.0.1:{port}\"]\ndomains = [\"home.arpa\"]\n\
                 relay_networks = [\"{relay}\"]\nresolver = \"127.0.0.1:{dns_port}\"\n\
                 error_delay_ms = 10\nmin_free_bytes = 0\n\n[mail.policy]\n{policy}\n\
                 [mail.policy.greeting]\ndelay_ms = 0\n{tail}",
                d = dir.display()
            ),
        )
        .unwrap();
        let child = command()
            .args(["mail", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(dir.join("mail.log")).unwrap())
            .spawn()
            .unwrap();
        let r = Router {
            dir,
            port,
            _child: Kill(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mail did not start: {}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mail.log")).unwrap_or_default()
    }

    fn connect(&self) -> Client {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        assert!(c.reply().starts_with("220"));
        c
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    /// One whole reply (its last line).
    fn reply(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    }

    fn say(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

/// A session in which every lookup times out never gets a 5xx: with
/// every check set to refuse, RCPT gets a 4xx after the budget; with the
/// defaults (and a block list configured), the whole message gets 250.
#[test]
fn every_lookup_timing_out_never_gives_a_5xx() {
    let dns = dns_fixture(vec![], true);
    let strict = Router::new(
        "silent-strict",
        dns,
        "reject_score = 1\nlookup_budget_ms = 700\n\
         [mail.policy.rdns]\nmissing = \"reject\"\nmismatch = \"reject\"\n\
         [mail.policy.spf]\nfail = \"reject\"\nsoftfail = \"reject\"\n\
         [[mail.policy.dnsbl]]\nzone = \"bl.test\"\nweight = 5\n",
    );
    let mut c = strict.connect();
    assert!(c.say("EHLO client.test").starts_with("250"));
    assert!(c.say("MAIL FROM:<someone@spf.test>").starts_with("250"));
    let t = Instant::now();
    let r = c.say("RCPT TO:<u@home.arpa>");
    assert!(r.starts_with('4'), "{r}\n{}", strict.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the budget bounds the wait"
    );
    // The null sender (HELO identity) too.
    assert!(c.say("RSET").starts_with("250"));
    assert!(c.say("MAIL FROM:<>").starts_with("250"));
    let r = c.say("RCPT TO:<u@home.arpa>");
    assert!(r.starts_with('4'), "{r}");
    assert!(c.say("QUIT").starts_with("221"));

    let defaults = Router::new(
        "silent-defaults",
        dns,
        "[[mail.policy.dnsbl]]\nzone = \"bl.test\"\nweight = 5\n",
    );
    let mut c = defaults.connect();
    assert!(c.say("EHLO client.test").starts_with("250"));
    assert!(c.say("MAIL FROM:<someone@spf.test>").starts_with("250"));
    let r = c.say("RCPT TO:<u@home.arpa>");
    assert!(r.starts_with("250"), "{r}\n{}", defaults.log());
    assert!(c.say("DATA").starts_with("354"));
    let r = c.say("Subject: x\r\n\r\nhello\r\n.");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.say("QUIT").starts_with("221"));
}

/// A client listed in a block list is refused with 550 at RCPT when its
/// weight reaches reject_score; postmaster still gets its mail.
#[test]
fn a_listed_client_is_refused_at_rcpt() {
    let dns = dns_fixture(
        vec![
            ("1.0.0.127.bl.test", RecordType::A, a([127, 0, 0, 2])),
            ("1.0.0.127.other.test", RecordType::A, a([127, 0, 0, 9])),
        ],
        false,
    );
    let r = Router::new(
        "listed",
        dns,
        "[[mail.policy.dnsbl]]\nzone = \"bl.test\"\nweight = 10\ncodes = [2]\n\
         [[mail.policy.dnsbl]]\nzone = \"other.test\"\nweight = 10\ncodes = [2]\n",
    );
    let mut c = r.connect();
    assert!(c.say("EHLO client.test").starts_with("250"));
    assert!(c.say("MAIL FROM:<someone@example.test>").starts_with("250"));
    let reply = c.say("RCPT TO:<u@home.arpa>");
    assert!(reply.starts_with("550 5.7.1"), "{reply}\n{}", r.log());
    assert!(reply.contains("bl.test"), "{reply}");
    assert!(
        !reply.contains("other.test"),
        "code 9 does not count: {reply}"
    );
    let reply = c.say("RCPT TO:<postmaster@home.arpa>");
    assert!(reply.starts_with("250"), "{reply}");
    assert!(c.say("QUIT").starts_with("221"));
}

/// SPF fail with `fail = "reject"`: 550 5.7.23 at RCPT; a passing
/// sender in the same session is accepted.
#[test]
fn spf_fail_with_reject_configured_gives_550_5_7_23() {
    let dns = dns_fixture(
        vec![
            (
                "fail.test",
                RecordType::TXT,
                txt("v=spf1 ip4:192.0.2.0/24 -all"),
            ),
            (
                "pass.test",
                RecordType::TXT,
                txt("v=spf1 a:mta.pass.test -all"),
            ),
            ("mta.pass.test", RecordType::A, a([127, 0, 0, 1])),
        ],
        false,
    );
    let r = Router::new("spf", dns, "[mail.policy.spf]\nfail = \"reject\"\n");
    let mut c = r.connect();
    assert!(c.say("EHLO client.test").starts_with("250"));
    assert!(c.say("MAIL FROM:<someone@fail.test>").starts_with("250"));
    let reply = c.say("RCPT TO:<u@home.arpa>");
    assert!(reply.starts_with("550 5.7.23"), "{reply}\n{}", r.log());
    assert!(c.say("RSET").starts_with("250"));
    assert!(c.say("MAIL FROM:<someone@pass.test>").starts_with("250"));
    let reply = c.say("RCPT TO:<u@home.arpa>");
    assert!(reply.starts_with("250"), "{reply}\n{}", r.log());
    assert!(c.say("QUIT").starts_with("221"));
}

const RSA_PEM: &str = include_str!("../src/mail/policy/dkim/testdata/rsa2048.pem");
const BODY: &str = "Hello,\r\n\r\n  see you  at eight.\r\n";

/// A message signed by `d=signed.test; s=sel` with the test key, From
/// `from`.
fn signed_message(from: &str) -> (String, String) {
    let key = SigningKey::from_pem(RSA_PEM).unwrap();
    let record = key.dns_record();
    let head = format!(
        "From: Ann <{from}>\r\nTo: u@home.arpa\r\nSubject: Dinner\r\n\
         Date: Sat, 05 Dec 2026 14:00:00 +0000\r\nMessage-ID: <e2e.1@signed.test>\r\n"
    );
    let signer = Signer::new("signed.test", "sel", key).unwrap();
    let mut s = signer.begin(head.as_bytes());
    s.update(BODY.as_bytes());
    let field = s.finish(1_796_000_000).unwrap();
    (format!("{field}{head}\r\n{BODY}"), record)
}

fn send(c: &mut Client, from: &str, message: &str) -> String {
    assert!(c.say("EHLO client.test").starts_with("250"));
    assert!(c.say(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let r = c.say("RCPT TO:<u@home.arpa>");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.say("DATA").starts_with("354"));
    c.say(&format!("{message}."))
}

/// The Authentication-Results field of a delivered message, unfolded.
fn authres(m: &str) -> Vec<String> {
    let mut out = Vec::new();
    let head = m.split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                let last: &mut String = last;
                last.push(' ');
                last.push_str(line.trim());
            }
            continue;
        }
        out.push(line.to_string());
    }
    out.retain(|f| {
        f.to_ascii_lowercase()
            .starts_with("authentication-results:")
    });
    out
}

/// An outsider's message signed by its From domain arrives with our
/// Authentication-Results (dkim=pass, dmarc=pass) on top, and an
/// incoming field claiming our authserv-id is gone (another server's
/// stays).
#[test]
fn outsiders_mail_is_verified_and_forged_results_are_removed() {
    let (signed, record) = signed_message("ann@signed.test");
    let dns = dns_fixture(
        vec![
            ("sel._domainkey.signed.test", RecordType::TXT, txt(&record)),
            (
                "_dmarc.signed.test",
                RecordType::TXT,
                txt("v=DMARC1; p=reject"),
            ),
        ],
        false,
    );
    let sink = Sink::start();
    let routes = format!(
        "[mail.routes]\n\"home.arpa\" = \"127.0.0.1:{}\"\n",
        sink.port
    );
    let r = Router::with("verify", dns, "192.0.2.0/24", "", &routes);
    let forged = "Authentication-Results: MX.test; dkim=pass header.d=bank.test\r\n\
                  Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n";
    let mut c = r.connect();
    let reply = send(&mut c, "ann@signed.test", &format!("{forged}{signed}"));
    assert!(reply.starts_with("250"), "{reply}\n{}", r.log());
    assert!(c.say("QUIT").starts_with("221"));
    let m = sink.message(0, &r);
    assert!(
        m.starts_with("Authentication-Results: mx.test;"),
        "ours on top:\n{m}"
    );
    let ar = authres(&m);
    assert_eq!(ar.len(), 2, "{ar:?}\n{m}");
    assert!(
        ar[0].contains("dkim=pass header.d=signed.test header.s=sel"),
        "{ar:?}"
    );
    assert!(
        ar[0].contains("dmarc=pass (p=reject) header.from=signed.test"),
        "{ar:?}"
    );
    assert!(
        ar[0].contains("spf=none smtp.mailfrom=signed.test"),
        "{ar:?}"
    );
    assert!(!m.contains("bank.test"), "the forged field is gone:\n{m}");
    assert!(
        ar[1].starts_with("Authentication-Results: other.example;"),
        "{ar:?}"
    );
    assert!(m.ends_with(BODY), "{m}");
    assert!(
        r.log().contains("dkim=pass d=signed.test, dmarc=pass"),
        "{}",
        r.log()
    );
}

/// `[mail.policy.dmarc] reject = true`: a DMARC fail under p=reject (a
/// valid signature, but not of the From domain; no SPF) gets 550 5.7.1
/// at the final dot; with DNS silent the same message gets 250 and
/// arrives with dkim=temperror (a lookup that did not complete never
/// refuses).
#[test]
fn dmarc_reject_refuses_a_real_fail_and_never_a_timeout() {
    let (signed, record) = signed_message("x@reject.test");
    let dns = dns_fixture(
        vec![
            ("sel._domainkey.signed.test", RecordType::TXT, txt(&record)),
            (
                "_dmarc.reject.test",
                RecordType::TXT,
                txt("v=DMARC1; p=reject"),
            ),
        ],
        false,
    );
    let policy = "lookup_budget_ms = 700\n[mail.policy.dmarc]\nreject = true\n";
    let sink = Sink::start();
    let routes = format!(
        "[mail.routes]\n\"home.arpa\" = \"127.0.0.1:{}\"\n",
        sink.port
    );
    let r = Router::with("dmarc-reject", dns, "192.0.2.0/24", policy, &routes);
    let mut c = r.connect();
    let reply = send(&mut c, "x@reject.test", &signed);
    assert!(reply.starts_with("550 5.7.1"), "{reply}\n{}", r.log());
    assert!(reply.contains("reject.test"), "{reply}");
    assert!(c.say("QUIT").starts_with("221"));

    let silent = dns_fixture(vec![], true);
    let r2 = Router::with("dmarc-silent", silent, "192.0.2.0/24", policy, &routes);
    let mut c = r2.connect();
    let t = Instant::now();
    let reply = send(&mut c, "x@reject.test", &signed);
    assert!(reply.starts_with("250"), "{reply}\n{}", r2.log());
    assert!(
        t.elapsed() < Duration::from_secs(10) * common::slack(),
        "{:?}",
        t.elapsed()
    );
    assert!(c.say("QUIT").starts_with("221"));
    let m = sink.message(0, &r2);
    let ar = authres(&m);
    assert_eq!(ar.len(), 1, "{m}");
    assert!(ar[0].contains("dkim=temperror"), "{ar:?}");
    assert!(ar[0].contains("dmarc=temperror"), "{ar:?}");
    assert_eq!(
        sink.got.lock().unwrap().len(),
        1,
        "the refused one never left"
    );
}

/// Mail from a relay network whose From domain has a signer arrives
/// DKIM-signed (verified here, and by dkimpy when installed), without
/// an Authentication-Results field.
#[test]
fn relay_network_mail_is_signed_at_acceptance() {
    let dns = dns_fixture(vec![], false);
    let sink = Sink::start();
    let dir = common::tmpdir("pocobelle-policy-e2e", "sign-key");
    let key_file = dir.join("home.pem");
    std::fs::write(&key_file, RSA_PEM).unwrap();
    let policy = format!(
        "[mail.policy.dkim.sign.\"home.example\"]\nselector = \"s1\"\nkey_file = {:?}\n",
        key_file.display().to_string()
    );
    let routes = format!(
        "[mail.routes]\n\"home.arpa\" = \"127.0.0.1:{}\"\n",
        sink.port
    );
    let r = Router::with("sign", dns, "127.0.0.0/8", &policy, &routes);
    let message = "From: Ann <ann@home.example>\r\nTo: u@home.arpa\r\nSubject: Signed here\r\n\r\n\
                   Hello from the LAN.\r\n";
    let mut c = r.connect();
    let reply = send(&mut c, "ann@home.example", message);
    assert!(reply.starts_with("250"), "{reply}\n{}", r.log());
    // Another From domain: not signed.
    assert!(c.say("MAIL FROM:<bob@elsewhere.test>").starts_with("250"));
    assert!(c.say("RCPT TO:<u@home.arpa>").starts_with("250"));
    assert!(c.say("DATA").starts_with("354"));
    let other = message.replace("ann@home.example", "bob@elsewhere.test");
    assert!(c.say(&format!("{other}.")).starts_with("250"));
    assert!(c.say("QUIT").starts_with("221"));
    // Delivery order is not the order of acceptance.
    sink.message(1, &r);
    let got = sink.got.lock().unwrap().clone();
    let (ours, other): (Vec<String>, Vec<String>) = got
        .into_iter()
        .partition(|m| m.contains("ann@home.example"));
    let (m, m2) = (&ours[0], &other[0]);
    assert!(m.starts_with("DKIM-Signature: "), "{m}");
    assert!(m.contains("d=home.example; s=s1;"), "{m}");
    assert!(authres(m).is_empty(), "{m}");
    let record = SigningKey::from_pem(RSA_PEM).unwrap().dns_record();
    let mut v = Verifier::new();
    v.update(m.as_bytes());
    let checked = v.finish();
    assert_eq!(checked.key_names(), ["s1._domainkey.home.example"]);
    let keys: HashMap<String, TxtAnswer> = [(
        "s1._domainkey.home.example".to_string(),
        TxtAnswer::Records(vec![record.clone().into_bytes()]),
    )]
    .into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let results: Vec<DkimResult> = checked
        .verify(&keys, now)
        .iter()
        .map(|o| o.result)
        .collect();
    assert_eq!(results, [DkimResult::Pass], "{m}");
    assert!(!m2.contains("DKIM-Signature"), "{m2}");
    // dkimpy, a verifier no one here wrote (`make setup` installs it).
    let dkimpy = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success());
    if !dkimpy {
        eprintln!("SKIP: dkimpy check (python3-dkim missing, run `make setup`)");
        return;
    }
    let mut p = std::process::Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dkim_interop.py"
        ))
        .arg("verify")
        .arg(format!("{{\"s1._domainkey.home.example\": \"{record}\"}}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pass", "{m}");
}
