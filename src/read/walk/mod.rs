//! The traversal engine: the one place that descends HAMMER2's media trees.
//!
//! Every reader goes through it: full walks (fsck's passes, `show`, the
//! freemap dump), key-range scans (inode and directory lookups), file blocks
//! in key order, and the write engine's loads. Callers supply a [`Visitor`];
//! the engine decides how a blockref is reached and guarantees the bounds:
//!
//! - **Depth**: nesting is capped at [`MAX_DEPTH`]; a deeper blockref is
//!   reported as [`CorruptKind::TooDeep`] and not read.
//! - **Cycles**: a blockref pointing at a node on the current path is
//!   reported as [`CorruptKind::Cycle`] and not read.
//! - **Sharing**: every block with media other than DATA (inodes, indirect
//!   blocks, dirent name blocks, freemap nodes and leaves) is recorded by
//!   offset the first time it is reached; reaching it again yields
//!   [`Reach::Shared`] and the engine never descends it twice. HAMMER2
//!   shares blocks legitimately (a snapshot's root points at its source's
//!   subtrees; writers deduplicate DATA blocks, which are leaves and never
//!   recorded), so sharing is not an error by itself: the visitor learns
//!   which *group* (e.g. which PFS, see [`Visitor::group`]) reached the
//!   block first and decides.
//! - **Work**: every blockref met is charged to a budget. Because no node is
//!   entered twice, a traversal meets at most one blockref per 128 bytes of
//!   node media, so the default budget (the logical size / 128, plus slack)
//!   can only be exhausted by a bug; callers may set a tighter one. Running
//!   out is an error ([`CorruptKind::Budget`]), never a hang.
//!
//! The engine reads node media as mapped slices (bounds-checked) and
//! verifies check codes of everything it reads. DATA blocks are never
//! handed out as mapped slices ([`Reach::Unread`]): by choice of the
//! caller they are either only bounds-checked, so that file reads copy them
//! out with pread and fsck verifies them on its own worker threads, or
//! verified here, copied with pread into a reused per-thread buffer
//! ([`with_data`]) so that bulk data never stays resident through the
//! mapping. When a table's DATA blocks, with those its inodes hold directly
//! ([`Options::look_ahead`]: a small file's blocks sit in its inode, so a
//! table of inodes is where they can be batched), add up to
//! [`PARALLEL_BYTES`] or more, they are verified on every core before the
//! table's entries are visited (in order, as always); the outcomes are
//! handed over as each block is reached. That look-ahead reads at most one
//! inode and four DATA blocks per entry of a table entered, so work stays
//! linear in the blockrefs met. ([`walk`] with [`WalkOptions::read_data`]
//! hands DATA blocks to its callback as mapped bytes.)
//!
//! Node blocks are verified as they are reached, on the walking thread,
//! except with [`Options::nodes_ahead`] (set by [`walk`]): a table whose
//! node blocks add up to [`PARALLEL_NODE_BYTES`] (a leaf of an inode index)
//! has them verified on every core before its entries are visited. Engines
//! walking the same volumes at the same time may share the check codes
//! they verified ([`Checked`]), so that each block is hashed once.
//!
//! Recursion depth of the engine itself is bounded by [`MAX_DEPTH`], so the
//! machine stack stays small whatever the input.

use crate::error::{CorruptKind, Corruption, Error, Location, Result};
use crate::format::check::{self, CheckOutcome};
use crate::format::{Blockref, BlockrefType, InodeData, INODE_BYTES, RADIX_MAX, RADIX_MIN};
use crate::volume::Hammer2;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

mod checked;
pub use checked::Checked;
use std::collections::HashMap;
use std::ops::AddAssign;

/// A table's DATA blocks are verified in parallel when they add up to at
/// least this many bytes (below it, waking other threads costs more than
/// it saves: most small files' blocks sit in their inode's blockset).
pub const PARALLEL_BYTES: usize = 256 << 10;

/// A table's node blocks are verified ahead in parallel (with
/// [`Options::nodes_ahead`]) when they add up to at least this many bytes:
/// a leaf of a large inode index holds hundreds of 1 KiB inodes.
pub const PARALLEL_NODE_BYTES: usize = 64 << 10;

thread_local! {
    /// The buffer DATA blocks are copied into for verification.
    static DATA_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Copies the `len` bytes of media at logical `off` with pread into this
/// thread's reused buffer and hands them to `f` (which must not call
/// `with_data` itself).
pub fn with_data<R>(
    fs: &Hammer2,
    off: u64,
    len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, CorruptKind> {
    DATA_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let slice = &mut buf[..len];
        match fs.device.read_into(off, slice) {
            Ok(()) => Ok(f(slice)),
            Err(Error::OutOfBounds { .. }) => Err(CorruptKind::OutOfRange { offset: off, len: len as u64 }),
            Err(e) => Err(CorruptKind::Unreadable { offset: off, len: len as u64, why: e.to_string() }),
        }
    })
}

/// Verifies the check code of a DATA block at `(off, len)`.
fn verify_data(fs: &Hammer2, bref: &Blockref, off: u64, len: usize) -> Result<CheckOutcome, CorruptKind> {
    with_data(fs, off, len, |media| check::verify(bref, media))
}

/// Deepest nesting a legitimate tree reaches is far below this.
pub const MAX_DEPTH: usize = 64;

/// Which tree to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The super-root topology (`sroot_blockset`).
    Topology,
    /// The freemap (`freemap_blockset`).
    Freemap,
}

impl Root {
    /// The volume header's blockset for this tree.
    pub fn blockset(self, fs: &Hammer2) -> &[Blockref] {
        match self {
            Root::Topology => &fs.voldata.sroot_blockset,
            Root::Freemap => &fs.voldata.freemap_blockset,
        }
    }
}

/// Allowed physical radix for a blockref type.
pub fn radix_ok(kind: BlockrefType, radix: u8) -> bool {
    match kind {
        BlockrefType::FreemapNode | BlockrefType::FreemapLeaf => radix == 15,
        _ => (RADIX_MIN..=RADIX_MAX).contains(&radix),
    }
}

/// Where a blockref's media lies: `Ok(None)` when it has none (radix 0),
/// after checking the radix suits its type.
pub fn media_extent(bref: &Blockref) -> Result<Option<(u64, usize)>, CorruptKind> {
    match bref.radix() {
        0 => Ok(None),
        r if radix_ok(bref.kind(), r) => Ok(Some((bref.offset(), 1usize << r))),
        r => Err(CorruptKind::BadRadix(r)),
    }
}

/// A blockref's media as mapped bytes (`Ok(None)` when it has none), radix
/// and bounds checked; check codes are left to the caller.
pub fn read_media<'a>(fs: &'a Hammer2, bref: &Blockref) -> Result<Option<&'a [u8]>, CorruptKind> {
    let Some((off, len)) = media_extent(bref)? else { return Ok(None) };
    fs.device.read(off, len).map(Some).map_err(|_| CorruptKind::OutOfRange { offset: off, len: len as u64 })
}

/// The blockrefs an internal node's media holds (empty for leaves).
pub fn children<'a>(bref: &Blockref, media: &'a [u8]) -> &'a [Blockref] {
    match bref.kind() {
        BlockrefType::Inode => match InodeData::from_bytes(media) {
            Some(ip) if !ip.meta.is_directdata() && media.len() >= INODE_BYTES => {
                Blockref::table(&media[512..1024])
            }
            _ => &[],
        },
        BlockrefType::Indirect | BlockrefType::FreemapNode => Blockref::table(media),
        _ => &[],
    }
}

/// How the engine reached a blockref.
#[derive(Debug, Clone)]
pub enum Reach<'a> {
    /// The blockref has no media (radix 0): inline dirents, empty files.
    NoMedia,
    /// Its media, read and (see `check`) verified.
    Media(&'a [u8]),
    /// A DATA block, whose bytes the engine never hands out: its extent
    /// was checked against the volumes and, with [`DataBlocks::Verify`],
    /// its check code verified (`check`) on a copy.
    Unread { offset: u64, len: usize },
    /// The block was already reached in this traversal, first by `group`
    /// as a blockref of type `first`; it is not descended again. Its media
    /// is read and its check code verified (`check`): the blockref's own
    /// check is this reference's, cheap, and may be the damaged one.
    Shared { group: u32, first: BlockrefType, media: &'a [u8] },
    /// It could not be reached or read (bad radix, outside every volume,
    /// too deep, a cycle, an exhausted budget).
    Failed(CorruptKind),
}

/// One blockref met by the engine.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// Nesting below the starting table (0 for its entries).
    pub depth: usize,
    /// Slot in the parent's table.
    pub index: usize,
    /// `data_off` of the parent node (0 for the volume header).
    pub parent_off: u64,
    pub bref: &'a Blockref,
    pub reach: Reach<'a>,
    /// Check-code outcome (NotChecked when nothing was read).
    pub check: CheckOutcome,
}

impl<'a> Node<'a> {
    pub fn location(&self) -> Location {
        Location::of(self.bref, self.parent_off, self.index)
    }

    /// The media when it was read and its check code holds (or it carries none).
    pub fn media(&self) -> Option<&'a [u8]> {
        match (&self.reach, &self.check) {
            (Reach::Media(m), CheckOutcome::Ok | CheckOutcome::NotChecked) => Some(m),
            _ => None,
        }
    }

    /// The media as read, whatever its check code says.
    pub fn raw_media(&self) -> Option<&'a [u8]> {
        match self.reach {
            Reach::Media(m) => Some(m),
            _ => None,
        }
    }

    /// Where the media lies (offset, length), when it was reached inside
    /// the volumes (read or not).
    pub fn extent(&self) -> Option<(u64, usize)> {
        match self.reach {
            Reach::Media(m) | Reach::Shared { media: m, .. } => Some((self.bref.offset(), m.len())),
            Reach::Unread { offset, len } => Some((offset, len)),
            Reach::NoMedia | Reach::Failed(_) => None,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.reach, Reach::Shared { .. })
    }

    /// What went wrong reaching the blockref or verifying its media.
    pub fn error_kind(&self) -> Option<CorruptKind> {
        if let Reach::Failed(k) = &self.reach {
            return Some(k.clone());
        }
        match &self.check {
            CheckOutcome::Mismatch { expected, found } => Some(CorruptKind::CheckMismatch {
                method: self.bref.check_method().to_string(),
                expected: expected.clone(),
                found: found.clone(),
            }),
            CheckOutcome::UnknownMethod(m) => Some(CorruptKind::UnknownCheck(*m)),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<Corruption> {
        self.error_kind().map(|kind| Corruption { kind, location: self.location() })
    }

    /// The error as a library error, when there is one.
    pub fn result(&self) -> Result<()> {
        match self.error() {
            Some(c) => Err(Error::Corrupt(c)),
            None => Ok(()),
        }
    }

    /// The blockrefs below this node (empty for leaves, shared or failed nodes).
    pub fn children(&self) -> &'a [Blockref] {
        self.media().map(|m| children(self.bref, m)).unwrap_or(&[])
    }
}

/// Contribution of visitors that pass nothing up to parents.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Nothing;

impl AddAssign for Nothing {
    fn add_assign(&mut self, _: Nothing) {}
}

/// What the visitor wants done with a node.
pub enum Step<C, O> {
    /// Visit its children with this context, then call [`Visitor::leave`].
    Descend(C),
    /// Do not descend; this is the node's contribution to its parent.
    Leaf(O),
    /// End the traversal now.
    Stop,
}

/// A traversal's client.
pub trait Visitor<'a> {
    /// What a parent passes to its children (`()` when nothing).
    type Ctx;
    /// What a subtree passes up to its parent (summed over siblings).
    type Out: Default + AddAssign;

    /// Called first for every non-empty blockref (in range) of every table
    /// visited, before anything is read: `Some` skips the blockref with that
    /// contribution (its media is not read, [`visit`](Self::visit) is not
    /// called). For visitors that decide from the blockref alone, e.g. by
    /// its `mirror_tid`, so that a traversal reads only what it needs.
    fn skip(&mut self, bref: &Blockref, ctx: &Self::Ctx) -> Option<Self::Out> {
        let _ = (bref, ctx);
        None
    }

    /// Called for every non-empty blockref (in range) of every table visited
    /// (and not skipped).
    fn visit(&mut self, node: &Node<'a>, ctx: &Self::Ctx) -> Step<Self::Ctx, Self::Out>;

    /// Called after the children of a node the visitor descended, with the
    /// sum of their contributions; returns the node's own contribution.
    fn leave(&mut self, node: &Node<'a>, ctx: &Self::Ctx, below: Self::Out) -> Self::Out {
        let _ = (node, ctx);
        below
    }

    /// Tag recorded with each block reached for the first time (e.g. the
    /// PFS being walked), reported back in [`Reach::Shared`].
    fn group(&self) -> u32 {
        0
    }
}

/// What to do with DATA blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBlocks {
    /// Verify their check codes (on copies, see [`with_data`]).
    Verify,
    /// Check their extent only ([`Reach::Unread`]).
    Skip,
}

/// Traversal options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_depth: usize,
    /// Verify check codes of what is read.
    pub verify: bool,
    pub data: DataBlocks,
    /// Only blockrefs whose key range meets `[lo, hi]` are visited.
    pub range: (u64, u64),
    /// Visit each table's entries in key order (file contents) rather
    /// than slot order.
    pub key_order: bool,
    /// Most blockrefs to meet; `None` derives it from the volume set's size.
    pub budget: Option<u64>,
    /// With [`DataBlocks::Verify`], also verify ahead the DATA blocks that
    /// a table's inodes hold directly (see [`Engine`]): for visitors that
    /// descend every inode; one that stops early wastes that work.
    pub look_ahead: bool,
    /// Also verify ahead, on every core, the check codes of a table's node
    /// blocks (inodes, indirect blocks) when they add up to
    /// [`PARALLEL_NODE_BYTES`] or more: for visitors that visit every entry
    /// (no [`Visitor::skip`], no early stop), which would verify each of
    /// them on the walking thread anyway. Off by default.
    pub nodes_ahead: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_depth: MAX_DEPTH,
            verify: true,
            data: DataBlocks::Verify,
            range: (0, u64::MAX),
            key_order: false,
            budget: None,
            look_ahead: true,
            nodes_ahead: false,
        }
    }
}

impl Options {
    /// Options of a key-range scan: DATA blocks left unread.
    pub fn scan(lo: u64, hi: u64) -> Self {
        Options { range: (lo, hi), data: DataBlocks::Skip, ..Default::default() }
    }
}

/// Whether a traversal ran to its end or a visitor stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The traversal state: visited blocks, current path, work done.
pub struct Engine<'a> {
    fs: &'a Hammer2,
    opts: Options,
    /// Offset of every non-DATA block reached, with the group and the
    /// blockref type that reached it first.
    seen: Seen,
    /// Offsets of the nodes on the current path.
    ancestors: Vec<u64>,
    work: u64,
    budget: u64,
    /// Outcomes of DATA blocks verified ahead in parallel, by the address
    /// of their blockref in the mapping (unique while it lasts).
    ahead: HashMap<usize, Result<CheckOutcome, CorruptKind>>,
    /// Per depth: the blockrefs whose outcomes that table put in `ahead`
    /// (dropped when it is done: unvisited ones are not needed); then the
    /// candidates being gathered and their outcomes (reused buffers).
    ahead_keys: Vec<Vec<usize>>,
    candidates: Vec<(&'a Blockref, u64, usize)>,
    outcomes: Vec<Result<CheckOutcome, CorruptKind>>,
    /// Per depth: the address of the table being visited there and the
    /// check outcomes of its node blocks verified ahead, by slot
    /// ([`Options::nodes_ahead`]).
    nodes: Vec<(usize, Vec<Option<CheckOutcome>>)>,
    /// Check codes verified, shared with engines walking at the same time
    /// ([`Engine::share_checks`]).
    checked: Option<Arc<Checked>>,
}

/// The node blocks an engine entered, by media offset, with the group and
/// blockref type that reached each first. Node blocks lie on 1 KiB
/// boundaries (1 KiB is the smallest block), so an offset is one bit in a
/// 64-bit word per 64 KiB region, one map of words per (group, type) seen
/// (a few: one per PFS and node type), plus one map of every class's bits
/// together, which answers the common "not seen yet" with one probe. At a
/// million inodes this is a few hundred KiB where a map of offsets took
/// tens of MiB; sparse blocks cost no more than such a map. Offsets off the
/// 1 KiB grid (hostile media) and classes past [`Seen::MAX_CLASSES`] go to
/// an exact map.
#[derive(Default)]
struct Seen {
    any: HashMap<u64, u64>,
    classes: Vec<((u32, BlockrefType), HashMap<u64, u64>)>,
    exact: HashMap<u64, (u32, BlockrefType)>,
}

impl Seen {
    const MAX_CLASSES: usize = 64;

    /// The region and the bit of a 1 KiB-aligned offset.
    fn split(off: u64) -> Option<(u64, u64)> {
        (off & 1023 == 0).then(|| (off >> 16, 1u64 << ((off >> 10) & 63)))
    }

    fn get(&self, off: u64) -> Option<(u32, BlockrefType)> {
        if let Some((region, bit)) = Self::split(off) {
            if self.any.get(&region).is_some_and(|w| w & bit != 0) {
                for (class, map) in &self.classes {
                    if map.get(&region).is_some_and(|w| w & bit != 0) {
                        return Some(*class);
                    }
                }
            }
        }
        self.exact.get(&off).copied()
    }

    /// Records `off` (not seen before) as first reached by `class`.
    fn insert(&mut self, off: u64, class: (u32, BlockrefType)) {
        if let Some((region, bit)) = Self::split(off) {
            let i = match self.classes.iter().position(|(c, _)| *c == class) {
                Some(i) => Some(i),
                None if self.classes.len() < Self::MAX_CLASSES => {
                    self.classes.push((class, HashMap::new()));
                    Some(self.classes.len() - 1)
                }
                None => None,
            };
            if let Some(i) = i {
                *self.any.entry(region).or_default() |= bit;
                *self.classes[i].1.entry(region).or_default() |= bit;
                return;
            }
        }
        self.exact.insert(off, class);
    }
}

fn address(b: &Blockref) -> usize {
    b as *const Blockref as usize
}

impl<'a> Engine<'a> {
    pub fn new(fs: &'a Hammer2, opts: Options) -> Self {
        // One blockref per 128 bytes of node media, nodes never entered
        // twice: the logical size / 128 bounds any traversal.
        let budget = opts.budget.unwrap_or_else(|| (fs.device.logical_size() / 128).saturating_add(1 << 16));
        Engine {
            fs,
            opts,
            seen: Seen::default(),
            ancestors: Vec::new(),
            work: 0,
            budget,
            ahead: HashMap::new(),
            ahead_keys: Vec::new(),
            candidates: Vec::new(),
            outcomes: Vec::new(),
            nodes: Vec::new(),
            checked: None,
        }
    }

    /// Shares the check codes this engine verifies with other engines
    /// walking the same volumes at the same time, and skips those they
    /// verified (see [`Checked`]).
    pub fn share_checks(&mut self, checked: Arc<Checked>) {
        self.checked = Some(checked);
    }

    /// Whether `bref`'s check code is known to verify.
    fn known_ok(&self, bref: &Blockref) -> bool {
        self.checked.as_ref().is_some_and(|c| c.verified(bref))
    }

    /// Blockrefs met so far.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Visits `set` (a blockset or table) found in the node at `parent_off`.
    pub fn run<V: Visitor<'a>>(
        &mut self,
        set: &'a [Blockref],
        parent_off: u64,
        ctx: &V::Ctx,
        visitor: &mut V,
    ) -> (V::Out, Flow) {
        self.table(set, parent_off, 0, ctx, visitor)
    }

    /// Visits one blockref (not in a table: a PFS root, a dump's start).
    pub fn run_one<V: Visitor<'a>>(
        &mut self,
        bref: &'a Blockref,
        parent_off: u64,
        index: usize,
        ctx: &V::Ctx,
        visitor: &mut V,
    ) -> (V::Out, Flow) {
        let mut out = V::Out::default();
        let flow = self.one(bref, parent_off, index, 0, ctx, visitor, &mut out);
        (out, flow)
    }

    fn table<V: Visitor<'a>>(
        &mut self,
        set: &'a [Blockref],
        parent_off: u64,
        depth: usize,
        ctx: &V::Ctx,
        visitor: &mut V,
    ) -> (V::Out, Flow) {
        let (lo, hi) = self.opts.range;
        let wanted = |b: &Blockref| b.kind() != BlockrefType::Empty && b.key_end() >= lo && b.key.get() <= hi;
        self.verify_ahead(set, depth, &wanted);
        self.verify_nodes_ahead(set, depth, &wanted);
        let out = self.table_entries(set, parent_off, depth, ctx, visitor, &wanted);
        if let Some((_, outcomes)) = self.nodes.get_mut(depth) {
            outcomes.clear();
        }
        if let Some(keys) = self.ahead_keys.get_mut(depth) {
            for k in keys.drain(..) {
                self.ahead.remove(&k);
            }
        }
        out
    }

    fn table_entries<V: Visitor<'a>>(
        &mut self,
        set: &'a [Blockref],
        parent_off: u64,
        depth: usize,
        ctx: &V::Ctx,
        visitor: &mut V,
        wanted: &dyn Fn(&Blockref) -> bool,
    ) -> (V::Out, Flow) {
        let mut sum = V::Out::default();
        if self.opts.key_order {
            let mut order: Vec<usize> = (0..set.len()).filter(|&i| wanted(&set[i])).collect();
            order.sort_by_key(|&i| set[i].key.get());
            for i in order {
                if self.one(&set[i], parent_off, i, depth, ctx, visitor, &mut sum) == Flow::Stop {
                    return (sum, Flow::Stop);
                }
            }
        } else {
            for (i, b) in set.iter().enumerate() {
                if wanted(b) && self.one(b, parent_off, i, depth, ctx, visitor, &mut sum) == Flow::Stop {
                    return (sum, Flow::Stop);
                }
            }
        }
        (sum, Flow::Continue)
    }

    /// Verifies on every core, when they add up to [`PARALLEL_BYTES`] or
    /// more, the DATA blocks `set` holds and, with [`Options::look_ahead`],
    /// those its inodes hold directly (a small file's blocks sit in its
    /// inode, so a table of inodes is where most of them can be batched).
    /// [`Engine::reach`] picks the outcomes up; what was not visited by the
    /// end of `set` is dropped.
    fn verify_ahead(
        &mut self,
        set: &'a [Blockref],
        depth: usize,
        wanted: &(dyn Fn(&Blockref) -> bool + Sync),
    ) {
        if self.opts.data != DataBlocks::Verify || !self.opts.verify || depth >= self.opts.max_depth {
            return;
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        let mut bytes = 0;
        let mut add = |b: &'a Blockref, ahead: &HashMap<usize, _>| {
            if b.kind() != BlockrefType::Data || !wanted(b) || ahead.contains_key(&address(b)) {
                return;
            }
            if let Ok(Some((off, len))) = media_extent(b) {
                bytes += len;
                candidates.push((b, off, len));
            }
        };
        for b in set.iter().filter(|b| wanted(b)) {
            add(b, &self.ahead);
            if !self.opts.look_ahead || b.kind() != BlockrefType::Inode || depth + 1 >= self.opts.max_depth {
                continue;
            }
            // Read as the visit will (through the mapping); its check code
            // is verified then, and a damaged inode only costs this work.
            let Ok(Some(media)) = read_media(self.fs, b) else { continue };
            match InodeData::from_bytes(media) {
                Some(ip) if !ip.meta.is_directdata() && media.len() >= INODE_BYTES => {
                    Blockref::table(&media[512..1024]).iter().for_each(|c| add(c, &self.ahead))
                }
                _ => {}
            }
        }
        if bytes >= PARALLEL_BYTES {
            let fs = self.fs;
            candidates
                .par_iter()
                .map(|&(b, off, len)| verify_data(fs, b, off, len))
                .collect_into_vec(&mut self.outcomes);
            if self.ahead_keys.len() <= depth {
                self.ahead_keys.resize_with(depth + 1, Vec::new);
            }
            let keys = &mut self.ahead_keys[depth];
            for (&(b, _, _), outcome) in candidates.iter().zip(self.outcomes.drain(..)) {
                keys.push(address(b));
                self.ahead.insert(address(b), outcome);
            }
        }
        self.candidates = candidates;
    }

    /// With [`Options::nodes_ahead`], verifies on every core the check
    /// codes of the node blocks `set` holds when they add up to
    /// [`PARALLEL_NODE_BYTES`] or more (a leaf of an inode index: the
    /// walking thread would otherwise hash every inode itself). The media
    /// is read as [`Engine::reach`] reads it, so the outcome is the one it
    /// would compute; it picks them up by the blockref's address, and what
    /// was not used by the end of `set` is dropped.
    fn verify_nodes_ahead(
        &mut self,
        set: &'a [Blockref],
        depth: usize,
        wanted: &(dyn Fn(&Blockref) -> bool + Sync),
    ) {
        if !self.opts.nodes_ahead || !self.opts.verify || depth >= self.opts.max_depth {
            return;
        }
        let (fs, checked) = (self.fs, self.checked.as_deref());
        let node = |b: &Blockref| {
            !matches!(b.kind(), BlockrefType::Data | BlockrefType::Empty)
                && wanted(b)
                && !checked.is_some_and(|c| c.verified(b))
        };
        let bytes: usize = set
            .iter()
            .filter(|b| node(b))
            .filter_map(|b| media_extent(b).ok().flatten())
            .map(|(_, len)| len)
            .sum();
        if bytes < PARALLEL_NODE_BYTES {
            return;
        }
        // Few, large tasks: a table is a few hundred blocks, and every
        // wake-up of another thread costs as much as hashing some of them.
        let outcomes: Vec<Option<CheckOutcome>> = set
            .par_iter()
            .with_min_len(64)
            .map(|b| {
                let (off, len) = media_extent(b).ok().flatten().filter(|_| node(b))?;
                let outcome = check::verify(b, fs.device.read(off, len).ok()?);
                if let (CheckOutcome::Ok, Some(c)) = (&outcome, checked) {
                    c.record(b);
                }
                Some(outcome)
            })
            .collect();
        if self.nodes.len() <= depth {
            self.nodes.resize_with(depth + 1, || (0, Vec::new()));
        }
        self.nodes[depth] = (address(&set[0]), outcomes);
    }

    /// The outcome [`Engine::verify_nodes_ahead`] found for `bref`, an
    /// entry of the table being visited at `depth`.
    fn node_ahead(&mut self, bref: &Blockref, depth: usize) -> Option<CheckOutcome> {
        let (base, outcomes) = self.nodes.get_mut(depth)?;
        let i = address(bref).checked_sub(*base)? / std::mem::size_of::<Blockref>();
        outcomes.get_mut(i)?.take()
    }

    #[allow(clippy::too_many_arguments)]
    fn one<V: Visitor<'a>>(
        &mut self,
        bref: &'a Blockref,
        parent_off: u64,
        index: usize,
        depth: usize,
        ctx: &V::Ctx,
        visitor: &mut V,
        sum: &mut V::Out,
    ) -> Flow {
        if let Some(out) = visitor.skip(bref, ctx) {
            *sum += out;
            return Flow::Continue;
        }
        let (reach, check) = self.reach(bref, depth, visitor.group());
        let node = Node { depth, index, parent_off, bref, reach, check };
        match visitor.visit(&node, ctx) {
            Step::Stop => Flow::Stop,
            Step::Leaf(out) => {
                *sum += out;
                Flow::Continue
            }
            Step::Descend(sub) => {
                let kids = node.children();
                let (below, flow) = if kids.is_empty() {
                    (V::Out::default(), Flow::Continue)
                } else {
                    self.ancestors.push(bref.offset());
                    let r = self.table(kids, bref.data_off.get(), depth + 1, &sub, visitor);
                    self.ancestors.pop();
                    r
                };
                *sum += visitor.leave(&node, &sub, below);
                flow
            }
        }
    }

    fn reach(&mut self, bref: &Blockref, depth: usize, group: u32) -> (Reach<'a>, CheckOutcome) {
        let none = CheckOutcome::NotChecked;
        self.work += 1;
        if self.work > self.budget {
            return (Reach::Failed(CorruptKind::Budget(self.budget)), none);
        }
        if depth >= self.opts.max_depth {
            return (Reach::Failed(CorruptKind::TooDeep(self.opts.max_depth)), none);
        }
        let (off, len) = match media_extent(bref) {
            Err(kind) => return (Reach::Failed(kind), none),
            Ok(None) => return (Reach::NoMedia, none),
            Ok(Some(e)) => e,
        };
        if bref.kind() == BlockrefType::Data {
            if self.fs.device.map_logical(off, len as u64).is_none() {
                return (Reach::Failed(CorruptKind::OutOfRange { offset: off, len: len as u64 }), none);
            }
            if self.opts.data == DataBlocks::Skip || !self.opts.verify {
                return (Reach::Unread { offset: off, len }, none);
            }
            let ahead = self.ahead.remove(&address(bref));
            return match ahead.unwrap_or_else(|| verify_data(self.fs, bref, off, len)) {
                Ok(outcome) => (Reach::Unread { offset: off, len }, outcome),
                Err(kind) => (Reach::Failed(kind), none),
            };
        }
        if self.ancestors.contains(&off) {
            return (Reach::Failed(CorruptKind::Cycle), none);
        }
        let Ok(media) = self.fs.device.read(off, len) else {
            return (Reach::Failed(CorruptKind::OutOfRange { offset: off, len: len as u64 }), none);
        };
        let ahead = self.node_ahead(bref, depth);
        let outcome = if !self.opts.verify {
            none
        } else if self.known_ok(bref) {
            CheckOutcome::Ok
        } else {
            let outcome = ahead.unwrap_or_else(|| check::verify(bref, media));
            if let (CheckOutcome::Ok, Some(c)) = (&outcome, &self.checked) {
                c.record(bref);
            }
            outcome
        };
        if let Some((group, first)) = self.seen.get(off) {
            return (Reach::Shared { group, first, media }, outcome);
        }
        self.seen.insert(off, (group, bref.kind()));
        (Reach::Media(media), outcome)
    }
}

/// One blockref met by [`walk`].
pub struct Visit<'a> {
    pub depth: usize,
    pub location: Location,
    pub bref: &'a Blockref,
    /// Physical media bytes, when the blockref has media and it could be
    /// read (DATA blocks only with [`WalkOptions::read_data`], as mapped
    /// bytes: the device keeps their residency bounded).
    pub media: Option<&'a [u8]>,
    /// Where the media lies (offset, length) when it lies inside the
    /// volumes, read or not.
    pub extent: Option<(u64, usize)>,
    /// Check-code outcome (NotChecked when there is no media).
    pub check: CheckOutcome,
    /// What went wrong reaching or reading this blockref.
    pub error: Option<Corruption>,
    /// True when this node was already reached from another parent.
    pub shared: bool,
}

/// Totals of a walk.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalkStats {
    pub blockrefs: u64,
    pub with_media: u64,
    pub verified: u64,
    pub not_checked: u64,
    pub errors: u64,
    pub shared: u64,
    pub bytes: u64,
}

/// Walk options.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    pub max_depth: usize,
    /// Read and verify DATA blocks (otherwise only their extents are
    /// checked, and `media` is `None` for them).
    pub read_data: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions { max_depth: MAX_DEPTH, read_data: true }
    }
}

struct FullWalk<'v, 'a> {
    fs: &'a Hammer2,
    visit: &'v mut dyn FnMut(&Visit<'a>),
    /// DATA blocks are read (and verified) by the engine.
    read_data: bool,
    stats: WalkStats,
}

impl<'a> Visitor<'a> for FullWalk<'_, 'a> {
    type Ctx = ();
    type Out = Nothing;

    fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
        let s = &mut self.stats;
        s.blockrefs += 1;
        // DATA blocks were verified on copies; the visitor gets them mapped.
        let media = match node.reach {
            Reach::Unread { offset, len } if self.read_data => self.fs.device.read(offset, len).ok(),
            _ => node.raw_media(),
        };
        if let Some(m) = media {
            s.with_media += 1;
            s.bytes += m.len() as u64;
            match node.check {
                CheckOutcome::Ok => s.verified += 1,
                CheckOutcome::NotChecked => s.not_checked += 1,
                _ => {}
            }
        }
        let error = node.error();
        s.errors += error.is_some() as u64;
        s.shared += node.is_shared() as u64;
        (self.visit)(&Visit {
            depth: node.depth,
            location: node.location(),
            bref: node.bref,
            media,
            extent: node.extent(),
            check: node.check.clone(),
            error,
            shared: node.is_shared(),
        });
        Step::Descend(())
    }
}

/// Walks `root` of `fs`, calling `visit` for every blockref (EMPTY slots
/// excluded), every block read and verified, shared nodes reported once
/// more (with `shared`) but not descended again.
pub fn walk<'a>(
    fs: &'a Hammer2,
    root: Root,
    opts: WalkOptions,
    visit: &mut dyn FnMut(&Visit<'a>),
) -> Result<WalkStats> {
    walk_sharing(fs, root, opts, None, visit)
}

/// [`walk`], sharing verified check codes with engines that walk the same
/// volumes at the same time ([`Engine::share_checks`]).
pub fn walk_sharing<'a>(
    fs: &'a Hammer2,
    root: Root,
    opts: WalkOptions,
    checked: Option<Arc<Checked>>,
    visit: &mut dyn FnMut(&Visit<'a>),
) -> Result<WalkStats> {
    let data = if opts.read_data { DataBlocks::Verify } else { DataBlocks::Skip };
    let engine_opts = Options { max_depth: opts.max_depth, data, nodes_ahead: true, ..Default::default() };
    let mut engine = Engine::new(fs, engine_opts);
    if let Some(c) = checked {
        engine.share_checks(c);
    }
    let mut v = FullWalk { fs, visit, read_data: opts.read_data, stats: WalkStats::default() };
    engine.run(root.blockset(fs), 0, &(), &mut v);
    Ok(v.stats)
}

/// Key-range scan: calls `visit` for every leaf (anything but INDIRECT)
/// whose key range meets `[lo, hi]`, descending indirect blocks that can
/// hold such keys. A node that cannot be reached or fails its check code
/// ends the scan with its error.
pub fn scan<'a>(
    fs: &'a Hammer2,
    opts: Options,
    set: &'a [Blockref],
    parent_off: u64,
    visit: &mut dyn FnMut(&Node<'a>) -> Result<Flow>,
) -> Result<Flow> {
    struct Scan<'v, 'a> {
        visit: &'v mut dyn FnMut(&Node<'a>) -> Result<Flow>,
        error: Option<Error>,
    }
    impl<'a> Visitor<'a> for Scan<'_, 'a> {
        type Ctx = ();
        type Out = Nothing;
        fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
            if node.bref.kind() == BlockrefType::Indirect {
                if let Err(e) = node.result() {
                    self.error = Some(e);
                    return Step::Stop;
                }
                if node.is_shared() {
                    return Step::Leaf(Nothing); // already scanned: same keys, same answer
                }
                return Step::Descend(());
            }
            match (self.visit)(node) {
                Ok(Flow::Continue) => Step::Leaf(Nothing),
                Ok(Flow::Stop) => Step::Stop,
                Err(e) => {
                    self.error = Some(e);
                    Step::Stop
                }
            }
        }
    }
    let mut engine = Engine::new(fs, opts);
    let mut v = Scan { visit, error: None };
    let (_, flow) = engine.run(set, parent_off, &(), &mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(flow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_rules_per_type() {
        assert!(radix_ok(BlockrefType::FreemapLeaf, 15));
        assert!(!radix_ok(BlockrefType::FreemapLeaf, 16));
        assert!(radix_ok(BlockrefType::Data, 10));
        assert!(!radix_ok(BlockrefType::Data, 17));
        assert!(!radix_ok(BlockrefType::Inode, 9));
    }
}
