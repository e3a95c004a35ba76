//! destroy / destroy-inum offline: a directory entry whose inode is
//! corrupt is cut out without reading the inode; fsck then finds nothing
//! but the orphaned blocks, which bulkfree reclaims, and no header copy
//! still reaches the corrupt inode.

mod common;

use common::maint::{all_copies_clean, chunk_states, oracle_fsck, our_fsck_problems, spec_of};
use common::oracle::makefs_mounts_and_bulkfrees;
use hammer2::fsops::Session;
use hammer2::pfs::Pfs;
use hammer2::tree::Tree;
use hammer2::Hammer2;

#[test]
fn destroy_cuts_out_a_corrupt_inode_and_bulkfree_reclaims_its_blocks() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    // Corrupt the inode of /dir/data.bin (its check code fails).
    let (inode_off, data_offs, inum) = {
        let fs = Hammer2::open_path(&spec).unwrap();
        let tree = Tree::new(&fs);
        let ino = Pfs::find(&tree, "DATA").unwrap().resolve("/dir/data.bin").unwrap();
        let mut data = Vec::new();
        tree.scan_nodes(ino.blockset(), ino.bref.data_off.get(), 0, u64::MAX, &mut |n| {
            data.push(n.bref.offset());
            Ok(hammer2::walk::Flow::Continue)
        })
        .unwrap();
        (ino.bref.offset(), data, ino.inum())
    };
    assert!(!data_offs.is_empty());
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0xa5; 32], inode_off + 0x100).unwrap();
    drop(f);
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
