//! Check codes already verified, shared between traversals of one volume
//! set that run at the same time (fsck's topology pass and the freemap
//! pass's walk of the same tree): whichever engine verifies a node block
//! first records it, the other then skips hashing it again.
//!
//! What is recorded is the blockref itself, by its address in the root
//! volume's mapping: one bit per 128-byte slot. A blockref's check code and
//! the media it points at are fixed while the volumes are open for reading,
//! so a blockref verified once verifies again; a bit is set only for a
//! verified check code ([`CheckOutcome::Ok`]), never for a failure, which is
//! always computed (and reported) by each engine itself. Blockrefs outside
//! the root volume's mapping (the volume header's blocksets, other volumes)
//! are not recorded.
//!
//! Memory: the bits are an anonymous mapping of one bit per 128 bytes of
//! the root volume (16 MiB of address space for 16 GiB), of which only the
//! pages covering node blocks are ever touched (some 1 MiB per GiB of
//! inodes).

use crate::format::Blockref;
use crate::volume::Hammer2;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blockrefs whose check codes were verified, shared between engines.
pub struct Checked {
    /// Address of the root volume's first byte in its mapping.
    base: usize,
    /// Bytes of the root volume.
    len: usize,
    words: memmap2::MmapMut,
}

/// Size of a blockref: the granularity of the bits.
const SLOT: usize = std::mem::size_of::<Blockref>();

impl Checked {
    /// An empty set for `fs`'s root volume (`None` when its mapping cannot
    /// be located or the bits cannot be mapped: then nothing is shared).
    pub fn new(fs: &Hammer2) -> Option<Self> {
        let len = usize::try_from(fs.device.volume(0).size()).ok()?;
        let base = fs.device.read_phys(0, 0, 1).ok()?.as_ptr() as usize;
        let words = len.div_ceil(SLOT).div_ceil(64).max(1);
        let words = memmap2::MmapMut::map_anon(words * 8).ok()?;
        Some(Checked { base, len, words })
    }

    fn words(&self) -> &[AtomicU64] {
        let n = self.words.len() / 8;
        // SAFETY: the anonymous mapping is page-aligned, `n * 8` bytes
        // long, zero-filled (a valid AtomicU64), and only ever accessed
        // through these atomics while `self` lives.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<AtomicU64>(), n) }
    }

    /// The word and bit of `bref`, when it lies in the root volume's mapping.
    fn slot(&self, bref: &Blockref) -> Option<(usize, u64)> {
        let at = (bref as *const Blockref as usize).checked_sub(self.base)?;
        if at >= self.len || at % SLOT != 0 {
            return None;
        }
        let i = at / SLOT;
        Some((i / 64, 1 << (i % 64)))
    }

    /// Whether `bref`'s check code was found to verify.
    pub fn verified(&self, bref: &Blockref) -> bool {
        self.slot(bref).is_some_and(|(w, bit)| self.words()[w].load(Ordering::Relaxed) & bit != 0)
    }

    /// Records that `bref`'s check code verifies.
    pub fn record(&self, bref: &Blockref) {
        if let Some((w, bit)) = self.slot(bref) {
            self.words()[w].fetch_or(bit, Ordering::Relaxed);
        }
    }
}
