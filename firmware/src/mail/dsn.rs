//! Delivery status notifications (RFC 3464 in a multipart/report, RFC
//! 6522): the text the scheduler queues to a sender whose mail failed or
//! is delayed. It owns the rendering only: a human part, the
//! machine-readable `message/delivery-status` part (with the message's
//! real `Arrival-Date`), and the original header section as
//! `text/rfc822-headers`, bounded by [`MAX_DSN_HEADERS`], so the sender can
//! tell which mail it was. Pure: the caller reads the spool and queues
//! the result; never any I/O here.

use std::sync::atomic::{AtomicU32, Ordering};

use super::listener::rfc5322_date;

/// At most this much of the original header section is returned (cut at
/// a line end).
pub const MAX_DSN_HEADERS: usize = 16 * 1024;

/// Which kind of DSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// The recipients failed for good (Action: failed).
    Failed,
    /// The recipients are still being retried until `until` (Unix
    /// seconds) (Action: delayed).
    Delayed { until: u64 },
}

/// One DSN to render.
#[derive(Debug)]
pub struct Dsn<'a> {
    /// This board's host name (Reporting-MTA, From, Message-ID).
    pub host: &'a str,
    /// The queue ID of the original message.
    pub id: u64,
    /// The original sender, to whom the DSN goes.
    pub to: &'a str,
    /// (recipient, reason) pairs.
    pub rcpts: &'a [(String, String)],
    /// Now (Date).
    pub now: u64,
    /// When the original message was received (Arrival-Date).
    pub arrival: u64,
    /// The start of the original message (its header section is taken
    /// from it, up to [`MAX_DSN_HEADERS`]).
    pub original: &'a [u8],
    pub kind: DsnKind,
}

/// The header section at the start of `message`: up to the empty line
/// that ends it (excluded), cut at the last line end within
/// [`MAX_DSN_HEADERS`]; CRLF line ends.
pub fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    let h = &message[..end];
    if h.len() <= MAX_DSN_HEADERS && (h.ends_with(b"\r\n") || h.is_empty()) {
        return h;
    }
    let within = &h[..h.len().min(MAX_DSN_HEADERS)];
    match within.windows(2).rposition(|w| w == b"\r\n") {
        Some(p) => &within[..p + 2],
        None => &[],
    }
}

/// DSNs made by this process so far: keeps two Message-IDs of one second
/// apart.
// (32 bits: ARMv5 has no 64-bit atomics; with the time, pid and message
// id beside it, a wrap cannot repeat an id.)
static SERIAL: AtomicU32 = AtomicU32::new(0);

impl Dsn<'_> {
    /// The Message-ID of this DSN.
    fn message_id(&self) -> String {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let k = match self.kind {
            DsnKind::Failed => 'F',
            DsnKind::Delayed { .. } => 'D',
        };
        format!(
            "<{:016X}.{k}{}.{}.{n}@{}>",
            self.id,
            self.now,
            std::process::id(),
            self.host
        )
    }

    /// The whole DSN message, CRLF line ends.
    pub fn render(&self) -> Vec<u8> {
        let (host, id) = (self.host, self.id);
        let boundary = format!("{id:016X}/{host}");
        let date = rfc5322_date(self.now);
        let (subject, intro) = match self.kind {
            DsnKind::Failed => (
                "Undelivered Mail Returned to Sender".to_string(),
                format!("Your message {id:016X} could not be delivered to these recipients:"),
            ),
            DsnKind::Delayed { until } => (
                "Delayed Mail (still being retried)".to_string(),
                format!(
                    "Your message {id:016X} has not been delivered yet to these recipients.\r\n\
                     It is still queued and will be retried until {}; you need not\r\n\
                     send it again. This is the only warning you will get about it.",
                    rfc5322_date(until)
                ),
            ),
        };
        let mut s = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{to}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: {mid}\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             {intro}\r\n\r\n",
            to = self.to,
            mid = self.message_id(),
        );
        for (a, why) in self.rcpts {
            s.push_str(&format!("  <{a}>: {why}\r\n"));
        }
        s.push_str(&format!(
            "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {host}\r\nArrival-Date: {}\r\n",
            rfc5322_date(self.arrival)
        ));
        for (a, why) in self.rcpts {
            let class = match self.kind {
                DsnKind::Failed => '5',
                DsnKind::Delayed { .. } => '4',
            };
            let code = why
                .split_whitespace()
                .nth(1)
                .filter(|c| c.starts_with(class) && c.matches('.').count() == 2)
                .unwrap_or(if class == '5' { "5.0.0" } else { "4.0.0" });
            let why: String = why.chars().filter(|c| !c.is_control()).collect();
            match self.kind {
                DsnKind::Failed => s.push_str(&format!(
                    "\r\nFinal-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: {code}\r\nDiagnostic-Code: smtp; {why}\r\n"
                )),
                DsnKind::Delayed { until } => {
                    s.push_str(&format!(
                        "\r\nFinal-Recipient: rfc822; {a}\r\nAction: delayed\r\nStatus: {code}\r\nWill-Retry-Until: {}\r\n",
                        rfc5322_date(until)
                    ));
                    if !why.is_empty() {
                        s.push_str(&format!("Diagnostic-Code: smtp; {why}\r\n"));
                    }
                }
            }
        }
        let headers = header_section(self.original);
        s.push_str(&format!(
            "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers{}\r\n\r\n",
            if headers.is_ascii() {
                ""
            } else {
                "\r\nContent-Transfer-Encoding: 8bit"
            }
        ));
        let mut out = s.into_bytes();
        out.extend_from_slice(headers);
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"Received: from c.test\r\n\tby mx.test; Thu, 1 Jan 1970 00:00:00 +0000\r\nSubject: the one that bounced\r\nMessage-ID: <orig@b.test>\r\n\r\nbody text stays out\r\n";

    fn failed(original: &[u8]) -> Vec<u8> {
        Dsn {
            host: "mx.test",
            id: 1,
            to: "a@b.test",
            rcpts: &[("u@x.test".into(), "550 5.1.1 no such user".into())],
            now: 86_400,
            arrival: 3_600,
            original,
            kind: DsnKind::Failed,
        }
        .render()
    }

    #[test]
    fn dsn_names_recipient_status_arrival_and_the_original() {
        let b = String::from_utf8(failed(ORIGINAL)).unwrap();
        assert!(b.contains("Final-Recipient: rfc822; u@x.test\r\n"));
        assert!(b.contains("Status: 5.1.1\r\n"));
        assert!(b.contains("report-type=delivery-status"));
        // The arrival, not now.
        assert!(
            b.contains("Arrival-Date: Thu, 1 Jan 1970 01:00:00 +0000\r\n"),
            "{b}"
        );
        assert!(
            b.contains("Date: Fri, 2 Jan 1970 00:00:00 +0000\r\n"),
            "{b}"
        );
        assert!(
            b.contains("\r\nMessage-ID: <0000000000000001.F86400."),
            "{b}"
        );
        assert!(b.ends_with(
            "Content-Type: text/rfc822-headers\r\n\r\nReceived: from c.test\r\n\tby mx.test; Thu, 1 Jan 1970 00:00:00 +0000\r\nSubject: the one that bounced\r\nMessage-ID: <orig@b.test>\r\n\r\n--0000000000000001/mx.test--\r\n"
        ), "{b}");
        assert!(!b.contains("body text stays out"));
        assert!(!b.contains("\n\n") && !b.replace("\r\n", "").contains('\n'));
        // Two DSNs of one second still differ.
        let again = String::from_utf8(failed(ORIGINAL)).unwrap();
        let mid = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        };
        assert_ne!(mid(&b), mid(&again));
    }

    #[test]
    fn delayed_dsn() {
        let d = String::from_utf8(
            Dsn {
                host: "mx.test",
                id: 1,
                to: "a@b.test",
                rcpts: &[("u@x.test".into(), "127.0.0.1:25: connection refused".into())],
                now: 0,
                arrival: 0,
                original: ORIGINAL,
                kind: DsnKind::Delayed { until: 432_000 },
            }
            .render(),
        )
        .unwrap();
        assert!(d.contains("Action: delayed\r\n"), "{d}");
        assert!(d.contains("Status: 4.0.0\r\n"));
        assert!(
            d.contains("Will-Retry-Until: Tue, 6 Jan 1970 00:00:00 +0000\r\n"),
            "{d}"
        );
        assert!(d.contains("Subject: Delayed Mail"));
        assert!(d.contains("\r\nMessage-ID: <0000000000000001.D0."));
        assert!(!d.contains("Action: failed"));
        assert!(!d.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn header_section_is_bounded_at_a_line_end() {
        assert_eq!(
            header_section(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: unfinis"), b"A: 1\r\n");
        assert_eq!(header_section(b""), b"");
        let mut big = Vec::new();
        while big.len() < 3 * MAX_DSN_HEADERS {
            big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        big.extend_from_slice(b"\r\nbody");
        let h = header_section(&big);
        assert!(h.len() <= MAX_DSN_HEADERS && h.len() > MAX_DSN_HEADERS - 60);
        assert!(h.ends_with(b"\r\n") && h.starts_with(b"X-Filler"));
        // 8-bit header bytes are declared.
        let d = failed(b"Subject: caf\xe9\r\n\r\n");
        let t = String::from_utf8_lossy(&d);
        assert!(
            t.contains(
                "text/rfc822-headers\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: caf"
            ),
            "{t}"
        );
    }
}
