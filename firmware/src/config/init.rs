//! `[init]`, `[init.swap]`, `[init.sysctl]` and `[[init.service]]`: what
//! PID 1 mounts, loads, reserves and supervises. Declared once here with
//! each key's default and bounds; the decisions built on these values live
//! in `crate::init`. Nothing here touches the system.

use std::path::PathBuf;

use super::read::{toml_enum, toml_table};
use super::{Invalid, check_range};

/// At most this many supervised services (dns, mail and a few helpers).
pub const MAX_SERVICES: usize = 8;
/// At most this many arguments in one service's command line.
pub const MAX_ARGV: usize = 16;
/// At most this many kernel modules named in `init.modules`.
pub const MAX_MODULES: usize = 32;
/// A service name, user name or argument is at most this long.
pub const MAX_WORD_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct InitConfig {
    /// Block device of the data partition, mounted on `system.data_dir`.
    /// Empty (default): the data directory lives on the root file system
    /// and init mounts nothing there.
    pub data_device: String,
    /// File system type of the data partition. Default `ext4`.
    pub data_fstype: String,
    /// Grow the data partition and its ext4 file system to fill the
    /// medium when it is the last partition of an MBR disk with at least
    /// 16 MiB free after it (the first boot of a flashed image). Default
    /// true.
    pub grow_data: bool,
    /// ext4 journal commit interval in seconds (mount option `commit=`):
    /// longer means fewer, larger flash writes. Default 60, 1 to 600.
    pub commit_secs: u32,
    /// The e2fsck binary run as `e2fsck -p DEVICE` after an unclean
    /// shutdown. Default `/sbin/e2fsck`.
    pub fsck: PathBuf,
    /// Kernel modules to load at boot, with their dependencies from
    /// `/lib/modules/<release>/modules.dep`. Default none.
    pub modules: Vec<String>,
    /// How long to wait for a service with `ready = "primed"` before
    /// starting the next ones anyway. Default 30 s, 1 to 600.
    pub primed_budget_secs: u32,
    /// How long a stopping service gets between SIGTERM and SIGKILL.
    /// Default 10 s, 1 to 120.
    pub stop_grace_secs: u32,
    /// The hardware watchdog, kept alive when it exists. Empty: none.
    /// Default `/dev/watchdog`.
    pub watchdog_device: PathBuf,
    /// Seconds between watchdog keep-alives. Default 10, 1 to 60; used
    /// as at most half the timeout the driver accepted.
    pub watchdog_interval_secs: u32,
    /// Watchdog timeout asked of the driver (WDIOC_SETTIMEOUT): the board
    /// resets this long after init's last keep-alive. 0: the driver's own.
    /// Default 60, else 2 to 3600.
    pub watchdog_timeout_secs: u32,
    /// Shell started on the console when the kernel command line has
    /// `pocobelle.rescue`. Default `/bin/sh`.
    pub rescue_shell: PathBuf,
    /// Seconds between saves of the clock to the data partition.
    /// Default 3600, 60 to 86400.
    pub clock_save_secs: u32,
    pub logfile: LogFileConfig,
    pub swap: SwapConfig,
    pub sysctl: SysctlConfig,
    pub network: NetworkConfig,
    pub sntp: SntpConfig,
    /// Services to supervise, started in this order. Empty (default):
    /// `dns` then `mail`, those of them that this build has.
    pub service: Vec<ServiceConfig>,
}
toml_table!(InitConfig {
    data_device,
    data_fstype,
    grow_data,
    commit_secs,
    fsck,
    modules,
    primed_budget_secs,
    stop_grace_secs,
    watchdog_device,
    watchdog_interval_secs,
    watchdog_timeout_secs,
    rescue_shell,
    clock_save_secs,
    logfile,
    swap,
    sysctl,
    network,
    sntp,
    service
});

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            data_device: String::new(),
            data_fstype: "ext4".into(),
            grow_data: true,
            commit_secs: 60,
            fsck: PathBuf::from("/sbin/e2fsck"),
            modules: Vec::new(),
            primed_budget_secs: 30,
            stop_grace_secs: 10,
            watchdog_device: PathBuf::from("/dev/watchdog"),
            watchdog_interval_secs: 10,
            watchdog_timeout_secs: 60,
            rescue_shell: PathBuf::from("/bin/sh"),
            clock_save_secs: 3600,
            logfile: LogFileConfig::default(),
            swap: SwapConfig::default(),
            sysctl: SysctlConfig::default(),
            network: NetworkConfig::default(),
            sntp: SntpConfig::default(),
            service: Vec::new(),
        }
    }
}

/// `[init.logfile]`: the log ring also kept in a file on the data
/// partition, written in large batches (flash wears with small writes).
#[derive(Debug, Clone, PartialEq)]
pub struct LogFileConfig {
    /// Log file, relative to `system.data_dir`, e.g. `pocobelle.log`.
    /// Empty (default): no log file. Written only when the data partition
    /// is mounted read-write.
    pub file: PathBuf,
    /// Pending text that triggers a write, in KiB. Default 64, 4 to 128.
    pub batch_kib: u32,
    /// Longest time a line waits in memory, in seconds. Default 600,
    /// 10 to 86400. Pending lines are also written at shutdown.
    pub flush_secs: u32,
    /// Size at which the file is renamed to `<file>.1` (the one old file
    /// kept) and a new one started, in KiB. Default 1024, 64 to 65536.
    pub max_kib: u32,
}
toml_table!(LogFileConfig {
    file,
    batch_kib,
    flush_secs,
    max_kib
});

impl Default for LogFileConfig {
    fn default() -> Self {
        LogFileConfig {
            file: PathBuf::new(),
            batch_kib: 64,
            flush_secs: 600,
            max_kib: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwapConfig {
    /// Whether init creates and activates a swap file. Default true.
    pub enabled: bool,
    /// Swap file, relative to `system.data_dir`. Default `swapfile`.
    pub file: PathBuf,
    /// Size of the swap file in MiB. Default 128, 1 to 4096.
    pub size_mib: u32,
    /// Space that must stay free on the data partition after the swap
    /// file exists, in MiB; otherwise swap is skipped. Default 64, 0 to 65536.
    pub min_free_mib: u32,
    /// vm.swappiness: low, so that flash sees swap writes only under
    /// real pressure. Default 10, 0 to 100.
    pub swappiness: u32,
}
toml_table!(SwapConfig {
    enabled,
    file,
    size_mib,
    min_free_mib,
    swappiness
});

impl Default for SwapConfig {
    fn default() -> Self {
        SwapConfig {
            enabled: true,
            file: PathBuf::from("swapfile"),
            size_mib: 128,
            min_free_mib: 64,
            swappiness: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SysctlConfig {
    /// Dirty data that starts background writeback, in KiB (a multiple of
    /// 128 is used). 0 (default): computed from RAM (RAM/32, 512 to 8192).
    pub writeback_batch_kib: u32,
    /// vm.min_free_kbytes. 0 (default): computed from RAM (RAM/64, at
    /// least 512, at most 16384).
    pub min_free_kib: u32,
    /// Age after which dirty data is written, in seconds. Default 30, 1 to 600.
    pub dirty_expire_secs: u32,
    /// Interval of the flusher threads, in seconds. Default 15, 1 to 600.
    pub dirty_writeback_secs: u32,
}
toml_table!(SysctlConfig {
    writeback_batch_kib,
    min_free_kib,
    dirty_expire_secs,
    dirty_writeback_secs
});

impl Default for SysctlConfig {
    fn default() -> Self {
        SysctlConfig {
            writeback_batch_kib: 0,
            min_free_kib: 0,
            dirty_expire_secs: 30,
            dirty_writeback_secs: 15,
        }
    }
}

/// At most this many extra routes in `init.network.routes`.
pub const MAX_ROUTES: usize = 16;

/// `[init.network]`: the board's interface (loopback is always brought up),
/// configured over rtnetlink.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Interface to configure, e.g. `eth0`. Empty (default): none.
    pub interface: String,
    /// Static IPv4 address with prefix length, e.g. `192.168.1.20/24`.
    /// Empty: none (use `dhcp`).
    pub address: String,
    /// IPv4 default gateway. Empty (default): no default route.
    pub gateway: String,
    /// Static IPv6 address with prefix length, e.g. `fd00::20/64`. Empty
    /// (default): none.
    pub address6: String,
    /// IPv6 default gateway (may be link-local, e.g. `fe80::1`). Empty
    /// (default): none.
    pub gateway6: String,
    /// Extra routes, `"PREFIX via GATEWAY"` (IPv4 or IPv6), at most
    /// [`MAX_ROUTES`]. Default none.
    pub routes: Vec<String>,
    /// Let the kernel configure IPv6 from router advertisements (sysctls
    /// accept_ra and autoconf of the interface). Default true.
    pub ipv6_autoconf: bool,
    /// Get the IPv4 address, gateway and DNS servers (logged only) by
    /// DHCP: BusyBox's udhcpc, supervised as the service `dhcp`.
    /// Default false.
    pub dhcp: bool,
    /// The DHCP client, run as `udhcpc -f -i IFACE -s SCRIPT`. Default
    /// `/sbin/udhcpc`.
    pub dhcp_client: PathBuf,
    /// How long init waits for the link (carrier) and the static
    /// addresses before starting services anyway (with `dhcp`, the
    /// services after `dhcp` wait for a lease at most
    /// `init.primed_budget_secs`). Default 10 s, 0 to 120.
    pub wait_secs: u32,
}
toml_table!(NetworkConfig {
    interface,
    address,
    gateway,
    address6,
    gateway6,
    routes,
    ipv6_autoconf,
    dhcp,
    dhcp_client,
    wait_secs
});

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            interface: String::new(),
            address: String::new(),
            gateway: String::new(),
            address6: String::new(),
            gateway6: String::new(),
            routes: Vec::new(),
            ipv6_autoconf: true,
            dhcp: false,
            dhcp_client: PathBuf::from("/sbin/udhcpc"),
            wait_secs: 10,
        }
    }
}

/// At most this many SNTP servers.
pub const MAX_SNTP_SERVERS: usize = 8;

/// `[init.sntp]`: the clock set from SNTP servers (RFC 4330) by the
/// supervised service `sntp`, once DNS is up.
#[derive(Debug, Clone, PartialEq)]
pub struct SntpConfig {
    /// Servers, `host` or `host:port` (port 123 by default), names
    /// resolved through the local DNS cache (`dns.listen`). Empty
    /// (default): the clock is not synchronised. At most
    /// [`MAX_SNTP_SERVERS`].
    pub servers: Vec<String>,
    /// Seconds between synchronisations once synced. Default 3600,
    /// 64 to 86400. After a failure the next try comes sooner (60 s,
    /// doubling up to this).
    pub poll_secs: u32,
    /// Offsets at least this large (ms) step the clock at once; smaller
    /// ones are slewed by the kernel. Default 128, 1 to 3600000.
    pub step_ms: u32,
}
toml_table!(SntpConfig {
    servers,
    poll_secs,
    step_ms
});

impl Default for SntpConfig {
    fn default() -> Self {
        SntpConfig {
            servers: Vec::new(),
            poll_secs: 3600,
            step_ms: 128,
        }
    }
}

/// When a service counts as ready, so that the next one may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// As soon as it is started.
    #[default]
    None,
    /// When it writes `primed\n` to the fd in `POCOBELLE_READY_FD`, or
    /// creates `<run_dir>/<name>.primed`.
    Primed,
}
toml_enum!(Readiness { "none" => None, "primed" => Primed });

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    /// Short name: log prefix, status line, cgroup, `<name>.primed`.
    pub name: String,
    /// Command line; the first word is the program. Empty: this binary
    /// with the applet named `name`.
    pub argv: Vec<String>,
    /// Unprivileged user the service runs as (from /etc/passwd); it keeps
    /// only CAP_NET_BIND_SERVICE. `root` keeps root. Default `pocobelle-NAME`.
    pub user: Option<String>,
    /// /proc/PID/oom_score_adj, -1000 to 1000: higher dies first. Default 0.
    pub oom_score_adj: i32,
    /// Memory ceiling in MiB (cgroup v2 memory.max) where the kernel has
    /// it; 0: none. Default 0, at most 4096.
    pub memory_max_mib: u32,
    /// `none` (default) or `primed`.
    pub ready: Readiness,
    /// Started in safe mode (config did not parse). Default false.
    pub safe_mode: bool,
    /// Extra environment, `KEY=VALUE` each (NUT's programs find their
    /// configuration through `NUT_CONFPATH`). Default none.
    pub env: Vec<String>,
}
toml_table!(ServiceConfig { name, argv, user, oom_score_adj, memory_max_mib, ready, safe_mode, env } required { name });

impl ServiceConfig {
    /// The built-in services: dns (primed, kept) and mail (expendable),
    /// those of them that this build provides.
    pub fn defaults(has_applet: impl Fn(&str) -> bool) -> Vec<ServiceConfig> {
        let mut v = Vec::new();
        if has_applet("dns") {
            v.push(ServiceConfig {
                name: "dns".into(),
                argv: Vec::new(),
                user: None,
                oom_score_adj: -500,
                memory_max_mib: 32,
                ready: Readiness::Primed,
                safe_mode: true,
                env: Vec::new(),
            });
        }
        if has_applet("mail") {
            v.push(ServiceConfig {
                name: "mail".into(),
                argv: Vec::new(),
                user: None,
                oom_score_adj: 500,
                memory_max_mib: 48,
                ready: Readiness::None,
                safe_mode: false,
                env: Vec::new(),
            });
        }
        v
    }

    /// The user this service runs as.
    pub fn user_name(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| format!("pocobelle-{}", self.name))
    }
}

impl NetworkConfig {
    fn validate(&self) -> Result<(), Invalid> {
        use crate::init::net;
        check_range("init.network.wait_secs", self.wait_secs, 0, 120)?;
        if !self.interface.is_empty()
            && (self.interface.len() > net::MAX_IFNAME || self.interface.contains(['/', ' ', '\0']))
        {
            return Err(invalid(
                "init.network.interface",
                format!(
                    "expected an interface name of at most {} bytes, found {:?}",
                    net::MAX_IFNAME,
                    self.interface
                ),
            ));
        }
        if !self.address.is_empty() && net::parse_cidr(&self.address, false).is_none() {
            return Err(invalid(
                "init.network.address",
                format!(
                    "expected an IPv4 address with prefix such as \"192.168.1.20/24\", found {:?}",
                    self.address
                ),
            ));
        }
        if !self.address6.is_empty() && net::parse_cidr(&self.address6, true).is_none() {
            return Err(invalid(
                "init.network.address6",
                format!(
                    "expected an IPv6 address with prefix such as \"fd00::20/64\", found {:?}",
                    self.address6
                ),
            ));
        }
        if !self.gateway.is_empty() && self.gateway.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(invalid(
                "init.network.gateway",
                format!("expected an IPv4 address, found {:?}", self.gateway),
            ));
        }
        if !self.gateway6.is_empty() && self.gateway6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(
                "init.network.gateway6",
                format!("expected an IPv6 address, found {:?}", self.gateway6),
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(invalid(
                "init.network.routes",
                format!("at most {MAX_ROUTES} routes, found {}", self.routes.len()),
            ));
        }
        if let Some(r) = self.routes.iter().find(|r| net::parse_route(r).is_none()) {
            return Err(invalid(
                "init.network.routes",
                format!(
                    "expected \"PREFIX via GATEWAY\" of one family, such as \"192.168.2.0/24 via 192.168.1.1\", found {r:?}"
                ),
            ));
        }
        if self.interface.is_empty()
            && (self.dhcp
                || !self.address.is_empty()
                || !self.address6.is_empty()
                || !self.routes.is_empty())
        {
            return Err(invalid(
                "init.network.interface",
                "addresses, routes and dhcp need an interface name such as \"eth0\"",
            ));
        }
        if self.dhcp && !self.address.is_empty() {
            return Err(invalid(
                "init.network.address",
                "a static IPv4 address and dhcp = true exclude each other",
            ));
        }
        if self.dhcp && !self.dhcp_client.is_absolute() {
            return Err(invalid(
                "init.network.dhcp_client",
                format!(
                    "expected an absolute path, found {:?}",
                    self.dhcp_client.display()
                ),
            ));
        }
        Ok(())
    }
}

impl SntpConfig {
    fn validate(&self) -> Result<(), Invalid> {
        check_range("init.sntp.poll_secs", self.poll_secs, 64, 86400)?;
        check_range("init.sntp.step_ms", self.step_ms, 1, 3_600_000)?;
        if self.servers.len() > MAX_SNTP_SERVERS {
            return Err(invalid(
                "init.sntp.servers",
                format!(
                    "at most {MAX_SNTP_SERVERS} servers, found {}",
                    self.servers.len()
                ),
            ));
        }
        if let Some(s) = self
            .servers
            .iter()
            .find(|s| crate::init::sntp::parse_server(s).is_none())
        {
            return Err(invalid(
                "init.sntp.servers",
                format!("expected \"host\" or \"host:port\", found {s:?}"),
            ));
        }
        Ok(())
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn word_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_WORD_BYTES && !s.contains('\0')
}

impl InitConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_range("init.commit_secs", self.commit_secs, 1, 600)?;
        check_range("init.primed_budget_secs", self.primed_budget_secs, 1, 600)?;
        check_range("init.stop_grace_secs", self.stop_grace_secs, 1, 120)?;
        check_range(
            "init.watchdog_interval_secs",
            self.watchdog_interval_secs,
            1,
            60,
        )?;
        check_range("init.clock_save_secs", self.clock_save_secs, 60, 86400)?;
        if self.watchdog_timeout_secs != 0 {
            check_range(
                "init.watchdog_timeout_secs",
                self.watchdog_timeout_secs,
                2,
                3600,
            )?;
        }
        let l = &self.logfile;
        check_range("init.logfile.batch_kib", l.batch_kib, 4, 128)?;
        check_range("init.logfile.flush_secs", l.flush_secs, 10, 86400)?;
        check_range("init.logfile.max_kib", l.max_kib, 64, 65536)?;
        if l.file.is_absolute()
            || l.file
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(invalid(
                "init.logfile.file",
                format!(
                    "expected a path relative to system.data_dir without '..', or \"\", found {:?}",
                    l.file
                ),
            ));
        }
        if !self.data_device.is_empty() && !self.data_device.starts_with('/') {
            return Err(invalid(
                "init.data_device",
                format!(
                    "expected an absolute device path or \"\", found {:?}",
                    self.data_device
                ),
            ));
        }
        if !word_ok(&self.data_fstype) {
            return Err(invalid(
                "init.data_fstype",
                "expected a file system type such as \"ext4\"",
            ));
        }
        if self.modules.len() > MAX_MODULES {
            return Err(invalid(
                "init.modules",
                format!(
                    "at most {MAX_MODULES} modules, found {}",
                    self.modules.len()
                ),
            ));
        }
        if let Some(m) = self.modules.iter().find(|m| {
            !word_ok(m)
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }) {
            return Err(invalid(
                "init.modules",
                format!("expected module names of letters, digits, '_' and '-', found {m:?}"),
            ));
        }
        self.network.validate()?;
        self.sntp.validate()?;
        let s = &self.swap;
        check_range("init.swap.size_mib", s.size_mib, 1, 4096)?;
        check_range("init.swap.min_free_mib", s.min_free_mib, 0, 65536)?;
        check_range("init.swap.swappiness", s.swappiness, 0, 100)?;
        if s.file.is_absolute()
            || s.file
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            || s.file.as_os_str().is_empty()
        {
            return Err(invalid(
                "init.swap.file",
                format!(
                    "expected a path relative to system.data_dir without '..', found {:?}",
                    s.file
                ),
            ));
        }
        let y = &self.sysctl;
        if y.writeback_batch_kib != 0 {
            check_range(
                "init.sysctl.writeback_batch_kib",
                y.writeback_batch_kib,
                128,
                262144,
            )?;
        }
        if y.min_free_kib != 0 {
            check_range("init.sysctl.min_free_kib", y.min_free_kib, 512, 262144)?;
        }
        check_range("init.sysctl.dirty_expire_secs", y.dirty_expire_secs, 1, 600)?;
        check_range(
            "init.sysctl.dirty_writeback_secs",
            y.dirty_writeback_secs,
            1,
            600,
        )?;
        if self.service.len() > MAX_SERVICES {
            return Err(invalid(
                "init.service",
                format!(
                    "at most {MAX_SERVICES} services, found {}",
                    self.service.len()
                ),
            ));
        }
        for (i, svc) in self.service.iter().enumerate() {
            let key = |k: &str| format!("init.service[{i}].{k}");
            if !word_ok(&svc.name)
                || !svc
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || svc.name.len() > 32
            {
                return Err(invalid(
                    key("name"),
                    format!(
                        "expected up to 32 letters, digits, '-' or '_', found {:?}",
                        svc.name
                    ),
                ));
            }
            if self.service[..i].iter().any(|o| o.name == svc.name) {
                return Err(invalid(
                    key("name"),
                    format!("service {:?} is listed twice", svc.name),
                ));
            }
            if svc.env.len() > MAX_ARGV
                || svc.env.iter().any(|kv| {
                    kv.len() > MAX_WORD_BYTES
                        || kv.contains('\0')
                        || !kv.split_once('=').is_some_and(|(k, _)| {
                            !k.is_empty()
                                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        })
                })
            {
                return Err(invalid(
                    key("env"),
                    format!(
                        "at most {MAX_ARGV} entries KEY=VALUE (KEY letters, digits, '_'), of at most {MAX_WORD_BYTES} bytes"
                    ),
                ));
            }
            if svc.argv.len() > MAX_ARGV
                || svc
                    .argv
                    .iter()
                    .any(|a| a.len() > MAX_WORD_BYTES || a.contains('\0'))
            {
                return Err(invalid(
                    key("argv"),
                    format!("at most {MAX_ARGV} arguments of at most {MAX_WORD_BYTES} bytes"),
                ));
            }
            if let Some(u) = &svc.user
                && (!word_ok(u) || u.contains(':'))
            {
                return Err(invalid(
                    key("user"),
                    format!("expected a user name, found {u:?}"),
                ));
            }
            check_range(&key("oom_score_adj"), svc.oom_score_adj, -1000, 1000)?;
            check_range(&key("memory_max_mib"), svc.memory_max_mib, 0, 4096)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/pocobelle.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("").unwrap();
        assert_eq!(c.init.swap.size_mib, 128);
        assert_eq!(c.init.commit_secs, 60);
        assert!(c.init.service.is_empty());
    }

    #[test]
    fn services_parse_in_order() {
        let c = parse(
            "[[init.service]]\nname = \"dns\"\nready = \"primed\"\noom_score_adj = -500\n\n[[init.service]]\nname = \"mail\"\nargv = [\"/bin/pocobelle\", \"mail\"]\n",
        )
        .unwrap();
        assert_eq!(c.init.service.len(), 2);
        assert_eq!(c.init.service[0].ready, super::Readiness::Primed);
        assert_eq!(c.init.service[1].user_name(), "pocobelle-mail");
    }

    #[test]
    fn bounds_are_enforced_with_line() {
        let e = parse("[init.swap]\nsize_mib = 0\n").unwrap_err();
        assert!(e.contains(":2:") && e.contains("init.swap.size_mib"), "{e}");
        let e = parse("[init.swap]\nfile = \"../etc/passwd\"\n").unwrap_err();
        assert!(e.contains("init.swap.file"), "{e}");
        let e = parse("[[init.service]]\nname = \"a\"\nenv = [\"NO_EQUALS\"]\n").unwrap_err();
        assert!(e.contains("init.service[0].env"), "{e}");
        let c =
            parse("[[init.service]]\nname = \"a\"\nenv = [\"NUT_CONFPATH=/run/nut\"]\n").unwrap();
        assert_eq!(c.init.service[0].env, ["NUT_CONFPATH=/run/nut"]);
        let e = parse("[[init.service]]\nname = \"a b\"\n").unwrap_err();
        assert!(e.contains("init.service[0].name"), "{e}");
        let e =
            parse("[[init.service]]\nname = \"a\"\n[[init.service]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = parse("[init]\nmodules = [\"../x\"]\n").unwrap_err();
        assert!(e.contains("init.modules"), "{e}");
        let e =
            parse("[init.network]\ninterface = \"eth0\"\naddress = \"10.0.0.1\"\n").unwrap_err();
        assert!(
            e.contains(":3:") && e.contains("init.network.address"),
            "{e}"
        );
        let e = parse("[init.logfile]\nfile = \"/var/log/x\"\n").unwrap_err();
        assert!(e.contains(":2:") && e.contains("init.logfile.file"), "{e}");
        let e = parse("[init.logfile]\nbatch_kib = 1024\n").unwrap_err();
        assert!(e.contains("init.logfile.batch_kib"), "{e}");
        let e = parse("[init]\nwatchdog_timeout_secs = 1\n").unwrap_err();
        assert!(e.contains("init.watchdog_timeout_secs"), "{e}");
        assert!(parse("[init]\nwatchdog_timeout_secs = 0\n").is_ok());
        let e = parse("[init]\nswap_size = 3\n").unwrap_err();
        assert!(e.contains("swap_size"), "{e}");
    }

    #[test]
    fn network_and_sntp_keys_are_checked() {
        let ok = "[init.network]\ninterface = \"eth0\"\naddress6 = \"fd00::2/64\"\n\
                  gateway6 = \"fe80::1\"\nroutes = [\"10.1.0.0/16 via 10.0.0.1\"]\n\
                  dhcp = true\nipv6_autoconf = false\nwait_secs = 0\n\
                  [init.sntp]\nservers = [\"pool.ntp.org\", \"[::1]:123\"]\n";
        parse(ok).unwrap();
        for (text, key) in [
            (
                "[init.network]\ninterface = \"eth0\"\naddress6 = \"10.0.0.1/8\"\n",
                "init.network.address6",
            ),
            (
                "[init.network]\ninterface = \"eth0\"\ngateway6 = \"10.0.0.1\"\n",
                "init.network.gateway6",
            ),
            (
                "[init.network]\ninterface = \"eth0\"\nroutes = [\"10.1.0.0/16 via fe80::1\"]\n",
                "init.network.routes",
            ),
            (
                "[init.network]\ninterface = \"eth0\"\ndhcp = true\naddress = \"10.0.0.2/8\"\n",
                "init.network.address",
            ),
            ("[init.network]\ndhcp = true\n", "init.network.interface"),
            (
                "[init.network]\nwait_secs = 121\n",
                "init.network.wait_secs",
            ),
            (
                "[init.sntp]\nservers = [\"bad host\"]\n",
                "init.sntp.servers",
            ),
            ("[init.sntp]\npoll_secs = 10\n", "init.sntp.poll_secs"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn default_services_follow_the_build() {
        let v = super::ServiceConfig::defaults(|n| n == "dns");
        assert_eq!(v.len(), 1);
        assert!(v[0].safe_mode);
        let v = super::ServiceConfig::defaults(|_| true);
        assert!(
            v[1].oom_score_adj > v[0].oom_score_adj,
            "mail more expendable than dns"
        );
    }
}
