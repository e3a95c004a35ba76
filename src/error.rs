//! Typed errors. Corruption carries where it was found; I/O carries the path
//! and offset. The library never prints.
//!
//! This module depends on nothing above [`crate::format`]: the codec error
//! ([`CodecError`]) is defined here and re-exported by [`crate::format::compress`],
//! so that lower layers can name every error without pulling in codecs.

pub use crate::format::compress::CodecError;
use crate::format::BlockrefType;
use std::path::PathBuf;

/// Where in the media tree a problem sits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Type of the blockref that led here (if any).
    pub bref_type: Option<BlockrefType>,
    /// Its raw `data_off` (offset and radix).
    pub data_off: u64,
    pub key: u64,
    pub keybits: u8,
    /// `data_off` of the parent node (0 for the volume header).
    pub parent_off: u64,
    /// Slot index in the parent's table.
    pub index: usize,
}

impl Location {
    /// The location of `bref`, found in slot `index` of the node at `parent_off`.
    pub fn of(bref: &crate::format::Blockref, parent_off: u64, index: usize) -> Self {
        Location {
            bref_type: Some(bref.kind()),
            data_off: bref.data_off.get(),
            key: bref.key.get(),
            keybits: bref.keybits,
            parent_off,
            index,
        }
    }
}

impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Location", 6)?;
        st.serialize_field("type", &self.bref_type.map(|t| t.to_string()))?;
        st.serialize_field("data_off", &self.data_off)?;
        st.serialize_field("key", &self.key)?;
        st.serialize_field("keybits", &self.keybits)?;
        st.serialize_field("parent_off", &self.parent_off)?;
        st.serialize_field("slot", &self.index)?;
        st.end()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bref_type {
            Some(t) => write!(f, "{t}")?,
            None => write!(f, "blockref")?,
        }
        write!(
            f,
            " data_off {:#x} key {:#018x}/{} (parent {:#x} slot {})",
            self.data_off, self.key, self.keybits, self.parent_off, self.index
        )
    }
}

/// What is wrong with what was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    #[error("check code ({method}) mismatch: stored {expected}, data gives {found}")]
    CheckMismatch { method: String, expected: String, found: String },
    #[error("unknown check method {0}")]
    UnknownCheck(u8),
    #[error("radix {0} outside 10..=16 (or 15 for freemap blocks)")]
    BadRadix(u8),
    #[error("media at logical offset {offset:#x}+{len:#x} lies outside every volume")]
    OutOfRange { offset: u64, len: u64 },
    #[error("tree deeper than {0} levels (a cycle?)")]
    TooDeep(usize),
    #[error("cycle: points at its own ancestor")]
    Cycle,
    #[error(
        "traversal gave up after {0} blockrefs (more than the volumes can hold: shared or looping structure)"
    )]
    Budget(u64),
    #[error("block does not decompress: {0}")]
    Decompress(#[from] CodecError),
    #[error("inode: {0}")]
    BadInode(String),
    #[error("directory entry: {0}")]
    BadDirent(String),
    #[error("blockref type {found} not allowed here (expected {expected})")]
    WrongType { found: String, expected: &'static str },
    #[error("two entries with the same key {key:#x}")]
    DuplicateKey { key: u64 },
    #[error("cannot split a full table to insert key {key:#x}")]
    TableFull { key: u64 },
    #[error("media at {offset:#x}+{len:#x} unreadable: {why}")]
    Unreadable { offset: u64, len: u64, why: String },
    #[error("data overlaps earlier data at {pos:#x}")]
    DataOverlap { pos: u64 },
    #[error("indirect block referenced twice in one file")]
    SharedIndirect,
    #[error("data keybits {0} > 16")]
    DataKeybits(u8),
    #[error("unknown compression {0}")]
    UnknownCompression(u8),
    /// A problem of the namespace (names, cycles, nesting) met at a path.
    #[error("{path} (inode {inum}): {why}")]
    Namespace { path: String, inum: u64, why: String },
    #[error("{path} (inode {inum}): more than {max} directory entries read; stopping (blocks shared to repeat entries?)")]
    TooManyEntries { path: String, inum: u64, max: u64 },
    /// A freemap node or leaf the allocator cannot use.
    #[error("{0}")]
    FreemapShape(String),
    /// A node of the tree is not what its place requires (an inode
    /// index entry that is no inode, a directory that embeds data).
    #[error("{0}")]
    Shape(&'static str),
    #[error("second freemap leaf for zone {key:#x}")]
    SecondLeaf { key: u64 },
    /// A block the freemap replay cannot mark allocated.
    #[error("cannot be marked allocated: {0}")]
    Unmarkable(String),
    /// The first problem of a freemap replay, and how many more there were.
    #[error("{first}{}; the freemap replay needs every changed node readable", more_text(*more))]
    Replay { first: Box<CorruptKind>, more: u64 },
}

fn more_text(more: u64) -> String {
    if more > 0 {
        format!(" (and {more} more problems)")
    } else {
        String::new()
    }
}

/// A corruption and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at {location}")]
pub struct Corruption {
    pub kind: CorruptKind,
    pub location: Location,
}

/// Errors the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `offset` is where in `path` (0 when it means nothing: host files
    /// opened, created or read whole; it is then not shown).
    #[error("{path}: {op} failed{}: {source}", at_offset(*offset))]
    Io {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Open { path: PathBuf, why: String },
    #[error("{path}: is mounted on {mountpoint}; refusing to open it for writing")]
    Mounted { path: PathBuf, mountpoint: String },
    /// Another process holds the volume: a lock of another run (or of a
    /// virtual machine), or, for a block device, an exclusive open.
    #[error("{path}: {}", locked_reason(holder.as_ref(), *exclusive_open, *waited))]
    Locked {
        path: PathBuf,
        /// Which process, when the system tells.
        holder: Option<Holder>,
        /// A block device another process opened with `O_EXCL`.
        exclusive_open: bool,
        /// How long this run waited for it (None: it was not asked to).
        waited: Option<std::time::Duration>,
    },
    /// An earlier read, write or barrier on the device failed: the device
    /// takes no more writes (a critical I/O error stops the run, as
    /// HAMMER's does), so what the last commit left stays as it is.
    #[error("{path}: writes stopped after an I/O error ({op} at offset {offset:#x}: {why})")]
    Stopped { path: PathBuf, op: &'static str, offset: u64, why: String },
    #[error("{path}: read-only; reopen for writing first")]
    ReadOnly { path: PathBuf },
    #[error("{what}: offset {offset:#x} length {len:#x} lies past the end ({size:#x} bytes)")]
    OutOfBounds { what: String, offset: u64, len: u64, size: u64 },
    #[error("no valid volume header: {0}")]
    NoValidHeader(String),
    #[error("volume set: {0}")]
    VolumeSet(String),
    /// A header field that places or sizes a volume (offsets, sizes, counts)
    /// cannot be used: nothing is mapped or sized from it.
    #[error("{volume}: {field} {value:#x}: {why}")]
    Geometry { volume: String, field: String, value: u64, why: String },
    #[error("{0}")]
    Corrupt(#[from] Corruption),
    /// The user's input (an argument, a path, a script line) cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A name or PFS to be created exists already.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// A directory to be removed or replaced holds entries.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// A device or image file of 0 bytes.
    #[error("{path}: is empty (0 bytes)")]
    Empty { path: PathBuf },
    /// A failed run that wrote nothing (the error as it was met).
    #[error("{0}; nothing was written")]
    NothingWritten(Box<Error>),
    /// A counter of the file system (transaction ids, inode numbers) has
    /// no next value.
    #[error("{0} exhausted")]
    Exhausted(&'static str),
    /// A bug: a state the code should never reach.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("no space left on the file system: {0}")]
    NoSpace(String),
    #[error("{0}: no such file, directory or PFS")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A command line or script that cannot be run as written (the
    /// binaries exit with their usage status).
    #[error("{0}")]
    Usage(String),
    #[error("{path}: refusing a name from the image: {why}")]
    HostileName { path: String, why: String },
    /// The user interrupted the work ([`crate::interrupt`]).
    #[error("interrupted")]
    Interrupted,
    /// A problem met in the contents of one file (e.g. a DATA block failing
    /// its check code during an extraction): which file, with the error as
    /// it was met (a [`Error::Corrupt`] keeps its kind and location).
    #[error("{path} (inode {inum}): {source}")]
    InFile {
        path: String,
        inum: u64,
        #[source]
        source: Box<Error>,
    },
}

/// A process holding a volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (/proc/PID/comm), when readable.
    pub command: Option<String>,
}

/// The binaries of this toolkit, as a holder's command names them.
const TOOLS: [&str; 5] = ["hammer2_edit", "hammer2_dump", "hammer2_recover", "fsck_hammer2", "newfs_hammer2"];

fn locked_reason(
    holder: Option<&Holder>,
    exclusive_open: bool,
    waited: Option<std::time::Duration>,
) -> String {
    let who = match holder {
        Some(Holder { pid, command: Some(c) }) => format!("pid {pid}, {c}"),
        Some(Holder { pid, command: None }) => format!("pid {pid}"),
        None if exclusive_open => {
            "a mount, a file system tool or a device-mapper or RAID layer; the system does not say which"
                .into()
        }
        None => "the system does not say which".into(),
    };
    let ours = holder.and_then(|h| h.command.as_deref()).is_some_and(|c| TOOLS.contains(&c));
    let mut msg = if ours {
        format!("in use by another hammer2 tool ({who})")
    } else if exclusive_open {
        format!("held open exclusively by another process ({who})")
    } else {
        format!("in use by another process ({who})")
    };
    if let Some(w) = waited {
        msg.push_str(&format!(", still after waiting {:.1} s", w.as_secs_f64()));
    }
    msg
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// " at offset 0x..." for an [`Error::Io`], nothing for offset 0.
fn at_offset(offset: u64) -> String {
    if offset == 0 {
        String::new()
    } else {
        format!(" at offset {offset:#x}")
    }
}

impl Error {
    /// The user's input cannot be used: why.
    pub fn invalid(why: impl Into<String>) -> Self {
        Error::InvalidArgument(why.into())
    }

    /// A corruption at `location`.
    pub fn corrupt(kind: CorruptKind, location: Location) -> Self {
        Error::Corrupt(Corruption { kind, location })
    }

    /// A node that is not what its place requires (location unknown).
    pub fn shape(what: &'static str) -> Self {
        Error::corrupt(CorruptKind::Shape(what), Location::default())
    }
}
