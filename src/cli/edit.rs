//! Command line of hammer2_edit, and its command table (shared by the
//! command line, `-R` and scripts).

use clap::{Parser, Subcommand};

pub const EXAMPLES: &str = "\
Commands:
  ls [-l] [-a] [PATH]      list a directory (default /)
  cat PATH                 write a file to standard output
  stat [--json] PATH       every field of an inode
  get PATH HOSTDIR         extract a file or tree into HOSTDIR
  pfs                      list the PFSs

Examples:
  hammer2_edit disk.img ls -l /                 list the root of the DATA PFS
  hammer2_edit --pfs ROOT disk.img cat /etc/rc.conf
  hammer2_edit disk.img get / ./out             extract the whole PFS into ./out
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
    /// Device or image; a multi-volume set as vol0:vol1:...
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
    Get { path: String, hostdir: String },
    /// List the PFSs
    Pfs,
}
