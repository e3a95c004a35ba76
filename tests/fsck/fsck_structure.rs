//! fsck's structure repairs (src/fsck/structure.rs): each damage is made
//! on a copy of small-iscsi and resealed (check codes recomputed up to the
//! header, so only the semantic checks see it). Per case: `-n` reports it
//! and writes nothing, `-y` repairs it (exit 1, FIXED and what was done),
//! then `-n` exits 0, a second `-y` finds nothing, and every file that
//! read back exactly (as in the pristine fixture) before the repair still
//! does, at its path. The ignored twin also asks the reference tools.

use crate::common::readable::{exact, readable_files};
use crate::common::reseal::{find_chain, reseal, Image};
use crate::fsck_semantic::{data_block, edit_bref, edit_inode, is_inum, DATA_BIN, DIR};
use hammer2::format::{BlockrefType, DIRHASH_VISIBLE};
use zerocopy::IntoBytes;

fn bin(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fsck_hammer2"))
        .args(args)
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The damage `damage` made to a fresh small-iscsi, then the repair
/// cycle of the module's doc; `done` is what the -y output must say.
fn repair_case(name: &str, damage: impl Fn(&Image), id: &str, done: &str) {
    let pristine = readable_files(Image::new("small-iscsi").spec());
    let img = Image::new("small-iscsi");
    damage(&img);
    let before = img.contents();
    let kept = exact(&pristine, &readable_files(img.spec()));
    assert!(!kept.is_empty(), "{name}");
    let (code, out) = bin(&["-n", img.spec()]);
    assert_eq!(code, 4, "{name}: {out}");
    assert!(out.contains(id), "{name}: {out}");
    assert!(img.contents() == before, "{name}: -n wrote");
    let (code, out) = bin(&["-y", img.spec()]);
    assert_eq!(code, 1, "{name}: {out}");
    assert!(out.contains("FIXED") && out.contains(done), "{name}: expected {done:?} in {out}");
    let (code, out) = bin(&["-n", img.spec()]);
    assert_eq!(code, 0, "{name} after -y: {out}");
    let (code, out) = bin(&["-y", img.spec()]);
    assert_eq!(code, 0, "{name}, second -y: {out}");
    let after = readable_files(img.spec());
    for p in &kept {
        assert_eq!(after.get(p), pristine.get(p), "{name}: {p} no longer reads back as before");
    }
    crate::common::maint::oracle_fsck(img.spec());
    crate::common::oracle::makefs_mounts_and_bulkfrees(&img.path);
}

/// Swaps the blockrefs of slots 0 and 1 of the table holding the data
/// block at key 0 of data.bin.
pub(crate) fn swap_first_two(img: &Image) {
    let (copy, chain) = find_chain(img, &data_block(0));
    let pos = *chain.last().unwrap();
    let (a, b) = (img.bref(pos), img.bref(pos + 128));
    img.write(pos, b.as_bytes());
    img.write(pos + 128, a.as_bytes());
    reseal(img, copy, &chain);
}

type Case = (&'static str, fn(&Image), &'static str, &'static str);

const CASES: &[Case] = &[
    (
        "data_count of an inode",
        |img| {
            edit_bref(img, &|i, b| is_inum(i, b, DATA_BIN), |b| {
                let s = b.stats_mut();
                s.data_count = (s.data_count.get() + 12345).into();
            })
        },
        "BREF_STATS",
        "statistics recomputed",
    ),
    (
        "inode_count of a directory",
        |img| {
            edit_bref(img, &|i, b| is_inum(i, b, DIR), |b| {
                let s = b.stats_mut();
                s.inode_count = 77.into();
            })
        },
        "BREF_STATS",
        "statistics recomputed",
    ),
    (
        "inode blockref of 2 KiB",
        |img| {
            edit_bref(img, &|i, b| is_inum(i, b, DATA_BIN), |b| {
                b.data_off = ((b.data_off.get() & !0x3f) | 11).into()
            })
        },
        "BREF_INODE_SIZE",
        "inode rewritten as 1 KiB",
    ),
    ("table out of order", swap_first_two, "BREF_ORDER", "table sorted by key"),
    (
        "two data blocks with one key",
        |img| edit_bref(img, &data_block(0x10000), |b| b.key = 0.into()),
        "BREF_KEY_DUP",
        "dropped",
    ),
    (
        "data past the end",
        |img| edit_inode(img, DATA_BIN, |ip| ip.meta.size = 0x10000.into()),
        "DATA_PAST_EOF",
        "data block at file offset 0x10000",
    ),
    (
        "file of size 0 over its blocks",
        |img| edit_inode(img, DATA_BIN, |ip| ip.meta.size = 0.into()),
        "DATA_PAST_EOF",
        "dropped",
    ),
    (
        "data keybits 16 -> 15",
        |img| edit_bref(img, &data_block(0x10000), |b| b.keybits = 15),
        "DATA_KEYBITS",
        "keybits 15 set to 16",
    ),
    (
        "short raw block mid-file",
        |img| edit_bref(img, &data_block(0), |b| b.data_off = ((b.data_off.get() & !0x3f) | 11).into()),
        "DATA_KEYBITS",
        "keybits 16 set to 11",
    ),
    (
        "data blockref typed as a directory entry",
        |img| edit_bref(img, &data_block(0x10000), |b| b.type_ = BlockrefType::Dirent.into()),
        "BREF_TYPE",
        "dropped",
    ),
    (
        "inode indexed under another number",
        |img| edit_bref(img, &|i, b| is_inum(i, b, DATA_BIN), |b| b.key = 0x100_0000.into()),
        "INODE_BAD",
        "re-inserted under key 0x401",
    ),
    (
        "data block key not aligned to its keybits",
        |img| edit_bref(img, &data_block(0x10000), |b| b.key = 0x10400.into()),
        "BREF_KEY",
        "data block at file offset 0x10400",
    ),
    (
        "inode key not aligned to its keybits",
        |img| edit_bref(img, &|i, b| is_inum(i, b, DATA_BIN), |b| b.keybits = 4),
        "BREF_KEY",
        "re-inserted under key 0x401",
    ),
    (
        "directory entry under a key that is not its name's hash",
        |img| {
            edit_bref(img, &|_, b| b.kind() == BlockrefType::Dirent, |b| {
                b.key = (DIRHASH_VISIBLE | 0x1234_0000).into()
            })
        },
        "DIRENT_BAD",
        "re-inserted under key",
    ),
];

fn structure_repairs() {
    for (name, damage, id, done) in CASES {
        repair_case(name, damage, id, done);
    }
}

#[test]
fn structure_repairs_by_yes() {
    crate::common::oracle::without(structure_repairs);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn structure_repairs_by_yes_with_reference_tools() {
    structure_repairs();
}

/// A crash at any point of a structure repair leaves either the damaged
/// image (fsck -n reports the same problems) or the repaired one (fsck -n
/// exits 0): the repair's session is run on a device that records every
/// write and barrier (its commit, then the rewrite of the older header
/// copies), and the image is rebuilt at every barrier, before and after
/// every header write, with every header write torn, and at sampled points
/// and subsets between barriers. Header-copy findings (a torn or stale
/// copy) may come on top of either state: they are the header's own
/// repair's (HDR_TORN, -p), and the tree each copy names is one of the two.
#[test]
fn crash_at_every_barrier_of_a_structure_repair() {
    use crate::common::recording::{cut_points, open_recorded_into, CrashImage, Log, Rng};
    use hammer2::fsck::{fsck, FsckOptions, RepairMode};
    use std::collections::BTreeSet;
    let damaged = Image::new("small-iscsi");
    edit_bref(&damaged, &|i, b| is_inum(i, b, DIR), |b| b.stats_mut().inode_count = 77.into());
    edit_inode(&damaged, DATA_BIN, |ip| ip.meta.size = 0x10000.into());
    swap_first_two(&damaged);
    let tree_ids = |spec: &str| -> (i32, BTreeSet<String>) {
        let r = fsck(spec, &Default::default()).unwrap();
        let ids = r
            .damage()
            .filter(|f| !f.problem.id.code().starts_with("HDR_"))
            .map(|f| format!("{} {}", f.problem.id, f.detail))
            .collect();
        (r.exit_code(), ids)
    };
    let (code, before) = tree_ids(damaged.spec());
    assert_eq!(code, 4);
    let ids: BTreeSet<&str> = before.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert!(ids.is_superset(&["BREF_STATS", "DATA_PAST_EOF", "BREF_ORDER"].into()), "{before:#?}");
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("damaged.img");
    crate::common::copy_sparse(&damaged.path, &original);
    let work = dir.path().join("repaired.img");
    crate::common::copy_sparse(&original, &work);
    let mut report = fsck(work.to_str().unwrap(), &Default::default()).unwrap();
    let log = Log::default();
    let fs = open_recorded_into(&work, &log);
    let mut session = hammer2::write::session::Session::from_fs(fs, true).unwrap();
    let yes = FsckOptions { repair: RepairMode::Yes, ..Default::default() };
    hammer2::fsck::structure::repair_in(&mut session, &yes, &mut report).unwrap();
    session.commit().unwrap();
    drop(session);
    assert!(report.findings.iter().any(|f| f.repaired), "{:#?}", report.findings);
    assert_eq!(tree_ids(work.to_str().unwrap()).0, 0, "the repair itself");
    let events = log.events();
    let cuts = cut_points(&events, 3, &mut Rng::new(22));
    assert!(cuts.len() > 10, "{} cuts", cuts.len());
    let mut img = CrashImage::new(&original, &dir.path().join("crash.img"));
    let (mut old, mut new) = (0, 0);
    for cut in &cuts {
        img.apply(&events, cut);
        let (_, got) = tree_ids(img.spec());
        if got.is_empty() {
            new += 1;
        } else if got == before {
            old += 1;
        } else {
            panic!(
                "{}: neither the damaged nor the repaired state:\n{got:#?}\nbefore: {before:#?}",
                cut.name
            );
        }
    }
    println!("{} cuts: {old} at the damaged state, {new} at the repaired one", cuts.len());
    assert!(old > 0 && new > 0, "{old} old, {new} new");
}
