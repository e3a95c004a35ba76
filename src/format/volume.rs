//! The 64 KiB volume header (`hammer2_volume_data_t`) and its three CRCs.

use super::blockref::Blockref;
use super::{MAX_VOLUMES, SET_COUNT};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Magic in the writer's byte order as a little-endian reader sees it.
pub const VOLUME_ID_HBO: u64 = 0x4841_4d32_0517_2011;
/// The same magic written by a big-endian host.
pub const VOLUME_ID_ABO: u64 = 0x1120_1705_324d_4148;

/// Index into `icrc_sects` of the CRC over sector 0 (bytes 0..508).
pub const ICRC_SECT0: usize = 7;
/// Index into `icrc_sects` of the CRC over sector 1 (the super-root blockset).
pub const ICRC_SECT1: usize = 6;

/// The volume header.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct VolumeData {
    pub magic: U64,
    pub boot_beg: U64,
    pub boot_end: U64,
    pub aux_beg: U64,
    pub aux_end: U64,
    pub volu_size: U64,
    pub version: U32,
    pub flags: U32,
    pub copyid: u8,
    pub freemap_version: u8,
    pub peer_type: u8,
    pub volu_id: u8,
    pub nvolumes: u8,
    pub reserved003d: u8,
    pub reserved003e: U16,
    pub fsid: [u8; 16],
    pub fstype: [u8; 16],
    pub allocator_size: U64,
    pub allocator_free: U64,
    pub allocator_beg: U64,
    pub mirror_tid: U64,
    pub reserved0080: U64,
    pub reserved0088: U64,
    pub freemap_tid: U64,
    pub bulkfree_tid: U64,
    pub reserved00a0: [U64; 4],
    /// Size of the whole file system (all volumes); 0 on version-1 media.
    pub total_size: U64,
    pub copyexists: [U32; 8],
    pub reserved00e8: [u8; 248],
    pub icrc_sects: [U32; 8],
    pub sroot_blockset: [Blockref; SET_COUNT],
    pub sector2: [u8; 512],
    pub sector3: [u8; 512],
    pub freemap_blockset: [Blockref; SET_COUNT],
    pub sector5: [u8; 512],
    pub sector6: [u8; 512],
    /// Logical start offset of each volume of the set.
    pub volu_loff: [U64; MAX_VOLUMES],
    /// Cluster copy configuration (unused by the toolkit; kept verbatim).
    pub copyinfo: [[u8; 128]; 256],
    pub reserved9000: [u8; 0x6ffc],
    pub icrc_volheader: U32,
}

/// The CRCs a header carries and what they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderCrcs {
    pub sect0: u32,
    pub sect1: u32,
    pub whole: u32,
}

impl VolumeData {
    /// Views the first 64 KiB of `bytes` as a volume header.
    pub fn from_bytes(bytes: &[u8]) -> Option<&VolumeData> {
        VolumeData::ref_from_prefix(bytes).ok().map(|(v, _)| v)
    }

    /// A zeroed header, boxed (64 KiB is too large for comfortable stack use).
    pub fn new_boxed() -> Box<VolumeData> {
        // OK to unwrap: the buffer has exactly the header's size.
        let bytes = vec![0u8; super::VOLUME_BYTES].into_boxed_slice();
        let v = VolumeData::read_from_bytes(&bytes).unwrap();
        Box::new(v)
    }

    /// CRCs computed over this header's bytes.
    pub fn computed_crcs(&self) -> HeaderCrcs {
        let b = self.as_bytes();
        HeaderCrcs {
            sect0: super::icrc32(&b[0..508]),
            sect1: super::icrc32(&b[512..1024]),
            whole: super::icrc32(&b[0..super::VOLUME_BYTES - 4]),
        }
    }

    /// CRCs stored in this header.
    pub fn stored_crcs(&self) -> HeaderCrcs {
        HeaderCrcs {
            sect0: self.icrc_sects[ICRC_SECT0].get(),
            sect1: self.icrc_sects[ICRC_SECT1].get(),
            whole: self.icrc_volheader.get(),
        }
    }

    /// Recomputes and stores all three CRCs, in the order their coverage
    /// requires: sector 1 first (its CRC lives in sector 0), then sector 0,
    /// then the whole header (which covers both).
    pub fn update_crcs(&mut self) {
        let s1 = super::icrc32(&self.as_bytes()[512..1024]);
        self.icrc_sects[ICRC_SECT1] = s1.into();
        let s0 = super::icrc32(&self.as_bytes()[0..508]);
        self.icrc_sects[ICRC_SECT0] = s0.into();
        let whole = super::icrc32(&self.as_bytes()[0..super::VOLUME_BYTES - 4]);
        self.icrc_volheader = whole.into();
    }

    pub fn fsid_uuid(&self) -> uuid::Uuid {
        super::uuid_from_disk(&self.fsid)
    }

    pub fn fstype_uuid(&self) -> uuid::Uuid {
        super::uuid_from_disk(&self.fstype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_hammer2_disk_h() {
        assert_eq!(std::mem::size_of::<VolumeData>(), 65536);
        assert_eq!(offset_of!(VolumeData, volu_size), 0x28);
        assert_eq!(offset_of!(VolumeData, version), 0x30);
        assert_eq!(offset_of!(VolumeData, nvolumes), 0x3c);
        assert_eq!(offset_of!(VolumeData, fsid), 0x40);
        assert_eq!(offset_of!(VolumeData, allocator_size), 0x60);
        assert_eq!(offset_of!(VolumeData, mirror_tid), 0x78);
        assert_eq!(offset_of!(VolumeData, freemap_tid), 0x90);
        assert_eq!(offset_of!(VolumeData, total_size), 0xc0);
        assert_eq!(offset_of!(VolumeData, copyexists), 0xc8);
        assert_eq!(offset_of!(VolumeData, icrc_sects), 0x1e0);
        assert_eq!(offset_of!(VolumeData, sroot_blockset), 0x200);
        assert_eq!(offset_of!(VolumeData, freemap_blockset), 0x800);
        assert_eq!(offset_of!(VolumeData, volu_loff), 0xe00);
        assert_eq!(offset_of!(VolumeData, copyinfo), 0x1000);
        assert_eq!(offset_of!(VolumeData, reserved9000), 0x9000);
        assert_eq!(offset_of!(VolumeData, icrc_volheader), 0xfffc);
    }

    #[test]
    fn update_crcs_makes_stored_equal_computed() {
        let mut v = VolumeData::new_boxed();
        v.magic = VOLUME_ID_HBO.into();
        v.mirror_tid = 7.into();
        v.update_crcs();
        assert_eq!(v.stored_crcs(), v.computed_crcs());
        v.mirror_tid = 8.into();
        assert_ne!(v.stored_crcs().sect0, v.computed_crcs().sect0);
    }
}
