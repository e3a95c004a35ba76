//! hammer2_dump: HAMMER2 structure and chain-tree dumps.

mod common;

use anyhow::Context;
use clap::Parser;
use comfy_table::{Cell, CellAlignment};
use hammer2::cli::dump::{DumpCli, DumpCommand};
use hammer2::device::{lock, Access, Device};
use hammer2::dump::freemap::{self, FreemapReport};
use hammer2::dump::inode::{self, Which};
use hammer2::dump::layout;
use hammer2::dump::pfs as pfs_dump;
use hammer2::dump::show::{self, ShowOptions, ShowStats, Start};
use hammer2::dump::show_text::{self, TextForm};
use hammer2::dump::volhdr::{self, CopyReport, VolumeReport};
use hammer2::{CopyChoice, Hammer2};
use std::io::Write;

fn main() {
    let cli = DumpCli::parse();
    common::run("hammer2_dump", || {
        // Some dumps open the device more than once: one shared lock for the run.
        let _run =
            lock::hold(cli.command.device(), Access::ReadOnly, cli.wait.get()).map_err(|e| match e {
                e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
                e => anyhow::Error::new(e).context("cannot open device"),
            })?;
        dump(cli.command)
    })
}

fn dump(command: DumpCommand) -> anyhow::Result<i32> {
    match command {
        DumpCommand::Volhdr { device, json, wide } => volhdr_cmd(&device, json, wide),
        DumpCommand::Show {
            device,
            copy,
            all_copies,
            pfs,
            offset,
            depth,
            hide_data,
            verify_data,
            freemap,
            json,
            wide,
        } => {
            let start = match (pfs, offset) {
                (Some(label), _) => Start::Pfs(label),
                (None, Some(off)) => Start::Offset(off),
                (None, None) => Start::Topology,
            };
            let opts = ShowOptions { start, freemap, max_depth: depth, hide_data, verify_data };
            show_cmd(&device, copy, all_copies, &opts, json, layout::limit(wide))
        }
        DumpCommand::Freemap { device, copy, json, wide } => {
            freemap_cmd(&device, copy, json, layout::limit(wide))
        }
        DumpCommand::Inode { device, path, inum, pfs, copy, json, wide } => {
            let which = match (path, inum) {
                (_, Some(n)) => Which::Inum(n),
                (Some(p), None) => Which::Path(p),
                (None, None) => unreachable!("clap requires a path or --inum"),
            };
            inode_cmd(&device, copy, pfs.as_deref(), &which, json, layout::limit(wide))
        }
        DumpCommand::Pfs { device, copy, json, wide } => pfs_cmd(&device, copy, json, layout::limit(wide)),
    }
}

/// Opens `spec` read-only with header copy `copy` (the best one by default).
fn open_fs(spec: &str, copy: Option<usize>) -> anyhow::Result<Hammer2> {
    let device = Device::open(spec, Access::ReadOnly).context("cannot open device")?;
    let choice = copy.map_or(CopyChoice::Best, CopyChoice::Index);
    Hammer2::open(device, choice).context("cannot open file system")
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

// ---------------------------------------------------------------- show

fn show_cmd(
    spec: &str,
    copy: Option<usize>,
    all: bool,
    opts: &ShowOptions,
    json: bool,
    width: Option<usize>,
) -> anyhow::Result<i32> {
    let first = open_fs(spec, copy)?;
    let copies: Vec<usize> = if all {
        first.headers[first.root_position()].copies.iter().filter(|c| c.is_valid()).map(|c| c.index).collect()
    } else {
        vec![first.copy]
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut total = ShowStats::default();
    for (n, &c) in copies.iter().enumerate() {
        let fs = if c == first.copy { None } else { Some(open_fs(spec, Some(c))?) };
        let fs = fs.as_ref().unwrap_or(&first);
        if !json {
            if n > 0 {
                writeln!(out)?;
            }
            let v = &fs.voldata;
            let what = format!(
                "header copy #{}, mirror_tid {:#x}, freemap_tid {:#x}",
                fs.copy,
                v.mirror_tid.get(),
                v.freemap_tid.get()
            );
            writeln!(out, "{}", layout::path_line(spec, &what, width))?;
        }
        let plan = show::Plan::new(fs, opts)?;
        let stats = if json {
            let mut io_err: Option<std::io::Error> = None;
            let stats = plan.run(fs, opts, &mut |e| {
                if io_err.is_none() {
                    let r = serde_json::to_writer(&mut out, e).map_err(std::io::Error::from);
                    if let Err(err) = r.and_then(|_| out.write_all(b"\n")) {
                        io_err = Some(err);
                    }
                }
            });
            if let Some(err) = io_err {
                return Err(err.into());
            }
            stats
        } else {
            show_text::write_text(fs, &plan, opts, width, &mut out)?
        };
        if !json {
            for l in layout::pack(0, 2, &phrases(&stats_line(&stats)), width) {
                writeln!(out, "{l}")?;
            }
        }
        total.blockrefs += stats.blockrefs;
        total.errors += stats.errors;
    }
    out.flush()?;
    if total.errors > 0 {
        eprintln!("hammer2_dump: {} problem(s) found in {} blockrefs", total.errors, total.blockrefs);
        return Ok(common::EXIT_FAILURE);
    }
    Ok(common::EXIT_OK)
}

/// The phrases of a summary line, each ending at a comma or semicolon and
/// kept whole by [`layout::pack`].
fn phrases(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for w in line.split(' ') {
        match out.last_mut() {
            Some(p) if open => {
                p.push(' ');
                p.push_str(w);
            }
            _ => out.push(w.to_string()),
        }
        open = !(w.ends_with(',') || w.ends_with(';'));
    }
    out
}

fn stats_line(s: &ShowStats) -> String {
    let mut line = format!("{} blockrefs, {} verified, {} shared", s.blockrefs, s.verified, s.shared);
    if s.hidden > 0 {
        line.push_str(&format!(", {} data blockrefs hidden", s.hidden));
    }
    if s.unread > 0 {
        line.push_str(&format!(", {} data blocks not read (--verify-data reads them)", s.unread));
    }
    line.push_str(&format!(", {} errors", s.errors));
    line
}

// ---------------------------------------------------------------- freemap

fn freemap_cmd(spec: &str, copy: Option<usize>, json: bool, width: Option<usize>) -> anyhow::Result<i32> {
    let fs = open_fs(spec, copy)?;
    let report = freemap::report(&fs)?;
    if json {
        common::print_json(&report)?;
    } else {
        print_freemap(spec, &report, width);
    }
    if report.errors > 0 {
        eprintln!("hammer2_dump: {} problem(s) found in the freemap", report.errors);
        return Ok(common::EXIT_FAILURE);
    }
    Ok(common::EXIT_OK)
}

/// Prints `line`'s comma-separated phrases, wrapped to `width`.
fn print_wrapped(line: &str, width: Option<usize>) {
    for l in layout::pack(0, 2, &phrases(line), width) {
        println!("{l}");
    }
}

fn print_freemap(spec: &str, r: &FreemapReport<'_>, width: Option<usize>) {
    let what = format!("freemap of header copy #{}, freemap_tid {:#x}", r.copy, r.freemap_tid);
    println!("{}", layout::path_line(spec, &what, width));
    if r.tree.is_empty() {
        println!("(no freemap blocks: nothing was ever allocated)");
    }
    let (mut form, mut text) = (TextForm::new(width), String::new());
    for e in &r.tree {
        form.entry(e, &mut text);
    }
    print!("{text}");
    if !r.leaves.is_empty() {
        const HEADER: [&str; 10] = [
            "zone",
            "leaf",
            "free",
            "allocated",
            "possibly free",
            "reserved",
            "past end",
            "bytes free",
            "avail sum",
            "avail hint",
        ];
        let right = |c: Cell| c.set_alignment(CellAlignment::Right);
        let rows: Vec<Vec<Cell>> = r
            .leaves
            .iter()
            .map(|l| {
                let mut row =
                    vec![Cell::new(format!("{:#x}-{:#x}", l.key, l.key_end)), Cell::new(hex(l.data_off))];
                if let Some(err) = &l.error {
                    // The error spans the counts: one cell, the rest empty.
                    row.push(Cell::new(format!("ERROR: {err}")));
                    row.extend((0..6).map(|_| Cell::new("")));
                } else {
                    for n in [l.free, l.allocated, l.possibly_free, l.reserved, l.beyond_end] {
                        row.push(right(Cell::new(n)));
                    }
                    for n in [l.bytes_free, l.avail_sum] {
                        row.push(right(Cell::new(hex(n))));
                    }
                }
                row.push(right(Cell::new(hex(l.avail_hint))));
                row
            })
            .collect();
        // Narrow: the block counts, then the byte figures, each by zone.
        let groups: [&[usize]; 2] = [&[0, 2, 3, 4, 5, 6], &[0, 1, 7, 8, 9]];
        for t in layout::split_to_fit(&HEADER, &rows, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &groups, width) {
            println!("{t}");
        }
        println!("(counts of 16 KiB blocks)");
    }
    let t = &r.totals;
    print_wrapped(
        &format!(
            "leaves: {}; blocks free {}, allocated {}, possibly free {}, reserved {}; avail sum {:#x}",
            t.leaves, t.free, t.allocated, t.possibly_free, t.reserved, t.avail_sum
        ),
        width,
    );
    println!("zones without a leaf: {} ({:#x} bytes free)", t.zones_without_leaf, t.bytes_free_without_leaf);
    println!("bytes free: {:#x} ({})", t.bytes_free, common::human_bytes(t.bytes_free));
    print_wrapped(
        &format!(
            "allocator_free (header): {:#x} ({}) of allocator_size {:#x}; difference {}",
            t.allocator_free,
            common::human_bytes(t.allocator_free),
            t.allocator_size,
            if t.difference < 0 {
                format!("-{:#x}", t.difference.unsigned_abs())
            } else {
                hex(t.difference as u64)
            }
        ),
        width,
    );
}

// ---------------------------------------------------------------- inode

fn inode_cmd(
    spec: &str,
    copy: Option<usize>,
    pfs: Option<&str>,
    which: &Which,
    json: bool,
    width: Option<usize>,
) -> anyhow::Result<i32> {
    if let Which::Path(p) = which {
        // '..' and NUL are refused, not looked up as names (the image may hold a '..' entry).
        hammer2::read::namespace::user_path(p)?;
    }
    let fs = open_fs(spec, copy)?;
    let report = inode::report(&fs, pfs, which)?;
    if json {
        common::print_json(&report)?;
    } else {
        print!("{}", report.to_text_width(width));
    }
    Ok(common::EXIT_OK)
}

// ---------------------------------------------------------------- pfs

fn pfs_cmd(spec: &str, copy: Option<usize>, json: bool, width: Option<usize>) -> anyhow::Result<i32> {
    let fs = open_fs(spec, copy)?;
    let rows = pfs_dump::list(&fs)?;
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    if json {
        common::print_json(&rows)?;
    } else {
        const HEADER: [&str; 12] = [
            "label",
            "type",
            "subtype",
            "root inum",
            "pfs_inum",
            "inodes",
            "mirror_tid",
            "modify_tid",
            "pfs_clid",
            "pfs_fsid",
            "pfs_clid\npfs_fsid",
            "mirror_tid\nmodify_tid",
        ];
        let right = |c: Cell| c.set_alignment(CellAlignment::Right);
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| {
                let inodes = match (&r.inode_count, &r.error) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(e)) => format!("ERROR: {e}"),
                    (None, None) => "?".into(),
                };
                vec![
                    Cell::new(&r.label),
                    Cell::new(&r.pfs_type),
                    Cell::new(&r.pfs_subtype),
                    right(Cell::new(r.root_inum)),
                    right(Cell::new(r.pfs_inum)),
                    right(Cell::new(inodes)),
                    Cell::new(hex(r.mirror_tid)),
                    Cell::new(hex(r.modify_tid)),
                    Cell::new(&r.pfs_clid),
                    Cell::new(&r.pfs_fsid),
                    Cell::new(format!("{}\n{}", r.pfs_clid, r.pfs_fsid)),
                    Cell::new(format!("{}\n{}", hex(r.mirror_tid), hex(r.modify_tid))),
                ]
            })
            .collect();
        println!(
            "{}",
            layout::path_line(spec, &format!("header copy #{}, {} PFS(s)", fs.copy, rows.len()), width)
        );
        // Narrow: the types and counts, then the tids and the ids, each
        // pair one above the other.
        let groups: [&[usize]; 2] = [&[0, 1, 2, 3, 4, 5], &[0, 11, 10]];
        for t in layout::split_to_fit(&HEADER, &cells, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &groups, width) {
            println!("{t}");
        }
    }
    if failed > 0 {
        eprintln!("hammer2_dump: {failed} PFS(s) could not be counted");
        return Ok(common::EXIT_FAILURE);
    }
    Ok(common::EXIT_OK)
}

// ---------------------------------------------------------------- volhdr

fn volhdr_cmd(spec: &str, json: bool, wide: bool) -> anyhow::Result<i32> {
    let device = Device::open(spec, Access::ReadOnly).context("cannot open device")?;
    let report = volhdr::report(&device);
    if json {
        common::print_json(&report)?;
        return Ok(common::EXIT_OK);
    }
    let width = layout::limit(wide);
    for vol in &report.volumes {
        print_volume(vol, width);
    }
    Ok(common::EXIT_OK)
}

/// One volume's header copies: by default each present copy as a table
/// of its fields, one after another; without a width (`--wide`), every
/// copy side by side in one table.
fn print_volume(vol: &VolumeReport, width: Option<usize>) {
    let id = vol.volu_id.map_or("?".to_string(), |i| i.to_string());
    let what = format!(
        "volume {} ({}{})",
        id,
        common::human_bytes(vol.device_size),
        if vol.is_root() { ", root" } else { "" }
    );
    println!("{}", layout::path_line(&vol.path, &what, width));
    if let Some(line) = vol.truncation() {
        println!("{line}");
    }
    let present: Vec<&CopyReport> = vol.copies.iter().filter(|c| c.state != "absent").collect();
    let title = |c: &CopyReport| format!("copy #{}{}", c.index, if c.in_use { " *" } else { "" });
    let status = |c: &CopyReport| match c.state {
        "valid" if c.in_use => "valid, in use".to_string(),
        "valid" => "valid".to_string(),
        _ => format!("INVALID: {}", c.problems.join("; ")),
    };

    type Getter = fn(&volhdr::HeaderFields) -> String;
    let getters: &[(&str, Getter)] = &[
        ("magic", |h| hex(h.magic)),
        ("version", |h| h.version.to_string()),
        ("volu_id / nvolumes", |h| format!("{} / {}", h.volu_id, h.nvolumes)),
        ("volu_size", |h| hex(h.volu_size)),
        ("total_size", |h| hex(h.total_size)),
        ("boot area", |h| format!("{:#x}-{:#x}", h.boot_beg, h.boot_end)),
        ("aux area", |h| format!("{:#x}-{:#x}", h.aux_beg, h.aux_end)),
        ("allocator_size", |h| hex(h.allocator_size)),
        ("allocator_free", |h| hex(h.allocator_free)),
        ("allocator_beg", |h| hex(h.allocator_beg)),
        ("mirror_tid", |h| hex(h.mirror_tid)),
        ("freemap_tid", |h| hex(h.freemap_tid)),
        ("bulkfree_tid", |h| hex(h.bulkfree_tid)),
        ("fsid", |h| h.fsid.clone()),
        ("fstype", |h| h.fstype.clone()),
        ("flags / copyid", |h| format!("{:#x} / {}", h.flags, h.copyid)),
        ("freemap_version / peer_type", |h| format!("{} / {}", h.freemap_version, h.peer_type)),
        ("crc sector 0", |h| crc(&h.crc_sector0)),
        ("crc sector 1", |h| crc(&h.crc_sector1)),
        ("crc header", |h| crc(&h.crc_header)),
        ("volu_loff", |h| h.volu_loff.iter().map(|o| hex(*o)).collect::<Vec<_>>().join(" ")),
    ];
    // (field, value in each present copy), in display order.
    let mut rows: Vec<(String, Vec<String>)> =
        vec![("offset".into(), present.iter().map(|c| hex(c.offset)).collect())];
    for (name, get) in getters {
        rows.push((
            name.to_string(),
            present.iter().map(|c| c.header.as_ref().map(get).unwrap_or_default()).collect(),
        ));
    }
    for (label, pick) in [
        ("sroot", (|h: &volhdr::HeaderFields| &h.sroot_blockset) as fn(&volhdr::HeaderFields) -> &Vec<_>),
        ("freemap", |h: &volhdr::HeaderFields| &h.freemap_blockset),
    ] {
        for slot in 0..hammer2::format::SET_COUNT {
            let cells: Vec<String> = present
                .iter()
                .map(|c| {
                    c.header
                        .as_ref()
                        .and_then(|h| pick(h).iter().find(|(i, _)| *i == slot))
                        .map(|(_, b)| b.brief())
                        .unwrap_or_default()
                })
                .collect();
            if cells.iter().any(|c| !c.is_empty()) {
                rows.push((format!("{label}[{slot}]"), cells));
            }
        }
    }

    if width.is_none() {
        let mut table = layout::table(None);
        let mut head = vec![Cell::new("field")];
        head.extend(present.iter().map(|c| Cell::new(title(c))));
        table.set_header(head);
        let mut row = vec![Cell::new("status")];
        row.extend(present.iter().map(|c| Cell::new(status(c))));
        table.add_row(row);
        for (name, values) in &rows {
            let mut row = vec![Cell::new(name)];
            row.extend(values.iter().map(Cell::new));
            table.add_row(row);
        }
        println!("{table}");
    } else {
        for (i, c) in present.iter().enumerate() {
            let mut table = layout::table(width);
            table.set_header(vec![title(c), status(c)]);
            for (name, values) in rows.iter().filter(|(_, v)| !v[i].is_empty()) {
                table.add_row(vec![name.clone(), values[i].clone()]);
            }
            println!("{table}");
        }
    }
    let absent: Vec<String> =
        vol.copies.iter().filter(|c| c.state == "absent").map(|c| format!("#{}", c.index)).collect();
    if !absent.is_empty() {
        println!("copies {} lie past the end of the volume", absent.join(", "));
    }
    match vol.best {
        Some(b) => println!("copy in use: #{b}\n"),
        None => println!("NO VALID COPY\n"),
    }
}

fn crc(c: &volhdr::Crc) -> String {
    if c.ok {
        format!("{:08x} ok", c.stored)
    } else {
        format!("{:08x} BAD (computed {:08x})", c.stored, c.computed)
    }
}
