//! The data partition: the clean-shutdown marker, `e2fsck -p` after an
//! unclean shutdown, the flash-friendly mount, and the swap file on it.
//! The marker (`<data_dir>/.clean-shutdown`) is written as the very last
//! step of a clean shutdown and removed at boot, so its absence at boot
//! means the board lost power or crashed. Every step degrades on failure
//! (logged), never halts the boot. This module never formats anything.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::init::swap::{self, SwapPlan};
use crate::sys::{MsFlags, Sys};

/// The marker file under `system.data_dir`.
pub const CLEAN_MARKER: &str = ".clean-shutdown";

/// How the last shutdown went, as far as the marker tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LastShutdown {
    /// The marker was there.
    Clean,
    /// The marker was missing: power loss, crash or reset.
    Unclean,
    /// The data partition could not be examined.
    Unknown,
}

/// What `e2fsck -p`'s exit status means for the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckOutcome {
    /// 0: clean.
    Clean,
    /// 1 or 2: errors corrected.
    Corrected,
    /// 4 and above (or killed): errors left; mount read-only.
    Failed(i32),
}

/// Interprets an e2fsck exit status (see e2fsck(8)).
pub fn fsck_outcome(status: i32) -> FsckOutcome {
    match status {
        0 => FsckOutcome::Clean,
        1..=3 => FsckOutcome::Corrected,
        s => FsckOutcome::Failed(s),
    }
}

/// The mount options for the data partition.
pub fn data_mount_options(fstype: &str, commit_secs: u32) -> String {
    if fstype.starts_with("ext") {
        format!("commit={commit_secs}")
    } else {
        String::new()
    }
}

/// What the data step found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataState {
    pub last_shutdown: LastShutdown,
    pub mounted_rw: bool,
    /// What `e2fsck -p` said, when it ran (after an unclean shutdown).
    pub fsck: Option<String>,
}

/// Checks and mounts the data partition (when `init.data_device` is set)
/// and removes the clean-shutdown marker.
pub fn bring_up_data(sys: &mut dyn Sys, cfg: &Config) -> DataState {
    let data = cfg.system.data_dir.as_path();
    let marker = data.join(CLEAN_MARKER);
    let dev = cfg.init.data_device.as_str();
    let _ = std::fs::create_dir_all(data);
    let fstype = cfg.init.data_fstype.as_str();
    let flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    let opts = data_mount_options(fstype, cfg.init.commit_secs);
    let last;
    let mut mounted_rw = true;
    let mut fsck = None;
    if dev.is_empty() || sys.is_mounted(data) {
        last = marker_state(sys, &marker);
    } else {
        // Look at the marker on a read-only mount first: no journal replay
        // happens before fsck decides.
        let peek = sys.mount(dev, data, fstype, flags | MsFlags::MS_RDONLY, "");
        last = match peek {
            Ok(()) => {
                let l = marker_state(sys, &marker);
                if let Err(e) = sys.umount(data) {
                    log::warn!(
                        "data: cannot unmount {} after reading the marker: {e}",
                        data.display()
                    );
                }
                l
            }
            Err(e) => {
                log::warn!("data: {dev} does not mount read-only ({e}); checking it");
                LastShutdown::Unknown
            }
        };
        let mut read_only = false;
        if last != LastShutdown::Clean {
            let (ro, said) = run_fsck(sys, &cfg.init.fsck, dev);
            read_only = ro;
            fsck = Some(said);
        }
        if cfg.init.grow_data && !read_only && fstype == "ext4" {
            match sys.grow_partition(dev) {
                Ok(Some((old, new))) => log::info!(
                    "data: partition {dev} grown from {} MiB to {} MiB to fill the medium",
                    old >> 20,
                    new >> 20
                ),
                Ok(None) => {}
                Err(e) => log::warn!("data: partition {dev} not grown: {e}"),
            }
        }
        let mflags = if read_only {
            flags | MsFlags::MS_RDONLY
        } else {
            flags
        };
        if let Err(e) = sys.mount(dev, data, fstype, mflags, &opts) {
            log::error!(
                "data: cannot mount {dev} on {} ({fstype}, {opts}): {e}; running without the data partition",
                data.display()
            );
            return DataState {
                last_shutdown: last,
                mounted_rw: false,
                fsck,
            };
        }
        mounted_rw = !read_only;
        log::info!(
            "data: {dev} mounted on {} ({fstype}, noatime{}{}{})",
            data.display(),
            if opts.is_empty() { "" } else { "," },
            opts,
            if read_only { ", READ-ONLY" } else { "" }
        );
        if cfg.init.grow_data && !read_only && fstype == "ext4" {
            match sys.grow_fs(dev, data) {
                Ok(Some((old, new))) => log::info!(
                    "data: file system on {} grown from {} MiB to {} MiB",
                    data.display(),
                    old >> 20,
                    new >> 20
                ),
                Ok(None) => {}
                Err(e) => log::warn!("data: file system on {} not grown: {e}", data.display()),
            }
        }
    }
    match last {
        LastShutdown::Clean => log::info!("boot: the last shutdown was clean"),
        LastShutdown::Unclean => {
            log::warn!("boot: the last shutdown was NOT clean (power loss or crash)")
        }
        LastShutdown::Unknown => {
            log::warn!("boot: cannot tell whether the last shutdown was clean")
        }
    }
    if last == LastShutdown::Clean && mounted_rw {
        if let Err(e) = sys.remove_file(&marker) {
            log::warn!("data: cannot remove {}: {e}", marker.display());
        }
        sys.sync();
    }
    DataState {
        last_shutdown: last,
        mounted_rw,
        fsck,
    }
}

fn marker_state(sys: &dyn Sys, marker: &Path) -> LastShutdown {
    if sys.exists(marker) {
        LastShutdown::Clean
    } else {
        LastShutdown::Unclean
    }
}

/// Runs `e2fsck -p DEV`; returns whether the file system should be
/// mounted read-only (errors left), and what happened in a few words
/// (for `status`).
fn run_fsck(sys: &mut dyn Sys, fsck: &Path, dev: &str) -> (bool, String) {
    let prog = fsck.to_string_lossy();
    if !sys.exists(fsck) {
        log::warn!("fsck: {prog} not found; {dev} mounted unchecked");
        return (false, format!("not run ({prog} missing)"));
    }
    log::info!("fsck: checking {dev} ({prog} -p)");
    match sys.run(&[&prog, "-p", dev]) {
        Ok(s) => match fsck_outcome(s) {
            FsckOutcome::Clean => {
                log::info!("fsck: {dev} is clean");
                (false, "clean".into())
            }
            FsckOutcome::Corrected => {
                log::warn!("fsck: {dev}: errors corrected (status {s})");
                (false, format!("errors corrected (status {s})"))
            }
            FsckOutcome::Failed(s) => {
                log::error!("fsck: {dev}: errors left (status {s}); mounting read-only");
                (true, format!("ERRORS LEFT (status {s}): data read-only"))
            }
        },
        Err(e) => {
            log::error!("fsck: cannot run {prog}: {e}; {dev} mounted unchecked");
            (false, format!("could not run: {e}"))
        }
    }
}

/// Writes the clean-shutdown marker (the last write of a clean shutdown).
pub fn write_clean_marker(data: &Path) -> std::io::Result<()> {
    let p = data.join(CLEAN_MARKER);
    let f = std::fs::File::create(&p)?;
    f.sync_all()?;
    std::fs::File::open(data)?.sync_all()
}

/// The swap file's path.
pub fn swap_path(cfg: &Config) -> PathBuf {
    cfg.system.data_dir.join(&cfg.init.swap.file)
}

/// Creates (when needed) and activates the swap file; returns whether swap is on.
pub fn bring_up_swap(sys: &mut dyn Sys, cfg: &Config, data: &DataState) -> bool {
    let s = &cfg.init.swap;
    if !s.enabled {
        log::info!("swap: disabled in the configuration");
        return false;
    }
    if !data.mounted_rw {
        log::warn!("swap: skipped: the data partition is not writable");
        return false;
    }
    let path = swap_path(cfg);
    let st = match sys.statfs(&cfg.system.data_dir) {
        Ok(st) => st,
        Err(e) => {
            log::warn!(
                "swap: skipped: cannot statfs {}: {e}",
                cfg.system.data_dir.display()
            );
            return false;
        }
    };
    let existing = std::fs::metadata(&path).ok().map(|m| m.len());
    let page = swap::page_size();
    let want = s.size_mib as u64 * 1024 * 1024;
    let keep = s.min_free_mib as u64 * 1024 * 1024;
    match swap::plan(st.fs_type, st.free_bytes, existing, want, keep, page as u64) {
        SwapPlan::Skip(why) => {
            log::warn!("swap: skipped: {why}");
            return false;
        }
        SwapPlan::UseExisting => {}
        SwapPlan::Create { bytes } => {
            log::info!(
                "swap: writing {} ({} MiB, zero-filled)",
                path.display(),
                bytes >> 20
            );
            if let Err(e) = swap::create(&path, bytes, page, "pocobelle") {
                log::error!("swap: {e}");
                return false;
            }
        }
    }
    match sys.swapon(&path) {
        Ok(()) => {
            log::info!("swap: {} active", path.display());
            true
        }
        Err(e) => {
            log::error!("swap: swapon {}: {e}", path.display());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    fn cfg(dev: &str) -> Config {
        let mut c = Config::default();
        c.init.data_device = dev.into();
        c.system.data_dir = PathBuf::from("/nonexistent-pocobelle-test/data");
        c
    }

    #[test]
    fn clean_marker_skips_fsck_and_is_removed() {
        let c = cfg("/dev/vda");
        let mut sys = FakeSys::default();
        sys.files.insert(c.init.fsck.clone(), String::new());
        sys.files
            .insert(c.system.data_dir.join(CLEAN_MARKER), String::new());
        let st = bring_up_data(&mut sys, &c);
        assert_eq!(
            st,
            DataState {
                last_shutdown: LastShutdown::Clean,
                mounted_rw: true,
                fsck: None,
            }
        );
        assert!(
            !sys.calls.iter().any(|c| c.starts_with("run")),
            "{:?}",
            sys.calls
        );
        assert!(
            sys.calls.iter().any(|c| c.ends_with("ext4 commit=60")),
            "{:?}",
            sys.calls
        );
        assert!(
            sys.calls
                .iter()
                .any(|c| c.starts_with("rm ") && c.ends_with(CLEAN_MARKER))
        );
    }

    #[test]
    fn missing_marker_runs_fsck_before_the_rw_mount() {
        let c = cfg("/dev/vda");
        let mut sys = FakeSys::default();
        sys.files.insert(c.init.fsck.clone(), String::new());
        let st = bring_up_data(&mut sys, &c);
        assert_eq!(st.last_shutdown, LastShutdown::Unclean);
        let fsck = sys
            .calls
            .iter()
            .position(|c| c == "run /sbin/e2fsck -p /dev/vda")
            .expect("fsck ran");
        let rw = sys
            .calls
            .iter()
            .rposition(|c| c.starts_with("mount") && !c.contains(" ro"))
            .unwrap();
        assert!(fsck < rw, "{:?}", sys.calls);
        // What status shows of it.
        assert_eq!(st.fsck.as_deref(), Some("clean"));
    }

    #[test]
    fn the_partition_grows_after_fsck_and_the_file_system_once_mounted() {
        let c = cfg("/dev/vda3");
        let mut sys = FakeSys {
            grown_partition: Some((320 << 20, 8000 << 20)),
            grown_fs: Some((320 << 20, 8000 << 20)),
            ..Default::default()
        };
        sys.files.insert(c.init.fsck.clone(), String::new());
        bring_up_data(&mut sys, &c);
        let at = |p: &str| sys.calls.iter().position(|c| c.starts_with(p));
        let fsck = at("run /sbin/e2fsck").expect("fsck ran");
        let part = at("grow_partition /dev/vda3").expect("partition grown");
        let rw = sys
            .calls
            .iter()
            .rposition(|c| c.starts_with("mount") && !c.contains(" ro"))
            .unwrap();
        let fs = at("grow_fs /dev/vda3 /nonexistent-pocobelle-test/data").expect("fs grown");
        assert!(fsck < part && part < rw && rw < fs, "{:?}", sys.calls);

        // Switched off, or with errors left by fsck: neither is touched.
        let mut off = cfg("/dev/vda3");
        off.init.grow_data = false;
        let mut sys = FakeSys::default();
        bring_up_data(&mut sys, &off);
        assert!(
            !sys.calls.iter().any(|c| c.starts_with("grow")),
            "{:?}",
            sys.calls
        );
        let mut sys = FakeSys {
            run_status: 4,
            ..Default::default()
        };
        sys.files.insert(c.init.fsck.clone(), String::new());
        bring_up_data(&mut sys, &c);
        assert!(
            !sys.calls.iter().any(|c| c.starts_with("grow")),
            "{:?}",
            sys.calls
        );
    }

    #[test]
    fn uncorrected_errors_mount_read_only_and_skip_swap() {
        let c = cfg("/dev/vda");
        let mut sys = FakeSys {
            run_status: 4,
            ..Default::default()
        };
        sys.files.insert(c.init.fsck.clone(), String::new());
        let st = bring_up_data(&mut sys, &c);
        assert!(!st.mounted_rw);
        assert!(sys.calls.last().unwrap().contains(" ro"), "{:?}", sys.calls);
        assert!(!bring_up_swap(&mut sys, &c, &st));
    }

    #[test]
    fn swap_is_skipped_on_vfat_and_created_on_ext4() {
        let dir = std::env::temp_dir().join(format!("pocobelle-swapup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Config::default();
        c.system.data_dir = dir.clone();
        c.init.swap.size_mib = 1;
        c.init.swap.min_free_mib = 0;
        let data = DataState {
            last_shutdown: LastShutdown::Clean,
            mounted_rw: true,
            fsck: None,
        };
        let mut sys = FakeSys {
            statfs: Some(crate::sys::FsStat {
                fs_type: 0x4d44,
                free_bytes: 1 << 30,
            }),
            ..Default::default()
        };
        assert!(!bring_up_swap(&mut sys, &c, &data));
        assert!(sys.calls.is_empty(), "{:?}", sys.calls);
        assert!(!swap_path(&c).exists());
        sys.statfs = Some(crate::sys::FsStat {
            fs_type: 0xef53,
            free_bytes: 1 << 30,
        });
        assert!(bring_up_swap(&mut sys, &c, &data));
        assert_eq!(sys.calls, [format!("swapon {}", swap_path(&c).display())]);
        assert_eq!(std::fs::metadata(swap_path(&c)).unwrap().len(), 1 << 20);
        // Too little free space beside an absent file: skipped.
        std::fs::remove_file(swap_path(&c)).unwrap();
        sys.statfs = Some(crate::sys::FsStat {
            fs_type: 0xef53,
            free_bytes: 1 << 19,
        });
        assert!(!bring_up_swap(&mut sys, &c, &data));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fsck_statuses() {
        assert_eq!(fsck_outcome(0), FsckOutcome::Clean);
        assert_eq!(fsck_outcome(1), FsckOutcome::Corrected);
        assert_eq!(fsck_outcome(4), FsckOutcome::Failed(4));
        assert_eq!(fsck_outcome(-1), FsckOutcome::Failed(-1));
    }
}
