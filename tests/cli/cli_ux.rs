//! A new user's first mistakes: what each tool says and which status it
//! exits with (usage errors 2), and that a refused newfs leaves nothing
//! behind.

use std::path::Path;
use std::process::{Command, Output};

fn newfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(args).output().unwrap()
}

fn edit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_refused_newfs_creates_no_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    // Below the minimum: refused by the layout, after the size was read.
    let out = newfs(&["-s", "1M", s(&img)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 8 MiB"), "{}", stderr(&out));
    assert!(!img.exists(), "a refused newfs left {} behind", img.display());
    // The same size that works creates it, sparse.
    let out = newfs(&["-q", "-s", "1G", s(&img)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 30);
    // A dry run creates nothing either.
    let dry = dir.path().join("dry.img");
    let out = newfs(&["-n", "-s", "1G", s(&dry)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!dry.exists());
}

#[test]
fn newfs_size_mistakes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    for (args, want) in
        [(&["-s", "10X"][..], "bad size \"10X\""), (&["-s", "1G:1G"][..], "-s gives 2 sizes for 1 volume")]
    {
        let mut argv = args.to_vec();
        argv.push(s(&img));
        let out = newfs(&argv);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("newfs_hammer2: "), "{}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!img.exists());
    }
    assert!(!stderr(&newfs(&["-s", "1G:1G", s(&img)])).contains("volumes"));
}

#[test]
fn newfs_names_sizes_in_units_and_counts_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    std::fs::File::create(&img).unwrap().set_len(1 << 20).unwrap();
    let out = newfs(&["-s", "100M", s(&img)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("-s 100.00 MiB is larger than the device (1.00 MiB)"), "{}", stderr(&out));
    let out = newfs(&["-n", "-s", "1G", s(&dir.path().join("one.img"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(1 header copy)"), "{text}");
    let out = newfs(&["-n", "-s", "5G", s(&dir.path().join("three.img"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(3 header copies)"), "{text}");
}

#[test]
fn edit_words_a_bad_command_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("e.img");
    assert_eq!(newfs(&["-q", "-s", "1G", s(&img)]).status.code(), Some(0));
    // Two device arguments: the second one is taken for a command.
    let out = edit(&[s(&img), "other.img"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("hammer2_edit: other.img: unknown command 'other.img'"), "{err}");
    assert!(!err.contains("error:"), "{err}");
    assert!(!err.contains("<COMMAND>"), "{err}");
    assert!(err.contains("hammer2_edit --help"), "{err}");
    // A misspelt command gets clap's suggestion.
    let out = edit(&[s(&img), "cta", "/x"]);
    assert!(stderr(&out).contains("a similar command exists: 'stat'"), "{}", stderr(&out));
    // A missing argument keeps the command's own usage line.
    let out = edit(&[s(&img), "mv", "/a"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("hammer2_edit: mv /a: the following required arguments"), "{err}");
    assert!(err.contains("Usage: mv <SOURCE> <DEST>"), "{err}");
}

#[test]
fn populate_names_the_option_of_a_missing_host_directory() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("p.img");
    let host = dir.path().join("nonexistent");
    let out = newfs(&["-s", "1G", "--populate", s(&host), s(&img)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!("newfs_hammer2: --populate {}: ", host.display())),
        "{}",
        stderr(&out)
    );
    assert!(!img.exists());
}

/// The examples of every `--help` stay within clap's 100 columns: a line
/// clap had to wrap shows up as a fragment at the left margin.
#[test]
fn help_examples_are_not_wrapped_by_clap() {
    let tools: [(&str, &[&str]); 7] = [
        (env!("CARGO_BIN_EXE_newfs_hammer2"), &["--help"]),
        (env!("CARGO_BIN_EXE_fsck_hammer2"), &["--help"]),
        (env!("CARGO_BIN_EXE_hammer2_dump"), &["--help"]),
        (env!("CARGO_BIN_EXE_hammer2_dump"), &["show", "--help"]),
        (env!("CARGO_BIN_EXE_hammer2_recover"), &["--help"]),
        (env!("CARGO_BIN_EXE_hammer2_edit"), &["--help"]),
        (env!("CARGO_BIN_EXE_hammer2_mount"), &["--help"]),
    ];
    for (exe, args) in tools {
        let out = Command::new(exe).args(args).env("COLUMNS", "100").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let name = Path::new(exe).file_name().unwrap().to_str().unwrap();
        let Some(examples) = text.split("Examples:\n").nth(1) else { continue };
        for line in examples.lines().take_while(|l| !l.is_empty()) {
            let fragment = line.starts_with("  ") && !line[2..].starts_with(' ') && !line.contains(name);
            assert!(!fragment, "{name} {args:?}: wrapped example line {line:?}");
        }
    }
}

#[test]
fn edit_points_a_command_help_flag_at_help_command() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("h.img");
    assert_eq!(newfs(&["-q", "-s", "1G", s(&img)]).status.code(), Some(0));
    let out = edit(&[s(&img), "mkdir", "--help"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`help COMMAND`"), "{err}");
    assert!(!err.contains("-- --help"), "{err}");
    // What the tip names works.
    let out = edit(&[s(&img), "help", "mkdir"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: mkdir"));
}

#[test]
fn fsck_json_answers_on_stdout_when_it_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let out =
        Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["--json", s(&missing)]).output().unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(v["exit_code"], 8);
    assert!(v["error"].as_str().unwrap().contains("missing.img"), "{v}");
    // The message is on stderr as without --json.
    assert!(stderr(&out).starts_with("fsck_hammer2: "), "{}", stderr(&out));
}

#[test]
fn a_header_copy_out_of_range_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    assert_eq!(newfs(&["-q", "-s", "1G", s(&img)]).status.code(), Some(0));
    let dump = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_hammer2_dump")).args(args).output().unwrap();
    for out in [
        edit(&["--copy", "7", s(&img), "ls", "/"]),
        dump(&["show", "--copy", "7", s(&img)]),
        dump(&["inode", "--copy", "4", s(&img), "/"]),
    ] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("header copies are numbered 0 to 3"), "{}", stderr(&out));
    }
    // In range, it is read.
    let out = dump(&["show", "--copy", "0", "--depth", "0", s(&img)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
