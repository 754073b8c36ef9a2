//! End-to-end tests of DNS-over-TLS upstreams in `pocobelle dns`: a fake
//! DoT server written here with rustls (certificate from a test CA made
//! with rcgen, the CA file in the config) that the test steers (answer,
//! stay silent, answer pipelined queries out of order), and, when Debian's
//! `unbound` is installed, Unbound serving DoT on a loopback port as a
//! real peer. Queries to the service come over UDP on loopback; the binary
//! runs under `POCOBELLE_TEST_RUNNER` when set.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
mod common;
use common::{Ca, command};

/// A fake DNS-over-TLS server.
struct FakeDot {
    addr: SocketAddr,
    /// Answer nothing (queries are still read and counted).
    silent: Arc<AtomicBool>,
    /// When two queries arrive together, answer the second first.
    reverse: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    /// Pairs answered out of order.
    reversed: Arc<AtomicUsize>,
}

fn answer(q: &Message) -> Vec<u8> {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    let query = q.queries[0].clone();
    let name = query.name().clone();
    // The address tells which name was asked: 192.0.2.<first letter>.
    let last = name.to_ascii().as_bytes()[0];
    m.add_query(query);
    m.add_answer(Record::from_rdata(
        name,
        1,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    ));
    let out = m.to_vec().unwrap();
    let mut framed = (out.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&out);
    framed
}

fn read_frame(s: &mut impl Read) -> std::io::Result<Message> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))
}

impl FakeDot {
    fn start(config: Arc<rustls::ServerConfig>) -> FakeDot {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let f = FakeDot {
            addr: l.local_addr().unwrap(),
            silent: Arc::default(),
            reverse: Arc::default(),
            queries: Arc::default(),
            connections: Arc::default(),
            reversed: Arc::default(),
        };
        let (silent, reverse, queries, conns, reversed) = (
            f.silent.clone(),
            f.reverse.clone(),
            f.queries.clone(),
            f.connections.clone(),
            f.reversed.clone(),
        );
        std::thread::spawn(move || {
            for tcp in l.incoming() {
                let Ok(tcp) = tcp else { return };
                conns.fetch_add(1, Ordering::SeqCst);
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let (silent, reverse, queries, reversed) = (
                    silent.clone(),
                    reverse.clone(),
                    queries.clone(),
                    reversed.clone(),
                );
                std::thread::spawn(move || {
                    loop {
                        let Ok(q1) = read_frame(&mut s) else { return };
                        let name = |q: &Message| q.queries[0].name().to_ascii().to_lowercase();
                        queries.lock().unwrap().push(name(&q1));
                        if silent.load(Ordering::SeqCst) {
                            continue;
                        }
                        let mut out = Vec::new();
                        if reverse.load(Ordering::SeqCst) {
                            s.sock
                                .set_read_timeout(Some(Duration::from_millis(500)))
                                .unwrap();
                            if let Ok(q2) = read_frame(&mut s) {
                                queries.lock().unwrap().push(name(&q2));
                                reversed.fetch_add(1, Ordering::SeqCst);
                                out.extend(answer(&q2));
                            }
                            s.sock.set_read_timeout(None).unwrap();
                        }
                        out.extend(answer(&q1));
                        if s.write_all(&out).and_then(|_| s.flush()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        f
    }

    fn count(&self, name: &str) -> usize {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    }
}

// ---------------------------------------------------------------- the service

fn test_dir(name: &str) -> PathBuf {
    common::service_dir("pcb-dot", name)
}

fn slack() -> u64 {
    u64::from(common::slack())
}

struct Dns {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Dns {
    /// Starts `pocobelle dns` forwarding only to the DoT server `up`
    /// (name `name`, trusting `ca_pem`).
    fn start(dir: &Path, up: SocketAddr, name: &str, ca_pem: &str, extra: &str) -> Dns {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let config = dir.join("pocobelle.toml");
        std::fs::write(
            &config,
            format!(
                "[system]\nrun_dir = \"{d}/run\"\ndata_dir = \"{d}/data\"\n[log]\nlevel = \"debug\"\n\
                 [dns]\nlisten = [\"127.0.0.1:0\"]\nprime_times = []\n{extra}\n\
                 [[dns.tls_upstreams]]\naddr = \"{up}\"\nname = \"{name}\"\nca_file = \"{ca}\"\n",
                d = dir.display(),
                ca = ca.display()
            ),
        )
        .unwrap();
        let mut child = command()
            .arg("dns")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on udp+tcp 127.0.0.1:").nth(1) {
                    let _ = tx.send(rest.trim().parse::<u16>().unwrap());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("dns did not start: {:?}", log.lock().unwrap()));
        Dns { child, port, log }
    }

    fn ask(&self, name: &str) -> (Message, Duration) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20 * slack())))
            .unwrap();
        let mut q = Message::query();
        q.metadata.id = 0x4242;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let t0 = Instant::now();
        s.send_to(&q.to_vec().unwrap(), ("127.0.0.1", self.port))
            .unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|_| panic!("no answer for {name}: {}", self.log()));
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, 0x4242);
        (m, t0.elapsed())
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn a_of(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn answers_flow_over_tls_are_cached_and_pipelined_on_one_connection() {
    let ca = Ca::new("Pocobelle DoT test CA");
    let up = FakeDot::start(ca.server_config("dot.test"));
    let dir = test_dir("flow");
    let dns = Dns::start(
        &dir,
        up.addr,
        "dot.test",
        &ca.pem,
        "tls_connections = 1\nmin_ttl = 60\n",
    );
    let (m, _) = dns.ask("alpha.test.");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, b'a')]);
    let (m, _) = dns.ask("alpha.test.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, b'a')]);
    assert_eq!(
        up.count("alpha.test."),
        1,
        "the second answer came from the cache"
    );
    // Two questions at once on the single connection; the server answers
    // the second first: each client still gets its own answer (ID match).
    up.reverse.store(true, Ordering::SeqCst);
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| dns.ask("bravo.test.").0);
        let c = s.spawn(|| dns.ask("charlie.test.").0);
        (b.join().unwrap(), c.join().unwrap())
    });
    assert_eq!(a_of(&b), vec![Ipv4Addr::new(192, 0, 2, b'b')]);
    assert_eq!(a_of(&c), vec![Ipv4Addr::new(192, 0, 2, b'c')]);
    assert_eq!(
        up.reversed.load(Ordering::SeqCst),
        1,
        "answered out of order"
    );
    assert_eq!(
        (up.count("bravo.test."), up.count("charlie.test.")),
        (1, 1),
        "each answer reached its own query the first time"
    );
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one persistent connection carried every query"
    );
}

#[test]
fn silent_upstream_gives_servfail_after_budget_and_stale_when_cached() {
    let ca = Ca::new("Pocobelle DoT test CA");
    let up = FakeDot::start(ca.server_config("dot.test"));
    let dir = test_dir("down");
    let dns = Dns::start(
        &dir,
        up.addr,
        "dot.test",
        &ca.pem,
        "min_ttl = 1\nbudget_ms = 1500\nstale_after_ms = 400\n",
    );
    let (m, _) = dns.ask("old.test.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, b'o')]);
    std::thread::sleep(Duration::from_millis(1500));
    up.silent.store(true, Ordering::SeqCst);
    let (m, took) = dns.ask("old.test.");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, b'o')]);
    assert_eq!(m.answers[0].ttl, 30, "served stale");
    assert!(took < Duration::from_millis(1400 * slack()), "{took:?}");
    let (m, took) = dns.ask("new.test.");
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::ServFail,
        "never NXDOMAIN"
    );
    assert!(
        took >= Duration::from_millis(1400),
        "after the budget: {took:?}"
    );
    assert!(up.count("new.test.") >= 1, "the query did reach the server");
}

#[test]
fn certificate_for_another_name_is_refused() {
    let ca = Ca::new("Pocobelle DoT test CA");
    let up = FakeDot::start(ca.server_config("impostor.test"));
    let dir = test_dir("name");
    let dns = Dns::start(&dir, up.addr, "dot.test", &ca.pem, "budget_ms = 1000\n");
    let (m, _) = dns.ask("secret.test.");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(up.connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        up.count("secret.test."),
        0,
        "no query crossed an unverified session"
    );
    let log = dns.log();
    assert!(log.contains("not valid for name"), "{log}");
}

/// Unbound serving DNS-over-TLS from local data on a loopback port: a
/// real peer. Skipped when unbound is not installed.
#[test]
fn unbound_as_a_dot_upstream() {
    let unbound = Path::new("/usr/sbin/unbound");
    if !unbound.exists() {
        eprintln!("SKIP: unbound missing (run `make setup`)");
        return;
    }
    let ca = Ca::new("Pocobelle DoT test CA");
    let dir = test_dir("unbound");
    let (cert, key, _, _) = ca.leaf("unbound.test");
    std::fs::write(dir.join("unbound.pem"), cert).unwrap();
    std::fs::write(dir.join("unbound.key"), key).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1@{port}\n  tls-port: {port}\n  \
             tls-service-key: \"{d}/unbound.key\"\n  tls-service-pem: \"{d}/unbound.pem\"\n  \
             do-udp: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"\"\n  \
             use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  num-threads: 1\n  \
             access-control: 127.0.0.0/8 allow\n  local-zone: \"pcb.test.\" static\n  \
             local-data: \"www.pcb.test. 300 IN A 192.0.2.77\"\nremote-control:\n  control-enable: no\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut ub = Command::new(unbound)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("unbound.log")).unwrap())
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _ub = KillOnDrop(&mut ub);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "unbound did not start: {}",
            std::fs::read_to_string(dir.join("unbound.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dns = Dns::start(
        &dir,
        SocketAddr::from(([127, 0, 0, 1], port)),
        "unbound.test",
        &ca.pem,
        "",
    );
    let (m, _) = dns.ask("www.pcb.test.");
    assert_eq!(
        a_of(&m),
        vec![Ipv4Addr::new(192, 0, 2, 77)],
        "{}",
        dns.log()
    );
    let (m, _) = dns.ask("nothing.pcb.test.");
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "a real NXDOMAIN passes through"
    );
    let _ = Write::flush(&mut std::io::stderr());
}
