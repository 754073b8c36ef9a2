//! The SMTP client core's mail transaction (smtp::client::Transaction)
//! driven by arbitrary server replies, as mail/client.rs and sendmail
//! drive it, and its DATA encoder (smtp::client::DataEncoder) fed
//! arbitrary content in arbitrary pieces.
//!
//! Input: byte 0 sets the number of recipients (low 3 bits, 0 to 7) and
//! the policy (bit 3: all or nothing), byte 1 the DATA encoder's piece
//! size, bytes 2-3 the content's length; then the content, then what the
//! server replies.
//!
//! Checked: each command written is one CRLF-terminated line; the
//! transaction ends within recipients + 3 replies, and then every
//! recipient has exactly one outcome; an outcome that reads as
//! delivered (2xx, 3xx) only after the content went out, and only for a
//! recipient whose RCPT was accepted; all or nothing: no content unless
//! every RCPT was accepted; no RSET asked for after the end of the
//! content. The DATA encoding is the same
//! however it is cut, has no bare CR or LF, no lone dot before its end,
//! ends in CRLF.CRLF, and un-stuffing it gives the content with line
//! ends made CRLF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::smtp::client::{
    DataEncoder, MailParams, Next, Policy, ReplyParser, ServerReply, Transaction,
};
use pocobelle_fuzz::Input;

const RCPTS: [&str; 7] = [
    "a@x.test", "b@x.test", "c@y.test", "d@y.test", "e@z.test", "f@z.test", "g@z.test",
];

fn encode(content: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = DataEncoder::default();
    for p in content.chunks(piece.max(1)) {
        e.push(p, &mut out);
    }
    e.finish(&mut out);
    out
}

fn check_data(content: &[u8], piece: usize) {
    let out = encode(content, piece);
    assert_eq!(out, encode(content, content.len().max(1)));
    assert!(out.ends_with(b"\r\n.\r\n") || out == b".\r\n");
    // Lines: CRLF only, no lone dot but the last, un-stuffed = content.
    let body = &out[..out.len() - 3];
    let mut unstuffed = Vec::new();
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(l) = lines.next() {
        if lines.peek().is_none() {
            assert!(l.is_empty(), "content ends with CRLF");
            break;
        }
        let l = l.strip_suffix(b"\r").expect("LF without CR");
        assert!(!l.contains(&b'\r'), "bare CR");
        assert_ne!(l, b".", "a lone dot inside the content");
        let l = if l.first() == Some(&b'.') {
            assert_eq!(l.get(1), Some(&b'.'), "a leading dot not doubled");
            &l[1..]
        } else {
            l
        };
        unstuffed.extend_from_slice(l);
        unstuffed.extend_from_slice(b"\r\n");
    }
    // The content with every line end (CRLF, LF, bare CR) as CRLF.
    let mut want = Vec::new();
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' => {
                want.extend_from_slice(b"\r\n");
                if content.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => want.extend_from_slice(b"\r\n"),
            b => want.push(b),
        }
        i += 1;
    }
    if !want.is_empty() && !want.ends_with(b"\r\n") {
        want.extend_from_slice(b"\r\n");
    }
    assert_eq!(unstuffed, want);
}

fn check_command(out: &[u8]) {
    assert!(out.ends_with(b"\r\n"), "{out:?}");
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "{out:?}");
    assert_eq!(out.iter().filter(|&&b| b == b'\r').count(), 1, "{out:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let setup = input.u8();
    let n = usize::from(setup & 7);
    let policy = if setup & 8 != 0 {
        Policy::AllOrNothing
    } else {
        Policy::PerRecipient
    };
    let piece = usize::from(input.u8()) + 1;
    let len = usize::from(input.u16());
    let content = input.bytes(len);
    check_data(content, piece);
    let mut server = input.rest();

    let rcpts: Vec<(u32, String)> = (0..)
        .zip(RCPTS[..n].iter().map(|a| a.to_string()))
        .collect();
    let mut out = Vec::new();
    let mut t = Transaction::start("s@x.test", MailParams::default(), &rcpts, policy, &mut out)
        .expect("plain addresses");
    let mut parser = ReplyParser::default();
    let mut replies = 0;
    let mut rcpt_ok = vec![false; n];
    let mut last_rcpt: Option<usize> = None;
    let mut body_sent = false;
    loop {
        if !out.is_empty() {
            check_command(&out);
            if let Some(r) = out.strip_prefix(b"RCPT TO:<") {
                let i = RCPTS
                    .iter()
                    .position(|a| r.starts_with(a.as_bytes()))
                    .unwrap();
                last_rcpt = Some(i);
            }
        }
        out.clear();
        // The next reply, or the end of the input.
        let reply: ServerReply = match parser.feed(server) {
            Ok(Some((used, p))) => {
                server = &server[used..];
                p.reply
            }
            _ => return,
        };
        replies += 1;
        assert!(replies <= n + 3, "no end after {replies} replies");
        if let Some(i) = last_rcpt.take() {
            rcpt_ok[i] = reply.is_positive();
        }
        match t.reply(reply, &mut out) {
            Next::Command(next) => t = next,
            Next::Body(next) => {
                assert!(!body_sent);
                assert!(rcpt_ok.iter().any(|&ok| ok));
                if policy == Policy::AllOrNothing {
                    assert!(rcpt_ok.iter().all(|&ok| ok));
                }
                body_sent = true;
                t = next;
            }
            Next::Done(f) => {
                let mut seen = vec![false; n];
                for o in &f.outcomes {
                    let i = o.index as usize;
                    assert!(!seen[i], "two outcomes for one recipient");
                    seen[i] = true;
                    assert!(o.reply.code <= 999, "a recipient left pending");
                    if o.reply.is_ok() {
                        assert!(body_sent && rcpt_ok[i]);
                    }
                }
                assert!(seen.iter().all(|&s| s), "a recipient without outcome");
                if body_sent {
                    assert!(!f.reset);
                }
                return;
            }
        }
    }
});
