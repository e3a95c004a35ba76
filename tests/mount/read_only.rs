//! Read-only mounts: every fixture and every PFS, seen through the kernel,
//! against the image (the library's reader) and against `hammer2_edit get`.

use crate::common::{self, hosttree};
use crate::guard::{is_mounted, require_fuse, Mounted, MOUNT};
use hammer2::format::BlockrefType;
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::Tree;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// The PFS labels of `spec`.
fn labels(spec: &str) -> Vec<String> {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    Pfs::list(&tree).unwrap().iter().map(|p| p.name()).collect()
}

/// Every entry's st_ino is its HAMMER2 inode number.
fn inode_numbers_match(dir: &Path, spec: &str, label: &str) {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::find(&tree, label).unwrap();
    for (rel, m) in hosttree::host_entries(dir) {
        let ino = pfs.resolve(rel.to_str().unwrap()).unwrap();
        assert_eq!(m.ino(), ino.inum(), "{label}:{}: st_ino", rel.display());
    }
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3 and root"]
fn every_fixture_and_pfs_matches_the_image_and_get() {
    require_fuse();
    let mut mounted = 0;
    for (name, spec) in common::all_specs() {
        for label in labels(&spec) {
            let m = Mounted::new(&format!("{spec}@{label}"), &[]);
            // Type, mode, owner, mtime, size, contents, symlink targets,
            // device numbers, hard links, and nothing more or less.
            hosttree::compare_with_image(&m.dir, &spec, Some(&label), "/");
            // The same files as `get` extracts them.
            hosttree::compare_extracted(&m.dir, &spec, Some(&label), "/");
            inode_numbers_match(&m.dir, &spec, &label);
            let st = std::fs::metadata(&m.dir).unwrap();
            assert!(st.is_dir(), "{name}@{label}: root");
            let status = m.unmount();
            assert!(status.success(), "{name}@{label}: hammer2_mount exited with {status}");
            mounted += 1;
        }
    }
    assert!(mounted >= 10, "only {mounted} PFSs mounted");
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3 and root"]
fn reads_at_any_offset_and_hard_links_share_st_ino() {
    let spec = common::fixture("varied").display().to_string();
    let m = Mounted::new(&spec, &[]);
    let fs = hammer2::Hammer2::open_path(&spec).unwrap();
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).unwrap();
    for name in ["big-40m.bin", "sparse-hole.bin", "mixed-5m.bin", "just-over-512.bin", "hello.txt"] {
        let mut whole = Vec::new();
        hammer2::read::view::FsView::read(&pfs, pfs.resolve(name).unwrap().inum(), &mut whole).unwrap();
        let f = std::fs::File::open(m.dir.join(name)).unwrap();
        // Reads straddling block boundaries, inside holes, past the end.
        let len = whole.len() as u64;
        for (off, n) in
            [(0, 7), (65535, 3), (len / 2 + 11, 200_000), (len.saturating_sub(5), 100), (len + 10, 10)]
        {
            let mut buf = vec![0u8; n];
            let got = f.read_at(&mut buf, off).unwrap();
            let want = &whole[(off.min(len) as usize)..((off + n as u64).min(len) as usize)];
            assert_eq!(&buf[..got], want, "{name} at {off}");
        }
    }
    let a = std::fs::metadata(m.dir.join("hello.txt")).unwrap();
    let b = std::fs::metadata(m.dir.join("hardlink-to-hello.txt")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    // statfs: the volume's size and free space.
    let st = nix_statvfs(&m.dir);
    assert_eq!(st.0 * st.2, fs.voldata.allocator_size.get() / 65536 * 65536);
    assert!(st.1 <= st.0);
}

/// (blocks, free blocks, fragment size) of the file system at `dir`.
fn nix_statvfs(dir: &Path) -> (u64, u64, u64) {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct it is given for a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        (s.f_blocks, s.f_bfree, s.f_frsize)
    }
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3 and root"]
fn a_writer_is_refused_while_mounted_read_only() {
    let dir = hosttree::scratch();
    let img = common::scratch_copy("varied", dir.path());
    let spec = img.display().to_string();
    let m = Mounted::new(&spec, &[]);
    let edit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hammer2_edit")).arg(&spec).args(args).output().unwrap()
    };
    let o = edit(&["mkdir", "/new"]);
    assert!(!o.status.success(), "a writer ran beside a read-only mount");
    let why = String::from_utf8_lossy(&o.stderr);
    assert!(why.contains("lock") || why.contains("is mounted on"), "{why}");
    // Readers run beside it.
    assert!(edit(&["ls", "/"]).status.success());
    assert!(m.unmount().success());
    assert!(edit(&["mkdir", "/new"]).status.success(), "the lock outlived the mount");
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3 and root"]
fn damage_is_eio_and_the_mount_stays_up() {
    let dir = hosttree::scratch();
    let img = common::scratch_copy("varied", dir.path());
    let spec = img.display().to_string();
    // The data block of a one-block file.
    let off = {
        let fs = hammer2::Hammer2::open_path(&spec).unwrap();
        let tree = Tree::new(&fs);
        let pfs = Pfs::default(&tree).unwrap();
        let ino = pfs.resolve("/just-over-512.bin").unwrap();
        let b = ino.blockset().iter().find(|b| b.kind() == BlockrefType::Data).expect("a direct data block");
        b.data_off.get() & !0x3f
    };
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0x5a; 64], off + 16).unwrap();
    drop(f);
    let m = Mounted::new(&spec, &[]);
    let err = std::fs::read(m.dir.join("just-over-512.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Everything else is served as before.
    assert_eq!(std::fs::metadata(m.dir.join("just-over-512.bin")).unwrap().len(), 513);
    assert_eq!(std::fs::read(m.dir.join("hello.txt")).unwrap().len(), 15);
    assert!(is_mounted(&m.dir));
    assert!(m.unmount().success());
}

#[test]
#[ignore = "needs /dev/fuse, fusermount3 and root"]
fn without_f_it_runs_as_a_daemon() {
    require_fuse();
    let spec = common::fixture("small-iscsi").display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    /// Unmounts on the way out, whatever happened.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                let _ = Command::new("fusermount3").arg("-u").arg(self.0).status();
            }
        }
    }
    let _guard = Unmount(tmp.path());
    let o = Command::new(MOUNT).arg(&spec).arg(tmp.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The parent returned once the mount was up.
    assert!(is_mounted(tmp.path()));
    assert!(std::fs::read_dir(tmp.path()).unwrap().count() > 0);
    assert!(Command::new("fusermount3").arg("-u").arg(tmp.path()).status().unwrap().success());
    assert!(!is_mounted(tmp.path()));
    // Usage errors are refused before anything is mounted.
    let o = Command::new(MOUNT).args(["-o", "bogus"]).arg(&spec).arg(tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(MOUNT).arg("/nonexistent.img").arg(tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!is_mounted(tmp.path()));
}
