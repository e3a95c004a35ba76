//! Rollback: making an older header copy's tree current again.
//!
//! HAMMER2 keeps up to four volume-header copies, written in rotation, one
//! per commit; each names the complete tree of its transaction, and a
//! commit never overwrites the blocks an older tree uses (they stay
//! allocated until a bulkfree finds them unreferenced from the newest
//! copy). So when the tree of the copy in use is damaged (a write that
//! reached the media half-way, two writers on one image, a bad sector in
//! the super-root) an older copy often still names an intact tree,
//! transactions older. The kernel and the reference tools always take the
//! newest valid copy and never look back; `fsck_hammer2 -y` does.
//!
//! Choice ([`choose`]): when the tree of the copy in use has damage that
//! nothing repairs in place (see [`structural`]: a missing or unusable
//! super-root, a PFS root's inode unusable), every
//! other valid copy of the root volume whose `mirror_tid` is older is
//! checked with the full topology pass, and the one with the fewest
//! problems wins, the newest among equals (it loses the fewest
//! transactions); it is used only if it has fewer problems than the copy
//! in use. `--use-copy N` names the copy instead.
//!
//! The repair ([`make_current`]) is one commit: the chosen copy's tree,
//! unchanged, with a freemap rebuilt from that tree alone (the chosen
//! copy's own freemap blocks may since have been reused by the rotation of
//! freemap blocks, and blocks only the lost transactions used become free),
//! under a transaction id above every valid copy's, so it becomes the copy
//! every reader chooses. Once that commit is durable, every other header
//! copy is rewritten with it, one at a time (as after every repair that
//! cuts damage out: [`crate::write::session::sync_header_copies`]), so no
//! valid copy names the damaged tree any more.
//!
//! Crash safety: until the new header is written the copies are as before
//! (the commit writes only free blocks and freemap blocks; the damaged
//! newest copy may lose its freemap blocks to the rotation, which fsck
//! rebuilds); a torn header write leaves the chosen copy and the damaged
//! newest one as they were; a crash during the rewrite of the other copies
//! tears at most the copy being written, while the new header stays the
//! newest valid one.

use super::{FsckReport, Severity};
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::volume::{CopyChoice, Hammer2};

/// A candidate copy: its index, `mirror_tid`, and the problems its tree has.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub copy: usize,
    pub mirror_tid: u64,
    pub problems: usize,
}

/// What a rollback did (or, not written, would do).
#[derive(Debug, Clone)]
pub struct Done {
    pub to: Candidate,
    /// The newest valid copy's `mirror_tid`: transactions `to.mirror_tid + 1
    /// ..= newest` are lost.
    pub newest: u64,
    /// The transaction of the new commit and the copy it went to.
    pub tid: u64,
    pub written_copy: usize,
    /// The other copies rewritten afterwards.
    pub synced: Vec<usize>,
}

impl Done {
    /// The transactions lost, as text.
    pub fn lost(&self) -> String {
        let (first, last) = (self.to.mirror_tid + 1, self.newest);
        match last.checked_sub(first) {
            None => "no transaction is lost".to_string(),
            Some(0) => format!("transaction {first:#x} is lost"),
            Some(_) => format!("transactions {first:#x} to {last:#x} are lost"),
        }
    }
}

/// The damage (findings that are not informational) the topology pass
/// finds in the tree of header copy `copy`.
pub fn tree_problems(spec: &str, copy: usize) -> Result<usize> {
    let fs = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Index(copy))?;
    let mut scratch = FsckReport::default();
    super::topology::check(&fs, &mut scratch, None)?;
    Ok(scratch.damage().filter(|f| structural(f)).count())
}

/// Whether a finding is damage that nothing repairs in place: only that
/// weighs in the choice of a rollback, which loses every later transaction.
/// That is damage above the PFSs, which leaves a whole PFS or every file
/// unreachable: a header naming no super-root ([`super::SROOT_MISSING`]),
/// the super-root or a PFS root's inode unusable (unreadable, in a reserved
/// area, shared with another node, looping: nothing older than the header
/// itself holds a newer copy of them, and the rebuild works below a PFS
/// root only).
///
/// Also weighed, until it has a repair in place: a directory entry of a
/// PFS whose media is unusable (a short name's entry given a radix).
///
/// Left out is everything else inside a PFS, whatever its repair class: an
/// unreadable node there is the rebuild's (an older copy's node, the
/// media, or cut out with its inodes filed under /lost+found), fields and
/// keys the structure repairs', names /lost+found's; damage no repair mends
/// (an inode whose number is taken, an invalid name) is one object's, left
/// with its reason, and rolling every later transaction back for it would
/// lose far more than it saves (the corpus: thousands of files for one
/// inode's number). Warnings and information never weigh.
pub fn structural(f: &super::Finding) -> bool {
    use super::Place;
    if f.problem.severity != Severity::Error {
        return false;
    }
    if f.problem.id == super::SROOT_MISSING.id {
        return true;
    }
    let Place::Blockref { pfs, at } = &f.location else { return false };
    // Above the PFSs: the super-root (no PFS yet), or a PFS root's entry
    // in the super-root's table, an inode keyed by its label's hash (an
    // inode of a PFS's index is keyed by its number, below that bit).
    let above = pfs.is_none()
        || (at.bref_type == Some(crate::format::BlockrefType::Inode)
            && at.key & crate::format::DIRHASH_VISIBLE != 0);
    let unusable = super::rebuild::UNREADABLE.iter().any(|p| p.id == f.problem.id)
        || [super::BREF_RESERVED.id, super::BREF_DUPLICATE.id].contains(&f.problem.id);
    // Not yet repaired in place: a directory entry whose media is unusable
    // (the rebuild replaces indirect blocks, inodes and data blocks; a
    // short name's entry given a radix would have its name read from
    // whatever lies there).
    let dirent = at.bref_type == Some(crate::format::BlockrefType::Dirent);
    (above || dirent) && unusable && at.bref_type != Some(crate::format::BlockrefType::Data)
}

/// The valid copies of the root volume older than the one in use, each
/// with its tree's problems, newest first.
pub fn candidates(spec: &str) -> Result<(Candidate, Vec<Candidate>)> {
    let fs = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Best)?;
    let root = &fs.headers[fs.root_position()];
    let best_tid = fs.voldata.mirror_tid.get();
    let current = Candidate { copy: fs.copy, mirror_tid: best_tid, problems: tree_problems(spec, fs.copy)? };
    let mut older: Vec<(usize, u64)> = root
        .copies
        .iter()
        .filter(|c| c.is_valid() && c.index != fs.copy)
        .filter_map(|c| c.mirror_tid().map(|t| (c.index, t)))
        .filter(|&(_, t)| t < best_tid)
        .collect();
    older.sort_by_key(|&(i, t)| (std::cmp::Reverse(t), i));
    drop(fs);
    let mut out = Vec::new();
    for (copy, mirror_tid) in older {
        // A copy whose tree cannot even be opened is no candidate.
        if let Ok(problems) = tree_problems(spec, copy) {
            out.push(Candidate { copy, mirror_tid, problems });
        }
    }
    Ok((current, out))
}

/// The copy a rollback should make current: the one with the fewest
/// problems, the newest among equals, if it has fewer than the copy in use.
pub fn choose(current: Candidate, older: &[Candidate]) -> Option<Candidate> {
    // `older` is newest first: min_by_key keeps the first of equals.
    let best = older.iter().min_by_key(|c| c.problems)?;
    (best.problems < current.problems).then_some(*best)
}

/// Makes header copy `copy`'s tree current (see the module documentation);
/// `write` false only says what would be done.
pub fn make_current(spec: &str, copy: usize, write: bool) -> Result<Done> {
    let access = if write { Access::ReadWrite } else { Access::ReadOnly };
    let mut fs = Hammer2::open(Device::open(spec, access)?, CopyChoice::Index(copy))?;
    let root = &fs.headers[fs.root_position()];
    let newest =
        root.copies.iter().filter(|c| c.is_valid()).filter_map(|c| c.mirror_tid()).max().unwrap_or(0);
    let to_tid = fs.voldata.mirror_tid.get();
    if to_tid >= newest {
        return Err(Error::invalid(format!(
            "header copy {copy} (mirror_tid {to_tid:#x}) is already the newest valid copy: nothing to roll back to"
        )));
    }
    let to = Candidate { copy, mirror_tid: to_tid, problems: tree_problems(spec, copy)? };
    if !write {
        return Ok(Done { to, newest, tid: newest + 1, written_copy: copy, synced: Vec::new() });
    }
    let (_, commit, synced) = crate::write::session::rebuild_freemap(&mut fs, true)?;
    Ok(Done { to, newest, tid: commit.tid, written_copy: commit.copy, synced })
}

/// Counts the findings in `range` of `report` that are structural damage.
pub(super) fn damage_in(report: &FsckReport, range: std::ops::Range<usize>) -> usize {
    report.findings[range].iter().filter(|f| structural(f)).count()
}

/// [`super::HDR_COPY_FREEMAP`]: the freemap of every older valid copy of the
/// root volume is walked, as DragonFly's fsck_hammer2 walks every copy's
/// (only the freemap: its blocks are few, and the trees of the older
/// copies are the rollback's and `--all-copies`' business). A copy whose
/// freemap does not verify (a freemap block of the newest tree shared with
/// it was rewritten by a repair, or damaged) is rewritten from the best
/// copy, when allowed (`-p`): that copy then names the current tree, and
/// the file system the kernel mounts does not change. Run last, so the
/// best copy is the repaired one.
pub(super) fn older_freemaps(spec: &str, mode: super::RepairMode, report: &mut FsckReport) -> Result<()> {
    use crate::read::walk::{walk, Root, WalkOptions};
    let Ok(fs) = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Best) else {
        return Ok(());
    };
    let pos = fs.root_position();
    let volume = fs.device.volume(pos).path().display().to_string();
    let older: Vec<(usize, u64)> = fs.headers[pos]
        .copies
        .iter()
        .filter(|c| c.is_valid() && c.index != fs.copy)
        .map(|c| (c.index, c.offset))
        .collect();
    drop(fs);
    let mut damaged = Vec::new();
    for (copy, offset) in older {
        let Ok(ofs) = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Index(copy)) else {
            continue;
        };
        let mut first: Option<String> = None;
        let mut errors = 0usize;
        let walked = walk(&ofs, Root::Freemap, WalkOptions::default(), &mut |v| {
            if let Some(e) = &v.error {
                errors += 1;
                first.get_or_insert_with(|| format!("{}: {}", e.location, e.kind));
            }
        });
        if let Err(e) = walked {
            errors += 1;
            first.get_or_insert_with(|| e.to_string());
        }
        if errors > 0 {
            let detail = format!(
                "{errors} freemap blocks of copy #{copy} (mirror_tid {:#x}) fail their checks, the first {}",
                ofs.voldata.mirror_tid.get(),
                first.unwrap_or_default()
            );
            damaged.push((copy, offset, detail));
        }
    }
    if damaged.is_empty() {
        return Ok(());
    }
    let write = super::may_repair(mode, &super::HDR_COPY_FREEMAP);
    let mut fs = if write {
        Some(Hammer2::open(Device::open(spec, Access::ReadWrite)?, CopyChoice::Best)?)
    } else {
        None
    };
    for (copy, offset, mut detail) in damaged {
        let place = super::Place::HeaderCopy { volume: volume.clone(), copy, offset: Some(offset) };
        let mut repaired = false;
        if let Some(fs) = fs.as_mut() {
            let best = fs.voldata.clone();
            let mut vol = fs.device.volume_mut(pos);
            let done = vol
                .write(offset, zerocopy::IntoBytes::as_bytes(&*best))
                .and_then(|_| vol.sync_range(offset, zerocopy::IntoBytes::as_bytes(&*best).len() as u64));
            match done {
                Ok(()) => {
                    repaired = true;
                    detail.push_str(&format!("; rewritten from the best copy #{}", fs.copy));
                }
                Err(e) => detail.push_str(&format!("; not repaired: {e}")),
            }
        } else {
            detail.push_str("; -p or -y rewrites it from the best copy");
        }
        report.findings.push(super::Finding {
            problem: super::HDR_COPY_FREEMAP,
            location: place,
            detail,
            repaired,
        });
    }
    Ok(())
}
