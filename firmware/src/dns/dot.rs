//! DNS-over-TLS transport (RFC 7858) for one upstream: a small pool of
//! persistent TLS connections over which queries are pipelined with the
//! 2-byte length framing of DNS over TCP, and answers are matched to
//! their queries by ID. A connection that fails is dropped and a new one
//! is opened by the next query; a connection with nothing pending closes
//! after the idle time. The caller (`upstream`) still checks each answer
//! against its question and keeps the budget, RTT and backoff; this
//! module never decides what an answer means.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Queries outstanding on one connection (also the depth of its request
/// queue); past it a query fails at once and the next server is raced.
pub const MAX_PIPELINED: usize = 64;
/// Answers read ahead of the connection's dispatcher.
const READ_AHEAD: usize = 8;
/// Connecting and the TLS handshake must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a query over TLS got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DotError {
    /// TCP connect or the TLS handshake failed (certificate not valid
    /// for the configured name, unknown issuer, refused...).
    #[error("TLS connection failed")]
    Connect,
    /// The connection broke before the answer came.
    #[error("TLS connection lost")]
    Lost,
    /// Every connection has [`MAX_PIPELINED`] queries outstanding, or the
    /// query's ID is already in flight on the connection.
    #[error("TLS connections busy")]
    Busy,
}

struct Request {
    id: u16,
    framed: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, DotError>>,
}

struct Conn {
    tx: mpsc::Sender<Request>,
    load: Arc<AtomicUsize>,
}

/// The connections to one DNS-over-TLS server.
pub struct DotPool {
    pub addr: SocketAddr,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    max_connections: usize,
    idle: Duration,
    conns: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for DotPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DotPool({} {:?})", self.addr, self.name)
    }
}

/// Decrements a connection's load when a query ends, however it ends.
struct LoadGuard(Arc<AtomicUsize>);
impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DotPool {
    pub fn new(
        addr: SocketAddr,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        max_connections: usize,
        idle: Duration,
    ) -> DotPool {
        DotPool {
            addr,
            name,
            connector: tokio_rustls::TlsConnector::from(config),
            max_connections: max_connections.max(1),
            idle,
            conns: Mutex::new(Vec::new()),
        }
    }

    /// Open connections.
    #[cfg(test)]
    pub fn open_connections(&self) -> usize {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|c| !c.tx.is_closed());
        c.len()
    }

    /// The least loaded open connection, or a new one when all are busy
    /// and the pool has room.
    fn pick(&self) -> (mpsc::Sender<Request>, Arc<AtomicUsize>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.tx.is_closed());
        let best = conns.iter().min_by_key(|c| c.load.load(Ordering::Relaxed));
        if let Some(b) = best
            && (b.load.load(Ordering::Relaxed) == 0 || conns.len() >= self.max_connections)
        {
            return (b.tx.clone(), b.load.clone());
        }
        let (tx, rx) = mpsc::channel(MAX_PIPELINED);
        let load = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(
            self.addr,
            self.name.clone(),
            self.connector.clone(),
            self.idle,
            rx,
        ));
        conns.push(Conn {
            tx: tx.clone(),
            load: load.clone(),
        });
        (tx, load)
    }

    /// Sends `query` (whose ID is `id`) and waits for the response with
    /// that ID. No timeout here: the caller bounds the wait.
    pub async fn query(&self, id: u16, query: &[u8]) -> Result<Vec<u8>, DotError> {
        let len = u16::try_from(query.len()).map_err(|_| DotError::Busy)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        let (reply, rx) = oneshot::channel();
        let (tx, load) = self.pick();
        load.fetch_add(1, Ordering::Relaxed);
        let _guard = LoadGuard(load);
        tx.try_send(Request { id, framed, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => DotError::Busy,
                mpsc::error::TrySendError::Closed(_) => DotError::Lost,
            })?;
        rx.await.map_err(|_| DotError::Lost)?
    }
}

/// One connection: connect, then write queries as they come and hand
/// each answer to the query with its ID, until an error or the idle time.
async fn run(
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    idle: Duration,
    mut rx: mpsc::Receiver<Request>,
) {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        connector.connect(name, tcp).await
    })
    .await;
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log::info!("dns: DNS-over-TLS {addr}: {e}");
            fail_all(&mut rx, DotError::Connect);
            return;
        }
        Err(_) => {
            log::info!("dns: DNS-over-TLS {addr}: connect timed out");
            fail_all(&mut rx, DotError::Connect);
            return;
        }
    };
    log::debug!("dns: DNS-over-TLS {addr}: connected");
    let (mut rd, mut wr) = tokio::io::split(stream);
    // The reader runs apart so that a half-read frame is never cancelled.
    let (ans_tx, mut answers) = mpsc::channel::<Vec<u8>>(READ_AHEAD);
    let reader = tokio::spawn(async move {
        loop {
            let Ok(len) = rd.read_u16().await else { return };
            let mut buf = vec![0u8; len as usize];
            if rd.read_exact(&mut buf).await.is_err() || ans_tx.send(buf).await.is_err() {
                return;
            }
        }
    });
    let mut pending: HashMap<u16, oneshot::Sender<Result<Vec<u8>, DotError>>> = HashMap::new();
    loop {
        tokio::select! {
            req = rx.recv() => {
                let Some(req) = req else { break };
                pending.retain(|_, s| !s.is_closed());
                if pending.len() >= MAX_PIPELINED || pending.contains_key(&req.id) {
                    let _ = req.reply.send(Err(DotError::Busy));
                    continue;
                }
                if wr.write_all(&req.framed).await.is_err() || wr.flush().await.is_err() {
                    let _ = req.reply.send(Err(DotError::Lost));
                    break;
                }
                pending.insert(req.id, req.reply);
            }
            ans = answers.recv() => {
                let Some(ans) = ans else { break };
                if ans.len() < 2 {
                    continue;
                }
                let id = u16::from_be_bytes([ans[0], ans[1]]);
                // An answer nobody waits for (late, or a stray ID) is dropped.
                if let Some(s) = pending.remove(&id) {
                    let _ = s.send(Ok(ans));
                }
            }
            _ = tokio::time::sleep(idle), if pending.is_empty() => {
                log::debug!("dns: DNS-over-TLS {addr}: idle, closing");
                break;
            }
        }
    }
    reader.abort();
    rx.close();
    for (_, s) in pending.drain() {
        let _ = s.send(Err(DotError::Lost));
    }
    fail_all(&mut rx, DotError::Lost);
    let _ = wr.shutdown().await;
}

fn fail_all(rx: &mut mpsc::Receiver<Request>, e: DotError) {
    rx.close();
    while let Ok(r) = rx.try_recv() {
        let _ = r.reply.send(Err(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A DoT server that echoes each framed query back as its answer and
    /// closes the connection after `per_conn` answers.
    async fn echo_server(
        per_conn: usize,
    ) -> (SocketAddr, Arc<rustls::ClientConfig>, Arc<AtomicUsize>) {
        let ck = crate::tls::selfsigned::generate(
            &["dot.test"],
            crate::tls::selfsigned::LONG_AGO,
            crate::tls::selfsigned::NO_EXPIRY,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let cert = CertificateDer::from(ck.cert_der);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pkcs8));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c2 = conns.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    for _ in 0..per_conn {
                        let Ok(len) = s.read_u16().await else { return };
                        let mut b = vec![0u8; len as usize];
                        if s.read_exact(&mut b).await.is_err() {
                            return;
                        }
                        let _ = s.write_u16(len).await;
                        let _ = s.write_all(&b).await;
                        let _ = s.flush().await;
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = crate::tls::verifying_config(roots).unwrap();
        (addr, client, conns)
    }

    fn pool(addr: SocketAddr, c: Arc<rustls::ClientConfig>, idle_ms: u64) -> DotPool {
        let name = crate::tls::server_name("dot.test").unwrap();
        DotPool::new(addr, name, c, 2, Duration::from_millis(idle_ms))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_close_and_lost_ones_are_replaced() {
        let (addr, client, conns) = echo_server(1000).await;
        let p = pool(addr, client, 200);
        assert_eq!(p.query(7, &[0, 7, 1, 2]).await.unwrap(), vec![0, 7, 1, 2]);
        assert_eq!(p.query(8, &[0, 8, 1, 2]).await.unwrap(), vec![0, 8, 1, 2]);
        assert_eq!(p.open_connections(), 1, "reused while not busy");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(p.open_connections(), 0, "closed when idle");

        let (addr, client, conns2) = echo_server(1).await;
        let p = pool(addr, client, 10_000);
        assert!(p.query(1, &[0, 1]).await.is_ok());
        // The server hung up after one answer; the next query reconnects.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(p.query(2, &[0, 2]).await.is_ok());
        assert_eq!(conns2.load(Ordering::SeqCst), 2);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }
}
