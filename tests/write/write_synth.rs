//! Populating from generated entries (`hammer2::host::synth`, how the
//! ten-million-file scale image is built): what was generated reads back
//! byte for byte, and both fscks find the image clean.

use crate::common::editor::fresh_image;
use crate::common::hosttree::{both_fscks_clean, scratch};
use crate::common::model::read_path;
use hammer2::host::synth::{populate_synthetic, SynthEntry, SynthMeta};

/// `dirs` directories of `per_dir` files, sizes from empty through
/// embedded (512), one block (513..4096) to several 64 KiB blocks.
fn entries(dirs: usize, per_dir: usize) -> Vec<(String, Vec<u8>)> {
    let sizes = [0usize, 1, 100, 511, 512, 513, 1024, 1025, 3000, 4096, 65536, 65537, 200_000];
    let mut out = Vec::new();
    for d in 0..dirs {
        for f in 0..per_dir {
            let n = d * per_dir + f;
            let size = sizes[n % sizes.len()];
            out.push((format!("/d{d}/f{f}"), crate::common::content(n as u64, size)));
        }
    }
    out
}

fn as_entries(files: &[(String, Vec<u8>)], per_dir: usize) -> Vec<SynthEntry> {
    let mut v = Vec::new();
    for (i, (path, data)) in files.iter().enumerate() {
        let (dir, name) = path[1..].split_once('/').unwrap();
        if i % per_dir == 0 {
            v.push(SynthEntry::Dir(dir.as_bytes().to_vec()));
        }
        v.push(SynthEntry::File(name.as_bytes().to_vec(), data.clone()));
        if i % per_dir == per_dir - 1 {
            v.push(SynthEntry::Up);
        }
    }
    v
}

#[test]
fn synthetic_populate_reads_back_and_checks_clean() {
    crate::common::oracle::without(synthetic_populate_scenario);
}

/// [`synthetic_populate_reads_back_and_checks_clean`] with the reference
/// fsck's verdict too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn synthetic_populate_reads_back_and_checks_clean_with_reference_tools() {
    synthetic_populate_scenario();
}

fn synthetic_populate_scenario() {
    let dir = scratch();
    let (_img, spec) = fresh_image(dir.path(), "synth.img");
    let files = entries(3, 40);
    let mut calls = 0u64;
    let (report, _) =
        populate_synthetic(&spec, "DATA", as_entries(&files, 40), &SynthMeta::default(), &mut |_| calls += 1)
            .unwrap();
    assert_eq!((report.dirs, report.files), (3, 120));
    assert_eq!(report.bytes, files.iter().map(|(_, d)| d.len() as u64).sum::<u64>());
    assert_eq!(calls, 3 + 120 + 3);
    for (path, data) in &files {
        let got = read_path(&spec, Some("DATA"), path).unwrap();
        assert!(got == *data, "{path}: {} bytes read back, {} generated", got.len(), data.len());
    }
    both_fscks_clean(&spec);
}

#[test]
fn synthetic_entries_that_leave_the_top_are_refused_and_nothing_is_committed() {
    let dir = scratch();
    let (_img, spec) = fresh_image(dir.path(), "synth.img");
    let entries = [SynthEntry::Dir(b"a".to_vec()), SynthEntry::Up, SynthEntry::Up];
    let r = populate_synthetic(&spec, "DATA", entries, &SynthMeta::default(), &mut |_| {});
    assert!(matches!(r, Err(hammer2::Error::InvalidArgument(_))), "{r:?}");
    assert!(read_path(&spec, Some("DATA"), "/a").is_err(), "nothing was committed");
}

/// A dry run keeps the blocks it would write (64 MiB in memory, the rest in
/// a temporary file) and reads them back: a file of
/// mostly incompressible data (twice what is kept in memory) written and
/// read back within one dry-run session.
#[test]
fn a_dry_run_reads_back_more_than_it_keeps_in_memory() {
    use hammer2::write::session::{Attrs, Session, DRY_RUN_KEEP};
    let dir = scratch();
    let (_img, spec) = fresh_image(dir.path(), "dry.img");
    let len = 2 * DRY_RUN_KEEP;
    let data = crate::common::content(7, len);
    let mut s = Session::open(&spec, true).unwrap();
    let pfs = s.pfs(Some("DATA")).unwrap();
    let inum = s.create_file(&pfs, "/big", Attrs::now(0o644), &data[..], len as u64).unwrap();
    let mut back = Vec::new();
    s.read_data(&pfs, inum, &mut back).unwrap();
    assert_eq!(back.len(), len);
    assert!(back == data, "what a dry run reads back differs from what it wrote");
    // Nothing reached the image.
    drop(s);
    assert!(read_path(&spec, Some("DATA"), "/big").is_err());
}
