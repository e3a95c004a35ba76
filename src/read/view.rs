//! One read interface over a PFS: what `ls`, `cat`, `stat`, `get` and the
//! mount need (inodes, lookups, directory listings, contents), whatever
//! holds the PFS: the committed image ([`Pfs`], through the traversal
//! engine) or a write session's uncommitted state (the session's chains,
//! in [`crate::write::session`]). Code written against [`FsView`] reads
//! both the same way.

use crate::error::{Error, Location, Result};
use crate::format::{Blockref, InodeData, ObjType};
use crate::read::file::{read_file, read_range, WriteSink};
use crate::read::pfs::{user_path, DirEntry, Pfs};

/// A PFS as a tree of inodes.
pub trait FsView {
    /// The PFS's label.
    fn label(&self) -> String;

    /// The root directory's inode number.
    fn root_inum(&self) -> u64;

    /// Inode `inum`.
    fn inode(&self, inum: u64) -> Result<InodeData>;

    /// The blockref holding inode `inum` and where it lies, where one
    /// exists on media (None: not committed yet, or not known to this view).
    fn inode_blockref(&self, _inum: u64) -> Result<Option<(Blockref, Location)>> {
        Ok(None)
    }

    /// The entry `name` of directory `dir`.
    fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<DirEntry>>;

    /// The entries of directory `dir`, in no particular order.
    fn readdir(&self, dir: u64) -> Result<Vec<DirEntry>>;

    /// The contents of file or symlink `inum` (holes as zeros) into `out`.
    fn read(&self, inum: u64, out: &mut dyn std::io::Write) -> Result<()>;

    /// Bytes `offset .. offset + len` of file or symlink `inum` (holes as
    /// zeros; fewer at its end, none past it), reading only the blocks
    /// that meet the range.
    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// A symbolic link's target.
    fn read_link(&self, inum: u64) -> Result<Vec<u8>> {
        let mut target = Vec::new();
        self.read(inum, &mut target)?;
        Ok(target)
    }

    /// The inode an absolute or PFS-relative path names (symlinks are not
    /// followed; `..` is refused, never looked up: an image may hold an
    /// entry of that name).
    fn resolve(&self, path: &str) -> Result<(u64, InodeData)> {
        let mut inum = self.root_inum();
        let mut ip = self.inode(inum)?;
        let mut so_far = String::new();
        for part in user_path(path)? {
            so_far.push('/');
            so_far.push_str(part);
            if ip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(so_far));
            }
            let e = self.lookup(inum, part.as_bytes())?.ok_or_else(|| Error::NotFound(so_far.clone()))?;
            inum = e.inum;
            ip = self.inode(inum)?;
        }
        Ok((inum, ip))
    }
}

impl FsView for Pfs<'_> {
    fn label(&self) -> String {
        self.name()
    }

    fn root_inum(&self) -> u64 {
        self.root.inum()
    }

    fn inode(&self, inum: u64) -> Result<InodeData> {
        Ok(*Pfs::inode(self, inum)?.data)
    }

    fn inode_blockref(&self, inum: u64) -> Result<Option<(Blockref, Location)>> {
        let ino = Pfs::inode(self, inum)?;
        Ok(Some((*ino.bref, ino.loc)))
    }

    fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
        let d = Pfs::inode(self, dir)?;
        if !d.is_dir() {
            return Err(Error::NotADirectory(format!("inode {dir}")));
        }
        self.lookup_name(&d, name)
    }

    fn readdir(&self, dir: u64) -> Result<Vec<DirEntry>> {
        Pfs::readdir(self, &Pfs::inode(self, dir)?)
    }

    fn read(&self, inum: u64, out: &mut dyn std::io::Write) -> Result<()> {
        let ino = Pfs::inode(self, inum)?;
        let mut sink = WriteSink(out);
        read_file(&self.tree, &ino, &mut sink)?;
        Ok(())
    }

    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let ino = Pfs::inode(self, inum)?;
        let mut sink = WriteSink(Vec::with_capacity(len.min(1 << 20)));
        read_range(&self.tree, &ino, offset, len as u64, &mut sink)?;
        Ok(sink.0)
    }
}
