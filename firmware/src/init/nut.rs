//! Network UPS Tools on the board (`[ups] mode = "local"`): init writes
//! NUT's three files from `[ups]` into [`nut_dir`] (`/run/nut` beside
//! `/run/pocobelle`; NUT_CONFPATH and NUT_STATEPATH both point there),
//! and supervises NUT's own driver and
//! upsd, plus Pocobelle's monitor (the `ups` applet) in either mode. At a
//! power shutdown it runs the driver once more with `-k`, which asks the
//! UPS to cut the power after its shutdown delay and restore it when
//! mains returns, so that the board comes back by itself (what NUT's
//! `upsdrvctl shutdown` does). This module never talks to the UPS: the
//! monitor does; it only lays out files and command lines.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{Readiness, ServiceConfig, UpsConfig};
use crate::init::users::Ids;

/// NUT's directory's name, beside `system.run_dir` (which only the
/// pocobelle group may enter).
pub const NUT_DIR: &str = "nut";

/// NUT's directory for the run directory `run_dir`: its sibling
/// (`/run/pocobelle` -> `/run/nut`, where NUT keeps its state elsewhere).
pub fn nut_dir(run_dir: &Path) -> PathBuf {
    match run_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(NUT_DIR),
        _ => run_dir.join(NUT_DIR),
    }
}
/// The user upsd runs as, and the group of the driver's socket.
pub const NUT_USER: &str = "nut";
/// Where NUT's programs are looked for: Debian's layout (the image),
/// then the usual others (Buildroot installs upsd and the drivers under
/// /usr).
pub const NUT_PROGRAM_DIRS: [&str; 5] = [
    "/lib/nut",
    "/usr/lib/nut",
    "/usr/libexec/nut",
    "/usr/sbin",
    "/usr/bin",
];
/// The monitor service's name (and applet).
pub const MONITOR: &str = "ups";
/// The driver's and upsd's service names.
pub const DRIVER_SERVICE: &str = "nut-driver";
pub const UPSD_SERVICE: &str = "upsd";

/// The first of [`NUT_PROGRAM_DIRS`] holding `name`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    NUT_PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn nut_env(dir: &Path) -> Vec<String> {
    vec![
        format!("NUT_CONFPATH={}", dir.display()),
        format!("NUT_STATEPATH={}", dir.display()),
        // Where upsd looks for its own PID file (none with -F; looked
        // for all the same).
        format!("NUT_ALTPIDPATH={}", dir.display()),
    ]
}

/// The services `[ups]` adds, in start order, before dns: in local mode
/// the driver (root: it opens the USB or serial device, which has no
/// udev rule on the board; its socket is handed to the `nut` group) and
/// upsd (as `nut`, listening where `[ups]` says), then the monitor.
/// `driver` and `upsd` are the programs' paths (see [`find_program`]).
pub fn services(
    u: &UpsConfig,
    dir: &Path,
    driver: Option<&Path>,
    upsd: Option<&Path>,
) -> Vec<ServiceConfig> {
    let svc = |name: &str, argv: Vec<String>, user: &str, env: Vec<String>| ServiceConfig {
        name: name.into(),
        argv,
        user: Some(user.into()),
        // The UPS watch outlives mail and dns under memory pressure.
        oom_score_adj: -800,
        memory_max_mib: 16,
        ready: Readiness::None,
        safe_mode: true,
        env,
    };
    let mut v = Vec::new();
    if let (Some(_), Some(driver), Some(upsd)) = (u.nut_files(), driver, upsd) {
        v.push(svc(
            DRIVER_SERVICE,
            vec![
                driver.display().to_string(),
                "-a".into(),
                u.name.clone(),
                "-F".into(),
                "-u".into(),
                "root".into(),
                "-g".into(),
                NUT_USER.into(),
            ],
            "root",
            nut_env(dir),
        ));
        v.push(svc(
            UPSD_SERVICE,
            vec![upsd.display().to_string(), "-F".into()],
            NUT_USER,
            nut_env(dir),
        ));
    }
    v.push(svc(MONITOR, Vec::new(), "pocobelle-ups", Vec::new()));
    v
}

/// The command init runs at the end of a power shutdown (local mode,
/// `kill_power`): the driver with `-k`, and its environment.
pub fn kill_power_command(
    u: &UpsConfig,
    dir: &Path,
    driver: Option<&Path>,
) -> Option<(Vec<String>, Vec<String>)> {
    if !u.kill_power || u.nut_files().is_none() {
        return None;
    }
    let driver = driver?;
    Some((
        vec![
            driver.display().to_string(),
            "-a".into(),
            u.name.clone(),
            "-k".into(),
        ],
        nut_env(dir),
    ))
}

/// Writes `ups.conf`, `upsd.conf` and `upsd.users` into `dir` (created
/// `nut:nut` 0770, the files `root:nut` 0640: upsd reads them, the
/// password is nobody else's).
pub fn write_files(u: &UpsConfig, dir: &Path, nut: Option<Ids>) -> io::Result<()> {
    let Some(files) = u.nut_files() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o770))?;
    let chown = |p: &Path, uid: Option<u32>| -> io::Result<()> {
        if let Some(ids) = nut {
            std::os::unix::fs::chown(p, uid, Some(ids.gid))?;
        }
        Ok(())
    };
    chown(dir, nut.map(|i| i.uid))?;
    for (name, text) in [
        ("ups.conf", &files.ups_conf),
        ("upsd.conf", &files.upsd_conf),
        ("upsd.users", &files.upsd_users),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640))?;
        chown(&p, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(toml: &str) -> UpsConfig {
        let c =
            crate::config::Config::parse(Path::new("t.toml"), &format!("[ups]\n{toml}")).unwrap();
        c.ups.unwrap()
    }

    #[test]
    fn local_mode_runs_the_driver_upsd_and_the_monitor() {
        let u = ups("mode = \"local\"\ndriver = \"usbhid-ups\"\n");
        let dir = Path::new("/run/pocobelle/nut");
        let v = services(
            &u,
            dir,
            Some(Path::new("/lib/nut/usbhid-ups")),
            Some(Path::new("/lib/nut/upsd")),
        );
        let names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [DRIVER_SERVICE, UPSD_SERVICE, MONITOR]);
        assert_eq!(
            v[0].argv,
            [
                "/lib/nut/usbhid-ups",
                "-a",
                "ups",
                "-F",
                "-u",
                "root",
                "-g",
                "nut"
            ]
        );
        assert_eq!(v[0].user.as_deref(), Some("root"));
        assert_eq!(v[1].argv, ["/lib/nut/upsd", "-F"]);
        assert_eq!(v[1].user.as_deref(), Some("nut"));
        assert_eq!(
            v[1].env,
            [
                "NUT_CONFPATH=/run/pocobelle/nut",
                "NUT_STATEPATH=/run/pocobelle/nut",
                "NUT_ALTPIDPATH=/run/pocobelle/nut"
            ]
        );
        assert!(v[2].argv.is_empty(), "the monitor is this binary's applet");
        assert!(v.iter().all(|s| s.safe_mode));
        let (argv, env) = kill_power_command(&u, dir, Some(Path::new("/lib/nut/usbhid-ups")))
            .expect("kill_power is on by default");
        assert_eq!(argv, ["/lib/nut/usbhid-ups", "-a", "ups", "-k"]);
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn nut_lives_beside_the_private_run_directory() {
        assert_eq!(nut_dir(Path::new("/run/pocobelle")), Path::new("/run/nut"));
        assert_eq!(nut_dir(Path::new("run")), Path::new("run/nut"));
    }

    #[test]
    fn remote_mode_runs_only_the_monitor_and_never_cuts_power() {
        let u = ups("mode = \"remote\"\nhost = \"192.168.1.10\"\n");
        let v = services(&u, Path::new("/run/nut"), None, None);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, MONITOR);
        assert!(kill_power_command(&u, Path::new("/run/nut"), Some(Path::new("/x"))).is_none());
        let off = ups("kill_power = false\n");
        assert!(kill_power_command(&off, Path::new("/run/nut"), Some(Path::new("/x"))).is_none());
    }

    #[test]
    fn the_files_are_written_private_to_nut() {
        let d = std::env::temp_dir().join(format!("pocobelle-nut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let u = ups("user = \"monitor\"\npassword = \"s3cret\"\n");
        write_files(&u, &d, None).unwrap();
        let users = std::fs::read_to_string(d.join("upsd.users")).unwrap();
        assert!(users.contains("s3cret"), "{users}");
        let mode = std::fs::metadata(d.join("upsd.users"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert!(
            std::fs::read_to_string(d.join("ups.conf"))
                .unwrap()
                .contains("[ups]")
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
