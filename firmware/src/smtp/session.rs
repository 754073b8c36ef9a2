//! The server side of one SMTP session as a sans-I/O state machine: bytes
//! in, replies and events out. It owns the protocol states (as types: no
//! MAIL before HELO, no DATA before an accepted RCPT), command-line
//! framing in a fixed buffer, DATA framing (ends only at CRLF.CRLF,
//! dot-unstuffing, bare CR/LF rejected), the size and recipient limits and
//! error accounting. It never touches a socket, a file or the clock: the
//! caller feeds bytes, drains output, and stores body chunks.

use std::time::Duration;

use super::command::{Command, MailParams, Mailbox, ReversePath, SyntaxError};
use super::reply::Reply;

/// Longest command line accepted, CRLF included (RFC 5321 4.5.3.1.4 gives
/// 512; ESMTP parameters may extend it, so we allow a text line's 1000).
pub const MAX_COMMAND_LINE: usize = 1000;

/// Body bytes handed to the caller at a time: no session ever holds more
/// of a message than this.
pub const BODY_CHUNK: usize = 32 * 1024;

/// Each protocol error delays the next reply by this step times the error
/// count, up to this many steps.
pub const MAX_DELAY_STEPS: u32 = 10;

/// Limits and facts the session needs, from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub max_message_bytes: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub error_delay: Duration,
    /// STARTTLS is offered (a certificate is loaded and TLS is not active yet).
    pub tls_available: bool,
}

/// The caller's verdicts on MAIL and RCPT (admission, relay policy). They
/// must be pure decisions: no I/O.
pub trait Gate {
    fn mail(&mut self, from: &ReversePath, size: Option<u64>) -> Result<(), Reply>;
    fn rcpt(&mut self, to: &Mailbox) -> Result<(), Reply>;
}

/// An accepted envelope, handed to the caller when DATA starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub from: ReversePath,
    pub rcpts: Vec<Mailbox>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// All input was consumed: write the pending output (after
    /// [`Session::take_delay`]) and read more.
    NeedInput,
    /// DATA began for this envelope: open a spool message.
    DataStart(Envelope),
    /// A body chunk is ready in [`Session::take_body`].
    Body,
    /// The message ended cleanly; store the last chunk, commit durably,
    /// then call [`Session::message_stored`].
    MessageEnd,
    /// The message ended but is refused (bare CR/LF, too large): discard
    /// what was stored. The reply is already queued.
    MessageAborted,
    /// The client asked for TLS and the 220 is queued: flush, handshake,
    /// then call [`Session::tls_started`].
    StartTls,
    /// ETRN for a domain: start a queue run for it.
    Etrn(String),
    /// Flush the output and close the connection.
    Close,
}

/// Body framing state: where we are relative to line starts and CRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    LineStart,
    Mid,
    Cr,
    Dot,
    DotCr,
}

#[derive(Debug)]
struct Receiving {
    frame: Frame,
    size: u64,
    bare: bool,
    too_big: bool,
}

/// Protocol states; each holds only what is valid at that step.
#[derive(Debug)]
enum State {
    /// Greeting sent, no HELO/EHLO yet.
    Connected,
    /// HELO/EHLO done, no transaction.
    Ready { helo: String },
    /// MAIL accepted; RCPTs being collected.
    Transaction { env: Envelope },
    /// 354 sent; body bytes are framed until CRLF.CRLF.
    Data { env: Envelope, rx: Receiving },
    /// Waiting for the caller to commit the message.
    Committing { helo: String },
    /// The session is over.
    Closed,
}

pub struct Session {
    settings: Settings,
    state: State,
    line: heapless::Vec<u8, MAX_COMMAND_LINE>,
    line_overflow: bool,
    out: Vec<u8>,
    body: Vec<u8>,
    errors: u32,
    delay: Duration,
    tls: bool,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            state: State::Connected,
            line: heapless::Vec::new(),
            line_overflow: false,
            out: Vec::new(),
            body: Vec::with_capacity(BODY_CHUNK),
            errors: 0,
            delay: Duration::ZERO,
            tls: false,
        }
    }

    /// Queues the 220 greeting.
    pub fn greet(&mut self) {
        let r = Reply::plain(220, format!("{} ESMTP Pocobelle", self.settings.hostname));
        r.encode_into(&mut self.out);
    }

    /// Queues a reply for a session refused by the listener and closes.
    pub fn refuse(&mut self, reply: Reply) {
        reply.encode_into(&mut self.out);
        self.state = State::Closed;
    }

    /// Output waiting to be written.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The delay that protocol errors earned, to wait before writing.
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// The unstuffed body bytes framed so far (at most [`BODY_CHUNK`]).
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.body, Vec::with_capacity(BODY_CHUNK))
    }

    /// True once STARTTLS completed.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The caller's result of committing the message: `Ok(id)` sends 250,
    /// `Err(reply)` sends that (a 4xx when the spool could not take it).
    pub fn message_stored(&mut self, result: Result<String, Reply>) {
        let State::Committing { helo } = std::mem::replace(&mut self.state, State::Closed) else {
            debug_assert!(false, "message_stored outside of a commit");
            return;
        };
        self.state = State::Ready { helo };
        match result {
            Ok(id) => self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))),
            Err(r) => self.reply(r),
        }
    }

    /// TLS is up: RFC 3207 says to forget everything learned before.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.settings.tls_available = false;
        self.state = State::Connected;
        self.line.clear();
    }

    fn reply(&mut self, r: Reply) {
        r.encode_into(&mut self.out);
    }

    /// A reply caused by the client's error: counted, and it costs time.
    /// Returns true when the session must close.
    fn error(&mut self, r: Reply) -> bool {
        self.errors += 1;
        let steps = self.errors.min(MAX_DELAY_STEPS);
        self.delay += self.settings.error_delay * steps;
        if self.errors > self.settings.max_errors {
            self.reply(Reply::new(421, "4.7.0", "Too many errors, closing"));
            self.state = State::Closed;
            return true;
        }
        self.reply(r);
        false
    }

    /// Consumes bytes from `input` and returns how many were used and what
    /// the caller must do next.
    pub fn advance(&mut self, input: &[u8], gate: &mut dyn Gate) -> (usize, Event) {
        let mut used = 0;
        loop {
            if matches!(self.state, State::Closed) {
                return (used, Event::Close);
            }
            if matches!(self.state, State::Committing { .. }) {
                // The caller must call message_stored first; nothing more is
                // read until then.
                return (used, Event::NeedInput);
            }
            if let State::Data { .. } = self.state {
                let (n, ev) = self.frame_body(&input[used..]);
                used += n;
                match ev {
                    Some(ev) => return (used, ev),
                    None => return (used, Event::NeedInput),
                }
            }
            // Command mode: collect one line.
            let rest = &input[used..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                self.push_line(rest);
                used = input.len();
                return (used, Event::NeedInput);
            };
            self.push_line(&rest[..=nl]);
            used += nl + 1;
            if let Some(ev) = self.end_of_line(gate) {
                return (used, ev);
            }
        }
    }

    fn push_line(&mut self, bytes: &[u8]) {
        if self.line_overflow {
            return;
        }
        if self.line.extend_from_slice(bytes).is_err() {
            self.line_overflow = true;
            self.line.clear();
        }
    }

    fn end_of_line(&mut self, gate: &mut dyn Gate) -> Option<Event> {
        if std::mem::take(&mut self.line_overflow) {
            self.line.clear();
            return self
                .error(Reply::new(500, "5.5.2", "Line too long"))
                .then_some(Event::Close);
        }
        let mut line = std::mem::take(&mut self.line);
        // The line ends in LF; it must end in CRLF and hold no other CR.
        line.pop();
        if line.last() != Some(&b'\r') || line[..line.len() - 1].contains(&b'\r') {
            return self
                .error(Reply::new(500, "5.5.2", "Command lines must end in CRLF"))
                .then_some(Event::Close);
        }
        line.pop();
        match Command::parse(&line) {
            Ok(cmd) => self.command(cmd, gate),
            Err(e) => {
                let r = match e {
                    SyntaxError::UnknownCommand => Reply::new(500, "5.5.1", e.to_string()),
                    SyntaxError::BadAddress(_) => Reply::new(553, "5.1.3", e.to_string()),
                    SyntaxError::UnknownParameter => Reply::new(555, "5.5.4", e.to_string()),
                    _ => Reply::new(501, "5.5.4", e.to_string()),
                };
                self.error(r).then_some(Event::Close)
            }
        }
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![
            format!("{} greets {name}", self.settings.hostname),
            format!("SIZE {}", self.settings.max_message_bytes),
            "8BITMIME".into(),
            "PIPELINING".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
            "ETRN".into(),
        ];
        if self.settings.tls_available {
            lines.push("STARTTLS".into());
        }
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }

    fn command(&mut self, cmd: Command, gate: &mut dyn Gate) -> Option<Event> {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let bad_sequence = |s: &mut Session, state: State, text: &str| {
            s.state = state;
            s.error(Reply::new(503, "5.5.1", text.to_string()))
                .then_some(Event::Close)
        };
        match (cmd, state) {
            (Command::Quit, _) => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.state = State::Closed;
                Some(Event::Close)
            }
            (Command::Noop, state) => {
                self.state = state;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            (Command::Vrfy, state) => {
                self.state = state;
                self.reply(Reply::new(252, "2.5.0", "Send some mail, I'll try my best"));
                None
            }
            (Command::Helo(name), _) => {
                self.reply(Reply::plain(250, self.settings.hostname.clone()));
                self.state = State::Ready { helo: name };
                None
            }
            (Command::Ehlo(name), _) => {
                let r = self.ehlo_reply(&name);
                self.reply(r);
                self.state = State::Ready { helo: name };
                None
            }
            (Command::StartTls, State::Ready { helo }) if self.settings.tls_available => {
                let _ = helo;
                self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                self.state = State::Connected;
                Some(Event::StartTls)
            }
            (Command::StartTls, state) => {
                let why = if self.tls {
                    "TLS already active"
                } else if self.settings.tls_available {
                    "STARTTLS only outside a transaction, after EHLO"
                } else {
                    "TLS not available"
                };
                self.state = state;
                self.error(Reply::new(503, "5.5.1", why))
                    .then_some(Event::Close)
            }
            (Command::Rset, State::Connected) => {
                self.state = State::Connected;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            (
                Command::Rset,
                State::Ready { helo }
                | State::Transaction {
                    env: Envelope { helo, .. },
                },
            ) => {
                self.state = State::Ready { helo };
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            (Command::Etrn(domain), state @ State::Ready { .. }) => {
                self.state = state;
                self.reply(Reply::new(
                    250,
                    "2.0.0",
                    format!("Queue run started for {domain}"),
                ));
                Some(Event::Etrn(domain))
            }
            (Command::Mail(from, params), State::Ready { helo }) => {
                self.mail(helo, from, params, gate)
            }
            (Command::Mail(..), state @ State::Transaction { .. }) => {
                bad_sequence(self, state, "Nested MAIL command")
            }
            (Command::Rcpt(to), State::Transaction { mut env }) => {
                if env.rcpts.len() >= self.settings.max_recipients {
                    self.state = State::Transaction { env };
                    self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
                    return None;
                }
                match gate.rcpt(&to) {
                    Ok(()) => {
                        env.rcpts.push(to);
                        self.state = State::Transaction { env };
                        self.reply(Reply::new(250, "2.1.5", "Ok"));
                        None
                    }
                    Err(r) => {
                        self.state = State::Transaction { env };
                        if r.code >= 500 {
                            self.error(r).then_some(Event::Close)
                        } else {
                            self.reply(r);
                            None
                        }
                    }
                }
            }
            (Command::Data, State::Transaction { env }) if !env.rcpts.is_empty() => {
                self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
                let ev = Event::DataStart(env.clone());
                self.state = State::Data {
                    env,
                    rx: Receiving {
                        frame: Frame::LineStart,
                        size: 0,
                        bare: false,
                        too_big: false,
                    },
                };
                Some(ev)
            }
            (Command::Data, state @ State::Transaction { .. }) => {
                bad_sequence(self, state, "No valid recipients")
            }
            (Command::Rcpt(_), state) => bad_sequence(self, state, "Need MAIL before RCPT"),
            (Command::Data, state) => bad_sequence(self, state, "Need RCPT before DATA"),
            (Command::Mail(..) | Command::Etrn(_), state) => {
                bad_sequence(self, state, "Send HELO/EHLO first")
            }
            (_, state) => bad_sequence(self, state, "Bad sequence of commands"),
        }
    }

    fn mail(
        &mut self,
        helo: String,
        from: ReversePath,
        params: MailParams,
        gate: &mut dyn Gate,
    ) -> Option<Event> {
        if let Some(size) = params.size
            && size > self.settings.max_message_bytes
        {
            self.state = State::Ready { helo };
            return self
                .error(Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum",
                ))
                .then_some(Event::Close);
        }
        match gate.mail(&from, params.size) {
            Ok(()) => {
                self.state = State::Transaction {
                    env: Envelope {
                        helo,
                        from,
                        rcpts: Vec::new(),
                    },
                };
                self.reply(Reply::new(250, "2.1.0", "Ok"));
                None
            }
            Err(r) => {
                self.state = State::Ready { helo };
                if r.code >= 500 {
                    self.error(r).then_some(Event::Close)
                } else {
                    self.reply(r);
                    None
                }
            }
        }
    }

    /// Frames body bytes until the end marker or until a chunk is full.
    fn frame_body(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        let max = self.settings.max_message_bytes;
        let State::Data { rx, .. } = &mut self.state else {
            return (0, None);
        };
        let body = &mut self.body;
        fn emit(body: &mut Vec<u8>, max: u64, bytes: &[u8], rx: &mut Receiving) {
            rx.size += bytes.len() as u64;
            if rx.size > max {
                rx.too_big = true;
            }
            if !rx.too_big && !rx.bare {
                body.extend_from_slice(bytes);
            }
        }
        let mut i = 0;
        while i < input.len() {
            if body.len() + 3 >= BODY_CHUNK {
                return (i, Some(Event::Body));
            }
            let b = input[i];
            i += 1;
            rx.frame = match (rx.frame, b) {
                (Frame::LineStart, b'.') => Frame::Dot,
                (Frame::LineStart | Frame::Mid, b'\r') => Frame::Cr,
                (Frame::LineStart | Frame::Mid, b'\n') => {
                    rx.bare = true;
                    Frame::Mid
                }
                (Frame::LineStart | Frame::Mid, b) => {
                    emit(body, max, &[b], rx);
                    Frame::Mid
                }
                (Frame::Cr, b'\n') => {
                    emit(body, max, b"\r\n", rx);
                    Frame::LineStart
                }
                (Frame::Cr, _) => {
                    rx.bare = true;
                    Frame::Mid
                }
                (Frame::Dot, b'\r') => Frame::DotCr,
                (Frame::Dot, b'\n') => {
                    rx.bare = true;
                    Frame::Mid
                }
                (Frame::Dot, b) => {
                    // Dot-unstuffing: the leading dot goes.
                    emit(body, max, &[b], rx);
                    Frame::Mid
                }
                (Frame::DotCr, b'\n') => {
                    return (i, Some(self.end_of_data()));
                }
                (Frame::DotCr, _) => {
                    rx.bare = true;
                    Frame::Mid
                }
            };
        }
        (i, None)
    }

    fn end_of_data(&mut self) -> Event {
        let State::Data { env, rx } = std::mem::replace(&mut self.state, State::Closed) else {
            return Event::Close;
        };
        let helo = env.helo;
        if rx.bare {
            self.state = State::Ready { helo };
            self.body.clear();
            if self.error(Reply::new(
                554,
                "5.6.11",
                "Bare CR or LF in message; lines must end in CRLF",
            )) {
                return Event::Close;
            }
            return Event::MessageAborted;
        }
        if rx.too_big {
            self.state = State::Ready { helo };
            self.body.clear();
            if self.error(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum",
            )) {
                return Event::Close;
            }
            return Event::MessageAborted;
        }
        self.state = State::Committing { helo };
        Event::MessageEnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Domain;

    struct AcceptHome;
    impl Gate for AcceptHome {
        fn mail(&mut self, _: &ReversePath, _: Option<u64>) -> Result<(), Reply> {
            Ok(())
        }
        fn rcpt(&mut self, to: &Mailbox) -> Result<(), Reply> {
            if to.domain == Domain::Name("home.arpa".into()) {
                Ok(())
            } else {
                Err(Reply::new(554, "5.7.1", "Relay access denied"))
            }
        }
    }

    fn settings() -> Settings {
        Settings {
            hostname: "mx.test".into(),
            max_message_bytes: 1000,
            max_recipients: 3,
            max_errors: 5,
            error_delay: Duration::from_millis(100),
            tls_available: true,
        }
    }

    /// Drives a session with `input`, storing bodies; returns the output
    /// text and the stored messages.
    struct Run {
        out: String,
        messages: Vec<(Envelope, Vec<u8>)>,
        aborted: usize,
        closed: bool,
        delay: Duration,
        events: Vec<Event>,
    }

    fn run_with(s: &mut Session, input: &[u8], split: usize) -> Run {
        let mut gate = AcceptHome;
        let mut r = Run {
            out: String::new(),
            messages: vec![],
            aborted: 0,
            closed: false,
            delay: Duration::ZERO,
            events: vec![],
        };
        let mut cur: Option<(Envelope, Vec<u8>)> = None;
        for piece in input.chunks(split.max(1)) {
            let mut pos = 0;
            loop {
                let (n, ev) = s.advance(&piece[pos..], &mut gate);
                pos += n;
                match &ev {
                    Event::NeedInput => break,
                    Event::DataStart(env) => cur = Some((env.clone(), Vec::new())),
                    Event::Body => cur.as_mut().unwrap().1.extend(s.take_body()),
                    Event::MessageEnd => {
                        let mut m = cur.take().unwrap();
                        m.1.extend(s.take_body());
                        r.messages.push(m);
                        s.message_stored(Ok(format!("M{}", r.messages.len())));
                    }
                    Event::MessageAborted => {
                        cur = None;
                        r.aborted += 1
                    }
                    Event::Close => {
                        r.closed = true;
                    }
                    Event::StartTls | Event::Etrn(_) => {}
                }
                r.events.push(ev.clone());
                if r.closed {
                    break;
                }
            }
            if r.closed {
                break;
            }
        }
        r.delay = s.take_delay();
        r.out = String::from_utf8_lossy(&s.take_output()).into_owned();
        r
    }

    fn run(input: &[u8]) -> Run {
        let mut s = Session::new(settings());
        s.greet();
        run_with(&mut s, input, input.len())
    }

    fn codes(out: &str) -> Vec<u16> {
        out.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }

    const GOOD: &[u8] = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";

    #[test]
    fn a_whole_session_pipelined() {
        let r = run(GOOD);
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 354, 250, 221]);
        assert!(r.out.contains("250-SIZE 1000\r\n"));
        assert!(r.out.contains("PIPELINING"));
        assert!(r.out.contains("STARTTLS"));
        assert!(r.out.contains("250 2.0.0 Ok: queued as M1"));
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].1, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
        assert_eq!(r.messages[0].0.rcpts[0].to_string(), "u@home.arpa");
        assert!(r.closed);
        assert_eq!(r.delay, Duration::ZERO);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_result() {
        let mut s = Session::new(settings());
        s.greet();
        let r = run_with(&mut s, GOOD, 1);
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 354, 250, 221]);
        assert_eq!(r.messages[0].1, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    }

    #[test]
    fn order_is_enforced() {
        let r = run(b"MAIL FROM:<a@b.test>\r\nEHLO x\r\nDATA\r\nRCPT TO:<u@home.arpa>\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n");
        assert_eq!(codes(&r.out), vec![220, 503, 250, 503, 503, 250, 503, 503]);
        assert!(r.messages.is_empty());
        assert!(r.delay > Duration::ZERO);
    }

    #[test]
    fn relay_refusal_leaves_no_recipient() {
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@elsewhere.test>\r\nDATA\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 250, 554, 503]);
    }

    #[test]
    fn bare_lf_in_data_is_rejected_and_smuggling_fails() {
        // The classic smuggling: "\n.\r\n" then a second transaction.
        let input = b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nhello\n.\r\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n";
        let r = run(input);
        assert!(r.messages.is_empty(), "{:?}", r.messages);
        assert_eq!(r.aborted, 1);
        assert!(r.out.contains("554 5.6.11"));
        // Only the final CRLF.CRLF ended the message.
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 354, 554, 221]);
        for bad in [
            &b"a\rb\r\n.\r\n"[..],
            b"a\r\n.\n",
            b"a\r\n.\rx\r\n.\r\n",
            b"\n.\r\n",
        ] {
            let mut input =
                b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\n".to_vec();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"\r\n.\r\n");
            let r = run(&input);
            assert!(r.messages.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn empty_body_and_lone_dot_lines() {
        let r = run(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\n.\r\n");
        assert_eq!(r.messages[0].1, b"");
        assert_eq!(r.messages[0].0.from, ReversePath::Null);
        let r = run(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\na\r\n..\r\n.\r\n");
        assert_eq!(r.messages[0].1, b"a\r\n.\r\n");
    }

    #[test]
    fn size_limits() {
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test> SIZE=5000\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 552]);
        let mut input =
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\n".to_vec();
        for _ in 0..30 {
            input.extend_from_slice(&[b'x'; 98]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let r = run(&input);
        assert!(r.messages.is_empty());
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 354, 552, 221]);
    }

    #[test]
    fn recipient_limit_is_a_4xx() {
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@home.arpa>\r\nRCPT TO:<b@home.arpa>\r\nRCPT TO:<c@home.arpa>\r\nRCPT TO:<d@home.arpa>\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 250, 452]);
    }

    #[test]
    fn overlong_line_and_bare_lf_commands() {
        let mut input = b"EHLO x\r\nNOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 5000));
        input.extend_from_slice(b"\r\nNOOP\nNOOP\r\n");
        let r = run(&input);
        assert_eq!(codes(&r.out), vec![220, 250, 500, 500, 250]);
        assert!(r.out.contains("Line too long"));
    }

    #[test]
    fn errors_cost_time_and_close_the_session() {
        let input = b"FOO\r\n".repeat(20);
        let r = run(&input);
        assert!(r.closed);
        assert!(r.out.contains("421 4.7.0"));
        assert_eq!(codes(&r.out).iter().filter(|&&c| c == 500).count(), 5);
        // 1+2+3+4+5+6 steps of 100 ms.
        assert_eq!(r.delay, Duration::from_millis(2100));
    }

    #[test]
    fn starttls_resets_the_session() {
        let mut s = Session::new(settings());
        s.greet();
        let mut gate = AcceptHome;
        // The event comes right after the STARTTLS line, so that the caller
        // can discard clear-text bytes pipelined after it (CVE-2011-0411).
        let input = b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b.test>\r\n";
        let (n, ev) = s.advance(input, &mut gate);
        assert_eq!((n, ev), (18, Event::StartTls));
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.contains("STARTTLS"));
        assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"));
        s.tls_started();
        // Forgotten: MAIL needs a new EHLO, which no longer offers STARTTLS.
        let r = run_with(
            &mut s,
            b"MAIL FROM:<a@b.test>\r\nEHLO x\r\nSTARTTLS\r\n",
            100,
        );
        assert_eq!(codes(&r.out), vec![503, 250, 503]);
        assert!(!r.out.contains("STARTTLS"));
        assert!(r.out.contains("503 5.5.1 TLS already active"));
    }

    #[test]
    fn big_bodies_come_out_in_bounded_chunks() {
        let mut st = settings();
        st.max_message_bytes = 10_000_000;
        let mut s = Session::new(st);
        s.greet();
        let mut input =
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\n".to_vec();
        let line = [b'y'; 998];
        for _ in 0..1000 {
            input.extend_from_slice(&line);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\n");
        let mut gate = AcceptHome;
        let mut pos = 0;
        let mut total = 0;
        loop {
            let (n, ev) = s.advance(&input[pos..], &mut gate);
            pos += n;
            match ev {
                Event::Body => {
                    let b = s.take_body();
                    assert!(b.len() <= BODY_CHUNK);
                    total += b.len();
                }
                Event::MessageEnd => {
                    total += s.take_body().len();
                    break;
                }
                Event::DataStart(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, 1000 * 1000);
    }

    /// Bounded property test: random and mutated sessions, fed in random
    /// splits, never panic, never yield a message with a bare CR or LF,
    /// and give the same result however the input is split.
    #[test]
    fn random_and_mutated_input() {
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"EHLO x\r\n",
            b"HELO y\r\n",
            b"MAIL FROM:<a@b.test>\r\n",
            b"MAIL FROM:<>\r\n",
            b"RCPT TO:<u@home.arpa>\r\n",
            b"RCPT TO:<u@evil.test>\r\n",
            b"DATA\r\n",
            b"\r\n.\r\n",
            b".",
            b"\r",
            b"\n",
            b"..\r\n",
            b"hello",
            b"RSET\r\n",
            b"NOOP\r\n",
            b"STARTTLS\r\n",
            b"QUIT\r\n",
            b"\x00\xff",
            b"ETRN home.arpa\r\n",
        ];
        for _ in 0..3000 {
            let mut input = GOOD.to_vec();
            let n = next() % 12;
            for _ in 0..n {
                let p = pieces[(next() % pieces.len() as u64) as usize];
                let at = (next() % (input.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 => {
                        input.splice(at..at, p.iter().copied());
                    }
                    1 if at < input.len() => {
                        input[at] = next() as u8;
                    }
                    _ => {
                        let end = (at + (next() % 8) as usize).min(input.len());
                        input.drain(at..end);
                    }
                }
            }
            let mut s1 = Session::new(settings());
            s1.greet();
            let whole = run_with(&mut s1, &input, input.len());
            let mut s2 = Session::new(settings());
            s2.greet();
            let split = 1 + (next() % 17) as usize;
            let pieces_run = run_with(&mut s2, &input, split);
            assert_eq!(whole.out, pieces_run.out, "{input:?}");
            assert_eq!(whole.messages, pieces_run.messages);
            for (_, body) in &whole.messages {
                for (i, &b) in body.iter().enumerate() {
                    if b == b'\n' {
                        assert!(i > 0 && body[i - 1] == b'\r');
                    }
                    if b == b'\r' {
                        assert_eq!(body.get(i + 1), Some(&b'\n'));
                    }
                }
            }
        }
    }
}
