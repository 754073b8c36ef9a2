//! The upsd client: one TCP connection to the configured address (an IP
//! literal, never a name lookup), optionally logged in, polled with
//! `LIST VAR` every poll interval; each poll's result goes into the
//! state machine and the resulting [`PowerView`] is published on a
//! `watch` channel. Connect and request timeouts, reconnection with
//! bounded exponential backoff, and an unreachable upsd logged once per
//! outage (and once when it answers again). It never decides what the
//! board does; it only reports.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::proto::{self, LineSplitter, ProtoError, Reading, Request, VarList};
use super::state::{Observation, PowerMachine, PowerState, PowerView};
use crate::config::UpsConfig;

/// Time allowed for the TCP connection to upsd.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one request and its whole reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay before reconnecting after a failure; doubles per failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest delay between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = proto::MAX_LINE;

/// What went wrong talking to upsd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to upsd at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection to upsd failed: {0}")]
    Io(#[from] std::io::Error),
    /// upsd did not accept the connection or answer a request in time.
    #[error("upsd did not answer in time")]
    Timeout,
    /// upsd closed the connection.
    #[error("upsd closed the connection")]
    Closed,
    /// upsd sent something out of protocol, or refused the request.
    #[error("{0}")]
    Proto(#[from] ProtoError),
    /// The request needs `ups.user` and `ups.password`, and they are not
    /// configured.
    #[error("ups.user and ups.password are needed for this request")]
    NoCredentials,
}

/// One connection to upsd, with its reply reader.
struct Conn {
    stream: TcpStream,
    split: LineSplitter,
    pending: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, ClientError> {
        let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            split: LineSplitter::default(),
            pending: Vec::new(),
        })
    }

    async fn send(&mut self, req: Request<'_>) -> Result<(), ClientError> {
        let bytes = req.encode()?;
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// The next reply line (at most `MAX_LINE` bytes).
    async fn line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if !self.pending.is_empty() {
                let (line, used) = self.split.push(&self.pending);
                self.pending.drain(..used);
                if let Some(line) = line? {
                    return Ok(line);
                }
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request that is answered `OK [word]`.
    async fn ok(&mut self, req: Request<'_>) -> Result<Option<String>, ClientError> {
        timeout(REQUEST_TIMEOUT, async {
            self.send(req).await?;
            let line = self.line().await?;
            Ok(proto::parse_ok(&line)?)
        })
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    /// `LIST VAR <ups>`.
    async fn list_vars(&mut self, ups: &str) -> Result<Vec<(String, String)>, ClientError> {
        timeout(REQUEST_TIMEOUT, async {
            self.send(Request::ListVar(ups)).await?;
            let mut list = VarList::new(ups);
            loop {
                let line = self.line().await?;
                if let Some(vars) = list.push(&line)? {
                    return Ok(vars);
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    /// `USERNAME`, `PASSWORD`, and `LOGIN <ups>` when `login`.
    async fn authenticate(&mut self, cfg: &UpsConfig, login: bool) -> Result<(), ClientError> {
        let Some((user, password)) = cfg.credentials() else {
            return Ok(());
        };
        self.ok(Request::Username(user)).await?;
        self.ok(Request::Password(password)).await?;
        if login {
            self.ok(Request::Login(&cfg.name)).await?;
        }
        Ok(())
    }
}

/// Sets the forced-shutdown flag on the configured UPS (`FSD <ups>`;
/// needs `ups.user`/`ups.password` of an `upsmon primary` user): every
/// other system on that UPS then shuts down. A connection of its own.
pub async fn fsd(cfg: &UpsConfig) -> Result<(), ClientError> {
    if cfg.credentials().is_none() {
        return Err(ClientError::NoCredentials);
    }
    let mut conn = Conn::open(cfg.socket_addr()).await?;
    conn.authenticate(cfg, false).await?;
    conn.ok(Request::Fsd(&cfg.name)).await?;
    let _ = conn.ok(Request::Logout).await;
    Ok(())
}

/// One poll: a reading, or `None` when upsd answers but has no data
/// from the UPS (its driver gone or stale, or still starting).
async fn poll(conn: &mut Conn, ups: &str) -> Result<Option<Reading>, ClientError> {
    match conn.list_vars(ups).await {
        Ok(vars) => Ok(Reading::from_vars(
            vars.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        )),
        Err(ClientError::Proto(ProtoError::Server(code))) if code.is_no_data() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Watches the UPS of `[ups]`.
pub struct Monitor;

impl Monitor {
    /// Starts polling on the current tokio runtime; the view starts as
    /// `Unknown` and changes as polls come in. The task ends when every
    /// receiver is dropped.
    pub fn spawn(cfg: &UpsConfig) -> watch::Receiver<PowerView> {
        let machine = PowerMachine::new(cfg.params());
        let (tx, rx) = watch::channel(machine.view(Instant::now().into_std()));
        tokio::spawn(run(cfg.clone(), machine, tx));
        rx
    }
}

/// What was last logged about reaching the UPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Answering,
    Unreachable,
    NoData,
}

async fn run(cfg: UpsConfig, mut machine: PowerMachine, tx: watch::Sender<PowerView>) {
    let addr = cfg.socket_addr();
    let mut conn: Option<Conn> = None;
    let mut backoff = BACKOFF_MIN;
    let mut next_attempt = Instant::now();
    let mut health = Health::Answering;
    let mut ticker = tokio::time::interval(cfg.poll_interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
        }
        let mut obs = Observation::Silent;
        let mut now_health = health;
        if conn.is_some() || Instant::now() >= next_attempt {
            let result = async {
                if conn.is_none() {
                    let mut c = Conn::open(addr).await?;
                    c.authenticate(&cfg, true).await?;
                    conn = Some(c);
                }
                match conn.as_mut() {
                    Some(c) => poll(c, &cfg.name).await,
                    None => Err(ClientError::Closed),
                }
            }
            .await;
            match result {
                Ok(Some(r)) => {
                    obs = Observation::Reading(r);
                    now_health = Health::Answering;
                    backoff = BACKOFF_MIN;
                }
                Ok(None) => {
                    if health != Health::NoData {
                        log::warn!(
                            "ups: upsd at {addr} has no data from UPS {:?} (driver down or stale)",
                            cfg.name
                        );
                    }
                    now_health = Health::NoData;
                }
                Err(e) => {
                    conn = None;
                    if health != Health::Unreachable {
                        log::warn!(
                            "ups: upsd at {addr} unreachable: {e}; retrying every {}..{} s",
                            BACKOFF_MIN.as_secs(),
                            BACKOFF_MAX.as_secs()
                        );
                    }
                    now_health = Health::Unreachable;
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if now_health == Health::Answering && health != Health::Answering {
            log::info!("ups: upsd at {addr} answering again");
        }
        health = now_health;
        let before = *tx.borrow();
        let view = machine.observe(obs, Instant::now().into_std());
        log_change(&before, &view);
        tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }
}

fn log_change(before: &PowerView, after: &PowerView) {
    let charge = after.charge.map_or("?".into(), |c| format!("{c}%"));
    let runtime = after
        .runtime
        .map_or("?".into(), |r| format!("{} s", r.as_secs()));
    match (before.state, after.state) {
        (PowerState::OnBattery { .. }, PowerState::OnBattery { .. }) => {}
        (_, PowerState::OnBattery { .. }) => {
            log::warn!("ups: on battery (charge {charge}, runtime {runtime})")
        }
        (PowerState::OnBattery { .. }, PowerState::OnLine) => log::info!("ups: mains back"),
        (PowerState::Unknown, PowerState::OnLine) => log::info!("ups: on line (charge {charge})"),
        _ => {}
    }
    if before.shutdown.is_none()
        && let Some(reason) = after.shutdown
    {
        log::error!("ups: shutdown needed: {reason} (charge {charge}, runtime {runtime})");
    }
    if before.hold_mail && !after.hold_mail {
        log::info!("ups: power steady, mail may start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A fake upsd that answers each request line from `script`.
    async fn fake_upsd(script: fn(&str) -> String) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if w.write_all(script(&line).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn cfg(addr: SocketAddr) -> UpsConfig {
        UpsConfig {
            mode: crate::config::UpsMode::Remote,
            host: addr.ip().to_string(),
            port: addr.port(),
            poll_interval_secs: 1,
            dead_time_secs: 2,
            user: Some("mon".into()),
            password: Some("pw".into()),
            ..UpsConfig::default()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn monitor_publishes_readings_and_fsd_is_sent() {
        let addr = fake_upsd(|line| match line {
            "USERNAME mon" | "PASSWORD pw" | "LOGIN ups" => "OK\n".into(),
            "LIST VAR ups" => "BEGIN LIST VAR ups\nVAR ups ups.status \"OB DISCHRG\"\n\
                               VAR ups battery.charge \"55\"\nEND LIST VAR ups\n"
                .into(),
            "FSD ups" => "OK FSD-SET\n".into(),
            "LOGOUT" => "OK Goodbye\n".into(),
            _ => "ERR UNKNOWN-COMMAND\n".into(),
        })
        .await;
        let c = cfg(addr);
        let mut rx = Monitor::spawn(&c);
        let v = timeout(Duration::from_secs(5), rx.wait_for(|v| v.reachable))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(v.state, PowerState::OnBattery { .. }));
        assert_eq!(v.charge, Some(55));
        assert!(v.throttle);
        drop(v);
        fsd(&c).await.unwrap();
        let no_creds = UpsConfig {
            user: None,
            password: None,
            ..c.clone()
        };
        assert!(matches!(
            fsd(&no_creds).await,
            Err(ClientError::NoCredentials)
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refused_login_is_an_error_and_no_data_is_silence() {
        let addr = fake_upsd(|line| match line {
            "USERNAME mon" | "PASSWORD pw" => "OK\n".into(),
            "LOGIN ups" => "OK\n".into(),
            "FSD ups" => "ERR ACCESS-DENIED\n".into(),
            "LIST VAR ups" => "ERR DATA-STALE\n".into(),
            _ => "ERR UNKNOWN-COMMAND\n".into(),
        })
        .await;
        let c = cfg(addr);
        let e = fsd(&c).await.unwrap_err();
        assert!(e.to_string().contains("ACCESS-DENIED"), "{e}");
        let mut conn = Conn::open(addr).await.unwrap();
        assert_eq!(poll(&mut conn, "ups").await.unwrap(), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn overlong_reply_and_silent_server_fail_cleanly() {
        let addr = fake_upsd(|_| "x".repeat(2000)).await;
        let mut conn = Conn::open(addr).await.unwrap();
        let e = poll(&mut conn, "ups").await.unwrap_err();
        assert!(
            matches!(e, ClientError::Proto(ProtoError::LineTooLong)),
            "{e}"
        );
        // A closed port.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(
            Conn::open(gone).await,
            Err(ClientError::Connect { .. })
        ));
    }
}
