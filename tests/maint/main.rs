//! Maintenance operations: bulkfree, destroy, growfs, PFS operations, compression methods.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

#[path = "../common/mod.rs"]
mod common;

mod bulkfree;
mod destroy;
mod growfs;
mod pfs_ops;
mod set_methods;
