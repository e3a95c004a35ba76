//! setcomp / setcheck offline: the inode fields as the kernel's
//! `hammer2_ioctl_inode_set` leaves them (compared with makefs `-o
//! I=setcomp`), recursion, and `--rewrite` re-encoding existing data blocks
//! without changing what the files hold.

use crate::common::maint::{oracle_fsck, our_fsck_clean, spec_of, twin_copies};
use crate::common::model::snapshot_pfs;
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use crate::common::oracle::{makefs, makefs_read};
use hammer2::format::{BlockrefType, CheckMethod, CompMethod};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use hammer2::write::session::{parse_check, parse_comp, Session};
use hammer2::Hammer2;

/// (comp_algo, check_algo) of `path` in DATA.
fn algos(spec: &str, path: &str) -> (u8, u8) {
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let ino = Pfs::find(&tree, "DATA").unwrap().resolve(path).unwrap();
    (ino.data.meta.comp_algo, ino.data.meta.check_algo)
}

/// The methods byte of every DATA blockref below `path` in DATA.
fn data_methods(spec: &str, path: &str) -> Vec<u8> {
    let fs = Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let ino = Pfs::find(&tree, "DATA").unwrap().resolve(path).unwrap();
    let mut out = Vec::new();
    tree.scan_nodes(ino.blockset(), ino.bref.data_off.get(), 0, u64::MAX, &mut |n| {
        if n.bref.kind() == BlockrefType::Data {
            out.push(n.bref.methods);
        }
        Ok(hammer2::read::walk::Flow::Continue)
    })
    .unwrap();
    out
}

#[test]
fn setcomp_matches_makefs() {
    crate::common::oracle::without(setcomp_matches_makefs_scenario);
}

/// [`setcomp_matches_makefs`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn setcomp_matches_makefs_with_reference_tools() {
    setcomp_matches_makefs_scenario();
}

fn setcomp_matches_makefs_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, kernel, ours_spec, kernel_spec) = twin_copies("small-iscsi", dir.path());
    let mut s = Session::open(&ours_spec, false).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    let r = s.set_methods(&data, "/dir", parse_comp("zlib:9").unwrap(), false, false).unwrap();
    assert_eq!(r.inodes, 1);
    s.commit().unwrap();
    drop(s);
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&kernel, &["I=setcomp:/dir:zlib:9"]);
        assert!(ok && text.contains("no recovery needed"), "makefs setcomp: {text}");
        assert_eq!(algos(&ours_spec, "/dir"), algos(&kernel_spec, "/dir"));
    }
    assert_eq!(algos(&ours_spec, "/dir").0, 3 | (9 << 4));
    // Not recursive: the file below keeps its methods, in both.
    if crate::common::oracle::wanted() {
        assert_eq!(algos(&ours_spec, "/dir/data.bin"), algos(&kernel_spec, "/dir/data.bin"));
    }
    our_fsck_clean(&ours_spec);
    oracle_fsck(&ours_spec);
    makefs_mounts_and_bulkfrees(&ours);
}

#[test]
fn recursive_rewrite_reencodes_every_block_and_keeps_contents() {
    crate::common::oracle::without(recursive_rewrite_reencodes_every_block_and_keeps_contents_scenario);
}

/// [`recursive_rewrite_reencodes_every_block_and_keeps_contents`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn recursive_rewrite_reencodes_every_block_and_keeps_contents_with_reference_tools() {
    recursive_rewrite_reencodes_every_block_and_keeps_contents_scenario();
}

fn recursive_rewrite_reencodes_every_block_and_keeps_contents_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("small-iscsi", dir.path());
    let spec = spec_of(&img);
    let before = snapshot_pfs(&spec, Some("DATA")).unwrap();
    let old = data_methods(&spec, "/dir/data.bin");
    assert!(!old.is_empty() && old.iter().all(|m| m >> 4 == u8::from(CheckMethod::Iscsi32)));

    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(Some("DATA")).unwrap();
    let r = s.set_methods(&data, "/", parse_check("xxhash64").unwrap(), true, true).unwrap();
    assert!(r.inodes >= 3 && r.blocks as usize == old.len(), "{r:?}");
    let r = s.set_methods(&data, "/", parse_comp("lz4").unwrap(), true, true).unwrap();
    assert!(r.inodes >= 3, "{r:?}");
    s.commit().unwrap();
    drop(s);
    let new = data_methods(&spec, "/dir/data.bin");
    assert_eq!(new.len(), old.len());
    for m in &new {
        assert_eq!(m >> 4, u8::from(CheckMethod::Xxhash64));
        assert!([CompMethod::Lz4, CompMethod::None].contains(&CompMethod::from(m & 15)));
    }
    assert_eq!(algos(&spec, "/dir/data.bin"), (2, 3));
    assert_eq!(snapshot_pfs(&spec, Some("DATA")).unwrap(), before);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    let want = crate::common::model::read_path(&spec, Some("DATA"), "/dir/data.bin").unwrap();
    if crate::common::oracle::wanted() {
        assert_eq!(makefs_read(&img, None, "/dir/data.bin"), want);
    }
}

#[test]
fn method_names_follow_hammer2() {
    assert!(matches!(parse_comp("zlib:9").unwrap(), hammer2::write::session::Methods::Comp(0x93)));
    assert!(matches!(parse_comp("lz4").unwrap(), hammer2::write::session::Methods::Comp(2)));
    assert!(parse_comp("lz4:3").is_err(), "lz4 has no levels");
    assert!(parse_comp("zlib:10").is_err());
    assert!(parse_comp("zstd").is_err());
    assert!(matches!(parse_check("crc32").unwrap(), hammer2::write::session::Methods::Check(2)));
    assert!(parse_check("md5").is_err());
}
