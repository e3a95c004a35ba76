//! `hammer2_edit put [-r]` end to end: the editor's command on top of the
//! import path newfs --populate uses, inside scripts with other commands.

use crate::common::editor::{edit, edit_ok, fresh_image, text};
use crate::common::hosttree::{both_fscks_clean, compare_with_image, varied_in_tempdir};
use crate::common::oracle::{makefs_mounts_and_bulkfrees, makefs_snapshots};
// Contents, not layout: an aborted import's blocks are put back as zeros
// or holes, which may not match the file's earlier extents page for page.
use crate::common::digest::content_sha256 as sha256;

fn fresh(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    fresh_image(dir, "put.img")
}

#[test]
fn put_r_copies_a_tree_into_an_existing_directory() {
    crate::common::oracle::without(put_r_copies_a_tree_into_an_existing_directory_scenario);
}

/// [`put_r_copies_a_tree_into_an_existing_directory`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn put_r_copies_a_tree_into_an_existing_directory_with_reference_tools() {
    put_r_copies_a_tree_into_an_existing_directory_scenario();
}

fn put_r_copies_a_tree_into_an_existing_directory_scenario() {
    let (dir, host) = varied_in_tempdir();
    let (img, spec) = fresh(dir.path());
    let h = host.to_str().unwrap();
    // Into an existing directory: it receives the tree under its own name,
    // as cp -r does; later commands of the script see it.
    let script = format!("mkdir -p /srv; put -r {h} /srv/; mv /srv/tree /srv/copy; put -r {h} /second");
    let out = edit_ok(&[&spec, "-c", &script]);
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    compare_with_image(&host, &spec, None, "/srv/copy");
    compare_with_image(&host, &spec, None, "/second");
    both_fscks_clean(&spec);
    makefs_snapshots(&img, "after-put");
    makefs_mounts_and_bulkfrees(&img);
    both_fscks_clean(&spec);
}

#[test]
fn put_refusals_and_dry_runs_leave_the_image_alone() {
    crate::common::oracle::without(put_refusals_and_dry_runs_leave_the_image_alone_scenario);
}

/// [`put_refusals_and_dry_runs_leave_the_image_alone`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn put_refusals_and_dry_runs_leave_the_image_alone_with_reference_tools() {
    put_refusals_and_dry_runs_leave_the_image_alone_scenario();
}

fn put_refusals_and_dry_runs_leave_the_image_alone_scenario() {
    let (dir, host) = varied_in_tempdir();
    let (img, spec) = fresh(dir.path());
    let h = host.to_str().unwrap();
    let before = sha256(&img);
    let out = edit(&[&spec, "put", h, "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a directory (put -r copies trees)"), "{}", text(&out.stderr));
    // A dry run reports the copy and writes nothing.
    let out = edit_ok(&["-n", &spec, "put", "-r", h, "/x"]);
    assert!(text(&out.stdout).contains("would copy tree"), "{}", text(&out.stdout));
    // A script that fails after the copy commits nothing.
    let out = edit(&[&spec, "-c", &format!("put -r {h} /x; rmdir /x")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(sha256(&img), before, "byte-identical after a dry run and an aborted script");
    // The same copy for real, then a second one onto the same name fails.
    edit_ok(&[&spec, "put", "-r", h, "/x"]);
    compare_with_image(&host, &spec, None, "/x");
    // Again: /x is a directory now, so the tree lands in /x/tree; a third
    // time that name exists and nothing is written.
    edit_ok(&[&spec, "put", "-r", h, "/x"]);
    compare_with_image(&host, &spec, None, "/x/tree");
    let after = sha256(&img);
    let out = edit(&[&spec, "put", "-r", h, "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    assert_eq!(sha256(&img), after);
    both_fscks_clean(&spec);
}
