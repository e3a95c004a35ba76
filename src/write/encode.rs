//! Data blocks as HAMMER2 stores them: logical block sizes
//! (`hammer2_calc_logical`), compression when it pays
//! (`hammer2_compress_and_write`'s rule), and a DATA blockref with its
//! check code. Pure functions: the import's worker threads call them.

use crate::format::check::set_check;
use crate::format::compress;
use crate::format::{encode_methods, Blockref, BlockrefType, CheckMethod, CompMethod, PBUFSIZE};
use std::borrow::Cow;

/// The DATA blockref (check code included, no allocation yet) and media of
/// one logical block of a file: compressed as `comp` says when that pays
/// ([`super::encode_block`]). Pure: worker threads call it.
pub fn encode_data_block(
    key: u64,
    keybits: u8,
    block: Cow<'_, [u8]>,
    methods: (CompMethod, u32, CheckMethod),
) -> (Blockref, Vec<u8>) {
    match block {
        Cow::Owned(block) => {
            let (bref, media, _) = encode_owned_block(key, keybits, block, methods);
            (bref, media)
        }
        Cow::Borrowed(block) => {
            let (media, used) = encode_compressed(block, methods.0, methods.1)
                .unwrap_or_else(|| (block.to_vec(), CompMethod::None));
            (data_bref(key, keybits, methods.2, used, &media), media)
        }
    }
}

/// [`encode_data_block`] of a block in a buffer of its own: stored raw,
/// the buffer becomes the media without a copy; compressed, the buffer is
/// handed back (the third value) for the caller to reuse.
pub fn encode_owned_block(
    key: u64,
    keybits: u8,
    block: Vec<u8>,
    (comp, level, check): (CompMethod, u32, CheckMethod),
) -> (Blockref, Vec<u8>, Option<Vec<u8>>) {
    match encode_compressed(&block, comp, level) {
        Some((media, used)) => (data_bref(key, keybits, check, used, &media), media, Some(block)),
        None => (data_bref(key, keybits, check, CompMethod::None, &block), block, None),
    }
}

/// A DATA blockref for `media`, with its check code.
fn data_bref(key: u64, keybits: u8, check: CheckMethod, used: CompMethod, media: &[u8]) -> Blockref {
    let mut bref = Blockref::zeroed();
    bref.type_ = BlockrefType::Data.into();
    bref.key = key.into();
    bref.keybits = keybits;
    bref.methods = encode_methods(check, used);
    set_check(&mut bref, media);
    bref
}

/// Logical size and keybits of the block at `off` of a file of `size`
/// bytes (`hammer2_calc_logical`): 64 KiB, except the last block, the
/// smallest power of two of at least 1 KiB holding the tail.
pub fn logical_block(size: u64, off: u64) -> (usize, u8) {
    let base = off & !(PBUFSIZE - 1);
    let eof_base = size & !(PBUFSIZE - 1);
    if base < eof_base {
        return (PBUFSIZE as usize, 16);
    }
    let tail = (size - eof_base).max(1);
    let radix = (64 - (tail - 1).leading_zeros()).max(10) as u8;
    (1usize << radix, radix)
}

/// The media of a logical block and the compression actually used.
pub fn encode_block(block: &[u8], comp: CompMethod, level: u32) -> (Vec<u8>, CompMethod) {
    encode_compressed(block, comp, level).unwrap_or_else(|| (block.to_vec(), CompMethod::None))
}

/// The compressed media of a logical block, when compressing pays.
fn encode_compressed(block: &[u8], comp: CompMethod, level: u32) -> Option<(Vec<u8>, CompMethod)> {
    let packed = match comp {
        CompMethod::Lz4 => Some(compress::lz4_compress(block)),
        CompMethod::Zlib => Some(compress::zlib_compress(block, if level == 0 { 6 } else { level })),
        _ => None,
    };
    if let Some(p) = packed.filter(|p| p.len() <= block.len() / 2) {
        let phys = p.len().next_power_of_two().max(1024);
        let mut media = p;
        media.resize(phys, 0);
        return Some((media, comp));
    }
    None
}
