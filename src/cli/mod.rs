//! Command-line definitions of every binary (clap derive). They live in the
//! library so that man pages and shell completions are generated from the
//! very definitions the binaries parse with; the binaries stay thin.

pub mod dump;
pub mod edit;
pub mod edit_maint;
pub mod fsck;
pub mod mount;
pub mod newfs;
pub mod recover;

/// A volume-header copy index given on the command line (0 to 3: a volume
/// holds at most four copies; whether one exists is checked on opening).
pub fn parse_copy(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a header copy number (0 to 3)"))?;
    if n >= crate::format::NUM_VOLHDRS {
        return Err(format!("{n}: header copies are numbered 0 to {}", crate::format::NUM_VOLHDRS - 1));
    }
    Ok(n)
}

/// Every binary's command, with its name.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        newfs::NewfsCli::command(),
        fsck::FsckCli::command(),
        dump::DumpCli::command(),
        edit::EditCli::command(),
        recover::RecoverCli::command(),
        mount::MountCli::command(),
    ]
}

/// `--wait[=SECONDS]`, on every binary that opens a device.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WaitArg {
    /// When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "forever",
        value_parser = parse_wait,
        global = true
    )]
    pub wait: Option<crate::device::lock::Wait>,
}

impl WaitArg {
    /// What was asked: by default, fail at once.
    pub fn get(&self) -> crate::device::lock::Wait {
        self.wait.unwrap_or_default()
    }
}

fn parse_wait(s: &str) -> Result<crate::device::lock::Wait, String> {
    s.parse()
}
