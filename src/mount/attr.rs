//! Inodes as the kernel sees them: attributes, file types, inode numbers,
//! and errors as errno values.

use crate::error::Error;
use crate::format::{InodeData, ObjType, INODE_BYTES};
use fuser::{FileAttr, FileType, INodeNo};
use std::time::{Duration, SystemTime};

/// Preferred I/O size reported to `stat` (HAMMER2's largest data block).
pub const BLKSIZE: u32 = 65536;

/// Inode numbers between HAMMER2 and FUSE: the kernel calls the mount's
/// root 1, HAMMER2 calls it by its own number (1 on every image we know).
/// The two numbers trade places, so every other inode keeps its HAMMER2
/// number (what `ls -i` shows, and hard links share).
#[derive(Debug, Clone, Copy)]
pub struct InodeMap {
    pub root: u64,
}

impl InodeMap {
    pub fn to_h2(&self, ino: INodeNo) -> u64 {
        swap(ino.0, self.root)
    }
    pub fn to_fuse(&self, inum: u64) -> INodeNo {
        INodeNo(swap(inum, self.root))
    }
}

fn swap(n: u64, root: u64) -> u64 {
    if n == 1 {
        root
    } else if n == root {
        1
    } else {
        n
    }
}

/// HAMMER2 times are microseconds since the epoch.
pub fn to_time(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// The kernel's file type for an object type (unknown ones read as files).
pub fn file_type(t: ObjType) -> FileType {
    match t {
        ObjType::Directory => FileType::Directory,
        ObjType::Fifo => FileType::NamedPipe,
        ObjType::Cdev => FileType::CharDevice,
        ObjType::Bdev => FileType::BlockDevice,
        ObjType::Softlink => FileType::Symlink,
        ObjType::Socket => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// Linux's 32-bit device number encoding (what the FUSE protocol carries).
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The attributes `stat` shows for inode `ip`, as `hammer2_edit get`
/// restores them and as HAMMER2's own getattr reports them: mode, owner,
/// size, link count as stored; the access time is the stored one where
/// one was set (utimensat, an import), else the mtime, which is what
/// HAMMER2's kernel shows (it does not keep access times up to date);
/// directories count one inode's worth of bytes.
pub fn attr_of(map: &InodeMap, ip: &InodeData) -> FileAttr {
    let m = &ip.meta;
    let kind = file_type(m.obj_type());
    let size = m.size.get();
    let bytes = if kind == FileType::Directory { INODE_BYTES as u64 } else { size };
    let rdev = match kind {
        FileType::CharDevice | FileType::BlockDevice => encode_dev(m.rmajor.get(), m.rminor.get()),
        _ => 0,
    };
    FileAttr {
        ino: map.to_fuse(m.inum.get()),
        size,
        blocks: bytes.div_ceil(512),
        atime: to_time(if m.atime.get() != 0 { m.atime.get() } else { m.mtime.get() }),
        mtime: to_time(m.mtime.get()),
        ctime: to_time(m.ctime.get()),
        crtime: to_time(m.btime.get()),
        kind,
        perm: (m.mode.get() & 0o7777) as u16,
        nlink: m.nlinks.get().min(u32::MAX as u64) as u32,
        uid: m.unix_uid(),
        gid: m.unix_gid(),
        rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The errno a kernel file system returns for `e`: damage and I/O
/// failures are EIO.
pub fn errno(e: &Error) -> i32 {
    match e {
        Error::NotFound(_) => libc::ENOENT,
        Error::NotADirectory(_) => libc::ENOTDIR,
        Error::IsADirectory(_) => libc::EISDIR,
        Error::AlreadyExists(_) => libc::EEXIST,
        Error::NotEmpty(_) => libc::ENOTEMPTY,
        Error::NoSpace(_) => libc::ENOSPC,
        Error::Exhausted(_) => libc::ENOSPC,
        Error::ReadOnly { .. } => libc::EROFS,
        Error::InvalidArgument(_) | Error::HostileName { .. } => libc::EINVAL,
        Error::Interrupted => libc::EINTR,
        Error::InFile { source, .. } => errno(source),
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_swap_with_the_root() {
        let m = InodeMap { root: 1 };
        assert_eq!((m.to_h2(INodeNo(1)), m.to_fuse(1025).0), (1, 1025));
        let m = InodeMap { root: 7 };
        assert_eq!((m.to_h2(INodeNo(1)), m.to_h2(INodeNo(7)), m.to_h2(INodeNo(9))), (7, 1, 9));
        assert_eq!((m.to_fuse(7).0, m.to_fuse(1).0), (1, 7));
    }

    #[test]
    fn device_numbers() {
        // makedev(8, 1) and makedev(259, 70000) as Linux encodes them.
        assert_eq!(encode_dev(8, 1), 0x801);
        assert_eq!(encode_dev(259, 70000), (70000 & 0xff) | (259 << 8) | ((70000 & !0xff) << 12));
    }
}
