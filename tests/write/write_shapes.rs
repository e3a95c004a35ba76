//! What our writers put on media is right on trees nobody wrote by hand:
//! seeded, randomized host trees whose shapes stress the on-disk
//! structures (a directory of thousands of entries with colliding hashes,
//! 100 nested directories, multi-GiB sparse files, every size boundary,
//! every compression and check method, many hard links, odd names, modes,
//! times and owners, a full image, several volumes, odd and minimal
//! sizes), written by `newfs_hammer2 --populate`, `hammer2_edit put -r`
//! and the editor's other write commands, then judged by every oracle
//! ([`hosttree::oracles_agree`]: both fscks, our reader, `get`, and
//! makefs, which is DragonFly's kernel code, reading, mounting and
//! bulkfreeing). Edit scripts on top (mv across directories, rm -r,
//! truncate, writes past the end, link removal) are applied to the host
//! tree and to the image alike and judged again.
//!
//! Every test prints its seed; `HAMMER2_SHAPES_SEED=N` replays (or varies)
//! it. The heavier variants are `#[ignore]`d: `cargo test --test write
//! write_shapes -- --ignored`.

use crate::common::hosttree::{self, both_fscks_clean, oracles_agree, scratch, shape_seed};
use crate::common::model::{Content, Fill, Rng};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn newfs(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(args).output().unwrap()
}

/// newfs_hammer2 -q ARGS, asserting success.
fn newfs_ok(args: &[&str]) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let out = newfs(&[&[OsStr::new("-q")], &args[..]].concat());
    assert!(out.status.success(), "newfs {args:?}: {}", text(&out));
}

/// hammer2_edit SPEC ARGS (arguments as bytes: names need not be UTF-8).
fn edit<S: AsRef<OsStr>>(spec: &str, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).arg(spec).args(args).output().unwrap()
}

fn edit_ok<S: AsRef<OsStr> + std::fmt::Debug>(spec: &str, args: &[S]) {
    let out = edit(spec, args);
    assert!(out.status.success(), "hammer2_edit {args:?}: {}", text(&out));
}

/// The image path of a PFS path: '/' joined with the host-relative one.
fn image_path(rel: &Path) -> OsString {
    let mut p = OsString::from("/");
    p.push(rel.as_os_str());
    p
}

/// Sets the atime and mtime of `host` and of `image_path` in the image to
/// `secs`: after edits, the directories whose entries changed (their
/// mtimes are "now" on either side) get one time again.
fn retime(spec: &str, host: &Path, paths: &[&str], secs: i64) {
    let mut args: Vec<OsString> = vec!["touch".into(), "-c".into(), "-d".into(), format!("@{secs}").into()];
    for p in paths {
        hosttree::set_times(&host.join(p.trim_start_matches('/')), (secs, 0), (secs, 0));
        args.push(p.into());
    }
    edit_ok(spec, &args);
}

/// `host` and the image in `dir` (`disk.img`).
struct Case {
    dir: tempfile::TempDir,
    host: PathBuf,
    img: PathBuf,
    spec: String,
}

impl Case {
    fn new() -> Case {
        let dir = scratch();
        let host = dir.path().join("tree");
        std::fs::create_dir_all(&host).unwrap();
        let img = dir.path().join("disk.img");
        let spec = img.to_str().unwrap().to_string();
        Case { dir, host, img, spec }
    }

    /// newfs_hammer2 -s SIZE [ARGS] --populate HOST
    fn populate(&self, size: &str, args: &[&str]) {
        let mut a = vec!["-s", size];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--populate", self.host.to_str().unwrap(), &self.spec]);
        newfs_ok(&a);
    }

    /// An empty image of `size`, then `put -r HOST/ENTRY /ENTRY` for every
    /// top-level entry of the host tree, as one transaction.
    fn put_each(&self, size: &str) {
        newfs_ok(&["-s", size, &self.spec]);
        let mut script = String::new();
        for e in std::fs::read_dir(&self.host).unwrap() {
            let name = e.unwrap().file_name();
            let name = name.to_str().expect("top-level names are UTF-8");
            let quoted = shlex::try_quote(self.host.join(name).to_str().unwrap()).unwrap().into_owned();
            script.push_str(&format!("put -r {quoted} /{}\n", shlex::try_quote(name).unwrap()));
        }
        let f = self.dir.path().join("script");
        std::fs::write(&f, script).unwrap();
        edit_ok(&self.spec, &["-q", "-f", f.to_str().unwrap()]);
    }

    fn oracles(&self) {
        oracles_agree(&self.host, &self.img, &self.spec, None, "/");
    }

    /// Removes `rel` (a file or a whole tree) on both sides.
    fn rm(&self, rels: &[PathBuf]) {
        let mut args: Vec<OsString> = vec!["rm".into(), "-r".into()];
        for rel in rels {
            let h = self.host.join(rel);
            if std::fs::symlink_metadata(&h).unwrap().is_dir() {
                std::fs::remove_dir_all(&h).unwrap();
            } else {
                std::fs::remove_file(&h).unwrap();
            }
            args.push(image_path(rel));
        }
        edit_ok(&self.spec, &args);
    }

    /// Renames `from` to `to` (both relative, `to` not existing) on both sides.
    fn mv(&self, from: &Path, to: &Path) {
        std::fs::rename(self.host.join(from), self.host.join(to)).unwrap();
        edit_ok(&self.spec, &[OsString::from("mv"), image_path(from), image_path(to)]);
    }

    fn truncate(&self, rel: &str, size: u64) {
        std::fs::OpenOptions::new().write(true).open(self.host.join(rel)).unwrap().set_len(size).unwrap();
        edit_ok(&self.spec, &["truncate", "-s", &size.to_string(), &format!("/{rel}")]);
    }

    /// Writes `data` at `offset` of `rel` on both sides.
    fn write_at(&self, rel: &str, offset: u64, data: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(self.host.join(rel)).unwrap();
        f.write_all_at(data, offset).unwrap();
        let src = self.dir.path().join("piece");
        std::fs::write(&src, data).unwrap();
        edit_ok(&self.spec, &["write", &format!("/{rel}"), &offset.to_string(), src.to_str().unwrap()]);
    }

    fn retime(&self, paths: &[&str]) {
        retime(&self.spec, &self.host, paths, 1_700_000_000);
    }
}

/// One directory of thousands of entries (random names of 1 to 255
/// bytes, groups of names sharing a 64-bit hash): the dirent table splits
/// into indirect blocks at several levels. Then a third of the names
/// removed, some moved to another directory, and finally the whole
/// directory removed with rm -r.
#[test]
fn a_directory_of_thousands_of_entries() {
    crate::common::oracle::without(a_directory_of_thousands_of_entries_scenario);
}

/// [`a_directory_of_thousands_of_entries`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_directory_of_thousands_of_entries_with_reference_tools() {
    a_directory_of_thousands_of_entries_scenario();
}

fn a_directory_of_thousands_of_entries_scenario() {
    let seed = shape_seed("a_directory_of_thousands_of_entries", 1);
    wide_directory(seed, 2500, 30);
}

#[test]
#[ignore = "heavy, and needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_directory_of_thirty_thousand_entries() {
    let seed = shape_seed("a_directory_of_thirty_thousand_entries", 11);
    wide_directory(seed, 30_000, 200);
}

fn wide_directory(seed: u64, n: usize, groups: usize) {
    let mut rng = Rng::new(seed);
    let c = Case::new();
    let colliding = hosttree::wide_dir(&c.host.join("wide"), &mut rng, n, groups);
    assert!(colliding.len() >= 2 * groups.min(10), "collision groups found: {colliding:?}");
    std::fs::create_dir_all(c.host.join("other")).unwrap();
    c.populate("1G", &[]);
    let shape = crate::common::model::shape(&c.spec).unwrap();
    assert!(shape.dir_depth >= 2, "{n} entries in one directory, indirect blocks {shape:?}");
    c.oracles();

    let mut names: Vec<OsString> =
        std::fs::read_dir(c.host.join("wide")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let gone: Vec<PathBuf> =
        names.iter().filter(|_| rng.chance(1, 3)).map(|n| Path::new("wide").join(n)).collect();
    c.rm(&gone);
    let kept: Vec<&OsString> = names.iter().filter(|n| c.host.join("wide").join(n).exists()).collect();
    for _ in 0..8 {
        let n = rng.pick(&kept);
        if c.host.join("wide").join(n).exists() {
            c.mv(&Path::new("wide").join(n), &Path::new("other").join(n));
        }
    }
    // Every member of a hash-collision group but one goes.
    let group_rm: Vec<PathBuf> = colliding
        .iter()
        .skip(1)
        .map(|n| Path::new("wide").join(n))
        .filter(|p| c.host.join(p).exists())
        .collect();
    c.rm(&group_rm);
    // Names of a group come back: they take the lowest free iteration of
    // their hash again.
    for rel in group_rm.iter().step_by(3).take(10) {
        let src = c.dir.path().join("again");
        std::fs::write(&src, rel.as_os_str().as_bytes()).unwrap();
        std::fs::copy(&src, c.host.join(rel)).unwrap();
        edit_ok(&c.spec, &[OsString::from("put"), src.into_os_string(), image_path(rel)]);
        let m = std::fs::metadata(c.dir.path().join("again")).unwrap();
        hosttree_set_mtime(&c.host.join(rel), &m);
    }
    c.retime(&["/", "/wide", "/other"]);
    crate::common::model::shape(&c.spec).unwrap();
    c.oracles();

    c.rm(&[PathBuf::from("wide")]);
    c.retime(&["/"]);
    c.oracles();
}

/// 100 nested directories (names of 1 to 200 bytes), imported by put -r;
/// then the subtree below level 50 moved to the top, and the one below
/// level 80 of it removed.
#[test]
fn one_hundred_nested_directories() {
    crate::common::oracle::without(one_hundred_nested_directories_scenario);
}

/// [`one_hundred_nested_directories`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn one_hundred_nested_directories_with_reference_tools() {
    one_hundred_nested_directories_scenario();
}

fn one_hundred_nested_directories_scenario() {
    let seed = shape_seed("one_hundred_nested_directories", 2);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    let bottom = hosttree::deep_dirs(&c.host.join("deep"), &mut rng, 100);
    c.put_each("1G");
    c.oracles();

    let rel = bottom.strip_prefix(&c.host).unwrap().to_path_buf();
    let parts: Vec<_> = rel.iter().collect();
    let level50: PathBuf = parts[..51].iter().collect();
    c.mv(&level50, Path::new("moved"));
    let moved: PathBuf = Path::new("moved").join(parts[51..81].iter().collect::<PathBuf>());
    c.rm(&[moved]);
    let p49: PathBuf = parts[..50].iter().collect();
    c.retime(&[
        "/",
        p49.to_str().unwrap(),
        &format!("/moved/{}", parts[51..80].iter().collect::<PathBuf>().display()),
    ]);
    c.oracles();
}

/// A multi-GiB file that is mostly holes: the image stays sparse, every
/// level of DATA indirect blocks is read back; then shrunk, grown and
/// written past its end. A smaller sparse file is read back by makefs
/// (the big one only in the heavy variant: makefs writes every byte).
#[test]
fn a_sparse_file_of_gibibytes() {
    crate::common::oracle::without(a_sparse_file_of_gibibytes_scenario);
}

/// [`a_sparse_file_of_gibibytes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_sparse_file_of_gibibytes_with_reference_tools() {
    a_sparse_file_of_gibibytes_scenario();
}

fn a_sparse_file_of_gibibytes_scenario() {
    let seed = shape_seed("a_sparse_file_of_gibibytes", 3);
    sparse_files(seed, 3 << 30, false);
}

#[test]
#[ignore = "heavy, and needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_sparse_file_of_gibibytes_read_by_makefs() {
    let seed = shape_seed("a_sparse_file_of_gibibytes_read_by_makefs", 13);
    sparse_files(seed, 4 << 30, true);
}

fn sparse_files(seed: u64, big: u64, makefs_reads_big: bool) {
    let mut rng = Rng::new(seed);
    let c = Case::new();
    std::fs::create_dir_all(c.host.join("big")).unwrap();
    hosttree::sparse_file(&c.host.join("big/huge"), &mut rng, big, 40);
    std::fs::create_dir_all(c.host.join("small")).unwrap();
    hosttree::sparse_file(&c.host.join("small/sparse"), &mut rng, 150 << 20, 20);
    c.put_each("2G");
    let stored = std::fs::metadata(&c.img).unwrap().blocks() * 512;
    assert!(stored < 64 << 20, "the image stores {stored} bytes: holes were written");
    let shape = crate::common::model::shape(&c.spec).unwrap();
    assert!(shape.file_depth >= 2, "a file of {big} bytes, indirect blocks {shape:?}");

    let check = |c: &Case| {
        if makefs_reads_big {
            c.oracles();
            return;
        }
        both_fscks_clean(&c.spec);
        hosttree::compare_with_image(&c.host, &c.spec, None, "/");
        hosttree::compare_extracted(&c.host, &c.spec, None, "/");
        hosttree::compare_makefs_tree(&c.host.join("small"), &c.img, None, "/small");
        crate::common::oracle::makefs_mounts_and_bulkfrees(&c.img);
    };
    check(&c);

    let shrink = rng.range(big / 3, big / 2);
    c.truncate("big/huge", shrink);
    c.truncate("small/sparse", rng.range(1, 70_000));
    c.truncate("big/huge", shrink + rng.range(1, 1 << 30));
    let len = c.host.join("big/huge").metadata().unwrap().len();
    let piece = Content { seed: rng.next_u64(), size: rng.range(1, 200_000), fill: Fill::Mixed }.bytes();
    c.write_at("big/huge", len + rng.range(0, 3 << 30), &piece);
    c.write_at("small/sparse", rng.range(100_000, 300 << 20), &piece);
    c.retime(&["/big", "/small", "/big/huge", "/small/sparse"]);
    crate::common::model::shape(&c.spec).unwrap();
    check(&c);
}

/// Compression and check methods, as (comp, check) for setcomp/setcheck.
/// sha192 has its own test: neither reference tool can judge it.
const COMPS: &[&str] = &["none", "autozero", "lz4", "zlib:1", "zlib:6", "zlib:9"];
const CHECKS: &[&str] = &["none", "disabled", "crc32", "xxhash64"];

/// Files at every size boundary, incompressible, compressible and mixed,
/// in directories whose compression and check methods differ (every
/// method at least once), imported with put -r; then truncated to other
/// boundaries and written across block boundaries.
#[test]
fn every_size_boundary_with_every_method() {
    crate::common::oracle::without(every_size_boundary_with_every_method_scenario);
}

/// [`every_size_boundary_with_every_method`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn every_size_boundary_with_every_method_with_reference_tools() {
    every_size_boundary_with_every_method_scenario();
}

fn every_size_boundary_with_every_method_scenario() {
    let seed = shape_seed("every_size_boundary_with_every_method", 4);
    let mut rng = Rng::new(seed);
    let offset = rng.below(CHECKS.len() as u64) as usize;
    let pairs: Vec<(&str, &str)> =
        COMPS.iter().enumerate().map(|(i, comp)| (*comp, CHECKS[(i + offset) % CHECKS.len()])).collect();
    boundaries_with(&mut rng, &pairs);
}

#[test]
#[ignore = "heavy, and needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn every_size_boundary_with_every_pair_of_methods() {
    let seed = shape_seed("every_size_boundary_with_every_pair_of_methods", 14);
    let mut rng = Rng::new(seed);
    let pairs: Vec<(&str, &str)> = COMPS.iter().flat_map(|c| CHECKS.iter().map(move |k| (*c, *k))).collect();
    boundaries_with(&mut rng, &pairs);
}

fn boundaries_with(rng: &mut Rng, pairs: &[(&str, &str)]) {
    let c = Case::new();
    let src = c.dir.path().join("boundaries");
    hosttree::boundary_files(&src, rng);
    newfs_ok(&["-s", "1G", &c.spec]);
    let mut script = String::new();
    let mut dirs = Vec::new();
    for (comp, check) in pairs {
        let d = format!("m-{}-{check}", comp.replace(':', "-"));
        script.push_str(&format!("mkdir /{d}\nsetcomp {comp} /{d}\nsetcheck {check} /{d}\n"));
        script.push_str(&format!("put -r {}/ /{d}/\n", src.display()));
        dirs.push(d);
    }
    let f = c.dir.path().join("script");
    std::fs::write(&f, &script).unwrap();
    edit_ok(&c.spec, &["-q", "-f", f.to_str().unwrap()]);
    // The host tree: one copy of the boundary files per directory, with
    // the directory's times as the image has them (mkdir made it now).
    for d in &dirs {
        copy_tree(&src, &c.host.join(d).join("boundaries"));
    }
    let retimed: Vec<String> =
        std::iter::once("/".to_string()).chain(dirs.iter().map(|d| format!("/{d}"))).collect();
    c.retime(&retimed.iter().map(String::as_str).collect::<Vec<_>>());
    assert_methods(&c.spec, pairs, &dirs);
    c.oracles();

    // Shrink and grow across the boundaries, write across block edges.
    let sizes = hosttree::BOUNDARY_SIZES;
    for d in &dirs {
        for _ in 0..4 {
            let name = format!("{d}/boundaries/{}-{}", rng.pick(&["rand", "text", "mixed"]), rng.pick(sizes));
            c.truncate(&name, *rng.pick(sizes));
        }
        let name = format!("{d}/boundaries/mixed-{}", rng.pick(sizes));
        let at = *rng.pick(&[511u64, 512, 16383, 65535, 65536, 1 << 20]) + rng.below(3);
        let piece = Content { seed: rng.next_u64(), size: rng.range(1, 70_000), fill: Fill::Text }.bytes();
        c.write_at(&name, at, &piece);
    }
    let retimed: Vec<String> =
        std::iter::once("/".to_string()).chain(dirs.iter().map(|d| format!("/{d}/boundaries"))).collect();
    let mut all = retimed.clone();
    for e in hosttree::host_entries(&c.host).keys() {
        if c.host.join(e).is_file() {
            all.push(format!("/{}", e.display()));
        }
    }
    c.retime(&all.iter().map(String::as_str).collect::<Vec<_>>());
    c.oracles();
}

/// Copies a tree of plain files and directories, keeping mode and times.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
        copy_times(&e.metadata().unwrap(), &t);
    }
    let m = from.metadata().unwrap();
    std::fs::set_permissions(to, m.permissions()).unwrap();
    copy_times(&m, to);
}

fn copy_times(m: &std::fs::Metadata, to: &Path) {
    hosttree::set_times(to, (m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()));
}

/// The data blocks below each directory carry its methods.
fn assert_methods(spec: &str, pairs: &[(&str, &str)], dirs: &[String]) {
    use hammer2::format::{BlockrefType, CheckMethod, CompMethod};
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let pfs = hammer2::read::pfs::Pfs::default(&tree).unwrap();
    for ((comp, check), d) in pairs.iter().zip(dirs) {
        let ino = pfs.resolve(&format!("/{d}/boundaries/text-1048576")).unwrap();
        let data = ino
            .blockset()
            .iter()
            .find(|b| b.kind() == BlockrefType::Indirect || b.kind() == BlockrefType::Data)
            .copied();
        let b = data.unwrap_or_else(|| panic!("{d}: no blocks"));
        let want_check = match *check {
            "none" => CheckMethod::None,
            "disabled" => CheckMethod::Disabled,
            "crc32" => CheckMethod::Iscsi32,
            "xxhash64" => CheckMethod::Xxhash64,
            _ => CheckMethod::Sha192,
        };
        if b.kind() == BlockrefType::Data {
            assert_eq!(b.check_method(), want_check, "{d}: check method");
            let want_comp = match comp.split(':').next().unwrap() {
                "none" => CompMethod::None,
                "autozero" => CompMethod::Autozero,
                "lz4" => CompMethod::Lz4,
                _ => CompMethod::Zlib,
            };
            assert_eq!(b.comp_method(), want_comp, "{d}: compression");
        }
    }
}

/// sha192 as DragonFly's kernel computes it (hammer2_chain.c,
/// `hammer2_chain_setcheck`: SHA-256, then its fourth 64-bit word xored
/// into the third, the first 24 bytes kept). The reference tools cannot
/// judge it: hammer2-utils' fsck_hammer2 compares the unfolded SHA-256
/// (and fails with EINVAL), and makefs asserts on any sha192 block
/// ("unsupported" in its port of hammer2_chain_testcheck). So: our fsck,
/// our reader and `get`, and one block's code recomputed here.
#[test]
fn sha192_as_the_kernel_folds_it() {
    use sha2::Digest;
    let mut rng = Rng::new(shape_seed("sha192_as_the_kernel_folds_it", 15));
    let c = Case::new();
    hosttree::boundary_files(&c.host.join("b"), &mut rng);
    newfs_ok(&["-s", "1G", "--check", "sha192", "--comp", "none", &c.spec]);
    edit_ok(&c.spec, &["put", "-r", c.host.join("b").to_str().unwrap(), "/b"]);
    c.retime(&["/"]);
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["-n", &c.spec]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    hosttree::compare_with_image(&c.host, &c.spec, None, "/");
    hosttree::compare_extracted(&c.host, &c.spec, None, "/");
    let fs = hammer2::Hammer2::open_path(&c.spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let pfs = hammer2::read::pfs::Pfs::default(&tree).unwrap();
    let ino = pfs.resolve("/b/rand-16384").unwrap();
    let b = ino.blockset()[0];
    assert_eq!(b.kind(), hammer2::format::BlockrefType::Data);
    assert_eq!(b.check_method(), hammer2::format::CheckMethod::Sha192);
    let off = b.data_off.get() & !0x3f;
    let len = 1usize << (b.data_off.get() & 0x3f);
    let mut media = vec![0u8; len];
    std::fs::File::open(&c.img).unwrap().read_exact_at(&mut media, off).unwrap();
    let d = sha2::Sha256::digest(&media);
    let mut want = d[..24].to_vec();
    let w2 =
        u64::from_le_bytes(d[16..24].try_into().unwrap()) ^ u64::from_le_bytes(d[24..32].try_into().unwrap());
    want[16..24].copy_from_slice(&w2.to_le_bytes());
    assert_eq!(&b.check[..24], &want[..], "sha192 of the block at {off:#x}");
}

/// Files with up to a dozen names spread over directories; then links
/// removed, moved across directories, and a directory holding names of
/// files that live elsewhere removed: link counts follow.
#[test]
fn hard_links_across_directories() {
    crate::common::oracle::without(hard_links_across_directories_scenario);
}

/// [`hard_links_across_directories`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn hard_links_across_directories_with_reference_tools() {
    hard_links_across_directories_scenario();
}

fn hard_links_across_directories_scenario() {
    let seed = shape_seed("hard_links_across_directories", 5);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    let groups = hosttree::linked_files(&c.host, &mut rng, 80, 8, 12);
    c.populate("1G", &[]);
    c.oracles();

    let mut gone = Vec::new();
    for names in &groups {
        for n in names {
            if rng.chance(1, 4) {
                gone.push(n.clone());
            }
        }
    }
    c.rm(&gone);
    let mut moved = 0;
    for names in &groups {
        let left: Vec<&PathBuf> = names.iter().filter(|n| c.host.join(n).exists()).collect();
        if left.len() >= 2 && moved < 10 {
            let to = Path::new("d7").join(format!("moved{moved}"));
            c.mv(left[1], &to);
            moved += 1;
        }
    }
    c.rm(&[PathBuf::from("d3")]);
    let dirs: Vec<String> = std::iter::once("/".to_string())
        .chain((0..8).filter(|d| *d != 3).map(|d| format!("/d{d}")))
        .collect();
    c.retime(&dirs.iter().map(String::as_str).collect::<Vec<_>>());
    c.oracles();
}

/// Symlinks of 1 to 1023 bytes, 255-byte and non-UTF-8 names, FIFOs,
/// sockets, setuid/setgid/sticky modes, times before 1970 and far ahead;
/// by put -r and by newfs --populate. Device nodes and large uids and
/// gids need root: [`device_nodes_and_foreign_owners`].
#[test]
fn odd_names_modes_times_and_owners() {
    crate::common::oracle::without(odd_names_modes_times_and_owners_scenario);
}

/// [`odd_names_modes_times_and_owners`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn odd_names_modes_times_and_owners_with_reference_tools() {
    odd_names_modes_times_and_owners_scenario();
}

fn odd_names_modes_times_and_owners_scenario() {
    let seed = shape_seed("odd_names_modes_times_and_owners", 6);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    hosttree::odd_objects(&c.host.join("odd"), &mut rng);
    c.put_each("1G");
    c.oracles();
    let p = Case::new();
    hosttree::odd_objects(&p.host, &mut Rng::new(seed));
    p.populate("1G", &["--comp", "zlib", "--check", "iscsi32"]);
    p.oracles();
}

/// The odd objects of [`odd_names_modes_times_and_owners`] and those only
/// root can make: device nodes with large numbers, files and a symlink of
/// large uids and gids, a file of mode 000; by put -r and by newfs --populate.
#[test]
#[ignore = "needs root"]
fn device_nodes_and_foreign_owners() {
    crate::common::oracle::without(device_nodes_and_foreign_owners_scenario);
}

/// [`device_nodes_and_foreign_owners`] with the reference tools' checks too.
#[test]
#[ignore = "needs root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn device_nodes_and_foreign_owners_with_reference_tools() {
    device_nodes_and_foreign_owners_scenario();
}

fn device_nodes_and_foreign_owners_scenario() {
    let seed = shape_seed("device_nodes_and_foreign_owners", 6);
    let c = Case::new();
    hosttree::odd_objects(&c.host.join("odd"), &mut Rng::new(seed));
    hosttree::root_objects(&c.host.join("odd"));
    c.put_each("1G");
    c.oracles();
    let p = Case::new();
    hosttree::odd_objects(&p.host, &mut Rng::new(seed));
    hosttree::root_objects(&p.host);
    p.populate("1G", &["--comp", "zlib", "--check", "iscsi32"]);
    p.oracles();
}

/// An image filled to the last block: the put that finds no space fails
/// with a clear error and leaves the image byte for byte as it was, and
/// what fits is read back by everyone; after removals, a bulkfree gives
/// the space back (two passes, as the kernel's).
#[test]
fn a_full_image_fails_cleanly() {
    crate::common::oracle::without(a_full_image_fails_cleanly_scenario);
}

/// [`a_full_image_fails_cleanly`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_full_image_fails_cleanly_with_reference_tools() {
    a_full_image_fails_cleanly_scenario();
}

fn a_full_image_fails_cleanly_scenario() {
    let seed = shape_seed("a_full_image_fails_cleanly", 7);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    newfs_ok(&["-s", "48M", &c.spec]);
    let src = c.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut n = 0;
    let mut failures = 0;
    while failures < 3 {
        let size = if failures == 0 { rng.range(1 << 20, 4 << 20) } else { rng.range(1, 100_000) };
        let f = src.join(format!("f{n}"));
        hosttree::write_content(&f, Content { seed: rng.next_u64(), size, fill: Fill::Random });
        // The bytes, not the extents: undoing the blocks a failed put
        // wrote early puts zeros back where the image file had holes.
        let before = crate::common::digest::content_sha256(&c.img);
        let out = edit(&c.spec, &["put", f.to_str().unwrap(), &format!("/f{n}")]);
        if out.status.success() {
            std::fs::copy(&f, c.host.join(format!("f{n}"))).unwrap();
            let m = f.metadata().unwrap();
            let h = c.host.join(format!("f{n}"));
            std::fs::set_permissions(&h, m.permissions()).unwrap();
            hosttree_set_mtime(&h, &m);
        } else {
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{t}");
            assert!(t.contains("no space left"), "ENOSPC named: {t}");
            assert!(
                crate::common::digest::content_sha256(&c.img) == before,
                "a failed put changed the image"
            );
            failures += 1;
        }
        n += 1;
        assert!(n < 200, "48 MiB never filled");
    }
    c.retime(&["/"]);
    both_fscks_clean(&c.spec);
    hosttree::compare_with_image(&c.host, &c.spec, None, "/");

    // Free two files, bulkfree, and a file of their size fits again.
    let mut stored: Vec<(u64, PathBuf)> = std::fs::read_dir(&c.host)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.metadata().unwrap().len(), PathBuf::from(e.file_name())))
        .collect();
    stored.sort();
    let (size, _) = stored[stored.len() - 1];
    let gone: Vec<PathBuf> = stored.iter().rev().take(2).map(|(_, p)| p.clone()).collect();
    c.rm(&gone);
    // As the kernel's: one pass stages what nothing reaches (11 -> 10),
    // the next frees it (10 -> 00).
    edit_ok(&c.spec, &["bulkfree"]);
    edit_ok(&c.spec, &["bulkfree"]);
    let f = src.join("again");
    hosttree::write_content(&f, Content { seed: rng.next_u64(), size, fill: Fill::Random });
    edit_ok(&c.spec, &["put", f.to_str().unwrap(), "/again"]);
    std::fs::copy(&f, c.host.join("again")).unwrap();
    hosttree_set_mtime(&c.host.join("again"), &f.metadata().unwrap());
    c.retime(&["/"]);
    c.oracles();
}

fn hosttree_set_mtime(p: &Path, m: &std::fs::Metadata) {
    // put stores the access time of the moment: not compared.
    hosttree::set_times(p, (0, libc::UTIME_OMIT), (m.mtime(), m.mtime_nsec()));
}

/// newfs --populate of a tree larger than the image: a clear ENOSPC
/// (exit 1), and the image stays formatted, empty and clean.
#[test]
fn populating_past_the_end_fails_cleanly() {
    crate::common::oracle::without(populating_past_the_end_fails_cleanly_scenario);
}

/// [`populating_past_the_end_fails_cleanly`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn populating_past_the_end_fails_cleanly_with_reference_tools() {
    populating_past_the_end_fails_cleanly_scenario();
}

fn populating_past_the_end_fails_cleanly_scenario() {
    let mut rng = Rng::new(shape_seed("populating_past_the_end_fails_cleanly", 17));
    let c = Case::new();
    for i in 0..5 {
        let size = rng.range(4 << 20, 6 << 20);
        hosttree::write_content(
            &c.host.join(format!("f{i}")),
            Content { seed: rng.next_u64(), size, fill: Fill::Random },
        );
    }
    let out = newfs(&[
        OsStr::new("-q"),
        OsStr::new("-s"),
        OsStr::new("32M"),
        OsStr::new("--populate"),
        c.host.as_os_str(),
        c.img.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no space left"), "{}", text(&out));
    both_fscks_clean(&c.spec);
    let ls = edit(&c.spec, &["ls", "/"]);
    assert!(ls.status.success() && ls.stdout.is_empty(), "the PFS is empty: {}", text(&ls));
    crate::common::oracle::makefs_mounts_and_bulkfrees(&c.img);
}

/// A random tree of every kind above, smaller.
fn mixed_tree(root: &Path, rng: &mut Rng) {
    hosttree::boundary_files(&root.join("sizes"), rng);
    hosttree::linked_files(&root.join("links"), rng, 20, 4, 5);
    hosttree::wide_dir(&root.join("wide"), rng, 600, 5);
    hosttree::deep_dirs(&root.join("deep"), rng, 30);
    hosttree::sparse_file(&root.join("sparse"), rng, 40 << 20, 10);
}

/// Two volumes (vol0:vol1): the tree is populated, edited and read back;
/// every fsck checks both volumes. makefs cannot open multi-volume sets,
/// so the kernel's code is not asked here.
#[test]
fn two_volumes() {
    crate::common::oracle::without(two_volumes_scenario);
}

/// [`two_volumes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn two_volumes_with_reference_tools() {
    two_volumes_scenario();
}

fn two_volumes_scenario() {
    let seed = shape_seed("two_volumes", 8);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    mixed_tree(&c.host, &mut rng);
    let vol1 = c.dir.path().join("vol1.img");
    let size = format!("1G:{}", rng.range(40, 300) * (1 << 20) + rng.below(1 << 20));
    let out = newfs(&[
        OsStr::new("-q"),
        OsStr::new("-s"),
        OsStr::new(&size),
        OsStr::new("--populate"),
        c.host.as_os_str(),
        c.img.as_os_str(),
        vol1.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let spec = format!("{}:{}", c.img.display(), vol1.display());
    both_fscks_clean(&spec);
    hosttree::compare_with_image(&c.host, &spec, None, "/");
    hosttree::compare_extracted(&c.host, &spec, None, "/");
}

/// Two volumes filled past the first: 128 MiB files put until the reserve
/// refuses one, so blocks land on the second volume; each reads back,
/// removals and two bulkfrees give space back, and a file fits again.
#[test]
#[ignore = "heavy, and needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn two_volumes_filled_past_the_first() {
    let seed = shape_seed("two_volumes_filled_past_the_first", 16);
    let c = Case::new();
    let big = c.dir.path().join("big");
    hosttree::write_content(&big, Content { seed, size: 128 << 20, fill: Fill::Random });
    let vol1 = c.dir.path().join("vol1.img");
    let spec = format!("{}:{}", c.img.display(), vol1.display());
    let out = newfs(&[
        OsStr::new("-q"),
        OsStr::new("-s"),
        OsStr::new("1G:300M"),
        c.img.as_os_str(),
        vol1.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut n = 0;
    loop {
        let out = edit(&spec, &["-q", "put", big.to_str().unwrap(), &format!("/big{n}")]);
        if !out.status.success() {
            assert!(text(&out).contains("no space left"), "{}", text(&out));
            break;
        }
        n += 1;
        assert!(n < 20, "1.3 GiB never filled");
    }
    let on_vol1 = std::fs::metadata(&vol1).unwrap().blocks() * 512;
    assert!(on_vol1 > 64 << 20, "only {on_vol1} bytes written to the second volume");
    both_fscks_clean(&spec);
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let pfs = hammer2::read::pfs::Pfs::default(&tree).unwrap();
    for i in 0..n {
        let ino = pfs.resolve(&format!("/big{i}")).unwrap();
        let mut sink = hammer2::read::file::WriteSink(Vec::new());
        hammer2::read::file::read_file(&tree, &ino, &mut sink).unwrap();
        assert!(sink.0 == std::fs::read(&big).unwrap(), "/big{i} differs");
    }
    drop(fs);
    edit_ok(&spec, &["rm", "/big0", "/big1"]);
    edit_ok(&spec, &["bulkfree"]);
    edit_ok(&spec, &["bulkfree"]);
    edit_ok(&spec, &["put", big.to_str().unwrap(), "/again"]);
    both_fscks_clean(&spec);
}

/// Image sizes that are no multiple of 8 MiB or 1 GiB (newfs uses the
/// 8 MiB-aligned part), each with a header copy less or more.
#[test]
fn odd_image_sizes() {
    crate::common::oracle::without(odd_image_sizes_scenario);
}

/// [`odd_image_sizes`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn odd_image_sizes_with_reference_tools() {
    odd_image_sizes_scenario();
}

fn odd_image_sizes_scenario() {
    let seed = shape_seed("odd_image_sizes", 9);
    let mut rng = Rng::new(seed);
    for size in [
        (1u64 << 30) + rng.range(1, 8 << 20),
        (2u64 << 30) - (8 << 20) + rng.below(8 << 20),
        (2u64 << 30) + (4 << 20) + rng.below(4 << 20),
        (40 << 20) + rng.range(1, (8 << 20) - 1),
    ] {
        let c = Case::new();
        hosttree::boundary_files(&c.host.join("sizes"), &mut rng);
        hosttree::linked_files(&c.host.join("links"), &mut rng, 5, 2, 3);
        let f = std::fs::File::create(&c.img).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let out = newfs(&[OsStr::new("-q"), OsStr::new("--populate"), c.host.as_os_str(), c.img.as_os_str()]);
        assert!(out.status.success(), "newfs on {size} bytes: {}", text(&out));
        c.oracles();
    }
}

/// The smallest image newfs accepts: formatted and checkable, though the
/// kernel's leaf initialisation leaves it no allocatable segment (every
/// 4 MiB segment below allocator_beg rounded up to 4 MiB is marked
/// allocated), so every write fails with ENOSPC and changes nothing. The
/// smallest image that takes a file is 8 MiB larger.
#[test]
fn the_smallest_images() {
    crate::common::oracle::without(the_smallest_images_scenario);
}

/// [`the_smallest_images`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn the_smallest_images_with_reference_tools() {
    the_smallest_images_scenario();
}

fn the_smallest_images_scenario() {
    let c = Case::new();
    let mut min = None;
    for mib in 8..64 {
        let _ = std::fs::remove_file(&c.img);
        let out =
            newfs(&[OsStr::new("-q"), OsStr::new("-s"), OsStr::new(&format!("{mib}M")), c.img.as_os_str()]);
        if out.status.success() {
            min = Some(mib);
            break;
        }
        assert!(text(&out).contains("too small") || text(&out).contains("at least"), "{}", text(&out));
    }
    let min = min.expect("newfs accepts some size under 64 MiB");
    both_fscks_clean(&c.spec);
    let f = c.dir.path().join("f");
    std::fs::write(&f, content(1, 20_000)).unwrap();
    let before = crate::common::digest::sparse_sha256(&c.img);
    let out = edit(&c.spec, &["put", f.to_str().unwrap(), "/f"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no space left"), "{}", text(&out));
    assert!(crate::common::digest::sparse_sha256(&c.img) == before, "a failed put changed the image");
    crate::common::oracle::makefs_mounts_and_bulkfrees(&c.img);

    let c = Case::new();
    hosttree::boundary_files(&c.host, &mut Rng::new(10));
    c.populate(&format!("{}M", min + 8), &["--comp", "autozero"]);
    c.oracles();
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    crate::common::content(seed, len)
}

/// Writes and growing truncations that keep a file embedded in its inode
/// (512 bytes or less) are committed: they once changed the inode in
/// memory without marking the session dirty, and the editor reported
/// "nothing to commit".
#[test]
fn changes_to_embedded_files_are_committed() {
    crate::common::oracle::without(changes_to_embedded_files_are_committed_scenario);
}

/// [`changes_to_embedded_files_are_committed`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn changes_to_embedded_files_are_committed_with_reference_tools() {
    changes_to_embedded_files_are_committed_scenario();
}

fn changes_to_embedded_files_are_committed_scenario() {
    let c = Case::new();
    std::fs::write(c.host.join("one"), b"a").unwrap();
    std::fs::write(c.host.join("empty"), b"").unwrap();
    c.populate("1G", &[]);
    c.write_at("one", 0, b"hello");
    c.write_at("one", 300, b"past the end");
    c.truncate("empty", 511);
    c.truncate("one", 3);
    c.truncate("one", 512);
    c.retime(&["/one", "/empty"]);
    c.oracles();
}

/// Random edit scripts on a mixed tree (every size boundary, hard links,
/// a wide and a deep directory, a sparse file): rounds of rm, rm -r, mv
/// across directories, truncate, writes past the end, hard links, chmod
/// and mkdir, each applied to the host tree and to the image alike, each
/// round judged by every oracle.
#[test]
fn random_edit_scripts_on_a_mixed_tree() {
    crate::common::oracle::without(random_edit_scripts_on_a_mixed_tree_scenario);
}

/// [`random_edit_scripts_on_a_mixed_tree`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn random_edit_scripts_on_a_mixed_tree_with_reference_tools() {
    random_edit_scripts_on_a_mixed_tree_scenario();
}

fn random_edit_scripts_on_a_mixed_tree_scenario() {
    let seed = shape_seed("random_edit_scripts_on_a_mixed_tree", 18);
    let mut rng = Rng::new(seed);
    let c = Case::new();
    mixed_tree(&c.host, &mut rng);
    c.populate("1G", &[]);
    c.oracles();
    for round in 0..2 {
        for op in 0..30 {
            random_edit(&c, &mut rng, round * 100 + op);
        }
        // Every directory and file once more at one time on both sides
        // (the edits stamped "now" on either).
        let mut paths = vec!["/".to_string()];
        for (rel, m) in hosttree::host_entries(&c.host) {
            if m.is_dir() || m.is_file() {
                paths.push(image_path(&rel).into_string().expect("edited names are UTF-8"));
            }
        }
        c.retime(&paths.iter().map(String::as_str).collect::<Vec<_>>());
        crate::common::model::shape(&c.spec).unwrap();
        c.oracles();
    }
}

/// One random edit on both sides.
fn random_edit(c: &Case, rng: &mut Rng, n: u64) {
    let entries = hosttree::host_entries(&c.host);
    // Paths the editor gets as arguments: UTF-8 ones.
    let pick = |rng: &mut Rng, want: &dyn Fn(&std::fs::Metadata) -> bool| -> Option<PathBuf> {
        let v: Vec<&PathBuf> =
            entries.iter().filter(|(p, m)| want(m) && p.to_str().is_some()).map(|(p, _)| p).collect();
        (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize].clone())
    };
    let dirs = |rng: &mut Rng| pick(rng, &|m| m.is_dir()).unwrap_or_default();
    let rel = |p: &Path| p.to_str().unwrap().to_string();
    match rng.below(9) {
        0 => {
            if let Some(f) = pick(rng, &|m| !m.is_dir()) {
                c.rm(&[f]);
            }
        }
        1 => {
            if let Some(d) = pick(rng, &|m| m.is_dir()) {
                if rng.chance(1, 3) {
                    c.rm(&[d]);
                }
            }
        }
        2 | 3 => {
            let from = pick(rng, &|_| true).unwrap();
            let to_dir = dirs(rng);
            if to_dir.starts_with(&from) {
                return;
            }
            c.mv(&from, &to_dir.join(format!("moved-{n}")));
        }
        4 => {
            if let Some(f) = pick(rng, &|m| m.is_file()) {
                let size = *rng.pick(&[0u64, 1, 511, 512, 513, 16384, 65535, 65537, 300_000, 3 << 20]);
                c.truncate(&rel(&f), size + rng.below(2));
            }
        }
        5 => {
            if let Some(f) = pick(rng, &|m| m.is_file()) {
                let len = std::fs::metadata(c.host.join(&f)).unwrap().len();
                let at = rng.below(len + 200_000);
                let piece =
                    Content { seed: rng.next_u64(), size: rng.range(1, 100_000), fill: Fill::Mixed }.bytes();
                c.write_at(&rel(&f), at, &piece);
            }
        }
        6 => {
            if let Some(f) = pick(rng, &|m| m.is_file()) {
                let link = dirs(rng).join(format!("link-{n}"));
                std::fs::hard_link(c.host.join(&f), c.host.join(&link)).unwrap();
                edit_ok(&c.spec, &[OsString::from("ln"), image_path(&f), image_path(&link)]);
            }
        }
        7 => {
            if let Some(f) = pick(rng, &|m| m.is_file() || m.is_dir()) {
                let mode = *rng.pick(&[0o644u32, 0o600, 0o4755, 0o1777, 0o2711, 0o755]);
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(c.host.join(&f), std::fs::Permissions::from_mode(mode)).unwrap();
                edit_ok(&c.spec, &[OsString::from("chmod"), format!("{mode:o}").into(), image_path(&f)]);
            }
        }
        _ => {
            let d = dirs(rng).join(format!("new-{n}"));
            std::fs::create_dir(c.host.join(&d)).unwrap();
            std::fs::set_permissions(c.host.join(&d), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            edit_ok(&c.spec, &[OsString::from("mkdir"), OsString::from("-m"), "755".into(), image_path(&d)]);
        }
    }
}
