//! hammer2_dump: HAMMER2 structure and chain-tree dumps.

mod common;

use anyhow::Context;
use clap::Parser;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use hammer2::cli::dump::{DumpCli, DumpCommand};
use hammer2::device::{lock, Access, Device};
use hammer2::dump::freemap::{self, FreemapReport};
use hammer2::dump::inode::{self, Which};
use hammer2::dump::pfs as pfs_dump;
use hammer2::dump::show::{self, ShowEntry, ShowOptions, ShowStats, Start, TreeKind};
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
        DumpCommand::Volhdr { device, json } => volhdr_cmd(&device, json),
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
        } => {
            let start = match (pfs, offset) {
                (Some(label), _) => Start::Pfs(label),
                (None, Some(off)) => Start::Offset(off),
                (None, None) => Start::Topology,
            };
            let opts = ShowOptions { start, freemap, max_depth: depth, hide_data, verify_data };
            show_cmd(&device, copy, all_copies, &opts, json)
        }
        DumpCommand::Freemap { device, copy, json } => freemap_cmd(&device, copy, json),
        DumpCommand::Inode { device, path, inum, pfs, copy, json } => {
            let which = match (path, inum) {
                (_, Some(n)) => Which::Inum(n),
                (Some(p), None) => Which::Path(p),
                (None, None) => unreachable!("clap requires a path or --inum"),
            };
            inode_cmd(&device, copy, pfs.as_deref(), &which, json)
        }
        DumpCommand::Pfs { device, copy, json } => pfs_cmd(&device, copy, json),
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
            writeln!(
                out,
                "{spec}: header copy #{}, mirror_tid {:#x}, freemap_tid {:#x}",
                fs.copy,
                v.mirror_tid.get(),
                v.freemap_tid.get()
            )?;
        }
        let mut io_err: Option<std::io::Error> = None;
        let mut section: Option<TreeKind> = None;
        let stats = show::show(fs, opts, &mut |e| {
            if io_err.is_some() {
                return;
            }
            let r = if json {
                serde_json::to_string(e).map_err(std::io::Error::from).and_then(|s| writeln!(out, "{s}"))
            } else {
                let head = if section != Some(e.tree) {
                    section = Some(e.tree);
                    writeln!(out, "{}:", e.tree.name())
                } else {
                    Ok(())
                };
                head.and_then(|_| writeln!(out, "{}", entry_line(e)))
            };
            if let Err(err) = r {
                io_err = Some(err);
            }
        })?;
        if let Some(err) = io_err {
            return Err(err.into());
        }
        if !json {
            writeln!(out, "{}", stats_line(&stats))?;
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

/// One line of `show`: the blockref, then what it carries.
fn entry_line(e: &ShowEntry) -> String {
    let b = &e.bref;
    let mut s = format!(
        "{:indent$}[{}] {} data_off={:#x} key={:#018x}/{} psize={} mir={:#x} mod={:#x} upd={:#x}",
        "",
        e.index,
        b.type_,
        b.data_off,
        b.key,
        b.keybits,
        e.physical_size,
        b.mirror_tid,
        b.modify_tid,
        b.update_tid,
        indent = e.depth * 2
    );
    if e.check_status == "no_media" {
        s.push_str(" no-media");
    } else {
        s.push_str(&format!(" check={}:{} {} comp={}", b.check, b.check_value, e.check_status, b.comp));
    }
    if b.flags != 0 {
        s.push_str(&format!(" flags={:#x}", b.flags));
    }
    if b.leaf_count != 0 {
        s.push_str(&format!(" leafcnt={}", b.leaf_count));
    }
    if let Some(st) = &e.stats {
        s.push_str(&format!(" data_count={} inode_count={}", st.data_count, st.inode_count));
    }
    if let Some(d) = &e.dirent {
        s.push_str(&format!(" name={:?} inum={} type={}", d.name, d.inum, d.type_));
    }
    if let Some(i) = &e.inode {
        s.push_str(&format!(
            " inum={} type={} mode={:04o} size={} nlinks={} name={:?}",
            i.inum, i.type_, i.mode, i.size, i.nlinks, i.name
        ));
        if let (Some(t), Some(st)) = (&i.pfs_type, &i.pfs_subtype) {
            s.push_str(&format!(" pfs={t}/{st}"));
        }
        if i.direct_data {
            s.push_str(" embedded");
        }
    }
    if let Some(f) = &e.freemap {
        s.push_str(&format!(
            " range={:#x}-{:#x} avail={:#x} bigmask={:#x}",
            b.key, e.key_end, f.avail, f.bigmask
        ));
    }
    if e.shared {
        s.push_str(" shared (children shown above)");
    }
    if e.children_not_shown > 0 {
        s.push_str(&format!(" (+{} children not shown)", e.children_not_shown));
    }
    if let Some(err) = &e.error {
        s.push_str(&format!(" ERROR: {err}"));
    }
    s
}

// ---------------------------------------------------------------- freemap

fn freemap_cmd(spec: &str, copy: Option<usize>, json: bool) -> anyhow::Result<i32> {
    let fs = open_fs(spec, copy)?;
    let report = freemap::report(&fs)?;
    if json {
        common::print_json(&report)?;
    } else {
        print_freemap(spec, &report);
    }
    if report.errors > 0 {
        eprintln!("hammer2_dump: {} problem(s) found in the freemap", report.errors);
        return Ok(common::EXIT_FAILURE);
    }
    Ok(common::EXIT_OK)
}

fn print_freemap(spec: &str, r: &FreemapReport) {
    println!("{spec}: freemap of header copy #{}, freemap_tid {:#x}", r.copy, r.freemap_tid);
    if r.tree.is_empty() {
        println!("(no freemap blocks: nothing was ever allocated)");
    }
    for e in &r.tree {
        println!("{}", entry_line(e));
    }
    if !r.leaves.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        table.set_header(vec![
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
        ]);
        for l in &r.leaves {
            let mut row =
                vec![Cell::new(format!("{:#x}-{:#x}", l.key, l.key_end)), Cell::new(hex(l.data_off))];
            if let Some(err) = &l.error {
                row.push(Cell::new(format!("ERROR: {err}")));
            } else {
                for n in [l.free, l.allocated, l.possibly_free, l.reserved, l.beyond_end] {
                    row.push(Cell::new(n).set_alignment(CellAlignment::Right));
                }
                for n in [l.bytes_free, l.avail_sum] {
                    row.push(Cell::new(hex(n)).set_alignment(CellAlignment::Right));
                }
            }
            row.push(Cell::new(hex(l.avail_hint)).set_alignment(CellAlignment::Right));
            table.add_row(row);
        }
        println!("{table}");
        println!("(counts of 16 KiB blocks)");
    }
    let t = &r.totals;
    println!(
        "leaves: {}; blocks free {}, allocated {}, possibly free {}, reserved {}; avail sum {:#x}",
        t.leaves, t.free, t.allocated, t.possibly_free, t.reserved, t.avail_sum
    );
    println!("zones without a leaf: {} ({:#x} bytes free)", t.zones_without_leaf, t.bytes_free_without_leaf);
    println!("bytes free: {:#x} ({})", t.bytes_free, common::human_bytes(t.bytes_free));
    println!(
        "allocator_free (header): {:#x} ({}) of allocator_size {:#x}; difference {}",
        t.allocator_free,
        common::human_bytes(t.allocator_free),
        t.allocator_size,
        if t.difference < 0 {
            format!("-{:#x}", t.difference.unsigned_abs())
        } else {
            hex(t.difference as u64)
        }
    );
}

// ---------------------------------------------------------------- inode

fn inode_cmd(
    spec: &str,
    copy: Option<usize>,
    pfs: Option<&str>,
    which: &Which,
    json: bool,
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
        print!("{}", report.to_text());
    }
    Ok(common::EXIT_OK)
}

// ---------------------------------------------------------------- pfs

fn pfs_cmd(spec: &str, copy: Option<usize>, json: bool) -> anyhow::Result<i32> {
    let fs = open_fs(spec, copy)?;
    let rows = pfs_dump::list(&fs)?;
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    if json {
        common::print_json(&rows)?;
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        table.set_header(vec![
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
        ]);
        for r in &rows {
            let inodes = match (&r.inode_count, &r.error) {
                (Some(n), _) => n.to_string(),
                (None, Some(e)) => format!("ERROR: {e}"),
                (None, None) => "?".into(),
            };
            table.add_row(vec![
                Cell::new(&r.label),
                Cell::new(&r.pfs_type),
                Cell::new(&r.pfs_subtype),
                Cell::new(r.root_inum).set_alignment(CellAlignment::Right),
                Cell::new(r.pfs_inum).set_alignment(CellAlignment::Right),
                Cell::new(inodes).set_alignment(CellAlignment::Right),
                Cell::new(hex(r.mirror_tid)),
                Cell::new(hex(r.modify_tid)),
                Cell::new(&r.pfs_clid),
                Cell::new(&r.pfs_fsid),
            ]);
        }
        println!("{spec}: header copy #{}, {} PFS(s)", fs.copy, rows.len());
        println!("{table}");
    }
    if failed > 0 {
        eprintln!("hammer2_dump: {failed} PFS(s) could not be counted");
        return Ok(common::EXIT_FAILURE);
    }
    Ok(common::EXIT_OK)
}

// ---------------------------------------------------------------- volhdr

fn volhdr_cmd(spec: &str, json: bool) -> anyhow::Result<i32> {
    let device = Device::open(spec, Access::ReadOnly).context("cannot open device")?;
    let report = volhdr::report(&device);
    if json {
        common::print_json(&report)?;
        return Ok(common::EXIT_OK);
    }
    for vol in &report.volumes {
        print_volume(vol);
    }
    Ok(common::EXIT_OK)
}

fn print_volume(vol: &VolumeReport) {
    let id = vol.volu_id.map_or("?".to_string(), |i| i.to_string());
    println!(
        "{}: volume {} ({}{})",
        vol.path,
        id,
        common::human_bytes(vol.device_size),
        if vol.is_root() { ", root" } else { "" }
    );
    if let Some(line) = vol.truncation() {
        println!("{line}");
    }
    let present: Vec<&CopyReport> = vol.copies.iter().filter(|c| c.state != "absent").collect();
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let mut head = vec![Cell::new("field")];
    head.extend(
        present.iter().map(|c| Cell::new(format!("copy #{}{}", c.index, if c.in_use { " *" } else { "" }))),
    );
    table.set_header(head);

    type Getter = fn(&volhdr::HeaderFields) -> String;
    let rows: &[(&str, Getter)] = &[
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
    let mut status = vec![Cell::new("status")];
    status.extend(present.iter().map(|c| {
        Cell::new(match c.state {
            "valid" if c.in_use => "valid, in use".to_string(),
            "valid" => "valid".to_string(),
            _ => format!("INVALID: {}", c.problems.join("; ")),
        })
    }));
    table.add_row(status);
    let mut offset = vec![Cell::new("offset")];
    offset.extend(present.iter().map(|c| Cell::new(hex(c.offset))));
    table.add_row(offset);
    for (name, get) in rows {
        let mut row = vec![Cell::new(*name)];
        row.extend(present.iter().map(|c| Cell::new(c.header.as_ref().map(get).unwrap_or_default())));
        table.add_row(row);
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
                let mut row = vec![Cell::new(format!("{label}[{slot}]"))];
                row.extend(cells.into_iter().map(Cell::new));
                table.add_row(row);
            }
        }
    }
    println!("{table}");
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
