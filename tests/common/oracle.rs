//! The independent implementations in ../shared/reftools as test oracles:
//! the reference checker and makefs (DragonFly's kernel code in userland).

//!
//! A fresh clone has no reference tools, so a test that judges its scenario
//! both by our own checks and by these oracles is split in two: the test
//! itself runs the scenario with the oracles left out ([`without`]), and its
//! twin `NAME_with_reference_tools`, ignored with the reason [`NEEDS`], runs
//! the very same scenario with every check (it fails, never skips, when the
//! tools are missing).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The reason an oracle test is ignored (`#[ignore]` wants the literal).
pub const NEEDS: &str = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)";

thread_local! {
    /// Set on the thread of the repository-only half of a split test.
    static LEFT_OUT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `scenario` (on this thread) with the oracle checks left out: the
/// checking helpers of this module, `maint::oracle_fsck*` and `hosttree`'s
/// makefs comparisons do nothing, and the reference parts of
/// `hosttree::both_fscks_clean` are skipped. Anything else that would run a
/// reference tool panics (see [`reftools`]): a scenario guards such calls
/// with [`wanted`].
pub fn without<T>(scenario: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            LEFT_OUT.with(|c| c.set(false));
        }
    }
    LEFT_OUT.with(|c| c.set(true));
    let _reset = Reset;
    scenario()
}

/// Whether the oracle checks run here: everywhere but inside [`without`].
pub fn wanted() -> bool {
    !LEFT_OUT.with(|c| c.get())
}

/// The reference tools: `$HAMMER2_REFTOOLS`, or ../shared/reftools beside the crate.
/// Missing tools fail the test with the reason.
pub fn reftools() -> PathBuf {
    assert!(
        wanted(),
        "a reference tool was called in the repository-only half of a split test: \
         guard the call with oracle::wanted()"
    );
    let dir = std::env::var_os("HAMMER2_REFTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reftools"));
    assert!(
        dir.join("fsck_hammer2").exists(),
        "this test {NEEDS}: reference tools not found at {}",
        dir.display()
    );
    dir
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs the reference `fsck_hammer2 -q`; returns (success, output).
pub fn reference_fsck(spec: &str) -> (bool, String) {
    let out = Command::new(reftools().join("fsck_hammer2")).args(["-q", spec]).output().unwrap();
    (out.status.success(), output_text(&out))
}

/// makefs mounts `img` read-write (running the kernel's mount-time
/// recovery), performs each `-o` option of `opts` and flushes; returns
/// (success, output). Its directory argument is an empty scratch directory.
pub fn makefs(img: &Path, opts: &[&str]) -> (bool, String) {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(reftools().join("makefs"));
    cmd.args(["-t", "hammer2"]);
    for o in opts {
        cmd.args(["-o", o]);
    }
    let out = cmd.arg(img).arg(empty.path()).output().unwrap();
    (out.status.success(), output_text(&out))
}

/// What makefs's bulkfree output says of our image: no recovery was
/// needed and no block in use was marked free (ERR(00) and ERR(01) are 0).
pub fn bulkfree_verdict(text: &str) -> Result<(), String> {
    if !text.contains("no recovery needed") {
        return Err(format!("makefs ran a recovery on our image:\n{text}"));
    }
    let errs: Vec<&str> = text.lines().filter(|l| l.contains("ERR(00)") || l.contains("ERR(01)")).collect();
    if errs.len() != 2 {
        return Err(format!("makefs -o B printed no ERR(00)/ERR(01) statistics:\n{text}"));
    }
    for line in errs {
        let n: u64 = line.split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or(1);
        if n != 0 {
            return Err(format!("bulkfree found blocks in use that our freemap marked free: {line}\n{text}"));
        }
    }
    Ok(())
}

/// Reads the file `path` out of `img` with makefs `-o R` (of PFS `pfs`, or
/// DATA). makefs mounts the image read-write and flushes, so callers use it
/// last. Asserts the mount needed no recovery.
pub fn makefs_read(img: &Path, pfs: Option<&str>, path: &str) -> Vec<u8> {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(reftools().join("makefs"));
    cmd.args(["-t", "hammer2", "-o", &format!("R={path}")]);
    if let Some(l) = pfs {
        cmd.args(["-o", &format!("m={l}")]);
    }
    let out = cmd.arg(img).arg(out_dir.path()).output().unwrap();
    let log = output_text(&out);
    assert!(out.status.success(), "makefs -o R={path} failed on {}:\n{log}", img.display());
    assert!(log.contains("no recovery needed"), "makefs ran a recovery on our image:\n{log}");
    let name = path.rsplit('/').next().unwrap();
    std::fs::read(out_dir.path().join(name)).unwrap_or_else(|e| panic!("makefs did not extract {path}: {e}"))
}

/// makefs (the kernel's code) mounts the image, bulkfrees and flushes: no
/// recovery may be needed and no block in use may be marked free.
pub fn makefs_mounts_and_bulkfrees(img: &Path) {
    if !wanted() {
        return;
    }
    let (ok, text) = makefs(img, &["B"]);
    assert!(ok, "makefs -o B failed on {}:\n{text}", img.display());
    bulkfree_verdict(&text).unwrap_or_else(|e| panic!("{e}"));
}

/// makefs mounts the image without a recovery, snapshots the PFS it
/// mounts (DATA) as `name` and flushes.
pub fn makefs_snapshots(img: &Path, name: &str) {
    if !wanted() {
        return;
    }
    let (ok, log) = makefs(img, &[&format!("P=snapshot:{name}")]);
    assert!(ok && log.contains("no recovery needed"), "makefs snapshot on {}:\n{log}", img.display());
}
