//! Reading: the fixtures, dumps against golden outputs, extraction.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

#[path = "../common/mod.rs"]
mod common;

mod dump_show;
mod extract;
mod fixtures_read;
mod read_at;
