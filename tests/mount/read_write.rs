//! Read-write mounts: what is written through the kernel reaches the
//! image, both fscks find it clean, errors are the kernel's errno values,
//! the flusher commits on its own, and a daemon killed with SIGKILL leaves
//! the last commit.

use crate::common::{hosttree, model::Rng};
use crate::guard::{require_fuse, Mounted};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A fresh image of `size` in `dir`.
fn fresh(dir: &Path, size: &str) -> String {
    let img = dir.join("rw.img");
    let out =
        Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(["-s", size]).arg(&img).output().unwrap();
    assert!(out.status.success(), "newfs: {}", String::from_utf8_lossy(&out.stderr));
    img.display().to_string()
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn the_varied_tree_written_through_the_mount_reaches_the_image() {
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "2G");
    let host = dir.path().join("host");
    hosttree::build_varied(&host);
    let m = Mounted::new(&spec, &["rw"]);
    // Files of every shape, hard links, symlinks, FIFOs, sockets, device
    // nodes, foreign owners, odd modes and times: all through the kernel.
    hosttree::build_varied(&m.dir.join("tree"));
    // Times the tree does not set (directories it fills) are whenever each
    // was built: the mount takes the host's, through utimensat.
    for (rel, meta) in hosttree::host_entries(&host) {
        use std::os::unix::fs::MetadataExt;
        let t = |s: i64, ns: i64| (s, ns);
        hosttree::set_times(
            &m.dir.join("tree").join(rel),
            t(meta.atime(), meta.atime_nsec()),
            t(meta.mtime(), meta.mtime_nsec()),
        );
    }
    let status = m.unmount();
    assert!(status.success(), "hammer2_mount exited with {status}");
    hosttree::both_fscks_clean(&spec);
    hosttree::compare_with_image(&host, &spec, None, "/tree");
    hosttree::compare_extracted(&host, &spec, None, "/tree");
    // DragonFly's kernel code reads what the mount wrote, then mounts it
    // with no recovery needed and bulkfrees it with nothing to correct.
    let img = std::path::Path::new(&spec);
    hosttree::compare_makefs_read(&host, img, None, "/tree", hosttree::MAKEFS_FILES);
    crate::common::oracle::makefs_mounts_and_bulkfrees(img);
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn errors_are_the_kernels_errno_values() {
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "1G");
    let m = Mounted::new(&spec, &["rw"]);
    let p = |s: &str| m.dir.join(s);
    std::fs::create_dir_all(p("a/b")).unwrap();
    std::fs::write(p("a/f"), b"x").unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(p("a"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::remove_dir(p("a/f"))), libc::ENOTDIR);
    assert_eq!(errno_of(std::fs::remove_file(p("a/b"))), libc::EISDIR);
    assert_eq!(errno_of(std::fs::create_dir(p("a"))), libc::EEXIST);
    assert_eq!(errno_of(std::fs::metadata(p("nope"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::write(p(&"n".repeat(256)), b"")), libc::ENAMETOOLONG);
    std::fs::write(p(&"n".repeat(255)), b"ok").unwrap();
    assert_eq!(errno_of(std::fs::rename(p("a"), p("a/b/c"))), libc::EINVAL);
    assert_eq!(errno_of(std::fs::hard_link(p("a/b"), p("l"))), libc::EPERM);
    assert_eq!(errno_of(std::fs::rename(p("a/f"), p("a/b"))), libc::EISDIR);
    assert_eq!(errno_of(std::fs::rename(p("a/b"), p("a/f"))), libc::ENOTDIR);
    // Across file systems: the kernel's EXDEV.
    let other = dir.path().join("outside");
    std::fs::write(&other, b"o").unwrap();
    assert_eq!(errno_of(std::fs::rename(&other, p("in"))), libc::EXDEV);
    // What did succeed is all there after the unmount.
    assert!(m.unmount().success());
    hosttree::both_fscks_clean(&spec);
    let ls = Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args([&spec, "ls", "/a"]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains('b') && ls.contains('f'), "{ls}");
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_full_file_system_is_enospc_and_stays_usable() {
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "256M");
    let m = Mounted::new(&spec, &["rw"]);
    let mut rng = Rng::new(25);
    let mut block = vec![0u8; 1 << 20];
    let f = std::fs::File::create(m.dir.join("fill")).unwrap();
    let mut at = 0u64;
    let err = loop {
        rng.fill(&mut block);
        match f.write_all_at(&block, at) {
            Ok(()) => at += block.len() as u64,
            Err(e) => break e,
        }
        assert!(at < 1 << 30, "256 MiB took 1 GiB without ENOSPC");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    // Removing is still possible (the reserve), and makes room.
    std::fs::remove_file(m.dir.join("fill")).unwrap();
    assert!(m.unmount().success());
    hosttree::both_fscks_clean(&spec);
}

/// The files of `root` (flat), with their contents.
fn files_in(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// The files of PFS DATA's root in `spec`, through a read-only mount.
fn files_in_image(spec: &str) -> BTreeMap<String, Vec<u8>> {
    let m = Mounted::new(spec, &[]);
    let files = files_in(&m.dir);
    assert!(m.unmount().success());
    files
}

/// fsx in small: random writes, truncates, reads and renames over a few
/// files, each checked against a model in memory, while the flusher
/// commits every second; then the image against the model.
fn exercise(dir: &Path, rng: &mut Rng, model: &mut BTreeMap<String, Vec<u8>>, ops: usize) {
    const NAMES: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];
    for i in 0..ops {
        let name = *rng.pick(&NAMES);
        let path = dir.join(name);
        let max = if rng.chance(1, 4) { 3 << 20 } else { 200_000 };
        match rng.below(10) {
            0..=3 => {
                let off = rng.below(max);
                let mut buf = vec![0u8; rng.range(1, 150_000) as usize];
                if rng.chance(1, 2) {
                    rng.fill(&mut buf);
                } else {
                    buf.iter_mut().enumerate().for_each(|(j, b)| *b = (j % 7) as u8);
                }
                let f =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&path).unwrap();
                f.write_all_at(&buf, off).unwrap();
                let m = model.entry(name.to_string()).or_default();
                let end = off as usize + buf.len();
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[off as usize..end].copy_from_slice(&buf);
            }
            4 | 5 => {
                let size = rng.below(max);
                let f =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&path).unwrap();
                f.set_len(size).unwrap();
                model.entry(name.to_string()).or_default().resize(size as usize, 0);
            }
            6 | 7 => {
                if let Some(want) = model.get(name) {
                    let f = std::fs::File::open(&path).unwrap();
                    let off = rng.below(want.len() as u64 + 10);
                    let mut buf = vec![0u8; rng.range(1, 200_000) as usize];
                    let n = f.read_at(&mut buf, off).unwrap();
                    let lo = (off as usize).min(want.len());
                    let hi = (off as usize + buf.len()).min(want.len());
                    assert_eq!(&buf[..n], &want[lo..hi], "op {i}: read of {name} at {off}");
                }
            }
            8 => {
                let to = *rng.pick(&NAMES);
                if model.contains_key(name) && to != name {
                    std::fs::rename(&path, dir.join(to)).unwrap();
                    let data = model.remove(name).unwrap();
                    model.insert(to.to_string(), data);
                }
            }
            _ => {
                if model.remove(name).is_some() {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
    }
    let seen = files_in(dir);
    assert_eq!(seen.keys().collect::<Vec<_>>(), model.keys().collect::<Vec<_>>());
    for (name, want) in model.iter() {
        assert!(
            seen[name] == *want,
            "{name}: contents differ from the model ({} vs {} bytes)",
            seen[name].len(),
            want.len()
        );
    }
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn fsx_random_io_matches_a_model_across_flusher_commits() {
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "2G");
    let seed = hosttree::shape_seed("fsx", 0x25);
    let mut rng = Rng::new(seed);
    let mut model = BTreeMap::new();
    let m = Mounted::new(&spec, &["rw,commit=1,dirty=4M"]);
    let start = Instant::now();
    let mut rounds = 0;
    // Several rounds, so that commits by time and by the dirty limit fall
    // between operations.
    while rounds < 4 || (rounds < 40 && start.elapsed() < Duration::from_secs(20)) {
        exercise(&m.dir, &mut rng, &mut model, 150);
        rounds += 1;
    }
    assert!(m.unmount().success());
    hosttree::both_fscks_clean(&spec);
    let got = files_in_image(&spec);
    assert!(got == model, "the image after unmount differs from the model (seed {seed})");
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn kill_9_leaves_the_last_commit() {
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "2G");
    let mut rng = Rng::new(hosttree::shape_seed("kill9", 9));
    let mut model = BTreeMap::new();
    // No commit by time during the test: only fsync commits.
    let m = Mounted::new(&spec, &["rw,commit=3600"]);
    exercise(&m.dir, &mut rng, &mut model, 200);
    let f = std::fs::File::open(m.dir.join(".")).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let committed = model.clone();
    // More work that is never committed, then SIGKILL.
    exercise(&m.dir, &mut rng, &mut model, 100);
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) }, 0);
    drop(m);
    hosttree::both_fscks_clean(&spec);
    let got = files_in_image(&spec);
    assert!(got == committed, "after SIGKILL the image is not the last commit");
    // The flusher: with commit=1, a write reaches the image within seconds
    // without fsync or unmount.
    let m = Mounted::new(&spec, &["rw,commit=1"]);
    std::fs::write(m.dir.join("late"), b"flushed by time").unwrap();
    let pid = m.pid();
    let waited = Instant::now();
    // Wait for at least two commit intervals, then kill.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(waited.elapsed() >= Duration::from_secs(2));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    drop(m);
    hosttree::both_fscks_clean(&spec);
    assert_eq!(files_in_image(&spec).get("late").map(Vec::as_slice), Some(&b"flushed by time"[..]));
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn kill_9_at_random_moments_leaves_a_committed_state() {
    use std::sync::{Arc, Mutex};
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "2G");
    let seed = hosttree::shape_seed("kill9-random", 0x9a);
    let mut rng = Rng::new(seed);
    // The states the image may hold: the last one an fsync confirmed, and
    // the one an fsync was committing when the kill came.
    let mut confirmed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for round in 0..3 {
        let m = Mounted::new(&spec, &["rw,commit=3600"]);
        let states = Arc::new(Mutex::new((confirmed.clone(), None::<BTreeMap<String, Vec<u8>>>)));
        let (d, st, worker_seed) = (m.dir.clone(), states.clone(), rng.next_u64());
        let worker = std::thread::spawn(move || {
            let mut rng = Rng::new(worker_seed);
            let mut model = st.lock().unwrap().0.clone();
            loop {
                exercise(&d, &mut rng, &mut model, 20);
                st.lock().unwrap().1 = Some(model.clone());
                let f = std::fs::File::open(&d).unwrap();
                f.sync_all().unwrap();
                let mut s = st.lock().unwrap();
                s.0 = model.clone();
                s.1 = None;
            }
        });
        std::thread::sleep(Duration::from_millis(rng.range(300, 2500)));
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) }, 0);
        // The worker fails on the dead mount (its last word is in
        // `states`) and lets go of its files; then the mount goes.
        let _ = worker.join();
        drop(m);
        let (done, pending) = states.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hosttree::both_fscks_clean(&spec);
        let got = files_in_image(&spec);
        assert!(
            got == done || Some(&got) == pending.as_ref(),
            "round {round} (seed {seed}): after SIGKILL the image holds neither the last commit nor the one under way"
        );
        confirmed = got;
    }
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3, root and the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_removed_file_lives_until_it_is_closed() {
    use std::os::unix::fs::MetadataExt;
    require_fuse();
    let dir = hosttree::scratch();
    let spec = fresh(dir.path(), "1G");
    let m = Mounted::new(&spec, &["rw,commit=1"]);
    let path = m.dir.join("open");
    let f =
        std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path).unwrap();
    f.write_all_at(&vec![7u8; 100_000], 0).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(std::fs::metadata(&path).is_err());
    // Still usable, with no links, across a flusher commit.
    f.write_all_at(b"after", 100_000).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    let mut buf = vec![0u8; 5];
    f.read_exact_at(&mut buf, 100_000).unwrap();
    assert_eq!(&buf, b"after");
    drop(f);
    assert!(m.unmount().success());
    hosttree::both_fscks_clean(&spec);
    assert!(files_in_image(&spec).is_empty());
}
