//! Planting new structures into a fixture copy: free space taken from the
//! freemap the way an allocator would, and a shared-subtree DAG of indirect
//! blocks.
//!
//! Free space: the zone's freemap leaf says which 16 KiB chunks are free
//! (state 00). [`claim_free_space`] takes the first run of free chunks past
//! the last chunk the topology uses (so nothing reachable is overwritten),
//! outside the zone's reserved 4 MiB, the boot/aux areas and below
//! `allocator_beg`, marks them allocated (11) in the leaf with `avail`
//! lowered to match, lowers the header's `allocator_free` by the same
//! amount, and reseals the freemap leaf and the header. The new blocks are
//! then accounted for like any allocation, so the image's only damage is
//! what is planted there.

use super::reseal::{seal_header, seal_slot, Image, Map};
use hammer2::format::check::set_check;
use hammer2::format::{
    encode_methods, Blockref, BlockrefType, BmapData, CheckMethod, CompMethod, VolumeData,
};
use std::mem::offset_of;
use zerocopy::IntoBytes;

const CHUNK: u64 = 16384;
const SEG: u64 = 4 << 20;
const ZONE: u64 = 1 << 30;

/// Reserves `len` bytes of free space (16 KiB granules) in the zone that
/// holds the topology; returns its offset. See the module documentation.
pub fn claim_free_space(img: &Image, map: &Map, len: u64) -> u64 {
    let top = *map.used_chunks.iter().max().expect("the topology uses some space");
    let zone = top / ZONE * ZONE;
    let &(leaf, _) =
        map.leaves.iter().find(|(_, s)| map.slots[*s].bref.key.get() == zone).expect("a freemap leaf");
    let mut media = img.read(leaf, 32768);
    let v = &map.vol;
    let end = map.size.min(v.volu_size.get());
    let n = len.div_ceil(CHUNK);
    let usable = |c: u64, t: &[BmapData]| {
        let e = &t[((c - zone) / SEG) as usize];
        c % ZONE >= SEG
            && c >= v.allocator_beg.get()
            && !(c + CHUNK > v.boot_beg.get() && c < v.aux_end.get())
            && c + CHUNK <= end
            && !map.used_chunks.contains(&c)
            && e.block_state(((c % SEG) / CHUNK) as usize) == 0
    };
    let table = BmapData::table(&media);
    let mut start = top + CHUNK;
    while !(0..n).all(|i| start + (i + 1) * CHUNK <= zone + ZONE && usable(start + i * CHUNK, table)) {
        start += CHUNK;
        assert!(start + n * CHUNK <= zone + ZONE, "no {len} free bytes in zone {zone:#x}");
    }
    let table = BmapData::table_mut(&mut media);
    for i in 0..n {
        let c = start + i * CHUNK;
        let e = &mut table[((c - zone) / SEG) as usize];
        e.set_block_state(((c % SEG) / CHUNK) as usize, 3);
        e.avail = (e.avail.get() - CHUNK as u32).into();
        if e.class.get() == 0 {
            // What an allocator records for 1 KiB indirect blocks.
            e.class = ((u16::from(u8::from(BlockrefType::Indirect)) << 8) | 10).into();
        }
    }
    img.write(leaf, &media);
    let free = v.allocator_free.get() - n * CHUNK;
    img.write(map.hdr + offset_of!(VolumeData, allocator_free) as u64, &free.to_le_bytes());
    map.reseal(img, &[leaf]);
    start
}

/// Plants under the empty (or replaced) blockref slot at file offset `slot`
/// a chain of `levels` 1 KiB indirect blocks, each holding 8 blockrefs that
/// all point at the next block (the last block is empty): a DAG with
/// 8^levels paths over `levels + 1` blocks. Every blockref carries `key` and
/// `keybits` (so each lies inside its parent's range) and an iscsi32 check
/// code, and the whole is resealed up to the header. The blocks go to space
/// taken with [`claim_free_space`]; returns their offset.
pub fn plant_dag(img: &Image, map: &Map, slot: u64, levels: usize, key: u64, keybits: u8) -> u64 {
    let base = claim_free_space(img, map, (levels as u64 + 1) * 1024);
    let at = |level: usize| base + level as u64 * 1024;
    let bref_to = |level: usize, block: &[u8]| {
        let mut b = Blockref::zeroed();
        b.type_ = BlockrefType::Indirect.into();
        b.methods = encode_methods(CheckMethod::Iscsi32, CompMethod::None);
        b.key = key.into();
        b.keybits = keybits;
        b.data_off = (at(level) | 10).into();
        b.mirror_tid = map.vol.mirror_tid.get().into();
        b.modify_tid = map.vol.mirror_tid.get().into();
        set_check(&mut b, block);
        b
    };
    // Bottom-up: block `levels` is empty, block l holds 8 blockrefs to block l+1.
    let mut below = vec![0u8; 1024];
    img.write(at(levels), &below);
    for level in (0..levels).rev() {
        let b = bref_to(level + 1, &below);
        let block: Vec<u8> = (0..8).flat_map(|_| b.as_bytes().to_vec()).collect();
        img.write(at(level), &block);
        below = block;
    }
    img.write(slot, bref_to(0, &below).as_bytes());
    seal_slot(img, slot);
    map.reseal(img, &[slot]);
    seal_header(img, map.copy);
    base
}
