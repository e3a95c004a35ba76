//! Timing a child process with its peak resident memory (wait4(2)).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

/// Runs `cmd` with its output discarded; returns (seconds, peak RSS in KiB, status).
#[allow(dead_code)]
pub fn measure(cmd: &mut Command) -> (f64, i64, ExitStatus) {
    let m = measure_cpu(cmd);
    (m.wall, m.max_rss_kib, m.status)
}

/// What [`measure_cpu`] found of a child process.
#[allow(dead_code)]
pub struct Measured {
    /// Seconds of wall-clock time, of user and of system CPU time.
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub max_rss_kib: i64,
    pub status: ExitStatus,
}

/// Runs `cmd` with its output discarded; returns its times and peak RSS.
// The child is reaped by wait4 (which also yields its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn measure_cpu(cmd: &mut Command) -> Measured {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        wall: secs,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
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
