//! Sockets of the DNS service: UDP and TCP listeners on every configured
//! address (IPv4 and IPv6; IPv6 sockets are IPv6-only so `0.0.0.0:53` and
//! `[::]:53` can both be listed), TCP with pipelining, an idle timeout and
//! a connection cap, the per-client rate limit, and the control socket.
//! The answering itself is in `service`; this module only moves bytes.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{Semaphore, mpsc};

use super::cache::Millis;
use super::service::{Service, Step};
use super::stats::{Counters, Request, Response};
use super::udpbatch::{Batch, UDP_BATCH};
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
    } else if let Err(e) = dont_fragment(&fd, addr.is_ipv6()) {
        // Serving without DF beats not serving.
        log::warn!("{addr}: replies may be fragmented: {e}");
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(err)?;
    if ty == SockType::Stream {
        listen(&fd, Backlog::new(TCP_BACKLOG).map_err(err)?).map_err(err)?;
    }
    Ok(fd)
}

/// UDP replies are never fragmented (RFC 9715: fragments are how
/// off-path attackers poison caches). `PMTUDISC_PROBE` ignores path-MTU
/// reports, so a forged ICMP "too big" cannot shrink what we send, and on
/// IPv4 it sets DF. A reply is at most 1232 bytes of DNS, 1280 with the
/// IPv6 and UDP headers: the IPv6 minimum MTU, so IPv6 never fragments it
/// either. (DF also spares the kernel its IP ID generator.)
fn dont_fragment(fd: &OwnedFd, v6: bool) -> nix::Result<()> {
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    let value: libc::c_int = value;
    // SAFETY: an int option of the right level on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

/// A UDP listening socket registered with the runtime for readability
/// only. A socket registered for writability too (as tokio's `UdpSocket`
/// is) is reported writable again each time a sent reply is freed: a
/// ready event, and often a wakeup, per reply for nothing. A send that
/// finds the socket's buffer full waits on a short-lived writability
/// registration of a duplicate descriptor.
pub struct UdpServer {
    sock: AsyncFd<std::net::UdpSocket>,
}

impl UdpServer {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get_ref().local_addr()
    }

    /// Waits until the socket can take a datagram.
    async fn writable(&self) -> io::Result<()> {
        let dup = register(self.sock.get_ref().try_clone()?, Interest::WRITABLE)?;
        drop(dup.writable().await?);
        Ok(())
    }

    /// Sends one datagram, waiting while the socket's buffer is full.
    pub async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        loop {
            match self.sock.get_ref().send_to(buf, peer) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

pub fn bind_udp(addr: SocketAddr) -> Result<UdpServer, BindError> {
    let fd = make_socket(addr, SockType::Datagram)?;
    register(std::net::UdpSocket::from(fd), Interest::READABLE)
        .map(|sock| UdpServer { sock })
        .map_err(|source| BindError::Io { addr, source })
}

/// Registers a socket the `AsyncFd` takes ownership of.
fn register(
    sock: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the AsyncFd owns the socket, whose descriptor stays open
    // and the same until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(sock, interest) }.map_err(io::Error::from)
}

pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let fd = make_socket(addr, SockType::Stream)?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
        .map_err(|source| BindError::Io { addr, source })
}

/// Serves one UDP socket forever. After each readiness wakeup, up to
/// [`UDP_BATCH`] queries are read at once; cache hits are answered in
/// the same batch, misses get a task that waits for the upstream answer.
pub async fn serve_udp(svc: Arc<Service>, sock: Arc<UdpServer>) {
    let fd = sock.sock.as_raw_fd();
    let mut batch = Batch::new();
    loop {
        let mut ready = match sock.sock.readable().await {
            Ok(r) => r,
            Err(e) => {
                log::debug!("udp readiness: {e}");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
        };
        match ready.try_io(|_| batch.recv(fd)) {
            // A short batch emptied the queue: the next read would only
            // say so (EAGAIN), so wait for the next readiness event now.
            // A datagram that came meanwhile raised a newer event, which
            // this does not clear.
            Ok(Ok(n)) if n < UDP_BATCH => ready.clear_ready(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                log::debug!("udp recv: {e}");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
            Err(_would_block) => continue,
        }
        // One clock reading for the batch (it took microseconds).
        let now = svc.now();
        for i in 0..batch.count {
            let mut reply = std::mem::take(&mut batch.replies[i]);
            reply.clear();
            Counters::bump(&svc.counters.queries_udp);
            match (batch.datagram(i), batch.peer(i)) {
                (Some(packet), Some(peer)) => {
                    if svc.rate_ok(peer.ip(), now) {
                        answer_udp(&svc, &sock, packet, peer, now, &mut reply);
                    }
                }
                _ => Counters::bump(&svc.counters.dropped),
            }
            batch.replies[i] = reply;
        }
        let mut from = 0;
        while from < batch.count {
            match batch.send(fd, from) {
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
    sock: &Arc<UdpServer>,
    packet: &[u8],
    peer: SocketAddr,
    now: Millis,
    reply: &mut Vec<u8>,
) {
    match svc.begin(packet, peer.ip(), true, now, reply) {
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
        let now = svc.now();
        if !svc.rate_ok(peer.ip(), now) {
            break;
        }
        let mut out = Vec::new();
        match svc.begin(&buf, peer.ip(), false, now, &mut out) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn int_opt(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int option read into an int of the given length.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    #[tokio::test(flavor = "current_thread")]
    async fn udp_replies_are_never_fragmented() {
        let v4 = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(
            int_opt(v4.sock.get_ref(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_PROBE
        );
        if let Ok(v6) = bind_udp("[::1]:0".parse().unwrap()) {
            assert_eq!(
                int_opt(
                    v6.sock.get_ref(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MTU_DISCOVER
                ),
                libc::IPV6_PMTUDISC_PROBE
            );
        }
        // And the socket still answers: a datagram to it and one back.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"ping", v4.local_addr().unwrap()).unwrap();
        let mut ready = v4.sock.readable().await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = ready
            .try_io(|s| s.get_ref().recv_from(&mut buf))
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");
        v4.send_to(b"pong", from).await.unwrap();
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }
}
