//! The segment log: files `seg-<16 hex>.log` in the spool directory, one
//! of them active. It owns their bytes: appending encoded records to a
//! write buffer, writing it out in large sequential writes, the fsync
//! that a commit is, rolling to a new segment, and deleting old segments
//! (oldest first) once no queued message has a record in them. It knows
//! messages only as ids that keep a segment alive; what a message is, is
//! the index's business, and what the files held at start, recovery's.
//! It never rewrites a byte it has written (recovery alone cuts a torn
//! tail).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::{Extent, SpoolError, Stats};

/// Buffered bytes are written to the segment once the buffer holds this
/// much, so flash sees large sequential writes.
pub const WRITE_BUFFER: usize = 256 * 1024;

/// One segment file: its length and the messages that keep it.
#[derive(Debug, Default)]
pub(super) struct Segment {
    pub(super) bytes: u64,
    pub(super) live: BTreeSet<u64>,
}

pub(super) struct Active {
    pub(super) seq: u64,
    file: File,
    /// Bytes already written to the file (not necessarily synced).
    pub(super) written: u64,
    /// Bytes the last successful sync made durable.
    durable: u64,
}

/// The segment files of one spool directory.
pub(super) struct Log {
    dir: PathBuf,
    /// A segment is rolled once it holds this many bytes.
    segment_bytes: u64,
    pub(super) active: Active,
    buf: Vec<u8>,
    segments: BTreeMap<u64, Segment>,
    /// Tests: syncs fail (after the write, as an fsync error does).
    #[cfg(test)]
    pub(super) fail_syncs: bool,
    /// Tests: the next write stores only this many bytes, then fails (as
    /// a full disk or an I/O error half way does).
    #[cfg(test)]
    pub(super) short_write: Option<usize>,
    /// Tests: cutting the active segment back after a failed sync fails.
    #[cfg(test)]
    pub(super) fail_cut: bool,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn seg_name(seq: u64) -> String {
    format!("seg-{seq:016x}.log")
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Log {
    /// Starts a fresh active segment `seq` after the recovered ones.
    pub(super) fn start(
        dir: &Path,
        segment_bytes: u64,
        mut segments: BTreeMap<u64, Segment>,
        seq: u64,
    ) -> Result<Log, SpoolError> {
        let active = Self::create_segment(dir, seq)?;
        segments.insert(seq, Segment::default());
        Ok(Log {
            dir: dir.to_path_buf(),
            segment_bytes,
            active,
            buf: Vec::with_capacity(WRITE_BUFFER),
            segments,
            #[cfg(test)]
            fail_syncs: false,
            #[cfg(test)]
            short_write: None,
            #[cfg(test)]
            fail_cut: false,
        })
    }

    fn create_segment(dir: &Path, seq: u64) -> Result<Active, SpoolError> {
        let path = dir.join(seg_name(seq));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        fsync_dir(dir)?;
        Ok(Active {
            seq,
            file,
            written: 0,
            durable: 0,
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(seg_name(seq))
    }

    /// Bytes the log occupies on disk, counting unwritten buffer.
    pub(super) fn used_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum::<u64>() + self.buf.len() as u64
    }

    pub(super) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The active segment is full: roll before the next record.
    pub(super) fn needs_roll(&self) -> bool {
        self.active.written + self.buf.len() as u64 >= self.segment_bytes
    }

    /// Appends a record to the buffer; returns (segment, file offset of
    /// its payload).
    pub(super) fn append(
        &mut self,
        rec: &Record,
        stats: &mut Stats,
    ) -> Result<(u64, u64), SpoolError> {
        let base = self.active.written + self.buf.len() as u64;
        let start = self.buf.len();
        let at = record::encode(rec, &mut self.buf);
        let seq = self.active.seq;
        let grown = (self.buf.len() - start) as u64;
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.bytes += grown;
        }
        if self.buf.len() >= WRITE_BUFFER {
            self.write_out(stats)?;
        }
        Ok((seq, base + (at - start) as u64))
    }

    fn write_out(&mut self, stats: &mut Stats) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.segment_path(self.active.seq);
        // At the offset the records were planned for, not at the file's
        // position: after a write that failed half way, the retry (the
        // buffer is kept) overwrites the partial bytes instead of
        // following them, so every extent already handed out stays true.
        #[cfg(test)]
        if let Some(n) = self.short_write.take() {
            // As a real short write: the bytes land where the file's
            // position was, and the position moves past them.
            let n = n.min(self.buf.len());
            std::io::Write::write_all(&mut self.active.file, &self.buf[..n])
                .map_err(io_err(&path))?;
            return Err(io_err(&path)(io::Error::other("short write (test)")));
        }
        self.active
            .file
            .write_all_at(&self.buf, self.active.written)
            .map_err(io_err(&path))?;
        stats.write_calls += 1;
        stats.bytes_written += self.buf.len() as u64;
        self.active.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything appended so far durable: one write, one fsync.
    /// When either fails, see [`Log::cut_back`].
    pub(super) fn sync(&mut self, stats: &mut Stats) -> Result<(), SpoolError> {
        let r = self.write_out(stats).and_then(|()| {
            let path = self.segment_path(self.active.seq);
            #[cfg(test)]
            if self.fail_syncs {
                return Err(io_err(&path)(io::Error::other("fsync failed (test)")));
            }
            self.active.file.sync_data().map_err(io_err(&path))
        });
        match r {
            Ok(()) => {
                stats.fsyncs += 1;
                self.active.durable = self.active.written;
                Ok(())
            }
            Err(e) => {
                self.cut_back();
                Err(e)
            }
        }
    }

    /// A write or fsync failed: what it was writing may be anything on
    /// the medium (after an fsync error the kernel may drop the pages), and
    /// a group commit can be wider than one record, which recovery would
    /// refuse to start over. Every message with records in it is dropped
    /// (the senders get 451: see `Spool::forget_uncommitted`), so the
    /// active segment is cut back to what the last good sync made durable
    /// and the next records go to a new segment. If the cut fails, nothing
    /// changes: the buffer is written again at its planned offset by the
    /// next commit, and the delete records that `forget_uncommitted` appends
    /// keep recovery from bringing the dropped messages back.
    fn cut_back(&mut self) {
        let seq = self.active.seq;
        let keep = self.active.durable;
        let path = self.segment_path(seq);
        #[cfg(not(test))]
        let fail = false;
        #[cfg(test)]
        let fail = self.fail_cut;
        let cut = if fail {
            Err(io::Error::other("cut failed (test)"))
        } else {
            self.active
                .file
                .set_len(keep)
                .and_then(|()| self.active.file.sync_all())
        };
        if let Err(e) = cut {
            log::error!(
                "spool: {}: cutting back to the last commit ({keep} bytes) after a failed write: {e}",
                path.display()
            );
            return;
        }
        self.buf.clear();
        self.active.written = keep;
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.bytes = keep;
        }
        match self.next_segment() {
            Ok(()) => log::warn!(
                "spool: {}: cut back to the last commit ({keep} bytes) after a failed write; \
                 going on in {}",
                path.display(),
                seg_name(self.active.seq)
            ),
            Err(e) => log::error!(
                "spool: {}: cut back to the last commit ({keep} bytes) after a failed write; \
                 no new segment: {e}",
                path.display()
            ),
        }
    }

    /// Starts the next segment (after a sync of the active one).
    pub(super) fn next_segment(&mut self) -> Result<(), SpoolError> {
        let seq = self.active.seq + 1;
        self.active = Self::create_segment(&self.dir, seq)?;
        self.segments.insert(seq, Segment::default());
        Ok(())
    }

    /// Message `id` has a record in segment `seq`.
    pub(super) fn touch(&mut self, id: u64, seq: u64) {
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.live.insert(id);
        }
    }

    /// Message `id` keeps none of `segs` any more.
    pub(super) fn release(&mut self, id: u64, segs: &BTreeSet<u64>) {
        for s in segs {
            if let Some(seg) = self.segments.get_mut(s) {
                seg.live.remove(&id);
            }
        }
        // The record that finished the message sits in the active
        // segment, which stays until it is rolled and everything older is
        // gone.
    }

    /// Deletes, oldest first, segments in which every message is
    /// finished. Call after a commit, so that the records that finished
    /// them are durable first.
    pub(super) fn collect_garbage(&mut self) -> Result<usize, SpoolError> {
        let mut removed = 0;
        while let Some((&seq, seg)) = self.segments.iter().next() {
            if seq == self.active.seq || !seg.live.is_empty() {
                break;
            }
            let path = self.segment_path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.segments.remove(&seq);
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&self.dir)?;
        }
        // A fully finished active segment that has grown large is rolled,
        // so that it can go too.
        Ok(removed)
    }
}

/// Reads body extents from segment files (delivery does this without the
/// writer). Bounded by the message size limit.
pub fn read_extents(dir: &Path, extents: &[Extent]) -> Result<Vec<u8>, SpoolError> {
    let mut out = Vec::new();
    let mut file: Option<(u64, File)> = None;
    for e in extents {
        if file.as_ref().is_none_or(|(s, _)| *s != e.seg) {
            let path = dir.join(seg_name(e.seg));
            file = Some((e.seg, File::open(&path).map_err(io_err(&path))?));
        }
        let Some((_, f)) = &file else { continue };
        let start = out.len();
        out.resize(start + e.len as usize, 0);
        f.read_exact_at(&mut out[start..], e.offset)
            .map_err(io_err(&dir.join(seg_name(e.seg))))?;
    }
    Ok(out)
}
