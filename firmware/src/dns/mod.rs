//! `pocobelle dns`: the household DNS cache. This module wires the parts
//! together (load the snapshot, bind the sockets, start priming, save
//! the snapshot hourly and at SIGTERM/SIGINT); the parts are:
//!
//! - `wire`: bounded parsing and building of DNS messages (pure);
//! - `cache`: the byte-bounded CLOCK cache with serve-stale (pure);
//! - `local`: static hosts and the local domain (pure);
//! - `upstream`: forwarders, RTTs, backoff, racing, TCP retry;
//! - `dhcp`: the forwarders of the DHCP lease when none are configured;
//! - `dot`: DNS-over-TLS connection pools for TLS forwarders;
//! - `service`: the query path, coalescing, serve-stale;
//! - `server`: UDP/TCP listeners, rate limit, control socket;
//! - `udpbatch`: recvmmsg/sendmmsg batches for the UDP listeners;
//! - `snapshot`: the warm-start file; `prime`: priming and readiness;
//! - `stats`, `ratelimit`.
//!
//! It never exits on bad input, a bad snapshot or a failing upstream.

pub mod cache;
pub mod dhcp;
pub mod dot;
pub mod index;
pub mod local;
pub mod prime;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod stats;
pub mod udpbatch;
pub mod upstream;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use service::Service;

/// Name of the control socket in `system.run_dir`.
pub const SOCKET_NAME: &str = "dns.sock";
/// Tries at binding TCP on the port the kernel gave UDP (port 0 configs).
const SAME_PORT_TRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Local data could not be built from the configuration.
    #[error("local data: {0}")]
    Local(#[from] local::LocalError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {0}")]
    Bind(#[from] server::BindError),
    /// Signal handlers could not be installed.
    #[error("signals: {0}")]
    Signal(std::io::Error),
}

/// Binds UDP and TCP on `addr`; with port 0, both on the same free port.
fn bind_pair(addr: SocketAddr) -> Result<(server::UdpServer, tokio::net::TcpListener), DnsError> {
    if addr.port() != 0 {
        return Ok((server::bind_udp(addr)?, server::bind_tcp(addr)?));
    }
    let mut last = None;
    for _ in 0..SAME_PORT_TRIES {
        let udp = server::bind_udp(addr)?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        match server::bind_tcp(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(DnsError::Bind)
        .unwrap_or(DnsError::Signal(std::io::ErrorKind::AddrInUse.into())))
}

/// Writes the snapshot now (the write itself runs off the query path).
pub async fn save_snapshot(svc: &Arc<Service>, dir: &Path) {
    let (n, encoded) = {
        let cache = svc.cache();
        let now = svc.now();
        let file = snapshot::encode_cache(&cache, now, svc.cfg.hot_names, snapshot::unix_now());
        (cache.len(), file)
    };
    let bytes = match encoded {
        Ok(b) => b,
        Err(e) => {
            log::warn!("snapshot not written: {e}");
            return;
        }
    };
    let len = bytes.len();
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || snapshot::write_atomic(&dir, &bytes)).await {
        Ok(Ok(())) => log::info!("snapshot written: {n} entries, {len} bytes"),
        Ok(Err(e)) => log::warn!("snapshot not written: {e}"),
        Err(e) => log::warn!("snapshot writer failed: {e}"),
    }
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), DnsError> {
    let svc = Arc::new(Service::new(cfg.dns.clone())?);
    let run_dir = cfg.system.run_dir.clone();
    let data_dir = cfg.system.data_dir.clone();
    if let Err(e) = std::fs::create_dir_all(&run_dir) {
        log::warn!("cannot create {}: {e}", run_dir.display());
    }
    if let Ok(mut r) = svc.ready.lock() {
        *r = Some(prime::Readiness::from_env(&run_dir));
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(DnsError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DnsError::Signal)?;

    // Start-up is over: give back the code only it ran, before the
    // snapshot fills the cache (the service's peak).
    let released = crate::sys::text::release_startup_text();
    log::debug!("dns: {} KiB of start-up code released", released / 1024);
    let hot = load_snapshot(&svc, &data_dir);

    let mut bound = Vec::with_capacity(cfg.dns.listen.len());
    let mut servers = Vec::with_capacity(cfg.dns.listen.len());
    for &addr in &cfg.dns.listen {
        let (udp, tcp) = bind_pair(addr)?;
        let local = udp.local_addr().ok();
        bound.push(local.unwrap_or(addr));
        servers.push((udp, tcp));
    }
    if cfg.dns.uses_dhcp_servers() {
        // Read before the first query is taken, then watched.
        let path = run_dir.join(dhcp::FILE_NAME);
        log::info!(
            "no upstreams configured: forwarding to the DHCP-offered servers in {}",
            path.display()
        );
        let mut w = dhcp::Watch::new(path, bound.clone());
        w.check(&svc);
        tokio::spawn(dhcp::watch(svc.clone(), w));
    }
    for ((udp, tcp), local) in servers.into_iter().zip(&bound) {
        log::info!("listening on udp+tcp {local}");
        tokio::spawn(server::serve_udp(svc.clone(), Arc::new(udp)));
        tokio::spawn(server::serve_tcp(svc.clone(), tcp));
    }

    let sock_path = run_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&sock_path);
    match tokio::net::UnixListener::bind(&sock_path) {
        Ok(l) => {
            tokio::spawn(server::serve_control(svc.clone(), l));
        }
        Err(e) => log::warn!("no control socket {}: {e}", sock_path.display()),
    }

    prime::start(&svc, Some(hot));
    let times = cfg.dns.prime_times_parsed();
    if !times.is_empty() {
        tokio::spawn(prime::at_times(svc.clone(), times));
    }
    let interval = Duration::from_secs(cfg.dns.snapshot_interval_secs as u64);
    let (svc2, dir2) = (svc.clone(), data_dir.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tick.tick().await;
            save_snapshot(&svc2, &dir2).await;
        }
    });

    tokio::select! {
        _ = sigterm.recv() => log::info!("SIGTERM: saving the snapshot"),
        _ = sigint.recv() => log::info!("SIGINT: saving the snapshot"),
    }
    save_snapshot(&svc, &data_dir).await;
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

fn load_snapshot(svc: &Arc<Service>, dir: &Path) -> Vec<wire::Key> {
    match snapshot::open_file(dir) {
        Ok(Some(file)) => {
            let mut cache = svc.cache();
            match snapshot::restore(&mut cache, file, svc.now(), snapshot::unix_now()) {
                Ok((loaded, skipped, hot)) => {
                    log::info!(
                        "snapshot loaded: {loaded} entries ({skipped} skipped), {} hot names",
                        hot.len()
                    );
                    hot
                }
                Err(e) => {
                    log::warn!("snapshot ignored: {e} ({} entries kept)", cache.len());
                    Vec::new()
                }
            }
        }
        Ok(None) => {
            log::info!("no snapshot in {}: starting cold", dir.display());
            Vec::new()
        }
        Err(e) => {
            log::warn!("snapshot ignored: {e}");
            Vec::new()
        }
    }
}
