//! The write engine: sessions, crashes, the freemap lag, random models, shapes, the allocator.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

#[path = "../common/mod.rs"]
mod common;

mod freemap_alloc;
mod write_crash;
mod write_engine;
mod write_lag;
mod write_model;
mod write_refuse;
mod write_shapes;
mod write_synth;
