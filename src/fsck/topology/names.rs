//! The namespace cross-check of one PFS, once its walk is over: every
//! directory entry names an inode of its type, every inode is named as
//! often as its link count says, and the semantic checks' verdicts; each
//! finding carries the repair fsck may apply.

use super::*;

/// A repair a cross-check finding carries, attached to the finding once
/// its number is known.
enum Fix {
    /// Recount or reset a field of inode `.0`.
    Inode(u64, semantic::FieldFix),
    /// Remove the entry of directory `.0` at key `.1`.
    Dirent(u64, u64),
}

impl<'a> Pass<'a, '_> {
    /// Type of inode `inum` of a PFS whose walk skipped shared subtrees,
    /// looked up through its index (bounded by the engine).
    fn lookup_type(&self, s: &PfsState<'a>, inum: u64) -> Option<(ObjType, u64)> {
        let (set, off) = s.root?;
        let node = self.tree.lookup(set, off, inum, T::Inode).ok()??;
        self.tree.node_inode(&node).ok().map(|ip| (ip.meta.obj_type(), ip.meta.nlinks.get()))
    }

    /// The name a recorded directory entry carries, decoded again from
    /// its blockref (empty if that fails now, which it did not at first).
    fn entry_name(&self, d: &DirentRec<'a>) -> Vec<u8> {
        let loc = d.location();
        if d.bref.kind() == T::Inode {
            return self.tree.inode(d.bref, &loc).map(|ip| ip.name().to_vec()).unwrap_or_default();
        }
        let node = Node {
            depth: 0,
            index: d.index as usize,
            parent_off: d.parent_off,
            bref: d.bref,
            reach: Reach::NoMedia,
            check: CheckOutcome::NotChecked,
        };
        crate::read::pfs::dirent(&self.tree, &node).map(|e| e.name).unwrap_or_default()
    }

    /// Cross-checks one PFS's directory entries against its inodes, by
    /// binary search in the inodes sorted by number and in an index of the
    /// entries sorted by the number they name.
    pub(super) fn finish_pfs(&mut self) {
        let Some(mut s) = self.pfs.take() else { return };
        let sem = std::mem::take(&mut self.sem);
        if !s.stray.is_empty() {
            s.inodes.extend(std::mem::take(&mut s.stray).into_values());
            s.inodes.sort_unstable_by_key(|r| r.inum);
        }
        s.inodes.shrink_to_fit();
        // (inum, position of the entry in walk order), sorted: the names of
        // an inode are one run, its first in walk order first.
        let mut by_inum: Vec<(u64, usize)> = s.dirents.iter().enumerate().map(|(i, d)| (d.inum, i)).collect();
        by_inum.sort_unstable();
        let names_of = |inum: u64| -> &[(u64, usize)] {
            let lo = by_inum.partition_point(|e| e.0 < inum);
            let hi = lo + by_inum[lo..].partition_point(|e| e.0 == inum);
            &by_inum[lo..hi]
        };
        let named = |inum: u64| names_of(inum).len() as u64;
        let inode_of =
            |inum: u64| s.inodes.binary_search_by_key(&inum, |r| r.inum).ok().map(|i| &s.inodes[i]);
        let path = |inum: u64| -> String {
            let mut parts = Vec::new();
            let mut cur = inum;
            while let Some(&(_, i)) = names_of(cur).first() {
                let d = &s.dirents[i];
                parts.push(String::from_utf8_lossy(&self.entry_name(d)).into_owned());
                if parts.len() > 4096 || d.dir == cur {
                    break;
                }
                cur = d.dir;
            }
            parts.reverse();
            format!("/{}", parts.join("/"))
        };
        let pfs = s.summary.name.clone();
        let mut looked_up: HashMap<u64, (ObjType, u64)> = HashMap::new();
        let mut found_problems: Vec<(Problem, Place, String, Option<Fix>)> = Vec::new();
        for d in &s.dirents {
            let inum = d.inum;
            let found = match inode_of(inum) {
                Some(r) => Some(r.t),
                // The inode may lie in a subtree shared with another PFS.
                None if s.partial => {
                    let f = self.lookup_type(&s, inum);
                    if let Some(f) = f {
                        looked_up.insert(inum, f);
                    }
                    f.map(|(t, _)| t)
                }
                None => None,
            };
            match found {
                None => found_problems.push((
                    DIRENT_DANGLING,
                    Place::Dirent { pfs: pfs.clone(), at: d.location() },
                    format!(
                        "{:?} names inode {inum}, which is not in the PFS",
                        String::from_utf8_lossy(&self.entry_name(d))
                    ),
                    Some(Fix::Dirent(d.dir, d.location().key)),
                )),
                Some(it) if it != d.t => found_problems.push((
                    DIRENT_BAD,
                    Place::Dirent { pfs: pfs.clone(), at: d.location() },
                    format!("{} (inode {inum}) is a {it} but its entry says {}", path(inum), d.t),
                    None,
                )),
                _ => {}
            }
        }
        // Inodes in shared subtrees named by walked entries: more names
        // than links is certain damage (fewer may be named in shared parts).
        let mut shared: Vec<_> = looked_up.iter().collect();
        shared.sort_by_key(|(inum, _)| **inum);
        for (inum, (t, nlinks)) in shared {
            let n = named(*inum);
            let want = if *t == ObjType::Directory { 1 } else { *nlinks };
            if n > want {
                found_problems.push((
                    INODE_NLINKS,
                    Place::Inode { pfs: pfs.clone(), inum: *inum, path: Some(path(*inum)), at: None },
                    format!("{t} with nlinks {nlinks}: named by {n} entries"),
                    None,
                ));
            }
        }
        for r in &s.inodes {
            let (inum, t, nlinks) = (r.inum, r.t, r.nlinks);
            let n = named(inum);
            let want = if t == ObjType::Directory { 1 } else { nlinks };
            // In a PFS sharing subtrees with another, missing names may lie
            // in the shared parts (checked there); only excess is certain.
            if n != want && !(s.partial && n < want) {
                let what = if n == 0 {
                    "no directory entry names it".to_string()
                } else {
                    format!("named by {n} entries")
                };
                let fix = (n > 0 && t != ObjType::Directory)
                    .then_some(Fix::Inode(inum, semantic::FieldFix::Nlinks(n)));
                found_problems.push((
                    INODE_NLINKS,
                    Place::Inode {
                        pfs: pfs.clone(),
                        inum,
                        path: (n != 0).then(|| path(inum)),
                        at: Some(r.location()),
                    },
                    format!("{t} with nlinks {nlinks}: {what}"),
                    fix,
                ));
            }
        }
        for (p, inum, detail, fix) in sem.finish(s.partial) {
            let at = inode_of(inum).map(|r| r.location());
            let place = Place::Inode { pfs: pfs.clone(), inum, path: Some(path(inum)), at };
            found_problems.push((p, place, detail, Some(Fix::Inode(inum, fix))));
        }
        drop(by_inum);
        for (p, place, detail, fix) in found_problems {
            let finding = self.report.findings.len();
            match fix {
                Some(Fix::Inode(inum, fix)) => {
                    self.report.inode_fixes.push(semantic::InodeFix { finding, pfs: pfs.clone(), inum, fix })
                }
                Some(Fix::Dirent(dir, key)) => {
                    self.report.dirent_fixes.push(semantic::DirentFix { finding, pfs: pfs.clone(), dir, key })
                }
                None => {}
            }
            self.report.add(p, place, detail);
        }
        self.summaries.push(s.summary);
    }
}
