//! The one write session of a repair run: every repair of `-y` (or `-p`)
//! that changes the tree goes into it, and it is committed once, with one
//! header write, at the end of the run.
//!
//! The phases still need to see each other's work: the tree is checked
//! again after the rebuild (what it left, and what it uncovered), and after
//! a rollback. So before such a check the session *stages*
//! ([`Session::stage`]): its chains and the freemap are written, durably,
//! into space no header copy reaches, and the header naming them is kept in
//! memory only; the check opens the file system on that header
//! ([`Hammer2::open_staged`]), and the next phase goes on in the same
//! session, on the staged tree. Only [`RepairTx::commit`] writes a header
//! (the copy after the one on the media, in rotation), then, when a repair
//! cut damage out that the older copies still name, rewrites those copies
//! one at a time ([`crate::write::session::sync_header_copies`]).
//!
//! A crash at any point before that header write leaves every header copy
//! as it was: the state before the run, with its damage. A crash during
//! the header write tears that one copy, which then fails its CRCs, and the
//! copy before it stays the best: the same old state. After it, the new
//! header is the best copy: the repaired state; the rewrite of the older
//! copies only changes which older states remain as fallbacks. So a run is
//! atomic, as the commit contract makes every edit (ARCHITECTURE.md).
//!
//! Why one session and not one per phase with a staged header handed from
//! one to the next: the session's allocator is what keeps the staged blocks
//! and the trees of the header copies on the media from being handed out
//! again (see [`crate::write::session`]'s `stage` module); a new allocator
//! loaded from the media's freemap would know neither the staged blocks nor
//! the blocks the staged tree stopped using. One transaction id for the
//! whole run also makes the committed tree look as if one commit wrote it.
//!
//! How the session opens decides what else the commit repairs:
//! - normally on the best copy, its freemap loaded (a freemap lagging the
//!   topology replayed, as every session does), and, when the check found
//!   blocks in use marked free or a `linear` inside blocks in use and those
//!   may be repaired, every block the tree reaches marked allocated first
//!   (the full replay of the freemap recovery);
//! - with `-y` and freemap blocks that fail their checks, on a freemap
//!   rebuilt from the topology ([`Session::with_rebuilt_freemap`]);
//! - for a rollback, at the older copy chosen, on a freemap rebuilt from
//!   its tree, with a transaction id above every copy's: the rollback is
//!   the base of the run's one commit, and the repairs after it are made
//!   on the rolled-back tree (whatever the rebuild staged before is
//!   dropped: no header ever named it). The header goes to the copy after
//!   the best one, as every commit's, never over the newest copy: a torn
//!   write there would leave the chosen older copy, unrepaired, as the best.

use super::{may_repair, FsckOptions, FsckReport, RepairMode};
use super::{FREEMAP_LINEAR, FREEMAP_UNMARKED};
use crate::device::{Access, Device};
use crate::error::Result;
use crate::format::VolumeData;
use crate::volume::{CopyChoice, Hammer2};
use crate::write::session::Session;
use serde::Serialize;

/// Opens the device a repair writes through (`None` in
/// [`FsckOptions::writer`]: the spec, read-write).
pub type Writer = std::sync::Arc<dyn Fn(&str) -> Result<Device> + Send + Sync>;

/// The commit of a repair run.
#[derive(Debug, Clone, Serialize)]
pub struct RepairCommit {
    /// Its transaction id (the new `mirror_tid`).
    pub tid: u64,
    /// The header copy it wrote.
    pub copy: usize,
    /// The older header copies rewritten with it afterwards.
    pub synced: Vec<usize>,
}

/// How the session opens (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Loaded { replay_full: bool },
    RebuiltFreemap,
    Rollback(usize),
}

/// The run's write session, opened when a phase first needs it.
pub(super) struct RepairTx {
    spec: String,
    writer: Option<Writer>,
    base: Base,
    session: Option<Session>,
    /// A stage or the base itself needs the final commit.
    pending: bool,
}

impl RepairTx {
    /// The transaction of a run over `report` (the first check's).
    pub(super) fn new(spec: &str, opts: &FsckOptions, report: &FsckReport) -> RepairTx {
        let freemap_damaged = opts.repair == RepairMode::Yes && !super::damaged_freemap(report).is_empty();
        let replay_full = report.findings.iter().any(|f| {
            [FREEMAP_UNMARKED.id, FREEMAP_LINEAR.id].contains(&f.problem.id)
                && may_repair(opts.repair, &f.problem)
        });
        let base = if freemap_damaged { Base::RebuiltFreemap } else { Base::Loaded { replay_full } };
        RepairTx { spec: spec.to_string(), writer: opts.writer.clone(), base, session: None, pending: false }
    }

    /// The device spec the run repairs.
    pub(super) fn spec(&self) -> &str {
        &self.spec
    }

    fn device(&self) -> Result<Device> {
        match &self.writer {
            Some(open) => open(&self.spec),
            None => Device::open(&self.spec, Access::ReadWrite),
        }
    }

    /// The session, opened on the first call (see the module
    /// documentation for how).
    pub(super) fn session(&mut self) -> Result<&mut Session> {
        if self.session.is_none() {
            let s = match self.base {
                Base::Loaded { replay_full } => {
                    let fs = Hammer2::open(self.device()?, CopyChoice::Best)?;
                    let mut s = Session::from_fs(fs, true)?;
                    // A replay that cannot finish (a node it cannot read)
                    // only marked more blocks allocated: the freemap
                    // findings then say they were not repaired.
                    if replay_full && s.replay_full().is_ok() {
                        self.pending = true;
                    }
                    s
                }
                Base::RebuiltFreemap => {
                    self.pending = true;
                    Session::with_rebuilt_freemap(Hammer2::open(self.device()?, CopyChoice::Best)?)?
                }
                Base::Rollback(copy) => {
                    self.pending = true;
                    Session::with_rebuilt_freemap(Hammer2::open(self.device()?, CopyChoice::Index(copy))?)?
                }
            };
            self.session = Some(s);
        }
        Ok(self.session.as_mut().expect("opened above"))
    }

    /// Drops whatever was staged and bases the run on header copy `copy`
    /// (fsck's rollback): the session opens there, now.
    pub(super) fn roll_back_to(&mut self, copy: usize) -> Result<()> {
        self.session = None;
        self.pending = false;
        self.base = Base::Rollback(copy);
        self.session().map(|_| ())
    }

    /// Stages what the session changed (see the module documentation);
    /// returns the header a check should open on, if anything is staged.
    pub(super) fn stage(&mut self) -> Result<Option<Box<VolumeData>>> {
        let Some(s) = self.session.as_mut() else { return Ok(None) };
        if s.is_dirty() {
            s.stage()?;
            self.pending = true;
        }
        Ok(self.pending.then(|| s.fs.voldata.clone()))
    }

    /// Whether the run's freemap is rebuilt from the topology by the commit.
    pub(super) fn rebuilds_freemap(&self) -> bool {
        matches!(self.base, Base::RebuiltFreemap | Base::Rollback(_)) && self.pending
    }

    /// The one commit of the run, when anything is to be written.
    pub(super) fn commit(&mut self) -> Result<Option<RepairCommit>> {
        let Some(s) = self.session.as_mut() else { return Ok(None) };
        if !self.pending && !s.is_dirty() {
            return Ok(None);
        }
        let done = s.commit()?;
        self.pending = false;
        Ok(Some(RepairCommit { tid: done.tid, copy: done.copy, synced: s.synced_copies().to_vec() }))
    }
}

/// Runs one repair in `s`; when it fails, the session goes back to where it
/// was before it, so that one repair that fails half-way never makes the
/// run's commit refuse (and lose the others). Returns the repair's own
/// result; an error only when going back fails.
pub(super) fn undone_on_error<T>(
    s: &mut Session,
    op: impl FnOnce(&mut Session) -> Result<T>,
) -> Result<Result<T>> {
    let cp = s.checkpoint();
    let r = op(s);
    if r.is_err() {
        s.restore(cp)?;
    }
    Ok(r)
}
