//! The SMTP client used for delivery: one connection to a next hop, over
//! which several messages go one after another (connection reuse). It
//! reports per-recipient results; it never decides about retries or
//! bounces (the scheduler does) and never writes the spool.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::spool::{Extent, SpoolError, read_extents};

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
}

/// One message to send over the connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: u64,
    pub from: String,
    pub rcpts: Vec<(u32, String)>,
    pub extents: Vec<Extent>,
    /// Its retry time has come (false: it rides along on a probe, and a
    /// failed connection records nothing for it).
    pub due: bool,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Per-recipient result of one message.
#[derive(Debug, Clone)]
pub struct Result1 {
    pub index: u32,
    pub reply: ServerReply,
}

pub struct Client {
    io: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `hop` (`host:port`), reads the greeting and says EHLO.
    pub async fn connect(hop: &str, hostname: &str) -> Result<Client, ClientError> {
        let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(hop))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        let mut c = Client {
            io: BufReader::new(tcp),
        };
        let greet = c.read_reply().await?;
        if !greet.is_ok() {
            return Err(ClientError::Refused(greet));
        }
        let ehlo = c.command(&format!("EHLO {hostname}")).await?;
        if !ehlo.is_ok() {
            let helo = c.command(&format!("HELO {hostname}")).await?;
            if !helo.is_ok() {
                return Err(ClientError::Refused(helo));
            }
        }
        Ok(c)
    }

    async fn read_reply(&mut self) -> Result<ServerReply, ClientError> {
        let mut text = String::new();
        for _ in 0..MAX_REPLY_LINES {
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
            let l = String::from_utf8_lossy(&line);
            let l = l.trim_end();
            if l.len() < 3 {
                return Err(ClientError::Malformed);
            }
            let code: u16 = l[..3].parse().map_err(|_| ClientError::Malformed)?;
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(l.get(4..).unwrap_or(""));
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(ServerReply { code, text });
            }
        }
        Err(ClientError::Malformed)
    }

    async fn command(&mut self, line: &str) -> Result<ServerReply, ClientError> {
        let mut l = line.as_bytes().to_vec();
        l.extend_from_slice(b"\r\n");
        self.io.get_mut().write_all(&l).await?;
        self.read_reply().await
    }

    /// Sends one message; returns each recipient's reply (the RCPT reply if
    /// it was refused, else the reply to the end of DATA).
    pub async fn send(
        &mut self,
        spool_dir: &std::path::Path,
        m: &Outgoing,
    ) -> Result<Vec<Result1>, ClientError> {
        let mail = self.command(&format!("MAIL FROM:<{}>", m.from)).await?;
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
        let mut c = Client::connect(&addr.to_string(), "me.test").await.unwrap();
        let r = c.command("NOOP").await;
        assert!(matches!(r, Err(ClientError::Malformed)), "{r:?}");
        server.await.unwrap();
    }
}
