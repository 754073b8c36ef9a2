//! Thin wrappers over the system calls init needs (mount, finit_module,
//! swapon, sysctl files, statfs, running a helper), behind the [`Sys`]
//! trait so that init's decisions (what to mount, which modules in which
//! order, whether to fsck, what to write where) run on the host against
//! [`fake::FakeSys`]. This module decides nothing: it never chooses a
//! path, a flag or an order, and it never panics on a failed call.

pub mod atomic;
#[cfg(test)]
pub mod fake;
pub mod region;
pub mod text;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use nix::mount::MsFlags;

/// Free space and file-system type of a mounted file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    /// The `f_type` magic number from statfs(2).
    pub fs_type: i64,
    /// Bytes available to an unprivileged writer.
    pub free_bytes: u64,
}

/// The side effects init has on the system. Each method is one call; the
/// real implementation is [`RealSys`].
pub trait Sys {
    /// mount(2).
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    /// umount2(2) without flags.
    fn umount(&mut self, target: &Path) -> io::Result<()>;
    /// Whether `target` is a mount point now (from /proc/self/mounts).
    fn is_mounted(&self, target: &Path) -> bool;
    /// finit_module(2) on the file at `path`.
    fn load_module(&mut self, path: &Path, params: &str) -> io::Result<()>;
    /// Reads a (small) file.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Writes a whole (small) file, as for /proc/sys entries.
    fn write_file(&mut self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Removes a file.
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;
    /// statfs(2).
    fn statfs(&self, path: &Path) -> io::Result<FsStat>;
    /// swapon(2).
    fn swapon(&mut self, path: &Path) -> io::Result<()>;
    /// swapoff(2).
    fn swapoff(&mut self, path: &Path) -> io::Result<()>;
    /// Runs a helper to completion and returns its exit status (-1 when
    /// killed by a signal).
    fn run(&mut self, argv: &[&str]) -> io::Result<i32>;
    /// sync(2).
    fn sync(&mut self);
    /// Sends one rtnetlink request (NETLINK_ROUTE) and returns the
    /// kernel's reply datagrams up to the acknowledgement or end of dump
    /// of sequence number `seq` (at most `netlink::MAX_REPLY` bytes).
    fn netlink(&mut self, seq: u32, request: &[u8]) -> io::Result<Vec<u8>>;
    /// clock_settime(CLOCK_REALTIME): steps the clock to Unix `secs`.`nanos`.
    fn set_clock(&mut self, secs: i64, nanos: u32) -> io::Result<()>;
    /// adjtime(3): slews the clock gradually by `delta_us` microseconds.
    fn slew_clock(&mut self, delta_us: i64) -> io::Result<()>;
    /// Grows the partition `dev` into free space after it when it is the
    /// last of an MBR disk ([`crate::init::grow`]); old and new bytes.
    fn grow_partition(&mut self, dev: &str) -> io::Result<Option<(u64, u64)>>;
    /// Grows the ext4 file system on `dev`, mounted at `mount_point`, to
    /// its partition's size when that is larger; old and new bytes.
    fn grow_fs(&mut self, dev: &str, mount_point: &Path) -> io::Result<Option<(u64, u64)>>;
}

/// The real system.
pub struct RealSys;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl Sys for RealSys {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let data = (!data.is_empty()).then_some(data);
        nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(io::Error::from)
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        nix::mount::umount(target).map_err(io::Error::from)
    }

    fn is_mounted(&self, target: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
            return false;
        };
        mount_points(&text).any(|m| Path::new(&m) == target)
    }

    fn load_module(&mut self, path: &Path, params: &str) -> io::Result<()> {
        let f = std::fs::File::open(path)?;
        let params =
            CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty())
            .map_err(io::Error::from)
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_file(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn statfs(&self, path: &Path) -> io::Result<FsStat> {
        let s = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
        Ok(FsStat {
            fs_type: s.filesystem_type().0 as i64,
            free_bytes: (s.blocks_available() as u64).saturating_mul(s.block_size() as u64),
        })
    }

    fn swapon(&mut self, path: &Path) -> io::Result<()> {
        let c = cpath(path)?;
        // SAFETY: a valid NUL-terminated path; no flags.
        let r = unsafe { libc::swapon(c.as_ptr(), 0) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn swapoff(&mut self, path: &Path) -> io::Result<()> {
        let c = cpath(path)?;
        // SAFETY: a valid NUL-terminated path.
        let r = unsafe { libc::swapoff(c.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn run(&mut self, argv: &[&str]) -> io::Result<i32> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args);
        reset_signal_mask(&mut cmd);
        let mut child = cmd.spawn()?;
        // PID 1 reaps everything else with waitpid(-1); this child is
        // waited for by pid, before the main loop starts.
        let status = child.wait()?;
        Ok(status.code().unwrap_or(-1))
    }

    fn sync(&mut self) {
        nix::unistd::sync();
    }

    fn netlink(&mut self, seq: u32, request: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: a fresh netlink socket, owned (and closed) by `fd`.
        let fd = unsafe {
            let raw = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        let tv = libc::timeval {
            tv_sec: NETLINK_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size; sendto to
        // the kernel (a zeroed sockaddr_nl is pid 0, groups 0).
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            let r = libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr() as *const libc::c_void,
                request.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let max = crate::init::netlink::MAX_REPLY;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        while !crate::init::netlink::is_complete(&out, seq) {
            // SAFETY: recv into a buffer of the given length.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 || out.len() + n as usize > max {
                return Err(io::Error::other("netlink reply too long or cut"));
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        Ok(out)
    }

    fn set_clock(&mut self, secs: i64, nanos: u32) -> io::Result<()> {
        let ts = nix::sys::time::TimeSpec::new(secs as _, nanos as _);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(io::Error::from)
    }

    fn slew_clock(&mut self, delta_us: i64) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: (delta_us.div_euclid(1_000_000)) as _,
            tv_usec: (delta_us.rem_euclid(1_000_000)) as _,
        };
        // SAFETY: adjtime with a valid timeval and no old-value pointer.
        if unsafe { libc::adjtime(&tv, std::ptr::null_mut()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn grow_partition(&mut self, dev: &str) -> io::Result<Option<(u64, u64)>> {
        crate::init::grow::grow_partition(Path::new(dev))
    }

    fn grow_fs(&mut self, dev: &str, mount_point: &Path) -> io::Result<Option<(u64, u64)>> {
        crate::init::grow::grow_fs(Path::new(dev), mount_point)
    }
}

/// A netlink request waits at most this long for each reply datagram.
pub const NETLINK_TIMEOUT_SECS: libc::time_t = 2;

/// Makes `cmd`'s child start with no blocked signal: PID 1 blocks them
/// all, and both fork+exec and posix_spawn keep the mask.
pub fn reset_signal_mask(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sigprocmask is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Mount points listed in a /proc/self/mounts text (octal escapes such as
/// `\040` decoded).
pub fn mount_points(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(unescape_mount_field)
}

fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let text = "proc /proc proc rw 0 0\n/dev/vda /my\\040data ext4 rw 0 0\n";
        let v: Vec<String> = mount_points(text).collect();
        assert_eq!(v, ["/proc", "/my data"]);
    }

    #[test]
    fn mount_field_fuzz_never_panics() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(b"\\0179 a/"[(x % 8) as usize] as char);
            }
            let _ = unescape_mount_field(&s);
            let _ = mount_points(&s).count();
        }
    }
}
