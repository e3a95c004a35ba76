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

Subcommands list and files find and recover deleted, damaged and older
files by scanning the whole media (see hammer2_recover list --help).

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
    about = "Replay the freemap recovery of a HAMMER2 mount offline; find and recover deleted, damaged and older files",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct RecoverCli {
    #[command(subcommand)]
    pub command: Option<RecoverCommand>,
    /// Without a subcommand: the freemap replay (as `freemap`)
    #[command(flatten)]
    pub freemap: FreemapArgs,
    #[command(flatten)]
    pub wait: super::WaitArg,
}

#[derive(clap::Subcommand)]
pub enum RecoverCommand {
    /// Replay the freemap recovery of a mount (the default without a subcommand)
    Freemap(FreemapArgs),
    /// List what the media holds that can be recovered: every version of every file found, live or not
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Recover files (every version found) into a host directory
    #[command(after_help = FILES_EXAMPLES)]
    Files(FilesArgs),
}

#[derive(clap::Args)]
pub struct FreemapArgs {
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
    /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
    #[arg(required = true)]
    pub device: Option<String>,
}

pub const LIST_EXAMPLES: &str = "\
The whole media is scanned (holes of sparse images skipped): every inode
version a verified blockref names is listed, with its path (from its name
and parent; <orphan>/INUM when its parent is unknown), PFS, inode number,
type, size, mtime, source (live: the tree in use reaches it; header copy N:
an older header copy does; unreached: removed, replaced or cut off) and
completeness (whole, or partial with the bytes lost).

Examples:
  hammer2_recover list disk.img                  everything found
  hammer2_recover list --deleted disk.img        only what the live tree lost
  hammer2_recover list --pfs DATA disk.img /home/me
  hammer2_recover list --json disk.img notes.txt";

pub const FILES_EXAMPLES: &str = "\
PATH is absolute from a PFS root, or a bare name that matches anywhere;
every match (in every PFS, unless --pfs) is written as DEST/NAME, its
versions numbered together. / writes the PFS's contents into DEST itself
(each PFS into DEST/LABEL when several are found: give --pfs). Directories
are recovered recursively, with every file any version of them held. Each distinct version of a file is written as
NAME.00001, NAME.00002, ... (oldest first by transaction), the newest also
as NAME (a hard link); --latest writes only NAME. A version with lost byte
ranges is written with those ranges as holes and named NAME.partial (or
NAME.0000N.partial), and listed in the summary. Symlinks, modes, owners and
times are restored as `hammer2_edit get` restores them; device nodes,
FIFOs and sockets are skipped and listed. Nothing is written outside DEST;
the device is opened read-only.

Examples:
  hammer2_recover files disk.img /home/me/report.txt out/
  hammer2_recover files --latest --pfs DATA disk.img /src out/
  hammer2_recover files disk.img notes.txt out/

Exit status: 0 everything found was recovered whole, 1 failure or some
version partial or unrecoverable, 2 usage error.";

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Only this PFS (by label)
    #[arg(long, value_name = "LABEL")]
    pub pfs: Option<String>,
    /// Also use what no check code vouches for (blockrefs with check none or disabled, inodes no blockref names); reported as unverified
    #[arg(long)]
    pub relaxed: bool,
    /// Memory for the scan's tables (e.g. 512M, 2G); past it they spill to --tmpdir
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory)]
    pub memory: u64,
    /// Directory for spilled records (default: the system's temporary directory; never the scanned device)
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<std::path::PathBuf>,
}

fn parse_memory(s: &str) -> Result<u64, String> {
    crate::newfs::parse_size(s).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only what the live tree no longer reaches, or reaches in another version
    #[arg(long)]
    pub deleted: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Device or image; a multi-volume set as vol0:vol1:...
    pub device: String,
    /// Only what lies at or under this absolute path, or bears this name
    pub path: Option<String>,
}

#[derive(clap::Args)]
pub struct FilesArgs {
    /// Only the newest version of each name
    #[arg(long)]
    pub latest: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Device or image; a multi-volume set as vol0:vol1:...
    pub device: String,
    /// Absolute path from a PFS root, or a bare name matching anywhere
    pub path: String,
    /// Host directory to write into (created if missing; its parent must exist)
    pub dest: std::path::PathBuf,
}
