//! fsck's rollback (src/fsck/rollback.rs): the newest header copy's tree is
//! damaged while an older copy's is intact, as two writers on one image or
//! a torn write of the super-root leave it; `-y` makes the older copy
//! current, `--use-copy N` names the copy.

use crate::common::editor::{edit, edit_ok, text};
use crate::common::oracle::{self, NEEDS};
use crate::common::reseal::{best_copy, Image, SROOT_AT};
use hammer2::format::VOLHDR_ZONE_BYTES;
use hammer2::fsck::{fsck, FsckOptions, RepairMode};
use std::process::Command;

fn fsck_bin(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(args).output().unwrap();
    (out.status.code().unwrap(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// small-iscsi with one more commit (`mkdir /newer`), whose super-root is
/// then damaged (a byte of its media flipped, its check code left): the
/// newest copy's tree fails at the top, the copy before it is intact.
/// Returns the image and the older copy's index.
pub(crate) fn damaged_newest() -> (Image, usize) {
    let img = Image::new("small-iscsi");
    let older = best_copy(&img);
    edit_ok(&[img.spec(), "mkdir", "/newer"]);
    let newest = best_copy(&img);
    assert_ne!(newest, older);
    let sroot = img.bref(newest as u64 * VOLHDR_ZONE_BYTES + SROOT_AT);
    let at = sroot.offset() + 0x100;
    let byte = img.read(at, 1)[0];
    img.write(at, &[byte ^ 0x5a]);
    (img, older)
}

fn newer_exists(img: &Image) -> bool {
    edit(&[img.spec(), "stat", "/newer"]).status.success()
}

fn scenario() {
    let (img, older) = damaged_newest();
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("BREF_CHECK"), "{out}");
    // -n says what -y would do, and writes nothing.
    assert!(out.contains("HDR_TREE_DAMAGED") && out.contains(&format!("copy #{older}")), "{out}");
    assert!(out.contains("transaction 0x12 is lost"), "{out}");

    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HDR_TREE_DAMAGED") && out.contains("FIXED"), "{out}");
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "after the rollback: {out}");
    // A second -y finds nothing to do.
    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 0, "second -y: {out}");
    // The older tree is back: the files of small-iscsi read, /newer is gone.
    assert!(!newer_exists(&img));
    let data = edit_ok(&[img.spec(), "cat", "/dir/data.bin"]).stdout;
    assert_eq!(data.len(), 100_000);
    crate::common::maint::all_copies_clean(img.spec());
    crate::common::maint::oracle_fsck(img.spec());
    oracle::makefs_mounts_and_bulkfrees(&img.path);
}

#[test]
fn damaged_newest_tree_is_rolled_back_to_the_intact_copy() {
    oracle::without(scenario);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn damaged_newest_tree_is_rolled_back_to_the_intact_copy_with_reference_tools() {
    let _ = NEEDS;
    scenario();
}

#[test]
fn use_copy_names_the_copy_and_n_only_describes() {
    // An undamaged image: --use-copy rolls back on request only.
    let img = Image::new("small-iscsi");
    let older = best_copy(&img);
    edit_ok(&[img.spec(), "mkdir", "/newer"]);
    let before = img.contents();
    let opts = FsckOptions { use_copy: Some(older), ..Default::default() };
    let r = fsck(img.spec(), &opts).unwrap();
    let f = r.findings.iter().find(|f| f.problem.id.code() == "HDR_TREE_DAMAGED").expect("described");
    assert!(!f.repaired && f.detail.contains("-y makes it current"), "{f:#?}");
    assert!(img.contents() == before, "-n wrote");
    assert!(newer_exists(&img));

    let (code, out) = fsck_bin(&["-y", "--use-copy", &older.to_string(), img.spec()]);
    assert_eq!(code, 1, "{out}");
    assert!(!newer_exists(&img));
    assert_eq!(fsck_bin(&["-n", img.spec()]).0, 0);

    // The copy in use (or a newer one) is refused as a usage error of
    // the run; -p cannot roll back.
    let (code, out) = fsck_bin(&["-p", "--use-copy", "0", img.spec()]);
    assert_eq!(code, 16, "{out}");
    let r = fsck(img.spec(), &FsckOptions { use_copy: Some(best_copy(&img)), ..Default::default() });
    assert!(r.is_err());
}

#[test]
fn the_copy_losing_least_is_chosen() {
    // Two commits after small-iscsi's: the newest damaged, the one before
    // it intact: that one (one transaction lost) is chosen, not the oldest.
    let img = Image::new("small-iscsi");
    edit_ok(&[img.spec(), "mkdir", "/a"]);
    let middle = best_copy(&img);
    edit_ok(&[img.spec(), "mkdir", "/b"]);
    let newest = best_copy(&img);
    let sroot = img.bref(newest as u64 * VOLHDR_ZONE_BYTES + SROOT_AT);
    let at = sroot.offset() + 0x100;
    let byte = img.read(at, 1)[0];
    img.write(at, &[byte ^ 0x5a]);
    let r = fsck(img.spec(), &FsckOptions { repair: RepairMode::Yes, ..Default::default() }).unwrap();
    let f = r.findings.iter().find(|f| f.problem.id.code() == "HDR_TREE_DAMAGED").expect("rolled back");
    assert!(f.repaired && f.detail.starts_with(&format!("copy #{middle} ")), "{f:#?}");
    assert_eq!(r.exit_code(), 1, "{:#?}", r.findings);
    assert!(edit(&[img.spec(), "stat", "/a"]).status.success());
    assert!(!edit(&[img.spec(), "stat", "/b"]).status.success());
}

/// A newest header copy that names no super-root (its `sroot_blockset`
/// emptied, the header's CRCs resealed, so only the tree's absence shows):
/// the walk finds nothing wrong in an empty tree, but fsck says no PFS can
/// be reached, and `-y` rolls back to the copy before it.
#[test]
fn a_header_naming_no_super_root_is_damage_and_rolled_back() {
    let img = Image::new("small-iscsi");
    let older = best_copy(&img);
    edit_ok(&[img.spec(), "mkdir", "/newer"]);
    let newest = best_copy(&img);
    assert_ne!(newest, older);
    // sroot_blockset: four 128-byte blockrefs at 0x200 of the header.
    img.write(newest as u64 * VOLHDR_ZONE_BYTES + SROOT_AT, &[0u8; 512]);
    crate::common::reseal::seal_header(&img, newest);
    assert_eq!(best_copy(&img), newest, "the resealed header is still the newest valid copy");

    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("SROOT_MISSING"), "{out}");
    assert!(out.contains("HDR_TREE_DAMAGED") && out.contains(&format!("copy #{older}")), "{out}");

    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "after the rollback: {out}");
    let data = edit_ok(&[img.spec(), "cat", "/dir/data.bin"]).stdout;
    assert_eq!(data.len(), 100_000);
}

/// The freemap blocks header copy `copy` reaches (offsets).
fn freemap_blocks(img: &Image, copy: usize) -> std::collections::BTreeSet<u64> {
    use hammer2::device::{Access, Device};
    use hammer2::read::walk::{walk, Root, WalkOptions};
    use hammer2::{CopyChoice, Hammer2};
    let fs =
        Hammer2::open(Device::open(img.spec(), Access::ReadOnly).unwrap(), CopyChoice::Index(copy)).unwrap();
    let mut out = std::collections::BTreeSet::new();
    walk(&fs, Root::Freemap, WalkOptions::default(), &mut |v| {
        if let Some((off, _)) = v.extent {
            out.insert(off);
        }
    })
    .unwrap();
    out
}

/// An older header copy whose freemap fails its check (a block only it
/// reaches damaged): the copy in use is sound, but DragonFly's fsck, which
/// walks every copy's freemap, stops on it. fsck reports it
/// (`HDR_COPY_FREEMAP`), `-p` rewrites that copy from the best one.
fn older_copy_freemap_scenario() {
    let img = Image::new("small-iscsi");
    let older = best_copy(&img);
    edit_ok(&[img.spec(), "mkdir", "/newer"]);
    let newest = best_copy(&img);
    let current = freemap_blocks(&img, newest);
    let only_older = freemap_blocks(&img, older).into_iter().find(|off| !current.contains(off));
    let at = only_older.expect("a freemap block only the older copy reaches") + 0x40;
    let byte = img.read(at, 1)[0];
    img.write(at, &[byte ^ 0x5a]);

    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("HDR_COPY_FREEMAP") && out.contains(&format!("copy #{older}")), "{out}");
    let (code, out) = fsck_bin(&["-p", img.spec()]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "after -p: {out}");
    // Nothing of the tree in use changed.
    assert!(newer_exists(&img));
    assert_eq!(edit_ok(&[img.spec(), "cat", "/dir/data.bin"]).stdout.len(), 100_000);
    crate::common::maint::oracle_fsck(img.spec());
}

#[test]
fn an_older_copys_damaged_freemap_is_rewritten_from_the_best_copy() {
    oracle::without(older_copy_freemap_scenario);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn an_older_copys_damaged_freemap_is_rewritten_from_the_best_copy_with_reference_tools() {
    let _ = NEEDS;
    older_copy_freemap_scenario();
}
