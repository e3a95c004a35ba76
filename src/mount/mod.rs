//! `hammer2_mount`: a PFS mounted through FUSE.
//!
//! Read-only (the default), requests are served from the committed image
//! through [`FsView`](crate::read::view::FsView) on the committed tree,
//! by as many threads as the machine has cores; the volume lock is held
//! shared for the life of the mount, so no writer can change the image
//! under it, and the kernel is told to keep what it cached (long entry and
//! attribute lifetimes, kept page cache).
//!
//! Read-write (`-o rw`), requests go to one write
//! [`Session`](crate::write::session::Session) held under a mutex, with the
//! volume lock held exclusive; a flusher thread commits every `commit=`
//! seconds and whenever `dirty=` bytes were written since the last
//! commit; `fsync` and the unmount commit too. What a crash loses is what
//! was not yet committed: the last commit is a complete, consistent file
//! system (the write engine's copy-on-write contract). After a failed
//! commit the mount turns read-only and says so through the log.
//!
//! A file whose last name is removed while it is open lives on, with no
//! links, until its last close (the session pins open inodes); a commit
//! in between stores it that way, as the kernel's HAMMER2 does.
//!
//! Not done (yet): an operation that fails half-way
//! (damage met after it changed chains) poisons the session, so the next
//! commit fails and the mount turns read-only rather than commit half an
//! operation.
//!
//! Damage met while serving a request is answered with EIO and logged
//! with its location; the mount stays up.
//!
//! The library never prints: the caller passes a [`Log`].

mod attr;
mod fs;
mod options;

pub use attr::{attr_of, errno, file_type, InodeMap};
pub use fs::Hammer2Fs;
pub use options::{split_target, MountOptions, DEFAULT_COMMIT, DEFAULT_DIRTY};

use crate::device::lock::{self, Wait};
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::volume::{CopyChoice, Hammer2};
use std::path::Path;
use std::sync::Arc;

/// Where a mount's messages go (damage met, commits that failed, the
/// switch to read-only).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// What to mount and how.
pub struct MountRequest<'a> {
    /// Device or image (`a.img:b.img` for a volume set).
    pub device: &'a str,
    /// PFS label (None: DATA, or the only PFS other than LOCAL).
    pub pfs: Option<&'a str>,
    pub mountpoint: &'a Path,
    pub options: MountOptions,
    /// How long to wait for another run holding the device.
    pub wait: Wait,
    pub log: Log,
}

/// Mounts, calls `ready` once the kernel has the mount, and serves
/// requests until it is unmounted (`fusermount3 -u`, `umount`); a
/// read-write mount then commits what is left.
pub fn mount(req: MountRequest<'_>, ready: impl FnOnce()) -> Result<()> {
    let access = if req.options.write { Access::ReadWrite } else { Access::ReadOnly };
    // Held for the whole mount: shared to read, exclusive to write.
    let _held = lock::hold(req.device, access, req.wait)?;
    let fs = Hammer2::open(Device::open(req.device, access)?, CopyChoice::Best)?;
    let filesystem = Hammer2Fs::new(fs, req.pfs, &req.options, req.log.clone())?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(req.device.to_string()),
        fuser::MountOption::Subtype("hammer2".into()),
        fuser::MountOption::DefaultPermissions,
        if req.options.write { fuser::MountOption::RW } else { fuser::MountOption::RO },
    ];
    config.acl = if req.options.allow_other {
        fuser::SessionACL::All
    } else if req.options.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16));
    let io = |op: &'static str| {
        move |source| Error::Io { path: req.mountpoint.to_path_buf(), op, offset: 0, source }
    };
    let session = fuser::Session::new(filesystem, req.mountpoint, &config).map_err(io("mount"))?;
    ready();
    session.run().map_err(io("serve"))
}

/// Detaches the process from its terminal as a daemon: forks, and the
/// parent waits for the child's word (through a pipe) that the mount is
/// up, then exits with 0, or with 1 if the child failed before (its
/// message is on the inherited stderr). Returns, in the child, the call
/// that gives that word and detaches the standard descriptors (log
/// through [`syslog_log`] from then on). Call it before any thread is started.
pub fn daemonize() -> Result<impl FnOnce()> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("pipe"));
    }
    // SAFETY: the process has one thread here (the caller's promise), so
    // the child may go on running Rust code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_error("fork"));
    }
    if pid > 0 {
        // The parent: wait for one byte (the mount is up) or end of file
        // (the child exited first).
        let mut b = [0u8; 1];
        // SAFETY: closing our copy of the write end; reading into a local buffer.
        let n = unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], b.as_mut_ptr().cast(), 1)
        };
        std::process::exit(if n == 1 { 0 } else { 1 });
    }
    // SAFETY: closing the read end the child does not use; setsid has no
    // preconditions (it fails only for a group leader, which a fresh child is not).
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    let w = fds[1];
    Ok(move || {
        // SAFETY: `w` is the pipe's write end, owned by this closure; the
        // standard descriptors go to /dev/null (a caller waiting for them
        // to close, as a shell's `$(...)` does, is not held up by the daemon).
        unsafe {
            libc::write(w, [1u8].as_ptr().cast(), 1);
            libc::close(w);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    })
}

/// Unmounts `mountpoint` through `fusermount3 -u` (what a user runs).
pub fn unmount(mountpoint: &Path) -> Result<()> {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .output()
        .map_err(|source| Error::Io { path: "fusermount3".into(), op: "run", offset: 0, source })?;
    if !out.status.success() {
        return Err(Error::invalid(format!(
            "fusermount3 -u {}: {}",
            mountpoint.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A [`Log`] to the system log (facility daemon), for a daemon whose
/// standard error is gone.
pub fn syslog_log() -> Log {
    // SAFETY: the identifier is a static C string, as openlog keeps the pointer.
    unsafe { libc::openlog(c"hammer2_mount".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    Arc::new(|msg: &str| {
        let line = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: a constant format string with one C string argument.
        unsafe { libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), line.as_ptr()) };
    })
}

fn os_error(op: &'static str) -> Error {
    Error::Io { path: "(process)".into(), op, offset: 0, source: std::io::Error::last_os_error() }
}
