//! The server side of one SMTP session as a sans-I/O state machine: bytes
//! in, replies and events out. It owns the protocol states (as types: no
//! MAIL before HELO, no DATA before an accepted RCPT), command-line
//! framing in a fixed buffer, DATA framing (ends only at CRLF.CRLF,
//! dot-unstuffing, bare CR/LF rejected), BDAT chunks (RFC 3030: counted
//! octets, bare CR/LF rejected too), the AUTH exchange (RFC 4954: offered
//! only under TLS; the caller checks the password), the size, recipient
//! and hop-count limits and error accounting. It never touches a socket, a
//! file or the clock: the caller feeds bytes, drains output, stores body
//! chunks and checks credentials.

use std::time::Duration;

use super::auth::{self, Credentials};
use super::command::{Command, MailParams, Mailbox, ReversePath, SyntaxError};
use super::hops::HopCounter;
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
    /// A password file is configured: AUTH PLAIN and LOGIN are offered
    /// once TLS is active (never in clear text).
    pub auth_available: bool,
    /// The submission port: MAIL needs TLS and a successful AUTH (530).
    pub auth_required: bool,
    /// A message whose header section has more `Received:` fields than
    /// this is refused at its end (554 5.4.6): a mail loop.
    pub max_hops: u32,
}

/// The caller's verdicts on MAIL and RCPT (admission, relay policy). They
/// must be pure decisions: no I/O.
pub trait Gate {
    /// `authenticated`: the client passed AUTH in this session.
    fn mail(
        &mut self,
        from: &ReversePath,
        size: Option<u64>,
        authenticated: bool,
    ) -> Result<(), Reply>;
    /// `authenticated`: the client passed AUTH in this session. On
    /// success, the recipients to record for `to`: itself, or the
    /// addresses an alias expands it to.
    fn rcpt(&mut self, to: &Mailbox, authenticated: bool) -> Result<Vec<Mailbox>, Reply>;
}

/// The caller's verdict on credentials from [`Event::Authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// 235: the user is authenticated for the rest of the session.
    Accepted,
    /// 535: wrong user or password (a protocol error: it costs time).
    Rejected,
    /// 454: the password file cannot be read now.
    Unavailable,
}

/// An accepted envelope, handed to the caller when DATA starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub from: ReversePath,
    pub rcpts: Vec<Mailbox>,
    /// MAIL FROM carried `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// MAIL FROM carried `SMTPUTF8`.
    pub smtputf8: bool,
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
    /// The message ended but is refused (bare CR/LF, too large, too many
    /// hops): discard what was stored, never commit it. The reply is already queued.
    MessageAborted,
    /// The client asked for TLS and the 220 is queued: flush, handshake,
    /// then call [`Session::tls_started`].
    StartTls,
    /// ETRN for a domain: start a queue run for it.
    Etrn(String),
    /// AUTH: check these credentials, then call [`Session::auth_checked`].
    /// Nothing more is read until then.
    Authenticate(Credentials),
    /// MAIL FROM was accepted (its 250 is queued): the caller may start
    /// the sender checks (SPF) now; the next RCPT's [`Gate::rcpt`] needs
    /// their result, so they are settled before more input is fed.
    Sender { helo: String, from: ReversePath },
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
    hops: HopCounter,
}

/// A BDAT transaction's progress.
#[derive(Debug)]
struct Chunk {
    /// Octets of the current chunk still to come.
    remaining: u64,
    /// Size of the current chunk (for its 250 reply).
    len: u64,
    /// The current chunk is the last one.
    last: bool,
    /// Octets in all chunks so far, the current one included.
    size: u64,
    /// The previous octet was a CR.
    cr: bool,
    /// A bare CR or LF was seen.
    bare: bool,
    /// `Received:` fields in the header section, across chunks.
    hops: HopCounter,
}

/// What reading a BDAT chunk asks of [`Session::advance`].
enum ChunkStep {
    Event(Event),
    NeedInput,
    /// The chunk is done (or empty): go on with command lines.
    Continue,
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
    /// BDAT accepted: the chunk's octets are being read.
    Chunk { env: Envelope, rx: Chunk },
    /// Between BDAT chunks: only BDAT, RSET, NOOP, QUIT move on.
    Chunked { env: Envelope, rx: Chunk },
    /// Waiting for the caller to commit the message.
    Committing { helo: String },
    /// AUTH PLAIN sent without an initial response: 334 sent, waiting for it.
    AuthPlain { helo: String },
    /// AUTH LOGIN: waiting for the user name.
    AuthLoginUser { helo: String },
    /// AUTH LOGIN: waiting for the password.
    AuthLoginPassword { helo: String, user: String },
    /// Waiting for the caller's verdict on credentials.
    AuthChecking { helo: String },
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
    authenticated: bool,
    /// Octets of a refused BDAT chunk still to be read and dropped.
    discard: u64,
    /// The last BDAT failed: chunks already pipelined after it are
    /// dropped with a 503 that is not counted as another error.
    bdat_failed: bool,
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
            authenticated: false,
            discard: 0,
            bdat_failed: false,
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

    /// True once AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The caller's verdict on the credentials of [`Event::Authenticate`].
    pub fn auth_checked(&mut self, verdict: AuthVerdict) {
        let State::AuthChecking { helo } = std::mem::replace(&mut self.state, State::Closed) else {
            debug_assert!(false, "auth_checked outside of AUTH");
            return;
        };
        self.state = State::Ready { helo };
        match verdict {
            AuthVerdict::Accepted => {
                self.authenticated = true;
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            AuthVerdict::Rejected => {
                self.error(Reply::new(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid",
                ));
            }
            AuthVerdict::Unavailable => {
                self.reply(Reply::new(454, "4.7.0", "Temporary authentication failure"))
            }
        }
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
        self.authenticated = false;
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
            if matches!(
                self.state,
                State::Committing { .. } | State::AuthChecking { .. }
            ) {
                // The caller must call message_stored or auth_checked
                // first; nothing more is read until then.
                return (used, Event::NeedInput);
            }
            if self.discard > 0 {
                let k = self.discard.min((input.len() - used) as u64);
                used += k as usize;
                self.discard -= k;
                if self.discard > 0 {
                    return (used, Event::NeedInput);
                }
            }
            if let State::Chunk { .. } = self.state {
                let (n, step) = self.read_chunk(&input[used..]);
                used += n;
                match step {
                    ChunkStep::Event(ev) => return (used, ev),
                    ChunkStep::NeedInput => return (used, Event::NeedInput),
                    ChunkStep::Continue => continue,
                }
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

    fn in_auth_exchange(&self) -> bool {
        matches!(
            self.state,
            State::AuthPlain { .. } | State::AuthLoginUser { .. } | State::AuthLoginPassword { .. }
        )
    }

    /// Leaves an AUTH exchange (cancelled or failed) for the Ready state.
    fn leave_auth(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        self.state = match state {
            State::AuthPlain { helo }
            | State::AuthLoginUser { helo }
            | State::AuthLoginPassword { helo, .. } => State::Ready { helo },
            other => other,
        };
    }

    fn end_of_line(&mut self, gate: &mut dyn Gate) -> Option<Event> {
        if std::mem::take(&mut self.line_overflow) {
            self.line.clear();
            if self.in_auth_exchange() {
                self.leave_auth();
                return self
                    .error(Reply::new(
                        500,
                        "5.5.6",
                        "Authentication exchange line is too long",
                    ))
                    .then_some(Event::Close);
            }
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
        if self.in_auth_exchange() {
            return self.auth_response(&line);
        }
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
            "CHUNKING".into(),
        ];
        if self.settings.tls_available {
            lines.push("STARTTLS".into());
        }
        if self.tls && self.settings.auth_available {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }

    fn command(&mut self, cmd: Command, gate: &mut dyn Gate) -> Option<Event> {
        if !matches!(cmd, Command::Bdat { .. }) {
            self.bdat_failed = false;
        }
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
            (Command::Helo(name), state) => {
                self.reply(Reply::plain(250, self.settings.hostname.clone()));
                self.state = State::Ready { helo: name };
                // A BDAT transaction in progress had a spool message open.
                matches!(state, State::Chunked { .. }).then_some(Event::MessageAborted)
            }
            (Command::Ehlo(name), state) => {
                let r = self.ehlo_reply(&name);
                self.reply(r);
                self.state = State::Ready { helo: name };
                matches!(state, State::Chunked { .. }).then_some(Event::MessageAborted)
            }
            (Command::Rset, State::Chunked { env, .. }) => {
                self.state = State::Ready { helo: env.helo };
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                Some(Event::MessageAborted)
            }
            (Command::Bdat { size, last }, state) => self.bdat(size, last, state),
            (Command::Auth { mechanism, initial }, State::Ready { helo }) => {
                self.auth(helo, &mechanism, initial.as_deref())
            }
            (Command::Auth { .. }, state @ State::Connected) => {
                bad_sequence(self, state, "Send EHLO first")
            }
            (Command::Auth { .. }, state) => {
                bad_sequence(self, state, "AUTH not allowed during a transaction")
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
                match gate.rcpt(&to, self.authenticated) {
                    Ok(mut list) => {
                        // An alias may name a recipient already there; its
                        // addresses count against the limit.
                        list.retain(|m| !env.rcpts.contains(m));
                        list.dedup();
                        if env.rcpts.len() + list.len() > self.settings.max_recipients {
                            self.state = State::Transaction { env };
                            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
                            return None;
                        }
                        env.rcpts.extend(list);
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
                        hops: HopCounter::new(),
                    },
                };
                Some(ev)
            }
            (Command::Data, state @ State::Transaction { .. }) => {
                bad_sequence(self, state, "No valid recipients")
            }
            (Command::Data, state @ State::Chunked { .. }) => {
                bad_sequence(self, state, "DATA and BDAT cannot be mixed")
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
        if self.settings.auth_required && !self.authenticated {
            self.state = State::Ready { helo };
            let text = if self.tls {
                "Authentication required"
            } else {
                "Must issue a STARTTLS command first"
            };
            return self
                .error(Reply::new(530, "5.7.0", text))
                .then_some(Event::Close);
        }
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
        match gate.mail(&from, params.size, self.authenticated) {
            Ok(()) => {
                let ev = Event::Sender {
                    helo: helo.clone(),
                    from: from.clone(),
                };
                self.state = State::Transaction {
                    env: Envelope {
                        helo,
                        from,
                        rcpts: Vec::new(),
                        eight_bit: params.eight_bit,
                        smtputf8: params.smtputf8,
                    },
                };
                self.reply(Reply::new(250, "2.1.0", "Ok"));
                Some(ev)
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

    /// AUTH in the Ready state: only under TLS, with a password file,
    /// once per session.
    fn auth(&mut self, helo: String, mechanism: &str, initial: Option<&str>) -> Option<Event> {
        self.state = State::Ready { helo };
        let refusal = if !self.settings.auth_available {
            Some(Reply::new(502, "5.5.1", "AUTH not available"))
        } else if !self.tls {
            Some(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ))
        } else if self.authenticated {
            Some(Reply::new(503, "5.5.1", "Already authenticated"))
        } else if mechanism != "PLAIN" && mechanism != "LOGIN" {
            Some(Reply::new(504, "5.5.4", "Unrecognized authentication type"))
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.error(r).then_some(Event::Close);
        }
        let State::Ready { helo } = std::mem::replace(&mut self.state, State::Closed) else {
            return None;
        };
        match (mechanism, initial) {
            ("PLAIN", None) => {
                self.state = State::AuthPlain { helo };
                self.reply(Reply::plain(334, ""));
                None
            }
            ("PLAIN", Some(text)) => {
                self.state = State::AuthPlain { helo };
                self.auth_response(text.as_bytes())
            }
            (_, None) => {
                self.state = State::AuthLoginUser { helo };
                self.reply(Reply::plain(334, auth::LOGIN_USER_PROMPT));
                None
            }
            (_, Some(text)) => {
                self.state = State::AuthLoginUser { helo };
                self.auth_response(text.as_bytes())
            }
        }
    }

    /// One client line of an AUTH exchange (base64, or `*` to cancel).
    fn auth_response(&mut self, line: &[u8]) -> Option<Event> {
        let text = std::str::from_utf8(line).unwrap_or("\u{0}");
        if text == "*" {
            self.leave_auth();
            return self
                .error(Reply::new(501, "5.7.0", "Authentication cancelled"))
                .then_some(Event::Close);
        }
        let state = std::mem::replace(&mut self.state, State::Closed);
        let helo = match &state {
            State::AuthPlain { helo }
            | State::AuthLoginUser { helo }
            | State::AuthLoginPassword { helo, .. } => helo.clone(),
            _ => String::new(),
        };
        let step = match state {
            State::AuthPlain { helo } => auth::plain(text).map(|c| (helo, Some(c), None)),
            State::AuthLoginUser { helo } => auth::login_user(text).map(|u| (helo, None, Some(u))),
            State::AuthLoginPassword { helo, user } => auth::login_password(text)
                .map(|password| (helo, Some(Credentials { user, password }), None)),
            other => {
                self.state = other;
                return None;
            }
        };
        match step {
            Ok((helo, Some(creds), _)) => {
                self.state = State::AuthChecking { helo };
                Some(Event::Authenticate(creds))
            }
            Ok((helo, None, Some(user))) => {
                self.state = State::AuthLoginPassword { helo, user };
                self.reply(Reply::plain(334, auth::LOGIN_PASSWORD_PROMPT));
                None
            }
            Ok((helo, None, None)) => {
                self.state = State::Ready { helo };
                None
            }
            Err(e) => {
                // The exchange is over; the state goes back to Ready.
                self.state = State::Ready { helo };
                self.error(Reply::new(501, "5.5.2", e.to_string()))
                    .then_some(Event::Close)
            }
        }
    }
    /// BDAT in any state. Its octets follow the command line whatever the
    /// reply, so a refused chunk is read and dropped (RFC 3030 2).
    fn bdat(&mut self, n: u64, last: bool, state: State) -> Option<Event> {
        let max = self.settings.max_message_bytes;
        match state {
            State::Transaction { env } if !env.rcpts.is_empty() => {
                if n > max {
                    return self.bdat_fail(env.helo, n, None);
                }
                let ev = Event::DataStart(env.clone());
                self.state = State::Chunk {
                    env,
                    rx: Chunk {
                        remaining: n,
                        len: n,
                        last,
                        size: n,
                        cr: false,
                        bare: false,
                        hops: HopCounter::new(),
                    },
                };
                Some(ev)
            }
            State::Chunked { env, mut rx } => {
                if rx.size.saturating_add(n) > max {
                    return self.bdat_fail(env.helo, n, Some(Event::MessageAborted));
                }
                rx.remaining = n;
                rx.len = n;
                rx.last = last;
                rx.size += n;
                self.state = State::Chunk { env, rx };
                None
            }
            state => {
                self.discard = n;
                self.state = state;
                if self.bdat_failed {
                    // Already pipelined after a failed chunk: dropped
                    // without costing another error.
                    self.reply(Reply::new(503, "5.5.1", "Transaction failed, send RSET"));
                    return None;
                }
                let why = match self.state {
                    State::Transaction { .. } => "No valid recipients",
                    State::Ready { .. } => "Need MAIL before BDAT",
                    _ => "Bad sequence of commands",
                };
                self.error(Reply::new(503, "5.5.1", why))
                    .then_some(Event::Close)
            }
        }
    }

    /// A BDAT chunk that would pass the size limit: its octets are
    /// dropped, the transaction fails with 552.
    fn bdat_fail(&mut self, helo: String, n: u64, ev: Option<Event>) -> Option<Event> {
        self.discard = n;
        self.state = State::Ready { helo };
        self.bdat_failed = true;
        if self.error(Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum",
        )) {
            return Some(Event::Close);
        }
        ev
    }

    /// Reads the current BDAT chunk's octets into the body buffer.
    fn read_chunk(&mut self, input: &[u8]) -> (usize, ChunkStep) {
        let State::Chunk { rx, .. } = &mut self.state else {
            return (0, ChunkStep::Continue);
        };
        let room = BODY_CHUNK - self.body.len();
        let take = (rx.remaining.min(input.len() as u64) as usize).min(room);
        for &b in &input[..take] {
            if (rx.cr && b != b'\n') || (!rx.cr && b == b'\n') {
                rx.bare = true;
            }
            rx.cr = b == b'\r';
        }
        if !rx.bare {
            self.body.extend_from_slice(&input[..take]);
            rx.hops.feed(&input[..take]);
        }
        rx.remaining -= take as u64;
        if rx.remaining > 0 {
            if self.body.len() >= BODY_CHUNK {
                return (take, ChunkStep::Event(Event::Body));
            }
            return (take, ChunkStep::NeedInput);
        }
        let last = rx.last;
        if last && rx.cr {
            rx.bare = true;
        }
        let State::Chunk { env, rx } = std::mem::replace(&mut self.state, State::Closed) else {
            return (take, ChunkStep::Continue);
        };
        if rx.bare {
            self.body.clear();
            self.state = State::Ready { helo: env.helo };
            self.bdat_failed = true;
            if self.error(Reply::new(
                554,
                "5.6.11",
                "Bare CR or LF in message; lines must end in CRLF",
            )) {
                return (take, ChunkStep::Event(Event::Close));
            }
            return (take, ChunkStep::Event(Event::MessageAborted));
        }
        if last && rx.hops.count() > self.settings.max_hops {
            self.body.clear();
            self.state = State::Ready { helo: env.helo };
            self.bdat_failed = true;
            self.reply(too_many_hops());
            return (take, ChunkStep::Event(Event::MessageAborted));
        }
        if last {
            self.state = State::Committing { helo: env.helo };
            return (take, ChunkStep::Event(Event::MessageEnd));
        }
        self.reply(Reply::new(
            250,
            "2.0.0",
            format!("{} octets received", rx.len),
        ));
        self.state = State::Chunked { env, rx };
        if self.body.len() >= BODY_CHUNK {
            return (take, ChunkStep::Event(Event::Body));
        }
        (take, ChunkStep::Continue)
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
                rx.hops.feed(bytes);
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
        if rx.hops.count() > self.settings.max_hops {
            // A loop, not the client's protocol error: no delay.
            self.state = State::Ready { helo };
            self.body.clear();
            self.reply(too_many_hops());
            return Event::MessageAborted;
        }
        self.state = State::Committing { helo };
        Event::MessageEnd
    }
}

/// The refusal of a message with more `Received:` fields than
/// [`Settings::max_hops`] (RFC 3463 X.4.6: routing loop detected).
fn too_many_hops() -> Reply {
    Reply::new(554, "5.4.6", "Too many hops")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Domain;

    struct AcceptHome;
    impl Gate for AcceptHome {
        fn mail(&mut self, _: &ReversePath, _: Option<u64>, _: bool) -> Result<(), Reply> {
            Ok(())
        }
        fn rcpt(&mut self, to: &Mailbox, authenticated: bool) -> Result<Vec<Mailbox>, Reply> {
            if to.local == "family" && to.domain == Domain::Name("home.arpa".into()) {
                // An alias, as the mail router's gate expands one.
                Ok(["a@x.test", "u@home.arpa"]
                    .iter()
                    .map(|s| crate::smtp::command::parse_mailbox(s).unwrap())
                    .collect())
            } else if authenticated || to.domain == Domain::Name("home.arpa".into()) {
                Ok(vec![to.clone()])
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
            auth_available: true,
            auth_required: false,
            max_hops: 3,
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
                    Event::Authenticate(c) => {
                        let ok = c.user == "alice" && c.password == b"s3cret";
                        s.auth_checked(if ok {
                            AuthVerdict::Accepted
                        } else {
                            AuthVerdict::Rejected
                        });
                    }
                    Event::StartTls => s.tls_started(),
                    Event::Etrn(_) | Event::Sender { .. } => {}
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
    fn the_envelope_keeps_body_and_smtputf8_for_the_next_hop() {
        let r = run(b"EHLO c.test\r\nMAIL FROM:<a@b.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@b.test> BODY=7BIT\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\ny\r\n.\r\n");
        let flags: Vec<(bool, bool)> = r
            .messages
            .iter()
            .map(|(e, _)| (e.eight_bit, e.smtputf8))
            .collect();
        assert_eq!(flags, vec![(true, true), (false, false)]);
    }

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
    fn gate_expansions_are_recorded_once_each() {
        let r = run(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nRCPT TO:<family@home.arpa>\r\nRCPT TO:<U@home.arpa>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n");
        assert_eq!(
            codes(&r.out),
            vec![220, 250, 250, 250, 250, 250, 354, 250, 221]
        );
        let rcpts: Vec<String> = r.messages[0]
            .0
            .rcpts
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(rcpts, vec!["u@home.arpa", "a@x.test", "U@home.arpa"]);
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
        // An alias's addresses count: two more do not fit in the third slot.
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@home.arpa>\r\nRCPT TO:<b@home.arpa>\r\nRCPT TO:<family@home.arpa>\r\nRCPT TO:<c@home.arpa>\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 452, 250]);
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
                Event::DataStart(_) | Event::Sender { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, 1000 * 1000);
    }

    /// An accepted MAIL FROM gives `Sender` (for the SPF check) with
    /// its 250 queued; a refused one gives nothing.
    #[test]
    fn an_accepted_sender_is_an_event() {
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nMAIL FROM:<>\r\nQUIT\r\n");
        let senders: Vec<&Event> = r
            .events
            .iter()
            .filter(|e| matches!(e, Event::Sender { .. }))
            .collect();
        assert_eq!(senders.len(), 2, "{:?}", r.events);
        assert_eq!(
            senders[1],
            &Event::Sender {
                helo: "x".into(),
                from: ReversePath::Null
            }
        );
        let mut s = Session::new(settings());
        s.greet();
        let mut gate = AcceptHome;
        let (_, ev) = s.advance(
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\n",
            &mut gate,
        );
        assert!(matches!(ev, Event::Sender { .. }));
        assert!(
            String::from_utf8(s.take_output())
                .unwrap()
                .ends_with("250 2.1.0 Ok\r\n")
        );
        // Before MAIL, nothing: MAIL without EHLO is refused.
        let r = run(b"MAIL FROM:<a@b.test>\r\nQUIT\r\n");
        assert!(!r.events.iter().any(|e| matches!(e, Event::Sender { .. })));
    }

    /// A session that already did STARTTLS (the harness's StartTls).
    fn tls_session(st: Settings) -> Session {
        let mut s = Session::new(st);
        s.greet();
        let mut gate = AcceptHome;
        let (_, ev) = s.advance(b"EHLO x\r\nSTARTTLS\r\n", &mut gate);
        assert_eq!(ev, Event::StartTls);
        s.take_output();
        s.tls_started();
        s
    }

    fn b64(s: &[u8]) -> String {
        crate::smtp::auth::base64_encode(s)
    }

    #[test]
    fn auth_is_neither_offered_nor_accepted_in_clear_text() {
        let plain = b64(b"\0alice\0s3cret");
        let r = run(format!(
            "EHLO x\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\n"
        )
        .as_bytes());
        assert!(!r.out.contains("AUTH"), "{}", r.out);
        assert!(r.out.contains("538 5.7.11"), "{}", r.out);
        assert!(!r.events.iter().any(|e| matches!(e, Event::Authenticate(_))));
        assert_eq!(codes(&r.out), vec![220, 250, 538, 250, 554]);
        assert!(r.delay > Duration::ZERO, "a refused AUTH costs time");
    }

    #[test]
    fn auth_plain_and_login_under_tls() {
        let mut s = tls_session(settings());
        let plain = b64(b"\0alice\0s3cret");
        let r = run_with(
            &mut s,
            format!("EHLO x\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<a@b.test> AUTH=<>\r\nRCPT TO:<u@example.org>\r\n").as_bytes(),
            7,
        );
        assert!(
            r.out.contains("250-AUTH PLAIN LOGIN\r\n")
                || r.out.contains("250 AUTH PLAIN LOGIN\r\n"),
            "{}",
            r.out
        );
        assert!(r.out.contains("235 2.7.0"), "{}", r.out);
        assert_eq!(codes(&r.out), vec![250, 235, 503, 250, 250]);
        assert!(s.is_authenticated());

        // PLAIN without an initial response, then LOGIN in two steps.
        let mut s = tls_session(settings());
        let r = run_with(
            &mut s,
            format!("EHLO x\r\nAUTH PLAIN\r\n{plain}\r\n").as_bytes(),
            100,
        );
        assert!(r.out.contains("334 \r\n"), "{}", r.out);
        assert_eq!(codes(&r.out), vec![250, 334, 235]);
        let mut s = tls_session(settings());
        let r = run_with(
            &mut s,
            format!(
                "EHLO x\r\nAUTH LOGIN\r\n{}\r\n{}\r\nRCPT TO:<u@example.org>\r\n",
                b64(b"alice"),
                b64(b"s3cret")
            )
            .as_bytes(),
            100,
        );
        assert!(
            r.out.contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"),
            "{}",
            r.out
        );
        assert_eq!(codes(&r.out), vec![250, 334, 334, 235, 503]);
        // LOGIN with the user name as initial response.
        let mut s = tls_session(settings());
        let r = run_with(
            &mut s,
            format!(
                "EHLO x\r\nAUTH LOGIN {}\r\n{}\r\n",
                b64(b"alice"),
                b64(b"s3cret")
            )
            .as_bytes(),
            100,
        );
        assert_eq!(codes(&r.out), vec![250, 334, 235]);
    }

    #[test]
    fn bad_credentials_cancel_and_garbage() {
        let mut s = tls_session(settings());
        let r = run_with(
            &mut s,
            format!(
                "EHLO x\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n!!notbase64\r\nAUTH CRAM-MD5\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\n",
                b64(b"\0alice\0wrong")
            )
            .as_bytes(),
            100,
        );
        assert_eq!(
            codes(&r.out),
            vec![250, 535, 334, 501, 334, 501, 504, 250, 554]
        );
        assert!(
            r.out
                .contains("535 5.7.8 Authentication credentials invalid")
        );
        assert!(!s.is_authenticated());
        // 535, 501, 501, 504, 554: 1+2+3+4+5 steps of 100 ms.
        assert_eq!(r.delay, Duration::from_millis(1500));
        // Failed AUTH is a protocol error: enough of them close the session.
        let mut s = tls_session(settings());
        let bad = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0nope")).repeat(10);
        let r = run_with(&mut s, format!("EHLO x\r\n{bad}").as_bytes(), 100);
        assert!(r.closed);
        assert!(r.out.contains("421 4.7.0"), "{}", r.out);
        assert_eq!(codes(&r.out).iter().filter(|&&c| c == 535).count(), 5);
        // AUTH inside a transaction, or before EHLO.
        let mut s = tls_session(settings());
        let r = run_with(
            &mut s,
            format!(
                "AUTH PLAIN {}\r\nEHLO x\r\nMAIL FROM:<a@b.test>\r\nAUTH PLAIN {}\r\n",
                b64(b"\0alice\0s3cret"),
                b64(b"\0alice\0s3cret")
            )
            .as_bytes(),
            100,
        );
        assert_eq!(codes(&r.out), vec![503, 250, 250, 503]);
        // An overlong exchange line ends the exchange.
        let mut s = tls_session(settings());
        let long = "QUFB".repeat(400);
        let r = run_with(
            &mut s,
            format!("EHLO x\r\nAUTH PLAIN\r\n{long}\r\nNOOP\r\n").as_bytes(),
            100,
        );
        assert_eq!(codes(&r.out), vec![250, 334, 500, 250]);
        assert!(r.out.contains("500 5.5.6"));
    }

    #[test]
    fn submission_needs_tls_then_auth() {
        let mut st = settings();
        st.auth_required = true;
        let mut s = Session::new(st.clone());
        s.greet();
        let r = run_with(&mut s, b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n", 100);
        assert_eq!(codes(&r.out), vec![220, 250, 530]);
        assert!(
            r.out
                .contains("530 5.7.0 Must issue a STARTTLS command first")
        );
        let mut s = tls_session(st.clone());
        let r = run_with(&mut s, b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n", 100);
        assert!(
            r.out.contains("530 5.7.0 Authentication required"),
            "{}",
            r.out
        );
        let mut s = tls_session(st);
        let r = run_with(
            &mut s,
            format!("EHLO x\r\nAUTH PLAIN {}\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.org>\r\nDATA\r\nhi\r\n.\r\n", b64(b"\0alice\0s3cret")).as_bytes(),
            100,
        );
        assert_eq!(codes(&r.out), vec![250, 235, 250, 250, 354, 250]);
        assert_eq!(r.messages.len(), 1);
    }

    const MAIL: &[u8] = b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\n";

    fn with_mail(rest: &[u8]) -> Vec<u8> {
        let mut v = MAIL.to_vec();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn bdat_pipelined_chunks() {
        let input = with_mail(b"BDAT 14\r\nSubject: x\r\n\r\nBDAT 7 LAST\r\nhello\r\nQUIT\r\n");
        for split in [input.len(), 1, 5] {
            let mut s = Session::new(settings());
            s.greet();
            let r = run_with(&mut s, &input, split);
            assert!(r.out.contains("CHUNKING"));
            assert_eq!(
                codes(&r.out),
                vec![220, 250, 250, 250, 250, 250, 221],
                "{}",
                r.out
            );
            assert!(r.out.contains("250 2.0.0 14 octets received"));
            assert!(r.out.contains("queued as M1"));
            assert_eq!(r.messages.len(), 1);
            // No dot-unstuffing or end marker in BDAT: the bytes as sent.
            assert_eq!(r.messages[0].1, b"Subject: x\r\n\r\nhello\r\n");
        }
        // A line starting with a dot, and a "." line, are just data.
        let r = run(&with_mail(b"BDAT 10 LAST\r\n.\r\n..x\r\n\r\n"));
        assert_eq!(r.messages[0].1, b".\r\n..x\r\n\r\n");
    }

    #[test]
    fn bdat_zero_last_and_empty_message() {
        let r = run(&with_mail(b"BDAT 5\r\na\r\n\r\nBDAT 0 LAST\r\n"));
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 250]);
        assert_eq!(r.messages[0].1, b"a\r\n\r\n");
        let r = run(&with_mail(b"BDAT 0 LAST\r\nNOOP\r\n"));
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 250]);
        assert_eq!(r.messages[0].1, b"");
    }

    #[test]
    fn bdat_out_of_sequence_is_refused_and_its_data_dropped() {
        // No MAIL: 503, and the 10 octets (which look like commands) are
        // read and dropped, not executed.
        let r = run(b"EHLO x\r\nBDAT 10\r\nQUIT\r\nXXXXNOOP\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 503, 250]);
        assert!(!r.closed);
        // MAIL but no accepted RCPT.
        let r = run(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@evil.test>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 250, 554, 503, 250]);
        assert!(r.messages.is_empty());
        // DATA after BDAT, and BDAT after the LAST one.
        let r = run(&with_mail(
            b"BDAT 3\r\nabcDATA\r\nRSET\r\nBDAT 2 LAST\r\nxy",
        ));
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 503, 250, 503]);
        assert!(
            r.events.contains(&Event::MessageAborted),
            "RSET drops the open message"
        );
        assert!(r.messages.is_empty());
        let r = run(&with_mail(b"BDAT 2 LAST\r\nxyBDAT 2 LAST\r\nzwNOOP\r\n"));
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 250, 503, 250]);
        assert_eq!(r.messages.len(), 1);
        // Bad syntax reads no data.
        let r = run(b"EHLO x\r\nBDAT x\r\nNOOP\r\n");
        assert_eq!(codes(&r.out), vec![220, 250, 501, 250]);
    }

    #[test]
    fn bdat_size_limit_counts_every_chunk() {
        // max_message_bytes is 1000: 600 + 600 passes it.
        let mut rest = b"BDAT 600\r\n".to_vec();
        rest.extend_from_slice(&[b'a'; 600]);
        rest.extend_from_slice(b"BDAT 600\r\n");
        rest.extend_from_slice(&[b'b'; 600]);
        rest.extend_from_slice(b"BDAT 10 LAST\r\n0123456789RSET\r\nQUIT\r\n");
        let r = run(&with_mail(&rest));
        assert_eq!(
            codes(&r.out),
            vec![220, 250, 250, 250, 250, 552, 503, 250, 221],
            "{}",
            r.out
        );
        assert!(r.messages.is_empty());
        assert!(r.events.contains(&Event::MessageAborted));
        // The pipelined chunk after the failure costs no extra error.
        assert_eq!(r.delay, Duration::from_millis(100));
        // One chunk over the limit: refused before anything is stored.
        let mut rest = b"BDAT 1001 LAST\r\n".to_vec();
        rest.extend_from_slice(&[b'c'; 1001]);
        rest.extend_from_slice(b"NOOP\r\n");
        let r = run(&with_mail(&rest));
        assert_eq!(codes(&r.out), vec![220, 250, 250, 250, 552, 250]);
        assert!(!r.events.iter().any(|e| matches!(e, Event::DataStart(_))));
    }

    #[test]
    fn bdat_bare_cr_or_lf_is_refused() {
        for body in [&b"a\nb\r\n"[..], b"a\rb\r\n", b"ab\r"] {
            let mut rest = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
            rest.extend_from_slice(body);
            rest.extend_from_slice(b"NOOP\r\n");
            let r = run(&with_mail(&rest));
            assert!(r.messages.is_empty(), "{body:?}");
            assert!(r.out.contains("554 5.6.11"), "{body:?}");
            assert_eq!(r.aborted, 1);
        }
        // A CRLF split between two chunks is fine.
        let r = run(&with_mail(b"BDAT 2\r\na\rBDAT 1 LAST\r\n\n"));
        assert_eq!(r.messages[0].1, b"a\r\n");
    }

    #[test]
    fn bdat_big_message_comes_out_in_bounded_chunks() {
        let mut st = settings();
        st.max_message_bytes = 10_000_000;
        let mut s = Session::new(st);
        s.greet();
        let mut input = with_mail(b"BDAT 100000\r\n");
        input.extend(std::iter::repeat_n(b'y', 100_000));
        input.extend_from_slice(b"BDAT 100000 LAST\r\n");
        input.extend(std::iter::repeat_n(b'z', 100_000));
        let mut gate = AcceptHome;
        let (mut pos, mut total) = (0, 0);
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
                Event::DataStart(_) | Event::Sender { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, 200_000);
    }

    /// Bounded property test: random and mutated sessions, fed in random
    /// splits, never panic, never yield a message with a bare CR or LF,
    /// and give the same result however the input is split.
    #[test]
    fn too_many_hops_are_refused_at_the_end_and_never_committed() {
        // settings(): max_hops 3. Four Received fields (one folded, one
        // with a stuffed dot line after the header) are a loop; three
        // and Received lines in the body are fine.
        let loop4 =
            b"Received: a\r\nreceived: b\r\n\tc\r\nReceived : d\r\nRECEIVED: e\r\n\r\nbody\r\n";
        let fine3 = b"Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nReceived: body\r\n..x\r\n";
        let mut input = b"EHLO x\r\n".to_vec();
        for body in [&loop4[..], &fine3[..]] {
            input.extend_from_slice(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\n");
            input.extend_from_slice(body);
            input.extend_from_slice(b".\r\n");
        }
        // BDAT: the fields may span chunks.
        input.extend_from_slice(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\n");
        let (head, tail) = loop4.split_at(20);
        input.extend_from_slice(format!("BDAT {}\r\n", head.len()).as_bytes());
        input.extend_from_slice(head);
        input.extend_from_slice(format!("BDAT {} LAST\r\n", tail.len()).as_bytes());
        input.extend_from_slice(tail);
        input.extend_from_slice(b"QUIT\r\n");
        for split in [input.len(), 1, 7] {
            let mut s = Session::new(settings());
            s.greet();
            let r = run_with(&mut s, &input, split);
            assert_eq!(
                codes(&r.out),
                vec![
                    220, 250, 250, 250, 354, 554, 250, 250, 354, 250, 250, 250, 250, 554, 221
                ],
                "{}",
                r.out
            );
            assert_eq!(r.out.matches("554 5.4.6 Too many hops\r\n").count(), 2);
            // Only the three-hop message reached a commit; the refused
            // ones were aborted (the spool discards them), with no delay.
            assert_eq!(r.messages.len(), 1);
            assert!(r.messages[0].1.starts_with(b"Received: a\r\n"));
            assert_eq!(r.aborted, 2);
            let ends = r.events.iter().filter(|e| **e == Event::MessageEnd).count();
            assert_eq!(ends, 1);
            assert_eq!(r.delay, Duration::ZERO);
        }
    }

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
            b"BDAT 5\r\n",
            b"BDAT 0 LAST\r\n",
            b"BDAT 3 LAST\r\nabc",
            b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n",
            b"AUTH LOGIN\r\n",
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
