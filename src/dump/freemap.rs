//! `freemap`: the freemap tree and what its leaves say about free space.
//!
//! A level-1 leaf covers a 1 GiB zone with 256 entries of 4 MiB, each a
//! bitmap of two bits per 16 KiB block (00 free, 01 reserved, 10 possibly
//! free, 11 allocated) plus an `avail` byte count. Zones without a leaf were
//! never allocated from: everything in them but the zone's reserved 4 MiB
//! segment (and the boot/aux areas) is free. The totals are compared with the
//! header's `allocator_free`, which writers maintain as a hint.

use super::show::{self, ShowEntry, ShowOptions, TreeKind};
use crate::error::Result;
use crate::format::{
    BlockrefType, BmapData, FREEMAP_BLOCK_SIZE, FREEMAP_LEVEL0_RADIX, FREEMAP_LEVEL1_RADIX, ZONE_SEG,
};
use crate::volume::Hammer2;
use crate::walk::{self, Root, WalkOptions};
use serde::Serialize;

/// One level-1 leaf (a 1 GiB zone).
#[derive(Debug, Clone, Serialize)]
pub struct LeafSummary {
    /// First byte of the zone (the leaf's key).
    pub key: u64,
    pub key_end: u64,
    pub data_off: u64,
    /// 16 KiB blocks in each state, counting only blocks inside the file system.
    pub free: u64,
    pub reserved: u64,
    pub possibly_free: u64,
    pub allocated: u64,
    /// 16 KiB blocks the leaf maps past the end of the file system.
    pub beyond_end: u64,
    /// `free` in bytes.
    pub bytes_free: u64,
    /// Sum of the entries' `avail` fields.
    pub avail_sum: u64,
    /// The `avail` hint in the leaf's blockref.
    pub avail_hint: u64,
    pub bigmask: u32,
    /// The leaf could not be read or verified (its counts are then zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Totals over the whole file system.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FreemapTotals {
    pub leaves: u64,
    pub free: u64,
    pub reserved: u64,
    pub possibly_free: u64,
    pub allocated: u64,
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
    /// `bytes_free - allocator_free`.
    pub difference: i64,
}

/// The freemap of one header copy.
#[derive(Debug, Clone, Serialize)]
pub struct FreemapReport {
    pub copy: usize,
    pub freemap_tid: u64,
    pub tree: Vec<ShowEntry>,
    pub leaves: Vec<LeafSummary>,
    pub totals: FreemapTotals,
    /// Problems met in the tree (bad check, out of range...).
    pub errors: u64,
}

/// Reads the freemap of `fs`. The tree is small (a few blocks per GiB), so
/// it is collected rather than streamed.
pub fn report(fs: &Hammer2) -> Result<FreemapReport> {
    let v = &fs.voldata;
    // The end of the volume set (total_size is 0 on version-1 media).
    let end = fs.device.logical_size();
    let mut tree = Vec::new();
    let opts = ShowOptions::default();
    let stats =
        show::show_set(fs, TreeKind::Freemap, &v.freemap_blockset, 0, &opts, &mut |e| tree.push(e.clone()));

    let mut leaves = Vec::new();
    walk::walk(fs, Root::Freemap, WalkOptions::default(), &mut |visit| {
        let b = visit.bref;
        if b.kind() != BlockrefType::FreemapLeaf {
            return;
        }
        let hint = b.freemap_check();
        let mut leaf = LeafSummary {
            key: b.key.get(),
            key_end: b.key_end(),
            data_off: b.data_off.get(),
            free: 0,
            reserved: 0,
            possibly_free: 0,
            allocated: 0,
            beyond_end: 0,
            bytes_free: 0,
            avail_sum: 0,
            avail_hint: hint.avail.get(),
            bigmask: hint.bigmask.get(),
            error: visit.error.as_ref().map(|e| e.kind.to_string()),
        };
        if let (Some(media), None) = (visit.media, &visit.error) {
            for (i, bmap) in BmapData::table(media).iter().enumerate() {
                let seg = leaf.key.saturating_add((i as u64) << FREEMAP_LEVEL0_RADIX);
                leaf.avail_sum += u64::from(bmap.avail.get());
                for n in 0..256 {
                    let at = seg.saturating_add(n as u64 * FREEMAP_BLOCK_SIZE);
                    if at >= end {
                        leaf.beyond_end += 1;
                        continue;
                    }
                    match bmap.block_state(n) {
                        0 => leaf.free += 1,
                        1 => leaf.reserved += 1,
                        2 => leaf.possibly_free += 1,
                        _ => leaf.allocated += 1,
                    }
                }
            }
            leaf.bytes_free = leaf.free * FREEMAP_BLOCK_SIZE;
        }
        leaves.push(leaf);
    })?;
    leaves.sort_by_key(|l| l.key);

    let mut t = FreemapTotals {
        leaves: leaves.len() as u64,
        allocator_free: v.allocator_free.get(),
        allocator_size: v.allocator_size.get(),
        ..Default::default()
    };
    for l in &leaves {
        t.free += l.free;
        t.reserved += l.reserved;
        t.possibly_free += l.possibly_free;
        t.allocated += l.allocated;
        t.avail_sum += l.avail_sum;
    }
    let zone = 1u64 << FREEMAP_LEVEL1_RADIX;
    let reserved_areas = [(v.boot_beg.get(), v.boot_end.get()), (v.aux_beg.get(), v.aux_end.get())];
    let mut z = 0u64;
    while z < end {
        let z_end = (z + zone).min(end);
        let covered = leaves.iter().any(|l| l.key <= z && l.key_end >= z_end - 1);
        if !covered {
            t.zones_without_leaf += 1;
            let mut used = ZONE_SEG.min(z_end - z);
            for (beg, stop) in reserved_areas {
                let (lo, hi) = (beg.max(z + ZONE_SEG), stop.min(z_end));
                if hi > lo {
                    used += hi - lo;
                }
            }
            t.bytes_free_without_leaf += (z_end - z) - used;
        }
        z += zone;
    }
    t.bytes_free = t.free * FREEMAP_BLOCK_SIZE + t.bytes_free_without_leaf;
    t.difference = t.bytes_free as i64 - t.allocator_free as i64;
    Ok(FreemapReport {
        copy: fs.copy,
        freemap_tid: v.freemap_tid.get(),
        tree,
        leaves,
        totals: t,
        errors: stats.errors,
    })
}
