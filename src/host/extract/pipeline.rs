//! The order-keeping pipeline behind extraction.
//!
//! One thread walks the namespace and numbers the jobs it hands out (a
//! regular file each); worker threads run them in any order. What must
//! follow a file (a hard link to it, the times and mode of the directories
//! around it) is *deferred*: queued on the walking thread with the number
//! of jobs handed out before it, and applied once every one of those jobs
//! has finished (`low`, the count of finished jobs with no gap before it,
//! has reached it). So a directory is finished after its contents, as a
//! single thread would do it, whatever order the workers finish in.
//!
//! Errors keep the single-threaded semantics too: the extraction fails
//! with the error a one-thread run would have met first. A job that fails
//! stops the walk; jobs numbered after it are skipped, those before it
//! still run, and deferred work queued before it is still applied.
//!
//! Memory: at most [`QUEUE`] jobs wait (paths and inode references, no
//! file contents); contents are held only by the threads running jobs,
//! each in its own buffer. When the queue is full, the walking thread runs
//! the oldest job itself rather than sleep (on a loaded machine every
//! sleep costs a scheduling delay).

use crate::error::{Error, Result};
use std::collections::{BTreeSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Jobs waiting at most.
const QUEUE: usize = 256;

/// Deferred work waiting at most: past it, the walking thread runs or
/// waits for jobs until the oldest can be applied (many names linked to
/// one file still in flight, say).
const DEFERRED: usize = 4096;

/// What a job runs: the job and the running thread's scratch space; it
/// returns the bytes it produced.
pub(super) type Run<'r, J, S> = dyn Fn(&J, &mut S) -> Result<u64> + Sync + 'r;

/// What the walking thread and the workers share.
pub(super) struct Shared<J> {
    state: Mutex<State<J>>,
    /// A job was queued, or the queue closed.
    work: Condvar,
    /// A job finished.
    done: Condvar,
}

struct State<J> {
    queue: VecDeque<(u64, J)>,
    /// No more jobs come: idle workers end.
    closed: bool,
    /// Every job numbered below this has finished.
    low: u64,
    /// Finished jobs numbered above `low`.
    ahead: BTreeSet<u64>,
    /// The lowest-numbered failed job and its error.
    failed: Option<(u64, Error)>,
    /// Jobs finished well, and their bytes.
    files: u64,
    bytes: u64,
}

impl<J> Shared<J> {
    pub(super) fn new() -> Self {
        Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                low: 0,
                ahead: BTreeSet::new(),
                failed: None,
                files: 0,
                bytes: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A panicking job leaves no half-made state behind (the panic
        // reaches the caller when the threads are joined).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the oldest queued job; `None` as its job when it is to be
    /// skipped (an earlier job failed).
    fn take(st: &mut State<J>) -> Option<(u64, Option<J>)> {
        let (seq, job) = st.queue.pop_front()?;
        let skip = st.failed.as_ref().is_some_and(|(k, _)| seq > *k);
        Some((seq, (!skip).then_some(job)))
    }

    /// Runs `job` (unless skipped) outside the lock and records the result.
    fn run_one<'g, S>(
        &'g self,
        mut st: MutexGuard<'g, State<J>>,
        (seq, job): (u64, Option<J>),
        run: &Run<'_, J, S>,
        scratch: &mut S,
    ) -> MutexGuard<'g, State<J>> {
        drop(st);
        // A panicking job (a bug) fails as an error rather than leave the
        // walking thread waiting for it.
        let result = job.map(|j| {
            std::panic::catch_unwind(AssertUnwindSafe(|| run(&j, scratch))).unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Internal(format!("an extraction thread panicked: {why}")))
            })
        });
        st = self.lock();
        match result {
            Some(Ok(bytes)) => {
                st.files += 1;
                st.bytes += bytes;
            }
            Some(Err(e)) if st.failed.as_ref().is_none_or(|(k, _)| seq < *k) => st.failed = Some((seq, e)),
            Some(Err(_)) | None => {}
        }
        st.ahead.insert(seq);
        while st.ahead.first() == Some(&st.low) {
            st.ahead.pop_first();
            st.low += 1;
        }
        self.done.notify_one();
        st
    }

    /// A worker: runs jobs until the queue is closed and empty.
    pub(super) fn work<S: Default>(&self, run: &Run<'_, J, S>) {
        let mut scratch = S::default();
        let mut st = self.lock();
        loop {
            if let Some(next) = Self::take(&mut st) {
                st = self.run_one(st, next, run, &mut scratch);
            } else if st.closed {
                return;
            } else {
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Ends the workers once the queue is empty (also when the walking
    /// thread fails or panics: see [`Closer`]).
    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }
}

/// Closes the queue when dropped, so that workers never wait forever.
pub(super) struct Closer<'s, J>(pub(super) &'s Shared<J>);

impl<J> Drop for Closer<'_, J> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Where the pipeline stands, as the walking thread last saw it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    /// Jobs finished well, and their bytes.
    pub files: u64,
    pub bytes: u64,
}

/// The walking thread's side.
pub(super) struct Pipeline<'s, 'r, J, D, S> {
    shared: &'s Shared<J>,
    run: &'r Run<'r, J, S>,
    scratch: S,
    /// Jobs handed out.
    issued: u64,
    /// Deferred work and the number of jobs that must finish first.
    deferred: VecDeque<(u64, D)>,
    /// As of the last look: jobs finished with no gap, the failed job.
    low: u64,
    failed_at: Option<u64>,
    /// The walking thread's first error and its place in the order.
    error: Option<(u64, Error)>,
    /// Deferred work failed: no more of it runs.
    halted: bool,
}

/// The walk is to stop: a job failed (the error is the pipeline's).
#[derive(Debug)]
pub(super) struct Stop;

impl<'s, 'r, J, D, S: Default> Pipeline<'s, 'r, J, D, S> {
    pub(super) fn new(shared: &'s Shared<J>, run: &'r Run<'r, J, S>) -> Self {
        Pipeline {
            shared,
            run,
            scratch: S::default(),
            issued: 0,
            deferred: VecDeque::new(),
            low: 0,
            failed_at: None,
            error: None,
            halted: false,
        }
    }

    /// Hands out a job (running queued ones here while the queue is full).
    pub(super) fn submit(&mut self, job: J) -> Result<(), Stop> {
        let mut st = self.shared.lock();
        while st.queue.len() >= QUEUE && st.failed.is_none() {
            // OK to unwrap: the queue is not empty.
            let next = Shared::take(&mut st).unwrap();
            st = self.shared.run_one(st, next, self.run, &mut self.scratch);
        }
        if st.failed.is_some() {
            return Err(Stop);
        }
        st.queue.push_back((self.issued, job));
        self.issued += 1;
        self.shared.work.notify_one();
        Ok(())
    }

    /// Queues work to apply once every job handed out so far has finished.
    pub(super) fn defer(&mut self, op: D) {
        self.deferred.push_back((self.issued, op));
    }

    /// Looks at the shared state: what has finished.
    pub(super) fn look(&mut self) -> Counts {
        let st = self.shared.lock();
        self.low = st.low;
        self.failed_at = st.failed.as_ref().map(|(k, _)| *k);
        Counts { files: st.files, bytes: st.bytes }
    }

    /// Whether a job had failed at the last [`Self::look`].
    pub(super) fn job_failed(&self) -> bool {
        self.failed_at.is_some()
    }

    /// The next deferred work whose jobs have finished (as of the last
    /// [`Self::look`]) and that comes before any failure, with its place.
    pub(super) fn next_ready(&mut self) -> Option<(u64, D)> {
        let &(at, _) = self.deferred.front()?;
        let before_failure = self.failed_at.is_none_or(|k| at <= k);
        if at <= self.low && before_failure && !self.halted {
            self.deferred.pop_front()
        } else {
            None
        }
    }

    /// Records the failure of deferred work taken at `at`: no further
    /// deferred work runs (all of it comes later in the order).
    pub(super) fn fail_at(&mut self, at: u64, e: Error) {
        self.halted = true;
        self.record(at, e);
    }

    /// Records an error of the walk itself (after every job handed out,
    /// and after the deferred work queued so far, which still runs).
    pub(super) fn fail(&mut self, e: Error) {
        self.record(self.issued, e);
    }

    fn record(&mut self, at: u64, e: Error) {
        if self.error.as_ref().is_none_or(|(a, _)| at <= *a) {
            self.error = Some((at, e));
        }
    }

    /// Closes the queue and waits for every job, running queued ones here.
    pub(super) fn drain(&mut self) -> Counts {
        self.shared.close();
        self.wait_for(self.issued);
        self.look()
    }

    /// Whether so much deferred work waits that the walk should let the
    /// jobs catch up first ([`Self::catch_up`]).
    pub(super) fn backlogged(&self) -> bool {
        self.deferred.len() > DEFERRED
    }

    /// Runs or waits for jobs until the oldest deferred work can be applied.
    pub(super) fn catch_up(&mut self) -> Counts {
        if let Some(&(at, _)) = self.deferred.front() {
            self.wait_for(at);
        }
        self.look()
    }

    /// Runs queued jobs here, or waits, until the first `n` jobs have
    /// finished (or been skipped after a failure: they all end).
    fn wait_for(&mut self, n: u64) {
        let mut st = self.shared.lock();
        while st.low < n {
            if let Some(next) = Shared::take(&mut st) {
                st = self.shared.run_one(st, next, self.run, &mut self.scratch);
            } else {
                st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// The outcome once drained and deferred work applied: the error met
    /// first in the order, if any.
    pub(super) fn result(self) -> Result<()> {
        let failed = self.shared.lock().failed.take();
        match (self.error, failed) {
            (Some((at, e)), Some((k, _))) if at <= k => Err(e),
            (_, Some((_, e))) => Err(e),
            (Some((_, e)), None) => Err(e),
            (None, None) => Ok(()),
        }
    }
}
