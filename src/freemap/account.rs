//! Free-space accounting: what each zone's leaf says, and the totals
//! compared with the header's `allocator_free` (fsck and the dump).
//!
//! Header fields are used as found (fsck reports the inconsistent ones):
//! every computation here is checked or saturating, so hostile values give
//! odd totals, never a panic.

use super::areas::Areas;
use super::layout::{zone_of, CHUNK_BYTES};
use super::leaf::{ChunkState, Leaf};
use serde::Serialize;

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
    use crate::format::BmapData;
    use crate::freemap::areas::tests::hostile_areas;

    #[test]
    fn hostile_header_values_saturate() {
        let a = hostile_areas();
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
