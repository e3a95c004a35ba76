//! Where a finding lies, as data: repairs and tests select by it, and it is
//! rendered to text only when a report is printed.

use crate::error::Location;
use crate::read::walk::Root;
use serde::Serialize;
use std::fmt;

/// What is known of the freemap leaf covering a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "data_off", rename_all = "snake_case")]
pub enum ZoneLeaf {
    /// The zone's leaf, at this `data_off`.
    Leaf(u64),
    /// No leaf covers the zone (never allocated from).
    None,
    /// The leaf could not be read or is malformed.
    Unknown,
}

/// Where a finding lies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    /// A device spec or one volume of it, as a whole.
    Device { path: String },
    /// One volume-header copy of a volume (its offset when known).
    HeaderCopy { volume: String, copy: usize, offset: Option<u64> },
    /// A blockref met by the walk of one tree (topology or freemap) under
    /// header copy `copy`.
    Tree {
        #[serde(serialize_with = "root_name")]
        root: Root,
        copy: usize,
        at: Location,
    },
    /// A whole tree under header copy `copy`.
    WholeTree {
        #[serde(serialize_with = "root_name")]
        root: Root,
        copy: usize,
    },
    /// A blockref of the topology, in a PFS when the walk was inside one.
    Blockref { pfs: Option<String>, at: Location },
    /// A directory entry of a PFS.
    Dirent { pfs: String, at: Location },
    /// An inode of a PFS: its path when a directory entry names it, and the
    /// blockref holding it when known.
    Inode { pfs: String, inum: u64, path: Option<String>, at: Option<Location> },
    /// Logical offsets `start..end` in one freemap zone.
    Logical { start: u64, end: u64, zone: u64, leaf: ZoneLeaf },
    /// The position a freemap entry's `linear` names: entry `entry` (the
    /// 4 MiB segment at `segment`) of the leaf at `leaf` in zone `zone`.
    Linear { pos: u64, zone: u64, leaf: u64, entry: usize, segment: u64 },
    /// A summary of `count` more places of the kind `of` (zones, entries)
    /// that are not listed one by one.
    More { count: u64, of: &'static str },
}

fn root_name<S: serde::Serializer>(root: &Root, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tree_name(*root))
}

fn tree_name(root: Root) -> &'static str {
    match root {
        Root::Topology => "topology",
        Root::Freemap => "freemap",
    }
}

impl Place {
    /// The blockref location, for places that have one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Place::Tree { at, .. } | Place::Blockref { at, .. } | Place::Dirent { at, .. } => Some(at),
            Place::Inode { at, .. } => at.as_ref(),
            _ => None,
        }
    }

    /// The tree walked, for places found by a walk of one.
    pub fn root(&self) -> Option<Root> {
        match self {
            Place::Tree { root, .. } | Place::WholeTree { root, .. } => Some(*root),
            _ => None,
        }
    }

    /// The PFS, for places inside one.
    pub fn pfs(&self) -> Option<&str> {
        match self {
            Place::Blockref { pfs, .. } => pfs.as_deref(),
            Place::Dirent { pfs, .. } | Place::Inode { pfs, .. } => Some(pfs),
            _ => None,
        }
    }

    /// The inode, for places that are one.
    pub fn inum(&self) -> Option<u64> {
        match self {
            Place::Inode { inum, .. } => Some(*inum),
            _ => None,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Device { path } => f.write_str(path),
            Place::HeaderCopy { volume, copy, offset } => {
                write!(f, "{volume} header copy #{copy}")?;
                match offset {
                    Some(o) => write!(f, " at {o:#x}"),
                    None => Ok(()),
                }
            }
            Place::Tree { root, copy, at } => write!(f, "{} (copy #{copy}): {at}", tree_name(*root)),
            Place::WholeTree { root, copy } => write!(f, "{} (copy #{copy})", tree_name(*root)),
            Place::Blockref { pfs: Some(pfs), at } | Place::Dirent { pfs, at } => {
                write!(f, "PFS {pfs}: {at}")
            }
            Place::Blockref { pfs: None, at } => write!(f, "{at}"),
            Place::Inode { pfs, inum, path, at } => {
                write!(f, "PFS {pfs}: {} (inode {inum})", path.as_deref().unwrap_or("<unnamed>"))?;
                match at {
                    Some(at) => write!(f, " at {at}"),
                    None => Ok(()),
                }
            }
            Place::Logical { start, end, zone, leaf } => {
                write!(f, "logical {start:#x}-{:#x} (zone {zone}", end.saturating_sub(1))?;
                match leaf {
                    ZoneLeaf::Leaf(off) => write!(f, ", leaf at {off:#x})"),
                    ZoneLeaf::None => write!(f, ", which has no freemap leaf)"),
                    ZoneLeaf::Unknown => write!(f, ")"),
                }
            }
            Place::Linear { pos, zone, leaf, entry, segment } => {
                write!(f, "logical {pos:#x} (zone {zone}, leaf at {leaf:#x}, entry {entry} at {segment:#x})")
            }
            Place::More { count, of } => write!(f, "{count} more {of}"),
        }
    }
}
