//! The namespace cross-check of one PFS, once its walk is over: every
//! directory entry names an inode of its type, every inode is named as
//! often as its link count says, no inode number appears twice, and the
//! semantic checks' verdicts; each finding carries the repair fsck may
//! apply.
//!
//! The inode and entry records come sorted by inode number (from memory or
//! merged from spilled runs, [`super::super::spill`]) and are joined in one
//! pass. The findings keep the order a walk-order check gives: entry
//! problems in walk order, then the per-inode ones by number. Paths for
//! messages are resolved afterwards, only for the inodes a finding names,
//! by further passes over the entries (one per level of the deepest path).
//!
//! An inode number met twice is reported here, at the end of its PFS's
//! walk (it used to be reported the moment the second one was met), so
//! that no per-inode state has to stay in memory during the walk.

use super::*;
use crate::format::{OFF_MASK, OFF_MASK_RADIX};
use std::collections::{BTreeSet, HashMap};

/// A repair a cross-check finding carries, attached to the finding once
/// its number is known.
enum Fix {
    /// Recount or reset a field of inode `.0`.
    Inode(u64, semantic::FieldFix),
    /// Remove the entry of directory `.0` at key `.1`.
    Dirent(u64, u64),
}

/// A finding of the cross-check whose paths are still to be resolved.
struct Pending {
    problem: Problem,
    place: Place,
    /// The detail, after the path of this inode when there is one.
    detail: String,
    detail_path: Option<u64>,
    /// Whether the place (an inode) gets its path.
    place_path: bool,
    fix: Option<Fix>,
}

impl Pending {
    fn new(problem: Problem, place: Place, detail: String, fix: Option<Fix>) -> Self {
        Pending { problem, place, detail, detail_path: None, place_path: false, fix }
    }
}

impl<'a> Pass<'a, '_> {
    /// Type and link count of inode `inum` of a PFS whose walk skipped
    /// shared subtrees, looked up through its index (bounded by the engine).
    fn lookup_type(&self, s: &PfsState<'a>, inum: u64) -> Option<(ObjType, u64)> {
        let (set, off) = s.root?;
        let node = self.tree.lookup(set, off, inum, T::Inode).ok()??;
        self.tree.node_inode(&node).ok().map(|ip| (ip.meta.obj_type(), ip.meta.nlinks.get()))
    }

    /// The blockref a record was made from, found again in its table.
    fn bref_at(&self, at: &At) -> Option<&'a Blockref> {
        let radix = at.parent_off & OFF_MASK_RADIX;
        if radix == 0 || radix > 32 {
            return None;
        }
        let media = self.fs.device.read(at.parent_off & OFF_MASK, 1usize << radix).ok()?;
        let table = if at.in_inode { Blockref::table(media.get(512..1024)?) } else { Blockref::table(media) };
        let b = table.get(at.index as usize)?;
        (b.data_off.get() == at.data_off && b.key.get() == at.key).then_some(b)
    }

    /// The name a recorded directory entry carries, decoded again from
    /// its blockref (empty if that fails now, which it did not at first).
    fn entry_name(&self, d: &DirentRec) -> Vec<u8> {
        let Some(b) = self.bref_at(&d.at) else { return Vec::new() };
        let loc = d.location();
        if b.kind() == T::Inode {
            return self.tree.inode(b, &loc).map(|ip| ip.name().to_vec()).unwrap_or_default();
        }
        let node = Node {
            depth: 0,
            index: d.at.index as usize,
            parent_off: d.at.parent_off,
            bref: b,
            reach: Reach::NoMedia,
            check: CheckOutcome::NotChecked,
        };
        crate::read::pfs::dirent(&self.tree, &node).map(|e| e.name).unwrap_or_default()
    }

    /// Cross-checks the PFS just walked; an error reading spilled records
    /// back ends the check.
    pub(super) fn finish_pfs(&mut self) {
        let Some(s) = self.pfs.take() else { return };
        let r = self.cross_check(s);
        self.spilled(r);
    }

    fn cross_check(&mut self, mut s: PfsState<'a>) -> Result<()> {
        let inodes = s.inodes.finish();
        let dirents = s.dirents.finish();
        let subdirs = s.subdirs.finish();
        let pfs = s.summary.name.clone();
        let partial = s.partial;
        // Findings in their final groups (see the module documentation).
        let mut twice: Vec<(u64, Location, u64)> = Vec::new();
        let mut walk_order: Vec<(u64, Pending)> = Vec::new();
        let (mut shared, mut counts, mut dirs, mut singles) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut ii = inodes.iter();
        let mut di = dirents.iter();
        let mut si = subdirs.iter();
        let (mut inode_next, mut dirent_next, mut subdir_next) = (ii.next(), di.next(), si.next());
        loop {
            let inum = match (&inode_next, &dirent_next) {
                (None, None) => break,
                (Some(i), None) => i.inum,
                (None, Some(d)) => d.inum,
                (Some(i), Some(d)) => i.inum.min(d.inum),
            };
            // Its inode records: the first in walk order counts; the PFS
            // root is apart (no entry names it).
            let (mut inode, mut root): (Option<InodeRec>, Option<InodeRec>) = (None, None);
            while let Some(r) = inode_next.filter(|r| r.inum == inum) {
                if r.root {
                    root.get_or_insert(r);
                } else if inode.is_none() {
                    inode = Some(r);
                } else {
                    twice.push((r.seq, r.location(), inum));
                }
                inode_next = ii.next();
            }
            // Its entries, in walk order.
            let mut named = 0u64;
            let mut first_dir = None;
            let mut looked_up = None;
            while let Some(d) = dirent_next.filter(|d| d.inum == inum) {
                named += 1;
                first_dir.get_or_insert(d.dir);
                let found = match &inode {
                    Some(r) => Some(r.obj_type()),
                    // The inode may lie in a subtree shared with another PFS.
                    None if partial => {
                        if looked_up.is_none() {
                            looked_up = Some(self.lookup_type(&s, inum));
                        }
                        looked_up.flatten().map(|(t, _)| t)
                    }
                    None => None,
                };
                let place = Place::Dirent { pfs: pfs.clone(), at: d.location() };
                match found {
                    None => walk_order.push((
                        d.seq,
                        Pending::new(
                            DIRENT_DANGLING,
                            place,
                            format!(
                                "{:?} names inode {inum}, which is not in the PFS",
                                String::from_utf8_lossy(&self.entry_name(&d))
                            ),
                            Some(Fix::Dirent(d.dir, d.at.key)),
                        ),
                    )),
                    Some(it) if it != d.obj_type() => {
                        let detail = format!(" (inode {inum}) is a {it} but its entry says {}", d.obj_type());
                        let mut p = Pending::new(DIRENT_BAD, place, detail, None);
                        p.detail_path = Some(inum);
                        walk_order.push((d.seq, p));
                    }
                    _ => {}
                }
                dirent_next = di.next();
            }
            // Directories among its entries.
            while subdir_next.is_some_and(|x| x < inum) {
                subdir_next = si.next();
            }
            let mut subdir_count = 0u64;
            while subdir_next == Some(inum) {
                subdir_count += 1;
                subdir_next = si.next();
            }
            let named_in = first_dir.map(|dir| (dir, named));
            // An inode in a shared subtree named by walked entries: more
            // names than links is certain damage (fewer may be named in
            // shared parts).
            if let Some(Some((t, nlinks))) = looked_up {
                let want = if t == ObjType::Directory { 1 } else { nlinks };
                if named > want {
                    let place = Place::Inode { pfs: pfs.clone(), inum, path: None, at: None };
                    let mut p = Pending::new(
                        INODE_NLINKS,
                        place,
                        format!("{t} with nlinks {nlinks}: named by {named} entries"),
                        None,
                    );
                    p.place_path = true;
                    shared.push(p);
                }
            }
            if let Some(r) = &inode {
                let (t, nlinks) = (r.obj_type(), r.nlinks);
                let want = if t == ObjType::Directory { 1 } else { nlinks };
                // In a PFS sharing subtrees with another, missing names may
                // lie in the shared parts (checked there); only excess is certain.
                if named != want && !(partial && named < want) {
                    let what = if named == 0 {
                        "no directory entry names it".to_string()
                    } else {
                        format!("named by {named} entries")
                    };
                    let fix = (named > 0 && t != ObjType::Directory)
                        .then_some(Fix::Inode(inum, semantic::FieldFix::Nlinks(named)));
                    let place = Place::Inode { pfs: pfs.clone(), inum, path: None, at: Some(r.location()) };
                    let mut p =
                        Pending::new(INODE_NLINKS, place, format!("{t} with nlinks {nlinks}: {what}"), fix);
                    p.place_path = named != 0;
                    counts.push(p);
                }
            }
            // The semantic checks (the root's too).
            for (r, is_root) in [(root, true), (inode, false)] {
                let Some(r) = r else { continue };
                let at = (!is_root).then(|| r.location());
                let sem = if r.obj_type() == ObjType::Directory {
                    semantic::directory(inum, r.nlinks, r.iparent, is_root, subdir_count, named_in, partial)
                } else if r.nlinks == 1 {
                    semantic::single(inum, r.iparent, named_in, partial).into_iter().collect()
                } else {
                    Vec::new()
                };
                for (p, inum, detail, fix) in sem {
                    let place = Place::Inode { pfs: pfs.clone(), inum, path: None, at: at.clone() };
                    let mut f = Pending::new(p, place, detail, Some(Fix::Inode(inum, fix)));
                    f.place_path = true;
                    if r.obj_type() == ObjType::Directory {
                        dirs.push(f);
                    } else {
                        singles.push(f);
                    }
                }
            }
        }
        ii.error()?;
        di.error()?;
        si.error()?;
        walk_order.sort_by_key(|(seq, _)| *seq);
        twice.sort_by_key(|(seq, _, _)| *seq);
        for (_, at, inum) in twice {
            self.report.add(
                BREF_DUPLICATE,
                Place::Blockref { pfs: Some(pfs.clone()), at },
                format!("inode number {inum} appears twice"),
            );
        }
        let all: Vec<Pending> = walk_order
            .into_iter()
            .map(|(_, p)| p)
            .chain(shared)
            .chain(counts)
            .chain(dirs)
            .chain(singles)
            .collect();
        let wanted: Vec<u64> = all
            .iter()
            .flat_map(|p| {
                let place = match (&p.place, p.place_path) {
                    (Place::Inode { inum, .. }, true) => Some(*inum),
                    _ => None,
                };
                place.into_iter().chain(p.detail_path)
            })
            .collect();
        let paths = self.paths(&dirents, &wanted)?;
        for mut p in all {
            if let Some(inum) = p.detail_path {
                p.detail = format!("{}{}", paths[&inum], p.detail);
            }
            if let (Place::Inode { inum, path, .. }, true) = (&mut p.place, p.place_path) {
                *path = Some(paths[inum].clone());
            }
            let finding = self.report.findings.len();
            match p.fix {
                Some(Fix::Inode(inum, fix)) => {
                    self.report.inode_fixes.push(semantic::InodeFix { finding, pfs: pfs.clone(), inum, fix })
                }
                Some(Fix::Dirent(dir, key)) => {
                    self.report.dirent_fixes.push(semantic::DirentFix { finding, pfs: pfs.clone(), dir, key })
                }
                None => {}
            }
            self.report.add(p.problem, p.place, p.detail);
        }
        self.summaries.push(s.summary);
        Ok(())
    }

    /// The path of each of `wanted` through the first entry (in walk
    /// order) naming it and then its directory's, up to an unnamed inode
    /// (the root) or a directory naming itself: one pass over the entries
    /// per level still unknown.
    fn paths(
        &self,
        dirents: &super::super::spill::Sorted<DirentRec>,
        wanted: &[u64],
    ) -> Result<HashMap<u64, String>> {
        // Inode -> its first entry (None: no entry names it).
        let mut first: HashMap<u64, Option<DirentRec>> = HashMap::new();
        let follow = |first: &HashMap<u64, Option<DirentRec>>,
                      inum: u64,
                      mut each: Box<dyn FnMut(&DirentRec) + '_>| {
            let (mut cur, mut parts) = (inum, 0usize);
            loop {
                match first.get(&cur) {
                    None => return Some(cur),
                    Some(None) => return None,
                    Some(Some(d)) => {
                        each(d);
                        parts += 1;
                        if parts > 4096 || d.dir == cur {
                            return None;
                        }
                        cur = d.dir;
                    }
                }
            }
        };
        loop {
            let pending: BTreeSet<u64> =
                wanted.iter().filter_map(|&w| follow(&first, w, Box::new(|_| {}))).collect();
            if pending.is_empty() {
                break;
            }
            let mut it = dirents.iter();
            for d in it.by_ref() {
                if pending.contains(&d.inum) {
                    first.entry(d.inum).or_insert(Some(d));
                }
            }
            it.error()?;
            for p in pending {
                first.entry(p).or_insert(None);
            }
        }
        let mut out = HashMap::new();
        for &w in wanted {
            if out.contains_key(&w) {
                continue;
            }
            let mut parts = Vec::new();
            follow(
                &first,
                w,
                Box::new(|d| parts.push(String::from_utf8_lossy(&self.entry_name(d)).into_owned())),
            );
            parts.reverse();
            out.insert(w, format!("/{}", parts.join("/")));
        }
        Ok(out)
    }
}
