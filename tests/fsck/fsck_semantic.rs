//! fsck's semantic checks (src/fsck/semantic.rs): each damage is made at
//! test time on a copy of small-iscsi and resealed (check codes recomputed
//! up to the header), so only the semantic check can see it; each test
//! asserts the problem id and where it was found.

use crate::common::reseal::{find_chain, reseal, Image};
use hammer2::format::{Blockref, BlockrefType, InodeData};
use hammer2::fsck::{fsck, Finding, FsckReport, Place};
use zerocopy::{FromBytes, IntoBytes};

/// small-iscsi's inodes: the directory "dir", data.bin (two raw 64 KiB
/// blocks), hello.txt.
const DIR: u64 = 1024;
const DATA_BIN: u64 = 1025;

fn inode_of(img: &Image, b: &Blockref) -> Option<InodeData> {
    (b.kind() == BlockrefType::Inode)
        .then(|| InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap())
}

fn is_inum(img: &Image, b: &Blockref, inum: u64) -> bool {
    inode_of(img, b).is_some_and(|ip| ip.meta.inum.get() == inum && ip.name().starts_with(b"0x"))
}

/// Runs fsck (library and binary); returns the findings with `id`, which
/// must exist.
fn findings(img: &Image, id: &str) -> (FsckReport, Vec<Finding>) {
    let r = fsck(img.spec(), &Default::default()).unwrap();
    let with: Vec<Finding> = r.findings.iter().filter(|f| f.problem.id.code() == id).cloned().collect();
    assert!(!with.is_empty(), "expected {id}, got {:#?}", r.findings);
    assert_eq!(r.exit_code(), 4, "{:#?}", r.findings);
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).arg(img.spec()).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    (r, with)
}

fn edit_inode(img: &Image, inum: u64, f: impl Fn(&mut InodeData)) {
    let (copy, chain) = find_chain(img, &|i, b| is_inum(i, b, inum));
    let b = img.bref(*chain.last().unwrap());
    let mut ip = InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap();
    f(&mut ip);
    img.write(b.offset(), ip.as_bytes());
    reseal(img, copy, &chain);
}

fn edit_bref(img: &Image, pred: &dyn Fn(&Image, &Blockref) -> bool, f: impl Fn(&mut Blockref)) {
    let (copy, chain) = find_chain(img, pred);
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    f(&mut b);
    img.write(pos, b.as_bytes());
    reseal(img, copy, &chain);
}

fn at_inode(f: &Finding, inum: u64) -> bool {
    matches!(&f.location, Place::Inode { inum: i, pfs, .. } if *i == inum && pfs == "DATA")
}

fn data_block(key: u64) -> impl Fn(&Image, &Blockref) -> bool {
    move |_, b| b.kind() == BlockrefType::Data && b.key.get() == key
}

#[test]
fn pristine_fixtures_have_no_semantic_findings() {
    for (name, spec) in crate::common::all_specs() {
        let _ = name;
        let r = fsck(&spec, &Default::default()).unwrap();
        let semantic = ["BREF_KEY_DUP", "BREF_INODE_SIZE", "DATA_PAST_EOF", "DATA_KEYBITS", "INODE_MODE"];
        let more = ["INODE_DIR_NLINKS", "INODE_IPARENT", "INODE_IPARENT_HINT"];
        let bad: Vec<_> = r
            .findings
            .iter()
            .filter(|f| semantic.contains(&f.problem.id.code()) || more.contains(&f.problem.id.code()))
            .collect();
        assert!(bad.is_empty(), "{spec}: {bad:#?}");
    }
}

#[test]
fn directory_iparent_naming_another_directory() {
    let img = Image::new("small-iscsi");
    edit_inode(&img, DIR, |ip| ip.meta.iparent = DATA_BIN.into());
    let (_, f) = findings(&img, "INODE_IPARENT");
    assert!(f.iter().any(|f| at_inode(f, DIR) && f.detail.contains("iparent 1025")), "{f:#?}");
}

#[test]
fn file_iparent_naming_another_directory() {
    let img = Image::new("small-iscsi");
    edit_inode(&img, DATA_BIN, |ip| ip.meta.iparent = 7777.into());
    // Information only: the kernel leaves a stale iparent after removing
    // the first name of a hard-linked file.
    let r = fsck(img.spec(), &Default::default()).unwrap();
    assert_eq!(r.exit_code(), 0, "{:#?}", r.findings);
    let f: Vec<_> = r.findings.iter().filter(|f| f.problem.id.code() == "INODE_IPARENT_HINT").collect();
    assert!(f.iter().any(|f| at_inode(f, DATA_BIN) && f.detail.contains("iparent 7777")), "{f:#?}");
}

#[test]
fn mode_type_bits_disagree_with_the_type() {
    for mode in [0o170777u32, 0o040644, u32::MAX] {
        let img = Image::new("small-iscsi");
        edit_inode(&img, DATA_BIN, |ip| ip.meta.mode = mode.into());
        let (_, f) = findings(&img, "INODE_MODE");
        assert!(
            f.iter().any(|f| f.location.location().is_some_and(|l| l.bref_type == Some(BlockrefType::Inode))
                && f.detail.contains("inode 1025")),
            "{mode:#o}: {f:#?}"
        );
    }
    // Type bits that agree are fine (some writers store them).
    let img = Image::new("small-iscsi");
    edit_inode(&img, DATA_BIN, |ip| ip.meta.mode = 0o100644.into());
    let r = fsck(img.spec(), &Default::default()).unwrap();
    assert_eq!(r.exit_code(), 0, "{:#?}", r.findings);
}

#[test]
fn directory_with_nlinks_zero_or_miscounted() {
    let img = Image::new("small-iscsi");
    edit_inode(&img, DIR, |ip| ip.meta.nlinks = 0.into());
    let (_, f) = findings(&img, "INODE_DIR_NLINKS");
    assert!(f.iter().any(|f| f.detail.contains("directory 1024 has nlinks 0")), "{f:#?}");

    // "dir" has no subdirectory: counted, it would be 2; 5 is neither.
    let img = Image::new("small-iscsi");
    edit_inode(&img, DIR, |ip| ip.meta.nlinks = 5.into());
    let (_, f) = findings(&img, "INODE_DIR_NLINKS");
    assert!(f.iter().any(|f| at_inode(f, DIR)), "{f:#?}");

    let img = Image::new("small-iscsi");
    edit_inode(&img, DIR, |ip| ip.meta.nlinks = 2.into());
    let r = fsck(img.spec(), &Default::default()).unwrap();
    assert_eq!(r.exit_code(), 0, "counted nlinks 2 is valid: {:#?}", r.findings);
}

#[test]
fn two_entries_of_one_table_with_the_same_key() {
    let img = Image::new("small-iscsi");
    edit_bref(&img, &data_block(0x10000), |b| b.key = 0.into());
    let (_, f) = findings(&img, "BREF_KEY_DUP");
    assert!(
        f.iter().any(|f| f
            .location
            .location()
            .is_some_and(|l| l.bref_type == Some(BlockrefType::Data) && l.key == 0 && l.index == 1)),
        "{f:#?}"
    );
}

#[test]
fn data_past_the_end_of_the_file() {
    let img = Image::new("small-iscsi");
    edit_inode(&img, DATA_BIN, |ip| ip.meta.size = 0.into());
    let (_, f) = findings(&img, "DATA_PAST_EOF");
    let keys: Vec<u64> = f.iter().filter_map(|f| f.location.location().map(|l| l.key)).collect();
    assert_eq!(keys, [0, 0x10000], "{f:#?}");

    let img = Image::new("small-iscsi");
    edit_inode(&img, DATA_BIN, |ip| ip.meta.size = 0x10000.into());
    let (_, f) = findings(&img, "DATA_PAST_EOF");
    let keys: Vec<u64> = f.iter().filter_map(|f| f.location.location().map(|l| l.key)).collect();
    assert_eq!(keys, [0x10000], "{f:#?}");
}

#[test]
fn inode_blockref_declaring_more_than_1k() {
    // 2 KiB: the block then also covers hello.txt's inode, which the
    // reseal leaves alone (4 KiB would cover the DATA root, which the
    // reseal rewrites after this blockref's check code was computed).
    let radix = 11u64;
    let img = Image::new("small-iscsi");
    edit_bref(&img, &|i, b| is_inum(i, b, DATA_BIN), |b| {
        b.data_off = ((b.data_off.get() & !0x3f) | radix).into()
    });
    let (_, f) = findings(&img, "BREF_INODE_SIZE");
    assert!(
        f.iter().any(|f| f.location.location().is_some_and(|l| l.bref_type == Some(BlockrefType::Inode))
            && f.detail.contains("2048 bytes")),
        "{f:#?}"
    );
}

#[test]
fn data_keybits_disagreeing_with_the_media_size() {
    let img = Image::new("small-iscsi");
    edit_bref(&img, &data_block(0x10000), |b| b.keybits = 15);
    let (_, f) = findings(&img, "DATA_KEYBITS");
    assert!(f.iter().any(|f| f.location.location().is_some_and(|l| l.key == 0x10000)), "{f:#?}");

    // A raw block smaller than its logical size that does not reach the
    // end of the file: the file's bytes are not all there.
    let img = Image::new("small-iscsi");
    edit_bref(&img, &data_block(0), |b| b.data_off = ((b.data_off.get() & !0x3f) | 11).into());
    let (_, f) = findings(&img, "DATA_KEYBITS");
    assert!(f.iter().any(|f| f.detail.contains("short of the file's end")), "{f:#?}");
}
