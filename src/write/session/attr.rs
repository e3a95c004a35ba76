//! Inode attributes (chmod, chown, times) and file sizes (truncate).

use super::{logical_block, now_us, set_size_and_times, xid_uuid, PfsRef, Session};
use crate::error::{Error, Location, Result};
use crate::format::compress;
use crate::format::{BlockrefType, CheckMethod, CompMethod, ObjType, PBUFSIZE};
use crate::read::walk::Flow;
use crate::write::chain::{Entry, Slot};

/// Attribute changes; `None` leaves a field as it is. Any change also sets
/// ctime to now, as the kernel's setattr does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (07777); the object type is kept.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Microseconds since the epoch.
    pub mtime: Option<u64>,
    pub atime: Option<u64>,
}

impl Session {
    /// `chmod`, `chown`, `touch` on an existing `path` ('/' is the PFS root).
    pub fn setattr(&mut self, pfs: &PfsRef, path: &str, attr: SetAttr) -> Result<()> {
        self.operation(|s| s.setattr_op(pfs, path, attr))
    }

    fn setattr_op(&mut self, pfs: &PfsRef, path: &str, attr: SetAttr) -> Result<()> {
        let (_, name, e) = self.resolve_parent(pfs, path)?;
        let inum = match (name.is_empty(), e) {
            (true, _) => pfs.root_inum,
            (false, Some(e)) => e.inum,
            (false, None) => return Err(Error::NotFound(path.to_string())),
        };
        self.setattr_inum_op(pfs, inum, attr, path)
    }

    /// [`Session::setattr`] on inode `inum`.
    pub fn setattr_inum(&mut self, pfs: &PfsRef, inum: u64, attr: SetAttr) -> Result<()> {
        self.operation(|s| s.setattr_inum_op(pfs, inum, attr, &format!("inode {inum}")))
    }

    fn setattr_inum_op(&mut self, pfs: &PfsRef, inum: u64, attr: SetAttr, path: &str) -> Result<()> {
        if attr.mode.is_some_and(|m| m > 0o7777) {
            return Err(Error::invalid(format!("{path}: mode past 07777")));
        }
        self.tx.changes += 1;
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        let m = &mut ip.meta;
        if let Some(mode) = attr.mode {
            m.mode = mode.into();
        }
        if let Some(uid) = attr.uid {
            m.uid = xid_uuid(uid);
        }
        if let Some(gid) = attr.gid {
            m.gid = xid_uuid(gid);
        }
        if let Some(t) = attr.mtime {
            m.mtime = t.into();
        }
        if let Some(t) = attr.atime {
            m.atime = t.into();
        }
        m.ctime = now_us().into();
        self.tx.dirty = true;
        Ok(())
    }

    /// `truncate`: sets the size of the regular file `path`. Growing leaves
    /// a hole; shrinking releases the blocks past the new end and rewrites
    /// the new last block at its new logical size with its tail zeroed
    /// (what the kernel's truncation leaves). A file that embeds its data
    /// keeps embedding it; a blockset file stays a blockset even when it
    /// shrinks below 512 bytes, as with the kernel, which embeds only at
    /// creation.
    pub fn truncate(&mut self, pfs: &PfsRef, path: &str, size: u64) -> Result<()> {
        self.operation(|s| s.truncate_op(pfs, path, size))
    }

    fn truncate_op(&mut self, pfs: &PfsRef, path: &str, new_size: u64) -> Result<()> {
        let (_, _, e) = self.existing(pfs, path)?;
        if e.obj_type != ObjType::Regfile {
            return Err(Error::invalid(format!("{path}: not a regular file")));
        }
        self.truncate_inum_op(pfs, e.inum, new_size, path)
    }

    /// [`Session::truncate`] of the regular file numbered `inum`.
    pub fn truncate_inum(&mut self, pfs: &PfsRef, inum: u64, size: u64) -> Result<()> {
        self.operation(|s| s.truncate_inum_op(pfs, inum, size, &format!("inode {inum}")))
    }

    fn truncate_inum_op(&mut self, pfs: &PfsRef, inum: u64, new_size: u64, path: &str) -> Result<()> {
        if new_size > i64::MAX as u64 {
            return Err(Error::invalid(format!("{path}: {new_size} is past the largest file size")));
        }
        let ip = self.inode_data(pfs, inum)?;
        if ip.meta.obj_type() != ObjType::Regfile {
            return Err(Error::invalid(format!("{path}: not a regular file")));
        }
        let size = ip.meta.size.get();
        if new_size >= size {
            // Growing is a write of nothing at the new end.
            return self.write_inum_op(pfs, inum, new_size, std::io::empty(), 0);
        }
        if ip.meta.is_directdata() {
            self.tx.changes += 1;
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            ip.u[new_size as usize..size as usize].fill(0);
            set_size_and_times(ip, new_size);
            self.tx.dirty = true;
            return Ok(());
        }
        // The blocks to drop, and what the new last block keeps.
        let tail = (new_size > 0).then(|| (new_size - 1) & !(PBUFSIZE - 1));
        let mut keys = Vec::new();
        self.with_inode(pfs, inum, |_, t| {
            t.scan(&self.fs, 0, u64::MAX, &mut |b, _, _| {
                if b.kind() == BlockrefType::Data {
                    keys.push(b.key.get());
                }
                Ok(Flow::Continue)
            })
        })?;
        keys.retain(|&k| tail.is_none_or(|t| k >= t));
        let kept = match tail {
            Some(t) if keys.contains(&t) => {
                let found = self.with_inode(pfs, inum, |_, tb| {
                    Ok(tb.find(&self.fs, t, BlockrefType::Data)?.map(|e| match e {
                        Entry::Clean(b, loc) => (b, loc),
                        Entry::Loaded(c) => (c.bref, Location::of(&c.bref, 0, 0)),
                    }))
                })?;
                match found {
                    Some((b, loc)) => {
                        let data = self.block_data(&b, &loc)?;
                        let keep = ((new_size - t) as usize).min(data.len());
                        Some(data[..keep].to_vec())
                    }
                    None => None,
                }
            }
            _ => None,
        };
        self.tx.changes += 1;
        let methods = (
            CompMethod::from(ip.meta.comp_algo & 15),
            u32::from(ip.meta.comp_algo >> 4),
            CheckMethod::from(ip.meta.check_algo & 15),
        );
        let fs = &self.fs;
        let chain = super::inode_mut(fs, &mut self.tx.root, pfs, inum)?;
        let table = chain.table_mut().ok_or_else(|| Error::shape("file embeds data"))?;
        let mut released = Vec::new();
        for k in keys {
            if let Some(b) = table.remove(fs, k, BlockrefType::Data)?.as_ref().and_then(Slot::bref) {
                if b.radix() != 0 {
                    released.push(b.data_off.get());
                }
            }
        }
        for off in released {
            self.tx.alloc.release(off)?;
        }
        if let (Some(t), Some(old)) = (tail, kept) {
            let (logical, keybits) = logical_block(new_size, t);
            let mut block = vec![0u8; logical];
            block[..old.len()].copy_from_slice(&old);
            if !compress::is_zero_block(&block) {
                self.store_block(pfs, inum, t, keybits, &block, methods)?;
            }
        }
        let chain = self.inode_mut(pfs, inum)?;
        let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
        set_size_and_times(ip, new_size);
        self.tx.dirty = true;
        Ok(())
    }
}
