//! Command line of hammer2_mount.

use clap::Parser;

pub const EXAMPLES: &str = "\
Examples:
  hammer2_mount disk.img /mnt                 mount PFS DATA read-only, in the background
  hammer2_mount -f disk.img@ROOT /mnt         PFS ROOT, in the foreground (Ctrl-C unmounts)
  hammer2_mount -o rw,commit=10 disk.img /mnt read-write, committing every 10 seconds

fusermount3 -u /mnt (or umount /mnt as root) unmounts; a read-write mount commits first.

Exit status: 0 mounted (with -f: unmounted cleanly), 1 failure, 2 usage error.";

#[derive(Parser)]
#[command(
    name = "hammer2_mount",
    version,
    about = "Mount a HAMMER2 PFS through FUSE, read-only or read-write",
    after_help = EXAMPLES
)]
pub struct MountCli {
    /// Stay in the foreground (otherwise the mount runs as a daemon once it is up)
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated: ro (the default), rw, commit=SECONDS (read-write: commit at least this often, default 5), dirty=SIZE (read-write: commit when this much was written since the last commit, default 256M), allow_other, allow_root
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    #[command(flatten)]
    pub wait: super::WaitArg,
    /// Device or image, then @PFS to choose a PFS (default: DATA, or the only PFS other than LOCAL); a multi-volume set as vol0:vol1:...
    #[arg(value_name = "DEVICE[@PFS]")]
    pub device: String,
    /// Directory to mount on
    pub mountpoint: std::path::PathBuf,
}
