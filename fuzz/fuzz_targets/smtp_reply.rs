//! What a next-hop server sends the delivery client (mail::client):
//! replies, cut into lines the way the client reads them (up to LF, at
//! most MAX_REPLY_LINE bytes), the EHLO extensions in them, and the
//! route credentials file format. A reply has a three-digit code, at
//! most MAX_REPLY_LINES lines, and its text is its lines' text joined.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::mail::client::{
    ClientError, Credentials, Extensions, MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyLines,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut reply = ReplyLines::default();
    let mut n_lines = 0;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(MAX_REPLY_LINE)];
        let len = window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1);
        let (line, tail) = rest.split_at(len);
        rest = tail;
        n_lines += 1;
        match reply.push(line) {
            Ok(None) => assert!(n_lines < MAX_REPLY_LINES),
            Ok(Some((r, lines))) => {
                assert!(r.code <= 999);
                assert!(lines.len() == n_lines && n_lines <= MAX_REPLY_LINES);
                // The lines' text joined by spaces (empty leading lines
                // add nothing).
                assert_eq!(r.text.trim_start(), lines.join(" ").trim_start());
                // (each invalid byte may become a 3-byte U+FFFD)
                assert!(lines.iter().all(|l| l.len() <= 3 * MAX_REPLY_LINE));
                let x = Extensions::parse(&lines);
                if x.auth_plain || x.auth_login {
                    assert!(
                        lines
                            .iter()
                            .skip(1)
                            .any(|l| l.to_ascii_uppercase().starts_with("AUTH"))
                    );
                }
                let _ = (r.is_ok(), r.is_permanent(), r.to_string());
                reply = ReplyLines::default();
                n_lines = 0;
            }
            Err(ClientError::Malformed) => {
                reply = ReplyLines::default();
                n_lines = 0;
            }
            Err(e) => panic!("a reply line gave {e}"),
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(c) = Credentials::parse(text)
    {
        assert!(!c.user.is_empty() && !c.password.is_empty());
        assert!(!c.user.contains(':') && !c.user.contains('\n'));
    }
});
