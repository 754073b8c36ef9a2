//! The early mounts every boot needs: /proc, /sys, /dev (devtmpfs),
//! /dev/pts, /run, /tmp (and the cgroup2 hierarchy where the kernel has
//! it). Each is skipped when already mounted, so a re-executed init (the
//! recovery path) or an initramfs that mounted some already does no harm.
//! A failed mount is logged and the boot goes on. This module never
//! unmounts anything.

use std::path::Path;

use crate::sys::{MsFlags, Sys};

/// One early mount.
pub struct EarlyMount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In mount order (a parent before its children).
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: "mode=0755",
    },
    EarlyMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "gid=5,mode=0620,ptmxmode=0666",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=0755,size=4m",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=1777,size=16m",
    },
    EarlyMount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
];

/// Mounts what is not mounted yet; returns the targets that failed.
pub fn early_mounts(sys: &mut dyn Sys) -> Vec<&'static str> {
    let mut failed = Vec::new();
    for m in EARLY_MOUNTS {
        let target = Path::new(m.target);
        if sys.is_mounted(target) {
            log::debug!("mount: {} already mounted", m.target);
            continue;
        }
        if !sys.exists(target) && m.target != "/sys/fs/cgroup" {
            let _ = std::fs::create_dir_all(target);
        }
        match sys.mount(m.source, target, m.fstype, m.flags, m.data) {
            Ok(()) => log::info!("mount: {} ({})", m.target, m.fstype),
            Err(e) if m.fstype == "cgroup2" => {
                log::info!("mount: no cgroup2 ({e}); services run without a memory ceiling")
            }
            Err(e) => {
                log::error!("mount: {} ({}): {e}", m.target, m.fstype);
                failed.push(m.target);
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;
    use std::path::PathBuf;

    #[test]
    fn mounts_in_order_and_skips_mounted() {
        let mut sys = FakeSys::default();
        sys.mounted.insert(PathBuf::from("/dev"));
        sys.fail.push("mount /tmp".into());
        let failed = early_mounts(&mut sys);
        assert_eq!(failed, ["/tmp"]);
        let targets: Vec<&str> = sys
            .calls
            .iter()
            .map(|c| c.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "/proc",
                "/sys",
                "/dev/pts",
                "/run",
                "/tmp",
                "/sys/fs/cgroup"
            ]
        );
        assert!(sys.calls[0].starts_with("mount /proc proc proc"));
    }
}
