//! The data path of a session: files created from readers, writes into
//! existing files, blocks stored and read back.

use super::*;
use crate::error::{Error, Location, Result};
use crate::format::compress;
use crate::format::{
    Blockref, BlockrefType, CheckMethod, CompMethod, InodeData, ObjType, EMBEDDED_BYTES, OPFLAG_DIRECTDATA,
    PBUFSIZE, SET_COUNT,
};
use crate::write::chain::{Body, Slot, Table};
use std::io::Read;

/// What errors reading an operation's source name (callers that know the
/// source, such as `put`, put its path instead).
const INPUT: &str = "input";

impl Session {
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

    pub(super) fn put_op(&mut self, pfs: &PfsRef, host: &std::path::Path, path: &str) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let io =
            |op: &'static str| move |source| Error::Io { path: host.to_path_buf(), op, offset: 0, source };
        let meta = std::fs::metadata(host).map_err(io("stat"))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!("{}: not a regular file", host.display())));
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

    pub(super) fn create_file_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        attrs: Attrs,
        src: impl Read,
        size: u64,
    ) -> Result<u64> {
        let (dir, name, existing) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(Error::invalid(format!("{path}: needs a file name")));
        }
        if existing.is_some() {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        self.need_space(size)?;
        let inum = self.create(pfs, dir, &name, ObjType::Regfile, attrs)?;
        self.write_contents(pfs, inum, src, size)?;
        self.write_early(pfs, inum)?;
        Ok(inum)
    }

    /// Stores `size` bytes from `src` as the contents of the new file `inum`.
    pub(super) fn write_contents(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        mut src: impl Read,
        size: u64,
    ) -> Result<()> {
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
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
    pub(super) fn store_block(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        key: u64,
        keybits: u8,
        block: &[u8],
        (comp, level, check): (CompMethod, u32, CheckMethod),
    ) -> Result<()> {
        let (bref, media) =
            crate::write::encode::encode_data_block(key, keybits, block.into(), (comp, level, check));
        self.place_block(pfs, inum, bref, &media)
    }

    /// The logical contents of data block `b`: from media, or in a dry run
    /// for a block this session would have written, from what it kept.
    pub(crate) fn block_data(&self, b: &Blockref, loc: &Location) -> Result<Vec<u8>> {
        if !self.write {
            if let Some(media) = self.dry.get(b.data_off.get())? {
                return crate::read::tree::Tree::decode(b, media, loc);
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

    pub(super) fn write_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        offset: u64,
        src: impl Read,
        len: u64,
    ) -> Result<()> {
        let (_, name, existing) = self.resolve_parent(pfs, path)?;
        let e = existing.ok_or_else(|| Error::NotFound(path.to_string()))?;
        if name.is_empty() || e.obj_type != ObjType::Regfile {
            return Err(Error::invalid(format!("{path}: not a regular file")));
        }
        self.write_inum_op(pfs, e.inum, offset, src, len)
    }

    /// [`Session::write`] into the regular file numbered `inum`.
    pub fn write_inum(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        offset: u64,
        src: impl Read,
        len: u64,
    ) -> Result<()> {
        self.operation(|s| s.write_inum_op(pfs, inum, offset, src, len))
    }

    pub(super) fn write_inum_op(
        &mut self,
        pfs: &PfsRef,
        inum: u64,
        offset: u64,
        mut src: impl Read,
        len: u64,
    ) -> Result<()> {
        let path = format!("inode {inum}");
        let ip = self.with_inode(pfs, inum, |ip, _| Ok(*ip))?;
        if ip.meta.obj_type() != ObjType::Regfile {
            return Err(Error::invalid(format!("{path}: not a regular file")));
        }
        let size = ip.meta.size.get();
        let end = offset.checked_add(len).filter(|&e| e <= i64::MAX as u64).ok_or_else(|| {
            Error::invalid(format!("{path}: writing {len} bytes at {offset:#x} passes the largest file size"))
        })?;
        let new_size = size.max(end);
        let embedded = ip.meta.is_directdata();
        self.need_space(len)?;
        self.tx.changes += 1;
        if new_size <= EMBEDDED_BYTES as u64 && (embedded || size == 0) {
            let mut buf = vec![0u8; len as usize];
            src.read_exact(&mut buf).map_err(input_error)?;
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            if !embedded {
                ip.u = [0; EMBEDDED_BYTES];
            }
            ip.meta.op_flags |= OPFLAG_DIRECTDATA;
            ip.u[offset as usize..end as usize].copy_from_slice(&buf);
            set_size_and_times(ip, new_size);
            if let Body::Inode { table, .. } = &mut chain.body {
                *table = Table::with_capacity(0);
            }
            self.tx.dirty = true;
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
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
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
            let chain = inode_mut(fs, &mut self.tx.root, pfs, inum)?;
            let table = chain.table_mut().ok_or_else(|| Error::shape("file embeds data"))?;
            let removed = table.remove(fs, key, BlockrefType::Data)?;
            if let Some(b) = removed.as_ref().and_then(Slot::bref).filter(|b| b.radix() != 0) {
                self.tx.alloc.release(b.data_off.get())?;
            }
            if !compress::is_zero_block(&block) {
                self.store_block(pfs, inum, key, keybits, &block, (comp, level, check))?;
            }
        }
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        set_size_and_times(ip, new_size);
        self.tx.dirty = true;
        Ok(())
    }

    /// Writes a finished file's inode (and its indirect blocks) now rather
    /// than at commit, so that importing any number of files keeps memory
    /// flat. Safe: nothing reaches the new blocks until the header is
    /// written. A later change to the file loads it back from there. In a
    /// dry run nothing is written, so it stays in memory.
    pub(super) fn write_early(&mut self, pfs: &PfsRef, inum: u64) -> Result<()> {
        if !self.write {
            return Ok(());
        }
        let Session { fs, tx, write, .. } = self;
        let root = pfs_root_mut(fs, &mut tx.root, pfs)?;
        let table = root.table_mut().ok_or_else(|| Error::shape("PFS root embeds data"))?;
        let Some(slot) = table.slot_mut(fs, inum, BlockrefType::Inode)? else { return Ok(()) };
        if let Slot::Node(chain) = slot {
            let bref = with_flusher(&mut fs.device, &mut tx.alloc, tx.tid, *write, &mut tx.stats, |f| {
                f.chain(chain)
            })?;
            *slot = Slot::Clean(bref);
        }
        Ok(())
    }
}

pub(super) fn input_error(source: std::io::Error) -> Error {
    Error::Io { path: INPUT.into(), op: "read", offset: 0, source }
}

/// A file's new size, and its mtime and ctime now.
pub(super) fn set_size_and_times(ip: &mut InodeData, size: u64) {
    let now = now_us();
    ip.meta.size = size.into();
    ip.meta.mtime = now.into();
    ip.meta.ctime = now.into();
}
