//! The freemap allocator of the write engine: hands out media space from the
//! level-1 leaves, records recovered allocations, stages releases for
//! bulkfree, and writes the modified freemap copy-on-write into the
//! reserved rotation slots.
//!
//! # What the freemap is (hammer2_disk.h)
//!
//! A FREEMAP_LEAF (keybits 30) covers one 1 GiB zone with 256 `bmap_data`
//! entries of 128 bytes, one per 4 MiB segment. An entry holds `class`
//! (`blockref type << 8 | 16`), `linear` (the byte offset inside the segment
//! up to which sub-16 KiB allocations have been packed), `avail` (free bytes,
//! bitmap-granular: 16 KiB per free chunk) and `bitmapq`, 8 words of 64 bits
//! with 2 bits per 16 KiB chunk: 00 free, 01 reserved (unused), 10 possibly
//! free (staged for bulkfree), 11 allocated. FREEMAP_NODEs (keybits 38, 46,
//! 54, 62) hold 256 blockrefs; the volume header's `freemap_blockset` holds 4.
//! Every freemap block is 32 KiB (radix 15), checked by the FREEMAP method
//! (CRC-32C in `check.freemap.icrc32`), and carries two hints in its
//! blockref: `avail` and `bigmask` (the radixes that may still be allocated).
//!
//! # Facts established (DragonFly `sys/vfs/hammer2`, and the fixtures)
//!
//! * Placement (`hammer2_freemap_reserve`, hammer2_freemap.c): freemap blocks
//!   are never allocated from the freemap. A block for key `k` at level `L`
//!   lives in the reserved 4 MiB segment of the zone at `k` rounded down to
//!   its keybits, in 64 KiB block `1 + 5 * set + (L - 1)` (sets 0..8, blocks
//!   1..=40; a block uses 32 KiB of its 64 KiB slot). A new block takes set 0,
//!   a modified one the set after the one it occupies (wrapping after 7), and
//!   keeps it until the next flush. The fixtures' zone-0 leaf sits at 0x10000
//!   (set 0): makefs created it and flushed once.
//! * Reserved segment: the first 4 MiB of every 1 GiB zone (`H2FMZONEBASE` is
//!   1 GiB although zones of volume-header copies are 2 GiB; hammer2_disk.h
//!   keeps this "for compatibility").
//! * Leaf initialisation (`hammer2_freemap_init`): a new leaf starts zeroed
//!   with `bigmask = !0`; every entry whose segment lies below
//!   `lokey = max(roundup(allocator_beg, 4 MiB), zone + 4 MiB)` or at or past
//!   `total_size` rounded down to 4 MiB is marked fully allocated (all 11,
//!   avail 0, linear 4 MiB); the others get avail 4 MiB. The blockref's avail
//!   hint is 1 GiB minus 4 MiB per such entry and is never updated afterwards
//!   by the kernel (0x2b800000 on the fixtures: 82 entries below 0x14800000).
//!   Init needs no rule for the volume-header copies (at n x 2 GiB, inside
//!   reserved segments) nor for the boot and aux areas (below
//!   `allocator_beg` on media newfs made). Init does not touch
//!   `allocator_free`. That is how newfs's inodes (below
//!   `allocator_beg`) end up allocated: newfs counts `[aux_end, lokey)` free
//!   in `allocator_free`, init marks it allocated, and bulkfree never visits
//!   entries below `allocator_beg`, so `allocator_free` exceeds the leaves'
//!   free space by `lokey - aux_end` (4 MiB on every fixture) for good. We
//!   reproduce exactly that: [`Allocator::freemap_free_bytes`] plus that
//!   difference equals [`Allocator::free_bytes`].
//! * Zone choice (`hammer2_freemap_alloc`, `hammer2_freemap_try_alloc`,
//!   `hammer2_freemap_iterate`): one position hint per blockref type
//!   (`heur_freemap`, starting at 0). The search starts in the hint's zone at
//!   the hint's entry and tries entries start, start+1, start-1, ... of the
//!   leaf, taking an entry if `avail != 0` (or, for sub-16 KiB requests, if
//!   `linear` is inside a chunk) and its class is 0 or the request's class.
//!   A missing leaf is created on the spot. A leaf whose `bigmask` lacks the
//!   radix is skipped. On failure the next zone is tried, wrapping at the end
//!   of the file system; after two wraps the search is repeated "relaxed"
//!   (any class), and only then fails with ENOSPC. The hint keeps the zone
//!   where the search ended. A relaxed scan of a whole leaf that finds
//!   nothing clears the radix in the leaf's bigmask.
//! * Inside an entry (`hammer2_bmap_alloc`): a sub-16 KiB request that fits
//!   between `linear` and the end of its chunk takes `linear` (the chunk is
//!   already 11). Otherwise the bitmap is scanned for the first naturally
//!   aligned run of free chunks (1 chunk up to 16 KiB, 2 for 32 KiB, 4 for
//!   64 KiB) which becomes 11; a sub-16 KiB request then sets `linear` past
//!   itself. `avail` and the header's `allocator_free` drop by 16 KiB per
//!   chunk that turns from free to allocated (bulkfree cannot undo finer
//!   accounting). The class is set if it was 0. (The kernel also positions
//!   16 KiB+ DATA blocks by their file offset; this allocator has no key.)
//! * Stamps: the kernel sets a modified freemap block's `modify_tid` to its
//!   sub-transaction id (0x192a on varied.img) and `mirror_tid` to the
//!   flush's; we write the commit's tid in both.
//! * Releases: the kernel never frees at run time (`hammer2_freemap_adjust`
//!   only accepts DORECOVER); bulkfree (hammer2_bulkfree.c) rebuilds the map
//!   from the current topology and moves unreferenced 11 -> 10, then 10 ->
//!   00 (adding to `allocator_free`), and referenced 10 -> 11.
//! * Recovery (`hammer2_freemap_adjust`, DORECOVER): ignores blocks below
//!   `allocator_beg`, creates a missing leaf, turns each chunk of the block to
//!   11 (avail and allocator_free -16 KiB for each 00), sets the class if 0,
//!   and resets `linear` to 0 only when it changed a bit. Two weaknesses we do
//!   not copy: it picks the bit pair with `(offset >> 14) & 15` although a
//!   word holds 32 chunks (chunks 16..31 of each 512 KiB mark the wrong
//!   pair), and when the chunk was already 11 it leaves a `linear` that may
//!   point below the recovered block, so the next small allocation can
//!   overwrite it.
//! * Multi-volume: allocations use the whole logical space up to
//!   `total_size`; volumes other than the last are whole GiB, so zones never
//!   straddle volumes on media made by newfs. We nevertheless only use a
//!   4 MiB segment that lies inside one volume, in a zone whose reserved
//!   segment (where its leaf lives) is on media, and that holds no
//!   volume-header copy of any volume.
//!
//! # Choices made here
//!
//! * [`Allocator::release`] stages (11 -> 10) and leaves the rest to
//!   bulkfree, as the kernel's DOMAYFREE would: older valid header copies may
//!   still reach the block, and proving otherwise needs a walk of every copy.
//!   The one exception is a whole-chunk block allocated since the last
//!   [`Allocator::flush`]: no header written before that flush can reference
//!   it, so it is freed outright (allocator_free grows back). Blocks under
//!   16 KiB share their chunk with others and are only ever staged.
//! * [`Allocator::protect_reachable`] pins, in memory, free chunks that an
//!   older valid header copy still references (kernel bulkfree only looks at
//!   the newest topology, so it can free them): the commit contract's rule
//!   that nothing an older valid copy reaches is reused.
//! * [`Allocator::mark_allocated`] marks the exact chunks the block touches and
//!   moves `linear` past the block when `linear` lies inside one of them.
//! * [`Allocator::flush`] rebuilds the nodes above the leaves in the shape the
//!   kernel grows (leaves directly in the header while there are at most 4,
//!   else one node per 256 GiB, then per 64 TiB, ...), reuses every node and
//!   leaf that did not change, and picks for each written block the first
//!   set after its current one that no valid header copy on the device
//!   references (so never overwriting a freemap any header can still reach).
//!   The hints it writes are exact: `avail` is the sum of the usable entries'
//!   avail and `bigmask` has a radix's bit (and all lower bits) when some
//!   entry can still satisfy it, as bulkfree's `bigmask_get` computes it.
//!
//! Memory: every leaf is held (32 KiB per GiB of file system in use).

use crate::device::Device;
use crate::error::{CorruptKind, Corruption, Error, Location, Result};
use crate::format::check::set_check;
use crate::format::{
    encode_methods, Blockref, BlockrefType, BmapData, CheckMethod, CompMethod, FREEMAP_BLOCK_RADIX,
    FREEMAP_COUNT, FREEMAP_LEVEL0_RADIX, FREEMAP_LEVEL1_RADIX, FREEMAP_LEVELN_PSIZE, NFREEMAPS, PBUFSIZE,
    RADIX_MAX, RADIX_MIN, ROOT_VOLUME, SET_COUNT, VOLUME_BYTES, VOL_VERSION_MULTI_VOLUMES, ZONE_FREEMAP_00,
    ZONE_FREEMAP_END, ZONE_FREEMAP_INC,
};
use crate::read::walk::{self, walk, DataBlocks, Engine, Nothing, Options, Root, Step, Visitor, WalkOptions};
use crate::volume::{read_headers, CopyState, Hammer2};
use std::collections::{BTreeMap, HashMap, HashSet};
use zerocopy::IntoBytes;

pub mod bulkfree;
pub mod grow;
pub mod replay;

/// The freemap's granule (two bits each).
const CHUNK: u64 = 1 << FREEMAP_BLOCK_RADIX;
const CHUNK_MASK: u64 = CHUNK - 1;
/// What one leaf entry covers.
const SEG: u64 = 1 << FREEMAP_LEVEL0_RADIX;
/// What one leaf covers.
const ZONE: u64 = 1 << FREEMAP_LEVEL1_RADIX;
/// Bytes one bitmap word covers (32 chunks).
const WORD_BYTES: u64 = 32 * CHUNK;
/// Physical radix of every freemap block.
const FREEMAP_RADIX: u8 = 15;
/// keybits of levels 1 (leaf) to 5.
const LEVEL_KEYBITS: [u8; 5] = [30, 38, 46, 54, 62];
/// Low byte of every class the kernel writes (`HAMMER2_PBUFRADIX`).
const CLASS_RADIX: u16 = 16;

/// Why an allocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// ENOSPC: no usable space of this size anywhere.
    #[error("no space left for a {bytes}-byte block")]
    NoSpace { bytes: u64 },
    #[error("invalid allocation request: {0}")]
    Invalid(String),
}

impl From<AllocError> for Error {
    fn from(e: AllocError) -> Error {
        match e {
            AllocError::NoSpace { .. } => Error::NoSpace(e.to_string()),
            AllocError::Invalid(_) => Error::InvalidArgument(e.to_string()),
        }
    }
}

/// What [`Allocator::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Marked possibly free (11 -> 10): bulkfree decides.
    Staged,
    /// Allocated since the last flush, so unreachable from any header: free (00) again.
    Freed,
    /// Nothing to do: below `allocator_beg`, no leaf, or not marked allocated.
    Unchanged,
}

/// The file system's fixed areas, as the allocator must respect them.
#[derive(Debug, Clone)]
struct Geometry {
    /// End of the logical space (`total_size`).
    end: u64,
    allocator_beg: u64,
    /// `allocator_beg` rounded up to 4 MiB: below it everything is newfs's.
    lokey: u64,
    /// `[boot_beg, aux_end)`.
    boot_aux: (u64, u64),
    /// Logical `[start, end)` of each volume.
    extents: Vec<(u64, u64)>,
    /// Logical offsets of every volume-header copy slot on media.
    headers: Vec<u64>,
}

impl Geometry {
    fn from_fs(fs: &Hammer2) -> Geometry {
        let v = &fs.voldata;
        let multi = v.version.get() >= VOL_VERSION_MULTI_VOLUMES;
        let mut extents = Vec::new();
        let mut headers = Vec::new();
        for (id, &pos) in fs.by_id.iter().enumerate() {
            let loff = if multi { v.volu_loff[id].get() } else { 0 };
            let h = &fs.headers[pos];
            let size = h.best().and_then(|c| c.data.as_ref()).map_or(0, |d| d.volu_size.get());
            let size = size.min(fs.device.volume(pos).size());
            extents.push((loff, loff.saturating_add(size)));
            for c in h.copies.iter().filter(|c| !matches!(c.state, CopyState::Absent)) {
                headers.push(loff.saturating_add(c.offset));
            }
        }
        let allocator_beg = v.allocator_beg.get();
        Geometry {
            end: fs.device.logical_size(),
            allocator_beg,
            lokey: allocator_beg.saturating_add(SEG - 1) & !(SEG - 1),
            boot_aux: (v.boot_beg.get(), v.aux_end.get()),
            extents,
            headers,
        }
    }

    fn inside_volume(&self, off: u64, len: u64) -> bool {
        let stop = off.saturating_add(len);
        self.extents.iter().any(|&(s, e)| off >= s && stop <= e)
    }

    /// Whether the allocator may hand out space in the 4 MiB segment at
    /// `seg`: `hammer2_freemap_init`'s rule, plus volume bounds, the zone's
    /// leaf slot being on media, and no header copy inside.
    fn segment_usable(&self, seg: u64) -> bool {
        let zone = seg & !(ZONE - 1);
        let stop = seg.saturating_add(SEG);
        seg >= self.lokey
            && seg - zone >= SEG
            && !(seg < self.boot_aux.1 && stop > self.boot_aux.0)
            && self.inside_volume(zone, SEG)
            && self.inside_volume(seg, SEG)
            && !self.headers.iter().any(|&h| h < stop && h.saturating_add(VOLUME_BYTES as u64) > seg)
    }

    fn zone_usable(&self, zone: u64) -> bool {
        (0..FREEMAP_COUNT as u64).any(|n| self.segment_usable(zone + n * SEG))
    }
}

/// One level-1 leaf in memory.
#[derive(Clone)]
struct Leaf {
    /// The blockref it has on media (None: created since the last flush).
    bref: Option<Blockref>,
    /// Its 256 entries (32 KiB).
    data: Box<[u8]>,
    /// In-memory bigmask hint (permissive).
    bigmask: u32,
    dirty: bool,
}

impl Leaf {
    /// A new leaf for the zone at `zone`, as `hammer2_freemap_init` builds it.
    fn init(zone: u64, geo: &Geometry) -> Leaf {
        let mut leaf =
            Leaf { bref: None, data: vec![0u8; FREEMAP_LEVELN_PSIZE].into(), bigmask: !0, dirty: true };
        for (n, bmap) in leaf.bmaps_mut().iter_mut().enumerate() {
            if geo.segment_usable(zone + n as u64 * SEG) {
                bmap.avail = (SEG as u32).into();
            } else {
                bmap.bitmapq = [u64::MAX.into(); 8];
                bmap.linear = (SEG as i32).into();
            }
        }
        leaf
    }

    fn bmaps(&self) -> &[BmapData] {
        BmapData::table(&self.data)
    }

    fn bmaps_mut(&mut self) -> &mut [BmapData] {
        BmapData::table_mut(&mut self.data)
    }
}

/// A freemap node of the tree on media: its blockref and its children.
#[derive(Clone)]
struct Node {
    bref: Blockref,
    children: Vec<Blockref>,
}

/// The freemap allocator. See the module documentation. Cloning it (a few
/// 32 KiB leaves per GiB) is how an editor undoes a failed operation.
#[derive(Clone)]
pub struct Allocator {
    geo: Geometry,
    fsid: [u8; 16],
    /// Leaves by zone (their key).
    leaves: BTreeMap<u64, Leaf>,
    /// Nodes of the tree on media, by (keybits, key).
    nodes: HashMap<(u8, u64), Node>,
    allocator_free: u64,
    /// Search position per blockref type (`heur_freemap`).
    heur: [u64; 8],
    /// Allocate from any class (set once strict searches failed).
    relaxed: bool,
    /// `data_off` of whole-chunk blocks allocated since the last flush.
    uncommitted: HashSet<u64>,
    /// Free chunks some valid header copy references (never handed out).
    pinned: HashSet<u64>,
}

impl Allocator {
    /// Loads the freemap reachable from `fs.voldata.freemap_blockset`,
    /// verifying every check code and the tree's shape (types, keybits, key
    /// ranges, one leaf per zone). An empty freemap (a fresh newfs) is fine:
    /// leaves are created as `hammer2_freemap_init` does on first use.
    pub fn load(fs: &Hammer2) -> Result<Allocator> {
        let mut a = Allocator::empty(Geometry::from_fs(fs), fs.voldata.allocator_free.get());
        a.fsid = fs.voldata.fsid;
        let end = a.geo.end;
        let mut failure: Option<Corruption> = None;
        let mut stack: Vec<(u64, u64, u8)> = Vec::new();
        let mut leaves: Vec<(Blockref, Vec<u8>, Location)> = Vec::new();
        walk(fs, Root::Freemap, WalkOptions::default(), &mut |v| {
            if failure.is_some() {
                return;
            }
            stack.truncate(v.depth);
            let fail = |what: String| {
                Some(Corruption { kind: CorruptKind::FreemapShape(what), location: v.location.clone() })
            };
            let b = v.bref;
            let (key, keybits) = (b.key.get(), b.keybits);
            if let Some(e) = &v.error {
                failure = Some(e.clone());
                return;
            }
            let leaf = match b.kind() {
                BlockrefType::FreemapLeaf => true,
                BlockrefType::FreemapNode => false,
                other => {
                    failure = Some(Corruption {
                        kind: CorruptKind::WrongType {
                            found: other.to_string(),
                            expected: "freemap_node or freemap_leaf",
                        },
                        location: v.location.clone(),
                    });
                    return;
                }
            };
            let Some(media) = v.media else {
                failure = fail("freemap block without media".into());
                return;
            };
            if leaf != (keybits == LEVEL_KEYBITS[0]) || !LEVEL_KEYBITS.contains(&keybits) {
                failure = fail(format!("keybits {keybits} invalid for a {}", b.kind()));
                return;
            }
            if key & ((1u64 << keybits) - 1) != 0 {
                failure = fail(format!("key {key:#x} not aligned to keybits {keybits}"));
                return;
            }
            if let Some(&(pk, pe, pb)) = stack.last() {
                if key < pk || b.key_end() > pe || keybits >= pb {
                    failure = fail(format!("key range outside the parent's {pk:#x}-{pe:#x}"));
                    return;
                }
            }
            if v.shared {
                failure = fail("freemap node reached twice".into());
                return;
            }
            stack.push((key, b.key_end(), keybits));
            if leaf {
                if key >= end {
                    failure = fail(format!("leaf for a zone past the end ({end:#x})"));
                    return;
                }
                leaves.push((*b, media.to_vec(), v.location.clone()));
            } else {
                let children =
                    Blockref::table(media).iter().filter(|c| c.kind() != BlockrefType::Empty).copied();
                a.nodes.insert((keybits, key), Node { bref: *b, children: children.collect() });
            }
        })?;
        if let Some(c) = failure {
            return Err(c.into());
        }
        for (bref, data, location) in leaves {
            let key = bref.key.get();
            if a.leaves.contains_key(&key) {
                let kind = CorruptKind::SecondLeaf { key };
                return Err(Error::corrupt(kind, location));
            }
            let bigmask = bref.freemap_check().bigmask.get();
            a.leaves.insert(key, Leaf { bref: Some(bref), data: data.into(), bigmask, dirty: false });
        }
        Ok(a)
    }

    fn empty(geo: Geometry, allocator_free: u64) -> Allocator {
        Allocator {
            geo,
            fsid: [0; 16],
            leaves: BTreeMap::new(),
            nodes: HashMap::new(),
            allocator_free,
            heur: [0; 8],
            relaxed: false,
            uncommitted: HashSet::new(),
            pinned: HashSet::new(),
        }
    }

    /// Allocates `2^radix` bytes (radix 10..=16) for a block of type
    /// `class_hint` (inode, indirect, data or dirent: the class groups like
    /// blocks in the same 4 MiB segments) and returns its `data_off`
    /// (offset | radix). The block lies inside one 16 KiB chunk, or is
    /// naturally aligned when larger.
    pub fn alloc(&mut self, radix: u8, class_hint: BlockrefType) -> Result<u64, AllocError> {
        if !(RADIX_MIN..=RADIX_MAX).contains(&radix) {
            return Err(AllocError::Invalid(format!("radix {radix} outside {RADIX_MIN}..={RADIX_MAX}")));
        }
        let class = class_of(class_hint).ok_or_else(|| {
            AllocError::Invalid(format!("{class_hint} blocks are not allocated from the freemap"))
        })?;
        let end = self.geo.end;
        let hint = usize::from(class >> 8) & 7;
        let mut bnext = self.heur[hint].min(end.saturating_sub(1));
        let (mut loops, mut relaxed) = (0, self.relaxed);
        loop {
            let zone = bnext & !(ZONE - 1);
            if let Some(off) = self.try_zone(zone, bnext, radix, class, relaxed) {
                self.heur[hint] = bnext;
                self.relaxed |= relaxed;
                if radix >= FREEMAP_BLOCK_RADIX {
                    self.uncommitted.insert(off | u64::from(radix));
                }
                return Ok(off | u64::from(radix));
            }
            bnext = zone + ZONE;
            if bnext >= end {
                bnext = 0;
                loops += 1;
                if loops >= 2 {
                    if relaxed {
                        self.heur[hint] = 0;
                        return Err(AllocError::NoSpace { bytes: 1 << radix });
                    }
                    relaxed = true;
                }
            }
        }
    }

    /// One leaf's part of the search (`hammer2_freemap_try_alloc`).
    fn try_zone(&mut self, zone: u64, bnext: u64, radix: u8, class: u16, relaxed: bool) -> Option<u64> {
        let Allocator { geo, leaves, pinned, allocator_free, .. } = self;
        let leaf = match leaves.entry(zone) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) if geo.zone_usable(zone) => {
                e.insert(Leaf::init(zone, geo))
            }
            std::collections::btree_map::Entry::Vacant(_) => return None,
        };
        if leaf.bigmask & (1 << radix) == 0 {
            return None;
        }
        let start = ((bnext - zone) >> FREEMAP_LEVEL0_RADIX) as i64;
        let count = FREEMAP_COUNT as i64;
        for step in 0..count {
            if start + step >= count && start - step < 0 {
                break;
            }
            let candidates = [start + step, start - step];
            for &n in &candidates[..if step == 0 { 1 } else { 2 }] {
                if !(0..count).contains(&n) {
                    continue;
                }
                let seg = zone + n as u64 * SEG;
                let bmap = &mut leaf.bmaps_mut()[n as usize];
                let linear_room = radix < FREEMAP_BLOCK_RADIX && bmap.linear.get() as u64 & CHUNK_MASK != 0;
                let class_ok = bmap.class.get() == 0 || bmap.class.get() == class || relaxed;
                if !(bmap.avail.get() != 0 || linear_room) || !class_ok || !geo.segment_usable(seg) {
                    continue;
                }
                if let Some((off, charged)) = bmap_alloc(bmap, class, radix, seg, pinned) {
                    leaf.dirty = true;
                    *allocator_free = allocator_free.saturating_sub(charged);
                    return Some(seg + off);
                }
            }
        }
        if start == 0 && relaxed {
            leaf.bigmask &= !(1 << radix);
        }
        None
    }

    /// Recovery (DORECOVER): marks every 16 KiB chunk `data_off` touches
    /// allocated, with the class of `kind` if the entry had none, and moves
    /// the entry's `linear` past the block when it points inside one of those
    /// chunks below the block's end. Blocks below `allocator_beg` (newfs's)
    /// are left alone, as the kernel does. Returns whether anything changed.
    pub fn mark_allocated(&mut self, data_off: u64, kind: BlockrefType) -> Result<bool> {
        let (off, size) = self.block(data_off)?;
        if off < self.geo.allocator_beg {
            return Ok(false);
        }
        let class = class_of(kind).ok_or_else(|| {
            Error::InvalidArgument(format!("{kind} blocks are not allocated from the freemap"))
        })?;
        let zone = off & !(ZONE - 1);
        let Allocator { leaves, pinned, allocator_free, geo, .. } = self;
        let leaf = leaves.entry(zone).or_insert_with(|| Leaf::init(zone, geo));
        let seg = off & !(SEG - 1);
        let bmap = &mut leaf.bmaps_mut()[((seg - zone) / SEG) as usize];
        let (rel, mut changed) = (off - seg, false);
        for c in chunks(rel, size) {
            match bmap.block_state(c) {
                3 => continue,
                0 => {
                    bmap.avail = bmap.avail.get().saturating_sub(CHUNK as u32).into();
                    *allocator_free = allocator_free.saturating_sub(CHUNK);
                }
                _ => {}
            }
            bmap.set_block_state(c, 3);
            pinned.remove(&(seg + c as u64 * CHUNK));
            changed = true;
        }
        if changed && bmap.class.get() == 0 {
            bmap.class = class.into();
        }
        changed |= move_linear_past(bmap, rel, size);
        leaf.dirty |= changed;
        Ok(changed)
    }

    /// A block the commit no longer references. Whole-chunk blocks allocated
    /// since the last [`flush`](Self::flush) are freed outright (no header
    /// can reach them); anything else marked allocated becomes possibly free
    /// (10) for bulkfree, which frees it once the topology no longer
    /// references it (see the module documentation for why).
    pub fn release(&mut self, data_off: u64) -> Result<Released> {
        let (off, size) = self.block(data_off)?;
        let zone = off & !(ZONE - 1);
        let seg = off & !(SEG - 1);
        let fresh = self.uncommitted.remove(&data_off);
        let Some(leaf) = self.leaves.get_mut(&zone) else { return Ok(Released::Unchanged) };
        if off < self.geo.allocator_beg {
            return Ok(Released::Unchanged);
        }
        let bmap = &mut leaf.bmaps_mut()[((seg - zone) / SEG) as usize];
        let mut outcome = Released::Unchanged;
        for c in chunks(off - seg, size) {
            match (bmap.block_state(c), fresh) {
                (3, true) => {
                    bmap.set_block_state(c, 0);
                    bmap.avail = (bmap.avail.get() + CHUNK as u32).min(SEG as u32).into();
                    self.allocator_free += CHUNK;
                    outcome = Released::Freed;
                }
                (3, false) => {
                    bmap.set_block_state(c, 2);
                    outcome = Released::Staged;
                }
                _ => {}
            }
        }
        if outcome == Released::Freed {
            if bmap.bitmapq.iter().all(|w| w.get() == 0) {
                bmap.class = 0.into();
                bmap.linear = 0.into();
            }
            leaf.bigmask = !0;
            self.relaxed = false;
        }
        leaf.dirty |= outcome != Released::Unchanged;
        Ok(outcome)
    }

    /// Keeps the blocks that `fs`'s topology references from being handed
    /// out even where the freemap says free, and moves `linear` past any of
    /// them in its chunk. Returns how many free chunks were pinned. See
    /// [`Allocator::protect_blocksets`].
    pub fn protect_reachable(&mut self, fs: &Hammer2) -> Result<u64> {
        self.protect_blocksets(fs, &[fs.voldata.sroot_blockset])
    }

    /// Pins what the super-root blocksets `sets` reach (typically those of
    /// older valid header copies, the fallback if the newest is lost: a
    /// bulkfree only looks at the newest, so what only they reach may be
    /// marked free). One traversal covers every set, so the subtrees they
    /// share (nearly all) are walked once; DATA blocks are not read. The
    /// pins live in memory only.
    pub fn protect_blocksets(&mut self, fs: &Hammer2, sets: &[[Blockref; SET_COUNT]]) -> Result<u64> {
        struct Pin<'s> {
            alloc: &'s mut Allocator,
            pinned: u64,
        }
        impl<'a> Visitor<'a> for Pin<'_> {
            type Ctx = ();
            type Out = Nothing;
            fn visit(&mut self, node: &walk::Node<'a>, _: &()) -> Step<(), Nothing> {
                let b = node.bref;
                if (RADIX_MIN..=RADIX_MAX).contains(&b.radix()) {
                    self.pinned += self.alloc.protect(b.offset(), b.physical_size());
                }
                if node.is_shared() {
                    Step::Leaf(Nothing)
                } else {
                    Step::Descend(())
                }
            }
        }
        let mut engine = Engine::new(fs, Options { data: DataBlocks::Skip, ..Default::default() });
        let mut pin = Pin { alloc: self, pinned: 0 };
        for set in sets {
            engine.run(set, 0, &(), &mut pin);
        }
        Ok(pin.pinned)
    }

    fn protect(&mut self, off: u64, size: u64) -> u64 {
        let seg = off & !(SEG - 1);
        let zone = off & !(ZONE - 1);
        if off < self.geo.allocator_beg || (off % SEG) + size > SEG || !self.geo.segment_usable(seg) {
            return 0;
        }
        let rel = off - seg;
        let mut count = 0;
        match self.leaves.get_mut(&zone) {
            None => {
                for c in chunks(rel, size) {
                    count += u64::from(self.pinned.insert(seg + c as u64 * CHUNK));
                }
            }
            Some(leaf) => {
                let bmap = &mut leaf.bmaps_mut()[((seg - zone) / SEG) as usize];
                for c in chunks(rel, size) {
                    if bmap.block_state(c) == 0 {
                        count += u64::from(self.pinned.insert(seg + c as u64 * CHUNK));
                    }
                }
                if move_linear_past(bmap, rel, size) {
                    leaf.dirty = true;
                }
            }
        }
        count
    }

    /// `allocator_free` for the next volume header: the loaded header's
    /// value, adjusted exactly as the kernel adjusts it (16 KiB per chunk
    /// turning from free to allocated or back).
    pub fn free_bytes(&self) -> u64 {
        self.allocator_free
    }

    /// [`free_bytes`](Self::free_bytes) less what newfs counts free but
    /// `hammer2_freemap_init` marks allocated (`roundup(allocator_beg,
    /// 4 MiB) - aux_end`): about what the leaves can still hand out, in
    /// constant time.
    pub fn usable_free_bytes(&self) -> u64 {
        self.allocator_free.saturating_sub(self.geo.lokey.saturating_sub(self.geo.boot_aux.1))
    }

    /// Free space as the freemap itself records it: free chunks of the
    /// leaves' usable segments, plus what `hammer2_freemap_init` would leave
    /// free in zones without a leaf. Less than [`free_bytes`](Self::free_bytes)
    /// by `roundup(allocator_beg, 4 MiB) - aux_end` on media made by newfs.
    pub fn freemap_free_bytes(&self) -> u64 {
        let mut total = 0;
        let mut zone = 0;
        while zone < self.geo.end {
            let leaf = self.leaves.get(&zone);
            for n in 0..FREEMAP_COUNT {
                let seg = zone + n as u64 * SEG;
                if !self.geo.segment_usable(seg) {
                    continue;
                }
                total += match leaf {
                    Some(l) => (0..256).filter(|&c| l.bmaps()[n].block_state(c) == 0).count() as u64 * CHUNK,
                    None => SEG,
                };
            }
            zone += ZONE;
        }
        total
    }

    /// Zones that have a leaf (in memory), by key.
    pub fn leaf_keys(&self) -> Vec<u64> {
        self.leaves.keys().copied().collect()
    }

    /// The two-bit state of the chunk holding `off` (None without a leaf).
    pub fn chunk_state(&self, off: u64) -> Option<u8> {
        let zone = off & !(ZONE - 1);
        let leaf = self.leaves.get(&zone)?;
        Some(leaf.bmaps()[((off - zone) / SEG) as usize].block_state(((off % SEG) / CHUNK) as usize))
    }

    /// Splits and validates a `data_off` naming media the freemap manages.
    fn block(&self, data_off: u64) -> Result<(u64, u64)> {
        let radix = (data_off & 0x3f) as u8;
        let off = data_off & !0x3f;
        let bad = |why: &str| Err(Error::InvalidArgument(format!("data_off {data_off:#x}: {why}")));
        if !(RADIX_MIN..=RADIX_MAX).contains(&radix) {
            return bad("radix outside 10..=16");
        }
        let size = 1u64 << radix;
        if (off % SEG) + size > SEG {
            return bad("crosses a 4 MiB segment");
        }
        if off % ZONE < SEG {
            return bad("lies in a zone's reserved segment");
        }
        if !self.geo.inside_volume(off, size) || !self.geo.inside_volume(off & !(ZONE - 1), SEG) {
            return bad("lies outside every volume");
        }
        Ok((off, size))
    }

    /// Writes every modified leaf and the freemap nodes above it into the
    /// reserved rotation slots, never over a block that a valid header copy
    /// of the root volume on `dev` references, with FREEMAP check codes,
    /// exact avail/bigmask hints and `mirror_tid = modify_tid = tid`. Returns
    /// the `freemap_blockset` for the next volume header, whose
    /// `freemap_tid` should be `tid` and `allocator_free`
    /// [`free_bytes`](Self::free_bytes).
    ///
    /// `dev` must map logical offsets (the device of a [`Hammer2`] opened
    /// for writing) and hold the file system the freemap was loaded from.
    /// Nothing is synced: the caller's barrier precedes the header write.
    /// After an error the in-memory state may name blocks that were not
    /// written; reload before trying again.
    pub fn flush(&mut self, tid: u64, dev: &mut Device) -> Result<[Blockref; SET_COUNT]> {
        let protected = self.protected_slots(dev)?;
        // Leaves first.
        for (&key, leaf) in self.leaves.iter_mut().filter(|(_, l)| l.dirty) {
            let current = leaf.bref.map(|b| b.offset());
            let slot = choose_slot(1, key, current, &protected)?;
            let (avail, bigmask) = leaf_hints(key, leaf, &self.geo);
            let bref = freemap_bref(BlockrefType::FreemapLeaf, key, 1, slot, tid, avail, bigmask, &leaf.data);
            dev.write(slot, &leaf.data)?;
            leaf.bref = Some(bref);
            leaf.bigmask = bigmask;
            leaf.dirty = false;
        }
        // Then the nodes, level by level, until the top fits the header.
        let mut items: Vec<Blockref> = self.leaves.values().filter_map(|l| l.bref).collect();
        let mut nodes = HashMap::new();
        let mut level = 1;
        while items.len() > SET_COUNT {
            level += 1;
            let keybits = LEVEL_KEYBITS[level - 1];
            let mut groups: BTreeMap<u64, Vec<Blockref>> = BTreeMap::new();
            for b in items {
                groups.entry(b.key.get() & !((1u64 << keybits) - 1)).or_default().push(b);
            }
            items = Vec::with_capacity(groups.len());
            for (key, children) in groups {
                let reuse = self.nodes.get(&(keybits, key)).filter(|n| same_brefs(&n.children, &children));
                let bref = match reuse {
                    Some(n) => n.bref,
                    None => {
                        let current = self.nodes.get(&(keybits, key)).map(|n| n.bref.offset());
                        let slot = choose_slot(level, key, current, &protected)?;
                        let mut data = vec![0u8; FREEMAP_LEVELN_PSIZE];
                        for (dst, c) in Blockref::table_mut(&mut data).iter_mut().zip(&children) {
                            *dst = *c;
                        }
                        let avail = children.iter().map(|c| c.freemap_check().avail.get()).sum();
                        let bigmask = children.iter().fold(0, |m, c| m | c.freemap_check().bigmask.get());
                        let kind = BlockrefType::FreemapNode;
                        let bref = freemap_bref(kind, key, level, slot, tid, avail, bigmask, &data);
                        dev.write(slot, &data)?;
                        bref
                    }
                };
                items.push(bref);
                nodes.insert((keybits, key), Node { bref, children });
            }
        }
        self.nodes = nodes;
        self.uncommitted.clear();
        let mut set = [Blockref::zeroed(); SET_COUNT];
        for (slot, b) in set.iter_mut().zip(items) {
            *slot = b;
        }
        Ok(set)
    }

    /// Media offsets of every freemap block reachable from a valid header
    /// copy of the root volume on `dev`.
    fn protected_slots(&self, dev: &Device) -> Result<HashSet<u64>> {
        let root = (0..dev.len()).map(|i| read_headers(dev.volume(i))).find(|h| {
            h.best()
                .and_then(|c| c.data.as_ref())
                .is_some_and(|d| d.fsid == self.fsid && d.volu_id == ROOT_VOLUME)
        });
        let Some(headers) = root else {
            return Err(Error::InvalidArgument(
                "flush to a device without this file system's root volume".into(),
            ));
        };
        let mut seen = HashSet::new();
        let mut stack: Vec<(Blockref, usize)> = Vec::new();
        for copy in headers.copies.iter().filter(|c| c.is_valid()) {
            let data = copy.data.as_ref().expect("valid copies have data");
            stack.extend(data.freemap_blockset.iter().map(|b| (*b, 0)));
        }
        while let Some((b, depth)) = stack.pop() {
            if b.kind() == BlockrefType::Empty || b.radix() == 0 || !seen.insert(b.offset()) {
                continue;
            }
            if b.kind() == BlockrefType::FreemapNode && depth < LEVEL_KEYBITS.len() {
                if let Ok(media) = dev.read(b.offset(), FREEMAP_LEVELN_PSIZE) {
                    stack.extend(Blockref::table(media).iter().map(|c| (*c, depth + 1)));
                }
            }
        }
        Ok(seen)
    }
}

/// The class (`type << 8 | 16`) of blocks of type `kind`, for the types the
/// freemap allocates (freemap blocks live in the reserved slots).
fn class_of(kind: BlockrefType) -> Option<u16> {
    match kind {
        BlockrefType::Inode | BlockrefType::Indirect | BlockrefType::Data | BlockrefType::Dirent => {
            Some((u16::from(u8::from(kind)) << 8) | CLASS_RADIX)
        }
        _ => None,
    }
}

/// Chunk indexes (within its segment) that `[rel, rel + size)` touches.
fn chunks(rel: u64, size: u64) -> std::ops::RangeInclusive<usize> {
    (rel / CHUNK) as usize..=((rel + size - 1) / CHUNK) as usize
}

/// Moves `linear` to the end of the block at `[rel, rel + size)` when it
/// lies inside a chunk the block touches and below the block's end, so that
/// packing never hands out live space. Returns whether it moved.
fn move_linear_past(bmap: &mut BmapData, rel: u64, size: u64) -> bool {
    let linear = bmap.linear.get();
    let Ok(lin) = u64::try_from(linear) else { return false };
    let end = rel + size;
    if lin & CHUNK_MASK == 0
        || lin >= SEG
        || !chunks(rel, size).contains(&((lin / CHUNK) as usize))
        || lin >= end
    {
        return false;
    }
    bmap.linear = (end as i32).into();
    true
}

/// `hammer2_bmap_alloc`: takes `2^radix` bytes from one entry, returning the
/// offset inside the segment and the bytes charged to `allocator_free`.
fn bmap_alloc(
    bmap: &mut BmapData,
    class: u16,
    radix: u8,
    seg: u64,
    pinned: &HashSet<u64>,
) -> Option<(u64, u64)> {
    let size = 1u64 << radix;
    let bits: u32 = if radix <= FREEMAP_BLOCK_RADIX { 2 } else { 2 << (radix - FREEMAP_BLOCK_RADIX) };
    let ones = (1u64 << bits) - 1;
    let linear = u64::try_from(bmap.linear.get()).ok();
    let packable = linear.filter(|&l| {
        let inside = l & CHUNK_MASK;
        inside != 0
            && inside + size <= CHUNK
            && l < SEG
            && l % (1 << RADIX_MIN) == 0
            && !pinned.contains(&(seg + (l & !CHUNK_MASK)))
    });
    let (offset, word, shift) = match packable {
        Some(l) => {
            bmap.linear = ((l + size) as i32).into();
            (l, (l / WORD_BYTES) as usize, ((l % WORD_BYTES) / CHUNK * 2) as u32)
        }
        None => {
            let (word, shift) = (0..8usize).find_map(|i| {
                let w = bmap.bitmapq[i].get();
                (0..64).step_by(bits as usize).find_map(|j| {
                    let first = i as u64 * WORD_BYTES + u64::from(j / 2) * CHUNK;
                    let free = w & (ones << j) == 0
                        && (0..u64::from(bits / 2)).all(|k| !pinned.contains(&(seg + first + k * CHUNK)));
                    free.then_some((i, j))
                })
            })?;
            let offset = word as u64 * WORD_BYTES + u64::from(shift / 2) * CHUNK;
            if size & CHUNK_MASK != 0 {
                bmap.linear = ((offset + size) as i32).into();
            }
            (offset, word, shift)
        }
    };
    let mask = ones << shift;
    let before = bmap.bitmapq[word].get();
    let charged = if radix < FREEMAP_BLOCK_RADIX && before & mask != 0 {
        0
    } else if radix < FREEMAP_BLOCK_RADIX {
        CHUNK
    } else {
        size
    };
    bmap.bitmapq[word] = (before | mask).into();
    if bmap.class.get() == 0 {
        bmap.class = class.into();
    }
    bmap.avail = bmap.avail.get().saturating_sub(charged as u32).into();
    Some((offset, charged))
}

/// The hints of a leaf: free bytes of its usable entries, and the radixes
/// some entry can still satisfy (each with all lower bits, as bulkfree's
/// `bigmask_get` sets them).
fn leaf_hints(zone: u64, leaf: &Leaf, geo: &Geometry) -> (u64, u32) {
    let (mut avail, mut bigmask) = (0u64, 0u32);
    for (n, bmap) in leaf.bmaps().iter().enumerate() {
        if !geo.segment_usable(zone + n as u64 * SEG) {
            continue;
        }
        avail += u64::from(bmap.avail.get());
        bigmask |= bmap_bigmask(bmap);
    }
    (avail, bigmask)
}

fn bmap_bigmask(bmap: &BmapData) -> u32 {
    let mut mask = 0u32;
    for w in bmap.bitmapq.iter().map(|w| w.get()) {
        let (mut bits, mut radix) = (2u32, FREEMAP_BLOCK_RADIX);
        while bits <= 64 {
            let ones = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            if (0..64).step_by(bits as usize).any(|j| w & (ones << j) == 0) {
                mask |= (2u32 << radix) - 1;
            }
            bits <<= 1;
            radix += 1;
        }
    }
    if let Ok(lin) = u64::try_from(bmap.linear.get()) {
        if lin < SEG && lin & CHUNK_MASK != 0 {
            let room = CHUNK - (lin & CHUNK_MASK);
            mask |= (2u32 << (63 - room.leading_zeros())) - 1;
        }
    }
    mask
}

/// The slot for a new version of the level-`level` block keyed `key`: the
/// first rotation set after the one at `current` (set 0 for a new block)
/// whose slot no valid header copy references.
fn choose_slot(level: usize, key: u64, current: Option<u64>, protected: &HashSet<u64>) -> Result<u64> {
    let keybits = LEVEL_KEYBITS[level - 1];
    let base = key & !((1u64 << keybits) - 1);
    let slot_of = |set: u64| base + (ZONE_FREEMAP_00 + set * ZONE_FREEMAP_INC + level as u64 - 1) * PBUFSIZE;
    let start = current
        .map(|off| (off % ZONE) / PBUFSIZE)
        .filter(|b| (ZONE_FREEMAP_00..ZONE_FREEMAP_END).contains(b))
        .map_or(0, |b| (b - ZONE_FREEMAP_00) / ZONE_FREEMAP_INC + 1);
    (0..NFREEMAPS).map(|k| slot_of((start + k) % NFREEMAPS)).find(|s| !protected.contains(s)).ok_or_else(
        || {
            Error::InvalidArgument(format!(
                "every rotation slot of freemap block {key:#x}/{keybits} is in use"
            ))
        },
    )
}

/// A freemap blockref for a block written at `slot`, with its check code.
#[allow(clippy::too_many_arguments)]
fn freemap_bref(
    kind: BlockrefType,
    key: u64,
    level: usize,
    slot: u64,
    tid: u64,
    avail: u64,
    bigmask: u32,
    data: &[u8],
) -> Blockref {
    let mut b = Blockref::zeroed();
    b.type_ = kind.into();
    b.methods = encode_methods(CheckMethod::Freemap, CompMethod::None);
    b.keybits = LEVEL_KEYBITS[level - 1];
    b.key = key.into();
    b.mirror_tid = tid.into();
    b.modify_tid = tid.into();
    b.data_off = (slot | u64::from(FREEMAP_RADIX)).into();
    let hints = b.freemap_check_mut();
    hints.avail = avail.into();
    hints.bigmask = bigmask.into();
    set_check(&mut b, data);
    b
}

fn same_brefs(a: &[Blockref], b: &[Blockref]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_bytes() == y.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 GiB single volume laid out as newfs does (allocator_beg just past
    /// the aux area), with header copies at 0 and 2 GiB.
    fn geo() -> Geometry {
        Geometry {
            end: 3 << 30,
            allocator_beg: 0x1440_0c00,
            lokey: 0x1480_0000,
            boot_aux: (0x40_0000, 0x1440_0000),
            extents: vec![(0, 3 << 30)],
            headers: vec![0, 2 << 30],
        }
    }

    fn alloc_of(geo: Geometry) -> Allocator {
        Allocator::empty(geo, 1 << 40)
    }

    #[test]
    fn init_marks_what_the_kernel_marks() {
        let g = geo();
        let leaf = Leaf::init(0, &g);
        let b = leaf.bmaps();
        assert_eq!(b[81].avail.get(), 0, "segment of allocator_beg");
        assert_eq!(b[81].linear.get(), SEG as i32);
        assert_eq!(b[82].avail.get(), SEG as u32);
        assert_eq!(b[82].bitmapq[0].get(), 0);
        let (avail, bigmask) = leaf_hints(0, &leaf, &g);
        assert_eq!(avail, 0x2b80_0000, "the fixtures' leaf hint");
        assert_eq!(bigmask, (1 << 20) - 1);
        let z1 = Leaf::init(1 << 30, &g);
        assert_eq!(z1.bmaps()[0].avail.get(), 0, "reserved segment of zone 1");
        assert_eq!(z1.bmaps()[1].avail.get(), SEG as u32);
    }

    #[test]
    fn gaps_and_straddling_volumes_are_never_used() {
        let mut g = geo();
        // Volume 0: 0..1.5 GiB, volume 1: 2 GiB..3 GiB, header of volume 1 at 2 GiB.
        g.extents = vec![(0, 3 << 29), (2 << 30, 3 << 30)];
        g.headers = vec![0, 2 << 30];
        let zone1 = 1 << 30;
        assert!(g.segment_usable(zone1 + SEG));
        assert!(g.segment_usable((3 << 29) - SEG));
        assert!(!g.segment_usable(3 << 29), "in the gap");
        assert!(!g.segment_usable((2 << 30) - SEG), "in the gap");
        assert!(g.segment_usable((2 << 30) + SEG));
        let mut a = alloc_of(g);
        let free = a.freemap_free_bytes();
        // 0.68 GiB in zone 0, 0.5 GiB - 4 MiB in zone 1, 1 GiB - 4 MiB in zone 2.
        assert_eq!(free, (0x4000_0000 - 0x1480_0000) + (0x2000_0000 - SEG) + (0x4000_0000 - SEG));
        let mut n = 0;
        loop {
            match a.alloc(16, BlockrefType::Data) {
                Ok(d) => {
                    let off = d & !0x3f;
                    assert!(
                        a.geo.inside_volume(off, 1 << 16) && a.geo.segment_usable(off & !(SEG - 1)),
                        "{off:#x}"
                    );
                    n += 1;
                }
                Err(e) => {
                    assert_eq!(e, AllocError::NoSpace { bytes: 1 << 16 });
                    break;
                }
            }
        }
        assert_eq!(n << 16, free, "every usable byte, nothing else");
        assert_eq!(a.freemap_free_bytes(), 0);
        assert_eq!(a.leaf_keys(), vec![0, 1 << 30, 2 << 30]);
    }

    #[test]
    fn packing_moves_linear_and_recovery_keeps_it_past_live_blocks() {
        let mut a = alloc_of(geo());
        let first = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(first, 0x1480_0000);
        let second = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(second, first + 1024, "packed behind the first");
        assert_eq!(a.free_bytes(), (1 << 40) - CHUNK, "one chunk charged");
        // A recovered block beyond linear in the same chunk: linear must move.
        assert!(a.mark_allocated((first + 4096) | 10, BlockrefType::Inode).unwrap());
        let third = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(third, first + 5120);
        assert!(!a.mark_allocated((first + 4096) | 10, BlockrefType::Inode).unwrap(), "nothing left to do");
    }

    #[test]
    fn recovery_marks_the_right_chunk_in_the_upper_half_of_a_word() {
        let mut a = alloc_of(geo());
        let seg = 0x1480_0000;
        let off = seg + 17 * CHUNK; // chunk 17: word 0, bits 34..36
        assert!(a.mark_allocated(off | 14, BlockrefType::Data).unwrap());
        let leaf = &a.leaves[&0];
        assert_eq!(leaf.bmaps()[82].bitmapq[0].get(), 3 << 34);
        assert_eq!(leaf.bmaps()[82].avail.get(), (SEG - CHUNK) as u32);
        assert_eq!(a.free_bytes(), (1 << 40) - CHUNK);
    }

    #[test]
    fn releases_stage_or_free() {
        let mut a = alloc_of(geo());
        let d = a.alloc(16, BlockrefType::Data).unwrap();
        assert_eq!(a.release(d).unwrap(), Released::Freed);
        assert_eq!(a.free_bytes(), 1 << 40);
        assert_eq!(a.alloc(16, BlockrefType::Data).unwrap(), d, "free again");
        a.uncommitted.clear(); // as after a flush
        assert_eq!(a.release(d).unwrap(), Released::Staged);
        assert_eq!(a.chunk_state(d & !0x3f), Some(2));
        assert_ne!(a.alloc(16, BlockrefType::Data).unwrap(), d, "staged blocks are not handed out");
        assert_eq!(a.release(d).unwrap(), Released::Unchanged);
    }

    #[test]
    fn pinned_chunks_are_skipped() {
        let mut a = alloc_of(geo());
        assert_eq!(a.protect(0x1480_0000, 1 << 16), 4);
        let d = a.alloc(14, BlockrefType::Data).unwrap() & !0x3f;
        assert_eq!(d, 0x1480_0000 + (1 << 16));
    }

    #[test]
    fn slots_rotate_past_protected_ones() {
        let none = HashSet::new();
        assert_eq!(choose_slot(1, 0, None, &none).unwrap(), 0x10000);
        assert_eq!(choose_slot(1, 0, Some(0x10000), &none).unwrap(), 0x60000);
        let busy: HashSet<u64> = [0x60000, 0xb0000].into();
        assert_eq!(choose_slot(1, 0, Some(0x10000), &busy).unwrap(), 0x100000);
        assert_eq!(choose_slot(2, 0, None, &none).unwrap(), 0x20000);
        assert_eq!(
            choose_slot(1, 1 << 30, Some((1 << 30) + 36 * PBUFSIZE), &none).unwrap(),
            (1 << 30) + PBUFSIZE
        );
    }

    #[test]
    fn bigmask_follows_free_runs_and_linear() {
        let mut b: BmapData = zerocopy::FromZeros::new_zeroed();
        assert_eq!(bmap_bigmask(&b), (1 << 20) - 1);
        b.bitmapq = [u64::MAX.into(); 8];
        assert_eq!(bmap_bigmask(&b), 0);
        b.linear = 0x1000.into(); // 12 KiB left in the chunk
        assert_eq!(bmap_bigmask(&b), (1 << 14) - 1);
        b.bitmapq[3] = (!(0xfu64 << 8)).into(); // chunks 4-5 of word 3: a 32 KiB run
        assert_eq!(bmap_bigmask(&b), (1 << 16) - 1);
    }
}
