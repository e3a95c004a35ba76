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
