//! Read side against the reference tools, side by side (not a test).
//!
//! `cargo bench --bench compare` builds the bench image once: the tree of
//! `../shared/bench/mkbenchtree.py` (50,000 files, ~1.8 GB; taken from
//! `$HAMMER2_BENCH_TREE` when set, else generated under target/bench/),
//! written by DragonFly's kernel code (`reftools/makefs -t hammer2 -Z -s
//! 16g`) into target/bench/bench.img. Then, for several rounds, each piece
//! of work runs ours and theirs alternately (so both see the same machine
//! load), and prints medians of wall and CPU time, peak RSS, page faults and
//! the ratios, with the machine. Figures depend on the machine and on what
//! else runs on it: read the ratios.
//!
//! Environment: `HAMMER2_BENCH_TREE` (source tree), `HAMMER2_REFTOOLS`
//! (reference tools), `HAMMER2_BENCH_ROUNDS` (default 5),
//! `HAMMER2_BENCH_ONLY` (run only the pieces of work whose name contains
//! it, e.g. `extract`).

#[path = "../tests/common/mod.rs"]
mod common;

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::Usage;

/// One piece of work: how ours and theirs are run.
struct Work {
    name: &'static str,
    ours: Box<dyn Fn() -> Command>,
    theirs: Box<dyn Fn() -> Command>,
    /// Run between rounds (clearing an extraction's output).
    cleanup: Box<dyn Fn()>,
}

#[derive(Default)]
struct Runs {
    runs: Vec<Usage>,
}

impl Runs {
    fn wall(&self) -> f64 {
        support::median(self.runs.iter().map(|u| u.wall).collect())
    }
    fn cpu(&self) -> f64 {
        support::median(self.runs.iter().map(|u| u.cpu).collect())
    }
    fn rss_mib(&self) -> f64 {
        self.runs.iter().map(|u| u.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn faults(&self) -> i64 {
        support::median(self.runs.iter().map(|u| u.faults as f64).collect()) as i64
    }
    fn line(&self, who: &str) -> String {
        format!(
            "  {who:<7} wall {:7.3} s  cpu {:7.3} s  peak RSS {:8.1} MiB  faults {:>8}",
            self.wall(),
            self.cpu(),
            self.rss_mib(),
            self.faults()
        )
    }
}

fn run_checked(cmd: &mut Command, ok: &[i32]) -> Usage {
    let u = support::run(cmd);
    assert!(u.status.code().is_some_and(|c| ok.contains(&c)), "{cmd:?}: {}", u.status);
    u
}

fn main() {
    let reftools = common::oracle::reftools();
    let tree = support::bench_tree();
    let img = support::bench_image(&reftools);
    let dir = img.parent().expect("the bench image lies in target/bench").to_path_buf();
    let rounds: usize =
        std::env::var("HAMMER2_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5).max(1);
    let spec = img.to_str().unwrap().to_string();
    // Extraction writes into memory (a tmpfs) when there is one, so that
    // the figures are the tools' and not the host disk's: on this machine's
    // ext4 (discard, virtual disk) one run of either tool took 4 to 46 s.
    // `HAMMER2_BENCH_EXTRACT` names another destination directory.
    let out = match std::env::var_os("HAMMER2_BENCH_EXTRACT") {
        Some(d) => PathBuf::from(d),
        None if Path::new("/dev/shm").is_dir() => {
            PathBuf::from(format!("/dev/shm/hammer2-bench-extract-{}", std::process::id()))
        }
        None => dir.join("extract"),
    };

    let cmd = |exe: PathBuf, args: Vec<String>| -> Box<dyn Fn() -> Command> {
        Box::new(move || {
            let mut c = Command::new(&exe);
            c.args(&args);
            c
        })
    };
    let ours = |name: &str| {
        PathBuf::from(match name {
            "fsck" => env!("CARGO_BIN_EXE_fsck_hammer2"),
            "dump" => env!("CARGO_BIN_EXE_hammer2_dump"),
            _ => env!("CARGO_BIN_EXE_hammer2_edit"),
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let dest = out.join("x").to_str().unwrap().to_string();
    let clear = {
        let out = out.clone();
        move || {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
        }
    };
    clear();
    let works = vec![
        Work {
            name: "full check: fsck_hammer2 -n  vs  reftools/fsck_hammer2 -q",
            ours: cmd(ours("fsck"), s(&["-n", &spec])),
            theirs: cmd(reftools.join("fsck_hammer2"), s(&["-q", &spec])),
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "chain-tree dump: hammer2_dump show  vs  reftools/hammer2 show",
            ours: cmd(ours("dump"), s(&["show", &spec])),
            theirs: cmd(reftools.join("hammer2"), s(&["show", &spec])),
            cleanup: Box::new(|| {}),
        },
        Work {
            // Both read every DATA block too; ours verifies each one's check
            // code, theirs only reads it (it checks no xxhash64 at all).
            name: "dump with data: hammer2_dump show --verify-data  vs  reftools/hammer2 -v show",
            ours: cmd(ours("dump"), s(&["show", "--verify-data", &spec])),
            theirs: cmd(reftools.join("hammer2"), s(&["-v", "show", &spec])),
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "freemap dump: hammer2_dump freemap  vs  reftools/hammer2 freemap",
            ours: cmd(ours("dump"), s(&["freemap", &spec])),
            theirs: cmd(reftools.join("hammer2"), s(&["freemap", &spec])),
            cleanup: Box::new(|| {}),
        },
        Work {
            name: "extract all: hammer2_edit IMG get / DIR  vs  cp -r TREE DIR",
            ours: cmd(ours("edit"), s(&[&spec, "get", "/", &dest])),
            theirs: cmd(PathBuf::from("cp"), s(&["-r", tree.to_str().unwrap(), &dest])),
            cleanup: Box::new(clear),
        },
    ];

    let only = std::env::var("HAMMER2_BENCH_ONLY").unwrap_or_default();
    let works: Vec<Work> = works.into_iter().filter(|w| w.name.contains(only.as_str())).collect();
    assert!(!works.is_empty(), "HAMMER2_BENCH_ONLY={only:?} names no piece of work");
    println!("machine: {} at start", support::machine());
    println!(
        "image:   {} (tree {}), {rounds} rounds, ours and theirs alternating",
        img.display(),
        tree.display()
    );
    println!("extract: into {}", out.display());
    for w in &works {
        let (mut ours, mut theirs) = (Runs::default(), Runs::default());
        for round in 0..rounds {
            // Alternate who goes first, so neither always meets a warmer cache.
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for is_ours in order {
                // Start from a settled host: the previous run's writes (and
                // the removal of its output) are on disk, not charged to the
                // next tool. SAFETY: sync(2) has no preconditions.
                unsafe { libc::sync() };
                std::thread::sleep(std::time::Duration::from_secs(2));
                let u = if is_ours {
                    run_checked(&mut (w.ours)(), &[0])
                } else {
                    run_checked(&mut (w.theirs)(), &[0])
                };
                (w.cleanup)();
                if is_ours { &mut ours } else { &mut theirs }.runs.push(u);
            }
        }
        println!("{}", w.name);
        println!("{}", ours.line("ours"));
        println!("{}", theirs.line("theirs"));
        println!(
            "  ratio   theirs/ours wall {:.2}x, cpu {:.2}x; ours peak RSS {:.1} MiB",
            theirs.wall() / ours.wall(),
            theirs.cpu() / ours.cpu(),
            ours.rss_mib()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
