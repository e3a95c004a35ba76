//! Builds hostile images: find the chain of blockrefs from the best header
//! to a target, damage something, then "reseal" the chain (recompute every
//! check code up to the header and the header CRCs) so the tools meet the
//! damage itself rather than a check-code mismatch.

use hammer2::check::set_check;
use hammer2::format::{Blockref, BlockrefType, VolumeData};
use hammer2::Hammer2;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use zerocopy::{FromBytes, IntoBytes};

pub struct Image {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Image {
    pub fn new(fixture: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = super::scratch_copy(fixture, dir.path());
        Image { _dir: dir, path }
    }
    pub fn spec(&self) -> &str {
        self.path.to_str().unwrap()
    }
    pub fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        std::fs::File::open(&self.path).unwrap().read_exact_at(&mut b, off).unwrap();
        b
    }
    pub fn write(&self, off: u64, bytes: &[u8]) {
        std::fs::OpenOptions::new().write(true).open(&self.path).unwrap().write_all_at(bytes, off).unwrap();
    }
    pub fn bref(&self, pos: u64) -> Blockref {
        Blockref::read_from_bytes(&self.read(pos, 128)).unwrap()
    }
}

/// File offsets of the blockrefs from the best header down to the first one
/// `pred` accepts (single-volume images: logical = physical).
pub fn find_chain(img: &Image, pred: &dyn Fn(&Image, &Blockref) -> bool) -> (usize, Vec<u64>) {
    let fs = Hammer2::open_path(img.spec()).unwrap();
    let copy = fs.copy;
    drop(fs);
    let hdr = copy as u64 * (2 << 30);
    let mut path = Vec::new();
    for i in 0..4 {
        if dfs(img, hdr + 0x200 + i * 128, pred, &mut path, 0) {
            return (copy, path);
        }
    }
    panic!("no blockref matches");
}

fn dfs(
    img: &Image,
    pos: u64,
    pred: &dyn Fn(&Image, &Blockref) -> bool,
    path: &mut Vec<u64>,
    depth: usize,
) -> bool {
    let b = img.bref(pos);
    if b.kind() == BlockrefType::Empty {
        return false;
    }
    path.push(pos);
    if pred(img, &b) {
        return true;
    }
    let table = match b.kind() {
        BlockrefType::Inode if img.read(b.offset() + 0x51, 1)[0] & 1 == 0 => Some((b.offset() + 0x200, 4)),
        BlockrefType::Indirect => Some((b.offset(), b.physical_size() / 128)),
        _ => None,
    };
    if let (Some((base, n)), true) = (table, depth < 16) {
        for i in 0..n {
            if dfs(img, base + i * 128, pred, path, depth + 1) {
                return true;
            }
        }
    }
    path.pop();
    false
}

/// Recomputes the check codes along `chain` (deepest first) and the header CRCs.
pub fn reseal(img: &Image, copy: usize, chain: &[u64]) {
    for &pos in chain.iter().rev() {
        let mut b = img.bref(pos);
        if b.radix() == 0 || b.radix() > 16 || b.offset() > 1 << 40 {
            continue; // no media (or hostile on purpose): nothing to hash
        }
        let media = img.read(b.offset(), b.physical_size() as usize);
        set_check(&mut b, &media);
        img.write(pos, b.as_bytes());
    }
    let hoff = copy as u64 * (2 << 30);
    let mut v = VolumeData::read_from_bytes(&img.read(hoff, 65536)).unwrap();
    v.update_crcs();
    img.write(hoff, v.as_bytes());
}
