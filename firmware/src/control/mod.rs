//! Typed request/response messages between the applets over local unix
//! stream sockets (`<run_dir>/<service>.sock`): `pocobelle status`,
//! `pocobelle dns stats`, `pocobelle mail flush`, `pocobelle poweroff`.
//!
//! Each service declares its own `Request` and `Response` enums (serde);
//! this module only frames them: a 4-byte big-endian length, then the
//! postcard encoding, decoded exactly to its end (trailing bytes are an
//! error). A frame is bounded by [`MAX_FRAME_BYTES`]. One request and one
//! response per connection. Nothing here knows about any service.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest control message, request or response. A status report with the
/// DNS hot set fits in a few KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A client gives up on a service that does not answer within this time.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("control socket I/O: {0}")]
    Io(#[from] io::Error),
    #[error("control frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("control message does not decode: {0}")]
    Decode(postcard::Error),
    #[error("control message has {0} trailing bytes")]
    Trailing(usize),
    #[error("control message cannot be encoded: {0}")]
    Encode(postcard::Error),
    #[error("the service did not answer within {CALL_TIMEOUT:?}")]
    Timeout,
}

/// Encodes one message as a frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ControlError> {
    let body = postcard::to_allocvec(msg).map_err(ControlError::Encode)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(ControlError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes a frame body (without the length prefix), exactly to its end.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    let (msg, rest) = postcard::take_from_bytes(body).map_err(ControlError::Decode)?;
    if !rest.is_empty() {
        return Err(ControlError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// Reads one frame and decodes it.
pub async fn read_msg<T, R>(r: &mut R) -> Result<T, ControlError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(ControlError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}

/// Encodes and writes one frame.
pub async fn write_msg<T, W>(w: &mut W, msg: &T) -> Result<(), ControlError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = encode(msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Connects to a service's socket, sends `req` and waits for its answer.
pub async fn call<Req, Resp>(socket: &Path, req: &Req) -> Result<Resp, ControlError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ControlError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        write_msg(&mut s, req).await?;
        read_msg(&mut s).await
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Timeout)?
}

/// Serves one connection: reads a request, answers with `handle(req)`.
pub async fn serve_one<Req, Resp, S, F>(stream: &mut S, handle: F) -> Result<(), ControlError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsyncFnOnce(Req) -> Resp,
{
    let req = tokio::time::timeout(CALL_TIMEOUT, read_msg(stream))
        .await
        .map_err(|_| ControlError::Timeout)??;
    let resp = handle(req).await;
    write_msg(stream, &resp).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Req {
        Stats,
        Flush { domain: Option<String> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Resp {
        Stats { hits: u64, names: Vec<String> },
        Done,
    }

    #[test]
    fn frame_round_trip_and_trailing_bytes() {
        let frame = encode(&Req::Flush {
            domain: Some("home.arpa".into()),
        })
        .unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let back: Req = decode(&frame[4..]).unwrap();
        assert_eq!(
            back,
            Req::Flush {
                domain: Some("home.arpa".into())
            }
        );
        let mut longer = frame[4..].to_vec();
        longer.push(0);
        assert!(matches!(
            decode::<Req>(&longer),
            Err(ControlError::Trailing(1))
        ));
        assert!(decode::<Req>(&[7]).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn oversized_length_is_refused_before_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let r: Result<Req, _> = read_msg(&mut input).await;
        assert!(matches!(r, Err(ControlError::TooLarge(_))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn call_and_serve_over_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("pocobelle-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            serve_one(&mut s, async |req: Req| match req {
                Req::Stats => Resp::Stats {
                    hits: 42,
                    names: vec!["example.org".into()],
                },
                Req::Flush { .. } => Resp::Done,
            })
            .await
            .unwrap();
        });
        let resp: Resp = call(&path, &Req::Stats).await.unwrap();
        server.await.unwrap();
        assert_eq!(
            resp,
            Resp::Stats {
                hits: 42,
                names: vec!["example.org".into()]
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
