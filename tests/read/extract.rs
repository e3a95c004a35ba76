//! Extraction reproduces every fixture's manifest: paths, types, modes,
//! sizes, content hashes and link targets; hard links share an inode; the
//! snapshot holds the same tree as its origin.

use hammer2::host::extract::extract;
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
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
    let text =
        std::fs::read_to_string(crate::common::fixtures_dir().join(format!("{name}.manifest"))).unwrap();
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

fn extract_all(image: &str, pfs: Option<&str>, dest: &Path) -> hammer2::host::extract::ExtractStats {
    let fs = Hammer2::open_path(crate::common::fixture(image).to_str().unwrap()).unwrap();
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
    let fs = Hammer2::open_path(crate::common::fixture("pfs-snapshot").to_str().unwrap()).unwrap();
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
    let fs = Hammer2::open_path(crate::common::fixture("small-iscsi").to_str().unwrap()).unwrap();
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
        assert!(hammer2::host::extract::check_name(bad, 7, "/d").is_err(), "{bad:?}");
    }
    let err = hammer2::host::extract::check_name(b"..", 7, "/d").unwrap_err().to_string();
    assert!(err.contains("inode 7"), "{err}");
}

// ------------------------------------------------------------ hostile images and destinations

use crate::common::reseal::{find_chain, reseal, Image};
use hammer2::format::{BlockrefType, InodeMeta, ObjType};
use hammer2::host::extract::{extract_with, ExtractOptions, ModePolicy};
use hammer2::read::namespace::{self, Finding, FindingKind, Limits, Step, Visitor};
use hammer2::read::view::ViewInode;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use zerocopy::IntoBytes;

fn opts(force: bool) -> ExtractOptions {
    ExtractOptions { force, modes: ModePolicy::Umask(0o022), limits: None, threads: 0 }
}

/// Extracts `path` of the default PFS of `img` into `dest`.
fn get(
    img: &str,
    path: &str,
    dest: &Path,
    o: &ExtractOptions,
) -> hammer2::Result<hammer2::host::extract::ExtractStats> {
    let fs = Hammer2::open_path(img).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    extract_with(&pfs, path, dest, o, &mut |_| {})
}

/// Inode number of `path` in the default PFS of `img`.
fn inum_of(img: &str, path: &str) -> u64 {
    let fs = Hammer2::open_path(img).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    pfs.resolve(path).unwrap().inum()
}

fn dirent_named(img: &Image, b: &hammer2::format::Blockref, name: &[u8]) -> bool {
    let _ = img;
    b.kind() == BlockrefType::Dirent
        && b.dirent().namlen.get() as usize == name.len()
        && &b.check[..name.len()] == name
}

/// Rewrites the first dirent that `pred` accepts and reseals the image.
fn rewrite_dirent(
    img: &Image,
    pred: &dyn Fn(&Image, &hammer2::format::Blockref) -> bool,
    edit: &dyn Fn(&mut hammer2::format::Blockref),
) {
    let (copy, chain) = find_chain(img, pred);
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    edit(&mut b);
    img.write(pos, b.as_bytes());
    reseal(img, copy, &chain);
}

/// A host directory with a recognisable mode and time, to prove it is left alone.
struct Witness {
    path: PathBuf,
}

impl Witness {
    const MODE: u32 = 0o751;
    const MTIME: u64 = 1_000_000_000;
    fn new(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(Self::MODE)).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(Self::MTIME)).unwrap();
        Witness { path }
    }
    fn assert_untouched(&self, names: &[&str]) {
        let m = std::fs::metadata(&self.path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, Self::MODE, "{}: mode changed", self.path.display());
        assert_eq!(m.mtime() as u64, Self::MTIME, "{}: mtime changed", self.path.display());
        let mut got: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, names, "{}: entries", self.path.display());
    }
}

/// small-iscsi with the root entry "dir" renamed "..": the directory
/// holding data.bin is then named ".." in the root.
fn dotdot_image() -> Image {
    let img = Image::new("small-iscsi");
    rewrite_dirent(&img, &|i, b| dirent_named(i, b, b"dir"), &|b| {
        b.check[..2].copy_from_slice(b"..");
        b.dirent_mut().namlen = 2.into();
    });
    img
}

#[test]
fn a_dotdot_entry_cannot_lead_outside_the_destination() {
    let img = dotdot_image();
    let top = tempfile::tempdir().unwrap();
    let out = Witness::new(top.path().join("out"));
    let dest = out.path.join("dest");

    // The user's own path: '..' is refused before anything is created.
    let e = get(img.spec(), "/..", &dest, &opts(false)).unwrap_err();
    assert!(matches!(e, hammer2::Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains("'..'"), "{e}");
    out.assert_untouched(&[]);

    // The name from the image: refused with its path and inode number.
    std::fs::create_dir(&dest).unwrap();
    let out = Witness { path: out.path };
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(Witness::MTIME);
    std::fs::File::open(&out.path).unwrap().set_modified(mtime).unwrap();
    let e = get(img.spec(), "/", &dest, &opts(false)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, hammer2::Error::HostileName { .. }), "{msg}");
    assert!(msg.contains("/.. (inode ") && msg.contains("'.' or '..'"), "{msg}");
    out.assert_untouched(&["dest"]);
    assert!(!out.path.join("data.bin").exists());
    // Even with --force.
    assert!(get(img.spec(), "/", &dest, &opts(true)).is_err());
    out.assert_untouched(&["dest"]);
}

#[test]
fn the_users_path_is_checked_component_by_component() {
    let img = crate::common::fixture("small-iscsi");
    let img = img.to_str().unwrap();
    for root in ["", ".", "/", "/./", "//."] {
        let d = tempfile::tempdir().unwrap();
        let st = get(img, root, d.path(), &opts(false)).unwrap();
        assert_eq!(st.files, 2, "{root:?}");
        assert!(d.path().join("hello.txt").exists() && d.path().join("dir/data.bin").exists(), "{root:?}");
    }
    let d = tempfile::tempdir().unwrap();
    get(img, "./dir/", d.path(), &opts(false)).unwrap();
    assert!(d.path().join("dir/data.bin").exists());
    for bad in ["/dir/..", "/dir/../hello.txt", "..", "/hello\0.txt"] {
        let d = tempfile::tempdir().unwrap();
        let e = get(img, bad, d.path(), &opts(false)).unwrap_err();
        assert!(matches!(e, hammer2::Error::InvalidArgument(_)), "{bad:?}: {e}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "{bad:?} wrote something");
    }
    assert!(matches!(
        get(img, "/hello.txt/x", d.path(), &opts(false)),
        Err(hammer2::Error::NotADirectory(_))
    ));
}

#[test]
fn the_destination_is_created_but_not_its_parents() {
    let img = crate::common::fixture("small-iscsi");
    let top = tempfile::tempdir().unwrap();
    let e = get(img.to_str().unwrap(), "/", &top.path().join("a/b"), &opts(false)).unwrap_err();
    assert!(e.to_string().contains("parent directory does not exist"), "{e}");
    assert_eq!(std::fs::read_dir(top.path()).unwrap().count(), 0);
    std::fs::write(top.path().join("file"), b"x").unwrap();
    let e = get(img.to_str().unwrap(), "/", &top.path().join("file"), &opts(false)).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn an_existing_destination_needs_force_and_is_then_replaced_as_tar_does() {
    let img = crate::common::fixture("small-iscsi");
    let img = img.to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("out");
    get(img, "/", &dest, &opts(false)).unwrap();
    // A second run is refused before anything changes.
    std::fs::write(dest.join("hello.txt"), b"edited").unwrap();
    let e = get(img, "/", &dest, &opts(false)).unwrap_err();
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"edited");
    // So is a directory's or a file's name already taken.
    let e = get(img, "/dir", &dest, &opts(false)).unwrap_err();
    assert!(e.to_string().contains("not an empty directory") && e.to_string().contains("--force"), "{e}");
    let e = get(img, "/hello.txt", &dest, &opts(false)).unwrap_err();
    assert!(e.to_string().contains("already exists; use --force"), "{e}");
    // An empty directory may be filled.
    std::fs::create_dir(d.path().join("empty")).unwrap();
    get(img, "/", &d.path().join("empty"), &opts(false)).unwrap();
    std::fs::create_dir(d.path().join("empty/x")).unwrap();
    std::fs::create_dir(d.path().join("empty/x/dir")).unwrap();
    get(img, "/dir", &d.path().join("empty/x"), &opts(false)).unwrap();
    assert_eq!(std::fs::metadata(d.path().join("empty/x/dir/data.bin")).unwrap().len(), 100_000);

    // --force: files are unlinked and created anew (a planted symlink is
    // replaced, never written through), directories reused, other entries kept.
    let trap = tempfile::tempdir().unwrap();
    std::fs::remove_file(dest.join("hello.txt")).unwrap();
    symlink(trap.path().join("victim"), dest.join("hello.txt")).unwrap();
    std::fs::write(dest.join("dir/data.bin"), b"short").unwrap();
    std::fs::write(dest.join("dir/mine.txt"), b"mine").unwrap();
    let st = get(img, "/", &dest, &opts(true)).unwrap();
    assert_eq!((st.files, st.dirs), (2, 1));
    assert!(!trap.path().join("victim").exists());
    assert!(std::fs::symlink_metadata(dest.join("hello.txt")).unwrap().is_file());
    assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello, hammer2\n");
    assert_eq!(std::fs::metadata(dest.join("dir/data.bin")).unwrap().len(), 100_000);
    assert_eq!(std::fs::read(dest.join("dir/mine.txt")).unwrap(), b"mine");
    // A symlink where a directory goes is replaced by a real directory.
    std::fs::remove_dir_all(dest.join("dir")).unwrap();
    symlink(trap.path(), dest.join("dir")).unwrap();
    get(img, "/", &dest, &opts(true)).unwrap();
    assert!(std::fs::symlink_metadata(dest.join("dir")).unwrap().is_dir());
    assert_eq!(std::fs::read_dir(trap.path()).unwrap().count(), 0, "nothing written through the symlink");
    // A directory where a file goes is not removed.
    std::fs::remove_file(dest.join("hello.txt")).unwrap();
    std::fs::create_dir(dest.join("hello.txt")).unwrap();
    let e = get(img, "/", &dest, &opts(true)).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
}

#[test]
fn a_directory_inside_itself_is_refused_with_its_path_and_inode() {
    let img = Image::new("small-iscsi");
    let dir = inum_of(img.spec(), "/dir");
    // dir/data.bin now names dir itself.
    rewrite_dirent(&img, &|i, b| dirent_named(i, b, b"data.bin"), &|b| {
        b.dirent_mut().inum = dir.into();
        b.dirent_mut().type_ = 1;
    });
    let d = tempfile::tempdir().unwrap();
    let msg = get(img.spec(), "/", d.path(), &opts(false)).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("/dir/data.bin (inode {dir})"))
            && msg.contains("contains itself: it is also its ancestor /dir"),
        "{msg}"
    );
}

/// varied has level00/level01/.../level40, each level holding leaf.txt and
/// the next level. Every leaf.txt is made to name the next level too: 40
/// levels of two entries naming one directory spell 2^40 paths.
fn dag_image() -> (Image, usize) {
    let img = Image::new("varied");
    let mut next = std::collections::HashMap::new();
    {
        let fs = Hammer2::open_path(img.spec()).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let mut cur = pfs.resolve("/level00").unwrap();
        loop {
            let entries = pfs.readdir(&cur).unwrap();
            let leaf = entries.iter().find(|e| e.name == b"leaf.txt").map(|e| e.inum);
            let sub = entries.iter().find(|e| e.name.starts_with(b"level")).map(|e| e.inum);
            match (leaf, sub) {
                (Some(l), Some(s)) => {
                    next.insert(l, s);
                    cur = pfs.inode(s).unwrap();
                }
                _ => break,
            }
        }
    }
    assert!(next.len() >= 20, "varied's levels: {}", next.len());
    for _ in 0..next.len() {
        rewrite_dirent(
            &img,
            &|i, b| dirent_named(i, b, b"leaf.txt") && next.contains_key(&b.dirent().inum.get()),
            &|b| {
                let to = next[&b.dirent().inum.get()];
                b.dirent_mut().inum = to.into();
                b.dirent_mut().type_ = 1;
            },
        );
    }
    (img, next.len())
}

/// Counts what the traversal shows, tolerating findings.
#[derive(Default)]
struct Census {
    entered: std::collections::HashMap<u64, u32>,
    entries: u64,
    findings: Vec<Finding>,
}

impl<'a> Visitor<'a> for Census {
    fn entry(&mut self, e: &namespace::Entry<'_, 'a>) -> hammer2::Result<Step> {
        self.entries += 1;
        if e.inode.data.is_dir() {
            *self.entered.entry(e.inode.data.inum()).or_default() += 1;
        }
        Ok(Step::Descend)
    }
    fn finding(&mut self, f: &Finding) -> hammer2::Result<()> {
        self.findings.push(f.clone());
        Ok(())
    }
}

fn census(img: &str, limits: Limits) -> (hammer2::Result<namespace::NamespaceStats>, Census) {
    let fs = Hammer2::open_path(img).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let mut c = Census::default();
    let r = namespace::traverse(&pfs, &ViewInode::on_media(&pfs.root), "/", limits, &mut c);
    (r, c)
}

#[test]
fn a_dag_of_directories_is_entered_once() {
    let (img, shared) = dag_image();
    // Extraction stops at the first directory reached a second time.
    let d = tempfile::tempdir().unwrap();
    let msg = get(img.spec(), "/", d.path(), &opts(false)).unwrap_err().to_string();
    assert!(msg.contains("/leaf.txt (inode ") && msg.contains("reached a second time"), "{msg}");
    // A visitor that tolerates findings sees every directory once.
    let (r, c) = census(img.spec(), Limits::default());
    let stats = r.unwrap();
    assert!(c.entered.values().all(|&n| n == 1), "a directory entered twice");
    assert_eq!(c.findings.len(), shared, "{:?}", c.findings.first());
    assert!(c.findings.iter().all(|f| matches!(f.kind, FindingKind::Revisited { ancestor: None })));
    assert_eq!(stats.findings, shared as u64);
    // Untouched varied: 3,100-odd entries. The DAG adds none.
    let (r, clean) = census(crate::common::fixture("varied").to_str().unwrap(), Limits::default());
    let clean_stats = r.unwrap();
    assert!(clean.findings.is_empty());
    assert_eq!(clean_stats.entries, stats.entries);
    assert_eq!(clean_stats.directories, stats.directories);
}

#[test]
fn depth_and_work_are_bounded() {
    let varied = crate::common::fixture("varied");
    let varied = varied.to_str().unwrap();
    let (r, c) = census(varied, Limits { max_depth: 10, max_entries: u64::MAX });
    r.unwrap();
    let deep: Vec<_> = c.findings.iter().filter(|f| f.kind == FindingKind::TooDeep(10)).collect();
    assert!(!deep.is_empty(), "{:?}", c.findings);
    assert!(deep.iter().all(|f| f.path.matches('/').count() == 10), "{deep:?}");
    let e = census(varied, Limits { max_depth: 64, max_entries: 100 }).0.unwrap_err().to_string();
    assert!(e.contains("more than 100 directory entries") && e.contains("(inode "), "{e}");
    // Extraction refuses too deep a tree rather than stopping silently.
    let fs = Hammer2::open_path(varied).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let d = tempfile::tempdir().unwrap();
    let o = ExtractOptions { limits: Some(Limits { max_depth: 10, max_entries: u64::MAX }), ..opts(false) };
    let e = extract_with(&pfs, "/level00", d.path(), &o, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 10 levels") && e.contains("(inode "), "{e}");
}

#[test]
fn modes_follow_tar_for_the_invoking_user() {
    let d = tempfile::tempdir().unwrap();
    let fs = Hammer2::open_path(crate::common::fixture("varied").to_str().unwrap()).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let o = ExtractOptions { modes: ModePolicy::Umask(0o027), ..opts(false) };
    extract_with(&pfs, "/", d.path(), &o, &mut |_| {}).unwrap();
    let mode = |p: &str| std::fs::symlink_metadata(d.path().join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("exec.sh"), 0o750);
    assert_eq!(mode("hello.txt"), 0o640);
    assert_eq!(mode("a/b"), 0o750);
    assert_eq!(mode(""), 0o750, "the destination stands for the root directory");

    // A setuid, setgid file owned by uid/gid 4242 in the image.
    let img = Image::new("small-iscsi");
    let inum = inum_of(img.spec(), "/hello.txt");
    let (copy, chain) = find_chain(&img, &|i, b| {
        b.kind() == BlockrefType::Inode
            && u64::from_le_bytes(i.read(b.offset() + 0x58, 8).try_into().unwrap()) == inum
    });
    let ino = img.bref(*chain.last().unwrap()).offset();
    img.write(ino + std::mem::offset_of!(InodeMeta, mode) as u64, &0o6755u32.to_le_bytes());
    // The unix id is the last four bytes of the uid and gid UUIDs (hammer2::format::unix_xid).
    for field in [std::mem::offset_of!(InodeMeta, uid), std::mem::offset_of!(InodeMeta, gid)] {
        img.write(ino + field as u64 + 12, &4242u32.to_le_bytes());
    }
    reseal(&img, copy, &chain);
    let stored_uid = {
        let fs = Hammer2::open_path(img.spec()).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let ino = pfs.resolve("/hello.txt").unwrap();
        assert_eq!(ino.data.meta.mode.get() & 0o7777, 0o6755);
        assert_eq!(ino.obj_type(), ObjType::Regfile);
        ino.data.meta.unix_uid()
    };
    assert_eq!(stored_uid, 4242);

    let d = tempfile::tempdir().unwrap();
    get(
        img.spec(),
        "/hello.txt",
        d.path(),
        &ExtractOptions { modes: ModePolicy::Umask(0o022), ..opts(false) },
    )
    .unwrap();
    let m = std::fs::metadata(d.path().join("hello.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755, "setuid and setgid dropped");
    assert_eq!(m.uid(), unsafe { libc::geteuid() }, "owned by the invoking user");

    let d = tempfile::tempdir().unwrap();
    let r = get(
        img.spec(),
        "/hello.txt",
        d.path(),
        &ExtractOptions { modes: ModePolicy::Preserve, ..opts(false) },
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        r.unwrap();
        let m = std::fs::metadata(d.path().join("hello.txt")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o6755, "kept as stored");
        assert_eq!((m.uid(), m.gid()), (4242, 4242), "owner and group restored first");
    } else {
        // Without the right to give the file away, a setuid bit is never set.
        let e = r.unwrap_err().to_string();
        assert!(e.contains("chown"), "{e}");
        let m = std::fs::metadata(d.path().join("hello.txt")).unwrap();
        assert_eq!(m.permissions().mode() & 0o6000, 0);
    }
}

// ------------------------------------------------------------ extraction by several threads

use crate::common::content;
use crate::common::editor::{edit, edit_ok, fresh_image, text};
use std::collections::HashMap;

/// The varied host tree plus what stresses the pipeline: 400 small files in
/// 16 directories (more files in flight than threads), a file spanning
/// several write chunks with holes between and after its data, and hard
/// links to it made from directories walked before and after its own.
/// Directory times are set last, each its own, so that a file written
/// into a directory after its time was set would show.
fn build_busy_tree(root: &Path) {
    crate::common::hosttree::build_varied(root);
    for d in 0..16 {
        let dir = root.join(format!("many/d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..25 {
            std::fs::write(dir.join(format!("f{f:02}")), content(d * 100 + f, (f as usize * 997) % 9000))
                .unwrap();
        }
    }
    let big = std::fs::File::create(root.join("many/d07/big")).unwrap();
    {
        use std::os::unix::fs::FileExt;
        big.write_all_at(&content(77, 2_500_000), 0).unwrap();
        big.write_all_at(&content(78, 300_000), 3 << 20).unwrap();
    }
    big.set_len(5 << 20).unwrap();
    drop(big);
    // Modes a umask would cut from a new file.
    for (rel, mode) in [("many/d03/f01", 0o666), ("many/d04/f02", 0o777), ("many/d05/f03", 0o1755)] {
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::hard_link(root.join("many/d07/big"), root.join("many/d00/big-link")).unwrap();
    std::fs::hard_link(root.join("many/d07/big"), root.join("many/d15/big-link")).unwrap();
    let mut dirs: Vec<PathBuf> = walkdir(root).into_iter().filter(|p| p.is_dir()).collect();
    // Deepest first: setting a time does not change the parent's.
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, d) in dirs.iter().enumerate() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000 + i as u64 * 1000, 123_456_000);
        std::fs::File::open(d).unwrap().set_modified(t).unwrap();
    }
}

/// Every path below `root` (directories, files, symlinks), the root excluded.
fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn stats_key(s: &hammer2::host::extract::ExtractStats) -> (u64, u64, u64, u64, u64, usize) {
    (s.files, s.dirs, s.symlinks, s.hardlinks, s.bytes, s.skipped.len())
}

#[test]
fn any_number_of_threads_extracts_the_same_tree_with_times_set_after_contents() {
    let top = tempfile::tempdir().unwrap();
    let host = top.path().join("tree");
    build_busy_tree(&host);
    let (_, spec) = fresh_image(top.path(), "busy.img");
    edit_ok(&[&spec, "put", "-r", host.to_str().unwrap(), "/t"]);
    // What the command line extracts (one thread per core), against the host.
    crate::common::hosttree::compare_extracted(&host, &spec, None, "/t");

    let fs = Hammer2::open_path(&spec).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let mut first: Option<(u64, u64, u64, u64, u64, usize)> = None;
    for threads in [1, 2, 8] {
        let out = top.path().join(format!("out{threads}"));
        std::fs::create_dir(&out).unwrap();
        let o = ExtractOptions { threads, modes: ModePolicy::Umask(0), ..opts(false) };
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let stats = extract_with(&pfs, "/t", &out, &o, &mut |s| seen.push((s.files, s.bytes))).unwrap();
        // Progress: one report per file finished, counts never going back.
        assert!(seen.windows(2).all(|w| w[1].0 <= w[0].0 + 1 && w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        assert_eq!(seen.last().map(|s| s.0), Some(stats.files), "{threads} threads");
        assert_eq!(seen.iter().filter(|s| s.0 > 0).map(|s| s.0).max(), Some(stats.files));
        assert_eq!(
            *first.get_or_insert(stats_key(&stats)),
            stats_key(&stats),
            "{threads} threads: {stats:?}"
        );
        assert_eq!(stats.hardlinks, 2 + 1 + 2, "{threads} threads: {stats:?}");

        let got = out.join("t");
        let mut inodes: HashMap<u64, u64> = HashMap::new();
        for p in walkdir(&host) {
            let rel = p.strip_prefix(&host).unwrap();
            let what = format!("{threads} threads: {}", rel.display());
            let m = std::fs::symlink_metadata(&p).unwrap();
            let x = got.join(rel);
            let t = m.file_type();
            if !(t.is_dir() || t.is_file() || t.is_symlink()) {
                continue;
            }
            let xm = std::fs::symlink_metadata(&x).unwrap_or_else(|e| panic!("{what}: {e}"));
            if t.is_symlink() {
                assert_eq!(std::fs::read_link(&x).unwrap(), std::fs::read_link(&p).unwrap(), "{what}");
                continue;
            }
            // Times and modes of directories and files alike: set after
            // everything written into them.
            assert_eq!(
                (xm.mtime(), xm.mtime_nsec() / 1000),
                (m.mtime(), m.mtime_nsec() / 1000),
                "{what}: mtime"
            );
            assert_eq!(xm.mode() & 0o7777, m.mode() & 0o1777, "{what}: mode");
            if t.is_file() {
                assert_eq!(xm.len(), m.len(), "{what}: size");
                assert!(std::fs::read(&x).unwrap() == std::fs::read(&p).unwrap(), "{what}: contents");
                let one = *inodes.entry(m.ino()).or_insert(xm.ino());
                assert_eq!(xm.ino(), one, "{what}: hard links share one inode");
            }
        }
        // Holes stay holes, in files spanning several write chunks too.
        for (rel, data) in [("sparse", 70_000 + 6), ("many/d07/big", 2_800_000)] {
            let xm = std::fs::metadata(got.join(rel)).unwrap();
            assert!(
                xm.blocks() * 512 < data + (1 << 20),
                "{threads} threads: {rel} takes {} blocks",
                xm.blocks()
            );
        }
    }
    // As root, owners are restored (where they differ from root's) and
    // modes kept whole.
    if crate::common::hosttree::is_root() {
        let out = top.path().join("preserved");
        std::fs::create_dir(&out).unwrap();
        let o = ExtractOptions { modes: ModePolicy::Preserve, ..opts(false) };
        extract_with(&pfs, "/t", &out, &o, &mut |_| {}).unwrap();
        let mut foreign = 0;
        for p in walkdir(&host) {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if !(m.is_file() || m.is_dir()) {
                continue;
            }
            let rel = p.strip_prefix(&host).unwrap();
            let xm = std::fs::symlink_metadata(out.join("t").join(rel)).unwrap();
            assert_eq!((xm.uid(), xm.gid(), xm.mode()), (m.uid(), m.gid(), m.mode()), "{}", rel.display());
            foreign += (m.uid() != 0) as u32;
        }
        assert!(foreign > 0, "the tree has files of another owner");
    }
}

/// Regular files of the default PFS of `img` in the order extraction
/// meets them, with their inodes' blocksets' first DATA blockref.
fn files_in_order(img: &str) -> Vec<(String, u64, u64, Option<hammer2::format::Blockref>)> {
    struct Order(Vec<(String, u64, u64, Option<hammer2::format::Blockref>)>);
    impl<'a> Visitor<'a> for Order {
        fn entry(&mut self, e: &namespace::Entry<'_, 'a>) -> hammer2::Result<Step> {
            if e.inode.data.obj_type() == ObjType::Regfile {
                let set: &[hammer2::format::Blockref] =
                    if e.inode.data.meta.is_directdata() { &[] } else { e.inode.data.blockset() };
                let data = set.iter().find(|b| b.kind() == BlockrefType::Data && b.radix() != 0);
                self.0.push((e.path(), e.inode.data.inum(), e.inode.data.meta.size.get(), data.copied()));
            }
            Ok(Step::Descend)
        }
    }
    let fs = Hammer2::open_path(img).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    let mut v = Order(Vec::new());
    namespace::traverse(&pfs, &ViewInode::on_media(&pfs.root), "/", Limits::default(), &mut v).unwrap();
    v.0
}

#[test]
fn a_corrupt_block_amid_many_files_is_reported_with_its_path_as_one_thread_would() {
    let img = Image::new("varied");
    let files = files_in_order(img.spec());
    let want = manifest("varied");
    // A file near the middle of the walk whose first data block is direct.
    let (at, (path, inum, _, bref)) = files
        .iter()
        .enumerate()
        .skip(files.len() / 2)
        .find(|(_, f)| f.3.is_some() && f.2 > 4096)
        .expect("a file with direct data blocks");
    let bref = bref.unwrap();
    assert_ne!(bref.check_method(), hammer2::format::CheckMethod::None, "{path}: its block has a check code");
    let mut media = img.read(bref.offset(), 16);
    media.iter_mut().for_each(|b| *b ^= 0x5a);
    img.write(bref.offset(), &media);

    let mut messages = Vec::new();
    for threads in [1, 4] {
        let d = tempfile::tempdir().unwrap();
        let o = ExtractOptions { threads, ..opts(false) };
        let err = get(img.spec(), "/", d.path(), &o).unwrap_err();
        // The file is named and the corruption keeps its kind.
        match &err {
            hammer2::Error::InFile { path: p, inum: i, source } => {
                assert_eq!((p.as_str(), *i), (path.as_str(), *inum));
                assert!(
                    matches!(**source, hammer2::Error::Corrupt(ref c) if matches!(c.kind, hammer2::error::CorruptKind::CheckMismatch { .. })),
                    "{source}"
                );
            }
            e => panic!("{threads} threads: {e:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{path} (inode {inum})"))
                && msg.contains("check code")
                && msg.contains(&format!("data_off {:#x}", bref.data_off.get())),
            "{threads} threads: {msg}"
        );
        // Every file the walk meets before it is there, whole.
        for (p, ..) in &files[..at] {
            let rel = p.trim_start_matches('/');
            let host = d.path().join(rel);
            let sha = hex(&sha2::Sha256::digest(std::fs::read(&host).unwrap_or_else(|e| panic!("{p}: {e}"))));
            assert_eq!(sha, want[rel].what, "{threads} threads: {p}");
        }
        messages.push(msg);
    }
    assert_eq!(messages[0], messages[1], "the error does not depend on the number of threads");

    // The command line: `get` fails with that message, the script goes on.
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("script");
    let out = d.path().join("out");
    std::fs::write(&script, format!("get / {}\ncat /hello.txt\n", out.display())).unwrap();
    let o = edit(&["--keep-going", "-f", script.to_str().unwrap(), img.spec()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{path} (inode {inum})")) && err.contains("1 of 2 commands failed"),
        "{err}"
    );
    assert_eq!(text(&o.stdout), "hello, hammer2\n");
}

/// `get` inside a writing script is the same extraction, on the session's
/// state: image damage it meets there (a directory reached twice, nesting
/// past the limit, too many entries) is typed corruption, as on the
/// committed image, and the session's own changes are extracted with it.
#[test]
fn a_sessions_get_reports_image_damage_as_corruption() {
    use hammer2::error::CorruptKind;
    use hammer2::write::session::{Attrs, Session, SessionView};
    let namespace_kind = |e: &hammer2::Error| match e {
        hammer2::Error::Corrupt(c) => Some(c.kind.clone()),
        _ => None,
    };
    let (img, _) = dag_image();
    // Not a dry run; nothing is committed: the images are scratch copies.
    let mut s = Session::open(img.spec(), false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/fresh", Attrs::now(0o755), false).unwrap();
    let view = SessionView { session: &s, pfs: &pfs };
    let d = tempfile::tempdir().unwrap();
    let e = extract_with(&view, "/", &d.path().join("all"), &opts(false), &mut |_| {}).unwrap_err();
    assert!(matches!(namespace_kind(&e), Some(CorruptKind::Namespace { .. })), "{e:?}");
    assert!(e.to_string().contains("reached a second time"), "{e}");
    // The same error as the committed image gives (where the inode lies
    // aside: before a commit the session knows no blockref for it).
    let committed = get(img.spec(), "/", &d.path().join("committed"), &opts(false)).unwrap_err();
    let what = |e: &hammer2::Error| e.to_string().split(" at ").next().unwrap().to_string();
    assert_eq!(what(&e), what(&committed));
    // What the session made, away from the damage, extracts.
    let st = extract_with(&view, "/fresh", d.path(), &opts(false), &mut |_| {}).unwrap();
    assert!(d.path().join("fresh").is_dir() && st.dirs == 1, "{st:?}");

    // Bounds: nesting and entries.
    let scratch = tempfile::tempdir().unwrap();
    let spec = crate::common::scratch_copy("varied", scratch.path());
    let mut s = Session::open(spec.to_str().unwrap(), false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/fresh", Attrs::now(0o755), false).unwrap();
    let view = SessionView { session: &s, pfs: &pfs };
    let deep =
        ExtractOptions { limits: Some(Limits { max_depth: 10, max_entries: u64::MAX }), ..opts(false) };
    let e = extract_with(&view, "/level00", &d.path().join("deep"), &deep, &mut |_| {}).unwrap_err();
    assert!(matches!(namespace_kind(&e), Some(CorruptKind::Namespace { .. })), "{e:?}");
    assert!(e.to_string().contains("nested deeper than 10 levels"), "{e}");
    let few = ExtractOptions { limits: Some(Limits { max_depth: 64, max_entries: 100 }), ..opts(false) };
    let e = extract_with(&view, "/", &d.path().join("few"), &few, &mut |_| {}).unwrap_err();
    assert!(matches!(namespace_kind(&e), Some(CorruptKind::TooManyEntries { max: 100, .. })), "{e:?}");
}
