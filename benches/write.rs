//! Write-path benchmark (not a test): a commit of 100,000 small files in
//! 1,000 directories through the write engine, against DragonFly's kernel
//! code (`../shared/reftools/makefs`) building the same tree, in the same
//! run, with peak resident memory from wait4(2); then the freemap recovery
//! of ten files changed in a crash window on that image.
//!
//! `cargo bench --bench write` — the source tree is generated once under
//! target/bench-write/. Figures depend on the machine; read them as ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: usize = 100_000;
const DIRS: usize = 1_000;

mod support;

use support::measure_ok as measure;

/// The source tree: deterministic small files (64 B to 4 KiB).
fn source_tree(root: &Path) -> PathBuf {
    support::generated_once(root, "src", |src| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for d in 0..DIRS {
            std::fs::create_dir_all(src.join(format!("d{:02}/d{d:04}", d % 37))).unwrap();
        }
        for f in 0..FILES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 64 + (x % 4032) as usize;
            let body: Vec<u8> = (0..len).map(|i| b"abcdefgh ijklmnop\n"[(i + f) % 18]).collect();
            let d = f % DIRS;
            std::fs::write(src.join(format!("d{:02}/d{d:04}/f{f:06}", d % 37)), body).unwrap();
        }
    })
}

/// In the child: imports `src` into the DATA PFS of `img` and commits.
fn import(img: &str, src: &Path) {
    use hammer2::write::session::{Attrs, Session};
    let mut s = Session::open(img, false).unwrap();
    let pfs = s.pfs(None).unwrap();
    let mut stack = vec![(src.to_path_buf(), String::new())];
    while let Some((host, path)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&host).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().into_string().unwrap();
            let p = format!("{path}/{name}");
            if e.file_type().unwrap().is_dir() {
                s.mkdir(&pfs, &p, Attrs::now(0o755), false).unwrap();
                stack.push((e.path(), p));
            } else {
                s.put(&pfs, &e.path(), &p).unwrap();
            }
        }
    }
    s.commit().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--import" {
        import(&args[2], Path::new(&args[3]));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-write");
    std::fs::create_dir_all(&root).unwrap();
    let src = source_tree(&root);
    let reftools = std::env::var_os("HAMMER2_REFTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reftools"));
    let newfs = env!("CARGO_BIN_EXE_newfs_hammer2");
    let fsck = env!("CARGO_BIN_EXE_fsck_hammer2");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores; {FILES} files in {DIRS} directories (64 B - 4 KiB each)");
    let me = std::env::current_exe().unwrap();
    for round in 0..2 {
        let ours = root.join("ours.img");
        let theirs = root.join("theirs.img");
        let _ = std::fs::remove_file(&ours);
        let _ = std::fs::remove_file(&theirs);
        measure(Command::new(newfs).args(["-s", "16G"]).arg(&ours));
        let (t1, m1) = measure(Command::new(&me).arg("--import").arg(&ours).arg(&src));
        let (t2, m2) = measure(
            Command::new(reftools.join("makefs"))
                .args(["-t", "hammer2", "-Z", "-s", "16g"])
                .arg(&theirs)
                .arg(&src),
        );
        println!(
            "round {round}: ours (newfs then one commit) {t1:7.2} s, peak RSS {m1:8} KiB | makefs {t2:7.2} s, peak RSS {m2:8} KiB | time ratio makefs/ours {:.2}",
            t2 / t1
        );
        let (t3, _) = measure(Command::new(fsck).arg("-n").arg(&ours));
        println!("         our image checks clean ({t3:.2} s)");
    }
    recovery(&root.join("ours.img"));
}

/// The crash window on the big image: ten files changed in the lagging
/// transaction; `hammer2_recover` reads only their paths (milliseconds),
/// against a full replay of every block (`--full -n`).
fn recovery(img: &Path) {
    let edit = env!("CARGO_BIN_EXE_hammer2_edit");
    let recover = env!("CARGO_BIN_EXE_hammer2_recover");
    let dir = img.with_extension("recover");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("edits");
    let mut text = String::new();
    for i in 0..10 {
        let host = dir.join(format!("changed-{i}"));
        std::fs::write(&host, vec![b'x'; 100 + i * 300]).unwrap();
        text.push_str(&format!("put {} /d00/d0000/changed-{i}\n", host.display()));
    }
    std::fs::write(&script, text).unwrap();
    measure(Command::new(edit).arg("--debug-lag-freemap").arg("-f").arg(&script).arg(img));
    let (full, _) = measure(Command::new(recover).args(["--full", "-n"]).arg(img));
    let (t, m) = measure(Command::new(recover).arg(img));
    println!(
        "recovery of ten changed files: {:.1} ms, peak RSS {m} KiB | a full replay (dry run) {full:.2} s",
        t * 1000.0
    );
}
