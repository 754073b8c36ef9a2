//! Replacing a small file on the data partition so that a power cut
//! leaves either the old content or the new one: write a temporary file
//! beside it, fsync it, rename it over the old name, fsync the directory
//! (without that last fsync the rename itself may be lost). The one place
//! that does this; it never decides a path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of files written by [`write_atomic`].
pub const DEFAULT_MODE: u32 = 0o644;

/// The temporary name beside `path`: `<name>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` (mode 0644): write `<path>.tmp`, fsync,
/// rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, DEFAULT_MODE)
}

/// [`write_atomic`] with the file's mode (0600 for private keys). A
/// temporary file left by an earlier crash is replaced; one left by a
/// failed write is removed.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tmp_path(path);
    let r = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        // Whatever the umask was, or the mode of a stale temporary file.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pocobelle-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_the_content_and_leaves_no_temporary_file() {
        let d = tmp_dir("write");
        let p = d.join("clock");
        write_atomic(&p, b"first\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first\n");
        // A stale temporary file from an earlier crash is replaced.
        fs::write(tmp_path(&p), b"stale").unwrap();
        write_atomic(&p, b"second\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second\n");
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("clock")]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_mode_is_the_one_asked_for() {
        let d = tmp_dir("mode");
        let p = d.join("key.pem");
        write_atomic_mode(&p, b"secret", 0o600).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!tmp_path(&p).exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_one() {
        let d = tmp_dir("fail");
        let p = d.join("sub");
        // The target is a non-empty directory: the rename fails.
        fs::create_dir_all(p.join("x")).unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert!(p.join("x").is_dir());
        assert!(!tmp_path(&p).exists());
        let _ = fs::remove_dir_all(&d);
    }
}
