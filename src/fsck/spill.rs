//! Sorting past a memory budget: fixed-size records are gathered in memory
//! and, once they would take more than their share of the budget, sorted
//! and written as a run to an unnamed temporary file; reading merges the
//! runs (and what is still in memory) in order. What fsck keeps per inode
//! and per directory entry goes through here, so its memory is bounded by
//! the budget, not by the volume: at ten million files the records take
//! about 1.2 GB, which a budget of 48 MiB turns into some 25 runs per
//! stream, each read back once per pass through a 64 KiB buffer.
//!
//! The temporary files are created in the directory the user names (by
//! default `$TMPDIR`, else /tmp) and unlinked at once, so nothing is left
//! behind whatever happens; the checked device is never used for them.

use crate::error::{Error, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The memory fsck's cross-check records may take by default, in bytes.
pub const DEFAULT_BUDGET: usize = 48 << 20;

/// Runs kept at most: past this many, they are merged into one (so that a
/// tiny budget on a huge volume does not run out of file descriptors).
const MAX_RUNS: usize = 64;

/// Records a sorter holds in memory at least, whatever the budget.
const MIN_RECORDS: usize = 16;

/// A record of fixed size that sorts by its own order.
pub(crate) trait Record: Copy + Ord {
    /// Encoded size in bytes.
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(b: &[u8]) -> Self;
}

/// Where runs go, and how many bytes of records a sorter may hold.
#[derive(Debug, Clone)]
pub(crate) struct SpillConfig {
    pub dir: PathBuf,
    pub bytes: usize,
}

impl SpillConfig {
    /// `bytes` of budget in `dir` (`None`: `$TMPDIR`, else /tmp).
    pub(crate) fn new(dir: Option<&Path>, bytes: usize) -> Self {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        SpillConfig { dir, bytes }
    }

    /// The same place with `1/parts` of the budget.
    pub(crate) fn share(&self, parts: usize) -> Self {
        SpillConfig { dir: self.dir.clone(), bytes: self.bytes / parts.max(1) }
    }
}

/// One sorted run on disk: `count` records from offset 0.
struct Run {
    file: File,
    count: u64,
}

/// Gathers records; [`Sorter::finish`] sorts them.
pub(crate) struct Sorter<R: Record> {
    mem: Vec<R>,
    /// Records held in memory before a run is written (at least [`MIN_RECORDS`]).
    cap: usize,
    dir: PathBuf,
    runs: Vec<Run>,
    total: u64,
}

fn io_err(path: &Path, op: &'static str, offset: u64, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), op, offset, source }
}

impl<R: Record> Sorter<R> {
    pub(crate) fn new(cfg: &SpillConfig) -> Self {
        let per = std::mem::size_of::<R>().max(R::SIZE).max(1);
        let cap = (cfg.bytes / per).max(MIN_RECORDS);
        Sorter { mem: Vec::new(), cap, dir: cfg.dir.clone(), runs: Vec::new(), total: 0 }
    }

    /// Records pushed so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// Runs written so far.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn push(&mut self, r: R) -> Result<()> {
        if self.mem.len() >= self.cap {
            self.spill()?;
        }
        if self.mem.capacity() == 0 {
            // Grown by doubling up to the cap, never past it.
            self.mem.reserve_exact(self.cap.min(4096));
        } else if self.mem.len() == self.mem.capacity() {
            let more = self.mem.capacity().min(self.cap - self.mem.len());
            self.mem.reserve_exact(more);
        }
        self.mem.push(r);
        self.total += 1;
        Ok(())
    }

    /// Sorts what is in memory and writes it as a run; past [`MAX_RUNS`]
    /// runs, merges them all into one.
    fn spill(&mut self) -> Result<()> {
        self.mem.sort_unstable();
        let mem = std::mem::take(&mut self.mem);
        let run = write_run(&self.dir, mem.iter().copied())?;
        self.mem = mem;
        self.mem.clear();
        self.runs.push(run);
        if self.runs.len() >= MAX_RUNS {
            let all =
                Sorted::<R> { mem: Vec::new(), runs: std::mem::take(&mut self.runs), dir: self.dir.clone() };
            let mut merge = all.iter();
            let run = write_run(&self.dir, merge.by_ref())?;
            merge.error()?;
            self.runs.push(run);
        }
        Ok(())
    }

    /// Everything pushed, in order (the sorter is left empty).
    pub(crate) fn finish(&mut self) -> Sorted<R> {
        let mut mem = std::mem::take(&mut self.mem);
        mem.sort_unstable();
        mem.shrink_to_fit();
        self.total = 0;
        Sorted { mem, runs: std::mem::take(&mut self.runs), dir: self.dir.clone() }
    }
}

/// Writes `records` (in order) as a run in `dir`.
fn write_run<R: Record>(dir: &Path, records: impl Iterator<Item = R>) -> Result<Run> {
    let file = crate::device::temp_file(dir, "create spill file")?;
    let path = dir;
    let mut buf = Vec::with_capacity(R::SIZE * 4096);
    let (mut off, mut count) = (0u64, 0u64);
    let flush = |buf: &mut Vec<u8>, off: &mut u64| -> Result<()> {
        file.write_all_at(buf, *off).map_err(|e| io_err(path, "write", *off, e))?;
        *off += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    for r in records {
        let at = buf.len();
        buf.resize(at + R::SIZE, 0);
        r.encode(&mut buf[at..]);
        count += 1;
        if buf.len() >= R::SIZE * 4096 {
            flush(&mut buf, &mut off)?;
        }
    }
    flush(&mut buf, &mut off)?;
    Ok(Run { file, count })
}

/// Sorted records: iterated as often as needed ([`Sorted::iter`]).
pub(crate) struct Sorted<R: Record> {
    mem: Vec<R>,
    runs: Vec<Run>,
    dir: PathBuf,
}

impl<R: Record> Default for Sorted<R> {
    fn default() -> Self {
        Sorted { mem: Vec::new(), runs: Vec::new(), dir: PathBuf::new() }
    }
}

impl<R: Record> Sorted<R> {
    /// A pass over the records in order. A run that cannot be read back
    /// ends the pass with the error.
    pub(crate) fn iter(&self) -> Merge<'_, R> {
        let mut m = Merge {
            mem: &self.mem,
            at: 0,
            readers: self.runs.iter().map(|r| RunReader::new(r, R::SIZE)).collect(),
            heap: BinaryHeap::new(),
            dir: &self.dir,
            error: None,
        };
        for i in 0..m.readers.len() {
            m.refill(i);
        }
        m
    }
}

/// One run being read back in 64 KiB reads.
struct RunReader<'s> {
    run: &'s Run,
    next: u64,
    buf: Vec<u8>,
    at: usize,
    size: usize,
}

impl<'s> RunReader<'s> {
    fn new(run: &'s Run, size: usize) -> Self {
        RunReader { run, next: 0, buf: Vec::new(), at: 0, size }
    }

    fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        if self.at + self.size > self.buf.len() {
            let total = self.run.count * self.size as u64;
            let off = self.next * self.size as u64;
            if off >= total {
                return Ok(None);
            }
            let per = ((64 << 10) / self.size).max(1) as u64;
            let n = per.min(self.run.count - self.next);
            self.buf.resize(n as usize * self.size, 0);
            self.run.file.read_exact_at(&mut self.buf, off)?;
            self.next += n;
            self.at = 0;
        }
        let rec = &self.buf[self.at..self.at + self.size];
        self.at += self.size;
        Ok(Some(rec))
    }
}

/// The merge of a [`Sorted`]'s runs and in-memory records.
pub(crate) struct Merge<'s, R: Record> {
    mem: &'s [R],
    at: usize,
    readers: Vec<RunReader<'s>>,
    heap: BinaryHeap<Reverse<(R, usize)>>,
    dir: &'s Path,
    error: Option<Error>,
}

impl<R: Record> Merge<'_, R> {
    fn refill(&mut self, i: usize) {
        match self.readers[i].next() {
            Ok(Some(b)) => self.heap.push(Reverse((R::decode(b), i))),
            Ok(None) => {}
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(io_err(self.dir, "read back", 0, e));
                }
            }
        }
    }

    /// The error that ended the pass early, if one did.
    pub(crate) fn error(&mut self) -> Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

impl<R: Record> Iterator for Merge<'_, R> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        if self.error.is_some() {
            return None;
        }
        let mem = self.mem.get(self.at).copied();
        let top = self.heap.peek().map(|Reverse((r, _))| *r);
        match (mem, top) {
            (Some(m), Some(t)) if t < m => self.pop(),
            (Some(m), _) => {
                self.at += 1;
                Some(m)
            }
            (None, Some(_)) => self.pop(),
            (None, None) => None,
        }
    }
}

impl<R: Record> Merge<'_, R> {
    fn pop(&mut self) -> Option<R> {
        let Reverse((r, i)) = self.heap.pop()?;
        self.refill(i);
        Some(r)
    }
}

/// Little-endian field access for [`Record`] codecs.
pub(crate) fn put(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn get(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct R(u64, u64);

    impl Record for R {
        const SIZE: usize = 16;
        fn encode(&self, out: &mut [u8]) {
            put(out, 0, self.0);
            put(out, 8, self.1);
        }
        fn decode(b: &[u8]) -> Self {
            R(get(b, 0), get(b, 8))
        }
    }

    fn values(n: u64) -> Vec<R> {
        (0..n).map(|i| R(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 5000, i)).collect()
    }

    #[test]
    fn spilled_runs_merge_into_the_same_order_as_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let v = values(20_000);
        let mut want = v.clone();
        want.sort();
        // In memory; 20 runs; 1,250 runs (merged every 64).
        for bytes in [16 << 20, 16 * 1000, 16 * 16] {
            let mut s = Sorter::new(&SpillConfig::new(Some(dir.path()), bytes));
            for r in &v {
                s.push(*r).unwrap();
            }
            let spilled = s.runs();
            assert_eq!(spilled > 0, bytes < (16 << 20), "budget {bytes}");
            let sorted = s.finish();
            assert_eq!(s.len(), 0);
            for _ in 0..2 {
                let mut it = sorted.iter();
                let got: Vec<R> = it.by_ref().collect();
                it.error().unwrap();
                assert_eq!(got, want, "budget {bytes}");
            }
        }
        // The runs are unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unusable_directory_is_an_error_not_a_panic() {
        let mut s = Sorter::new(&SpillConfig::new(Some(Path::new("/nonexistent/dir")), 0));
        let r = (0..5000).try_for_each(|i| s.push(R(i, i)));
        assert!(matches!(r, Err(Error::Io { op: "create spill file", .. })), "{r:?}");
    }
}
