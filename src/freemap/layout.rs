//! Freemap geometry: where freemap blocks live and which bytes a leaf's bits
//! describe. Pure functions of offsets and keys; no I/O, no header.
//!
//! The logical address space is cut into *zones* of 1 GiB (the level-1
//! radix), each described by one leaf of 256 *segments* of 4 MiB (level 0),
//! each segment a bitmap of 256 *chunks* of 16 KiB at two bits a chunk.
//! Levels 2 to 5 are nodes of 256 blockrefs whose keys cover 2^38, 2^46,
//! 2^54 and 2^62 bytes.
//!
//! The first segment of every zone is reserved: never allocated from the
//! bitmaps. Its 64 KiB block 0 holds a volume-header copy where one falls
//! (every 2 GiB of each volume); blocks 1 to 40 hold the freemap itself, as 8
//! *rotation sets* of 5 blocks, one block per level. A freemap block keyed
//! `key` at level `L` always lives in the zone where its key range starts
//! (`key` rounded down to level `L`'s radix), in the slot of its level within
//! one of the rotation sets; a rewrite moves it to the next set, so a crash
//! leaves the previous copy intact (`hammer2_freemap_reserve`).

use crate::format::{
    FREEMAP_BLOCK_SIZE, FREEMAP_COUNT, FREEMAP_LEVEL0_RADIX, FREEMAP_LEVEL1_RADIX, FREEMAP_LEVEL5_RADIX,
    FREEMAP_LEVELN_PSIZE, NFREEMAPS, NUM_VOLHDRS, PBUFSIZE, VOLHDR_ZONE_BYTES, VOLUME_BYTES, ZONE_FREEMAP_00,
    ZONE_FREEMAP_END, ZONE_FREEMAP_INC, ZONE_SEG,
};
use std::ops::{Range, RangeInclusive};

/// The freemap's granule: two bits of a leaf describe 16 KiB.
pub const CHUNK_BYTES: u64 = FREEMAP_BLOCK_SIZE;
/// Mask of a byte's offset inside its chunk.
pub const CHUNK_MASK: u64 = CHUNK_BYTES - 1;
/// Chunks in one segment (one `bmap_data` entry: 8 words of 32 two-bit states).
pub const CHUNKS_PER_SEGMENT: usize = 256;
/// Chunks one 64-bit word of a `bmap_data` bitmap describes.
pub const CHUNKS_PER_WORD: usize = 32;
/// Bytes one leaf entry covers (4 MiB, level 0).
pub const SEGMENT_BYTES: u64 = 1 << FREEMAP_LEVEL0_RADIX;
/// Bytes one leaf covers (1 GiB, level 1): the freemap's zone, which starts
/// with a reserved segment. Not the volume layout's 2 GiB zone
/// ([`crate::format::VOLHDR_ZONE_BYTES`], the spacing of volume-header
/// copies).
pub const ZONE_BYTES: u64 = 1 << FREEMAP_LEVEL1_RADIX;
/// Entries in one leaf (segments per zone).
pub const SEGMENTS_PER_ZONE: usize = FREEMAP_COUNT;
/// Bytes reserved at the start of every zone (one segment).
pub const RESERVED_BYTES: u64 = ZONE_SEG;
/// Size of one slot of the reserved segment (a freemap block takes 32 KiB of it).
pub const SLOT_BYTES: u64 = PBUFSIZE;
/// Rotation sets of freemap blocks in a zone's reserved segment.
pub const ROTATIONS: u64 = NFREEMAPS;
/// Highest freemap level (nodes whose keys cover 2^62 bytes).
pub const TOP_LEVEL: u8 = 5;
/// Physical radix of every freemap node and leaf (32 KiB).
pub const MEDIA_RADIX: u8 = 15;

const _: () = assert!(SEGMENT_BYTES == ZONE_SEG && CHUNKS_PER_SEGMENT as u64 * CHUNK_BYTES == SEGMENT_BYTES);
const _: () = assert!(ZONE_FREEMAP_00 + ROTATIONS * ZONE_FREEMAP_INC == ZONE_FREEMAP_END);
const _: () = assert!(ZONE_FREEMAP_INC == TOP_LEVEL as u64);
const _: () = assert!(1 << MEDIA_RADIX == FREEMAP_LEVELN_PSIZE);
const _: () = assert!(CHUNKS_PER_WORD * 8 == CHUNKS_PER_SEGMENT);
const _: () = assert!(VOLHDR_ZONE_BYTES % ZONE_BYTES == 0);

/// Radix of the bytes one entry at `level` covers: 22 (a leaf entry, level
/// 0), 30 (a leaf), 38, 46, 54, 62 (nodes). `None` past level 5.
pub fn level_radix(level: u8) -> Option<u8> {
    (level <= TOP_LEVEL).then(|| FREEMAP_LEVEL0_RADIX + 8 * level)
}

/// The level (1 for a leaf, 2 to 5 for nodes) of a freemap blockref with
/// `keybits`; `None` for keybits no freemap block has.
pub fn level_of_keybits(keybits: u8) -> Option<u8> {
    let in_range = (FREEMAP_LEVEL1_RADIX..=FREEMAP_LEVEL5_RADIX).contains(&keybits);
    (in_range && (keybits - FREEMAP_LEVEL1_RADIX) % 8 == 0).then(|| (keybits - FREEMAP_LEVEL0_RADIX) / 8)
}

/// Start of the key range a level-`level` block keyed `key` covers.
pub fn level_base(level: u8, key: u64) -> Option<u64> {
    let radix = level_radix(level)?;
    Some(key & !((1u64 << radix) - 1))
}

/// The zone holding logical offset `off`.
pub fn zone_of(off: u64) -> u64 {
    off >> FREEMAP_LEVEL1_RADIX
}

/// First byte of `zone`; `None` past the 64-bit space.
pub fn zone_base(zone: u64) -> Option<u64> {
    zone.checked_mul(ZONE_BYTES)
}

/// The reserved segment at the start of `zone` (volume-header copy and
/// freemap blocks; never allocated from the bitmaps).
pub fn reserved_range(zone: u64) -> Option<Range<u64>> {
    let base = zone_base(zone)?;
    Some(base..base + RESERVED_BYTES)
}

/// Whether `off` lies in its zone's reserved segment.
pub fn in_reserved(off: u64) -> bool {
    off % ZONE_BYTES < RESERVED_BYTES
}

/// Index in its zone's leaf of the entry (segment) describing `off`.
pub fn segment_index(off: u64) -> usize {
    ((off % ZONE_BYTES) / SEGMENT_BYTES) as usize
}

/// Index in its segment's bitmap of the chunk holding `off`.
pub fn chunk_index(off: u64) -> usize {
    ((off % SEGMENT_BYTES) / CHUNK_BYTES) as usize
}

/// Chunk indexes (within its segment) that the `size` bytes at `rel`
/// (an offset inside the segment; `size` at least 1) touch.
pub fn chunks_touched(rel: u64, size: u64) -> RangeInclusive<usize> {
    (rel / CHUNK_BYTES) as usize..=((rel + size - 1) / CHUNK_BYTES) as usize
}

/// The zone whose reserved segment holds the blocks of a level-`level`
/// freemap block keyed `key`: where its key range starts.
pub fn home_zone(level: u8, key: u64) -> Option<u64> {
    level_base(level, key).map(zone_of)
}

/// Logical offset of the slot for a level-`level` freemap block (1 to 5) in
/// rotation set `rotation` (0 to 7) of `zone`'s reserved segment.
pub fn rotation_slot(level: u8, zone: u64, rotation: u64) -> Option<u64> {
    if !(1..=TOP_LEVEL).contains(&level) || rotation >= ROTATIONS {
        return None;
    }
    let block = ZONE_FREEMAP_00 + rotation * ZONE_FREEMAP_INC + u64::from(level - 1);
    zone_base(zone)?.checked_add(block * SLOT_BYTES)
}

/// A freemap slot of a reserved segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub zone: u64,
    /// Level (1 to 5) of the blocks this slot is for.
    pub level: u8,
    /// Rotation set (0 to 7).
    pub rotation: u64,
}

/// The freemap slot starting at `off`, if `off` is the start of one
/// ([`rotation_slot`] inverted).
pub fn slot_at(off: u64) -> Option<Slot> {
    let in_zone = off % ZONE_BYTES;
    let block = in_zone / SLOT_BYTES;
    if in_zone % SLOT_BYTES != 0 || !(ZONE_FREEMAP_00..ZONE_FREEMAP_END).contains(&block) {
        return None;
    }
    let n = block - ZONE_FREEMAP_00;
    Some(Slot { zone: zone_of(off), level: (n % ZONE_FREEMAP_INC) as u8 + 1, rotation: n / ZONE_FREEMAP_INC })
}

/// The rotation set a rewritten freemap block moves to: the set after the
/// one its current media occupies, wrapping; set 0 for a block with no media
/// yet (or media outside every slot).
pub fn next_rotation(current: Option<u64>) -> u64 {
    match current.and_then(slot_at) {
        Some(slot) => (slot.rotation + 1) % ROTATIONS,
        None => 0,
    }
}

/// Logical offsets of the volume-header copies of a volume at logical
/// offset `loff` holding `size` bytes: copy `n` sits `n * 2 GiB` into the
/// volume where a whole header fits, always in block 0 of a reserved segment.
pub fn header_copies(loff: u64, size: u64) -> impl Iterator<Item = u64> {
    (0..NUM_VOLHDRS as u64)
        .map(|n| n * VOLHDR_ZONE_BYTES)
        .filter(move |&at| at.checked_add(VOLUME_BYTES as u64).is_some_and(|end| end <= size))
        .filter_map(move |at| loff.checked_add(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_radixes() {
        assert_eq!(level_radix(0), Some(22));
        assert_eq!(level_radix(1), Some(30));
        assert_eq!(level_radix(5), Some(62));
        assert_eq!(level_radix(6), None);
        assert_eq!(level_of_keybits(30), Some(1));
        assert_eq!(level_of_keybits(62), Some(5));
        for bad in [0, 22, 29, 31, 37, 63, 64, 200] {
            assert_eq!(level_of_keybits(bad), None, "{bad}");
        }
        assert_eq!(level_base(2, (1 << 38) + 12345), Some(1 << 38));
        assert_eq!(home_zone(2, (3 << 38) + (5 << 30)), Some(3 << 8));
        assert_eq!(home_zone(5, u64::MAX), Some(zone_of(3 << 62)));
    }

    #[test]
    fn rotation_slots_round_trip() {
        // Facts the fixtures show: makefs put the zone-0 leaf at 0x10000
        // (block 1: rotation set 0, level 1).
        assert_eq!(rotation_slot(1, 0, 0), Some(0x10000));
        assert_eq!(rotation_slot(2, 0, 0), Some(0x20000));
        assert_eq!(rotation_slot(1, 0, 1), Some(6 * 0x10000));
        assert_eq!(rotation_slot(5, 3, 7), Some(3 * ZONE_BYTES + 40 * 0x10000));
        assert_eq!(rotation_slot(0, 0, 0), None);
        assert_eq!(rotation_slot(6, 0, 0), None);
        assert_eq!(rotation_slot(1, 0, 8), None);
        assert_eq!(rotation_slot(1, u64::MAX, 0), None, "no overflow");
        for zone in [0, 1, 9, (1 << 34) - 1] {
            for level in 1..=5 {
                for rotation in 0..8 {
                    let off = rotation_slot(level, zone, rotation).unwrap();
                    assert!(reserved_range(zone).unwrap().contains(&off));
                    assert_eq!(slot_at(off), Some(Slot { zone, level, rotation }));
                }
            }
        }
        assert_eq!(slot_at(0), None, "block 0 holds a header copy");
        assert_eq!(slot_at(41 * 0x10000), None);
        assert_eq!(slot_at(0x10000 + 0x8000), None, "not the start of a slot");
        assert_eq!(next_rotation(None), 0);
        assert_eq!(next_rotation(Some(0x10000)), 1);
        assert_eq!(next_rotation(rotation_slot(3, 2, 7)), 0);
        assert_eq!(next_rotation(Some(0x1234_0000)), 0);
    }

    #[test]
    fn zones_segments_chunks() {
        assert_eq!(zone_of(ZONE_BYTES - 1), 0);
        assert_eq!(zone_of(ZONE_BYTES), 1);
        assert_eq!(zone_base(1 << 34), None);
        assert_eq!(reserved_range(2), Some(2 * ZONE_BYTES..2 * ZONE_BYTES + (4 << 20)));
        assert!(in_reserved(ZONE_BYTES + RESERVED_BYTES - 1));
        assert!(!in_reserved(ZONE_BYTES + RESERVED_BYTES));
        let off = 5 * ZONE_BYTES + 7 * SEGMENT_BYTES + 9 * CHUNK_BYTES + 100;
        assert_eq!((segment_index(off), chunk_index(off)), (7, 9));
        assert_eq!(chunks_touched(CHUNK_BYTES - 1024, 1024), 0..=0);
        assert_eq!(chunks_touched(CHUNK_BYTES - 1024, 2048), 0..=1);
        assert_eq!(chunks_touched(4 * CHUNK_BYTES, 1 << 16), 4..=7);
    }

    #[test]
    fn header_copies_lie_in_reserved_segments() {
        // multivol: volume 1 of 2 GiB at 3 GiB holds one copy (at 3 GiB).
        assert_eq!(header_copies(3 << 30, 2 << 30).collect::<Vec<_>>(), vec![3 << 30]);
        assert_eq!(header_copies(0, 10 << 30).count(), 4);
        assert_eq!(header_copies(0, 1 << 30).count(), 1);
        assert_eq!(header_copies(u64::MAX - 10, u64::MAX).count(), 1, "no overflow");
        for at in header_copies(0, 10 << 30) {
            assert!(in_reserved(at) && slot_at(at).is_none());
        }
    }
}
