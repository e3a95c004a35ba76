//! Timing a child process with its peak resident memory (wait4(2)).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

/// Runs `cmd` with its output discarded; returns (seconds, peak RSS in KiB, status).
#[allow(dead_code)] // not every bench uses it
pub fn measure(cmd: &mut Command) -> (f64, i64, ExitStatus) {
    let r = run(cmd);
    (r.wall, r.max_rss_kib, r.status)
}

/// What one run of a child cost.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // not every bench reads every field
pub struct Usage {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User plus system CPU seconds, and each alone.
    pub cpu: f64,
    pub user: f64,
    pub sys: f64,
    /// Peak resident memory in KiB.
    pub max_rss_kib: i64,
    /// Page faults (minor and major).
    pub faults: i64,
    /// Bytes the child dirtied for writing to storage (`ru_oublock`, in
    /// 512-byte units: pages dirtied, whoever writes them back later).
    pub written: u64,
    pub status: ExitStatus,
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Runs `cmd` with its output discarded; returns what it cost (wait4(2)).
// The child is reaped by wait4 (which also yields its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn run(cmd: &mut Command) -> Usage {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32);
    Usage {
        wall: secs,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        user: seconds(usage.ru_utime),
        sys: seconds(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        faults: usage.ru_minflt + usage.ru_majflt,
        written: (usage.ru_oublock.max(0) as u64) * 512,
        status: ExitStatus::from_raw(status),
    }
}

/// [`measure`] for a command that must succeed: (seconds, peak RSS in KiB).
#[allow(dead_code)]
pub fn measure_ok(cmd: &mut Command) -> (f64, i64) {
    let (secs, rss, st) = measure(cmd);
    assert!(st.success(), "{cmd:?}: {st}");
    (secs, rss)
}

/// `root/name`, made by `make` unless an earlier run finished making it.
#[allow(dead_code)]
pub fn generated_once(
    root: &std::path::Path,
    name: &str,
    make: impl FnOnce(&std::path::Path),
) -> std::path::PathBuf {
    let dir = root.join(name);
    let stamp = root.join(format!("{name}.done"));
    if !stamp.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        make(&dir);
        std::fs::write(&stamp, "").unwrap();
    }
    dir
}

/// The benchmark source tree: `$HAMMER2_BENCH_TREE`, else
/// `../shared/bench/mkbenchtree.py`'s default tree (50,000 files, ~1.8 GB),
/// generated once under target/bench/ and shared by the benches.
#[allow(dead_code)]
pub fn bench_tree() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    if let Some(t) = std::env::var_os("HAMMER2_BENCH_TREE") {
        let t = PathBuf::from(t);
        assert!(t.is_dir(), "HAMMER2_BENCH_TREE={} is not a directory", t.display());
        return t;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&root).unwrap();
    generated_once(&root, "tree", |tree| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/mkbenchtree.py");
        eprintln!("generating the bench tree into {} (a few minutes)", tree.display());
        let st = Command::new("python3").arg(&script).arg(tree).status().unwrap();
        assert!(st.success(), "{} failed: {st}", script.display());
    })
}

/// The 50,000-file bench image, target/bench/bench.img: the bench tree
/// written by the reference makefs (`-Z -s 16g`), built once and shared by
/// the benches.
#[allow(dead_code)]
pub fn bench_image(reftools: &std::path::Path) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("bench.img");
    if !img.exists() {
        let tree = bench_tree();
        let partial = dir.join("bench.img.partial");
        let _ = std::fs::remove_file(&partial);
        eprintln!("building {} with reftools/makefs", img.display());
        let out = Command::new(reftools.join("makefs"))
            .args(["-t", "hammer2", "-Z", "-s", "16g"])
            .arg(&partial)
            .arg(&tree)
            .output()
            .unwrap();
        assert!(out.status.success(), "makefs: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::rename(&partial, &img).unwrap();
    }
    img
}

/// Cores and CPU model, and the load average now.
#[allow(dead_code)]
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();
    format!("{cores} cores, {model}, load average {load}")
}

/// The median of `v` (not empty).
#[allow(dead_code)]
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
