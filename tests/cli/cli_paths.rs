//! Device arguments as every tool takes them: a path holding ':' that
//! exists is one volume, `vol0:vol1` a set; a directory, a FIFO or a
//! character device is named for what it is; each cause is printed once.

use std::path::Path;
use std::process::{Command, Output};

fn tool(exe: &str, args: &[&str]) -> Output {
    Command::new(exe).args(args).output().unwrap()
}

fn dump(args: &[&str]) -> Output {
    tool(env!("CARGO_BIN_EXE_hammer2_dump"), args)
}

fn fsck(args: &[&str]) -> Output {
    tool(env!("CARGO_BIN_EXE_fsck_hammer2"), args)
}

fn edit(args: &[&str]) -> Output {
    tool(env!("CARGO_BIN_EXE_hammer2_edit"), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_existing_path_with_a_colon_is_one_volume() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk:0.img");
    crate::common::copy_sparse(&crate::common::fixture("small-iscsi"), &img);
    let spec = img.to_str().unwrap();
    let out = dump(&["volhdr", spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fsck(&["-q", spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = edit(&[spec, "cat", "/hello.txt"]);
    assert_eq!(out.stdout, b"hello, hammer2\n", "{}", stderr(&out));
    // A set is still split when the whole string names nothing.
    let out = dump(&["volhdr", &crate::common::multivol_spec()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("multivol-1"));
    let missing = format!("{spec}:{}", dir.path().join("nope.img").display());
    let out = dump(&["volhdr", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.img: cannot open"), "{}", stderr(&out));
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo (coreutils) is needed");
    assert!(st.success());
}

#[test]
fn directories_fifos_and_character_devices_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let cases = [
        (dir.path().to_str().unwrap(), "is a directory"),
        (fifo.to_str().unwrap(), "is a FIFO"),
        ("/dev/null", "is a character device"),
    ];
    for (path, want) in cases {
        for (name, out, code) in [
            ("hammer2_dump", dump(&["volhdr", path]), 1),
            ("hammer2_edit", edit(&[path, "ls"]), 1),
            ("fsck_hammer2", fsck(&[path]), 8),
        ] {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(code), "{name} {path}: {err}");
            assert!(err.contains(&format!("{path}: {want}")), "{name} {path}: {err}");
            assert!(!err.contains("allocate memory"), "{name} {path}: {err}");
            assert_eq!(err.lines().count(), 1, "{name} {path}: {err}");
        }
    }
}

#[test]
fn each_cause_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let m = missing.to_str().unwrap();
    for (name, out) in [
        ("hammer2_dump", dump(&["volhdr", m])),
        ("hammer2_edit", edit(&[m, "ls"])),
        ("fsck_hammer2", fsck(&[m])),
    ] {
        let err = stderr(&out);
        assert_eq!(err.matches("No such file or directory").count(), 1, "{name}: {err}");
        assert!(err.starts_with(&format!("{name}: ")), "{name}: {err}");
    }
}

#[test]
fn usage_errors_exit_2_and_fsck_16() {
    let img = crate::common::fixture("small-iscsi");
    let img = img.to_str().unwrap();
    assert_eq!(dump(&["volhdr", "--bogus", img]).status.code(), Some(2));
    assert_eq!(dump(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(fsck(&["--bogus", img]).status.code(), Some(16));
    assert_eq!(fsck(&[]).status.code(), Some(16));
    assert_eq!(edit(&[img, "ls", "--bogus"]).status.code(), Some(2));
    assert_eq!(tool(env!("CARGO_BIN_EXE_newfs_hammer2"), &["--bogus"]).status.code(), Some(2));
    // A path with '..' is refused by hammer2_dump inode too.
    let out = dump(&["inode", img, "/dir/.."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("'..' is not allowed"), "{}", stderr(&out));
}
