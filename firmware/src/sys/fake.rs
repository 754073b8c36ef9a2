//! An in-memory [`Sys`] for host tests: it records every call in order,
//! serves files from a map, and fails the calls a test asks it to fail.
//! It never touches the real system.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::{FsStat, MsFlags, Sys};

#[derive(Default)]
pub struct FakeSys {
    /// Every call, in order, as a short line (`mount /proc proc`, ...).
    pub calls: Vec<String>,
    pub files: BTreeMap<PathBuf, String>,
    pub mounted: BTreeSet<PathBuf>,
    pub statfs: Option<FsStat>,
    /// Exit status that `run` returns.
    pub run_status: i32,
    /// Calls whose line starts with one of these fail with EIO.
    pub fail: Vec<String>,
    /// Module paths that fail with EEXIST (already loaded).
    pub already_loaded: Vec<PathBuf>,
    /// Netlink requests sent, in order (raw bytes).
    pub netlink_sent: Vec<Vec<u8>>,
    /// Replies for the netlink requests, taken in order; when empty, an
    /// acknowledgement (errno 0) of the request's sequence number.
    pub netlink_replies: std::collections::VecDeque<Vec<u8>>,
    /// What `grow_partition` and `grow_fs` report (old, new bytes).
    pub grown_partition: Option<(u64, u64)>,
    pub grown_fs: Option<(u64, u64)>,
}

/// An NLMSG_ERROR acknowledgement of `seq` with `errno` (0: success).
pub fn netlink_ack(seq: u32, errno: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&36u32.to_ne_bytes());
    b.extend_from_slice(&2u16.to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&(-errno).to_ne_bytes());
    b.extend_from_slice(&[0; 16]);
    b
}

impl FakeSys {
    fn record(&mut self, line: String) -> io::Result<()> {
        let failed = self.fail.iter().any(|f| line.starts_with(f.as_str()));
        self.calls.push(line);
        if failed {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            Ok(())
        }
    }
}

impl Sys for FakeSys {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let ro = if flags.contains(MsFlags::MS_RDONLY) {
            " ro"
        } else {
            ""
        };
        let remount = if flags.contains(MsFlags::MS_REMOUNT) {
            " remount"
        } else {
            ""
        };
        self.record(format!(
            "mount {} {source} {fstype}{ro}{remount} {data}",
            target.display()
        ))?;
        self.mounted.insert(target.to_path_buf());
        Ok(())
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        self.record(format!("umount {}", target.display()))?;
        self.mounted.remove(target);
        Ok(())
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.mounted.contains(target)
    }

    fn load_module(&mut self, path: &Path, _params: &str) -> io::Result<()> {
        self.record(format!("insmod {}", path.display()))?;
        if self.already_loaded.iter().any(|p| p == path) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(())
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn write_file(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(data).into_owned();
        self.record(format!("write {} {}", path.display(), text.trim_end()))?;
        self.files.insert(path.to_path_buf(), text);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || self.mounted.contains(path)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.record(format!("rm {}", path.display()))?;
        self.files
            .remove(path)
            .map(drop)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn statfs(&self, _path: &Path) -> io::Result<FsStat> {
        self.statfs
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn swapon(&mut self, path: &Path) -> io::Result<()> {
        self.record(format!("swapon {}", path.display()))
    }

    fn swapoff(&mut self, path: &Path) -> io::Result<()> {
        self.record(format!("swapoff {}", path.display()))
    }

    fn run(&mut self, argv: &[&str]) -> io::Result<i32> {
        self.record(format!("run {}", argv.join(" ")))?;
        Ok(self.run_status)
    }

    fn sync(&mut self) {
        self.calls.push("sync".into());
    }

    fn netlink(&mut self, seq: u32, request: &[u8]) -> io::Result<Vec<u8>> {
        let kind = u16::from_ne_bytes([request[4], request[5]]);
        self.record(format!("netlink type {kind}"))?;
        self.netlink_sent.push(request.to_vec());
        Ok(self
            .netlink_replies
            .pop_front()
            .unwrap_or_else(|| netlink_ack(seq, 0)))
    }

    fn set_clock(&mut self, secs: i64, nanos: u32) -> io::Result<()> {
        self.record(format!("set_clock {secs}.{nanos:09}"))
    }

    fn slew_clock(&mut self, delta_us: i64) -> io::Result<()> {
        self.record(format!("slew_clock {delta_us}"))
    }

    fn grow_partition(&mut self, dev: &str) -> io::Result<Option<(u64, u64)>> {
        self.record(format!("grow_partition {dev}"))?;
        Ok(self.grown_partition)
    }

    fn grow_fs(&mut self, dev: &str, mount_point: &Path) -> io::Result<Option<(u64, u64)>> {
        self.record(format!("grow_fs {dev} {}", mount_point.display()))?;
        Ok(self.grown_fs)
    }
}
