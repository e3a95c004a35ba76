//! `pfs`: the PFSs under the super-root (`hammer2 pfs-list`), with their
//! identities, inode-number allocator and a count of their inodes.

use crate::error::Result;
use crate::format::{uuid_from_disk, BlockrefType};
use crate::read::pfs::Pfs;
use crate::read::tree::{Flow, Tree};
use crate::volume::Hammer2;
use serde::Serialize;

/// One PFS.
#[derive(Debug, Clone, Serialize)]
pub struct PfsRow {
    pub label: String,
    pub pfs_type: String,
    pub pfs_subtype: String,
    pub pfs_clid: String,
    pub pfs_fsid: String,
    /// Inode number allocator: the highest number handed out.
    pub pfs_inum: u64,
    /// Inode number of the PFS root.
    pub root_inum: u64,
    /// INODE blockrefs under the PFS root (the root itself not included);
    /// None when the count could not be completed.
    pub inode_count: Option<u64>,
    /// The inode count the root's blockref carries as statistics.
    pub stats_inode_count: u64,
    pub data_count: u64,
    pub key: u64,
    pub data_off: u64,
    pub mirror_tid: u64,
    pub modify_tid: u64,
    pub pfs_lsnap_tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every PFS of `fs`, in key order.
pub fn list(fs: &Hammer2) -> Result<Vec<PfsRow>> {
    let tree = Tree::new(fs);
    let mut rows = Vec::new();
    for p in Pfs::list(&tree)? {
        let r = &p.root;
        let m = &r.data.meta;
        let mut count = 0u64;
        let scanned = tree.scan(r.blockset(), r.bref.data_off.get(), 0, u64::MAX, &mut |b, _| {
            if b.kind() == BlockrefType::Inode {
                count += 1;
            }
            Ok(Flow::Continue)
        });
        let stats = r.bref.stats();
        rows.push(PfsRow {
            label: p.name(),
            pfs_type: m.pfs_type().to_string(),
            pfs_subtype: m.pfs_subtype().to_string(),
            pfs_clid: uuid_from_disk(&m.pfs_clid).to_string(),
            pfs_fsid: uuid_from_disk(&m.pfs_fsid).to_string(),
            pfs_inum: m.pfs_inum.get(),
            root_inum: m.inum.get(),
            inode_count: scanned.is_ok().then_some(count),
            stats_inode_count: stats.inode_count.get(),
            data_count: stats.data_count.get(),
            key: r.bref.key.get(),
            data_off: r.bref.data_off.get(),
            mirror_tid: r.bref.mirror_tid.get(),
            modify_tid: r.bref.modify_tid.get(),
            pfs_lsnap_tid: m.pfs_lsnap_tid.get(),
            error: scanned.err().map(|e| e.to_string()),
        });
    }
    Ok(rows)
}
