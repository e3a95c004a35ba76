//! Formatting: plan a layout for one or more volumes, build every block a new
//! file system needs, and write it.
//!
//! What DragonFly's newfs_hammer2 writes, and so what we write (verified
//! byte by byte against the reference images):
//! - per volume, a 64 KiB header at `n * 2 GiB` for every `n` with
//!   `n * 2 GiB < volu_size`, all copies identical;
//! - on the root volume only, one 64 KiB block at the start of the allocator
//!   area holding the super-root inode followed by one PFS-root inode per
//!   label (1 KiB each); `allocator_beg` points just past the last one;
//! - no freemap: `freemap_blockset` stays empty and the kernel builds leaves
//!   on first allocation, treating everything below `allocator_beg` (reserved
//!   segments, boot and aux areas, the inodes) as allocated.
//!
//! Unlike DragonFly's tool, we do not write zeros over the reserved segment
//! and the boot/aux areas unless asked (`zero`): nothing there is read by
//! HAMMER2 before it is written, and skipping it keeps sparse images sparse.
//! We do overwrite every header slot of an older file system that the new
//! `volu_size` no longer covers, so no stale header copy survives.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::check::set_check;
use crate::format::dirhash::dirhash;
use crate::format::*;
use crate::volume::{read_headers, CopyState};
use zerocopy::IntoBytes;

/// Transaction id newfs stamps on everything.
pub const NEWFS_TID: u64 = 0x10;
/// First inode number a new PFS hands out.
pub const NEWFS_PFS_INUM: u64 = 16;
/// Most PFSs newfs creates (LOCAL plus three labels).
pub const MAX_LABELS: usize = 4;
/// Label always created.
pub const LOCAL_LABEL: &str = "LOCAL";
/// Label created when none is given.
pub const DEFAULT_LABEL: &str = "DATA";

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct NewfsOptions {
    pub version: u32,
    /// Boot area size (None: derived from the total size).
    pub boot: Option<u64>,
    /// Aux area size (None: derived from the total size).
    pub aux: Option<u64>,
    /// `-L` values as given (empty: the default label; "none": no extra label).
    pub labels: Vec<String>,
    /// Check method recorded in the PFS roots for their contents.
    pub check: CheckMethod,
    /// Compression recorded in the PFS roots for their contents.
    pub comp: CompMethod,
    /// Zero the reserved segment and boot/aux areas as DragonFly does.
    pub zero: bool,
}

impl Default for NewfsOptions {
    fn default() -> Self {
        NewfsOptions {
            version: VOL_VERSION_DEFAULT,
            boot: None,
            aux: None,
            labels: Vec::new(),
            check: CheckMethod::Xxhash64,
            comp: CompMethod::Lz4,
            zero: false,
        }
    }
}

/// One volume of a planned layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumePlan {
    /// Logical offset of the volume's first byte.
    pub loff: u64,
    /// Bytes the file system uses (rounded down from the device size).
    pub size: u64,
    /// Physical offsets of the header copies written.
    pub header_copies: Vec<u64>,
}

/// A complete layout: everything newfs will write follows from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub version: u32,
    pub volumes: Vec<VolumePlan>,
    pub total_size: u64,
    pub boot_beg: u64,
    pub boot_end: u64,
    pub aux_beg: u64,
    pub aux_end: u64,
    /// Reserved 4 MiB segments, one per started GiB of the total.
    pub reserved_size: u64,
    /// `allocator_size` = `allocator_free`: total minus reserved, boot and aux.
    pub free_size: u64,
    /// Where the inode block goes (logical, root volume).
    pub alloc_base: u64,
    /// Just past the last newfs inode.
    pub allocator_beg: u64,
    /// PFS labels in creation order (LOCAL first).
    pub labels: Vec<String>,
}

fn round_down(v: u64, align: u64) -> u64 {
    v / align * align
}

/// Default boot/aux size: start at `nominal`, halve while above 1/20 of the
/// total, never below the 8 MiB alignment.
fn area_size(nominal: u64, total: u64) -> u64 {
    let mut size = nominal;
    while size > total / 20 && size > VOLUME_ALIGN {
        size >>= 1;
    }
    size.max(VOLUME_ALIGN).div_ceil(VOLUME_ALIGN) * VOLUME_ALIGN
}

fn user_area(what: &str, v: Option<u64>, min: u64, max: u64, nominal: u64, total: u64) -> Result<u64> {
    match v {
        None => Ok(area_size(nominal, total)),
        Some(v) if v < min || v > max || v % VOLUME_ALIGN != 0 => Err(Error::InvalidArgument(format!(
            "{what} area size {v:#x} must be a multiple of 8 MiB between {} MiB and {} MiB",
            min >> 20,
            max >> 20
        ))),
        Some(v) => Ok(v),
    }
}

/// Resolves `-L` values into the PFS labels to create.
pub fn resolve_labels(given: &[String]) -> Result<Vec<String>> {
    let mut labels = vec![LOCAL_LABEL.to_string()];
    if given.is_empty() {
        labels.push(DEFAULT_LABEL.to_string());
    }
    for l in given.iter().filter(|l| !l.eq_ignore_ascii_case("none")) {
        if l.is_empty() || l.len() >= INODE_MAXNAME {
            return Err(Error::InvalidArgument(format!("label {l:?} must be 1 to 255 bytes")));
        }
        if l.contains('/') || l.contains('\0') {
            return Err(Error::InvalidArgument(format!("label {l:?} may not contain '/' or NUL")));
        }
        if labels.iter().any(|x| x == l) {
            return Err(Error::InvalidArgument(format!("label {l:?} given twice (LOCAL always exists)")));
        }
        labels.push(l.clone());
    }
    if labels.len() > MAX_LABELS {
        return Err(Error::InvalidArgument(format!(
            "at most {} labels besides LOCAL ({} given)",
            MAX_LABELS - 1,
            labels.len() - 1
        )));
    }
    Ok(labels)
}

/// Plans the layout for volumes of the given usable sizes (bytes each).
pub fn plan(sizes: &[u64], opts: &NewfsOptions) -> Result<Layout> {
    if sizes.is_empty() {
        return Err(Error::InvalidArgument("no volume given".into()));
    }
    if sizes.len() > MAX_VOLUMES {
        return Err(Error::InvalidArgument(format!(
            "{} volumes given; HAMMER2 supports {MAX_VOLUMES}",
            sizes.len()
        )));
    }
    if !(VOL_VERSION_MIN..VOL_VERSION_WIP).contains(&opts.version) {
        return Err(Error::InvalidArgument(format!(
            "version {} unsupported (use {VOL_VERSION_MIN} to {})",
            opts.version,
            VOL_VERSION_WIP - 1
        )));
    }
    if opts.version < VOL_VERSION_MULTI_VOLUMES && sizes.len() > 1 {
        return Err(Error::InvalidArgument(format!("version {} supports one volume only", opts.version)));
    }
    let labels = resolve_labels(&opts.labels)?;
    // Volumes other than the last are cut to whole GiB (the freemap's level-1
    // zones may not straddle volumes); the last to the 8 MiB alignment.
    let mut volumes = Vec::with_capacity(sizes.len());
    let mut loff = 0u64;
    for (i, &raw) in sizes.iter().enumerate() {
        let last = i + 1 == sizes.len();
        let size = round_down(raw, if last { VOLUME_ALIGN } else { 1 << 30 });
        let min = if last { VOLUME_ALIGN } else { 1 << 30 };
        if size < min {
            return Err(Error::InvalidArgument(format!(
                "volume {i} is {raw} bytes; it must hold at least {} MiB{}",
                min >> 20,
                if last { "" } else { " (every volume but the last is used in whole GiB)" }
            )));
        }
        let header_copies = (0..NUM_VOLHDRS).map(volhdr_offset).filter(|&o| o < size).collect();
        volumes.push(VolumePlan { loff, size, header_copies });
        loff += size;
    }
    let total_size = loff;
    let boot = user_area("boot", opts.boot, BOOT_MIN_BYTES, BOOT_MAX_BYTES, BOOT_NOM_BYTES, total_size)?;
    let aux = user_area("aux", opts.aux, AUX_MIN_BYTES, AUX_MAX_BYTES, AUX_NOM_BYTES, total_size)?;
    let reserved_size = total_size.div_ceil(1 << FREEMAP_LEVEL1_RADIX) * ZONE_SEG;
    let needed = reserved_size + boot + aux;
    let boot_beg = ZONE_SEG;
    let alloc_base = boot_beg + boot + aux;
    let inode_bytes = (labels.len() as u64 + 1) * INODE_BYTES as u64;
    // The same bound as DragonFly's newfs_hammer2 (24 MiB with the smallest
    // boot and aux areas). Such an image can be checked and mounted but
    // never written: the kernel's leaf initialisation (and our allocator)
    // marks every 4 MiB segment below roundup(allocator_beg, 4 MiB)
    // allocated, which leaves no segment at all; an image takes its first
    // block from 32 MiB on (tests/write_shapes.rs, the_smallest_images).
    if total_size <= needed || alloc_base + PBUFSIZE > volumes[0].size.min(1 << 30) {
        return Err(Error::InvalidArgument(format!(
            "{} MiB is too small: reserved areas ({} MiB), boot ({} MiB) and aux ({} MiB) need more",
            total_size >> 20,
            reserved_size >> 20,
            boot >> 20,
            aux >> 20
        )));
    }
    Ok(Layout {
        version: opts.version,
        volumes,
        total_size,
        boot_beg,
        boot_end: boot_beg + boot,
        aux_beg: boot_beg + boot,
        aux_end: alloc_base,
        reserved_size,
        free_size: total_size - needed,
        alloc_base,
        allocator_beg: alloc_base + inode_bytes,
        labels,
    })
}

/// Identity and time of a new file system (random unless a test fixes them).
#[derive(Debug, Clone)]
pub struct Identity {
    pub fsid: uuid::Uuid,
    pub sroot_clid: uuid::Uuid,
    pub sroot_fsid: uuid::Uuid,
    /// (pfs_clid, pfs_fsid) per label.
    pub pfs: Vec<(uuid::Uuid, uuid::Uuid)>,
    /// Microseconds since the epoch.
    pub now_us: u64,
}

impl Identity {
    pub fn random(labels: usize) -> Self {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Identity {
            fsid: uuid::Uuid::new_v4(),
            sroot_clid: uuid::Uuid::new_v4(),
            sroot_fsid: uuid::Uuid::new_v4(),
            pfs: (0..labels).map(|_| (uuid::Uuid::new_v4(), uuid::Uuid::new_v4())).collect(),
            now_us,
        }
    }
}

/// One write of a format: volume position, physical offset, bytes.
pub struct Write {
    pub volume: usize,
    pub offset: u64,
    pub data: Vec<u8>,
    /// Headers go last, after a barrier.
    pub is_header: bool,
}

fn new_dir_inode(name: &str, now: u64) -> InodeData {
    let mut ip = InodeData::new_zeroed();
    let m = &mut ip.meta;
    m.version = 1.into();
    m.ctime = now.into();
    m.mtime = now.into();
    m.btime = now.into();
    m.type_ = ObjType::Directory.into();
    m.name_len = (name.len() as u16).into();
    m.check_algo = CheckMethod::Xxhash64.into();
    ip.filename[..name.len()].copy_from_slice(name.as_bytes());
    ip
}

/// An INODE blockref for a 1 KiB inode at `off`, with its check code.
fn inode_bref(ip: &InodeData, off: u64, key: u64, comp: CompMethod, flags: u8) -> Blockref {
    let mut b = Blockref::zeroed();
    b.type_ = BlockrefType::Inode.into();
    b.methods = encode_methods(CheckMethod::Xxhash64, comp);
    b.copyid = 0xff; // local media copy
    b.vradix = RADIX_MIN;
    b.flags = flags;
    b.key = key.into();
    b.mirror_tid = NEWFS_TID.into();
    b.data_off = (off | u64::from(RADIX_MIN)).into();
    set_check(&mut b, ip.as_bytes());
    b
}

/// Builds every block the layout needs, headers last (the order to write them).
pub fn build(layout: &Layout, opts: &NewfsOptions, id: &Identity) -> Vec<Write> {
    let now = id.now_us;
    // PFS roots, then the super-root that lists them sorted by key.
    let mut pfs_brefs = Vec::new();
    let mut block = vec![0u8; PBUFSIZE as usize];
    let block_base = layout.alloc_base & !(PBUFSIZE - 1);
    for (i, label) in layout.labels.iter().enumerate() {
        let mut ip = new_dir_inode(label, now);
        let m = &mut ip.meta;
        m.op_flags = OPFLAG_PFSROOT;
        m.mode = 0o755.into();
        m.inum = 1.into();
        m.nlinks = 1.into();
        m.name_key = dirhash(label.as_bytes()).into();
        m.comp_algo =
            if label.eq_ignore_ascii_case("BOOT") { CompMethod::Autozero } else { opts.comp }.into();
        m.check_algo = opts.check.into();
        m.pfs_type = PfsType::Master.into();
        m.pfs_inum = NEWFS_PFS_INUM.into();
        m.pfs_clid = uuid_to_disk(&id.pfs[i].0);
        m.pfs_fsid = uuid_to_disk(&id.pfs[i].1);
        let off = layout.alloc_base + (i as u64 + 1) * INODE_BYTES as u64;
        let at = (off - block_base) as usize;
        block[at..at + INODE_BYTES].copy_from_slice(ip.as_bytes());
        let key = ip.meta.name_key.get();
        pfs_brefs.push(inode_bref(&ip, off, key, CompMethod::None, BREF_FLAG_PFSROOT));
    }
    pfs_brefs.sort_by_key(|b| b.key.get());
    let mut sroot = new_dir_inode("SUPROOT", now);
    sroot.meta.mode = 0o700.into();
    sroot.meta.nlinks = 2.into();
    sroot.meta.comp_algo = CompMethod::Autozero.into();
    sroot.meta.pfs_type = PfsType::Suproot.into();
    sroot.meta.pfs_clid = uuid_to_disk(&id.sroot_clid);
    sroot.meta.pfs_fsid = uuid_to_disk(&id.sroot_fsid);
    // The super-root has no hard limit of 4 entries in HAMMER2, but newfs
    // never creates more than fit in its blockset.
    for (slot, b) in sroot.blockset_mut().iter_mut().zip(&pfs_brefs) {
        *slot = *b;
    }
    let at = (layout.alloc_base - block_base) as usize;
    block[at..at + INODE_BYTES].copy_from_slice(sroot.as_bytes());
    let sroot_bref = inode_bref(&sroot, layout.alloc_base, 0, CompMethod::Autozero, 0);

    let mut writes = vec![Write { volume: 0, offset: block_base, data: block, is_header: false }];
    for (vi, vol) in layout.volumes.iter().enumerate() {
        let hdr = header(layout, vi, id, &sroot_bref);
        for &off in &vol.header_copies {
            writes.push(Write { volume: vi, offset: off, data: hdr.as_bytes().to_vec(), is_header: true });
        }
    }
    writes
}

fn header(layout: &Layout, vi: usize, id: &Identity, sroot_bref: &Blockref) -> Box<VolumeData> {
    let vol = &layout.volumes[vi];
    let mut v = VolumeData::new_boxed();
    v.magic = VOLUME_ID_HBO.into();
    v.volu_size = vol.size.into();
    v.version = layout.version.into();
    v.peer_type = 3; // DMSG_PEER_HAMMER2
    v.fsid = uuid_to_disk(&id.fsid);
    // OK to unwrap: the constant is a valid UUID.
    v.fstype = uuid_to_disk(&uuid::Uuid::parse_str(FSTYPE_UUID).unwrap());
    v.allocator_size = layout.free_size.into();
    v.mirror_tid = NEWFS_TID.into();
    v.freemap_tid = NEWFS_TID.into();
    if layout.version >= VOL_VERSION_MULTI_VOLUMES {
        v.volu_id = vi as u8;
        v.nvolumes = layout.volumes.len() as u8;
        v.total_size = layout.total_size.into();
        for (slot, loff) in v.volu_loff.iter_mut().enumerate() {
            *loff = layout.volumes.get(slot).map_or(u64::MAX, |p| p.loff).into();
        }
    }
    if vi == 0 {
        v.boot_beg = layout.boot_beg.into();
        v.boot_end = layout.boot_end.into();
        v.aux_beg = layout.aux_beg.into();
        v.aux_end = layout.aux_end.into();
        v.allocator_free = layout.free_size.into();
        v.allocator_beg = layout.allocator_beg.into();
        v.sroot_blockset[0] = *sroot_bref;
    } else {
        for b in v.sroot_blockset.iter_mut() {
            b.type_ = BlockrefType::Invalid.into();
        }
    }
    v.update_crcs();
    v
}

/// What a device holds before formatting, for the "refuse without -f" check.
pub fn existing_filesystem(dev: &dyn crate::device::Backend) -> Option<String> {
    let h = read_headers(dev);
    if let Some(best) = h.best() {
        let d = best.data.as_ref().expect("valid copies have data");
        return Some(format!(
            "a HAMMER2 file system (fsid {}, volume {} of {}, mirror_tid {:#x})",
            d.fsid_uuid(),
            d.volu_id,
            d.nvolumes.max(1),
            d.mirror_tid.get()
        ));
    }
    if h.copies.iter().any(|c| {
        matches!(&c.state, CopyState::Invalid(_))
            && c.data
                .as_ref()
                .is_some_and(|d| d.magic.get() == VOLUME_ID_HBO || d.magic.get() == VOLUME_ID_ABO)
    }) {
        return Some("a damaged HAMMER2 volume header".into());
    }
    let at = |off: u64, len: usize| dev.bytes(off, len);
    if at(1080, 2) == Some(&[0x53, 0xef]) {
        return Some("an ext2/3/4 file system".into());
    }
    if at(0, 4) == Some(b"XFSB") {
        return Some("an XFS file system".into());
    }
    if at(0x10040, 8) == Some(b"_BHRfS_M") {
        return Some("a btrfs file system".into());
    }
    None
}

/// Slots past the new volume size where an older header copy could survive.
pub fn stale_header_slots(dev: &dyn crate::device::Backend, plan: &VolumePlan) -> Vec<u64> {
    (0..NUM_VOLHDRS)
        .map(volhdr_offset)
        .filter(|&o| o >= plan.size)
        .filter(|&o| dev.bytes(o, 8).is_some_and(|m| m.iter().any(|&b| b != 0)))
        .collect()
}

/// Writes a planned format to `device` (volumes in layout order). Data first,
/// then a barrier, then the headers, then a barrier; old header slots the
/// layout no longer covers are zeroed with the headers.
pub fn apply(device: &mut Device, layout: &Layout, writes: &[Write], zero: bool) -> Result<()> {
    let zeros = vec![0u8; 1 << 20];
    if zero {
        // As DragonFly does: the root volume's reserved segment and boot/aux
        // areas (in 1 MiB writes; sparse files become dense there).
        let mut off = 0;
        while off < layout.aux_end {
            let n = (layout.aux_end - off).min(zeros.len() as u64);
            device.volume_mut(0).write(off, &zeros[..n as usize])?;
            off += n;
        }
    }
    let (headers, data): (Vec<&Write>, Vec<&Write>) = writes.iter().partition(|w| w.is_header);
    for w in data {
        device.volume_mut(w.volume).write(w.offset, &w.data)?;
    }
    device.sync()?;
    for (vi, plan) in layout.volumes.iter().enumerate() {
        for off in stale_header_slots(device.volume(vi), plan) {
            device.volume_mut(vi).write(off, &zeros[..VOLUME_BYTES])?;
        }
    }
    for w in headers {
        device.volume_mut(w.volume).write(w.offset, &w.data)?;
    }
    device.sync()
}

/// Parses a size with an optional binary suffix (k, m, g, t, p; case-insensitive).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        Some('p') => (&t[..t.len() - 1], 50),
        _ => (t, 0),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(1u64 << shift)).ok_or_else(|| {
        Error::InvalidArgument(format!("bad size {s:?} (a number with an optional K, M, G, T or P)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_matches_the_reference_images() {
        let o = NewfsOptions::default();
        let l = plan(&[10 << 30], &o).unwrap();
        assert_eq!((l.boot_beg, l.boot_end, l.aux_end), (0x40_0000, 0x440_0000, 0x1440_0000));
        assert_eq!(l.free_size, 0x2_6980_0000);
        assert_eq!(l.allocator_beg, 0x1440_0c00);
        assert_eq!(l.volumes[0].header_copies.len(), 4);
        let l = plan(&[1 << 30], &o).unwrap();
        assert_eq!((l.boot_end - l.boot_beg, l.aux_end - l.aux_beg), (32 << 20, 32 << 20));
        assert_eq!(l.free_size, 0x3bc0_0000);
        assert_eq!(l.volumes[0].header_copies, vec![0]);
        let l = plan(&[3 << 30, 2 << 30], &o).unwrap();
        assert_eq!(l.volumes[1].loff, 0xc000_0000);
        assert_eq!(l.free_size, 0x1_2ac0_0000);
        assert_eq!(l.volumes[1].header_copies, vec![0]);
    }

    #[test]
    fn labels_resolve_like_dragonfly() {
        assert_eq!(resolve_labels(&[]).unwrap(), vec!["LOCAL", "DATA"]);
        assert_eq!(resolve_labels(&["none".into()]).unwrap(), vec!["LOCAL"]);
        assert_eq!(resolve_labels(&["ROOT".into(), "HOME".into()]).unwrap(), vec!["LOCAL", "ROOT", "HOME"]);
        assert!(resolve_labels(&["a".into(), "b".into(), "c".into(), "d".into()]).is_err());
        assert!(resolve_labels(&["LOCAL".into()]).is_err());
        assert!(resolve_labels(&["a/b".into()]).is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let o = NewfsOptions::default();
        assert!(plan(&[16 << 20], &o).is_err(), "too small");
        assert!(plan(&[], &o).is_err());
        assert!(plan(&vec![1 << 30; 65], &o).is_err(), "too many volumes");
        assert!(plan(&[(1 << 30) - 1, 1 << 30], &o).is_err(), "non-last volume under 1 GiB");
        assert!(plan(&[1 << 30], &NewfsOptions { boot: Some(5 << 20), ..o.clone() }).is_err());
        assert!(plan(&[1 << 30, 1 << 30], &NewfsOptions { version: 1, ..o.clone() }).is_err());
        assert!(plan(&[1 << 30], &NewfsOptions { version: 3, ..o }).is_err());
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999P").is_err());
    }
}
