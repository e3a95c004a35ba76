//! The freemap, read side: its geometry and what its leaves say.
//!
//! HAMMER2 tracks space in a radix tree of its own, keyed by logical offset:
//! level-1 *leaves*, one per 1 GiB *zone*, hold 256 `bmap_data` entries of
//! 4 MiB, each a bitmap of two bits per 16 KiB *chunk* (00 free, 01
//! reserved, 10 possibly free, 11 allocated) with an `avail` byte count;
//! nodes at levels 2 to 5 hold blockrefs to the level below. A zone that
//! has no leaf was never allocated from.
//!
//! - [`layout`]: pure geometry: zones, segments and chunks of an offset,
//!   each zone's reserved 4 MiB segment and the 8 rotation sets of 5 freemap
//!   blocks in it ([`rotation_slot`], [`slot_at`], [`next_rotation`]),
//!   level radixes, volume-header copies. The allocator places freemap
//!   blocks with these; fsck checks their placement with the same ones.
//! - [`account`]: the two-bit chunk states of a leaf ([`Leaf`],
//!   [`chunk_state`]), the fixed areas from the header ([`Areas`]: what
//!   `hammer2_freemap_init` marks allocated when it creates a leaf, what must
//!   never be free, what newfs counted in `allocator_free`), a per-zone table
//!   ([`Zones`]) and the free-space [`Totals`] against `allocator_free`.
//!
//! - [`alloc`]: the write side, the allocator of the write engine.
//! - [`replay`]: the mount-time recovery's scan, marking in an allocator
//!   every block newer than the freemap (a lagging freemap).
//!
//! Finding the leaves (walking the freemap tree and verifying its blocks)
//! is left to callers, which do it with their own checks: fsck
//! ([`crate::fsck::freemap`]) and the dump ([`crate::dump::freemap`]) both
//! account through this module. Nothing here does I/O; header values are
//! used as found and every computation on them is checked or saturating.

pub mod account;
pub mod layout;

pub use account::{
    chunk_state, entry_chunk_state, entry_free_chunks, Areas, ChunkState, Leaf, LeafCounts, Totals, ZoneMap,
    Zones,
};
pub use layout::{
    chunk_index, header_copies, home_zone, in_reserved, level_base, level_of_keybits, level_radix,
    next_rotation, reserved_range, rotation_slot, segment_index, slot_at, zone_base, zone_of, Slot,
    CHUNKS_PER_SEGMENT, CHUNK_BYTES, RESERVED_BYTES, ROTATIONS, SEGMENTS_PER_ZONE, SEGMENT_BYTES, SLOT_BYTES,
    TOP_LEVEL, ZONE_BYTES,
};
