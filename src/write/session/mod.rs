//! File-system operations on the write engine: a [`Session`] opens a file
//! system for writing, applies any number of operations to its chains
//! (mkdir, put, rm), and commits them all as one transaction.
//!
//! Layout, as the fixtures' writers leave it (and as HAMMER2's kernel code
//! reads it):
//! - a PFS root holds its inode index (INODE blockrefs keyed by inode
//!   number) and the root directory's entries (DIRENT blockrefs keyed by
//!   name hash, bit 63 set) in one tree; every other directory holds its
//!   entries under its own inode;
//! - an inode's own name is `0x%016x` of its number (`name_key` the number):
//!   names live in directory entries; `iparent` is the directory holding it;
//! - a directory entry's key is the name's hash plus the lowest free
//!   iteration number from 1 (collisions take the next); its name lives in
//!   the blockref's check area up to 64 bytes, else in a 1 KiB block;
//! - new inodes take the PFS root's `pfs_inum` (the next number to hand
//!   out, at least 1024) and inherit their directory's compression and
//!   check methods; directories have nlinks 1 and size 0;
//! - a file of at most 512 bytes embeds its data in the inode
//!   (DIRECTDATA); a larger one has DATA blocks of 64 KiB keyed by offset,
//!   the last one the smallest power of two (at least 1 KiB) holding the
//!   tail, as `hammer2_calc_logical` sizes them. All-zero blocks are not
//!   stored (holes). A block is stored compressed when the compressed form
//!   fits in half of it (rounded up to a power of two, at least 1 KiB), as
//!   `hammer2_compress_and_write` decides, else raw.
//! - Blocks of removed files stay allocated until a bulkfree, as with the
//!   kernel (which never frees at run time).
//! - Operations that add names or data fail with ENOSPC while a reserve
//!   is still free, so that removals (which copy blocks on write too) can
//!   always run, as the kernel's `hammer2_vfs_enospace` keeps it (space.rs).

use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::format::{BlockrefType, InodeData, ObjType, EMBEDDED_BYTES, INODE_BYTES};
use crate::volume::{CopyChoice, Hammer2};
use crate::write::alloc::Allocator;
use crate::write::chain::{Body, Chain, Entry, Slot, Table, TableRef};
use crate::write::flush::{self, CommitReport, Flusher};

mod attr;
mod bulkfree;
mod copies;
mod data;
mod destroy;
mod dir;
mod fix;
mod growfs;
mod names;
mod nodes;
mod pfsops;
mod rebuild;
mod setmethods;
mod space;
mod stage;
mod structure;
mod view;
pub use crate::write::encode::{encode_block, encode_data_block, logical_block};
pub use attr::SetAttr;
pub use bulkfree::rebuild_freemap;
pub use copies::sync_header_copies;
use data::set_size_and_times;
pub use dir::check_new_name;
use dir::free_dirent_key;
pub use growfs::GrowReport;
pub use nodes::NodeMeta;
pub use pfsops::{default_snapshot_name, parse_pfs_type, PfsInfo};
pub use rebuild::LOST_FOUND;
pub use setmethods::{parse_check, parse_comp, Methods, SetMethodsReport};
pub use structure::{free_name_key, sort_table, NodePath};
pub use view::SessionView;

/// Default dirty-memory budget of a session (bytes of loaded chains).
pub const DEFAULT_BUDGET: usize = 256 << 20;

/// Bytes of data blocks a dry run keeps in memory to read back (the rest
/// goes to a temporary file; see [`Session::block_data`]).
pub const DRY_RUN_KEEP: usize = 64 << 20;

/// First inode number handed out in a PFS (HAMMER2_INODE_START).
pub const INODE_START: u64 = 1024;

/// A PFS being edited: where its root lives in the super-root.
#[derive(Debug, Clone)]
pub struct PfsRef {
    pub label: String,
    /// Key of its root inode in the super-root.
    pub key: u64,
    pub root_inum: u64,
}

/// What a lookup in a directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub key: u64,
    pub inum: u64,
    pub obj_type: ObjType,
}

/// Attributes of a new inode.
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Microseconds since the epoch.
    pub mtime: u64,
}

impl Attrs {
    /// `mode` for the invoking user, now.
    pub fn now(mode: u32) -> Attrs {
        // SAFETY: geteuid/getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Attrs { mode, uid, gid, mtime: now_us() }
    }
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// HAMMER2's uid/gid UUID for a Unix id: zeros but a u32 at bytes 12..16.
fn xid_uuid(id: u32) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[12..16].copy_from_slice(&id.to_le_bytes());
    u
}

/// The transaction a session builds: the tree it changes, the allocator,
/// the transaction id and what was done so far. Everything an operation
/// changes in memory lives here, so a checkpoint is a clone of it.
#[derive(Clone)]
pub(crate) struct Tx {
    /// The super-root's table, with every chain loaded or modified below it.
    pub(crate) root: Table,
    /// The freemap as this transaction allocates from it.
    pub(crate) alloc: Allocator,
    /// The transaction id the commit will carry.
    pub(crate) tid: u64,
    /// What was written early (past the memory budget).
    pub(crate) stats: flush::FlushStats,
    /// Anything changed since the last commit.
    pub(crate) dirty: bool,
    /// Changes made so far (a counter).
    pub(crate) changes: u64,
    /// Set when an operation failed after it had started changing chains:
    /// what is in memory is then half an operation, and the session
    /// refuses to commit it.
    pub(crate) failed: Option<String>,
}

/// A session's limits.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Bytes of loaded chains past which finished subtrees are written early.
    memory: usize,
    /// Free bytes writing operations leave for removals (space.rs).
    reserve: u64,
    /// Operations left before memory is measured again.
    since_check: u32,
}

/// A dry run writes nothing to the volume: the data blocks it would have
/// written are kept by `data_off`, so that later operations of the same
/// run can read them back; the first [`DRY_RUN_KEEP`] bytes in memory, the
/// rest in an unlinked temporary file, so a dry run of any size works.
#[derive(Default)]
struct DryBlocks {
    blocks: std::collections::HashMap<u64, DryBlock>,
    /// Bytes kept in memory.
    bytes: usize,
    spill: Option<std::fs::File>,
    spill_len: u64,
}

enum DryBlock {
    Memory(Vec<u8>),
    /// Offset and length in the spill file.
    Spilled(u64, usize),
}

impl DryBlocks {
    fn keep(&mut self, data_off: u64, media: &[u8]) -> Result<()> {
        if self.bytes + media.len() <= DRY_RUN_KEEP {
            self.bytes += media.len();
            self.blocks.insert(data_off, DryBlock::Memory(media.to_vec()));
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir();
        let io = |op: &'static str| {
            let path = dir.clone();
            move |source| Error::Io { path, op, offset: 0, source }
        };
        if self.spill.is_none() {
            self.spill = Some(crate::device::temp_file(&dir, "create dry-run spill file")?);
        }
        let f = self.spill.as_ref().expect("created above");
        f.write_all_at(media, self.spill_len).map_err(io("write dry-run spill file"))?;
        self.blocks.insert(data_off, DryBlock::Spilled(self.spill_len, media.len()));
        self.spill_len += media.len() as u64;
        Ok(())
    }

    /// The media of a block kept, if it was.
    fn get(&self, data_off: u64) -> Result<Option<Vec<u8>>> {
        match self.blocks.get(&data_off) {
            None => Ok(None),
            Some(DryBlock::Memory(m)) => Ok(Some(m.clone())),
            Some(&DryBlock::Spilled(at, len)) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len];
                let f = self.spill.as_ref().ok_or_else(|| Error::shape("dry-run spill file missing"))?;
                f.read_exact_at(&mut buf, at).map_err(|source| Error::Io {
                    path: std::env::temp_dir(),
                    op: "read dry-run spill file",
                    offset: at,
                    source,
                })?;
                Ok(Some(buf))
            }
        }
    }
}

/// A session's in-memory state at one point ([`Session::checkpoint`]).
pub struct Checkpoint(Tx);

/// An open write session: the file system, the transaction being built,
/// and the session's limits.
pub struct Session {
    pub fs: Hammer2,
    tx: Tx,
    /// Commits write (false: a dry run).
    write: bool,
    budget: Budget,
    dry: DryBlocks,
    /// The freemap replay done when the session opened.
    replayed: Option<FreemapReplay>,
    /// Set by a repair (`destroy`) that cuts damage out of the tree: the
    /// next commit also rewrites the older header copies, which still
    /// reference the damage ([`sync_header_copies`]).
    resync_copies: bool,
    /// The header copies the last commit rewrote that way.
    synced_copies: Vec<usize>,
    /// Inodes still open through a mount, by (PFS key, inode number): the
    /// removal of their last name leaves them in the index with no links
    /// until [`Session::unpin`] (a file can be used until it is closed).
    pinned: std::collections::HashSet<(u64, u64)>,
}

/// The lag a session replayed when it opened ([`Session::freemap_replay`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FreemapReplay {
    /// The header's `freemap_tid` and `mirror_tid` (the transactions
    /// `freemap_tid + 1 ..= mirror_tid` were replayed).
    pub freemap_tid: u64,
    pub mirror_tid: u64,
    /// Blocks newer than the freemap, each marked allocated, and their bytes.
    pub blocks: u64,
    pub bytes: u64,
    /// Of those, blocks for which the freemap changed.
    pub changed: u64,
    /// Free 16 KiB chunks that became allocated.
    pub chunks: u64,
}

impl std::fmt::Display for FreemapReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the freemap (freemap_tid {:#x}) lagged the topology (mirror_tid {:#x}): {} newer blocks \
             replayed, {} of them changing the freemap ({} chunks became allocated)",
            self.freemap_tid, self.mirror_tid, self.blocks, self.changed, self.chunks
        )
    }
}

impl Session {
    /// Opens `spec` for writing (`dry_run`: for reading only; nothing will
    /// be written). A file system whose freemap lags its topology is
    /// accepted as a mount accepts it (see [`Session::from_fs`]).
    pub fn open(spec: &str, dry_run: bool) -> Result<Session> {
        let access = if dry_run { Access::ReadOnly } else { Access::ReadWrite };
        let fs = Hammer2::open(Device::open(spec, access)?, CopyChoice::Best)?;
        Self::from_fs(fs, !dry_run)
    }

    /// A session on `fs` (`write`: commits write to it).
    ///
    /// When the freemap lags the topology (`freemap_tid < mirror_tid`: the
    /// kernel flushes the freemap one flush behind, so a crash, or a flush
    /// that did not touch the freemap, leaves this), the blocks of the
    /// transactions after `freemap_tid` are replayed into the allocator in
    /// memory ([`crate::write::alloc::replay`], the scan `hammer2_recover` and a
    /// kernel mount run), so that none of them is handed out again; the
    /// next commit writes the repaired freemap with the edit, one
    /// transaction, as a mount followed by a flush does.
    /// [`Session::freemap_replay`] tells what was replayed. Refused (with
    /// nothing changed): a freemap that cannot be loaded, a changed node
    /// that cannot be read or verified (what lies below it is unknown).
    /// A `freemap_tid` above `mirror_tid` is accepted without a replay, as
    /// the kernel does (`hammer2_recovery` says "no recovery needed" when
    /// `freemap_tid >= mirror_tid`; the freemap can be flushed on its own,
    /// after the topology): such a freemap describes allocations at least
    /// as recent as the topology, so it can only mark more than is in use
    /// (a leak bulkfree reclaims), never less.
    pub fn from_fs(fs: Hammer2, write: bool) -> Result<Session> {
        let v = &fs.voldata;
        let (mirror, freemap) = (v.mirror_tid.get(), v.freemap_tid.get());
        let tid = mirror.max(freemap).checked_add(1).ok_or(Error::Exhausted("mirror_tid"))?;
        let mut alloc;
        let mut replayed = None;
        if freemap < mirror {
            alloc = crate::write::alloc::replay::load_for_replay(&fs)?;
            let done =
                crate::write::alloc::replay::replay(&fs, &mut alloc, Some(freemap), None).map_err(|e| {
                    Error::invalid(format!(
                        "the freemap (freemap_tid {freemap:#x}) lags the topology (mirror_tid {mirror:#x}) \
                     and cannot be replayed: {e}"
                    ))
                })?;
            replayed = Some(FreemapReplay {
                freemap_tid: freemap,
                mirror_tid: mirror,
                blocks: done.blocks(),
                bytes: done.bytes(),
                changed: done.changed(),
                chunks: done.chunks(),
            });
        } else {
            alloc = Allocator::load(&fs)?;
        }
        Self::with_allocator(fs, alloc, tid, replayed, write)
    }

    /// A session on `fs` allocating from `alloc` in transaction `tid`: what
    /// every constructor ends with. Older valid header copies are the
    /// fallback if the newest is lost: what they reach is pinned in `alloc`
    /// so it is never handed out, even where a bulkfree (which only looks
    /// at the newest) freed it.
    fn with_allocator(
        fs: Hammer2,
        mut alloc: Allocator,
        tid: u64,
        replayed: Option<FreemapReplay>,
        write: bool,
    ) -> Result<Session> {
        alloc.protect_blocksets(&fs, &crate::write::alloc::bulkfree::older_root_sets(&fs))?;
        let root = Table::from_brefs(&fs.voldata.sroot_blockset);
        let reserve = space::default_reserve(fs.voldata.allocator_size.get());
        Ok(Session {
            fs,
            tx: Tx { root, alloc, tid, stats: Default::default(), dirty: false, changes: 0, failed: None },
            write,
            budget: Budget { memory: DEFAULT_BUDGET, reserve, since_check: 64 },
            dry: DryBlocks::default(),
            replayed,
            resync_copies: false,
            pinned: Default::default(),
            synced_copies: Vec::new(),
        })
    }

    /// What was replayed into the allocator when the session opened (the
    /// freemap lagged the topology): the next commit also writes the
    /// repaired freemap. None when the freemap was current.
    pub fn freemap_replay(&self) -> Option<&FreemapReplay> {
        self.replayed.as_ref()
    }

    /// The transaction id this session's commit will carry.
    pub fn tid(&self) -> u64 {
        self.tx.tid
    }

    /// Whether anything was changed since the last commit.
    pub fn is_dirty(&self) -> bool {
        self.tx.dirty
    }

    fn super_root(&self) -> Result<TableRef<'_>> {
        let found = self
            .tx
            .root
            .find(&self.fs, 0, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound("super-root".into()))?;
        match found {
            Entry::Loaded(c) => Ok(c.table().map_or(TableRef::Owned(Table::default()), TableRef::Loaded)),
            clean => Ok(TableRef::Owned(Table::clone(&*clean.table(&self.fs)?))),
        }
    }

    /// The PFS labelled `label` (None: DATA, or the only one but LOCAL).
    pub fn pfs(&self, label: Option<&str>) -> Result<PfsRef> {
        let all: Vec<PfsRef> = self
            .pfs_roots()?
            .into_iter()
            .map(|(key, ip)| PfsRef {
                label: String::from_utf8_lossy(ip.name()).into_owned(),
                key,
                root_inum: ip.meta.inum.get(),
            })
            .collect();
        match label {
            Some(l) => {
                all.into_iter().find(|p| p.label == l).ok_or_else(|| Error::NotFound(format!("PFS {l:?}")))
            }
            None => {
                if let Some(p) = all.iter().find(|p| p.label == "DATA") {
                    return Ok(p.clone());
                }
                let others: Vec<&PfsRef> = all.iter().filter(|p| p.label != "LOCAL").collect();
                match others.as_slice() {
                    [p] => Ok((*p).clone()),
                    _ => Err(Error::invalid(format!(
                        "choose a PFS (there are: {})",
                        all.iter().map(|p| p.label.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }
    }

    fn pfs_root_mut(&mut self, pfs: &PfsRef) -> Result<&mut Chain> {
        pfs_root_mut(&self.fs, &mut self.tx.root, pfs)
    }

    fn inode_mut(&mut self, pfs: &PfsRef, inum: u64) -> Result<&mut Chain> {
        inode_mut(&self.fs, &mut self.tx.root, pfs, inum)
    }

    /// Calls `f` with inode `inum` and its table (read-only view; nothing
    /// is copied for loaded chains).
    fn with_inode<R>(
        &self,
        pfs: &PfsRef,
        inum: u64,
        f: impl FnOnce(&InodeData, &Table) -> Result<R>,
    ) -> Result<R> {
        let sroot = self.super_root()?;
        let root = sroot
            .find(&self.fs, pfs.key, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound(format!("PFS {}", pfs.label)))?;
        let rtable = root.table(&self.fs)?;
        if inum == pfs.root_inum {
            return f(&root.inode(&self.fs)?, &rtable);
        }
        let found = rtable
            .find(&self.fs, inum, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound(format!("inode {inum} in PFS {}", pfs.label)))?;
        let table = found.table(&self.fs)?;
        f(&found.inode(&self.fs)?, &table)
    }

    /// Runs one operation; a failure after it started changing chains
    /// poisons the session (see [`Session::commit`]).
    fn operation<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let before = self.tx.changes;
        let mut r = op(self);
        // An operation that went on to change chains leaves the session
        // dirty even if one of its paths forgot to say so (an embedded
        // file's write once committed nothing).
        if r.is_ok() && self.tx.changes != before {
            self.tx.dirty = true;
        }
        if r.is_ok() {
            self.budget.since_check = self.budget.since_check.saturating_sub(1);
            if self.budget.since_check == 0 {
                if let Err(e) = self.bound_memory() {
                    r = Err(e);
                }
            }
        }
        if let Err(e) = &r {
            if self.tx.changes != before {
                self.tx.failed = Some(e.to_string());
            }
        }
        r
    }

    /// The in-memory state, to go back to with [`Session::restore`] when
    /// an operation (or a group of them) fails: the chains, the allocator
    /// and the counters. Blocks written early since then stay on media,
    /// free again and unreferenced.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.tx.clone())
    }

    /// Goes back to `cp` (taken from this session since its last commit).
    pub fn restore(&mut self, cp: Checkpoint) -> Result<()> {
        if cp.0.tid != self.tx.tid {
            return Err(Error::Internal("a checkpoint from before a commit cannot be restored".into()));
        }
        self.tx = cp.0;
        Ok(())
    }

    /// What was written early so far in this transaction (past the memory
    /// budget).
    pub fn early_writes(&self) -> flush::FlushStats {
        self.tx.stats
    }

    /// Whether the session writes (false: a dry run).
    pub fn writes(&self) -> bool {
        self.write
    }

    /// Sets the dirty-memory budget (bytes of loaded chains; at least 1 MiB).
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.budget.memory = bytes.max(1 << 20);
    }

    /// Bytes held by loaded chains.
    pub fn resident(&self) -> usize {
        table_bytes(&self.tx.root)
    }

    /// Past half the budget, writes every loaded subtree below the PFS
    /// roots now (the super-root and the PFS roots stay loaded). This is
    /// safe: nothing reaches the new blocks before the header is written;
    /// a node touched again is loaded back from its new block (its early
    /// copy is then left for bulkfree). A dry run writes nothing, so it
    /// keeps everything in memory.
    fn bound_memory(&mut self) -> Result<()> {
        // Measuring walks the loaded chains (memory-bound: about a second
        // per 4 GB of tables), so it is done again only after operations
        // that could fill part of the room left: an import loads a few KiB
        // per operation; random edits deep in large trees up to a few
        // indirect blocks (16 KiB each).
        let resident = self.resident();
        let room = (self.budget.memory / 2).saturating_sub(resident);
        self.budget.since_check = (room / (32 << 10)).clamp(256, 8192) as u32;
        if !self.write || resident <= self.budget.memory / 2 {
            return Ok(());
        }
        self.budget.since_check = 64;
        let Tx { root, alloc, tid, stats, .. } = &mut self.tx;
        with_flusher(&mut self.fs.device, alloc, *tid, self.write, stats, |f| {
            for slot in &mut root.slots {
                if let Slot::Node(sroot) = slot {
                    if let Some(t) = sroot.table_mut() {
                        write_below_pfs_roots(f, t)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Commits everything done so far as one transaction; the session can
    /// go on with a new one. Refused after an operation failed half-way
    /// (nothing is written then: the previous state stays as it was).
    pub fn commit(&mut self) -> Result<CommitReport> {
        self.refuse_half_done()?;
        let report =
            flush::commit(&mut self.fs, &mut self.tx.root, &mut self.tx.alloc, self.tx.tid, self.write)?;
        self.tx.tid += 1;
        self.tx.dirty = false;
        self.synced_copies.clear();
        if self.resync_copies && self.write {
            // The commit above is durable: only now the older copies.
            self.synced_copies = sync_header_copies(&mut self.fs)?;
            self.resync_copies = false;
        }
        Ok(report)
    }

    /// The older header copies the last commit also rewrote, because a
    /// repair before it cut damage they reference out of the tree (see
    /// [`sync_header_copies`]).
    pub fn synced_copies(&self) -> &[usize] {
        &self.synced_copies
    }
}

/// Runs `work` with a flusher that writes in this transaction before its
/// commit (subtrees past the memory budget, blocks an import places in
/// order); what it wrote is added to `stats` when it succeeds.
fn with_flusher<R>(
    device: &mut Device,
    alloc: &mut Allocator,
    tid: u64,
    write: bool,
    stats: &mut flush::FlushStats,
    work: impl FnOnce(&mut Flusher<'_>) -> Result<R>,
) -> Result<R> {
    let mut f = Flusher { device, alloc, tid, write, stats: *stats };
    let r = work(&mut f)?;
    *stats = f.stats;
    Ok(r)
}

/// Writes everything loaded below the PFS roots of a super-root table.
fn write_below_pfs_roots(f: &mut Flusher<'_>, sroot: &mut Table) -> Result<()> {
    for slot in &mut sroot.slots {
        let Slot::Node(c) = slot else { continue };
        match &mut c.body {
            Body::Indirect { table } => write_below_pfs_roots(f, table)?,
            Body::Inode { table, .. } => {
                for s in &mut table.slots {
                    f.slot(s)?;
                }
            }
            Body::Leaf { .. } => {}
        }
    }
    Ok(())
}

/// Bytes a table's loaded chains hold.
fn table_bytes(t: &Table) -> usize {
    t.slots.len() * std::mem::size_of::<Slot>()
        + t.slots
            .iter()
            .map(|s| match s {
                Slot::Node(c) => {
                    std::mem::size_of::<Chain>()
                        + match &c.body {
                            Body::Inode { table, .. } => INODE_BYTES + table_bytes(table),
                            Body::Indirect { table } => table_bytes(table),
                            Body::Leaf { media } => media.len(),
                        }
                }
                _ => 0,
            })
            .sum::<usize>()
}

/// The PFS root's chain, loaded for modification (with the path to it).
fn pfs_root_mut<'t>(fs: &Hammer2, root: &'t mut Table, pfs: &PfsRef) -> Result<&'t mut Chain> {
    let sroot =
        root.get_mut(fs, 0, BlockrefType::Inode)?.ok_or_else(|| Error::NotFound("super-root".into()))?;
    let table = sroot.table_mut().ok_or_else(|| Error::shape("super-root embeds data"))?;
    table
        .get_mut(fs, pfs.key, BlockrefType::Inode)?
        .ok_or_else(|| Error::NotFound(format!("PFS {}", pfs.label)))
}

/// Inode `inum` of `pfs`, loaded for modification (with the path to it).
fn inode_mut<'t>(fs: &Hammer2, root: &'t mut Table, pfs: &PfsRef, inum: u64) -> Result<&'t mut Chain> {
    let chain = pfs_root_mut(fs, root, pfs)?;
    if inum == pfs.root_inum {
        return Ok(chain);
    }
    let table = chain.table_mut().ok_or_else(|| Error::shape("PFS root embeds data"))?;
    table
        .get_mut(fs, inum, BlockrefType::Inode)?
        .ok_or_else(|| Error::NotFound(format!("inode {inum} in PFS {}", pfs.label)))
}
