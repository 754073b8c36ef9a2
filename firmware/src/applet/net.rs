//! `dhcp-event`: the script udhcpc runs (`udhcpc -s <run_dir>/dhcp-event`,
//! a symlink to this binary made by init) with the event as its argument
//! and the lease in its environment. `bound`/`renew` apply the lease over
//! netlink (`crate::init::net`), keep it in `<run_dir>/dhcp.lease` and
//! create `<run_dir>/dhcp.primed` so init starts the services that wait
//! for the address; `deconfig`, `leasefail` and `nak` remove what the
//! previous lease set. DNS servers of the lease are logged only: the
//! local cache stays the resolver. Exit status 0 unless the lease could
//! not be applied.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::init::net::{self, LEASE_FILE, Lease};

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
                "dhcp: {event} {} {}/{} router {} lease {} s; DNS servers offered: {} (not used: the local cache resolves)",
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
            );
            let tmp = lease_path.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, lease.to_file())
                .and_then(|_| std::fs::rename(&tmp, &lease_path))
            {
                log::warn!("dhcp: {}: {e}", lease_path.display());
            }
            let _ = std::fs::write(&primed, b"");
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
            // Not primed any more until the next lease.
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
