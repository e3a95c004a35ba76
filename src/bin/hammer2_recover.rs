//! hammer2_recover: the freemap recovery of a read-write mount, offline.

mod common;

use anyhow::Context;
use clap::Parser;
use hammer2::cli::recover::RecoverCli;
use hammer2::device::{Access, Device};
use hammer2::dump::layout;
use hammer2::recover::{recover, RecoverOptions, RecoverReport};
use hammer2::{CopyChoice, Hammer2};

fn main() {
    let cli = RecoverCli::parse();
    common::run("hammer2_recover", || run(&cli))
}

fn run(cli: &RecoverCli) -> anyhow::Result<i32> {
    let access = if cli.dry_run { Access::ReadOnly } else { Access::ReadWrite };
    let device = Device::open_with(&cli.device, access, cli.wait.get()).map_err(|e| match e {
        hammer2::Error::Mounted { .. } => anyhow::Error::new(e)
            .context("cannot open the device for writing (unmount it: a mount runs this recovery itself)"),
        e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
        e => anyhow::Error::new(e).context("cannot open device"),
    })?;
    let mut fs = Hammer2::open(device, CopyChoice::Best).context("cannot open file system")?;
    let opts = RecoverOptions { dry_run: cli.dry_run, full: cli.full };
    let spinner = (common::stderr_is_terminal() && !cli.json).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("scanning {}", cli.device));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let mut progress = |scanned: u64, marked: u64| {
        if let Some(pb) = &spinner {
            pb.set_message(format!("scanning {}: {scanned} blockrefs examined, {marked} marked", cli.device));
        }
    };
    let result = recover(&mut fs, &opts, Some(&mut progress));
    if let Some(pb) = &spinner {
        pb.finish_and_clear();
    }
    let report = result.context("recovery failed")?;
    if cli.json {
        common::print_json(&serde_json::json!({ "device": cli.device, "report": report }))?;
    } else {
        print_report(cli, &report);
    }
    Ok(common::EXIT_OK)
}

/// The report, one statement per line, each fitting the terminal (80
/// columns when the output is not one): the device path goes on a line of
/// its own when a statement would not fit after it.
fn print_report(cli: &RecoverCli, r: &RecoverReport) {
    let dev = cli.device.as_str();
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
