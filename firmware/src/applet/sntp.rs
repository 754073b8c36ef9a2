//! `pocobelle sntp`: the clock service init supervises when
//! `init.sntp.servers` is set (started after dns, so names resolve
//! through the local cache). It asks the servers in turn (RFC 4330,
//! core in `crate::init::sntp`), steps the clock when the offset is at
//! least `init.sntp.step_ms` and slews it otherwise, records the result
//! in `<run_dir>/sntp.state` for `pocobelle status`, then sleeps
//! `init.sntp.poll_secs` (after a failure: 15 s, doubling up to that).
//! The clock is changed only through `Sys`, so tests record it instead.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::init::sntp::{self, Correction, NtpTime, SyncState};
use crate::sys::Sys;

const HELP: &str = "\
Usage: pocobelle sntp [--config FILE]
Keeps the clock set from init.sntp.servers (run by init as a service).
";

/// One SNTP exchange waits this long for its reply.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many addresses of one server name are tried.
pub const MAX_ADDRS_PER_SERVER: usize = 4;
/// First retry delay after a failed round.
pub const RETRY_MIN: Duration = Duration::from_secs(15);

pub fn run(args: Vec<OsString>) -> ExitCode {
    let args = match super::parse_args("sntp", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Some(w) = args.words.first() {
        return super::usage_error("sntp", format!("unexpected argument {w:?}"));
    }
    let cfg = match super::load_config(&args.config_path()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::logging::init("sntp", cfg.log.level.to_filter());
    let s = &cfg.init.sntp;
    if s.servers.is_empty() {
        log::error!("sntp: init.sntp.servers is empty; nothing to do");
        return ExitCode::FAILURE;
    }
    let servers: Vec<(String, u16)> = s
        .servers
        .iter()
        .filter_map(|x| sntp::parse_server(x))
        .collect();
    let resolver = cfg
        .dns
        .listen
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)));
    let step = Duration::from_millis(s.step_ms as u64);
    let poll = Duration::from_secs(s.poll_secs as u64);
    let state_file = cfg.system.run_dir.join(sntp::STATE_FILE);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("sntp: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sys = crate::sys::RealSys;
    rt.block_on(async {
        let mut retry = RETRY_MIN;
        loop {
            let wait = match sync_once(&mut sys, &servers, resolver, step).await {
                Ok(st) => {
                    if let Err(e) = write_state(&state_file, &st) {
                        log::warn!("sntp: {}: {e}", state_file.display());
                    }
                    retry = RETRY_MIN;
                    poll
                }
                Err(e) => {
                    log::warn!(
                        "sntp: no server answered usefully ({e}); next try in {} s",
                        retry.as_secs()
                    );
                    let w = retry;
                    retry = (retry * 2).min(poll);
                    w
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

fn write_state(path: &Path, st: &SyncState) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, st.to_line())?;
    std::fs::rename(&tmp, path)
}

fn now_unix() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

fn now_ntp() -> NtpTime {
    let (s, n) = now_unix();
    NtpTime::from_unix(s, n)
}

/// The addresses of a server: itself when it is an address, else its
/// AAAA and A records from the local DNS cache.
async fn resolve(resolver: SocketAddr, host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = crate::mail::name::Name::from_utf8(host).map_err(|e| e.to_string())?;
    crate::mail::mx::addresses(resolver, &name)
        .await
        .map_err(|e| e.to_string())
}

/// One request to `addr`; replies that fail the checks are logged and
/// the wait goes on until [`QUERY_TIMEOUT`].
pub async fn query(addr: SocketAddr) -> Result<sntp::Sample, String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(addr).await.map_err(|e| e.to_string())?;
    let t1 = now_ntp();
    sock.send(&sntp::request(t1))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    let mut buf = [0u8; 512];
    let mut last = String::from("no reply");
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "{addr}: {last} within {} s",
                    QUERY_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(e)) => return Err(format!("{addr}: {e}")),
            Ok(Ok(n)) => n,
        };
        let t4 = now_ntp();
        match sntp::parse_reply(&buf[..n], t1, t4) {
            Ok(s) => return Ok(s),
            Err(e) => {
                log::warn!("sntp: {addr}: reply refused: {e}");
                last = e.to_string();
                if matches!(
                    e,
                    sntp::SntpError::KissOfDeath(_) | sntp::SntpError::Unsynchronised
                ) {
                    return Err(format!("{addr}: {e}"));
                }
            }
        }
    }
}

/// One round: the first server that gives a good sample sets the clock.
pub async fn sync_once(
    sys: &mut dyn Sys,
    servers: &[(String, u16)],
    resolver: SocketAddr,
    step: Duration,
) -> Result<SyncState, String> {
    let mut errors = Vec::new();
    for (host, port) in servers {
        let addrs = match resolve(resolver, host).await {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("{host}: {e}"));
                continue;
            }
        };
        for ip in addrs.into_iter().take(MAX_ADDRS_PER_SERVER) {
            let sample = match query(SocketAddr::new(ip, *port)).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let offset_ms = sample.offset_ns / 1_000_000;
            let how = sntp::correction(sample.offset_ns, step);
            let r = match how {
                Correction::Step => {
                    let (s, n) = now_unix();
                    let target = s as i64 * 1_000_000_000 + n as i64 + sample.offset_ns;
                    sys.set_clock(
                        target.div_euclid(1_000_000_000),
                        target.rem_euclid(1_000_000_000) as u32,
                    )
                }
                Correction::Slew => sys.slew_clock(sample.offset_ns / 1000),
            };
            if let Err(e) = r {
                errors.push(format!("{host}: cannot change the clock: {e}"));
                continue;
            }
            log::info!(
                "sntp: {host} ({ip}) stratum {}: offset {offset_ms} ms, delay {} ms; clock {}",
                sample.stratum,
                sample.delay_ns / 1_000_000,
                if how == Correction::Step {
                    "stepped"
                } else {
                    "slewed"
                }
            );
            return Ok(SyncState {
                server: host.clone(),
                offset_ms,
                at_unix: now_unix().0,
            });
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    /// A fake SNTP server on loopback whose clock is ours + `skew_ms`,
    /// answering with `mutate` applied to each reply.
    fn fake_server(skew_ms: i64, mutate: fn(&mut [u8])) -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                let (secs, nanos) = now_unix();
                let t = (secs as i64 * 1000 + nanos as i64 / 1_000_000 + skew_ms) as u64;
                let ts = NtpTime::from_unix(t / 1000, (t % 1000) as u32 * 1_000_000);
                let mut r = sntp::reply_for(&buf[..n], ts, ts, 2);
                mutate(&mut r);
                let _ = s.send_to(&r, peer);
            }
        });
        addr
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn one(addr: SocketAddr) -> Vec<(String, u16)> {
        vec![(addr.ip().to_string(), addr.port())]
    }

    const NO_DNS: &str = "127.0.0.1:9";

    #[test]
    fn large_offset_steps_the_clock() {
        let addr = fake_server(1_000_000, |_| {});
        let mut sys = FakeSys::default();
        let st = rt()
            .block_on(sync_once(
                &mut sys,
                &one(addr),
                NO_DNS.parse().unwrap(),
                Duration::from_millis(128),
            ))
            .unwrap();
        assert!((st.offset_ms - 1_000_000).abs() < 500, "{st:?}");
        assert_eq!(sys.calls.len(), 1, "{:?}", sys.calls);
        let set: f64 = sys.calls[0]
            .strip_prefix("set_clock ")
            .unwrap()
            .parse()
            .unwrap();
        let want = now_unix().0 as f64 + 1000.0;
        assert!((set - want).abs() < 2.0, "set {set}, want about {want}");
    }

    #[test]
    fn small_offset_is_slewed() {
        let addr = fake_server(-40, |_| {});
        let mut sys = FakeSys::default();
        let st = rt()
            .block_on(sync_once(
                &mut sys,
                &one(addr),
                NO_DNS.parse().unwrap(),
                Duration::from_millis(128),
            ))
            .unwrap();
        assert!((st.offset_ms + 40).abs() < 30, "{st:?}");
        let us: i64 = sys.calls[0]
            .strip_prefix("slew_clock ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((-70_000..-10_000).contains(&us), "{us}");
    }

    /// A fake DNS cache on loopback: `ntp.test.` has A 127.0.0.1 and
    /// no AAAA; the names it was asked are recorded.
    fn fake_dns(asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> SocketAddr {
        use hickory_proto::op::{Message, OpCode};
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{RData, Record, RecordType};
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let qq = q.queries[0].clone();
                asked
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", qq.name(), qq.query_type()));
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                if qq.query_type() == RecordType::A && qq.name().to_ascii() == "ntp.test." {
                    r.add_answer(Record::from_rdata(
                        qq.name().clone(),
                        60,
                        RData::A(A::new(127, 0, 0, 1)),
                    ));
                }
                r.add_query(qq);
                let _ = s.send_to(&r.to_vec().unwrap(), peer);
            }
        });
        addr
    }

    #[test]
    fn server_names_resolve_through_the_local_cache() {
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let dns = fake_dns(asked.clone());
        let ntp = fake_server(7_000, |_| {});
        let mut sys = FakeSys::default();
        let st = rt()
            .block_on(sync_once(
                &mut sys,
                &[("ntp.test".into(), ntp.port())],
                dns,
                Duration::from_millis(128),
            ))
            .unwrap();
        assert_eq!(st.server, "ntp.test");
        assert!((st.offset_ms - 7_000).abs() < 500, "{st:?}");
        assert!(sys.calls[0].starts_with("set_clock "), "{:?}", sys.calls);
        let asked = asked.lock().unwrap().clone();
        assert!(asked.contains(&"ntp.test. A".to_string()), "{asked:?}");
    }

    #[test]
    fn bad_servers_leave_the_clock_alone_and_the_next_one_is_used() {
        let unsync = fake_server(5_000_000, |r| r[0] = 3 << 6 | 4 << 3 | 4);
        let forged = fake_server(5_000_000, |r| r[24] ^= 1);
        let zero = fake_server(5_000_000, |r| r[40..48].fill(0));
        let kod = fake_server(5_000_000, |r| r[1] = 0);
        let mut sys = FakeSys::default();
        let servers: Vec<_> = [unsync, forged, zero, kod]
            .into_iter()
            .flat_map(one)
            .collect();
        let e = rt()
            .block_on(sync_once(
                &mut sys,
                &servers,
                NO_DNS.parse().unwrap(),
                Duration::from_millis(128),
            ))
            .unwrap_err();
        assert!(sys.calls.is_empty(), "{:?}", sys.calls);
        assert!(e.contains("not synchronised") && e.contains("kiss"), "{e}");
        // A good server after a bad one is used.
        let good = fake_server(3_000, |_| {});
        let servers: Vec<_> = [unsync, good].into_iter().flat_map(one).collect();
        let st = rt()
            .block_on(sync_once(
                &mut sys,
                &servers,
                NO_DNS.parse().unwrap(),
                Duration::from_millis(128),
            ))
            .unwrap();
        assert_eq!(st.server, "127.0.0.1");
        assert!(sys.calls[0].starts_with("set_clock "));
    }
}
