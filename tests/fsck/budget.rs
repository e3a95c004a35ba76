//! fsck's memory budget (`--memory`): past it, the per-inode and per-entry
//! cross-check records spill sorted runs to `--tmpdir`; the answers must be
//! exactly those of a check that kept them in memory, on clean and on
//! damaged images.

use crate::common::reseal::{find_chain, reseal, Image};
use hammer2::format::{Blockref, BlockrefType, InodeData};
use hammer2::fsck::{fsck, FsckOptions, FsckReport};
use zerocopy::{FromBytes, IntoBytes};

/// Everything a report says, as text.
fn said(r: &FsckReport) -> Vec<String> {
    let mut out: Vec<String> = r
        .findings
        .iter()
        .map(|f| format!("{} | {} | {} | {}", f.problem.id.code(), f.location, f.detail, f.repaired))
        .collect();
    out.push(serde_json::to_string(&r.pfs).unwrap());
    out.push(format!("exit {}", r.exit_code()));
    out
}

/// The check in memory and with a budget of one byte (runs of 16 records)
/// agree; the runs leave nothing behind; the tiny budget really spills
/// when there is enough to spill (an unusable directory then fails the
/// check, while the default budget never touches it).
fn same_with_a_tiny_budget(img: &Image) -> FsckReport {
    let dir = tempfile::tempdir().unwrap();
    let plain = fsck(img.spec(), &FsckOptions::default()).unwrap();
    let tiny = FsckOptions { memory: Some(1), tmpdir: Some(dir.path().into()), ..Default::default() };
    let spilled = fsck(img.spec(), &tiny).unwrap();
    assert_eq!(said(&plain), said(&spilled));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "runs left behind");
    // More than 16 inodes in a PFS fill a sorter's smallest run.
    let spills = plain.pfs.iter().any(|p| p.inodes > 16);
    let nowhere = Some(dir.path().join("missing"));
    let e = fsck(img.spec(), &FsckOptions { memory: Some(1), tmpdir: nowhere.clone(), ..Default::default() });
    assert_eq!(e.is_err(), spills, "a budget of one byte spills exactly when a PFS has more than 16 inodes");
    fsck(img.spec(), &FsckOptions { tmpdir: nowhere, ..Default::default() }).unwrap();
    plain
}

fn ids(r: &FsckReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.problem.id.code()).collect()
}

fn inode(img: &Image, b: &Blockref) -> Option<InodeData> {
    (b.kind() == BlockrefType::Inode && b.radix() == 10)
        .then(|| InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap())
}

/// The `nth` inode (in search order) of type `t` other than the roots.
fn nth_of_type(img: &Image, t: u8, nth: u64) -> (usize, Vec<u64>) {
    let seen = std::cell::Cell::new(0);
    find_chain(img, &|i, b| {
        inode(i, b).is_some_and(|ip| ip.meta.type_ == t && ip.meta.inum.get() > 1) && {
            seen.set(seen.get() + 1);
            seen.get() == nth + 1
        }
    })
}

fn edit_inode(img: &Image, (copy, chain): &(usize, Vec<u64>), f: impl Fn(&mut InodeData)) {
    let b = img.bref(*chain.last().unwrap());
    let mut ip = InodeData::read_from_bytes(&img.read(b.offset(), 1024)).unwrap();
    f(&mut ip);
    img.write(b.offset(), ip.as_bytes());
    reseal(img, *copy, chain);
}

#[test]
fn pristine_fixtures_give_the_same_answers_spilled() {
    for name in ["varied", "pfs-snapshot", "small-iscsi"] {
        let r = same_with_a_tiny_budget(&Image::new(name));
        assert_eq!(r.exit_code(), 0, "{name}: {:#?}", r.findings);
        if name == "varied" {
            assert!(r.pfs.iter().any(|p| p.inodes > 1000), "varied spills: {:?}", r.pfs);
        }
    }
}

#[test]
fn damaged_images_give_the_same_answers_spilled() {
    let img = Image::new("varied");
    // A file counted three times, another one's iparent elsewhere, a
    // directory miscounted, and a file's blockref zeroed (its entry dangles).
    let (file1, file2, file3) =
        (nth_of_type(&img, 2, 5), nth_of_type(&img, 2, 40), nth_of_type(&img, 2, 300));
    let dir = nth_of_type(&img, 1, 3);
    edit_inode(&img, &file1, |ip| ip.meta.nlinks = 3.into());
    edit_inode(&img, &file2, |ip| ip.meta.iparent = 12345.into());
    edit_inode(&img, &dir, |ip| ip.meta.nlinks = 77.into());
    let pos = *file3.1.last().unwrap();
    img.write(pos, Blockref::zeroed().as_bytes());
    reseal(&img, file3.0, &file3.1);
    let r = same_with_a_tiny_budget(&img);
    let ids = ids(&r);
    for want in ["INODE_NLINKS", "INODE_IPARENT_HINT", "INODE_DIR_NLINKS", "DIRENT_DANGLING"] {
        assert!(ids.contains(&want), "{want} missing: {:#?}", r.findings);
    }
}
