//! Priming: re-resolving the hot names in the background at a bounded
//! rate (`dns.prime_rate` per second, for at most `dns.prime_budget_secs`)
//! at start, at the configured times of day and on request. When the
//! first run ends (hot set refreshed, or budget spent), the service is
//! "primed": the file `<run_dir>/dns.primed` is created and, when init
//! passed `POCOBELLE_READY_FD`, "primed\n" is written to that descriptor,
//! which is then closed. One run at a time; it never blocks queries.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;

use super::service::Service;
use super::wire::Key;
use crate::config::TimeOfDay;

/// Environment variable naming the descriptor that gets "primed\n".
pub const READY_FD_ENV: &str = "POCOBELLE_READY_FD";
/// Name of the readiness file in `system.run_dir`.
pub const PRIMED_FILE: &str = "dns.primed";

/// Where "primed" is reported; used once.
pub struct Readiness {
    pub file: PathBuf,
    pub fd: Option<OwnedFd>,
}

impl Readiness {
    /// Takes `POCOBELLE_READY_FD` from the environment (only descriptors
    /// above stderr are accepted) and removes the stale readiness file.
    pub fn from_env(run_dir: &std::path::Path) -> Readiness {
        let file = run_dir.join(PRIMED_FILE);
        let _ = std::fs::remove_file(&file);
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i32>().ok())
            .filter(|&fd| {
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1
            })
            // SAFETY: the descriptor was handed to us by our parent for
            // this purpose, is open (checked above) and is used only here.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Readiness { file, fd }
    }

    fn signal(self) {
        if let Err(e) = std::fs::write(&self.file, b"primed\n") {
            log::warn!("cannot create {}: {e}", self.file.display());
        }
        if let Some(fd) = self.fd {
            let mut f = File::from(fd);
            if let Err(e) = f.write_all(b"primed\n") {
                log::warn!("cannot write to {READY_FD_ENV}: {e}");
            }
        }
    }
}

/// Marks the service primed (once) and tells whoever waits.
pub fn mark_primed(svc: &Service) {
    svc.primed.store(true, Ordering::Relaxed);
    let r = svc.ready.lock().ok().and_then(|mut g| g.take());
    if let Some(r) = r {
        log::info!("primed");
        r.signal();
    }
}

/// Starts a priming run over `names` (default: the current hot set).
/// Returns how many names it will resolve, or `None` when a run is
/// already going on.
pub fn start(svc: &Arc<Service>, names: Option<Vec<Key>>) -> Option<usize> {
    if svc.priming.swap(true, Ordering::AcqRel) {
        return None;
    }
    let names = names.unwrap_or_else(|| {
        svc.cache()
            .hot(svc.cfg.hot_names)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    });
    let n = names.len();
    let svc2 = svc.clone();
    tokio::spawn(async move {
        run(&svc2, names).await;
        svc2.priming.store(false, Ordering::Release);
        mark_primed(&svc2);
    });
    Some(n)
}

async fn run(svc: &Arc<Service>, names: Vec<Key>) {
    if names.is_empty() {
        return;
    }
    let budget = Duration::from_secs(svc.cfg.prime_budget_secs as u64);
    let deadline = tokio::time::Instant::now() + budget;
    let gap = Duration::from_micros(1_000_000 / svc.cfg.prime_rate.max(1) as u64);
    let total = names.len();
    let mut waits = JoinSet::new();
    let mut refreshed = 0usize;
    for key in names {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        if let Ok(rx) = svc.join(key) {
            waits.spawn(rx);
        }
        tokio::time::sleep(gap).await;
    }
    loop {
        match tokio::time::timeout_at(deadline, waits.join_next()).await {
            Ok(Some(Ok(Ok(Ok(_))))) => refreshed += 1,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                log::warn!("priming budget spent");
                break;
            }
        }
    }
    waits.abort_all();
    log::info!("priming: {refreshed} of {total} hot names refreshed");
}

/// Seconds from `now_of_day` (seconds since local midnight) to the next
/// of `times`; a full day when a time is exactly now.
pub fn secs_until_next(now_of_day: u32, times: &[TimeOfDay]) -> Option<u32> {
    times
        .iter()
        .map(|t| {
            let target = t.hour as i64 * 3600 + t.minute as i64 * 60;
            let d = (target - now_of_day as i64).rem_euclid(86_400) as u32;
            if d == 0 { 86_400 } else { d }
        })
        .min()
}

/// Seconds since local midnight, from the C library's idea of local time
/// (TZ or /etc/localtime; UTC when neither is set).
pub fn local_seconds_of_day() -> u32 {
    let t: libc::time_t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r only writes the `tm` we hand it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return (t.rem_euclid(86_400)) as u32;
    }
    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec).clamp(0, 86_399) as u32
}

/// Primes at every configured time of day, forever.
pub async fn at_times(svc: Arc<Service>, times: Vec<TimeOfDay>) {
    loop {
        let Some(wait) = secs_until_next(local_seconds_of_day(), &times) else {
            return;
        };
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
        if start(&svc, None).is_none() {
            log::info!("scheduled priming skipped: a run is going on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_time_of_day() {
        let t = |s| TimeOfDay::parse(s).unwrap();
        assert_eq!(secs_until_next(6 * 3600, &[t("06:30")]), Some(1800));
        assert_eq!(
            secs_until_next(7 * 3600, &[t("06:30")]),
            Some(86_400 - 1800)
        );
        assert_eq!(
            secs_until_next(7 * 3600, &[t("06:30"), t("18:00")]),
            Some(11 * 3600)
        );
        assert_eq!(secs_until_next(0, &[]), None);
        assert!(local_seconds_of_day() < 86_400);
    }
}
