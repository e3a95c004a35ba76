//! The directory hash: file name -> 64-bit directory key.
//!
//! The name is cut at '.', '-', '_' and '~'; the CRC-32C of each piece is
//! summed into the high 32 bits (bit 63 forced on), a CRC of the whole name
//! folded onto itself fills bits 16..31, and bit 15 is set so the low 15 bits
//! stay free for iteration cookies.

use crate::format::check::icrc32;

pub fn dirhash(name: &[u8]) -> u64 {
    let pieces: u32 = name
        .split(|c| matches!(c, b'.' | b'-' | b'_' | b'~'))
        .filter(|p| !p.is_empty())
        .fold(0u32, |acc, p| acc.wrapping_add(icrc32(p)));
    let high = u64::from(pieces | 0x8000_0000) << 32;
    let whole = icrc32(name);
    let low = u64::from((whole ^ (whole << 16)) & 0xffff_0000);
    high | low | 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_has_visible_and_iteration_bits() {
        let k = dirhash(b"hello.txt");
        assert_ne!(k & crate::format::DIRHASH_VISIBLE, 0);
        assert_eq!(k & 0xffff, 0x8000);
        // Separators only split; they do not contribute to the high word.
        assert_eq!(dirhash(b"a.b") >> 32, dirhash(b"a-b") >> 32);
        assert_ne!(dirhash(b"a.b"), dirhash(b"a-b"));
    }
}
