//! Semantic checks that no check code can catch: what a writer could have
//! stored with every CRC and hash intact, yet no correct writer stores.
//!
//! The topology pass ([`super::topology`]) calls in here at a few points
//! (an inode met, a DATA blockref met, a directory entry recorded, a PFS
//! finished); the state kept here is per PFS and small (directories only).
//!
//! - **Blockref size of an inode** ([`BREF_INODE_SIZE`]): an inode is
//!   1 KiB; a blockref declaring 2 or 4 KiB makes every reader hash and
//!   copy bytes that are not the inode, and a writer relocate the wrong size.
//! - **Mode type bits** ([`INODE_MODE`]): HAMMER2 keeps the object's type
//!   in `type`; the kernel stores only permission bits in `mode` (`va_mode`),
//!   so type bits there, when present, must name the same type, and nothing
//!   above the 16 bits of a `mode_t` may be set.
//! - **Directory link count** ([`INODE_DIR_NLINKS`]): a directory's
//!   `nlinks` is either 1 (the kernel's "not counted" value, which it keeps
//!   sticky: it only increments or decrements a count other than 1) or
//!   2 plus its subdirectories (the Unix convention, once counted); 0 never.
//! - **iparent** ([`INODE_IPARENT`], [`INODE_IPARENT_HINT`]): the kernel
//!   resolves a directory's `..` through `iparent`, so a directory's must
//!   be the directory naming it. For other inodes `iparent` is a hint that
//!   create and rename keep but unlink does not (removing the first name of
//!   a hard-linked file leaves it naming the old directory), so only a file
//!   named exactly once, by one entry in a directory that is not its
//!   `iparent`, is reported, and only as information: the kernel (and our
//!   writer) leave exactly that after `ln a d/b; rm a`.
//! - **Duplicate keys** ([`BREF_KEY_DUP`]): two live entries of one table
//!   with the same key; a lookup finds one and never the other.
//! - **Data past the end** ([`DATA_PAST_EOF`]): a DATA blockref whose key
//!   lies at or beyond the file's size rounded up to the block (a file of
//!   size 0 owns no block at all).
//! - **Data keybits** ([`DATA_KEYBITS`]): a DATA blockref's keybits give
//!   its logical size, and no block is larger on media than that. A raw
//!   block may be smaller only when it is the file's tail (the fixtures'
//!   writers give a 2 KiB tail keybits 16): it must still reach the end of
//!   the file.

use super::{
    Problem, BREF_INODE_SIZE, DATA_KEYBITS, DATA_PAST_EOF, INODE_DIR_NLINKS, INODE_IPARENT,
    INODE_IPARENT_HINT, INODE_MODE,
};
use crate::format::{Blockref, CompMethod, InodeData, ObjType};

/// A field repair a finding proves right: the value the inode's field
/// must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFix {
    Iparent(u64),
    Mode(u32),
    Nlinks(u64),
}

impl FieldFix {
    /// Stores the value.
    pub fn apply(self, m: &mut crate::format::InodeMeta) {
        match self {
            FieldFix::Iparent(v) => m.iparent = v.into(),
            FieldFix::Mode(v) => m.mode = v.into(),
            FieldFix::Nlinks(v) => m.nlinks = v.into(),
        }
    }
}

impl std::fmt::Display for FieldFix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldFix::Iparent(v) => write!(f, "iparent set to {v}"),
            FieldFix::Mode(v) => write!(f, "mode set to {v:#o}"),
            FieldFix::Nlinks(v) => write!(f, "nlinks set to {v}"),
        }
    }
}

/// A repair of finding `finding` (an index into the report's findings):
/// inode `inum` of PFS `pfs` gets `fix`.
#[derive(Debug, Clone)]
pub struct InodeFix {
    pub finding: usize,
    pub pfs: String,
    pub inum: u64,
    pub fix: FieldFix,
}

/// The removal of a directory entry naming no inode (finding `finding`):
/// the entry at `key` of directory `dir` in PFS `pfs`.
#[derive(Debug, Clone)]
pub struct DirentFix {
    pub finding: usize,
    pub pfs: String,
    pub dir: u64,
    pub key: u64,
}

/// `S_IFMT` and the type bits each object type has in a `mode_t`.
const S_IFMT: u32 = 0o170000;

/// The `mode_t` type bits of an object type, if it has any.
pub fn ifmt(t: ObjType) -> Option<u32> {
    Some(match t {
        ObjType::Fifo => 0o010000,
        ObjType::Cdev => 0o020000,
        ObjType::Directory => 0o040000,
        ObjType::Bdev => 0o060000,
        ObjType::Regfile => 0o100000,
        ObjType::Softlink => 0o120000,
        ObjType::Socket => 0o140000,
        ObjType::Whiteout => 0o160000,
        _ => return None,
    })
}

/// The mode a repair stores: permission bits only, as the kernel does.
pub fn repaired_mode(mode: u32) -> u32 {
    mode & 0o7777
}

/// Why `mode` cannot belong to an inode of type `t`, if it cannot.
pub fn mode_problem(mode: u32, t: ObjType) -> Option<String> {
    if mode > 0o177777 {
        return Some(format!("mode {mode:#o} has bits above those of a mode_t"));
    }
    let bits = mode & S_IFMT;
    if bits != 0 && Some(bits) != ifmt(t) {
        return Some(format!("mode {mode:#o}: its type bits {bits:#o} are not those of a {t}"));
    }
    None
}

/// Checks of one inode that need nothing but its blockref and itself.
/// `root` is true for the super-root and PFS roots.
pub(super) fn inode(b: &Blockref, ip: &InodeData, root: bool) -> Vec<(Problem, String, Option<FieldFix>)> {
    let mut out = Vec::new();
    let m = &ip.meta;
    let inum = m.inum.get();
    if b.radix() != 0 && b.physical_size() != crate::format::INODE_BYTES as u64 {
        out.push((
            BREF_INODE_SIZE,
            format!("inode {inum}: blockref declares {} bytes, an inode is 1024", b.physical_size()),
            None,
        ));
    }
    if let Some(why) = mode_problem(m.mode.get(), m.obj_type()) {
        out.push((
            INODE_MODE,
            format!("inode {inum}: {why}"),
            Some(FieldFix::Mode(repaired_mode(m.mode.get()))),
        ));
    }
    if !root && m.obj_type() == ObjType::Directory && m.nlinks.get() == 0 {
        // Counted-mode disagreements are judged at the PFS's end (they need
        // the subdirectories); 0 is wrong whatever the mode.
        out.push((INODE_DIR_NLINKS, format!("directory {inum} has nlinks 0"), Some(FieldFix::Nlinks(1))));
    }
    out
}

/// Checks of one DATA blockref of a file of `size` bytes (keybits already
/// known to lie in 10..=16).
pub(super) fn data(b: &Blockref, size: u64) -> Vec<(Problem, String)> {
    let mut out = Vec::new();
    let key = b.key.get();
    let logical = 1u64 << b.keybits;
    let end = if size == 0 { 0 } else { size.checked_next_multiple_of(logical).unwrap_or(u64::MAX) };
    if key >= end {
        out.push((DATA_PAST_EOF, format!("data at {key:#x} lies past the end of the file ({size} bytes)")));
    }
    if b.radix() != 0 {
        let phys = b.physical_size();
        let raw = matches!(b.comp_method(), CompMethod::None | CompMethod::Autozero);
        // A raw block shorter than its logical size must be the file's
        // last (the kernel sizes the tail's media by what it holds).
        let short = raw && phys < logical && key.saturating_add(phys) < size;
        if phys > logical || short {
            out.push((
                DATA_KEYBITS,
                format!(
                    "keybits {} ({logical} bytes) but {phys} bytes of {} media{}",
                    b.keybits,
                    if raw { "raw" } else { "compressed" },
                    if short { ", short of the file's end" } else { "" }
                ),
            ));
        }
    }
    out
}

/// One end-of-PFS finding: problem, inode, detail, and its repair.
pub(super) type InodeFinding = (Problem, u64, String, FieldFix);

/// The end-of-PFS checks of directory `inum` (`nlinks`, `iparent`; `root`
/// for the PFS root, which no entry names): `subdirs` entries in it name
/// directories, and `named_in` is the directory of its first entry in walk
/// order with the number of entries naming it. `partial` when subtrees
/// shared with another PFS were not walked (names may then lie there:
/// only what is certain is reported).
pub(super) fn directory(
    inum: u64,
    nlinks: u64,
    iparent: u64,
    root: bool,
    subdirs: u64,
    named_in: Option<(u64, u64)>,
    partial: bool,
) -> Vec<InodeFinding> {
    let mut out = Vec::new();
    let counted = subdirs.saturating_add(2);
    if nlinks != 0 && nlinks != 1 && nlinks != counted && !partial {
        out.push((
            INODE_DIR_NLINKS,
            inum,
            format!(
                "directory with nlinks {nlinks}: it has {subdirs} subdirectories, so 1 (not counted) or {counted}"
            ),
            FieldFix::Nlinks(counted),
        ));
    }
    if root {
        return out;
    }
    if let Some((parent, 1)) = named_in {
        if iparent != parent {
            out.push((
                INODE_IPARENT,
                inum,
                format!("iparent {iparent} but directory {parent} names it"),
                FieldFix::Iparent(parent),
            ));
        }
    }
    out
}

/// The end-of-PFS check of a file (not a directory) with nlinks 1: its
/// `iparent` against the directory of its only name (`named_in` as for
/// [`directory`]).
pub(super) fn single(
    inum: u64,
    iparent: u64,
    named_in: Option<(u64, u64)>,
    partial: bool,
) -> Option<InodeFinding> {
    match named_in {
        Some((parent, 1)) if iparent != parent && !partial => Some((
            INODE_IPARENT_HINT,
            inum,
            format!("iparent {iparent} but its only name is in directory {parent}"),
            FieldFix::Iparent(parent),
        )),
        _ => None,
    }
}

/// Whether a finding is a misdirected inode blockref: an entry of a PFS's
/// inode index whose block is also reached from another entry
/// ([`super::BREF_DUPLICATE`]) and holds an inode of another number than
/// the entry's key. That entry, not the other, is the damage (an intact
/// index keys every inode by its number), so the rebuild replaces it as an
/// unreadable node: the inode of its number comes back from an older
/// header copy or the media, the shared block stays the other entry's.
/// Anything else referenced twice is left: which reference is right is
/// not known.
pub(super) fn misdirected_inode(spec: &str, f: &super::Finding) -> bool {
    use crate::format::{BlockrefType, DIRHASH_VISIBLE, INODE_BYTES};
    // The walk's finding (the block reached a second time), not the index
    // cross-check's (two inodes carrying one number, each in its own block).
    let shared = f.problem.id == super::BREF_DUPLICATE.id && f.detail.contains("already referenced");
    if !shared || f.location.pfs().is_none() {
        return false;
    }
    let Some(at) = f.location.location() else { return false };
    if at.bref_type != Some(BlockrefType::Inode) || at.key & DIRHASH_VISIBLE != 0 {
        return false;
    }
    let open = crate::device::Device::open(spec, crate::device::Access::ReadOnly)
        .and_then(|d| crate::volume::Hammer2::open(d, crate::volume::CopyChoice::Best));
    let Ok(fs) = open else { return false };
    let Ok(bytes) = fs.device.read(at.data_off & !0x3f, INODE_BYTES) else { return false };
    InodeData::from_bytes(bytes).is_some_and(|ip| ip.meta.inum.get() != at.key)
}
