//! Running tools on hostile images without letting them take the test down:
//! in-process calls on a watchdog thread under `catch_unwind` (a panic is
//! captured with its location, a hang is reported after a deadline), and the
//! binaries as child processes with a deadline (they catch what
//! `catch_unwind` cannot: aborts on allocation failure, stack overflows).
//!
//! A test binary may also install [`Guard`] as its global allocator: an
//! allocation beyond [`HUGE_ALLOC`] (which would abort the whole test
//! process, or exhaust memory) is then recorded with its backtrace and the
//! allocating thread is parked forever instead, so [`run_guarded`] reports it
//! as [`Outcome::HugeAlloc`] and the run goes on.

use hammer2::read::file::{read_file, read_link, Sink};
use hammer2::read::pfs::Pfs;
use hammer2::read::tree::{Flow, Tree};
use hammer2::read::walk::{walk, Root, WalkOptions};
use hammer2::Hammer2;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Larger allocations are bugs on any image (the fixtures are small): 1 GiB.
pub const HUGE_ALLOC: usize = 1 << 30;

/// Huge allocations seen: (case number or 0 when the thread ran no case, description).
static HUGE: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
static NEXT_CASE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The guarded case this thread runs (0: none, e.g. a rayon worker).
    static CASE: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that turns allocations beyond [`HUGE_ALLOC`] into a
/// record and a parked thread (see the module documentation).
pub struct Guard;

fn huge(size: usize) -> ! {
    let case = CASE.with(|c| c.get());
    // Small allocations from here on pass through to the system allocator.
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let mut frames = Vec::new();
    let mut lines = bt.lines().peekable();
    while let Some(l) = lines.next() {
        if l.contains("hammer2::") && !l.contains("common::run") && frames.len() < 4 {
            let at = lines.peek().map(|n| n.trim().trim_start_matches("at ").to_string()).unwrap_or_default();
            frames.push(format!("{} ({at})", l.trim().split_once(": ").map_or(l.trim(), |x| x.1)));
        }
    }
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    let msg = format!("allocation of {size} bytes on thread {thread} at {}", frames.join(" <- "));
    HUGE.lock().unwrap_or_else(|e| e.into_inner()).push((case, msg));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// SAFETY: defers to the system allocator; the only addition never returns.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HUGE_ALLOC {
            huge(layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HUGE_ALLOC {
            huge(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > HUGE_ALLOC {
            huge(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A huge allocation recorded for `case` (or by a thread running no case).
fn take_huge(case: u64) -> Option<String> {
    let mut v = HUGE.lock().unwrap_or_else(|e| e.into_inner());
    let i = v.iter().position(|(c, _)| *c == case || *c == 0)?;
    Some(v.remove(i).1)
}

/// Name prefix of the threads [`run_guarded`] starts; the panic hook keeps
/// their panics quiet (they are collected and reported by the test).
const CASE_THREAD: &str = "guarded-case";

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message and location of
/// panics on guarded threads instead of printing them; other threads keep
/// the default behaviour (so assertion failures still show).
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let guarded = std::thread::current().name().is_some_and(|n| n.starts_with(CASE_THREAD));
            if guarded {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string().replace('\n', " ")));
            } else {
                default(info);
            }
        }));
    });
}

/// How a guarded call ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The panic message with its location.
    Panicked(String),
    /// Still running at the deadline (the thread is left behind).
    TimedOut,
    /// Asked for more than [`HUGE_ALLOC`] bytes (with [`Guard`] installed).
    HugeAlloc(String),
}

/// A call running on its own watchdog thread (see [`spawn_guarded`]).
pub struct Guarded<T> {
    case: u64,
    rx: mpsc::Receiver<Result<T, String>>,
    tid: mpsc::Receiver<i32>,
    start: Instant,
}

/// Starts `f` on its own thread under `catch_unwind`; [`Guarded::wait`] collects it.
pub fn spawn_guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Guarded<T> {
    install_hook();
    let case = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{CASE_THREAD}-{case}"))
        .stack_size(8 << 20)
        .spawn(move || {
            CASE.with(|c| c.set(case));
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or(msg)
            });
            let _ = tx.send(r);
        })
        .unwrap();
    Guarded { case, rx, tid, start: Instant::now() }
}

impl<T> Guarded<T> {
    /// Waits until `limit` after the start. A thread still running then is
    /// left behind at the lowest CPU priority (threads cannot be killed).
    pub fn wait(self, limit: Duration) -> Outcome<T> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(v)) => return Outcome::Done(v),
                Ok(Err(msg)) => return Outcome::Panicked(msg),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Outcome::Panicked("thread vanished".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(msg) = take_huge(self.case) {
                return Outcome::HugeAlloc(msg);
            }
            if self.start.elapsed() > limit {
                if let Ok(tid) = self.tid.try_recv() {
                    // SAFETY: plain syscall on a thread id of this process.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
                }
                return Outcome::TimedOut;
            }
        }
    }
}

/// Runs `f` on its own thread under `catch_unwind`; gives up waiting after `limit`.
pub fn run_guarded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Outcome<T> {
    spawn_guarded(f).wait(limit)
}

/// How a child process ended.
#[derive(Debug)]
pub struct ToolRun {
    pub cmd: String,
    /// Exit code; None when killed by a signal or by the deadline.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl ToolRun {
    /// Died of a panic (101), a signal (abort, segfault) or the deadline.
    pub fn crashed(&self) -> bool {
        self.timed_out || self.signal.is_some() || self.code == Some(101)
    }
    pub fn describe(&self) -> String {
        let how = if self.timed_out {
            format!("still running after {:.1?} (killed)", self.elapsed)
        } else if let Some(s) = self.signal {
            format!("killed by signal {s}")
        } else {
            format!("exit {:?} after {:.1?}", self.code, self.elapsed)
        };
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.starts_with("note: run with")).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        format!("{}: {how}; stderr: {tail}", self.cmd)
    }
}

/// Runs `exe args` with a deadline; the child is killed (by its pid) when it is exceeded.
pub fn run_tool(exe: &str, args: &[&str], limit: Duration) -> ToolRun {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let name = Path::new(exe).file_name().unwrap().to_string_lossy().into_owned();
    let cmd = format!("{name} {}", args.join(" "));
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on them.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                // Keep at most 1 MiB: a hostile image may make a dump huge.
                let _ = r.by_ref().take(1 << 20).read_to_end(&mut buf);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    ToolRun {
        cmd,
        code: if timed_out { None } else { status.code() },
        signal: if timed_out { None } else { status.signal() },
        timed_out,
        elapsed,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub const FSCK: &str = env!("CARGO_BIN_EXE_fsck_hammer2");
pub const DUMP: &str = env!("CARGO_BIN_EXE_hammer2_dump");
pub const EDIT: &str = env!("CARGO_BIN_EXE_hammer2_edit");

/// The read-only command lines every tool offers on `spec` (`hostdir`
/// receives `hammer2_edit get`).
pub fn tool_commands(spec: &str, hostdir: &str) -> Vec<(&'static str, Vec<String>)> {
    let s = spec.to_string();
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (FSCK, vec![s.clone()]),
        (DUMP, v(&["show", spec])),
        (DUMP, v(&["pfs", spec])),
        (DUMP, v(&["freemap", spec])),
        (DUMP, v(&["volhdr", spec])),
        (EDIT, v(&[spec, "pfs"])),
        (EDIT, v(&[spec, "ls", "-l", "/"])),
        (EDIT, v(&[spec, "stat", "/"])),
        (EDIT, v(&[spec, "get", "/", hostdir])),
    ]
}

/// A sink that gives up after a budget (a hostile size may be enormous).
pub struct Capped(pub u64);
impl Sink for Capped {
    fn data(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.take(b.len() as u64)
    }
    fn hole(&mut self, n: u64) -> std::io::Result<()> {
        self.take(n)
    }
}
impl Capped {
    fn take(&mut self, n: u64) -> std::io::Result<()> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| std::io::Error::other("budget exhausted"))?;
        Ok(())
    }
}

/// What one in-process pass over an image saw.
#[derive(Debug, Clone)]
pub struct Exercised {
    /// Problem ids of every fsck finding (one entry per finding).
    pub fsck_ids: Vec<&'static str>,
    /// fsck's exit code, or its error.
    pub fsck: Result<i32, String>,
    /// First few fsck findings that are damage, for messages.
    pub fsck_sample: Vec<String>,
    pub opened: bool,
    pub pfs: usize,
    pub entries: usize,
    pub files_read: usize,
    pub extracted: bool,
}

/// Bounds of [`exercise`].
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// Verify check codes on tree reads.
    pub verify: bool,
    /// Directory entries visited at most (over all PFSs).
    pub entries: usize,
    /// Bytes read per file at most.
    pub file_bytes: u64,
    /// Also the whole-tree walks and `dump show` (on a large image they
    /// cost as much as fsck: every data block is read again).
    pub dumps: bool,
}

/// Every read path of the library on `spec`, bounded: fsck, the volume
/// headers, both tree walks, `dump` show/freemap/pfs/inode, PFS list,
/// directory traversal with lookups and resolves, file and symlink reads,
/// and (with `extract_to`) extraction of the default PFS.
pub fn exercise(spec: &str, reads: Reads, extract_to: Option<&Path>) -> Exercised {
    let mut x = Exercised {
        fsck_ids: Vec::new(),
        fsck: Err("not run".into()),
        fsck_sample: Vec::new(),
        opened: false,
        pfs: 0,
        entries: 0,
        files_read: 0,
        extracted: false,
    };
    if let Ok(d) = hammer2::device::Device::open(spec, hammer2::device::Access::ReadOnly) {
        let _ = hammer2::dump::volhdr::report(&d);
    }
    match hammer2::fsck::fsck(spec, &Default::default()) {
        Ok(r) => {
            x.fsck_ids = r.findings.iter().map(|f| f.problem.id.code()).collect();
            // Damage first: informational findings (older header copies) say little.
            let mut sample: Vec<_> = r.findings.iter().collect();
            sample.sort_by_key(|f| f.problem.severity == hammer2::fsck::Severity::Info);
            x.fsck_sample = sample
                .iter()
                .take(3)
                .map(|f| format!("{} {}: {}", f.problem.id, f.location, f.detail))
                .collect();
            x.fsck = Ok(r.exit_code());
        }
        Err(e) => x.fsck = Err(e.to_string()),
    }
    let Ok(fs) = Hammer2::open_path(spec) else { return x };
    x.opened = true;
    if reads.dumps {
        for root in [Root::Topology, Root::Freemap] {
            let _ = walk(&fs, root, WalkOptions::default(), &mut |_| {});
        }
        let show =
            hammer2::dump::show::ShowOptions { freemap: true, verify_data: true, ..Default::default() };
        let _ = hammer2::dump::show::show(&fs, &show, &mut |_| {});
    }
    let _ = hammer2::dump::freemap::report(&fs);
    let _ = hammer2::dump::pfs::list(&fs);
    let mut tree = Tree::new(&fs);
    tree.verify = reads.verify;
    let Ok(list) = Pfs::list(&tree) else { return x };
    x.pfs = list.len();
    let mut budget = reads.entries;
    for pfs in &list {
        let label = pfs.name();
        let by_label = hammer2::dump::show::ShowOptions {
            start: hammer2::dump::show::Start::Pfs(label.clone()),
            ..Default::default()
        };
        if reads.dumps {
            let _ = hammer2::dump::show::show(&fs, &by_label, &mut |_| {});
        }
        let _ =
            hammer2::dump::inode::report(&fs, Some(&label), &hammer2::dump::inode::Which::Path("/".into()));
        let mut stack = vec![(pfs.root.clone(), String::new(), 0usize)];
        while let Some((dir, path, depth)) = stack.pop() {
            let Ok(entries) = pfs.readdir(&dir) else { continue };
            for e in entries {
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return x;
                }
                x.entries += 1;
                let _ = pfs.lookup_name(&dir, &e.name);
                let child_path = format!("{path}/{}", e.name_lossy());
                let _ = pfs.resolve(&child_path);
                let Ok(ino) = pfs.inode(e.inum) else { continue };
                let _ = hammer2::dump::inode::describe(&label, Some(child_path.clone()), &ino);
                if ino.is_dir() {
                    if depth < 64 {
                        stack.push((ino, child_path, depth + 1));
                    }
                } else if ino.obj_type() == hammer2::format::ObjType::Softlink {
                    let _ = read_link(&tree, &ino);
                } else if read_file(&tree, &ino, &mut Capped(reads.file_bytes)).is_ok() {
                    x.files_read += 1;
                }
            }
        }
        let _ = tree.scan(pfs.root.blockset(), 0, 0, u64::MAX, &mut |_, _| Ok(Flow::Continue));
    }
    if let Some(dir) = extract_to {
        if let Ok(pfs) = Pfs::default(&tree) {
            x.extracted = hammer2::host::extract::extract(&pfs, "/", dir, &mut |_| {}).is_ok();
        }
    }
    x
}

/// How long work may run before a test calls it hung. Tests bound no speed
/// (that is for the benches): this only turns a hang into a failure that
/// says what hung, instead of a test that never ends.
pub const HANG: Duration = Duration::from_secs(120);

/// Runs `work` on its own thread and returns its result; a panic in it is
/// the test's panic. If it has not finished after [`HANG`], the test fails
/// saying that `what` hung (the thread is left behind).
pub fn watchdog<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("watched".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the watched thread ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: {what} has not finished after {HANG:?}"),
    }
}

/// Runs `exe args` to its end; if it has not exited after [`HANG`], it is
/// killed and the test fails saying it hung.
pub fn run_to_end(exe: &str, args: &[&str]) -> ToolRun {
    let run = run_tool(exe, args, HANG);
    assert!(!run.timed_out, "hung: {}", run.describe());
    run
}
