//! Staged commits: one transaction built in steps, each step durable but
//! unreachable until the one header write at the end.
//!
//! A repair run (fsck `-y`) works in phases that each need to see what the
//! phase before it did: the rebuild of unreadable nodes, then the tree
//! checked again, then the structure repairs, `/lost+found`, the field
//! repairs. Committing each phase would write one header per phase, and a
//! crash between two of them would leave a state that is valid but neither
//! the damaged one nor the repaired one. Instead a phase *stages*:
//! [`Session::stage`] writes every chain the session changed and the
//! freemap (copy-on-write, as a commit does: new blocks from free space,
//! freemap blocks into rotation slots no valid header copy names), then a
//! durability barrier, and keeps the header that would name them in memory
//! only (`fs.voldata`). The checks after the phase open the file system on
//! that header ([`crate::Hammer2::open_staged`]); the session goes on from
//! the staged tree; only [`Session::commit`] writes a header, to the copy
//! after the one on the media, in rotation, as every commit does.
//!
//! Why the steps stay invisible and safe:
//! - no header copy on the media changes before the final commit, so a
//!   crash at any point before it leaves every copy as it was, naming the
//!   state before the run (the blocks staged lie in space the media's
//!   freemap calls free, the freemap blocks in slots no copy names);
//! - every step is one transaction id: the blocks of all steps carry the
//!   id the final header gets, so the committed tree looks as if one
//!   commit wrote it, and the freemap blocks of a later step rotate past
//!   the earlier step's (which no header names) rather than over a copy's;
//! - the allocator is the session's one allocator across the steps: it was
//!   loaded from the media's freemap (every block the current tree reaches
//!   is allocated there), it pinned what older copies reach when the
//!   session opened, and a block a step stops using is only marked
//!   possibly free (bulkfree reclaims it), never handed out again in the
//!   run. So the tree of the header on the media (the current one, which
//!   the staged header will make the older), the older copies' trees and
//!   the staged tree are all protected until the final header is durable.
//!
//! This changes nothing for normal edits: a commit is a stage followed by
//! the header write ([`crate::write::flush::commit`]), as before.

use super::Session;
use crate::error::{Error, Result};
use crate::format::VolumeData;
use crate::volume::Hammer2;
use crate::write::alloc::Allocator;
use crate::write::flush;

impl Session {
    /// Writes everything changed so far and the freemap, durably, without
    /// a header (see the module documentation); returns the header that
    /// names them, now the session's `fs.voldata`. The transaction stays
    /// open: later operations build on the staged tree and
    /// [`Session::commit`] writes the one header. Refused, writing
    /// nothing, after an operation failed half-way (as a commit is); a
    /// checkpoint taken before a stage must not be restored after it.
    pub fn stage(&mut self) -> Result<&VolumeData> {
        self.refuse_half_done()?;
        if !self.write {
            return Err(Error::Internal("a dry run cannot stage".into()));
        }
        let (v, _) = flush::stage(&mut self.fs, &mut self.tx.root, &mut self.tx.alloc, self.tx.tid, true)?;
        self.fs.voldata = v;
        self.tx.dirty = false;
        Ok(&self.fs.voldata)
    }

    /// Why the session refuses to commit (an operation failed after it had
    /// started changing chains), if it does.
    pub fn half_done(&self) -> Option<&str> {
        self.tx.failed.as_deref()
    }

    /// Refuses a commit or a stage after an operation failed half-way.
    pub(super) fn refuse_half_done(&self) -> Result<()> {
        match &self.tx.failed {
            Some(why) => {
                Err(Error::invalid(format!("an operation failed part-way ({why}); nothing is committed")))
            }
            None => Ok(()),
        }
    }

    /// Asks the next commit to rewrite the older header copies once it is
    /// durable ([`super::sync_header_copies`]): for a repair whose old
    /// state the older copies still name.
    pub fn resync_after_commit(&mut self) {
        self.resync_copies = true;
    }

    /// A session whose allocator is built from the topology of `fs` alone
    /// ([`Allocator::rebuild`]), not loaded from its freemap: for a freemap
    /// whose blocks fail their checks, and for fsck's rollback (`fs` opened
    /// at an older header copy, whose own freemap blocks the rotation may
    /// have reused since). What every other valid copy reaches is pinned as
    /// in every session, and the transaction id is above every valid
    /// copy's, so the commit becomes the copy readers choose. The commit
    /// writes the new freemap (also with nothing else changed) and then
    /// rewrites the other header copies.
    ///
    /// The commit's header goes to the copy after the *best* one in
    /// rotation, as every commit's does, not after the copy `fs` was opened
    /// at: written after an older copy it could land on the newest one, and
    /// a crash tearing it would leave neither that newest state nor the
    /// new one, but the older copy's, unrepaired, as the best.
    pub fn with_rebuilt_freemap(fs: Hammer2) -> Result<Session> {
        let (alloc, _) = Allocator::rebuild(&fs)?;
        let tid = super::bulkfree::tid_above_every_copy(&fs)?;
        let best = fs.headers[fs.root_position()].best;
        // What every other valid copy reaches is pinned here: the copies
        // pinned are those other than the one opened, so the newest is
        // among them.
        let mut s = Self::with_allocator(fs, alloc, tid, None, true)?;
        if let Some(best) = best {
            s.fs.copy = best;
        }
        s.tx.dirty = true;
        s.resync_copies = true;
        Ok(s)
    }

    /// Marks every block the tree in use reaches allocated in the
    /// session's allocator (the full replay of `hammer2_recover`): for a
    /// freemap that calls blocks in use free. Call before anything is
    /// allocated; the commit writes the repaired freemap.
    pub fn replay_full(&mut self) -> Result<()> {
        crate::write::alloc::replay::replay(&self.fs, &mut self.tx.alloc, None, None)?;
        self.tx.dirty = true;
        Ok(())
    }
}
