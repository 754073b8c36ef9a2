//! Growing the data partition to fill the medium, at the first boot of a
//! freshly flashed image (the image's data partition is a few hundred
//! MiB; the USB key or SD card is often many GiB). Owns the MBR decision
//! ([`plan`], pure: bytes and sizes in, a new table out), and the two
//! system calls that apply it: rewriting the partition table's sector and
//! telling the kernel the partition's new length (BLKPG), then growing
//! the mounted ext4 file system online (EXT4_IOC_RESIZE_FS, what
//! `resize2fs` does on a mounted file system). It only ever grows the
//! LAST partition of an MBR disk into free space after it; it never moves
//! a start, never touches GPT, and does nothing when less than
//! [`MIN_GROW_SECTORS`] would be gained, so after the first boot it does
//! nothing at all.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Bytes in a sector, as MBR and sysfs count them.
pub const SECTOR: u64 = 512;
/// The partition's end is aligned to this (1 MiB: flash erase blocks).
pub const ALIGN_SECTORS: u64 = 2048;
/// Less than this to gain (16 MiB) and the table is left alone.
pub const MIN_GROW_SECTORS: u64 = 16 * 2048;
/// MBR sizes are 32-bit sector counts (2 TiB).
pub const MBR_MAX_SECTORS: u64 = u32::MAX as u64;

const ENTRIES: usize = 446;
const ENTRY_LEN: usize = 16;
/// Partition types that are containers or GPT's protective entry.
const EXTENDED: [u8; 4] = [0x05, 0x0f, 0x85, 0xee];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrowError {
    #[error("sector 0 has no MBR signature")]
    NoSignature,
    #[error("the disk has a GPT (protective MBR); not grown")]
    Gpt,
    #[error("no MBR entry starts at sector {0} with {1} sectors")]
    NotInTable(u64, u64),
    #[error("an MBR entry starts after this partition (it is not the last)")]
    NotLast,
    #[error("the partition is a logical one inside an extended partition")]
    Extended,
}

/// What [`plan`] decided: entry `index` (0-3) becomes `new_sectors` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub index: usize,
    pub start: u64,
    pub old_sectors: u64,
    pub new_sectors: u64,
    /// Sector 0 with the entry's size changed, nothing else.
    pub mbr: [u8; 512],
}

fn entry(mbr: &[u8; 512], i: usize) -> (u8, u64, u64) {
    let e = &mbr[ENTRIES + i * ENTRY_LEN..ENTRIES + (i + 1) * ENTRY_LEN];
    let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
    let len = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
    (e[4], start, len)
}

/// Decides whether the partition at `start` with `sectors` sectors, on a
/// disk of `disk_sectors` sectors whose sector 0 is `mbr`, can grow, and
/// to what. `Ok(None)`: nothing worth doing (already fills the disk).
pub fn plan(
    mbr: &[u8; 512],
    start: u64,
    sectors: u64,
    disk_sectors: u64,
) -> Result<Option<Plan>, GrowError> {
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return Err(GrowError::NoSignature);
    }
    let entries: Vec<(u8, u64, u64)> = (0..4).map(|i| entry(mbr, i)).collect();
    if entries.iter().any(|e| e.0 == 0xee) {
        return Err(GrowError::Gpt);
    }
    let index = entries
        .iter()
        .position(|&(t, s, l)| t != 0 && s == start && l == sectors)
        .ok_or_else(|| {
            let inside = entries
                .iter()
                .any(|&(t, s, l)| EXTENDED.contains(&t) && s < start && start < s + l);
            if inside {
                GrowError::Extended
            } else {
                GrowError::NotInTable(start, sectors)
            }
        })?;
    if entries
        .iter()
        .enumerate()
        .any(|(i, &(t, s, _))| i != index && t != 0 && s > start)
    {
        return Err(GrowError::NotLast);
    }
    let end = disk_sectors.min(start + MBR_MAX_SECTORS);
    let new_end = end / ALIGN_SECTORS * ALIGN_SECTORS;
    if new_end <= start + sectors || new_end - (start + sectors) < MIN_GROW_SECTORS {
        return Ok(None);
    }
    let new_sectors = new_end - start;
    let mut out = *mbr;
    let off = ENTRIES + index * ENTRY_LEN + 12;
    out[off..off + 4].copy_from_slice(&(new_sectors as u32).to_le_bytes());
    Ok(Some(Plan {
        index,
        start,
        old_sectors: sectors,
        new_sectors,
        mbr: out,
    }))
}

/// Where a partition sits, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The whole disk's device node (e.g. /dev/vda).
    pub disk: PathBuf,
    /// Partition number (1-based).
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
    pub disk_sectors: u64,
}

fn read_u64(p: &Path) -> io::Result<u64> {
    std::fs::read_to_string(p)?.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number", p.display()),
        )
    })
}

/// Finds the partition behind `dev` (a node or a symlink to one) in
/// /sys/class/block. `Ok(None)`: `dev` is not a partition.
pub fn locate(dev: &Path) -> io::Result<Option<Located>> {
    let real = std::fs::canonicalize(dev)?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no device name"))?;
    let sys = Path::new("/sys/class/block").join(name);
    if !sys.join("partition").exists() {
        return Ok(None);
    }
    // /sys/class/block/vda3 -> ../../devices/.../vda/vda3: the disk is its parent.
    let dir = std::fs::canonicalize(&sys)?;
    let disk_dir = dir
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no parent disk"))?;
    let disk_name = disk_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no parent disk name"))?;
    Ok(Some(Located {
        disk: Path::new("/dev").join(disk_name),
        number: read_u64(&sys.join("partition"))? as u32,
        start: read_u64(&sys.join("start"))?,
        sectors: read_u64(&sys.join("size"))?,
        disk_sectors: read_u64(&disk_dir.join("size"))?,
    }))
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
const BLKPG_DEVNAMELTH: usize = 64;
const BLKPG_VOLNAMELTH: usize = 64;

#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [u8; BLKPG_DEVNAMELTH],
    volname: [u8; BLKPG_VOLNAMELTH],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// Rewrites sector 0 of the disk with the plan's table (then fsync) and
/// tells the kernel the partition's new length. The partition must not
/// be mounted read-write.
pub fn apply(at: &Located, plan: &Plan) -> io::Result<()> {
    let disk: File = OpenOptions::new().read(true).write(true).open(&at.disk)?;
    let mut now = [0u8; 512];
    disk.read_exact_at(&mut now, 0)?;
    // The table must be the one planned from; a change meanwhile aborts.
    let mut expected = plan.mbr;
    let off = ENTRIES + plan.index * ENTRY_LEN + 12;
    expected[off..off + 4].copy_from_slice(&(plan.old_sectors as u32).to_le_bytes());
    if now != expected {
        return Err(io::Error::other("the partition table changed under us"));
    }
    disk.write_all_at(&plan.mbr, 0)?;
    disk.sync_all()?;
    let mut part = BlkpgPartition {
        start: (plan.start * SECTOR) as i64,
        length: (plan.new_sectors * SECTOR) as i64,
        pno: at.number as libc::c_int,
        devname: [0; BLKPG_DEVNAMELTH],
        volname: [0; BLKPG_VOLNAMELTH],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: &mut part as *mut BlkpgPartition as *mut libc::c_void,
    };
    // SAFETY: BLKPG reads one blkpg_ioctl_arg pointing at one
    // blkpg_partition, both alive for the call.
    let r = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG as _, &mut arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size in bytes of the ext2/3/4 file system whose first 2 KiB are
/// `head` (its superblock at 1024), or `None` when there is none.
pub fn ext4_bytes(head: &[u8]) -> Option<u64> {
    let sb = head.get(1024..2048)?;
    let le32 = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]) as u64;
    if sb[0x38] != 0x53 || sb[0x39] != 0xef {
        return None;
    }
    let log = le32(0x18);
    if log > 6 {
        return None;
    }
    let mut blocks = le32(0x04);
    const INCOMPAT_64BIT: u64 = 0x80;
    if le32(0x60) & INCOMPAT_64BIT != 0 {
        blocks |= le32(0x150) << 32;
    }
    blocks.checked_mul(1024 << log)
}

/// Grows the partition behind `dev` when it is the last one of an MBR
/// disk with room after it. Returns its old and new sizes in bytes when
/// it grew.
pub fn grow_partition(dev: &Path) -> io::Result<Option<(u64, u64)>> {
    let Some(at) = locate(dev)? else {
        return Ok(None);
    };
    let mut mbr = [0u8; 512];
    File::open(&at.disk)?.read_exact_at(&mut mbr, 0)?;
    let plan = match plan(&mbr, at.start, at.sectors, at.disk_sectors) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(None),
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    apply(&at, &plan)?;
    Ok(Some((plan.old_sectors * SECTOR, plan.new_sectors * SECTOR)))
}

/// Grows the ext4 file system on `dev`, mounted at `mount_point`, to its
/// partition's size when the partition is larger by at least
/// [`MIN_GROW_SECTORS`] (a partition grown at a boot that lost power
/// before this step is caught up at the next). Returns the old and new
/// sizes in bytes when it grew.
pub fn grow_fs(dev: &Path, mount_point: &Path) -> io::Result<Option<(u64, u64)>> {
    let Some(at) = locate(dev)? else {
        return Ok(None);
    };
    let mut head = [0u8; 2048];
    File::open(dev)?.read_exact_at(&mut head, 0)?;
    let fs = ext4_bytes(&head).ok_or_else(|| io::Error::other("no ext4 superblock"))?;
    let part = at.sectors * SECTOR;
    if part < fs || part - fs < MIN_GROW_SECTORS * SECTOR {
        return Ok(None);
    }
    resize_ext4(mount_point, part)?;
    Ok(Some((fs, part)))
}

const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;

/// Grows the mounted ext4 file system at `mount_point` to `bytes`
/// (online, as `resize2fs` does when mounted).
pub fn resize_ext4(mount_point: &Path, bytes: u64) -> io::Result<()> {
    let dir = File::open(mount_point)?;
    let st = nix::sys::statfs::statfs(mount_point).map_err(io::Error::from)?;
    let bsize = st.block_size() as u64;
    if bsize == 0 {
        return Err(io::Error::other("block size 0"));
    }
    let blocks: u64 = bytes / bsize;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 block count.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS as _, &blocks) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(parts: &[(u8, u32, u32)]) -> [u8; 512] {
        let mut m = [0u8; 512];
        m[440..444].copy_from_slice(&0x504f_434fu32.to_le_bytes());
        for (i, &(t, s, l)) in parts.iter().enumerate() {
            let e = ENTRIES + i * ENTRY_LEN;
            m[e + 4] = t;
            m[e + 8..e + 12].copy_from_slice(&s.to_le_bytes());
            m[e + 12..e + 16].copy_from_slice(&l.to_le_bytes());
        }
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    // The image's layout: 4 MiB free, boot 32 MiB, root 48 MiB, data 320 MiB.
    const IMAGE: [(u8, u32, u32); 3] = [
        (0x0e, 8192, 65536),
        (0x83, 73728, 98304),
        (0x83, 172032, 655360),
    ];

    #[test]
    fn the_last_partition_grows_to_the_aligned_end_and_nothing_else_changes() {
        let m = mbr(&IMAGE);
        let disk = 8_000_000_000 / SECTOR; // an "8 GB" key, not a MiB multiple
        let p = plan(&m, 172032, 655360, disk).unwrap().unwrap();
        assert_eq!(p.index, 2);
        assert_eq!((p.start + p.new_sectors) % ALIGN_SECTORS, 0);
        assert!(
            p.start + p.new_sectors <= disk && disk - (p.start + p.new_sectors) < ALIGN_SECTORS
        );
        let changed: Vec<usize> = (0..512).filter(|&i| m[i] != p.mbr[i]).collect();
        assert!(
            changed
                .iter()
                .all(|&i| (ENTRIES + 2 * 16 + 12..ENTRIES + 2 * 16 + 16).contains(&i))
        );
        assert_eq!(entry(&p.mbr, 2), (0x83, 172032, p.new_sectors));
        assert_eq!(entry(&p.mbr, 0), entry(&m, 0));
    }

    #[test]
    fn nothing_to_do_when_the_disk_is_the_image_or_barely_larger() {
        let m = mbr(&IMAGE);
        let end = 172032 + 655360;
        assert_eq!(plan(&m, 172032, 655360, end).unwrap(), None);
        assert_eq!(
            plan(&m, 172032, 655360, end + MIN_GROW_SECTORS - 1).unwrap(),
            None
        );
        assert!(
            plan(&m, 172032, 655360, end + MIN_GROW_SECTORS)
                .unwrap()
                .is_some()
        );
        // After growing once, the grown table plans nothing.
        let p = plan(&m, 172032, 655360, end * 10).unwrap().unwrap();
        assert_eq!(plan(&p.mbr, 172032, p.new_sectors, end * 10).unwrap(), None);
    }

    #[test]
    fn refuses_what_it_must_not_touch() {
        let m = mbr(&IMAGE);
        // Not the last partition.
        assert_eq!(plan(&m, 73728, 98304, 1 << 30), Err(GrowError::NotLast));
        // A table that does not hold the partition the kernel reports.
        assert_eq!(
            plan(&m, 172032, 1000, 1 << 30),
            Err(GrowError::NotInTable(172032, 1000))
        );
        // GPT's protective MBR.
        assert_eq!(
            plan(&mbr(&[(0xee, 1, 1000)]), 1, 1000, 1 << 30),
            Err(GrowError::Gpt)
        );
        // A logical partition in an extended one.
        let ext = mbr(&[(0x83, 2048, 2048), (0x05, 4096, 100_000)]);
        assert_eq!(plan(&ext, 6144, 10_000, 1 << 30), Err(GrowError::Extended));
        let mut bad = m;
        bad[511] = 0;
        assert_eq!(
            plan(&bad, 172032, 655360, 1 << 30),
            Err(GrowError::NoSignature)
        );
    }

    #[test]
    fn sizes_stop_at_the_mbr_limit() {
        let m = mbr(&[(0x83, 2048, 1 << 20)]);
        let p = plan(&m, 2048, 1 << 20, 1 << 40).unwrap().unwrap();
        assert!(p.new_sectors <= MBR_MAX_SECTORS);
        assert_eq!(entry(&p.mbr, 0).2, p.new_sectors);
    }

    #[test]
    fn ext4_size_from_the_superblock() {
        let mut head = [0u8; 2048];
        assert_eq!(ext4_bytes(&head), None, "no magic");
        let sb = 1024;
        head[sb + 0x38] = 0x53;
        head[sb + 0x39] = 0xef;
        head[sb + 0x04..sb + 0x08].copy_from_slice(&81920u32.to_le_bytes());
        head[sb + 0x18] = 2; // 4096-byte blocks
        assert_eq!(ext4_bytes(&head), Some(320 << 20));
        head[sb + 0x60] = 0x80; // 64bit: the high half counts
        head[sb + 0x150] = 1;
        assert_eq!(ext4_bytes(&head), Some(((1u64 << 32) + 81920) * 4096));
        head[sb + 0x18] = 40;
        assert_eq!(ext4_bytes(&head), None, "absurd block size");
        assert_eq!(ext4_bytes(&head[..1500]), None, "short read");
    }

    #[test]
    fn blkpg_structure_matches_the_kernel_abi() {
        // include/uapi/linux/blkpg.h: two long longs, an int and two
        // 64-byte names, padded to the long long's alignment.
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
    }
}
