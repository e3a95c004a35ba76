//! bulkfree offline: the freemap rebuilt from the topology with the
//! kernel's transitions; compared chunk by chunk with makefs's bulkfree
//! (DragonFly's kernel code) on a copy of the same image.

use crate::common::editor::text;
use crate::common::maint::{chunk_states, oracle_fsck, our_fsck_clean, spec_of};
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use crate::common::oracle::{bulkfree_verdict, makefs};
use hammer2::write::session::{Attrs, Session};

/// Removes files and rewrites one on a scratch copy of `fixture`, so that
/// blocks become unreachable; returns the image.
fn edited(fixture: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let img = crate::common::scratch_copy(fixture, dir);
    let spec = spec_of(&img);
    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(None).unwrap();
    let big = crate::common::content(3, 300_000);
    s.create_file(&data, "/gone.bin", Attrs::now(0o644), &big[..], big.len() as u64).unwrap();
    s.create_file(&data, "/kept.bin", Attrs::now(0o644), &big[..], big.len() as u64).unwrap();
    s.commit().unwrap();
    s.remove(&data, "/gone.bin", false).unwrap();
    s.write(&data, "/kept.bin", 70_000, &b"overwritten"[..], 11).unwrap();
    s.commit().unwrap();
    // Three more commits: no valid header copy reaches gone.bin any more
    // (until then bulkfree keeps its blocks for the older copies).
    for n in 0..3 {
        s.mkdir(&data, &format!("/d{n}"), Attrs::now(0o755), false).unwrap();
        s.commit().unwrap();
    }
    img
}

#[test]
fn bulkfree_frees_what_is_unreachable_and_matches_makefs() {
    crate::common::oracle::without(bulkfree_frees_what_is_unreachable_and_matches_makefs_scenario);
}

/// [`bulkfree_frees_what_is_unreachable_and_matches_makefs`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn bulkfree_frees_what_is_unreachable_and_matches_makefs_with_reference_tools() {
    bulkfree_frees_what_is_unreachable_and_matches_makefs_scenario();
}

fn bulkfree_frees_what_is_unreachable_and_matches_makefs_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let ours = edited("small-iscsi", dir.path());
    let kernel = dir.path().join("kernel.img");
    crate::common::copy_sparse(&ours, &kernel);
    let (ours_spec, kernel_spec) = (spec_of(&ours), spec_of(&kernel));
    let (_, staged_before) = chunk_states(&ours_spec);
    assert!(!staged_before.is_empty(), "the edits left no block staged");

    let mut s = Session::open(&ours_spec, false).unwrap();
    let free_before = s.fs.voldata.allocator_free.get();
    let r = s.bulkfree().unwrap();
    let c = s.commit().unwrap();
    drop(s);
    assert!(r.freed > 0, "nothing freed: {r:?}");
    assert_eq!(r.unmarked, 0, "our own freemap had blocks in use marked free: {r:?}");
    assert_eq!(c.allocator_free, free_before + r.freed_bytes(), "{r:?}");
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&kernel, &["B"]);
        assert!(ok, "makefs -o B: {text}");
        bulkfree_verdict(&text)
            .unwrap_or_else(|e| panic!("makefs on a copy of our image before our bulkfree: {e}"));
        let (ours_alloc, _) = chunk_states(&ours_spec);
        let (kernel_alloc, _) = chunk_states(&kernel_spec);
        let only_ours: Vec<_> = ours_alloc.difference(&kernel_alloc).map(|o| format!("{o:#x}")).collect();
        let only_kernel: Vec<_> = kernel_alloc.difference(&ours_alloc).map(|o| format!("{o:#x}")).collect();
        assert!(
            only_ours.is_empty() && only_kernel.is_empty(),
            "allocated only in ours: {only_ours:?}\nallocated only in makefs's: {only_kernel:?}"
        );
    }
    our_fsck_clean(&ours_spec);
    oracle_fsck(&ours_spec);
    makefs_mounts_and_bulkfrees(&ours);

    // A second bulkfree has nothing left to do (makefs's bulkfree was the
    // second pass; without it, ours is, and then a third finds nothing).
    if !crate::common::oracle::wanted() {
        let mut s = Session::open(&ours_spec, false).unwrap();
        assert!(s.bulkfree().unwrap().freed > 0, "the second pass frees what the first staged");
        s.commit().unwrap();
    }
    let mut s = Session::open(&ours_spec, false).unwrap();
    let r = s.bulkfree().unwrap();
    assert_eq!((r.freed, r.unmarked, r.restored), (0, 0, 0), "{r:?}");
}

#[test]
fn bulkfree_remarks_blocks_in_use_that_the_freemap_lost() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("varied", dir.path());
    let spec = spec_of(&img);
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    // Rebuild from nothing: every reached chunk counts as in use but unmarked.
    let (rebuilt, r) = hammer2::write::alloc::Allocator::rebuild(&fs).unwrap();
    assert_eq!(r.staged + r.freed, 0, "{r:?}");
    assert!(r.unmarked > 0 && r.unmarked == r.in_use, "{r:?}");
    // The same chunks end up allocated as when bulkfree merges into the
    // freemap on media (which makefs left exact: nothing unmarked).
    let mut loaded = hammer2::write::alloc::Allocator::load(&fs).unwrap();
    let r2 = loaded.bulkfree(&fs).unwrap();
    assert_eq!((r2.unmarked, r2.in_use), (0, r.in_use), "{r2:?}");
    let beg = fs.voldata.allocator_beg.get() & !0x3fff;
    for zone in loaded.leaf_keys() {
        for off in (zone.max(beg)..zone + (1 << 30)).step_by(16384) {
            let (a, b) = (
                loaded.chunk_state(off) == Some(hammer2::freemap::ChunkState::Allocated),
                rebuilt.chunk_state(off) == Some(hammer2::freemap::ChunkState::Allocated),
            );
            assert_eq!(a, b, "chunk {off:#x}: allocated after bulkfree {a}, in the rebuild {b}");
        }
    }
    // Unreached chunks the media still mark allocated count as free in the rebuild.
    let staged = r2.staged * 16384;
    assert_eq!(rebuilt.free_bytes(), fs.voldata.allocator_free.get() + staged, "{r2:?}");
}

#[test]
fn bulkfree_on_a_large_tree_matches_makefs() {
    crate::common::oracle::without(bulkfree_on_a_large_tree_matches_makefs_scenario);
}

/// [`bulkfree_on_a_large_tree_matches_makefs`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn bulkfree_on_a_large_tree_matches_makefs_with_reference_tools() {
    bulkfree_on_a_large_tree_matches_makefs_scenario();
}

fn bulkfree_on_a_large_tree_matches_makefs_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, kernel, ours_spec, kernel_spec) = {
        let img = edited("varied", dir.path());
        let kernel = dir.path().join("kernel.img");
        crate::common::copy_sparse(&img, &kernel);
        let (a, b) = (spec_of(&img), spec_of(&kernel));
        (img, kernel, a, b)
    };
    let mut s = Session::open(&ours_spec, false).unwrap();
    let r = s.bulkfree().unwrap();
    s.commit().unwrap();
    drop(s);
    assert!(r.in_use > 1000 && r.freed > 0, "{r:?}");
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&kernel, &["B"]);
        assert!(ok, "makefs -o B: {text}");
        bulkfree_verdict(&text)
            .unwrap_or_else(|e| panic!("makefs on a copy of our image before our bulkfree: {e}"));
        let (a, _) = chunk_states(&ours_spec);
        let (b, _) = chunk_states(&kernel_spec);
        assert_eq!(a.symmetric_difference(&b).count(), 0, "ours and makefs's allocated chunks differ");
    }
    our_fsck_clean(&ours_spec);
    oracle_fsck(&ours_spec);
    makefs_mounts_and_bulkfrees(&ours);
}

#[test]
fn crash_at_any_point_of_snapshot_pfs_delete_and_bulkfree() {
    use crate::common::recording::{cut_points, open_recorded_into, CrashImage, Log, Rng};
    let dir = tempfile::tempdir().unwrap();
    let original = edited("small-iscsi", dir.path());
    let work = dir.path().join("work.img");
    crate::common::copy_sparse(&original, &work);
    let start_tid = hammer2::Hammer2::open_path(&spec_of(&original)).unwrap().voldata.mirror_tid.get();

    let log = Log::default();
    let mut s = Session::from_fs(open_recorded_into(&work, &log), true).unwrap();
    let data = s.pfs(None).unwrap();
    s.snapshot(&data, "snap").unwrap();
    s.pfs_create("EXTRA", hammer2::format::PfsType::Master).unwrap();
    let c1 = s.commit().unwrap();
    s.pfs_delete("snap").unwrap();
    let c2 = s.commit().unwrap();
    let r = s.bulkfree().unwrap();
    assert!(r.staged + r.freed > 0, "{r:?}");
    let c3 = s.commit().unwrap();
    drop(s);
    let labels = |extra: bool, snap: bool| {
        let mut v = vec!["DATA".to_string(), "LOCAL".to_string()];
        if extra {
            v.push("EXTRA".into());
        }
        if snap {
            v.push("snap".into());
        }
        v.sort();
        v
    };
    let want = [
        (start_tid, labels(false, false)),
        (c1.tid, labels(true, true)),
        (c2.tid, labels(true, false)),
        (c3.tid, labels(true, false)),
    ];

    let events = log.events();
    let cuts = cut_points(&events, 3, &mut Rng::new(12));
    assert!(cuts.len() > 10, "{} cuts", cuts.len());
    let mut img = CrashImage::new(&original, &dir.path().join("crash.img"));
    let mut seen = std::collections::BTreeSet::new();
    for cut in &cuts {
        let tid = img.open_at(&events, cut).voldata.mirror_tid.get();
        let (_, expected) =
            want.iter().find(|(t, _)| *t == tid).unwrap_or_else(|| panic!("{}: tid {tid:#x}", cut.name));
        seen.insert(tid);
        let got: Vec<String> =
            crate::common::maint::pfs_summary(img.spec()).into_iter().map(|p| p.0).collect();
        assert_eq!(&got, expected, "{}", cut.name);
        if cut.torn_slot.is_none() {
            let bad = crate::common::maint::our_fsck_problems(img.spec());
            assert!(bad.is_empty(), "{}: our fsck finds\n{}", cut.name, bad.join("\n"));
        }
    }
    assert_eq!(seen.len(), want.len(), "crash points reached only the states {seen:x?}");
}

/// hammer2_edit's standard output and error, asserting exit 0.
fn edit_ok(args: &[&str]) -> String {
    let out = crate::common::editor::edit_ok(args);
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// The bytes of `path` in the DATA PFS of `spec`.
fn cat(spec: &str, path: &str) -> Vec<u8> {
    crate::common::editor::edit_ok(&[spec, "cat", path]).stdout
}

/// The freemap of `spec` marks what is in use allocated (11), not possibly
/// free (10): a bulkfree finds nothing in use marked free and restores at
/// most one chunk, where the flush's release of an old node copy staged a
/// 16 KiB chunk that other nodes packed into it still use (release works
/// by chunk). A data block of 32 KiB or more left staged would count two
/// chunks or more.
fn assert_allocated_not_staged(spec: &str) {
    let r = Session::open(spec, true).unwrap().bulkfree().unwrap();
    assert!(r.unmarked == 0 && r.restored <= 1, "{r:?}");
}

/// bulkfree in the middle of a script, after uncommitted edits and before
/// more: one transaction that frees what no header copy reaches, keeps what
/// the edits before it put in (later edits, which reuse freed space, do not
/// overwrite it), and leaves an image both checkers and makefs accept. A
/// dry run of the same writes nothing.
#[test]
fn bulkfree_between_uncommitted_edits_of_one_script() {
    crate::common::oracle::without(bulkfree_between_uncommitted_edits_of_one_script_scenario);
}

/// [`bulkfree_between_uncommitted_edits_of_one_script`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn bulkfree_between_uncommitted_edits_of_one_script_with_reference_tools() {
    bulkfree_between_uncommitted_edits_of_one_script_scenario();
}

fn bulkfree_between_uncommitted_edits_of_one_script_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = edited("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let tid = hammer2::Hammer2::open_path(&spec).unwrap().voldata.mirror_tid.get();
    let host = |name: &str, seed: u64, len: usize| {
        let p = dir.path().join(name);
        std::fs::write(&p, crate::common::content(seed, len)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (a, b, c) = (host("a", 31, 900_000), host("b", 32, 2_000_000), host("c", 33, 5000));
    let script = format!(
        "put {a} /before.bin; mkdir /d; put {c} /d/small; rm /kept.bin; bulkfree; put {b} /after.bin; \
         write /before.bin 100 {c}; mkdir /d/e; put {c} /d/e/small2"
    );
    let before = crate::common::digest::sparse_sha256(&img);
    let dry = edit_ok(&["-n", "-c", &script, &spec]);
    assert!(dry.contains("bulkfree:"), "{dry}");
    assert_eq!(crate::common::digest::sparse_sha256(&img), before, "dry run: byte-identical");

    // The dry run tells what the bulkfree does (the real run only reports the commit).
    let freed: u64 = dry
        .split("; freed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bulkfree line:\n{dry}"));
    assert!(freed > 0, "gone.bin's staged blocks were not freed:\n{dry}");
    edit_ok(&["-c", &script, &spec]);
    assert_eq!(hammer2::Hammer2::open_path(&spec).unwrap().voldata.mirror_tid.get(), tid + 1, "one commit");
    let mut want = crate::common::content(31, 900_000);
    want[100..5100].copy_from_slice(&crate::common::content(33, 5000));
    assert!(cat(&spec, "/before.bin") == want, "a file put before the bulkfree was damaged");
    assert!(cat(&spec, "/after.bin") == crate::common::content(32, 2_000_000));
    assert_eq!(cat(&spec, "/d/small"), crate::common::content(33, 5000));
    assert_eq!(cat(&spec, "/d/e/small2"), crate::common::content(33, 5000));
    assert_allocated_not_staged(&spec);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}

/// The same through the library with a small memory budget, so that whole
/// subtrees of new inodes are written early (clean blockrefs in the
/// session whose blocks no header reaches yet): bulkfree keeps all of them.
#[test]
fn bulkfree_keeps_subtrees_written_early() {
    crate::common::oracle::without(bulkfree_keeps_subtrees_written_early_scenario);
}

/// [`bulkfree_keeps_subtrees_written_early`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn bulkfree_keeps_subtrees_written_early_with_reference_tools() {
    bulkfree_keeps_subtrees_written_early_scenario();
}

fn bulkfree_keeps_subtrees_written_early_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = edited("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let mut s = Session::open(&spec, false).unwrap();
    s.set_memory_budget(1 << 20);
    let data = s.pfs(None).unwrap();
    let body = |n: u64| crate::common::content(100 + n, 20_000 + n as usize * 97);
    s.mkdir(&data, "/many", Attrs::now(0o755), false).unwrap();
    for n in 0..400 {
        let b = body(n);
        s.create_file(&data, &format!("/many/f{n}"), Attrs::now(0o644), &b[..], b.len() as u64).unwrap();
    }
    assert!(s.early_writes().blocks > 0, "nothing was written early");
    let r = s.bulkfree().unwrap();
    assert_eq!(r.unmarked, 0, "{r:?}");
    for n in 400..600 {
        let b = body(n);
        s.create_file(&data, &format!("/many/f{n}"), Attrs::now(0o644), &b[..], b.len() as u64).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    assert_allocated_not_staged(&spec);
    for n in (0..600).step_by(37) {
        assert!(cat(&spec, &format!("/many/f{n}")) == body(n), "/many/f{n}");
    }
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}
