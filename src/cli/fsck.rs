//! Command line of fsck_hammer2.

use clap::Parser;

pub const EXAMPLES: &str = "\
Examples:
  fsck_hammer2 disk.img               check, change nothing (same as -n)
  fsck_hammer2 -p disk.img            repair what needs no decision (damaged header copies)
  fsck_hammer2 -y --sync-headers a.img:b.img
                                      repair everything possible, refresh older header copies
  fsck_hammer2 -y --use-copy 2 disk.img
                                      make header copy #2's tree current (later transactions lost)

Exit status (fsck(8)): 0 clean, 1 errors corrected, 4 errors left uncorrected,
8 operational error, 16 usage error.";

#[derive(Parser)]
#[command(name = "fsck_hammer2", version, about = "Check and repair a HAMMER2 file system offline", after_help = EXAMPLES)]
pub struct FsckCli {
    /// Check only; never write (the default)
    #[arg(short = 'n', conflicts_with_all = ["yes", "preen"])]
    pub no: bool,
    /// Repair everything that can be repaired
    #[arg(short = 'y', conflicts_with = "preen")]
    pub yes: bool,
    /// Repair only what needs no decision
    #[arg(short = 'p')]
    pub preen: bool,
    /// With -y or -p, also rewrite valid header copies older than the best one
    #[arg(long)]
    pub sync_headers: bool,
    /// Verify the trees under every valid header copy, not only the best
    #[arg(long)]
    pub all_copies: bool,
    /// Make header copy N's tree current again (a rollback: the transactions after it are lost);
    /// with -y it is done, otherwise only described. Without it, -y rolls back by itself when the
    /// tree in use is damaged and an older copy's is less so
    #[arg(long, value_name = "N", conflicts_with = "preen", value_parser = clap::value_parser!(u8).range(0..4))]
    pub use_copy: Option<u8>,
    /// Print only problems
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every blockref as it is checked, and informational findings
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Memory the per-inode and per-entry cross-check records may take before sorted runs spill to
    /// --tmpdir (suffixes K, M, G; default 48M). The mapping of the device adds at most 64 MiB
    #[arg(long, value_name = "SIZE", value_parser = super::edit_maint::parse_size)]
    pub memory: Option<u64>,
    /// Directory for the spilled runs (default $TMPDIR, else /tmp); they are unlinked as soon as
    /// they are created. Never on the device being checked
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub wait: super::WaitArg,
    /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
    pub device: String,
}
