//! `bulkfree` on a session: the freemap rebuilt from the topology (see
//! [`crate::freemap::alloc::bulkfree`]), committed like every edit.

use super::{invalid, Session};
use crate::error::Result;
use crate::freemap::BulkfreeReport;

impl Session {
    /// Bulkfree. Edits made before it in this session are committed first
    /// (the kernel syncs before it scans): the scan reads the topology as
    /// the media hold it. The merged freemap is written by the next commit.
    pub fn bulkfree(&mut self) -> Result<BulkfreeReport> {
        if self.dirty {
            if !self.write {
                return Err(invalid(
                    "bulkfree scans the committed topology: in a dry run it cannot follow other edits",
                ));
            }
            self.commit()?;
        }
        let report = self.alloc.bulkfree(&self.fs)?;
        self.dirty = true;
        Ok(report)
    }
}
