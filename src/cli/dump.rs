//! Command line of hammer2_dump.

use clap::{Parser, Subcommand};

pub const EXAMPLES: &str = "\
Examples:
  hammer2_dump volhdr disk.img              every header copy, one after another
  hammer2_dump volhdr --wide disk.img       ... side by side in one table
  hammer2_dump volhdr --json a.img:b.img    a two-volume set, for scripts
  hammer2_dump show disk.img                the whole chain tree, node blocks verified
  hammer2_dump show --verify-data disk.img  ... and every file data block too
  hammer2_dump show --depth 1 disk.img      the super-root and the PFS roots
  hammer2_dump show --pfs DATA --hide-data disk.img
                                            one PFS's metadata, no file data blocks
  hammer2_dump show --offset 0x1440000a disk.img
                                            the subtree under one blockref
  hammer2_dump show --json disk.img | jq 'select(.error)'
                                            every problem, one JSON object per line
  hammer2_dump freemap disk.img             freemap tree and free space per 1 GiB zone
  hammer2_dump inode disk.img /etc/rc.conf  every field of one inode
  hammer2_dump inode --pfs LOCAL --inum 1 disk.img
  hammer2_dump pfs disk.img                 the PFSs, their ids and inode counts";

#[derive(Parser)]
#[command(name = "hammer2_dump", version, about = "Dump HAMMER2 on-disk structures", after_help = EXAMPLES)]
pub struct DumpCli {
    #[command(subcommand)]
    pub command: DumpCommand,
    #[command(flatten)]
    pub wait: super::WaitArg,
}

impl DumpCommand {
    /// The device every command names.
    pub fn device(&self) -> &str {
        match self {
            DumpCommand::Volhdr { device, .. }
            | DumpCommand::Show { device, .. }
            | DumpCommand::Freemap { device, .. }
            | DumpCommand::Inode { device, .. }
            | DumpCommand::Pfs { device, .. } => device,
        }
    }
}

/// Parses a number given in decimal or, with a `0x` prefix, in hex.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => t.replace('_', "").parse(),
    };
    r.map_err(|e| format!("{s:?}: {e} (give a decimal number or 0x followed by hex digits)"))
}

#[derive(Subcommand)]
pub enum DumpCommand {
    /// Show every volume-header copy: fields, CRC status, and the copy in use
    #[command(after_help = "A copy is in use when it is valid and has the highest mirror_tid.\n\
Copies that are valid but older are normal: writers update one copy per commit.")]
    Volhdr {
        /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
        device: String,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
        /// Put the copies side by side in one table (by default each copy is listed after the other, to fit the terminal or 80 columns)
        #[arg(long)]
        wide: bool,
    },

    /// Dump the chain tree: one line per blockref, check codes of node blocks verified
    #[command(after_help = "Each line shows the slot index, type, data_off (with its radix), key/keybits, \
physical size, mirror/modify/update tids, check method and value with `ok` or `BAD` (`unread` for DATA \
blocks, which are only read and verified with --verify-data, as DragonFly's `hammer2 show` reads them \
only with -v; fsck_hammer2 verifies them all), compression, and \
what the blockref carries: statistics of inodes and indirect blocks, the name and inode number of \
directory entries, the inline fields of inodes, the hints of freemap blocks. A node reached a second \
time (shared between snapshots) is marked `shared` and its children are not repeated.\n\n\
Problems (bad check code, media out of range, tree too deep) are shown on the line where they occur; \
the exit status is then 1.")]
    Show {
        /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
        device: String,
        /// Use header copy N instead of the best one
        #[arg(long, value_name = "N", conflicts_with = "all_copies", value_parser = super::parse_copy)]
        copy: Option<usize>,
        /// Dump from every valid header copy in turn
        #[arg(long)]
        all_copies: bool,
        /// Start at the root inode of this PFS
        #[arg(long, value_name = "LABEL", conflicts_with = "offset")]
        pfs: Option<String>,
        /// Start at the blockref with this data_off (searched in both trees; without radix bits, any radix)
        #[arg(long, value_name = "DATA_OFF", value_parser = parse_u64)]
        offset: Option<u64>,
        /// Show at most N levels below the starting blockrefs (0: only those)
        #[arg(long, value_name = "N")]
        depth: Option<usize>,
        /// Omit DATA blockrefs (and do not read them)
        #[arg(long, conflicts_with = "verify_data")]
        hide_data: bool,
        /// Also read every DATA block and verify its check code (by default only node blocks are read and verified)
        #[arg(long)]
        verify_data: bool,
        /// Also dump the freemap tree
        #[arg(long)]
        freemap: bool,
        /// One JSON object per blockref and line, streamed
        #[arg(long)]
        json: bool,
        /// One line per blockref however long (by default lines are continued to fit the terminal or 80 columns)
        #[arg(long)]
        wide: bool,
    },

    /// Dump the freemap tree and the free space each 1 GiB zone's leaf records
    #[command(after_help = "Leaf bitmaps hold two bits per 16 KiB block: free, reserved, possibly free \
(staged by bulkfree) or allocated. Zones without a leaf were never allocated from. The total is compared \
with the header's allocator_free, which is a hint kept by writers.")]
    Freemap {
        /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
        device: String,
        /// Use header copy N instead of the best one
        #[arg(long, value_name = "N", value_parser = super::parse_copy)]
        copy: Option<usize>,
        /// Print JSON instead of text and tables
        #[arg(long)]
        json: bool,
        /// One table with every column and one line per blockref, however wide (by default the output fits the terminal or 80 columns)
        #[arg(long)]
        wide: bool,
    },

    /// Print every field of one inode, found by path or inode number
    Inode {
        /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
        device: String,
        /// Path inside the PFS (symlinks are not followed)
        #[arg(required_unless_present = "inum", conflicts_with = "inum")]
        path: Option<String>,
        /// Inode number instead of a path
        #[arg(long, value_name = "N", value_parser = parse_u64)]
        inum: Option<u64>,
        /// PFS to look in (default: DATA, or the only PFS other than LOCAL)
        #[arg(long, value_name = "LABEL")]
        pfs: Option<String>,
        /// Use header copy N instead of the best one
        #[arg(long, value_name = "N", value_parser = super::parse_copy)]
        copy: Option<usize>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// One line per field and blockref, however long (by default long lines are continued to fit the terminal or 80 columns)
        #[arg(long)]
        wide: bool,
    },

    /// List the PFSs: label, type, ids, inode allocator and inode count
    Pfs {
        /// Device or image; a multi-volume set as vol0:vol1:... (a path that exists is one volume, even with a colon)
        device: String,
        /// Use header copy N instead of the best one
        #[arg(long, value_name = "N", value_parser = super::parse_copy)]
        copy: Option<usize>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// One table with every column, however wide (by default the table fits the terminal or 80 columns)
        #[arg(long)]
        wide: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_hex_or_decimal() {
        assert_eq!(parse_u64("0x1440000a"), Ok(0x1440000a));
        assert_eq!(parse_u64("42"), Ok(42));
        assert!(parse_u64("0xzz").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        DumpCli::command().debug_assert();
    }
}
