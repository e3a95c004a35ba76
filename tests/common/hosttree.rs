//! A varied host tree for the import tests (newfs --populate and the
//! library call behind `put -r`), and its comparison with what an image
//! holds: through the library's reader, through `hammer2_edit get`, and
//! through the reference tools.

use super::content;
use hammer2::file::{read_file, read_link, WriteSink};
use hammer2::format::ObjType;
use hammer2::pfs::{Inode, Pfs};
use hammer2::tree::Tree;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our fsck (`-n`) and the reference one (`-q`) both find `spec` clean.
pub fn both_fscks_clean(spec: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["-n", spec]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "our fsck on {spec}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, log) = super::oracle::reference_fsck(spec);
    assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{log}");
}

/// A temporary directory holding the varied tree (at `DIR/tree`, see
/// [`build_varied`]); returns it and the tree's path.
pub fn varied_in_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("tree");
    build_varied(&host);
    (dir, host)
}

/// Whether the tests run as root (device nodes and foreign owners need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 },
        libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 },
    ];
    // SAFETY: a valid C string and two timespecs, as utimensat expects.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", p.display(), std::io::Error::last_os_error());
}

fn mknod(p: &Path, mode: u32, dev: libc::dev_t) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(r, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

/// Builds the varied tree in `root` (which must not exist): regular files
/// (empty, embedded, at and past the 512-byte limit, multi-block random,
/// compressible text, all zeros, sparse with holes), symlinks short, long
/// and dangling, hard links across directories, a FIFO and a socket
/// (device nodes and foreign owners only as root), 30 nested directories,
/// 255-byte names, odd modes and times.
pub fn build_varied(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    };
    std::fs::create_dir_all(root).unwrap();
    w("hello.txt", b"hello, world\n");
    w("empty", b"");
    w("exactly512", &content(1, 512));
    w("just513", &content(2, 513));
    w("dir/random.bin", &content(3, 300_000));
    let text: Vec<u8> = b"the chain flushes the freemap and the blockref of the inode\n"
        .iter()
        .cycle()
        .take(1 << 20)
        .copied()
        .collect();
    w("dir/text.txt", &text);
    w("dir/short-text.txt", &text[..100_000]);
    w("dir/zeros", &vec![0u8; 200_000]);
    // Sparse: holes at the start, between and at the end.
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(9 << 20).unwrap();
    {
        use std::os::unix::fs::FileExt;
        sparse.write_all_at(&content(4, 70_000), 1 << 20).unwrap();
        sparse.write_all_at(b"island", 5 << 20).unwrap();
    }
    drop(sparse);
    std::os::unix::fs::symlink("hello.txt", root.join("sym")).unwrap();
    std::os::unix::fs::symlink("x".repeat(700), root.join("longsym")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dir/dangling")).unwrap();
    // Hard links: two names for hello.txt, three for random.bin.
    std::fs::create_dir_all(root.join("links")).unwrap();
    std::fs::hard_link(root.join("hello.txt"), root.join("links/hello-again")).unwrap();
    std::fs::hard_link(root.join("dir/random.bin"), root.join("links/random-1")).unwrap();
    std::fs::hard_link(root.join("dir/random.bin"), root.join("random-2")).unwrap();
    // Special files.
    let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    drop(std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap());
    if is_root() {
        mknod(&root.join("dev-null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
        mknod(&root.join("dev-disk"), libc::S_IFBLK | 0o660, libc::makedev(259, 70000));
        std::os::unix::fs::lchown(root.join("hello.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("sym"), Some(4321), Some(8765)).unwrap();
    }
    // Deep directories and long names.
    let mut deep = root.join("deep");
    for i in 0..30 {
        deep.push(format!("level{i:02}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), b"at the bottom\n").unwrap();
    w(&"n".repeat(255), b"a 255-byte name\n");
    std::fs::create_dir_all(root.join("d".repeat(200))).unwrap();
    w(&format!("{}/{}", "d".repeat(200), "f".repeat(100)), &content(5, 5000));
    // Odd modes and times.
    let mode = |rel: &str, m: u32| {
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    w("modes/setuid", b"#!/bin/sh\n");
    mode("modes/setuid", 0o4755);
    w("modes/setgid", b"x");
    mode("modes/setgid", 0o2711);
    w("modes/readonly", b"r");
    mode("modes/readonly", 0o444);
    std::fs::create_dir_all(root.join("modes/sticky")).unwrap();
    mode("modes/sticky", 0o1777);
    // Access times past the change time, so that reading the files (the
    // import does) leaves them as they are (relatime).
    set_times(&root.join("modes/readonly"), (4_102_444_801, 999_999_999), (2, 123_456_000));
    set_times(&root.join("dir/text.txt"), (4_102_444_900, 0), (4_102_444_800, 500_000));
    set_times(&root.join("sym"), (4_102_444_800, 0), (1_000_000_001, 0));
    // Directories last: creating entries changes their times.
    set_times(&root.join("deep"), (86_400, 0), (86_400, 1000));
    set_times(&root.join("modes"), (1_600_000_000, 0), (1_600_000_000, 7_000));
}

/// Access times set past this (2099) are not moved by reading.
const FUTURE: i64 = 4_070_908_800;

/// Host time as HAMMER2 microseconds.
fn us(secs: i64, nsecs: i64) -> u64 {
    secs.max(0) as u64 * 1_000_000 + nsecs.max(0) as u64 / 1000
}

fn kind_of(m: &std::fs::Metadata) -> ObjType {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    match () {
        _ if t.is_dir() => ObjType::Directory,
        _ if t.is_file() => ObjType::Regfile,
        _ if t.is_symlink() => ObjType::Softlink,
        _ if t.is_fifo() => ObjType::Fifo,
        _ if t.is_socket() => ObjType::Socket,
        _ if t.is_char_device() => ObjType::Cdev,
        _ => ObjType::Bdev,
    }
}

/// Every path below `root` (relative, sorted) with its lstat.
pub fn host_entries(root: &Path) -> BTreeMap<PathBuf, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(r.clone());
            }
            out.insert(r, m);
        }
    }
    out
}

fn lookup<'a>(pfs: &Pfs<'a>, dir: &Inode<'a>, name: &[u8]) -> Result<Inode<'a>, String> {
    let e = pfs
        .lookup_name(dir, name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{:?} missing", String::from_utf8_lossy(name)))?;
    pfs.inode(e.inum).map_err(|e| e.to_string())
}

/// Compares the host tree `host` with directory `dest` of PFS `label` of
/// `spec` through the library's reader: every entry and no other, its
/// type, mode, owner, mtime, atime (where reading cannot have moved it),
/// size and contents, symlink target, device numbers, and
/// hard links (one inode per host inode, nlinks = names in the tree).
pub fn compare_with_image(host: &Path, spec: &str, label: Option<&str>, dest: &str) {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let tree = Tree::new(&fs);
    let pfs = match label {
        Some(l) => Pfs::find(&tree, l),
        None => Pfs::default(&tree),
    }
    .unwrap();
    let top = pfs.resolve(dest).unwrap();
    let entries = host_entries(host);
    let mut names_of: HashMap<(u64, u64), u64> = HashMap::new();
    for m in entries.values().filter(|m| !m.is_dir()) {
        *names_of.entry((m.dev(), m.ino())).or_default() += 1;
    }
    let mut inum_of: HashMap<(u64, u64), u64> = HashMap::new();
    let mut image_count = 0;
    for (rel, m) in &entries {
        let mut ino = top.clone();
        for part in rel.iter() {
            ino = lookup(&pfs, &ino, part.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        }
        let meta = &ino.data.meta;
        let what = rel.display();
        let kind = kind_of(m);
        assert_eq!(ino.obj_type(), kind, "{what}: type");
        assert_eq!(meta.mode.get(), m.mode() & 0o7777, "{what}: mode");
        assert_eq!(u32::from_le_bytes(meta.uid[12..16].try_into().unwrap()), m.uid(), "{what}: uid");
        assert_eq!(u32::from_le_bytes(meta.gid[12..16].try_into().unwrap()), m.gid(), "{what}: gid");
        assert_eq!(meta.mtime.get(), us(m.mtime(), m.mtime_nsec()), "{what}: mtime");
        // The import reads files and directories, which may move their
        // access time (relatime): only one set in the future stays.
        if m.atime() > FUTURE {
            assert_eq!(meta.atime.get(), us(m.atime(), m.atime_nsec()), "{what}: atime");
        }
        if kind != ObjType::Directory {
            let links = names_of[&(m.dev(), m.ino())];
            assert_eq!(meta.nlinks.get(), links, "{what}: nlinks");
            let first = *inum_of.entry((m.dev(), m.ino())).or_insert(ino.inum());
            assert_eq!(ino.inum(), first, "{what}: hard links share one inode");
        }
        match kind {
            ObjType::Regfile => {
                let mut sink = WriteSink(Vec::new());
                let size = read_file(&tree, &ino, &mut sink).unwrap();
                assert_eq!(size, m.len(), "{what}: size");
                assert!(sink.0 == std::fs::read(host.join(rel)).unwrap(), "{what}: contents differ");
            }
            ObjType::Softlink => {
                let target = std::fs::read_link(host.join(rel)).unwrap();
                assert_eq!(read_link(&tree, &ino).unwrap(), target.as_os_str().as_bytes(), "{what}: target");
            }
            ObjType::Cdev | ObjType::Bdev => {
                let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
                assert_eq!((meta.rmajor.get(), meta.rminor.get()), (major, minor), "{what}: device");
            }
            _ => {}
        }
        image_count += 1;
    }
    // Nothing else in the image below dest.
    let mut seen = 0;
    let mut stack = vec![top];
    while let Some(dir) = stack.pop() {
        for e in pfs.readdir(&dir).unwrap() {
            seen += 1;
            if e.obj_type == ObjType::Directory {
                stack.push(pfs.inode(e.inum).unwrap());
            }
        }
    }
    assert_eq!(seen, image_count, "the image holds entries the host tree does not");
}

/// `hammer2_edit SPEC get PATH OUT` (of PFS `label`), then the extracted
/// tree against the host: contents, symlinks, mtimes, hard links (names
/// of one host inode are one extracted inode), holes kept (the sparse
/// file takes few blocks). Device nodes, FIFOs and sockets are not
/// extracted by `get`; [`compare_with_image`] covers them.
pub fn compare_extracted(host: &Path, spec: &str, label: Option<&str>, path: &str) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hammer2_edit"));
    if let Some(l) = label {
        cmd.args(["--pfs", l]);
    }
    let o = cmd.args([spec, "get", path]).arg(out.path()).output().unwrap();
    assert!(o.status.success(), "get failed: {}", String::from_utf8_lossy(&o.stderr));
    let got = if path == "/" {
        out.path().to_path_buf()
    } else {
        out.path().join(path.rsplit('/').next().unwrap())
    };
    let mut groups: HashMap<(u64, u64), u64> = HashMap::new();
    for (rel, m) in host_entries(host) {
        let what = rel.display();
        let kind = kind_of(&m);
        let x = got.join(&rel);
        if !matches!(kind, ObjType::Directory | ObjType::Regfile | ObjType::Softlink) {
            assert!(std::fs::symlink_metadata(&x).is_err(), "{what}: get extracts no special files");
            continue;
        }
        let xm = std::fs::symlink_metadata(&x).unwrap_or_else(|e| panic!("{what} not extracted: {e}"));
        assert_eq!(kind_of(&xm), kind, "{what}: type");
        match kind {
            ObjType::Regfile => {
                assert!(
                    std::fs::read(&x).unwrap() == std::fs::read(host.join(&rel)).unwrap(),
                    "{what}: contents"
                );
                assert_eq!(
                    (xm.mtime(), xm.mtime_nsec() / 1000),
                    (m.mtime(), m.mtime_nsec() / 1000),
                    "{what}: mtime"
                );
                let first = *groups.entry((m.dev(), m.ino())).or_insert(xm.ino());
                assert_eq!(xm.ino(), first, "{what}: hard link");
                if rel == Path::new("sparse") {
                    assert!(
                        xm.blocks() * 512 < m.len() / 4,
                        "sparse file extracted with {} blocks",
                        xm.blocks()
                    );
                }
            }
            ObjType::Softlink => {
                assert_eq!(std::fs::read_link(&x).unwrap(), std::fs::read_link(host.join(&rel)).unwrap())
            }
            _ => {}
        }
    }
}

/// Regular files of the host tree the reference makefs reads back (`-o R`)
/// exactly; makefs flushes on every run, so callers do this last.
pub fn compare_makefs_read(host: &Path, img: &Path, label: Option<&str>, dest: &str, files: &[&str]) {
    for rel in files {
        let path = format!("{}/{rel}", dest.trim_end_matches('/'));
        let got = super::oracle::makefs_read(img, label, &path);
        assert!(got == std::fs::read(host.join(rel)).unwrap(), "makefs -o R={path}: contents differ");
    }
}

/// Files [`compare_makefs_read`] reads (one of each kind of contents).
pub const MAKEFS_FILES: &[&str] =
    &["hello.txt", "just513", "dir/random.bin", "dir/text.txt", "dir/zeros", "sparse", "links/random-1"];
