//! hammer2_edit: read (and, later, edit) a HAMMER2 file system offline.

mod common;

use anyhow::Context;
use clap::Parser;
use hammer2::cli::edit::{EditCli, EditCommand, EditLine};
use hammer2::device::{Access, Device};
use hammer2::extract::{extract_with, ExtractOptions};
use hammer2::file::{read_file, read_link, WriteSink};
use hammer2::format::ObjType;
use hammer2::pfs::{Inode, Pfs};
use hammer2::tree::Tree;
use hammer2::walk::namespace;
use hammer2::{CopyChoice, Hammer2};
use std::io::{BufRead, Write};

fn main() {
    let cli = EditCli::parse();
    common::run("hammer2_edit", || run(cli))
}

/// The commands to run: (text to echo, words). A line that cannot be split
/// into words is a usage error, and nothing runs.
fn commands(cli: &EditCli) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let split = |line: &str| {
        shlex::split(line).ok_or_else(|| common::usage(format!("unbalanced quotes in {line:?}")))
    };
    if let Some(r) = &cli.request {
        return Ok(vec![(r.clone(), split(r)?)]);
    }
    if let Some(path) = &cli.script {
        let reader: Box<dyn BufRead> = if path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?,
            ))
        };
        let mut out = Vec::new();
        for line in reader.lines() {
            let line = line?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            out.push((t.to_string(), split(t)?));
        }
        return Ok(out);
    }
    if cli.command.is_empty() {
        return Err(common::usage("no command given (try: ls, cat, stat, get, pfs; or -R CMD, -f SCRIPT)"));
    }
    Ok(vec![(cli.command.join(" "), cli.command.clone())])
}

fn run(cli: EditCli) -> anyhow::Result<i32> {
    let cmds = commands(&cli)?;
    let device = Device::open(&cli.device, Access::ReadOnly).context("cannot open device")?;
    let choice = cli.copy.map_or(CopyChoice::Best, CopyChoice::Index);
    let fs = Hammer2::open(device, choice).context("cannot open file system")?;
    let tree = Tree::new(&fs);
    let echo = cli.script.is_some();
    let mut failures = 0;
    let mut usage_errors = 0;
    for (text, words) in &cmds {
        if echo {
            eprintln!("hammer2_edit: {text}");
        }
        let line = match EditLine::try_parse_from(words) {
            Ok(line) => line,
            Err(ce) if !ce.use_stderr() => {
                // `help` and the like: not an error.
                print!("{}", ce.render());
                continue;
            }
            Err(ce) => {
                eprint!("hammer2_edit: {text}: {}", ce.render());
                failures += 1;
                usage_errors += 1;
                continue;
            }
        };
        let pfs = || -> anyhow::Result<Pfs<'_>> {
            Ok(match &cli.pfs {
                Some(l) => Pfs::find(&tree, l)?,
                None => Pfs::default(&tree)?,
            })
        };
        if let Err(e) = execute(&tree, pfs, line.cmd) {
            common::report_error(&format!("hammer2_edit: {text}"), &e);
            failures += 1;
        }
    }
    if echo && failures > 0 {
        eprintln!("hammer2_edit: {failures} of {} commands failed", cmds.len());
    }
    Ok(if usage_errors > 0 {
        common::EXIT_USAGE
    } else if failures > 0 {
        common::EXIT_FAILURE
    } else {
        common::EXIT_OK
    })
}

fn execute<'a>(
    tree: &Tree<'a>,
    pfs: impl Fn() -> anyhow::Result<Pfs<'a>>,
    cmd: EditCommand,
) -> anyhow::Result<()> {
    match cmd {
        EditCommand::Pfs => {
            for p in Pfs::list(tree)? {
                let m = &p.root.data.meta;
                println!(
                    "{:<16} {:<10} {}",
                    p.name(),
                    m.pfs_type(),
                    hammer2::format::uuid_from_disk(&m.pfs_clid)
                );
            }
        }
        EditCommand::Cat { path } => {
            let pfs = pfs()?;
            let ino = namespace::resolve(&pfs, &path)?;
            if ino.is_dir() {
                return Err(hammer2::Error::IsADirectory(path).into());
            }
            let stdout = std::io::stdout();
            let mut sink = WriteSink(std::io::BufWriter::new(stdout.lock()));
            read_file(tree, &ino, &mut sink)?;
            sink.0.flush()?;
        }
        EditCommand::Stat { json, path } => {
            let pfs = pfs()?;
            let ino = namespace::resolve(&pfs, &path)?;
            let report = hammer2::dump::inode::describe(&pfs.name(), Some(path), &ino);
            if json {
                common::print_json(&report)?;
            } else {
                print!("{}", report.to_text());
            }
        }
        EditCommand::Ls { long, all, path } => {
            let pfs = pfs()?;
            let ino = namespace::resolve(&pfs, &path)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if !ino.is_dir() {
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                print_entry(tree, &ino, name.as_bytes(), long, &mut out)?;
            } else {
                let mut entries = pfs.readdir(&ino)?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for e in entries.iter().filter(|e| all || !e.name.starts_with(b".")) {
                    if long {
                        let child = pfs.inode(e.inum)?;
                        print_entry(tree, &child, &e.name, true, &mut out)?;
                    } else {
                        out.write_all(&e.name)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.flush()?;
        }
        EditCommand::Get { force, path, hostdir } => {
            let pfs = pfs()?;
            let bar = common::stderr_is_terminal().then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            });
            let opts = ExtractOptions { force, ..ExtractOptions::default() };
            let stats = extract_with(&pfs, &path, std::path::Path::new(&hostdir), &opts, &mut |s| {
                if let Some(pb) = &bar {
                    if (s.files + s.dirs) % 64 == 0 {
                        pb.set_message(format!("{} files, {}", s.files, common::human_bytes(s.bytes)));
                    }
                }
            });
            if let Some(pb) = bar {
                pb.finish_and_clear();
            }
            let stats = stats?;
            for s in &stats.skipped {
                eprintln!("hammer2_edit: skipped {s}");
            }
            eprintln!(
                "extracted {} files ({}), {} directories, {} symlinks, {} hard links",
                stats.files,
                common::human_bytes(stats.bytes),
                stats.dirs,
                stats.symlinks,
                stats.hardlinks
            );
        }
    }
    Ok(())
}

fn print_entry(
    tree: &Tree<'_>,
    ino: &Inode<'_>,
    name: &[u8],
    long: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if long {
        let m = &ino.data.meta;
        write!(
            out,
            "{} {:>3} {:>5} {:>5} {:>10} {} ",
            mode_string(ino.obj_type(), m.mode.get()),
            m.nlinks.get(),
            m.unix_uid(),
            m.unix_gid(),
            m.size.get(),
            hammer2::timefmt::short(m.mtime.get())
        )?;
    }
    out.write_all(name)?;
    if long && ino.obj_type() == ObjType::Softlink {
        out.write_all(b" -> ")?;
        out.write_all(&read_link(tree, ino)?)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// `drwxr-xr-x` as ls(1) prints it.
fn mode_string(t: ObjType, mode: u32) -> String {
    let kind = match t {
        ObjType::Directory => 'd',
        ObjType::Softlink => 'l',
        ObjType::Fifo => 'p',
        ObjType::Cdev => 'c',
        ObjType::Bdev => 'b',
        ObjType::Socket => 's',
        _ => '-',
    };
    let mut s = String::from(kind);
    for (shift, special, set_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & special != 0, x) {
            (true, true) => set_char,
            (true, false) => set_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}
