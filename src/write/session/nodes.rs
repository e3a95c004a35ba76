//! The session side of importing host trees ([`crate::host::import`]): inodes
//! created with every attribute a host object carries, hard links, and
//! data blocks encoded elsewhere (on worker threads) placed in order.

use super::{inode_mut, with_flusher, xid_uuid, Attrs, PfsRef, Session, EMBEDDED_BYTES};
use crate::error::Error;
use crate::error::Result;
use crate::format::{encode_methods, Blockref, CheckMethod, CompMethod, ObjType};
use crate::write::chain::Slot;

/// Everything a new inode takes from a host object.
#[derive(Debug, Clone, Copy)]
pub struct NodeMeta {
    pub kind: ObjType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Microseconds since the epoch.
    pub mtime: u64,
    pub atime: u64,
    pub ctime: u64,
    pub btime: u64,
    /// Device number of a character or block device (major, minor).
    pub rdev: (u32, u32),
    /// `comp_algo` byte (method | level << 4) instead of the directory's.
    pub comp_algo: Option<u8>,
    /// Check method instead of the directory's.
    pub check: Option<CheckMethod>,
}

impl Session {
    /// Runs `op` as one operation (a failure part-way poisons the session).
    pub(crate) fn import_operation<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.operation(op)
    }

    /// Creates `name` in directory `dir` with all of `meta`; returns its
    /// inode number and its (comp_algo, check_algo).
    pub(crate) fn import_node(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        name: &[u8],
        meta: &NodeMeta,
    ) -> Result<(u64, (u8, u8))> {
        let attrs = Attrs { mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: meta.mtime };
        let inum = self.create(pfs, dir, name, meta.kind, attrs)?;
        let chain = self.inode_mut(pfs, inum)?;
        if let Some(c) = meta.check {
            chain.bref.methods = encode_methods(c, CompMethod::None);
        }
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        let m = &mut ip.meta;
        m.atime = meta.atime.into();
        m.ctime = meta.ctime.into();
        m.btime = meta.btime.into();
        m.rmajor = meta.rdev.0.into();
        m.rminor = meta.rdev.1.into();
        if let Some(c) = meta.comp_algo {
            m.comp_algo = c;
        }
        if let Some(c) = meta.check {
            m.check_algo = u8::from(c);
        }
        Ok((inum, (m.comp_algo, m.check_algo)))
    }

    /// A hard link: the entry `name` in `dir` for the existing inode `inum`
    /// (which keeps its place and counts one more link, as the kernel
    /// keeps hard-linked inodes since DragonFly 5.0).
    pub(crate) fn import_link(&mut self, pfs: &PfsRef, dir: u64, name: &[u8], inum: u64) -> Result<()> {
        super::check_new_name(name)?;
        if self.lookup(pfs, dir, name)?.is_some() {
            return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into_owned()));
        }
        let kind = self.with_inode(pfs, inum, |ip, _| Ok(ip.meta.obj_type()))?;
        self.link_in(pfs, dir, name, inum, kind)
    }

    /// Sets an inode's times (a directory's, once its entries are in).
    pub(crate) fn import_times(&mut self, pfs: &PfsRef, inum: u64, meta: &NodeMeta) -> Result<()> {
        let ip = self.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.mtime = meta.mtime.into();
        ip.meta.atime = meta.atime.into();
        ip.meta.ctime = meta.ctime.into();
        ip.meta.btime = meta.btime.into();
        self.tx.dirty = true;
        Ok(())
    }

    /// Sets the mode and owner of an existing inode (the import root's).
    pub(crate) fn import_owner(&mut self, pfs: &PfsRef, inum: u64, meta: &NodeMeta) -> Result<()> {
        let ip = self.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.mode = (meta.mode & 0o7777).into();
        ip.meta.uid = xid_uuid(meta.uid);
        ip.meta.gid = xid_uuid(meta.gid);
        Ok(())
    }

    /// Stores the contents of a new file or symlink of at most a few
    /// blocks (embedded when it fits the inode).
    pub(crate) fn import_small(&mut self, pfs: &PfsRef, inum: u64, data: &[u8]) -> Result<()> {
        self.write_contents(pfs, inum, data, data.len() as u64)
    }

    /// Sets the size of a new file whose blocks are placed one by one.
    pub(crate) fn import_size(&mut self, pfs: &PfsRef, inum: u64, size: u64) -> Result<()> {
        debug_assert!(size > EMBEDDED_BYTES as u64);
        let ip = self.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.size = size.into();
        Ok(())
    }

    /// Allocates and writes a block [`encode_data_block`] prepared and
    /// enters its blockref in file `inum`.
    pub(crate) fn place_block(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        mut bref: Blockref,
        media: &[u8],
    ) -> Result<()> {
        self.need_space(media.len() as u64)?;
        let tx = &mut self.tx;
        with_flusher(&mut self.fs.device, &mut tx.alloc, tx.tid, self.write, &mut tx.stats, |f| {
            f.write_checked(&mut bref, media)
        })?;
        if !self.write {
            self.dry.keep(bref.data_off.get(), media)?;
        }
        let fs = &self.fs;
        inode_mut(fs, &mut self.tx.root, pfs, inum)?.insert(fs, Slot::Clean(bref))
    }

    /// A file is complete: write its inode now (see `write_early`).
    pub(crate) fn import_finish(&mut self, pfs: &PfsRef, inum: u64) -> Result<()> {
        self.write_early(pfs, inum)
    }

    /// Writes loaded subtrees early when past the memory budget.
    pub(crate) fn import_bound_memory(&mut self) -> Result<()> {
        self.bound_memory()
    }
}
