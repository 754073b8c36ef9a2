//! The copy itself: checks every mapped range of the image against the
//! bmap before anything is written, writes only the mapped ranges (the
//! rest of the device is left as it was), flushes the device and drops
//! its cached pages, then reads each range back from the device and
//! compares its SHA-256 with the bmap's.
//!
//! It works on already opened files and reports progress through a
//! callback; it decides nothing about which device may be written
//! (`device` does) and prints nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use ring::digest;

use super::bmap::{BlockRange, Bmap, hex};

/// Bytes read or written per call (the one buffer the copy uses).
pub const CHUNK_BYTES: usize = 1 << 20;

/// What the copy is doing, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the image and checking it against the bmap.
    Check,
    /// Writing the mapped ranges to the device.
    Write,
    /// Reading the device back and checking it.
    Verify,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Check => "checking image",
            Phase::Write => "writing",
            Phase::Verify => "verifying",
        }
    }
}

/// Why the copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A mapped range of the image does not hash to its bmap checksum
    /// (or changed between the check and the write).
    #[error(
        "the image is corrupt: blocks {first}-{last} (bytes {offset}..{end}) hash to {got}, the bmap says {want}"
    )]
    CorruptImage {
        first: u64,
        last: u64,
        offset: u64,
        end: u64,
        got: String,
        want: String,
    },
    /// A range read back from the device differs from what was written.
    #[error(
        "verification failed: blocks {first}-{last} (bytes {offset}..{end}) read back from the device differ from the image; the medium may be failing or fake"
    )]
    Verify {
        first: u64,
        last: u64,
        offset: u64,
        end: u64,
    },
    /// The image could not be read.
    #[error("reading the image at byte {offset}: {source}")]
    ReadImage { offset: u64, source: io::Error },
    /// The device could not be written.
    #[error("writing the device at byte {offset}: {source}")]
    Write { offset: u64, source: io::Error },
    /// The device could not be read back.
    #[error("reading the device back at byte {offset}: {source}")]
    ReadBack { offset: u64, source: io::Error },
    /// fsync of the device failed: the data may not be on it.
    #[error("flushing the device: {0}")]
    Sync(io::Error),
}

impl CopyError {
    /// The exit status (see the table in `flash`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CopyError::CorruptImage { .. } => super::EXIT_CORRUPT_IMAGE,
            CopyError::Verify { .. } => super::EXIT_VERIFY_FAILED,
            _ => super::EXIT_FAILED,
        }
    }
}

/// Reads `len` bytes of `file` from `offset` in chunks, handing each to
/// `each` with its offset, and returns their SHA-256.
fn hash_span(
    file: &File,
    (offset, len): (u64, u64),
    buf: &mut [u8],
    read_err: fn(u64, io::Error) -> CopyError,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), CopyError>,
) -> Result<[u8; 32], CopyError> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let n = buf.len().min((end - at) as usize);
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| read_err(at, e))?;
        ctx.update(&buf[..n]);
        each(at, &buf[..n])?;
        at += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

fn corrupt(bmap: &Bmap, r: &BlockRange, got: [u8; 32]) -> CopyError {
    let (offset, len) = bmap.span(r);
    CopyError::CorruptImage {
        first: r.first,
        last: r.last,
        offset,
        end: offset + len,
        got: hex(&got),
        want: hex(&r.sha256),
    }
}

fn read_image(offset: u64, source: io::Error) -> CopyError {
    CopyError::ReadImage { offset, source }
}

fn read_back(offset: u64, source: io::Error) -> CopyError {
    CopyError::ReadBack { offset, source }
}

/// Checks every mapped range of `image` against the bmap; writes nothing.
pub fn check_image(
    bmap: &Bmap,
    image: &File,
    buf: &mut [u8],
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<(), CopyError> {
    for r in bmap.ranges() {
        let got = hash_span(image, bmap.span(r), buf, read_image, |_, b| {
            progress(Phase::Check, b.len() as u64);
            Ok(())
        })?;
        if got != r.sha256 {
            return Err(corrupt(bmap, r, got));
        }
    }
    Ok(())
}

/// Writes the mapped ranges of `image` to the same offsets of `device`,
/// hashing them again on the way (an image that changed since
/// [`check_image`] stops the copy), then flushes the device.
pub fn write(
    bmap: &Bmap,
    image: &File,
    device: &File,
    buf: &mut [u8],
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<(), CopyError> {
    for r in bmap.ranges() {
        let got = hash_span(image, bmap.span(r), buf, read_image, |at, b| {
            device
                .write_all_at(b, at)
                .map_err(|source| CopyError::Write { offset: at, source })?;
            progress(Phase::Write, b.len() as u64);
            Ok(())
        })?;
        if got != r.sha256 {
            return Err(corrupt(bmap, r, got));
        }
    }
    device.sync_all().map_err(CopyError::Sync)
}

/// Reads every mapped range back from `device` and compares its SHA-256
/// with the bmap's. The device's cached pages are dropped first (after
/// [`write`]'s fsync they are clean), so the reads come from the medium.
pub fn verify(
    bmap: &Bmap,
    device: &File,
    buf: &mut [u8],
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<(), CopyError> {
    // Advice only: where it is not honoured the check reads the cache.
    let _ = nix::fcntl::posix_fadvise(
        device,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    for r in bmap.ranges() {
        let got = hash_span(device, bmap.span(r), buf, read_back, |_, b| {
            progress(Phase::Verify, b.len() as u64);
            Ok(())
        })?;
        if got != r.sha256 {
            let (offset, len) = bmap.span(r);
            return Err(CopyError::Verify {
                first: r.first,
                last: r.last,
                offset,
                end: offset + len,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::bmap;

    const GOLDEN_ODD: &[u8] = include_bytes!("testdata/golden-odd.bmap");

    fn scratch(name: &str, content: &[u8]) -> (std::path::PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("pocobelle-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        (p, f)
    }

    /// The image golden-odd.bmap was made from.
    fn odd_image() -> Vec<u8> {
        let mut img = vec![0u8; 10_001];
        img[9_999..].copy_from_slice(b"zz");
        img
    }

    #[test]
    fn only_mapped_ranges_are_written_then_verified() {
        let b = bmap::parse(GOLDEN_ODD).unwrap();
        let (_, image) = scratch("only-mapped.img", &odd_image());
        let (p, dev) = scratch("only-mapped.dev", &[0xFF; 12_000]);
        let mut buf = vec![0u8; 1000]; // smaller than the range: several chunks
        let mut seen = Vec::new();
        let mut progress = |ph: Phase, n: u64| seen.push((ph, n));
        check_image(&b, &image, &mut buf, &mut progress).unwrap();
        write(&b, &image, &dev, &mut buf, &mut progress).unwrap();
        verify(&b, &dev, &mut buf, &mut progress).unwrap();
        let out = std::fs::read(&p).unwrap();
        assert_eq!(&out[8192..10_001], &odd_image()[8192..]);
        assert!(out[..8192].iter().all(|&c| c == 0xFF), "unmapped written");
        assert!(out[10_001..].iter().all(|&c| c == 0xFF), "past the image");
        for ph in [Phase::Check, Phase::Write, Phase::Verify] {
            let total: u64 = seen.iter().filter(|s| s.0 == ph).map(|s| s.1).sum();
            assert_eq!(total, b.mapped_bytes(), "{ph:?}");
        }
    }

    #[test]
    fn a_corrupt_range_is_named() {
        let b = bmap::parse(GOLDEN_ODD).unwrap();
        let mut img = odd_image();
        img[10_000] = b'y';
        let (_, image) = scratch("corrupt.img", &img);
        let mut buf = vec![0u8; CHUNK_BYTES];
        let e = check_image(&b, &image, &mut buf, &mut |_, _| {}).unwrap_err();
        assert_eq!(e.exit_code(), crate::flash::EXIT_CORRUPT_IMAGE);
        assert!(
            e.to_string().contains("blocks 2-2 (bytes 8192..10001)"),
            "{e}"
        );
        // The write re-checks too: a range never goes out unverified.
        let (_, dev) = scratch("corrupt.dev", &[0xFF; 12_000]);
        assert!(matches!(
            write(&b, &image, &dev, &mut buf, &mut |_, _| {}),
            Err(CopyError::CorruptImage { .. })
        ));
    }

    #[test]
    fn a_device_that_reads_back_wrong_fails_verification() {
        let b = bmap::parse(GOLDEN_ODD).unwrap();
        let (_, dev) = scratch("bad-medium.dev", &[0xFF; 12_000]);
        let mut buf = vec![0u8; CHUNK_BYTES];
        let e = verify(&b, &dev, &mut buf, &mut |_, _| {}).unwrap_err();
        assert_eq!(e.exit_code(), crate::flash::EXIT_VERIFY_FAILED);
        // A short device is a read error, not a pass.
        let (_, short) = scratch("short.dev", &[0xFF; 9_000]);
        let e = verify(&b, &short, &mut buf, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, CopyError::ReadBack { offset: 8192, .. }), "{e}");
    }
}
