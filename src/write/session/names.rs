//! Operations on names: hard links, symbolic links, device nodes and
//! FIFOs, and rename.
//!
//! How current HAMMER2 keeps them (hammer2_xops.c, hammer2_inode.c since
//! the 2017 rework; the `varied` fixture agrees): every inode lives in the
//! PFS root's inode index, keyed by its number, and a directory entry only
//! names an inode number. A hard link is one more entry naming the same
//! number, with the inode's `nlinks` counting the entries; there are no
//! hardlink-target inodes any more. Directories keep `nlinks` 1 (their
//! subdirectories are not counted, unlike UFS). A symbolic link keeps its
//! target as file data (embedded up to 512 bytes). A rename takes the old
//! entry out, enters the new one (replacing a target and dropping one of
//! its links) and points the inode's `iparent` at the new directory; the
//! kernel's rename stamps only the directories' mtime, we stamp mtime and
//! ctime as POSIX asks (as the kernel's link and remove do). Device nodes carry
//! their numbers in `rmajor`/`rminor`; FIFOs and sockets are inodes of
//! their object type with no data.

use super::{check_new_name, free_dirent_key, now_us, Attrs, DirEntry, PfsRef, Session};
use crate::error::{Error, Result};
use crate::format::{CheckMethod, InodeData, ObjType, DIRHASH_VISIBLE};
use crate::read::walk::Flow;

impl Session {
    /// An existing entry: (directory, name, entry). The root has no entry.
    pub(crate) fn existing(&self, pfs: &PfsRef, path: &str) -> Result<(u64, Vec<u8>, DirEntry)> {
        let (dir, name, e) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(Error::invalid(format!("{path}: the PFS root has no name to change")));
        }
        let e = e.ok_or_else(|| Error::NotFound(path.to_string()))?;
        Ok((dir, name, e))
    }

    /// A copy of inode `inum`.
    pub fn inode_data(&self, pfs: &PfsRef, inum: u64) -> Result<InodeData> {
        self.with_inode(pfs, inum, |ip, _| Ok(*ip))
    }

    /// Whether directory `inum` holds no entries.
    pub(crate) fn dir_is_empty(&self, pfs: &PfsRef, inum: u64) -> Result<bool> {
        self.with_inode(pfs, inum, |_, table| {
            let mut any = false;
            table.scan(&self.fs, DIRHASH_VISIBLE, u64::MAX, &mut |b, _, _| {
                any |= b.kind() == crate::format::BlockrefType::Dirent;
                Ok(if any { Flow::Stop } else { Flow::Continue })
            })?;
            Ok(!any)
        })
    }

    /// Where a new name `path` goes: (directory, name), refused when taken.
    fn new_name(&self, pfs: &PfsRef, path: &str) -> Result<(u64, Vec<u8>)> {
        let (dir, name, existing) = self.resolve_parent(pfs, path)?;
        if name.is_empty() {
            return Err(Error::invalid(format!("{path}: needs a name")));
        }
        check_new_name(&name)?;
        if existing.is_some() {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        Ok((dir, name))
    }

    /// The check method and a free entry key for `name` in directory `dir`.
    fn dirent_slot(&self, pfs: &PfsRef, dir: u64, name: &[u8]) -> Result<(CheckMethod, u64)> {
        self.with_inode(pfs, dir, |dip, table| {
            if dip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            Ok((CheckMethod::from(dip.meta.check_algo & 15), free_dirent_key(&self.fs, table, name)?))
        })
    }

    /// `ln`: a new name `new` for the file at `target` (not a directory).
    pub fn link(&mut self, pfs: &PfsRef, target: &str, new: &str) -> Result<()> {
        self.operation(|s| s.link_op(pfs, target, new))
    }

    fn link_op(&mut self, pfs: &PfsRef, target: &str, new: &str) -> Result<()> {
        let (_, _, e) = self.existing(pfs, target)?;
        if e.obj_type == ObjType::Directory {
            return Err(Error::invalid(format!("{target}: hard links to directories are not allowed")));
        }
        let (dir, name) = self.new_name(pfs, new)?;
        self.link_in(pfs, dir, &name, e.inum, e.obj_type)?;
        let ip = self.inode_mut(pfs, e.inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.ctime = now_us().into();
        Ok(())
    }

    /// `link(2)`: the new name `name` in directory `dir` for inode `inum`
    /// (not a directory).
    pub fn link_at(&mut self, pfs: &PfsRef, inum: u64, dir: u64, name: &[u8]) -> Result<()> {
        self.operation(|s| {
            check_new_name(name)?;
            let ip = s.inode_data(pfs, inum)?;
            let kind = ip.meta.obj_type();
            if kind == ObjType::Directory {
                return Err(Error::invalid(format!(
                    "inode {inum}: hard links to directories are not allowed"
                )));
            }
            if s.lookup(pfs, dir, name)?.is_some() {
                return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into_owned()));
            }
            s.link_in(pfs, dir, name, inum, kind)?;
            let ip = s.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            ip.meta.ctime = now_us().into();
            Ok(())
        })
    }

    /// A new inode of `kind` named `name` in directory `dir` (`creat`,
    /// `mkdir`, `mknod`, `symlink`): a symlink gets `target` as its
    /// contents, a device node its numbers `rdev`. Returns its number.
    #[allow(clippy::too_many_arguments)]
    pub fn create_at(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        name: &[u8],
        kind: ObjType,
        attrs: Attrs,
        target: &[u8],
        rdev: (u32, u32),
    ) -> Result<u64> {
        self.operation(|s| {
            if kind == ObjType::Softlink && (target.is_empty() || target.len() > 1023 || target.contains(&0))
            {
                return Err(Error::invalid("a link target is 1 to 1023 bytes without NUL"));
            }
            let inum = s.create(pfs, dir, name, kind, attrs)?;
            match kind {
                ObjType::Softlink => s.write_contents(pfs, inum, target, target.len() as u64)?,
                ObjType::Cdev | ObjType::Bdev => {
                    let ip =
                        s.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
                    ip.meta.rmajor = rdev.0.into();
                    ip.meta.rminor = rdev.1.into();
                }
                _ => {}
            }
            Ok(inum)
        })
    }

    /// Enters the free name `name` in directory `dir` for the existing
    /// inode `inum` (of `kind`), which counts one more link: the inode
    /// keeps its place, as the kernel keeps hard-linked inodes since
    /// DragonFly 5.0.
    pub(crate) fn link_in(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        name: &[u8],
        inum: u64,
        kind: ObjType,
    ) -> Result<()> {
        self.need_space(0)?;
        let (check, dkey) = self.dirent_slot(pfs, dir, name)?;
        self.add_dirent(pfs, dir, dkey, name, inum, kind, check)?;
        let ip = self.inode_mut(pfs, inum)?.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.nlinks = ip.meta.nlinks.get().saturating_add(1).into();
        Ok(())
    }

    /// `ln -s`: a symbolic link `path` holding `target`.
    pub fn symlink(&mut self, pfs: &PfsRef, path: &str, target: &[u8], attrs: Attrs) -> Result<u64> {
        self.operation(|s| s.symlink_op(pfs, path, target, attrs))
    }

    fn symlink_op(&mut self, pfs: &PfsRef, path: &str, target: &[u8], attrs: Attrs) -> Result<u64> {
        if target.is_empty() || target.len() > 1023 || target.contains(&0) {
            return Err(Error::invalid(format!("{path}: a link target is 1 to 1023 bytes without NUL")));
        }
        let (dir, name) = self.new_name(pfs, path)?;
        let inum = self.create(pfs, dir, &name, ObjType::Softlink, attrs)?;
        self.write_contents(pfs, inum, target, target.len() as u64)?;
        Ok(inum)
    }

    /// `mknod`/`mkfifo`: a device node (`rdev`: major, minor), FIFO or socket.
    pub fn mknod(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        kind: ObjType,
        attrs: Attrs,
        rdev: (u32, u32),
    ) -> Result<u64> {
        self.operation(|s| s.mknod_op(pfs, path, kind, attrs, rdev))
    }

    fn mknod_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        kind: ObjType,
        attrs: Attrs,
        rdev: (u32, u32),
    ) -> Result<u64> {
        if !matches!(kind, ObjType::Cdev | ObjType::Bdev | ObjType::Fifo | ObjType::Socket) {
            return Err(Error::invalid(format!(
                "{path}: mknod makes device nodes, FIFOs and sockets, not {kind}"
            )));
        }
        let (dir, name) = self.new_name(pfs, path)?;
        let inum = self.create(pfs, dir, &name, kind, attrs)?;
        if matches!(kind, ObjType::Cdev | ObjType::Bdev) {
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            ip.meta.rmajor = rdev.0.into();
            ip.meta.rminor = rdev.1.into();
        }
        Ok(inum)
    }

    /// `rename(2)`: `from` takes the name `to`, across directories. An
    /// existing `to` is replaced when both are files (non-directories) or
    /// both directories and `to` is empty; a directory cannot move below
    /// itself; two names of one inode leave everything as it is.
    pub fn rename(&mut self, pfs: &PfsRef, from: &str, to: &str) -> Result<()> {
        self.operation(|s| s.rename_op(pfs, from, to))
    }

    fn rename_op(&mut self, pfs: &PfsRef, from: &str, to: &str) -> Result<()> {
        let (sdir, _, se) = self.existing(pfs, from)?;
        let (tdir, tname, te) = self.resolve_parent(pfs, to)?;
        if tname.is_empty() {
            return Err(Error::invalid(format!("{to}: the PFS root cannot be replaced")));
        }
        check_new_name(&tname)?;
        let src_dir = se.obj_type == ObjType::Directory;
        if src_dir {
            // Paths are resolved without symlinks or '..': below `from`
            // means a longer path with `from`'s components as its prefix.
            let f = crate::read::namespace::user_path(from)?;
            let t = crate::read::namespace::user_path(to)?;
            if t.len() > f.len() && t[..f.len()] == f[..] {
                return Err(Error::invalid(format!("{from}: cannot move a directory into itself ({to})")));
            }
        }
        self.rename_entries(pfs, sdir, se, tdir, &tname, te, to)
    }

    /// `rename(2)` by directory and name: the entry `sname` of directory
    /// `sdir` takes the name `tname` in `tdir` (see [`Session::rename`]).
    /// A directory cannot move below itself: no directory on the way from
    /// `tdir` up to the root (through `iparent`, which a directory's one
    /// name keeps current) may be the one moved.
    pub fn rename_at(
        &mut self,
        pfs: &PfsRef,
        sdir: u64,
        sname: &[u8],
        tdir: u64,
        tname: &[u8],
    ) -> Result<()> {
        self.operation(|s| {
            let shown = String::from_utf8_lossy(tname).into_owned();
            check_new_name(tname)?;
            let se = s
                .lookup(pfs, sdir, sname)?
                .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(sname).into_owned()))?;
            let te = s.lookup(pfs, tdir, tname)?;
            if se.obj_type == ObjType::Directory {
                let mut d = tdir;
                for _ in 0..crate::read::namespace::MAX_DEPTH {
                    if d == se.inum {
                        return Err(Error::invalid(format!("{shown}: cannot move a directory into itself")));
                    }
                    if d == pfs.root_inum {
                        break;
                    }
                    d = s.inode_data(pfs, d)?.meta.iparent.get();
                }
            }
            s.rename_entries(pfs, sdir, se, tdir, tname, te, &shown)
        })
    }

    /// The checks and changes of a rename once both ends are known.
    #[allow(clippy::too_many_arguments)]
    fn rename_entries(
        &mut self,
        pfs: &PfsRef,
        sdir: u64,
        se: DirEntry,
        tdir: u64,
        tname: &[u8],
        te: Option<DirEntry>,
        to: &str,
    ) -> Result<()> {
        let src_dir = se.obj_type == ObjType::Directory;
        if let Some(te) = &te {
            if te.inum == se.inum {
                return Ok(());
            }
            match (src_dir, te.obj_type == ObjType::Directory) {
                (true, true) if !self.dir_is_empty(pfs, te.inum)? => {
                    return Err(Error::NotEmpty(to.to_string()))
                }
                (true, false) => return Err(Error::NotADirectory(to.to_string())),
                (false, true) => return Err(Error::IsADirectory(to.to_string())),
                _ => {}
            }
        }
        // Everything checked: change.
        let (check, _) = self.dirent_slot(pfs, tdir, tname)?;
        if let Some(te) = te {
            let tip = self.inode_data(pfs, te.inum)?;
            self.drop_dirent(pfs, tdir, te.key)?;
            self.unlink_inode(pfs, &tip)?;
        }
        self.drop_dirent(pfs, sdir, se.key)?;
        let (_, dkey) = self.dirent_slot(pfs, tdir, tname)?;
        self.add_dirent(pfs, tdir, dkey, tname, se.inum, se.obj_type, check)?;
        let chain = self.inode_mut(pfs, se.inum)?;
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        ip.meta.ctime = now_us().into();
        // As the kernel's rename: `iparent` follows the entry, for files
        // with several names too (it is a hint for recovery tools).
        ip.meta.iparent = tdir.into();
        Ok(())
    }
}

impl Session {
    /// The entries of directory `dir`, in key order.
    pub fn readdir(&self, pfs: &PfsRef, dir: u64) -> Result<Vec<(Vec<u8>, DirEntry)>> {
        self.with_inode(pfs, dir, |dip, table| {
            if dip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {dir}")));
            }
            let mut out = Vec::new();
            self.scan_dirents(table, DIRHASH_VISIBLE, u64::MAX, &mut |name, e| {
                out.push((name, e));
                Flow::Continue
            })?;
            Ok(out)
        })
    }

    /// Removes the entry `e` of directory `dir` (`path` names it in
    /// errors); a directory must be empty and `dir_ok` set.
    pub fn remove_entry(
        &mut self,
        pfs: &PfsRef,
        dir: u64,
        e: &DirEntry,
        path: &str,
        dir_ok: bool,
    ) -> Result<()> {
        self.operation(|s| s.remove_entry_op(pfs, dir, e, path, dir_ok))
    }

    /// The contents of file (or symlink) `inum` as this session sees them,
    /// holes as zeros. In a dry run the blocks this session would have
    /// written are read from what it kept of them (memory, then a
    /// temporary file).
    pub fn read_data(&self, pfs: &PfsRef, inum: u64, out: &mut dyn std::io::Write) -> Result<()> {
        let wr = |source| Error::Io { path: "output".into(), op: "write", offset: 0, source };
        let ip = self.inode_data(pfs, inum)?;
        let size = ip.meta.size.get();
        if ip.meta.is_directdata() {
            let n = (size as usize).min(ip.u.len());
            return out.write_all(&ip.u[..n]).map_err(wr);
        }
        let mut blocks = Vec::new();
        self.with_inode(pfs, inum, |_, table| {
            table.scan(&self.fs, 0, u64::MAX, &mut |b, _, loc| {
                if b.kind() == crate::format::BlockrefType::Data {
                    blocks.push((*b, loc.clone()));
                }
                Ok(Flow::Continue)
            })
        })?;
        blocks.sort_by_key(|(b, _)| b.key.get());
        let zeros = vec![0u8; 65536];
        let mut pos = 0u64;
        for (b, loc) in blocks {
            let key = b.key.get();
            if key >= size {
                break;
            }
            while pos < key {
                let n = (key - pos).min(zeros.len() as u64) as usize;
                out.write_all(&zeros[..n]).map_err(wr)?;
                pos += n as u64;
            }
            let data = self.block_data(&b, &loc)?;
            let n = (data.len() as u64).min(size - key) as usize;
            out.write_all(&data[..n]).map_err(wr)?;
            pos = key + n as u64;
        }
        while pos < size {
            let n = (size - pos).min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..n]).map_err(wr)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Bytes `offset .. offset + len` of file (or symlink) `inum` as this
    /// session sees them (holes as zeros, none past its size): only the
    /// blocks that meet the range are read.
    pub fn read_range(&self, pfs: &PfsRef, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let ip = self.inode_data(pfs, inum)?;
        let size = ip.meta.size.get();
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        if ip.meta.is_directdata() {
            let have = (size as usize).min(ip.u.len());
            let (lo, hi) = ((offset as usize).min(have), (end as usize).min(have));
            out[..hi - lo].copy_from_slice(&ip.u[lo..hi]);
            return Ok(out);
        }
        let mut blocks = Vec::new();
        self.with_inode(pfs, inum, |_, table| {
            table.scan(&self.fs, offset, end - 1, &mut |b, _, loc| {
                if b.kind() == crate::format::BlockrefType::Data {
                    blocks.push((*b, loc.clone()));
                }
                Ok(Flow::Continue)
            })
        })?;
        for (b, loc) in blocks {
            let key = b.key.get();
            let data = self.block_data(&b, &loc)?;
            // The part of this block inside the range.
            let lo = key.max(offset);
            let hi = (key + data.len() as u64).min(end);
            if lo < hi {
                out[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&data[(lo - key) as usize..(hi - key) as usize]);
            }
        }
        Ok(out)
    }
}
