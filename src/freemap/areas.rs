//! The fixed areas of a file system, from its header: what
//! `hammer2_freemap_init` marks allocated when it creates a leaf, what must
//! never be marked free, what newfs counted in `allocator_free`, and which
//! 4 MiB segments the allocator may hand out. The allocator builds new
//! leaves from these ([`super::init_leaf`]); fsck checks leaves against the
//! same ones.
//!
//! # What `hammer2_freemap_init` reserves (hammer2_freemap.c)
//!
//! A new leaf marks fully allocated every 4 MiB entry below
//! `lokey = max(roundup(allocator_beg, 4 MiB), zone + 4 MiB)` or at or past
//! `total_size` rounded down to 4 MiB; the others start free. That is the
//! whole rule: the kernel needs none for the boot and aux areas (newfs lays
//! them out below `allocator_beg`) nor for the volume-header copies (they
//! lie in the zones' reserved segments). [`Areas::initially_allocated`] is
//! that rule, chunk by chunk.
//!
//! # Choices where the two former copies of this rule differed
//!
//! * Boot and aux are **two** ranges, `[boot_beg, boot_end)` and
//!   `[aux_beg, aux_end)`, as the header stores them and as newfs counts
//!   them (it deducts each area's size from `allocator_free`). The writer
//!   used to treat `[boot_beg, aux_end)` as one; newfs always puts aux right
//!   after boot, so the two readings agree on every file system it makes,
//!   and only a header with a gap between the areas tells them apart, where
//!   the gap is not reserved by anything.
//! * `lokey` is rounded with checked arithmetic: an `allocator_beg` whose
//!   rounding overflows 64 bits gives the start of the last segment of the
//!   64-bit space (the value the writer's saturating rounding also gave).
//!   No file system reaches that far, so everything inside it stays below
//!   `lokey`. The kernel's unchecked sum would wrap to 0 instead, which no
//!   header made by newfs can provoke.
//! * The areas are clamped to the file system's end, and an area whose
//!   bounds are out of order is empty (the writer used them raw); inside the
//!   file system this changes nothing for a consistent header.
//!
//! # The allocator's stricter rule
//!
//! [`Areas::segment_usable`] adds to `hammer2_freemap_init`'s rule what the
//! offline allocator also refuses: segments overlapping the boot or aux
//! areas, segments outside one volume or in a zone whose reserved segment
//! (where its leaf lives) is not on media, and segments holding a
//! volume-header copy. On media made by newfs none of these adds anything
//! (all lie below `allocator_beg` or in reserved segments), so the leaves it
//! creates are the kernel's.
//!
//! Header fields are used as found (fsck reports the inconsistent ones):
//! every computation here is checked or saturating, so hostile values give
//! odd answers, never a panic.

use super::layout::{
    header_copies, in_reserved, zone_base, zone_of, CHUNK_BYTES, RESERVED_BYTES, SEGMENT_BYTES, ZONE_BYTES,
};
use crate::format::{VolumeData, VOLUME_BYTES};
use std::ops::Range;

/// The space outside the allocator's reach, from the header in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Areas {
    /// End of the file system (all volumes).
    pub end: u64,
    /// The header's `allocator_beg`: newfs's static allocations lie below.
    pub allocator_beg: u64,
    /// `allocator_beg` rounded up to 4 MiB (checked, see the module
    /// documentation): `hammer2_freemap_init` marks every segment below it
    /// allocated.
    pub lokey: u64,
    /// The boot and aux areas, clamped to the file system (empty when the
    /// header's bounds are out of order).
    pub boot: Range<u64>,
    pub aux: Range<u64>,
    /// Logical extent of each volume: `[0, end)` unless
    /// [`with_volumes`](Self::with_volumes) says otherwise.
    pub volumes: Vec<Range<u64>>,
    /// Logical offsets of the volume-header copies on media.
    pub header_copies: Vec<u64>,
}

impl Areas {
    /// The areas of a single-volume file system ending at `end` (its
    /// logical size) with header `v`.
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
            volumes: std::iter::once(0..end).collect(),
            header_copies: header_copies(0, end).collect(),
        }
    }

    /// The same areas on a set of volumes: the logical extent of each, and
    /// where every volume-header copy on media lies.
    pub fn with_volumes(self, volumes: Vec<Range<u64>>, header_copies: Vec<u64>) -> Self {
        Areas { volumes, header_copies, ..self }
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
        self.overlaps_boot_aux(off..off.saturating_add(CHUNK_BYTES))
    }

    fn overlaps_boot_aux(&self, r: Range<u64>) -> bool {
        overlap(&r, &self.boot) + overlap(&r, &self.aux) > 0
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

    /// Whether `[off, off + len)` lies inside one volume.
    pub fn inside_volume(&self, off: u64, len: u64) -> bool {
        let stop = off.saturating_add(len);
        self.volumes.iter().any(|v| off >= v.start && stop <= v.end)
    }

    /// Whether the allocator may hand out space in the 4 MiB segment
    /// starting at `seg`: not [initially allocated](Self::initially_allocated),
    /// clear of the boot and aux areas and of every volume-header copy,
    /// inside one volume, in a zone whose reserved segment is on media.
    pub fn segment_usable(&self, seg: u64) -> bool {
        let Some(stop) = seg.checked_add(SEGMENT_BYTES) else { return false };
        let zone = seg & !(ZONE_BYTES - 1);
        !self.initially_allocated(seg)
            && !self.overlaps_boot_aux(seg..stop)
            && self.inside_volume(zone, RESERVED_BYTES)
            && self.inside_volume(seg, SEGMENT_BYTES)
            && !self.header_copies.iter().any(|&h| h < stop && h.saturating_add(VOLUME_BYTES as u64) > seg)
    }

    /// Whether some segment of the zone starting at `key` is
    /// [usable](Self::segment_usable).
    pub fn zone_usable(&self, key: u64) -> bool {
        (0..ZONE_BYTES / SEGMENT_BYTES)
            .filter_map(|n| key.checked_add(n * SEGMENT_BYTES))
            .any(|seg| self.segment_usable(seg))
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

    /// [`counted_free_but_initially_allocated`](Self::counted_free_but_initially_allocated)
    /// summed over every zone: how much more free `allocator_free` says
    /// than the leaves once every zone below `lokey` has one
    /// (`lokey - aux_end`, 4 MiB, on media made by newfs).
    pub fn counted_free_below_lokey(&self) -> u64 {
        self.allocatable_bytes(0..self.lokey)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(boot: (u64, u64), aux: (u64, u64), allocator_beg: u64) -> Box<VolumeData> {
        let mut v = VolumeData::new_boxed();
        v.boot_beg = boot.0.into();
        v.boot_end = boot.1.into();
        v.aux_beg = aux.0.into();
        v.aux_end = aux.1.into();
        v.allocator_beg = allocator_beg.into();
        v
    }

    /// The fixtures' layout (newfs-10g, small-iscsi...) on a file system of `end` bytes.
    pub(crate) fn fixture_areas(end: u64) -> Areas {
        Areas::new(&header((0x400000, 0x4400000), (0x4400000, 0x14400000), 0x14400c00), end)
    }

    #[test]
    fn newfs_accounting_matches_the_fixtures() {
        let a = fixture_areas(10 << 30);
        assert_eq!(a.lokey, 0x14800000);
        // newfs-10g: allocator_free 0x269800000 with no leaf anywhere.
        let free: u64 = (0..a.zones()).map(|z| a.free_without_leaf(z)).sum();
        assert_eq!(free, 0x269800000);
        // The 4 MiB [aux_end, lokey) segment the leaf marks allocated.
        assert_eq!(a.counted_free_but_initially_allocated(0), 0x400000);
        assert_eq!(a.counted_free_but_initially_allocated(1), 0);
        assert_eq!(a.counted_free_below_lokey(), 0x400000);
        // newfs-1g (boot/aux 32 MiB each).
        let b = Areas::new(&header((0x400000, 0x2400000), (0x2400000, 0x4400000), 0x4400c00), 1 << 30);
        assert_eq!(b.free_without_leaf(0), 0x3bc00000);
    }

    #[test]
    fn usable_segments_follow_init_volumes_and_headers() {
        let a = fixture_areas(3 << 30);
        assert!(!a.segment_usable(0x1440_0000), "segment of allocator_beg");
        assert!(a.segment_usable(0x1480_0000));
        assert!(!a.segment_usable(1 << 30), "reserved segment");
        assert!(a.segment_usable((3 << 30) - SEGMENT_BYTES));
        let short = fixture_areas((3 << 30) - (1 << 20));
        assert!(!short.segment_usable((3 << 30) - SEGMENT_BYTES), "holds the end");
        assert!(short.segment_usable((3 << 30) - 2 * SEGMENT_BYTES));
        assert!(!a.segment_usable(!(SEGMENT_BYTES - 1)));
        // Volume 0: 0..1.5 GiB, volume 1: 2 GiB..3 GiB.
        let a = a.with_volumes(vec![0..3 << 29, 2 << 30..3 << 30], vec![0, 2 << 30]);
        assert!(a.segment_usable((1 << 30) + SEGMENT_BYTES));
        assert!(!a.segment_usable(3 << 29), "in the gap");
        assert!(!a.segment_usable((2 << 30) - SEGMENT_BYTES), "in the gap");
        assert!(a.zone_usable(2 << 30));
        // Two areas with a gap between them: the gap is not reserved.
        let v = header((0x400000, 0x800000), (0x1000000, 0x1400000), 0);
        let g = Areas::new(&v, 1 << 30);
        assert!(!g.segment_usable(0x400000) && !g.segment_usable(0x1000000));
        assert!(g.segment_usable(0x800000) && g.segment_usable(0xc00000));
        assert!(g.in_boot_aux(0x7fffff & !(CHUNK_BYTES - 1)) && !g.in_boot_aux(0x800000));
    }

    /// Boot and aux out of order, `allocator_beg` at the end of the 64-bit
    /// space, on a 10 GiB file system.
    pub(crate) fn hostile_areas() -> Areas {
        Areas::new(&header((u64::MAX, 3), (u64::MAX - 1, u64::MAX), u64::MAX), 10 << 30)
    }

    #[test]
    fn hostile_header_values_saturate() {
        let a = hostile_areas();
        assert!(a.boot.is_empty() && a.aux.is_empty());
        assert_eq!(a.lokey, !(SEGMENT_BYTES - 1));
        assert!(a.initially_allocated(5 << 30));
        assert!(!a.zone_usable(5 << 30));
        assert!(!a.zone_usable(!(ZONE_BYTES - 1)));
    }
}
