//! Sockets of the DNS service: UDP and TCP listeners on every configured
//! address (IPv4 and IPv6; IPv6 sockets are IPv6-only so `0.0.0.0:53` and
//! `[::]:53` can both be listed), TCP with pipelining, an idle timeout and
//! a connection cap, the per-client rate limit, and the control socket.
//! The answering itself is in `service`; this module only moves bytes.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};
use tokio::sync::{Semaphore, mpsc};

use super::service::{Service, Step};
use super::stats::{Counters, Request, Response};
use super::udpbatch::Batch;
use super::wire;

/// Queries of one TCP connection being answered at once (pipelining);
/// further queries wait to be read.
pub const TCP_MAX_PIPELINED: usize = 16;
/// Listen backlog of TCP sockets.
pub const TCP_BACKLOG: i32 = 64;
/// Pause after a failing `recv` so a persistent error cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The socket could not be created, configured or bound.
    #[error("{addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: nix::Error,
    },
    /// Handing the socket to the runtime failed.
    #[error("{addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn make_socket(addr: SocketAddr, ty: SockType) -> Result<OwnedFd, BindError> {
    let err = |source| BindError::Socket { addr, source };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(err)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(err)?;
    }
    if ty == SockType::Stream {
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(err)?;
    if ty == SockType::Stream {
        listen(&fd, Backlog::new(TCP_BACKLOG).map_err(err)?).map_err(err)?;
    }
    Ok(fd)
}

pub fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, BindError> {
    let fd = make_socket(addr, SockType::Datagram)?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
        .map_err(|source| BindError::Io { addr, source })
}

pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let fd = make_socket(addr, SockType::Stream)?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
        .map_err(|source| BindError::Io { addr, source })
}

/// Serves one UDP socket forever. After each readiness wakeup, up to
/// [`super::udpbatch::UDP_BATCH`] queries are read at once; cache hits are answered in
/// the same batch, misses get a task that waits for the upstream answer.
pub async fn serve_udp(svc: Arc<Service>, sock: Arc<UdpSocket>) {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new();
    loop {
        if let Err(e) = sock.readable().await {
            log::debug!("udp readiness: {e}");
            tokio::time::sleep(RECV_ERROR_PAUSE).await;
            continue;
        }
        match sock.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::debug!("udp recv: {e}");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
        }
        for i in 0..batch.count {
            let mut reply = std::mem::take(&mut batch.replies[i]);
            reply.clear();
            Counters::bump(&svc.counters.queries_udp);
            match (batch.datagram(i), batch.peer(i)) {
                (Some(packet), Some(peer)) => {
                    if svc.rate_ok(peer.ip()) {
                        answer_udp(&svc, &sock, packet, peer, &mut reply);
                    }
                }
                _ => Counters::bump(&svc.counters.dropped),
            }
            batch.replies[i] = reply;
        }
        let mut from = 0;
        while from < batch.count {
            match sock.try_io(Interest::WRITABLE, || batch.send(fd, from)) {
                Ok(next) => from = next,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if sock.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    log::debug!("udp send: {e}");
                    break;
                }
            }
        }
    }
}

/// Answers one UDP query: the reply goes into `reply` (left empty when
/// there is none now); a miss is finished by a task of its own.
fn answer_udp(
    svc: &Arc<Service>,
    sock: &Arc<UdpSocket>,
    packet: &[u8],
    peer: SocketAddr,
    reply: &mut Vec<u8>,
) {
    match svc.begin(packet, peer.ip(), true, reply) {
        Step::Reply => {}
        Step::Drop => reply.clear(),
        Step::Wait { query, key, stale } => {
            reply.clear();
            let (svc, sock) = (svc.clone(), sock.clone());
            tokio::spawn(async move {
                let r = svc.finish(query, key, stale, true).await;
                let _ = sock.send_to(&r, peer).await;
            });
        }
    }
}

/// Accepts TCP clients forever, at most `dns.tcp_max_connections` at once;
/// a client over the cap is closed at once.
pub async fn serve_tcp(svc: Arc<Service>, listener: TcpListener) {
    let cap = Arc::new(Semaphore::new(svc.cfg.tcp_max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                log::debug!("tcp accept: {e}");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            Counters::bump(&svc.counters.tcp_rejected);
            drop(stream);
            continue;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            serve_conn(svc, stream, peer).await;
            drop(permit);
        });
    }
}

async fn serve_conn(svc: Arc<Service>, stream: TcpStream, peer: SocketAddr) {
    let idle = Duration::from_millis(svc.cfg.tcp_idle_ms as u64);
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_MAX_PIPELINED);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut framed = Vec::with_capacity(msg.len() + 2);
            framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            framed.extend_from_slice(&msg);
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let pending = Arc::new(Semaphore::new(TCP_MAX_PIPELINED));
    loop {
        let len = match tokio::time::timeout(idle, rd.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => break,
        };
        if !(wire::HEADER_LEN..=wire::MAX_QUERY_BYTES).contains(&len) {
            break;
        }
        let mut buf = vec![0u8; len];
        match tokio::time::timeout(idle, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        Counters::bump(&svc.counters.queries_tcp);
        if !svc.rate_ok(peer.ip()) {
            break;
        }
        let mut out = Vec::new();
        match svc.begin(&buf, peer.ip(), false, &mut out) {
            Step::Drop => break,
            Step::Reply => {
                if tx.send(out).await.is_err() {
                    break;
                }
            }
            Step::Wait { query, key, stale } => {
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    break;
                };
                let (svc, tx) = (svc.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = svc.finish(query, key, stale, false).await;
                    let _ = tx.send(r).await;
                    drop(permit);
                });
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Serves the control socket forever.
pub async fn serve_control(svc: Arc<Service>, listener: UnixListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(RECV_ERROR_PAUSE).await;
            continue;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            let r = crate::control::serve_one(&mut stream, async |req: Request| match req {
                Request::Stats => Response::Stats(svc.report()),
                Request::Prime => match super::prime::start(&svc, None) {
                    Some(n) => Response::PrimeStarted { names: n as u32 },
                    None => Response::PrimeBusy,
                },
            })
            .await;
            if let Err(e) = r {
                log::debug!("control: {e}");
            }
        });
    }
}
