//! The SMTP client used for delivery: one connection to a next hop, over
//! which several messages go one after another (connection reuse). It
//! owns the I/O around the protocol core ([`crate::smtp::client`]: reply
//! parsing, commands, the transaction, dot-stuffing): the socket,
//! timeouts, STARTTLS through rustls, AUTH and reading bodies from the
//! spool. It reports per-recipient results; it never decides about
//! retries or bounces (the scheduler does) and never writes the spool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::spool::record::MessageFlags;
use super::spool::{Extent, SpoolError, read_extents};
use crate::config::TlsMode;
use crate::smtp::client::{
    Command, DataEncoder, MailParams, Next, Parsed, Policy, ReplyError, ReplyParser, Transaction,
};
pub use crate::smtp::client::{Extensions, ServerReply};

/// Timeout for connecting and for each reply (RFC 5321 4.5.3.2 gives
/// minutes; a home network answers in seconds).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

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
    #[error("{0}")]
    Malformed(#[from] ReplyError),
    /// The server sent bytes after its 220 to STARTTLS, before the
    /// handshake (an injection attempt, CVE-2011-0411 class).
    #[error("the server sent data after its STARTTLS reply")]
    StartTlsInjection,
    /// An address cannot be put in a command (it holds a line break).
    #[error("{0}")]
    Command(#[from] crate::smtp::client::CommandError),
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

/// Per-recipient result of one message: the recipient's index in the
/// spool and the reply that decided it.
pub use crate::smtp::client::Outcome as Result1;

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
        let greet = c.read_parsed().await?.reply;
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
                let r = c.command(Command::StartTls).await?;
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
        let ehlo = self.command_parsed(Command::Ehlo(hostname)).await?;
        if ehlo.reply.is_ok() {
            return Ok(Extensions::parse(&ehlo.lines));
        }
        let helo = self.command(Command::Helo(hostname)).await?;
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
            return Err(ClientError::StartTlsInjection);
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
            self.command(Command::AuthPlain {
                user: &cred.user,
                password: &cred.password,
            })
            .await?
        } else if ext.auth_login {
            let r = self.command(Command::AuthLogin).await?;
            if r.code != 334 {
                return Err(ClientError::AuthFailed(r));
            }
            let r = self
                .command(Command::AuthResponse(cred.user.as_bytes()))
                .await?;
            if r.code != 334 {
                return Err(ClientError::AuthFailed(r));
            }
            self.command(Command::AuthResponse(cred.password.as_bytes()))
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

    /// A reply, and the text of each of its lines. Bytes after it stay
    /// in the read buffer.
    async fn read_parsed(&mut self) -> Result<Parsed, ClientError> {
        let mut parser = ReplyParser::default();
        loop {
            let buf = tokio::time::timeout(STEP_TIMEOUT, self.io.fill_buf())
                .await
                .map_err(|_| ClientError::Timeout)??;
            if buf.is_empty() {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let n = buf.len();
            match parser.feed(buf)? {
                Some((used, parsed)) => {
                    self.io.consume(used);
                    return Ok(parsed);
                }
                None => self.io.consume(n),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let w = self.io.get_mut();
        w.write_all(bytes).await?;
        w.flush().await?;
        Ok(())
    }

    /// Sends a command; its reply, and the text of each of its lines.
    async fn command_parsed(&mut self, c: Command<'_>) -> Result<Parsed, ClientError> {
        let mut line = Vec::new();
        c.encode_into(&mut line)?;
        self.write(&line).await?;
        self.read_parsed().await
    }

    async fn command(&mut self, c: Command<'_>) -> Result<ServerReply, ClientError> {
        Ok(self.command_parsed(c).await?.reply)
    }

    /// Sends one message; returns each recipient's reply (the RCPT reply if
    /// it was refused, else the reply to the end of DATA).
    pub async fn send(
        &mut self,
        spool_dir: &std::path::Path,
        m: &Outgoing,
    ) -> Result<Vec<Result1>, ClientError> {
        let params =
            match MailParams::for_hop(m.flags.eight_bit, m.flags.smtputf8, m.size, &self.ext) {
                Ok(p) => p,
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
        let mut out = Vec::with_capacity(256);
        let mut t = Transaction::start(&m.from, params, &m.rcpts, Policy::PerRecipient, &mut out)?;
        let finished = loop {
            self.write(&out).await?;
            out.clear();
            let reply = self.read_parsed().await?.reply;
            match t.reply(reply, &mut out) {
                Next::Command(next) => t = next,
                Next::Body(next) => {
                    // The content, extent by extent, and the final dot.
                    let mut enc = DataEncoder::default();
                    for e in &m.extents {
                        let chunk = read_extents(spool_dir, std::slice::from_ref(e))?;
                        enc.push(&chunk, &mut out);
                        self.io.get_mut().write_all(&out).await?;
                        out.clear();
                    }
                    enc.finish(&mut out);
                    t = next;
                }
                Next::Done(f) => break f,
            }
        };
        if finished.reset {
            let _ = self.command(Command::Rset).await;
        }
        Ok(finished.outcomes)
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command(Command::Quit)).await;
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
            // The EHLO reply cut in two writes.
            s.write_all(b"250-x\r\n250-SI").await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"ZE 1\r\n250 OK\r\n").await.unwrap();
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
        assert!(c.ext.size && c.ext.size_limit == Some(1));
        let r = c.command(Command::Noop).await;
        assert!(
            matches!(r, Err(ClientError::Malformed(ReplyError::Malformed))),
            "{r:?}"
        );
        server.await.unwrap();
    }

    /// A fake next hop: answers each command line as a server would
    /// (MAIL from `bad@` and RCPT to `no@` refused), and returns all it
    /// read once the client says QUIT.
    async fn fake_hop(l: tokio::net::TcpListener) -> String {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        let mut seen = Vec::new();
        s.get_mut().write_all(b"220 hi\r\n").await.unwrap();
        let mut in_data = false;
        loop {
            let mut line = Vec::new();
            if s.read_until(b'\n', &mut line).await.unwrap() == 0 {
                break;
            }
            seen.extend_from_slice(&line);
            let reply: &[u8] = if in_data {
                if line != b".\r\n" {
                    continue;
                }
                in_data = false;
                b"250 2.0.0 queued\r\n"
            } else if line.starts_with(b"EHLO") {
                b"250-fake\r\n250 SIZE 100\r\n"
            } else if line.starts_with(b"MAIL FROM:<bad@") {
                b"451 4.3.0 later\r\n"
            } else if line.starts_with(b"RCPT TO:<no@") {
                b"550 5.1.1 no such user\r\n"
            } else if line.starts_with(b"DATA") {
                in_data = true;
                b"354 go\r\n"
            } else if line.starts_with(b"QUIT") {
                s.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            s.get_mut().write_all(reply).await.unwrap();
        }
        String::from_utf8(seen).unwrap()
    }

    /// The wire as the core makes it: per-recipient results, the body
    /// dot-stuffed across extents, RSET after a refused MAIL.
    #[tokio::test(flavor = "current_thread")]
    async fn sends_messages_through_the_core() {
        let dir = std::env::temp_dir().join(format!("pocobelle-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = b"Subject: x\r\n\r\nline\r\n.dot\r\nend";
        std::fs::write(dir.join("seg-0000000000000001.log"), body).unwrap();
        let extents = vec![
            Extent {
                seg: 1,
                offset: 0,
                len: 20,
            },
            Extent {
                seg: 1,
                offset: 20,
                len: body.len() as u32 - 20,
            },
        ];
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(fake_hop(l));
        let cfg = crate::config::MailConfig::default();
        let tls = OutboundTls::new(&cfg);
        let s = Session {
            hostname: "me.test",
            tls: TlsMode::None,
            peer_name: "127.0.0.1",
            configs: &tls,
            auth: None,
        };
        let mut c = Client::connect(addr, &s).await.unwrap();
        let mut m = Outgoing {
            id: 1,
            from: "a@b.test".into(),
            rcpts: vec![(4, "x@t.test".into()), (5, "no@t.test".into())],
            extents,
            received: 0,
            due: true,
            attempts: 0,
            flags: MessageFlags {
                eight_bit: false,
                smtputf8: false,
            },
            size: body.len() as u64,
        };
        let r = c.send(&dir, &m).await.unwrap();
        let got: Vec<(u32, u16)> = r.iter().map(|r| (r.index, r.reply.code)).collect();
        assert_eq!(got, [(4, 250), (5, 550)]);
        m.from = "bad@b.test".into();
        let r = c.send(&dir, &m).await.unwrap();
        let got: Vec<(u32, u16)> = r.iter().map(|r| (r.index, r.reply.code)).collect();
        assert_eq!(got, [(4, 451), (5, 451)]);
        c.quit().await;
        let wire = server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            wire,
            "EHLO me.test\r\n\
             MAIL FROM:<a@b.test> SIZE=29\r\nRCPT TO:<x@t.test>\r\nRCPT TO:<no@t.test>\r\n\
             DATA\r\nSubject: x\r\n\r\nline\r\n..dot\r\nend\r\n.\r\n\
             MAIL FROM:<bad@b.test> SIZE=29\r\nRSET\r\nQUIT\r\n"
        );
    }

    #[test]
    fn credentials_parse() {
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
