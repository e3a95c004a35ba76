//! The freemap replay: marks allocated, in an [`Allocator`], every block the
//! topology reaches that is newer than the freemap (`mirror_tid` above
//! `sync_tid`), as the kernel's mount-time recovery does
//! (`hammer2_recovery`, see [`crate::recover`] for the facts and where we
//! differ). One function, [`replay`], used by both the offline recovery
//! ([`crate::recover::recover`], which commits the result on its own) and
//! write sessions ([`crate::write::session::Session::from_fs`], whose next commit
//! writes the repaired freemap together with the edit, as a mount followed
//! by a flush does).
//!
//! The scan is the traversal engine ([`crate::read::walk::Engine`]): a blockref
//! not newer than `sync_tid` is skipped before its media is read (a subtree
//! none of whose blocks changed carries an old `mirror_tid` in its parent's
//! blockref), so the cost grows with what changed, not with the volume.
//! Inodes and indirect blocks are descended (PFS roots included: all PFSs
//! share the device's transaction counter); data and freemap blocks are
//! leaves; blockrefs without media are passed over. Any node that cannot be
//! read or verified, or block that cannot be marked, fails the whole
//! replay: what lies below an unreadable node is unknown, so no allocation
//! may be trusted.

use super::Allocator;
use crate::error::{CorruptKind, Corruption, Error, Result};
use crate::format::{Blockref, BlockrefType, InodeData, BREF_FLAG_PFSROOT};
use crate::freemap::{ChunkState, CHUNK_BYTES};
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Reach, Step, Visitor};
use crate::volume::Hammer2;

/// Problems remembered individually (the count is kept beyond).
const MAX_PROBLEMS: usize = 64;
/// Recovered blocks remembered for a check after the commit.
const MAX_VERIFY: usize = 1 << 20;
/// The progress callback is called every this many blockrefs.
const PROGRESS_EVERY: u64 = 4096;

/// What the replay found in one PFS (or in the super-root outside any PFS).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PfsRecovery {
    /// The PFS's label; `(super-root)` for the blocks above the PFS roots.
    pub name: String,
    /// Blocks newer than the freemap (each marked allocated).
    pub blocks: u64,
    pub bytes: u64,
    /// Of those, blocks for which the freemap changed.
    pub changed: u64,
    /// Free 16 KiB chunks that became allocated.
    pub chunks: u64,
}

/// What [`replay`] did to the allocator.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// The `sync_tid` used (None: a full replay, every reachable block).
    pub sync_tid: Option<u64>,
    /// Blockrefs examined (those skipped as old included).
    pub scanned: u64,
    /// Node blocks whose media was read (inodes, indirect blocks, names).
    pub read: u64,
    /// Per PFS, in the order met (the super-root first); PFSs with no
    /// recovered block left out.
    pub pfs: Vec<PfsRecovery>,
    /// `data_off` of the recovered blocks (at most `MAX_VERIFY` of them),
    /// for a check after the commit ([`verify_marked`]).
    pub recovered: Vec<u64>,
}

impl Replayed {
    /// Blocks marked allocated.
    pub fn blocks(&self) -> u64 {
        self.pfs.iter().map(|p| p.blocks).sum()
    }
    /// Their bytes.
    pub fn bytes(&self) -> u64 {
        self.pfs.iter().map(|p| p.bytes).sum()
    }
    /// Blocks for which the freemap changed (chunks marked, or `linear`
    /// moved past them).
    pub fn changed(&self) -> u64 {
        self.pfs.iter().map(|p| p.changed).sum()
    }
    /// Free 16 KiB chunks that became allocated.
    pub fn chunks(&self) -> u64 {
        self.pfs.iter().map(|p| p.chunks).sum()
    }
}

/// The scan's visitor.
struct Scan<'r, 'p> {
    alloc: &'r mut Allocator,
    sync_tid: Option<u64>,
    scanned: u64,
    read: u64,
    pfs: Vec<PfsRecovery>,
    problems: Vec<Corruption>,
    problem_count: u64,
    recovered: Vec<u64>,
    progress: Option<&'p mut dyn FnMut(u64, u64)>,
}

impl Scan<'_, '_> {
    fn problem(&mut self, kind: CorruptKind, node: &Node) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Corruption { kind, location: node.location() });
        }
    }

    fn marked(&self) -> u64 {
        self.pfs.iter().map(|p| p.blocks).sum()
    }
}

impl<'a> Visitor<'a> for Scan<'_, '_> {
    /// Index into `pfs` of the PFS being scanned.
    type Ctx = usize;
    type Out = Nothing;

    fn skip(&mut self, bref: &Blockref, _: &usize) -> Option<Nothing> {
        self.scanned += 1;
        if self.scanned % PROGRESS_EVERY == 0 {
            let marked = self.marked();
            if let Some(p) = self.progress.as_mut() {
                p(self.scanned, marked);
            }
        }
        match self.sync_tid {
            Some(t) if bref.mirror_tid.get() <= t => Some(Nothing),
            _ => None,
        }
    }

    fn visit(&mut self, node: &Node<'a>, &pfs: &usize) -> Step<usize, Nothing> {
        let b = node.bref;
        match &node.reach {
            Reach::Failed(kind) => {
                self.problem(kind.clone(), node);
                return Step::Leaf(Nothing);
            }
            Reach::NoMedia => return Step::Leaf(Nothing),
            Reach::Media(_) | Reach::Shared { .. } => self.read += 1,
            Reach::Unread { .. } => {}
        }
        let mut ctx = pfs;
        if b.kind() == BlockrefType::Inode && b.flags & BREF_FLAG_PFSROOT != 0 {
            let name = node
                .media()
                .and_then(InodeData::from_bytes)
                .map(|ip| String::from_utf8_lossy(ip.name()).into_owned())
                .unwrap_or_else(|| format!("(PFS root at {:#x})", b.offset()));
            self.pfs.push(PfsRecovery { name, ..Default::default() });
            ctx = self.pfs.len() - 1;
        }
        let before = self.alloc.free_bytes();
        let changed = match self.alloc.mark_allocated(b.data_off.get(), b.kind()) {
            Ok(c) => c,
            Err(e) => {
                self.problem(CorruptKind::Unmarkable(e.to_string()), node);
                return Step::Leaf(Nothing);
            }
        };
        let chunks = before.saturating_sub(self.alloc.free_bytes()) / CHUNK_BYTES;
        let entry = &mut self.pfs[ctx];
        entry.blocks += 1;
        entry.bytes += b.physical_size();
        entry.changed += u64::from(changed);
        entry.chunks += chunks;
        if self.recovered.len() < MAX_VERIFY {
            self.recovered.push(b.data_off.get());
        }
        // A node whose media does not verify cannot be trusted for what
        // lies below it.
        if let Some(kind) = node.error_kind() {
            self.problem(kind, node);
            return Step::Leaf(Nothing);
        }
        match b.kind() {
            BlockrefType::Inode | BlockrefType::Indirect => Step::Descend(ctx),
            _ => Step::Leaf(Nothing),
        }
    }
}

/// Marks in `alloc` every block reachable from `fs`'s volume header whose
/// `mirror_tid` is above `sync_tid` (None: every reachable block). `alloc`
/// should be the freemap of `fs` ([`Allocator::load`]). `progress` is
/// called now and then with (blockrefs examined, blocks marked).
///
/// An error (naming the first problem and how many more there were) when a
/// changed node cannot be read or verified or a block cannot be marked;
/// `alloc` may then hold some of the marks and must be dropped.
pub fn replay(
    fs: &Hammer2,
    alloc: &mut Allocator,
    sync_tid: Option<u64>,
    progress: Option<&mut dyn FnMut(u64, u64)>,
) -> Result<Replayed> {
    let mut scan = Scan {
        alloc,
        sync_tid,
        scanned: 0,
        read: 0,
        pfs: vec![PfsRecovery { name: "(super-root)".into(), ..Default::default() }],
        problems: Vec::new(),
        problem_count: 0,
        recovered: Vec::new(),
        progress,
    };
    let sroot = fs.voldata.sroot_blockset;
    let opts = Options { data: DataBlocks::Skip, ..Default::default() };
    Engine::new(fs, opts).run(&sroot, 0, &0, &mut scan);
    let marked = scan.marked();
    if let Some(p) = scan.progress.as_mut() {
        p(scan.scanned, marked);
    }
    if let Some(first) = scan.problems.first() {
        let more = scan.problem_count - 1;
        let kind = CorruptKind::Replay { first: Box::new(first.kind.clone()), more: more as u64 };
        return Err(Error::corrupt(kind, first.location.clone()));
    }
    let Scan { scanned, read, pfs, recovered, .. } = scan;
    let pfs = pfs.into_iter().filter(|p| p.blocks > 0).collect();
    Ok(Replayed { sync_tid, scanned, read, pfs, recovered })
}

/// Checks that every block in `recovered` (the [`Replayed::recovered`] of
/// a replay) is marked allocated in `alloc` (typically the freemap loaded
/// back after the commit that wrote the replay). `beg` is the header's
/// `allocator_beg`: blocks below it are outside the freemap's accounting.
pub fn verify_marked(alloc: &Allocator, beg: u64, recovered: &[u64]) -> std::result::Result<(), String> {
    for &data_off in recovered {
        let off = data_off & !0x3f;
        if off < beg {
            continue;
        }
        let end = off + (1u64 << (data_off & 0x3f));
        let mut c = off & !(CHUNK_BYTES - 1);
        while c < end {
            if alloc.chunk_state(c) != Some(ChunkState::Allocated) {
                return Err(format!("the block at {data_off:#x} is not marked allocated"));
            }
            c += CHUNK_BYTES;
        }
    }
    Ok(())
}

/// The freemap of `fs`, to replay into; the error says it cannot be.
pub fn load_for_replay(fs: &Hammer2) -> Result<Allocator> {
    Allocator::load(fs).map_err(|e| {
        Error::InvalidArgument(format!(
            "the freemap cannot be loaded, so it cannot be replayed into (it needs a rebuild from \
             the topology): {e}"
        ))
    })
}
