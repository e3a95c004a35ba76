//! The flush: the one path by which the toolkit changes a file system.
//!
//! A commit follows the contract of ARCHITECTURE.md (and the seeds'
//! hammer2_flush.c / hammer2_vfsops.c):
//!
//! 1. Bottom-up, every loaded chain is written to a *new* block
//!    (copy-on-write): its children first, so the blockrefs it stores are
//!    final; then its own media, check code (per the blockref's method),
//!    `mirror_tid = modify_tid = ` the commit's transaction id, and the
//!    statistics HAMMER2 keeps in INODE and INDIRECT blockrefs
//!    (`data_count`: the bytes of every block below, `inode_count`: the
//!    inodes below; a PFS root passes its counts up without adding itself,
//!    as the fixtures' writers do) and `leaf_count` (leaves below, a hint).
//!    DATA blocks were already written when they were created.
//! 2. The block a chain was loaded from is released to the allocator, which
//!    only marks it possibly-free (bulkfree reclaims it): an older valid
//!    header copy may still reach it.
//! 3. The freemap is written into the next rotation slots, then a
//!    durability barrier.
//! 4. The volume header gets the new super-root and freemap blocksets,
//!    `mirror_tid` and `freemap_tid` (equal: the offline commit leaves no
//!    recovery window), `allocator_free`, its three CRCs, and is written to
//!    the copy after the one in use (skipping copies past the volume's end),
//!    then a second barrier. Until that write lands, every valid copy still
//!    describes the old state, untouched; a torn header fails its CRCs and
//!    the previous copy stays the best.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::check::set_check;
use crate::format::{Blockref, InodeData, EMBEDDED_BYTES, SET_COUNT};
use crate::volume::{CopyState, Hammer2};
use crate::write::alloc::Allocator;
use crate::write::chain::{contribution, Bias, Body, Chain, Slot, Table};
use zerocopy::IntoBytes;

/// Totals of what a flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlushStats {
    pub blocks: u64,
    pub bytes: u64,
    /// Old blocks handed back to the allocator.
    pub released: u64,
}

/// Statistics a subtree passes up to its parent's blockref.
#[derive(Debug, Default, Clone, Copy)]
struct Below {
    data: u64,
    inodes: u64,
    leaves: u64,
}

impl Below {
    fn add(&mut self, b: &Blockref) {
        let (data, inodes, leaves) = contribution(b);
        self.data = self.data.saturating_add(data);
        self.inodes = self.inodes.saturating_add(inodes);
        self.leaves = self.leaves.saturating_add(leaves);
    }
}

/// Writes blocks for one transaction.
pub struct Flusher<'d> {
    pub device: &'d mut Device,
    pub alloc: &'d mut Allocator,
    /// The transaction id of the commit.
    pub tid: u64,
    /// False for a dry run: everything is computed, nothing written.
    pub write: bool,
    pub stats: FlushStats,
}

impl Flusher<'_> {
    /// Gives `bref` a new block holding `media` (a power of two of 1..64
    /// KiB), with its check code and this transaction's tids, and writes
    /// it. The block it had before is released.
    pub fn write_block(&mut self, bref: &mut Blockref, media: &[u8]) -> Result<()> {
        set_check(bref, media);
        self.write_checked(bref, media)
    }

    /// [`write_block`](Self::write_block) for media whose check code
    /// `bref` already carries (computed elsewhere, e.g. on a worker thread
    /// while this one writes): allocation, tids, the write, no hashing.
    pub fn write_checked(&mut self, bref: &mut Blockref, media: &[u8]) -> Result<()> {
        let len = media.len();
        if !len.is_power_of_two() || !(1024..=65536).contains(&len) {
            return Err(Error::InvalidArgument(format!("block of {len} bytes cannot be allocated")));
        }
        let radix = len.trailing_zeros() as u8;
        let old = bref.data_off.get();
        let data_off = self.alloc.alloc(radix, bref.kind())?;
        if old & 0x3f != 0 {
            self.release(old)?;
        }
        bref.data_off = data_off.into();
        bref.mirror_tid = self.tid.into();
        bref.modify_tid = self.tid.into();
        if self.write {
            self.device.write(data_off & !0x3f, media)?;
        }
        self.stats.blocks += 1;
        self.stats.bytes += len as u64;
        Ok(())
    }

    /// Hands a block the commit no longer references back to the allocator.
    pub fn release(&mut self, data_off: u64) -> Result<()> {
        self.alloc.release(data_off)?;
        self.stats.released += 1;
        Ok(())
    }

    /// Flushes every chain of `table`; its slots become clean blockrefs.
    fn table(&mut self, table: &mut Table) -> Result<Below> {
        let mut below = Below::default();
        for slot in &mut table.slots {
            if let Slot::Node(chain) = slot {
                let bref = self.chain(chain)?;
                *slot = Slot::Clean(bref);
            }
            if let Slot::Clean(b) = slot {
                below.add(b);
            }
        }
        Ok(below)
    }

    /// Writes the chain a slot holds (if any), leaving its new blockref.
    pub fn slot(&mut self, slot: &mut Slot) -> Result<()> {
        if let Slot::Node(chain) = slot {
            let bref = self.chain(chain)?;
            *slot = Slot::Clean(bref);
        }
        Ok(())
    }

    /// Writes one chain (after its children) and returns its new blockref.
    pub fn chain(&mut self, chain: &mut Chain) -> Result<Blockref> {
        let mut bref = chain.bref;
        let media: Vec<u8> = match &mut chain.body {
            Body::Inode { ip, table } => {
                if !ip.meta.is_directdata() {
                    let below = self.table(table)?;
                    set_stats(&mut bref, &below, chain.bias);
                    store_blockset(ip, table);
                } else {
                    set_stats(&mut bref, &Below::default(), chain.bias);
                }
                ip.as_bytes().to_vec()
            }
            Body::Indirect { table } => {
                let below = self.table(table)?;
                set_stats(&mut bref, &below, chain.bias);
                table.brefs().as_bytes().to_vec()
            }
            Body::Leaf { media } => media.clone(),
        };
        self.write_block(&mut bref, &media)?;
        chain.bref = bref;
        Ok(bref)
    }
}

fn set_stats(bref: &mut Blockref, below: &Below, bias: Bias) {
    let clamp = |v: i128| v.clamp(0, i128::from(u64::MAX)) as u64;
    let s = bref.stats_mut();
    s.data_count = clamp(i128::from(below.data) + bias.data).into();
    s.inode_count = clamp(i128::from(below.inodes) + bias.inodes).into();
    bref.leaf_count = (below.leaves.min(u64::from(u16::MAX)) as u16).into();
}

/// Writes the table's blockrefs into the inode's blockset area.
fn store_blockset(ip: &mut InodeData, table: &Table) {
    let brefs = table.brefs();
    debug_assert!(brefs.len() <= SET_COUNT);
    let mut u = [0u8; EMBEDDED_BYTES];
    let bytes = brefs.as_bytes();
    u[..bytes.len()].copy_from_slice(bytes);
    ip.u = u;
}

/// What a commit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitReport {
    /// The new `mirror_tid`.
    pub tid: u64,
    /// Header copy written.
    pub copy: usize,
    pub flush: FlushStats,
    pub allocator_free: u64,
    /// False for a dry run.
    pub written: bool,
}

/// Commits `root` (the super-root blockset as a table) and the allocator's
/// freemap as a new transaction of `fs`, following the module's order:
/// [`stage`], then the volume header to the next copy and a barrier.
pub fn commit(
    fs: &mut Hammer2,
    root: &mut Table,
    alloc: &mut Allocator,
    tid: u64,
    write: bool,
) -> Result<CommitReport> {
    let pos = fs.root_position();
    let next = next_copy(fs, pos)?;
    let (v, stats) = stage(fs, root, alloc, tid, write)?;
    if write {
        let off = crate::format::volhdr_offset(next);
        let mut vol = fs.device.volume_mut(pos);
        vol.write(off, v.as_bytes())?;
        vol.sync_range(off, v.as_bytes().len() as u64)?;
        let copy = &mut fs.headers[pos].copies[next];
        copy.data = Some(v.clone());
        copy.state = CopyState::Valid;
        fs.headers[pos].best = Some(next);
        fs.voldata = v;
        fs.copy = next;
    }
    Ok(CommitReport { tid, copy: next, flush: stats, allocator_free: alloc.free_bytes(), written: write })
}

/// Steps 1 to 3 of a commit, without the header: every loaded chain of
/// `root` and the allocator's freemap are written (copy-on-write, into
/// blocks and rotation slots no valid header copy reaches) and made
/// durable by a barrier; the volume header that would name them is
/// returned with its CRCs, written nowhere. No header copy on the media
/// changes, so every reader still sees the state before; a later
/// [`commit`] (or `stage`) of the same transaction over the returned
/// header in `fs.voldata` goes on from the staged tree. A dry run
/// (`write` false) computes the tree only.
pub fn stage(
    fs: &mut Hammer2,
    root: &mut Table,
    alloc: &mut Allocator,
    tid: u64,
    write: bool,
) -> Result<(Box<crate::format::VolumeData>, FlushStats)> {
    let mut f = Flusher { device: &mut fs.device, alloc, tid, write, stats: FlushStats::default() };
    f.table(root)?;
    let stats = f.stats;
    let sroot: Vec<Blockref> = root.brefs();
    let mut v = fs.voldata.clone();
    v.sroot_blockset.copy_from_slice(&sroot[..SET_COUNT]);
    v.mirror_tid = tid.into();
    v.freemap_tid = tid.into();
    if write {
        v.freemap_blockset = alloc.flush(tid, &mut fs.device)?;
        v.allocator_free = alloc.free_bytes().into();
        v.update_crcs();
        fs.device.sync()?;
    }
    Ok((v, stats))
}

/// The header copy after the one in use that lies on the volume.
fn next_copy(fs: &Hammer2, pos: usize) -> Result<usize> {
    let copies = &fs.headers[pos].copies;
    (1..=copies.len())
        .map(|i| (fs.copy + i) % copies.len())
        .find(|&n| !matches!(copies[n].state, CopyState::Absent))
        .ok_or_else(|| Error::InvalidArgument("no volume-header slot to write".into()))
}
