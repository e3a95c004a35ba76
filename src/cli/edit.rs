//! Command line of hammer2_edit, and its command table (shared by the
//! command line, `-R` and scripts).

use clap::{Parser, Subcommand};

pub const EXAMPLES: &str = "\
Commands:
  ls [-l] [-a] [PATH]      list a directory (default /)
  cat PATH                 write a file to standard output
  stat [--json] PATH       every field of an inode
  get [--force] PATH DEST  extract a file or tree into the host directory DEST
  pfs                      list the PFSs

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
  hammer2_edit -f cmds.txt disk.img             run a script, one command per line";

#[derive(Parser)]
#[command(
    name = "hammer2_edit",
    version,
    about = "Read and edit a HAMMER2 file system offline, from the command line or a script",
    after_help = EXAMPLES
)]
pub struct EditCli {
    /// PFS to work in (default: DATA, or the only PFS besides LOCAL)
    #[arg(long, value_name = "LABEL")]
    pub pfs: Option<String>,
    /// Use volume-header copy N instead of the best one
    #[arg(long, value_name = "N")]
    pub copy: Option<usize>,
    /// Run one command given as a string
    #[arg(short = 'R', value_name = "COMMAND", conflicts_with_all = ["script", "command"])]
    pub request: Option<String>,
    /// Run the commands in FILE (one per line; '#' starts a comment; '-' reads stdin)
    #[arg(short = 'f', value_name = "FILE", conflicts_with = "command")]
    pub script: Option<String>,
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

#[derive(Subcommand, Debug)]
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
}
