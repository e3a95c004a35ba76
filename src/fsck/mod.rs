//! Offline verification and repair, organised as e2fsck is: one central table
//! of problems ([`PROBLEMS`]), passes that report findings against it, and
//! repairs that only happen when asked.
//!
//! Passes so far: volume-header copies (every copy that fits, on every
//! volume: magic, the three CRCs, staleness, sanity of the best copy's
//! fields), then every blockref reachable from the chosen header through the
//! topology and the freemap (media inside a volume, sane radix, check code).
//!
//! Passes live in submodules: [`topology`] (semantics of the media tree),
//! [`semantic`] (what no check code catches, called from the topology
//! pass) and [`freemap`] (the freemap's structure and its agreement with
//! the topology); `rebuild` replaces unreadable nodes from older header
//! copies and the media (or cuts them out) before any rollback is weighed,
//! and the topology is checked again after it; [`structure`] repairs the
//! tree's addressing and bookkeeping (statistics, table order, keys, types,
//! data past the end, keybits) in one session; `lostfound` files inodes
//! no entry names under `/lost+found`; [`rollback`] makes an older header
//! copy's tree current;
//! header checks, the driver and the repairs of inode fields and dangling
//! directory entries are here.
//!
//! One repair run is one write session and one commit ([`txn`]): the
//! rebuild, a rollback, the structure repairs, `/lost+found`, the field
//! repairs and the freemap's replay or rebuild all go into it; where the
//! tree must be checked again between two of them, the session stages
//! (writes its blocks and freemap durably, keeps the header in memory) and
//! the check reads the staged tree. Only the end of the run writes a
//! header, so a crash leaves the state before the run or the repaired one,
//! never one half-repaired. Header copies repaired from the best copy are
//! the exception: they are written as found (they change no state, every
//! reader already uses the best copy), and so is a freemap recovery that
//! is the run's only repair, or that the run's commit did not make
//! complete (a commit of its own, which changes no file).
//!
//! Every problem of the table has a repair or, for [`Fix::None`], a reason
//! in its `repair` text: why none exists (or not yet) and what the user can
//! do instead.
//!
//! Memory is bounded by a budget, not by the volume: what the topology
//! pass keeps per inode and per directory entry for its cross-checks goes
//! through sorters that spill sorted runs to unlinked temporary files past
//! [`FsckOptions::memory`] ([`DEFAULT_BUDGET`]), in [`FsckOptions::tmpdir`],
//! and is joined by inode number when each PFS is walked; the device's
//! mapping adds at most [`crate::device::TRIM_AFTER`].
//!
//! Header geometry is split as [`crate::volume`] documents: what places or
//! sizes a volume (`volu_loff`, `volu_size`, `nvolumes`, version) is fatal
//! for opening, and fsck reports the refusal as [`HDR_GEOMETRY`] (exit 4,
//! nothing else can be checked); the other fields are findings after a
//! successful open: [`HDR_FIELD`] (`total_size`, unused `volu_loff` slots,
//! the last volume's alignment, other volumes' headers disagreeing),
//! [`HDR_AREAS`] (boot/aux order and placement) and [`HDR_ALLOCATOR`]
//! (`allocator_size`, `allocator_free`, `allocator_beg`).
//!
//! Repairs: corrupt or (with `sync_headers`) stale header copies are
//! rewritten from the best copy. The best copy is never written. A damaged
//! copy that is newer than the best one would roll the file system back if
//! rewritten, so that needs `-y`, never `-p` ([`HDR_CORRUPT_NEWER`]), with
//! one exception, the header of an interrupted commit ([`HDR_TORN`]): a
//! copy whose sector 0 verifies (so its mirror_tid can be trusted), that
//! claims exactly the best copy's mirror_tid + 1, lies in the slot the
//! commit after the best copy writes (the next one in rotation that fits on
//! the volume), and is the newest claim on the volume (no other damaged copy
//! claims more). That is what a commit cut during its header write leaves
//! (the commit contract orders the header last, so that commit never
//! completed, and no later one followed it), and rewriting it from the best
//! copy loses nothing readable: every reader (the kernel, the reference
//! fsck_hammer2, our tools) already uses the best valid copy, and the next
//! flush of a read-write mount overwrites that very slot
//! (`hammer2_vfsops.c` writes `volhdrno + 1`, wrapping, after the copy it
//! mounted), as our next commit does. So `-p` does it. A damaged newer copy
//! anywhere else, or claiming a later transaction, means commits that did
//! complete were lost: a decision for `-y`. A freemap that lags the
//! topology ([`FREEMAP_LAG`]), blocks in use marked free
//! ([`FREEMAP_UNMARKED`]) and a `linear` pointing into blocks in use
//! ([`FREEMAP_LINEAR`]) are repaired by the freemap recovery
//! ([`crate::recover`]): marking blocks allocated only ever takes free
//! space away, so `-p` does it. The replay is the mount's (blocks newer than
//! `freemap_tid`) when the freemap lags and only unmarked blocks were found,
//! else, or when that did not suffice, a full one (every block in use); it
//! is committed as a new transaction, and the freemap checked again: the
//! findings count as corrected only if that check finds none of the three.
//! With `-y`, a freemap whose blocks fail their checks is rebuilt from the
//! topology; that commit is followed by the rewrite of the older header
//! copies (they name the damaged blocks), so that no valid copy is left
//! pointing at damage ([`crate::write::session::sync_header_copies`]).

mod data;
pub mod freemap;
mod lostfound;
mod place;
mod problems;
mod rebuild;
pub mod rollback;
pub mod semantic;
mod spill;
pub mod structure;
pub mod topology;
mod txn;

pub use spill::DEFAULT_BUDGET;
pub use txn::{RepairCommit, Writer};

pub use place::{Place, ZoneLeaf};
pub use problems::*;

use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::format::VolumeData;
use crate::read::walk::{walk, Root, WalkOptions, WalkStats};
use crate::volume::{read_headers, CopyChoice, CopyState, Hammer2, HeaderCopy};
use serde::Serialize;
use zerocopy::IntoBytes;

/// What repairs are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepairMode {
    /// `-n`: never write (the default).
    #[default]
    No,
    /// `-p`: repair what needs no decision.
    Preen,
    /// `-y`: repair everything that can be repaired.
    Yes,
}

/// Receives one line per blockref checked (`fsck_hammer2 -v`).
pub type Trace = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// fsck options.
#[derive(Clone, Default)]
pub struct FsckOptions {
    pub repair: RepairMode,
    /// Also rewrite valid but older header copies.
    pub sync_headers: bool,
    /// Verify the topology from every valid header copy, not only the best.
    pub all_copies: bool,
    /// Per-blockref detail of the topology pass, in tree order.
    pub trace: Option<Trace>,
    /// Make this header copy's tree current (`--use-copy`), whatever the
    /// damage; written only with [`RepairMode::Yes`].
    pub use_copy: Option<usize>,
    /// Bytes the cross-check records (per inode and per directory entry)
    /// may hold in memory before sorted runs spill to `tmpdir`
    /// (`--memory`; `None`: [`DEFAULT_BUDGET`]).
    pub memory: Option<usize>,
    /// Where spilled runs go (`--tmpdir`; `None`: `$TMPDIR`, else /tmp).
    /// Never the checked device: the files are unlinked at once.
    pub tmpdir: Option<std::path::PathBuf>,
    /// Opens the device the repair's one write session writes through
    /// (`None`: the device named, read-write). The crash tests give a
    /// device that records every write and barrier.
    pub writer: Option<Writer>,
}

impl std::fmt::Debug for FsckOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsckOptions")
            .field("repair", &self.repair)
            .field("sync_headers", &self.sync_headers)
            .field("all_copies", &self.all_copies)
            .field("trace", &self.trace.is_some())
            .field("use_copy", &self.use_copy)
            .field("memory", &self.memory)
            .field("tmpdir", &self.tmpdir)
            .field("writer", &self.writer.is_some())
            .finish()
    }
}

/// One problem found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub problem: Problem,
    /// Where: a volume and header copy, a blockref, an inode, a freemap range.
    pub location: Place,
    pub detail: String,
    pub repaired: bool,
}

impl Finding {
    /// A repair made: the finding says what was done.
    pub(crate) fn done(&mut self, what: impl std::fmt::Display) {
        self.repaired = true;
        self.detail.push_str(&format!("; {what}"));
    }

    /// A repair that could not be made: the finding says why.
    pub(crate) fn left(&mut self, why: impl std::fmt::Display) {
        self.detail.push_str(&format!("; not repaired: {why}"));
    }
}

impl Serialize for Finding {
    /// The location twice: as text (`location`, what people read) and as
    /// data (`place`, what scripts select by).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Finding", 5)?;
        st.serialize_field("problem", &self.problem)?;
        st.serialize_field("location", &self.location.to_string())?;
        st.serialize_field("place", &self.location)?;
        st.serialize_field("detail", &self.detail)?;
        st.serialize_field("repaired", &self.repaired)?;
        st.end()
    }
}

/// Totals per tree walked.
#[derive(Debug, Clone, Serialize)]
pub struct TreeStats {
    pub tree: String,
    #[serde(flatten)]
    pub stats: WalkStats,
}

/// Everything one run found and did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FsckReport {
    pub findings: Vec<Finding>,
    pub trees: Vec<TreeStats>,
    /// Counts per PFS (topology pass).
    pub pfs: Vec<topology::PfsSummary>,
    /// The header copy verified (root volume).
    pub header_copy: Option<usize>,
    pub mirror_tid: Option<u64>,
    /// The one commit of the repairs, when they wrote anything.
    pub commit: Option<RepairCommit>,
    /// The findings of the topology pass under the copy in use.
    #[serde(skip)]
    pub topology: std::ops::Range<usize>,
    /// Field repairs the semantic checks proved, by finding.
    #[serde(skip)]
    pub inode_fixes: Vec<semantic::InodeFix>,
    /// Entries naming no inode, by finding.
    #[serde(skip)]
    pub dirent_fixes: Vec<semantic::DirentFix>,
}

/// fsck(8) exit codes.
pub const EXIT_CLEAN: i32 = 0;
pub const EXIT_CORRECTED: i32 = 1;
pub const EXIT_UNCORRECTED: i32 = 4;
pub const EXIT_OPERATIONAL: i32 = 8;
pub const EXIT_USAGE: i32 = 16;

impl FsckReport {
    /// Findings that are damage (not informational).
    pub fn damage(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.problem.severity != Severity::Info)
    }

    /// The fsck(8) exit code this report earns.
    pub fn exit_code(&self) -> i32 {
        if self.damage().any(|f| !f.repaired) {
            EXIT_UNCORRECTED
        } else if self.findings.iter().any(|f| f.repaired) {
            EXIT_CORRECTED
        } else {
            EXIT_CLEAN
        }
    }

    pub(crate) fn add(&mut self, problem: Problem, location: Place, detail: String) {
        self.findings.push(Finding { problem, location, detail, repaired: false });
    }
}

fn may_repair(mode: RepairMode, problem: &Problem) -> bool {
    match (mode, problem.fix) {
        (RepairMode::No, _) | (_, Fix::None) => false,
        (RepairMode::Preen, Fix::Preen) => true,
        (RepairMode::Preen, Fix::Yes) => false,
        (RepairMode::Yes, _) => true,
    }
}

fn copy_location(path: &str, c: &HeaderCopy) -> Place {
    Place::HeaderCopy { volume: path.to_string(), copy: c.index, offset: Some(c.offset) }
}

/// Checks (and, as allowed, repairs) the file system on `spec`. The
/// repairs that change the tree are one write session and one commit
/// ([`txn`]): the rebuild, staged and checked again; a rollback; the
/// structure repairs, `/lost+found`, the field repairs and the removal of
/// dangling entries; the freemap's replay or rebuild with them.
pub fn fsck(spec: &str, opts: &FsckOptions) -> Result<FsckReport> {
    let access = if opts.repair == RepairMode::No { Access::ReadOnly } else { Access::ReadWrite };
    // The device is opened several times below: the run keeps its lock
    // (shared to check, exclusive to repair) from the first to the last.
    let _run = crate::device::lock::hold(spec, access, crate::device::lock::Wait::No)?;
    let mut report = fsck_locked(spec, opts)?;
    let mut tx = txn::RepairTx::new(spec, opts, &report);
    if opts.use_copy.is_none() && rebuild::rebuild_pass(&mut tx, opts.repair, &mut report)? {
        // The run goes on with the rebuilt tree, staged: its findings follow.
        let staged = tx.stage()?;
        recheck(spec, opts, staged.as_deref(), &mut report)?;
    }
    if rollback_pass(spec, opts, &mut tx, &mut report)? {
        // The run goes on with the tree made current, staged: its findings follow.
        let staged = tx.stage()?;
        let again = fsck_on(spec, &FsckOptions { use_copy: None, ..opts.clone() }, staged.as_deref())?;
        append_check(&mut report, again, false);
        report.topology = 0..0;
    }
    structure::repair(&mut tx, opts, &mut report)?;
    lostfound::lost_found_pass(&mut tx, opts.repair, &mut report)?;
    repair_inodes(&mut tx, opts, &mut report)?;
    let rebuilt_freemap = tx.rebuilds_freemap();
    report.commit = tx.commit()?;
    repair_freemap(spec, opts, rebuilt_freemap, &mut report)?;
    rollback::older_freemaps(spec, opts.repair, &mut report)?;
    Ok(report)
}

/// After the rebuild is staged: the topology is checked again, on the
/// staged tree. The first check's findings below the header copies
/// described the tree before the rebuild; those not repaired are
/// superseded by the new check's (listed after them, with their own
/// repairs), and the repairs planned on the old tree are dropped.
fn recheck(
    spec: &str,
    opts: &FsckOptions,
    staged: Option<&VolumeData>,
    report: &mut FsckReport,
) -> Result<()> {
    let again = fsck_on(spec, &FsckOptions { use_copy: None, ..opts.clone() }, staged)?;
    for f in &mut report.findings {
        if !matches!(f.location, Place::HeaderCopy { .. } | Place::Device { .. }) && !f.repaired {
            f.done("superseded by the check after the rebuild (below)");
        }
    }
    // Header findings were handled by the first check.
    report.topology = append_check(report, again, true);
    Ok(())
}

/// Appends a later check's report after `report`'s findings: its planned
/// field and entry repairs moved to their findings' new places (replacing
/// the earlier plans when `replace_plans`, added to them otherwise), its
/// trees, and the PFS summary and header copy of the tree now in use.
/// Returns where the later check's topology findings now lie.
fn append_check(report: &mut FsckReport, again: FsckReport, replace_plans: bool) -> std::ops::Range<usize> {
    let base = report.findings.len();
    if replace_plans {
        report.inode_fixes.clear();
        report.dirent_fixes.clear();
    }
    report.inode_fixes.extend(again.inode_fixes.into_iter().map(|mut x| {
        x.finding += base;
        x
    }));
    report.dirent_fixes.extend(again.dirent_fixes.into_iter().map(|mut x| {
        x.finding += base;
        x
    }));
    report.findings.extend(again.findings);
    report.trees.extend(again.trees);
    report.pfs = again.pfs;
    report.header_copy = again.header_copy;
    report.mirror_tid = again.mirror_tid;
    again.topology.start + base..again.topology.end + base
}

/// The field repairs the semantic checks proved ([`semantic::FieldFix`]:
/// iparent, mode, a directory's link count) and the removal of entries
/// naming no inode ([`DIRENT_DANGLING`], kept while the PFS has unreadable
/// node blocks), as allowed, in the run's write session. A session that
/// cannot open, or an edit that cannot be made (a tree too damaged to load
/// the inode's path), leaves the findings uncorrected, saying why.
fn repair_inodes(tx: &mut txn::RepairTx, opts: &FsckOptions, report: &mut FsckReport) -> Result<()> {
    // A PFS with unreadable node blocks may hold the inodes its dangling
    // entries name, or more names: those entries and counts are kept for
    // a rebuild.
    let unreadable = rebuild::pfs_with_unreadable_nodes(report);
    let mut todo: Vec<semantic::InodeFix> = Vec::new();
    for x in &report.inode_fixes {
        let f = &mut report.findings[x.finding];
        if f.repaired || !may_repair(opts.repair, &f.problem) {
            continue;
        }
        // Names lost in an unreadable block would make a recount too low
        // (and a later unlink free a named inode): not recounted then.
        if matches!(x.fix, semantic::FieldFix::Nlinks(_))
            && f.problem.id == INODE_NLINKS.id
            && unreadable.contains(&x.pfs)
        {
            f.detail.push_str("; not repaired: the PFS has unreadable node blocks that may hold more names");
            continue;
        }
        todo.push(x.clone());
    }
    // Link-count findings no recount repairs say why.
    let fixable: std::collections::HashSet<usize> = report.inode_fixes.iter().map(|x| x.finding).collect();
    for i in 0..report.findings.len() {
        let f = &report.findings[i];
        if f.problem.id == INODE_NLINKS.id
            && !f.repaired
            && may_repair(opts.repair, &f.problem)
            && !fixable.contains(&i)
        {
            report.findings[i].detail.push_str(
                "; not repaired: only a file named at least once, walked in this PFS (not shared \
                 with a snapshot), is recounted; an inode no entry names is filed under /lost+found by -y",
            );
        }
    }
    let mut dirents: Vec<semantic::DirentFix> = Vec::new();
    for x in &report.dirent_fixes {
        let f = &mut report.findings[x.finding];
        if f.repaired || !may_repair(opts.repair, &f.problem) {
            continue;
        }
        if unreadable.contains(&x.pfs) {
            f.detail.push_str("; not repaired: the PFS has unreadable node blocks that may hold the inode");
        } else {
            dirents.push(x.clone());
        }
    }
    if todo.is_empty() && dirents.is_empty() {
        return Ok(());
    }
    let outcome = (|| -> Result<Vec<Option<String>>> {
        let s = tx.session()?;
        let mut each = Vec::new();
        for x in &todo {
            let done = txn::undone_on_error(s, |s| {
                s.pfs(Some(&x.pfs)).and_then(|pfs| s.fix_inode(&pfs, x.inum, |m| x.fix.apply(m)))
            })?;
            each.push(done.err().map(|e| e.to_string()));
        }
        for x in &dirents {
            let done = txn::undone_on_error(s, |s| {
                s.pfs(Some(&x.pfs)).and_then(|pfs| s.fix_drop_dirent(&pfs, x.dir, x.key))
            })?;
            each.push(done.err().map(|e| e.to_string()));
        }
        Ok(each)
    })();
    for (i, x) in dirents.iter().enumerate() {
        let f = &mut report.findings[x.finding];
        match &outcome {
            Ok(each) => match &each[todo.len() + i] {
                None => f.done("entry removed"),
                Some(why) => f.left(why),
            },
            Err(e) => f.left(e),
        }
    }
    for (i, x) in todo.iter().enumerate() {
        let f = &mut report.findings[x.finding];
        match &outcome {
            Ok(each) => match &each[i] {
                None => f.done(x.fix),
                Some(why) => f.left(why),
            },
            Err(e) => f.left(e),
        }
    }
    Ok(())
}

/// One run under the lock the caller holds.
fn fsck_locked(spec: &str, opts: &FsckOptions) -> Result<FsckReport> {
    fsck_on(spec, opts, None)
}

/// One check under the lock the caller holds; with `staged`, of the tree a
/// staged header names ([`txn`]) instead of the best copy's, and without
/// the header pass (the copies on the media are what the first check saw
/// and repaired).
fn fsck_on(spec: &str, opts: &FsckOptions, staged: Option<&VolumeData>) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    if staged.is_none() {
        let access = if opts.repair == RepairMode::No { Access::ReadOnly } else { Access::ReadWrite };
        let mut device = Device::open(spec, access)?;
        let any_repaired = header_pass(&mut device, opts, &mut report)?;
        if any_repaired {
            device.sync()?;
        }
        if report.findings.iter().any(|f| f.problem.id == HDR_NONE_VALID.id && !f.repaired) {
            return Ok(report);
        }
    }
    // The device is reopened per copy (read-only) so each walk sees one header.
    // The best copy first (its results are the report's), then, if asked,
    // every other valid copy of the root volume.
    let mut choices = vec![CopyChoice::Best];
    if opts.all_copies {
        if let Ok(fs) = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Best) {
            let root = &fs.headers[fs.root_position()];
            let others = root.copies.iter().filter(|c| c.is_valid() && Some(c.index) != root.best);
            choices.extend(others.map(|c| CopyChoice::Index(c.index)));
        }
    }
    for (n, choice) in choices.iter().enumerate() {
        let device = Device::open(spec, Access::ReadOnly)?;
        let opened = match (staged, choice) {
            (Some(v), CopyChoice::Best) => Hammer2::open_staged(device, v),
            _ => Hammer2::open(device, *choice),
        };
        let fs = match opened {
            Ok(fs) => fs,
            Err(e) => {
                // Unusable geometry is a finding (the header verified but its
                // content is damage), not an operational error.
                let problem = if matches!(e, Error::Geometry { .. }) { HDR_GEOMETRY } else { VOLSET };
                let location = match choice {
                    CopyChoice::Best => Place::Device { path: spec.to_string() },
                    CopyChoice::Index(i) => {
                        Place::HeaderCopy { volume: spec.to_string(), copy: *i, offset: None }
                    }
                };
                report.add(problem, location, e.to_string());
                if n == 0 {
                    // Still say which header copy was refused.
                    if let Some((copy, tid)) = root_best_copy(spec) {
                        report.header_copy = Some(copy);
                        report.mirror_tid = Some(tid);
                    }
                    return Ok(report);
                }
                continue;
            }
        };
        if n == 0 {
            report.header_copy = Some(fs.copy);
            report.mirror_tid = Some(fs.voldata.mirror_tid.get());
            field_checks(&fs, &mut report);
        }
        // Every copy verified gets the full topology semantics; the PFS
        // summary is that of the copy in use.
        let pfs_before = report.pfs.len();
        let start = report.findings.len();
        let spill =
            spill::SpillConfig::new(opts.tmpdir.as_deref(), opts.memory.unwrap_or(spill::DEFAULT_BUDGET));
        // The freemap pass walks the topology on its own: it runs beside
        // the topology pass (another core), its findings still come after.
        let mut freemap_report = FsckReport::default();
        let checked =
            (n == 0).then(|| crate::read::walk::Checked::new(&fs).map(std::sync::Arc::new)).flatten();
        let (stats, freemap_done) = std::thread::scope(|scope| {
            let shared = checked.clone();
            let freemap =
                (n == 0).then(|| scope.spawn(|| freemap::check_sharing(&fs, &mut freemap_report, shared)));
            let stats = topology::check_within(&fs, &mut report, opts.trace.clone(), &spill, checked);
            let done = freemap.map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            (stats, done)
        });
        let stats = stats?;
        if n == 0 {
            report.topology = start..report.findings.len();
        }
        if n > 0 {
            report.pfs.truncate(pfs_before);
        }
        report.trees.push(TreeStats { tree: format!("topology (copy #{})", fs.copy), stats });
        if let Some(done) = freemap_done {
            done?;
            report.findings.append(&mut freemap_report.findings);
        }
        for root in [Root::Freemap] {
            let mut found = Vec::new();
            let stats = walk(&fs, root, WalkOptions::default(), &mut |v| {
                if let Some(e) = &v.error {
                    found.push(e.clone());
                }
            })?;
            let tree = format!(
                "{} (copy #{})",
                if root == Root::Topology { "topology" } else { "freemap" },
                fs.copy
            );
            for e in found {
                use crate::error::CorruptKind as K;
                let problem = match e.kind {
                    K::CheckMismatch { .. } => BREF_CHECK,
                    K::UnknownCheck(_) => BREF_UNKNOWN_CHECK,
                    K::BadRadix(_) => BREF_RADIX,
                    K::OutOfRange { .. } => BREF_RANGE,
                    K::TooDeep(_) | K::Cycle => TREE_DEPTH,
                    _ => BREF_OTHER,
                };
                report.add(problem, Place::Tree { root, copy: fs.copy, at: e.location }, e.kind.to_string());
            }
            report.trees.push(TreeStats { tree, stats });
        }
    }
    Ok(report)
}

/// [`FREEMAP_LAG`], [`FREEMAP_UNMARKED`] and [`FREEMAP_LINEAR`], when allowed: the freemap
/// recovery, then the freemap checked again (see the module documentation).
/// When the run committed its write session, that commit carried the
/// replay (the session replays a lagging freemap, and every block in use
/// when blocks in use were found free) or the rebuilt freemap
/// (`rebuilt_freemap`): the freemap is checked again, and only what is
/// left gets a recovery of its own. A replay that cannot run (a damaged
/// freemap or topology) leaves the findings uncorrected, saying why.
fn repair_freemap(
    spec: &str,
    opts: &FsckOptions,
    rebuilt_freemap: bool,
    report: &mut FsckReport,
) -> Result<()> {
    let damaged = damaged_freemap(report);
    if rebuilt_freemap && !damaged.is_empty() {
        let synced = report.commit.as_ref().map(|c| c.synced.clone()).unwrap_or_default();
        for i in damaged {
            let f = &mut report.findings[i];
            f.repaired = true;
            f.detail.push_str(&format!(
                "; freemap rebuilt from the topology in this run's commit, then header copies {synced:?} \
                 (which named the damaged freemap) rewritten with the new header"
            ));
        }
    } else if opts.repair == RepairMode::Yes && report.commit.is_none() {
        rebuild_damaged_freemap(spec, report)?;
    }
    let ids = [FREEMAP_LAG.id, FREEMAP_UNMARKED.id, FREEMAP_LINEAR.id];
    let todo: Vec<usize> = (0..report.findings.len())
        .filter(|&i| {
            let f = &report.findings[i];
            ids.contains(&f.problem.id) && may_repair(opts.repair, &f.problem) && !f.repaired
        })
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let remaining = if report.commit.is_some() { freemap_left(spec)? } else { usize::MAX };
    let outcome = if remaining == 0 {
        Ok((0, true))
    } else {
        let linear = todo.iter().any(|&i| report.findings[i].problem.id == FREEMAP_LINEAR.id);
        let mut outcome = replay(spec, linear);
        if outcome.as_ref().is_ok_and(|(remaining, full)| *remaining > 0 && !full) {
            outcome = replay(spec, true);
        }
        outcome
    };
    let note = match outcome {
        Ok((0, _)) => None,
        Ok((n, _)) => Some(format!("{n} freemap problems remain after the recovery")),
        Err(e) => Some(e.to_string()),
    };
    for i in todo {
        let f = &mut report.findings[i];
        match &note {
            None => f.repaired = true,
            Some(why) => f.left(why),
        }
    }
    Ok(())
}

/// The findings that make the freemap's own blocks unreadable, not yet
/// repaired.
fn damaged_freemap(report: &FsckReport) -> Vec<usize> {
    (0..report.findings.len())
        .filter(|&i| {
            let f = &report.findings[i];
            let unreadable = [BREF_CHECK, BREF_UNKNOWN_CHECK, BREF_RADIX, BREF_RANGE, BREF_OTHER];
            unreadable.iter().any(|p| p.id == f.problem.id)
                && f.location.root() == Some(Root::Freemap)
                && !f.repaired
        })
        .collect()
}

/// `-y` with a freemap block that fails its check (beyond the recovery's
/// reach: it replays into a freemap it can load) and no tree repair to
/// commit it with: the freemap is rebuilt from the topology by bulkfree's
/// code ([`crate::write::session::rebuild_freemap`]).
/// Once that commit is durable, the older header copies, which still name
/// the damaged freemap blocks, are rewritten with the new header one at a
/// time ([`crate::write::session::sync_header_copies`] gives the reasoning): after
/// the repair every valid copy references a consistent freemap, and at no
/// moment does none.
fn rebuild_damaged_freemap(spec: &str, report: &mut FsckReport) -> Result<()> {
    let damaged = damaged_freemap(report);
    if damaged.is_empty() {
        return Ok(());
    }
    let mut fs = Hammer2::open(Device::open(spec, Access::ReadWrite)?, CopyChoice::Best)?;
    let outcome = crate::write::session::rebuild_freemap(&mut fs, true)
        .and_then(|(_, _, synced)| crate::write::alloc::Allocator::load(&fs).map(|_| synced));
    for i in damaged {
        let f = &mut report.findings[i];
        match &outcome {
            Ok(synced) => {
                f.repaired = true;
                if !synced.is_empty() {
                    f.detail.push_str(&format!(
                        "; freemap rebuilt, then header copies {synced:?} (which named the damaged freemap) \
                         rewritten with the new header"
                    ));
                }
            }
            Err(e) => f.left(e),
        }
    }
    Ok(())
}

/// One recovery run on `spec` (full when asked, or when the freemap does
/// not lag), then the freemap pass again: how many [`FREEMAP_LAG`],
/// [`FREEMAP_UNMARKED`] and [`FREEMAP_LINEAR`] findings remain, and whether
/// the replay was full.
fn replay(spec: &str, full: bool) -> Result<(usize, bool)> {
    use crate::recover::{recover, RecoverOptions};
    let mut fs = Hammer2::open(Device::open(spec, Access::ReadWrite)?, CopyChoice::Best)?;
    let full = full || fs.voldata.freemap_tid.get() >= fs.voldata.mirror_tid.get();
    recover(&mut fs, &RecoverOptions { dry_run: false, full }, None)?;
    drop(fs);
    Ok((freemap_left(spec)?, full))
}

/// How many [`FREEMAP_LAG`], [`FREEMAP_UNMARKED`] and [`FREEMAP_LINEAR`]
/// findings the freemap pass makes on `spec` as it is now.
fn freemap_left(spec: &str) -> Result<usize> {
    let fs = Hammer2::open(Device::open(spec, Access::ReadOnly)?, CopyChoice::Best)?;
    let mut again = FsckReport::default();
    freemap::check(&fs, &mut again)?;
    let ids = [FREEMAP_LAG.id, FREEMAP_UNMARKED.id, FREEMAP_LINEAR.id];
    Ok(again.findings.iter().filter(|f| ids.contains(&f.problem.id)).count())
}

/// The best copy of the root volume of `spec` (index, mirror_tid), if any.
fn root_best_copy(spec: &str) -> Option<(usize, u64)> {
    let device = Device::open(spec, Access::ReadOnly).ok()?;
    (0..device.len()).find_map(|i| {
        let h = read_headers(device.volume(i));
        let best = h.best()?;
        let data = best.data.as_ref()?;
        (data.volu_id == crate::format::ROOT_VOLUME).then(|| (best.index, data.mirror_tid.get()))
    })
}

/// Header copies of every volume; returns whether anything was written.
fn header_pass(device: &mut Device, opts: &FsckOptions, report: &mut FsckReport) -> Result<bool> {
    let mut wrote = false;
    for vi in 0..device.len() {
        let path = device.volume(vi).path().display().to_string();
        let h = read_headers(device.volume(vi));
        let Some(best) = h.best().cloned() else {
            report.add(
                HDR_NONE_VALID,
                Place::Device { path: path.clone() },
                crate::volume::describe_copies(&h),
            );
            continue;
        };
        let best_data = best.data.as_ref().expect("valid copies have data");
        let best_tid = best_data.mirror_tid.get();
        // The slot the commit after the best copy writes: the next copy in
        // rotation that fits on the volume.
        let n = h.copies.len();
        let next_slot =
            (1..=n).map(|i| (best.index + i) % n).find(|&i| !matches!(h.copies[i].state, CopyState::Absent));
        // The highest mirror_tid a damaged copy with a readable sector 0 claims.
        let newest_claim = h
            .copies
            .iter()
            .filter_map(|c| match &c.state {
                CopyState::Invalid(p) if !p.iter().any(sect0_unreadable) => c.mirror_tid(),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for c in &h.copies {
            let (problem, detail) = match &c.state {
                CopyState::Absent | CopyState::Valid if c.index == best.index => continue,
                CopyState::Absent => continue,
                CopyState::Valid => {
                    let tid = c.mirror_tid().unwrap_or(0);
                    if tid == best_tid && c.data.as_ref().map(|d| d.as_bytes()) == Some(best_data.as_bytes())
                    {
                        continue;
                    }
                    (HDR_STALE, format!("mirror_tid {tid:#x}, best copy #{} has {best_tid:#x}", best.index))
                }
                CopyState::Invalid(problems) => {
                    let claimed = c.data.as_ref().map(|d| d.mirror_tid.get()).unwrap_or(0);
                    let text = problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
                    // A damaged copy claiming a newer commit: its mirror_tid is
                    // only trustworthy when sector 0 (which holds it) verifies.
                    let sect0_ok = !problems.iter().any(sect0_unreadable);
                    let same_fs = c.data.as_ref().is_some_and(|d| d.fsid == best_data.fsid);
                    if sect0_ok
                        && claimed == best_tid.wrapping_add(1)
                        && Some(c.index) == next_slot
                        && newest_claim == claimed
                        && same_fs
                    {
                        (
                            HDR_TORN,
                            format!(
                                "{text}; claims mirror_tid {claimed:#x}, the commit after the best copy #{} \
                                 ({best_tid:#x}), which never completed",
                                best.index
                            ),
                        )
                    } else if sect0_ok && claimed > best_tid {
                        (HDR_CORRUPT_NEWER, format!("{text}; claims mirror_tid {claimed:#x} > {best_tid:#x}"))
                    } else {
                        (HDR_CORRUPT, text)
                    }
                }
            };
            let repair = may_repair(opts.repair, &problem)
                || (problem.id == HDR_STALE.id && opts.sync_headers && opts.repair != RepairMode::No);
            let mut finding = Finding { problem, location: copy_location(&path, c), detail, repaired: false };
            if repair {
                device.volume_mut(vi).write(c.offset, best_data.as_bytes())?;
                finding.repaired = true;
                wrote = true;
            }
            report.findings.push(finding);
        }
    }
    Ok(wrote)
}

/// Whether a header problem makes sector 0 (magic, mirror_tid, fsid)
/// untrustworthy.
fn sect0_unreadable(p: &crate::volume::HeaderProblem) -> bool {
    use crate::volume::HeaderProblem as P;
    matches!(p, P::Sect0Crc { .. } | P::BadMagic(_) | P::ReverseEndian)
}

/// The header fields [`Hammer2::open`] accepts but a consistent file
/// system would not have ([`crate::volume::field_problems`]).
fn field_checks(fs: &Hammer2, report: &mut FsckReport) {
    use crate::volume::FieldKind;
    let volume = fs.device.volume(fs.root_position()).path().display().to_string();
    let loc = Place::HeaderCopy { volume, copy: fs.copy, offset: None };
    for p in crate::volume::field_problems(fs) {
        let problem = match p.kind {
            FieldKind::VolumeSet => HDR_FIELD,
            FieldKind::Areas => HDR_AREAS,
            FieldKind::Allocator => HDR_ALLOCATOR,
        };
        report.add(problem, loc.clone(), p.to_string());
    }
}

/// [`HDR_TREE_DAMAGED`]: with `--use-copy N`, or when the tree of the copy
/// in use has damage and an older copy's has less ([`rollback::choose`]),
/// the finding says which copy and what is lost; with `-y` the run's write
/// session is based on that copy ([`txn`]: its tree, a freemap rebuilt from
/// it, a transaction id above every copy's, the other copies rewritten
/// after the commit, as [`rollback::make_current`] does on its own), and
/// the findings of the abandoned tree count as repaired (no header copy
/// names it once the run commits). The damage weighed for the copy in use
/// is that of the tree the run has so far (the rebuild staged), not the
/// media's. Returns whether the run is now based on the older copy.
fn rollback_pass(
    spec: &str,
    opts: &FsckOptions,
    tx: &mut txn::RepairTx,
    report: &mut FsckReport,
) -> Result<bool> {
    let Some(copy) = report.header_copy else { return Ok(false) };
    let damaged = rollback::damage_in(report, report.topology.clone());
    let target = match opts.use_copy {
        Some(n) => Some(n),
        None => {
            if damaged == 0 {
                return Ok(false);
            }
            let (mut current, older) = rollback::candidates(spec)?;
            current.problems = damaged;
            rollback::choose(current, &older).map(|c| c.copy)
        }
    };
    let Some(target) = target else { return Ok(false) };
    let write = opts.repair == RepairMode::Yes;
    let plan = rollback::make_current(spec, target, false)?;
    let place = Place::HeaderCopy { volume: spec.to_string(), copy: target, offset: None };
    let mut detail = format!(
        "copy #{} (mirror_tid {:#x}): {} problems in its tree against {damaged} under copy #{copy}; {}",
        target,
        plan.to.mirror_tid,
        plan.to.problems,
        plan.lost()
    );
    if !write {
        detail.push_str("; -y makes it current");
        report.add(HDR_TREE_DAMAGED, place, detail);
        return Ok(false);
    }
    tx.roll_back_to(target)?;
    detail.push_str("; made current by this run's commit, the other header copies rewritten after it");
    // Everything found so far below the header copies belongs to the
    // abandoned tree (and its freemap): no copy names it after the commit.
    // What the rebuild staged in it is dropped with it.
    for f in &mut report.findings {
        if matches!(f.location, Place::HeaderCopy { .. } | Place::Device { .. }) {
            continue;
        }
        if !f.repaired {
            f.done("abandoned with the rollback");
        } else {
            f.detail.push_str("; dropped with the rollback (the tree it was made in is abandoned)");
        }
    }
    report.findings.push(Finding { problem: HDR_TREE_DAMAGED, location: place, detail, repaired: true });
    Ok(true)
}
