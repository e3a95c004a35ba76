//! Maintenance-command benchmark (not a test): on an image holding 20,000
//! small files (made by our newfs_hammer2 --populate), a snapshot and a
//! bulkfree by hammer2_edit against the same operations by DragonFly's
//! kernel code (`../shared/reftools/makefs -o P=snapshot`, `-o B`) on a
//! copy of the same image, with peak resident memory from wait4(2).
//!
//! `cargo bench --bench maint`. Figures depend on the machine; read them as ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

const FILES: usize = 20_000;
const DIRS: usize = 200;

use support::measure_ok as measure;

fn source_tree(root: &Path) -> PathBuf {
    support::generated_once(root, "src", |src| {
        for f in 0..FILES {
            let d = src.join(format!("d{:03}", f % DIRS));
            std::fs::create_dir_all(&d).unwrap();
            let body: Vec<u8> = (0..64 + f % 4000).map(|i| b"maintenance bench\n"[(i + f) % 18]).collect();
            std::fs::write(d.join(format!("f{f:05}")), body).unwrap();
        }
    })
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-maint");
    std::fs::create_dir_all(&root).unwrap();
    let src = source_tree(&root);
    let reftools = std::env::var_os("HAMMER2_REFTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reftools"));
    let makefs = reftools.join("makefs");
    let newfs = env!("CARGO_BIN_EXE_newfs_hammer2");
    let edit = env!("CARGO_BIN_EXE_hammer2_edit");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores; {FILES} files in {DIRS} directories (64 B - 4 KiB each)");
    let ours = root.join("ours.img");
    let theirs = root.join("theirs.img");
    let _ = std::fs::remove_file(&ours);
    measure(Command::new(newfs).args(["-s", "16G", "--populate"]).arg(&src).arg(&ours));
    // Files removed, so that bulkfree has blocks to free.
    let script = root.join("rm.txt");
    let text: String = (0..FILES).step_by(10).map(|f| format!("rm /d{:03}/f{f:05}\n", f % DIRS)).collect();
    std::fs::write(&script, text).unwrap();
    measure(Command::new(edit).arg("-f").arg(&script).arg(&ours));
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for round in 0..2 {
        let _ = std::fs::remove_file(&theirs);
        measure(Command::new("cp").arg("--sparse=always").arg(&ours).arg(&theirs));
        let snap = format!("snap{round}");
        let (t1, m1) = measure(Command::new(edit).arg(&ours).args(["snapshot", &snap]));
        let (t2, m2) = measure(
            Command::new(&makefs)
                .args(["-t", "hammer2", "-o", &format!("P=snapshot:{snap}")])
                .arg(&theirs)
                .arg(&empty),
        );
        println!("round {round}: snapshot: ours {t1:6.3} s, peak RSS {m1:7} KiB | makefs {t2:6.3} s, peak RSS {m2:7} KiB");
        let (t1, m1) = measure(Command::new(edit).arg(&ours).arg("bulkfree"));
        let (t2, m2) =
            measure(Command::new(&makefs).args(["-t", "hammer2", "-o", "B"]).arg(&theirs).arg(&empty));
        println!("         bulkfree: ours {t1:6.3} s, peak RSS {m1:7} KiB | makefs {t2:6.3} s, peak RSS {m2:7} KiB");
    }
}
