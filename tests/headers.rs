//! Volume-header selection under damage: a corrupt copy #0, a corrupt middle
//! copy, every copy corrupt, byte-reversed magic, truncated and empty images,
//! and incomplete or mixed multi-volume sets.

mod common;

use hammer2::device::{Access, Device};
use hammer2::volume::{read_headers, CopyChoice, CopyState, Hammer2, HeaderProblem};
use hammer2::Error;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const GIB2: u64 = 2 << 30;

fn poke(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

fn open(path: &Path) -> hammer2::Result<Hammer2> {
    Hammer2::open_path(path.to_str().unwrap())
}

#[test]
fn corrupt_copy_zero_opens_from_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("newfs-10g", dir.path());
    poke(&img, 0x100, b"garbage!"); // inside sector 0
    let fs = open(&img).unwrap();
    assert_eq!(fs.copy, 1, "all copies share mirror_tid 0x10; the first valid wins");
    let h = &fs.headers[0];
    match &h.copies[0].state {
        CopyState::Invalid(p) => {
            assert!(p.iter().any(|p| matches!(p, HeaderProblem::Sect0Crc { .. })), "{p:?}");
            assert!(p.iter().any(|p| matches!(p, HeaderProblem::WholeCrc { .. })), "{p:?}");
            assert!(!p.iter().any(|p| matches!(p, HeaderProblem::Sect1Crc { .. })), "{p:?}");
        }
        other => panic!("copy 0 should be invalid, is {other:?}"),
    }
}

#[test]
fn highest_mirror_tid_wins_and_a_corrupt_middle_copy_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("varied", dir.path());
    // Copy #1 (mirror_tid 0x11) is best; damage copy #2's sroot sector.
    poke(&img, 2 * GIB2 + 0x240, &[0xff; 4]);
    let fs = open(&img).unwrap();
    assert_eq!(fs.copy, 1);
    assert_eq!(fs.voldata.mirror_tid.get(), 0x11);
    match &fs.headers[0].copies[2].state {
        CopyState::Invalid(p) => assert!(p.iter().any(|p| matches!(p, HeaderProblem::Sect1Crc { .. }))),
        other => panic!("copy 2 should be invalid, is {other:?}"),
    }
    // Damage the best copy: the newest remaining valid copy takes over.
    poke(&img, GIB2 + 0x8000, &[0x55; 16]); // only the whole-header CRC covers this
    let fs = open(&img).unwrap();
    assert_eq!(fs.copy, 0);
    assert_eq!(fs.voldata.mirror_tid.get(), 0x10);
    // A copy chosen by hand must be valid.
    assert!(Hammer2::open(
        Device::open(img.to_str().unwrap(), Access::ReadOnly).unwrap(),
        CopyChoice::Index(1)
    )
    .is_err());
    let third =
        Hammer2::open(Device::open(img.to_str().unwrap(), Access::ReadOnly).unwrap(), CopyChoice::Index(3))
            .unwrap();
    assert_eq!(third.copy, 3);
}

#[test]
fn all_copies_corrupt_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("newfs-10g", dir.path());
    for n in 0..4 {
        poke(&img, n * GIB2 + 8, &[0xaa; 8]);
    }
    let err = open(&img).err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::NoValidHeader(_)), "{msg}");
    for n in 0..4 {
        assert!(msg.contains(&format!("copy {n}: sector 0 CRC")), "{msg}");
    }
}

#[test]
fn reversed_magic_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("newfs-1g", dir.path());
    poke(&img, 0, &hammer2::format::VOLUME_ID_HBO.to_be_bytes());
    let err = open(&img).err().expect("must fail");
    assert!(err.to_string().contains("big-endian"), "{err}");
    let dev = Device::open(img.to_str().unwrap(), Access::ReadOnly).unwrap();
    let h = read_headers(dev.volume(0));
    assert!(matches!(&h.copies[0].state, CopyState::Invalid(p) if p == &[HeaderProblem::ReverseEndian]));
}

#[test]
fn truncated_and_empty_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("newfs-1g", dir.path());
    // Header intact but the volume is cut short.
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(256 << 20).unwrap();
    let err = open(&img).err().expect("must fail");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Too short to hold any header.
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(30_000).unwrap();
    let err = open(&img).err().expect("must fail");
    assert!(err.to_string().contains("past the end of the volume"), "{err}");
    // Empty.
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let err = open(&empty).err().expect("must fail");
    assert!(err.to_string().contains("empty"), "{err}");
    // Missing.
    let err = open(&dir.path().join("nope.img")).err().expect("must fail");
    assert!(err.to_string().contains("cannot open"), "{err}");
}

#[test]
fn incomplete_or_mixed_volume_sets_are_refused() {
    let v0 = common::fixture("multivol-0");
    let v1 = common::fixture("multivol-1");
    let err = open(&v0).err().expect("volume 1 missing");
    assert!(err.to_string().contains("missing volu_id 1"), "{err}");
    let err = open(&v1).err().expect("root missing");
    assert!(err.to_string().contains("no root volume"), "{err}");
    let other = common::fixture("newfs-1g");
    let spec = format!("{}:{}", v0.display(), other.display());
    let err = Hammer2::open_path(&spec).err().expect("foreign volume");
    assert!(err.to_string().contains("belongs to file system"), "{err}");
    let spec = format!("{}:{}", v1.display(), v0.display());
    assert!(Hammer2::open_path(&spec).is_ok(), "order of the arguments does not matter");
}

#[test]
fn reads_past_the_end_are_errors_not_faults() {
    let fs = open(&common::fixture("newfs-1g")).unwrap();
    assert!(fs.device.read((1 << 30) - 8, 16).is_err());
    assert!(fs.device.read(u64::MAX - 4, 16).is_err());
    assert!(fs.device.read_phys(0, 1 << 40, 1).is_err());
}
