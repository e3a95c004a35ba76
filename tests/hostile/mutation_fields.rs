//! Structure-aware mutation test: fields of blockrefs, inodes, directory
//! entries, freemap leaves and volume headers in copies of the fixtures are
//! set to hostile values and resealed (every check code recomputed up to the
//! header, see tests/common/reseal.rs), so fsck's topology and freemap
//! logic and every read path meet the hostile value itself. The catalog of
//! mutations is tests/common/mutate.rs; the order is a seeded shuffle.
//!
//! Per mutation, in-process on a watchdog thread (tests/common/run.rs):
//! fsck, the volume headers, both tree walks, `dump` show/freemap/pfs/inode,
//! PFS list, readdir, lookups, resolves, file and symlink reads, and (on
//! the small fixtures) extraction into a temporary directory. On a sample
//! (every Nth mutation, and the hostile magnitudes) the binaries run too,
//! as child processes with a deadline, to catch what `catch_unwind` cannot
//! (aborts on allocation failure, stack overflows).
//!
//! Two tests per fixture share one run: `*_survives` (no panic, no hang, no
//! crashed binary; findings are not vacuous) and `*_reports` (where a
//! mutation's effect is certain, fsck reports the expected problem id).
//! Findings per problem id are printed (`--nocapture`) and appear in the
//! failure messages.

use crate::common::mutate::{catalog, Rng};
use crate::common::reseal::{Image, Map};
use crate::common::run::{exercise, run_guarded, run_tool, Outcome, Reads, DUMP, EDIT, FSCK};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A case (all in-process read paths on one mutated image) still running
/// after this has hung (a bound on hangs, not on speed: see `run::HANG`).
const CASE_LIMIT: Duration = crate::common::run::HANG;
/// A binary on a mutated image still running after this has hung (healthy
/// runs take well under 0.1 s).
const TOOL_LIMIT: Duration = crate::common::run::HANG;
/// After this many hangs a fixture's run stops (each leaves a thread busy).
const MAX_HANGS: usize = 3;

struct Plan {
    fixture: &'static str,
    seed: u64,
    /// Structures of each kind mutated at most (see `catalog`).
    per_kind: usize,
    max_cases: usize,
    /// Extract the default PFS on every case (small fixtures only).
    extract: bool,
    /// Directory entries visited and bytes read per file, at most.
    entries: usize,
    file_bytes: u64,
    /// Run the whole-tree walks and `dump show` on every `dumps_every`-th case.
    dumps_every: usize,
    /// Run the binaries on every `bin_every`-th case...
    bin_every: usize,
    /// ...and on this many cases with hostile magnitudes.
    bin_huge: usize,
}

#[derive(Default)]
struct Results {
    fixture: &'static str,
    catalog: usize,
    cases: usize,
    elapsed: Duration,
    tool_runs: usize,
    /// Problem id -> cases where fsck reported it (beyond the pristine image's findings).
    per_id: BTreeMap<&'static str, usize>,
    /// Cases whose only new findings are check-code mismatches.
    check_only: usize,
    /// Cases with a new finding other than a check-code mismatch.
    semantic: usize,
    /// Cases with no new finding at all.
    silent: usize,
    panics: Vec<String>,
    hangs: Vec<String>,
    /// Allocations beyond 1 GiB (they abort a binary).
    huge_allocs: Vec<String>,
    tool_failures: Vec<String>,
    fsck_errors: Vec<String>,
    /// Mutation class -> (cases, misses with detail).
    expected: BTreeMap<String, (usize, Vec<String>)>,
    baseline: Vec<&'static str>,
}

impl Results {
    fn summary(&self) -> String {
        let mut s = String::new();
        let rate = self.cases as f64 / self.elapsed.as_secs_f64().max(1e-3);
        let _ = writeln!(
            s,
            "{}: {} mutations run (catalog {}) in {:.1?} ({rate:.0}/s), {} binary runs; \
             {} with a semantic finding, {} with check-code findings only, {} silent",
            self.fixture,
            self.cases,
            self.catalog,
            self.elapsed,
            self.tool_runs,
            self.semantic,
            self.check_only,
            self.silent
        );
        let _ = writeln!(s, "  pristine image findings: {:?}", self.baseline);
        let _ = writeln!(s, "  cases per fsck problem id:");
        for (id, n) in &self.per_id {
            let _ = writeln!(s, "    {id:<20} {n}");
        }
        let misses: usize = self.expected.values().map(|v| v.1.len()).sum();
        let asserted: usize = self.expected.values().map(|v| v.0).sum();
        let _ = writeln!(
            s,
            "  {asserted} cases with a certain finding, {misses} missed; {} panics, {} hangs, {} huge allocations, \
             {} binary failures, {} fsck errors",
            self.panics.len(),
            self.hangs.len(),
            self.huge_allocs.len(),
            self.tool_failures.len(),
            self.fsck_errors.len()
        );
        s
    }
}

/// Problem ids that only say "the bytes do not match their check code".
const CHECK_IDS: &[&str] = &["BREF_CHECK"];

fn run(plan: &Plan) -> Results {
    // One fixture at a time: a huge allocation on a rayon worker is then
    // attributed to the right case, and the timings are not shared.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let img = Image::new(plan.fixture);
    let map = Map::build(&img);
    let mut rng = Rng(plan.seed);
    let mut muts = catalog(&img, &map, plan.per_kind, &mut rng);
    let mut r = Results { fixture: plan.fixture, catalog: muts.len(), ..Default::default() };
    rng.shuffle(&mut muts);
    muts.truncate(plan.max_cases);

    let base = hammer2::fsck::fsck(img.spec(), &Default::default()).unwrap();
    r.baseline = base.findings.iter().map(|f| f.problem.id.code()).collect();
    assert_eq!(
        base.exit_code(),
        0,
        "{}: the pristine image is not clean: {:#?}",
        plan.fixture,
        base.findings
    );
    let mut base_count: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &r.baseline {
        *base_count.entry(id).or_default() += 1;
    }

    // Extractions go to memory where the host offers it (a few files per case).
    let shm = std::path::Path::new("/dev/shm");
    let scratch = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let mut huge_runs = 0;
    for (i, m) in muts.iter().enumerate() {
        img.begin();
        m.apply(&img, &map);
        let spec = img.spec().to_string();
        let xdir = plan.extract.then(|| scratch.path().join(format!("x{i}")));
        // Mostly as the tools read; sometimes without check codes, so that
        // garbage reaches every parser.
        let reads = Reads {
            verify: i % 4 != 3,
            entries: plan.entries,
            file_bytes: plan.file_bytes,
            dumps: i % plan.dumps_every == 0,
        };
        let xd = xdir.clone();
        let outcome = run_guarded(CASE_LIMIT, move || exercise(&spec, reads, xd.as_deref()));
        r.cases += 1;
        match outcome {
            Outcome::Done(x) => {
                let mut count: BTreeMap<&'static str, usize> = BTreeMap::new();
                for id in &x.fsck_ids {
                    *count.entry(id).or_default() += 1;
                }
                let new: Vec<&'static str> = count
                    .iter()
                    .filter(|(id, n)| **n > base_count.get(*id).copied().unwrap_or(0))
                    .map(|(id, _)| *id)
                    .collect();
                for id in &new {
                    *r.per_id.entry(id).or_default() += 1;
                }
                if new.is_empty() {
                    r.silent += 1;
                } else if new.iter().all(|id| CHECK_IDS.contains(id)) {
                    r.check_only += 1;
                } else {
                    r.semantic += 1;
                }
                if let Err(e) = &x.fsck {
                    r.fsck_errors.push(format!("{}: fsck failed: {e}", m.what));
                }
                if !m.expect.is_empty() {
                    let entry = r.expected.entry(m.class.clone()).or_default();
                    entry.0 += 1;
                    let unmet = m.expect.unmet(&x.fsck_ids);
                    if !unmet.is_empty() || x.fsck.is_err() {
                        entry.1.push(format!(
                            "{}: expected {} but fsck gave {:?} {:?}",
                            m.what,
                            unmet.join(" and "),
                            x.fsck.as_ref().map_err(|e| e.as_str()),
                            x.fsck_sample
                        ));
                    }
                }
            }
            Outcome::Panicked(msg) => r.panics.push(format!("{}: {msg}", m.what)),
            Outcome::TimedOut => r.hangs.push(format!("{}: still running after {CASE_LIMIT:?}", m.what)),
            Outcome::HugeAlloc(msg) => r.huge_allocs.push(format!("{}: {msg}", m.what)),
        }
        let sample = i % plan.bin_every == 0 || (m.huge && huge_runs < plan.bin_huge);
        if sample {
            huge_runs += usize::from(m.huge);
            let spec = img.spec();
            let hostdir = scratch.path().join(format!("get{i}"));
            let hostdir = hostdir.to_str().unwrap();
            for (exe, args) in [
                (FSCK, vec![spec]),
                (DUMP, vec!["show", "--verify-data", spec]),
                (DUMP, vec!["freemap", spec]),
                (DUMP, vec!["pfs", spec]),
                (EDIT, vec![spec, "ls", "-l", "/"]),
                (EDIT, vec![spec, "get", "/", hostdir]),
            ] {
                let t = run_tool(exe, &args, TOOL_LIMIT);
                r.tool_runs += 1;
                let bad_fsck = exe == FSCK && !matches!(t.code, Some(0 | 1 | 4 | 8));
                if t.crashed() || bad_fsck {
                    r.tool_failures.push(format!("{}: {}", m.what, t.describe()));
                }
            }
            let _ = std::fs::remove_dir_all(scratch.path().join(format!("get{i}")));
        }
        img.rollback();
        if let Some(d) = xdir {
            let _ = std::fs::remove_dir_all(d);
        }
        if r.hangs.len() >= MAX_HANGS || r.huge_allocs.len() >= 100 {
            break; // the hung threads keep cores busy: the rest would time out too
        }
    }
    r.elapsed = start.elapsed();
    eprintln!("{}", r.summary());
    r
}

fn list(title: &str, items: &[String], max: usize) -> String {
    let mut s = format!("{} {title}:\n", items.len());
    for it in items.iter().take(max) {
        let _ = writeln!(s, "  {it}");
    }
    if items.len() > max {
        let _ = writeln!(s, "  ... and {} more", items.len() - max);
    }
    s
}

/// No panic, no hang, no crashed binary, and the run reached fsck's semantics.
fn check_survives(r: &Results, min_semantic: usize, must_reach: &[&str]) {
    let mut problems = String::new();
    if !r.panics.is_empty() {
        problems += &list("panics", &r.panics, 15);
    }
    if !r.hangs.is_empty() {
        problems += &list("hangs", &r.hangs, 5);
    }
    if !r.huge_allocs.is_empty() {
        problems += &list("allocations beyond 1 GiB (a binary aborts there)", &r.huge_allocs, 10);
    }
    if !r.tool_failures.is_empty() {
        problems += &list("binary failures", &r.tool_failures, 15);
    }
    if !r.fsck_errors.is_empty() {
        problems += &list("fsck errors (fsck must report, not fail)", &r.fsck_errors, 10);
    }
    let stopped = r.hangs.len() >= MAX_HANGS || r.huge_allocs.len() >= 100;
    if !stopped {
        // Resealing works: few mutations end at a mere check-code mismatch.
        if r.check_only > r.cases / 20 {
            let _ = writeln!(
                problems,
                "{} cases found only check-code mismatches (resealing failed?)",
                r.check_only
            );
        }
        if r.semantic < min_semantic {
            let _ = writeln!(
                problems,
                "only {} cases reached a semantic finding (want {min_semantic})",
                r.semantic
            );
        }
        for id in must_reach {
            let n = r.per_id.get(id).copied().unwrap_or(0);
            if n < 3 {
                let _ = writeln!(problems, "{id} reached in {n} cases (want at least 3)");
            }
        }
    }
    assert!(problems.is_empty(), "{}\n{problems}", r.summary());
}

/// Every mutation with a certain effect got the finding it must.
fn check_reports(r: &Results) {
    let mut problems = String::new();
    for (class, (n, misses)) in &r.expected {
        if !misses.is_empty() {
            let _ = write!(problems, "{class}: {} of {n} ", misses.len());
            problems += &list("missed", misses, 4);
        }
    }
    assert!(problems.is_empty(), "{}\n{problems}", r.summary());
}

/// Ids any fixture with a freemap leaf and PFS contents must reach.
const SEMANTIC: &[&str] = &[
    "BREF_TYPE",
    "BREF_KEY",
    "BREF_RADIX",
    "BREF_RANGE",
    "BREF_RESERVED",
    "BREF_STATS",
    "BREF_UNKNOWN_CHECK",
    "INODE_BAD",
    "INODE_NLINKS",
    "INODE_MODE",
    "DATA_PAST_EOF",
    "DIRENT_BAD",
    "DIRENT_DANGLING",
    "FREEMAP_STRUCT",
    "FREEMAP_UNMARKED",
    "HDR_FIELD",
    "VOLSET",
];

macro_rules! fixture_tests {
    ($m:ident, $plan:expr, $min_semantic:expr, $must_reach:expr) => {
        mod $m {
            use super::*;
            fn results() -> &'static Results {
                static R: OnceLock<Results> = OnceLock::new();
                R.get_or_init(|| run(&$plan))
            }
            #[test]
            fn survives() {
                check_survives(results(), $min_semantic, $must_reach);
            }
            #[test]
            fn reports() {
                check_reports(results());
            }
        }
    };
}

fixture_tests!(
    small_iscsi,
    Plan {
        fixture: "small-iscsi",
        seed: 0x9e37_79b9_7f4a_7c15,
        per_kind: usize::MAX,
        max_cases: 4000,
        extract: true,
        entries: 1000,
        file_bytes: 1 << 20,
        dumps_every: 1,
        bin_every: 150,
        bin_huge: 8,
    },
    500,
    SEMANTIC
);

fixture_tests!(
    pfs_snapshot,
    Plan {
        fixture: "pfs-snapshot",
        seed: 0xd1b5_4a32_d192_ed03,
        per_kind: usize::MAX,
        max_cases: 1200,
        extract: true,
        entries: 1000,
        file_bytes: 1 << 20,
        dumps_every: 1,
        bin_every: 150,
        bin_huge: 8,
    },
    500,
    SEMANTIC
);

fixture_tests!(
    varied,
    Plan {
        fixture: "varied",
        seed: 0x2545_f491_4f6c_dd1d,
        per_kind: 1,
        max_cases: 50,
        extract: false,
        entries: 200,
        file_bytes: 64 << 10,
        dumps_every: 3,
        bin_every: 40,
        bin_huge: 1,
    },
    15,
    &[]
);

/// Guards the helpers: applying and rolling back every mutation restores the
/// image byte for byte, and resealing an untouched image keeps it clean.
#[test]
fn mutations_roll_back_and_reseal_cleanly() {
    let img = Image::new("small-iscsi");
    let map = Map::build(&img);
    let before = img.contents();
    let muts = catalog(&img, &map, usize::MAX, &mut Rng(1));
    let mut changed = 0;
    for m in &muts {
        changed += usize::from(m.writes.iter().any(|(off, b)| img.read(*off, b.len()) != *b));
        img.begin();
        m.apply(&img, &map);
        img.rollback();
    }
    assert!(changed * 100 >= muts.len() * 95, "only {changed} of {} mutations change anything", muts.len());
    assert!(img.contents() == before, "rollback did not restore the image");
    // Reseal from every inode and leaf (nothing changed): still clean.
    let dirty: Vec<u64> = map.inodes.iter().map(|i| i.off).chain(map.leaves.iter().map(|l| l.0)).collect();
    map.reseal(&img, &dirty);
    let r = hammer2::fsck::fsck(img.spec(), &Default::default()).unwrap();
    assert_eq!(r.exit_code(), 0, "{:#?}", r.findings);
    assert!(img.contents() == before, "resealing an unchanged image changed it");
}
