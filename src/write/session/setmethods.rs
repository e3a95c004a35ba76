//! `setcomp` and `setcheck` as hammer2(8) has them: an inode's compression
//! (`comp_algo`: method in the low nibble, level in the high one, as
//! `HAMMER2_ENC_ALGO | HAMMER2_ENC_LEVEL` encode them) or check method
//! (`check_algo`) changes, for that inode alone or (`-r`) for everything
//! below a directory too. As with `hammer2_ioctl_inode_set`, only the
//! field changes (no time stamp): the methods apply to blocks written from
//! then on, and new inodes inherit them from their directory. `rewrite`
//! (ours) also rewrites the existing data blocks of the regular files
//! concerned with the new methods, copy-on-write.

use super::{PfsRef, Session};
use crate::error::{Error, Result};
use crate::format::{BlockrefType, CheckMethod, CompMethod, ObjType, DIRHASH_VISIBLE};
use crate::read::walk::Flow;

/// Which method `set_methods` changes, encoded as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `comp_algo`.
    Comp(u8),
    /// `check_algo`.
    Check(u8),
}

/// What `set_methods` changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SetMethodsReport {
    /// Inodes whose method changed.
    pub inodes: u64,
    /// Data blocks rewritten.
    pub blocks: u64,
}

/// Parses `ALGO[:LEVEL]` as hammer2(8)'s setcomp takes it: `none`,
/// `autozero`, `lz4`, `zlib` with an optional level 1..=9 (only zlib has
/// levels; 0 or none means its default, 6).
pub fn parse_comp(s: &str) -> Result<Methods> {
    let (algo, level) = match s.split_once(':') {
        Some((a, l)) => {
            let l: u8 =
                l.parse().map_err(|_| Error::invalid(format!("{s:?}: level {l:?} is not a number")))?;
            (a, Some(l))
        }
        None => (s, None),
    };
    let comp = match algo.to_ascii_lowercase().as_str() {
        "none" => CompMethod::None,
        "autozero" => CompMethod::Autozero,
        "lz4" => CompMethod::Lz4,
        "zlib" => CompMethod::Zlib,
        _ => {
            return Err(Error::invalid(format!("{algo:?}: unknown compression (none, autozero, lz4, zlib)")))
        }
    };
    let level = match (comp, level) {
        (_, None) | (_, Some(0)) => 0,
        (CompMethod::Zlib, Some(l @ 1..=9)) => l,
        (CompMethod::Zlib, Some(l)) => return Err(Error::invalid(format!("zlib level {l} outside 1..=9"))),
        (c, Some(_)) => return Err(Error::invalid(format!("{c} has no compression levels"))),
    };
    Ok(Methods::Comp(u8::from(comp) | (level << 4)))
}

/// Parses a check method as hammer2(8)'s setcheck takes it: `none`,
/// `disabled`, `crc32` (iSCSI CRC-32C), `xxhash64`, `sha192`.
pub fn parse_check(s: &str) -> Result<Methods> {
    let check = match s.to_ascii_lowercase().as_str() {
        "none" => CheckMethod::None,
        "disabled" => CheckMethod::Disabled,
        "crc32" | "iscsi32" => CheckMethod::Iscsi32,
        "xxhash64" => CheckMethod::Xxhash64,
        "sha192" => CheckMethod::Sha192,
        _ => {
            return Err(Error::invalid(format!(
                "{s:?}: unknown check method (none, disabled, crc32, xxhash64, sha192)"
            )))
        }
    };
    Ok(Methods::Check(check.into()))
}

impl Session {
    /// `setcomp`/`setcheck` on `path` of `pfs` (see the module documentation).
    pub fn set_methods(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        methods: Methods,
        recursive: bool,
        rewrite: bool,
    ) -> Result<SetMethodsReport> {
        self.operation(|s| s.set_methods_op(pfs, path, methods, (recursive, rewrite)))
    }

    fn set_methods_op(
        &mut self,
        pfs: &PfsRef,
        path: &str,
        methods: Methods,
        (recursive, rewrite): (bool, bool),
    ) -> Result<SetMethodsReport> {
        let (_, name, existing) = self.resolve_parent(pfs, path)?;
        let start = match existing {
            Some(e) => e.inum,
            None if name.is_empty() => pfs.root_inum,
            None => return Err(Error::NotFound(path.to_string())),
        };
        let mut report = SetMethodsReport::default();
        let mut todo = vec![start];
        let mut seen = std::collections::HashSet::new();
        while let Some(inum) = todo.pop() {
            if !seen.insert(inum) {
                continue;
            }
            let (kind, children) = self.with_inode(pfs, inum, |ip, table| {
                let kind = ip.meta.obj_type();
                let mut children = Vec::new();
                if recursive && kind == ObjType::Directory {
                    table.scan(&self.fs, DIRHASH_VISIBLE, u64::MAX, &mut |b, _, _| {
                        if b.kind() == BlockrefType::Dirent {
                            children.push(b.dirent().inum.get());
                        }
                        Ok(Flow::Continue)
                    })?;
                }
                Ok((kind, children))
            })?;
            todo.extend(children);
            self.tx.changes += 1;
            let chain = self.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            let field = match methods {
                Methods::Comp(v) => (&mut ip.meta.comp_algo, v),
                Methods::Check(v) => (&mut ip.meta.check_algo, v),
            };
            let changed = *field.0 != field.1;
            *field.0 = field.1;
            let directdata = ip.meta.is_directdata();
            if changed {
                report.inodes += 1;
                self.tx.dirty = true;
            }
            if rewrite && kind == ObjType::Regfile && !directdata {
                report.blocks += self.rewrite_blocks(pfs, inum)?;
                self.write_early(pfs, inum)?;
            }
        }
        Ok(report)
    }

    /// Rewrites every DATA block of file `inum` with its inode's methods.
    fn rewrite_blocks(&mut self, pfs: &PfsRef, inum: u64) -> Result<u64> {
        let (blocks, ip) = self.with_inode(pfs, inum, |ip, table| {
            let mut blocks = Vec::new();
            table.scan(&self.fs, 0, u64::MAX, &mut |b, _, loc| {
                if b.kind() == BlockrefType::Data {
                    blocks.push((*b, loc.clone()));
                }
                Ok(Flow::Continue)
            })?;
            Ok((blocks, *ip))
        })?;
        let comp = CompMethod::from(ip.meta.comp_algo & 15);
        let level = u32::from(ip.meta.comp_algo >> 4);
        let check = CheckMethod::from(ip.meta.check_algo & 15);
        let mut n = 0;
        for (b, loc) in blocks {
            let mut data = self.block_data(&b, &loc)?;
            data.resize(1usize << b.keybits.min(16), 0);
            let fs = &self.fs;
            let table = super::inode_mut(fs, &mut self.tx.root, pfs, inum)?
                .table_mut()
                .ok_or_else(|| Error::shape("file embeds data"))?;
            if let Some(old) = table.remove(fs, b.key.get(), BlockrefType::Data)? {
                if let Some(ob) = old.bref().filter(|ob| ob.radix() != 0) {
                    self.tx.alloc.release(ob.data_off.get())?;
                }
            }
            if !crate::format::compress::is_zero_block(&data) {
                self.store_block(pfs, inum, b.key.get(), b.keybits, &data, (comp, level, check))?;
            }
            n += 1;
        }
        Ok(n)
    }
}
