//! The host side: host trees into a PFS ([`import`]) and PFS trees out to
//! the host ([`extract`]).

pub mod extract;
pub mod import;
pub mod synth;
