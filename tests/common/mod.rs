//! Test helpers: locate the fixtures (checked in under tests/fixtures/) and
//! expand them (sparsely) into cargo's per-target temporary directory, once
//! per image; nothing is ever expanded into the source tree.
#![allow(dead_code)]

pub mod digest;
pub mod editor;
pub mod hosttree;
pub mod loopdev;
pub mod maint;
pub mod model;
pub mod mutate;
pub mod oracle;
pub mod plant;
pub mod readable;
pub mod recording;
pub mod reseal;
pub mod run;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Directory holding `*.img.zst` and manifests: `$HAMMER2_FIXTURES`, or
/// the repository's own `tests/fixtures`. Missing fixtures fail the test.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("HAMMER2_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    assert!(
        dir.join("README.md").exists(),
        "fixtures not found at {} (set HAMMER2_FIXTURES to their directory)",
        dir.display()
    );
    dir
}

fn cache_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Path of the expanded image `name` (e.g. "varied" for varied.img.zst).
pub fn fixture(name: &str) -> PathBuf {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(|| Mutex::new(())).lock().unwrap_or_else(|e| e.into_inner());
    let src = fixtures_dir().join(format!("{name}.img.zst"));
    let dst = cache_dir().join(format!("{name}.img"));
    let stamp = cache_dir().join(format!("{name}.img.stamp"));
    let meta = std::fs::metadata(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let want = format!("{} {:?}", meta.len(), meta.modified().ok());
    if dst.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return dst;
    }
    let tmp = cache_dir().join(format!("{name}.img.tmp{}", std::process::id()));
    expand_sparse(&src, &tmp);
    std::fs::rename(&tmp, &dst).unwrap();
    std::fs::write(&stamp, want).unwrap();
    dst
}

/// Streams a zstd image into `dst`, seeking over all-zero 64 KiB runs.
pub fn expand_sparse(src: &Path, dst: &Path) {
    let mut dec = zstd::stream::read::Decoder::new(File::open(src).unwrap()).unwrap();
    let mut out = File::create(dst).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut pos = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = dec.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(pos)).unwrap();
            out.write_all(&buf[..filled]).unwrap();
        }
        pos += filled as u64;
    }
    out.set_len(pos).unwrap();
}

/// A private copy of a fixture (sparse) that a test may modify.
pub fn scratch_copy(name: &str, dir: &Path) -> PathBuf {
    let src = fixture(name);
    let dst = dir.join(format!("{name}.img"));
    copy_sparse(&src, &dst);
    dst
}

/// Copies only the data extents of a sparse file (SEEK_DATA / SEEK_HOLE).
pub fn copy_sparse(src: &Path, dst: &Path) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let input = File::open(src).unwrap();
    let len = input.metadata().unwrap().len();
    let out = File::create(dst).unwrap();
    out.set_len(len).unwrap();
    let fd = input.as_raw_fd();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0i64;
    while (pos as u64) < len {
        // SAFETY: plain lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // no data past pos
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let mut at = data as u64;
        while at < hole as u64 {
            let n = buf.len().min((hole as u64 - at) as usize);
            input.read_exact_at(&mut buf[..n], at).unwrap();
            out.write_all_at(&buf[..n], at).unwrap();
            at += n as u64;
        }
        pos = hole;
    }
}

/// Every fixture image name, with the device spec to open it.
pub const SINGLE: &[&str] =
    &["newfs-10g", "newfs-1g", "small-iscsi", "pfs-snapshot", "varied", "varied-zlib"];

pub fn multivol_spec() -> String {
    format!("{}:{}", fixture("multivol-0").display(), fixture("multivol-1").display())
}

/// Device specs of every fixture (the multi-volume pair as one).
pub fn all_specs() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        SINGLE.iter().map(|n| (n.to_string(), fixture(n).display().to_string())).collect();
    v.push(("multivol".into(), multivol_spec()));
    v
}

/// Deterministic bytes for test files: a third compressible, the rest
/// pseudo-random.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            if (i / 4096) % 3 == 0 {
                (i % 251) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}
