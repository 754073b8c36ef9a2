//! Forwarders offered by DHCP, for when `[dns]` configures none (what
//! dnsmasq does with resolv.conf). `dhcp-event` (root, under udhcpc)
//! writes `<run_dir>/dhcp-dns`, one server a line; this module owns the
//! file's format ([`parse`] and [`render`], pure), the checks on reading
//! it (a regular file owned by root or by this process's user, at most
//! [`MAX_FILE_BYTES`]) and the [`Watch`] that looks at its stamp at most
//! every [`RECHECK_INTERVAL`] and, when the list changed, installs a new
//! forwarder set in the service. In-flight resolutions keep the set they
//! started with (see `upstream::Current`). It is never started when
//! `dns.upstreams` or `dns.tls_upstreams` is set: configured forwarders
//! win.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::service::Service;
use super::upstream::{Source, Upstreams};

/// The file under `system.run_dir`.
pub const FILE_NAME: &str = "dhcp-dns";
/// At most this many servers are written and read; further ones are
/// ignored (and logged).
pub const MAX_DHCP_DNS: usize = 4;
/// A longer file is not read at all.
pub const MAX_FILE_BYTES: usize = 4096;
/// How often the file's stamp (inode, size, mtime) is looked at.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Port of a line that names none.
pub const DEFAULT_PORT: u16 = 53;
/// Bad lines reported per read; further ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 8;

/// Why a line of the file names no usable server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected IP, IP:port or [IPv6]:port")]
    Syntax,
    #[error("port 0")]
    PortZero,
    #[error("not a unicast address")]
    NotUnicast,
    #[error("listed twice")]
    Duplicate,
    #[error("more than {} servers: ignored", MAX_DHCP_DNS)]
    TooMany,
    #[error("this service's own listening address (a forwarding loop)")]
    Own,
}

/// The servers of one file, and what was wrong with the other lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub servers: Vec<SocketAddr>,
    /// (line number from 1, why), at most [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<(usize, LineError)>,
    /// Bad lines beyond those in `errors`.
    pub unreported: usize,
}

/// One line without its comment: `IP` (port 53), `IP:port`, `[IPv6]`
/// or `[IPv6]:port`.
pub fn parse_line(s: &str) -> Result<SocketAddr, LineError> {
    let a = if let Ok(a) = s.parse::<SocketAddr>() {
        a
    } else {
        let ip = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        let ip: IpAddr = ip.unwrap_or(s).parse().map_err(|_| LineError::Syntax)?;
        SocketAddr::new(ip, DEFAULT_PORT)
    };
    if a.port() == 0 {
        return Err(LineError::PortZero);
    }
    let ip = a.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(LineError::NotUnicast);
    }
    Ok(a)
}

/// The whole file: blank lines and `#` comments are skipped, every other
/// line names one server; at most [`MAX_DHCP_DNS`] are taken.
pub fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let bad = |p: &mut Parsed, line: usize, e: LineError| {
        if p.errors.len() < MAX_REPORTED_ERRORS {
            p.errors.push((line, e));
        } else {
            p.unreported += 1;
        }
    };
    for (n, line) in text.lines().enumerate() {
        let s = line.split('#').next().unwrap_or("").trim();
        if s.is_empty() {
            continue;
        }
        match parse_line(s) {
            Err(e) => bad(&mut p, n + 1, e),
            Ok(a) if p.servers.contains(&a) => bad(&mut p, n + 1, LineError::Duplicate),
            Ok(_) if p.servers.len() >= MAX_DHCP_DNS => bad(&mut p, n + 1, LineError::TooMany),
            Ok(a) => p.servers.push(a),
        }
    }
    p
}

/// The file text for `servers` (what `dhcp-event` writes).
pub fn render(servers: &[IpAddr]) -> String {
    let mut s = String::from("# DNS servers of the DHCP lease, written by pocobelle dhcp-event\n");
    for ip in servers.iter().take(MAX_DHCP_DNS) {
        s.push_str(&ip.to_string());
        s.push('\n');
    }
    s
}

/// What identifies one version of the file: a rename makes a new inode,
/// a rewrite a new size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// Why the file as a whole is not used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("owned by uid {0}, neither root nor this service's user")]
    Owner(u32),
    #[error("longer than {} bytes", MAX_FILE_BYTES)]
    TooLarge,
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// The file's stamp; `None` when it does not exist.
pub fn stamp(path: &Path) -> Result<Option<Stamp>, std::io::Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(Stamp::of(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the file: not through a symlink, never blocking (a FIFO is
/// refused), only when root or this process's user owns it (the run
/// directory is shared with the other services), at most
/// [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> Result<String, FileError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(FileError::NotRegular);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != 0 && m.uid() != me {
        return Err(FileError::Owner(m.uid()));
    }
    let mut buf = Vec::with_capacity((m.size() as usize).min(MAX_FILE_BYTES) + 1);
    f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge);
    }
    String::from_utf8(buf).map_err(|_| FileError::NotUtf8)
}

/// Why the current list is what it is (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Listed,
    Absent,
    Unusable,
}

/// The watcher's state: the file's last stamp and the list in use.
pub struct Watch {
    path: PathBuf,
    /// The service's own listening addresses (never forwarded to).
    own: Vec<SocketAddr>,
    /// `None` before the first look; then the last stamp seen (itself
    /// `None` while the file is absent).
    seen: Option<Option<Stamp>>,
    /// The last error of `stamp` itself, logged once.
    stat_error: Option<std::io::ErrorKind>,
    current: Vec<SocketAddr>,
}

impl Watch {
    pub fn new(path: PathBuf, own: Vec<SocketAddr>) -> Watch {
        Watch {
            path,
            own,
            seen: None,
            stat_error: None,
            current: Vec::new(),
        }
    }

    /// Whether `a` is (or, through a wildcard listener, reaches) one of
    /// the service's own sockets.
    fn is_own(&self, a: SocketAddr) -> bool {
        self.own.iter().any(|o| {
            *o == a
                || (o.port() == a.port()
                    && o.ip().is_unspecified()
                    && o.is_ipv4() == a.is_ipv4()
                    && a.ip().is_loopback())
        })
    }

    /// The list for the file's new version (`None`: absent), with every
    /// problem logged.
    fn list(&self, present: bool) -> (Vec<SocketAddr>, Why) {
        if !present {
            return (Vec::new(), Why::Absent);
        }
        let text = match read(&self.path) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{}: not used: {e}", self.path.display());
                return (Vec::new(), Why::Unusable);
            }
        };
        let mut p = parse(&text);
        let mut own = Vec::new();
        p.servers.retain(|&a| {
            let mine = self.is_own(a);
            if mine {
                own.push(a);
            }
            !mine
        });
        for (line, e) in &p.errors {
            log::warn!("{}:{line}: {e}: skipped", self.path.display());
        }
        if p.unreported > 0 {
            log::warn!(
                "{}: {} more bad lines skipped",
                self.path.display(),
                p.unreported
            );
        }
        for a in own {
            log::warn!("{}: {a}: {}: skipped", self.path.display(), LineError::Own);
        }
        (p.servers, Why::Listed)
    }

    /// Looks at the file; when its list changed (or on the first look),
    /// installs it in `svc` and logs it. Returns whether it installed.
    pub fn check(&mut self, svc: &Service) -> bool {
        let st = match stamp(&self.path) {
            Ok(s) => {
                self.stat_error = None;
                s
            }
            Err(e) => {
                if self.stat_error != Some(e.kind()) {
                    log::warn!("{}: {e}", self.path.display());
                    self.stat_error = Some(e.kind());
                }
                return false;
            }
        };
        let first = self.seen.is_none();
        if self.seen == Some(st) {
            return false;
        }
        self.seen = Some(st);
        let (list, why) = self.list(st.is_some());
        if !first && list == self.current {
            return false;
        }
        if list.is_empty() {
            let why = match why {
                Why::Absent => "absent",
                Why::Unusable => "unusable",
                Why::Listed => "lists none",
            };
            log::warn!(
                "upstreams from DHCP: none ({} {why}): only local data and the cache are answered",
                self.path.display()
            );
        } else {
            let text: Vec<String> = list.iter().map(|a| a.to_string()).collect();
            log::info!("upstreams from DHCP: {}", text.join(", "));
        }
        svc.upstreams.replace(Upstreams::new(&list, Source::Dhcp));
        self.current = list;
        true
    }
}

/// Checks the file every [`RECHECK_INTERVAL`], forever.
pub async fn watch(svc: Arc<Service>, mut w: Watch) {
    let mut tick = tokio::time::interval(RECHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        w.check(&svc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DnsConfig;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lines_name_servers_with_port_53_by_default() {
        assert_eq!(parse_line("192.168.1.1"), Ok(sa("192.168.1.1:53")));
        assert_eq!(parse_line("127.0.0.1:5353"), Ok(sa("127.0.0.1:5353")));
        assert_eq!(parse_line("fd00::1"), Ok(sa("[fd00::1]:53")));
        assert_eq!(parse_line("[fd00::1]"), Ok(sa("[fd00::1]:53")));
        assert_eq!(parse_line("[::1]:5300"), Ok(sa("[::1]:5300")));
        for bad in [
            "",
            "router",
            "192.168.1",
            "192.168.1.1:",
            "192.168.1.1:65536",
            "fd00::1:53:x",
            "[fd00::1",
            "1.2.3.4 5.6.7.8",
        ] {
            assert_eq!(parse_line(bad), Err(LineError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_line("10.0.0.1:0"), Err(LineError::PortZero));
        for not_unicast in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            assert_eq!(parse_line(not_unicast), Err(LineError::NotUnicast));
        }
    }

    #[test]
    fn a_file_with_comments_bad_lines_and_too_many_servers() {
        let text = "# from the lease\n\n  192.168.1.1  \n192.168.1.1\nnot-an-ip\n[2001:db8::53]:5353 # v6\n10.0.0.1:0\n10.0.0.2\n10.0.0.3\n10.0.0.4\n";
        let p = parse(text);
        assert_eq!(
            p.servers,
            [
                sa("192.168.1.1:53"),
                sa("[2001:db8::53]:5353"),
                sa("10.0.0.2:53"),
                sa("10.0.0.3:53")
            ]
        );
        assert_eq!(
            p.errors,
            [
                (4, LineError::Duplicate),
                (5, LineError::Syntax),
                (7, LineError::PortZero),
                (10, LineError::TooMany)
            ]
        );
        assert_eq!(p.unreported, 0);
        // Bad lines beyond the reported ones are counted.
        let many = "x\n".repeat(MAX_REPORTED_ERRORS + 3);
        let p = parse(&many);
        assert!(p.servers.is_empty());
        assert_eq!(p.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(p.unreported, 3);
        assert_eq!(parse(""), Parsed::default());
        assert_eq!(parse("# nothing\n\n"), Parsed::default());
    }

    #[test]
    fn rendered_text_parses_back() {
        let ips: Vec<IpAddr> = ["192.168.1.1", "192.168.1.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let p = parse(&render(&ips));
        assert_eq!(p.servers, [sa("192.168.1.1:53"), sa("192.168.1.2:53")]);
        assert!(p.errors.is_empty());
        assert_eq!(parse(&render(&[])), Parsed::default());
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pcb-dhcpdns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reading_refuses_large_files_symlinks_and_fifos() {
        let d = scratch("read");
        let f = d.join(FILE_NAME);
        std::fs::write(&f, "10.0.0.1\n").unwrap();
        assert_eq!(read(&f).unwrap(), "10.0.0.1\n");
        std::fs::write(&f, "#".repeat(MAX_FILE_BYTES + 1)).unwrap();
        assert!(matches!(read(&f), Err(FileError::TooLarge)));
        std::fs::write(&f, [0xFFu8, 0xFE]).unwrap();
        assert!(matches!(read(&f), Err(FileError::NotUtf8)));
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(read(&link), Err(FileError::Io(_))));
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(read(&fifo), Err(FileError::NotRegular)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_watch_installs_a_new_set_only_when_the_list_changes() {
        let d = scratch("watch");
        let f = d.join(FILE_NAME);
        let svc = Service::new(DnsConfig::default()).unwrap();
        let own = vec![sa("127.0.0.1:53"), sa("0.0.0.0:5300")];
        let mut w = Watch::new(f.clone(), own);
        let addrs = |svc: &Service| -> Vec<SocketAddr> {
            let set = svc.upstreams.get();
            let u = set.lock().unwrap();
            u.servers.iter().map(|s| s.addr).collect()
        };
        // First look: no file, an empty set from DHCP.
        assert!(w.check(&svc));
        assert!(addrs(&svc).is_empty());
        assert!(!w.check(&svc), "nothing changed");
        std::fs::write(&f, "192.168.1.1\n127.0.0.1:53\n127.0.0.1:5300\n").unwrap();
        assert!(w.check(&svc));
        assert_eq!(addrs(&svc), [sa("192.168.1.1:53")], "own addresses skipped");
        let before = svc.upstreams.get();
        // The same list written again: a new stamp, the same set.
        std::fs::write(&f, "# again\n192.168.1.1:53\n").unwrap();
        assert!(!w.check(&svc));
        assert!(Arc::ptr_eq(&before, &svc.upstreams.get()));
        std::fs::write(&f, "192.168.1.2\n192.168.1.1\n").unwrap();
        assert!(w.check(&svc));
        assert_eq!(addrs(&svc), [sa("192.168.1.2:53"), sa("192.168.1.1:53")]);
        // The set taken before the change is untouched.
        assert_eq!(before.lock().unwrap().servers.len(), 1);
        std::fs::remove_file(&f).unwrap();
        assert!(w.check(&svc));
        assert!(addrs(&svc).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
