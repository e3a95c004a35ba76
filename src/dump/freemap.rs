//! `freemap`: the freemap tree and what its leaves say about free space.
//!
//! A level-1 leaf covers a 1 GiB zone with 256 entries of 4 MiB, each a
//! bitmap of two bits per 16 KiB block (00 free, 01 reserved, 10 possibly
//! free, 11 allocated) plus an `avail` byte count. Zones without a leaf were
//! never allocated from: everything in them but the zone's reserved 4 MiB
//! segment (and the boot/aux areas) is free. The totals are compared with the
//! header's `allocator_free`, which writers maintain as a hint. The
//! accounting itself is [`crate::freemap`]'s, shared with fsck.

use super::show::{self, ShowEntry, ShowOptions, TreeKind};
use crate::error::Result;
use crate::format::{BlockrefType, FREEMAP_LEVELN_PSIZE, OFF_MASK};
use crate::freemap::{zone_of, Areas, Leaf, LeafCounts, ZoneMap, Zones, CHUNK_BYTES, ZONE_BYTES};
use crate::read::walk::{self, Root, WalkOptions};
use crate::volume::Hammer2;
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

/// Totals over the whole file system (see [`crate::freemap::Totals`]).
pub type FreemapTotals = crate::freemap::Totals;

/// The freemap of one header copy.
#[derive(Debug, Clone, Serialize)]
pub struct FreemapReport<'a> {
    pub copy: usize,
    pub freemap_tid: u64,
    /// The tree's entries (their names, had freemap blocks any, borrow `fs`).
    pub tree: Vec<ShowEntry<'a>>,
    pub leaves: Vec<LeafSummary>,
    pub totals: FreemapTotals,
    /// Problems met in the tree (bad check, out of range...).
    pub errors: u64,
}

/// Reads the freemap of `fs`. The tree is small (a few blocks per GiB), so
/// it is collected rather than streamed.
pub fn report(fs: &Hammer2) -> Result<FreemapReport<'_>> {
    let v = &fs.voldata;
    let areas = Areas::new(v, fs.device.logical_size());
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
        leaves.push(LeafSummary {
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
            error: match (&visit.error, visit.media) {
                (Some(e), _) => Some(e.kind.to_string()),
                (None, None) => Some("no media".into()),
                (None, Some(_)) => None,
            },
        });
    })?;
    leaves.sort_by_key(|l| l.key);

    // Count each readable leaf; a zone takes the first leaf keyed at its start.
    let mut zones = Zones::new(&areas);
    for l in &mut leaves {
        let zone = zone_of(l.key);
        let media = match l.error {
            None => fs.device.read(l.data_off & OFF_MASK, FREEMAP_LEVELN_PSIZE).ok(),
            Some(_) => None,
        };
        let leaf = media.and_then(|m| Leaf::new(zone, m));
        let counts = leaf.map(|leaf| leaf.counts(areas.end)).unwrap_or_default();
        let LeafCounts { free, reserved, possibly_free, allocated, beyond_end, avail_sum } = counts;
        (l.free, l.reserved, l.possibly_free, l.allocated, l.beyond_end, l.avail_sum) =
            (free, reserved, possibly_free, allocated, beyond_end, avail_sum);
        l.bytes_free = free.saturating_mul(CHUNK_BYTES);
        let is_zone_leaf = l.key % ZONE_BYTES == 0 && l.key_end == l.key | (ZONE_BYTES - 1);
        if is_zone_leaf && matches!(zones.get(zone), Some(ZoneMap::NoLeaf)) {
            let map = match leaf {
                Some(leaf) => ZoneMap::Leaf { data_off: l.data_off, leaf },
                None => ZoneMap::Unusable,
            };
            zones.set(zone, map);
        }
    }
    let totals = zones.totals(&areas, v.allocator_free.get(), v.allocator_size.get());
    Ok(FreemapReport {
        copy: fs.copy,
        freemap_tid: v.freemap_tid.get(),
        tree,
        leaves,
        totals,
        errors: stats.errors,
    })
}
