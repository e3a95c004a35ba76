//! Block codecs: LZ4 with HAMMER2's framing, zlib, and zero detection.
//!
//! An LZ4 block on media is a 4-byte little-endian length of the compressed
//! stream followed by the raw LZ4 block; the rest of the (power-of-two)
//! physical block is padding. A zlib block is an ordinary zlib stream
//! (header and Adler-32 trailer), likewise padded.

use std::io::{Read, Write};

/// Why a compressed block failed to decode (LZ4 with HAMMER2's framing, or zlib).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("lz4 length prefix {prefix} exceeds the {avail}-byte block")]
    Lz4Length { prefix: i64, avail: usize },
    #[error("lz4 stream does not decode: {0}")]
    Lz4(String),
    #[error("zlib stream does not decode: {0}")]
    Zlib(String),
    #[error("decoded {got} bytes, more than the {max}-byte logical block")]
    TooLong { got: usize, max: usize },
}

/// Decompresses a HAMMER2 LZ4 block into at most `max_out` bytes.
pub fn lz4_decompress(physical: &[u8], max_out: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; max_out];
    let n = lz4_decompress_into(physical, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// [`lz4_decompress`] into `out` (at most `out.len()` bytes); returns the
/// decoded length. For callers that decode many blocks into one buffer.
pub fn lz4_decompress_into(physical: &[u8], out: &mut [u8]) -> Result<usize, CodecError> {
    if physical.len() < 4 {
        return Err(CodecError::Lz4Length { prefix: -1, avail: physical.len() });
    }
    let prefix = i32::from_le_bytes(physical[0..4].try_into().unwrap());
    if prefix < 0 || prefix as usize > physical.len() - 4 {
        return Err(CodecError::Lz4Length { prefix: prefix.into(), avail: physical.len() - 4 });
    }
    let stream = &physical[4..4 + prefix as usize];
    lz4_flex::block::decompress_into(stream, out).map_err(|e| CodecError::Lz4(e.to_string()))
}

/// Compresses with LZ4 into HAMMER2's framing (unpadded).
pub fn lz4_compress(logical: &[u8]) -> Vec<u8> {
    let body = lz4_flex::block::compress(logical);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decompresses a zlib block into at most `max_out` bytes. Padding after the
/// stream's end is ignored.
pub fn zlib_decompress(physical: &[u8], max_out: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(max_out.min(1 << 16));
    let mut dec = flate2::read::ZlibDecoder::new(physical).take(max_out as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| CodecError::Zlib(e.to_string()))?;
    if out.len() > max_out {
        return Err(CodecError::TooLong { got: out.len(), max: max_out });
    }
    Ok(out)
}

/// Compresses with zlib at `level` (0-9; HAMMER2's default is 6).
pub fn zlib_compress(logical: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
    // OK to unwrap: writing into a Vec cannot fail.
    enc.write_all(logical).unwrap();
    enc.finish().unwrap()
}

/// True when a block is all zeros (stored as a ZERO/autozero blockref, no media).
pub fn is_zero_block(data: &[u8]) -> bool {
    let chunks = data.chunks_exact(8);
    let tail_zero = chunks.remainder().iter().all(|&b| b == 0);
    tail_zero && chunks.into_iter().all(|c| u64::from_ne_bytes(c.try_into().unwrap()) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_round_trip_with_padding() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut framed = lz4_compress(&data);
        framed.resize(framed.len().next_power_of_two(), 0);
        assert_eq!(lz4_decompress(&framed, 65536).unwrap(), data);
    }

    #[test]
    fn zlib_round_trip_with_padding() {
        let data = b"hammer2 ".repeat(4096);
        let mut z = zlib_compress(&data, 6);
        z.resize(z.len().next_power_of_two(), 0);
        assert_eq!(zlib_decompress(&z, data.len()).unwrap(), data);
    }

    #[test]
    fn hostile_inputs_are_errors() {
        assert!(lz4_decompress(&[0xff, 0xff, 0xff, 0x7f, 0, 0], 1024).is_err());
        assert!(lz4_decompress(&[1, 0], 1024).is_err());
        assert!(zlib_decompress(&[0x78, 0x9c, 0xff, 0xff], 1024).is_err());
        let big = zlib_compress(&vec![0u8; 8192], 6);
        assert!(matches!(zlib_decompress(&big, 4096), Err(CodecError::TooLong { .. })));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero_block(&[0u8; 16385]));
        let mut d = vec![0u8; 16385];
        d[16384] = 1;
        assert!(!is_zero_block(&d));
    }
}
