//! Behaviour shared by every binary: error format and exit codes.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::IsTerminal;

/// Exit codes of the tools other than fsck (ARCHITECTURE.md).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Prints `tool: what failed: why` (the whole error chain) on stderr.
pub fn report_error(tool: &str, err: &anyhow::Error) {
    let mut msg = format!("{tool}: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    eprintln!("{msg}");
}

/// Runs `body`, mapping an error to a message and `EXIT_FAILURE`.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    // Die quietly on a closed pipe (`| head`) as C tools do, instead of panicking in print!.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = match body() {
        Ok(code) => code,
        Err(e) => {
            report_error(tool, &e);
            EXIT_FAILURE
        }
    };
    std::process::exit(code)
}

/// True when progress bars and decorations may be drawn on stderr.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Formats a byte count as DragonFly's tools do (e.g. `10.00 GiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Writes JSON to stdout followed by a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn display_list<T: Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
