//! Extraction of a file or a tree from a PFS into a host directory: the one
//! extraction, written against the one read interface ([`FsView`]), so the
//! committed image (`hammer2_edit IMG get`) and a write session's
//! uncommitted state (`get` inside a writing script, after the commands
//! before it) are extracted by the same code, with the same promises.
//!
//! `extract(view, PATH, DEST)` puts the object at PATH into DEST under its
//! own name (`DEST/NAME`); the PFS root (`/`) is extracted as DEST itself.
//! DEST is created if missing, but not its parents.
//!
//! Nothing is written outside DEST, and DEST's parent is never touched:
//! - PATH is resolved from the PFS root component by component; `.` and
//!   empty components are dropped, `..` and NUL are refused
//!   ([`namespace::user_path`]);
//! - every name read from the image is refused if it is empty, `.` or `..`,
//!   or holds `/` or NUL, and so is a name repeated in one directory;
//! - the tree is walked by [`namespace::traverse`]: a directory is entered
//!   once (one named twice, or inside itself, is an error naming its path
//!   and inode number), depth and work are bounded; what the walk finds
//!   wrong with the image is corruption ([`crate::Error::Corrupt`] with a
//!   [`crate::error::CorruptKind::Namespace`] or `TooManyEntries`, or
//!   [`crate::Error::HostileName`]), never an error of the user's input;
//! - files and symlinks are created with `O_CREAT|O_EXCL` semantics, so an
//!   existing entry (a planted symlink, say) is never written through, and
//!   symlinks are created, never followed; a directory is reused only if it
//!   is a real directory, never a symlink to one.
//!
//! An existing destination (DEST for the root, `DEST/NAME` otherwise) must
//! be missing or an empty directory, unless `force` is set; then, as tar
//! does, an existing file, symlink or other non-directory is unlinked and
//! created anew, and an existing directory is reused (and gets the stored
//! mode and time). Other entries already in a reused directory stay.
//!
//! Modes follow tar for the invoking user ([`ModePolicy`]). Hard links
//! (inodes with nlinks > 1 named twice) become hard links. Holes stay holes.
//! Device nodes, FIFOs and sockets are skipped and listed.
//!
//! Speed: the calling thread walks the namespace (reading each directory's
//! inodes ahead where the view can, [`FsView::read_ahead`]), makes
//! directories and symlinks; worker threads ([`ExtractOptions::threads`],
//! one per core by default) each extract whole regular files: read, verify
//! and decompress the blocks into a small reused buffer, `pwrite` it, then
//! set time, owner and mode. A directory's time and mode, and a hard link's
//! further names, wait until the files handed out before them are done, so
//! the result, and the error reported, are those of a single thread (see
//! `pipeline`). Memory stays flat: a bounded queue of files (paths and
//! inodes, no contents) and one 128 KiB buffer per thread.
//!
//! The view must be `Sync` for that: both views are. The committed image
//! is a read-only mapping; a session is only read while it extracts (the
//! editor holds it shared) and keeps no interior mutability, so its worker
//! threads read its chains as they read the image's blocks. A single-thread
//! fallback for views that could not be shared was the alternative; it
//! would have kept a second, slower path alive for the session's `get`,
//! which is what this module exists to avoid.

mod pipeline;

use crate::error::{Error, Result};
use crate::format::{InodeMeta, ObjType};
use crate::read::file::SparseFileSink;
use crate::read::namespace::{self, Entry, Limits, Step, Visitor};
use crate::read::view::{FsView, ViewInode};
use pipeline::{Closer, Counts, Pipeline, Shared};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::read::namespace::check_name;

/// Deepest directory nesting followed.
pub const MAX_DIR_DEPTH: usize = namespace::MAX_DEPTH;

/// What an extraction produced.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// Entries not extracted (device nodes, sockets) with the reason.
    pub skipped: Vec<String>,
}

/// How stored modes become host modes (tar's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModePolicy {
    /// The stored mode, setuid, setgid and sticky bits included, after
    /// restoring the stored owner and group (so a setuid bit keeps its
    /// meaning). What tar does for root.
    Preserve,
    /// The stored mode minus this umask, setuid and setgid dropped; owner
    /// and group are the invoking user's. What tar does for other users.
    Umask(u32),
}

impl ModePolicy {
    /// `Preserve` for the superuser, `Umask(the process umask)` otherwise.
    pub fn of_process() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            ModePolicy::Preserve
        } else {
            ModePolicy::Umask(process_umask())
        }
    }

    /// The host mode for a stored mode.
    pub fn apply(self, stored: u32) -> u32 {
        match self {
            ModePolicy::Preserve => stored & 0o7777,
            ModePolicy::Umask(mask) => stored & 0o1777 & !mask,
        }
    }
}

/// The process umask, read without changing it where the system allows
/// (Linux's /proc/self/status), else by setting and restoring it.
fn process_umask() -> u32 {
    let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
    });
    from_proc.unwrap_or_else(|| {
        // SAFETY: umask cannot fail; the old mask is restored at once (a
        // file another thread creates in between would get mask 0o077).
        unsafe {
            let old = libc::umask(0o077);
            libc::umask(old);
            old as u32
        }
    })
}

/// Extraction options.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Extract over an existing destination, replacing files as tar does.
    pub force: bool,
    pub modes: ModePolicy,
    /// Traversal bounds (default: [`Limits::for_fs`]).
    pub limits: Option<Limits>,
    /// Threads writing files besides the one walking the tree (0: one
    /// per core).
    pub threads: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { force: false, modes: ModePolicy::of_process(), limits: None, threads: 0 }
    }
}

pub(crate) fn host_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

fn refuse(path: &Path, why: impl Into<String>) -> Error {
    Error::Open { path: path.to_path_buf(), why: why.into() }
}

/// HAMMER2 times are microseconds since the epoch.
fn to_time(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// Extracts `path` of `view` into `hostdir` with the default options (no
/// `force`, the process's mode policy). See the module documentation.
pub fn extract<V: FsView + Sync + ?Sized>(
    view: &V,
    path: &str,
    hostdir: &Path,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    extract_with(view, path, hostdir, &ExtractOptions::default(), progress)
}

/// Extracts `path` of `view` into `hostdir`: the PFS root's contents into
/// `hostdir` itself, anything else as `hostdir/NAME`.
pub fn extract_with<V: FsView + Sync + ?Sized>(
    view: &V,
    path: &str,
    hostdir: &Path,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    let parts = namespace::user_path(path)?;
    let shown = format!("/{}", parts.join("/"));
    let (_, ino) = view.resolve(path)?;
    // The target: DEST for the root, DEST/NAME otherwise.
    let target = match parts.last() {
        None => hostdir.to_path_buf(),
        Some(name) => {
            check_name(name.as_bytes(), ino.data.inum(), "")?;
            hostdir.join(name)
        }
    };
    let host = Host { force: opts.force, modes: opts.modes };
    host.prepare_target(hostdir, &target, parts.is_empty(), ino.data.is_dir())?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let run = |job: &FileJob<'_>, buf: &mut Vec<u8>| extract_file(view, host, job, buf);
    let shared = Shared::new();
    std::thread::scope(|scope| {
        let _closer = Closer(&shared);
        for _ in 0..threads {
            // A worker that cannot be started is done without: the walking
            // thread runs whatever the others leave queued.
            let _ = std::thread::Builder::new().spawn_scoped(scope, || shared.work(&run));
        }
        let mut x = Extractor {
            view,
            host,
            stats: ExtractStats::default(),
            links: HashMap::new(),
            dirs: Vec::new(),
            progress,
            pipe: Pipeline::new(&shared, &run),
            stopping: false,
        };
        let walked = x.walk(&ino, &target, &shown, parts.is_empty(), opts);
        let mut stats = x.finish(walked)?;
        if ino.data.is_dir() && parts.is_empty() {
            // The root itself is not counted among the directories extracted.
            stats.dirs -= 1;
        }
        Ok(stats)
    })
}

impl<'v, V: FsView + ?Sized> Extractor<'v, '_, '_, V> {
    /// Extracts `ino` as `target`: a directory tree, or a single file.
    fn walk(
        &mut self,
        ino: &ViewInode<'v>,
        target: &Path,
        shown: &str,
        root: bool,
        opts: &ExtractOptions,
    ) -> Result<()> {
        if !ino.data.is_dir() {
            return self.place(ino, target.to_path_buf(), shown.to_string());
        }
        if root {
            // DEST stands for the root: filled, then given the root's mode and time.
            fs::set_permissions(target, fs::Permissions::from_mode(0o700))
                .map_err(host_err(target, "chmod"))?;
        } else {
            self.host.make_dir(target, true)?;
        }
        self.dirs.push(target.to_path_buf());
        let limits = opts.limits.unwrap_or_else(|| Limits::for_fs(self.view.fs()));
        namespace::traverse(self.view, ino, shown, limits, self).map(|_| ())
    }
}

/// Where and how extracted files are made on the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    /// Replace what exists (see [`ExtractOptions::force`]).
    pub force: bool,
    pub modes: ModePolicy,
}

impl Host {
    /// Creates DEST if missing and, without `force`, refuses a `target`
    /// that exists (an empty directory aside, for a directory). `root`:
    /// the target is DEST itself (the PFS root's contents go there).
    pub(crate) fn prepare_target(&self, dest: &Path, target: &Path, root: bool, is_dir: bool) -> Result<()> {
        prepare_dest(dest)?;
        if self.force {
            return Ok(());
        }
        // DEST may be a symlink to a directory (the user's choice); DEST/NAME may not.
        let meta = if root { fs::metadata(target) } else { fs::symlink_metadata(target) };
        match meta {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(host_err(target, "stat")(e)),
            Ok(m) if is_dir && m.is_dir() && is_empty_dir(target)? => Ok(()),
            Ok(_) if is_dir => Err(refuse(
                target,
                "already exists and is not an empty directory; use --force to extract over it",
            )),
            Ok(_) => Err(refuse(target, "already exists; use --force to replace it")),
        }
    }

    /// Creates a directory, writable while it is filled. With `force` (or
    /// for the target, already checked to be empty) an existing directory
    /// is reused.
    pub(crate) fn make_dir(&self, host: &Path, target: bool) -> Result<()> {
        match fs::symlink_metadata(host) {
            Ok(m) if m.is_dir() && (self.force || target) => {}
            Ok(_) if self.force => {
                fs::remove_file(host).map_err(host_err(host, "unlink"))?;
                fs::create_dir(host).map_err(host_err(host, "mkdir"))?;
            }
            _ => fs::create_dir(host).map_err(host_err(host, "mkdir"))?,
        }
        fs::set_permissions(host, fs::Permissions::from_mode(0o700)).map_err(host_err(host, "chmod"))
    }

    /// With `force`, removes a non-directory at `host` so it can be created anew.
    pub(crate) fn make_room(&self, host: &Path) -> Result<()> {
        if !self.force {
            return Ok(());
        }
        match fs::symlink_metadata(host) {
            Ok(m) if m.is_dir() => Err(refuse(host, "is a directory; not replaced by a non-directory")),
            Ok(_) => fs::remove_file(host).map_err(host_err(host, "unlink")),
            Err(_) => Ok(()),
        }
    }

    /// A directory's entries are in: its time, owner and mode.
    pub(crate) fn finish_dir(&self, host: &Path, meta: &InodeMeta) -> Result<()> {
        let f = fs::File::open(host).map_err(host_err(host, "open"))?;
        f.set_modified(to_time(meta.mtime.get())).map_err(host_err(host, "utimes"))?;
        if self.modes == ModePolicy::Preserve {
            // Before chmod: chown clears setuid and setgid.
            std::os::unix::fs::fchown(&f, Some(meta.unix_uid()), Some(meta.unix_gid()))
                .map_err(host_err(host, "chown"))?;
        }
        f.set_permissions(fs::Permissions::from_mode(self.modes.apply(meta.mode.get())))
            .map_err(host_err(host, "chmod"))
    }

    /// Creates the regular file `host` exclusively (after
    /// [`make_room`](Self::make_room)), with its final permissions as far
    /// as the umask or a default ACL let them be, so that most files need
    /// no chmod (the descriptor writes whatever they are); setuid and
    /// setgid come after the owner, in [`finish_file`](Self::finish_file).
    pub(crate) fn create_file(&self, host: &Path, meta: &InodeMeta) -> Result<fs::File> {
        self.make_room(host)?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.modes.apply(meta.mode.get()) & 0o777)
            .open(host)
            .map_err(host_err(host, "create"))
    }

    /// A regular file's contents are written up to `written` (past it only
    /// holes): its length, time, owner and mode.
    pub(crate) fn finish_file(
        &self,
        f: &fs::File,
        host: &Path,
        meta: &InodeMeta,
        written: u64,
    ) -> Result<()> {
        // A file whose last bytes were written is as long as they make it:
        // no ftruncate (a metadata update per file).
        let size = meta.size.get();
        if written != size {
            f.set_len(size).map_err(host_err(host, "truncate"))?;
        }
        f.set_modified(to_time(meta.mtime.get())).map_err(host_err(host, "utimes"))?;
        // What the file got (fstat costs less than the chmod and chown it
        // mostly saves).
        let got = f.metadata().map_err(host_err(host, "stat"))?;
        let owner = (meta.unix_uid(), meta.unix_gid());
        if self.modes == ModePolicy::Preserve && owner != (got.uid(), got.gid()) {
            // Before chmod: chown clears setuid and setgid.
            std::os::unix::fs::fchown(f, Some(owner.0), Some(owner.1)).map_err(host_err(host, "chown"))?;
        }
        let want = self.modes.apply(meta.mode.get());
        if want != got.mode() & 0o7777 {
            f.set_permissions(fs::Permissions::from_mode(want)).map_err(host_err(host, "chmod"))?;
        }
        Ok(())
    }
}

/// Creates DEST if missing (its parent must exist: nothing above DEST is
/// created), or checks it is a directory.
fn prepare_dest(dest: &Path) -> Result<()> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(refuse(dest, "destination is not a directory")),
        Err(e) if e.kind() == ErrorKind::NotFound => match fs::create_dir(dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(refuse(dest, "the destination's parent directory does not exist (it is not created)"))
            }
            Err(e) => Err(host_err(dest, "mkdir")(e)),
        },
        Err(e) => Err(host_err(dest, "stat")(e)),
    }
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    Ok(fs::read_dir(p).map_err(host_err(p, "read directory"))?.next().is_none())
}

/// A regular file for a worker to extract.
struct FileJob<'v> {
    inode: ViewInode<'v>,
    host: PathBuf,
    /// Its path in the PFS, for messages.
    shown: String,
}

/// What waits for files to be finished.
enum Deferred<'v> {
    /// A further name of a multiply-linked file (after the first is made).
    Link { first: PathBuf, host: PathBuf },
    /// A directory's time, owner and mode (after its contents).
    Dir { host: PathBuf, inode: ViewInode<'v> },
}

type Pipe<'s, 'r, 'v> = Pipeline<'s, 'r, FileJob<'v>, Deferred<'v>, Vec<u8>>;

struct Extractor<'v, 's, 'r, V: ?Sized> {
    view: &'v V,
    host: Host,
    stats: ExtractStats,
    /// First host path of each multiply-linked inode.
    links: HashMap<u64, PathBuf>,
    /// Host paths of the directories being filled, outermost first.
    dirs: Vec<PathBuf>,
    progress: &'r mut dyn FnMut(&ExtractStats),
    pipe: Pipe<'s, 'r, 'v>,
    /// The walk is being stopped (an error already recorded by the pipeline).
    stopping: bool,
}

/// The error a visitor returns to stop the walk once the pipeline holds
/// the real one (never returned to the caller).
fn stop() -> Error {
    Error::Internal("extraction stopped".into())
}

impl<'v, V: FsView + ?Sized> Visitor<'v> for Extractor<'v, '_, '_, V> {
    fn entry(&mut self, e: &Entry<'_, 'v>) -> Result<Step> {
        // OK to unwrap: the start directory is pushed before the traversal,
        // and only popped by its own `leave`, which comes last.
        let host = self.dirs.last().unwrap().join(OsStr::from_bytes(&e.dirent.name));
        let step = if e.inode.data.is_dir() {
            self.host.make_dir(&host, false)?;
            self.dirs.push(host);
            Step::Descend
        } else {
            self.place(e.inode, host, e.path())?;
            Step::Skip
        };
        self.pump()?;
        Ok(step)
    }

    fn leave(&mut self, _path: &str, dir: &ViewInode<'v>) -> Result<()> {
        // OK to unwrap: every `leave` matches a push (see `entry`).
        let host = self.dirs.pop().unwrap();
        self.pipe.defer(Deferred::Dir { host, inode: dir.clone() });
        self.pump()
    }
}

impl<'v, V: FsView + ?Sized> Extractor<'v, '_, '_, V> {
    /// Extracts a non-directory (a regular file through the pipeline).
    fn place(&mut self, ino: &ViewInode<'v>, host: PathBuf, shown: String) -> Result<()> {
        crate::interrupt::check()?;
        let meta = &ino.data.meta;
        match ino.data.obj_type() {
            ObjType::Regfile => {
                if meta.nlinks.get() > 1 {
                    if let Some(first) = self.links.get(&ino.data.inum()) {
                        self.pipe.defer(Deferred::Link { first: first.clone(), host });
                        return Ok(());
                    }
                    self.links.insert(ino.data.inum(), host.clone());
                }
                if self.pipe.submit(FileJob { inode: ino.clone(), host, shown }).is_err() {
                    self.stopping = true;
                    return Err(stop());
                }
                return Ok(());
            }
            ObjType::Softlink => {
                self.host.make_room(&host)?;
                let target = self.view.read_link(ino).map_err(|e| in_file(e, &shown, ino))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &host)
                    .map_err(host_err(&host, "symlink"))?;
                if self.host.modes == ModePolicy::Preserve {
                    std::os::unix::fs::lchown(&host, Some(meta.unix_uid()), Some(meta.unix_gid()))
                        .map_err(host_err(&host, "chown"))?;
                }
                self.stats.symlinks += 1;
            }
            other => {
                self.stats.skipped.push(format!("{shown}: {other} (inode {}) not extracted", ino.data.inum()))
            }
        }
        (self.progress)(&self.stats);
        Ok(())
    }

    /// Applies the deferred work whose files are finished and reports
    /// progress. A failure stops the walk.
    fn pump(&mut self) -> Result<()> {
        let counts = self.pipe.look();
        self.apply_ready(counts);
        while self.pipe.backlogged() && !self.stopping {
            let counts = self.pipe.catch_up();
            self.apply_ready(counts);
        }
        if self.stopping {
            Err(stop())
        } else {
            Ok(())
        }
    }

    fn apply_ready(&mut self, counts: Counts) {
        self.count_files(counts);
        while let Some((at, op)) = self.pipe.next_ready() {
            if let Err(e) = self.apply(op) {
                self.pipe.fail_at(at, e);
                self.stopping = true;
                return;
            }
            (self.progress)(&self.stats);
        }
        if self.pipe.job_failed() {
            self.stopping = true;
        }
    }

    /// Takes in the files the workers finished, one progress report each.
    fn count_files(&mut self, counts: Counts) {
        if counts.files > self.stats.files {
            self.stats.bytes = counts.bytes;
            while self.stats.files < counts.files {
                self.stats.files += 1;
                (self.progress)(&self.stats);
            }
        }
    }

    fn apply(&mut self, op: Deferred<'v>) -> Result<()> {
        match op {
            Deferred::Link { first, host } => {
                self.host.make_room(&host)?;
                fs::hard_link(&first, &host).map_err(host_err(&host, "link"))?;
                self.stats.hardlinks += 1;
            }
            Deferred::Dir { host, inode } => {
                // Time, owner and mode last: a read-only directory must still be filled.
                self.host.finish_dir(&host, &inode.data.meta)?;
                self.stats.dirs += 1;
            }
        }
        Ok(())
    }

    /// Ends the walk: waits for the files, applies what is left of the
    /// deferred work, and gives the error met first in the order, if any.
    fn finish(mut self, walked: Result<()>) -> Result<ExtractStats> {
        if let Err(e) = walked {
            if !self.stopping {
                self.pipe.fail(e);
            }
        }
        let counts = self.pipe.drain();
        self.apply_ready(counts);
        self.pipe.result()?;
        Ok(self.stats)
    }
}

/// A corruption met in a file's contents, with the file's path and inode.
fn in_file(e: Error, shown: &str, ino: &ViewInode<'_>) -> Error {
    match e {
        e @ Error::Corrupt(_) => {
            Error::InFile { path: shown.to_string(), inum: ino.data.inum(), source: Box::new(e) }
        }
        e => e,
    }
}

/// Extracts a regular file (a worker's job): contents, then time, owner
/// and mode. Returns its size. `buf` is the running thread's write buffer.
fn extract_file<V: FsView + ?Sized>(
    view: &V,
    host: Host,
    job: &FileJob<'_>,
    buf: &mut Vec<u8>,
) -> Result<u64> {
    let (ino, path) = (&job.inode, job.host.as_path());
    let meta = &ino.data.meta;
    let f = host.create_file(path, meta)?;
    let mut sink = SparseFileSink::new(&f, buf);
    let size = view.read_data(ino, &mut sink).map_err(|e| in_file(e, &job.shown, ino))?;
    let written = sink.finish().map_err(host_err(path, "write"))?;
    host.finish_file(&f, path, meta, written)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_tar() {
        assert_eq!(ModePolicy::Preserve.apply(0o104755), 0o4755);
        assert_eq!(ModePolicy::Preserve.apply(0o2750), 0o2750);
        assert_eq!(ModePolicy::Umask(0o022).apply(0o6777), 0o755);
        assert_eq!(ModePolicy::Umask(0o027).apply(0o1777), 0o1750);
        assert_eq!(ModePolicy::Umask(0).apply(0o644), 0o644);
    }
}
