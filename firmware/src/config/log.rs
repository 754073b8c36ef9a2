//! `[log]`: how much the services say.

use super::Invalid;
use super::read::{toml_enum, toml_table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}
toml_enum!(LogLevel { "error" => Error, "warn" => Warn, "info" => Info, "debug" => Debug, "trace" => Trace });

impl LogLevel {
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`. The
    /// environment variable `POCOBELLE_LOG` overrides it.
    pub level: LogLevel,
}
toml_table!(LogConfig { level });

impl LogConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
