//! Supervised services: each runs as a child process with its own user
//! (keeping only CAP_NET_BIND_SERVICE, so it can bind port 25 or 53 and
//! nothing more), its own oom_score_adj, a cgroup v2 memory ceiling where
//! the kernel has one, and a readiness pipe (`POCOBELLE_READY_FD`). Starts
//! follow `order::next_step`; deaths are restarted by `restart`'s backoff.
//! This module owns the children's lifecycle; it never reaps: the PID 1
//! loop reaps with waitpid(-1) and reports each exit to [`Supervisor::on_exit`].

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::{Readiness, ServiceConfig};
use crate::init::logring::{self, LineSplitter};
use crate::init::order::{self, Slot, Step};
use crate::init::restart::RestartTracker;
use crate::init::users;

/// The fd number a service finds its readiness pipe on.
pub const READY_FD: RawFd = 3;
/// Environment variable naming [`READY_FD`].
pub const ENV_READY_FD: &str = "POCOBELLE_READY_FD";
/// What a service writes to its readiness pipe once primed.
pub const READY_LINE: &[u8] = b"primed\n";
/// Where the memory ceilings live.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// At most this many bytes of a service's output are copied per wake-up,
/// so that a chatty service cannot starve the PID 1 loop.
pub const OUTPUT_READ_BYTES: usize = 16 * 1024;
/// Adds `KEY=VALUE` entries (a service's `env`, validated when the
/// configuration loads) to a command's environment.
pub fn set_env(cmd: &mut Command, env: &[String]) {
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
}

/// Linux CAP_NET_BIND_SERVICE.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// A service's state, as `pocobelle status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Not started yet (waiting for an earlier service to be primed).
    Pending,
    /// Running with this pid since `since_ms`.
    Running { pid: i32, since_ms: u64 },
    /// Died; restarts at `at_ms`.
    Backoff { at_ms: u64 },
    /// Asked to stop; SIGKILL at `kill_at_ms`.
    Stopping { pid: i32, kill_at_ms: u64 },
    /// Stopped for shutdown.
    Stopped,
}

pub struct Service {
    pub cfg: ServiceConfig,
    pub state: State,
    pub ready: bool,
    pub first_started_ms: Option<u64>,
    pub restarts: u32,
    pub crash_loop: bool,
    pub last_exit: Option<String>,
    /// Why init holds this service back before its first start (power).
    pub hold: Option<String>,
    tracker: RestartTracker,
    ready_pipe: Option<OwnedFd>,
    /// Read end of the service's stdout/stderr pipe, and its partial line.
    output: Option<(OwnedFd, LineSplitter)>,
    cgroup: Option<PathBuf>,
}

/// The set of supervised services.
pub struct Supervisor {
    pub services: Vec<Service>,
    run_dir: PathBuf,
    budget_ms: u64,
    exe: PathBuf,
    shutting_down: bool,
    stop_grace_ms: u64,
    /// Whether services are dropped to their configured users (false only
    /// in host tests that are not root).
    pub drop_privileges: bool,
    /// The configuration file init runs with, when it is not the default
    /// (safe mode's last good copy, or `pocobelle.config=`): given to the
    /// applet services as `--config FILE` and to every service as
    /// `POCOBELLE_CONFIG`.
    config: Option<PathBuf>,
    /// The shared group (`users::SERVICE_GROUP`): its id is added to the
    /// supplementary groups of the service users that are its members.
    shared_group: Option<users::Group>,
}

impl Supervisor {
    pub fn new(cfgs: Vec<ServiceConfig>, run_dir: &Path, budget_ms: u64) -> Supervisor {
        let exe = std::fs::read_link("/proc/self/exe")
            .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        Supervisor {
            services: cfgs
                .into_iter()
                .map(|cfg| Service {
                    cfg,
                    state: State::Pending,
                    ready: false,
                    first_started_ms: None,
                    restarts: 0,
                    crash_loop: false,
                    last_exit: None,
                    hold: None,
                    tracker: RestartTracker::default(),
                    ready_pipe: None,
                    output: None,
                    cgroup: None,
                })
                .collect(),
            run_dir: run_dir.to_path_buf(),
            budget_ms,
            exe,
            shutting_down: false,
            stop_grace_ms: 10_000,
            drop_privileges: true,
            config: None,
            shared_group: None,
        }
    }

    /// Services whose user is a member of `g` also get its gid.
    pub fn set_shared_group(&mut self, g: users::Group) {
        self.shared_group = Some(g);
    }

    /// Makes the services use `path` instead of the default configuration.
    pub fn set_config(&mut self, path: &Path) {
        self.config = Some(path.to_path_buf());
    }

    /// Holds the service `name` back from its first start (`Some(why)`),
    /// or releases it (`None`). A service already started is not
    /// affected. Returns whether `name` was found and not yet started.
    pub fn set_hold(&mut self, name: &str, why: Option<String>) -> bool {
        let Some(s) = self
            .services
            .iter_mut()
            .find(|s| s.cfg.name == name && s.first_started_ms.is_none())
        else {
            return false;
        };
        if s.hold != why {
            match &why {
                Some(w) => log::warn!("supervisor: {name} held: {w}"),
                None => log::info!("supervisor: {name} released"),
            }
        }
        s.hold = why;
        true
    }

    /// Starts what the start order allows and restarts what is due.
    /// Returns the next time (ms since boot) it wants to be called.
    pub fn tick(&mut self, now_ms: u64) -> Option<u64> {
        if self.shutting_down {
            return self.stop_tick(now_ms);
        }
        self.check_ready_files();
        let mut next: Option<u64> = None;
        loop {
            let slots: Vec<Slot> = self
                .services
                .iter()
                .map(|s| Slot {
                    readiness: s.cfg.ready,
                    started_ms: s.first_started_ms,
                    ready: s.ready,
                    held: s.hold.is_some(),
                })
                .collect();
            match order::next_step(&slots, self.budget_ms, now_ms) {
                Step::Start {
                    index,
                    unprimed_before,
                } => {
                    if unprimed_before {
                        log::warn!(
                            "supervisor: an earlier service is not primed after {} s; starting {} anyway",
                            self.budget_ms / 1000,
                            self.services[index].cfg.name
                        );
                    }
                    self.services[index].first_started_ms = Some(now_ms);
                    self.start(index, now_ms);
                }
                Step::WaitUntil(t) => {
                    next = Some(t);
                    break;
                }
                Step::Done => break,
            }
        }
        for i in 0..self.services.len() {
            if let State::Backoff { at_ms } = self.services[i].state {
                if at_ms <= now_ms {
                    self.start(i, now_ms);
                } else {
                    next = Some(next.map_or(at_ms, |n| n.min(at_ms)));
                }
            }
        }
        next
    }

    fn start(&mut self, i: usize, now_ms: u64) {
        match self.spawn(i) {
            Ok(pid) => {
                let s = &mut self.services[i];
                log::info!("supervisor: {} started (pid {pid})", s.cfg.name);
                s.state = State::Running {
                    pid,
                    since_ms: now_ms,
                };
            }
            Err(e) => {
                let s = &mut self.services[i];
                log::error!("supervisor: {} cannot start: {e}", s.cfg.name);
                s.last_exit = Some(format!("start failed: {e}"));
                let d = s.tracker.on_exit(now_ms, now_ms);
                s.crash_loop = d.crash_loop;
                s.state = State::Backoff { at_ms: d.at_ms };
            }
        }
    }

    fn argv(&self, cfg: &ServiceConfig) -> Vec<String> {
        if cfg.argv.is_empty() {
            let mut v = vec![self.exe.to_string_lossy().into_owned(), cfg.name.clone()];
            if let Some(c) = &self.config {
                v.push("--config".into());
                v.push(c.to_string_lossy().into_owned());
            }
            v
        } else {
            cfg.argv.clone()
        }
    }

    fn setup_cgroup(&mut self, i: usize) -> Option<PathBuf> {
        let cfg = &self.services[i].cfg;
        if cfg.memory_max_mib == 0 {
            return None;
        }
        let root = Path::new(CGROUP_ROOT);
        if !root.join("cgroup.controllers").exists() {
            return None;
        }
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
        let dir = root.join(format!("pocobelle-{}", cfg.name));
        let _ = std::fs::create_dir(&dir);
        let bytes = cfg.memory_max_mib as u64 * 1024 * 1024;
        match std::fs::write(dir.join("memory.max"), bytes.to_string()) {
            Ok(()) => Some(dir),
            Err(e) => {
                log::info!("supervisor: {}: no memory ceiling ({e})", cfg.name);
                None
            }
        }
    }

    fn spawn(&mut self, i: usize) -> Result<i32, String> {
        let argv = self.argv(&self.services[i].cfg);
        let cgroup = self.setup_cgroup(i);
        let s = &self.services[i];
        let name = s.cfg.name.clone();
        let user = s.cfg.user_name();
        let ids = if self.drop_privileges {
            Some(
                users::lookup_system(&user)
                    .ok_or_else(|| format!("user {user:?} is not in /etc/passwd"))?,
            )
        } else {
            None
        };
        let extra_gid = self
            .shared_group
            .as_ref()
            .filter(|g| g.members.contains(&user))
            .map(|g| g.gid);
        let primed_file = self.run_dir.join(format!("{name}.primed"));
        let _ = std::fs::remove_file(&primed_file);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .env("POCOBELLE_SERVICE", &name)
            .env("POCOBELLE_RUN_DIR", &self.run_dir);
        if let Some(c) = &self.config {
            cmd.env("POCOBELLE_CONFIG", c);
        }
        set_env(&mut cmd, &s.cfg.env);
        let mut pipe_w: Option<OwnedFd> = None;
        let mut pipe_r: Option<OwnedFd> = None;
        if s.cfg.ready == Readiness::Primed {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))?;
            cmd.env(ENV_READY_FD, READY_FD.to_string());
            pipe_w = Some(w);
            pipe_r = Some(r);
        }
        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let _ = nix::fcntl::fcntl(
            &out_r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let out_w2 = out_w.try_clone().map_err(|e| format!("pipe: {e}"))?;
        cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(out_w2));
        let ready_w = pipe_w.as_ref().map(|w| w.as_raw_fd());
        let oom = CString::new(format!("{}\n", s.cfg.oom_score_adj)).map_err(|e| e.to_string())?;
        let cg_procs = cgroup.as_ref().map(|d| {
            CString::new(d.join("cgroup.procs").to_string_lossy().into_owned()).unwrap_or_default()
        });
        let ids = ids.filter(|i| i.uid != 0);
        // SAFETY: the closure runs between fork and exec; it only makes
        // async-signal-safe system calls on data prepared above.
        unsafe {
            cmd.pre_exec(move || child_setup(ready_w, &oom, cg_procs.as_deref(), ids, extra_gid));
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))?;
        drop(cmd);
        drop(pipe_w);
        self.on_output_fd(i);
        let s = &mut self.services[i];
        s.output = Some((out_r, LineSplitter::default()));
        s.ready_pipe = pipe_r;
        s.cgroup = cgroup;
        Ok(child.id() as i32)
    }

    /// Read ends of the readiness pipes, with the service index.
    pub fn ready_fds(&self) -> Vec<(RawFd, usize)> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.ready_pipe.as_ref().map(|p| (p.as_raw_fd(), i)))
            .collect()
    }

    /// Read ends of the output pipes, with the service index.
    pub fn output_fds(&self) -> Vec<(RawFd, usize)> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.output.as_ref().map(|(p, _)| (p.as_raw_fd(), i)))
            .collect()
    }

    /// The output pipe of service `i` is readable (or closed): copies its
    /// complete lines, with the service name once (see
    /// [`logring::service_line`]), to the console and the log ring. Reads
    /// at most [`OUTPUT_READ_BYTES`] per call.
    pub fn on_output_fd(&mut self, i: usize) {
        let s = &mut self.services[i];
        let name = s.cfg.name.clone();
        let Some((fd, split)) = s.output.as_mut() else {
            return;
        };
        let emit = |l: &str| {
            let line = logring::service_line(&name, l);
            let _ = writeln!(std::io::stderr(), "{line}");
            logring::record(&line);
        };
        let mut buf = [0u8; 4096];
        let mut total = 0;
        let mut eof = false;
        while total < OUTPUT_READ_BYTES {
            match nix::unistd::read(&*fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    split.feed(&buf[..n], emit);
                    total += n;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if eof {
            split.finish(emit);
            s.output = None;
        }
    }

    /// The readiness pipe of service `i` is readable.
    pub fn on_ready_fd(&mut self, i: usize) {
        let s = &mut self.services[i];
        let Some(pipe) = s.ready_pipe.take() else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = std::fs::File::from(pipe).read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(&READY_LINE[..READY_LINE.len() - 1]) {
            if !s.ready {
                log::info!("supervisor: {} is primed", s.cfg.name);
            }
            s.ready = true;
        } else if n == 0 {
            log::debug!("supervisor: {} closed its readiness pipe", s.cfg.name);
        }
        // The pipe is one-shot: closed after the first read.
    }

    fn check_ready_files(&mut self) {
        for s in &mut self.services {
            if s.cfg.ready == Readiness::Primed
                && !s.ready
                && self.run_dir.join(format!("{}.primed", s.cfg.name)).exists()
            {
                log::info!(
                    "supervisor: {} is primed ({}.primed)",
                    s.cfg.name,
                    s.cfg.name
                );
                s.ready = true;
            }
        }
    }

    /// A child exited; returns true when it was one of ours.
    pub fn on_exit(&mut self, pid: i32, how: &str, now_ms: u64) -> bool {
        let shutting_down = self.shutting_down;
        for s in &mut self.services {
            match s.state {
                State::Running { pid: p, since_ms } if p == pid => {
                    s.last_exit = Some(how.to_string());
                    s.ready_pipe = None;
                    // A restarted service must report primed again, and
                    // nobody may read its old `<name>.primed` meanwhile
                    // (mail's slow start watches `dns.primed`).
                    s.ready = false;
                    let _ =
                        std::fs::remove_file(self.run_dir.join(format!("{}.primed", s.cfg.name)));
                    if shutting_down {
                        s.state = State::Stopped;
                        return true;
                    }
                    let d = s.tracker.on_exit(since_ms, now_ms);
                    s.restarts += 1;
                    s.crash_loop = d.crash_loop;
                    if d.crash_loop {
                        log::error!(
                            "supervisor: {} is in a CRASH LOOP ({how}); restarting in {} s",
                            s.cfg.name,
                            (d.at_ms - now_ms) / 1000
                        );
                    } else {
                        log::warn!(
                            "supervisor: {} {how}; restarting in {} s",
                            s.cfg.name,
                            (d.at_ms - now_ms) / 1000
                        );
                    }
                    s.state = State::Backoff { at_ms: d.at_ms };
                    return true;
                }
                State::Stopping { pid: p, .. } if p == pid => {
                    log::info!("supervisor: {} stopped ({how})", s.cfg.name);
                    s.last_exit = Some(how.to_string());
                    s.state = State::Stopped;
                    return true;
                }
                _ => {}
            }
        }
        false
    }

    /// Begins the shutdown: no more restarts; services are stopped in
    /// reverse start order (mail before dns), each given `grace_ms`.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for s in &mut self.services {
            if matches!(s.state, State::Pending | State::Backoff { .. }) {
                s.state = State::Stopped;
            }
        }
    }

    /// Advances the shutdown: signals the last running service; returns the
    /// next deadline, or None when all have stopped.
    fn stop_tick(&mut self, now_ms: u64) -> Option<u64> {
        let grace = self.stop_grace_ms;
        for s in self.services.iter_mut().rev() {
            match s.state {
                State::Running { pid, .. } => {
                    log::info!("supervisor: stopping {} (SIGTERM to {pid})", s.cfg.name);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    s.state = State::Stopping {
                        pid,
                        kill_at_ms: now_ms + grace,
                    };
                    return Some(now_ms + grace);
                }
                State::Stopping { pid, kill_at_ms } => {
                    if now_ms >= kill_at_ms {
                        log::warn!(
                            "supervisor: {} did not stop within {} s; SIGKILL",
                            s.cfg.name,
                            grace / 1000
                        );
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                        s.state = State::Stopping {
                            pid,
                            kill_at_ms: u64::MAX,
                        };
                        return Some(now_ms + 1000);
                    }
                    return Some(kill_at_ms.min(now_ms + 1000));
                }
                _ => {}
            }
        }
        None
    }

    /// Whether every service has stopped (after [`Self::begin_shutdown`]).
    pub fn all_stopped(&self) -> bool {
        self.services
            .iter()
            .all(|s| matches!(s.state, State::Stopped | State::Pending))
    }

    /// The pids of running services.
    #[cfg(test)]
    pub fn pids(&self) -> Vec<(usize, i32)> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                State::Running { pid, .. } | State::Stopping { pid, .. } => Some((i, pid)),
                _ => None,
            })
            .collect()
    }
}

impl Supervisor {
    /// Grace between SIGTERM and SIGKILL at shutdown.
    pub fn set_stop_grace_ms(&mut self, ms: u64) {
        self.stop_grace_ms = ms;
    }
}

/// In the child, between fork and exec: unblock signals (PID 1 blocks them
/// all and exec keeps the mask), new session, oom_score_adj, cgroup, the
/// readiness pipe on fd 3, then the user, keeping CAP_NET_BIND_SERVICE.
fn child_setup(
    ready_w: Option<RawFd>,
    oom: &CString,
    cg_procs: Option<&std::ffi::CStr>,
    ids: Option<users::Ids>,
    extra_gid: Option<u32>,
) -> std::io::Result<()> {
    // SAFETY: plain system calls on valid pointers; no allocation.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::setsid();
        write_str(c"/proc/self/oom_score_adj", oom.to_bytes());
        if let Some(p) = cg_procs {
            write_str(p, b"0\n");
        }
        if let Some(w) = ready_w {
            if w == READY_FD {
                libc::fcntl(w, libc::F_SETFD, 0);
            } else if libc::dup2(w, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(ids) = ids {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
            let groups = [ids.gid, extra_gid.unwrap_or(ids.gid)];
            let n = if extra_gid.is_some() { 2 } else { 1 };
            if libc::setgroups(n, groups.as_ptr()) != 0
                || libc::setgid(ids.gid) != 0
                || libc::setuid(ids.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            #[repr(C)]
            #[derive(Clone, Copy)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let hdr = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let bit = 1u32 << CAP_NET_BIND_SERVICE;
            let data = [
                Data {
                    effective: bit,
                    permitted: bit,
                    inheritable: bit,
                },
                Data {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            if libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) == 0 {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    CAP_NET_BIND_SERVICE as libc::c_ulong,
                    0,
                    0,
                );
            }
        }
    }
    Ok(())
}

/// open + write + close, ignoring errors (used between fork and exec).
unsafe fn write_str(path: &std::ffi::CStr, data: &[u8]) {
    // SAFETY: valid NUL-terminated path and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, data.as_ptr().cast(), data.len());
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn svc(name: &str, script: &str, ready: Readiness) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            user: Some("root".into()),
            oom_score_adj: 0,
            memory_max_mib: 0,
            ready,
            safe_mode: false,
            env: Vec::new(),
        }
    }

    /// Waits for a specific child (the test process is not PID 1).
    fn reap(pid: i32) -> String {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
            Ok(st) => format!("{st:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Real children: the second service waits for the first to write
    /// "primed" on its readiness fd; a killed service is restarted after
    /// the backoff delay; shutdown stops them in reverse order.
    #[test]
    fn real_children_readiness_restart_and_stop() {
        let dir = std::env::temp_dir().join(format!("pocobelle-sup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sup = Supervisor::new(
            vec![
                svc(
                    "first",
                    "echo hello-from-first; sleep 0.3; printf 'primed\\n' >&$POCOBELLE_READY_FD; exec sleep 30",
                    Readiness::Primed,
                ),
                svc("second", "exec sleep 30", Readiness::None),
            ],
            &dir,
            10_000,
        );
        sup.drop_privileges = false;
        sup.set_stop_grace_ms(2000);
        let t0 = Instant::now();
        let now = || t0.elapsed().as_millis() as u64;
        sup.tick(now());
        assert!(matches!(sup.services[0].state, State::Running { .. }));
        assert_eq!(
            sup.services[1].state,
            State::Pending,
            "second must wait for first to be primed"
        );
        // Wait for the readiness pipe.
        let (fd, idx) = sup.ready_fds()[0];
        let mut pfd = [nix::poll::PollFd::new(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(5000u16)).unwrap();
        sup.on_ready_fd(idx);
        assert!(sup.services[0].ready);
        // Its output reached the log ring, prefixed with its name.
        sup.on_output_fd(0);
        let ring = logring::RING.lock().unwrap().lines();
        assert!(
            ring.iter().any(|l| l == "first: hello-from-first"),
            "{ring:?}"
        );
        sup.tick(now());
        let State::Running { pid: second, .. } = sup.services[1].state else {
            panic!("second not started")
        };

        // Kill the second: it is restarted after the first backoff delay;
        // the primed file it wrote goes with it.
        std::fs::write(dir.join("second.primed"), "").unwrap();
        kill(Pid::from_raw(second), Signal::SIGKILL).unwrap();
        let how = reap(second);
        assert!(sup.on_exit(second, &how, now()));
        assert!(!dir.join("second.primed").exists(), "stale primed file");
        assert!(matches!(sup.services[1].state, State::Backoff { .. }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(sup.services[1].state, State::Running { .. }) {
            assert!(Instant::now() < deadline, "not restarted");
            std::thread::sleep(Duration::from_millis(50));
            sup.tick(now());
        }
        assert_eq!(sup.services[1].restarts, 1);

        // Shutdown: second (started last) is signalled first.
        sup.begin_shutdown();
        sup.tick(now());
        assert!(matches!(sup.services[1].state, State::Stopping { .. }));
        assert!(matches!(sup.services[0].state, State::Running { .. }));
        for (_, pid) in sup.pids() {
            if matches!(sup.services[1].state, State::Stopping { pid: p, .. } if p == pid) {
                let how = reap(pid);
                assert!(sup.on_exit(pid, &how, now()));
            }
        }
        sup.tick(now());
        let State::Stopping { pid: first, .. } = sup.services[0].state else {
            panic!("first not stopping")
        };
        let how = reap(first);
        sup.on_exit(first, &how, now());
        assert!(sup.all_stopped());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_user_is_a_start_failure_with_backoff() {
        let dir = std::env::temp_dir();
        let mut c = svc("x", "true", Readiness::None);
        c.user = Some("no-such-user-pocobelle".into());
        let mut sup = Supervisor::new(vec![c], &dir, 1000);
        sup.tick(0);
        assert!(matches!(sup.services[0].state, State::Backoff { .. }));
        assert!(
            sup.services[0]
                .last_exit
                .as_deref()
                .unwrap()
                .contains("passwd")
        );
    }
}
