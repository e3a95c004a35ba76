//! fsck_hammer2 on the fixtures and on images damaged at test time.

use hammer2::read::walk::{walk, Root, WalkOptions};
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

/// The whole image: every data extent with its offset, and the length (a
/// write anywhere changes it, a write of zeros into a hole too).
fn digest(path: &Path) -> Vec<u8> {
    crate::common::digest::sparse_sha256(path)
}

#[test]
fn every_fixture_is_clean() {
    for (name, spec) in crate::common::all_specs() {
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
    let img = crate::common::scratch_copy("newfs-10g", dir.path());
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

/// The header slot the commit after the best copy writes, and the best
/// copy's mirror_tid.
fn next_slot(spec: &str) -> (usize, u64) {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let copies = &fs.headers[fs.root_position()].copies;
    let n = copies.len();
    let next = (1..=n).map(|i| (fs.copy + i) % n).find(|&i| copies[i].data.is_some()).unwrap();
    (next, fs.voldata.mirror_tid.get())
}

/// One commit (a new directory `name`) through the library.
fn commit_mkdir(spec: &str, name: &str) {
    let mut s = hammer2::write::session::Session::open(spec, false).unwrap();
    let data = s.pfs(None).unwrap();
    s.mkdir(&data, name, hammer2::write::session::Attrs::now(0o755), false).unwrap();
    s.commit().unwrap();
}

fn exists(spec: &str, path: &str) -> bool {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    hammer2::read::pfs::Pfs::default(&tree).unwrap().resolve(path).is_ok()
}

/// A commit cut during its header write leaves the new header's first
/// bytes over the slot's old ones (the header is written last, after a
/// barrier). fsck -p rewrites that torn copy from the best one (exit 1),
/// the image is then clean for both checkers (the reference one looking at
/// every copy) and at the state before the interrupted commit, and the next
/// commit works. Tears inside sector 1, after the first page, and near the
/// end; and foreign bytes in the tail (indistinguishable, and what the next
/// flush overwrites all the same).
#[test]
fn torn_header_of_an_interrupted_commit_is_preened() {
    crate::common::oracle::without(torn_header_of_an_interrupted_commit_is_preened_scenario);
}

/// [`torn_header_of_an_interrupted_commit_is_preened`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn torn_header_of_an_interrupted_commit_is_preened_with_reference_tools() {
    torn_header_of_an_interrupted_commit_is_preened_scenario();
}

fn torn_header_of_an_interrupted_commit_is_preened_scenario() {
    use std::os::unix::fs::FileExt;
    for tear in [0x300u64, 0x1000, 0xf000, 0] {
        let dir = tempfile::tempdir().unwrap();
        let img = crate::common::scratch_copy("newfs-10g", dir.path());
        let spec = img.to_str().unwrap();
        let (slot, tid) = next_slot(spec);
        let at = slot as u64 * (2 << 30);
        let mut old = vec![0u8; 65536];
        std::fs::File::open(&img).unwrap().read_exact_at(&mut old, at).unwrap();
        commit_mkdir(spec, "/interrupted");
        if tear == 0 {
            poke(&img, at + 0x9000, b"bits");
        } else {
            poke(&img, at + tear, &old[tear as usize..]);
        }
        let out = fsck(&["-n", spec]);
        assert_eq!(out.status.code(), Some(4), "tear {tear:#x}: {}", text(&out));
        assert!(text(&out).contains("HDR_TORN"), "tear {tear:#x}: {}", text(&out));
        let out = fsck(&["-p", spec]);
        assert_eq!(out.status.code(), Some(1), "tear {tear:#x}: {}", text(&out));
        assert!(text(&out).contains("[FIXED"), "{}", text(&out));
        let out = fsck(&["--all-copies", spec]);
        assert_eq!(out.status.code(), Some(0), "tear {tear:#x}, second run: {}", text(&out));
        if crate::common::oracle::wanted() {
            let (ok, log) = crate::common::oracle::reference_fsck(spec);
            assert!(ok, "tear {tear:#x}: reference fsck_hammer2:\n{log}");
        }
        assert_eq!(next_slot(spec), (slot, tid), "the best copy is the one before the interrupted commit");
        assert!(!exists(spec, "/interrupted"));
        commit_mkdir(spec, "/after");
        assert_eq!(fsck(&[spec]).status.code(), Some(0));
        assert!(exists(spec, "/after"));
        // The kernel's code mounts what -p left (no recovery), snapshots
        // it and bulkfrees it cleanly.
        crate::common::oracle::makefs_snapshots(&img, "preened");
        crate::common::oracle::makefs_mounts_and_bulkfrees(&img);
    }
}

/// Damaged copies that claim commits past the next one: commits that did
/// complete would be lost, so -p leaves them (exit 4, nothing written) and
/// only -y rewrites them, rolling the file system back to the best valid
/// commit.
#[test]
fn damaged_copies_of_completed_commits_need_yes() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-10g", dir.path());
    let spec = img.to_str().unwrap();
    let (first, tid) = next_slot(spec);
    commit_mkdir(spec, "/one");
    let (second, _) = next_slot(spec);
    commit_mkdir(spec, "/two");
    // Both newer copies damaged where only the whole-header CRC covers:
    // the first claims the next commit, but a later one followed it.
    for slot in [first, second] {
        poke(&img, slot as u64 * (2 << 30) + 0x9000, b"torn");
    }
    let before = digest(&img);
    let out = fsck(&["-p", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_eq!(text(&out).matches("HDR_CORRUPT_NEWER").count(), 2, "{}", text(&out));
    assert!(!text(&out).contains("HDR_TORN"), "{}", text(&out));
    assert_eq!(digest(&img), before, "-p wrote");
    let out = fsck(&["-y", spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = fsck(&[spec]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("mirror_tid {tid:#x}")), "rolled back: {}", text(&out));
    assert!(!exists(spec, "/one"));
}

#[test]
fn sync_headers_refreshes_older_copies() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("varied", dir.path());
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
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
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
        let img = crate::common::scratch_copy("newfs-10g", dir.path());
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
    let spec = crate::common::fixture("pfs-snapshot").to_str().unwrap().to_string();
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
        &format!(
            "{}:{}",
            crate::common::fixture("multivol-1").display(),
            crate::common::fixture("multivol-0").display()
        ),
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
    let spec = crate::common::fixture("varied").to_str().unwrap().to_string();
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
