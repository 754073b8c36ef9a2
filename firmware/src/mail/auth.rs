//! The password file for SMTP AUTH (`mail.passwd_file`): one `user:hash`
//! per line, the hash in crypt(3) SHA-512 form (`$6$salt$...` or
//! `$6$rounds=N$salt$...`, as `mkpasswd -m sha-512` or `openssl passwd -6`
//! print it); `#` starts a comment line. The file is read again at every
//! AUTH (it is small and bounded), so edits apply at once without a
//! restart. It owns checking credentials; it never logs a password and
//! compares hashes in constant time ([`super::shacrypt`]).

use std::path::Path;

use super::shacrypt;

use crate::smtp::auth::Credentials;
use crate::smtp::session::AuthVerdict;

/// Largest password file read (bytes); a larger one is refused (454).
pub const MAX_PASSWD_FILE: u64 = 64 * 1024;

/// Most SHA-512-crypt rounds accepted in a hash. One check costs about
/// rounds x 2 SHA-512 blocks of CPU on the single-threaded mail service;
/// an entry above this is treated as unusable (logged), never checked.
pub const MAX_ROUNDS: u32 = 20_000;

/// Why the password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PASSWD_FILE`].
    #[error("{path}: larger than {MAX_PASSWD_FILE} bytes")]
    TooLarge { path: String },
}

/// Checks `creds` against the password file at `path`.
pub fn check(path: &Path, creds: &Credentials) -> Result<bool, PasswdError> {
    let p = || path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| PasswdError::Io { path: p(), source })?;
    if meta.len() > MAX_PASSWD_FILE {
        return Err(PasswdError::TooLarge { path: p() });
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| PasswdError::Io { path: p(), source })?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            continue;
        };
        if user != creds.user {
            continue;
        }
        return match shacrypt::parse(hash, MAX_ROUNDS) {
            Ok(h) => Ok(shacrypt::verify(&creds.password, &h)),
            Err(e) => {
                log::warn!(
                    "mail: {}:{}: user {user:?}: {e}; entry ignored",
                    path.display(),
                    i + 1
                );
                Ok(false)
            }
        };
    }
    // Unknown user: spend the same time as a check, so that timing does
    // not tell which user names exist.
    let _ = shacrypt::digest(&creds.password, b"pocobelle", shacrypt::DEFAULT_ROUNDS);
    Ok(false)
}

/// The session's verdict for `creds`; logs the outcome (never the password).
pub fn verdict(path: &Path, creds: &Credentials, peer: std::net::SocketAddr) -> AuthVerdict {
    match check(path, creds) {
        Ok(true) => {
            log::info!("mail: AUTH as {:?} from {peer}", creds.user);
            AuthVerdict::Accepted
        }
        Ok(false) => {
            log::info!("mail: AUTH failed for {:?} from {peer}", creds.user);
            AuthVerdict::Rejected
        }
        Err(e) => {
            log::warn!("mail: password file: {e}");
            AuthVerdict::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made once with OpenSSL 3 (`openssl passwd -6 -salt saltsalt s3cret`)
    // and glibc crypt(3) (`$6$rounds=6000$roundsalt`, hunter2).
    const ALICE: &str = "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1";
    const BOB: &str = "$6$rounds=6000$roundsalt$zh0t8WkPt7GDEKzQ4P3QLnSsOI2GjGl2tqRNha0PvSK49ZkGC5/w45V0xET6YEJSQBjvJ4gmn1FhtRmHhqeV1/";

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(format!("pocobelle-passwd-{name}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn creds(user: &str, pw: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: pw.as_bytes().to_vec(),
        }
    }

    #[test]
    fn right_and_wrong_passwords() {
        let p = file(
            "ok",
            &format!(
                "# household\n\nalice:{ALICE}\nbob:{BOB}\ncarol:plaintext\ndave:$6$rounds=999999$x$y\n"
            ),
        );
        assert!(check(&p, &creds("alice", "s3cret")).unwrap());
        assert!(!check(&p, &creds("alice", "s3cret ")).unwrap());
        assert!(!check(&p, &creds("alice", "hunter2")).unwrap());
        assert!(check(&p, &creds("bob", "hunter2")).unwrap());
        assert!(!check(&p, &creds("nobody", "s3cret")).unwrap());
        assert!(!check(&p, &creds("carol", "plaintext")).unwrap());
        assert!(!check(&p, &creds("dave", "x")).unwrap());
        // Edits apply at once.
        std::fs::write(&p, format!("alice:{BOB}\n")).unwrap();
        assert!(!check(&p, &creds("alice", "s3cret")).unwrap());
        assert!(check(&p, &creds("alice", "hunter2")).unwrap());
        std::fs::remove_file(&p).unwrap();
        assert!(check(&p, &creds("alice", "hunter2")).is_err());
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let p = file("big", &"#".repeat(MAX_PASSWD_FILE as usize + 1));
        assert!(matches!(
            check(&p, &creds("alice", "x")),
            Err(PasswdError::TooLarge { .. })
        ));
        let _ = std::fs::remove_file(&p);
    }
}
