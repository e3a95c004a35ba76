//! Write sessions on images whose freemap lags the topology
//! (`freemap_tid < mirror_tid`), as a read-write mount accepts them: the
//! session replays the newer transactions into its allocator and its commit
//! writes the repaired freemap with the edit. Lagging images are made with
//! [`hammer2::recover::lag_freemap`] (and hammer2_edit's hidden
//! `--debug-lag-freemap`) from fixtures and from our own newfs images.
//! Checked: nothing reachable before the write is handed out again, both
//! checkers accept the result, and DragonFly's kernel code (makefs) mounts
//! it with no recovery needed.

use crate::common::editor::{edit, edit_ok, text};
use crate::common::maint::{oracle_fsck, our_fsck_clean, pfs_summary};
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use crate::common::recording::{content_digest, visible_state};
use hammer2::device::{Access, Device};
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::recover::{lag_freemap, recover, Lagged, RecoverOptions};
use hammer2::write::alloc::Allocator;
use hammer2::write::session::{Attrs, Session};
use hammer2::{CopyChoice, Hammer2};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CHUNK: u64 = 16384;

fn attrs(mode: u32) -> Attrs {
    Attrs { mode, uid: 0, gid: 0, mtime: 1_700_000_000_000_000 }
}

/// Blocks with media the topology reaches: offset -> (end, mirror_tid).
fn reachable(spec: &str) -> BTreeMap<u64, (u64, u64)> {
    let fs = Hammer2::open_path(spec).unwrap();
    let mut out = BTreeMap::new();
    walk(&fs, Root::Topology, WalkOptions { read_data: false, ..Default::default() }, &mut |v| {
        let b = v.bref;
        if b.radix() != 0 {
            out.insert(b.offset(), (b.offset() + b.physical_size(), b.mirror_tid.get()));
        }
    })
    .unwrap();
    out
}

/// The (mirror_tid, freemap_tid) of `spec`'s header in use.
fn tids(spec: &str) -> (u64, u64) {
    let fs = Hammer2::open_path(spec).unwrap();
    (fs.voldata.mirror_tid.get(), fs.voldata.freemap_tid.get())
}

/// The window is real: the lagging freemap marks free some chunk a block
/// reachable from the header uses (an allocator trusting it would hand
/// that chunk out). Returns how many such blocks.
fn blocks_marked_free(spec: &str, before: &BTreeMap<u64, (u64, u64)>) -> usize {
    let fs = Hammer2::open_path(spec).unwrap();
    let a = Allocator::load(&fs).unwrap();
    let beg = fs.voldata.allocator_beg.get();
    before
        .iter()
        .filter(|(&off, _)| off >= beg)
        .filter(|(&off, &(end, _))| {
            (off & !(CHUNK - 1)..end)
                .step_by(CHUNK as usize)
                .any(|c| a.chunk_state(c) != Some(hammer2::freemap::ChunkState::Allocated))
        })
        .count()
}

/// No block written after `old_tid` overlaps a block reachable before
/// (`before`, from the lagging header). Returns how many new blocks.
fn no_reuse(spec: &str, before: &BTreeMap<u64, (u64, u64)>, old_tid: u64) -> usize {
    let after = reachable(spec);
    let mut new = 0;
    for (&off, &(end, tid)) in &after {
        if tid <= old_tid {
            continue;
        }
        new += 1;
        if let Some((&o, &(e, _))) = before.range(..end).next_back() {
            assert!(
                e <= off,
                "new block {off:#x}..{end:#x} (tid {tid:#x}) reuses the old block {o:#x}..{e:#x}"
            );
        }
    }
    new
}

/// Through hammer2_edit: a first commit (newfs writes one header copy;
/// the lag needs an older one), `lagging` committed and made to lag, then
/// `script` on the lagging image: it repairs the freemap in the same
/// transaction, reuses nothing, and both checkers accept the result.
fn edit_after_lag(spec: &str, lagging: &str, script: &str) {
    edit_ok(&[spec, "mkdir", "/pre"]);
    let out = edit_ok(&["--debug-lag-freemap", spec, "-c", lagging]);
    assert!(text(&out.stderr).contains("now carries the freemap"), "{}", text(&out.stderr));
    let (mirror, freemap) = tids(spec);
    assert!(freemap < mirror, "the image must lag: {freemap:#x} {mirror:#x}");
    let before = reachable(spec);
    assert!(blocks_marked_free(spec, &before) > 0, "the lagging freemap must mark some live block free");
    let out = edit_ok(&[spec, "-c", script]);
    assert!(text(&out.stderr).contains("will also repair the freemap"), "{}", text(&out.stderr));
    assert_eq!(tids(spec), (mirror + 1, mirror + 1), "one transaction, no lag left");
    assert!(no_reuse(spec, &before, mirror) > 0);
    our_fsck_clean(spec);
    oracle_fsck(spec);
}

/// makefs's image, one committed transaction of varied files, then the
/// freemap put back one transaction: the state a crash (or a kernel flush
/// that did not write the freemap) leaves.
fn lagging_copy(fixture: &str, dir: &Path) -> (PathBuf, String, Lagged) {
    let img = crate::common::scratch_copy(fixture, dir);
    let spec = img.to_str().unwrap().to_string();
    let mut s = Session::open(&spec, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    // A first commit: a newfs image has a single valid header copy, and
    // the lag takes the freemap of an older one.
    s.mkdir(&pfs, "/before", attrs(0o755), false).unwrap();
    s.commit().unwrap();
    s.mkdir(&pfs, "/lagging", attrs(0o755), false).unwrap();
    for (i, len) in [100usize, 5_000, 70_000, 300_000].into_iter().enumerate() {
        let body = crate::common::content(10 + i as u64, len);
        s.create_file(&pfs, &format!("/lagging/f{i}"), attrs(0o644), &body[..], len as u64).unwrap();
    }
    s.commit().unwrap();
    let lagged = lag_freemap(&mut s.fs).unwrap();
    drop(s);
    assert!(lagged.freemap_tid < lagged.mirror_tid);
    (img, spec, lagged)
}

#[test]
fn library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap() {
    crate::common::oracle::without(
        library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap_scenario,
    );
}

/// [`library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap_with_reference_tools() {
    library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap_scenario();
}

fn library_session_writes_on_a_lagging_fixture_and_repairs_the_freemap_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec, lagged) = lagging_copy("small-iscsi", dir.path());
    let before = reachable(&spec);
    assert!(blocks_marked_free(&spec, &before) > 0, "the lagging freemap must mark some live block free");

    // hammer2_recover's dry run and the session run the same replay.
    let mut fs = Hammer2::open(Device::open(&spec, Access::ReadOnly).unwrap(), CopyChoice::Best).unwrap();
    let dry = recover(&mut fs, &RecoverOptions { dry_run: true, full: false }, None).unwrap();
    drop(fs);

    let mut s = Session::open(&spec, false).unwrap();
    let replay = s.freemap_replay().cloned();
    if let Some(r) = &replay {
        assert_eq!(
            (r.blocks, r.bytes, r.changed, r.chunks),
            (dry.blocks, dry.bytes, dry.changed, dry.chunks)
        );
    }
    assert_eq!(s.tid(), lagged.mirror_tid + 1);
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/after", attrs(0o755), false).unwrap();
    let mut bodies = Vec::new();
    for i in 0..40u64 {
        let body = crate::common::content(100 + i, [10, 700, 3000, 16_000, 70_000][i as usize % 5]);
        s.create_file(&pfs, &format!("/after/g{i}"), attrs(0o644), &body[..], body.len() as u64).unwrap();
        bodies.push(body);
    }
    s.commit().unwrap();
    drop(s);

    let (mirror, freemap) = tids(&spec);
    assert_eq!(
        (mirror, freemap),
        (lagged.mirror_tid + 1, lagged.mirror_tid + 1),
        "one transaction, no lag left"
    );
    assert!(no_reuse(&spec, &before, lagged.mirror_tid) > 40);
    let r = replay.expect("the session must replay the lag");
    assert_eq!((r.freemap_tid, r.mirror_tid), (lagged.freemap_tid, lagged.mirror_tid));
    assert!(r.blocks > 0 && r.changed > 0 && r.chunks > 0, "{r:?}");
    let r = hammer2::fsck::fsck(&spec, &Default::default()).unwrap();
    let freemap_findings: Vec<_> = r
        .findings
        .iter()
        .filter(|f| {
            f.problem.id.code().starts_with("FREEMAP_")
                && f.problem.id != hammer2::fsck::ProblemId::FreemapLeaked
        })
        .collect();
    assert!(freemap_findings.is_empty(), "{freemap_findings:?}");
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    let state = visible_state(&spec).unwrap();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(state[&format!("after/g{i}")], crate::common::recording::Entry::file(0o644, body));
    }
    makefs_mounts_and_bulkfrees(&img);
}

#[test]
fn a_dry_run_on_a_lagging_image_writes_nothing_and_says_it_would_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, spec, _) = lagging_copy("newfs-10g", dir.path());
    let digest = content_digest(Path::new(&spec));
    let out = edit_ok(&["-n", &spec, "mkdir", "/dry"]);
    let err = text(&out.stderr);
    assert!(err.contains("lagged the topology") && err.contains("would also repair the freemap"), "{err}");
    assert_eq!(content_digest(Path::new(&spec)), digest, "a dry run writes nothing");
    // Library dry run: the replay is reported, nothing is written.
    let mut s = Session::open(&spec, true).unwrap();
    assert!(s.freemap_replay().is_some());
    let pfs = s.pfs(None).unwrap();
    s.mkdir(&pfs, "/dry", attrs(0o755), false).unwrap();
    s.commit().unwrap();
    drop(s);
    assert_eq!(content_digest(Path::new(&spec)), digest, "a dry-run session writes nothing");
}

/// Our own newfs image, made to lag by hammer2_edit itself; then
/// hammer2_edit mkdir and put work on it.
#[test]
fn hammer2_edit_mkdir_and_put_on_our_own_lagging_image() {
    crate::common::oracle::without(hammer2_edit_mkdir_and_put_on_our_own_lagging_image_scenario);
}

/// [`hammer2_edit_mkdir_and_put_on_our_own_lagging_image`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn hammer2_edit_mkdir_and_put_on_our_own_lagging_image_with_reference_tools() {
    hammer2_edit_mkdir_and_put_on_our_own_lagging_image_scenario();
}

fn hammer2_edit_mkdir_and_put_on_our_own_lagging_image_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("own.img");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_newfs_hammer2"))
        // Header copies live every 2 GiB: the lag needs at least two.
        .args(["-s", "8G", img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "newfs: {}", text(&out.stderr));
    let spec = img.to_str().unwrap().to_string();
    let host = dir.path().join("host.bin");
    std::fs::write(&host, crate::common::content(7, 200_000)).unwrap();
    let host = host.to_str().unwrap();
    edit_after_lag(
        &spec,
        &format!("mkdir /a; put {host} /a/first"),
        &format!("mkdir /b; put {host} /b/second; put {host} /a/third"),
    );
    let state = visible_state(&spec).unwrap();
    let want = crate::common::content(7, 200_000);
    for p in ["a/first", "b/second", "a/third"] {
        let (got, want) = (&state[p], crate::common::recording::Entry::file(0o644, &want));
        assert_eq!((got.kind, got.size, &got.what), (want.kind, want.size, &want.what), "{p}");
    }
    makefs_mounts_and_bulkfrees(&img);
}

/// The maintenance commands (pfs-create, snapshot) on a lagging image.
/// (Not pfs-snapshot: pfs-create there leaves a BREF_STATS warning on the
/// super-root even without any lag, a separate problem.)
#[test]
fn pfs_create_and_snapshot_on_a_lagging_image() {
    crate::common::oracle::without(pfs_create_and_snapshot_on_a_lagging_image_scenario);
}

/// [`pfs_create_and_snapshot_on_a_lagging_image`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn pfs_create_and_snapshot_on_a_lagging_image_with_reference_tools() {
    pfs_create_and_snapshot_on_a_lagging_image_scenario();
}

fn pfs_create_and_snapshot_on_a_lagging_image_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec, lagged) = lagging_copy("small-iscsi", dir.path());
    let before = reachable(&spec);
    edit_ok(&[&spec, "pfs-create", "NEWPFS"]);
    assert_eq!(tids(&spec), (lagged.mirror_tid + 1, lagged.mirror_tid + 1));
    edit_ok(&["--pfs", "DATA", &spec, "snapshot", "snapA"]);
    let labels: Vec<String> = pfs_summary(&spec).into_iter().map(|p| p.0).collect();
    assert!(labels.contains(&"NEWPFS".to_string()) && labels.contains(&"snapA".to_string()), "{labels:?}");
    assert!(no_reuse(&spec, &before, lagged.mirror_tid) > 0);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);

    // bulkfree and growfs, each on a freshly lagging image.
    for (i, cmd) in ["bulkfree", "growfs"].into_iter().enumerate() {
        edit_ok(&["--debug-lag-freemap", &spec, "mkdir", &format!("/m{i}")]);
        let (mirror, freemap) = tids(&spec);
        assert!(freemap < mirror);
        if cmd == "growfs" {
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            f.set_len(f.metadata().unwrap().len() + (1 << 30)).unwrap();
        }
        let out = edit_ok(&[&spec, cmd]);
        assert!(text(&out.stderr).contains("will also repair the freemap"), "{}", text(&out.stderr));
        assert_eq!(tids(&spec), (mirror + 1, mirror + 1), "{}", cmd);
        our_fsck_clean(&spec);
        oracle_fsck(&spec);
    }
    assert_eq!(visible_state(&spec).unwrap().get("m1"), Some(&crate::common::recording::Entry::dir(0o755)));
    makefs_mounts_and_bulkfrees(&img);
}

/// A two-volume set made to lag; a session writes across it.
#[test]
fn a_lagging_multi_volume_set_is_written() {
    crate::common::oracle::without(a_lagging_multi_volume_set_is_written_scenario);
}

/// [`a_lagging_multi_volume_set_is_written`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_lagging_multi_volume_set_is_written_with_reference_tools() {
    a_lagging_multi_volume_set_is_written_scenario();
}

fn a_lagging_multi_volume_set_is_written_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> =
        ["multivol-0", "multivol-1"].iter().map(|f| crate::common::scratch_copy(f, dir.path())).collect();
    let spec = format!("{}:{}", paths[0].display(), paths[1].display());
    let host = dir.path().join("host.bin");
    std::fs::write(&host, crate::common::content(9, 3_000_000)).unwrap();
    let host = host.to_str().unwrap();
    edit_after_lag(
        &spec,
        &format!("mkdir /a; put {host} /a/big"),
        &format!("put {host} /b; put {host} /a/c"),
    );
    let state = visible_state(&spec).unwrap();
    assert!(["a/big", "b", "a/c"].iter().all(|p| state[*p].what == state["a/big"].what));
}

/// A changed node that does not verify: what lies below it is unknown, so
/// the session refuses (clearly) and nothing is written.
#[test]
fn a_damaged_node_in_the_lag_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, spec, lagged) = lagging_copy("small-iscsi", dir.path());
    // An inode written by the lagging transaction (an indirect/inode node
    // the replay must read): break its check code.
    let fs = Hammer2::open_path(&spec).unwrap();
    let mut target = None;
    walk(&fs, Root::Topology, WalkOptions { read_data: false, ..Default::default() }, &mut |v| {
        let b = v.bref;
        if target.is_none()
            && b.kind() == hammer2::format::BlockrefType::Inode
            && b.mirror_tid.get() > lagged.freemap_tid
            && b.flags & hammer2::format::BREF_FLAG_PFSROOT == 0
            && v.depth > 1
        {
            target = Some(b.offset());
        }
    })
    .unwrap();
    drop(fs);
    let off = target.expect("an inode of the lagging transaction");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&spec).unwrap();
        let mut byte = [0u8; 1];
        f.seek(SeekFrom::Start(off + 0x40)).unwrap();
        f.read_exact(&mut byte).unwrap();
        f.seek(SeekFrom::Start(off + 0x40)).unwrap();
        f.write_all(&[byte[0] ^ 0xff]).unwrap();
    }
    let digest = content_digest(Path::new(&spec));
    let err = Session::open(&spec, false).err().expect("a damaged lag must be refused");
    let msg = err.to_string();
    assert!(msg.contains("lags the topology") && msg.contains("cannot be replayed"), "{msg}");
    let out = edit(&[&spec, "mkdir", "/x"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot be replayed"), "{}", text(&out.stderr));
    assert_eq!(content_digest(Path::new(&spec)), digest, "nothing may be written");
}
