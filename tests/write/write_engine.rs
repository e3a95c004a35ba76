//! The write engine end to end: edits committed through chains, the
//! freemap allocator and the flush, then checked by our reader and fsck
//! and by the independent implementations in ../shared/reftools.

use crate::common::content;
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::write::session::{Attrs, Session};
use hammer2::Hammer2;
use std::path::Path;

use crate::common::oracle::{bulkfree_verdict, makefs, makefs_read, reference_fsck};

/// The reference checker accepts `spec`.
fn oracle_fsck(spec: &str) {
    if !crate::common::oracle::wanted() {
        return;
    }
    let (ok, text) = reference_fsck(spec);
    assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{text}");
}

/// makefs (the kernel's code) mounts the image, runs bulkfree and flushes:
/// no recovery may be needed and no block in use may be marked free.
fn oracle_makefs_bulkfree(img: &Path) {
    if !crate::common::oracle::wanted() {
        return;
    }
    let (ok, text) = makefs(img, &["B"]);
    assert!(ok, "makefs -o B failed on {}:\n{text}", img.display());
    bulkfree_verdict(&text).unwrap_or_else(|e| panic!("{e}"));
}

fn our_fsck_clean(spec: &str) {
    let r = hammer2::fsck::fsck(spec, &Default::default()).unwrap();
    let bad: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.problem.severity != hammer2::fsck::Severity::Info)
        .map(|f| format!("{} {} {}", f.problem.id, f.location, f.detail))
        .collect();
    assert!(bad.is_empty(), "our fsck finds problems in {spec}:\n{}", bad.join("\n"));
    assert_eq!(r.exit_code(), 0);
}

fn read_file(spec: &str, pfs: Option<&str>, path: &str) -> Vec<u8> {
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let pfs = match pfs {
        Some(l) => Pfs::find(&tree, l).unwrap(),
        None => Pfs::default(&tree).unwrap(),
    };
    let ino = pfs.resolve(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut sink = hammer2::read::file::WriteSink(Vec::new());
    hammer2::read::file::read_file(&tree, &ino, &mut sink).unwrap();
    sink.0
}

#[test]
fn mkdir_put_rm_on_small_iscsi() {
    crate::common::oracle::without(mkdir_put_rm_on_small_iscsi_scenario);
}

/// [`mkdir_put_rm_on_small_iscsi`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn mkdir_put_rm_on_small_iscsi_with_reference_tools() {
    mkdir_put_rm_on_small_iscsi_scenario();
}

fn mkdir_put_rm_on_small_iscsi_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let small = content(1, 100);
    let big = content(2, 300_000);
    std::fs::write(host.join("small"), &small).unwrap();
    std::fs::write(host.join("big"), &big).unwrap();

    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/newdir", Attrs::now(0o755), false).unwrap();
    s.put(&pfs, &host.join("small"), "/newdir/small.txt").unwrap();
    s.put(&pfs, &host.join("big"), "/big.bin").unwrap();
    s.remove(&pfs, "/hello.txt", false).unwrap();
    let report = s.commit().unwrap();
    assert_eq!(report.tid, 0x12);
    drop(s);

    assert_eq!(read_file(spec, None, "/newdir/small.txt"), small);
    assert_eq!(read_file(spec, None, "/big.bin"), big);
    let fs = Hammer2::open_path(spec).unwrap();
    let pfs = Pfs::default(&Tree::new(&fs)).unwrap();
    assert!(pfs.resolve("/hello.txt").is_err(), "removed");
    assert!(pfs.resolve("/dir/data.bin").is_ok(), "untouched files stay");
    assert_eq!(fs.voldata.mirror_tid.get(), 0x12);
    assert_eq!(fs.voldata.freemap_tid.get(), 0x12);
    drop(fs);
    our_fsck_clean(spec);
    oracle_fsck(spec);
    oracle_makefs_bulkfree(&img);
    oracle_fsck(spec);
    our_fsck_clean(spec);
    assert_eq!(read_file(spec, None, "/big.bin"), big, "still there after makefs wrote");
}

/// `Session::put`: a sparse host file keeps its
/// holes (only the one block with data is stored), and its mode and
/// modification time; an existing path and a non-file are refused.
#[test]
fn put_keeps_holes_mode_and_time() {
    crate::common::oracle::without(put_keeps_holes_mode_and_time_scenario);
}

/// [`put_keeps_holes_mode_and_time`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn put_keeps_holes_mode_and_time_with_reference_tools() {
    put_keeps_holes_mode_and_time_scenario();
}

fn put_keeps_holes_mode_and_time_scenario() {
    use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let host = dir.path().join("sparse");
    let f = std::fs::File::create(&host).unwrap();
    f.set_len(4 << 20).unwrap();
    f.write_all_at(&content(3, 100), 2 << 20).unwrap();
    drop(f);
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let inum = s.put(&pfs, &host, "/sparse.bin").unwrap();
    assert!(s.put(&pfs, &host, "/sparse.bin").is_err(), "an existing file was replaced");
    assert!(s.put(&pfs, dir.path(), "/d").is_err(), "a directory was put");
    s.commit().unwrap();
    drop(s);
    let mut want = vec![0u8; 4 << 20];
    want[2 << 20..(2 << 20) + 100].copy_from_slice(&content(3, 100));
    assert!(read_file(spec, None, "/sparse.bin") == want);
    let fs = Hammer2::open_path(spec).unwrap();
    let ino = Pfs::default(&Tree::new(&fs)).unwrap().resolve("/sparse.bin").unwrap();
    assert_eq!(ino.inum(), inum);
    let data = ino.bref.stats().data_count.get();
    assert!(data <= 65536, "holes stored: {data} bytes of data");
    let m = &ino.data.meta;
    let hm = std::fs::metadata(&host).unwrap();
    assert_eq!(m.mode.get() & 0o7777, 0o640);
    assert_eq!(m.mtime.get() / 1_000_000, hm.mtime() as u64);
    drop(fs);
    our_fsck_clean(spec);
    oracle_fsck(spec);
}

/// A fresh newfs image has no freemap: the first commit builds it. Three
/// thousand files in one directory split its table into indirect blocks at
/// several levels; a 100 MiB file needs two levels of data indirect blocks.
#[test]
fn thousands_of_files_and_a_large_file_on_a_fresh_newfs_image() {
    crate::common::oracle::without(thousands_of_files_and_a_large_file_on_a_fresh_newfs_image_scenario);
}

/// [`thousands_of_files_and_a_large_file_on_a_fresh_newfs_image`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn thousands_of_files_and_a_large_file_on_a_fresh_newfs_image_with_reference_tools() {
    thousands_of_files_and_a_large_file_on_a_fresh_newfs_image_scenario();
}

fn thousands_of_files_and_a_large_file_on_a_fresh_newfs_image_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-10g", dir.path());
    let spec = img.to_str().unwrap();
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/many", Attrs::now(0o755), false).unwrap();
    let n = 3000;
    for i in 0..n {
        let body = format!("file number {i}\n").repeat(i % 50 + 1);
        let name = format!("/many/f{i:05}-{}", "x".repeat(i % 90));
        s.create_file(&pfs, &name, Attrs::now(0o644), body.as_bytes(), body.len() as u64).unwrap();
    }
    let big_len = 100 << 20;
    let big = content(7, big_len);
    s.create_file(&pfs, "/big", Attrs::now(0o600), &big[..], big_len as u64).unwrap();
    s.commit().unwrap();
    drop(s);

    our_fsck_clean(spec);
    oracle_fsck(spec);
    assert_eq!(read_file(spec, None, "/big"), big);
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let p = Pfs::default(&tree).unwrap();
    let many = p.resolve("/many").unwrap();
    let entries = p.readdir(&many).unwrap();
    assert_eq!(entries.len(), n);
    for i in (0..n).step_by(97) {
        let body = format!("file number {i}\n").repeat(i % 50 + 1);
        let name = format!("/many/f{i:05}-{}", "x".repeat(i % 90));
        assert_eq!(read_file(spec, None, &name), body.as_bytes(), "{name}");
    }
    drop(fs);
    oracle_makefs_bulkfree(&img);
    our_fsck_clean(spec);
    assert_eq!(read_file(spec, None, "/big"), big);
}

/// Every file of a fixture manifest (but those in `skip`) reads back with
/// its recorded sha256 through our reader.
fn assert_manifest(spec: &str, manifest: &str, pfs: Option<&str>, skip: &dyn Fn(&str) -> bool) -> usize {
    use sha2::{Digest, Sha256};
    let text =
        std::fs::read_to_string(crate::common::fixtures_dir().join(format!("{manifest}.manifest"))).unwrap();
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let p = match pfs {
        Some(l) => Pfs::find(&tree, l).unwrap(),
        None => Pfs::default(&tree).unwrap(),
    };
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        if f[1] != "f" || skip(f[0]) {
            continue;
        }
        let ino = p.resolve(f[0]).unwrap_or_else(|e| panic!("{}: {e}", f[0]));
        let mut sink = hammer2::read::file::WriteSink(Vec::new());
        hammer2::read::file::read_file(&tree, &ino, &mut sink).unwrap();
        let hex: String = Sha256::digest(&sink.0).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, f[4], "{}", f[0]);
        checked += 1;
    }
    checked
}

/// Edits on makefs's own image (LZ4, xxhash64, a 3,000-entry directory
/// with indirect blocks, 40-level nesting), then the kernel code takes a
/// snapshot of the result and keeps writing.
#[test]
fn edits_on_varied_then_a_kernel_snapshot() {
    crate::common::oracle::without(edits_on_varied_then_a_kernel_snapshot_scenario);
}

/// [`edits_on_varied_then_a_kernel_snapshot`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn edits_on_varied_then_a_kernel_snapshot_with_reference_tools() {
    edits_on_varied_then_a_kernel_snapshot_scenario();
}

fn edits_on_varied_then_a_kernel_snapshot_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("varied", dir.path());
    let spec = img.to_str().unwrap();
    let deep = (0..40).map(|i| format!("level{i:02}")).collect::<Vec<_>>().join("/");
    let compressible: Vec<u8> = (0..2_000_000u32).map(|i| (i / 1000) as u8).collect();
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    for i in 0..500 {
        let body = content(i, (i as usize * 37) % 3000 + 1);
        s.create_file(&pfs, &format!("/wide/new-{i}"), Attrs::now(0o644), &body[..], body.len() as u64)
            .unwrap();
    }
    let removed: Vec<String> = std::fs::read_to_string(crate::common::fixtures_dir().join("varied.manifest"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("wide/f0"))
        .step_by(3)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    for r in &removed {
        s.remove(&pfs, r, false).unwrap();
    }
    s.remove(&pfs, "/big-40m.bin", false).unwrap();
    s.mkdir(&pfs, &format!("/{deep}/level40/level41"), Attrs::now(0o700), true).unwrap();
    s.create_file(
        &pfs,
        &format!("/{deep}/level40/level41/z"),
        Attrs::now(0o644),
        &compressible[..],
        2_000_000,
    )
    .unwrap();
    s.commit().unwrap();
    drop(s);

    our_fsck_clean(spec);
    oracle_fsck(spec);
    let gone = |p: &str| p == "big-40m.bin" || removed.iter().any(|r| r == p);
    let n = assert_manifest(spec, "varied", None, &gone);
    assert!(n > 2000, "{n} untouched files checked");
    assert_eq!(read_file(spec, None, &format!("/{deep}/level40/level41/z")), compressible);
    for i in (0..500).step_by(41) {
        assert_eq!(
            read_file(spec, None, &format!("/wide/new-{i}")),
            content(i, (i as usize * 37) % 3000 + 1)
        );
    }
    // The compressible file's blocks were stored LZ4-compressed and small.
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let p = Pfs::default(&tree).unwrap();
    let z = p.resolve(&format!("/{deep}/level40/level41/z")).unwrap();
    assert!(z.bref.stats().data_count.get() < 200_000, "compressed: {}", z.bref.stats().data_count.get());
    drop(fs);

    // The kernel's code mounts our image, snapshots DATA and flushes.
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&img, &["P=snapshot:snapx"]);
        assert!(ok && text.contains("no recovery needed"), "{text}");
        oracle_fsck(spec);
        our_fsck_clean(spec);
        assert_eq!(read_file(spec, Some("snapx"), &format!("/{deep}/level40/level41/z")), compressible);
        assert_manifest(spec, "varied", Some("snapx"), &gone);
    }
    oracle_makefs_bulkfree(&img);
    our_fsck_clean(spec);
    // And the kernel's code reads back what we wrote.
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, &format!("/{deep}/level40/level41/z")), compressible);
    }
    let i = 41u64;
    if crate::common::oracle::wanted() {
        assert_eq!(
            makefs_read(&img, None, &format!("/wide/new-{i}")),
            content(i, (i as usize * 37) % 3000 + 1)
        );
    }
}

/// A two-volume set: allocations may land on either volume; the header is
/// written on the root volume.
#[test]
fn edits_on_a_multi_volume_set() {
    crate::common::oracle::without(edits_on_a_multi_volume_set_scenario);
}

/// [`edits_on_a_multi_volume_set`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn edits_on_a_multi_volume_set_with_reference_tools() {
    edits_on_a_multi_volume_set_scenario();
}

fn edits_on_a_multi_volume_set_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::common::scratch_copy("multivol-0", dir.path());
    let b = crate::common::scratch_copy("multivol-1", dir.path());
    let spec = format!("{}:{}", a.display(), b.display());
    let mut s = Session::open(&spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/d", Attrs::now(0o755), false).unwrap();
    let big = content(9, 3 << 20);
    s.create_file(&pfs, "/d/big", Attrs::now(0o644), &big[..], big.len() as u64).unwrap();
    for i in 0..200 {
        s.create_file(&pfs, &format!("/d/f{i}"), Attrs::now(0o644), &b"x"[..], 1).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    assert_eq!(read_file(&spec, None, "/d/big"), big);
    assert_eq!(read_file(&spec, None, "/d/f199"), b"x");
}

/// Runs `n` file creations in 20 directories with an optional memory
/// budget; returns the peak of loaded-chain bytes.
fn import_with_budget(spec: &str, n: u64, budget: Option<usize>) -> usize {
    let mut s = Session::open(spec, false).unwrap();
    if let Some(b) = budget {
        s.set_memory_budget(b);
    }
    let pfs = s.pfs(None).unwrap();
    let mut peak = 0;
    for d in 0..20 {
        s.mkdir(&pfs, &format!("/d{d}"), Attrs::now(0o755), false).unwrap();
    }
    for i in 0..n {
        let body = content(i, (i as usize % 700) + 1);
        let path = format!("/d{}/f{i}", i % 20);
        s.create_file(&pfs, &path, Attrs::now(0o644), &body[..], body.len() as u64).unwrap();
        peak = peak.max(s.resident());
    }
    s.commit().unwrap();
    peak
}

/// With a small dirty-memory budget, loaded subtrees are written early and
/// reloaded when touched again: memory stays near the budget, and the
/// result is the same file system.
#[test]
fn a_small_memory_budget_writes_subtrees_early() {
    crate::common::oracle::without(a_small_memory_budget_writes_subtrees_early_scenario);
}

/// [`a_small_memory_budget_writes_subtrees_early`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_small_memory_budget_writes_subtrees_early_with_reference_tools() {
    a_small_memory_budget_writes_subtrees_early_scenario();
}

fn a_small_memory_budget_writes_subtrees_early_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let free = crate::common::scratch_copy("small-iscsi", dir.path());
    let unbounded = import_with_budget(free.to_str().unwrap(), 10_000, None);
    std::fs::remove_file(&free).unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let bounded = import_with_budget(spec, 10_000, Some(1 << 20));
    assert!(unbounded > 3 << 20, "the workload needs memory without a budget: {unbounded}");
    assert!(bounded < 2 << 20, "with a 1 MiB budget loaded chains peaked at {bounded} bytes");
    our_fsck_clean(spec);
    oracle_fsck(spec);
    for i in (0..10_000).step_by(123) {
        assert_eq!(read_file(spec, None, &format!("/d{}/f{i}", i % 20)), content(i, (i as usize % 700) + 1));
    }
    assert_eq!(read_file(spec, None, "/dir/data.bin").len(), 100_000);
    oracle_makefs_bulkfree(&img);
    our_fsck_clean(spec);
}

/// Writing into existing files: embedded data converting to a blockset,
/// a tail block growing, a hole written past the end, a block zeroed into
/// a hole, and in-place patches; on an uncompressed and an LZ4 image.
#[test]
fn writes_into_existing_files() {
    crate::common::oracle::without(writes_into_existing_files_scenario);
}

/// [`writes_into_existing_files`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn writes_into_existing_files_with_reference_tools() {
    writes_into_existing_files_scenario();
}

fn writes_into_existing_files_scenario() {
    for fixture in ["small-iscsi", "varied"] {
        let dir = tempfile::tempdir().unwrap();
        let img = crate::common::scratch_copy(fixture, dir.path());
        let spec = img.to_str().unwrap();
        let mut model: Vec<(String, Vec<u8>)> = Vec::new();
        let mut s = Session::open(spec, false).unwrap();
        let pfs = s.pfs(None).unwrap();
        let mut put = |s: &mut Session, path: &str, body: Vec<u8>| {
            s.create_file(&pfs, path, Attrs::now(0o644), &body[..], body.len() as u64).unwrap();
            model.push((path.to_string(), body));
        };
        put(&mut s, "/wa", content(1, 100));
        put(&mut s, "/wb", content(2, 10_000));
        put(&mut s, "/wc", Vec::new());
        put(&mut s, "/wd", content(4, 300_000));
        let patch =
            |model: &mut Vec<(String, Vec<u8>)>, s: &mut Session, path: &str, off: usize, data: &[u8]| {
                s.write(&pfs, path, off as u64, data, data.len() as u64).unwrap();
                let m = &mut model.iter_mut().find(|(p, _)| p == path).unwrap().1;
                if m.len() < off + data.len() {
                    m.resize(off + data.len(), 0);
                }
                m[off..off + data.len()].copy_from_slice(data);
            };
        patch(&mut model, &mut s, "/wa", 50, &content(5, 1000)); // leaves the inode
        patch(&mut model, &mut s, "/wb", 200_000, b"tail!"); // tail grows, hole between
        patch(&mut model, &mut s, "/wc", 0, &content(6, 600)); // empty to a blockset
        patch(&mut model, &mut s, "/wd", 65_536, &vec![0u8; 65_536]); // a block becomes a hole
        patch(&mut model, &mut s, "/wd", 299_990, b"0123456789abcdef"); // past the end, same tail block
        s.commit().unwrap();
        // A second session patches again, including the fixture's own file.
        let mut s = Session::open(spec, false).unwrap();
        let pfs = s.pfs(None).unwrap();
        let existing = if fixture == "varied" { "/random-1m.bin" } else { "/dir/data.bin" };
        let mut orig = read_file(spec, None, existing);
        s.write(&pfs, existing, 70_000, &b"xyz"[..], 3).unwrap();
        orig[70_000..70_003].copy_from_slice(b"xyz");
        s.write(&pfs, "/wa", 0, &b"A"[..], 1).unwrap();
        model[0].1[0] = b'A';
        s.commit().unwrap();
        drop(s);
        our_fsck_clean(spec);
        oracle_fsck(spec);
        for (path, body) in &model {
            assert_eq!(&read_file(spec, None, path), body, "{fixture}{path}");
        }
        assert_eq!(read_file(spec, None, existing), orig, "{fixture}{existing}");
        oracle_makefs_bulkfree(&img);
        our_fsck_clean(spec);
        for (path, body) in &model {
            assert_eq!(&read_file(spec, None, path), body, "{fixture}{path} after makefs");
        }
    }
}
