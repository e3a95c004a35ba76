//! newfs_hammer2: format one or more volumes as a HAMMER2 file system.

mod common;

use anyhow::{bail, Context};
use clap::Parser;
use hammer2::cli::newfs::NewfsCli;
use hammer2::device::lock::{self, LockedFile};
use hammer2::device::{Access, Backend, Device, MmapBackend};
use hammer2::dump::layout;
use hammer2::format::{CheckMethod, CompMethod};
use hammer2::host::import::{self, ImportOptions, ImportReport};
use hammer2::newfs::{self, Identity, Layout, NewfsOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn main() {
    let cli = NewfsCli::parse();
    common::stop_cleanly_on_interrupt("newfs_hammer2");
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

/// What a device argument needs before it can be formatted.
enum Prepare {
    /// Nothing: it exists and has the size asked for (or more).
    Ready,
    /// A missing image file, created sparse at this size.
    Create(u64),
    /// An empty image file, grown sparse to this size.
    Grow(u64),
}

/// The size each device offers, and what must be done to image files that
/// do not exist yet or are empty; nothing is created here, so that an
/// argument refused later leaves no file behind.
fn device_sizes(paths: &[PathBuf], sizes: &[Option<u64>]) -> anyhow::Result<Vec<(u64, Prepare)>> {
    let mut out = Vec::with_capacity(paths.len());
    for (p, want) in paths.iter().zip(sizes) {
        let have = match std::fs::metadata(p) {
            Ok(_) => MmapBackend::open(p, Access::ReadOnly).map(|b| b.size()).or_else(|e| match e {
                hammer2::Error::Empty { .. } => Ok(0),
                e => Err(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(want) = want else {
                    bail!("{}: does not exist (give -s SIZE to create an image file)", p.display());
                };
                out.push((*want, Prepare::Create(*want)));
                continue;
            }
            Err(e) => bail!("{}: {e}", p.display()),
        };
        let is_file = std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(true);
        out.push(match want {
            // An empty image file: grow it (sparse) to the size asked for.
            Some(w) if *w > have && is_file && have == 0 => (*w, Prepare::Grow(*w)),
            Some(w) if *w > have => bail!(
                "{}: -s {} is larger than the device ({})",
                p.display(),
                common::human_bytes(*w),
                common::human_bytes(have)
            ),
            Some(w) => (*w, Prepare::Ready),
            None => (have, Prepare::Ready),
        });
    }
    Ok(out)
}

/// Image files this run created, locked from their creation on: removed
/// again unless the format succeeds ([`Created::keep`]), so a failed run
/// leaves no half-made file behind.
struct Created(Vec<PathBuf>, Vec<Arc<LockedFile>>);

impl Created {
    /// Creates or grows the image files `prep` asks for.
    fn prepare(paths: &[PathBuf], prep: &[(u64, Prepare)]) -> anyhow::Result<Created> {
        let mut created = Created(Vec::new(), Vec::new());
        for (p, (_, what)) in paths.iter().zip(prep) {
            match what {
                Prepare::Ready => {}
                Prepare::Create(size) => {
                    let f = lock::create_new(p).map_err(common::lock_refused)?;
                    created.0.push(p.clone());
                    created.1.push(f.clone());
                    f.file().set_len(*size).with_context(|| {
                        format!("{}: cannot size to {}", p.display(), common::human_bytes(*size))
                    })?;
                }
                Prepare::Grow(size) => std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .and_then(|f| f.set_len(*size))
                    .with_context(|| {
                        format!("{}: cannot size to {}", p.display(), common::human_bytes(*size))
                    })?,
            }
        }
        Ok(created)
    }

    /// The files stay; their locks are handed back (for the rest of the run).
    fn keep(mut self) -> Vec<Arc<LockedFile>> {
        self.0.clear();
        std::mem::take(&mut self.1)
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn newfs_cmd(cli: NewfsCli) -> anyhow::Result<i32> {
    // One volume per argument, as DragonFly's newfs_hammer2 takes them: a
    // name holding ':' is one file, never a volume set.
    let paths: Vec<PathBuf> = cli.devices.iter().map(PathBuf::from).collect();
    let sizes: Vec<Option<u64>> = match &cli.size {
        None => vec![None; paths.len()],
        Some(s) => {
            let parts: Vec<u64> = s
                .split(':')
                .map(newfs::parse_size)
                .collect::<Result<_, _>>()
                .map_err(|e| common::usage(format!("-s: {e}")))?;
            match parts.len() {
                1 => vec![Some(parts[0]); paths.len()],
                n if n == paths.len() => parts.into_iter().map(Some).collect(),
                n => {
                    return Err(common::usage(format!(
                        "-s gives {n} sizes for {} volume{}",
                        paths.len(),
                        if paths.len() == 1 { "" } else { "s" }
                    )))
                }
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
            if !std::fs::metadata(host).with_context(|| format!("--populate {}", host.display()))?.is_dir() {
                bail!("--populate {}: not a directory", host.display());
            }
            let Some(label) = labels.iter().find(|l| *l != newfs::LOCAL_LABEL) else {
                return Err(common::usage("--populate needs a PFS besides LOCAL (give -L LABEL)"));
            };
            Some((host.as_path(), label.clone()))
        }
    };
    // Every volume stays locked (exclusive to format, shared for a dry run)
    // from before its size is read to the end of the run, populating
    // included; image files created here are locked as they are created.
    let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
    let access = if cli.dry_run { Access::ReadOnly } else { Access::ReadWrite };
    let _run = lock::hold_paths(&existing, access, cli.wait.get()).map_err(|e| match e {
        hammer2::Error::Mounted { .. } => anyhow::Error::new(e).context("cannot open for writing"),
        e => common::lock_refused(e),
    })?;
    let prep = device_sizes(&paths, &sizes)?;
    let avail: Vec<u64> = prep.iter().map(|(size, _)| *size).collect();
    let layout = newfs::plan(&avail, &opts)?;
    let id = Identity::random(layout.labels.len());

    let mut _created_locks = Vec::new();
    if !cli.dry_run {
        let created = Created::prepare(&paths, &prep)?;
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
        // Formatted: an image file created here is the user's now, even
        // if populating it fails below.
        _created_locks = created.keep();
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
            let fields = [
                format!("populated PFS \"{label}\":"),
                format!("{} directories,", r.dirs),
                format!(
                    "{} files ({}, {} on media),",
                    r.files,
                    common::human_bytes(r.bytes),
                    common::human_bytes(r.media_bytes)
                ),
                format!("{} symlinks,", r.symlinks),
                format!("{} hard links,", r.hardlinks),
                format!("{} special files", r.specials),
            ];
            for l in layout::pack(0, 2, &fields, Some(layout::width())) {
                println!("{l}");
            }
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
    let what = match &r {
        Err(hammer2::Error::Interrupted) => "stopped; the file system is formatted and empty",
        _ => "failed",
    };
    let (report, _) = r.with_context(|| format!("populating from {} {what}", host.display()))?;
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
        // The path whole; where it does not fit the width with the rest,
        // the rest goes on the next line, under it.
        let name = format!("volume {i}:");
        let rest = format!(
            "at {:#x}, {} ({} header cop{})",
            v.loff,
            h(v.size),
            v.header_copies.len(),
            if v.header_copies.len() == 1 { "y" } else { "ies" }
        );
        let path = Path::new(p).display().to_string();
        let line = format!("{name:<17} {path} {rest}");
        if line.chars().count() <= layout::width() {
            println!("{line}");
        } else {
            println!("{name:<17} {path}\n{:<17} {rest}", "");
        }
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
