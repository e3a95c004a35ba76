//! Structure dumps: plain data (serde-serialisable) describing on-disk
//! structures, for the binaries to render as tables, text or JSON.

pub mod freemap;
pub mod inode;
pub mod layout;
pub mod pfs;
pub mod show;
pub mod volhdr;

use crate::format::{Blockref, BlockrefType, CheckMethod};
use serde::Serialize;

/// One blockref, decoded for display.
#[derive(Debug, Clone, Serialize)]
pub struct BlockrefSummary {
    #[serde(rename = "type")]
    pub type_: String,
    pub check: String,
    pub comp: String,
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
    pub check_value: String,
}

impl BlockrefSummary {
    pub fn new(b: &Blockref) -> Self {
        let n = match b.check_method() {
            CheckMethod::Iscsi32 | CheckMethod::Freemap => 4,
            CheckMethod::Xxhash64 => 8,
            CheckMethod::Sha192 => 24,
            _ => 0,
        };
        // Stored little-endian: show 32/64-bit codes as numbers, hashes as bytes.
        let check_value = match n {
            4 => format!("{:08x}", u32::from_le_bytes(b.check[..4].try_into().unwrap())),
            8 => format!("{:016x}", u64::from_le_bytes(b.check[..8].try_into().unwrap())),
            _ => b.check[..n].iter().map(|x| format!("{x:02x}")).collect(),
        };
        BlockrefSummary {
            type_: b.kind().to_string(),
            check: b.check_method().to_string(),
            comp: b.comp_method().to_string(),
            key: b.key.get(),
            keybits: b.keybits,
            data_off: b.data_off.get(),
            radix: b.radix(),
            mirror_tid: b.mirror_tid.get(),
            modify_tid: b.modify_tid.get(),
            update_tid: b.update_tid.get(),
            flags: b.flags,
            leaf_count: b.leaf_count.get(),
            check_value,
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
