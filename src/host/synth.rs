//! Populating a PFS from generated entries instead of a host tree: how the
//! scale benchmark builds a ten-million-file image without first writing
//! ten million host files (each of which would take a host block).
//!
//! The entries come depth first from an iterator: [`SynthEntry::Dir`]
//! creates a directory and enters it, [`SynthEntry::Up`] leaves it,
//! [`SynthEntry::File`] creates a regular file with the given contents
//! (embedded in its inode up to 512 bytes, else in data blocks encoded
//! with the directory's compression and check methods). Every object gets
//! the same owner and times ([`SynthMeta`]), so the image depends only on
//! the entries. Memory stays flat as in [`super::import`]: finished inodes
//! are written at once and loaded subtrees are written past the session's
//! budget.

use super::import::ImportReport;
use crate::error::{Error, Result};
use crate::format::{CheckMethod, CompMethod, ObjType, EMBEDDED_BYTES, PBUFSIZE};
use crate::write::session::{encode_data_block, logical_block, NodeMeta, PfsRef, Session};

/// One step of a generated tree, depth first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthEntry {
    /// A new directory of this name in the current one, which it becomes.
    Dir(Vec<u8>),
    /// Back to the parent of the current directory.
    Up,
    /// A new regular file of this name and these contents.
    File(Vec<u8>, Vec<u8>),
}

/// Owner, permissions and time every generated object takes.
#[derive(Debug, Clone, Copy)]
pub struct SynthMeta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of directories and of files.
    pub dir_mode: u32,
    pub file_mode: u32,
    /// Microseconds since the epoch: mtime, atime, ctime and btime.
    pub time: u64,
}

impl Default for SynthMeta {
    fn default() -> Self {
        // 2020-01-01T00:00:00Z: a fixed time, so images are reproducible.
        SynthMeta { uid: 0, gid: 0, dir_mode: 0o755, file_mode: 0o644, time: 1_577_836_800_000_000 }
    }
}

impl SynthMeta {
    fn node(&self, kind: ObjType) -> NodeMeta {
        NodeMeta {
            kind,
            mode: if kind == ObjType::Directory { self.dir_mode } else { self.file_mode },
            uid: self.uid,
            gid: self.gid,
            mtime: self.time,
            atime: self.time,
            ctime: self.time,
            btime: self.time,
            rdev: (0, 0),
            comp_algo: None,
            check: None,
        }
    }
}

/// Files between two looks at the session's memory budget.
const BOUND_EVERY: u64 = 1024;

/// Adds the generated `entries` below the existing directory `dest` of
/// `pfs`, calling `progress` after each. Nothing is committed. Refused: an
/// [`SynthEntry::Up`] without a directory to leave, a name that exists or
/// is not a valid name.
pub fn import_synthetic(
    session: &mut Session,
    pfs: &PfsRef,
    dest: &str,
    entries: impl IntoIterator<Item = SynthEntry>,
    meta: &SynthMeta,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<ImportReport> {
    let _cancellable = crate::interrupt::cancellable();
    session.import_operation(|s| {
        let (parent, name, existing) = s.resolve_parent(pfs, dest)?;
        let top = match (name.is_empty(), existing) {
            (true, _) => parent,
            (false, Some(e)) if e.obj_type == ObjType::Directory => e.inum,
            (false, Some(_)) => return Err(Error::NotADirectory(dest.to_string())),
            (false, None) => return Err(Error::NotFound(dest.to_string())),
        };
        let (dir_meta, file_meta) = (meta.node(ObjType::Directory), meta.node(ObjType::Regfile));
        let mut report = ImportReport::default();
        let mut stack = vec![top];
        let mut since_bound = 0u64;
        for entry in entries {
            crate::interrupt::check()?;
            let dir = *stack.last().expect("the stack keeps the top directory");
            match entry {
                SynthEntry::Dir(name) => {
                    let (inum, _) = s.import_node(pfs, dir, &name, &dir_meta)?;
                    report.dirs += 1;
                    stack.push(inum);
                }
                SynthEntry::Up => {
                    if stack.len() == 1 {
                        return Err(Error::InvalidArgument(
                            "generated entries leave the directory they were added to".into(),
                        ));
                    }
                    // Its entries are in: its times are set again, as the
                    // host import does (adding entries touched them).
                    s.import_times(pfs, dir, &dir_meta)?;
                    stack.pop();
                }
                SynthEntry::File(name, data) => {
                    let (inum, (comp, check)) = s.import_node(pfs, dir, &name, &file_meta)?;
                    report.files += 1;
                    report.bytes += data.len() as u64;
                    if data.len() <= EMBEDDED_BYTES {
                        s.import_small(pfs, inum, &data)?;
                    } else {
                        let size = data.len() as u64;
                        s.import_size(pfs, inum, size)?;
                        let methods = (
                            CompMethod::from(comp & 15),
                            u32::from(comp >> 4),
                            CheckMethod::from(check & 15),
                        );
                        let mut key = 0u64;
                        while key < size {
                            let (logical, keybits) = logical_block(size, key);
                            let end = (key + PBUFSIZE).min(size) as usize;
                            let mut block = Vec::with_capacity(logical);
                            block.extend_from_slice(&data[key as usize..end]);
                            block.resize(logical, 0);
                            key += logical as u64;
                            if crate::format::compress::is_zero_block(&block) {
                                continue;
                            }
                            let (bref, media) =
                                encode_data_block(key - logical as u64, keybits, block.into(), methods);
                            s.place_block(pfs, inum, bref, &media)?;
                            report.blocks += 1;
                            report.media_bytes += media.len() as u64;
                        }
                    }
                    s.import_finish(pfs, inum)?;
                    since_bound += 1;
                    if since_bound >= BOUND_EVERY {
                        since_bound = 0;
                        s.import_bound_memory()?;
                    }
                }
            }
            progress(&report);
        }
        Ok(report)
    })
}

/// Fills the PFS `label` of a freshly formatted file system `spec` with the
/// generated `entries`, in one commit (as `newfs_hammer2 --populate` fills
/// it from a host tree).
pub fn populate_synthetic(
    spec: &str,
    label: &str,
    entries: impl IntoIterator<Item = SynthEntry>,
    meta: &SynthMeta,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<(ImportReport, crate::write::flush::CommitReport)> {
    let mut s = Session::open(spec, false)?;
    s.set_space_reserve(0);
    let pfs = s.pfs(Some(label))?;
    let report = import_synthetic(&mut s, &pfs, "/", entries, meta, progress)?;
    Ok((report, s.commit()?))
}
