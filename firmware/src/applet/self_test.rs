//! `pocobelle self-test`: proves on the running CPU that the pieces every
//! service depends on work: configuration parsing (with line-numbered
//! errors), a DNS message round trip over UDP on loopback, and TLS
//! handshakes with each of ring's key-exchange groups over TCP on
//! loopback. `make test` runs it on the ARM builds under qemu-user with
//! the oldest CPU of each class. It binds only 127.0.0.1 ephemeral ports.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// Each network check must finish within this time, even under emulation.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

const HELP: &str = "\
Usage: pocobelle self-test

Runs each check, prints `ok` or `FAIL` with the reason, and exits 1 if any
check failed. Uses only 127.0.0.1.
";

type CheckResult = Result<String, String>;

pub fn run(args: Vec<OsString>) -> ExitCode {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        return super::usage_error("self-test", format!("unexpected argument {a:?}"));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("self-test: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks: Vec<(&str, CheckResult)> = vec![
        ("config", check_config()),
        ("dns-udp", rt.block_on(timed(dns_round_trip()))),
        (
            "tls-x25519",
            rt.block_on(timed(tls_handshake(rustls::crypto::ring::kx_group::X25519))),
        ),
        (
            "tls-p256",
            rt.block_on(timed(tls_handshake(
                rustls::crypto::ring::kx_group::SECP256R1,
            ))),
        ),
        (
            "tls-p384",
            rt.block_on(timed(tls_handshake(
                rustls::crypto::ring::kx_group::SECP384R1,
            ))),
        ),
    ];
    let mut failed = 0;
    for (name, result) in &checks {
        match result {
            Ok(detail) => println!("ok   {name:<12} {detail}"),
            Err(why) => {
                failed += 1;
                println!("FAIL {name:<12} {why}");
            }
        }
    }
    println!("{} passed, {} failed", checks.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn timed(f: impl Future<Output = CheckResult>) -> CheckResult {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(format!("no result within {CHECK_TIMEOUT:?}")))
}

fn check_config() -> CheckResult {
    let path = Path::new("pocobelle.toml");
    let good = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
    Config::parse(path, good).map_err(|e| format!("shipped example rejected: {e}"))?;
    let bad = "[log]\nlevel = \"info\"\n[system]\nhostnme = \"x\"\n";
    match Config::parse(path, bad) {
        Ok(_) => Err("a misspelt key was accepted".into()),
        Err(e) if e.to_string().contains(":4:") => {
            Ok("example valid; typo found on its line".into())
        }
        Err(e) => Err(format!("typo reported without its line: {e}")),
    }
}

async fn dns_round_trip() -> CheckResult {
    use crate::dns::wire;
    let server = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let server_addr = server.local_addr().map_err(|e| e.to_string())?;
    let answer_ip = Ipv4Addr::new(192, 0, 2, 53);
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let (n, peer) = server
            .recv_from(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let wire::Parsed::Query(query) = wire::parse_query(&buf[..n]) else {
            return Err("server decode: not a query".to_string());
        };
        let answer = wire::LocalRecord {
            owner: None,
            rtype: wire::TYPE_A,
            ttl: 300,
            rdata: &answer_ip.octets(),
        };
        let bytes = wire::local_reply(&query, wire::RCODE_NOERROR, &[answer], &[]);
        server
            .send_to(&bytes, peer)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });

    let client = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let name = "self-test.home.arpa.";
    let qname = wire::name_from_text(name).map_err(|e| e.to_string())?;
    let id = crate::dns::upstream::random_id();
    let key = wire::Key::new(&qname, wire::TYPE_A, wire::CLASS_IN);
    let bytes = wire::build_upstream_query(id, &key);
    client
        .send_to(&bytes, server_addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let (n, _) = client
        .recv_from(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    responder.await.map_err(|e| format!("responder: {e}"))??;
    let reply = &buf[..n];
    let w = crate::dns::upstream::accept(reply, id, &key)
        .ok_or("reply does not match the query, or is malformed")?;
    if w.rcode() != wire::RCODE_NOERROR {
        return Err(format!("rcode {}", w.rcode()));
    }
    match w.records.first() {
        Some(r)
            if r.rtype == wire::TYPE_A
                && reply[r.rdata_at..r.rdata_at + 4] == answer_ip.octets() =>
        {
            Ok(format!("{name} A {answer_ip}, {n} bytes"))
        }
        other => Err(format!("unexpected answer {other:?}")),
    }
}

async fn tls_handshake(group: &'static dyn rustls::crypto::SupportedKxGroup) -> CheckResult {
    let provider = || rustls::crypto::CryptoProvider {
        kx_groups: vec![group],
        ..rustls::crypto::ring::default_provider()
    };
    let ck = crate::tls::selfsigned::generate(
        &["localhost"],
        crate::tls::selfsigned::LONG_AGO,
        crate::tls::selfsigned::NO_EXPIRY,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| format!("certificate: {e}"))?;
    let cert = CertificateDer::from(ck.cert_der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pkcs8));

    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| format!("server config: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| format!("root: {e}"))?;
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        buf.reverse();
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });

    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let domain = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(domain, tcp)
        .await
        .map_err(|e| format!("client: {e}"))?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    server.await.map_err(|e| format!("server task: {e}"))??;
    if &buf != b"olleh" {
        return Err(format!("echo mismatch: {buf:?}"));
    }
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    Ok(format!("{version} {suite} via {:?}", group.name()))
}
