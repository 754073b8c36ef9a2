//! The optional log file on the data partition (`[init.logfile]`): the
//! lines of init's log ring also gathered in a bounded batch and appended
//! to `<data_dir>/<file>` in few large writes, because flash wears with
//! every small one. The batch is written when it reaches
//! `batch_kib`, when its oldest line is `flush_secs` old, and at shutdown
//! before the final sync; past `max_kib` the file is renamed to
//! `<file>.1` (one old file kept) and a new one started. The policy
//! ([`Batch`]) is pure and unit-tested; [`append`] does the I/O. A write
//! error (full disk) is reported to the caller, which logs it on the
//! console; it never stops init and loses at most what exceeds
//! [`MAX_PENDING_BYTES`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Text kept in memory while waiting for a write (or after failed ones):
/// beyond it the oldest lines are dropped and counted.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// When a batch is written and how large the file may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Write when this many bytes are pending.
    pub batch_bytes: usize,
    /// Write when the oldest pending line is this old (ms).
    pub interval_ms: u64,
    /// Rotate before a write would take the file past this size.
    pub max_file_bytes: u64,
}

/// Lines waiting to be written, oldest first, at most
/// [`MAX_PENDING_BYTES`].
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// When the oldest pending line came in (ms, monotonic).
    oldest_ms: Option<u64>,
    /// Lines dropped since the last write because the batch was full.
    dropped: u64,
}

impl Batch {
    /// Adds one line (a newline is appended). A full batch drops its
    /// oldest lines to make room, and counts them.
    pub fn push(&mut self, line: &str, now_ms: u64) {
        let line = line.trim_end_matches('\n');
        // One record, one line in the file (a panic message has several).
        let joined;
        let line = if line.contains('\n') {
            joined = line.replace('\n', " ");
            joined.as_str()
        } else {
            line
        };
        let need = line.len() + 1;
        if need > MAX_PENDING_BYTES {
            self.dropped += 1;
            return;
        }
        self.make_room(need);
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.oldest_ms.get_or_insert(now_ms);
    }

    fn make_room(&mut self, need: usize) {
        while self.buf.len() + need > MAX_PENDING_BYTES && !self.buf.is_empty() {
            let cut = self
                .buf
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.buf.len(), |p| p + 1);
            self.buf.drain(..cut);
            self.dropped += 1;
        }
    }

    /// Bytes pending.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.dropped == 0
    }

    /// Whether the batch should be written now.
    pub fn due(&self, p: &Policy, now_ms: u64) -> bool {
        if self.is_empty() {
            return false;
        }
        self.buf.len() >= p.batch_bytes
            || self
                .oldest_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= p.interval_ms)
    }

    /// Takes everything pending (with a note of dropped lines first).
    pub fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 64);
        if self.dropped > 0 {
            out.extend_from_slice(
                format!(
                    "logfile: {} line(s) dropped (more than {MAX_PENDING_BYTES} bytes pending)\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        out.append(&mut self.buf);
        self.dropped = 0;
        self.oldest_ms = None;
        out
    }

    /// Puts back what a failed write took (older than what came since),
    /// within the bound; `now_ms` restarts the interval so that a full
    /// disk is retried once per interval, not on every line.
    pub fn put_back(&mut self, mut data: Vec<u8>, now_ms: u64) {
        let newer = std::mem::take(&mut self.buf);
        let dropped = self.dropped;
        self.dropped = 0;
        self.buf = Vec::new();
        data.extend_from_slice(&newer);
        // Keep the newest MAX_PENDING_BYTES, cut at a line start.
        if data.len() > MAX_PENDING_BYTES {
            let from = data.len() - MAX_PENDING_BYTES;
            let cut = data[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |p| from + p + 1);
            self.dropped += data[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
            data.drain(..cut);
        }
        self.buf = data;
        self.dropped += dropped;
        self.oldest_ms = if self.is_empty() { None } else { Some(now_ms) };
    }
}

/// Whether appending `add` bytes to a file of `size` bytes must first
/// rotate it (a non-empty file that would pass the bound).
pub fn must_rotate(size: u64, add: u64, max_file_bytes: u64) -> bool {
    size > 0 && size + add > max_file_bytes
}

/// The old file kept after a rotation: `<file>.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// Appends `data` to `path` in one write, rotating first when needed.
/// Returns whether it rotated.
pub fn append(path: &Path, data: &[u8], max_file_bytes: u64) -> std::io::Result<bool> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let rotated = must_rotate(size, data.len() as u64, max_file_bytes);
    if rotated {
        std::fs::rename(path, rotated_path(path))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(data)?;
    Ok(rotated)
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The file and its pending batch while the log file is enabled.
#[derive(Debug)]
pub struct LogFile {
    pub path: PathBuf,
    pub policy: Policy,
    pub batch: Batch,
}

/// Init's log file (only PID 1 enables it).
pub static FILE: Mutex<Option<LogFile>> = Mutex::new(None);

/// Milliseconds of a monotonic clock (the batch's age).
pub fn mono_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Adds a line to the batch when the log file is enabled (a poisoned lock
/// is taken over: logging must never panic PID 1).
pub fn record(line: &str) {
    let mut g = FILE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = g.as_mut() {
        let stamped = format!("{} {line}", utc_stamp(crate::init::clock::now_secs()));
        f.batch.push(&stamped, mono_ms());
    }
}

/// Enables the log file, seeded with `earlier` (the ring's lines so far:
/// the boot messages).
pub fn enable(path: PathBuf, policy: Policy, earlier: &[String]) {
    let now = mono_ms();
    let stamp = utc_stamp(crate::init::clock::now_secs());
    let mut batch = Batch::default();
    for l in earlier {
        batch.push(&format!("{stamp} {l}"), now);
    }
    let mut g = FILE.lock().unwrap_or_else(|p| p.into_inner());
    *g = Some(LogFile {
        path,
        policy,
        batch,
    });
}

/// What a flush did, for the caller to log (outside the lock).
pub enum Flushed {
    Nothing,
    Wrote {
        path: PathBuf,
        bytes: usize,
        rotated: bool,
    },
    Failed {
        path: PathBuf,
        error: std::io::Error,
        kept: usize,
    },
}

/// Writes the batch when due (or always with `force`); `disable` turns the
/// log file off afterwards (shutdown). The lock is not held during the
/// write, so lines logged meanwhile go to the next batch.
pub fn flush(force: bool, disable: bool) -> Flushed {
    let now = mono_ms();
    let (path, max, data) = {
        let mut g = FILE.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = g.as_mut() else {
            return Flushed::Nothing;
        };
        let write = if force {
            !f.batch.is_empty()
        } else {
            f.batch.due(&f.policy, now)
        };
        if !write {
            if disable {
                *g = None;
            }
            return Flushed::Nothing;
        }
        (f.path.clone(), f.policy.max_file_bytes, f.batch.take())
    };
    let bytes = data.len();
    let r = append(&path, &data, max);
    let mut g = FILE.lock().unwrap_or_else(|p| p.into_inner());
    let out = match r {
        Ok(rotated) => Flushed::Wrote {
            path,
            bytes,
            rotated,
        },
        Err(error) => {
            let kept = match g.as_mut() {
                Some(f) if !disable => {
                    f.batch.put_back(data, now);
                    f.batch.len()
                }
                _ => 0,
            };
            Flushed::Failed { path, error, kept }
        }
    };
    if disable {
        *g = None;
    }
    out
}

/// From PID 1's panic hook, before it re-executes init: writes what is
/// pending and `message`, so that the file shows what led to the panic.
/// It never waits for the lock (the panic may have happened while it was
/// held) and ignores errors.
pub fn flush_on_panic(message: &str) {
    let Ok(mut g) = FILE.try_lock() else {
        return;
    };
    let Some(f) = g.as_mut() else {
        return;
    };
    let stamped = format!("{} {message}", utc_stamp(crate::init::clock::now_secs()));
    f.batch.push(&stamped, mono_ms());
    let data = f.batch.take();
    let _ = append(&f.path, &data, f.policy.max_file_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        batch_bytes: 1000,
        interval_ms: 60_000,
        max_file_bytes: 4000,
    };

    #[test]
    fn written_in_batches_not_per_line() {
        // 100-byte lines, one per second: a write every 10 lines (the
        // size bound), never one per line.
        let mut b = Batch::default();
        let mut writes = Vec::new();
        for i in 0..100u64 {
            b.push(&"x".repeat(99), i * 1000);
            if b.due(&P, i * 1000) {
                writes.push(b.take().len());
            }
        }
        assert_eq!(writes.len(), 10, "{writes:?}");
        assert!(writes.iter().all(|&n| n >= P.batch_bytes));
    }

    #[test]
    fn a_quiet_log_is_written_after_the_interval() {
        let mut b = Batch::default();
        assert!(!b.due(&P, 0), "nothing pending, nothing to write");
        b.push("init: one line", 5_000);
        assert!(!b.due(&P, 5_000 + P.interval_ms - 1));
        assert!(b.due(&P, 5_000 + P.interval_ms));
        assert_eq!(b.take(), b"init: one line\n");
        assert!(!b.due(&P, 10 * P.interval_ms));
        b.push("init: PANIC: panicked at x.rs:1:\nthe reason\n", 0);
        assert_eq!(b.take(), b"init: PANIC: panicked at x.rs:1: the reason\n");
    }

    #[test]
    fn pending_text_is_bounded_and_drops_are_reported() {
        let mut b = Batch::default();
        let line = "y".repeat(1023);
        for i in 0..1000 {
            b.push(&format!("{i:04}{line}"), 0);
        }
        assert!(b.len() <= MAX_PENDING_BYTES);
        let out = String::from_utf8(b.take()).unwrap();
        assert!(out.starts_with("logfile: "), "{}", &out[..80]);
        assert!(out.contains(" line(s) dropped"));
        assert!(
            out.trim_end().ends_with(&format!("0999{line}")),
            "newest kept"
        );
    }

    #[test]
    fn a_failed_write_keeps_the_lines_in_order_and_retries_later() {
        let mut b = Batch::default();
        b.push("old 1", 0);
        b.push("old 2", 0);
        let taken = b.take();
        b.push("new", 100);
        b.put_back(taken, 200);
        assert!(!b.due(&P, 200), "not retried at once");
        assert!(b.due(&P, 200 + P.interval_ms));
        assert_eq!(b.take(), b"old 1\nold 2\nnew\n");
        // A huge backlog put back keeps only the newest bytes.
        let big = format!("{}\n", "z".repeat(1000)).repeat(400).into_bytes();
        b.put_back(big, 0);
        assert!(b.len() <= MAX_PENDING_BYTES);
        assert!(String::from_utf8(b.take()).unwrap().contains("dropped"));
    }

    #[test]
    fn rotation_keeps_one_old_file() {
        assert!(
            !must_rotate(0, 10_000, 4000),
            "an empty file takes a big batch"
        );
        assert!(!must_rotate(3000, 1000, 4000));
        assert!(must_rotate(3001, 1000, 4000));
        let dir = std::env::temp_dir().join(format!("pocobelle-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pocobelle.log");
        assert!(!append(&path, &[b'a'; 3000], 4000).unwrap());
        assert!(!append(&path, &[b'b'; 1000], 4000).unwrap());
        assert!(append(&path, &[b'c'; 10], 4000).unwrap());
        assert!(append(&path, &[b'd'; 3995], 4000).unwrap());
        let old = std::fs::read(rotated_path(&path)).unwrap();
        assert_eq!(old, [b'c'; 10], "only one old file, the previous one");
        assert_eq!(std::fs::read(&path).unwrap(), [b'd'; 3995]);
        // A write error (here: the directory is gone) is returned, not a panic.
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(append(&path, b"x\n", 4000).is_err());
    }

    #[test]
    fn a_write_error_is_reported_and_the_lines_survive_until_it_clears() {
        // The only test that uses the global FILE.
        let dir = std::env::temp_dir().join(format!("pocobelle-logflush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("pocobelle.log");
        enable(path.clone(), P, &["init: boot line".to_string()]);
        record("dns: later line");
        assert!(
            matches!(flush(false, false), Flushed::Nothing),
            "not due yet"
        );
        // The directory does not exist: the write fails, nothing is lost.
        match flush(true, false) {
            Flushed::Failed { kept, .. } => assert!(kept > 0),
            _ => panic!("expected a failure"),
        }
        std::fs::create_dir_all(&dir).unwrap();
        record("init: after the error");
        match flush(true, true) {
            Flushed::Wrote { bytes, .. } => assert!(bytes > 0),
            _ => panic!("expected a write"),
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // (Other tests running meanwhile may add their own lines.)
        let pos = |suffix: &str| {
            text.lines()
                .position(|l| l.ends_with(suffix) && l.contains("Z "))
                .unwrap_or_else(|| panic!("{suffix:?} missing in {text}"))
        };
        assert!(pos("init: boot line") < pos("dns: later line"), "{text}");
        assert!(
            pos("dns: later line") < pos("init: after the error"),
            "{text}"
        );
        // Disabled at shutdown: later lines are not kept.
        record("init: Poweroff now");
        assert!(matches!(flush(true, false), Flushed::Nothing));
        // A panic writes what is pending at once.
        enable(path.clone(), P, &[]);
        record("init: just before the panic");
        flush_on_panic("init: PANIC: test");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("Poweroff now"), "{text}");
        let tail: Vec<&str> = text.lines().rev().take(2).collect();
        assert!(tail[0].ends_with("Z init: PANIC: test"), "{text}");
        assert!(text.contains("Z init: just before the panic"), "{text}");
        *FILE.lock().unwrap() = None;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_stamp(1_796_031_899), "2026-11-30T09:44:59Z");
    }
}
