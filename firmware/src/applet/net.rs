//! `dhcp-event`: the script udhcpc runs (`udhcpc -s <run_dir>/dhcp-event`,
//! a symlink to this binary made by init) with the event as its argument
//! and the lease in its environment. `bound`/`renew` apply the lease over
//! netlink (`crate::init::net`), keep it in `<run_dir>/dhcp.lease` and
//! create `<run_dir>/dhcp.primed` so init starts the services that wait
//! for the address; `deconfig`, `leasefail` and `nak` remove what the
//! previous lease set. The DNS servers of the lease go to
//! `<run_dir>/dhcp-dns` on `bound`/`renew` (the DNS cache forwards to
//! them when `[dns]` configures no upstream; the local cache stays the
//! resolver) and are kept on `deconfig`, as dnsmasq keeps resolv.conf.
//! It runs as root in the run directory that the services share: every
//! file is replaced by a rename of a freshly created temporary file,
//! never written through a name another service could have planted.
//! Exit status 0 unless the lease could not be applied.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use crate::dns::dhcp as dhcp_dns;
use crate::init::net::{self, LEASE_FILE, Lease};

/// Replaces `path` with `bytes`, mode 0644 (the DNS service reads
/// `dhcp-dns` as another user): `<path>.tmp` is created anew (`O_EXCL`,
/// so never through a planted link; one left over is removed first),
/// written, then renamed over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    // Whatever udhcpc's umask was.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes `<run_dir>/dhcp-dns` for the lease in the environment (its own
/// address `own`, udhcpc's `dns`), unless it already says the same.
fn write_dhcp_dns(run_dir: &Path, own: std::net::Ipv4Addr, offered: &str) {
    let o = net::offered_dns(own, offered);
    for (entry, why) in &o.skipped {
        log::warn!("dhcp: offered DNS server {entry} not used: {why}");
    }
    if o.unexamined > 0 {
        log::warn!("dhcp: {} more offered DNS entries ignored", o.unexamined);
    }
    let path = run_dir.join(dhcp_dns::FILE_NAME);
    if dhcp_dns::read(&path).is_ok_and(|t| t == o.text) {
        return;
    }
    if let Err(e) = replace_file(&path, o.text.as_bytes()) {
        log::warn!("dhcp: {}: {e}", path.display());
    }
}

pub fn dhcp_event(args: Vec<OsString>) -> ExitCode {
    let event = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cfg = crate::config::Config::load(std::path::Path::new(crate::config::DEFAULT_PATH))
        .unwrap_or_default();
    crate::logging::init("dhcp", cfg.log.level.to_filter());
    let run_dir = cfg.system.run_dir.clone();
    let lease_path = run_dir.join(LEASE_FILE);
    let primed = run_dir.join("dhcp.primed");
    let old = std::fs::read_to_string(&lease_path)
        .ok()
        .and_then(|t| Lease::from_file(&t));
    let mut sys = crate::sys::RealSys;
    match event.as_str() {
        "bound" | "renew" => {
            let Some(lease) = Lease::from_env(|k| std::env::var(k).ok()) else {
                log::error!("dhcp: {event} without a usable interface/ip in the environment");
                return ExitCode::FAILURE;
            };
            if let Err(e) = net::apply_lease(&mut sys, &cfg.init.network, old.as_ref(), &lease) {
                log::error!("dhcp: cannot apply {}/{}: {e}", lease.ip, lease.prefix);
                return ExitCode::FAILURE;
            }
            let routers: Vec<String> = lease.routers.iter().map(|r| r.to_string()).collect();
            let dns: Vec<String> = lease.dns.iter().map(|r| r.to_string()).collect();
            log::info!(
                "dhcp: {event} {} {}/{} router {} lease {} s; DNS servers offered: {} ({})",
                lease.interface,
                lease.ip,
                lease.prefix,
                if !routers.is_empty() {
                    routers.join(" ")
                } else if cfg.init.network.gateway.is_empty() {
                    "none".into()
                } else {
                    format!(
                        "none (using init.network.gateway {})",
                        cfg.init.network.gateway
                    )
                },
                lease.lease_secs,
                if dns.is_empty() {
                    "none".into()
                } else {
                    dns.join(" ")
                },
                if cfg.dns.uses_dhcp_servers() {
                    "the DNS cache forwards to them: dns.upstreams is empty"
                } else {
                    "not used: dns.upstreams are configured"
                },
            );
            let offered = std::env::var("dns").unwrap_or_default();
            write_dhcp_dns(&run_dir, lease.ip, &offered);
            if let Err(e) = replace_file(&lease_path, lease.to_file().as_bytes()) {
                log::warn!("dhcp: {}: {e}", lease_path.display());
            }
            if let Err(e) = replace_file(&primed, b"") {
                log::warn!("dhcp: {}: {e}", primed.display());
            }
            ExitCode::SUCCESS
        }
        "deconfig" | "leasefail" | "nak" => {
            let old_missing = old.is_none();
            if let Some(o) = old {
                match net::drop_lease(&mut sys, &o) {
                    Ok(()) => log::info!("dhcp: {event}: {}/{} removed", o.ip, o.prefix),
                    Err(e) => log::warn!("dhcp: {event}: removing {}/{}: {e}", o.ip, o.prefix),
                }
                let _ = std::fs::remove_file(&lease_path);
            }
            // Not primed any more until the next lease. `dhcp-dns` is
            // kept: the last servers known are the best guess.
            let _ = std::fs::remove_file(&primed);
            if old_missing && event != "deconfig" {
                log::info!("dhcp: {event}: no lease yet");
            }
            ExitCode::SUCCESS
        }
        other => {
            log::debug!("dhcp: event {other:?} ignored");
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_never_written_through_a_planted_link() {
        let d = std::env::temp_dir().join(format!("pcb-dhcp-event-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // A link where the temporary file goes, as another user of the
        // shared run directory could leave it.
        std::os::unix::fs::symlink(&victim, d.join("dhcp-dns.tmp")).unwrap();
        write_dhcp_dns(
            &d,
            "192.168.1.20".parse().unwrap(),
            "192.168.1.1 192.168.1.20",
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let path = d.join(dhcp_dns::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\n192.168.1.1\n"), "{text}");
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        assert!(!d.join("dhcp-dns.tmp").exists());
        // The same servers again: the file is left as it is.
        let before = m.modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_dhcp_dns(&d, "192.168.1.20".parse().unwrap(), "192.168.1.1");
        let after = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(before, after);
        let _ = std::fs::remove_dir_all(&d);
    }
}
