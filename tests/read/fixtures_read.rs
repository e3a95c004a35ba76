//! Ground truth: every fixture opens, every header copy that fits verifies,
//! the chosen copy matches the fixtures README, and every reachable check
//! code verifies.

use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::volume::{CopyState, Hammer2};

#[test]
fn every_header_copy_that_fits_verifies() {
    // (name, expected copies present)
    for (name, present) in [
        ("newfs-10g", 4),
        ("newfs-1g", 1),
        ("small-iscsi", 4),
        ("pfs-snapshot", 4),
        ("varied", 4),
        ("varied-zlib", 4),
        ("multivol-0", 2),
        ("multivol-1", 1),
    ] {
        let dev = hammer2::device::Device::open(
            crate::common::fixture(name).to_str().unwrap(),
            hammer2::device::Access::ReadOnly,
        )
        .unwrap();
        let h = hammer2::volume::read_headers(dev.volume(0));
        let valid = h.copies.iter().filter(|c| c.is_valid()).count();
        let absent = h.copies.iter().filter(|c| matches!(c.state, CopyState::Absent)).count();
        assert_eq!(valid, present, "{name}: {}", hammer2::volume::describe_copies(&h));
        assert_eq!(absent, 4 - present, "{name}");
    }
}

#[test]
fn chosen_copy_and_tids_match_the_readme() {
    // (spec name, best copy where the README names it, mirror_tid, freemap_tid)
    let expect = [
        ("newfs-10g", Some(0), 0x10, 0x10),
        ("newfs-1g", Some(0), 0x10, 0x10),
        ("small-iscsi", None, 0x11, 0x11),
        ("pfs-snapshot", None, 0x13, 0x13),
        ("varied", Some(1), 0x11, 0x11),
        ("varied-zlib", None, 0x11, 0x11),
        ("multivol", Some(0), 0x10, 0x10),
    ];
    let specs = crate::common::all_specs();
    for (name, copy, mirror, fmap) in expect {
        let spec = &specs.iter().find(|(n, _)| n == name).unwrap().1;
        let fs = Hammer2::open_path(spec).unwrap();
        assert_eq!(fs.voldata.mirror_tid.get(), mirror, "{name} mirror_tid");
        assert_eq!(fs.voldata.freemap_tid.get(), fmap, "{name} freemap_tid");
        if let Some(copy) = copy {
            assert_eq!(fs.copy, copy, "{name} best copy");
        }
        // The chosen copy is the valid one with the highest mirror_tid.
        let root = &fs.headers[fs.root_position()];
        let max = root.copies.iter().filter(|c| c.is_valid()).filter_map(|c| c.mirror_tid()).max();
        assert_eq!(Some(fs.voldata.mirror_tid.get()), max, "{name}");
    }
}

#[test]
fn newfs_10g_layout_facts() {
    let fs = Hammer2::open_path(crate::common::fixture("newfs-10g").to_str().unwrap()).unwrap();
    let v = &fs.voldata;
    assert_eq!(v.version.get(), 2);
    assert_eq!(v.allocator_free.get(), 0x2_6980_0000);
    assert_eq!((v.boot_beg.get(), v.boot_end.get()), (0x40_0000, 0x440_0000));
    assert_eq!(v.aux_end.get(), 0x1440_0000);
    let mut inodes = 0;
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |vis| {
        if vis.bref.kind() == hammer2::format::BlockrefType::Inode {
            inodes += 1;
        }
    })
    .unwrap();
    assert_eq!(inodes, 3, "SUPROOT, LOCAL and DATA");
}

#[test]
fn multivol_set_maps_both_volumes() {
    let fs = Hammer2::open_path(&crate::common::multivol_spec()).unwrap();
    assert_eq!(fs.voldata.nvolumes, 2);
    assert_eq!(fs.voldata.volu_loff[1].get(), 0xc000_0000);
    assert_eq!(fs.device.logical_size(), 5 << 30);
    assert_eq!(fs.device.map_logical(0xc000_0000 + 4096, 16), Some((1, 4096)));
}

#[test]
fn every_reachable_check_code_verifies() {
    for (name, spec) in crate::common::all_specs() {
        let fs = Hammer2::open_path(&spec).unwrap();
        for root in [Root::Topology, Root::Freemap] {
            let mut errors = Vec::new();
            let stats = walk(&fs, root, WalkOptions::default(), &mut |v| {
                if let Some(e) = &v.error {
                    errors.push(e.to_string());
                }
            })
            .unwrap();
            assert!(errors.is_empty(), "{name} {root:?}: {} errors, first: {}", errors.len(), errors[0]);
            eprintln!("{name} {root:?}: {stats:?}");
            if root == Root::Topology {
                assert!(stats.verified >= 3, "{name}: {stats:?}");
            }
        }
    }
}

/// Decodes every compressed data block of an image: (method, sha256 of output).
fn decoded_blocks(spec: &str) -> Vec<(hammer2::format::CompMethod, [u8; 32])> {
    use hammer2::format::{BlockrefType, CompMethod};
    use sha2::Digest;
    let fs = Hammer2::open_path(spec).unwrap();
    let mut out = Vec::new();
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        let b = v.bref;
        if b.kind() != BlockrefType::Data {
            return;
        }
        let logical = 1usize << b.keybits.min(16);
        let media = v.media.expect("data blocks have media");
        let decoded = match b.comp_method() {
            CompMethod::Lz4 => hammer2::format::compress::lz4_decompress(media, logical).unwrap(),
            CompMethod::Zlib => hammer2::format::compress::zlib_decompress(media, logical).unwrap(),
            _ => return,
        };
        assert!(decoded.len() <= logical);
        out.push((b.comp_method(), sha2::Sha256::digest(&decoded).into()));
    })
    .unwrap();
    out.sort_by_key(|(_, h)| *h);
    out
}

#[test]
fn lz4_and_zlib_blocks_decode_to_the_same_content() {
    use hammer2::format::CompMethod;
    let lz4 = decoded_blocks(crate::common::fixture("varied").to_str().unwrap());
    let zlib = decoded_blocks(crate::common::fixture("varied-zlib").to_str().unwrap());
    assert!(!lz4.is_empty());
    assert!(lz4.iter().all(|(m, _)| *m == CompMethod::Lz4));
    assert!(zlib.iter().all(|(m, _)| *m == CompMethod::Zlib));
    let hashes = |v: &[(CompMethod, [u8; 32])]| v.iter().map(|(_, h)| *h).collect::<Vec<_>>();
    assert_eq!(hashes(&lz4), hashes(&zlib), "same files, different codecs");
}
