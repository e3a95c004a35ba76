//! Freemap leaves: 256 `bmap_data` entries of 128 bytes, each managing 4 MiB
//! with two bits per 16 KiB block (00 free, 01 reserved, 10 possibly free,
//! 11 allocated).

use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `hammer2_bmap_data_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BmapData {
    /// Byte offset of sub-16 KiB linear allocation inside the 4 MiB segment.
    pub linear: I32,
    /// Clustering class: `(blockref type << 8) | radix`.
    pub class: U16,
    pub reserved06: u8,
    pub reserved07: u8,
    pub reserved08: U32,
    pub reserved0c: U32,
    pub reserved10: U32,
    pub reserved14: U32,
    pub reserved18: U32,
    /// Free bytes in this segment.
    pub avail: U32,
    pub reserved20: [U32; 8],
    /// 8 x 64 bits: 256 blocks of 16 KiB, 2 bits each.
    pub bitmapq: [U64; 8],
}

impl BmapData {
    /// Views a freemap leaf as its 256 entries (fewer if the slice is short).
    pub fn table(bytes: &[u8]) -> &[BmapData] {
        let whole = bytes.len() / 128 * 128;
        // OK to unwrap: multiple of the element size, unaligned element type.
        <[BmapData]>::ref_from_bytes(&bytes[..whole]).unwrap()
    }

    pub fn table_mut(bytes: &mut [u8]) -> &mut [BmapData] {
        let whole = bytes.len() / 128 * 128;
        <[BmapData]>::mut_from_bytes(&mut bytes[..whole]).unwrap()
    }

    /// The two-bit state of 16 KiB block `n` (0..256) of this segment.
    pub fn block_state(&self, n: usize) -> u8 {
        let word = self.bitmapq[n / 32].get();
        ((word >> ((n % 32) * 2)) & 3) as u8
    }

    /// Sets the two-bit state of 16 KiB block `n`.
    pub fn set_block_state(&mut self, n: usize, state: u8) {
        let shift = (n % 32) * 2;
        let word = self.bitmapq[n / 32].get();
        let word = (word & !(3u64 << shift)) | (u64::from(state & 3) << shift);
        self.bitmapq[n / 32] = word.into();
    }

    /// Number of 16 KiB blocks not marked free.
    pub fn blocks_in_use(&self) -> u32 {
        (0..256).filter(|&n| self.block_state(n) != 0).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hammer2_disk_h() {
        assert_eq!(std::mem::size_of::<BmapData>(), 128);
        assert_eq!(std::mem::offset_of!(BmapData, avail), 0x1c);
        assert_eq!(std::mem::offset_of!(BmapData, bitmapq), 0x40);
    }

    #[test]
    fn block_states_are_two_bits_each() {
        let mut b: BmapData = zerocopy::FromZeros::new_zeroed();
        b.set_block_state(0, 3);
        b.set_block_state(33, 2);
        assert_eq!(b.bitmapq[0].get(), 3);
        assert_eq!(b.bitmapq[1].get(), 2 << 2);
        assert_eq!(b.block_state(33), 2);
        assert_eq!(b.blocks_in_use(), 2);
    }
}
