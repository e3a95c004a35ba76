//! The model of a PFS's tree for model-based tests of the write engine:
//! a seeded generator (operations, names, file contents), the expected
//! tree (path -> directory, file digest or symlink target), a snapshot of
//! an image's tree read back through the library's reader, the difference
//! between the two, and a check of the shape of the media tree (indirect
//! blocks) the write engine promises.

use hammer2::format::dirhash::dirhash;
use hammer2::format::{Blockref, BlockrefType, ObjType};
use hammer2::read::file::{read_file, read_link, Sink, WriteSink};
use hammer2::read::pfs::{Inode, Pfs};
use hammer2::read::tree::{location, Tree};
use hammer2::Hammer2;
use std::collections::{BTreeMap, HashMap};

/// splitmix64: small, fast, and the same on every platform.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// How a file's bytes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Incompressible.
    Random,
    /// Words from a small vocabulary: LZ4 and zlib shrink it well.
    Text,
    /// All zeros: no DATA blocks at all (holes), or zero embedded bytes.
    Zero,
    /// 64 KiB blocks that are all zero (holes), random, or zero with a
    /// small island of data; the tail block too.
    Sparse,
    /// 4 KiB pieces alternating random, text and zeros inside each block.
    Mixed,
    /// Mostly holes: about one 64 KiB block of data per MiB, so a file of
    /// tens of MiB costs little and still needs data indirect blocks at
    /// two levels.
    Scattered,
}

pub const FILLS: [Fill; 5] = [Fill::Random, Fill::Text, Fill::Zero, Fill::Sparse, Fill::Mixed];

/// A generated file's contents: reproducible from these three values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    pub seed: u64,
    pub size: u64,
    pub fill: Fill,
}

const WORDS: &[&str] = &[
    "hammer2 ",
    "chain ",
    "flush ",
    "freemap ",
    "indirect ",
    "blockref ",
    "inode ",
    "dirent ",
    "volume ",
    "\n",
    "0123456789 ",
    "copy-on-write ",
    "bulkfree ",
    "the ",
    "of ",
    "a ",
];

impl Content {
    pub fn bytes(&self) -> Vec<u8> {
        let n = self.size as usize;
        let mut rng = Rng::new(self.seed);
        let mut out = vec![0u8; n];
        match self.fill {
            Fill::Random => rng.fill(&mut out),
            Fill::Text => text(&mut rng, &mut out),
            Fill::Zero => {}
            Fill::Sparse => {
                for block in out.chunks_mut(65536) {
                    match rng.below(3) {
                        0 => {}
                        1 => rng.fill(block),
                        _ => {
                            let at = rng.below(block.len() as u64) as usize;
                            let end = (at + 1 + rng.below(200) as usize).min(block.len());
                            rng.fill(&mut block[at..end]);
                        }
                    }
                }
            }
            Fill::Scattered => {
                for mib in out.chunks_mut(1 << 20) {
                    if rng.chance(2, 3) {
                        let at = (rng.below(16) as usize * 65536).min(mib.len() - 1);
                        let end = (at + rng.range(1, 65536) as usize).min(mib.len());
                        rng.fill(&mut mib[at..end]);
                    }
                }
            }
            Fill::Mixed => {
                for (i, piece) in out.chunks_mut(4096).enumerate() {
                    match (i + rng.below(2) as usize) % 3 {
                        0 => rng.fill(piece),
                        1 => text(&mut rng, piece),
                        _ => {}
                    }
                }
            }
        }
        out
    }

    pub fn digest(&self) -> u64 {
        xxhash_rust::xxh64::xxh64(&self.bytes(), 0)
    }
}

fn text(rng: &mut Rng, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let w = rng.pick(WORDS).as_bytes();
        let k = w.len().min(out.len() - i);
        out[i..i + k].copy_from_slice(&w[..k]);
        i += k;
    }
}

/// One path of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// Size and xxh64 of the contents; how they were made when we made them.
    File {
        size: u64,
        digest: u64,
        content: Option<Content>,
    },
    Symlink(Vec<u8>),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir)
    }
    /// Equal as far as the media can tell (the generator is not stored).
    pub fn same(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::File { size: a, digest: x, .. }, Node::File { size: b, digest: y, .. }) => {
                a == b && x == y
            }
            (a, b) => a == b,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Node::Dir => "directory".into(),
            Node::File { size, digest, content } => {
                let how = content.map(|c| format!(" {:?} seed {:#x}", c.fill, c.seed)).unwrap_or_default();
                format!("file of {size} bytes, xxh64 {digest:016x}{how}")
            }
            Node::Symlink(t) => format!("symlink to {:?}", String::from_utf8_lossy(t)),
        }
    }
}

/// `dir/name` in the model's spelling (root `/`, no trailing slash).
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory holding `path`.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The expected tree of one PFS. Keeps lists of directories and of
/// removable leaves (files and symlinks) for uniform random choice.
#[derive(Clone, Default)]
pub struct Model {
    pub nodes: BTreeMap<String, Node>,
    dirs: Vec<String>,
    leaves: Vec<String>,
}

impl Model {
    pub fn from_nodes(nodes: BTreeMap<String, Node>) -> Model {
        let mut m = Model::default();
        m.nodes.insert("/".into(), Node::Dir);
        m.dirs.push("/".into());
        for (p, n) in nodes {
            if p != "/" {
                m.insert(p, n);
            }
        }
        m
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn insert(&mut self, path: String, node: Node) {
        assert!(self.nodes.get(parent(&path)).is_some_and(Node::is_dir), "model: no directory for {path}");
        if node.is_dir() {
            self.dirs.push(path.clone());
        } else {
            self.leaves.push(path.clone());
        }
        let old = self.nodes.insert(path, node);
        assert!(old.is_none(), "model: inserted twice");
    }

    pub fn remove(&mut self, path: &str) -> Node {
        let node = self.nodes.remove(path).expect("model: removing a missing path");
        let list = if node.is_dir() { &mut self.dirs } else { &mut self.leaves };
        let i = list.iter().position(|p| p == path).expect("indexed");
        list.swap_remove(i);
        node
    }

    /// Entries directly in `dir`.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| p.len() > prefix.len() && !p[prefix.len()..].contains('/'))
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn is_empty_dir(&self, dir: &str) -> bool {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        !self.nodes.range(prefix.clone()..).any(|(p, _)| p.starts_with(&prefix) && p.len() > prefix.len())
    }

    pub fn dirs(&self) -> &[String] {
        &self.dirs
    }
    pub fn leaves(&self) -> &[String] {
        &self.leaves
    }
    pub fn files(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter().filter(|(_, n)| matches!(n, Node::File { .. }))
    }
}

/// Characters of random names: mostly plain (the first 26), with dirhash
/// separators, shell-unfriendly and control characters, and multi-byte
/// UTF-8.
const NAME_CHARS: &str = "abcdefghkmnprstxyzAQZ01279.-_~ +,=#é日\u{1f600}\n\t\u{1}\u{7f}\\*?:";

/// A random name of `len` bytes; never `.` or `..`.
pub fn random_name(rng: &mut Rng, len: usize) -> String {
    let chars: Vec<char> = NAME_CHARS.chars().collect();
    loop {
        let mut s = String::new();
        while s.len() < len {
            let c = if rng.chance(7, 8) { chars[rng.below(26) as usize] } else { *rng.pick(&chars) };
            // A multi-byte character that would overshoot: a plain one.
            s.push(if s.len() + c.len_utf8() > len { 'q' } else { c });
        }
        if s != "." && s != ".." {
            return s;
        }
    }
}

/// A name length: mostly short, often around the 64 bytes a blockref's
/// check area holds, sometimes up to the 255-byte limit.
pub fn random_name_len(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0..=10 => rng.range(1, 16) as usize,
        11..=13 => rng.range(17, 62) as usize,
        14..=16 => rng.range(63, 66) as usize,
        17..=18 => rng.range(67, 254) as usize,
        _ => *rng.pick(&[1, 64, 65, 200, 254, 255]),
    }
}

/// Groups of names with the same 64-bit directory hash (each at least two
/// names), found by brute force: names made of the same pieces in any order
/// with any separators share the high 32 bits of the hash (the sum of the
/// pieces' CRCs), so only 16 bits remain to collide by chance.
pub fn collision_groups(pieces: &[&str; 3]) -> Vec<Vec<String>> {
    const SEP: [char; 4] = ['.', '-', '_', '~'];
    let mut seps: Vec<String> = Vec::new();
    for len in 1..=3u32 {
        for n in 0..4usize.pow(len) {
            seps.push((0..len).map(|i| SEP[(n >> (2 * i)) & 3]).collect());
        }
    }
    let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let mut by_hash: HashMap<u64, Vec<String>> = HashMap::new();
    for p in perms {
        for s1 in &seps {
            for s2 in &seps {
                let name = format!("{}{s1}{}{s2}{}", pieces[p[0]], pieces[p[1]], pieces[p[2]]);
                by_hash.entry(dirhash(name.as_bytes())).or_default().push(name);
            }
        }
    }
    let mut groups: Vec<(u64, Vec<String>)> = by_hash.into_iter().filter(|(_, v)| v.len() >= 2).collect();
    groups.sort();
    groups.into_iter().map(|(_, v)| v).collect()
}

/// What the library's reader finds in a PFS: the same shape as the model.
pub fn snapshot(spec: &str) -> Result<BTreeMap<String, Node>, String> {
    snapshot_pfs(spec, None)
}

/// [`snapshot`] of the PFS labelled `label` (None: the default one).
pub fn snapshot_pfs(spec: &str, label: Option<&str>) -> Result<BTreeMap<String, Node>, String> {
    let fs = Hammer2::open_path(spec).map_err(|e| format!("open {spec}: {e}"))?;
    let tree = Tree::new(&fs);
    let pfs = match label {
        Some(l) => Pfs::find(&tree, l),
        None => Pfs::default(&tree),
    }
    .map_err(|e| format!("PFS {label:?}: {e}"))?;
    let mut out = BTreeMap::new();
    out.insert("/".to_string(), Node::Dir);
    let root = pfs.root.clone();
    walk_dir(&pfs, &root, "/", &mut out, 0)?;
    Ok(out)
}

struct HashSink(xxhash_rust::xxh64::Xxh64);

impl Sink for HashSink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.update(bytes);
        Ok(())
    }
    fn hole(&mut self, mut n: u64) -> std::io::Result<()> {
        static ZEROS: [u8; 65536] = [0; 65536];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.0.update(&ZEROS[..k]);
            n -= k as u64;
        }
        Ok(())
    }
}

fn walk_dir<'a>(
    pfs: &Pfs<'a>,
    dir: &Inode<'a>,
    path: &str,
    out: &mut BTreeMap<String, Node>,
    depth: usize,
) -> Result<(), String> {
    if depth > 200 {
        return Err(format!("{path}: directories nest more than 200 deep"));
    }
    let entries = pfs.readdir(dir).map_err(|e| format!("readdir {path}: {e}"))?;
    let mut keys = std::collections::HashSet::new();
    for e in entries {
        let name = String::from_utf8(e.name.clone())
            .map_err(|_| format!("{path}: entry name {:?} is not UTF-8", e.name_lossy()))?;
        let child = join(path, &name);
        if !keys.insert(e.key) {
            return Err(format!("{child}: directory key {:#x} used twice in {path}", e.key));
        }
        if e.key & !hammer2::format::DIRHASH_LOMASK
            != dirhash(name.as_bytes()) & !hammer2::format::DIRHASH_LOMASK
        {
            return Err(format!(
                "{child}: key {:#x} is not the name's hash {:#x}",
                e.key,
                dirhash(name.as_bytes())
            ));
        }
        match pfs.lookup_name(dir, name.as_bytes()) {
            Ok(Some(found)) if found.inum == e.inum => {}
            Ok(other) => {
                return Err(format!(
                    "{child}: readdir lists inode {} but a lookup by name finds {:?}",
                    e.inum,
                    other.map(|o| o.inum)
                ))
            }
            Err(err) => return Err(format!("{child}: lookup by name: {err}")),
        }
        let ino = pfs.inode(e.inum).map_err(|err| format!("{child}: inode {}: {err}", e.inum))?;
        if ino.obj_type() != e.obj_type {
            return Err(format!(
                "{child}: entry says {:?}, inode {} is {:?}",
                e.obj_type,
                e.inum,
                ino.obj_type()
            ));
        }
        let node = match ino.obj_type() {
            ObjType::Directory => Node::Dir,
            ObjType::Regfile => {
                let mut sink = HashSink(xxhash_rust::xxh64::Xxh64::new(0));
                let size =
                    read_file(&pfs.tree, &ino, &mut sink).map_err(|err| format!("read {child}: {err}"))?;
                Node::File { size, digest: sink.0.digest(), content: None }
            }
            ObjType::Softlink => {
                Node::Symlink(read_link(&pfs.tree, &ino).map_err(|err| format!("readlink {child}: {err}"))?)
            }
            other => return Err(format!("{child}: unexpected object type {other:?}")),
        };
        let is_dir = node.is_dir();
        out.insert(child.clone(), node);
        if is_dir {
            walk_dir(pfs, &ino, &child, out, depth + 1)?;
        }
    }
    Ok(())
}

/// The contents of one file of PFS `label` (None: the default one) as the
/// library reads it.
pub fn read_path(spec: &str, label: Option<&str>, path: &str) -> Result<Vec<u8>, String> {
    let fs = Hammer2::open_path(spec).map_err(|e| e.to_string())?;
    let tree = Tree::new(&fs);
    let pfs = match label {
        Some(l) => Pfs::find(&tree, l),
        None => Pfs::default(&tree),
    }
    .map_err(|e| e.to_string())?;
    let ino = pfs.resolve(path).map_err(|e| format!("{path}: {e}"))?;
    let mut sink = WriteSink(Vec::new());
    read_file(&tree, &ino, &mut sink).map_err(|e| format!("{path}: {e}"))?;
    Ok(sink.0)
}

/// Differences between the model and what was read from PFS `label` (at
/// most `limit` lines).
pub fn diff(
    model: &Model,
    seen: &BTreeMap<String, Node>,
    spec: &str,
    label: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = model.nodes.iter().peekable();
    let mut b = seen.iter().peekable();
    while out.len() < limit {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((pa, na)), Some((pb, nb))) if pa == pb => {
                if !na.same(nb) {
                    let mut line = format!("{pa}: expected {}, read {}", na.describe(), nb.describe());
                    if let Node::File { content: Some(c), .. } = na {
                        if let Ok(got) = read_path(spec, label, pa) {
                            let want = c.bytes();
                            let at = want.iter().zip(&got).position(|(x, y)| x != y);
                            match at {
                                Some(i) => line += &format!(" (first difference at byte {i:#x})"),
                                None => line += &format!(" (lengths {} vs {})", want.len(), got.len()),
                            }
                        }
                    }
                    out.push(line);
                }
                a.next();
                b.next();
            }
            (Some((pa, na)), Some((pb, _))) if pa < pb => {
                out.push(format!("{pa}: missing (expected {})", na.describe()));
                a.next();
            }
            (Some((pa, na)), None) => {
                out.push(format!("{pa}: missing (expected {})", na.describe()));
                a.next();
            }
            (_, Some((pb, nb))) => {
                out.push(format!("{pb}: unexpected {}", nb.describe()));
                b.next();
            }
        }
    }
    out
}

/// What the media tree of the default PFS looks like.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    /// Deepest chain of indirect blocks under the PFS root (the inode
    /// index and the root directory), under any other directory, under
    /// any file.
    pub index_depth: usize,
    pub dir_depth: usize,
    pub file_depth: usize,
    pub indirect_blocks: usize,
    /// The first indirect block whose check method is not its parent's
    /// (`hammer2_chain_create_indirect` gives a new block its parent's).
    pub foreign_check: Option<String>,
}

/// Walks the default PFS's media tree and checks the shape the write engine
/// promises: no indirect block is empty (deletions remove them) and none
/// holds a single leaf (that one is folded back into its parent). Returns
/// the shape (with the first indirect block whose check method differs from
/// its parent's), or the first violation.
pub fn shape(spec: &str) -> Result<Shape, String> {
    let fs = Hammer2::open_path(spec).map_err(|e| e.to_string())?;
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree).map_err(|e| e.to_string())?;
    let mut s = Shape::default();
    let root = pfs.root.bref;
    walk_node(&tree, root, &location(root, 0, 0), 0, Owner::PfsRoot, &mut s, 0)?;
    Ok(s)
}

#[derive(Clone, Copy, PartialEq)]
enum Owner {
    PfsRoot,
    Dir,
    File,
}

fn walk_node(
    tree: &Tree<'_>,
    b: &Blockref,
    loc: &hammer2::error::Location,
    ind_depth: usize,
    owner: Owner,
    s: &mut Shape,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("tree deeper than 64 at {loc:?}"));
    }
    let children = tree.children(b, loc).map_err(|e| e.to_string())?;
    let live = children.iter().filter(|c| c.kind() != BlockrefType::Empty).count();
    if b.kind() == BlockrefType::Indirect {
        s.indirect_blocks += 1;
        let what = format!(
            "indirect block {:#x} (key {:#x}/{}) at depth {ind_depth} below an inode",
            b.data_off.get(),
            b.key.get(),
            b.keybits
        );
        if live == 0 {
            return Err(format!("{what} is empty"));
        }
        // A split may move every entry of a full table into the new
        // block (hammer2_chain_create_indirect does the same when the keys
        // are dense, as inode numbers are), leaving a parent whose one
        // entry is an indirect block; a single *leaf* entry only comes
        // from deletions, which must fold it into the parent.
        let single = children.iter().find(|c| c.kind() != BlockrefType::Empty);
        if live == 1 && single.is_some_and(|c| c.kind() != BlockrefType::Indirect) {
            return Err(format!(
                "{what} holds a single entry ({}), not folded into its parent",
                single.unwrap().kind()
            ));
        }
        let d = match owner {
            Owner::PfsRoot => &mut s.index_depth,
            Owner::Dir => &mut s.dir_depth,
            Owner::File => &mut s.file_depth,
        };
        *d = (*d).max(ind_depth);
    }
    let parent_off = b.data_off.get();
    for (i, c) in children.iter().enumerate() {
        let cloc = location(c, parent_off, i);
        if c.kind() == BlockrefType::Indirect
            && c.check_method() != b.check_method()
            && s.foreign_check.is_none()
        {
            s.foreign_check = Some(format!(
                "indirect block {:#x} (key {:#x}/{}) is checked by {}, its parent {:#x} (key {:#x}/{}) by {}",
                c.data_off.get(),
                c.key.get(),
                c.keybits,
                c.check_method(),
                b.data_off.get(),
                b.key.get(),
                b.keybits,
                b.check_method()
            ));
        }
        match c.kind() {
            BlockrefType::Indirect => walk_node(tree, c, &cloc, ind_depth + 1, owner, s, depth + 1)?,
            BlockrefType::Inode => {
                let ip = tree.inode(c, &cloc).map_err(|e| e.to_string())?;
                let o = if ip.meta.obj_type() == ObjType::Directory { Owner::Dir } else { Owner::File };
                walk_node(tree, c, &cloc, 0, o, s, depth + 1)?;
            }
            _ => {}
        }
    }
    Ok(())
}
