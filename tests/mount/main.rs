//! hammer2_mount: the kernel's view of a mounted PFS against the image.
//!
//! Every test needs /dev/fuse, fusermount3 (Debian package fuse3) and
//! root, is ignored for that reason, and fails (does not skip) when run
//! with `--ignored` without them. Mounts are unmounted by a guard, on
//! failure too.

#[path = "../common/mod.rs"]
mod common;

mod guard;
mod read_only;
mod read_write;
