//! The editor behind `hammer2_edit`: runs a list of commands (from the
//! command line, `-c` or a script) on one file system. Read commands print
//! to the caller's output; write commands change a [`Session`] that is
//! committed as one transaction at the end. The editor never prints on its
//! own: what the user should see (echoed commands, failures, the changes of
//! a dry run, notes) goes through [`Events`], and the result of the run
//! comes back as an [`Outcome`].

mod maint;
pub mod script;

use crate::cli::edit::{EditCommand, EditLine};
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::extract::{extract_with, ExtractOptions, ExtractStats};
use crate::file::{read_file, read_link, WriteSink};
use crate::flush::CommitReport;
use crate::format::ObjType;
use crate::fsops::{Attrs, PfsRef, Session};
use crate::namespace;
use crate::pfs::{Inode, Pfs};
use crate::tree::Tree;
use crate::{CopyChoice, Hammer2};
use clap::Parser;
use std::io::Write;

pub use script::Line;

/// How to run the commands.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PFS to work in (None: DATA, or the only one besides LOCAL).
    pub pfs: Option<String>,
    /// Volume-header copy to read (read commands only).
    pub copy: Option<usize>,
    /// Run everything, write nothing.
    pub dry_run: bool,
    /// Tests: after the commit, put the previous copy's freemap back.
    pub debug_lag_freemap: bool,
}

/// What the user should see while commands run.
pub trait Events {
    /// A command is about to run.
    fn echo(&mut self, _text: &str) {}
    /// A command failed.
    fn failed(&mut self, _text: &str, _error: &Error) {}
    /// A command line that is not a valid command (clap's rendered text).
    fn invalid(&mut self, _text: &str, _why: &str) {}
    /// In a dry run: a change a write command would make.
    fn would(&mut self, _change: &str) {}
    /// Something worth knowing about how the run works.
    fn note(&mut self, _msg: &str) {}
    /// `get` progress.
    fn extracting(&mut self, _stats: &ExtractStats) {}
    /// `get` finished.
    fn extracted(&mut self, _stats: &ExtractStats) {}
}

/// Events that nobody watches.
pub struct Silent;
impl Events for Silent {}

/// One command line, parsed.
pub enum Parsed {
    Run(EditCommand),
    /// `help` and the like: clap's text, printed when the command is reached.
    Help(String),
    /// A usage error (clap's rendered text).
    Bad(String),
}

/// Parses a command's words.
pub fn parse(words: &[String]) -> Parsed {
    match EditLine::try_parse_from(words) {
        Ok(line) => Parsed::Run(line.cmd),
        Err(ce) if !ce.use_stderr() => Parsed::Help(ce.render().to_string()),
        Err(ce) => Parsed::Bad(ce.render().to_string()),
    }
}

/// What a commit (or a dry run's trial commit) did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EditReport {
    /// False for a dry run.
    pub written: bool,
    /// The transaction id (the new mirror_tid).
    pub tid: u64,
    /// The volume-header copy written.
    pub header_copy: usize,
    /// Data and node blocks written (the freemap's own blocks not counted).
    pub blocks: u64,
    pub bytes: u64,
    pub allocator_free: u64,
    /// What the write commands changed, in order.
    pub changes: Vec<String>,
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
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Commands given.
    pub commands: usize,
    /// Commands that failed (usage errors included).
    pub failures: usize,
    /// Commands that are not valid commands.
    pub usage_errors: usize,
    /// Whether write commands were given (the device was opened for writing).
    pub writing: bool,
    /// The 0-based index of the command that stopped a writing run: nothing
    /// was written.
    pub aborted: Option<usize>,
    /// The commit (or the dry run's trial commit); None when nothing changed.
    pub report: Option<EditReport>,
    /// What the write commands changed (also when nothing was committed).
    pub changes: Vec<String>,
    /// Set by `debug_lag_freemap`.
    pub lagged: Option<crate::recover::Lagged>,
}

/// Runs `lines` on the file system `device`. Read commands print on `out`.
/// An `Err` is a failure of the run itself (the device cannot be opened,
/// the commit fails); a failing command is counted in the [`Outcome`].
pub fn run(
    device: &str,
    opts: &Options,
    lines: &[Line],
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<Outcome> {
    let steps: Vec<(&Line, Parsed)> = lines.iter().map(|l| (l, parse(&l.words))).collect();
    if steps.iter().any(|(_, s)| matches!(s, Parsed::Run(c) if c.writes())) {
        return run_writing(device, opts, steps, out, events);
    }
    run_reading(device, opts, steps, out, events)
}

/// Read commands only: the device is opened read-only, and a failing
/// command does not stop the others (they are counted).
fn run_reading(
    device: &str,
    opts: &Options,
    steps: Vec<(&Line, Parsed)>,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<Outcome> {
    let device = Device::open(device, Access::ReadOnly)?;
    let choice = opts.copy.map_or(CopyChoice::Best, CopyChoice::Index);
    let fs = Hammer2::open(device, choice)?;
    let tree = Tree::new(&fs);
    let mut outcome = Outcome { commands: steps.len(), ..Outcome::default() };
    for (line, step) in steps {
        events.echo(&line.text);
        let cmd = match step {
            Parsed::Run(cmd) => cmd,
            Parsed::Help(text) => {
                out.write_all(text.as_bytes()).map_err(stdout_error)?;
                continue;
            }
            Parsed::Bad(why) => {
                events.invalid(&line.text, &why);
                outcome.failures += 1;
                outcome.usage_errors += 1;
                continue;
            }
        };
        if let Err(e) = execute(&tree, || pfs_view(&tree, opts.pfs.as_deref()), cmd, out, events) {
            events.failed(&line.text, &e);
            outcome.failures += 1;
        }
    }
    Ok(outcome)
}

/// The PFS the read commands work in.
fn pfs_view<'a>(tree: &Tree<'a>, label: Option<&str>) -> Result<Pfs<'a>> {
    match label {
        Some(l) => Pfs::find(tree, l),
        None => Pfs::default(tree),
    }
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io { path: "standard output".into(), op: "write", offset: 0, source }
}

/// Write commands: one transaction, all or nothing.
///
/// Pass 1 runs every command (reads too) on a session that writes nothing,
/// and tries the commit without writing: a failing command stops it with
/// the image untouched. Without a dry run, pass 2 then applies the write
/// commands again on a writing session and commits them. Two passes,
/// because the session writes a new file's data blocks (into free space)
/// as it goes: a failure after a `put` in one pass would leave those bytes
/// behind, where a failed script must leave the image byte-identical.
fn run_writing(
    device: &str,
    opts: &Options,
    steps: Vec<(&Line, Parsed)>,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<Outcome> {
    let mut outcome = Outcome { commands: steps.len(), writing: true, ..Outcome::default() };
    if opts.copy.is_some() {
        return Err(Error::Usage(
            "--copy reads an older header copy; it cannot be used with write commands".into(),
        ));
    }
    let mut bad = 0;
    for (line, step) in &steps {
        if let Parsed::Bad(why) = step {
            events.invalid(&line.text, why);
            bad += 1;
        }
    }
    if bad > 0 {
        outcome.failures = bad;
        outcome.usage_errors = bad;
        return Ok(outcome);
    }
    let dry = opts.dry_run;

    // Pass 1: everything, writing nothing.
    let access = if dry { Access::ReadOnly } else { Access::ReadWrite };
    let dev = Device::open(device, access).map_err(|e| match e {
        Error::Open { path, why } if !dry => {
            Error::Open { path, why: format!("cannot open the device for writing: {why}") }
        }
        e => e,
    })?;
    let fs = Hammer2::open(dev, CopyChoice::Best)?;
    let mut session = Session::from_fs(fs, false)?;
    let mut pfs = None;
    let mut changes = Vec::new();
    let mut wrote = false;
    let mut noted = false;
    for (i, (line, step)) in steps.iter().enumerate() {
        events.echo(&line.text);
        let result = match step {
            Parsed::Bad(_) => unreachable!("refused above"),
            Parsed::Help(text) => out.write_all(text.as_bytes()).map_err(stdout_error),
            Parsed::Run(cmd) if cmd.writes() => {
                wrote = true;
                let before = changes.len();
                let r = apply_any(&mut session, &mut pfs, opts, cmd, &mut changes);
                if dry {
                    for c in &changes[before..] {
                        events.would(c);
                    }
                }
                r
            }
            Parsed::Run(cmd) => {
                if wrote && !noted {
                    noted = true;
                    events.note(
                        "read commands show the image as it was before this run, \
                         without the changes of earlier commands",
                    );
                }
                let tree = Tree::new(&session.fs);
                execute(&tree, || pfs_view(&tree, opts.pfs.as_deref()), cmd.clone(), out, events)
            }
        };
        if let Err(e) = result {
            events.failed(&line.text, &e);
            outcome.failures = 1;
            outcome.aborted = Some(i);
            outcome.changes = changes;
            return Ok(outcome);
        }
    }
    if !session.is_dirty() {
        outcome.changes = changes;
        return Ok(outcome);
    }
    // The trial commit: the flush and its allocations, without writes.
    let trial = session.commit()?;
    if dry {
        outcome.report = Some(EditReport::new(&session, &trial, changes.clone()));
        outcome.changes = changes;
        return Ok(outcome);
    }
    drop(session);

    // Pass 2: the write commands again, for real.
    let mut session = Session::open(device, false)?;
    let mut pfs = None;
    let mut replayed = Vec::new();
    for (line, step) in &steps {
        if let Parsed::Run(cmd) = step {
            if cmd.writes() {
                apply_any(&mut session, &mut pfs, opts, cmd, &mut replayed).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "{}: {e} (failed when applied, after it had been checked; nothing committed)",
                        line.text
                    ))
                })?;
            }
        }
    }
    if replayed != changes {
        return Err(Error::InvalidArgument(
            "the image or a host file changed between checking and applying the commands; nothing committed"
                .into(),
        ));
    }
    let commit = session.commit()?;
    if opts.debug_lag_freemap {
        outcome.lagged = Some(crate::recover::lag_freemap(&mut session.fs)?);
    }
    outcome.report = Some(EditReport::new(&session, &commit, changes.clone()));
    outcome.changes = changes;
    Ok(outcome)
}

/// The PFS the write commands work in, found once.
fn session_pfs(session: &Session, cache: &mut Option<PfsRef>, opts: &Options) -> Result<PfsRef> {
    if let Some(p) = cache {
        return Ok(p.clone());
    }
    let p = session.pfs(opts.pfs.as_deref())?;
    *cache = Some(p.clone());
    Ok(p)
}

/// The components of an image path (checked as the read commands check
/// them: no '..', no NUL), and the path written canonically.
fn canonical(path: &str) -> Result<(Vec<&str>, String)> {
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

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Applies one write command; maintenance commands find their PFS
/// themselves (some need none), the others work in the editor's PFS.
fn apply_any(
    session: &mut Session,
    pfs: &mut Option<PfsRef>,
    opts: &Options,
    cmd: &EditCommand,
    changes: &mut Vec<String>,
) -> Result<()> {
    if let EditCommand::Maint(m) = cmd {
        return maint::apply(session, opts.pfs.as_deref(), m, changes);
    }
    let p = session_pfs(session, pfs, opts)?;
    apply(session, &p, cmd, changes)
}

/// Applies one write command to `session`; appends what it changed.
fn apply(session: &mut Session, pfs: &PfsRef, cmd: &EditCommand, changes: &mut Vec<String>) -> Result<()> {
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
            let meta = std::fs::metadata(host).map_err(|source| Error::Io {
                path: host.into(),
                op: "stat",
                offset: 0,
                source,
            })?;
            if meta.is_dir() {
                return Err(invalid(format!(
                    "{host}: is a directory; put copies one regular file (directories are not supported yet)"
                )));
            }
            if !meta.is_file() {
                return Err(invalid(format!("{host}: not a regular file; put copies regular files only")));
            }
            let (_, mut target) = canonical(path)?;
            let into_dir = path.ends_with('/')
                || matches!(session.resolve_parent(pfs, path),
                    Ok((_, name, e)) if name.is_empty() || e.as_ref().is_some_and(|e| e.obj_type == ObjType::Directory));
            if into_dir {
                let name =
                    std::path::Path::new(host).file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                        invalid(format!("{host}: no usable file name; give the full image path"))
                    })?;
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
        _ => return Err(invalid("internal error: a read command on the write path")),
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
) -> Result<()> {
    let (_, text) = canonical(path)?;
    let (_, name, entry) = session.resolve_parent(pfs, path)?;
    if name.is_empty() {
        return Err(invalid(format!("{path}: the root directory cannot be removed")));
    }
    let entry = entry.ok_or_else(|| Error::NotFound(text.clone()))?;
    let is_dir = entry.obj_type == ObjType::Directory;
    if only_dirs && !is_dir {
        return Err(Error::NotADirectory(text));
    }
    if is_dir && !dirs {
        return Err(invalid(format!("{text}: is a directory (use rmdir or rm -d)")));
    }
    session.remove(pfs, path, is_dir)?;
    changes.push(format!("remove {} {text}", kind_name(entry.obj_type)));
    Ok(())
}

/// Runs one read command.
fn execute<'a>(
    tree: &Tree<'a>,
    pfs: impl Fn() -> Result<Pfs<'a>>,
    cmd: EditCommand,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<()> {
    let w = stdout_error;
    match cmd {
        EditCommand::Pfs => {
            for p in Pfs::list(tree)? {
                let m = &p.root.data.meta;
                writeln!(
                    out,
                    "{:<16} {:<10} {}",
                    p.name(),
                    m.pfs_type(),
                    crate::format::uuid_from_disk(&m.pfs_clid)
                )
                .map_err(w)?;
            }
        }
        EditCommand::Maint(crate::cli::edit_maint::MaintCommand::PfsList) => maint::list(tree, out)?,
        EditCommand::Cat { path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            if ino.is_dir() {
                return Err(Error::IsADirectory(path));
            }
            let mut sink = WriteSink(std::io::BufWriter::new(&mut *out));
            read_file(tree, &ino, &mut sink)?;
            sink.0.flush().map_err(w)?;
        }
        EditCommand::Stat { json, path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            let report = crate::dump::inode::describe(&pfs.name(), Some(path), &ino);
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
                writeln!(out, "{text}").map_err(w)?;
            } else {
                out.write_all(report.to_text().as_bytes()).map_err(w)?;
            }
        }
        EditCommand::Ls { long, all, path } => {
            let pfs = pfs()?;
            let ino = pfs.resolve(&path)?;
            let mut out = std::io::BufWriter::new(out);
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
                        out.write_all(&e.name).map_err(w)?;
                        out.write_all(b"\n").map_err(w)?;
                    }
                }
            }
            out.flush().map_err(w)?;
        }
        EditCommand::Get { force, path, hostdir } => {
            let pfs = pfs()?;
            let opts = ExtractOptions { force, ..ExtractOptions::default() };
            let stats = extract_with(&pfs, &path, std::path::Path::new(&hostdir), &opts, &mut |s| {
                events.extracting(s)
            })?;
            events.extracted(&stats);
        }
        _ => return Err(invalid("internal error: a write command on the read-only path")),
    }
    Ok(())
}

fn print_entry(tree: &Tree<'_>, ino: &Inode<'_>, name: &[u8], long: bool, out: &mut dyn Write) -> Result<()> {
    let w = stdout_error;
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
            crate::timefmt::short(m.mtime.get())
        )
        .map_err(w)?;
    }
    out.write_all(name).map_err(w)?;
    if long && ino.obj_type() == ObjType::Softlink {
        out.write_all(b" -> ").map_err(w)?;
        out.write_all(&read_link(tree, ino)?).map_err(w)?;
    }
    out.write_all(b"\n").map_err(w)?;
    Ok(())
}

/// `drwxr-xr-x` as ls(1) prints it.
pub fn mode_string(t: ObjType, mode: u32) -> String {
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
