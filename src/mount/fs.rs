//! The FUSE request handlers.

use super::attr::{attr_of, errno, file_type, InodeMap};
use super::{Log, MountOptions};
use crate::error::{Error, Location, Result};
use crate::format::{Blockref, ObjType, INODE_MAXNAME};
use crate::read::pfs::{Inode, Pfs};
use crate::read::tree::Tree;
use crate::read::view::FsView;
use crate::volume::Hammer2;
use fuser::{
    Errno, FileHandle, FileType, FopenFlags, Generation, INodeNo, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// How long the kernel may trust what a read-only mount told it: the image
/// cannot change while the mount holds its lock.
const RO_TTL: Duration = Duration::from_secs(24 * 3600);

/// The committed image, read through the traversal engine.
struct Committed {
    fs: Hammer2,
    /// The PFS root's blockref and where it lies.
    root: Blockref,
    root_loc: Location,
}

impl Committed {
    fn with<R>(&self, f: impl FnOnce(&dyn FsView) -> Result<R>) -> Result<R> {
        let tree = Tree::new(&self.fs);
        let data = tree.inode(&self.root, &self.root_loc)?;
        let pfs = Pfs { tree, root: Inode { bref: &self.root, loc: self.root_loc.clone(), data } };
        f(&pfs)
    }
}

/// A mounted PFS: the FUSE file system.
pub struct Hammer2Fs {
    map: InodeMap,
    label: String,
    backend: Committed,
    log: Log,
    ttl: Duration,
    /// Total and free bytes, for statfs.
    space: (u64, u64),
}

impl Hammer2Fs {
    /// A mount of PFS `pfs` (None: DATA, or the only one but LOCAL) of `fs`.
    pub fn new(fs: Hammer2, pfs: Option<&str>, options: &MountOptions, log: Log) -> Result<Hammer2Fs> {
        if options.write {
            return Err(Error::invalid("read-write mounts (-o rw) are not available yet"));
        }
        let tree = Tree::new(&fs);
        let found = match pfs {
            Some(label) => Pfs::find(&tree, label)?,
            None => Pfs::default(&tree)?,
        };
        let (root, root_loc, label) = (*found.root.bref, found.root.loc.clone(), found.name());
        let map = InodeMap { root: found.root.inum() };
        let v = &fs.voldata;
        let space = (v.allocator_size.get(), v.allocator_free.get());
        Ok(Hammer2Fs { map, label, backend: Committed { fs, root, root_loc }, log, ttl: RO_TTL, space })
    }

    /// The mounted PFS's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn view<R>(&self, f: impl FnOnce(&dyn FsView) -> Result<R>) -> Result<R> {
        self.backend.with(f)
    }

    /// The errno for `e`; damage and I/O errors are logged with what was
    /// being done.
    fn fail(&self, what: std::fmt::Arguments<'_>, e: &Error) -> Errno {
        let code = errno(e);
        if code == libc::EIO {
            (self.log)(&format!("{what}: {e}"));
        }
        Errno::from_i32(code)
    }
}

impl fuser::Filesystem for Hammer2Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        if name.len() >= INODE_MAXNAME {
            return reply.error(Errno::from_i32(libc::ENAMETOOLONG));
        }
        let dir = self.map.to_h2(parent);
        let found = self.view(|v| match v.lookup(dir, name)? {
            Some(e) => Ok(Some(v.inode(e.inum)?)),
            None => Ok(None),
        });
        match found {
            Ok(Some(ip)) => reply.entry(&self.ttl, &attr_of(&self.map, &ip), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(
                self.fail(format_args!("lookup of {:?} in inode {dir}", String::from_utf8_lossy(name)), &e),
            ),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let inum = self.map.to_h2(ino);
        match self.view(|v| v.inode(inum)) {
            Ok(ip) => reply.attr(&self.ttl, &attr_of(&self.map, &ip)),
            Err(e) => reply.error(self.fail(format_args!("getattr of inode {inum}"), &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inum = self.map.to_h2(ino);
        match self.view(|v| v.read_link(inum)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail(format_args!("readlink of inode {inum}"), &e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let inum = self.map.to_h2(ino);
        match self.view(|v| v.read_at(inum, offset, size as usize)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.fail(format_args!("read of inode {inum} at {offset:#x}"), &e)),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let inum = self.map.to_h2(ino);
        let listed = self.view(|v| {
            let dip = v.inode(inum)?;
            if dip.meta.obj_type() != ObjType::Directory {
                return Err(Error::NotADirectory(format!("inode {inum}")));
            }
            let mut entries = v.readdir(inum)?;
            entries.sort_by_key(|e| e.key);
            Ok((dip.meta.iparent.get(), entries))
        });
        let (parent, entries) = match listed {
            Ok(l) => l,
            Err(e) => return reply.error(self.fail(format_args!("readdir of inode {inum}"), &e)),
        };
        // Offsets: 1 and 2 after `.` and `..`, then one past each entry's
        // key (bit 63 cleared, so that the kernel's signed position stays
        // positive): stable while entries come and go.
        let parent = if inum == self.map.root || parent == 0 { inum } else { parent };
        let dots = [(1u64, inum, &b"."[..]), (2, parent, &b".."[..])];
        for (off, n, name) in dots {
            if off > offset
                && reply.add(self.map.to_fuse(n), off, FileType::Directory, OsStr::from_bytes(name))
            {
                return reply.ok();
            }
        }
        for e in &entries {
            let off = entry_offset(e.key);
            if off <= offset {
                continue;
            }
            if reply.add(self.map.to_fuse(e.inum), off, file_type(e.obj_type), OsStr::from_bytes(&e.name)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bsize = super::attr::BLKSIZE as u64;
        let (total, free) = self.space;
        // One inode takes 1 KiB: as many more as the free space holds.
        let ffree = free / 1024;
        reply.statfs(
            total / bsize,
            free / bsize,
            free / bsize,
            ffree,
            ffree,
            bsize as u32,
            255,
            bsize as u32,
        );
    }
}

/// The readdir offset that follows the entry keyed `key`.
fn entry_offset(key: u64) -> u64 {
    (key & !(1u64 << 63)).saturating_add(3).min(i64::MAX as u64)
}
