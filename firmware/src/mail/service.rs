//! Starting the mail service: opens the spool (recovery), loads or creates
//! the STARTTLS key pair, binds the listeners, and runs the listeners, the
//! slow-start timer, the scheduler and the control socket
//! (`<run_dir>/mail.sock`) on one current-thread runtime; loads the
//! greylist snapshot and saves it in batches and at stop. It owns the
//! wiring only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::listener::{self, Admission, Shared};
use super::policy::greylist::{self, Greylist};
use super::scheduler::Scheduler;
use super::spool::writer::{QueueEntry, SpoolHandle};
use super::spool::{Limits, Spool};
use crate::config::Config;

/// Requests on the mail control socket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Request {
    /// Make every queued message due now.
    Flush,
    /// Delete one message by id.
    Delete(u64),
    /// List the queue.
    List,
    /// Count the queue (`Response::Summary`).
    Summary,
}

/// Answers on the mail control socket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Response {
    Done,
    Queue(Vec<QueueEntry>),
    Error(String),
    /// Queued messages and their bytes, and what the checks decided
    /// since the service started.
    Summary {
        messages: u64,
        bytes: u64,
        policy: super::policy::Counts,
    },
}

/// Most queue entries in one `List` answer (the control frame is bounded).
pub const MAX_LISTED: usize = 200;

/// Each listed entry's error text is cut to this many characters, what
/// `mailq` shows: the queue keeps up to
/// [`MAX_ERROR_TEXT`](super::queue::MAX_ERROR_TEXT) bytes, which
/// [`MAX_LISTED`] entries would not fit in a control frame.
pub const LISTED_ERROR_CHARS: usize = 200;

/// Room kept in a `List` frame for the answer's own framing (the enum
/// tag and the length of the list).
const LIST_FRAME_SLACK: usize = 16;

/// The `List` answer: the first [`MAX_LISTED`] entries, each error text
/// cut to [`LISTED_ERROR_CHARS`], and no more entries than fit in one
/// control frame once encoded (an entry with many long recipients, or an
/// error text of multi-byte characters, is larger than the usual one).
/// `mailq` prints the queue's totals from `Summary`, so a shortened list
/// still ends with the whole queue's count.
fn listed(mut q: Vec<super::queue::QueueEntry>) -> Vec<super::queue::QueueEntry> {
    q.truncate(MAX_LISTED);
    let mut used = LIST_FRAME_SLACK;
    let mut fit = 0;
    for e in &mut q {
        if let Some((cut, _)) = e.last_error.char_indices().nth(LISTED_ERROR_CHARS) {
            e.last_error.truncate(cut);
        }
        let n = postcard::to_allocvec(&*e).map_or(usize::MAX, |v| v.len());
        if used.saturating_add(n) > crate::control::MAX_FRAME_BYTES {
            break;
        }
        used += n;
        fit += 1;
    }
    q.truncate(fit);
    q
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool could not be opened or recovered.
    #[error("spool: {0}")]
    Spool(#[from] super::spool::SpoolError),
    /// A listening socket could not be bound.
    #[error("listen: {0}")]
    Bind(std::io::Error),
    /// The TLS certificate or key could not be loaded or created.
    #[error("TLS: {0}")]
    Tls(String),
    /// The control socket could not be created.
    #[error("control socket {0}: {1}")]
    Control(PathBuf, std::io::Error),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

pub fn spool_dir(config: &Config) -> PathBuf {
    config.system.data_dir.join("spool")
}

/// The control socket's name in `run_dir`.
pub const SOCKET_NAME: &str = "mail.sock";

pub fn control_socket(config: &Config) -> PathBuf {
    config.system.run_dir.join(SOCKET_NAME)
}

/// Loads the configured certificate and key, or the self-signed pair kept
/// in `<data_dir>/mail/`, generating it at first start.
pub fn tls_acceptor(config: &Config) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    let m = &config.mail;
    let (cert_path, key_path) = match (&m.tls_cert, &m.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.system.data_dir.join("mail");
            let c = dir.join("tls-cert.pem");
            let k = dir.join("tls-key.pem");
            if !c.exists() || !k.exists() {
                generate_pair(&dir, &c, &k, &config.system.hostname)?;
            }
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect())
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| StartError::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn generate_pair(dir: &Path, cert: &Path, key: &Path, host: &str) -> Result<(), StartError> {
    let err = |e: std::io::Error| StartError::Tls(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    // Valid from long ago to no expiry: the board's clock may not be set
    // yet, and a self-signed certificate is not renewed.
    let ck = crate::tls::selfsigned::generate(
        &[host],
        crate::tls::selfsigned::LONG_AGO,
        crate::tls::selfsigned::NO_EXPIRY,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    // Each written to a temporary name, synced, renamed into place, and
    // the directory synced.
    for (path, text) in [(key, ck.key_pem()), (cert, ck.cert_pem())] {
        crate::sys::atomic::write_atomic_mode(path, text.as_bytes(), 0o600).map_err(err)?;
    }
    log::info!("mail: generated a self-signed STARTTLS certificate for {host}");
    Ok(())
}

/// Runs the service until SIGTERM or SIGINT; then makes every record
/// appended so far durable (delivery outcomes included, so a clean stop
/// redelivers nothing) and returns.
pub async fn run(config: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
    let m = config.mail.clone();
    // Start-up (arguments, the configuration reader) is over: give back
    // its code before recovery and sessions grow the working set.
    let released = crate::sys::text::release_startup_text();
    log::debug!("mail: {} KiB of start-up code released", released / 1024);
    let spool = Spool::open(
        &spool_dir(&config),
        Limits {
            max_bytes: m.spool_max_bytes,
            min_free_bytes: m.min_free_bytes,
            segment_bytes: m.segment_bytes,
        },
    )?;
    log::info!(
        "mail: spool recovered: {} message(s), {} bytes in {} segment(s)",
        spool.messages().count(),
        spool.used_bytes(),
        spool.segment_count()
    );
    // For `pocobelle status`: what this start's recovery found.
    let found = RecoveryNote {
        messages: spool.messages().count() as u64,
        bytes: spool.used_bytes(),
        torn: spool.stats.torn_records,
        skipped_bytes: spool.stats.skipped_bytes,
        lost: spool.stats.lost_messages,
    };
    if let Err(e) = std::fs::write(config.system.run_dir.join(RECOVERY_FILE), found.render()) {
        log::warn!("mail: {RECOVERY_FILE}: {e}");
    }
    let spool = SpoolHandle::start(spool, Duration::from_millis(m.commit_delay_ms));
    let tls = match tls_acceptor(&config) {
        Ok(t) => Some(t),
        Err(e) => {
            log::warn!("mail: STARTTLS disabled: {e}");
            None
        }
    };
    let primed_file = config.system.run_dir.join("dns.primed");
    let grey_file = greylist_file(&config);
    let grey = m
        .policy
        .greylist
        .enabled
        .then(|| load_greylist(&grey_file, &m.policy.greylist));
    let shared = Arc::new(Shared::new(
        m.clone(),
        config.system.hostname.clone(),
        spool.clone(),
        tls,
        grey,
    ));
    let kick = shared.kick.clone();
    if shared.greylist.is_some() {
        tokio::spawn(save_greylist_every(
            shared.clone(),
            grey_file.clone(),
            Duration::from_secs(m.policy.greylist.save_interval_s),
        ));
    }
    let admission = Arc::new(Admission::new(
        m.inbound_limit,
        m.tarpit_connections,
        primed_file.exists(),
    ));
    for (kind, addrs) in [
        (listener::Listener::Smtp, &m.listen),
        (listener::Listener::Submission, &m.submission_listen),
    ] {
        for l in listener::bind(addrs).await.map_err(StartError::Bind)? {
            if let Ok(a) = l.local_addr() {
                log::info!("mail: listening on {a} ({kind:?})");
            }
            tokio::spawn(listener::serve(l, kind, shared.clone(), admission.clone()));
        }
    }
    tokio::spawn(listener::slow_start(admission, primed_file));
    let scheduler = Scheduler::new(
        m.clone(),
        config.system.hostname.clone(),
        spool.clone(),
        kick.clone(),
    );
    let scheduler = match &config.ups {
        Some(u) => scheduler.with_power_dir(
            &config.system.run_dir,
            Duration::from_secs(u.trickle_gap_secs.into()),
        ),
        None => scheduler,
    };
    tokio::spawn(scheduler.run());

    let sock = control_socket(&config);
    let _ = std::fs::create_dir_all(&config.system.run_dir);
    let _ = std::fs::remove_file(&sock);
    let control =
        tokio::net::UnixListener::bind(&sock).map_err(|e| StartError::Control(sock.clone(), e))?;
    loop {
        let accepted = tokio::select! {
            a = control.accept() => a,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let spool = spool.clone();
        let kick = kick.clone();
        let counters = shared.counters.clone();
        tokio::spawn(async move {
            let r = crate::control::serve_one(&mut stream, async |req: Request| match req {
                Request::Flush => match spool.flush().await {
                    Ok(()) => {
                        kick.notify_one();
                        Response::Done
                    }
                    Err(e) => Response::Error(e.to_string()),
                },
                Request::Delete(id) => match spool.delete(id).await {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(e.to_string()),
                },
                Request::Summary => match spool.summary().await {
                    Ok((messages, bytes)) => Response::Summary {
                        messages,
                        bytes,
                        policy: counters.counts(),
                    },
                    Err(e) => Response::Error(e.to_string()),
                },
                Request::List => match spool.snapshot().await {
                    Ok(q) => Response::Queue(listed(q)),
                    Err(e) => Response::Error(e.to_string()),
                },
            })
            .await;
            if let Err(e) = r {
                log::debug!("mail: control: {e}");
            }
        });
    }
    save_greylist(&shared, &grey_file);
    log::info!("mail: stopping; committing the spool");
    match spool.commit().await {
        Ok(()) => log::info!("mail: spool committed; stopped"),
        Err(e) => log::error!("mail: spool commit at stop: {e}"),
    }
    Ok(())
}

/// The greylist snapshot: `<data_dir>/mail/greylist.db`.
pub fn greylist_file(config: &Config) -> PathBuf {
    config.system.data_dir.join("mail").join("greylist.db")
}

/// The greylist from its snapshot; a missing, unreadable, oversized or
/// damaged file is a warning and an empty table (a new secret).
fn load_greylist(path: &Path, c: &crate::config::policy::GreylistConfig) -> Greylist {
    use std::io::Read;
    let now = super::spool::Spool::unix_now();
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        f.take(greylist::MAX_SNAPSHOT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    match read.map(|_| Greylist::decode(c, &bytes, now)) {
        Ok(Ok(g)) => {
            let (t, a) = g.len();
            let d = g.known_domains();
            log::info!(
                "mail: greylist: {t} triplet(s), {a} allowed network(s), {d} known domain(s) loaded"
            );
            return g;
        }
        Ok(Err(e)) => log::warn!("mail: {}: {e}; greylist starts empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("mail: {}: {e}; greylist starts empty", path.display()),
    }
    let mut secret = [0u8; greylist::SECRET_BYTES];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).is_err() {
        log::warn!("mail: greylist: no random secret; using the time");
        secret[..8].copy_from_slice(&now.to_be_bytes());
    }
    Greylist::new(c, secret)
}

/// Writes the greylist snapshot if it changed (one atomic write).
fn save_greylist(shared: &Shared, path: &Path) {
    let Some(g) = &shared.greylist else {
        return;
    };
    let bytes = {
        let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
        if !g.is_dirty() {
            return;
        }
        g.saved();
        g.encode(super::spool::Spool::unix_now())
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::sys::atomic::write_atomic(path, &bytes) {
        log::warn!("mail: {}: {e}", path.display());
        if let Some(g) = &shared.greylist {
            // Try again next time.
            let _ = g.lock().map(|mut g| g.touch());
        }
    }
}

/// Saves the greylist at most once per `every` (flash sees few writes).
async fn save_greylist_every(shared: Arc<Shared>, path: PathBuf, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        save_greylist(&shared, &path);
    }
}

/// What the spool's recovery found when mail last started, kept in
/// `<run_dir>/mail.recovery` for `pocobelle status`.
pub const RECOVERY_FILE: &str = "mail.recovery";
/// A recovery note is one short line; longer text is not one.
pub const MAX_RECOVERY_NOTE_BYTES: usize = 256;

/// The recovery figures of one start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryNote {
    /// Messages queued after recovery, and their bytes.
    pub messages: u64,
    pub bytes: u64,
    /// Torn tails cut (a write the power cut interrupted).
    pub torn: u64,
    /// Damaged bytes skipped.
    pub skipped_bytes: u64,
    /// Acknowledged messages lost to damage.
    pub lost: u64,
}

impl RecoveryNote {
    pub fn render(&self) -> String {
        format!(
            "messages={} bytes={} torn={} skipped={} lost={}\n",
            self.messages, self.bytes, self.torn, self.skipped_bytes, self.lost
        )
    }

    /// The note, or `None` for text that is not one (bounded: one line).
    pub fn parse(text: &str) -> Option<RecoveryNote> {
        let line = text.lines().next()?;
        if line.len() > MAX_RECOVERY_NOTE_BYTES {
            return None;
        }
        let mut n = RecoveryNote::default();
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "messages" => n.messages = v,
                "bytes" => n.bytes = v,
                "torn" => n.torn = v,
                "skipped" => n.skipped_bytes = v,
                "lost" => n.lost = v,
                _ => {}
            }
        }
        Some(n)
    }

    /// The note in `run_dir`, read no further than its bound (init reads
    /// what the mail service wrote).
    pub fn read(run_dir: &std::path::Path) -> Option<RecoveryNote> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(run_dir.join(RECOVERY_FILE))
            .ok()?
            .take(MAX_RECOVERY_NOTE_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .ok()?;
        RecoveryNote::parse(&text)
    }

    /// As `status` says it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "spool recovered {} message(s), {} bytes",
            self.messages, self.bytes
        );
        if self.torn > 0 {
            s += &format!("; {} torn tail(s) cut", self.torn);
        }
        if self.skipped_bytes > 0 || self.lost > 0 {
            s += &format!(
                "; DAMAGE: {} bytes skipped, {} acknowledged message(s) lost",
                self.skipped_bytes, self.lost
            );
        }
        s
    }
}

#[cfg(test)]
mod recovery_note_tests {
    use super::*;

    #[test]
    fn round_trip_and_summary() {
        let n = RecoveryNote {
            messages: 3,
            bytes: 4096,
            torn: 1,
            skipped_bytes: 0,
            lost: 0,
        };
        assert_eq!(RecoveryNote::parse(&n.render()), Some(n));
        assert_eq!(
            n.summary(),
            "spool recovered 3 message(s), 4096 bytes; 1 torn tail(s) cut"
        );
        let bad = RecoveryNote {
            lost: 2,
            skipped_bytes: 90,
            ..n
        };
        assert!(
            bad.summary()
                .contains("DAMAGE: 90 bytes skipped, 2 acknowledged")
        );
        assert_eq!(RecoveryNote::parse("messages=x"), None);
        assert_eq!(RecoveryNote::parse(""), None);
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;
    use crate::mail::queue::{MAX_ERROR_TEXT, QueueEntry};

    #[test]
    fn the_listing_fits_a_control_frame_with_every_error_at_its_bound() {
        // (ASCII, as addresses and replies are; the frame bound is in
        // bytes, the cut in characters.)
        let e = QueueEntry {
            id: 1,
            from: "a@b.test".into(),
            pending: vec![(0, "u@home.arpa".into())],
            size: 10,
            received: 1,
            attempts: 3,
            next_at: 2,
            last_error: "192.0.2.1:25: connection refused; ".repeat(MAX_ERROR_TEXT / 34),
            warned: false,
            flags: Default::default(),
            extents: vec![],
        };
        let q = listed(vec![e; MAX_LISTED + 5]);
        assert_eq!(q.len(), MAX_LISTED);
        assert!(q.iter().all(|e| e.last_error.len() == LISTED_ERROR_CHARS));
        let frame = postcard::to_allocvec(&Response::Queue(q)).unwrap();
        assert!(frame.len() <= crate::control::MAX_FRAME_BYTES);
    }

    #[test]
    fn a_listing_of_large_entries_is_cut_to_what_fits_a_frame() {
        // 200 "é" (400 bytes) of error text and 32 long recipients each:
        // 200 such entries would be over 64 KiB.
        let e = QueueEntry {
            id: 1,
            from: "a@b.test".into(),
            pending: (0..32)
                .map(|i| (i, format!("a-rather-long-recipient-name-{i}@home.arpa")))
                .collect(),
            size: 10,
            received: 1,
            attempts: 3,
            next_at: 2,
            last_error: "é".repeat(LISTED_ERROR_CHARS),
            warned: false,
            flags: Default::default(),
            extents: vec![],
        };
        let q = listed(vec![e; MAX_LISTED]);
        assert!(!q.is_empty() && q.len() < MAX_LISTED, "{}", q.len());
        let frame = postcard::to_allocvec(&Response::Queue(q)).unwrap();
        assert!(
            frame.len() <= crate::control::MAX_FRAME_BYTES,
            "{}",
            frame.len()
        );
    }
}
