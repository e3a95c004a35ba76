//! DATA block verification on every core: the topology pass hands DATA
//! blocks to verifier threads in batches while its walk goes on; each block
//! is hashed where it lies in the mapping (no copy), its check code
//! verified and, when compressed, decoded.
//!
//! The blocks of a batch are taken in media order and neighbours in spans
//! of at most [`SPAN`] bytes; each span's pages are mapped in one
//! `madvise(MADV_POPULATE_READ)` (one call instead of a page fault per
//! 64 KiB, and a read error comes back as an error instead of a SIGBUS).
//! Where that fails (an older kernel, an I/O error, a span across volumes)
//! the blocks are copied with pread one by one, which reports each one's
//! error. The device releases the mapping's pages past its residency
//! bound ([`crate::device::TRIM_AFTER`]), so memory stays flat.

use super::{Problem, BREF_CHECK, BREF_DECOMPRESS, BREF_RANGE, BREF_UNKNOWN_CHECK};
use crate::error::Location;
use crate::format::check::{self, CheckOutcome};
use crate::format::{Blockref, CompMethod};
use crate::volume::Hammer2;
use std::cell::RefCell;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

/// DATA blocks are handed to the verifier threads in batches of this many.
pub(super) const DATA_BATCH: usize = 256;
/// Batches queued ahead of the verifiers at most (bounds memory).
pub(super) const QUEUED_BATCHES: usize = 64;

/// One DATA block to verify: where it was found and in which PFS (an index
/// into [`Pass::pfs_names`]), numbered in traversal order.
pub(super) struct DataJob<'a> {
    pub(super) seq: u64,
    pub(super) bref: &'a Blockref,
    pub(super) loc: Location,
    pub(super) pfs: usize,
}

/// What the verifiers found: totals, and the problems with their jobs.
#[derive(Default)]
pub(super) struct DataFindings<'a> {
    pub(super) verified: u64,
    pub(super) not_checked: u64,
    pub(super) problems: Vec<(DataJob<'a>, Problem, String)>,
}

impl<'a> DataFindings<'a> {
    pub(super) fn add(&mut self, job: DataJob<'a>, outcome: DataOutcome) {
        match outcome {
            DataOutcome::Verified => self.verified += 1,
            DataOutcome::NotChecked => self.not_checked += 1,
            DataOutcome::Problem(p, detail) => self.problems.push((job, p, detail)),
        }
    }

    pub(super) fn merge(&mut self, o: DataFindings<'a>) {
        self.verified += o.verified;
        self.not_checked += o.not_checked;
        self.problems.extend(o.problems);
    }
}

/// Blocks of a batch lying at most this far apart are read together.
const GAP: u64 = 16 << 10;
/// The most one read of neighbouring blocks covers.
const SPAN: u64 = 1 << 20;

/// A verifier thread: takes batches until the walk is over.
pub(super) fn verifier<'a>(fs: &Hammer2, jobs: &Mutex<Receiver<Vec<DataJob<'a>>>>) -> DataFindings<'a> {
    let mut found = DataFindings::default();
    loop {
        // A poisoned lock means another verifier panicked: stop taking work.
        let Ok(batch) = jobs.lock().map(|rx| rx.recv()) else { break };
        let Ok(batch) = batch else { break };
        let outcomes = verify_batch(fs, &batch);
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            found.add(job, outcome);
        }
    }
    found
}

/// Verifies a batch's blocks in media order, neighbours (the blocks of
/// small files written one after another lie side by side) mapped together
/// in spans of at most [`SPAN`] bytes: a million small files cost some tens
/// of thousands of `madvise` calls instead of a million faults or reads.
fn verify_batch(fs: &Hammer2, batch: &[DataJob<'_>]) -> Vec<DataOutcome> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_unstable_by_key(|&i| batch[i].bref.offset());
    let mut outcomes: Vec<Option<DataOutcome>> = (0..batch.len()).map(|_| None).collect();
    let mut at = 0;
    while at < order.len() {
        let first = batch[order[at]].bref;
        let start = first.offset();
        let mut end = start.saturating_add(first.physical_size());
        let mut next = at + 1;
        while next < order.len() {
            let b = batch[order[next]].bref;
            let b_end = b.offset().saturating_add(b.physical_size());
            if b.offset() > end.saturating_add(GAP) || b_end.saturating_sub(start) > SPAN {
                break;
            }
            end = end.max(b_end);
            next += 1;
        }
        let group = &order[at..next];
        at = next;
        let len = (end - start) as usize;
        if let Some(span) = fs.device.read(start, len).ok().filter(|span| advise(span, Advice::Populate)) {
            for &i in group {
                let b = batch[i].bref;
                let from = (b.offset() - start) as usize;
                outcomes[i] = Some(verify_media(b, &span[from..from + b.physical_size() as usize]));
            }
            advise(span, Advice::Release);
            continue;
        }
        for &i in group {
            outcomes[i] = Some(verify_data(fs, batch[i].bref));
        }
    }
    outcomes.into_iter().map(|o| o.expect("every block verified")).collect()
}

/// What [`advise`] asks of the kernel.
#[derive(Clone, Copy)]
enum Advice {
    /// Map the pages now (`MADV_POPULATE_READ`).
    Populate,
    /// Unmap them (`MADV_DONTNEED`): a span verified is not read again, so
    /// its pages need not wait for the device's next release of the whole
    /// mapping to leave this process's resident set.
    Release,
}

/// Advises the kernel about the pages of `span` (a slice of the device's
/// mapping); false when it refused. A span that could not be populated is
/// not read through the mapping (a read error there would be a SIGBUS).
fn advise(span: &[u8], advice: Advice) -> bool {
    const PAGE: usize = 4096;
    let addr = span.as_ptr() as usize;
    let base = addr & !(PAGE - 1);
    let len = addr + span.len() - base;
    let advice = match advice {
        Advice::Populate => libc::MADV_POPULATE_READ,
        Advice::Release => libc::MADV_DONTNEED,
    };
    // SAFETY: [base, base + len) lies inside the device's file mapping
    // (the pages holding `span`), a shared mapping that is never stored
    // into. MADV_POPULATE_READ only faults those pages in for reading;
    // MADV_DONTNEED only drops their page-table entries, so any slice of
    // them still held reads the same bytes again from the page cache.
    unsafe { libc::madvise(base as *mut libc::c_void, len, advice) == 0 }
}

pub(super) enum DataOutcome {
    Verified,
    NotChecked,
    Problem(Problem, String),
}

thread_local! {
    /// Where LZ4 blocks are decoded to (reused, 64 KiB).
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Check code and decompression of one DATA block (bounds already checked),
/// on a pread copy of its media.
pub(super) fn verify_data(fs: &Hammer2, b: &Blockref) -> DataOutcome {
    let (off, len) = (b.offset(), b.physical_size() as usize);
    match crate::read::walk::with_data(fs, off, len, |media| verify_media(b, media)) {
        Ok(outcome) => outcome,
        Err(kind) => DataOutcome::Problem(BREF_RANGE, kind.to_string()),
    }
}

pub(super) fn verify_media(b: &Blockref, media: &[u8]) -> DataOutcome {
    let checked = match check::verify(b, media) {
        CheckOutcome::Ok => true,
        CheckOutcome::NotChecked => false,
        CheckOutcome::Mismatch { expected, found } => {
            let m = b.check_method();
            return DataOutcome::Problem(BREF_CHECK, format!("{m}: stored {expected}, data gives {found}"));
        }
        CheckOutcome::UnknownMethod(m) => {
            return DataOutcome::Problem(BREF_UNKNOWN_CHECK, format!("method {m}"))
        }
    };
    let logical = 1usize << b.keybits.clamp(10, 16);
    let decoded = match b.comp_method() {
        CompMethod::Lz4 => Some(DECODED.with(|cell| {
            let mut out = cell.borrow_mut();
            if out.len() < logical {
                out.resize(logical, 0);
            }
            crate::format::compress::lz4_decompress_into(media, &mut out[..logical]).map(|_| ())
        })),
        CompMethod::Zlib => Some(crate::format::compress::zlib_decompress(media, logical).map(|_| ())),
        CompMethod::Unknown(m) => {
            return DataOutcome::Problem(BREF_DECOMPRESS, format!("unknown compression method {m}"))
        }
        CompMethod::None | CompMethod::Autozero => None,
    };
    match decoded {
        Some(Err(e)) => DataOutcome::Problem(BREF_DECOMPRESS, e.to_string()),
        _ if checked => DataOutcome::Verified,
        _ => DataOutcome::NotChecked,
    }
}
