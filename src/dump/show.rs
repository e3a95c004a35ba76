//! `show`: the chain tree, one entry per blockref, streamed depth first.
//!
//! A visitor of the traversal engine ([`crate::read::walk`]): every node block
//! (inodes, indirect blocks, dirent names, freemap nodes and leaves) is read
//! (bounds-checked) and its check code verified, and a node reached twice is
//! shown again but descended only once. DATA blocks are shown from their
//! parents' tables, their extents checked against the volumes; their media
//! is read and verified only with [`ShowOptions::verify_data`]. That is the
//! split DragonFly's `hammer2 show` makes too (it reads file data only with
//! `-v`), and it is what makes a structure dump cheap: on the 50,000-file
//! bench image the DATA blocks are 1.8 GB of the 1.9 GB the tree reaches.
//! Checking file contents is fsck's job, which verifies them on every core.
//!
//! The dump can start at a PFS root or at any blockref found by its
//! `data_off`, stop at a depth, and omit DATA blockrefs. Entries are handed
//! to a callback as they are met: the tree is never held in memory.

use super::BlockrefSummary;
use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::check::{self, CheckOutcome};
use crate::format::{Blockref, BlockrefType, InodeData, ObjType, INODE_MAXNAME, OPFLAG_PFSROOT};
use crate::read::pfs::Pfs;
use crate::read::tree::Tree;
use crate::read::walk::{
    self, DataBlocks, Engine, Node, Nothing, Options, Reach, Root, Step, Visitor, WalkOptions,
};
use crate::volume::Hammer2;
use rayon::prelude::*;
use serde::Serialize;
use std::borrow::Cow;

/// Which tree an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeKind {
    Topology,
    Freemap,
}

impl TreeKind {
    pub fn name(self) -> &'static str {
        match self {
            TreeKind::Topology => "topology",
            TreeKind::Freemap => "freemap",
        }
    }
}

/// Where the dump starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The volume header's super-root blockset.
    Topology,
    /// The root inode of the PFS with this label.
    Pfs(String),
    /// The blockref whose `data_off` is this (searched in both trees). A
    /// value without radix bits matches any radix at that offset; blockrefs
    /// without media (data_off 0) never match.
    Offset(u64),
}

/// What to show.
#[derive(Debug, Clone)]
pub struct ShowOptions {
    pub start: Start,
    /// Also dump the freemap (ignored with `Start::Offset`, which searches it anyway).
    pub freemap: bool,
    /// Show blockrefs at most this many levels below the starting ones (0 = only those).
    pub max_depth: Option<usize>,
    /// Omit DATA blockrefs (their media is then not read either).
    pub hide_data: bool,
    /// Read DATA blocks and verify their check codes too (otherwise only
    /// their extents are checked: status "unread").
    pub verify_data: bool,
}

impl Default for ShowOptions {
    fn default() -> Self {
        ShowOptions {
            start: Start::Topology,
            freemap: false,
            max_depth: None,
            hide_data: false,
            verify_data: false,
        }
    }
}

/// Statistics carried by INODE and INDIRECT blockrefs.
#[derive(Debug, Clone, Serialize)]
pub struct BrefStats {
    pub data_count: u64,
    pub inode_count: u64,
}

/// The header of a DIRENT blockref and its name.
#[derive(Debug, Clone, Serialize)]
pub struct DirentInfo<'a> {
    /// Borrowed from the media when it is valid UTF-8.
    pub name: Cow<'a, str>,
    pub inum: u64,
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
}

/// The inline fields of an inode, for one-line display.
#[derive(Debug, Clone, Serialize)]
pub struct InodeInfo<'a> {
    pub inum: u64,
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    pub mode: u32,
    pub size: u64,
    pub nlinks: u64,
    /// Borrowed from the media when it is valid UTF-8.
    pub name: Cow<'a, str>,
    /// True when the inode embeds its data instead of a blockset.
    pub direct_data: bool,
    /// PFS type and subtype, for PFS roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pfs_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pfs_subtype: Option<Cow<'static, str>>,
}

/// Allocation hints stored in the check area of freemap blockrefs.
#[derive(Debug, Clone, Serialize)]
pub struct FreemapHint {
    pub bigmask: u32,
    pub avail: u64,
}

/// One blockref of the dump. Names borrow the media they were read from (`'a`).
#[derive(Debug, Clone, Serialize)]
pub struct ShowEntry<'a> {
    /// Header copy the dump was made from.
    pub copy: usize,
    pub tree: TreeKind,
    /// Nesting below the starting blockrefs (0 for those).
    pub depth: usize,
    /// Slot in the parent's table.
    pub index: usize,
    /// `data_off` of the parent node (0 for the volume header).
    pub parent_off: u64,
    #[serde(flatten)]
    pub bref: BlockrefSummary,
    /// Last key covered (`key + 2^keybits - 1`).
    pub key_end: u64,
    pub physical_size: u64,
    /// "ok", "BAD", "unchecked" (method none/disabled), "unknown" (unknown
    /// method), "unread" (a DATA block not read: see
    /// [`ShowOptions::verify_data`]) or "no_media".
    pub check_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<BrefStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirent: Option<DirentInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<InodeInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freemap: Option<FreemapHint>,
    /// The node was already shown under another parent; its children are not repeated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// Children not shown because of the depth limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub children_not_shown: usize,
    /// What went wrong reaching, reading or decoding this blockref.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Totals of a dump.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ShowStats {
    /// Entries shown.
    pub blockrefs: u64,
    pub verified: u64,
    pub errors: u64,
    pub shared: u64,
    /// DATA blockrefs omitted by `hide_data`.
    pub hidden: u64,
    /// DATA blockrefs shown without reading their media.
    pub unread: u64,
}

impl ShowStats {
    fn add(&mut self, o: &ShowStats) {
        self.blockrefs += o.blockrefs;
        self.verified += o.verified;
        self.errors += o.errors;
        self.shared += o.shared;
        self.hidden += o.hidden;
        self.unread += o.unread;
    }
}

/// What a dump walks, resolved from its [`Start`]: the starting
/// blockrefs, copied, so that entries may borrow them for as long as the
/// plan lives.
pub struct Plan {
    parts: Vec<Part>,
}

enum Part {
    /// Every non-empty blockref of a set (a volume header's blockset).
    Set { kind: TreeKind, set: Vec<Blockref>, parent_off: u64 },
    /// One blockref (a PFS root, a blockref found by offset).
    One { kind: TreeKind, bref: Blockref, parent_off: u64, index: usize },
}

impl Plan {
    /// Resolves `opts.start` in `fs`: `Err` when it names a PFS or an
    /// offset that is not there.
    pub fn new(fs: &Hammer2, opts: &ShowOptions) -> Result<Self> {
        let mut parts = Vec::new();
        match &opts.start {
            Start::Topology => parts.push(Part::Set {
                kind: TreeKind::Topology,
                set: fs.voldata.sroot_blockset.to_vec(),
                parent_off: 0,
            }),
            Start::Pfs(label) => {
                let tree = Tree::new(fs);
                let pfs = Pfs::find(&tree, label)?;
                let loc = &pfs.root.loc;
                parts.push(Part::One {
                    kind: TreeKind::Topology,
                    bref: *pfs.root.bref,
                    parent_off: loc.parent_off,
                    index: loc.index,
                });
            }
            Start::Offset(off) => {
                let (kind, bref, loc) = find_offset(fs, *off)?.ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "no blockref has data_off {off:#x} in the topology or the freemap"
                    ))
                })?;
                // The freemap is searched anyway: it is not added.
                parts.push(Part::One { kind, bref, parent_off: loc.parent_off, index: loc.index });
                return Ok(Plan { parts });
            }
        }
        if opts.freemap {
            parts.push(Part::Set {
                kind: TreeKind::Freemap,
                set: fs.voldata.freemap_blockset.to_vec(),
                parent_off: 0,
            });
        }
        Ok(Plan { parts })
    }

    /// Walks the plan, calling `visit` for every entry in depth-first order.
    pub fn run<'a>(
        &'a self,
        fs: &'a Hammer2,
        opts: &ShowOptions,
        visit: &mut dyn FnMut(&ShowEntry<'a>),
    ) -> ShowStats {
        self.run_met(fs, opts, &mut |m| visit(&m.entry()))
    }

    /// [`Plan::run`] handing out blockrefs as met, not yet decoded.
    pub(super) fn run_met<'a>(
        &'a self,
        fs: &'a Hammer2,
        opts: &ShowOptions,
        visit: &mut dyn FnMut(Met<'a>),
    ) -> ShowStats {
        let mut stats = ShowStats::default();
        for part in &self.parts {
            stats.add(&match part {
                Part::Set { kind, set, parent_off } => walk_set(fs, *kind, set, *parent_off, opts, visit),
                Part::One { kind, bref, parent_off, index } => {
                    let mut w = Shower::new(fs, *kind, opts, visit);
                    Engine::new(fs, w.engine_options()).run_one(bref, *parent_off, *index, &(), &mut w);
                    w.stats
                }
            });
        }
        stats
    }
}

/// Dumps what `opts` asks for from `fs`, calling `visit` for every entry
/// in depth-first order. Errors met in the tree are reported in entries and
/// counted; `Err` means the start could not be found.
pub fn show(fs: &Hammer2, opts: &ShowOptions, visit: &mut dyn FnMut(&ShowEntry<'_>)) -> Result<ShowStats> {
    let plan = Plan::new(fs, opts)?;
    Ok(plan.run(fs, opts, visit))
}

/// Dumps every non-empty blockref of `set` and what lies under it.
pub fn show_set<'a>(
    fs: &'a Hammer2,
    kind: TreeKind,
    set: &'a [Blockref],
    parent_off: u64,
    opts: &ShowOptions,
    visit: &mut dyn FnMut(&ShowEntry<'a>),
) -> ShowStats {
    walk_set(fs, kind, set, parent_off, opts, &mut |m| visit(&m.entry()))
}

fn walk_set<'a>(
    fs: &'a Hammer2,
    kind: TreeKind,
    set: &'a [Blockref],
    parent_off: u64,
    opts: &ShowOptions,
    visit: &mut dyn FnMut(Met<'a>),
) -> ShowStats {
    let mut w = Shower::new(fs, kind, opts, visit);
    Engine::new(fs, w.engine_options()).run(set, parent_off, &(), &mut w);
    w.stats
}

/// The first blockref (topology first, then freemap) whose `data_off` is
/// `off`; without radix bits in `off`, the first at that offset.
pub fn find_offset(fs: &Hammer2, off: u64) -> Result<Option<(TreeKind, Blockref, Location)>> {
    let matches = |b: &Blockref| {
        let d = b.data_off.get();
        (d != 0 && d == off) || (off & 0x3f == 0 && b.radix() != 0 && b.offset() == off)
    };
    for (root, kind) in [(Root::Topology, TreeKind::Topology), (Root::Freemap, TreeKind::Freemap)] {
        let mut found = None;
        let opts = WalkOptions { read_data: false, ..Default::default() };
        walk::walk(fs, root, opts, &mut |v| {
            if found.is_none() && matches(v.bref) {
                found = Some((kind, *v.bref, v.location.clone()));
            }
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

struct Shower<'f, 'v> {
    fs: &'f Hammer2,
    kind: TreeKind,
    max_depth: Option<usize>,
    hide_data: bool,
    verify_data: bool,
    visit: &'v mut dyn FnMut(Met<'f>),
    stats: ShowStats,
    /// Node blocks' check codes are verified here rather than by the
    /// engine (which then only reads them): those of a node's children on
    /// every core as it is descended ([`Shower::verify_ahead`]), so that
    /// the walk's own thread neither hashes nor faults their pages in.
    verify_here: bool,
    /// Per depth: the outcomes verified ahead for the table being visited
    /// at that depth, by slot, with the address of the blockref they are for.
    ahead: Vec<Vec<Option<(usize, CheckOutcome)>>>,
}

/// Tables with fewer node blocks to verify than this are verified as visited.
const AHEAD_MIN: usize = 8;

impl<'a, 'v> Shower<'a, 'v> {
    fn new(fs: &'a Hammer2, kind: TreeKind, opts: &ShowOptions, visit: &'v mut dyn FnMut(Met<'a>)) -> Self {
        Shower {
            fs,
            kind,
            max_depth: opts.max_depth,
            hide_data: opts.hide_data,
            verify_data: opts.verify_data,
            visit,
            stats: ShowStats::default(),
            // With DATA blocks verified, the engine verifies everything (and batches DATA).
            verify_here: !opts.verify_data || opts.hide_data,
            ahead: Vec::new(),
        }
    }

    /// The check outcome of `node`'s `media`: verified ahead, here, or by the engine.
    fn check(&self, node: &Node<'a>, media: &[u8]) -> CheckOutcome {
        if !self.verify_here {
            return node.check.clone();
        }
        if let Some(Some((addr, outcome))) = self.ahead.get(node.depth).and_then(|t| t.get(node.index)) {
            if *addr == address(node.bref) {
                return outcome.clone();
            }
        }
        check::verify(node.bref, media)
    }

    /// Verifies on every core the node blocks among `kids`, the table at
    /// `depth` about to be visited (when there are [`AHEAD_MIN`] or more).
    fn verify_ahead(&mut self, depth: usize, kids: &'a [Blockref]) {
        if self.ahead.len() <= depth {
            self.ahead.resize_with(depth + 1, Vec::new);
        }
        let table = &mut self.ahead[depth];
        table.clear();
        let node_block =
            |b: &Blockref| !matches!(b.kind(), BlockrefType::Empty | BlockrefType::Data) && b.radix() != 0;
        if !self.verify_here || kids.iter().filter(|b| node_block(b)).count() < AHEAD_MIN {
            return;
        }
        let fs = self.fs;
        kids.par_iter()
            .map(|b| match walk::read_media(fs, b) {
                Ok(Some(m)) if node_block(b) => Some((address(b), check::verify(b, m))),
                _ => None,
            })
            .collect_into_vec(table);
    }

    /// Every node block read and verified; DATA blocks only when asked.
    fn engine_options(&self) -> Options {
        let data = if self.verify_data && !self.hide_data { DataBlocks::Verify } else { DataBlocks::Skip };
        // A depth limit stops short of most inodes' blocks: verify only what is shown.
        Options {
            data,
            verify: !self.verify_here,
            look_ahead: self.max_depth.is_none(),
            ..Default::default()
        }
    }
}

impl<'a> Visitor<'a> for Shower<'a, '_> {
    type Ctx = ();
    type Out = Nothing;

    fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
        let (bref, depth) = (node.bref, node.depth);
        if self.hide_data && bref.kind() == BlockrefType::Data {
            self.stats.hidden += 1;
            return Step::Leaf(Nothing);
        }
        self.stats.blockrefs += 1;
        let mut error: Option<String> = None;
        // A node reached before is shown again (read for display only) but
        // its children are not repeated.
        // DATA blocks are verified by the engine without handing out their bytes.
        let (media, check, reached) = match &node.reach {
            Reach::Failed(CorruptKind::Cycle) => {
                error = Some("blockref points at one of its ancestors (a cycle)".to_string());
                (None, CheckOutcome::NotChecked, false)
            }
            Reach::Failed(k) => {
                error = Some(k.to_string());
                (None, CheckOutcome::NotChecked, false)
            }
            Reach::Shared { media, .. } => (Some(*media), self.check(node, media), true),
            Reach::Media(m) => (Some(*m), self.check(node, m), true),
            Reach::Unread { .. } => (None, node.check.clone(), true),
            Reach::NoMedia => (None, CheckOutcome::NotChecked, false),
        };
        let check_status = match (&check, reached) {
            (_, false) => "no_media",
            (CheckOutcome::Ok, true) => {
                self.stats.verified += 1;
                "ok"
            }
            (CheckOutcome::NotChecked, true) if !self.verify_data && bref.kind() == BlockrefType::Data => {
                self.stats.unread += 1;
                "unread"
            }
            (CheckOutcome::NotChecked, true) => "unchecked",
            (CheckOutcome::Mismatch { expected, found }, _) => {
                let method = bref.check_method().to_string();
                let (expected, found) = (expected.clone(), found.clone());
                error = Some(CorruptKind::CheckMismatch { method, expected, found }.to_string());
                "BAD"
            }
            (CheckOutcome::UnknownMethod(m), _) => {
                error = Some(CorruptKind::UnknownCheck(*m).to_string());
                "unknown"
            }
        };

        let kind = bref.kind();
        if kind == BlockrefType::Dirent {
            if let Err(e) = dirent_name(bref, media) {
                error.get_or_insert(e);
            }
        }
        if let (BlockrefType::Inode, Some(m)) = (kind, media) {
            if InodeData::from_bytes(m).is_none() {
                error.get_or_insert(format!("inode: {} bytes, need 1024", m.len()));
            }
        }
        let kids = match media {
            Some(m) if error.is_none() => walk::children(bref, m),
            _ => &[],
        };
        let live = kids.iter().filter(|b| b.kind() != BlockrefType::Empty).count();
        let cut = self.max_depth.is_some_and(|d| depth >= d);
        let shared = live > 0 && !cut && node.is_shared();
        if error.is_some() {
            self.stats.errors += 1;
        }
        if shared {
            self.stats.shared += 1;
        }
        (self.visit)(Met {
            copy: self.fs.copy,
            tree: self.kind,
            depth,
            index: node.index,
            parent_off: node.parent_off,
            bref,
            media,
            check_status,
            shared,
            children_not_shown: if cut { live } else { 0 },
            error,
        });
        if cut || node.is_shared() || live == 0 {
            Step::Leaf(Nothing)
        } else {
            self.verify_ahead(depth + 1, kids);
            Step::Descend(())
        }
    }
}

/// Where a blockref lies in memory: the same blockref while the walk lasts.
fn address(b: &Blockref) -> usize {
    b as *const Blockref as usize
}

/// One blockref as the walk met it, before it is decoded for display
/// ([`Met::entry`]): small, so that the walk can hand it to another thread
/// to decode and format.
#[derive(Debug, Clone)]
pub(super) struct Met<'a> {
    copy: usize,
    pub(super) tree: TreeKind,
    depth: usize,
    index: usize,
    parent_off: u64,
    bref: &'a Blockref,
    /// The media when it was read (node blocks).
    media: Option<&'a [u8]>,
    check_status: &'static str,
    shared: bool,
    children_not_shown: usize,
    error: Option<String>,
}

impl<'a> Met<'a> {
    /// The entry for display: the blockref's fields, and the name and
    /// inode fields its media holds.
    pub(super) fn entry(self) -> ShowEntry<'a> {
        let (bref, media) = (self.bref, self.media);
        let kind = bref.kind();
        let stats = matches!(kind, BlockrefType::Inode | BlockrefType::Indirect).then(|| {
            let s = bref.stats();
            BrefStats { data_count: s.data_count.get(), inode_count: s.inode_count.get() }
        });
        let dirent =
            (kind == BlockrefType::Dirent).then(|| dirent_name(bref, media).ok()).flatten().map(|name| {
                let head = bref.dirent();
                DirentInfo {
                    name: String::from_utf8_lossy(name),
                    inum: head.inum.get(),
                    type_: ObjType::from(head.type_).name(),
                }
            });
        let inode = match (kind, media) {
            (BlockrefType::Inode, Some(m)) => InodeData::from_bytes(m).map(inode_info),
            _ => None,
        };
        let freemap = matches!(kind, BlockrefType::FreemapNode | BlockrefType::FreemapLeaf).then(|| {
            let c = bref.freemap_check();
            FreemapHint { bigmask: c.bigmask.get(), avail: c.avail.get() }
        });
        ShowEntry {
            copy: self.copy,
            tree: self.tree,
            depth: self.depth,
            index: self.index,
            parent_off: self.parent_off,
            bref: BlockrefSummary::new(bref),
            key_end: bref.key_end(),
            physical_size: bref.physical_size(),
            check_status: self.check_status,
            stats,
            dirent,
            inode,
            freemap,
            shared: self.shared,
            children_not_shown: self.children_not_shown,
            error: self.error,
        }
    }
}

/// The name of a DIRENT blockref. Names of up to 64 bytes live in the
/// check area, longer ones in the media.
fn dirent_name<'a>(bref: &'a Blockref, media: Option<&'a [u8]>) -> std::result::Result<&'a [u8], String> {
    let namlen = bref.dirent().namlen.get() as usize;
    if namlen == 0 || namlen >= INODE_MAXNAME {
        return Err(CorruptKind::BadDirent(format!("name length {namlen}")).to_string());
    }
    if namlen <= bref.check.len() {
        return Ok(&bref.check[..namlen]);
    }
    match media {
        Some(m) if m.len() >= namlen => Ok(&m[..namlen]),
        _ => Err(CorruptKind::BadDirent(format!("name of {namlen} bytes not readable")).to_string()),
    }
}

/// The fields of an inode shown on its blockref's line.
pub fn inode_info(ip: &InodeData) -> InodeInfo<'_> {
    let m = &ip.meta;
    let pfs = m.op_flags & OPFLAG_PFSROOT != 0;
    InodeInfo {
        inum: m.inum.get(),
        type_: m.obj_type().name(),
        mode: m.mode.get(),
        size: m.size.get(),
        nlinks: m.nlinks.get(),
        name: String::from_utf8_lossy(ip.name()),
        direct_data: m.is_directdata(),
        pfs_type: pfs.then(|| m.pfs_type().name()),
        pfs_subtype: pfs.then(|| m.pfs_subtype().name()),
    }
}
