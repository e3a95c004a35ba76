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
//! Every volume is read once, front to back, in reads of
//! [`ScanOptions::chunk`] bytes (4 MiB by default); the holes of a sparse
//! image are skipped ([`crate::device::Backend::data_regions`]: SEEK_DATA /
//! SEEK_HOLE); the chunks are handed to every core (rayon). In a chunk:
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
//! bytes are then vouched for by nothing: such raw inodes are listed
//! ([`Index::unverified`], for fsck's rebuilds) but not recovered. With
//! `relaxed`, blockrefs that carry no check code (method none or
//! disabled) are taken too, their targets marked unverified, as
//! DragonFly's `recover-relaxed` does.
//!
//! # The index ([`Index`])
//!
//! Once the scan is over the finds are joined. Each slot lies in some
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
//! Records are compact (about 40 bytes per inode version and per raw
//! inode, 140 per data block). The data-block records, the bulk on media
//! holding large files, are bounded by [`ScanOptions::memory`]: past a
//! quarter of it the scan sets them aside in an unlinked temporary file,
//! and the index sorts them in runs of half of it, merged into one sorted
//! file that [`Index::data_blocks`] searches ([`ScanOptions::tmpdir`];
//! never on the scanned volumes). The per-inode records stay in memory.
//!
//! # Not yet
//!
//! Raw inodes no verified blockref names are listed, not recovered (their
//! PFS cannot be told). Hard links come back as copies under each name.

mod rebuild;
mod scan;
mod spill;

pub use rebuild::{read_version, Completeness, Namer, Naming};

use crate::error::Result;
use crate::format::{Blockref, BlockrefType, InodeData, INODE_BYTES};
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Reach, Step, Visitor};
use crate::volume::Hammer2;
use rayon::prelude::*;
use scan::{Finds, Role};
use std::collections::{HashMap, HashSet};

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

/// Counts of a scan.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScanStats {
    /// Bytes read (holes excluded).
    pub bytes: u64,
    /// Slots that decoded as plausible blockrefs.
    pub candidates: u64,
    pub raw_inodes: u64,
    pub versions: u64,
    pub entries: u64,
    pub data_blocks: u64,
}

/// What the media holds, by PFS and inode number.
pub struct Index {
    pfs: Vec<PfsInfo>,
    /// Sorted by (pfs, inum), then [`Version::order`].
    versions: Vec<Version>,
    /// Sorted by (pfs, inum) of the inode named, in the order found.
    entries: Vec<Entry>,
    /// Sorted by (pfs, inum, key), in memory or spilled.
    data: spill::Blocks,
    /// Raw inodes no verified blockref names (for `relaxed`): offsets.
    unverified: Vec<u64>,
    pub stats: ScanStats,
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

    /// Every version of an inode, oldest first ([`Version::order`]).
    pub fn versions(&self, pfs: PfsId, inum: u64) -> &[Version] {
        let lo = self.versions.partition_point(|v| (v.pfs, v.inum) < (pfs, inum));
        let hi = lo + self.versions[lo..].partition_point(|v| (v.pfs, v.inum) == (pfs, inum));
        &self.versions[lo..hi]
    }

    /// The entries naming an inode, from every version of its directories.
    pub fn entries_naming(&self, pfs: PfsId, inum: u64) -> &[Entry] {
        let lo = self.entries.partition_point(|e| (e.pfs, e.inum) < (pfs, inum));
        let hi = lo + self.entries[lo..].partition_point(|e| (e.pfs, e.inum) == (pfs, inum));
        &self.entries[lo..hi]
    }

    /// Data blocks found in the trees of an inode's versions, by key
    /// (read back from the spill file when the records spilled).
    pub fn data_blocks(&self, pfs: PfsId, inum: u64) -> Result<Vec<DataBlock>> {
        self.data.of(pfs, inum)
    }

    /// Whether the data-block records went past the memory budget and
    /// were spilled to the temporary directory.
    pub fn spilled(&self) -> bool {
        matches!(self.data, spill::Blocks::File { .. })
    }

    /// The inodes of `pfs` with numbers in `[lo, hi]`, with their versions.
    pub fn inodes_in(&self, pfs: PfsId, lo: u64, hi: u64) -> impl Iterator<Item = (u64, &[Version])> + '_ {
        let start = self.versions.partition_point(|v| (v.pfs, v.inum) < (pfs, lo));
        let end = start + self.versions[start..].partition_point(|v| (v.pfs, v.inum) <= (pfs, hi));
        self.versions[start..end].chunk_by(|a, b| a.inum == b.inum).map(|g| (g[0].inum, g))
    }

    /// Every inode found: (PFS, inum) with its versions.
    pub fn all(&self) -> impl Iterator<Item = ((PfsId, u64), &[Version])> + '_ {
        self.versions.chunk_by(|a, b| (a.pfs, a.inum) == (b.pfs, b.inum)).map(|g| ((g[0].pfs, g[0].inum), g))
    }

    /// Offsets of raw inodes no verified blockref names.
    pub fn unverified(&self) -> &[u64] {
        &self.unverified
    }

    /// The inode of a version, read from the media.
    pub fn inode(fs: &Hammer2, v: &Version) -> Result<Box<InodeData>> {
        let mut ip = Box::new(InodeData::new_zeroed());
        fs.device.read_into(v.data_off, zerocopy::IntoBytes::as_mut_bytes(ip.as_mut()))?;
        Ok(ip)
    }
}

/// Scans every volume of `fs` and indexes what it finds. `progress` is
/// called from the scanning threads now and then; Ctrl-C
/// ([`crate::interrupt`]) stops the scan with [`crate::Error::Interrupted`].
pub fn scan(fs: &Hammer2, opts: &ScanOptions, progress: Option<Progress<'_>>) -> Result<Index> {
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
    let mut spilled = spill::RefSpill::new(tmpdir.clone());
    let mut finds = Finds::default();
    // Batches of chunks on every core; between batches, data refs past a
    // quarter of the budget are set aside on disk.
    for batch in reads.chunks(16) {
        let found = batch
            .par_iter()
            .map_init(
                || vec![0u8; chunk],
                |buf, &(loff, len)| -> Result<Finds> {
                    crate::interrupt::check()?;
                    let buf = &mut buf[..len];
                    fs.device.read_into(loff, buf)?;
                    let mut f = Finds::default();
                    scan::scan_chunk(fs, loff, buf, keep, &mut f);
                    let d = done.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed) + len as u64;
                    if let Some(p) = progress {
                        p(d, total);
                    }
                    Ok(f)
                },
            )
            .try_reduce(Finds::default, |mut a, b| {
                a.append(b);
                Ok(a)
            })?;
        finds.append(found);
        if finds.data.len() * std::mem::size_of::<scan::DataRef>() > opts.memory / 4 {
            spilled.push_all(&mut finds.data)?;
        }
    }
    crate::interrupt::check()?;
    let mut index = join(fs, finds, spilled, spill::BlockSorter::new(tmpdir, opts.memory / 2))?;
    index.stats.bytes = total;
    Ok(index)
}

/// Offsets of the inodes reached from a blockset (a header copy's
/// super-root) and not under a node in `seen` (walked from another copy
/// already: the same block is the same subtree), DATA blocks left unread.
/// Every inode and indirect block met is added to `seen`.
fn reached(fs: &Hammer2, set: &[Blockref], seen: &mut HashSet<u64>) -> HashSet<u64> {
    struct Collect<'s> {
        inodes: HashSet<u64>,
        seen: &'s mut HashSet<u64>,
    }
    impl<'a> Visitor<'a> for Collect<'_> {
        type Ctx = ();
        type Out = Nothing;
        fn skip(&mut self, bref: &Blockref, _: &()) -> Option<Nothing> {
            let node = matches!(bref.kind(), BlockrefType::Inode | BlockrefType::Indirect);
            (!node || self.seen.contains(&bref.offset())).then_some(Nothing)
        }
        fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
            let ok = node.media().is_some() && !matches!(node.reach, Reach::Shared { .. });
            if !ok {
                return Step::Leaf(Nothing);
            }
            self.seen.insert(node.bref.offset());
            if node.bref.kind() == BlockrefType::Inode {
                self.inodes.insert(node.bref.offset());
            }
            Step::Descend(())
        }
    }
    let mut c = Collect { inodes: HashSet::new(), seen };
    let opts = Options { data: DataBlocks::Skip, look_ahead: false, ..Default::default() };
    // The engine borrows the tables for its lifetime: a copy of the set lives long enough.
    let set: Vec<Blockref> = set.to_vec();
    Engine::new(fs, opts).run(&set, 0, &(), &mut c);
    c.inodes
}

/// Raw inodes and indirect blocks sorted for the owner lookups.
struct Containers {
    raws: Vec<scan::RawInode>,
    /// `pfs_clid` of the PFS roots and super-roots among `raws`, by offset.
    clids: Vec<(u64, [u8; 16])>,
    nodes: Vec<scan::NodeRef>,
}

impl Containers {
    fn raw_at(&self, off: u64) -> Option<usize> {
        self.raws.binary_search_by_key(&off, |r| r.off).ok()
    }

    /// The `pfs_clid` of the raw inode at `off` (zero for a plain inode).
    fn clid_of(&self, off: u64) -> [u8; 16] {
        self.clids.binary_search_by_key(&off, |c| c.0).map_or([0; 16], |i| self.clids[i].1)
    }

    /// The raw inodes owning the slot at `at`: the nearest inode above it
    /// through every chain of indirect blocks naming the block it lies in.
    fn owners(&self, at: u64) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![(at, 0usize)];
        let mut steps = 0;
        while let Some((pos, depth)) = stack.pop() {
            steps += 1;
            if steps > 256 || depth > 32 {
                break;
            }
            let base = pos & !(INODE_BYTES as u64 - 1);
            if let Some(r) = self.raw_at(base) {
                if pos - base >= 512 {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                    continue;
                }
            }
            // Indirect blocks (at most 64 KiB) containing `pos`.
            let end = self.nodes.partition_point(|n| n.off <= pos);
            for n in self.nodes[..end].iter().rev() {
                if n.off + 65536 <= pos {
                    break;
                }
                if pos < n.off + (1u64 << n.radix) && n.referrer != pos {
                    stack.push((n.referrer, depth + 1));
                }
            }
        }
        out
    }
}

/// Joins the scan's finds into the index.
fn join(
    fs: &Hammer2,
    mut f: Finds,
    spilled: spill::RefSpill,
    mut sorter: spill::BlockSorter,
) -> Result<Index> {
    f.raws.sort_by_key(|r| r.off);
    f.raws.dedup_by_key(|r| r.off);
    f.nodes.sort_by_key(|n| (n.off, n.referrer));
    f.nodes.dedup_by_key(|n| (n.off, n.referrer));
    f.clids.sort_by_key(|c| c.0);
    f.clids.dedup_by_key(|c| c.0);
    let c = Containers {
        raws: std::mem::take(&mut f.raws),
        clids: std::mem::take(&mut f.clids),
        nodes: std::mem::take(&mut f.nodes),
    };

    let mut pfs: Vec<PfsInfo> = Vec::new();
    let mut by_clid: HashMap<[u8; 16], PfsId> = HashMap::new();
    let mut root_label: HashMap<[u8; 16], (u64, String)> = HashMap::new();
    let mut intern = |clid: [u8; 16], pfs: &mut Vec<PfsInfo>| -> PfsId {
        *by_clid.entry(clid).or_insert_with(|| {
            let label = if clid == [0; 16] { "<orphan>".to_string() } else { String::new() };
            pfs.push(PfsInfo { label, clid: crate::format::uuid_from_disk(&clid).to_string(), live: false });
            (pfs.len() - 1) as PfsId
        })
    };

    // Sources: which inode copies each valid header copy reaches.
    let root = fs.root_position();
    // The copy in use first, then the others newest first: a node one
    // walk met is not walked again, so each inode goes to the newest copy
    // reaching it.
    let mut order: Vec<(usize, u64, &[Blockref])> = Vec::new();
    for hc in &fs.headers[root].copies {
        if let (true, Some(d)) = (hc.is_valid(), &hc.data) {
            order.push((hc.index, d.mirror_tid.get(), &d.sroot_blockset[..]));
        }
    }
    order.sort_by_key(|&(i, tid, _)| (i != fs.copy, std::cmp::Reverse(tid)));
    let mut seen = HashSet::new();
    let mut copies: Vec<(usize, u64, HashSet<u64>)> = Vec::new();
    for (i, tid, set) in order {
        copies.push((i, tid, reached(fs, set, &mut seen)));
    }
    drop(seen);
    let source_of = |off: u64| -> Source {
        let mut best: Option<(usize, u64)> = None;
        for (copy, tid, set) in &copies {
            if set.contains(&off) {
                if *copy == fs.copy {
                    return Source::Live;
                }
                if best.is_none_or(|(_, t)| *tid > t) {
                    best = Some((*copy, *tid));
                }
            }
        }
        best.map_or(Source::Unreached, |(copy, mirror_tid)| Source::HeaderCopy { copy, mirror_tid })
    };

    // Every (PFS, inum, copy) found, merged below; flat vectors sorted
    // once rather than a map of small vectors (a million inodes each cost
    // a few hundred bytes that way).
    let mut versions: Vec<Version> = Vec::with_capacity(f.inodes.len());
    // Which (PFS, inum) each inode copy was found as: (copy, PFS, inum).
    let mut pfs_of_copy: Vec<(u64, PfsId, u64)> = Vec::with_capacity(f.inodes.len());
    for r in &f.inodes {
        let mut homes = Vec::new();
        for o in c.owners(r.at) {
            let o = &c.raws[o];
            match o.role {
                Role::SuperRoot if r.pfs_root => homes.push(r.pfs_clid),
                Role::PfsRoot if !r.pfs_root => homes.push(c.clid_of(o.off)),
                _ => {}
            }
        }
        if homes.is_empty() {
            homes.push(if r.pfs_root { r.pfs_clid } else { [0; 16] });
        }
        if r.pfs_root {
            let e = root_label.entry(r.pfs_clid).or_insert((0, String::new()));
            if r.mirror_tid >= e.0 {
                if let Ok(ip) = Index::inode(
                    fs,
                    &Version {
                        pfs: 0,
                        inum: r.inum,
                        data_off: r.data_off,
                        modify_tid: r.modify_tid,
                        mirror_tid: r.mirror_tid,
                        ident: 0,
                        verified: false,
                        source: Source::Unreached,
                    },
                ) {
                    *e = (r.mirror_tid, String::from_utf8_lossy(ip.name()).into_owned());
                }
            }
        }
        homes.sort();
        homes.dedup();
        for clid in homes {
            let id = intern(clid, &mut pfs);
            versions.push(Version {
                pfs: id,
                inum: r.inum,
                data_off: r.data_off,
                modify_tid: r.modify_tid,
                mirror_tid: r.mirror_tid,
                ident: r.ident,
                verified: r.verified,
                source: Source::Unreached,
            });
            pfs_of_copy.push((r.data_off, id, r.inum));
        }
    }
    // Raw inodes no verified blockref names, before the refs go.
    let mut named: Vec<u64> = f.inodes.iter().filter(|r| r.verified).map(|r| r.data_off).collect();
    named.sort_unstable();
    named.dedup();
    drop(std::mem::take(&mut f.inodes));
    let unverified: Vec<u64> =
        c.raws.iter().filter(|r| named.binary_search(&r.off).is_err()).map(|r| r.off).collect();
    drop(named);

    // One version per (PFS, inum, copy): the first found, its flags and
    // transaction ids merged with the others (the sort is stable).
    versions.sort_by_key(|v| (v.pfs, v.inum, v.data_off));
    versions.dedup_by(|later, kept| {
        let same = (later.pfs, later.inum, later.data_off) == (kept.pfs, kept.inum, kept.data_off);
        if same {
            kept.verified |= later.verified;
            kept.modify_tid = kept.modify_tid.max(later.modify_tid);
            kept.mirror_tid = kept.mirror_tid.max(later.mirror_tid);
        }
        same
    });
    for v in versions.iter_mut() {
        v.source = source_of(v.data_off);
    }
    drop(copies);
    versions.sort_by_key(|v| (v.pfs, v.inum, v.order()));
    versions.shrink_to_fit();
    // Homes of a copy in the order found, each once.
    pfs_of_copy.sort_by_key(|h| h.0);
    let mut kept = 0;
    let mut group = 0;
    for i in 0..pfs_of_copy.len() {
        let h = pfs_of_copy[i];
        if kept == 0 || pfs_of_copy[kept - 1].0 != h.0 {
            group = kept;
        }
        if !pfs_of_copy[group..kept].contains(&h) {
            pfs_of_copy[kept] = h;
            kept += 1;
        }
    }
    pfs_of_copy.truncate(kept);
    pfs_of_copy.shrink_to_fit();
    for (clid, (_, label)) in root_label {
        if let Some(&id) = by_clid.get(&clid) {
            pfs[id as usize].label = label;
        }
    }
    for v in &versions {
        if v.source == Source::Live {
            pfs[v.pfs as usize].live = true;
        }
    }

    // The (PFS, inum) an owner raw inode stands for.
    let homes_of = |o: &scan::RawInode| -> Vec<(PfsId, u64)> {
        let lo = pfs_of_copy.partition_point(|h| h.0 < o.off);
        let found: Vec<(PfsId, u64)> =
            pfs_of_copy[lo..].iter().take_while(|h| h.0 == o.off).map(|h| (h.1, h.2)).collect();
        match o.role {
            _ if !found.is_empty() => found,
            Role::PfsRoot => by_clid.get(&c.clid_of(o.off)).map(|&id| vec![(id, o.inum)]).unwrap_or_default(),
            _ => Vec::new(),
        }
    };

    // Entries in the order found, sorted by what they name, each
    // (directory, name) once per inode (the first found).
    let mut entries: Vec<Entry> = Vec::new();
    for d in std::mem::take(&mut f.dirents) {
        let homes: Vec<(PfsId, u64)> =
            c.owners(d.at).into_iter().flat_map(|o| homes_of(&c.raws[o])).collect();
        let mut name = Some(d.name);
        for (k, &(id, dir)) in homes.iter().enumerate() {
            let name = if k + 1 == homes.len() {
                name.take().unwrap_or_default()
            } else {
                name.clone().unwrap_or_default()
            };
            entries.push(Entry {
                pfs: id,
                dir,
                inum: d.inum,
                name,
                kind: d.kind,
                modify_tid: d.modify_tid,
                mirror_tid: d.mirror_tid,
            });
        }
    }
    entries.sort_by_key(|e| (e.pfs, e.inum));
    let mut keep = vec![false; entries.len()];
    for g in (0..entries.len())
        .collect::<Vec<_>>()
        .chunk_by(|&a, &b| (entries[a].pfs, entries[a].inum) == (entries[b].pfs, entries[b].inum))
    {
        for (k, &i) in g.iter().enumerate() {
            let e = &entries[i];
            keep[i] =
                !g[..k].iter().any(|&j| keep[j] && entries[j].dir == e.dir && entries[j].name == e.name);
        }
    }
    let mut flags = keep.into_iter();
    entries.retain(|_| flags.next().unwrap_or(false));
    entries.shrink_to_fit();

    let mut place = |d: &scan::DataRef| -> Result<()> {
        for o in c.owners(d.at) {
            for (id, inum) in homes_of(&c.raws[o]) {
                sorter.push(DataBlock { pfs: id, inum, bref: d.bref })?;
            }
        }
        Ok(())
    };
    for d in &f.data {
        place(d)?;
    }
    spilled.for_each(&mut place)?;
    // What placed the blocks goes before the sort needs room.
    drop(std::mem::take(&mut f.data));
    let raw_inodes = c.raws.len() as u64;
    drop(c);
    drop(pfs_of_copy);
    let data = sorter.finish()?;

    let stats = ScanStats {
        bytes: 0,
        candidates: f.candidates,
        raw_inodes,
        versions: versions.len() as u64,
        entries: entries.len() as u64,
        data_blocks: data.len(),
    };
    Ok(Index { pfs, versions, entries, data, unverified, stats })
}
