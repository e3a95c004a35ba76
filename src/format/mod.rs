//! HAMMER2 on-disk format: constants, type codes and zero-copy little-endian
//! views of every media structure (hammer2_disk.h is the reference; the
//! fixtures are the ground truth).
//!
//! Every structure is `#[repr(C)]` over byte-aligned little-endian field types,
//! so a view can be taken of any byte slice (mapped or not) without `unsafe`
//! and without alignment requirements. HAMMER2 media is written in the host
//! order of the writer; all known writers are little-endian, and a volume
//! whose magic reads byte-reversed is reported as such rather than decoded.
//!
//! The CRC-32C HAMMER2 calls `icrc32` lives here, at the bottom: the volume
//! header's three CRCs are part of its layout (which bytes each covers, in
//! which order they are sealed), so the format computes them itself.
//! [`crate::format::check`] sits above and verifies blockref check codes over media
//! with the same function.

mod blockref;
pub mod check;
pub mod compress;
pub mod dirhash;
mod freemap;
mod inode;
pub mod time;
mod types;
mod volume;

pub use blockref::{Blockref, BlockrefStats, DirentHead};
pub use freemap::BmapData;
pub use inode::{InodeData, InodeMeta};
pub use types::{encode_methods, BlockrefType, CheckMethod, CompMethod, ObjType, PfsSubtype, PfsType};
pub use volume::{VolumeData, VOLUME_ID_ABO, VOLUME_ID_HBO};

/// Minimum allocation size (1 KiB, radix 10).
pub const RADIX_MIN: u8 = 10;
/// Maximum allocation size (64 KiB, radix 16).
pub const RADIX_MAX: u8 = 16;
/// Physical buffer size: the largest block HAMMER2 allocates.
pub const PBUFSIZE: u64 = 65536;
/// Logical buffer size (nominal file block size).
pub const LBUFSIZE: u64 = 16384;
/// Bytes in one blockref.
pub const BLOCKREF_BYTES: usize = 128;
/// Blockrefs in an inode's (or the volume header's) blockset.
pub const SET_COUNT: usize = 4;
/// Bytes of direct data an inode can embed.
pub const EMBEDDED_BYTES: usize = 512;
/// Bytes in one inode.
pub const INODE_BYTES: usize = 1024;
/// Longest file name.
pub const INODE_MAXNAME: usize = 256;
/// Bytes in a volume header.
pub const VOLUME_BYTES: usize = 65536;
/// Copies of the volume header (one at the start of each of the first four zones).
pub const NUM_VOLHDRS: usize = 4;
/// Most volumes in one file system.
pub const MAX_VOLUMES: usize = 64;
/// Volume id of the root volume (the one holding the super-root).
pub const ROOT_VOLUME: u8 = 0;
/// First volume-header version that supports several volumes.
pub const VOL_VERSION_MULTI_VOLUMES: u32 = 2;
/// Oldest supported volume-header version.
pub const VOL_VERSION_MIN: u32 = 1;
/// Version newfs writes by default.
pub const VOL_VERSION_DEFAULT: u32 = VOL_VERSION_MULTI_VOLUMES;
/// First version that is work in progress (not accepted).
pub const VOL_VERSION_WIP: u32 = VOL_VERSION_MULTI_VOLUMES + 1;

/// Spacing of the volume-header copies (`HAMMER2_ZONE_BYTES64`): the
/// volume layout's 2 GiB zones, the first four of which start with a copy.
/// Not the freemap's 1 GiB zone ([`crate::freemap::ZONE_BYTES`], what one
/// level-1 leaf covers).
pub const VOLHDR_ZONE_BYTES: u64 = 2 << 30;
/// Reserved segment at the start of every 1 GiB freemap zone (level-1 boundary).
pub const ZONE_SEG: u64 = 4 << 20;
/// 64 KiB blocks in the reserved segment.
pub const ZONE_BLOCKS_SEG: u64 = ZONE_SEG / PBUFSIZE;
/// First block of the eight freemap rotation sets (5 blocks each).
pub const ZONE_FREEMAP_00: u64 = 1;
/// Blocks per freemap rotation set (levels 1 to 5).
pub const ZONE_FREEMAP_INC: u64 = 5;
/// Number of freemap rotation sets.
pub const NFREEMAPS: u64 = 8;
/// Block after the last freemap rotation set.
pub const ZONE_FREEMAP_END: u64 = 41;
/// Alignment of volume sizes and of the boot/aux areas (8 MiB).
pub const VOLUME_ALIGN: u64 = 8 << 20;

/// Boot area: minimum, nominal and maximum sizes.
pub const BOOT_MIN_BYTES: u64 = VOLUME_ALIGN;
pub const BOOT_NOM_BYTES: u64 = 64 << 20;
pub const BOOT_MAX_BYTES: u64 = 256 << 20;
/// Aux area: minimum, nominal and maximum sizes.
pub const AUX_MIN_BYTES: u64 = VOLUME_ALIGN;
pub const AUX_NOM_BYTES: u64 = 256 << 20;
pub const AUX_MAX_BYTES: u64 = 1 << 30;

/// Freemap radixes: what one entry at each level covers.
pub const FREEMAP_LEVEL0_RADIX: u8 = 22;
pub const FREEMAP_LEVEL1_RADIX: u8 = 30;
pub const FREEMAP_LEVEL2_RADIX: u8 = 38;
pub const FREEMAP_LEVEL3_RADIX: u8 = 46;
pub const FREEMAP_LEVEL4_RADIX: u8 = 54;
pub const FREEMAP_LEVEL5_RADIX: u8 = 62;
/// Physical size of a freemap node or leaf.
pub const FREEMAP_LEVELN_PSIZE: usize = 32768;
/// Entries in a freemap node or leaf.
pub const FREEMAP_COUNT: usize = FREEMAP_LEVELN_PSIZE / 128;
/// Freemap granularity: two bits per 16 KiB block.
pub const FREEMAP_BLOCK_RADIX: u8 = 14;
pub const FREEMAP_BLOCK_SIZE: u64 = 1 << FREEMAP_BLOCK_RADIX;

/// Low 6 bits of `data_off` hold the radix of the physical size.
pub const OFF_MASK: u64 = !0x3f;
pub const OFF_MASK_RADIX: u64 = 0x3f;

/// Directory hash: bit 63 set on every visible name, low 15 bits for iteration.
pub const DIRHASH_VISIBLE: u64 = 0x8000_0000_0000_0000;
pub const DIRHASH_LOMASK: u64 = 0x7fff;

/// Inode `op_flags`.
pub const OPFLAG_DIRECTDATA: u8 = 0x01;
pub const OPFLAG_PFSROOT: u8 = 0x02;
pub const OPFLAG_COPYIDS: u8 = 0x04;
/// Blockref `flags`.
pub const BREF_FLAG_PFSROOT: u8 = 0x01;

/// xxhash64 seed HAMMER2 uses for its check code ("MattDlln").
pub const XXH_HAMMER2_SEED: u64 = 0x4d61_7474_446c_6c6e;

/// HAMMER2's fstype UUID (5cbb9ad1-862d-11dc-a94d-01301bb8a9f5).
pub const FSTYPE_UUID: &str = "5cbb9ad1-862d-11dc-a94d-01301bb8a9f5";

/// HAMMER2's 32-bit iSCSI CRC (`hammer2_icrc32`): standard CRC-32C
/// (Castagnoli; initial value and final xor all ones), as every header and
/// every iscsi32/freemap check code of the fixtures confirms.
pub fn icrc32(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Byte offset of volume-header copy `n` inside a volume (saturating: only
/// `n < NUM_VOLHDRS` is meaningful).
pub fn volhdr_offset(n: usize) -> u64 {
    (n as u64).saturating_mul(VOLHDR_ZONE_BYTES)
}

/// Decodes a 16-byte on-disk UUID (`uuid_t` in the writer's order: the first
/// three fields little-endian) for display.
pub fn uuid_from_disk(bytes: &[u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes_le(*bytes)
}

/// The Unix uid/gid a HAMMER2 uid/gid UUID carries: a u32 at `node[2]`,
/// i.e. bytes 12..16 of the on-disk `uuid_t` (DragonFly's `hammer2_to_unix_xid`).
pub fn unix_xid(raw: &[u8; 16]) -> u32 {
    u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]])
}

/// Encodes a UUID into its on-disk form.
pub fn uuid_to_disk(id: &uuid::Uuid) -> [u8; 16] {
    id.to_bytes_le()
}
