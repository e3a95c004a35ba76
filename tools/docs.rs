//! Generates man pages and shell completions from the binaries' clap
//! definitions (`hammer2::cli`). Shared by `examples/gen_docs.rs` (writes the
//! files) and `tests/docs.rs` (fails when the checked-in files are stale).

use std::path::PathBuf;

/// Hand-written parts of a man page.
struct Extra {
    description: &'static [&'static str],
    examples: &'static [(&'static str, &'static str)],
    exit_status: &'static [(&'static str, &'static str)],
    see_also: &'static [&'static str],
}

const SEE_ALSO: &[&str] = &[
    "newfs_hammer2",
    "fsck_hammer2",
    "hammer2_dump",
    "hammer2_edit",
    "hammer2_recover",
    "hammer2_mount",
    "fusermount3(1)",
    "hammer2(8)",
    "fsck(8)",
];
const OTHER_EXIT: &[(&str, &str)] =
    &[("0", "Success."), ("1", "Failure; the reason is printed on standard error."), ("2", "Usage error.")];

fn extra(name: &str) -> Extra {
    match name {
        "newfs_hammer2" => Extra {
            description: &[
                "newfs_hammer2 formats one or more volumes (block devices or image files) as one HAMMER2 file system, with the layout DragonFly BSD's newfs_hammer2 produces: a volume header at the start of each of the first four 2 GiB zones that fit, a 4 MiB reserved segment per GiB, boot and auxiliary areas, and a super-root holding the PFS LOCAL plus one PFS per label (DATA when no label is given).",
                "On image files only the blocks HAMMER2 needs are written (a few hundred KiB), so sparse images stay sparse; --zero also clears the reserved segment and boot/aux areas as DragonFly does. Every header slot of an older file system is overwritten, including slots past the new size. An image file that does not exist is created when -s gives its size.",
                "A device that already holds a file system is refused unless -f is given, and a mounted device (or an image mounted through a loop device) is always refused. Sizes take K, M, G, T or P suffixes (powers of 1024).",
                "Volumes are given as separate arguments, as DragonFly's newfs_hammer2 takes them; a name holding ':' is one file. The other tools name a multi-volume set as vol0:vol1:...",
            ],
            examples: &[
                ("Create and format a sparse 10 GiB image with PFSs LOCAL and DATA:", "newfs_hammer2 -s 10G disk.img"),
                ("Show the layout of a 2 TiB file system without writing:", "newfs_hammer2 -n -s 2T big.img"),
                ("One file system on two volumes, PFSs LOCAL and ROOT:", "newfs_hammer2 -L ROOT -s 3G:2G vol0.img vol1.img"),
            ],
            exit_status: OTHER_EXIT,
            see_also: SEE_ALSO,
        },
        "fsck_hammer2" => Extra {
            description: &[
                "fsck_hammer2 verifies a HAMMER2 file system offline. It checks every volume-header copy that fits on every volume (magic, the sector-0, sector-1 and whole-header CRCs, staleness, field sanity), chooses the best copy as the kernel does (valid, highest mirror_tid), and verifies the check code of every blockref reachable from it through the topology and the freemap.",
                "Without -y or -p nothing is written. -p rewrites damaged header copies from the best copy, including the copy torn by an interrupted commit (HDR_TORN: it claims the transaction right after the best copy's, in the slot that commit writes, and nothing newer exists; that commit never completed, and a read-write mount's next flush would overwrite that slot anyway); -y also rewrites any other damaged copy that claims a newer commit (HDR_CORRUPT_NEWER: commits that did complete are lost, the file system rolls back to the best valid commit). The best copy itself is never written. Valid copies older than the best are normal after a commit and are only reported with -v; --sync-headers refreshes them.",
                "The freemap is checked against the topology: blocks in use marked free (FREEMAP_UNMARKED), a segment's packing offset pointing below blocks in use (FREEMAP_LINEAR: the next small allocation would overwrite them), and a freemap that lags the topology after a crash (FREEMAP_LAG, informational). -p and -y repair all three with the freemap recovery hammer2_recover performs (a full one, marking every block in use, when the problem is not confined to the lagging transactions), commit it as a new transaction, and check the freemap again; exit status 1 then says the file system was corrected, and a second run finds it clean.",
                "Each problem has an identifier from one central table (HDR_CORRUPT, BREF_CHECK, ...), printed with its location: the volume and header copy, or the blockref type, data_off, key/keybits and parent.",
            ],
            examples: &[
                ("Check an image, changing nothing:", "fsck_hammer2 disk.img"),
                ("Repair damaged header copies:", "fsck_hammer2 -p disk.img"),
                ("Machine-readable report of a two-volume set:", "fsck_hammer2 --json vol0.img:vol1.img"),
            ],
            exit_status: &[
                ("0", "No problems found."),
                ("1", "Problems were found and all were corrected."),
                ("4", "Problems were left uncorrected."),
                ("8", "Operational error (the device could not be opened or read)."),
                ("16", "Usage error."),
            ],
            see_also: SEE_ALSO,
        },
        "hammer2_dump" => Extra {
            description: &[
                "hammer2_dump prints HAMMER2 on-disk structures for people (tables) and scripts (--json). It opens devices read-only and never writes.",
                "volhdr shows every volume-header copy of every volume side by side: all fields, the three CRCs with their status, the super-root and freemap blockrefs, and which copy is in use. It works even when no copy is valid or a volume of the set is missing, which is when it is needed most.",
                "show prints the chain tree one blockref per line, indented by depth: type, data_off, key/keybits, radix, the three tids, methods, the check value and whether it verifies, statistics, dirent names and inode fields. It can start at a PFS (--pfs) or a blockref (--offset), stop at a depth (--depth), omit data blockrefs (--hide-data), read any header copy (--copy, --all-copies), include the freemap (--freemap), and stream one JSON object per line (--json). It never holds the whole tree in memory.",
                "freemap prints the freemap tree and a per-leaf allocation summary compared with the header's allocator_free; inode prints every field of one inode, by path or number; pfs lists the PFSs with their types, ids and inode counts.",
            ],
            examples: &[
                ("Every header copy of an image:", "hammer2_dump volhdr disk.img"),
                ("The headers of a two-volume set as JSON:", "hammer2_dump volhdr --json vol0.img:vol1.img"),
                ("The tree of the PFS DATA, two levels deep, without data blocks:", "hammer2_dump show --pfs DATA --depth 2 --hide-data disk.img"),
                ("One inode by path:", "hammer2_dump inode disk.img /etc/rc.conf"),
            ],
            exit_status: OTHER_EXIT,
            see_also: SEE_ALSO,
        },
        "hammer2_edit" => Extra {
            description: &[
                "hammer2_edit runs commands against a HAMMER2 file system offline: one command given after the device, one given with -R, or a script given with -f (one command per line, '#' comments; each command is echoed on standard error and failures are counted, as debugfs does).",
                "Commands work inside one PFS, chosen with --pfs (default: DATA, or the only PFS besides LOCAL). Read commands: ls [-l] [-a] [PATH] lists a directory; cat PATH writes a file to standard output; stat PATH shows every field of an inode; get [--force] PATH DEST extracts a file or a whole tree with modes, times, symlinks and hard links, keeping holes sparse; pfs lists the PFSs.",
                "Write commands: mkdir [-p] [-m MODE] PATH... creates directories (mode 0755 unless -m, owned by the invoking user; -p creates missing parents and accepts existing directories); put HOSTFILE PATH copies a host regular file, keeping its mode, owner and modification time (when PATH is an existing directory or ends in '/', the file goes into it under its host name; an existing file is not replaced, and directories cannot be put yet); rm [-d] PATH... removes files and symbolic links (-d: empty directories too); rmdir PATH... removes empty directories. Blocks of removed files stay allocated until a bulkfree, as with the kernel.",
                "The device is opened for writing only when the invocation holds a write command; a mounted device is then refused. All the write commands of one invocation (the command line, -R, or a whole script) form one transaction. They are committed by one full flush at the end (new blocks, the freemap, then the next volume-header copy), so mirror_tid grows by exactly one; a `commit` line of a script commits what came before it as a transaction of its own. The first command that fails stops everything, and nothing is written: the image stays byte-identical (what was already put into free space is put back). Read commands in such a script (ls, cat, stat, get, pfs-list) see the changes of the commands before them, committed or not: get extracts the uncommitted state, and pfs-list lists the PFSs created or deleted before it. The maintenance commands bulkfree and growfs may come anywhere in a script, as part of its one transaction (no implicit commit): bulkfree counts as in use both what the committed image reaches and what the commands before it put in, so it frees nothing the commit will reference (blocks the script stopped referencing stay allocated until a bulkfree of a later run); growfs fills the header copies that now fit with the header as last committed. A script with a write command also refuses to run if any of its lines is a usage error.",
                "With -n (--dry-run) the device is opened read-only, everything runs, each change is printed as 'would ...', and a last line gives the transaction the commit would be; nothing is written. After a real commit one line gives the transaction id, the header copy written and the data and node blocks written; -q prints nothing, --json prints the report (and the list of changes) as one JSON object.",
                "Paths inside the image are resolved from the PFS root, component by component, without following symbolic links. Empty and '.' components are ignored, so '/' and '.' name the root; a '..' component (or a NUL byte) is refused, never looked up: an image may hold an entry literally named '..'.",
                "get PATH DEST puts PATH into the host directory DEST under its own name (DEST/NAME); 'get / DEST' puts the contents of the PFS root into DEST itself, which then receives the root's mode and time. DEST is created if it is missing, but its parent must exist; nothing above DEST is created or changed. What get would create (DEST for '/', DEST/NAME otherwise) must not exist, or be an empty directory, unless --force is given; then, as tar does, an existing file, symbolic link or other non-directory is unlinked and created anew (never written through), an existing directory is reused, and other entries already there are left alone.",
                "Extraction never writes outside DEST: a name from the image that is empty, '.' or '..', or holds '/' or NUL, a name given twice in one directory, a directory named by two entries (which would make the tree a graph with exponentially many paths) or by one of its own descendants are refused with an error naming the path and the inode number; nesting and the number of entries read are bounded. Symbolic links are created, never followed. Device nodes, FIFOs and sockets are skipped and listed.",
                "Modes are applied as tar applies them for the invoking user. Run by root, files and directories get the stored owner, group and mode, setuid and setgid bits included (the owner first, so the bits keep their meaning). Run by another user, they belong to that user and get the stored mode minus the process umask, with setuid and setgid dropped.",
                "Exit status 2 (usage) is also given for a usage error inside a command (an unknown command or option, unbalanced quotes), in a script too: the other commands of a read-only script still run; a script with write commands runs none.",
            ],
            examples: &[
                ("List the root directory of the DATA PFS:", "hammer2_edit disk.img ls -l /"),
                ("Extract everything from the PFS ROOT:", "hammer2_edit --pfs ROOT disk.img get / ./out"),
                ("Extract /etc as ./out/etc, replacing what an earlier run left there:", "hammer2_edit disk.img get --force /etc ./out"),
                ("Run a script of commands:", "hammer2_edit -f commands.txt disk.img"),
                ("Create a directory and its parents:", "hammer2_edit disk.img mkdir -p /etc/rc.d"),
                ("Copy a host file into /etc (as /etc/rc.conf):", "hammer2_edit disk.img put ./rc.conf /etc/"),
                ("Show what a script of edits would change, writing nothing:", "hammer2_edit -n -f edits.txt disk.img"),
                ("Remove a file and an empty directory in one commit:", "hammer2_edit -R 'rm -d /tmp/old.log /tmp/empty' disk.img"),
            ],
            exit_status: &[("0", "Every command succeeded (and the write commands, if any, were committed)."), ("1", "A command failed (nothing was written), or the device could not be opened."), ("2", "Usage error, on the command line or in any command.")],
            see_also: SEE_ALSO,
        },
        "hammer2_recover" => Extra {
            description: &[
                "hammer2_recover performs, offline, the freemap recovery that DragonFly BSD runs when it mounts a HAMMER2 file system read-write (hammer2_recovery). The kernel lets the freemap lag the topology by one flush; after a crash between the two, the volume header's freemap_tid is below its mirror_tid, and blocks of the transactions in between are in use but may be marked free, so the next allocation could overwrite them.",
                "When freemap_tid is not below mirror_tid it prints 'no recovery needed' and writes nothing. Otherwise it prints the range of transactions (freemap_tid + 1 to mirror_tid), scans the topology from the volume header through every PFS, reading only blockrefs whose mirror_tid is newer than freemap_tid (so the cost follows what changed, not the size of the file system), and marks each such block allocated, creating freemap leaves where none exist. Unlike the kernel, it also moves each 4 MiB segment's packing offset (linear) past every block it recovers, so that blocks under 16 KiB the lost transaction packed into an already allocated chunk are not handed out again; and it marks the right bit pair of every 16 KiB chunk.",
                "The result is committed as one new transaction through the normal commit path: the freemap blocks into free rotation slots, a durability barrier, then the volume header to the next copy with freemap_tid equal to the new mirror_tid, and a second barrier. A crash during the recovery leaves the previous state, which hammer2_recover recovers again. Nothing is written unless every changed node could be read and verified. After writing, the new freemap is read back and every recovered block checked.",
                "--full marks every block the topology reaches, whatever its mirror_tid: it repairs a freemap that lost allocations older than freemap_tid, which no mount repairs (fsck_hammer2 -p uses it for that). A freemap whose own blocks are damaged cannot be replayed into. -n scans and reports without writing; the device is then opened read-only. A mounted device is refused.",
            ],
            examples: &[
                ("Recover an image after a crash (or learn that nothing is needed):", "hammer2_recover disk.img"),
                ("What would be marked, per PFS, without writing:", "hammer2_recover -n -v disk.img"),
                ("A two-volume set, report as JSON:", "hammer2_recover --json vol0.img:vol1.img"),
            ],
            exit_status: &[
                ("0", "The freemap is consistent: recovered, or no recovery was needed."),
                ("1", "Failure (the device, the freemap or a changed node could not be read); nothing was written."),
                ("2", "Usage error."),
            ],
            see_also: SEE_ALSO,
        },
        "hammer2_mount" => Extra {
            description: &[
                "hammer2_mount mounts one PFS of a HAMMER2 file system (an image file, a device, or a volume set) on a directory through FUSE, so that every program can read it: ls, cp, tar, rsync, a file manager. It needs /dev/fuse and fusermount3 (Debian package fuse3). Without -f it detaches once the kernel has the mount and runs as a daemon, logging to the system log (with -f: to standard error).",
                "Read-only (the default, -o ro): lookups, attributes, directory listings, file contents and symbolic links are served from the committed image on as many threads as the machine has cores. Inode numbers are HAMMER2's (hard links share one); mode, owner, size, times and device numbers are those hammer2_edit get restores; the access time shown is the stored one where one was set (utimensat, an import), else the modification time, as HAMMER2's kernel shows it (it does not update access times on reads). The image cannot change while it is mounted (see LOCKING), so the kernel keeps what it caches.",
                "Read-write (-o rw): files, directories, hard and symbolic links, FIFOs, sockets and device nodes can be created, written, truncated, renamed, linked and removed, and their mode, owner and times changed, through the same write engine as hammer2_edit. Changes are committed as HAMMER2 transactions by a flusher every commit=SECONDS (default 5) and whenever dirty=SIZE bytes (default 256M) were written since the last commit; fsync and the unmount commit too. A crash, a power cut or kill -9 of the daemon loses at most what was not committed yet: the last commit is a complete file system that both fscks find clean. A commit that fails turns the mount read-only (EROFS from then on) and says so in the log; what was committed before stays intact.",
                "Errors are those of a kernel file system: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG past 255 bytes, EXDEV across file systems, ENOSPC when the space left is the reserve removals need, EIO for damage. A file removed while it is open stays usable, with no links, until it is closed. Directories keep a link count of 1 and symbolic link targets are at most 1023 bytes, as in HAMMER2 (DragonFly's PATH_MAX is 1024).",
                "Damage met while serving a request (a check code that does not match, an unreadable block) fails that request with EIO and is logged with its location; the mount stays up. fusermount3 -u MOUNTPOINT (or umount as root) unmounts and ends the daemon.",
            ],
            examples: &[
                ("Mount the DATA PFS of an image read-only:", "hammer2_mount disk.img /mnt"),
                ("Mount the PFS ROOT in the foreground:", "hammer2_mount -f disk.img@ROOT /mnt"),
                ("Mount read-write, committing every 10 seconds:", "hammer2_mount -o rw,commit=10 disk.img /mnt"),
                ("Unmount:", "fusermount3 -u /mnt"),
            ],
            exit_status: &[
                ("0", "Mounted (with -f: served until unmounted)."),
                ("1", "Failure; the reason is printed on standard error."),
                ("2", "Usage error."),
            ],
            see_also: SEE_ALSO,
        },
        other => panic!("no man page text for {other}"),
    }
}

/// The LOCKING section: which lock the tool takes, then what every tool shares.
fn locking(name: &str) -> Vec<&'static str> {
    let which = match name {
        "newfs_hammer2" => "newfs_hammer2 holds an exclusive lock on every volume from before it reads their sizes until it has formatted (and populated) them; an image file it creates is locked as it is created, before anything is written to it. With -n it holds a shared lock.",
        "fsck_hammer2" => "fsck_hammer2 holds a shared lock while it only checks (-n, the default) and an exclusive lock with -p or -y, for the whole run, across the passes that reopen the device. When the lock cannot be taken it exits with status 8.",
        "hammer2_dump" => "hammer2_dump only reads: it holds a shared lock for the whole run, so any number of dumps, checks and read-only edits may run together, but not while a writer runs.",
        "hammer2_edit" => "hammer2_edit holds an exclusive lock when the invocation holds a write command, and a shared lock when it only reads or with -n (--dry-run), so read-only runs never block each other.",
        "hammer2_mount" => "hammer2_mount holds a shared lock for as long as a read-only mount is up, so checks, dumps and other read-only mounts may run beside it but no writer, and an exclusive lock for as long as a read-write mount is up.",
        _ => "hammer2_recover holds an exclusive lock for the whole run (a shared one with -n).",
    };
    vec![
        which,
        "Every tool of this toolkit locks every volume it opens, for its whole run: a run that writes holds an exclusive lock on each volume of the set, a run that only reads holds a shared one. So two writers never run on one file system at once (each would allocate the same free blocks and overwrite the other's header copies), and a reader never sees a commit half-way (it could read blocks a writer is reusing and report damage that is not there). The locks are open file description locks (fcntl F_OFD_SETLK over the whole file) on image files and block devices alike; QEMU takes the same kind on image files, so a virtual machine using an image and a writer here refuse each other too. A block device opened for writing is also opened with O_EXCL, as mkfs and e2fsck do: the kernel refuses it while it is mounted or another process holds it open exclusively. A mounted device is always refused for writing.",
        "A run that cannot take its lock writes nothing and fails at once, naming the volume and, when the system tells, the process holding it, e.g. 'disk.img: in use by another hammer2 tool (pid 1234, hammer2_edit); try again later or pass --wait'. With --wait it waits until the volume is free instead; with --wait=SECONDS it gives up after that many seconds. The volumes of a multi-volume set are locked one by one in a fixed order (by device and inode number), so two runs waiting for each other's volumes cannot deadlock.",
        "The kernel releases the locks when the process ends, however it ends: a tool killed with SIGKILL leaves no stale lock, and the file system is as its last commit left it. A run on a loop device also locks the image file behind it, so runs on the image and on the loop device see each other. The locks are advisory: programs that do not take them (dd, for one) are not kept out.",
        "An I/O error on a volume (a failed read, write or durability barrier, e.g. EIO or ENOSPC) in the middle of a writing run stops the run at once: the error names the volume and offset, and nothing more is written to any volume of the set, not even the undo of what the run already wrote. What the run wrote lies in space the last commit does not reach, so the file system stays as its last commit left it (or, when only the barrier after the new volume header failed, as the new commit left it) and checks clean.",
    ]
}

/// Escapes text for roff: backslashes, hyphens as minus signs, leading dots.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn man_page(cmd: clap::Command) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let x = extra(&name);
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("HAMMER2 offline toolkit")
        .source(format!("hammer2 {}", env!("CARGO_PKG_VERSION")))
        .date("");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    let mut s = String::from(".SH DESCRIPTION\n");
    for p in x.description {
        s.push_str(&format!(".PP\n{}\n", roff(p)));
    }
    out.extend_from_slice(s.as_bytes());
    man.render_options_section(&mut out).unwrap();
    if man_has_subcommands(&name) {
        man.render_subcommands_section(&mut out).unwrap();
    }
    let mut s = String::from(".SH LOCKING\n");
    for p in locking(&name) {
        s.push_str(&format!(".PP\n{}\n", roff(p)));
    }
    s.push_str(".SH \"EXIT STATUS\"\n");
    for (code, what) in x.exit_status {
        s.push_str(&format!(".TP\n.B {code}\n{}\n", roff(what)));
    }
    s.push_str(".SH EXAMPLES\n");
    for (what, cmdline) in x.examples {
        s.push_str(&format!(".PP\n{}\n.PP\n.RS 4\n.nf\n{}\n.fi\n.RE\n", roff(what), roff(cmdline)));
    }
    s.push_str(".SH \"SEE ALSO\"\n");
    let refs: Vec<String> = x
        .see_also
        .iter()
        .filter(|r| **r != name)
        .map(|r| match r.split_once('(') {
            Some((n, sec)) => format!(".BR {} ({}", roff(n), sec),
            None => format!(".BR {} (8)", roff(r)),
        })
        .collect();
    s.push_str(&refs.join(" ,\n"));
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
    man.render_version_section(&mut out).unwrap();
    out
}

fn man_has_subcommands(name: &str) -> bool {
    name == "hammer2_dump"
}

/// Every generated file: path relative to the crate root, contents.
pub fn generated_files() -> Vec<(PathBuf, Vec<u8>)> {
    use clap_complete::{generate, Shell};
    let mut files = Vec::new();
    for cmd in hammer2::cli::commands() {
        let name = cmd.get_name().to_string();
        files.push((PathBuf::from(format!("man/{name}.8")), man_page(cmd.clone())));
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut buf = Vec::new();
            generate(shell, &mut cmd.clone(), name.clone(), &mut buf);
            files.push((PathBuf::from(format!("completions/{file}")), buf));
        }
    }
    files
}
