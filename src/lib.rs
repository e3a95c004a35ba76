//! HAMMER2 offline toolkit library.
//!
//! Layers, bottom to top (a module only uses those above it in this list):
//!
//! | module | holds |
//! |---|---|
//! | [`format`](mod@format) | on-disk structures, constants, check codes, codecs, dirhash, time stamps: no I/O |
//! | [`error`], [`interrupt`] | typed errors; the cancellation flag long work polls |
//! | [`device`] | volumes behind a small backend trait (mapped files, memory), barriers, locks |
//! | [`volume`] | volume-header copies, volume sets and their geometry |
//! | [`freemap`] | the freemap's one geometry and leaf model (used by reader, allocator and checker) |
//! | [`read`] | the media tree: traversal engine, blockref media, PFSs, file contents; one read interface ([`read::view::FsView`]) over the committed image or a session's state, and the namespace walk on it |
//! | [`write`] | the write engine: chains, the allocator, flush, write sessions and their operations |
//! | [`host`] | host trees in and out: import (populate, `put -r`) and the one extraction, over any [`read::view::FsView`] |
//! | [`salvage`] | the media scan: every inode version, entry and data block found on the volumes, whatever tree reaches them |
//! | [`fsck`], [`dump`], [`edit`], [`newfs`], [`recover`], [`mount`] | the operations behind the binaries (`mount`: a PFS through FUSE) |
//! | [`cli`] | clap definitions of every binary (man pages and completions come from them) |
//!
//! Data flows one way: higher layers call lower ones.

pub mod format;

pub mod error;
pub mod interrupt;

pub mod device;
pub mod volume;

pub mod freemap;

pub mod read;
pub mod write;

pub mod salvage;

pub mod host;

pub mod cli;
pub mod dump;
pub mod edit;
pub mod fsck;
pub mod mount;
pub mod newfs;
pub mod recover;

pub use error::{Error, Result};
pub use volume::{CopyChoice, Hammer2};
