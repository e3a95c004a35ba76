//! `get` inside a writing script: extraction of the session's state, that
//! is the image as the commands before it left it, committed or not.
//!
//! [`crate::host::extract`] reads the committed image through the read path
//! (`Pfs`, `Inode`, the traversal engine); what a session changed lives in
//! its chains and in blocks no header references yet, which only the
//! session's own read path knows ([`Session::readdir`],
//! [`Session::inode_data`], [`Session::read_data`]). This is the same
//! extraction on that path, with the same promises as the module
//! documentation of [`crate::host::extract`] gives: the same target rules and
//! `force` semantics, names read from the image checked
//! ([`check_name`]) and refused when repeated, files and symlinks created
//! exclusively, symlinks never followed, a directory entered once (one
//! named twice is an error), depth and entries bounded
//! ([`Limits::for_fs`]), modes by [`ModePolicy`], hard links kept, holes
//! left unallocated, device nodes, FIFOs and sockets skipped and listed.
//! The host side (target rules, creating directories and files, times,
//! owners and modes) is [`crate::host::extract`]'s own ([`Host`]).

use crate::error::{Error, Result};
use crate::format::{InodeData, ObjType};
use crate::host::extract::{check_name, host_err, ExtractOptions, ExtractStats, Host, ModePolicy};
use crate::read::file::{Sink, SparseFileSink};
use crate::read::namespace::Limits;
use crate::read::pfs::DirEntry;
use crate::read::view::FsView;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Extracts `path` of the PFS `view` reads into `hostdir`: the PFS root's
/// contents into `hostdir` itself, anything else as `hostdir/NAME`.
/// `limits` bound the walk when `opts` gives none.
pub(super) fn get(
    view: &dyn FsView,
    limits: Limits,
    path: &str,
    hostdir: &Path,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    let parts = crate::read::namespace::user_path(path)?;
    let shown = format!("/{}", parts.join("/"));
    let (inum, ip) = view.resolve(path).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(shown.clone()),
        e => e,
    })?;
    let is_dir = ip.meta.obj_type() == ObjType::Directory;
    let target = match parts.last() {
        None => hostdir.to_path_buf(),
        Some(name) => {
            check_name(name.as_bytes(), inum, "")?;
            hostdir.join(name)
        }
    };
    let host = Host { force: opts.force, modes: opts.modes };
    host.prepare_target(hostdir, &target, parts.is_empty(), is_dir)?;
    let limits = opts.limits.unwrap_or(limits);
    let mut x = Getter {
        view,
        host,
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
            x.host.make_dir(&target, true)?;
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

/// A directory being filled: its inode, where it goes, its entries left.
struct Open {
    ip: InodeData,
    host: PathBuf,
    shown: String,
    entries: std::vec::IntoIter<DirEntry>,
}

struct Getter<'s, 'p> {
    view: &'s dyn FsView,
    host: Host,
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
    /// Fills the host directory `host` with the tree below directory
    /// `inum`, depth first; each directory gets its time, owner and mode
    /// once its entries are in (last: a read-only directory must still be
    /// filled). An explicit stack, not recursion: the depth bound is in the
    /// thousands.
    fn dir(&mut self, inum: u64, ip: &InodeData, host: &Path, shown: &str, depth: usize) -> Result<()> {
        let mut stack = vec![self.open(inum, ip, host, shown)?];
        while let Some(top) = stack.last_mut() {
            let Some(e) = top.entries.next() else {
                // OK to unwrap: `top` is the last element.
                let done = stack.pop().unwrap();
                self.close(&done.ip, &done.host)?;
                continue;
            };
            let child_shown =
                format!("{}/{}", top.shown.trim_end_matches('/'), String::from_utf8_lossy(&e.name));
            let child_host = top.host.join(OsStr::from_bytes(&e.name));
            let child = self.view.inode(e.inum)?;
            if child.meta.obj_type() == ObjType::Directory {
                if depth + stack.len() > self.limits.max_depth {
                    return Err(Error::InvalidArgument(format!(
                        "{child_shown}: directories nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.host.make_dir(&child_host, false)?;
                let frame = self.open(e.inum, &child, &child_host, &child_shown)?;
                stack.push(frame);
            } else {
                self.place(e.inum, &child, &child_host, &child_shown)?;
            }
        }
        Ok(())
    }

    /// Reads directory `inum`'s entries, checking its names (a name
    /// from the image that is not a plain name, or is repeated, is
    /// refused) and the traversal's bounds.
    fn open(&mut self, inum: u64, ip: &InodeData, host: &Path, shown: &str) -> Result<Open> {
        if !self.entered.insert(inum) {
            return Err(Error::InvalidArgument(format!(
                "{shown}: directory inode {inum} is named twice (or inside itself); not entered again"
            )));
        }
        let entries = self.view.readdir(inum)?;
        self.entries = self.entries.saturating_add(entries.len() as u64);
        if self.entries > self.limits.max_entries {
            return Err(Error::InvalidArgument(format!(
                "{shown}: more than {} directory entries; extraction stopped",
                self.limits.max_entries
            )));
        }
        let mut seen = HashSet::new();
        for e in &entries {
            let name = &e.name;
            check_name(name, e.inum, shown)?;
            if !seen.insert(name.as_slice()) {
                return Err(Error::HostileName {
                    path: format!(
                        "{}/{} (inode {})",
                        shown.trim_end_matches('/'),
                        String::from_utf8_lossy(name),
                        e.inum
                    ),
                    why: "name repeated in one directory".into(),
                });
            }
        }
        Ok(Open { ip: *ip, host: host.to_path_buf(), shown: shown.to_string(), entries: entries.into_iter() })
    }

    /// A directory's entries are all in: its time, owner and mode.
    fn close(&mut self, ip: &InodeData, host: &Path) -> Result<()> {
        self.host.finish_dir(host, &ip.meta)?;
        self.stats.dirs += 1;
        (self.progress)(&self.stats);
        Ok(())
    }

    /// Extracts a non-directory.
    fn place(&mut self, inum: u64, ip: &InodeData, host: &Path, shown: &str) -> Result<()> {
        let meta = &ip.meta;
        match meta.obj_type() {
            ObjType::Regfile => {
                self.host.make_room(host)?;
                if meta.nlinks.get() > 1 {
                    if let Some(first) = self.links.get(&inum) {
                        fs::hard_link(first, host).map_err(host_err(host, "link"))?;
                        self.stats.hardlinks += 1;
                        (self.progress)(&self.stats);
                        return Ok(());
                    }
                    self.links.insert(inum, host.to_path_buf());
                }
                let f = self.host.create_file(host, meta)?;
                let mut sink = Holes(SparseFileSink::new(&f, &mut self.chunk));
                self.view.read(inum, &mut sink)?;
                let written = sink.0.finish().map_err(host_err(host, "write"))?;
                self.host.finish_file(&f, host, meta, written)?;
                let size = meta.size.get();
                self.stats.files += 1;
                self.stats.bytes += size;
            }
            ObjType::Softlink => {
                self.host.make_room(host)?;
                let mut target = Vec::new();
                self.view.read(inum, &mut target)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), host)
                    .map_err(host_err(host, "symlink"))?;
                if self.host.modes == ModePolicy::Preserve {
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
