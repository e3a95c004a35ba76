//! hammer2_edit's write commands one by one (mv, ln, ln -s, chmod, chown,
//! touch, truncate, write, mknod, mkfifo, rm -r), its scripting (-c, -f,
//! --keep-going, commit, --dry-run), and a seeded scenario of mixed
//! commands run both on an image and on a host directory, compared with
//! `get /`. Every image is checked by our fsck, the reference
//! fsck_hammer2 and makefs (the kernel's code) reading and writing it.

use crate::common::digest::sparse_sha256;
use crate::common::editor::{edit, edit_ok, fresh_image, text};
use crate::common::oracle::{makefs_mounts_and_bulkfrees, makefs_read, makefs_snapshots, reference_fsck};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `script` (';' or newlines between commands) with -c.
fn script_ok(spec: &str, script: &str) -> Output {
    edit_ok(&["-c", script, spec])
}

fn scratch(dir: &Path) -> (PathBuf, String) {
    scratch_named("small-iscsi", dir)
}

fn scratch_named(name: &str, dir: &Path) -> (PathBuf, String) {
    let img = crate::common::scratch_copy(name, dir);
    let spec = img.to_str().unwrap().to_string();
    (img, spec)
}

fn cat(spec: &str, path: &str) -> Vec<u8> {
    edit_ok(&[spec, "cat", path]).stdout
}

/// A field of `stat`'s text output.
fn stat(spec: &str, path: &str, field: &str) -> String {
    let out = text(&edit_ok(&[spec, "stat", path]).stdout);
    out.lines()
        .find_map(|l| l.strip_prefix(field).filter(|r| r.starts_with(' ')).map(|r| r.trim().to_string()))
        .unwrap_or_else(|| panic!("no {field} in stat {path}:\n{out}"))
}

fn exists(spec: &str, path: &str) -> bool {
    edit(&[spec, "stat", path]).status.success()
}

fn mirror_tid(spec: &str) -> u64 {
    hammer2::Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get()
}

/// Our fsck and the reference one find the image clean.
fn clean(spec: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["-n", spec]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "our fsck:\n{}{}", text(&out.stdout), text(&out.stderr));
    if crate::common::oracle::wanted() {
        let (ok, log) = reference_fsck(spec);
        assert!(ok, "reference fsck_hammer2 rejects the image:\n{log}");
    }
}

/// makefs (DragonFly's kernel code) mounts the image, writes to it (a
/// snapshot) and flushes without a recovery, then bulkfrees it finding
/// no block in use marked free; the result is still clean.
fn kernel_keeps_writing(img: &Path, spec: &str) {
    makefs_snapshots(img, "after-edit");
    makefs_mounts_and_bulkfrees(img);
    clean(spec);
}

fn host_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn mv_renames_across_directories_and_replaces_as_rename() {
    crate::common::oracle::without(mv_renames_across_directories_and_replaces_as_rename_scenario);
}

/// [`mv_renames_across_directories_and_replaces_as_rename`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn mv_renames_across_directories_and_replaces_as_rename_with_reference_tools() {
    mv_renames_across_directories_and_replaces_as_rename_scenario();
}

fn mv_renames_across_directories_and_replaces_as_rename_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let a = host_file(dir.path(), "a", b"file a\n");
    let b = host_file(dir.path(), "b", &crate::common::content(1, 150_000));
    script_ok(
        &spec,
        &format!(
            "mkdir /x /y /x/sub /y/empty /y/full; put {a} /x/f; put {b} /y/g; put {a} /y/full/inside; put {a} /x/sub/kept"
        ),
    );
    let tid = mirror_tid(&spec);
    // A file replaces a file, across directories.
    script_ok(&spec, "mv /x/f /y/g");
    assert!(!exists(&spec, "/x/f"));
    assert_eq!(cat(&spec, "/y/g"), b"file a\n");
    assert_eq!(mirror_tid(&spec), tid + 1);
    // Into an existing directory (mv(1)), and a directory replacing an empty one (-T).
    script_ok(&spec, "mv /y/g /x; mv -T /x/sub /y/empty");
    assert_eq!(cat(&spec, "/x/g"), b"file a\n");
    assert_eq!(cat(&spec, "/y/empty/kept"), b"file a\n");
    assert!(!exists(&spec, "/x/sub"));
    // rename(2)'s refusals, each leaving the image as it was.
    let before = sparse_sha256(&img);
    for (cmd, why) in [
        ("mv -T /y/empty /y/full", "directory not empty"),
        ("mv -T /y/full /x/g", "not a directory"),
        ("mv -T /x/g /y/full", "is a directory"),
        ("mv /x /x/deeper", "into itself"),
        ("mv -T /y /y/full/z", "into itself"),
        ("mv /missing /x", "no such file"),
        ("mv / /x/root", "PFS root"),
    ] {
        let out = edit(&["-c", cmd, &spec]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(text(&out.stderr).contains(why), "{cmd}: {}", text(&out.stderr));
        assert_eq!(sparse_sha256(&img), before, "{cmd}: byte-identical");
    }
    // A directory moves with its contents; the old name is free again.
    script_ok(&spec, "mv /y/full /x/moved; mkdir /y/full");
    assert_eq!(cat(&spec, "/x/moved/inside"), b"file a\n");
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/x/moved/inside"), b"file a\n");
    }
    kernel_keeps_writing(&img, &spec);
}

#[test]
fn ln_makes_hard_links_that_share_one_inode() {
    crate::common::oracle::without(ln_makes_hard_links_that_share_one_inode_scenario);
}

/// [`ln_makes_hard_links_that_share_one_inode`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn ln_makes_hard_links_that_share_one_inode_with_reference_tools() {
    ln_makes_hard_links_that_share_one_inode_scenario();
}

fn ln_makes_hard_links_that_share_one_inode_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let big = crate::common::content(2, 100_000);
    let h = host_file(dir.path(), "h", &big);
    script_ok(&spec, &format!("mkdir /d; put {h} /f; ln /f /d/g; ln /f /d"));
    assert_eq!(stat(&spec, "/f", "nlinks"), "3");
    assert_eq!(stat(&spec, "/d/g", "inum"), stat(&spec, "/f", "inum"));
    assert_eq!(stat(&spec, "/d/f", "inum"), stat(&spec, "/f", "inum"));
    // A write through one name shows through the others.
    let patch = host_file(dir.path(), "p", b"PATCH");
    script_ok(&spec, &format!("write /d/g 10 {patch}"));
    let mut want = big.clone();
    want[10..15].copy_from_slice(b"PATCH");
    assert_eq!(cat(&spec, "/f"), want);
    // Removing names counts down; the data lives while one is left.
    script_ok(&spec, "rm /f /d/f");
    assert_eq!(stat(&spec, "/d/g", "nlinks"), "1");
    assert_eq!(cat(&spec, "/d/g"), want);
    let out = edit(&["-c", "ln /d /d2", &spec]);
    assert!(text(&out.stderr).contains("hard links to directories are not allowed"), "{}", text(&out.stderr));
    let out = edit(&["-c", "ln /d/g /hello.txt", &spec]);
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/d/g"), want);
    }
}

#[test]
fn ln_s_makes_symbolic_links_short_and_long() {
    crate::common::oracle::without(ln_s_makes_symbolic_links_short_and_long_scenario);
}

/// [`ln_s_makes_symbolic_links_short_and_long`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn ln_s_makes_symbolic_links_short_and_long_with_reference_tools() {
    ln_s_makes_symbolic_links_short_and_long_scenario();
}

fn ln_s_makes_symbolic_links_short_and_long_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, spec) = scratch(dir.path());
    let long = format!("../{}", "t".repeat(700));
    script_ok(&spec, &format!("ln -s hello.txt /short; mkdir /d; ln -s {long} /d/long; ln -s /abs/x /d"));
    let ls = text(&edit_ok(&[&spec, "ls", "-l", "/"]).stdout);
    assert!(ls.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("short -> hello.txt")), "{ls}");
    assert_eq!(stat(&spec, "/d/long", "size"), "703");
    assert_eq!(stat(&spec, "/d/x", "type"), "softlink");
    let out = tempfile::tempdir().unwrap();
    edit_ok(&[&spec, "get", "/", out.path().to_str().unwrap()]);
    assert_eq!(std::fs::read_link(out.path().join("d/long")).unwrap(), Path::new(&long));
    assert_eq!(std::fs::read_link(out.path().join("d/x")).unwrap(), Path::new("/abs/x"));
    assert_eq!(std::fs::read_link(out.path().join("short")).unwrap(), Path::new("hello.txt"));
    clean(&spec);
}

#[test]
fn chmod_chown_touch_set_what_they_say() {
    crate::common::oracle::without(chmod_chown_touch_set_what_they_say_scenario);
}

/// [`chmod_chown_touch_set_what_they_say`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn chmod_chown_touch_set_what_they_say_with_reference_tools() {
    chmod_chown_touch_set_what_they_say_scenario();
}

fn chmod_chown_touch_set_what_they_say_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    script_ok(
        &spec,
        "chmod 4750 /hello.txt; chown 1000:2000 /hello.txt; chown :7 /dir; chmod 1777 /dir; \
         touch -d 2001-09-09T01:46:40 /hello.txt; touch -a -d @1234567890.5 /dir; touch /new; touch -c /absent",
    );
    assert_eq!(stat(&spec, "/hello.txt", "mode"), "4750");
    assert!(stat(&spec, "/hello.txt", "uid").starts_with("1000 "));
    assert!(stat(&spec, "/hello.txt", "gid").starts_with("2000 "));
    assert!(stat(&spec, "/dir", "gid").starts_with("7 "));
    assert!(stat(&spec, "/dir", "uid").starts_with("0 "), "chown :GID keeps the owner");
    assert_eq!(stat(&spec, "/dir", "mode"), "1777");
    assert_eq!(stat(&spec, "/hello.txt", "mtime"), "2001-09-09T01:46:40.000000Z");
    assert_eq!(stat(&spec, "/dir", "atime"), "2009-02-13T23:31:30.500000Z");
    assert_ne!(stat(&spec, "/dir", "mtime"), "2009-02-13T23:31:30.500000Z", "-a leaves mtime");
    assert_eq!(stat(&spec, "/new", "size"), "0");
    assert!(!exists(&spec, "/absent"), "touch -c creates nothing");
    let ls = text(&edit_ok(&[&spec, "ls", "-l", "/"]).stdout);
    assert!(
        ls.lines().any(|l| l.starts_with("-rwsr-x---   1  1000  2000") && l.ends_with(" hello.txt")),
        "{ls}"
    );
    assert_eq!(cat(&spec, "/hello.txt"), b"hello, hammer2\n", "content untouched");
    for (cmd, code) in [("chmod 8 /x", 2), ("chown root /x", 2), ("chmod 644 /missing", 1)] {
        assert_eq!(edit(&["-c", cmd, &spec]).status.code(), Some(code), "{cmd}");
    }
    clean(&spec);
    kernel_keeps_writing(&img, &spec);
}

#[test]
fn truncate_grows_with_holes_and_shrinks() {
    crate::common::oracle::without(truncate_grows_with_holes_and_shrinks_scenario);
}

/// [`truncate_grows_with_holes_and_shrinks`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn truncate_grows_with_holes_and_shrinks_with_reference_tools() {
    truncate_grows_with_holes_and_shrinks_scenario();
}

fn truncate_grows_with_holes_and_shrinks_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let data = crate::common::content(5, 200_000);
    let h = host_file(dir.path(), "h", &data);
    script_ok(&spec, &format!("put {h} /f; put {h} /g; truncate -s 70000 /f"));
    assert_eq!(cat(&spec, "/f"), &data[..70_000]);
    script_ok(&spec, "truncate -s 1M /f");
    let mut want = data[..70_000].to_vec();
    want.resize(1 << 20, 0);
    assert_eq!(cat(&spec, "/f"), want);
    // A hole stores nothing: the file's blocks are the 2 of its first 70000 bytes.
    let out = text(&edit_ok(&[&spec, "stat", "/f"]).stdout);
    assert!(out.contains("size             1048576"), "{out}");
    // Shrinking inside a block zeroes the tail; growing again shows zeros there.
    script_ok(
        &spec,
        "truncate -s 100 /g; truncate -s 5000 /g; truncate -s 0 /hello.txt; truncate -s 600 /hello.txt",
    );
    let mut g = data[..100].to_vec();
    g.resize(5000, 0);
    assert_eq!(cat(&spec, "/g"), g);
    assert_eq!(cat(&spec, "/hello.txt"), vec![0u8; 600], "embedded data grows out of the inode as zeros");
    let out = edit(&["-c", "truncate -s 5 /dir", &spec]);
    assert!(text(&out.stderr).contains("not a regular file"));
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/f"), want);
    }
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/g"), g);
    }
}

#[test]
fn write_patches_bytes_from_a_file_or_stdin() {
    crate::common::oracle::without(write_patches_bytes_from_a_file_or_stdin_scenario);
}

/// [`write_patches_bytes_from_a_file_or_stdin`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn write_patches_bytes_from_a_file_or_stdin_with_reference_tools() {
    write_patches_bytes_from_a_file_or_stdin_scenario();
}

fn write_patches_bytes_from_a_file_or_stdin_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let p = host_file(dir.path(), "p", b"XYZ");
    script_ok(&spec, &format!("write /hello.txt 0 {p}; write /hello.txt 100000 {p}"));
    let mut want = b"XYZlo, hammer2\n".to_vec();
    want.resize(100_000, 0);
    want.extend_from_slice(b"XYZ");
    assert_eq!(cat(&spec, "/hello.txt"), want);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hammer2_edit"))
        .args([spec.as_str(), "write", "/hello.txt", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    want[1..11].copy_from_slice(b"from stdin");
    assert_eq!(cat(&spec, "/hello.txt"), want);
    let out = edit(&["-c", &format!("write /dir 0 {p}"), &spec]);
    assert!(text(&out.stderr).contains("not a regular file"));
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/hello.txt"), want);
    }
}

#[test]
fn mknod_and_mkfifo_make_special_files() {
    crate::common::oracle::without(mknod_and_mkfifo_make_special_files_scenario);
}

/// [`mknod_and_mkfifo_make_special_files`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn mknod_and_mkfifo_make_special_files_with_reference_tools() {
    mknod_and_mkfifo_make_special_files_scenario();
}

fn mknod_and_mkfifo_make_special_files_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    script_ok(
        &spec,
        "mknod /tty c 5 1; mknod -m 600 /sda b 8 0; mknod /p p; mknod /sock s; mkfifo -m 640 /f1 /f2",
    );
    assert_eq!(stat(&spec, "/tty", "type"), "cdev");
    assert_eq!(stat(&spec, "/tty", "rmajor / rminor"), "5 / 1");
    assert_eq!(stat(&spec, "/sda", "type"), "bdev");
    assert_eq!(stat(&spec, "/sda", "mode"), "0600");
    assert_eq!(stat(&spec, "/sda", "rmajor / rminor"), "8 / 0");
    assert_eq!(stat(&spec, "/p", "type"), "fifo");
    assert_eq!(stat(&spec, "/sock", "type"), "socket");
    assert_eq!(stat(&spec, "/f2", "mode"), "0640");
    let ls = text(&edit_ok(&[&spec, "ls", "-l", "/"]).stdout);
    assert!(
        ls.lines().any(|l| l.starts_with("crw-r--r--") && l.contains(" 5, 1 ") && l.ends_with(" tty")),
        "{ls}"
    );
    for (c, name) in [('c', "tty"), ('b', "sda"), ('p', "p"), ('s', "sock")] {
        assert!(ls.lines().any(|l| l.starts_with(c) && l.ends_with(&format!(" {name}"))), "{ls}");
    }
    assert_eq!(edit(&["-c", "mknod /x c 5", &spec]).status.code(), Some(1));
    assert_eq!(edit(&["-c", "mknod /x p 1 2", &spec]).status.code(), Some(1));
    clean(&spec);
    kernel_keeps_writing(&img, &spec);
}

#[test]
fn rm_r_removes_trees_and_rm_f_ignores_missing() {
    crate::common::oracle::without(rm_r_removes_trees_and_rm_f_ignores_missing_scenario);
}

/// [`rm_r_removes_trees_and_rm_f_ignores_missing`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn rm_r_removes_trees_and_rm_f_ignores_missing_with_reference_tools() {
    rm_r_removes_trees_and_rm_f_ignores_missing_scenario();
}

fn rm_r_removes_trees_and_rm_f_ignores_missing_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let h = host_file(dir.path(), "h", &crate::common::content(9, 80_000));
    let mut script = String::from("mkdir -p /t/a/b/c; ");
    for i in 0..40 {
        script.push_str(&format!("put {h} /t/a/f{i}; "));
    }
    script.push_str("ln -s x /t/a/b/c/l; mkfifo /t/a/b/q; ln /t/a/f1 /kept");
    script_ok(&spec, &script);
    let out = script_ok(&spec, "rm -r /t /dir; rm -f /missing");
    assert!(!exists(&spec, "/t") && !exists(&spec, "/dir"));
    assert_eq!(stat(&spec, "/kept", "nlinks"), "1");
    assert_eq!(text(&edit_ok(&[&spec, "ls", "/"]).stdout), "hello.txt\nkept\n");
    assert!(text(&out.stdout).starts_with("committed"), "{}", text(&out.stdout));
    let out = edit(&["-c", "rm /dir2", &spec]);
    assert_eq!(out.status.code(), Some(1));
    clean(&spec);
    kernel_keeps_writing(&img, &spec);
}

#[test]
fn names_up_to_255_bytes_and_many_in_one_directory() {
    crate::common::oracle::without(names_up_to_255_bytes_and_many_in_one_directory_scenario);
}

/// [`names_up_to_255_bytes_and_many_in_one_directory`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn names_up_to_255_bytes_and_many_in_one_directory_with_reference_tools() {
    names_up_to_255_bytes_and_many_in_one_directory_scenario();
}

fn names_up_to_255_bytes_and_many_in_one_directory_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let h = host_file(dir.path(), "h", b"x");
    let long = "n".repeat(255);
    let mut script = format!("mkdir /m; put {h} /m/{long}; ln -s {long} /m/s{}", "y".repeat(200));
    // Names whose hashes share their high bits still get their own keys.
    for i in 0..300 {
        script.push_str(&format!("; ln /m/{long} /m/link-{i:04}"));
    }
    script_ok(&spec, &script);
    assert_eq!(stat(&spec, &format!("/m/{long}"), "nlinks"), "301");
    assert_eq!(text(&edit_ok(&[&spec, "ls", "/m"]).stdout).lines().count(), 302);
    let out = edit(&["-c", &format!("mkdir /m/{}", "z".repeat(256)), &spec]);
    assert!(text(&out.stderr).contains("longer than 255 bytes"), "{}", text(&out.stderr));
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, &format!("/m/{long}")), b"x");
    }
}

/// Two names with the same directory hash: the high word sums the CRCs
/// of the name's pieces (order-free), so reordering pieces and changing
/// separators keeps it, and among a few hundred such variants two share
/// the 16 bits the whole name's CRC adds (found here, not hard-coded).
fn colliding_names() -> (String, String) {
    let pieces = ["alpha", "beta", "gamma", "delta"];
    let mut seen = std::collections::HashMap::new();
    let seps = [".", "-", "_", "~"];
    for perm in 0..24usize {
        let mut rest: Vec<&str> = pieces.to_vec();
        let mut order = Vec::new();
        let mut p = perm;
        for k in (1..=4).rev() {
            order.push(rest.remove(p % k));
            p /= k;
        }
        for sep in 0..64usize {
            let name = format!(
                "{}{}{}{}{}{}{}",
                order[0],
                seps[sep & 3],
                order[1],
                seps[(sep >> 2) & 3],
                order[2],
                seps[sep >> 4],
                order[3]
            );
            let key = hammer2::format::dirhash::dirhash(name.as_bytes());
            if let Some(other) = seen.insert(key, name.clone()) {
                return (other, name);
            }
        }
    }
    panic!("no two of 1536 variants share a directory hash");
}

#[test]
fn names_with_the_same_hash_get_their_own_keys() {
    crate::common::oracle::without(names_with_the_same_hash_get_their_own_keys_scenario);
}

/// [`names_with_the_same_hash_get_their_own_keys`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn names_with_the_same_hash_get_their_own_keys_with_reference_tools() {
    names_with_the_same_hash_get_their_own_keys_scenario();
}

fn names_with_the_same_hash_get_their_own_keys_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let (a, b) = colliding_names();
    assert_eq!(
        hammer2::format::dirhash::dirhash(a.as_bytes()),
        hammer2::format::dirhash::dirhash(b.as_bytes())
    );
    let (ha, hb) = (host_file(dir.path(), "a", b"first\n"), host_file(dir.path(), "b", b"second\n"));
    script_ok(&spec, &format!("mkdir /c; put {ha} /c/{a}; put {hb} /c/{b}"));
    assert_eq!(cat(&spec, &format!("/c/{a}")), b"first\n");
    assert_eq!(cat(&spec, &format!("/c/{b}")), b"second\n");
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, &format!("/c/{b}")), b"second\n");
    }
    // Removing the first leaves the second reachable under its own key;
    // a new name with the hash then takes the free iteration again.
    script_ok(&spec, &format!("rm /c/{a}; mv /c/{b} /c/{a}; put {hb} /c/{b}"));
    assert_eq!(cat(&spec, &format!("/c/{a}")), b"second\n");
    assert_eq!(cat(&spec, &format!("/c/{b}")), b"second\n");
    let mut names: Vec<String> =
        text(&edit_ok(&[&spec, "ls", "/c"]).stdout).lines().map(String::from).collect();
    names.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(names, want);
    clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, &format!("/c/{a}")), b"second\n");
    }
}

#[test]
fn scripts_quote_continue_commit_and_dry_run() {
    crate::common::oracle::without(scripts_quote_continue_commit_and_dry_run_scenario);
}

/// [`scripts_quote_continue_commit_and_dry_run`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn scripts_quote_continue_commit_and_dry_run_with_reference_tools() {
    scripts_quote_continue_commit_and_dry_run_scenario();
}

fn scripts_quote_continue_commit_and_dry_run_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let tid = mirror_tid(&spec);
    let h = host_file(dir.path(), "h", &crate::common::content(4, 90_000));
    // Quoting, comments, ';' inside quotes, -v echoing.
    let out = edit_ok(&[
        "-v",
        "-c",
        &format!("mkdir '/a b' # a comment; rm /hello.txt\nput {h} \"/a b/x;y\""),
        &spec,
    ]);
    assert!(text(&out.stderr).contains("hammer2_edit: mkdir '/a b'\n"), "{}", text(&out.stderr));
    assert!(exists(&spec, "/hello.txt"), "the comment ran nothing");
    assert_eq!(cat(&spec, "/a b/x;y").len(), 90_000);
    assert_eq!(mirror_tid(&spec), tid + 1);
    // --keep-going: the failures are undone and counted, the rest commits.
    let out = edit(&["--keep-going", "-c", "mkdir /k1; rm /nope; mkdir /k2 /hello.txt; mkdir /k3", &spec]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("2 of 4 commands failed"), "{}", text(&out.stderr));
    assert!(exists(&spec, "/k1") && exists(&spec, "/k3"));
    assert!(!exists(&spec, "/k2"), "a failed command leaves no part of its change");
    assert_eq!(mirror_tid(&spec), tid + 2);
    clean(&spec);
    // `commit` inside a script: two transactions.
    let out = script_ok(&spec, "mkdir /c1; commit; mkdir /c2");
    assert_eq!(text(&out.stdout).matches("committed transaction").count(), 2);
    assert_eq!(mirror_tid(&spec), tid + 4);
    // Reads see earlier changes of the same script.
    let out = script_ok(&spec, &format!("put {h} /r; truncate -s 10 /r; cat /r; ls /c1"));
    assert!(text(&out.stdout).starts_with(&text(&crate::common::content(4, 10))), "{}", text(&out.stdout));
    // A dry run and an aborted script leave the image byte-identical.
    let before = sparse_sha256(&img);
    let big = host_file(dir.path(), "big", &crate::common::content(6, 3 << 20));
    let heavy = format!(
        "put {big} /big; write /r 5 {big}; truncate -s 1 /r; mv /c1 /c3; chmod 700 /c3; rm -r /a\\ b; ln /big /big2"
    );
    let out = edit_ok(&["-n", "-c", &heavy, &spec]);
    assert!(text(&out.stdout).contains("would create file /big"), "{}", text(&out.stdout));
    assert_eq!(sparse_sha256(&img), before, "dry run: byte-identical");
    let out = edit(&["-c", &format!("{heavy}; rm /nothing-here; mkdir /after"), &spec]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing was written"), "{}", text(&out.stderr));
    assert_eq!(sparse_sha256(&img), before, "aborted: byte-identical");
    assert_eq!(mirror_tid(&spec), tid + 5);
    clean(&spec);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a String {
        &v[self.below(v.len())]
    }
}

/// The model of the tree: files and directories (paths from the root).
#[derive(Default)]
struct Model {
    files: Vec<String>,
    dirs: Vec<String>,
    links: Vec<String>,
}

impl Model {
    fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{dir}/");
        for v in [&mut self.files, &mut self.dirs, &mut self.links] {
            v.retain(|p| p != dir && !p.starts_with(&prefix));
        }
    }
    fn rename_below(&mut self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        for v in [&mut self.files, &mut self.dirs, &mut self.links] {
            for p in v.iter_mut() {
                if p == from {
                    *p = to.to_string();
                } else if let Some(rest) = p.strip_prefix(&prefix) {
                    *p = format!("{to}/{rest}");
                }
            }
        }
    }
}

/// Applies `n` random commands to the host tree at `root` and returns the
/// same commands as a hammer2_edit script.
fn scenario(seed: u64, n: usize, root: &Path, hostfiles: &Path) -> String {
    use std::os::unix::fs::FileExt;
    let mut rng = Rng(seed);
    let mut m = Model { dirs: vec![String::new()], ..Model::default() };
    let mut script = String::new();
    let host = |p: &str| root.join(p.trim_start_matches('/'));
    let mut count = 0;
    let mut fresh = 0;
    while count < n {
        fresh += 1;
        let name = format!("n{fresh}");
        let parent = rng.pick(&m.dirs).clone();
        let new = format!("{parent}/{name}");
        let line = match rng.below(12) {
            0 | 1 => {
                std::fs::create_dir(host(&new)).unwrap();
                m.dirs.push(new.clone());
                format!("mkdir '{new}'")
            }
            2 | 3 => {
                let len = [0, 7, 512, 513, 70_000, 200_000][rng.below(6)];
                let src = hostfiles.join(format!("src{fresh}"));
                std::fs::write(&src, crate::common::content(seed ^ fresh, len)).unwrap();
                std::fs::copy(&src, host(&new)).unwrap();
                std::fs::set_permissions(host(&new), std::fs::Permissions::from_mode(0o640)).unwrap();
                std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
                m.files.push(new.clone());
                format!("put {} '{new}'", src.display())
            }
            4 if !m.files.is_empty() => {
                let f = rng.pick(&m.files).clone();
                let off = [0u64, 3, 511, 65_530, 150_000][rng.below(5)];
                let len = [1usize, 100, 70_000][rng.below(3)];
                let src = hostfiles.join(format!("w{fresh}"));
                let bytes = crate::common::content(seed ^ (fresh << 8), len);
                std::fs::write(&src, &bytes).unwrap();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(host(&f))
                    .unwrap()
                    .write_all_at(&bytes, off)
                    .unwrap();
                format!("write '{f}' {off} {}", src.display())
            }
            5 if !m.files.is_empty() => {
                let f = rng.pick(&m.files).clone();
                let size = [0u64, 100, 512, 600, 65_536, 100_000, 300_000][rng.below(7)];
                std::fs::OpenOptions::new().write(true).open(host(&f)).unwrap().set_len(size).unwrap();
                format!("truncate -s {size} '{f}'")
            }
            6 if !m.files.is_empty() => {
                let f = rng.pick(&m.files).clone();
                std::fs::hard_link(host(&f), host(&new)).unwrap();
                m.files.push(new.clone());
                format!("ln '{f}' '{new}'")
            }
            7 => {
                let target = format!("target-{}", rng.below(1000));
                std::os::unix::fs::symlink(&target, host(&new)).unwrap();
                m.links.push(new.clone());
                format!("ln -s {target} '{new}'")
            }
            8 if !m.files.is_empty() => {
                let f = rng.pick(&m.files).clone();
                let mode = [0o600, 0o644, 0o755, 0o700][rng.below(4)];
                std::fs::set_permissions(host(&f), std::fs::Permissions::from_mode(mode)).unwrap();
                format!("chmod {mode:o} '{f}'")
            }
            9 if !m.files.is_empty() || !m.links.is_empty() => {
                // Remove a file or a symlink.
                let all: Vec<String> = m.files.iter().chain(&m.links).cloned().collect();
                let f = rng.pick(&all).clone();
                std::fs::remove_file(host(&f)).unwrap();
                m.files.retain(|p| *p != f);
                m.links.retain(|p| *p != f);
                format!("rm '{f}'")
            }
            10 if m.dirs.len() > 2 => {
                // mv a file (replacing another file sometimes) or a directory.
                if !m.files.is_empty() && rng.below(2) == 0 {
                    let f = rng.pick(&m.files).clone();
                    let to = if rng.below(3) == 0 { rng.pick(&m.files).clone() } else { new.clone() };
                    if to == f {
                        continue;
                    }
                    std::fs::rename(host(&f), host(&to)).unwrap();
                    m.files.retain(|p| *p != to);
                    m.rename_below(&f, &to);
                    format!("mv -T '{f}' '{to}'")
                } else {
                    let d = m.dirs[1 + rng.below(m.dirs.len() - 1)].clone();
                    if new.starts_with(&format!("{d}/")) {
                        continue;
                    }
                    std::fs::rename(host(&d), host(&new)).unwrap();
                    m.rename_below(&d, &new);
                    format!("mv '{d}' '{new}'")
                }
            }
            11 if m.dirs.len() > 4 => {
                let d = m.dirs[1 + rng.below(m.dirs.len() - 1)].clone();
                std::fs::remove_dir_all(host(&d)).unwrap();
                m.remove_below(&d);
                format!("rm -r '{d}'")
            }
            _ => continue,
        };
        script.push_str(&line);
        script.push('\n');
        count += 1;
    }
    script
}

/// Compares two host trees: names, types, modes, sizes, contents,
/// symlink targets and link counts.
fn compare_trees(want: &Path, got: &Path) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (w, g) = (want.join(&rel), got.join(&rel));
        let names = |d: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&w), names(&g), "entries of /{}", rel.display());
        for name in names(&w) {
            let r = rel.join(&name);
            let (wm, gm) = (
                std::fs::symlink_metadata(want.join(&r)).unwrap(),
                std::fs::symlink_metadata(got.join(&r)).unwrap(),
            );
            assert_eq!(wm.file_type(), gm.file_type(), "type of /{}", r.display());
            if wm.is_dir() {
                stack.push(r);
                continue;
            }
            if wm.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(want.join(&r)).unwrap(),
                    std::fs::read_link(got.join(&r)).unwrap()
                );
                continue;
            }
            assert_eq!(wm.len(), gm.len(), "size of /{}", r.display());
            assert_eq!(wm.nlink(), gm.nlink(), "links of /{}", r.display());
            assert_eq!(wm.mode() & 0o777, gm.mode() & 0o777, "mode of /{}", r.display());
            assert!(
                std::fs::read(want.join(&r)).unwrap() == std::fs::read(got.join(&r)).unwrap(),
                "content of /{}",
                r.display()
            );
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_hundred_mixed_commands_match_the_same_on_a_host_directory() {
    crate::common::oracle::without(a_hundred_mixed_commands_match_the_same_on_a_host_directory_scenario);
}

/// [`a_hundred_mixed_commands_match_the_same_on_a_host_directory`] with the
/// reference tools' checks too.
#[test]
#[ignore = "needs root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_hundred_mixed_commands_match_the_same_on_a_host_directory_with_reference_tools() {
    a_hundred_mixed_commands_match_the_same_on_a_host_directory_scenario();
}

fn a_hundred_mixed_commands_match_the_same_on_a_host_directory_scenario() {
    // Modes are compared as extracted, which keeps them exactly only as root.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root: it compares modes and owners as extracted");
    }
    // Two fresh images of our newfs, and a fixture written by makefs
    // (the kernel's code) whose existing tree the host copy starts from.
    for (seed, fixture) in [(0x5eed_0001u64, None), (0x5eed_0002, None), (0x5eed_0003, Some("small-iscsi"))] {
        let dir = tempfile::tempdir().unwrap();
        let (img, spec) = match fixture {
            Some(name) => scratch_named(name, dir.path()),
            None => fresh_image(dir.path(), "fresh.img"),
        };
        let host = dir.path().join("host");
        if fixture.is_some() {
            edit_ok(&[&spec, "get", "/", host.to_str().unwrap()]);
        } else {
            std::fs::create_dir(&host).unwrap();
        }
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        let script = scenario(seed, 100, &host, &files);
        let path = dir.path().join("script.txt");
        std::fs::write(&path, &script).unwrap();
        let out = edit(&["-f", path.to_str().unwrap(), &spec]);
        assert!(out.status.success(), "seed {seed:#x}:\n{script}\n{}", text(&out.stderr));
        let got = dir.path().join("got");
        edit_ok(&[&spec, "get", "/", got.to_str().unwrap()]);
        compare_trees(&host, &got);
        clean(&spec);
        // The kernel's code reads a file back the same and keeps writing.
        let some = script.lines().find_map(|l| l.strip_prefix("put ")).and_then(|l| l.split('\'').nth(1));
        if let Some(p) =
            some.filter(|p| host.join(p.trim_start_matches('/')).is_file() && crate::common::oracle::wanted())
        {
            assert_eq!(
                makefs_read(&img, None, p),
                std::fs::read(host.join(p.trim_start_matches('/'))).unwrap()
            );
        }
        kernel_keeps_writing(&img, &spec);
    }
}

/// `get` and `pfs-list` after uncommitted write commands of the same
/// script see those changes (a tree with a hole, a symlink, a hard link
/// and a long file; PFSs created and deleted), in a dry run too, which
/// leaves the image byte-identical.
#[test]
fn get_and_pfs_list_in_a_writing_script_see_its_changes() {
    crate::common::oracle::without(get_and_pfs_list_in_a_writing_script_see_its_changes_scenario);
}

/// [`get_and_pfs_list_in_a_writing_script_see_its_changes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn get_and_pfs_list_in_a_writing_script_see_its_changes_with_reference_tools() {
    get_and_pfs_list_in_a_writing_script_see_its_changes_scenario();
}

fn get_and_pfs_list_in_a_writing_script_see_its_changes_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch(dir.path());
    let small = crate::common::content(21, 70_000);
    let f = host_file(dir.path(), "f", &small);
    let big = host_file(dir.path(), "big", &crate::common::content(22, 300_000));
    let script = |out: &Path| {
        format!(
            "mkdir /a; put {f} /a/f; put {big} /a/big; truncate -s 1000000 /a/big; ln /a/f /a/f2; \
             ln -s ../hello.txt /a/l; mkdir /a/d; put {f} /a/d/g; get /a {o}; get /a/f {o}/single; \
             pfs-create XTRA; pfs-list; pfs-delete XTRA; pfs-create YTRA; pfs",
            o = out.display()
        )
    };
    let check = |out: &Path, stdout: &str| {
        let a = out.join("a");
        assert_eq!(std::fs::read(a.join("f")).unwrap(), small, "get /a sees /a/f");
        assert_eq!(std::fs::read(out.join("single/f")).unwrap(), small, "get /a/f");
        assert_eq!(std::fs::read(a.join("d/g")).unwrap(), small);
        let mut want = crate::common::content(22, 300_000);
        want.resize(1_000_000, 0);
        let b = std::fs::read(a.join("big")).unwrap();
        assert!(b == want, "the truncated-up file reads back with its zeros");
        let m = std::fs::metadata(a.join("big")).unwrap();
        assert!(m.blocks() * 512 < 1_000_000, "the hole stays a hole ({} blocks)", m.blocks());
        let (m1, m2) = (std::fs::metadata(a.join("f")).unwrap(), std::fs::metadata(a.join("f2")).unwrap());
        assert_eq!(m1.ino(), m2.ino(), "a hard link stays one");
        assert_eq!(std::fs::read_link(a.join("l")).unwrap(), Path::new("../hello.txt"));
        // The first listing has XTRA, the second YTRA but no XTRA.
        let (first, second) = stdout.split_at(stdout.rfind("LABEL").unwrap());
        assert!(first.lines().any(|l| l.starts_with("XTRA ")), "{stdout}");
        assert!(second.lines().any(|l| l.starts_with("YTRA ")), "{stdout}");
        assert!(!second.lines().any(|l| l.starts_with("XTRA ")), "{stdout}");
        assert!(second.lines().any(|l| l.starts_with("DATA ")), "{stdout}");
    };
    // A dry run: the same, and nothing written.
    let before = sparse_sha256(&img);
    let dry = dir.path().join("dry");
    let out = edit_ok(&["-n", "-c", &script(&dry), &spec]);
    assert!(!text(&out.stderr).contains("last committed"), "{}", text(&out.stderr));
    check(&dry, &text(&out.stdout));
    assert_eq!(sparse_sha256(&img), before, "dry run: byte-identical");
    // For real, one transaction.
    let tid = mirror_tid(&spec);
    let real = dir.path().join("real");
    let out = edit_ok(&["-c", &script(&real), &spec]);
    check(&real, &text(&out.stdout));
    assert_eq!(mirror_tid(&spec), tid + 1);
    // What was extracted before the commit is what the image holds after it.
    let after = dir.path().join("after");
    edit_ok(&[&spec, "get", "/a", after.to_str().unwrap()]);
    compare_trees(&after.join("a"), &real.join("a"));
    // Refusals as `get` outside a script: an existing target is kept.
    let out = edit(&["-c", &format!("mkdir /z; get /a {}", real.display()), &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    edit_ok(&["-c", &format!("mkdir /z; get --force /a {}", real.display()), &spec]);
    clean(&spec);
    kernel_keeps_writing(&img, &spec);
}

/// `pfs-list --json` (and `pfs --json`) lists what the table lists, for
/// scripts: the committed PFSs, and those a writing script created.
#[test]
fn pfs_list_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, spec) = fresh_image(dir.path(), "a.img");
    // The JSON array (a dry run's "would ..." lines and summary come around it).
    let rows = |out: &Output| -> Vec<serde_json::Value> {
        let all = text(&out.stdout);
        let json = &all[all.find("[\n").unwrap_or_else(|| panic!("no JSON array: {all}"))..];
        serde_json::Deserializer::from_str(json)
            .into_iter::<serde_json::Value>()
            .next()
            .unwrap_or_else(|| panic!("no JSON array: {all}"))
            .unwrap_or_else(|e| panic!("{e}: {all}"))
            .as_array()
            .unwrap()
            .clone()
    };
    let committed = rows(&edit_ok(&[&spec, "pfs-list", "--json"]));
    let mut labels: Vec<&str> = committed.iter().map(|r| r["label"].as_str().unwrap()).collect();
    labels.sort();
    assert_eq!(labels, ["DATA", "LOCAL"]);
    for r in &committed {
        assert_eq!(r["type"], "master", "{r}");
        assert_eq!(r["pfs_clid"].as_str().unwrap().len(), 36, "{r}");
    }
    // The table names the same PFSs.
    let table = text(&edit_ok(&[&spec, "pfs"]).stdout);
    assert!(labels.iter().all(|l| table.contains(l)), "{table}");
    // In a dry run that creates one, it is listed (and nothing is written).
    let dry = rows(&edit_ok(&["-n", "-c", "pfs-create NEW; pfs --json", &spec]));
    assert!(dry.iter().any(|r| r["label"] == "NEW"), "{dry:?}");
    assert_eq!(rows(&edit_ok(&[&spec, "pfs", "--json"])).len(), 2);
}
