//! PFSs, inodes and directories.
//!
//! The super-root (the volume header's `sroot_blockset`) holds one INODE
//! blockref per PFS root, keyed by the hash of its label. Under a PFS root,
//! one tree holds both the PFS's inode index (INODE blockrefs keyed by inode
//! number, bit 63 clear) and the root directory's entries (DIRENT blockrefs
//! keyed by name hash, bit 63 set). Other directories hold their DIRENT
//! blockrefs under their own inode. A dirent's name lives in the blockref's
//! check area when it fits in 64 bytes, otherwise in a 1 KiB data block.
//! Directories may also hold INODE blockrefs directly (the super-root does,
//! and so does older media); their name is the inode's own.

use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::dirhash::dirhash;
use crate::format::{
    Blockref, BlockrefType, InodeData, ObjType, DIRHASH_LOMASK, DIRHASH_VISIBLE, INODE_MAXNAME,
};
use crate::read::tree::{location, Flow, Tree};
use crate::read::walk::{Node, Reach};
use std::collections::{HashMap, HashSet};

/// An inode and the blockref that reaches it.
#[derive(Clone)]
pub struct Inode<'a> {
    pub bref: &'a Blockref,
    pub loc: Location,
    pub data: &'a InodeData,
}

impl<'a> Inode<'a> {
    pub fn inum(&self) -> u64 {
        self.data.meta.inum.get()
    }
    pub fn obj_type(&self) -> ObjType {
        self.data.meta.obj_type()
    }
    pub fn is_dir(&self) -> bool {
        self.obj_type() == ObjType::Directory
    }
    /// The inode's blockset (empty when it embeds its data).
    pub fn blockset(&self) -> &'a [Blockref] {
        if self.data.meta.is_directdata() {
            &[]
        } else {
            self.data.blockset()
        }
    }
}

/// A PFS: its root inode and label.
#[derive(Clone)]
pub struct Pfs<'a> {
    pub tree: Tree<'a>,
    pub root: Inode<'a>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub inum: u64,
    pub obj_type: ObjType,
    /// The entry's directory key (the name's hash plus a collision index).
    pub key: u64,
}

impl DirEntry {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// The super-root inode.
pub fn super_root<'a>(tree: &Tree<'a>) -> Result<Inode<'a>> {
    let set = &tree.fs.voldata.sroot_blockset;
    let (index, bref) = set
        .iter()
        .enumerate()
        .find(|(_, b)| b.kind() == BlockrefType::Inode)
        .ok_or_else(|| Error::NotFound("super-root (no INODE blockref in the volume header)".into()))?;
    let loc = location(bref, 0, index);
    let data = tree.inode(bref, &loc)?;
    Ok(Inode { bref, loc, data })
}

impl<'a> Pfs<'a> {
    /// Every PFS under the super-root, in key order.
    pub fn list(tree: &Tree<'a>) -> Result<Vec<Pfs<'a>>> {
        let sroot = super_root(tree)?;
        let mut out = Vec::new();
        tree.scan_nodes(sroot.blockset(), sroot.bref.data_off.get(), 0, u64::MAX, &mut |n| {
            if n.bref.kind() == BlockrefType::Inode {
                let data = tree.node_inode(n)?;
                out.push(Pfs { tree: *tree, root: Inode { bref: n.bref, loc: n.location(), data } });
            }
            Ok(Flow::Continue)
        })?;
        out.sort_by_key(|p| p.root.bref.key.get());
        Ok(out)
    }

    /// The PFS labelled `label`.
    pub fn find(tree: &Tree<'a>, label: &str) -> Result<Pfs<'a>> {
        Self::list(tree)?
            .into_iter()
            .find(|p| p.name() == label)
            .ok_or_else(|| Error::NotFound(format!("PFS {label:?}")))
    }

    /// DATA when it exists, else the only PFS other than LOCAL.
    pub fn default(tree: &Tree<'a>) -> Result<Pfs<'a>> {
        let all = Self::list(tree)?;
        let names: Vec<String> = all.iter().map(|p| p.name()).collect();
        if let Some(i) = names.iter().position(|n| n == "DATA") {
            return Ok(all[i].clone());
        }
        let others: Vec<usize> = (0..all.len()).filter(|&i| names[i] != "LOCAL").collect();
        match others.as_slice() {
            [i] => Ok(all[*i].clone()),
            _ => Err(Error::InvalidArgument(format!(
                "choose a PFS with --pfs (there are: {})",
                names.join(", ")
            ))),
        }
    }

    pub fn name(&self) -> String {
        String::from_utf8_lossy(self.root.data.name()).into_owned()
    }

    /// The inode numbered `inum` (the PFS root answers for its own number).
    pub fn inode(&self, inum: u64) -> Result<Inode<'a>> {
        if inum == self.root.inum() {
            return Ok(self.root.clone());
        }
        let node = self
            .tree
            .lookup(self.root.blockset(), self.root.bref.data_off.get(), inum, BlockrefType::Inode)?
            .ok_or_else(|| Error::NotFound(format!("inode {inum} in PFS {}", self.name())))?;
        let data = self.tree.node_inode(&node)?;
        let (bref, loc) = (node.bref, node.location());
        if data.meta.inum.get() != inum {
            return Err(Error::corrupt(
                CorruptKind::BadInode(format!("indexed as {inum} but numbered {}", data.meta.inum.get())),
                loc,
            ));
        }
        Ok(Inode { bref, loc, data })
    }

    /// Visits the entries of directory `dir` whose keys lie in `[lo, hi]`.
    pub fn scan_dir(
        &self,
        dir: &Inode<'a>,
        lo: u64,
        hi: u64,
        visit: &mut dyn FnMut(DirEntry) -> Result<Flow>,
    ) -> Result<()> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory(format!("inode {}", dir.inum())));
        }
        // Directory keys have bit 63 set; the root directory shares its tree
        // with the inode index, whose keys do not.
        let lo = lo.max(crate::format::DIRHASH_VISIBLE);
        let tree = self.tree;
        tree.scan_nodes(dir.blockset(), dir.bref.data_off.get(), lo, hi, &mut |n| {
            let b = n.bref;
            let entry = match b.kind() {
                BlockrefType::Dirent => dirent(&tree, n)?,
                BlockrefType::Inode => {
                    let ip = tree.node_inode(n)?;
                    DirEntry {
                        name: ip.name().to_vec(),
                        inum: ip.meta.inum.get(),
                        obj_type: ip.meta.obj_type(),
                        key: b.key.get(),
                    }
                }
                _ => return Ok(Flow::Continue),
            };
            visit(entry)
        })?;
        Ok(())
    }

    /// Every entry of directory `dir`, sorted by key.
    pub fn readdir(&self, dir: &Inode<'a>) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        self.scan_dir(dir, 0, u64::MAX, &mut |e| {
            out.push(e);
            Ok(Flow::Continue)
        })?;
        out.sort_by_key(|e| e.key);
        Ok(out)
    }

    /// The entry `name` in `dir`, found through its hash.
    pub fn lookup_name(&self, dir: &Inode<'a>, name: &[u8]) -> Result<Option<DirEntry>> {
        let hash = dirhash(name);
        let mut found = None;
        self.scan_dir(dir, hash & !DIRHASH_LOMASK, hash | DIRHASH_LOMASK, &mut |e| {
            if e.name == name {
                found = Some(e);
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        Ok(found)
    }

    /// Some of the inodes numbered `inums` (the entries of one directory),
    /// read in one pass over the PFS's inode index when their numbers lie
    /// close together (as writers allocate them), so that each index block
    /// is read and verified once per directory rather than once per entry.
    /// Only inodes found well (the first INODE blockref with the number as
    /// key, holding that number) are returned; the others are left to
    /// [`Pfs::inode`], so their errors come where they would anyway.
    pub fn inodes_near(&self, inums: &[u64]) -> HashMap<u64, Inode<'a>> {
        let mut found = HashMap::new();
        let root = &self.root;
        let wanted: HashSet<u64> =
            inums.iter().copied().filter(|&n| n != root.inum() && n < DIRHASH_VISIBLE).collect();
        let (Some(&lo), Some(&hi)) = (wanted.iter().min(), wanted.iter().max()) else { return found };
        // A scattered set would make the pass read much of the index.
        if wanted.len() < 2 || hi - lo > 16 * wanted.len() as u64 + 64 {
            return found;
        }
        let tree = self.tree;
        let mut seen = HashSet::new();
        // Errors end the pass early: what was not found is looked up alone.
        let _ = tree.scan_nodes(root.blockset(), root.bref.data_off.get(), lo, hi, &mut |n| {
            let key = n.bref.key.get();
            if n.bref.kind() != BlockrefType::Inode || !wanted.contains(&key) || !seen.insert(key) {
                return Ok(Flow::Continue);
            }
            if let Ok(data) = tree.node_inode(n) {
                if data.meta.inum.get() == key {
                    found.insert(key, Inode { bref: n.bref, loc: n.location(), data });
                }
            }
            Ok(Flow::Continue)
        });
        found
    }

    /// Resolves an absolute or PFS-relative path (symlinks are not followed).
    pub fn resolve(&self, path: &str) -> Result<Inode<'a>> {
        let mut cur = self.root.clone();
        let mut so_far = String::new();
        // `..` is refused, never looked up: an image may hold an entry of that name.
        for part in user_path(path)? {
            so_far.push('/');
            so_far.push_str(part);
            if !cur.is_dir() {
                return Err(Error::NotADirectory(so_far));
            }
            let e =
                self.lookup_name(&cur, part.as_bytes())?.ok_or_else(|| Error::NotFound(so_far.clone()))?;
            cur = self.inode(e.inum)?;
        }
        Ok(cur)
    }
}

/// Decodes a DIRENT the engine reached (names longer than the check area
/// live in its media, already read and verified).
pub(crate) fn dirent(tree: &Tree<'_>, n: &Node<'_>) -> Result<DirEntry> {
    let b = n.bref;
    let head = b.dirent();
    let namlen = head.namlen.get() as usize;
    let loc = || n.location();
    if namlen == 0 || namlen >= INODE_MAXNAME {
        return Err(Error::corrupt(CorruptKind::BadDirent(format!("name length {namlen}")), loc()));
    }
    let name = if namlen <= b.check.len() {
        b.check[..namlen].to_vec()
    } else {
        let media = match n.reach {
            Reach::Media(_) => {
                n.result()?;
                n.raw_media().unwrap_or(&[])
            }
            _ => tree.media_at(b, &loc())?,
        };
        if media.len() < namlen {
            return Err(Error::corrupt(
                CorruptKind::BadDirent(format!("name length {namlen} but its block holds {}", media.len())),
                loc(),
            ));
        }
        media[..namlen].to_vec()
    };
    Ok(DirEntry { name, inum: head.inum.get(), obj_type: ObjType::from(head.type_), key: b.key.get() })
}

/// The components of a path given by a user, resolved from the PFS root:
/// empty and `.` components are dropped (so `/`, `.` and `` name the root);
/// a `..` component or a NUL byte is refused rather than interpreted, since
/// the image itself may hold an entry literally named `..`.
pub fn user_path(path: &str) -> Result<Vec<&str>> {
    if path.contains('\0') {
        return Err(Error::InvalidArgument(format!("{path:?}: a path may not contain NUL")));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::InvalidArgument(format!(
            "{path}: '..' is not allowed in a path inside the image (give the path from the PFS root)"
        )));
    }
    Ok(parts)
}
