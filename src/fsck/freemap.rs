//! Freemap pass: structure of the freemap tree and its agreement with the
//! topology (blocks in use must be marked allocated).

use super::FsckReport;
use crate::error::Result;
use crate::volume::Hammer2;

/// Checks the freemap of `fs`, adding findings to `report`.
pub fn check(_fs: &Hammer2, _report: &mut FsckReport) -> Result<()> {
    // Being written: structure checks, used-but-free blocks, leaks, allocator_free.
    Ok(())
}
