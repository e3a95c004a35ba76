//! The freemap: its geometry, its fixed areas and its leaf model.
//!
//! HAMMER2 tracks space in a radix tree of its own, keyed by logical offset:
//! level-1 *leaves*, one per 1 GiB *zone*, hold 256 `bmap_data` entries of
//! 4 MiB, each a bitmap of two bits per 16 KiB *chunk* (00 free, 01
//! reserved, 10 possibly free, 11 allocated) with an `avail` byte count;
//! nodes at levels 2 to 5 hold blockrefs to the level below. A zone that
//! has no leaf was never allocated from.
//!
//! One model of the freemap, used by every part that reads or writes it:
//! the allocator ([`crate::write::alloc`], which builds new leaves and
//! changes entries only through this module), fsck
//! ([`crate::fsck::freemap`]), the dump ([`crate::dump::freemap`]) and the
//! recovery replay ([`crate::write::alloc::replay`]).
//!
//! - [`layout`]: the constants (chunk, segment, zone, level radixes,
//!   rotation slots: defined once, from `hammer2_disk.h`'s in
//!   [`crate::format`]) and pure geometry: zones, segments and chunks of an
//!   offset, each zone's reserved 4 MiB segment and the 8 rotation sets of
//!   5 freemap blocks in it ([`rotation_slot`], [`slot_at`],
//!   [`next_rotation`]), level radixes, volume-header copies.
//! - [`areas`]: the fixed areas from the header ([`Areas`]: what
//!   `hammer2_freemap_init` marks allocated when it creates a leaf, what
//!   must never be free, what newfs counted in `allocator_free`, which
//!   segments the allocator may use).
//! - [`leaf`]: the leaf model: the two-bit [`ChunkState`] of a chunk, the
//!   only code that decodes or encodes a `bmap_data` entry, a read-only
//!   [`Leaf`] view, a new leaf ([`init_leaf`]) and its hints.
//! - [`account`]: a per-zone table ([`Zones`]) and the free-space
//!   [`Totals`] against `allocator_free`.
//!
//! Finding the leaves (walking the freemap tree and verifying its blocks)
//! is left to callers, which do it with their own checks. Nothing here does
//! I/O; header values are used as found and every computation on them is
//! checked or saturating.

pub mod account;
pub mod areas;
pub mod layout;
pub mod leaf;

pub use account::{Totals, ZoneMap, Zones};
pub use areas::Areas;
pub use layout::{
    chunk_index, chunks_touched, header_copies, home_zone, in_reserved, level_base, level_of_keybits,
    level_radix, next_rotation, reserved_range, rotation_slot, segment_index, slot_at, zone_base, zone_of,
    Slot, CHUNKS_PER_SEGMENT, CHUNKS_PER_WORD, CHUNK_BYTES, CHUNK_MASK, MEDIA_RADIX, RESERVED_BYTES,
    ROTATIONS, SEGMENTS_PER_ZONE, SEGMENT_BYTES, SLOT_BYTES, TOP_LEVEL, ZONE_BYTES,
};
pub use leaf::{
    change_chunk, class_of, clear_entry, entry_bigmask, entry_chunk_state, entry_free_chunks, entry_linear,
    fill_entry, free_runs, init_leaf, is_filled, set_entry_chunk_state, ChunkState, Leaf, LeafCounts,
    CLASS_RADIX,
};
