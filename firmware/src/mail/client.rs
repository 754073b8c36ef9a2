//! The SMTP client used for delivery: one connection to a next hop, over
//! which several messages go one after another (connection reuse). It
//! reports per-recipient results; it never decides about retries or
//! bounces (the scheduler does) and never writes the spool.

use crate::smtp::auth::base64_encode;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::spool::record::MessageFlags;
use super::spool::{Extent, SpoolError, read_extents};
use crate::config::TlsMode;

/// Longest reply line read from a server.
pub const MAX_REPLY_LINE: usize = 1000;
/// Most lines in one (multi-line) reply.
pub const MAX_REPLY_LINES: usize = 100;
/// Timeout for connecting and for each reply (RFC 5321 4.5.3.2 gives
/// minutes; a home network answers in seconds).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A reply from the server: code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub text: String,
}

impl ServerReply {
    pub fn is_ok(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for ServerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// A server reply as its lines arrive (sans-I/O: the caller reads each
/// line, at most [`MAX_REPLY_LINE`] bytes up to and including its LF).
/// At most [`MAX_REPLY_LINES`] lines; a line that does not start with
/// three digits is [`ClientError::Malformed`].
#[derive(Debug, Default)]
pub struct ReplyLines {
    text: String,
    lines: Vec<String>,
}

impl ReplyLines {
    /// Adds one line; the whole reply (and each line's text) once this
    /// was its last line.
    #[allow(clippy::type_complexity)]
    pub fn push(&mut self, line: &[u8]) -> Result<Option<(ServerReply, Vec<String>)>, ClientError> {
        let l = String::from_utf8_lossy(line);
        let l = l.trim_end();
        // Three ASCII digits (slicing the text at byte 3 could split a
        // character a server sent there).
        let digits = l.as_bytes().get(..3).ok_or(ClientError::Malformed)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ClientError::Malformed);
        }
        let code = digits
            .iter()
            .fold(0u16, |c, d| c * 10 + u16::from(d - b'0'));
        let rest = l.get(4..).unwrap_or("");
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(rest);
        self.lines.push(rest.to_string());
        if l.as_bytes().get(3) != Some(&b'-') {
            let text = std::mem::take(&mut self.text);
            return Ok(Some((
                ServerReply { code, text },
                std::mem::take(&mut self.lines),
            )));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ClientError::Malformed);
        }
        Ok(None)
    }
}

/// What went wrong on a connection as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server sent something that is not an SMTP reply.
    #[error("malformed reply from the server")]
    Malformed,
    /// The server refused the session (greeting or EHLO/HELO).
    #[error("server refused the session: {0}")]
    Refused(ServerReply),
    /// The spool could not give us the body.
    #[error("{0}")]
    Spool(#[from] SpoolError),
    /// The route requires TLS and the server does not offer STARTTLS.
    #[error("TLS is required and the server does not offer STARTTLS")]
    TlsNotOffered,
    /// The route requires TLS and the server refused STARTTLS.
    #[error("TLS is required and the server refused STARTTLS: {0}")]
    StartTlsRefused(ServerReply),
    /// The TLS handshake failed (for a required route: also a
    /// certificate that does not verify or names another host).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// TLS is required but no trust roots could be loaded.
    #[error("TLS is required but there are no trust roots: {0}")]
    NoRoots(String),
    /// Credentials are configured but the session is not encrypted.
    #[error("refusing to send AUTH credentials without TLS")]
    AuthWithoutTls,
    /// Credentials are configured but the server offers no mechanism we have.
    #[error("the server offers neither AUTH PLAIN nor AUTH LOGIN")]
    AuthUnsupported,
    /// The server refused the credentials.
    #[error("authentication failed: {0}")]
    AuthFailed(ServerReply),
}

/// One message to send over the connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: u64,
    pub from: String,
    pub rcpts: Vec<(u32, String)>,
    pub extents: Vec<Extent>,
    /// When it was received (Unix seconds; a DSN's Arrival-Date).
    pub received: u64,
    /// Its retry time has come (false: it rides along on a probe, and a
    /// failed connection records nothing for it).
    pub due: bool,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The ESMTP parameters it arrived with.
    pub flags: MessageFlags,
    /// Its size in the spool (for `SIZE=`).
    pub size: u64,
}

/// Per-recipient result of one message.
#[derive(Debug, Clone)]
pub struct Result1 {
    pub index: u32,
    pub reply: ServerReply,
}

/// Read buffer of one connection (replies are read line by line from it).
pub const IO_BUFFER: usize = 8 * 1024;
/// A credentials file larger than this is refused.
pub const MAX_CREDENTIALS_BYTES: u64 = 4096;

/// The TLS client configurations of the mail side, built once.
pub struct OutboundTls {
    /// STARTTLS that accepts any certificate (`tls = "may"`).
    pub opportunistic: Arc<rustls::ClientConfig>,
    /// Verification against `mail.tls_ca_file` or the system bundle
    /// (`tls = "required"`); the error says why there are no roots.
    pub verified: Result<Arc<rustls::ClientConfig>, String>,
}

impl OutboundTls {
    /// Loads the roots only when a route needs them.
    pub fn new(config: &crate::config::MailConfig) -> OutboundTls {
        let verified = if config.needs_verification() {
            crate::tls::verifying_config_from(config.tls_ca_file.as_deref()).map_err(|e| {
                log::error!("mail: {e}; routes with tls = \"required\" will stay queued");
                e.to_string()
            })
        } else {
            Err("no route requires TLS".into())
        };
        OutboundTls {
            opportunistic: crate::tls::opportunistic_config(),
            verified,
        }
    }
}

/// AUTH credentials, read from the file a route names. The file holds
/// one line `user:password` (split at the first `:`); empty lines and
/// lines starting with `#` are ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.user)
    }
}

/// Why a credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("credentials file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is larger than [`MAX_CREDENTIALS_BYTES`].
    #[error("credentials file {0}: larger than {MAX_CREDENTIALS_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The file does not hold exactly one `user:password` line.
    #[error("credentials file {0}: expected one line \"user:password\"")]
    Format(PathBuf),
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| CredentialsError::Read(path.into(), e))?;
        let mut text = String::new();
        f.take(MAX_CREDENTIALS_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| CredentialsError::Read(path.into(), e))?;
        if text.len() as u64 > MAX_CREDENTIALS_BYTES {
            return Err(CredentialsError::TooLarge(path.into()));
        }
        Credentials::parse(&text).ok_or_else(|| CredentialsError::Format(path.into()))
    }

    pub fn parse(text: &str) -> Option<Credentials> {
        let mut lines = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
        let line = lines.next()?;
        if lines.next().is_some() {
            return None;
        }
        let (user, password) = line.split_once(':')?;
        if user.is_empty() || password.is_empty() || line.contains('\0') {
            return None;
        }
        Some(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }
}

/// TLS and AUTH on one connection.
pub struct Session<'a> {
    /// Our name, for EHLO.
    pub hostname: &'a str,
    pub tls: TlsMode,
    /// The name the server's certificate must carry: the route's host,
    /// or the MX host.
    pub peer_name: &'a str,
    pub configs: &'a OutboundTls,
    pub auth: Option<&'a Credentials>,
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// SIZE, with or without a limit (RFC 1870).
    pub size: bool,
}

impl Extensions {
    pub fn parse(lines: &[String]) -> Extensions {
        let mut x = Extensions::default();
        for l in lines.iter().skip(1) {
            let u = l.to_ascii_uppercase();
            let mut words = u.split([' ', '=']);
            match words.next() {
                Some("STARTTLS") => x.starttls = true,
                Some("8BITMIME") => x.eight_bit_mime = true,
                Some("SMTPUTF8") => x.smtputf8 = true,
                Some("SIZE") => x.size = true,
                Some("AUTH") => {
                    for w in words {
                        x.auth_plain |= w == "PLAIN";
                        x.auth_login |= w == "LOGIN";
                    }
                }
                _ => {}
            }
        }
        x
    }
}

/// Why a message cannot be handed to a server at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsendable {
    /// The message arrived with `SMTPUTF8` and the server does not offer
    /// it: RFC 6531 3.4 forbids sending it there; it fails permanently
    /// (5.6.7) rather than waiting for a server that will never change.
    SmtpUtf8NotOffered,
}

impl Unsendable {
    /// The permanent reply recorded for each recipient (its status is the
    /// DSN's); `peer` names the server.
    pub fn reply(self, peer: &str) -> ServerReply {
        match self {
            Unsendable::SmtpUtf8NotOffered => ServerReply {
                code: 553,
                text: format!("5.6.7 SMTPUTF8 is required, but was not offered by host {peer}"),
            },
        }
    }
}

/// The `MAIL FROM` command for a message to a server that offered `ext`:
/// `BODY=8BITMIME` when the message arrived with it and the server offers
/// 8BITMIME, `SMTPUTF8` likewise, `SIZE=<size>` when the server offers
/// SIZE. An 8BITMIME message to a server without 8BITMIME goes as it is,
/// without `BODY=` and unconverted (sendmail's "pass8"; Postfix would
/// convert it to quoted-printable unless `disable_mime_output_conversion`).
/// An SMTPUTF8 message to a server without SMTPUTF8 cannot go at all.
pub fn mail_from_command(
    from: &str,
    flags: MessageFlags,
    size: u64,
    ext: &Extensions,
) -> Result<String, Unsendable> {
    if flags.smtputf8 && !ext.smtputf8 {
        return Err(Unsendable::SmtpUtf8NotOffered);
    }
    let mut line = format!("MAIL FROM:<{from}>");
    if ext.size {
        line.push_str(&format!(" SIZE={size}"));
    }
    if flags.eight_bit && ext.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    if flags.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    Ok(line)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Client {
    io: BufReader<Box<dyn Stream>>,
    /// Protocol and cipher suite when the session is encrypted.
    tls: Option<String>,
    /// What the server offered (in its last EHLO reply).
    ext: Extensions,
    /// The server's address, for replies made up here.
    peer: SocketAddr,
}

impl Client {
    /// Connects to `hop` (an address: names were resolved through our own
    /// resolver, never the system's), reads the greeting, says EHLO, then
    /// STARTTLS and AUTH as `s` asks. With `tls = "may"`, a failed
    /// handshake is retried once in plaintext.
    pub async fn connect(hop: SocketAddr, s: &Session<'_>) -> Result<Client, ClientError> {
        match Client::connect_once(hop, s, s.tls).await {
            Err(ClientError::Handshake(e)) if s.tls == TlsMode::May => {
                log::info!("mail: {hop}: TLS handshake failed ({e}); trying again without TLS");
                Client::connect_once(hop, s, TlsMode::None).await
            }
            r => r,
        }
    }

    async fn connect_once(
        hop: SocketAddr,
        s: &Session<'_>,
        mode: TlsMode,
    ) -> Result<Client, ClientError> {
        let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(hop))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        let mut c = Client {
            io: BufReader::with_capacity(IO_BUFFER, Box::new(tcp)),
            tls: None,
            ext: Extensions::default(),
            peer: hop,
        };
        let greet = c.read_reply().await?;
        if !greet.is_ok() {
            return Err(ClientError::Refused(greet));
        }
        let mut ext = c.hello(s.hostname).await?;
        if mode != TlsMode::None {
            if !ext.starttls {
                if mode == TlsMode::Required {
                    return Err(ClientError::TlsNotOffered);
                }
            } else {
                let r = c.command("STARTTLS").await?;
                if r.code == 220 {
                    let config = match mode {
                        TlsMode::Required => {
                            s.configs.verified.clone().map_err(ClientError::NoRoots)?
                        }
                        _ => s.configs.opportunistic.clone(),
                    };
                    let name = match crate::tls::server_name(s.peer_name) {
                        Ok(n) => n,
                        Err(e) if mode == TlsMode::Required => {
                            return Err(ClientError::Handshake(e.to_string()));
                        }
                        // Any name will do when the certificate is not checked.
                        Err(_) => rustls::pki_types::ServerName::try_from("localhost")
                            .expect("literal name"),
                    };
                    c = c.start_tls(config, name).await?;
                    ext = c.hello(s.hostname).await?;
                } else if mode == TlsMode::Required {
                    return Err(ClientError::StartTlsRefused(r));
                }
            }
        }
        if let Some(cred) = s.auth {
            c.auth(cred, &ext).await?;
        }
        c.ext = ext;
        Ok(c)
    }

    /// EHLO (HELO when refused); what the server offers.
    async fn hello(&mut self, hostname: &str) -> Result<Extensions, ClientError> {
        self.send_line(&format!("EHLO {hostname}")).await?;
        let (ehlo, lines) = self.read_reply_lines().await?;
        if ehlo.is_ok() {
            return Ok(Extensions::parse(&lines));
        }
        let helo = self.command(&format!("HELO {hostname}")).await?;
        if !helo.is_ok() {
            return Err(ClientError::Refused(helo));
        }
        Ok(Extensions::default())
    }

    async fn start_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Client, ClientError> {
        // Bytes after the 220 were sent before the handshake: a STARTTLS
        // injection attempt (CVE-2011-0411 class). Refuse them.
        if !self.io.buffer().is_empty() {
            return Err(ClientError::Malformed);
        }
        let inner = self.io.into_inner();
        let tls = tokio::time::timeout(
            STEP_TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(name, inner),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let conn = tls.get_ref().1;
        let info = format!(
            "TLS {}, {}",
            conn.protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            conn.negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or("?")
        );
        Ok(Client {
            io: BufReader::with_capacity(IO_BUFFER, Box::new(tls)),
            tls: Some(info),
            ext: Extensions::default(),
            peer: self.peer,
        })
    }

    /// AUTH PLAIN, or LOGIN when that is all the server offers; over TLS
    /// only.
    async fn auth(&mut self, cred: &Credentials, ext: &Extensions) -> Result<(), ClientError> {
        if self.tls.is_none() {
            return Err(ClientError::AuthWithoutTls);
        }
        let done = if ext.auth_plain {
            let mut raw = vec![0u8];
            raw.extend_from_slice(cred.user.as_bytes());
            raw.push(0);
            raw.extend_from_slice(cred.password.as_bytes());
            self.command(&format!("AUTH PLAIN {}", base64_encode(&raw)))
                .await?
        } else if ext.auth_login {
            let r = self.command("AUTH LOGIN").await?;
            if r.code != 334 {
                return Err(ClientError::AuthFailed(r));
            }
            let r = self.command(&base64_encode(cred.user.as_bytes())).await?;
            if r.code != 334 {
                return Err(ClientError::AuthFailed(r));
            }
            self.command(&base64_encode(cred.password.as_bytes()))
                .await?
        } else {
            return Err(ClientError::AuthUnsupported);
        };
        if done.code != 235 {
            return Err(ClientError::AuthFailed(done));
        }
        Ok(())
    }

    /// "TLS TLSv1_3, TLS13_AES_256_GCM_SHA384" or "no TLS", for logs.
    pub fn tls_info(&self) -> &str {
        self.tls.as_deref().unwrap_or("no TLS")
    }

    async fn read_reply(&mut self) -> Result<ServerReply, ClientError> {
        Ok(self.read_reply_lines().await?.0)
    }

    /// A reply, and the text of each of its lines.
    async fn read_reply_lines(&mut self) -> Result<(ServerReply, Vec<String>), ClientError> {
        let mut reply = ReplyLines::default();
        loop {
            let mut line = Vec::new();
            let read = async {
                let mut limited = (&mut self.io).take(MAX_REPLY_LINE as u64);
                tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await
            };
            let n = tokio::time::timeout(STEP_TIMEOUT, read)
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(done) = reply.push(&line)? {
                return Ok(done);
            }
        }
    }

    async fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        let w = self.io.get_mut();
        w.write_all(&l).await?;
        w.flush().await?;
        Ok(())
    }

    async fn command(&mut self, line: &str) -> Result<ServerReply, ClientError> {
        self.send_line(line).await?;
        self.read_reply().await
    }

    /// Sends one message; returns each recipient's reply (the RCPT reply if
    /// it was refused, else the reply to the end of DATA).
    pub async fn send(
        &mut self,
        spool_dir: &std::path::Path,
        m: &Outgoing,
    ) -> Result<Vec<Result1>, ClientError> {
        let line = match mail_from_command(&m.from, m.flags, m.size, &self.ext) {
            Ok(l) => l,
            Err(why) => {
                let reply = why.reply(&self.peer.to_string());
                return Ok(m
                    .rcpts
                    .iter()
                    .map(|(i, _)| Result1 {
                        index: *i,
                        reply: reply.clone(),
                    })
                    .collect());
            }
        };
        let mail = self.command(&line).await?;
        if !mail.is_ok() {
            let _ = self.command("RSET").await;
            return Ok(m
                .rcpts
                .iter()
                .map(|(i, _)| Result1 {
                    index: *i,
                    reply: mail.clone(),
                })
                .collect());
        }
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        for (i, r) in &m.rcpts {
            let reply = self.command(&format!("RCPT TO:<{r}>")).await?;
            if reply.is_ok() {
                accepted.push(*i);
            } else {
                results.push(Result1 { index: *i, reply });
            }
        }
        if accepted.is_empty() {
            let _ = self.command("RSET").await;
            return Ok(results);
        }
        let data = self.command("DATA").await?;
        if data.code != 354 {
            for i in accepted {
                results.push(Result1 {
                    index: i,
                    reply: data.clone(),
                });
            }
            let _ = self.command("RSET").await;
            return Ok(results);
        }
        // Body, extent by extent, dot-stuffed.
        let mut at_line_start = true;
        let mut last = b'\n';
        let mut out = Vec::with_capacity(64 * 1024);
        for e in &m.extents {
            let chunk = read_extents(spool_dir, std::slice::from_ref(e))?;
            out.clear();
            for &b in &chunk {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = b == b'\n';
                last = b;
            }
            self.io.get_mut().write_all(&out).await?;
        }
        if last != b'\n' {
            self.io.get_mut().write_all(b"\r\n").await?;
        }
        self.io.get_mut().flush().await?;
        let end = self.command(".").await?;
        for i in accepted {
            results.push(Result1 {
                index: i,
                reply: end.clone(),
            });
        }
        Ok(results)
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn reads_multiline_replies_and_refuses_garbage() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"220 hi\r\n").await.unwrap();
            let mut b = [0u8; 100];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
            s.write_all(b"250-x\r\n250-SIZE 1\r\n250 OK\r\n")
                .await
                .unwrap();
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
            s.write_all(b"garbage\r\n").await.unwrap();
        });
        let cfg = crate::config::MailConfig::default();
        let tls = OutboundTls::new(&cfg);
        let s = Session {
            hostname: "me.test",
            tls: TlsMode::May,
            peer_name: "127.0.0.1",
            configs: &tls,
            auth: None,
        };
        let mut c = Client::connect(addr, &s).await.unwrap();
        assert_eq!(c.tls_info(), "no TLS");
        let r = c.command("NOOP").await;
        assert!(matches!(r, Err(ClientError::Malformed)), "{r:?}");
        server.await.unwrap();
    }

    fn flags(eight_bit: bool, smtputf8: bool) -> MessageFlags {
        MessageFlags {
            eight_bit,
            smtputf8,
        }
    }

    #[test]
    fn mail_from_passes_on_what_the_hop_offers() {
        let all = Extensions {
            eight_bit_mime: true,
            smtputf8: true,
            size: true,
            ..Extensions::default()
        };
        let none = Extensions::default();
        let line = |f, x: &Extensions| mail_from_command("a@b.test", f, 1234, x);
        assert_eq!(
            line(flags(true, true), &all).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8"
        );
        assert_eq!(
            line(flags(false, false), &all).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234"
        );
        assert_eq!(
            line(flags(false, false), &none).unwrap(),
            "MAIL FROM:<a@b.test>"
        );
        // 8BITMIME not offered: sent as it is, without BODY=.
        let no8 = Extensions {
            eight_bit_mime: false,
            ..all
        };
        assert_eq!(
            line(flags(true, false), &no8).unwrap(),
            "MAIL FROM:<a@b.test> SIZE=1234"
        );
        let only8 = Extensions {
            eight_bit_mime: true,
            ..none
        };
        assert_eq!(
            line(flags(true, false), &only8).unwrap(),
            "MAIL FROM:<a@b.test> BODY=8BITMIME"
        );
        // SMTPUTF8 not offered: the message cannot go (RFC 6531 3.4).
        let no_utf8 = Extensions {
            smtputf8: false,
            ..all
        };
        assert_eq!(
            line(flags(false, true), &no_utf8),
            Err(Unsendable::SmtpUtf8NotOffered)
        );
        let r = Unsendable::SmtpUtf8NotOffered.reply("192.0.2.1:25");
        assert!(r.is_permanent());
        assert!(r.text.starts_with("5.6.7 "), "{r}");
        // The null sender.
        assert_eq!(
            mail_from_command("", flags(false, false), 5, &none).unwrap(),
            "MAIL FROM:<>"
        );
    }

    #[test]
    fn reply_lines_parse_without_io() {
        let mut r = ReplyLines::default();
        assert!(r.push(b"250-mx.test hi\r\n").unwrap().is_none());
        let (reply, lines) = r.push(b"250 SIZE 10\r\n").unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "mx.test hi SIZE 10");
        assert_eq!(lines, ["mx.test hi", "SIZE 10"]);
        let mut r = ReplyLines::default();
        for _ in 0..MAX_REPLY_LINES - 1 {
            assert!(r.push(b"250-x\r\n").unwrap().is_none());
        }
        assert!(matches!(r.push(b"250-x\r\n"), Err(ClientError::Malformed)));
        for bad in [&b"25\r\n"[..], b"+25 x\r\n", b"2x0 x\r\n"] {
            let r = ReplyLines::default().push(bad);
            assert!(matches!(r, Err(ClientError::Malformed)), "{bad:?}");
        }
    }

    /// Found while writing fuzz/fuzz_targets/smtp_reply.rs: a reply whose
    /// first three bytes split a UTF-8 character made the mail service
    /// panic (the code was read by slicing the text at byte 3).
    #[test]
    fn a_split_character_in_the_code_is_malformed_not_a_panic() {
        for bad in ["22\u{e9} ok\r\n", "2\u{20ac} ok\r\n", "\u{e9}\r\n"] {
            let r = ReplyLines::default().push(bad.as_bytes());
            assert!(matches!(r, Err(ClientError::Malformed)), "{bad:?}");
        }
    }

    #[test]
    fn extensions_and_credentials_parse() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let x = Extensions::parse(&l(&["mx.test hi", "SIZE 1000", "STARTTLS", "AUTH LOGIN"]));
        assert!(x.starttls && x.auth_login && !x.auth_plain);
        let x = Extensions::parse(&l(&["STARTTLS", "AUTH=PLAIN"]));
        assert!(!x.starttls, "the first line is the greeting");
        assert!(x.auth_plain);
        let x = Extensions::parse(&l(&["mx.test", "SIZE 10240000", "8bitmime", "SMTPUTF8"]));
        assert!(x.size && x.eight_bit_mime && x.smtputf8);
        let x = Extensions::parse(&l(&["mx.test", "SIZE", "PIPELINING"]));
        assert!(x.size && !x.eight_bit_mime && !x.smtputf8);
        let c = Credentials::parse("# relay\nme@isp.test:pa:ss\n").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("me@isp.test", "pa:ss")
        );
        assert!(!format!("{c:?}").contains("pa:ss"));
        assert!(Credentials::parse("nocolon\n").is_none());
        assert!(Credentials::parse("a:b\nc:d\n").is_none());
        assert!(Credentials::parse(":b\n").is_none());
    }
}
