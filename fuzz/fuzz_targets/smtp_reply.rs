//! What a next-hop server (or the local router, for `sendmail`) sends the
//! SMTP client: bytes through the client core's reply parser
//! (smtp::client::ReplyParser), the EHLO extensions and enhanced status
//! codes in the replies, and the route credentials file format
//! (mail::client::Credentials).
//!
//! Checked: the replies and the error (if any) are the same whether the
//! bytes come at once, one by one or in chunks of the first byte's size;
//! a reply's `used` count ends on a LF; a reply has at most
//! MAX_REPLY_LINES lines, each at most MAX_REPLY_LINE bytes, and its text
//! is its lines' text joined; an enhanced code agrees with the reply
//! code's class and is the text's first word (numerically: `2.0.050` is
//! 2.0.50; found by this target, the first version compared text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::client::Credentials;
use pocobelle::smtp::client::{
    Extensions, MAX_REPLY_LINE, MAX_REPLY_LINES, Parsed, ReplyError, ReplyParser,
};

/// Every reply in `data`, fed in pieces of `chunk` bytes (0: all at
/// once), up to the first error.
fn parse(data: &[u8], chunk: usize) -> (Vec<Parsed>, Option<ReplyError>) {
    let mut p = ReplyParser::default();
    let mut replies = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = if chunk == 0 {
            rest.len()
        } else {
            chunk.min(rest.len())
        };
        let piece = &rest[..n];
        match p.feed(piece) {
            Ok(Some((used, r))) => {
                assert!(used >= 1 && used <= n);
                assert_eq!(piece[used - 1], b'\n', "a reply ends after its LF");
                replies.push(r);
                rest = &rest[used..];
            }
            Ok(None) => rest = &rest[n..],
            Err(e) => return (replies, Some(e)),
        }
    }
    (replies, None)
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, 0);
    assert_eq!(parse(data, 1), whole);
    if let Some(&b) = data.first() {
        assert_eq!(parse(data, usize::from(b) + 1), whole);
    }
    for Parsed { reply, lines } in &whole.0 {
        assert!(reply.code <= 999);
        assert!(!lines.is_empty() && lines.len() <= MAX_REPLY_LINES);
        // The lines' text joined by spaces (empty leading lines add
        // nothing).
        assert_eq!(reply.text.trim_start(), lines.join(" ").trim_start());
        // (each invalid byte may become a 3-byte U+FFFD)
        assert!(lines.iter().all(|l| l.len() <= 3 * MAX_REPLY_LINE));
        if let Some(e) = reply.enhanced() {
            assert_eq!(u16::from(e.class), reply.code / 100);
            assert!(matches!(e.class, 2 | 4 | 5));
            // The text's first word, numerically (leading zeros are
            // allowed: 1*3DIGIT).
            let word = reply.text.split(' ').next().unwrap_or_default();
            let nums: Vec<u16> = word.split('.').map(|p| p.parse().unwrap()).collect();
            assert_eq!(nums, [u16::from(e.class), e.subject, e.detail]);
        }
        let x = Extensions::parse(lines);
        if x.auth_plain || x.auth_login {
            assert!(
                lines
                    .iter()
                    .skip(1)
                    .any(|l| l.to_ascii_uppercase().starts_with("AUTH"))
            );
        }
        if x.size_limit.is_some() {
            assert!(x.size);
        }
        let _ = (reply.is_ok(), reply.is_positive(), reply.is_permanent());
        let _ = reply.to_string();
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(c) = Credentials::parse(text)
    {
        assert!(!c.user.is_empty() && !c.password.is_empty());
        assert!(!c.user.contains(':') && !c.user.contains('\n'));
    }
});
