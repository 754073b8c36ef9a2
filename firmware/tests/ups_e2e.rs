//! End-to-end test of the UPS client against the real Network UPS Tools:
//! Debian's `nut-server` (upsd and the `dummy-ups` driver) on a loopback
//! port, configured from files that `UpsConfig::nut_files` renders from
//! a `[ups]` table, in a scratch directory (`NUT_CONFPATH`,
//! `NUT_STATEPATH`). The driver reads a `.dev` file that the test
//! rewrites (dummy-ups re-reads it when it changes), and the test kills
//! and restarts upsd. It asserts the decisions of `ups::Monitor`: a
//! blip takes no action, boot on a low battery holds mail until the
//! mains has settled, OB LB shuts down, silence after OB shuts down after
//! the dead time, the client reconnects when upsd returns, FSD shuts down.
//!
//! nut-server missing is a failure, not a skip: `make setup` installs it.
//! The NUT processes die with the test (killed on drop, and
//! PR_SET_PDEATHSIG if the test process itself dies).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pocobelle::config::{Config, UpsConfig};
use pocobelle::ups::{Monitor, PowerState, PowerView, ShutdownReason, Status, fsd};
use tokio::sync::watch;

mod common;
use common::{Kill, child, free_port, slack, tmpdir};

/// Debian 12 installs the drivers and the real upsd here (`/sbin/upsd`
/// is a wrapper that exits 0 unless /etc/nut/nut.conf enables it).
const NUT_LIBEXEC: &str = "/lib/nut";

struct Nut {
    dir: PathBuf,
    port: u16,
    driver: Option<Kill>,
    upsd: Option<Kill>,
}

impl Nut {
    fn bin(name: &str) -> PathBuf {
        let p = Path::new(NUT_LIBEXEC).join(name);
        assert!(
            p.exists(),
            "{} is missing: Debian's nut-server is not installed; run `make setup` \
             (it installs nut-server and nut-client)",
            p.display()
        );
        p
    }

    fn command(&self, name: &str) -> std::process::Command {
        let mut c = child(Self::bin(name).to_str().unwrap());
        c.env("NUT_CONFPATH", self.dir.join("conf"))
            .env("NUT_STATEPATH", self.dir.join("state"))
            .env("NUT_ALTPIDPATH", self.dir.join("state"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // As root, NUT drops to its build-time user (`nut`), which could
        // not read the scratch directory: stay root. As anyone else, -u
        // is refused, and nothing is dropped.
        if nix::unistd::geteuid().is_root() {
            c.args(["-u", "root"]);
        }
        c
    }

    fn start_driver(&mut self) {
        let d = self
            .command("dummy-ups")
            .args(["-a", "ups", "-F"])
            .spawn()
            .unwrap();
        self.driver = Some(Kill(d));
    }

    /// Starts upsd and waits until its port accepts connections.
    fn start_upsd(&mut self) {
        let u = self.command("upsd").arg("-F").spawn().unwrap();
        let mut u = Kill(u);
        let deadline = Instant::now() + Duration::from_secs(10) * slack();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = u.0.try_wait() {
                panic!(
                    "upsd exited ({status}) before listening on port {}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "upsd did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.upsd = Some(u);
    }

    fn stop_upsd(&mut self) {
        self.upsd = None;
    }

    /// Replaces the driver's `.dev` file in one rename.
    fn set(&self, vars: &str) {
        let tmp = self.dir.join("ups.dev.new");
        std::fs::write(&tmp, vars).unwrap();
        std::fs::rename(tmp, self.dir.join("ups.dev")).unwrap();
    }
}

impl Drop for Nut {
    fn drop(&mut self) {
        self.upsd = None;
        self.driver = None;
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn dev(status: &str, charge: u8, runtime: u32) -> String {
    format!("ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime}\n")
}

/// Waits for a view that satisfies `pred`; panics with the last view
/// after `secs` (times the emulation slack).
async fn wait(
    rx: &mut watch::Receiver<PowerView>,
    secs: u64,
    what: &str,
    pred: impl Fn(&PowerView) -> bool,
) -> PowerView {
    let limit = Duration::from_secs(secs) * slack();
    let got = match tokio::time::timeout(limit, rx.wait_for(|v| pred(v))).await {
        Ok(Ok(v)) => Some(*v),
        Ok(Err(_)) => panic!("{what}: the monitor stopped"),
        Err(_) => None,
    };
    got.unwrap_or_else(|| panic!("{what}: not within {limit:?}; last view {:?}", *rx.borrow()))
}

fn on_battery(v: &PowerView) -> bool {
    matches!(v.state, PowerState::OnBattery { .. })
}

#[tokio::test(flavor = "current_thread")]
async fn monitor_against_upsd_and_dummy_ups() {
    let started = Instant::now();
    let dir = tmpdir("pocobelle-ups", "e2e");
    let port = free_port();
    let dev_path = dir.join("ups.dev");
    let toml = format!(
        "[ups]\nmode = \"local\"\nname = \"ups\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         user = \"pocobelle\"\npassword = \"test pass\"\npoll_interval_secs = 1\n\
         dead_time_secs = 3\nstart_min_charge = 30\nsettle_time_secs = 2\n\
         driver = \"dummy-ups\"\nport_path = \"{}\"\n[ups.driver_extra]\npollinterval = 1\n",
        dev_path.display()
    );
    let cfg: UpsConfig = Config::parse(Path::new("ups.toml"), &toml)
        .unwrap()
        .ups
        .unwrap();
    let files = cfg.nut_files().unwrap();
    for (sub, mode) in [("conf", 0o700), ("state", 0o700)] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::set_permissions(
            dir.join(sub),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
    }
    std::fs::write(dir.join("conf/ups.conf"), &files.ups_conf).unwrap();
    std::fs::write(dir.join("conf/upsd.conf"), &files.upsd_conf).unwrap();
    std::fs::write(dir.join("conf/upsd.users"), &files.upsd_users).unwrap();
    let mut nut = Nut {
        dir: dir.clone(),
        port,
        driver: None,
        upsd: None,
    };
    nut.set(&dev("OL", 100, 1800));
    nut.start_driver();
    nut.start_upsd();

    // On line: no action.
    let mut a = Monitor::spawn(&cfg);
    let v = wait(&mut a, 20, "first reading on line", |v| {
        v.state == PowerState::OnLine
    })
    .await;
    assert!(!v.hold_mail && !v.throttle && v.shutdown.is_none(), "{v:?}");
    assert_eq!(
        (v.charge, v.runtime),
        (Some(100), Some(Duration::from_secs(1800)))
    );

    // A blip: OL -> OB -> OL throttles while on battery, nothing else.
    nut.set(&dev("OB DISCHRG", 95, 1700));
    let v = wait(&mut a, 10, "blip: on battery", on_battery).await;
    assert!(v.throttle && v.shutdown.is_none() && !v.hold_mail, "{v:?}");
    nut.set(&dev("OL CHRG", 95, 1750));
    let v = wait(&mut a, 10, "blip: back on line", |v| {
        v.state == PowerState::OnLine
    })
    .await;
    assert!(!v.throttle && v.shutdown.is_none(), "{v:?}");

    // Boot on battery with a low charge: mail held; the mains returns and
    // mail is released only after the settle time.
    nut.set(&dev("OB DISCHRG", 20, 400));
    wait(
        &mut a,
        10,
        "low charge on battery (seen by the first monitor)",
        |v| v.charge == Some(20),
    )
    .await;
    let mut b = Monitor::spawn(&cfg);
    let v = wait(&mut b, 10, "boot on battery", |v| v.reachable).await;
    assert!(on_battery(&v) && v.hold_mail && v.throttle, "{v:?}");
    assert!(a.borrow().shutdown.is_none() && !a.borrow().hold_mail);
    nut.set(&dev("OL CHRG", 21, 420));
    let v = wait(&mut b, 10, "mains back", |v| v.state == PowerState::OnLine).await;
    assert!(v.hold_mail, "released before the settle time: {v:?}");
    let back = Instant::now();
    let v = wait(&mut b, 10, "mail released", |v| !v.hold_mail).await;
    assert!(
        back.elapsed() >= Duration::from_millis(1000),
        "settle too short"
    );
    assert_eq!(v.state, PowerState::OnLine);

    // OB then OB LB: shutdown.
    nut.set(&dev("OB DISCHRG", 50, 900));
    wait(&mut b, 10, "on battery again", on_battery).await;
    nut.set(&dev("OB DISCHRG LB", 9, 60));
    let v = wait(&mut b, 10, "low battery", |v| v.shutdown.is_some()).await;
    assert_eq!(v.shutdown, Some(ShutdownReason::LowBattery));
    assert_eq!(v.state, PowerState::LowBattery);
    let v = wait(&mut a, 10, "low battery (first monitor)", |v| {
        v.shutdown.is_some()
    })
    .await;
    assert_eq!(v.shutdown, Some(ShutdownReason::LowBattery));

    // On battery, then upsd goes away: shutdown after the dead time, not
    // before. (A fresh monitor, once upsd has the new reading.)
    nut.set(&dev("OB DISCHRG", 60, 1000));
    wait(&mut b, 10, "upsd has the new reading", |v| {
        v.charge == Some(60)
    })
    .await;
    drop((a, b));
    let mut c = Monitor::spawn(&cfg);
    wait(&mut c, 10, "on battery before the silence", |v| {
        on_battery(v) && v.charge == Some(60)
    })
    .await;
    nut.stop_upsd();
    let gone = Instant::now();
    let v = wait(&mut c, 10, "unreachable", |v| !v.reachable).await;
    assert!(on_battery(&v) && v.shutdown.is_none(), "{v:?}");
    let v = wait(&mut c, 15, "silence after on battery", |v| {
        v.shutdown.is_some()
    })
    .await;
    let waited = gone.elapsed();
    assert_eq!(v.shutdown, Some(ShutdownReason::Silent));
    assert!(
        waited >= Duration::from_millis(1500),
        "shutdown {waited:?} after upsd went away, before the 3 s dead time"
    );

    // upsd returns: the same monitor reconnects (within its backoff) and
    // reads again; the shutdown decision stands.
    nut.start_upsd();
    let v = wait(&mut c, 45, "reconnected", |v| v.reachable).await;
    assert_eq!(v.shutdown, Some(ShutdownReason::Silent));
    assert!(v.status.is_some_and(|s| s.contains(Status::OB)), "{v:?}");

    // FSD through fsd(): every monitor of this UPS shuts down.
    nut.set(&dev("OL", 100, 1800));
    wait(&mut c, 10, "upsd has the new reading", |v| {
        v.charge == Some(100)
    })
    .await;
    drop(c);
    let mut d = Monitor::spawn(&cfg);
    wait(&mut d, 10, "on line before FSD", |v| {
        v.state == PowerState::OnLine
    })
    .await;
    fsd(&cfg).await.unwrap();
    let v = wait(&mut d, 10, "forced shutdown", |v| v.shutdown.is_some()).await;
    assert_eq!(v.shutdown, Some(ShutdownReason::ForcedShutdown));
    assert_eq!(v.state, PowerState::ForcedShutdown);
    drop(d);

    drop(nut);
    eprintln!("ups e2e: {:?}", started.elapsed());
}
