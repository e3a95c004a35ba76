//! Importing host trees into a PFS: the one path behind `newfs_hammer2
//! --populate` and `hammer2_edit put -r`.
//!
//! What a host object becomes:
//! - directories, regular files, symlinks (the target as file data,
//!   embedded in the inode up to 512 bytes), FIFOs, sockets and character
//!   and block devices (`rmajor`/`rminor`) become inodes of the matching
//!   HAMMER2 type, with the host's mode (permission bits, setuid, setgid,
//!   sticky), uid and gid (as HAMMER2's uid/gid UUIDs), mtime, atime and
//!   ctime (btime = ctime: the host's birth time is not portable);
//! - names found twice for one host inode (same device and inode number)
//!   within the tree become hard links: one HAMMER2 inode counting its
//!   links, every further entry pointing at its number (the kernel keeps a
//!   hard-linked inode where it was created since DragonFly 5.0; see
//!   `hammer2_xops.c`, `hammer2_inode.c`; the fixtures agree: in
//!   varied.img `hello.txt` and `hardlink-to-hello.txt` both name inode
//!   1030, nlinks 2, iparent the directory of the first);
//! - sparse files keep their holes: only the extents SEEK_DATA reports are
//!   read, and blocks that read as zeros are not stored.
//!
//! Speed and memory: one thread walks the tree and owns the session
//! (inodes, allocation, writes, chains); worker threads read each 64 KiB
//! block with `pread`, compress it and compute its check code. Blocks are
//! placed in the order they were handed out, so the image does not depend
//! on thread timing. At most a few blocks per worker are in flight, and a
//! finished file's inode is written at once ([`Session`]'s early writing),
//! so memory stays flat whatever the tree's size. Every data block is
//! written once; the directories and the inode index are written by the
//! commit (or earlier, past the session's memory budget).
//!
//! The import is one operation of the session: if it fails part-way, the
//! session refuses to commit, and the image keeps its previous state.

use crate::error::{Error, Result};
use crate::format::{Blockref, CheckMethod, CompMethod, ObjType, EMBEDDED_BYTES, PBUFSIZE};
use crate::write::encode::encode_owned_block;
use crate::write::session::{logical_block, NodeMeta, PfsRef, Session};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Compression (method, level) for every new inode instead of the
    /// parent directory's.
    pub comp: Option<(CompMethod, u8)>,
    /// Check method for every new inode instead of the parent directory's.
    pub check: Option<CheckMethod>,
    /// Import the entries of the host directory into `dest` (an existing
    /// directory, which takes the host directory's mode, owner and times),
    /// as newfs --populate does. Otherwise the host object itself becomes
    /// `dest`, or `dest/NAME` when `dest` is an existing directory, as
    /// `cp -r` does.
    pub contents: bool,
    /// Worker threads for reading, compression and check codes (0: one per
    /// core).
    pub threads: usize,
}

/// What an import created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    /// Entries that became hard links to an inode imported before.
    pub hardlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub specials: u64,
    /// Bytes of file contents (holes included).
    pub bytes: u64,
    /// Data blocks written, and their bytes on media (after compression).
    pub blocks: u64,
    pub media_bytes: u64,
}

/// Imports the host object `host` into `pfs` at `dest` (see
/// [`ImportOptions::contents`]), calling `progress` as it goes. Nothing is
/// committed: the caller commits the session.
pub fn import_tree(
    session: &mut Session,
    pfs: &PfsRef,
    host: &Path,
    dest: &str,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<ImportReport> {
    // Stops at the next block or entry on an interrupt: nothing is
    // committed here, the caller drops or rolls back the session.
    let _cancellable = crate::interrupt::cancellable();
    session.import_operation(|s| {
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        std::thread::scope(|scope| {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
            let (done_tx, done_rx) = mpsc::channel();
            let job_rx = Arc::new(Mutex::new(job_rx));
            let spares = Arc::new(Spares::default());
            for _ in 0..threads {
                let (rx, tx, spares) = (Arc::clone(&job_rx), done_tx.clone(), Arc::clone(&spares));
                scope.spawn(move || worker(&rx, &tx, &spares));
            }
            drop(done_tx);
            let mut imp = Importer {
                s,
                pfs,
                opts,
                progress,
                report: ImportReport::default(),
                links: HashMap::new(),
                pipe: Pipeline::new(job_tx, Arc::clone(&job_rx), done_rx, IN_FLIGHT, spares),
                since_bound: 0,
            };
            let r = imp.run(host, dest);
            let r = r.and_then(|()| imp.pipe.drain(imp.s, imp.pfs, &mut imp.report));
            // Dropping the importer closes the job channel: the workers end.
            let report = imp.report;
            drop(imp);
            r.map(|()| report)
        })
    })
}

/// Blocks handed out and not yet placed, at most (64 KiB each, twice:
/// what was read and what was encoded).
const IN_FLIGHT: usize = 64;

/// One block for a worker: read, encode, hash.
struct Job {
    seq: u64,
    file: Arc<(File, PathBuf)>,
    key: u64,
    keybits: u8,
    logical: usize,
    /// Bytes of the file in the block (the rest reads as zeros).
    want: usize,
    methods: (CompMethod, u32, CheckMethod),
}

/// A worker's answer: the block's blockref and media, or None for zeros.
type Encoded = Result<Option<(Blockref, Vec<u8>)>>;

/// Block buffers handed back once written (or once their block turned
/// out compressed or all zeros), for the next reads: a block then costs
/// no allocation and no zero-filling of what the read overwrites anyway.
/// Holds at most what the pipeline has in flight.
#[derive(Default)]
struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    /// A buffer of `len` bytes (contents unspecified).
    fn take(&self, len: usize) -> Vec<u8> {
        // OK to take a poisoned lock: any buffer in it will do.
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        if b.len() < len {
            b.resize(len, 0);
        } else {
            b.truncate(len);
        }
        b
    }

    fn give(&self, b: Vec<u8>) {
        if b.capacity() < PBUFSIZE as usize {
            return;
        }
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 2 * IN_FLIGHT {
            v.push(b);
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &mpsc::Sender<(u64, Encoded)>, spares: &Spares) {
    loop {
        // OK to take a poisoned lock: the receiver holds no invariant.
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        if done.send((job.seq, encode_job(&job, spares))).is_err() {
            return;
        }
    }
}

/// Reads, encodes and hashes one block.
fn encode_job(job: &Job, spares: &Spares) -> Encoded {
    // Read into the buffer that is written out when the block stays raw:
    // no copy then.
    let mut block = spares.take(job.logical);
    job.file.0.read_exact_at(&mut block[..job.want], job.key).map_err(|source| Error::Io {
        path: job.file.1.clone(),
        op: "read",
        offset: job.key,
        source,
    })?;
    block[job.want..].fill(0);
    if crate::format::compress::is_zero_block(&block) {
        spares.give(block);
        return Ok(None);
    }
    let mut methods = job.methods;
    if methods.0 == CompMethod::Lz4 && looks_incompressible(&block) {
        methods.0 = CompMethod::None;
    }
    let (bref, media, spare) = encode_owned_block(job.key, job.keybits, block, methods);
    if let Some(b) = spare {
        spares.give(b);
    }
    Ok(Some((bref, media)))
}

/// Bytes of each sample [`looks_incompressible`] compresses.
const SAMPLE: usize = 4096;

/// True when two samples of a block (its start and its middle) both stay
/// above 80% of their size under LZ4: the whole block would then not fit
/// in half of itself, the least HAMMER2 stores compressed, and compressing
/// it would be wasted work (random or already compressed data, and text of
/// little redundancy: LZ4 does not shrink such 64 KiB blocks below 70%).
/// A stand-in for the kernel's per-inode `comp_heuristic` (which stops
/// trying after failures) that decides per block, so the image does not
/// depend on the order in which worker threads finish. Costs an eighth of
/// compressing the block; a block misjudged is stored raw, never wrong.
fn looks_incompressible(block: &[u8]) -> bool {
    if block.len() < 4 * SAMPLE {
        return false;
    }
    [0, block.len() / 2].iter().all(|&at| {
        let packed = lz4_flex::block::compress(&block[at..at + SAMPLE]);
        packed.len() * 5 > SAMPLE * 4
    })
}

/// What is applied, in order, as results come back.
enum Pending {
    Block {
        seq: u64,
        inum: u64,
    },
    /// The file's last block is placed: write its inode.
    Finish {
        inum: u64,
    },
}

/// Blocks in flight and the order to place them in.
///
/// The walking thread never sleeps while there is work: results are
/// collected without waiting after every block handed out, and when too
/// many blocks are in flight it encodes queued blocks itself before it
/// waits for a worker. On a loaded machine every sleep costs a
/// scheduling delay.
struct Pipeline {
    jobs: Option<SyncSender<Job>>,
    /// The workers' queue, for the walking thread to help with.
    queue: Arc<Mutex<Receiver<Job>>>,
    done: Receiver<(u64, Encoded)>,
    next_seq: u64,
    in_flight: usize,
    limit: usize,
    ready: HashMap<u64, Encoded>,
    order: VecDeque<Pending>,
    /// Where written blocks' buffers go back to.
    spares: Arc<Spares>,
}

impl Pipeline {
    fn new(
        jobs: SyncSender<Job>,
        queue: Arc<Mutex<Receiver<Job>>>,
        done: Receiver<(u64, Encoded)>,
        limit: usize,
        spares: Arc<Spares>,
    ) -> Self {
        Pipeline {
            jobs: Some(jobs),
            queue,
            done,
            next_seq: 0,
            in_flight: 0,
            limit,
            ready: HashMap::new(),
            order: VecDeque::new(),
            spares,
        }
    }

    fn submit(
        &mut self,
        s: &mut Session,
        pfs: &PfsRef,
        r: &mut ImportReport,
        mut job: Job,
        inum: u64,
    ) -> Result<()> {
        // A safe point: the caller drops or rolls back what was imported.
        crate::interrupt::check()?;
        while self.in_flight >= self.limit {
            self.progress(s, pfs, r)?;
        }
        job.seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back(Pending::Block { seq: job.seq, inum });
        let jobs =
            self.jobs.as_ref().ok_or_else(|| Error::InvalidArgument("import pipeline closed".into()))?;
        // Never blocks: the queue holds at most `limit` jobs.
        jobs.send(job).map_err(|_| Error::InvalidArgument("import workers ended early".into()))?;
        self.in_flight += 1;
        self.collect();
        self.apply_ready(s, pfs, r)
    }

    fn finish(&mut self, s: &mut Session, pfs: &PfsRef, r: &mut ImportReport, inum: u64) -> Result<()> {
        self.order.push_back(Pending::Finish { inum });
        self.apply_ready(s, pfs, r)
    }

    /// Takes in the results that are there, without waiting.
    fn collect(&mut self) -> usize {
        let mut n = 0;
        while let Ok((seq, enc)) = self.done.try_recv() {
            self.in_flight -= 1;
            self.ready.insert(seq, enc);
            n += 1;
        }
        n
    }

    /// Moves on by at least one block: a result that is there, else one
    /// encoded here, else one waited for.
    fn progress(&mut self, s: &mut Session, pfs: &PfsRef, r: &mut ImportReport) -> Result<()> {
        if self.collect() == 0 {
            let job = match self.queue.try_lock() {
                Ok(q) => q.try_recv().ok(),
                Err(_) => None,
            };
            match job {
                Some(job) => {
                    let enc = encode_job(&job, &self.spares);
                    self.in_flight -= 1;
                    self.ready.insert(job.seq, enc);
                }
                None => {
                    let (seq, enc) = self
                        .done
                        .recv()
                        .map_err(|_| Error::InvalidArgument("import workers ended early".into()))?;
                    self.in_flight -= 1;
                    self.ready.insert(seq, enc);
                }
            }
        }
        self.apply_ready(s, pfs, r)
    }

    /// Places what is ready at the head of the order.
    fn apply_ready(&mut self, s: &mut Session, pfs: &PfsRef, r: &mut ImportReport) -> Result<()> {
        while let Some(head) = self.order.front() {
            match *head {
                Pending::Block { seq, inum } => {
                    let Some(enc) = self.ready.remove(&seq) else { return Ok(()) };
                    self.order.pop_front();
                    if let Some((bref, media)) = enc? {
                        s.place_block(pfs, inum, bref, &media)?;
                        r.blocks += 1;
                        r.media_bytes += media.len() as u64;
                        self.spares.give(media);
                    }
                }
                Pending::Finish { inum } => {
                    self.order.pop_front();
                    s.import_finish(pfs, inum)?;
                }
            }
        }
        Ok(())
    }

    /// Waits for everything in flight and places it.
    fn drain(&mut self, s: &mut Session, pfs: &PfsRef, r: &mut ImportReport) -> Result<()> {
        while self.in_flight > 0 {
            self.progress(s, pfs, r)?;
        }
        self.apply_ready(s, pfs, r)
    }
}

/// A directory being imported: its inode and the host entries left.
struct Frame {
    inum: u64,
    path: PathBuf,
    entries: std::vec::IntoIter<OsString>,
    meta: NodeMeta,
}

struct Importer<'a, 's> {
    s: &'s mut Session,
    pfs: &'a PfsRef,
    opts: &'a ImportOptions,
    progress: &'a mut dyn FnMut(&ImportReport),
    report: ImportReport,
    /// Host (device, inode) of objects with several links -> our inode.
    links: HashMap<(u64, u64), u64>,
    pipe: Pipeline,
    /// Files since the memory budget was last looked at.
    since_bound: u32,
}

/// Blocks of one file after which what it holds so far is written (512
/// MiB of data: 1 MiB of blockrefs).
const EARLY_EVERY: u64 = 8192;

/// Files between two looks at the session's memory budget.
const BOUND_EVERY: u32 = 1024;

fn host_io<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io { path: path.to_path_buf(), op, offset: 0, source }
}

/// The last component of a host path: the name an import into a
/// directory takes.
fn host_name(host: &Path) -> Result<Vec<u8>> {
    let base = host
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: has no name to import under", host.display())))?;
    Ok(base.as_bytes().to_vec())
}

/// The entries of a host directory, sorted by name (so that an import
/// does not depend on the host's directory order).
fn read_sorted(path: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(path).map_err(host_io(path, "read directory"))? {
        names.push(e.map_err(host_io(path, "read directory"))?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl Importer<'_, '_> {
    fn node_meta(&self, m: &Metadata, path: &Path) -> Result<NodeMeta> {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            ObjType::Directory
        } else if ft.is_file() {
            ObjType::Regfile
        } else if ft.is_symlink() {
            ObjType::Softlink
        } else if ft.is_fifo() {
            ObjType::Fifo
        } else if ft.is_socket() {
            ObjType::Socket
        } else if ft.is_char_device() {
            ObjType::Cdev
        } else if ft.is_block_device() {
            ObjType::Bdev
        } else {
            return Err(Error::InvalidArgument(format!("{}: unknown file type", path.display())));
        };
        let rdev = m.rdev();
        let ctime = crate::format::time::micros(m.ctime(), m.ctime_nsec());
        Ok(NodeMeta {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: crate::format::time::micros(m.mtime(), m.mtime_nsec()),
            atime: crate::format::time::micros(m.atime(), m.atime_nsec()),
            ctime,
            btime: ctime,
            rdev: if matches!(kind, ObjType::Cdev | ObjType::Bdev) {
                (libc::major(rdev), libc::minor(rdev))
            } else {
                (0, 0)
            },
            comp_algo: self.opts.comp.map(|(c, level)| u8::from(c) | (level << 4)),
            check: self.opts.check,
        })
    }

    fn run(&mut self, host: &Path, dest: &str) -> Result<()> {
        let m = std::fs::symlink_metadata(host).map_err(host_io(host, "stat"))?;
        let meta = self.node_meta(&m, host)?;
        let (parent, name, existing) = self.s.resolve_parent(self.pfs, dest)?;
        if self.opts.contents {
            if meta.kind != ObjType::Directory {
                return Err(Error::NotADirectory(host.display().to_string()));
            }
            let inum = match (name.is_empty(), existing) {
                (true, _) => parent,
                (false, Some(e)) if e.obj_type == ObjType::Directory => e.inum,
                (false, Some(_)) => return Err(Error::NotADirectory(dest.to_string())),
                (false, None) => return Err(Error::NotFound(dest.to_string())),
            };
            self.s.import_owner(self.pfs, inum, &meta)?;
            return self.tree(inum, host.to_path_buf(), meta);
        }
        // As cp -r: into an existing directory under the host's name.
        let (dir, name) = match existing {
            Some(e) if e.obj_type == ObjType::Directory => (e.inum, host_name(host)?),
            Some(_) => return Err(Error::AlreadyExists(dest.to_string())),
            // The root: under the host's own name.
            None if name.is_empty() => (parent, host_name(host)?),
            None => (parent, name),
        };
        if meta.kind == ObjType::Directory {
            let (inum, _) = self.s.import_node(self.pfs, dir, &name, &meta)?;
            self.report.dirs += 1;
            return self.tree(inum, host.to_path_buf(), meta);
        }
        self.entry(dir, &name, host, &m, &meta)?;
        (self.progress)(&self.report);
        Ok(())
    }

    /// Imports everything below the host directory `path` into `inum`.
    fn tree(&mut self, inum: u64, path: PathBuf, meta: NodeMeta) -> Result<()> {
        let entries = read_sorted(&path)?.into_iter();
        let mut stack = vec![Frame { inum, path, entries, meta }];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.entries.next() else {
                // Its entries are in: the directory gets its host times.
                let f = stack.pop().expect("the loop saw a frame");
                self.s.import_times(self.pfs, f.inum, &f.meta)?;
                continue;
            };
            let (dir, path) = (top.inum, top.path.join(&name));
            let m = std::fs::symlink_metadata(&path).map_err(host_io(&path, "stat"))?;
            let meta = self.node_meta(&m, &path)?;
            if meta.kind == ObjType::Directory {
                let (inum, _) = self.s.import_node(self.pfs, dir, name.as_bytes(), &meta)?;
                self.report.dirs += 1;
                let entries = read_sorted(&path)?.into_iter();
                stack.push(Frame { inum, path, entries, meta });
            } else {
                self.entry(dir, name.as_bytes(), &path, &m, &meta)?;
            }
            (self.progress)(&self.report);
        }
        Ok(())
    }

    /// Imports one object that is not a directory as `name` in `dir`.
    fn entry(&mut self, dir: u64, name: &[u8], path: &Path, m: &Metadata, meta: &NodeMeta) -> Result<()> {
        crate::interrupt::check()?;
        let linked = m.nlink() > 1;
        if linked {
            if let Some(&inum) = self.links.get(&(m.dev(), m.ino())) {
                self.s.import_link(self.pfs, dir, name, inum)?;
                self.report.hardlinks += 1;
                return Ok(());
            }
        }
        let (inum, (comp_algo, check_algo)) = self.s.import_node(self.pfs, dir, name, meta)?;
        if linked {
            self.links.insert((m.dev(), m.ino()), inum);
        }
        match meta.kind {
            ObjType::Regfile => {
                self.report.files += 1;
                self.file(inum, path, m, (comp_algo, check_algo))?;
            }
            ObjType::Softlink => {
                self.report.symlinks += 1;
                let target = std::fs::read_link(path).map_err(host_io(path, "read link"))?;
                if target.as_os_str().len() > EMBEDDED_BYTES {
                    // Its data block is allocated now: after every block
                    // handed out before it, whatever the threads' timing.
                    self.pipe.drain(self.s, self.pfs, &mut self.report)?;
                }
                self.s.import_small(self.pfs, inum, target.as_os_str().as_bytes())?;
            }
            _ => self.report.specials += 1,
        }
        // A hard-linked inode stays loaded until the commit: further links
        // change its link count, and it is then written once.
        // Inodes are written in the order of the blocks handed out before
        // them (the pipeline's order), so the image does not depend on
        // which worker finished first.
        if !linked && meta.kind != ObjType::Regfile {
            self.pipe.finish(self.s, self.pfs, &mut self.report, inum)?;
        }
        self.since_bound += 1;
        if self.since_bound >= BOUND_EVERY {
            self.since_bound = 0;
            // Writing loaded subtrees early must not catch a file with
            // blocks in flight: drain first (rare enough not to matter).
            self.pipe.drain(self.s, self.pfs, &mut self.report)?;
            self.s.import_bound_memory()?;
        }
        Ok(())
    }

    /// A regular file's contents: embedded when small, else its data
    /// extents block by block through the workers.
    fn file(
        &mut self,
        inum: u64,
        path: &Path,
        m: &Metadata,
        (comp_algo, check_algo): (u8, u8),
    ) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(host_io(path, "open"))?;
        let fm = file.metadata().map_err(host_io(path, "stat"))?;
        if (fm.dev(), fm.ino()) != (m.dev(), m.ino()) {
            return Err(Error::InvalidArgument(format!("{}: replaced while being imported", path.display())));
        }
        let size = fm.len();
        self.report.bytes += size;
        let linked = m.nlink() > 1;
        if size <= EMBEDDED_BYTES as u64 {
            let mut data = vec![0u8; size as usize];
            file.read_exact_at(&mut data, 0).map_err(host_io(path, "read"))?;
            self.s.import_small(self.pfs, inum, &data)?;
            if !linked {
                self.pipe.finish(self.s, self.pfs, &mut self.report, inum)?;
            }
            return Ok(());
        }
        self.s.import_size(self.pfs, inum, size)?;
        let methods =
            (CompMethod::from(comp_algo & 15), u32::from(comp_algo >> 4), CheckMethod::from(check_algo & 15));
        // A file with as many bytes allocated as it is long has no hole
        // worth finding: two lseeks fewer per file. (One that does, its
        // extent blocks counting, still keeps its holes: blocks that read
        // as zeros are not stored.)
        let extents = if fm.blocks().saturating_mul(512) >= size {
            vec![(0, size)]
        } else {
            data_extents(&file, size).map_err(host_io(path, "seek"))?
        };
        let file = Arc::new((file, path.to_path_buf()));
        let (mut next, mut blocks) = (0u64, 0u64);
        for (start, end) in extents {
            let mut key = (start & !(PBUFSIZE - 1)).max(next);
            while key < end {
                let (logical, keybits) = logical_block(size, key);
                let want = (size - key).min(logical as u64) as usize;
                let job = Job { seq: 0, file: Arc::clone(&file), key, keybits, logical, want, methods };
                self.pipe.submit(self.s, self.pfs, &mut self.report, job, inum)?;
                key += logical as u64;
                blocks += 1;
                if blocks % EARLY_EVERY == 0 {
                    // A huge file: write what it holds so far, so that its
                    // table of blockrefs does not grow with it (the few
                    // indirect blocks on its right edge are then written
                    // again).
                    self.pipe.finish(self.s, self.pfs, &mut self.report, inum)?;
                }
            }
            next = key;
        }
        if !linked {
            self.pipe.finish(self.s, self.pfs, &mut self.report, inum)?;
        }
        Ok(())
    }
}

/// The data extents of a file as [start, end) byte ranges (SEEK_DATA /
/// SEEK_HOLE); the whole file where the host cannot tell.
fn data_extents(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                // No data past pos: the rest is a hole.
                Some(libc::ENXIO) => Ok(out),
                // The file system cannot say: read everything.
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) if out.is_empty() => Ok(vec![(0, size)]),
                _ => Err(e),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (start, end) = (data as u64, (hole as u64).min(size));
        if start >= end {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Entries and bytes of regular files below `host` (symlinks not
/// followed), for a progress bar's total; unreadable parts count nothing.
pub fn host_size(host: &Path) -> (u64, u64) {
    let (mut entries, mut bytes) = (0, 0);
    let mut stack = vec![host.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                bytes += m.len();
            }
        }
    }
    (entries, bytes)
}

/// Fills the PFS `label` of a freshly formatted file system `spec` with
/// the entries of the host directory `host` (whose mode, owner and times
/// the PFS root takes), in one commit: `newfs_hammer2 --populate`.
pub fn populate(
    spec: &str,
    label: &str,
    host: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<(ImportReport, crate::write::flush::CommitReport)> {
    let mut s = Session::open(spec, false)?;
    // A new image is filled as makefs fills it: to the last block.
    s.set_space_reserve(0);
    let pfs = s.pfs(Some(label))?;
    let opts = ImportOptions { contents: true, ..opts.clone() };
    let report = import_tree(&mut s, &pfs, host, "/", &opts, progress)?;
    Ok((report, s.commit()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_blocks_are_recognised_and_compressible_ones_kept() {
        let random = noise(65536, 7);
        assert!(looks_incompressible(&random));
        let text: Vec<u8> = b"the freemap of the chain ".iter().cycle().take(65536).copied().collect();
        assert!(!looks_incompressible(&text));
        // Random at the start and the middle, zeros elsewhere: the samples
        // say incompressible, and indeed it does not fit in half.
        let mut half = vec![0u8; 65536];
        half[..36864].copy_from_slice(&random[..36864]);
        assert!(looks_incompressible(&half));
        let (_, used) = crate::write::session::encode_block(&half, CompMethod::Lz4, 0);
        assert_eq!(used, CompMethod::None);
        // Random only at the start: the middle sample sees the zeros.
        let mut head = vec![0u8; 65536];
        head[..8192].copy_from_slice(&random[..8192]);
        assert!(!looks_incompressible(&head));
        // Small blocks are always tried.
        assert!(!looks_incompressible(&random[..8192]));
    }

    #[test]
    fn extents_of_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = File::create(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_all_at(b"x", 1 << 20).unwrap();
        let ext = data_extents(&File::open(&path).unwrap(), 4 << 20).unwrap();
        // One extent around the byte written (file systems round it), or the
        // whole file where holes cannot be seen.
        assert_eq!(ext.len(), 1, "{ext:?}");
        assert!(ext[0].0 <= 1 << 20 && ext[0].1 > 1 << 20, "{ext:?}");
        let empty = File::create(dir.path().join("empty")).unwrap();
        empty.set_len(1 << 20).unwrap();
        let ext = data_extents(&empty, 1 << 20).unwrap();
        assert!(ext.is_empty() || ext == [(0, 1 << 20)], "{ext:?}");
    }
}
