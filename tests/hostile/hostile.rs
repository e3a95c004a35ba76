//! Hostile images built at test time: the damage is "resealed" (check codes
//! recomputed up to the volume header), so the tools meet the hostile
//! structure itself: a cycle, media past the end, absurd radix and keybits,
//! names with '/' or '..', blocks that do not decompress, a shared-subtree
//! DAG of exponentially many paths, a hostile `volu_loff`, counters near
//! their maximum. Each must give a clear error, never a panic or a hang.
//!
//! The named images further down run every tool: the library in-process
//! (each entry point on its own watchdog thread, see tests/common/run.rs)
//! and every binary as a child process, each with a deadline of
//! [`DEADLINE`] (healthy runs on these images take well under 0.2 s, the
//! hostile ones minutes).

use crate::common::plant::plant_dag;
use crate::common::reseal::{find_chain, reseal, Image, Map, Role};
use crate::common::run::{spawn_guarded, Capped, Outcome, ToolRun, DUMP, EDIT, FSCK};

use hammer2::format::{Blockref, BlockrefType, InodeData, VolumeData};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::Hammer2;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// A tool still running after this has hung (see `run::HANG`; no test
/// bounds speed: healthy runs on these images take well under 0.2 s, the
/// hostile ones never ended before the fixes).
const DEADLINE: Duration = crate::common::run::HANG;

fn walk_errors(img: &Image) -> Vec<String> {
    let fs = Hammer2::open_path(img.spec()).unwrap();
    let mut errs = Vec::new();
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        if let Some(e) = &v.error {
            errs.push(e.to_string());
        }
    })
    .unwrap();
    errs
}

fn extract_error(img: &Image, pfs: Option<&str>) -> String {
    let fs = Hammer2::open_path(img.spec()).unwrap();
    let tree = Tree::new(&fs);
    let pfs = match pfs {
        Some(l) => Pfs::find(&tree, l).unwrap(),
        None => Pfs::default(&tree).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    match hammer2::host::extract::extract(&pfs, "/", dir.path(), &mut |_| {}) {
        Ok(s) => panic!("extraction of a hostile image succeeded: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn fsck_code(img: &Image) -> i32 {
    let r = hammer2::fsck::fsck(img.spec(), &Default::default()).unwrap();
    r.exit_code()
}

fn is_dir_inode(img: &Image, b: &Blockref) -> bool {
    b.kind() == BlockrefType::Inode && b.flags & 1 == 0 && img.read(b.offset() + 0x50, 1)[0] == 1
}

#[test]
fn blockref_pointing_at_its_own_ancestor() {
    let img = Image::new("small-iscsi");
    // The directory "dir", indexed under the DATA PFS root: point it at that root.
    let inum = |i: &Image, b: &Blockref| u64::from_le_bytes(i.read(b.offset() + 0x58, 8).try_into().unwrap());
    let (copy, chain) = find_chain(&img, &|i, b| is_dir_inode(i, b) && inum(i, b) > 1);
    assert!(chain.len() >= 3, "a directory below a PFS root");
    let parent = img.bref(chain[chain.len() - 2]);
    let mut b = img.bref(*chain.last().unwrap());
    b.data_off = parent.data_off;
    // A block cannot carry the check code of a block that contains it, so a
    // consistent cycle uses check method NONE (which HAMMER2 permits).
    b.methods = hammer2::format::encode_methods(hammer2::format::CheckMethod::None, b.comp_method());
    img.write(*chain.last().unwrap(), b.as_bytes());
    reseal(&img, copy, &chain);
    let errs = walk_errors(&img);
    assert!(errs.iter().any(|e| e.contains("cycle")), "{errs:?}");
    assert_eq!(fsck_code(&img), 4);
    let e = extract_error(&img, None);
    assert!(e.contains("indexed as") || e.contains("contains itself"), "{e}");
}

#[test]
fn blockref_past_the_end_and_absurd_radix_or_keybits() {
    for (what, mutate) in [
        (
            "past the end",
            (|b: &mut Blockref| b.data_off = (0x7fff_ffff_0000u64 | 16).into()) as fn(&mut Blockref),
        ),
        ("radix 63", |b| b.data_off = ((b.data_off.get() & !0x3f) | 63).into()),
        ("keybits 200", |b| b.keybits = 200),
    ] {
        let img = Image::new("small-iscsi");
        let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Data);
        let pos = *chain.last().unwrap();
        let mut b = img.bref(pos);
        mutate(&mut b);
        img.write(pos, b.as_bytes());
        reseal(&img, copy, &chain);
        let e = extract_error(&img, None);
        assert!(e.contains("data data_off"), "{what}: {e}");
        if what != "keybits 200" {
            assert!(!walk_errors(&img).is_empty(), "{what}");
            assert_eq!(fsck_code(&img), 4, "{what}");
        }
    }
}

#[test]
fn names_with_slash_or_dotdot_are_refused() {
    for name in [&b".."[..], b"a/b", b"."] {
        let img = Image::new("small-iscsi");
        let (copy, chain) =
            find_chain(&img, &|_, b| b.kind() == BlockrefType::Dirent && b.dirent().namlen.get() == 3);
        let pos = *chain.last().unwrap();
        let mut b = img.bref(pos);
        b.check[..name.len()].copy_from_slice(name);
        b.dirent_mut().namlen = (name.len() as u16).into();
        img.write(pos, b.as_bytes());
        reseal(&img, copy, &chain);
        let e = extract_error(&img, None);
        assert!(e.contains("refusing a name") && e.contains("inode"), "{name:?}: {e}");
    }
}

#[test]
fn blocks_that_do_not_decompress() {
    for (fixture, comp) in
        [("varied", hammer2::format::CompMethod::Lz4), ("varied-zlib", hammer2::format::CompMethod::Zlib)]
    {
        let img = Image::new(fixture);
        let (copy, chain) =
            find_chain(&img, &|_, b| b.kind() == BlockrefType::Data && b.comp_method() == comp);
        let b = img.bref(*chain.last().unwrap());
        // An LZ4 length prefix larger than the block; a zlib stream with a broken header.
        img.write(b.offset(), &[0xff, 0xff, 0xff, 0x7f]);
        reseal(&img, copy, &chain);
        assert!(walk_errors(&img).is_empty(), "check codes were resealed");
        let e = extract_error(&img, None);
        assert!(e.contains("does not decompress") && e.contains("data data_off"), "{fixture}: {e}");
    }
}

#[test]
fn reseal_without_damage_keeps_the_image_clean() {
    // Guards the helper: resealing an untouched chain changes nothing observable.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Data);
    reseal(&img, copy, &chain);
    assert!(walk_errors(&img).is_empty());
    assert_eq!(fsck_code(&img), 0);
}

/// Every library entry point on `spec`, concurrently, each on its own
/// watchdog thread: fsck, both walks, `dump` show/pfs/freemap, the PFS
/// list, `paths` resolved and read (directories listed), and extraction of
/// the default PFS. Returns one line per call that panicked, hung or asked
/// for a huge allocation, and fsck's report when it returned.
fn library(spec: &str, paths: &[&str]) -> (Vec<String>, Option<hammer2::fsck::FsckReport>) {
    type Call = Box<dyn FnOnce() -> Option<hammer2::fsck::FsckReport> + Send>;
    let s = spec.to_string();
    let mut calls: Vec<(String, Call)> = Vec::new();
    let sp = s.clone();
    calls.push(("fsck".into(), Box::new(move || hammer2::fsck::fsck(&sp, &Default::default()).ok())));
    let sp = s.clone();
    calls.push((
        "walk topology and freemap".into(),
        Box::new(move || {
            if let Ok(fs) = Hammer2::open_path(&sp) {
                for root in [Root::Topology, Root::Freemap] {
                    let _ = walk(&fs, root, WalkOptions::default(), &mut |_| {});
                }
            }
            None
        }),
    ));
    for what in ["dump show", "dump pfs", "dump freemap"] {
        let sp = s.clone();
        calls.push((
            what.into(),
            Box::new(move || {
                if let Ok(fs) = Hammer2::open_path(&sp) {
                    match what {
                        "dump show" => {
                            let o = hammer2::dump::show::ShowOptions {
                                freemap: true,
                                verify_data: true,
                                ..Default::default()
                            };
                            let _ = hammer2::dump::show::show(&fs, &o, &mut |_| {});
                        }
                        "dump pfs" => drop(hammer2::dump::pfs::list(&fs)),
                        _ => drop(hammer2::dump::freemap::report(&fs)),
                    }
                }
                None
            }),
        ));
    }
    for path in paths.iter().map(|p| p.to_string()) {
        let sp = s.clone();
        calls.push((
            format!("resolve and read {path}"),
            Box::new(move || {
                let Ok(fs) = Hammer2::open_path(&sp) else { return None };
                let tree = Tree::new(&fs);
                let Ok(pfs) = Pfs::default(&tree) else { return None };
                if let Ok(ino) = pfs.resolve(&path) {
                    let _ = hammer2::dump::inode::describe(&pfs.name(), Some(path), &ino);
                    if ino.is_dir() {
                        let _ = pfs.readdir(&ino);
                    } else {
                        let _ = hammer2::read::file::read_file(&tree, &ino, &mut Capped(1 << 20));
                    }
                }
                None
            }),
        ));
    }
    let sp = s.clone();
    calls.push((
        "PFS list and extraction".into(),
        Box::new(move || {
            let Ok(fs) = Hammer2::open_path(&sp) else { return None };
            let tree = Tree::new(&fs);
            let _ = Pfs::list(&tree);
            let dir = tempfile::tempdir().unwrap();
            if let Ok(pfs) = Pfs::default(&tree) {
                let _ = hammer2::host::extract::extract(&pfs, "/", &dir.path().join("x"), &mut |_| {});
            }
            None
        }),
    ));
    let running: Vec<_> = calls.into_iter().map(|(name, f)| (name, spawn_guarded(f))).collect();
    let mut failures = Vec::new();
    let mut report = None;
    for (name, g) in running {
        match g.wait(DEADLINE) {
            Outcome::Done(r) => report = report.or(r),
            Outcome::Panicked(m) => failures.push(format!("library {name}: panicked: {m}")),
            Outcome::TimedOut => {
                failures.push(format!("library {name}: hung: still running after {DEADLINE:?}"))
            }
            Outcome::HugeAlloc(m) => failures.push(format!("library {name}: {m}")),
        }
    }
    if report.is_none() && !failures.iter().any(|f| f.starts_with("library fsck:")) {
        failures.push("library fsck: returned an error instead of a report".into());
    }
    (failures, report)
}

/// Every binary on `spec`, concurrently: fsck, `hammer2_dump`
/// show/pfs/freemap/volhdr, and `hammer2_edit` pfs, ls, stat, cat and get
/// on `paths` (get into a fresh directory).
fn binaries(spec: &str, paths: &[&str]) -> Vec<ToolRun> {
    let out = tempfile::tempdir().unwrap();
    let mut cmds: Vec<(&str, Vec<String>)> = Vec::new();
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    cmds.push((FSCK, v(&[spec])));
    for sub in ["show", "pfs", "freemap", "volhdr"] {
        cmds.push((DUMP, v(&[sub, spec])));
    }
    cmds.push((EDIT, v(&[spec, "pfs"])));
    for (i, p) in paths.iter().enumerate() {
        cmds.push((EDIT, v(&[spec, "ls", "-l", p])));
        cmds.push((EDIT, v(&[spec, "stat", p])));
        cmds.push((EDIT, v(&[spec, "cat", p])));
        let dest = out.path().join(format!("get{i}"));
        cmds.push((EDIT, v(&[spec, "get", p, dest.to_str().unwrap()])));
    }
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|(exe, args)| {
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
                crate::common::run::run_tool(exe, &args, DEADLINE)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Runs every tool on `img`; returns what went wrong (a tool panicked, hung
/// or aborted; fsck, library or binary, did not report damage with one of
/// `ids`) and fsck's report.
fn every_tool(
    what: &str,
    img: &Image,
    paths: &[&str],
    ids: &[&str],
) -> (Vec<String>, Option<hammer2::fsck::FsckReport>) {
    let (mut failures, report) = library(img.spec(), paths);
    let runs = binaries(img.spec(), paths);
    for r in &runs {
        if r.crashed() {
            failures.push(r.describe());
        }
    }
    let fsck_bin = runs.iter().find(|r| r.cmd.starts_with("fsck_hammer2")).unwrap();
    if !fsck_bin.crashed() && (fsck_bin.code != Some(4) || !ids.iter().any(|id| fsck_bin.stdout.contains(id)))
    {
        failures.push(format!(
            "fsck_hammer2 should exit 4 naming one of {ids:?}: {}; stdout: {}",
            fsck_bin.describe(),
            fsck_bin.stdout.lines().take(8).collect::<Vec<_>>().join(" | ")
        ));
    }
    if let Some(r) = &report {
        if !r.findings.iter().any(|f| ids.contains(&f.problem.id.code())) {
            let got: Vec<String> =
                r.findings.iter().map(|f| format!("{} {}", f.problem.id, f.detail)).collect();
            failures.push(format!("library fsck should report one of {ids:?}, got {got:#?}"));
        }
    }
    let failures = failures.into_iter().map(|f| format!("{what}: {f}")).collect();
    (failures, report)
}

/// The 1 KiB inode at the end of the first chain whose inode `pred` accepts.
fn inode_where(map: &Map, pred: impl Fn(&InodeData, Role) -> bool) -> u64 {
    map.inodes.iter().find(|i| pred(&i.data, i.role)).map(|i| i.off).expect("no such inode")
}

/// File offset of an empty slot in the blockset of the inode at `off`.
fn empty_slot(img: &Image, off: u64) -> u64 {
    (0..4)
        .map(|i| off + 0x200 + i * 128)
        .find(|&p| img.bref(p).kind() == BlockrefType::Empty)
        .expect("no empty slot in the blockset")
}

#[test]
fn shared_subtree_dag_of_20_levels() {
    // 20 levels of 1 KiB indirect blocks, each holding 8 blockrefs to the
    // next: 8^20 paths over 21 blocks. Planted in turn under the super-root,
    // the DATA PFS root, a directory and a file (replacing its second data
    // block), in free space taken from the freemap (tests/common/plant.rs).
    let is_file = |d: &InodeData| d.meta.size.get() == 100_000;
    // Where the DAG goes: (slot, key, keybits) for each variant.
    type Place<'a> = &'a dyn Fn(&Image, &Map) -> (u64, u64, u8);
    let variants: [(&str, Place); 4] = [
        ("under the super-root", &|img, map| {
            (empty_slot(img, inode_where(map, |_, r| r == Role::SuperRoot)), 0, 64)
        }),
        ("under the DATA PFS root", &|img, map| {
            (empty_slot(img, inode_where(map, |d, r| r == Role::PfsRoot && d.name() == b"DATA")), 0, 64)
        }),
        ("under a directory", &|img, map| {
            (empty_slot(img, inode_where(map, |d, r| r == Role::Index && d.meta.type_ == 1)), 0, 64)
        }),
        ("under a file", &|_, map| {
            // The second data block's slot: its key is past the first block,
            // so readers reach it in key order.
            let off = inode_where(map, |d, _| is_file(d));
            (off + 0x200 + 128, 0x10000, 16)
        }),
    ];
    let mut failures = Vec::new();
    for (what, place) in variants {
        let img = Image::new("small-iscsi");
        let map = Map::build(&img);
        let (slot, key, keybits) = place(&img, &map);
        plant_dag(&img, &map, slot, 20, key, keybits);
        let ids = ["BREF_DUPLICATE", "TREE_DEPTH"];
        failures.extend(every_tool(what, &img, &["/", "/dir", "/dir/data.bin"], &ids).0);
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn claimed_free_space_keeps_the_image_clean() {
    // Guards the DAG's placement: space taken from the freemap is marked
    // allocated with avail and allocator_free in step, so fsck sees only
    // unreferenced allocated space (informational).
    let img = Image::new("small-iscsi");
    let map = Map::build(&img);
    let off = crate::common::plant::claim_free_space(&img, &map, 21 * 1024);
    assert!(!map.used_chunks.contains(&(off & !0x3fff)), "{off:#x} is in use");
    let r = hammer2::fsck::fsck(img.spec(), &Default::default()).unwrap();
    assert_eq!(r.exit_code(), 0, "{:#?}", r.findings);
    assert!(
        r.findings.iter().any(|f| f.problem.id == hammer2::fsck::ProblemId::FreemapLeaked),
        "{:#?}",
        r.findings
    );
}

#[test]
fn dirent_named_dotdot_in_the_pfs_root() {
    // The DATA root's entry "dir" renamed "..", its key the hash of "..":
    // `get /.. out/dest` must not write outside out/dest nor touch out.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Dirent && &b.check[..3] == b"dir");
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    b.check = [0; 64];
    b.check[..2].copy_from_slice(b"..");
    b.dirent_mut().namlen = 2.into();
    b.key = ((hammer2::format::dirhash::dirhash(b"..") & !0x7fff) | (b.key.get() & 0x7fff)).into();
    img.write(pos, b.as_bytes());
    reseal(&img, copy, &chain);

    let host = tempfile::tempdir().unwrap();
    let out = host.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o750)).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::open(&out).unwrap().set_modified(old).unwrap();
    let snapshot = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.mode(), m.mtime(), m.mtime_nsec())
    };
    let before = snapshot(&out);
    let listing = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let dest = out.join("dest");
    let run =
        crate::common::run::run_tool(EDIT, &[img.spec(), "get", "/..", dest.to_str().unwrap()], DEADLINE);
    let mut failures = Vec::new();
    if run.crashed() {
        failures.push(run.describe());
    }
    let check = |who: &str, failures: &mut Vec<String>| {
        let outside: Vec<String> = listing(&out).into_iter().filter(|n| n != "dest").collect();
        if !outside.is_empty() {
            failures.push(format!("{who}: wrote {outside:?} into out/, outside out/dest"));
        }
        if listing(host.path()) != ["out"] {
            failures.push(format!("{who}: wrote {:?} beside out/", listing(host.path())));
        }
        if snapshot(&out) != before {
            failures.push(format!("{who}: changed out/'s mode or mtime: {before:?} -> {:?}", snapshot(&out)));
        }
    };
    check("hammer2_edit get /.. out/dest", &mut failures);
    // The library the same way.
    let (spec, d) = (img.spec().to_string(), dest.clone());
    let lib = spawn_guarded(move || {
        let fs = Hammer2::open_path(&spec).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        hammer2::host::extract::extract(&pfs, "/..", &d, &mut |_| {}).map(|_| ()).map_err(|e| e.to_string())
    });
    if let o @ (Outcome::Panicked(_) | Outcome::TimedOut | Outcome::HugeAlloc(_)) = lib.wait(DEADLINE) {
        failures.push(format!("library extract /..: {o:?}"));
    }
    check("library extract /..", &mut failures);
    // And every tool names the entry for what it is.
    failures.extend(every_tool("'..' entry", &img, &["/", "/..", "/hello.txt"], &["DIRENT_BAD"]).0);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Writes `bytes` at `field` of the best header copy and recomputes its CRCs.
fn set_header_field(img: &Image, field: usize, bytes: &[u8]) {
    let copy = crate::common::reseal::best_copy(img);
    let hoff = copy as u64 * hammer2::format::VOLHDR_ZONE_BYTES;
    img.write(hoff + field as u64, bytes);
    crate::common::reseal::seal_header(img, copy);
}

#[test]
fn volu_loff_far_past_the_end() {
    let img = Image::new("small-iscsi");
    set_header_field(
        &img,
        std::mem::offset_of!(VolumeData, volu_loff),
        &0x7fff_ffff_0000_0000u64.to_le_bytes(),
    );
    let what = "volu_loff[0] = 0x7fff_ffff_0000_0000";
    let (mut failures, report) =
        every_tool(what, &img, &["/", "/hello.txt"], &["HDR_GEOMETRY", "HDR_FIELD", "VOLSET"]);
    if let Some(r) = report {
        if !r.findings.iter().any(|f| f.detail.contains("volu_loff")) {
            failures.push(format!("{what}: no finding names volu_loff: {:#?}", r.findings));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn counters_near_their_maximum() {
    let mut failures = Vec::new();
    let mut attempt = |what: &str, img: &Image, ids: &[&str]| {
        failures.extend(every_tool(what, img, &["/", "/dir", "/dir/data.bin"], ids).0);
    };
    let data_bin = |i: &Image, b: &Blockref| {
        b.kind() == BlockrefType::Inode && i.read(b.offset() + 0x60, 8) == 100_000u64.to_le_bytes()
    };

    // A file of u64::MAX - 1 bytes.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &data_bin);
    let off = img.bref(*chain.last().unwrap()).offset();
    let mut ip = InodeData::read_from_bytes(&img.read(off, 1024)).unwrap();
    ip.meta.size = (u64::MAX - 1).into();
    img.write(off, ip.as_bytes());
    reseal(&img, copy, &chain);
    attempt("inode size u64::MAX - 1", &img, &["INODE_BAD"]);

    // A blockref claiming u64::MAX - 1 bytes below it.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &data_bin);
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    b.stats_mut().data_count = (u64::MAX - 1).into();
    img.write(pos, b.as_bytes());
    reseal(&img, copy, &chain);
    attempt("data_count u64::MAX - 1", &img, &["BREF_STATS"]);

    // allocator_free = 2^63.
    let img = Image::new("small-iscsi");
    set_header_field(&img, std::mem::offset_of!(VolumeData, allocator_free), &(1u64 << 63).to_le_bytes());
    attempt("allocator_free 2^63", &img, &["HDR_ALLOCATOR", "HDR_FIELD"]);

    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
