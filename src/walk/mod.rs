//! Depth-first walk of the media tree under the chosen volume header: the
//! super-root topology (inodes, indirect blocks, data, dirents) and the
//! freemap (nodes and leaves). Each blockref with media is read
//! (bounds-checked) and its check code verified; the visitor sees every
//! blockref, including those with no media.
//!
//! Hostile trees are bounded: depth is capped, and with `dedup_nodes` an
//! internal node reached twice (legitimately shared between snapshots, or a
//! cycle) is descended only once, so work is linear in distinct nodes.

pub mod namespace;
use crate::check::{self, CheckOutcome};
use crate::error::{CorruptKind, Corruption, Location, Result};
use crate::format::{Blockref, BlockrefType, InodeData, INODE_BYTES, RADIX_MAX, RADIX_MIN};
use crate::volume::Hammer2;
use std::collections::HashSet;

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

/// One blockref met by the walk.
pub struct Visit<'a> {
    pub depth: usize,
    pub location: Location,
    pub bref: &'a Blockref,
    /// Physical media bytes, when the blockref has media and it could be read.
    pub media: Option<&'a [u8]>,
    /// Check-code outcome (NotChecked when there is no media).
    pub check: CheckOutcome,
    /// What went wrong reaching or reading this blockref.
    pub error: Option<Corruption>,
    /// True when this node was already descended from another parent.
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
    pub dedup_nodes: bool,
    pub max_depth: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions { dedup_nodes: true, max_depth: MAX_DEPTH }
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

/// Walks `root` of `fs`, calling `visit` for every blockref (EMPTY slots excluded).
pub fn walk(fs: &Hammer2, root: Root, opts: WalkOptions, visit: &mut dyn FnMut(&Visit)) -> Result<WalkStats> {
    let set = match root {
        Root::Topology => &fs.voldata.sroot_blockset,
        Root::Freemap => &fs.voldata.freemap_blockset,
    };
    let mut w =
        Walker { fs, opts, visit, seen: HashSet::new(), ancestors: Vec::new(), stats: WalkStats::default() };
    w.table(set, 0, 0);
    Ok(w.stats)
}

struct Walker<'f, 'v> {
    fs: &'f Hammer2,
    opts: WalkOptions,
    visit: &'v mut dyn FnMut(&Visit),
    seen: HashSet<u64>,
    /// Media offsets of the nodes on the current path (cycle detection).
    ancestors: Vec<u64>,
    stats: WalkStats,
}

impl<'f> Walker<'f, '_> {
    fn table(&mut self, brefs: &[Blockref], parent_off: u64, depth: usize) {
        for (index, bref) in brefs.iter().enumerate() {
            if bref.kind() == BlockrefType::Empty {
                continue;
            }
            self.one(bref, Location::of(bref, parent_off, index), depth);
        }
    }

    fn one(&mut self, bref: &Blockref, location: Location, depth: usize) {
        self.stats.blockrefs += 1;
        let corrupt = |kind| Some(Corruption { kind, location: location.clone() });
        let mut error = None;
        let mut media: Option<&'f [u8]> = None;
        let mut outcome = CheckOutcome::NotChecked;
        let radix = bref.radix();
        if depth >= self.opts.max_depth {
            error = corrupt(CorruptKind::TooDeep(self.opts.max_depth));
        } else if radix != 0 && self.ancestors.contains(&bref.offset()) {
            error = corrupt(CorruptKind::Cycle);
        } else {
            match read_media(self.fs, bref) {
                Err(kind) => error = corrupt(kind),
                Ok(None) => {}
                Ok(Some(bytes)) => {
                    self.stats.with_media += 1;
                    self.stats.bytes += bytes.len() as u64;
                    media = Some(bytes);
                    outcome = check::verify(bref, bytes);
                    match &outcome {
                        CheckOutcome::Ok => self.stats.verified += 1,
                        CheckOutcome::NotChecked => self.stats.not_checked += 1,
                        CheckOutcome::Mismatch { expected, found } => {
                            error = corrupt(CorruptKind::CheckMismatch {
                                method: bref.check_method().to_string(),
                                expected: expected.clone(),
                                found: found.clone(),
                            })
                        }
                        CheckOutcome::UnknownMethod(m) => error = corrupt(CorruptKind::UnknownCheck(*m)),
                    }
                }
            }
        }
        let kids = match media {
            Some(m) if error.is_none() => children(bref, m),
            _ => &[],
        };
        let shared = !kids.is_empty() && self.opts.dedup_nodes && !self.seen.insert(bref.data_off.get());
        if error.is_some() {
            self.stats.errors += 1;
        }
        if shared {
            self.stats.shared += 1;
        }
        (self.visit)(&Visit {
            depth,
            location: location.clone(),
            bref,
            media,
            check: outcome,
            error,
            shared,
        });
        if !shared && !kids.is_empty() {
            self.ancestors.push(bref.offset());
            self.table(kids, bref.data_off.get(), depth + 1);
            self.ancestors.pop();
        }
    }
}
