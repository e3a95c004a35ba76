//! `get` inside a writing script: extraction of the session's state, that
//! is the image as the commands before it left it, committed or not.
//!
//! [`crate::extract`] reads the committed image through the read path
//! (`Pfs`, `Inode`, the traversal engine); what a session changed lives in
//! its chains and in blocks no header references yet, which only the
//! session's own read path knows ([`Session::readdir`],
//! [`Session::inode_data`], [`Session::read_data`]). This is the same
//! extraction on that path, with the same promises as the module
//! documentation of [`crate::extract`] gives: the same target rules and
//! `force` semantics, names read from the image checked
//! ([`check_name`]) and refused when repeated, files and symlinks created
//! exclusively, symlinks never followed, a directory entered once (one
//! named twice is an error), depth and entries bounded
//! ([`Limits::for_fs`]), modes by [`ModePolicy`], hard links kept, holes
//! left unallocated, device nodes, FIFOs and sockets skipped and listed.
//!
//! TODO(extract owner): the host-side helpers below (`prepare_dest`,
//! `make_dir`, `make_room`, `set_owner_and_mode`) repeat private ones of
//! `src/extract.rs`, which this session could not edit; once those are
//! `pub(crate)` this module should call them.

use crate::error::{Error, Result};
use crate::extract::{check_name, ExtractOptions, ExtractStats, ModePolicy};
use crate::file::{Sink, SparseFileSink};
use crate::format::{InodeData, ObjType};
use crate::fsops::{PfsRef, Session};
use crate::namespace::Limits;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn host_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

fn refuse(path: &Path, why: impl Into<String>) -> Error {
    Error::Open { path: path.to_path_buf(), why: why.into() }
}

fn to_time(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// Extracts `path` of the session's PFS `pfs` into `hostdir`: the PFS
/// root's contents into `hostdir` itself, anything else as `hostdir/NAME`.
pub(super) fn get(
    session: &Session,
    pfs: &PfsRef,
    path: &str,
    hostdir: &Path,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    let parts = crate::namespace::user_path(path)?;
    let shown = format!("/{}", parts.join("/"));
    let (_, name, entry) = session.resolve_parent(pfs, path)?;
    let inum = match (name.is_empty(), entry) {
        (true, _) => pfs.root_inum,
        (false, Some(e)) => e.inum,
        (false, None) => return Err(Error::NotFound(shown)),
    };
    let ip = session.inode_data(pfs, inum)?;
    let is_dir = ip.meta.obj_type() == ObjType::Directory;
    let target = match parts.last() {
        None => hostdir.to_path_buf(),
        Some(name) => {
            check_name(name.as_bytes(), inum, "")?;
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
            Ok(m) if is_dir && m.is_dir() && is_empty_dir(&target)? => {}
            Ok(_) if is_dir => {
                return Err(refuse(
                    &target,
                    "already exists and is not an empty directory; use --force to extract over it",
                ))
            }
            Ok(_) => return Err(refuse(&target, "already exists; use --force to replace it")),
        }
    }
    let limits = opts.limits.unwrap_or_else(|| Limits::for_fs(&session.fs));
    let mut x = Getter {
        session,
        pfs,
        opts: *opts,
        limits,
        entries: 0,
        stats: ExtractStats::default(),
        links: HashMap::new(),
        chunk: Vec::new(),
        entered: HashSet::new(),
        progress,
    };
    if is_dir {
        if parts.is_empty() {
            // DEST stands for the root: filled, then given the root's mode and time.
            fs::set_permissions(&target, fs::Permissions::from_mode(0o700))
                .map_err(host_err(&target, "chmod"))?;
        } else {
            x.make_dir(&target, true)?;
        }
        x.dir(inum, &ip, &target, &shown, 0)?;
        if parts.is_empty() {
            // The root itself is not counted among the directories extracted.
            x.stats.dirs -= 1;
        }
    } else {
        x.place(inum, &ip, &target, &shown)?;
    }
    Ok(x.stats)
}

/// Creates DEST if missing (not its parents), or checks it is a directory.
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

struct Getter<'s, 'p> {
    session: &'s Session,
    pfs: &'s PfsRef,
    opts: ExtractOptions,
    limits: Limits,
    /// Directory entries read so far (bounded by `limits.max_entries`).
    entries: u64,
    stats: ExtractStats,
    /// First host path of each multiply-linked inode.
    links: HashMap<u64, PathBuf>,
    /// The buffer file contents are gathered in (one chunk, reused).
    chunk: Vec<u8>,
    /// Directories entered: one named twice, or inside itself, is refused.
    entered: HashSet<u64>,
    progress: &'p mut dyn FnMut(&ExtractStats),
}

impl Getter<'_, '_> {
    /// Fills the host directory `host` with the entries of directory
    /// `inum`, then gives it its time, owner and mode (last: a read-only
    /// directory must still be filled).
    fn dir(&mut self, inum: u64, ip: &InodeData, host: &Path, shown: &str, depth: usize) -> Result<()> {
        if !self.entered.insert(inum) {
            return Err(Error::InvalidArgument(format!(
                "{shown}: directory inode {inum} is named twice (or inside itself); not entered again"
            )));
        }
        let entries = self.session.readdir(self.pfs, inum)?;
        self.entries = self.entries.saturating_add(entries.len() as u64);
        if self.entries > self.limits.max_entries {
            return Err(Error::InvalidArgument(format!(
                "{shown}: more than {} directory entries; extraction stopped",
                self.limits.max_entries
            )));
        }
        let mut seen = HashSet::new();
        for (name, e) in &entries {
            check_name(name, e.inum, shown)?;
            let child_shown = format!("{}/{}", shown.trim_end_matches('/'), String::from_utf8_lossy(name));
            if !seen.insert(name.as_slice()) {
                return Err(Error::HostileName {
                    path: format!("{child_shown} (inode {})", e.inum),
                    why: "name repeated in one directory".into(),
                });
            }
            let child_host = host.join(OsStr::from_bytes(name));
            let child = self.session.inode_data(self.pfs, e.inum)?;
            if child.meta.obj_type() == ObjType::Directory {
                if depth + 1 > self.limits.max_depth {
                    return Err(Error::InvalidArgument(format!(
                        "{child_shown}: directories nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.make_dir(&child_host, false)?;
                self.dir(e.inum, &child, &child_host, &child_shown, depth + 1)?;
            } else {
                self.place(e.inum, &child, &child_host, &child_shown)?;
            }
        }
        let f = fs::File::open(host).map_err(host_err(host, "open"))?;
        f.set_modified(to_time(ip.meta.mtime.get())).map_err(host_err(host, "utimes"))?;
        self.set_owner_and_mode(&f, host, ip)?;
        self.stats.dirs += 1;
        (self.progress)(&self.stats);
        Ok(())
    }

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

    fn set_owner_and_mode(&self, f: &fs::File, host: &Path, ip: &InodeData) -> Result<()> {
        let meta = &ip.meta;
        if self.opts.modes == ModePolicy::Preserve {
            // Before chmod: chown clears setuid and setgid.
            std::os::unix::fs::fchown(f, Some(meta.unix_uid()), Some(meta.unix_gid()))
                .map_err(host_err(host, "chown"))?;
        }
        f.set_permissions(fs::Permissions::from_mode(self.opts.modes.apply(meta.mode.get())))
            .map_err(host_err(host, "chmod"))
    }

    /// Extracts a non-directory.
    fn place(&mut self, inum: u64, ip: &InodeData, host: &Path, shown: &str) -> Result<()> {
        let meta = &ip.meta;
        match meta.obj_type() {
            ObjType::Regfile => {
                self.make_room(host)?;
                if meta.nlinks.get() > 1 {
                    if let Some(first) = self.links.get(&inum) {
                        fs::hard_link(first, host).map_err(host_err(host, "link"))?;
                        self.stats.hardlinks += 1;
                        (self.progress)(&self.stats);
                        return Ok(());
                    }
                    self.links.insert(inum, host.to_path_buf());
                }
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(host)
                    .map_err(host_err(host, "create"))?;
                let mut sink = Holes(SparseFileSink::new(&f, &mut self.chunk));
                self.session.read_data(self.pfs, inum, &mut sink)?;
                let size = meta.size.get();
                // Bytes past the last ones written are holes: the length
                // covers them.
                let extend = sink.0.finish().map_err(host_err(host, "write"))? != size;
                if extend {
                    f.set_len(size).map_err(host_err(host, "truncate"))?;
                }
                f.set_modified(to_time(meta.mtime.get())).map_err(host_err(host, "utimes"))?;
                self.set_owner_and_mode(&f, host, ip)?;
                self.stats.files += 1;
                self.stats.bytes += size;
            }
            ObjType::Softlink => {
                self.make_room(host)?;
                let mut target = Vec::new();
                self.session.read_data(self.pfs, inum, &mut target)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), host)
                    .map_err(host_err(host, "symlink"))?;
                if self.opts.modes == ModePolicy::Preserve {
                    std::os::unix::fs::lchown(host, Some(meta.unix_uid()), Some(meta.unix_gid()))
                        .map_err(host_err(host, "chown"))?;
                }
                self.stats.symlinks += 1;
            }
            other => self.stats.skipped.push(format!("{shown}: {other} (inode {inum}) not extracted")),
        }
        (self.progress)(&self.stats);
        Ok(())
    }
}

/// [`Session::read_data`] writes holes out as zeros: runs of zeros become
/// holes of the host file again.
struct Holes<'f>(SparseFileSink<'f>);

impl Write for Holes<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.iter().all(|&b| b == 0) {
            self.0.hole(buf.len() as u64)?;
        } else {
            self.0.data(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
