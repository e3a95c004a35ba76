//! The leaf model: what the 256 `bmap_data` entries of a level-1 leaf say,
//! and the only code that knows how they encode it (two bits per 16 KiB
//! chunk, 32 chunks per 64-bit word, `linear`, `class`, `avail`).
//!
//! Readers (fsck, the dump) view a leaf's media with [`Leaf`]; the
//! allocator keeps the same media in memory and changes it through the
//! entry functions here ([`set_entry_chunk_state`], [`fill_entry`],
//! [`clear_entry`]...), so both read every chunk with the same
//! [`ChunkState`]. A new leaf is built by [`init_leaf`] from the
//! [`Areas`] the checker also uses.

use super::areas::Areas;
use super::layout::{
    chunk_index, segment_index, zone_base, zone_of, CHUNKS_PER_SEGMENT, CHUNKS_PER_WORD, CHUNK_BYTES,
    CHUNK_MASK, SEGMENTS_PER_ZONE, SEGMENT_BYTES,
};
use crate::format::{BlockrefType, BmapData, FREEMAP_BLOCK_RADIX, FREEMAP_LEVELN_PSIZE};
use serde::Serialize;

/// Low byte of every class the kernel writes (`HAMMER2_PBUFRADIX`).
pub const CLASS_RADIX: u16 = 16;

/// The two-bit state of a 16 KiB chunk in a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// 00: the allocator may hand it out.
    Free,
    /// 01: reserved (not used by current writers; never handed out).
    Reserved,
    /// 10: staged by bulkfree's first pass; free once a second pass agrees.
    PossiblyFree,
    /// 11: allocated.
    Allocated,
}

impl ChunkState {
    /// Decodes the two bits (higher bits ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => ChunkState::Free,
            1 => ChunkState::Reserved,
            2 => ChunkState::PossiblyFree,
            _ => ChunkState::Allocated,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            ChunkState::Free => 0,
            ChunkState::Reserved => 1,
            ChunkState::PossiblyFree => 2,
            ChunkState::Allocated => 3,
        }
    }
}

/// State of chunk `n` (0..256) of one leaf entry.
pub fn entry_chunk_state(entry: &BmapData, n: usize) -> ChunkState {
    ChunkState::from_bits(entry.block_state(n % CHUNKS_PER_SEGMENT))
}

/// Sets the state of chunk `n` (0..256) of one leaf entry.
pub fn set_entry_chunk_state(entry: &mut BmapData, n: usize, state: ChunkState) {
    entry.set_block_state(n % CHUNKS_PER_SEGMENT, state.bits());
}

/// Sets chunk `n` of `entry` to `state`, keeping `avail` bitmap-granular
/// as every kernel path does (allocation, recovery, bulkfree) and as fsck
/// checks: 16 KiB less when a free chunk stops being free, 16 KiB more (up
/// to the whole segment) when a chunk becomes free. Returns how the free
/// space changed, in bytes: what `allocator_free` follows.
pub fn change_chunk(entry: &mut BmapData, n: usize, state: ChunkState) -> i64 {
    let was_free = entry_chunk_state(entry, n) == ChunkState::Free;
    set_entry_chunk_state(entry, n, state);
    let chunk = CHUNK_BYTES as u32;
    match (was_free, state == ChunkState::Free) {
        (true, false) => {
            entry.avail = entry.avail.get().saturating_sub(chunk).into();
            -(CHUNK_BYTES as i64)
        }
        (false, true) => {
            entry.avail = entry.avail.get().saturating_add(chunk).min(SEGMENT_BYTES as u32).into();
            CHUNK_BYTES as i64
        }
        _ => 0,
    }
}

/// Free (00) chunks of one leaf entry.
pub fn entry_free_chunks(entry: &BmapData) -> u64 {
    let free_pairs = |w: u64| {
        // A pair is free when both its bits are clear.
        let either = (w | (w >> 1)) & 0x5555_5555_5555_5555;
        32 - u64::from(either.count_ones())
    };
    entry.bitmapq.iter().map(|w| free_pairs(w.get())).sum()
}

/// The first chunk of each naturally aligned run of `n` free (00) chunks
/// of `entry`, in order (`n` a power of two from 1 to 32, so that a run
/// never crosses a bitmap word).
pub fn free_runs(entry: &BmapData, n: usize) -> impl Iterator<Item = usize> + '_ {
    debug_assert!(n.is_power_of_two() && n <= CHUNKS_PER_WORD);
    let ones = if n >= CHUNKS_PER_WORD { u64::MAX } else { (1u64 << (2 * n)) - 1 };
    (0..CHUNKS_PER_SEGMENT).step_by(n).filter(move |&c| {
        let shift = (c % CHUNKS_PER_WORD) * 2;
        entry.bitmapq[c / CHUNKS_PER_WORD].get() & (ones << shift) == 0
    })
}

/// Where the entry's `linear` points, when it points inside a chunk of
/// the segment (not on a chunk boundary, not negative, not past the end):
/// the position the next sub-16 KiB allocation in this entry would take.
pub fn entry_linear(entry: &BmapData) -> Option<u64> {
    u64::try_from(entry.linear.get()).ok().filter(|&l| l < SEGMENT_BYTES && l & CHUNK_MASK != 0)
}

/// The radixes an entry can still satisfy, each with all lower bits (as
/// bulkfree's `bigmask_get` sets them): a naturally aligned run of free
/// chunks for 16 KiB to 512 KiB, the room left after `linear` below that.
pub fn entry_bigmask(entry: &BmapData) -> u32 {
    let mut mask = 0u32;
    let mut radix = u32::from(FREEMAP_BLOCK_RADIX);
    let mut n = 1;
    while n <= CHUNKS_PER_WORD {
        if free_runs(entry, n).next().is_some() {
            mask |= (2u32 << radix) - 1;
        }
        n <<= 1;
        radix += 1;
    }
    if let Some(lin) = entry_linear(entry) {
        let room = CHUNK_BYTES - (lin & CHUNK_MASK);
        mask |= (2u32 << (63 - room.leading_zeros())) - 1;
    }
    mask
}

/// Marks an entry as `hammer2_freemap_init` marks a segment outside the
/// allocator's reach: every chunk allocated, no `avail`, `linear` at the
/// end of the segment.
pub fn fill_entry(entry: &mut BmapData) {
    entry.bitmapq = [u64::MAX.into(); 8];
    entry.avail = 0.into();
    entry.linear = (SEGMENT_BYTES as i32).into();
}

/// Whether an entry is still exactly as [`fill_entry`] left it.
pub fn is_filled(entry: &BmapData) -> bool {
    entry.bitmapq.iter().all(|w| w.get() == u64::MAX)
        && entry.avail.get() == 0
        && entry.linear.get() == SEGMENT_BYTES as i32
}

/// Empties an entry: every chunk free, `avail` the whole segment, no class,
/// `linear` at 0 (a segment `hammer2_freemap_init` leaves free, and the
/// kernel's reset of an entry that bulkfree emptied).
pub fn clear_entry(entry: &mut BmapData) {
    entry.bitmapq = [0u64.into(); 8];
    entry.avail = (SEGMENT_BYTES as u32).into();
    entry.class = 0.into();
    entry.linear = 0.into();
}

/// The media of a new leaf for the zone starting at `key`, as
/// `hammer2_freemap_init` builds it: every entry whose segment
/// [`Areas::segment_usable`] refuses is [filled](fill_entry), the others
/// are [clear](clear_entry).
pub fn init_leaf(areas: &Areas, key: u64) -> Box<[u8]> {
    let mut media = vec![0u8; FREEMAP_LEVELN_PSIZE].into_boxed_slice();
    for (n, entry) in BmapData::table_mut(&mut media).iter_mut().enumerate() {
        match key.checked_add(n as u64 * SEGMENT_BYTES) {
            Some(seg) if areas.segment_usable(seg) => clear_entry(entry),
            _ => fill_entry(entry),
        }
    }
    media
}

/// The class (`type << 8 | 16`) of blocks of type `kind`, for the types the
/// freemap allocates (freemap blocks live in the reserved slots).
pub fn class_of(kind: BlockrefType) -> Option<u16> {
    match kind {
        BlockrefType::Inode | BlockrefType::Indirect | BlockrefType::Data | BlockrefType::Dirent => {
            Some((u16::from(u8::from(kind)) << 8) | CLASS_RADIX)
        }
        _ => None,
    }
}

/// A level-1 leaf: the 256 entries describing one zone.
#[derive(Clone, Copy)]
pub struct Leaf<'a> {
    zone: u64,
    entries: &'a [BmapData],
}

impl<'a> Leaf<'a> {
    /// Views `media` (a leaf's 32 KiB) as the leaf of `zone`; `None` when
    /// it is too short to hold all 256 entries.
    pub fn new(zone: u64, media: &'a [u8]) -> Option<Self> {
        let entries = BmapData::table(media);
        (entries.len() >= SEGMENTS_PER_ZONE).then(|| Leaf { zone, entries: &entries[..SEGMENTS_PER_ZONE] })
    }

    pub fn zone(&self) -> u64 {
        self.zone
    }

    /// The 256 entries, entry `i` describing the zone's `i`-th 4 MiB.
    pub fn entries(&self) -> &'a [BmapData] {
        self.entries
    }

    /// Logical offset of entry `i`'s first byte (saturating past the 64-bit space).
    pub fn segment_base(&self, i: usize) -> u64 {
        zone_base(self.zone).unwrap_or(u64::MAX).saturating_add(i as u64 * SEGMENT_BYTES)
    }

    /// The state of the chunk holding `off`; `None` when `off` lies in another zone.
    pub fn chunk_state(&self, off: u64) -> Option<ChunkState> {
        (zone_of(off) == self.zone)
            .then(|| entry_chunk_state(&self.entries[segment_index(off)], chunk_index(off)))
    }

    /// Chunks per state, counting only those below `end` (the file system's end).
    pub fn counts(&self, end: u64) -> LeafCounts {
        let mut c = LeafCounts::default();
        for (i, entry) in self.entries.iter().enumerate() {
            let seg = self.segment_base(i);
            c.avail_sum = c.avail_sum.saturating_add(u64::from(entry.avail.get()));
            // Chunks of this segment inside the file system.
            let inside =
                end.saturating_sub(seg).div_ceil(CHUNK_BYTES).min(CHUNKS_PER_SEGMENT as u64) as usize;
            c.beyond_end += (CHUNKS_PER_SEGMENT - inside) as u64;
            for n in 0..inside {
                match entry_chunk_state(entry, n) {
                    ChunkState::Free => c.free += 1,
                    ChunkState::Reserved => c.reserved += 1,
                    ChunkState::PossiblyFree => c.possibly_free += 1,
                    ChunkState::Allocated => c.allocated += 1,
                }
            }
        }
        c
    }

    /// The hints a leaf's blockref carries: the free bytes (`avail`) of the
    /// entries whose segment [`Areas::segment_usable`] accepts, and the
    /// union of their [`entry_bigmask`]s.
    pub fn hints(&self, areas: &Areas) -> (u64, u32) {
        let (mut avail, mut bigmask) = (0u64, 0u32);
        for (i, entry) in self.entries.iter().enumerate() {
            if !areas.segment_usable(self.segment_base(i)) {
                continue;
            }
            avail += u64::from(entry.avail.get());
            bigmask |= entry_bigmask(entry);
        }
        (avail, bigmask)
    }
}

/// 16 KiB chunks of a leaf (or of several) per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LeafCounts {
    pub free: u64,
    pub reserved: u64,
    pub possibly_free: u64,
    pub allocated: u64,
    /// Chunks the leaf maps past the end of the file system.
    pub beyond_end: u64,
    /// Sum of the entries' `avail` fields (bytes).
    pub avail_sum: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_states_and_counts() {
        let mut media = vec![0u8; 32768];
        {
            let t = BmapData::table_mut(&mut media);
            set_entry_chunk_state(&mut t[0], 0, ChunkState::Allocated);
            set_entry_chunk_state(&mut t[0], 1, ChunkState::PossiblyFree);
            set_entry_chunk_state(&mut t[255], 255, ChunkState::Reserved);
            t[3].avail = 4096.into();
        }
        let leaf = Leaf::new(2, &media).unwrap();
        let base = 2 << 30;
        assert_eq!(leaf.chunk_state(base), Some(ChunkState::Allocated));
        assert_eq!(leaf.chunk_state(base + CHUNK_BYTES + 5), Some(ChunkState::PossiblyFree));
        assert_eq!(leaf.chunk_state(base + (1 << 30) - 1), Some(ChunkState::Reserved));
        assert_eq!(leaf.chunk_state(base - 1), None);
        let c = leaf.counts(u64::MAX);
        assert_eq!((c.free, c.allocated, c.possibly_free, c.reserved, c.beyond_end), (65533, 1, 1, 1, 0));
        assert_eq!(c.avail_sum, 4096);
        // The file system ends 1 MiB into the zone.
        let c = leaf.counts(base + (1 << 20));
        assert_eq!((c.free + c.allocated + c.possibly_free, c.beyond_end), (64, 65536 - 64));
        assert_eq!(entry_free_chunks(&leaf.entries()[0]), 254);
        assert!(Leaf::new(0, &media[..1000]).is_none());
        for bits in 0..4 {
            assert_eq!(ChunkState::from_bits(bits).bits(), bits);
        }
        let e = &mut BmapData::table_mut(&mut media)[3];
        assert_eq!(change_chunk(e, 7, ChunkState::Allocated), -(CHUNK_BYTES as i64));
        assert_eq!(e.avail.get(), 0, "saturates");
        assert_eq!(change_chunk(e, 7, ChunkState::PossiblyFree), 0);
        assert_eq!(change_chunk(e, 7, ChunkState::Free), CHUNK_BYTES as i64);
        assert_eq!(change_chunk(e, 7, ChunkState::Free), 0);
        assert_eq!(e.avail.get(), CHUNK_BYTES as u32);
    }

    #[test]
    fn free_runs_are_naturally_aligned() {
        let mut b: BmapData = zerocopy::FromZeros::new_zeroed();
        assert_eq!(free_runs(&b, 32).count(), 8);
        set_entry_chunk_state(&mut b, 1, ChunkState::PossiblyFree);
        assert_eq!(free_runs(&b, 1).take(2).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(free_runs(&b, 2).next(), Some(2));
        assert_eq!(free_runs(&b, 4).next(), Some(4));
        assert_eq!(free_runs(&b, 32).next(), Some(32));
    }

    #[test]
    fn bigmask_follows_free_runs_and_linear() {
        let mut b: BmapData = zerocopy::FromZeros::new_zeroed();
        assert_eq!(entry_bigmask(&b), (1 << 20) - 1);
        b.bitmapq = [u64::MAX.into(); 8];
        assert_eq!(entry_bigmask(&b), 0);
        b.linear = 0x1000.into(); // 12 KiB left in the chunk
        assert_eq!(entry_bigmask(&b), (1 << 14) - 1);
        b.bitmapq[3] = (!(0xfu64 << 8)).into(); // chunks 4-5 of word 3: a 32 KiB run
        assert_eq!(entry_bigmask(&b), (1 << 16) - 1);
        b.linear = (-0x1000).into();
        assert_eq!(entry_linear(&b), None);
        b.linear = (SEGMENT_BYTES as i32 + 0x1000).into();
        assert_eq!(entry_linear(&b), None);
    }

    #[test]
    fn entries_fill_and_clear() {
        let mut b: BmapData = zerocopy::FromZeros::new_zeroed();
        fill_entry(&mut b);
        assert!(is_filled(&b));
        assert_eq!(entry_free_chunks(&b), 0);
        b.class = 0x110.into();
        clear_entry(&mut b);
        assert!(!is_filled(&b));
        assert_eq!((entry_free_chunks(&b), b.avail.get(), b.class.get()), (256, 4 << 20, 0));
        assert_eq!(class_of(BlockrefType::Data), Some((u16::from(u8::from(BlockrefType::Data)) << 8) | 16));
        assert_eq!(class_of(BlockrefType::FreemapLeaf), None);
    }
}
