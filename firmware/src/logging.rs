//! The process-wide logger: `log` records to stderr, one line each,
//! prefixed with the applet's name so that the lines of several services
//! on one console can be told apart. PID 1 adds its log ring with
//! [`set_sink`]; this module never allocates per record beyond one line.

use std::io::Write;
use std::sync::OnceLock;

use log::{LevelFilter, Log, Metadata, Record};

/// Environment variable that overrides the configured level
/// (`error`, `warn`, `info`, `debug`, `trace`).
pub const ENV_LEVEL: &str = "POCOBELLE_LOG";

/// One log line is cut at this many bytes so that a runaway message cannot
/// flood a serial console or the log ring.
pub const MAX_LINE_BYTES: usize = 1024;

struct StderrLogger {
    applet: &'static str,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Where each formatted line also goes (PID 1's log ring), when set.
static SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Sends every later log line to `sink` as well as to stderr.
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format!("{}: {}: {}", self.applet, record.level(), record.args());
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" [cut]");
        }
        if let Some(sink) = SINK.get() {
            sink(&line);
        }
        line.push('\n');
        // A closed stderr must not take the service down.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Parses a level name as used by `POCOBELLE_LOG`.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger once; later calls only change the level.
/// `POCOBELLE_LOG`, when set to a valid level, wins over `level`.
pub fn init(applet: &'static str, level: LevelFilter) {
    let level = std::env::var(ENV_LEVEL)
        .ok()
        .and_then(|v| parse_level(&v))
        .unwrap_or(level);
    let logger = LOGGER.get_or_init(|| StderrLogger { applet });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" warning "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
