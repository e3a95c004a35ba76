//! Salvage: what the media still holds, whatever tree reaches it.
//!
//! HAMMER2 writes copy-on-write: a removed, overwritten or truncated file,
//! or one cut off from its tree by a damaged block, usually lies on the
//! media whole until its blocks are reused. This module finds it there.
//! It sits between [`crate::read`] and the tools (`hammer2_recover list`
//! and `files`, and later fsck's rebuilds), and uses only the layers below.
//!
//! # The scan ([`scan`])
//!
//! Every volume is read once, front to back, in chunks of
//! [`ScanOptions::chunk`] bytes (4 MiB by default); the holes of a sparse
//! image are skipped ([`crate::device::Backend::data_regions`]: SEEK_DATA /
//! SEEK_HOLE); the chunks are handed to every core (rayon) and read
//! through the mapping, page tables filled in one call per chunk (no copy;
//! pread when that call fails, so that a read error is reported, not
//! raised as SIGBUS). The walks of the header copies' trees (which inodes
//! each copy reaches) run beside the scan. In a chunk each slot's first
//! eight bytes are tested (a type the scan keeps, methods that exist)
//! before anything is decoded:
//!
//! * every 1 KiB-aligned block that reads as an inode (version 1, a known
//!   type, a nonzero inum, a name that fits) is noted as a *raw inode*
//!   (with whether it is a PFS root or the super-root); only its blockset
//!   slots are then tried as blockrefs;
//! * every other 128-byte slot is tried as a blockref: a known type,
//!   methods that exist, a radix its type allows, media aligned and inside
//!   the volume set, sane keybits, nonzero transaction ids. Of those:
//!   INODE blockrefs are *verified* at once: their 1 KiB target must pass
//!   the check code the blockref carries and hold `inum == key` (PFS roots
//!   excepted: the super-root keys them by their label's hash), as
//!   DragonFly's `recover` requires; INDIRECT blockrefs are kept as the
//!   edges of the trees (which block names which); DIRENT blockrefs keep
//!   their name (read from its block, verified, past 64 bytes); DATA
//!   blockrefs are kept as found, and verified when a file is read.
//!
//! A damaged block is still scanned slot by slot: one bad byte in a 16 KiB
//! inode-index block spoils the slots it falls in, not the 127 others, so
//! the inodes behind it are found through their intact blockrefs. Where
//! no blockref names an inode any longer, only its raw copy is left; its
//! bytes are then vouched for by nothing. Such a copy is indexed as a
//! version that is never `verified` (in the PFS whose directory entries
//! name it in its `iparent` directory, when exactly one does; else in
//! `<orphan>`), and [`Index::unverified`] lists it for fsck's rebuilds;
//! the tools list it as unrecoverable, and recover it (marked unverified)
//! only when asked to be `relaxed`. With `relaxed`, blockrefs that carry
//! no check code (method none or disabled) are taken too, their targets
//! marked unverified, as DragonFly's `recover-relaxed` does.

//! # The index ([`Index`])
//!
//! Once the scan is over the finds are joined (on every core, a batch of
//! records at a time; see `owners.rs` for the lookups). Each slot lies in some
//! block: an inode's blockset (a raw inode) or an indirect block some
//! INDIRECT blockref names, itself lying in a block, and so on up; the
//! nearest inode above a slot *owns* it. An INODE blockref owned by a PFS
//! root belongs to that PFS (by `pfs_clid`); one owned by the super-root
//! is a PFS root itself; a DIRENT blockref is an entry of the directory
//! owning it; a DATA blockref a block of the file owning it. An indirect
//! block shared by several trees (a snapshot and its source) gives its
//! slots to each. What no PFS root can be reached from goes to the
//! `<orphan>` PFS.
//!
//! Per (PFS, inum) the index keeps every version found: where it lies,
//! the `modify_tid` of the blockref naming it, an identity of its state
//! (type, mode, owner, times, size, contents: two copies of one state count
//! once), and its source: reached from the header in use (the live tree),
//! from an older header copy, or from nothing any more.
//!
//! # Reconstruction ([`rebuild`])
//!
//! A version's path comes from its own name and `iparent` (HAMMER2 keeps
//! both in the inode) and its parent's newest version, up to the PFS root;
//! its contents from its blockset, every block verified by its check code.
//! A block that fails is a lost range; an indirect block that fails is
//! read slot by slot, and what its intact slots name (and verifies) is
//! kept. The result says whether the file is whole, and which byte ranges
//! are lost.
//!
//! # Memory
//!
//! [`ScanOptions::memory`] bounds the tables, which spill to unlinked
//! files in [`ScanOptions::tmpdir`] (never on the scanned volumes):
//!
//! * during the scan, what a slot yields is a fixed-size record (48 bytes
//!   per INODE blockref, 40 per DIRENT with its name in a byte arena, 8 per
//!   DATA blockref: only its slot, the blockref is read again when placed);
//!   past a quarter of the budget these tapes go to disk;
//! * the join streams them back into external sorters (sorted runs past
//!   a quarter of the budget for versions and entries, an eighth for data
//!   blocks, merged into one file), which the queries then search by
//!   binary search in memory or in the file.
//!
//! What stays in memory whatever the budget is what the join looks up at
//! random: the raw inodes and the indirect-block edges (16 bytes each),
//! which PFS each inode copy belongs to (16 bytes), and the offsets of the
//! inode copies each header copy reaches (8 bytes): about 60 bytes per
//! inode. On the million-file image that is about 80 MiB: with the
//! default 256 MiB budget the scan's peak (anonymous memory) is about
//! 230 MiB, with 64 MiB about 142 MiB (docs/BENCHMARKS.md).

mod owners;
mod rebuild;
mod scan;
mod spill;

pub use rebuild::{read_version, Completeness, Namer, Naming};

use crate::error::Result;
use crate::format::{Blockref, BlockrefType, InodeData, BLOCKREF_BYTES, INODE_BYTES};
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Reach, Step, Visitor};
use crate::volume::Hammer2;
use owners::Containers;
use rayon::prelude::*;
use scan::{Finds, Role};
use std::collections::HashMap;

/// Scan options.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Memory for data-block records (bytes, default 256 MiB); past it
    /// they spill to `tmpdir` (see the module documentation).
    pub memory: usize,
    /// Where spilled records go (default: the system's temporary directory).
    pub tmpdir: Option<std::path::PathBuf>,
    /// Bytes per read (rounded to 64 KiB; at least 64 KiB).
    pub chunk: usize,
    /// Keep what no check code vouches for (blockrefs with check none or
    /// disabled), marked unverified.
    pub relaxed: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { memory: 256 << 20, tmpdir: None, chunk: 4 << 20, relaxed: false }
    }
}

/// Scan progress: bytes scanned so far, bytes to scan.
pub type Progress<'p> = &'p (dyn Fn(u64, u64) + Sync);

/// Index of a PFS in [`Index::pfs`].
pub type PfsId = u32;

/// A PFS found on the media (live or not).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PfsInfo {
    /// Its label (the PFS root's name); `<orphan>` for what no PFS root reaches.
    pub label: String,
    pub clid: String,
    /// Its root is reached from the header in use.
    pub live: bool,
}

/// Where a version was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Reached from the volume header in use.
    Live,
    /// Reached from an older valid header copy (not from the one in use).
    HeaderCopy { copy: usize, mirror_tid: u64 },
    /// Reached from no header copy: removed, replaced, or cut off by damage.
    Unreached,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Live => f.write_str("live"),
            Source::HeaderCopy { copy, mirror_tid } => write!(f, "header copy {copy} (tid {mirror_tid:#x})"),
            Source::Unreached => f.write_str("unreached"),
        }
    }
}

/// One version of an inode.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    pub pfs: PfsId,
    pub inum: u64,
    /// Logical offset of its 1 KiB.
    pub data_off: u64,
    /// `modify_tid` of the blockref naming it (the highest, when several do).
    pub modify_tid: u64,
    /// `mirror_tid` of the blockref naming it (the highest, when several
    /// do): the transaction that wrote this copy. Versions are ordered by
    /// it, then by `modify_tid` (DragonFly's makefs counts `modify_tid` on
    /// its own scale, above the volume's `mirror_tid`: the two do not
    /// compare across writers).
    pub mirror_tid: u64,
    /// Identity of its state: equal for copies that restore to the same object.
    pub ident: u64,
    /// Some blockref naming it carries a check code that holds.
    pub verified: bool,
    pub source: Source,
}

impl Version {
    /// Sort key: oldest first.
    pub fn order(&self) -> (u64, u64, u64) {
        (self.mirror_tid, self.modify_tid, self.data_off)
    }
}

/// A directory entry naming an inode.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pfs: PfsId,
    /// The directory's inode number.
    pub dir: u64,
    pub inum: u64,
    pub name: Box<[u8]>,
    /// Object type code as the entry stores it.
    pub kind: u8,
    pub modify_tid: u64,
    /// The transaction that wrote the entry.
    pub mirror_tid: u64,
}

/// A data block found in an inode's tree (some version of it).
#[derive(Debug, Clone, Copy)]
pub struct DataBlock {
    pub pfs: PfsId,
    pub inum: u64,
    /// The blockref as found (its check code is verified when read).
    pub bref: Blockref,
}

/// A [`Version`] as the index keeps it (48 bytes).
#[derive(
    Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
)]
#[repr(C)]
struct VRec {
    inum: u64,
    data_off: u64,
    modify_tid: u64,
    mirror_tid: u64,
    ident: u64,
    pfs: u32,
    verified: u8,
    /// 0: live; 255: unreached; else 1 + the index of the header copy in `Index::copies`.
    source: u8,
    _pad: [u8; 2],
}

/// An [`Entry`] as the index keeps it (48 bytes, the name in the arena).
#[derive(
    Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
)]
#[repr(C)]
struct ERec {
    inum: u64,
    dir: u64,
    modify_tid: u64,
    mirror_tid: u64,
    /// Place in the names arena and type code ([`scan::name_ref`]).
    name: u64,
    pfs: u32,
    /// Hash of the name: one entry per (directory, name) and inode is kept.
    hash: u32,
}

/// A [`DataBlock`] as the index keeps it (40 bytes; the blockref is read
/// again from its slot on the media).
#[derive(
    Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
)]
#[repr(C)]
struct DRec {
    inum: u64,
    key: u64,
    data_off: u64,
    /// The slot holding the blockref.
    at: u64,
    pfs: u32,
    _pad: u32,
}

/// Counts of a scan.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScanStats {
    /// Bytes read (holes excluded).
    pub bytes: u64,
    /// Slots that decoded as plausible blockrefs.
    pub candidates: u64,
    pub raw_inodes: u64,
    pub versions: u64,
    /// Verified INODE blockrefs found (several may name one copy).
    pub inode_refs: u64,
    pub entries: u64,
    pub data_blocks: u64,
    /// The tables that went past the memory budget and were spilled.
    pub spilled: Vec<String>,
}

/// What the media holds, by PFS and inode number.
pub struct Index {
    pfs: Vec<PfsInfo>,
    /// The older header copies versions were reached from: (copy, mirror_tid).
    copies: Vec<(usize, u64)>,
    /// Sorted by (pfs, inum), then [`Version::order`].
    versions: spill::Sorted<VRec>,
    /// Sorted by (pfs, inum) of the inode named, then directory and name hash.
    entries: spill::Sorted<ERec>,
    names: spill::Names,
    /// Sorted by (pfs, inum, key, media offset).
    data: spill::Sorted<DRec>,
    /// Raw inodes no verified blockref names (for `relaxed`): offsets.
    unverified: Vec<u64>,
    pub stats: ScanStats,
}

fn vkey(v: &VRec) -> (PfsId, u64, u64, u64, u64) {
    (v.pfs, v.inum, v.mirror_tid, v.modify_tid, v.data_off)
}

impl Index {
    /// Every PFS found; index with a [`PfsId`].
    pub fn pfs(&self) -> &[PfsInfo] {
        &self.pfs
    }

    /// The PFS labelled `label` (several when a label was reused).
    pub fn pfs_named(&self, label: &str) -> Vec<PfsId> {
        (0..self.pfs.len() as PfsId).filter(|&i| self.pfs[i as usize].label == label).collect()
    }

    fn version(&self, r: &VRec) -> Version {
        let source = match r.source {
            0 => Source::Live,
            255 => Source::Unreached,
            k => {
                let (copy, mirror_tid) = self.copies[k as usize - 1];
                Source::HeaderCopy { copy, mirror_tid }
            }
        };
        Version {
            pfs: r.pfs,
            inum: r.inum,
            data_off: r.data_off,
            modify_tid: r.modify_tid,
            mirror_tid: r.mirror_tid,
            ident: r.ident,
            verified: r.verified != 0,
            source,
        }
    }

    /// Every version of an inode, oldest first ([`Version::order`]).
    pub fn versions(&self, pfs: PfsId, inum: u64) -> Result<Vec<Version>> {
        Ok(self.versions.range((pfs, inum), |v| (v.pfs, v.inum))?.iter().map(|r| self.version(r)).collect())
    }

    /// The entries naming an inode, from every version of its directories
    /// (each directory and name once).
    pub fn entries_naming(&self, pfs: PfsId, inum: u64) -> Result<Vec<Entry>> {
        self.entries_near(pfs, inum, &mut 0)
    }

    /// [`Index::entries_naming`], searched from `hint` (where the last
    /// search ended: inodes asked in order cost a step or two each).
    pub fn entries_near(&self, pfs: PfsId, inum: u64, hint: &mut usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut name = Vec::new();
        for e in self.entries.range_near((pfs, inum), |e| (e.pfs, e.inum), hint)? {
            let (off, len, kind) = scan::name_parts(e.name);
            name.clear();
            self.names.read(off, len, &mut name)?;
            out.push(Entry {
                pfs: e.pfs,
                dir: e.dir,
                inum: e.inum,
                name: name.as_slice().into(),
                kind,
                modify_tid: e.modify_tid,
                mirror_tid: e.mirror_tid,
            });
        }
        Ok(out)
    }

    /// Data blocks found in the trees of an inode's versions, by key, each
    /// blockref read again from the slot that held it (`fs`: the volumes
    /// scanned).
    pub fn data_blocks(&self, fs: &Hammer2, pfs: PfsId, inum: u64) -> Result<Vec<DataBlock>> {
        let mut out = Vec::new();
        for d in self.data.range((pfs, inum), |d| (d.pfs, d.inum))? {
            let mut bref = Blockref::zeroed();
            fs.device.read_into(d.at, zerocopy::IntoBytes::as_mut_bytes(&mut bref))?;
            out.push(DataBlock { pfs, inum, bref });
        }
        Ok(out)
    }

    /// Whether some table went past the memory budget and was spilled to
    /// the temporary directory (their names are in [`ScanStats::spilled`]).
    pub fn spilled(&self) -> bool {
        !self.stats.spilled.is_empty()
    }

    /// The inodes of `pfs` with numbers in `[lo, hi]`, with their versions.
    pub fn inodes_in(&self, pfs: PfsId, lo: u64, hi: u64) -> Result<Vec<(u64, Vec<Version>)>> {
        let mut out: Vec<(u64, Vec<Version>)> = Vec::new();
        self.for_each_inode(|(p, inum), vs| {
            if p == pfs && (lo..=hi).contains(&inum) {
                out.push((inum, vs.to_vec()));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every inode found, (PFS, inum) with its versions, in that order, to `f`.
    pub fn for_each_inode(&self, mut f: impl FnMut((PfsId, u64), &[Version]) -> Result<()>) -> Result<()> {
        let mut group: Vec<Version> = Vec::new();
        self.versions.for_each(|r| {
            let v = self.version(r);
            if group.last().is_some_and(|g| (g.pfs, g.inum) != (v.pfs, v.inum)) {
                f((group[0].pfs, group[0].inum), &group)?;
                group.clear();
            }
            group.push(v);
            Ok(())
        })?;
        if !group.is_empty() {
            f((group[0].pfs, group[0].inum), &group)?;
        }
        Ok(())
    }

    /// Offsets of raw inodes no verified blockref names.
    pub fn unverified(&self) -> &[u64] {
        &self.unverified
    }

    /// The inode of a version, read from the media.
    pub fn inode(fs: &Hammer2, v: &Version) -> Result<Box<InodeData>> {
        Self::inode_at(fs, v.data_off)
    }

    /// The inode at a logical offset, read from the media.
    pub fn inode_at(fs: &Hammer2, off: u64) -> Result<Box<InodeData>> {
        let mut ip = Box::new(InodeData::new_zeroed());
        // Through the mapping: listing reads one inode per version.
        zerocopy::IntoBytes::as_mut_bytes(ip.as_mut()).copy_from_slice(fs.device.read(off, INODE_BYTES)?);
        Ok(ip)
    }
}

/// What the scan gathered, before the join: the containers (raw inodes
/// and indirect-block edges, looked up at random) in memory, the rest on
/// tapes that spill past the budget.
struct Store {
    f: Finds,
    inodes: spill::Tape<scan::InodeRef>,
    dirents: spill::Tape<scan::DirentRef>,
    names: spill::Names,
    data: spill::Tape<u64>,
}

impl Store {
    fn new(dir: &std::path::Path) -> Self {
        Store {
            f: Finds::default(),
            inodes: spill::Tape::new(dir.into()),
            dirents: spill::Tape::new(dir.into()),
            names: spill::Names::new(dir.into()),
            data: spill::Tape::new(dir.into()),
        }
    }

    fn absorb(&mut self, mut o: Finds) {
        let base = self.names.end();
        self.inodes.mem.append(&mut o.inodes);
        self.dirents.mem.extend(o.dirents.iter().map(|d| {
            let (off, len, kind) = scan::name_parts(d.name);
            scan::DirentRef { name: scan::name_ref(off + base, len, kind), ..*d }
        }));
        o.dirents = Vec::new();
        self.names.mem.append(&mut o.names);
        self.data.mem.append(&mut o.data);
        self.f.append(o);
    }

    fn tape_bytes(&self) -> usize {
        self.inodes.mem_bytes() + self.dirents.mem_bytes() + self.names.mem_bytes() + self.data.mem_bytes()
    }

    fn spill(&mut self) -> Result<()> {
        self.inodes.spill()?;
        self.dirents.spill()?;
        self.names.spill()?;
        self.data.spill()
    }
}

/// Phase timings on stderr when `HAMMER2_SALVAGE_TRACE` is set: wall
/// and CPU (user + system, all threads) of each phase, for profiling.
struct Trace {
    on: bool,
    wall: std::time::Instant,
    cpu: f64,
}

impl Trace {
    fn new() -> Self {
        Trace {
            on: std::env::var_os("HAMMER2_SALVAGE_TRACE").is_some(),
            wall: std::time::Instant::now(),
            cpu: cpu(),
        }
    }

    fn phase(&mut self, what: &str) {
        if !self.on {
            return;
        }
        let now = cpu();
        eprintln!(
            "salvage: {what}: {:.3} s wall, {:.3} s CPU",
            self.wall.elapsed().as_secs_f64(),
            now - self.cpu
        );
        self.wall = std::time::Instant::now();
        self.cpu = now;
    }
}

/// User + system time of the process so far, in seconds.
fn cpu() -> f64 {
    // SAFETY: getrusage only fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The page-aligned span of a slice of the mapping.
fn pages(s: &[u8]) -> (*mut libc::c_void, usize) {
    let start = s.as_ptr() as usize & !4095;
    let end = (s.as_ptr() as usize + s.len()).div_ceil(4096) * 4096;
    (start as *mut libc::c_void, end - start)
}

/// A chunk of the media through the mapping, its page tables filled in one
/// call (`MADV_POPULATE_READ`, after `MADV_WILLNEED` starts the reads of
/// what is not cached): no copy and no fault per page, where a pread would
/// copy every byte. A read error of the media makes that call fail (rather
/// than raise SIGBUS when the bytes are touched): None then, and the chunk
/// is read with pread, which reports it.
fn mapped(fs: &Hammer2, loff: u64, len: usize) -> Option<&[u8]> {
    let s = fs.device.read(loff, len).ok()?;
    let (p, n) = pages(s);
    // SAFETY: the range lies in a mapping of the volume that lives as long
    // as `fs`; both advices only read pages into the page cache and map
    // them, changing no byte.
    let ok = unsafe {
        libc::madvise(p, n, libc::MADV_WILLNEED) == 0 && libc::madvise(p, n, libc::MADV_POPULATE_READ) == 0
    };
    ok.then_some(s)
}

/// Drops the page-table entries of a chunk scanned through the mapping
/// (its pages stay in the page cache): the process's resident set does not
/// grow with the media.
fn release(s: &[u8]) {
    let (p, n) = pages(s);
    // SAFETY: the mapping is shared and never stored into (writes use
    // pwrite), so MADV_DONTNEED only drops page-table entries: any later
    // access reads the same bytes from the page cache again.
    unsafe { libc::madvise(p, n, libc::MADV_DONTNEED) };
}

/// Scans every volume of `fs` and indexes what it finds. `progress` is
/// called from the scanning threads now and then; Ctrl-C
/// ([`crate::interrupt`]) stops the scan with [`crate::Error::Interrupted`].
pub fn scan(fs: &Hammer2, opts: &ScanOptions, progress: Option<Progress<'_>>) -> Result<Index> {
    let mut trace = Trace::new();
    let chunk = (opts.chunk.max(1 << 16) >> 16) << 16;
    // The reads: each volume's data regions within its extent, cut in chunks.
    let mut reads = Vec::new();
    for i in 0..fs.device.len() {
        let Some(ext) = fs.device.extent(i) else { continue };
        let vol = fs.device.volume(i);
        let end = ext.size.min(vol.size());
        for (s, e) in vol.data_regions() {
            let (s, e) = (s & !(INODE_BYTES as u64 - 1), e.min(end));
            let mut p = s;
            while p < e {
                let n = (e - p).min(chunk as u64);
                reads.push((ext.loff + p, n as usize));
                p += n;
            }
        }
    }
    let total: u64 = reads.iter().map(|r| r.1 as u64).sum();
    let done = std::sync::atomic::AtomicU64::new(0);
    let keep = opts.relaxed;
    let tmpdir = opts.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    let mut store = Store::new(&tmpdir);
    // Read buffers, reused from chunk to chunk (a fresh one costs its
    // pages' faults and zeroing each time).
    let pool: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    let take = || pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| vec![0u8; chunk]);
    let give = |b: Vec<u8>| pool.lock().unwrap_or_else(|e| e.into_inner()).push(b);
    let scan_one = |loff: u64, len: usize| -> Result<Finds> {
        crate::interrupt::check()?;
        let mut f = Finds::default();
        if let Some(bytes) = mapped(fs, loff, len) {
            scan::scan_chunk(fs, loff, bytes, keep, &mut f);
            release(bytes);
        } else {
            let mut buf = take();
            let read = fs.device.read_into(loff, &mut buf[..len]);
            if read.is_ok() {
                scan::scan_chunk(fs, loff, &buf[..len], keep, &mut f);
            }
            give(buf);
            read?;
        }
        let d = done.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed) + len as u64;
        if let Some(p) = progress {
            p(d, total);
        }
        Ok(f)
    };
    // The walks of the header copies' trees (which copies reach which
    // inodes) need nothing from the scan: they run beside it.
    let reach = std::thread::scope(|sc| -> Result<Reached> {
        let walk = sc.spawn(|| sources(fs));
        // Batches of chunks on every core; between batches, the tapes
        // past a quarter of the budget are set aside on disk.
        for batch in reads.chunks(16) {
            let found =
                batch.par_iter().map(|&(loff, len)| scan_one(loff, len)).collect::<Result<Vec<Finds>>>()?;
            for f in found {
                store.absorb(f);
            }
            if store.tape_bytes() > opts.memory / 4 {
                store.spill()?;
            }
        }
        match walk.join() {
            Ok(r) => Ok(r),
            Err(e) => std::panic::resume_unwind(e),
        }
    })?;
    drop(pool);
    crate::interrupt::check()?;
    trace.phase("scan");
    // The join needs its room: what the tapes hold past an eighth goes.
    if store.tape_bytes() > opts.memory / 8 {
        store.spill()?;
    }
    // The scanning threads' allocator arenas hold freed batches: give
    // them back before the join fills the budget.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let mut index = join(fs, store, reach, opts.memory, &tmpdir, &mut trace)?;
    index.stats.bytes = total;
    Ok(index)
}

/// Offsets of the inodes reached from a blockset (a header copy's
/// super-root) and not under a node in `seen` (walked from another copy
/// already: the same block is the same subtree), DATA blocks left unread,
/// sorted. Every inode and indirect block met is added to `seen` (sorted).
fn reached(fs: &Hammer2, set: &[Blockref], seen: &mut Vec<u64>) -> Vec<u64> {
    struct Collect<'s> {
        inodes: Vec<u64>,
        met: Vec<u64>,
        seen: &'s [u64],
    }
    impl<'a> Visitor<'a> for Collect<'_> {
        type Ctx = ();
        type Out = Nothing;
        fn skip(&mut self, bref: &Blockref, _: &()) -> Option<Nothing> {
            let node = matches!(bref.kind(), BlockrefType::Inode | BlockrefType::Indirect);
            (!node || self.seen.binary_search(&bref.offset()).is_ok()).then_some(Nothing)
        }
        fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
            let ok = node.media().is_some() && !matches!(node.reach, Reach::Shared { .. });
            if !ok {
                return Step::Leaf(Nothing);
            }
            self.met.push(node.bref.offset());
            if node.bref.kind() == BlockrefType::Inode {
                self.inodes.push(node.bref.offset());
            }
            Step::Descend(())
        }
    }
    let mut c = Collect { inodes: Vec::new(), met: Vec::new(), seen };
    let opts = Options { data: DataBlocks::Skip, look_ahead: false, ..Default::default() };
    // The engine borrows the tables for its lifetime: a copy of the set lives long enough.
    let set: Vec<Blockref> = set.to_vec();
    Engine::new(fs, opts).run(&set, 0, &(), &mut c);
    let Collect { mut inodes, met, .. } = c;
    seen.extend(met);
    seen.sort_unstable();
    seen.dedup();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

/// Which inode copies each valid header copy reaches: (copy, its
/// `mirror_tid`, the offsets, sorted), the copy in use first.
type Reached = Vec<(usize, u64, Vec<u64>)>;

/// Walks the trees of every valid header copy: the copy in use first,
/// then the others newest first. A node one walk met is not walked again,
/// so each inode goes to the newest copy reaching it.
fn sources(fs: &Hammer2) -> Reached {
    let root = fs.root_position();
    let mut order: Vec<(usize, u64, &[Blockref])> = Vec::new();
    for hc in &fs.headers[root].copies {
        if let (true, Some(d)) = (hc.is_valid(), &hc.data) {
            order.push((hc.index, d.mirror_tid.get(), &d.sroot_blockset[..]));
        }
    }
    order.sort_by_key(|&(i, tid, _)| (i != fs.copy, std::cmp::Reverse(tid)));
    let mut seen = Vec::new();
    let mut reach = Vec::new();
    for (i, tid, set) in order {
        reach.push((i, tid, reached(fs, set, &mut seen)));
    }
    reach
}

/// One core's share of a batch of INODE blockrefs in the join: each
/// record's source, and (record, `pfs_clid`) for each PFS it belongs to.
type InodeShare = (Vec<u8>, Vec<(u32, [u8; 16])>);

/// Records handed to one core at a time in the join.
const PAR: usize = 2048;

/// Joins the scan's finds into the index, streaming the tapes into
/// sorters bounded by the budget. The lookups run on every core, a batch
/// of records at a time; what they yield is pushed in the order found.
fn join(
    fs: &Hammer2,
    store: Store,
    reach: Reached,
    memory: usize,
    tmpdir: &std::path::Path,
    trace: &mut Trace,
) -> Result<Index> {
    let Store { mut f, inodes, dirents, names, data } = store;
    let mut spilled: Vec<String> = Vec::new();
    for (name, s) in
        [("inode refs", inodes.spilled()), ("dirents", dirents.spilled()), ("data refs", data.spilled())]
    {
        if s {
            spilled.push(name.to_string());
        }
    }
    f.root_clids.sort_by_key(|c| c.0);
    f.root_clids.dedup_by_key(|c| c.0);
    let root_clids = std::mem::take(&mut f.root_clids);
    let root_clid = |off: u64| -> [u8; 16] {
        root_clids.binary_search_by_key(&off, |c| c.0).map_or([0; 16], |i| root_clids[i].1)
    };
    let c = Containers::new(
        std::mem::take(&mut f.raws),
        std::mem::take(&mut f.clids),
        std::mem::take(&mut f.nodes),
    );
    trace.phase("containers");

    let mut pfs: Vec<PfsInfo> = Vec::new();
    let mut by_clid: HashMap<[u8; 16], PfsId> = HashMap::new();
    let mut root_label: HashMap<[u8; 16], (u64, String)> = HashMap::new();
    fn intern(by_clid: &mut HashMap<[u8; 16], PfsId>, clid: [u8; 16], pfs: &mut Vec<PfsInfo>) -> PfsId {
        *by_clid.entry(clid).or_insert_with(|| {
            let label = if clid == [0; 16] { "<orphan>".to_string() } else { String::new() };
            pfs.push(PfsInfo { label, clid: crate::format::uuid_from_disk(&clid).to_string(), live: false });
            (pfs.len() - 1) as PfsId
        })
    }

    // The older copies, newest first, numbered from 1 in the records.
    let copies: Vec<(usize, u64)> = reach.iter().filter(|r| r.0 != fs.copy).map(|r| (r.0, r.1)).collect();
    let source_of = |off: u64| -> u8 {
        for (copy, _, set) in &reach {
            if set.binary_search(&off).is_ok() {
                if *copy == fs.copy {
                    return 0;
                }
                let k = copies.iter().position(|c| c.0 == *copy).unwrap_or(253);
                return (k + 1).min(254) as u8;
            }
        }
        255
    };

    // Every (PFS, inum, copy) found, one record each: the first found,
    // its flags and transaction ids merged with the others.
    let mut vsort = spill::Sorter::new(
        tmpdir.into(),
        memory / 4,
        |v: &VRec| (v.pfs, v.inum, v.data_off),
        |kept, later| {
            kept.verified |= later.verified;
            kept.modify_tid = kept.modify_tid.max(later.modify_tid);
            kept.mirror_tid = kept.mirror_tid.max(later.mirror_tid);
            true
        },
    );
    // Which PFS each inode copy was found in: (copy, PFS).
    let mut homes: Vec<(u64, PfsId)> = Vec::with_capacity(inodes.len() as usize);
    // Copies some blockref names (verified or, with `relaxed`, not): the
    // offset, bit 0 set when verified.
    let mut referred: Vec<u64> = Vec::with_capacity(inodes.len() as usize);
    let mut last: Option<([u8; 16], PfsId)> = None;
    inodes.for_each_batch(|batch| {
        // On every core: each record's source, and the PFS ids (by
        // `pfs_clid`) it belongs to, as (record, clid) in record order.
        let parts: Vec<InodeShare> = batch
            .par_chunks(PAR)
            .enumerate()
            .map_init(owners::Seeker::default, |s, (k, recs)| {
                let mut sources = Vec::with_capacity(recs.len());
                let mut out = Vec::new();
                let mut at_home: Vec<[u8; 16]> = Vec::new();
                for (i, r) in recs.iter().enumerate() {
                    at_home.clear();
                    let clid = if r.pfs_root() { root_clid(r.data_off()) } else { [0; 16] };
                    for &o in c.owners(r.at, s) {
                        let o = &c.raws[o as usize];
                        match o.role() {
                            Role::SuperRoot if r.pfs_root() => at_home.push(clid),
                            Role::PfsRoot if !r.pfs_root() => at_home.push(c.clid_of(o.off())),
                            _ => {}
                        }
                    }
                    if at_home.is_empty() {
                        at_home.push(clid);
                    }
                    at_home.sort_unstable();
                    at_home.dedup();
                    let i = (k * PAR + i) as u32;
                    out.extend(at_home.iter().map(|&h| (i, h)));
                    sources.push(source_of(r.data_off()));
                }
                (sources, out)
            })
            .collect();
        for (k, (sources, out)) in parts.iter().enumerate() {
            let mut at = 0;
            for (i, (r, &source)) in batch[k * PAR..].iter().zip(sources).enumerate() {
                if r.pfs_root() {
                    let clid = root_clid(r.data_off());
                    let e = root_label.entry(clid).or_insert((0, String::new()));
                    if r.mirror_tid >= e.0 {
                        if let Ok(ip) = Index::inode_at(fs, r.data_off()) {
                            *e = (r.mirror_tid, String::from_utf8_lossy(ip.name()).into_owned());
                        }
                    }
                }
                referred.push(r.data_off() | r.verified() as u64);
                let want = (k * PAR + i) as u32;
                while at < out.len() && out[at].0 == want {
                    let clid = out[at].1;
                    at += 1;
                    let id = match last {
                        Some((l, id)) if l == clid => id,
                        _ => intern(&mut by_clid, clid, &mut pfs),
                    };
                    last = Some((clid, id));
                    vsort.push(VRec {
                        inum: r.inum,
                        data_off: r.data_off(),
                        modify_tid: r.modify_tid,
                        mirror_tid: r.mirror_tid,
                        ident: r.ident,
                        pfs: id,
                        verified: r.verified() as u8,
                        source,
                        _pad: [0; 2],
                    })?;
                    homes.push((r.data_off(), id));
                }
            }
        }
        Ok(())
    })?;
    let inode_refs = inodes.len();
    drop(inodes);
    drop(reach);
    // Raw inodes no verified blockref names.
    referred.par_sort_unstable();
    referred.dedup();
    // Verified: the offset with bit 0 set is there (both lists sorted:
    // the cursor only moves forward).
    let mut hint = 0;
    let unverified: Vec<u64> = c
        .raws
        .iter()
        .filter(|r| {
            hint = owners::seek(&referred, hint, r.off() | 1, |&x| x);
            referred.get(hint) != Some(&(r.off() | 1))
        })
        .map(|r| r.off())
        .collect();
    homes.par_sort_unstable();
    homes.dedup();
    homes.shrink_to_fit();
    trace.phase("inode refs");

    // The (PFS, inum) an owner raw inode stands for, into `out`.
    let homes_of = |o: &scan::RawInode, out: &mut Vec<(PfsId, u64)>| {
        let lo = homes.partition_point(|h| h.0 < o.off());
        let n = out.len();
        out.extend(homes[lo..].iter().take_while(|h| h.0 == o.off()).map(|h| (h.1, o.inum)));
        if out.len() == n && o.role() == Role::PfsRoot {
            out.extend(by_clid.get(&c.clid_of(o.off())).map(|&id| (id, o.inum)));
        }
    };
    // The homes of a slot's owners, worked out again only when the owners change.
    struct Homes {
        seeker: owners::Seeker,
        generation: u64,
        list: Vec<(PfsId, u64)>,
    }
    let new_homes = || Homes { seeker: owners::Seeker::default(), generation: u64::MAX, list: Vec::new() };
    let homes_at = |h: &mut Homes, at: u64| {
        c.owners(at, &mut h.seeker);
        if h.seeker.generation != h.generation {
            h.list.clear();
            for &o in h.seeker.current() {
                homes_of(&c.raws[o as usize], &mut h.list);
            }
            h.generation = h.seeker.generation;
        }
    };

    // Entries sorted by what they name, each (directory, name) once per
    // inode (the first found).
    let mut esort =
        spill::Sorter::new(tmpdir.into(), memory / 4, |e: &ERec| (e.pfs, e.inum, e.dir, e.hash), |_, _| true);
    let mut batch_names = Vec::new();
    dirents.for_each_batch(|batch| {
        // The batch's names, read at once (they were stored in this order).
        let lo = batch.iter().map(|d| scan::name_parts(d.name).0).min().unwrap_or(0);
        let hi =
            batch.iter().map(|d| scan::name_parts(d.name)).map(|(o, l, _)| o + l as u64).max().unwrap_or(0);
        batch_names.clear();
        names.read(lo, (hi.max(lo) - lo) as usize, &mut batch_names)?;
        let bn = &batch_names;
        let parts: Vec<Vec<ERec>> = batch
            .par_chunks(PAR)
            .map_init(new_homes, |h, recs| {
                let mut out = Vec::with_capacity(recs.len());
                for d in recs {
                    let (off, len, _) = scan::name_parts(d.name);
                    let s = (off - lo) as usize;
                    let hash = xxhash_rust::xxh64::xxh64(&bn[s..s + len], 0) as u32;
                    homes_at(h, d.at);
                    out.extend(h.list.iter().map(|&(id, dir)| ERec {
                        inum: d.inum,
                        dir,
                        modify_tid: d.modify_tid,
                        mirror_tid: d.mirror_tid,
                        name: d.name,
                        pfs: id,
                        hash,
                    }));
                }
                out
            })
            .collect();
        parts.into_iter().flatten().try_for_each(|e| esort.push(e))
    })?;
    drop(dirents);
    drop(batch_names);
    let entries = esort.finish()?;
    if entries.spilled() {
        spilled.push("entries".into());
    }
    if names.spilled() {
        spilled.push("names".into());
    }
    trace.phase("dirents");

    let mut dsort = spill::Sorter::new(
        tmpdir.into(),
        memory / 8,
        |d: &DRec| (d.pfs, d.inum, d.key, d.data_off),
        |_, _| true,
    );
    data.for_each_batch(|batch| {
        let parts: Vec<Result<Vec<DRec>>> = batch
            .par_chunks(PAR)
            .map_init(new_homes, |h, ats| {
                let mut out = Vec::with_capacity(ats.len());
                for &at in ats {
                    let b = &Blockref::table(fs.device.read(at, BLOCKREF_BYTES)?)[0];
                    homes_at(h, at);
                    out.extend(h.list.iter().map(|&(id, inum)| DRec {
                        inum,
                        key: b.key.get(),
                        data_off: b.data_off.get(),
                        at,
                        pfs: id,
                        _pad: 0,
                    }));
                }
                Ok(out)
            })
            .collect();
        for p in parts {
            p?.into_iter().try_for_each(|d| dsort.push(d))?;
        }
        Ok(())
    })?;
    drop(data);
    drop(homes);
    let data = dsort.finish()?;
    if data.spilled() {
        spilled.push("data blocks".into());
    }
    trace.phase("data refs");

    // Raw inodes no blockref names at all: versions vouched for by
    // nothing (never verified), in the PFS whose entries name them in
    // their `iparent` directory when exactly one does, else `<orphan>`.
    // (`referred` holds each offset, bit 0 set when verified: the first
    // at or past `off` is `off` or `off | 1` when either is there.)
    let mut hint = 0;
    let mut referred_at = |off: u64| {
        hint = owners::seek(&referred, hint, off, |&x| x);
        referred.get(hint).is_some_and(|&r| r | 1 == off | 1)
    };
    let mut pending: Vec<(Option<PfsId>, VRec)> = Vec::new();
    for r in c.raws.iter() {
        if r.role() != Role::Plain || referred_at(r.off()) {
            continue;
        }
        let Ok(ip) = Index::inode_at(fs, r.off()) else { continue };
        let Some(ip) = scan::plausible_inode(zerocopy::IntoBytes::as_bytes(ip.as_ref())) else { continue };
        let iparent = ip.meta.iparent.get();
        let mut homes: Vec<PfsId> = Vec::new();
        for id in 0..pfs.len() as PfsId {
            if entries.range((id, r.inum), |e| (e.pfs, e.inum))?.iter().any(|e| e.dir == iparent) {
                homes.push(id);
            }
        }
        let home = if homes.len() == 1 { Some(homes[0]) } else { None };
        pending.push((
            home,
            VRec {
                inum: r.inum,
                data_off: r.off(),
                modify_tid: 0,
                mirror_tid: 0,
                ident: scan::ident(ip),
                pfs: 0,
                verified: 0,
                source: 255,
                _pad: [0; 2],
            },
        ));
    }
    drop(referred);
    let raw_inodes = c.raws.len() as u64;
    drop(c);
    for (home, mut v) in pending {
        v.pfs = match home {
            Some(id) => id,
            None => intern(&mut by_clid, [0; 16], &mut pfs),
        };
        vsort.push(v)?;
    }
    trace.phase("unreferred raws");

    // Versions by (PFS, inum), then oldest first: sorted in place when
    // in memory, else regrouped from the file.
    let by_copy = vsort.finish()?;
    let versions_n = by_copy.len();
    let versions = match by_copy {
        spill::Sorted::Mem(mut v) => {
            v.par_sort_by_key(vkey);
            spill::Sorted::Mem(v)
        }
        spill::Sorted::File(t) => {
            let mut vtape = spill::Tape::new(tmpdir.into());
            let mut group: Vec<VRec> = Vec::new();
            let flush = |group: &mut Vec<VRec>, vtape: &mut spill::Tape<VRec>| -> Result<()> {
                group.sort_by_key(vkey);
                vtape.mem.append(group);
                if vtape.mem.len() >= 1 << 14 {
                    vtape.spill()?;
                }
                Ok(())
            };
            t.for_each(|v| {
                if group.last().is_some_and(|g| (g.pfs, g.inum) != (v.pfs, v.inum)) {
                    flush(&mut group, &mut vtape)?;
                }
                group.push(*v);
                Ok(())
            })?;
            flush(&mut group, &mut vtape)?;
            vtape.spill()?;
            spilled.push("versions".into());
            spill::Sorted::File(vtape)
        }
    };
    for (clid, (_, label)) in root_label {
        if let Some(&id) = by_clid.get(&clid) {
            pfs[id as usize].label = label;
        }
    }
    versions.for_each(|v| {
        if v.source == 0 {
            pfs[v.pfs as usize].live = true;
        }
        Ok(())
    })?;

    trace.phase("versions");

    let stats = ScanStats {
        bytes: 0,
        candidates: f.candidates,
        raw_inodes,
        inode_refs,
        versions: versions_n,
        entries: entries.len(),
        data_blocks: data.len(),
        spilled,
    };
    Ok(Index { pfs, copies, versions, entries, names, data, unverified, stats })
}
