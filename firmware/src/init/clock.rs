//! The saved clock: boards without a real-time clock boot in 1970, so the
//! time is saved on the data partition (at shutdown and every
//! `init.clock_save_secs`) and restored at boot when it is later than the
//! current clock. The file holds Unix seconds in decimal; it is written
//! to a temporary name and renamed into place. This module never moves
//! the clock backwards.

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The file under `system.data_dir`.
pub const CLOCK_FILE: &str = "clock";
/// A saved clock file is never longer than this (bytes).
pub const MAX_CLOCK_FILE: usize = 32;

/// Parses a saved clock file: decimal Unix seconds, optional trailing newline.
pub fn parse(text: &str) -> Option<u64> {
    if text.len() > MAX_CLOCK_FILE {
        return None;
    }
    let t = text.strip_suffix('\n').unwrap_or(text);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The time to set, when the saved time is later than the current clock.
pub fn restore_decision(saved: Option<u64>, now: u64) -> Option<u64> {
    saved.filter(|&s| s > now)
}

/// Seconds since the epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Saves `secs` to `dir/clock` (write, fsync, rename, fsync the
/// directory).
pub fn save(dir: &Path, secs: u64) -> io::Result<()> {
    crate::sys::atomic::write_atomic(&dir.join(CLOCK_FILE), format!("{secs}\n").as_bytes())
}

/// Restores the clock from `dir/clock` when it is ahead; returns the time
/// set, if any.
pub fn restore(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(CLOCK_FILE)).ok()?;
    let saved = parse(&text);
    if saved.is_none() {
        log::warn!(
            "clock: {}/{CLOCK_FILE} does not hold a time; ignored",
            dir.display()
        );
    }
    let set = restore_decision(saved, now_secs())?;
    let ts = nix::sys::time::TimeSpec::new(set as i64 as _, 0);
    match nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts) {
        Ok(()) => {
            log::info!(
                "clock: set to the saved time {set} (the board has no battery clock or it is behind)"
            );
            Some(set)
        }
        Err(e) => {
            log::warn!("clock: cannot set the saved time {set}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_only_moves_forward() {
        assert_eq!(restore_decision(Some(2_000), 1_000), Some(2_000));
        assert_eq!(restore_decision(Some(1_000), 2_000), None);
        assert_eq!(restore_decision(Some(1_000), 1_000), None);
        assert_eq!(restore_decision(None, 0), None);
    }

    #[test]
    fn parse_accepts_only_decimal_seconds() {
        assert_eq!(parse("1796000000\n"), Some(1_796_000_000));
        assert_eq!(parse("17"), Some(17));
        assert_eq!(parse(""), None);
        assert_eq!(parse("-5\n"), None);
        assert_eq!(parse("12 34"), None);
        assert_eq!(parse("99999999999999999999999"), None);
    }

    #[test]
    fn parse_fuzz_never_panics_and_round_trips() {
        let mut x: u64 = 88172645463325252;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 40) as usize;
            let s: String = (0..n)
                .map(|i| b"0123456789\n -a"[((x >> (i % 60)) % 14) as usize] as char)
                .collect();
            let _ = parse(&s);
            assert_eq!(parse(&format!("{x}\n")), Some(x));
        }
    }

    #[test]
    fn save_then_parse() {
        let d = std::env::temp_dir().join(format!("pocobelle-clock-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        save(&d, 1_800_000_000).unwrap();
        assert_eq!(
            parse(&std::fs::read_to_string(d.join(CLOCK_FILE)).unwrap()),
            Some(1_800_000_000)
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
