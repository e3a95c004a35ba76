//! hammer2_edit: read and edit a HAMMER2 file system offline. The editor
//! lives in the library ([`hammer2::edit`]); this binary parses the command
//! line, prints what the editor reports and picks the exit status.

mod common;

use anyhow::Context;
use clap::Parser;
use hammer2::cli::edit::{EditCli, EditCommand};
use hammer2::edit::{self, EditReport, Events, Line, Options, Outcome};
use hammer2::host::extract::ExtractStats;
use hammer2::host::import::ImportReport;

fn main() {
    let cli = EditCli::parse();
    common::stop_cleanly_on_interrupt("hammer2_edit");
    common::run("hammer2_edit", || run(cli))
}

/// A library usage error as ours (exit status 2).
fn lift(e: hammer2::Error) -> anyhow::Error {
    match e {
        hammer2::Error::Usage(msg) => common::usage(msg),
        e => e.into(),
    }
}

/// The commands to run.
fn commands(cli: &EditCli) -> anyhow::Result<Vec<Line>> {
    if let Some(r) = &cli.request {
        return edit::script::split(r).map_err(lift);
    }
    if let Some(path) = &cli.script {
        let lines = edit::script::read(path).map_err(lift)?;
        let reads_stdin = |l: &Line| {
            matches!(edit::parse(&l.words), edit::Parsed::Run(EditCommand::Write { host: None, .. }))
                || matches!(edit::parse(&l.words),
                edit::Parsed::Run(EditCommand::Write { host: Some(h), .. }) if h == "-")
        };
        if path == "-" {
            if let Some(l) = lines.iter().find(|l| reads_stdin(l)) {
                return Err(common::usage(format!(
                    "line {}: {}: standard input holds the script; give write a host file",
                    l.number, l.text
                )));
            }
        }
        return Ok(lines);
    }
    if cli.command.is_empty() {
        return Err(common::usage(
            "no command given (try: ls, cat, stat, get, pfs; or -c 'CMD; CMD', -f SCRIPT)",
        ));
    }
    Ok(vec![Line { text: cli.command.join(" "), number: 1, words: cli.command.clone() }])
}

/// Prints what the editor reports, on stderr.
struct Printer {
    echo: bool,
    /// Print the changes of a dry run.
    changes: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Printer {
    /// The progress spinner, when stderr is a terminal.
    fn spinner(&mut self) -> Option<&indicatif::ProgressBar> {
        if !common::stderr_is_terminal() {
            return None;
        }
        Some(self.bar.get_or_insert_with(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb
        }))
    }
}

impl Events for Printer {
    fn echo(&mut self, text: &str) {
        if self.echo {
            eprintln!("hammer2_edit: {text}");
        }
    }
    fn failed(&mut self, text: &str, error: &hammer2::Error) {
        let e = anyhow::Error::msg(error.to_string());
        common::report_error(&format!("hammer2_edit: {text}"), &e);
    }
    fn invalid(&mut self, text: &str, why: &str) {
        eprint!("hammer2_edit: {text}: {}", clap_message(why));
    }
    fn would(&mut self, change: &str) {
        if self.changes {
            println!("would {change}");
        }
    }
    fn note(&mut self, msg: &str) {
        eprintln!("hammer2_edit: note: {msg}");
    }
    fn extracting(&mut self, s: &ExtractStats) {
        let Some(pb) = self.spinner() else { return };
        if (s.files + s.dirs) % 64 == 0 {
            pb.set_message(format!("{} files, {}", s.files, common::human_bytes(s.bytes)));
        }
    }
    fn importing(&mut self, r: &ImportReport) {
        if let Some(pb) = self.spinner() {
            pb.set_message(format!("put: {} files, {}", r.files, common::human_bytes(r.bytes)));
        }
    }
    fn imported(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
    fn extracted(&mut self, s: &ExtractStats) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        for skipped in &s.skipped {
            eprintln!("hammer2_edit: skipped {skipped}");
        }
        eprintln!(
            "extracted {} files ({}), {} directories, {} symlinks, {} hard links",
            s.files,
            common::human_bytes(s.bytes),
            s.dirs,
            s.symlinks,
            s.hardlinks
        );
    }
}

fn counts(r: &EditReport) -> String {
    format!(
        "transaction {:#x}, header copy {}, {} blocks ({})",
        r.tid,
        r.header_copy,
        r.blocks,
        common::human_bytes(r.bytes)
    )
}

fn run(cli: EditCli) -> anyhow::Result<i32> {
    let lines = commands(&cli)?;
    let opts = Options {
        pfs: cli.pfs.clone(),
        copy: cli.copy,
        dry_run: cli.dry_run,
        keep_going: cli.keep_going,
        debug_lag_freemap: cli.debug_lag_freemap,
        wait: cli.wait.get(),
    };
    let mut printer =
        Printer { echo: cli.verbose || cli.script.is_some(), changes: !cli.quiet && !cli.json, bar: None };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = edit::run(&cli.device, &opts, &lines, &mut out, &mut printer).map_err(|e| match e {
        hammer2::Error::Mounted { .. } => anyhow::Error::new(e)
            .context("cannot open the device for writing (unmount it first; --dry-run only reads)"),
        e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
        e => lift(e),
    })?;
    drop(out);
    report(&cli, &outcome)
}

/// The summary of a run, and its exit status.
fn report(cli: &EditCli, o: &Outcome) -> anyhow::Result<i32> {
    if o.usage_errors > 0 {
        if o.writing {
            eprintln!(
                "hammer2_edit: {} of {} commands are not valid; nothing was run or written",
                o.usage_errors, o.commands
            );
        } else if cli.script.is_some() {
            eprintln!("hammer2_edit: {} of {} commands failed", o.failures, o.commands);
        }
        return Ok(common::EXIT_USAGE);
    }
    if !o.writing {
        if o.failures > 0 && cli.script.is_some() {
            eprintln!("hammer2_edit: {} of {} commands failed", o.failures, o.commands);
        }
        return Ok(if o.failures > 0 { common::EXIT_FAILURE } else { common::EXIT_OK });
    }
    if let Some(i) = o.aborted {
        eprintln!(
            "hammer2_edit: command {} of {} failed; nothing was written{}",
            i + 1,
            o.commands,
            if cli.dry_run { " (dry run)" } else { "" }
        );
        return Ok(common::EXIT_FAILURE);
    }
    let text_out = !cli.quiet && !cli.json;
    if o.failures > 0 {
        eprintln!(
            "hammer2_edit: {} of {} commands failed and were undone; the others are kept",
            o.failures, o.commands
        );
    }
    let status = if o.failures > 0 { common::EXIT_FAILURE } else { common::EXIT_OK };
    if o.reports.is_empty() {
        if text_out {
            println!("nothing to commit: the commands changed nothing");
        }
        if cli.json {
            common::print_json(&serde_json::json!({ "written": false, "changes": o.changes }))?;
        }
        return Ok(status);
    }
    if let Some(lag) = &o.lagged {
        eprintln!(
            "hammer2_edit: debug: header copy #{} now carries the freemap of copy #{} (freemap_tid {:#x}, mirror_tid {:#x})",
            lag.copy, lag.from_copy, lag.freemap_tid, lag.mirror_tid
        );
    }
    if cli.json {
        match o.reports.as_slice() {
            [one] => common::print_json(one),
            all => common::print_json(&all),
        }
        .context("printing the report")?;
    } else if !cli.quiet {
        for r in &o.reports {
            if r.written {
                println!("committed {}", counts(r));
            } else {
                println!("dry run: nothing written (the commit would be {})", counts(r));
            }
        }
    }
    Ok(status)
}

/// clap's rendered error for one command line, as this tool words it: no
/// second `error:` after the command, "command" for clap's "subcommand", and
/// no usage line naming the internal command table (whose `try 'help'`
/// would point at a command rather than at `hammer2_edit --help`).
fn clap_message(why: &str) -> String {
    let why = why.strip_prefix("error: ").unwrap_or(why);
    let mut out = String::new();
    for line in why.lines() {
        let line =
            line.replace("unrecognized subcommand", "unknown command").replace("subcommand", "command");
        // The commands of the table take no --help (their names are taken
        // as paths); say where their help is instead of clap's `-- --help`.
        if line.contains("to pass '--help' as a value") || line.contains("to pass '-h' as a value") {
            out.push_str("  tip: `help COMMAND` (as a command) shows a command's options\n");
            continue;
        }
        if line.starts_with("Usage: hammer2_edit <COMMAND>") {
            continue;
        }
        if line.starts_with("For more information, try 'help'") {
            out.push_str("(hammer2_edit --help lists the commands)\n");
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    // The dropped usage line leaves two blank lines in a row.
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out
}
