//! `[ups]`: the UPS the board runs from, watched through Network UPS
//! Tools. Absent: no UPS, nothing of the power code runs. Each key's
//! default and bounds are declared here. This module also renders NUT's
//! own configuration files for `mode = "local"` (init writes them into
//! its run directory); it opens no socket and writes no file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::de::DeValue;

use super::read::{self, FromToml, ReadError, Value, toml_enum, toml_table};
use super::{Invalid, check_range};

/// The IANA port of upsd.
pub const NUT_PORT: u16 = 3493;
/// At most this many `driver_extra` settings.
pub const MAX_DRIVER_EXTRA: usize = 32;
/// Longest UPS name, user name, driver name or key.
pub const MAX_NAME: usize = 64;
/// Longest password, driver port or `driver_extra` value (upsd's
/// longest value is 256 bytes).
pub const MAX_VALUE: usize = 256;

/// Where upsd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpsMode {
    /// The UPS is plugged into this board: init runs NUT's driver and
    /// upsd (listening on loopback) and Pocobelle talks to that upsd.
    #[default]
    Local,
    /// upsd runs elsewhere on the LAN (a NAS, another server).
    Remote,
}
toml_enum!(UpsMode { "local" => Local, "remote" => Remote });

/// One `driver_extra` value: a string, a number, or `true` for a flag
/// (`false` leaves the flag out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverValue {
    Text(String),
    Int(i64),
    Flag(bool),
}

// A string, an integer or a boolean.
impl FromToml for DriverValue {
    fn read(v: &Value<'_>, path: &str) -> Result<DriverValue, ReadError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(DriverValue::Text(s.to_string())),
            DeValue::Integer(_) => i64::read(v, path).map(DriverValue::Int),
            DeValue::Boolean(b) => Ok(DriverValue::Flag(*b)),
            _ => Err(read::invalid_type(
                v,
                path,
                "a string, an integer or a boolean",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpsConfig {
    /// `local` (default: NUT's driver and upsd run on this board) or
    /// `remote` (upsd elsewhere).
    pub mode: UpsMode,
    /// The UPS's name in upsd (`LIST VAR <name>`; the `ups.conf`
    /// section in local mode). Default `ups`.
    pub name: String,
    /// upsd's address: an IP address literal (no name lookup). Default
    /// `127.0.0.1`; loopback in local mode.
    pub host: String,
    /// upsd's TCP port. Default 3493.
    pub port: u16,
    /// upsd user (`upsd.users`, `upsmon primary` or `secondary`). With
    /// `password`, the client logs in (`LOGIN`) and may set FSD. Default
    /// none: read-only polling.
    pub user: Option<String>,
    /// That user's password. Default none.
    pub password: Option<String>,
    /// Seconds between polls. Default 5 (1..=60).
    pub poll_interval_secs: u32,
    /// A UPS last seen on battery that stays silent this long counts as
    /// low battery (NUT's DEADTIME), seconds. Default 15 (2..=600), at
    /// least twice `poll_interval_secs`.
    pub dead_time_secs: u32,
    /// At boot, on battery (or just back on line) with less charge than
    /// this, percent, mail is held. Default 30 (0..=100; 0 never holds).
    pub start_min_charge: u8,
    /// Held mail starts once the mains has been back this long, seconds.
    /// Default 60 (0..=3600).
    pub settle_time_secs: u32,
    /// On battery, outbound mail goes one connection at a time, this many
    /// seconds apart. Default 15 (0..=600).
    pub trickle_gap_secs: u32,
    /// On battery, a reported runtime under this many seconds is treated
    /// as low battery. Default none (only the UPS's own LB). 1..=86400.
    pub shutdown_on_runtime_below_secs: Option<u32>,
    /// After a power-failure shutdown, ask the UPS to cut the power and
    /// restore it when the mains returns (local mode: the driver's `-k`;
    /// remote mode: the upsd host's primary does it). Default true.
    pub kill_power: bool,
    /// Local mode: the NUT driver in `/lib/nut` (`usbhid-ups`,
    /// `blazer_usb`, `nutdrv_qx`, `dummy-ups`, ...). Default `usbhid-ups`.
    pub driver: Option<String>,
    /// Local mode: the driver's `port` (`auto` for USB, `/dev/ttyS0`).
    /// Default `auto`.
    pub port_path: Option<String>,
    /// Local mode: more `ups.conf` settings for the driver (`vendorid`,
    /// `pollinterval`, `offdelay`, ...; `true` for a flag). Default none.
    pub driver_extra: BTreeMap<String, DriverValue>,
}
toml_table!(UpsConfig {
    mode,
    name,
    host,
    port,
    user,
    password,
    poll_interval_secs,
    dead_time_secs,
    start_min_charge,
    settle_time_secs,
    trickle_gap_secs,
    shutdown_on_runtime_below_secs,
    kill_power,
    driver,
    port_path,
    driver_extra
});

impl Default for UpsConfig {
    fn default() -> Self {
        UpsConfig {
            mode: UpsMode::Local,
            name: "ups".into(),
            host: "127.0.0.1".into(),
            port: NUT_PORT,
            user: None,
            password: None,
            poll_interval_secs: 5,
            dead_time_secs: 15,
            start_min_charge: 30,
            settle_time_secs: 60,
            trickle_gap_secs: 15,
            shutdown_on_runtime_below_secs: None,
            kill_power: true,
            driver: None,
            port_path: None,
            driver_extra: BTreeMap::new(),
        }
    }
}

/// The default driver in local mode.
pub const DEFAULT_DRIVER: &str = "usbhid-ups";
/// The default driver port in local mode.
pub const DEFAULT_PORT_PATH: &str = "auto";

/// NUT's three files for local mode, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NutFiles {
    pub ups_conf: String,
    pub upsd_conf: String,
    /// Holds the password: write it mode 0600 (upsd refuses nothing,
    /// but it warns, and it is a secret).
    pub upsd_users: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        key: format!("ups.{key}"),
        message: message.into(),
    }
}

/// A NUT name: letters, digits, `-`, `_`, `.`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A value that fits one quoted word on one line.
fn is_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE && !s.chars().any(char::is_control)
}

impl UpsConfig {
    /// The driver in local mode.
    pub fn driver(&self) -> &str {
        self.driver.as_deref().unwrap_or(DEFAULT_DRIVER)
    }

    /// The driver's port in local mode.
    pub fn port_path(&self) -> &str {
        self.port_path.as_deref().unwrap_or(DEFAULT_PORT_PATH)
    }

    /// upsd's address (validated by [`UpsConfig::validate`]; an invalid
    /// host gives 127.0.0.1).
    pub fn socket_addr(&self) -> SocketAddr {
        let ip = self.host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, self.port)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.poll_interval_secs))
    }

    pub fn dead_time(&self) -> Duration {
        Duration::from_secs(u64::from(self.dead_time_secs))
    }

    pub fn settle_time(&self) -> Duration {
        Duration::from_secs(u64::from(self.settle_time_secs))
    }

    /// The user and password, when both are set (the client logs in).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        Some((self.user.as_deref()?, self.password.as_deref()?))
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "expected a UPS name of letters, digits, '-', '_' and '.', at most {MAX_NAME} bytes, found {:?}",
                    self.name
                ),
            ));
        }
        let Ok(ip) = self.host.parse::<IpAddr>() else {
            return Err(invalid(
                "host",
                format!(
                    "expected an IP address (no host names: the board does not resolve them), found {:?}",
                    self.host
                ),
            ));
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(invalid(
                "host",
                format!("expected upsd's address, found {ip}"),
            ));
        }
        if self.mode == UpsMode::Local && !ip.is_loopback() {
            return Err(invalid(
                "host",
                format!(
                    "mode = \"local\" runs upsd on loopback; expected 127.0.0.1 or ::1, found {ip}"
                ),
            ));
        }
        if self.port == 0 {
            return Err(invalid("port", "expected a port from 1 to 65535, found 0"));
        }
        match (&self.user, &self.password) {
            (Some(u), _) if !is_name(u) => {
                return Err(invalid(
                    "user",
                    format!(
                        "expected a user name of letters, digits, '-', '_' and '.', at most {MAX_NAME} bytes, found {u:?}"
                    ),
                ));
            }
            (_, Some(p)) if !is_value(p) => {
                return Err(invalid(
                    "password",
                    format!("expected 1 to {MAX_VALUE} bytes without control characters"),
                ));
            }
            (Some(_), None) => {
                return Err(invalid(
                    "user",
                    "is set without `ups.password`: set both or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "password",
                    "is set without `ups.user`: set both or neither",
                ));
            }
            _ => {}
        }
        let key = |k: &str| format!("ups.{k}");
        check_range(&key("poll_interval_secs"), self.poll_interval_secs, 1, 60)?;
        check_range(&key("dead_time_secs"), self.dead_time_secs, 2, 600)?;
        if self.dead_time_secs < 2 * self.poll_interval_secs {
            return Err(invalid(
                "dead_time_secs",
                format!(
                    "expected at least twice ups.poll_interval_secs ({} s), found {}",
                    2 * self.poll_interval_secs,
                    self.dead_time_secs
                ),
            ));
        }
        check_range(&key("start_min_charge"), self.start_min_charge, 0, 100)?;
        check_range(&key("settle_time_secs"), self.settle_time_secs, 0, 3600)?;
        check_range(&key("trickle_gap_secs"), self.trickle_gap_secs, 0, 600)?;
        if let Some(s) = self.shutdown_on_runtime_below_secs {
            check_range(&key("shutdown_on_runtime_below_secs"), s, 1, 86_400)?;
        }
        if self.mode == UpsMode::Remote {
            for (k, set) in [
                ("driver", self.driver.is_some()),
                ("port_path", self.port_path.is_some()),
                ("driver_extra", !self.driver_extra.is_empty()),
            ] {
                if set {
                    return Err(invalid(
                        k,
                        "only for mode = \"local\" (the driver runs on this board)",
                    ));
                }
            }
        }
        let d = self.driver();
        if d.len() > MAX_NAME
            || d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(invalid(
                "driver",
                format!("expected a NUT driver name such as \"usbhid-ups\", found {d:?}"),
            ));
        }
        if !is_value(self.port_path()) {
            return Err(invalid(
                "port_path",
                format!("expected 1 to {MAX_VALUE} bytes without control characters"),
            ));
        }
        if self.driver_extra.len() > MAX_DRIVER_EXTRA {
            return Err(invalid(
                "driver_extra",
                format!(
                    "at most {MAX_DRIVER_EXTRA} settings, found {}",
                    self.driver_extra.len()
                ),
            ));
        }
        for (k, v) in &self.driver_extra {
            let ok_key = is_name(k) && !matches!(k.as_str(), "driver" | "port" | "desc");
            if !ok_key {
                return Err(invalid(
                    &format!("driver_extra.{k}"),
                    "expected a driver setting name of letters, digits, '-', '_' and '.' (not driver, port or desc)",
                ));
            }
            if let DriverValue::Text(t) = v
                && !is_value(t)
            {
                return Err(invalid(
                    &format!("driver_extra.{k}"),
                    format!("expected 1 to {MAX_VALUE} bytes without control characters"),
                ));
            }
        }
        Ok(())
    }

    /// `ups.conf`, `upsd.conf` and `upsd.users` for local mode (`None`
    /// in remote mode). Values are quoted; the config is validated.
    pub fn nut_files(&self) -> Option<NutFiles> {
        if self.mode != UpsMode::Local {
            return None;
        }
        const HEAD: &str =
            "# Written by pocobelle init from [ups] in /etc/pocobelle.toml; edit that instead.\n";
        let mut ups = String::from(HEAD);
        let _ = writeln!(ups, "[{}]", self.name);
        let _ = writeln!(ups, "\tdriver = {}", nut_quote(self.driver()));
        let _ = writeln!(ups, "\tport = {}", nut_quote(self.port_path()));
        for (k, v) in &self.driver_extra {
            match v {
                DriverValue::Text(t) => {
                    let _ = writeln!(ups, "\t{k} = {}", nut_quote(t));
                }
                DriverValue::Int(i) => {
                    let _ = writeln!(ups, "\t{k} = {i}");
                }
                DriverValue::Flag(true) => {
                    let _ = writeln!(ups, "\t{k}");
                }
                DriverValue::Flag(false) => {}
            }
        }
        let mut upsd = String::from(HEAD);
        let _ = writeln!(upsd, "LISTEN {} {}", self.host, self.port);
        let mut users = String::from(HEAD);
        if let Some((u, p)) = self.credentials() {
            let _ = writeln!(users, "[{u}]");
            let _ = writeln!(users, "\tpassword = {}", nut_quote(p));
            let _ = writeln!(users, "\tupsmon primary");
        }
        Some(NutFiles {
            ups_conf: ups,
            upsd_conf: upsd,
            upsd_users: users,
        })
    }
}

/// A value in NUT's configuration syntax: in double quotes, `"` and `\`
/// escaped by a backslash.
fn nut_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("f.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_means_no_ups() {
        assert_eq!(parse("").unwrap().ups, None);
    }

    #[test]
    fn empty_table_gives_documented_defaults() {
        let u = parse("[ups]\n").unwrap().ups.unwrap();
        assert_eq!(u, UpsConfig::default());
        assert_eq!(u.mode, UpsMode::Local);
        assert_eq!(u.socket_addr(), "127.0.0.1:3493".parse().unwrap());
        assert_eq!(u.poll_interval(), Duration::from_secs(5));
        assert_eq!(u.dead_time(), Duration::from_secs(15));
        assert_eq!(u.settle_time(), Duration::from_secs(60));
        assert_eq!(u.start_min_charge, 30);
        assert!(u.kill_power && u.credentials().is_none());
        assert_eq!((u.driver(), u.port_path()), ("usbhid-ups", "auto"));
    }

    #[test]
    fn remote_with_login() {
        let u = parse(
            "[ups]\nmode = \"remote\"\nname = \"nas-ups\"\nhost = \"192.168.1.10\"\n\
             user = \"monuser\"\npassword = \"s3cret pw\"\nshutdown_on_runtime_below_secs = 300\n",
        )
        .unwrap()
        .ups
        .unwrap();
        assert_eq!(u.socket_addr(), "192.168.1.10:3493".parse().unwrap());
        assert_eq!(u.credentials(), Some(("monuser", "s3cret pw")));
        assert_eq!(u.nut_files(), None);
        let v6 = parse("[ups]\nmode = \"remote\"\nhost = \"fd00::5\"\nport = 13493\n")
            .unwrap()
            .ups
            .unwrap();
        assert_eq!(v6.socket_addr(), "[fd00::5]:13493".parse().unwrap());
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let cases = [
            ("[ups]\nmode = \"usb\"\n", "ups.mode", ":2:"),
            (
                "[ups]\nmode = \"remote\"\nhost = \"nas.home.arpa\"\n",
                "ups.host",
                ":3:",
            ),
            ("[ups]\nhost = \"192.168.1.10\"\n", "ups.host", ":2:"),
            ("[ups]\nport = 0\n", "ups.port", ":2:"),
            ("[ups]\nname = \"my ups\"\n", "ups.name", ":2:"),
            ("[ups]\nuser = \"mon\"\n", "ups.user", ":2:"),
            ("[ups]\npassword = \"x\"\n", "ups.password", ":2:"),
            (
                "[ups]\nuser = \"mon\"\npassword = \"a\\nb\"\n",
                "ups.password",
                ":3:",
            ),
            (
                "[ups]\npoll_interval_secs = 0\n",
                "ups.poll_interval_secs",
                ":2:",
            ),
            ("[ups]\npoll_interval_secs = 10\n", "ups.dead_time_secs", ""),
            (
                "[ups]\nstart_min_charge = 101\n",
                "ups.start_min_charge",
                ":2:",
            ),
            (
                "[ups]\nsettle_time_secs = 4000\n",
                "ups.settle_time_secs",
                ":2:",
            ),
            (
                "[ups]\nshutdown_on_runtime_below_secs = 0\n",
                "ups.shutdown_on_runtime_below_secs",
                ":2:",
            ),
            (
                "[ups]\nmode = \"remote\"\ndriver = \"usbhid-ups\"\n",
                "ups.driver",
                ":3:",
            ),
            ("[ups]\ndriver = \"../../bin/sh\"\n", "ups.driver", ":2:"),
            ("[ups]\nport_path = \"\"\n", "ups.port_path", ":2:"),
            (
                "[ups]\n[ups.driver_extra]\nport = \"x\"\n",
                "ups.driver_extra.port",
                "",
            ),
            (
                "[ups]\n[ups.driver_extra]\nvendorid = [1]\n",
                "ups.driver_extra.vendorid",
                ":3:",
            ),
            ("[ups]\nkill_power = \"yes\"\n", "ups.kill_power", ":2:"),
            ("[ups]\npoll = 5\n", "poll", ":2:"),
        ];
        for (text, key, line) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key) && e.contains(line), "{text:?}: {e}");
        }
    }

    #[test]
    fn renders_nut_files_for_local_mode() {
        let u = parse(
            "[ups]\nname = \"eaton\"\nport = 3493\nuser = \"pocobelle\"\npassword = 'p\"w\\x'\n\
             port_path = \"auto\"\n[ups.driver_extra]\nvendorid = \"0463\"\npollonly = true\n\
             noflag = false\npollinterval = 2\n",
        )
        .unwrap()
        .ups
        .unwrap();
        let f = u.nut_files().unwrap();
        let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(
            body(&f.ups_conf),
            "[eaton]\n\tdriver = \"usbhid-ups\"\n\tport = \"auto\"\n\
             \tpollinterval = 2\n\tpollonly\n\tvendorid = \"0463\""
        );
        assert_eq!(body(&f.upsd_conf), "LISTEN 127.0.0.1 3493");
        assert_eq!(
            body(&f.upsd_users),
            "[pocobelle]\n\tpassword = \"p\\\"w\\\\x\"\n\tupsmon primary"
        );
        assert!(f.ups_conf.starts_with('#'));
        // No user: no upsd users at all (LIST VAR needs none).
        let f = UpsConfig::default().nut_files().unwrap();
        assert_eq!(body(&f.upsd_users), "");
        let v6 = UpsConfig {
            host: "::1".into(),
            ..UpsConfig::default()
        };
        v6.validate().unwrap();
        assert_eq!(body(&v6.nut_files().unwrap().upsd_conf), "LISTEN ::1 3493");
    }
}
