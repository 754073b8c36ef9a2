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
use crate::init::watchdog::Watchdog;
use crate::init::{clock, logfile, modules, mount, nut, power, sysctl};
use crate::sys::{MsFlags, RealSys, Sys};

/// Environment variable counting re-executions after a panic.
pub const ENV_RECOVERY: &str = "POCOBELLE_RECOVERY";
/// Environment variable handing the first init's view of the last
/// shutdown (`clean`, `unclean`, `unknown`) to the re-executed one: the
/// marker it consumed is gone by then.
pub const ENV_LAST_SHUTDOWN: &str = "POCOBELLE_LAST_SHUTDOWN";
/// What this boot learned about the last shutdown (0: not yet, 1: clean,
/// 2: unclean, 3: unknown), for the panic hook.
static LAST_SHUTDOWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
/// After this many panics in a row, init only reaps and serves status.
pub const MAX_RECOVERIES: u32 = 3;
/// Kernel command-line flag for a rescue shell before the services.
pub const CMDLINE_RESCUE: &str = "pocobelle.rescue";
/// Kernel command-line flag for a recovery drill: init panics once, once
/// the data partition is mounted and the log file started (where a real
/// panic would most likely happen), to show that the panic hook writes
/// the log file and brings init back.
pub const CMDLINE_DRILL_PANIC: &str = "pocobelle.drill-panic";
/// Kernel command-line flag for a watchdog drill: init opens the watchdog
/// and then never feeds it, so the board must reset by itself.
pub const CMDLINE_DRILL_WATCHDOG: &str = "pocobelle.drill-watchdog";
/// `pocobelle.config=FILE` on the kernel command line: the configuration
/// to use instead of /etc/pocobelle.toml (an absolute path).
pub const CMDLINE_CONFIG: &str = "pocobelle.config=";
/// `pocobelle.data=DEVICE`: the data partition, for safe mode when the
/// root holds no last good configuration (the data partition does).
pub const CMDLINE_DATA: &str = "pocobelle.data=";
/// `pocobelle.modules=a,b,c`: the modules that device needs, likewise.
pub const CMDLINE_MODULES: &str = "pocobelle.modules=";
/// Copy of the last configuration that parsed, on the data partition
/// (relative to `system.data_dir`): it survives a root file system that
/// is read-only or rebuilt.
pub const DATA_LAST_GOOD: &str = "pocobelle.toml.last-good";
/// An empty configuration (the built-in defaults) written under
/// `system.run_dir` for the services when safe mode found no copy at all.
pub const DEFAULTS_FILE: &str = "pocobelle-defaults.toml";
/// The loop wakes at least this often (ms): readiness files, timers.
pub const MAX_SLEEP_MS: u64 = 1000;
/// The driver's `-k` (cut the UPS's power) gets this long (ms).
pub const KILL_POWER_TIMEOUT_MS: u64 = 20_000;
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
    watchdog: Option<Watchdog>,
    /// `pocobelle.drill-watchdog`: the watchdog is never fed.
    watchdog_drill: bool,
    /// Why the boot is in safe mode (the configuration's error).
    safe_reason: Option<String>,
    /// Services not started because of safe mode.
    held: Vec<String>,
    next_watchdog: Instant,
    next_clock_save: Instant,
    shutdown: Option<(Halt, Instant)>,
    /// The sysctls applied at boot (restored when mains returns).
    vm: sysctl::VmSettings,
    /// `[ups]` is configured: what the monitor last said, and what init
    /// did about it.
    power: Option<PowerWatch>,
}

/// Init's side of the UPS watch (`init::power`, `init::nut`).
struct PowerWatch {
    gate: power::Gate,
    mtime: Option<std::time::SystemTime>,
    /// A power file that did not parse was logged (once until it does).
    bad_said: bool,
    /// This shutdown was asked for by the power state.
    power_shutdown: bool,
    /// The driver with `-k`, run at the end of a power shutdown.
    kill_power: Option<(Vec<String>, Vec<String>)>,
}

/// The PID 1 entry point.
pub fn run() -> ! {
    block_all_signals();
    install_panic_hook();
    // From the first line on, so that the log ring (and the log file) hold
    // the whole boot.
    crate::logging::set_sink(crate::init::logring::record);
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
    let flags = BootFlags::parse(&kernel_cmdline());
    if recovery > 0 {
        log::error!("init: RECOVERY boot #{recovery} after a panic; stopping leftover processes");
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        reap_all(&mut |_, _| {});
    }
    for w in &flags.rejected {
        log::warn!("init: kernel command line: {w:?} ignored (not a valid value)");
    }
    let loaded = load_config(&flags);
    crate::logging::init("init", loaded.cfg.log.level.to_filter());
    let mut init = boot(loaded, &flags, sys, recovery);
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
        crate::init::logfile::flush_on_panic(&format!(
            "init: PANIC: {info}; re-executing in recovery mode"
        ));
        let n: u32 = std::env::var(ENV_RECOVERY)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let argv = [c"init"];
        let env_s = std::ffi::CString::new(format!("{ENV_RECOVERY}={}", n + 1)).unwrap_or_default();
        let last = match LAST_SHUTDOWN.load(std::sync::atomic::Ordering::Relaxed) {
            1 => c"POCOBELLE_LAST_SHUTDOWN=clean",
            2 => c"POCOBELLE_LAST_SHUTDOWN=unclean",
            _ => c"POCOBELLE_LAST_SHUTDOWN=unknown",
        };
        let env = [
            env_s.as_c_str(),
            c"PATH=/sbin:/bin:/usr/sbin:/usr/bin",
            last,
        ];
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

/// What the kernel command line asks of init (`pocobelle.*` words).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BootFlags {
    pub rescue: bool,
    pub drill_panic: bool,
    pub drill_watchdog: bool,
    pub config: Option<PathBuf>,
    pub data_device: Option<String>,
    pub modules: Vec<String>,
    /// `pocobelle.*` words with a value that is not valid (ignored).
    pub rejected: Vec<String>,
}

impl BootFlags {
    pub fn parse(cmdline: &str) -> BootFlags {
        let mut f = BootFlags::default();
        let module_ok = |m: &str| {
            !m.is_empty()
                && m.len() <= crate::config::init::MAX_WORD_BYTES
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        for w in cmdline.split_whitespace() {
            if w == CMDLINE_RESCUE {
                f.rescue = true;
            } else if w == CMDLINE_DRILL_PANIC {
                f.drill_panic = true;
            } else if w == CMDLINE_DRILL_WATCHDOG {
                f.drill_watchdog = true;
            } else if let Some(v) = w.strip_prefix(CMDLINE_CONFIG) {
                if v.starts_with('/') && !v.contains("/../") {
                    f.config = Some(PathBuf::from(v));
                } else {
                    f.rejected.push(w.to_string());
                }
            } else if let Some(v) = w.strip_prefix(CMDLINE_DATA) {
                if v.starts_with('/') && v.len() > 1 {
                    f.data_device = Some(v.to_string());
                } else {
                    f.rejected.push(w.to_string());
                }
            } else if let Some(v) = w.strip_prefix(CMDLINE_MODULES) {
                let m: Vec<String> = v.split(',').map(str::to_string).collect();
                if m.len() <= crate::config::init::MAX_MODULES && m.iter().all(|m| module_ok(m)) {
                    f.modules = m;
                } else {
                    f.rejected.push(w.to_string());
                }
            }
        }
        f
    }
}

/// The configuration init boots with.
struct Loaded {
    cfg: Config,
    /// The file it came from (given to the services).
    path: PathBuf,
    /// Safe mode: the error of the configuration that did not parse.
    safe: Option<String>,
    /// Safe mode without a copy on the root: `cfg` is only enough to
    /// mount the data partition, where the last good copy is read.
    bootstrap: bool,
}

fn load_config(flags: &BootFlags) -> Loaded {
    let path = flags
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH));
    let e = match Config::load(&path) {
        Ok(cfg) => {
            return Loaded {
                cfg,
                path,
                safe: None,
                bootstrap: false,
            };
        }
        Err(e) => e,
    };
    log::error!("init: {e}");
    let reason = e.to_string();
    let last_good = PathBuf::from(LAST_GOOD_CONFIG);
    match Config::load(&last_good) {
        Ok(cfg) => {
            log::error!(
                "init: SAFE MODE: using the last good configuration {LAST_GOOD_CONFIG}; only safe-mode services start"
            );
            Loaded {
                cfg,
                path: last_good,
                safe: Some(reason),
                bootstrap: false,
            }
        }
        Err(_) => {
            let mut cfg = Config::default();
            if let Some(d) = &flags.data_device {
                cfg.init.data_device = d.clone();
            }
            cfg.init.modules = flags.modules.clone();
            log::error!(
                "init: SAFE MODE: no last good configuration on the root; looking for {DATA_LAST_GOOD} on the data partition ({})",
                if cfg.init.data_device.is_empty() {
                    "none: pocobelle.data= is not on the kernel command line"
                } else {
                    &cfg.init.data_device
                }
            );
            Loaded {
                path: cfg.system.data_dir.join(DATA_LAST_GOOD),
                cfg,
                safe: Some(reason),
                bootstrap: true,
            }
        }
    }
}

/// Keeps a copy of a configuration that parsed, for safe mode (written
/// only when it changed: write, fsync, rename, fsync the directory).
fn save_last_good(src: &Path, dest: &Path) {
    let Ok(text) = std::fs::read(src) else {
        return;
    };
    if std::fs::read(dest).ok().as_deref() == Some(&text[..]) {
        return;
    }
    match crate::sys::atomic::write_atomic(dest, &text) {
        Ok(()) => log::info!("init: configuration copied to {}", dest.display()),
        Err(e) => log::info!(
            "init: no copy of the configuration kept ({}: {e})",
            dest.display()
        ),
    }
}

fn kernel_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn boot(loaded: Loaded, flags: &BootFlags, mut sys: RealSys, recovery: u32) -> Init {
    let Loaded {
        mut cfg,
        mut path,
        safe: safe_reason,
        bootstrap,
    } = loaded;
    let safe = safe_reason.is_some();
    // Safe mode with no copy on the root: mount the data partition with
    // what the kernel command line says, then use the copy kept there.
    let mut early_data = None;
    if bootstrap {
        modules::load(&mut sys, &modules::release_dir(), &cfg.init.modules);
        let data = storage::bring_up_data(&mut sys, &cfg);
        match Config::load(&path) {
            Ok(c) => {
                log::error!(
                    "init: SAFE MODE: using the last good configuration {}; only safe-mode services start",
                    path.display()
                );
                if c.system.data_dir != cfg.system.data_dir {
                    log::warn!(
                        "init: the last good configuration has data_dir {}; {} stays the data partition for this boot",
                        c.system.data_dir.display(),
                        cfg.system.data_dir.display()
                    );
                }
                let boot_cfg = std::mem::replace(&mut cfg, c);
                // The partition stays as mounted; its options follow the
                // last good configuration.
                cfg.system.data_dir = boot_cfg.system.data_dir.clone();
                cfg.init.data_device = boot_cfg.init.data_device.clone();
                cfg.init.data_fstype = boot_cfg.init.data_fstype.clone();
                if data.mounted_rw
                    && !cfg.init.data_device.is_empty()
                    && cfg.init.commit_secs != boot_cfg.init.commit_secs
                {
                    let opts =
                        storage::data_mount_options(&cfg.init.data_fstype, cfg.init.commit_secs);
                    let flags = MsFlags::MS_REMOUNT
                        | MsFlags::MS_NOATIME
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOSUID;
                    match sys.mount(
                        &cfg.init.data_device,
                        &cfg.system.data_dir,
                        &cfg.init.data_fstype,
                        flags,
                        &opts,
                    ) {
                        Ok(()) => log::info!(
                            "data: {} remounted with {opts} (last good configuration)",
                            cfg.system.data_dir.display()
                        ),
                        Err(e) => log::warn!(
                            "data: cannot remount {} with {opts}: {e}",
                            cfg.system.data_dir.display()
                        ),
                    }
                }
            }
            Err(e) => {
                log::error!("init: SAFE MODE: {e}; built-in defaults");
                let _ = std::fs::create_dir_all(&cfg.system.run_dir);
                path = cfg.system.run_dir.join(DEFAULTS_FILE);
                let _ = std::fs::write(&path, "# built-in defaults (safe mode)\n");
            }
        }
        early_data = Some(data);
    }
    let modules_failed = modules::load(&mut sys, &modules::release_dir(), &cfg.init.modules);
    if modules_failed > 0 {
        log::warn!("init: {modules_failed} module(s) did not load");
    }
    if let Err(e) = nix::unistd::sethostname(&cfg.system.hostname) {
        log::warn!("init: sethostname: {e}");
    }
    bring_up_network(&mut sys, &cfg);
    let mut data = match early_data {
        Some(d) => d,
        None => storage::bring_up_data(&mut sys, &cfg),
    };
    if recovery > 0 {
        // The first init consumed the marker; it said how it found it.
        let before = match std::env::var(ENV_LAST_SHUTDOWN).as_deref() {
            Ok("clean") => Some(storage::LastShutdown::Clean),
            Ok("unclean") => Some(storage::LastShutdown::Unclean),
            _ => None,
        };
        if let Some(b) = before {
            log::info!(
                "boot: recovery: before this boot's panic, the first init found the last shutdown {}",
                if b == storage::LastShutdown::Clean {
                    "clean"
                } else {
                    "NOT clean"
                }
            );
            data.last_shutdown = b;
        }
    } else {
        let code = match data.last_shutdown {
            storage::LastShutdown::Clean => 1,
            storage::LastShutdown::Unclean => 2,
            storage::LastShutdown::Unknown => 3,
        };
        LAST_SHUTDOWN.store(code, std::sync::atomic::Ordering::Relaxed);
    }
    let data_dir = cfg.system.data_dir.clone();
    if !safe {
        save_last_good(&path, Path::new(LAST_GOOD_CONFIG));
        if data.mounted_rw {
            save_last_good(&path, &data_dir.join(DATA_LAST_GOOD));
        }
    }
    start_log_file(&cfg, &data);
    if recovery == 0 && flags.drill_panic {
        panic!("{CMDLINE_DRILL_PANIC} on the kernel command line: recovery drill");
    }
    let clock_restored = clock::restore(&data_dir).is_some();
    let swap_on = storage::bring_up_swap(&mut sys, &cfg, &data);
    let ram_kib = sys
        .read_to_string(Path::new("/proc/meminfo"))
        .ok()
        .and_then(|m| sysctl::mem_total_kib(&m))
        .unwrap_or(64 * 1024);
    let vm = sysctl::compute(ram_kib, &cfg.init.sysctl, cfg.init.swap.swappiness);
    let vm_boot = vm;
    log::info!("sysctl: computed for {ram_kib} KiB of RAM");
    sysctl::apply(&mut sys, &vm);

    let _ = std::fs::create_dir_all(&cfg.system.run_dir);
    let mut shared = vec![cfg.system.run_dir.as_path()];
    if data.mounted_rw {
        shared.push(&data_dir);
    }
    let shared_group = share_dirs(&shared);
    if flags.rescue && recovery == 0 {
        rescue_shell(&cfg.init.rescue_shell);
    } else if flags.rescue {
        // A watchdog left armed by the panicked init may be running.
        log::warn!("init: {CMDLINE_RESCUE} ignored in a recovery boot");
    }
    let watchdog = Watchdog::open(
        &cfg.init.watchdog_device,
        cfg.init.watchdog_timeout_secs,
        cfg.init.watchdog_interval_secs,
    );
    let watchdog_drill = flags.drill_watchdog && watchdog.is_some();
    if let Some(w) = watchdog.as_ref().filter(|_| watchdog_drill) {
        log::warn!(
            "watchdog: DRILL ({CMDLINE_DRILL_WATCHDOG}): init stops feeding {}; the board must reset by itself",
            w.describe()
        );
    }
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
    let power = add_ups_services(&cfg, &mut services);
    let mut boot_mode = "normal".to_string();
    if data.last_shutdown == storage::LastShutdown::Unclean {
        boot_mode = "recovery".into();
        log::warn!(
            "boot: RECOVERY BOOT: the last shutdown was not clean; fsck: {}; clock {}; \
             mail recovers its spool before it listens, and starts slowly",
            data.fsck.as_deref().unwrap_or("not run"),
            if clock_restored {
                "restored from the saved time"
            } else {
                "not restored (no saved time)"
            }
        );
    }
    let mut held = Vec::new();
    if safe {
        held = services
            .iter()
            .filter(|s| !s.safe_mode)
            .map(|s| s.name.clone())
            .collect();
        services.retain(|s| s.safe_mode);
        boot_mode = "safe (config did not parse)".into();
        if !held.is_empty() {
            log::warn!(
                "init: SAFE MODE: not starting {} (safe_mode = false)",
                held.join(", ")
            );
        }
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
    if path != Path::new(crate::config::DEFAULT_PATH) {
        sup.set_config(&path);
    }
    if let Some(g) = shared_group {
        sup.set_shared_group(g);
    }
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
        watchdog_drill,
        safe_reason,
        held,
        next_watchdog: now,
        next_clock_save: now + clock_every,
        shutdown: None,
        vm: vm_boot,
        power,
    }
}

/// The services `[ups]` adds before the others (`init::nut`): in local
/// mode NUT's driver and upsd, with their files written first; in both
/// modes the monitor. Mail is held until the monitor's first reading.
fn add_ups_services(cfg: &Config, services: &mut Vec<ServiceConfig>) -> Option<PowerWatch> {
    let u = cfg.ups.as_ref()?;
    let dir = nut::nut_dir(&cfg.system.run_dir);
    let mut driver = None;
    let mut upsd = None;
    if u.nut_files().is_some() {
        driver = nut::find_program(u.driver());
        upsd = nut::find_program("upsd");
        let ids = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| crate::init::users::lookup(&p, nut::NUT_USER));
        match (&driver, &upsd) {
            (Some(_), Some(_)) => {
                if let Err(e) = nut::write_files(u, &dir, ids) {
                    log::error!("ups: cannot write NUT's files in {}: {e}", dir.display());
                }
            }
            _ => log::error!(
                "ups: NUT's {} or upsd is not installed (looked in {}); only the monitor runs",
                u.driver(),
                nut::NUT_PROGRAM_DIRS.join(", ")
            ),
        }
    }
    let add = nut::services(u, &dir, driver.as_deref(), upsd.as_deref());
    let names: Vec<String> = add.iter().map(|s| s.name.clone()).collect();
    services.retain(|s| !names.contains(&s.name));
    // After dhcp (the network), before everything else.
    let at = services.iter().take_while(|s| s.name == "dhcp").count();
    services.splice(at..at, add);
    log::info!(
        "ups: watching {} ({:?} mode): {}",
        u.socket_addr(),
        u.mode,
        names.join(", ")
    );
    Some(PowerWatch {
        gate: power::Gate::new(0),
        mtime: None,
        bad_said: false,
        power_shutdown: false,
        kill_power: nut::kill_power_command(u, &dir, driver.as_deref()),
    })
}

/// Makes `dirs` (the run and data directories) `root:pocobelle`, mode
/// 1770, so that the service users, members of that group, can keep their
/// sockets, snapshot and spool there; the sticky bit keeps anyone from
/// removing or replacing another's files (init's marker, clock, swap).
fn share_dirs(dirs: &[&Path]) -> Option<crate::init::users::Group> {
    use crate::init::users::{SERVICE_GROUP, lookup_group_system};
    use std::os::unix::fs::PermissionsExt;
    let Some(g) = lookup_group_system(SERVICE_GROUP) else {
        log::warn!(
            "init: no group {SERVICE_GROUP:?} in /etc/group: services that drop to their user cannot write to the run and data directories"
        );
        return None;
    };
    for d in dirs {
        let r = std::os::unix::fs::chown(d, Some(0), Some(g.gid))
            .and_then(|_| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o1770)));
        match r {
            Ok(()) => log::info!(
                "init: {} is root:{SERVICE_GROUP} 1770 (for {})",
                d.display(),
                g.members.join(", ")
            ),
            Err(e) => log::warn!("init: {}: {e}", d.display()),
        }
    }
    Some(g)
}

/// Enables the log file when it is configured and the data partition is
/// writable (the ring's lines so far, the boot messages, go first).
fn start_log_file(cfg: &Config, data: &DataState) {
    let l = &cfg.init.logfile;
    if l.file.as_os_str().is_empty() {
        return;
    }
    let path = cfg.system.data_dir.join(&l.file);
    if !data.mounted_rw {
        log::warn!(
            "logfile: {} not written: the data partition is not mounted read-write",
            path.display()
        );
        return;
    }
    let policy = logfile::Policy {
        batch_bytes: l.batch_kib as usize * 1024,
        interval_ms: l.flush_secs as u64 * 1000,
        max_file_bytes: l.max_kib as u64 * 1024,
    };
    log::info!(
        "logfile: {} (written per {} KiB or every {} s, rotated at {} KiB)",
        path.display(),
        l.batch_kib,
        l.flush_secs,
        l.max_kib
    );
    let earlier = crate::init::logring::RING
        .lock()
        .map(|r| r.lines())
        .unwrap_or_default();
    logfile::enable(path, policy, &earlier);
}

/// Writes the log file's batch when due (`force`: whatever is pending);
/// failures go to the console and never stop init.
fn flush_log_file(force: bool, disable: bool, retry_secs: u32) {
    match logfile::flush(force, disable) {
        logfile::Flushed::Nothing => {}
        logfile::Flushed::Wrote {
            path,
            bytes,
            rotated,
        } => log::info!(
            "logfile: {bytes} bytes appended to {}{}",
            path.display(),
            if rotated {
                " (the previous file is now .1)"
            } else {
                ""
            }
        ),
        logfile::Flushed::Failed { path, error, kept } => log::error!(
            "logfile: cannot write {}: {error}; {kept} bytes kept in memory{}",
            path.display(),
            if disable {
                String::new()
            } else {
                format!(", retried in {retry_secs} s")
            }
        ),
    }
}

fn rescue_shell(shell: &Path) {
    log::warn!(
        "init: {CMDLINE_RESCUE} on the kernel command line: starting {} on the console; exit it to continue booting",
        shell.display()
    );
    let mut cmd = std::process::Command::new(shell);
    cmd.env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .env("HOME", "/")
        .env("TERM", "vt100")
        .env("PS1", "rescue# ");
    crate::sys::reset_signal_mask(&mut cmd);
    // SAFETY: setsid and ioctl are async-signal-safe; nothing allocated.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            // Its own session with the console as controlling terminal,
            // so that Ctrl-C reaches what the shell runs.
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 1);
            Ok(())
        });
    }
    // The boot continues when the shell exits (the boot's remaining
    // steps, then the services); init waits for it alone, so orphans
    // made meanwhile are reaped by the main loop afterwards.
    match cmd.status() {
        Ok(st) => log::info!("init: rescue shell ended ({st}); continuing the boot"),
        Err(e) => log::error!("init: rescue shell {}: {e}", shell.display()),
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
            env: Vec::new(),
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
        // The boot sequence (mounts, storage checks, swap, network, the
        // configuration) is over: give back its code; the loop faults back
        // in what supervision and shutdown use.
        let released = crate::sys::text::release_startup_text();
        log::debug!("init: {} KiB of boot code released", released / 1024);
        loop {
            let now = self.now_ms();
            let mut next = self.sup.tick(now).unwrap_or(now + MAX_SLEEP_MS);
            next = next.min(now + MAX_SLEEP_MS);
            self.kick_watchdog();
            self.periodic_clock_save();
            self.watch_power(false);
            flush_log_file(false, false, self.cfg.init.logfile.flush_secs);
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
                None if sig == Signal::SIGPWR => self.on_sigpwr(),
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
            safe_reason: self.safe_reason.clone(),
            watchdog: self.watchdog.as_ref().map(|w| {
                if self.watchdog_drill {
                    format!("{} (DRILL: not fed)", w.describe())
                } else {
                    w.describe()
                }
            }),
            fsck: self.data.fsck.clone(),
            spool: crate::mail::service::RecoveryNote::read(&self.cfg.system.run_dir)
                .map(|n| n.summary()),
            power: self
                .power
                .as_ref()
                .map(|p| p.gate.reading().map(|r| r.summary()).unwrap_or_default()),
            services: self
                .sup
                .services
                .iter()
                .map(|s| {
                    let (state, pid, since) = match s.state {
                        State::Pending if s.hold.is_some() => ("held", None, None),
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
                        note: s.hold.clone().filter(|_| s.state == State::Pending),
                    }
                })
                .chain(self.held.iter().map(|name| ServiceReport {
                    name: name.clone(),
                    state: "off".into(),
                    pid: None,
                    up_secs: None,
                    rss_kib: None,
                    restarts: 0,
                    crash_loop: false,
                    ready: false,
                    last_exit: None,
                    note: Some("safe mode".into()),
                }))
                .collect(),
        }
    }

    /// Takes the monitor's power file when it changed (or when `force`),
    /// and acts: holds or releases mail, switches the writeback settings,
    /// begins a power shutdown.
    fn watch_power(&mut self, force: bool) {
        let now = self.now_ms();
        let run_dir = self.cfg.system.run_dir.clone();
        let Some(w) = self.power.as_mut() else { return };
        let mtime = power::mtime(&run_dir);
        let mut reading = None;
        if force || mtime != w.mtime {
            w.mtime = mtime;
            match power::read(&run_dir) {
                Some(Ok(f)) => {
                    if w.gate
                        .reading()
                        .map(|r| (r.supply, r.hold_mail, r.shutdown))
                        != Some((f.supply, f.hold_mail, f.shutdown))
                    {
                        log::info!("power: {}", f.summary());
                    }
                    w.bad_said = false;
                    reading = Some(f);
                }
                Some(Err(e)) if !w.bad_said => {
                    w.bad_said = true;
                    log::error!("power: {e}; the last reading stands");
                }
                _ => {}
            }
        }
        let a = w.gate.update(reading, now);
        if a.no_reading {
            log::warn!(
                "power: no reading from the UPS after {} s; starting mail anyway",
                power::FIRST_READING_BUDGET_MS / 1000
            );
        }
        self.sup.set_hold("mail", a.hold_mail);
        if let Some(on) = a.battery_settings {
            let vm = if on { self.vm.on_battery() } else { self.vm };
            log::info!(
                "power: {} writeback settings",
                if on { "on-battery" } else { "mains" }
            );
            sysctl::apply(&mut self.sys, &vm);
        }
        if let Some(why) = a.shutdown {
            log::error!("power: {why}: shutting down while the battery lasts");
            if let Some(w) = self.power.as_mut() {
                w.power_shutdown = true;
            }
            self.begin_shutdown(Halt::Poweroff);
        }
    }

    /// SIGPWR: shut down if the UPS's reading is low, else say why not.
    fn on_sigpwr(&mut self) {
        self.watch_power(true);
        let Some(w) = self.power.as_mut() else {
            log::warn!("power: SIGPWR, but no UPS is configured ([ups]); no action");
            return;
        };
        match w.gate.on_sigpwr() {
            Ok(why) => {
                log::error!("power: SIGPWR and {why}: shutting down");
                w.power_shutdown = true;
                self.begin_shutdown(Halt::Poweroff);
            }
            Err(why) => log::warn!("power: SIGPWR, but {why}; no action"),
        }
    }

    /// At the end of a power shutdown in local mode: the driver with `-k`
    /// asks the UPS to cut the power after its delay and to restore it
    /// when mains returns (NUT's `upsdrvctl shutdown`).
    fn kill_power(&mut self) {
        let Some((argv, env)) = self
            .power
            .as_ref()
            .filter(|w| w.power_shutdown)
            .and_then(|w| w.kill_power.clone())
        else {
            return;
        };
        log::warn!("power: asking the UPS to cut the power: {}", argv.join(" "));
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(std::process::Stdio::null());
        crate::init::supervisor::set_env(&mut cmd, &env);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log::error!("power: cannot run {}: {e}", argv[0]);
                return;
            }
        };
        let until = Instant::now() + Duration::from_millis(KILL_POWER_TIMEOUT_MS);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    log::info!("power: {} -k: {st}", argv[0]);
                    return;
                }
                Ok(None) if Instant::now() < until => {
                    self.kick_watchdog();
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    log::error!("power: {} -k did not finish in time", argv[0]);
                    return;
                }
            }
        }
    }

    fn kick_watchdog(&mut self) {
        let Some(w) = &mut self.watchdog else { return };
        if self.watchdog_drill || Instant::now() < self.next_watchdog {
            return;
        }
        if let Err(e) = w.keep_alive() {
            log::warn!("watchdog: keep-alive failed: {e}");
        }
        self.next_watchdog = Instant::now() + Duration::from_secs(w.interval_secs as u64);
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
        // The log file's last batch, before the marker and the unmount.
        flush_log_file(true, true, 0);
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
        self.kill_power();
        let mode = match how {
            Halt::Poweroff => RebootMode::RB_POWER_OFF,
            Halt::Reboot => RebootMode::RB_AUTOBOOT,
            Halt::Halt => RebootMode::RB_HALT_SYSTEM,
        };
        // Last: a clean shutdown must not be followed by a watchdog reset.
        if let Some(w) = self.watchdog.take() {
            w.disarm();
        }
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

    #[test]
    fn kernel_command_line_flags() {
        let f = BootFlags::parse(
            "console=ttyAMA0 pocobelle.rescue quiet pocobelle.config=/etc/broken.toml \
             pocobelle.data=/dev/vda pocobelle.modules=virtio_mmio,virtio_blk,ext4 pocobelle.drill-watchdog",
        );
        assert!(f.rescue && f.drill_watchdog && !f.drill_panic);
        assert_eq!(f.config.as_deref(), Some(Path::new("/etc/broken.toml")));
        assert_eq!(f.data_device.as_deref(), Some("/dev/vda"));
        assert_eq!(f.modules, ["virtio_mmio", "virtio_blk", "ext4"]);
        assert!(f.rejected.is_empty());
        assert_eq!(
            BootFlags::parse("root=/dev/sda1 rescue"),
            BootFlags::default()
        );
        let f = BootFlags::parse(
            "pocobelle.config=etc/x pocobelle.data= pocobelle.modules=ext4,../evil pocobelle.rescue=1",
        );
        assert_eq!(f.rejected.len(), 3, "{f:?}");
        assert!(f.config.is_none() && f.data_device.is_none() && f.modules.is_empty());
        assert!(!f.rescue, "only the exact word asks for a shell");
    }
}
