//! Two tools on one image at once (issue #20): exclusive writers and
//! consistent readers through the volume locks, a writer killed with
//! SIGKILL, block devices (loop devices, root only), and I/O errors in
//! the middle of a commit, which stop the run and leave the previous
//! commit intact.
//!
//! Outcomes depend on how the processes interleave, so the tests assert
//! what must hold for every interleaving (each run commits or is refused
//! with the lock message; the image is clean and holds exactly what was
//! committed) and only print how often each outcome happened.

mod common;

use common::oracle::reference_fsck;
use hammer2::device::lock::{self, Wait};
use hammer2::device::{Access, Backend, Device, MmapBackend};
use hammer2::write::session::{Attrs, Session};
use hammer2::{Error, Hammer2};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

const FSCK: &str = env!("CARGO_BIN_EXE_fsck_hammer2");
const EDIT: &str = env!("CARGO_BIN_EXE_hammer2_edit");
const DUMP: &str = env!("CARGO_BIN_EXE_hammer2_dump");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Starts `exe`; its output is collected on a thread of its own, so that a
/// run blocked on a full pipe never holds its lock while the test waits
/// for another run.
fn spawn(exe: &str, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe}: {e}"));
    std::thread::spawn(move || child.wait_with_output().unwrap())
}

/// True when `o` is a refusal because another run of ours holds the
/// image: the message names the volume and the holder, and says what to do.
fn refused(o: &Output, volume: &str, code: i32) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    o.status.code() == Some(code)
        && err.contains(&format!("{volume}: in use by another hammer2 tool (pid "))
        && err.contains("try again later or pass --wait")
}

/// [`refused`], or refused with the holder unknown: it let go (and
/// another run took the image) each time the refused run looked for it,
/// which short runs racing each other can do. Which one it was is
/// counted in `unnamed`.
fn refused_racing(o: &Output, volume: &str, code: i32, unnamed: &mut usize) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    if refused(o, volume, code) {
        return true;
    }
    let ok = o.status.code() == Some(code)
        && err.contains(&format!("{volume}: in use by another process (the system does not say which)"))
        && err.contains("try again later or pass --wait");
    *unnamed += usize::from(ok);
    ok
}

fn fsck_clean(spec: &str) -> Result<(), String> {
    let o = Command::new(FSCK).args(["-n", spec]).output().unwrap();
    if o.status.code() == Some(0) {
        Ok(())
    } else {
        Err(format!("fsck_hammer2 -n exit {:?}:\n{}", o.status.code(), text(&o)))
    }
}

/// The names under `/` that start with `prefix`, as `hammer2_edit ls` lists them.
fn listed(spec: &str, prefix: &str) -> Vec<String> {
    let o = Command::new(EDIT).args([spec, "ls", "/"]).output().unwrap();
    assert!(o.status.success(), "ls /: {}", text(&o));
    let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn cat(spec: &str, path: &str) -> Vec<u8> {
    let o = Command::new(EDIT).args([spec, "cat", path]).output().unwrap();
    assert!(o.status.success(), "cat {path}: {}", text(&o));
    o.stdout
}

#[derive(Default, Debug)]
struct Tally {
    committed: usize,
    refused: usize,
    waited_commits: usize,
    reads_clean: usize,
    reads_refused: usize,
    /// Refusals whose holder had let go before it could be named.
    unnamed: usize,
}

/// `rounds` rounds on a private copy of `fixture`: in each, two writers
/// (failing at once when the image is taken) and a third with `--wait`,
/// started together with three readers (fsck -n, cat of a committed
/// file, dump volhdr). Every writer commits or is refused with the lock
/// message, the `--wait` writer always commits, no reader reports
/// damage; after every round the image is clean for our fsck (and the
/// reference one when `reference`) and holds exactly the committed files.
fn concurrent_rounds(fixture: &str, rounds: usize, reference: bool) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy(fixture, dir.path());
    let spec = img.to_str().unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tally = Tally::default();
    for r in 0..rounds {
        let mut writers = Vec::new();
        for w in 0..3 {
            let name = format!("lock-{r:02}-{w}");
            let body = common::content((r * 3 + w) as u64, 20_000 + 37_000 * w + 5_000 * r);
            let host = dir.path().join(&name);
            std::fs::write(&host, &body).unwrap();
            let dest = format!("/{name}");
            let mut args = vec![spec, "put", host.to_str().unwrap(), &dest];
            if w == 2 {
                args.insert(0, "--wait");
            }
            writers.push((name, body, spawn(EDIT, &args)));
        }
        let earlier = model.iter().next_back().map(|(n, b)| (format!("/{n}"), b.clone()));
        let mut readers =
            vec![("fsck", spawn(FSCK, &["-n", spec])), ("dump", spawn(DUMP, &["volhdr", spec]))];
        if let Some((path, _)) = &earlier {
            readers.push(("cat", spawn(EDIT, &[spec, "cat", path])));
        }
        for (name, body, child) in writers {
            let o = child.join().unwrap();
            if o.status.success() {
                assert!(String::from_utf8_lossy(&o.stdout).contains("committed"), "{name}: {}", text(&o));
                tally.committed += 1;
                if name.ends_with("-2") {
                    tally.waited_commits += 1;
                }
                model.insert(name, body);
            } else {
                assert!(!name.ends_with("-2"), "round {r}: the --wait writer failed:\n{}", text(&o));
                assert!(
                    refused_racing(&o, spec, 1, &mut tally.unnamed),
                    "round {r}: {name} neither committed nor was refused:\n{}",
                    text(&o)
                );
                tally.refused += 1;
            }
        }
        for (what, child) in readers {
            let o = child.join().unwrap();
            let code = if what == "fsck" { 8 } else { 1 };
            if o.status.success() {
                if what == "cat" {
                    let (path, want) = earlier.as_ref().unwrap();
                    assert!(o.stdout == *want, "round {r}: cat {path} read other bytes than were committed");
                }
                tally.reads_clean += 1;
            } else {
                assert!(
                    refused_racing(&o, spec, code, &mut tally.unnamed),
                    "round {r}: reader {what} reported:\n{}",
                    text(&o)
                );
                tally.reads_refused += 1;
            }
        }
        fsck_clean(spec).unwrap_or_else(|e| panic!("after round {r}: {e}"));
        if reference {
            let (ok, out) = reference_fsck(spec);
            assert!(ok, "after round {r}: reference fsck:\n{out}");
        }
        let want: Vec<String> = model.keys().cloned().collect();
        assert_eq!(
            listed(spec, "lock-"),
            want,
            "after round {r}: the image holds other files than were committed"
        );
        for w in 0..3 {
            let name = format!("lock-{r:02}-{w}");
            if let Some(body) = model.get(&name) {
                assert!(cat(spec, &format!("/{name}")) == *body, "after round {r}: /{name} differs");
            }
        }
    }
    for (name, body) in &model {
        assert!(cat(spec, &format!("/{name}")) == *body, "at the end: /{name} differs");
    }
    eprintln!("{fixture}: {rounds} rounds: {tally:?}");
    tally
}

#[test]
fn writers_and_readers_at_once_many_rounds() {
    let t = concurrent_rounds("varied", 12, false);
    assert_eq!(t.waited_commits, 12);
}

#[test]
#[ignore = "needs the reference tools (../shared/reftools or HAMMER2_REFTOOLS)"]
fn writers_and_readers_at_once_reference_fsck() {
    concurrent_rounds("small-iscsi", 8, true);
}

/// The issue's own case: two shell loops of `put` on one copy of `varied`.
#[test]
fn two_put_loops_on_varied() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("varied", dir.path());
    let spec = img.to_str().unwrap().to_string();
    let host = dir.path().join("file");
    std::fs::write(&host, common::content(9, 50_000)).unwrap();
    let lp = |who: &'static str| {
        let (spec, host) = (spec.clone(), host.clone());
        std::thread::spawn(move || {
            let mut done = Vec::new();
            for i in 0..15 {
                let dest = format!("/{who}-{i:02}");
                let o =
                    Command::new(EDIT).args([&spec, "put", host.to_str().unwrap(), &dest]).output().unwrap();
                if o.status.success() {
                    done.push(dest[1..].to_string());
                } else {
                    assert!(refused_racing(&o, &spec, 1, &mut 0), "{dest}: {}", text(&o));
                }
            }
            done
        })
    };
    let (a, b) = (lp("a"), lp("b"));
    let mut want: Vec<String> = a.join().unwrap();
    want.extend(b.join().unwrap());
    want.sort();
    eprintln!("{} of 30 puts committed, the others refused", want.len());
    fsck_clean(&spec).unwrap();
    let mut got = listed(&spec, "a-");
    got.extend(listed(&spec, "b-"));
    got.sort();
    assert_eq!(got, want);
}

/// Waits (bounded, so a broken writer fails the test instead of hanging
/// it) until `cond` holds.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("gave up waiting until {what}");
}

/// A writer that holds the image and blocks: it puts a 3 MiB file (its
/// blocks reach the image before the commit), then waits for the data
/// of `write` on its standard input, which the test never closes.
fn blocked_writer(spec: &str, big: &Path) -> Child {
    let mut child = Command::new(EDIT)
        // --wait: the test's probes for the lock may hold it for a moment.
        .args(["--wait", spec, "-c", &format!("put {} /big; touch /w; write /w 0", big.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"partial").unwrap();
    child
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// kill -9 of a writer in the middle of its run: the kernel drops its
/// lock (the next run needs no --wait) and the image is the last
/// committed state, clean.
#[test]
fn a_killed_writer_leaves_no_lock_and_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"committed before\n").unwrap();
    common::editor::edit_ok(&[spec, "put", small.to_str().unwrap(), "/before"]);
    let big = dir.path().join("big");
    std::fs::write(&big, common::content(3, 3 << 20)).unwrap();
    let before = allocated(&img);

    let mut writer = blocked_writer(spec, &big);
    until("the writer holds the image", || {
        matches!(lock::hold(spec, Access::ReadOnly, Wait::No), Err(Error::Locked { .. }))
    });
    // Its file's blocks are on the image (not yet reachable) before it is killed.
    until("the writer has written its blocks", || allocated(&img) >= before + (1 << 20));
    let o = Command::new(EDIT).args([spec, "ls", "/"]).output().unwrap();
    assert!(refused(&o, spec, 1), "a reader while the writer runs: {}", text(&o));
    writer.kill().unwrap();
    let status = writer.wait().unwrap();
    assert!(!status.success());

    // At once, without --wait.
    common::editor::edit_ok(&[spec, "put", small.to_str().unwrap(), "/after"]);
    fsck_clean(spec).unwrap();
    let names = listed(spec, "");
    assert!(names.contains(&"before".to_string()) && names.contains(&"after".to_string()), "{names:?}");
    assert!(!names.contains(&"big".to_string()) && !names.contains(&"w".to_string()), "{names:?}");
    assert_eq!(cat(spec, "/after"), b"committed before\n");
}

/// `--wait` waits for the holder, `--wait=SECONDS` gives up after them,
/// and a read-only run (edit read commands, fsck -n, dump) shares the
/// image with other readers.
#[test]
fn wait_and_shared_readers() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let spec = img.to_str().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, common::content(4, 1 << 20)).unwrap();

    // Readers: this process holds a shared lock; every reading tool runs.
    let reader = lock::hold(spec, Access::ReadOnly, Wait::No).unwrap();
    for args in [vec![spec, "ls", "/"], vec!["-n", spec, "mkdir", "/dry"]] {
        let o = Command::new(EDIT).args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    fsck_clean(spec).unwrap();
    let o = Command::new(DUMP).args(["show", spec]).output().unwrap();
    assert!(o.status.success(), "dump show: {}", text(&o));
    // A writer is refused while a reader holds the image, naming the holder.
    let o = Command::new(EDIT).args([spec, "mkdir", "/x"]).output().unwrap();
    let me = format!("pid {}", std::process::id());
    assert!(o.status.code() == Some(1) && text(&o).contains(&me), "{}", text(&o));
    let o = Command::new(FSCK).args(["-y", spec]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    let o = Command::new(EDIT).args(["--wait=0.2", spec, "mkdir", "/x"]).output().unwrap();
    assert!(o.status.code() == Some(1) && text(&o).contains("still after waiting"), "{}", text(&o));
    // --wait: the writer goes on once the reader lets go.
    let waiting = spawn(EDIT, &["--wait", spec, "mkdir", "/x"]);
    drop(reader);
    let o = waiting.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(listed(spec, "x") == ["x"]);
}

// ------------------------------------------------------------- loop devices

fn need_root_and_losetup() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let losetup = Command::new("losetup").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(root && losetup, "this test needs root and losetup (util-linux)");
}

/// On /dev/loopN: a second writer (and a reader, and a writer on the
/// image file behind it) is refused while the first holds the device,
/// naming it; a device that another process
/// holds open exclusively (O_EXCL) is refused with that reason; once the
/// first writer is done, the second proceeds.
#[test]
#[ignore = "needs root and loop devices"]
fn loop_device_second_writer_refused() {
    need_root_and_losetup();
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let big = dir.path().join("big");
    std::fs::write(&big, common::content(5, 1 << 20)).unwrap();
    let lo = common::loopdev::LoopDevice::attach(&img);
    let dev = lo.dev.as_str();

    let mut first = blocked_writer(dev, &big);
    until("the first writer holds the device", || {
        matches!(lock::hold(dev, Access::ReadOnly, Wait::No), Err(Error::Locked { .. }))
    });
    let o = Command::new(EDIT).args([dev, "mkdir", "/second"]).output().unwrap();
    assert!(refused(&o, dev, 1), "second writer: {}", text(&o));
    let o = Command::new(FSCK).args(["-n", dev]).output().unwrap();
    assert!(refused(&o, dev, 8), "reader: {}", text(&o));
    // The image behind the loop device is held too.
    let spec = img.to_str().unwrap();
    let o = Command::new(EDIT).args([spec, "mkdir", "/via-image"]).output().unwrap();
    assert!(refused(&o, spec, 1), "writer on the image file: {}", text(&o));
    // Let the first writer finish: close its input.
    drop(first.stdin.take());
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "first writer: {}", text(&o));
    common::editor::edit_ok(&[dev, "mkdir", "/second"]);

    // Another process's exclusive open (as mkfs or a mount would hold it).
    use std::os::unix::fs::OpenOptionsExt;
    let excl = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(dev).unwrap();
    let o = Command::new(EDIT).args([dev, "mkdir", "/third"]).output().unwrap();
    let t = text(&o);
    assert!(o.status.code() == Some(1) && t.contains("held open exclusively by another process"), "{t}");
    drop(excl);
    common::editor::edit_ok(&[dev, "mkdir", "/third"]);
    fsck_clean(dev).unwrap();
    drop(lo);
    fsck_clean(img.to_str().unwrap()).unwrap();
}

// ------------------------------------------------------- I/O errors in a commit

/// What the faulty backend was told to do, and what it saw.
#[derive(Default)]
struct Plan {
    /// Fail the write or barrier with this index (counted from 0 over
    /// the run), or the read with this index among the undo log's reads.
    fail_op: Option<usize>,
    fail_read: Option<usize>,
    errno: i32,
    ops: usize,
    reads: usize,
    /// Writes and barriers attempted after the failure (must stay 0).
    after: usize,
    failed_at: Option<(&'static str, u64)>,
    /// Op indexes of the volume-header writes.
    header_ops: Vec<usize>,
}

struct Faulty {
    inner: MmapBackend,
    plan: Arc<Mutex<Plan>>,
}

impl Faulty {
    fn fail(&self, op: &'static str, off: u64, kind: bool) -> hammer2::Result<()> {
        let mut p = self.plan.lock().unwrap();
        if p.failed_at.is_some() && kind {
            p.after += 1;
        }
        let hit = if kind {
            p.ops += 1;
            p.fail_op == Some(p.ops - 1)
        } else {
            p.reads += 1;
            p.fail_read == Some(p.reads - 1)
        };
        if hit {
            p.failed_at = Some((op, off));
            let source = std::io::Error::from_raw_os_error(p.errno);
            return Err(Error::Io { path: self.inner.path().to_path_buf(), op, offset: off, source });
        }
        Ok(())
    }
}

impl Backend for Faulty {
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
        self.fail("read", off, false)?;
        self.inner.read_at(off, buf)
    }
    fn write(&mut self, off: u64, data: &[u8]) -> hammer2::Result<()> {
        if common::recording::header_slot(off, data.len() as u64).is_some() {
            let mut p = self.plan.lock().unwrap();
            let n = p.ops;
            p.header_ops.push(n);
        }
        self.fail("write", off, true)?;
        self.inner.write(off, data)
    }
    fn sync_range(&mut self, off: u64, len: u64) -> hammer2::Result<()> {
        self.fail("fdatasync", off, true)?;
        self.inner.sync_range(off, len)
    }
    fn sync(&mut self) -> hammer2::Result<()> {
        self.fail("fsync", 0, true)?;
        self.inner.sync()
    }
    fn is_hole(&self, off: u64, len: u64) -> bool {
        self.inner.is_hole(off, len)
    }
    fn punch_hole(&mut self, off: u64, len: u64) -> hammer2::Result<()> {
        self.fail("punch", off, true)?;
        self.inner.punch_hole(off, len)
    }
}

fn attrs(mode: u32) -> Attrs {
    Attrs { mode, uid: 0, gid: 0, mtime: 1_700_000_000_000_000 }
}

/// One edit run as hammer2_edit does it (undo log, commit, rollback on
/// failure) on `img` behind a faulty backend; the run's result.
fn faulty_run(img: &Path, plan: &Arc<Mutex<Plan>>) -> hammer2::Result<()> {
    let inner = MmapBackend::open(img, Access::ReadWrite)?;
    let vol: Box<dyn Backend> = Box::new(Faulty { inner, plan: plan.clone() });
    let fs = Hammer2::open(Device::from_backends(vec![vol]), hammer2::CopyChoice::Best)?;
    let mut s = Session::from_fs(fs, true)?;
    s.fs.device.begin_undo();
    let result = (|| {
        let pfs = s.pfs(None)?;
        s.mkdir(&pfs, "/io", attrs(0o755), false)?;
        for (i, size) in [100usize, 70_000, 200_000].into_iter().enumerate() {
            let body = common::content(40 + i as u64, size);
            s.create_file(&pfs, &format!("/io/f{i}"), attrs(0o644), &body[..], size as u64)?;
        }
        s.commit().map(|_| ())
    })();
    if result.is_err() {
        s.fs.device.rollback()?;
    } else {
        s.fs.device.end_undo();
    }
    result
}

fn mirror_tid(spec: &str) -> u64 {
    Hammer2::open_path(spec).unwrap().voldata.mirror_tid.get()
}

/// EIO and ENOSPC injected at every write and barrier of a run (its data
/// blocks, the commit's nodes and freemap, the header and the barriers
/// around it), and at reads of the run: the run stops at once with an
/// error naming the volume (and the offset, where one applies), nothing
/// more is written, and the image reopens at the previous commit (or,
/// when only a barrier after the header failed, at the new one), clean.
#[test]
fn io_errors_in_a_commit_stop_the_run_and_keep_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = common::scratch_copy("small-iscsi", dir.path());
    let base_tid = mirror_tid(pristine.to_str().unwrap());
    // A clean run first: how many writes, barriers and reads it makes.
    let probe = dir.path().join("probe.img");
    common::copy_sparse(&pristine, &probe);
    let plan = Arc::new(Mutex::new(Plan::default()));
    faulty_run(&probe, &plan).unwrap();
    let (ops, reads, header_ops) = {
        let p = plan.lock().unwrap();
        (p.ops, p.reads, p.header_ops.clone())
    };
    assert_eq!(mirror_tid(probe.to_str().unwrap()), base_tid + 1);
    assert!(!header_ops.is_empty() && ops > header_ops[0], "{ops} ops, headers at {header_ops:?}");
    eprintln!("a clean run: {ops} writes and barriers (header write at {header_ops:?}), {reads} reads");

    let img = dir.path().join("run.img");
    let mut cases = Vec::new();
    for errno in [libc::EIO, libc::ENOSPC] {
        cases.extend((0..ops).map(|k| (errno, Some(k), None)));
        cases.extend((0..reads).step_by(reads.div_ceil(8).max(1)).map(|k| (errno, None, Some(k))));
    }
    let mut new_state = 0;
    for (errno, fail_op, fail_read) in cases {
        common::copy_sparse(&pristine, &img);
        let spec = img.to_str().unwrap();
        let plan = Arc::new(Mutex::new(Plan { fail_op, fail_read, errno, ..Plan::default() }));
        let what = format!("errno {errno}, op {fail_op:?}, read {fail_read:?}");
        let e = faulty_run(&img, &plan).expect_err(&what);
        let p = plan.lock().unwrap();
        let (op, off) = p.failed_at.unwrap_or_else(|| panic!("{what}: the fault was not reached: {e}"));
        let msg = e.to_string();
        assert!(matches!(e, Error::Io { .. }), "{what}: {msg}");
        assert!(msg.starts_with(&format!("{spec}: {op} failed")), "{what}: {msg}");
        if off != 0 {
            assert!(msg.contains(&format!("at offset {off:#x}")), "{what}: {msg}");
        }
        let errtext = std::io::Error::from_raw_os_error(errno).to_string();
        assert!(msg.contains(&errtext), "{what}: {msg}");
        assert_eq!(p.after, 0, "{what}: {} writes or barriers after the error", p.after);
        let tid = mirror_tid(spec);
        let header_written = fail_op.is_some_and(|k| header_ops.iter().any(|&h| h < k));
        if header_written {
            assert!(tid == base_tid || tid == base_tid + 1, "{what}: mirror_tid {tid:#x}");
            new_state += usize::from(tid == base_tid + 1);
        } else {
            assert_eq!(tid, base_tid, "{what}: the image does not reopen at the previous commit");
        }
        fsck_clean(spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    eprintln!("every fault stopped its run; {new_state} faults after the header write left the new commit");
}

/// The stop itself, at the device layer: after one failed write, every
/// later write (also through a volume directly, as the header write goes),
/// barrier and rollback is refused or writes nothing.
#[test]
fn a_failed_write_stops_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::scratch_copy("small-iscsi", dir.path());
    let plan = Arc::new(Mutex::new(Plan { fail_op: Some(0), errno: libc::EIO, ..Plan::default() }));
    let inner = MmapBackend::open(&img, Access::ReadWrite).unwrap();
    let vol: Box<dyn Backend> = Box::new(Faulty { inner, plan: plan.clone() });
    let mut fs = Hammer2::open(Device::from_backends(vec![vol]), hammer2::CopyChoice::Best).unwrap();
    fs.device.begin_undo();
    let free = 1u64 << 30; // inside the image, past anything the fixture uses
    let e = fs.device.write(free, &[1; 1024]).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    let again = fs.device.write(free + 4096, &[2; 1024]).unwrap_err();
    assert!(matches!(again, Error::Stopped { .. }), "{again}");
    assert!(again.to_string().contains("writes stopped after an I/O error"), "{again}");
    assert!(matches!(fs.device.sync(), Err(Error::Stopped { .. })));
    assert!(matches!(fs.device.volume_mut(0).write(0, &[0; 16]), Err(Error::Stopped { .. })));
    fs.device.rollback().unwrap();
    assert_eq!(plan.lock().unwrap().after, 0);
    assert!(fs.device.fault().is_some());
}
