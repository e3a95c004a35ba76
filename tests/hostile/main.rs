//! Hostile and mutated images: no panic, no hang, no abort.
//!
//! One test binary (the library is linked once) for the former
//! tests/NAME.rs files below, each now a module.

// An allocation that would abort the test process is reported instead.
#[global_allocator]
static GUARD: common::run::Guard = common::run::Guard;

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod mutation;
mod mutation_fields;
mod repair_corpus;
