//! Read-path benchmark (not a test): times the release binaries on the
//! fixtures, with peak resident memory from wait4(2).
//!
//! `cargo bench --bench read` — prints one line per measurement. Figures
//! depend on the machine; compare them as ratios (see the issue notes).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;

mod support;

/// Runs a read tool; returns (seconds, peak RSS in KiB).
fn measure(exe: &str, args: &[&str]) -> (f64, i64) {
    let (secs, rss, st) = support::measure(Command::new(exe).args(args));
    assert!(st.code().is_some_and(|c| c <= 1), "{exe} {args:?}: {st}");
    (secs, rss)
}

fn best_of(n: usize, exe: &str, args: &[&str]) -> (f64, i64) {
    (0..n).map(|_| measure(exe, args)).fold((f64::MAX, 0), |(t, m), (t2, m2)| (t.min(t2), m.max(m2)))
}

fn main() {
    let varied = common::fixture("varied");
    let spec = varied.to_str().unwrap();
    let dump = env!("CARGO_BIN_EXE_hammer2_dump");
    let edit = env!("CARGO_BIN_EXE_hammer2_edit");
    let fsck = env!("CARGO_BIN_EXE_fsck_hammer2");
    let out = tempfile::tempdir().unwrap();
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let (t, m) = best_of(5, dump, &["show", spec]);
    println!("varied.img  hammer2_dump show           {t:8.3} s  peak RSS {m:7} KiB");
    let (t, m) = best_of(5, dump, &["show", "--json", spec]);
    println!("varied.img  hammer2_dump show --json    {t:8.3} s  peak RSS {m:7} KiB");
    let (t, m) = best_of(5, fsck, &["-n", spec]);
    println!("varied.img  fsck_hammer2 -n             {t:8.3} s  peak RSS {m:7} KiB");
    let (t, m) = best_of(5, edit, &[spec, "cat", "/big-40m.bin"]);
    println!(
        "varied.img  hammer2_edit cat 40 MiB     {t:8.3} s  peak RSS {m:7} KiB  ({:.0} MiB/s)",
        40.0 / t
    );
    let mut best = (f64::MAX, 0);
    for i in 0..5 {
        let dest = out.path().join(format!("x{i}"));
        let (t, m) = measure(edit, &[spec, "get", "/", dest.to_str().unwrap()]);
        best = (best.0.min(t), best.1.max(m));
        std::fs::remove_dir_all(&dest).unwrap();
    }
    println!(
        "varied.img  hammer2_edit get / DIR      {:8.3} s  peak RSS {:7} KiB  (host file creation dominates)",
        best.0, best.1
    );
}
