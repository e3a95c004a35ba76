//! Command line of newfs_hammer2.

use crate::newfs;
use clap::Parser;

pub const EXAMPLES: &str = "\
Examples:
  newfs_hammer2 -s 10G disk.img           create a sparse 10 GiB image with PFSs LOCAL and DATA
  newfs_hammer2 -L ROOT /dev/da0s1d       format a partition with PFSs LOCAL and ROOT
  newfs_hammer2 -n -s 2T big.img          show the layout of a 2 TiB file system, write nothing
  newfs_hammer2 -f vol0.img vol1.img      one file system on two volumes, replacing theirs
  newfs_hammer2 -s 16G --populate tree/ disk.img
                                          a sparse image whose DATA PFS holds a copy of tree/";

#[derive(Parser)]
#[command(
    name = "newfs_hammer2",
    version,
    about = "Format one or more volumes as a HAMMER2 file system",
    after_help = EXAMPLES,
    disable_version_flag = true
)]
pub struct NewfsCli {
    /// Print version
    #[arg(long = "version", action = clap::ArgAction::Version)]
    pub print_version: Option<bool>,
    /// Boot area size (default 64M, less on small file systems; 8M-256M, multiple of 8M)
    #[arg(short = 'b', value_name = "SIZE", value_parser = size)]
    pub boot: Option<u64>,
    /// Auxiliary area size (default 256M, less on small file systems; 8M-1G, multiple of 8M)
    #[arg(short = 'r', value_name = "SIZE", value_parser = size)]
    pub aux: Option<u64>,
    /// Volume-header version (1: single volume only; 2: multi-volume, the default)
    #[arg(short = 'V', id = "fs_version", value_name = "VERSION", default_value_t = crate::format::VOL_VERSION_DEFAULT)]
    pub fs_version: u32,
    /// Create a PFS with this label besides LOCAL (repeatable, up to 3; "none" for LOCAL only; default DATA)
    #[arg(short = 'L', value_name = "LABEL")]
    pub label: Vec<String>,
    /// Size of each volume, as SIZE or SIZE:SIZE:... (default: the whole device); creates missing image files
    #[arg(short = 's', long = "size", value_name = "SIZE[:SIZE...]")]
    pub size: Option<String>,
    /// Check code recorded in the PFS roots for their contents
    #[arg(short = 'C', long = "check", value_name = "METHOD", default_value = "xxhash64", value_parser = ["none", "disabled", "iscsi32", "crc32", "xxhash64", "sha192"])]
    pub check: String,
    /// Compression recorded in the PFS roots for their contents
    #[arg(long = "comp", value_name = "METHOD", default_value = "lz4", value_parser = ["none", "autozero", "lz4", "zlib"])]
    pub comp: String,
    /// Copy this host directory's contents (files, symlinks, hard links, devices, modes, owners, times, holes) into the first PFS besides LOCAL, in one commit
    #[arg(long = "populate", value_name = "HOSTDIR")]
    pub populate: Option<std::path::PathBuf>,
    /// Print the layout and write nothing
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Format even if the device already holds a file system
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Also write zeros over the reserved segment and boot/aux areas, as DragonFly does
    #[arg(long)]
    pub zero: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Print nothing on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub wait: super::WaitArg,
    /// Devices or image files, one per argument (several for a multi-volume file system)
    #[arg(required = true, value_name = "DEVICE")]
    pub devices: Vec<String>,
}

fn size(s: &str) -> Result<u64, String> {
    newfs::parse_size(s).map_err(|e| e.to_string())
}
