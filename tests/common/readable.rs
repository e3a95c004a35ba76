//! What an image's files read back as: every regular file and symlink of
//! every PFS reached from its root through readable directories, by
//! `PFS:path`, with a digest of its bytes (files that fail to read are
//! left out). Repair tests compare it before and after.

use hammer2::device::{Access, Device};
use hammer2::format::ObjType;
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::read::view::FsView;
use hammer2::volume::{CopyChoice, Hammer2};
use sha2::Digest;
use std::collections::BTreeMap;

/// Files larger than this are left out.
pub const MAX_FILE: u64 = 64 << 20;

/// `PFS:path` -> SHA-256 of the content (a symlink: of its target).
pub fn readable_files(spec: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(dev) = Device::open(spec, Access::ReadOnly) else { return out };
    let Ok(fs) = Hammer2::open(dev, CopyChoice::Best) else { return out };
    let tree = Tree::new(&fs);
    let Ok(list) = Pfs::list(&tree) else { return out };
    for pfs in list {
        let label = FsView::label(&pfs);
        let mut todo = vec![(FsView::root_inum(&pfs), String::new(), 0usize)];
        let mut seen = std::collections::HashSet::new();
        while let Some((dir, path, depth)) = todo.pop() {
            if depth > 64 || !seen.insert(dir) {
                continue;
            }
            let Ok(entries) = FsView::readdir(&pfs, dir) else { continue };
            for e in entries {
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                match e.obj_type {
                    ObjType::Directory => todo.push((e.inum, p, depth + 1)),
                    ObjType::Regfile => {
                        // Hostile sizes are not read out (a sparse 2^62).
                        let size = FsView::inode(&pfs, e.inum).map(|i| i.data.meta.size.get());
                        if !size.is_ok_and(|s| s <= MAX_FILE) {
                            continue;
                        }
                        let mut buf = Vec::new();
                        if FsView::read(&pfs, e.inum, &mut buf).is_ok() {
                            out.insert(format!("{label}:{p}"), sha2::Sha256::digest(&buf).to_vec());
                        }
                    }
                    ObjType::Softlink => {
                        if let Ok(t) =
                            FsView::inode(&pfs, e.inum).and_then(|ino| FsView::read_link(&pfs, &ino))
                        {
                            out.insert(format!("{label}:{p}"), sha2::Sha256::digest(&t).to_vec());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The files of `pristine` that `before` still read back exactly.
pub fn exact(pristine: &BTreeMap<String, Vec<u8>>, before: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    pristine.iter().filter(|(p, h)| before.get(*p) == Some(h)).map(|(p, _)| p.clone()).collect()
}
