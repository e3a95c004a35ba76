//! HAMMER2 offline toolkit library.
//!
//! Layers, bottom to top: [`format`](mod@format) (on-disk structures, no I/O),
//! [`check`] / [`compress`] / [`dirhash`] (codes and codecs), [`device`]
//! (mapped volumes), [`volume`] (header copies, volume sets and their
//! geometry), [`freemap`] (freemap geometry and read-side accounting, no
//! I/O), [`walk`] (media-tree traversal). Data flows one way: higher layers
//! call lower ones.

pub mod chain;
pub mod check;
pub mod cli;
pub mod compress;
pub mod device;
pub mod dirhash;
pub mod dump;
pub mod edit;
pub mod error;
pub mod extract;
pub mod file;
pub mod flush;
pub mod format;
pub mod freemap;
pub mod fsck;
pub mod fsops;
pub mod import;
pub mod interrupt;
pub mod namespace;
pub mod newfs;
pub mod pfs;
pub mod recover;
pub mod timefmt;
pub mod tree;
pub mod volume;
pub mod walk;

pub use error::{Error, Result};
pub use volume::{CopyChoice, Hammer2};
