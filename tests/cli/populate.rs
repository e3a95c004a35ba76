//! `newfs_hammer2 --populate HOSTDIR`: format and fill a PFS from a host
//! tree in one commit; the image is checked by both fscks, read back
//! through our reader, `get` and the reference makefs, and the kernel
//! code (makefs) can mount it and keep writing. The host tree holds a
//! FIFO and a socket always; character and block devices and files of
//! other owners only when the tests run as root (creating them needs it),
//! so as another user those two cases are not exercised.

use crate::common::hosttree::both_fscks_clean;
use crate::common::hosttree::{self, MAKEFS_FILES};
use crate::common::oracle::{makefs_mounts_and_bulkfrees, makefs_snapshots};
use std::path::Path;
use std::process::{Command, Output};

fn newfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(args).output().unwrap()
}

#[test]
fn populates_a_varied_tree_that_everyone_reads_back() {
    crate::common::oracle::without(populates_a_varied_tree_that_everyone_reads_back_scenario);
}

/// [`populates_a_varied_tree_that_everyone_reads_back`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn populates_a_varied_tree_that_everyone_reads_back_with_reference_tools() {
    populates_a_varied_tree_that_everyone_reads_back_scenario();
}

fn populates_a_varied_tree_that_everyone_reads_back_scenario() {
    let (dir, host) = hosttree::varied_in_tempdir();
    let img = dir.path().join("disk.img");
    let spec = img.to_str().unwrap();
    let out = newfs(&["-s", "2G", "--populate", host.to_str().unwrap(), spec]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "newfs --populate: {log}{}", String::from_utf8_lossy(&out.stderr));
    assert!(log.contains("populated PFS \"DATA\""), "summary names what was populated:\n{log}");
    // One commit after newfs's own transaction.
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    assert_eq!(fs.voldata.mirror_tid.get(), hammer2::newfs::NEWFS_TID + 1);
    drop(fs);
    both_fscks_clean(spec);
    hosttree::compare_with_image(&host, spec, None, "/");
    hosttree::compare_extracted(&host, spec, None, "/");
    hosttree::compare_makefs_read(&host, &img, None, "/", MAKEFS_FILES);
    // The kernel code mounts it, snapshots it and flushes; still clean.
    makefs_snapshots(&img, "snap");
    makefs_mounts_and_bulkfrees(&img);
    both_fscks_clean(spec);
    if crate::common::oracle::wanted() {
        hosttree::compare_with_image(&host, spec, Some("snap"), "/");
    }
}

#[test]
fn populates_another_label_with_other_methods() {
    crate::common::oracle::without(populates_another_label_with_other_methods_scenario);
}

/// [`populates_another_label_with_other_methods`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn populates_another_label_with_other_methods_with_reference_tools() {
    populates_another_label_with_other_methods_scenario();
}

fn populates_another_label_with_other_methods_scenario() {
    let (dir, host) = hosttree::varied_in_tempdir();
    let img = dir.path().join("disk.img");
    let spec = img.to_str().unwrap();
    let out = newfs(&[
        "-q",
        "-s",
        "1G",
        "-L",
        "ROOT",
        "--comp",
        "zlib",
        "--check",
        "iscsi32",
        "--populate",
        host.to_str().unwrap(),
        spec,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "-q prints nothing");
    both_fscks_clean(spec);
    hosttree::compare_with_image(&host, spec, Some("ROOT"), "/");
    // Blocks of the compressible file are stored zlib-compressed, checked by iscsi32.
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let pfs = hammer2::read::pfs::Pfs::find(&tree, "ROOT").unwrap();
    let ino = pfs.resolve("/dir/short-text.txt").unwrap();
    let first = ino.blockset().iter().find(|b| b.kind() == hammer2::format::BlockrefType::Data).unwrap();
    assert_eq!(first.comp_method(), hammer2::format::CompMethod::Zlib);
    assert_eq!(first.check_method(), hammer2::format::CheckMethod::Iscsi32);
    drop(fs);
    hosttree::compare_makefs_read(&host, &img, Some("ROOT"), "/", &["dir/text.txt", "sparse"]);
}

#[test]
fn a_bad_populate_source_formats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for src in [dir.path().join("missing"), file] {
        let out = newfs(&["-s", "1G", "--populate", src.to_str().unwrap(), img.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(src.to_str().unwrap()), "names the source");
        assert!(!Path::new(&img).exists(), "no image created");
    }
    let host = tempfile::tempdir().unwrap();
    let out = newfs(&[
        "-s",
        "1G",
        "-L",
        "none",
        "--populate",
        host.path().to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "usage error: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(&img).exists(), "no image created");
}
