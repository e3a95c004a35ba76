//! Loop devices for tests that need a real block device or a mounted one
//! (root, util-linux's losetup and mount, e2fsprogs' mke2fs). Everything is
//! undone on drop, also when the test panics; a machine that cannot do it
//! fails the test with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

const NEEDS: &str = "this test needs root, util-linux's losetup and mount, and e2fsprogs' mke2fs";

/// Runs a system command, failing the test with its output when it fails.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} ({NEEDS})"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {} ({NEEDS})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A loop device over an image; detached on drop.
pub struct LoopDevice {
    pub dev: String,
}

impl LoopDevice {
    pub fn attach(img: &Path) -> LoopDevice {
        let dev = sh("losetup", &["-f", "--show", img.to_str().unwrap()]).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
        LoopDevice { dev }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A 64 MiB ext2 image in `dir`, attached to a loop device and mounted
/// read-only; unmounted (then detached) on drop.
pub struct LoopMount {
    pub img: PathBuf,
    pub mountpoint: PathBuf,
    // Dropped after the unmount below.
    pub lo: LoopDevice,
}

impl LoopMount {
    pub fn ext2(dir: &Path) -> LoopMount {
        let img = dir.join("ext2.img");
        std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        sh("mke2fs", &["-q", "-F", "-t", "ext2", img.to_str().unwrap()]);
        let lo = LoopDevice::attach(&img);
        let mountpoint = dir.join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let lm = LoopMount { img, mountpoint, lo };
        sh("mount", &["-o", "ro", &lm.lo.dev, lm.mountpoint.to_str().unwrap()]);
        lm
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}
