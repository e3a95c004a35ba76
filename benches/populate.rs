//! Populate benchmark (not a test): `newfs_hammer2 --populate TREE` on a
//! fresh sparse 16 GiB image, against DragonFly's kernel code
//! (`../shared/reftools/makefs -t hammer2 -Z -s 16g`) populating the same
//! tree, and against the physical floor of the machine: concatenating
//! every file of the tree into one file (read + write of the same bytes,
//! then fdatasync, as our commit ends with a durability barrier). The
//! three alternate, round after round, so that load from elsewhere falls
//! on all of them; read the ratios.
//!
//! `cargo bench --bench populate`. The tree is `$HAMMER2_BENCH_TREE`, else
//! `../shared/bench/mkbenchtree.py`'s default tree (50,000 files, ~1.8 GB)
//! generated once under target/bench-populate/. `$HAMMER2_BENCH_ROUNDS`
//! rounds (default 3); the summary takes each tool's median, and every run
//! starts after a sync(2), so that none pays for the write-back of the
//! one before. `HAMMER2_BENCH_MAKEFS=0` leaves makefs out (it takes minutes
//! a round). Each run reports wall and CPU time, peak RSS and the bytes it
//! dirtied for the disk (`ru_oublock`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

/// The floor, in a child process: every regular file of `tree`, in
/// directory order, appended to `out`, then fdatasync.
fn floor(tree: &Path, out: &Path) {
    let mut dst = std::fs::File::create(out).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let mut src = std::fs::File::open(e.path()).unwrap();
                loop {
                    let n = src.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    dst.write_all(&buf[..n]).unwrap();
                }
            }
        }
    }
    dst.sync_data().unwrap();
}

/// Files and bytes of a tree.
fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            let (f, b) = tree_size(&e.path());
            files += f;
            bytes += b;
        } else if m.is_file() {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--floor" {
        floor(Path::new(&args[2]), Path::new(&args[3]));
        return;
    }
    let tree = support::bench_tree();
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-populate/work");
    std::fs::create_dir_all(&work).unwrap();
    let reftools = std::env::var_os("HAMMER2_REFTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reftools"));
    let newfs = env!("CARGO_BIN_EXE_newfs_hammer2");
    let fsck = env!("CARGO_BIN_EXE_fsck_hammer2");
    let me = std::env::current_exe().unwrap();
    let rounds: usize = std::env::var("HAMMER2_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (files, bytes) = tree_size(&tree);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores, load {}; tree {}: {files} files, {:.2} GB",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        tree.display(),
        bytes as f64 / 1e9
    );
    let ours = work.join("ours.img");
    let theirs = work.join("makefs.img");
    let cat = work.join("floor.out");
    let clean = || {
        for p in [&ours, &theirs, &cat] {
            let _ = std::fs::remove_file(p);
        }
    };
    // Warm the page cache with the tree (not measured).
    clean();
    let m = support::run(Command::new(&me).arg("--floor").arg(&tree).arg(&cat));
    assert!(m.status.success());
    // Per tool: wall times of every round and the highest peak RSS.
    let mut walls: [Vec<f64>; 3] = Default::default();
    let mut cpus: [Vec<f64>; 3] = Default::default();
    let mut written: [Vec<f64>; 3] = Default::default();
    let mut rss = [0i64; 3];
    let with_makefs = std::env::var_os("HAMMER2_BENCH_MAKEFS").is_none_or(|v| v != "0");
    for round in 0..rounds {
        clean();
        let runs: [(&str, Command); 3] = [
            ("ours", {
                let mut c = Command::new(newfs);
                c.args(["-q", "-s", "16G", "--populate"]).arg(&tree).arg(&ours);
                c
            }),
            ("makefs", {
                let mut c = Command::new(reftools.join("makefs"));
                c.args(["-t", "hammer2", "-Z", "-s", "16g"]).arg(&theirs).arg(&tree);
                c
            }),
            ("floor", {
                let mut c = Command::new(&me);
                c.arg("--floor").arg(&tree).arg(&cat);
                c
            }),
        ];
        for (i, (name, mut cmd)) in runs.into_iter().enumerate() {
            if name == "makefs" && !with_makefs {
                continue;
            }
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
            let m = support::run(&mut cmd);
            assert!(m.status.success(), "{name}: {cmd:?}: {}", m.status);
            println!(
                "round {round} {name:>6}: wall {:6.2} s, cpu {:6.2} s (user {:.2} + sys {:.2}), peak RSS {:7.1} MiB, \
                 dirtied {:7.1} MB",
                m.wall,
                m.user + m.sys,
                m.user,
                m.sys,
                m.max_rss_kib as f64 / 1024.0,
                m.written as f64 / 1e6
            );
            walls[i].push(m.wall);
            cpus[i].push(m.cpu);
            written[i].push(m.written as f64 / 1e6);
            rss[i] = rss[i].max(m.max_rss_kib);
        }
    }
    let median = |v: &mut Vec<f64>| {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [o, mk, fl] = walls.each_mut().map(median);
    let [oc, _, fc] = cpus.each_mut().map(median);
    let [ow, _, fw] = written.each_mut().map(median);
    println!(
        "medians: ours {o:.2} s wall, {oc:.2} s cpu, {ow:.0} MB dirtied (peak RSS {:.1} MiB) | floor {fl:.2} s, {fc:.2} s cpu, {fw:.0} MB | \
         ours/floor wall {:.2}x (target <= 1.2), cpu {:.2}x, bytes {:.2}x | RSS target < 256 MiB",
        rss[0] as f64 / 1024.0,
        o / fl,
        oc / fc,
        ow / fw
    );
    if with_makefs {
        println!(
            "makefs {mk:.2} s (peak RSS {:.1} MiB) | makefs/ours {:.2}x (target >= 4)",
            rss[1] as f64 / 1024.0,
            mk / o
        );
    }
    let m = support::run(Command::new(fsck).arg("-n").arg(&ours));
    assert!(m.status.success(), "fsck_hammer2 -n on our image failed");
    println!("our image checks clean ({:.2} s)", m.wall);
    clean();
}
