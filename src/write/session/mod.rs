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

use crate::write::chain::{Body, Chain, Entry, Slot, Table, TableRef};
use crate::format::compress;
use crate::device::{Access, Device};
use crate::format::dirhash::dirhash;
use crate::error::{CorruptKind, Error, Location, Result};
use crate::write::flush::{self, CommitReport, Flusher};
use crate::format::{
    encode_methods, Blockref, BlockrefType, CheckMethod, CompMethod, InodeData, ObjType, DIRHASH_LOMASK,
    EMBEDDED_BYTES, INODE_BYTES, INODE_MAXNAME, OPFLAG_DIRECTDATA, PBUFSIZE, SET_COUNT,
};
use crate::write::alloc::Allocator;
use crate::volume::{CopyChoice, Hammer2};
use crate::read::walk::Flow;
use std::io::Read;

mod attr;
mod bulkfree;
mod copies;
mod destroy;
mod growfs;
mod encode;
mod names;
mod pfsops;
mod setmethods;
mod space;
pub use attr::SetAttr;
pub use bulkfree::rebuild_freemap;
pub use copies::sync_header_copies;
pub use growfs::GrowReport;
pub use encode::{encode_data_block, NodeMeta};
pub use pfsops::{default_snapshot_name, parse_pfs_type, PfsInfo};
pub use setmethods::{parse_check, parse_comp, Methods, SetMethodsReport};

/// Default dirty-memory budget of a session (bytes of loaded chains).
pub const DEFAULT_BUDGET: usize = 256 << 20;

/// Bytes of data blocks a dry run keeps to read back (see [`Session::block_data`]).
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

/// A session's in-memory state at one point ([`Session::checkpoint`]).
pub struct Checkpoint {
    root: Table,
    alloc: Allocator,
    tid: u64,
    stats: flush::FlushStats,
    dirty: bool,
    changes: u64,
    failed: Option<String>,
}

/// An open write session.
pub struct Session {
    pub fs: Hammer2,
    root: Table,
    alloc: Allocator,
    tid: u64,
    write: bool,
    pub stats: flush::FlushStats,
    dirty: bool,
    /// Changes made so far (a counter).
    changes: u64,
    /// Bytes of loaded chains past which finished subtrees are written early.
    budget: usize,
    /// Free bytes writing operations leave for removals (space.rs).
    reserve: u64,
    /// Operations left before memory is measured again.
    since_check: u32,
    /// A dry run writes nothing: the data blocks it would have written
    /// (media bytes by `data_off`, up to [`DRY_RUN_KEEP`] bytes) so
    /// that later operations of the same run can read them back.
    dry_blocks: std::collections::HashMap<u64, Vec<u8>>,
    dry_bytes: usize,
    /// Set when an operation failed after it had started changing chains:
    /// what is in memory is then half an operation, and the session
    /// refuses to commit it.
    failed: Option<String>,
    /// The freemap replay done when the session opened.
    replayed: Option<FreemapReplay>,
    /// Set by a repair (`destroy`) that cuts damage out of the tree: the
    /// next commit also rewrites the older header copies, which still
    /// reference the damage ([`sync_header_copies`]).
    resync_copies: bool,
    /// The header copies the last commit rewrote that way.
    synced_copies: Vec<usize>,
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

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
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
        let tid = mirror.max(freemap).checked_add(1).ok_or_else(|| invalid("mirror_tid exhausted"))?;
        let mut alloc;
        let mut replayed = None;
        if freemap < mirror {
            alloc = crate::write::alloc::replay::load_for_replay(&fs)?;
            let done = crate::write::alloc::replay::replay(&fs, &mut alloc, Some(freemap), None).map_err(|e| {
                invalid(format!(
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
        // Older valid header copies are the fallback if the newest is lost:
        // what they reach must not be handed out, even where a bulkfree
        // (which only looks at the newest) freed it.
        alloc.protect_blocksets(&fs, &crate::write::alloc::bulkfree::older_root_sets(&fs))?;
        let root = Table::from_brefs(&fs.voldata.sroot_blockset);
        let reserve = space::default_reserve(fs.voldata.allocator_size.get());
        Ok(Session {
            fs,
            root,
            alloc,
            tid,
            write,
            stats: Default::default(),
            dirty: false,
            changes: 0,
            failed: None,
            budget: DEFAULT_BUDGET,
            reserve,
            since_check: 64,
            dry_blocks: Default::default(),
            dry_bytes: 0,
            replayed,
            resync_copies: false,
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
        self.tid
    }

    /// Whether anything was changed since the last commit.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn super_root(&self) -> Result<TableRef<'_>> {
        let found = self
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
                    _ => Err(invalid(format!(
                        "choose a PFS (there are: {})",
                        all.iter().map(|p| p.label.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }
    }

    fn pfs_root_mut(&mut self, pfs: &PfsRef) -> Result<&mut Chain> {
        pfs_root_mut(&self.fs, &mut self.root, pfs)
    }

    fn inode_mut(&mut self, pfs: &PfsRef, inum: u64) -> Result<&mut Chain> {
        inode_mut(&self.fs, &mut self.root, pfs, inum)
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

    /// The entry `name` in directory `dir`.
    pub fn lookup(&self, pfs: &PfsRef, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
        self.with_inode(pfs, dir, |ip, table| {
            if ip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            self.lookup_in(table, name)
        })
    }

    fn lookup_in(&self, table: &Table, name: &[u8]) -> Result<Option<DirEntry>> {
        let hash = dirhash(name);
        let mut found = None;
        self.scan_dirents(table, hash & !DIRHASH_LOMASK, hash | DIRHASH_LOMASK, &mut |n, e| {
            if n != name {
                return Flow::Continue;
            }
            found = Some(e);
            Flow::Stop
        })?;
        Ok(found)
    }

    /// Calls `f` with the name and entry of every directory entry of
    /// `table` keyed in `lo..=hi`, in key order, until it says stop; a name
    /// that cannot be read ends the scan with its error.
    pub(crate) fn scan_dirents(
        &self,
        table: &Table,
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(Vec<u8>, DirEntry) -> Flow,
    ) -> Result<()> {
        let mut failure = None;
        table.scan(&self.fs, lo, hi, &mut |b, chain, loc| {
            if b.kind() != BlockrefType::Dirent {
                return Ok(Flow::Continue);
            }
            match dirent_name(&self.fs, b, chain, loc) {
                Ok(name) => {
                    let h = b.dirent();
                    let e =
                        DirEntry { key: b.key.get(), inum: h.inum.get(), obj_type: ObjType::from(h.type_) };
                    Ok(f(name, e))
                }
                Err(e) => {
                    failure = Some(e);
                    Ok(Flow::Stop)
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Resolves `path` to (parent directory, final name, entry if it exists).
    /// `/` alone resolves to the root with an empty name.
    pub fn resolve_parent(&self, pfs: &PfsRef, path: &str) -> Result<(u64, Vec<u8>, Option<DirEntry>)> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.contains(&"..") {
            return Err(invalid(format!("{path}: '..' is not supported in image paths")));
        }
        let mut dir = pfs.root_inum;
        let Some((last, walk)) = parts.split_last() else { return Ok((dir, Vec::new(), None)) };
        let mut so_far = String::new();
        for part in walk {
            so_far.push('/');
            so_far.push_str(part);
            let e = self.lookup(pfs, dir, part.as_bytes())?.ok_or_else(|| Error::NotFound(so_far.clone()))?;
            if e.obj_type != ObjType::Directory {
                return Err(Error::NotADirectory(so_far));
            }
            dir = e.inum;
        }
        let e = self.lookup(pfs, dir, last.as_bytes())?;
        Ok((dir, last.as_bytes().to_vec(), e))
    }

    /// The next inode number of `pfs` (and the root's counter moves on).
    fn next_inum(&mut self, pfs: &PfsRef) -> Result<u64> {
        let root = self.pfs_root_mut(pfs)?;
        let ip = root.inode_mut().ok_or_else(|| invalid("PFS root is not an inode"))?;
        let inum = ip.meta.pfs_inum.get().max(INODE_START);
        let next = inum.checked_add(1).ok_or_else(|| invalid("inode numbers exhausted"))?;
        ip.meta.pfs_inum = next.into();
        Ok(inum)
    }

    /// Creates an inode of `kind` named `name` in directory `dir`; returns its number.
    fn create(&mut self, pfs: &PfsRef, dir: u64, name: &[u8], kind: ObjType, attrs: Attrs) -> Result<u64> {
        check_new_name(name)?;
        self.need_space(0)?;
        let (dip, dkey) = self.with_inode(pfs, dir, |dip, dtable| {
            if dip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            if self.lookup_in(dtable, name)?.is_some() {
                return Err(invalid(format!("{}: already exists", String::from_utf8_lossy(name))));
            }
            Ok((*dip, free_dirent_key(&self.fs, dtable, name)?))
        })?;
        self.changes += 1;
        let inum = self.next_inum(pfs)?;
        let mut ip = InodeData::new_zeroed();
        let m = &mut ip.meta;
        m.version = 1.into();
        m.type_ = kind.into();
        m.mode = (attrs.mode & 0o7777).into();
        m.uid = xid_uuid(attrs.uid);
        m.gid = xid_uuid(attrs.gid);
        m.ctime = now_us().into();
        m.mtime = attrs.mtime.into();
        m.inum = inum.into();
        m.nlinks = 1.into();
        m.iparent = dir.into();
        m.name_key = inum.into();
        m.comp_algo = dip.meta.comp_algo;
        m.check_algo = dip.meta.check_algo;
        let label = format!("0x{inum:016x}");
        ip.filename[..label.len()].copy_from_slice(label.as_bytes());
        ip.meta.name_len = (label.len() as u16).into();
        let check = CheckMethod::from(dip.meta.check_algo & 15);
        let mut bref = Blockref::zeroed();
        bref.type_ = BlockrefType::Inode.into();
        bref.key = inum.into();
        bref.methods = encode_methods(check, CompMethod::None);
        let chain = Chain {
            bref,
            body: Body::Inode { ip: Box::new(ip), table: Table::with_capacity(SET_COUNT) },
            bias: Default::default(),
        };
        let fs = &self.fs;
        let root = pfs_root_mut(fs, &mut self.root, pfs)?;
        root.insert(fs, Slot::Node(Box::new(chain)))?;
        self.add_dirent(pfs, dir, dkey, name, inum, kind, check)?;
        Ok(inum)
    }

    /// Enters `name` -> `inum` (of `kind`) at key `dkey` of directory `dir`
    /// (a key [`free_dirent_key`] found), and stamps the directory's mtime
    /// and ctime.
    #[allow(clippy::too_many_arguments)]
    fn add_dirent(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        dkey: u64,
        name: &[u8],
        inum: u64,
        kind: ObjType,
        check: CheckMethod,
    ) -> Result<()> {
        self.changes += 1;
        let mut d = Blockref::zeroed();
        d.type_ = BlockrefType::Dirent.into();
        d.key = dkey.into();
        d.methods = encode_methods(check, CompMethod::None);
        d.mirror_tid = self.tid.into();
        d.modify_tid = self.tid.into();
        let h = d.dirent_mut();
        h.inum = inum.into();
        h.namlen = (name.len() as u16).into();
        h.type_ = kind.into();
        let slot = if name.len() <= d.check.len() {
            d.check[..name.len()].copy_from_slice(name);
            Slot::Clean(d)
        } else {
            let mut media = vec![0u8; 1024];
            media[..name.len()].copy_from_slice(name);
            Slot::Node(Box::new(Chain { bref: d, body: Body::Leaf { media }, bias: Default::default() }))
        };
        let fs = &self.fs;
        let dchain = inode_mut(fs, &mut self.root, pfs, dir)?;
        stamp_dir(dchain);
        dchain.insert(fs, slot)?;
        self.dirty = true;
        Ok(())
    }

    /// Takes the entry at `dkey` out of directory `dir` (its name block is
    /// released) and stamps the directory's mtime and ctime. The inode is
    /// left alone.
    fn drop_dirent(&mut self, pfs: &PfsRef, dir: u64, dkey: u64) -> Result<()> {
        self.changes += 1;
        let fs = &self.fs;
        let dchain = inode_mut(fs, &mut self.root, pfs, dir)?;
        stamp_dir(dchain);
        let table = dchain.table_mut().ok_or_else(|| invalid("directory embeds data"))?;
        let removed = table.remove(fs, dkey, BlockrefType::Dirent)?;
        if let Some(b) = removed.as_ref().and_then(Slot::bref).filter(|b| b.radix() != 0) {
            self.alloc.release(b.data_off.get())?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Runs one operation; a failure after it started changing chains
    /// poisons the session (see [`Session::commit`]).
    fn operation<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let before = self.changes;
        let mut r = op(self);
        // An operation that went on to change chains leaves the session
        // dirty even if one of its paths forgot to say so (an embedded
        // file's write once committed nothing).
        if r.is_ok() && self.changes != before {
            self.dirty = true;
        }
        if r.is_ok() {
            self.since_check = self.since_check.saturating_sub(1);
            if self.since_check == 0 {
                if let Err(e) = self.bound_memory() {
                    r = Err(e);
                }
            }
        }
        if let Err(e) = &r {
            if self.changes != before {
                self.failed = Some(e.to_string());
            }
        }
        r
    }

    /// The in-memory state, to go back to with [`Session::restore`] when
    /// an operation (or a group of them) fails: the chains, the allocator
    /// and the counters. Blocks written early since then stay on media,
    /// free again and unreferenced.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            root: self.root.clone(),
            alloc: self.alloc.clone(),
            tid: self.tid,
            stats: self.stats,
            dirty: self.dirty,
            changes: self.changes,
            failed: self.failed.clone(),
        }
    }

    /// Goes back to `cp` (taken from this session since its last commit).
    pub fn restore(&mut self, cp: Checkpoint) -> Result<()> {
        if cp.tid != self.tid {
            return Err(invalid("a checkpoint from before a commit cannot be restored"));
        }
        self.root = cp.root;
        self.alloc = cp.alloc;
        self.stats = cp.stats;
        self.dirty = cp.dirty;
        self.changes = cp.changes;
        self.failed = cp.failed;
        Ok(())
    }

    /// Whether the session writes (false: a dry run).
    pub fn writes(&self) -> bool {
        self.write
    }

    /// Sets the dirty-memory budget (bytes of loaded chains; at least 1 MiB).
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.budget = bytes.max(1 << 20);
    }

    /// Bytes held by loaded chains.
    pub fn resident(&self) -> usize {
        table_bytes(&self.root)
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
        let room = (self.budget / 2).saturating_sub(resident);
        self.since_check = (room / (32 << 10)).clamp(256, 8192) as u32;
        if !self.write || resident <= self.budget / 2 {
            return Ok(());
        }
        self.since_check = 64;
        let mut f = Flusher {
            device: &mut self.fs.device,
            alloc: &mut self.alloc,
            tid: self.tid,
            write: self.write,
            stats: self.stats,
        };
        for slot in &mut self.root.slots {
            if let Slot::Node(sroot) = slot {
                if let Some(t) = sroot.table_mut() {
                    write_below_pfs_roots(&mut f, t)?;
                }
            }
        }
        self.stats = f.stats;
        Ok(())
    }

    /// `mkdir` (`parents`: `-p`, existing directories are fine).
    pub fn mkdir(&mut self, pfs: &PfsRef, path: &str, attrs: Attrs, parents: bool) -> Result<u64> {
        self.operation(|s| s.mkdir_op(pfs, path, attrs, parents))
    }

    fn mkdir_op(&mut self, pfs: &PfsRef, path: &str, attrs: Attrs, parents: bool) -> Result<u64> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.is_empty() {
            return Err(invalid(format!("{path}: the root exists")));
        }
        let mut dir = pfs.root_inum;
        let mut so_far = String::new();
        for (i, part) in parts.iter().enumerate() {
            so_far.push('/');
            so_far.push_str(part);
            if *part == ".." {
                return Err(invalid(format!("{path}: '..' is not supported in image paths")));
            }
            let last = i + 1 == parts.len();
            match self.lookup(pfs, dir, part.as_bytes())? {
                Some(e) if e.obj_type == ObjType::Directory && (parents || !last) => dir = e.inum,
                Some(_) if last => return Err(invalid(format!("{so_far}: already exists"))),
                Some(_) => return Err(Error::NotADirectory(so_far)),
                None if last || parents => {
                    dir = self.create(pfs, dir, part.as_bytes(), ObjType::Directory, attrs)?
                }
                None => return Err(Error::NotFound(so_far)),
            }
        }
        Ok(dir)
    }

    /// `put`: copies a host regular file to `path` (its mode, owner and
    /// mtime kept; an existing file is refused).
    ///
    /// Not (yet) through [`crate::host::import::import_tree`], the path of
    /// `hammer2_edit put` and `newfs_hammer2 --populate`: called once per
    /// file, it sets up and tears down its worker pool each time, and
    /// `benches/write.rs` (100,000 small files, one `put` each, 2 cores)
    /// went from about 4 s to 37-43 s that way. A single-file entry of the
    /// import without the pool would let `put` share its code.
    pub fn put(&mut self, pfs: &PfsRef, host: &std::path::Path, path: &str) -> Result<u64> {
        self.operation(|s| s.put_op(pfs, host, path))
    }

    fn put_op(&mut self, pfs: &PfsRef, host: &std::path::Path, path: &str) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let io =
            |op: &'static str| move |source| Error::Io { path: host.to_path_buf(), op, offset: 0, source };
        let meta = std::fs::metadata(host).map_err(io("stat"))?;
        if !meta.is_file() {
            return Err(invalid(format!("{}: not a regular file", host.display())));
        }
        let mtime = crate::format::time::micros(meta.mtime(), meta.mtime_nsec());
        let attrs = Attrs { mode: meta.mode(), uid: meta.uid(), gid: meta.gid(), mtime };
        let file = std::fs::File::open(host).map_err(io("open"))?;
        // Errors reading the source name the host file.
        self.create_file_op(pfs, path, attrs, file, meta.len()).map_err(|e| match e {
            Error::Io { path: p, source, op, offset } if p.as_os_str() == INPUT => {
                Error::Io { path: host.to_path_buf(), op, offset, source }
            }
            e => e,
        })
    }

    /// Creates the regular file `path` holding `size` bytes read from `src`.
    pub fn create_file(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        attrs: Attrs,
        src: impl Read,
        size: u64,
    ) -> Result<u64> {
        self.operation(|s| s.create_file_op(pfs, path, attrs, src, size))
    }

    fn create_file_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        attrs: Attrs,
        src: impl Read,
        size: u64,
    ) -> Result<u64> {
        let (dir, name, existing) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(invalid(format!("{path}: needs a file name")));
        }
        if existing.is_some() {
            return Err(invalid(format!("{path}: already exists")));
        }
        self.need_space(size)?;
        let inum = self.create(pfs, dir, &name, ObjType::Regfile, attrs)?;
        self.write_contents(pfs, inum, src, size)?;
        self.write_early(pfs, inum)?;
        Ok(inum)
    }

    /// Stores `size` bytes from `src` as the contents of the new file `inum`.
    fn write_contents(&mut self, pfs: &PfsRef, inum: u64, mut src: impl Read, size: u64) -> Result<()> {
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| invalid("not an inode"))?;
        ip.meta.size = size.into();
        if size <= EMBEDDED_BYTES as u64 {
            let mut buf = vec![0u8; size as usize];
            src.read_exact(&mut buf).map_err(input_error)?;
            let ip = chain.inode_mut().expect("checked above");
            ip.meta.op_flags |= OPFLAG_DIRECTDATA;
            ip.u = [0; EMBEDDED_BYTES];
            ip.u[..buf.len()].copy_from_slice(&buf);
            if let Body::Inode { table, .. } = &mut chain.body {
                *table = Table::with_capacity(0);
            }
            return Ok(());
        }
        let comp = CompMethod::from(ip.meta.comp_algo & 15);
        let level = u32::from(ip.meta.comp_algo >> 4);
        let check = CheckMethod::from(ip.meta.check_algo & 15);
        let mut buf = vec![0u8; PBUFSIZE as usize];
        let mut off = 0u64;
        while off < size {
            let (logical, keybits) = logical_block(size, off);
            let want = (size - off).min(logical as u64) as usize;
            buf[..logical].fill(0);
            src.read_exact(&mut buf[..want]).map_err(input_error)?;
            let block = &buf[..logical];
            if !compress::is_zero_block(block) {
                self.store_block(pfs, inum, off, keybits, block, (comp, level, check))?;
            }
            off += logical as u64;
        }
        Ok(())
    }

    /// Encodes one logical block of file `inum` at `key` (compressed as
    /// the inode's methods say, when that pays), writes it, and enters its
    /// DATA blockref in the file's table.
    fn store_block(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        key: u64,
        keybits: u8,
        block: &[u8],
        (comp, level, check): (CompMethod, u32, CheckMethod),
    ) -> Result<()> {
        let (bref, media) = encode::encode_data_block(key, keybits, block.into(), (comp, level, check));
        self.place_block(pfs, inum, bref, &media)
    }

    /// The logical contents of data block `b`: from media, or in a dry run
    /// for a block this session would have written, from what it kept.
    pub(crate) fn block_data(&self, b: &Blockref, loc: &Location) -> Result<Vec<u8>> {
        if !self.write {
            if let Some(media) = self.dry_blocks.get(&b.data_off.get()) {
                return crate::read::tree::Tree::decode(b, media.clone(), loc);
            }
            if b.modify_tid.get() >= self.tid {
                return Err(invalid(format!(
                    "a dry run keeps only {} MiB of the data it would write; cannot read back the block at {:#x}",
                    DRY_RUN_KEEP >> 20,
                    b.data_off.get()
                )));
            }
        }
        Ok(crate::read::tree::Tree::new(&self.fs).data(b, loc)?.into_owned())
    }

    /// `write`: stores `len` bytes from `src` at `offset` of the existing
    /// regular file `path`, growing it as needed (the gap reads as zeros).
    /// A file that embeds its data (DIRECTDATA, at most 512 bytes) and grows
    /// past that converts to a blockset; a last block whose logical size
    /// changes is rewritten at its new size; blocks that end up all zeros
    /// become holes.
    pub fn write(&mut self, pfs: &PfsRef, path: &str, offset: u64, src: impl Read, len: u64) -> Result<()> {
        self.operation(|s| s.write_op(pfs, path, offset, src, len))
    }

    fn write_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        offset: u64,
        mut src: impl Read,
        len: u64,
    ) -> Result<()> {
        let (_, name, existing) = self.resolve_parent(pfs, path)?;
        let e = existing.ok_or_else(|| Error::NotFound(path.to_string()))?;
        if name.is_empty() || e.obj_type != ObjType::Regfile {
            return Err(invalid(format!("{path}: not a regular file")));
        }
        let inum = e.inum;
        let ip = self.with_inode(pfs, inum, |ip, _| Ok(*ip))?;
        let size = ip.meta.size.get();
        let end = offset.checked_add(len).filter(|&e| e <= i64::MAX as u64).ok_or_else(|| {
            invalid(format!("{path}: writing {len} bytes at {offset:#x} passes the largest file size"))
        })?;
        let new_size = size.max(end);
        let embedded = ip.meta.is_directdata();
        self.need_space(len)?;
        self.changes += 1;
        if new_size <= EMBEDDED_BYTES as u64 && (embedded || size == 0) {
            let mut buf = vec![0u8; len as usize];
            src.read_exact(&mut buf).map_err(input_error)?;
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| invalid("not an inode"))?;
            if !embedded {
                ip.u = [0; EMBEDDED_BYTES];
            }
            ip.meta.op_flags |= OPFLAG_DIRECTDATA;
            ip.u[offset as usize..end as usize].copy_from_slice(&buf);
            set_size_and_times(ip, new_size);
            if let Body::Inode { table, .. } = &mut chain.body {
                *table = Table::with_capacity(0);
            }
            self.dirty = true;
            return Ok(());
        }
        // Blocks to (re)write: those the write touches, the old tail when its
        // logical size changes, and block 0 when the data leaves the inode.
        let mut keys = std::collections::BTreeSet::new();
        let (first, last) = (offset & !(PBUFSIZE - 1), (end.max(1) - 1) & !(PBUFSIZE - 1));
        if len > 0 {
            keys.extend((first..=last).step_by(PBUFSIZE as usize));
        }
        let old_tail = (size.max(1) - 1) & !(PBUFSIZE - 1);
        if size > 0 && (embedded || logical_block(size, old_tail) != logical_block(new_size, old_tail)) {
            keys.insert(old_tail);
        }
        let mut embedded_data = None;
        if embedded {
            embedded_data = Some(ip.u[..size as usize].to_vec());
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| invalid("not an inode"))?;
            ip.meta.op_flags &= !OPFLAG_DIRECTDATA;
            ip.u = [0; EMBEDDED_BYTES];
            if let Body::Inode { table, .. } = &mut chain.body {
                *table = Table::with_capacity(SET_COUNT);
            }
        }
        let comp = CompMethod::from(ip.meta.comp_algo & 15);
        let level = u32::from(ip.meta.comp_algo >> 4);
        let check = CheckMethod::from(ip.meta.check_algo & 15);
        for key in keys {
            let (logical, keybits) = logical_block(new_size, key);
            // What the block holds now (zeros past the old end).
            let mut block = vec![0u8; logical];
            let old = match &embedded_data {
                Some(d) if key == 0 => Some(d.clone()),
                Some(_) => None,
                None => {
                    let found = self.with_inode(pfs, inum, |_, t| {
                        Ok(t.find(&self.fs, key, BlockrefType::Data)?.map(|e| match e {
                            crate::write::chain::Entry::Clean(b, loc) => (b, loc),
                            crate::write::chain::Entry::Loaded(c) => (c.bref, Location::of(&c.bref, 0, 0)),
                        }))
                    })?;
                    match found {
                        Some((b, loc)) => Some(self.block_data(&b, &loc)?),
                        None => None,
                    }
                }
            };
            if let Some(old) = old {
                let keep = (old.len() as u64).min(size.saturating_sub(key)).min(logical as u64) as usize;
                block[..keep].copy_from_slice(&old[..keep]);
            }
            // Overlay what this write puts in the block.
            let lo = offset.max(key);
            let hi = end.min(key + logical as u64);
            if lo < hi {
                src.read_exact(&mut block[(lo - key) as usize..(hi - key) as usize]).map_err(input_error)?;
            }
            // Replace the block (or leave a hole).
            let fs = &self.fs;
            let chain = inode_mut(fs, &mut self.root, pfs, inum)?;
            let table = chain.table_mut().ok_or_else(|| invalid("file embeds data"))?;
            let removed = table.remove(fs, key, BlockrefType::Data)?;
            if let Some(b) = removed.as_ref().and_then(Slot::bref).filter(|b| b.radix() != 0) {
                self.alloc.release(b.data_off.get())?;
            }
            if !compress::is_zero_block(&block) {
                self.store_block(pfs, inum, key, keybits, &block, (comp, level, check))?;
            }
        }
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| invalid("not an inode"))?;
        set_size_and_times(ip, new_size);
        self.dirty = true;
        Ok(())
    }

    /// Writes a finished file's inode (and its indirect blocks) now rather
    /// than at commit, so that importing any number of files keeps memory
    /// flat. Safe: nothing reaches the new blocks until the header is
    /// written. A later change to the file loads it back from there. In a
    /// dry run nothing is written, so it stays in memory.
    fn write_early(&mut self, pfs: &PfsRef, inum: u64) -> Result<()> {
        if !self.write {
            return Ok(());
        }
        let fs = &self.fs;
        let root = pfs_root_mut(fs, &mut self.root, pfs)?;
        let table = root.table_mut().ok_or_else(|| invalid("PFS root embeds data"))?;
        let Some(slot) = table.slot_mut(fs, inum, BlockrefType::Inode)? else { return Ok(()) };
        if let Slot::Node(chain) = slot {
            let mut f = Flusher {
                device: &mut self.fs.device,
                alloc: &mut self.alloc,
                tid: self.tid,
                write: self.write,
                stats: self.stats,
            };
            let bref = f.chain(chain)?;
            self.stats = f.stats;
            *slot = Slot::Clean(bref);
        }
        Ok(())
    }

    /// `rm`: removes a file, symlink or (with `dir_ok`) empty directory.
    pub fn remove(&mut self, pfs: &PfsRef, path: &str, dir_ok: bool) -> Result<()> {
        self.operation(|s| s.remove_op(pfs, path, dir_ok))
    }

    fn remove_op(&mut self, pfs: &PfsRef, path: &str, dir_ok: bool) -> Result<()> {
        let (dir, name, existing) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(invalid("cannot remove the root directory"));
        }
        let e = existing.ok_or_else(|| Error::NotFound(path.to_string()))?;
        self.remove_entry_op(pfs, dir, &e, path, dir_ok)
    }

    /// Removes the entry `e` of directory `dir` (`path` names it in errors).
    pub(crate) fn remove_entry_op(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        e: &DirEntry,
        path: &str,
        dir_ok: bool,
    ) -> Result<()> {
        let ip = self.inode_data(pfs, e.inum)?;
        if ip.meta.obj_type() == ObjType::Directory {
            if !dir_ok {
                return Err(Error::IsADirectory(path.to_string()));
            }
            if !self.dir_is_empty(pfs, e.inum)? {
                return Err(invalid(format!("{path}: directory not empty")));
            }
        }
        self.drop_dirent(pfs, dir, e.key)?;
        self.unlink_inode(pfs, &ip)
    }

    /// One name of inode `ip` is gone: drops a link, or the inode itself
    /// (and releases its own block) when that was the last one.
    fn unlink_inode(&mut self, pfs: &PfsRef, ip: &InodeData) -> Result<()> {
        self.changes += 1;
        let fs = &self.fs;
        let inum = ip.meta.inum.get();
        let nlinks = ip.meta.nlinks.get();
        if ip.meta.obj_type() != ObjType::Directory && nlinks > 1 {
            let chain = inode_mut(fs, &mut self.root, pfs, inum)?;
            if let Some(ip) = chain.inode_mut() {
                ip.meta.nlinks = (nlinks - 1).into();
                ip.meta.ctime = now_us().into();
            }
        } else {
            let root = pfs_root_mut(fs, &mut self.root, pfs)?;
            let table = root.table_mut().ok_or_else(|| invalid("PFS root embeds data"))?;
            if let Some(slot) = table.remove(fs, inum, BlockrefType::Inode)? {
                if let Some(b) = slot.bref().filter(|b| b.radix() != 0) {
                    self.alloc.release(b.data_off.get())?;
                }
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Commits everything done so far as one transaction; the session can
    /// go on with a new one. Refused after an operation failed half-way
    /// (nothing is written then: the previous state stays as it was).
    pub fn commit(&mut self) -> Result<CommitReport> {
        if let Some(why) = &self.failed {
            return Err(invalid(format!("an operation failed part-way ({why}); nothing is committed")));
        }
        let report = flush::commit(&mut self.fs, &mut self.root, &mut self.alloc, self.tid, self.write)?;
        self.tid += 1;
        self.dirty = false;
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

/// What errors reading an operation's source name (callers that know the
/// source, such as `put`, put its path instead).
const INPUT: &str = "input";

fn input_error(source: std::io::Error) -> Error {
    Error::Io { path: INPUT.into(), op: "read", offset: 0, source }
}

/// A directory's entries changed: its mtime and ctime become now.
fn stamp_dir(dchain: &mut Chain) {
    let now = now_us();
    if let Some(dip) = dchain.inode_mut() {
        dip.meta.mtime = now.into();
        dip.meta.ctime = now.into();
    }
}

/// A file's new size, and its mtime and ctime now.
fn set_size_and_times(ip: &mut InodeData, size: u64) {
    let now = now_us();
    ip.meta.size = size.into();
    ip.meta.mtime = now.into();
    ip.meta.ctime = now.into();
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
    let table = sroot.table_mut().ok_or_else(|| invalid("super-root embeds data"))?;
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
    let table = chain.table_mut().ok_or_else(|| invalid("PFS root embeds data"))?;
    table
        .get_mut(fs, inum, BlockrefType::Inode)?
        .ok_or_else(|| Error::NotFound(format!("inode {inum} in PFS {}", pfs.label)))
}

/// Logical size and keybits of the block at `off` of a file of `size`
/// bytes (`hammer2_calc_logical`): 64 KiB, except the last block, the
/// smallest power of two of at least 1 KiB holding the tail.
pub fn logical_block(size: u64, off: u64) -> (usize, u8) {
    let base = off & !(PBUFSIZE - 1);
    let eof_base = size & !(PBUFSIZE - 1);
    if base < eof_base {
        return (PBUFSIZE as usize, 16);
    }
    let tail = (size - eof_base).max(1);
    let radix = (64 - (tail - 1).leading_zeros()).max(10) as u8;
    (1usize << radix, radix)
}

/// The media of a logical block and the compression actually used.
pub fn encode_block(block: &[u8], comp: CompMethod, level: u32) -> (Vec<u8>, CompMethod) {
    encode_compressed(block, comp, level).unwrap_or_else(|| (block.to_vec(), CompMethod::None))
}

/// The compressed media of a logical block, when compressing pays.
fn encode_compressed(block: &[u8], comp: CompMethod, level: u32) -> Option<(Vec<u8>, CompMethod)> {
    let packed = match comp {
        CompMethod::Lz4 => Some(compress::lz4_compress(block)),
        CompMethod::Zlib => Some(compress::zlib_compress(block, if level == 0 { 6 } else { level })),
        _ => None,
    };
    if let Some(p) = packed.filter(|p| p.len() <= block.len() / 2) {
        let phys = p.len().next_power_of_two().max(1024);
        let mut media = p;
        media.resize(phys, 0);
        return Some((media, comp));
    }
    None
}

/// A name for a new directory entry: 1..=255 bytes, no '/' or NUL, not `.` or `..`.
pub fn check_new_name(name: &[u8]) -> Result<()> {
    let why = if name.is_empty() {
        "empty name"
    } else if name.len() >= INODE_MAXNAME {
        "name longer than 255 bytes"
    } else if name == b"." || name == b".." {
        "'.' and '..' cannot be created"
    } else if name.contains(&b'/') || name.contains(&0) {
        "name contains '/' or NUL"
    } else {
        return Ok(());
    };
    Err(invalid(format!("{:?}: {why}", String::from_utf8_lossy(name))))
}

/// The lowest free directory key for `name` in `table`.
fn free_dirent_key(fs: &Hammer2, table: &Table, name: &[u8]) -> Result<u64> {
    let hash = dirhash(name) & !DIRHASH_LOMASK;
    let mut used = std::collections::HashSet::new();
    table.scan(fs, hash, hash | DIRHASH_LOMASK, &mut |b, _, _| {
        used.insert(b.key.get());
        Ok(Flow::Continue)
    })?;
    (1..=DIRHASH_LOMASK)
        .map(|i| hash | 0x8000 | i)
        .chain(std::iter::empty())
        .find(|k| !used.contains(k) && k & DIRHASH_LOMASK != 0)
        .ok_or_else(|| {
            invalid(format!("{}: too many names with the same hash", String::from_utf8_lossy(name)))
        })
}

/// A dirent's name: in the check area, or in its media block.
fn dirent_name(fs: &Hammer2, b: &Blockref, chain: Option<&Chain>, loc: &Location) -> Result<Vec<u8>> {
    let namlen = b.dirent().namlen.get() as usize;
    let loc = || loc.clone();
    if namlen == 0 || namlen >= INODE_MAXNAME {
        return Err(Error::corrupt(CorruptKind::BadDirent(format!("name length {namlen}")), loc()));
    }
    if namlen <= b.check.len() {
        return Ok(b.check[..namlen].to_vec());
    }
    let media: Vec<u8> = match chain.map(|c| &c.body) {
        Some(Body::Leaf { media }) => media.clone(),
        _ => crate::read::tree::Tree::new(fs).media_at(b, &loc())?.to_vec(),
    };
    media.get(..namlen).map(<[u8]>::to_vec).ok_or_else(|| {
        Error::corrupt(CorruptKind::BadDirent(format!("name of {namlen} bytes, block shorter")), loc())
    })
}
