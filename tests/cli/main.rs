//! The command-line tools: usage, docs, newfs, hammer2_edit, import and populate.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

#[path = "../common/mod.rs"]
mod common;

mod cli_dump;
mod cli_paths;
mod cli_ux;
mod docs;
mod edit;
mod edit_cmds;
mod edit_put;
mod edit_write;
mod import;
mod interrupt;
mod newfs;
mod populate;
mod width;
