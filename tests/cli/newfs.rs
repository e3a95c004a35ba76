//! newfs_hammer2: layouts match the reference images field by field, every
//! layout we make reads back clean, images stay sparse, old headers do not
//! survive, and bad arguments write nothing.

use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::volume::{read_headers, CopyState, Hammer2};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn newfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_newfs_hammer2")).args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "newfs failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    std::fs::File::open(path).unwrap().read_exact_at(&mut buf, off).unwrap();
    buf
}

fn mask(buf: &mut [u8], ranges: &[(usize, usize)]) {
    for &(a, b) in ranges {
        buf[a..b].fill(0);
    }
}

/// Header bytes with identity and its consequences masked: fsid, the CRCs,
/// and the super-root blockref's check value (it hashes the inode's times/ids).
fn header_for_compare(path: &Path, off: u64) -> Vec<u8> {
    let mut h = read(path, off, 65536);
    mask(&mut h, &[(0x40, 0x50), (0x1f8, 0x200), (0x240, 0x248), (0xfffc, 0x10000)]);
    h
}

/// The inode block with times, PFS ids and blockref check values masked.
fn inodes_for_compare(path: &Path, base: u64, n: usize) -> Vec<u8> {
    let mut b = read(path, base, n * 1024);
    for i in 0..n {
        let o = i * 1024;
        mask(&mut b, &[(o + 0x10, o + 0x30), (o + 0x90, o + 0xb0)]);
        for slot in 0..4 {
            let r = o + 0x200 + slot * 128;
            mask(&mut b, &[(r + 0x40, r + 0x48)]);
        }
    }
    b
}

fn assert_reads_clean(spec: &str) -> Hammer2 {
    let fs = Hammer2::open_path(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let mut inodes = 0;
    let mut errors = Vec::new();
    walk(&fs, Root::Topology, WalkOptions::default(), &mut |v| {
        inodes += usize::from(v.bref.kind() == hammer2::format::BlockrefType::Inode);
        if let Some(e) = &v.error {
            errors.push(e.to_string());
        }
    })
    .unwrap();
    assert!(errors.is_empty(), "{spec}: {errors:?}");
    assert_eq!(inodes, 1 + fs_labels(&fs), "{spec}");
    fs
}

fn fs_labels(fs: &Hammer2) -> usize {
    let data = fs.device.read(fs.voldata.sroot_blockset[0].offset(), 1024).unwrap();
    let ip = hammer2::format::InodeData::from_bytes(data).unwrap();
    ip.blockset().iter().filter(|b| b.kind() == hammer2::format::BlockrefType::Inode).count()
}

fn allocated_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn matches_the_reference_images_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    for (name, size, base) in [("newfs-10g", "10G", 0x1440_0000u64), ("newfs-1g", "1G", 0x440_0000)] {
        let ours = dir.path().join(format!("{name}.img"));
        ok(newfs(&["-q", "-L", "DATA", "-s", size, s(&ours)]));
        let theirs = crate::common::fixture(name);
        let copies = if name == "newfs-1g" { 1 } else { 4 };
        for n in 0..copies {
            let off = n * (2u64 << 30);
            assert!(
                header_for_compare(&ours, off) == header_for_compare(&theirs, off),
                "{name} header copy {n}"
            );
        }
        assert!(inodes_for_compare(&ours, base, 3) == inodes_for_compare(&theirs, base, 3), "{name} inodes");
        // Everything past the inodes in their 64 KiB block is zero in both.
        assert_eq!(read(&ours, base + 3072, 65536 - 3072), read(&theirs, base + 3072, 65536 - 3072));
    }
    let v0 = dir.path().join("mv0.img");
    let v1 = dir.path().join("mv1.img");
    ok(newfs(&["-q", "-s", "3G:2G", s(&v0), s(&v1)]));
    for (ours, theirs) in
        [(&v0, crate::common::fixture("multivol-0")), (&v1, crate::common::fixture("multivol-1"))]
    {
        assert!(header_for_compare(ours, 0) == header_for_compare(&theirs, 0), "{}", theirs.display());
    }
    assert!(
        inodes_for_compare(&v0, 0x1440_0000, 3)
            == inodes_for_compare(&crate::common::fixture("multivol-0"), 0x1440_0000, 3)
    );
}

#[test]
fn every_layout_reads_back_clean_and_stays_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], usize)] = &[
        (&["-s", "1G"], 1),
        (&["-s", "10G", "-L", "none"], 1),
        (&["-s", "2T", "-L", "ROOT", "-L", "HOME", "-L", "BUILD"], 1),
        (&["-s", "24M", "-L", "BOOT"], 1),
        (&["-s", "3G:2G"], 2),
        (&["-s", "2G:1G:700M", "-C", "sha192", "--comp", "zlib"], 3),
        (&["-s", "4G", "-V", "1"], 1),
    ];
    for (i, (args, nvol)) in cases.iter().enumerate() {
        let paths: Vec<PathBuf> = (0..*nvol).map(|v| dir.path().join(format!("c{i}v{v}.img"))).collect();
        let mut argv: Vec<&str> = vec!["-q"];
        argv.extend_from_slice(args);
        argv.extend(paths.iter().map(|p| s(p)));
        ok(newfs(&argv));
        let spec = paths.iter().map(|p| s(p)).collect::<Vec<_>>().join(":");
        let fs = assert_reads_clean(&spec);
        assert_eq!(fs.voldata.nvolumes as usize, if args.contains(&"1") { 0 } else { *nvol }, "{args:?}");
        for p in &paths {
            let used = allocated_bytes(p);
            assert!(used < 1 << 20, "{args:?}: {} holds {used} bytes", p.display());
        }
        for p in paths {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn pfs_roots_carry_labels_and_requested_methods() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("m.img");
    ok(newfs(&["-q", "-s", "2G", "-L", "ROOT", "-C", "iscsi32", "--comp", "zlib", s(&img)]));
    let fs = Hammer2::open_path(s(&img)).unwrap();
    let sroot = hammer2::format::InodeData::from_bytes(
        fs.device.read(fs.voldata.sroot_blockset[0].offset(), 1024).unwrap(),
    )
    .unwrap()
    .to_owned();
    let mut names = Vec::new();
    for b in sroot.blockset().iter().filter(|b| b.kind() == hammer2::format::BlockrefType::Inode) {
        let ip = hammer2::format::InodeData::from_bytes(fs.device.read(b.offset(), 1024).unwrap()).unwrap();
        let name = String::from_utf8(ip.name().to_vec()).unwrap();
        assert_eq!(
            b.key.get(),
            hammer2::format::dirhash::dirhash(name.as_bytes()),
            "{name}: key is the name's hash"
        );
        assert_eq!(ip.meta.check(), hammer2::format::CheckMethod::Iscsi32);
        assert_eq!(ip.meta.comp(), hammer2::format::CompMethod::Zlib);
        assert!(ip.meta.is_pfsroot());
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["LOCAL", "ROOT"]);
}

#[test]
fn reformatting_leaves_no_old_header_copy() {
    let dir = tempfile::tempdir().unwrap();
    // varied.img's best copy is newer (mirror_tid 0x11) than what newfs writes.
    let img = crate::common::scratch_copy("varied", dir.path());
    let refused = newfs(&["-q", s(&img)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds a HAMMER2 file system"));
    // Shrink to 3 GiB: copies #2 and #3 lie past the new volume and must go.
    ok(newfs(&["-q", "-f", "-s", "3G", s(&img)]));
    let fs = Hammer2::open_path(s(&img)).unwrap();
    assert_eq!(fs.voldata.mirror_tid.get(), 0x10);
    assert_eq!(fs.voldata.volu_size.get(), 3 << 30);
    let dev = hammer2::device::Device::open(s(&img), hammer2::device::Access::ReadOnly).unwrap();
    let h = read_headers(dev.volume(0));
    for c in &h.copies {
        match c.index {
            0 | 1 => assert!(c.is_valid(), "copy {}", c.index),
            _ => {
                assert!(matches!(&c.state, CopyState::Invalid(_)), "copy {} survived", c.index);
                assert!(c.data.as_ref().unwrap().magic.get() == 0, "copy {} not wiped", c.index);
            }
        }
        if let Some(d) = c.data.as_ref().filter(|_| c.is_valid()) {
            assert_eq!(d.fsid, fs.voldata.fsid, "copy {} is from the old file system", c.index);
        }
    }
}

#[test]
fn bad_arguments_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("b.img");
    std::fs::File::create(&img).unwrap().set_len(1 << 30).unwrap();
    let before = allocated_bytes(&img);
    let cases: &[(&[&str], &str)] = &[
        (&["-s", "16M"], "too small"),
        (&["-s", "2G"], "larger than the device"),
        (&["-b", "5M"], "multiple of 8 MiB"),
        (&["-r", "2G"], "multiple of 8 MiB"),
        (&["-V", "3"], "unsupported"),
        (&["-L", "A", "-L", "B", "-L", "C", "-L", "D"], "at most 3 labels"),
    ];
    for (args, want) in cases {
        let mut argv = args.to_vec();
        argv.push(s(&img));
        let out = newfs(&argv);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("newfs_hammer2: "), "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(allocated_bytes(&img), before, "{args:?} wrote something");
    }
    // Usage errors exit 2 (cli_ux.rs has more).
    assert_eq!(newfs(&[]).status.code(), Some(2));
    assert_eq!(newfs(&["-s", "1G:1G", s(&img)]).status.code(), Some(2));
    assert_eq!(newfs(&["-C", "md5", s(&img)]).status.code(), Some(2));
    // A missing file without -s, a directory, an unwritable file.
    let out = newfs(&[s(&dir.path().join("missing.img"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = newfs(&[s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let out = newfs(&["-f", "/proc/version"]);
    assert_eq!(out.status.code(), Some(1));
    // Too many volumes.
    let many: Vec<PathBuf> = (0..65).map(|i| dir.path().join(format!("v{i}"))).collect();
    let mut argv = vec!["-n", "-s", "1G"];
    argv.extend(many.iter().map(|p| s(p)));
    let out = newfs(&argv);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("65 volumes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dry_run_writes_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("dry.img");
    let out = ok(newfs(&["-n", "--json", "-s", "10G", s(&img)]));
    assert!(!img.exists());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["layout"]["free_size"], 0x2_6980_0000u64);
    assert_eq!(v["layout"]["labels"], serde_json::json!(["LOCAL", "DATA"]));
}

#[test]
fn a_name_with_a_colon_is_one_volume() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("p:q.img");
    let out = ok(newfs(&["-q", "-s", "1G", s(&img)]));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 30);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [std::ffi::OsString::from("p:q.img")], "one file, named as given");
    let fs = assert_reads_clean(s(&img));
    assert_eq!(fs.voldata.nvolumes, 1);
    // Volumes come as separate arguments; a ':' never splits one.
    let out =
        ok(newfs(&["-n", "--json", "-s", "1G", &format!("{}:{}", s(&img), s(&dir.path().join("r.img")))]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn a_directory_or_fifo_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils) is needed").success());
    for (p, want) in [(dir.path(), "is a directory"), (fifo.as_path(), "is a FIFO")] {
        let out = newfs(&["-f", s(p)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{}: {want}", s(p))), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
#[ignore = "needs root and loop devices"]
fn a_mounted_image_is_refused_through_its_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB: large enough for a HAMMER2 layout, so newfs gets as far as opening it.
    let lm = crate::common::loopdev::LoopMount::ext2(dir.path());
    let img = lm.img.clone();
    let before = read(&img, 0, 4096);

    let canon = std::fs::canonicalize(&lm.mountpoint).unwrap();
    let at = hammer2::device::mounted_at(&img).expect("the image is mounted through its loop device");
    assert_eq!(Path::new(&at), canon);
    assert_eq!(
        hammer2::device::mounted_at(Path::new(&lm.lo.dev)).as_deref().map(Path::new),
        Some(canon.as_path())
    );

    // Neither the image nor its loop device is written, even with -f.
    for target in [s(&img), lm.lo.dev.as_str()] {
        let out = newfs(&["-f", target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {err}");
        assert!(err.contains("is mounted on"), "{target}: {err}");
    }
    assert_eq!(read(&img, 0, 4096), before, "nothing written");

    // A plain file that nothing mounts is not mounted.
    let f = dir.path().join("plain.img");
    std::fs::write(&f, b"x").unwrap();
    assert!(hammer2::device::mounted_at(&f).is_none());
    drop(lm);
    assert!(hammer2::device::mounted_at(&img).is_none(), "unmounted and detached");
}
