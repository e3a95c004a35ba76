//! The editor behind `hammer2_edit`: runs a list of commands (from the
//! command line, `-c` or a script) on one file system. Read commands print
//! to the caller's output; write commands change a [`Session`] that is
//! committed as one transaction at the end. The editor never prints on its
//! own: what the user should see (echoed commands, failures, the changes of
//! a dry run, notes) goes through [`Events`], and the result of the run
//! comes back as an [`Outcome`].

mod apply;
mod maint;
pub mod script;
mod view;

use apply::apply;

use crate::cli::edit::{EditCommand, EditLine};
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::format::ObjType;
use crate::host::extract::{extract_with, ExtractOptions, ExtractStats};
use crate::read::pfs::Pfs;
use crate::read::tree::Tree;
use crate::write::flush::CommitReport;
use crate::write::session::{PfsRef, Session};
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
    /// A failing write command is undone and counted, and the others
    /// still commit (default: it stops the run and nothing is written).
    pub keep_going: bool,
    /// Tests: after the commit, put the previous copy's freemap back.
    pub debug_lag_freemap: bool,
    /// Whether to wait for a device another run holds.
    pub wait: crate::device::lock::Wait,
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
    /// `put` progress.
    fn importing(&mut self, _report: &crate::host::import::ImportReport) {}
    /// `put` ended (well or not).
    fn imported(&mut self) {}
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
            blocks: session.early_writes().blocks + commit.flush.blocks,
            bytes: session.early_writes().bytes + commit.flush.bytes,
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
    /// The commits (a dry run: its trial commit), in order; none when
    /// nothing changed.
    pub reports: Vec<EditReport>,
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
    let device = Device::open_with(device, Access::ReadOnly, opts.wait)?;
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

/// Write commands, in one pass on one session: a failing command stops
/// the run (unless `keep_going`) and nothing is written, byte for byte;
/// otherwise everything (or everything since the last `commit` command) is
/// one transaction.
///
/// One pass is safe because nothing the session writes before its commit
/// is reachable: new blocks go to free space, and neither the freemap nor
/// a volume header is written before the commit. That alone would leave a
/// failed run fsck-clean but not byte-identical (the new blocks stay in
/// free space), so the device also keeps what each write overwrote
/// ([`Device::begin_undo`]) and an aborted run puts it back.
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
    let access = if dry { Access::ReadOnly } else { Access::ReadWrite };
    let dev = Device::open_with(device, access, opts.wait).map_err(|e| match e {
        Error::Open { path, why } if !dry => {
            Error::Open { path, why: format!("cannot open the device for writing: {why}") }
        }
        e => e,
    })?;
    let fs = Hammer2::open(dev, CopyChoice::Best)?;
    let mut session = Session::from_fs(fs, !dry)?;
    if let Some(r) = session.freemap_replay() {
        let when = if dry { "would also repair" } else { "will also repair" };
        events.note(&format!("{r}; the commit {when} the freemap, as a mount does"));
    }
    if !dry {
        session.fs.device.begin_undo();
    }
    // An interrupt stops the run between blocks or commands; it is then
    // rolled back as any failed run.
    let _cancellable = crate::interrupt::cancellable();
    let result = run_steps(&mut session, opts, &steps, &mut outcome, out, events);
    if outcome.aborted.is_some() || result.is_err() {
        if !dry {
            session.fs.device.rollback()?;
        }
        return result.map(|()| outcome);
    }
    session.fs.device.end_undo();
    Ok(outcome)
}

/// The loop of [`run_writing`], then the final commit.
fn run_steps(
    session: &mut Session,
    opts: &Options,
    steps: &[(&Line, Parsed)],
    outcome: &mut Outcome,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<()> {
    let dry = opts.dry_run;
    let mut pfs = None;
    // Changes since the last commit.
    let mut pending = Vec::new();
    for (i, (line, step)) in steps.iter().enumerate() {
        crate::interrupt::check()?;
        events.echo(&line.text);
        let result = match step {
            Parsed::Bad(_) => unreachable!("refused before the run"),
            Parsed::Help(text) => out.write_all(text.as_bytes()).map_err(stdout_error),
            Parsed::Run(EditCommand::Commit) => commit(session, opts, &mut pending, outcome, events, false),
            Parsed::Run(cmd) if cmd.writes() => {
                let cp = opts.keep_going.then(|| session.checkpoint());
                let before = pending.len();
                let r = match cmd {
                    // Maintenance commands find their PFS themselves (some need none).
                    EditCommand::Maint(m) => maint::apply(session, opts.pfs.as_deref(), m, &mut pending),
                    EditCommand::Put { recursive, host, path } => session_pfs(session, &mut pfs, opts)
                        .and_then(|p| {
                            let r =
                                apply::put(session, &p, (host, path, *recursive), &mut pending, &mut |r| {
                                    events.importing(r)
                                });
                            events.imported();
                            r
                        }),
                    _ => session_pfs(session, &mut pfs, opts)
                        .and_then(|p| apply(session, &p, cmd, &mut pending)),
                };
                if dry {
                    // What it did before failing too: it shows how far it got.
                    pending[before..].iter().for_each(|c| events.would(c));
                }
                match &r {
                    Ok(()) => {}
                    Err(_) => {
                        pending.truncate(before);
                        if let Some(cp) = cp {
                            session.restore(cp)?;
                        }
                    }
                }
                r
            }
            Parsed::Run(cmd) => session_pfs(session, &mut pfs, opts)
                .and_then(|p| execute_in_session(session, &p, cmd, out, events)),
        };
        if let Err(e) = result {
            events.failed(&line.text, &e);
            if matches!(e, Error::Interrupted) {
                // Not a command's failure: the whole run stops, --keep-going or not.
                return Err(e);
            }
            if let Some(fault) = session.fs.device.fault() {
                // An I/O error: the device takes no more writes (nor the
                // undo of this run's), so the run stops, --keep-going or not.
                return Err(fault.stopped());
            }
            outcome.failures += 1;
            if !opts.keep_going {
                outcome.aborted = Some(i);
                outcome.changes.append(&mut pending);
                return Ok(());
            }
        }
    }
    crate::interrupt::check()?;
    commit(session, opts, &mut pending, outcome, events, true)
}

/// Commits what changed (a dry run: only at the end, as a trial that
/// writes nothing; its `commit` commands only say they would commit).
fn commit(
    session: &mut Session,
    opts: &Options,
    pending: &mut Vec<String>,
    outcome: &mut Outcome,
    events: &mut dyn Events,
    last: bool,
) -> Result<()> {
    if !session.is_dirty() {
        outcome.changes.append(pending);
        return Ok(());
    }
    if opts.dry_run && !last {
        events.would("commit the changes so far");
        return Ok(());
    }
    let report = session.commit()?;
    if !session.synced_copies().is_empty() {
        events.note(&format!(
            "header copies {:?} named what destroy cut out: rewritten with the new header after the commit",
            session.synced_copies()
        ));
    }
    let changes = std::mem::take(pending);
    outcome.changes.extend(changes.iter().cloned());
    outcome.reports.push(EditReport::new(session, &report, changes));
    if !opts.dry_run {
        // What is committed stays: keep only what comes after.
        session.fs.device.begin_undo();
        if last && opts.debug_lag_freemap {
            outcome.lagged = Some(crate::recover::lag_freemap(&mut session.fs)?);
        }
    }
    Ok(())
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

/// Runs one read command on the session's state (what the commands before
/// it changed, committed or not).
fn execute_in_session(
    session: &Session,
    pfs: &PfsRef,
    cmd: &EditCommand,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<()> {
    let view = crate::write::session::SessionView { session, pfs };
    if view::read_command(&view, cmd, out)? {
        return Ok(());
    }
    match cmd {
        EditCommand::Get { force, path, hostdir } => {
            let opts = ExtractOptions { force: *force, ..Default::default() };
            let stats = extract_with(&view, path, std::path::Path::new(hostdir), &opts, &mut |s| {
                events.extracting(s)
            })?;
            events.extracted(&stats);
        }
        EditCommand::Pfs { json }
        | EditCommand::Maint(crate::cli::edit_maint::MaintCommand::PfsList { json }) => {
            maint::list(&session.pfs_inodes()?.iter().collect::<Vec<_>>(), *json, out)?
        }
        _ => return Err(Error::Internal("not a read command".into())),
    }
    Ok(())
}

/// Runs one read command on the committed image.
fn execute<'a>(
    tree: &Tree<'a>,
    pfs: impl Fn() -> Result<Pfs<'a>>,
    cmd: EditCommand,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<()> {
    let _w = stdout_error;
    match cmd {
        // `pfs` is the short name of `pfs-list`.
        EditCommand::Pfs { json }
        | EditCommand::Maint(crate::cli::edit_maint::MaintCommand::PfsList { json }) => {
            let pfses = crate::read::pfs::Pfs::list(tree)?;
            maint::list(&pfses.iter().map(|p| p.root.data).collect::<Vec<_>>(), json, out)?
        }
        EditCommand::Cat { .. } | EditCommand::Stat { .. } | EditCommand::Ls { .. } => {
            view::read_command(&pfs()?, &cmd, out)?;
        }
        EditCommand::Get { force, path, hostdir } => {
            let pfs = pfs()?;
            let opts = ExtractOptions { force, ..ExtractOptions::default() };
            let stats = extract_with(&pfs, &path, std::path::Path::new(&hostdir), &opts, &mut |s| {
                events.extracting(s)
            })?;
            events.extracted(&stats);
        }
        _ => return Err(Error::Internal("a write command on the read-only path".into())),
    }
    Ok(())
}

/// One `ls` line: the name, or with `long` mode, links, owner, size, time
/// and name (and a symbolic link's `target`).
fn write_entry(
    ip: &crate::format::InodeData,
    name: &[u8],
    long: bool,
    target: Option<&[u8]>,
    out: &mut dyn Write,
) -> Result<()> {
    let w = stdout_error;
    if long {
        let m = &ip.meta;
        // Device nodes show their numbers where files show a size, as ls(1).
        let size = match m.obj_type() {
            ObjType::Cdev | ObjType::Bdev => format!("{}, {}", m.rmajor.get(), m.rminor.get()),
            _ => m.size.get().to_string(),
        };
        write!(
            out,
            "{} {:>3} {:>5} {:>5} {:>10} {} ",
            mode_string(m.obj_type(), m.mode.get()),
            m.nlinks.get(),
            m.unix_uid(),
            m.unix_gid(),
            size,
            crate::format::time::short(m.mtime.get())
        )
        .map_err(w)?;
    }
    out.write_all(name).map_err(w)?;
    if let Some(t) = target {
        out.write_all(b" -> ").map_err(w)?;
        out.write_all(t).map_err(w)?;
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
