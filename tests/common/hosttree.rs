//! A varied host tree for the import tests (newfs --populate and the
//! library call behind `put -r`), and its comparison with what an image
//! holds: through the library's reader, through `hammer2_edit get`, and
//! through the reference tools.

use super::content;
use hammer2::format::ObjType;
use hammer2::read::file::{read_file, read_link};
use hammer2::read::pfs::{Inode, Pfs};
use hammer2::read::tree::Tree;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our fsck (`-n`) and the reference one (`-q`, unless left out: see
/// `oracle::without`) both find `spec` clean.
pub fn both_fscks_clean(spec: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck_hammer2")).args(["-n", spec]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "our fsck on {spec}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if super::oracle::wanted() {
        let (ok, log) = super::oracle::reference_fsck(spec);
        assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{log}");
    }
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

/// Sets the access and modification times of `p` (not following a
/// symlink) as (seconds, nanoseconds); `libc::UTIME_OMIT` as nanoseconds
/// leaves one alone.
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
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

/// A [`hammer2::read::file::Sink`] that compares what it is given with a host
/// file as it goes (files of GiB are never held in memory); panics at the
/// first difference. Holes are checked through the host file's own data
/// extents, so a hole of GiB costs nothing.
struct CompareSink {
    file: std::fs::File,
    path: PathBuf,
    /// The host file's data extents (offset, length), ascending.
    extents: Vec<(u64, u64)>,
    pos: u64,
}

impl CompareSink {
    fn new(path: &Path) -> CompareSink {
        let extents = super::reseal::data_extents(path);
        CompareSink { file: std::fs::File::open(path).unwrap(), path: path.to_path_buf(), extents, pos: 0 }
    }
}

impl hammer2::read::file::Sink for CompareSink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut want = vec![0u8; bytes.len()];
        let n = self.file.read_at(&mut want, self.pos)?;
        assert!(n == bytes.len() || want[n..].iter().all(|&b| b == 0), "{}: short", self.path.display());
        if want[..] != bytes[..] {
            let at = want.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{}: contents differ at byte {}", self.path.display(), self.pos + at as u64);
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        let end = self.pos + n;
        let first = self.extents.partition_point(|&(off, len)| off + len <= self.pos);
        for &(off, len) in self.extents[first..].iter().take_while(|&&(off, _)| off < end) {
            let (s, e) = (off.max(self.pos), (off + len).min(end));
            if s < e {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; (e - s) as usize];
                self.file.read_exact_at(&mut buf, s)?;
                assert!(
                    buf.iter().all(|&b| b == 0),
                    "{}: data where the image has a hole at {s}",
                    self.path.display()
                );
            }
        }
        self.pos = end;
        Ok(())
    }
}

/// Whether two host files hold the same bytes (files past 64 MiB through
/// their data extents, zeros stored or not alike).
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let (ma, mb) = (std::fs::metadata(a).unwrap(), std::fs::metadata(b).unwrap());
    if ma.len() != mb.len() {
        return false;
    }
    if ma.len() <= 64 << 20 {
        return std::fs::read(a).unwrap() == std::fs::read(b).unwrap();
    }
    super::digest::content_sha256(a) == super::digest::content_sha256(b)
}

/// Access times set past this (2099) are not moved by reading.
const FUTURE: i64 = 4_070_908_800;

/// Host time as HAMMER2 microseconds (times before 1970 are stored as
/// the epoch: see `micros` in src/import.rs).
fn us(secs: i64, nsecs: i64) -> u64 {
    if secs < 0 {
        return 0;
    }
    secs as u64 * 1_000_000 + nsecs.max(0) as u64 / 1000
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
                let mut sink = CompareSink::new(&host.join(rel));
                let size = read_file(&tree, &ino, &mut sink).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(size, m.len(), "{what}: size");
                assert_eq!(sink.pos, m.len(), "{what}: bytes read");
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
    // Beside the host tree's usual place: a file system with the same
    // time range (ext4 stops at 2446, tmpfs does not).
    let out = scratch();
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
                assert!(same_contents(&x, &host.join(&rel)), "{what}: contents");
                assert_eq!(us(xm.mtime(), xm.mtime_nsec()), us(m.mtime(), m.mtime_nsec()), "{what}: mtime");
                let first = *groups.entry((m.dev(), m.ino())).or_insert(xm.ino());
                assert_eq!(xm.ino(), first, "{what}: hard link");
                // Sparse files stay sparse: at most a 64 KiB block per 4 KiB
                // the host stores, where the host stores under a quarter.
                if m.blocks() * 512 < m.len() / 4 {
                    assert!(
                        xm.blocks() * 512 <= (m.blocks() * 512 * 16).max(1 << 20),
                        "{what}: a sparse file of {} bytes in {} host blocks extracted with {} blocks",
                        m.len(),
                        m.blocks(),
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
    if !super::oracle::wanted() {
        return;
    }
    for rel in files {
        let path = format!("{}/{rel}", dest.trim_end_matches('/'));
        let got = super::oracle::makefs_read(img, label, &path);
        assert!(got == std::fs::read(host.join(rel)).unwrap(), "makefs -o R={path}: contents differ");
    }
}

/// Files [`compare_makefs_read`] reads (one of each kind of contents).
pub const MAKEFS_FILES: &[&str] =
    &["hello.txt", "just513", "dir/random.bin", "dir/text.txt", "dir/zeros", "sparse", "links/random-1"];

// ---------------------------------------------------------------------------
// Seeded shapes that stress the on-disk structures (tests/write_shapes.rs).

use super::model::{collision_groups, random_name, random_name_len, Content, Fill, Rng};

/// A scratch directory for images and extractions: in memory (/dev/shm)
/// where the host has it, since makefs syncs what it writes and extraction
/// writes every byte of a file; else the usual temporary directory.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap()
}

/// The seed of a shape test: `HAMMER2_SHAPES_SEED` when set (to replay a
/// failure or try others), else the test's own; printed, so that a failure
/// names it.
pub fn shape_seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("HAMMER2_SHAPES_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    eprintln!("{test}: seed {seed} (HAMMER2_SHAPES_SEED={seed} replays it)");
    seed
}

/// A random name usable on the host: not `.`/`..`, no `/` or NUL (the
/// generator makes neither), unique in `taken`.
/// Names of few bytes run out: after some tries the length grows.
fn fresh_name(rng: &mut Rng, taken: &mut std::collections::HashSet<Vec<u8>>, len: usize) -> String {
    for tries in 0.. {
        let n = random_name(rng, (len + tries / 8).min(255));
        if taken.insert(n.as_bytes().to_vec()) {
            return n;
        }
    }
    unreachable!()
}

/// Writes `content` to `path` (creating parents).
pub fn write_content(path: &Path, content: Content) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content.bytes()).unwrap();
}

/// A directory `dir` of `n` files with random names (1 to 255 bytes, many
/// around the 64 bytes a dirent blockref embeds), plus every member of
/// `groups` groups of names sharing one 64-bit directory hash: enough
/// entries to split the directory's blockref table into indirect blocks at
/// several levels. Files are small (embedded in their inode) except every
/// 50th. Returns the collision names.
pub fn wide_dir(dir: &Path, rng: &mut Rng, n: usize, groups: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut taken = std::collections::HashSet::new();
    for i in 0..n {
        let len = random_name_len(rng);
        let name = fresh_name(rng, &mut taken, len);
        let size = if i % 50 == 0 { rng.range(513, 70_000) } else { rng.below(64) };
        write_content(&dir.join(&name), Content { seed: rng.next_u64(), size, fill: Fill::Random });
    }
    let mut colliding = Vec::new();
    for g in collision_groups(&["ab", "cd", "ef"]).into_iter().take(groups) {
        for name in g {
            if taken.insert(name.as_bytes().to_vec()) {
                std::fs::write(dir.join(&name), name.as_bytes()).unwrap();
                colliding.push(name);
            }
        }
    }
    colliding
}

/// `levels` nested directories below `root` with random names (some
/// long), a small file at every tenth level and one at the bottom, which
/// it returns.
pub fn deep_dirs(root: &Path, rng: &mut Rng, levels: usize) -> PathBuf {
    let mut p = root.to_path_buf();
    for level in 0..levels {
        // Host paths are limited to 4096 bytes: keep names short enough.
        let len = if level % 17 == 3 { 200 } else { rng.range(1, 12) as usize };
        p.push(random_name(rng, len).replace(['.'], "d"));
        std::fs::create_dir_all(&p).unwrap();
        if level % 10 == 9 {
            // 13 bytes: no directory name has that length.
            write_content(
                &p.join("level-file.tx"),
                Content { seed: rng.next_u64(), size: rng.below(3000), fill: Fill::Text },
            );
        }
    }
    let bottom = p.join("bottom");
    std::fs::write(&bottom, b"at the bottom\n").unwrap();
    bottom
}

/// A sparse file of `size` bytes: islands of data at random offsets (some
/// crossing 64 KiB block boundaries, one at offset 0 and one ending the
/// file), holes everywhere else, so the file needs DATA indirect blocks at
/// several levels while the host (and the image) store little. Returns the
/// islands (offset, length).
pub fn sparse_file(path: &Path, rng: &mut Rng, size: u64, islands: usize) -> Vec<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut out = vec![(0, rng.range(1, 100))];
    for _ in 0..islands {
        let at = rng.below(size);
        let len = rng.range(1, 150_000).min(size - at);
        out.push((at, len));
    }
    let tail = rng.range(1, 70_000).min(size);
    out.push((size - tail, tail));
    for &(at, len) in &out {
        let mut buf = vec![0u8; len as usize];
        rng.fill(&mut buf);
        f.write_all_at(&buf, at).unwrap();
    }
    out
}

/// Sizes at every boundary the write engine has: embedded data (512
/// bytes), the smallest and the 16 KiB and 64 KiB blocks, a 1 MiB file.
pub const BOUNDARY_SIZES: &[u64] =
    &[0, 1, 511, 512, 513, 1023, 1025, 16383, 16384, 16385, 65535, 65536, 65537, 131073, 1 << 20];

/// Files of every [`BOUNDARY_SIZES`] size in `dir`, incompressible,
/// compressible and mixed, and a few all-zero ones.
pub fn boundary_files(dir: &Path, rng: &mut Rng) {
    for &size in BOUNDARY_SIZES {
        for (tag, fill) in [("rand", Fill::Random), ("text", Fill::Text), ("mixed", Fill::Mixed)] {
            write_content(&dir.join(format!("{tag}-{size}")), Content { seed: rng.next_u64(), size, fill });
        }
    }
    for size in [1, 512, 513, 65536, 200_000] {
        write_content(&dir.join(format!("zero-{size}")), Content { seed: 0, size, fill: Fill::Zero });
    }
}

/// `inodes` files in `dirs` directories below `root`, each with 1 to
/// `max_links` names spread over the directories. Returns every name of
/// every file (relative to `root`), grouped by file.
pub fn linked_files(
    root: &Path,
    rng: &mut Rng,
    inodes: usize,
    dirs: usize,
    max_links: u64,
) -> Vec<Vec<PathBuf>> {
    let dirnames: Vec<PathBuf> = (0..dirs).map(|d| PathBuf::from(format!("d{d}"))).collect();
    for d in &dirnames {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut groups = Vec::new();
    for i in 0..inodes {
        let first = rng.pick(&dirnames).join(format!("f{i}"));
        let size = *rng.pick(&[0u64, 10, 600, 20_000, 100_000]);
        write_content(&root.join(&first), Content { seed: rng.next_u64(), size, fill: Fill::Mixed });
        let mut names = vec![first.clone()];
        for k in 1..rng.range(1, max_links) {
            let link = rng.pick(&dirnames).join(format!("f{i}-link{k}"));
            std::fs::hard_link(root.join(&first), root.join(&link)).unwrap();
            names.push(link);
        }
        groups.push(names);
    }
    groups
}

/// Objects with unusual metadata below `root`: symlinks of 1 and 1023
/// bytes (and both sides of the 512-byte embedded limit), 255-byte names
/// (ASCII and multi-byte), names that are not UTF-8, FIFOs, sockets;
/// setuid, setgid and sticky bits; times before 1970, at the epoch and
/// far in the future. What only root can make is [`root_objects`].
pub fn odd_objects(root: &Path, rng: &mut Rng) {
    use std::os::unix::ffi::OsStringExt;
    std::fs::create_dir_all(root.join("links")).unwrap();
    for len in [1usize, 2, 511, 512, 513, 1023] {
        let target: String =
            (0..len).map(|i| if i % 10 == 9 { '/' } else { (b'a' + (i % 26) as u8) as char }).collect();
        std::os::unix::fs::symlink(&target, root.join(format!("links/sym{len}"))).unwrap();
    }
    std::fs::create_dir_all(root.join("names")).unwrap();
    std::fs::write(root.join("names").join("N".repeat(255)), b"255 ascii").unwrap();
    // 85 three-byte characters: 255 bytes.
    std::fs::write(root.join("names").join("日".repeat(85)), b"255 utf-8").unwrap();
    for i in 0..6u8 {
        let mut raw = vec![0xff, 0xfe, b'x', 0x80 + i, 0xc3];
        raw.extend(std::iter::repeat_n(0xa0 + i, rng.range(0, 240) as usize));
        let name = std::ffi::OsString::from_vec(raw);
        write_content(
            &root.join("names").join(name),
            Content { seed: rng.next_u64(), size: 700, fill: Fill::Random },
        );
    }
    let mut latin1 = std::ffi::OsString::from_vec(b"dir-\xe9t\xe9".to_vec());
    latin1.push("");
    std::fs::create_dir_all(root.join("names").join(&latin1)).unwrap();
    std::fs::write(root.join("names").join(&latin1).join(std::ffi::OsString::from_vec(vec![0xe9; 3])), b"x")
        .unwrap();
    std::fs::create_dir_all(root.join("special")).unwrap();
    let fifo = CString::new(root.join("special/fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    drop(std::os::unix::net::UnixListener::bind(root.join("special/socket")).unwrap());
    let mode = |rel: &str, m: u32| {
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    std::fs::create_dir_all(root.join("modes/sticky-dir")).unwrap();
    mode("modes/sticky-dir", 0o1777);
    for (rel, m) in [("suid", 0o4755), ("sgid", 0o2755), ("all", 0o7777), ("sticky", 0o1644)] {
        std::fs::write(root.join("modes").join(rel), rel.as_bytes()).unwrap();
        mode(&format!("modes/{rel}"), m);
    }
    std::fs::create_dir_all(root.join("times")).unwrap();
    for (rel, secs, nsecs) in [
        ("before-1970", -86_400 * 365, 5_000i64),
        ("epoch", 0, 0),
        ("just-after", 1, 999_999_999),
        ("y2038", 2_147_483_648, 123_000),
        ("year-2500", 16_725_225_600, 7_000),
        ("year-9999", 253_402_300_799, 999_999_000),
    ] {
        let p = root.join("times").join(rel);
        std::fs::write(&p, rel.as_bytes()).unwrap();
        set_times(&p, (secs, nsecs), (secs, nsecs));
    }
    std::os::unix::fs::symlink("epoch", root.join("times/old-link")).unwrap();
    set_times(&root.join("times/old-link"), (-1, 0), (-1, 0));
    // Directories last: creating entries changes their times.
    for (rel, secs) in [("times", -1_000_000_000i64), ("modes", 4_102_444_800), ("names", 0)] {
        set_times(&root.join(rel), (secs, 0), (secs, 0));
    }
}

/// What only root can add to an [`odd_objects`] tree at `root`: device
/// nodes with large numbers, files of large uids and gids, a symlink of
/// another owner, a file of mode 000 (only root can read it to copy it).
/// Fails the test when not run as root.
pub fn root_objects(root: &Path) {
    assert!(is_root(), "this test needs root (device nodes, foreign owners, mode 000)");
    std::fs::write(root.join("modes/none"), b"none").unwrap();
    std::fs::set_permissions(root.join("modes/none"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // As odd_objects left the directory's times.
    set_times(&root.join("modes"), (4_102_444_800, 0), (4_102_444_800, 0));
    mknod(&root.join("special/cdev"), libc::S_IFCHR | 0o620, libc::makedev(4095, 1_048_575));
    mknod(&root.join("special/bdev"), libc::S_IFBLK | 0o600, libc::makedev(8, 0));
    mknod(&root.join("special/cdev0"), libc::S_IFCHR | 0o666, libc::makedev(0, 0));
    for (rel, uid, gid) in [
        ("owners-max", u32::MAX - 1, u32::MAX - 1),
        ("owners-2g", 1 << 31, 65_534),
        ("owners-big", 4_000_000_000, 123_456_789),
    ] {
        std::fs::write(root.join(rel), rel.as_bytes()).unwrap();
        std::os::unix::fs::lchown(root.join(rel), Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::lchown(root.join("links/sym1"), Some(70_000), Some(80_000)).unwrap();
}

/// makefs (the kernel's code) reads directory `dest` of PFS `label` out of
/// `img` (`-o R`, into memory where the host has it) and every regular file
/// and directory of the host tree is there with the same contents.
/// makefs skips symlinks and special files; it keeps neither modes nor
/// times (the other comparisons cover those). Asserts the mount needed no
/// recovery.
pub fn compare_makefs_tree(host: &Path, img: &Path, label: Option<&str>, dest: &str) {
    if !super::oracle::wanted() {
        return;
    }
    let out = scratch();
    let mut cmd = Command::new(super::oracle::reftools().join("makefs"));
    cmd.args(["-t", "hammer2", "-o", &format!("R={dest}")]);
    if let Some(l) = label {
        cmd.args(["-o", &format!("m={l}")]);
    }
    let o = cmd.arg(img).arg(out.path()).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "makefs -o R={dest} failed on {}:\n{log}", img.display());
    assert!(log.contains("no recovery needed"), "makefs ran a recovery on our image:\n{log}");
    let got = match dest.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() => out.path().join(name),
        _ => out.path().to_path_buf(),
    };
    let mut files = 0;
    for (rel, m) in host_entries(host) {
        let x = got.join(&rel);
        if m.is_dir() {
            assert!(x.is_dir(), "makefs -o R: {} is not a directory", rel.display());
        } else if m.is_file() {
            assert!(x.is_file(), "makefs -o R: {} not read out", rel.display());
            assert!(same_contents(&x, &host.join(&rel)), "makefs -o R: {}: contents differ", rel.display());
            files += 1;
        }
    }
    assert!(files > 0 || host_entries(host).values().all(|m| !m.is_file()), "makefs read no file");
}

/// Everything the oracles say of directory `dest` of PFS `label` in `img`
/// (`spec`: the image, or its volumes joined by ':') holding the host tree
/// `host`: our fsck and the reference fsck find it clean; our reader and
/// `hammer2_edit get` give back every entry with its type, mode, owner,
/// times, link count, symlink target and contents; makefs reads every file
/// back byte for byte, mounts without a recovery and bulkfrees finding no
/// block in use marked free. makefs writes (it flushes), so this comes
/// last, and the image may lag its freemap by one flush afterwards, as a
/// kernel leaves it.
pub fn oracles_agree(host: &Path, img: &Path, spec: &str, label: Option<&str>, dest: &str) {
    both_fscks_clean(spec);
    compare_with_image(host, spec, label, dest);
    compare_extracted(host, spec, label, dest);
    compare_makefs_tree(host, img, label, dest);
    super::oracle::makefs_mounts_and_bulkfrees(img);
}
