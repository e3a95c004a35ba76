//! Read-side accounting: what a leaf's bits say about each 16 KiB chunk,
//! which space `hammer2_freemap_init` marks allocated when it creates a
//! leaf, and the free-space totals compared with the header's
//! `allocator_free`.
//!
//! Header fields are used as found (fsck reports the inconsistent ones):
//! every computation here is checked or saturating and clamps areas to the
//! file system's end, so hostile values give odd totals, never a panic.

use super::layout::{
    chunk_index, in_reserved, segment_index, zone_base, zone_of, CHUNKS_PER_SEGMENT, CHUNK_BYTES,
    RESERVED_BYTES, SEGMENTS_PER_ZONE, SEGMENT_BYTES, ZONE_BYTES,
};
use crate::format::{BmapData, VolumeData};
use serde::Serialize;
use std::ops::Range;

/// The two-bit state of a 16 KiB chunk in a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// 00: the allocator may hand it out.
    Free,
    /// 01: reserved (not used by current writers; never handed out).
    Reserved,
    /// 10: staged by bulkfree's first pass; free once a second pass agrees.
    PossiblyFree,
    /// 11: allocated.
    Allocated,
}

impl ChunkState {
    /// Decodes the two bits (higher bits ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => ChunkState::Free,
            1 => ChunkState::Reserved,
            2 => ChunkState::PossiblyFree,
            _ => ChunkState::Allocated,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            ChunkState::Free => 0,
            ChunkState::Reserved => 1,
            ChunkState::PossiblyFree => 2,
            ChunkState::Allocated => 3,
        }
    }
}

/// State of chunk `n` (0..256) of one leaf entry.
pub fn entry_chunk_state(entry: &BmapData, n: usize) -> ChunkState {
    ChunkState::from_bits(entry.block_state(n % CHUNKS_PER_SEGMENT))
}

/// Free (00) chunks of one leaf entry.
pub fn entry_free_chunks(entry: &BmapData) -> u64 {
    let free_pairs = |w: u64| {
        // A pair is free when both its bits are clear.
        let either = (w | (w >> 1)) & 0x5555_5555_5555_5555;
        32 - u64::from(either.count_ones())
    };
    entry.bitmapq.iter().map(|w| free_pairs(w.get())).sum()
}

/// A level-1 leaf: the 256 entries describing one zone.
#[derive(Clone, Copy)]
pub struct Leaf<'a> {
    zone: u64,
    entries: &'a [BmapData],
}

impl<'a> Leaf<'a> {
    /// Views `media` (a leaf's 32 KiB) as the leaf of `zone`; `None` when
    /// it is too short to hold all 256 entries.
    pub fn new(zone: u64, media: &'a [u8]) -> Option<Self> {
        let entries = BmapData::table(media);
        (entries.len() >= SEGMENTS_PER_ZONE).then(|| Leaf { zone, entries: &entries[..SEGMENTS_PER_ZONE] })
    }

    pub fn zone(&self) -> u64 {
        self.zone
    }

    /// The 256 entries, entry `i` describing the zone's `i`-th 4 MiB.
    pub fn entries(&self) -> &'a [BmapData] {
        self.entries
    }

    /// Logical offset of entry `i`'s first byte (saturating past the 64-bit space).
    pub fn segment_base(&self, i: usize) -> u64 {
        zone_base(self.zone).unwrap_or(u64::MAX).saturating_add(i as u64 * SEGMENT_BYTES)
    }

    /// The state of the chunk holding `off`; `None` when `off` lies in another zone.
    pub fn chunk_state(&self, off: u64) -> Option<ChunkState> {
        (zone_of(off) == self.zone)
            .then(|| entry_chunk_state(&self.entries[segment_index(off)], chunk_index(off)))
    }

    /// Chunks per state, counting only those below `end` (the file system's end).
    pub fn counts(&self, end: u64) -> LeafCounts {
        let mut c = LeafCounts::default();
        for (i, entry) in self.entries.iter().enumerate() {
            let seg = self.segment_base(i);
            c.avail_sum = c.avail_sum.saturating_add(u64::from(entry.avail.get()));
            // Chunks of this segment inside the file system.
            let inside =
                end.saturating_sub(seg).div_ceil(CHUNK_BYTES).min(CHUNKS_PER_SEGMENT as u64) as usize;
            c.beyond_end += (CHUNKS_PER_SEGMENT - inside) as u64;
            for n in 0..inside {
                match entry_chunk_state(entry, n) {
                    ChunkState::Free => c.free += 1,
                    ChunkState::Reserved => c.reserved += 1,
                    ChunkState::PossiblyFree => c.possibly_free += 1,
                    ChunkState::Allocated => c.allocated += 1,
                }
            }
        }
        c
    }
}

/// State of the chunk holding `off` in `leaf` (`None` outside its zone).
pub fn chunk_state(leaf: &Leaf, off: u64) -> Option<ChunkState> {
    leaf.chunk_state(off)
}

/// 16 KiB chunks of a leaf (or of several) per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LeafCounts {
    pub free: u64,
    pub reserved: u64,
    pub possibly_free: u64,
    pub allocated: u64,
    /// Chunks the leaf maps past the end of the file system.
    pub beyond_end: u64,
    /// Sum of the entries' `avail` fields (bytes).
    pub avail_sum: u64,
}

/// The space outside the allocator's reach, from the header in use:
/// what `hammer2_freemap_init` marks allocated when it creates a leaf, what
/// must never be marked free, and what newfs counted in `allocator_free`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Areas {
    /// End of the file system (all volumes).
    pub end: u64,
    /// The header's `allocator_beg`: newfs's static allocations lie below.
    pub allocator_beg: u64,
    /// `allocator_beg` rounded up to 4 MiB (saturating):
    /// `hammer2_freemap_init` marks every segment below it allocated.
    pub lokey: u64,
    /// The boot and aux areas, clamped to the file system (empty when the
    /// header's bounds are out of order).
    pub boot: Range<u64>,
    pub aux: Range<u64>,
}

impl Areas {
    /// The areas of a file system ending at `end` (its logical size) with
    /// header `v`.
    pub fn new(v: &VolumeData, end: u64) -> Self {
        let area = |beg: u64, stop: u64| {
            let beg = beg.min(end);
            beg..stop.clamp(beg, end)
        };
        let allocator_beg = v.allocator_beg.get();
        Areas {
            end,
            allocator_beg,
            lokey: allocator_beg.checked_next_multiple_of(SEGMENT_BYTES).unwrap_or(!(SEGMENT_BYTES - 1)),
            boot: area(v.boot_beg.get(), v.boot_end.get()),
            aux: area(v.aux_beg.get(), v.aux_end.get()),
        }
    }

    /// Zones the file system spans (the last may be partial).
    pub fn zones(&self) -> u64 {
        self.end.div_ceil(ZONE_BYTES)
    }

    /// Whether `hammer2_freemap_init` marks the chunk at `off` allocated when
    /// it creates the chunk's leaf: below `lokey`, in a zone's reserved
    /// segment, or in the segment holding the end of the file system.
    pub fn initially_allocated(&self, off: u64) -> bool {
        off < self.lokey || in_reserved(off) || off >= self.end & !(SEGMENT_BYTES - 1)
    }

    /// Whether the chunk at `off` overlaps the boot or aux area.
    pub fn in_boot_aux(&self, off: u64) -> bool {
        let chunk = off..off.saturating_add(CHUNK_BYTES);
        overlap(&chunk, &self.boot) + overlap(&chunk, &self.aux) > 0
    }

    /// Whether the chunk at `off` must never be marked free: the allocator
    /// would hand out reserved space or space it asserts it never uses
    /// (a reserved segment, the boot/aux areas, below `allocator_beg`, past the end).
    pub fn never_free(&self, off: u64) -> bool {
        in_reserved(off) || off < self.allocator_beg || self.in_boot_aux(off) || off >= self.end
    }

    /// Whether the chunk at `off` lies outside the space bulkfree manages.
    pub fn outside_bulkfree(&self, off: u64) -> bool {
        self.initially_allocated(off) || self.in_boot_aux(off) || off >= self.end
    }

    /// Bytes of `range` (clipped to the file system) that newfs counts as
    /// allocatable: outside every reserved segment and the boot/aux areas.
    pub fn allocatable_bytes(&self, range: Range<u64>) -> u64 {
        let range = range.start.min(self.end)..range.end.min(self.end);
        if range.is_empty() {
            return 0;
        }
        let reserved = reserved_bytes_in(&range);
        // Boot and aux, merged, outside the reserved segments.
        let areas = merge(&self.boot, &self.aux);
        let areas_bytes: u64 = areas
            .iter()
            .map(|a| {
                let r = range.start.max(a.start)..range.end.min(a.end);
                if r.is_empty() {
                    0
                } else {
                    (r.end - r.start) - reserved_bytes_in(&r)
                }
            })
            .sum();
        (range.end - range.start).saturating_sub(reserved).saturating_sub(areas_bytes)
    }

    /// Free bytes of `zone` while it has no leaf: all that newfs counts
    /// as allocatable.
    pub fn free_without_leaf(&self, zone: u64) -> u64 {
        zone_base(zone).map_or(0, |b| self.allocatable_bytes(b..b.saturating_add(ZONE_BYTES)))
    }

    /// Bytes of `zone` that `hammer2_freemap_init` marks allocated below
    /// `lokey` although newfs counted them in `allocator_free` (its own
    /// static allocations up to `allocator_beg`, and the rest of that 4 MiB
    /// segment). Writers never deduct these from `allocator_free`, so a
    /// zone with a leaf always shows this much less free than the header.
    pub fn counted_free_but_initially_allocated(&self, zone: u64) -> u64 {
        zone_base(zone).map_or(0, |b| self.allocatable_bytes(b..b.saturating_add(ZONE_BYTES).min(self.lokey)))
    }
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> u64 {
    a.end.min(b.end).saturating_sub(a.start.max(b.start))
}

/// Bytes of `r` inside the zones' reserved segments.
fn reserved_bytes_in(r: &Range<u64>) -> u64 {
    if r.is_empty() {
        return 0;
    }
    let (first, last) = (zone_of(r.start), zone_of(r.end - 1));
    (first..=last)
        .filter_map(|z| zone_base(z).map(|b| b..b.saturating_add(RESERVED_BYTES)))
        .map(|seg| overlap(r, &seg))
        .sum()
}

/// The union of two ranges as disjoint ranges (empty ones dropped).
fn merge(a: &Range<u64>, b: &Range<u64>) -> Vec<Range<u64>> {
    let mut v: Vec<Range<u64>> = [a.clone(), b.clone()].into_iter().filter(|r| !r.is_empty()).collect();
    v.sort_by_key(|r| r.start);
    if v.len() == 2 && v[1].start <= v[0].end {
        v[0].end = v[0].end.max(v[1].end);
        v.truncate(1);
    }
    v
}

/// What the freemap says about one zone.
#[derive(Clone, Copy)]
pub enum ZoneMap<'a> {
    /// No leaf: nothing was allocated from the zone yet.
    NoLeaf,
    /// A leaf exists but cannot be used (unreadable, bad check, malformed).
    Unusable,
    Leaf {
        data_off: u64,
        leaf: Leaf<'a>,
    },
}

/// Every zone of a file system and what its leaf says.
pub struct Zones<'a> {
    zones: Vec<ZoneMap<'a>>,
}

impl<'a> Zones<'a> {
    /// All zones of `areas` without a leaf. The table has one small entry
    /// per GiB of `areas.end`, which an opened file system bounds by the
    /// size of its devices.
    pub fn new(areas: &Areas) -> Self {
        Zones { zones: vec![ZoneMap::NoLeaf; areas.zones() as usize] }
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn get(&self, zone: u64) -> Option<&ZoneMap<'a>> {
        usize::try_from(zone).ok().and_then(|z| self.zones.get(z))
    }

    /// Records what zone `zone` has; ignored past the file system's end.
    pub fn set(&mut self, zone: u64, map: ZoneMap<'a>) {
        if let Some(slot) = usize::try_from(zone).ok().and_then(|z| self.zones.get_mut(z)) {
            *slot = map;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &ZoneMap<'a>)> {
        self.zones.iter().enumerate().map(|(z, m)| (z as u64, m))
    }

    /// Whether the chunk at `off` is free as far as the allocator is
    /// concerned: 00 in its leaf, or, in a zone without a leaf, not among
    /// what `hammer2_freemap_init` will mark allocated. `None` when the
    /// zone's leaf is unusable or `off` lies past the end.
    pub fn chunk_free(&self, areas: &Areas, off: u64) -> Option<bool> {
        match self.get(zone_of(off))? {
            ZoneMap::Leaf { leaf, .. } => leaf.chunk_state(off).map(|s| s == ChunkState::Free),
            ZoneMap::NoLeaf => Some(!areas.initially_allocated(off)),
            ZoneMap::Unusable => None,
        }
    }

    /// Free-space totals against the header's allocator fields.
    pub fn totals(&self, areas: &Areas, allocator_free: u64, allocator_size: u64) -> Totals {
        let mut t = Totals { allocator_free, allocator_size, ..Default::default() };
        for (z, map) in self.iter() {
            match map {
                ZoneMap::NoLeaf => {
                    t.zones_without_leaf += 1;
                    t.bytes_free_without_leaf =
                        t.bytes_free_without_leaf.saturating_add(areas.free_without_leaf(z));
                }
                ZoneMap::Unusable | ZoneMap::Leaf { .. } => {
                    t.leaves += 1;
                    let init = areas.counted_free_but_initially_allocated(z);
                    t.expected_difference = t.expected_difference.saturating_add(init);
                    if let ZoneMap::Leaf { leaf, .. } = map {
                        let c = leaf.counts(areas.end);
                        t.free += c.free;
                        t.reserved += c.reserved;
                        t.possibly_free += c.possibly_free;
                        t.allocated += c.allocated;
                        t.avail_sum = t.avail_sum.saturating_add(c.avail_sum);
                    }
                }
            }
        }
        t.bytes_free = t.free.saturating_mul(CHUNK_BYTES).saturating_add(t.bytes_free_without_leaf);
        let difference = i128::from(t.bytes_free) - i128::from(allocator_free);
        t.difference = clamp_i64(difference);
        t.unexplained = clamp_i64(difference + i128::from(t.expected_difference));
        t
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Free space by the freemap against the header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Zones with a leaf (usable or not).
    pub leaves: u64,
    /// 16 KiB chunks per state over the usable leaves, inside the file system.
    pub free: u64,
    pub reserved: u64,
    pub possibly_free: u64,
    pub allocated: u64,
    /// Sum of the usable leaves' `avail` fields.
    pub avail_sum: u64,
    /// Zones inside the file system that have no leaf.
    pub zones_without_leaf: u64,
    /// Free bytes in those zones (all but their reserved segment and boot/aux areas).
    pub bytes_free_without_leaf: u64,
    /// Free bytes by the bitmaps plus the zones without a leaf.
    pub bytes_free: u64,
    /// The header's hint.
    pub allocator_free: u64,
    pub allocator_size: u64,
    /// `bytes_free - allocator_free` (clamped to 64 bits).
    pub difference: i64,
    /// How much less free the leaves show than `allocator_free` on a
    /// consistent file system ([`Areas::counted_free_but_initially_allocated`]
    /// summed over the zones with a leaf).
    pub expected_difference: u64,
    /// `difference + expected_difference` (computed before clamping, then
    /// clamped): 0 on a consistent file system.
    pub unexplained: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(boot: (u64, u64), aux: (u64, u64), allocator_beg: u64) -> Box<VolumeData> {
        let mut v = VolumeData::new_boxed();
        v.boot_beg = boot.0.into();
        v.boot_end = boot.1.into();
        v.aux_beg = aux.0.into();
        v.aux_end = aux.1.into();
        v.allocator_beg = allocator_beg.into();
        v
    }

    /// The fixtures' 10 GiB layout (newfs-10g, small-iscsi...).
    fn fixture_areas() -> Areas {
        Areas::new(&header((0x400000, 0x4400000), (0x4400000, 0x14400000), 0x14400c00), 10 << 30)
    }

    #[test]
    fn newfs_accounting_matches_the_fixtures() {
        let a = fixture_areas();
        assert_eq!(a.lokey, 0x14800000);
        // newfs-10g: allocator_free 0x269800000 with no leaf anywhere.
        let free: u64 = (0..a.zones()).map(|z| a.free_without_leaf(z)).sum();
        assert_eq!(free, 0x269800000);
        // The 4 MiB [aux_end, lokey) segment the leaf marks allocated.
        assert_eq!(a.counted_free_but_initially_allocated(0), 0x400000);
        assert_eq!(a.counted_free_but_initially_allocated(1), 0);
        // newfs-1g (boot/aux 32 MiB each).
        let b = Areas::new(&header((0x400000, 0x2400000), (0x2400000, 0x4400000), 0x4400c00), 1 << 30);
        assert_eq!(b.free_without_leaf(0), 0x3bc00000);
    }

    #[test]
    fn chunk_states_and_counts() {
        let mut media = vec![0u8; 32768];
        {
            let t = BmapData::table_mut(&mut media);
            t[0].set_block_state(0, 3);
            t[0].set_block_state(1, 2);
            t[255].set_block_state(255, 1);
            t[3].avail = 4096.into();
        }
        let leaf = Leaf::new(2, &media).unwrap();
        let base = 2 << 30;
        assert_eq!(chunk_state(&leaf, base), Some(ChunkState::Allocated));
        assert_eq!(leaf.chunk_state(base + CHUNK_BYTES + 5), Some(ChunkState::PossiblyFree));
        assert_eq!(leaf.chunk_state(base + (1 << 30) - 1), Some(ChunkState::Reserved));
        assert_eq!(leaf.chunk_state(base - 1), None);
        let c = leaf.counts(u64::MAX);
        assert_eq!((c.free, c.allocated, c.possibly_free, c.reserved, c.beyond_end), (65533, 1, 1, 1, 0));
        assert_eq!(c.avail_sum, 4096);
        // The file system ends 1 MiB into the zone.
        let c = leaf.counts(base + (1 << 20));
        assert_eq!((c.free + c.allocated + c.possibly_free, c.beyond_end), (64, 65536 - 64));
        assert_eq!(entry_free_chunks(&leaf.entries()[0]), 254);
        assert!(Leaf::new(0, &media[..1000]).is_none());
        for bits in 0..4 {
            assert_eq!(ChunkState::from_bits(bits).bits(), bits);
        }
    }

    #[test]
    fn hostile_header_values_saturate() {
        let v = header((u64::MAX, 3), (u64::MAX - 1, u64::MAX), u64::MAX);
        let a = Areas::new(&v, 10 << 30);
        assert!(a.boot.is_empty() && a.aux.is_empty());
        assert_eq!(a.lokey, !(SEGMENT_BYTES - 1));
        assert!(a.initially_allocated(5 << 30));
        let zones = Zones::new(&a);
        let t = zones.totals(&a, 1 << 63, u64::MAX);
        assert_eq!(t.zones_without_leaf, 10);
        assert!(t.difference < 0);
        assert_eq!(t.unexplained, t.difference);
        let t = zones.totals(&a, 0, 0);
        assert!(t.difference > 0);
        // An entry whose avail is near u32::MAX on every entry.
        let mut media = vec![0u8; 32768];
        for e in BmapData::table_mut(&mut media) {
            e.avail = u32::MAX.into();
        }
        let leaf = Leaf::new(u64::MAX >> 30, &media).unwrap();
        assert_eq!(leaf.counts(u64::MAX).avail_sum, 256 * u64::from(u32::MAX));
        assert_eq!(leaf.segment_base(255), u64::MAX - (4 << 20) + 1);
        let mut z = Zones::new(&a);
        z.set(u64::MAX, ZoneMap::Unusable);
        assert!(z.get(u64::MAX).is_none());
    }
}
