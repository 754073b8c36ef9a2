//! The one configuration file, `/etc/pocobelle.toml`.
//!
//! This module owns the schema (typed structs, each key's default and
//! bounds declared next to it), parsing, and validation. Every error names
//! the file, the line and the dotted key, and says what was expected.
//! Unknown keys are errors. It never reads anything but the file it is
//! given and never keeps configuration in globals.

mod dns;
pub mod init;
mod locate;
mod log;
pub mod mail;
mod net;
pub mod policy;
mod read;
mod system;
pub mod ups;

use std::fmt;
use std::path::{Path, PathBuf};

use self::read::{FromToml, toml_table};

#[cfg(test)]
pub use self::dns::HostEntry;
pub use self::dns::{DnsConfig, TimeOfDay};
pub use self::init::{InitConfig, NetworkConfig, Readiness, ServiceConfig};
pub use self::log::{LogConfig, LogLevel};
pub use self::mail::{MailConfig, Route, TlsMode};
pub use self::net::Prefix;
pub use self::policy::{Action, DnsList, PolicyConfig, RdnsConfig, SpfConfig};
pub use self::system::SystemConfig;
pub use self::ups::{UpsConfig, UpsMode};

/// Where the board's configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/pocobelle.toml";

/// A configuration file larger than this is refused before parsing: the
/// documented example is a few KiB, and the parser must not be handed an
/// arbitrarily large input on a 64 MB board.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// The whole configuration. Each section is optional in the file and has
/// documented defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub system: SystemConfig,
    pub log: LogConfig,
    pub init: InitConfig,
    pub dns: DnsConfig,

    pub mail: MailConfig,
    /// `[ups]`: absent, no UPS is watched.
    pub ups: Option<UpsConfig>,
}
toml_table!(Config {
    system,
    log,
    init,
    dns,
    mail,
    ups
});

/// What went wrong while loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error(
        "{path}: file is {size} bytes, more than the {max}-byte limit for a configuration file"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    /// The file is not valid UTF-8 TOML, or a key or value does not fit
    /// the schema (unknown key, wrong type).
    #[error("{}", located(path, *line, key.as_deref(), message))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    /// A value has the right type but is outside its bounds, or keys
    /// contradict each other.
    #[error("{}", located(path, *line, Some(key), message))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

fn located(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut s = path.display().to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
    }
    s.push_str(": ");
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        s.push_str(&format!("key `{key}`: "));
    }
    s.push_str(message);
    s
}

/// A value that failed validation, before it is given a file and a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}`: {}", self.key, self.message)
    }
}

/// Checks that an integer key lies within its declared bounds.
pub(crate) fn check_range<T>(key: &str, value: T, min: T, max: T) -> Result<(), Invalid>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(Invalid {
            key: key.to_string(),
            message: format!("expected a value from {min} to {max}, found {value}"),
        });
    }
    Ok(())
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                max: MAX_CONFIG_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let parse_err = |line, key, message| ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            key,
            message,
        };
        let table = toml::de::DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|s| locate::line_of(text, s.start));
            parse_err(line, None, e.message().trim().to_string())
        })?;
        let config = Config::read(&read::root(table), "").map_err(|e| {
            let line = Some(locate::line_of(text, e.span.start));
            parse_err(line, (!e.key.is_empty()).then_some(e.key), e.message)
        })?;
        config.validate().map_err(|inv| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: locate::line_of_key(text, &inv.key),
            key: inv.key,
            message: inv.message,
        })?;
        Ok(config)
    }

    /// Checks bounds and relations between keys.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.system.validate()?;
        self.log.validate()?;
        self.init.validate()?;
        self.dns.validate()?;

        self.mail.validate()?;
        if let Some(u) = &self.ups {
            u.validate()?;
        }
        crate::mail::aliases::Aliases::new(&self.mail, &self.system.hostname)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/pocobelle.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.log.level, LogLevel::Info);
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
        parse(text).unwrap();
    }

    #[test]
    fn typo_in_key_names_line_and_key() {
        let text = "[system]\nhostname = \"box\"\n\n[log]\nlevle = \"debug\"\n";
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/pocobelle.toml:5: "), "{msg}");
        assert!(msg.contains("levle"), "{msg}");
        assert!(
            msg.contains("level"),
            "should list the expected keys: {msg}"
        );
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[sytem]\nhostname = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1:"), "{err}");
        assert!(err.contains("sytem"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_expectation() {
        let err = parse("[log]\nlevel = 3\n").unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(err.contains("log.level"), "{err}");
    }

    #[test]
    fn errors_in_arrays_of_tables_name_the_item() {
        let text =
            "[[dns.hosts]]\nname = \"a\"\naddrs = [\"10.0.0.1\"]\n\n[[dns.hosts]]\nname = 3\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/pocobelle.toml:6: key `dns.hosts[1].name`: "),
            "{err}"
        );
        let err = parse("[[init.service]]\nname = \"x\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3: key `init.service[0].bogus`: unknown field"),
            "{err}"
        );
        let err = parse("[[dns.hosts]]\naddrs = [\"10.0.0.1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `dns.hosts[0]`: missing field `name`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("[log]\nlevel = \"info\n").unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_line_and_key() {
        let err = parse("[system]\n\nhostname = \"\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }));
        let msg = err.to_string();
        assert!(msg.contains(":3:"), "{msg}");
        assert!(msg.contains("system.hostname"), "{msg}");
    }

    #[test]
    fn check_range_reports_bounds() {
        assert!(check_range("a.b", 5u32, 1, 10).is_ok());
        let e = check_range("a.b", 11u32, 1, 10).unwrap_err();
        assert_eq!(e.message, "expected a value from 1 to 10, found 11");
    }
}
