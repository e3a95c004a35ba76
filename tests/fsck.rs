//! fsck_hammer2 on the fixtures and on images damaged at test time.

mod common;

use hammer2::walk::{walk, Root, WalkOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Output};

fn fsck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn poke(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let dev =
        hammer2::device::Device::open(path.to_str().unwrap(), hammer2::device::Access::ReadOnly).unwrap();
    let v = dev.volume(0);
    let mut h = sha2::Sha256::new();
    for n in 0..4u64 {
        if let Some(b) = v.bytes(n * (2 << 30), 65536) {
            h.update(b);
        }
    }
    h.finalize().to_vec()
}

#[test]
fn every_fixture_is_clean() {
    for (name, spec) in common::all_specs() {
        let out = fsck(&[&spec]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert!(text(&out).contains(": clean"), "{name}");
        let out = fsck(&["--json", "--all-copies", &spec]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["exit_code"], 0);
        assert!(v["report"]["trees"].as_array().unwrap().len() >= 2);
    }
}

#[test]
fn damaged_header_copy_is_preened_then_clean() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("newfs-10g", dir.path());
    let spec = img.to_str().unwrap();
    poke(&img, (4 << 30) + 0x30, &[9, 9]); // copy #2, sector 0
    let before = digest(&img);
    let out = fsck(&["-n", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("HDR_CORRUPT: ") && text(&out).contains("copy #2"), "{}", text(&out));
    assert_eq!(digest(&img), before, "-n wrote");
    let out = fsck(&["-p", spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("[FIXED"), "{}", text(&out));
    let out = fsck(&[spec]);
    assert_eq!(out.status.code(), Some(0), "second run: {}", text(&out));
}

#[test]
fn damaged_newer_copy_needs_yes() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("varied", dir.path());
    let spec = img.to_str().unwrap();
    // Copy #1 holds the newest commit (0x11); damage bytes only its whole-header CRC covers.
    poke(&img, (2 << 30) + 0x9000, b"torn");
    let out = fsck(&["-p", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("HDR_CORRUPT_NEWER"), "{}", text(&out));
    let out = fsck(&["-y", spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = fsck(&[spec]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("mirror_tid 0x10"), "rolled back to the best valid commit: {}", text(&out));
}

#[test]
fn sync_headers_refreshes_older_copies() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("varied", dir.path());
    let spec = img.to_str().unwrap();
    assert!(text(&fsck(&["-v", spec])).contains("HDR_STALE"));
    let out = fsck(&["-y", "--sync-headers", spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = fsck(&["-v", spec]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out).contains("HDR_STALE"), "{}", text(&out));
    assert!(text(&out).contains("mirror_tid 0x11"));
}

#[test]
fn corrupt_data_block_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap().to_string();
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    let mut target = None;
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        if v.bref.kind() == hammer2::format::BlockrefType::Data && target.is_none() {
            target = Some((v.bref.offset(), v.bref.data_off.get()));
        }
    })
    .unwrap();
    drop(fs);
    let (off, raw) = target.expect("small-iscsi has data blocks");
    poke(&img, off + 7, &[0xee]);
    let out = fsck(&["-y", &spec]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("BREF_CHECK") && t.contains(&format!("data data_off {raw:#x}")), "{t}");
    assert!(t.contains("iscsi32"), "{t}");
}

#[test]
fn usage_and_operational_errors() {
    assert_eq!(fsck(&[]).status.code(), Some(16));
    assert_eq!(fsck(&["-y", "-n", "x"]).status.code(), Some(16));
    let out = fsck(&["/nonexistent.img"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(text(&out).starts_with("fsck_hammer2: /nonexistent.img: cannot open"), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5a; 1 << 20]).unwrap();
    let out = fsck(&[junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("HDR_NONE_VALID"), "{}", text(&out));
}

#[test]
fn each_header_copy_damaged_in_turn_is_repaired() {
    for copy in 0..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let img = common::scratch_copy("newfs-10g", dir.path());
        let spec = img.to_str().unwrap();
        // Sector 0, sector 1 and the rest of the header, in turn.
        let at = [0x10, 0x210, 0x4000, 0xfff0][copy as usize];
        poke(&img, copy * (2 << 30) + at, &[0xde, 0xad]);
        let out = fsck(&["-n", spec]);
        assert_eq!(out.status.code(), Some(4), "copy {copy}: {}", text(&out));
        assert!(text(&out).contains(&format!("copy #{copy}")), "{}", text(&out));
        assert_eq!(fsck(&["-p", spec]).status.code(), Some(1), "copy {copy}");
        let out = fsck(&[spec]);
        assert_eq!(out.status.code(), Some(0), "copy {copy} second run: {}", text(&out));
    }
}

#[test]
fn all_copies_reports_the_best_copy_and_checks_every_valid_one() {
    let spec = common::fixture("pfs-snapshot").to_str().unwrap().to_string();
    let out = fsck(&["--json", "--all-copies", &spec]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["header_copy"], 3, "the report is the best copy's");
    let trees: Vec<String> = v["report"]["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tree"].as_str().unwrap().to_string())
        .collect();
    for copy in 0..4 {
        assert!(trees.contains(&format!("topology (copy #{copy})")), "{trees:?}");
    }
    // PFS counts are those of the copy in use (four PFSs), not repeated per copy.
    assert_eq!(v["report"]["pfs"].as_array().unwrap().len(), 4);
    // Argument order of a volume set does not change which copies are checked.
    let out = fsck(&[
        "--json",
        "--all-copies",
        &format!("{}:{}", common::fixture("multivol-1").display(), common::fixture("multivol-0").display()),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["report"]["trees"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["tree"].as_str().unwrap().starts_with("topology"))
            .count(),
        2
    );
}

#[test]
fn verbose_traces_every_blockref() {
    let spec = common::fixture("varied").to_str().unwrap().to_string();
    let json: serde_json::Value = serde_json::from_slice(&fsck(&["--json", &spec]).stdout).unwrap();
    let topo = json["report"]["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tree"].as_str().unwrap().starts_with("topology"))
        .unwrap()
        .clone();
    let out = fsck(&["-v", &spec]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let traced = text
        .lines()
        .filter(|l| l.contains(" (parent 0x") && (l.ends_with(" ok") || l.ends_with("no media")))
        .count();
    assert_eq!(traced as u64, topo["blockrefs"].as_u64().unwrap(), "one trace line per blockref");
    assert!(text.contains("HDR_STALE"), "informational findings are shown with -v");
}
