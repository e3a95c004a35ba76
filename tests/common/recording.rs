//! Crash simulation: a [`Backend`] that records every write and every
//! durability barrier while passing them through, cut points over such a
//! recording, images rebuilt at a cut, and the expected-state helpers the
//! crash tests compare those images with (the visible tree of a PFS as
//! path -> kind, mode, size, SHA-256, the fixtures' manifests).

use hammer2::device::Backend;
use hammer2::format::ObjType;
use hammer2::read::file::{read_file, read_link, Sink};
use hammer2::read::pfs::{Inode, Pfs};
use hammer2::read::tree::Tree;
use hammer2::Hammer2;
use sha2::Digest;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// HAMMER2's volume-header slots: copy n at n x 2 GiB, 64 KiB each.
pub const ZONE_BYTES: u64 = 2 << 30;
pub const HEADER_BYTES: u64 = 65536;
pub const HEADER_COPIES: u64 = 4;

/// What reached a volume, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Write {
        vol: usize,
        off: u64,
        data: Arc<Vec<u8>>,
    },
    /// `sync` (whole volume) or `sync_range` (`Some((off, len))`).
    Barrier {
        vol: usize,
        range: Option<(u64, u64)>,
    },
}

/// The shared, ordered record of every volume of one device.
#[derive(Clone, Default)]
pub struct Log {
    events: Arc<Mutex<Vec<Event>>>,
    paused: Arc<std::sync::atomic::AtomicBool>,
}

impl Log {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// While paused, writes and barriers pass through unrecorded (bulk
    /// data a test does not replay).
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::SeqCst);
    }
    fn push(&self, e: Event) {
        if !self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            self.events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
        }
    }
}

/// A backend that records writes and barriers, then passes them on.
pub struct Recording {
    inner: Box<dyn Backend>,
    vol: usize,
    log: Log,
}

impl Recording {
    pub fn new(inner: Box<dyn Backend>, vol: usize, log: Log) -> Self {
        Recording { inner, vol, log }
    }
}

impl Backend for Recording {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn writable(&self) -> bool {
        self.inner.writable()
    }
    fn bytes(&self, off: u64, len: usize) -> Option<&[u8]> {
        self.inner.bytes(off, len)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> hammer2::Result<()> {
        self.inner.read_at(off, buf)
    }
    fn write(&mut self, off: u64, data: &[u8]) -> hammer2::Result<()> {
        self.inner.write(off, data)?;
        self.log.push(Event::Write { vol: self.vol, off, data: Arc::new(data.to_vec()) });
        Ok(())
    }
    fn sync_range(&mut self, off: u64, len: u64) -> hammer2::Result<()> {
        self.inner.sync_range(off, len)?;
        self.log.push(Event::Barrier { vol: self.vol, range: Some((off, len)) });
        Ok(())
    }
    fn sync(&mut self) -> hammer2::Result<()> {
        self.inner.sync()?;
        self.log.push(Event::Barrier { vol: self.vol, range: None });
        Ok(())
    }
}

/// Opens `path` read-write behind a recorder that appends to `log`.
pub fn open_recorded_into(path: &Path, log: &Log) -> Hammer2 {
    use hammer2::device::{Access, Device, MmapBackend};
    let inner = MmapBackend::open(path, Access::ReadWrite).unwrap();
    let rec: Box<dyn Backend> = Box::new(Recording::new(Box::new(inner), 0, log.clone()));
    Hammer2::open(Device::from_backends(vec![rec]), hammer2::CopyChoice::Best).unwrap()
}

/// The header slot `[n x 2 GiB, +64 KiB)` that `[off, off+len)` touches.
pub fn header_slot(off: u64, len: u64) -> Option<u64> {
    (0..HEADER_COPIES).find(|n| {
        let s = n * ZONE_BYTES;
        off < s + HEADER_BYTES && s < off + len
    })
}

/// A recorded write applied at a cut, whole or torn (its first `len` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Applied {
    /// Index of the write in the log.
    pub event: usize,
    pub len: usize,
}

/// One crash point: which writes reached the media.
#[derive(Debug, Clone)]
pub struct Cut {
    pub name: String,
    pub applied: Vec<Applied>,
    /// The header slot left torn, if any.
    pub torn_slot: Option<u64>,
}

impl Cut {
    /// Header writes that reached the media whole.
    pub fn whole_headers(&self, events: &[Event]) -> usize {
        self.applied
            .iter()
            .filter(|a| match &events[a.event] {
                Event::Write { off, data, .. } => {
                    header_slot(*off, data.len() as u64).is_some() && a.len == data.len()
                }
                Event::Barrier { .. } => false,
            })
            .count()
    }
}

/// Deterministic xorshift64* generator (no dependency, reproducible cuts).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The cut where every recorded write landed.
pub fn all_writes(events: &[Event]) -> Cut {
    let applied = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Write { data, .. } => Some(Applied { event: i, len: data.len() }),
            Event::Barrier { .. } => None,
        })
        .collect();
    Cut { name: "everything written".into(), applied, torn_slot: None }
}

/// Tear sizes of a header write: one sector, one page, half, all but the last sector.
pub const TEARS: [usize; 4] = [512, 4096, 32768, 65024];

/// The crash points of a recording:
/// - at every barrier (everything written before it, nothing after; a
///   range barrier counts as whole, which holds when it only follows the
///   header write it covers, as the write-order check of the tests asserts);
/// - just before and just after every write that touches a header slot,
///   and that write torn at each of [`TEARS`];
/// - `samples` prefixes evenly spread over every span between barriers;
/// - `samples` random subsets of every span's writes on top of the durable
///   prefix (between barriers the device may reorder writes).
///
/// Cuts that apply the same writes are kept once.
pub fn cut_points(events: &[Event], samples: usize, rng: &mut Rng) -> Vec<Cut> {
    let writes_before = |end: usize| -> Vec<Applied> {
        events[..end]
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::Write { data, .. } => Some(Applied { event: i, len: data.len() }),
                Event::Barrier { .. } => None,
            })
            .collect()
    };
    let mut cuts = Vec::new();
    // Spans of writes between barriers: [start, end) event indices.
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, e) in events.iter().enumerate() {
        if matches!(e, Event::Barrier { .. }) {
            cuts.push(Cut {
                name: format!("at barrier (event {i})"),
                applied: writes_before(i),
                torn_slot: None,
            });
            spans.push((start, i));
            start = i + 1;
        }
    }
    spans.push((start, events.len()));
    cuts.push(Cut {
        name: "everything written".into(),
        applied: writes_before(events.len()),
        torn_slot: None,
    });
    for (i, e) in events.iter().enumerate() {
        let Event::Write { off, data, .. } = e else { continue };
        let Some(slot) = header_slot(*off, data.len() as u64) else { continue };
        cuts.push(Cut {
            name: format!("before header write (event {i})"),
            applied: writes_before(i),
            torn_slot: None,
        });
        cuts.push(Cut {
            name: format!("after header write (event {i})"),
            applied: writes_before(i + 1),
            torn_slot: None,
        });
        for tear in TEARS.into_iter().filter(|&t| t < data.len()) {
            let mut applied = writes_before(i);
            applied.push(Applied { event: i, len: tear });
            cuts.push(Cut {
                name: format!("header write torn after {tear} bytes (event {i})"),
                applied,
                torn_slot: Some(slot),
            });
        }
    }
    for &(s, e) in &spans {
        let span: Vec<usize> = (s..e).filter(|&i| matches!(events[i], Event::Write { .. })).collect();
        if span.len() < 2 {
            continue;
        }
        for k in 1..=samples {
            let upto = span[span.len() * k / (samples + 1)];
            cuts.push(Cut {
                name: format!("mid-span prefix up to event {upto}"),
                applied: writes_before(upto),
                torn_slot: None,
            });
        }
        for k in 0..samples {
            let mut applied = writes_before(s);
            applied.extend(span.iter().filter(|_| rng.next() & 1 == 1).map(|&i| {
                let Event::Write { data, .. } = &events[i] else { unreachable!() };
                Applied { event: i, len: data.len() }
            }));
            cuts.push(Cut {
                name: format!("random subset #{k} of events {s}..{e}"),
                applied,
                torn_slot: None,
            });
        }
    }
    // Cuts that apply the same writes are one cut with all their names.
    let mut seen: std::collections::HashMap<Vec<Applied>, usize> = std::collections::HashMap::new();
    let mut out: Vec<Cut> = Vec::new();
    for c in cuts {
        match seen.get(&c.applied) {
            Some(&i) => out[i].name = format!("{} = {}", out[i].name, c.name),
            None => {
                seen.insert(c.applied.clone(), out.len());
                out.push(c);
            }
        }
    }
    out
}

/// A scratch image rebuilt at cut points: a pristine original plus the
/// writes of one cut. Applying a cut first undoes the previous one by
/// copying the original's bytes back over every range it changed.
pub struct CrashImage {
    pub original: PathBuf,
    pub path: PathBuf,
    file: File,
    orig: File,
    dirty: Vec<(u64, usize)>,
}

impl CrashImage {
    /// `original` must stay unchanged; `path` becomes a sparse copy of it.
    pub fn new(original: &Path, path: &Path) -> Self {
        super::copy_sparse(original, path);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        let orig = File::open(original).unwrap();
        CrashImage {
            original: original.to_path_buf(),
            path: path.to_path_buf(),
            file,
            orig,
            dirty: Vec::new(),
        }
    }

    pub fn spec(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Puts the original's bytes back everywhere (header slots included, as
    /// a repair may have written them).
    pub fn reset(&mut self) {
        let size = self.orig.metadata().unwrap().len();
        for n in 0..HEADER_COPIES {
            if n * ZONE_BYTES + HEADER_BYTES <= size {
                self.dirty.push((n * ZONE_BYTES, HEADER_BYTES as usize));
            }
        }
        let mut buf = Vec::new();
        for (off, len) in std::mem::take(&mut self.dirty) {
            buf.resize(len, 0);
            self.orig.read_exact_at(&mut buf, off).unwrap();
            self.file.write_all_at(&buf, off).unwrap();
        }
    }

    /// The original plus the writes of `cut`, applied in log order.
    pub fn apply(&mut self, events: &[Event], cut: &Cut) {
        self.reset();
        for a in &cut.applied {
            let Event::Write { vol, off, data } = &events[a.event] else { panic!("not a write") };
            assert_eq!(*vol, 0, "single-volume images only");
            self.file.write_all_at(&data[..a.len], *off).unwrap();
            self.dirty.push((*off, a.len));
        }
    }

    /// [`apply`](Self::apply), then the file system opened (which must
    /// succeed at every cut).
    pub fn open_at(&mut self, events: &[Event], cut: &Cut) -> Hammer2 {
        self.apply(events, cut);
        Hammer2::open_path(self.spec()).unwrap_or_else(|e| panic!("{}: does not open: {e}", cut.name))
    }
}

/// Calls `f(offset, bytes)` for every non-zero 64 KiB-aligned chunk of the
/// file (holes and written zeros read the same).
fn nonzero_chunks(path: &Path, f: &mut dyn FnMut(u64, &[u8])) {
    use std::os::unix::io::AsRawFd;
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut pos = 0i64;
    let mut next = 0u64;
    while (pos as u64) < len {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) } as u64;
        // Extents are finer than chunks: never visit a chunk twice.
        let mut at = (data as u64 & !65535).max(next);
        while at < hole {
            let n = 65536.min(len - at) as usize;
            file.read_exact_at(&mut buf[..n], at).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                f(at, &buf[..n]);
            }
            at += 65536;
        }
        next = at;
        pos = hole as i64;
    }
}

/// SHA-256 of a file's whole content (length, and every non-zero chunk with
/// its offset), read sparsely: equal digests mean byte-identical files.
pub fn content_digest(path: &Path) -> String {
    let mut h = sha2::Sha256::new();
    h.update(std::fs::metadata(path).unwrap().len().to_le_bytes());
    nonzero_chunks(path, &mut |off, bytes| {
        h.update(off.to_le_bytes());
        h.update(bytes);
    });
    hex(&h.finalize())
}

/// Offsets of the 64 KiB chunks where two files differ (at most `limit`).
pub fn differing_chunks(a: &Path, b: &Path, limit: usize) -> Vec<u64> {
    let mut ca = BTreeMap::new();
    nonzero_chunks(a, &mut |off, bytes| {
        ca.insert(off, hex(&sha2::Sha256::digest(bytes)));
    });
    let mut cb = BTreeMap::new();
    nonzero_chunks(b, &mut |off, bytes| {
        cb.insert(off, hex(&sha2::Sha256::digest(bytes)));
    });
    let keys: std::collections::BTreeSet<u64> = ca.keys().chain(cb.keys()).copied().collect();
    keys.into_iter().filter(|k| ca.get(k) != cb.get(k)).take(limit).collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One visible path of a PFS, as the fixtures' manifests describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 'd', 'f' or 'l'.
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    /// SHA-256 of a file's content, a symlink's target, "-" for directories.
    pub what: String,
}

/// Path (relative, no leading '/') -> entry.
pub type State = BTreeMap<String, Entry>;

impl Entry {
    pub fn dir(mode: u32) -> Entry {
        Entry { kind: 'd', mode, size: 0, what: "-".into() }
    }
    pub fn file(mode: u32, content: &[u8]) -> Entry {
        Entry { kind: 'f', mode, size: content.len() as u64, what: hex(&sha2::Sha256::digest(content)) }
    }
}

/// A fixture's manifest (`path type mode size sha256-or-target`).
pub fn manifest(name: &str) -> State {
    let text = std::fs::read_to_string(super::fixtures_dir().join(format!("{name}.manifest"))).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let mode = u32::from_str_radix(f[2].trim_start_matches("0o"), 8).unwrap();
            let e = Entry {
                kind: f[1].chars().next().unwrap(),
                mode,
                size: f[3].parse().unwrap(),
                what: f[4].to_string(),
            };
            (f[0].to_string(), e)
        })
        .collect()
}

struct HashSink(sha2::Sha256, u64);

impl Sink for HashSink {
    fn data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.update(bytes);
        self.1 += bytes.len() as u64;
        Ok(())
    }
    fn hole(&mut self, mut n: u64) -> std::io::Result<()> {
        static ZEROS: [u8; 65536] = [0; 65536];
        self.1 += n;
        while n > 0 {
            let k = n.min(65536);
            self.0.update(&ZEROS[..k as usize]);
            n -= k;
        }
        Ok(())
    }
}

/// Everything visible in the default PFS of `spec` (contents hashed).
pub fn visible_state(spec: &str) -> hammer2::Result<State> {
    let fs = Hammer2::open_path(spec)?;
    let tree = Tree::new(&fs);
    let pfs = Pfs::default(&tree)?;
    let mut out = State::new();
    walk_dir(&pfs, &pfs.root.clone(), "", &mut out, 0)?;
    Ok(out)
}

fn walk_dir<'a>(
    pfs: &Pfs<'a>,
    dir: &Inode<'a>,
    prefix: &str,
    out: &mut State,
    depth: usize,
) -> hammer2::Result<()> {
    assert!(depth < 64, "directory tree deeper than 64 levels under {prefix}");
    for e in pfs.readdir(dir)? {
        let path = format!("{prefix}{}", e.name_lossy());
        let ino = pfs.inode(e.inum)?;
        let mode = ino.data.meta.mode.get() & 0o7777;
        let entry = match ino.obj_type() {
            ObjType::Directory => {
                walk_dir(pfs, &ino, &format!("{path}/"), out, depth + 1)?;
                Entry::dir(mode)
            }
            ObjType::Softlink => {
                let t = read_link(&pfs.tree, &ino)?;
                Entry {
                    kind: 'l',
                    mode,
                    size: t.len() as u64,
                    what: String::from_utf8_lossy(&t).into_owned(),
                }
            }
            _ => {
                let mut sink = HashSink(sha2::Sha256::new(), 0);
                read_file(&pfs.tree, &ino, &mut sink)?;
                let size = ino.data.meta.size.get();
                assert_eq!(sink.1, size, "{path}: read {} bytes of a {size}-byte file", sink.1);
                Entry { kind: 'f', mode, size, what: hex(&sink.0.finalize()) }
            }
        };
        if out.insert(path.clone(), entry).is_some() {
            panic!("{path} listed twice");
        }
    }
    Ok(())
}

/// A readable difference between two states (first few paths).
pub fn state_diff(got: &State, want: &State) -> String {
    let mut lines = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => lines.push(format!("missing {p}")),
            Some(g) if g != w => lines.push(format!("differs {p}: got {g:?}, want {w:?}")),
            _ => {}
        }
    }
    lines.extend(got.keys().filter(|p| !want.contains_key(*p)).map(|p| format!("unexpected {p}")));
    let n = lines.len();
    lines.truncate(8);
    if n > 8 {
        lines.push(format!("... {} more", n - 8));
    }
    lines.join("\n")
}

/// Deterministic file contents: pseudo-random, every third 4 KiB run
/// compressible (so some blocks are stored compressed, some raw).
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed + 1);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let i = out.len();
        if (i / 4096) % 3 == 0 {
            out.push((i % 251) as u8);
        } else {
            out.extend_from_slice(&r.next().to_le_bytes()[..(len - i).min(8).min(4096 - i % 4096)]);
        }
    }
    out
}

/// A reader of `len` incompressible pseudo-random bytes (fills space).
pub struct Noise {
    rng: Rng,
    left: u64,
}

impl Noise {
    pub fn new(seed: u64, len: u64) -> Self {
        Noise { rng: Rng::new(seed), left: len }
    }
}

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        let n = if n == 0 { buf.len().min(self.left as usize) } else { n };
        for c in buf[..n].chunks_mut(8) {
            let v = self.rng.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Our fsck (`all_copies`: every valid header copy's topology too); returns
/// the findings that are not informational, as text.
pub fn fsck_damage(spec: &str, all_copies: bool) -> (i32, Vec<String>) {
    let opts = hammer2::fsck::FsckOptions { all_copies, ..Default::default() };
    let r = hammer2::fsck::fsck(spec, &opts).unwrap_or_else(|e| panic!("fsck {spec}: {e}"));
    let bad = r.damage().map(|f| format!("{} {}: {}", f.problem.id, f.location, f.detail)).collect();
    (r.exit_code(), bad)
}
