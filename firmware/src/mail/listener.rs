//! The SMTP listener: accepts connections on every configured address,
//! applies admission (inbound limit, slow start, tarpit, 421 past it),
//! applies the per-client limits and the greeting delay (early talkers
//! refused), drives one [`Session`] per connection over the socket
//! (STARTTLS with rustls, per-command timeouts, AUTH against the password
//! file) and streams bodies into the spool. The submission listener is the same
//! code with `Listener::Submission` (MAIL needs TLS and AUTH). It
//! owns sockets and timers only; protocol decisions are the session's,
//! relay decisions the policy's, storage the spool writer's.
//!
//! The anti-spam checks' lookups run here, as tasks beside the session
//! ([`Lookups`]): the client checks (reverse DNS, DNS lists) from the
//! connection on, overlapping the greeting; SPF from the accepted MAIL
//! FROM. Before the first command after MAIL is fed to the session, the
//! results so far go to the gate, and what is still running is awaited
//! (each until its start plus `mail.policy.lookup_budget_ms`) only when it
//! could change the answer to a recipient. Clients in `relay_networks`
//! and the submission port get no checks.
//!
//! Message authentication ([`super::msgauth`]) runs on each message as it
//! is spooled: outsiders' messages are filtered and verified and get an
//! Authentication-Results field (or DMARC's 550) at the final dot;
//! submitted mail is DKIM-signed. Those fields are stored in front of
//! the message (spool HEAD records) before its end.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::aliases::{Aliases, Rcpt};
use super::lookup::Cache;
use super::msgauth::{self, Ending, MessageAuth};
use super::policy::dkim::Signer;
use super::policy::dnsbl::{self, Listing};
use super::policy::greeting;
use super::policy::greylist::Greylist;
use super::policy::limits::{ClientKey, Limits};
use super::policy::rdns::{self, Rdns};
use super::policy::recipients::Recipients;
use super::policy::spf::{self, SpfOutcome};
use super::policy::{Checks, Counters, Policy};
use super::spool::SpoolError;
use super::spool::writer::SpoolHandle;
use crate::config::MailConfig;
use crate::smtp::session::AuthVerdict;
use crate::smtp::{Event, Gate, Mailbox, Reply, ReversePath, Session, Settings};

/// Bytes read from a client at a time.
pub const READ_BUFFER: usize = 8 * 1024;

/// A connection in the tarpit waits at most this long for a session slot
/// before it gets 421.
pub const TARPIT_MAX_WAIT: Duration = Duration::from_secs(120);

/// While DNS is not primed, one more inbound session is allowed per step.
pub const SLOW_START_STEP: Duration = Duration::from_secs(10);

/// Connections held at once in the greeting delay; past it, 421.
pub const MAX_DELAYED_GREETINGS: usize = 64;

/// Everything the sessions share.
pub struct Shared {
    pub config: MailConfig,
    pub hostname: String,
    pub policy: Policy,
    /// `[mail.aliases]`, applied at RCPT time.
    pub aliases: Aliases,
    pub spool: SpoolHandle,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Wakes the scheduler (ETRN, new mail).
    pub kick: Arc<Notify>,
    /// `[mail.policy.recipients]`.
    pub recipients: Recipients,
    /// `[mail.policy.limits]`: the per-client counts.
    pub limits: Mutex<Limits>,
    /// `[mail.policy.greylist]`, when enabled.
    pub greylist: Option<Mutex<Greylist>>,
    /// `[mail.policy.dkim.sign]`: the signers of submitted mail, their
    /// keys read once at start.
    pub signers: Vec<Signer>,
    /// `mail.policy.auth_results.authserv_id`, or the host name.
    pub authserv_id: String,
    /// What the checks decided since the start (`pocobelle status`).
    pub counters: Arc<Counters>,
}

impl Shared {
    /// The shared state of one configuration; the greylist table is
    /// passed in (the service loads it from its snapshot).
    pub fn new(
        config: MailConfig,
        hostname: String,
        spool: SpoolHandle,
        tls: Option<tokio_rustls::TlsAcceptor>,
        greylist: Option<Greylist>,
    ) -> Shared {
        let signers = config.policy.signers().unwrap_or_else(|e| {
            // Checked when the configuration was loaded: a key file gone
            // since only stops signing.
            log::warn!("mail: DKIM signing disabled: {e}");
            Vec::new()
        });
        let authserv_id = match config.policy.auth_results.authserv_id.as_str() {
            "" => hostname.clone(),
            id => id.to_string(),
        };
        Shared {
            policy: Policy::new(&config),
            signers,
            authserv_id,
            // Checked when the configuration was loaded.
            aliases: Aliases::new(&config, &hostname).unwrap_or_default(),
            recipients: Recipients::load(&config.policy.recipients),
            limits: Mutex::new(Limits::new(&config.policy.limits)),
            greylist: greylist.map(Mutex::new),
            config,
            hostname,
            spool,
            tls,
            kick: Arc::new(Notify::new()),
            counters: Arc::new(Counters::default()),
        }
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open session in the per-client counts, closed when dropped.
struct Counted<'a> {
    shared: &'a Shared,
    key: ClientKey,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.shared.limits().disconnect(self.key);
    }
}

/// Admission: session slots (a semaphore that grows during slow start)
/// and the tarpit count.
pub struct Admission {
    slots: Arc<Semaphore>,
    granted: std::sync::atomic::AtomicUsize,
    tarpit: Arc<Semaphore>,
    /// Connections in the greeting delay.
    delayed: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize, tarpit: usize, primed: bool) -> Admission {
        let start = if primed { limit } else { 1 };
        Admission {
            slots: Arc::new(Semaphore::new(start)),
            granted: std::sync::atomic::AtomicUsize::new(start),
            tarpit: Arc::new(Semaphore::new(tarpit)),
            delayed: Arc::new(Semaphore::new(MAX_DELAYED_GREETINGS)),
            limit,
        }
    }

    /// Slow start: one more slot per step, all of them once DNS is primed.
    pub fn grow(&self, primed: bool) {
        use std::sync::atomic::Ordering;
        let now = self.granted.load(Ordering::Relaxed);
        let want = if primed {
            self.limit
        } else {
            (now + 1).min(self.limit)
        };
        if want > now {
            self.slots.add_permits(want - now);
            self.granted.store(want, Ordering::Relaxed);
            log::info!("mail: inbound limit now {want}");
        }
    }

    pub fn current_limit(&self) -> usize {
        self.granted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Session slots in use.
    pub fn busy(&self) -> usize {
        self.current_limit()
            .saturating_sub(self.slots.available_permits())
    }
}

/// Which kind of port a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Port 25: relay policy by domain and client network; AUTH optional.
    Smtp,
    /// Submission (587): MAIL needs STARTTLS and AUTH.
    Submission,
}

/// Binds every address of `addrs`.
pub async fn bind(addrs: &[String]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let addr: SocketAddr = a
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad listen address {a}")))?;
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            let s = tokio::net::TcpSocket::new_v6()?;
            // Keep v4 and v6 listeners separate so both can be configured.
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv6V6Only, &true)
                .map_err(std::io::Error::from)?;
            s
        };
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        out.push(sock.listen(128)?);
    }
    Ok(out)
}

/// Accepts connections forever.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("mail: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let admission = admission.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let exempt = shared.policy.may_relay(peer.ip());
            // Per-client limits, then the greeting delay, both before a
            // session slot is taken; relay networks skip both.
            let _counted = if exempt {
                None
            } else {
                let key = ClientKey::of(peer.ip());
                let now = crate::mail::spool::Spool::unix_now();
                let verdict = shared.limits().connect(key, now);
                if let Err(r) = verdict {
                    shared.counters.add(|c| &mut c.over_limits);
                    log::info!("mail: {peer} refused: {}", r.lines[0]);
                    send_and_close(stream, &r).await;
                    return;
                }
                Some(Counted {
                    shared: &shared,
                    key,
                })
            };
            // The DNS checks start now, overlapping the greeting delay.
            let started = Started::new(&shared, peer.ip(), kind, exempt);
            let delay = greeting::delay(
                &shared.config.policy.greeting,
                admission.busy(),
                admission.current_limit(),
            );
            // Port 25 only (submission clients are people's mail programs).
            if kind == Listener::Smtp && !exempt && !delay.is_zero() {
                let Ok(_waiting) = admission.delayed.clone().try_acquire_owned() else {
                    refuse(stream, &shared.hostname).await;
                    return;
                };
                let mut byte = [0u8; 1];
                match tokio::time::timeout(delay, stream.read(&mut byte)).await {
                    Err(_) => {}
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {
                        shared.counters.add(|c| &mut c.early_talkers);
                        log::info!("mail: {peer} talked before the greeting, refused");
                        send_and_close(stream, &greeting::early_talker()).await;
                        return;
                    }
                }
            }
            let permit = match admission.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // Over the limit: hold the connection in the tarpit
                    // (no greeting yet) if there is room, else 421.
                    let Ok(_tp) = admission.tarpit.clone().try_acquire_owned() else {
                        refuse(stream, &shared.hostname).await;
                        return;
                    };
                    let wait = admission.slots.clone().acquire_owned();
                    match tokio::time::timeout(TARPIT_MAX_WAIT, wait).await {
                        Ok(Ok(p)) => p,
                        _ => {
                            refuse(stream, &shared.hostname).await;
                            return;
                        }
                    }
                }
            };
            if let Err(e) = session(stream, peer, kind, &shared, exempt, started).await {
                log::debug!("mail: session with {peer}: {e}");
            }
            drop(permit);
        });
    }
}

async fn refuse(stream: TcpStream, hostname: &str) {
    let r = Reply::new(421, "4.3.2", format!("{hostname} busy, try again later"));
    send_and_close(stream, &r).await;
}

async fn send_and_close(mut stream: TcpStream, r: &Reply) {
    let _ = stream.write_all(r.to_wire().as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// One check's lookups, running as a task until `deadline` (its start
/// plus the budget); aborted when dropped.
struct Task<T> {
    handle: tokio::task::JoinHandle<T>,
    deadline: tokio::time::Instant,
}

impl<T: Send + 'static> Task<T> {
    fn spawn(f: impl std::future::Future<Output = T> + Send + 'static, budget: Duration) -> Self {
        Task {
            handle: tokio::spawn(f),
            deadline: tokio::time::Instant::now() + budget,
        }
    }

    /// The result (`Some`), or `None` when the task ran past its deadline;
    /// `wait`: waits until then, else `Err(self)` while it still runs.
    async fn get(mut self, wait: bool) -> Result<Option<T>, Self> {
        if !wait && !self.handle.is_finished() && tokio::time::Instant::now() < self.deadline {
            return Err(self);
        }
        Ok(tokio::time::timeout_at(self.deadline, &mut self.handle)
            .await
            .ok()
            .and_then(Result::ok))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The anti-spam lookups of a session still running.
#[derive(Default)]
struct Lookups {
    rdns: Option<Task<Rdns>>,
    lists: Vec<(usize, Task<Listing>)>,
    spf: Option<Task<SpfOutcome>>,
}

const PAST_BUDGET: &str = "no answer within mail.policy.lookup_budget_ms";

struct SessionGate<'a> {
    shared: &'a Shared,
    client: IpAddr,
    /// The client is in a relay network: no per-client limits, no
    /// greylisting, no DNS checks.
    exempt: bool,
    /// The envelope sender of the transaction (for greylisting).
    from: String,
    /// Its domain (`None` for `<>` or an address literal): greylisting
    /// lets a client that passed SPF for it in at once when it is known.
    from_domain: Option<String>,
    /// The DNS checks apply (port 25, not a relay network).
    dns_checks: bool,
    /// Port 25, not a relay network: messages are verified.
    outsider: bool,
    /// The DNS checks' results so far; running ones count as incomplete.
    /// `checks.spf` is the current transaction's SPF outcome, for
    /// Authentication-Results, DMARC and greylisting.
    checks: Checks,
    lookups: Lookups,
    /// MAIL was accepted: settle the checks before the next command.
    settle: bool,
}

/// The DNS checks of a connection, started as soon as it is accepted (so
/// that they overlap the greeting delay).
struct Started {
    on: bool,
    /// Port 25 and not a relay network: an outsider's messages are
    /// verified (unless it authenticates).
    outsider: bool,
    checks: Checks,
    lookups: Lookups,
}

impl Started {
    /// Starts the client checks (reverse DNS, DNS lists) of `client`;
    /// none for a relay network (`exempt`), the submission port, or
    /// without a resolver.
    fn new(shared: &Shared, client: IpAddr, kind: Listener, exempt: bool) -> Started {
        let mut st = Started {
            on: false,
            outsider: kind == Listener::Smtp && !exempt,
            checks: Checks::default(),
            lookups: Lookups::default(),
        };
        let resolver = shared.config.resolver.parse().ok();
        let (Some(addr), false, Listener::Smtp) = (resolver, exempt, kind) else {
            return st;
        };
        st.on = true;
        let cache = Cache(addr);
        let c = &shared.config.policy;
        if c.rdns.enabled {
            st.checks.rdns = Some(Rdns::Incomplete("still running".into()));
            let f = async move { rdns::check(&cache, client).await };
            st.lookups.rdns = Some(Task::spawn(f, c.budget()));
        }
        for (i, list) in c.dnsbl.iter().enumerate() {
            st.checks.lists.push((i, Listing::Running));
            let list = list.clone();
            let f = async move { dnsbl::check(&cache, client, &list).await };
            st.lookups.lists.push((i, Task::spawn(f, c.budget())));
        }
        st
    }
}

impl<'a> SessionGate<'a> {
    fn new(shared: &'a Shared, client: IpAddr, exempt: bool, started: Started) -> Self {
        SessionGate {
            shared,
            client,
            exempt,
            from: String::new(),
            from_domain: None,
            dns_checks: started.on,
            outsider: started.outsider,
            checks: started.checks,
            lookups: started.lookups,
            settle: false,
        }
    }

    /// MAIL FROM was accepted: starts its SPF check.
    fn sender(&mut self, helo: String, from: &ReversePath, authenticated: bool) {
        self.lookups.spf = None;
        self.checks.spf = None;
        self.settle = true;
        let c = &self.shared.config.policy;
        let Ok(addr) = self.shared.config.resolver.parse() else {
            return;
        };
        if !self.dns_checks || authenticated || !c.spf.enabled {
            return;
        }
        let from = match from {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => match &m.domain {
                crate::smtp::Domain::Name(d) => Some(format!("{}@{d}", m.local)),
                // An address literal has no SPF record.
                crate::smtp::Domain::Literal(_) => return,
            },
        };
        let client = self.client;
        self.checks.spf = Some(spf::pending(client, &helo, from.as_deref()));
        let f = async move { spf::check(&Cache(addr), client, &helo, from.as_deref()).await };
        self.lookups.spf = Some(Task::spawn(f, c.budget()));
    }

    /// Moves finished results into `checks`; `wait`: waits for the rest
    /// until their deadlines.
    async fn collect(&mut self, wait: bool) {
        if let Some(t) = self.lookups.rdns.take() {
            match t.get(wait).await {
                Ok(r) => self.checks.rdns = Some(r.unwrap_or(Rdns::Incomplete(PAST_BUDGET.into()))),
                Err(t) => self.lookups.rdns = Some(t),
            }
        }
        for (i, t) in std::mem::take(&mut self.lookups.lists) {
            match t.get(wait).await {
                Ok(r) => {
                    let r = r.unwrap_or(Listing::Incomplete(PAST_BUDGET.into()));
                    if let Some(slot) = self.checks.lists.iter_mut().find(|(j, _)| *j == i) {
                        slot.1 = r;
                    }
                }
                Err(t) => self.lookups.lists.push((i, t)),
            }
        }
        if let Some(t) = self.lookups.spf.take() {
            match t.get(wait).await {
                // On a timeout, the pending outcome stays: temperror.
                Ok(r) => {
                    if let Some(o) = r {
                        self.checks.spf = Some(o);
                    }
                }
                Err(t) => self.lookups.spf = Some(t),
            }
        }
    }

    /// The current transaction's SPF outcome for the rest of the session
    /// (Authentication-Results, DMARC, greylisting's "passes SPF for a
    /// known sender domain"): `wait` waits for a running check until its
    /// deadline; without, a check still running reads as temperror.
    /// `None`: no SPF check (disabled, exempt, literal domain).
    async fn spf_outcome(&mut self, wait: bool) -> Option<&SpfOutcome> {
        if let Some(t) = self.lookups.spf.take() {
            match t.get(wait).await {
                Ok(Some(o)) => self.checks.spf = Some(o),
                Ok(None) => {}
                Err(t) => self.lookups.spf = Some(t),
            }
        }
        self.checks.spf.as_ref()
    }

    /// Before the verdict at RCPT: the finished results, then, when what
    /// still runs could change the answer, the rest within the budget.
    async fn settle(&mut self, authenticated: bool) {
        self.settle = false;
        self.collect(false).await;
        if authenticated || !self.dns_checks {
            return;
        }
        let c = &self.shared.config.policy;
        if self.checks.verdict(c, self.client).is_err() {
            self.collect(true).await;
        }
    }

    /// The DNS checks' verdict on a recipient the relay rules allowed
    /// (see `policy::Checks::verdict`); postmaster is always deliverable
    /// (RFC 5321 4.5.1), authenticated clients are exempt.
    fn dns_verdict(&self, to: &Mailbox, authenticated: bool) -> Result<(), Reply> {
        if !self.dns_checks || authenticated || to.local.eq_ignore_ascii_case("postmaster") {
            return Ok(());
        }
        self.checks
            .verdict(&self.shared.config.policy, self.client)
            .inspect_err(|r| {
                self.shared.counters.add(if r.code >= 500 {
                    |c| &mut c.refused
                } else {
                    |c| &mut c.deferred
                });
                log::info!(
                    "mail: {to} from {} refused: {} {}",
                    self.client,
                    r.code,
                    r.lines.join(" ")
                )
            })
    }

    /// The anti-spam checks of one recipient that is no alias nor the
    /// board's postmaster: valid user, greylisting, recipient count.
    fn check_rcpt(&mut self, to: &Mailbox, authenticated: bool) -> Result<(), Reply> {
        let shared = self.shared;
        if shared.policy.is_ours(&to.domain) {
            shared
                .recipients
                .check(to)
                .inspect_err(|_| shared.counters.add(|c| &mut c.unknown_user))?;
        }
        if self.exempt || authenticated {
            return Ok(());
        }
        self.dns_verdict(to, authenticated)?;
        let now = crate::mail::spool::Spool::unix_now();
        if let Some(g) = &shared.greylist {
            let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
            // SPF as settled before this command: a check still running
            // reads as temperror, not a pass (greylisting then applies;
            // its 450 is temporary anyway). The table decides whether
            // the domain is known.
            let spf_pass = self
                .from_domain
                .as_deref()
                .is_some_and(|d| self.checks.spf.as_ref().is_some_and(|o| o.passes_for(d)));
            g.check(now, self.client, &self.from, &to.to_string(), spf_pass)
                .inspect_err(|_| {
                    shared.counters.add(|c| &mut c.greylisted);
                    log::info!("mail: greylisted {} <{}> -> <{to}>", self.client, self.from)
                })?;
        }
        shared
            .limits()
            .recipient(ClientKey::of(self.client), now)
            .inspect_err(|_| shared.counters.add(|c| &mut c.over_limits))
    }

    /// [`Gate::rcpt`] before it counts an accepted recipient.
    fn rcpt_checked(&mut self, to: &Mailbox, authenticated: bool) -> Result<Vec<Mailbox>, Reply> {
        let relay = self
            .shared
            .policy
            .check_rcpt(to, self.client, authenticated);
        let rcpt = self
            .shared
            .aliases
            .rcpt(to, relay)
            .inspect_err(|_| self.shared.counters.add(|c| &mut c.relay_denied))?;
        Ok(match rcpt {
            Rcpt::Itself => {
                self.check_rcpt(to, authenticated)?;
                vec![to.clone()]
            }
            Rcpt::Alias(list) => {
                self.dns_verdict(to, authenticated)?;
                log::debug!("mail: {to} is an alias of {} address(es)", list.len());
                list.to_vec()
            }
            Rcpt::Postmaster(pm) => {
                log::warn!(
                    "mail: mail for {to} accepted (postmaster is always deliverable) but [mail.aliases] has no postmaster nor root: it stays queued as {pm}; add postmaster = \"you@example.org\""
                );
                vec![pm]
            }
        })
    }
}

impl Gate for SessionGate<'_> {
    fn mail(
        &mut self,
        from: &ReversePath,
        _size: Option<u64>,
        authenticated: bool,
    ) -> Result<(), Reply> {
        if self.shared.spool.is_full() {
            return Err(Reply::new(452, "4.3.1", "Insufficient system storage"));
        }
        if !self.exempt && !authenticated {
            let now = crate::mail::spool::Spool::unix_now();
            self.shared
                .limits()
                .message(ClientKey::of(self.client), now)
                .inspect_err(|_| self.shared.counters.add(|c| &mut c.over_limits))?;
        }
        self.from = from.to_string();
        self.from_domain = match from {
            ReversePath::Mailbox(m) => match &m.domain {
                crate::smtp::Domain::Name(d) => Some(d.clone()),
                crate::smtp::Domain::Literal(_) => None,
            },
            ReversePath::Null => None,
        };
        Ok(())
    }

    fn rcpt(&mut self, to: &Mailbox, authenticated: bool) -> Result<Vec<Mailbox>, Reply> {
        let r = self.rcpt_checked(to, authenticated);
        if r.is_ok() {
            self.shared.counters.add(|c| &mut c.accepted);
        }
        r
    }
}

fn settings(shared: &Shared, kind: Listener) -> Settings {
    let c = &shared.config;
    Settings {
        hostname: shared.hostname.clone(),
        max_message_bytes: c.max_message_bytes,
        max_recipients: c.max_recipients,
        max_errors: c.max_errors,
        error_delay: Duration::from_millis(c.error_delay_ms),
        tls_available: shared.tls.is_some(),
        auth_available: shared.tls.is_some() && c.passwd_file.is_some(),
        auth_required: kind == Listener::Submission,
        max_hops: c.hopcount_limit,
    }
}

enum End {
    Closed,
    StartTls,
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    shared: &Shared,
    exempt: bool,
    started: Started,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut s = Session::new(settings(shared, kind));
    s.greet();
    let mut gate = SessionGate::new(shared, peer.ip(), exempt, started);
    let mut plain = stream;
    match drive(&mut plain, &mut s, &mut gate, shared, peer).await? {
        End::Closed => {
            let _ = plain.shutdown().await;
            Ok(())
        }
        End::StartTls => {
            let Some(acceptor) = &shared.tls else {
                return Ok(());
            };
            let handshake = acceptor.accept(plain);
            let timeout = Duration::from_secs(shared.config.command_timeout_s);
            let mut tls = tokio::time::timeout(timeout, handshake)
                .await
                .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
            s.tls_started();
            match drive(&mut tls, &mut s, &mut gate, shared, peer).await? {
                End::Closed | End::StartTls => {
                    let _ = tls.shutdown().await;
                    Ok(())
                }
            }
        }
    }
}

fn spool_reply(e: &SpoolError) -> Reply {
    match e {
        SpoolError::Full { .. } | SpoolError::LowSpace { .. } | SpoolError::TooManyOpen => {
            Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
        }
        _ => Reply::new(451, "4.3.0", "Local error in processing, try again later"),
    }
}

async fn flush_out<S: AsyncWrite + Unpin>(io: &mut S, s: &mut Session) -> std::io::Result<()> {
    let delay = s.take_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if s.has_output() {
        io.write_all(&s.take_output()).await?;
        io.flush().await?;
    }
    Ok(())
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    s: &mut Session,
    gate: &mut SessionGate<'_>,
    shared: &Shared,
    peer: SocketAddr,
) -> std::io::Result<End> {
    let mut buf = [0u8; READ_BUFFER];
    let (mut start, mut end) = (0usize, 0usize);
    let mut current: Option<u64> = None;
    let mut failed: Option<Reply> = None;
    let mut auth = MessageAuth::Off;
    let timeout = Duration::from_secs(shared.config.command_timeout_s);
    let result = async {
        loop {
            if gate.settle && start < end {
                gate.settle(s.is_authenticated()).await;
            }
            let (n, ev) = s.advance(&buf[start..end], gate);
            start += n;
            match ev {
                Event::NeedInput => {
                    flush_out(io, s).await?;
                    if start == end {
                        start = 0;
                        end = 0;
                    } else if end == buf.len() {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    let read = tokio::time::timeout(timeout, io.read(&mut buf[end..])).await;
                    match read {
                        Ok(Ok(0)) => return Ok(End::Closed),
                        Ok(Ok(k)) => end += k,
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            s.refuse(Reply::new(421, "4.4.2", "Timeout, closing"));
                            flush_out(io, s).await?;
                            return Ok(End::Closed);
                        }
                    }
                }
                Event::Sender { helo, from } => {
                    gate.sender(helo, &from, s.is_authenticated());
                }
                Event::DataStart(env) => {
                    // What finished by now, for the rest of the session.
                    gate.collect(false).await;
                    if let Some(line) = gate.checks.summary(&shared.config.policy, peer.ip()) {
                        log::info!("mail: checks on {peer}: {line}");
                    }
                    failed = None;
                    let submitted = gate.exempt || s.is_authenticated();
                    auth = MessageAuth::start(
                        &shared.config.policy,
                        &shared.signers,
                        &shared.authserv_id,
                        submitted,
                        gate.outsider && !s.is_authenticated(),
                    );
                    let rcpts = env.rcpts.iter().map(|m| m.to_string()).collect();
                    let received = crate::mail::spool::Spool::unix_now();
                    let flags = crate::mail::spool::record::MessageFlags {
                        eight_bit: env.eight_bit,
                        smtputf8: env.smtputf8,
                    };
                    match shared
                        .spool
                        .begin(env.from.to_string(), rcpts, received, flags)
                        .await
                    {
                        Ok(id) => {
                            current = Some(id);
                            let header = received_header(
                                &shared.hostname,
                                &env.helo,
                                peer,
                                id,
                                s.is_tls(),
                                s.is_authenticated(),
                            );
                            if let Err(e) = shared.spool.body(id, header.into_bytes()).await {
                                failed = Some(spool_reply(&e));
                            }
                        }
                        Err(e) => {
                            log::warn!("mail: cannot spool a message from {peer}: {e}");
                            failed = Some(spool_reply(&e));
                        }
                    }
                }
                Event::Body => {
                    let chunk = auth.chunk(s.take_body());
                    if let Some(id) = current
                        && !chunk.is_empty()
                        && let Err(e) = shared.spool.body(id, chunk).await
                    {
                        failed = Some(spool_reply(&e));
                    }
                }
                Event::MessageEnd => {
                    let chunk = s.take_body();
                    let auth = std::mem::replace(&mut auth, MessageAuth::Off);
                    let result = match (current.take(), failed.take()) {
                        (Some(id), None) => end_message(shared, gate, peer, id, chunk, auth)
                            .await
                            .map(|()| id),
                        (Some(id), Some(r)) => {
                            shared.spool.abort(id).await;
                            Err(r)
                        }
                        (None, Some(r)) => Err(r),
                        (None, None) => Err(Reply::new(451, "4.3.0", "Local error")),
                    };
                    if let Ok(id) = &result {
                        log::info!("mail: {id:016X} accepted from {peer}");
                        shared.kick.notify_one();
                    }
                    s.message_stored(result.map(|id| format!("{id:016X}")));
                }
                Event::MessageAborted => {
                    auth = MessageAuth::Off;
                    if let Some(id) = current.take() {
                        shared.spool.abort(id).await;
                    }
                }
                Event::StartTls => {
                    flush_out(io, s).await?;
                    // Clear-text bytes after STARTTLS are discarded
                    // (no command injection into the TLS session).
                    return Ok(End::StartTls);
                }
                Event::Authenticate(creds) => {
                    let verdict = match &shared.config.passwd_file {
                        Some(path) => super::auth::verdict(path, &creds, peer),
                        None => AuthVerdict::Unavailable,
                    };
                    s.auth_checked(verdict);
                }
                Event::Etrn(domain) => {
                    log::info!("mail: ETRN {domain} from {peer}");
                    let _ = shared.spool.flush().await;
                    shared.kick.notify_one();
                }
                Event::Close => {
                    flush_out(io, s).await?;
                    return Ok(End::Closed);
                }
            }
        }
    }
    .await;
    if let Some(id) = current {
        shared.spool.abort(id).await;
    }
    result
}

/// The end of a message being spooled: its last bytes stored, message
/// authentication done (a header field in front of it, or the message
/// refused), then the end, durable before this returns.
async fn end_message(
    shared: &Shared,
    gate: &mut SessionGate<'_>,
    peer: SocketAddr,
    id: u64,
    chunk: Vec<u8>,
    mut auth: MessageAuth<'_>,
) -> Result<(), Reply> {
    let mut last = auth.chunk(chunk);
    last.extend(auth.rest());
    if !last.is_empty() {
        shared
            .spool
            .body(id, last)
            .await
            .map_err(|e| spool_reply(&e))?;
    }
    let now = crate::mail::spool::Spool::unix_now();
    let ending = match auth {
        MessageAuth::Off => Ending::Keep,
        MessageAuth::Sign(m) => match msgauth::signature(*m, now) {
            Some(field) => {
                log::info!("mail: {id:016X} from {peer}: DKIM-signed");
                Ending::Head(field.into_bytes())
            }
            None => Ending::Keep,
        },
        MessageAuth::Verify(v) => {
            let c = &shared.config.policy;
            let done = v.finish(c);
            // The TXT lookups run while the SPF check (if still running)
            // is awaited; each within the budget.
            let resolver = shared.config.resolver.parse().ok().map(Cache);
            let lookups = msgauth::TxtLookups::start(resolver.as_ref(), &done.names, c.budget());
            gate.collect(false).await;
            let spf = gate.spf_outcome(true).await.map(msgauth::spf_check);
            let iprev = gate
                .checks
                .rdns
                .as_ref()
                .map(|r| msgauth::iprev(r, peer.ip()));
            let answers = lookups.answers().await;
            let results = done.results(c, spf.as_ref(), &answers, now);
            let ending = results.ending(
                c,
                &shared.authserv_id,
                iprev.as_ref(),
                spf.as_ref(),
                msgauth::roll(),
            );
            let refused = if let Ending::Refuse(_) = ending {
                ", refused"
            } else {
                ""
            };
            log::info!(
                "mail: {id:016X} from {peer}: {}{refused}",
                results.summary()
            );
            ending
        }
    };
    match ending {
        Ending::Keep => {}
        Ending::Head(h) => shared
            .spool
            .head(id, h)
            .await
            .map_err(|e| spool_reply(&e))?,
        Ending::Refuse(r) => {
            shared.counters.add(|c| &mut c.dmarc_rejected);
            shared.spool.abort(id).await;
            return Err(r);
        }
    }
    shared.spool.end(id).await.map_err(|e| spool_reply(&e))
}

/// The Received header (RFC 5321 4.4) with the RFC 3848 protocol type:
/// ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both). The authenticated
/// user's name is logged, not written into the message.
fn received_header(
    host: &str,
    helo: &str,
    peer: SocketAddr,
    id: u64,
    tls: bool,
    auth: bool,
) -> String {
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    let with = match (tls, auth) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    format!(
        "Received: from {helo} ([{}])\r\n\tby {host} (Pocobelle) with {with} id {id:016X};\r\n\t{}\r\n",
        peer.ip(),
        rfc5322_date(crate::mail::spool::Spool::unix_now())
    )
}

/// An RFC 5322 date in UTC for a Unix time.
pub fn rfc5322_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d} {mon} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Grows the inbound limit during slow start: one slot per
/// [`SLOW_START_STEP`] while `<run_dir>/dns.primed` is absent, all of
/// them as soon as it appears.
pub async fn slow_start(admission: Arc<Admission>, primed_file: PathBuf) {
    let mut last = Instant::now();
    while admission.current_limit() < admission.limit {
        if primed_file.exists() {
            admission.grow(true);
            return;
        }
        if last.elapsed() >= SLOW_START_STEP {
            admission.grow(false);
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_000_000),
            "Wed, 18 Nov 2026 11:06:40 +0000"
        );
    }

    #[test]
    fn slow_start_grows_to_the_limit() {
        let a = Admission::new(4, 2, false);
        assert_eq!(a.current_limit(), 1);
        a.grow(false);
        assert_eq!(a.current_limit(), 2);
        a.grow(true);
        assert_eq!(a.current_limit(), 4);
        a.grow(true);
        assert_eq!(a.slots.available_permits(), 4);
    }
}

/// The listener's session path over the in-memory queue: the 250 after
/// the final dot waits for the queue's commit.
#[cfg(test)]
mod commit_tests {
    use super::*;
    use crate::mail::queue::{MemProbe, MemQueue, Step};
    use tokio::io::DuplexStream;

    fn shared(spool: SpoolHandle) -> Shared {
        let config = MailConfig {
            domains: vec!["home.arpa".into()],
            ..MailConfig::default()
        };
        Shared::new(config, "mx.test".into(), spool, None, None)
    }

    /// A check still running is awaited only when it could change the
    /// answer (never with the defaults), then only until its budget, past
    /// which it is incomplete: 451 at most, never a 5xx.
    #[tokio::test(flavor = "current_thread")]
    async fn running_checks_are_awaited_only_when_they_matter_and_within_budget() {
        use crate::config::Action;
        use crate::mail::lookup::Fixture;
        let (q, _probe) = MemQueue::new();
        let spool = SpoolHandle::start(q, Duration::ZERO);
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let to = Mailbox {
            local: "u".into(),
            domain: crate::smtp::Domain::Name("home.arpa".into()),
        };
        let hanging = || {
            let f = Arc::new(Fixture {
                hang: vec!["9.2.0.192.in-addr.arpa".into()],
                ..Fixture::default()
            });
            let task = Task::spawn(
                async move { rdns::check(&f, client).await },
                Duration::from_millis(300),
            );
            Started {
                on: true,
                outsider: true,
                checks: Checks {
                    rdns: Some(Rdns::Incomplete("still running".into())),
                    ..Checks::default()
                },
                lookups: Lookups {
                    rdns: Some(task),
                    ..Lookups::default()
                },
            }
        };
        // Defaults: a missing PTR only scores; nothing to wait for.
        let defaults = shared(spool.clone());
        let mut gate = SessionGate::new(&defaults, client, false, hanging());
        gate.settle = true;
        let t = Instant::now();
        gate.settle(false).await;
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(gate.lookups.rdns.is_some(), "left running");
        assert_eq!(gate.rcpt(&to, false).unwrap(), vec![to.clone()]);
        // A missing PTR refuses: the check is awaited until its budget,
        // then it is incomplete: 451 4.7.25.
        let mut strict = shared(spool.clone());
        strict.config.policy.rdns.missing = Action::Reject;
        let mut gate = SessionGate::new(&strict, client, false, hanging());
        gate.settle = true;
        let t = Instant::now();
        gate.settle(false).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        assert!(gate.lookups.rdns.is_none());
        let r = gate.rcpt(&to, false).unwrap_err();
        assert_eq!((r.code, r.enhanced), (451, Some("4.7.25")));
        // Postmaster and authenticated clients are exempt.
        let pm = Mailbox {
            local: "PostMaster".into(),
            ..to.clone()
        };
        assert!(gate.rcpt(&pm, false).is_ok());
        assert!(gate.rcpt(&to, true).is_ok());
    }

    /// Reads one whole reply (up to its last line); `None` if none comes
    /// within `wait`.
    async fn reply(c: &mut DuplexStream, wait: Duration) -> Option<String> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        let read = async {
            loop {
                if c.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                got.push(byte[0]);
                if got.ends_with(b"\r\n") {
                    let text = String::from_utf8_lossy(&got).to_string();
                    let last = text.trim_end().rsplit("\r\n").next().unwrap_or("");
                    if last.as_bytes().get(3) == Some(&b' ') {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(wait, read).await.ok()?;
        Some(String::from_utf8_lossy(&got).to_string())
    }

    async fn say(c: &mut DuplexStream, line: &str) -> String {
        c.write_all(line.as_bytes()).await.unwrap();
        reply(c, Duration::from_secs(10)).await.expect("a reply")
    }

    fn commits_after_end(probe: &MemProbe, id_count: usize) -> (Vec<u64>, Vec<bool>) {
        let j = probe.journal();
        let ends: Vec<u64> = j
            .iter()
            .filter_map(|s| match s {
                Step::End(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), id_count, "{j:?}");
        let last_end = j.iter().rposition(|s| matches!(s, Step::End(_))).unwrap();
        let commits = j[last_end..]
            .iter()
            .filter_map(|s| match s {
                Step::Commit(ok) => Some(*ok),
                _ => None,
            })
            .collect();
        (ends, commits)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_250_waits_for_the_commit_and_a_failed_commit_gets_451() {
        let (q, probe) = MemQueue::new();
        let spool = SpoolHandle::start(q, Duration::ZERO);
        let shared = shared(spool.clone());
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let (mut c, mut server) = tokio::io::duplex(64 * 1024);
        let mut s = Session::new(settings(&shared, Listener::Smtp));
        s.greet();
        let mut gate = SessionGate::new(
            &shared,
            peer.ip(),
            false,
            Started::new(&shared, peer.ip(), Listener::Smtp, false),
        );
        let server = drive(&mut server, &mut s, &mut gate, &shared, peer);
        let client = async {
            assert!(
                reply(&mut c, Duration::from_secs(10))
                    .await
                    .unwrap()
                    .starts_with("220")
            );
            assert!(say(&mut c, "EHLO client.test\r\n").await.starts_with("250"));
            for round in 0..2 {
                assert!(
                    say(&mut c, "MAIL FROM:<a@b.test>\r\n")
                        .await
                        .starts_with("250")
                );
                assert!(
                    say(&mut c, "RCPT TO:<u@home.arpa>\r\n")
                        .await
                        .starts_with("250")
                );
                assert!(say(&mut c, "DATA\r\n").await.starts_with("354"));
                // The commit is held: the message is ended, and no reply
                // comes.
                probe.hold_commits(true);
                c.write_all(b"Subject: x\r\n\r\nhello\r\n.\r\n")
                    .await
                    .unwrap();
                assert_eq!(reply(&mut c, Duration::from_millis(300)).await, None);
                let (ends, commits) = commits_after_end(&probe, round + 1);
                assert_eq!(commits, Vec::<bool>::new(), "no commit returned yet");
                if round == 0 {
                    // The commit returns Ok: then, and only then, 250.
                    probe.hold_commits(false);
                    let r = reply(&mut c, Duration::from_secs(10)).await.unwrap();
                    assert!(r.starts_with("250"), "{r}");
                    assert_eq!(commits_after_end(&probe, 1).1, vec![true]);
                    let listed: Vec<u64> = spool
                        .snapshot()
                        .await
                        .unwrap()
                        .iter()
                        .map(|e| e.id)
                        .collect();
                    assert_eq!(listed, ends);
                } else {
                    // The commit fails: no 250, a temporary error.
                    probe.fail_commits(true);
                    probe.hold_commits(false);
                    let r = reply(&mut c, Duration::from_secs(10)).await.unwrap();
                    assert!(r.starts_with("451"), "{r}");
                    assert_eq!(commits_after_end(&probe, 2).1, vec![false]);
                    probe.fail_commits(false);
                    // The next commit succeeds: the message of the failed
                    // one must not become durable with it (the sender
                    // retries it, and its bytes may be gone).
                    spool.commit().await.unwrap();
                    let listed: Vec<u64> = spool
                        .snapshot()
                        .await
                        .unwrap()
                        .iter()
                        .map(|e| e.id)
                        .collect();
                    assert_eq!(listed, ends[..1], "the 451 message is queued");
                }
            }
            assert!(say(&mut c, "QUIT\r\n").await.starts_with("221"));
        };
        let (ended, ()) = tokio::join!(server, client);
        assert!(matches!(ended, Ok(End::Closed)));
    }
}

/// The anti-spam checks as the session gate applies them: their order at
/// RCPT, and who is exempt.
#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::mail::policy::greylist::SECRET_BYTES;
    use crate::mail::policy::spf::{Identity, SpfResult};
    use crate::mail::queue::MemQueue;
    use crate::smtp::command::parse_path;

    fn shared() -> Shared {
        shared_with(|_| {})
    }

    fn shared_with(change: impl FnOnce(&mut MailConfig)) -> Shared {
        let mut config = MailConfig {
            domains: vec!["home.arpa".into()],
            relay_networks: vec!["192.168.1.0/24".into()],
            ..MailConfig::default()
        };
        config
            .policy
            .recipients
            .valid
            .insert("home.arpa".into(), vec!["alice".into()]);
        config.policy.limits.max_messages = 2;
        config.policy.greylist.enabled = true;
        change(&mut config);
        let grey = Greylist::new(&config.policy.greylist, [3; SECRET_BYTES]);
        let (q, _) = MemQueue::new();
        let spool = SpoolHandle::start(q, Duration::ZERO);
        Shared::new(config, "mx.test".into(), spool, None, Some(grey))
    }

    fn gate<'a>(shared: &'a Shared, client: &str) -> SessionGate<'a> {
        let client: IpAddr = client.parse().unwrap();
        let exempt = shared.policy.may_relay(client);
        // No DNS checks here (they have tests of their own).
        let none = Started {
            on: false,
            outsider: false,
            checks: Checks::default(),
            lookups: Lookups::default(),
        };
        SessionGate::new(shared, client, exempt, none)
    }

    fn code<T>(r: Result<T, Reply>) -> (u16, &'static str) {
        match r {
            Ok(_) => (250, ""),
            Err(r) => (r.code, r.enhanced.unwrap_or("")),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn order_and_exemptions() {
        let shared = shared();
        let from = ReversePath::Mailbox(parse_path("<a@b.test>").unwrap());
        let rcpt = |g: &mut SessionGate<'_>, to: &str, auth: bool| {
            code(g.rcpt(&parse_path(to).unwrap(), auth))
        };
        let mut out = gate(&shared, "203.0.113.5");
        assert_eq!(code(out.mail(&from, None, false)), (250, ""));
        // Relay policy first, then the valid users, then greylisting.
        assert_eq!(rcpt(&mut out, "<u@example.org>", false), (554, "5.7.1"));
        assert_eq!(rcpt(&mut out, "<mallory@home.arpa>", false), (550, "5.1.1"));
        assert_eq!(rcpt(&mut out, "<alice@home.arpa>", false), (450, "4.7.1"));
        // The board's postmaster is never greylisted nor validated.
        assert_eq!(rcpt(&mut out, "<postmaster@mx.test>", false), (250, ""));
        // Authenticated: no greylisting, no message limit; users are
        // still validated.
        assert_eq!(rcpt(&mut out, "<alice@home.arpa>", true), (250, ""));
        assert_eq!(rcpt(&mut out, "<mallory@home.arpa>", true), (550, "5.1.1"));
        assert_eq!(code(out.mail(&from, None, false)), (250, ""));
        assert_eq!(code(out.mail(&from, None, false)), (450, "4.7.0"));
        assert_eq!(code(out.mail(&from, None, true)), (250, ""));
        // A relay network: exempt from limits and greylisting.
        let mut lan = gate(&shared, "192.168.1.9");
        for _ in 0..3 {
            assert_eq!(code(lan.mail(&from, None, false)), (250, ""));
        }
        assert_eq!(rcpt(&mut lan, "<alice@home.arpa>", false), (250, ""));
        assert_eq!(rcpt(&mut lan, "<mallory@home.arpa>", false), (550, "5.1.1"));
        // What `pocobelle status` shows of it.
        assert_eq!(
            shared.counters.counts(),
            crate::mail::policy::Counts {
                accepted: 3,
                relay_denied: 1,
                unknown_user: 3,
                greylisted: 1,
                over_limits: 1,
                ..Default::default()
            }
        );
    }

    /// The SPF result the gate holds for the transaction.
    fn spf_result(
        g: &SessionGate<'_>,
        result: SpfResult,
        identity: Identity,
        domain: &str,
    ) -> SpfOutcome {
        SpfOutcome {
            result,
            identity,
            domain: domain.into(),
            sender: format!("x@{domain}"),
            client: g.client,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn spf_pass_for_a_known_sender_domain_skips_greylisting() {
        // No delay: a second try passes.
        let shared = shared_with(|c| c.policy.greylist.min_delay_s = 0);
        let to = parse_path("<alice@home.arpa>").unwrap();
        let mail = |g: &mut SessionGate<'_>, from: &str| {
            let from = match from {
                "<>" => ReversePath::Null,
                f => ReversePath::Mailbox(parse_path(f).unwrap()),
            };
            assert_eq!(code(g.mail(&from, None, false)), (250, ""));
        };
        // A client of x.test retries: x.test is known.
        let mut first = gate(&shared, "203.0.113.5");
        mail(&mut first, "<a@x.test>");
        first.checks.spf = Some(spf_result(
            &first,
            SpfResult::Pass,
            Identity::MailFrom,
            "x.test",
        ));
        assert_eq!(code(first.rcpt(&to, false)), (450, "4.7.1"));
        assert_eq!(code(first.rcpt(&to, false)), (250, ""));
        // Another network, another address, SPF passes for x.test: at once.
        let mut other = gate(&shared, "198.51.100.7");
        mail(&mut other, "<b@X.test>");
        other.checks.spf = Some(spf_result(
            &other,
            SpfResult::Pass,
            Identity::MailFrom,
            "x.test",
        ));
        assert_eq!(code(other.rcpt(&to, false)), (250, ""));
        // SPF still running (pending: temperror), an unknown domain, a
        // pass for another domain than MAIL FROM's, a pass for the HELO
        // name only, the null sender (its HELO passing): greylisted.
        let cases = [
            (
                "192.0.2.9",
                "<c@x.test>",
                SpfResult::TempError,
                Identity::MailFrom,
                "x.test",
            ),
            (
                "192.0.3.9",
                "<d@y.test>",
                SpfResult::Pass,
                Identity::MailFrom,
                "y.test",
            ),
            (
                "192.0.4.9",
                "<e@x.test>",
                SpfResult::Pass,
                Identity::MailFrom,
                "y.test",
            ),
            (
                "192.0.7.9",
                "<g@x.test>",
                SpfResult::Pass,
                Identity::Helo,
                "x.test",
            ),
            ("192.0.5.9", "<>", SpfResult::Pass, Identity::Helo, "x.test"),
        ];
        for (client, from, result, identity, domain) in cases {
            let mut g = gate(&shared, client);
            mail(&mut g, from);
            g.checks.spf = Some(spf_result(&g, result, identity, domain));
            assert_eq!(code(g.rcpt(&to, false)), (450, "4.7.1"), "{client} {from}");
        }
        // No SPF check at all: greylisted.
        let mut g = gate(&shared, "192.0.6.9");
        mail(&mut g, "<f@x.test>");
        assert_eq!(code(g.rcpt(&to, false)), (450, "4.7.1"));
    }
}
