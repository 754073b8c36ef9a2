//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN
//! mechanisms' messages, and the base64 they travel in. It owns decoding
//! only: checking a password against the password file is the caller's
//! business (mail/auth.rs), and nothing here logs or keeps a password.

use std::fmt;

/// Longest user name accepted (bytes).
pub const MAX_USER: usize = 255;
/// Longest password accepted (bytes).
pub const MAX_PASSWORD: usize = 255;

/// The `334` challenge text of LOGIN asking for the user name
/// (base64 of `Username:`).
pub const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
/// The `334` challenge text of LOGIN asking for the password
/// (base64 of `Password:`).
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// A user name and password sent by a client. Its `Debug` form hides the
/// password so that it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why a SASL message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The text is not base64 (RFC 4648 alphabet, with padding).
    #[error("cannot decode the base64 response")]
    Base64,
    /// The PLAIN message does not have the form `authzid NUL user NUL password`.
    #[error("malformed PLAIN response")]
    Plain,
    /// The user name is empty, too long or not UTF-8, or the password is
    /// empty or too long.
    #[error("user name or password empty, too long or not UTF-8")]
    BadField,
    /// PLAIN asked to act as another user (authzid): not supported.
    #[error("authorization identity differs from the user name")]
    Authzid,
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Strict base64 decoding (length a multiple of 4, `=` only at the end).
/// `=` alone is the empty string (RFC 4954 4).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, SaslError> {
    let t = text.as_bytes();
    if t == b"=" {
        return Ok(Vec::new());
    }
    if !t.len().is_multiple_of(4) {
        return Err(SaslError::Base64);
    }
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (k, quad) in t.chunks(4).enumerate() {
        let last = (k + 1) * 4 == t.len();
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(SaslError::Base64);
        }
        let mut v: u32 = 0;
        for &c in &quad[..4 - pad] {
            v = (v << 6) | b64_value(c).ok_or(SaslError::Base64)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// Standard base64 with padding (RFC 4648): the AUTH client's
/// encoding, and the tests'.
#[inline(never)]
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let v = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(v >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn user_of(bytes: Vec<u8>) -> Result<String, SaslError> {
    if bytes.is_empty() || bytes.len() > MAX_USER || bytes.contains(&0) {
        return Err(SaslError::BadField);
    }
    String::from_utf8(bytes).map_err(|_| SaslError::BadField)
}

fn password_of(bytes: Vec<u8>) -> Result<Vec<u8>, SaslError> {
    if bytes.is_empty() || bytes.len() > MAX_PASSWORD || bytes.contains(&0) {
        return Err(SaslError::BadField);
    }
    Ok(bytes)
}

/// Decodes a PLAIN response (`[authzid] NUL authcid NUL passwd`, base64).
pub fn plain(text: &str) -> Result<Credentials, SaslError> {
    let raw = base64_decode(text)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Plain);
    };
    if !authz.is_empty() && authz != user {
        return Err(SaslError::Authzid);
    }
    Ok(Credentials {
        user: user_of(user.to_vec())?,
        password: password_of(pass.to_vec())?,
    })
}

/// Decodes LOGIN's user name line.
pub fn login_user(text: &str) -> Result<String, SaslError> {
    user_of(base64_decode(text)?)
}

/// Decodes LOGIN's password line.
pub fn login_password(text: &str) -> Result<Vec<u8>, SaslError> {
    password_of(base64_decode(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_strictness() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(base64_decode(&base64_encode(s)).unwrap(), s);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("=").unwrap(), b"");
        for bad in ["Zm8", "Zm=8", "Z===", "Zm8=Zm8=", "Zm9v!A==", "Zm 9"] {
            assert_eq!(base64_decode(bad), Err(SaslError::Base64), "{bad}");
        }
        assert_eq!(base64_decode(LOGIN_USER_PROMPT).unwrap(), b"Username:");
        assert_eq!(base64_decode(LOGIN_PASSWORD_PROMPT).unwrap(), b"Password:");
    }

    #[test]
    fn plain_messages() {
        let c = plain(&base64_encode(b"\0alice\0s3cret")).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, b"s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(plain(&base64_encode(b"alice\0alice\0pw")).is_ok());
        assert_eq!(
            plain(&base64_encode(b"bob\0alice\0pw")),
            Err(SaslError::Authzid)
        );
        assert_eq!(plain(&base64_encode(b"alice\0pw")), Err(SaslError::Plain));
        assert_eq!(
            plain(&base64_encode(b"\0alice\0pw\0x")),
            Err(SaslError::Plain)
        );
        assert_eq!(plain(&base64_encode(b"\0\0pw")), Err(SaslError::BadField));
        assert_eq!(
            plain(&base64_encode(b"\0alice\0")),
            Err(SaslError::BadField)
        );
        assert_eq!(
            plain(&base64_encode(b"\0\xff\0pw")),
            Err(SaslError::BadField)
        );
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
        assert_eq!(base64_encode(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
    }
}
