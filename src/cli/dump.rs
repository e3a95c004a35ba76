//! Command line of hammer2_dump.

use clap::{Parser, Subcommand};

pub const EXAMPLES: &str = "\
Examples:
  hammer2_dump volhdr disk.img              every header copy, side by side
  hammer2_dump volhdr --json a.img:b.img    a two-volume set, for scripts";

#[derive(Parser)]
#[command(name = "hammer2_dump", version, about = "Dump HAMMER2 on-disk structures", after_help = EXAMPLES)]
pub struct DumpCli {
    #[command(subcommand)]
    pub command: DumpCommand,
}

#[derive(Subcommand)]
pub enum DumpCommand {
    /// Show every volume-header copy: fields, CRC status, and the copy in use
    #[command(after_help = "A copy is in use when it is valid and has the highest mirror_tid.\n\
Copies that are valid but older are normal: writers update one copy per commit.")]
    Volhdr {
        /// Device or image; a multi-volume set as vol0:vol1:...
        device: String,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
    },
}
