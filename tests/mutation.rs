//! Deterministic mutation test: bytes flipped in copies of small fixtures,
//! a few thousand times; every entry point must return (Ok or Err), never
//! panic, hang or allocate without bound. Reads run both with check-code
//! verification (damage is caught early) and without it (garbage reaches
//! every parser).

mod common;

use hammer2::file::{read_file, Sink};
use hammer2::pfs::Pfs;
use hammer2::tree::{Flow, Tree};
use hammer2::walk::{walk, Root, WalkOptions};
use hammer2::Hammer2;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A sink that gives up after a budget (a mutated size may be enormous).
struct Capped(u64);
impl Sink for Capped {
    fn data(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.take(b.len() as u64)
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        self.take(n)
    }
}
impl Capped {
    fn take(&mut self, n: u64) -> std::io::Result<()> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| std::io::Error::other("budget exhausted"))?;
        Ok(())
    }
}

/// Data extents of a sparse file: (offset, length).
fn extents(path: &Path) -> Vec<(u64, u64)> {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut pos = 0i64;
    while pos < len {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        out.push((data as u64, (hole - data) as u64));
        pos = hole;
    }
    out
}

/// What one run reached (proves the test is not vacuous).
#[derive(Default)]
struct Reached {
    opened: bool,
    files: usize,
}

/// Everything the library offers on an image, bounded.
fn exercise(spec: &str, verify: bool) -> Reached {
    let mut reached = Reached::default();
    let _ = hammer2::device::Device::open(spec, hammer2::device::Access::ReadOnly)
        .map(|d| hammer2::dump::volhdr::report(&d));
    let _ = hammer2::fsck::fsck(spec, &Default::default());
    let Ok(fs) = Hammer2::open_path(spec) else { return reached };
    reached.opened = true;
    for root in [Root::Topology, Root::Freemap] {
        let _ = walk(&fs, root, WalkOptions::default(), &mut |_| {});
    }
    let mut tree = Tree::new(&fs);
    tree.verify = verify;
    let Ok(list) = Pfs::list(&tree) else { return reached };
    let mut budget = 20_000usize;
    for pfs in &list {
        let mut stack = vec![(pfs.root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = pfs.readdir(&dir) else { continue };
            for e in entries {
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return reached;
                }
                let _ = pfs.lookup_name(&dir, &e.name);
                let Ok(ino) = pfs.inode(e.inum) else { continue };
                if ino.is_dir() {
                    if depth < 64 {
                        stack.push((ino, depth + 1));
                    }
                } else {
                    if read_file(&tree, &ino, &mut Capped(16 << 20)).is_ok() {
                        reached.files += 1;
                    }
                }
            }
        }
        let _ = tree.scan(pfs.root.blockset(), 0, 0, u64::MAX, &mut |_, _| Ok(Flow::Continue));
    }
    reached
}

fn mutate_and_run(fixture: &str, iterations: usize, seed: u64, min_opened: usize, expect_files: bool) {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy(fixture, dir.path());
    let spec = img.to_str().unwrap().to_string();
    let ext = extents(&img);
    let total: u64 = ext.iter().map(|e| e.1).sum();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let (mut opened, mut files) = (0usize, 0usize);
    for i in 0..iterations {
        // A random byte inside the written extents (headers, inodes, tables, data).
        let mut k = rng.below(total);
        let (base, _) = *ext
            .iter()
            .find(|e| {
                if k < e.1 {
                    true
                } else {
                    k -= e.1;
                    false
                }
            })
            .unwrap();
        let off = base + k;
        let n = 1 + rng.below(4) as usize;
        let mut saved = vec![0u8; n];
        file.read_exact_at(&mut saved, off).unwrap();
        let flipped: Vec<u8> = saved.iter().map(|b| b ^ (1 + rng.below(255) as u8)).collect();
        file.write_all_at(&flipped, off).unwrap();
        let verify = i % 2 == 0;
        match catch_unwind(AssertUnwindSafe(|| exercise(&spec, verify))) {
            Ok(r) => {
                opened += usize::from(r.opened);
                files += r.files;
            }
            Err(_) => {
                failures.push(format!("{fixture}: iteration {i}: {n} bytes at {off:#x} (verify {verify})"))
            }
        }
        if i % 97 == 0 {
            for (exe, args) in [
                (env!("CARGO_BIN_EXE_fsck_hammer2"), vec!["-n", spec.as_str()]),
                (env!("CARGO_BIN_EXE_hammer2_edit"), vec![spec.as_str(), "ls", "-l", "/"]),
                (env!("CARGO_BIN_EXE_hammer2_dump"), vec!["volhdr", spec.as_str()]),
            ] {
                let st = std::process::Command::new(exe).args(&args).output().unwrap().status;
                if st.code().is_none() || st.code() == Some(101) {
                    failures.push(format!("{exe} {args:?} died ({st}) at iteration {i}, {off:#x}"));
                }
            }
        }
        file.write_all_at(&saved, off).unwrap();
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // Most flips leave a usable header copy, so most runs reach the trees.
    assert!(opened >= min_opened, "{fixture}: only {opened} of {iterations} runs opened the file system");
    if expect_files {
        assert!(files > iterations, "{fixture}: only {files} files read in {iterations} runs");
    }
}

#[test]
fn mutated_small_iscsi() {
    mutate_and_run("small-iscsi", 1500, 0x9e37_79b9_7f4a_7c15, 1000, true);
}

#[test]
fn mutated_pfs_snapshot() {
    mutate_and_run("pfs-snapshot", 1000, 0xd1b5_4a32_d192_ed03, 700, true);
}

#[test]
fn mutated_newfs_1g() {
    // One header copy only: a flip in it (about half the written bytes) is fatal.
    mutate_and_run("newfs-1g", 500, 0x2545_f491_4f6c_dd1d, 150, false);
}
