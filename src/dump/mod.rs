//! Structure dumps: plain data (serde-serialisable) describing on-disk
//! structures, for the binaries to render as tables, text or JSON.

pub mod freemap;
pub mod inode;
pub mod layout;
pub mod pfs;
pub mod show;
pub mod show_text;
pub mod volhdr;

use crate::format::{Blockref, BlockrefType, CheckMethod};
use serde::Serialize;
use std::borrow::Cow;

/// One blockref, decoded for display. The names of its type and methods
/// borrow static text (only an unknown code owns its `unknown(N)` name),
/// so building one allocates nothing.
#[derive(Debug, Clone, Serialize)]
pub struct BlockrefSummary {
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    pub check: Cow<'static, str>,
    pub comp: Cow<'static, str>,
    pub key: u64,
    pub keybits: u8,
    pub data_off: u64,
    pub radix: u8,
    pub mirror_tid: u64,
    pub modify_tid: u64,
    pub update_tid: u64,
    pub flags: u8,
    pub leaf_count: u16,
    /// The stored check value in hex (as many bytes as the method uses).
    pub check_value: CheckValue,
}

/// A stored check value as lower-case hex, held inline: 32- and 64-bit
/// codes as numbers (they are stored little-endian), hashes byte by byte.
#[derive(Clone, Copy)]
pub struct CheckValue {
    hex: [u8; 48],
    len: u8,
}

impl CheckValue {
    /// The value `b` stores for its check method (empty for methods
    /// without one).
    pub fn of(b: &Blockref) -> Self {
        let mut v = CheckValue { hex: [0; 48], len: 0 };
        match b.check_method() {
            CheckMethod::Iscsi32 | CheckMethod::Freemap => {
                v.put_number(u32::from_le_bytes(b.check[..4].try_into().unwrap()).into(), 8)
            }
            CheckMethod::Xxhash64 => v.put_number(u64::from_le_bytes(b.check[..8].try_into().unwrap()), 16),
            CheckMethod::Sha192 => {
                for &x in &b.check[..24] {
                    v.put_number(x.into(), 2);
                }
            }
            _ => {}
        }
        v
    }

    /// Appends `x` as `digits` hex digits (zero-padded).
    fn put_number(&mut self, x: u64, digits: usize) {
        let at = self.len as usize;
        for (i, d) in self.hex[at..at + digits].iter_mut().rev().enumerate() {
            *d = HEX_DIGITS[(x >> (4 * i)) as usize & 0xf];
        }
        self.len += digits as u8;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.hex[..self.len as usize]).unwrap_or_default()
    }
}

/// Lower-case hex digits by value.
pub(crate) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Display for CheckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for CheckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for CheckValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl BlockrefSummary {
    pub fn new(b: &Blockref) -> Self {
        BlockrefSummary {
            type_: b.kind().name(),
            check: b.check_method().name(),
            comp: b.comp_method().name(),
            key: b.key.get(),
            keybits: b.keybits,
            data_off: b.data_off.get(),
            radix: b.radix(),
            mirror_tid: b.mirror_tid.get(),
            modify_tid: b.modify_tid.get(),
            update_tid: b.update_tid.get(),
            flags: b.flags,
            leaf_count: b.leaf_count.get(),
            check_value: CheckValue::of(b),
        }
    }

    /// Summaries of the non-empty blockrefs of a set, with their slot index.
    pub fn of_set(set: &[Blockref]) -> Vec<(usize, BlockrefSummary)> {
        set.iter()
            .enumerate()
            .filter(|(_, b)| b.kind() != BlockrefType::Empty)
            .map(|(i, b)| (i, BlockrefSummary::new(b)))
            .collect()
    }

    /// One-line form: `inode 0x1440000a mirror 0x10`.
    pub fn brief(&self) -> String {
        format!("{} {:#x} mirror {:#x}", self.type_, self.data_off, self.mirror_tid)
    }
}
