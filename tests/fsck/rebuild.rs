//! fsck's rebuilds (src/fsck/rebuild.rs, src/fsck/lostfound.rs): a node of
//! the `varied` fixture overwritten with garbage (its check code left as
//! it was) is rebuilt by `-y` from older header copies and the media, or
//! cut out with its files filed under /lost+found. Each scenario compares
//! the tree `get` extracts after the repair with the one before the damage.

use crate::common::editor::{edit_ok, text};
use crate::common::oracle::{self, NEEDS};
use crate::common::reseal::{find_chain, Image, Map};
use hammer2::format::{BlockrefType, ObjType};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const GARBAGE: &[u8] = b"GARBAGE-GARBAGE!";

fn fsck_bin(args: &[&str]) -> (i32, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).env("COLUMNS", "1000").args(args).output().unwrap();
    (out.status.code().unwrap(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// What `get /` extracts: relative path -> (kind, mode bits, contents or
/// link target).
type Tree = BTreeMap<String, (char, u32, Vec<u8>)>;

fn extract(img: &Image) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    edit_ok(&[img.spec(), "get", "/", dest.to_str().unwrap()]);
    let mut out = Tree::new();
    collect(&dest, &dest, &mut out);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Tree) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.insert(rel, ('l', 0, t.as_os_str().as_encoded_bytes().to_vec()));
        } else if m.is_dir() {
            out.insert(rel, ('d', mode, Vec::new()));
            collect(root, &p, out);
        } else if m.is_file() {
            out.insert(rel, ('f', mode, std::fs::read(&p).unwrap()));
        } else {
            out.insert(rel, ('o', mode, Vec::new()));
        }
    }
}

/// The media offset of the block the blockref at the end of `chain` names.
fn block_of(img: &Image, chain: &[u64]) -> u64 {
    img.bref(*chain.last().unwrap()).offset()
}

/// Damage, then: `-n` finds it and writes nothing, `-y` repairs (exit 1),
/// then `-n` is clean and a second `-y` finds nothing; the repaired image
/// passes the reference fsck and makefs mounts and bulkfrees it.
fn damage_and_repair(img: &Image, at: u64) -> String {
    img.write(at, GARBAGE);
    let before = img.contents();
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("BREF_CHECK") && out.contains("; with -y: "), "{out}");
    assert!(img.contents() == before, "-n wrote");
    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{out}");
    let (code, again) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "after -y: {again}\n-y said:\n{out}");
    let (code, again) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 0, "second -y: {again}");
    crate::common::maint::oracle_fsck(img.spec());
    oracle::makefs_mounts_and_bulkfrees(&img.path);
    out
}

/// The DATA PFS's inode-index indirect block of inodes 1024-1151.
fn index_block(img: &Image) -> u64 {
    let (_, chain) =
        find_chain(img, &|_, b| b.kind() == BlockrefType::Indirect && b.key.get() == 0x400 && b.keybits == 7);
    block_of(img, &chain)
}

fn index_block_after_a_newer_commit() {
    let img = Image::new("varied");
    // A newer commit elsewhere: every header copy names the same block,
    // so no rollback can help; the rebuild keeps the commit.
    edit_ok(&[img.spec(), "mkdir", "/made-after"]);
    let want = extract(&img);
    let out = damage_and_repair(&img, index_block(&img) + 0x100);
    assert!(out.contains("rebuilt from the media: 128 inodes"), "{out}");
    assert!(!out.contains("HDR_TREE_DAMAGED"), "{out}");
    assert!(extract(&img) == want, "the tree differs after the rebuild");
}

#[test]
fn inode_index_block_is_rebuilt_after_a_newer_commit() {
    oracle::without(index_block_after_a_newer_commit);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn inode_index_block_is_rebuilt_after_a_newer_commit_with_reference_tools() {
    let _ = NEEDS;
    index_block_after_a_newer_commit();
}

fn index_block_changed_since_the_older_copies() {
    let img = Image::new("varied");
    // hello.txt is inode 1030: its new version rewrites the index block,
    // so the older header copies hold an older version of it.
    let old = index_block(&img);
    edit_ok(&[img.spec(), "chmod", "600", "/hello.txt"]);
    let new = index_block(&img);
    assert_ne!(old, new);
    let want = extract(&img);
    let out = damage_and_repair(&img, new + 0x100);
    assert!(out.contains("rebuilt from the media: 128 inodes"), "{out}");
    let got = extract(&img);
    assert_eq!(got.get("hello.txt").map(|e| e.1), Some(0o600), "the newer version of the inode is kept");
    assert!(got == want, "the tree differs after the rebuild");
}

#[test]
fn inode_index_block_prefers_the_newest_inodes_over_the_older_copy() {
    oracle::without(index_block_changed_since_the_older_copies);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn inode_index_block_prefers_the_newest_inodes_over_the_older_copy_with_reference_tools() {
    index_block_changed_since_the_older_copies();
}

fn file_indirect_block() {
    let img = Image::new("varied");
    // random-1m.bin (inode 1024): 16 data blocks under one indirect block.
    let (_, chain) =
        find_chain(&img, &|_, b| b.kind() == BlockrefType::Indirect && b.key.get() == 0 && b.keybits == 23);
    let want = extract(&img);
    // Past the 16 slots in use: every data blockref is intact on the media.
    let out = damage_and_repair(&img, block_of(&img, &chain) + 0x1000);
    assert!(out.contains("rebuilt from the media: 16 data blocks"), "{out}");
    assert!(extract(&img) == want, "the tree differs after the rebuild");
}

#[test]
fn file_indirect_block_is_rebuilt_from_its_data_blocks() {
    oracle::without(file_indirect_block);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn file_indirect_block_is_rebuilt_from_its_data_blocks_with_reference_tools() {
    file_indirect_block();
}

fn bad_inode() {
    let img = Image::new("varied");
    let want_old = extract(&img);
    edit_ok(&[img.spec(), "chmod", "600", "/hello.txt"]);
    // The new version of inode 1030 overwritten: its older version (the
    // older header copies name it) comes back.
    let (_, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Inode && b.key.get() == 1030);
    let out = damage_and_repair(&img, block_of(&img, &chain) + 0x10);
    assert!(out.contains("rebuilt from header copy #") && out.contains("1 inodes"), "{out}");
    let got = extract(&img);
    assert_eq!(got.get("hello.txt").map(|e| e.1), Some(0o644), "the older version is back");
    assert!(got == want_old, "the tree differs from the one of the older version");
}

#[test]
fn damaged_inode_is_replaced_by_its_newest_older_version() {
    oracle::without(bad_inode);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn damaged_inode_is_replaced_by_its_newest_older_version_with_reference_tools() {
    bad_inode();
}

fn directory_block() {
    let img = Image::new("varied");
    let want = extract(&img);
    // An indirect block of a directory other than the root: every header
    // copy names it, and the media holds no other copy: it is cut out, and
    // the inodes its entries named go to /lost+found.
    let map = Map::build(&img);
    let slot = map
        .slots
        .iter()
        .find(|s| {
            s.bref.kind() == BlockrefType::Indirect
                && s.parent_kind == Some(BlockrefType::Inode)
                && s.owner.is_some_and(|o| {
                    map.inodes[o].obj_type() == ObjType::Directory
                        && map.inodes[o].role == crate::common::reseal::Role::Index
                })
        })
        .expect("a directory with an indirect block");
    let out = damage_and_repair(&img, slot.bref.offset() + 0x100);
    assert!(out.contains("cut out") && out.contains("/lost+found/#"), "{out}");
    let got = extract(&img);
    // Every file kept at its path is intact; the others are in /lost+found
    // (by contents: their names were in the block).
    let lost: Vec<&Vec<u8>> =
        got.iter().filter(|(p, e)| p.starts_with("lost+found/") && e.0 == 'f').map(|(_, e)| &e.2).collect();
    let mut missing = 0;
    for (path, e) in &want {
        match got.get(path) {
            Some(g) => assert_eq!(g, e, "{path} changed"),
            None if e.0 == 'f' => {
                assert!(lost.contains(&&e.2), "{path} is neither at its path nor in /lost+found");
                missing += 1;
            }
            None => {}
        }
    }
    assert!(missing > 0, "nothing moved to /lost+found");
    let kept = want.iter().filter(|(p, e)| e.0 == 'f' && got.get(*p) == Some(e)).count();
    eprintln!(
        "directory block cut out: {kept} files kept at their paths, {missing} salvaged into /lost+found"
    );
    let lf = got.get("lost+found").expect("/lost+found exists");
    assert_eq!((lf.0, lf.1), ('d', 0o700));
}

#[test]
fn damaged_directory_block_is_cut_out_and_its_files_go_to_lost_found() {
    oracle::without(directory_block);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn damaged_directory_block_is_cut_out_and_its_files_go_to_lost_found_with_reference_tools() {
    directory_block();
}

fn data_block() {
    let img = Image::new("varied");
    let want_old = extract(&img);
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("patch");
    std::fs::write(&patch, crate::common::content(7, 100)).unwrap();
    edit_ok(&[img.spec(), "write", "/random-1m.bin", "0", patch.to_str().unwrap()]);
    // The new block at offset 0 of random-1m.bin overwritten: the one the
    // older header copies name comes back (the file as before the write).
    let (_, chain) = find_chain(&img, &|_, b| {
        b.kind() == BlockrefType::Data && b.key.get() == 0 && b.keybits == 16 && b.mirror_tid.get() > 0x11
    });
    let out = damage_and_repair(&img, block_of(&img, &chain) + 0x100);
    assert!(out.contains("replaced by the block header copy #"), "{out}");
    assert!(extract(&img) == want_old, "the tree differs from the one before the write");
}

#[test]
fn damaged_data_block_is_replaced_by_its_older_version() {
    oracle::without(data_block);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn damaged_data_block_is_replaced_by_its_older_version_with_reference_tools() {
    data_block();
}

#[test]
fn damaged_data_block_without_another_copy_is_left_and_said() {
    let img = Image::new("varied");
    let (_, chain) =
        find_chain(&img, &|_, b| b.kind() == BlockrefType::Data && b.key.get() == 0 && b.keybits == 16);
    img.write(block_of(&img, &chain) + 0x100, GARBAGE);
    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("no other verified copy of the block exists"), "{out}");
}

fn directory_block_from_older_copy() {
    let img = Image::new("varied");
    // A name added to /wide (3,000 entries under indirect blocks) rewrites
    // the block holding its hash: the older header copies hold the block
    // before it. That block comes back; the new name is lost and the
    // directory it named is filed under /lost+found.
    edit_ok(&[img.spec(), "mkdir", "/wide/made-after"]);
    let want = extract(&img);
    let (_, chain) = find_chain(&img, &|_, b| {
        b.kind() == BlockrefType::Dirent && b.dirent().namlen.get() == 10 && &b.check[..10] == b"made-after"
    });
    let holder = chain[chain.len() - 2];
    assert_eq!(img.bref(holder).kind(), BlockrefType::Indirect);
    let out = damage_and_repair(&img, img.bref(holder).offset() + 0x100);
    assert!(out.contains("rebuilt from header copy #"), "{out}");
    assert!(out.contains("/lost+found/#"), "{out}");
    let got = extract(&img);
    let mut expect = want.clone();
    let moved = expect.remove("wide/made-after").unwrap();
    let filed: Vec<_> = got.keys().filter(|p| p.starts_with("lost+found/#")).cloned().collect();
    assert_eq!(filed.len(), 1, "{filed:?}");
    expect.insert(filed[0].clone(), moved);
    expect.insert("lost+found".into(), ('d', 0o700, Vec::new()));
    assert!(got == expect, "the tree differs from the one before the mkdir");
}

#[test]
fn damaged_directory_block_comes_back_from_an_older_copy() {
    oracle::without(directory_block_from_older_copy);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn damaged_directory_block_comes_back_from_an_older_copy_with_reference_tools() {
    directory_block_from_older_copy();
}

fn loop_is_cut() {
    use zerocopy::IntoBytes;
    let img = Image::new("varied");
    let want = extract(&img);
    // In an empty slot of random-1m.bin's indirect block (keys past the
    // file's end), a blockref naming the inode-index block above it: a
    // loop, resealed so that only the walk's ancestry sees it.
    let (copy, chain) =
        find_chain(&img, &|_, b| b.kind() == BlockrefType::Indirect && b.key.get() == 0 && b.keybits == 23);
    let ancestor = chain[chain.len() - 3];
    let mut b = img.bref(ancestor);
    assert_eq!((b.kind(), b.keybits), (BlockrefType::Indirect, 7));
    b.key = 0x10_0000.into();
    b.keybits = 16;
    img.write(img.bref(*chain.last().unwrap()).offset() + 20 * 128, b.as_bytes());
    crate::common::reseal::reseal(&img, copy, &chain);
    let (code, out) = fsck_bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("TREE_DEPTH"), "{out}");
    let (code, out) = fsck_bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut out"), "{out}");
    assert_eq!(fsck_bin(&["-n", img.spec()]).0, 0);
    assert_eq!(fsck_bin(&["-y", img.spec()]).0, 0);
    crate::common::maint::oracle_fsck(img.spec());
    oracle::makefs_mounts_and_bulkfrees(&img.path);
    assert!(extract(&img) == want, "the tree differs after the loop was cut");
}

#[test]
fn a_loop_is_cut_where_it_closes() {
    oracle::without(loop_is_cut);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn a_loop_is_cut_where_it_closes_with_reference_tools() {
    loop_is_cut();
}
