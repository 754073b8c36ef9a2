//! Hop counting (RFC 5321 6.3): counts the `Received:` header fields of
//! a message as its bytes stream by, in the header section only, so that
//! a mail loop is refused at the end of DATA or BDAT (Postfix's
//! `hopcount_limit`). Byte by byte, in constant memory: nothing of the
//! message is kept, which suits the streaming spool writer. It sees
//! unstuffed body bytes (after DATA's dot-unstuffing) and never decides
//! the reply itself.

/// The field name counted, lower case.
const RECEIVED: &[u8] = b"received";

/// Where the counter is within the header section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At the start of a line.
    LineStart,
    /// A CR at the start of a line: the empty line that ends the header
    /// section, if an LF follows.
    EmptyCr,
    /// Reading a field name; `matched` bytes of it match `received` so
    /// far (`None`: it is another name).
    Name { matched: Option<u8> },
    /// Spaces between a field name and its colon (RFC 5322 4.5.3,
    /// obsolete but still seen); `received` tells whose.
    BeforeColon { received: bool },
    /// The rest of a line (a field body or a folded continuation).
    Rest,
    /// The header section is over (an empty line, or a line that is no
    /// header field): nothing more is counted.
    Done,
}

/// Counts `Received:` fields in the header section of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopCounter {
    scan: Scan,
    count: u32,
}

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter::new()
    }
}

impl HopCounter {
    pub fn new() -> HopCounter {
        HopCounter {
            scan: Scan::LineStart,
            count: 0,
        }
    }

    /// `Received:` fields seen so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Feeds the next bytes of the message (CRLF line ends).
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.scan == Scan::Done {
                return;
            }
            self.scan = self.step(b);
        }
    }

    fn step(&mut self, b: u8) -> Scan {
        let is_ftext = |b: u8| (33..=126).contains(&b) && b != b':';
        match (self.scan, b) {
            (Scan::Done, _) => Scan::Done,
            (Scan::LineStart, b'\r') => Scan::EmptyCr,
            (Scan::LineStart, b' ' | b'\t') => Scan::Rest,
            (Scan::LineStart, b) if is_ftext(b) => Scan::Name {
                matched: (b.to_ascii_lowercase() == RECEIVED[0]).then_some(1),
            },
            (Scan::LineStart, _) => Scan::Done,
            (Scan::EmptyCr, _) => Scan::Done,
            (Scan::Name { matched }, b':') => {
                if matched == Some(RECEIVED.len() as u8) {
                    self.count = self.count.saturating_add(1);
                }
                Scan::Rest
            }
            (Scan::Name { matched }, b' ' | b'\t') => Scan::BeforeColon {
                received: matched == Some(RECEIVED.len() as u8),
            },
            (Scan::Name { matched }, b) if is_ftext(b) => Scan::Name {
                matched: matched.and_then(|m| {
                    let next = RECEIVED.get(m as usize)?;
                    (b.to_ascii_lowercase() == *next).then_some(m + 1)
                }),
            },
            (Scan::Name { .. }, _) => Scan::Done,
            (Scan::BeforeColon { received }, b':') => {
                if received {
                    self.count = self.count.saturating_add(1);
                }
                Scan::Rest
            }
            (Scan::BeforeColon { .. }, b' ' | b'\t') => self.scan,
            (Scan::BeforeColon { .. }, _) => Scan::Done,
            (Scan::Rest, b'\n') => Scan::LineStart,
            (Scan::Rest, _) => Scan::Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &[u8]) -> u32 {
        let mut h = HopCounter::new();
        h.feed(text);
        h.count()
    }

    #[test]
    fn counts_received_fields_in_the_header_only() {
        let m = b"Received: from a by b; date\r\n\
                  received: from c\r\n\tby d;\r\n\tdate\r\n\
                  RECEIVED : from e\r\n\
                  X-Received: not this\r\n\
                  Receivedx: nor this\r\n\
                  Subject: Received: nor this\r\n\
                  \r\n\
                  Received: a body line\r\n";
        assert_eq!(count(m), 3);
    }

    #[test]
    fn a_line_that_is_no_field_ends_the_header_section() {
        assert_eq!(count(b"Received: x\r\nnot a header\r\nReceived: y\r\n"), 1);
        assert_eq!(count(b"Received: x\r\n: empty name\r\nReceived: y\r\n"), 1);
        assert_eq!(count(b"Received x\r\nReceived: y\r\n"), 0);
        assert_eq!(count(b""), 0);
    }

    #[test]
    fn any_split_gives_the_same_count() {
        let m = b"Received: a\r\nreceived :b\r\n c\r\nFrom: x\r\n\r\nReceived: body\r\n";
        for split in 1..m.len() {
            let mut h = HopCounter::new();
            for piece in m.chunks(split) {
                h.feed(piece);
            }
            assert_eq!(h.count(), 2, "split {split}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut h = HopCounter::new();
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.feed(&[(x >> 24) as u8]);
        }
    }
}
