//! hammer2(8)'s emergency tools, offline: `destroy PATH` removes a
//! directory entry and `destroy-inum N` removes an inode from its PFS's
//! inode index, neither reading the inode concerned (it may be unreadable:
//! that is what they are for). The kernel's `hammer2_ioctl_destroy` does
//! the same (an unlink with `H2DOPERM_IGNINO` for the entry, a delete by
//! key in the inode index for the number). What the removed inode
//! referenced stays allocated, unreachable, until bulkfree reclaims it.
//!
//! The commit of a destroy also rewrites the older volume-header copies
//! with the new header once it is durable ([`super::sync_header_copies`]):
//! they still reference the inode or entry that was cut out, typically
//! because it is damaged, and a checker looking at every copy, or a mount
//! falling back to one, would meet the damage again.

use super::{now_us, DirEntry, PfsRef, Session};
use crate::error::{Error, Result};
use crate::format::BlockrefType;

impl Session {
    /// `destroy PATH`: removes the entry at `path` from its directory
    /// (which must be readable) without reading the inode it names; returns
    /// the entry (its inode number, for a `destroy-inum` next).
    pub fn destroy_entry(&mut self, pfs: &PfsRef, path: &str) -> Result<DirEntry> {
        self.operation(|s| {
            let (dir, name, existing) = s.resolve_parent(pfs, path)?;
            if name.is_empty() {
                return Err(Error::invalid("destroy needs a directory entry, not the root"));
            }
            let e = existing.ok_or_else(|| Error::NotFound(path.to_string()))?;
            s.tx.changes += 1;
            let fs = &s.fs;
            let dchain = super::inode_mut(fs, &mut s.tx.root, pfs, dir)?;
            if let Some(dip) = dchain.inode_mut() {
                let now = now_us();
                dip.meta.mtime = now.into();
                dip.meta.ctime = now.into();
            }
            let table = dchain.table_mut().ok_or_else(|| Error::shape("directory embeds data"))?;
            let removed = table.remove(fs, e.key, BlockrefType::Dirent)?;
            if let Some(b) = removed.as_ref().and_then(|s| s.bref()).filter(|b| b.radix() != 0) {
                s.tx.alloc.release(b.data_off.get())?;
            }
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(e)
        })
    }

    /// `destroy-inum N`: removes inode `inum` from the inode index of
    /// `pfs` by its key, without reading it. Directory entries naming it
    /// are left alone (remove them with [`destroy_entry`](Self::destroy_entry)).
    pub fn destroy_inum(&mut self, pfs: &PfsRef, inum: u64) -> Result<()> {
        self.operation(|s| {
            if inum < 1 || inum == pfs.root_inum {
                return Err(Error::invalid(format!(
                    "inode {inum}: not an inode of the index (the root is {})",
                    pfs.root_inum
                )));
            }
            let fs = &s.fs;
            // Only the index is read: find the key without loading the inode.
            let root = super::pfs_root_mut(fs, &mut s.tx.root, pfs)?;
            let table = root.table_mut().ok_or_else(|| Error::shape("PFS root embeds data"))?;
            let removed = table.remove(fs, inum, BlockrefType::Inode)?;
            let Some(slot) = removed else {
                return Err(Error::NotFound(format!("inode {inum} in PFS {}", pfs.label)));
            };
            s.tx.changes += 1;
            if let Some(b) = slot.bref().filter(|b| b.radix() != 0) {
                s.tx.alloc.release(b.data_off.get())?;
            }
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(())
        })
    }
}
