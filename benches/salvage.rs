//! The salvage scan's throughput (not a test).
//!
//! `cargo bench --bench salvage` scans the 50,000-file bench image (built
//! as `compare` builds it: `../shared/bench/mkbenchtree.py`'s tree written
//! by the reference makefs into target/bench/bench.img, reused when it is
//! there; `$HAMMER2_BENCH_IMAGE` names another image) with `hammer2_recover
//! list` (the whole scan and index, a name that matches nothing so the
//! listing costs nothing), next to reading the image's data regions
//! (SEEK_DATA / SEEK_HOLE) into nothing: the floor any scan of the media
//! has. Both run alternately, for `$HAMMER2_BENCH_ROUNDS` rounds (default
//! 3), first warm (the image in the page cache), then cold (the page cache
//! dropped before each run; that needs root, else only warm is measured);
//! medians of wall time, the ratio to the read, the scan's CPU time and
//! peak RSS are printed for each.

mod support;

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn image() -> PathBuf {
    if let Some(p) = std::env::var_os("HAMMER2_BENCH_IMAGE") {
        return PathBuf::from(p);
    }
    let reftools = std::env::var_os("HAMMER2_REFTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reftools"));
    support::bench_image(&reftools)
}

/// Reads every data region of `path` in 4 MiB reads; returns the bytes read.
fn read_data_regions(path: &Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let fd = f.as_raw_fd();
    let mut buf = vec![0u8; 4 << 20];
    let (mut pos, mut total) = (0u64, 0u64);
    while pos < size {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole as u64 };
        let mut p = data as u64;
        while p < end {
            let n = ((end - p) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], p).unwrap();
            std::hint::black_box(&buf[..n]);
            p += n as u64;
            total += n as u64;
        }
        pos = end;
    }
    total
}

/// Empties the page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`);
/// false when that is not allowed (not root).
fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// What one series measured: walls of the read and of the scan, the scan's
/// CPU seconds and peak RSS (KiB), the bytes read.
struct Series {
    cat: Vec<f64>,
    scan: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
    bytes: u64,
}

/// One alternated series: the read of the data regions and the scan, each
/// after `before()`.
fn series(img: &Path, rounds: usize, before: &dyn Fn()) -> Series {
    let recover = env!("CARGO_BIN_EXE_hammer2_recover");
    let (mut cat, mut scan, mut rss, mut cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..rounds {
        before();
        let t = Instant::now();
        bytes = read_data_regions(img);
        cat.push(t.elapsed().as_secs_f64());
        before();
        let u =
            support::run(Command::new(recover).args(["list", "--json"]).arg(img).arg("no-such-name-here"));
        assert!(u.status.success(), "hammer2_recover list: {}", u.status);
        scan.push(u.wall);
        cpu.push(u.cpu);
        rss.push(u.max_rss_kib as f64);
    }
    Series { cat, scan, cpu, rss, bytes }
}

fn report(what: &str, mib: f64, Series { cat, scan, cpu, rss, .. }: Series) {
    let (c, s) = (support::median(cat), support::median(scan));
    println!("  {what}:");
    println!("    read of the data regions: {c:.2} s ({:.0} MiB/s)", mib / c);
    println!(
        "    hammer2_recover list (scan + index): {s:.2} s ({:.0} MiB/s), **{:.2}x the read**, CPU {:.2} s, peak RSS {:.0} MiB",
        mib / s,
        s / c,
        support::median(cpu),
        support::median(rss) / 1024.0
    );
}

fn main() {
    let img = image();
    let rounds: usize =
        std::env::var("HAMMER2_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    // Warm: one read first so that both start from the page cache.
    read_data_regions(&img);
    let warm = series(&img, rounds, &|| {});
    let mib = warm.bytes as f64 / (1 << 20) as f64;
    println!("salvage scan of {} ({mib:.0} MiB of data regions), {rounds} rounds, medians:", img.display());
    report("warm (the image in the page cache)", mib, warm);
    if drop_caches() {
        let cold = series(&img, rounds, &|| {
            drop_caches();
        });
        report("cold (page cache dropped before each run)", mib, cold);
    } else {
        println!("  cold: not measured (dropping the page cache needs root)");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
