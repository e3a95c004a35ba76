//! The FUSE request handlers.

use super::attr::{attr_of, errno, file_type, InodeMap};
use super::{Log, MountOptions};
use crate::error::{Error, Location, Result};
use crate::format::{Blockref, ObjType, INODE_MAXNAME};
use crate::read::pfs::{Inode, Pfs};
use crate::read::tree::Tree;
use crate::read::view::FsView;
use crate::volume::Hammer2;
use crate::write::session::{now_us, Attrs, PfsRef, Session, SessionView, SetAttr};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

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

/// How long the kernel may trust attributes of a read-write mount (every
/// change comes through the mount, but some change attributes of inodes
/// the request did not name, such as a directory's times).
const RW_TTL: Duration = Duration::from_secs(1);

/// A read-write mount's state: the session and the flusher's bookkeeping.
struct LiveState {
    session: Session,
    pfs: PfsRef,
    /// Bytes written since the last commit.
    written: u64,
    /// Why the mount turned read-only (a commit failed).
    failed: Option<String>,
    /// The mount is going away: the flusher stops.
    stop: bool,
    /// Open files by inode number, and how many times each is open: one
    /// whose last name is removed lives on until its last close.
    open: std::collections::HashMap<u64, u32>,
}

/// A read-write mount: one session, under a mutex, and the flusher's clock.
struct Live {
    state: Mutex<LiveState>,
    wake: Condvar,
    commit_every: Duration,
    dirty_limit: u64,
    log: Log,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits what changed since the last commit; a commit that fails
    /// turns the mount read-only (what was committed before stays intact).
    fn commit(&self, st: &mut LiveState, why: &str) -> std::result::Result<(), Errno> {
        if st.failed.is_some() {
            return Err(Errno::EIO);
        }
        if !st.session.is_dirty() {
            return Ok(());
        }
        match st.session.commit() {
            Ok(_) => {
                st.written = 0;
                Ok(())
            }
            Err(e) => {
                (self.log)(&format!(
                    "commit ({why}) failed: {e}; the mount is read-only from now on (the last commit stays intact)"
                ));
                st.failed = Some(e.to_string());
                Err(Errno::EIO)
            }
        }
    }

    /// The flusher: commits every `commit_every` while something changed,
    /// until the mount goes away.
    fn flusher(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            st = self.wake.wait_timeout(st, self.commit_every).unwrap_or_else(|e| e.into_inner()).0;
            if st.stop {
                return;
            }
            let _ = self.commit(&mut st, "interval");
        }
    }
}

enum Backend {
    Committed(Box<Committed>),
    Live(Arc<Live>),
}

/// A mounted PFS: the FUSE file system.
pub struct Hammer2Fs {
    map: InodeMap,
    label: String,
    backend: Backend,
    log: Log,
    ttl: Duration,
    /// Total and free bytes, for statfs (read-only mounts).
    space: (u64, u64),
}

impl Hammer2Fs {
    /// A mount of PFS `pfs` (None: DATA, or the only one but LOCAL) of `fs`.
    pub fn new(fs: Hammer2, pfs: Option<&str>, options: &MountOptions, log: Log) -> Result<Hammer2Fs> {
        let v = &fs.voldata;
        let space = (v.allocator_size.get(), v.allocator_free.get());
        if options.write {
            let session = Session::from_fs(fs, true)?;
            let pfs = session.pfs(pfs)?;
            let map = InodeMap { root: pfs.root_inum };
            let label = pfs.label.clone();
            let live = Arc::new(Live {
                state: Mutex::new(LiveState {
                    session,
                    pfs,
                    written: 0,
                    failed: None,
                    stop: false,
                    open: Default::default(),
                }),
                wake: Condvar::new(),
                commit_every: options.commit,
                dirty_limit: options.dirty,
                log: log.clone(),
            });
            let flusher = live.clone();
            std::thread::Builder::new()
                .name("hammer2-flusher".into())
                .spawn(move || flusher.flusher())
                .map_err(|source| Error::Io { path: "(thread)".into(), op: "spawn", offset: 0, source })?;
            return Ok(Hammer2Fs { map, label, backend: Backend::Live(live), log, ttl: RW_TTL, space });
        }
        let tree = Tree::new(&fs);
        let found = match pfs {
            Some(label) => Pfs::find(&tree, label)?,
            None => Pfs::default(&tree)?,
        };
        let (root, root_loc, label) = (*found.root.bref, found.root.loc.clone(), found.name());
        let map = InodeMap { root: found.root.inum() };
        let backend = Backend::Committed(Box::new(Committed { fs, root, root_loc }));
        Ok(Hammer2Fs { map, label, backend, log, ttl: RO_TTL, space })
    }

    /// The mounted PFS's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn view<R>(&self, f: impl FnOnce(&dyn FsView) -> Result<R>) -> Result<R> {
        match &self.backend {
            Backend::Committed(c) => c.with(f),
            Backend::Live(l) => {
                let st = l.lock();
                f(&SessionView { session: &st.session, pfs: &st.pfs })
            }
        }
    }

    /// Runs a change on the session (EROFS on a read-only mount, or one
    /// turned read-only); errors become errno values (EIO logged).
    fn change<R>(
        &self,
        what: std::fmt::Arguments<'_>,
        f: impl FnOnce(&mut Session, &PfsRef) -> Result<R>,
    ) -> std::result::Result<R, Errno> {
        let Backend::Live(live) = &self.backend else { return Err(Errno::EROFS) };
        let mut st = live.lock();
        if st.failed.is_some() {
            return Err(Errno::EROFS);
        }
        let st = &mut *st;
        f(&mut st.session, &st.pfs).map_err(|e| self.fail(what, &e))
    }

    /// The attributes of `inum` as they are now.
    fn attr(&self, inum: u64) -> std::result::Result<FileAttr, Errno> {
        self.view(|v| v.inode(inum).map(|i| *i.data))
            .map(|ip| attr_of(&self.map, &ip))
            .map_err(|e| self.fail(format_args!("getattr of inode {inum}"), &e))
    }

    /// Creates `name` in `parent` and answers with its entry.
    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: ObjType,
        mode: u32,
        target: &[u8],
        rdev: u32,
    ) -> std::result::Result<FileAttr, Errno> {
        let name = checked_name(name)?;
        let dir = self.map.to_h2(parent);
        let inum = self.change(format_args!("create in inode {dir}"), |s, pfs| {
            let dip = s.inode_data(pfs, dir)?;
            // A set-group-ID directory passes its group on (and the bit, to
            // directories), as BSD and Linux file systems do.
            let (mut gid, mut mode) = (req.gid(), mode & 0o7777);
            if dip.meta.mode.get() & libc::S_ISGID != 0 {
                gid = dip.meta.unix_gid();
                if kind == ObjType::Directory {
                    mode |= libc::S_ISGID;
                }
            }
            let attrs = Attrs { mode, uid: req.uid(), gid, mtime: now_us() };
            let major = (rdev >> 8) & 0xfff;
            let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
            s.create_at(pfs, dir, name, kind, attrs, target, (major, minor))
        })?;
        self.attr(inum)
    }

    /// Counts bytes written; past the `dirty=` limit, commits.
    fn wrote(&self, n: u64) {
        if let Backend::Live(live) = &self.backend {
            let mut st = live.lock();
            st.written += n;
            if st.written >= live.dirty_limit {
                let _ = live.commit(&mut st, "dirty limit");
            }
        }
    }

    /// Inode `inum` was opened (read-write mounts count opens).
    fn opened(&self, inum: u64) {
        if let Backend::Live(live) = &self.backend {
            let mut st = live.lock();
            let st = &mut *st;
            let n = st.open.entry(inum).or_insert(0);
            *n += 1;
            if *n == 1 {
                st.session.pin(&st.pfs, inum);
            }
        }
    }

    /// What the kernel may keep cached of an open file: everything, on a
    /// read-only mount (the image cannot change).
    fn keep(&self) -> FopenFlags {
        match self.backend {
            Backend::Committed(_) => FopenFlags::FOPEN_KEEP_CACHE,
            Backend::Live(_) => FopenFlags::empty(),
        }
    }

    /// unlink (`dir`: rmdir) of `name` in `parent`.
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let name = match checked_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let d = self.map.to_h2(parent);
        let shown = String::from_utf8_lossy(name).into_owned();
        let r = self.change(format_args!("remove of {shown:?} in inode {d}"), |s, pfs| {
            let e = s.lookup(pfs, d, name)?.ok_or_else(|| Error::NotFound(shown.clone()))?;
            let is_dir = s.inode_data(pfs, e.inum)?.meta.obj_type() == ObjType::Directory;
            match (dir, is_dir) {
                (true, false) => return Err(Error::NotADirectory(shown.clone())),
                (false, true) => return Err(Error::IsADirectory(shown.clone())),
                _ => {}
            }
            s.remove_entry(pfs, d, &e, &shown, dir)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Commits now (fsync, unmount).
    fn commit_now(&self, why: &str) -> std::result::Result<(), Errno> {
        match &self.backend {
            Backend::Live(live) => {
                let mut st = live.lock();
                live.commit(&mut st, why)
            }
            Backend::Committed(_) => Ok(()),
        }
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

/// A name from the kernel that a directory entry can hold.
fn checked_name(name: &OsStr) -> std::result::Result<&[u8], Errno> {
    let name = name.as_bytes();
    if name.len() >= INODE_MAXNAME {
        return Err(Errno::from_i32(libc::ENAMETOOLONG));
    }
    Ok(name)
}

/// Microseconds since the epoch of a time set by `utimensat`.
fn micros(t: TimeOrNow) -> u64 {
    match t {
        TimeOrNow::Now => now_us(),
        TimeOrNow::SpecificTime(t) => {
            t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros().min(u64::MAX as u128) as u64)
        }
    }
}

/// The object type `mknod` asks for.
fn node_kind(mode: u32) -> std::result::Result<ObjType, Errno> {
    Ok(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => ObjType::Regfile,
        libc::S_IFIFO => ObjType::Fifo,
        libc::S_IFCHR => ObjType::Cdev,
        libc::S_IFBLK => ObjType::Bdev,
        libc::S_IFSOCK => ObjType::Socket,
        _ => return Err(Errno::EINVAL),
    })
}

impl fuser::Filesystem for Hammer2Fs {
    fn destroy(&mut self) {
        if let Backend::Live(live) = &self.backend {
            let mut st = live.lock();
            let _ = live.commit(&mut st, "unmount");
            st.stop = true;
            live.wake.notify_all();
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let inum = self.map.to_h2(ino);
        let r = self.change(format_args!("setattr of inode {inum}"), |s, pfs| {
            if let Some(size) = size {
                s.truncate_inum(pfs, inum, size)?;
            }
            let attr = SetAttr {
                mode: mode.map(|m| m & 0o7777),
                uid,
                gid,
                mtime: mtime.map(micros),
                atime: atime.map(micros),
            };
            if attr != SetAttr::default() {
                s.setattr_inum(pfs, inum, attr)?;
            }
            Ok(())
        });
        match r.and_then(|()| self.attr(inum)) {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match node_kind(mode).and_then(|k| self.make(req, parent, name, k, mode & !umask, &[], rdev)) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.make(req, parent, name, ObjType::Directory, mode & !umask, &[], 0) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let target = target.as_os_str().as_bytes();
        if target.len() > 1023 {
            return reply.error(Errno::from_i32(libc::ENAMETOOLONG));
        }
        match self.make(req, parent, link_name, ObjType::Softlink, 0o777, target, 0) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match node_kind(mode).and_then(|k| self.make(req, parent, name, k, mode & !umask, &[], 0)) {
            Ok(a) => {
                self.opened(self.map.to_h2(a.ino));
                reply.created(&self.ttl, &a, Generation(0), FileHandle(0), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (Ok(from), Ok(to)) = (checked_name(name), checked_name(newname)) else {
            return reply.error(Errno::from_i32(libc::ENAMETOOLONG));
        };
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let (sdir, tdir) = (self.map.to_h2(parent), self.map.to_h2(newparent));
        let r = self.change(format_args!("rename in inode {sdir}"), |s, pfs| {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) && s.lookup(pfs, tdir, to)?.is_some() {
                return Err(Error::AlreadyExists(String::from_utf8_lossy(to).into_owned()));
            }
            s.rename_at(pfs, sdir, from, tdir, to)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let name = match checked_name(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (inum, dir) = (self.map.to_h2(ino), self.map.to_h2(newparent));
        // link(2) on a directory is EPERM.
        if matches!(self.view(|v| v.inode(inum).map(|i| *i.data)), Ok(ip) if ip.meta.obj_type() == ObjType::Directory)
        {
            return reply.error(Errno::EPERM);
        }
        let r = self.change(format_args!("link of inode {inum}"), |s, pfs| s.link_at(pfs, inum, dir, name));
        match r.and_then(|()| self.attr(inum)) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let inum = self.map.to_h2(ino);
        let r = self.change(format_args!("write of inode {inum} at {offset:#x}"), |s, pfs| {
            s.write_inum(pfs, inum, offset, data, data.len() as u64)
        });
        match r {
            Ok(()) => {
                self.wrote(data.len() as u64);
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.commit_now("fsync") {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.commit_now("fsync") {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        if name.len() >= INODE_MAXNAME {
            return reply.error(Errno::from_i32(libc::ENAMETOOLONG));
        }
        let dir = self.map.to_h2(parent);
        let found = self.view(|v| match v.lookup(dir, name)? {
            Some(e) => Ok(Some(*v.inode(e.inum)?.data)),
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
        match self.view(|v| v.inode(inum).map(|i| *i.data)) {
            Ok(ip) => reply.attr(&self.ttl, &attr_of(&self.map, &ip)),
            Err(e) => reply.error(self.fail(format_args!("getattr of inode {inum}"), &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inum = self.map.to_h2(ino);
        match self.view(|v| v.read_link(&v.inode(inum)?)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail(format_args!("readlink of inode {inum}"), &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.opened(self.map.to_h2(ino));
        reply.opened(FileHandle(0), self.keep());
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let inum = self.map.to_h2(ino);
        if let Backend::Live(live) = &self.backend {
            let mut st = live.lock();
            let st = &mut *st;
            if let Some(n) = st.open.get_mut(&inum) {
                *n -= 1;
                if *n == 0 {
                    st.open.remove(&inum);
                    if st.failed.is_none() {
                        if let Err(e) = st.session.unpin(&st.pfs, inum) {
                            self.fail(format_args!("release of inode {inum}"), &e);
                        }
                    }
                }
            }
        }
        reply.ok();
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
        // Listings, like pages, may be cached only while nothing can change them.
        let flags = match self.backend {
            Backend::Committed(_) => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            Backend::Live(_) => FopenFlags::empty(),
        };
        reply.opened(FileHandle(0), flags);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let inum = self.map.to_h2(ino);
        let listed = self.view(|v| {
            let dip = *v.inode(inum)?.data;
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
        let (total, free) = match &self.backend {
            Backend::Live(l) => {
                let st = l.lock();
                let v = &st.session.fs.voldata;
                (v.allocator_size.get(), v.allocator_free.get())
            }
            Backend::Committed(_) => self.space,
        };
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
