//! `[system]`: who the board is and where its writable data lives.

use std::path::PathBuf;

use super::Invalid;
use super::read::toml_table;

/// A hostname longer than this is not a valid DNS label sequence for
/// `uname` (Linux `__NEW_UTS_LEN`).
pub const MAX_HOSTNAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct SystemConfig {
    /// The board's host name, also used in SMTP greetings. Default `pocobelle`.
    pub hostname: String,
    /// Mount point of the writable data partition: spool, DNS snapshot,
    /// swap file, saved clock. Default `/data`.
    pub data_dir: PathBuf,
    /// Directory for control sockets and readiness files (tmpfs).
    /// Default `/run/pocobelle`.
    pub run_dir: PathBuf,
}
toml_table!(SystemConfig {
    hostname,
    data_dir,
    run_dir
});

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname: "pocobelle".to_string(),
            data_dir: PathBuf::from("/data"),
            run_dir: PathBuf::from("/run/pocobelle"),
        }
    }
}

impl SystemConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let h = &self.hostname;
        let ok = !h.is_empty()
            && h.len() <= MAX_HOSTNAME_LEN
            && h.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(Invalid {
                key: "system.hostname".into(),
                message: format!(
                    "expected a host name of letters, digits, '-' and '.', at most {MAX_HOSTNAME_LEN} bytes, found {h:?}"
                ),
            });
        }
        for (key, path) in [
            ("system.data_dir", &self.data_dir),
            ("system.run_dir", &self.run_dir),
        ] {
            if !path.is_absolute() {
                return Err(Invalid {
                    key: key.into(),
                    message: format!("expected an absolute path, found {path:?}"),
                });
            }
        }
        Ok(())
    }
}
