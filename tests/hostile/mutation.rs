//! Deterministic raw-byte mutation test: bytes flipped in copies of small
//! fixtures; every entry point must return (Ok or Err), never panic, hang or
//! allocate without bound. Flips end at a check-code mismatch, so reads run
//! both with check-code verification (damage is caught early) and without
//! it (garbage reaches every parser). Field-level mutations whose check
//! codes are resealed, so fsck's semantics meet them, are in
//! tests/hostile/mutation_fields.rs.

use crate::common::mutate::Rng;
use crate::common::run::{exercise, run_guarded, run_tool, Outcome, Reads, DUMP, EDIT, FSCK, HANG};
use std::os::unix::fs::FileExt;

fn mutate_and_run(fixture: &str, iterations: usize, seed: u64, min_opened: usize, expect_files: bool) {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy(fixture, dir.path());
    let spec = img.to_str().unwrap().to_string();
    let ext = crate::common::reseal::data_extents(&img);
    let total: u64 = ext.iter().map(|e| e.1).sum();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let (mut opened, mut files, mut hangs) = (0usize, 0usize, 0usize);
    for i in 0..iterations {
        // A random byte inside the written extents (headers, inodes, tables, data).
        let mut k = rng.below(total);
        let (base, _) = *ext
            .iter()
            .find(|e| {
                if k < e.1 {
                    true
                } else {
                    k -= e.1;
                    false
                }
            })
            .unwrap();
        let off = base + k;
        let n = 1 + rng.below(4) as usize;
        let mut saved = vec![0u8; n];
        file.read_exact_at(&mut saved, off).unwrap();
        let flipped: Vec<u8> = saved.iter().map(|b| b ^ (1 + rng.below(255) as u8)).collect();
        file.write_all_at(&flipped, off).unwrap();
        let reads = Reads { verify: i % 2 == 0, entries: 2000, file_bytes: 1 << 20, dumps: true };
        let what = format!("{fixture}: iteration {i}: {n} bytes at {off:#x} (verify {})", reads.verify);
        let s = spec.clone();
        match run_guarded(HANG, move || exercise(&s, reads, None)) {
            Outcome::Done(r) => {
                opened += usize::from(r.opened);
                files += r.files_read;
            }
            Outcome::Panicked(m) => failures.push(format!("{what}: panicked: {m}")),
            Outcome::HugeAlloc(m) => failures.push(format!("{what}: {m}")),
            Outcome::TimedOut => {
                failures.push(format!("{what}: still running after 5 s"));
                hangs += 1;
            }
        }
        if i % 97 == 0 {
            let out = dir.path().join(format!("get{i}"));
            for (exe, args) in [
                (FSCK, vec!["-n", spec.as_str()]),
                (EDIT, vec![spec.as_str(), "ls", "-l", "/"]),
                (EDIT, vec![spec.as_str(), "get", "/", out.to_str().unwrap()]),
                (DUMP, vec!["volhdr", spec.as_str()]),
                (DUMP, vec!["show", "--verify-data", spec.as_str()]),
            ] {
                let t = run_tool(exe, &args, HANG);
                if t.crashed() {
                    failures.push(format!("{what}: {}", t.describe()));
                }
            }
            let _ = std::fs::remove_dir_all(&out);
        }
        file.write_all_at(&saved, off).unwrap();
        if hangs >= 3 {
            break; // each hang leaves a thread busy
        }
    }
    eprintln!("{fixture}: {iterations} raw mutations, {opened} opened, {files} files read");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // Most flips leave a usable header copy, so most runs reach the trees.
    assert!(opened >= min_opened, "{fixture}: only {opened} of {iterations} runs opened the file system");
    if expect_files {
        assert!(files > iterations, "{fixture}: only {files} files read in {iterations} runs");
    }
}

#[test]
fn mutated_small_iscsi() {
    mutate_and_run("small-iscsi", 1000, 0x9e37_79b9_7f4a_7c15, 650, true);
}

#[test]
fn mutated_pfs_snapshot() {
    mutate_and_run("pfs-snapshot", 700, 0xd1b5_4a32_d192_ed03, 480, true);
}

#[test]
fn mutated_newfs_1g() {
    // One header copy only: a flip in it (about half the written bytes) is fatal.
    mutate_and_run("newfs-1g", 300, 0x2545_f491_4f6c_dd1d, 90, false);
}
