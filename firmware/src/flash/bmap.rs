//! The bmap file parser, sans-I/O: bytes in, a validated [`Bmap`] out.
//!
//! It reads exactly the format `bmaptool create` writes (bmap-tools 3.x,
//! format version 2.x): an XML declaration and comments, then `<bmap
//! version="2.0">` holding `ImageSize`, `BlockSize`, `BlocksCount`,
//! `MappedBlocksCount`, `ChecksumType` (sha256 only), `BmapFileChecksum`
//! and a `BlockMap` of `<Range chksum="HEX"> FIRST-LAST </Range>` (or a
//! single block `N`). It is a small hand-written reader, not an XML
//! library: no entities, no CDATA, no self-closing or unknown elements.
//!
//! After [`parse`] succeeds the ranges are sorted, non-overlapping and
//! inside the image, the block size is a power of two within bounds, the
//! counts agree, and the file's own checksum has been checked. This
//! module never reads a file or the device; the flasher feeds it bytes.

use ring::digest;

/// Largest bmap file accepted. A bmap of [`MAX_RANGES`] ranges is about
/// 7 MB of XML at most, but real ones (a few hundred ranges) are a few
/// KB; 1 MiB leaves room for about 9,000 ranges.
pub const MAX_BMAP_BYTES: usize = 1 << 20;
/// Most ranges a block map may hold.
pub const MAX_RANGES: usize = 65_536;
/// Smallest block size accepted (one sector).
pub const MIN_BLOCK_SIZE: u64 = 512;
/// Largest block size accepted (bmaptool uses the file system's, 4 KiB).
pub const MAX_BLOCK_SIZE: u64 = 1 << 20;
/// The only format major version understood.
pub const FORMAT_MAJOR: &str = "2";
/// Attributes on one tag (`version` on `bmap`, `chksum` on `Range`).
const MAX_ATTRS: usize = 2;
/// Hexadecimal digits of a SHA-256.
const SHA256_HEX: usize = 64;
/// Longest element or attribute name quoted back in an error.
const MAX_QUOTED_NAME: usize = 32;

/// Why a bmap file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BmapError {
    /// The file is larger than [`MAX_BMAP_BYTES`].
    #[error("bmap file is {size} bytes, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// The text is not the XML subset bmaptool writes.
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: &'static str },
    /// An element or attribute that this format does not have.
    #[error("line {line}: unexpected {kind} `{name}`")]
    Unexpected {
        line: usize,
        kind: &'static str,
        name: String,
    },
    /// `<bmap version>` is missing or not 2.x.
    #[error("bmap format version {0:?} is not supported (only 2.x, as bmaptool 3.x writes)")]
    Version(String),
    /// A required element is absent.
    #[error("<{0}> is missing")]
    Missing(&'static str),
    /// An element that must appear once appears again.
    #[error("line {line}: <{name}> appears twice")]
    Duplicate { line: usize, name: &'static str },
    /// A count, size or block number is not a plain decimal `u64`.
    #[error("line {line}: <{name}> is not a decimal number")]
    Number { line: usize, name: &'static str },
    /// `ChecksumType` is not `sha256`.
    #[error("checksum type {0:?} is not supported (only sha256)")]
    ChecksumType(String),
    /// A checksum is not 64 hexadecimal digits.
    #[error("line {line}: not a 64-digit hexadecimal SHA-256")]
    Hex { line: usize },
    /// `ImageSize` is zero.
    #[error("image size is zero")]
    EmptyImage,
    /// The block size is not a power of two within
    /// [`MIN_BLOCK_SIZE`]..=[`MAX_BLOCK_SIZE`].
    #[error("block size {0} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE} bytes")]
    BlockSize(u64),
    /// `BlocksCount` is not `ImageSize` divided by `BlockSize`, rounded up.
    #[error("BlocksCount {declared} does not match ImageSize (expected {expected})")]
    BlocksCount { declared: u64, expected: u64 },
    /// More than [`MAX_RANGES`] ranges.
    #[error("more than {MAX_RANGES} ranges in the block map")]
    TooManyRanges,
    /// A range ends before it starts, starts before the previous one
    /// ended, or goes past the last block.
    #[error("line {line}: range {first}-{last} is {why}")]
    BadRange {
        line: usize,
        first: u64,
        last: u64,
        why: &'static str,
    },
    /// `MappedBlocksCount` differs from the blocks the ranges cover.
    #[error("MappedBlocksCount {declared} differs from the {counted} blocks the ranges cover")]
    MappedCount { declared: u64, counted: u64 },
    /// `BmapFileChecksum` does not match the file (edited or damaged).
    #[error("the bmap file's own checksum does not match its contents (edited or damaged?)")]
    FileChecksum,
}

/// Blocks `first..=last` of the image, and the SHA-256 of their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub first: u64,
    pub last: u64,
    pub sha256: [u8; 32],
}

/// A validated block map (see the module header for what holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    image_size: u64,
    block_size: u64,
    blocks_count: u64,
    mapped_blocks: u64,
    ranges: Vec<BlockRange>,
}

impl Bmap {
    /// Bytes in the image.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// Bytes in a block (a power of two).
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Blocks in the image (the last may be partial).
    pub fn blocks_count(&self) -> u64 {
        self.blocks_count
    }

    /// Blocks the ranges cover.
    pub fn mapped_blocks(&self) -> u64 {
        self.mapped_blocks
    }

    /// The mapped ranges, in order, not overlapping.
    pub fn ranges(&self) -> &[BlockRange] {
        &self.ranges
    }

    /// Byte offset and length of `r` in the image; the last block is cut
    /// at the image's end, as bmaptool hashes it.
    pub fn span(&self, r: &BlockRange) -> (u64, u64) {
        let start = r.first * self.block_size;
        let end = (r.last + 1)
            .saturating_mul(self.block_size)
            .min(self.image_size);
        (start, end - start)
    }

    /// Bytes the ranges cover (what a flash writes).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| self.span(r).1).sum()
    }
}

/// Parses and validates a bmap file. Total over any input: never panics,
/// allocates at most one entry per range (bounded by the input size and
/// [`MAX_RANGES`]). The fuzz entry point.
pub fn parse(input: &[u8]) -> Result<Bmap, BmapError> {
    if input.len() > MAX_BMAP_BYTES {
        return Err(BmapError::TooLarge {
            size: input.len(),
            max: MAX_BMAP_BYTES,
        });
    }
    let raw = Reader { s: input, pos: 0 }.document()?;
    validate(input, raw)
}

/// The fields as read, before their meaning is checked.
#[derive(Default)]
struct Raw {
    version: Option<String>,
    image_size: Option<u64>,
    block_size: Option<u64>,
    blocks_count: Option<u64>,
    mapped_blocks: Option<u64>,
    checksum_type: Option<String>,
    /// Byte offset of the 64 hex digits of `BmapFileChecksum`, and their value.
    file_checksum: Option<(usize, [u8; 32])>,
    block_map_seen: bool,
    /// Ranges with the byte offset of their tag (for an error's line).
    ranges: Vec<(usize, BlockRange)>,
}

fn validate(input: &[u8], raw: Raw) -> Result<Bmap, BmapError> {
    let version = raw.version.ok_or(BmapError::Missing("bmap version"))?;
    if version.split('.').next() != Some(FORMAT_MAJOR) {
        return Err(BmapError::Version(version));
    }
    let image_size = raw.image_size.ok_or(BmapError::Missing("ImageSize"))?;
    let block_size = raw.block_size.ok_or(BmapError::Missing("BlockSize"))?;
    let blocks_count = raw.blocks_count.ok_or(BmapError::Missing("BlocksCount"))?;
    let declared_mapped = raw
        .mapped_blocks
        .ok_or(BmapError::Missing("MappedBlocksCount"))?;
    let kind = raw
        .checksum_type
        .ok_or(BmapError::Missing("ChecksumType"))?;
    let (hex_at, file_sum) = raw
        .file_checksum
        .ok_or(BmapError::Missing("BmapFileChecksum"))?;
    if !raw.block_map_seen {
        return Err(BmapError::Missing("BlockMap"));
    }
    if kind != "sha256" {
        return Err(BmapError::ChecksumType(kind));
    }
    // The checksum covers the file with its own digits replaced by '0's.
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&input[..hex_at]);
    ctx.update(&[b'0'; SHA256_HEX]);
    ctx.update(&input[hex_at + SHA256_HEX..]);
    if ctx.finish().as_ref() != file_sum {
        return Err(BmapError::FileChecksum);
    }
    if image_size == 0 {
        return Err(BmapError::EmptyImage);
    }
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(BmapError::BlockSize(block_size));
    }
    let expected = image_size.div_ceil(block_size);
    if blocks_count != expected {
        return Err(BmapError::BlocksCount {
            declared: blocks_count,
            expected,
        });
    }
    let mut counted = 0u64;
    let mut next_free = 0u64;
    let mut ranges = Vec::with_capacity(raw.ranges.len());
    for (pos, r) in raw.ranges {
        let bad = |why| BmapError::BadRange {
            line: line_at(input, pos),
            first: r.first,
            last: r.last,
            why,
        };
        if r.last < r.first {
            return Err(bad("reversed"));
        }
        if r.first < next_free {
            return Err(bad("out of order or overlapping the one before"));
        }
        if r.last >= blocks_count {
            return Err(bad("past the image's last block"));
        }
        next_free = r.last + 1;
        counted += r.last - r.first + 1;
        ranges.push(r);
    }
    if counted != declared_mapped {
        return Err(BmapError::MappedCount {
            declared: declared_mapped,
            counted,
        });
    }
    Ok(Bmap {
        image_size,
        block_size,
        blocks_count,
        mapped_blocks: counted,
        ranges,
    })
}

/// The scalar elements directly inside `<bmap>`.
const FIELDS: [&str; 6] = [
    "ImageSize",
    "BlockSize",
    "BlocksCount",
    "MappedBlocksCount",
    "ChecksumType",
    "BmapFileChecksum",
];

struct Tag<'a> {
    name: &'a [u8],
    attrs: heapless::Vec<(&'a [u8], &'a [u8]), MAX_ATTRS>,
    /// Byte offset of its `<`; the line is counted only for an error.
    pos: usize,
}

/// A cursor over the input; every method either advances or fails.
/// Line numbers are counted only when an error is made (counting them
/// for each tag would make parsing quadratic).
struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn line(&self) -> usize {
        line_at(self.s, self.pos)
    }

    fn line_of(&self, tag: &Tag) -> usize {
        line_at(self.s, tag.pos)
    }

    fn syntax(&self, what: &'static str) -> BmapError {
        BmapError::Syntax {
            line: self.line(),
            what,
        }
    }

    fn rest(&self) -> &'a [u8] {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        while self.rest().first().is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    /// Skips white space, comments and `<?...?>` declarations.
    fn skip_misc(&mut self) -> Result<(), BmapError> {
        loop {
            self.skip_ws();
            if self.rest().starts_with(b"<!--") {
                self.skip_past(b"-->", "unterminated comment")?;
            } else if self.rest().starts_with(b"<?") {
                self.skip_past(b"?>", "unterminated <? declaration")?;
            } else {
                return Ok(());
            }
        }
    }

    fn skip_past(&mut self, end: &[u8], what: &'static str) -> Result<(), BmapError> {
        match find(self.rest(), end) {
            Some(i) => {
                self.pos += i + end.len();
                Ok(())
            }
            None => Err(self.syntax(what)),
        }
    }

    fn at_close(&self) -> bool {
        self.rest().starts_with(b"</")
    }

    /// `<Name attr="value" ...>`.
    fn open_tag(&mut self) -> Result<Tag<'a>, BmapError> {
        let pos = self.pos;
        if !self.rest().starts_with(b"<") || self.at_close() {
            return Err(self.syntax("expected an element"));
        }
        self.pos += 1;
        let name = self.name()?;
        let mut attrs = heapless::Vec::new();
        loop {
            let before = self.pos;
            self.skip_ws();
            match self.rest().first() {
                Some(b'>') => {
                    self.pos += 1;
                    return Ok(Tag { name, attrs, pos });
                }
                Some(b'/') => return Err(self.syntax("self-closing elements are not expected")),
                Some(_) if self.pos == before => {
                    return Err(self.syntax("expected white space before an attribute"));
                }
                Some(_) => {}
                None => return Err(self.syntax("unterminated tag")),
            }
            let key = self.name()?;
            self.skip_ws();
            if self.rest().first() != Some(&b'=') {
                return Err(self.syntax("expected `=` after an attribute name"));
            }
            self.pos += 1;
            self.skip_ws();
            let quote = match self.rest().first() {
                Some(&q @ (b'"' | b'\'')) => q,
                _ => return Err(self.syntax("expected a quoted attribute value")),
            };
            self.pos += 1;
            let Some(len) = self.rest().iter().position(|&c| c == quote) else {
                return Err(self.syntax("unterminated attribute value"));
            };
            let value = &self.rest()[..len];
            if value.iter().any(|&c| c == b'<' || c == b'&') {
                return Err(self.syntax("`<` or `&` in an attribute value"));
            }
            self.pos += len + 1;
            if attrs.iter().any(|(k, _)| *k == key) {
                return Err(self.syntax("repeated attribute"));
            }
            if attrs.push((key, value)).is_err() {
                return Err(self.syntax("too many attributes"));
            }
        }
    }

    /// `</name>`.
    fn close_tag(&mut self, name: &[u8]) -> Result<(), BmapError> {
        if !self.at_close() {
            return Err(self.syntax("expected a closing tag"));
        }
        self.pos += 2;
        let got = self.name()?;
        self.skip_ws();
        if got != name || self.rest().first() != Some(&b'>') {
            return Err(self.syntax("closing tag does not match the element"));
        }
        self.pos += 1;
        Ok(())
    }

    fn name(&mut self) -> Result<&'a [u8], BmapError> {
        let len = self
            .rest()
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
            .count();
        if len == 0 {
            return Err(self.syntax("expected a name"));
        }
        let name = &self.rest()[..len];
        self.pos += len;
        Ok(name)
    }

    /// The text up to the next `<`, trimmed, with the offset of its first
    /// byte.
    fn text(&mut self) -> Result<(usize, &'a [u8]), BmapError> {
        let len = self.rest().iter().position(|&c| c == b'<');
        let Some(len) = len else {
            return Err(self.syntax("unterminated element"));
        };
        let raw = &self.rest()[..len];
        let lead = raw.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let trimmed = raw[lead..].trim_ascii_end();
        let at = self.pos + lead;
        self.pos += len;
        if trimmed.contains(&b'&') {
            return Err(self.syntax("character references are not expected"));
        }
        Ok((at, trimmed))
    }

    /// `<name>TEXT</name>` after its open tag was read.
    fn leaf(&mut self, tag: &Tag<'a>) -> Result<(usize, &'a [u8]), BmapError> {
        self.no_attrs(tag)?;
        let t = self.text()?;
        self.close_tag(tag.name)?;
        Ok(t)
    }

    fn no_attrs(&self, tag: &Tag) -> Result<(), BmapError> {
        match tag.attrs.first() {
            Some((k, _)) => Err(self.unexpected(tag, "attribute", k)),
            None => Ok(()),
        }
    }

    fn unexpected(&self, tag: &Tag, kind: &'static str, name: &[u8]) -> BmapError {
        let shown = &name[..name.len().min(MAX_QUOTED_NAME)];
        BmapError::Unexpected {
            line: self.line_of(tag),
            kind,
            name: String::from_utf8_lossy(shown).into_owned(),
        }
    }

    fn document(mut self) -> Result<Raw, BmapError> {
        let mut raw = Raw::default();
        self.skip_misc()?;
        let root = self.open_tag()?;
        if root.name != b"bmap" {
            return Err(self.unexpected(&root, "root element", root.name));
        }
        for (k, v) in &root.attrs {
            if *k != b"version" {
                return Err(self.unexpected(&root, "attribute", k));
            }
            raw.version = Some(String::from_utf8_lossy(v).into_owned());
        }
        loop {
            self.skip_misc()?;
            if self.at_close() {
                self.close_tag(b"bmap")?;
                break;
            }
            let tag = self.open_tag()?;
            if tag.name == b"BlockMap" {
                if raw.block_map_seen {
                    return Err(BmapError::Duplicate {
                        line: self.line_of(&tag),
                        name: "BlockMap",
                    });
                }
                raw.block_map_seen = true;
                self.no_attrs(&tag)?;
                self.block_map(&mut raw.ranges)?;
                continue;
            }
            let Some(&field) = FIELDS.iter().find(|f| f.as_bytes() == tag.name) else {
                return Err(self.unexpected(&tag, "element", tag.name));
            };
            let (at, text) = self.leaf(&tag)?;
            let line = self.line_of(&tag); // six times per file at most
            let dup = BmapError::Duplicate { line, name: field };
            let slot = match field {
                "ImageSize" => &mut raw.image_size,
                "BlockSize" => &mut raw.block_size,
                "BlocksCount" => &mut raw.blocks_count,
                "MappedBlocksCount" => &mut raw.mapped_blocks,
                "ChecksumType" => {
                    if raw.checksum_type.is_some() {
                        return Err(dup);
                    }
                    raw.checksum_type = Some(String::from_utf8_lossy(text).into_owned());
                    continue;
                }
                _ => {
                    if raw.file_checksum.is_some() {
                        return Err(dup);
                    }
                    let sum = sha256_hex(text).ok_or(BmapError::Hex { line })?;
                    raw.file_checksum = Some((at, sum));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(dup);
            }
            *slot = Some(decimal(text).ok_or(BmapError::Number { line, name: field })?);
        }
        self.skip_misc()?;
        if !self.rest().is_empty() {
            return Err(self.syntax("unexpected text after </bmap>"));
        }
        Ok(raw)
    }

    /// The `<Range>` elements up to `</BlockMap>`.
    fn block_map(&mut self, out: &mut Vec<(usize, BlockRange)>) -> Result<(), BmapError> {
        loop {
            self.skip_misc()?;
            if self.at_close() {
                return self.close_tag(b"BlockMap");
            }
            let tag = self.open_tag()?;
            if tag.name != b"Range" {
                return Err(self.unexpected(&tag, "element", tag.name));
            }
            let mut sum = None;
            for (k, v) in &tag.attrs {
                if *k != b"chksum" {
                    return Err(self.unexpected(&tag, "attribute", k));
                }
                let hex = sha256_hex(v);
                sum = Some(hex.ok_or_else(|| BmapError::Hex {
                    line: self.line_of(&tag),
                })?);
            }
            let Some(sha256) = sum else {
                return Err(BmapError::Syntax {
                    line: self.line_of(&tag),
                    what: "a range without a chksum attribute",
                });
            };
            let text = self.text()?.1;
            self.close_tag(b"Range")?;
            let number = |t: &[u8]| {
                decimal(t.trim_ascii()).ok_or_else(|| BmapError::Number {
                    line: self.line_of(&tag),
                    name: "Range",
                })
            };
            let (first, last) = match text.iter().position(|&c| c == b'-') {
                Some(i) => (number(&text[..i])?, number(&text[i + 1..])?),
                None => {
                    let n = number(text)?;
                    (n, n)
                }
            };
            if out.len() == MAX_RANGES {
                return Err(BmapError::TooManyRanges);
            }
            out.push((
                tag.pos,
                BlockRange {
                    first,
                    last,
                    sha256,
                },
            ));
        }
    }
}

fn line_at(s: &[u8], pos: usize) -> usize {
    1 + s[..pos.min(s.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A plain decimal number (digits only) that fits a `u64`.
fn decimal(t: &[u8]) -> Option<u64> {
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    t.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// 64 hexadecimal digits (either case) as 32 bytes.
pub fn sha256_hex(t: &[u8]) -> Option<[u8; 32]> {
    if t.len() != SHA256_HEX {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// `bytes` as lowercase hexadecimal, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with bmaptool 3.6 (`bmaptool create -o F IMAGE`) from the images
    // that `golden_1m_image` and `golden_odd_image` rebuild.
    const GOLDEN_1M: &[u8] = include_bytes!("testdata/golden-1m.bmap");
    const GOLDEN_ODD: &[u8] = include_bytes!("testdata/golden-odd.bmap");

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    /// 1 MiB: "hello" at 0, 10,000 pattern bytes at 300,000, "end" at 1,048,000.
    fn golden_1m_image() -> Vec<u8> {
        let mut img = vec![0u8; 1 << 20];
        img[..5].copy_from_slice(b"hello");
        img[300_000..310_000].copy_from_slice(&pattern(10_000, 1));
        img[1_048_000..1_048_003].copy_from_slice(b"end");
        img
    }

    /// 10,001 bytes: "zz" at 9,999 (the last block is partial).
    fn golden_odd_image() -> Vec<u8> {
        let mut img = vec![0u8; 10_001];
        img[9_999..].copy_from_slice(b"zz");
        img
    }

    fn sha256(b: &[u8]) -> [u8; 32] {
        digest::digest(&digest::SHA256, b)
            .as_ref()
            .try_into()
            .unwrap()
    }

    /// Rewrites BmapFileChecksum so that an edited fixture passes the file
    /// checksum and reaches the check under test.
    fn reseal(text: &str) -> Vec<u8> {
        let open = "<BmapFileChecksum> ";
        let at = text.find(open).unwrap() + open.len();
        let mut b = text.as_bytes().to_vec();
        b[at..at + 64].fill(b'0');
        let sum = hex(&sha256(&b));
        b[at..at + 64].copy_from_slice(sum.as_bytes());
        b
    }

    fn golden_text() -> String {
        String::from_utf8(GOLDEN_1M.to_vec()).unwrap()
    }

    fn edited(from: &str, to: &str) -> Result<Bmap, BmapError> {
        let t = golden_text();
        assert!(t.contains(from), "{from}");
        parse(&reseal(&t.replacen(from, to, 1)))
    }

    #[test]
    fn golden_file_parses_and_its_ranges_hash_the_image() {
        let b = parse(GOLDEN_1M).unwrap();
        assert_eq!(b.image_size(), 1 << 20);
        assert_eq!(b.block_size(), 4096);
        assert_eq!(b.blocks_count(), 256);
        assert_eq!(b.mapped_blocks(), 5);
        let blocks: Vec<_> = b.ranges().iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(blocks, [(0, 0), (73, 75), (255, 255)]);
        assert_eq!(b.mapped_bytes(), 5 * 4096);
        let img = golden_1m_image();
        for r in b.ranges() {
            let (off, len) = b.span(r);
            assert_eq!(sha256(&img[off as usize..(off + len) as usize]), r.sha256);
        }
    }

    #[test]
    fn partial_last_block_is_hashed_to_the_image_end() {
        let b = parse(GOLDEN_ODD).unwrap();
        assert_eq!((b.image_size(), b.blocks_count()), (10_001, 3));
        let r = b.ranges()[0];
        assert_eq!((r.first, r.last), (2, 2));
        assert_eq!(b.span(&r), (8192, 1809));
        assert_eq!(sha256(&golden_odd_image()[8192..]), r.sha256);
        assert_eq!(b.mapped_bytes(), 1809);
    }

    #[test]
    fn the_file_checksum_is_verified() {
        let t = golden_text().replacen("<ImageSize> 1048576", "<ImageSize> 1048577", 1);
        assert_eq!(parse(t.as_bytes()), Err(BmapError::FileChecksum));
        // Any edit outside the digits counts, even in a comment.
        let t = golden_text().replacen("Image size", "Image Size", 1);
        assert_eq!(parse(t.as_bytes()), Err(BmapError::FileChecksum));
        // Resealing an unchanged file gives the original back.
        assert_eq!(reseal(&golden_text()), GOLDEN_1M);
    }

    #[test]
    fn bounds_and_counts_are_checked() {
        let big = vec![b' '; MAX_BMAP_BYTES + 1];
        assert!(matches!(parse(&big), Err(BmapError::TooLarge { .. })));
        assert_eq!(
            edited("<BlockSize> 4096", "<BlockSize> 4000"),
            Err(BmapError::BlockSize(4000))
        );
        assert_eq!(
            edited("<BlockSize> 4096", "<BlockSize> 256"),
            Err(BmapError::BlockSize(256))
        );
        assert_eq!(
            edited("<BlocksCount> 256", "<BlocksCount> 257"),
            Err(BmapError::BlocksCount {
                declared: 257,
                expected: 256
            })
        );
        assert_eq!(
            edited("<MappedBlocksCount> 5", "<MappedBlocksCount> 6"),
            Err(BmapError::MappedCount {
                declared: 6,
                counted: 5
            })
        );
        assert_eq!(
            edited("<ImageSize> 1048576", "<ImageSize> 0"),
            Err(BmapError::EmptyImage)
        );
        assert!(matches!(
            edited("<ImageSize> 1048576", "<ImageSize> 99999999999999999999"),
            Err(BmapError::Number {
                name: "ImageSize",
                ..
            })
        ));
        assert_eq!(
            edited("<ChecksumType> sha256", "<ChecksumType> sha1"),
            Err(BmapError::ChecksumType("sha1".into()))
        );
        assert_eq!(
            edited("<bmap version=\"2.0\">", "<bmap version=\"1.4\">"),
            Err(BmapError::Version("1.4".into()))
        );
    }

    #[test]
    fn ranges_must_be_ordered_disjoint_and_inside() {
        let bad = |from, to| match edited(from, to) {
            Err(BmapError::BadRange { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad("> 73-75 <", "> 75-73 <"), "reversed");
        assert_eq!(
            bad("> 73-75 <", "> 0-2 <"),
            "out of order or overlapping the one before"
        );
        assert_eq!(
            bad("> 255 <", "> 75 <"),
            "out of order or overlapping the one before"
        );
        assert_eq!(bad("> 255 <", "> 256 <"), "past the image's last block");
        assert!(matches!(
            edited("> 73-75 <", "> 73- <"),
            Err(BmapError::Number { name: "Range", .. })
        ));
        assert!(matches!(
            edited("> 73-75 <", "> -75 <"),
            Err(BmapError::Number { name: "Range", .. })
        ));
        assert!(matches!(
            edited("> 73-75 <", "> 73-75-77 <"),
            Err(BmapError::Number { name: "Range", .. })
        ));
    }

    #[test]
    fn too_many_ranges_is_an_error_not_growth() {
        let mut t = String::from("<bmap version=\"2.0\"><BlockMap>");
        for i in 0..=MAX_RANGES {
            t.push_str(&format!("<Range chksum=\"{}\">{i}</Range>", "0".repeat(64)));
        }
        t.push_str("</BlockMap></bmap>");
        // Too large as a file before it is too many as ranges.
        assert!(matches!(
            parse(t.as_bytes()),
            Err(BmapError::TooLarge { .. })
        ));
        let r = Reader {
            s: t.as_bytes(),
            pos: 0,
        };
        assert_eq!(r.document().err(), Some(BmapError::TooManyRanges));
    }

    #[test]
    fn malformed_xml_is_refused_with_its_line() {
        let syntax = |from: &str, to: &str| match edited(from, to) {
            Err(BmapError::Syntax { line, what }) => (line, what),
            other => panic!("{from} -> {to}: {other:?}"),
        };
        assert_eq!(
            syntax("</ImageSize>", "</BlockSize>"),
            (26, "closing tag does not match the element")
        );
        assert_eq!(
            parse(b"<!-- never closed <bmap>"),
            Err(BmapError::Syntax {
                line: 1,
                what: "unterminated comment"
            })
        );
        assert_eq!(
            syntax("</bmap>", "</bmap> junk").1,
            "unexpected text after </bmap>"
        );
        assert_eq!(
            syntax("<ImageSize>", "<ImageSize/>").1,
            "self-closing elements are not expected"
        );
        assert_eq!(
            syntax(" 1048576 <", " 1048576&amp;<").1,
            "character references are not expected"
        );
        assert_eq!(
            syntax("<Range chksum=\"b150", "<Range chksum=b150").1,
            "expected a quoted attribute value"
        );
        let t = golden_text();
        let cut = &t.as_bytes()[..t.len() / 2];
        assert!(matches!(parse(cut), Err(BmapError::Syntax { .. })));
        assert!(matches!(parse(b""), Err(BmapError::Syntax { .. })));
        assert!(matches!(
            edited("<ImageSize>", "<ImageSize a=\"1\">"),
            Err(BmapError::Unexpected {
                kind: "attribute",
                ..
            })
        ));
        assert!(matches!(
            edited("<BlockMap>", "<Extra> 1 </Extra><BlockMap>"),
            Err(BmapError::Unexpected {
                kind: "element",
                ..
            })
        ));
        assert!(matches!(
            edited("<BlockMap>", "<BlockMap><Range> 1 </Range>"),
            Err(BmapError::Syntax {
                what: "a range without a chksum attribute",
                ..
            })
        ));
        assert!(matches!(
            edited("chksum=\"b150", "chksum=\"x150"),
            Err(BmapError::Hex { .. })
        ));
        assert!(matches!(
            edited(
                "<ImageSize> 1048576 </ImageSize>",
                "<ImageSize> 1048576 </ImageSize><ImageSize> 1 </ImageSize>"
            ),
            Err(BmapError::Duplicate {
                name: "ImageSize",
                ..
            })
        ));
        assert_eq!(
            edited("<ChecksumType> sha256 </ChecksumType>", ""),
            Err(BmapError::Missing("ChecksumType"))
        );
        assert!(matches!(
            parse(b"<notbmap></notbmap>"),
            Err(BmapError::Unexpected {
                kind: "root element",
                ..
            })
        ));
    }

    #[test]
    fn any_prefix_or_byte_flip_is_an_error_not_a_panic() {
        for n in 0..GOLDEN_ODD.len() {
            assert!(parse(&GOLDEN_ODD[..n]).is_err(), "prefix {n}");
        }
        for i in (0..GOLDEN_ODD.len()).step_by(7) {
            let mut b = GOLDEN_ODD.to_vec();
            b[i] ^= 0x55;
            assert!(parse(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn hex_round_trips_either_case() {
        let s = sha256(b"x");
        assert_eq!(sha256_hex(hex(&s).as_bytes()), Some(s));
        assert_eq!(sha256_hex(hex(&s).to_uppercase().as_bytes()), Some(s));
        assert_eq!(sha256_hex(b"00"), None);
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"+1"), None);
    }
}
