//! Reading the media tree: a blockref's media (bounds-checked, verified,
//! decompressed), the blockrefs a node holds, and key lookups through any
//! depth of indirect blocks.
//!
//! Blockref tables are fully associative (entries in any order, holes
//! anywhere), so a table is scanned, but subtrees whose key range cannot hold
//! the key are skipped. Scans run on the traversal engine ([`crate::read::walk`]):
//! depth, cycles, shared nodes and the work done are bounded there.
//!
//! Only DATA blockrefs carry compressed media; the fixtures show inodes whose
//! `methods` name LZ4 while the 1 KiB inode is stored raw, so compression is
//! ignored for every other type. A data blockref's logical size is
//! `1 << keybits` (writers leave `vradix` 0).

use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::check::{self, CheckOutcome};
use crate::format::compress;
use crate::format::{Blockref, BlockrefType, CompMethod, InodeData, INODE_BYTES, PBUFSIZE};
use crate::read::walk::{self, media_extent, read_media, Node, Options, Reach};
use crate::volume::Hammer2;
use std::borrow::Cow;

/// Where a blockref sits, for error messages.
pub fn location(bref: &Blockref, parent_off: u64, index: usize) -> Location {
    Location::of(bref, parent_off, index)
}

pub use crate::read::walk::Flow;

/// Read access to one opened file system's media tree.
#[derive(Clone, Copy)]
pub struct Tree<'a> {
    pub fs: &'a Hammer2,
    /// Verify check codes on every read (on by default).
    pub verify: bool,
}

impl<'a> Tree<'a> {
    pub fn new(fs: &'a Hammer2) -> Self {
        Tree { fs, verify: true }
    }

    /// The physical media of `bref` (empty when it has none), check verified.
    pub fn media(&self, bref: &Blockref) -> Result<&'a [u8]> {
        self.media_at(bref, &location(bref, 0, 0))
    }

    pub fn media_at(&self, bref: &Blockref, loc: &Location) -> Result<&'a [u8]> {
        let bytes = read_media(self.fs, bref).map_err(|k| Error::corrupt(k, loc.clone()))?.unwrap_or(&[]);
        self.verify_check(bref, bytes, loc)?;
        Ok(bytes)
    }

    pub(crate) fn verify_check(&self, bref: &Blockref, bytes: &[u8], loc: &Location) -> Result<()> {
        if !self.verify {
            return Ok(());
        }
        match check::verify(bref, bytes) {
            CheckOutcome::Ok | CheckOutcome::NotChecked => Ok(()),
            CheckOutcome::Mismatch { expected, found } => {
                let method = bref.check_method().to_string();
                Err(Error::corrupt(CorruptKind::CheckMismatch { method, expected, found }, loc.clone()))
            }
            CheckOutcome::UnknownMethod(m) => Err(Error::corrupt(CorruptKind::UnknownCheck(m), loc.clone())),
        }
    }

    /// Logical bytes of a DATA blockref: decompressed as its methods say,
    /// at most `1 << keybits` (capped at 64 KiB) long. The media is copied
    /// out (not borrowed from the mapping) so streaming a large file keeps
    /// this process's resident memory flat.
    pub fn data(&self, bref: &Blockref, loc: &Location) -> Result<Cow<'a, [u8]>> {
        let Some((off, len)) = media_extent(bref).map_err(|k| Error::corrupt(k, loc.clone()))? else {
            return Ok(Cow::Borrowed(&[]));
        };
        let mut raw = vec![0u8; len];
        self.fs.device.read_into(off, &mut raw).map_err(|_| {
            Error::corrupt(CorruptKind::OutOfRange { offset: off, len: len as u64 }, loc.clone())
        })?;
        self.verify_check(bref, &raw, loc)?;
        Self::decode(bref, raw, loc).map(Cow::Owned)
    }

    /// The logical contents of a data block whose media bytes are `raw`
    /// (decompressed as its methods say).
    pub fn decode(bref: &Blockref, raw: Vec<u8>, loc: &Location) -> Result<Vec<u8>> {
        let logical = 1usize << bref.keybits.clamp(10, 16);
        let decoded = match bref.comp_method() {
            CompMethod::Lz4 => compress::lz4_decompress(&raw, logical),
            CompMethod::Zlib => compress::zlib_decompress(&raw, logical),
            CompMethod::None | CompMethod::Autozero => return Ok(raw),
            CompMethod::Unknown(m) => {
                return Err(Error::corrupt(CorruptKind::UnknownCompression(m), loc.clone()))
            }
        };
        decoded.map_err(|e| Error::corrupt(CorruptKind::Decompress(e), loc.clone()))
    }

    /// The inode an INODE blockref points at.
    pub fn inode(&self, bref: &Blockref, loc: &Location) -> Result<&'a InodeData> {
        if bref.kind() != BlockrefType::Inode {
            let found = bref.kind().to_string();
            return Err(Error::corrupt(CorruptKind::WrongType { found, expected: "inode" }, loc.clone()));
        }
        let media = self.media_at(bref, loc)?;
        InodeData::from_bytes(media).ok_or_else(|| {
            Error::corrupt(
                CorruptKind::BadInode(format!("{} bytes, need {INODE_BYTES}", media.len())),
                loc.clone(),
            )
        })
    }

    /// The blockrefs an internal node holds: an inode's blockset (none when
    /// it embeds data), an indirect block or freemap node's table.
    pub fn children(&self, bref: &Blockref, loc: &Location) -> Result<&'a [Blockref]> {
        match bref.kind() {
            BlockrefType::Inode => {
                let ip = self.inode(bref, loc)?;
                Ok(if ip.meta.is_directdata() { &[] } else { ip.blockset() })
            }
            BlockrefType::Indirect | BlockrefType::FreemapNode => {
                let media = self.media_at(bref, loc)?;
                if media.len() > PBUFSIZE as usize {
                    return Err(Error::corrupt(CorruptKind::BadRadix(bref.radix()), loc.clone()));
                }
                Ok(Blockref::table(media))
            }
            _ => Ok(&[]),
        }
    }

    /// Visits every leaf blockref (anything but INDIRECT and EMPTY) under
    /// `set` whose key range meets `[lo, hi]`, descending indirect blocks
    /// that can hold such keys, through the traversal engine (bounded depth,
    /// no node entered twice, a work budget).
    pub fn scan(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        lo: u64,
        hi: u64,
        visit: &mut dyn FnMut(&'a Blockref, &Location) -> Result<Flow>,
    ) -> Result<Flow> {
        self.scan_nodes(set, parent_off, lo, hi, &mut |n| visit(n.bref, &n.location()))
    }

    /// [`Tree::scan`] handing over the engine's nodes: their media is
    /// already read and verified (no second hash when the caller uses it).
    pub fn scan_nodes(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        lo: u64,
        hi: u64,
        visit: &mut dyn FnMut(&Node<'a>) -> Result<Flow>,
    ) -> Result<Flow> {
        let opts = Options { verify: self.verify, ..Options::scan(lo, hi) };
        walk::scan(self.fs, opts, set, parent_off, visit)
    }

    /// The inode a scanned node holds, using the media the engine read.
    pub fn node_inode(&self, node: &Node<'a>) -> Result<&'a InodeData> {
        match node.reach {
            Reach::Media(_) => {
                node.result()?;
                let loc = node.location();
                if node.bref.kind() != BlockrefType::Inode {
                    let found = node.bref.kind().to_string();
                    return Err(Error::corrupt(CorruptKind::WrongType { found, expected: "inode" }, loc));
                }
                let media = node.raw_media().unwrap_or(&[]);
                InodeData::from_bytes(media).ok_or_else(|| {
                    Error::corrupt(
                        CorruptKind::BadInode(format!("{} bytes, need {INODE_BYTES}", media.len())),
                        loc,
                    )
                })
            }
            _ => self.inode(node.bref, &node.location()),
        }
    }

    /// The leaf with exactly `key` and type `kind` under `set`, as the
    /// engine reached it (media read and verified).
    pub fn lookup(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        key: u64,
        kind: BlockrefType,
    ) -> Result<Option<Node<'a>>> {
        let mut found = None;
        self.scan_nodes(set, parent_off, key, key, &mut |n| {
            if n.bref.kind() == kind && n.bref.key.get() == key {
                found = Some(n.clone());
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        Ok(found)
    }
}
