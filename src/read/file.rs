//! File contents: embedded data, or DATA blockrefs keyed by file offset
//! (through indirect blocks), with holes and zero blocks reading as zeros.
//! Reading streams: the traversal engine visits blocks in key order table by
//! table, so memory is bounded by the tree's depth, not the file's size.

use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::compress;
use crate::format::{Blockref, BlockrefType, CompMethod, EMBEDDED_BYTES};
use crate::read::pfs::Inode;
use crate::read::tree::Tree;
use crate::read::walk::{media_extent, Engine, Node, Nothing, Options, Reach, Step, Visitor};
use std::io::Write;
use std::os::unix::fs::FileExt;

/// Where file contents go: bytes, and holes (runs of zeros).
pub trait Sink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// `n` zero bytes.
    fn hole(&mut self, n: u64) -> std::io::Result<()>;
    /// Room for up to `n` next bytes, for a reader that can put them there
    /// itself (saving a copy); it then calls [`Sink::filled`] with how many
    /// it put. `None` (the default): bytes come through [`Sink::data`].
    fn room(&mut self, _n: usize) -> std::io::Result<Option<&mut [u8]>> {
        Ok(None)
    }
    /// The first `n` bytes of the last [`Sink::room`] are the next bytes.
    fn filled(&mut self, _n: usize) {}
}

/// A sink that writes holes out as zeros (stdout, pipes, buffers).
pub struct WriteSink<W: Write>(pub W);

impl<W: Write> Sink for WriteSink<W> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
    fn hole(&mut self, mut n: u64) -> std::io::Result<()> {
        static ZEROS: [u8; 65536] = [0; 65536];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.0.write_all(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

/// A sink into a host file that leaves holes unallocated (nothing is
/// written for them; the caller sets the length at the end), so a sparse or
/// hostile-sized file costs no disk. Bytes are gathered in a caller's buffer
/// (reused from file to file) and written with `pwrite` once it holds
/// [`SparseFileSink::CHUNK`] bytes or a hole follows: memory per file is one
/// chunk, whatever its size.
pub struct SparseFileSink<'f> {
    file: &'f std::fs::File,
    /// The chunk: `buf[base..base + CHUNK]`, page-aligned like the page
    /// cache the kernel copies blocks from (AMD's `rep movsb` is slow for
    /// mutually misaligned buffers), of which `used` bytes are gathered.
    buf: &'f mut Vec<u8>,
    base: usize,
    used: usize,
    /// File offset of `buf[0]`.
    start: u64,
    /// End of the last bytes written out.
    written: u64,
}

/// Alignment of [`SparseFileSink`]'s chunk.
const PAGE: usize = 4096;

impl<'f> SparseFileSink<'f> {
    /// Bytes gathered before a write: small enough to stay in the CPU's
    /// cache between the read that fills it and the write that empties it.
    pub const CHUNK: usize = 1 << 17;

    /// A sink writing into `file` from offset 0, gathering in `buf`
    /// (sized once, then reused as it is).
    pub fn new(file: &'f std::fs::File, buf: &'f mut Vec<u8>) -> Self {
        buf.resize(Self::CHUNK + PAGE, 0);
        let base = buf.as_ptr().align_offset(PAGE);
        SparseFileSink { file, buf, base, used: 0, start: 0, written: 0 }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.used > 0 {
            self.file.write_all_at(&self.buf[self.base..self.base + self.used], self.start)?;
            self.start += self.used as u64;
            self.written = self.start;
            self.used = 0;
        }
        Ok(())
    }

    /// Writes out what is gathered; returns the end of the last bytes
    /// written (past it, only holes). A file whose length differs must
    /// still be given its length (`set_len`); one that ends in written
    /// bytes already has it.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.flush()?;
        Ok(self.written)
    }
}

impl Sink for SparseFileSink<'_> {
    fn data(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.used == Self::CHUNK {
                self.flush()?;
            }
            let n = bytes.len().min(Self::CHUNK - self.used);
            let at = self.base + self.used;
            self.buf[at..at + n].copy_from_slice(&bytes[..n]);
            self.used += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        if n > 0 {
            self.flush()?;
            self.start += n;
        }
        Ok(())
    }
    fn room(&mut self, n: usize) -> std::io::Result<Option<&mut [u8]>> {
        if n > Self::CHUNK {
            return Ok(None);
        }
        if self.used + n > Self::CHUNK {
            self.flush()?;
        }
        let at = self.base + self.used;
        Ok(Some(&mut self.buf[at..at + n]))
    }
    fn filled(&mut self, n: usize) {
        self.used += n;
    }
}

/// Produces the contents of `ino` (its `size` bytes) into `out`; returns the size.
pub fn read_file(tree: &Tree<'_>, ino: &Inode<'_>, out: &mut dyn Sink) -> Result<u64> {
    let size = ino.data.meta.size.get();
    let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
    if ino.data.meta.is_directdata() {
        if size > EMBEDDED_BYTES as u64 {
            return Err(Error::corrupt(
                CorruptKind::BadInode(format!("embeds data but its size is {size} (> {EMBEDDED_BYTES})")),
                ino.loc.clone(),
            ));
        }
        out.data(&ino.data.u[..size as usize]).map_err(io)?;
        return Ok(size);
    }
    if size == 0 {
        return Ok(0);
    }
    if size > i64::MAX as u64 {
        // Sizes are off_t: no file holds 2^63 bytes or more.
        return Err(Error::corrupt(
            CorruptKind::BadInode(format!("size {size:#x} exceeds the largest file (2^63 - 1)")),
            ino.loc.clone(),
        ));
    }
    read_span(tree, ino, 0, size, out)?;
    Ok(size)
}

/// Produces bytes `offset .. offset + len` of `ino` into `out`, holes as
/// zeros, stopping at its size; returns how many bytes. Only the blocks
/// that meet the range are read (a mount serves a 4 KiB read of a large
/// file without reading the rest).
pub fn read_range(
    tree: &Tree<'_>,
    ino: &Inode<'_>,
    offset: u64,
    len: u64,
    out: &mut dyn Sink,
) -> Result<u64> {
    let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset, source: e };
    let size = ino.data.meta.size.get();
    let end = offset.saturating_add(len).min(size);
    if offset >= end {
        return Ok(0);
    }
    if ino.data.meta.is_directdata() {
        if size > EMBEDDED_BYTES as u64 {
            return Err(Error::corrupt(
                CorruptKind::BadInode(format!("embeds data but its size is {size} (> {EMBEDDED_BYTES})")),
                ino.loc.clone(),
            ));
        }
        out.data(&ino.data.u[offset as usize..end as usize]).map_err(io)?;
        return Ok(end - offset);
    }
    if size > i64::MAX as u64 {
        return Err(Error::corrupt(
            CorruptKind::BadInode(format!("size {size:#x} exceeds the largest file (2^63 - 1)")),
            ino.loc.clone(),
        ));
    }
    if offset == 0 {
        read_span(tree, ino, 0, end, out)?;
    } else {
        read_span(tree, ino, offset, end, &mut Skip { skip: offset, out })?;
    }
    Ok(end - offset)
}

/// Produces the file's bytes from its start up to `end` into `out`,
/// reading only the blocks that meet `lo .. end` (what comes before `lo`
/// arrives as holes, which cost nothing to skip).
fn read_span(tree: &Tree<'_>, ino: &Inode<'_>, lo: u64, end: u64, out: &mut dyn Sink) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
    let mut v = InOrder { tree, size: end, pos: 0, out, raw: Vec::new(), error: None };
    let opts = Options { key_order: true, ..Options::scan(lo, end - 1) };
    Engine::new(tree.fs, opts).run(ino.blockset(), ino.bref.data_off.get(), &(), &mut v);
    if let Some(e) = v.error {
        return Err(e);
    }
    let pos = v.pos;
    out.hole(end - pos).map_err(io)?;
    Ok(())
}

/// A sink that drops the first `skip` bytes it is given, then passes the
/// rest on.
struct Skip<'o> {
    skip: u64,
    out: &'o mut dyn Sink,
}

impl Sink for Skip<'_> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let drop = (self.skip.min(bytes.len() as u64)) as usize;
        self.skip -= drop as u64;
        if drop < bytes.len() {
            self.out.data(&bytes[drop..])?;
        }
        Ok(())
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        let drop = self.skip.min(n);
        self.skip -= drop;
        if n > drop {
            self.out.hole(n - drop)?;
        }
        Ok(())
    }
}

/// Emits a file's blocks in key order (the engine sorts each table and
/// skips blocks at or past EOF, such as those a truncate leaves), filling
/// gaps with holes; `pos` is the next file offset to produce.
struct InOrder<'t, 'a, 'o> {
    tree: &'t Tree<'a>,
    size: u64,
    pos: u64,
    out: &'o mut dyn Sink,
    /// Media of the current block when it cannot go straight to `out`.
    raw: Vec<u8>,
    error: Option<Error>,
}

impl<'a> InOrder<'_, 'a, '_> {
    fn block(&mut self, node: &Node<'a>) -> Result<Step<(), Nothing>> {
        let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
        let b = node.bref;
        let loc = node.location();
        let key = b.key.get();
        if key < self.pos {
            return Err(Error::corrupt(CorruptKind::DataOverlap { pos: self.pos }, loc));
        }
        match b.kind() {
            BlockrefType::Indirect => {
                if node.is_shared() {
                    return Err(Error::corrupt(CorruptKind::SharedIndirect, loc));
                }
                node.result()?;
                Ok(Step::Descend(()))
            }
            BlockrefType::Data => {
                if let Reach::Failed(k) = &node.reach {
                    return Err(Error::corrupt(k.clone(), loc));
                }
                if b.keybits > 16 {
                    return Err(Error::corrupt(CorruptKind::DataKeybits(b.keybits), loc));
                }
                self.out.hole(key - self.pos).map_err(io)?;
                self.pos = key;
                let block_len = (1u64 << b.keybits).min(self.size - key);
                let have = self.block_data(b, &loc, block_len as usize)? as u64;
                self.out.hole(block_len - have).map_err(io)?;
                self.pos = key + block_len;
                Ok(Step::Leaf(Nothing))
            }
            other => {
                let found = other.to_string();
                Err(Error::corrupt(CorruptKind::WrongType { found, expected: "data or indirect" }, loc))
            }
        }
    }
}

impl InOrder<'_, '_, '_> {
    /// Produces a DATA block's logical bytes (at most `block_len`) into
    /// `out`; returns how many (the rest of the block reads as zeros).
    /// What [`Tree::data`] gives, without its allocations and copies: raw
    /// media is read straight into the sink's room when the sink has room,
    /// and LZ4 decodes into it.
    fn block_data(&mut self, b: &Blockref, loc: &Location, block_len: usize) -> Result<usize> {
        let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
        let Some((off, len)) = media_extent(b).map_err(|k| Error::corrupt(k, loc.clone()))? else {
            return Ok(0);
        };
        let read = |tree: &Tree<'_>, buf: &mut [u8]| {
            tree.fs.device.read_into(off, buf).map_err(|_| {
                Error::corrupt(CorruptKind::OutOfRange { offset: off, len: len as u64 }, loc.clone())
            })?;
            tree.verify_check(b, buf, loc)
        };
        let comp = b.comp_method();
        if matches!(comp, CompMethod::None | CompMethod::Autozero) {
            if let Some(room) = self.out.room(len).map_err(io)? {
                read(self.tree, room)?;
                let have = len.min(block_len);
                self.out.filled(have);
                return Ok(have);
            }
        }
        self.raw.resize(len, 0);
        read(self.tree, &mut self.raw)?;
        if comp == CompMethod::Lz4 {
            let logical = 1usize << b.keybits.clamp(10, 16);
            if let Some(room) = self.out.room(logical).map_err(io)? {
                let n = compress::lz4_decompress_into(&self.raw, room)
                    .map_err(|e| Error::corrupt(CorruptKind::Decompress(e), loc.clone()))?;
                let have = n.min(block_len);
                self.out.filled(have);
                return Ok(have);
            }
        }
        let data = Tree::decode(b, std::mem::take(&mut self.raw), loc)?;
        let have = data.len().min(block_len);
        self.out.data(&data[..have]).map_err(io)?;
        if comp == CompMethod::None || comp == CompMethod::Autozero {
            // Keep the buffer for the next block.
            self.raw = data;
        }
        Ok(have)
    }
}

impl<'a> Visitor<'a> for InOrder<'_, 'a, '_> {
    type Ctx = ();
    type Out = Nothing;

    fn visit(&mut self, node: &Node<'a>, _: &()) -> Step<(), Nothing> {
        match self.block(node) {
            Ok(step) => step,
            Err(e) => {
                self.error = Some(e);
                Step::Stop
            }
        }
    }
}

/// A symlink's target (bounded: targets are short).
pub fn read_link(tree: &Tree<'_>, ino: &Inode<'_>) -> Result<Vec<u8>> {
    let size = ino.data.meta.size.get();
    if size > 65536 {
        return Err(Error::corrupt(
            CorruptKind::BadInode(format!("symlink of {size} bytes")),
            ino.loc.clone(),
        ));
    }
    let mut sink = WriteSink(Vec::with_capacity(size as usize));
    read_file(tree, ino, &mut sink)?;
    Ok(sink.0)
}
