//! Extraction of a file or a tree from a PFS into a host directory.
//!
//! Nothing is written outside the host directory: every name from the image
//! is refused if it is empty, `.` or `..`, or holds `/` or NUL; files are
//! created with `create_new`, so an existing entry (a planted symlink, say)
//! is never written through; symlinks are created, never followed. A
//! directory that contains one of its ancestors is refused. Hard links
//! (inodes with nlinks > 1 named twice) become hard links. Holes stay holes.

use crate::error::{Error, Result};
use crate::file::{read_file, read_link, SparseFileSink};
use crate::format::ObjType;
use crate::pfs::{DirEntry, Inode, Pfs};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::BufWriter;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Deepest directory nesting followed.
pub const MAX_DIR_DEPTH: usize = 4096;

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

/// Checks a name read from the image before it touches the host.
pub fn check_name(name: &[u8], inum: u64, parent: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("name is '.' or '..'")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::HostileName {
            path: format!("{parent}/{} (inode {inum})", String::from_utf8_lossy(name)),
            why: why.into(),
        }),
        None => Ok(()),
    }
}

fn host_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

/// HAMMER2 times are microseconds since the epoch.
fn to_time(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

struct Extractor<'a, 'p> {
    pfs: &'p Pfs<'a>,
    stats: ExtractStats,
    /// First host path of each multiply-linked inode.
    links: HashMap<u64, PathBuf>,
    /// Directory inodes on the current path (cycle guard).
    ancestors: Vec<u64>,
    progress: &'p mut dyn FnMut(&ExtractStats),
}

/// Extracts `path` of `pfs` into `hostdir` (created if missing). A directory
/// is extracted as `hostdir/NAME`, the PFS root's contents into `hostdir` itself.
pub fn extract(
    pfs: &Pfs<'_>,
    path: &str,
    hostdir: &Path,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats> {
    let ino = pfs.resolve(path)?;
    fs::create_dir_all(hostdir).map_err(host_err(hostdir, "mkdir"))?;
    let mut x = Extractor {
        pfs,
        stats: ExtractStats::default(),
        links: HashMap::new(),
        ancestors: Vec::new(),
        progress,
    };
    let name = path.rsplit('/').find(|p| !p.is_empty() && *p != ".");
    match name {
        None => x.dir_contents(&ino, hostdir, "")?,
        Some(n) => x.entry(&ino, &hostdir.join(n), path.trim_end_matches('/'))?,
    }
    Ok(x.stats)
}

impl<'a> Extractor<'a, '_> {
    fn dir_contents(&mut self, dir: &Inode<'a>, host: &Path, shown: &str) -> Result<()> {
        if self.ancestors.contains(&dir.inum()) || self.ancestors.len() >= MAX_DIR_DEPTH {
            return Err(Error::HostileName {
                path: format!("{shown} (inode {})", dir.inum()),
                why: "directory contains itself or nests too deep".into(),
            });
        }
        self.ancestors.push(dir.inum());
        let entries: Vec<DirEntry> = self.pfs.readdir(dir)?;
        for e in entries {
            check_name(&e.name, e.inum, shown)?;
            let child = self.pfs.inode(e.inum)?;
            let name = OsStr::from_bytes(&e.name);
            let child_shown = format!("{shown}/{}", e.name_lossy());
            self.entry(&child, &host.join(name), &child_shown)?;
        }
        self.ancestors.pop();
        Ok(())
    }

    fn entry(&mut self, ino: &Inode<'a>, host: &Path, shown: &str) -> Result<()> {
        let meta = &ino.data.meta;
        let mode = meta.mode.get() & 0o7777;
        let mtime = to_time(meta.mtime.get());
        match ino.obj_type() {
            ObjType::Directory => {
                match fs::create_dir(host) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_real_dir(host) => {}
                    Err(e) => return Err(host_err(host, "mkdir")(e)),
                }
                self.dir_contents(ino, host, shown)?;
                // Mode and time last: a read-only directory must still be filled.
                let f = fs::File::open(host).map_err(host_err(host, "open"))?;
                f.set_modified(mtime).map_err(host_err(host, "utimes"))?;
                fs::set_permissions(host, fs::Permissions::from_mode(mode))
                    .map_err(host_err(host, "chmod"))?;
                self.stats.dirs += 1;
            }
            ObjType::Regfile => {
                if meta.nlinks.get() > 1 {
                    if let Some(first) = self.links.get(&ino.inum()) {
                        fs::hard_link(first, host).map_err(host_err(host, "link"))?;
                        self.stats.hardlinks += 1;
                        return Ok(());
                    }
                    self.links.insert(ino.inum(), host.to_path_buf());
                }
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(host)
                    .map_err(host_err(host, "create"))?;
                let mut sink = SparseFileSink::new(BufWriter::with_capacity(1 << 20, f));
                let size = read_file(&self.pfs.tree, ino, &mut sink)?;
                let f = sink
                    .finish()
                    .map_err(host_err(host, "write"))?
                    .into_inner()
                    .map_err(|e| host_err(host, "write")(e.into_error()))?;
                f.set_len(size).map_err(host_err(host, "truncate"))?;
                f.set_modified(mtime).map_err(host_err(host, "utimes"))?;
                f.set_permissions(fs::Permissions::from_mode(mode)).map_err(host_err(host, "chmod"))?;
                self.stats.files += 1;
                self.stats.bytes += size;
            }
            ObjType::Softlink => {
                let target = read_link(&self.pfs.tree, ino)?;
                let target = OsStr::from_bytes(&target);
                std::os::unix::fs::symlink(target, host).map_err(host_err(host, "symlink"))?;
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

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false)
}
