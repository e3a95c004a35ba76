//! newfs_hammer2: format one or more volumes as a HAMMER2 file system.

mod common;

use anyhow::{bail, Context};
use clap::Parser;
use hammer2::cli::newfs::NewfsCli;
use hammer2::device::{Access, Backend, Device, MmapBackend};
use hammer2::format::{CheckMethod, CompMethod};
use hammer2::import::{self, ImportOptions, ImportReport};
use hammer2::newfs::{self, Identity, Layout, NewfsOptions};
use std::path::{Path, PathBuf};

fn main() {
    let cli = NewfsCli::parse();
    common::run("newfs_hammer2", || newfs_cmd(cli))
}

fn check_method(s: &str) -> CheckMethod {
    match s {
        "none" => CheckMethod::None,
        "disabled" => CheckMethod::Disabled,
        "iscsi32" | "crc32" => CheckMethod::Iscsi32,
        "sha192" => CheckMethod::Sha192,
        _ => CheckMethod::Xxhash64,
    }
}

fn comp_method(s: &str) -> CompMethod {
    match s {
        "none" => CompMethod::None,
        "autozero" => CompMethod::Autozero,
        "zlib" => CompMethod::Zlib,
        _ => CompMethod::Lz4,
    }
}

/// The size each device offers, creating image files that do not exist yet.
fn device_sizes(paths: &[PathBuf], sizes: &[Option<u64>], dry_run: bool) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::with_capacity(paths.len());
    for (p, want) in paths.iter().zip(sizes) {
        let have = match std::fs::metadata(p) {
            Ok(_) => MmapBackend::open(p, Access::ReadOnly).map(|b| b.size()).or_else(|e| match e {
                hammer2::Error::Open { ref why, .. } if why.contains("empty") => Ok(0),
                e => Err(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(want) = want else {
                    bail!("{}: does not exist (give -s SIZE to create an image file)", p.display());
                };
                if !dry_run {
                    let f = std::fs::File::create_new(p)
                        .with_context(|| format!("{}: cannot create", p.display()))?;
                    f.set_len(*want)
                        .with_context(|| format!("{}: cannot size to {want} bytes", p.display()))?;
                }
                *want
            }
            Err(e) => bail!("{}: {e}", p.display()),
        };
        let is_file = std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(true);
        let size = match want {
            Some(w) if *w > have && is_file && have == 0 => {
                // An empty image file: grow it (sparse) to the size asked for.
                if !dry_run {
                    std::fs::OpenOptions::new().write(true).open(p)?.set_len(*w)?;
                }
                *w
            }
            Some(w) if *w > have => bail!("{}: -s {w} is larger than the device ({have} bytes)", p.display()),
            Some(w) => *w,
            None => have,
        };
        out.push(size);
    }
    Ok(out)
}

fn newfs_cmd(cli: NewfsCli) -> anyhow::Result<i32> {
    // One volume per argument, as DragonFly's newfs_hammer2 takes them: a
    // name holding ':' is one file, never a volume set.
    let paths: Vec<PathBuf> = cli.devices.iter().map(PathBuf::from).collect();
    let sizes: Vec<Option<u64>> = match &cli.size {
        None => vec![None; paths.len()],
        Some(s) => {
            let parts: Vec<u64> = s.split(':').map(newfs::parse_size).collect::<Result<_, _>>()?;
            match parts.len() {
                1 => vec![Some(parts[0]); paths.len()],
                n if n == paths.len() => parts.into_iter().map(Some).collect(),
                n => bail!("-s gives {n} sizes for {} volumes", paths.len()),
            }
        }
    };
    let opts = NewfsOptions {
        version: cli.fs_version,
        boot: cli.boot,
        aux: cli.aux,
        labels: cli.label.clone(),
        check: check_method(&cli.check),
        comp: comp_method(&cli.comp),
        zero: cli.zero,
    };
    // Validate everything that needs no device first.
    let labels = newfs::resolve_labels(&opts.labels)?;
    let populate = match &cli.populate {
        None => None,
        Some(host) => {
            if !std::fs::metadata(host).with_context(|| format!("{}", host.display()))?.is_dir() {
                bail!("--populate {}: not a directory", host.display());
            }
            let Some(label) = labels.iter().find(|l| *l != newfs::LOCAL_LABEL) else {
                return Err(common::usage("--populate needs a PFS besides LOCAL (give -L LABEL)"));
            };
            Some((host.as_path(), label.clone()))
        }
    };
    let avail = device_sizes(&paths, &sizes, cli.dry_run)?;
    let layout = newfs::plan(&avail, &opts)?;
    let id = Identity::random(layout.labels.len());

    if !cli.dry_run {
        let mut device = Device::open_paths(&paths, Access::ReadWrite).context("cannot open for writing")?;
        if !cli.force {
            for (i, p) in paths.iter().enumerate() {
                if let Some(what) = newfs::existing_filesystem(device.volume(i)) {
                    bail!("{}: holds {what}; use -f to format it anyway", p.display());
                }
            }
        }
        let writes = newfs::build(&layout, &opts, &id);
        newfs::apply(&mut device, &layout, &writes, opts.zero).context("format failed")?;
    }
    let imported = match populate {
        Some((host, label)) if !cli.dry_run => {
            let spec = cli.devices.join(":");
            Some((label.clone(), populate_pfs(&spec, &label, host, &cli)?))
        }
        _ => None,
    };
    if cli.json {
        let mut v = summary_json(&layout, &id, &paths, cli.dry_run);
        if let Some((label, r)) = &imported {
            v["populate"] = serde_json::json!({"pfs": label, "report": r});
        }
        common::print_json(&v)?;
    } else if !cli.quiet {
        print_summary(&layout, &id, &paths, cli.dry_run);
        if let Some((label, r)) = &imported {
            println!(
                "populated PFS \"{label}\": {} directories, {} files ({}, {} on media), {} symlinks, {} hard links, {} special files",
                r.dirs,
                r.files,
                common::human_bytes(r.bytes),
                common::human_bytes(r.media_bytes),
                r.symlinks,
                r.hardlinks,
                r.specials
            );
        }
    }
    Ok(common::EXIT_OK)
}

/// Imports `host` into the PFS `label` of the new file system, with a
/// progress bar (bytes of file contents) on a terminal.
fn populate_pfs(spec: &str, label: &str, host: &Path, cli: &NewfsCli) -> anyhow::Result<ImportReport> {
    let bar = (common::stderr_is_terminal() && !cli.quiet && !cli.json).then(|| {
        let (_, total) = import::host_size(host);
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "populating {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let mut last = 0;
    let r = import::populate(spec, label, host, &ImportOptions::default(), &mut |r| {
        if let Some(pb) = &bar {
            let n = r.files + r.dirs + r.symlinks + r.specials + r.hardlinks;
            if n >= last + 64 {
                last = n;
                pb.set_position(r.bytes);
                pb.set_message(format!("{} files", r.files));
            }
        }
    });
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let (report, _) = r.with_context(|| format!("populating from {} failed", host.display()))?;
    Ok(report)
}

fn summary_json(layout: &Layout, id: &Identity, paths: &[PathBuf], dry_run: bool) -> serde_json::Value {
    let pfs: Vec<_> = layout
        .labels
        .iter()
        .zip(&id.pfs)
        .map(|(l, (clid, fsid))| serde_json::json!({"label": l, "clid": clid.to_string(), "fsid": fsid.to_string()}))
        .collect();
    serde_json::json!({
        "dry_run": dry_run,
        "devices": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "layout": layout,
        "fsid": id.fsid.to_string(),
        "sroot_clid": id.sroot_clid.to_string(),
        "sroot_fsid": id.sroot_fsid.to_string(),
        "pfs": pfs,
    })
}

fn print_summary(layout: &Layout, id: &Identity, paths: &[PathBuf], dry_run: bool) {
    let h = common::human_bytes;
    if dry_run {
        println!("dry run: nothing written");
    }
    println!("---------------------------------------------");
    println!("version:          {}", layout.version);
    for (i, (v, p)) in layout.volumes.iter().zip(paths).enumerate() {
        println!(
            "volume {i}:         {} at {:#x}, {} ({} header copies)",
            Path::new(p).display(),
            v.loff,
            h(v.size),
            v.header_copies.len()
        );
    }
    println!("total-size:       {} ({} bytes)", h(layout.total_size), layout.total_size);
    println!("boot-area-size:   {}", h(layout.boot_end - layout.boot_beg));
    println!("aux-area-size:    {}", h(layout.aux_end - layout.aux_beg));
    println!("topo-reserved:    {}", h(layout.reserved_size));
    println!("free-size:        {}", h(layout.free_size));
    println!("vol-fsid:         {}", id.fsid);
    println!("sup-clid:         {}", id.sroot_clid);
    println!("sup-fsid:         {}", id.sroot_fsid);
    for (l, (clid, fsid)) in layout.labels.iter().zip(&id.pfs) {
        println!("PFS \"{l}\"");
        println!("    clid {clid}");
        println!("    fsid {fsid}");
    }
}
