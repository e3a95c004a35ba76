//! The library call behind `hammer2_edit put -r`
//! ([`hammer2::host::import::import_tree`]): importing host trees into images
//! that already hold content, as `cp -r` would, in one commit; holes not
//! stored; a failure part-way leaves every header copy and what it reaches
//! as they were, a dry run leaves the image byte-identical.

use crate::common::digest::content_sha256 as sha;
use crate::common::hosttree::both_fscks_clean;
use crate::common::hosttree::{self, MAKEFS_FILES};
use crate::common::oracle::{makefs_mounts_and_bulkfrees, makefs_snapshots};
use hammer2::host::import::{import_tree, ImportOptions, ImportReport};
use hammer2::write::session::Session;
use std::path::Path;
use std::process::Command;

fn import(spec: &str, host: &Path, dest: &str, opts: &ImportOptions) -> hammer2::Result<ImportReport> {
    let mut s = Session::open(spec, false)?;
    let pfs = s.pfs(None)?;
    let mut calls = 0;
    let r = import_tree(&mut s, &pfs, host, dest, opts, &mut |_| calls += 1)?;
    assert!(calls > 0, "progress is reported");
    s.commit()?;
    Ok(r)
}

/// The bytes of every volume-header copy (64 KiB at each 2 GiB).
fn header_copies(img: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(img).unwrap();
    let len = f.metadata().unwrap().len();
    (0..4u64)
        .map(|n| n << 31)
        .filter(|&off| off < len)
        .map(|off| {
            let mut b = vec![0u8; 65536];
            f.read_exact_at(&mut b, off).unwrap();
            b
        })
        .collect()
}

/// A temporary directory holding the varied host tree (`tree`) and a
/// scratch copy of the fixture `fixture`.
fn setup(fixture: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (dir, host) = hosttree::varied_in_tempdir();
    let img = crate::common::scratch_copy(fixture, dir.path());
    (dir, host, img)
}

#[test]
fn imports_a_varied_tree_into_an_image_with_content() {
    crate::common::oracle::without(imports_a_varied_tree_into_an_image_with_content_scenario);
}

/// [`imports_a_varied_tree_into_an_image_with_content`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn imports_a_varied_tree_into_an_image_with_content_with_reference_tools() {
    imports_a_varied_tree_into_an_image_with_content_scenario();
}

fn imports_a_varied_tree_into_an_image_with_content_scenario() {
    let (_dir, host, img) = setup("varied");
    let spec = img.to_str().unwrap();
    let before = crate::common::model::snapshot(spec).unwrap();
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/into", hammer2::write::session::Attrs::now(0o755), false).unwrap();
    let r2 = import_tree(&mut s, &pfs, &host.join("dir"), "/into", &ImportOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!((r2.dirs, r2.files, r2.symlinks), (1, 4, 1), "{r2:?}");
    s.commit().unwrap();
    drop(s);
    // What was there is untouched.
    let after = crate::common::model::snapshot(spec).unwrap();
    assert_eq!(after.len(), before.len() + 1 + 6, "/into, /into/dir and its 5 entries added");
    for (path, node) in &before {
        assert!(after.get(path).is_some_and(|n| n.same(node)), "{path} changed");
    }
    // cp -r semantics: a new name takes the tree; an existing directory
    // takes it under the host's own name (as /into did).
    let r = import(spec, &host, "/imported", &ImportOptions::default()).unwrap();
    assert_eq!(r.hardlinks, 3, "{r:?}");
    assert_eq!(r.symlinks, 3, "{r:?}");
    both_fscks_clean(spec);
    hosttree::compare_with_image(&host, spec, None, "/imported");
    hosttree::compare_with_image(&host.join("dir"), spec, None, "/into/dir");
    hosttree::compare_extracted(&host, spec, None, "/imported");
    hosttree::compare_makefs_read(&host, &img, None, "/imported", MAKEFS_FILES);
    makefs_snapshots(&img, "x");
    makefs_mounts_and_bulkfrees(&img);
    both_fscks_clean(spec);
}

#[test]
fn single_objects_and_holes() {
    crate::common::oracle::without(single_objects_and_holes_scenario);
}

/// [`single_objects_and_holes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn single_objects_and_holes_with_reference_tools() {
    single_objects_and_holes_scenario();
}

fn single_objects_and_holes_scenario() {
    let (dir, host) = hosttree::varied_in_tempdir();
    let img = dir.path().join("disk.img");
    let spec = img.to_str().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(["-q", "-s", "1G", spec]).output().unwrap();
    assert!(out.status.success());
    // The sparse file: data at 1 MiB (70,000 bytes: two blocks) and a
    // 6-byte island at 5 MiB; everything else is holes, never stored.
    let r = import(spec, &host.join("sparse"), "/sparse", &ImportOptions::default()).unwrap();
    assert_eq!((r.files, r.blocks, r.bytes), (1, 3, 9 << 20), "{r:?}");
    // An all-zero file that is not sparse on the host stores no blocks either.
    let r = import(spec, &host.join("dir/zeros"), "/", &ImportOptions::default()).unwrap();
    assert_eq!((r.files, r.blocks), (1, 0), "{r:?}");
    // A symlink and a FIFO on their own.
    import(spec, &host.join("sym"), "/a-link", &ImportOptions::default()).unwrap();
    import(spec, &host.join("fifo"), "/", &ImportOptions::default()).unwrap();
    both_fscks_clean(spec);
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let pfs = hammer2::read::pfs::Pfs::default(&tree).unwrap();
    assert_eq!(pfs.resolve("/zeros").unwrap().data.meta.size.get(), 200_000);
    assert_eq!(pfs.resolve("/a-link").unwrap().obj_type(), hammer2::format::ObjType::Softlink);
    assert_eq!(pfs.resolve("/fifo").unwrap().obj_type(), hammer2::format::ObjType::Fifo);
    drop(fs);
    hosttree::compare_makefs_read(&host, &img, None, "/", &["sparse"]);
}

#[test]
fn a_failed_import_or_a_dry_run_writes_nothing() {
    crate::common::oracle::without(a_failed_import_or_a_dry_run_writes_nothing_scenario);
}

/// [`a_failed_import_or_a_dry_run_writes_nothing`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_failed_import_or_a_dry_run_writes_nothing_with_reference_tools() {
    a_failed_import_or_a_dry_run_writes_nothing_scenario();
}

fn a_failed_import_or_a_dry_run_writes_nothing_scenario() {
    let (dir, host, img) = setup("small-iscsi");
    let spec = img.to_str().unwrap();
    let headers = header_copies(&img);
    let tree = crate::common::model::snapshot(spec).unwrap();
    // Into the root as contents: /dir exists in the image, so the
    // import fails after it created other entries (an aborted script).
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let opts = ImportOptions { contents: true, ..Default::default() };
    let err = import_tree(&mut s, &pfs, &host, "/", &opts, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already exists"), "names the clash: {err}");
    let refused = s.commit().unwrap_err();
    assert!(refused.to_string().contains("nothing is committed"), "{refused}");
    drop(s);
    // Blocks written early into free space stay unreachable (as a crash
    // would leave them); every header copy and what it reaches are as
    // they were.
    assert!(header_copies(&img) == headers, "a header copy changed after a failed import");
    assert_eq!(crate::common::model::snapshot(spec).unwrap(), tree);
    both_fscks_clean(spec);
    let before = sha(&img);
    // Clashes found before anything changes are plain errors.
    let mut s = Session::open(spec, false).unwrap();
    let err = import_tree(
        &mut s,
        &pfs,
        &host.join("hello.txt"),
        "/hello.txt",
        &ImportOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err =
        import_tree(&mut s, &pfs, &dir.path().join("missing"), "/x", &ImportOptions::default(), &mut |_| {})
            .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    drop(s);
    // A dry run does everything and writes nothing.
    let mut s = Session::open(spec, true).unwrap();
    let r = import_tree(&mut s, &pfs, &host, "/new", &ImportOptions::default(), &mut |_| {}).unwrap();
    assert!(r.files > 10 && r.blocks > 10, "{r:?}");
    let c = s.commit().unwrap();
    assert!(!c.written);
    drop(s);
    assert_eq!(sha(&img), before, "image unchanged after a dry run");
}

#[test]
fn methods_can_be_chosen_and_threads_do_not_change_the_image() {
    crate::common::oracle::without(methods_can_be_chosen_and_threads_do_not_change_the_image_scenario);
}

/// [`methods_can_be_chosen_and_threads_do_not_change_the_image`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn methods_can_be_chosen_and_threads_do_not_change_the_image_with_reference_tools() {
    methods_can_be_chosen_and_threads_do_not_change_the_image_scenario();
}

fn methods_can_be_chosen_and_threads_do_not_change_the_image_scenario() {
    let (dir, host) = hosttree::varied_in_tempdir();
    let mut images = Vec::new();
    for threads in [1, 4] {
        let img = dir.path().join(format!("t{threads}.img"));
        let spec = img.to_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_newfs_hammer2"))
            .args(["-q", "-s", "1G", spec])
            .output()
            .unwrap();
        assert!(out.status.success());
        let opts = ImportOptions {
            comp: Some((hammer2::format::CompMethod::Zlib, 9)),
            // Not sha192: the reference fsck_hammer2 refuses it (EINVAL).
            check: Some(hammer2::format::CheckMethod::Iscsi32),
            threads,
            ..Default::default()
        };
        import(spec, &host, "/t", &opts).unwrap();
        both_fscks_clean(spec);
        hosttree::compare_with_image(&host, spec, None, "/t");
        images.push(img);
    }
    // The inodes land at the same places whatever the thread count.
    let data_off = |img: &Path, path: &str| {
        let fs = hammer2::Hammer2::open_path(img.to_str().unwrap()).unwrap();
        let tree = hammer2::read::tree::Tree::new(&fs);
        let off = hammer2::read::pfs::Pfs::default(&tree).unwrap().resolve(path).unwrap().bref.data_off.get();
        off
    };
    for path in ["/t/dir/text.txt", "/t/dir/random.bin", "/t/sparse"] {
        let (a, b) = (data_off(&images[0], path), data_off(&images[1], path));
        assert_eq!(a, b, "{path}: placed alike whatever the thread count");
    }
}
