//! Extraction reproduces every fixture's manifest: paths, types, modes,
//! sizes, content hashes and link targets; hard links share an inode; the
//! snapshot holds the same tree as its origin.

mod common;

use hammer2::extract::extract;
use hammer2::pfs::Pfs;
use hammer2::tree::Tree;
use hammer2::Hammer2;
use sha2::Digest;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: String,
    size: u64,
    what: String,
}

fn manifest(name: &str) -> BTreeMap<String, Entry> {
    let text = std::fs::read_to_string(common::fixtures_dir().join(format!("{name}.manifest"))).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let e = Entry {
                kind: f[1].chars().next().unwrap(),
                mode: f[2].to_string(),
                size: f[3].parse().unwrap(),
                what: f[4].to_string(),
            };
            (f[0].to_string(), e)
        })
        .collect()
}

fn scan(root: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) {
    let mut names: Vec<_> =
        std::fs::read_dir(root.join(rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        let rel = if rel.is_empty() {
            n.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", n.to_string_lossy())
        };
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = format!("0o{:o}", m.permissions().mode() & 0o7777);
        let e = if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap().to_string_lossy().into_owned();
            Entry { kind: 'l', mode: "0o777".into(), size: t.len() as u64, what: t }
        } else if m.is_dir() {
            scan(root, &rel, out);
            Entry { kind: 'd', mode, size: 0, what: "-".into() }
        } else {
            let sha = hex(&sha2::Sha256::digest(std::fs::read(&p).unwrap()));
            Entry { kind: 'f', mode, size: m.len(), what: sha }
        };
        out.insert(rel, e);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn extract_all(image: &str, pfs: Option<&str>, dest: &Path) -> hammer2::extract::ExtractStats {
    let fs = Hammer2::open_path(common::fixture(image).to_str().unwrap()).unwrap();
    let tree = Tree::new(&fs);
    let pfs = match pfs {
        Some(l) => Pfs::find(&tree, l).unwrap(),
        None => Pfs::default(&tree).unwrap(),
    };
    extract(&pfs, "/", dest, &mut |_| {}).unwrap()
}

fn assert_matches_manifest(image: &str, manifest_name: &str, pfs: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let stats = extract_all(image, pfs, dir.path());
    let want = manifest(manifest_name);
    let mut got = BTreeMap::new();
    scan(dir.path(), "", &mut got);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{image}: missing {missing:?}, extra {extra:?}");
    for (path, w) in &want {
        assert_eq!(&got[path], w, "{image}: {path}");
    }
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    if want.contains_key("hardlink-to-hello.txt") {
        let a = std::fs::metadata(dir.path().join("hello.txt")).unwrap();
        let b = std::fs::metadata(dir.path().join("hardlink-to-hello.txt")).unwrap();
        assert_eq!(a.ino(), b.ino(), "{image}: the hard link shares one inode");
        assert_eq!(stats.hardlinks, 1);
    }
}

#[test]
fn small_iscsi_matches_its_manifest() {
    assert_matches_manifest("small-iscsi", "small-iscsi", None);
}

#[test]
fn pfs_snapshot_data_and_snap1_match_the_manifest() {
    assert_matches_manifest("pfs-snapshot", "pfs-snapshot", None);
    assert_matches_manifest("pfs-snapshot", "pfs-snapshot", Some("snap1"));
}

#[test]
fn varied_matches_its_manifest() {
    assert_matches_manifest("varied", "varied", None);
}

#[test]
fn varied_zlib_matches_its_manifest() {
    assert_matches_manifest("varied-zlib", "varied-zlib", None);
}

#[test]
fn pfs_list_of_the_snapshot_fixture() {
    let fs = Hammer2::open_path(common::fixture("pfs-snapshot").to_str().unwrap()).unwrap();
    let tree = Tree::new(&fs);
    let mut names: Vec<String> = Pfs::list(&tree).unwrap().iter().map(|p| p.name()).collect();
    names.sort();
    assert_eq!(names, ["DATA", "EXTRA", "LOCAL", "snap1"]);
    let snap = Pfs::find(&tree, "snap1").unwrap();
    assert_eq!(snap.root.data.meta.pfs_subtype(), hammer2::format::PfsSubtype::Snapshot);
}

#[test]
fn single_files_and_hostile_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Hammer2::open_path(common::fixture("small-iscsi").to_str().unwrap()).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let st = extract(&pfs, "/dir/data.bin", dir.path(), &mut |_| {}).unwrap();
    assert_eq!((st.files, st.bytes), (1, 100_000));
    assert_eq!(std::fs::metadata(dir.path().join("data.bin")).unwrap().len(), 100_000);
    // An entry already present (here a planted symlink) is never written through.
    let trap = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(trap.path().join("victim"), dir.path().join("hello.txt")).unwrap();
    assert!(extract(&pfs, "/hello.txt", dir.path(), &mut |_| {}).is_err());
    assert!(!trap.path().join("victim").exists());
    assert!(matches!(extract(&pfs, "/nope", dir.path(), &mut |_| {}), Err(hammer2::Error::NotFound(_))));
    for bad in [&b".."[..], b".", b"a/b", b"", b"x\0y"] {
        assert!(hammer2::extract::check_name(bad, 7, "/d").is_err(), "{bad:?}");
    }
    let err = hammer2::extract::check_name(b"..", 7, "/d").unwrap_err().to_string();
    assert!(err.contains("inode 7"), "{err}");
}
