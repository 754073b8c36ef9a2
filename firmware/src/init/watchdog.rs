//! The hardware watchdog (`/dev/watchdog`, Linux watchdog API): opened by
//! init once the boot is past the steps a human may be waiting on (rescue
//! shell), asked for `init.watchdog_timeout_secs`, fed every
//! [`interval_secs`] from init's loop, and disarmed with the magic close
//! (`V`, then close) as the very last step of a clean shutdown, so that a
//! power-off or reboot is never followed by a watchdog reset. If init
//! hangs, the board resets itself. It owns the device file and nothing
//! else; it never panics (every failure is a log line and no watchdog).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

// The Linux watchdog ioctls (include/uapi/linux/watchdog.h), 'W' group.
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

/// An open, armed watchdog.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
    /// The timeout the driver reports (s), when it reports one.
    pub timeout_secs: Option<u32>,
    /// Seconds between keep-alives.
    pub interval_secs: u32,
}

/// The keep-alive interval: the configured one, but at most half the
/// driver's timeout (at least 1 s), so that one late wake-up of init
/// does not reset the board.
pub fn interval_secs(configured: u32, timeout: Option<u32>) -> u32 {
    match timeout {
        Some(t) if t > 0 => configured.min(t / 2).max(1),
        _ => configured.max(1),
    }
}

impl Watchdog {
    /// Opens `dev` (which arms it) and asks for `timeout_secs` (0: keep
    /// the driver's). `None`, with a log line, when there is none.
    pub fn open(dev: &Path, timeout_secs: u32, configured_interval: u32) -> Option<Watchdog> {
        if dev.as_os_str().is_empty() || !dev.exists() {
            log::info!("watchdog: none");
            return None;
        }
        let file = match OpenOptions::new().write(true).open(dev) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("watchdog: {}: {e}", dev.display());
                return None;
            }
        };
        let fd = file.as_raw_fd();
        if timeout_secs > 0 {
            let mut t = timeout_secs as libc::c_int;
            // SAFETY: the ioctl reads and writes one int we own.
            if let Err(e) = unsafe { wdioc_settimeout(fd, &mut t) } {
                log::warn!(
                    "watchdog: {}: cannot set the timeout to {timeout_secs} s: {e}",
                    dev.display()
                );
            }
        }
        let mut t: libc::c_int = 0;
        // SAFETY: the ioctl writes one int we own.
        let timeout = match unsafe { wdioc_gettimeout(fd, &mut t) } {
            Ok(_) if t > 0 => Some(t as u32),
            _ => None,
        };
        let interval = interval_secs(configured_interval, timeout);
        let w = Watchdog {
            file,
            path: dev.to_path_buf(),
            timeout_secs: timeout,
            interval_secs: interval,
        };
        log::info!("watchdog: {} armed; kept alive by init", w.describe());
        Some(w)
    }

    /// `/dev/watchdog, timeout 20 s, fed every 5 s` (status and logs).
    pub fn describe(&self) -> String {
        match self.timeout_secs {
            Some(t) => format!(
                "{}, timeout {t} s, fed every {} s",
                self.path.display(),
                self.interval_secs
            ),
            None => format!(
                "{}, fed every {} s",
                self.path.display(),
                self.interval_secs
            ),
        }
    }

    /// One keep-alive (the ioctl, or a write for drivers without it).
    pub fn keep_alive(&mut self) -> std::io::Result<()> {
        let mut dummy: libc::c_int = 0;
        // SAFETY: the ioctl takes a pointer to an int we own.
        if unsafe { wdioc_keepalive(self.file.as_raw_fd(), &mut dummy) }.is_ok() {
            return Ok(());
        }
        self.file.write_all(b"\0")
    }

    /// Disarms it: the magic close (`V`, then close). A driver built with
    /// nowayout keeps running; that is logged.
    pub fn disarm(mut self) {
        match self.file.write_all(b"V") {
            Ok(()) => log::info!("watchdog: {} disarmed (magic close)", self.path.display()),
            Err(e) => log::warn!(
                "watchdog: {}: magic close failed: {e}; it may reset the board",
                self.path.display()
            ),
        }
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_stays_well_inside_the_timeout() {
        assert_eq!(interval_secs(10, Some(60)), 10);
        assert_eq!(interval_secs(10, Some(15)), 7);
        assert_eq!(interval_secs(10, Some(1)), 1);
        assert_eq!(interval_secs(10, None), 10);
    }

    #[test]
    fn no_device_no_watchdog() {
        assert!(Watchdog::open(Path::new(""), 60, 10).is_none());
        assert!(Watchdog::open(Path::new("/nonexistent/watchdog"), 60, 10).is_none());
    }
}
