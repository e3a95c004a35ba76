//! destroy / destroy-inum offline: a directory entry whose inode is
//! corrupt is cut out without reading the inode; fsck then finds nothing
//! but the orphaned blocks, which bulkfree reclaims, and no header copy
//! still reaches the corrupt inode.

use crate::common::maint::{all_copies_clean, chunk_states, oracle_fsck, our_fsck_problems, spec_of};
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::write::session::Session;
use hammer2::Hammer2;

/// Corrupts the inode of /dir/data.bin in `img` (its check code fails);
/// returns the offsets of the file's blocks and its inode number.
fn corrupt_data_bin(img: &std::path::Path) -> (Vec<u64>, u64) {
    use std::os::unix::fs::FileExt;
    let spec = spec_of(img);
    let (inode_off, data_offs, inum) = {
        let fs = Hammer2::open_path(&spec).unwrap();
        let tree = Tree::new(&fs);
        let ino = Pfs::find(&tree, "DATA").unwrap().resolve("/dir/data.bin").unwrap();
        let mut data = Vec::new();
        tree.scan_nodes(ino.blockset(), ino.bref.data_off.get(), 0, u64::MAX, &mut |n| {
            data.push(n.bref.offset());
            Ok(hammer2::read::walk::Flow::Continue)
        })
        .unwrap();
        (ino.bref.offset(), data, ino.inum())
    };
    assert!(!data_offs.is_empty());
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&[0xa5; 32], inode_off + 0x100).unwrap();
    (data_offs, inum)
}

#[test]
fn destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks() {
    crate::common::oracle::without(
        destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks_scenario,
    );
}

/// [`destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks_with_reference_tools() {
    destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks_scenario();
}

fn destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let (data_offs, inum) = corrupt_data_bin(&img);
    assert!(!our_fsck_problems(&spec).is_empty(), "the damage went unnoticed");

    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    assert!(s.remove(&data, "/dir/data.bin", false).is_err(), "rm read the corrupt inode without complaint");
    let e = s.destroy_entry(&data, "/dir/data.bin").unwrap();
    assert_eq!(e.inum, inum);
    s.destroy_inum(&data, inum).unwrap();
    assert!(s.destroy_inum(&data, inum).is_err(), "inode destroyed twice");
    // Before the commit, the header copy in use (soon an older one) reaches the corrupt inode.
    let older = s.fs.copy;
    s.commit().unwrap();
    assert!(s.synced_copies().contains(&older), "copy #{older} not rewritten: {:?}", s.synced_copies());
    drop(s);
    let left = our_fsck_problems(&spec);
    assert!(left.is_empty(), "after destroy, fsck finds:\n{}", left.join("\n"));
    // No header copy still reaches the corrupt inode: the older ones were
    // rewritten once the commit was durable. Both checkers look at them all.
    all_copies_clean(&spec);
    oracle_fsck(&spec);

    // The file's blocks are orphaned: allocated, unreachable. Bulkfree
    // stages them, and frees them once no older header copy reaches them.
    let (allocated, _) = chunk_states(&spec);
    let chunk = |o: &u64| o & !0x3fff;
    assert!(data_offs.iter().all(|o| allocated.contains(&chunk(o))), "{data_offs:x?} {allocated:x?}");
    let mut s = Session::open(&spec, false).unwrap();
    let mut freed = 0;
    for _ in 0..5 {
        freed += s.bulkfree().unwrap().freed;
        s.commit().unwrap();
    }
    drop(s);
    let (allocated, staged) = chunk_states(&spec);
    for o in &data_offs {
        assert!(!allocated.contains(&chunk(o)) && !staged.contains(&chunk(o)), "block {o:#x} not reclaimed");
    }
    assert!(freed as usize >= data_offs.len(), "freed {freed} chunks");
    assert!(our_fsck_problems(&spec).is_empty());
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}

/// A crash at any point of a destroy's commit and the rewrite of the older
/// header copies after it: the image always opens; its best copy is either
/// the state before (with its damage) or the repaired one, and then that
/// copy's tree is clean and the inode gone: at no moment does the best
/// valid copy reference a broken tree the repair had already left.
#[test]
fn crash_at_any_point_of_destroy_and_the_header_rewrite() {
    use crate::common::recording::{cut_points, open_recorded_into, CrashImage, Log, Rng};
    let dir = tempfile::tempdir().unwrap();
    let original = crate::common::scratch_copy("small-iscsi", dir.path());
    let (_, inum) = corrupt_data_bin(&original);
    let old_tid = Hammer2::open_path(&spec_of(&original)).unwrap().voldata.mirror_tid.get();
    let work = dir.path().join("work.img");
    crate::common::copy_sparse(&original, &work);
    let log = Log::default();
    let mut s = Session::from_fs(open_recorded_into(&work, &log), true).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    s.destroy_entry(&data, "/dir/data.bin").unwrap();
    s.destroy_inum(&data, inum).unwrap();
    let c = s.commit().unwrap();
    assert!(!s.synced_copies().is_empty());
    drop(s);
    let events = log.events();
    let cuts = cut_points(&events, 3, &mut Rng::new(9));
    // Header writes: the commit's, then one per older copy rewritten.
    let headers = cuts.iter().filter_map(|c| c.torn_slot).collect::<std::collections::BTreeSet<_>>();
    assert!(headers.len() >= 2, "torn header writes at slots {headers:?} only");
    let mut img = CrashImage::new(&original, &dir.path().join("crash.img"));
    let mut seen = std::collections::BTreeSet::new();
    for cut in &cuts {
        let fs = img.open_at(&events, cut);
        let tid = fs.voldata.mirror_tid.get();
        let gone = Pfs::find(&Tree::new(&fs), "DATA").unwrap().resolve("/dir/data.bin").is_err();
        drop(fs);
        seen.insert(tid);
        if tid == c.tid {
            assert!(gone, "{}: the destroyed entry is back", cut.name);
            // Only header copies torn by the cut (or still old) may be reported.
            let bad = our_fsck_problems(img.spec());
            assert!(bad.iter().all(|b| b.starts_with("HDR_")), "{}:\n{}", cut.name, bad.join("\n"));
        } else {
            assert_eq!(tid, old_tid, "{}", cut.name);
        }
    }
    assert_eq!(seen.len(), 2, "crash points reached only {seen:x?}");
}
