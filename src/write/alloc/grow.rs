//! The allocator's side of growfs: the file system's new size makes more
//! 4 MiB segments usable.
//!
//! Zones past the old end have no leaf: the allocator creates them on
//! first use exactly as `hammer2_freemap_init` does for the new size. A
//! leaf of the old last zone, though, was created with every entry at or
//! past the old end marked fully allocated; those that now lie inside the
//! file system are reset to free (only when still exactly as init left
//! them). The kernel's growfs does not touch them (two bulkfrees later
//! they are free there too, its scan treating them as unreached), and adds
//! the raw size difference to `allocator_free`, counting the reserved
//! segments of the new zones and the new header copies' segments as free
//! space although the freemap never hands them out. We add what the
//! freemap itself gains, so that `allocator_free` keeps agreeing with it.

use super::{areas_of, Allocator};
use crate::freemap::{clear_entry, is_filled};
use crate::Hammer2;

impl Allocator {
    /// Adopts the geometry of `fs` (the same file system, grown) and
    /// returns the free bytes gained (also added to
    /// [`free_bytes`](Self::free_bytes)).
    pub fn grow(&mut self, fs: &Hammer2) -> u64 {
        let before = self.freemap_free_bytes();
        let old = std::mem::replace(&mut self.areas, areas_of(fs));
        for (&zone, leaf) in self.leaves.iter_mut() {
            let mut changed = false;
            for (seg, bmap) in leaf.segments_mut(zone) {
                if old.segment_usable(seg) || !self.areas.segment_usable(seg) {
                    continue;
                }
                // Only an entry still exactly as init left it.
                if is_filled(bmap) {
                    clear_entry(bmap);
                    changed = true;
                }
            }
            if changed {
                leaf.freed_space();
            }
        }
        let gained = self.freemap_free_bytes().saturating_sub(before);
        self.allocator_free = self.allocator_free.saturating_add(gained);
        self.relaxed = false;
        gained
    }
}
