//! The write engine: copy-on-write chains over the committed tree, the
//! freemap allocator, the flush (the commit contract), and write sessions
//! with every namespace, attribute and maintenance operation.
//!
//! - [`chain`]: in-memory modified nodes, tables kept sorted, indirect
//!   blocks created and folded as HAMMER2 does.
//! - [`alloc`]: the freemap allocator (leaf semantics, rotation, recovery
//!   marking, bulkfree, growth, the mount-time replay).
//! - [`encode`]: data blocks as stored (sizes, compression, check codes).
//! - [`flush`]: the commit: bottom-up writes, freemap, barrier, header.
//! - [`session`]: a write session, one transaction per commit.

pub mod alloc;
pub mod chain;
pub mod encode;
pub mod flush;
pub mod session;
