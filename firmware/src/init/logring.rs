//! The bounded in-memory log that `pocobelle log` prints: init's own
//! records and every line the services write to stdout/stderr (which init
//! reads from a pipe per service and also copies to the console). Bounded
//! by [`RING_LINES`] and [`RING_BYTES`]; the oldest lines go first. It
//! never writes to flash itself: each line is also handed to
//! `init::logfile`, which batches it for the optional log file.

use std::collections::VecDeque;
use std::sync::Mutex;

/// At most this many lines are kept.
pub const RING_LINES: usize = 512;
/// At most this many bytes of text are kept (fits one control frame).
pub const RING_BYTES: usize = 48 * 1024;
/// A service line longer than this is cut (as `logging::MAX_LINE_BYTES`).
pub const MAX_LINE: usize = crate::logging::MAX_LINE_BYTES;

#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    pub const fn new() -> LogRing {
        LogRing {
            lines: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn push(&mut self, line: &str) {
        let mut line = line.trim_end_matches('\n');
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line = &line[..cut];
        }
        self.bytes += line.len();
        self.lines.push_back(line.to_string());
        while self.lines.len() > RING_LINES || self.bytes > RING_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Init's ring (one per process; only PID 1 fills it).
pub static RING: Mutex<LogRing> = Mutex::new(LogRing::new());

/// Adds a line to [`RING`] (a poisoned lock is taken over: logging must
/// never panic PID 1).
pub fn record(line: &str) {
    {
        let mut r = RING.lock().unwrap_or_else(|p| p.into_inner());
        r.push(line);
    }
    crate::init::logfile::record(line);
}

/// A service's output line as the console and the ring show it, with the
/// service's name once. A pocobelle applet's own logger already starts
/// its lines with its name (`dns: INFO: ...`), so a line that starts with
/// `<name>: ` is taken as it is; any other line (a shell script, udhcpc)
/// gets the prefix. Without this a service's records read
/// `dns: dns: INFO: ...`.
pub fn service_line(name: &str, line: &str) -> String {
    let own = line
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with(": "));
    if own {
        line.to_string()
    } else {
        format!("{name}: {line}")
    }
}

/// Splits service output into lines: bytes come in as read from the pipe,
/// complete lines come out; a partial line waits for more, bounded by
/// [`MAX_LINE`] (a longer one is emitted in pieces).
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(&str)) {
        for &b in data {
            if b == b'\n' {
                emit(&String::from_utf8_lossy(&self.buf));
                self.buf.clear();
            } else {
                self.buf.push(b);
                if self.buf.len() >= MAX_LINE {
                    emit(&String::from_utf8_lossy(&self.buf));
                    self.buf.clear();
                }
            }
        }
    }

    /// Emits what is left (at EOF).
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            emit(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_line_carries_its_name_once() {
        assert_eq!(
            service_line("dns", "dns: INFO: snapshot loaded"),
            "dns: INFO: snapshot loaded"
        );
        assert_eq!(
            service_line("mail", "mail: INFO: mail: listening on 0.0.0.0:25 (Smtp)"),
            "mail: INFO: mail: listening on 0.0.0.0:25 (Smtp)"
        );
        assert_eq!(
            service_line("checker", "CHECK: done"),
            "checker: CHECK: done"
        );
        assert_eq!(
            service_line("dhcp", "udhcpc: lease obtained"),
            "dhcp: udhcpc: lease obtained"
        );
        // Only the name followed by ": " counts as the prefix.
        assert_eq!(service_line("dns", "dnsmasq: x"), "dns: dnsmasq: x");
        assert_eq!(service_line("dns", "dns:x"), "dns: dns:x");
        assert_eq!(service_line("dns", ""), "dns: ");
    }

    #[test]
    fn ring_keeps_the_newest_within_bounds() {
        let mut r = LogRing::new();
        for i in 0..2000 {
            r.push(&format!("line {i} {}", "x".repeat(i % 300)));
        }
        let lines = r.lines();
        assert!(lines.len() <= RING_LINES);
        assert!(lines.iter().map(|l| l.len()).sum::<usize>() <= RING_BYTES);
        assert!(lines.last().unwrap().starts_with("line 1999 "));
        r.push(&"y".repeat(10 * MAX_LINE));
        assert_eq!(r.lines().last().unwrap().len(), MAX_LINE);
    }

    #[test]
    fn splitter_joins_and_bounds_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"hel", |l| out.push(l.to_string()));
        s.feed(b"lo\nwor", |l| out.push(l.to_string()));
        s.feed(b"ld\n\n", |l| out.push(l.to_string()));
        s.feed(b"tail", |l| out.push(l.to_string()));
        s.finish(|l| out.push(l.to_string()));
        assert_eq!(out, ["hello", "world", "", "tail"]);
        let mut out = Vec::new();
        s.feed(&vec![b'a'; MAX_LINE * 2 + 5], |l| out.push(l.len()));
        assert_eq!(out, [MAX_LINE, MAX_LINE]);
    }

    #[test]
    fn splitter_fuzz_never_panics() {
        let mut x: u64 = 0x5151_7777;
        let mut s = LineSplitter::default();
        for _ in 0..3000 {
            let n = (x % 64) as usize;
            let mut b = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(if x.is_multiple_of(7) { b'\n' } else { x as u8 });
            }
            s.feed(&b, |l| assert!(l.len() <= MAX_LINE * 4));
        }
    }
}
