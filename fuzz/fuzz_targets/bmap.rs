//! The bmap parser of `pocobelle flash` (flash::bmap::parse). The first
//! byte picks the mode: even, the file's own `BmapFileChecksum` is made
//! right before parsing (SHA-256 of the file with the checksum's 64
//! digits as zeros, as bmaptool computes it), so that the validation
//! behind it is reached; odd, the bytes are parsed as they are.
//!
//! Whatever parses is a block map a flash can trust: ranges in order,
//! not overlapping, within the image; the mapped count equal to what they
//! cover; the block size a power of two; the block count the image size
//! rounded up; every span inside the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::flash::bmap;

const OPEN: &[u8] = b"<BmapFileChecksum>";
const CLOSE: &[u8] = b"</BmapFileChecksum>";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Rewrites the 64 digits between the checksum tags (when they are 64
/// bytes apart, after trimming nothing) with the file's real checksum.
fn fix_checksum(file: &mut [u8]) {
    let Some(a) = find(file, OPEN).map(|a| a + OPEN.len()) else {
        return;
    };
    let Some(b) = find(&file[a..], CLOSE).map(|b| a + b) else {
        return;
    };
    // Digits may be surrounded by spaces: the 64 non-space bytes.
    let inner: Vec<usize> = (a..b).filter(|&i| !file[i].is_ascii_whitespace()).collect();
    if inner.len() != 64 || inner[63] - inner[0] != 63 {
        return;
    }
    for &i in &inner {
        file[i] = b'0';
    }
    let d = ring::digest::digest(&ring::digest::SHA256, file);
    for (k, byte) in d.as_ref().iter().enumerate() {
        let hex = format!("{byte:02x}");
        file[inner[2 * k]] = hex.as_bytes()[0];
        file[inner[2 * k + 1]] = hex.as_bytes()[1];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 0 {
        fix_checksum(&mut file);
    }
    let Ok(m) = bmap::parse(&file) else {
        return;
    };
    let bs = m.block_size();
    assert!(bs.is_power_of_two());
    assert!(m.image_size() > 0);
    assert_eq!(m.blocks_count(), m.image_size().div_ceil(bs));
    let mut next = 0u64;
    let mut counted = 0u64;
    for r in m.ranges() {
        assert!(r.first >= next && r.first <= r.last && r.last < m.blocks_count());
        next = r.last + 1;
        counted += r.last - r.first + 1;
        let (off, len) = m.span(r);
        assert!(len > 0 && off + len <= m.image_size());
    }
    assert_eq!(counted, m.mapped_blocks());
    assert!(m.mapped_bytes() <= m.image_size());
});
