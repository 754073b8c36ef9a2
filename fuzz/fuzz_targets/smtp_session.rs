//! The SMTP server session (smtp::session, sans-I/O) fed arbitrary
//! bytes in arbitrary chunks, driven as mail/listener.rs drives it.
//!
//! Input: byte 0 sets the session and the caller's verdicts (TLS and
//! AUTH offered, submission port, gate refusals, spool failure, AUTH
//! verdict), byte 1 the chunk size, byte 2 the message size limit; the
//! rest is what the client sends.
//!
//! Checked: NeedInput means every byte was consumed; no event loop
//! without progress; DataStart, Body and MessageEnd come in order, one
//! message at a time; a body chunk is at most BODY_CHUNK; an accepted
//! message is within the size limit, has no bare CR or LF, and its
//! envelope has 1..=max_recipients valid recipients (and, on the
//! submission port, TLS and AUTH came first); AUTH and STARTTLS happen
//! only when offered; every reply line is well-formed and at most 512
//! octets; the error delay stays within its bound; a closed session
//! stays closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::smtp::Reply;
use pocobelle::smtp::command::{self, Domain, Mailbox, ReversePath};
use pocobelle::smtp::session::{
    AuthVerdict, BODY_CHUNK, Envelope, Event, Gate, MAX_DELAY_STEPS, Session, Settings,
};
use pocobelle_fuzz::check_smtp_replies;
use std::time::Duration;

struct FuzzGate {
    mail_4xx: bool,
    rcpt_5xx: bool,
}

impl Gate for FuzzGate {
    fn mail(&mut self, _: &ReversePath, _: Option<u64>, _: bool) -> Result<(), Reply> {
        if self.mail_4xx {
            return Err(Reply::new(452, "4.3.1", "Insufficient system storage"));
        }
        Ok(())
    }
    fn rcpt(&mut self, to: &Mailbox, authenticated: bool) -> Result<Vec<Mailbox>, Reply> {
        if self.rcpt_5xx && !authenticated && to.domain != Domain::Name("home.arpa".into()) {
            return Err(Reply::new(554, "5.7.1", "Relay access denied"));
        }
        Ok(vec![to.clone()])
    }
}

fn no_bare_cr_lf(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => body.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && body[i - 1] == b'\r',
        _ => true,
    })
}

fn check_envelope(env: &Envelope, settings: &Settings) {
    assert!(!env.rcpts.is_empty() && env.rcpts.len() <= settings.max_recipients);
    for m in env.rcpts.iter().chain(match &env.from {
        ReversePath::Mailbox(m) => Some(m),
        ReversePath::Null => None,
    }) {
        assert!(m.local.len() <= command::MAX_LOCAL_PART, "{m}");
        // What the spool stores (the text) reads back as the same mailbox.
        assert_eq!(command::parse_mailbox(&m.to_string()).as_ref(), Ok(m));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (flags, split, size_byte, input) = (data[0], data[1], data[2], &data[3..]);
    let settings = Settings {
        hostname: "mx.test".into(),
        max_message_bytes: 64 + size_byte as u64 * 64,
        max_recipients: 3,
        max_errors: 5,
        error_delay: Duration::from_millis(100),
        tls_available: flags & 1 != 0,
        auth_available: flags & 2 != 0,
        auth_required: flags & 4 != 0,
        max_hops: 2,
    };
    let mut gate = FuzzGate {
        mail_4xx: flags & 8 != 0,
        rcpt_5xx: flags & 16 != 0,
    };
    let store_fails = flags & 32 != 0;
    let verdict = match flags >> 6 {
        0 => AuthVerdict::Rejected,
        1 => AuthVerdict::Unavailable,
        _ => AuthVerdict::Accepted,
    };
    let mut s = Session::new(settings.clone());
    s.greet();
    let mut out = s.take_output();
    let mut delay = Duration::ZERO;
    let mut current: Option<(Envelope, Vec<u8>)> = None;
    let mut closed = false;
    let mut stored = 0;
    'feed: for piece in input.chunks(split as usize + 1) {
        let mut pos = 0;
        let mut idle = 0;
        loop {
            let (n, ev) = s.advance(&piece[pos..], &mut gate);
            assert!(n <= piece.len() - pos);
            pos += n;
            idle = if n == 0 { idle + 1 } else { 0 };
            assert!(idle < 64, "no progress: {ev:?}");
            match ev {
                Event::NeedInput => {
                    assert_eq!(pos, piece.len(), "NeedInput with input left");
                    delay += s.take_delay();
                    out.extend(s.take_output());
                    break;
                }
                Event::DataStart(env) => {
                    assert!(current.is_none(), "DataStart inside a message");
                    check_envelope(&env, &settings);
                    if settings.auth_required {
                        assert!(s.is_tls() && s.is_authenticated());
                    }
                    current = Some((env, Vec::new()));
                }
                Event::Body => {
                    let chunk = s.take_body();
                    assert!(chunk.len() <= BODY_CHUNK);
                    current
                        .as_mut()
                        .expect("Body outside a message")
                        .1
                        .extend(chunk);
                }
                Event::MessageEnd => {
                    let (_, mut body) = current.take().expect("MessageEnd outside a message");
                    let chunk = s.take_body();
                    assert!(chunk.len() <= BODY_CHUNK);
                    body.extend(chunk);
                    assert!(body.len() as u64 <= settings.max_message_bytes);
                    assert!(no_bare_cr_lf(&body), "bare CR or LF in an accepted body");
                    stored += 1;
                    s.message_stored(if store_fails {
                        Err(Reply::new(452, "4.3.1", "Insufficient system storage"))
                    } else {
                        Ok(format!("M{stored}"))
                    });
                }
                Event::MessageAborted => {
                    current = None;
                    let _ = s.take_body();
                }
                Event::StartTls => {
                    assert!(settings.tls_available && !s.is_tls());
                    out.extend(s.take_output());
                    s.tls_started();
                }
                Event::Authenticate(c) => {
                    assert!(settings.auth_available && s.is_tls() && !s.is_authenticated());
                    assert!(!c.user.is_empty() && !c.password.is_empty());
                    s.auth_checked(verdict);
                }
                Event::Etrn(d) => assert!(!d.is_empty()),
                Event::Sender { .. } => assert!(s.has_output(), "MAIL's 250 is queued"),
                Event::Close => {
                    closed = true;
                    break 'feed;
                }
            }
        }
    }
    delay += s.take_delay();
    out.extend(s.take_output());
    check_smtp_replies(&out);
    let bound = settings.error_delay * MAX_DELAY_STEPS * (settings.max_errors + 1);
    assert!(delay <= bound, "{delay:?} of error delay");
    if closed {
        let (n, ev) = s.advance(b"NOOP\r\n", &mut gate);
        assert_eq!((n, ev), (0, Event::Close));
        assert!(!s.has_output());
    }
});
