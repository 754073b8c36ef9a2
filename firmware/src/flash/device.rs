//! What the flasher knows about its target, and whether it may write it.
//!
//! [`Host`] gathers [`Facts`] about a device from sysfs, the mount table
//! and the swap list (all read-only); [`check`] is a pure function of
//! those facts that returns the first [`Refusal`] or `Ok`. The order of
//! the checks is the order of [`Refusal`]'s variants.
//!
//! With [`TEST_ROOT_ENV`] set to a directory, sysfs is read from DIR/sys,
//! the mounts from DIR/proc/self/mounts and DIR/proc/swaps, and a regular
//! file stands for the block device named by its basename
//! (DIR/sys/class/block/BASENAME); a real block device is then refused.
//! Without it, anything but a block device is refused. This module never
//! opens a device for writing.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Environment variable naming a directory that stands for `/` (tests only).
pub const TEST_ROOT_ENV: &str = "POCOBELLE_FLASH_TEST_ROOT";
/// sysfs `size` counts 512-byte sectors whatever the device's block size.
pub const SECTOR_BYTES: u64 = 512;
/// Most layers followed from a stacked device (dm on md on a partition...)
/// down to its disks.
pub const MAX_STACK_DEPTH: usize = 8;
/// Largest sysfs attribute read.
const MAX_SYSFS_BYTES: u64 = 4096;
/// Largest mount table or swap list read.
const MAX_PROC_BYTES: u64 = 4 << 20;

/// Everything [`check`] needs to know about a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The target as the user named it.
    pub path: String,
    /// The kernel's name for it (`sdb`), when it is a block device.
    pub name: Option<String>,
    /// The disk it is a partition of, when it is a partition.
    pub partition_of: Option<String>,
    /// Whether the root file system lives on it (or on a partition of it,
    /// or on a device stacked on it).
    pub holds_root: bool,
    /// What uses it or its partitions: mounts, swap, holders.
    pub in_use: Vec<String>,
    /// sysfs `removable` is 1.
    pub removable: bool,
    /// `--force-non-removable` named this same device.
    pub forced: bool,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Vendor and model from sysfs, for the confirmation question.
    pub model: String,
}

/// Why a device may not be written, in the order they are checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a block device (a regular file, a directory, a character device).
    #[error("{0} is not a block device")]
    NotBlock(String),
    /// A partition: an image is written to a whole disk.
    #[error("{name} is a partition of {disk}; give the whole disk (/dev/{disk})")]
    Partition { name: String, disk: String },
    /// The disk the running system's root file system is on.
    #[error("{name} holds the running system (the root file system is on it)")]
    SystemDisk { name: String },
    /// It or a partition is mounted, is swap, or is held by another device.
    #[error("{name} is in use: {}; unmount it (or swapoff) first", uses.join(", "))]
    InUse { name: String, uses: Vec<String> },
    /// Another program has it open: the exclusive open failed with EBUSY.
    #[error("{name} is busy: another program has it open")]
    Busy { name: String },
    /// sysfs says it is not removable, and the user did not insist.
    #[error(
        "{name} is not a removable disk; if it really is the card or key to erase, add --force-non-removable {path}"
    )]
    NonRemovable { name: String, path: String },
    /// Smaller than the image.
    #[error("{name} has {device} bytes, fewer than the image's {image}")]
    TooSmall {
        name: String,
        device: u64,
        image: u64,
    },
    /// Its size could not be read.
    #[error("cannot tell the size of {name}")]
    UnknownSize { name: String },
}

impl Refusal {
    /// The exit status for this refusal (see the table in `flash`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Refusal::NotBlock(_) => super::EXIT_NOT_BLOCK,
            Refusal::Partition { .. } => super::EXIT_PARTITION,
            Refusal::SystemDisk { .. } => super::EXIT_SYSTEM_DISK,
            Refusal::InUse { .. } => super::EXIT_MOUNTED,
            Refusal::Busy { .. } => super::EXIT_BUSY,
            Refusal::NonRemovable { .. } => super::EXIT_NON_REMOVABLE,
            Refusal::TooSmall { .. } | Refusal::UnknownSize { .. } => super::EXIT_TOO_SMALL,
        }
    }
}

/// Whether a device with these facts may receive an image of
/// `image_size` bytes. Busy is not decided here: only the exclusive open
/// can tell.
pub fn check(f: &Facts, image_size: u64) -> Result<(), Refusal> {
    let Some(name) = f.name.clone() else {
        return Err(Refusal::NotBlock(f.path.clone()));
    };
    if let Some(disk) = &f.partition_of {
        return Err(Refusal::Partition {
            name,
            disk: disk.clone(),
        });
    }
    if f.holds_root {
        return Err(Refusal::SystemDisk { name });
    }
    if !f.in_use.is_empty() {
        return Err(Refusal::InUse {
            name,
            uses: f.in_use.clone(),
        });
    }
    if !f.removable && !f.forced {
        return Err(Refusal::NonRemovable {
            name,
            path: f.path.clone(),
        });
    }
    match f.size {
        None => Err(Refusal::UnknownSize { name }),
        Some(device) if device < image_size => Err(Refusal::TooSmall {
            name,
            device,
            image: image_size,
        }),
        Some(_) => Ok(()),
    }
}

/// (source, mount point) of each line of /proc/self/mounts, unescaped.
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            Some((unescape(w.next()?), unescape(w.next()?)))
        })
        .collect()
}

/// The file or device of each line of /proc/swaps (after its header).
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_ascii_whitespace().next().map(unescape))
        .collect()
}

/// The source mounted on `/` (the last mount there wins).
pub fn root_source(mounts: &[(String, String)]) -> Option<&str> {
    mounts
        .iter()
        .rev()
        .find(|(_, at)| at == "/")
        .map(|(s, _)| s.as_str())
}

/// What uses any of `names` (a disk and its partitions): mounts and swap
/// whose source `resolve`s to one of them, and `(device, holder)` pairs.
pub fn uses(
    names: &[String],
    mounts: &[(String, String)],
    swaps: &[String],
    holders: &[(String, String)],
    resolve: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let ours = |src: &str| resolve(src).is_some_and(|n| names.contains(&n));
    let mut out = Vec::new();
    for (src, at) in mounts {
        if ours(src) {
            out.push(format!("{src} is mounted on {at}"));
        }
    }
    for src in swaps {
        if ours(src) {
            out.push(format!("{src} is used as swap"));
        }
    }
    for (dev, holder) in holders {
        out.push(format!("{dev} is held by {holder}"));
    }
    out
}

/// Undoes the octal escapes (`\040` for a space) of the kernel's tables.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) if b[i] == b'\\' => {
                let v = d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why the facts could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The target itself cannot be looked at.
    #[error("{path}: {source}")]
    Target { path: String, source: io::Error },
    /// The mount table cannot be read: whether the device is in use is
    /// unknown, so nothing is written.
    #[error("cannot read {path}: {source}")]
    Table { path: String, source: io::Error },
}

/// The machine the flasher runs on, or a test tree standing for it.
pub struct Host {
    root: Option<PathBuf>,
}

impl Host {
    /// The real machine, or the tree named by [`TEST_ROOT_ENV`].
    pub fn from_env() -> Host {
        Host {
            root: std::env::var_os(TEST_ROOT_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Whether a test tree stands for the machine (see [`TEST_ROOT_ENV`]).
    pub fn is_test(&self) -> bool {
        self.root.is_some()
    }

    /// A path of the (possibly test) root: `rel` is absolute-looking.
    fn at(&self, rel: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(rel.trim_start_matches('/')),
            None => PathBuf::from(rel),
        }
    }

    fn class_block(&self, name: &str) -> PathBuf {
        self.at("/sys/class/block").join(name)
    }

    /// The kernel name of the device `path` is, or `None` when it is not
    /// a block device (in a test tree: a regular file with a sysfs entry).
    pub fn identify(&self, path: &Path) -> io::Result<Option<String>> {
        let md = fs::metadata(path)?;
        match &self.root {
            None if md.file_type().is_block_device() => Ok(self.name_of_dev(md.rdev())),
            Some(_) if md.is_file() => Ok(path
                .file_name()
                .and_then(OsStr::to_str)
                .filter(|n| self.class_block(n).exists())
                .map(str::to_owned)),
            _ => Ok(None),
        }
    }

    /// Whether two paths name the same device node (or test file).
    pub fn same_device(&self, a: &Path, b: &Path) -> bool {
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) if x.file_type().is_block_device() => {
                y.file_type().is_block_device() && x.rdev() == y.rdev()
            }
            (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
            _ => false,
        }
    }

    /// The kernel name for device number `rdev`, through /sys/dev/block.
    fn name_of_dev(&self, rdev: u64) -> Option<String> {
        let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let link = self.at(&format!("/sys/dev/block/{maj}:{min}"));
        file_name(&fs::canonicalize(link).ok()?)
    }

    /// The kernel name of a mount or swap source, when it is a block device.
    fn source_name(&self, source: &str) -> Option<String> {
        if !source.starts_with('/') {
            return None;
        }
        match &self.root {
            Some(_) => file_name(Path::new(source)).filter(|n| self.class_block(n).exists()),
            None => {
                let md = fs::metadata(source).ok()?;
                md.file_type()
                    .is_block_device()
                    .then(|| self.name_of_dev(md.rdev()))?
            }
        }
    }

    fn is_partition(&self, name: &str) -> bool {
        self.class_block(name).join("partition").exists()
    }

    /// The disk holding partition `name`: its sysfs directory's parent.
    fn parent_disk(&self, name: &str) -> Option<String> {
        let real = fs::canonicalize(self.class_block(name)).ok()?;
        file_name(real.parent()?)
    }

    fn list(&self, dir: PathBuf) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    /// The whole disks under `name`: itself, the disk of a partition, or
    /// the disks beneath a stacked device (its `slaves/`).
    fn disks_under(&self, name: &str, depth: usize) -> Vec<String> {
        if depth >= MAX_STACK_DEPTH {
            return vec![name.to_owned()];
        }
        if self.is_partition(name) {
            return match self.parent_disk(name) {
                Some(d) => self.disks_under(&d, depth + 1),
                None => vec![name.to_owned()],
            };
        }
        let slaves = self.list(self.class_block(name).join("slaves"));
        if slaves.is_empty() {
            return vec![name.to_owned()];
        }
        slaves
            .iter()
            .flat_map(|s| self.disks_under(s, depth + 1))
            .collect()
    }

    /// The disks the root file system lives on.
    fn root_disks(&self, mounts: &[(String, String)]) -> Vec<String> {
        let by_source = root_source(mounts).and_then(|s| self.source_name(s));
        // `/dev/root` or a source that is not a device node: ask `/` itself.
        let name = by_source.or_else(|| match &self.root {
            None => {
                let dev = fs::metadata("/").ok()?.dev();
                (nix::sys::stat::major(dev) != 0)
                    .then(|| self.name_of_dev(dev))
                    .flatten()
            }
            Some(_) => None,
        });
        name.map(|n| self.disks_under(&n, 0)).unwrap_or_default()
    }

    fn attr(&self, name: &str, attr: &str) -> Option<String> {
        read_bounded(&self.class_block(name).join(attr), MAX_SYSFS_BYTES)
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn table(&self, rel: &str) -> Result<String, FactsError> {
        let path = self.at(rel);
        read_bounded(&path, MAX_PROC_BYTES).map_err(|source| FactsError::Table {
            path: path.display().to_string(),
            source,
        })
    }

    /// Gathers the facts about `path`; `forced` says whether
    /// `--force-non-removable` named it.
    pub fn facts(&self, path: &Path, forced: bool) -> Result<Facts, FactsError> {
        let shown = path.display().to_string();
        let name = self.identify(path).map_err(|source| FactsError::Target {
            path: shown.clone(),
            source,
        })?;
        let mut f = Facts {
            path: shown,
            forced,
            ..Facts::default()
        };
        let Some(name) = name else {
            return Ok(f);
        };
        f.name = Some(name.clone());
        if self.is_partition(&name) {
            f.partition_of = Some(self.parent_disk(&name).unwrap_or_else(|| "?".into()));
            return Ok(f);
        }
        let mounts = parse_mounts(&self.table("/proc/self/mounts")?);
        // No /proc/swaps: a kernel without swap.
        let swaps = match self.table("/proc/swaps") {
            Ok(t) => parse_swaps(&t),
            Err(FactsError::Table { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        f.holds_root = self.root_disks(&mounts).contains(&name);
        let mut names = vec![name.clone()];
        names.extend(
            self.list(self.class_block(&name))
                .into_iter()
                .filter(|p| self.class_block(&name).join(p).join("partition").exists()),
        );
        let holders: Vec<(String, String)> = names
            .iter()
            .flat_map(|n| {
                self.list(self.class_block(n).join("holders"))
                    .into_iter()
                    .map(move |h| (n.clone(), h))
            })
            .collect();
        f.in_use = uses(&names, &mounts, &swaps, &holders, |s| self.source_name(s));
        f.removable = self.attr(&name, "removable").as_deref() == Some("1");
        f.size = self
            .attr(&name, "size")
            .and_then(|s| s.parse::<u64>().ok())
            .and_then(|s| s.checked_mul(SECTOR_BYTES));
        if f.size.is_none() && self.root.is_none() {
            // No sysfs size: the end of the device node.
            f.size = fs::File::open(path)
                .and_then(|mut d| d.seek(SeekFrom::End(0)))
                .ok();
        }
        let words: Vec<String> = ["device/vendor", "device/model"]
            .iter()
            .filter_map(|a| self.attr(&name, a))
            .filter(|s| !s.is_empty())
            .collect();
        f.model = words.join(" ");
        Ok(f)
    }
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name()?.to_str().map(str::to_owned)
}

/// A small text file, at most `max` bytes of it.
fn read_bounded(path: &Path, max: u64) -> io::Result<String> {
    let mut s = String::new();
    fs::File::open(path)?.take(max).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A removable, unused 8 GB disk `sdz`.
    fn good() -> Facts {
        Facts {
            path: "/dev/sdz".into(),
            name: Some("sdz".into()),
            removable: true,
            size: Some(8_000_000_000),
            ..Facts::default()
        }
    }

    const IMG: u64 = 1_000_000_000;

    #[test]
    fn a_removable_unused_disk_large_enough_is_accepted() {
        assert_eq!(check(&good(), IMG), Ok(()));
        assert_eq!(check(&good(), 8_000_000_000), Ok(()));
    }

    #[test]
    fn a_file_posing_as_a_device_is_refused() {
        let f = Facts {
            name: None,
            ..good()
        };
        let r = check(&f, IMG).unwrap_err();
        assert_eq!(r, Refusal::NotBlock("/dev/sdz".into()));
        assert_eq!(r.exit_code(), crate::flash::EXIT_NOT_BLOCK);
    }

    #[test]
    fn a_partition_is_refused_and_the_disk_named() {
        let f = Facts {
            name: Some("sdz1".into()),
            partition_of: Some("sdz".into()),
            ..good()
        };
        let r = check(&f, IMG).unwrap_err();
        assert!(r.to_string().contains("/dev/sdz)"), "{r}");
        assert_eq!(r.exit_code(), crate::flash::EXIT_PARTITION);
    }

    #[test]
    fn the_system_disk_is_refused_even_when_forced() {
        let f = Facts {
            holds_root: true,
            forced: true,
            ..good()
        };
        let r = check(&f, IMG).unwrap_err();
        assert_eq!(r, Refusal::SystemDisk { name: "sdz".into() });
        assert_eq!(r.exit_code(), crate::flash::EXIT_SYSTEM_DISK);
    }

    #[test]
    fn a_disk_in_use_is_refused_with_every_use() {
        let f = Facts {
            in_use: vec!["/dev/sdz1 is mounted on /media/key".into(), "x".into()],
            forced: true,
            ..good()
        };
        let r = check(&f, IMG).unwrap_err();
        assert!(r.to_string().contains("/media/key, x;"), "{r}");
        assert_eq!(r.exit_code(), crate::flash::EXIT_MOUNTED);
        assert_eq!(
            Refusal::Busy { name: "sdz".into() }.exit_code(),
            crate::flash::EXIT_BUSY
        );
    }

    #[test]
    fn a_fixed_disk_needs_force() {
        let fixed = Facts {
            removable: false,
            ..good()
        };
        let r = check(&fixed, IMG).unwrap_err();
        assert!(
            r.to_string().contains("--force-non-removable /dev/sdz"),
            "{r}"
        );
        assert_eq!(r.exit_code(), crate::flash::EXIT_NON_REMOVABLE);
        let forced = Facts {
            forced: true,
            ..fixed
        };
        assert_eq!(check(&forced, IMG), Ok(()));
    }

    #[test]
    fn a_small_or_unsized_disk_is_refused() {
        let small = Facts {
            size: Some(IMG - 1),
            ..good()
        };
        let r = check(&small, IMG).unwrap_err();
        assert_eq!(r.exit_code(), crate::flash::EXIT_TOO_SMALL);
        let unknown = Facts {
            size: None,
            ..good()
        };
        assert_eq!(
            check(&unknown, IMG),
            Err(Refusal::UnknownSize { name: "sdz".into() })
        );
    }

    #[test]
    fn every_refusal_has_its_own_exit_code() {
        let all = [
            Refusal::NotBlock(String::new()),
            Refusal::Partition {
                name: String::new(),
                disk: String::new(),
            },
            Refusal::SystemDisk {
                name: String::new(),
            },
            Refusal::InUse {
                name: String::new(),
                uses: vec![],
            },
            Refusal::Busy {
                name: String::new(),
            },
            Refusal::NonRemovable {
                name: String::new(),
                path: String::new(),
            },
            Refusal::TooSmall {
                name: String::new(),
                device: 0,
                image: 0,
            },
        ];
        let mut codes: Vec<u8> = all.iter().map(Refusal::exit_code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn mounts_and_swaps_parse_with_escapes() {
        let m = parse_mounts(
            "/dev/sda2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdz1 /media/my\\040key vfat rw 0 0\n",
        );
        assert_eq!(m[2], ("/dev/sdz1".into(), "/media/my key".into()));
        assert_eq!(root_source(&m), Some("/dev/sda2"));
        let m2 = parse_mounts("/dev/root / ext4 rw 0 0\n/dev/sdb1 / ext4 rw 0 0\n");
        assert_eq!(root_source(&m2), Some("/dev/sdb1"));
        assert_eq!(root_source(&m[1..]), None);
        let s = parse_swaps(
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdz2                               partition\t1048572\t\t0\t\t-2\n",
        );
        assert_eq!(s, ["/dev/sdz2"]);
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn uses_names_mounts_swaps_and_holders_of_the_disk_only() {
        let names = vec!["sdz".to_string(), "sdz1".to_string(), "sdz2".to_string()];
        let mounts = parse_mounts(
            "/dev/sda2 / ext4 rw 0 0\n/dev/disk/by-label/KEY /media/key vfat rw 0 0\n",
        );
        let swaps = vec!["/dev/sdz2".to_string(), "/swapfile".to_string()];
        let holders = vec![("sdz1".to_string(), "dm-3".to_string())];
        let resolve = |s: &str| match s {
            "/dev/sda2" => Some("sda2".to_string()),
            "/dev/disk/by-label/KEY" => Some("sdz1".to_string()),
            "/dev/sdz2" => Some("sdz2".to_string()),
            _ => None,
        };
        let u = uses(&names, &mounts, &swaps, &holders, resolve);
        assert_eq!(
            u,
            [
                "/dev/disk/by-label/KEY is mounted on /media/key",
                "/dev/sdz2 is used as swap",
                "sdz1 is held by dm-3"
            ]
        );
        assert!(uses(&names, &mounts, &[], &[], |_| None).is_empty());
    }
}
