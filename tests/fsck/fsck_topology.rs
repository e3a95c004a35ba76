//! fsck's topology pass on images damaged at test time. Each damage is
//! resealed (check codes recomputed up to the header) unless the point is a
//! check-code mismatch, so the pass meets the inconsistency itself.

use crate::common::reseal::{find_chain, reseal, Image};
use hammer2::format::{Blockref, BlockrefType, InodeData};
use hammer2::fsck::{fsck, FsckReport, Place};
use zerocopy::{FromBytes, IntoBytes};

fn run(img: &Image) -> FsckReport {
    fsck(img.spec(), &Default::default()).unwrap()
}

fn assert_reports(img: &Image, id: &str) -> FsckReport {
    let r = run(img);
    let ids: Vec<&str> = r.findings.iter().map(|f| f.problem.id.code()).collect();
    assert!(ids.contains(&id), "expected {id}, got {:#?}", r.findings);
    assert_eq!(r.exit_code(), 4, "{:#?}", r.findings);
    // The binary agrees and names the problem.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).arg(img.spec()).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    r
}

/// Index inodes are named by their number (as DragonFly names them), so the
/// fixture's files are told apart by size: data.bin has 100000 bytes,
/// hello.txt 15.
fn inode_named(img: &Image, b: &Blockref, name: &[u8]) -> bool {
    let size = match name {
        b"data.bin" => 100_000,
        b"hello.txt" => 15,
        other => panic!("no size known for {other:?}"),
    };
    b.kind() == BlockrefType::Inode && {
        let ip = InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap();
        ip.meta.size.get() == size && ip.meta.type_ == 2
    }
}

fn is_data(_: &Image, b: &Blockref) -> bool {
    b.kind() == BlockrefType::Data
}

/// Rewrites the inode at the end of `chain` and reseals.
fn edit_inode(img: &Image, copy: usize, chain: &[u64], f: impl Fn(&mut InodeData)) {
    let b = img.bref(*chain.last().unwrap());
    let mut ip = InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap();
    f(&mut ip);
    img.write(b.offset(), ip.as_bytes());
    reseal(img, copy, chain);
}

/// Rewrites the blockref at the end of `chain` and reseals.
fn edit_bref(img: &Image, copy: usize, chain: &[u64], f: impl Fn(&mut Blockref)) {
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    f(&mut b);
    img.write(pos, b.as_bytes());
    reseal(img, copy, chain);
}

#[test]
fn flipped_bytes_in_an_inode_and_an_indirect_block() {
    let img = Image::new("small-iscsi");
    let (_, chain) = find_chain(&img, &|i, b| inode_named(i, b, b"data.bin"));
    img.write(img.bref(*chain.last().unwrap()).offset() + 0x60, &[0x77]);
    let r = assert_reports(&img, "BREF_CHECK");
    assert!(
        r.findings
            .iter()
            .any(|f| f.location.location().is_some_and(|l| l.bref_type == Some(BlockrefType::Inode))),
        "{:#?}",
        r.findings
    );

    let img = Image::new("small-iscsi");
    let (_, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Indirect);
    img.write(img.bref(*chain.last().unwrap()).offset() + 0x7f, &[0x01]);
    let r = assert_reports(&img, "BREF_CHECK");
    assert!(
        r.findings
            .iter()
            .any(|f| f.location.location().is_some_and(|l| l.bref_type == Some(BlockrefType::Indirect))),
        "{:#?}",
        r.findings
    );
}

#[test]
fn dirent_whose_key_is_not_its_name_hash() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Dirent && &b.check[..3] == b"dir");
    edit_bref(&img, copy, &chain, |b| b.check[..3].copy_from_slice(b"dix"));
    let r = assert_reports(&img, "DIRENT_BAD");
    assert!(r.findings.iter().any(|f| f.detail.contains("\"dix\"")), "{:#?}", r.findings);
}

#[test]
fn zeroed_inode_blockref_leaves_a_dangling_entry() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|i, b| inode_named(i, b, b"hello.txt"));
    edit_bref(&img, copy, &chain, |b| *b = Blockref::zeroed());
    let r = assert_reports(&img, "DIRENT_DANGLING");
    assert!(r.findings.iter().any(|f| f.detail.contains("\"hello.txt\"")), "{:#?}", r.findings);
}

#[test]
fn wrong_statistic() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|i, b| inode_named(i, b, b"data.bin"));
    edit_bref(&img, copy, &chain, |b| b.stats_mut().data_count = 4096.into());
    let r = assert_reports(&img, "BREF_STATS");
    assert!(r.findings.iter().any(|f| f.detail.contains("data_count 4096")), "{:#?}", r.findings);
}

#[test]
fn link_count_and_size_disagreements() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|i, b| inode_named(i, b, b"hello.txt"));
    edit_inode(&img, copy, &chain, |ip| ip.meta.nlinks = 3.into());
    let r = assert_reports(&img, "INODE_NLINKS");
    assert!(
        r.findings
            .iter()
            .any(|f| matches!(&f.location, Place::Inode { path: Some(p), .. } if p.ends_with("/hello.txt"))),
        "path named: {:#?}",
        r.findings
    );

    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|i, b| inode_named(i, b, b"data.bin"));
    edit_inode(&img, copy, &chain, |ip| ip.meta.size = 1000.into());
    let r = assert_reports(&img, "DATA_PAST_EOF");
    assert!(r.findings.iter().any(|f| f.detail.contains("past the end")), "{:#?}", r.findings);
}

#[test]
fn type_key_and_reserved_area_violations() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Dirent);
    edit_bref(&img, copy, &chain, |b| b.type_ = BlockrefType::Data.into());
    assert_reports(&img, "BREF_TYPE");

    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &is_data);
    edit_bref(&img, copy, &chain, |b| b.key = (b.key.get() + 0x123).into());
    assert_reports(&img, "BREF_KEY");

    // Move a data block (bytes and all, so its check code holds) into the boot area.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &is_data);
    let b = img.bref(*chain.last().unwrap());
    let bytes = img.read(b.offset(), b.physical_size() as usize);
    let boot = 0x40_0000 + 0x10000;
    img.write(boot, &bytes);
    edit_bref(&img, copy, &chain, |b| b.data_off = (boot | (b.data_off.get() & 0x3f)).into());
    let r = assert_reports(&img, "BREF_RESERVED");
    assert!(r.findings.iter().any(|f| f.detail.contains("boot/aux")), "{:#?}", r.findings);
}

#[test]
fn cycle_is_named() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Indirect);
    let parent = img.bref(chain[chain.len() - 2]);
    edit_bref(&img, copy, &chain, |b| {
        b.data_off = parent.data_off;
        b.type_ = BlockrefType::Inode.into();
        b.methods = hammer2::format::encode_methods(hammer2::format::CheckMethod::None, b.comp_method());
    });
    let r = run(&img);
    assert!(
        r.findings.iter().any(|f| f.problem.id == hammer2::fsck::ProblemId::TreeDepth
            || f.problem.id == hammer2::fsck::ProblemId::BrefDuplicate),
        "{:#?}",
        r.findings
    );
    assert_eq!(r.exit_code(), 4);
}

#[test]
fn per_pfs_summary_counts() {
    let r = fsck(crate::common::fixture("varied").to_str().unwrap(), &Default::default()).unwrap();
    let data = r.pfs.iter().find(|p| p.name == "DATA").unwrap();
    let manifest = std::fs::read_to_string(crate::common::fixtures_dir().join("varied.manifest")).unwrap();
    let count = |t: &str| manifest.lines().filter(|l| l.split('\t').nth(1) == Some(t)).count() as u64;
    // The hard link is one inode named twice; the PFS root is the extra directory.
    assert_eq!(data.files, count("f") - 1);
    assert_eq!(data.directories, count("d") + 1);
    assert_eq!(data.symlinks, count("l"));
    assert_eq!(data.dirents, count("f") + count("d") + count("l"));
}

/// HAMMER2's lookups assume a table's live entries are sorted by key: two
/// swapped entries hide each other from the kernel.
#[test]
fn unsorted_table() {
    let img = Image::new("small-iscsi");
    // The DATA root's blockset: an indirect block and two dirents, sorted.
    let (copy, chain) = find_chain(&img, &|i, b| {
        b.kind() == BlockrefType::Inode
            && InodeData::read_from_bytes(&i.read(b.offset(), 1024)).unwrap().name() == b"DATA"
    });
    let root = img.bref(*chain.last().unwrap());
    let set = root.offset() + 0x200;
    let (a, b) = (img.read(set + 2 * 128, 128), img.read(set + 3 * 128, 128));
    img.write(set + 2 * 128, &b);
    img.write(set + 3 * 128, &a);
    reseal(&img, copy, &chain);
    assert_reports(&img, "BREF_ORDER");
}
