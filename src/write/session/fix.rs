//! Field repairs for fsck: one inode's metadata set to what its
//! surroundings prove it must be (iparent, mode, link count), inside the
//! session's transaction like every edit.

use super::{PfsRef, Session};
use crate::error::{Error, Result};
use crate::format::InodeMeta;

impl Session {
    /// Applies `f` to the metadata of inode `inum` of `pfs` (its root
    /// included). Nothing else changes: not ctime either, since a repair
    /// restores what the file system held, it does not change the file.
    /// The older header copies are brought up to the new one after the
    /// commit (they may name the inode as it was damaged).
    pub fn fix_inode(&mut self, pfs: &PfsRef, inum: u64, f: impl FnOnce(&mut InodeMeta)) -> Result<()> {
        self.operation(|s| {
            s.tx.changes += 1;
            let chain = s.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            f(&mut ip.meta);
            s.tx.dirty = true;
            // The older header copies may reach the inode as it was
            // damaged: once this is durable they get the new header too.
            s.resync_copies = true;
            Ok(())
        })
    }
}

impl Session {
    /// Takes the directory entry at `key` out of directory `dir` (fsck's
    /// removal of an entry naming no inode); no inode is touched.
    pub fn fix_drop_dirent(&mut self, pfs: &PfsRef, dir: u64, key: u64) -> Result<()> {
        self.operation(|s| {
            s.resync_copies = true;
            s.drop_dirent(pfs, dir, key)
        })
    }
}
