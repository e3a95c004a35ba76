//! What a write session refuses, and what it leaves untouched:
//! - a mounted device (an ext2 image mounted read-only through a loop
//!   device), named as the image file and as the loop device;
//! - an edit whose path crosses a block with a bad check code: the error
//!   names that blockref, and the image stays byte-identical;
//! - a dry run: operations and commit are computed, nothing is written.

use crate::common::recording::{content, content_digest, visible_state};
use hammer2::error::{CorruptKind, Location};
use hammer2::format::{Blockref, BlockrefType};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::write::session::{Attrs, Session};
use hammer2::{Error, Hammer2};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn attrs(mode: u32) -> Attrs {
    Attrs { mode, uid: 0, gid: 0, mtime: 1_700_000_000_000_000 }
}

/// Every way of naming a mounted device is refused for writing, with an
/// error saying where it is mounted; nothing is written.
#[test]
#[ignore = "needs root and loop devices"]
fn a_mounted_device_is_refused_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let lm = crate::common::loopdev::LoopMount::ext2(dir.path());
    let img = lm.img.clone();
    let before = content_digest(&img);

    for target in [s(&img), lm.lo.dev.clone()] {
        match Session::open(&target, false) {
            Err(e @ Error::Mounted { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("is mounted on"), "{target}: {msg}");
                let canon = std::fs::canonicalize(&lm.mountpoint).unwrap();
                assert!(msg.contains(canon.to_str().unwrap()), "{target}: names the mount point: {msg}");
            }
            Err(e) => panic!("{target}: refused, but not because it is mounted: {e}"),
            Ok(_) => panic!("{target}: a mounted device was opened for writing"),
        }
    }
    drop(lm);
    assert_eq!(content_digest(&img), before, "the mounted image was written");
}

/// A scratch copy of a fixture, with helpers to damage it.
struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn new(fixture: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::common::scratch_copy(fixture, dir.path());
        Scratch { _dir: dir, path }
    }
    fn spec(&self) -> &str {
        self.path.to_str().unwrap()
    }
    /// Flips the bits of one byte (single volume: logical = physical).
    fn flip(&self, off: u64) {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&self.path).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[!b[0]], off).unwrap();
    }
}

/// The whole edit, stopping at the first refusal.
fn edit(spec: &str, dir: &str, name: &str) -> hammer2::Result<()> {
    let mut s = Session::open(spec, false)?;
    let pfs = s.pfs(None)?;
    s.mkdir(&pfs, &format!("{dir}/{name}.d"), attrs(0o755), false)?;
    let body = content(9, 100_000);
    s.create_file(&pfs, &format!("{dir}/{name}"), attrs(0o644), &body[..], body.len() as u64)?;
    s.commit()?;
    Ok(())
}

/// The edit fails with a check-code mismatch located at `bad`; the image
/// is byte-identical afterwards.
fn assert_refused_at(img: &Scratch, dir: &str, name: &str, bad: &Blockref) -> Location {
    let before = content_digest(&img.path);
    let err = match edit(img.spec(), dir, name) {
        Ok(()) => panic!("an edit through a block with a bad check code was committed"),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("refused: {msg}");
    match &err {
        Error::Corrupt(c) => {
            assert!(matches!(c.kind, CorruptKind::CheckMismatch { .. }), "not a check-code error: {msg}");
            assert_eq!(c.location.data_off, bad.data_off.get(), "the error names another blockref: {msg}");
            assert_eq!(c.location.bref_type, Some(bad.kind()), "{msg}");
        }
        e => panic!("refused, but not for the check code: {e}"),
    }
    assert!(
        msg.contains(&format!("data_off {:#x}", bad.data_off.get())),
        "message lacks the location: {msg}"
    );
    assert!(msg.contains("check code"), "{msg}");
    assert_eq!(content_digest(&img.path), before, "the refused edit wrote to the image");
    match err {
        Error::Corrupt(c) => c.location,
        _ => unreachable!("checked above"),
    }
}

/// small-iscsi with a byte of the DATA PFS root inode flipped (every edit
/// of DATA passes through it); returns the image, the blockref, and where
/// the reader locates it.
fn damaged_pfs_root() -> (Scratch, Blockref, Location) {
    let img = Scratch::new("small-iscsi");
    let (root, loc) = {
        let fs = Hammer2::open_path(img.spec()).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        (*pfs.root.bref, pfs.root.loc.clone())
    };
    assert_eq!(root.kind(), BlockrefType::Inode);
    // A byte of the inode's mtime: the inode stays plausible, only its check code fails.
    img.flip(root.offset() + 0x18);
    (img, root, loc)
}

/// varied's /wide holds 3,000 entries under indirect blocks. A byte flipped
/// in one of them is met by an edit whose name hashes into its key range
/// (the lookup for the name and the insert both descend into it). Returns
/// the image, the blockref, its location, and the name.
fn damaged_directory_indirect() -> (Scratch, Blockref, Location, String) {
    let img = Scratch::new("varied");
    let (indirect, loc, name) = {
        let fs = Hammer2::open_path(img.spec()).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let wide = pfs.resolve("/wide").unwrap();
        let (slot, ind) = wide
            .blockset()
            .iter()
            .enumerate()
            .find(|(_, b)| b.kind() == BlockrefType::Indirect)
            .expect("/wide has indirect blocks under its inode");
        let (lo, hi) = (ind.key.get(), ind.key_end());
        let name = (0..100_000)
            .map(|i| format!("new-{i}"))
            .find(|n| (lo..=hi).contains(&hammer2::format::dirhash::dirhash(n.as_bytes())))
            .expect("a name hashing into the indirect block's range");
        (*ind, Location::of(ind, wide.bref.data_off.get(), slot), name)
    };
    img.flip(indirect.offset() + 3 * 128 + 8);
    (img, indirect, loc, name)
}

#[test]
fn a_bad_check_code_on_the_pfs_root_inode_is_refused() {
    let (img, root, _) = damaged_pfs_root();
    assert_refused_at(&img, "", "new-file", &root);
}

#[test]
fn a_bad_check_code_on_an_indirect_block_of_the_directory_is_refused() {
    let (img, indirect, _, name) = damaged_directory_indirect();
    assert_refused_at(&img, "/wide", &name, &indirect);
}

/// The refusal locates the bad blockref as the reader (and fsck) does:
/// under its parent node, in its slot, not as if the volume header held it.
#[test]
fn a_refusal_names_the_parent_of_the_bad_blockref() {
    let (img, root, want) = damaged_pfs_root();
    let got = assert_refused_at(&img, "", "new-file", &root);
    let (img2, indirect, want2, name) = damaged_directory_indirect();
    let got2 = assert_refused_at(&img2, "/wide", &name, &indirect);
    assert_eq!(
        (got.parent_off, got.index),
        (want.parent_off, want.index),
        "PFS root inode: parent and slot in the refusal ({got}) differ from the reader's ({want})"
    );
    assert_eq!(
        (got2.parent_off, got2.index),
        (want2.parent_off, want2.index),
        "indirect block of /wide: parent and slot in the refusal ({got2}) differ from the reader's ({want2})"
    );
}

/// A dry run computes everything (operations and commit) and writes nothing.
#[test]
fn a_dry_run_leaves_the_image_byte_identical() {
    for fixture in ["small-iscsi", "newfs-1g"] {
        let img = Scratch::new(fixture);
        let before = content_digest(&img.path);
        let tid = Hammer2::open_path(img.spec()).unwrap().voldata.mirror_tid.get();
        let state = visible_state(img.spec()).unwrap();
        let mut s = Session::open(img.spec(), true).unwrap();
        let pfs = s.pfs(None).unwrap();
        s.mkdir(&pfs, "/dry/run", attrs(0o755), true).unwrap();
        for (i, size) in [10usize, 5000, 65536, 300_000].into_iter().enumerate() {
            let body = content(i as u64, size);
            s.create_file(&pfs, &format!("/dry/run/f{i}"), attrs(0o644), &body[..], size as u64).unwrap();
        }
        if fixture == "small-iscsi" {
            s.remove(&pfs, "/hello.txt", false).unwrap();
        }
        let r = s.commit().unwrap();
        assert!(!r.written, "{fixture}: the report of a dry run says it wrote");
        assert_eq!(r.tid, tid + 1, "{fixture}");
        assert!(r.flush.blocks > 0, "{fixture}: the dry run computed no blocks");
        drop(s);
        assert_eq!(content_digest(&img.path), before, "{fixture}: a dry run wrote to the image");
        assert_eq!(Hammer2::open_path(img.spec()).unwrap().voldata.mirror_tid.get(), tid);
        assert_eq!(visible_state(img.spec()).unwrap(), state, "{fixture}");
    }
}

/// A source that fails after `ok` bytes.
struct FailingReader {
    ok: usize,
}

impl std::io::Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("source went away"));
        }
        let n = buf.len().min(self.ok);
        buf[..n].fill(0xa5);
        self.ok -= n;
        Ok(n)
    }
}

/// An operation that fails half-way is not committed: after `create_file`
/// fails reading its source, a commit either refuses or publishes a state
/// without that file, never a file whose missing blocks read as zeros.
#[test]
fn a_failed_operation_is_not_committed_half_done() {
    let img = Scratch::new("small-iscsi");
    let before = visible_state(img.spec()).unwrap();
    let mut s = Session::open(img.spec(), false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let e = s
        .create_file(&pfs, "/half", attrs(0o644), FailingReader { ok: 200_000 }, 1 << 20)
        .expect_err("the source fails");
    assert!(e.to_string().contains("source went away"), "{e}");
    let committed = s.commit();
    drop(s);
    let after = visible_state(img.spec()).unwrap();
    if let Ok(r) = committed {
        assert!(
            !after.contains_key("half"),
            "commit {:#x} published the half-written /half: {:?}",
            r.tid,
            after.get("half")
        );
    }
    let mut want = before;
    want.remove("half");
    assert_eq!(after, want);
}
