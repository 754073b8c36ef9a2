//! End-to-end tests of `pocobelle flash` against fake machines: each test
//! builds a tree with a sysfs (`sys/block/...` and the `sys/class/block`
//! links), `proc/self/mounts` and `proc/swaps`, points the flasher at it
//! with `POCOBELLE_FLASH_TEST_ROOT`, and uses a regular file under it as
//! the "device". Images are sparse files mapped by the real `bmaptool
//! create` (bmap-tools; `make setup` installs it). No block device is
//! ever opened.

// `flash` is a host tool: the ARM binary leaves it out.
#![cfg(not(target_arch = "arm"))]

use std::fs;
use std::os::unix::fs::{FileExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod common;
use common::{command, have};

const TEST_ROOT_ENV: &str = "POCOBELLE_FLASH_TEST_ROOT";
const BLOCK: u64 = 4096;
const IMAGE_BYTES: u64 = 4 << 20;
/// Where the test image has data: (offset, length). Everything else is a
/// hole, so bmaptool leaves it unmapped.
const DATA: [(u64, u64); 3] = [(0, 5000), (1 << 20, 100), (3 << 20, 2 * BLOCK + 10)];
/// A stretch of the image that holds no data: the flasher must not touch it.
const UNMAPPED: (u64, u64) = (3 << 19, 1 << 20);

/// Exit statuses, as documented in `flash`.
const EXIT_USAGE: i32 = 64;
const EXIT_NOT_BLOCK: i32 = 10;
const EXIT_PARTITION: i32 = 11;
const EXIT_MOUNTED: i32 = 12;
const EXIT_SYSTEM_DISK: i32 = 14;
const EXIT_NON_REMOVABLE: i32 = 15;
const EXIT_TOO_SMALL: i32 = 16;
const EXIT_BAD_BMAP: i32 = 17;
const EXIT_IMAGE_MISMATCH: i32 = 18;
const EXIT_CORRUPT_IMAGE: i32 = 19;
const EXIT_NOT_CONFIRMED: i32 = 21;

/// A fake machine: its system disk `sda` (root on `sda2`) is in place.
struct Machine {
    root: PathBuf,
}

impl Machine {
    fn new(name: &str) -> Machine {
        let root = common::tmpdir("pocobelle-flash-e2e", name);
        for d in ["sys/block", "sys/class/block", "proc/self", "dev", "img"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let m = Machine { root };
        m.disk("sda", 1 << 30, false);
        m.partition("sda", "sda1");
        m.partition("sda", "sda2");
        fs::write(
            m.root.join("proc/self/mounts"),
            "/dev/sda2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/sda1 /boot vfat rw 0 0\n",
        )
        .unwrap();
        fs::write(
            m.root.join("proc/swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        )
        .unwrap();
        m
    }

    /// A whole disk of `bytes` in sysfs.
    fn disk(&self, name: &str, bytes: u64, removable: bool) {
        let d = self.root.join("sys/block").join(name);
        fs::create_dir_all(d.join("holders")).unwrap();
        fs::create_dir_all(d.join("device")).unwrap();
        fs::write(d.join("size"), format!("{}\n", bytes / 512)).unwrap();
        fs::write(d.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
        fs::write(d.join("device/model"), "Test Key\n").unwrap();
        symlink(
            format!("../../block/{name}"),
            self.root.join("sys/class/block").join(name),
        )
        .unwrap();
    }

    fn partition(&self, disk: &str, name: &str) {
        let d = self.root.join("sys/block").join(disk).join(name);
        fs::create_dir_all(d.join("holders")).unwrap();
        fs::write(d.join("partition"), "1\n").unwrap();
        symlink(
            format!("../../block/{disk}/{name}"),
            self.root.join("sys/class/block").join(name),
        )
        .unwrap();
    }

    fn append(&self, file: &str, line: &str) {
        let p = self.root.join(file);
        let mut s = fs::read_to_string(&p).unwrap();
        s.push_str(line);
        fs::write(p, s).unwrap();
    }

    /// The "device" file `dev/NAME`, `bytes` long, every byte 0xFF.
    fn target(&self, name: &str, bytes: u64) -> PathBuf {
        let p = self.root.join("dev").join(name);
        fs::write(&p, vec![0xFF; bytes as usize]).unwrap();
        p
    }

    /// A removable disk `sdz` exactly as large as the image, and its file.
    fn key(&self) -> PathBuf {
        self.disk("sdz", IMAGE_BYTES, true);
        self.target("sdz", IMAGE_BYTES)
    }

    /// A sparse image with data at [`DATA`], and its bmap beside it.
    fn image(&self) -> PathBuf {
        assert!(
            have("bmaptool"),
            "bmaptool is missing: install bmap-tools (`make setup` does)"
        );
        let img = self.root.join("img/pocobelle-test.img");
        let f = fs::File::create(&img).unwrap();
        f.set_len(IMAGE_BYTES).unwrap();
        for (i, &(off, len)) in DATA.iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (j as usize * 31 + i) as u8 | 1).collect();
            f.write_all_at(&bytes, off).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        let out = std::process::Command::new("bmaptool")
            .arg("create")
            .arg("-o")
            .arg(img.with_extension("bmap"))
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "bmaptool create: {out:?}");
        let bmap = fs::read_to_string(img.with_extension("bmap")).unwrap();
        assert!(
            bmap.contains("<MappedBlocksCount> 6 "),
            "the temp file system keeps no holes? {bmap}"
        );
        img
    }

    fn flash(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut c = command();
        c.arg("flash")
            .env(TEST_ROOT_ENV, &self.root)
            .stdin(Stdio::null());
        for a in args {
            c.arg(a);
        }
        c.output().unwrap()
    }
}

/// Asserts the exit status and a one-line message containing `words`.
fn refused(out: &Output, code: i32, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(words), "expected {words:?} in: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

fn all_ff(p: &Path) -> bool {
    fs::read(p).unwrap().iter().all(|&b| b == 0xFF)
}

fn block_span((off, len): (u64, u64)) -> std::ops::Range<usize> {
    let start = off / BLOCK * BLOCK;
    let end = (off + len).div_ceil(BLOCK) * BLOCK;
    start as usize..end as usize
}

#[test]
fn writes_only_the_mapped_blocks_and_verifies_them() {
    let m = Machine::new("write");
    let img = m.image();
    // A larger key: what lies past the image must stay as it was too.
    m.disk("sdz", IMAGE_BYTES + (1 << 20), true);
    let dev = m.target("sdz", IMAGE_BYTES + (1 << 20));
    let out = m.flash(&[&"--yes", &img, &dev]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("safe to remove"), "{stdout}");
    assert!(stdout.contains("6 of 1024 blocks"), "{stdout}");
    // Not a terminal: no progress line.
    assert!(out.stderr.is_empty(), "{out:?}");
    let image = fs::read(&img).unwrap();
    let written = fs::read(&dev).unwrap();
    for d in DATA {
        let r = block_span(d);
        assert!(written[r.clone()] == image[r.clone()], "range {r:?}");
    }
    let (off, len) = UNMAPPED;
    let hole = off as usize..(off + len) as usize;
    assert!(
        written[hole.clone()].iter().all(|&b| b == 0xFF),
        "an unmapped block was written in {hole:?}"
    );
    assert!(written[IMAGE_BYTES as usize..].iter().all(|&b| b == 0xFF));
}

#[test]
fn refuses_anything_but_a_block_device() {
    let m = Machine::new("not-block");
    let img = m.image();
    let dev = m.key();
    // Without the test tree, a regular file is never a device.
    let out = command()
        .arg("flash")
        .env_remove(TEST_ROOT_ENV)
        .args([&img, &dev])
        .arg("--yes")
        .output()
        .unwrap();
    refused(&out, EXIT_NOT_BLOCK, "is not a block device");
    // In the tree, a file with no sysfs entry is not one either.
    let stray = m.target("nosuch", IMAGE_BYTES);
    refused(
        &m.flash(&[&"--yes", &img, &stray]),
        EXIT_NOT_BLOCK,
        "is not a block device",
    );
    let dir = m.root.join("sys");
    refused(
        &m.flash(&[&"--yes", &img, &dir]),
        EXIT_NOT_BLOCK,
        "is not a block device",
    );
    assert!(all_ff(&dev) && all_ff(&stray));
}

#[test]
fn refuses_a_partition() {
    let m = Machine::new("partition");
    let img = m.image();
    m.key();
    m.partition("sdz", "sdz1");
    let part = m.target("sdz1", IMAGE_BYTES);
    refused(
        &m.flash(&[&"--yes", &img, &part]),
        EXIT_PARTITION,
        "sdz1 is a partition of sdz; give the whole disk (/dev/sdz)",
    );
    assert!(all_ff(&part));
}

#[test]
fn refuses_a_disk_that_is_mounted_swapped_or_held() {
    let m = Machine::new("mounted");
    let img = m.image();
    let dev = m.key();
    m.partition("sdz", "sdz1");
    m.partition("sdz", "sdz2");
    m.append(
        "proc/self/mounts",
        "/dev/sdz1 /media/my\\040key vfat rw 0 0\n",
    );
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_MOUNTED,
        "/dev/sdz1 is mounted on /media/my key",
    );
    fs::write(m.root.join("proc/self/mounts"), "/dev/sda2 / ext4 rw 0 0\n").unwrap();
    m.append("proc/swaps", "/dev/sdz2  partition\t1048572\t0\t-2\n");
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_MOUNTED,
        "/dev/sdz2 is used as swap",
    );
    fs::write(
        m.root.join("proc/swaps"),
        "Filename Type Size Used Priority\n",
    )
    .unwrap();
    fs::create_dir(m.root.join("sys/block/sdz/sdz2/holders/dm-0")).unwrap();
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_MOUNTED,
        "sdz2 is held by dm-0",
    );
    assert!(all_ff(&dev));
}

#[test]
fn refuses_the_disk_of_the_running_system() {
    let m = Machine::new("system");
    let img = m.image();
    // Even removable and forced: the root file system is on sda2.
    fs::write(m.root.join("sys/block/sda/removable"), "1\n").unwrap();
    let sda = m.target("sda", IMAGE_BYTES);
    refused(
        &m.flash(&[&"--yes", &"--force-non-removable", &sda, &img, &sda]),
        EXIT_SYSTEM_DISK,
        "sda holds the running system",
    );
    // Root on a device-mapper volume stacked on sdz1.
    let dev = m.key();
    m.partition("sdz", "sdz1");
    m.disk("dm-0", 1 << 20, false);
    fs::create_dir_all(m.root.join("sys/block/dm-0/slaves/sdz1")).unwrap();
    fs::write(m.root.join("proc/self/mounts"), "/dev/dm-0 / ext4 rw 0 0\n").unwrap();
    let out = m.flash(&[&"--yes", &img, &dev]);
    refused(&out, EXIT_SYSTEM_DISK, "sdz holds the running system");
    assert!(all_ff(&sda) && all_ff(&dev));
}

#[test]
fn refuses_a_fixed_disk_unless_named_twice() {
    let m = Machine::new("fixed");
    let img = m.image();
    m.disk("sdz", IMAGE_BYTES, false);
    let dev = m.target("sdz", IMAGE_BYTES);
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_NON_REMOVABLE,
        "--force-non-removable",
    );
    let other = m.target("sdy", IMAGE_BYTES);
    let out = m.flash(&[&"--yes", &"--force-non-removable", &other, &img, &dev]);
    refused(&out, EXIT_USAGE, "--force-non-removable names");
    assert!(all_ff(&dev));
    let out = m.flash(&[&"--yes", &"--force-non-removable", &dev, &img, &dev]);
    assert!(out.status.success(), "{out:?}");
    assert!(!all_ff(&dev));
}

#[test]
fn refuses_a_device_smaller_than_the_image() {
    let m = Machine::new("small");
    let img = m.image();
    m.disk("sdz", IMAGE_BYTES - 512, true);
    let dev = m.target("sdz", IMAGE_BYTES - 512);
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_TOO_SMALL,
        &format!(
            "sdz has {} bytes, fewer than the image's {IMAGE_BYTES}",
            IMAGE_BYTES - 512
        ),
    );
    assert!(all_ff(&dev));
}

#[test]
fn refuses_a_missing_or_damaged_bmap() {
    let m = Machine::new("bmap");
    let img = m.image();
    let dev = m.key();
    let bmap = img.with_extension("bmap");
    let moved = m.root.join("img/elsewhere.bmap");
    fs::rename(&bmap, &moved).unwrap();
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_BAD_BMAP,
        "no bmap file",
    );
    // --bmap names it.
    let out = m.flash(&[&"--yes", &"--bmap", &moved, &img, &dev]);
    assert!(out.status.success(), "{out:?}");
    // An edit anywhere breaks the bmap's own checksum.
    let dev = m.target("sdz", IMAGE_BYTES);
    let text = fs::read_to_string(&moved).unwrap();
    fs::write(&bmap, text.replacen("> 0-1 <", "> 0-2 <", 1)).unwrap();
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_BAD_BMAP,
        "own checksum does not match",
    );
    fs::write(&bmap, &text[..text.len() / 2]).unwrap();
    refused(&m.flash(&[&"--yes", &img, &dev]), EXIT_BAD_BMAP, "line ");
    assert!(all_ff(&dev));
}

#[test]
fn refuses_an_image_the_bmap_does_not_describe() {
    let m = Machine::new("mismatch");
    let img = m.image();
    let dev = m.key();
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(IMAGE_BYTES - BLOCK).unwrap();
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_IMAGE_MISMATCH,
        "they do not belong together",
    );
    assert!(all_ff(&dev));
}

#[test]
fn refuses_a_corrupt_image_and_writes_nothing() {
    let m = Machine::new("corrupt");
    let img = m.image();
    let dev = m.key();
    // One byte of the last data range (blocks 768-770) flipped.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0], (3 << 20) + BLOCK).unwrap();
    drop(f);
    refused(
        &m.flash(&[&"--yes", &img, &dev]),
        EXIT_CORRUPT_IMAGE,
        "the image is corrupt: blocks 768-770",
    );
    assert!(all_ff(&dev), "a corrupt image was partly written");
}

#[test]
fn asks_before_writing_and_refuses_without_an_answer() {
    let m = Machine::new("confirm");
    let img = m.image();
    let dev = m.key();
    refused(
        &m.flash(&[&img, &dev]),
        EXIT_NOT_CONFIRMED,
        "not confirmed: add --yes",
    );
    assert!(all_ff(&dev));
    refused(&m.flash(&[&img]), EXIT_USAGE, "expected IMAGE and DEVICE");
}
