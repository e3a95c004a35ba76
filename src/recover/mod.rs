//! Freemap recovery: the replay a read-write mount performs
//! (`hammer2_recovery` in hammer2_vfsops.c), offline.
//!
//! # Why it is needed
//!
//! The kernel lets the freemap lag the topology by one flush: a flush
//! writes the topology and the volume header with the new `mirror_tid`,
//! while the freemap blocks it writes (and the header's `freemap_tid`)
//! describe the allocations as of the flush before. After a crash between
//! the two, blocks of the last committed transaction(s) are in use but may
//! be marked free, and the next allocation could hand them out again. The
//! header says so: `freemap_tid < mirror_tid`.
//!
//! # What the kernel does (facts from the seed)
//!
//! With `sync_tid = freemap_tid`: nothing when `sync_tid >= mirror_tid`
//! ("no recovery needed"); otherwise it scans from the volume root, looking
//! only at blockrefs whose `mirror_tid` is above `sync_tid` (a subtree none
//! of whose blocks changed since the freemap's flush carries an old
//! `mirror_tid` in its parent's blockref and is skipped whole). Each such
//! block is marked allocated with `hammer2_freemap_adjust(DORECOVER)`.
//! Inodes (except DIRECTDATA ones, which hold no blockrefs) and indirect
//! blocks are descended; DATA and freemap blocks are leaves; PFS roots are
//! crossed (every PFS shares the device's transaction-id counter, so one
//! `sync_tid` serves all of them). The kernel recurses on the machine stack
//! and defers nodes past depth 10 to a work list. The marks reach the media
//! with the mount's first flush, whose header then carries
//! `freemap_tid = mirror_tid`.
//!
//! # What we do, and where we do better
//!
//! * The scan ([`crate::write::alloc::replay`]) is shared with the write
//!   sessions, which run it in memory when they open a lagging image
//!   ([`crate::write::session::Session::from_fs`]), as a mount does, and write the
//!   repaired freemap with their first commit: this module is for repairing
//!   without editing (and for fsck's repairs).
//! * The scan is the traversal engine ([`crate::read::walk::Engine`]), whose
//!   depth is bounded and whose work is budgeted; no machine-stack
//!   recursion beyond that bound. Trees are shallow (directories nest in
//!   the namespace, not in the media tree: every inode of a PFS hangs off
//!   its root's inode index), so the bound is never the limit on a sane
//!   file system. The visitor skips an old blockref *before* its media is
//!   read ([`crate::read::walk::Visitor::skip`]): cost grows with what changed,
//!   not with the volume.
//! * Marking is [`Allocator::mark_allocated`]: every 16 KiB chunk the block
//!   touches becomes allocated (missing leaves are created as
//!   `hammer2_freemap_init` creates them). The kernel's DORECOVER picks the
//!   bit pair with `(offset >> 14) & 15`, though a bitmap word holds 32
//!   chunks, so chunks 16..31 of every 512 KiB mark the wrong pair; that is
//!   not copied.
//! * `linear`, the sub-16 KiB packing offset of a 4 MiB entry: the kernel
//!   resets it only when it changed a bit. When the lagging transaction put
//!   small blocks (1 KiB inodes, small data, long dirent names) into a chunk
//!   that was already marked allocated, `linear` still points at them, and
//!   the next small allocation overwrites live data (seen with DragonFly's
//!   own recovery code on a crash-window image: a snapshot's PFS inode
//!   reallocated, its check code broken). Here every recovered block moves
//!   `linear` past itself when `linear` lies inside one of its chunks, so
//!   after the replay `linear` is past every block the replay saw there.
//! * Blockrefs without media (directory entries whose name fits in the
//!   blockref, empty files) have nothing to mark and are passed over. The
//!   kernel's scan hands them to `hammer2_freemap_adjust`, which asserts a
//!   nonzero radix: DragonFly's code (the makefs port in the reference
//!   tools) aborts recovering any window whose lagging transaction created
//!   a directory entry with a short name.
//! * All or nothing: nothing is written unless every changed node could be
//!   read and verified; then the freemap and the header are written by the
//!   normal commit ([`crate::write::flush::commit`]): freemap blocks into free
//!   rotation slots, a barrier, the header to the next copy with
//!   `mirror_tid = freemap_tid =` the old `mirror_tid` + 1 (a new
//!   transaction, as the kernel's flush after the recovery is; an equal
//!   `mirror_tid` would tie with the copy in use), a barrier. A crash during
//!   the recovery leaves the lagging state, which recovery handles again.
//! * After writing, the new freemap is loaded back and every recovered block
//!   checked to be marked allocated.
//!
//! A *full* replay ([`RecoverOptions::full`]) marks every block reachable
//! from the header whatever its `mirror_tid`: for freemaps that lost
//! allocations older than `freemap_tid` (which no mount repairs), as fsck
//! uses it. A freemap whose own blocks are damaged cannot be replayed into;
//! that needs a rebuild from the topology (bulkfree).
//!
//! [`lag_freemap`] makes the crash window on purpose, for tests and
//! debugging.

pub mod files;

use crate::error::{Error, Result};
use crate::volume::{CopyState, Hammer2};
use crate::write::alloc::replay::{replay, verify_marked};
use crate::write::alloc::Allocator;
use crate::write::chain::Table;
use crate::write::flush::{self, CommitReport};
use zerocopy::IntoBytes;

pub use crate::write::alloc::replay::PfsRecovery;

/// What to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverOptions {
    /// Scan and compute everything, write nothing.
    pub dry_run: bool,
    /// Mark every block reachable from the header, whatever its
    /// `mirror_tid` (and even when `freemap_tid` is current).
    pub full: bool,
}

/// What a recovery did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecoverReport {
    pub mirror_tid: u64,
    pub freemap_tid: u64,
    /// Whether the freemap lagged the topology (`freemap_tid < mirror_tid`).
    pub lagging: bool,
    /// Whether every block was marked ([`RecoverOptions::full`]).
    pub full: bool,
    /// The transactions replayed (`freemap_tid + 1 ..= mirror_tid`), when lagging.
    pub range: Option<(u64, u64)>,
    /// Blockrefs examined (those skipped as old included).
    pub scanned: u64,
    /// Node blocks whose media was read (inodes, indirect blocks, names).
    pub read: u64,
    /// Blocks newer than the freemap, each marked allocated.
    pub blocks: u64,
    pub bytes: u64,
    /// Blocks for which the freemap changed (chunks marked, or `linear` moved past them).
    pub changed: u64,
    /// Free 16 KiB chunks that became allocated.
    pub chunks: u64,
    /// Per PFS, in the order met (the super-root first).
    pub pfs: Vec<PfsRecovery>,
    /// `allocator_free` before and after.
    pub allocator_free: (u64, u64),
    /// The commit (None when nothing had to be written).
    pub commit: Option<CommitReport>,
    /// Whether anything was written (false for a dry run).
    pub written: bool,
}

impl RecoverReport {
    /// Whether a commit was (or, for a dry run, would be) needed.
    pub fn needed(&self) -> bool {
        self.commit.is_some()
    }
}

/// Replays the freemap recovery on `fs` (opened for writing unless
/// `opts.dry_run`) and commits it. `progress` is called now and then
/// with (blockrefs examined, blocks marked).
///
/// Returns the report; an error when the freemap cannot be loaded, when a
/// changed node cannot be read or verified, or when a block cannot be
/// marked (nothing is written then).
pub fn recover(
    fs: &mut Hammer2,
    opts: &RecoverOptions,
    progress: Option<&mut dyn FnMut(u64, u64)>,
) -> Result<RecoverReport> {
    let (mirror_tid, freemap_tid) = (fs.voldata.mirror_tid.get(), fs.voldata.freemap_tid.get());
    let lagging = freemap_tid < mirror_tid;
    let free = fs.voldata.allocator_free.get();
    let mut report = RecoverReport {
        mirror_tid,
        freemap_tid,
        lagging,
        full: opts.full,
        range: lagging.then(|| (freemap_tid + 1, mirror_tid)),
        scanned: 0,
        read: 0,
        blocks: 0,
        bytes: 0,
        changed: 0,
        chunks: 0,
        pfs: Vec::new(),
        allocator_free: (free, free),
        commit: None,
        written: false,
    };
    if !lagging && !opts.full {
        return Ok(report);
    }
    let mut alloc = crate::write::alloc::replay::load_for_replay(fs)?;
    let sync_tid = (!opts.full).then_some(freemap_tid);
    let done = replay(fs, &mut alloc, sync_tid, progress).map_err(nothing_written)?;
    report.scanned = done.scanned;
    report.read = done.read;
    report.blocks = done.blocks();
    report.bytes = done.bytes();
    report.changed = done.changed();
    report.chunks = done.chunks();
    report.allocator_free.1 = alloc.free_bytes();
    let recovered = done.recovered;
    report.pfs = done.pfs;
    if !lagging && report.changed == 0 {
        return Ok(report);
    }
    let tid = mirror_tid
        .max(freemap_tid)
        .checked_add(1)
        .ok_or_else(|| Error::InvalidArgument("mirror_tid exhausted".into()))?;
    let mut root = Table::from_brefs(&fs.voldata.sroot_blockset);
    let commit = flush::commit(fs, &mut root, &mut alloc, tid, !opts.dry_run)?;
    report.written = commit.written;
    report.commit = Some(commit);
    if report.written {
        verify(fs, &recovered)?;
    }
    Ok(report)
}

/// A replay error, saying that nothing was written.
fn nothing_written(e: Error) -> Error {
    match e {
        e @ Error::Corrupt(_) => Error::NothingWritten(Box::new(e)),
        e => e,
    }
}

/// After the commit: the header no longer lags, the new freemap loads (its
/// check codes and shape hold), and every recovered block is marked.
fn verify(fs: &Hammer2, recovered: &[u64]) -> Result<()> {
    let v = &fs.voldata;
    let bad = |why: String| Err(Error::InvalidArgument(format!("after the recovery commit: {why}")));
    if v.freemap_tid.get() < v.mirror_tid.get() {
        return bad(format!("freemap_tid {:#x} < mirror_tid {:#x}", v.freemap_tid.get(), v.mirror_tid.get()));
    }
    let alloc = Allocator::load(fs)?;
    verify_marked(&alloc, v.allocator_beg.get(), recovered).or_else(bad)
}

/// What [`lag_freemap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Lagged {
    /// The header copy rewritten (the one in use).
    pub copy: usize,
    /// The copy the freemap was taken from.
    pub from_copy: usize,
    pub mirror_tid: u64,
    /// The `freemap_tid` now in the header.
    pub freemap_tid: u64,
}

/// **Test and debug helper**: makes the crash window on purpose. The header
/// copy in use keeps its topology but gets the `freemap_blockset`,
/// `freemap_tid` and `allocator_free` of the newest older valid copy (its
/// CRCs recomputed), exactly as a kernel crash between the topology flush
/// and the freemap flush leaves a file system. Typically run right after a
/// commit, on the same `fs` (opened for writing). The older copy's freemap
/// blocks are intact: commits never overwrite what a valid copy reaches.
pub fn lag_freemap(fs: &mut Hammer2) -> Result<Lagged> {
    let pos = fs.root_position();
    let mirror_tid = fs.voldata.mirror_tid.get();
    let older = fs.headers[pos]
        .copies
        .iter()
        .filter(|c| c.is_valid() && c.index != fs.copy)
        .filter_map(|c| Some((c.index, c.data.as_deref()?)))
        .filter(|(_, d)| d.mirror_tid.get() < mirror_tid && d.freemap_tid.get() < mirror_tid)
        .max_by_key(|(i, d)| (d.mirror_tid.get(), std::cmp::Reverse(*i)));
    let Some((from_copy, prev)) = older else {
        return Err(Error::InvalidArgument(
            "no older valid header copy to take a lagging freemap from (commit once first)".into(),
        ));
    };
    let mut v = fs.voldata.clone();
    v.freemap_blockset = prev.freemap_blockset;
    v.freemap_tid = prev.freemap_tid;
    v.allocator_free = prev.allocator_free;
    v.update_crcs();
    let off = crate::format::volhdr_offset(fs.copy);
    let mut vol = fs.device.volume_mut(pos);
    vol.write(off, v.as_bytes())?;
    vol.sync_range(off, v.as_bytes().len() as u64)?;
    let lagged = Lagged { copy: fs.copy, from_copy, mirror_tid, freemap_tid: v.freemap_tid.get() };
    let copy = &mut fs.headers[pos].copies[fs.copy];
    copy.data = Some(v.clone());
    copy.state = CopyState::Valid;
    fs.voldata = v;
    Ok(lagged)
}
