//! Leaf allocation: the search for space (`hammer2_freemap_alloc`,
//! `hammer2_freemap_try_alloc`, `hammer2_bmap_alloc`), recovery's marking
//! (DORECOVER) and releases. See the module documentation of
//! [`super`] for the facts and the choices.

use super::{AllocError, Allocator, LiveLeaf, Released};
use crate::error::{Error, Result};
use crate::format::{BlockrefType, BmapData, FREEMAP_BLOCK_RADIX, RADIX_MAX, RADIX_MIN};
use crate::freemap::{
    change_chunk, chunks_touched, class_of, entry_chunk_state, entry_linear, free_runs, ChunkState,
    CHUNK_BYTES, CHUNK_MASK, SEGMENTS_PER_ZONE, SEGMENT_BYTES, ZONE_BYTES,
};
use std::collections::btree_map::Entry;
use std::collections::HashSet;

impl Allocator {
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
        let end = self.areas.end;
        let hint = usize::from(class >> 8) & 7;
        let mut bnext = self.heur[hint].min(end.saturating_sub(1));
        let (mut loops, mut relaxed) = (0, self.relaxed);
        loop {
            let zone = bnext & !(ZONE_BYTES - 1);
            if let Some(off) = self.try_zone(zone, bnext, radix, class, relaxed) {
                self.heur[hint] = bnext;
                self.relaxed |= relaxed;
                if radix >= FREEMAP_BLOCK_RADIX {
                    self.uncommitted.insert(off | u64::from(radix));
                }
                return Ok(off | u64::from(radix));
            }
            bnext = zone + ZONE_BYTES;
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
        let Allocator { areas, leaves, pinned, allocator_free, .. } = self;
        let leaf = match leaves.entry(zone) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if areas.zone_usable(zone) => e.insert(LiveLeaf::init(zone, areas)),
            Entry::Vacant(_) => return None,
        };
        if leaf.bigmask & (1 << radix) == 0 {
            return None;
        }
        let start = ((bnext - zone) / SEGMENT_BYTES) as i64;
        let count = SEGMENTS_PER_ZONE as i64;
        for step in 0..count {
            if start + step >= count && start - step < 0 {
                break;
            }
            let candidates = [start + step, start - step];
            for &n in &candidates[..if step == 0 { 1 } else { 2 }] {
                if !(0..count).contains(&n) {
                    continue;
                }
                let seg = zone + n as u64 * SEGMENT_BYTES;
                let bmap = &mut leaf.entries_mut()[n as usize];
                // The kernel's test: any `linear` off a chunk boundary.
                let linear_room = radix < FREEMAP_BLOCK_RADIX && bmap.linear.get() as u64 & CHUNK_MASK != 0;
                let class_ok = bmap.class.get() == 0 || bmap.class.get() == class || relaxed;
                if !(bmap.avail.get() != 0 || linear_room) || !class_ok || !areas.segment_usable(seg) {
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
        if off < self.areas.allocator_beg {
            return Ok(false);
        }
        let class = class_of(kind).ok_or_else(|| {
            Error::InvalidArgument(format!("{kind} blocks are not allocated from the freemap"))
        })?;
        let zone = off & !(ZONE_BYTES - 1);
        let Allocator { leaves, pinned, allocator_free, areas, .. } = self;
        let leaf = leaves.entry(zone).or_insert_with(|| LiveLeaf::init(zone, areas));
        let seg = off & !(SEGMENT_BYTES - 1);
        let bmap = &mut leaf.entries_mut()[((seg - zone) / SEGMENT_BYTES) as usize];
        let (rel, mut changed) = (off - seg, false);
        for c in chunks_touched(rel, size) {
            if entry_chunk_state(bmap, c) == ChunkState::Allocated {
                continue;
            }
            *allocator_free =
                allocator_free.saturating_add_signed(change_chunk(bmap, c, ChunkState::Allocated));
            pinned.remove(&(seg + c as u64 * CHUNK_BYTES));
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
        let zone = off & !(ZONE_BYTES - 1);
        let seg = off & !(SEGMENT_BYTES - 1);
        let fresh = self.uncommitted.remove(&data_off);
        let Some(leaf) = self.leaves.get_mut(&zone) else { return Ok(Released::Unchanged) };
        if off < self.areas.allocator_beg {
            return Ok(Released::Unchanged);
        }
        let bmap = &mut leaf.entries_mut()[((seg - zone) / SEGMENT_BYTES) as usize];
        let mut outcome = Released::Unchanged;
        for c in chunks_touched(off - seg, size) {
            if entry_chunk_state(bmap, c) != ChunkState::Allocated {
                continue;
            }
            if fresh {
                let freed = change_chunk(bmap, c, ChunkState::Free);
                self.allocator_free = self.allocator_free.saturating_add_signed(freed);
                outcome = Released::Freed;
            } else {
                change_chunk(bmap, c, ChunkState::PossiblyFree);
                outcome = Released::Staged;
            }
        }
        if outcome == Released::Freed {
            if bmap.bitmapq.iter().all(|w| w.get() == 0) {
                bmap.class = 0.into();
                bmap.linear = 0.into();
            }
            leaf.freed_space();
            self.relaxed = false;
        }
        leaf.dirty |= outcome != Released::Unchanged;
        Ok(outcome)
    }
}

/// Moves `linear` to the end of the block at `[rel, rel + size)` when it
/// lies inside a chunk the block touches and below the block's end, so that
/// packing never hands out live space. Returns whether it moved.
pub(super) fn move_linear_past(bmap: &mut BmapData, rel: u64, size: u64) -> bool {
    let Some(lin) = entry_linear(bmap) else { return false };
    let end = rel + size;
    if !chunks_touched(rel, size).contains(&((lin / CHUNK_BYTES) as usize)) || lin >= end {
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
    let run = if radix <= FREEMAP_BLOCK_RADIX { 1 } else { 1 << (radix - FREEMAP_BLOCK_RADIX) };
    let packable = entry_linear(bmap).filter(|&l| {
        (l & CHUNK_MASK) + size <= CHUNK_BYTES
            && l % (1 << RADIX_MIN) == 0
            && !pinned.contains(&(seg + (l & !CHUNK_MASK)))
    });
    let (offset, first) = match packable {
        Some(l) => {
            bmap.linear = ((l + size) as i32).into();
            (l, (l / CHUNK_BYTES) as usize)
        }
        None => {
            let unpinned = |c: usize| (c..c + run).all(|k| !pinned.contains(&(seg + k as u64 * CHUNK_BYTES)));
            let first = free_runs(bmap, run).find(|&c| unpinned(c))?;
            let offset = first as u64 * CHUNK_BYTES;
            if size & CHUNK_MASK != 0 {
                bmap.linear = ((offset + size) as i32).into();
            }
            (offset, first)
        }
    };
    // A whole-chunk run was free; a packed block is charged only when its
    // chunk was.
    let freed: i64 = (first..first + run).map(|c| change_chunk(bmap, c, ChunkState::Allocated)).sum();
    if bmap.class.get() == 0 {
        bmap.class = class.into();
    }
    Some((offset, freed.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{alloc_of, areas};
    use super::*;
    use crate::freemap::Leaf;

    #[test]
    fn init_marks_what_the_kernel_marks() {
        let g = areas();
        let leaf = LiveLeaf::init(0, &g);
        let b = leaf.entries();
        assert_eq!(b[81].avail.get(), 0, "segment of allocator_beg");
        assert_eq!(b[81].linear.get(), SEGMENT_BYTES as i32);
        assert_eq!(b[82].avail.get(), SEGMENT_BYTES as u32);
        assert_eq!(b[82].bitmapq[0].get(), 0);
        let (avail, bigmask) = Leaf::new(0, &leaf.data).unwrap().hints(&g);
        assert_eq!(avail, 0x2b80_0000, "the fixtures' leaf hint");
        assert_eq!(bigmask, (1 << 20) - 1);
        let z1 = LiveLeaf::init(1 << 30, &g);
        assert_eq!(z1.entries()[0].avail.get(), 0, "reserved segment of zone 1");
        assert_eq!(z1.entries()[1].avail.get(), SEGMENT_BYTES as u32);
    }

    #[test]
    fn gaps_and_straddling_volumes_are_never_used() {
        // Volume 0: 0..1.5 GiB, volume 1: 2 GiB..3 GiB, header of volume 1 at 2 GiB.
        let g = areas().with_volumes(vec![0..3 << 29, 2 << 30..3 << 30], vec![0, 2 << 30]);
        let zone1 = 1 << 30;
        assert!(g.segment_usable(zone1 + SEGMENT_BYTES));
        assert!(g.segment_usable((3 << 29) - SEGMENT_BYTES));
        assert!(!g.segment_usable(3 << 29), "in the gap");
        assert!(!g.segment_usable((2 << 30) - SEGMENT_BYTES), "in the gap");
        assert!(g.segment_usable((2 << 30) + SEGMENT_BYTES));
        let mut a = alloc_of(g);
        let free = a.freemap_free_bytes();
        // 0.68 GiB in zone 0, 0.5 GiB - 4 MiB in zone 1, 1 GiB - 4 MiB in zone 2.
        assert_eq!(
            free,
            (0x4000_0000 - 0x1480_0000) + (0x2000_0000 - SEGMENT_BYTES) + (0x4000_0000 - SEGMENT_BYTES)
        );
        let mut n = 0;
        loop {
            match a.alloc(16, BlockrefType::Data) {
                Ok(d) => {
                    let off = d & !0x3f;
                    assert!(
                        a.areas.inside_volume(off, 1 << 16)
                            && a.areas.segment_usable(off & !(SEGMENT_BYTES - 1)),
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
        let mut a = alloc_of(areas());
        let first = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(first, 0x1480_0000);
        let second = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(second, first + 1024, "packed behind the first");
        assert_eq!(a.free_bytes(), (1 << 40) - CHUNK_BYTES, "one chunk charged");
        // A recovered block beyond linear in the same chunk: linear must move.
        assert!(a.mark_allocated((first + 4096) | 10, BlockrefType::Inode).unwrap());
        let third = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        assert_eq!(third, first + 5120);
        assert!(!a.mark_allocated((first + 4096) | 10, BlockrefType::Inode).unwrap(), "nothing left to do");
    }

    #[test]
    fn recovery_marks_the_right_chunk_in_the_upper_half_of_a_word() {
        let mut a = alloc_of(areas());
        let seg = 0x1480_0000;
        let off = seg + 17 * CHUNK_BYTES; // chunk 17: word 0, bits 34..36
        assert!(a.mark_allocated(off | 14, BlockrefType::Data).unwrap());
        let leaf = &a.leaves[&0];
        assert_eq!(leaf.entries()[82].bitmapq[0].get(), 3 << 34);
        assert_eq!(leaf.entries()[82].avail.get(), (SEGMENT_BYTES - CHUNK_BYTES) as u32);
        assert_eq!(a.free_bytes(), (1 << 40) - CHUNK_BYTES);
    }

    #[test]
    fn releases_stage_or_free() {
        let mut a = alloc_of(areas());
        let d = a.alloc(16, BlockrefType::Data).unwrap();
        assert_eq!(a.release(d).unwrap(), Released::Freed);
        assert_eq!(a.free_bytes(), 1 << 40);
        assert_eq!(a.alloc(16, BlockrefType::Data).unwrap(), d, "free again");
        a.uncommitted.clear(); // as after a flush
        assert_eq!(a.release(d).unwrap(), Released::Staged);
        assert_eq!(a.chunk_state(d & !0x3f), Some(ChunkState::PossiblyFree));
        assert_ne!(a.alloc(16, BlockrefType::Data).unwrap(), d, "staged blocks are not handed out");
        assert_eq!(a.release(d).unwrap(), Released::Unchanged);
    }

    #[test]
    fn pinned_chunks_are_skipped() {
        let mut a = alloc_of(areas());
        assert_eq!(a.protect(0x1480_0000, 1 << 16), 4);
        let d = a.alloc(14, BlockrefType::Data).unwrap() & !0x3f;
        assert_eq!(d, 0x1480_0000 + (1 << 16));
    }
}
