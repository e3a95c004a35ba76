//! Structure repairs: what the topology pass found wrong in the tree's
//! addressing and bookkeeping, set right in the run's write session (one
//! commit for the whole run, under its exclusive lock, crash-consistent
//! like every commit: see [`super::txn`]).
//!
//! | problem | repair |
//! |---|---|
//! | [`BREF_STATS`] | the node and every node above it rewritten: the flush recomputes `data_count` and `inode_count` from what lies below (each child's own media plus its figures; an inode counts itself, a PFS root passes its figures up without itself), as the kernel's flush keeps them; `leaf_count` is recomputed too |
//! | [`BREF_INODE_SIZE`] | the inode rewritten: a new 1 KiB block (readers only ever used the first KiB) |
//! | [`BREF_ORDER`] | the table sorted by key (nothing is lost: every entry stays) |
//! | [`BREF_KEY_DUP`] | the entry whose block verifies, or else the newer (`modify_tid`), keeps the key; the other, a directory entry, is re-inserted under a free key of its name's collision space (a lookup by name scans that space), anything else is dropped and the finding says what was lost |
//! | [`BREF_KEY`] | an inode of a PFS's index re-inserted under its number, a directory entry (or an inode that is its own entry) under its name's hash; a data block or an indirect block has no provable key (a file's offset is known only from the key itself), so a data block is dropped (the file reads zeros there, as a hole) and an indirect block is left, saying so |
//! | [`BREF_TYPE`] | the INODE type set back when the entry's block is an inode that verifies and is keyed as one (dropping it would lose the inode and all below it: in the super-root a whole PFS); else the entry dropped: no reader follows it (they skip a type not allowed under its parent), so nothing readable is lost |
//! | [`DATA_PAST_EOF`] | the block dropped, as a truncate to the inode's size does: the size is the one field a reader trusts for the file's end, so nothing a reader sees changes (raising the size instead would make bytes appear that no write put inside the file, and the block's `modify_tid` cannot prove it newer than the size: the inode is rewritten whenever its blocks are) |
//! | [`DATA_KEYBITS`] | the keybits set to the block's media size (a raw block holds exactly its logical bytes; a compressed one, when it decodes, to the power of two that holds what it decodes to) when the key is aligned to it and the range meets no other entry; else the block is left, saying why |
//!
//! Nodes are named by their path of `data_off`s from the super-root
//! blockset ([`crate::write::session::NodePath`]), found by one walk of the
//! tree in use. The repairs are applied in an order that keeps those paths
//! valid: rewrites in place first, then removals, sorts, and last the
//! re-insertions (which may create indirect blocks); a repair whose node
//! moved meanwhile says so and is left to the next run.

use super::{may_repair, FsckOptions, FsckReport, Place, RepairMode};
use super::{
    BREF_CHECK, BREF_DUPLICATE, BREF_OTHER, BREF_RADIX, BREF_RANGE, BREF_UNKNOWN_CHECK, DIRENT_DANGLING,
    TREE_DEPTH,
};
use super::{
    BREF_INODE_SIZE, BREF_KEY, BREF_KEY_DUP, BREF_ORDER, BREF_STATS, BREF_TYPE, DATA_KEYBITS, DATA_PAST_EOF,
};
use super::{DIRENT_BAD, INODE_BAD};
use crate::error::{Error, Location, Result};
use crate::format::{Blockref, BlockrefType as T, CompMethod, DIRHASH_VISIBLE};
use crate::read::tree::Tree;
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Reach, Step, Visitor};
use crate::volume::Hammer2;
use crate::write::chain::{Bias, Slot, Table};
use crate::write::session::{free_name_key, sort_table, Session};
use std::collections::HashMap;

/// The problems repaired here.
pub const IDS: [super::ProblemId; 10] = [
    DIRENT_BAD.id,
    INODE_BAD.id,
    BREF_STATS.id,
    BREF_INODE_SIZE.id,
    BREF_ORDER.id,
    BREF_KEY_DUP.id,
    BREF_KEY.id,
    BREF_TYPE.id,
    DATA_PAST_EOF.id,
    DATA_KEYBITS.id,
];

/// Every node block of the tree in use: `data_off` -> (the parent's
/// `data_off`, 0 for the volume header; the node's type). A node shared by
/// snapshots is recorded under the first parent met.
struct Parents {
    map: HashMap<u64, (u64, T)>,
    /// The inode number each readable inode block holds.
    inums: HashMap<u64, u64>,
}

impl<'a> Visitor<'a> for Parents {
    type Ctx = ();
    type Out = Nothing;
    fn visit(&mut self, n: &Node<'a>, _: &()) -> Step<(), Nothing> {
        let k = n.bref.kind();
        if matches!(k, T::Inode | T::Indirect) && n.bref.offset() != 0 {
            self.map.entry(n.bref.data_off.get()).or_insert((n.parent_off, k));
            if let Some(ip) =
                n.media().filter(|_| k == T::Inode).and_then(crate::format::InodeData::from_bytes)
            {
                self.inums.insert(n.bref.data_off.get(), ip.meta.inum.get());
            }
            if n.media().is_some() && !matches!(n.reach, Reach::Shared { .. }) {
                return Step::Descend(());
            }
        }
        Step::Leaf(Nothing)
    }
}

impl Parents {
    fn of(fs: &Hammer2) -> Parents {
        let mut p = Parents { map: HashMap::new(), inums: HashMap::new() };
        let opts = Options { data: DataBlocks::Skip, ..Default::default() };
        Engine::new(fs, opts).run(&fs.voldata.sroot_blockset, 0, &(), &mut p);
        p
    }

    /// The path from the super-root blockset down to the node at `off`
    /// (empty for 0, the volume header); None when the walk did not meet it.
    /// The entry at `at` as its parent's media holds it (an inode's
    /// blockset, or an indirect block's table).
    fn slot(&self, fs: &Hammer2, at: &Location) -> Option<Blockref> {
        let &(_, kind) = self.map.get(&at.parent_off)?;
        let base = at.parent_off & !0x3f;
        let table = if kind == T::Inode { base + 512 } else { base };
        let mut b = Blockref::zeroed();
        let pos = table.checked_add(u64::try_from(at.index).ok()?.checked_mul(128)?)?;
        fs.device.read_into(pos, zerocopy::IntoBytes::as_mut_bytes(&mut b)).ok()?;
        (b.data_off.get() == at.data_off && b.key.get() == at.key).then_some(b)
    }

    fn path(&self, off: u64) -> Option<Vec<u64>> {
        let mut path = Vec::new();
        let mut at = off;
        while at != 0 {
            if path.len() > crate::read::walk::MAX_DEPTH {
                return None;
            }
            path.push(at);
            at = self.map.get(&at)?.0;
        }
        path.reverse();
        Some(path)
    }

    /// Why the inode at `off` cannot be indexed by its number in the PFS
    /// root ending `owner`, if it cannot: a number no index entry may
    /// have (0, the root's own, one with the visible bit of name keys)
    /// means the blockref points at some other inode's block.
    fn bad_inum(&self, owner: &[u64], off: u64) -> Option<&'static str> {
        let Some(&inum) = self.inums.get(&off) else { return Some("the inode cannot be read") };
        let root = owner.last().and_then(|o| self.inums.get(o)).copied();
        (inum == 0 || inum & DIRHASH_VISIBLE != 0 || Some(inum) == root).then_some(
            "the block holds an inode number no index entry may have (the root's, 0, or a name key): \
             the blockref points at another structure",
        )
    }

    /// The longest prefix of `path` ending at an inode: the inode whose
    /// key space holds the entries below it.
    fn owner(&self, path: &[u64]) -> Option<Vec<u64>> {
        let end = path.iter().rposition(|off| self.map.get(off).is_some_and(|(_, t)| *t == T::Inode))?;
        Some(path[..=end].to_vec())
    }
}

/// One repair to make: the finding it answers and what to do.
enum Todo {
    /// Rewrite the node (statistics recomputed when `restat`).
    Node { path: Vec<u64>, restat: bool },
    /// Set a DATA entry's keybits to what its media proves.
    Keybits { holder: Vec<u64>, at: Location },
    /// Drop an entry.
    Drop { holder: Vec<u64>, at: Location },
    /// Set an inode's number (a PFS root's: 1) or its name length (the one
    /// its key proves).
    Field { path: Vec<u64>, inum: Option<u64>, name_len: Option<u16> },
    /// Give back the INODE type to an entry whose block proves to be one.
    Retype { holder: Vec<u64>, at: Location },
    /// Resolve two entries of one key in a table.
    Dup { holder: Vec<u64>, owner: Option<Vec<u64>>, at: Location },
    /// Sort a table.
    Sort { holder: Vec<u64> },
    /// A table sorted for an earlier finding.
    SortedBefore { holder: Vec<u64> },
    /// Re-insert an entry under the key of its inode number (`by_inum`)
    /// or of its name.
    Rekey { holder: Vec<u64>, owner: Vec<u64>, at: Location, by_inum: bool },
}

impl Todo {
    fn phase(&self) -> u8 {
        match self {
            Todo::Node { .. } | Todo::Keybits { .. } | Todo::Retype { .. } | Todo::Field { .. } => 0,
            Todo::Drop { .. } | Todo::Dup { .. } => 1,
            Todo::Sort { .. } | Todo::SortedBefore { .. } => 2,
            Todo::Rekey { .. } => 3,
        }
    }
}

/// The findings this module may repair under `opts`.
fn chosen(opts: &FsckOptions, report: &FsckReport) -> Vec<usize> {
    if opts.repair == RepairMode::No {
        return Vec::new();
    }
    (0..report.findings.len())
        .filter(|&i| {
            let f = &report.findings[i];
            IDS.contains(&f.problem.id)
                && !f.repaired
                && may_repair(opts.repair, &f.problem)
                && matches!(f.location, Place::Blockref { .. })
        })
        .collect()
}

/// The repairs of the module's table, as allowed (`-p`: statistics, inode
/// sizes and sorting; `-y`: all), in the run's write session.
pub(super) fn repair(
    tx: &mut super::txn::RepairTx,
    opts: &FsckOptions,
    report: &mut FsckReport,
) -> Result<()> {
    if chosen(opts, report).is_empty() {
        return Ok(());
    }
    match tx.session() {
        Ok(session) => repair_in(session, opts, report),
        Err(e) => {
            for i in chosen(opts, report) {
                report.findings[i].left(&e);
            }
            Ok(())
        }
    }
}

/// The structure repairs fsck runs in `session` (open on the file system
/// `report` was made of, or on the header it staged, with nothing
/// unstaged), left in the session for the run's one commit: findings
/// repaired get what was done in their detail (they count as repaired:
/// a commit that fails ends the run with an error), the others why not. A
/// repair that fails is undone in the session, so it never keeps the
/// others from being committed. Public for the crash tests, which run it
/// on a device that records every write, then commit.
pub fn repair_in(session: &mut Session, opts: &FsckOptions, report: &mut FsckReport) -> Result<()> {
    let chosen = chosen(opts, report);
    if chosen.is_empty() {
        return Ok(());
    }
    // Where other problems make a repair here wrong or moot: nodes with an
    // unusable child (the check counts nothing for it, a flush its media:
    // statistics wait for that child's repair), blocks referenced twice
    // (which reference holds the right key is unknown), entries naming no
    // inode (removed by their own repair).
    let unusable = [BREF_CHECK, BREF_UNKNOWN_CHECK, BREF_RADIX, BREF_RANGE, BREF_OTHER, TREE_DEPTH];
    let mut bad_child = std::collections::HashSet::new();
    let mut twice = std::collections::HashSet::new();
    let mut dangling = std::collections::HashSet::new();
    for f in report.findings.iter().filter(|f| !f.repaired) {
        let Some(at) = f.location.location() else { continue };
        let kept_type = f.problem.id == BREF_TYPE.id && f.detail.contains("inside Nothing");
        if unusable.iter().any(|p| p.id == f.problem.id) || kept_type {
            bad_child.insert(at.parent_off);
        } else if f.problem.id == BREF_DUPLICATE.id {
            twice.insert(at.data_off);
        } else if f.problem.id == DIRENT_DANGLING.id {
            dangling.insert((at.parent_off, at.index, at.key));
        }
    }
    let fs = &session.fs;
    let parents = Parents::of(fs);
    let mut plan: Vec<(usize, Todo)> = Vec::new();
    let mut sorted = std::collections::HashSet::new();
    for i in chosen {
        let f = &report.findings[i];
        let Some(at) = f.location.location().cloned() else { continue };
        let id = f.problem.id;
        let Some(holder) = parents.path(at.parent_off) else {
            report.findings[i].detail.push_str("; not repaired: the node is not in the tree in use");
            continue;
        };
        let why_not = if id == BREF_STATS.id && bad_child.contains(&at.data_off) {
            Some("a node below it is unusable (its own repair comes first; the next run recomputes)")
        } else if twice.contains(&at.data_off) && at.data_off & !0x3f != 0 {
            Some("its block is also referenced elsewhere (BREF_DUPLICATE): which reference is right is not known")
        } else if holder.is_empty() && [BREF_TYPE.id, BREF_KEY.id, BREF_KEY_DUP.id].contains(&id) {
            // The volume header's blockset holds the super-root: nothing
            // there is dropped or moved (an older header copy is the repair).
            Some("an entry of the volume header's blockset (the super-root) is never dropped or moved; an older header copy (--use-copy N) is the repair")
        } else if id == BREF_TYPE.id && f.detail.contains("inside Nothing") {
            // A device, fifo, socket or unknown type with blocks: the
            // inode's type is the likelier damage (its entry may name the
            // right one); dropping would lose a file's data.
            Some("the inode holding it has a type that holds no blocks: its type, not the entry, is likely damaged, and is not guessed")
        } else if dangling.contains(&(at.parent_off, at.index, at.key)) {
            Some("the entry names no inode: its DIRENT_DANGLING repair removes it")
        } else {
            None
        };
        if let Some(why) = why_not {
            report.findings[i].left(why);
            continue;
        }
        let pfs_root_inum = id == INODE_BAD.id && f.detail.contains("a PFS root's is 1");
        let name_len = (id == INODE_BAD.id)
            .then(|| f.detail.split_once("the hash of its first ").and_then(|(_, r)| r.split(' ').next()))
            .flatten()
            .and_then(|n| n.parse::<u16>().ok());
        if pfs_root_inum || name_len.is_some() {
            match parents.path(at.data_off) {
                Some(path) if !path.is_empty() => {
                    plan.push((i, Todo::Field { path, inum: pfs_root_inum.then_some(1), name_len }));
                }
                _ => {
                    report.findings[i].detail.push_str("; not repaired: the inode is not in the tree in use")
                }
            }
            continue;
        }
        if id == DIRENT_BAD.id || id == INODE_BAD.id {
            // The sub-cases with a repair: a key that is not the name's
            // hash, an inode indexed under another number.
            let rekey = if id == DIRENT_BAD.id {
                f.detail.contains("is not the hash of")
            } else {
                f.detail.contains("indexed under key")
            };
            let owner = parents.owner(&holder);
            match (rekey, owner) {
                (true, Some(owner)) => {
                    let by_inum = id == INODE_BAD.id;
                    if let Some(why) = by_inum.then(|| parents.bad_inum(&owner, at.data_off)).flatten() {
                        report.findings[i].left(why);
                        continue;
                    }
                    plan.push((i, Todo::Rekey { holder, owner, at, by_inum }));
                }
                _ => report.findings[i].detail.push_str(if id == DIRENT_BAD.id {
                    "; not repaired: a name that is not valid cannot be made one without choosing it; \
                     hammer2_edit destroy PATH removes the entry (its inode then goes to /lost+found)"
                } else {
                    "; not repaired: an inode whose type, size or flags cannot hold is not guessed at; \
                     copy out what reads (hammer2_edit get), then hammer2_edit destroy-inum N"
                }),
            }
            continue;
        }
        let todo = if id == BREF_STATS.id || id == BREF_INODE_SIZE.id {
            match parents.path(at.data_off) {
                Some(path) if !path.is_empty() => Todo::Node { path, restat: id == BREF_STATS.id },
                _ => {
                    report.findings[i].detail.push_str("; not repaired: the node is not in the tree in use");
                    continue;
                }
            }
        } else if id == BREF_ORDER.id {
            if !sorted.insert(holder.clone()) {
                // The table is sorted once, for its first finding.
                plan.push((i, Todo::SortedBefore { holder }));
                continue;
            }
            Todo::Sort { holder }
        } else if id == BREF_TYPE.id && parents.slot(fs, &at).is_some_and(|b| proven_inode(fs, &b, &at)) {
            Todo::Retype { holder, at }
        } else if id == BREF_TYPE.id || id == DATA_PAST_EOF.id {
            Todo::Drop { holder, at }
        } else if id == BREF_KEY_DUP.id {
            let owner = parents.owner(&holder);
            Todo::Dup { holder, owner, at }
        } else if id == DATA_KEYBITS.id {
            Todo::Keybits { holder, at }
        } else {
            // BREF_KEY
            match at.bref_type {
                Some(T::Data) => Todo::Drop { holder, at },
                Some(T::Inode | T::Dirent) => match parents.owner(&holder) {
                    Some(owner) => {
                        // The PFS root (second level) indexes inodes by
                        // number; directories and the super-root by name.
                        let by_inum = at.bref_type == Some(T::Inode)
                            && owner.len() == 2
                            && at.key & DIRHASH_VISIBLE == 0;
                        if let Some(why) = by_inum.then(|| parents.bad_inum(&owner, at.data_off)).flatten() {
                            report.findings[i].left(why);
                            continue;
                        }
                        Todo::Rekey { holder, owner, at, by_inum }
                    }
                    None => {
                        report.findings[i].detail.push_str(
                            "; not repaired: an entry of the volume header's blockset has no owner",
                        );
                        continue;
                    }
                },
                _ => {
                    report.findings[i].detail.push_str(
                        "; not repaired: an indirect block's key bounds its whole subtree and nothing \
                         proves the right one (hammer2_edit destroy cuts the inode holding it out)",
                    );
                    continue;
                }
            }
        };
        plan.push((i, todo));
    }
    if plan.is_empty() {
        return Ok(());
    }
    plan.sort_by_key(|(_, t)| t.phase());
    let mut outcomes: Vec<(usize, std::result::Result<String, String>)> = Vec::new();
    let mut sorted_ok: HashMap<Vec<u64>, bool> = HashMap::new();
    for (i, todo) in &plan {
        let cp = session.checkpoint();
        let r = match todo {
            Todo::Node { path, restat } => session
                .fix_node(path, |_, c| {
                    if *restat {
                        c.bias = Bias::default();
                        Ok("statistics recomputed from what lies below".to_string())
                    } else {
                        Ok("inode rewritten as 1 KiB".to_string())
                    }
                })
                .map_err(|e| e.to_string()),
            Todo::Field { path, inum, name_len } => session
                .fix_node(path, |_, chain| {
                    let ip = chain.inode_mut().ok_or_else(|| Error::invalid("the node is not an inode"))?;
                    let mut done = Vec::new();
                    if let Some(n) = *inum {
                        done.push(format!("inode number {:#x} set to {n}", ip.meta.inum.get()));
                        ip.meta.inum = n.into();
                    }
                    if let Some(n) = *name_len {
                        done.push(format!(
                            "name length {} set to {n}, as its key proves",
                            ip.meta.name_len.get()
                        ));
                        ip.meta.name_len = n.into();
                    }
                    Ok(done.join("; "))
                })
                .map_err(|e| e.to_string()),
            Todo::Retype { holder, at } => {
                session.fix_table(holder, |_, table| retype_inode(table, at)).map_err(|e| e.to_string())
            }
            Todo::Keybits { holder, at } => {
                session.fix_table(holder, |fs, table| set_keybits(fs, table, at)).map_err(|e| e.to_string())
            }
            Todo::Drop { holder, at } => {
                session.fix_take_entry(holder, at).map(|b| dropped(&b)).map_err(|e| e.to_string())
            }
            Todo::Dup { holder, owner, at } => resolve_dup(session, holder, owner.as_deref(), at),
            Todo::SortedBefore { holder } => match sorted_ok.get(holder) {
                Some(true) => Ok("table sorted (for the finding before)".to_string()),
                _ => Err("the table could not be sorted (see the finding before)".to_string()),
            },
            Todo::Sort { holder } => {
                let r = session.fix_table(holder, |_, table| {
                    sort_table(table);
                    Ok("table sorted by key".to_string())
                });
                sorted_ok.insert(holder.clone(), r.is_ok());
                r.map_err(|e| e.to_string())
            }
            Todo::Rekey { holder, owner, at, by_inum } => {
                let by_inum = *by_inum;
                session
                    .fix_rekey_entry(owner, holder, at, |fs, table, b, name| {
                        if by_inum {
                            let ip = Tree::new(fs).inode(b, at)?;
                            Ok(ip.meta.inum.get())
                        } else {
                            let name = match name {
                                Some(n) => n.to_vec(),
                                None => Tree::new(fs).inode(b, at)?.name().to_vec(),
                            };
                            free_name_key(fs, table, &name)
                        }
                    })
                    .map(|k| format!("entry re-inserted under key {k:#x}"))
                    .map_err(|e| e.to_string())
            }
        };
        if r.is_err() {
            session.restore(cp)?;
        }
        outcomes.push((*i, r));
    }
    for (i, r) in outcomes {
        let f = &mut report.findings[i];
        match r {
            Ok(done) => f.done(done),
            Err(why) => f.left(why),
        }
    }
    Ok(())
}

/// What dropping `b` loses, for the finding.
fn dropped(b: &Blockref) -> String {
    match b.kind() {
        T::Data => format!(
            "data block at file offset {:#x} ({} bytes) dropped; the file reads zeros there",
            b.key.get(),
            1u64 << b.keybits.min(63)
        ),
        k => format!("{k} entry at key {:#x} dropped", b.key.get()),
    }
}

/// The keybits a DATA block's media proves: a raw block's own size; a
/// compressed block's decoded size rounded up to a power of two (at least
/// 1 KiB, the smallest block).
fn media_keybits(fs: &Hammer2, b: &Blockref, at: &Location) -> Result<u8> {
    use crate::format::compress::{lz4_decompress, zlib_decompress};
    let phys = b.physical_size();
    if phys == 0 {
        return Err(Error::invalid("the block has no media"));
    }
    let len = match b.comp_method() {
        CompMethod::None | CompMethod::Autozero => phys,
        method => {
            let media = Tree::new(fs).media_at(b, at)?;
            let max = crate::format::PBUFSIZE as usize;
            let out = match method {
                CompMethod::Lz4 => lz4_decompress(media, max),
                _ => zlib_decompress(media, max),
            }
            .map_err(|e| Error::invalid(format!("the block does not decode ({e})")))?;
            out.len() as u64
        }
    };
    Ok(len.max(1024).next_power_of_two().trailing_zeros() as u8)
}

/// Sets the keybits of the DATA entry `at` of `table` to what its media
/// proves, when its key is aligned to them and its new range meets no
/// other entry.
/// Whether the block of the entry at `at` (whatever type the entry says)
/// is an inode that proves itself, so that the type byte is the damage:
/// read as a 1 KiB inode block, the entry's check code holds over it (a
/// check code covers the block, not the blockref's type), it reads as an
/// inode, and it is keyed as an inode is where it lies: a PFS root's index
/// keys its inodes by number; the super-root and directories by the
/// name's hash. Dropping such an entry would lose the inode and everything
/// below it (in the super-root: a whole PFS).
fn proven_inode(fs: &Hammer2, entry: &Blockref, at: &Location) -> bool {
    let mut b = *entry;
    b.type_ = T::Inode.into();
    let Ok(Some(bytes)) = crate::read::walk::read_media(fs, &b) else { return false };
    if bytes.len() != crate::format::INODE_BYTES
        || !matches!(crate::format::check::verify(&b, bytes), crate::format::check::CheckOutcome::Ok)
    {
        return false;
    }
    let Some(ip) = crate::format::InodeData::from_bytes(bytes) else { return false };
    ip.meta.version.get() == 1
        && (ip.meta.inum.get() == at.key || crate::format::dirhash::dirhash(ip.name()) == at.key)
}

/// Sets the INODE type on the entry at `at` (see [`proven_inode`]).
fn retype_inode(table: &mut Table, at: &Location) -> Result<String> {
    let i = table
        .slots
        .iter()
        .position(|s| s.bref().is_some_and(|b| b.data_off.get() == at.data_off && b.key.get() == at.key))
        .ok_or_else(|| Error::NotFound(format!("entry {at}")))?;
    let Slot::Clean(b) = &mut table.slots[i] else {
        return Err(Error::invalid("the entry changed in this run"));
    };
    let old = b.kind();
    b.type_ = T::Inode.into();
    Ok(format!("type {old} set back to inode: its block is an inode that verifies and is keyed as one"))
}

fn set_keybits(fs: &Hammer2, table: &mut Table, at: &Location) -> Result<String> {
    let i = table
        .slots
        .iter()
        .position(|s| s.bref().is_some_and(|b| b.data_off.get() == at.data_off && b.key.get() == at.key))
        .ok_or_else(|| Error::NotFound(format!("entry {at}")))?;
    let keybits = media_keybits(fs, table.slots[i].bref().expect("live"), at)?;
    let key = at.key;
    let end = key | ((1u64 << keybits) - 1);
    if key & ((1u64 << keybits) - 1) != 0 {
        return Err(Error::invalid(format!(
            "key {key:#x} is not aligned to the media's {} bytes",
            1u64 << keybits
        )));
    }
    let clash = table
        .slots
        .iter()
        .enumerate()
        .any(|(j, s)| j != i && s.bref().is_some_and(|b| b.key.get() <= end && b.key_end() >= key));
    if clash {
        return Err(Error::invalid(format!("keybits {keybits} would overlap the next entry of the table")));
    }
    let Slot::Clean(b) = &mut table.slots[i] else {
        return Err(Error::invalid("the entry changed in this run"));
    };
    let old = b.keybits;
    b.keybits = keybits;
    Ok(format!("keybits {old} set to {keybits}, the media's size"))
}

/// Two entries with one key: the one whose block verifies, else the newer,
/// stays; the other is re-keyed (a directory entry) or dropped.
fn resolve_dup(
    s: &mut Session,
    holder: &[u64],
    owner: Option<&[u64]>,
    at: &Location,
) -> std::result::Result<String, String> {
    // The entries of that key and type in the table, as the session holds it.
    let entries: Vec<(Location, bool, u64)> = s
        .fix_table(holder, |fs, table| {
            let tree = Tree::new(fs);
            Ok(table
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| {
                    let b = slot.bref()?;
                    (b.key.get() == at.key && Some(b.kind()) == at.bref_type).then(|| {
                        let loc = Location::of(b, table.parent_off, i);
                        let ok = b.offset() == 0 || tree.media_at(b, &loc).is_ok();
                        (loc, ok, b.modify_tid.get())
                    })
                })
                .collect())
        })
        .map_err(|e| e.to_string())?;
    if entries.len() < 2 {
        return Ok("the other entry of the key is gone already".to_string());
    }
    // Keep: verifies, then newer, then first.
    let keep = (0..entries.len())
        .max_by_key(|&j| (entries[j].1, entries[j].2, std::cmp::Reverse(j)))
        .expect("two entries");
    let mut said = Vec::new();
    for (j, (loc, _, _)) in entries.iter().enumerate() {
        if j == keep {
            continue;
        }
        let is_name = loc.bref_type == Some(T::Dirent)
            || (loc.bref_type == Some(T::Inode) && loc.key & DIRHASH_VISIBLE != 0);
        if let (true, Some(owner)) = (is_name, owner) {
            let r = s.fix_rekey_entry(owner, holder, loc, |fs, table, b, name| {
                let name = match name {
                    Some(n) => n.to_vec(),
                    None => Tree::new(fs).inode(b, loc)?.name().to_vec(),
                };
                free_name_key(fs, table, &name)
            });
            match r {
                Ok(k) => {
                    said.push(format!("the other entry re-inserted under the free key {k:#x} of its name"));
                    continue;
                }
                Err(e) => said.push(format!("re-keying failed ({e}), so")),
            }
        }
        match s.fix_take_entry(holder, loc) {
            Ok(b) => said.push(format!("the other {}", dropped(&b))),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(format!("kept the entry that verifies, or the newer; {}", said.join(", ")))
}
