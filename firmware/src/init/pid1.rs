//! The PID 1 program: boot sequence, then one loop that waits on a
//! signalfd (all signals blocked from the first instruction), the control
//! socket and the readiness pipes; reaps every child with
//! waitpid(-1, WNOHANG) until none is left; keeps the watchdog fed; and on
//! SIGTERM/SIGINT (reboot), SIGUSR2 (poweroff), SIGUSR1 (halt) or a control
//! request runs the shutdown sequence. It never returns and never exits:
//! every failure is logged and the boot degrades; a panic re-executes
//! /proc/self/exe in recovery mode.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::{Config, ServiceConfig};
use crate::init::control::{self, Halt, Request, Response, ServiceReport, StatusReport};
use crate::init::storage::{self, DataState};
use crate::init::supervisor::{State, Supervisor};
use crate::init::{clock, modules, mount, sysctl};
use crate::sys::{MsFlags, RealSys, Sys};

/// Environment variable counting re-executions after a panic.
pub const ENV_RECOVERY: &str = "POCOBELLE_RECOVERY";
/// After this many panics in a row, init only reaps and serves status.
pub const MAX_RECOVERIES: u32 = 3;
/// Kernel command-line flag for a rescue shell before the services.
pub const CMDLINE_RESCUE: &str = "pocobelle.rescue";
/// Kernel command-line flag for a recovery drill: init panics once, right
/// after the early mounts, to show that the panic hook brings it back.
pub const CMDLINE_DRILL_PANIC: &str = "pocobelle.drill-panic";
/// The loop wakes at least this often (ms): readiness files, timers.
pub const MAX_SLEEP_MS: u64 = 1000;
/// At shutdown, processes that are not services get this long after
/// SIGTERM before SIGKILL (ms).
pub const STRAGGLER_GRACE_MS: u64 = 2000;
/// Copy of the last configuration that parsed, beside the configuration
/// itself (read before any partition but the root is mounted).
pub const LAST_GOOD_CONFIG: &str = "/etc/pocobelle.toml.last-good";

struct Init {
    cfg: Config,
    sys: RealSys,
    boot: Instant,
    boot_mode: String,
    data: DataState,
    swap_on: bool,
    clock_restored: bool,
    sup: Supervisor,
    sfd: Option<SignalFd>,
    listener: Option<UnixListener>,
    watchdog: Option<std::fs::File>,
    next_watchdog: Instant,
    next_clock_save: Instant,
    shutdown: Option<(Halt, Instant)>,
}

/// The PID 1 entry point.
pub fn run() -> ! {
    block_all_signals();
    install_panic_hook();
    let recovery: u32 = std::env::var(ENV_RECOVERY)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut sys = RealSys;
    mount::early_mounts(&mut sys);
    open_console();
    log::info!(
        "init: {} starting as pid {}",
        crate::applet::version_line(),
        std::process::id()
    );
    if recovery == 0
        && kernel_cmdline()
            .split_whitespace()
            .any(|w| w == CMDLINE_DRILL_PANIC)
    {
        panic!("{CMDLINE_DRILL_PANIC} on the kernel command line: recovery drill");
    }
    if recovery > 0 {
        log::error!("init: RECOVERY boot #{recovery} after a panic; stopping leftover processes");
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        reap_all(&mut |_, _| {});
    }
    crate::logging::set_sink(crate::init::logring::record);
    let (cfg, safe) = load_config();
    crate::logging::init("init", cfg.log.level.to_filter());
    let mut init = boot(cfg, sys, recovery, safe);
    init.main_loop()
}

fn block_all_signals() {
    let _ = SigSet::all().thread_block();
    // Ctrl-Alt-Del sends SIGINT to init instead of an immediate reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            std::io::stderr(),
            "init: PANIC: {info}; re-executing in recovery mode"
        );
        let n: u32 = std::env::var(ENV_RECOVERY)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let argv = [c"init"];
        let env_s = std::ffi::CString::new(format!("{ENV_RECOVERY}={}", n + 1)).unwrap_or_default();
        let env = [env_s.as_c_str(), c"PATH=/sbin:/bin:/usr/sbin:/usr/bin"];
        let _ = nix::unistd::execve(c"/proc/self/exe", &argv, &env);
        // exec failed: never return into the panicking code, never exit.
        loop {
            reap_all(&mut |_, _| {});
            std::thread::sleep(Duration::from_secs(1));
        }
    }));
}

/// When the kernel found no /dev/console in the initramfs, fds 0-2 are
/// closed: open the console now that devtmpfs is mounted.
fn open_console() {
    if nix::fcntl::fcntl(
        unsafe { BorrowedFd::borrow_raw(2) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_ok()
    {
        return;
    }
    if let Ok(f) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        let fd = f.as_raw_fd();
        for target in 0..3 {
            if fd != target {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(fd, target) };
            }
        }
        if fd > 2 {
            drop(f);
        } else {
            std::mem::forget(f);
        }
    }
}

fn load_config() -> (Config, bool) {
    let path = Path::new(crate::config::DEFAULT_PATH);
    match Config::load(path) {
        Ok(c) => (c, false),
        Err(e) => {
            log::error!("init: {e}");
            let last_good = Path::new(LAST_GOOD_CONFIG);
            match Config::load(last_good) {
                Ok(c) => {
                    log::error!(
                        "init: SAFE MODE: using the last good configuration {LAST_GOOD_CONFIG}; only safe-mode services start"
                    );
                    (c, true)
                }
                Err(_) => {
                    log::error!(
                        "init: SAFE MODE: built-in defaults; only safe-mode services start"
                    );
                    (Config::default(), true)
                }
            }
        }
    }
}

/// Keeps a copy of a configuration that parsed, for safe mode (written
/// only when it changed: write, fsync, rename).
fn save_last_good() {
    let Ok(text) = std::fs::read(crate::config::DEFAULT_PATH) else {
        return;
    };
    let dest = Path::new(LAST_GOOD_CONFIG);
    if std::fs::read(dest).ok().as_deref() == Some(&text[..]) {
        return;
    }
    let tmp = dest.with_extension("tmp");
    let r = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, dest));
    match r {
        Ok(()) => log::info!("init: configuration copied to {LAST_GOOD_CONFIG}"),
        Err(e) => log::info!("init: no copy of the configuration kept ({LAST_GOOD_CONFIG}: {e})"),
    }
}

fn kernel_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn boot(cfg: Config, mut sys: RealSys, recovery: u32, safe: bool) -> Init {
    let modules_failed = modules::load(&mut sys, &modules::release_dir(), &cfg.init.modules);
    if modules_failed > 0 {
        log::warn!("init: {modules_failed} module(s) did not load");
    }
    if let Err(e) = nix::unistd::sethostname(&cfg.system.hostname) {
        log::warn!("init: sethostname: {e}");
    }
    bring_up_network(&mut sys, &cfg);
    let data = storage::bring_up_data(&mut sys, &cfg);
    let data_dir = cfg.system.data_dir.clone();
    if !safe {
        save_last_good();
    }
    let clock_restored = clock::restore(&data_dir).is_some();
    let swap_on = storage::bring_up_swap(&mut sys, &cfg, &data);
    let ram_kib = sys
        .read_to_string(Path::new("/proc/meminfo"))
        .ok()
        .and_then(|m| sysctl::mem_total_kib(&m))
        .unwrap_or(64 * 1024);
    let vm = sysctl::compute(ram_kib, &cfg.init.sysctl, cfg.init.swap.swappiness);
    log::info!("sysctl: computed for {ram_kib} KiB of RAM");
    sysctl::apply(&mut sys, &vm);

    let _ = std::fs::create_dir_all(&cfg.system.run_dir);
    if kernel_cmdline()
        .split_whitespace()
        .any(|w| w == CMDLINE_RESCUE)
    {
        rescue_shell(&cfg.init.rescue_shell);
    }
    let watchdog = open_watchdog(&cfg.init.watchdog_device);
    let listener = open_control_socket(&cfg.system.run_dir);
    let sfd = SignalFd::with_flags(
        &SigSet::all(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| log::error!("init: signalfd: {e}; signals are polled"))
    .ok();

    let mut services = if cfg.init.service.is_empty() {
        ServiceConfig::defaults(|n| crate::applet::find(n).is_some())
    } else {
        cfg.init.service.clone()
    };
    add_network_services(&cfg, &mut services);
    let mut boot_mode = "normal".to_string();
    if safe {
        services.retain(|s| s.safe_mode);
        boot_mode = "safe (config did not parse)".into();
    }
    if recovery > 0 {
        boot_mode = format!("recovery #{recovery}");
        if recovery > MAX_RECOVERIES {
            log::error!("init: {recovery} panics in a row; no service is started");
            services.clear();
        }
    }
    let mut sup = Supervisor::new(
        services,
        &cfg.system.run_dir,
        cfg.init.primed_budget_secs as u64 * 1000,
    );
    sup.set_stop_grace_ms(cfg.init.stop_grace_secs as u64 * 1000);
    let now = Instant::now();
    let clock_every = Duration::from_secs(cfg.init.clock_save_secs as u64);
    Init {
        cfg,
        sys,
        boot: now,
        boot_mode,
        data,
        swap_on,
        clock_restored,
        sup,
        sfd,
        listener,
        watchdog,
        next_watchdog: now,
        next_clock_save: now + clock_every,
        shutdown: None,
    }
}

fn rescue_shell(shell: &Path) {
    log::warn!(
        "init: {CMDLINE_RESCUE} on the kernel command line: starting {} on the console; exit it to continue booting",
        shell.display()
    );
    let mut cmd = std::process::Command::new(shell);
    crate::sys::reset_signal_mask(&mut cmd);
    match cmd.status() {
        Ok(st) => log::info!("init: rescue shell ended ({st}); continuing the boot"),
        Err(e) => log::error!("init: rescue shell {}: {e}", shell.display()),
    }
}

fn open_watchdog(dev: &Path) -> Option<std::fs::File> {
    if dev.as_os_str().is_empty() || !dev.exists() {
        log::info!("watchdog: none");
        return None;
    }
    match OpenOptions::new().write(true).open(dev) {
        Ok(f) => {
            log::info!("watchdog: {} opened; kept alive by init", dev.display());
            Some(f)
        }
        Err(e) => {
            log::warn!("watchdog: {}: {e}", dev.display());
            None
        }
    }
}

fn open_control_socket(run_dir: &Path) -> Option<UnixListener> {
    let path = control::socket_path(run_dir);
    let _ = std::fs::remove_file(&path);
    match UnixListener::bind(&path) {
        Ok(l) => {
            let _ = l.set_nonblocking(true);
            let _ = std::fs::set_permissions(
                &path,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            );
            Some(l)
        }
        Err(e) => {
            log::error!("init: control socket {}: {e}", path.display());
            None
        }
    }
}

/// Loopback, then `[init.network]`; waits for link and static addresses
/// at most `init.network.wait_secs` (with DHCP, the services after `dhcp`
/// wait for its lease instead).
fn bring_up_network(sys: &mut RealSys, cfg: &Config) {
    use crate::init::net;
    net::loopback_up(sys);
    let n = &cfg.init.network;
    if n.interface.is_empty() {
        return;
    }
    if let Ok(c) = net::bring_up(sys, n, net::IFACE_WAIT) {
        net::wait_ready(
            sys,
            &n.interface,
            &c,
            Duration::from_secs(n.wait_secs as u64),
        );
    }
}

/// The services init adds to the configured ones: `dhcp` first (when
/// `init.network.dhcp`), `sntp` last (when `init.sntp.servers` is set,
/// so it starts once dns is primed).
fn add_network_services(cfg: &Config, services: &mut Vec<ServiceConfig>) {
    let run_dir = &cfg.system.run_dir;
    if let Some(d) = crate::init::net::dhcp_service(&cfg.init.network, run_dir)
        && !services.iter().any(|s| s.name == d.name)
    {
        let link = run_dir.join(crate::init::net::DHCP_SCRIPT);
        let _ = std::fs::remove_file(&link);
        match std::env::current_exe().and_then(|exe| std::os::unix::fs::symlink(exe, &link)) {
            Ok(()) => services.insert(0, d),
            Err(e) => log::error!("net: no DHCP: cannot create {}: {e}", link.display()),
        }
    }
    if !cfg.init.sntp.servers.is_empty() && !services.iter().any(|s| s.name == "sntp") {
        services.push(ServiceConfig {
            name: "sntp".into(),
            argv: Vec::new(),
            user: Some("root".into()),
            oom_score_adj: 0,
            memory_max_mib: 16,
            ready: crate::config::Readiness::None,
            safe_mode: true,
        });
    }
}

/// Reaps every exited child; `on_exit(pid, how)` for each.
fn reap_all(on_exit: &mut dyn FnMut(i32, String)) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(WaitStatus::Exited(pid, code)) => {
                on_exit(pid.as_raw(), format!("exited with status {code}"))
            }
            Ok(WaitStatus::Signaled(pid, sig, core)) => on_exit(
                pid.as_raw(),
                format!(
                    "killed by {}{}",
                    sig.as_str(),
                    if core { " (core dumped)" } else { "" }
                ),
            ),
            Ok(_) => continue,
        }
    }
}

impl Init {
    fn now_ms(&self) -> u64 {
        self.boot.elapsed().as_millis() as u64
    }

    fn main_loop(&mut self) -> ! {
        loop {
            let now = self.now_ms();
            let mut next = self.sup.tick(now).unwrap_or(now + MAX_SLEEP_MS);
            next = next.min(now + MAX_SLEEP_MS);
            self.kick_watchdog();
            self.periodic_clock_save();
            if let Some((how, deadline)) = self.shutdown
                && (self.sup.all_stopped() || Instant::now() >= deadline)
            {
                self.finish_shutdown(how);
            }
            let timeout = next.saturating_sub(self.now_ms()).min(MAX_SLEEP_MS) as u16;
            self.wait(timeout);
        }
    }

    fn wait(&mut self, timeout_ms: u16) {
        #[derive(Clone, Copy)]
        enum Src {
            Signals,
            Control,
            Ready(usize),
            Output(usize),
        }
        let mut srcs: Vec<(RawFd, Src)> = Vec::new();
        if let Some(s) = &self.sfd {
            srcs.push((s.as_fd().as_raw_fd(), Src::Signals));
        }
        if let Some(l) = &self.listener {
            srcs.push((l.as_fd().as_raw_fd(), Src::Control));
        }
        srcs.extend(
            self.sup
                .ready_fds()
                .into_iter()
                .map(|(fd, i)| (fd, Src::Ready(i))),
        );
        srcs.extend(
            self.sup
                .output_fds()
                .into_iter()
                .map(|(fd, i)| (fd, Src::Output(i))),
        );
        let mut fds: Vec<PollFd> = srcs
            .iter()
            // SAFETY: every fd is owned by `self` and outlives this poll.
            .map(|(fd, _)| PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, PollFlags::POLLIN))
            .collect();
        let _ = poll(&mut fds, PollTimeout::from(timeout_ms));
        let revents: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut signals = Vec::new();
        if self.sfd.is_none() {
            // No signalfd: collect pending signals synchronously.
            signals.extend(pending_signals());
        }
        let mut control_ready = false;
        for (k, (_, src)) in srcs.iter().enumerate() {
            if !revents[k] {
                continue;
            }
            match *src {
                Src::Signals => {
                    while let Some(Ok(Some(si))) = self.sfd.as_ref().map(|s| s.read_signal()) {
                        signals.push(si.ssi_signo as i32);
                    }
                }
                Src::Control => control_ready = true,
                Src::Ready(i) => self.sup.on_ready_fd(i),
                Src::Output(i) => self.sup.on_output_fd(i),
            }
        }
        // Reap on every wake-up, not only on SIGCHLD: signals coalesce.
        let now = self.now_ms();
        let sup = &mut self.sup;
        reap_all(&mut |pid, how| {
            if !sup.on_exit(pid, &how, now) {
                log::debug!("init: reaped pid {pid} ({how})");
            }
        });
        for sig in signals {
            let Ok(sig) = Signal::try_from(sig) else {
                continue;
            };
            match halt_for_signal(sig) {
                Some(how) => self.begin_shutdown(how),
                None if sig == Signal::SIGCHLD => {}
                None => log::debug!("init: ignored {}", sig.as_str()),
            }
        }
        if control_ready {
            self.serve_control();
        }
    }

    fn serve_control(&mut self) {
        let Some(l) = &self.listener else { return };
        // Bounded: at most a few connections per wake-up.
        for _ in 0..4 {
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.set_nonblocking(false);
            let req = match control::read_request(&mut s) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("init: control request: {e}");
                    continue;
                }
            };
            let resp = match req {
                Request::Status => Response::Status(Box::new(self.status())),
                Request::Log => Response::Log(
                    crate::init::logring::RING
                        .lock()
                        .map(|r| r.lines())
                        .unwrap_or_default(),
                ),
                Request::Shutdown(how) => Response::ShuttingDown(how),
            };
            if let Err(e) = control::write_response(&mut s, &resp) {
                log::warn!("init: control response: {e}");
            }
            if let Request::Shutdown(how) = req {
                self.begin_shutdown(how);
                return;
            }
        }
    }

    fn status(&self) -> StatusReport {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let f = |k| sysctl::meminfo_field(&meminfo, k).unwrap_or(0);
        let now = self.now_ms();
        let sync =
            std::fs::read_to_string(self.cfg.system.run_dir.join(crate::init::sntp::STATE_FILE))
                .ok()
                .and_then(|t| crate::init::sntp::SyncState::parse(&t))
                .map(|s| control::ClockSync {
                    server: s.server,
                    offset_ms: s.offset_ms,
                    at_unix: s.at_unix,
                });
        StatusReport {
            uptime_secs: read_uptime().unwrap_or(now / 1000),
            boot_mode: self.boot_mode.clone(),
            last_shutdown: self.data.last_shutdown,
            clock_restored: self.clock_restored,
            clock_synced: sync.is_some(),
            clock_sync: sync,
            now_secs: clock::now_secs(),
            mem_total_kib: f("MemTotal"),
            mem_available_kib: f("MemAvailable"),
            swap_total_kib: f("SwapTotal"),
            swap_free_kib: f("SwapFree"),
            services: self
                .sup
                .services
                .iter()
                .map(|s| {
                    let (state, pid, since) = match s.state {
                        State::Pending => ("pending", None, None),
                        State::Running { pid, since_ms } => ("running", Some(pid), Some(since_ms)),
                        State::Backoff { .. } => ("backoff", None, None),
                        State::Stopping { pid, .. } => ("stopping", Some(pid), None),
                        State::Stopped => ("stopped", None, None),
                    };
                    ServiceReport {
                        name: s.cfg.name.clone(),
                        state: state.into(),
                        pid,
                        up_secs: since.map(|t| now.saturating_sub(t) / 1000),
                        rss_kib: pid.and_then(|p| {
                            let st = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
                            sysctl::meminfo_field(&st, "VmRSS")
                        }),
                        restarts: s.restarts,
                        crash_loop: s.crash_loop,
                        ready: s.ready,
                        last_exit: s.last_exit.clone(),
                    }
                })
                .collect(),
        }
    }

    fn kick_watchdog(&mut self) {
        let Some(w) = &mut self.watchdog else { return };
        if Instant::now() < self.next_watchdog {
            return;
        }
        if let Err(e) = w.write_all(b"\0") {
            log::warn!("watchdog: keep-alive failed: {e}");
        }
        self.next_watchdog =
            Instant::now() + Duration::from_secs(self.cfg.init.watchdog_interval_secs as u64);
    }

    fn periodic_clock_save(&mut self) {
        if Instant::now() < self.next_clock_save || !self.data.mounted_rw {
            return;
        }
        if let Err(e) = clock::save(&self.cfg.system.data_dir, clock::now_secs()) {
            log::warn!("clock: cannot save: {e}");
        }
        self.next_clock_save =
            Instant::now() + Duration::from_secs(self.cfg.init.clock_save_secs as u64);
    }

    fn begin_shutdown(&mut self, how: Halt) {
        if self.shutdown.is_some() {
            return;
        }
        log::info!(
            "init: {how:?} requested: stopping services in reverse start order (mail before dns)"
        );
        let n = self.sup.services.len() as u64 + 1;
        let deadline =
            Instant::now() + Duration::from_secs(self.cfg.init.stop_grace_secs as u64 * n + 5);
        self.shutdown = Some((how, deadline));
        self.sup.begin_shutdown();
    }

    fn finish_shutdown(&mut self, how: Halt) -> ! {
        log::info!("init: services stopped; ending the remaining processes");
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        let until = Instant::now() + Duration::from_millis(STRAGGLER_GRACE_MS);
        while Instant::now() < until {
            reap_all(&mut |_, _| {});
            if matches!(
                waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
                Err(nix::errno::Errno::ECHILD)
            ) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
        reap_all(&mut |_, _| {});
        let data = self.cfg.system.data_dir.clone();
        if self.data.mounted_rw
            && let Err(e) = clock::save(&data, clock::now_secs())
        {
            log::warn!("clock: cannot save: {e}");
        }
        self.sys.sync();
        if self.swap_on {
            let path = storage::swap_path(&self.cfg);
            match self.sys.swapoff(&path) {
                Ok(()) => log::info!("swap: {} off", path.display()),
                Err(e) => log::warn!("swap: swapoff {}: {e}", path.display()),
            }
        }
        if self.data.mounted_rw {
            match storage::write_clean_marker(&data) {
                Ok(()) => log::info!("data: clean-shutdown marker written"),
                Err(e) => log::warn!("data: cannot write the clean-shutdown marker: {e}"),
            }
        }
        if !self.cfg.init.data_device.is_empty() {
            if let Err(e) = self.sys.umount(&data) {
                log::warn!("data: umount {}: {e}; remounting read-only", data.display());
                let _ = self
                    .sys
                    .mount("", &data, "", MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, "");
            } else {
                log::info!("data: {} unmounted", data.display());
            }
        }
        let _ = self.sys.mount(
            "",
            Path::new("/"),
            "",
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            "",
        );
        self.sys.sync();
        let mode = match how {
            Halt::Poweroff => RebootMode::RB_POWER_OFF,
            Halt::Reboot => RebootMode::RB_AUTOBOOT,
            Halt::Halt => RebootMode::RB_HALT_SYSTEM,
        };
        log::info!("init: {how:?} now");
        let err = nix::sys::reboot::reboot(mode);
        log::error!("init: reboot({how:?}) failed: {err:?}; idling");
        loop {
            reap_all(&mut |_, _| {});
            self.kick_watchdog();
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Pending signals, taken without blocking (sigtimedwait with a zero timeout).
fn pending_signals() -> Vec<i32> {
    let mut out = Vec::new();
    // SAFETY: sigtimedwait on a full set with a zero timeout.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        for _ in 0..64 {
            let s = libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
            if s <= 0 {
                break;
            }
            out.push(s);
        }
    }
    out
}

fn read_uptime() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs = t.split_whitespace().next()?.split('.').next()?;
    secs.parse().ok()
}

/// Where `pocobelle status` and friends find init.
pub fn run_dir_for_clients(config: Option<&Path>) -> PathBuf {
    let path = config.unwrap_or(Path::new(crate::config::DEFAULT_PATH));
    Config::load(path)
        .map(|c| c.system.run_dir)
        .unwrap_or_else(|_| crate::config::SystemConfig::default().run_dir)
}

/// What a signal asks of init, as with BusyBox init.
pub fn halt_for_signal(sig: Signal) -> Option<Halt> {
    match sig {
        Signal::SIGTERM | Signal::SIGINT => Some(Halt::Reboot),
        Signal::SIGUSR2 => Some(Halt::Poweroff),
        Signal::SIGUSR1 => Some(Halt::Halt),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_signal_meanings() {
        assert_eq!(halt_for_signal(Signal::SIGTERM), Some(Halt::Reboot));
        assert_eq!(halt_for_signal(Signal::SIGUSR2), Some(Halt::Poweroff));
        assert_eq!(halt_for_signal(Signal::SIGUSR1), Some(Halt::Halt));
        assert_eq!(halt_for_signal(Signal::SIGINT), Some(Halt::Reboot));
        assert_eq!(halt_for_signal(Signal::SIGHUP), None);
    }
}
