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
//!
//! # Geometry: what is fatal on open
//!
//! [`Hammer2::open`] validates every header field that places or sizes a
//! volume *before* anything is mapped or sized from it, and refuses the set
//! with [`Error::Geometry`] (naming the volume, the field and its value) or
//! [`Error::VolumeSet`] when one is unusable (these are the rules of
//! DragonFly's `hammer2_verify_volumes`, minus those nothing here depends on):
//!
//! - version outside the supported range, `nvolumes` 0 or above 64;
//! - on multi-volume media (version 2 and up), for every volume of the set,
//!   the root header's `volu_loff[id]`: not all ones (unset), 0 for the
//!   root volume, a multiple of the freemap's 1 GiB zone, and exactly where
//!   the previous volume ends (no gap, no overlap, no 64-bit overflow);
//!   version-1 media has one volume at logical offset 0;
//! - each volume's `volu_size`: at least one volume header (64 KiB) and no
//!   larger than the device holding it.
//!
//! So the logical address space is the contiguous sum of the volume sizes,
//! bounded by the devices' sizes, and [`crate::device::Device::logical_size`]
//! is safe to size per-zone tables from.
//!
//! Everything else in the header is *not* fatal: `total_size`, the unused
//! `volu_loff` slots, the last volume's 8 MiB alignment, the boot and aux
//! areas and the allocator fields (`allocator_size`, `allocator_free`,
//! `allocator_beg`) are checked by [`field_problems`], which fsck reports as
//! findings; code that uses them (the freemap accounting) clamps them to the
//! address space and uses checked or saturating arithmetic.

use crate::device::{Backend, Device, Extent};
use crate::error::{Error, Result};
use crate::format::{
    volhdr_offset, VolumeData, FREEMAP_LEVEL1_RADIX, MAX_VOLUMES, NUM_VOLHDRS, ROOT_VOLUME, VOLUME_ALIGN,
    VOLUME_BYTES, VOLUME_ID_ABO, VOLUME_ID_HBO, VOL_VERSION_MIN, VOL_VERSION_MULTI_VOLUMES, VOL_VERSION_WIP,
    ZONE_SEG,
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
                    Error::InvalidArgument(format!(
                        "header copy {n} does not exist (copies are numbered 0 to {})",
                        NUM_VOLHDRS - 1
                    ))
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

        // The root volume's size comes from the copy in use, the others' from
        // their own best copy.
        let sizes: Vec<u64> = by_id
            .iter()
            .map(|&pos| if pos == root_pos { voldata.volu_size.get() } else { chosen[pos].volu_size.get() })
            .collect();
        let device_sizes: Vec<u64> = by_id.iter().map(|&pos| device.volume(pos).size()).collect();
        let extents = volume_extents(&voldata, &sizes, &device_sizes, &|id| name(by_id[id]))?;
        let mut device = device;
        for (id, extent) in extents.into_iter().enumerate() {
            device.set_extent(by_id[id], extent)?;
        }
        Ok(Hammer2 { device, headers, by_id, voldata, copy })
    }

    /// Opens a device set on a header that is not on the media: one a
    /// staged commit returned ([`crate::write::flush::stage`]), naming a
    /// tree and freemap already durable whose header is still to be
    /// written. Readers then see the staged state; `copy` and `headers` stay
    /// those of the media (the best copy, which the final commit's header
    /// follows in rotation). Refused when `staged` fails its CRCs or
    /// belongs to another file system or geometry than the best copy.
    pub fn open_staged(device: Device, staged: &VolumeData) -> Result<Self> {
        let mut fs = Self::open(device, CopyChoice::Best)?;
        let v = &fs.voldata;
        if !check_header(staged).is_empty()
            || staged.fsid != v.fsid
            || staged.volu_size != v.volu_size
            || staged.volu_loff != v.volu_loff
            || staged.nvolumes != v.nvolumes
        {
            return Err(Error::Internal(
                "a staged header must verify and keep the volume set of the header in use".into(),
            ));
        }
        fs.voldata = Box::new(*staged);
        Ok(fs)
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

/// Bytes of one freemap zone (level 1): volumes start on such a boundary.
const LEVEL1_BYTES: u64 = 1 << FREEMAP_LEVEL1_RADIX;

/// Where each volume (indexed by volu_id) lies in the logical address space,
/// from the root header in use, each volume's size and the size of the
/// device holding it. Every rule here is fatal (see the module docs).
fn volume_extents(
    root: &VolumeData,
    sizes: &[u64],
    device_sizes: &[u64],
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<Extent>> {
    let multi = root.version.get() >= VOL_VERSION_MULTI_VOLUMES;
    let bad = |id: usize, field: String, value: u64, why: String| Error::Geometry {
        volume: name(id),
        field,
        value,
        why,
    };
    let mut extents = Vec::with_capacity(sizes.len());
    let mut next = 0u64;
    for (id, (&size, &device_size)) in sizes.iter().zip(device_sizes).enumerate() {
        let loff = if multi { root.volu_loff[id].get() } else { 0 };
        let field = format!("volu_loff[{id}]");
        if loff == u64::MAX {
            return Err(bad(id, field, loff, "is unset (all ones) in the root header".into()));
        }
        if loff % LEVEL1_BYTES != 0 {
            return Err(bad(id, field, loff, "is not a multiple of the 1 GiB freemap zone".into()));
        }
        if loff != next {
            let why = if id == 0 {
                "the root volume must start at logical offset 0".to_string()
            } else if loff < next {
                format!("overlaps volume {} which ends at {next:#x}", id - 1)
            } else {
                format!("leaves a gap after volume {} which ends at {next:#x}", id - 1)
            };
            return Err(bad(id, field, loff, why));
        }
        if size < VOLUME_BYTES as u64 {
            return Err(bad(id, "volu_size".into(), size, "is smaller than one volume header".into()));
        }
        if size > device_size {
            return Err(bad(
                id,
                "volu_size".into(),
                size,
                format!("exceeds the device's {device_size:#x} bytes (truncated?)"),
            ));
        }
        // Cannot overflow in practice (device sizes are bounded), but the
        // next volume's expected start is computed, not trusted.
        next = loff.checked_add(size).ok_or_else(|| {
            bad(id, "volu_size".into(), size, format!("added to volu_loff[{id}] {loff:#x} overflows 64 bits"))
        })?;
        extents.push(Extent { loff, size });
    }
    Ok(extents)
}

/// A header field that is out of range but does not stop the file system
/// from being opened (fsck reports these; see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub kind: FieldKind,
    /// The field, as named in hammer2_disk.h (`volu_loff[3]`, `aux_end`...).
    pub field: String,
    pub value: u64,
    pub why: String,
}

/// Which group a [`FieldProblem`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `total_size`, `volu_loff` slots, volume sizes, fields of other volumes' headers.
    VolumeSet,
    /// The boot and aux areas.
    Areas,
    /// `allocator_size`, `allocator_free`, `allocator_beg`.
    Allocator,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x}: {}", self.field, self.value, self.why)
    }
}

/// The non-fatal field checks of an opened file system's header in use
/// (and of the other volumes' headers): what [`Hammer2::open`] accepts but
/// a consistent file system would not have. Arithmetic is checked: the
/// values may be anything.
pub fn field_problems(fs: &Hammer2) -> Vec<FieldProblem> {
    let v = &fs.voldata;
    let end = fs.device.logical_size();
    let root_size = v.volu_size.get();
    let mut out = Vec::new();
    let mut add = |kind, field: &str, value: u64, why: String| {
        out.push(FieldProblem { kind, field: field.to_string(), value, why })
    };
    use FieldKind::*;

    // The volume set.
    let multi = v.version.get() >= VOL_VERSION_MULTI_VOLUMES;
    let nvolumes = fs.by_id.len();
    let total = v.total_size.get();
    if multi && total != end {
        add(VolumeSet, "total_size", total, format!("the volumes add up to {end:#x}"));
    }
    if !multi && total != 0 {
        add(VolumeSet, "total_size", total, "must be 0 on version-1 media".into());
    }
    for (slot, loff) in v.volu_loff.iter().enumerate() {
        let loff = loff.get();
        if multi && slot >= nvolumes && loff != u64::MAX {
            add(
                VolumeSet,
                &format!("volu_loff[{slot}]"),
                loff,
                format!("unused slot (nvolumes {nvolumes}) is not all ones"),
            );
        }
        if !multi && loff != 0 {
            add(VolumeSet, &format!("volu_loff[{slot}]"), loff, "must be 0 on version-1 media".into());
        }
    }
    if let Some(&last) = fs.by_id.last() {
        let size = if last == fs.root_position() {
            v.volu_size.get()
        } else {
            fs.headers[last].best().and_then(|c| c.data.as_ref()).map_or(0, |d| d.volu_size.get())
        };
        if size % VOLUME_ALIGN != 0 {
            add(
                VolumeSet,
                "volu_size",
                size,
                format!("the last volume's size is not a multiple of {} MiB", VOLUME_ALIGN >> 20),
            );
        }
    }
    for (id, &pos) in fs.by_id.iter().enumerate() {
        if pos == fs.root_position() {
            continue;
        }
        let Some(d) = fs.headers[pos].best().and_then(|c| c.data.as_ref()) else { continue };
        let (own, root) = (d.volu_loff[id].get(), v.volu_loff[id].get());
        if multi && own != root {
            add(
                VolumeSet,
                &format!("volu_loff[{id}]"),
                own,
                format!("volume {id}'s own header disagrees with the root header's {root:#x}"),
            );
        }
        if d.version.get() != v.version.get() || d.nvolumes != v.nvolumes {
            add(
                VolumeSet,
                "version",
                u64::from(d.version.get()),
                format!(
                    "volume {id} has version {} and nvolumes {}, the root header {} and {}",
                    d.version.get(),
                    d.nvolumes,
                    v.version.get(),
                    v.nvolumes
                ),
            );
        }
    }

    // Boot and aux areas: in order, after the root volume's first reserved
    // segment (volume header and freemap blocks), inside the root volume.
    let (bb, be, ab, ae) = (v.boot_beg.get(), v.boot_end.get(), v.aux_beg.get(), v.aux_end.get());
    if bb > be || be > ab || ab > ae {
        add(Areas, "boot_beg", bb, format!("boot {bb:#x}-{be:#x} and aux {ab:#x}-{ae:#x} are not in order"));
    } else {
        if bb < ZONE_SEG && be > bb {
            add(
                Areas,
                "boot_beg",
                bb,
                format!("the boot area overlaps the reserved segment below {ZONE_SEG:#x}"),
            );
        }
        if ae > root_size {
            add(
                Areas,
                "aux_end",
                ae,
                format!("the aux area ends past the root volume's {root_size:#x} bytes"),
            );
        }
    }

    // Allocator fields.
    let (size, free, beg) = (v.allocator_size.get(), v.allocator_free.get(), v.allocator_beg.get());
    if size > end {
        add(Allocator, "allocator_size", size, format!("exceeds the volume set's {end:#x} bytes"));
    }
    if free > size {
        add(Allocator, "allocator_free", free, format!("exceeds allocator_size {size:#x}"));
    }
    if beg < ae {
        add(Allocator, "allocator_beg", beg, format!("lies inside the aux area ending {ae:#x}"));
    }
    if beg > end {
        add(Allocator, "allocator_beg", beg, format!("lies past the end of the volume set ({end:#x})"));
    }
    out
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
