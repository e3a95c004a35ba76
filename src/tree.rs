//! Reading the media tree: a blockref's media (bounds-checked, verified,
//! decompressed), the blockrefs a node holds, and key lookups through any
//! depth of indirect blocks.
//!
//! Blockref tables are fully associative (entries in any order, holes
//! anywhere), so a table is scanned, but subtrees whose key range cannot hold
//! the key are skipped. Depth is bounded, so a blockref pointing at an
//! ancestor ends in an error, not a loop.
//!
//! Only DATA blockrefs carry compressed media; the fixtures show inodes whose
//! `methods` name LZ4 while the 1 KiB inode is stored raw, so compression is
//! ignored for every other type. A data blockref's logical size is
//! `1 << keybits` (writers leave `vradix` 0).

use crate::check::{self, CheckOutcome};
use crate::compress;
use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::{Blockref, BlockrefType, CompMethod, InodeData, INODE_BYTES, PBUFSIZE};
use crate::volume::Hammer2;
use crate::walk::{media_extent, read_media, MAX_DEPTH};
use std::borrow::Cow;

/// Where a blockref sits, for error messages.
pub fn location(bref: &Blockref, parent_off: u64, index: usize) -> Location {
    Location::of(bref, parent_off, index)
}

/// What a scan callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

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

    fn verify_check(&self, bref: &Blockref, bytes: &[u8], loc: &Location) -> Result<()> {
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
        let logical = 1usize << bref.keybits.clamp(10, 16);
        let decoded = match bref.comp_method() {
            CompMethod::Lz4 => compress::lz4_decompress(&raw, logical),
            CompMethod::Zlib => compress::zlib_decompress(&raw, logical),
            CompMethod::None | CompMethod::Autozero => return Ok(Cow::Owned(raw)),
            CompMethod::Unknown(m) => {
                return Err(Error::corrupt(
                    CorruptKind::Other(format!("unknown compression {m}")),
                    loc.clone(),
                ))
            }
        };
        decoded.map(Cow::Owned).map_err(|e| Error::corrupt(CorruptKind::Decompress(e), loc.clone()))
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
    /// `set`, descending indirect blocks whose key range meets `[lo, hi]`.
    /// Leaves are passed with their location; leaves outside the range are
    /// skipped.
    pub fn scan(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        lo: u64,
        hi: u64,
        visit: &mut dyn FnMut(&'a Blockref, &Location) -> Result<Flow>,
    ) -> Result<Flow> {
        self.scan_depth(set, parent_off, lo, hi, 0, visit)
    }

    fn scan_depth(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        lo: u64,
        hi: u64,
        depth: usize,
        visit: &mut dyn FnMut(&'a Blockref, &Location) -> Result<Flow>,
    ) -> Result<Flow> {
        for (index, b) in set.iter().enumerate() {
            let kind = b.kind();
            if kind == BlockrefType::Empty || b.key_end() < lo || b.key.get() > hi {
                continue;
            }
            let loc = location(b, parent_off, index);
            if kind == BlockrefType::Indirect {
                if depth + 1 >= MAX_DEPTH {
                    return Err(Error::corrupt(CorruptKind::TooDeep(MAX_DEPTH), loc));
                }
                let kids = self.children(b, &loc)?;
                if self.scan_depth(kids, b.data_off.get(), lo, hi, depth + 1, visit)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            } else if visit(b, &loc)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// The leaf with exactly `key` and type `kind` under `set`.
    pub fn lookup(
        &self,
        set: &'a [Blockref],
        parent_off: u64,
        key: u64,
        kind: BlockrefType,
    ) -> Result<Option<(&'a Blockref, Location)>> {
        let mut found = None;
        self.scan(set, parent_off, key, key, &mut |b, loc| {
            if b.kind() == kind && b.key.get() == key {
                found = Some((b, loc.clone()));
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        Ok(found)
    }
}
