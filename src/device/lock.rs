//! Volume locks: two tools on one image at once must never corrupt it.
//!
//! Every volume a process opens is opened here, once, and locked on that
//! open file description for as long as anything in the process uses it:
//! a shared lock to read, an exclusive one to write. The locks are
//! open-file-description locks (`F_OFD_SETLK`, whole file), which the
//! kernel drops when the last descriptor of the description closes, so a
//! process killed with SIGKILL leaves nothing stale; they are the locks
//! QEMU takes on image files, so a virtual machine running an image and a
//! writer here refuse each other too. A block device opened for writing
//! is also opened with `O_EXCL`, as mkfs and e2fsck do: the kernel then
//! refuses it while it is mounted or another process holds it open
//! exclusively.
//!
//! Locks belong to processes, not to the [`Device`](super::Device)s of one
//! process: a process that opens the same volume again (fsck reopens it
//! per header copy) gets the description it already holds. A run keeps
//! its lock between such opens by holding a [`VolumeLock`] for its whole
//! length ([`hold`]); that is also where it says how long to wait.
//!
//! A volume set is locked volume by volume in one order (by device and
//! inode number), so two runs that wait for each other's volumes cannot
//! deadlock.

use super::{check_file_type, mounted_at, Access};
use crate::error::{Error, Holder, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// What to do when another process holds a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Fail at once.
    #[default]
    No,
    /// Wait until the volume is free.
    Forever,
    /// Wait at most this long, then fail.
    For(Duration),
}

impl std::str::FromStr for Wait {
    type Err = String;
    /// `SECONDS` (a number, fractions allowed) or `forever` (an empty value too).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() || s == "forever" {
            return Ok(Wait::Forever);
        }
        let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds (or 'forever')"))?;
        Duration::try_from_secs_f64(secs)
            .map(Wait::For)
            .map_err(|_| format!("'{s}' is not a number of seconds (or 'forever')"))
    }
}

/// A volume's identity: locks and the lock order go by it, not by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// One volume, open and locked (shared for reading, exclusive for writing).
pub struct LockedFile {
    file: File,
    path: PathBuf,
    id: FileId,
    exclusive: bool,
    /// For a loop device: its backing image file, locked the same way, so
    /// that a run on the image and a run on the loop device see each other.
    _backing: Option<Arc<LockedFile>>,
}

impl LockedFile {
    /// The open file description the lock is held on.
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// True when held exclusively (open for writing).
    pub fn exclusive(&self) -> bool {
        self.exclusive
    }
}

impl std::fmt::Debug for LockedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedFile").field("path", &self.path).field("exclusive", &self.exclusive).finish()
    }
}

/// The volumes this process holds, by identity. Entries whose last user
/// is gone are pruned as new ones come.
static HELD: Mutex<Vec<(FileId, Weak<LockedFile>)>> = Mutex::new(Vec::new());

/// The volumes of a run, locked for as long as this lives: every
/// [`Device`](super::Device) the run opens on them in between uses these
/// locks (and their open files) instead of taking new ones.
#[derive(Debug)]
pub struct VolumeLock {
    files: Vec<Arc<LockedFile>>,
}

impl VolumeLock {
    pub fn files(&self) -> &[Arc<LockedFile>] {
        &self.files
    }
}

/// Locks every volume of `spec` (`a.img:b.img`) for a run: shared for
/// [`Access::ReadOnly`], exclusive for [`Access::ReadWrite`].
pub fn hold(spec: &str, access: Access, wait: Wait) -> Result<VolumeLock> {
    let paths = super::split_device_spec(spec);
    if paths.is_empty() {
        return Err(Error::InvalidArgument(format!("no device in {spec:?}")));
    }
    hold_paths(&paths, access, wait)
}

/// [`hold`] for volumes named one by one.
pub fn hold_paths(paths: &[PathBuf], access: Access, wait: Wait) -> Result<VolumeLock> {
    Ok(VolumeLock { files: lock_paths(paths, access, wait)? })
}

/// Creates the image file `path` (it must not exist) and locks it
/// exclusively before anything is written to it.
pub fn create_new(path: &Path) -> Result<Arc<LockedFile>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::Open { path: path.to_path_buf(), why: format!("cannot create: {e}") })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Open { path: path.to_path_buf(), why: format!("cannot stat: {e}") })?;
    let locked =
        LockedFile { file, path: path.to_path_buf(), id: FileId::of(&meta), exclusive: true, _backing: None };
    let deadline = Deadline::new(Wait::No);
    lock_file(&locked, &deadline)?;
    Ok(register(locked))
}

/// Opens and locks `paths` (in the order given; locked in identity
/// order), reusing what this process already holds.
pub(super) fn lock_paths(paths: &[PathBuf], access: Access, wait: Wait) -> Result<Vec<Arc<LockedFile>>> {
    let exclusive = access == Access::ReadWrite;
    let mut ids = Vec::with_capacity(paths.len());
    for p in paths {
        let open_err = |why: String| Error::Open { path: p.to_path_buf(), why };
        // Checked before opening: opening a FIFO would wait for a writer.
        let meta = std::fs::metadata(p).map_err(|e| open_err(format!("cannot open: {e}")))?;
        check_file_type(&meta).map_err(open_err)?;
        if exclusive {
            if let Some(mountpoint) = mounted_at(p) {
                return Err(Error::Mounted { path: p.to_path_buf(), mountpoint });
            }
        }
        ids.push(FileId::of(&meta));
    }
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let deadline = Deadline::new(wait);
    let mut got: Vec<Option<Arc<LockedFile>>> = vec![None; paths.len()];
    for i in order {
        // A volume named twice in one set is the same lock.
        if let Some(same) = (0..paths.len()).find(|&j| j != i && ids[j] == ids[i] && got[j].is_some()) {
            got[i] = got[same].clone();
            continue;
        }
        got[i] = Some(lock_one(&paths[i], ids[i], exclusive, &deadline)?);
    }
    Ok(got.into_iter().map(|g| g.expect("every index locked above")).collect())
}

fn held(id: FileId) -> Option<Arc<LockedFile>> {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.iter().find(|(i, _)| *i == id).and_then(|(_, w)| w.upgrade())
}

fn register(locked: LockedFile) -> Arc<LockedFile> {
    let locked = Arc::new(locked);
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.retain(|(i, w)| w.strong_count() > 0 && *i != locked.id);
    held.push((locked.id, Arc::downgrade(&locked)));
    locked
}

fn lock_one(path: &Path, id: FileId, exclusive: bool, deadline: &Deadline) -> Result<Arc<LockedFile>> {
    if let Some(h) = held(id) {
        if h.exclusive || !exclusive {
            return Ok(h);
        }
        // The shared lock cannot become exclusive on its read-only
        // description, and a second description's lock would conflict
        // with it.
        return Err(Error::Open {
            path: path.to_path_buf(),
            why: "already open read-only in this process; close it before opening it for writing".into(),
        });
    }
    let file = open_volume(path, exclusive, deadline)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Open { path: path.to_path_buf(), why: format!("cannot stat: {e}") })?;
    // The name may have been replaced in between: check what was opened.
    check_file_type(&meta).map_err(|why| Error::Open { path: path.to_path_buf(), why })?;
    if FileId::of(&meta) != id {
        return Err(Error::Open { path: path.to_path_buf(), why: "was replaced while being opened".into() });
    }
    let mut locked = LockedFile { file, path: path.to_path_buf(), id, exclusive, _backing: None };
    lock_file(&locked, deadline)?;
    if let Some(image) = loop_backing_file(&meta) {
        // Locked after the device: the image side never locks the device,
        // so waiting here cannot close a cycle.
        if let Ok(image_meta) = std::fs::metadata(&image) {
            if image_meta.is_file() {
                locked._backing = Some(lock_one(&image, FileId::of(&image_meta), exclusive, deadline)?);
            }
        }
    }
    Ok(register(locked))
}

/// The image file behind a loop device (from sysfs), if `meta` is one.
fn loop_backing_file(meta: &std::fs::Metadata) -> Option<PathBuf> {
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = format!("/sys/dev/block/{major}:{minor}/loop/backing_file");
    let name = std::fs::read_to_string(sys).ok()?;
    let name = name.trim_end_matches('\n');
    (!name.is_empty() && !name.ends_with(" (deleted)")).then(|| PathBuf::from(name))
}

/// Opens a volume: read-only to read; read-write to write, and then a
/// block device also with `O_EXCL` (waiting, as allowed, while another
/// process holds it that way).
fn open_volume(path: &Path, exclusive: bool, deadline: &Deadline) -> Result<File> {
    let open_err = |why: String| Error::Open { path: path.to_path_buf(), why };
    let block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    loop {
        let mut opts = OpenOptions::new();
        opts.read(true).write(exclusive);
        if exclusive && block {
            opts.custom_flags(libc::O_EXCL);
        }
        match opts.open(path) {
            Ok(f) => return Ok(f),
            Err(e) if exclusive && block && e.raw_os_error() == Some(libc::EBUSY) => {
                if let Some(mountpoint) = mounted_at(path) {
                    return Err(Error::Mounted { path: path.to_path_buf(), mountpoint });
                }
                if deadline.expired() {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        holder: std::fs::metadata(path).ok().and_then(|m| holder_of(FileId::of(&m))),
                        exclusive_open: true,
                        waited: deadline.waited(),
                    });
                }
                deadline.pause();
            }
            Err(e) => return Err(open_err(format!("cannot open: {e}"))),
        }
    }
}

/// Takes the whole-file OFD lock of `locked` (waiting as allowed).
fn lock_file(locked: &LockedFile, deadline: &Deadline) -> Result<()> {
    let mut tries = 0;
    loop {
        match ofd_lock(&locked.file, locked.exclusive) {
            Ok(true) => return Ok(()),
            Ok(false) if !deadline.expired() => deadline.pause(),
            Ok(false) => {
                let holder = holder_of(locked.id);
                // No holder found: it may have let go (and another run
                // taken the lock) while /proc was read; try again a few times.
                tries += 1;
                if holder.is_none() && tries < 5 {
                    continue;
                }
                return Err(Error::Locked {
                    path: locked.path.clone(),
                    holder,
                    exclusive_open: false,
                    waited: deadline.waited(),
                });
            }
            Err(source) => {
                return Err(Error::Io { path: locked.path.clone(), op: "lock", offset: 0, source });
            }
        }
    }
}

/// `F_OFD_SETLK` over the whole file: Ok(false) when another description
/// holds a conflicting lock.
fn ofd_lock(file: &File, exclusive: bool) -> std::io::Result<bool> {
    // SAFETY: an all-zero `flock` is a valid value (plain integers).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start 0, l_len 0: the whole file, however it grows; l_pid must be 0.
    // SAFETY: fcntl on a descriptor we own, with a pointer to a live flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl as *mut libc::flock) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// How long a run may still wait.
struct Deadline {
    start: Instant,
    wait: Wait,
}

impl Deadline {
    fn new(wait: Wait) -> Self {
        Deadline { start: Instant::now(), wait }
    }
    fn expired(&self) -> bool {
        match self.wait {
            Wait::No => true,
            Wait::Forever => false,
            Wait::For(d) => self.start.elapsed() >= d,
        }
    }
    /// How long was waited, for the message (None when not asked to).
    fn waited(&self) -> Option<Duration> {
        (self.wait != Wait::No).then(|| self.start.elapsed())
    }
    /// Sleeps a little before the next try (never past the deadline).
    fn pause(&self) {
        let step = Duration::from_millis(50);
        let left = match self.wait {
            Wait::For(d) => d.saturating_sub(self.start.elapsed()),
            _ => step,
        };
        std::thread::sleep(step.min(left).max(Duration::from_millis(1)));
    }
}

/// Which process holds a lock on `id`, when the system says: a lock line
/// of /proc/locks with a pid (flock and POSIX locks), else a process whose
/// open descriptor carries the lock (/proc/PID/fdinfo: OFD locks show pid
/// -1 in /proc/locks). Best effort: None when it cannot be told (no /proc,
/// another user's processes).
fn holder_of(id: FileId) -> Option<Holder> {
    let me = std::process::id();
    let matches = |line: &str| lock_line(line).filter(|(_, dev, ino)| *dev == id.dev && *ino == id.ino);
    if let Ok(locks) = std::fs::read_to_string("/proc/locks") {
        let holder = locks
            .lines()
            .filter_map(matches)
            .filter_map(|(pid, _, _)| u32::try_from(pid).ok().filter(|&p| p != me && p != 0))
            .find_map(Holder::alive);
        if holder.is_some() {
            return holder;
        }
    }
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fdinfo")) else { continue };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else { continue };
            if info.lines().filter_map(|l| l.strip_prefix("lock:")).any(|l| matches(l).is_some()) {
                // Gone already (it let go): keep looking.
                if let Some(h) = Holder::alive(pid) {
                    return Some(h);
                }
                break;
            }
        }
    }
    None
}

/// (pid, st_dev, inode) of a /proc/locks line such as
/// `1: OFDLCK ADVISORY  WRITE -1 fe:00:10010801 0 EOF` (a blocked
/// waiter's line, `1: -> FLOCK ...`, is no holder).
fn lock_line(line: &str) -> Option<(i64, u64, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) == Some(&"->") {
        return None;
    }
    let pid: i64 = fields.get(4)?.parse().ok()?;
    let mut parts = fields.get(5)?.split(':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let ino: u64 = parts.next()?.parse().ok()?;
    Some((pid, libc::makedev(major, minor), ino))
}

impl Holder {
    /// `pid` with its command name, or None when the process is gone
    /// (its /proc entry no longer reads).
    fn alive(pid: u32) -> Option<Holder> {
        let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string();
        Some(Holder { pid, command: Some(command) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_parse() {
        let (pid, dev, ino) = lock_line("1: OFDLCK ADVISORY  WRITE -1 fe:00:10010801 0 EOF").unwrap();
        assert_eq!((pid, dev, ino), (-1, libc::makedev(0xfe, 0), 10010801));
        let (pid, _, _) = lock_line("3: FLOCK  ADVISORY  READ 7091 08:01:133507 0 EOF").unwrap();
        assert_eq!(pid, 7091);
        assert!(lock_line("2: -> FLOCK  ADVISORY  WRITE 8573 fe:00:5472260 0 EOF").is_none());
    }

    #[test]
    fn wait_values() {
        assert_eq!("".parse::<Wait>(), Ok(Wait::Forever));
        assert_eq!("forever".parse::<Wait>(), Ok(Wait::Forever));
        assert_eq!("2.5".parse::<Wait>(), Ok(Wait::For(Duration::from_millis(2500))));
        assert!("-1".parse::<Wait>().is_err());
        assert!("soon".parse::<Wait>().is_err());
    }

    /// Readers share; a writer excludes readers and writers; one process
    /// reuses what it holds.
    #[test]
    fn shared_and_exclusive() {
        let dir = std::env::temp_dir().join(format!("hammer2-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("v.img");
        std::fs::write(&img, [0u8; 4096]).unwrap();
        let id = FileId::of(&std::fs::metadata(&img).unwrap());
        // A second description of the same file, as another process would hold.
        let other = File::open(&img).unwrap();
        assert!(ofd_lock(&other, false).unwrap(), "an unlocked file takes a shared lock");
        let r = hold(img.to_str().unwrap(), Access::ReadOnly, Wait::No).unwrap();
        let e = hold(img.to_str().unwrap(), Access::ReadWrite, Wait::No).unwrap_err();
        assert!(e.to_string().contains("already open read-only in this process"), "{e}");
        drop(r);
        assert!(held(id).is_none());
        let e = hold(img.to_str().unwrap(), Access::ReadWrite, Wait::No).unwrap_err();
        assert!(matches!(e, Error::Locked { exclusive_open: false, .. }), "{e}");
        drop(other);
        let w = hold(img.to_str().unwrap(), Access::ReadWrite, Wait::No).unwrap();
        let again = hold(img.to_str().unwrap(), Access::ReadOnly, Wait::No).unwrap();
        assert!(Arc::ptr_eq(&w.files()[0], &again.files()[0]), "the run's lock is reused");
        let probe = File::open(&img).unwrap();
        assert!(!ofd_lock(&probe, false).unwrap(), "a writer excludes readers");
        drop((w, again));
        assert!(ofd_lock(&probe, false).unwrap(), "released with the last user");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
