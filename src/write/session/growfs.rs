//! `growfs [SIZE]`: a single-volume file system grows to its device's size
//! (an image file grown beforehand, e.g. with `truncate -s`), or to SIZE,
//! as `hammer2_ioctl_growfs` does it: the size rounded down to 8 MiB
//! (`HAMMER2_VOLUME_ALIGN`), `volu_size` and `total_size` set, and
//! `allocator_size` grown by the difference. The freemap needs nothing
//! written: zones past the old end get their leaves on first use (see
//! [`Allocator::grow`](crate::write::alloc::Allocator::grow) for the old
//! last zone and for `allocator_free`).
//!
//! Header copies (one per 2 GiB, up to 4) that now fit: the kernel zeroes
//! their slots and leaves them for later flushes to fill, so until then
//! checkers see damaged copies. We write the current header into them
//! first (valid copies of the state before growfs, which is what they
//! describe), then commit the grown header into the next copy as usual: a
//! crash at any point leaves the old state or the new one.

use super::Session;
use crate::device::Extent;
use crate::error::Error;
use crate::error::Result;
use crate::format::{volhdr_offset, FREEMAP_LEVEL1_RADIX, NUM_VOLHDRS, VOLUME_ALIGN};
use crate::volume::CopyState;
use zerocopy::IntoBytes;

/// What growfs changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrowReport {
    pub old_size: u64,
    pub new_size: u64,
    /// Header copies that now fit.
    pub header_copies: Vec<usize>,
    /// New 1 GiB freemap zones.
    pub zones: u64,
    /// Bytes added to `allocator_free`.
    pub free_added: u64,
}

impl Session {
    /// growfs (see the module documentation). Growing to the current size
    /// changes nothing.
    ///
    /// Uncommitted edits before it are fine: growfs changes only the
    /// in-memory header's sizes (committed with the edits), the device's
    /// extent and the allocator's zones, none of which the edits' chains
    /// depend on; the header copies that now fit get the header as last
    /// committed (what they would describe after a crash before the
    /// commit), never a state that includes uncommitted edits.
    pub fn growfs(&mut self, size: Option<u64>) -> Result<GrowReport> {
        let fs = &mut self.fs;
        if fs.device.len() != 1 || fs.voldata.nvolumes > 1 {
            return Err(Error::invalid("growfs supports single-volume file systems only (as the kernel's)"));
        }
        let pos = fs.root_position();
        let device_size = fs.device.volume(pos).size();
        let old = fs.voldata.volu_size.get();
        let want = size.unwrap_or(device_size);
        if want > device_size {
            return Err(Error::invalid(format!(
                "{want:#x} bytes exceed the device's {device_size:#x} (grow the image first, e.g. truncate -s)"
            )));
        }
        let new = (want & !(VOLUME_ALIGN - 1)).min(i64::MAX as u64);
        if new < old {
            return Err(Error::invalid(format!(
                "growfs cannot shrink the file system from {old:#x} to {new:#x}"
            )));
        }
        let zone_count = |s: u64| s.div_ceil(1 << FREEMAP_LEVEL1_RADIX);
        let mut report =
            GrowReport { old_size: old, new_size: new, header_copies: Vec::new(), zones: 0, free_added: 0 };
        if new == old {
            return Ok(report);
        }
        report.zones = zone_count(new) - zone_count(old);
        report.header_copies = (0..NUM_VOLHDRS).filter(|&i| (old..new).contains(&volhdr_offset(i))).collect();
        let current = fs.voldata.clone();
        if self.write {
            let mut vol = fs.device.volume_mut(pos);
            for &i in &report.header_copies {
                vol.write(volhdr_offset(i), current.as_bytes())?;
            }
            vol.sync()?;
        }
        self.tx.changes += 1;
        for &i in &report.header_copies {
            let c = &mut fs.headers[pos].copies[i];
            c.state = CopyState::Valid;
            c.data = Some(current.clone());
        }
        let delta = new - old;
        let v = &mut fs.voldata;
        v.volu_size = new.into();
        v.total_size = v.total_size.get().saturating_add(delta).into();
        v.allocator_size = v.allocator_size.get().saturating_add(delta).into();
        fs.headers[pos].copies[fs.copy].data = Some(fs.voldata.clone());
        fs.device.set_extent(pos, Extent { loff: 0, size: new })?;
        report.free_added = self.tx.alloc.grow(&self.fs);
        self.tx.dirty = true;
        Ok(report)
    }
}
