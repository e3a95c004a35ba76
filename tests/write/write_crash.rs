//! The commit contract under crashes, full disks and real block devices.
//!
//! - Crash consistency: a session's writes and barriers are recorded
//!   (tests/common/recording.rs) over two commits of a few hundred
//!   operations; the image is then rebuilt at every barrier, around and
//!   across (torn) every header write, at prefixes between barriers and
//!   with random subsets of the writes between two barriers; each rebuilt
//!   image must open, pass our fsck (every valid header copy), and show
//!   exactly the state of the last header that landed whole.
//! - ENOSPC: a commit that runs out of space fails clearly and leaves the
//!   previous state intact; a smaller commit then succeeds.
//! - A session on a loop device.

use crate::common::loopdev::LoopDevice;
use crate::common::oracle::reference_fsck;
use crate::common::recording::*;
use hammer2::fsck::{FsckOptions, RepairMode};
use hammer2::write::session::{Attrs, PfsRef, Session};
use hammer2::Hammer2;
use std::process::Command;
use std::time::Instant;

/// Fixed attributes, so expected states do not depend on the clock.
fn attrs(mode: u32) -> Attrs {
    Attrs { mode, uid: 0, gid: 0, mtime: 1_700_000_000_000_000 }
}

/// One edit, applied to a session and to the model of the expected state.
#[derive(Debug, Clone)]
enum Op {
    /// `mkdir -p`.
    Mkdir(String),
    Create {
        path: String,
        seed: u64,
        size: usize,
        mode: u32,
    },
    /// A file or an empty directory.
    Remove(String),
}

fn file_bytes(seed: u64, size: usize) -> Vec<u8> {
    // Seed 0 is a file of zeros: stored as holes.
    if seed == 0 {
        vec![0; size]
    } else {
        content(seed, size)
    }
}

fn apply(s: &mut Session, pfs: &PfsRef, model: &mut State, op: &Op) {
    let rel = |p: &str| p.trim_start_matches('/').to_string();
    match op {
        Op::Mkdir(p) => {
            s.mkdir(pfs, p, attrs(0o755), true).unwrap_or_else(|e| panic!("mkdir {p}: {e}"));
            let mut so_far = String::new();
            for part in rel(p).split('/') {
                if !so_far.is_empty() {
                    so_far.push('/');
                }
                so_far.push_str(part);
                model.entry(so_far.clone()).or_insert_with(|| Entry::dir(0o755));
            }
        }
        Op::Create { path, seed, size, mode } => {
            let bytes = file_bytes(*seed, *size);
            s.create_file(pfs, path, attrs(*mode), &bytes[..], bytes.len() as u64)
                .unwrap_or_else(|e| panic!("create {path}: {e}"));
            model.insert(rel(path), Entry::file(*mode, &bytes));
        }
        Op::Remove(p) => {
            s.remove(pfs, p, true).unwrap_or_else(|e| panic!("rm {p}: {e}"));
            assert!(model.remove(&rel(p)).is_some(), "model: {p} did not exist");
        }
    }
}

/// Sizes around every boundary the engine has: embedded (<= 512 B), one
/// block, 64 KiB blocks, a tail block, several blocks.
const SIZES: [usize; 14] =
    [0, 1, 100, 511, 512, 513, 1000, 4097, 16384, 65535, 65536, 65537, 140_000, 200_001];

/// The first commit: ~20 directories (one nested three deep), 220 files of
/// every size (long names included: those need a name block), a file of
/// zeros, 25 files and a directory removed again, and `fixture_rm`.
fn commit_a(fixture_rm: &[&str]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut dirs = vec![String::new()];
    for i in 0..18 {
        let d = format!("/d{i:02}");
        ops.push(Op::Mkdir(d.clone()));
        dirs.push(d);
    }
    ops.push(Op::Mkdir("/c/d/e".into()));
    dirs.push("/c/d/e".into());
    let mut created = Vec::new();
    for i in 0..220u64 {
        let dir = &dirs[i as usize % dirs.len()];
        let long = "n".repeat((i as usize * 7) % 90);
        let path = format!("{dir}/f{i:03}{long}");
        let size = SIZES[i as usize % SIZES.len()];
        ops.push(Op::Create { path: path.clone(), seed: i + 1, size, mode: 0o644 });
        created.push(path);
    }
    ops.push(Op::Create { path: "/zeros".into(), seed: 0, size: 100_000, mode: 0o600 });
    ops.push(Op::Mkdir("/tmpdir".into()));
    for p in created.iter().step_by(9) {
        ops.push(Op::Remove(p.clone()));
    }
    ops.push(Op::Remove("/tmpdir".into()));
    ops.extend(fixture_rm.iter().map(|p| Op::Remove(p.to_string())));
    ops
}

/// The second commit: empties and removes /d05, removes 25 more of the
/// first commit's files, creates 40 files (some in a new directory), and
/// `fixture_rm`.
fn commit_b(model: &State, fixture_rm: &[&str]) -> Vec<Op> {
    let mut ops = Vec::new();
    let in_d05: Vec<&String> = model.keys().filter(|p| p.starts_with("d05/")).collect();
    ops.extend(in_d05.iter().map(|p| Op::Remove(format!("/{p}"))));
    ops.push(Op::Remove("/d05".into()));
    let files: Vec<&String> = model
        .iter()
        .filter(|(p, e)| e.kind == 'f' && p.starts_with('d') && !p.starts_with("d05/"))
        .map(|(p, _)| p)
        .collect();
    ops.extend(files.iter().step_by(7).take(25).map(|p| Op::Remove(format!("/{p}"))));
    ops.push(Op::Mkdir("/b2".into()));
    for i in 0..40u64 {
        let dir = if i % 2 == 0 { "/b2" } else { "/d01" };
        let size = SIZES[(i as usize * 5) % SIZES.len()];
        ops.push(Op::Create { path: format!("{dir}/g{i:02}"), seed: 1000 + i, size, mode: 0o640 });
    }
    ops.extend(fixture_rm.iter().map(|p| Op::Remove(p.to_string())));
    ops
}

/// Header copies that fit on a volume of `size` bytes.
fn header_copies(size: u64) -> u64 {
    (0..HEADER_COPIES).filter(|n| n * ZONE_BYTES + HEADER_BYTES <= size).count() as u64
}

/// Whether both commits share one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sessions {
    One,
    PerCommit,
}

struct Outcome {
    cuts: usize,
    reference_checked: usize,
}

/// Builds one commit's operations from the state before it.
type Plan = Box<dyn Fn(&State) -> Vec<Op>>;

/// The two-commit scenario: [`commit_a`] then [`commit_b`], removing
/// `rm_a`, then `rm_b` of the fixture's files besides their own edits.
fn two_big_commits(rm_a: &'static [&'static str], rm_b: &'static [&'static str]) -> Vec<Plan> {
    vec![Box::new(move |_| commit_a(rm_a)), Box::new(move |m| commit_b(m, rm_b))]
}

/// Small commits, each adding a directory with three files and removing
/// one file of the commit before.
fn small_commits(n: u64) -> Vec<Plan> {
    (0..n)
        .map(|i| -> Plan {
            Box::new(move |_| {
                let mut ops = vec![Op::Mkdir(format!("/s{i}"))];
                for j in 0..3 {
                    let size = SIZES[(i * 3 + j) as usize % SIZES.len()];
                    ops.push(Op::Create {
                        path: format!("/s{i}/f{j}"),
                        seed: 5000 + i * 3 + j,
                        size,
                        mode: 0o644,
                    });
                }
                if i > 0 {
                    ops.push(Op::Remove(format!("/s{}/f{}", i - 1, i % 3)));
                }
                ops
            })
        })
        .collect()
}

/// Records `plans` committed in turn on a scratch copy of `fixture` (the
/// headers going to copies `want_slots`), then checks `samples` prefixes
/// and random subsets per span between barriers besides the fixed cuts.
fn crash_consistency(
    fixture: &str,
    sessions: Sessions,
    plans: Vec<Plan>,
    want_slots: &[u64],
    samples: usize,
) -> Outcome {
    let base = if fixture.starts_with("newfs") { State::new() } else { manifest(fixture) };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.img");
    crate::common::copy_sparse(&crate::common::fixture(fixture), &original);
    let work = dir.path().join("work.img");
    crate::common::copy_sparse(&original, &work);
    let size = std::fs::metadata(&original).unwrap().len();
    let copies = header_copies(size);

    let base_tid = Hammer2::open_path(original.to_str().unwrap()).unwrap().voldata.mirror_tid.get();
    assert_eq!(
        visible_state(original.to_str().unwrap()).unwrap(),
        base,
        "{fixture}: the fixture's own state"
    );

    // Every commit recorded into one log.
    let log = Log::default();
    let mut s = Session::from_fs(open_recorded_into(&work, &log), true).unwrap();
    let pfs = s.pfs(None).unwrap();
    let mut states = vec![base.clone()];
    let mut model = base;
    let mut nops = 0;
    let mut slots = Vec::new();
    for (k, plan) in plans.iter().enumerate() {
        if k > 0 && sessions == Sessions::PerCommit {
            // As separate runs of a tool: each loads the freemap the one
            // before wrote and protects what the older header copies reach.
            drop(s);
            s = Session::from_fs(open_recorded_into(&work, &log), true).unwrap();
        }
        let ops = plan(&model);
        nops += ops.len();
        for op in &ops {
            apply(&mut s, &pfs, &mut model, op);
        }
        let r = s.commit().unwrap();
        assert_eq!(r.tid, base_tid + k as u64 + 1, "{fixture}: commit {k}");
        slots.push(r.copy as u64);
        states.push(model.clone());
    }
    drop(s);
    assert_eq!(slots, want_slots, "{fixture}: header copies written");
    let events = log.events();
    let nwrites = events.iter().filter(|e| matches!(e, Event::Write { .. })).count();
    eprintln!(
        "{fixture}: {} commits of {nops} operations, {nwrites} writes, {} barriers recorded in {:?}",
        plans.len(),
        events.len() - nwrites,
        t0.elapsed()
    );

    check_write_order(fixture, &events, want_slots);

    let mut img = CrashImage::new(&original, &dir.path().join("cut.img"));
    // The recorder saw every write: replaying all of them gives the image the session left.
    img.apply(&events, &all_writes(&events));
    assert_eq!(
        content_digest(&img.path),
        content_digest(&work),
        "{fixture}: replaying the log does not reproduce the image (chunks {:x?})",
        differing_chunks(&img.path, &work, 5)
    );

    let cuts = cut_points(&events, samples, &mut Rng::new(0x5eed));
    let mut reference_checked = 0;
    let mut after_crash = 0;
    let t1 = Instant::now();
    for (n, cut) in cuts.iter().enumerate() {
        img.apply(&events, cut);
        let k = cut.whole_headers(&events);
        let what = format!("{fixture}: cut {n} ({}), expecting the state of commit {k}", cut.name);
        if cut.torn_slot.is_some() && copies == 1 {
            // The only header copy is the one being rewritten: nothing to fall back on.
            single_copy_torn(&img, &what);
            continue;
        }
        if let Err(why) = check_cut(&img, cut, &states[k], base_tid + k as u64) {
            panic!("{what}: {why}");
        }
        // Life after the crash, on some cuts: a new session commits on top.
        if cut.torn_slot.is_some() || cut.name.contains("at barrier") || n % 8 == 0 {
            img.apply(&events, cut);
            if let Err(why) = commit_after_crash(&img, &states[k], base_tid + k as u64) {
                panic!("{what}, then a new commit: {why}");
            }
            after_crash += 1;
        }
        // The reference checker on a few cuts: around each header write,
        // a torn header, and a random subset.
        let sample = cut.name.contains("before header")
            || cut.name.contains("after header")
            || (cut.name.contains("torn after 32768") && copies > 1)
            || cut.name.contains("random subset #3 ");
        if sample {
            img.apply(&events, cut);
            if let Some(slot) = cut.torn_slot {
                repair_torn(&img, slot).unwrap_or_else(|why| panic!("{what}: {why}"));
            }
            if crate::common::oracle::wanted() {
                let (ok, text) = reference_fsck(img.spec());
                assert!(ok, "{what}: reference fsck_hammer2 rejects the image:\n{text}");
            }
            reference_checked += 1;
        }
    }
    negative_control(&mut img, &events, &states, base_tid, copies);
    img.reset();
    eprintln!(
        "{fixture}: {} cut points checked ({reference_checked} also by the reference fsck, {after_crash} \
         followed by a new commit) in {:?}",
        cuts.len(),
        t1.elapsed()
    );
    assert!(
        reference_checked >= 3,
        "{fixture}: only {reference_checked} cuts were given to the reference fsck"
    );
    Outcome { cuts: cuts.len(), reference_checked }
}

/// The order the contract prescribes: every write touching a header slot
/// is one whole header, written to the expected copy, after a barrier that
/// follows every other write, and followed by a barrier.
fn check_write_order(fixture: &str, events: &[Event], want_slots: &[u64]) {
    let mut slots = Vec::new();
    let mut last_other_write = None;
    let mut barrier_since_other = false;
    let mut pending_header: Option<usize> = None;
    for (i, e) in events.iter().enumerate() {
        match e {
            // A whole-device barrier makes every earlier write durable; a
            // range barrier only its range, and is used for the header
            // alone (the cut model treats both alike: this keeps it right).
            Event::Barrier { range: None, .. } => {
                barrier_since_other = true;
                pending_header = None;
            }
            Event::Barrier { range: Some((off, len)), .. } => {
                let h = pending_header.map(|h| match &events[h] {
                    Event::Write { off, .. } => *off,
                    Event::Barrier { .. } => unreachable!(),
                });
                assert!(
                    h.is_some_and(|h| *off <= h && h + HEADER_BYTES <= off + len),
                    "{fixture}: range barrier {off:#x}+{len:#x} (event {i}) does not cover a header just written"
                );
                pending_header = None;
            }
            Event::Write { off, data, .. } => {
                assert!(pending_header.is_none(), "{fixture}: event {i} written before the header write {pending_header:?} was made durable");
                match header_slot(*off, data.len() as u64) {
                    Some(slot) => {
                        assert_eq!(
                            (*off, data.len() as u64),
                            (slot * ZONE_BYTES, HEADER_BYTES),
                            "{fixture}: event {i} writes part of header slot {slot}"
                        );
                        assert!(
                            barrier_since_other,
                            "{fixture}: header write (event {i}) not preceded by a barrier after the last block write (event {last_other_write:?})"
                        );
                        slots.push(slot);
                        pending_header = Some(i);
                    }
                    None => {
                        last_other_write = Some(i);
                        barrier_since_other = false;
                    }
                }
            }
        }
    }
    assert!(pending_header.is_none(), "{fixture}: the last header write is not followed by a barrier");
    assert_eq!(slots, want_slots.to_vec(), "{fixture}: one header write per commit, to the next copy");
}

/// The image at a cut opens, our fsck (every valid header copy) finds
/// nothing but information (a torn header copy aside, which `-p` then
/// rewrites), and the visible tree is exactly `want` under mirror_tid `tid`.
fn check_cut(img: &CrashImage, cut: &Cut, want: &State, tid: u64) -> Result<(), String> {
    let fs = Hammer2::open_path(img.spec()).map_err(|e| format!("does not open: {e}"))?;
    let got_tid = fs.voldata.mirror_tid.get();
    drop(fs);
    if got_tid != tid {
        return Err(format!("best header has mirror_tid {got_tid:#x}, expected {tid:#x}"));
    }
    let r = fsck_all_copies(img.spec())?;
    match cut.torn_slot {
        None if r.is_empty() => {}
        None => return Err(format!("our fsck:\n{}", r.join("\n"))),
        Some(slot) => {
            let tag = format!("header copy #{slot} ");
            let torn = |b: &String| b.starts_with("HDR_CORRUPT") || b.starts_with("HDR_TORN");
            if r.is_empty() || !r.iter().all(|b| torn(b) && b.contains(&tag)) {
                return Err(format!(
                    "our fsck should report the torn copy #{slot} and nothing else:\n{}",
                    r.join("\n")
                ));
            }
            repair_torn(img, slot)?;
        }
    }
    let got = visible_state(img.spec()).map_err(|e| format!("reading the tree: {e}"))?;
    if &got != want {
        return Err(format!("visible tree:\n{}", state_diff(&got, want)));
    }
    Ok(())
}

/// Our fsck, verifying the topology under every valid header copy; the
/// findings that are not informational.
fn fsck_all_copies(spec: &str) -> Result<Vec<String>, String> {
    let opts = FsckOptions { all_copies: true, ..Default::default() };
    let r = hammer2::fsck::fsck(spec, &opts).map_err(|e| format!("fsck: {e}"))?;
    let bad: Vec<String> =
        r.damage().map(|f| format!("{} {}: {}", f.problem.id, f.location, f.detail)).collect();
    if bad.is_empty() {
        // all_copies must not be a no-op: one topology walk per valid copy.
        let fs = Hammer2::open_path(spec).map_err(|e| e.to_string())?;
        let valid = fs.headers[0].copies.iter().filter(|c| c.is_valid()).count();
        let walked = r.trees.iter().filter(|t| t.tree.starts_with("topology")).count();
        if walked != valid {
            return Err(format!(
                "fsck walked {walked} topologies, the image has {valid} valid header copies"
            ));
        }
        if r.exit_code() != 0 {
            return Err(format!("fsck exit code {} without damage", r.exit_code()));
        }
    }
    Ok(bad)
}

/// A session opened on the crashed image (as found: a torn header copy
/// left in place) commits a small edit on top of the state `before`
/// (mirror_tid `tid`): it succeeds, and leaves a clean file system (the
/// torn copy, if any, is the one the commit rewrites) showing `before`
/// plus the edit.
fn commit_after_crash(img: &CrashImage, before: &State, tid: u64) -> Result<(), String> {
    let mut want = before.clone();
    let mut s = Session::open(img.spec(), false).map_err(|e| format!("Session::open: {e}"))?;
    let pfs = s.pfs(None).map_err(|e| e.to_string())?;
    apply(&mut s, &pfs, &mut want, &Op::Mkdir("/after-crash".into()));
    let op = Op::Create { path: "/after-crash/f".into(), seed: 4242, size: 70_000, mode: 0o600 };
    apply(&mut s, &pfs, &mut want, &op);
    let r = s.commit().map_err(|e| format!("commit: {e}"))?;
    drop(s);
    if r.tid != tid + 1 {
        return Err(format!("the new commit has tid {:#x}, expected {:#x}", r.tid, tid + 1));
    }
    let bad = fsck_all_copies(img.spec())?;
    if !bad.is_empty() {
        return Err(format!("our fsck:\n{}", bad.join("\n")));
    }
    let got = visible_state(img.spec()).map_err(|e| format!("reading the tree: {e}"))?;
    if got != want {
        return Err(format!("visible tree:\n{}", state_diff(&got, &want)));
    }
    Ok(())
}

/// `fsck -y` rewrites the torn copy from the best one; then all is clean.
fn repair_torn(img: &CrashImage, slot: u64) -> Result<(), String> {
    // A torn header of an unfinished commit needs no decision: -p repairs it.
    let opts = FsckOptions { repair: RepairMode::Preen, ..Default::default() };
    let r = hammer2::fsck::fsck(img.spec(), &opts).map_err(|e| format!("fsck -p: {e}"))?;
    if r.exit_code() != 1 {
        return Err(format!(
            "fsck -p exits {} on the torn copy #{slot}, expected 1 (corrected)",
            r.exit_code()
        ));
    }
    let bad = fsck_all_copies(img.spec())?;
    if !bad.is_empty() {
        return Err(format!("after fsck -p:\n{}", bad.join("\n")));
    }
    Ok(())
}

/// The checks are not blind. Each of these must be caught:
/// 1. the first header landing while half of its commit's other writes did
///    not (what a missing barrier allows);
/// 2. a block of the state in use overwritten before the new header (what
///    a copy-on-write slip would do): the original DATA root inode,
///    trashed just before the first header;
/// 3. with more than one header copy, the same block trashed just before
///    the second header, when only an older valid copy reaches it.
fn negative_control(img: &mut CrashImage, events: &[Event], states: &[State], base_tid: u64, copies: u64) {
    let headers: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Write { off, data, .. } if header_slot(*off, data.len() as u64).is_some()))
        .map(|(i, _)| i)
        .collect();
    let h = headers[0];
    let mut cut = all_writes(&events[..h + 1]);
    let mut n = 0;
    cut.applied.retain(|a| {
        n += 1;
        a.event == h || n % 2 == 0
    });
    img.apply(events, &cut);
    assert!(
        check_cut(img, &cut, &states[1], base_tid + 1).is_err(),
        "{}: a header written before half of its blocks went unnoticed",
        img.original.display()
    );

    let root = {
        let fs = Hammer2::open_path(img.original.to_str().unwrap()).unwrap();
        let tree = hammer2::read::tree::Tree::new(&fs);
        *hammer2::read::pfs::Pfs::default(&tree).unwrap().root.bref
    };
    let mut with_trash = events.to_vec();
    with_trash.push(Event::Write { vol: 0, off: root.offset(), data: vec![0x5a; 1024].into() });
    let trash = Applied { event: events.len(), len: 1024 };
    for (k, &h) in headers.iter().enumerate().take(if copies > 1 { 2 } else { 1 }) {
        let mut cut = all_writes(&events[..h]);
        cut.applied.push(trash);
        img.apply(&with_trash, &cut);
        assert!(
            check_cut(img, &cut, &states[k], base_tid + k as u64).is_err(),
            "{}: the original DATA root inode overwritten before header write #{k} went unnoticed",
            img.original.display()
        );
    }
}

/// A torn write of the only header copy leaves no valid copy: the file
/// system cannot be opened (HAMMER2's format has nothing else to fall back
/// on; DragonFly's kernel rewrites copy #0 in place on such volumes too).
fn single_copy_torn(img: &CrashImage, what: &str) {
    match Hammer2::open_path(img.spec()) {
        Err(hammer2::Error::NoValidHeader(_)) => {}
        Err(e) => panic!("{what}: expected 'no valid volume header', got {e}"),
        Ok(_) => panic!("{what}: a torn write of the only header copy still opens"),
    }
    let (code, bad) = fsck_damage(img.spec(), false);
    assert_eq!(code, 4, "{what}");
    assert!(bad.iter().any(|b| b.starts_with("HDR_NONE_VALID")), "{what}: {bad:?}");
}

fn run_crash_test(fixture: &str, sessions: Sessions, plans: Vec<Plan>, want_slots: &[u64], samples: usize) {
    let t = Instant::now();
    let out = crash_consistency(fixture, sessions, plans, want_slots, samples);
    eprintln!(
        "{fixture} ({sessions:?}): {} cut points, {} also by the reference fsck, {:?} in all",
        out.cuts,
        out.reference_checked,
        t.elapsed()
    );
    assert!(out.cuts >= 100, "{fixture}: only {} cut points", out.cuts);
}

/// small-iscsi (made by makefs; best copy #1, copies #0, #2, #3 at the
/// newfs state): two commits of ~345 operations in all, from one session,
/// go to copies #2 and #3.
#[test]
fn crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi() {
    crate::common::oracle::without(crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi_scenario);
}

/// [`crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi_with_reference_tools() {
    crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi_scenario();
}

fn crash_at_any_point_of_two_commits_in_one_session_on_small_iscsi_scenario() {
    let plans = two_big_commits(&["/hello.txt"], &["/dir/data.bin"]);
    run_crash_test("small-iscsi", Sessions::One, plans, &[2, 3], 30);
}

/// As above, one session per commit (as two runs of a tool).
#[test]
fn crash_at_any_point_of_two_sessions_on_small_iscsi() {
    crate::common::oracle::without(crash_at_any_point_of_two_sessions_on_small_iscsi_scenario);
}

/// [`crash_at_any_point_of_two_sessions_on_small_iscsi`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_at_any_point_of_two_sessions_on_small_iscsi_with_reference_tools() {
    crash_at_any_point_of_two_sessions_on_small_iscsi_scenario();
}

fn crash_at_any_point_of_two_sessions_on_small_iscsi_scenario() {
    let plans = two_big_commits(&["/dir/data.bin"], &["/hello.txt"]);
    run_crash_test("small-iscsi", Sessions::PerCommit, plans, &[2, 3], 30);
}

/// newfs-1g: no freemap yet (the first commit builds it, the second
/// session loads it), and a single header copy, which every commit
/// rewrites in place.
#[test]
fn crash_at_any_point_of_two_sessions_on_fresh_newfs_1g() {
    crate::common::oracle::without(crash_at_any_point_of_two_sessions_on_fresh_newfs_1g_scenario);
}

/// [`crash_at_any_point_of_two_sessions_on_fresh_newfs_1g`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_at_any_point_of_two_sessions_on_fresh_newfs_1g_with_reference_tools() {
    crash_at_any_point_of_two_sessions_on_fresh_newfs_1g_scenario();
}

fn crash_at_any_point_of_two_sessions_on_fresh_newfs_1g_scenario() {
    run_crash_test("newfs-1g", Sessions::PerCommit, two_big_commits(&[], &[]), &[0, 0], 30);
}

/// Ten small commits: the header copies wrap around (each commit
/// overwrites the oldest copy while three older valid ones remain) and
/// the freemap blocks go round their eight rotation slots.
#[test]
fn crash_at_any_point_of_ten_small_sessions_on_small_iscsi() {
    crate::common::oracle::without(crash_at_any_point_of_ten_small_sessions_on_small_iscsi_scenario);
}

/// [`crash_at_any_point_of_ten_small_sessions_on_small_iscsi`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_at_any_point_of_ten_small_sessions_on_small_iscsi_with_reference_tools() {
    crash_at_any_point_of_ten_small_sessions_on_small_iscsi_scenario();
}

fn crash_at_any_point_of_ten_small_sessions_on_small_iscsi_scenario() {
    let slots = [2, 3, 0, 1, 2, 3, 0, 1, 2, 3];
    run_crash_test("small-iscsi", Sessions::PerCommit, small_commits(10), &slots, 3);
}

/// The header of the copy in use, as bytes.
fn best_header(spec: &str) -> (usize, u64, Vec<u8>) {
    use zerocopy::IntoBytes;
    let fs = Hammer2::open_path(spec).unwrap();
    (fs.copy, fs.voldata.mirror_tid.get(), fs.voldata.as_bytes().to_vec())
}

fn assert_no_space(e: &hammer2::Error, what: &str) {
    let msg = e.to_string();
    assert!(msg.to_lowercase().contains("no space"), "{what}: the error should say there is no space: {msg}");
}

/// The previous state is intact: same header in use, fsck clean (ours
/// under every valid copy, and the reference), the same visible tree.
fn assert_intact(spec: &str, header: &(usize, u64, Vec<u8>), want: &State, what: &str) {
    assert!(&best_header(spec) == header, "{what}: the header in use changed");
    let bad = fsck_all_copies(spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(bad.is_empty(), "{what}: our fsck:\n{}", bad.join("\n"));
    let got = visible_state(spec).unwrap();
    assert!(&got == want, "{what}:\n{}", state_diff(&got, want));
    if crate::common::oracle::wanted() {
        let (ok, text) = reference_fsck(spec);
        assert!(ok, "{what}: reference fsck:\n{text}");
    }
}

/// Creates 1 MiB files of incompressible data in `dir` until `limit` are
/// made or one fails; returns how many were made and the failure.
fn fill(s: &mut Session, pfs: &PfsRef, dir: &str, limit: u64) -> (u64, Option<hammer2::Error>) {
    let mb = 1u64 << 20;
    s.mkdir(pfs, dir, attrs(0o755), false).unwrap();
    for i in 0..limit {
        if let Err(e) = s.create_file(pfs, &format!("{dir}/{i:05}"), attrs(0o644), Noise::new(i, mb), mb) {
            return (i, Some(e));
        }
    }
    (limit, None)
}

/// Fills newfs-1g after a first commit (the state to keep):
/// 1. create 1 MiB files of incompressible data until `create_file` fails:
///    the error says there is no space, and so does the commit tried
///    afterwards (its inodes need blocks the data took);
/// 2. a new session fills all but 2 MiB, adds 3,000 small files (which
///    need no block until the commit) and commits: the commit runs out of
///    space in the middle of the flush, after writing blocks, before the
///    header;
///
/// after each, the header in use and the first commit's state are intact
/// and clean; then a smaller commit succeeds.
#[test]
fn enospc_leaves_the_previous_state_intact() {
    crate::common::oracle::without(enospc_leaves_the_previous_state_intact_scenario);
}

/// [`enospc_leaves_the_previous_state_intact`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn enospc_leaves_the_previous_state_intact_with_reference_tools() {
    enospc_leaves_the_previous_state_intact_scenario();
}

fn enospc_leaves_the_previous_state_intact_scenario() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    let spec = img.to_str().unwrap();

    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let mut model = State::new();
    apply(&mut s, &pfs, &mut model, &Op::Mkdir("/keep".into()));
    for (i, size) in [100usize, 70_000, 300_000].into_iter().enumerate() {
        let op = Op::Create { path: format!("/keep/k{i}"), seed: 77 + i as u64, size, mode: 0o644 };
        apply(&mut s, &pfs, &mut model, &op);
    }
    s.commit().unwrap();
    drop(s);
    let before = best_header(spec);

    // 1. ENOSPC in create_file. Without the reserve kept for removals
    // (which refuses a write cleanly, before it changes anything), the
    // allocator itself runs out in the middle of the file.
    let mut s = Session::open(spec, false).unwrap();
    s.set_space_reserve(0);
    let pfs = s.pfs(None).unwrap();
    let (made, err) = fill(&mut s, &pfs, "/fill", 2048);
    let err = err.expect("2 GiB written to a 1 GiB file system without running out of space");
    eprintln!("ENOSPC after {made} MiB: {err} ({:?})", t.elapsed());
    assert!(made > 500, "only {made} MiB fit in a fresh 1 GiB file system");
    assert_no_space(&err, "create_file on a full file system");
    match s.commit() {
        Err(e) => assert_no_space(&e, "commit on a full file system"),
        Ok(r) => {
            drop(s);
            let got = visible_state(spec).unwrap();
            panic!(
                "a commit after a failed create_file succeeded (tid {:#x}): it publishes the half-written \
                 /fill/{made:05} ({:?})",
                r.tid,
                got.get(&format!("fill/{made:05}"))
            );
        }
    }
    drop(s);
    assert_intact(spec, &before, &model, "after ENOSPC in create_file");

    // 2. ENOSPC in the middle of a commit.
    let log = Log::default();
    let mut s = Session::from_fs(open_recorded_into(&img, &log), true).unwrap();
    s.set_space_reserve(0);
    let pfs = s.pfs(None).unwrap();
    log.pause(true);
    let (n, err) = fill(&mut s, &pfs, "/fill2", made - 2);
    assert!(err.is_none() && n == made - 2, "{n} of {} MiB: {err:?}", made - 2);
    s.mkdir(&pfs, "/small", attrs(0o755), false).unwrap();
    // Finished files are written as they are made, so space may run out
    // in create_file (the session then refuses to commit) or in the commit.
    log.pause(false);
    let mut failed = None;
    for i in 0..3000u64 {
        let body = content(i, 100 + i as usize % 400);
        if let Err(e) =
            s.create_file(&pfs, &format!("/small/s{i:04}"), attrs(0o644), &body[..], body.len() as u64)
        {
            failed = Some(e);
            break;
        }
    }
    let committed = s.commit();
    assert!(committed.is_err(), "3,000 inodes do not fit in 2 MiB");
    let e = failed.unwrap_or_else(|| committed.unwrap_err());
    assert_no_space(&e, "commit running out of space");
    drop(s);
    let events = log.events();
    let writes: Vec<(u64, usize)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Write { off, data, .. } => Some((*off, data.len())),
            Event::Barrier { .. } => None,
        })
        .collect();
    eprintln!("the failed commit wrote {} blocks: {e}", writes.len());
    assert!(!writes.is_empty(), "the commit failed before writing anything: not 'in the middle'");
    assert!(
        writes.iter().all(|&(off, len)| header_slot(off, len as u64).is_none()),
        "the failed commit wrote a header slot"
    );
    assert_intact(spec, &before, &model, "after ENOSPC in the middle of a commit");

    // 3. A smaller commit still succeeds.
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let op = Op::Create { path: "/keep/after".into(), seed: 5, size: 150_000, mode: 0o600 };
    apply(&mut s, &pfs, &mut model, &op);
    apply(&mut s, &pfs, &mut model, &Op::Remove("/keep/k0".into()));
    let r = s.commit().unwrap();
    drop(s);
    assert_eq!(r.tid, before.1 + 1);
    let after = best_header(spec);
    assert_intact(spec, &after, &model, "after the smaller commit");
    eprintln!("enospc test took {:?}", t.elapsed());
}

/// A session on /dev/loopN (mkdir, files, commit), verified on the image
/// file after detaching: our fsck, the reference fsck, contents read back.
#[test]
#[ignore = "needs root, loop devices and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn session_on_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let mut want = manifest("small-iscsi");
    {
        let lo = LoopDevice::attach(&img);
        let meta = std::fs::metadata(&lo.dev).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_block_device(), "{} is not a block device", lo.dev);
        let mut s =
            Session::open(&lo.dev, false).unwrap_or_else(|e| panic!("Session::open({}): {e}", lo.dev));
        let pfs = s.pfs(None).unwrap();
        apply(&mut s, &pfs, &mut want, &Op::Mkdir("/on-loop/sub".into()));
        for (i, size) in [10usize, 600, 65536, 250_000].into_iter().enumerate() {
            let op =
                Op::Create { path: format!("/on-loop/sub/f{i}"), seed: 300 + i as u64, size, mode: 0o644 };
            apply(&mut s, &pfs, &mut want, &op);
        }
        apply(&mut s, &pfs, &mut want, &Op::Remove("/hello.txt".into()));
        let r = s.commit().unwrap();
        assert_eq!(r.tid, 0x12);
        drop(s);
        // Read back through the device before detaching.
        let got = visible_state(&lo.dev).unwrap();
        assert!(got == want, "through {}:\n{}", lo.dev, state_diff(&got, &want));
    }
    let spec = img.to_str().unwrap();
    let out = Command::new("losetup").arg("-j").arg(&img).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "still attached: {out:?}");
    let (code, bad) = fsck_damage(spec, true);
    assert!(bad.is_empty() && code == 0, "our fsck (exit {code}):\n{}", bad.join("\n"));
    if crate::common::oracle::wanted() {
        let (ok, text) = reference_fsck(spec);
        assert!(ok, "reference fsck:\n{text}");
    }
    let got = visible_state(spec).unwrap();
    assert!(got == want, "image file after detaching:\n{}", state_diff(&got, &want));
    assert_eq!(Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get(), 0x12);
}
