//! Freemap recovery (`hammer2_recover`, `hammer2::recover`, and fsck's
//! freemap repairs through it) on crash-window images: a fixture plus one
//! more transaction committed by the write engine, whose volume header then
//! gets the freemap blockset, freemap_tid and allocator_free of the previous
//! header copy back ([`hammer2::recover::lag_freemap`]), exactly what a
//! kernel crash between the topology flush and the freemap flush leaves.
//! Checked by our fsck, the reference checker and DragonFly's own kernel
//! code (`../shared/reftools/makefs`, which mounts images read-write and
//! runs its mount-time recovery).

use crate::common::recording::{self, content, content_digest, visible_state, State};
use hammer2::device::{Access, Device};
use hammer2::format::BlockrefType;
use hammer2::fsck::{fsck, FsckReport};
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::recover::{lag_freemap, recover, Lagged, RecoverOptions, RecoverReport};
use hammer2::write::alloc::Allocator;
use hammer2::write::session::{Attrs, PfsRef, Session};
use hammer2::{CopyChoice, Hammer2};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHUNK: u64 = 16384;
const ZONE: u64 = 1 << 30;

/// A crash-window image (one or more volumes) in its own directory.
struct Window {
    dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    spec: String,
    /// The default PFS as the last commit left it.
    state: State,
    lagged: Lagged,
}

impl Window {
    /// Copies of `fixtures` (the volumes of one file system), `edits` applied
    /// by one session and committed, then the freemap put one transaction
    /// behind.
    fn new(fixtures: &[&str], edits: impl FnOnce(&mut Session)) -> Window {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> =
            fixtures.iter().map(|f| crate::common::scratch_copy(f, dir.path())).collect();
        let spec = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let mut s = Session::open(&spec, false).unwrap();
        edits(&mut s);
        s.commit().unwrap();
        let lagged = lag_freemap(&mut s.fs).unwrap();
        drop(s);
        let state = visible_state(&spec).unwrap();
        Window { dir, paths, spec, state, lagged }
    }

    /// A sparse copy of the (single-volume) image, beside it.
    fn copy(&self, name: &str) -> PathBuf {
        assert_eq!(self.paths.len(), 1);
        let p = self.dir.path().join(name);
        crate::common::copy_sparse(&self.paths[0], &p);
        p
    }

    fn digest(&self) -> Vec<String> {
        self.paths.iter().map(|p| content_digest(p)).collect()
    }
}

fn attrs() -> Attrs {
    Attrs { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000_000_000 }
}

fn put(s: &mut Session, pfs: &PfsRef, path: &str, body: &[u8]) {
    s.create_file(pfs, path, attrs(), body, body.len() as u64).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// Several files (embedded, one block, many blocks), a new directory.
fn varied_edits(s: &mut Session, tag: u64) {
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/recovered", Attrs { mode: 0o755, ..attrs() }, false).unwrap();
    for (i, len) in [100usize, 5_000, 70_000, 300_000, 1_000].into_iter().enumerate() {
        put(s, &pfs, &format!("/recovered/f{i}"), &content(tag * 100 + i as u64, len));
    }
    put(s, &pfs, &format!("/{}", "long-name-".repeat(9)), &content(tag * 100 + 50, 20_000));
    put(s, &pfs, "/top.bin", &content(tag * 100 + 51, 200_000));
}

fn ids(r: &FsckReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.problem.id.code()).collect()
}

fn dump(r: &FsckReport) -> String {
    r.findings.iter().map(|f| format!("{} {}: {}\n", f.problem.id, f.location, f.detail)).collect()
}

/// Our fsck (read-only): no damage, and no freemap finding at all but leaks.
fn our_fsck_clean(spec: &str) {
    let r = fsck(spec, &Default::default()).unwrap();
    let bad: Vec<String> = r
        .findings
        .iter()
        .filter(|f| {
            f.problem.severity != hammer2::fsck::Severity::Info
                || (f.problem.id.code().starts_with("FREEMAP_")
                    && f.problem.id != hammer2::fsck::ProblemId::FreemapLeaked)
        })
        .map(|f| format!("{} {}: {}", f.problem.id, f.location, f.detail))
        .collect();
    assert!(bad.is_empty(), "our fsck finds problems in {spec}:\n{}", bad.join("\n"));
    assert_eq!(r.exit_code(), 0);
}

fn reference_fsck_clean(spec: &str) {
    if crate::common::oracle::wanted() {
        let (ok, text) = crate::common::oracle::reference_fsck(spec);
        assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{text}");
    }
}

/// makefs (DragonFly's kernel code) mounts `img` read-write (running its
/// mount-time recovery), does `op` and flushes; returns its output.
fn makefs(img: &Path, op: &str) -> String {
    let (ok, text) = crate::common::oracle::makefs(img, &[op]);
    assert!(ok, "makefs -o {op} failed on {}:\n{text}", img.display());
    text
}

/// makefs bulkfree: no recovery needed, no block in use found marked free.
fn makefs_bulkfree_clean(img: &Path) {
    if !crate::common::oracle::wanted() {
        return;
    }
    let text = makefs(img, "B");
    crate::common::oracle::bulkfree_verdict(&text).unwrap_or_else(|e| panic!("{e}"));
}

fn run_bin(name: &str, args: &[&str]) -> (i32, String) {
    let exe = match name {
        "hammer2_recover" => env!("CARGO_BIN_EXE_hammer2_recover"),
        "fsck_hammer2" => env!("CARGO_BIN_EXE_fsck_hammer2"),
        other => panic!("{other}"),
    };
    let o = Command::new(exe).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

fn recover_spec(spec: &str, opts: RecoverOptions) -> RecoverReport {
    let access = if opts.dry_run { Access::ReadOnly } else { Access::ReadWrite };
    let mut fs = Hammer2::open(Device::open(spec, access).unwrap(), CopyChoice::Best).unwrap();
    recover(&mut fs, &opts, None).unwrap()
}

/// Every block with media in the topology: (offset, end, mirror_tid).
fn topology_blocks(spec: &str) -> Vec<(u64, u64, u64)> {
    let fs = Hammer2::open_path(spec).unwrap();
    let mut out = Vec::new();
    walk(&fs, Root::Topology, WalkOptions { read_data: false, ..Default::default() }, &mut |v| {
        let b = v.bref;
        if b.radix() != 0 {
            out.push((b.offset(), b.offset() + b.physical_size(), b.mirror_tid.get()));
        }
    })
    .unwrap();
    out
}

/// Chunks the freemap marks allocated (11), over every leaf.
fn allocated_chunks(spec: &str) -> BTreeSet<u64> {
    let fs = Hammer2::open_path(spec).unwrap();
    let a = Allocator::load(&fs).unwrap();
    let mut out = BTreeSet::new();
    for zone in a.leaf_keys() {
        for c in (zone..zone + ZONE).step_by(CHUNK as usize) {
            if a.chunk_state(c) == Some(hammer2::freemap::ChunkState::Allocated) {
                out.insert(c);
            }
        }
    }
    out
}

fn chunks_of(off: u64, end: u64) -> impl Iterator<Item = u64> {
    (off & !(CHUNK - 1)..end).step_by(CHUNK as usize)
}

#[test]
fn fixtures_need_no_recovery_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["small-iscsi", "newfs-1g", "pfs-snapshot"] {
        let img = crate::common::scratch_copy(name, dir.path());
        let spec = img.to_str().unwrap();
        let before = content_digest(&img);
        let (code, out) = run_bin("hammer2_recover", &[spec]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("no recovery needed"), "{out}");
        assert_eq!(content_digest(&img), before, "{name}: nothing may be written");
        let r = fsck(spec, &Default::default()).unwrap();
        for id in ["FREEMAP_LAG", "FREEMAP_LINEAR", "FREEMAP_UNMARKED"] {
            assert!(!ids(&r).contains(&id), "{name}: {}", dump(&r));
        }
    }
    let a = crate::common::scratch_copy("multivol-0", dir.path());
    let b = crate::common::scratch_copy("multivol-1", dir.path());
    let spec = format!("{}:{}", a.display(), b.display());
    let (code, out) = run_bin("hammer2_recover", &["-v", &spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no recovery needed"), "{out}");
}

/// The whole cycle through the binaries on makefs's small image.
#[test]
fn crash_window_on_small_iscsi() {
    crate::common::oracle::without(crash_window_on_small_iscsi_scenario);
}

/// [`crash_window_on_small_iscsi`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_window_on_small_iscsi_with_reference_tools() {
    crash_window_on_small_iscsi_scenario();
}

fn crash_window_on_small_iscsi_scenario() {
    let w = Window::new(&["small-iscsi"], |s| varied_edits(s, 1));
    assert_eq!((w.lagged.mirror_tid, w.lagged.freemap_tid), (0x12, 0x11));
    let spec = w.spec.as_str();

    // Before: our fsck sees the lag, blocks in use marked free (the big
    // files took fresh chunks) and a linear pointing into the new inodes.
    let r = fsck(spec, &Default::default()).unwrap();
    for id in ["FREEMAP_LAG", "FREEMAP_UNMARKED", "FREEMAP_LINEAR"] {
        assert!(ids(&r).contains(&id), "{id} missing:\n{}", dump(&r));
    }
    let unmarked =
        r.findings.iter().find(|f| f.problem.id == hammer2::fsck::ProblemId::FreemapUnmarked).unwrap();
    assert!(unmarked.detail.contains("freemap_tid 0x11: all newer"), "{}", unmarked.detail);
    assert_eq!(r.exit_code(), 4);

    // A dry run reports and writes nothing.
    let before = w.digest();
    let (code, out) = run_bin("hammer2_recover", &["-n", "-v", spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freemap recovery 0x12-0x12 (freemap_tid 0x11, mirror_tid 0x12)"), "{out}");
    assert!(out.contains("would commit transaction 0x13"), "{out}");
    assert!(out.contains("│ DATA "), "per-PFS table:\n{out}");
    assert_eq!(w.digest(), before, "a dry run writes nothing");

    let (code, out) = run_bin("hammer2_recover", &[spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("committed transaction 0x13"), "{out}");
    let fs = Hammer2::open_path(spec).unwrap();
    assert_eq!((fs.voldata.mirror_tid.get(), fs.voldata.freemap_tid.get()), (0x13, 0x13));
    drop(fs);
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), w.state);

    // A second run has nothing to do and writes nothing.
    let after = w.digest();
    let (code, out) = run_bin("hammer2_recover", &[spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no recovery needed"), "{out}");
    assert_eq!(w.digest(), after);

    // The kernel's code agrees: nothing to recover, nothing in use free.
    makefs_bulkfree_clean(&w.paths[0]);
    reference_fsck_clean(spec);
    our_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), w.state);
}

/// makefs's big image: 1,500 files in the lagging transaction, then a
/// lot of writing after the recovery, which must never land on live data.
#[test]
fn crash_window_on_varied_then_heavy_editing() {
    crate::common::oracle::without(crash_window_on_varied_then_heavy_editing_scenario);
}

/// [`crash_window_on_varied_then_heavy_editing`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_window_on_varied_then_heavy_editing_with_reference_tools() {
    crash_window_on_varied_then_heavy_editing_scenario();
}

fn crash_window_on_varied_then_heavy_editing_scenario() {
    let w = Window::new(&["varied"], |s| {
        varied_edits(s, 2);
        let pfs = s.pfs(None).unwrap();
        for i in 0..1500u64 {
            put(s, &pfs, &format!("/recovered/many-{i}"), &content(1000 + i, (i as usize * 97) % 9000 + 1));
        }
        s.remove(&pfs, "/hello.txt", false).unwrap();
    });
    let spec = w.spec.as_str();
    let before = fsck(spec, &Default::default()).unwrap();
    assert!(ids(&before).contains(&"FREEMAP_UNMARKED"), "{}", dump(&before));

    let r = recover_spec(spec, RecoverOptions::default());
    assert_eq!(r.range, Some((w.lagged.freemap_tid + 1, w.lagged.mirror_tid)));
    assert!(r.written && r.blocks > 2500, "{r:?}");
    assert!(r.chunks > 0 && r.changed > 0, "{r:?}");
    let names: Vec<&str> = r.pfs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["(super-root)", "DATA"], "{r:?}");
    assert_eq!(r.allocator_free.0 - r.allocator_free.1, r.chunks * CHUNK);
    our_fsck_clean(spec);
    reference_fsck_clean(spec);

    // Write a lot after the recovery; everything stays readable.
    let mut want = w.state.clone();
    let mut s = Session::open(spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/after", Attrs { mode: 0o755, ..attrs() }, false).unwrap();
    want.insert("after".into(), recording::Entry::dir(0o755));
    for i in 0..1000u64 {
        let body = content(5000 + i, [10, 700, 3000, 16_000, 70_000][i as usize % 5]);
        put(&mut s, &pfs, &format!("/after/g{i}"), &body);
        want.insert(format!("after/g{i}"), recording::Entry::file(0o644, &body));
    }
    s.commit().unwrap();
    drop(s);
    assert_eq!(visible_state(spec).unwrap(), want);
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    makefs_bulkfree_clean(&w.paths[0]);
    assert_eq!(visible_state(spec).unwrap(), want);
}

/// pfs-snapshot (DATA, its snapshot snap1, EXTRA): the lagging transaction
/// touches two PFSs; the snapshot shares DATA's old blocks.
#[test]
fn crash_window_spanning_two_pfs_on_pfs_snapshot() {
    crate::common::oracle::without(crash_window_spanning_two_pfs_on_pfs_snapshot_scenario);
}

/// [`crash_window_spanning_two_pfs_on_pfs_snapshot`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn crash_window_spanning_two_pfs_on_pfs_snapshot_with_reference_tools() {
    crash_window_spanning_two_pfs_on_pfs_snapshot_scenario();
}

fn crash_window_spanning_two_pfs_on_pfs_snapshot_scenario() {
    let extra_body = content(77, 150_000);
    let w = Window::new(&["pfs-snapshot"], |s| {
        varied_edits(s, 3);
        let extra = s.pfs(Some("EXTRA")).unwrap();
        s.mkdir(&extra, "/x", Attrs { mode: 0o700, ..attrs() }, false).unwrap();
        put(s, &extra, "/x/blob", &extra_body);
    });
    let spec = w.spec.as_str();
    let r = recover_spec(spec, RecoverOptions { dry_run: true, full: false });
    assert!(!r.written && r.commit.is_some());
    let names: BTreeSet<&str> = r.pfs.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains("DATA") && names.contains("EXTRA") && !names.contains("snap1"), "{r:?}");
    let r = recover_spec(spec, RecoverOptions::default());
    assert!(r.written);
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), w.state);
    makefs_bulkfree_clean(&w.paths[0]);
    our_fsck_clean(spec);
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = hammer2::read::tree::Tree::new(&fs);
    let extra = hammer2::read::pfs::Pfs::find(&tree, "EXTRA").unwrap();
    let ino = extra.resolve("/x/blob").unwrap();
    let mut sink = hammer2::read::file::WriteSink(Vec::new());
    hammer2::read::file::read_file(&tree, &ino, &mut sink).unwrap();
    assert!(sink.0 == extra_body);
}

/// The case the kernel gets wrong: the lagging transaction packed 1 KiB
/// inodes into a chunk the old freemap already marked allocated, so only
/// `linear` says they are in use.
#[test]
fn linear_moves_past_small_blocks_in_an_allocated_chunk() {
    let w = Window::new(&["small-iscsi"], |s| {
        let pfs = s.pfs(None).unwrap();
        s.mkdir(&pfs, "/only-small", Attrs { mode: 0o755, ..attrs() }, false).unwrap();
        put(s, &pfs, "/only-small/tiny", b"tiny");
    });
    let spec = w.spec.as_str();
    let overlaps = |blocks: &[(u64, u64, u64)], off: u64, len: u64| {
        blocks.iter().find(|&&(s, e, _)| s < off + len && off < e).copied()
    };
    let blocks = topology_blocks(spec);
    let r = fsck(spec, &Default::default()).unwrap();
    assert!(ids(&r).contains(&"FREEMAP_LINEAR"), "{}", dump(&r));
    assert!(!ids(&r).contains(&"FREEMAP_UNMARKED"), "every chunk was already marked:\n{}", dump(&r));

    // Negative control: allocating from the lagging freemap as it stands
    // hands out a live block.
    {
        let fs = Hammer2::open_path(spec).unwrap();
        let mut a = Allocator::load(&fs).unwrap();
        let off = a.alloc(10, BlockrefType::Inode).unwrap() & !0x3f;
        let hit = overlaps(&blocks, off, 1024);
        assert!(hit.is_some_and(|(_, _, tid)| tid == w.lagged.mirror_tid), "{off:#x} {hit:?}");
    }

    let r = recover_spec(spec, RecoverOptions::default());
    assert_eq!(r.chunks, 0, "no chunk changed state: {r:?}");
    assert!(r.changed > 0, "linear moved: {r:?}");
    our_fsck_clean(spec);

    // After the recovery, small and large allocations of every class miss
    // every live block.
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    for i in 0..200 {
        let (radix, kind) = match i % 4 {
            0 => (10, BlockrefType::Inode),
            1 => (10, BlockrefType::Dirent),
            2 => (12, BlockrefType::Data),
            _ => (14, BlockrefType::Indirect),
        };
        let off = a.alloc(radix, kind).unwrap() & !0x3f;
        assert_eq!(
            overlaps(&blocks, off, 1 << radix),
            None,
            "allocation {i} at {off:#x} overwrites live data"
        );
    }
}

/// fsck -p repairs through the recovery (exit 1), then runs clean (exit 0).
#[test]
fn fsck_repairs_the_crash_window_then_runs_clean() {
    crate::common::oracle::without(fsck_repairs_the_crash_window_then_runs_clean_scenario);
}

/// [`fsck_repairs_the_crash_window_then_runs_clean`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn fsck_repairs_the_crash_window_then_runs_clean_with_reference_tools() {
    fsck_repairs_the_crash_window_then_runs_clean_scenario();
}

fn fsck_repairs_the_crash_window_then_runs_clean_scenario() {
    let w = Window::new(&["small-iscsi"], |s| varied_edits(s, 4));
    let spec = w.spec.as_str();
    let before = w.digest();
    let (code, out) = run_bin("fsck_hammer2", &["-n", spec]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("ERROR FREEMAP_UNMARKED") && out.contains("ERROR FREEMAP_LINEAR"), "{out}");
    assert_eq!(w.digest(), before, "-n writes nothing");

    let (code, out) = run_bin("fsck_hammer2", &["-p", spec]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FREEMAP_UNMARKED") && out.contains("[FIXED: replayed the freemap recovery"),
        "{out}"
    );
    assert!(out.contains("0 left uncorrected"), "{out}");
    let (code, out) = run_bin("fsck_hammer2", &["-p", spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("clean\n"), "{out}");
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), w.state);

    // -y on a freemap that also lost allocations older than its
    // freemap_tid: the mount's replay is not enough, fsck goes on to a full one.
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let mut s = Session::open(spec, false).unwrap();
    varied_edits(&mut s, 5);
    s.commit().unwrap();
    let pfs = s.pfs(None).unwrap();
    put(&mut s, &pfs, "/second.bin", &content(55, 100_000));
    s.commit().unwrap();
    let want = visible_state_of(&s);
    freemap_of_two_commits_ago(&mut s.fs);
    drop(s);
    let r = fsck(spec, &Default::default()).unwrap();
    let unmarked = r.findings.iter().filter(|f| f.problem.id == hammer2::fsck::ProblemId::FreemapUnmarked);
    assert!(unmarked.clone().any(|f| f.detail.contains("none newer")), "{}", dump(&r));
    let (code, out) = run_bin("fsck_hammer2", &["-y", spec]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = run_bin("fsck_hammer2", &[spec]);
    assert_eq!(code, 0, "{out}");
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), want);
}

fn visible_state_of(s: &Session) -> State {
    let spec: Vec<String> =
        (0..s.fs.device.len()).map(|i| s.fs.device.volume(i).path().display().to_string()).collect();
    visible_state(&spec.join(":")).unwrap()
}

/// The header in use gets the freemap of the copy two commits back while
/// claiming `freemap_tid = mirror_tid - 1`: the allocations of the
/// transaction before the last are lost, and a replay of blocks newer than
/// freemap_tid does not bring them back.
fn freemap_of_two_commits_ago(fs: &mut Hammer2) {
    let pos = fs.root_position();
    let mirror = fs.voldata.mirror_tid.get();
    let old = fs.headers[pos]
        .copies
        .iter()
        .filter_map(|c| c.data.as_deref().filter(|_| c.is_valid()))
        .find(|d| d.mirror_tid.get() == mirror - 2)
        .expect("the copy two commits back");
    let old = *old;
    let mut v = fs.voldata.clone();
    v.freemap_blockset = old.freemap_blockset;
    v.allocator_free = old.allocator_free;
    v.freemap_tid = (mirror - 1).into();
    v.update_crcs();
    let off = hammer2::format::volhdr_offset(fs.copy);
    fs.device.volume_mut(pos).write(off, zerocopy::IntoBytes::as_bytes(&*v)).unwrap();
    fs.device.sync().unwrap();
}

/// A freemap emptied entirely (no blockset, freemap_tid older than every
/// block, allocator_free as newfs left it) is rebuilt by the replay, leaves
/// created on the way. makefs crashes on such an image; after our recovery
/// it mounts it.
#[test]
fn an_emptied_freemap_is_recovered() {
    crate::common::oracle::without(an_emptied_freemap_is_recovered_scenario);
}

/// [`an_emptied_freemap_is_recovered`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn an_emptied_freemap_is_recovered_with_reference_tools() {
    an_emptied_freemap_is_recovered_scenario();
}

fn an_emptied_freemap_is_recovered_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("varied", dir.path());
    let spec = img.to_str().unwrap();
    let want = visible_state(spec).unwrap();
    {
        let mut fs = Hammer2::open(Device::open(spec, Access::ReadWrite).unwrap(), CopyChoice::Best).unwrap();
        let mut v = fs.voldata.clone();
        v.freemap_blockset = [hammer2::format::Blockref::zeroed(); 4];
        v.freemap_tid = 1.into();
        v.allocator_free = v.allocator_size;
        v.update_crcs();
        let root = fs.root_position();
        let off = hammer2::format::volhdr_offset(fs.copy);
        fs.device.volume_mut(root).write(off, zerocopy::IntoBytes::as_bytes(&*v)).unwrap();
        fs.device.sync().unwrap();
    }
    let r = fsck(spec, &Default::default()).unwrap();
    assert!(ids(&r).contains(&"FREEMAP_UNMARKED"), "{}", dump(&r));
    let (code, out) = run_bin("hammer2_recover", &["-v", spec]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freemap recovery 0x2-"), "{out}");
    our_fsck_clean(spec);
    reference_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), want);
    makefs_bulkfree_clean(&img);
    our_fsck_clean(spec);
    assert_eq!(visible_state(spec).unwrap(), want);
}

/// The replay reads the changed paths only: ten new files in varied's
/// 3,000-entry directory cost a few dozen node reads, not thousands.
#[test]
fn recovery_reads_only_what_changed() {
    let w = Window::new(&["varied"], |s| {
        let pfs = s.pfs(None).unwrap();
        for i in 0..10u64 {
            put(s, &pfs, &format!("/wide/changed-{i}"), &content(9000 + i, 3000));
        }
    });
    let lag = recover_spec(&w.spec, RecoverOptions { dry_run: true, full: false });
    let full = recover_spec(&w.spec, RecoverOptions { dry_run: true, full: true });
    assert!(full.read > 3000, "a full replay reads every node: {full:?}");
    assert!(lag.read < 80, "the replay read {} node blocks for ten files: {lag:?}", lag.read);
    assert!(lag.scanned < 2000, "{lag:?}");
    assert!(lag.blocks >= 20 && lag.blocks < 80, "{lag:?}");
}

/// DragonFly's recovery (makefs) on a copy of the same window: the same
/// chunks become allocated except where its bit-pair selection
/// (`(offset >> 14) & 15` for 32 chunks per word) marks the wrong chunk,
/// and it leaves `linear` pointing into the new blocks; a snapshot taken
/// then overwrites a live inode. After our recovery the same snapshot is
/// fine.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn kernel_recovery_agrees_but_for_its_two_weaknesses() {
    // Long names only: the kernel's recovery asserts on the blockref of an
    // inline directory entry (radix 0) in the lagging transaction.
    let w = Window::new(&["varied"], |s| {
        let pfs = s.pfs(None).unwrap();
        put(s, &pfs, &format!("/{}", "n".repeat(90)), &content(42, 300_000));
    });
    let spec = w.spec.as_str();
    let lagging = allocated_chunks(spec);
    let newer: Vec<(u64, u64, u64)> =
        topology_blocks(spec).into_iter().filter(|b| b.2 > w.lagged.freemap_tid).collect();
    let recovered: BTreeSet<u64> = newer.iter().flat_map(|&(s, e, _)| chunks_of(s, e)).collect();
    // What the kernel marks for each chunk: the pair `idx & 15` of its word.
    let kernel_pick = |c: u64| {
        let word = c & !(32 * CHUNK - 1);
        word + (((c - word) / CHUNK) & 15) * CHUNK
    };
    assert!(recovered.iter().any(|&c| kernel_pick(c) != c), "the window exercises the bit-pair bug");

    let kernel = w.copy("kernel.img");
    let text = makefs(&kernel, "R=/hello.txt");
    assert!(text.contains("freemap recovery 0000000000000012-0000000000000012"), "{text}");
    let ours = w.copy("ours.img");
    let r = recover_spec(ours.to_str().unwrap(), RecoverOptions::default());
    assert!(r.written);

    let mut want_ours = lagging.clone();
    want_ours.extend(&recovered);
    assert_eq!(allocated_chunks(ours.to_str().unwrap()), want_ours);
    let mut want_kernel = lagging.clone();
    want_kernel.extend(recovered.iter().map(|&c| kernel_pick(c)));
    assert_eq!(allocated_chunks(kernel.to_str().unwrap()), want_kernel);

    // Our fsck sees what the kernel left: chunks in use marked free, and
    // linear offsets pointing into live blocks.
    let k = fsck(kernel.to_str().unwrap(), &Default::default()).unwrap();
    assert!(ids(&k).contains(&"FREEMAP_UNMARKED") && ids(&k).contains(&"FREEMAP_LINEAR"), "{}", dump(&k));
    our_fsck_clean(ours.to_str().unwrap());

    // A snapshot on top: the kernel-recovered image loses a live inode.
    makefs(&kernel, "P=snapshot:snapx");
    let k = fsck(kernel.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(k.exit_code(), 4, "the snapshot should have overwritten live data:\n{}", dump(&k));
    let text = makefs(&ours, "P=snapshot:snapx");
    assert!(text.contains("no recovery needed"), "{text}");
    our_fsck_clean(ours.to_str().unwrap());
    reference_fsck_clean(ours.to_str().unwrap());
    assert_eq!(visible_state(ours.to_str().unwrap()).unwrap(), w.state);

    // And fsck -p repairs what the kernel's recovery left (before the snapshot).
    let kernel2 = w.copy("kernel2.img");
    makefs(&kernel2, "R=/hello.txt");
    let (code, out) = run_bin("fsck_hammer2", &["-p", kernel2.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    our_fsck_clean(kernel2.to_str().unwrap());
    reference_fsck_clean(kernel2.to_str().unwrap());
}

/// A crash anywhere in the recovery's own commit leaves either the lagging
/// state (which recovers again) or the recovered one.
#[test]
fn the_recovery_commit_is_crash_consistent() {
    use recording::{cut_points, open_recorded_into, CrashImage, Log, Rng};
    let w = Window::new(&["small-iscsi"], |s| varied_edits(s, 6));
    let log = Log::default();
    let pristine = w.copy("pristine.img");
    {
        let mut fs = open_recorded_into(&w.paths[0], &log);
        recover(&mut fs, &RecoverOptions::default(), None).unwrap();
    }
    let events = log.events();
    assert!(events.len() >= 4, "{} events", events.len());
    let mut img = CrashImage::new(&pristine, &w.dir.path().join("crash.img"));
    let mut lagging = 0;
    for cut in cut_points(&events, 3, &mut Rng::new(7)) {
        img.apply(&events, &cut);
        let spec = img.spec().to_string();
        assert_eq!(visible_state(&spec).unwrap(), w.state, "{}", cut.name);
        let fs = Hammer2::open_path(&spec).unwrap();
        let (m, f) = (fs.voldata.mirror_tid.get(), fs.voldata.freemap_tid.get());
        drop(fs);
        if f < m {
            lagging += 1;
            assert_eq!((m, f), (w.lagged.mirror_tid, w.lagged.freemap_tid), "{}", cut.name);
            let r = recover_spec(&spec, RecoverOptions::default());
            assert!(r.written, "{}", cut.name);
        } else {
            assert_eq!(m, w.lagged.mirror_tid + 1, "{}", cut.name);
        }
        let r = fsck(&spec, &Default::default()).unwrap();
        assert!(r.damage().next().is_none(), "{}:\n{}", cut.name, dump(&r));
    }
    assert!(lagging > 0);
}

#[test]
fn multi_volume_crash_window() {
    crate::common::oracle::without(multi_volume_crash_window_scenario);
}

/// [`multi_volume_crash_window`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn multi_volume_crash_window_with_reference_tools() {
    multi_volume_crash_window_scenario();
}

fn multi_volume_crash_window_scenario() {
    let w = Window::new(&["multivol-0", "multivol-1"], |s| {
        let pfs = s.pfs(None).unwrap();
        s.mkdir(&pfs, "/d", Attrs { mode: 0o755, ..attrs() }, false).unwrap();
        put(s, &pfs, "/d/big", &content(3, 3 << 20));
        for i in 0..50 {
            put(s, &pfs, &format!("/d/f{i}"), b"x");
        }
    });
    let (code, out) = run_bin("hammer2_recover", &["--json", &w.spec]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"]["written"], true, "{out}");
    assert_eq!(v["report"]["range"][1].as_u64(), Some(w.lagged.mirror_tid), "{out}");
    assert!(v["report"]["blocks"].as_u64().unwrap() > 50, "{out}");
    our_fsck_clean(&w.spec);
    reference_fsck_clean(&w.spec);
    assert_eq!(visible_state(&w.spec).unwrap(), w.state);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run_bin("hammer2_recover", &[]).0, 2);
    assert_eq!(run_bin("hammer2_recover", &["--bogus", "x.img"]).0, 2);
    let (code, out) = run_bin("hammer2_recover", &["/nonexistent/x.img"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("hammer2_recover: cannot open device"), "{out}");
}
