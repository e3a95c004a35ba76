//! hammer2_edit: read and edit a HAMMER2 file system offline.

mod common;

use anyhow::Context;
use clap::Parser;
use hammer2::cli::edit::{EditCli, EditCommand, EditLine};
use hammer2::device::{Access, Device};
use hammer2::extract::{extract_with, ExtractOptions};
use hammer2::file::{read_file, read_link, WriteSink};
use hammer2::flush::CommitReport;
use hammer2::format::ObjType;
use hammer2::fsops::{Attrs, PfsRef, Session};
use hammer2::namespace;
use hammer2::pfs::{Inode, Pfs};
use hammer2::tree::Tree;
use hammer2::{CopyChoice, Hammer2};
use std::io::{BufRead, Write};

fn main() {
    let cli = EditCli::parse();
    common::run("hammer2_edit", || run(cli))
}

/// The commands to run: (text to echo, words). A line that cannot be split
/// into words is a usage error, and nothing runs.
fn commands(cli: &EditCli) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let split = |line: &str| {
        shlex::split(line).ok_or_else(|| common::usage(format!("unbalanced quotes in {line:?}")))
    };
    if let Some(r) = &cli.request {
        return Ok(vec![(r.clone(), split(r)?)]);
    }
    if let Some(path) = &cli.script {
        let reader: Box<dyn BufRead> = if path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?,
            ))
        };
        let mut out = Vec::new();
        for line in reader.lines() {
            let line = line?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            out.push((t.to_string(), split(t)?));
        }
        return Ok(out);
    }
    if cli.command.is_empty() {
        return Err(common::usage("no command given (try: ls, cat, stat, get, pfs; or -R CMD, -f SCRIPT)"));
    }
    Ok(vec![(cli.command.join(" "), cli.command.clone())])
}

/// One command line, parsed.
enum Step {
    Run(EditCommand),
    /// `help` and the like: clap's text, printed when the step is reached.
    Help(clap::Error),
    /// A usage error inside the command.
    Bad(clap::Error),
}

fn run(cli: EditCli) -> anyhow::Result<i32> {
    let steps: Vec<(String, Step)> = commands(&cli)?
        .into_iter()
        .map(|(text, words)| {
            let step = match EditLine::try_parse_from(&words) {
                Ok(line) => Step::Run(line.cmd),
                Err(ce) if !ce.use_stderr() => Step::Help(ce),
                Err(ce) => Step::Bad(ce),
            };
            (text, step)
        })
        .collect();
    if steps.iter().any(|(_, s)| matches!(s, Step::Run(c) if c.writes())) {
        return run_writing(&cli, steps);
    }
    run_reading(&cli, steps)
}

/// An invocation of read commands only: the device is opened read-only,
/// and a failing command does not stop the others (they are counted).
fn run_reading(cli: &EditCli, steps: Vec<(String, Step)>) -> anyhow::Result<i32> {
    let device = Device::open(&cli.device, Access::ReadOnly).context("cannot open device")?;
    let choice = cli.copy.map_or(CopyChoice::Best, CopyChoice::Index);
    let fs = Hammer2::open(device, choice).context("cannot open file system")?;
    let tree = Tree::new(&fs);
    let echo = cli.script.is_some();
    let total = steps.len();
    let mut failures = 0;
    let mut usage_errors = 0;
    for (text, step) in steps {
        if echo {
            eprintln!("hammer2_edit: {text}");
        }
        let cmd = match step {
            Step::Run(cmd) => cmd,
            Step::Help(ce) => {
                print!("{}", ce.render());
                continue;
            }
            Step::Bad(ce) => {
                eprint!("hammer2_edit: {text}: {}", ce.render());
                failures += 1;
                usage_errors += 1;
                continue;
            }
        };
        if let Err(e) = execute(&tree, || pfs_view(&tree, cli.pfs.as_deref()), cmd) {
            common::report_error(&format!("hammer2_edit: {text}"), &e);
            failures += 1;
        }
    }
    if echo && failures > 0 {
        eprintln!("hammer2_edit: {failures} of {total} commands failed");
    }
    Ok(if usage_errors > 0 {
        common::EXIT_USAGE
    } else if failures > 0 {
        common::EXIT_FAILURE
    } else {
        common::EXIT_OK
    })
}

/// The PFS the read commands work in.
fn pfs_view<'a>(tree: &Tree<'a>, label: Option<&str>) -> anyhow::Result<Pfs<'a>> {
    Ok(match label {
        Some(l) => Pfs::find(tree, l)?,
        None => Pfs::default(tree)?,
    })
}

/// What a commit (or a dry run's trial commit) did, for the summary line
/// and `--json`.
#[derive(serde::Serialize)]
struct EditReport {
    /// False for a dry run.
    written: bool,
    /// The transaction id (the new mirror_tid).
    tid: u64,
    /// The volume-header copy written.
    header_copy: usize,
    /// Data and node blocks written (the freemap's own blocks not counted).
    blocks: u64,
    bytes: u64,
    allocator_free: u64,
    /// What the write commands changed, in order.
    changes: Vec<String>,
}

impl EditReport {
    fn new(session: &Session, commit: &CommitReport, changes: Vec<String>) -> Self {
        EditReport {
            written: commit.written,
            tid: commit.tid,
            header_copy: commit.copy,
            blocks: session.stats.blocks + commit.flush.blocks,
            bytes: session.stats.bytes + commit.flush.bytes,
            allocator_free: commit.allocator_free,
            changes,
        }
    }

    fn counts(&self) -> String {
        format!(
            "transaction {:#x}, header copy {}, {} blocks ({})",
            self.tid,
            self.header_copy,
            self.blocks,
            common::human_bytes(self.bytes)
        )
    }
}

/// An invocation with write commands: one transaction, all or nothing.
///
/// Pass 1 runs every command (reads too) on a session that writes nothing,
/// and tries the commit without writing: a failing command stops it with
/// the image untouched. Without --dry-run, pass 2 then applies the write
/// commands again on a writing session and commits them. Two passes,
/// because the session writes a new file's data blocks (into free space)
/// as it goes: a failure after a `put` in one pass would leave those bytes
/// behind, where a failed script must leave the image byte-identical.
fn run_writing(cli: &EditCli, steps: Vec<(String, Step)>) -> anyhow::Result<i32> {
    if cli.copy.is_some() {
        return Err(common::usage(
            "--copy reads an older header copy; it cannot be used with write commands",
        ));
    }
    let bad: Vec<&str> =
        steps.iter().filter(|(_, s)| matches!(s, Step::Bad(_))).map(|(t, _)| t.as_str()).collect();
    if !bad.is_empty() {
        for (text, step) in &steps {
            if let Step::Bad(ce) = step {
                eprint!("hammer2_edit: {text}: {}", ce.render());
            }
        }
        eprintln!(
            "hammer2_edit: {} of {} commands are not valid; nothing was run or written",
            bad.len(),
            steps.len()
        );
        return Ok(common::EXIT_USAGE);
    }
    let dry = cli.dry_run;
    let text_out = !cli.quiet && !cli.json;

    // Pass 1: everything, writing nothing.
    let access = if dry { Access::ReadOnly } else { Access::ReadWrite };
    let device = Device::open(&cli.device, access).map_err(|e| match e {
        hammer2::Error::Mounted { .. } => anyhow::Error::new(e)
            .context("cannot open the device for writing (unmount it first; --dry-run only reads)"),
        e if dry => anyhow::Error::new(e).context("cannot open device"),
        e => anyhow::Error::new(e).context("cannot open the device for writing"),
    })?;
    let fs = Hammer2::open(device, CopyChoice::Best).context("cannot open file system")?;
    let mut session = Session::from_fs(fs, false).context("cannot edit the file system")?;
    let echo = cli.script.is_some();
    let mut pfs = None;
    let mut changes = Vec::new();
    let mut wrote = false;
    let mut noted = false;
    for (i, (text, step)) in steps.iter().enumerate() {
        if echo {
            eprintln!("hammer2_edit: {text}");
        }
        let result = match step {
            Step::Bad(_) => unreachable!("refused above"),
            Step::Help(ce) => {
                print!("{}", ce.render());
                Ok(())
            }
            Step::Run(cmd) if cmd.writes() => {
                wrote = true;
                let before = changes.len();
                let r = session_pfs(&session, &mut pfs, cli)
                    .and_then(|p| apply(&mut session, &p, cmd, &mut changes));
                if dry && text_out {
                    for c in &changes[before..] {
                        println!("would {c}");
                    }
                }
                r
            }
            Step::Run(cmd) => {
                if wrote && !noted {
                    noted = true;
                    eprintln!(
                        "hammer2_edit: note: read commands show the image as it was before this run, \
                         without the changes of earlier commands"
                    );
                }
                let tree = Tree::new(&session.fs);
                execute(&tree, || pfs_view(&tree, cli.pfs.as_deref()), cmd.clone())
            }
        };
        if let Err(e) = result {
            common::report_error(&format!("hammer2_edit: {text}"), &e);
            eprintln!(
                "hammer2_edit: command {} of {} failed; nothing was written{}",
                i + 1,
                steps.len(),
                if dry { " (dry run)" } else { "" }
            );
            return Ok(common::EXIT_FAILURE);
        }
    }
    if !session.is_dirty() {
        if text_out {
            println!("nothing to commit: the commands changed nothing");
        }
        if cli.json {
            common::print_json(&serde_json::json!({ "written": false, "changes": changes }))?;
        }
        return Ok(common::EXIT_OK);
    }
    // The trial commit: the flush and its allocations, without writes.
    let trial = session.commit().context("the commit would fail; nothing was written")?;
    if dry {
        let report = EditReport::new(&session, &trial, changes);
        if cli.json {
            common::print_json(&report)?;
        } else if !cli.quiet {
            println!("dry run: nothing written (the commit would be {})", report.counts());
        }
        return Ok(common::EXIT_OK);
    }
    drop(session);

    // Pass 2: the write commands again, for real.
    let mut session = Session::open(&cli.device, false).context("cannot open the file system for writing")?;
    let p = session_pfs(&session, &mut None, cli)?;
    let mut replayed = Vec::new();
    for (text, step) in &steps {
        if let Step::Run(cmd) = step {
            if cmd.writes() {
                apply(&mut session, &p, cmd, &mut replayed).map_err(|e| {
                    e.context(format!(
                        "{text} (failed when applied, after it had been checked; nothing committed)"
                    ))
                })?;
            }
        }
    }
    if replayed != changes {
        anyhow::bail!(
            "the image or a host file changed between checking and applying the commands; nothing committed"
        );
    }
    let commit = session.commit().context("commit failed; the image keeps its previous state")?;
    if cli.debug_lag_freemap {
        let lag = hammer2::recover::lag_freemap(&mut session.fs).context("--debug-lag-freemap")?;
        eprintln!(
            "hammer2_edit: debug: header copy #{} now carries the freemap of copy #{} (freemap_tid {:#x}, mirror_tid {:#x})",
            lag.copy, lag.from_copy, lag.freemap_tid, lag.mirror_tid
        );
    }
    let report = EditReport::new(&session, &commit, changes);
    if cli.json {
        common::print_json(&report)?;
    } else if !cli.quiet {
        println!("committed {}", report.counts());
    }
    Ok(common::EXIT_OK)
}

/// The PFS the write commands work in, found once.
fn session_pfs(session: &Session, cache: &mut Option<PfsRef>, cli: &EditCli) -> anyhow::Result<PfsRef> {
    if let Some(p) = cache {
        return Ok(p.clone());
    }
    let p = session.pfs(cli.pfs.as_deref())?;
    *cache = Some(p.clone());
    Ok(p)
}

/// The components of an image path (checked as the read commands check
/// them: no '..', no NUL), and the path written canonically.
fn canonical(path: &str) -> anyhow::Result<(Vec<&str>, String)> {
    let parts = namespace::user_path(path)?;
    let text = format!("/{}", parts.join("/"));
    Ok((parts, text))
}

/// What an entry is, in words.
fn kind_name(t: ObjType) -> String {
    match t {
        ObjType::Directory => "directory".into(),
        ObjType::Regfile => "file".into(),
        ObjType::Softlink => "symbolic link".into(),
        t => t.name().into_owned(),
    }
}

/// Applies one write command to `session`; appends what it changed.
fn apply(
    session: &mut Session,
    pfs: &PfsRef,
    cmd: &EditCommand,
    changes: &mut Vec<String>,
) -> anyhow::Result<()> {
    match cmd {
        EditCommand::Mkdir { parents, mode, paths } => {
            let mode = mode.unwrap_or(0o755);
            for path in paths {
                let (parts, text) = canonical(path)?;
                // Which directories this creates: with -p, the missing tail.
                let mut created = Vec::new();
                if *parents {
                    for i in 1..=parts.len() {
                        let prefix = format!("/{}", parts[..i].join("/"));
                        if created.is_empty() {
                            match session.resolve_parent(pfs, &prefix) {
                                Ok((_, _, None)) => created.push(prefix),
                                Ok(_) => {}
                                Err(_) => break, // mkdir says why
                            }
                        } else {
                            created.push(prefix);
                        }
                    }
                } else {
                    created.push(text);
                }
                session.mkdir(pfs, path, Attrs::now(mode), *parents)?;
                changes
                    .extend(created.into_iter().map(|d| format!("create directory {d} (mode {mode:04o})")));
            }
        }
        EditCommand::Put { host, path } => {
            let meta = std::fs::metadata(host).with_context(|| format!("cannot read {host}"))?;
            if meta.is_dir() {
                anyhow::bail!(
                    "{host}: is a directory; put copies one regular file (directories are not supported yet)"
                );
            }
            if !meta.is_file() {
                anyhow::bail!("{host}: not a regular file; put copies regular files only");
            }
            let (_, mut target) = canonical(path)?;
            let into_dir = path.ends_with('/')
                || matches!(session.resolve_parent(pfs, path),
                    Ok((_, name, e)) if name.is_empty() || e.as_ref().is_some_and(|e| e.obj_type == ObjType::Directory));
            if into_dir {
                let name = std::path::Path::new(host)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{host}: no usable file name; give the full image path"))?;
                target = if target == "/" { format!("/{name}") } else { format!("{target}/{name}") };
            }
            session.put(pfs, std::path::Path::new(host), &target)?;
            changes.push(format!("create file {target} ({} bytes from {host})", meta.len()));
        }
        EditCommand::Rm { dirs, paths } => {
            for path in paths {
                remove(session, pfs, path, *dirs, false, changes)?;
            }
        }
        EditCommand::Rmdir { paths } => {
            for path in paths {
                remove(session, pfs, path, true, true, changes)?;
            }
        }
        _ => anyhow::bail!("internal error: a read command on the write path"),
    }
    Ok(())
}

/// `rm` (`dirs`: `-d`) and `rmdir` (`only_dirs`).
fn remove(
    session: &mut Session,
    pfs: &PfsRef,
    path: &str,
    dirs: bool,
    only_dirs: bool,
    changes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let (_, text) = canonical(path)?;
    let (_, name, entry) = session.resolve_parent(pfs, path)?;
    if name.is_empty() {
        anyhow::bail!("{path}: the root directory cannot be removed");
    }
    let entry = entry.ok_or_else(|| hammer2::Error::NotFound(text.clone()))?;
    let is_dir = entry.obj_type == ObjType::Directory;
    if only_dirs && !is_dir {
        return Err(hammer2::Error::NotADirectory(text).into());
    }
    if is_dir && !dirs {
        anyhow::bail!("{text}: is a directory (use rmdir or rm -d)");
    }
    session.remove(pfs, path, is_dir)?;
    changes.push(format!("remove {} {text}", kind_name(entry.obj_type)));
    Ok(())
}

fn execute<'a>(
    tree: &Tree<'a>,
    pfs: impl Fn() -> anyhow::Result<Pfs<'a>>,
    cmd: EditCommand,
) -> anyhow::Result<()> {
    match cmd {
        EditCommand::Mkdir { .. }
        | EditCommand::Put { .. }
        | EditCommand::Rm { .. }
        | EditCommand::Rmdir { .. } => {
            anyhow::bail!("internal error: a write command on the read-only path")
        }
        EditCommand::Pfs => {
            for p in Pfs::list(tree)? {
                let m = &p.root.data.meta;
                println!(
                    "{:<16} {:<10} {}",
                    p.name(),
                    m.pfs_type(),
                    hammer2::format::uuid_from_disk(&m.pfs_clid)
                );
            }
        }
        EditCommand::Cat { path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            if ino.is_dir() {
                return Err(hammer2::Error::IsADirectory(path).into());
            }
            let stdout = std::io::stdout();
            let mut sink = WriteSink(std::io::BufWriter::new(stdout.lock()));
            read_file(tree, &ino, &mut sink)?;
            sink.0.flush()?;
        }
        EditCommand::Stat { json, path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            let report = hammer2::dump::inode::describe(&pfs.name(), Some(path), &ino);
            if json {
                common::print_json(&report)?;
            } else {
                print!("{}", report.to_text());
            }
        }
        EditCommand::Ls { long, all, path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if !ino.is_dir() {
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                print_entry(tree, &ino, name.as_bytes(), long, &mut out)?;
            } else {
                let mut entries = pfs.readdir(&ino)?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for e in entries.iter().filter(|e| all || !e.name.starts_with(b".")) {
                    if long {
                        let child = pfs.inode(e.inum)?;
                        print_entry(tree, &child, &e.name, true, &mut out)?;
                    } else {
                        out.write_all(&e.name)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.flush()?;
        }
        EditCommand::Get { force, path, hostdir } => {
            let pfs = pfs()?;
            let bar = common::stderr_is_terminal().then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            });
            let opts = ExtractOptions { force, ..ExtractOptions::default() };
            let stats = extract_with(&pfs, &path, std::path::Path::new(&hostdir), &opts, &mut |s| {
                if let Some(pb) = &bar {
                    if (s.files + s.dirs) % 64 == 0 {
                        pb.set_message(format!("{} files, {}", s.files, common::human_bytes(s.bytes)));
                    }
                }
            });
            if let Some(pb) = bar {
                pb.finish_and_clear();
            }
            let stats = stats?;
            for s in &stats.skipped {
                eprintln!("hammer2_edit: skipped {s}");
            }
            eprintln!(
                "extracted {} files ({}), {} directories, {} symlinks, {} hard links",
                stats.files,
                common::human_bytes(stats.bytes),
                stats.dirs,
                stats.symlinks,
                stats.hardlinks
            );
        }
    }
    Ok(())
}

fn print_entry(
    tree: &Tree<'_>,
    ino: &Inode<'_>,
    name: &[u8],
    long: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if long {
        let m = &ino.data.meta;
        write!(
            out,
            "{} {:>3} {:>5} {:>5} {:>10} {} ",
            mode_string(ino.obj_type(), m.mode.get()),
            m.nlinks.get(),
            m.unix_uid(),
            m.unix_gid(),
            m.size.get(),
            hammer2::timefmt::short(m.mtime.get())
        )?;
    }
    out.write_all(name)?;
    if long && ino.obj_type() == ObjType::Softlink {
        out.write_all(b" -> ")?;
        out.write_all(&read_link(tree, ino)?)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// `drwxr-xr-x` as ls(1) prints it.
fn mode_string(t: ObjType, mode: u32) -> String {
    let kind = match t {
        ObjType::Directory => 'd',
        ObjType::Softlink => 'l',
        ObjType::Fifo => 'p',
        ObjType::Cdev => 'c',
        ObjType::Bdev => 'b',
        ObjType::Socket => 's',
        _ => '-',
    };
    let mut s = String::from(kind);
    for (shift, special, set_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => set_char,
            (true, false) => set_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}
