//! hammer2_recover: the freemap recovery of a read-write mount, offline.

mod common;

use anyhow::Context;
use clap::Parser;
use hammer2::cli::recover::{FilesArgs, FreemapArgs, ListArgs, RecoverCli, RecoverCommand, ScanArgs};
use hammer2::device::{Access, Device};
use hammer2::dump::layout;
use hammer2::recover::files::{self, FilesOptions, ListOptions};
use hammer2::recover::{recover, RecoverOptions, RecoverReport};
use hammer2::salvage::{self, Index, ScanOptions, Source};
use hammer2::{CopyChoice, Hammer2};

fn main() {
    let cli = RecoverCli::parse();
    common::stop_cleanly_on_interrupt("hammer2_recover");
    common::run("hammer2_recover", || match &cli.command {
        None => run(&cli.freemap, &cli),
        Some(RecoverCommand::Freemap(args)) => run(args, &cli),
        Some(RecoverCommand::List(args)) => list(args, &cli),
        Some(RecoverCommand::Files(args)) => files_cmd(args, &cli),
    })
}

/// Opens the device read-only (shared lock) and scans it, with a progress
/// bar on terminals.
fn scan(device: &str, args: &ScanArgs, cli: &RecoverCli, quiet: bool) -> anyhow::Result<(Hammer2, Index)> {
    if let Some(dir) = &args.tmpdir {
        if !dir.is_dir() {
            return Err(common::usage(format!("--tmpdir {}: not a directory", dir.display())));
        }
    }
    let dev = Device::open_with(device, Access::ReadOnly, cli.wait.get()).map_err(|e| match e {
        e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
        e => anyhow::Error::new(e).context("cannot open device"),
    })?;
    let fs = Hammer2::open(dev, CopyChoice::Best).context("cannot open file system")?;
    let bar = (common::stderr_is_terminal() && !quiet).then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "scanning {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let progress = |done: u64, total: u64| {
        if let Some(pb) = &bar {
            pb.set_length(total);
            pb.set_position(done);
        }
    };
    let opts = ScanOptions {
        relaxed: args.relaxed,
        memory: usize::try_from(args.memory).unwrap_or(usize::MAX),
        tmpdir: args.tmpdir.clone(),
        ..Default::default()
    };
    let index = salvage::scan(&fs, &opts, Some(&progress));
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let index = index.context("scan failed")?;
    Ok((fs, index))
}

fn list(args: &ListArgs, cli: &RecoverCli) -> anyhow::Result<i32> {
    let (fs, index) = scan(&args.device, &args.scan, cli, args.json)?;
    let opts = ListOptions {
        deleted: args.deleted,
        pfs: args.scan.pfs.clone(),
        path: args.path.clone(),
        relaxed: args.scan.relaxed,
    };
    let rows = files::list(&fs, &index, &opts).context("listing failed")?;
    if args.json {
        common::print_json(
            &serde_json::json!({ "device": args.device, "scan": index.stats, "found": rows }),
        )?;
        return Ok(common::EXIT_OK);
    }
    // One line per version, the path last (paths are long; columns stay aligned).
    println!(
        "{:<8} {:>8} {:<9} {:>12} {:<16} {:<10} {:<9} PATH",
        "PFS", "INODE", "TYPE", "SIZE", "MTIME", "SOURCE", "COMPLETE"
    );
    for r in &rows {
        let complete = match (r.completeness.as_str(), r.verified) {
            ("partial", _) => format!("partial ({} lost)", common::human_bytes(r.lost_bytes)),
            (c, false) => format!("{c} (unverified)"),
            (c, true) => c.to_string(),
        };
        let source = match r.source {
            Source::Live => "live".to_string(),
            Source::HeaderCopy { copy, .. } => format!("copy#{copy}"),
            Source::Unreached => "unreached".to_string(),
        };
        println!(
            "{:<8} {:>8} {:<9} {:>12} {:<16} {:<10} {:<9} {}",
            r.pfs,
            r.inum,
            r.kind,
            r.size,
            hammer2::format::time::short(r.mtime),
            source,
            complete,
            r.path
        );
    }
    println!("{} version{} found", rows.len(), if rows.len() == 1 { "" } else { "s" });
    Ok(common::EXIT_OK)
}

fn files_cmd(args: &FilesArgs, cli: &RecoverCli) -> anyhow::Result<i32> {
    let (fs, index) = scan(&args.device, &args.scan, cli, args.json)?;
    let opts = FilesOptions {
        pfs: args.scan.pfs.as_deref(),
        latest: args.latest,
        relaxed: args.scan.relaxed,
        modes: hammer2::host::extract::ModePolicy::of_process(),
    };
    let r = files::files(&fs, &index, &args.path, &args.dest, &opts).context("recovery failed")?;
    if args.json {
        common::print_json(&serde_json::json!({ "device": args.device, "summary": r }))?;
    } else {
        for p in &r.partial {
            println!("partial: {p}");
        }
        for p in &r.unverified {
            println!("unverified: {p}");
        }
        for p in &r.unrecoverable {
            println!("unrecoverable: {p}");
        }
        for p in &r.skipped {
            println!("skipped: {p}");
        }
        println!(
            "found {}, recovered whole {}, partial {}, unrecoverable {} ({} directories, {} hard links, {} unverified, {} skipped)",
            r.found,
            r.whole,
            r.partial.len(),
            r.unrecoverable.len(),
            r.dirs,
            r.links,
            r.unverified.len(),
            r.skipped.len()
        );
    }
    Ok(if r.partial.is_empty() && r.unrecoverable.is_empty() {
        common::EXIT_OK
    } else {
        common::EXIT_FAILURE
    })
}

fn run(args: &FreemapArgs, cli: &RecoverCli) -> anyhow::Result<i32> {
    let Some(device) = &args.device else {
        return Err(common::usage("a DEVICE is required"));
    };
    let access = if args.dry_run { Access::ReadOnly } else { Access::ReadWrite };
    let device = Device::open_with(device, access, cli.wait.get()).map_err(|e| match e {
        hammer2::Error::Mounted { .. } => anyhow::Error::new(e)
            .context("cannot open the device for writing (unmount it: a mount runs this recovery itself)"),
        e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
        e => anyhow::Error::new(e).context("cannot open device"),
    })?;
    let mut fs = Hammer2::open(device, CopyChoice::Best).context("cannot open file system")?;
    let cli = args;
    let dev_name = cli.device.as_deref().unwrap_or_default();
    let opts = RecoverOptions { dry_run: cli.dry_run, full: cli.full };
    let spinner = (common::stderr_is_terminal() && !cli.json).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("scanning {dev_name}"));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let mut progress = |scanned: u64, marked: u64| {
        if let Some(pb) = &spinner {
            pb.set_message(format!("scanning {dev_name}: {scanned} blockrefs examined, {marked} marked"));
        }
    };
    let result = recover(&mut fs, &opts, Some(&mut progress));
    if let Some(pb) = &spinner {
        pb.finish_and_clear();
    }
    let report = result.context("recovery failed")?;
    if cli.json {
        common::print_json(&serde_json::json!({ "device": dev_name, "report": report }))?;
    } else {
        print_report(cli, &report);
    }
    Ok(common::EXIT_OK)
}

/// The report, one statement per line, each fitting the terminal (80
/// columns when the output is not one): the device path goes on a line of
/// its own when a statement would not fit after it.
fn print_report(cli: &FreemapArgs, r: &RecoverReport) {
    let dev = cli.device.as_deref().unwrap_or_default();
    let width = Some(layout::width());
    let say = |rest: String| println!("{}", layout::path_line(dev, &rest, width));
    let tids = format!("freemap_tid {:#x}, mirror_tid {:#x}", r.freemap_tid, r.mirror_tid);
    match r.range {
        None if !r.full => {
            say(format!("no recovery needed ({tids})"));
            return;
        }
        None => say(format!("full replay, the freemap does not lag ({tids})")),
        Some((lo, hi)) => say(format!("freemap recovery {lo:#x}-{hi:#x} ({tids})")),
    }
    let which = if r.full { "in use" } else { "newer than the freemap" };
    let verb = match (r.written, r.commit.is_some(), r.blocks == 1) {
        (false, true, _) => "would be",
        (_, _, true) => "is",
        (_, _, false) => "are",
    };
    say(format!(
        "{} block{} ({}) {which} {verb} marked allocated: {} free chunk{} of 16 KiB \
         marked, {} block{} changed the freemap",
        r.blocks,
        if r.blocks == 1 { "" } else { "s" },
        common::human_bytes(r.bytes),
        r.chunks,
        if r.chunks == 1 { "" } else { "s" },
        r.changed,
        if r.changed == 1 { "" } else { "s" },
    ));
    if cli.verbose {
        say(format!(
            "{} blockrefs examined, {} node blocks read; allocator_free {:#x} -> {:#x}",
            r.scanned, r.read, r.allocator_free.0, r.allocator_free.1
        ));
        if !r.pfs.is_empty() {
            let mut t = layout::table(width);
            t.set_header(["PFS", "blocks", "bytes", "changed", "chunks marked"]);
            for p in &r.pfs {
                t.add_row([
                    p.name.clone(),
                    p.blocks.to_string(),
                    common::human_bytes(p.bytes),
                    p.changed.to_string(),
                    p.chunks.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    match &r.commit {
        None => say("every block was already marked; nothing written".into()),
        Some(c) if c.written => say(format!(
            "committed transaction {:#x} to header copy #{} (freemap_tid = mirror_tid)",
            c.tid, c.copy
        )),
        Some(c) => say(format!(
            "would commit transaction {:#x} to header copy #{}; nothing written (dry run)",
            c.tid, c.copy
        )),
    }
}
