//! A mount for the length of a test: `hammer2_mount -f` as a child
//! process, unmounted (and the child reaped) when the guard drops, also
//! when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOUNT: &str = env!("CARGO_BIN_EXE_hammer2_mount");

/// Fails the test unless FUSE mounts can be made here.
pub fn require_fuse() {
    assert!(Path::new("/dev/fuse").exists(), "needs /dev/fuse");
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()));
    assert!(found, "needs fusermount3 (Debian package fuse3)");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root");
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
}

/// A mounted PFS.
pub struct Mounted {
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Mounted {
    /// Mounts `target` (`DEVICE[@PFS]`) with `opts` on a new temporary
    /// directory, in the foreground, and waits until the kernel has it.
    pub fn new(target: &str, opts: &[&str]) -> Mounted {
        let tmp = tempfile::Builder::new().prefix("hammer2-mnt").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut m = Mounted::at(target, opts, &dir);
        m._tmp = Some(tmp);
        m
    }

    /// [`Mounted::new`] on `dir`.
    pub fn at(target: &str, opts: &[&str], dir: &Path) -> Mounted {
        require_fuse();
        let mut cmd = Command::new(MOUNT);
        cmd.arg("-f");
        for o in opts {
            cmd.args(["-o", o]);
        }
        let child = cmd.arg(target).arg(dir).stdin(Stdio::null()).spawn().unwrap();
        let mut m = Mounted { dir: dir.to_path_buf(), child: Some(child), _tmp: None };
        let start = Instant::now();
        while !is_mounted(dir) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                m.child = None;
                panic!("hammer2_mount {target} exited with {status} before mounting");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{target} not mounted after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// Unmounts and waits for the daemon to end; returns its exit status
    /// (0: it committed and ended cleanly).
    pub fn unmount(mut self) -> std::process::ExitStatus {
        self.release().expect("the mount was already gone")
    }

    fn release(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        while is_mounted(&self.dir) {
            let out = Command::new("fusermount3").arg("-u").arg(&self.dir).output().unwrap();
            if out.status.success() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                // Busy for too long: detach it lazily rather than leave it.
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                return Some(child.wait().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.release();
    }
}
