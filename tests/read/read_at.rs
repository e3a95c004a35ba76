//! `FsView::read_at`: a byte range of a file, read from only the blocks
//! it meets, equals that range of the whole file, for the committed image
//! and for a write session's view (what a mount serves reads from).

use crate::common::{self, model::Rng};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::read::view::FsView;
use hammer2::write::session::{Session, SessionView};

/// Ranges at block edges, inside holes, across the end and past it.
fn ranges(len: u64, rng: &mut Rng) -> Vec<(u64, usize)> {
    let mut v =
        vec![(0, 1), (0, 70_000), (65_535, 2), (65_536, 65_536), (len.saturating_sub(3), 10), (len, 5)];
    for _ in 0..40 {
        v.push((rng.below(len + 100), rng.range(1, 300_000) as usize));
    }
    v
}

fn check(view: &dyn FsView, paths: &[&str], rng: &mut Rng) {
    for path in paths {
        let (inum, _) = view.resolve(path).unwrap();
        let mut whole = Vec::new();
        view.read(inum, &mut whole).unwrap();
        let len = whole.len() as u64;
        for (off, n) in ranges(len, rng) {
            let got = view.read_at(inum, off, n).unwrap();
            let (lo, hi) = (off.min(len) as usize, (off + n as u64).min(len) as usize);
            assert_eq!(got, whole[lo..hi], "{path}: {n} bytes at {off}");
        }
    }
}

const FILES: &[&str] = &[
    "/big-40m.bin",
    "/sparse-hole.bin",
    "/mixed-5m.bin",
    "/random-1m.bin",
    "/just-over-512.bin",
    "/hello.txt",
    "/empty.file",
];

#[test]
fn ranges_of_committed_files() {
    let mut rng = Rng::new(0x2a7);
    for name in ["varied", "varied-zlib"] {
        let fs = hammer2::Hammer2::open_path(common::fixture(name).to_str().unwrap()).unwrap();
        let tree = Tree::new(&fs);
        check(&Pfs::default(&tree).unwrap(), FILES, &mut rng);
    }
}

#[test]
fn ranges_in_a_write_session() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("varied", dir.path());
    let mut s = Session::open(img.to_str().unwrap(), false).unwrap();
    let pfs = s.pfs(None).unwrap();
    // Uncommitted changes: a write into the middle of a file, a new hole.
    s.write(&pfs, "/random-1m.bin", 100_000, &common::content(3, 200_000)[..], 200_000).unwrap();
    s.truncate(&pfs, "/mixed-5m.bin", 3_000_000).unwrap();
    s.truncate(&pfs, "/mixed-5m.bin", 6_000_000).unwrap();
    let mut rng = Rng::new(0x2a8);
    check(&SessionView { session: &s, pfs: &pfs }, FILES, &mut rng);
}
