//! File contents: embedded data, or DATA blockrefs keyed by file offset
//! (through indirect blocks), with holes and zero blocks reading as zeros.
//! Reading streams: blocks are visited in key order table by table, so
//! memory is bounded by the tree's depth, not the file's size.

use crate::error::{CorruptKind, Error, Result};
use crate::format::{Blockref, BlockrefType, EMBEDDED_BYTES};
use crate::pfs::Inode;
use crate::tree::{location, Tree};
use crate::walk::MAX_DEPTH;
use std::io::{Seek, SeekFrom, Write};

/// Where file contents go: bytes, and holes (runs of zeros).
pub trait Sink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// `n` zero bytes.
    fn hole(&mut self, n: u64) -> std::io::Result<()>;
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

/// A sink into a host file that leaves holes unallocated (seek past them and
/// set the length at the end), so a sparse or hostile-sized file costs no disk.
pub struct SparseFileSink<W: Write + Seek> {
    inner: W,
    pos: u64,
}

impl<W: Write + Seek> SparseFileSink<W> {
    pub fn new(inner: W) -> Self {
        SparseFileSink { inner, pos: 0 }
    }
    /// Flushes and returns the writer positioned at the end.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
    pub fn len(&self) -> u64 {
        self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

impl<W: Write + Seek> Sink for SparseFileSink<W> {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        self.pos += n;
        self.inner.seek(SeekFrom::Start(self.pos)).map(|_| ())
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
    let mut pos = 0u64;
    blocks_in_order(tree, ino.blockset(), ino.bref.data_off.get(), size, 0, &mut pos, out)?;
    out.hole(size - pos).map_err(io)?;
    Ok(size)
}

/// Emits the table's blocks in key order, zero-filling gaps; `pos` is the
/// next file offset to produce.
fn blocks_in_order(
    tree: &Tree<'_>,
    set: &[Blockref],
    parent_off: u64,
    size: u64,
    depth: usize,
    pos: &mut u64,
    out: &mut dyn Sink,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
    let mut order: Vec<usize> = (0..set.len()).filter(|&i| set[i].kind() != BlockrefType::Empty).collect();
    order.sort_by_key(|&i| set[i].key.get());
    for i in order {
        let b = &set[i];
        let loc = location(b, parent_off, i);
        let key = b.key.get();
        if key >= size {
            continue; // beyond EOF (e.g. left by a truncate): not part of the file
        }
        if key < *pos {
            return Err(Error::corrupt(
                CorruptKind::Other(format!("data overlaps earlier data at {:#x}", *pos)),
                loc,
            ));
        }
        match b.kind() {
            BlockrefType::Indirect => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(Error::corrupt(CorruptKind::TooDeep(MAX_DEPTH), loc));
                }
                let kids = tree.children(b, &loc)?;
                blocks_in_order(tree, kids, b.data_off.get(), size, depth + 1, pos, out)?;
            }
            BlockrefType::Data => {
                if b.keybits > 16 {
                    return Err(Error::corrupt(
                        CorruptKind::Other(format!("data keybits {} > 16", b.keybits)),
                        loc,
                    ));
                }
                out.hole(key - *pos).map_err(io)?;
                *pos = key;
                let block_len = (1u64 << b.keybits).min(size - key);
                let data = tree.data(b, &loc)?;
                let have = (data.len() as u64).min(block_len);
                out.data(&data[..have as usize]).map_err(io)?;
                out.hole(block_len - have).map_err(io)?;
                *pos = key + block_len;
            }
            other => {
                let found = other.to_string();
                return Err(Error::corrupt(
                    CorruptKind::WrongType { found, expected: "data or indirect" },
                    loc,
                ));
            }
        }
    }
    Ok(())
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
