//! End-to-end tests of `pocobelle dns`: the built binary is started on
//! loopback high ports against a fake upstream that each test controls
//! (answers, delays, drops, SERVFAIL, NXDOMAIN, truncation, garbage,
//! mismatched IDs), and driven by hand-built queries and by `dig`/`kdig`.
//! Nothing leaves 127.0.0.0/8.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{command_keeping_fds as command, slack};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

// ---------------------------------------------------------------- fake upstream

#[derive(Clone, Debug)]
enum Act {
    Answer(Ipv4Addr, u32),
    Delay(u64, Ipv4Addr, u32),
    Drop,
    ServFail,
    NxDomain(u32),
    /// UDP answer has TC set and no records; TCP gives the answer.
    Truncate(Ipv4Addr),
    /// Garbage bytes, then a response with a wrong ID (other address),
    /// then the real answer.
    NoiseFirst(Ipv4Addr),
    /// Only a response with a wrong ID.
    WrongIdOnly(Ipv4Addr),
    /// This many A records (192.0.2.0/24), too many for 512 bytes.
    Many(u8),
}

struct Fake {
    addr: SocketAddr,
    acts: Arc<Mutex<HashMap<String, Act>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    tcp: Arc<AtomicUsize>,
}

fn response_for(q: &Message, act: &Act) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    let query = q.queries[0].clone();
    let name = query.name().clone();
    m.add_query(query);
    match act {
        Act::Answer(ip, ttl) | Act::Delay(_, ip, ttl) => {
            m.add_answer(Record::from_rdata(name, *ttl, RData::A(A(*ip))));
        }
        Act::ServFail => m.metadata.response_code = ResponseCode::ServFail,
        Act::NxDomain(min) => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let zone = Name::from_ascii("test.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 2, 3, 4, *min);
            m.add_authority(Record::from_rdata(zone, 3600, RData::SOA(soa)));
        }
        Act::Truncate(_) => m.metadata.truncation = true,
        Act::NoiseFirst(ip) | Act::WrongIdOnly(ip) => {
            m.add_answer(Record::from_rdata(name, 300, RData::A(A(*ip))));
        }
        Act::Many(n) => {
            for i in 0..*n {
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    300,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
                ));
            }
        }
        Act::Drop => {}
    }
    m
}

impl Fake {
    fn start() -> Fake {
        Fake::start_on("127.0.0.1")
    }

    fn start_on(ip: &str) -> Fake {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((ip, 0)).unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind((ip, port)) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let acts: Arc<Mutex<HashMap<String, Act>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let tcp_count = Arc::new(AtomicUsize::new(0));
        let udp = Arc::new(udp);
        {
            let (acts, counts, udp) = (acts.clone(), counts.clone(), udp.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        return;
                    };
                    let Ok(q) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(first) = q.queries.first() else {
                        continue;
                    };
                    let name = first.name().to_ascii().to_lowercase();
                    *counts.lock().unwrap().entry(name.clone()).or_default() += 1;
                    let act = acts
                        .lock()
                        .unwrap()
                        .get(&name)
                        .cloned()
                        .unwrap_or(Act::Answer(Ipv4Addr::new(192, 0, 2, 1), 300));
                    let udp = udp.clone();
                    std::thread::spawn(move || match &act {
                        Act::Drop => {}
                        Act::Delay(ms, ..) => {
                            std::thread::sleep(Duration::from_millis(*ms));
                            let _ = udp.send_to(&response_for(&q, &act).to_vec().unwrap(), peer);
                        }
                        Act::NoiseFirst(_) => {
                            let _ = udp.send_to(b"\x01\x02garbage that is not DNS", peer);
                            let mut wrong = q.clone();
                            wrong.metadata.id = q.metadata.id.wrapping_add(1);
                            let bad =
                                response_for(&wrong, &Act::Answer(Ipv4Addr::new(6, 6, 6, 6), 300));
                            let _ = udp.send_to(&bad.to_vec().unwrap(), peer);
                            std::thread::sleep(Duration::from_millis(20));
                            let _ = udp.send_to(&response_for(&q, &act).to_vec().unwrap(), peer);
                        }
                        Act::WrongIdOnly(_) => {
                            let mut wrong = q.clone();
                            wrong.metadata.id = q.metadata.id.wrapping_add(1);
                            let _ =
                                udp.send_to(&response_for(&wrong, &act).to_vec().unwrap(), peer);
                        }
                        _ => {
                            let _ = udp.send_to(&response_for(&q, &act).to_vec().unwrap(), peer);
                        }
                    });
                }
            });
        }
        {
            let (acts, tcp_count) = (acts.clone(), tcp_count.clone());
            std::thread::spawn(move || {
                for stream in tcp.incoming() {
                    let Ok(mut s) = stream else { continue };
                    tcp_count.fetch_add(1, Ordering::SeqCst);
                    let acts = acts.clone();
                    std::thread::spawn(move || {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).is_err() {
                            return;
                        }
                        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut buf).is_err() {
                            return;
                        }
                        let Ok(q) = Message::from_vec(&buf) else {
                            return;
                        };
                        let name = q.queries[0].name().to_ascii().to_lowercase();
                        let act = acts.lock().unwrap().get(&name).cloned();
                        let act = match act {
                            Some(Act::Truncate(ip)) => Act::Answer(ip, 300),
                            Some(a) => a,
                            None => Act::Answer(Ipv4Addr::new(192, 0, 2, 1), 300),
                        };
                        let out = response_for(&q, &act).to_vec().unwrap();
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        let _ = s.write_all(&framed);
                    });
                }
            });
        }
        Fake {
            addr,
            acts,
            counts,
            tcp: tcp_count,
        }
    }

    fn set(&self, name: &str, act: Act) {
        self.acts.lock().unwrap().insert(name.to_lowercase(), act);
    }

    fn count(&self, name: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(&name.to_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------- the service

struct Dns {
    child: Child,
    port: u16,
    /// The port of a `[::1]:0` listener, when configured.
    port6: Arc<Mutex<Option<u16>>>,
    dir: PathBuf,
    config: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

fn test_dir(name: &str) -> PathBuf {
    common::service_dir("pcb-dns", name)
}

fn write_config(dir: &Path, upstreams: &[SocketAddr], extra: &str) -> PathBuf {
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[system]\nrun_dir = \"{run}\"\ndata_dir = \"{data}\"\n[log]\nlevel = \"debug\"\n[dns]\n{listen}upstreams = [{ups}]\nprime_times = []\n{extra}\n",
        listen = if extra.contains("listen =") {
            ""
        } else {
            "listen = [\"127.0.0.1:0\"]\n"
        },
        run = dir.join("run").display(),
        data = dir.join("data").display(),
        ups = ups.join(", "),
    );
    let path = dir.join("pocobelle.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Dns {
    fn start(dir: &Path, config: PathBuf) -> Dns {
        Dns::start_with(dir, config, |_| {})
    }

    fn start_with(dir: &Path, config: PathBuf, tweak: impl FnOnce(&mut Command)) -> Dns {
        let mut c = command();
        c.arg("dns").arg("--config").arg(&config);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tweak(&mut c);
        let mut child = c.spawn().expect("spawn pocobelle dns");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let port6: Arc<Mutex<Option<u16>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (log, port6) = (log.clone(), port6.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("listening on udp+tcp [::1]:").nth(1) {
                        *port6.lock().unwrap() = rest.trim().parse::<u16>().ok();
                    }
                    if let Some(rest) = line.split("listening on udp+tcp 127.0.0.1:").nth(1) {
                        let _ = tx.send(rest.trim().parse::<u16>().unwrap());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no listening line; log: {:?}", log.lock().unwrap()));
        Dns {
            child,
            port,
            port6,
            dir: dir.to_path_buf(),
            config,
            log,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_contains(&self, s: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(s))
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "dns exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "dns did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn query_bytes(name: &str, t: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

/// One UDP query from `from`; `None` when no answer came within `wait`.
fn ask_from(
    from: &str,
    server: SocketAddr,
    name: &str,
    wait: Duration,
) -> Option<(Message, Duration)> {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let id = (Instant::now().elapsed().subsec_nanos() & 0xFFFF) as u16 ^ 0x5A5A;
    let t0 = Instant::now();
    s.send_to(&query_bytes(name, RecordType::A, id), server)
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).expect("reply decodes");
    assert_eq!(m.metadata.id, id);
    Some((m, t0.elapsed()))
}

fn ask(server: SocketAddr, name: &str) -> Message {
    ask_from("127.0.0.1", server, name, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no answer for {name}"))
        .0
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

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is required for these tests: run `make setup` (dnsutils, knot-dnsutils)");
}

fn run_tool(args: &[&str]) -> String {
    let out = Command::new(tool(args[0]))
        .args(&args[1..])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------- tests

#[test]
fn dig_local_data_tcp_and_refused_outside_clients() {
    let dir = test_dir("local");
    let cfg = write_config(
        &dir,
        &[],
        "allow = [\"127.0.0.1/32\", \"::1/128\"]\n[[dns.hosts]]\nname = \"nas\"\naddrs = [\"192.168.1.10\", \"fd00::10\"]\n",
    );
    let dns = Dns::start(&dir, cfg);
    let p = dns.port.to_string();
    let out = run_tool(&[
        "dig",
        "+short",
        "@127.0.0.1",
        "-p",
        &p,
        "NAS.home.arpa",
        "A",
    ]);
    assert_eq!(out.trim(), "192.168.1.10");
    let out = run_tool(&[
        "dig",
        "+short",
        "+tcp",
        "@127.0.0.1",
        "-p",
        &p,
        "nas.home.arpa",
        "AAAA",
    ]);
    assert_eq!(out.trim(), "fd00::10");
    let out = run_tool(&[
        "dig",
        "+short",
        "@127.0.0.1",
        "-p",
        &p,
        "-x",
        "192.168.1.10",
    ]);
    assert_eq!(out.trim(), "nas.home.arpa.");
    let out = run_tool(&["kdig", "@127.0.0.1", "-p", &p, "ghost.home.arpa", "A"]);
    assert!(out.contains("NXDOMAIN") && out.contains("SOA"), "{out}");
    assert!(out.contains("qr aa rd ra"), "authoritative: {out}");
    // 127.0.0.2 is outside the allow list.
    let out = run_tool(&[
        "dig",
        "-b",
        "127.0.0.2",
        "@127.0.0.1",
        "-p",
        &p,
        "nas.home.arpa",
    ]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let (m, _) = ask_from(
        "127.0.0.2",
        dns.addr(),
        "www.example.org.",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // No upstreams: a miss is SERVFAIL, never NXDOMAIN.
    let out = run_tool(&["dig", "@127.0.0.1", "-p", &p, "www.example.org"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    dns.stop();
}

#[test]
fn malformed_packets_get_formerr_or_silence_and_the_server_survives() {
    let dir = test_dir("fuzz");
    let cfg = write_config(
        &dir,
        &[],
        "rate_limit_qps = 100000\nrate_limit_burst = 100000\n",
    );
    let dns = Dns::start(&dir, cfg);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let base = query_bytes("x.home.arpa.", RecordType::A, 0x4242);
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buf = [0u8; 4096];
    for i in 0..300 {
        let mut p = if i % 4 == 0 {
            (0..(rnd() % 60)).map(|_| rnd() as u8).collect()
        } else {
            base.clone()
        };
        if !p.is_empty() {
            let at = (rnd() as usize) % p.len();
            p[at] ^= (rnd() as u8) | 1;
        }
        s.send_to(&p, dns.addr()).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            assert!(n >= 12);
            assert_eq!(buf[0..2], p[0..2], "reply carries the query's ID");
            assert_ne!(buf[2] & 0x80, 0, "reply is a response");
        }
    }
    // A header-only packet with a bad question count: FORMERR.
    let mut bad = base.clone();
    bad[5] = 2;
    s.send_to(&bad, dns.addr()).unwrap();
    let (n, _) = s.recv_from(&mut buf).expect("FORMERR");
    assert_eq!(buf[3] & 0xF, 1);
    assert!(n >= 12);
    // Still alive and answering.
    let m = ask(dns.addr(), "x.home.arpa.");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    dns.stop();
}

#[test]
fn cache_hit_keeps_case_and_counts_ttl_down() {
    let up = Fake::start();
    up.set(
        "www.example.org.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 7), 300),
    );
    let dir = test_dir("hit");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], ""));
    let m1 = ask(dns.addr(), "www.example.org.");
    assert_eq!(a_of(&m1), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    std::thread::sleep(Duration::from_millis(1100));
    let out = run_tool(&[
        "dig",
        "@127.0.0.1",
        "-p",
        &dns.port.to_string(),
        "WwW.ExAmple.ORG",
        "A",
    ]);
    assert!(
        out.contains("WwW.ExAmple.ORG."),
        "question case kept: {out}"
    );
    let m2 = ask(dns.addr(), "WWW.example.org.");
    assert_eq!(m2.queries[0].name().to_ascii(), "WWW.example.org.");
    assert_eq!(a_of(&m2), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert!(
        m2.answers[0].ttl < 300,
        "TTL counts down: {}",
        m2.answers[0].ttl
    );
    assert_eq!(
        up.count("www.example.org."),
        1,
        "later queries came from the cache"
    );
    dns.stop();
}

#[test]
fn identical_questions_are_coalesced() {
    let up = Fake::start();
    up.set(
        "slow.example.",
        Act::Delay(400, Ipv4Addr::new(192, 0, 2, 9), 300),
    );
    let dir = test_dir("coalesce");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], ""));
    let addr = dns.addr();
    let clients: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || ask(addr, "slow.example.")))
        .collect();
    for c in clients {
        assert_eq!(a_of(&c.join().unwrap()), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    }
    assert_eq!(
        up.count("slow.example."),
        1,
        "20 clients, one upstream query"
    );
    dns.stop();
}

#[test]
fn budget_exhausted_is_servfail_not_nxdomain() {
    let up = Fake::start();
    up.set("void.example.", Act::Drop);
    let dir = test_dir("budget");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], "budget_ms = 1500\n"));
    let (m, took) = ask_from(
        "127.0.0.1",
        dns.addr(),
        "void.example.",
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(1400),
        "answered before the budget: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6) * slack(),
        "budget not enforced: {took:?}"
    );
    assert!(up.count("void.example.") >= 2, "retried within the budget");
    dns.stop();
}

#[test]
fn failing_server_is_skipped_for_a_working_one() {
    let bad = Fake::start();
    let good = Fake::start();
    bad.set("mail.example.", Act::ServFail);
    good.set(
        "mail.example.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 25), 300),
    );
    let dir = test_dir("failover");
    let dns = Dns::start(&dir, write_config(&dir, &[bad.addr, good.addr], ""));
    let m = ask(dns.addr(), "mail.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 25)]);
    // A dead (silent) first server: the second is raced after a short delay.
    let silent = Fake::start();
    silent.set("race.example.", Act::Drop);
    good.set(
        "race.example.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 26), 300),
    );
    let dir2 = test_dir("race");
    let dns2 = Dns::start(&dir2, write_config(&dir2, &[silent.addr, good.addr], ""));
    let (m, took) = ask_from(
        "127.0.0.1",
        dns2.addr(),
        "race.example.",
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 26)]);
    assert!(
        took < Duration::from_millis(1500) * slack(),
        "race too slow: {took:?}"
    );
    dns.stop();
    dns2.stop();
}

#[test]
fn nxdomain_is_passed_on_and_cached_negatively() {
    let up = Fake::start();
    up.set("nope.test.", Act::NxDomain(120));
    let dir = test_dir("neg");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], ""));
    for _ in 0..3 {
        let m = ask(dns.addr(), "nope.test.");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        assert!(
            m.authorities[0].ttl <= 120,
            "SOA minimum bounds the negative TTL"
        );
    }
    assert_eq!(up.count("nope.test."), 1);
    dns.stop();
}

#[test]
fn truncated_upstream_answer_is_retried_over_tcp() {
    let up = Fake::start();
    up.set("big.example.", Act::Truncate(Ipv4Addr::new(192, 0, 2, 53)));
    let dir = test_dir("tcp");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], ""));
    let m = ask(dns.addr(), "big.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert!(!m.metadata.truncation);
    assert_eq!(up.tcp.load(Ordering::SeqCst), 1);
    // And over TCP from a real client, pipelined queries on one connection.
    let out = run_tool(&[
        "kdig",
        "+tcp",
        "+keepopen",
        "@127.0.0.1",
        "-p",
        &dns.port.to_string(),
        "big.example",
        "A",
        "big.example",
        "A",
    ]);
    assert_eq!(out.matches("192.0.2.53").count(), 2, "{out}");
    dns.stop();
}

#[test]
fn garbage_and_mismatched_ids_from_upstream_are_dropped() {
    let up = Fake::start();
    up.set(
        "noisy.example.",
        Act::NoiseFirst(Ipv4Addr::new(192, 0, 2, 77)),
    );
    up.set(
        "spoofed.example.",
        Act::WrongIdOnly(Ipv4Addr::new(6, 6, 6, 6)),
    );
    let dir = test_dir("noise");
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], "budget_ms = 1500\n"));
    let m = ask(dns.addr(), "noisy.example.");
    assert_eq!(
        a_of(&m),
        vec![Ipv4Addr::new(192, 0, 2, 77)],
        "the spoofed answer was taken"
    );
    let m = ask(dns.addr(), "spoofed.example.");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(a_of(&m).is_empty());
    dns.stop();
}

#[test]
fn expired_entries_are_served_stale_when_upstream_fails_or_is_slow() {
    let up = Fake::start();
    up.set("old.example.", Act::Answer(Ipv4Addr::new(192, 0, 2, 30), 1));
    up.set("lag.example.", Act::Answer(Ipv4Addr::new(192, 0, 2, 31), 1));
    let dir = test_dir("stale");
    let dns = Dns::start(
        &dir,
        write_config(
            &dir,
            &[up.addr],
            "min_ttl = 1\nstale_after_ms = 400\nbudget_ms = 3000\n",
        ),
    );
    assert_eq!(
        a_of(&ask(dns.addr(), "old.example.")),
        vec![Ipv4Addr::new(192, 0, 2, 30)]
    );
    assert_eq!(
        a_of(&ask(dns.addr(), "lag.example.")),
        vec![Ipv4Addr::new(192, 0, 2, 31)]
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Upstream now fails outright: the stale answer, TTL 30.
    up.set("old.example.", Act::ServFail);
    let m = ask(dns.addr(), "old.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 30)]);
    assert_eq!(m.answers[0].ttl, 30);
    // Upstream is slow: stale after the client timeout, not after the budget.
    up.set(
        "lag.example.",
        Act::Delay(2000, Ipv4Addr::new(192, 0, 2, 32), 300),
    );
    let (m, took) = ask_from(
        "127.0.0.1",
        dns.addr(),
        "lag.example.",
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 31)]);
    assert_eq!(m.answers[0].ttl, 30);
    assert!(
        took < Duration::from_millis(1500) * slack(),
        "stale answer took {took:?}"
    );
    // The refresh went on in the background and landed in the cache.
    std::thread::sleep(Duration::from_millis(2000) + Duration::from_millis(500) * slack());
    let m = ask(dns.addr(), "lag.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 32)]);
    dns.stop();
}

#[test]
fn snapshot_round_trip_priming_and_readiness() {
    let up = Fake::start();
    up.set("hot.example.", Act::Answer(Ipv4Addr::new(192, 0, 2, 40), 2));
    up.set(
        "cold.example.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 41), 600),
    );
    let dir = test_dir("snap");
    let cfg = write_config(&dir, &[up.addr], "min_ttl = 1\n");
    let dns = Dns::start(&dir, cfg.clone());
    for _ in 0..5 {
        ask(dns.addr(), "hot.example.");
    }
    ask(dns.addr(), "cold.example.");
    // The control socket shows the hot set.
    let out = command()
        .args(["dns", "stats", "--config"])
        .arg(&dns.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("hot.example. A") && text.contains("hit rate"),
        "{text}"
    );
    dns.stop();
    let snap = dir.join("data/dns.snapshot");
    assert!(snap.exists(), "snapshot written at SIGTERM");
    assert!(!dir.join("data/dns.snapshot.tmp").exists());

    // Restart with every upstream gone: answers come from the snapshot.
    let dead = Fake::start();
    dead.set("hot.example.", Act::Drop);
    dead.set("cold.example.", Act::Drop);
    let cfg2 = write_config(
        &dir,
        &[dead.addr],
        "min_ttl = 1\nstale_after_ms = 300\nprime_budget_secs = 2\n",
    );
    std::thread::sleep(Duration::from_millis(2100));
    let dns = Dns::start(&dir, cfg2);
    let m = ask(dns.addr(), "cold.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 41)]);
    assert!(m.answers[0].ttl <= 600 && m.answers[0].ttl > 500);
    let m = ask(dns.addr(), "hot.example.");
    assert_eq!(
        a_of(&m),
        vec![Ipv4Addr::new(192, 0, 2, 40)],
        "expired entry served stale"
    );
    assert_eq!(m.answers[0].ttl, 30);
    // Priming gave up after its budget and still reported primed.
    let primed = dir.join("run/dns.primed");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !primed.exists() {
        assert!(Instant::now() < deadline, "never primed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dead.count("hot.example.") >= 1,
        "priming asked for the hot name"
    );
    dns.stop();

    // Restart with upstream back: priming refreshes the hot name, and the
    // readiness descriptor gets "primed".
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::process::CommandExt;
    let wfd = w.as_raw_fd();
    let before = up.count("hot.example.");
    let cfg = write_config(&dir, &[up.addr], "min_ttl = 1\n");
    let dns = Dns::start_with(&dir, cfg, |c| {
        c.env("POCOBELLE_READY_FD", "7");
        // SAFETY: dup2 is async-signal-safe; fd 7 is what the child expects.
        unsafe {
            c.pre_exec(move || {
                if libc_dup2(wfd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    drop(w);
    let mut reader = std::fs::File::from(r);
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "primed\n");
    assert!(
        up.count("hot.example.") > before,
        "hot name re-resolved at start: {:?}",
        dns.log.lock().unwrap()
    );
    assert!(dir.join("run/dns.primed").exists());
    let _ = reader.into_raw_fd();
    dns.stop();
}

fn libc_dup2(a: i32, b: i32) -> i32 {
    // SAFETY: plain dup2 on descriptors we own.
    unsafe { libc::dup2(a, b) }
}

#[test]
fn corrupt_snapshot_is_logged_and_ignored() {
    let up = Fake::start();
    let dir = test_dir("corrupt");
    std::fs::write(dir.join("data/dns.snapshot"), b"PCBLDNS\x01 this is torn").unwrap();
    let dns = Dns::start(&dir, write_config(&dir, &[up.addr], ""));
    let m = ask(dns.addr(), "after.example.");
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(
        dns.log_contains("snapshot ignored"),
        "{:?}",
        dns.log.lock().unwrap()
    );
    let out = command()
        .args(["dns", "prime", "--config"])
        .arg(&dns.config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("prim"));
    let _ = &dns.dir;
    dns.stop();
}

#[test]
fn ipv6_listener_and_upstream_and_tc_to_udp_clients() {
    let up = Fake::start_on("::1");
    up.set(
        "v6.example.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 66), 300),
    );
    up.set("many.example.", Act::Many(40));
    let dir = test_dir("v6");
    let cfg = write_config(
        &dir,
        &[up.addr],
        "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\n",
    );
    let dns = Dns::start(&dir, cfg);
    // The IPv6 listener's log line comes right after the IPv4 one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let port6 = loop {
        if let Some(p) = *dns.port6.lock().unwrap() {
            break p;
        }
        assert!(Instant::now() < deadline, "no [::1] listener");
        std::thread::sleep(Duration::from_millis(20));
    };
    let p6 = port6.to_string();
    let out = run_tool(&["dig", "+short", "@::1", "-p", &p6, "v6.example", "A"]);
    assert_eq!(out.trim(), "192.0.2.66");
    let out = run_tool(&[
        "dig",
        "+short",
        "+tcp",
        "@::1",
        "-p",
        &p6,
        "v6.example",
        "A",
    ]);
    assert_eq!(out.trim(), "192.0.2.66");
    // 40 records do not fit 512 bytes: a client without EDNS gets TC ...
    let m = ask(dns.addr(), "many.example.");
    assert!(m.metadata.truncation, "TC set");
    assert!(m.answers.is_empty());
    // ... and dig, retrying over TCP by itself, gets all of them.
    let out = run_tool(&[
        "dig",
        "+short",
        "+noedns",
        "@127.0.0.1",
        "-p",
        &dns.port.to_string(),
        "many.example",
        "A",
    ]);
    assert_eq!(out.lines().count(), 40, "{out}");
    dns.stop();
}

#[test]
fn per_client_rate_limit_drops_a_flood() {
    let dir = test_dir("rate");
    let cfg = write_config(&dir, &[], "rate_limit_qps = 1\nrate_limit_burst = 5\n");
    let dns = Dns::start(&dir, cfg);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for i in 0..30u16 {
        s.send_to(&query_bytes("x.home.arpa.", RecordType::A, i), dns.addr())
            .unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 512];
    while s.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!(
        (5..=8).contains(&answers),
        "{answers} answers to a 30-query flood"
    );
    dns.stop();
}

/// Replaces `run/dhcp-dns` as `dhcp-event` does (a rename).
fn write_dhcp_dns(dir: &Path, text: &str) {
    let tmp = dir.join("run/dhcp-dns.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("run/dhcp-dns")).unwrap();
}

fn dns_stats(dns: &Dns) -> String {
    let out = command()
        .args(["dns", "stats", "--config"])
        .arg(&dns.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// Asks fresh names `<prefix><i>.dhcp.test.` (each answered 192.0.2.51
/// by `old` and 192.0.2.52 by `new`) until the answer comes from `new`;
/// the watcher looks at the file every 2 s.
fn wait_for_upstream(dns: &Dns, prefix: &str, old: Option<&Fake>, new: &Fake) {
    let deadline = Instant::now() + Duration::from_secs(15) * slack();
    for i in 0.. {
        let name = format!("{prefix}{i}.dhcp.test.");
        if let Some(old) = old {
            old.set(&name, Act::Answer(Ipv4Addr::new(192, 0, 2, 51), 300));
        }
        new.set(&name, Act::Answer(Ipv4Addr::new(192, 0, 2, 52), 300));
        let m = ask(dns.addr(), &name);
        if a_of(&m) == [Ipv4Addr::new(192, 0, 2, 52)] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: still not from {}: {m:?}; log: {:?}",
            new.addr,
            dns.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dhcp_offered_servers_are_used_when_no_upstreams_are_configured() {
    let first = Fake::start();
    let second = Fake::start();
    let dir = test_dir("dhcp-dns");
    let dns = Dns::start(&dir, write_config(&dir, &[], ""));
    // No file yet: a miss is SERVFAIL at once, logged once at start.
    let m = ask(dns.addr(), "early.dhcp.test.");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(dns.log_contains("upstreams from DHCP: none"));
    assert!(dns_stats(&dns).contains("upstreams: none (none configured"));

    write_dhcp_dns(
        &dir,
        &format!(
            "# from the lease\n127.0.0.1:{}\nnot-an-address\n",
            first.addr.port()
        ),
    );
    wait_for_upstream(&dns, "a", None, &first);
    assert!(dns.log_contains(&format!("upstreams from DHCP: {}", first.addr)));
    assert!(dns.log_contains("dhcp-dns:3: expected IP, IP:port or [IPv6]:port: skipped"));
    let stats = dns_stats(&dns);
    assert!(
        stats.contains("upstreams (offered by DHCP") && stats.contains(&first.addr.to_string()),
        "{stats}"
    );
    let m = ask(dns.addr(), "early.dhcp.test.");
    assert_eq!(
        a_of(&m),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "the default answer"
    );

    // A new lease names another server: it replaces the first.
    write_dhcp_dns(&dir, &format!("127.0.0.1:{}\n", second.addr.port()));
    wait_for_upstream(&dns, "b", Some(&first), &second);
    first.set(
        "c.dhcp.test.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 51), 300),
    );
    second.set(
        "c.dhcp.test.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 52), 300),
    );
    assert_eq!(
        a_of(&ask(dns.addr(), "c.dhcp.test.")),
        [Ipv4Addr::new(192, 0, 2, 52)]
    );
    assert_eq!(first.count("c.dhcp.test."), 0);
    let changes = |dns: &Dns| {
        dns.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("upstreams from DHCP:"))
            .count()
    };
    assert_eq!(changes(&dns), 3, "one line per change");
    dns.stop();
}

#[test]
fn dhcp_file_is_ignored_when_upstreams_are_configured() {
    let configured = Fake::start();
    let offered = Fake::start();
    let dir = test_dir("dhcp-dns-cfg");
    write_dhcp_dns(&dir, &format!("127.0.0.1:{}\n", offered.addr.port()));
    let dns = Dns::start(&dir, write_config(&dir, &[configured.addr], ""));
    configured.set(
        "w.dhcp.test.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 61), 300),
    );
    offered.set(
        "w.dhcp.test.",
        Act::Answer(Ipv4Addr::new(192, 0, 2, 62), 300),
    );
    assert_eq!(
        a_of(&ask(dns.addr(), "w.dhcp.test.")),
        [Ipv4Addr::new(192, 0, 2, 61)]
    );
    assert_eq!(offered.count("w.dhcp.test."), 0);
    assert!(!dns.log_contains("upstreams from DHCP"));
    assert!(dns_stats(&dns).contains("upstreams (configured):"));
    dns.stop();
}
