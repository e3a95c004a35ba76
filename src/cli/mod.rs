//! Command-line definitions of every binary (clap derive). They live in the
//! library so that man pages and shell completions are generated from the
//! very definitions the binaries parse with; the binaries stay thin.

pub mod dump;
pub mod edit;
pub mod edit_maint;
pub mod fsck;
pub mod newfs;
pub mod recover;

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
