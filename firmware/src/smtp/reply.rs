//! SMTP replies (RFC 5321 section 4.2) with enhanced status codes
//! (RFC 3463). This file owns how a reply is built and put on the wire;
//! it never decides which reply a situation deserves (the session does).

use std::fmt::Write as _;

/// One reply line is cut to this many bytes of text so that a reply always
/// fits the RFC 5321 limit of 512 octets per reply line.
pub const MAX_REPLY_TEXT: usize = 400;

/// A reply: a three-digit code, an optional enhanced status code and one
/// or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (greeting, EHLO, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let mut text: String = text.chars().filter(|c| !c.is_control()).collect::<String>();
            if text.len() > MAX_REPLY_TEXT {
                let mut cut = MAX_REPLY_TEXT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            let mut line = String::new();
            let _ = write!(line, "{}{}", self.code, sep);
            if let Some(e) = self.enhanced {
                let _ = write!(line, "{e} ");
            }
            line.push_str(&text);
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
        }
    }

    /// The wire form as a string (for tests and logs).
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(Reply::new(250, "2.1.0", "Ok").to_wire(), "250 2.1.0 Ok\r\n");
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["host".into(), "SIZE 10".into(), "8BITMIME".into()],
        };
        assert_eq!(r.to_wire(), "250-host\r\n250-SIZE 10\r\n250 8BITMIME\r\n");
    }

    #[test]
    fn control_characters_and_length_are_cut() {
        let r = Reply::new(550, "5.0.0", format!("a\r\nb{}", "x".repeat(1000)));
        let w = r.to_wire();
        assert_eq!(w.matches("\r\n").count(), 1);
        assert!(w.len() <= 512);
    }
}
