//! hammer2_edit write commands as a user runs them: mkdir, put, rm, rmdir
//! from argv, -R and -f scripts; one commit per invocation; all or
//! nothing; --dry-run. Results are checked with our reader and fsck and
//! with the independent implementations in ../shared/reftools.

use crate::common::content;
use crate::common::digest::sparse_sha256 as sha256;
use crate::common::editor::{edit, edit_ok, text};
use crate::common::oracle::makefs_read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch copy of fixture `name` in `dir`, and its path as a string.
fn scratch(name: &str, dir: &Path) -> (PathBuf, String) {
    let img = crate::common::scratch_copy(name, dir);
    let spec = img.to_str().unwrap().to_string();
    (img, spec)
}

fn mirror_tid(spec: &str) -> u64 {
    hammer2::Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get()
}

/// Our fsck (`-n`) and the reference one (`-q`) both find `spec` clean.
fn both_fscks_clean(spec: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["-n", spec]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "our fsck on {spec}:\n{}{}", text(&out.stdout), text(&out.stderr));
    if crate::common::oracle::wanted() {
        let (ok, log) = crate::common::oracle::reference_fsck(spec);
        assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{log}");
    }
}

/// Host files to put: small (embedded in its inode) and big (data blocks).
struct Host {
    _dir: tempfile::TempDir,
    small: PathBuf,
    big: PathBuf,
}

fn host_files() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.txt");
    let big = dir.path().join("big.bin");
    std::fs::write(&small, b"put through hammer2_edit\n").unwrap();
    std::fs::write(&big, content(3, 300_000)).unwrap();
    Host { small, big, _dir: dir }
}

fn ls(spec: &str, path: &str) -> String {
    text(&edit_ok(&[spec, "ls", "-l", path]).stdout)
}

/// Finds the `ls -l` line of `name`.
fn ls_line(listing: &str, name: &str) -> Option<String> {
    listing.lines().find(|l| l.ends_with(&format!(" {name}"))).map(str::to_string)
}

/// The state every way of running the commands must produce on small-iscsi.
fn check_edited(img: &Path, spec: &str, host: &Host) {
    let root = ls(spec, "/");
    assert!(ls_line(&root, "hello.txt").is_none(), "removed:\n{root}");
    let d = ls_line(&root, "d").unwrap_or_else(|| panic!("no /d:\n{root}"));
    assert!(d.starts_with("drwx------"), "mkdir -m 700: {d}");
    let p = ls_line(&root, "p").unwrap_or_else(|| panic!("no /p:\n{root}"));
    assert!(p.starts_with("drwxr-xr-x"), "default mode 0755: {p}");
    assert_eq!(ls(spec, "/p").lines().count(), 1, "/p/q/r removed, /p/big.bin put");
    let small = std::fs::read(&host.small).unwrap();
    let big = std::fs::read(&host.big).unwrap();
    assert_eq!(edit_ok(&[spec, "cat", "/d/s.txt"]).stdout, small);
    assert_eq!(edit_ok(&[spec, "cat", "/p/big.bin"]).stdout, big);
    assert_eq!(edit_ok(&[spec, "cat", "/dir/data.bin"]).stdout.len(), 100_000, "untouched");
    both_fscks_clean(spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(img, None, "/d/s.txt"), small);
    }
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(img, None, "/p/big.bin"), big);
    }
}

const EDITS: &[&str] = &[
    "mkdir -m 700 /d",
    "mkdir -p /p/q/r",
    "put SMALL /d/s.txt",
    "put BIG /p/",
    "rm /hello.txt",
    "rmdir /p/q/r",
    "rm -d /p/q",
];

fn with_host(line: &str, host: &Host) -> String {
    line.replace("SMALL", host.small.to_str().unwrap()).replace("BIG", host.big.to_str().unwrap())
}

#[test]
fn each_command_via_argv_commits_once_each() {
    crate::common::oracle::without(each_command_via_argv_commits_once_each_scenario);
}

/// [`each_command_via_argv_commits_once_each`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn each_command_via_argv_commits_once_each_with_reference_tools() {
    each_command_via_argv_commits_once_each_scenario();
}

fn each_command_via_argv_commits_once_each_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let host = host_files();
    let tid0 = mirror_tid(&spec);
    for (i, line) in EDITS.iter().enumerate() {
        let line = with_host(line, &host);
        let mut args = vec![spec.as_str()];
        args.extend(line.split(' '));
        let out = edit_ok(&args);
        let said = text(&out.stdout);
        let tid = tid0 + 1 + i as u64;
        assert!(said.starts_with(&format!("committed transaction {tid:#x}, header copy ")), "{said}");
        assert_eq!(mirror_tid(&spec), tid, "one transaction per invocation");
    }
    check_edited(&img, &spec, &host);
}

#[test]
fn each_command_via_dash_r() {
    crate::common::oracle::without(each_command_via_dash_r_scenario);
}

/// [`each_command_via_dash_r`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn each_command_via_dash_r_with_reference_tools() {
    each_command_via_dash_r_scenario();
}

fn each_command_via_dash_r_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let host = host_files();
    let tid0 = mirror_tid(&spec);
    for line in EDITS {
        edit_ok(&["-q", "-R", &with_host(line, &host), &spec]);
    }
    assert_eq!(mirror_tid(&spec), tid0 + EDITS.len() as u64);
    check_edited(&img, &spec, &host);
}

#[test]
fn a_script_of_mixed_commands_is_one_transaction() {
    crate::common::oracle::without(a_script_of_mixed_commands_is_one_transaction_scenario);
}

/// [`a_script_of_mixed_commands_is_one_transaction`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_script_of_mixed_commands_is_one_transaction_with_reference_tools() {
    a_script_of_mixed_commands_is_one_transaction_scenario();
}

fn a_script_of_mixed_commands_is_one_transaction_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let host = host_files();
    let tid0 = mirror_tid(&spec);
    let mut script = String::from("# edits, with reads between them\nls /\n");
    for line in EDITS {
        script.push_str(&with_host(line, &host));
        script.push('\n');
        script.push_str("ls /\n");
    }
    let path = dir.path().join("edits.txt");
    std::fs::write(&path, &script).unwrap();
    let out = edit_ok(&["-f", path.to_str().unwrap(), &spec]);
    assert_eq!(mirror_tid(&spec), tid0 + 1, "the whole script is one commit");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    // Read commands see the changes of the commands before them.
    assert!(stdout.starts_with("dir\nhello.txt\nd\ndir\nhello.txt\n"), "{stdout}");
    assert!(stdout.contains("\nd\ndir\np\n"), "the listing after rm /hello.txt: {stdout}");
    assert!(!stderr.contains("note:"), "{stderr}");
    assert!(stderr.contains("hammer2_edit: rmdir /p/q/r\n"), "commands are echoed: {stderr}");
    let summary: Vec<&str> = stdout.lines().filter(|l| l.starts_with("committed transaction")).collect();
    assert_eq!(summary.len(), 1, "{stdout}");
    assert!(
        summary[0].starts_with(&format!("committed transaction {:#x}, header copy ", tid0 + 1)),
        "{stdout}"
    );
    check_edited(&img, &spec, &host);
}

#[test]
fn a_failing_command_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let host = host_files();
    let before = sha256(&img);
    let big = host.big.to_str().unwrap();
    // The put before the failure allocates and fills data blocks in the
    // session: they must not reach the image either.
    let script = dir.path().join("s.txt");
    std::fs::write(&script, format!("mkdir /a\nput {big} /a/big\nrm /missing\nmkdir /b\n")).unwrap();
    let out = edit(&["-f", script.to_str().unwrap(), &spec]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rm /missing: /missing: no such file"), "{stderr}");
    assert!(stderr.contains("command 3 of 4 failed; nothing was written"), "{stderr}");
    assert!(!stderr.contains("mkdir /b"), "later commands do not run: {stderr}");
    assert_eq!(sha256(&img), before, "byte-identical");
    // Several paths on one command line: all or nothing too.
    for args in [
        vec![spec.as_str(), "rm", "/hello.txt", "/missing"],
        vec![spec.as_str(), "mkdir", "/new", "/hello.txt"],
        vec![spec.as_str(), "mkdir", "/x/y"],
        vec![spec.as_str(), "put", big, "/hello.txt"],
        vec![spec.as_str(), "put", big, "/nodir/big"],
        vec![spec.as_str(), "rmdir", "/dir"],
        vec![spec.as_str(), "rm", "/"],
        vec!["-R", "put /nonexistent/file /x", spec.as_str()],
    ] {
        let out = edit(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("nothing was written"), "{args:?}: {}", text(&out.stderr));
        assert_eq!(sha256(&img), before, "{args:?}: byte-identical");
    }
    assert_eq!(edit_ok(&[&spec, "cat", "/hello.txt"]).stdout, b"hello, hammer2\n");
}

#[test]
fn refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let before = sha256(&img);
    let host_dir = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["put", host_dir, "/x"], "is a directory (put -r copies trees)"),
        (&["put", "/dev/null", "/x"], "not a regular file"),
        (&["rm", "/dir"], "/dir: is a directory (use rmdir, rm -d or rm -r)"),
        (&["rmdir", "/hello.txt"], "/hello.txt: not a directory"),
        (&["rm", "-d", "/dir"], "/dir: directory not empty"),
        (&["mkdir", "/dir"], "/dir: already exists"),
        (&["mkdir", "/a/../b"], "'..'"),
    ];
    for (cmd, why) in cases {
        let mut args = vec![spec.as_str()];
        args.extend_from_slice(cmd);
        let out = edit(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    // mkdir -p of what exists changes nothing and commits nothing.
    let out = edit_ok(&[&spec, "mkdir", "-p", "/dir"]);
    assert_eq!(text(&out.stdout), "nothing to commit: the commands changed nothing\n");
    assert_eq!(sha256(&img), before, "byte-identical");
}

#[test]
fn usage_errors_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let before = sha256(&img);
    let script = dir.path().join("s.txt");
    std::fs::write(&script, "ls /\nmkdir /a\nmkdir --bogus /b\n").unwrap();
    let s = script.to_str().unwrap();
    for args in [
        vec![spec.as_str(), "mkdir", "-m", "9", "/x"],
        vec![spec.as_str(), "mkdir", "-m", "77777", "/x"],
        vec![spec.as_str(), "mkdir"],
        vec![spec.as_str(), "put", "/etc/hostname"],
        vec![spec.as_str(), "rm"],
        vec!["--copy", "1", spec.as_str(), "mkdir", "/x"],
        vec!["-q", "--json", spec.as_str(), "mkdir", "/x"],
        vec!["-f", s, spec.as_str()],
    ] {
        let out = edit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran: {}", text(&out.stdout));
        assert_eq!(sha256(&img), before, "{args:?}: byte-identical");
    }
    let out = edit(&["-f", s, &spec]);
    assert!(text(&out.stderr).contains("1 of 3 commands are not valid; nothing was run or written"));
}

#[test]
fn dry_run_prints_the_changes_and_writes_nothing() {
    crate::common::oracle::without(dry_run_prints_the_changes_and_writes_nothing_scenario);
}

/// [`dry_run_prints_the_changes_and_writes_nothing`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn dry_run_prints_the_changes_and_writes_nothing_with_reference_tools() {
    dry_run_prints_the_changes_and_writes_nothing_scenario();
}

fn dry_run_prints_the_changes_and_writes_nothing_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let host = host_files();
    let before = sha256(&img);
    let tid0 = mirror_tid(&spec);
    let script = dir.path().join("s.txt");
    let lines: Vec<String> = EDITS.iter().map(|l| with_host(l, &host)).collect();
    std::fs::write(&script, lines.join("\n")).unwrap();
    let out = edit_ok(&["-n", "-f", script.to_str().unwrap(), &spec]);
    let stdout = text(&out.stdout);
    let big = host.big.to_str().unwrap();
    let want = format!(
        "would create directory /d (mode 0700)\n\
         would create directory /p (mode 0755)\n\
         would create directory /p/q (mode 0755)\n\
         would create directory /p/q/r (mode 0755)\n\
         would create file /d/s.txt (25 bytes from {})\n\
         would create file /p/big.bin (300000 bytes from {big})\n\
         would remove file /hello.txt\n\
         would remove directory /p/q/r\n\
         would remove directory /p/q\n\
         dry run: nothing written (the commit would be transaction {:#x}, header copy ",
        host.small.display(),
        tid0 + 1
    );
    assert!(stdout.starts_with(&want), "{stdout}");
    assert_eq!(sha256(&img), before, "byte-identical");
    // --json: the same as one object.
    let out = edit_ok(&["--dry-run", "--json", "-f", script.to_str().unwrap(), &spec]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["written"], false);
    assert_eq!(v["tid"], tid0 + 1);
    assert_eq!(v["changes"].as_array().unwrap().len(), 9);
    assert!(v["blocks"].as_u64().unwrap() >= 5, "{v}");
    assert!(v["bytes"].as_u64().unwrap() >= 300_000 / 2, "{v}");
    // A failing dry run says so, and still writes nothing.
    let out = edit(&["-n", &spec, "rm", "/hello.txt", "/missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "would remove file /hello.txt\n");
    assert!(text(&out.stderr).contains("nothing was written (dry run)"));
    assert_eq!(sha256(&img), before, "byte-identical");
    // Then the same for real gives what the dry run announced.
    let out = edit_ok(&["--json", "-f", script.to_str().unwrap(), &spec]);
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(w["written"], true);
    assert_eq!(w["tid"], v["tid"]);
    assert_eq!(w["header_copy"], v["header_copy"]);
    assert_eq!(w["changes"], v["changes"]);
    assert_eq!(mirror_tid(&spec), tid0 + 1);
    check_edited(&img, &spec, &host);
}

#[test]
fn quiet_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, spec) = scratch("small-iscsi", dir.path());
    let out = edit_ok(&["-q", &spec, "mkdir", "/quiet"]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(ls(&spec, "/").contains(" quiet\n"));
}

/// Files put on compressed images (LZ4 and zlib), in another PFS than DATA.
#[test]
fn put_compressed_and_in_another_pfs() {
    crate::common::oracle::without(put_compressed_and_in_another_pfs_scenario);
}

/// [`put_compressed_and_in_another_pfs`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn put_compressed_and_in_another_pfs_with_reference_tools() {
    put_compressed_and_in_another_pfs_scenario();
}

fn put_compressed_and_in_another_pfs_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_files();
    let big = std::fs::read(&host.big).unwrap();
    for name in ["varied", "varied-zlib"] {
        let (img, spec) = scratch(name, dir.path());
        edit_ok(&[&spec, "put", host.big.to_str().unwrap(), "/a/put.bin"]);
        assert_eq!(edit_ok(&[&spec, "cat", "/a/put.bin"]).stdout, big, "{name}");
        both_fscks_clean(&spec);
        if crate::common::oracle::wanted() {
            assert_eq!(makefs_read(&img, None, "/a/put.bin"), big, "{name}");
        }
    }
    let (img, spec) = scratch("pfs-snapshot", dir.path());
    let tid0 = mirror_tid(&spec);
    let script = format!("mkdir /in-extra\nput {} /in-extra/big\nrmdir /x\n", host.big.display());
    edit_ok(&["--pfs", "EXTRA", "-R", "mkdir /x", &spec]);
    let path = dir.path().join("s.txt");
    std::fs::write(&path, script).unwrap();
    edit_ok(&["--pfs", "EXTRA", "-f", path.to_str().unwrap(), &spec]);
    assert_eq!(mirror_tid(&spec), tid0 + 2);
    let extra = text(&edit_ok(&["--pfs", "EXTRA", &spec, "ls", "/"]).stdout);
    assert_eq!(extra, "in-extra\n");
    let data = text(&edit_ok(&[&spec, "ls", "/"]).stdout);
    assert!(!data.contains("in-extra") && data.contains("hello.txt"), "DATA untouched: {data}");
    both_fscks_clean(&spec);
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, Some("EXTRA"), "/in-extra/big"), big);
    }
}

/// Runs `args` inside a private mount namespace after `setup` (shell
/// commands; $1 is the image's directory). Needs unshare(1) and user
/// namespaces.
fn in_namespace(setup: &str, img_dir: &Path, args: &[&str]) -> Output {
    let script = format!("{setup} && shift && exec \"$@\"");
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script, "sh"])
        .arg(img_dir)
        .arg(env!("CARGO_BIN_EXE_hammer2_edit"))
        .args(args)
        .output()
        .expect("unshare(1) is needed for this test");
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("unshare:") && !stderr.contains("mount:"),
        "cannot set up the mount namespace (unshare -rm): {stderr}"
    );
    out
}

#[test]
fn a_mounted_device_is_refused_but_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let before = sha256(&img);
    // A tmpfs whose source names the image: /proc/self/mounts then lists
    // the image as mounted, as a block device would be.
    let setup = format!("mount -t tmpfs {spec} {}", mnt.display());
    let out = in_namespace(&setup, dir.path(), &[&spec, "mkdir", "/x"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unmount it first"), "{stderr}");
    assert!(stderr.contains(&format!("is mounted on {}", mnt.display())), "{stderr}");
    // Reading and dry runs open it read-only.
    let out = in_namespace(&setup, dir.path(), &[&spec, "ls", "/"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "dir\nhello.txt\n");
    let out = in_namespace(&setup, dir.path(), &["-n", &spec, "mkdir", "/x"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("would create directory /x (mode 0755)\ndry run: nothing written"));
    assert_eq!(sha256(&img), before, "byte-identical");
}

#[test]
fn only_writing_invocations_open_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = scratch("small-iscsi", dir.path());
    let before = sha256(&img);
    // The image's directory bound read-only: opening for writing fails even as root.
    let setup = "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\"";
    let script = dir.path().join("reads.txt");
    std::fs::write(&script, "ls /\ncat /hello.txt\nstat /dir\n").unwrap();
    let out = in_namespace(setup, dir.path(), &["-f", script.to_str().unwrap(), &spec]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("dir\nhello.txt\nhello, hammer2\n"));
    let out = in_namespace(setup, dir.path(), &["-n", &spec, "rm", "/hello.txt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = in_namespace(setup, dir.path(), &[&spec, "rm", "/hello.txt"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open the device for writing") && stderr.contains("Read-only file system"),
        "{stderr}"
    );
    assert_eq!(sha256(&img), before, "byte-identical");
}

#[test]
fn edits_a_multi_volume_set() {
    crate::common::oracle::without(edits_a_multi_volume_set_scenario);
}

/// [`edits_a_multi_volume_set`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn edits_a_multi_volume_set_with_reference_tools() {
    edits_a_multi_volume_set_scenario();
}

fn edits_a_multi_volume_set_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (v0, s0) = scratch("multivol-0", dir.path());
    let (v1, s1) = scratch("multivol-1", dir.path());
    let spec = format!("{s0}:{s1}");
    let host = host_files();
    let before = (sha256(&v0), sha256(&v1));
    let tid0 = mirror_tid(&spec);
    let script = format!("mkdir -p /etc/rc.d\nput {} /etc/\nrmdir /etc/rc.d\n", host.big.display());
    let path = dir.path().join("s.txt");
    std::fs::write(&path, script).unwrap();
    edit_ok(&["-n", "-f", path.to_str().unwrap(), &spec]);
    assert_eq!((sha256(&v0), sha256(&v1)), before, "dry run: byte-identical");
    edit_ok(&["-f", path.to_str().unwrap(), &spec]);
    assert_eq!(mirror_tid(&spec), tid0 + 1);
    assert_eq!(edit_ok(&[&spec, "cat", "/etc/big.bin"]).stdout, std::fs::read(&host.big).unwrap());
    assert_eq!(text(&edit_ok(&[&spec, "ls", "/etc"]).stdout), "big.bin\n");
    both_fscks_clean(&spec);
}
