//! `volhdr`: every header copy of every volume, its fields and CRC status.
//! Works on sets that cannot be opened (every copy corrupt, a volume
//! missing): that is when people need it most.

use super::BlockrefSummary;
use crate::device::Device;
use crate::format::{VolumeData, ROOT_VOLUME};
use crate::volume::{read_headers, CopyState};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct VolhdrReport {
    pub volumes: Vec<VolumeReport>,
}

#[derive(Debug, Serialize)]
pub struct VolumeReport {
    pub path: String,
    pub device_size: u64,
    /// volu_id of the volume's best copy, if any copy is valid.
    pub volu_id: Option<u8>,
    /// Index of the copy in use (valid, highest mirror_tid).
    pub best: Option<usize>,
    /// The volume's size as its header records it (`volu_size` of the copy
    /// in use, else of the first copy that could be decoded).
    pub header_size: Option<u64>,
    /// The device is shorter than its header says: the volume was cut
    /// short (a partial copy, a shrunken partition).
    pub truncated: bool,
    pub copies: Vec<CopyReport>,
}

#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub index: usize,
    pub offset: u64,
    /// "valid", "invalid" or "absent" (past the end of the volume).
    pub state: &'static str,
    pub problems: Vec<String>,
    pub in_use: bool,
    pub header: Option<HeaderFields>,
}

#[derive(Debug, Serialize)]
pub struct Crc {
    pub stored: u32,
    pub computed: u32,
    pub ok: bool,
}

/// The fields of one header copy.
#[derive(Debug, Serialize)]
pub struct HeaderFields {
    pub magic: u64,
    pub version: u32,
    pub flags: u32,
    pub copyid: u8,
    pub freemap_version: u8,
    pub peer_type: u8,
    pub volu_id: u8,
    pub nvolumes: u8,
    pub volu_size: u64,
    pub total_size: u64,
    pub boot_beg: u64,
    pub boot_end: u64,
    pub aux_beg: u64,
    pub aux_end: u64,
    pub allocator_size: u64,
    pub allocator_free: u64,
    pub allocator_beg: u64,
    pub mirror_tid: u64,
    pub freemap_tid: u64,
    pub bulkfree_tid: u64,
    pub fsid: String,
    pub fstype: String,
    pub crc_sector0: Crc,
    pub crc_sector1: Crc,
    pub crc_header: Crc,
    /// Logical start of each volume (unused slots omitted).
    pub volu_loff: Vec<u64>,
    pub sroot_blockset: Vec<(usize, BlockrefSummary)>,
    pub freemap_blockset: Vec<(usize, BlockrefSummary)>,
}

impl HeaderFields {
    pub fn new(v: &VolumeData) -> Self {
        let (s, c) = (v.stored_crcs(), v.computed_crcs());
        let crc = |stored, computed| Crc { stored, computed, ok: stored == computed };
        HeaderFields {
            magic: v.magic.get(),
            version: v.version.get(),
            flags: v.flags.get(),
            copyid: v.copyid,
            freemap_version: v.freemap_version,
            peer_type: v.peer_type,
            volu_id: v.volu_id,
            nvolumes: v.nvolumes,
            volu_size: v.volu_size.get(),
            total_size: v.total_size.get(),
            boot_beg: v.boot_beg.get(),
            boot_end: v.boot_end.get(),
            aux_beg: v.aux_beg.get(),
            aux_end: v.aux_end.get(),
            allocator_size: v.allocator_size.get(),
            allocator_free: v.allocator_free.get(),
            allocator_beg: v.allocator_beg.get(),
            mirror_tid: v.mirror_tid.get(),
            freemap_tid: v.freemap_tid.get(),
            bulkfree_tid: v.bulkfree_tid.get(),
            fsid: v.fsid_uuid().to_string(),
            fstype: v.fstype_uuid().to_string(),
            crc_sector0: crc(s.sect0, c.sect0),
            crc_sector1: crc(s.sect1, c.sect1),
            crc_header: crc(s.whole, c.whole),
            volu_loff: v.volu_loff.iter().map(|x| x.get()).take_while(|&x| x != u64::MAX).collect(),
            sroot_blockset: BlockrefSummary::of_set(&v.sroot_blockset),
            freemap_blockset: BlockrefSummary::of_set(&v.freemap_blockset),
        }
    }
}

/// Reports every header copy of every volume of `device`.
pub fn report(device: &Device) -> VolhdrReport {
    let volumes = (0..device.len())
        .map(|i| {
            let vol = device.volume(i);
            let h = read_headers(vol);
            let copies = h
                .copies
                .iter()
                .map(|c| {
                    let (state, problems) = match &c.state {
                        CopyState::Absent => ("absent", Vec::new()),
                        CopyState::Valid => ("valid", Vec::new()),
                        CopyState::Invalid(p) => ("invalid", p.iter().map(|p| p.to_string()).collect()),
                    };
                    CopyReport {
                        index: c.index,
                        offset: c.offset,
                        state,
                        problems,
                        in_use: h.best == Some(c.index),
                        header: c.data.as_deref().map(HeaderFields::new),
                    }
                })
                .collect();
            let header_size = h
                .best()
                .and_then(|c| c.data.as_ref())
                .or_else(|| h.copies.iter().find_map(|c| c.data.as_ref()))
                .map(|d| d.volu_size.get());
            VolumeReport {
                path: vol.path().display().to_string(),
                device_size: vol.size(),
                header_size,
                truncated: header_size.is_some_and(|n| n > vol.size()),
                volu_id: h.best().and_then(|c| c.data.as_ref()).map(|d| d.volu_id),
                best: h.best,
                copies,
            }
        })
        .collect();
    VolhdrReport { volumes }
}

impl VolumeReport {
    pub fn is_root(&self) -> bool {
        self.volu_id == Some(ROOT_VOLUME)
    }

    /// A plain statement that the device is truncated, when it is.
    pub fn truncation(&self) -> Option<String> {
        let n = self.header_size.filter(|_| self.truncated)?;
        Some(format!(
            "{}: device is truncated: its header says the volume is {n} bytes, the device has {} ({} missing)",
            self.path,
            self.device_size,
            n - self.device_size
        ))
    }
}
