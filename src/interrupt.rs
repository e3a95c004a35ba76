//! A user's interrupt (Ctrl-C, SIGTERM), seen by long writing work so that
//! it can stop where stopping is clean.
//!
//! The library installs no signal handler: a binary does, and calls
//! [`deliver`] from it. Work that can stop cleanly holds a [`Cancellable`]
//! guard while it runs and calls [`check`] at safe points (between blocks
//! of an import, between a script's commands); the error it then returns
//! ([`Error::Interrupted`]) goes the way of any failure: an editor run
//! rolls the device back from its undo log, so the image is left
//! byte-identical. Outside such work, or on a second interrupt, [`deliver`]
//! says so and the binary exits at once (what a default handler would do;
//! no header is written half, as commits write it with one pwrite).

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Held while work that stops cleanly on [`check`] runs.
#[must_use = "the work is cancellable only while the guard lives"]
pub struct Cancellable(());

impl Drop for Cancellable {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks the start of work that stops cleanly on [`check`].
pub fn cancellable() -> Cancellable {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    Cancellable(())
}

/// Called by a binary's signal handler: true when running work will stop
/// by itself at its next [`check`] (the first interrupt during cancellable
/// work); false when the process should exit now.
pub fn deliver() -> bool {
    ACTIVE.load(Ordering::SeqCst) > 0 && !REQUESTED.swap(true, Ordering::SeqCst)
}

/// True once an interrupt was delivered.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// [`Error::Interrupted`] once an interrupt was delivered.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
