//! Builds hostile images: find the chain of blockrefs from the best header
//! to a target, damage something, then "reseal" the chain (recompute every
//! check code up to the header and the header CRCs) so the tools meet the
//! damage itself rather than a check-code mismatch.
//!
//! Two ways to reseal:
//! - [`find_chain`] + [`reseal`]: one path from the header down to a
//!   blockref (enough when nothing is shared);
//! - [`Map`]: every blockref reachable from the best header (topology and
//!   freemap), indexed by the media it points at, so that a write anywhere
//!   is resealed through *every* parent up to the header ([`Map::reseal`]),
//!   which is what shared subtrees (snapshots, deduplicated data) need.
//!
//! [`Image`] can record an undo log ([`Image::begin`] / [`Image::rollback`])
//! so one scratch copy serves thousands of mutations.
//!
//! Everything here reads the image with plain file I/O and the library's
//! format types only: the library's own traversal is what is under test.

use hammer2::format::check::set_check;
use hammer2::format::{
    Blockref, BlockrefType, InodeData, ObjType, VolumeData, VOLHDR_ZONE_BYTES as ZONE_BYTES, VOLUME_ID_HBO,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of a volume header.
pub const HDR_BYTES: u64 = 65536;
/// Offset of `sroot_blockset` and `freemap_blockset` inside a header.
pub const SROOT_AT: u64 = 0x200;
pub const FREEMAP_AT: u64 = 0x800;

/// Writes to undo: (offset, bytes before the write), oldest first.
type UndoLog = Vec<(u64, Vec<u8>)>;

pub struct Image {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    file: File,
    /// While recording: (offset, bytes before the write), oldest first.
    undo: RefCell<Option<UndoLog>>,
}

impl Image {
    pub fn new(fixture: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = super::scratch_copy(fixture, dir.path());
        let file = File::options().read(true).write(true).open(&path).unwrap();
        Image { _dir: dir, path, file, undo: RefCell::new(None) }
    }
    /// A copy of `src` as it is now, in a temporary directory of its own.
    pub fn copy_of(src: &Image) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(src.path.file_name().unwrap());
        super::copy_sparse(&src.path, &path);
        let file = File::options().read(true).write(true).open(&path).unwrap();
        Image { _dir: dir, path, file, undo: RefCell::new(None) }
    }
    pub fn spec(&self) -> &str {
        self.path.to_str().unwrap()
    }
    pub fn size(&self) -> u64 {
        self.file.metadata().unwrap().len()
    }
    pub fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.file.read_exact_at(&mut b, off).unwrap();
        b
    }
    pub fn write(&self, off: u64, bytes: &[u8]) {
        if let Some(log) = self.undo.borrow_mut().as_mut() {
            log.push((off, self.read(off, bytes.len())));
        }
        self.file.write_all_at(bytes, off).unwrap();
    }
    pub fn bref(&self, pos: u64) -> Blockref {
        Blockref::read_from_bytes(&self.read(pos, 128)).unwrap()
    }
    pub fn header(&self, copy: usize) -> Box<VolumeData> {
        Box::new(VolumeData::read_from_bytes(&self.read(copy as u64 * ZONE_BYTES, 65536)).unwrap())
    }
    /// Starts recording every write so [`Image::rollback`] can undo them.
    pub fn begin(&self) {
        *self.undo.borrow_mut() = Some(Vec::new());
    }
    /// Every byte of the image's data extents (a sparse file's holes skipped).
    pub fn contents(&self) -> Vec<(u64, Vec<u8>)> {
        data_extents(&self.path).into_iter().map(|(off, len)| (off, self.read(off, len as usize))).collect()
    }
    /// Restores what was there before [`Image::begin`] and stops recording.
    pub fn rollback(&self) {
        let log = self.undo.borrow_mut().take().unwrap_or_default();
        for (off, bytes) in log.into_iter().rev() {
            self.file.write_all_at(&bytes, off).unwrap();
        }
    }
}

/// Data extents of a sparse file: (offset, length).
pub fn data_extents(path: &std::path::Path) -> Vec<(u64, u64)> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut pos = 0i64;
    while pos < len {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        out.push((data as u64, (hole - data) as u64));
        pos = hole;
    }
    out
}

/// The best valid header copy (highest mirror_tid, lowest index on a tie),
/// judged by magic and the three CRCs only.
pub fn best_copy(img: &Image) -> usize {
    let size = img.size();
    (0..4usize)
        .filter(|&i| i as u64 * ZONE_BYTES + HDR_BYTES <= size)
        .filter_map(|i| {
            let v = img.header(i);
            (v.magic.get() == VOLUME_ID_HBO && v.stored_crcs() == v.computed_crcs())
                .then(|| (v.mirror_tid.get(), std::cmp::Reverse(i), i))
        })
        .max()
        .map(|(_, _, i)| i)
        .expect("no valid header copy")
}

/// File offsets of the blockrefs from the best header down to the first one
/// `pred` accepts (single-volume images: logical = physical).
pub fn find_chain(img: &Image, pred: &dyn Fn(&Image, &Blockref) -> bool) -> (usize, Vec<u64>) {
    let copy = best_copy(img);
    let hdr = copy as u64 * ZONE_BYTES;
    let mut path = Vec::new();
    for i in 0..4 {
        if dfs(img, hdr + SROOT_AT + i * 128, pred, &mut path, 0) {
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

/// Recomputes the check code of the blockref at `pos` over the media it
/// points at now; false when it has no sane media (nothing to hash).
pub fn seal_slot(img: &Image, pos: u64) -> bool {
    let mut b = img.bref(pos);
    let size = img.size();
    if !(10..=16).contains(&b.radix()) || b.offset().saturating_add(b.physical_size()) > size {
        return false; // no media (or hostile on purpose): nothing to hash
    }
    let before = b;
    let media = img.read(b.offset(), b.physical_size() as usize);
    set_check(&mut b, &media);
    if b.as_bytes() != before.as_bytes() {
        img.write(pos, b.as_bytes());
    }
    true
}

/// Recomputes the CRCs of header copy `copy`.
pub fn seal_header(img: &Image, copy: usize) {
    let hoff = copy as u64 * ZONE_BYTES;
    let mut v = img.header(copy);
    v.update_crcs();
    img.write(hoff, v.as_bytes());
}

/// Recomputes the check codes along `chain` (deepest first) and the header CRCs.
pub fn reseal(img: &Image, copy: usize, chain: &[u64]) {
    for &pos in chain.iter().rev() {
        seal_slot(img, pos);
    }
    seal_header(img, copy);
}

/// Which tree a blockref belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    Topology,
    Freemap,
}

/// What owns the table a blockref sits in (through any indirect blocks):
/// this decides which blockref types belong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// The volume header's `sroot_blockset`.
    Volume,
    /// The super-root inode: PFS roots.
    SuperRoot,
    /// A PFS root: the PFS's inode index and the root directory's entries.
    PfsRoot,
    Dir,
    /// A regular file or symlink.
    File,
    /// An inode that can own nothing (device, fifo, socket...).
    Nothing,
    /// The freemap tree (header's `freemap_blockset` and freemap nodes).
    Freemap,
}

/// One non-empty blockref reachable from the best header.
#[derive(Clone)]
pub struct Slot {
    /// File offset of the 128-byte blockref.
    pub pos: u64,
    pub tree: TreeKind,
    pub container: Container,
    /// Media offset of the block holding this blockref (None: the header).
    pub parent: Option<u64>,
    /// Kind of that block (None: the header).
    pub parent_kind: Option<BlockrefType>,
    /// Key range the parent allows (an indirect block's or freemap node's range).
    pub lo: u64,
    pub hi: u64,
    /// Keybits of the parent when it is an indirect block or freemap node.
    pub parent_keybits: Option<u8>,
    pub depth: usize,
    /// The blockref as found (before any mutation).
    pub bref: Blockref,
    /// Index into [`Map::inodes`] of the inode whose blockset (through
    /// indirect blocks) holds this blockref.
    pub owner: Option<usize>,
}

/// Where an inode sits in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    SuperRoot,
    PfsRoot,
    /// In a PFS's inode index (keyed by inode number).
    Index,
    /// Any other place (inside a directory, older media).
    Other,
}

/// One inode met in the topology (the first time its block is reached).
#[derive(Clone)]
pub struct InodeSite {
    /// Media offset of the 1 KiB inode.
    pub off: u64,
    /// Index into [`Map::slots`] of the blockref that first reached it.
    pub slot: usize,
    pub role: Role,
    pub data: InodeData,
}

impl InodeSite {
    pub fn obj_type(&self) -> ObjType {
        self.data.meta.obj_type()
    }
}

/// Every blockref reachable from the best header, and the media they reach.
pub struct Map {
    pub copy: usize,
    /// File offset of the header copy in use.
    pub hdr: u64,
    pub size: u64,
    pub vol: Box<VolumeData>,
    pub slots: Vec<Slot>,
    pub inodes: Vec<InodeSite>,
    /// Media offsets of freemap leaves, with the slot that reaches them.
    pub leaves: Vec<(u64, usize)>,
    /// Media offset -> slots whose blockref points there.
    refs: HashMap<u64, Vec<usize>>,
    /// Media offset -> length, for every block with media.
    blocks: BTreeMap<u64, u64>,
    /// 16 KiB chunks touched by topology media.
    pub used_chunks: HashSet<u64>,
    /// Media offset of a node -> the slots in its table.
    kids: HashMap<u64, Vec<usize>>,
    /// Index into `inodes` -> the slots under that inode (through indirect blocks).
    owned: HashMap<usize, Vec<usize>>,
}

const MAX_DEPTH: usize = 64;

impl Map {
    /// Maps `img` under its best header copy.
    pub fn build(img: &Image) -> Map {
        let copy = best_copy(img);
        let hdr = copy as u64 * ZONE_BYTES;
        let mut m = Map {
            copy,
            hdr,
            size: img.size(),
            vol: img.header(copy),
            slots: Vec::new(),
            inodes: Vec::new(),
            leaves: Vec::new(),
            refs: HashMap::new(),
            blocks: BTreeMap::new(),
            used_chunks: HashSet::new(),
            kids: HashMap::new(),
            owned: HashMap::new(),
        };
        let mut seen = HashSet::new();
        let top = Frame {
            tree: TreeKind::Topology,
            container: Container::Volume,
            parent: None,
            parent_kind: None,
            lo: 0,
            hi: u64::MAX,
            parent_keybits: None,
            owner: None,
        };
        m.table(img, hdr + SROOT_AT, 4, top, 0, &mut seen);
        let fm = Frame { tree: TreeKind::Freemap, container: Container::Freemap, ..top };
        m.table(img, hdr + FREEMAP_AT, 4, fm, 0, &mut seen);
        m
    }

    fn table(&mut self, img: &Image, base: u64, n: u64, f: Frame, depth: usize, seen: &mut HashSet<u64>) {
        for i in 0..n {
            let pos = base + i * 128;
            let b = img.bref(pos);
            if b.kind() == BlockrefType::Empty {
                continue;
            }
            let idx = self.slots.len();
            if let Some(p) = f.parent {
                self.kids.entry(p).or_default().push(idx);
            }
            if let Some(o) = f.owner {
                self.owned.entry(o).or_default().push(idx);
            }
            self.slots.push(Slot {
                pos,
                tree: f.tree,
                container: f.container,
                parent: f.parent,
                parent_kind: f.parent_kind,
                lo: f.lo,
                hi: f.hi,
                parent_keybits: f.parent_keybits,
                depth,
                bref: b,
                owner: f.owner,
            });
            self.descend(img, idx, f, depth, seen);
        }
    }

    fn descend(&mut self, img: &Image, idx: usize, f: Frame, depth: usize, seen: &mut HashSet<u64>) {
        let b = self.slots[idx].bref;
        let (off, len) = (b.offset(), b.physical_size());
        if !(10..=16).contains(&b.radix()) || off.saturating_add(len) > self.size {
            return;
        }
        self.refs.entry(off).or_default().push(idx);
        let e = self.blocks.entry(off).or_insert(len);
        *e = (*e).max(len);
        if f.tree == TreeKind::Topology {
            let mut c = off & !0x3fff;
            while c < off + len {
                self.used_chunks.insert(c);
                c += 0x4000;
            }
        }
        if !seen.insert(off) || depth >= MAX_DEPTH {
            return;
        }
        let node = |container, lo, hi, keybits| Frame {
            container,
            parent: Some(off),
            parent_kind: Some(b.kind()),
            lo,
            hi,
            parent_keybits: keybits,
            ..f
        };
        match b.kind() {
            BlockrefType::Inode if len >= 1024 => {
                let data = InodeData::read_from_bytes(&img.read(off, 1024)).unwrap();
                let role = match f.container {
                    Container::Volume => Role::SuperRoot,
                    Container::SuperRoot => Role::PfsRoot,
                    Container::PfsRoot if b.key.get() >> 63 == 0 => Role::Index,
                    _ => Role::Other,
                };
                let container = match (role, data.meta.obj_type()) {
                    (Role::SuperRoot, _) => Container::SuperRoot,
                    (Role::PfsRoot, _) => Container::PfsRoot,
                    (_, ObjType::Directory) => Container::Dir,
                    (_, ObjType::Regfile | ObjType::Softlink) => Container::File,
                    _ => Container::Nothing,
                };
                let directdata = data.meta.is_directdata();
                let owner = self.inodes.len();
                self.inodes.push(InodeSite { off, slot: idx, role, data });
                if !directdata {
                    let mut sub = node(container, 0, u64::MAX, None);
                    sub.owner = Some(owner);
                    self.table(img, off + 0x200, 4, sub, depth + 1, seen);
                }
            }
            BlockrefType::Indirect | BlockrefType::FreemapNode => {
                let sub = node(f.container, b.key.get(), b.key_end(), Some(b.keybits));
                self.table(img, off, len / 128, sub, depth + 1, seen);
            }
            BlockrefType::FreemapLeaf => self.leaves.push((off, idx)),
            _ => {}
        }
    }

    /// The block (offset, length) holding file offset `pos`, if any.
    pub fn block_at(&self, pos: u64) -> Option<(u64, u64)> {
        let (&start, &len) = self.blocks.range(..=pos).next_back()?;
        (pos < start + len).then_some((start, len))
    }

    /// The slots in the table of the node whose media is at `off`.
    pub fn children(&self, off: u64) -> impl Iterator<Item = &Slot> {
        self.kids.get(&off).into_iter().flatten().map(|&i| &self.slots[i])
    }

    /// The slots under inode `inode` (an index into `inodes`), through indirect blocks.
    pub fn owned_by(&self, inode: usize) -> impl Iterator<Item = &Slot> {
        self.owned.get(&inode).into_iter().flatten().map(|&i| &self.slots[i])
    }

    /// Slots pointing at media offset `off`.
    pub fn referrers(&self, off: u64) -> &[usize] {
        self.refs.get(&off).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Makes the image consistent again after writes at `dirty` (file
    /// offsets): every blockref pointing at a block that changed gets its
    /// check code recomputed, then its parents', up to the header, whose
    /// CRCs are recomputed last. Blockrefs that now point elsewhere (mutated
    /// on purpose) are left to the caller ([`seal_slot`]).
    pub fn reseal(&self, img: &Image, dirty: &[u64]) {
        let mut work: VecDeque<u64> = dirty.iter().copied().collect();
        let mut budget = 1_000_000usize;
        while let Some(p) = work.pop_front() {
            budget = budget.checked_sub(1).expect("reseal does not converge");
            if (self.hdr..self.hdr + HDR_BYTES).contains(&p) {
                continue;
            }
            let Some((start, _)) = self.block_at(p) else { continue };
            for &si in self.referrers(start) {
                let pos = self.slots[si].pos;
                let before = img.bref(pos);
                if before.offset() != start {
                    continue;
                }
                seal_slot(img, pos);
                if img.bref(pos).as_bytes() != before.as_bytes() {
                    work.push_back(pos);
                }
            }
        }
        seal_header(img, self.copy);
    }

    /// Inode sites by inode number, within the PFS tree (the super-root excluded).
    pub fn inums(&self) -> BTreeSet<u64> {
        self.inodes.iter().filter(|i| i.role != Role::SuperRoot).map(|i| i.data.meta.inum.get()).collect()
    }
}

#[derive(Clone, Copy)]
struct Frame {
    tree: TreeKind,
    container: Container,
    parent: Option<u64>,
    parent_kind: Option<BlockrefType>,
    lo: u64,
    hi: u64,
    parent_keybits: Option<u8>,
    owner: Option<usize>,
}
