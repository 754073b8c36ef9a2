//! The swap file on the data partition: whether to have one ([`plan`]),
//! its header exactly as util-linux `mkswap` writes it ([`header`]), and
//! creating it with large sequential zero-fill writes, never sparse, mode
//! 0600 ([`create`]). Activation is `swapon(2)` through `crate::sys`.
//! This module never writes anywhere but the one file it is given.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// `SWAPSPACE2`, the magic at the end of the first page.
pub const MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// Offset of the version field (after the 1024 boot bytes).
const INFO_OFFSET: usize = 1024;
/// The header format version `mkswap` writes.
pub const VERSION: u32 = 1;
/// Longest label (bytes) the header holds.
pub const MAX_LABEL: usize = 16;
/// The kernel refuses swap areas with fewer pages than this (mkswap's minimum).
pub const MIN_PAGES: u64 = 10;
/// Zero-fill is written in chunks of this size: large sequential writes
/// the flash translation layer can place whole.
pub const FILL_CHUNK: usize = 1024 * 1024;

/// statfs magic numbers of file systems that cannot hold a swap file.
const NO_SWAP_FS: &[(i64, &str)] = &[
    (0x4d44, "vfat"),
    (0x2011_bab0, "exfat"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x9123_683e, "btrfs"),
    (0x7371_7368, "squashfs"),
    (0x6969, "nfs"),
];

/// What to do about the swap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapPlan {
    /// Keep the existing file (right size) and activate it.
    UseExisting,
    /// (Re)create the file with this many bytes, then activate it.
    Create { bytes: u64 },
    /// No swap; the reason is logged.
    Skip(String),
}

/// Decides from the file system type, its free space, the existing
/// file's size (if any), the wanted size and the space that must stay free.
pub fn plan(
    fs_type: i64,
    free_bytes: u64,
    existing: Option<u64>,
    want: u64,
    keep_free: u64,
    page: u64,
) -> SwapPlan {
    if let Some((_, name)) = NO_SWAP_FS.iter().find(|(m, _)| *m == fs_type) {
        return SwapPlan::Skip(format!(
            "the data file system is {name}, which cannot hold a swap file"
        ));
    }
    let want = want / page * page;
    if want / page < MIN_PAGES {
        return SwapPlan::Skip(format!(
            "{want} bytes is below the {MIN_PAGES}-page minimum"
        ));
    }
    if existing == Some(want) {
        return SwapPlan::UseExisting;
    }
    let reusable = existing.unwrap_or(0);
    let available = free_bytes.saturating_add(reusable);
    if available < want.saturating_add(keep_free) {
        return SwapPlan::Skip(format!(
            "free space too low: {} MiB free, {} MiB swap + {} MiB reserve needed",
            available >> 20,
            want >> 20,
            keep_free >> 20
        ));
    }
    SwapPlan::Create { bytes: want }
}

/// Errors in building a swap header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The label does not fit the 16-byte field.
    #[error("swap label of {0} bytes is longer than {MAX_LABEL}")]
    LabelTooLong(usize),
    /// The area is smaller than the kernel accepts.
    #[error("swap area of {0} pages is below the {MIN_PAGES}-page minimum")]
    TooSmall(u64),
    /// The page count does not fit the 32-bit field.
    #[error("swap area of {0} pages does not fit a version-1 header")]
    TooLarge(u64),
    /// The page size is not a power of two of at least 4096.
    #[error("page size {0} is not supported")]
    PageSize(usize),
}

/// The first page of a swap area of `size` bytes, as `mkswap -U uuid -L
/// label` writes it on a zeroed file: boot bytes zero, version 1,
/// last_page, no bad pages, UUID, label, magic at the page's end. Fields
/// are in the CPU's byte order (the kernel reads them natively).
pub fn header(page: usize, size: u64, uuid: [u8; 16], label: &str) -> Result<Vec<u8>, HeaderError> {
    if page < 4096 || !page.is_power_of_two() {
        return Err(HeaderError::PageSize(page));
    }
    if label.len() > MAX_LABEL {
        return Err(HeaderError::LabelTooLong(label.len()));
    }
    let pages = size / page as u64;
    if pages < MIN_PAGES {
        return Err(HeaderError::TooSmall(pages));
    }
    let last_page = u32::try_from(pages - 1).map_err(|_| HeaderError::TooLarge(pages))?;
    let mut h = vec![0u8; page];
    h[INFO_OFFSET..INFO_OFFSET + 4].copy_from_slice(&VERSION.to_ne_bytes());
    h[INFO_OFFSET + 4..INFO_OFFSET + 8].copy_from_slice(&last_page.to_ne_bytes());
    // nr_badpages stays 0.
    h[INFO_OFFSET + 12..INFO_OFFSET + 28].copy_from_slice(&uuid);
    h[INFO_OFFSET + 28..INFO_OFFSET + 28 + label.len()].copy_from_slice(label.as_bytes());
    h[page - MAGIC.len()..].copy_from_slice(MAGIC);
    Ok(h)
}

/// A random (version 4) UUID from the kernel's generator.
pub fn random_uuid() -> io::Result<[u8; 16]> {
    let mut u = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut u)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

/// Errors while creating the swap file.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Opening, filling or syncing the file failed (disk full, I/O error).
    #[error("swap file {path}: {source}")]
    Io { path: String, source: io::Error },
    /// The header could not be built.
    #[error("swap file {path}: {source}")]
    Header { path: String, source: HeaderError },
}

/// Writes a fresh swap file of `bytes` at `path`: truncated, filled with
/// zeros in [`FILL_CHUNK`] writes (no holes), header written over the
/// first page, synced, mode 0600. On failure the partial file is removed.
pub fn create(path: &Path, bytes: u64, page: usize, label: &str) -> Result<(), CreateError> {
    let io_err = |source| CreateError::Io {
        path: path.display().to_string(),
        source,
    };
    let result = (|| {
        let uuid = random_uuid().map_err(io_err)?;
        let head = header(page, bytes, uuid, label).map_err(|source| CreateError::Header {
            path: path.display().to_string(),
            source,
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
        let zeros = vec![0u8; FILL_CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(FILL_CHUNK as u64) as usize;
            f.write_all(&zeros[..n]).map_err(io_err)?;
            left -= n as u64;
        }
        f.seek(SeekFrom::Start(0)).map_err(io_err)?;
        f.write_all(&head).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The page size of this machine.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const EXT4: i64 = 0xef53;

    #[test]
    fn plan_decisions() {
        assert_eq!(
            plan(EXT4, 1024 * MIB, None, 128 * MIB, 64 * MIB, 4096),
            SwapPlan::Create { bytes: 128 * MIB }
        );
        assert_eq!(
            plan(EXT4, 10 * MIB, Some(128 * MIB), 128 * MIB, 64 * MIB, 4096),
            SwapPlan::UseExisting
        );
        // Wrong size: the old file's space counts as reusable.
        assert_eq!(
            plan(EXT4, 100 * MIB, Some(64 * MIB), 128 * MIB, 32 * MIB, 4096),
            SwapPlan::Create { bytes: 128 * MIB }
        );
        assert!(
            matches!(plan(EXT4, 150 * MIB, None, 128 * MIB, 64 * MIB, 4096), SwapPlan::Skip(r) if r.contains("free space"))
        );
        assert!(
            matches!(plan(0x4d44, 4096 * MIB, None, 128 * MIB, 0, 4096), SwapPlan::Skip(r) if r.contains("vfat"))
        );
        assert!(matches!(
            plan(EXT4, 4096 * MIB, None, 4096 * 5, 0, 4096),
            SwapPlan::Skip(_)
        ));
        // Rounded down to whole pages.
        assert_eq!(
            plan(EXT4, 1024 * MIB, None, MIB + 100, 0, 4096),
            SwapPlan::Create { bytes: MIB }
        );
    }

    #[test]
    fn header_fields() {
        let uuid = [0x11; 16];
        let h = header(4096, 16 * MIB, uuid, "pocobelle").unwrap();
        assert_eq!(h.len(), 4096);
        assert_eq!(&h[4086..], MAGIC);
        assert_eq!(u32::from_ne_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(h[1028..1032].try_into().unwrap()), 4095);
        assert_eq!(&h[1036..1052], &uuid);
        assert_eq!(&h[1052..1061], b"pocobelle");
        assert!(h[..1024].iter().all(|&b| b == 0));
        assert_eq!(
            header(4096, 16 * MIB, uuid, "x".repeat(17).as_str()),
            Err(HeaderError::LabelTooLong(17))
        );
        assert_eq!(
            header(4096, 4096 * 9, uuid, ""),
            Err(HeaderError::TooSmall(9))
        );
        assert_eq!(
            header(1000, MIB, uuid, ""),
            Err(HeaderError::PageSize(1000))
        );
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pocobelle-swap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Our first page equals what util-linux mkswap writes on a zeroed file
    /// with the same UUID and label, byte for byte; and blkid reads ours.
    #[test]
    fn header_matches_mkswap_and_blkid_reads_it() {
        let d = tmpdir("mkswap");
        let page = page_size();
        let size = 4 * MIB;
        let ours = d.join("ours");
        create(&ours, size, page, "pocobelle").unwrap();
        let meta = std::fs::metadata(&ours).unwrap();
        assert_eq!(meta.len(), size);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Not sparse: every block is allocated.
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 >= size, "swap file has holes");
        let ours_bytes = std::fs::read(&ours).unwrap();
        let uuid: [u8; 16] = ours_bytes[1036..1052].try_into().unwrap();
        let uuid_s = format!(
            "{}-{}-{}-{}-{}",
            hex(&uuid[0..4]),
            hex(&uuid[4..6]),
            hex(&uuid[6..8]),
            hex(&uuid[8..10]),
            hex(&uuid[10..16])
        );

        let theirs = d.join("theirs");
        std::fs::write(&theirs, vec![0u8; size as usize]).unwrap();
        let out = std::process::Command::new("mkswap")
            .args(["-U", &uuid_s, "-L", "pocobelle", "-p", &page.to_string()])
            .arg(&theirs)
            .output()
            .expect("mkswap (util-linux) is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs_bytes = std::fs::read(&theirs).unwrap();
        assert_eq!(
            &ours_bytes[..page],
            &theirs_bytes[..page],
            "first page differs from mkswap's"
        );

        let out = std::process::Command::new("blkid")
            .args(["-p", "-o", "export"])
            .arg(&ours)
            .output()
            .expect("blkid (util-linux) is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("TYPE=swap"), "{text}");
        assert!(text.contains("LABEL=pocobelle"), "{text}");
        assert!(text.contains(&format!("UUID={uuid_s}")), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn random_uuid_is_version_4() {
        let u = random_uuid().unwrap();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 2);
    }
}
