//! Ctrl-C during a writing run: the run stops at its next safe point and
//! is rolled back, so the image is left byte-identical, and the tool exits
//! 130 saying so.

use crate::common::digest::sparse_sha256;
use crate::common::editor::{edit_ok, fresh_image, text};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until process `pid` catches SIGINT (its handler is installed); a
/// tool that never does has hung (see `run::HANG`).
fn wait_for_handler(pid: u32) {
    let deadline = Instant::now() + crate::common::run::HANG;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "hung: hammer2_edit never installed its SIGINT handler");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_interrupted_writing_run_is_rolled_back_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let (img, spec) = fresh_image(dir.path(), "a.img");
    edit_ok(&["-c", "mkdir /d; touch /d/f", &spec]);
    let before = sparse_sha256(&img);

    // A script whose second command reads its data from standard input:
    // the run is interrupted while it waits there, after a first command
    // has changed the session (and a large write has gone to the image).
    let mut child = Command::new(env!("CARGO_BIN_EXE_hammer2_edit"))
        .args(["-c", "mkdir /new; write /d/f 0 -; mkdir /after", &spec])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_handler(child.id());
    let mut stdin = child.stdin.take().unwrap();
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for _ in 0..8 {
        stdin.write_all(&chunk).unwrap();
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    for _ in 0..8 {
        // The tool goes on reading until it reaches a safe point.
        if stdin.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = crate::common::run::watchdog("hammer2_edit after its SIGINT", move || {
        child.wait_with_output().unwrap()
    });
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(sparse_sha256(&img), before, "the image is byte-identical after the interrupted run");
    // Nothing of it is there, and the image is still fine to edit.
    let ls = text(&edit_ok(&["-c", "ls /", &spec]).stdout);
    assert!(ls.contains('d') && !ls.contains("new") && !ls.contains("after"), "{ls}");
    edit_ok(&["-c", "mkdir /later", &spec]);
}
