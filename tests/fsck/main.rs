//! Checking and repairing: fsck, the volume headers, recovery of a crash window.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

#[path = "../common/mod.rs"]
mod common;

mod budget;
mod fsck;
mod fsck_freemap;
mod fsck_semantic;
mod fsck_structure;
mod fsck_topology;
mod headers;
mod one_commit;
mod rebuild;
mod recover;
mod rollback;
