//! fsck_hammer2: verify a HAMMER2 file system offline; repair header copies.

mod common;

use clap::Parser;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use hammer2::cli::fsck::FsckCli;
use hammer2::device::{lock, Access};
use hammer2::fsck::{self, FsckOptions, FsckReport, RepairMode, Severity};

fn main() {
    let cli = match FsckCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { fsck::EXIT_USAGE } else { fsck::EXIT_CLEAN };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    common::run_with_codes("fsck_hammer2", fsck::EXIT_OPERATIONAL, fsck::EXIT_USAGE, || {
        let opts = FsckOptions {
            repair: if cli.yes {
                RepairMode::Yes
            } else if cli.preen {
                RepairMode::Preen
            } else {
                RepairMode::No
            },
            sync_headers: cli.sync_headers,
            all_copies: cli.all_copies,
            trace: (cli.verbose && !cli.json)
                .then(|| -> fsck::Trace { std::sync::Arc::new(|line: &str| println!("{line}")) }),
        };
        let spinner = (common::stderr_is_terminal() && !cli.quiet && !cli.json && !cli.verbose).then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_message(format!("checking {}", cli.device));
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb
        });
        let access = if opts.repair == RepairMode::No { Access::ReadOnly } else { Access::ReadWrite };
        // Locked for the whole run (shared to check, exclusive to repair).
        let result = lock::hold(&cli.device, access, cli.wait.get())
            .map_err(common::lock_refused)
            .and_then(|_run| fsck::fsck(&cli.device, &opts).map_err(anyhow::Error::from));
        if let Some(pb) = spinner {
            pb.finish_and_clear();
        }
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                common::report_error("fsck_hammer2", &e);
                // A script reading --json gets an answer on stdout too.
                if cli.json {
                    common::print_json(&serde_json::json!({
                        "device": cli.device,
                        "exit_code": fsck::EXIT_OPERATIONAL,
                        "error": common::error_line("fsck_hammer2", &e),
                    }))?;
                }
                return Ok(fsck::EXIT_OPERATIONAL);
            }
        };
        if cli.json {
            common::print_json(&serde_json::json!({
                "device": cli.device,
                "exit_code": report.exit_code(),
                "report": report,
            }))?;
        } else {
            print_report(&cli, &report);
        }
        Ok(report.exit_code())
    })
}

fn print_report(cli: &FsckCli, report: &FsckReport) {
    if !cli.quiet {
        match (report.header_copy, report.mirror_tid) {
            (Some(c), Some(t)) => println!("{}: header copy #{c}, mirror_tid {t:#x}", cli.device),
            _ => println!("{}: no usable volume header", cli.device),
        }
    }
    for f in &report.findings {
        if f.problem.severity == Severity::Info && !cli.verbose && !f.repaired {
            continue;
        }
        let sev = match f.problem.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "ERROR",
        };
        let fixed = if f.repaired { format!(" [FIXED: {}]", f.problem.repair) } else { String::new() };
        println!("{sev} {}: {}: {} ({}){fixed}", f.problem.id, f.location, f.problem.message, f.detail);
    }
    if !cli.quiet && !report.trees.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header([
            "tree",
            "blockrefs",
            "with media",
            "verified",
            "unchecked",
            "shared",
            "errors",
            "bytes",
        ]);
        for t_stats in &report.trees {
            let s = &t_stats.stats;
            t.add_row([
                t_stats.tree.clone(),
                s.blockrefs.to_string(),
                s.with_media.to_string(),
                s.verified.to_string(),
                s.not_checked.to_string(),
                s.shared.to_string(),
                s.errors.to_string(),
                common::human_bytes(s.bytes),
            ]);
        }
        println!("{t}");
    }
    if !cli.quiet && !report.pfs.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header([
            "PFS",
            "inodes",
            "dirs",
            "files",
            "symlinks",
            "other",
            "dirents",
            "indirect",
            "data blocks",
            "data",
            "shared",
        ]);
        for p in &report.pfs {
            t.add_row([
                p.name.clone(),
                p.inodes.to_string(),
                p.directories.to_string(),
                p.files.to_string(),
                p.symlinks.to_string(),
                p.other.to_string(),
                p.dirents.to_string(),
                p.indirect.to_string(),
                p.data_blocks.to_string(),
                common::human_bytes(p.data_bytes),
                p.shared.to_string(),
            ]);
        }
        println!("{t}");
    }
    let damage = report.damage().count();
    let fixed = report.findings.iter().filter(|f| f.repaired).count();
    let left = report.damage().filter(|f| !f.repaired).count();
    if damage == 0 && fixed == 0 {
        if !cli.quiet {
            println!("{}: clean", cli.device);
        }
    } else {
        println!("{}: {damage} problems, {fixed} corrected, {left} left uncorrected", cli.device);
    }
}
