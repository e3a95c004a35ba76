//! Traversal of a PFS's namespace: directories and their entries by inode
//! number, as a user sees them (the media-tree engine in [`crate::read::walk`]
//! sees blockrefs instead; this module sits above it, at the PFS layer).
//! It reads through the one read interface ([`FsView`]), so it walks the
//! committed image and a write session's uncommitted state alike.
//! Extraction uses it; so can anything that lists or checks a tree of names.
//!
//! A hostile image can name one directory from many entries (a DAG of
//! directories spells exponentially many paths: eight entries per level,
//! twenty levels deep, make 8^20) or from one of its own descendants (an
//! endless path). The traversal stays linear in the image:
//! - a directory is entered at most once: a directory inode met a second
//!   time is a [`Finding`] and is not re-entered (HAMMER2 has no directory
//!   hard links, so no legitimate image does this);
//! - nesting is bounded ([`Limits::max_depth`]);
//! - every directory entry read counts against a budget
//!   ([`Limits::max_entries`]), so shared blocks that repeat entries inside
//!   one directory cannot inflate the work either.
//!
//! Names read from the image are checked ([`check_name`]) before a visitor
//! sees them, and so are the components of a user's path ([`user_path`]).
//!
//! The traversal keeps an explicit stack (no recursion), so a deep image
//! cannot exhaust the thread's stack.

use crate::error::{CorruptKind, Error, Location, Result};
use crate::read::pfs::DirEntry;
use crate::read::tree::Flow;
use crate::read::view::{FsView, ViewInode};
use std::collections::{HashMap, HashSet};

/// Deepest directory nesting entered by default. Deeper paths exceed any
/// host's PATH_MAX (4096 bytes) anyway.
pub const MAX_DEPTH: usize = 4096;

/// Bytes of the file system per directory entry it can legitimately hold:
/// every entry occupies a 128-byte blockref (DIRENT or INODE) of its own.
const BYTES_PER_ENTRY: u64 = 128;

/// Bounds of a traversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Directories nested deeper than this below the start are not entered
    /// (a directory entry at this depth is a [`FindingKind::TooDeep`]).
    pub max_depth: usize,
    /// Directory entries read in all, across every directory; past it the
    /// traversal stops with an error.
    pub max_entries: u64,
}

impl Default for Limits {
    /// [`MAX_DEPTH`] and no entry budget.
    fn default() -> Self {
        Limits { max_depth: MAX_DEPTH, max_entries: u64::MAX }
    }
}

impl Limits {
    /// [`MAX_DEPTH`], and a budget of one entry per 128 bytes of the file
    /// system: only an image whose blocks are shared to repeat entries
    /// exceeds it.
    pub fn for_fs(fs: &crate::Hammer2) -> Self {
        let bytes = fs.device.logical_size().max(fs.voldata.volu_size.get());
        Limits { max_depth: MAX_DEPTH, max_entries: (bytes / BYTES_PER_ENTRY).max(1 << 16) }
    }
}

/// What a visitor wants done with a directory it has just seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Enter it: its entries follow, then [`Visitor::leave`].
    Descend,
    /// Do not enter it (and no `leave` follows).
    Skip,
}

/// One directory entry met by the traversal.
pub struct Entry<'e, 'v> {
    /// Path of the directory holding the entry (the start's path as given,
    /// then `start/name/...`), for messages.
    pub parent: &'e str,
    /// 1 for the start directory's entries.
    pub depth: usize,
    pub dirent: &'e DirEntry,
    /// The inode the entry names (its type, not the dirent's, is trusted).
    pub inode: &'e ViewInode<'v>,
}

impl Entry<'_, '_> {
    /// The entry's path, for messages.
    pub fn path(&self) -> String {
        join(self.parent, &self.dirent.name_lossy())
    }
}

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// The name is empty, `.` or `..`, or holds `/` or NUL.
    BadName(&'static str),
    /// A second entry with the same name in one directory.
    DuplicateName,
    /// A directory inode already met elsewhere in the traversal. When it is
    /// one of the entry's own ancestors, its path is given.
    Revisited { ancestor: Option<String> },
    /// A directory nested deeper than the limit.
    TooDeep(usize),
}

/// A hostile entry, reported to [`Visitor::finding`] instead of
/// [`Visitor::entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Path of the entry (lossy UTF-8).
    pub path: String,
    /// Inode number the entry names.
    pub inum: u64,
    pub kind: FindingKind,
    /// Where the named inode lies, when it was looked up.
    pub location: Option<Location>,
}

impl Finding {
    /// The finding as an error naming the path and the inode number.
    pub fn to_error(&self) -> Error {
        let why = match &self.kind {
            FindingKind::BadName(why) => {
                return Error::HostileName {
                    path: format!("{} (inode {})", self.path, self.inum),
                    why: why.to_string(),
                }
            }
            FindingKind::DuplicateName => "a second entry with this name in the same directory".to_string(),
            FindingKind::Revisited { ancestor: Some(a) } => {
                format!("directory contains itself: it is also its ancestor {a}")
            }
            FindingKind::Revisited { ancestor: None } => {
                "directory reached a second time (a directory has exactly one parent); not entered again"
                    .to_string()
            }
            FindingKind::TooDeep(max) => format!("directory nested deeper than {max} levels"),
        };
        let kind = CorruptKind::Namespace { path: self.path.clone(), inum: self.inum, why };
        Error::corrupt(kind, self.location.clone().unwrap_or_default())
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_error().fmt(f)
    }
}

/// Receives the traversal's events, depth first, entries of a directory in
/// key (name hash) order.
pub trait Visitor<'v> {
    /// An entry of the current directory. For a directory, `Step::Descend`
    /// enters it; for anything else the answer is ignored.
    fn entry(&mut self, e: &Entry<'_, 'v>) -> Result<Step>;

    /// After the last entry of a directory that was entered, the start
    /// directory included.
    fn leave(&mut self, _path: &str, _dir: &ViewInode<'v>) -> Result<()> {
        Ok(())
    }

    /// A hostile entry. The entry is not passed to `entry` and, if a
    /// directory, not entered; `Ok` goes on with the next entry. By default
    /// every finding stops the traversal with its error.
    fn finding(&mut self, f: &Finding) -> Result<()> {
        Err(f.to_error())
    }
}

/// Totals of a traversal.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceStats {
    /// Directories entered, the start included.
    pub directories: u64,
    /// Entries read from directories.
    pub entries: u64,
    pub findings: u64,
}

/// Checks a name read from the image before it is used as a host path
/// component: refused if empty, `.` or `..`, or holding `/` or NUL. The error
/// names `parent/name` and the inode number.
pub fn check_name(name: &[u8], inum: u64, parent: &str) -> Result<()> {
    match bad_name(name) {
        Some(why) => Err(Error::HostileName {
            path: format!("{} (inode {inum})", join(parent, &String::from_utf8_lossy(name))),
            why: why.into(),
        }),
        None => Ok(()),
    }
}

fn bad_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("name is '.' or '..'")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    }
}

pub use crate::read::pfs::user_path;

/// The canonical form of a user's path (`/a/b`; `/` for the root), after
/// [`user_path`]'s checks.
pub fn canonical(path: &str) -> Result<String> {
    Ok(format!("/{}", user_path(path)?.join("/")))
}

fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// One directory being read.
struct Frame<'v> {
    inode: ViewInode<'v>,
    path: String,
    depth: usize,
    /// Entries not yet visited, with whether the name repeats an earlier one.
    entries: std::vec::IntoIter<(DirEntry, bool)>,
    /// Inodes the entries name, read ahead ([`FsView::read_ahead`]).
    inodes: HashMap<u64, ViewInode<'v>>,
}

struct Traversal<'v, V: ?Sized> {
    view: &'v V,
    limits: Limits,
    /// Every directory inode met so far.
    visited: HashSet<u64>,
    stats: NamespaceStats,
}

impl<'v, V: FsView + ?Sized> Traversal<'v, V> {
    /// Reads a directory's entries within the remaining budget.
    fn open(&mut self, inode: ViewInode<'v>, path: String, depth: usize) -> Result<Frame<'v>> {
        let mut entries = Vec::new();
        let max = self.limits.max_entries;
        let used = &mut self.stats.entries;
        let budget_err = |path: &str, inode: &ViewInode<'_>| {
            Error::corrupt(
                CorruptKind::TooManyEntries { path: path.to_string(), inum: inode.data.inum(), max },
                inode.location(),
            )
        };
        self.view.scan_dir(&inode, &mut |e| {
            *used += 1;
            if *used > max {
                return Err(budget_err(&path, &inode));
            }
            entries.push(e);
            Ok(Flow::Continue)
        })?;
        entries.sort_by_key(|e| e.key);
        let dups: Vec<bool> = {
            let mut names = HashSet::with_capacity(entries.len());
            entries.iter().map(|e| !names.insert(e.name.as_slice())).collect()
        };
        let inums: Vec<u64> = entries.iter().map(|e| e.inum).collect();
        let inodes = self.view.read_ahead(&inums);
        let entries: Vec<(DirEntry, bool)> = entries.into_iter().zip(dups).collect();
        self.stats.directories += 1;
        Ok(Frame { inode, path, depth, entries: entries.into_iter(), inodes })
    }
}

/// Traverses the namespace below directory `start` of `view` (whose path,
/// for messages, is `start_path`), depth first. `visitor.entry` is not
/// called for `start` itself; `visitor.leave` is, last.
pub fn traverse<'v, V: FsView + ?Sized>(
    view: &'v V,
    start: &ViewInode<'v>,
    start_path: &str,
    limits: Limits,
    visitor: &mut dyn Visitor<'v>,
) -> Result<NamespaceStats> {
    if !start.data.is_dir() {
        return Err(Error::NotADirectory(format!("{start_path} (inode {})", start.data.inum())));
    }
    let mut t = Traversal { view, limits, visited: HashSet::new(), stats: NamespaceStats::default() };
    t.visited.insert(start.data.inum());
    let mut stack = vec![t.open(start.clone(), start_path.to_string(), 0)?];
    while let Some(top) = stack.last_mut() {
        let Some((dirent, dup)) = top.entries.next() else {
            // OK to unwrap: `top` was just borrowed from the stack.
            let done = stack.pop().unwrap();
            visitor.leave(&done.path, &done.inode)?;
            continue;
        };
        let depth = top.depth + 1;
        let path = join(&top.path, &dirent.name_lossy());
        let finding = |kind, location| Finding { path: path.clone(), inum: dirent.inum, kind, location };
        let early = if let Some(why) = bad_name(&dirent.name) {
            Some(finding(FindingKind::BadName(why), None))
        } else if dup {
            Some(finding(FindingKind::DuplicateName, None))
        } else {
            None
        };
        if let Some(f) = early {
            t.stats.findings += 1;
            visitor.finding(&f)?;
            continue;
        }
        let inode = match top.inodes.remove(&dirent.inum) {
            Some(ino) => ino,
            None => view.inode(dirent.inum)?,
        };
        if inode.data.is_dir() {
            let late = if !t.visited.insert(inode.data.inum()) {
                let ancestor =
                    stack.iter().find(|f| f.inode.data.inum() == inode.data.inum()).map(|f| f.path.clone());
                Some(finding(FindingKind::Revisited { ancestor }, Some(inode.location())))
            } else if depth >= limits.max_depth {
                Some(finding(FindingKind::TooDeep(limits.max_depth), Some(inode.location())))
            } else {
                None
            };
            if let Some(f) = late {
                t.stats.findings += 1;
                visitor.finding(&f)?;
                continue;
            }
        }
        // OK to unwrap: the stack is not empty inside the loop.
        let parent = &stack.last().unwrap().path;
        let step = visitor.entry(&Entry { parent, depth, dirent: &dirent, inode: &inode })?;
        if inode.data.is_dir() && step == Step::Descend {
            let frame = t.open(inode, path, depth)?;
            stack.push(frame);
        }
    }
    Ok(t.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths() {
        for root in ["", "/", ".", "/./", "//"] {
            assert!(user_path(root).unwrap().is_empty(), "{root:?}");
        }
        assert_eq!(user_path("/a/./b//c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(canonical("a/./b/").unwrap(), "/a/b");
        for bad in ["/..", "..", "/a/../b", "a/..", "/a\0b"] {
            assert!(matches!(user_path(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        // Names that merely start with dots are ordinary.
        assert_eq!(user_path("/...").unwrap(), ["..."]);
        assert_eq!(user_path("/..a/.b").unwrap(), ["..a", ".b"]);
    }

    #[test]
    fn names_from_the_image() {
        for bad in [&b".."[..], b".", b"a/b", b"", b"x\0y"] {
            assert!(check_name(bad, 7, "/d").is_err(), "{bad:?}");
        }
        check_name(b"...", 7, "/d").unwrap();
        let e = check_name(b"..", 7, "/d").unwrap_err().to_string();
        assert!(e.contains("/d/.. (inode 7)"), "{e}");
        let e = check_name(b"..", 7, "/").unwrap_err().to_string();
        assert!(e.contains("/.. (inode 7)") && !e.contains("//"), "{e}");
    }

    #[test]
    fn findings_name_the_path_and_inode() {
        let f = Finding {
            path: "/a/b".into(),
            inum: 42,
            kind: FindingKind::Revisited { ancestor: Some("/a".into()) },
            location: None,
        };
        let e = f.to_error().to_string();
        assert!(e.contains("/a/b (inode 42)") && e.contains("contains itself") && e.contains("/a"), "{e}");
        let f = Finding { kind: FindingKind::BadName("name is '.' or '..'"), ..f };
        assert!(matches!(f.to_error(), Error::HostileName { .. }));
    }
}
