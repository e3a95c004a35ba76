//! hammer2_edit read commands as a user runs them.

mod common;

use sha2::Digest;
use std::process::{Command, Output};

fn edit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args(args).output().unwrap()
}

fn img(name: &str) -> String {
    common::fixture(name).to_str().unwrap().to_string()
}

#[test]
fn ls_plain_and_long() {
    let out = edit(&[&img("small-iscsi"), "ls", "/"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "dir\nhello.txt\n");
    let out = edit(&[&img("varied"), "ls", "-l", "/"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.ends_with(" link-short")).map(|l| l.to_string());
    assert!(
        text.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("link-short -> hello.txt")),
        "{line:?}"
    );
    assert!(text.lines().any(|l| l.starts_with("-rw-r--r--   2 ") && l.ends_with(" hello.txt")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" exec.sh")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("drwxr-xr-x") && l.ends_with(" a")), "{text}");
}

#[test]
fn cat_streams_exact_content() {
    let out = edit(&[&img("varied"), "cat", "/big-40m.bin"]);
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 40 << 20);
    let want = std::fs::read_to_string(common::fixtures_dir().join("varied.manifest")).unwrap();
    let sha = want
        .lines()
        .find(|l| l.starts_with("big-40m.bin\t"))
        .unwrap()
        .rsplit('\t')
        .next()
        .unwrap()
        .to_string();
    let got: String = sha2::Sha256::digest(&out.stdout).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, sha);
}

#[test]
fn get_tree_via_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = edit(&[&img("small-iscsi"), "get", "/", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.path().join("hello.txt")).unwrap(), b"hello, hammer2\n");
    assert_eq!(std::fs::metadata(dir.path().join("dir/data.bin")).unwrap().len(), 100_000);
}

#[test]
fn pfs_selection_and_listing() {
    let out = edit(&["--pfs", "snap1", &img("pfs-snapshot"), "cat", "/hello.txt"]);
    assert_eq!(out.stdout, b"hello, hammer2\n");
    let out = edit(&[&img("pfs-snapshot"), "pfs"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for l in ["DATA", "EXTRA", "LOCAL", "snap1"] {
        assert!(text.lines().any(|x| x.starts_with(l)), "{text}");
    }
    let out = edit(&["--pfs", "NOPE", &img("pfs-snapshot"), "ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PFS \"NOPE\""));
    // newfs images have LOCAL and DATA only; DATA is empty.
    let out = edit(&[&img("newfs-1g"), "ls", "/"]);
    assert!(out.status.success() && out.stdout.is_empty());
}

#[test]
fn scripts_echo_and_count_failures() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.txt");
    std::fs::write(&script, "# listing\nls /\ncat /hello.txt\ncat /missing\nbogus\n\nls '/dir'\n").unwrap();
    let out = edit(&["-f", script.to_str().unwrap(), &img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, "dir\nhello.txt\nhello, hammer2\ndata.bin\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("hammer2_edit: ls /\n"), "{stderr}");
    assert!(stderr.contains("2 of 5 commands failed"), "{stderr}");
    let out = edit(&["-R", "cat /dir", &img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    let out = edit(&[&img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command given"));
}

#[test]
fn stat_shows_the_inode() {
    let out = edit(&[&img("varied"), "stat", "/hello.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("nlinks") && l.ends_with(" 2")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("size") && l.ends_with(" 15")), "{text}");
    assert!(text.contains("embedded data, 15 bytes"), "{text}");
    let out = edit(&[&img("varied"), "stat", "--json", "/big-40m.bin"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 40u64 << 20);
}
