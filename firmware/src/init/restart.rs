//! When to restart a service that died: exponential backoff, capped, reset
//! after a stable run; and crash-loop detection (too many deaths within a
//! window), which is reported in the log and in `pocobelle status`. Pure:
//! time comes in as milliseconds since boot. It never gives up on a
//! service: a crash loop is restarted at the capped delay, never hidden.

/// First restart delay (ms).
pub const BASE_DELAY_MS: u64 = 1000;
/// Longest restart delay (ms).
pub const MAX_DELAY_MS: u64 = 60_000;
/// A run this long (ms) counts as stable and resets the backoff.
pub const STABLE_RUN_MS: u64 = 30_000;
/// This many deaths ...
pub const LOOP_DEATHS: usize = 5;
/// ... within this window (ms) is a crash loop.
pub const LOOP_WINDOW_MS: u64 = 120_000;

/// What the supervisor does after a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartDecision {
    /// Restart at this time (ms since boot).
    pub at_ms: u64,
    /// The service is in a crash loop.
    pub crash_loop: bool,
}

/// Per-service restart history (bounded: the last [`LOOP_DEATHS`] deaths).
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    consecutive: u32,
    deaths: heapless::Deque<u64, LOOP_DEATHS>,
}

impl RestartTracker {
    /// Records a death at `now_ms` of a run that started at `started_ms`.
    pub fn on_exit(&mut self, started_ms: u64, now_ms: u64) -> RestartDecision {
        if now_ms.saturating_sub(started_ms) >= STABLE_RUN_MS {
            self.consecutive = 0;
        }
        if self.deaths.is_full() {
            self.deaths.pop_front();
        }
        let _ = self.deaths.push_back(now_ms);
        let crash_loop = self.deaths.is_full()
            && self
                .deaths
                .front()
                .is_some_and(|&first| now_ms - first <= LOOP_WINDOW_MS);
        let shift = self.consecutive.min(16);
        let delay = BASE_DELAY_MS.saturating_mul(1 << shift).min(MAX_DELAY_MS);
        self.consecutive = self.consecutive.saturating_add(1);
        RestartDecision {
            at_ms: now_ms + delay,
            crash_loop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut t = RestartTracker::default();
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            let d = t.on_exit(now, now + 10);
            delays.push(d.at_ms - (now + 10));
            now = d.at_ms;
        }
        assert_eq!(&delays[..7], &[1000, 2000, 4000, 8000, 16000, 32000, 60000]);
        assert!(delays.iter().all(|&d| d <= MAX_DELAY_MS));
    }

    #[test]
    fn stable_run_resets_backoff() {
        let mut t = RestartTracker::default();
        t.on_exit(0, 10);
        t.on_exit(1010, 1020);
        let d = t.on_exit(3020, 3020 + STABLE_RUN_MS);
        assert_eq!(d.at_ms, 3020 + STABLE_RUN_MS + BASE_DELAY_MS);
        assert!(!d.crash_loop);
    }

    #[test]
    fn crash_loop_is_detected_and_cleared() {
        let mut t = RestartTracker::default();
        let mut now = 0;
        let mut flags = Vec::new();
        for _ in 0..LOOP_DEATHS {
            let d = t.on_exit(now, now + 5);
            flags.push(d.crash_loop);
            now = d.at_ms;
        }
        assert_eq!(flags, [false, false, false, false, true]);
        // Deaths spread far apart are not a loop.
        let mut t = RestartTracker::default();
        let mut loops = 0;
        for i in 0..20u64 {
            let start = i * 100_000;
            if t.on_exit(start, start + 40_000).crash_loop {
                loops += 1;
            }
        }
        assert_eq!(loops, 0);
    }
}
