//! Topology pass: the semantics of the media tree under the chosen header.

use super::FsckReport;
use crate::error::Result;
use crate::volume::Hammer2;

/// Checks the topology of `fs`, adding findings to `report`.
pub fn check(_fs: &Hammer2, _report: &mut FsckReport) -> Result<()> {
    Ok(())
}
