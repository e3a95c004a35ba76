//! Volume-header selection under damage: a corrupt copy #0, a corrupt middle
//! copy, every copy corrupt, byte-reversed magic, truncated and empty images,
//! and incomplete or mixed multi-volume sets.

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
    let img = crate::common::scratch_copy("newfs-10g", dir.path());
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
    let img = crate::common::scratch_copy("varied", dir.path());
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
    let img = crate::common::scratch_copy("newfs-10g", dir.path());
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
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
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
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
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
    let v0 = crate::common::fixture("multivol-0");
    let v1 = crate::common::fixture("multivol-1");
    let err = open(&v0).err().expect("volume 1 missing");
    assert!(err.to_string().contains("missing volu_id 1"), "{err}");
    let err = open(&v1).err().expect("root missing");
    assert!(err.to_string().contains("no root volume"), "{err}");
    let other = crate::common::fixture("newfs-1g");
    let spec = format!("{}:{}", v0.display(), other.display());
    let err = Hammer2::open_path(&spec).err().expect("foreign volume");
    assert!(err.to_string().contains("belongs to file system"), "{err}");
    let spec = format!("{}:{}", v1.display(), v0.display());
    assert!(Hammer2::open_path(&spec).is_ok(), "order of the arguments does not matter");
}

#[test]
fn reads_past_the_end_are_errors_not_faults() {
    let fs = open(&crate::common::fixture("newfs-1g")).unwrap();
    assert!(fs.device.read((1 << 30) - 8, 16).is_err());
    assert!(fs.device.read(u64::MAX - 4, 16).is_err());
    assert!(fs.device.read_phys(0, 1 << 40, 1).is_err());
}

// ---------------------------------------------------------------- hostile geometry
//
// Header fields changed in every valid copy of a scratch image, then the
// CRCs resealed (VolumeData::update_crcs), so the tools meet the values
// themselves. Fatal ones must make open fail naming the volume, the field
// and the value; the others must open and give fsck findings. Nothing may
// panic, allocate by the value or take long.

use crate::common::reseal::Image;
use crate::common::run::watchdog;
use hammer2::format::VolumeData;
use zerocopy::{FromBytes, IntoBytes};

/// Applies `f` to every valid header copy of `img` and reseals the CRCs.
fn edit_headers(img: &Image, f: &dyn Fn(&mut VolumeData)) {
    let dev = Device::open(img.spec(), Access::ReadOnly).unwrap();
    let valid: Vec<u64> =
        read_headers(dev.volume(0)).copies.iter().filter(|c| c.is_valid()).map(|c| c.offset).collect();
    drop(dev);
    for off in valid {
        let mut v = VolumeData::read_from_bytes(&img.read(off, 65536)).unwrap();
        f(&mut v);
        v.update_crcs();
        img.write(off, v.as_bytes());
    }
}

/// Runs a binary to its end (a hang fails the test, see `run::watchdog`).
fn run_bin(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let o = crate::common::run::run_to_end(bin, args);
    (o.code, format!("{}{}", o.stdout, o.stderr))
}

fn fsck_bin(spec: &str) -> (Option<i32>, String) {
    run_bin(env!("CARGO_BIN_EXE_fsck_hammer2"), &[spec])
}

fn dump_bin(args: &[&str]) -> (Option<i32>, String) {
    run_bin(env!("CARGO_BIN_EXE_hammer2_dump"), args)
}

/// Open must fail with a Geometry error naming `field`, `value` and the
/// volume; fsck reports HDR_GEOMETRY and exits 4; the dumps that need an
/// opened file system fail cleanly, volhdr still shows the headers.
fn assert_fatal(spec: &str, volume: &Path, field: &str, value: u64, why: &str) {
    let s = spec.to_string();
    let err = watchdog(&format!("opening {spec}"), move || Hammer2::open_path(&s).err())
        .expect("hostile geometry must not open");
    let msg = err.to_string();
    assert!(matches!(err, Error::Geometry { .. }), "{msg}");
    for needle in [field, &format!("{value:#x}"), why, &volume.display().to_string()] {
        assert!(msg.contains(needle), "want {needle:?} in {msg:?}");
    }
    let r = hammer2::fsck::fsck(spec, &Default::default()).unwrap();
    let f = r
        .findings
        .iter()
        .find(|f| f.problem.id == hammer2::fsck::ProblemId::HdrGeometry)
        .expect("HDR_GEOMETRY finding");
    assert!(f.detail.contains(field), "{}", f.detail);
    assert_eq!(r.exit_code(), 4);
    let (code, out) = fsck_bin(spec);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("ERROR HDR_GEOMETRY") && out.contains(field), "{out}");
    for cmd in ["freemap", "show", "pfs"] {
        let (code, out) = dump_bin(&[cmd, spec]);
        assert_eq!(code, Some(1), "{cmd}: {out}");
        assert!(out.contains(field), "{cmd}: {out}");
    }
    let (code, out) = dump_bin(&["volhdr", spec]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_root_volume_not_at_offset_zero_is_refused() {
    // The example: fsck aborted allocating 256 GiB, the dump spun.
    let img = Image::new("newfs-1g");
    edit_headers(&img, &|v| v.volu_loff[0] = 0x7fff_ffff_0000_0000.into());
    assert_fatal(
        img.spec(),
        &img.path,
        "volu_loff[0]",
        0x7fff_ffff_0000_0000,
        "must start at logical offset 0",
    );
}

#[test]
fn volume_sizes_past_the_device_or_below_a_header_are_refused() {
    for (size, why) in [
        (u64::MAX, "exceeds the device"),
        (0, "smaller than one volume header"),
        ((1 << 30) + 1, "exceeds the device"),
    ] {
        let img = Image::new("newfs-1g");
        edit_headers(&img, &|v| v.volu_size = size.into());
        assert_fatal(img.spec(), &img.path, "volu_size", size, why);
    }
}

/// The multi-volume fixture as two scratch images.
fn multivol() -> (Image, Image) {
    (Image::new("multivol-0"), Image::new("multivol-1"))
}

#[test]
fn volume_offsets_with_gaps_overlaps_or_misalignment_are_refused() {
    for (loff, why) in [
        (0x1_0000_0000u64, "leaves a gap after volume 0"),
        (0x8000_0000, "overlaps volume 0"),
        (0xc000_1000, "not a multiple of the 1 GiB"),
        (u64::MAX, "unset"),
        (!((1u64 << 30) - 1), "leaves a gap"),
    ] {
        let (v0, v1) = multivol();
        edit_headers(&v0, &|v| v.volu_loff[1] = loff.into());
        let spec = format!("{}:{}", v0.spec(), v1.spec());
        assert_fatal(&spec, &v1.path, "volu_loff[1]", loff, why);
    }
    // A second volume claiming a size its device does not have.
    let (v0, v1) = multivol();
    edit_headers(&v1, &|v| v.volu_size = (u64::MAX - 0xfff).into());
    let spec = format!("{}:{}", v0.spec(), v1.spec());
    assert_fatal(&spec, &v1.path, "volu_size", u64::MAX - 0xfff, "exceeds the device");
}

fn findings(spec: &str) -> Vec<(String, String)> {
    let s = spec.to_string();
    let r =
        watchdog(&format!("fsck of {spec}"), move || hammer2::fsck::fsck(&s, &Default::default()).unwrap());
    r.findings.iter().map(|f| (f.problem.id.to_string(), f.detail.clone())).collect()
}

fn assert_finding(found: &[(String, String)], id: &str, needle: &str) {
    assert!(
        found.iter().any(|(i, d)| i == id && d.contains(needle)),
        "want {id} with {needle:?}: {found:#?}"
    );
}

/// The fields open accepts: each gives its finding, fsck exits 4 (from the
/// binary too), and the freemap dump still runs.
#[test]
fn out_of_range_fields_are_findings_not_failures() {
    type Edit = fn(&mut VolumeData);
    type Want = &'static [(&'static str, &'static str)];
    let cases: &[(&str, Edit, Want)] = &[
        (
            "small-iscsi",
            |v| v.allocator_free = (1u64 << 63).into(),
            &[
                ("HDR_ALLOCATOR", "allocator_free 0x8000000000000000: exceeds allocator_size"),
                ("FREEMAP_ALLOC_FREE", "allocator_free 0x8000000000000000"),
            ],
        ),
        (
            "small-iscsi",
            |v| v.allocator_free = u64::MAX.into(),
            &[("HDR_ALLOCATOR", "allocator_free 0xffffffffffffffff")],
        ),
        (
            "small-iscsi",
            |v| v.allocator_size = u64::MAX.into(),
            &[("HDR_ALLOCATOR", "allocator_size 0xffffffffffffffff: exceeds the volume set's 0x280000000")],
        ),
        (
            "small-iscsi",
            |v| v.allocator_beg = u64::MAX.into(),
            &[
                ("HDR_ALLOCATOR", "allocator_beg 0xffffffffffffffff: lies past the end"),
                ("FREEMAP_STRUCT", "of reserved space"),
            ],
        ),
        ("newfs-1g", |v| v.allocator_beg = 0x100000.into(), &[("HDR_ALLOCATOR", "lies inside the aux area")]),
        ("small-iscsi", |v| v.boot_beg = u64::MAX.into(), &[("HDR_AREAS", "are not in order")]),
        (
            "newfs-1g",
            |v| {
                v.aux_end = u64::MAX.into();
                v.allocator_beg = u64::MAX.into()
            },
            &[("HDR_AREAS", "aux_end 0xffffffffffffffff: the aux area ends past the root volume")],
        ),
        ("newfs-1g", |v| v.boot_beg = 0.into(), &[("HDR_AREAS", "overlaps the reserved segment")]),
        (
            "newfs-10g",
            |v| v.total_size = u64::MAX.into(),
            &[("HDR_FIELD", "total_size 0xffffffffffffffff: the volumes add up to 0x280000000")],
        ),
        ("newfs-10g", |v| v.volu_loff[5] = 0.into(), &[("HDR_FIELD", "volu_loff[5] 0x0: unused slot")]),
        (
            "varied",
            |v| {
                v.freemap_tid = u64::MAX.into();
                v.mirror_tid = u64::MAX.into()
            },
            &[],
        ),
    ];
    for (fixture, edit, want) in cases {
        let img = Image::new(fixture);
        edit_headers(&img, edit);
        let spec = img.spec();
        Hammer2::open_path(spec).unwrap_or_else(|e| panic!("{fixture}: {want:?}: {e}"));
        let found = findings(spec);
        for (id, needle) in *want {
            assert_finding(&found, id, needle);
        }
        let (code, out) = fsck_bin(spec);
        assert_eq!(code, Some(if want.is_empty() { 0 } else { 4 }), "{out}");
        let (code, out) = dump_bin(&["freemap", "--json", spec]);
        assert_eq!(code, Some(0), "{out}");
    }
}

#[test]
fn a_huge_allocator_free_saturates_the_freemap_difference() {
    let img = Image::new("small-iscsi");
    edit_headers(&img, &|v| v.allocator_free = u64::MAX.into());
    let (code, out) = dump_bin(&["freemap", "--json", img.spec()]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["allocator_free"], u64::MAX);
    assert_eq!(v["totals"]["difference"], i64::MIN, "clamped, not wrapped");
    let (code, out) = dump_bin(&["freemap", img.spec()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("allocator_free (header): 0xffffffffffffffff"), "{out}");
}

#[test]
fn every_fixture_passes_the_geometry_and_field_checks() {
    for (name, spec) in crate::common::all_specs() {
        let fs = Hammer2::open_path(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let problems = hammer2::volume::field_problems(&fs);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        assert_eq!(fs.device.logical_size(), fs.voldata.total_size.get(), "{name}");
    }
}

#[test]
fn all_copies_reports_a_copy_with_unusable_geometry_and_goes_on() {
    let img = Image::new("varied");
    // Copy #1 is the best; #0 keeps an older commit. Break only #0.
    let mut v = VolumeData::read_from_bytes(&img.read(0, 65536)).unwrap();
    v.volu_loff[0] = (1u64 << 40).into();
    v.update_crcs();
    img.write(0, v.as_bytes());
    let opts = hammer2::fsck::FsckOptions { all_copies: true, ..Default::default() };
    let r = hammer2::fsck::fsck(img.spec(), &opts).unwrap();
    let geo: Vec<_> =
        r.findings.iter().filter(|f| f.problem.id == hammer2::fsck::ProblemId::HdrGeometry).collect();
    assert_eq!(geo.len(), 1, "{:?}", r.findings);
    assert!(
        matches!(geo[0].location, hammer2::fsck::Place::HeaderCopy { copy: 0, .. })
            && geo[0].detail.contains("volu_loff[0] 0x10000000000")
    );
    let trees: Vec<&str> = r.trees.iter().map(|t| t.tree.as_str()).collect();
    for copy in [1, 2, 3] {
        assert!(trees.contains(&format!("topology (copy #{copy})").as_str()), "{trees:?}");
    }
    assert_eq!(r.header_copy, Some(1));
    assert_eq!(r.exit_code(), 4);
}
