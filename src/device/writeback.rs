//! Early write-back of a volume being written in bulk.
//!
//! Left to itself, Linux starts writing a file's dirty pages to the disk
//! only when they pass `vm.dirty_background_ratio` of memory (gigabytes on
//! most machines) or age past `vm.dirty_expire_centisecs` (30 s). An import
//! of a few gigabytes would then dirty everything in memory first and wait
//! for all of it at the commit's barrier: the encoding and the disk never
//! work at the same time. Here, every [`EVERY`] bytes written, a helper
//! thread asks the kernel to start writing the volume's dirty pages
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which neither waits for the
//! writes to finish nor flushes the disk's cache), so the disk works while
//! the session goes on encoding; the barrier then waits only for the tail.
//!
//! Durability is not this module's business: the commit's barriers
//! (fdatasync) still make everything durable in the contract's order. A
//! write-back started early only means that a page may reach the disk
//! before the barrier, which the contract allows for every block but the
//! volume header (written after the first barrier, never through here
//! before it). Small sessions (single edits) never reach [`EVERY`] and
//! start no thread.

use super::lock::LockedFile;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes written between two requests to start write-back.
pub const EVERY: u64 = 16 << 20;

/// The write-back requests of one volume; the helper thread starts on the
/// first.
pub(super) struct Writeback {
    file: Arc<LockedFile>,
    /// Bytes written since the last request.
    since: u64,
    /// Requests to the helper; None before the first, or when it could not
    /// be started (the kernel then writes back on its own schedule).
    kick: Option<SyncSender<()>>,
    helper: Option<JoinHandle<()>>,
    /// Set once starting the helper failed: not tried again.
    failed: bool,
}

impl Writeback {
    pub(super) fn new(file: Arc<LockedFile>) -> Self {
        Writeback { file, since: 0, kick: None, helper: None, failed: false }
    }

    /// Counts `len` bytes written; every [`EVERY`] bytes, asks the helper
    /// to start writing back what is dirty. Never blocks: a request made
    /// while the helper is still busy with the previous one is merged into
    /// it (each covers the whole volume).
    pub(super) fn wrote(&mut self, len: u64) {
        self.since += len;
        if self.since < EVERY {
            return;
        }
        self.since = 0;
        if self.kick.is_none() && !self.failed {
            self.start();
        }
        if let Some(kick) = &self.kick {
            match kick.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => self.kick = None,
            }
        }
    }

    fn start(&mut self) {
        // One pending request at most: later ones merge into it.
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let file = Arc::clone(&self.file);
        let spawned = std::thread::Builder::new().name("writeback".into()).spawn(move || {
            use std::os::unix::io::AsRawFd;
            let fd = file.file().as_raw_fd();
            while rx.recv().is_ok() {
                // SAFETY: sync_file_range on a descriptor the Arc keeps
                // open; no memory is passed. Offset 0 and length 0 mean
                // the whole file. A failure only leaves the write-back to
                // the kernel's schedule (the barrier reports real errors).
                unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
            }
        });
        match spawned {
            Ok(h) => {
                self.kick = Some(tx);
                self.helper = Some(h);
            }
            Err(_) => self.failed = true,
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        // Closing the channel ends the helper after its current request.
        self.kick = None;
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{lock, Access};

    #[test]
    fn requests_start_the_helper_only_past_the_threshold_and_it_ends_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let locked = lock::lock_paths(&[path], Access::ReadWrite, lock::Wait::No).unwrap();
        let mut wb = Writeback::new(locked.into_iter().next().unwrap());
        wb.wrote(EVERY - 1);
        assert!(wb.helper.is_none(), "a small session starts no thread");
        wb.wrote(1);
        assert!(wb.helper.is_some() && wb.kick.is_some());
        assert_eq!(wb.since, 0);
        // Many requests in a row never block.
        for _ in 0..100 {
            wb.wrote(EVERY);
        }
        drop(wb);
    }
}
