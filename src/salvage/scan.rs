//! The media scan: every volume read once, in large sequential reads,
//! holes skipped, chunks spread over the cores; every 128-byte slot tried
//! as a blockref and every 1 KiB-aligned block as an inode.
//!
//! What a chunk yields ([`Finds`]) is compact and independent of the other
//! chunks; [`super::Index`] joins them once the scan is over.

use crate::format::check::{self, CheckOutcome};
use crate::format::{
    Blockref, BlockrefType, InodeData, ObjType, PfsType, BLOCKREF_BYTES, INODE_BYTES, INODE_MAXNAME,
};
use crate::volume::Hammer2;

/// An INDIRECT blockref found in a slot: the block it names lies in the
/// tree of whatever holds the slot (`referrer`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeRef {
    /// Logical offset of the block named, its radix in the low bits.
    pub off_radix: u64,
    /// Logical offset of the slot naming it.
    pub referrer: u64,
}

impl NodeRef {
    pub fn off(&self) -> u64 {
        self.off_radix & !1023
    }
    pub fn radix(&self) -> u8 {
        (self.off_radix & 63) as u8
    }
}

/// A 1 KiB-aligned block that reads as an inode (its own bytes are not
/// verified by anything: a [`Version`](super::Version) is, through a referrer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawInode {
    /// Its logical offset, its [`Role`] in the low bits.
    pub off_role: u64,
    pub inum: u64,
}

impl RawInode {
    pub fn off(&self) -> u64 {
        self.off_role & !1023
    }
    /// PFS root (`OPFLAG_PFSROOT`) or super-root (`pfs_type` SUPROOT);
    /// the `pfs_clid` of those is in [`Finds::clids`] (most raw inodes
    /// are plain: their records stay small).
    pub fn role(&self) -> Role {
        match self.off_role & 3 {
            1 => Role::PfsRoot,
            2 => Role::SuperRoot,
            _ => Role::Plain,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Plain,
    PfsRoot,
    SuperRoot,
}

/// An INODE blockref whose target passed its check code (or, kept only
/// for `--relaxed`, carries no check code), `inum == key` unless the target
/// is a PFS root (those are keyed by their label's hash in the super-root;
/// their `pfs_clid` is in [`Finds::root_clids`]).
#[derive(
    Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
)]
#[repr(C)]
pub(crate) struct InodeRef {
    /// Logical offset of the slot.
    pub at: u64,
    /// Logical offset of the target; bit 0: verified, bit 1: a PFS root.
    pub data_flags: u64,
    pub inum: u64,
    pub modify_tid: u64,
    pub mirror_tid: u64,
    /// Identity of the version's state (see [`ident`]).
    pub ident: u64,
}

impl InodeRef {
    pub fn data_off(&self) -> u64 {
        self.data_flags & !1023
    }
    pub fn verified(&self) -> bool {
        self.data_flags & 1 != 0
    }
    pub fn pfs_root(&self) -> bool {
        self.data_flags & 2 != 0
    }
}

/// A DIRENT blockref; its name (read from its data block, verified, when
/// longer than 64 bytes) is in the names arena.
#[derive(
    Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
)]
#[repr(C)]
pub(crate) struct DirentRef {
    pub at: u64,
    pub inum: u64,
    pub modify_tid: u64,
    pub mirror_tid: u64,
    /// See [`name_ref`].
    pub name: u64,
}

/// Packs a name's place in an arena with the entry's type code.
pub(crate) fn name_ref(off: u64, len: usize, kind: u8) -> u64 {
    (off << 24) | ((kind as u64) << 16) | len as u64
}

/// (offset, length, type code) of a [`name_ref`].
pub(crate) fn name_parts(n: u64) -> (u64, usize, u8) {
    (n >> 24, (n & 0xffff) as usize, (n >> 16) as u8)
}

/// What one chunk of media yielded.
#[derive(Debug, Default)]
pub(crate) struct Finds {
    pub nodes: Vec<NodeRef>,
    pub raws: Vec<RawInode>,
    /// `pfs_clid` of the raw inodes that are PFS roots or the super-root, by offset.
    pub clids: Vec<(u64, [u8; 16])>,
    /// `pfs_clid` of the PFS roots verified INODE blockrefs name, by offset.
    pub root_clids: Vec<(u64, [u8; 16])>,
    pub inodes: Vec<InodeRef>,
    pub dirents: Vec<DirentRef>,
    /// The dirents' names (offsets local to this `Finds`).
    pub names: Vec<u8>,
    /// Slots holding DATA blockrefs (read again from the media when placed).
    pub data: Vec<u64>,
    /// Slots that decoded as a plausible blockref.
    pub candidates: u64,
}

impl Finds {
    pub fn append(&mut self, mut o: Finds) {
        let base = self.names.len() as u64;
        self.nodes.append(&mut o.nodes);
        self.raws.append(&mut o.raws);
        self.clids.append(&mut o.clids);
        self.root_clids.append(&mut o.root_clids);
        self.inodes.append(&mut o.inodes);
        self.dirents.extend(o.dirents.iter().map(|d| {
            let (off, len, kind) = name_parts(d.name);
            DirentRef { name: name_ref(off + base, len, kind), ..*d }
        }));
        self.names.append(&mut o.names);
        self.data.append(&mut o.data);
        self.candidates += o.candidates;
    }
}

/// Whether a 1 KiB block reads as an inode: a version HAMMER2 writes, a
/// known object type, a nonzero inode number, a name that fits, methods
/// that exist.
pub(crate) fn plausible_inode(bytes: &[u8]) -> Option<&InodeData> {
    let ip = InodeData::from_bytes(bytes)?;
    let m = &ip.meta;
    let known_type = !matches!(m.obj_type(), ObjType::Unknown(_) | ObjType::Unknown0 | ObjType::Unused08);
    let ok = m.version.get() == 1
        && known_type
        && m.inum.get() != 0
        && (m.name_len.get() as usize) <= INODE_MAXNAME
        && (m.comp_algo & 15) <= 3
        && (m.check_algo & 15) <= 4;
    ok.then_some(ip)
}

/// Whether a slot decodes as a blockref a HAMMER2 tree can hold: a type
/// the scan uses, methods that exist, a radix its type allows, media
/// aligned to its size and inside the volume set, a key span that fits,
/// a transaction id.
pub(crate) fn plausible_bref(b: &Blockref, logical_size: u64) -> bool {
    let comp_ok = b.methods & 15 <= 3;
    let check_ok = b.methods >> 4 <= 4;
    // newfs leaves modify_tid 0 in what it writes; no writer leaves both 0.
    if !comp_ok || !check_ok || (b.modify_tid.get() == 0 && b.mirror_tid.get() == 0) {
        return false;
    }
    let media_ok = |min: u8, max: u8| {
        let r = b.radix();
        (min..=max).contains(&r)
            && b.offset() % (1u64 << r) == 0
            && b.offset().checked_add(1u64 << r).is_some_and(|end| end <= logical_size)
    };
    match b.kind() {
        BlockrefType::Inode => b.keybits == 0 && b.key.get() != 0 && b.radix() == 10 && media_ok(10, 10),
        BlockrefType::Indirect => (1..=64).contains(&b.keybits) && media_ok(10, 16),
        BlockrefType::Data => (10..=16).contains(&b.keybits) && media_ok(10, 16),
        BlockrefType::Dirent => {
            let d = b.dirent();
            let n = d.namlen.get() as usize;
            let key_ok = b.key.get() & crate::format::DIRHASH_VISIBLE != 0 && b.keybits == 0;
            let name_ok = match b.radix() {
                0 => (1..=64).contains(&n) && b.data_off.get() == 0,
                _ => n > 64 && n <= INODE_MAXNAME && media_ok(10, 10),
            };
            key_ok && name_ok && d.inum.get() != 0
        }
        _ => false,
    }
}

/// What identifies a version's state: type, mode, owner, times, size,
/// device numbers and contents (embedded bytes, or the data each blockset
/// entry names); equal identities restore to equal files. Transaction ids
/// are left out, so an inode rewritten unchanged counts once.
pub(crate) fn ident(ip: &InodeData) -> u64 {
    let m = &ip.meta;
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    h.update(&[m.type_, m.op_flags]);
    for v in [m.mode.get() as u64, m.size.get(), m.mtime.get(), m.rmajor.get() as u64, m.rminor.get() as u64]
    {
        h.update(&v.to_le_bytes());
    }
    h.update(&m.uid);
    h.update(&m.gid);
    if m.is_directdata() {
        h.update(&ip.u);
    } else {
        for b in ip.blockset() {
            h.update(&[b.type_, b.keybits, b.methods]);
            h.update(&b.key.get().to_le_bytes());
            h.update(&b.data_off.get().to_le_bytes());
            h.update(&b.check);
        }
    }
    h.digest()
}

/// The first 8 bytes of a slot, little-endian.
#[inline]
fn word0(slot: &[u8]) -> u64 {
    u64::from_le_bytes(slot[..8].try_into().expect("a slot is 128 bytes"))
}

/// Whether a slot's first 8 bytes can start a blockref the scan keeps: a
/// type from INODE to DIRENT and methods that exist. Most slots of data
/// blocks fail here, before anything is decoded ([`plausible_bref`] then
/// checks the rest).
#[inline]
fn may_be_bref(w: u64) -> bool {
    let (kind, methods) = (w as u8, (w >> 8) as u8);
    kind.wrapping_sub(1) < 4 && methods & 15 <= 3 && methods >> 4 <= 4
}

/// Whether a 1 KiB block is all zeros, eight bytes at a time (the first
/// word decides most blocks at once).
#[inline]
fn all_zero(block: &[u8]) -> bool {
    word0(block) == 0
        && block.chunks_exact(64).all(|c| c.chunks_exact(8).fold(0u64, |a, w| a | word0(w)) == 0)
}

/// The `len` bytes at logical offset `off` when `buf` (the media at
/// `base`) holds them.
#[inline]
fn within(buf: &[u8], base: u64, off: u64, len: usize) -> Option<&[u8]> {
    let start = usize::try_from(off.checked_sub(base)?).ok()?;
    buf.get(start..start.checked_add(len)?)
}

/// Scans `buf`, the media at logical offset `base`, into `out`.
pub(crate) fn scan_chunk(fs: &Hammer2, base: u64, buf: &[u8], keep_unchecked: bool, out: &mut Finds) {
    let size = fs.device.logical_size();
    for (k, block) in buf.chunks_exact(INODE_BYTES).enumerate() {
        let block_off = base + (k * INODE_BYTES) as u64;
        let w = word0(block);
        if w == 0 && all_zero(block) {
            continue;
        }
        // A block that reads as an inode holds blockrefs only in its
        // blockset (none when it embeds data). An inode starts with its
        // version, 1 in 16 bits: other blocks are not decoded as inodes.
        let maybe_inode = w & 0xffff == 1;
        let first_slot = match maybe_inode.then(|| plausible_inode(block)).flatten() {
            Some(ip) => {
                let m = &ip.meta;
                let role = if m.pfs_type() == PfsType::Suproot {
                    Role::SuperRoot
                } else if m.is_pfsroot() {
                    Role::PfsRoot
                } else {
                    Role::Plain
                };
                let code = match role {
                    Role::Plain => 0,
                    Role::PfsRoot => 1,
                    Role::SuperRoot => 2,
                };
                out.raws.push(RawInode { off_role: block_off | code, inum: m.inum.get() });
                if role != Role::Plain {
                    out.clids.push((block_off, m.pfs_clid));
                }
                if m.is_directdata() {
                    continue;
                }
                4
            }
            None => 0,
        };
        for (s, raw) in block.chunks_exact(BLOCKREF_BYTES).enumerate().skip(first_slot) {
            if !may_be_bref(word0(raw)) {
                continue;
            }
            let at = block_off + (s * BLOCKREF_BYTES) as u64;
            let b = &Blockref::table(raw)[0];
            if !plausible_bref(b, size) {
                continue;
            }
            out.candidates += 1;
            match b.kind() {
                BlockrefType::Indirect => {
                    out.nodes.push(NodeRef { off_radix: b.offset() | b.radix() as u64, referrer: at })
                }
                BlockrefType::Data => out.data.push(at),
                BlockrefType::Inode => {
                    // From the chunk when it lies there, else through the
                    // mapping, not pread: a million small reads cost a
                    // million system calls otherwise.
                    let Some(target) = within(buf, base, b.offset(), INODE_BYTES)
                        .or_else(|| fs.device.read(b.offset(), INODE_BYTES).ok())
                    else {
                        continue;
                    };
                    let verified = match check::verify(b, target) {
                        CheckOutcome::Ok => true,
                        CheckOutcome::NotChecked if keep_unchecked => false,
                        _ => continue,
                    };
                    let Some(ip) = plausible_inode(target) else { continue };
                    let pfs_root = ip.meta.is_pfsroot();
                    if ip.meta.inum.get() != b.key.get() && !pfs_root {
                        continue;
                    }
                    if pfs_root {
                        out.root_clids.push((b.offset(), ip.meta.pfs_clid));
                    }
                    out.inodes.push(InodeRef {
                        at,
                        data_flags: b.offset() | verified as u64 | (pfs_root as u64) << 1,
                        inum: ip.meta.inum.get(),
                        modify_tid: b.modify_tid.get(),
                        mirror_tid: b.mirror_tid.get(),
                        ident: ident(ip),
                    });
                }
                BlockrefType::Dirent => {
                    let d = *b.dirent();
                    let n = d.namlen.get() as usize;
                    let off = out.names.len() as u64;
                    if b.radix() == 0 {
                        out.names.extend_from_slice(&b.check[..n]);
                    } else {
                        let len = 1usize << b.radix();
                        let Some(name_buf) = within(buf, base, b.offset(), len)
                            .or_else(|| fs.device.read(b.offset(), len).ok())
                        else {
                            continue;
                        };
                        match check::verify(b, name_buf) {
                            CheckOutcome::Ok => {}
                            CheckOutcome::NotChecked if keep_unchecked => {}
                            _ => continue,
                        }
                        out.names.extend_from_slice(&name_buf[..n]);
                    }
                    out.dirents.push(DirentRef {
                        at,
                        inum: d.inum.get(),
                        modify_tid: b.modify_tid.get(),
                        mirror_tid: b.mirror_tid.get(),
                        name: name_ref(off, n, d.type_),
                    });
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_methods, CheckMethod, CompMethod};

    fn bref(kind: u8, off: u64, radix: u8, keybits: u8) -> Blockref {
        let mut b = Blockref::zeroed();
        b.type_ = kind;
        b.methods = encode_methods(CheckMethod::Xxhash64, CompMethod::None);
        b.data_off = (off | radix as u64).into();
        b.keybits = keybits;
        b.key = 5.into();
        b.mirror_tid = 1.into();
        b
    }

    #[test]
    fn plausible_blockrefs_are_told_from_noise() {
        let size = 1 << 30;
        assert!(plausible_bref(&bref(1, 0x10000, 10, 0), size), "an inode blockref");
        assert!(plausible_bref(&bref(3, 0x10000, 16, 16), size), "a data blockref");
        assert!(!plausible_bref(&bref(1, 0x10000, 11, 0), size), "inodes are 1 KiB");
        assert!(!plausible_bref(&bref(3, 0x10400, 16, 16), size), "media aligned to its size");
        assert!(!plausible_bref(&bref(3, size, 16, 16), size), "media inside the volumes");
        assert!(!plausible_bref(&bref(9, 0x10000, 16, 16), size), "unknown type");
        let mut b = bref(3, 0x10000, 16, 16);
        b.mirror_tid = 0.into();
        assert!(!plausible_bref(&b, size), "no transaction id");
        b.modify_tid = 7.into();
        assert!(plausible_bref(&b, size), "newfs leaves modify_tid 0, others mirror_tid");
        b.methods = 0x70;
        assert!(!plausible_bref(&b, size), "unknown check method");
    }
}
