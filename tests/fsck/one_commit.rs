//! One repair run is one commit (src/fsck/txn.rs): on a copy of `varied`
//! with four kinds of damage at once (an inode-index block overwritten
//! with garbage: rebuilt from the media; a file whose only entry was
//! removed: filed under /lost+found; a mode whose type bits disagree with
//! the inode: a field repair; a wrong `data_count`: a structure repair),
//! `fsck -y` writes one header: `mirror_tid` grows by one and the output
//! names that transaction once. Then the run is repeated on a device that
//! records every write and barrier, and the image rebuilt at every barrier,
//! before, after and torn inside every header write, and at sampled points
//! between barriers: at each, `fsck -n` finds exactly the damaged state's
//! problems or none, and every file reads back as in the damaged state or
//! as in the repaired one. The ignored twin also asks the reference tools
//! about the repaired state.

use crate::common::readable::readable_files;
use crate::common::recording::{cut_points, CrashImage, Log, Recording, Rng};
use crate::common::reseal::{find_chain, Image};
use crate::fsck_semantic::{edit_bref, edit_inode_where};
use hammer2::device::{Access, Backend, Device, MmapBackend};
use hammer2::format::BlockrefType;
use hammer2::fsck::{fsck, FsckOptions, RepairMode};
use hammer2::write::session::Session;
use std::collections::BTreeSet;
use std::path::Path;

const GARBAGE: &[u8] = b"GARBAGE-GARBAGE!";

/// Inode numbers the DATA PFS's damaged index block (keys 1024-1151) holds.
const LOST_RANGE: std::ops::Range<u64> = 1024..1152;

/// The inode number of `path` in the DATA PFS of `spec`.
fn inum_of(spec: &str, path: &str) -> u64 {
    let s = Session::open(spec, true).unwrap();
    let pfs = s.pfs(None).unwrap();
    let (_, _, entry) = s.resolve_parent(&pfs, path).unwrap();
    entry.unwrap_or_else(|| panic!("{path} not found")).inum
}

/// The entry of inode `inum` in its PFS's inode index.
fn index_entry(inum: u64) -> impl Fn(&Image, &hammer2::format::Blockref) -> bool {
    move |_, b| b.kind() == BlockrefType::Inode && b.key.get() == inum
}

/// `varied` with the four kinds of damage; the inode filed under
/// /lost+found.
fn damaged() -> (Image, u64) {
    let img = Image::new("varied");
    let (unnamed, mode, stats) = ("/wide/f00001-9cd9565d.dat", "/wide/f00002-8023b036.dat", "/exec.sh");
    let unnamed_inum = inum_of(img.spec(), unnamed);
    let mode_inum = inum_of(img.spec(), mode);
    let stats_inum = inum_of(img.spec(), stats);
    for i in [unnamed_inum, mode_inum] {
        assert!(!LOST_RANGE.contains(&i), "inode {i} lies in the block the test damages");
    }
    // A committed removal of the only entry naming a file: its inode stays
    // in the index, named by nothing.
    {
        let mut s = Session::open(img.spec(), false).unwrap();
        let pfs = s.pfs(None).unwrap();
        let (dir, _, entry) = s.resolve_parent(&pfs, unnamed).unwrap();
        s.fix_drop_dirent(&pfs, dir, entry.unwrap().key).unwrap();
        s.commit().unwrap();
    }
    // Resealed: only the semantic checks see these.
    edit_inode_where(&img, &index_entry(mode_inum), |ip| {
        let m = ip.meta.mode.get();
        ip.meta.mode = ((m & 0o7777) | 0o040000).into();
    });
    edit_bref(&img, &index_entry(stats_inum), |b| {
        let s = b.stats_mut();
        s.data_count = (s.data_count.get() + 12345).into();
    });
    // Last, not resealed: the inode-index block of inodes 1024-1151.
    let (_, chain) = find_chain(&img, &|_, b| {
        b.kind() == BlockrefType::Indirect && b.key.get() == 0x400 && b.keybits == 7
    });
    img.write(img.bref(*chain.last().unwrap()).offset() + 0x100, GARBAGE);
    (img, unnamed_inum)
}

/// What `fsck -n` finds in the tree (the header copies left out: a torn or
/// stale copy is the header pass's own repair, and the tree each copy
/// names is what is compared), and its exit code.
fn tree_findings(spec: &str) -> (i32, BTreeSet<String>) {
    let r = fsck(spec, &Default::default()).unwrap();
    let ids = r
        .damage()
        .filter(|f| !f.problem.id.code().starts_with("HDR_"))
        .map(|f| format!("{} {} {}", f.problem.id, f.location, f.detail))
        .collect();
    (r.exit_code(), ids)
}

fn mirror_tid(spec: &str) -> u64 {
    hammer2::Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get()
}

fn fsck_bin(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fsck_hammer2"))
        .env("COLUMNS", "1000")
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The combined repair through the binary: every kind repaired, one
/// commit, named once; then clean, and a second `-y` finds nothing.
fn one_commit(oracle: bool) {
    let (img, unnamed) = damaged();
    let (code, found) = tree_findings(img.spec());
    assert_eq!(code, 4);
    let ids: BTreeSet<&str> = found.iter().map(|s| s.split(' ').next().unwrap()).collect();
    for id in ["BREF_CHECK", "INODE_MODE", "BREF_STATS"] {
        assert!(ids.contains(id), "{id} missing: {found:#?}");
    }
    let before = mirror_tid(img.spec());
    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{out}");
    let after = mirror_tid(img.spec());
    assert_eq!(after, before + 1, "one repair run, one commit:\n{out}");
    let summary = format!("committed as transaction {after:#x}");
    assert_eq!(out.matches("committed as transaction").count(), 1, "{out}");
    assert!(out.contains(&summary), "{out}");
    for done in
        ["rebuilt from the media: 128 inodes", &format!("/lost+found/#{unnamed}"), "statistics recomputed"]
    {
        assert!(out.contains(done), "expected {done:?} in {out}");
    }
    assert!(out.contains("INODE_MODE") && out.contains("FIXED"), "{out}");
    let (code, again) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "after -y: {again}\n-y said:\n{out}");
    let (code, again) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 0, "second -y: {again}");
    assert_eq!(mirror_tid(img.spec()), after, "a clean run commits nothing");
    let files = readable_files(img.spec());
    assert!(files.contains_key(&format!("DATA:/lost+found/#{unnamed}")), "{:?}", files.keys().take(5));
    if oracle {
        crate::common::maint::oracle_fsck(img.spec());
        crate::common::oracle::makefs_mounts_and_bulkfrees(&img.path);
        crate::common::oracle::makefs_snapshots(&img.path, "after-repair");
        // The file filed under /lost+found reads back through the kernel's
        // code as through ours.
        let path = format!("/lost+found/#{unnamed}");
        let theirs = crate::common::oracle::makefs_read(&img.path, Some("DATA"), &path);
        let ours = files[&format!("DATA:{path}")].clone();
        use sha2::Digest;
        assert_eq!(sha2::Sha256::digest(&theirs).to_vec(), ours, "{path} read back by makefs -o R");
    }
}

#[test]
fn a_combined_repair_is_one_commit() {
    crate::common::oracle::without(|| one_commit(false));
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_combined_repair_is_one_commit_with_reference_tools() {
    one_commit(true);
}

/// Opens `spec` read-write behind a recorder appending to `log`.
fn recorded(log: &Log) -> hammer2::fsck::Writer {
    let log = log.clone();
    std::sync::Arc::new(move |spec: &str| {
        let inner = MmapBackend::open(Path::new(spec), Access::ReadWrite)?;
        let rec: Box<dyn Backend> = Box::new(Recording::new(Box::new(inner), 0, log.clone()));
        Ok(Device::from_backends(vec![rec]))
    })
}

/// `fsck -y` of the image at `original` on a recording device, then the
/// image rebuilt at every cut of the recording: each must be the damaged
/// state (the same findings, the same files) or the repaired one (clean,
/// the files `-y` left). Returns how many cuts were at each.
fn crash_every_cut(original: &Path) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (code, old_findings) = tree_findings(original.to_str().unwrap());
    assert_eq!(code, 4);
    let old_files = readable_files(original.to_str().unwrap());
    let work = dir.path().join("repaired.img");
    crate::common::copy_sparse(original, &work);
    let spec = work.to_str().unwrap();
    let log = Log::default();
    let yes = FsckOptions { repair: RepairMode::Yes, writer: Some(recorded(&log)), ..Default::default() };
    let report = fsck(spec, &yes).unwrap();
    assert_eq!(report.exit_code(), 1, "{:#?}", report.findings);
    assert!(report.commit.is_some(), "the run committed nothing");
    assert_eq!(tree_findings(spec), (0, BTreeSet::new()), "the repair itself");
    let new_files = readable_files(spec);
    let events = log.events();
    let headers = events
        .iter()
        .filter(|e| {
            matches!(e, crate::common::recording::Event::Write { off, data, .. }
            if crate::common::recording::header_slot(*off, data.len() as u64).is_some())
        })
        .count();
    let cuts = cut_points(&events, 2, &mut Rng::new(22));
    println!("{} events ({headers} header writes), {} cuts", events.len(), cuts.len());
    assert!(cuts.len() > 10, "{} cuts", cuts.len());
    let mut crash = CrashImage::new(original, &dir.path().join("crash.img"));
    let (mut old, mut new) = (0, 0);
    for cut in &cuts {
        crash.apply(&events, cut);
        let (_, got) = tree_findings(crash.spec());
        let files = readable_files(crash.spec());
        if got.is_empty() {
            assert!(files == new_files, "{}: clean, but the files are not the repaired ones", cut.name);
            new += 1;
        } else if got == old_findings {
            assert!(files == old_files, "{}: damaged, but the files are not the damaged state's", cut.name);
            old += 1;
        } else {
            let extra: Vec<_> = got.symmetric_difference(&old_findings).take(6).collect();
            panic!("{}: neither the damaged nor the repaired state; differences: {extra:#?}", cut.name);
        }
    }
    println!("{} cuts: {old} at the damaged state, {new} at the repaired one", cuts.len());
    assert!(old > 0 && new > 0, "{old} old, {new} new");
    (old, new)
}

/// See the module documentation.
#[test]
fn crash_at_every_barrier_of_a_combined_repair() {
    let (img, _) = damaged();
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("damaged.img");
    crate::common::copy_sparse(&img.path, &original);
    drop(img);
    crash_every_cut(&original);
}

/// The same for a rollback (the newest copy's super-root damaged, an older
/// copy's tree intact): the run's commit is based on the older copy, and
/// its header goes after the newest copy, never over it.
#[test]
fn crash_at_every_barrier_of_a_rollback() {
    let (img, _) = crate::rollback::damaged_newest();
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("damaged.img");
    crate::common::copy_sparse(&img.path, &original);
    drop(img);
    crash_every_cut(&original);
}
