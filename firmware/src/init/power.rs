//! The power state as the UPS monitor (`pocobelle ups`, a supervised
//! service) hands it to init and to mail: one small `key=value` file in
//! the run directory (tmpfs), replaced atomically by the monitor on every
//! change and read by the others when its modification time moves. The
//! monitor decides (`crate::ups::state`); init only holds or releases
//! mail, shows the state in `status`, and at a power shutdown asks the
//! UPS to cut and later restore the power. Pure parse and render, with
//! bounds; a file that does not parse is "no reading", never a decision.

use std::path::{Path, PathBuf};

/// The file's name in `system.run_dir`.
pub const POWER_FILE: &str = "power";
/// A power file larger than this is not read.
pub const MAX_POWER_FILE_BYTES: usize = 1024;
/// The free-text fields (`ups`, `detail`) are cut to this many bytes.
pub const MAX_TEXT: usize = 160;

/// What the UPS says, as the monitor sums it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supply {
    /// No reading yet, or upsd is unreachable while the UPS was on line.
    Unknown,
    OnLine,
    OnBattery,
    /// The UPS says LB, or it went silent while on battery (NUT's rule).
    LowBattery,
    /// Forced shutdown (FSD) from upsd's primary.
    ForcedShutdown,
}

impl Supply {
    pub fn as_str(self) -> &'static str {
        match self {
            Supply::Unknown => "unknown",
            Supply::OnLine => "online",
            Supply::OnBattery => "onbattery",
            Supply::LowBattery => "lowbattery",
            Supply::ForcedShutdown => "fsd",
        }
    }

    fn parse(s: &str) -> Option<Supply> {
        Some(match s {
            "unknown" => Supply::Unknown,
            "online" => Supply::OnLine,
            "onbattery" => Supply::OnBattery,
            "lowbattery" => Supply::LowBattery,
            "fsd" => Supply::ForcedShutdown,
            _ => return None,
        })
    }

    /// As `status` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Supply::Unknown => "unknown (no reading from the UPS)",
            Supply::OnLine => "on line (mains)",
            Supply::OnBattery => "ON BATTERY",
            Supply::LowBattery => "LOW BATTERY",
            Supply::ForcedShutdown => "FORCED SHUTDOWN",
        }
    }
}

/// The monitor's view, as written to [`POWER_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerFile {
    pub supply: Supply,
    /// Mail must not be started yet (boot on battery with a low charge,
    /// or mains back for less than the settle time).
    pub hold_mail: bool,
    /// Outbound delivery slowed to a trickle (on battery).
    pub throttle: bool,
    /// Shut down now (low battery, FSD, silence after on-battery).
    pub shutdown: bool,
    /// Battery charge, percent.
    pub charge: Option<u8>,
    /// Estimated runtime left, seconds.
    pub runtime_secs: Option<u32>,
    /// `name@host:port` of the UPS.
    pub ups: String,
    /// Why, in a few words (the last decision).
    pub detail: String,
}

/// Why a power file was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PowerFileError {
    #[error("the power file is larger than {MAX_POWER_FILE_BYTES} bytes")]
    TooLarge,
    #[error("power file line {0}: not key=value")]
    NotKeyValue(usize),
    #[error("power file line {0}: bad value for {1}")]
    BadValue(usize, &'static str),
    #[error("the power file has no supply line")]
    NoSupply,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace(['\n', '\r'], " ")
}

impl PowerFile {
    pub fn render(&self) -> String {
        let mut s = format!(
            "supply={}\nhold_mail={}\nthrottle={}\nshutdown={}\n",
            self.supply.as_str(),
            self.hold_mail as u8,
            self.throttle as u8,
            self.shutdown as u8
        );
        if let Some(c) = self.charge {
            s += &format!("charge={c}\n");
        }
        if let Some(r) = self.runtime_secs {
            s += &format!("runtime={r}\n");
        }
        s += &format!("ups={}\ndetail={}\n", cut(&self.ups), cut(&self.detail));
        s
    }

    pub fn parse(text: &str) -> Result<PowerFile, PowerFileError> {
        if text.len() > MAX_POWER_FILE_BYTES {
            return Err(PowerFileError::TooLarge);
        }
        let mut f = PowerFile {
            supply: Supply::Unknown,
            hold_mail: false,
            throttle: false,
            shutdown: false,
            charge: None,
            runtime_secs: None,
            ups: String::new(),
            detail: String::new(),
        };
        let mut supply = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(PowerFileError::NotKeyValue(n))?;
            let flag = |key: &'static str| match v {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(PowerFileError::BadValue(n, key)),
            };
            match k {
                "supply" => {
                    f.supply = Supply::parse(v).ok_or(PowerFileError::BadValue(n, "supply"))?;
                    supply = true;
                }
                "hold_mail" => f.hold_mail = flag("hold_mail")?,
                "throttle" => f.throttle = flag("throttle")?,
                "shutdown" => f.shutdown = flag("shutdown")?,
                "charge" => {
                    let c: u8 = v
                        .parse()
                        .map_err(|_| PowerFileError::BadValue(n, "charge"))?;
                    if c > 100 {
                        return Err(PowerFileError::BadValue(n, "charge"));
                    }
                    f.charge = Some(c);
                }
                "runtime" => {
                    f.runtime_secs = Some(
                        v.parse()
                            .map_err(|_| PowerFileError::BadValue(n, "runtime"))?,
                    )
                }
                "ups" => f.ups = cut(v),
                "detail" => f.detail = cut(v),
                // Keys of a later version are ignored.
                _ => {}
            }
        }
        if !supply {
            return Err(PowerFileError::NoSupply);
        }
        Ok(f)
    }

    /// One line for `status`: "ON BATTERY, 45 %, about 12 min left
    /// (ups@127.0.0.1:3493): on battery for 40 s".
    pub fn summary(&self) -> String {
        let mut s = self.supply.describe().to_string();
        if let Some(c) = self.charge {
            s += &format!(", {c} %");
        }
        if let Some(r) = self.runtime_secs {
            s += &format!(", about {} min left", r.div_ceil(60));
        }
        if !self.ups.is_empty() {
            s += &format!(" ({})", self.ups);
        }
        if self.hold_mail {
            s += "; mail held";
        }
        if self.throttle {
            s += "; delivery slowed";
        }
        if !self.detail.is_empty() {
            s += &format!(": {}", self.detail);
        }
        s
    }
}

/// How long init waits at boot for the monitor's first reading before it
/// starts mail anyway (ms): the driver, upsd and the monitor start first;
/// a USB driver takes a few seconds to find its UPS.
pub const FIRST_READING_BUDGET_MS: u64 = 30_000;

/// What init does about the power state: pure, fed the latest reading
/// and the time.
#[derive(Debug)]
pub struct Gate {
    reading: Option<PowerFile>,
    first_reading_by_ms: u64,
    no_reading_said: bool,
    battery_settings: bool,
    shutdown_said: bool,
}

/// What one update asks of init.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Hold mail back from its first start, and why; `None`: release.
    pub hold_mail: Option<String>,
    /// Begin a power shutdown now, and why (said once).
    pub shutdown: Option<String>,
    /// `Some(true)`: apply the on-battery writeback settings;
    /// `Some(false)`: restore the mains ones (said on a change only).
    pub battery_settings: Option<bool>,
    /// Mail starts without a reading (said once, when the budget ends).
    pub no_reading: bool,
}

impl Gate {
    pub fn new(now_ms: u64) -> Gate {
        Gate {
            reading: None,
            first_reading_by_ms: now_ms + FIRST_READING_BUDGET_MS,
            no_reading_said: false,
            battery_settings: false,
            shutdown_said: false,
        }
    }

    /// The last reading taken.
    pub fn reading(&self) -> Option<&PowerFile> {
        self.reading.as_ref()
    }

    /// Takes a new reading (`Some`), or none (`None`: the file has not
    /// changed, or is not there yet), and says what to do.
    pub fn update(&mut self, reading: Option<PowerFile>, now_ms: u64) -> Actions {
        if let Some(r) = reading {
            self.reading = Some(r);
        }
        let mut a = Actions::default();
        match &self.reading {
            Some(r) => {
                if r.hold_mail {
                    a.hold_mail = Some(format!("power: {}", r.summary()));
                }
                if r.shutdown && !self.shutdown_said {
                    self.shutdown_said = true;
                    a.shutdown = Some(r.summary());
                }
                let battery = matches!(r.supply, Supply::OnBattery | Supply::LowBattery);
                if battery != self.battery_settings {
                    self.battery_settings = battery;
                    a.battery_settings = Some(battery);
                }
            }
            None if now_ms < self.first_reading_by_ms => {
                a.hold_mail = Some("power: waiting for the UPS's first reading".into());
            }
            None => {
                if !self.no_reading_said {
                    self.no_reading_said = true;
                    a.no_reading = true;
                }
            }
        }
        a
    }

    /// SIGPWR: the kernel or a tool says the power failed. Shut down if
    /// the last reading is low (or asks for it); otherwise nothing, and
    /// the reason to log.
    pub fn on_sigpwr(&mut self) -> Result<String, String> {
        match &self.reading {
            Some(r)
                if r.shutdown
                    || matches!(r.supply, Supply::LowBattery | Supply::ForcedShutdown) =>
            {
                self.shutdown_said = true;
                Ok(r.summary())
            }
            Some(r) => Err(format!("the UPS says {}", r.summary())),
            None => Err("no reading from the UPS".into()),
        }
    }
}

pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join(POWER_FILE)
}

/// Replaces the power file in one rename (`sys::atomic`; its fsyncs
/// cost nothing on the run directory's tmpfs), mode 0644 so that init
/// and mail read it.
pub fn write(run_dir: &Path, f: &PowerFile) -> std::io::Result<()> {
    crate::sys::atomic::write_atomic(&path(run_dir), f.render().as_bytes())
}

/// The power file, if there is one that parses.
pub fn read(run_dir: &Path) -> Option<Result<PowerFile, PowerFileError>> {
    let p = path(run_dir);
    let meta = std::fs::metadata(&p).ok()?;
    if meta.len() as usize > MAX_POWER_FILE_BYTES {
        return Some(Err(PowerFileError::TooLarge));
    }
    let text = std::fs::read_to_string(&p).ok()?;
    Some(PowerFile::parse(&text))
}

/// The power file's modification time, to re-read it only on a change.
pub fn mtime(run_dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path(run_dir)).ok()?.modified().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_battery() -> PowerFile {
        PowerFile {
            supply: Supply::OnBattery,
            hold_mail: false,
            throttle: true,
            shutdown: false,
            charge: Some(45),
            runtime_secs: Some(700),
            ups: "ups@127.0.0.1:3493".into(),
            detail: "on battery for 40 s".into(),
        }
    }

    #[test]
    fn renders_and_parses_back() {
        let f = on_battery();
        let text = f.render();
        assert_eq!(
            text,
            "supply=onbattery\nhold_mail=0\nthrottle=1\nshutdown=0\ncharge=45\nruntime=700\n\
             ups=ups@127.0.0.1:3493\ndetail=on battery for 40 s\n"
        );
        assert_eq!(PowerFile::parse(&text).unwrap(), f);
        assert_eq!(
            f.summary(),
            "ON BATTERY, 45 %, about 12 min left (ups@127.0.0.1:3493); delivery slowed: on battery for 40 s"
        );
    }

    #[test]
    fn bad_files_are_errors_not_decisions() {
        assert_eq!(PowerFile::parse(""), Err(PowerFileError::NoSupply));
        assert_eq!(
            PowerFile::parse("supply=onfire\n"),
            Err(PowerFileError::BadValue(1, "supply"))
        );
        assert_eq!(
            PowerFile::parse("supply=online\nshutdown=yes\n"),
            Err(PowerFileError::BadValue(2, "shutdown"))
        );
        assert_eq!(
            PowerFile::parse("supply=online\ncharge=101\n"),
            Err(PowerFileError::BadValue(2, "charge"))
        );
        assert_eq!(
            PowerFile::parse("supply=online\njunk\n"),
            Err(PowerFileError::NotKeyValue(2))
        );
        assert_eq!(
            PowerFile::parse(&"x".repeat(MAX_POWER_FILE_BYTES + 1)),
            Err(PowerFileError::TooLarge)
        );
        // A later version's keys are ignored.
        let f = PowerFile::parse("supply=online\nnew_key=1\n").unwrap();
        assert_eq!(f.supply, Supply::OnLine);
    }

    #[test]
    fn text_fields_stay_one_bounded_line() {
        let mut f = on_battery();
        f.detail = format!("a\nshutdown=1\n{}", "é".repeat(200));
        let back = PowerFile::parse(&f.render()).unwrap();
        assert!(!back.shutdown);
        assert!(back.detail.len() <= MAX_TEXT);
    }

    fn reading(supply: Supply, hold: bool, shutdown: bool) -> PowerFile {
        PowerFile {
            supply,
            hold_mail: hold,
            throttle: supply == Supply::OnBattery,
            shutdown,
            ..on_battery()
        }
    }

    #[test]
    fn mail_waits_for_the_first_reading_then_for_steady_power() {
        let mut g = Gate::new(0);
        let a = g.update(None, 1_000);
        assert_eq!(
            a.hold_mail.as_deref(),
            Some("power: waiting for the UPS's first reading")
        );
        // Booted on battery, low charge: held, writeback batched.
        let a = g.update(Some(reading(Supply::OnBattery, true, false)), 2_000);
        assert!(a.hold_mail.unwrap().starts_with("power: ON BATTERY"));
        assert_eq!(a.battery_settings, Some(true));
        // The same file again: no change said twice.
        assert_eq!(g.update(None, 3_000).battery_settings, None);
        // Mains back and settled: released, settings restored.
        let a = g.update(Some(reading(Supply::OnLine, false, false)), 90_000);
        assert_eq!(a.hold_mail, None);
        assert_eq!(a.battery_settings, Some(false));
        assert_eq!(a.shutdown, None);
    }

    #[test]
    fn no_reading_within_the_budget_starts_mail_and_says_so_once() {
        let mut g = Gate::new(0);
        assert!(
            g.update(None, FIRST_READING_BUDGET_MS - 1)
                .hold_mail
                .is_some()
        );
        let a = g.update(None, FIRST_READING_BUDGET_MS);
        assert_eq!(a.hold_mail, None);
        assert!(a.no_reading);
        assert!(!g.update(None, FIRST_READING_BUDGET_MS + 1).no_reading);
    }

    #[test]
    fn shutdown_is_asked_once_and_sigpwr_acts_only_on_a_low_reading() {
        let mut g = Gate::new(0);
        assert_eq!(g.on_sigpwr(), Err("no reading from the UPS".into()));
        g.update(Some(reading(Supply::OnBattery, false, false)), 1);
        assert!(g.on_sigpwr().unwrap_err().contains("ON BATTERY"));
        let a = g.update(Some(reading(Supply::LowBattery, false, true)), 2);
        assert!(a.shutdown.unwrap().starts_with("LOW BATTERY"));
        assert_eq!(g.update(None, 3).shutdown, None);
        let mut g = Gate::new(0);
        g.update(Some(reading(Supply::LowBattery, false, false)), 1);
        assert!(g.on_sigpwr().is_ok());
    }

    #[test]
    fn written_and_read_through_the_run_directory() {
        let d = std::env::temp_dir().join(format!("pocobelle-power-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        assert!(read(&d).is_none());
        write(&d, &on_battery()).unwrap();
        assert_eq!(read(&d).unwrap().unwrap(), on_battery());
        assert!(mtime(&d).is_some());
        let _ = std::fs::remove_dir_all(&d);
    }
}
