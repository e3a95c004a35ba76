//! Command-line definitions of every binary (clap derive). They live in the
//! library so that man pages and shell completions are generated from the
//! very definitions the binaries parse with; the binaries stay thin.

pub mod dump;
pub mod edit;
pub mod edit_maint;
pub mod fsck;
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
    ]
}
