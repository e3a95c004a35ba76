//! Salvage: `hammer2_recover list` and `files` on images damaged or edited
//! at test time (copies of the fixtures), each recovery compared with what
//! `hammer2_edit get` extracted before the change.

#[path = "../common/mod.rs"]
mod common;

use hammer2::format::{Blockref, BlockrefType};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::Hammer2;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EDIT: &str = env!("CARGO_BIN_EXE_hammer2_edit");
const RECOVER: &str = env!("CARGO_BIN_EXE_hammer2_recover");

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe).args(args).output().expect("run tool")
}

fn ok(exe: &str, args: &[&str]) -> String {
    let o = run(exe, args);
    assert!(
        o.status.success(),
        "{exe} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch copy of `varied` and, extracted from it before any change,
/// the reference tree `ref/`.
fn varied_with_reference(dir: &Path) -> (PathBuf, PathBuf) {
    let img = common::scratch_copy("varied", dir);
    let reference = dir.join("ref");
    ok(EDIT, &[s(&img), "get", "/", s(&reference)]);
    (img, reference)
}

/// Asserts the host tree `got` holds what `want` holds: the same names,
/// types, contents, symlink targets, modes, and times of files and
/// directories. Hard links may come back as copies.
fn assert_same_tree(want: &Path, got: &Path) {
    let (w, g) = (common::hosttree::host_entries(want), common::hosttree::host_entries(got));
    let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).take(10).collect();
    let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?} in {}",
        got.display()
    );
    for (rel, wm) in &w {
        let gm = &g[rel];
        let (wp, gp) = (want.join(rel), got.join(rel));
        assert_eq!(wm.file_type(), gm.file_type(), "{}: type", rel.display());
        if wm.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&wp).unwrap(),
                std::fs::read_link(&gp).unwrap(),
                "{}",
                rel.display()
            );
            continue;
        }
        assert_eq!(wm.mode() & 0o7777, gm.mode() & 0o7777, "{}: mode", rel.display());
        assert_eq!(wm.mtime(), gm.mtime(), "{}: mtime", rel.display());
        if wm.is_file() {
            assert!(common::hosttree::same_contents(&wp, &gp), "{}: contents differ", rel.display());
        }
    }
}

#[test]
fn removed_files_and_trees_are_recovered_whole() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    ok(EDIT, &["-q", s(&img), "rm", "hello.txt", "big-40m.bin"]);
    ok(EDIT, &["-q", s(&img), "rm", "-r", "level00"]);
    // Gone from the live tree.
    assert!(!run(EDIT, &[s(&img), "cat", "/level00"]).status.success());
    let out = dir.path().join("out");
    let summary = ok(RECOVER, &["files", "--latest", "--pfs", "DATA", s(&img), "/", s(&out)]);
    assert!(summary.contains("partial 0, unrecoverable 0"), "{summary}");
    assert_same_tree(&reference, &out);
}

#[test]
fn list_deleted_shows_only_what_the_live_tree_lost() {
    let dir = common::hosttree::scratch();
    let (img, _) = varied_with_reference(dir.path());
    ok(EDIT, &["-q", s(&img), "rm", "hello.txt", "exec.sh"]);
    let json = ok(RECOVER, &["list", "--deleted", "--json", s(&img)]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["found"].as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/exec.sh"), "{paths:?}");
    // hello.txt keeps a second name (a hard link), so its inode is still
    // live; the root directory changed, so its older version is listed.
    assert!(!paths.contains(&"/a"), "an untouched directory is not deleted: {paths:?}");
    for r in rows {
        assert_ne!(r["source"], "live", "{r}");
    }
    // The intact fixture: no file is deleted (an older header copy still
    // reaches an older version of the root directory).
    let fresh = common::scratch_copy("varied", &dir.path().join("fresh").tap_mkdir());
    let json = ok(RECOVER, &["list", "--deleted", "--json", s(&fresh)]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["found"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["type"] == "directory" && r["source"] != "live"), "{json}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn overwritten_and_truncated_files_keep_every_version() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    let patch = dir.path().join("patch");
    std::fs::write(&patch, b"NEW BYTES").unwrap();
    ok(EDIT, &["-q", s(&img), "write", "exec.sh", "0", s(&patch)]);
    ok(EDIT, &["-q", s(&img), "truncate", "-s", "100000", "big-40m.bin"]);
    let now = dir.path().join("now");
    ok(EDIT, &[s(&img), "get", "/exec.sh", s(&now)]);
    ok(EDIT, &[s(&img), "get", "/big-40m.bin", s(&now)]);
    let out = dir.path().join("out");
    ok(RECOVER, &["files", s(&img), "/exec.sh", s(&out)]);
    ok(RECOVER, &["files", s(&img), "big-40m.bin", s(&out)]);
    for name in ["exec.sh", "big-40m.bin"] {
        let old = out.join(format!("{name}.00001"));
        let new = out.join(format!("{name}.00002"));
        assert!(common::hosttree::same_contents(&old, &reference.join(name)), "{name}: old version");
        assert!(common::hosttree::same_contents(&new, &now.join(name)), "{name}: new version");
        assert!(common::hosttree::same_contents(&out.join(name), &now.join(name)), "{name}: newest");
        assert!(!out.join(format!("{name}.00003")).exists());
        let (om, rm) = (std::fs::metadata(&old).unwrap(), std::fs::metadata(reference.join(name)).unwrap());
        assert_eq!((om.mode(), om.mtime()), (rm.mode(), rm.mtime()), "{name}: old version's mode and time");
    }
}

/// The first INDIRECT blockref found under `set` whose table holds a
/// blockref of type `holds` (depth-first, the tree read as it is now).
fn indirect_holding(fs: &Hammer2, set: &[Blockref], holds: BlockrefType) -> Option<Blockref> {
    for b in set.iter().filter(|b| b.kind() == BlockrefType::Indirect) {
        let media = fs.device.read(b.offset(), b.physical_size() as usize).ok()?;
        let table = Blockref::table(media);
        if table.iter().any(|c| c.kind() == holds) {
            return Some(*b);
        }
        if let Some(found) = indirect_holding(fs, table, holds) {
            return Some(found);
        }
    }
    None
}

/// Every DATA blockref under `set` (through indirect blocks).
fn data_blocks(fs: &Hammer2, set: &[Blockref], out: &mut Vec<Blockref>) {
    for b in set {
        match b.kind() {
            BlockrefType::Data if b.physical_size() > 0 => out.push(*b),
            BlockrefType::Indirect => {
                let media = fs.device.read(b.offset(), b.physical_size() as usize).unwrap();
                data_blocks(fs, Blockref::table(media), out);
            }
            _ => {}
        }
    }
}

/// Spoils a block's check code without touching what the scan reads of
/// its blockrefs: every slot's `update_tid` gets other bytes.
fn spoil(img: &Path, b: &Blockref) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    for slot in 0..(b.physical_size() / 128) {
        f.write_all_at(&[0xa5; 8], b.offset() + slot * 128 + 0x28).unwrap();
    }
}

#[test]
fn files_behind_a_damaged_inode_index_block_are_recovered() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    let block = {
        let fs = Hammer2::open_path(s(&img)).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        indirect_holding(&fs, pfs.root.blockset(), BlockrefType::Inode)
            .expect("an inode-index indirect block")
    };
    spoil(&img, &block);
    // The live tree no longer yields the whole PFS.
    assert!(!run(EDIT, &[s(&img), "get", "/", s(&dir.path().join("get"))]).status.success());
    let out = dir.path().join("out");
    ok(RECOVER, &["files", "--latest", "--pfs", "DATA", s(&img), "/", s(&out)]);
    assert_same_tree(&reference, &out);
}

#[test]
fn a_destroyed_blockref_loses_its_inode_and_nothing_else_is_wrong() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    let (block, slot) = {
        let fs = Hammer2::open_path(s(&img)).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let b =
            indirect_holding(&fs, pfs.root.blockset(), BlockrefType::Inode).expect("an inode-index block");
        let media = fs.device.read(b.offset(), b.physical_size() as usize).unwrap();
        let slot = Blockref::table(media).iter().position(|c| c.kind() == BlockrefType::Inode).unwrap();
        (b, slot)
    };
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0u8; 128], block.offset() + slot as u64 * 128).unwrap();
    let out = dir.path().join("out");
    let o = run(RECOVER, &["files", "--latest", "--pfs", "DATA", s(&img), "/", s(&out)]);
    assert!(o.status.code().is_some());
    let (want, got) = (common::hosttree::host_entries(&reference), common::hosttree::host_entries(&out));
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    assert!(missing >= 1, "the inode whose only blockref was destroyed cannot be vouched for");
    assert!(missing * 4 < want.len(), "only what hung from that inode is lost ({missing} of {})", want.len());
    for (rel, m) in &got {
        let w = want.get(rel).unwrap_or_else(|| panic!("{}: not in the original", rel.display()));
        assert_eq!(w.file_type(), m.file_type(), "{}", rel.display());
        if m.is_file() {
            assert!(
                common::hosttree::same_contents(&reference.join(rel), &out.join(rel)),
                "{}",
                rel.display()
            );
        }
    }
}

#[test]
fn files_behind_a_damaged_directory_block_are_recovered() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    let (block, name) = {
        let fs = Hammer2::open_path(s(&img)).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let mut found = None;
        for e in pfs.readdir(&pfs.root).unwrap() {
            let ino = pfs.inode(e.inum).unwrap();
            if !ino.is_dir() {
                continue;
            }
            if let Some(b) = indirect_holding(&fs, ino.blockset(), BlockrefType::Dirent) {
                found = Some((b, String::from_utf8_lossy(&e.name).into_owned()));
                break;
            }
        }
        found.expect("a directory with an indirect block of entries")
    };
    spoil(&img, &block);
    assert!(!run(EDIT, &[s(&img), "get", &format!("/{name}"), s(&dir.path().join("get"))]).status.success());
    let out = dir.path().join("out");
    ok(RECOVER, &["files", "--latest", s(&img), &format!("/{name}"), s(&out)]);
    assert_same_tree(&reference.join(&name), &out.join(&name));
}

#[test]
fn a_deleted_pfs_is_recovered() {
    let dir = common::hosttree::scratch();
    let img = common::scratch_copy("varied", dir.path());
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("one.txt"), common::content(1, 5000)).unwrap();
    std::fs::write(host.join("sub/two.bin"), common::content(2, 300_000)).unwrap();
    ok(EDIT, &["-q", s(&img), "pfs-create", "EXTRA"]);
    ok(EDIT, &["-q", "--pfs", "EXTRA", s(&img), "put", s(&host.join("one.txt")), "/one.txt"]);
    ok(EDIT, &["-q", "--pfs", "EXTRA", s(&img), "mkdir", "/sub"]);
    ok(EDIT, &["-q", "--pfs", "EXTRA", s(&img), "put", s(&host.join("sub/two.bin")), "/sub/two.bin"]);
    let reference = dir.path().join("ref");
    ok(EDIT, &["--pfs", "EXTRA", s(&img), "get", "/", s(&reference)]);
    ok(EDIT, &["-q", s(&img), "pfs-delete", "EXTRA"]);
    assert!(!run(EDIT, &["--pfs", "EXTRA", s(&img), "ls", "/"]).status.success());
    let out = dir.path().join("out");
    ok(RECOVER, &["files", "--latest", "--pfs", "EXTRA", s(&img), "/", s(&out)]);
    assert_same_tree(&reference, &out);
}

#[test]
fn after_bulkfree_and_new_writes_no_byte_is_wrong() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    let blocks = {
        let fs = Hammer2::open_path(s(&img)).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let ino = pfs.resolve("/big-40m.bin").unwrap();
        let mut out = Vec::new();
        data_blocks(&fs, ino.blockset(), &mut out);
        out
    };
    assert!(blocks.len() > 8);
    ok(EDIT, &["-q", s(&img), "rm", "big-40m.bin"]);
    ok(EDIT, &["-q", s(&img), "bulkfree"]);
    let filler = dir.path().join("filler");
    std::fs::write(&filler, common::content(7, 24 << 20)).unwrap();
    ok(EDIT, &["-q", s(&img), "put", s(&filler), "/filler.bin"]);
    // New writes over part of the freed space: every third block of the
    // removed file gets other bytes, as an allocation reusing it would.
    {
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        for b in blocks.iter().step_by(3) {
            f.write_all_at(&common::content(b.offset(), b.physical_size() as usize), b.offset()).unwrap();
        }
    }
    let out = dir.path().join("out");
    let o = run(RECOVER, &["files", "--latest", s(&img), "/big-40m.bin", s(&out)]);
    let text = String::from_utf8_lossy(&o.stdout);
    let whole = out.join("big-40m.bin");
    let partial = out.join("big-40m.bin.partial");
    let want = std::fs::read(reference.join("big-40m.bin")).unwrap();
    assert!(!whole.exists(), "a file a third of whose blocks were overwritten is not whole: {text}");
    assert!(partial.exists(), "two thirds of its blocks are intact: written as partial: {text}");
    assert!(!o.status.success() && text.contains("partial"), "{text}");
    let got = std::fs::read(&partial).unwrap();
    assert_eq!(got.len(), want.len());
    // Lost ranges are holes (zeros); everything else is the original.
    let mut kept = 0;
    for (i, (g, w)) in got.chunks(1024).zip(want.chunks(1024)).enumerate() {
        assert!(g == w || g.iter().all(|&b| b == 0), "wrong bytes in KiB {i}");
        kept += (g == w && w.iter().any(|&b| b != 0)) as usize;
    }
    assert!(kept > 0, "the blocks left alone are recovered");
    // What bulkfree left alone is recovered as before.
    let out2 = dir.path().join("out2");
    ok(RECOVER, &["files", "--latest", s(&img), "/level00", s(&out2)]);
    assert_same_tree(&reference.join("level00"), &out2.join("level00"));
}

#[test]
fn a_removed_tree_on_a_multi_volume_set_is_recovered() {
    let dir = common::hosttree::scratch();
    let v0 = common::scratch_copy("multivol-0", dir.path());
    let v1 = common::scratch_copy("multivol-1", dir.path());
    let spec = format!("{}:{}", s(&v0), s(&v1));
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("d")).unwrap();
    std::fs::write(host.join("d/big.bin"), common::content(3, 3_000_000)).unwrap();
    std::fs::write(host.join("small.txt"), b"small\n").unwrap();
    std::os::unix::fs::symlink("small.txt", host.join("link")).unwrap();
    ok(EDIT, &["-q", &spec, "put", "-r", s(&host), "/src"]);
    let reference = dir.path().join("ref");
    ok(EDIT, &[&spec, "get", "/src", s(&reference)]);
    ok(EDIT, &["-q", &spec, "rm", "-r", "/src"]);
    let out = dir.path().join("out");
    ok(RECOVER, &["files", "--latest", &spec, "/src", s(&out)]);
    assert_same_tree(&reference, &out);
}

#[test]
fn a_tiny_memory_budget_spills_and_answers_the_same() {
    use hammer2::salvage::{self, ScanOptions};
    let dir = common::hosttree::scratch();
    let img = common::scratch_copy("varied", dir.path());
    ok(EDIT, &["-q", s(&img), "rm", "-r", "level00", "big-40m.bin"]);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let fs = Hammer2::open_path(s(&img)).unwrap();
    let roomy = salvage::scan(&fs, &ScanOptions::default(), None).unwrap();
    let tight = ScanOptions { memory: 16 << 10, tmpdir: Some(tmp.clone()), ..Default::default() };
    let small = salvage::scan(&fs, &tight, None).unwrap();
    assert!(!roomy.spilled() && small.spilled());
    assert!(roomy.stats.data_blocks > 100, "{:?}", roomy.stats);
    assert_eq!(roomy.stats.data_blocks, small.stats.data_blocks);
    let mut compared = 0;
    for ((pfs, inum), versions) in roomy.all() {
        assert_eq!(versions.len(), small.versions(pfs, inum).len());
        let a = roomy.data_blocks(pfs, inum).unwrap();
        let b = small.data_blocks(pfs, inum).unwrap();
        let keys = |v: &[hammer2::salvage::DataBlock]| -> Vec<(u64, u64)> {
            v.iter().map(|d| (d.bref.key.get(), d.bref.data_off.get())).collect()
        };
        assert_eq!(keys(&a), keys(&b), "inode {inum}");
        compared += a.len();
    }
    assert_eq!(compared as u64, roomy.stats.data_blocks);
    // The spill files are unlinked: nothing is left in the directory.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    // The command line: the same listing with a budget it cannot keep.
    let a = ok(RECOVER, &["list", "--json", s(&img)]);
    let b = ok(RECOVER, &["list", "--json", "--memory", "16K", "--tmpdir", s(&tmp), s(&img)]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&a).unwrap(), serde_json::from_str(&b).unwrap());
    assert_eq!(a["found"], b["found"]);
}

#[test]
fn blocks_without_check_codes_are_used_only_when_relaxed() {
    let dir = common::hosttree::scratch();
    let (img, reference) = varied_with_reference(dir.path());
    ok(EDIT, &["-q", s(&img), "setcheck", "--rewrite", "none", "/just-over-512.bin"]);
    ok(EDIT, &["-q", s(&img), "rm", "just-over-512.bin"]);
    let strict = dir.path().join("strict");
    let o = run(RECOVER, &["files", "--latest", s(&img), "/just-over-512.bin", s(&strict)]);
    assert!(!o.status.success(), "nothing vouches for its data: not whole");
    assert!(!strict.join("just-over-512.bin").exists());
    assert!(strict.join("just-over-512.bin.partial").exists());
    let relaxed = dir.path().join("relaxed");
    let text = ok(RECOVER, &["files", "--latest", "--relaxed", s(&img), "/just-over-512.bin", s(&relaxed)]);
    assert!(text.contains("unverified"), "{text}");
    assert!(common::hosttree::same_contents(
        &relaxed.join("just-over-512.bin"),
        &reference.join("just-over-512.bin")
    ));
}

#[test]
fn a_snapshot_and_its_source_share_blocks_and_both_are_recovered() {
    let dir = common::hosttree::scratch();
    let img = common::scratch_copy("pfs-snapshot", dir.path());
    for label in ["snap1", "DATA"] {
        let reference = dir.path().join(format!("ref-{label}"));
        ok(EDIT, &["--pfs", label, s(&img), "get", "/", s(&reference)]);
        let out = dir.path().join(format!("out-{label}"));
        ok(RECOVER, &["files", "--latest", "--pfs", label, s(&img), "/", s(&out)]);
        assert_same_tree(&reference, &out);
    }
}

#[test]
fn the_freemap_replay_keeps_its_command_lines() {
    let dir = common::hosttree::scratch();
    let img = common::scratch_copy("varied", dir.path());
    let a = ok(RECOVER, &["-n", s(&img)]);
    let b = ok(RECOVER, &["freemap", "-n", s(&img)]);
    assert_eq!(a, b);
    assert!(a.contains("no recovery needed"), "{a}");
    let o = run(RECOVER, &[]);
    assert_eq!(o.status.code(), Some(2), "a device is required");
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn everything_the_reference_recover_finds_we_find() {
    let tools = common::oracle::reftools();
    let dir = common::hosttree::scratch();
    let (img, _) = varied_with_reference(dir.path());
    ok(EDIT, &["-q", s(&img), "rm", "exec.sh", "just-over-512.bin"]);
    for name in ["exec.sh", "just-over-512.bin", "a"] {
        let theirs = dir.path().join(format!("theirs-{name}"));
        let ours = dir.path().join(format!("ours-{name}"));
        // The reference tool wants DEST to exist.
        std::fs::create_dir_all(&theirs).unwrap();
        let o = Command::new(tools.join("hammer2"))
            .args(["recover", s(&img), name, s(&theirs)])
            .output()
            .unwrap();
        assert!(o.status.code().is_some(), "the reference tool crashed");
        ok(RECOVER, &["files", s(&img), name, s(&ours)]);
        for (rel, m) in common::hosttree::host_entries(&theirs) {
            let mine = ours.join(&rel);
            assert!(mine.exists(), "the reference recovered {} and we did not", rel.display());
            if m.is_file() {
                assert!(common::hosttree::same_contents(&theirs.join(&rel), &mine), "{}", rel.display());
            }
        }
    }
}
