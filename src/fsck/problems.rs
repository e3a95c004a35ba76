//! fsck's problem table: every problem id with its message, severity,
//! and the repair `-p`/`-y` apply (or why none exists and what to do).

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal state worth knowing (e.g. an older header copy).
    Info,
    /// Damage the file system survives (a redundant copy is bad).
    Warning,
    /// Damage that loses or endangers data.
    Error,
}

/// How a problem may be repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fix {
    /// No repair exists (yet).
    None,
    /// Safe without asking: `-p` may do it.
    Preen,
    /// Needs a decision: only `-y`.
    Yes,
}

/// One entry of the problem table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Problem {
    pub id: ProblemId,
    pub message: &'static str,
    pub severity: Severity,
    pub fix: Fix,
    /// What the repair does; for [`Fix::None`], why there is none (or not
    /// yet) and what the user can do instead. Every entry has one (a test
    /// holds the table to it).
    pub repair: &'static str,
}

macro_rules! problems {
    ($($name:ident / $variant:ident: $id:literal, $sev:ident, $fix:ident, $msg:literal, $repair:literal;)+) => {
        /// The id of every problem fsck can report: what repairs and tests
        /// select by (the text is only for people).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProblemId {
            $($variant),+
        }

        impl ProblemId {
            /// The id as printed (`HDR_CORRUPT`).
            pub const fn code(self) -> &'static str {
                match self {
                    $(ProblemId::$variant => $id),+
                }
            }

            /// This id's entry of the problem table.
            pub const fn problem(self) -> Problem {
                match self {
                    $(ProblemId::$variant => $name),+
                }
            }
        }

        $(pub const $name: Problem = Problem {
            id: ProblemId::$variant, message: $msg, severity: Severity::$sev, fix: Fix::$fix, repair: $repair,
        };)+
        /// Every problem fsck can report.
        pub const PROBLEMS: &[Problem] = &[$($name),+];
    };
}

impl std::fmt::Display for ProblemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for ProblemId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl std::str::FromStr for ProblemId {
    type Err = String;
    /// An id as printed (`HDR_CORRUPT`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        PROBLEMS.iter().map(|p| p.id).find(|id| id.code() == s).ok_or_else(|| format!("no problem id {s:?}"))
    }
}

problems! {
    HDR_CORRUPT / HdrCorrupt: "HDR_CORRUPT", Warning, Preen,
        "volume-header copy is damaged", "rewrite it from the best copy";
    HDR_TORN / HdrTorn: "HDR_TORN", Warning, Preen,
        "volume-header copy torn by an interrupted commit: it claims the transaction right after the best copy's, in the slot that commit writes, and nothing newer exists",
        "rewrite it from the best copy (what the next commit, or a read-write mount's next flush, writes there anyway)";
    HDR_CORRUPT_NEWER / HdrCorruptNewer: "HDR_CORRUPT_NEWER", Error, Yes,
        "damaged volume-header copy claims a newer commit than the best valid copy",
        "rewrite it from the best copy (the damaged commit is lost)";
    HDR_STALE / HdrStale: "HDR_STALE", Info, None,
        "volume-header copy is valid but older than the best copy (normal after a commit)",
        "with --sync-headers, rewrite it from the best copy";
    HDR_NONE_VALID / HdrNoneValid: "HDR_NONE_VALID", Error, None,
        "no valid volume-header copy",
        "none possible: no header says where the trees are; hammer2_recover copies out what the media still holds, then newfs_hammer2 starts over";
    HDR_FIELD / HdrField: "HDR_FIELD", Error, None,
        "volume-header field out of range",
        "not yet: every valid copy carries the field; if an older copy holds a sane one, --use-copy N makes it current, otherwise copy the files out (hammer2_edit get, hammer2_recover)";
    HDR_GEOMETRY / HdrGeometry: "HDR_GEOMETRY", Error, None,
        "volume offsets or sizes in the header are unusable, so the file system cannot be opened",
        "none possible: the volumes cannot be placed; give every volume of the set, in order (vol0:vol1:...), or copy files out with hammer2_recover";
    HDR_AREAS / HdrAreas: "HDR_AREAS", Error, None,
        "boot or aux area out of order, over the reserved segment, or past the root volume",
        "not yet: the areas are laid out by newfs; the file system is sound as long as no block lies in them (BREF_RESERVED says when one does)";
    HDR_ALLOCATOR / HdrAllocator: "HDR_ALLOCATOR", Error, None,
        "allocator field (allocator_size, allocator_free, allocator_beg) disagrees with the volume set",
        "not yet: the next commit (any hammer2_edit write, or bulkfree) recomputes allocator_free; the other fields come from newfs and growfs";
    HDR_TREE_DAMAGED / HdrTreeDamaged: "HDR_TREE_DAMAGED", Error, Yes,
        "the tree of the header copy in use is damaged; an older valid copy names an intact or less damaged one",
        "made the older copy's tree current (a new commit of that tree, its freemap rebuilt, every header copy rewritten); the transactions after it are lost";
    HDR_COPY_FREEMAP / HdrCopyFreemap: "HDR_COPY_FREEMAP", Warning, Preen,
        "an older valid header copy's freemap fails its checks (a tool that walks every copy, as DragonFly's fsck_hammer2 does, stops on it; the copy in use is not affected)",
        "rewrote that copy from the best copy (it then names the current tree: no rollback to it any more)";
    SROOT_MISSING / SrootMissing: "SROOT_MISSING", Error, None,
        "the volume header names no super-root: no PFS, no file can be reached",
        "none in place: -y rolls back when an older header copy names a tree (HDR_TREE_DAMAGED, or --use-copy N); else hammer2_recover list and files copy out what the media still holds";
    VOLSET / Volset: "VOLSET", Error, None,
        "volume set is inconsistent",
        "none possible: give every volume of the set, in order, each with the set's fsid";
    BREF_CHECK / BrefCheck: "BREF_CHECK", Error, Yes,
        "check code does not match the media",
        "in the freemap, -y rebuilds the freemap from the topology; in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    BREF_UNKNOWN_CHECK / BrefUnknownCheck: "BREF_UNKNOWN_CHECK", Error, Yes,
        "unknown check method",
        "nothing verifies the block: in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    BREF_RADIX / BrefRadix: "BREF_RADIX", Error, Yes,
        "blockref radix out of range",
        "the block's size is unknown: in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    BREF_RANGE / BrefRange: "BREF_RANGE", Error, Yes,
        "blockref points outside every volume",
        "the block lies outside the volumes: in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    TREE_DEPTH / TreeDepth: "TREE_DEPTH", Error, Yes,
        "blockref points at its own ancestor, or the tree nests too deep",
        "the blockref closing the loop (or nesting too deep) is rebuilt as an unreadable node is: the same node of an older header copy when it verifies, else cut out where the loop closes, its unnamed inodes then filed under /lost+found";
    BREF_OTHER / BrefOther: "BREF_OTHER", Error, Yes,
        "blockref is unusable",
        "in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    BREF_TYPE / BrefType: "BREF_TYPE", Error, Yes,
        "blockref type not allowed under its parent",
        "the inode type set back when its block is an inode that verifies and is keyed as one; else dropped the entry: readers skip a type not allowed where it lies, so nothing they read is lost (not under an inode whose own type holds no blocks, a fifo or device with data: that type is the likelier damage and is left, saying so)";
    BREF_KEY / BrefKey: "BREF_KEY", Error, Yes,
        "blockref key outside its parent's range or not aligned to its keybits",
        "re-keyed: an inode of a PFS's index under its number, a directory entry under its name's hash (a free key of its collision space); a data block's offset is only known from its key, so it is dropped (the file reads zeros there); an indirect block is left (its key bounds a subtree nothing proves): hammer2_edit destroy PATH";
    BREF_RESERVED / BrefReserved: "BREF_RESERVED", Error, Yes,
        "blockref media lies in a reserved area (zone segment, boot or aux area)",
        "what lies there is overwritten by the freemap or boot code, and a node there is no node the tree wrote: in a PFS, -y rebuilds it as an unreadable node (the same node of an older header copy when its whole subtree verifies, else from the media, else cut out, its unnamed inodes then filed under /lost+found; a data block replaced by an older verified version, else left, saying so); the super-root or a PFS root there is -y's rollback to an older header copy";
    BREF_DECOMPRESS / BrefDecompress: "BREF_DECOMPRESS", Error, Yes,
        "compressed block does not decode to its logical size",
        "the block's data does not decode: in the topology, -y rebuilds the node: the same node of an older header copy when its whole subtree verifies, else from the media (the salvage index: in an inode index the inodes the entries name, each its newest verified version; below a file its data blocks by key), else cuts it out, its unnamed inodes then filed under /lost+found; a data block is replaced by an older verified version of it when one exists (else left, said with the finding); a damaged PFS root or super-root is -y's rollback to an older header copy";
    BREF_ORDER / BrefOrder: "BREF_ORDER", Error, Preen,
        "blockref table not sorted by key (HAMMER2's lookups stop at the first larger key and miss the rest)",
        "sorted the table by key (every entry kept)";
    BREF_DUPLICATE / BrefDuplicate: "BREF_DUPLICATE", Error, Yes,
        "node block (inode, indirect, name) referenced twice within one PFS",
        "an entry of a PFS's inode index whose shared block holds an inode of another number is the misdirected one: -y rebuilds it as an unreadable node (the inode of its number from an older header copy or the media), the block stays the other entry's; otherwise which reference is right is not known, and it is left: copy the files out, then hammer2_edit destroy one of the names; a PFS root's entry in the super-root shared with another is -y's rollback to an older header copy";
    BREF_STATS / BrefStats: "BREF_STATS", Warning, Preen,
        "blockref statistics disagree with what lies below",
        "recomputed data_count, inode_count and leaf_count of the node and every node above it from what lies below, as the kernel's flush keeps them";
    INODE_BAD / InodeBad: "INODE_BAD", Error, Yes,
        "inode is inconsistent",
        "an inode indexed under another number is re-keyed by its number; a PFS root's inode number set to 1 (the kernel's); a name length set to the one its key's hash proves; the other sub-cases (unknown type, a root that is no directory, name length, size past 2^63, embedded data that cannot be) are not guessed at: copy out what reads (hammer2_edit get), then hammer2_edit destroy-inum N";
    INODE_NLINKS / InodeNlinks: "INODE_NLINKS", Error, Preen,
        "inode link count differs from the directory entries naming it",
        "a file's nlinks set to the number of entries naming it (-p); an inode no entry names is filed as /lost+found/#INUM with nlinks 1 (-y; /lost+found created mode 0700 in the PFS root, or reused); a directory named twice: not yet, see the finding";
    DIRENT_BAD / DirentBad: "DIRENT_BAD", Error, Yes,
        "directory entry is inconsistent",
        "an entry under a key that is not its name's hash is re-keyed to a free key of that hash; an entry whose name is not valid (empty, too long, '/', NUL, '.' or '..') is not renamed by guess: hammer2_edit destroy PATH removes it";
    DIRENT_DANGLING / DirentDangling: "DIRENT_DANGLING", Error, Yes,
        "directory entry names an inode that does not exist",
        "removed the entry (not while the PFS has unreadable node blocks: the inode may lie in one)";
    BREF_KEY_DUP / BrefKeyDup: "BREF_KEY_DUP", Error, Yes,
        "two entries of one blockref table have the same key (a lookup finds only one of them)",
        "kept the entry whose block verifies, else the newer (modify_tid); the other, a directory entry, re-inserted under a free key of its name's hash, anything else dropped (the finding says what)";
    BREF_INODE_SIZE / BrefInodeSize: "BREF_INODE_SIZE", Error, Preen,
        "inode blockref declares a media size other than 1 KiB",
        "rewrote the inode as a 1 KiB block (readers only ever used the first KiB)";
    DATA_PAST_EOF / DataPastEof: "DATA_PAST_EOF", Error, Yes,
        "data block lies past the end of its file",
        "dropped the blocks past the size, as a truncate does: the size is what readers trust for the end, so nothing they read changes (to keep the data instead: hammer2_edit truncate PATH SIZE with a larger SIZE before the repair)";
    DATA_KEYBITS / DataKeybits: "DATA_KEYBITS", Error, Yes,
        "data blockref's keybits (logical size) disagree with its media size",
        "set the keybits to the media's size (a compressed block's: what it decodes to) when the key is aligned to it and the range meets no other entry; else left, saying why (copy the file out with hammer2_edit get and write it back)";
    INODE_MODE / InodeMode: "INODE_MODE", Warning, Preen,
        "inode mode's type bits disagree with the inode's type",
        "kept the permission bits only, as the kernel stores a mode (the type lives in the inode's type)";
    INODE_DIR_NLINKS / InodeDirNlinks: "INODE_DIR_NLINKS", Error, Preen,
        "directory link count is neither 1 (not counted) nor 2 plus its subdirectories",
        "set it to 1 when it was 0, else recounted as 2 plus its subdirectories";
    INODE_IPARENT / InodeIparent: "INODE_IPARENT", Error, Preen,
        "directory's iparent is not the directory naming it (its '..' resolves elsewhere)",
        "set iparent to the directory naming it";
    INODE_IPARENT_HINT / InodeIparentHint: "INODE_IPARENT_HINT", Info, Preen,
        "file named once has an iparent other than the directory naming it (a hint recovery tools follow)",
        "set iparent to the directory naming it, as a rename would";
    FREEMAP_STRUCT / FreemapStruct: "FREEMAP_STRUCT", Error, None,
        "freemap node or leaf is malformed",
        "not yet by fsck for a freemap that verifies; hammer2_edit bulkfree rebuilds the freemap from the topology";
    FREEMAP_UNMARKED / FreemapUnmarked: "FREEMAP_UNMARKED", Error, Preen,
        "blocks in use are marked free in the freemap",
        "replayed the freemap recovery (as hammer2_recover does) and committed it";
    FREEMAP_LAG / FreemapLag: "FREEMAP_LAG", Info, Preen,
        "the freemap lags the topology (freemap_tid < mirror_tid: a crash between flushes); mount-time recovery is pending",
        "replayed the freemap recovery (as hammer2_recover does) and committed it";
    FREEMAP_LINEAR / FreemapLinear: "FREEMAP_LINEAR", Error, Preen,
        "freemap linear offset points below the end of blocks in use",
        "marked every block in use allocated, moving linear past them (hammer2_recover --full), and committed it";
    FREEMAP_LEAKED / FreemapLeaked: "FREEMAP_LEAKED", Info, None,
        "space marked allocated that nothing references (returned by a bulkfree)",
        "nothing is lost meanwhile; hammer2_edit bulkfree returns the space";
    FREEMAP_ALLOC_FREE / FreemapAllocFree: "FREEMAP_ALLOC_FREE", Info, None,
        "allocator_free in the volume header differs from the freemap leaves",
        "the next commit (any hammer2_edit write, or bulkfree) recomputes it";
}
