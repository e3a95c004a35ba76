//! growfs offline: a single-volume image grown (truncate) then growfs:
//! sizes as the kernel sets them (compared with makefs -o G on a copy),
//! the header copies that now fit written valid, the new zones usable by
//! the allocator, and both checkers and makefs content with the result.

use crate::common::maint::{oracle_fsck, our_fsck_clean, spec_of};
use crate::common::oracle::makefs;
use crate::common::oracle::makefs_mounts_and_bulkfrees;
use hammer2::format::BlockrefType;
use hammer2::write::session::{Attrs, Session};
use hammer2::Hammer2;

fn grow_file(path: &std::path::Path, size: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(size).unwrap();
}

#[test]
fn growfs_to_the_image_size_matches_makefs_and_stays_clean() {
    crate::common::oracle::without(growfs_to_the_image_size_matches_makefs_and_stays_clean_scenario);
}

/// [`growfs_to_the_image_size_matches_makefs_and_stays_clean`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn growfs_to_the_image_size_matches_makefs_and_stays_clean_with_reference_tools() {
    growfs_to_the_image_size_matches_makefs_and_stays_clean_scenario();
}

fn growfs_to_the_image_size_matches_makefs_and_stays_clean_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let ours = crate::common::scratch_copy("newfs-1g", dir.path());
    grow_file(&ours, 5 << 30);
    let kernel = dir.path().join("kernel.img");
    crate::common::copy_sparse(&ours, &kernel);
    let spec = spec_of(&ours);

    let mut s = Session::open(&spec, false).unwrap();
    let free_before = s.fs.voldata.allocator_free.get();
    let r = s.growfs(None).unwrap();
    assert_eq!((r.old_size, r.new_size, r.zones), (1 << 30, 5 << 30, 4));
    assert_eq!(r.header_copies, vec![1, 2]);
    // Four new zones of 1 GiB, less each one's reserved 4 MiB segment
    // (where the header copies at 2 and 4 GiB lie too).
    assert_eq!(r.free_added, 4 * (1 << 30) - 4 * (4 << 20));
    let c = s.commit().unwrap();
    assert_eq!(c.allocator_free, free_before + r.free_added);
    // Growing to the same size again changes nothing.
    let again = s.growfs(None).unwrap();
    assert_eq!((again.old_size, again.new_size, again.zones), (5 << 30, 5 << 30, 0));
    drop(s);

    let a = Hammer2::open_path(&spec).unwrap();
    if crate::common::oracle::wanted() {
        let (ok, text) = makefs(&kernel, &["G"]);
        assert!(ok && text.contains("no recovery needed"), "makefs -o G: {text}");
        let b = Hammer2::open_path(&spec_of(&kernel)).unwrap();
        for (name, x, y) in [
            ("volu_size", a.voldata.volu_size.get(), b.voldata.volu_size.get()),
            ("total_size", a.voldata.total_size.get(), b.voldata.total_size.get()),
            ("allocator_size", a.voldata.allocator_size.get(), b.voldata.allocator_size.get()),
        ] {
            assert_eq!(x, y, "{name}: ours {x:#x}, makefs {y:#x}");
        }
    }
    // Every header copy that fits is valid.
    let valid = a.headers[0].copies.iter().filter(|c| c.is_valid()).count();
    assert_eq!(valid, 3, "header copies at 0, 2 and 4 GiB");
    drop(a);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);

    // The new zones are usable: an allocator filling zone 0 moves on past
    // the old end, never into a reserved segment or a header copy.
    let fs = Hammer2::open_path(&spec).unwrap();
    let mut alloc = hammer2::write::alloc::Allocator::load(&fs).unwrap();
    let mut beyond = 0;
    for _ in 0..(1 << 30) / 65536 + 64 {
        let off = alloc.alloc(16, BlockrefType::Data).unwrap() & !0x3f;
        assert!(off + 65536 <= 5 << 30);
        assert!(off % (1 << 30) >= 4 << 20, "{off:#x} in a reserved segment");
        assert!(
            ![2u64 << 30, 4 << 30].iter().any(|&h| off >= h && off < h + (4 << 20)),
            "{off:#x} on a header copy"
        );
        beyond += u64::from(off >= 1 << 30);
    }
    assert!(beyond > 0, "no allocation past the old end");
    drop(fs);

    // Files written after growfs; makefs mounts, bulkfrees and is content.
    let mut s = Session::open(&spec, false).unwrap();
    let data = s.pfs(None).unwrap();
    let bytes = crate::common::content(11, 1 << 20);
    s.create_file(&data, "/after-growfs.bin", Attrs::now(0o644), &bytes[..], bytes.len() as u64).unwrap();
    s.commit().unwrap();
    drop(s);
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&ours);
}

#[test]
fn growfs_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    let spec = spec_of(&img);
    let mut s = Session::open(&spec, false).unwrap();
    assert!(s.growfs(Some(2 << 30)).is_err(), "grew past the image's end");
    assert!(s.growfs(Some(512 << 20)).is_err(), "shrank");
    assert!(!s.is_dirty());
    drop(s);
    let multi = crate::common::multivol_spec();
    let mut s = Session::open(&multi, true).unwrap();
    assert!(s.growfs(None).is_err(), "multi-volume growfs");
}

#[test]
fn growing_frees_the_entries_past_the_old_end_of_a_partial_zone() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    let spec = spec_of(&img);
    grow_file(&img, 1536 << 20);
    let mut s = Session::open(&spec, false).unwrap();
    s.growfs(None).unwrap();
    s.commit().unwrap();
    drop(s);
    // The image grows again; before growfs, an allocator fills zone 0 and
    // creates zone 1's leaf for a 1.5 GiB file system: entries past 1.5 GiB
    // are marked allocated, as hammer2_freemap_init marks them.
    grow_file(&img, 3 << 30);
    let mut fs = Hammer2::open_path(&spec).unwrap();
    let mut alloc = hammer2::write::alloc::Allocator::load(&fs).unwrap();
    while alloc.alloc(16, BlockrefType::Data).unwrap() < 1 << 30 {}
    let past = (1536u64 << 20) + (64 << 20);
    assert_eq!(alloc.chunk_state(past), Some(hammer2::freemap::ChunkState::Allocated));
    let free = alloc.free_bytes();
    // What growfs does to the file system in memory, then the allocator's part.
    let v = &mut fs.voldata;
    v.volu_size = (3u64 << 30).into();
    v.total_size = (3u64 << 30).into();
    fs.headers[0].copies[fs.copy].data = Some(fs.voldata.clone());
    fs.device.set_extent(0, hammer2::device::Extent { loff: 0, size: 3 << 30 }).unwrap();
    let gained = alloc.grow(&fs);
    assert_eq!(
        alloc.chunk_state(past),
        Some(hammer2::freemap::ChunkState::Free),
        "the entry past the old end stays allocated"
    );
    // Zone 1's last 512 MiB, and zone 2 but its reserved segment.
    assert_eq!(gained, (512 << 20) + (1 << 30) - (4 << 20));
    assert_eq!(alloc.free_bytes(), free + gained);
}

#[test]
fn crash_at_any_point_of_growfs_leaves_the_old_or_the_new_size() {
    use crate::common::recording::{cut_points, open_recorded_into, CrashImage, Log, Rng};
    let dir = tempfile::tempdir().unwrap();
    let original = crate::common::scratch_copy("newfs-1g", dir.path());
    grow_file(&original, 5 << 30);
    let work = dir.path().join("work.img");
    crate::common::copy_sparse(&original, &work);
    let log = Log::default();
    let mut s = Session::from_fs(open_recorded_into(&work, &log), true).unwrap();
    let old_tid = s.fs.voldata.mirror_tid.get();
    s.growfs(None).unwrap();
    let c = s.commit().unwrap();
    drop(s);
    let events = log.events();
    let cuts = cut_points(&events, 3, &mut Rng::new(5));
    let mut img = CrashImage::new(&original, &dir.path().join("crash.img"));
    let mut seen = std::collections::BTreeSet::new();
    for cut in &cuts {
        let fs = img.open_at(&events, cut);
        let (tid, size) = (fs.voldata.mirror_tid.get(), fs.voldata.volu_size.get());
        drop(fs);
        seen.insert(tid);
        let bad = crate::common::maint::our_fsck_problems(img.spec());
        match tid {
            t if t == old_tid => {
                assert_eq!(size, 1 << 30, "{}", cut.name);
                // Header slots of the grown image not yet written read as
                // damaged copies, as before growfs; nothing else.
                assert!(
                    bad.iter().all(|b| b.starts_with("HDR_CORRUPT") || b.starts_with("HDR_TORN")),
                    "{}:\n{}",
                    cut.name,
                    bad.join("\n")
                );
            }
            t if t == c.tid => {
                assert_eq!(size, 5 << 30, "{}", cut.name);
                if cut.torn_slot.is_none() {
                    assert!(bad.is_empty(), "{}:\n{}", cut.name, bad.join("\n"));
                }
            }
            t => panic!("{}: mirror_tid {t:#x}", cut.name),
        }
    }
    assert_eq!(seen.len(), 2, "crash points reached only {seen:x?}");
}

/// growfs in the middle of a script, between uncommitted edits: one
/// transaction with the new size and both edits; the new header copies
/// hold the state as committed before the run; both checkers and makefs
/// accept the result.
#[test]
fn growfs_between_uncommitted_edits_of_one_script() {
    crate::common::oracle::without(growfs_between_uncommitted_edits_of_one_script_scenario);
}

/// [`growfs_between_uncommitted_edits_of_one_script`] with the reference tools' checks too.
#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn growfs_between_uncommitted_edits_of_one_script_with_reference_tools() {
    growfs_between_uncommitted_edits_of_one_script_scenario();
}

fn growfs_between_uncommitted_edits_of_one_script_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    grow_file(&img, 5 << 30);
    let spec = spec_of(&img);
    let tid = Hammer2::open_path(&spec).unwrap().voldata.mirror_tid.get();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, crate::common::content(41, 3 << 20)).unwrap();
    std::fs::write(&b, crate::common::content(42, 700_000)).unwrap();
    let script = format!("put {} /a; mkdir /d; growfs; put {} /d/b", a.display(), b.display());
    let run = |args: &[&str]| {
        let out = crate::common::editor::edit_ok(args);
        format!("{}{}", crate::common::editor::text(&out.stdout), crate::common::editor::text(&out.stderr))
    };
    let dry = run(&["-n", "-c", &script, &spec]);
    assert!(dry.contains("growfs from 0x40000000 to 0x140000000"), "{dry}");
    assert_eq!(Hammer2::open_path(&spec).unwrap().voldata.volu_size.get(), 1 << 30, "dry run wrote");
    run(&["-c", &script, &spec]);
    let fs = Hammer2::open_path(&spec).unwrap();
    assert_eq!(fs.voldata.volu_size.get(), 5 << 30);
    assert_eq!(fs.voldata.mirror_tid.get(), tid + 1, "one commit");
    let valid: Vec<u64> = fs.headers[0].copies.iter().filter_map(|c| c.mirror_tid()).collect();
    assert_eq!(valid.len(), 3, "header copies at 0, 2 and 4 GiB: {valid:?}");
    assert!(valid.iter().all(|&t| t == tid || t == tid + 1), "{valid:?}");
    drop(fs);
    let cat = |path: &str| crate::common::editor::edit_ok(&[&spec, "cat", path]).stdout;
    assert!(cat("/a") == crate::common::content(41, 3 << 20));
    assert!(cat("/d/b") == crate::common::content(42, 700_000));
    our_fsck_clean(&spec);
    oracle_fsck(&spec);
    makefs_mounts_and_bulkfrees(&img);
}
