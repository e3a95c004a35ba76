//! Rebuilding unreadable nodes (`-y`): an indirect block or an inode of a
//! PFS's tree that fails its check, its radix or its range is replaced, in
//! one write session, by what older header copies and the media still hold.
//!
//! For each damaged node (found by the topology pass under the copy in use)
//! the walk of the current tree tells its PFS and its *owner*: the inode
//! whose table holds it (the PFS root for the inode index). Then, in order:
//!
//! 1. **An older header copy's node**: the same node (same owner, type, key
//!    and keybits) under an older valid copy, at another place on the
//!    media, whose whole subtree verifies (every node and data block). For
//!    the inode index it is taken only when no inode it names has a newer
//!    verified version on the media and every inode the current tree names
//!    in its key range is in it: otherwise step 2 loses less.
//! 2. **The salvage index** ([`crate::salvage`]): in the inode index, the
//!    inodes of the lost key range that the current tree's entries name (or
//!    the older copy's node held), each as its newest verified version on
//!    the media; below a file, its data blocks in the lost key range, the
//!    newest one per key whose check code holds.
//! 3. **Cut out** (`destroy`'s code): the blockref is removed. What it held
//!    is lost; the inodes that were named only below it are filed under
//!    `/lost+found` by the pass after ([`super::lostfound`]), the entries
//!    naming inodes that were only in it are removed.
//!
//! The salvage index costs a read of the whole media (as `hammer2_recover
//! list`); it is built only when a plan needs it (an inode-index node, a
//! file's indirect block, a data block no older copy holds), also with
//! `-n`, which says what `-y` would do.
//!
//! What is not done yet: a directory's lost entries are not rebuilt from
//! the media by name hash (a damaged directory block is taken from an older
//! copy or cut out, its inodes then go to `/lost+found`); a damaged PFS root
//! or super-root is the rollback's ([`super::rollback`]).

use super::{Finding, FsckReport, Place, RepairMode};
use super::{
    BREF_CHECK, BREF_DECOMPRESS, BREF_OTHER, BREF_RADIX, BREF_RANGE, BREF_UNKNOWN_CHECK, DIRENT_DANGLING,
    TREE_DEPTH,
};
use crate::device::{Access, Device};
use crate::error::{Location, Result};
use crate::format::{Blockref, BlockrefType, InodeData, ObjType};
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Step, Visitor};
use crate::salvage::{Index, ScanOptions};
use crate::volume::{CopyChoice, Hammer2};
use crate::write::chain::Slot;
use std::collections::{BTreeMap, BTreeSet};

/// Problems that make a node unreadable.
pub(super) const UNREADABLE: [super::Problem; 7] =
    [BREF_CHECK, BREF_UNKNOWN_CHECK, BREF_RADIX, BREF_RANGE, BREF_OTHER, BREF_DECOMPRESS, TREE_DEPTH];

/// The PFSs (by label) where a node block (not a file's data) is still
/// unreadable: their inodes and entries are not all known, so nothing
/// that counts them (link counts, dangling entries, unnamed inodes) is
/// repaired there.
pub(super) fn pfs_with_unreadable_nodes(report: &FsckReport) -> std::collections::HashSet<String> {
    report
        .findings
        .iter()
        .filter(|f| {
            !f.repaired
                && UNREADABLE.iter().any(|p| p.id == f.problem.id)
                && f.location.location().is_some_and(|l| l.bref_type != Some(BlockrefType::Data))
        })
        .filter_map(|f| f.location.pfs().map(str::to_string))
        .collect()
}

/// Where the walk is: above the PFSs, or inside one below an owner inode.
#[derive(Clone, Debug)]
enum Ctx {
    Volume,
    SuperRoot,
    Pfs { label: String, owner: u64, kind: ObjType, size: u64 },
}

/// The owner of a damaged node.
#[derive(Clone, Debug)]
struct Owner {
    pfs: String,
    inum: u64,
    kind: ObjType,
    size: u64,
    /// The owner is the PFS root (the node is in the inode index or the
    /// root directory).
    pfs_root: bool,
}

/// What replaces a damaged node.
enum Plan {
    Copy {
        bref: Blockref,
    },
    Inodes(Vec<InodeData>),
    Blocks(Vec<Blockref>),
    Cut,
    /// Nothing to do (a data block no other copy of which verifies).
    Keep,
}

struct Rebuild {
    finding: usize,
    owner: Owner,
    loc: Location,
    plan: Plan,
    what: String,
}

/// Calls `f` for every node of `fs`'s topology with the owner context.
fn walk_owned<'a>(fs: &'a Hammer2, f: &mut dyn FnMut(&Node<'a>, &Ctx)) {
    struct W<'f, 'a> {
        f: &'f mut dyn FnMut(&Node<'a>, &Ctx),
    }
    impl<'a> Visitor<'a> for W<'_, 'a> {
        type Ctx = Ctx;
        type Out = Nothing;
        fn visit(&mut self, n: &Node<'a>, ctx: &Ctx) -> Step<Ctx, Nothing> {
            (self.f)(n, ctx);
            let Some(media) = n.media() else { return Step::Leaf(Nothing) };
            match n.bref.kind() {
                BlockrefType::Inode => {
                    let Some(ip) = InodeData::from_bytes(media) else { return Step::Leaf(Nothing) };
                    let m = &ip.meta;
                    let sub = match ctx {
                        Ctx::Volume => Ctx::SuperRoot,
                        Ctx::SuperRoot => Ctx::Pfs {
                            label: String::from_utf8_lossy(ip.name()).into_owned(),
                            owner: m.inum.get(),
                            kind: m.obj_type(),
                            size: m.size.get(),
                        },
                        Ctx::Pfs { label, .. } => Ctx::Pfs {
                            label: label.clone(),
                            owner: m.inum.get(),
                            kind: m.obj_type(),
                            size: m.size.get(),
                        },
                    };
                    if m.is_directdata() {
                        Step::Leaf(Nothing)
                    } else {
                        Step::Descend(sub)
                    }
                }
                BlockrefType::Indirect => Step::Descend(ctx.clone()),
                _ => Step::Leaf(Nothing),
            }
        }
    }
    let opts = Options { data: DataBlocks::Skip, ..Options::default() };
    let mut w = W { f };
    Engine::new(fs, opts).run(&fs.voldata.sroot_blockset, 0, &Ctx::Volume, &mut w);
}

/// Whether `b` and everything below it reads and verifies.
fn verifies(fs: &Hammer2, b: &Blockref) -> bool {
    struct V(bool);
    impl<'a> Visitor<'a> for V {
        type Ctx = ();
        type Out = Nothing;
        fn visit(&mut self, n: &Node<'a>, _: &()) -> Step<(), Nothing> {
            if n.error().is_some() {
                self.0 = false;
                return Step::Stop;
            }
            if n.children().is_empty() {
                Step::Leaf(Nothing)
            } else {
                Step::Descend(())
            }
        }
    }
    let mut v = V(true);
    Engine::new(fs, Options::default()).run(std::slice::from_ref(b), 0, &(), &mut v);
    v.0
}

fn key_end(loc: &Location) -> u64 {
    loc.key.saturating_add(if loc.keybits >= 64 { u64::MAX } else { (1u64 << loc.keybits) - 1 })
}

fn same(n: &Node<'_>, loc: &Location) -> bool {
    let b = n.bref;
    Some(b.kind()) == loc.bref_type
        && b.data_off.get() == loc.data_off
        && b.key.get() == loc.key
        && b.keybits == loc.keybits
        && n.parent_off == loc.parent_off
}

/// The inode number a DIRENT_DANGLING finding's entry names.
fn dangling_inum(f: &Finding) -> Option<u64> {
    let rest = f.detail.split(" names inode ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Plans (and with `-y` applies, in the run's write session) the rebuild
/// of every unreadable node of the topology under the copy in use. Returns
/// whether anything was rebuilt (the session then holds it, for the driver
/// to stage and check). With `-n`/`-p` each finding says what `-y` would do.
pub(super) fn rebuild_pass(
    tx: &mut super::txn::RepairTx,
    mode: RepairMode,
    report: &mut FsckReport,
) -> Result<bool> {
    let spec = &tx.spec().to_string();
    let targets: Vec<usize> = report
        .topology
        .clone()
        .filter(|&i| {
            let f = &report.findings[i];
            !f.repaired
                && (UNREADABLE.iter().any(|p| p.id == f.problem.id)
                    || f.problem.id == super::BREF_RESERVED.id
                    || super::semantic::misdirected_inode(spec, f))
                && matches!(f.location, Place::Blockref { pfs: Some(_), .. })
                && matches!(
                    f.location.location().and_then(|l| l.bref_type),
                    Some(BlockrefType::Indirect | BlockrefType::Inode | BlockrefType::Data)
                )
        })
        .collect();
    if targets.is_empty() {
        return Ok(false);
    }
    let fs = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Best)?;
    // Owners, by finding.
    let mut owners: BTreeMap<usize, Owner> = BTreeMap::new();
    {
        let locs: Vec<(usize, Location)> = targets
            .iter()
            .filter_map(|&i| Some((i, report.findings[i].location.location()?.clone())))
            .collect();
        walk_owned(&fs, &mut |n, ctx| {
            for (i, loc) in &locs {
                if same(n, loc) {
                    if let Ctx::Pfs { label, owner, kind, size } = ctx {
                        let pfs_root = false;
                        owners.insert(
                            *i,
                            Owner { pfs: label.clone(), inum: *owner, kind: *kind, size: *size, pfs_root },
                        );
                    }
                }
            }
        });
    }
    // Which owners are PFS roots: the owner of a PFS root's own table.
    let roots = pfs_roots(&fs);
    for o in owners.values_mut() {
        o.pfs_root = roots.get(&o.pfs) == Some(&o.inum);
    }
    // Older valid copies of the root volume, newest first.
    let mut older: Vec<(usize, u64)> = fs.headers[fs.root_position()]
        .copies
        .iter()
        .filter(|c| c.is_valid() && c.index != fs.copy)
        .filter_map(|c| Some((c.index, c.mirror_tid()?)))
        .collect();
    older.sort_by_key(|&(_, tid)| std::cmp::Reverse(tid));
    // Without -y the media is not scanned (a read of all of it, for every
    // image a check meets): the plan says what -y looks for there.
    let salvage = std::cell::OnceCell::new();
    if mode != RepairMode::Yes {
        let _ = salvage.set(None);
    }
    let dangling: Vec<(String, u64)> = report
        .findings
        .iter()
        .filter(|f| f.problem.id == DIRENT_DANGLING.id && !f.repaired)
        .filter_map(|f| Some((f.location.pfs()?.to_string(), dangling_inum(f)?)))
        .collect();
    let mut plans = Vec::new();
    let mut wants = Vec::new();
    for &i in &targets {
        let Some(owner) = owners.get(&i).cloned() else { continue };
        let Some(loc) = report.findings[i].location.location().cloned() else { continue };
        wants.push((i, owner, loc));
    }
    let pairs: Vec<(Owner, Location)> = wants.iter().map(|(_, o, l)| (o.clone(), l.clone())).collect();
    let olds = from_older(spec, &older, &pairs);
    for ((i, owner, loc), old) in wants.into_iter().zip(olds) {
        let (plan, mut what) = plan_one(&fs, old, &salvage, &dangling, &owner, &loc);
        let by_media = owner.pfs_root && key_end(&loc) < crate::format::DIRHASH_VISIBLE
            || matches!(owner.kind, ObjType::Regfile | ObjType::Softlink)
            || loc.bref_type == Some(BlockrefType::Data);
        if mode != RepairMode::Yes && by_media && !matches!(plan, Plan::Copy { .. }) {
            what = format!(
                "rebuilt from what a scan of the media finds for keys {:#x}-{:#x} (inodes the entries name, \
                 a file's data blocks), or else {}",
                loc.key,
                key_end(&loc),
                match plan {
                    Plan::Keep => "left as it is".to_string(),
                    _ => "cut out".to_string(),
                }
            );
        }
        plans.push(Rebuild { finding: i, owner, loc, plan, what });
    }
    if mode != RepairMode::Yes {
        for p in &plans {
            let verb = if p.what.starts_with("not repaired") { "; " } else { "; with -y: " };
            report.findings[p.finding].detail.push_str(&format!("{verb}{}", p.what));
        }
        return Ok(false);
    }
    drop(fs);
    if plans.iter().all(|p| matches!(p.plan, Plan::Keep)) {
        for p in &plans {
            report.findings[p.finding].detail.push_str(&format!("; {}", p.what));
        }
        return Ok(false);
    }
    let outcome = (|| -> Result<Vec<Option<String>>> {
        let s = tx.session()?;
        let mut each = Vec::new();
        for p in &plans {
            let cp = s.checkpoint();
            let done = s.pfs(Some(&p.owner.pfs)).and_then(|pfs| match &p.plan {
                Plan::Copy { bref, .. } => {
                    s.fix_replace_node(&pfs, p.owner.inum, &p.loc, Some(Slot::Clean(*bref)))
                }
                Plan::Cut => s.fix_replace_node(&pfs, p.owner.inum, &p.loc, None),
                Plan::Keep => Ok(()),
                Plan::Inodes(list) => {
                    s.fix_replace_node(&pfs, p.owner.inum, &p.loc, None)?;
                    list.iter().try_for_each(|ip| s.fix_insert_inode(&pfs, ip))
                }
                Plan::Blocks(list) => {
                    s.fix_replace_node(&pfs, p.owner.inum, &p.loc, None)?;
                    s.fix_insert_blocks(&pfs, p.owner.inum, list)
                }
            });
            if done.is_err() {
                s.restore(cp)?;
            }
            each.push(done.err().map(|e| e.to_string()));
        }
        Ok(each)
    })();
    let mut committed = false;
    for (n, p) in plans.iter().enumerate() {
        let f = &mut report.findings[p.finding];
        if matches!(p.plan, Plan::Keep) {
            f.detail.push_str(&format!("; {}", p.what));
            continue;
        }
        match &outcome {
            Ok(each) => match &each[n] {
                None => {
                    committed = true;
                    f.done(&p.what);
                }
                Some(why) => f.left(why),
            },
            Err(e) => f.left(e),
        }
    }
    Ok(committed)
}

/// PFS label -> root inode number.
fn pfs_roots(fs: &Hammer2) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    walk_owned(fs, &mut |n, ctx| {
        if let (Ctx::SuperRoot, Some(media)) = (ctx, n.media()) {
            if let Some(ip) = InodeData::from_bytes(media) {
                out.insert(String::from_utf8_lossy(ip.name()).into_owned(), ip.meta.inum.get());
            }
        }
    });
    out
}

/// The same nodes under older copies: for each `(owner, location)`, the
/// (copy, tid, blockref) of the newest copy holding a node of that owner,
/// type, key and keybits at another place, whose subtree verifies. Each
/// older tree is walked once for all of them.
type Older = Option<(usize, u64, Blockref)>;

fn from_older(spec: &str, older: &[(usize, u64)], wants: &[(Owner, Location)]) -> Vec<Older> {
    type Key = (String, u64, u8, u64, u8);
    let key_of = |o: &Owner, l: &Location| -> Key {
        (o.pfs.clone(), o.inum, l.bref_type.map_or(0, u8::from), l.key, l.keybits)
    };
    let mut out: Vec<Older> = vec![None; wants.len()];
    for &(copy, tid) in older {
        let mut open: std::collections::HashMap<Key, Vec<usize>> = std::collections::HashMap::new();
        for (i, (o, l)) in wants.iter().enumerate() {
            if out[i].is_none() {
                open.entry(key_of(o, l)).or_default().push(i);
            }
        }
        if open.is_empty() {
            break;
        }
        let Ok(dev) = Device::open(spec, Access::ReadOnly) else { continue };
        let Ok(ofs) = Hammer2::open(dev, CopyChoice::Index(copy)) else { continue };
        let mut found: Vec<(usize, Blockref)> = Vec::new();
        walk_owned(&ofs, &mut |n, ctx| {
            let b = n.bref;
            if let Ctx::Pfs { label, owner, .. } = ctx {
                let k = (label.clone(), *owner, u8::from(b.kind()), b.key.get(), b.keybits);
                if let Some(list) = open.get(&k) {
                    for &i in list {
                        if b.data_off.get() != wants[i].1.data_off {
                            found.push((i, *b));
                        }
                    }
                }
            }
        });
        for (i, b) in found {
            if out[i].is_none() && verifies(&ofs, &b) {
                out[i] = Some((copy, tid, b));
            }
        }
    }
    out
}

/// The inode numbers an inode-index node names (inodes and, below
/// indirect blocks, theirs), when it reads.
fn inums_below(fs: &Hammer2, b: &Blockref) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let _ = crate::read::walk::scan(
        fs,
        Options { data: DataBlocks::Skip, ..Options::default() },
        std::slice::from_ref(b),
        0,
        &mut |n| {
            if n.bref.kind() == BlockrefType::Inode {
                out.insert(n.bref.key.get());
            }
            Ok(crate::read::walk::Flow::Continue)
        },
    );
    out
}

/// What replaces one damaged node, and the words saying so (see the
/// module documentation for the order of the sources).
fn plan_one(
    fs: &Hammer2,
    old: Older,
    salvage: &std::cell::OnceCell<Option<Index>>,
    dangling: &[(String, u64)],
    owner: &Owner,
    loc: &Location,
) -> (Plan, String) {
    let (lo, hi) = (loc.key, key_end(loc));
    // The salvage index, scanned the first time a plan needs it (a read of
    // the whole media, as `hammer2_recover list` does).
    let lookup = || -> Option<(&Index, crate::salvage::PfsId)> {
        let ix =
            salvage.get_or_init(|| crate::salvage::scan(fs, &ScanOptions::default(), None).ok()).as_ref()?;
        let named = ix.pfs_named(&owner.pfs);
        let pid = named
            .iter()
            .copied()
            .find(|&id| ix.pfs()[id as usize].live)
            .or_else(|| named.first().copied())?;
        Some((ix, pid))
    };
    let damaged_off = loc.data_off & !0x3f;
    // A data block: the same block of an older copy, else the newest other
    // version of it the media holds (same key and size) that verifies.
    if loc.bref_type == Some(BlockrefType::Data) {
        if let Some((copy, tid, b)) = old {
            return (
                Plan::Copy { bref: b },
                format!("replaced by the block header copy #{copy} (mirror_tid {tid:#x}) holds"),
            );
        }
        if let Some((ix, pid)) = lookup() {
            let mut v: Vec<Blockref> = ix
                .data_blocks(fs, pid, owner.inum)
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.bref)
                .filter(|b| {
                    b.key.get() == loc.key && b.keybits == loc.keybits && b.data_off.get() != loc.data_off
                })
                .collect();
            v.sort_by_key(|b| (b.mirror_tid.get(), b.modify_tid.get()));
            if let Some(b) = v.into_iter().rev().find(|b| verifies(fs, b)) {
                return (
                    Plan::Copy { bref: b },
                    format!(
                        "replaced by an older version of the block found on the media (written in transaction {:#x})",
                        b.mirror_tid.get()
                    ),
                );
            }
        }
        return (
            Plan::Keep,
            "not repaired: no other verified copy of the block exists; copy the file out (hammer2_edit get), \
             then write the range again or hammer2_edit destroy PATH"
                .to_string(),
        );
    }
    // The inode index: keys below the directory-hash bit in a PFS root.
    if owner.pfs_root && hi < crate::format::DIRHASH_VISIBLE {
        let mut wanted: BTreeSet<u64> = dangling
            .iter()
            .filter(|(p, inum)| *p == owner.pfs && (lo..=hi).contains(inum))
            .map(|(_, inum)| *inum)
            .collect();
        if loc.bref_type == Some(BlockrefType::Inode) {
            wanted.insert(loc.key);
        }
        let in_old = old.map(|(_, _, b)| inums_below(fs, &b)).unwrap_or_default();
        if let Some((ix, pid)) = lookup() {
            let newest = |inum: u64| {
                ix.versions(pid, inum)
                    .ok()?
                    .into_iter()
                    .rev()
                    .find(|v| v.verified && v.data_off != damaged_off)
            };
            // Directories restored name more inodes of the range (their
            // entries were not walked by the check): to a fixpoint. Only
            // named inodes come back: an inode the older node holds that no
            // entry names was removed since.
            let mut list = Vec::new();
            let mut missing = 0;
            let mut todo: Vec<u64> = wanted.iter().copied().collect();
            while let Some(inum) = todo.pop() {
                let found = newest(inum).and_then(|v| Index::inode(fs, &v).ok());
                let found = match found {
                    Some(ip) if ip.meta.inum.get() == inum => Some(ip),
                    _ => raw_inode(fs, ix, inum, damaged_off),
                };
                match found {
                    Some(ip) => {
                        if ip.meta.obj_type() == ObjType::Directory && !ip.meta.is_directdata() {
                            for named in entries_of(fs, &ip) {
                                if (lo..=hi).contains(&named) && wanted.insert(named) {
                                    todo.push(named);
                                }
                            }
                        }
                        list.push(*ip);
                    }
                    _ => missing += 1,
                }
            }
            list.sort_by_key(|ip| ip.meta.inum.get());
            // The older copy's node as it stands, when it holds exactly
            // those inodes, each at its newest version.
            if let Some((copy, tid, b)) = old {
                let current = in_old == wanted
                    && wanted
                        .iter()
                        .all(|&inum| same_version(fs, &b, inum, newest(inum).map(|v| v.data_off)));
                if current {
                    return (
                        Plan::Copy { bref: b },
                        format!(
                            "rebuilt from header copy #{copy} (mirror_tid {tid:#x}): {} inodes",
                            in_old.len()
                        ),
                    );
                }
            }
            if !list.is_empty() {
                let lost = if missing > 0 { format!(", {missing} not found (lost)") } else { String::new() };
                return (
                    Plan::Inodes(list),
                    format!(
                        "rebuilt from the media: {} inodes, each its newest verified version{lost}",
                        wanted.len() - missing
                    ),
                );
            }
        }
        if let Some((copy, tid, b)) = old {
            return (
                Plan::Copy { bref: b },
                format!("rebuilt from header copy #{copy} (mirror_tid {tid:#x})"),
            );
        }
        return (Plan::Cut, cut_text(loc));
    }
    if matches!(owner.kind, ObjType::Regfile | ObjType::Softlink)
        && loc.bref_type == Some(BlockrefType::Indirect)
    {
        if let Some((ix, pid)) = lookup() {
            if let Ok(blocks) = ix.data_blocks(fs, pid, owner.inum) {
                let mut by_key: BTreeMap<u64, Vec<Blockref>> = BTreeMap::new();
                for d in blocks {
                    let k = d.bref.key.get();
                    if d.bref.kind() == BlockrefType::Data
                        && (lo..=hi).contains(&k)
                        && k < owner.size
                        && d.bref.key_end() <= hi
                        && d.bref.data_off.get() != loc.data_off
                    {
                        by_key.entry(k).or_default().push(d.bref);
                    }
                }
                let mut chosen = Vec::new();
                for (_, mut v) in by_key {
                    v.sort_by_key(|b| (b.mirror_tid.get(), b.modify_tid.get()));
                    if let Some(b) = v.into_iter().rev().find(|b| verifies(fs, b)) {
                        chosen.push(b);
                    }
                }
                if !chosen.is_empty() {
                    let bytes: u64 = chosen.iter().map(|b| b.key_end() - b.key.get() + 1).sum();
                    return (
                        Plan::Blocks(chosen.clone()),
                        format!(
                            "rebuilt from the media: {} data blocks ({bytes} bytes) of inode {} in keys {lo:#x}-{hi:#x}, the rest of the range a hole",
                            chosen.len(),
                            owner.inum
                        ),
                    );
                }
            }
        }
    }
    if let Some((copy, tid, b)) = old {
        return (Plan::Copy { bref: b }, format!("rebuilt from header copy #{copy} (mirror_tid {tid:#x})"));
    }
    (Plan::Cut, cut_text(loc))
}

/// A raw inode of number `inum` that no verified blockref names (its
/// blockref lay in the damaged block), when exactly one such copy exists
/// and everything its blockset names verifies: its blocks' check codes
/// then vouch for the blockset, the only part of it a tree depends on.
fn raw_inode(fs: &Hammer2, ix: &Index, inum: u64, damaged_off: u64) -> Option<Box<InodeData>> {
    let mut found: Option<Box<InodeData>> = None;
    for &off in ix.unverified() {
        if off == damaged_off {
            continue;
        }
        let mut ip = Box::new(<InodeData as zerocopy::FromZeros>::new_zeroed());
        if fs.device.read_into(off, zerocopy::IntoBytes::as_mut_bytes(ip.as_mut())).is_err() {
            continue;
        }
        if ip.meta.inum.get() != inum || ip.meta.version.get() != 1 {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(ip);
    }
    let ip = found?;
    if !ip.meta.is_directdata()
        && !ip.blockset().iter().filter(|b| b.kind() != BlockrefType::Empty).all(|b| verifies(fs, b))
    {
        return None;
    }
    Some(ip)
}

/// The inode numbers a directory's entries name (as far as its tree reads).
fn entries_of(fs: &Hammer2, ip: &InodeData) -> Vec<u64> {
    let mut out = Vec::new();
    let _ = crate::read::walk::scan(
        fs,
        Options { data: DataBlocks::Skip, ..Options::default() },
        ip.blockset(),
        0,
        &mut |n| {
            if n.bref.kind() == BlockrefType::Dirent {
                out.push(n.bref.dirent().inum.get());
            }
            Ok(crate::read::walk::Flow::Continue)
        },
    );
    out
}

/// Whether the older node names inode `inum` at `data_off` already.
fn same_version(fs: &Hammer2, b: &Blockref, inum: u64, data_off: Option<u64>) -> bool {
    let Some(off) = data_off else { return false };
    let mut same = false;
    let _ = crate::read::walk::scan(
        fs,
        Options { data: DataBlocks::Skip, ..Options::default() },
        std::slice::from_ref(b),
        0,
        &mut |n| {
            if n.bref.kind() == BlockrefType::Inode && n.bref.key.get() == inum && n.bref.offset() == off {
                same = true;
            }
            Ok(crate::read::walk::Flow::Continue)
        },
    );
    same
}

fn cut_text(loc: &Location) -> String {
    format!(
        "cut out (nothing holds a verified copy of keys {:#x}-{:#x}): what lay only below it is lost; \
         inodes it named that no entry names any more go to /lost+found",
        loc.key,
        key_end(loc)
    )
}
