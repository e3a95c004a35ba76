//! PFS operations offline: list, create, delete and snapshot, done to the
//! super-root as `hammer2_ioctl_pfs_create`, `_pfs_delete` and
//! `_pfs_snapshot` (with `hammer2_inode_create_pfs`) do them.
//!
//! Facts (DragonFly's hammer2_ioctl.c / hammer2_inode.c as makefs runs
//! them, checked against the pfs-snapshot fixture and makefs runs):
//! - a PFS root is a directory inode in the super-root keyed by its label's
//!   hash plus the lowest free collision number (from 1, as for directory
//!   entries); `inum` 1, `iparent` 1 (the super-root counts as inode 1 for
//!   its children), mode 0755, nlinks 1, version 1, ctime = mtime = now,
//!   btime 0, uid/gid zero, `name_key` its key, `OPFLAG_PFSROOT` in its
//!   op_flags and `BREF_FLAG_PFSROOT` in its blockref, whose methods are
//!   the super-root's;
//! - `pfs-create`: the type asked (hammer2(8) defaults to MASTER; the
//!   current kernel refuses any other type with EOPNOTSUPP, older ones
//!   stored what they were given: we store it, and say so), new random
//!   `pfs_clid`/`pfs_fsid`, `pfs_inum` 0, compression LZ4 and check
//!   xxhash64 (the defaults; a PFS named `boot`/`BOOT` gets autozero, the
//!   loader cannot decompress);
//! - `snapshot`: the source root's blockset as it is (nothing copied: both
//!   roots reference the same blocks; a later change of either side
//!   rewrites its path copy-on-write), pfs_type MASTER with subtype
//!   SNAPSHOT, `pfs_inum` the source's plus one, new `pfs_clid`/`pfs_fsid`,
//!   `pfs_lsnap_tid` the transaction's id in both the snapshot and the
//!   source, compression and check methods inherited from the super-root
//!   (not from the source: the kernel builds the inode before it copies the
//!   blockset), and the source's blockref statistics;
//! - the kernel keeps the super-root's statistics incrementally and adds
//!   the new root's own inode (1 KiB, one inode) to them when it inserts a
//!   PFS root, and subtracts the same when it deletes one (the PFS roots
//!   newfs made were never added, so deleting one of those wraps its
//!   counters below zero; we clamp at zero instead). We keep that
//!   convention in the super-root's [`Bias`].
//! - `pfs-delete`: the PFS root's blockref leaves the super-root; its
//!   blocks stay allocated until a bulkfree, as with the kernel.

use super::{free_dirent_key, now_us, PfsRef, Session, Tx};
use crate::error::{Error, Result};
use crate::format::{
    encode_methods, uuid_from_disk, uuid_to_disk, Blockref, BlockrefType, CheckMethod, CompMethod, InodeData,
    ObjType, PfsSubtype, PfsType, BREF_FLAG_PFSROOT, INODE_BYTES, OPFLAG_PFSROOT, SET_COUNT,
};
use crate::read::walk::Flow;
use crate::write::chain::{Bias, Body, Chain, Slot, Table};
use crate::write::flush::Flusher;

/// One PFS as `pfs-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PfsInfo {
    pub label: String,
    /// Its key in the super-root.
    pub key: u64,
    pub pfs_type: String,
    pub subtype: String,
    pub clid: String,
    pub fsid: String,
    pub pfs_inum: u64,
    pub lsnap_tid: u64,
}

/// The label a snapshot gets when none is given: `LABEL.YYYYMMDD.HHMMSS`
/// (UTC), as hammer2(8)'s `snapshot` names it.
pub fn default_snapshot_name(label: &str, now_us: u64) -> String {
    // 2026-11-20T21:48:33.000000Z -> 20261120.214833
    let iso = crate::format::time::iso8601(now_us);
    let digits = |r: std::ops::Range<usize>| iso[r].replace(['-', ':'], "");
    format!("{label}.{}.{}", digits(0..10), digits(11..19))
}

/// Parses a PFS type as hammer2(8) names them (`master`, `slave`,
/// `soft_master` or `soft-master`, ...).
pub fn parse_pfs_type(s: &str) -> Result<PfsType> {
    let t = match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "cache" => PfsType::Cache,
        "slave" => PfsType::Slave,
        "soft_slave" => PfsType::SoftSlave,
        "soft_master" => PfsType::SoftMaster,
        "master" => PfsType::Master,
        "dummy" => PfsType::Dummy,
        _ => {
            return Err(Error::invalid(format!(
                "{s:?}: unknown PFS type (cache, slave, soft_slave, soft_master, master, dummy)"
            )))
        }
    };
    Ok(t)
}

/// What the kernel adds to the super-root's statistics per PFS root it inserts.
const PFS_ROOT_BIAS: Bias = Bias { data: INODE_BYTES as i128, inodes: 1 };

impl Session {
    /// Every PFS under the super-root, in key order.
    pub fn pfs_list(&self) -> Result<Vec<PfsInfo>> {
        let mut all: Vec<PfsInfo> = self
            .pfs_roots()?
            .into_iter()
            .map(|(key, ip)| {
                let m = &ip.meta;
                PfsInfo {
                    label: String::from_utf8_lossy(ip.name()).into_owned(),
                    key,
                    pfs_type: m.pfs_type().to_string(),
                    subtype: m.pfs_subtype().to_string(),
                    clid: uuid_from_disk(&m.pfs_clid).to_string(),
                    fsid: uuid_from_disk(&m.pfs_fsid).to_string(),
                    pfs_inum: m.pfs_inum.get(),
                    lsnap_tid: m.pfs_lsnap_tid.get(),
                }
            })
            .collect();
        all.sort_by_key(|p| p.key);
        Ok(all)
    }

    /// The root inodes of every PFS as this session sees them (PFSs
    /// created or deleted by its uncommitted operations included), in key
    /// order as `pfs-list` shows them.
    pub fn pfs_inodes(&self) -> Result<Vec<InodeData>> {
        let mut all = self.pfs_roots()?;
        all.sort_by_key(|(key, _)| *key);
        Ok(all.into_iter().map(|(_, ip)| ip).collect())
    }

    /// Every PFS root under the super-root (loaded or on media): its key
    /// and its inode.
    pub(super) fn pfs_roots(&self) -> Result<Vec<(u64, InodeData)>> {
        let sroot = self.super_root()?;
        let mut all = Vec::new();
        let mut failure = None;
        sroot.scan(&self.fs, 0, u64::MAX, &mut |b, chain, loc| {
            if b.kind() != BlockrefType::Inode {
                return Ok(Flow::Continue);
            }
            match chain.and_then(Chain::inode) {
                Some(ip) => all.push((b.key.get(), *ip)),
                None => match crate::read::tree::Tree::new(&self.fs).inode(b, loc) {
                    Ok(ip) => all.push((b.key.get(), *ip)),
                    Err(e) => {
                        failure = Some(e);
                        return Ok(Flow::Stop);
                    }
                },
            }
            Ok(Flow::Continue)
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }

    /// `pfs-create LABEL`: a new, empty PFS of type `pfs_type`.
    pub fn pfs_create(&mut self, label: &str, pfs_type: PfsType) -> Result<PfsRef> {
        self.operation(|s| {
            let mut ip = s.new_pfs_root(label)?;
            let m = &mut ip.meta;
            m.pfs_type = pfs_type.into();
            m.pfs_subtype = PfsSubtype::None.into();
            m.pfs_clid = uuid_to_disk(&uuid::Uuid::new_v4());
            m.pfs_fsid = uuid_to_disk(&uuid::Uuid::new_v4());
            let boot = label == "boot" || label == "BOOT";
            m.comp_algo = if boot { CompMethod::Autozero } else { CompMethod::Lz4 }.into();
            m.check_algo = CheckMethod::Xxhash64.into();
            s.insert_pfs_root(label, ip, Table::with_capacity(SET_COUNT), None)
        })
    }

    /// `snapshot`: a new PFS `name` whose root shares every block of
    /// `source`'s (see the module documentation).
    pub fn snapshot(&mut self, source: &PfsRef, name: &str) -> Result<PfsRef> {
        self.operation(|s| s.snapshot_op(source, name))
    }

    fn snapshot_op(&mut self, source: &PfsRef, name: &str) -> Result<PfsRef> {
        let mut ip = self.new_pfs_root(name)?;
        let tid = self.tx.tid;
        self.tx.changes += 1;
        let write = self.write;
        let Session { fs, tx: Tx { root, alloc, stats, .. }, .. } = self;
        let src = super::pfs_root_mut(fs, root, source)?;
        let sip = src.inode_mut().ok_or_else(|| Error::shape("PFS root is not an inode"))?;
        sip.meta.pfs_lsnap_tid = tid.into();
        let (src_meta_inum, directdata, embedded) =
            (sip.meta.pfs_inum.get(), sip.meta.is_directdata(), sip.u);
        let bias = src.bias;
        let table = src.table_mut().ok_or_else(|| Error::shape("PFS root holds no table"))?;
        // Share blocks, not chains: what is loaded below the source is
        // written now (unreachable until the header names it) so that both
        // roots reference the same blocks. A dry run writes nothing and
        // cannot read back what it did not write: it copies the chains.
        if write {
            let mut f = Flusher { device: &mut fs.device, alloc, tid, write, stats: *stats };
            for slot in &mut table.slots {
                f.slot(slot)?;
            }
            *stats = f.stats;
        }
        let shared = table.clone();
        let m = &mut ip.meta;
        m.pfs_inum = src_meta_inum.saturating_add(1).into();
        m.pfs_type = PfsType::Master.into();
        m.pfs_subtype = PfsSubtype::Snapshot.into();
        m.pfs_lsnap_tid = tid.into();
        m.pfs_clid = uuid_to_disk(&uuid::Uuid::new_v4());
        m.pfs_fsid = uuid_to_disk(&uuid::Uuid::new_v4());
        if directdata {
            m.op_flags |= crate::format::OPFLAG_DIRECTDATA;
            ip.u = embedded;
        }
        self.insert_pfs_root(name, ip, shared, Some(bias))
    }

    /// `pfs-delete LABEL`: the PFS root leaves the super-root (its blocks
    /// stay allocated until a bulkfree).
    pub fn pfs_delete(&mut self, label: &str) -> Result<()> {
        self.operation(|s| {
            let pfs = s.pfs(Some(label))?;
            s.tx.changes += 1;
            let fs = &s.fs;
            let sroot =
                s.tx.root
                    .get_mut(fs, 0, BlockrefType::Inode)?
                    .ok_or_else(|| Error::NotFound("super-root".into()))?;
            sroot.bias.data -= PFS_ROOT_BIAS.data;
            sroot.bias.inodes -= PFS_ROOT_BIAS.inodes;
            let table = sroot.table_mut().ok_or_else(|| Error::shape("super-root embeds data"))?;
            let removed = table.remove(fs, pfs.key, BlockrefType::Inode)?;
            touch(sroot);
            if let Some(b) = removed.as_ref().and_then(Slot::bref).filter(|b| b.radix() != 0) {
                s.tx.alloc.release(b.data_off.get())?;
            }
            s.tx.dirty = true;
            Ok(())
        })
    }

    /// A PFS root inode named `label` as `hammer2_inode_create_pfs` builds
    /// it (refused when a PFS of that label exists).
    fn new_pfs_root(&self, label: &str) -> Result<InodeData> {
        super::check_new_name(label.as_bytes())?;
        match self.pfs(Some(label)) {
            Ok(_) => return Err(Error::AlreadyExists(format!("PFS {label:?}"))),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let sroot = self.super_root_inode()?;
        let mut ip = InodeData::new_zeroed();
        let m = &mut ip.meta;
        let now = now_us();
        m.version = 1.into();
        m.type_ = ObjType::Directory.into();
        m.inum = 1.into();
        m.iparent = 1.into();
        m.mode = 0o755.into();
        m.nlinks = 1.into();
        m.ctime = now.into();
        m.mtime = now.into();
        m.comp_algo = sroot.meta.comp_algo;
        m.check_algo = sroot.meta.check_algo;
        m.op_flags = OPFLAG_PFSROOT;
        ip.filename[..label.len()].copy_from_slice(label.as_bytes());
        ip.meta.name_len = (label.len() as u16).into();
        Ok(ip)
    }

    /// The super-root's inode.
    fn super_root_inode(&self) -> Result<InodeData> {
        self.tx
            .root
            .find(&self.fs, 0, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound("super-root".into()))?
            .inode(&self.fs)
    }

    /// Inserts the PFS root `ip` holding `table` into the super-root under
    /// a free key for `label`. `stats_of`: the bias of the chain whose
    /// statistics the new root takes over (a snapshot's source).
    fn insert_pfs_root(
        &mut self,
        label: &str,
        mut ip: InodeData,
        table: Table,
        stats_of: Option<Bias>,
    ) -> Result<PfsRef> {
        let sroot_ip = self.super_root_inode()?;
        let key = {
            let sroot = self.super_root()?;
            free_dirent_key(&self.fs, &sroot, label.as_bytes())?
        };
        ip.meta.name_key = key.into();
        let mut bref = Blockref::zeroed();
        bref.type_ = BlockrefType::Inode.into();
        bref.key = key.into();
        bref.flags = BREF_FLAG_PFSROOT;
        bref.methods = encode_methods(sroot_ip.meta.check(), sroot_ip.meta.comp());
        let table = if ip.meta.is_directdata() { Table::with_capacity(0) } else { table };
        let chain =
            Chain { bref, body: Body::Inode { ip: Box::new(ip), table }, bias: stats_of.unwrap_or_default() };
        self.tx.changes += 1;
        let fs = &self.fs;
        let sroot = self
            .tx
            .root
            .get_mut(fs, 0, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound("super-root".into()))?;
        sroot.bias.data += PFS_ROOT_BIAS.data;
        sroot.bias.inodes += PFS_ROOT_BIAS.inodes;
        sroot.insert(fs, Slot::Node(Box::new(chain)))?;
        touch(sroot);
        self.tx.dirty = true;
        Ok(PfsRef { label: label.to_string(), key, root_inum: 1 })
    }
}

/// A directory's mtime and ctime now (the super-root's, when a PFS comes or goes).
fn touch(chain: &mut Chain) {
    if let Some(ip) = chain.inode_mut() {
        let now = now_us();
        ip.meta.mtime = now.into();
        ip.meta.ctime = now.into();
    }
}
