//! Records past the memory budget: fixed-size records in unlinked
//! temporary files (in the directory the caller names, never on the
//! scanned volumes).
//!
//! * A [`Tape`] keeps records in the order pushed: in memory until told
//!   to spill, then appended to its file; read back in order.
//! * A [`Sorter`] sorts records within a budget: sorted runs written to
//!   files past it, merged (duplicates folded) into one [`Sorted`] table
//!   that queries search by binary search, in memory when it fits.
//! * [`Names`] is a byte arena (directory-entry names) that spills the
//!   same way and is read back by offset.

use crate::error::{Error, Result};
use rayon::slice::ParallelSliceMut;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A record a spill file can hold: plain bytes, no padding.
pub(crate) trait Rec: FromBytes + IntoBytes + Immutable + KnownLayout + Copy + Send + Sync {}
impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy + Send + Sync> Rec for T {}

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

/// Records read back per read of a spill file.
const BATCH: usize = 1 << 14;

/// Records in the order pushed, the older ones possibly in a file.
pub(crate) struct Tape<T> {
    dir: PathBuf,
    file: Option<File>,
    spilled: u64,
    pub mem: Vec<T>,
}

impl<T: Rec> Tape<T> {
    pub fn new(dir: PathBuf) -> Self {
        Tape { dir, file: None, spilled: 0, mem: Vec::new() }
    }

    /// Bytes held in memory.
    pub fn mem_bytes(&self) -> usize {
        self.mem.capacity() * std::mem::size_of::<T>()
    }

    pub fn len(&self) -> u64 {
        self.spilled + self.mem.len() as u64
    }

    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Moves the records in memory to the file.
    pub fn spill(&mut self) -> Result<()> {
        if self.mem.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(crate::device::temp_file(&self.dir, "create spill file")?);
        }
        let f = self.file.as_ref().expect("created above");
        let size = std::mem::size_of::<T>() as u64;
        f.write_all_at(self.mem.as_slice().as_bytes(), self.spilled * size)
            .map_err(io_err(&self.dir, "write spill file"))?;
        self.spilled += self.mem.len() as u64;
        self.mem = Vec::new();
        Ok(())
    }

    /// Record `i`.
    pub fn get(&self, i: u64) -> Result<T> {
        if i >= self.spilled {
            return Ok(self.mem[(i - self.spilled) as usize]);
        }
        let f = self.file.as_ref().expect("records spilled");
        let mut t = T::new_zeroed();
        let size = std::mem::size_of::<T>() as u64;
        f.read_exact_at(t.as_mut_bytes(), i * size).map_err(io_err(&self.dir, "read spill file"))?;
        Ok(t)
    }

    /// Every record, in order, to `f`, in batches.
    pub fn for_each_batch(&self, mut f: impl FnMut(&[T]) -> Result<()>) -> Result<()> {
        if let Some(file) = &self.file {
            let size = std::mem::size_of::<T>() as u64;
            let mut buf: Vec<T> = Vec::new();
            let mut i = 0u64;
            while i < self.spilled {
                crate::interrupt::check()?;
                let n = ((self.spilled - i) as usize).min(BATCH);
                buf.resize(n, T::new_zeroed());
                file.read_exact_at(buf.as_mut_slice().as_mut_bytes(), i * size)
                    .map_err(io_err(&self.dir, "read spill file"))?;
                f(&buf)?;
                i += n as u64;
            }
        }
        for chunk in self.mem.chunks(BATCH) {
            crate::interrupt::check()?;
            f(chunk)?;
        }
        Ok(())
    }

    /// Every record, in order, to `f`.
    pub fn for_each(&self, mut f: impl FnMut(&T) -> Result<()>) -> Result<()> {
        self.for_each_batch(|batch| batch.iter().try_for_each(&mut f))
    }
}

/// A byte arena read back by offset, the older bytes possibly in a file:
/// a [`Tape`] of bytes.
pub(crate) type Names = Tape<u8>;

impl Names {
    /// The offset the next byte pushed gets.
    pub fn end(&self) -> u64 {
        self.len()
    }

    /// The `len` bytes at `off`, appended to `out` (from the file, the
    /// memory, or both when the range spans where the spill stopped).
    pub fn read(&self, off: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        let end = off + len as u64;
        if off < self.spilled {
            let f = self.file.as_ref().expect("names spilled");
            let at = out.len();
            let n = (end.min(self.spilled) - off) as usize;
            out.resize(at + n, 0);
            f.read_exact_at(&mut out[at..], off).map_err(io_err(&self.dir, "read spill file"))?;
        }
        if end > self.spilled {
            let s = off.saturating_sub(self.spilled) as usize;
            out.extend_from_slice(&self.mem[s..(end - self.spilled) as usize]);
        }
        Ok(())
    }
}

/// Records sorted by `key`, in memory or in a file.
pub(crate) enum Sorted<T> {
    Mem(Vec<T>),
    File(Tape<T>),
}

impl<T: Rec> Sorted<T> {
    pub fn len(&self) -> u64 {
        match self {
            Sorted::Mem(v) => v.len() as u64,
            Sorted::File(t) => t.len(),
        }
    }

    pub fn spilled(&self) -> bool {
        matches!(self, Sorted::File(_))
    }

    /// The records whose `part` equals `want` (`part` must order the
    /// records as the sort key does).
    pub fn range<P: Ord>(&self, want: P, part: impl Fn(&T) -> P) -> Result<Vec<T>> {
        match self {
            Sorted::Mem(v) => {
                let lo = v.partition_point(|d| part(d) < want);
                let hi = lo + v[lo..].partition_point(|d| part(d) == want);
                Ok(v[lo..hi].to_vec())
            }
            Sorted::File(t) => {
                let (mut lo, mut hi) = (0u64, t.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if part(&t.get(mid)?) < want {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                let mut out = Vec::new();
                while lo < t.len() {
                    let d = t.get(lo)?;
                    if part(&d) != want {
                        break;
                    }
                    out.push(d);
                    lo += 1;
                }
                Ok(out)
            }
        }
    }

    /// [`Sorted::range`], searched in memory forward from `hint` when the
    /// records there are below `want` (galloping), else by binary search;
    /// `hint` is left where the range ends.
    pub fn range_near<P: Ord>(&self, want: P, part: impl Fn(&T) -> P, hint: &mut usize) -> Result<Vec<T>> {
        let Sorted::Mem(v) = self else { return self.range(want, part) };
        let lo = super::owners::gallop(v, *hint, |d| part(d) < want);
        let hi = lo + v[lo..].iter().take_while(|d| part(d) == want).count();
        *hint = hi;
        Ok(v[lo..hi].to_vec())
    }

    /// Every record in order, to `f`.
    pub fn for_each(&self, mut f: impl FnMut(&T) -> Result<()>) -> Result<()> {
        match self {
            Sorted::Mem(v) => v.iter().try_for_each(f),
            Sorted::File(t) => t.for_each(&mut f),
        }
    }
}

/// Sorts records within a memory budget. `same(kept, later)` folds a
/// record into an equal-keyed one kept before it (returns false to keep
/// both).
pub(crate) struct Sorter<T, K> {
    dir: PathBuf,
    budget: usize,
    key: fn(&T) -> K,
    same: fn(&mut T, &T) -> bool,
    buf: Vec<T>,
    runs: Vec<Tape<T>>,
}

impl<T: Rec, K: Ord + Copy + Send> Sorter<T, K> {
    pub fn new(dir: PathBuf, budget: usize, key: fn(&T) -> K, same: fn(&mut T, &T) -> bool) -> Self {
        Sorter { dir, budget: budget.max(4096), key, same, buf: Vec::new(), runs: Vec::new() }
    }

    pub fn push(&mut self, d: T) -> Result<()> {
        if self.buf.capacity() == 0 {
            // The whole budget at once: no doubling past it (pages not
            // written are not resident).
            self.buf.reserve_exact(self.budget / std::mem::size_of::<T>() + 1);
        }
        self.buf.push(d);
        if self.buf.len() * std::mem::size_of::<T>() >= self.budget {
            self.flush_run()?;
        }
        Ok(())
    }

    fn fold(v: &mut Vec<T>, key: fn(&T) -> K, same: fn(&mut T, &T) -> bool) {
        // Stable: of equal keys, the first pushed is kept.
        v.par_sort_by_key(key);
        v.dedup_by(|later, kept| key(later) == key(kept) && same(kept, later));
    }

    fn flush_run(&mut self) -> Result<()> {
        Self::fold(&mut self.buf, self.key, self.same);
        let mut t = Tape::new(self.dir.clone());
        t.mem = std::mem::take(&mut self.buf);
        t.spill()?;
        self.runs.push(t);
        Ok(())
    }

    /// The records, sorted and folded: in memory when they stayed within
    /// the budget, else merged into one file.
    pub fn finish(mut self) -> Result<Sorted<T>> {
        if self.runs.is_empty() {
            Self::fold(&mut self.buf, self.key, self.same);
            self.buf.shrink_to_fit();
            return Ok(Sorted::Mem(self.buf));
        }
        if !self.buf.is_empty() {
            self.flush_run()?;
        }
        self.buf = Vec::new();
        let key = self.key;
        // Each run read in batches; the heap holds one record per run.
        struct Run<T> {
            tape: Tape<T>,
            next: u64,
            buf: Vec<T>,
            at: usize,
        }
        let mut runs: Vec<Run<T>> =
            self.runs.drain(..).map(|tape| Run { tape, next: 0, buf: Vec::new(), at: 0 }).collect();
        let batch = (self.budget / std::mem::size_of::<T>() / (runs.len() + 1)).clamp(64, BATCH);
        let pull = |r: &mut Run<T>| -> Result<Option<T>> {
            if r.at == r.buf.len() {
                r.buf.clear();
                let end = (r.next + batch as u64).min(r.tape.len());
                for i in r.next..end {
                    r.buf.push(r.tape.get(i)?);
                }
                r.next = end;
                r.at = 0;
                if r.buf.is_empty() {
                    return Ok(None);
                }
            }
            r.at += 1;
            Ok(Some(r.buf[r.at - 1]))
        };
        let mut heap = BinaryHeap::new();
        for (i, r) in runs.iter_mut().enumerate() {
            if let Some(d) = pull(r)? {
                heap.push(std::cmp::Reverse((key(&d), i, Held(d))));
            }
        }
        let mut out = Tape::new(self.dir.clone());
        let mut last: Option<T> = None;
        while let Some(std::cmp::Reverse((k, i, Held(d)))) = heap.pop() {
            let folded = match &mut last {
                Some(l) if key(l) == k => (self.same)(l, &d),
                _ => false,
            };
            if !folded {
                if let Some(l) = last.replace(d) {
                    out.mem.push(l);
                    if out.mem.len() >= BATCH {
                        out.spill()?;
                    }
                }
            }
            if let Some(d) = pull(&mut runs[i])? {
                heap.push(std::cmp::Reverse((key(&d), i, Held(d))));
            }
        }
        if let Some(l) = last {
            out.mem.push(l);
        }
        out.spill()?;
        Ok(Sorted::File(out))
    }
}

/// A record carried through the merge heap (ordered by the key beside it).
struct Held<T>(T);
impl<T> PartialEq for Held<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
