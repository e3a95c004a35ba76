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
//!   `allocator_beg` on media newfs made); the rule, and the few segments
//!   this allocator refuses besides, are [`crate::freemap::Areas`]'s, which
//!   fsck checks against too. Init does not touch
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
//! * [`Allocator::protect_blocksets`] pins, in memory, free chunks that an
//!   older valid header copy still references (kernel bulkfree only looks at
//!   the newest topology, so it can free them): the commit contract's rule
//!   that nothing an older valid copy reaches is reused. It walks an older
//!   tree only where it differs from the newest (a subtree both name by the
//!   same `data_off` and check code is already allocated), so opening a
//!   session costs what changed since the oldest valid copy ([`protect`]).
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
//! # Where things are
//!
//! The geometry, the fixed areas and the leaf model (chunk states, entry
//! encoding, leaf initialisation, hints) are [`crate::freemap`]'s, shared
//! with fsck and the dump. Here: loading and the allocator's state (this
//! file), the search for space, recovery marking and releases
//! ([`search`]), pinning reachable blocks ([`protect`]), writing the
//! freemap blocks ([`flush`]), bulkfree ([`bulkfree`]), growfs ([`grow`])
//! and the mount-time replay ([`replay`]).
//!
//! Memory: every leaf is held (32 KiB per GiB of file system in use).

use crate::error::{CorruptKind, Corruption, Error, Location, Result};
use crate::format::{Blockref, BlockrefType, BmapData, RADIX_MAX, RADIX_MIN, VOL_VERSION_MULTI_VOLUMES};
use crate::freemap::{
    entry_free_chunks, in_reserved, init_leaf, level_of_keybits, zone_of, Areas, ChunkState, Leaf,
    CHUNK_BYTES, SEGMENTS_PER_ZONE, SEGMENT_BYTES, ZONE_BYTES,
};
use crate::read::walk::{walk, Root, WalkOptions};
use crate::volume::{CopyState, Hammer2};
use std::collections::{BTreeMap, HashMap, HashSet};

pub mod bulkfree;
pub mod flush;
pub mod grow;
pub mod protect;
pub mod replay;
pub mod search;

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

/// The fixed areas of `fs` as the allocator must respect them: the
/// header's ([`Areas::new`]) on the logical extent of every volume, with
/// every volume-header copy on media.
fn areas_of(fs: &Hammer2) -> Areas {
    let v = &fs.voldata;
    let multi = v.version.get() >= VOL_VERSION_MULTI_VOLUMES;
    let mut volumes = Vec::new();
    let mut headers = Vec::new();
    for (id, &pos) in fs.by_id.iter().enumerate() {
        let loff = if multi { v.volu_loff[id].get() } else { 0 };
        let h = &fs.headers[pos];
        let size = h.best().and_then(|c| c.data.as_ref()).map_or(0, |d| d.volu_size.get());
        let size = size.min(fs.device.volume(pos).size());
        volumes.push(loff..loff.saturating_add(size));
        for c in h.copies.iter().filter(|c| !matches!(c.state, CopyState::Absent)) {
            headers.push(loff.saturating_add(c.offset));
        }
    }
    Areas::new(v, fs.device.logical_size()).with_volumes(volumes, headers)
}

/// One level-1 leaf in memory: its media (read through [`Leaf`], changed
/// through the entry functions of [`crate::freemap`]) and what the flush
/// needs to know about it.
#[derive(Clone)]
struct LiveLeaf {
    /// The blockref it has on media (None: created since the last flush).
    bref: Option<Blockref>,
    /// Its 256 entries (32 KiB).
    data: Box<[u8]>,
    /// In-memory bigmask hint (permissive).
    bigmask: u32,
    dirty: bool,
}

impl LiveLeaf {
    /// A new leaf for the zone starting at `key` ([`init_leaf`]).
    fn init(key: u64, areas: &Areas) -> LiveLeaf {
        LiveLeaf { bref: None, data: init_leaf(areas, key), bigmask: !0, dirty: true }
    }

    /// The leaf as readers see it (`key`: the zone's first byte).
    fn view(&self, key: u64) -> Leaf<'_> {
        Leaf::new(zone_of(key), &self.data).expect("leaves in memory are whole")
    }

    fn entries(&self) -> &[BmapData] {
        BmapData::table(&self.data)
    }

    fn entries_mut(&mut self) -> &mut [BmapData] {
        BmapData::table_mut(&mut self.data)
    }

    /// Each entry with the logical offset of its segment (`key`: the zone's
    /// first byte).
    fn segments_mut(&mut self, key: u64) -> impl Iterator<Item = (u64, &mut BmapData)> {
        let segs = (0..).map(move |n: u64| key + n * SEGMENT_BYTES);
        segs.zip(self.entries_mut().iter_mut())
    }

    /// Records a change that may have freed space: the leaf is written at
    /// the next flush and every size is worth looking for again.
    fn freed_space(&mut self) {
        self.dirty = true;
        self.bigmask = !0;
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
    areas: Areas,
    fsid: [u8; 16],
    /// Leaves by zone (their key).
    leaves: BTreeMap<u64, LiveLeaf>,
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
    /// ranges, one whole leaf per zone). An empty freemap (a fresh newfs) is
    /// fine: leaves are created as `hammer2_freemap_init` does on first use.
    pub fn load(fs: &Hammer2) -> Result<Allocator> {
        let mut a = Allocator::empty(areas_of(fs), fs.voldata.allocator_free.get());
        a.fsid = fs.voldata.fsid;
        let end = a.areas.end;
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
            let level = level_of_keybits(keybits);
            if level.is_none() || leaf != (level == Some(1)) {
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
                if Leaf::new(zone_of(key), media).is_none() {
                    failure =
                        fail(format!("freemap leaf of {} bytes, too short for 256 entries", media.len()));
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
            a.leaves.insert(key, LiveLeaf { bref: Some(bref), data: data.into(), bigmask, dirty: false });
        }
        Ok(a)
    }

    fn empty(areas: Areas, allocator_free: u64) -> Allocator {
        Allocator {
            areas,
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

    /// `allocator_free` for the next volume header: the loaded header's
    /// value, adjusted exactly as the kernel adjusts it (16 KiB per chunk
    /// turning from free to allocated or back).
    pub fn free_bytes(&self) -> u64 {
        self.allocator_free
    }

    /// [`free_bytes`](Self::free_bytes) less what newfs counts free but
    /// `hammer2_freemap_init` marks allocated
    /// ([`Areas::counted_free_below_lokey`], which is
    /// `roundup(allocator_beg, 4 MiB) - aux_end` on media made by newfs):
    /// about what the leaves can still hand out, in constant time on such
    /// media.
    pub fn usable_free_bytes(&self) -> u64 {
        self.allocator_free.saturating_sub(self.areas.counted_free_below_lokey())
    }

    /// Free space as the freemap itself records it: free chunks of the
    /// leaves' usable segments, plus what `hammer2_freemap_init` would leave
    /// free in zones without a leaf. Less than [`free_bytes`](Self::free_bytes)
    /// by [`Areas::counted_free_below_lokey`] on media made by newfs.
    pub fn freemap_free_bytes(&self) -> u64 {
        let mut total = 0;
        let mut zone = 0;
        while zone < self.areas.end {
            let leaf = self.leaves.get(&zone);
            for n in 0..SEGMENTS_PER_ZONE {
                let seg = zone + n as u64 * SEGMENT_BYTES;
                if !self.areas.segment_usable(seg) {
                    continue;
                }
                total += match leaf {
                    Some(l) => entry_free_chunks(&l.entries()[n]) * CHUNK_BYTES,
                    None => SEGMENT_BYTES,
                };
            }
            zone += ZONE_BYTES;
        }
        total
    }

    /// Zones that have a leaf (in memory), by key.
    pub fn leaf_keys(&self) -> Vec<u64> {
        self.leaves.keys().copied().collect()
    }

    /// The state of the chunk holding `off` (None without a leaf).
    pub fn chunk_state(&self, off: u64) -> Option<ChunkState> {
        let key = off & !(ZONE_BYTES - 1);
        self.leaves.get(&key)?.view(key).chunk_state(off)
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
        if (off % SEGMENT_BYTES) + size > SEGMENT_BYTES {
            return bad("crosses a 4 MiB segment");
        }
        if in_reserved(off) {
            return bad("lies in a zone's reserved segment");
        }
        if !self.areas.inside_volume(off, size)
            || !self.areas.inside_volume(off & !(ZONE_BYTES - 1), SEGMENT_BYTES)
        {
            return bad("lies outside every volume");
        }
        Ok((off, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freemap::areas::tests::fixture_areas;

    /// A 3 GiB single volume laid out as newfs does (allocator_beg just past
    /// the aux area), with header copies at 0 and 2 GiB.
    pub(super) fn areas() -> Areas {
        let a = fixture_areas(3 << 30);
        assert_eq!(a.lokey, 0x1480_0000);
        a.with_volumes(std::iter::once(0..3 << 30).collect(), vec![0, 2 << 30])
    }

    pub(super) fn alloc_of(areas: Areas) -> Allocator {
        Allocator::empty(areas, 1 << 40)
    }

    #[test]
    fn chunk_states_read_through_the_leaf_model() {
        let mut a = alloc_of(areas());
        assert_eq!(a.chunk_state(0x1480_0000), None, "no leaf yet");
        let d = a.alloc(14, BlockrefType::Data).unwrap() & !0x3f;
        assert_eq!(a.chunk_state(d), Some(ChunkState::Allocated));
        assert_eq!(a.chunk_state(d + CHUNK_BYTES), Some(ChunkState::Free));
        assert_eq!(a.chunk_state(0), Some(ChunkState::Allocated), "below lokey");
        assert_eq!(a.usable_free_bytes(), (1 << 40) - CHUNK_BYTES - 0x40_0000);
    }
}
