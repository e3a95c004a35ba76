//! A session's PFS as a [`FsView`]: the image as the operations so far left
//! it, committed or not.
//!
//! A session is only read here (`&Session`), and holds no interior
//! mutability, so a [`SessionView`] is `Sync`: the extraction's worker
//! threads read files of the session's state as they read the committed
//! image's.

use super::{PfsRef, Session};
use crate::error::Result;
use crate::read::file::Sink;
use crate::read::pfs::DirEntry;
use crate::read::view::{FsView, InodeRef, ViewInode};
use crate::Hammer2;

/// PFS `pfs` of `session`, read through the session's chains.
pub struct SessionView<'s> {
    pub session: &'s Session,
    pub pfs: &'s PfsRef,
}

impl FsView for SessionView<'_> {
    fn fs(&self) -> &Hammer2 {
        &self.session.fs
    }

    fn label(&self) -> String {
        self.pfs.label.clone()
    }

    fn root_inum(&self) -> u64 {
        self.pfs.root_inum
    }

    /// Before a commit an inode's blockref is not meaningful: none is given.
    fn inode(&self, inum: u64) -> Result<ViewInode<'_>> {
        Ok(ViewInode { data: InodeRef::Owned(Box::new(self.session.inode_data(self.pfs, inum)?)), at: None })
    }

    fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
        Ok(self.session.lookup(self.pfs, dir, name)?.map(|e| DirEntry {
            name: name.to_vec(),
            inum: e.inum,
            obj_type: e.obj_type,
            key: e.key,
        }))
    }

    fn readdir(&self, dir: u64) -> Result<Vec<DirEntry>> {
        Ok(self
            .session
            .readdir(self.pfs, dir)?
            .into_iter()
            .map(|(name, e)| DirEntry { name, inum: e.inum, obj_type: e.obj_type, key: e.key })
            .collect())
    }

    fn read_data(&self, ino: &ViewInode<'_>, out: &mut dyn Sink) -> Result<u64> {
        self.session.read_data(self.pfs, ino.data.inum(), &mut Holes(out))?;
        Ok(ino.data.meta.size.get())
    }

    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.session.read_range(self.pfs, inum, offset, len)
    }
}

/// [`Session::read_data`] writes holes out as zeros: runs of zeros go to
/// the sink as holes again (a host file keeps them unallocated).
struct Holes<'o>(&'o mut dyn Sink);

impl std::io::Write for Holes<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.iter().all(|&b| b == 0) {
            self.0.hole(buf.len() as u64)?;
        } else {
            self.0.data(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_view_can_be_shared_between_threads() {
        fn sync<T: Sync>() {}
        sync::<super::SessionView<'_>>();
    }
}
