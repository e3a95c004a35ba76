//! Freemap pass: structure of the freemap tree and its agreement with the
//! topology (blocks in use must be marked allocated).
//!
//! What is checked, against the chosen header copy:
//!
//! * [`FREEMAP_STRUCT`]: every blockref of the freemap tree is a
//!   FREEMAP_NODE or FREEMAP_LEAF with media; a leaf has
//!   keybits 30 (1 GiB), a node 38, 46, 54 or 62; keys are aligned to their
//!   keybits, lie inside the parent's range (with fewer keybits) and do not
//!   overlap a sibling's; media lies in one of the 40 reserved 64 KiB freemap
//!   slots of a zone (blocks 1..=40 of the first 4 MiB of a 1 GiB zone), at
//!   the slot `hammer2_freemap_reserve()` uses for the block's level and
//!   zone, and no two freemap blocks share media; a leaf covers a zone
//!   inside the file system and no zone has two leaves. Inside a leaf, each
//!   4 MiB entry's `avail` equals 16 KiB times its free (00) blocks (the
//!   kernel keeps it bitmap-granular: allocation, recovery and bulkfree all
//!   adjust it by 16 KiB per 00 transition), and no block the allocator must
//!   never hand out (a zone's reserved 4 MiB, the boot and aux areas,
//!   anything below `allocator_beg` or past the end) is marked free.
//!   Radix and check codes of freemap blocks are verified by the driver's
//!   generic walk and not reported again here (a missing radix is).
//! * [`FREEMAP_LAG`] (info): `freemap_tid < mirror_tid`, the state a crash
//!   between the kernel's topology flush and its freemap flush leaves, which
//!   mount-time recovery replays.
//! * [`FREEMAP_UNMARKED`]: every 16 KiB chunk touched by media reachable
//!   from `sroot_blockset` must not be free (00)
//!   in its zone's leaf. 01 and 10 count as "not free": the allocator only
//!   takes 00 blocks, and bulkfree turns a referenced 10 back into 11. A
//!   chunk in a zone with no leaf is fine only where `hammer2_freemap_init()`
//!   will mark it allocated when it creates the leaf: below `allocator_beg`
//!   rounded up to 4 MiB (newfs writes no freemap), in the zone's reserved
//!   4 MiB, or in the 4 MiB segment holding the end of the file system.
//!   Findings are one per contiguous run (split at zone boundaries) with the
//!   range of `mirror_tid`/`modify_tid` of the blockrefs involved, compared
//!   with the header's `freemap_tid`: mount-time recovery re-marks exactly the
//!   blockrefs whose `mirror_tid` is newer. With more than
//!   [`MAX_FINDINGS`] runs, findings are per zone (and past that, one summary).
//! * [`FREEMAP_LINEAR`]: a 4 MiB entry's `linear` (the offset up to which
//!   blocks under 16 KiB have been packed into its current chunk) must not
//!   point below the end of a block in use in that chunk: the allocator
//!   hands out `linear` next, over live data. Mount-time recovery leaves
//!   this behind when the lagging transaction packed small blocks into a
//!   chunk that was already marked allocated (the kernel only resets
//!   `linear` when it changes a bit); `hammer2_recover` moves it.
//! * [`FREEMAP_LEAKED`] (info): chunks marked 11 that nothing references,
//!   outside the space `hammer2_freemap_init()` marks
//!   allocated (reserved segments, below `allocator_beg` rounded up to 4 MiB,
//!   the boot/aux areas, past the end). Bulkfree returns these.
//! * [`FREEMAP_ALLOC_FREE`] (info): the header's `allocator_free` against the free space the leaves record (computed by
//!   [`crate::freemap::Zones::totals`], as the dump does), after allowing for the one difference
//!   that is expected:
//!
//!   newfs_hammer2 sets `allocator_size = allocator_free` to the volume size
//!   minus 4 MiB per 1 GiB zone and minus the boot and aux areas. Its own few
//!   blocks (the super-root and PFS inodes) are laid down right after the aux
//!   area by its static allocator, which only advances `allocator_beg`
//!   (0x14400c00 on the fixtures: three 1 KiB inodes past aux_end
//!   0x14400000) and never deducts them from `allocator_free`. When the
//!   kernel (or makefs, which runs the kernel's freemap code) creates the
//!   zone-0 leaf, `hammer2_freemap_init()` marks every 4 MiB entry below
//!   `lokey = roundup(allocator_beg, 4 MiB)` fully allocated (avail 0) and
//!   does not touch `allocator_free` either; `allocator_free` only moves in
//!   `hammer2_bmap_alloc()` (allocations), recovery and bulkfree. So the
//!   segment [aux_end, lokey) — 4 MiB on every fixture with a leaf
//!   (small-iscsi, pfs-snapshot, varied, varied-zlib) — is allocated in the
//!   leaf but still counted free in the header, for the life of the file
//!   system (bulkfree skips segments starting below `allocator_beg`, and
//!   only adds what it frees). That amount is computed per leaf-backed zone
//!   and subtracted before comparing; only the remainder is reported.
//!
//! Geometry (slots, zones, chunk states) and the areas `hammer2_freemap_init`
//! marks allocated come from [`crate::freemap`]; this pass adds the tree's
//! structure and the cross-check with the topology.
//!
//! Memory: in-use chunks are a bitset per 1 GiB zone, allocated only for
//! zones the topology touches (8 KiB each); leaf tables are viewed in place.

use super::{
    FsckReport, Place, ZoneLeaf, FREEMAP_ALLOC_FREE, FREEMAP_LAG, FREEMAP_LEAKED, FREEMAP_LINEAR,
    FREEMAP_STRUCT, FREEMAP_UNMARKED,
};
use crate::error::Result;
use crate::format::{BlockrefType, FREEMAP_LEVELN_PSIZE, ZONE_FREEMAP_00, ZONE_FREEMAP_END};
use crate::freemap::{
    entry_chunk_state, entry_linear, home_zone, level_base, level_of_keybits, slot_at, zone_of, Areas,
    ChunkState, Leaf, ZoneMap, Zones, CHUNKS_PER_SEGMENT, CHUNK_BYTES as CHUNK, MEDIA_RADIX,
    SEGMENTS_PER_ZONE, ZONE_BYTES as ZONE,
};
use crate::read::walk::{walk, walk_sharing, Root, WalkOptions};
use crate::volume::Hammer2;
use std::collections::{BTreeMap, HashMap, HashSet};

const WORDS_PER_ZONE: usize = (ZONE / CHUNK / 64) as usize;
/// Largest physical block the walk reads (radix 16).
const MAX_BLOCK: u64 = 1 << 16;
/// Findings of one kind before they are summarised.
pub const MAX_FINDINGS: usize = 16;
/// Blockrefs with unmarked blocks remembered individually (for per-run tids).
const RECORD_CAP: usize = 1 << 20;

/// One bit per 16 KiB chunk, stored per 1 GiB zone and allocated on first use.
struct ChunkSet {
    zones: Vec<Option<Box<[u64]>>>,
}

impl ChunkSet {
    fn new(nzones: usize) -> Self {
        ChunkSet { zones: (0..nzones).map(|_| None).collect() }
    }

    fn split(off: u64) -> (usize, usize) {
        ((off / ZONE) as usize, ((off % ZONE) / CHUNK) as usize)
    }

    fn insert(&mut self, off: u64) {
        let (z, c) = Self::split(off);
        if let Some(slot) = self.zones.get_mut(z) {
            let words = slot.get_or_insert_with(|| vec![0u64; WORDS_PER_ZONE].into_boxed_slice());
            words[c / 64] |= 1 << (c % 64);
        }
    }

    fn contains(&self, off: u64) -> bool {
        let (z, c) = Self::split(off);
        match self.zones.get(z) {
            Some(Some(words)) => words[c / 64] >> (c % 64) & 1 == 1,
            _ => false,
        }
    }

    /// Runs of set chunks in zone `z`, as byte ranges `[start, end)`.
    fn runs(&self, z: usize) -> Vec<(u64, u64)> {
        let Some(Some(words)) = self.zones.get(z) else { return Vec::new() };
        let base = z as u64 * ZONE;
        let mut runs = Vec::new();
        let mut start: Option<u64> = None;
        for (w, &word) in words.iter().enumerate() {
            if start.is_none() && word == 0 {
                continue;
            }
            if start.is_some() && word == u64::MAX {
                continue;
            }
            for bit in 0..64 {
                let off = base + (w as u64 * 64 + bit) * CHUNK;
                match (word >> bit & 1 == 1, start) {
                    (true, None) => start = Some(off),
                    (false, Some(s)) => {
                        runs.push((s, off));
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = start {
            runs.push((s, base + ZONE));
        }
        runs
    }
}

/// A leaf met in the freemap tree.
struct LeafRef {
    key: u64,
    data_off: u64,
    usable: bool,
    location: Place,
}

/// A topology blockref whose media covers unmarked chunks.
struct Record {
    off: u64,
    end: u64,
    mirror_tid: u64,
    modify_tid: u64,
}

/// Transaction ids of a set of blockrefs.
#[derive(Default, Clone)]
struct Tids {
    brefs: u64,
    newer: u64,
    mirror: (u64, u64),
    modify: (u64, u64),
}

impl Tids {
    fn add(&mut self, mirror_tid: u64, modify_tid: u64, freemap_tid: u64) {
        if self.brefs == 0 {
            self.mirror = (mirror_tid, mirror_tid);
            self.modify = (modify_tid, modify_tid);
        } else {
            self.mirror = (self.mirror.0.min(mirror_tid), self.mirror.1.max(mirror_tid));
            self.modify = (self.modify.0.min(modify_tid), self.modify.1.max(modify_tid));
        }
        self.brefs += 1;
        if mirror_tid > freemap_tid {
            self.newer += 1;
        }
    }

    fn merge(&mut self, o: &Tids) {
        if o.brefs == 0 {
            return;
        }
        if self.brefs == 0 {
            *self = o.clone();
            return;
        }
        self.mirror = (self.mirror.0.min(o.mirror.0), self.mirror.1.max(o.mirror.1));
        self.modify = (self.modify.0.min(o.modify.0), self.modify.1.max(o.modify.1));
        self.brefs += o.brefs;
        self.newer += o.newer;
    }

    fn describe(&self, freemap_tid: u64) -> String {
        let n = self.brefs;
        let verdict = if self.newer == n {
            "all newer, so mount-time recovery (hammer2_recover) re-marks them".to_string()
        } else if self.newer == 0 {
            "none newer: the freemap lost allocations it had committed, which mount-time recovery \
             does not re-mark"
                .to_string()
        } else {
            format!(
                "{} newer (mount-time recovery re-marks those), {} not (recovery misses those)",
                self.newer,
                n - self.newer
            )
        };
        format!(
            "{n} blockref{} involved, mirror_tid {:#x}-{:#x}, modify_tid {:#x}-{:#x}; freemap_tid {freemap_tid:#x}: {verdict}",
            if n == 1 { "" } else { "s" },
            self.mirror.0,
            self.mirror.1,
            self.modify.0,
            self.modify.1
        )
    }
}

/// An entry whose `linear` points inside a chunk, and the blocks in use
/// that end past it.
struct LinearHit {
    /// Zone, leaf data_off, entry index, segment base.
    entry: (u64, u64, usize, u64),
    linear: u64,
    /// Logical position `linear` names.
    pos: u64,
    blocks: u64,
    first: Option<String>,
}

/// A node of the freemap tree on the current walk path.
struct Frame {
    /// Children may be checked (this node is a well-formed freemap node).
    ok: bool,
    key: u64,
    key_end: u64,
    keybits: u8,
    /// Key ranges of the children seen so far.
    kids: Vec<(u64, u64)>,
}

/// Why the media of a freemap block (radix already known to be nonzero) is
/// misplaced, if it is: it must start a slot of a zone's reserved segment
/// ([`crate::freemap::slot_at`]), the slot of its own level, in the zone
/// where its key range starts, as `hammer2_freemap_reserve()` places it.
fn placement_problem(off: u64, key: u64, keybits: u8) -> Option<String> {
    let Some(slot) = slot_at(off) else {
        return Some(format!(
            "media at {off:#x} is outside the reserved freemap slots (64 KiB blocks \
             {ZONE_FREEMAP_00}..{ZONE_FREEMAP_END} of a 1 GiB zone)"
        ));
    };
    let level = level_of_keybits(keybits)?;
    if home_zone(level, key) != Some(slot.zone) || slot.level != level {
        return Some(format!(
            "media at {off:#x} is in the slot of another level or zone (a level-{level} block keyed \
             {key:#x} belongs in zone {:#x}, slot {}+5n)",
            level_base(level, key).unwrap_or(0),
            ZONE_FREEMAP_00 + u64::from(level) - 1
        ));
    }
    None
}

/// Checks the freemap of `fs`, adding findings to `report`.
pub fn check(fs: &Hammer2, report: &mut FsckReport) -> Result<()> {
    check_sharing(fs, report, None)
}

/// [`check`], its walk of the topology sharing verified check codes with
/// a topology pass running at the same time ([`crate::read::walk::Checked`]).
pub fn check_sharing(
    fs: &Hammer2,
    report: &mut FsckReport,
    checked: Option<std::sync::Arc<crate::read::walk::Checked>>,
) -> Result<()> {
    let v = &fs.voldata;
    let areas = Areas::new(v, fs.device.logical_size());
    let end = areas.end;
    let freemap_tid = v.freemap_tid.get();
    // Bounded by the devices' sizes (the geometry was validated on open).
    let nzones = areas.zones() as usize;
    let mirror_tid = v.mirror_tid.get();
    if freemap_tid < mirror_tid {
        report.add(
            FREEMAP_LAG,
            Place::HeaderCopy {
                volume: fs.device.volume(fs.root_position()).path().display().to_string(),
                copy: fs.copy,
                offset: None,
            },
            format!(
                "freemap_tid {freemap_tid:#x}, mirror_tid {mirror_tid:#x}: allocations of transactions \
                 {:#x}-{mirror_tid:#x} may be missing from the freemap; a read-write mount or \
                 hammer2_recover replays them",
                freemap_tid + 1
            ),
        );
    }

    // 1. The tree's structure; collect the leaves.
    let mut structural: Vec<(Place, String)> = Vec::new();
    let mut leaves: Vec<LeafRef> = Vec::new();
    let mut seen_media: HashSet<u64> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut unknown: Vec<(u64, u64)> = Vec::new();
    let mut top_kids: Vec<(u64, u64)> = Vec::new();
    walk(fs, Root::Freemap, WalkOptions::default(), &mut |visit| {
        let b = visit.bref;
        stack.truncate(visit.depth);
        let location = Place::Tree { root: Root::Freemap, copy: fs.copy, at: visit.location.clone() };
        let mut bad = |what: String| structural.push((location.clone(), what));
        let (key, key_end, keybits) = (b.key.get(), b.key_end(), b.keybits);
        let parent_ok = stack.last().is_none_or(|p| p.ok);
        let kind = b.kind();
        let mut frame = Frame { ok: false, key, key_end, keybits, kids: Vec::new() };
        if !parent_ok {
            unknown.push((key, key_end));
            stack.push(frame);
            return;
        }
        if !matches!(kind, BlockrefType::FreemapNode | BlockrefType::FreemapLeaf) {
            bad(format!("{kind} blockref in the freemap (only freemap nodes and leaves belong there)"));
            unknown.push((key, key_end));
            stack.push(frame);
            return;
        }
        let is_leaf = kind == BlockrefType::FreemapLeaf;
        let mut ok = true;
        let level_ok = match level_of_keybits(keybits) {
            Some(1) => is_leaf,
            Some(_) => !is_leaf,
            None => false,
        };
        if !level_ok {
            bad(format!("keybits {keybits} invalid for a {kind} (leaves have 30, nodes 38, 46, 54 or 62)"));
            ok = false;
        }
        let aligned = keybits >= 64 || key & ((1u64 << keybits) - 1) == 0;
        if !aligned {
            bad(format!("key {key:#x} is not aligned to its keybits {keybits}"));
            ok = false;
        }
        if let Some(parent) = stack.last_mut() {
            if key < parent.key || key_end > parent.key_end || keybits >= parent.keybits {
                bad(format!(
                    "key range {key:#x}-{key_end:#x} (keybits {keybits}) is not inside the parent's \
                     {:#x}-{:#x} (keybits {})",
                    parent.key, parent.key_end, parent.keybits
                ));
                ok = false;
            }
        }
        let siblings = match stack.last_mut() {
            Some(parent) => &mut parent.kids,
            None => &mut top_kids,
        };
        if let Some(&(k, e)) = siblings.iter().find(|&&(k, e)| key <= e && k <= key_end) {
            bad(format!("key range {key:#x}-{key_end:#x} overlaps a sibling's {k:#x}-{e:#x}"));
            ok = false;
        }
        siblings.push((key, key_end));
        if b.radix() == 0 {
            bad("no media (radix 0)".to_string());
            ok = false;
        } else {
            // A radix other than 15 is reported by the driver (BREF_RADIX).
            if let Some(problem) = placement_problem(b.offset(), key, keybits) {
                bad(problem);
            }
            if !seen_media.insert(b.offset()) {
                bad(format!("media at {:#x} is shared with another freemap block", b.offset()));
                ok = false;
            }
        }
        let readable = visit.media.is_some() && visit.error.is_none() && b.radix() == MEDIA_RADIX;
        if is_leaf && ok && key >= end {
            bad(format!("leaf for a zone past the end of the file system ({end:#x})"));
        } else if is_leaf && ok {
            leaves.push(LeafRef { key, data_off: b.offset(), usable: readable, location: location.clone() });
        } else if !(ok && readable) {
            // What lies below (or in) this block is unknown: no findings about
            // blocks marked free in its range.
            unknown.push((key, key_end));
        }
        frame.ok = ok && readable && !is_leaf;
        stack.push(frame);
    })?;

    // 2. Map zones to leaves; check each leaf's entries.
    let mut zones = Zones::new(&areas);
    let mut first_leaf: Vec<Option<u64>> = vec![None; nzones];
    for leaf in &leaves {
        let z = zone_of(leaf.key);
        // Leaves were kept only below the end, so the zone is in the table.
        let Some(first_slot) = first_leaf.get_mut(z as usize) else { continue };
        if let Some(first) = *first_slot {
            structural.push((
                leaf.location.clone(),
                format!("second leaf for zone {:#x} (the first is at {first:#x})", leaf.key),
            ));
            continue;
        }
        *first_slot = Some(leaf.data_off);
        zones.set(z, ZoneMap::Unusable);
        if !leaf.usable {
            continue;
        }
        let Ok(media) = fs.device.read(leaf.data_off, FREEMAP_LEVELN_PSIZE) else { continue };
        let Some(table) = Leaf::new(z, media) else { continue };
        zones.set(z, ZoneMap::Leaf { data_off: leaf.data_off, leaf: table });
        leaf_contents(&areas, leaf, &table, &mut structural);
    }
    unknown.sort_unstable();
    let mut next_zone = 0u64;
    for (key, key_end) in unknown {
        let last = zone_of(key_end).min(nzones as u64);
        for z in zone_of(key).max(next_zone)..=last {
            if let Some(ZoneMap::NoLeaf) = zones.get(z) {
                zones.set(z, ZoneMap::Unusable);
            }
        }
        next_zone = next_zone.max(last + 1);
    }
    for (location, detail) in structural {
        report.add(FREEMAP_STRUCT, location, detail);
    }

    // Where each entry's `linear` points inside a chunk: chunk -> (entry
    // location, linear position, blocks past it, the first of them).
    let mut linear_at: HashMap<u64, LinearHit> = HashMap::new();
    for (z, zm) in zones.iter() {
        let ZoneMap::Leaf { data_off, leaf } = zm else { continue };
        for (i, entry) in leaf.entries().iter().enumerate() {
            let Some(lin) = entry_linear(entry) else { continue };
            let seg = leaf.segment_base(i);
            let entry_desc = (z, *data_off, i, seg);
            let hit = LinearHit { entry: entry_desc, linear: lin, pos: seg + lin, blocks: 0, first: None };
            linear_at.insert(seg + lin - lin % CHUNK, hit);
        }
    }

    // 3. Chunks the topology uses, and those of them marked free.
    let mut used = ChunkSet::new(nzones);
    let mut unmarked = ChunkSet::new(nzones);
    let mut records: Vec<Record> = Vec::new();
    let mut truncated = false;
    let mut zone_tids: BTreeMap<usize, Tids> = BTreeMap::new();
    // DATA blocks are not read: only where they lie matters here (the
    // topology pass verifies them).
    let opts = WalkOptions { read_data: false, ..Default::default() };
    walk_sharing(fs, Root::Topology, opts, checked, &mut |visit| {
        // Media reached lies inside the file system.
        let Some((off, len)) = visit.extent else { return };
        let b = visit.bref;
        let stop = off.saturating_add(len as u64);
        let mut hit = false;
        let mut c = off & !(CHUNK - 1);
        while c < stop {
            if let Some(l) = linear_at.get_mut(&c) {
                if stop > l.pos {
                    l.blocks += 1;
                    l.first.get_or_insert_with(|| format!("{} data_off {:#x}", b.kind(), b.data_off.get()));
                }
            }
            used.insert(c);
            if zones.chunk_free(&areas, c) == Some(true) {
                unmarked.insert(c);
                hit = true;
            }
            c = c.saturating_add(CHUNK);
        }
        if hit {
            let (mirror_tid, modify_tid) = (b.mirror_tid.get(), b.modify_tid.get());
            zone_tids.entry(zone_of(off) as usize).or_default().add(mirror_tid, modify_tid, freemap_tid);
            if records.len() < RECORD_CAP {
                records.push(Record { off, end: stop, mirror_tid, modify_tid });
            } else {
                truncated = true;
            }
        }
    })?;

    let zone_leaf = |z: usize| match zones.get(z as u64) {
        Some(ZoneMap::Leaf { data_off, .. }) => ZoneLeaf::Leaf(*data_off),
        Some(ZoneMap::NoLeaf) => ZoneLeaf::None,
        _ => ZoneLeaf::Unknown,
    };
    let runs: Vec<(usize, u64, u64)> =
        (0..nzones).flat_map(|z| unmarked.runs(z).into_iter().map(move |(s, e)| (z, s, e))).collect();
    if !runs.is_empty() && runs.len() <= MAX_FINDINGS && !truncated {
        records.sort_by_key(|r| r.off);
        for &(z, s, e) in &runs {
            let mut tids = Tids::default();
            let from = records.partition_point(|r| r.off.saturating_add(MAX_BLOCK) <= s);
            for r in records[from..].iter().take_while(|r| r.off < e).filter(|r| r.end > s) {
                tids.add(r.mirror_tid, r.modify_tid, freemap_tid);
            }
            let n = (e - s) / CHUNK;
            report.add(
                FREEMAP_UNMARKED,
                Place::Logical { start: s, end: e, zone: z as u64, leaf: zone_leaf(z) },
                format!(
                    "{n} chunk{} of 16 KiB in use but marked free; {}",
                    if n == 1 { "" } else { "s" },
                    tids.describe(freemap_tid)
                ),
            );
        }
    } else if !runs.is_empty() {
        // Per zone, then one summary for the rest.
        let mut per_zone: BTreeMap<usize, (u64, u64, u64, u64)> = BTreeMap::new(); // runs, chunks, first, last
        for &(z, s, e) in &runs {
            let entry = per_zone.entry(z).or_insert((0, 0, s, e));
            entry.0 += 1;
            entry.1 += (e - s) / CHUNK;
            entry.3 = e;
        }
        let mut rest = (0u64, 0u64, 0u64, Tids::default());
        for (i, (z, (nruns, chunks, first, last))) in per_zone.into_iter().enumerate() {
            let tids = zone_tids.get(&z).cloned().unwrap_or_default();
            if i < MAX_FINDINGS {
                report.add(
                    FREEMAP_UNMARKED,
                    Place::Logical { start: first, end: last, zone: z as u64, leaf: zone_leaf(z) },
                    format!(
                        "{chunks} chunks of 16 KiB ({}) in use but marked free, in {nruns} runs; {}",
                        bytes_text(chunks * CHUNK),
                        tids.describe(freemap_tid)
                    ),
                );
            } else {
                rest.0 += 1;
                rest.1 += nruns;
                rest.2 += chunks;
                rest.3.merge(&tids);
            }
        }
        if rest.0 > 0 {
            report.add(
                FREEMAP_UNMARKED,
                Place::More { count: rest.0, of: "zones" },
                format!(
                    "{} chunks of 16 KiB ({}) in use but marked free, in {} runs; {}",
                    rest.2,
                    bytes_text(rest.2 * CHUNK),
                    rest.1,
                    rest.3.describe(freemap_tid)
                ),
            );
        }
    }

    let mut overlapped: Vec<LinearHit> = linear_at.into_values().filter(|l| l.blocks > 0).collect();
    overlapped.sort_by_key(|l| l.pos);
    let total = overlapped.len();
    for (n, l) in overlapped.into_iter().enumerate() {
        if n == MAX_FINDINGS {
            report.add(
                FREEMAP_LINEAR,
                Place::More { count: (total - n) as u64, of: "entries" },
                "linear points at or below the end of blocks in use in its chunk".into(),
            );
            break;
        }
        report.add(
            FREEMAP_LINEAR,
            Place::Linear {
                pos: l.pos,
                zone: l.entry.0,
                leaf: l.entry.1,
                entry: l.entry.2,
                segment: l.entry.3,
            },
            format!(
                "linear {:#x} points into its 16 KiB chunk below the end of {} block{} in use (first: {}); \
                 the next allocation under 16 KiB there would overwrite live data",
                l.linear,
                l.blocks,
                if l.blocks == 1 { "" } else { "s" },
                l.first.as_deref().unwrap_or("?")
            ),
        );
    }

    // 4. Allocated chunks nothing references.
    let mut leaked_total = 0u64;
    let mut leaked_zones: Vec<(u64, u64, u64)> = Vec::new(); // zone, chunks, first
    for (z, zm) in zones.iter() {
        let ZoneMap::Leaf { leaf, .. } = zm else { continue };
        let (mut count, mut first) = (0u64, 0u64);
        for (i, entry) in leaf.entries().iter().enumerate() {
            if entry.bitmapq.iter().all(|w| w.get() == 0) {
                continue;
            }
            let seg = leaf.segment_base(i);
            for n in 0..CHUNKS_PER_SEGMENT {
                let off = seg.saturating_add(n as u64 * CHUNK);
                let allocated = entry_chunk_state(entry, n) == ChunkState::Allocated;
                if allocated && !areas.outside_bulkfree(off) && !used.contains(off) {
                    if count == 0 {
                        first = off;
                    }
                    count += 1;
                }
            }
        }
        if count > 0 {
            leaked_total += count;
            leaked_zones.push((z, count, first));
        }
    }
    if leaked_total > 0 {
        let mut parts: Vec<String> = leaked_zones
            .iter()
            .take(8)
            .map(|&(z, n, first)| format!("zone {z}: {n} (first at {first:#x})"))
            .collect();
        if leaked_zones.len() > 8 {
            parts.push(format!("{} more zones", leaked_zones.len() - 8));
        }
        report.add(
            FREEMAP_LEAKED,
            Place::WholeTree { root: Root::Freemap, copy: fs.copy },
            format!(
                "{leaked_total} chunk{} of 16 KiB ({}) marked allocated but referenced by nothing; {}",
                if leaked_total == 1 { "" } else { "s" },
                bytes_text(leaked_total * CHUNK),
                parts.join(", ")
            ),
        );
    }

    // 5. allocator_free against the leaves.
    {
        let totals = zones.totals(&areas, v.allocator_free.get(), v.allocator_size.get());
        if totals.unexplained != 0 {
            report.add(
                FREEMAP_ALLOC_FREE,
                Place::HeaderCopy {
                    volume: fs.device.volume(fs.root_position()).path().display().to_string(),
                    copy: fs.copy,
                    offset: None,
                },
                format!(
                    "allocator_free {:#x}, the leaves and leafless zones give {:#x} free (difference {}); \
                     {} of that is expected (the segment [aux_end, roundup(allocator_beg, 4 MiB)) that \
                     hammer2_freemap_init marks allocated), {} is not",
                    totals.allocator_free,
                    totals.bytes_free,
                    signed_hex(totals.difference.into()),
                    signed_hex(-i128::from(totals.expected_difference)),
                    signed_hex(totals.unexplained.into())
                ),
            );
        }
    }
    Ok(())
}

/// Content checks of one leaf: `avail` against the bitmap, and reserved
/// space marked free.
fn leaf_contents(areas: &Areas, leaf_ref: &LeafRef, leaf: &Leaf, out: &mut Vec<(Place, String)>) {
    let mut avail_bad: (u64, Option<String>) = (0, None);
    let mut reserved_free: (u64, Option<u64>) = (0, None);
    for (i, entry) in leaf.entries().iter().enumerate() {
        let seg = leaf.segment_base(i);
        let mut free = 0u64;
        for n in 0..CHUNKS_PER_SEGMENT {
            if entry_chunk_state(entry, n) != ChunkState::Free {
                continue;
            }
            free += 1;
            let off = seg.saturating_add(n as u64 * CHUNK);
            if areas.never_free(off) {
                reserved_free.0 += 1;
                reserved_free.1.get_or_insert(off);
            }
        }
        let avail = u64::from(entry.avail.get());
        if avail != free * CHUNK {
            avail_bad.0 += 1;
            avail_bad.1.get_or_insert_with(|| {
                format!("entry {i} at {seg:#x}: avail {avail:#x}, the bitmap has {:#x} free", free * CHUNK)
            });
        }
    }
    if let (n, Some(first)) = avail_bad {
        out.push((
            leaf_ref.location.clone(),
            format!(
                "{n} of {SEGMENTS_PER_ZONE} entries have an avail that differs from 16 KiB times their free \
                 blocks (first: {first})"
            ),
        ));
    }
    if let (n, Some(first)) = reserved_free {
        out.push((
            leaf_ref.location.clone(),
            format!(
                "{n} {} of reserved space (a zone's first 4 MiB, the boot/aux areas, below \
                 allocator_beg {:#x} or past the end {:#x}) marked free (first at {first:#x})",
                if n == 1 { "chunk" } else { "chunks" },
                areas.allocator_beg,
                areas.end
            ),
        ));
    }
}

fn bytes_text(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

fn signed_hex(n: i128) -> String {
    if n < 0 {
        format!("-{:#x}", n.unsigned_abs())
    } else {
        format!("{n:#x}")
    }
}
