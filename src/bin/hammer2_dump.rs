//! hammer2_dump: HAMMER2 structure and chain-tree dumps.

mod common;

use anyhow::Context;
use clap::Parser;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, Table};
use hammer2::cli::dump::{DumpCli, DumpCommand};
use hammer2::device::{Access, Device};
use hammer2::dump::volhdr::{self, CopyReport, VolumeReport};

fn main() {
    let cli = DumpCli::parse();
    common::run("hammer2_dump", || match cli.command {
        DumpCommand::Volhdr { device, json } => volhdr_cmd(&device, json),
    })
}

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

fn hex(v: u64) -> String {
    format!("{v:#x}")
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
