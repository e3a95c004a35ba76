//! The space kept free for removals.
//!
//! Every change copies blocks on write, a removal too: on a file system
//! filled to its last block nothing could be removed any more. The kernel
//! avoids that in `hammer2_vfs_enospace` (hammer2_vfsops.c): writes and
//! the creation of names (write, create, mkdir, link, symlink, mknod) fail
//! with ENOSPC once `allocator_free - bytes` would drop below half of
//! `free_reserved` for root (all of it for other users), where
//! `free_reserved` is `allocator_size / 20`, at least one 4 MiB segment;
//! removals, renames and attribute changes are not checked and may use
//! the reserve. We keep root's share (an offline tool writes as root)
//! and measure it against the space the leaves can really hand out,
//! which is 4 MiB less than `allocator_free` on media newfs made (see
//! [`Allocator::usable_free_bytes`]): the kernel measures the header's
//! figure, so on images under some 320 MiB its reserve is no reserve.
//!
//! `newfs_hammer2 --populate` fills a new image as makefs does, without
//! a reserve ([`Session::set_space_reserve`]).
//!
//! [`Allocator::usable_free_bytes`]: crate::write::alloc::Allocator::usable_free_bytes

use super::Session;
use crate::error::{Error, Result};

/// One freemap segment: the least the kernel reserves.
const SEGMENT: u64 = 4 << 20;

/// The kernel's reserve for root: half of `allocator_size / 20`, at least
/// half a segment.
pub(crate) fn default_reserve(allocator_size: u64) -> u64 {
    (allocator_size / 20).max(SEGMENT) / 2
}

impl Session {
    /// Bytes the writing operations leave free for removals (the default
    /// is the kernel's, see the module documentation; 0: none).
    pub fn set_space_reserve(&mut self, bytes: u64) {
        self.budget.reserve = bytes;
    }

    /// Fails with ENOSPC when `bytes` more would leave less than the
    /// reserve; called before a writing operation changes anything.
    /// Without a reserve the allocator alone says when space runs out.
    pub(crate) fn need_space(&self, bytes: u64) -> Result<()> {
        if self.budget.reserve == 0 {
            return Ok(());
        }
        let free = self.tx.alloc.usable_free_bytes();
        if free < self.budget.reserve.saturating_add(bytes) {
            return Err(Error::NoSpace(format!(
                "{free} bytes free, {} kept for removals: no room for {bytes} more",
                self.budget.reserve
            )));
        }
        Ok(())
    }
}
