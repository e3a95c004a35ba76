//! Command line of hammer2_edit, and its command table (shared by the
//! command line, `-R` and scripts).

use clap::{Parser, Subcommand};

pub const EXAMPLES: &str = "\
Read commands:
  ls [-l] [-a] [PATH]           list a directory (default /)
  cat PATH                      write a file to standard output
  stat [--json] PATH            every field of an inode
  get [--force] PATH DEST       extract a file or tree into the host directory DEST
  pfs                           list the PFSs

Write commands (POSIX semantics):
  mkdir [-p] [-m MODE] PATH...  create directories (mode 0755 unless -m)
  put HOSTFILE PATH             copy a host file to PATH (or into directory PATH)
  rm [-d] [-r] [-f] PATH...     remove files, symlinks (-d: empty directories; -r: trees)
  rmdir PATH...                 remove empty directories
  mv [-T] SOURCE DEST           rename, across directories; into DEST if it is a
                                directory (unless -T); replaces a file by a file or an
                                empty directory by a directory, as rename(2)
  ln [-s] TARGET LINK           hard link (nlinks counts the names), or symbolic link
  chmod MODE PATH...            permission bits, in octal
  chown UID[:GID]|:GID PATH...  numeric owner and group
  touch [-a|-m] [-c] [-d TIME] PATH...
                                set times (now, or @SECONDS / YYYY-MM-DDTHH:MM:SS UTC);
                                creates missing files unless -c
  truncate -s SIZE PATH...      grow with a hole or shrink (blocks past the end freed)
  write PATH OFFSET [HOSTFILE]  overwrite bytes at OFFSET from HOSTFILE or stdin
  mknod [-m MODE] PATH TYPE [MAJOR MINOR]
                                c/b device node, p FIFO, s socket
  mkfifo [-m MODE] PATH...      FIFOs
  commit                        commit what came before (scripts)

Scripts (-f FILE, '-' for stdin; -c 'CMD; CMD'): one command per line or per ';',
'#' starts a comment, words are quoted as a shell quotes them; -v echoes each
command (scripts from -f always do).

All the write commands of one invocation are one transaction, committed at the
end (or at each `commit`). By default the first failing command stops the run
and nothing is written: the image stays byte-identical (what was already put
into free space is put back). Ctrl-C or SIGTERM stops the run at its next
block or command and undoes it the same way (exit status 130); a second one
quits at once, leaving the last committed state, fsck-clean (blocks already
written into free space then stay there, unreferenced). With --keep-going a failing command is undone,
the failures are counted (exit status 1) and the rest commits. Read commands
in a script see the changes of the commands before them (get and pfs-list
too), committed or not. The image is opened for writing only when a write
command is given. -n (--dry-run) runs everything, prints what would change and
writes nothing. After a commit, one line gives the transaction id, the header
copy written and the blocks written (-q: nothing; --json: a JSON object).
An image whose freemap lags its topology (freemap_tid < mirror_tid, left by a
crash or by a kernel flush that did not write the freemap) is accepted as a
mount accepts it: the blocks of the newer transactions are replayed into the
allocator (hammer2_recover's scan; a note on stderr says so) and the commit
also writes the repaired freemap (-n: says it would).
New entries belong to the invoking user; put keeps the host file's mode, owner
and mtime. Parent directories get new mtime and ctime when their entries change.

Paths are resolved from the PFS root: '.' and empty components are ignored
('/' and '.' name the root); a '..' component is refused.

get PATH DEST puts PATH into DEST under its own name (DEST/NAME); 'get / DEST'
puts the PFS root's contents into DEST itself. DEST is created if missing (its
parent must exist). What get would create (DEST for '/', DEST/NAME otherwise)
must not exist or be an empty directory, unless --force: then existing files
and symlinks are unlinked and created anew (never written through) and
existing directories are reused, as tar does. Nothing is written outside DEST;
names from the image that are '.', '..', empty or hold '/' or NUL, a directory
named twice or inside itself, are refused. Modes as tar: as root, the stored
mode, owner and group (setuid and setgid kept); otherwise the stored mode
minus the umask, setuid and setgid dropped.

Examples:
  hammer2_edit disk.img ls -l /                 list the root of the DATA PFS
  hammer2_edit --pfs ROOT disk.img cat /etc/rc.conf
  hammer2_edit disk.img get / ./out             extract the whole PFS into ./out
  hammer2_edit disk.img get /etc ./out          extract /etc as ./out/etc
  hammer2_edit disk.img get --force / ./out     extract again over ./out
  hammer2_edit -f cmds.txt disk.img             run a script, one command per line
  hammer2_edit disk.img mkdir -p /etc/rc.d      create a directory and its parents
  hammer2_edit disk.img put ./rc.conf /etc/     copy a host file into /etc
  hammer2_edit -n disk.img rm /etc/motd         show what removing would do
  hammer2_edit -f edits.txt disk.img            run a script of edits as one commit
  hammer2_edit -c 'mv /a /b; ln -s b /a' disk.img
                                                two commands, one commit
  hammer2_edit disk.img truncate -s 1G /var/swap  a 1 GiB file that is all hole
  printf 'v2' | hammer2_edit disk.img write /etc/version 0
                                                patch two bytes in place
  hammer2_edit --keep-going -f fixes.txt disk.img
                                                apply what works, count what fails";

#[derive(Parser)]
#[command(
    name = "hammer2_edit",
    version,
    about = "Read and edit a HAMMER2 file system offline, from the command line or a script",
    after_help = format!("{EXAMPLES}\n\n{}", crate::cli::edit_maint::MAINT_EXAMPLES)
)]
pub struct EditCli {
    /// PFS to work in (default: DATA, or the only PFS besides LOCAL)
    #[arg(long, value_name = "LABEL")]
    pub pfs: Option<String>,
    /// Use volume-header copy N instead of the best one (read commands only)
    #[arg(long, value_name = "N", value_parser = super::parse_copy)]
    pub copy: Option<usize>,
    /// Run every command but write nothing; print what would change
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print nothing after a commit or dry run (read commands still print)
    #[arg(short = 'q', long, conflicts_with = "json")]
    pub quiet: bool,
    /// After a commit or dry run, print its report as JSON
    #[arg(long)]
    pub json: bool,
    /// Run the commands in a string, separated by ';' or newlines (-R is the same)
    #[arg(short = 'c', short_alias = 'R', value_name = "COMMANDS", conflicts_with_all = ["script", "command"])]
    pub request: Option<String>,
    /// Run the commands in FILE (one per line or ';'; '#' starts a comment; '-' reads stdin)
    #[arg(short = 'f', value_name = "FILE", conflicts_with = "command")]
    pub script: Option<String>,
    /// Echo each command on stderr before it runs (scripts always do)
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// A failing write command is undone and counted, the others still commit (exit status 1)
    #[arg(long)]
    pub keep_going: bool,
    /// Debugging and tests: after the commit, put the freemap of the previous header copy back
    /// (freemap_tid one transaction behind), the crash window hammer2_recover (and any write) repairs
    #[arg(long, hide = true)]
    pub debug_lag_freemap: bool,
    #[command(flatten)]
    pub wait: super::WaitArg,
    /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
    pub device: String,
    /// A command and its arguments (see COMMANDS)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// One command of the table.
#[derive(Parser, Debug)]
#[command(
    name = "hammer2_edit",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct EditLine {
    #[command(subcommand)]
    pub cmd: EditCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum EditCommand {
    /// List a directory (or show one file)
    Ls {
        /// Long listing: mode, links, owner, size, time, name
        #[arg(short = 'l')]
        long: bool,
        /// Show entries whose name starts with '.'
        #[arg(short = 'a')]
        all: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Write a file's contents to standard output
    Cat { path: String },
    /// Show every field of an inode (as hammer2_dump inode does)
    Stat {
        /// Print JSON
        #[arg(long)]
        json: bool,
        path: String,
    },
    /// Extract a file or a tree into a host directory (modes, times, symlinks, hard links)
    Get {
        /// Extract over an existing destination: replace files and symlinks, reuse directories
        #[arg(long)]
        force: bool,
        /// Path inside the PFS ('/' for everything)
        path: String,
        /// Host directory to extract into (created if missing)
        #[arg(value_name = "DEST")]
        hostdir: String,
    },
    /// List the PFSs (the short name of pfs-list)
    Pfs {
        /// A JSON array instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Create directories (mode 0755 unless -m, owned by the invoking user)
    Mkdir {
        /// Create missing parents; an existing directory is fine
        #[arg(short = 'p')]
        parents: bool,
        /// Mode in octal (e.g. 700, 1777)
        #[arg(short = 'm', value_name = "MODE", value_parser = parse_mode)]
        mode: Option<u32>,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Copy a host file (-r: a whole tree) into the image: modes, owners, times, symlinks,
    /// hard links within the tree, device nodes and FIFOs; sparse files keep their holes
    Put {
        /// Copy directories and everything below them
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// File, symbolic link, special file or (with -r) directory on the host
        #[arg(value_name = "HOSTPATH")]
        host: String,
        /// Path of the new object; an existing directory (or a path ending in '/') receives HOSTPATH's name
        path: String,
    },
    /// Remove files and symbolic links (-r: whole trees)
    Rm {
        /// Remove empty directories too
        #[arg(short = 'd')]
        dirs: bool,
        /// Remove directories and everything below them
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// Ignore paths that do not exist
        #[arg(short = 'f')]
        force: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Remove empty directories
    Rmdir {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Rename or move, as mv(1): into DEST when it is a directory, else to DEST
    /// (replacing a file by a file or an empty directory by a directory, as rename(2))
    Mv {
        /// Treat DEST as the new name even when it is a directory (rename(2))
        #[arg(short = 'T')]
        no_target_directory: bool,
        #[arg(value_name = "SOURCE")]
        from: String,
        #[arg(value_name = "DEST")]
        to: String,
    },
    /// Make a hard link (-s: a symbolic link) named LINK to TARGET
    Ln {
        /// Make a symbolic link holding TARGET as text
        #[arg(short = 's')]
        symbolic: bool,
        #[arg(value_name = "TARGET")]
        target: String,
        /// The new name; an existing directory receives TARGET's name
        #[arg(value_name = "LINK")]
        link: String,
    },
    /// Change permission bits (octal)
    Chmod {
        #[arg(value_name = "MODE", value_parser = parse_mode)]
        mode: u32,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Change owner and group (numeric ids: UID, UID:GID or :GID), stored as HAMMER2's id UUIDs
    Chown {
        #[arg(value_name = "OWNER", value_parser = parse_owner)]
        owner: Owner,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Set access and modification times (to now unless -d); create missing files
    Touch {
        /// Change only the access time
        #[arg(short = 'a')]
        atime: bool,
        /// Change only the modification time
        #[arg(short = 'm')]
        mtime: bool,
        /// Do not create missing files
        #[arg(short = 'c')]
        no_create: bool,
        /// The time: @SECONDS[.FRACTION] or YYYY-MM-DD[THH:MM[:SS[.FRACTION]]] (UTC)
        #[arg(short = 'd', value_name = "TIME", value_parser = parse_time)]
        date: Option<u64>,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Set a file's size: growing leaves a hole, shrinking frees the blocks past the end
    Truncate {
        /// New size in bytes (K, M, G suffixes: powers of 1024)
        #[arg(short = 's', value_name = "SIZE", value_parser = parse_size)]
        size: u64,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Overwrite bytes of an existing file at OFFSET with HOSTFILE (or standard input)
    Write {
        path: String,
        /// Byte offset (K, M, G suffixes: powers of 1024); past the end grows the file with a hole
        #[arg(value_parser = parse_size)]
        offset: u64,
        /// Host file to copy from ('-' or nothing: standard input)
        #[arg(value_name = "HOSTFILE")]
        host: Option<String>,
    },
    /// Make a device node (c or b with MAJOR and MINOR), a FIFO (p) or a socket (s)
    Mknod {
        /// Mode in octal (0644 unless given)
        #[arg(short = 'm', value_name = "MODE", value_parser = parse_mode)]
        mode: Option<u32>,
        path: String,
        /// c (character device), b (block device), p (FIFO), s (socket)
        #[arg(value_name = "TYPE", value_parser = ["c", "u", "b", "p", "s"])]
        kind: String,
        major: Option<u32>,
        minor: Option<u32>,
    },
    /// Make FIFOs
    Mkfifo {
        /// Mode in octal (0644 unless given)
        #[arg(short = 'm', value_name = "MODE", value_parser = parse_mode)]
        mode: Option<u32>,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Commit what the commands before it changed, as one transaction (scripts)
    Commit,
    #[command(flatten)]
    Maint(crate::cli::edit_maint::MaintCommand),
}

/// A `chown` owner: either id may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl EditCommand {
    /// True for the commands that change the image.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            EditCommand::Mkdir { .. }
                | EditCommand::Put { .. }
                | EditCommand::Rm { .. }
                | EditCommand::Rmdir { .. }
                | EditCommand::Mv { .. }
                | EditCommand::Ln { .. }
                | EditCommand::Chmod { .. }
                | EditCommand::Chown { .. }
                | EditCommand::Touch { .. }
                | EditCommand::Truncate { .. }
                | EditCommand::Write { .. }
                | EditCommand::Mknod { .. }
                | EditCommand::Mkfifo { .. }
                | EditCommand::Commit
        ) || matches!(self, EditCommand::Maint(m) if m.writes())
    }
}

/// An octal mode of at most 07777.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(s, 8) {
        Ok(m) if digits && m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode (0 to 7777)")),
    }
}

/// `UID`, `UID:GID`, `:GID` or `UID:` (numeric).
fn parse_owner(s: &str) -> Result<Owner, String> {
    let id = |t: &str| -> Result<Option<u32>, String> {
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u32>().map(Some).map_err(|_| format!("{t:?} is not a numeric id"))
    };
    let (u, g) = s.split_once(':').unwrap_or((s, ""));
    let owner = Owner { uid: id(u)?, gid: id(g)? };
    if owner.uid.is_none() && owner.gid.is_none() {
        return Err(format!("{s:?} names no id (UID, UID:GID or :GID)"));
    }
    Ok(owner)
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("{s:?} is not a size (a number with an optional K, M, G or T)"))
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds and an optional fraction (`12.5`) as microseconds.
fn parse_secs(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let us = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse::<u64>().ok()? };
    whole.parse::<u64>().ok()?.checked_mul(1_000_000)?.checked_add(us)
}

/// `@SECONDS[.FRACTION]` or `YYYY-MM-DD[THH:MM[:SS[.FRACTION]]][Z]` (UTC)
/// as microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a time (@SECONDS or YYYY-MM-DD[THH:MM[:SS]], UTC)");
    if let Some(secs) = s.strip_prefix('@') {
        return parse_secs(secs).ok_or_else(bad);
    }
    let t = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00"));
    let num = |p: &str, lo: i64, hi: i64| p.parse::<i64>().ok().filter(|n| (lo..=hi).contains(n));
    let dp: Vec<&str> = date.split('-').collect();
    let tp: Vec<&str> = time.split(':').collect();
    let (&[y, mo, d], 2..=3) = (dp.as_slice(), tp.len()) else { return Err(bad()) };
    let (y, mo, d) = (
        num(y, 1970, 9999).ok_or_else(bad)?,
        num(mo, 1, 12).ok_or_else(bad)?,
        num(d, 1, 31).ok_or_else(bad)?,
    );
    let (h, mi) = (num(tp[0], 0, 23).ok_or_else(bad)?, num(tp[1], 0, 59).ok_or_else(bad)?);
    let sec_us = match tp.get(2) {
        Some(sec) => parse_secs(sec).filter(|&us| us < 60_000_000).ok_or_else(bad)?,
        None => 0,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60;
    Ok(secs as u64 * 1_000_000 + sec_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sizes_owners() {
        assert_eq!(parse_time("@0"), Ok(0));
        assert_eq!(parse_time("@12.5"), Ok(12_500_000));
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400_000_000));
        assert_eq!(
            crate::format::time::iso8601(parse_time("2026-11-20T21:48:33.25Z").unwrap()),
            "2026-11-20T21:48:33.250000Z"
        );
        assert!(parse_time("2026-13-01").is_err() && parse_time("yesterday").is_err());
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("3"), Ok(3));
        assert!(parse_size("1Q").is_err() && parse_size("").is_err());
        assert_eq!(parse_owner("5:6"), Ok(Owner { uid: Some(5), gid: Some(6) }));
        assert_eq!(parse_owner(":6"), Ok(Owner { uid: None, gid: Some(6) }));
        assert!(parse_owner(":").is_err() && parse_owner("root").is_err());
    }
}
