//! Running hammer2_edit from tests.

use std::process::{Command, Output};

/// Runs hammer2_edit with `args`.
pub fn edit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).args(args).output().unwrap()
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs hammer2_edit and asserts exit 0.
pub fn edit_ok(args: &[&str]) -> Output {
    let out = edit(args);
    assert!(out.status.success(), "{args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    out
}

/// A fresh 2 GiB image of ours (LOCAL and DATA) at `dir/name`: its path
/// and spec.
pub fn fresh_image(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let img = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_newfs_hammer2"))
        .args(["-s", "2G", img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "newfs: {}", text(&out.stderr));
    let spec = img.to_str().unwrap().to_string();
    (img, spec)
}
