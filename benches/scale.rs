//! Scale benchmark (not a test): a file system of a million small files,
//! our tools side by side with the reference tools.
//!
//! `cargo bench --bench scale` generates once, under target/bench-scale/, a
//! deterministic host tree of 1,000 directories of 1,000 small files each
//! (sizes 64 B to 4 KiB, about 2 KiB on average; half text-like, half
//! random bytes), and builds from it, once, an image with our
//! `newfs_hammer2 --populate` (the populate's cost is printed when it
//! runs). Then, after one untimed run that warms the page cache for the
//! read-only pieces, for `$HAMMER2_BENCH_ROUNDS` rounds (default 3), ours and
//! theirs alternate on each piece of work and the medians, peak RSS
//! (wait4(2)) and ratios are printed, next to the targets of issue #23:
//!
//! - full check: `fsck_hammer2 -n` against `reftools/fsck_hammer2 -q -b`
//!   (the best header copy only, as ours checks);
//! - `hammer2_dump show` against `reftools/hammer2 show` (theirs is slow,
//!   it runs once unless `HAMMER2_SCALE_SHOW_ROUNDS` says otherwise; 0
//!   leaves it out);
//! - `hammer2_dump freemap` against `reftools/hammer2 freemap`;
//! - `hammer2_edit bulkfree` against `reftools/makefs -o B` (the
//!   reference kernel code's bulkfree, mounting the image);
//! - one `mkdir`, `put` and `rm` at the root (1,000 entries) and in a
//!   1,000-entry directory: ours only (a mounted kernel has no counterpart
//!   run); target under 50 ms each;
//! - extraction, `hammer2_edit IMG get / DIR` against `cp -r TREE DIR`,
//!   into a tmpfs (/dev/shm) when there is one.
//!
//! Writes (edits, bulkfree) go to a sparse copy of the cached image, made
//! once per run, so the cached image stays as populated.
//!
//! Environment: `HAMMER2_SCALE_10M=1` for the 10,000,000-file variant
//! (10,000 directories of 1,000 files; no host tree: the image is
//! generated through the library's write engine, `hammer2::host::synth`,
//! nine files in ten embedded in their inodes, about 15 GB on media in a
//! sparse 32 GiB image), `HAMMER2_REFTOOLS`,
//! `HAMMER2_SCALE_10M_DIRS` (with `HAMMER2_SCALE_10M`: that many
//! directories instead of 10,000, to try the generator),
//! `HAMMER2_SCALE_DIR` (where the tree and image are cached, shared by
//! several checkouts; default target/bench-scale), `HAMMER2_BENCH_ROUNDS`,
//! `HAMMER2_BENCH_ONLY` (only the pieces of work whose name contains
//! it, or one of its comma-separated parts: `fsck,bulkfree,edits` leaves
//! out the reference `show`, which takes very long at 10M files),
//! `HAMMER2_SCALE_THEIRS=0` (ours only: no reference tool runs).

#[path = "../tests/common/mod.rs"]
mod common;

mod support;

use hammer2::host::synth::{SynthEntry, SynthMeta};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::Usage;

/// Files per directory.
const PER_DIR: u64 = 1000;

/// SplitMix64: a deterministic stream of well mixed numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The size of [`pool`] (it holds 8 KiB more, so any slice fits).
const POOL: usize = 4 << 20;

/// The host tree: `dirs` directories `dNNNNN` of [`PER_DIR`] files
/// `fNNNN`. Each file is a slice of a 4 MiB pool whose first half is
/// words and whose second half is random, so about half of the bytes
/// compress.
fn generate(tree: &Path, dirs: u64) {
    let pool = pool();
    std::fs::create_dir_all(tree).unwrap();
    for d in 0..dirs {
        let dir = tree.join(format!("d{d:05}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..PER_DIR {
            let r = mix(d * PER_DIR + f);
            let size = 64 + (r % 4033) as usize;
            let off = ((r >> 20) as usize) % (POOL - size);
            let mut out = std::fs::File::create(dir.join(format!("f{f:04}"))).unwrap();
            out.write_all(&pool[off..off + size]).unwrap();
        }
        if d % 100 == 99 {
            eprintln!("  generated {} of {dirs} directories", d + 1);
        }
    }
}

/// The pool generated files take their bytes from: the first half words,
/// the second half random, so about half of the bytes compress.
fn pool() -> Vec<u8> {
    let mut pool = Vec::with_capacity(POOL + 8192);
    let words: Vec<Vec<u8>> = (0..2000u64)
        .map(|i| {
            let r = mix(i);
            (0..2 + r % 8).map(|k| b'a' + (mix(r ^ k) % 26) as u8).collect()
        })
        .collect();
    let mut i = 0u64;
    while pool.len() < POOL / 2 {
        pool.extend_from_slice(&words[(mix(i ^ 0x5555) % 2000) as usize]);
        pool.push(b' ');
        i += 1;
    }
    while pool.len() < POOL + 8192 {
        pool.extend_from_slice(&mix(i).to_le_bytes());
        i += 1;
    }
    pool
}

/// The entries of the generated 10,000,000-file tree: `dirs` directories
/// `dNNNNN` of [`PER_DIR`] files `fNNNN`; nine files in ten of 16 to 512
/// bytes (embedded in their inode), one in ten of 1 to 4 KiB.
fn synthetic_entries(dirs: u64) -> impl Iterator<Item = SynthEntry> {
    let pool = pool();
    (0..dirs).flat_map(move |d| {
        let pool = pool.clone();
        std::iter::once(SynthEntry::Dir(format!("d{d:05}").into_bytes()))
            .chain((0..PER_DIR).map(move |f| {
                let r = mix(d * PER_DIR + f);
                let size = if r % 10 == 0 {
                    1024 + ((r >> 8) % 3073) as usize
                } else {
                    16 + ((r >> 8) % 497) as usize
                };
                let off = ((r >> 20) as usize) % (pool.len() - size);
                SynthEntry::File(format!("f{f:04}").into_bytes(), pool[off..off + size].to_vec())
            }))
            .chain(std::iter::once(SynthEntry::Up))
    })
}

/// Fills the formatted image `img` with [`synthetic_entries`], in this
/// process: (wall seconds, CPU seconds, peak RSS MiB) of the whole process.
fn build_synthetic(img: &Path, dirs: u64) -> (f64, f64, f64) {
    let start = std::time::Instant::now();
    let total = dirs * (PER_DIR + 1);
    let mut last = 0u64;
    let (report, _) = hammer2::host::synth::populate_synthetic(
        img.to_str().unwrap(),
        "DATA",
        synthetic_entries(dirs),
        &SynthMeta::default(),
        &mut |r| {
            let done = r.dirs + r.files;
            if done >= last + 500_000 {
                last = done;
                eprintln!("  {done} of {total} entries, {:.0} s", start.elapsed().as_secs_f64());
            }
        },
    )
    .unwrap();
    eprintln!("  {report:?}");
    // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage of this process with a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (start.elapsed().as_secs_f64(), secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as f64 / 1024.0)
}

fn run_ok(cmd: &mut Command) -> Usage {
    let u = support::run(cmd);
    assert!(u.status.success(), "{cmd:?}: {}", u.status);
    u
}

/// Medians of several runs of one tool.
#[derive(Default)]
struct Runs(Vec<Usage>);

impl Runs {
    fn wall(&self) -> f64 {
        support::median(self.0.iter().map(|u| u.wall).collect())
    }
    fn cpu(&self) -> f64 {
        support::median(self.0.iter().map(|u| u.cpu).collect())
    }
    fn rss_mib(&self) -> f64 {
        self.0.iter().map(|u| u.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn line(&self, who: &str) -> String {
        format!(
            "  {who:<7} wall {:8.3} s  cpu {:8.3} s  peak RSS {:8.1} MiB  ({} runs)",
            self.wall(),
            self.cpu(),
            self.rss_mib(),
            self.0.len()
        )
    }
}

/// One piece of work with a reference counterpart.
struct Work {
    name: &'static str,
    target: &'static str,
    ours: Box<dyn Fn() -> Command>,
    theirs: Box<dyn Fn() -> Command>,
    /// Rounds for theirs (at most the rounds for ours).
    their_rounds: usize,
    /// Run after every run (clearing an extraction's output).
    cleanup: Box<dyn Fn()>,
    /// One untimed run of ours first, so that the image is as warm in the
    /// page cache for the first timed run as for the others (read-only
    /// work only: a writing run would change what the rounds measure).
    warm_up: bool,
}

fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn main() {
    let big = std::env::var_os("HAMMER2_SCALE_10M").is_some_and(|v| !v.is_empty() && v != "0");
    let (mut dirs, tag, size) = if big { (10_000, "10m", "32G") } else { (1_000, "1m", "16G") };
    // A smaller generated image (a trial of the 10M build): its own
    // HAMMER2_SCALE_DIR, please.
    if let Some(n) = std::env::var("HAMMER2_SCALE_10M_DIRS").ok().and_then(|n| n.parse().ok()).filter(|_| big)
    {
        dirs = n;
    }
    let root = std::env::var_os("HAMMER2_SCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scale"));
    std::fs::create_dir_all(&root).unwrap();
    let reftools = common::oracle::reftools();
    let rounds: usize =
        std::env::var("HAMMER2_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let show_rounds: usize =
        std::env::var("HAMMER2_SCALE_SHOW_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let newfs = env!("CARGO_BIN_EXE_newfs_hammer2");
    let fsck = env!("CARGO_BIN_EXE_fsck_hammer2");
    let dump = env!("CARGO_BIN_EXE_hammer2_dump");
    let edit = env!("CARGO_BIN_EXE_hammer2_edit");

    println!("machine: {}", support::machine());
    let img = root.join(format!("scale-{tag}.img"));
    // The 10,000,000-file image is generated straight into the image: a
    // host tree of ten million files would take a host block each.
    let tree = if big {
        None
    } else {
        Some(support::generated_once(&root, &format!("tree-{tag}"), |t| {
            eprintln!("generating {} files into {}", dirs * PER_DIR, t.display());
            generate(t, dirs);
        }))
    };
    if !img.exists() && big {
        let partial = root.join(format!("scale-{tag}.img.partial"));
        let _ = std::fs::remove_file(&partial);
        eprintln!("generating {} files into {}", dirs * PER_DIR, img.display());
        run_ok(Command::new(newfs).args(["-q", "-s", size]).arg(&partial));
        settle();
        let (secs, cpu, rss) = build_synthetic(&partial, dirs);
        println!(
            "built:   {} generated files through the write engine: wall {secs:.1} s, cpu {cpu:.1} s, \
             peak RSS {rss:.1} MiB",
            dirs * PER_DIR
        );
        std::fs::rename(&partial, &img).unwrap();
    }
    let tree = tree.unwrap_or_else(|| root.join("tree-10m-absent"));
    if !img.exists() {
        let partial = root.join(format!("scale-{tag}.img.partial"));
        let _ = std::fs::remove_file(&partial);
        eprintln!("populating {} from {}", img.display(), tree.display());
        settle();
        let u = run_ok(Command::new(newfs).args(["-q", "-s", size, "--populate"]).arg(&tree).arg(&partial));
        println!(
            "built:   newfs_hammer2 --populate, {} files: wall {:.1} s, cpu {:.1} s, peak RSS {:.1} MiB",
            dirs * PER_DIR,
            u.wall,
            u.cpu,
            u.max_rss_kib as f64 / 1024.0
        );
        std::fs::rename(&partial, &img).unwrap();
    }
    let spec = img.to_str().unwrap().to_string();
    println!("image:   {} ({} files in {dirs} directories), {rounds} rounds", img.display(), dirs * PER_DIR);

    let only = std::env::var("HAMMER2_BENCH_ONLY").unwrap_or_default();
    // Ours only (the reference tools take very long at 10M files).
    let skip_theirs = std::env::var_os("HAMMER2_SCALE_THEIRS").is_some_and(|v| v == "0");
    // Comma-separated: a piece of work runs when its name contains one.
    let picked = |name: &str| only.split(',').any(|o| name.contains(o));
    let edits_name = "edits: one mkdir / put / rm per run, at / and in /d00000 (1,000 entries each)";
    let bulkfree_name = "bulkfree: hammer2_edit IMG bulkfree  vs  reftools/makefs -o B";
    // A writable copy for the edits and bulkfrees, when they run.
    let writes = picked(edits_name) || picked(bulkfree_name);
    let rw = root.join(format!("scale-{tag}-rw-{}.img", std::process::id()));
    if writes {
        let _ = std::fs::remove_file(&rw);
        run_ok(Command::new("cp").arg("--sparse=always").arg(&img).arg(&rw));
    }
    let rw_spec = rw.to_str().unwrap().to_string();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();

    let out = match std::env::var_os("HAMMER2_BENCH_EXTRACT") {
        Some(d) => PathBuf::from(d),
        None if Path::new("/dev/shm").is_dir() => {
            PathBuf::from(format!("/dev/shm/hammer2-scale-extract-{}", std::process::id()))
        }
        None => root.join("extract"),
    };
    let clear = {
        let out = out.clone();
        move || {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
        }
    };
    clear();
    let dest = out.join("x").to_str().unwrap().to_string();

    let cmd = |exe: PathBuf, args: Vec<String>| -> Box<dyn Fn() -> Command> {
        Box::new(move || {
            let mut c = Command::new(&exe);
            c.args(&args);
            c
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let p = PathBuf::from;
    let works = [
        Work {
            name: "fsck: fsck_hammer2 -n  vs  reftools/fsck_hammer2 -q -b",
            target: "theirs/ours >= 3x, ours < 128 MiB",
            ours: cmd(p(fsck), s(&["-n", &spec])),
            theirs: cmd(reftools.join("fsck_hammer2"), s(&["-q", "-b", &spec])),
            their_rounds: rounds,
            warm_up: true,
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "show: hammer2_dump show  vs  reftools/hammer2 show",
            target: "theirs/ours >= 10x",
            ours: cmd(p(dump), s(&["show", &spec])),
            theirs: cmd(reftools.join("hammer2"), s(&["show", &spec])),
            their_rounds: show_rounds,
            warm_up: true,
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "freemap: hammer2_dump freemap  vs  reftools/hammer2 freemap",
            target: "",
            ours: cmd(p(dump), s(&["freemap", &spec])),
            theirs: cmd(reftools.join("hammer2"), s(&["freemap", &spec])),
            their_rounds: rounds,
            warm_up: true,
            cleanup: Box::new(|| {}),
        },
        Work {
            name: bulkfree_name,
            target: "ours < 128 MiB",
            ours: cmd(p(edit), s(&["-q", &rw_spec, "bulkfree"])),
            theirs: cmd(
                reftools.join("makefs"),
                s(&["-t", "hammer2", "-o", "B", &rw_spec, empty.to_str().unwrap()]),
            ),
            their_rounds: rounds,
            warm_up: false,
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "extract: hammer2_edit IMG get / DIR  vs  cp -r TREE DIR",
            target: "theirs/ours >= 1x",
            ours: cmd(p(edit), s(&[&spec, "get", "/", &dest])),
            theirs: cmd(p("cp"), s(&["-r", tree.to_str().unwrap(), &dest])),
            their_rounds: rounds,
            warm_up: false,
            cleanup: Box::new(clear),
        },
    ];
    for w in works.iter().filter(|w| picked(w.name)) {
        let (mut ours, mut theirs) = (Runs::default(), Runs::default());
        if w.warm_up {
            run_ok(&mut (w.ours)());
            (w.cleanup)();
        }
        for round in 0..rounds {
            let mut order = vec![true];
            if round < w.their_rounds && !skip_theirs {
                // Alternate who goes first, so neither always meets a warmer cache.
                order.insert(if round % 2 == 0 { 1 } else { 0 }, false);
            }
            for is_ours in order {
                settle();
                let u = if is_ours { run_ok(&mut (w.ours)()) } else { run_ok(&mut (w.theirs)()) };
                (w.cleanup)();
                if is_ours { &mut ours } else { &mut theirs }.0.push(u);
            }
        }
        println!("{}", w.name);
        println!("{}", ours.line("ours"));
        if theirs.0.is_empty() {
            println!("  theirs  not run (HAMMER2_SCALE_SHOW_ROUNDS=0 or HAMMER2_SCALE_THEIRS=0)");
            continue;
        }
        println!("{}", theirs.line("theirs"));
        println!(
            "  ratio   theirs/ours wall {:.2}x, cpu {:.2}x; ours peak RSS {:.1} MiB{}",
            theirs.wall() / ours.wall(),
            theirs.cpu() / ours.cpu(),
            ours.rss_mib(),
            if w.target.is_empty() { String::new() } else { format!("  [target: {}]", w.target) }
        );
    }

    // Single edits, ours only: each is its own hammer2_edit run (open,
    // session, commit), alternating between the root and d00000.
    if picked(edits_name) {
        let host_file = root.join("put-source");
        std::fs::write(&host_file, vec![b'x'; 3000]).unwrap();
        let host = host_file.to_str().unwrap().to_string();
        println!("{edits_name}");
        for at in ["", "/d00000"] {
            let steps: [(&str, Vec<String>); 4] = [
                ("mkdir", s(&["mkdir", &format!("{at}/scale-new-dir")])),
                ("put", vec!["put".into(), host.clone(), format!("{at}/scale-new-file")]),
                ("rm", s(&["rm", &format!("{at}/scale-new-file")])),
                ("rmdir", s(&["rmdir", &format!("{at}/scale-new-dir")])),
            ];
            let mut runs: Vec<Runs> = (0..steps.len()).map(|_| Runs::default()).collect();
            for _ in 0..rounds {
                for (i, (_, args)) in steps.iter().enumerate() {
                    settle();
                    runs[i].0.push(run_ok(Command::new(edit).arg("-q").arg(&rw_spec).args(args)));
                }
            }
            for (i, (name, _)) in steps.iter().enumerate() {
                let where_ = if at.is_empty() { "/" } else { at };
                println!("{}  [target: < 50 ms]", runs[i].line(&format!("{name} {where_}")));
            }
        }
    }
    if writes {
        let m = run_ok(Command::new(fsck).arg("-n").arg(&rw));
        println!("the edited copy checks clean ({:.2} s)", m.wall);
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&rw);
}
