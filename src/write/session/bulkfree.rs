//! `bulkfree` on a session: the freemap rebuilt from the topology (see
//! [`crate::write::alloc::bulkfree`]), committed like every edit.

use super::Session;
use crate::error::Error;
use crate::error::Result;
use crate::format::Blockref;
use crate::write::alloc::bulkfree::BulkfreeReport;
use crate::write::alloc::Allocator;
use crate::write::chain::{Slot, Table};
use crate::write::flush::{self, CommitReport};
use crate::Hammer2;

impl Session {
    /// Bulkfree of the session's state: what the committed topology
    /// reaches (every PFS, from the header in use), and what this
    /// session's uncommitted operations reference besides it, is in use;
    /// the rest is staged or freed with the kernel's transitions (see
    /// [`crate::write::alloc::bulkfree`]). The merged freemap is written
    /// by the next commit.
    ///
    /// Why this is sound in the middle of a session (the kernel syncs
    /// before it scans; we scan the state a sync would write instead):
    /// - every block the session's state references is either reached
    ///   from the committed super-root (a node not changed, or the old copy
    ///   of one that was), or lies below a clean blockref the session holds
    ///   in a loaded table: new data blocks and subtrees written early.
    ///   Those blockrefs are scanned too (the engine's visited set makes
    ///   the ones the media topology already reached cost nothing), so no
    ///   block the commit will reference is freed;
    /// - nodes the session changed but has not written yet have no block:
    ///   the commit allocates them after the bulkfree, from free space;
    /// - blocks the session stopped referencing are still reached from the
    ///   committed header, which stays the fallback until the commit: they
    ///   stay in use now and are staged by a bulkfree after the commit, as
    ///   the kernel leaves them.
    pub fn bulkfree(&mut self) -> Result<BulkfreeReport> {
        let mut extra = Vec::new();
        clean_brefs(&self.tx.root, &mut extra);
        let report = self.tx.alloc.bulkfree_with(&self.fs, &extra)?;
        self.tx.dirty = true;
        Ok(report)
    }
}

/// The clean blockrefs of the loaded tables below `table` (with the
/// `data_off` of the node holding each), depth first.
fn clean_brefs(table: &Table, out: &mut Vec<(Blockref, u64)>) {
    for slot in &table.slots {
        match slot {
            Slot::Clean(b) => out.push((*b, table.parent_off)),
            Slot::Node(c) => {
                if let Some(t) = c.table() {
                    clean_brefs(t, out);
                }
            }
            Slot::Empty => {}
        }
    }
}

/// Replaces a freemap that cannot be loaded (damaged beyond what the
/// recovery can replay into) by one built from the topology alone
/// ([`Allocator::rebuild`]), committed as a transaction that changes
/// nothing else, with a transaction id above every valid header copy's
/// (so that, on `fs` opened at an older copy, this makes that copy's tree
/// current: fsck's rollback). fsck's repair falls back to it. Written (`write`), the
/// older header copies, which still reference the damaged freemap, are
/// then rewritten with the new header ([`super::sync_header_copies`]: only
/// after the commit is durable, one at a time); the copies rewritten are
/// returned last.
pub fn rebuild_freemap(fs: &mut Hammer2, write: bool) -> Result<(BulkfreeReport, CommitReport, Vec<usize>)> {
    let (mut alloc, report) = Allocator::rebuild(fs)?;
    let tid = tid_above_every_copy(fs)?;
    let mut root = Table::from_brefs(&fs.voldata.sroot_blockset);
    let commit = flush::commit(fs, &mut root, &mut alloc, tid, write)?;
    let synced = if write { super::sync_header_copies(fs)? } else { Vec::new() };
    Ok((report, commit, synced))
}

/// A transaction id above every valid header copy's of the root volume,
/// not only the one in use: on a file system opened at an older copy
/// (fsck's rollback) the new header must be the newest, or readers keep
/// choosing the newer one.
pub(super) fn tid_above_every_copy(fs: &Hammer2) -> Result<u64> {
    let v = &fs.voldata;
    let newest = fs.headers[fs.root_position()]
        .copies
        .iter()
        .filter(|c| c.is_valid())
        .filter_map(|c| c.mirror_tid())
        .max();
    v.mirror_tid
        .get()
        .max(v.freemap_tid.get())
        .max(newest.unwrap_or(0))
        .checked_add(1)
        .ok_or(Error::Exhausted("mirror_tid"))
}
