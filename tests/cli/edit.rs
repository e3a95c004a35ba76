//! hammer2_edit read commands as a user runs them.

use sha2::Digest;
use std::process::{Command, Output};

fn edit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args(args).output().unwrap()
}

fn img(name: &str) -> String {
    crate::common::fixture(name).to_str().unwrap().to_string()
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
    let want = std::fs::read_to_string(crate::common::fixtures_dir().join("varied.manifest")).unwrap();
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
    assert_eq!(out.status.code(), Some(2), "'bogus' is a usage error");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, "dir\nhello.txt\nhello, hammer2\ndata.bin\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("hammer2_edit: ls /\n"), "{stderr}");
    assert!(stderr.contains("2 of 5 commands failed"), "{stderr}");
    let out = edit(&["-R", "cat /dir", &img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    let out = edit(&[&img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command given"));
    // Without usage errors, failures exit 1.
    std::fs::write(&script, "ls /\ncat /missing\n").unwrap();
    let out = edit(&["-f", script.to_str().unwrap(), &img("small-iscsi")]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn usage_errors_exit_2_everywhere() {
    let image = img("small-iscsi");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.txt");
    std::fs::write(&script, "ls /\nls --bogus\n").unwrap();
    let bad_quotes = dir.path().join("q.txt");
    std::fs::write(&bad_quotes, "ls /\ncat 'unbalanced\n").unwrap();
    for args in [
        vec![image.as_str(), "ls", "--bogus"],
        vec![image.as_str(), "frobnicate"],
        vec![image.as_str(), "get", "/"],
        vec!["-R", "ls --bogus", image.as_str()],
        vec!["-R", "cat 'x", image.as_str()],
        vec!["-f", script.to_str().unwrap(), image.as_str()],
        vec!["-f", bad_quotes.to_str().unwrap(), image.as_str()],
        vec!["--bogus", image.as_str(), "ls"],
        vec![image.as_str()],
    ] {
        let out = edit(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}: says why");
    }
    // The script stops nothing: 'ls /' ran before the usage error was counted.
    let out = edit(&["-f", script.to_str().unwrap(), &image]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dir\nhello.txt\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 commands failed"));
    // A script with unbalanced quotes runs nothing.
    let out = edit(&["-f", bad_quotes.to_str().unwrap(), &image]);
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unbalanced quotes"));
}

#[test]
fn get_refuses_dotdot_and_existing_destinations() {
    let image = img("small-iscsi");
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("dest");
    let out = edit(&[&image, "get", "/..", dest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("'..' is not allowed"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "nothing created");

    let d = dest.to_str().unwrap();
    let out = edit(&[&image, "get", "/", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The second run is refused whole, and says how to go on.
    let out = edit(&[&image, "get", "/", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("not an empty directory; use --force"), "{err}");
    std::fs::write(dest.join("hello.txt"), b"changed").unwrap();
    let out = edit(&[&image, "get", "--force", "/", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello, hammer2\n");
}

#[test]
fn each_cause_is_printed_once() {
    let image = img("small-iscsi");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    // The destination's parent is a file: ENOTDIR from the host.
    let dest = file.join("dest");
    let out = edit(&[&image, "get", "/", dest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("(os error 20)").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // An image that does not exist.
    let out = edit(&[dir.path().join("missing.img").to_str().unwrap(), "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
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
