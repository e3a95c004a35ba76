//! DATA block verification on every core: the topology pass hands DATA
//! blocks to verifier threads in batches while its walk goes on; each block
//! is read (a pread copy), its check code verified and, when compressed,
//! decoded.

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
    let mut buf = Vec::new();
    loop {
        // A poisoned lock means another verifier panicked: stop taking work.
        let Ok(batch) = jobs.lock().map(|rx| rx.recv()) else { break };
        let Ok(batch) = batch else { break };
        let outcomes = verify_batch(fs, &batch, &mut buf);
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            found.add(job, outcome);
        }
    }
    found
}

/// Verifies a batch's blocks in media order, reading neighbours (the
/// blocks of small files written one after another lie side by side) with
/// one pread of at most [`SPAN`] bytes: a million small files cost some
/// tens of thousands of reads instead of a million. A read that fails
/// (a range across volumes, an I/O error) falls back to one read per
/// block, which reports the error of each.
fn verify_batch(fs: &Hammer2, batch: &[DataJob<'_>], buf: &mut Vec<u8>) -> Vec<DataOutcome> {
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
        if group.len() > 1 {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            if fs.device.read_into(start, &mut buf[..len]).is_ok() {
                for &i in group {
                    let b = batch[i].bref;
                    let from = (b.offset() - start) as usize;
                    outcomes[i] = Some(verify_media(b, &buf[from..from + b.physical_size() as usize]));
                }
                continue;
            }
        }
        for &i in group {
            outcomes[i] = Some(verify_data(fs, batch[i].bref));
        }
    }
    outcomes.into_iter().map(|o| o.expect("every block verified")).collect()
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
