//! `bulkfree` on a session: the freemap rebuilt from the topology (see
//! [`crate::freemap::alloc::bulkfree`]), committed like every edit.

use super::{invalid, Session};
use crate::chain::Table;
use crate::error::Result;
use crate::flush::{self, CommitReport};
use crate::freemap::alloc::Allocator;
use crate::freemap::BulkfreeReport;
use crate::Hammer2;

impl Session {
    /// Bulkfree. The scan reads the topology as the media hold it (the
    /// kernel syncs before it scans), so it is refused after uncommitted
    /// edits: commit them first. The merged freemap is written by the next
    /// commit.
    pub fn bulkfree(&mut self) -> Result<BulkfreeReport> {
        if self.dirty {
            return Err(invalid(
                "bulkfree works on the image as committed: commit the edits before it (in hammer2_edit, \
                 give it before other write commands, or after a `commit` line)",
            ));
        }
        let report = self.alloc.bulkfree(&self.fs)?;
        self.dirty = true;
        Ok(report)
    }
}

/// Replaces a freemap that cannot be loaded (damaged beyond what the
/// recovery can replay into) by one built from the topology alone
/// ([`Allocator::rebuild`]), committed as a transaction that changes
/// nothing else. fsck's repair falls back to it.
pub fn rebuild_freemap(fs: &mut Hammer2, write: bool) -> Result<(BulkfreeReport, CommitReport)> {
    let (mut alloc, report) = Allocator::rebuild(fs)?;
    let v = &fs.voldata;
    let tid = v
        .mirror_tid
        .get()
        .max(v.freemap_tid.get())
        .checked_add(1)
        .ok_or_else(|| invalid("mirror_tid exhausted"))?;
    let mut root = Table::from_brefs(&fs.voldata.sroot_blockset);
    let commit = flush::commit(fs, &mut root, &mut alloc, tid, write)?;
    Ok((report, commit))
}
