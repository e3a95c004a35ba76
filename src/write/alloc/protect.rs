//! Protection of reachable blocks: free chunks that some valid header copy
//! still references are pinned in memory so the allocator never hands them
//! out (the commit contract's rule that nothing an older valid copy reaches
//! is reused; kernel bulkfree only looks at the newest topology).

use super::{search::move_linear_past, Allocator};
use crate::error::Result;
use crate::format::{Blockref, RADIX_MAX, RADIX_MIN, SET_COUNT};
use crate::freemap::{chunks_touched, entry_chunk_state, ChunkState, CHUNK_BYTES, SEGMENT_BYTES, ZONE_BYTES};
use crate::read::walk::{self, DataBlocks, Engine, Nothing, Options, Step, Visitor};
use crate::volume::Hammer2;

impl Allocator {
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

    /// Pins the free chunks of the block at `off` of `size` bytes; returns
    /// how many were newly pinned.
    pub(super) fn protect(&mut self, off: u64, size: u64) -> u64 {
        let seg = off & !(SEGMENT_BYTES - 1);
        let zone = off & !(ZONE_BYTES - 1);
        if off < self.areas.allocator_beg
            || (off % SEGMENT_BYTES) + size > SEGMENT_BYTES
            || !self.areas.segment_usable(seg)
        {
            return 0;
        }
        let rel = off - seg;
        let mut count = 0;
        match self.leaves.get_mut(&zone) {
            None => {
                for c in chunks_touched(rel, size) {
                    count += u64::from(self.pinned.insert(seg + c as u64 * CHUNK_BYTES));
                }
            }
            Some(leaf) => {
                let bmap = &mut leaf.entries_mut()[((seg - zone) / SEGMENT_BYTES) as usize];
                for c in chunks_touched(rel, size) {
                    if entry_chunk_state(bmap, c) == ChunkState::Free {
                        count += u64::from(self.pinned.insert(seg + c as u64 * CHUNK_BYTES));
                    }
                }
                if move_linear_past(bmap, rel, size) {
                    leaf.dirty = true;
                }
            }
        }
        count
    }
}
