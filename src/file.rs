//! File contents: embedded data, or DATA blockrefs keyed by file offset
//! (through indirect blocks), with holes and zero blocks reading as zeros.
//! Reading streams: the traversal engine visits blocks in key order table by
//! table, so memory is bounded by the tree's depth, not the file's size.

use crate::error::{CorruptKind, Error, Result};
use crate::format::{BlockrefType, EMBEDDED_BYTES};
use crate::pfs::Inode;
use crate::tree::Tree;
use crate::walk::{Engine, Node, Nothing, Options, Reach, Step, Visitor};
use std::io::Write;
use std::os::unix::fs::FileExt;

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

/// A sink into a host file that leaves holes unallocated (nothing is
/// written for them; the caller sets the length at the end), so a sparse or
/// hostile-sized file costs no disk. Bytes are gathered in a caller's buffer
/// (reused from file to file) and written with `pwrite` once it holds
/// [`SparseFileSink::CHUNK`] bytes or a hole follows: memory per file is one
/// chunk, whatever its size.
pub struct SparseFileSink<'f> {
    file: &'f std::fs::File,
    buf: &'f mut Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// End of the last bytes written out.
    written: u64,
}

impl<'f> SparseFileSink<'f> {
    /// Bytes gathered before a write.
    pub const CHUNK: usize = 1 << 20;

    /// A sink writing into `file` from offset 0, gathering in `buf`.
    pub fn new(file: &'f std::fs::File, buf: &'f mut Vec<u8>) -> Self {
        buf.clear();
        buf.reserve(Self::CHUNK);
        SparseFileSink { file, buf, start: 0, written: 0 }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(self.buf, self.start)?;
            self.start += self.buf.len() as u64;
            self.written = self.start;
            self.buf.clear();
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
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + bytes.len() > Self::CHUNK {
            self.flush()?;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        if n > 0 {
            self.flush()?;
            self.start += n;
        }
        Ok(())
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
    let mut v = InOrder { tree, size, pos: 0, out, error: None };
    let opts = Options { key_order: true, ..Options::scan(0, size - 1) };
    Engine::new(tree.fs, opts).run(ino.blockset(), ino.bref.data_off.get(), &(), &mut v);
    if let Some(e) = v.error {
        return Err(e);
    }
    let pos = v.pos;
    out.hole(size - pos).map_err(io)?;
    Ok(size)
}

/// Emits a file's blocks in key order (the engine sorts each table and
/// skips blocks at or past EOF, such as those a truncate leaves), filling
/// gaps with holes; `pos` is the next file offset to produce.
struct InOrder<'t, 'a, 'o> {
    tree: &'t Tree<'a>,
    size: u64,
    pos: u64,
    out: &'o mut dyn Sink,
    error: Option<Error>,
}

impl<'a> InOrder<'_, 'a, '_> {
    fn block(&mut self, node: &Node<'a>) -> Result<Step<(), Nothing>> {
        let io = |e: std::io::Error| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
        let b = node.bref;
        let loc = node.location();
        let key = b.key.get();
        if key < self.pos {
            return Err(Error::corrupt(
                CorruptKind::Other(format!("data overlaps earlier data at {:#x}", self.pos)),
                loc,
            ));
        }
        match b.kind() {
            BlockrefType::Indirect => {
                if node.is_shared() {
                    return Err(Error::corrupt(
                        CorruptKind::Other("indirect block referenced twice in one file".into()),
                        loc,
                    ));
                }
                node.result()?;
                Ok(Step::Descend(()))
            }
            BlockrefType::Data => {
                if let Reach::Failed(k) = &node.reach {
                    return Err(Error::corrupt(k.clone(), loc));
                }
                if b.keybits > 16 {
                    return Err(Error::corrupt(
                        CorruptKind::Other(format!("data keybits {} > 16", b.keybits)),
                        loc,
                    ));
                }
                self.out.hole(key - self.pos).map_err(io)?;
                self.pos = key;
                let block_len = (1u64 << b.keybits).min(self.size - key);
                let data = self.tree.data(b, &loc)?;
                let have = (data.len() as u64).min(block_len);
                self.out.data(&data[..have as usize]).map_err(io)?;
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
