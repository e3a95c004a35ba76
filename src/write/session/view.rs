//! A session's PFS as a [`FsView`]: the image as the operations so far left
//! it, committed or not.

use super::{PfsRef, Session};
use crate::error::Result;
use crate::format::InodeData;
use crate::read::pfs::DirEntry;
use crate::read::view::FsView;

/// PFS `pfs` of `session`, read through the session's chains.
pub struct SessionView<'s> {
    pub session: &'s Session,
    pub pfs: &'s PfsRef,
}

impl FsView for SessionView<'_> {
    fn label(&self) -> String {
        self.pfs.label.clone()
    }

    fn root_inum(&self) -> u64 {
        self.pfs.root_inum
    }

    fn inode(&self, inum: u64) -> Result<InodeData> {
        self.session.inode_data(self.pfs, inum)
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

    fn read(&self, inum: u64, out: &mut dyn std::io::Write) -> Result<()> {
        self.session.read_data(self.pfs, inum, out)
    }

    fn read_at(&self, inum: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.session.read_range(self.pfs, inum, offset, len)
    }
}
