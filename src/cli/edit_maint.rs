//! hammer2_edit's maintenance commands, named as hammer2(8) names them:
//! PFS operations, setcomp/setcheck, bulkfree, growfs and the emergency
//! destroy tools. Flattened into the editor's command table.

use clap::Subcommand;

pub const MAINT_EXAMPLES: &str = "\
Maintenance commands (hammer2(8)'s, offline):
  pfs-list                      list the PFSs (label, type, subtype, ids)
  pfs-create [-t TYPE] LABEL    create an empty PFS (type master unless -t)
  pfs-delete LABEL              delete a PFS (its blocks are freed by bulkfree)
  snapshot [NAME]               snapshot the PFS of --pfs (default name LABEL.YYYYMMDD.HHMMSS)
  setcomp [-r] [--rewrite] ALGO[:LEVEL] PATH
                                set an inode's compression: none, autozero, lz4, zlib[:1-9]
                                (-r: and below it; --rewrite: existing data blocks too)
  setcheck [-r] [--rewrite] ALGO PATH
                                set an inode's check method: none, disabled, crc32,
                                xxhash64, sha192
  bulkfree                      rebuild the freemap from what every PFS reaches
  growfs [SIZE]                 grow a single-volume file system to its device's size (or SIZE)
  destroy PATH                  remove a directory entry without reading its inode (emergency)
  destroy-inum INUM             remove an inode from the PFS's index without reading it (emergency)

bulkfree and growfs may come anywhere in a script, as part of its one
transaction: bulkfree counts what the earlier commands put in as in use and
frees nothing they or the committed image still reference (blocks the script
stopped referencing are staged by a later bulkfree); growfs writes the header
copies that now fit as last committed. A snapshot
shares every block with its source; nothing is copied.";

#[derive(Subcommand, Debug, Clone)]
pub enum MaintCommand {
    /// List the PFSs: label, type, subtype, cluster and file system ids
    PfsList {
        /// A JSON array instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Create an empty PFS
    PfsCreate {
        /// PFS type: master, slave, soft_master, soft_slave, cache, dummy
        #[arg(short = 't', long = "type", default_value = "master", value_name = "TYPE")]
        pfs_type: String,
        label: String,
    },
    /// Delete a PFS (its blocks stay allocated until a bulkfree)
    PfsDelete { label: String },
    /// Snapshot the PFS given with --pfs (or the default one): a new PFS sharing every block
    Snapshot {
        /// Label of the snapshot (default: the source's label .YYYYMMDD.HHMMSS, UTC)
        name: Option<String>,
    },
    /// Set the compression of an inode (new blocks; --rewrite: existing ones too)
    Setcomp {
        /// Recurse into directories
        #[arg(short = 'r')]
        recursive: bool,
        /// Also rewrite the existing data blocks with the new method
        #[arg(long)]
        rewrite: bool,
        /// none, autozero, lz4 or zlib[:LEVEL] (level 1-9)
        #[arg(value_name = "ALGO[:LEVEL]")]
        algo: String,
        path: String,
    },
    /// Set the check method of an inode (new blocks; --rewrite: existing ones too)
    Setcheck {
        /// Recurse into directories
        #[arg(short = 'r')]
        recursive: bool,
        /// Also rewrite the existing data blocks with the new method
        #[arg(long)]
        rewrite: bool,
        /// none, disabled, crc32, xxhash64 or sha192
        #[arg(value_name = "ALGO")]
        algo: String,
        path: String,
    },
    /// Rebuild the freemap from what every PFS reaches: free the unreachable, mark the reachable
    Bulkfree,
    /// Grow a single-volume file system to its device's size, or to SIZE (bytes; k, m, g, t suffixes)
    Growfs {
        #[arg(value_parser = parse_size)]
        size: Option<u64>,
    },
    /// Remove a directory entry without reading the inode it names (emergency use)
    Destroy { path: String },
    /// Remove an inode from the PFS's inode index by number, without reading it (emergency use)
    DestroyInum {
        #[arg(value_parser = parse_inum)]
        inum: u64,
    },
}

impl MaintCommand {
    /// True for the commands that change the image.
    pub fn writes(&self) -> bool {
        !matches!(self, MaintCommand::PfsList { .. })
    }
}

/// A size in bytes with an optional k/m/g/t suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, shift) = match lower.strip_suffix(['k', 'm', 'g', 't']) {
        Some(d) => (d, 10 * (1 + "kmgt".find(lower.chars().last().unwrap_or('k')).unwrap_or(0) as u32)),
        None => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or a number with k, m, g or t)"))
}

/// An inode number, decimal or 0x hexadecimal.
pub fn parse_inum(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not an inode number"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_inode_numbers() {
        assert_eq!(super::parse_size("5g"), Ok(5 << 30));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert_eq!(super::parse_size("3M"), Ok(3 << 20));
        assert!(super::parse_size("g").is_err());
        assert!(super::parse_size("99999999999t").is_err());
        assert_eq!(super::parse_inum("0x401"), Ok(0x401));
        assert_eq!(super::parse_inum("1025"), Ok(1025));
        assert!(super::parse_inum("x").is_err());
    }
}
