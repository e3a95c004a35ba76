//! The freemap allocator against the fixtures and the reference tools:
//! what it loads agrees with the headers, what it hands out is free space
//! nobody can reach, and what it flushes is accepted by hammer2-utils'
//! fsck_hammer2 and `hammer2 freemap`, by our fsck, and by DragonFly's own
//! kernel code (makefs: mount without recovery, bulkfree without errors).
//!
//! Header writes here are a test-only stand-in for the flush layer: next
//! copy, mirror_tid + 1, freemap_tid = tid, allocator_free, freemap_blockset.

use hammer2::device::{Access, Device};
use hammer2::format::{Blockref, BlockrefType, VolumeData, NUM_VOLHDRS};
use hammer2::fsck::{fsck, FsckReport};
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::volume::CopyState;
use hammer2::write::alloc::{AllocError, Allocator, Released};
use hammer2::{CopyChoice, Hammer2};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;
use zerocopy::IntoBytes;

const CHUNK: u64 = 16384;
const SEG: u64 = 4 << 20;
const ZONE: u64 = 1 << 30;
const KINDS: [BlockrefType; 4] =
    [BlockrefType::Inode, BlockrefType::Data, BlockrefType::Indirect, BlockrefType::Dirent];

/// A reference tool: `$HAMMER2_REFTOOLS/name` or `../shared/reftools/name`.
fn reftool(name: &str) -> PathBuf {
    let p = crate::common::oracle::reftools().join(name);
    assert!(p.exists(), "reference tool {} missing (set HAMMER2_REFTOOLS)", p.display());
    p
}

fn run(tool: &str, args: &[&str]) -> (i32, String) {
    let o = Command::new(reftool(tool)).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

fn ref_fsck_passes(spec: &str) {
    if !crate::common::oracle::wanted() {
        return;
    }
    let (code, out) = run("fsck_hammer2", &["-q", spec]);
    assert_eq!(code, 0, "fsck_hammer2 -q {spec}:\n{out}");
}

/// Private copies of fixtures, as one device spec.
struct Scratch {
    _dir: tempfile::TempDir,
    spec: String,
}

fn scratch(names: &[&str]) -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<String> = names
        .iter()
        .map(|n| crate::common::scratch_copy(n, dir.path()).to_str().unwrap().to_string())
        .collect();
    Scratch { _dir: dir, spec: paths.join(":") }
}

fn load(spec: &str) -> Allocator {
    Allocator::load(&Hammer2::open_path(spec).unwrap()).unwrap()
}

/// Flushes `a` into `spec` and writes the next header copy of the root
/// volume. Returns the new freemap_blockset.
fn commit(spec: &str, a: &mut Allocator) -> [Blockref; 4] {
    let mut fs = Hammer2::open(Device::open(spec, Access::ReadWrite).unwrap(), CopyChoice::Best).unwrap();
    let tid = fs.voldata.mirror_tid.get() + 1;
    let set = a.flush(tid, &mut fs.device).unwrap();
    fs.device.sync().unwrap();
    let mut v: Box<VolumeData> = fs.voldata.clone();
    v.mirror_tid = tid.into();
    v.freemap_tid = tid.into();
    v.allocator_free = a.free_bytes().into();
    v.freemap_blockset = set;
    v.update_crcs();
    let root = fs.root_position();
    let copies = &fs.headers[root].copies;
    let next = (1..=NUM_VOLHDRS)
        .map(|k| (fs.copy + k) % NUM_VOLHDRS)
        .find(|&i| !matches!(copies[i].state, CopyState::Absent))
        .unwrap();
    let off = copies[next].offset;
    fs.device.volume_mut(root).write(off, v.as_bytes()).unwrap();
    fs.device.sync().unwrap();
    set
}

/// Indexes of the valid header copies of the root volume.
fn valid_copies(spec: &str) -> Vec<usize> {
    let fs = Hammer2::open_path(spec).unwrap();
    fs.headers[fs.root_position()].copies.iter().filter(|c| c.is_valid()).map(|c| c.index).collect()
}

/// Media `(offset, size)` reachable from every valid header copy: topology
/// and freemap, sorted.
fn reachable(spec: &str, root: Root) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for copy in valid_copies(spec) {
        let fs =
            Hammer2::open(Device::open(spec, Access::ReadOnly).unwrap(), CopyChoice::Index(copy)).unwrap();
        walk(&fs, root, WalkOptions::default(), &mut |v| {
            if v.bref.radix() != 0 {
                out.push((v.bref.offset(), v.bref.physical_size()));
            }
        })
        .unwrap();
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Sorted extents with a running maximum end, for overlap queries.
struct Extents {
    starts: Vec<u64>,
    max_end: Vec<u64>,
}

impl Extents {
    fn new(mut v: Vec<(u64, u64)>) -> Self {
        v.sort_unstable();
        let mut max_end = Vec::with_capacity(v.len());
        let mut m = 0;
        for &(s, len) in &v {
            m = m.max(s + len);
            max_end.push(m);
        }
        Extents { starts: v.iter().map(|e| e.0).collect(), max_end }
    }

    fn overlaps(&self, off: u64, len: u64) -> bool {
        let n = self.starts.partition_point(|&s| s < off + len);
        n > 0 && self.max_end[n - 1] > off
    }
}

fn chunks_of(off: u64, len: u64) -> impl Iterator<Item = u64> {
    (off / CHUNK..=(off + len - 1) / CHUNK).map(|c| c * CHUNK)
}

/// `n` allocations of mixed radixes and classes, checked for the basic
/// placement rules as they come.
fn allocate(a: &mut Allocator, fs: &Hammer2, n: usize) -> Vec<(u64, u64)> {
    let v = &fs.voldata;
    let lokey = (v.allocator_beg.get() + SEG - 1) & !(SEG - 1);
    (0..n)
        .map(|i| {
            let radix = 10 + (i * 7 % 11 % 7) as u8;
            let d = a.alloc(radix, KINDS[i % KINDS.len()]).unwrap();
            assert_eq!(d & 0x3f, u64::from(radix));
            let (off, len) = (d & !0x3f, 1u64 << radix);
            assert!(fs.device.map_logical(off, len).is_some(), "{d:#x} outside every volume");
            assert!(off % ZONE >= SEG, "{d:#x} in a zone's reserved segment");
            assert!(off >= lokey, "{d:#x} below allocator_beg's segment");
            assert!(off >= v.aux_end.get() || off + len <= v.boot_beg.get(), "{d:#x} in boot/aux");
            if len >= CHUNK {
                assert_eq!(off % len, 0, "{d:#x} not naturally aligned");
            } else {
                assert_eq!(off / CHUNK, (off + len - 1) / CHUNK, "{d:#x} crosses a 16 KiB chunk");
            }
            (off, len)
        })
        .collect()
}

fn assert_disjoint(blocks: &[(u64, u64)]) {
    let mut v = blocks.to_vec();
    v.sort_unstable();
    for w in v.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "allocations overlap: {:#x?} and {:#x?}", w[0], w[1]);
    }
}

/// Chunks our allocations touch that nothing reachable touches: what fsck
/// calls leaked and bulkfree stages.
fn leaked_chunks(blocks: &[(u64, u64)], reachable: &[(u64, u64)]) -> usize {
    let used: HashSet<u64> = reachable.iter().flat_map(|&(o, l)| chunks_of(o, l)).collect();
    let ours: BTreeSet<u64> = blocks.iter().flat_map(|&(o, l)| chunks_of(o, l)).collect();
    ours.iter().filter(|c| !used.contains(c)).count()
}

fn freemap_findings(r: &FsckReport) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.problem.id.code().starts_with("FREEMAP") || f.problem.id.code().starts_with("BREF"))
        .map(|f| format!("{} {}: {}", f.problem.id, f.location, f.detail))
        .collect()
}

/// Chunks our fsck reports leaked, asserting nothing else is wrong with
/// the freemap or any blockref.
fn fsck_leaked(spec: &str) -> usize {
    let r = fsck(spec, &Default::default()).unwrap();
    let found = freemap_findings(&r);
    if found.is_empty() {
        return 0;
    }
    assert_eq!(found.len(), 1, "{found:#?}");
    let prefix = format!("FREEMAP_LEAKED freemap (copy #{}): ", r.header_copy.unwrap());
    let rest = found[0].strip_prefix(&prefix).unwrap_or_else(|| panic!("{found:#?}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// `hammer2 freemap`: the two-bit state of each chunk asked about, from the
/// dump's entry lines (`offset nnnn.class linear= avail= word0 .. word7`).
fn dumped_states(spec: &str, chunks: &BTreeSet<u64>) -> Vec<(u64, u8)> {
    let (code, out) = run("hammer2", &["freemap", spec]);
    assert_eq!(code, 0, "{out}");
    let mut words = std::collections::HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 12 && f[2].starts_with("linear=") {
            let seg = u64::from_str_radix(f[0], 16).unwrap();
            let w: Vec<u64> = f[4..].iter().map(|x| u64::from_str_radix(x, 16).unwrap()).collect();
            words.insert(seg, w);
        }
    }
    chunks
        .iter()
        .map(|&c| {
            let w = words.get(&(c & !(SEG - 1))).unwrap_or_else(|| panic!("no entry for {c:#x} in:\n{out}"));
            let n = (c % SEG / CHUNK) as usize;
            (c, ((w[n / 32] >> (n % 32 * 2)) & 3) as u8)
        })
        .collect()
}

/// makefs (DragonFly's kernel code) mounts without recovery and bulkfrees
/// without errors; returns its statistics line values by name.
fn kernel_bulkfree(spec: &str) -> impl Fn(&str) -> u64 {
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = run("makefs", &["-t", "hammer2", "-o", "B", spec, empty.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no recovery needed"), "{out}");
    assert!(out.contains("bcleanup: clean"), "{out}");
    move |name: &str| {
        let line =
            out.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    }
}

#[test]
fn load_agrees_with_the_header() {
    for (name, spec) in crate::common::all_specs() {
        let fs = Hammer2::open_path(&spec).unwrap();
        let a = Allocator::load(&fs).unwrap();
        let v = &fs.voldata;
        assert_eq!(a.free_bytes(), v.allocator_free.get(), "{name}");
        // newfs counts [aux_end, roundup(allocator_beg, 4 MiB)) free; the
        // leaves (or hammer2_freemap_init for zones without one) do not.
        let lokey = (v.allocator_beg.get() + SEG - 1) & !(SEG - 1);
        assert_eq!(lokey - v.aux_end.get(), 4 << 20, "{name}");
        assert_eq!(a.free_bytes() - a.freemap_free_bytes(), lokey - v.aux_end.get(), "{name}");
        let leaves = if v.freemap_blockset[0].radix() == 0 { vec![] } else { vec![0] };
        assert_eq!(a.leaf_keys(), leaves, "{name}");
    }
}

#[test]
fn recovery_and_protection_change_nothing_on_consistent_media() {
    for name in ["varied", "pfs-snapshot"] {
        let spec = crate::common::fixture(name).to_str().unwrap().to_string();
        let fs = Hammer2::open_path(&spec).unwrap();
        let mut a = Allocator::load(&fs).unwrap();
        assert_eq!(a.protect_reachable(&fs).unwrap(), 0, "{name}: nothing referenced is marked free");
        let allocator_beg = fs.voldata.allocator_beg.get();
        let mut n = 0;
        walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
            if v.bref.radix() != 0 && v.bref.offset() >= allocator_beg {
                assert!(
                    !a.mark_allocated(v.bref.data_off.get(), v.bref.kind()).unwrap(),
                    "{name}: {}",
                    v.location
                );
                n += 1;
            }
        })
        .unwrap();
        assert!(n >= 10, "{name}: {n}");
        assert_eq!(a.free_bytes(), fs.voldata.allocator_free.get());
    }
}

#[test]
fn allocations_avoid_reserved_and_reachable_space() {
    for (name, spec) in [
        ("varied", crate::common::fixture("varied").to_str().unwrap().to_string()),
        ("newfs-10g", crate::common::fixture("newfs-10g").to_str().unwrap().to_string()),
        ("multivol", crate::common::multivol_spec()),
    ] {
        let fs = Hammer2::open_path(&spec).unwrap();
        let mut a = Allocator::load(&fs).unwrap();
        let before = (a.free_bytes(), a.freemap_free_bytes());
        let mut reach = reachable(&spec, Root::Topology);
        reach.extend(reachable(&spec, Root::Freemap));
        let reach = Extents::new(reach);
        let blocks = allocate(&mut a, &fs, 4000);
        for &(off, len) in &blocks {
            assert!(!reach.overlaps(off, len), "{name}: {off:#x}+{len:#x} overlaps reachable media");
        }
        assert_disjoint(&blocks);
        // Both counts drop by 16 KiB per chunk turned allocated.
        assert_eq!(before.0 - a.free_bytes(), before.1 - a.freemap_free_bytes(), "{name}");
        assert!(a.free_bytes() < before.0);
    }
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn commit_is_accepted_by_the_reference_tools() {
    let img = scratch(&["varied"]);
    let spec = img.spec.as_str();
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    let topology = reachable(spec, Root::Topology);
    // makefs leaves the old copies of rewritten blocks for bulkfree.
    let baseline = fsck_leaked(spec);
    assert_eq!(baseline, 46);
    let blocks = allocate(&mut a, &fs, 3000);
    // Release whole-chunk data blocks the topology references (as a commit
    // that stops referencing them would): staged, not free.
    let mut staged = BTreeSet::new();
    let mut released = 0;
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        let b = v.bref;
        if b.kind() == BlockrefType::Data && b.radix() == 16 && released < 40 {
            let free = a.free_bytes();
            if a.release(b.data_off.get()).unwrap() == Released::Staged {
                staged.extend(chunks_of(b.offset(), b.physical_size()));
                released += 1;
            }
            assert_eq!(a.free_bytes(), free, "staging does not change allocator_free");
            assert_eq!(a.chunk_state(b.offset()), Some(hammer2::freemap::ChunkState::PossiblyFree));
        }
    })
    .unwrap();
    assert_eq!(staged.len(), 160);
    drop(fs);
    let set = commit(spec, &mut a);
    assert_eq!(set[0].kind(), BlockrefType::FreemapLeaf);
    assert_eq!(set[0].offset(), 0x60000, "the zone-0 leaf rotates from set 0 to set 1");

    ref_fsck_passes(spec);
    let ours: BTreeSet<u64> = blocks.iter().flat_map(|&(o, l)| chunks_of(o, l)).collect();
    assert!(dumped_states(spec, &ours).iter().all(|&(_, s)| s == 3), "our allocations are 11 in the dump");
    assert!(dumped_states(spec, &staged).iter().all(|&(_, s)| s == 2), "released blocks are 10 in the dump");
    let leaked = leaked_chunks(&blocks, &topology);
    assert!(leaked > 1000, "{leaked}");
    assert_eq!(fsck_leaked(spec), baseline + leaked);

    if crate::common::oracle::wanted() {
        let stat = kernel_bulkfree(spec);
        assert_eq!(stat("ERR(00)->allocated"), 0);
        assert_eq!(stat("ERR(01)->allocated"), 0);
        assert_eq!(
            stat("transition->staged") as usize,
            baseline + leaked,
            "bulkfree stages exactly the unreferenced chunks"
        );
        assert_eq!(stat("staged->allocated") as usize, staged.len(), "and returns the still-referenced ones");
    }
    ref_fsck_passes(spec);
}

#[test]
fn nodes_above_the_leaves_are_accepted_and_reused() {
    crate::common::oracle::without(nodes_above_the_leaves_are_accepted_and_reused_scenario);
}

/// [`nodes_above_the_leaves_are_accepted_and_reused`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn nodes_above_the_leaves_are_accepted_and_reused_with_reference_tools() {
    nodes_above_the_leaves_are_accepted_and_reused_scenario();
}

fn nodes_above_the_leaves_are_accepted_and_reused_scenario() {
    let img = scratch(&["newfs-10g"]);
    let spec = img.spec.as_str();
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    let mut blocks = allocate(&mut a, &fs, 500);
    // Recovery of (pretend) blocks in zones 1 to 9 creates their leaves.
    for z in 1..10u64 {
        let off = z * ZONE + 3 * SEG;
        assert!(a.mark_allocated(off | 16, BlockrefType::Data).unwrap());
        assert!(!a.mark_allocated(off | 16, BlockrefType::Data).unwrap());
        blocks.push((off, 1 << 16));
    }
    assert_eq!(a.leaf_keys().len(), 10);
    drop(fs);
    let set = commit(spec, &mut a);
    assert_eq!(set[0].kind(), BlockrefType::FreemapNode, "10 leaves need a node");
    assert_eq!((set[0].keybits, set[0].key.get(), set[0].offset()), (38, 0, 0x20000));
    assert!(set[1..].iter().all(|b| b.kind() == BlockrefType::Empty));
    ref_fsck_passes(spec);
    assert_eq!(fsck_leaked(spec), leaked_chunks(&blocks, &[]));

    // A second commit touching zone 0 only: the node and that leaf move to
    // the next set, the other leaves stay where they are.
    let leaves_before = reachable(spec, Root::Freemap);
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    blocks.extend(allocate(&mut a, &fs, 10));
    drop(fs);
    let set = commit(spec, &mut a);
    assert_eq!(set[0].offset(), 0x70000, "node: set 1, level 2");
    let leaves_after = reachable(spec, Root::Freemap);
    let moved: Vec<_> = leaves_after.iter().filter(|e| !leaves_before.contains(e)).collect();
    assert_eq!(moved, vec![&(0x60000, 32768), &(0x70000, 32768)], "only the zone-0 leaf and the node");

    if crate::common::oracle::wanted() {
        let stat = kernel_bulkfree(spec);
        assert_eq!(stat("ERR(00)->allocated"), 0);
        assert_eq!(stat("ERR(01)->allocated"), 0);
        assert_eq!(stat("transition->staged") as usize, leaked_chunks(&blocks, &[]));
    }
    ref_fsck_passes(spec);
}

#[test]
fn multi_volume_commit() {
    crate::common::oracle::without(multi_volume_commit_scenario);
}

/// [`multi_volume_commit`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn multi_volume_commit_with_reference_tools() {
    multi_volume_commit_scenario();
}

fn multi_volume_commit_scenario() {
    let img = scratch(&["multivol-0", "multivol-1"]);
    let spec = img.spec.as_str();
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    let mut blocks = allocate(&mut a, &fs, 300);
    // Zones 3 and 4 lie on the second volume.
    for z in 1..5u64 {
        let off = z * ZONE + SEG;
        assert!(a.mark_allocated(off | 14, BlockrefType::Inode).unwrap());
        blocks.push((off, CHUNK));
    }
    assert!(a.mark_allocated((5 * ZONE) | 14, BlockrefType::Data).is_err(), "past the end");
    assert!(a.mark_allocated((3 * ZONE) | 14, BlockrefType::Data).is_err(), "reserved segment");
    drop(fs);
    let set = commit(spec, &mut a);
    assert_eq!(set[0].kind(), BlockrefType::FreemapNode, "5 leaves need a node");
    ref_fsck_passes(spec);
    assert_eq!(fsck_leaked(spec), leaked_chunks(&blocks, &reachable(spec, Root::Topology)));
    let leaves: Vec<u64> = reachable(spec, Root::Freemap).iter().map(|e| e.0).collect();
    assert_eq!(
        leaves,
        [0x10000, 0x20000, ZONE + 0x10000, 2 * ZONE + 0x10000, 3 * ZONE + 0x10000, 4 * ZONE + 0x10000]
    );
}

#[test]
fn rotation_never_overwrites_a_freemap_a_valid_copy_reaches() {
    crate::common::oracle::without(rotation_never_overwrites_a_freemap_a_valid_copy_reaches_scenario);
}

/// [`rotation_never_overwrites_a_freemap_a_valid_copy_reaches`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn rotation_never_overwrites_a_freemap_a_valid_copy_reaches_with_reference_tools() {
    rotation_never_overwrites_a_freemap_a_valid_copy_reaches_scenario();
}

fn rotation_never_overwrites_a_freemap_a_valid_copy_reaches_scenario() {
    let img = scratch(&["small-iscsi"]);
    let spec = img.spec.as_str();
    let mut slots = Vec::new();
    for _ in 0..10 {
        let protected: HashSet<u64> = reachable(spec, Root::Freemap).iter().map(|e| e.0).collect();
        let fs = Hammer2::open_path(spec).unwrap();
        let mut a = Allocator::load(&fs).unwrap();
        allocate(&mut a, &fs, 5);
        drop(fs);
        let set = commit(spec, &mut a);
        assert!(!protected.contains(&set[0].offset()), "{:#x} in {protected:#x?}", set[0].offset());
        slots.push(set[0].offset() / 0x10000);
    }
    assert_eq!(slots, [6, 11, 16, 21, 26, 31, 36, 1, 6, 11], "sets 1..7, then around");
    ref_fsck_passes(spec); // verifies the freemap under every header copy
}

#[test]
fn enospc_is_clean_and_leaves_the_allocator_usable() {
    crate::common::oracle::without(enospc_is_clean_and_leaves_the_allocator_usable_scenario);
}

/// [`enospc_is_clean_and_leaves_the_allocator_usable`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn enospc_is_clean_and_leaves_the_allocator_usable_with_reference_tools() {
    enospc_is_clean_and_leaves_the_allocator_usable_scenario();
}

fn enospc_is_clean_and_leaves_the_allocator_usable_scenario() {
    let img = scratch(&["newfs-1g"]);
    let spec = img.spec.as_str();
    let fs = Hammer2::open_path(spec).unwrap();
    let mut a = Allocator::load(&fs).unwrap();
    let difference = a.free_bytes() - a.freemap_free_bytes();
    let mut blocks = Vec::new();
    let err = loop {
        match a.alloc(16, BlockrefType::Data) {
            Ok(d) => blocks.push((d & !0x3f, 1u64 << 16)),
            Err(e) => break e,
        }
    };
    assert_eq!(err, AllocError::NoSpace { bytes: 1 << 16 });
    assert_eq!(a.freemap_free_bytes(), 0);
    assert_eq!(a.free_bytes(), difference, "only newfs's never-usable 4 MiB remains counted");
    assert_eq!(blocks.len() as u64, (1 << 30) / (1 << 16) - 0x4800000 / (1 << 16));
    assert_disjoint(&blocks);
    for radix in 10..=16 {
        assert_eq!(a.alloc(radix, BlockrefType::Inode), Err(AllocError::NoSpace { bytes: 1 << radix }));
    }
    // Freeing one fresh block makes room again, for any class.
    let (off, _) = blocks.pop().unwrap();
    assert_eq!(a.release(off | 16).unwrap(), Released::Freed);
    assert_eq!(a.free_bytes(), difference + (1 << 16));
    assert_eq!(a.alloc(14, BlockrefType::Inode).unwrap(), off | 14);
    blocks.push((off, CHUNK));
    drop(fs);
    commit(spec, &mut a);
    ref_fsck_passes(spec);
    assert_eq!(fsck_leaked(spec), leaked_chunks(&blocks, &[]));
    let a = load(spec);
    assert_eq!(a.free_bytes() - a.freemap_free_bytes(), difference, "the accounting survives the commit");
    if crate::common::oracle::wanted() {
        let stat = kernel_bulkfree(spec);
        assert_eq!(stat("ERR(00)->allocated"), 0);
        assert_eq!(stat("transition->staged") as usize, blocks.len() * 4 - 3);
    }
}

#[test]
fn corruption_and_foreign_devices_are_errors() {
    // A leaf whose bytes no longer match its check code.
    let img = scratch(&["small-iscsi"]);
    let spec = img.spec.as_str();
    let leaf = reachable(spec, Root::Freemap)[0].0;
    assert_eq!(leaf, 0x10000);
    {
        let mut fs = Hammer2::open(Device::open(spec, Access::ReadWrite).unwrap(), CopyChoice::Best).unwrap();
        let mut byte = fs.device.read(leaf + 100 * 128, 1).unwrap().to_vec();
        byte[0] ^= 1;
        fs.device.write(leaf + 100 * 128, &byte).unwrap();
        fs.device.sync().unwrap();
    }
    let fs = Hammer2::open_path(spec).unwrap();
    let err = Allocator::load(&fs).err().expect("a corrupt leaf is an error");
    assert!(err.to_string().contains("check code"), "{err}");

    // Flushing one file system's freemap into another's device.
    let mut a = load(crate::common::fixture("varied").to_str().unwrap());
    a.alloc(16, BlockrefType::Data).unwrap();
    let other = scratch(&["newfs-1g"]);
    let mut fs =
        Hammer2::open(Device::open(&other.spec, Access::ReadWrite).unwrap(), CopyChoice::Best).unwrap();
    let err = a.flush(0x12, &mut fs.device).expect_err("another file system");
    assert!(err.to_string().contains("root volume"), "{err}");
}

/// A session pins what only older header copies reach by walking them
/// where they differ from the newest tree (alloc/protect.rs): after the
/// kernel's bulkfree freed a removed file's blocks, which the older copies
/// still reach, filling the whole volume through the protected allocator
/// never hands out any block a valid header copy reaches.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn protection_of_older_copies_survives_a_kernel_bulkfree() {
    let dir = tempfile::tempdir().unwrap();
    // 8 GiB: four header copies.
    let img = dir.path().join("p.img");
    let out =
        Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(["-s", "8G"]).arg(&img).output().unwrap();
    assert!(out.status.success(), "newfs: {}", String::from_utf8_lossy(&out.stderr));
    let spec = img.to_str().unwrap().to_string();
    let host = dir.path().join("gone.bin");
    std::fs::write(&host, crate::common::content(7, 600_000)).unwrap();
    crate::common::editor::edit_ok(&[&spec, "put", host.to_str().unwrap(), "/gone.bin"]);
    crate::common::editor::edit_ok(&[&spec, "mkdir", "/kept"]);
    crate::common::editor::edit_ok(&[&spec, "rm", "/gone.bin"]);
    let empty = tempfile::tempdir().unwrap();
    // The first pass stages the unreferenced blocks, the second frees them.
    for _ in 0..2 {
        let (code, out) = run("makefs", &["-t", "hammer2", "-o", "B", &spec, empty.path().to_str().unwrap()]);
        assert_eq!(code, 0, "makefs -o B:\n{out}");
    }

    let fs = Hammer2::open_path(&spec).unwrap();
    let older = hammer2::write::alloc::bulkfree::older_root_sets(&fs);
    assert!(!older.is_empty());
    let mut a = Allocator::load(&fs).unwrap();
    let pinned = a.protect_blocksets(&fs, &older).unwrap();
    assert!(pinned >= 600_000 / CHUNK, "the freed blocks of gone.bin were not pinned ({pinned} chunks)");
    let reach = Extents::new(reachable(&spec, Root::Topology));
    let mut n = 0;
    for radix in [16u8, 14, 10] {
        loop {
            match a.alloc(radix, BlockrefType::Data) {
                Ok(d) => {
                    let (off, len) = (d & !0x3f, 1u64 << radix);
                    assert!(!reach.overlaps(off, len), "{d:#x} is reachable from a valid header copy");
                    n += 1;
                }
                Err(AllocError::NoSpace { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(n > 10_000, "only {n} allocations");
}
