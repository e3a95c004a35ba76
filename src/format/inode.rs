//! The 1 KiB inode: 256 bytes of metadata, 256 of file name, and either a
//! blockset of four blockrefs or 512 bytes of embedded data.

use super::blockref::Blockref;
use super::types::{CheckMethod, CompMethod, ObjType, PfsSubtype, PfsType};
use super::{EMBEDDED_BYTES, INODE_MAXNAME, OPFLAG_DIRECTDATA, OPFLAG_PFSROOT, SET_COUNT};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `hammer2_inode_meta_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct InodeMeta {
    pub version: U16,
    pub reserved02: u8,
    pub pfs_subtype: u8,
    pub uflags: U32,
    pub rmajor: U32,
    pub rminor: U32,
    pub ctime: U64,
    pub mtime: U64,
    pub atime: U64,
    pub btime: U64,
    pub uid: [u8; 16],
    pub gid: [u8; 16],
    pub type_: u8,
    pub op_flags: u8,
    pub cap_flags: U16,
    pub mode: U32,
    pub inum: U64,
    pub size: U64,
    pub nlinks: U64,
    pub iparent: U64,
    pub name_key: U64,
    pub name_len: U16,
    pub ncopies: u8,
    pub comp_algo: u8,
    pub target_type: u8,
    pub check_algo: u8,
    pub pfs_nmasters: u8,
    pub pfs_type: u8,
    pub pfs_inum: U64,
    pub pfs_clid: [u8; 16],
    pub pfs_fsid: [u8; 16],
    pub data_quota: U64,
    pub unused_b8: U64,
    pub inode_quota: U64,
    pub unused_c8: U64,
    pub pfs_lsnap_tid: U64,
    pub reserved_d8: U64,
    pub decrypt_check: U64,
    pub reserved_e8: [U64; 3],
}

/// `hammer2_inode_data_t`.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct InodeData {
    pub meta: InodeMeta,
    pub filename: [u8; INODE_MAXNAME],
    /// Blockset or embedded data, depending on `OPFLAG_DIRECTDATA`.
    pub u: [u8; EMBEDDED_BYTES],
}

impl InodeMeta {
    pub fn obj_type(&self) -> ObjType {
        ObjType::from(self.type_)
    }
    pub fn pfs_type(&self) -> PfsType {
        PfsType::from(self.pfs_type & 0x0f)
    }
    pub fn pfs_subtype(&self) -> PfsSubtype {
        PfsSubtype::from(self.pfs_subtype)
    }
    pub fn comp(&self) -> CompMethod {
        CompMethod::from(self.comp_algo & 15)
    }
    pub fn check(&self) -> CheckMethod {
        CheckMethod::from(self.check_algo & 15)
    }
    pub fn is_directdata(&self) -> bool {
        self.op_flags & OPFLAG_DIRECTDATA != 0
    }
    pub fn is_pfsroot(&self) -> bool {
        self.op_flags & OPFLAG_PFSROOT != 0
    }
}

impl InodeData {
    /// Views the first 1 KiB of `bytes` as an inode.
    pub fn from_bytes(bytes: &[u8]) -> Option<&InodeData> {
        InodeData::ref_from_prefix(bytes).ok().map(|(i, _)| i)
    }

    pub fn new_zeroed() -> InodeData {
        <Self as zerocopy::FromZeros>::new_zeroed()
    }

    /// The file name stored in the inode, cut at `name_len` (bounded by the field).
    pub fn name(&self) -> &[u8] {
        let n = (self.meta.name_len.get() as usize).min(INODE_MAXNAME);
        &self.filename[..n]
    }

    /// The embedded blockset (meaningless when the inode holds direct data).
    /// The inode's number.
    pub fn inum(&self) -> u64 {
        self.meta.inum.get()
    }

    pub fn obj_type(&self) -> ObjType {
        self.meta.obj_type()
    }

    pub fn is_dir(&self) -> bool {
        self.obj_type() == ObjType::Directory
    }

    pub fn blockset(&self) -> &[Blockref] {
        let set = Blockref::table(&self.u);
        debug_assert_eq!(set.len(), SET_COUNT);
        set
    }

    pub fn blockset_mut(&mut self) -> &mut [Blockref] {
        Blockref::table_mut(&mut self.u)
    }
}

impl InodeMeta {
    /// Unix uid carried in the uid UUID.
    pub fn unix_uid(&self) -> u32 {
        super::unix_xid(&self.uid)
    }
    /// Unix gid carried in the gid UUID.
    pub fn unix_gid(&self) -> u32 {
        super::unix_xid(&self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_hammer2_disk_h() {
        assert_eq!(std::mem::size_of::<InodeMeta>(), 256);
        assert_eq!(std::mem::size_of::<InodeData>(), 1024);
        assert_eq!(offset_of!(InodeMeta, type_), 0x50);
        assert_eq!(offset_of!(InodeMeta, inum), 0x58);
        assert_eq!(offset_of!(InodeMeta, name_len), 0x80);
        assert_eq!(offset_of!(InodeMeta, check_algo), 0x85);
        assert_eq!(offset_of!(InodeMeta, pfs_inum), 0x88);
        assert_eq!(offset_of!(InodeMeta, pfs_fsid), 0xa0);
        assert_eq!(offset_of!(InodeMeta, pfs_lsnap_tid), 0xd0);
        assert_eq!(offset_of!(InodeData, filename), 0x100);
        assert_eq!(offset_of!(InodeData, u), 0x200);
    }
}
