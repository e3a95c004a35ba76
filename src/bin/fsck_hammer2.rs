//! fsck_hammer2: verify a HAMMER2 file system offline; repair header copies.

mod common;

use clap::Parser;
use comfy_table::Cell;
use hammer2::cli::fsck::FsckCli;
use hammer2::device::{lock, Access};
use hammer2::dump::layout;
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
            use_copy: cli.use_copy.map(usize::from),
            trace: (cli.verbose && !cli.json).then(|| -> fsck::Trace { std::sync::Arc::new(print_trace) }),
            memory: cli.memory.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            tmpdir: cli.tmpdir.clone(),
            writer: None,
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

/// One `-v` trace line (`TYPE data_off X key K (parent P slot S): CHECK
/// STATUS`), indented by depth. One that does not fit the width goes on
/// with its parent and verdict, kept whole, on the next line.
fn print_trace(line: &str) {
    let width = layout::width();
    if line.chars().count() <= width {
        println!("{line}");
        return;
    }
    let body = line.trim_start();
    let indent = line.len() - body.len();
    let (head, tail) = match body.find(" (parent ") {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    let mut fields = layout::words(head);
    if !tail.is_empty() {
        fields.push(tail.to_string());
    }
    for l in layout::pack(indent, indent + 4, &fields, Some(width)) {
        println!("{l}");
    }
}

/// A finding on one line when it fits `width`; else its pieces (location,
/// message, detail, repair) on lines of their own, indented, each kept
/// whole where it fits a line and wrapped at its spaces where it does not.
fn print_finding(pieces: &[String], width: usize) {
    let one = pieces.join(" ");
    if one.chars().count() <= width {
        println!("{one}");
        return;
    }
    println!("{}", pieces[0]);
    for p in &pieces[1..] {
        for l in layout::pack(4, 6, &layout::words(p), Some(width)) {
            println!("{l}");
        }
    }
}

/// The report, laid out to fit the terminal (80 columns when the output
/// is not one): wide tables split into two, a finding that does not fit
/// broken between its location, its message and its repair (each kept
/// whole, so they can be searched for).
fn print_report(cli: &FsckCli, report: &FsckReport) {
    let width = Some(layout::width());
    let dev = cli.device.as_str();
    if !cli.quiet {
        match (report.header_copy, report.mirror_tid) {
            (Some(c), Some(t)) => {
                println!("{}", layout::path_line(dev, &format!("header copy #{c}, mirror_tid {t:#x}"), width))
            }
            _ => println!("{}", layout::path_line(dev, "no usable volume header", width)),
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
        let mut pieces = vec![
            format!("{sev} {}: {}:", f.problem.id, f.location),
            f.problem.message.to_string(),
            format!("({})", f.detail),
        ];
        if f.repaired {
            pieces.push(format!("[FIXED: {}]", f.problem.repair));
        } else {
            // What -y (or -p) would do, or why nothing can be done.
            let tried = cli.yes || (cli.preen && f.problem.fix == fsck::Fix::Preen);
            let how = match (f.problem.fix, f.problem.severity) {
                (_, Severity::Info) if f.problem.fix == fsck::Fix::None => None,
                (fsck::Fix::Preen | fsck::Fix::Yes, _) if tried => {
                    Some("[NOT FIXED: the repair could not be done, as said above]".to_string())
                }
                (fsck::Fix::None, _) => Some(format!("[NOT FIXED: {}]", f.problem.repair)),
                (fsck::Fix::Preen, _) => Some(format!("[-p or -y would: {}]", f.problem.repair)),
                (fsck::Fix::Yes, _) => Some(format!("[-y would: {}]", f.problem.repair)),
            };
            pieces.extend(how);
        }
        print_finding(&pieces, layout::width());
    }
    if !cli.quiet && !report.trees.is_empty() {
        const HEADER: [&str; 8] =
            ["tree", "blockrefs", "with media", "verified", "unchecked", "shared", "errors", "bytes"];
        let rows: Vec<Vec<Cell>> = report
            .trees
            .iter()
            .map(|t| {
                let s = &t.stats;
                vec![
                    Cell::new(&t.tree),
                    Cell::new(s.blockrefs),
                    Cell::new(s.with_media),
                    Cell::new(s.verified),
                    Cell::new(s.not_checked),
                    Cell::new(s.shared),
                    Cell::new(s.errors),
                    Cell::new(common::human_bytes(s.bytes)),
                ]
            })
            .collect();
        let all: Vec<usize> = (0..HEADER.len()).collect();
        let groups: [&[usize]; 2] = [&[0, 1, 2, 3, 4], &[0, 5, 6, 7]];
        for t in layout::split_to_fit(&HEADER, &rows, &all, &groups, width) {
            println!("{t}");
        }
    }
    if !cli.quiet && !report.pfs.is_empty() {
        const HEADER: [&str; 11] = [
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
        ];
        let rows: Vec<Vec<Cell>> = report
            .pfs
            .iter()
            .map(|p| {
                vec![
                    Cell::new(&p.name),
                    Cell::new(p.inodes),
                    Cell::new(p.directories),
                    Cell::new(p.files),
                    Cell::new(p.symlinks),
                    Cell::new(p.other),
                    Cell::new(p.dirents),
                    Cell::new(p.indirect),
                    Cell::new(p.data_blocks),
                    Cell::new(common::human_bytes(p.data_bytes)),
                    Cell::new(p.shared),
                ]
            })
            .collect();
        let all: Vec<usize> = (0..HEADER.len()).collect();
        // Narrow: the inodes by kind, then what they hold.
        let groups: [&[usize]; 2] = [&[0, 1, 2, 3, 4, 5], &[0, 6, 7, 8, 9, 10]];
        for t in layout::split_to_fit(&HEADER, &rows, &all, &groups, width) {
            println!("{t}");
        }
    }
    let damage = report.damage().count();
    let fixed = report.findings.iter().filter(|f| f.repaired).count();
    let left = report.damage().filter(|f| !f.repaired).count();
    if damage == 0 && fixed == 0 {
        if !cli.quiet {
            println!("{}", layout::path_line(dev, "clean", width));
        }
    } else {
        let mut what = format!("{damage} problems, {fixed} corrected, {left} left uncorrected");
        if let Some(c) = &report.commit {
            what.push_str(&format!("; committed as transaction {:#x} (header copy #{})", c.tid, c.copy));
        }
        println!("{}", layout::path_line(dev, &what, width));
    }
}
