//! The freemap pass of fsck_hammer2: the fixtures check clean, and images
//! whose freemap is damaged at test time (then resealed, so fsck meets the
//! damage rather than a check-code mismatch) produce the right findings.

use crate::common::reseal::{find_chain, reseal, Image};
use hammer2::format::{BlockrefType, BmapData, VolumeData};
use hammer2::fsck::{fsck, Finding, FsckReport, Place, Severity, ZoneLeaf};
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::Hammer2;
use std::process::Command;
use zerocopy::{FromBytes, IntoBytes};

const CHUNK: u64 = 16384;
const ZONE: u64 = 1 << 30;
const SEG: u64 = 4 << 20;
const LEAF_BYTES: usize = 32768;

fn run(img: &Image) -> FsckReport {
    fsck(img.spec(), &Default::default()).unwrap()
}

fn with_id<'a>(r: &'a FsckReport, id: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.problem.id.code() == id).collect()
}

fn dump(r: &FsckReport) -> String {
    r.findings.iter().map(|f| format!("{} {}: {}\n", f.problem.id, f.location, f.detail)).collect()
}

fn bin(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(args).output().unwrap();
    (
        o.status.code().unwrap(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

/// The best header copy and the file offset of the FREEMAP_LEAF blockref in
/// its `freemap_blockset` (makefs puts the zone-0 leaf there directly).
/// `find_chain` only descends from `sroot_blockset`, so this looks itself.
fn leaf_slot(img: &Image) -> (usize, u64) {
    let copy = Hammer2::open_path(img.spec()).unwrap().copy;
    let hdr = copy as u64 * (2 << 30);
    let freemap_blockset = hdr + std::mem::offset_of!(VolumeData, freemap_blockset) as u64;
    for i in 0..4 {
        let pos = freemap_blockset + i * 128;
        if img.bref(pos).kind() == BlockrefType::FreemapLeaf {
            return (copy, pos);
        }
    }
    panic!("no freemap leaf in the header's freemap_blockset");
}

/// Edits the leaf's 256 entries in place, then reseals.
fn edit_leaf(img: &Image, f: impl FnOnce(&mut [BmapData])) {
    let (copy, pos) = leaf_slot(img);
    let b = img.bref(pos);
    let mut media = img.read(b.offset(), LEAF_BYTES);
    f(BmapData::table_mut(&mut media));
    img.write(b.offset(), &media);
    reseal(img, copy, &[pos]);
}

fn leaf_table(img: &Image) -> Vec<u8> {
    let (_, pos) = leaf_slot(img);
    img.read(img.bref(pos).offset(), LEAF_BYTES)
}

/// Sets the state of the chunk at logical `off` (zone 0) and keeps `avail` consistent.
fn set_state(table: &mut [BmapData], off: u64, state: u8) {
    let e = &mut table[(off % ZONE / SEG) as usize];
    let n = (off % SEG / CHUNK) as usize;
    let was_free = e.block_state(n) == 0;
    e.set_block_state(n, state);
    let avail = e.avail.get();
    match (was_free, state == 0) {
        (true, false) => e.avail = (avail - CHUNK as u32).into(),
        (false, true) => e.avail = (avail + CHUNK as u32).into(),
        _ => {}
    }
}

fn state_of(table: &[BmapData], off: u64) -> u8 {
    table[(off % ZONE / SEG) as usize].block_state((off % SEG / CHUNK) as usize)
}

struct Block {
    off: u64,
    end: u64,
    mirror_tid: u64,
    modify_tid: u64,
}

/// Every topology block with media under the best header.
fn topology_blocks(spec: &str) -> Vec<Block> {
    let fs = Hammer2::open_path(spec).unwrap();
    let mut v = Vec::new();
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |visit| {
        if visit.media.is_some() {
            let b = visit.bref;
            v.push(Block {
                off: b.offset(),
                end: b.offset() + b.physical_size(),
                mirror_tid: b.mirror_tid.get(),
                modify_tid: b.modify_tid.get(),
            });
        }
    })
    .unwrap();
    v
}

fn used_chunks(blocks: &[Block]) -> std::collections::BTreeSet<u64> {
    let mut s = std::collections::BTreeSet::new();
    for b in blocks {
        let mut c = b.off & !(CHUNK - 1);
        while c < b.end {
            s.insert(c);
            c += CHUNK;
        }
    }
    s
}

/// `allocator_beg` rounded up to 4 MiB: below it the leaf is all allocated.
fn lokey(spec: &str) -> u64 {
    let fs = Hammer2::open_path(spec).unwrap();
    (fs.voldata.allocator_beg.get() + SEG - 1) & !(SEG - 1)
}

fn set_freemap_tid(img: &Image, tid: u64) {
    let copy = Hammer2::open_path(img.spec()).unwrap().copy;
    let hoff = copy as u64 * (2 << 30);
    let mut v = VolumeData::read_from_bytes(&img.read(hoff, 65536)).unwrap();
    v.freemap_tid = tid.into();
    img.write(hoff, v.as_bytes());
    reseal(img, copy, &[]);
}

#[test]
fn fixtures_have_a_consistent_freemap() {
    for (name, spec) in crate::common::all_specs() {
        let r = fsck(&spec, &Default::default()).unwrap();
        for id in ["FREEMAP_STRUCT", "FREEMAP_UNMARKED", "FREEMAP_ALLOC_FREE"] {
            assert!(with_id(&r, id).is_empty(), "{name}: {}", dump(&r));
        }
        // makefs left superseded indirect blocks of the big directory
        // allocated in varied*: genuine leaks a bulkfree would return.
        let leaked = with_id(&r, "FREEMAP_LEAKED");
        if name.starts_with("varied") {
            assert_eq!(leaked.len(), 1, "{name}: {}", dump(&r));
            assert!(leaked[0].detail.starts_with("46 chunks of 16 KiB"), "{}", leaked[0].detail);
            assert_eq!(leaked[0].problem.severity, Severity::Info);
        } else {
            assert!(leaked.is_empty(), "{name}: {}", dump(&r));
        }
    }
}

/// Four consecutive used chunks above `lokey`, all in one 4 MiB entry.
fn used_run(blocks: &[Block], lokey: u64) -> u64 {
    let used = used_chunks(blocks);
    *used
        .iter()
        .find(|&&c| {
            c >= lokey && c / SEG == (c + 3 * CHUNK) / SEG && (1..4).all(|i| used.contains(&(c + i * CHUNK)))
        })
        .expect("a run of four used chunks")
}

#[test]
fn blocks_marked_free_are_unmarked() {
    let img = Image::new("small-iscsi");
    let blocks = topology_blocks(img.spec());
    let start = used_run(&blocks, lokey(img.spec()));
    let stop = start + 4 * CHUNK;
    edit_leaf(&img, |t| (0..4).for_each(|i| set_state(t, start + i * CHUNK, 0)));

    let involved: Vec<&Block> = blocks.iter().filter(|b| b.off < stop && b.end > start).collect();
    let mirror = (
        involved.iter().map(|b| b.mirror_tid).min().unwrap(),
        involved.iter().map(|b| b.mirror_tid).max().unwrap(),
    );
    let modify = (
        involved.iter().map(|b| b.modify_tid).min().unwrap(),
        involved.iter().map(|b| b.modify_tid).max().unwrap(),
    );

    let r = run(&img);
    let found = with_id(&r, "FREEMAP_UNMARKED");
    assert_eq!(found.len(), 1, "{}", dump(&r));
    let f = found[0];
    assert_eq!(f.problem.severity, Severity::Error);
    assert!(
        matches!(f.location, Place::Logical { start: s, end: e, zone: 0, leaf: ZoneLeaf::Leaf(_) } if s == start && e == stop),
        "{}",
        f.location
    );
    assert!(f.detail.starts_with("4 chunks of 16 KiB in use but marked free"), "{}", f.detail);
    assert!(f.detail.contains(&format!("{} blockref", involved.len())), "{}", f.detail);
    assert!(f.detail.contains(&format!("mirror_tid {:#x}-{:#x}", mirror.0, mirror.1)), "{}", f.detail);
    assert!(f.detail.contains(&format!("modify_tid {:#x}-{:#x}", modify.0, modify.1)), "{}", f.detail);
    // makefs committed everything at mirror_tid 0x11 = freemap_tid: recovery cannot help.
    assert!(f.detail.contains("freemap_tid 0x11: none newer"), "{}", f.detail);
    assert!(with_id(&r, "FREEMAP_STRUCT").is_empty(), "{}", dump(&r));
    assert_eq!(r.exit_code(), 4);

    let (code, out) = bin(&[img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("ERROR FREEMAP_UNMARKED"), "{out}");

    // With an older freemap_tid the same blocks are what recovery re-marks.
    set_freemap_tid(&img, 0x10);
    let r = run(&img);
    let found = with_id(&r, "FREEMAP_UNMARKED");
    assert_eq!(found.len(), 1, "{}", dump(&r));
    assert!(found[0].detail.contains("freemap_tid 0x10: all newer"), "{}", found[0].detail);
}

#[test]
fn a_rolled_back_freemap_is_summarised() {
    let img = Image::new("varied");
    let blocks = topology_blocks(img.spec());
    let lo = lokey(img.spec());
    let expect = used_chunks(&blocks).range(lo..ZONE).count() as u64;
    // Everything the leaf allocated above lokey is free again.
    edit_leaf(&img, |t| {
        for c in (lo..ZONE).step_by(CHUNK as usize) {
            set_state(t, c, 0);
        }
    });
    let r = run(&img);
    let found = with_id(&r, "FREEMAP_UNMARKED");
    assert!(!found.is_empty() && found.len() <= hammer2::fsck::freemap::MAX_FINDINGS + 1, "{}", dump(&r));
    let total: u64 = found.iter().map(|f| f.detail.split(' ').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total, expect, "{}", dump(&r));
    assert!(found[0].detail.contains("in use but marked free, in "), "{}", found[0].detail);
    assert!(with_id(&r, "FREEMAP_STRUCT").is_empty(), "{}", dump(&r));
    assert!(with_id(&r, "FREEMAP_LEAKED").is_empty(), "{}", dump(&r));
    assert_eq!(r.exit_code(), 4);
}

#[test]
fn a_block_in_a_zone_without_leaf_is_unmarked() {
    let img = Image::new("small-iscsi");
    let (copy, chain) = find_chain(&img, &|_, b| b.kind() == BlockrefType::Data);
    let pos = *chain.last().unwrap();
    let mut b = img.bref(pos);
    let media = img.read(b.offset(), b.physical_size() as usize);
    let to = 3 * ZONE + (16 << 20);
    img.write(to, &media);
    b.data_off = (to | u64::from(b.radix())).into();
    img.write(pos, b.as_bytes());
    reseal(&img, copy, &chain);

    let r = run(&img);
    let found = with_id(&r, "FREEMAP_UNMARKED");
    assert_eq!(found.len(), 1, "{}", dump(&r));
    let chunks = b.physical_size().div_ceil(CHUNK);
    assert!(
        matches!(found[0].location, Place::Logical { start, end, zone: 3, leaf: ZoneLeaf::None }
            if start == to && end == to + chunks * CHUNK),
        "{}",
        found[0].location
    );
    let want =
        if chunks == 1 { "1 chunk of 16 KiB".to_string() } else { format!("{chunks} chunks of 16 KiB") };
    assert!(found[0].detail.starts_with(&want), "{}", found[0].detail);
    assert_eq!(r.exit_code(), 4);
}

#[test]
fn an_allocated_block_nothing_uses_is_leaked() {
    let img = Image::new("small-iscsi");
    let blocks = topology_blocks(img.spec());
    let used = used_chunks(&blocks);
    let lo = lokey(img.spec());
    let media = leaf_table(&img);
    let table = BmapData::table(&media);
    let off = (lo..ZONE)
        .step_by(CHUNK as usize)
        .find(|&c| state_of(table, c) == 0 && !used.contains(&c))
        .expect("a free chunk");
    edit_leaf(&img, |t| set_state(t, off, 3));

    let r = run(&img);
    let found = with_id(&r, "FREEMAP_LEAKED");
    assert_eq!(found.len(), 1, "{}", dump(&r));
    assert_eq!(found[0].problem.severity, Severity::Info);
    assert!(found[0].detail.starts_with("1 chunk of 16 KiB"), "{}", found[0].detail);
    assert!(found[0].detail.contains(&format!("zone 0: 1 (first at {off:#x})")), "{}", found[0].detail);
    // allocator_free did not follow: 16 KiB more than the expected 4 MiB.
    let alloc = with_id(&r, "FREEMAP_ALLOC_FREE");
    assert_eq!(alloc.len(), 1, "{}", dump(&r));
    assert!(alloc[0].detail.contains("difference -0x404000"), "{}", alloc[0].detail);
    assert!(alloc[0].detail.contains("-0x4000 is not"), "{}", alloc[0].detail);
    assert!(r.damage().next().is_none(), "{}", dump(&r));
    assert_eq!(r.exit_code(), 0);

    let (code, out) = bin(&["-v", img.spec()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("info FREEMAP_LEAKED"), "{out}");
}

fn assert_struct(img: &Image, needle: &str) {
    let r = run(img);
    let found = with_id(&r, "FREEMAP_STRUCT");
    assert!(found.iter().any(|f| f.detail.contains(needle)), "want {needle:?}: {}", dump(&r));
    assert!(with_id(&r, "FREEMAP_UNMARKED").is_empty(), "{}", dump(&r));
    assert_eq!(r.exit_code(), 4);
    let (code, out) = bin(&[img.spec()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("ERROR FREEMAP_STRUCT"), "{out}");
}

#[test]
fn leaf_with_wrong_keybits_is_malformed() {
    let img = Image::new("small-iscsi");
    let (copy, pos) = leaf_slot(&img);
    let mut b = img.bref(pos);
    b.keybits = 29;
    img.write(pos, b.as_bytes());
    reseal(&img, copy, &[pos]);
    assert_struct(&img, "keybits 29 invalid for a freemap_leaf");
}

/// Moves the leaf's media to `to` and points its blockref there.
fn move_leaf(img: &Image, to: u64) {
    let (copy, pos) = leaf_slot(img);
    let mut b = img.bref(pos);
    let media = img.read(b.offset(), LEAF_BYTES);
    img.write(to, &media);
    b.data_off = (to | 15).into();
    img.write(pos, b.as_bytes());
    reseal(img, copy, &[pos]);
}

#[test]
fn leaf_outside_the_reserved_slots_is_malformed() {
    let img = Image::new("small-iscsi");
    move_leaf(&img, 45 * 65536); // still in zone 0's first 4 MiB, past slot 40
    assert_struct(&img, "outside the reserved freemap slots");
}

#[test]
fn leaf_in_a_node_slot_is_malformed() {
    let img = Image::new("small-iscsi");
    move_leaf(&img, 2 * 65536); // FREEMAP_00 + LEVEL2: a level-2 node's slot
    assert_struct(&img, "slot of another level or zone");
}

#[test]
fn avail_disagreeing_with_the_bitmap_is_malformed() {
    let img = Image::new("small-iscsi");
    edit_leaf(&img, |t| {
        let a = t[200].avail.get();
        t[200].avail = (a - 65536).into();
    });
    assert_struct(&img, "1 of 256 entries have an avail");
}

#[test]
fn reserved_space_marked_free_is_malformed() {
    let img = Image::new("small-iscsi");
    let boot_beg = Hammer2::open_path(img.spec()).unwrap().voldata.boot_beg.get();
    edit_leaf(&img, |t| set_state(t, boot_beg, 0));
    assert_struct(&img, "1 chunk of reserved space");
}

/// A freemap leaf's blockref rewritten by `f`, then resealed.
fn edit_leaf_bref(img: &Image, f: impl FnOnce(&mut hammer2::format::Blockref)) {
    let (copy, pos) = leaf_slot(img);
    let mut b = img.bref(pos);
    f(&mut b);
    img.write(pos, b.as_bytes());
    reseal(img, copy, &[pos]);
}

fn dump_freemap_json(img: &Image) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_hammer2_dump"))
        .args(["freemap", "--json", img.spec()])
        .output()
        .unwrap();
    assert!(o.status.code().is_some(), "killed by a signal");
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn hostile_leaf_keys_are_findings_without_overflow() {
    // A leaf keyed in the last zone of the 64-bit space, and a leaf with
    // the keybits of a level-5 node (its range covers every zone).
    let last_zone = !(ZONE - 1);
    for (what, key, keybits, needle) in [
        ("last zone", last_zone, 30u8, "leaf for a zone past the end of the file system"),
        ("keybits 62", 0, 62, "keybits 62 invalid for a freemap_leaf"),
        ("keybits 63", 0, 63, "keybits 63 invalid for a freemap_leaf"),
    ] {
        let img = Image::new("small-iscsi");
        edit_leaf_bref(&img, |b| {
            b.key = key.into();
            b.keybits = keybits;
        });
        let r = run(&img);
        assert!(
            with_id(&r, "FREEMAP_STRUCT").iter().any(|f| f.detail.contains(needle)),
            "{what}: {}",
            dump(&r)
        );
        let unmarked = with_id(&r, "FREEMAP_UNMARKED");
        if keybits == 30 {
            // Zone 0 lost its leaf: the topology's blocks there look free.
            assert!(!unmarked.is_empty(), "{what}: {}", dump(&r));
            assert!(
                unmarked
                    .iter()
                    .all(|f| matches!(f.location, Place::Logical { zone: 0, leaf: ZoneLeaf::None, .. })),
                "{}",
                dump(&r)
            );
        } else {
            assert!(unmarked.is_empty(), "{what}: every zone under the bad leaf is unknown: {}", dump(&r));
        }
        assert_eq!(r.exit_code(), 4, "{what}");
        let v = dump_freemap_json(&img);
        assert_eq!(v["leaves"][0]["key"], key, "{what}");
        assert!(v["totals"]["bytes_free"].as_u64().unwrap() <= 10 << 30, "{what}: {}", v["totals"]);
    }
}

#[test]
fn huge_avail_counts_are_findings_without_overflow() {
    let img = Image::new("small-iscsi");
    edit_leaf(&img, |t| t.iter_mut().for_each(|e| e.avail = u32::MAX.into()));
    assert_struct(&img, "256 of 256 entries have an avail that differs");
    let v = dump_freemap_json(&img);
    assert_eq!(v["leaves"][0]["avail_sum"], 256 * u64::from(u32::MAX));
    assert_eq!(v["totals"]["avail_sum"], 256 * u64::from(u32::MAX));
}

#[test]
fn fsck_y_rebuilds_a_freemap_that_cannot_be_loaded() {
    crate::common::oracle::without(fsck_y_rebuilds_a_freemap_that_cannot_be_loaded_scenario);
}

/// [`fsck_y_rebuilds_a_freemap_that_cannot_be_loaded`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn fsck_y_rebuilds_a_freemap_that_cannot_be_loaded_with_reference_tools() {
    fsck_y_rebuilds_a_freemap_that_cannot_be_loaded_scenario();
}

fn fsck_y_rebuilds_a_freemap_that_cannot_be_loaded_scenario() {
    use crate::common::maint::{all_copies_clean, chunk_states, oracle_fsck, our_fsck_clean, spec_of};
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let (allocated, _) = chunk_states(&spec);
    // Damage every freemap leaf the best header reaches: its check code fails.
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    let leaves: Vec<u64> =
        fs.voldata.freemap_blockset.iter().filter(|b| b.radix() != 0).map(|b| b.offset()).collect();
    assert!(!leaves.is_empty());
    drop(fs);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    for off in &leaves {
        f.write_all_at(&[0x5a; 64], off + 200).unwrap();
    }
    drop(f);
    assert!(hammer2::write::alloc::Allocator::load(&hammer2::Hammer2::open_path(&spec).unwrap()).is_err());
    let damaged_copy = Hammer2::open_path(&spec).unwrap().copy;
    assert_eq!(bin(&["-n", &spec]).0, 4, "the damage went unnoticed");
    // -p does not rebuild a freemap (that is for -y).
    assert_eq!(bin(&["-p", &spec]).0, 4);
    let opts = hammer2::fsck::FsckOptions { repair: hammer2::fsck::RepairMode::Yes, ..Default::default() };
    let r = hammer2::fsck::fsck(&spec, &opts).unwrap();
    assert_eq!(r.exit_code(), 1, "{}", dump(&r));
    let left: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.problem.severity != hammer2::fsck::Severity::Info && !f.repaired)
        .map(|f| format!("{} {} {}", f.problem.id, f.location, f.detail))
        .collect();
    assert!(left.is_empty(), "fsck -y left:\n{}", left.join("\n"));
    our_fsck_clean(&spec);
    // The copy in use before the repair, now an older one, named the
    // damaged leaf: it was rewritten after the repair's commit, and every
    // copy checks clean, by both checkers (the reference one without -b).
    let fs = Hammer2::open_path(&spec).unwrap();
    let pos = fs.root_position();
    let c = &fs.headers[pos].copies[damaged_copy];
    assert!(c.is_valid() && c.mirror_tid() == Some(fs.voldata.mirror_tid.get()), "copy #{damaged_copy}");
    drop(fs);
    all_copies_clean(&spec);
    oracle_fsck(&spec);
    let (code, text) = bin(&["-n", "--all-copies", &spec]);
    assert_eq!(code, 0, "{text}");
    let (rebuilt, _) = chunk_states(&spec);
    assert!(rebuilt.is_subset(&allocated), "the rebuild allocated chunks the freemap never had");
    crate::common::oracle::makefs_mounts_and_bulkfrees(&img);
}
