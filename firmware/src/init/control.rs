//! Init's control protocol on `<run_dir>/init.sock`: the typed requests
//! (`status`, `log`, `poweroff`, `reboot`, `halt`) and responses, the status
//! report and its 80-column rendering, and the synchronous server side
//! used by the PID 1 loop (framing from `crate::control`). Clients use
//! `crate::control::call`. This module never acts on a request itself: it
//! hands it to the loop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{self, ControlError, MAX_FRAME_BYTES};
use crate::init::storage::LastShutdown;

/// The socket's file name under `system.run_dir`.
pub const SOCKET_NAME: &str = "init.sock";
/// A client that does not send its request within this time is dropped.
pub const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Width the status report fits in.
pub const STATUS_COLUMNS: usize = 80;

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_NAME)
}

/// How the system goes down.
#[allow(clippy::enum_variant_names)] // the three modes are named as reboot(2) and BusyBox name them
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Halt {
    Poweroff,
    Reboot,
    Halt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Status,
    /// The log ring's lines, oldest first.
    Log,
    Shutdown(Halt),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Status(Box<StatusReport>),
    Log(Vec<String>),
    /// The shutdown has begun.
    ShuttingDown(Halt),
}

/// One service in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    /// `running`, `pending`, `backoff`, `stopping`, `stopped`.
    pub state: String,
    pub pid: Option<i32>,
    pub up_secs: Option<u64>,
    pub rss_kib: Option<u64>,
    pub restarts: u32,
    pub crash_loop: bool,
    pub ready: bool,
    pub last_exit: Option<String>,
    /// Why it is not running, when init chose not to start it.
    #[serde(default)]
    pub note: Option<String>,
}

/// The last successful SNTP synchronisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    pub server: String,
    pub offset_ms: i64,
    /// When it happened (Unix seconds).
    pub at_unix: u64,
}

/// The longest server name `status` prints (then it is cut with `~`).
pub const STATUS_SERVER_CHARS: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub uptime_secs: u64,
    /// `normal`, `safe (config did not parse)`, `recovery`.
    pub boot_mode: String,
    pub last_shutdown: LastShutdown,
    pub clock_restored: bool,
    pub clock_synced: bool,
    /// The last SNTP synchronisation, when there was one.
    pub clock_sync: Option<ClockSync>,
    pub now_secs: u64,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub swap_total_kib: u64,
    pub swap_free_kib: u64,
    /// In safe mode: why the configuration was not used (its error).
    #[serde(default)]
    pub safe_reason: Option<String>,
    /// The watchdog kept alive, as `/dev/watchdog, timeout 60 s, fed
    /// every 10 s`; `None`: no watchdog.
    #[serde(default)]
    pub watchdog: Option<String>,
    /// `e2fsck -p`'s outcome on the data partition, when this boot ran it
    /// (the last shutdown was not clean).
    #[serde(default)]
    pub fsck: Option<String>,
    /// The UPS monitor's last word (`init::power`), when `[ups]` is
    /// configured: `Some("")` while there is no reading yet.
    #[serde(default)]
    pub power: Option<String>,
    /// What mail's spool recovery found at its last start.
    #[serde(default)]
    pub spool: Option<String>,
    pub services: Vec<ServiceReport>,
}

/// What `pocobelle status` adds from the services' own sockets, when
/// they answer: the DNS cache's size and hit rate, the mail queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceFigures {
    /// Cached names and the hit rate (0.0 ..= 1.0).
    pub dns: Option<(u64, f64)>,
    /// Queued messages and their bytes, and the anti-spam checks'
    /// decisions since mail started.
    pub mail: Option<(u64, u64, crate::mail::policy::Counts)>,
}

/// The lines for [`ServiceFigures`]; nothing for a service that did not
/// answer (it is not running, or its state is in the table above).
pub fn render_figures(f: &ServiceFigures) -> String {
    let mut out = String::new();
    if let Some((names, rate)) = f.dns {
        out.push_str(&format!(
            "dns    {names} names cached, hit rate {:.1}%\n",
            rate * 100.0
        ));
    }
    if let Some((messages, bytes, policy)) = f.mail {
        out.push_str(&format!(
            "mail   queue {messages} message{}, {:.1} KiB\n",
            if messages == 1 { "" } else { "s" },
            bytes as f64 / 1024.0
        ));
        out.push_str(&wrap(
            &format!("since start: {}", policy.render()),
            "       ",
            STATUS_COLUMNS,
        ));
    }
    out
}

/// Splits `text` at spaces into lines of at most `width` bytes (a longer
/// word is cut), each prefixed with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
        if line.len() > width {
            out.push_str(truncate(&line, width));
            out.push('\n');
            line = String::from(indent);
        }
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn dur(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The report as `pocobelle status` prints it: every line at most
/// [`STATUS_COLUMNS`] wide.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let last = match r.last_shutdown {
        LastShutdown::Clean => "clean",
        LastShutdown::Unclean => "NOT clean (power loss or crash)",
        LastShutdown::Unknown => "unknown",
    };
    out.push_str(&format!(
        "uptime {}   boot {}   last shutdown {}\n",
        dur(r.uptime_secs),
        r.boot_mode,
        last
    ));
    out.push_str(&format!(
        "memory {} available of {}   swap {} used of {}\n",
        mib(r.mem_available_kib),
        mib(r.mem_total_kib),
        mib(r.swap_total_kib.saturating_sub(r.swap_free_kib)),
        mib(r.swap_total_kib)
    ));
    let unix = format!(" (unix {})", r.now_secs);
    let clock = if let Some(c) = &r.clock_sync {
        let rest = format!(
            ", {:+} ms, {} ago)",
            c.offset_ms,
            dur(r.now_secs.saturating_sub(c.at_unix))
        );
        // "clock  synced (" + server + rest + unix within the columns.
        let room = STATUS_COLUMNS
            .saturating_sub(15 + rest.len() + unix.len())
            .clamp(8, STATUS_SERVER_CHARS);
        let mut server: String = c.server.chars().take(room).collect();
        if c.server.chars().count() > room {
            server.pop();
            server.push('~');
        }
        format!("synced ({server}{rest}")
    } else if r.clock_restored {
        "restored from the saved time, not synced".into()
    } else {
        "not synced".into()
    };
    out.push_str(&format!("clock  {clock}{unix}\n"));
    match &r.watchdog {
        Some(w) => out.push_str(&wrap(&format!("watchdog active: {w}"), "", STATUS_COLUMNS)),
        None => out.push_str("watchdog none\n"),
    }
    // "label  text", the text wrapped under itself.
    let labelled = |label: &str, text: &str| {
        let body = wrap(text, "       ", STATUS_COLUMNS);
        format!("{label:<7}{}", &body[7.min(body.len())..])
    };
    if let Some(f) = &r.fsck {
        out.push_str(&labelled("fsck", &format!("data partition: {f}")));
    }
    if let Some(sp) = &r.spool {
        out.push_str(&labelled("spool", sp));
    }
    match r.power.as_deref() {
        None => out.push_str("power  no UPS configured\n"),
        Some("") => out.push_str("power  UPS configured, no reading yet\n"),
        Some(p) => out.push_str(&labelled("power", p)),
    }
    if let Some(why) = &r.safe_reason {
        out.push_str("SAFE MODE: the configuration did not parse; only safe-mode services run\n");
        out.push_str(&wrap(why, "  ", STATUS_COLUMNS));
    }
    out.push_str(&format!(
        "\n{:<12} {:<9} {:>6} {:>10} {:>9} {:>8}  {}\n",
        "SERVICE", "STATE", "PID", "UP", "RSS", "RESTARTS", "NOTE"
    ));
    for s in &r.services {
        let mut note = String::new();
        if s.crash_loop {
            note.push_str("CRASH LOOP ");
        }
        if s.ready {
            note.push_str("primed ");
        }
        if let Some(n) = &s.note {
            note.push_str(n);
            note.push(' ');
        }
        if let Some(e) = &s.last_exit {
            note.push_str("last: ");
            note.push_str(e);
        }
        let line = format!(
            "{:<12} {:<9} {:>6} {:>10} {:>9} {:>8}  {}",
            truncate(&s.name, 12),
            s.state,
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.up_secs.map(dur).unwrap_or_else(|| "-".into()),
            s.rss_kib
                .map(|k| format!("{:.1}M", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            s.restarts,
            note.trim_end()
        );
        out.push_str(truncate(&line, STATUS_COLUMNS));
        out.push('\n');
    }
    if r.services.is_empty() {
        out.push_str("(no services configured)\n");
    }
    out
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Reads one request from an accepted connection (blocking, bounded by
/// [`SERVER_IO_TIMEOUT`] and [`MAX_FRAME_BYTES`]).
pub fn read_request(s: &mut UnixStream) -> Result<Request, ControlError> {
    s.set_read_timeout(Some(SERVER_IO_TIMEOUT))?;
    s.set_write_timeout(Some(SERVER_IO_TIMEOUT))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(ControlError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    control::decode(&body)
}

/// Writes one response.
pub fn write_response(s: &mut UnixStream, r: &Response) -> Result<(), ControlError> {
    let frame = control::encode(r)?;
    s.write_all(&frame)?;
    Ok(())
}

/// Sends `req` to init and waits for the answer (client side).
pub fn call(run_dir: &Path, req: &Request) -> Result<Response, ControlError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(control::call(&socket_path(run_dir), req))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            uptime_secs: 3 * 86400 + 3600 + 61,
            boot_mode: "normal".into(),
            last_shutdown: LastShutdown::Unclean,
            clock_restored: true,
            clock_synced: false,
            clock_sync: None,
            now_secs: 1_800_000_000,
            mem_total_kib: 61_284,
            mem_available_kib: 30_000,
            swap_total_kib: 131_068,
            swap_free_kib: 120_000,
            safe_reason: None,
            watchdog: None,
            fsck: None,
            power: None,
            spool: None,
            services: vec![
                ServiceReport {
                    name: "dns".into(),
                    state: "running".into(),
                    pid: Some(1234),
                    up_secs: Some(3600),
                    rss_kib: Some(5_000),
                    restarts: 0,
                    crash_loop: false,
                    ready: true,
                    last_exit: None,
                    note: None,
                },
                ServiceReport {
                    name: "a-service-with-a-long-name".into(),
                    state: "backoff".into(),
                    pid: None,
                    up_secs: None,
                    rss_kib: None,
                    restarts: 7,
                    crash_loop: true,
                    ready: false,
                    last_exit: Some(
                        "exited with status 1 after a very long and wordy explanation".into(),
                    ),
                    note: None,
                },
            ],
        }
    }

    #[test]
    fn status_fits_80_columns_and_says_what_matters() {
        let mut r = report();
        r.boot_mode = "recovery".into();
        r.uptime_secs = 99 * 86400;
        let text = render(&r);
        assert!(text.contains("boot recovery"), "{text}");
        for line in text.lines() {
            assert!(
                line.len() <= STATUS_COLUMNS,
                "{line:?} is {} wide",
                line.len()
            );
        }
        assert!(text.contains("last shutdown NOT clean"), "{text}");
        assert!(text.contains("CRASH LOOP"), "{text}");
        assert!(text.contains("swap 10.8 MiB used of 128.0 MiB"), "{text}");
        assert!(text.contains("restored from the saved time"), "{text}");
        assert!(text.contains("dns          running"), "{text}");
    }

    #[test]
    fn fsck_and_power_lines() {
        let mut r = report();
        let text = render(&r);
        assert!(text.contains("power  no UPS configured"), "{text}");
        assert!(!text.contains("fsck"), "{text}");
        r.fsck = Some("errors corrected (status 1)".into());
        r.power = Some(String::new());
        let text = render(&r);
        assert!(
            text.contains("fsck   data partition: errors corrected (status 1)"),
            "{text}"
        );
        assert!(
            text.contains("power  UPS configured, no reading yet"),
            "{text}"
        );
        r.power = Some(format!(
            "ON BATTERY, 45 %, about 12 min left{}",
            " x".repeat(60)
        ));
        let text = render(&r);
        assert!(text.contains("power  ON BATTERY, 45 %"), "{text}");
        assert!(text.lines().all(|l| l.len() <= STATUS_COLUMNS), "{text}");
    }

    #[test]
    fn synced_clock_shown_with_server_offset_and_age() {
        let mut r = report();
        r.clock_synced = true;
        r.clock_sync = Some(ClockSync {
            server: "a-very-long-ntp-server-name.example.org".into(),
            offset_ms: -1234,
            at_unix: r.now_secs - 302,
        });
        let text = render(&r);
        assert!(
            text.contains("clock  synced (a-very-long-ntp-server-~, -1234 ms, 5m02s ago)"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= STATUS_COLUMNS), "{text}");
        r.clock_sync = None;
        r.clock_restored = false;
        assert!(render(&r).contains("clock  not synced"));
    }

    #[test]
    fn service_figures_are_shown_when_they_answered() {
        assert_eq!(render_figures(&ServiceFigures::default()), "");
        let counts = crate::mail::policy::Counts {
            accepted: 14,
            greylisted: 30,
            relay_denied: 7,
            unknown_user: 2,
            refused: 3,
            deferred: 1,
            over_limits: 4,
            early_talkers: 5,
            dmarc_rejected: 6,
        };
        let text = render_figures(&ServiceFigures {
            dns: Some((10_000, 0.8734)),
            mail: Some((1, 4096, counts)),
        });
        assert_eq!(
            text,
            "dns    10000 names cached, hit rate 87.3%\nmail   queue 1 message, 4.0 KiB\n\
             \x20      since start: recipients 14 accepted, 30 greylisted, 7 relay denied, 2\n\
             \x20      unknown user, 3 refused and 1 deferred by DNS checks; 4 refused over the\n\
             \x20      client limits, 5 early talkers, 6 messages refused by DMARC\n"
        );
        let max = crate::mail::policy::Counts {
            accepted: u64::MAX,
            greylisted: u64::MAX,
            relay_denied: u64::MAX,
            unknown_user: u64::MAX,
            refused: u64::MAX,
            deferred: u64::MAX,
            over_limits: u64::MAX,
            early_talkers: u64::MAX,
            dmarc_rejected: u64::MAX,
        };
        let text = render_figures(&ServiceFigures {
            dns: None,
            mail: Some((u64::MAX, u64::MAX, max)),
        });
        assert!(
            text.starts_with("mail   queue 18446744073709551615 messages"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= STATUS_COLUMNS), "{text}");
    }

    #[test]
    fn safe_mode_and_watchdog_are_shown_within_80_columns() {
        let mut r = report();
        assert!(render(&r).contains("watchdog none"));
        r.boot_mode = "safe".into();
        r.safe_reason = Some(format!(
            "/etc/pocobelle.toml:7: key `mail.listen`: {}",
            "expected an address such as 0.0.0.0:25, found something else entirely ".repeat(3)
        ));
        r.watchdog = Some("/dev/watchdog, timeout 60 s, fed every 10 s".into());
        r.services.push(ServiceReport {
            name: "mail".into(),
            state: "off".into(),
            pid: None,
            up_secs: None,
            rss_kib: None,
            restarts: 0,
            crash_loop: false,
            ready: false,
            last_exit: None,
            note: Some("safe mode".into()),
        });
        let text = render(&r);
        for line in text.lines() {
            assert!(line.len() <= STATUS_COLUMNS, "{line:?}");
        }
        assert!(text.contains("SAFE MODE"), "{text}");
        assert!(
            text.contains("  /etc/pocobelle.toml:7: key `mail.listen`:"),
            "{text}"
        );
        assert!(text.contains("found something else entirely"), "{text}");
        assert!(
            text.contains("watchdog active: /dev/watchdog, timeout 60 s"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("mail ") && l.contains(" off ") && l.ends_with("safe mode")),
            "{text}"
        );
    }

    #[test]
    fn messages_round_trip() {
        for req in [Request::Status, Request::Shutdown(Halt::Poweroff)] {
            let f = control::encode(&req).unwrap();
            assert_eq!(control::decode::<Request>(&f[4..]).unwrap(), req);
        }
        let r = Response::Status(Box::new(report()));
        let f = control::encode(&r).unwrap();
        assert_eq!(control::decode::<Response>(&f[4..]).unwrap(), r);
    }

    #[test]
    fn request_decoder_fuzz_never_panics() {
        let mut x: u64 = 0x9999_1111_2222;
        for _ in 0..5000 {
            let n = (x % 24) as usize;
            let mut b = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let _ = control::decode::<Request>(&b);
            let _ = control::decode::<Response>(&b);
        }
    }

    #[test]
    fn sync_server_answers_the_async_client() {
        let dir = std::env::temp_dir().join(format!("pocobelle-initctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = socket_path(&dir);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let req = read_request(&mut s).unwrap();
            assert_eq!(req, Request::Shutdown(Halt::Reboot));
            write_response(&mut s, &Response::ShuttingDown(Halt::Reboot)).unwrap();
        });
        let resp = call(&dir, &Request::Shutdown(Halt::Reboot)).unwrap();
        assert_eq!(resp, Response::ShuttingDown(Halt::Reboot));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
