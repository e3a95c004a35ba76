//! One read interface over a PFS: what `ls`, `cat`, `stat`, `get` and the
//! mount need (inodes, lookups, directory listings, contents), whatever
//! holds the PFS: the committed image ([`Pfs`], through the traversal
//! engine) or a write session's uncommitted state (the session's chains,
//! in [`crate::write::session`]). Code written against [`FsView`] reads
//! both the same way: the namespace walk ([`crate::read::namespace`]) and
//! so the extraction ([`crate::host::extract`]) are written once, on it.
//!
//! A few methods have defaults that any view can live with and that the
//! committed image overrides to go faster: [`FsView::scan_dir`] streams a
//! directory instead of collecting it, [`FsView::read_ahead`] fetches the
//! inodes of one directory's entries in one pass over the inode index, and
//! [`FsView::read_data`] hands out holes as holes rather than as zeros.

use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::{Blockref, InodeData};
use crate::read::file::{read_file, read_range, Sink, WriteSink};
use crate::read::pfs::{user_path, DirEntry, Inode, Pfs};
use crate::read::tree::Flow;
use crate::Hammer2;
use std::collections::HashMap;

/// Longest symbolic link target read (a longer one is damage: targets are
/// paths, bounded by the host's PATH_MAX).
pub const MAX_LINK_BYTES: u64 = 65536;

/// An inode's contents, borrowed from the image where it is mapped there,
/// else owned (boxed: an inode is 1 KiB, and walks move these around).
#[derive(Clone)]
pub enum InodeRef<'v> {
    Mapped(&'v InodeData),
    Owned(Box<InodeData>),
}

impl std::ops::Deref for InodeRef<'_> {
    type Target = InodeData;
    fn deref(&self) -> &InodeData {
        match self {
            InodeRef::Mapped(d) => d,
            InodeRef::Owned(d) => d,
        }
    }
}

/// An inode as a view hands it out: its contents (`data`: its number,
/// type and the rest through [`InodeData`]) and, when it lies on media, the
/// blockref that reaches it and where that sits.
#[derive(Clone)]
pub struct ViewInode<'v> {
    pub data: InodeRef<'v>,
    /// None: not on media (not committed yet), or not known to the view.
    pub at: Option<(&'v Blockref, Location)>,
}

impl<'v> ViewInode<'v> {
    /// An inode of the committed image.
    pub fn on_media(ino: &Inode<'v>) -> Self {
        ViewInode { data: InodeRef::Mapped(ino.data), at: Some((ino.bref, ino.loc.clone())) }
    }

    /// Where the inode lies, for errors (the default location when it is
    /// not on media).
    pub fn location(&self) -> Location {
        self.at.as_ref().map(|(_, loc)| loc.clone()).unwrap_or_default()
    }
}

/// A PFS as a tree of inodes.
pub trait FsView {
    /// The file system the PFS lives in (its size bounds a walk's work).
    fn fs(&self) -> &Hammer2;

    /// The PFS's label.
    fn label(&self) -> String;

    /// The root directory's inode number.
    fn root_inum(&self) -> u64;

    /// Inode `inum`.
    fn inode(&self, inum: u64) -> Result<ViewInode<'_>>;

    /// The entry `name` of directory `dir`.
    fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<DirEntry>>;

    /// The entries of directory `dir`, in no particular order.
    fn readdir(&self, dir: u64) -> Result<Vec<DirEntry>>;

    /// Hands the entries of directory `dir` (as [`FsView::inode`] gave it) to `visit` one by one, in no
    /// particular order, until it says stop. The default reads the whole
    /// directory first ([`FsView::readdir`]); a view that can stream does,
    /// so that a walk's entry budget stops a hostile directory early.
    fn scan_dir(&self, dir: &ViewInode<'_>, visit: &mut dyn FnMut(DirEntry) -> Result<Flow>) -> Result<()> {
        for e in self.readdir(dir.data.inum())? {
            if visit(e)? == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    /// A hint: the inodes numbered `inums` will be wanted soon (the entries
    /// of one directory). A view may return some or all of them, found
    /// well, in one pass; what it leaves out is asked for with
    /// [`FsView::inode`] when it is wanted, so errors come where they would
    /// without the hint. The default returns nothing.
    fn read_ahead(&self, _inums: &[u64]) -> HashMap<u64, ViewInode<'_>> {
        HashMap::new()
    }

    /// The contents of file or symlink `ino` (its `size` bytes) into `out`;
    /// returns the size.
    fn read_data(&self, ino: &ViewInode<'_>, out: &mut dyn Sink) -> Result<u64>;

    /// The contents of file or symlink `inum` (holes as zeros) into `out`.
    fn read(&self, inum: u64, out: &mut dyn std::io::Write) -> Result<()> {
        let ino = self.inode(inum)?;
        self.read_data(&ino, &mut WriteSink(out))?;
        Ok(())
    }

    /// Bytes `offset .. offset + len` of file or symlink `inum` (holes as
    /// zeros; fewer at its end, none past it), reading only the blocks
    /// that meet the range.
    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// A symbolic link's target (bounded by [`MAX_LINK_BYTES`]).
    fn read_link(&self, ino: &ViewInode<'_>) -> Result<Vec<u8>> {
        let size = ino.data.meta.size.get();
        if size > MAX_LINK_BYTES {
            return Err(Error::corrupt(
                CorruptKind::BadInode(format!("symlink of {size} bytes")),
                ino.location(),
            ));
        }
        let mut sink = WriteSink(Vec::with_capacity(size as usize));
        self.read_data(ino, &mut sink)?;
        Ok(sink.0)
    }

    /// The inode an absolute or PFS-relative path names (symlinks are not
    /// followed; `..` is refused, never looked up: an image may hold an
    /// entry of that name).
    fn resolve(&self, path: &str) -> Result<(u64, ViewInode<'_>)> {
        let mut inum = self.root_inum();
        let mut ip = self.inode(inum)?;
        let mut so_far = String::new();
        for part in user_path(path)? {
            so_far.push('/');
            so_far.push_str(part);
            if !ip.data.is_dir() {
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
    fn fs(&self) -> &Hammer2 {
        self.tree.fs
    }

    fn label(&self) -> String {
        self.name()
    }

    fn root_inum(&self) -> u64 {
        self.root.inum()
    }

    fn inode(&self, inum: u64) -> Result<ViewInode<'_>> {
        Ok(ViewInode::on_media(&Pfs::inode(self, inum)?))
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

    fn scan_dir(&self, dir: &ViewInode<'_>, visit: &mut dyn FnMut(DirEntry) -> Result<Flow>) -> Result<()> {
        match &dir.at {
            Some((bref, loc)) => {
                let dir = Inode { bref, loc: loc.clone(), data: &dir.data };
                Pfs::scan_dir(self, &dir, 0, u64::MAX, visit)
            }
            None => Pfs::scan_dir(self, &Pfs::inode(self, dir.data.inum())?, 0, u64::MAX, visit),
        }
    }

    fn read_ahead(&self, inums: &[u64]) -> HashMap<u64, ViewInode<'_>> {
        self.inodes_near(inums).into_iter().map(|(n, ino)| (n, ViewInode::on_media(&ino))).collect()
    }

    fn read_data(&self, ino: &ViewInode<'_>, out: &mut dyn Sink) -> Result<u64> {
        match &ino.at {
            Some((bref, loc)) => {
                let ino = Inode { bref, loc: loc.clone(), data: &ino.data };
                read_file(&self.tree, &ino, out)
            }
            // Not one of this view's (a copy made elsewhere): read it afresh.
            None => read_file(&self.tree, &Pfs::inode(self, ino.data.inum())?, out),
        }
    }

    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let ino = Pfs::inode(self, inum)?;
        let mut sink = WriteSink(Vec::with_capacity(len.min(1 << 20)));
        read_range(&self.tree, &ino, offset, len as u64, &mut sink)?;
        Ok(sink.0)
    }
}
