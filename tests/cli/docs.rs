//! Man pages and completions match the CLI; pages render cleanly; every
//! binary answers --help and --version.

#[path = "../../tools/docs.rs"]
mod generator;

use std::path::Path;
use std::process::Command;

const BINARIES: &[(&str, &str)] = &[
    ("newfs_hammer2", env!("CARGO_BIN_EXE_newfs_hammer2")),
    ("fsck_hammer2", env!("CARGO_BIN_EXE_fsck_hammer2")),
    ("hammer2_dump", env!("CARGO_BIN_EXE_hammer2_dump")),
    ("hammer2_edit", env!("CARGO_BIN_EXE_hammer2_edit")),
    ("hammer2_mount", env!("CARGO_BIN_EXE_hammer2_mount")),
];

#[test]
fn checked_in_man_pages_and_completions_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (rel, want) in generator::generated_files() {
        if std::fs::read(root.join(&rel)).ok().as_deref() != Some(want.as_slice()) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale: {stale:?}; run `cargo run --example gen_docs` and commit the result");
}

#[test]
fn every_binary_has_a_page_and_completions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in BINARIES {
        for f in [
            format!("man/{name}.8"),
            format!("completions/{name}.bash"),
            format!("completions/_{name}"),
            format!("completions/{name}.fish"),
        ] {
            assert!(root.join(&f).exists(), "{f} missing");
        }
    }
}

#[test]
#[ignore = "needs groff"]
fn man_pages_render_without_warnings() {
    // groff is installed by .ci/run (Debian package groff-base).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in BINARIES {
        let page = root.join(format!("man/{name}.8"));
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("groff is needed to check the man pages (apt-get install groff-base)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn help_and_version() {
    for (name, exe) in BINARIES {
        let out = Command::new(exe).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Examples:"), "{name} --help has examples");
        assert!(help.contains("Usage:"), "{name}");
        let out = Command::new(exe).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
