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

Write commands:
  mkdir [-p] [-m MODE] PATH...  create directories (mode 0755 unless -m)
  put HOSTFILE PATH             copy a host file to PATH (or into directory PATH)
  rm [-d] PATH...               remove files, symlinks (-d: empty directories)
  rmdir PATH...                 remove empty directories

All the write commands of one invocation (argv, -R or a -f script) are one
transaction: they are checked first, then applied and committed together at
the end. If any command fails, nothing is written and the image stays
byte-identical. The image is opened for writing only when a write command is
given. Read commands in a script that writes show the image as it was before
the invocation, not the script's earlier changes. -n (--dry-run) runs
everything, prints what would change and writes nothing. After a commit, one
line gives the transaction id, the header copy written and the blocks written
(-q: nothing; --json: a JSON object). New directories and files belong to the
invoking user; put keeps the host file's mode, owner and mtime.

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
  hammer2_edit -f edits.txt disk.img            run a script of edits as one commit";

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
    #[arg(long, value_name = "N")]
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
    /// Run one command given as a string
    #[arg(short = 'R', value_name = "COMMAND", conflicts_with_all = ["script", "command"])]
    pub request: Option<String>,
    /// Run the commands in FILE (one per line; '#' starts a comment; '-' reads stdin)
    #[arg(short = 'f', value_name = "FILE", conflicts_with = "command")]
    pub script: Option<String>,
    /// Debugging and tests: after the commit, put the freemap of the previous header copy back
    /// (freemap_tid one transaction behind), the crash window hammer2_recover repairs
    #[arg(long, hide = true)]
    pub debug_lag_freemap: bool,
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
    /// List the PFSs
    Pfs,
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
    /// Copy a host regular file into the image (mode, owner and mtime kept)
    Put {
        /// Regular file on the host
        #[arg(value_name = "HOSTFILE")]
        host: String,
        /// Path of the new file; an existing directory (or a path ending in '/') receives HOSTFILE's name
        path: String,
    },
    /// Remove files and symbolic links
    Rm {
        /// Remove empty directories too
        #[arg(short = 'd')]
        dirs: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Remove empty directories
    Rmdir {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    #[command(flatten)]
    Maint(crate::cli::edit_maint::MaintCommand),
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
