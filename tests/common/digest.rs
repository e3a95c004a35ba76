//! Digests of sparse images.

use sha2::Digest;
use std::path::Path;

/// A digest of the file's bytes that reads only its data extents (the
/// images are 10 GiB, sparse): their offsets, lengths and contents, and the
/// file's length. A write anywhere changes it (a write into a hole creates
/// an extent, even of zeros).
pub fn sparse_sha256(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut h = sha2::Sha256::new();
    h.update(len.to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0i64;
    while (pos as u64) < len {
        // SAFETY: plain lseek on a descriptor we own.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        h.update(data.to_le_bytes());
        h.update(hole.to_le_bytes());
        let mut at = data as u64;
        while at < hole as u64 {
            let n = buf.len().min((hole as u64 - at) as usize);
            f.read_exact_at(&mut buf[..n], at).unwrap();
            h.update(&buf[..n]);
            at += n as u64;
        }
        pos = hole;
    }
    h.finalize().to_vec()
}
