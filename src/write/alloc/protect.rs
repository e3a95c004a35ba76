//! Protection of reachable blocks: free chunks that an older valid header
//! copy still references are pinned in memory so the allocator never hands
//! them out (ARCHITECTURE.md's commit contract, rule 4: nothing an older
//! valid copy reaches is reused).
//!
//! # Why only the differences are walked
//!
//! A session allocates from the freemap of the copy it opened (the newest),
//! replayed into the allocator when it lags the topology, so every block
//! the newest tree reaches is marked allocated (or staged, never handed out
//! either) without any walk. What remains at risk is what only an older
//! copy reaches: a block the newest tree dropped after that copy was
//! written, which a bulkfree (ours or the kernel's, both of which look at
//! the newest topology only) may have marked free.
//!
//! So an older tree is walked side by side with the newest one, and a
//! subtree is skipped where the older tree's blockref has the same
//! `data_off` and check code as a blockref the newest tree holds over the
//! same key range: both name the same media, so everything below it is
//! reached by the newest tree as well and is already safe. Everything else
//! the older tree reaches is pinned: the block itself, and, for inodes and
//! indirect blocks, what lies below (compared in turn with what the newest
//! tree holds there). Older copies are a few transactions behind and share
//! nearly everything, so opening a session costs the size of what changed
//! since the oldest valid copy, not the size of the volume (a full walk of
//! every older tree took over a second at a million files).
//!
//! Where the newest tree moved an unchanged block (an indirect block split
//! or merged), the block is not found at its old place and the older
//! subtree is walked and pinned: more work, never less protection. A block
//! of an older tree that cannot be read or verified is pinned but not
//! entered (what it points to is unknown), as the full walk did; the depth
//! is bounded and no node is entered twice, so a looping or hostile older
//! tree ends.

use super::{search::move_linear_past, Allocator};
use crate::error::Result;
use crate::format::{Blockref, BlockrefType, RADIX_MAX, RADIX_MIN, SET_COUNT};
use crate::freemap::{chunks_touched, entry_chunk_state, ChunkState, CHUNK_BYTES, SEGMENT_BYTES, ZONE_BYTES};
use crate::read::tree::{location, Tree};
use crate::read::walk::{self, DataBlocks, Engine, Nothing, Options, Step, Visitor};
use crate::volume::Hammer2;
use std::collections::{HashMap, HashSet};

/// Deepest level the side-by-side walk enters: far more than any real tree
/// has (super-root, PFS root, a few indirect levels, an inode, a few more).
const MAX_DEPTH: usize = 64;

impl Allocator {
    /// Keeps the blocks that `fs`'s topology references from being handed
    /// out even where the freemap says free, and moves `linear` past any of
    /// them in its chunk: a walk of the whole tree. Returns how many free
    /// chunks were pinned.
    pub fn protect_reachable(&mut self, fs: &Hammer2) -> Result<u64> {
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
        engine.run(&fs.voldata.sroot_blockset, 0, &(), &mut pin);
        Ok(pin.pinned)
    }

    /// Pins what the super-root blocksets `sets` (those of older valid
    /// header copies, the fallback if the newest is lost) reach and the
    /// newest tree of `fs` does not, walking each older tree only where it
    /// differs from the newest (see the module documentation). DATA blocks
    /// are not read. Returns how many free chunks were pinned; the pins
    /// live in memory only.
    pub fn protect_blocksets(&mut self, fs: &Hammer2, sets: &[[Blockref; SET_COUNT]]) -> Result<u64> {
        let mut diff = Diff { alloc: self, tree: Tree::new(fs), pinned: 0, entered: HashSet::new() };
        for set in sets {
            diff.level(set, &fs.voldata.sroot_blockset, 0);
        }
        Ok(diff.pinned)
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

/// The side-by-side walk of an older tree against the newest one.
struct Diff<'s, 'a> {
    alloc: &'s mut Allocator,
    tree: Tree<'a>,
    pinned: u64,
    /// Older nodes already entered (by `data_off`).
    entered: HashSet<u64>,
}

/// Whether a blockref points at media.
fn has_media(b: &Blockref) -> bool {
    b.kind() != BlockrefType::Empty && (RADIX_MIN..=RADIX_MAX).contains(&b.radix())
}

/// Whether a blockref's key range meets `[lo, hi]`.
fn meets(b: &Blockref, lo: u64, hi: u64) -> bool {
    b.key.get() <= hi && b.key_end() >= lo
}

impl<'a> Diff<'_, 'a> {
    /// Compares the blockrefs `old` of an older tree with the blockrefs
    /// `new` the newest tree holds over the same keys, pinning what only
    /// the older one reaches.
    fn level(&mut self, old: &[Blockref], new: &[Blockref], depth: usize) {
        let same: HashMap<u64, &Blockref> =
            new.iter().filter(|n| has_media(n)).map(|n| (n.data_off.get(), n)).collect();
        for o in old.iter().filter(|o| has_media(o)) {
            if same.get(&o.data_off.get()).is_some_and(|n| n.check == o.check) {
                continue;
            }
            self.pinned += self.alloc.protect(o.offset(), o.physical_size());
            let kind = o.kind();
            if !matches!(kind, BlockrefType::Inode | BlockrefType::Indirect)
                || depth >= MAX_DEPTH
                || !self.entered.insert(o.data_off.get())
            {
                continue;
            }
            let Ok(kids) = self.tree.children(o, &location(o, 0, 0)) else { continue };
            let (lo, hi) = (o.key.get(), o.key_end());
            let there = self.frontier(new, lo, hi, o.keybits);
            let new_kids: Vec<Blockref> = if kind == BlockrefType::Inode {
                there
                    .iter()
                    .find(|n| n.kind() == BlockrefType::Inode && n.key.get() == lo)
                    .and_then(|n| self.tree.children(n, &location(n, 0, 0)).ok())
                    .map(<[Blockref]>::to_vec)
                    .unwrap_or_default()
            } else {
                there
            };
            self.level(kids, &new_kids, depth + 1);
        }
    }

    /// The blockrefs of the newest tree that meet `[lo, hi]` at the level
    /// of a node of `keybits`: `new`'s, with every indirect block at least
    /// that wide replaced by its children (the newest tree may hold the
    /// keys one or more indirect levels further down).
    fn frontier(&self, new: &[Blockref], lo: u64, hi: u64, keybits: u8) -> Vec<Blockref> {
        let mut out = Vec::new();
        let mut stack: Vec<(Blockref, usize)> =
            new.iter().filter(|n| has_media(n) && meets(n, lo, hi)).map(|n| (*n, 0)).collect();
        while let Some((n, depth)) = stack.pop() {
            if n.kind() == BlockrefType::Indirect && n.keybits >= keybits && depth < MAX_DEPTH {
                if let Ok(kids) = self.tree.children(&n, &location(&n, 0, 0)) {
                    stack.extend(
                        kids.iter().filter(|k| has_media(k) && meets(k, lo, hi)).map(|k| (*k, depth + 1)),
                    );
                }
            } else {
                out.push(n);
            }
        }
        out
    }
}
