//! The warm-start snapshot `<data_dir>/dns.snapshot`: every cached answer
//! with its age, and the hottest names. Layout: an 8-byte magic, a
//! version, the body length and an FNV-1a 64 checksum of the body, then
//! the body (postcard). It is written in one sequential write to a
//! temporary file, fsynced, renamed into place and the directory fsynced,
//! so a power cut leaves the old or the new file, never a torn one.
//!
//! Loading checks magic, version, length and checksum, then every entry
//! again (wire walk, key); a bad file is reported as an error for the
//! caller to log, never trusted and never fatal. Encoding and decoding are
//! pure; only [`write_atomic`] and [`read_file`] touch the disk.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::{Cache, Millis, Stored};
use super::wire::{self, Key};

pub const MAGIC: &[u8; 8] = b"PCBLDNS\x01";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 8 + 4 + 8 + 8;
/// A snapshot file larger than this is refused before it is read. The
/// cache is bounded by `dns.cache_bytes` (at most 64 MiB); its encoding
/// is smaller than its in-memory charge.
pub const MAX_SNAPSHOT_BYTES: u64 = 80 * 1024 * 1024;
pub const FILE_NAME: &str = "dns.snapshot";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("snapshot of {0} bytes is larger than the limit")]
    TooLarge(u64),
    /// The file does not start with our magic (not a snapshot, or torn).
    #[error("not a snapshot (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("snapshot version {0}, expected {VERSION}")]
    Version(u32),
    /// Shorter than its header says.
    #[error("snapshot is truncated")]
    Truncated,
    /// The checksum of the body does not match.
    #[error("snapshot checksum mismatch")]
    Checksum,
    /// The body does not decode.
    #[error("snapshot body does not decode: {0}")]
    Decode(postcard::Error),
    /// The body could not be encoded.
    #[error("snapshot cannot be encoded: {0}")]
    Encode(postcard::Error),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapEntry {
    pub key: Vec<u8>,
    pub wire: Vec<u8>,
    /// Milliseconds since the entry was stored, at save time.
    pub age_ms: u64,
    pub ttl: u32,
    pub hits: u32,
}

/// The body as one value: the model of the format, in field order (the
/// service encodes and decodes it piece by piece: `encode_cache`,
/// `restore`).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Wall-clock seconds at save (to age entries across a reboot).
    pub saved_unix: u64,
    pub entries: Vec<SnapEntry>,
    /// The hot set: keys, hottest first.
    pub hot: Vec<Vec<u8>>,
}

/// FNV-1a, 64 bit: enough to detect torn or corrupted files.
pub fn fnv1a64(data: &[u8]) -> u64 {
    fnv1a64_from(FNV_OFFSET, data)
}

const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// FNV-1a over `data`, continuing from `h` (to checksum a file in pieces).
fn fnv1a64_from(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes the snapshot body from the cache (tests: the model of the format).
#[cfg(test)]
pub fn collect(cache: &Cache, now: Millis, hot_names: usize, saved_unix: u64) -> Body {
    let entries = cache
        .entries()
        .map(|e| SnapEntry {
            key: e.key_bytes().to_vec(),
            wire: e.wire().to_vec(),
            age_ms: (now - e.stored_at()).max(0) as u64,
            ttl: e.ttl(),
            hits: e.hits(),
        })
        .collect();
    let hot = cache
        .hot(hot_names)
        .into_iter()
        .map(|(k, _)| k.0.to_vec())
        .collect();
    Body {
        saved_unix,
        entries,
        hot,
    }
}

/// One entry as it is encoded, borrowing from the cache: the same
/// postcard bytes as [`SnapEntry`] (a byte slice and a `Vec<u8>` are both a
/// length and the bytes).
#[derive(Serialize)]
struct SnapEntryRef<'a> {
    key: &'a [u8],
    wire: &'a [u8],
    age_ms: u64,
    ttl: u32,
    hits: u32,
}

/// The whole file, encoded straight from the cache: the same bytes as
/// `encode(&collect(..))`, without first copying every entry (which
/// took twice the cache's memory for a moment, every hour).
pub fn encode_cache(
    cache: &Cache,
    now: Millis,
    hot_names: usize,
    saved_unix: u64,
) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(HEADER_BYTES + cache.bytes());
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out = put(out, &saved_unix)?;
    out = put(out, &cache.len())?;
    let mut n = 0;
    for e in cache.entries() {
        let r = SnapEntryRef {
            key: e.key_bytes(),
            wire: e.wire(),
            age_ms: (now - e.stored_at()).max(0) as u64,
            ttl: e.ttl(),
            hits: e.hits(),
        };
        out = put(out, &r)?;
        n += 1;
    }
    debug_assert_eq!(n, cache.len());
    let hot = cache.hot(hot_names);
    out = put(out, &hot.len())?;
    for (k, _) in &hot {
        out = put(out, &&k.0[..])?;
    }
    let body_len = (out.len() - HEADER_BYTES) as u64;
    let sum = fnv1a64(&out[HEADER_BYTES..]);
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_be_bytes());
    out[12..20].copy_from_slice(&body_len.to_be_bytes());
    out[20..28].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// Appends one value to the file image.
fn put<T: Serialize + ?Sized>(out: Vec<u8>, x: &T) -> Result<Vec<u8>, SnapshotError> {
    postcard::to_extend(x, out).map_err(SnapshotError::Encode)
}

/// The whole file (tests: the model of the format).
#[cfg(test)]
pub fn encode(body: &Body) -> Result<Vec<u8>, SnapshotError> {
    let payload = postcard::to_allocvec(body).map_err(SnapshotError::Encode)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&fnv1a64(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The body's length and checksum from a file's first bytes.
fn header(head: &[u8]) -> Result<(u64, u64), SnapshotError> {
    if head.len() < 8 || &head[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    if head.len() < HEADER_BYTES {
        return Err(SnapshotError::Truncated);
    }
    let version = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let len = u64::from_be_bytes(head[12..20].try_into().expect("8 bytes"));
    let sum = u64::from_be_bytes(head[20..28].try_into().expect("8 bytes"));
    Ok((len, sum))
}

/// The body of a whole file in memory, checked.
#[cfg(test)]
fn check(file: &[u8]) -> Result<&[u8], SnapshotError> {
    let (len, sum) = header(file)?;
    let body = &file[HEADER_BYTES..];
    if (body.len() as u64) < len {
        return Err(SnapshotError::Truncated);
    }
    if body.len() as u64 != len || fnv1a64(body) != sum {
        return Err(SnapshotError::Checksum);
    }
    Ok(body)
}

/// Bytes read from the file at a time, when checking and when decoding.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Decodes values one after the other from a reader, holding at most a
/// chunk and the value being decoded (an entry is at most 64 KiB).
struct Stream<R> {
    r: R,
    buf: Vec<u8>,
    at: usize,
    eof: bool,
}

impl<R: Read> Stream<R> {
    fn take<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, SnapshotError> {
        loop {
            match postcard::take_from_bytes::<T>(&self.buf[self.at..]) {
                Ok((v, rest)) => {
                    self.at = self.buf.len() - rest.len();
                    return Ok(v);
                }
                Err(postcard::Error::DeserializeUnexpectedEnd) if !self.eof => self.fill()?,
                Err(e) => return Err(SnapshotError::Decode(e)),
            }
        }
    }

    fn fill(&mut self) -> Result<(), SnapshotError> {
        self.buf.drain(..self.at);
        self.at = 0;
        let have = self.buf.len();
        self.buf.resize(have + READ_CHUNK_BYTES, 0);
        let n = read_full(&mut self.r, &mut self.buf[have..])?;
        self.buf.truncate(have + n);
        self.eof = n == 0;
        Ok(())
    }

    fn at_end(&mut self) -> Result<bool, SnapshotError> {
        if self.at == self.buf.len() && !self.eof {
            self.fill()?;
        }
        Ok(self.at == self.buf.len())
    }
}

/// Reads until `buf` is full or the end; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, SnapshotError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: PathBuf::from(FILE_NAME),
                    source,
                });
            }
        }
    }
    Ok(n)
}

/// The whole body, decoded at once (tests compare it with what was
/// collected; the service restores entry by entry, see [`restore`]).
#[cfg(test)]
pub fn decode(file: &[u8]) -> Result<Body, SnapshotError> {
    let body = check(file)?;
    let (b, rest) = postcard::take_from_bytes::<Body>(body).map_err(SnapshotError::Decode)?;
    if !rest.is_empty() {
        return Err(SnapshotError::Checksum);
    }
    Ok(b)
}

/// Checks the snapshot in `file` (header, length, checksum: one pass in
/// chunks), then puts its entries into `cache` one by one as a second
/// pass decodes them, so that loading never holds the file or the whole
/// body in memory; entries expired meanwhile become serve-stale
/// candidates. Entries that fail the checks are skipped. Returns
/// (loaded, skipped) and the hot keys. A file that fails the checks adds
/// nothing; one that passes them but does not decode (not written by us)
/// keeps the entries read before the fault, each of which passed its own
/// checks.
pub fn restore(
    cache: &mut Cache,
    mut file: impl Read + Seek,
    now: Millis,
    now_unix: u64,
) -> Result<(usize, usize, Vec<Key>), SnapshotError> {
    let mut head = [0u8; HEADER_BYTES];
    let n = read_full(&mut file, &mut head)?;
    let (len, sum) = header(&head[..n])?;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let (mut seen, mut h) = (0u64, FNV_OFFSET);
    loop {
        let k = read_full(&mut file, &mut chunk)?;
        if k == 0 {
            break;
        }
        h = fnv1a64_from(h, &chunk[..k]);
        seen += k as u64;
    }
    drop(chunk);
    if seen < len {
        return Err(SnapshotError::Truncated);
    }
    if seen != len || h != sum {
        return Err(SnapshotError::Checksum);
    }
    file.seek(SeekFrom::Start(HEADER_BYTES as u64))
        .map_err(|source| SnapshotError::Io {
            path: PathBuf::from(FILE_NAME),
            source,
        })?;
    let mut st = Stream {
        r: file,
        buf: Vec::new(),
        at: 0,
        eof: false,
    };
    let saved_unix: u64 = st.take()?;
    let since_save_ms = now_unix.saturating_sub(saved_unix).saturating_mul(1000);
    let n: usize = st.take()?;
    let (mut loaded, mut skipped) = (0, 0);
    for _ in 0..n {
        let e: SnapEntry = st.take()?;
        if restore_entry(cache, e, now, since_save_ms) {
            loaded += 1;
        } else {
            skipped += 1;
        }
    }
    let n_hot: usize = st.take()?;
    let mut hot = Vec::new();
    for _ in 0..n_hot {
        let k: Vec<u8> = st.take()?;
        let k = Key(k.into_boxed_slice());
        if k.is_valid() {
            hot.push(k);
        }
    }
    if !st.at_end()? {
        return Err(SnapshotError::Checksum);
    }
    Ok((loaded, skipped, hot))
}

/// Checks one entry again (wire walk, key) and stores it.
fn restore_entry(cache: &mut Cache, e: SnapEntry, now: Millis, since_save_ms: u64) -> bool {
    let key = Key(e.key.into_boxed_slice());
    let Ok(w) = wire::walk(&e.wire) else {
        return false;
    };
    if !key.is_valid()
        || !w.qname.eq_ignore_ascii_case(key.name())
        || w.qtype != key.qtype()
        || w.qclass != key.qclass()
        || w.records.iter().any(|r| r.rtype == wire::TYPE_OPT)
    {
        return false;
    }
    let age = e
        .age_ms
        .saturating_add(since_save_ms)
        .min(i64::MAX as u64 / 4) as i64;
    let stored = Stored {
        ttl_offsets: w.records.iter().map(|r| r.ttl_at as u16).collect(),
        wire: e.wire.into_boxed_slice(),
        stored_at: now - age,
        ttl: e.ttl,
    };
    cache.insert_with_hits(&key.0, &stored, e.hits).is_ok()
}

/// Writes `bytes` as `dir/FILE_NAME`: one write to a temporary file,
/// fsync, rename, fsync of the directory.
pub fn write_atomic(dir: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let path = dir.join(FILE_NAME);
    crate::sys::atomic::write_atomic(&path, bytes)
        .map_err(|source| SnapshotError::Io { path, source })
}

/// Opens `dir/FILE_NAME` (for [`restore`]); `Ok(None)` when there is none.
pub fn open_file(dir: &Path) -> Result<Option<fs::File>, SnapshotError> {
    let path = dir.join(FILE_NAME);
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    let f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    if len > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(len));
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::cache::Lookup;
    use crate::dns::cache::tests::{answer, limits, nxdomain};
    use std::io::Cursor;
    use std::net::Ipv4Addr;

    fn filled() -> Cache {
        let mut c = Cache::new(limits());
        for (i, name) in ["a.example.", "b.example."].iter().enumerate() {
            let r = answer(name, 60, Ipv4Addr::new(192, 0, 2, i as u8));
            let w = wire::walk(&r).unwrap();
            let s = Stored::from_response(&r, &w, 0, &limits()).unwrap();
            c.insert(&Key::new(&w.qname, w.qtype, w.qclass).0, &s)
                .unwrap();
        }
        let r = nxdomain("gone.example.", 300, 300);
        let w = wire::walk(&r).unwrap();
        let s = Stored::from_response(&r, &w, 0, &limits()).unwrap();
        c.insert(&Key::new(&w.qname, w.qtype, w.qclass).0, &s)
            .unwrap();
        let k = Key::new(&wire::name_from_text("b.example").unwrap(), 1, 1);
        for _ in 0..3 {
            c.get(&k.0, 1000);
        }
        c
    }

    #[test]
    fn round_trip_keeps_entries_ages_and_hot_set() {
        let c = filled();
        let body = collect(&c, 10_000, 10, 1_000_000);
        let file = encode_cache(&c, 10_000, 10, 1_000_000).unwrap();
        // Encoded straight from the cache: exactly the model's bytes.
        assert_eq!(file, encode(&body).unwrap());
        assert_eq!(decode(&file).unwrap(), body);
        // Restored 100 s later (wall clock), on a fresh clock.
        let mut c2 = Cache::new(limits());
        let (loaded, skipped, hot) = restore(&mut c2, Cursor::new(&file), 0, 1_000_100).unwrap();
        assert_eq!((loaded, skipped), (3, 0));
        assert_eq!(hot[0].text(), "b.example. A");
        let k = Key::new(&wire::name_from_text("a.example").unwrap(), 1, 1);
        // Stored at 0, saved at 10 s, restored 100 s later: 110 s old, TTL 60.
        assert!(matches!(c2.get(&k.0, 0), Lookup::Stale { .. }));
        let k = Key::new(&wire::name_from_text("gone.example").unwrap(), 1, 1);
        assert!(matches!(c2.get(&k.0, 0), Lookup::Fresh(_)));
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_refused() {
        let file = encode_cache(&filled(), 0, 10, 5).unwrap();
        let mut fresh = Cache::new(limits());
        let mut flipped = file.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(SnapshotError::Checksum)));
        assert!(matches!(
            decode(&file[..file.len() - 10]),
            Err(SnapshotError::Truncated)
        ));
        assert!(matches!(
            decode(b"hello world, not a snapshot"),
            Err(SnapshotError::BadMagic)
        ));
        let mut v2 = file.clone();
        v2[11] = 2;
        assert!(matches!(decode(&v2), Err(SnapshotError::Version(2))));
        // Random cuts and flips: never a panic, never accepted unless intact.
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut f = file.clone();
            let at = (seed as usize) % f.len();
            f[at] ^= (seed >> 32) as u8 | 1;
            assert!(restore(&mut fresh, Cursor::new(&f), 0, 5).is_err());
            assert!(restore(&mut fresh, Cursor::new(&file[..at]), 0, 5).is_err());
            assert_eq!(fresh.len(), 0, "nothing from a bad file is kept");
        }
        assert_eq!(restore(&mut fresh, Cursor::new(&file), 0, 5).unwrap().0, 3);
    }

    #[test]
    fn a_snapshot_larger_than_a_read_chunk_restores_whole() {
        let lim = crate::dns::cache::CacheLimits {
            max_bytes: 2 * 1024 * 1024,
            ..limits()
        };
        let mut c = Cache::new(lim);
        for i in 0..5000u32 {
            let r = answer(&format!("host{i}.example."), 600, Ipv4Addr::from(i));
            let w = wire::walk(&r).unwrap();
            let s = Stored::from_response(&r, &w, 0, &lim).unwrap();
            c.insert(&Key::new(&w.qname, w.qtype, w.qclass).0, &s)
                .unwrap();
        }
        let file = encode_cache(&c, 0, 10, 5).unwrap();
        assert!(file.len() > 4 * READ_CHUNK_BYTES, "{}", file.len());
        let mut c2 = Cache::new(lim);
        let (loaded, skipped, _) = restore(&mut c2, Cursor::new(&file), 0, 5).unwrap();
        assert_eq!((loaded, skipped, c2.len()), (5000, 0, 5000));
        // Bytes after the body: refused after the checksum pass.
        let mut longer = file.clone();
        longer.push(0);
        let mut c3 = Cache::new(lim);
        assert!(restore(&mut c3, Cursor::new(&longer), 0, 5).is_err());
        assert_eq!(c3.len(), 0);
    }

    #[test]
    fn atomic_write_then_read() {
        let dir = std::env::temp_dir().join(format!("pcb-snap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(open_file(&dir).unwrap().is_none());
        let file = encode_cache(&filled(), 0, 10, 5).unwrap();
        write_atomic(&dir, &file).unwrap();
        let mut back = Vec::new();
        open_file(&dir)
            .unwrap()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, file);
        assert!(!dir.join("dns.snapshot.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
