//! Older volume-header copies brought up to the one in use, after a repair
//! that cut damage out of the tree.
//!
//! Normally older copies are left as they are: they are the fallback if the
//! newest copy is lost, and checkers that look at every copy (the reference
//! fsck_hammer2 does, unless given `-b`) find them consistent, only older.
//! After a repair that is no longer true: fsck's rebuild of a freemap whose
//! blocks fail their checks, or `destroy`/`destroy-inum` cutting out an inode
//! that cannot be read, leave the older copies naming exactly the damaged
//! blocks the repair removed. A checker then still reports the damage, and a
//! mount that falls back to an older copy meets it again. So once such a
//! repair is committed, the other copies get the new header too.
//!
//! Order, so that at every moment at least one valid copy references a
//! consistent tree: the repair is committed as usual (blocks, freemap,
//! barrier, the next header copy, barrier), so the new tree is durable and
//! its header copy valid before anything else is touched; only then is each
//! other copy rewritten with the same bytes, one at a time, each followed
//! by a barrier. A crash during one of these writes can only tear that one
//! copy (which then fails its CRCs and is ignored); the new copy stays
//! valid and best, and the copies not yet rewritten still describe their
//! older, complete states. The blocks only the old copies referenced are
//! not reused before a bulkfree finds them unreferenced (contract point 4:
//! after the rewrite no valid copy reaches them).
//!
//! Only the root volume carries the header copies a commit rotates through;
//! other volumes' headers are not touched (as by a commit).

use crate::error::Result;
use crate::volume::{CopyState, Hammer2};
use zerocopy::IntoBytes;

/// Rewrites every other header copy of the root volume that exists and
/// differs from the one in use with the header in use, one at a time, each
/// made durable before the next; returns the copies rewritten. Call only
/// after the commit that made the header in use is durable (see the module
/// documentation).
pub fn sync_header_copies(fs: &mut Hammer2) -> Result<Vec<usize>> {
    let pos = fs.root_position();
    let current = fs.voldata.clone();
    let todo: Vec<(usize, u64)> = fs.headers[pos]
        .copies
        .iter()
        .filter(|c| c.index != fs.copy && !matches!(c.state, CopyState::Absent))
        .filter(|c| !(c.is_valid() && c.data.as_ref().is_some_and(|d| d.as_bytes() == current.as_bytes())))
        .map(|c| (c.index, c.offset))
        .collect();
    let mut done = Vec::new();
    for (index, offset) in todo {
        let mut vol = fs.device.volume_mut(pos);
        vol.write(offset, current.as_bytes())?;
        vol.sync_range(offset, current.as_bytes().len() as u64)?;
        let c = &mut fs.headers[pos].copies[index];
        c.state = CopyState::Valid;
        c.data = Some(current.clone());
        done.push(index);
    }
    Ok(done)
}
