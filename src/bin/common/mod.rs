//! Behaviour shared by every binary: error format and exit codes.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::IsTerminal;

/// Exit codes of the tools other than fsck (ARCHITECTURE.md).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// Interrupted by the user (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Ctrl-C and SIGTERM: work that stops cleanly (an editor run, an import;
/// see `hammer2::interrupt`) is told to stop at its next safe point and
/// rolls back; otherwise, or on a second interrupt, the process exits now.
/// Without this, the default handler would kill a writing run between
/// its blocks: the last commit would still be intact, but blocks written
/// early would be left behind in free space.
pub fn stop_cleanly_on_interrupt(tool: &'static str) {
    // If no handler can be installed, the default disposition stays.
    let _ = ctrlc::set_handler(move || {
        if hammer2::interrupt::deliver() {
            eprintln!("{tool}: interrupted: stopping at the next safe point, nothing of this run is committed (interrupt again to quit now)");
        } else {
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
}

/// True when `err` is, or was caused by, an interrupt.
pub fn is_interrupt(err: &anyhow::Error) -> bool {
    err.chain().any(|c| matches!(c.downcast_ref::<hammer2::Error>(), Some(hammer2::Error::Interrupted)))
}

/// A run refused because another process holds one of its volumes: the
/// library's message (volume, holder) and what to do about it. Other
/// errors pass through.
pub fn lock_refused(e: hammer2::Error) -> anyhow::Error {
    match e {
        hammer2::Error::Locked { waited: None, .. } => {
            anyhow::Error::msg(format!("{e}; try again later or pass --wait"))
        }
        e => e.into(),
    }
}

/// A usage error found after clap's parsing (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// True when `err` is, or was caused by, a usage error (ours or clap's).
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.is::<UsageError>() || c.downcast_ref::<clap::Error>().is_some_and(|e| e.use_stderr()))
}

/// `tool: what failed: why`: the error chain, each cause once. A library
/// error's message already ends with its source's (thiserror's `{source}`
/// in the format and `#[source]` on the field), so a cause whose text the
/// message already holds is not repeated.
pub fn error_line(tool: &str, err: &anyhow::Error) -> String {
    let mut msg = format!("{tool}: {err}");
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(": ");
            msg.push_str(&cause);
        }
    }
    msg
}

/// Prints [`error_line`] on stderr.
pub fn report_error(tool: &str, err: &anyhow::Error) {
    eprintln!("{}", error_line(tool, err));
}

/// Runs `body`, mapping an error to a message and `EXIT_FAILURE` (or
/// `EXIT_USAGE` for a usage error).
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    run_with_codes(tool, EXIT_FAILURE, EXIT_USAGE, body)
}

/// [`run`] with the tool's own exit codes for a failure and a usage error.
pub fn run_with_codes(tool: &str, failure: i32, usage: i32, body: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    // Die quietly on a closed pipe (`| head`) as C tools do, instead of panicking in print!.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = match body() {
        Ok(code) => code,
        Err(e) => {
            report_error(tool, &e);
            if is_usage(&e) {
                usage
            } else if is_interrupt(&e) {
                EXIT_INTERRUPTED
            } else {
                failure
            }
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
