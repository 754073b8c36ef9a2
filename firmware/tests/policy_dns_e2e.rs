//! End-to-end tests of the anti-spam checks that ask DNS (`[mail.policy]`:
//! reverse DNS, DNS lists, SPF): `pocobelle mail` started with its own
//! config, its `mail.resolver` a crafted DNS server on loopback (answers
//! built with hickory-proto) that serves fixed data or stays silent, and
//! an SMTP client here speaking line by line. The client is 127.0.0.1,
//! an outsider (relay_networks is elsewhere). Nothing leaves the machine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;
use common::{Kill, command, free_port};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{RData, Record, RecordType};

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

fn txt(s: &str) -> RData {
    RData::TXT(TXT::new(vec![s.to_string()]))
}

struct Router {
    dir: PathBuf,
    port: u16,
    _child: Kill,
}

impl Router {
    fn new(name: &str, dns_port: u16, policy: &str) -> Router {
        let dir = common::tmpdir("pocobelle-policy-e2e", name);
        let port = free_port();
        let config = dir.join("pocobelle.toml");
        std::fs::write(
            &config,
            format!(
                "[system]\nhostname = \"mx.test\"\ndata_dir = \"{d}/data\"\nrun_dir = \"{d}/run\"\n\n\
                 [mail]\nlisten = [\"127.0.0.1:{port}\"]\ndomains = [\"home.arpa\"]\n\
                 relay_networks = [\"192.0.2.0/24\"]\nresolver = \"127.0.0.1:{dns_port}\"\n\
                 error_delay_ms = 10\nmin_free_bytes = 0\n\n[mail.policy]\n{policy}\n\
                 [mail.policy.greeting]\ndelay_ms = 0\n",
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
