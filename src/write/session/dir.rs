//! The directory core of a session: lookups, new inodes and their
//! entries, `mkdir` and removal.

use super::*;
use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::dirhash::dirhash;
use crate::format::{
    encode_methods, Blockref, BlockrefType, CheckMethod, CompMethod, InodeData, ObjType, DIRHASH_LOMASK,
    INODE_MAXNAME, SET_COUNT,
};
use crate::read::walk::Flow;
use crate::volume::Hammer2;
use crate::write::chain::{Body, Chain, Slot, Table};

impl Session {
    /// The entry `name` in directory `dir`.
    pub fn lookup(&self, pfs: &PfsRef, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
        self.with_inode(pfs, dir, |ip, table| {
            if ip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            self.lookup_in(table, name)
        })
    }

    pub(super) fn lookup_in(&self, table: &Table, name: &[u8]) -> Result<Option<DirEntry>> {
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
            return Err(Error::invalid(format!("{path}: '..' is not supported in image paths")));
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
    pub(super) fn next_inum(&mut self, pfs: &PfsRef) -> Result<u64> {
        let root = self.pfs_root_mut(pfs)?;
        let ip = root.inode_mut().ok_or_else(|| Error::shape("PFS root is not an inode"))?;
        let inum = ip.meta.pfs_inum.get().max(INODE_START);
        let next = inum.checked_add(1).ok_or(Error::Exhausted("inode numbers"))?;
        ip.meta.pfs_inum = next.into();
        Ok(inum)
    }

    /// Creates an inode of `kind` named `name` in directory `dir`; returns its number.
    pub(super) fn create(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        name: &[u8],
        kind: ObjType,
        attrs: Attrs,
    ) -> Result<u64> {
        check_new_name(name)?;
        self.need_space(0)?;
        let (dip, dkey) = self.with_inode(pfs, dir, |dip, dtable| {
            if dip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            if self.lookup_in(dtable, name)?.is_some() {
                return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into_owned()));
            }
            Ok((*dip, free_dirent_key(&self.fs, dtable, name)?))
        })?;
        self.tx.changes += 1;
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
        let root = pfs_root_mut(fs, &mut self.tx.root, pfs)?;
        root.insert(fs, Slot::Node(Box::new(chain)))?;
        self.add_dirent(pfs, dir, dkey, name, inum, kind, check)?;
        Ok(inum)
    }

    /// Enters `name` -> `inum` (of `kind`) at key `dkey` of directory `dir`
    /// (a key [`free_dirent_key`] found), and stamps the directory's mtime
    /// and ctime.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_dirent(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        dkey: u64,
        name: &[u8],
        inum: u64,
        kind: ObjType,
        check: CheckMethod,
    ) -> Result<()> {
        self.tx.changes += 1;
        let mut d = Blockref::zeroed();
        d.type_ = BlockrefType::Dirent.into();
        d.key = dkey.into();
        d.methods = encode_methods(check, CompMethod::None);
        d.mirror_tid = self.tx.tid.into();
        d.modify_tid = self.tx.tid.into();
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
        let dchain = inode_mut(fs, &mut self.tx.root, pfs, dir)?;
        stamp_dir(dchain);
        dchain.insert(fs, slot)?;
        self.tx.dirty = true;
        Ok(())
    }

    /// Takes the entry at `dkey` out of directory `dir` (its name block is
    /// released) and stamps the directory's mtime and ctime. The inode is
    /// left alone.
    pub(super) fn drop_dirent(&mut self, pfs: &PfsRef, dir: u64, dkey: u64) -> Result<()> {
        self.tx.changes += 1;
        let fs = &self.fs;
        let dchain = inode_mut(fs, &mut self.tx.root, pfs, dir)?;
        stamp_dir(dchain);
        let table = dchain.table_mut().ok_or_else(|| Error::shape("directory embeds data"))?;
        let removed = table.remove(fs, dkey, BlockrefType::Dirent)?;
        if let Some(b) = removed.as_ref().and_then(Slot::bref).filter(|b| b.radix() != 0) {
            self.tx.alloc.release(b.data_off.get())?;
        }
        self.tx.dirty = true;
        Ok(())
    }

    /// `mkdir` (`parents`: `-p`, existing directories are fine).
    pub fn mkdir(&mut self, pfs: &PfsRef, path: &str, attrs: Attrs, parents: bool) -> Result<u64> {
        self.operation(|s| s.mkdir_op(pfs, path, attrs, parents))
    }

    pub(super) fn mkdir_op(&mut self, pfs: &PfsRef, path: &str, attrs: Attrs, parents: bool) -> Result<u64> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.is_empty() {
            return Err(Error::AlreadyExists(format!("{path} (the root)")));
        }
        let mut dir = pfs.root_inum;
        let mut so_far = String::new();
        for (i, part) in parts.iter().enumerate() {
            so_far.push('/');
            so_far.push_str(part);
            if *part == ".." {
                return Err(Error::invalid(format!("{path}: '..' is not supported in image paths")));
            }
            let last = i + 1 == parts.len();
            match self.lookup(pfs, dir, part.as_bytes())? {
                Some(e) if e.obj_type == ObjType::Directory && (parents || !last) => dir = e.inum,
                Some(_) if last => return Err(Error::AlreadyExists(so_far.to_string())),
                Some(_) => return Err(Error::NotADirectory(so_far)),
                None if last || parents => {
                    dir = self.create(pfs, dir, part.as_bytes(), ObjType::Directory, attrs)?
                }
                None => return Err(Error::NotFound(so_far)),
            }
        }
        Ok(dir)
    }

    /// `rm`: removes a file, symlink or (with `dir_ok`) empty directory.
    pub fn remove(&mut self, pfs: &PfsRef, path: &str, dir_ok: bool) -> Result<()> {
        self.operation(|s| s.remove_op(pfs, path, dir_ok))
    }

    pub(super) fn remove_op(&mut self, pfs: &PfsRef, path: &str, dir_ok: bool) -> Result<()> {
        let (dir, name, existing) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(Error::invalid("cannot remove the root directory"));
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
                return Err(Error::NotEmpty(path.to_string()));
            }
        }
        self.drop_dirent(pfs, dir, e.key)?;
        self.unlink_inode(pfs, &ip)
    }

    /// One name of inode `ip` is gone: drops a link, or the inode itself
    /// (and releases its own block) when that was the last one.
    pub(super) fn unlink_inode(&mut self, pfs: &PfsRef, ip: &InodeData) -> Result<()> {
        self.tx.changes += 1;
        let fs = &self.fs;
        let inum = ip.meta.inum.get();
        let nlinks = ip.meta.nlinks.get();
        let pinned = self.pinned.contains(&(pfs.key, inum));
        if ip.meta.obj_type() != ObjType::Directory && (nlinks > 1 || pinned) {
            let chain = inode_mut(fs, &mut self.tx.root, pfs, inum)?;
            if let Some(ip) = chain.inode_mut() {
                ip.meta.nlinks = nlinks.saturating_sub(1).into();
                ip.meta.ctime = now_us().into();
            }
        } else {
            let root = pfs_root_mut(fs, &mut self.tx.root, pfs)?;
            let table = root.table_mut().ok_or_else(|| Error::shape("PFS root embeds data"))?;
            if let Some(slot) = table.remove(fs, inum, BlockrefType::Inode)? {
                if let Some(b) = slot.bref().filter(|b| b.radix() != 0) {
                    self.tx.alloc.release(b.data_off.get())?;
                }
            }
        }
        self.tx.dirty = true;
        Ok(())
    }
}

impl Session {
    /// Inode `inum` is open (through a mount): if its last name goes, it
    /// stays, with no links, until [`Session::unpin`].
    pub fn pin(&mut self, pfs: &PfsRef, inum: u64) {
        self.pinned.insert((pfs.key, inum));
    }

    /// Inode `inum` is closed: one left with no links goes now.
    pub fn unpin(&mut self, pfs: &PfsRef, inum: u64) -> Result<()> {
        if !self.pinned.remove(&(pfs.key, inum)) {
            return Ok(());
        }
        let ip = match self.inode_data(pfs, inum) {
            Ok(ip) => ip,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if ip.meta.nlinks.get() == 0 && ip.meta.obj_type() != ObjType::Directory {
            self.operation(|s| s.unlink_inode(pfs, &ip))?;
        }
        Ok(())
    }
}

/// A directory's entries changed: its mtime and ctime become now.
pub(super) fn stamp_dir(dchain: &mut Chain) {
    let now = now_us();
    if let Some(dip) = dchain.inode_mut() {
        dip.meta.mtime = now.into();
        dip.meta.ctime = now.into();
    }
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
    Err(Error::invalid(format!("{:?}: {why}", String::from_utf8_lossy(name))))
}

/// The lowest free directory key for `name` in `table`.
pub(super) fn free_dirent_key(fs: &Hammer2, table: &Table, name: &[u8]) -> Result<u64> {
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
            Error::invalid(format!("{}: too many names with the same hash", String::from_utf8_lossy(name)))
        })
}

/// A dirent's name: in the check area, or in its media block.
pub(super) fn dirent_name(
    fs: &Hammer2,
    b: &Blockref,
    chain: Option<&Chain>,
    loc: &Location,
) -> Result<Vec<u8>> {
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
