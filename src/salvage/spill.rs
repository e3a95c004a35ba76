//! Data-block records past the memory budget: fixed-size records in
//! unlinked temporary files (in the directory the caller names, never on
//! the scanned volumes), written as sorted runs and merged into one sorted
//! file that queries search by binary search.
//!
//! Only the data-block records spill: on media with large files they are
//! the bulk of the index (one per block); the per-inode records (versions,
//! raw inodes, entries, the indirect-block edges) stay in memory.

use super::scan::DataRef;
use super::{DataBlock, PfsId};
use crate::error::{Error, Result};
use crate::format::Blockref;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of one [`DataBlock`] record: pfs, inum, blockref.
const BLOCK_REC: usize = 4 + 8 + 128;
/// Bytes of one [`DataRef`] record: slot offset, blockref.
const REF_REC: usize = 8 + 128;

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

/// A new unlinked file in `dir` (nothing is left behind, whatever happens).
pub(crate) fn temp_file(dir: &Path) -> Result<File> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("hammer2-salvage-{}-{n}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path, "create spill file"))?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

/// Data refs the scan set aside, in the order found.
pub(crate) struct RefSpill {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    pub count: u64,
}

impl RefSpill {
    pub fn new(dir: PathBuf) -> Self {
        RefSpill { dir, file: None, count: 0 }
    }

    pub fn push_all(&mut self, refs: &mut Vec<DataRef>) -> Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::new(temp_file(&self.dir)?));
        }
        let w = self.file.as_mut().expect("created above");
        let dir = self.dir.clone();
        for r in refs.drain(..) {
            w.write_all(&r.at.to_le_bytes()).map_err(io_err(&dir, "write spill file"))?;
            w.write_all(r.bref.as_bytes()).map_err(io_err(&dir, "write spill file"))?;
            self.count += 1;
        }
        Ok(())
    }

    /// Every ref set aside, in batches, to `f`.
    pub fn for_each(self, mut f: impl FnMut(&DataRef) -> Result<()>) -> Result<()> {
        let Some(w) = self.file else { return Ok(()) };
        let dir = self.dir;
        let mut file = w.into_inner().map_err(|e| io_err(&dir, "write spill file")(e.into_error()))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io_err(&dir, "seek spill file"))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut rec = [0u8; REF_REC];
        for _ in 0..self.count {
            r.read_exact(&mut rec).map_err(io_err(&dir, "read spill file"))?;
            let at = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
            let bref = Blockref::read_from_bytes(&rec[8..]).expect("128 bytes");
            f(&DataRef { at, bref })?;
        }
        Ok(())
    }
}

fn encode(d: &DataBlock, out: &mut [u8; BLOCK_REC]) {
    out[..4].copy_from_slice(&d.pfs.to_le_bytes());
    out[4..12].copy_from_slice(&d.inum.to_le_bytes());
    out[12..].copy_from_slice(d.bref.as_bytes());
}

fn decode(rec: &[u8]) -> DataBlock {
    DataBlock {
        pfs: PfsId::from_le_bytes(rec[..4].try_into().expect("4 bytes")),
        inum: u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes")),
        bref: Blockref::read_from_bytes(&rec[12..BLOCK_REC]).expect("128 bytes"),
    }
}

/// Sort and identity key of a data block record.
pub(crate) fn key(d: &DataBlock) -> (PfsId, u64, u64, u64) {
    (d.pfs, d.inum, d.bref.key.get(), d.bref.data_off.get())
}

/// Data-block records, sorted by [`key`], in memory or in a file.
pub(crate) enum Blocks {
    Mem(Vec<DataBlock>),
    File { file: File, count: u64, dir: PathBuf },
}

/// Collects data-block records within a memory budget.
pub(crate) struct BlockSorter {
    dir: PathBuf,
    budget: usize,
    buf: Vec<DataBlock>,
    runs: Vec<(File, u64)>,
}

impl BlockSorter {
    pub fn new(dir: PathBuf, budget: usize) -> Self {
        BlockSorter { dir, budget, buf: Vec::new(), runs: Vec::new() }
    }

    pub fn push(&mut self, d: DataBlock) -> Result<()> {
        self.buf.push(d);
        if self.buf.len() * std::mem::size_of::<DataBlock>() >= self.budget {
            self.flush_run()?;
        }
        Ok(())
    }

    fn flush_run(&mut self) -> Result<()> {
        self.buf.sort_by_key(key);
        self.buf.dedup_by_key(|d| key(d));
        let file = temp_file(&self.dir)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut rec = [0u8; BLOCK_REC];
        for d in &self.buf {
            encode(d, &mut rec);
            w.write_all(&rec).map_err(io_err(&self.dir, "write spill file"))?;
        }
        let file = w.into_inner().map_err(|e| io_err(&self.dir, "write spill file")(e.into_error()))?;
        self.runs.push((file, self.buf.len() as u64));
        self.buf.clear();
        Ok(())
    }

    /// The records, sorted and without duplicates: in memory when they
    /// stayed within the budget, else merged into one file.
    pub fn finish(mut self) -> Result<Blocks> {
        if self.runs.is_empty() {
            self.buf.sort_by_key(key);
            self.buf.dedup_by_key(|d| key(d));
            return Ok(Blocks::Mem(self.buf));
        }
        if !self.buf.is_empty() {
            self.flush_run()?;
        }
        let dir = self.dir.clone();
        let mut readers: Vec<(BufReader<File>, u64)> = Vec::new();
        for (f, n) in self.runs.drain(..) {
            use std::io::Seek;
            let mut f = f;
            f.seek(std::io::SeekFrom::Start(0)).map_err(io_err(&dir, "seek spill file"))?;
            readers.push((BufReader::with_capacity(1 << 16, f), n));
        }
        let next = |i: usize, readers: &mut Vec<(BufReader<File>, u64)>| -> Result<Option<DataBlock>> {
            let (r, left) = &mut readers[i];
            if *left == 0 {
                return Ok(None);
            }
            *left -= 1;
            let mut rec = [0u8; BLOCK_REC];
            r.read_exact(&mut rec).map_err(io_err(&dir, "read spill file"))?;
            Ok(Some(decode(&rec)))
        };
        let mut heap = BinaryHeap::new();
        for i in 0..readers.len() {
            if let Some(d) = next(i, &mut readers)? {
                heap.push(std::cmp::Reverse((key(&d), i, Rec(d))));
            }
        }
        let out = temp_file(&dir)?;
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut count = 0u64;
        let mut last = None;
        let mut rec = [0u8; BLOCK_REC];
        while let Some(std::cmp::Reverse((k, i, Rec(d)))) = heap.pop() {
            if last != Some(k) {
                encode(&d, &mut rec);
                w.write_all(&rec).map_err(io_err(&dir, "write spill file"))?;
                count += 1;
                last = Some(k);
            }
            if let Some(d) = next(i, &mut readers)? {
                heap.push(std::cmp::Reverse((key(&d), i, Rec(d))));
            }
        }
        let file = w.into_inner().map_err(|e| io_err(&dir, "write spill file")(e.into_error()))?;
        Ok(Blocks::File { file, count, dir })
    }
}

/// A record carried through the merge heap (ordered by the key beside it).
struct Rec(DataBlock);
impl PartialEq for Rec {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Rec {}
impl PartialOrd for Rec {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Rec {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Blocks {
    pub fn len(&self) -> u64 {
        match self {
            Blocks::Mem(v) => v.len() as u64,
            Blocks::File { count, .. } => *count,
        }
    }

    /// The records of one inode, by key.
    pub fn of(&self, pfs: PfsId, inum: u64) -> Result<Vec<DataBlock>> {
        match self {
            Blocks::Mem(v) => {
                let lo = v.partition_point(|d| (d.pfs, d.inum) < (pfs, inum));
                let hi = v.partition_point(|d| (d.pfs, d.inum) <= (pfs, inum));
                Ok(v[lo..hi].to_vec())
            }
            Blocks::File { file, count, dir } => {
                let read = |i: u64| -> Result<DataBlock> {
                    let mut rec = [0u8; BLOCK_REC];
                    file.read_exact_at(&mut rec, i * BLOCK_REC as u64)
                        .map_err(io_err(dir, "read spill file"))?;
                    Ok(decode(&rec))
                };
                // First record at or past (pfs, inum).
                let (mut lo, mut hi) = (0u64, *count);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let d = read(mid)?;
                    if (d.pfs, d.inum) < (pfs, inum) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                let mut out = Vec::new();
                let mut i = lo;
                while i < *count {
                    let d = read(i)?;
                    if (d.pfs, d.inum) != (pfs, inum) {
                        break;
                    }
                    out.push(d);
                    i += 1;
                }
                Ok(out)
            }
        }
    }
}
