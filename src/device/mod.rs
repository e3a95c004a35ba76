//! Storage: one or more volumes (image files or block devices) behind a small
//! trait, mapped with memmap2 (read-only unless write access is asked for), or
//! held in memory for tests and crash simulation.
//!
//! Every access is bounds-checked against the size measured at open, so an
//! offset past the end is an error, never a panic or a fault. Offsets inside
//! a volume are physical; the [`Device`] maps HAMMER2's logical offsets
//! (which run across all volumes of a set) to a volume and a physical offset
//! once the volume layer has told it each volume's extent.

pub mod lock;
mod writeback;

use crate::error::{Error, Result};
use lock::{LockedFile, Wait};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Whether a device may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One volume's storage.
pub trait Backend: Send + Sync {
    /// Name for messages (the path for files).
    fn path(&self) -> &Path;
    /// Size in bytes, fixed at open.
    fn size(&self) -> u64;
    fn writable(&self) -> bool;
    /// The bytes at `[off, off+len)`, or `None` when that runs past the end.
    fn bytes(&self, off: u64, len: usize) -> Option<&[u8]>;
    /// Copies `buf.len()` bytes at `off` into `buf`. Mapped backends read
    /// with pread, so bulk data copied out (file contents) does not stay
    /// resident in this process through the mapping.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let src = self
            .bytes(off, buf.len())
            .ok_or_else(|| out_of_bounds_dyn(self.path(), self.size(), off, buf.len() as u64))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    /// Writes `data` at `off` (must lie inside the volume).
    fn write(&mut self, off: u64, data: &[u8]) -> Result<()>;
    /// Durability barrier for `[off, off+len)`: returns once it is on media.
    fn sync_range(&mut self, off: u64, len: u64) -> Result<()>;
    /// Durability barrier for everything written so far.
    fn sync(&mut self) -> Result<()>;
    /// Whether `[off, off+len)` lies wholly in a hole of a sparse file
    /// (false when unknown: block devices, memory).
    fn is_hole(&self, _off: u64, _len: u64) -> bool {
        false
    }
    /// Makes `[off, off+len)` a hole again (a file whose range
    /// [`Backend::is_hole`] said was one); elsewhere writes zeros.
    fn punch_hole(&mut self, off: u64, len: u64) -> Result<()> {
        self.write(off, &vec![0u8; len as usize])
    }
    /// The `[start, end)` ranges of the volume that may hold data, in
    /// order: a sparse file's data extents (SEEK_DATA / SEEK_HOLE), the
    /// whole volume where that is unknown (block devices, memory).
    fn data_regions(&self) -> Vec<(u64, u64)> {
        vec![(0, self.size())]
    }
}

fn out_of_bounds(b: &dyn Backend, off: u64, len: u64) -> Error {
    out_of_bounds_dyn(b.path(), b.size(), off, len)
}

fn out_of_bounds_dyn(path: &Path, size: u64, off: u64, len: u64) -> Error {
    Error::OutOfBounds { what: path.display().to_string(), offset: off, len, size }
}

fn range_ok(size: u64, off: u64, len: u64) -> bool {
    off.checked_add(len).is_some_and(|end| end <= size)
}

enum Map {
    Ro(memmap2::Mmap),
    Rw(memmap2::MmapMut),
}

/// `[off, off+len)` widened to whole 4 KiB pages, within `size`.
fn page_span(off: u64, len: u64, size: u64) -> (u64, u64) {
    let start = off & !4095;
    let end = (off + len).div_ceil(4096).saturating_mul(4096).min(size);
    (start, end.saturating_sub(start))
}

/// A memory-mapped image file or block device.
///
/// Resident memory stays bounded however much is read through the mapping:
/// every page touched counts towards this process's resident set (the
/// kernel also maps up to 64 KiB of cached neighbours on each fault), so
/// after [`TRIM_AFTER`] bytes of estimated residency the whole mapping is
/// released with `madvise(MADV_DONTNEED)`. The mapping is shared and never
/// stored into (writes use pwrite), so this drops nothing but page-table
/// entries: slices still held read the same bytes again from the page
/// cache on their next access.
pub struct MmapBackend {
    path: PathBuf,
    size: u64,
    /// The open, locked file: kept for the mapping's lifetime, for pread,
    /// pwrite and fdatasync, and so that the lock lasts as long as the volume
    /// is in use ([`lock`]).
    lock: Arc<LockedFile>,
    map: Map,
    /// Bytes possibly made resident through the mapping since the last trim.
    resident: AtomicU64,
    /// The fault-around window (plus one; 0 for none) the last access
    /// ended in: accesses that stay inside it (a table of inodes read in
    /// order) add nothing to `resident`, which it already counts.
    last_window: AtomicU64,
    /// Starts the kernel's write-back early during bulk writes.
    writeback: writeback::Writeback,
}

/// Estimated mapped bytes after which the mapping is released.
pub const TRIM_AFTER: u64 = 64 << 20;
/// What one access through the mapping may make resident at least (the
/// kernel's default fault-around window).
const FAULT_AROUND: u64 = 64 << 10;

impl MmapBackend {
    /// Opens, locks ([`lock`]: shared to read, exclusive to write; failing
    /// at once when another process holds it) and maps `path`, which must
    /// be a regular file or a block device. Refuses to open a mounted
    /// device for writing and a zero-length file at all.
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let locked = lock::lock_paths(&[path.to_path_buf()], access, Wait::No)?;
        Self::map(locked.into_iter().next().expect("one path, one lock"), access)
    }

    /// Maps a volume this process has locked ([`lock`]); `access` may ask
    /// for less than the lock allows (reading under an exclusive lock).
    pub fn map(lock: Arc<LockedFile>, access: Access) -> Result<Self> {
        let path = lock.path().to_path_buf();
        let path = path.as_path();
        let open_err = |why: String| Error::Open { path: path.to_path_buf(), why };
        if access == Access::ReadWrite && !lock.exclusive() {
            return Err(open_err("locked for reading only".into()));
        }
        let file = lock.file();
        // Seeking to the end measures block devices too (their metadata length is 0).
        let size = (&mut &*file)
            .seek(SeekFrom::End(0))
            .map_err(|e| open_err(format!("cannot measure size: {e}")))?;
        if size == 0 {
            return Err(Error::Empty { path: path.to_path_buf() });
        }
        let len = usize::try_from(size).map_err(|_| open_err("too large to map".into()))?;
        let mut opts = memmap2::MmapOptions::new();
        opts.len(len);
        // SAFETY: memmap2 cannot rule out another process truncating or
        // writing the file while it is mapped. The toolkit works on offline
        // volumes (mounted devices are refused for writing) and checks every
        // access against the size measured above.
        let map = unsafe {
            match access {
                Access::ReadOnly => opts.map(file).map(Map::Ro),
                Access::ReadWrite => opts.map_mut(file).map(Map::Rw),
            }
        }
        .map_err(|e| open_err(format!("cannot map: {e}")))?;
        Ok(MmapBackend {
            path: path.to_path_buf(),
            size,
            writeback: writeback::Writeback::new(Arc::clone(&lock)),
            lock,
            map,
            resident: AtomicU64::new(0),
            last_window: AtomicU64::new(0),
        })
    }

    /// Accounts for an access of `len` bytes through the mapping; releases
    /// the mapping's pages once enough may be resident.
    ///
    /// A fault maps at most the aligned [`FAULT_AROUND`] window around it,
    /// so an access may make resident the windows it spans: those are
    /// charged, except the window the previous access ended in (already
    /// charged since the last release). Sequential reads of small blocks
    /// (a million 1 KiB inodes) thus charge each window once instead of
    /// 64 KiB per block, and the mapping is released 64 times less often
    /// (each release costs the faults that map the pages again). The
    /// estimate stays an upper bound: other threads' accesses in between
    /// only make it charge more.
    fn charge(&self, off: u64, len: usize) {
        let first = off / FAULT_AROUND;
        let last = (off + (len as u64).max(1) - 1) / FAULT_AROUND;
        let prev = self.last_window.swap(last + 1, Ordering::Relaxed);
        let windows = if prev == first + 1 { last - first } else { last - first + 1 };
        if windows == 0 {
            return;
        }
        let charged = windows * FAULT_AROUND;
        if self.resident.fetch_add(charged, Ordering::Relaxed) + charged < TRIM_AFTER {
            return;
        }
        // This access faults its windows after the release: they count.
        self.resident.store((last - first + 1) * FAULT_AROUND, Ordering::Relaxed);
        use memmap2::UncheckedAdvice::DontNeed;
        // SAFETY: both mappings are MAP_SHARED views of the file and are
        // never stored into (writes go through pwrite), so MADV_DONTNEED
        // only drops page-table entries: later accesses, including through
        // slices handed out earlier, fault the same bytes back in from the
        // page cache. Failure only means the pages stay resident.
        let _ = unsafe {
            match &self.map {
                Map::Ro(m) => m.unchecked_advise(DontNeed),
                Map::Rw(m) => m.unchecked_advise(DontNeed),
            }
        };
    }

    fn slice(&self) -> &[u8] {
        match &self.map {
            Map::Ro(m) => m,
            Map::Rw(m) => m,
        }
    }
}

impl Backend for MmapBackend {
    fn path(&self) -> &Path {
        &self.path
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn writable(&self) -> bool {
        matches!(self.map, Map::Rw(_))
    }
    fn bytes(&self, off: u64, len: usize) -> Option<&[u8]> {
        if !range_ok(self.size, off, len as u64) {
            return None;
        }
        self.charge(off, len);
        Some(&self.slice()[off as usize..off as usize + len])
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if !range_ok(self.size, off, buf.len() as u64) {
            return Err(out_of_bounds(self, off, buf.len() as u64));
        }
        self.lock.file().read_exact_at(buf, off).map_err(|source| Error::Io {
            path: self.path.clone(),
            op: "read",
            offset: off,
            source,
        })
    }
    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        if !range_ok(self.size, off, data.len() as u64) {
            return Err(out_of_bounds(self, off, data.len() as u64));
        }
        // pwrite, not a store through the mapping: written blocks then do
        // not stay resident in this process (an import of any size keeps
        // memory flat), and the shared mapping still sees them (one page
        // cache). Durability comes from fdatasync in the barriers; bulk
        // writes start their write-back early (see `writeback`).
        use std::os::unix::fs::FileExt;
        match &self.map {
            Map::Rw(_) => {
                self.lock.file().write_all_at(data, off).map_err(|source| Error::Io {
                    path: self.path.clone(),
                    op: "write",
                    offset: off,
                    source,
                })?;
                self.writeback.wrote(data.len() as u64);
                Ok(())
            }
            Map::Ro(_) => Err(Error::ReadOnly { path: self.path.clone() }),
        }
    }
    fn is_hole(&self, off: u64, len: u64) -> bool {
        use std::os::unix::io::AsRawFd;
        if !self.lock.file().metadata().is_ok_and(|m| m.is_file()) {
            return false;
        }
        // Holes come in whole pages: ask about the pages the range touches.
        let (off, len) = page_span(off, len, self.size);
        // The next data at or after `off` starts past the range (or none).
        // SAFETY: lseek on a descriptor we own; it only moves the file offset.
        let next = unsafe { libc::lseek(self.lock.file().as_raw_fd(), off as libc::off_t, libc::SEEK_DATA) };
        if next < 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
        }
        next as u64 >= off + len
    }
    fn data_regions(&self) -> Vec<(u64, u64)> {
        use std::os::unix::io::AsRawFd;
        let whole = vec![(0, self.size)];
        if !self.lock.file().metadata().is_ok_and(|m| m.is_file()) {
            return whole;
        }
        let fd = self.lock.file().as_raw_fd();
        let mut out = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            // SAFETY: lseek on a descriptor we own; it only moves the file offset.
            let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
            if data < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                    break; // only a hole is left
                }
                return whole; // the host cannot tell: read everything
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let end = if hole < 0 { self.size } else { (hole as u64).min(self.size) };
            if end <= data as u64 {
                break;
            }
            out.push((data as u64, end));
            pos = end;
        }
        out
    }
    fn punch_hole(&mut self, off: u64, len: u64) -> Result<()> {
        use std::os::unix::io::AsRawFd;
        if !self.lock.file().metadata().is_ok_and(|m| m.is_file()) {
            return self.write(off, &vec![0u8; len as usize]);
        }
        let (off, len) = page_span(off, len, self.size);
        // SAFETY: fallocate on a descriptor we own, inside the file (KEEP_SIZE).
        let r = unsafe {
            libc::fallocate(
                self.lock.file().as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                len as libc::off_t,
            )
        };
        if r != 0 {
            return self.write(off, &vec![0u8; len as usize]);
        }
        Ok(())
    }
    fn sync_range(&mut self, off: u64, len: u64) -> Result<()> {
        if !range_ok(self.size, off, len) {
            return Err(out_of_bounds(self, off, len));
        }
        if let Map::Rw(_) = &self.map {
            // Writes go through the file descriptor: make them durable.
            self.lock.file().sync_data().map_err(|source| Error::Io {
                path: self.path.clone(),
                op: "fdatasync",
                offset: off,
                source,
            })?;
        }
        Ok(())
    }
    /// One fdatasync(2). The mapping is never stored into (every write
    /// goes through pwrite), so an msync would have nothing of its own to
    /// flush: on Linux it only repeats the file sync, over the whole
    /// mapping. And a volume's size never changes, so the file's data and
    /// the block allocations that locate it (what fdatasync makes durable)
    /// are all a commit needs; the times fsync would add are not.
    fn sync(&mut self) -> Result<()> {
        if let Map::Rw(_) = &self.map {
            self.lock.file().sync_data().map_err(|source| Error::Io {
                path: self.path.clone(),
                op: "fdatasync",
                offset: 0,
                source,
            })?;
        }
        Ok(())
    }
}

/// Only regular files and block devices hold volumes; anything else gets
/// a message saying what it is.
fn check_file_type(meta: &std::fs::Metadata) -> std::result::Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "is a directory"
    } else if t.is_fifo() {
        "is a FIFO (named pipe), not an image file or block device"
    } else if t.is_char_device() {
        "is a character device, not an image file or block device"
    } else if t.is_socket() {
        "is a socket, not an image file or block device"
    } else {
        "is not a regular file or block device"
    };
    Err(what.to_string())
}

/// A volume held in memory: tests, fuzzing, crash simulation.
pub struct MemBackend {
    name: PathBuf,
    data: Vec<u8>,
    writable: bool,
}

impl MemBackend {
    pub fn new(name: &str, data: Vec<u8>, access: Access) -> Self {
        MemBackend { name: PathBuf::from(name), data, writable: access == Access::ReadWrite }
    }
    /// A zero-filled volume of `size` bytes.
    pub fn zeroed(name: &str, size: usize) -> Self {
        Self::new(name, vec![0; size], Access::ReadWrite)
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.data
    }
}

impl Backend for MemBackend {
    fn path(&self) -> &Path {
        &self.name
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn bytes(&self, off: u64, len: usize) -> Option<&[u8]> {
        range_ok(self.size(), off, len as u64).then(|| &self.data[off as usize..off as usize + len])
    }
    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly { path: self.name.clone() });
        }
        if !range_ok(self.size(), off, data.len() as u64) {
            return Err(out_of_bounds(self, off, data.len() as u64));
        }
        self.data[off as usize..off as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn sync_range(&mut self, _off: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Splits a DragonFly-style device argument `vol0:vol1:...` into paths. A
/// path that exists is one volume even when its name holds ':': the whole
/// argument when it exists, else, from the left, the longest run of
/// ':'-separated parts that names an existing path (a single part when none
/// does, so a missing volume is reported by name).
/// A new file in `dir` that no name reaches (`O_TMPFILE` where the file
/// system has it, else created and unlinked at once): spills, undo logs
/// and dry-run copies leave nothing behind, whatever happens. `what` names
/// the file in the error.
pub(crate) fn temp_file(dir: &Path, what: &'static str) -> Result<std::fs::File> {
    tempfile::tempfile_in(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        op: what,
        offset: 0,
        source,
    })
}

pub fn split_device_spec(spec: &str) -> Vec<PathBuf> {
    if spec.is_empty() {
        return Vec::new();
    }
    if Path::new(spec).exists() {
        return vec![PathBuf::from(spec)];
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let end = (i + 2..=parts.len())
            .rev()
            .find(|&j| Path::new(&parts[i..j].join(":")).exists())
            .unwrap_or(i + 1);
        let p = parts[i..end].join(":");
        if !p.is_empty() {
            out.push(PathBuf::from(p));
        }
        i = end;
    }
    out
}

/// Where a volume lies in the file system's logical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Logical offset of the volume's first byte.
    pub loff: u64,
    /// Bytes of the volume that belong to the file system.
    pub size: u64,
}

/// A set of volumes forming one file system.
pub struct Device {
    volumes: Vec<Box<dyn Backend>>,
    extents: Vec<Option<Extent>>,
    /// While set: what [`Device::write`] overwrote, for [`Device::rollback`].
    undo: Option<UndoLog>,
    /// The first I/O error met: from then on nothing more is written.
    fault: OnceLock<Fault>,
}

/// Where and how the device failed (see [`Error::Stopped`]).
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: PathBuf,
    pub op: &'static str,
    pub offset: u64,
    pub why: String,
}

impl Fault {
    /// The error every write after the fault returns.
    pub fn stopped(&self) -> Error {
        Error::Stopped { path: self.path.clone(), op: self.op, offset: self.offset, why: self.why.clone() }
    }
}

/// Notes the first I/O error of `r` in `fault`.
fn latch<T>(fault: &OnceLock<Fault>, r: Result<T>) -> Result<T> {
    if let Err(Error::Io { path, op, offset, source }) = &r {
        let _ = fault.set(Fault { path: path.clone(), op, offset: *offset, why: source.to_string() });
    }
    r
}

/// One volume of a [`Device`], for writing: writes and barriers stop
/// after the device's first I/O error, as [`Device::write`] does.
pub struct VolumeMut<'a> {
    vol: &'a mut dyn Backend,
    fault: &'a OnceLock<Fault>,
}

impl VolumeMut<'_> {
    fn live(&self) -> Result<()> {
        self.fault.get().map_or(Ok(()), |f| Err(f.stopped()))
    }
    pub fn path(&self) -> &Path {
        self.vol.path()
    }
    pub fn size(&self) -> u64 {
        self.vol.size()
    }
    pub fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        self.live()?;
        latch(self.fault, self.vol.write(off, data))
    }
    pub fn sync_range(&mut self, off: u64, len: u64) -> Result<()> {
        self.live()?;
        latch(self.fault, self.vol.sync_range(off, len))
    }
    pub fn sync(&mut self) -> Result<()> {
        self.live()?;
        latch(self.fault, self.vol.sync())
    }
}

/// The previous contents of the logical ranges written since
/// [`Device::begin_undo`]: all-zero ranges are only noted; others are
/// kept in an unlinked temporary file, so memory stays flat however much
/// is written.
/// What a write overwrote.
#[derive(Clone, Copy)]
enum Old {
    /// A hole of a sparse file.
    Hole,
    Zeros,
    /// Bytes kept at this offset of the spill file.
    Saved(u64),
}

#[derive(Default)]
struct UndoLog {
    /// (logical offset, length, what was there), in write order.
    entries: Vec<(u64, usize, Old)>,
    spill: Option<std::fs::File>,
    spill_len: u64,
}

impl UndoLog {
    fn save(&mut self, loff: u64, old: &[u8], hole: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if hole || old.iter().all(|&b| b == 0) {
            self.entries.push((loff, old.len(), if hole { Old::Hole } else { Old::Zeros }));
            return Ok(());
        }
        let dir = std::env::temp_dir();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, op, offset: 0, source }
        };
        if self.spill.is_none() {
            self.spill = Some(temp_file(&dir, "create undo file")?);
        }
        let f = self.spill.as_ref().expect("created above");
        f.write_all_at(old, self.spill_len).map_err(io("write undo file", &dir))?;
        self.entries.push((loff, old.len(), Old::Saved(self.spill_len)));
        self.spill_len += old.len() as u64;
        Ok(())
    }
}

impl Device {
    /// Opens every volume of `spec` (`a.img:b.img`), locking them as
    /// [`lock`] says (failing at once when another process holds one).
    pub fn open(spec: &str, access: Access) -> Result<Self> {
        Self::open_with(spec, access, Wait::No)
    }

    /// [`Device::open`], waiting as `wait` says for volumes another
    /// process holds.
    pub fn open_with(spec: &str, access: Access, wait: Wait) -> Result<Self> {
        let paths = split_device_spec(spec);
        if paths.is_empty() {
            return Err(Error::InvalidArgument(format!("no device in {spec:?}")));
        }
        Self::open_waiting(&paths, access, wait)
    }

    /// Opens the volumes `paths`, locking them as [`lock`] says (failing
    /// at once when another process holds one).
    pub fn open_paths(paths: &[PathBuf], access: Access) -> Result<Self> {
        Self::open_waiting(paths, access, Wait::No)
    }

    /// [`Device::open_paths`], waiting as `wait` says for volumes another
    /// process holds.
    pub fn open_waiting(paths: &[PathBuf], access: Access, wait: Wait) -> Result<Self> {
        let mut volumes: Vec<Box<dyn Backend>> = Vec::with_capacity(paths.len());
        for l in lock::lock_paths(paths, access, wait)? {
            volumes.push(Box::new(MmapBackend::map(l, access)?));
        }
        Ok(Self::from_backends(volumes))
    }

    pub fn from_backends(volumes: Vec<Box<dyn Backend>>) -> Self {
        let extents = vec![None; volumes.len()];
        Device { volumes, extents, undo: None, fault: OnceLock::new() }
    }

    /// The I/O error that stopped writes, if one did.
    pub fn fault(&self) -> Option<&Fault> {
        self.fault.get()
    }

    fn live(&self) -> Result<()> {
        self.fault.get().map_or(Ok(()), |f| Err(f.stopped()))
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    pub fn volume(&self, i: usize) -> &dyn Backend {
        self.volumes[i].as_ref()
    }

    /// Volume `i` for writing (writes stop after the device's first I/O error).
    pub fn volume_mut(&mut self, i: usize) -> VolumeMut<'_> {
        VolumeMut { vol: self.volumes[i].as_mut(), fault: &self.fault }
    }

    pub fn into_backends(self) -> Vec<Box<dyn Backend>> {
        self.volumes
    }

    /// Records where volume `i` lies in the logical address space. Refuses
    /// an extent whose end does not fit in 64 bits or that overlaps another
    /// volume's, so every logical offset maps to at most one volume and
    /// [`Device::logical_size`] cannot overflow.
    pub fn set_extent(&mut self, i: usize, extent: Extent) -> Result<()> {
        let name = || self.volumes[i].path().display().to_string();
        let Some(end) = extent.loff.checked_add(extent.size) else {
            return Err(Error::Geometry {
                volume: name(),
                field: "logical extent".into(),
                value: extent.loff,
                why: format!("start plus size {:#x} overflows 64 bits", extent.size),
            });
        };
        let clash = self.extents.iter().enumerate().find_map(|(j, e)| {
            let e = (*e)?;
            // Empty extents overlap nothing.
            let overlaps =
                j != i && extent.size > 0 && e.size > 0 && extent.loff < e.loff + e.size && e.loff < end;
            overlaps.then_some((j, e))
        });
        if let Some((j, e)) = clash {
            return Err(Error::Geometry {
                volume: name(),
                field: "logical extent".into(),
                value: extent.loff,
                why: format!(
                    "{:#x}-{:#x} overlaps {}'s {:#x}-{:#x}",
                    extent.loff,
                    end,
                    self.volumes[j].path().display(),
                    e.loff,
                    e.loff + e.size
                ),
            });
        }
        self.extents[i] = Some(extent);
        Ok(())
    }

    /// Where volume `i` lies in the logical address space (None before
    /// the volume headers placed it).
    pub fn extent(&self, i: usize) -> Option<Extent> {
        self.extents.get(i).copied().flatten()
    }

    /// Physical bytes of volume `i`, bounds-checked.
    pub fn read_phys(&self, i: usize, off: u64, len: usize) -> Result<&[u8]> {
        let v = self.volumes[i].as_ref();
        v.bytes(off, len).ok_or_else(|| out_of_bounds(v, off, len as u64))
    }

    /// Maps a logical range to (volume, physical offset). The whole range
    /// must lie inside one volume's extent and inside its storage.
    pub fn map_logical(&self, loff: u64, len: u64) -> Option<(usize, u64)> {
        self.extents.iter().enumerate().find_map(|(i, e)| {
            let e = (*e)?;
            let rel = loff.checked_sub(e.loff)?;
            (range_ok(e.size, rel, len) && range_ok(self.volumes[i].size(), rel, len)).then_some((i, rel))
        })
    }

    /// The volume and physical offset of a logical range, or an error.
    fn locate(&self, loff: u64, len: u64) -> Result<(usize, u64)> {
        self.map_logical(loff, len).ok_or_else(|| Error::OutOfBounds {
            what: "logical address space".into(),
            offset: loff,
            len,
            size: self.logical_size(),
        })
    }

    /// Logical bytes, bounds-checked.
    pub fn read(&self, loff: u64, len: usize) -> Result<&[u8]> {
        let (i, phys) = self.locate(loff, len as u64)?;
        self.read_phys(i, phys, len)
    }

    /// Logical bytes copied into `buf` (pread for mapped volumes).
    pub fn read_into(&self, loff: u64, buf: &mut [u8]) -> Result<()> {
        let (i, phys) = self.locate(loff, buf.len() as u64)?;
        latch(&self.fault, self.volumes[i].read_at(phys, buf))
    }

    /// Writes logical bytes (the whole range inside one volume).
    ///
    /// After an I/O error (of a read, a write or a barrier) on any volume
    /// the device takes no more writes: each returns [`Error::Stopped`].
    pub fn write(&mut self, loff: u64, data: &[u8]) -> Result<()> {
        self.live()?;
        let (i, phys) = self.locate(loff, data.len() as u64)?;
        if let Some(undo) = &mut self.undo {
            let hole = self.volumes[i].is_hole(phys, data.len() as u64);
            let mut old = vec![0u8; if hole { 0 } else { data.len() }];
            latch(&self.fault, self.volumes[i].read_at(phys, &mut old))?;
            old.resize(data.len(), 0);
            undo.save(loff, &old, hole)?;
        }
        latch(&self.fault, self.volumes[i].write(phys, data))
    }

    /// From now on, keeps what every logical write overwrites, so that
    /// [`Device::rollback`] can put it back (an aborted edit then leaves
    /// the volumes byte-identical). Starts afresh if already keeping.
    pub fn begin_undo(&mut self) {
        self.undo = Some(UndoLog::default());
    }

    /// Stops keeping (the writes so far stay).
    pub fn end_undo(&mut self) {
        self.undo = None;
    }

    /// Puts back what the logical writes since [`Device::begin_undo`]
    /// overwrote, newest first, then a durability barrier; keeping stops.
    /// After an I/O error nothing is put back (nothing more is written):
    /// the blocks written since lie in space the last commit does not
    /// reach, so that commit stays intact, only not byte for byte.
    pub fn rollback(&mut self) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(undo) = self.undo.take() else { return Ok(()) };
        if self.fault.get().is_some() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for &(loff, len, was) in undo.entries.iter().rev() {
            let (i, phys) = self.locate(loff, len as u64)?;
            buf.clear();
            buf.resize(len, 0);
            match (was, &undo.spill) {
                (Old::Hole, _) => {
                    latch(&self.fault, self.volumes[i].punch_hole(phys, len as u64))?;
                    continue;
                }
                (Old::Saved(at), Some(f)) => f.read_exact_at(&mut buf, at).map_err(|source| Error::Io {
                    path: "undo file".into(),
                    op: "read",
                    offset: at,
                    source,
                })?,
                _ => {}
            }
            latch(&self.fault, self.volumes[i].write(phys, &buf))?;
        }
        self.sync()
    }

    /// End of the highest mapped extent ([`Device::set_extent`] guarantees
    /// it fits; saturating all the same, as this sizes things).
    pub fn logical_size(&self) -> u64 {
        self.extents.iter().flatten().map(|e| e.loff.saturating_add(e.size)).max().unwrap_or(0)
    }

    /// Durability barrier on every volume.
    pub fn sync(&mut self) -> Result<()> {
        self.live()?;
        let fault = &self.fault;
        self.volumes.iter_mut().try_for_each(|v| latch(fault, v.sync()))
    }
}

/// Where `path` is mounted, if it is: directly (a block device) or through a
/// loop device backed by it (an image file). Best effort: on systems without
/// /proc the answer is "not mounted".
pub fn mounted_at(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut sources = vec![canon.clone()];
    sources.extend(loop_devices_backed_by(&canon));
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let source = fields.next()?;
        let target = fields.next()?;
        let src = std::fs::canonicalize(source).ok()?;
        sources.contains(&src).then(|| target.replace("\\040", " "))
    })
}

fn loop_devices_backed_by(file: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            (Path::new(backing.trim()) == file).then(|| PathBuf::from("/dev").join(name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_puts_back_what_writes_overwrote() {
        let first: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let mut d =
            Device::from_backends(vec![Box::new(MemBackend::new("m", first.clone(), Access::ReadWrite))]);
        d.set_extent(0, Extent { loff: 0, size: 8192 }).unwrap();
        d.begin_undo();
        d.write(100, &[7; 300]).unwrap();
        d.write(200, &[9; 4000]).unwrap(); // overlaps the first write
        d.write(6000, &[1; 10]).unwrap();
        assert_ne!(d.read(0, 8192).unwrap(), &first[..]);
        d.rollback().unwrap();
        assert_eq!(d.read(0, 8192).unwrap(), &first[..], "byte-identical after rollback");
        // After end_undo writes stay; a rollback without begin_undo does nothing.
        d.begin_undo();
        d.write(0, &[5; 16]).unwrap();
        d.end_undo();
        d.rollback().unwrap();
        assert_eq!(d.read(0, 16).unwrap(), &[5; 16]);
    }

    #[test]
    fn logical_mapping_across_volumes() {
        let a: Box<dyn Backend> = Box::new(MemBackend::zeroed("a", 4096));
        let b: Box<dyn Backend> = Box::new(MemBackend::zeroed("b", 2048));
        let mut d = Device::from_backends(vec![a, b]);
        d.set_extent(0, Extent { loff: 0, size: 4096 }).unwrap();
        d.set_extent(1, Extent { loff: 8192, size: 2048 }).unwrap();
        assert_eq!(d.map_logical(100, 10), Some((0, 100)));
        assert_eq!(d.map_logical(8192 + 5, 10), Some((1, 5)));
        assert_eq!(d.map_logical(4090, 10), None, "straddles the end of volume 0");
        assert_eq!(d.map_logical(5000, 1), None, "hole between volumes");
        assert_eq!(d.map_logical(u64::MAX, 2), None, "no overflow");
        d.write(8192 + 1, b"xy").unwrap();
        assert_eq!(d.read(8192, 3).unwrap(), b"\0xy");
        assert!(d.read(10_240, 1).is_err());
    }

    #[test]
    fn extents_that_overflow_or_overlap_are_refused() {
        let a: Box<dyn Backend> = Box::new(MemBackend::zeroed("a", 4096));
        let b: Box<dyn Backend> = Box::new(MemBackend::zeroed("b", 4096));
        let mut d = Device::from_backends(vec![a, b]);
        let e = d.set_extent(0, Extent { loff: 0x7fff_ffff_0000_0000, size: u64::MAX }).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
        assert_eq!(d.logical_size(), 0, "a refused extent is not recorded");
        d.set_extent(0, Extent { loff: 0, size: 4096 }).unwrap();
        let e = d.set_extent(1, Extent { loff: 2048, size: 4096 }).unwrap_err();
        assert!(e.to_string().contains("overlaps a"), "{e}");
        d.set_extent(1, Extent { loff: u64::MAX - 4096, size: 4096 }).unwrap();
        assert_eq!(d.logical_size(), u64::MAX);
        assert_eq!(d.map_logical(u64::MAX - 10, 11), None, "one byte past the end of the space");
        assert_eq!(d.map_logical(u64::MAX - 10, 10), Some((1, 4086)));
        assert_eq!(d.map_logical(u64::MAX - 4096, 8), Some((1, 0)));
    }

    #[test]
    fn read_only_memory_refuses_writes() {
        let mut m = MemBackend::new("ro", vec![0; 16], Access::ReadOnly);
        assert!(matches!(m.write(0, b"x"), Err(Error::ReadOnly { .. })));
        assert!(m.bytes(10, 7).is_none());
    }

    #[test]
    fn spec_splits_on_colons() {
        assert_eq!(split_device_spec("a.img:b.img"), vec![PathBuf::from("a.img"), PathBuf::from("b.img")]);
        assert!(split_device_spec("").is_empty());
    }

    #[test]
    fn an_existing_path_with_a_colon_is_one_volume() {
        let dir = std::env::temp_dir().join(format!("hammer2-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = dir.join("p:q.img");
        std::fs::write(&one, b"x").unwrap();
        let spec = one.to_str().unwrap();
        assert_eq!(split_device_spec(spec), vec![one.clone()]);
        // In a set, each member that exists is kept whole.
        let other = dir.join("other.img");
        let set = format!("{spec}:{}", other.display());
        assert_eq!(split_device_spec(&set), vec![one.clone(), other.clone()], "{set}");
        std::fs::write(&other, b"y").unwrap();
        let set = format!("{}:{spec}::{}", other.display(), dir.join("missing").display());
        assert_eq!(split_device_spec(&set), vec![other, one.clone(), dir.join("missing")], "{set}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_files_and_block_devices_open() {
        let dir = std::env::temp_dir();
        let e = MmapBackend::open(&dir, Access::ReadOnly).err().unwrap().to_string();
        assert!(e.ends_with("is a directory"), "{e}");
        let e = MmapBackend::open(Path::new("/dev/null"), Access::ReadOnly).err().unwrap().to_string();
        assert!(e.contains("is a character device"), "{e}");
    }
}
