//! The 128-byte blockref: the edge of HAMMER2's media tree.

use super::types::{BlockrefType, CheckMethod, CompMethod};
use super::{OFF_MASK, OFF_MASK_RADIX};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// One blockref (`hammer2_blockref_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Blockref {
    pub type_: u8,
    pub methods: u8,
    pub copyid: u8,
    pub keybits: u8,
    pub vradix: u8,
    pub flags: u8,
    pub leaf_count: U16,
    pub key: U64,
    pub mirror_tid: U64,
    pub modify_tid: U64,
    pub data_off: U64,
    pub update_tid: U64,
    /// Dirent header (DIRENT) or statistics (INODE, INDIRECT).
    pub embed: [u8; 16],
    /// Check code, or the name of a DIRENT whose name fits in 64 bytes,
    /// or the freemap hints of FREEMAP_NODE/LEAF blockrefs.
    pub check: [u8; 64],
}

/// The dirent header carried in `embed` of a DIRENT blockref.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct DirentHead {
    pub inum: U64,
    pub namlen: U16,
    pub type_: u8,
    pub unused0b: u8,
    pub unused0c: [u8; 4],
}

/// Statistics carried in `embed` of INODE and INDIRECT blockrefs.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockrefStats {
    pub data_count: U64,
    pub inode_count: U64,
}

/// Freemap hints carried in `check` of freemap blockrefs.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct FreemapCheck {
    pub icrc32: U32,
    pub bigmask: U32,
    pub avail: U64,
    pub reserved: [u8; 48],
}

impl Blockref {
    /// An all-zero (EMPTY) blockref.
    pub fn zeroed() -> Self {
        <Self as zerocopy::FromZeros>::new_zeroed()
    }

    pub fn kind(&self) -> BlockrefType {
        BlockrefType::from(self.type_)
    }

    pub fn check_method(&self) -> CheckMethod {
        CheckMethod::from(self.methods >> 4)
    }

    pub fn comp_method(&self) -> CompMethod {
        CompMethod::from(self.methods & 15)
    }

    /// Byte offset of the media (logical offset across volumes), radix masked off.
    pub fn offset(&self) -> u64 {
        self.data_off.get() & OFF_MASK
    }

    /// Radix of the physical size; 0 means the blockref has no media.
    pub fn radix(&self) -> u8 {
        (self.data_off.get() & OFF_MASK_RADIX) as u8
    }

    /// Physical size of the media in bytes (0 when there is none). Radixes
    /// past 63 cannot occur (6-bit field).
    pub fn physical_size(&self) -> u64 {
        match self.radix() {
            0 => 0,
            r => 1u64 << r,
        }
    }

    /// Last key this blockref covers (`key + 2^keybits - 1`), saturating for
    /// absurd keybits instead of overflowing.
    pub fn key_end(&self) -> u64 {
        let key = self.key.get();
        match self.keybits {
            0 => key,
            k if k >= 64 => u64::MAX,
            k => key.saturating_add((1u64 << k) - 1),
        }
    }

    pub fn dirent(&self) -> &DirentHead {
        // OK to unwrap: DirentHead is exactly 16 unaligned bytes.
        DirentHead::ref_from_bytes(&self.embed).unwrap()
    }

    pub fn dirent_mut(&mut self) -> &mut DirentHead {
        DirentHead::mut_from_bytes(&mut self.embed).unwrap()
    }

    pub fn stats(&self) -> &BlockrefStats {
        BlockrefStats::ref_from_bytes(&self.embed).unwrap()
    }

    pub fn stats_mut(&mut self) -> &mut BlockrefStats {
        BlockrefStats::mut_from_bytes(&mut self.embed).unwrap()
    }

    pub fn freemap_check(&self) -> &FreemapCheck {
        FreemapCheck::ref_from_bytes(&self.check).unwrap()
    }

    pub fn freemap_check_mut(&mut self) -> &mut FreemapCheck {
        FreemapCheck::mut_from_bytes(&mut self.check).unwrap()
    }

    /// Views a byte slice as a table of blockrefs (an indirect block, a
    /// freemap node, a blockset). Trailing bytes short of a blockref are ignored.
    pub fn table(bytes: &[u8]) -> &[Blockref] {
        let whole = bytes.len() / super::BLOCKREF_BYTES * super::BLOCKREF_BYTES;
        // OK to unwrap: the length is a multiple of the element size and the
        // element type is unaligned.
        <[Blockref]>::ref_from_bytes(&bytes[..whole]).unwrap()
    }

    pub fn table_mut(bytes: &mut [u8]) -> &mut [Blockref] {
        let whole = bytes.len() / super::BLOCKREF_BYTES * super::BLOCKREF_BYTES;
        <[Blockref]>::mut_from_bytes(&mut bytes[..whole]).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_hammer2_disk_h() {
        assert_eq!(std::mem::size_of::<Blockref>(), 128);
        assert_eq!(std::mem::size_of::<DirentHead>(), 16);
        assert_eq!(std::mem::size_of::<BlockrefStats>(), 16);
        assert_eq!(std::mem::size_of::<FreemapCheck>(), 64);
        assert_eq!(std::mem::offset_of!(Blockref, data_off), 0x20);
        assert_eq!(std::mem::offset_of!(Blockref, embed), 0x30);
        assert_eq!(std::mem::offset_of!(Blockref, check), 0x40);
    }

    #[test]
    fn data_off_splits_into_offset_and_radix() {
        let mut b = Blockref::zeroed();
        b.data_off = (0x1234_0000u64 | 10).into();
        assert_eq!(b.offset(), 0x1234_0000);
        assert_eq!(b.radix(), 10);
        assert_eq!(b.physical_size(), 1024);
        b.key = u64::MAX.into();
        b.keybits = 64;
        assert_eq!(b.key_end(), u64::MAX);
    }
}
