//! Bulkfree: the freemap rebuilt from the topology, as
//! `hammer2_bulkfree_pass` (hammer2_bulkfree.c) does it.
//!
//! A scan through the traversal engine marks every 16 KiB chunk that a
//! block reachable from the current super-root touches (every PFS, every
//! inode, indirect block, data block and directory-entry name block; the
//! freemap's own blocks live in the reserved segments and are not part of
//! it; nothing below `allocator_beg` is looked at). The marks are then
//! merged into the live leaves with the kernel's transitions:
//!
//! | scan | live | becomes | counted as |
//! |---|---|---|---|
//! | not reached | 11 | 10 | staged (freed by the next bulkfree) |
//! | not reached | 10 | 00 | freed: `avail` and `allocator_free` grow by 16 KiB |
//! | reached | 10 | 11 | restored |
//! | reached | 00 | 11 | in use but marked free (damage): `avail`, `allocator_free` shrink |
//!
//! followed by the kernel's reset of an entry left empty (class 0, linear 0,
//! avail 4 MiB) and its adjustment of `linear` otherwise.
//!
//! One departure, for the commit contract (nothing an older valid header
//! copy reaches is reused): the kernel frees what only older copies still
//! reach; we also scan the older valid copies' super-roots and leave the
//! chunks only they reach staged (10) instead of freeing them. Chunks the
//! current topology reaches end up 11 either way, so after a bulkfree ours
//! and the kernel's mark the same chunks allocated.
//!
//! A damaged node (unreadable, or failing its check code) makes the scan
//! fail before anything changes: what lies below it is unknown, and freeing
//! it would hand out live blocks.
//!
//! [`Allocator::rebuild`] starts from no freemap at all (fsck's repair when
//! the freemap cannot be loaded): every zone's leaf as `hammer2_freemap_init`
//! builds it, then the same merge.

use super::{areas_of, Allocator, LiveLeaf};
use crate::error::{Error, Result};
use crate::format::{Blockref, RADIX_MAX, RADIX_MIN, SET_COUNT};
use crate::freemap::{
    change_chunk, chunks_touched, clear_entry, entry_chunk_state, ChunkState, CHUNKS_PER_SEGMENT,
    CHUNK_BYTES, CHUNK_MASK, SEGMENT_BYTES, ZONE_BYTES,
};
use crate::read::walk::{self, DataBlocks, Engine, Nothing, Options, Step, Visitor};
use crate::volume::{CopyState, Hammer2};
use std::collections::{BTreeMap, HashSet};

/// What a bulkfree found and changed (16 KiB chunks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BulkfreeReport {
    /// Blockrefs the scan met.
    pub blockrefs: u64,
    /// Chunks the current topology reaches.
    pub in_use: u64,
    /// 11 -> 10: allocated, no longer reached (freed by the next bulkfree).
    pub staged: u64,
    /// 10 -> 00: freed.
    pub freed: u64,
    /// 10 -> 11: staged, but reached.
    pub restored: u64,
    /// 00 -> 11: reached but marked free (the freemap was wrong).
    pub unmarked: u64,
    /// Chunks left staged because only an older valid header copy reaches them.
    pub kept_for_older_copies: u64,
}

impl BulkfreeReport {
    /// Bytes freed.
    pub fn freed_bytes(&self) -> u64 {
        self.freed * CHUNK_BYTES
    }
}

/// The scan's marks for one 4 MiB segment.
#[derive(Clone)]
struct Marks {
    /// One bit per chunk, set where reached.
    reached: [u64; CHUNKS_PER_SEGMENT / 64],
    /// Where sub-chunk packing may go on (`bmap->linear` of the scan).
    linear: u64,
}

impl Marks {
    const EMPTY: Marks = Marks { reached: [0; CHUNKS_PER_SEGMENT / 64], linear: 0 };

    fn reached(&self, c: usize) -> bool {
        self.reached[c / 64] >> (c % 64) & 1 == 1
    }
}

/// What the scan found.
#[derive(Default)]
struct Scan {
    marks: BTreeMap<u64, Marks>,
    /// Chunks only older header copies reach.
    older: HashSet<u64>,
    blockrefs: u64,
}

impl Scan {
    /// Marks the chunks of the block at `off` of `size` bytes reached
    /// (as `h2_bulkfree_callback` does, `linear` included).
    fn mark(&mut self, off: u64, size: u64, allocator_beg: u64) {
        if off < allocator_beg || (off % SEGMENT_BYTES) + size > SEGMENT_BYTES {
            return;
        }
        let seg = off & !(SEGMENT_BYTES - 1);
        let rel = off - seg;
        let m = self.marks.entry(seg).or_insert(Marks::EMPTY);
        if size & CHUNK_MASK != 0 {
            m.linear = m.linear.max(rel + size);
        } else if m.linear >= rel && m.linear < rel + size {
            m.linear = rel + size;
        }
        for c in chunks_touched(rel, size) {
            m.reached[c / 64] |= 1 << (c % 64);
        }
    }

    fn reached(&self, chunk_off: u64) -> bool {
        let seg = chunk_off & !(SEGMENT_BYTES - 1);
        let c = ((chunk_off - seg) / CHUNK_BYTES) as usize;
        self.marks.get(&seg).is_some_and(|m| m.reached(c))
    }
}

/// Scans the topology of `fs`: the current super-root and the subtrees of
/// `extra` (blockrefs with the `data_off` of the node holding them: what
/// an uncommitted session references besides the media topology), then
/// (for protection only) the super-roots of the older valid header copies.
fn scan(fs: &Hammer2, extra: &[(Blockref, u64)]) -> Result<Scan> {
    struct Marker<'s> {
        scan: &'s mut Scan,
        allocator_beg: u64,
        /// Scanning an older copy: damage there is not ours to judge.
        older: bool,
        failure: Option<Error>,
        older_marks: Vec<(u64, u64)>,
    }
    impl<'a> Visitor<'a> for Marker<'_> {
        type Ctx = ();
        type Out = Nothing;
        fn visit(&mut self, node: &walk::Node<'a>, _: &()) -> Step<(), Nothing> {
            self.scan.blockrefs += 1;
            if let Some(c) = node.error() {
                if self.older {
                    return Step::Leaf(Nothing);
                }
                self.failure = Some(Error::Corrupt(c));
                return Step::Stop;
            }
            let b = node.bref;
            if (RADIX_MIN..=RADIX_MAX).contains(&b.radix()) {
                if self.older {
                    self.older_marks.push((b.offset(), b.physical_size()));
                } else {
                    self.scan.mark(b.offset(), b.physical_size(), self.allocator_beg);
                }
            }
            if node.is_shared() {
                Step::Leaf(Nothing)
            } else {
                Step::Descend(())
            }
        }
    }
    let mut out = Scan::default();
    let allocator_beg = fs.voldata.allocator_beg.get();
    let mut engine = Engine::new(fs, Options { data: DataBlocks::Skip, ..Default::default() });
    let mut m =
        Marker { scan: &mut out, allocator_beg, older: false, failure: None, older_marks: Vec::new() };
    engine.run(&fs.voldata.sroot_blockset, 0, &(), &mut m);
    // What the current topology already reached is shared: visited once.
    for (b, parent_off) in extra {
        if m.failure.is_some() {
            break;
        }
        engine.run_one(b, *parent_off, 0, &(), &mut m);
    }
    if let Some(e) = m.failure {
        return Err(e);
    }
    m.older = true;
    let older = older_root_sets(fs);
    for set in &older {
        engine.run(set, 0, &(), &mut m);
    }
    let older_marks = std::mem::take(&mut m.older_marks);
    for (off, size) in older_marks {
        if off < allocator_beg || (off % SEGMENT_BYTES) + size > SEGMENT_BYTES {
            continue;
        }
        let seg = off & !(SEGMENT_BYTES - 1);
        for c in chunks_touched(off - seg, size) {
            let chunk = seg + c as u64 * CHUNK_BYTES;
            if !out.reached(chunk) {
                out.older.insert(chunk);
            }
        }
    }
    Ok(out)
}

/// The super-root blocksets of the root volume's valid header copies older
/// than the one in use: the fallback if the newest is lost, so what they
/// reach is never handed out (and never freed by our bulkfree).
pub fn older_root_sets(fs: &Hammer2) -> Vec<[Blockref; SET_COUNT]> {
    let mirror = fs.voldata.mirror_tid.get();
    fs.headers[fs.root_position()]
        .copies
        .iter()
        .filter(|c| matches!(c.state, CopyState::Valid) && c.index != fs.copy)
        .filter(|c| c.mirror_tid() != Some(mirror))
        .filter_map(|c| c.data.as_ref().map(|d| d.sroot_blockset))
        .collect()
}

impl Allocator {
    /// Bulkfree: scans `fs` (which this allocator was loaded from) and
    /// merges what it reaches into the leaves (see the module
    /// documentation). Nothing is written; the next flush writes the leaves.
    pub fn bulkfree(&mut self, fs: &Hammer2) -> Result<BulkfreeReport> {
        self.bulkfree_with(fs, &[])
    }

    /// [`bulkfree`](Self::bulkfree) that also counts as in use what
    /// `extra` reaches (each blockref with the `data_off` of the node
    /// holding it): the blocks an uncommitted write session references and
    /// the media topology does not (yet).
    pub fn bulkfree_with(&mut self, fs: &Hammer2, extra: &[(Blockref, u64)]) -> Result<BulkfreeReport> {
        let scan = scan(fs, extra)?;
        Ok(self.merge(&scan))
    }

    /// An allocator for `fs` built from its topology alone, for a freemap
    /// that cannot be loaded: the leaves of every zone holding reachable
    /// blocks as `hammer2_freemap_init` creates them, then a bulkfree's
    /// marks; `allocator_free` recomputed from them. The flush writes the
    /// new leaves into rotation slots no valid header copy references.
    pub fn rebuild(fs: &Hammer2) -> Result<(Allocator, BulkfreeReport)> {
        let scan = scan(fs, &[])?;
        let mut a = Allocator::empty(areas_of(fs), 0);
        a.fsid = fs.voldata.fsid;
        let report = a.merge(&scan);
        a.allocator_free = a.freemap_free_bytes().saturating_add(a.areas.counted_free_below_lokey());
        Ok((a, report))
    }

    fn merge(&mut self, scan: &Scan) -> BulkfreeReport {
        let mut r = BulkfreeReport { blockrefs: scan.blockrefs, ..Default::default() };
        // A zone holding reached blocks but no leaf gets one (the kernel
        // only reports it: "cannot locate live leaf for allocated data").
        for &seg in scan.marks.keys() {
            let zone = seg & !(ZONE_BYTES - 1);
            let Allocator { leaves, areas, .. } = &mut *self;
            leaves.entry(zone).or_insert_with(|| LiveLeaf::init(zone, areas));
        }
        let zones: Vec<u64> = self.leaves.keys().copied().collect();
        for zone in zones {
            let Allocator { leaves, areas, allocator_free, pinned, .. } = self;
            let Some(leaf) = leaves.get_mut(&zone) else { continue };
            let mut changed = false;
            for (seg, bmap) in leaf.segments_mut(zone) {
                if seg < areas.allocator_beg || seg >= areas.end || !areas.segment_usable(seg) {
                    continue;
                }
                let marks = scan.marks.get(&seg).unwrap_or(&Marks::EMPTY);
                let before = *bmap;
                for c in 0..CHUNKS_PER_SEGMENT {
                    let chunk = seg + c as u64 * CHUNK_BYTES;
                    let live = entry_chunk_state(bmap, c);
                    if marks.reached(c) {
                        r.in_use += 1;
                        match live {
                            ChunkState::Free => r.unmarked += 1,
                            ChunkState::PossiblyFree => r.restored += 1,
                            ChunkState::Reserved | ChunkState::Allocated => {}
                        }
                        let freed = change_chunk(bmap, c, ChunkState::Allocated);
                        *allocator_free = allocator_free.saturating_add_signed(freed);
                        pinned.remove(&chunk);
                    } else {
                        match live {
                            ChunkState::Allocated => {
                                change_chunk(bmap, c, ChunkState::PossiblyFree);
                                r.staged += 1;
                            }
                            ChunkState::PossiblyFree if scan.older.contains(&chunk) => {
                                r.kept_for_older_copies += 1
                            }
                            ChunkState::PossiblyFree => {
                                let freed = change_chunk(bmap, c, ChunkState::Free);
                                *allocator_free = allocator_free.saturating_add_signed(freed);
                                r.freed += 1;
                            }
                            ChunkState::Free | ChunkState::Reserved => {}
                        }
                    }
                }
                // The kernel's clean-up of the entry's fields.
                match (0..8).rev().find(|&i| bmap.bitmapq[i].get() != 0) {
                    None => clear_entry(bmap),
                    Some(i) if i < 7 => {
                        let live_lin = bmap.linear.get();
                        let scan_lin = marks.linear as i32;
                        if live_lin < scan_lin && (live_lin ^ scan_lin) & !(CHUNK_MASK as i32) == 0 {
                            bmap.linear = scan_lin.into();
                        } else {
                            bmap.linear = ((scan_lin + CHUNK_MASK as i32) & !(CHUNK_MASK as i32)).into();
                        }
                    }
                    Some(_) => bmap.linear = (SEGMENT_BYTES as i32).into(),
                }
                changed |= zerocopy::IntoBytes::as_bytes(bmap) != zerocopy::IntoBytes::as_bytes(&before);
            }
            if changed {
                leaf.freed_space();
            }
        }
        self.relaxed = false;
        r
    }
}
