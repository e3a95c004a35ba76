//! Volume headers: reading every copy that fits, validating magic and the
//! three CRCs, choosing the best copy, and assembling a multi-volume set.
//!
//! Facts from the fixtures (they win over a reading of the sources):
//! - a copy `n` exists only where `n * 2 GiB + 64 KiB` fits in the volume, so
//!   a 1 GiB volume has one copy and a 3 GiB volume two;
//! - writers update one copy per commit; the others keep older states, so
//!   "valid but older" is normal, and the best copy is the valid one with the
//!   highest `mirror_tid`;
//! - unused `volu_loff` slots hold all ones;
//! - headers of non-root volumes have no boot/aux areas, `allocator_free` 0,
//!   and an INVALID-typed super-root blockref.

use crate::device::{Backend, Device, Extent};
use crate::error::{Error, Result};
use crate::format::{
    volhdr_offset, VolumeData, MAX_VOLUMES, NUM_VOLHDRS, ROOT_VOLUME, VOLUME_BYTES, VOLUME_ID_ABO,
    VOLUME_ID_HBO, VOL_VERSION_MIN, VOL_VERSION_MULTI_VOLUMES, VOL_VERSION_WIP,
};
use zerocopy::FromBytes;

/// What is wrong with one header copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    #[error("bad magic {0:#018x}")]
    BadMagic(u64),
    #[error("byte-reversed magic: written by a big-endian host, not supported")]
    ReverseEndian,
    #[error("sector 0 CRC stored {stored:08x}, computed {computed:08x}")]
    Sect0Crc { stored: u32, computed: u32 },
    #[error("sector 1 CRC stored {stored:08x}, computed {computed:08x}")]
    Sect1Crc { stored: u32, computed: u32 },
    #[error("whole-header CRC stored {stored:08x}, computed {computed:08x}")]
    WholeCrc { stored: u32, computed: u32 },
}

/// One header copy's slot in a volume.
#[derive(Debug, Clone)]
pub enum CopyState {
    /// The slot lies past the end of the volume.
    Absent,
    /// Present and every check holds.
    Valid,
    /// Present but unusable.
    Invalid(Vec<HeaderProblem>),
}

/// One header copy as found on media.
#[derive(Clone)]
pub struct HeaderCopy {
    pub index: usize,
    /// Physical offset inside the volume.
    pub offset: u64,
    pub state: CopyState,
    /// The header bytes (None when absent).
    pub data: Option<Box<VolumeData>>,
}

impl HeaderCopy {
    pub fn is_valid(&self) -> bool {
        matches!(self.state, CopyState::Valid)
    }
    pub fn mirror_tid(&self) -> Option<u64> {
        self.data.as_ref().map(|d| d.mirror_tid.get())
    }
}

/// Every header copy of one volume, and the best one.
pub struct VolumeHeaders {
    pub copies: Vec<HeaderCopy>,
    /// Index into `copies` of the valid copy with the highest mirror_tid.
    pub best: Option<usize>,
}

impl VolumeHeaders {
    pub fn best(&self) -> Option<&HeaderCopy> {
        self.best.map(|i| &self.copies[i])
    }
}

/// Validates one copy's bytes.
pub fn check_header(vd: &VolumeData) -> Vec<HeaderProblem> {
    let magic = vd.magic.get();
    if magic == VOLUME_ID_ABO {
        return vec![HeaderProblem::ReverseEndian];
    }
    if magic != VOLUME_ID_HBO {
        return vec![HeaderProblem::BadMagic(magic)];
    }
    let (s, c) = (vd.stored_crcs(), vd.computed_crcs());
    let mut problems = Vec::new();
    if s.sect0 != c.sect0 {
        problems.push(HeaderProblem::Sect0Crc { stored: s.sect0, computed: c.sect0 });
    }
    if s.sect1 != c.sect1 {
        problems.push(HeaderProblem::Sect1Crc { stored: s.sect1, computed: c.sect1 });
    }
    if s.whole != c.whole {
        problems.push(HeaderProblem::WholeCrc { stored: s.whole, computed: c.whole });
    }
    problems
}

/// Reads every header slot of one volume.
pub fn read_headers(vol: &dyn Backend) -> VolumeHeaders {
    let copies: Vec<HeaderCopy> = (0..NUM_VOLHDRS)
        .map(|index| {
            let offset = volhdr_offset(index);
            match vol.bytes(offset, VOLUME_BYTES) {
                None => HeaderCopy { index, offset, state: CopyState::Absent, data: None },
                Some(bytes) => {
                    // OK to unwrap: exactly VOLUME_BYTES were returned.
                    let vd = Box::new(VolumeData::read_from_bytes(bytes).unwrap());
                    let problems = check_header(&vd);
                    let state =
                        if problems.is_empty() { CopyState::Valid } else { CopyState::Invalid(problems) };
                    HeaderCopy { index, offset, state, data: Some(vd) }
                }
            }
        })
        .collect();
    // Highest mirror_tid wins; on a tie the lowest index, as the kernel scans upward.
    let best = copies
        .iter()
        .filter(|c| c.is_valid())
        .max_by_key(|c| (c.mirror_tid(), std::cmp::Reverse(c.index)))
        .map(|c| c.index);
    VolumeHeaders { copies, best }
}

/// Which header copy to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CopyChoice {
    /// The valid copy with the highest mirror_tid.
    #[default]
    Best,
    /// A given copy of the root volume (must be valid).
    Index(usize),
}

/// An opened file system: its volumes, every header copy, and the header in use.
pub struct Hammer2 {
    pub device: Device,
    /// Header copies per volume, in the order the volumes were given.
    pub headers: Vec<VolumeHeaders>,
    /// Position in `device` of each volume id (index = volu_id).
    pub by_id: Vec<usize>,
    /// The root volume's header in use.
    pub voldata: Box<VolumeData>,
    /// Which copy of the root volume `voldata` is.
    pub copy: usize,
}

impl Hammer2 {
    /// Opens a device set, choosing the header copy as asked.
    pub fn open(device: Device, choice: CopyChoice) -> Result<Self> {
        let headers: Vec<VolumeHeaders> = (0..device.len()).map(|i| read_headers(device.volume(i))).collect();
        let names: Vec<String> =
            (0..device.len()).map(|i| device.volume(i).path().display().to_string()).collect();
        let name = |i: usize| names[i].clone();

        // Each volume's own best copy tells who it is.
        let mut chosen: Vec<&VolumeData> = Vec::with_capacity(device.len());
        for (i, h) in headers.iter().enumerate() {
            let Some(best) = h.best() else {
                return Err(Error::NoValidHeader(format!("{}: {}", name(i), describe_copies(h))));
            };
            chosen.push(best.data.as_deref().expect("valid copies have data"));
        }

        let root_pos = chosen
            .iter()
            .position(|v| v.volu_id == ROOT_VOLUME)
            .ok_or_else(|| Error::VolumeSet("no root volume (volu_id 0) among the devices given".into()))?;
        let root = chosen[root_pos];
        let version = root.version.get();
        if !(VOL_VERSION_MIN..VOL_VERSION_WIP).contains(&version) {
            return Err(Error::VolumeSet(format!(
                "{}: unsupported volume version {version}",
                name(root_pos)
            )));
        }
        let nvolumes = if version >= VOL_VERSION_MULTI_VOLUMES { root.nvolumes as usize } else { 1 };
        if nvolumes == 0 || nvolumes > MAX_VOLUMES {
            return Err(Error::VolumeSet(format!("{}: nvolumes {nvolumes} out of range", name(root_pos))));
        }

        let mut by_id = vec![usize::MAX; nvolumes];
        for (pos, v) in chosen.iter().enumerate() {
            let id = v.volu_id as usize;
            if v.fsid != root.fsid {
                return Err(Error::VolumeSet(format!(
                    "{} belongs to file system {}, not {}",
                    name(pos),
                    v.fsid_uuid(),
                    root.fsid_uuid()
                )));
            }
            if id >= nvolumes {
                return Err(Error::VolumeSet(format!(
                    "{}: volu_id {id} but the set has {nvolumes} volumes",
                    name(pos)
                )));
            }
            if by_id[id] != usize::MAX {
                return Err(Error::VolumeSet(format!(
                    "{} and {} both claim volu_id {id}",
                    name(by_id[id]),
                    name(pos)
                )));
            }
            by_id[id] = pos;
        }
        let missing: Vec<String> = by_id
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == usize::MAX)
            .map(|(id, _)| id.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::VolumeSet(format!(
                "{} of {nvolumes} volumes given; missing volu_id {} (name them all as vol0:vol1:...)",
                device.len(),
                missing.join(", ")
            )));
        }

        let copy = match choice {
            CopyChoice::Best => headers[root_pos].best.expect("checked above"),
            CopyChoice::Index(n) => {
                let c = headers[root_pos].copies.get(n).ok_or_else(|| {
                    Error::InvalidArgument(format!("header copy {n} does not exist (0..{NUM_VOLHDRS})"))
                })?;
                if !c.is_valid() {
                    return Err(Error::NoValidHeader(format!(
                        "{}: copy {n}: {}",
                        name(root_pos),
                        describe_copy(c)
                    )));
                }
                n
            }
        };
        let voldata = headers[root_pos].copies[copy].data.clone().expect("valid copies have data");

        let mut device = device;
        for (id, &pos) in by_id.iter().enumerate() {
            let loff = if version >= VOL_VERSION_MULTI_VOLUMES { voldata.volu_loff[id].get() } else { 0 };
            let size = chosen[pos].volu_size.get();
            if loff == u64::MAX {
                return Err(Error::VolumeSet(format!("volu_loff[{id}] is unset in the root header")));
            }
            if size > device.volume(pos).size() {
                return Err(Error::VolumeSet(format!(
                    "{}: header says {size:#x} bytes but the device has only {:#x} (truncated?)",
                    name(pos),
                    device.volume(pos).size()
                )));
            }
            device.set_extent(pos, Extent { loff, size });
        }
        Ok(Hammer2 { device, headers, by_id, voldata, copy })
    }

    /// Opens `spec` (`a.img:b.img`) read-only with the best header.
    pub fn open_path(spec: &str) -> Result<Self> {
        Self::open(Device::open(spec, crate::device::Access::ReadOnly)?, CopyChoice::Best)
    }

    /// Position in the device of the root volume.
    pub fn root_position(&self) -> usize {
        self.by_id[ROOT_VOLUME as usize]
    }
}

/// One line per copy, for error messages.
pub fn describe_copies(h: &VolumeHeaders) -> String {
    h.copies.iter().map(|c| format!("copy {}: {}", c.index, describe_copy(c))).collect::<Vec<_>>().join("; ")
}

pub fn describe_copy(c: &HeaderCopy) -> String {
    match &c.state {
        CopyState::Absent => "past the end of the volume".into(),
        CopyState::Valid => format!("valid, mirror_tid {:#x}", c.mirror_tid().unwrap_or(0)),
        CopyState::Invalid(p) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
    }
}
