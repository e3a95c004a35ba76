//! Hostile images built at test time: the damage is "resealed" (check codes
//! recomputed up to the volume header), so the tools meet the hostile
//! structure itself: a cycle, media past the end, absurd radix and keybits,
//! names with '/' or '..', blocks that do not decompress. Each must give a
//! clear error, never a panic or a hang.

mod common;

use common::reseal::{find_chain, reseal, Image};

use hammer2::format::{Blockref, BlockrefType};
use hammer2::pfs::Pfs;
use hammer2::tree::Tree;
use hammer2::walk::{walk, Root, WalkOptions};
use hammer2::Hammer2;
use zerocopy::IntoBytes;

fn walk_errors(img: &Image) -> Vec<String> {
    let fs = Hammer2::open_path(img.spec()).unwrap();
    let mut errs = Vec::new();
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        if let Some(e) = &v.error {
            errs.push(e.to_string());
        }
    })
    .unwrap();
    errs
}

fn extract_error(img: &Image, pfs: Option<&str>) -> String {
    let fs = Hammer2::open_path(img.spec()).unwrap();
    let tree = Tree::new(&fs);
    let pfs = match pfs {
        Some(l) => Pfs::find(&tree, l).unwrap(),
        None => Pfs::default(&tree).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    match hammer2::extract::extract(&pfs, "/", dir.path(), &mut |_| {}) {
        Ok(s) => panic!("extraction of a hostile image succeeded: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn fsck_code(img: &Image) -> i32 {
    let r = hammer2::fsck::fsck(img.spec(), &Default::default()).unwrap();
    r.exit_code()
}

fn is_dir_inode(img: &Image, b: &Blockref) -> bool {
    b.kind() == BlockrefType::Inode && b.flags & 1 == 0 && img.read(b.offset() + 0x50, 1)[0] == 1
}

#[test]
fn blockref_pointing_at_its_own_ancestor() {
    let img = Image::new("small-iscsi");
    // The directory "dir", indexed under the DATA PFS root: point it at that root.
    let inum = |i: &Image, b: &Blockref| u64::from_le_bytes(i.read(b.offset() + 0x58, 8).try_into().unwrap());
    let (copy, chain) = find_chain(&img, &|i, b| is_dir_inode(i, b) && inum(i, b) > 1);
    assert!(chain.len() >= 3, "a directory below a PFS root");
    let parent = img.bref(chain[chain.len() - 2]);
    let mut b = img.bref(*chain.last().unwrap());
    b.data_off = parent.data_off;
    // A block cannot carry the check code of a block that contains it, so a
    // consistent cycle uses check method NONE (which HAMMER2 permits).
    b.methods = hammer2::format::encode_methods(hammer2::format::CheckMethod::None, b.comp_method());
    img.write(*chain.last().unwrap(), b.as_bytes());
    reseal(&img, copy, &chain);
    let errs = walk_errors(&img);
    assert!(errs.iter().any(|e| e.contains("cycle")), "{errs:?}");
    assert_eq!(fsck_code(&img), 4);
    let e = extract_error(&img, None);
    assert!(e.contains("indexed as") || e.contains("contains itself"), "{e}");
}

#[test]
fn blockref_past_the_end_and_absurd_radix_or_keybits() {
    for (what, mutate) in [
        (
            "past the end",
            (|b: &mut Blockref| b.data_off = (0x7fff_ffff_0000u64 | 16).into()) as fn(&mut Blockref),
        ),
        ("radix 63", |b| b.data_off = ((b.data_off.get() & !0x3f) | 63).into()),
        ("keybits 200", |b| b.keybits = 200),
    ] {
        let img = Image::new("small-iscsi");
        let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Data);
        let pos = *chain.last().unwrap();
        let mut b = img.bref(pos);
        mutate(&mut b);
        img.write(pos, b.as_bytes());
        reseal(&img, copy, &chain);
        let e = extract_error(&img, None);
        assert!(e.contains("data data_off"), "{what}: {e}");
        if what != "keybits 200" {
            assert!(!walk_errors(&img).is_empty(), "{what}");
            assert_eq!(fsck_code(&img), 4, "{what}");
        }
    }
}

#[test]
fn names_with_slash_or_dotdot_are_refused() {
    for name in [&b".."[..], b"a/b", b"."] {
        let img = Image::new("small-iscsi");
        let (copy, chain) =
            find_chain(&img, &|_, b| b.kind() == BlockrefType::Dirent && b.dirent().namlen.get() == 3);
        let pos = *chain.last().unwrap();
        let mut b = img.bref(pos);
        b.check[..name.len()].copy_from_slice(name);
        b.dirent_mut().namlen = (name.len() as u16).into();
        img.write(pos, b.as_bytes());
        reseal(&img, copy, &chain);
        let e = extract_error(&img, None);
        assert!(e.contains("refusing a name") && e.contains("inode"), "{name:?}: {e}");
    }
}

#[test]
fn blocks_that_do_not_decompress() {
    for (fixture, comp) in
        [("varied", hammer2::format::CompMethod::Lz4), ("varied-zlib", hammer2::format::CompMethod::Zlib)]
    {
        let img = Image::new(fixture);
        let (copy, chain) =
            find_chain(&img, &|_, b| b.kind() == BlockrefType::Data && b.comp_method() == comp);
        let b = img.bref(*chain.last().unwrap());
        // An LZ4 length prefix larger than the block; a zlib stream with a broken header.
        img.write(b.offset(), &[0xff, 0xff, 0xff, 0x7f]);
        reseal(&img, copy, &chain);
        assert!(walk_errors(&img).is_empty(), "check codes were resealed");
        let e = extract_error(&img, None);
        assert!(e.contains("does not decompress") && e.contains("data data_off"), "{fixture}: {e}");
    }
}

#[test]
fn reseal_without_damage_keeps_the_image_clean() {
    // Guards the helper: resealing an untouched chain changes nothing observable.
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Data);
    reseal(&img, copy, &chain);
    assert!(walk_errors(&img).is_empty());
    assert_eq!(fsck_code(&img), 0);
}
