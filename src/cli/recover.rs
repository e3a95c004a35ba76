//! Command line of hammer2_recover.

use clap::Parser;

pub const EXAMPLES: &str = "\
When a HAMMER2 file system was not unmounted cleanly, its freemap may lag the
topology by one flush (freemap_tid < mirror_tid): blocks of the last committed
transactions are in use but may be marked free. A read-write mount repairs
this (DragonFly's hammer2_recovery); hammer2_recover does the same offline,
and also moves each segment's packing offset past the blocks it recovers.
The writing tools (hammer2_edit) run the same replay in memory when they open
such an image and write the repaired freemap with their first commit, so
running hammer2_recover before them is not needed.

Examples:
  hammer2_recover disk.img            recover if needed (prints 'no recovery needed' otherwise)
  hammer2_recover -n -v disk.img      show what would be marked, per PFS; write nothing
  hammer2_recover --json vol0.img:vol1.img

Exit status: 0 the freemap is consistent (recovered, or nothing to do),
1 failure (nothing written), 2 usage error.";

#[derive(Parser)]
#[command(
    name = "hammer2_recover",
    version,
    about = "Replay the freemap recovery of a HAMMER2 mount, offline",
    after_help = EXAMPLES
)]
pub struct RecoverCli {
    /// Scan and report what would be marked; write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Also report per PFS, and how many blockrefs were examined and read
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Mark every block the topology reaches, not only those newer than the freemap (repairs allocations the freemap lost before its last flush; reads the whole tree)
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub wait: super::WaitArg,
    /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
    pub device: String,
}
