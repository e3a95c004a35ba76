//! Extraction of a file or a tree from a PFS into a host directory.
//!
//! `extract(pfs, PATH, DEST)` puts the object at PATH into DEST under its own
//! name (`DEST/NAME`); the PFS root (`/`) is extracted as DEST itself. DEST
//! is created if missing, but not its parents.
//!
//! Nothing is written outside DEST, and DEST's parent is never touched:
//! - PATH is resolved from the PFS root component by component; `.` and
//!   empty components are dropped, `..` and NUL are refused
//!   ([`namespace::user_path`]);
//! - every name read from the image is refused if it is empty, `.` or `..`,
//!   or holds `/` or NUL, and so is a name repeated in one directory;
//! - the tree is walked by [`namespace::traverse`]: a directory is entered
//!   once (one named twice, or inside itself, is an error naming its path
//!   and inode number), depth and work are bounded;
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

use crate::error::{Error, Result};
use crate::file::{read_file, read_link, SparseFileSink};
use crate::format::ObjType;
use crate::namespace::{self, Entry, Limits, Step, Visitor};
use crate::pfs::{Inode, Pfs};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufWriter, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::namespace::check_name;

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
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { force: false, modes: ModePolicy::of_process(), limits: None }
    }
}

fn host_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

fn refuse(path: &Path, why: impl Into<String>) -> Error {
    Error::Open { path: path.to_path_buf(), why: why.into() }
}

/// HAMMER2 times are microseconds since the epoch.
fn to_time(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// Extracts `path` of `pfs` into `hostdir` with the default options (no
/// `force`, the process's mode policy). See the module documentation.
pub fn extract(
    pfs: &Pfs<'_>,
    path: &str,
    hostdir: &Path,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    extract_with(pfs, path, hostdir, &ExtractOptions::default(), progress)
}

/// Extracts `path` of `pfs` into `hostdir`: the PFS root's contents into
/// `hostdir` itself, anything else as `hostdir/NAME`.
pub fn extract_with(
    pfs: &Pfs<'_>,
    path: &str,
    hostdir: &Path,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    let parts = namespace::user_path(path)?;
    let shown = format!("/{}", parts.join("/"));
    let ino = pfs.resolve(path)?;
    // The target: DEST for the root, DEST/NAME otherwise.
    let target = match parts.last() {
        None => hostdir.to_path_buf(),
        Some(name) => {
            check_name(name.as_bytes(), ino.inum(), "")?;
            hostdir.join(name)
        }
    };
    prepare_dest(hostdir)?;
    if !opts.force {
        // DEST may be a symlink to a directory (the user's choice); DEST/NAME may not.
        let meta = if parts.is_empty() { fs::metadata(&target) } else { fs::symlink_metadata(&target) };
        match meta {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(host_err(&target, "stat")(e)),
            Ok(m) if ino.is_dir() && m.is_dir() && is_empty_dir(&target)? => {}
            Ok(_) if ino.is_dir() => {
                return Err(refuse(
                    &target,
                    "already exists and is not an empty directory; use --force to extract over it",
                ))
            }
            Ok(_) => return Err(refuse(&target, "already exists; use --force to replace it")),
        }
    }
    let mut x = Extractor {
        pfs,
        opts: *opts,
        stats: ExtractStats::default(),
        links: HashMap::new(),
        dirs: Vec::new(),
        progress,
    };
    if ino.is_dir() {
        if parts.is_empty() {
            // DEST stands for the root: filled, then given the root's mode and time.
            fs::set_permissions(&target, fs::Permissions::from_mode(0o700))
                .map_err(host_err(&target, "chmod"))?;
        } else {
            x.make_dir(&target, true)?;
        }
        x.dirs.push(target);
        let limits = opts.limits.unwrap_or_else(|| Limits::for_fs(pfs.tree.fs));
        namespace::traverse(pfs, &ino, &shown, limits, &mut x)?;
        if parts.is_empty() {
            // The root itself is not counted among the directories extracted.
            x.stats.dirs -= 1;
        }
    } else {
        x.place(&ino, &target, &shown)?;
    }
    Ok(x.stats)
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

struct Extractor<'a, 'p> {
    pfs: &'p Pfs<'a>,
    opts: ExtractOptions,
    stats: ExtractStats,
    /// First host path of each multiply-linked inode.
    links: HashMap<u64, PathBuf>,
    /// Host paths of the directories being filled, outermost first.
    dirs: Vec<PathBuf>,
    progress: &'p mut dyn FnMut(&ExtractStats),
}

impl<'a> Visitor<'a> for Extractor<'a, '_> {
    fn entry(&mut self, e: &Entry<'_, 'a>) -> Result<Step> {
        // OK to unwrap: the start directory is pushed before the traversal,
        // and only popped by its own `leave`, which comes last.
        let host = self.dirs.last().unwrap().join(OsStr::from_bytes(&e.dirent.name));
        if e.inode.is_dir() {
            self.make_dir(&host, false)?;
            self.dirs.push(host);
            Ok(Step::Descend)
        } else {
            self.place(e.inode, &host, &e.path())?;
            Ok(Step::Skip)
        }
    }

    fn leave(&mut self, _path: &str, dir: &Inode<'a>) -> Result<()> {
        // OK to unwrap: every `leave` matches a push (see `entry`).
        let host = self.dirs.pop().unwrap();
        // Time, owner and mode last: a read-only directory must still be filled.
        let f = fs::File::open(&host).map_err(host_err(&host, "open"))?;
        f.set_modified(to_time(dir.data.meta.mtime.get())).map_err(host_err(&host, "utimes"))?;
        self.set_owner_and_mode(&f, &host, dir)?;
        self.stats.dirs += 1;
        (self.progress)(&self.stats);
        Ok(())
    }
}

impl<'a> Extractor<'a, '_> {
    /// Creates a directory, writable while it is filled. With `force` (or
    /// for the target, already checked to be empty) an existing directory
    /// is reused.
    fn make_dir(&self, host: &Path, target: bool) -> Result<()> {
        match fs::symlink_metadata(host) {
            Ok(m) if m.is_dir() && (self.opts.force || target) => {}
            Ok(_) if self.opts.force => {
                fs::remove_file(host).map_err(host_err(host, "unlink"))?;
                fs::create_dir(host).map_err(host_err(host, "mkdir"))?;
            }
            _ => fs::create_dir(host).map_err(host_err(host, "mkdir"))?,
        }
        fs::set_permissions(host, fs::Permissions::from_mode(0o700)).map_err(host_err(host, "chmod"))
    }

    /// With `force`, removes a non-directory at `host` so it can be created anew.
    fn make_room(&self, host: &Path) -> Result<()> {
        if !self.opts.force {
            return Ok(());
        }
        match fs::symlink_metadata(host) {
            Ok(m) if m.is_dir() => Err(refuse(host, "is a directory; not replaced by a non-directory")),
            Ok(_) => fs::remove_file(host).map_err(host_err(host, "unlink")),
            Err(_) => Ok(()),
        }
    }

    fn set_owner_and_mode(&self, f: &fs::File, host: &Path, ino: &Inode<'_>) -> Result<()> {
        let meta = &ino.data.meta;
        if self.opts.modes == ModePolicy::Preserve {
            // Before chmod: chown clears setuid and setgid.
            std::os::unix::fs::fchown(f, Some(meta.unix_uid()), Some(meta.unix_gid()))
                .map_err(host_err(host, "chown"))?;
        }
        f.set_permissions(fs::Permissions::from_mode(self.opts.modes.apply(meta.mode.get())))
            .map_err(host_err(host, "chmod"))
    }

    /// Extracts a non-directory.
    fn place(&mut self, ino: &Inode<'a>, host: &Path, shown: &str) -> Result<()> {
        let meta = &ino.data.meta;
        match ino.obj_type() {
            ObjType::Regfile => {
                self.make_room(host)?;
                if meta.nlinks.get() > 1 {
                    if let Some(first) = self.links.get(&ino.inum()) {
                        fs::hard_link(first, host).map_err(host_err(host, "link"))?;
                        self.stats.hardlinks += 1;
                        (self.progress)(&self.stats);
                        return Ok(());
                    }
                    self.links.insert(ino.inum(), host.to_path_buf());
                }
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(host)
                    .map_err(host_err(host, "create"))?;
                let mut sink = SparseFileSink::new(BufWriter::with_capacity(1 << 20, f));
                let size = read_file(&self.pfs.tree, ino, &mut sink)?;
                // A file whose last bytes were written is as long as they
                // make it: no ftruncate (a metadata update per file).
                let extend = sink.ends_in_hole() || sink.len() != size;
                let f = sink
                    .finish()
                    .map_err(host_err(host, "write"))?
                    .into_inner()
                    .map_err(|e| host_err(host, "write")(e.into_error()))?;
                if extend {
                    f.set_len(size).map_err(host_err(host, "truncate"))?;
                }
                f.set_modified(to_time(meta.mtime.get())).map_err(host_err(host, "utimes"))?;
                self.set_owner_and_mode(&f, host, ino)?;
                self.stats.files += 1;
                self.stats.bytes += size;
            }
            ObjType::Softlink => {
                self.make_room(host)?;
                let target = read_link(&self.pfs.tree, ino)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), host)
                    .map_err(host_err(host, "symlink"))?;
                if self.opts.modes == ModePolicy::Preserve {
                    std::os::unix::fs::lchown(host, Some(meta.unix_uid()), Some(meta.unix_gid()))
                        .map_err(host_err(host, "chown"))?;
                }
                self.stats.symlinks += 1;
            }
            other => {
                self.stats.skipped.push(format!("{shown}: {other} (inode {}) not extracted", ino.inum()))
            }
        }
        (self.progress)(&self.stats);
        Ok(())
    }
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
