//! PFS operations offline (pfs-create, pfs-delete, snapshot, pfs-list):
//! fields as the kernel sets them, snapshots sharing every block with
//! their source and staying as they were when the source changes, and the
//! same operations done by makefs (DragonFly's kernel code) on a copy of the
//! same image giving the same PFSs and contents.

use crate::common::maint::{oracle_fsck, our_fsck_clean, pfs_summary, spec_of, twin_copies};
use crate::common::model::snapshot_pfs;
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use crate::common::oracle::{makefs, makefs_read};
use hammer2::format::PfsType;
use hammer2::write::session::{Attrs, Session};

#[test]
fn snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes() {
    crate::common::oracle::without(
        snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes_scenario,
    );
}

/// [`snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes_with_reference_tools() {
    snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes_scenario();
}

fn snapshot_shares_every_block_and_keeps_its_contents_when_the_source_changes_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let before = snapshot_pfs(&spec, Some("DATA")).unwrap();

    let mut s = Session::open(&spec, false).unwrap();
    let free_before = s.fs.voldata.allocator_free.get();
    let data = s.pfs(Some("DATA")).unwrap();
    let snap = s.snapshot(&data, "snap").unwrap();
    let report = s.commit().unwrap();
    drop(s);
    // Nothing copied: the commit wrote the new root, the super-root and
    // DATA's root (its lsnap_tid), each 1 KiB in a chunk of its own at most.
    let used = free_before - report.allocator_free;
    assert!(used <= 3 * 16384, "a snapshot of a 135 KiB tree used {used} bytes");
    assert_eq!(snapshot_pfs(&spec, Some("snap")).unwrap(), before);

    let s = Session::open(&spec, true).unwrap();
    let list = s.pfs_list().unwrap();
    let snap_info = list.iter().find(|p| p.label == "snap").unwrap();
    let data_info = list.iter().find(|p| p.label == "DATA").unwrap();
    assert_eq!((snap_info.pfs_type.as_str(), snap_info.subtype.as_str()), ("master", "snapshot"));
    assert_eq!(snap_info.key, snap.key);
    assert_ne!(snap_info.clid, data_info.clid);
    assert_ne!(snap_info.fsid, data_info.fsid);
    assert_eq!(snap_info.pfs_inum, data_info.pfs_inum + 1);
    assert_eq!(snap_info.lsnap_tid, report.tid);
    assert_eq!(data_info.lsnap_tid, report.tid);
    drop(s);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);

    // Edit the source: a new file, a rewrite and a removal. The snapshot
    // keeps what it had.
    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    let bytes = crate::common::content(7, 200_000);
    s.create_file(&data, "/new.bin", Attrs::now(0o644), &bytes[..], bytes.len() as u64).unwrap();
    let (first, _) = before
        .iter()
        .find(|(_, n)| matches!(n, crate::common::model::Node::File { size, .. } if *size > 70_000))
        .unwrap();
    s.write(&data, first, 1000, &b"changed"[..], 7).unwrap();
    s.commit().unwrap();
    drop(s);
    assert_eq!(snapshot_pfs(&spec, Some("snap")).unwrap(), before);
    assert_ne!(snapshot_pfs(&spec, Some("DATA")).unwrap(), before);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    // The kernel mounts the snapshot and reads the file as it was.
    let want = crate::common::model::read_path(&spec, Some("snap"), first).unwrap();
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, Some("snap"), first), want);
    }
    makefs_mounts_and_bulkfrees(&img);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn create_snapshot_delete_match_makefs() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, kernel, ours_spec, kernel_spec) = twin_copies("small-iscsi", dir.path());

    let mut s = Session::open(&ours_spec, false).unwrap();
    s.pfs_create("EXTRA", PfsType::Master).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    s.snapshot(&data, "snap1").unwrap();
    assert!(s.pfs_create("EXTRA", PfsType::Master).is_err(), "a second EXTRA was accepted");
    s.commit().unwrap();
    drop(s);
    for opt in ["P=create:EXTRA", "P=snapshot:snap1"] {
        let (ok, text) = makefs(&kernel, &[opt]);
        assert!(ok && text.contains("no recovery needed"), "makefs -o {opt}: {text}");
    }
    assert_eq!(pfs_summary(&ours_spec), pfs_summary(&kernel_spec));
    // The super-root's statistics as the kernel keeps them (it counts the
    // roots it inserts).
    let sroot_stats = |spec: &str| {
        let fs = hammer2::Hammer2::open_path(spec).unwrap();
        let st = *fs.voldata.sroot_blockset[0].stats();
        (st.data_count.get(), st.inode_count.get())
    };
    assert_eq!(sroot_stats(&ours_spec), sroot_stats(&kernel_spec));
    assert_eq!(
        snapshot_pfs(&ours_spec, Some("snap1")).unwrap(),
        snapshot_pfs(&kernel_spec, Some("snap1")).unwrap()
    );
    assert_eq!(
        snapshot_pfs(&ours_spec, Some("EXTRA")).unwrap(),
        snapshot_pfs(&kernel_spec, Some("EXTRA")).unwrap()
    );
    our_fsck_clean(&ours_spec);
    oracle_fsck(&ours_spec);

    // The kernel creates files in our new PFS, and we in its.
    let (ok, text) = makefs(&ours, &["P=delete:snap1"]);
    assert!(ok && text.contains("no recovery needed"), "makefs deletes our snapshot: {text}");
    let mut s = Session::open(&kernel_spec, false).unwrap();
    s.pfs_delete("snap1").unwrap();
    let extra = s.pfs(Some("EXTRA")).unwrap();
    s.mkdir(&extra, "/d", Attrs::now(0o755), false).unwrap();
    s.commit().unwrap();
    drop(s);
    let (ok, text) = makefs(&kernel, &["P=delete:EXTRA"]);
    assert!(ok && text.contains("no recovery needed"), "makefs deletes EXTRA after our edit: {text}");
    let mut s = Session::open(&ours_spec, false).unwrap();
    s.pfs_delete("EXTRA").unwrap();
    assert!(s.pfs_delete("EXTRA").is_err(), "EXTRA deleted twice");
    s.commit().unwrap();
    drop(s);
    assert_eq!(pfs_summary(&ours_spec), pfs_summary(&kernel_spec));
    for spec in [&ours_spec, &kernel_spec] {
        our_fsck_clean(spec);
        oracle_fsck(spec);
    }
    makefs_mounts_and_bulkfrees(&ours);
}

#[test]
fn a_new_pfs_takes_the_kernels_fields() {
    crate::common::oracle::without(a_new_pfs_takes_the_kernels_fields_scenario);
}

/// [`a_new_pfs_takes_the_kernels_fields`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_new_pfs_takes_the_kernels_fields_with_reference_tools() {
    a_new_pfs_takes_the_kernels_fields_scenario();
}

fn a_new_pfs_takes_the_kernels_fields_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    let spec = spec_of(&img);
    let mut s = Session::open(&spec, false).unwrap();
    let p = s.pfs_create("boot", PfsType::Slave).unwrap();
    s.commit().unwrap();
    let pfs = s.pfs(Some("boot")).unwrap();
    assert_eq!(pfs.key, p.key);
    assert_eq!(p.key & hammer2::format::DIRHASH_LOMASK, 1, "first collision number is 1");
    assert_eq!(
        p.key & !hammer2::format::DIRHASH_LOMASK,
        hammer2::format::dirhash::dirhash(b"boot") & !hammer2::format::DIRHASH_LOMASK
    );
    drop(s);
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let root = hammer2::read::pfs::Pfs::find(&tree, "boot").unwrap().root;
    let m = &root.data.meta;
    assert_eq!(m.pfs_type(), PfsType::Slave);
    assert_eq!(m.comp(), hammer2::format::CompMethod::Autozero, "no compression on a PFS named boot");
    assert_eq!(m.check(), hammer2::format::CheckMethod::Xxhash64);
    assert_eq!((m.inum.get(), m.iparent.get(), m.nlinks.get(), m.mode.get()), (1, 1, 1, 0o755));
    assert!(m.is_pfsroot());
    assert_ne!(root.bref.flags & hammer2::format::BREF_FLAG_PFSROOT, 0);
    drop(fs);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}

#[test]
fn snapshot_names_follow_hammer2() {
    // 2026-11-20 21:48:33 UTC
    assert_eq!(
        hammer2::write::session::default_snapshot_name("DATA", 1_795_211_313_000_000),
        "DATA.20261120.214833"
    );
    assert!(hammer2::write::session::parse_pfs_type("soft-master").is_ok());
    assert!(hammer2::write::session::parse_pfs_type("bogus").is_err());
}

fn edit(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args(args).output().unwrap()
}

fn edit_ok(args: &[&str]) -> String {
    let out = edit(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    text
}

#[test]
fn maintenance_commands_through_hammer2_edit() {
    crate::common::oracle::without(maintenance_commands_through_hammer2_edit_scenario);
}

/// [`maintenance_commands_through_hammer2_edit`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn maintenance_commands_through_hammer2_edit_with_reference_tools() {
    maintenance_commands_through_hammer2_edit_scenario();
}

fn maintenance_commands_through_hammer2_edit_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let before = snapshot_pfs(&spec, Some("DATA")).unwrap();
    // A script: one commit holding a new PFS, a snapshot, a setcomp and a destroy.
    let script = dir.path().join("maint.txt");
    std::fs::write(&script, "pfs-create -t master EXTRA\nsnapshot snap\nsetcomp -r zlib:9 /dir\n").unwrap();
    edit_ok(&["--pfs", "DATA", "-f", script.to_str().unwrap(), &spec]);
    let list = edit_ok(&[&spec, "pfs-list"]);
    for (label, sub) in [("EXTRA", "none"), ("snap", "snapshot"), ("DATA", "none")] {
        assert!(
            list.lines().any(|l| l.split_whitespace().take(3).eq([label, "master", sub])),
            "{label} missing from:\n{list}"
        );
    }
    assert_eq!(snapshot_pfs(&spec, Some("snap")).unwrap(), before);
    // A dry run changes nothing and says what it would do.
    let dry = edit_ok(&["-n", &spec, "pfs-delete", "EXTRA"]);
    assert!(dry.contains("would delete PFS EXTRA"), "{dry}");
    assert!(pfs_summary(&spec).iter().any(|p| p.0 == "EXTRA"));
    edit_ok(&[&spec, "pfs-delete", "EXTRA"]);
    edit_ok(&[&spec, "bulkfree"]);
    assert!(!pfs_summary(&spec).iter().any(|p| p.0 == "EXTRA"));
    // Usage errors and refusals fail without writing.
    assert!(!edit(&[&spec, "pfs-create", "-t", "bogus", "X"]).status.success());
    assert!(!edit(&[&spec, "setcomp", "lz4:3", "/dir"]).status.success());
    // bulkfree after an edit of the same invocation runs on the session:
    // one transaction with the edit.
    let script = dir.path().join("late.txt");
    std::fs::write(&script, "mkdir /late\nbulkfree\nmkdir /later\n").unwrap();
    edit_ok(&["-f", script.to_str().unwrap(), &spec]);
    let tree = snapshot_pfs(&spec, Some("DATA")).unwrap();
    assert!(tree.contains_key("/late") && tree.contains_key("/later"));
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}

#[test]
fn snapshot_of_a_large_tree_and_edits_on_both_sides() {
    crate::common::oracle::without(snapshot_of_a_large_tree_and_edits_on_both_sides_scenario);
}

/// [`snapshot_of_a_large_tree_and_edits_on_both_sides`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn snapshot_of_a_large_tree_and_edits_on_both_sides_with_reference_tools() {
    snapshot_of_a_large_tree_and_edits_on_both_sides_scenario();
}

fn snapshot_of_a_large_tree_and_edits_on_both_sides_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, kernel, spec, kernel_spec) = twin_copies("varied", dir.path());
    let before = snapshot_pfs(&spec, None).unwrap();
    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(None).unwrap();
    let free = s.fs.voldata.allocator_free.get();
    s.snapshot(&data, "snap1").unwrap();
    let c = s.commit().unwrap();
    assert!(
        free - c.allocator_free <= 3 * 16384,
        "the snapshot of a 40+ MiB tree used {} bytes",
        free - c.allocator_free
    );
    // Edit the snapshot: the source keeps its contents; then the source.
    let snap = s.pfs(Some("snap1")).unwrap();
    let victim = before
        .iter()
        .find(|(p, n)| {
            matches!(n, crate::common::model::Node::File { size, .. } if *size > 1 << 20) && p.len() > 1
        })
        .map(|(p, _)| p.clone())
        .unwrap();
    s.remove(&snap, &victim, false).unwrap();
    s.mkdir(&snap, "/only-in-snapshot", Attrs::now(0o755), false).unwrap();
    s.commit().unwrap();
    assert_eq!(snapshot_pfs(&spec, None).unwrap(), before);
    let data = s.pfs(None).unwrap();
    s.write(&data, &victim, 0, &b"source changed"[..], 14).unwrap();
    s.commit().unwrap();
    drop(s);
    let snap_now = snapshot_pfs(&spec, Some("snap1")).unwrap();
    assert!(!snap_now.contains_key(&victim) && snap_now.contains_key("/only-in-snapshot"));
    let mut expected = before.clone();
    expected.remove(&victim);
    expected.insert("/only-in-snapshot".into(), crate::common::model::Node::Dir);
    assert_eq!(snap_now, expected);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    // The kernel's snapshot of the same image holds the same tree.
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&kernel, &["P=snapshot:snap1"]);
        assert!(ok && text.contains("no recovery needed"), "makefs snapshot: {text}");
        assert_eq!(snapshot_pfs(&kernel_spec, Some("snap1")).unwrap(), before);
    }
    makefs_mounts_and_bulkfrees(&ours);
}

#[test]
fn snapshot_after_edits_in_the_same_session_holds_them() {
    crate::common::oracle::without(snapshot_after_edits_in_the_same_session_holds_them_scenario);
}

/// [`snapshot_after_edits_in_the_same_session_holds_them`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn snapshot_after_edits_in_the_same_session_holds_them_with_reference_tools() {
    snapshot_after_edits_in_the_same_session_holds_them_scenario();
}

fn snapshot_after_edits_in_the_same_session_holds_them_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let bytes = crate::common::content(5, 150_000);
    // A dry run first (the device opened read-only): everything computed,
    // nothing written.
    let tid = |spec: &str| hammer2::Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get();
    let tid_before = tid(&spec);
    for dry in [true, false] {
        let mut s = Session::open(&spec, dry).unwrap();
        let data = s.pfs(Some("DATA")).unwrap();
        s.create_file(&data, "/fresh.bin", Attrs::now(0o644), &bytes[..], bytes.len() as u64).unwrap();
        s.mkdir(&data, "/dir/sub", Attrs::now(0o755), false).unwrap();
        s.snapshot(&data, "snap").unwrap();
        let c = s.commit().unwrap();
        assert_eq!(c.written, !dry);
        assert_eq!(tid(&spec), if dry { tid_before } else { c.tid });
    }
    let snap = snapshot_pfs(&spec, Some("snap")).unwrap();
    assert!(snap.contains_key("/fresh.bin") && snap.contains_key("/dir/sub"));
    assert_eq!(snap, snapshot_pfs(&spec, Some("DATA")).unwrap());
    assert_eq!(crate::common::model::read_path(&spec, Some("snap"), "/fresh.bin").unwrap(), bytes);
    // Shared, not copied: the walk meets the snapshot's subtrees as shared.
    let r = hammer2::fsck::fsck(&spec, &Default::default()).unwrap();
    let shared: u64 = r.trees.iter().map(|t| t.stats.shared).sum();
    assert!(shared > 0, "no shared block between the snapshot and its source");
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, Some("snap"), "/fresh.bin"), bytes);
    }
}

#[test]
fn pfs_operations_on_a_multi_volume_set() {
    crate::common::oracle::without(pfs_operations_on_a_multi_volume_set_scenario);
}

/// [`pfs_operations_on_a_multi_volume_set`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn pfs_operations_on_a_multi_volume_set_with_reference_tools() {
    pfs_operations_on_a_multi_volume_set_scenario();
}

fn pfs_operations_on_a_multi_volume_set_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("multivol-0.img");
    let b = dir.path().join("multivol-1.img");
    crate::common::copy_sparse(&crate::common::fixture("multivol-0"), &a);
    crate::common::copy_sparse(&crate::common::fixture("multivol-1"), &b);
    let spec = format!("{}:{}", a.display(), b.display());
    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    s.mkdir(&data, "/before", Attrs::now(0o755), false).unwrap();
    s.commit().unwrap();
    s.snapshot(&data, "snap").unwrap();
    s.pfs_create("EXTRA", PfsType::Master).unwrap();
    s.commit().unwrap();
    assert!(s.growfs(None).is_err(), "growfs of a multi-volume set");
    let r = s.bulkfree().unwrap();
    assert_eq!(r.unmarked, 0, "{r:?}");
    s.commit().unwrap();
    drop(s);
    assert_eq!(snapshot_pfs(&spec, Some("snap")).unwrap(), snapshot_pfs(&spec, Some("DATA")).unwrap());
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
}

/// The super-root's statistics are the kernel's increments, not a sum:
/// after a PFS is created on the pfs-snapshot fixture, by makefs or by us,
/// both store the same figures and our fsck accepts both images.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn pfs_create_on_the_snapshot_fixture_matches_makefs_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (_ours, theirs, ours_spec, theirs_spec) = twin_copies("pfs-snapshot", dir.path());
    let mut s = Session::open(&ours_spec, false).unwrap();
    s.pfs_create("NEW", PfsType::Master).unwrap();
    s.commit().unwrap();
    drop(s);
    let (ok, log) = makefs(&theirs, &["P=create:NEW"]);
    assert!(ok && log.contains("no recovery needed"), "makefs P=create:NEW:\n{log}");
    let sroot = |spec: &str| {
        let fs = hammer2::Hammer2::open_path(spec).unwrap();
        let st = *fs.voldata.sroot_blockset[0].stats();
        (st.data_count.get(), st.inode_count.get())
    };
    assert_eq!(sroot(&ours_spec), sroot(&theirs_spec), "super-root statistics");
    for spec in [&ours_spec, &theirs_spec] {
        our_fsck_clean(spec);
        oracle_fsck(spec);
    }
    assert_eq!(pfs_summary(&ours_spec), pfs_summary(&theirs_spec));
}
