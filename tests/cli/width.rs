//! Every dump and report fits 80 columns (`COLUMNS=80`, output to a pipe)
//! unless `--wide` is given, and laying it out drops nothing: the wide and
//! the narrow forms hold the same text.
//!
//! The tools run inside the fixture cache directory on bare image names,
//! so a long checkout path does not make the device-path lines long (a
//! path is the one thing the layout never cuts).

use std::path::Path;
use std::process::Command;

const WIDTH: usize = 80;

/// Runs `exe` with `args` in `dir` with `COLUMNS` set; returns stdout.
fn run(exe: &str, args: &[&str], dir: &Path, columns: usize) -> String {
    let out =
        Command::new(exe).args(args).current_dir(dir).env("COLUMNS", columns.to_string()).output().unwrap();
    assert!(
        out.status.success(),
        "{exe} {args:?}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of `text` wider than `width` (in characters).
fn too_wide(text: &str, width: usize) -> Vec<String> {
    text.lines().filter(|l| l.chars().count() > width).map(|l| format!("{} {l}", l.chars().count())).collect()
}

/// Every fixture as (name, directory, spec of bare file names).
fn fixtures() -> Vec<(String, std::path::PathBuf, String)> {
    let mut v: Vec<_> = ["varied", "varied-zlib", "small-iscsi", "pfs-snapshot", "newfs-1g", "newfs-10g"]
        .iter()
        .map(|n| {
            let p = crate::common::fixture(n);
            (n.to_string(), p.parent().unwrap().to_path_buf(), format!("{n}.img"))
        })
        .collect();
    let m = crate::common::fixture("multivol-0");
    crate::common::fixture("multivol-1");
    v.push(("multivol".into(), m.parent().unwrap().to_path_buf(), "multivol-0.img:multivol-1.img".into()));
    v
}

const DUMP: &str = env!("CARGO_BIN_EXE_hammer2_dump");
const FSCK: &str = env!("CARGO_BIN_EXE_fsck_hammer2");
const EDIT: &str = env!("CARGO_BIN_EXE_hammer2_edit");
const RECOVER: &str = env!("CARGO_BIN_EXE_hammer2_recover");
const NEWFS: &str = env!("CARGO_BIN_EXE_newfs_hammer2");

/// Where the `n`th (from 0) whitespace-separated word of `line` starts.
fn nth_word_start(line: &str, n: usize) -> Option<usize> {
    let mut words = 0;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if !c.is_whitespace() && prev_space {
            if words == n {
                return Some(line[..i].chars().count());
            }
            words += 1;
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// Text without its layout: every non-blank character, in order.
fn content(text: &str) -> String {
    text.split_whitespace().collect()
}

#[test]
fn every_dump_and_report_fits_80_columns() {
    let mut problems = Vec::new();
    for (name, dir, spec) in fixtures() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (DUMP, vec!["volhdr", &spec]),
            (DUMP, vec!["show", &spec]),
            (DUMP, vec!["show", "--freemap", &spec]),
            (DUMP, vec!["freemap", &spec]),
            (DUMP, vec!["pfs", &spec]),
            (DUMP, vec!["inode", "--inum", "1", &spec]),
            (FSCK, vec![&spec]),
            (FSCK, vec!["-v", &spec]),
            (EDIT, vec![&spec, "stat", "/"]),
            (EDIT, vec![&spec, "pfs-list"]),
            (RECOVER, vec!["-n", &spec]),
            (RECOVER, vec!["-n", "-v", &spec]),
        ];
        for (exe, args) in cases {
            let text = run(exe, &args, &dir, WIDTH);
            let wide = too_wide(&text, WIDTH);
            if !wide.is_empty() {
                let tool = Path::new(exe).file_name().unwrap().to_string_lossy().to_string();
                problems.push(format!("{name}: {tool} {args:?}:\n  {}", wide.join("\n  ")));
            }
        }
        // ls -l is ls(1)'s format: a line is as long as its name and link
        // target (the fixtures hold 255-byte names), which are never cut;
        // the seven columns before the name fit.
        let text = run(EDIT, &[&spec, "ls", "-l", "/"], &dir, WIDTH);
        for l in text.lines().filter(|l| l.chars().count() > WIDTH) {
            let name_at = nth_word_start(l, 7);
            if name_at.is_none_or(|at| at >= WIDTH) {
                problems.push(format!("{name}: ls -l: {l}"));
            }
        }
    }
    assert!(problems.is_empty(), "lines over {WIDTH} columns:\n{}", problems.join("\n"));
}

#[test]
fn newfs_dry_run_fits_80_columns() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("a-rather-long-directory-name-for-a-volume-image").join("vol0.img");
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    let second = dir.path().join("vol1.img");
    let (a, b) = (long.to_str().unwrap(), second.to_str().unwrap());
    for args in [vec!["-n", "-s", "10G", a], vec!["-n", "-s", "3G:2G", "-L", "ROOT", a, b]] {
        let text = run(NEWFS, &args, dir.path(), WIDTH);
        // The one thing allowed to be wide is a path alone on its line.
        let wide: Vec<String> =
            too_wide(&text, WIDTH).into_iter().filter(|l| !(l.contains(a) || l.contains(b))).collect();
        assert!(wide.is_empty(), "{args:?}:\n{}", wide.join("\n"));
        assert!(text.lines().any(|l| l.starts_with("volume 0:")), "{text}");
    }
}

#[test]
fn wide_keeps_the_side_by_side_table_and_one_line_per_blockref() {
    let img = crate::common::fixture("small-iscsi");
    let dir = img.parent().unwrap();
    let spec = "small-iscsi.img";

    // volhdr: by default one table per copy; --wide: the copies side by side.
    let narrow = run(DUMP, &["volhdr", spec], dir, WIDTH);
    assert!(narrow.lines().all(|l| !(l.contains("copy #0") && l.contains("copy #1"))), "{narrow}");
    assert!(narrow.contains("copy #1 *") && narrow.contains("valid, in use"), "{narrow}");
    let wide = run(DUMP, &["volhdr", "--wide", spec], dir, WIDTH);
    let head = wide.lines().find(|l| l.contains("copy #0")).unwrap_or_default();
    for c in ["field", "copy #0", "copy #1 *", "copy #2", "copy #3"] {
        assert!(head.contains(c), "side-by-side header lacks {c:?}: {wide}");
    }
    assert!(!too_wide(&wide, WIDTH).is_empty(), "the side-by-side table is the wide one");
    assert!(wide.contains("copy in use: #1"), "{wide}");

    // show: --wide is one line per blockref; the default holds the same text.
    let json = run(DUMP, &["show", "--json", "--freemap", spec], dir, WIDTH);
    for args in [&["show", "--freemap"][..], &["show", "--all-copies"][..]] {
        let narrow = run(DUMP, &[args, &[spec][..]].concat(), dir, WIDTH);
        let wide = run(DUMP, &[args, &["--wide", spec][..]].concat(), dir, WIDTH);
        assert_eq!(content(&narrow), content(&wide), "{args:?}: the layout changed the text");
        assert!(too_wide(&narrow, WIDTH).is_empty(), "{narrow}");
        assert!(!too_wide(&wide, WIDTH).is_empty(), "{wide}");
    }
    let wide = run(DUMP, &["show", "--freemap", "--wide", spec], dir, WIDTH);
    let entries = wide.lines().filter(|l| l.contains("data_off=")).count();
    assert_eq!(entries, json.lines().count(), "one line per blockref: {wide}");

    // freemap, pfs and inode: --wide is the one-table / one-line form.
    for sub in [&["freemap"][..], &["pfs"][..], &["inode", "--inum", "1"][..]] {
        let narrow = run(DUMP, &[sub, &[spec][..]].concat(), dir, WIDTH);
        let wide = run(DUMP, &[sub, &["--wide", spec][..]].concat(), dir, WIDTH);
        assert!(too_wide(&narrow, WIDTH).is_empty(), "{sub:?}: {narrow}");
        assert!(!too_wide(&wide, WIDTH).is_empty(), "{sub:?} --wide is wider: {wide}");
    }
    let pfs = run(DUMP, &["pfs", "--wide", spec], dir, WIDTH);
    let head = pfs.lines().find(|l| l.contains("label")).unwrap();
    assert!(head.contains("pfs_clid") && head.contains("pfs_fsid") && head.contains("mirror_tid"), "{pfs}");
}

#[test]
fn a_wider_terminal_is_used() {
    let img = crate::common::fixture("small-iscsi");
    let dir = img.parent().unwrap();
    let spec = "small-iscsi.img";
    // At 300 columns show has room for one line per blockref, and the PFS
    // table for every column.
    let show = run(DUMP, &["show", spec], dir, 300);
    assert_eq!(show, run(DUMP, &["show", "--wide", spec], dir, WIDTH));
    let pfs = run(DUMP, &["pfs", spec], dir, 300);
    assert_eq!(pfs, run(DUMP, &["pfs", "--wide", spec], dir, WIDTH));
    // At 100 columns nothing is wider than 100.
    for sub in ["volhdr", "show", "freemap", "pfs"] {
        let text = run(DUMP, &[sub, spec], dir, 100);
        assert!(too_wide(&text, 100).is_empty(), "{sub}: {text}");
    }
}
