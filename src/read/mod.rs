//! Reading the committed media tree.
//!
//! - [`walk`]: the one traversal engine every reader uses (bounded depth,
//!   cycle detection, a visited set, a work budget, check codes verified).
//! - [`tree`]: a blockref's media (decompressed, verified) and key lookups
//!   through indirect blocks.
//! - [`pfs`]: PFSs, inodes and directories.
//! - [`namespace`]: the bounded walk of a PFS's names, over [`view::FsView`]
//!   (so over the committed image and a session's state alike).
//! - [`mod@file`]: file contents streamed in key order, holes, symlinks.
//! - [`view`]: one read interface ([`view::FsView`]) over the committed
//!   image or a write session's uncommitted state.

pub mod file;
pub mod namespace;
pub mod pfs;
pub mod tree;
pub mod view;
pub mod walk;
