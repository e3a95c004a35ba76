//! Mutations of structures stored in media: inodes, freemap leaves and
//! the volume header (mutations of blockrefs and directory entries are in
//! the parent module).

use super::{is_huge, never_allowed, u64_values, Cx, Expect, Mutation};
use crate::common::reseal::{Container, InodeSite, Role, Slot};
use hammer2::format::dirhash::dirhash;
use hammer2::format::{
    BlockrefType as T, BmapData, InodeData, ObjType, VolumeData, OPFLAG_DIRECTDATA, OPFLAG_PFSROOT,
    VOLUME_ID_ABO,
};
use std::mem::offset_of;
use zerocopy::IntoBytes;

impl Cx<'_> {
    /// One mutation of a header field: `bytes` at offset `at` of the copy in use.
    fn hdr_field(
        &self,
        out: &mut Vec<Mutation>,
        class: &str,
        at: usize,
        bytes: Vec<u8>,
        expect: Expect,
        huge: bool,
    ) {
        let what = format!("header copy #{} {class} = 0x{}", self.map.copy, hex_le(&bytes));
        out.push(Mutation {
            class: format!("header.{class}"),
            what,
            writes: vec![(self.map.hdr + at as u64, bytes)],
            seal: None,
            expect,
            huge,
        });
    }

    /// Mutations of one inode's fields.
    pub(super) fn inode(&self, site: &InodeSite, out: &mut Vec<Mutation>) {
        let ip = site.data;
        let m = ip.meta;
        let t = m.obj_type();
        let inum = m.inum.get();
        let idx = self.map.inodes.iter().position(|s| s.off == site.off).unwrap();
        let kids: Vec<&Slot> = self.map.owned_by(idx).collect();
        let data_kids: Vec<&Slot> = kids.iter().copied().filter(|s| s.bref.kind() == T::Data).collect();
        let named = site.role == Role::Index;
        let mut push =
            |field: &str, value: String, f: &dyn Fn(&mut InodeData), expect: Expect, huge: bool| {
                let mut n = ip;
                f(&mut n);
                out.push(Mutation {
                    class: format!("inode.{field}"),
                    what: format!("{t} inode {inum} ({:?}) at {:#x}: {field} = {value}", site.role, site.off),
                    writes: vec![(site.off, n.as_bytes().to_vec())],
                    seal: None,
                    expect,
                    huge,
                })
            };

        // type
        for v in [0u8, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 255] {
            if v == m.type_ {
                continue;
            }
            let nt = ObjType::from(v);
            let mut e = Expect::default();
            let unknown = matches!(nt, ObjType::Unknown(_) | ObjType::Unknown0 | ObjType::Unused08);
            if unknown {
                e.id("INODE_BAD");
            }
            if named {
                e.id("DIRENT_BAD"); // its directory entry says otherwise
            }
            if matches!(site.role, Role::Index | Role::Other) {
                let c = match nt {
                    ObjType::Directory => Container::Dir,
                    ObjType::Regfile | ObjType::Softlink => Container::File,
                    _ => Container::Nothing,
                };
                if kids.iter().any(|k| never_allowed(c, k.bref.kind())) {
                    e.id("BREF_TYPE");
                }
            }
            if matches!(site.role, Role::PfsRoot | Role::SuperRoot) && nt != ObjType::Directory {
                e.damage(); // a PFS root (and the super-root) is a directory
            }
            push("type", nt.to_string(), &|n| n.meta.type_ = v, e, false);
        }

        // op_flags
        for (label, v) in [
            ("^DIRECTDATA", m.op_flags ^ OPFLAG_DIRECTDATA),
            ("^PFSROOT", m.op_flags ^ OPFLAG_PFSROOT),
            ("0xff", 0xff),
            ("0", 0),
        ] {
            if v == m.op_flags {
                continue;
            }
            let mut e = Expect::default();
            let direct = v & OPFLAG_DIRECTDATA != 0;
            if direct
                && !m.is_directdata()
                && (!matches!(t, ObjType::Regfile | ObjType::Softlink) || m.size.get() > 512)
            {
                e.id("INODE_BAD");
            }
            push("op_flags", label.to_string(), &|n| n.meta.op_flags = v, e, false);
        }

        // size
        let size = m.size.get();
        let mut sizes = u64_values(size);
        sizes.extend([512, 513, 65536, u64::MAX - 0xffff, i64::MAX as u64]);
        sizes.retain(|&v| v != size);
        sizes.sort_unstable();
        sizes.dedup();
        for v in sizes {
            let mut e = Expect::default();
            let file = matches!(t, ObjType::Regfile | ObjType::Softlink);
            if file && v > i64::MAX as u64 {
                e.damage(); // no file is larger than the largest off_t
            } else if m.is_directdata() && file && v > 512 {
                e.id("INODE_BAD");
            } else if file && !m.is_directdata() {
                let past = data_kids.iter().any(|d| {
                    let kb = u32::from(d.bref.keybits.clamp(10, 16));
                    // A file of size 0 owns no block.
                    let end =
                        if v == 0 { 0 } else { v.checked_next_multiple_of(1u64 << kb).unwrap_or(u64::MAX) };
                    d.bref.key.get() >= end
                });
                if past {
                    e.id("DATA_PAST_EOF");
                }
            }
            push("size", format!("{v:#x}"), &|n| n.meta.size = v.into(), e, is_huge(v));
        }

        // nlinks
        for v in [0u64, 1, 2, m.nlinks.get().wrapping_add(1), u64::MAX] {
            if v == m.nlinks.get() {
                continue;
            }
            let mut e = Expect::default();
            if named && t != ObjType::Directory {
                e.id("INODE_NLINKS");
            }
            if matches!(site.role, Role::Index | Role::Other) && t == ObjType::Directory && v == 0 {
                e.id("INODE_DIR_NLINKS"); // a directory always has a link
            }
            push("nlinks", format!("{v:#x}"), &|n| n.meta.nlinks = v.into(), e, is_huge(v));
        }

        // inum
        let mut inums = u64_values(inum);
        inums.extend(self.inums.iter().copied().filter(|&i| i != inum).take(2));
        inums.retain(|&i| i != inum);
        inums.sort_unstable();
        inums.dedup();
        for v in inums {
            let mut e = Expect::default();
            if named {
                e.id("INODE_BAD"); // indexed under another number
            }
            push("inum", format!("{v:#x}"), &|n| n.meta.inum = v.into(), e, is_huge(v));
        }

        // name_len
        for v in [0u16, 1, 255, 256, 257, 0xffff, m.name_len.get().wrapping_add(1)] {
            if v == m.name_len.get() {
                continue;
            }
            let mut e = Expect::default();
            if v > 256 {
                e.damage(); // longer than the name field
            }
            if site.role == Role::PfsRoot {
                let mut n = ip;
                n.meta.name_len = v.into();
                let key = self.map.slots[site.slot].bref.key.get();
                if dirhash(n.name()) & !0x7fff != key & !0x7fff {
                    // A PFS root is keyed by its label's hash: the key no
                    // longer hashes the name, and the label's bytes prove
                    // the length that it does hash (fsck then names the
                    // length, not the key).
                    e.one_of(&["DIRENT_BAD", "INODE_BAD"]);
                }
            }
            push("name_len", v.to_string(), &|n| n.meta.name_len = v.into(), e, false);
        }

        // methods for new blocks, and PFS fields: no certain effect
        for v in [0u8, 1, 2, 3, 4, 5, 6, 15, 0xff] {
            if v != m.comp_algo {
                push("comp_algo", v.to_string(), &|n| n.meta.comp_algo = v, Expect::default(), false);
            }
            if v != m.check_algo {
                push("check_algo", v.to_string(), &|n| n.meta.check_algo = v, Expect::default(), false);
            }
        }
        if site.role == Role::PfsRoot || m.pfs_type != 0 {
            for v in [0u8, 1, 3, 6, 8, 9, 10, 0xff] {
                if v != m.pfs_type {
                    push("pfs_type", v.to_string(), &|n| n.meta.pfs_type = v, Expect::default(), false);
                }
            }
            for v in [0u8, 1, 2, 3, 0xff] {
                if v != m.pfs_subtype {
                    push("pfs_subtype", v.to_string(), &|n| n.meta.pfs_subtype = v, Expect::default(), false);
                }
                if v != m.pfs_nmasters {
                    push(
                        "pfs_nmasters",
                        v.to_string(),
                        &|n| n.meta.pfs_nmasters = v,
                        Expect::default(),
                        false,
                    );
                }
            }
            for v in u64_values(m.pfs_inum.get()) {
                push(
                    "pfs_inum",
                    format!("{v:#x}"),
                    &|n| n.meta.pfs_inum = v.into(),
                    Expect::default(),
                    is_huge(v),
                );
            }
            push("pfs_clid", "zero".into(), &|n| n.meta.pfs_clid = [0; 16], Expect::default(), false);
            push(
                "pfs_lsnap_tid",
                "max".into(),
                &|n| n.meta.pfs_lsnap_tid = u64::MAX.into(),
                Expect::default(),
                true,
            );
        }
        for v in [0u32, 0o170777, u32::MAX] {
            let mut e = Expect::default();
            if v != 0 {
                e.id("INODE_MODE"); // type bits of no type, or beyond a mode_t
            }
            push("mode", format!("{v:#o}"), &|n| n.meta.mode = v.into(), e, false);
        }
        for v in [0u64, inum, u64::MAX] {
            let mut e = Expect::default();
            if named && t == ObjType::Directory && v != m.iparent.get() {
                e.id("INODE_IPARENT"); // '..' must be the directory naming it
            }
            push("iparent", format!("{v:#x}"), &|n| n.meta.iparent = v.into(), e, is_huge(v));
        }
        if m.is_directdata() {
            push("embedded", "0xff".into(), &|n| n.u = [0xff; 512], Expect::default(), false);
        }
    }

    /// Mutations of the entries of the freemap leaf at `off` (reached by `slot`).
    pub(super) fn leaf(&self, off: u64, slot: &Slot, out: &mut Vec<Mutation>) {
        let media = self.img.read(off, 32768);
        let table = BmapData::table(&media);
        let key = slot.bref.key.get();
        let v = &self.map.vol;
        let end = self.map.size.min(v.volu_size.get());
        let beg = v.allocator_beg.get();
        let (boot, aux_end) = (v.boot_beg.get(), v.aux_end.get());
        let must_not_be_free =
            |c: u64| c % (1 << 30) < 4 << 20 || c < beg || (c + 16384 > boot && c < aux_end) || c >= end;
        // Entries holding topology media, the first ones in use, and a few
        // others (first, last, first free).
        let seg_of = |i: usize| key + i as u64 * (4 << 20);
        let mut entries: Vec<usize> = (0..table.len())
            .filter(|&i| (0..256).any(|c| self.map.used_chunks.contains(&(seg_of(i) + c * 16384))))
            .take(8)
            .collect();
        entries.extend((0..table.len()).filter(|&i| table[i].blocks_in_use() > 0).take(2));
        entries.extend([0, 255]);
        if let Some(f) =
            (0..table.len()).find(|&i| table[i].blocks_in_use() == 0 && key + i as u64 * (4 << 20) < end)
        {
            entries.push(f);
        }
        entries.sort_unstable();
        entries.dedup();
        for i in entries {
            let e0 = table[i];
            let at = off + i as u64 * 128;
            let seg = key + i as u64 * (4 << 20);
            let mut push = |field: &str, value: String, n: BmapData, expect: Expect, huge: bool| {
                out.push(Mutation {
                    class: format!("freemap_leaf.{field}"),
                    what: format!("freemap leaf {off:#x} entry {i} (4 MiB at {seg:#x}): {field} = {value}"),
                    writes: vec![(at, n.as_bytes().to_vec())],
                    seal: None,
                    expect,
                    huge,
                })
            };
            for v in [0u16, 0xffff, 0x10a, e0.class.get() ^ 1] {
                let mut n = e0;
                n.class = v.into();
                push("class", format!("{v:#x}"), n, Expect::default(), false);
            }
            for v in [-1i32, i32::MIN, i32::MAX, 0, 0x4000, 0x40_0000, 0x40_0001] {
                if v == e0.linear.get() {
                    continue;
                }
                let mut n = e0;
                n.linear = v.into();
                push("linear", v.to_string(), n, Expect::default(), v == i32::MIN || v == i32::MAX);
            }
            let avail = e0.avail.get();
            for v in
                [0u32, u32::MAX, 0x40_0000, 0x40_0001, avail.wrapping_add(0x4000), avail.wrapping_sub(0x4000)]
            {
                if v == avail {
                    continue;
                }
                let mut n = e0;
                n.avail = v.into();
                let mut e = Expect::default();
                e.id("FREEMAP_STRUCT"); // avail is 16 KiB per free block
                push("avail", format!("{v:#x}"), n, e, v == u32::MAX);
            }
            let first_used = (0..8).find(|&w| e0.bitmapq[w].get() != 0).unwrap_or(0);
            let mut words = vec![first_used, 7];
            words.dedup();
            for w in words {
                let orig = e0.bitmapq[w].get();
                for v in
                    [0u64, u64::MAX, 0x5555_5555_5555_5555, 0xaaaa_aaaa_aaaa_aaaa, orig ^ 3, orig ^ (3 << 62)]
                {
                    if v == orig {
                        continue;
                    }
                    let mut n = e0;
                    n.bitmapq[w] = v.into();
                    let mut e = Expect::default();
                    let (mut free_delta, mut unmarked, mut reserved_freed) = (0i64, false, false);
                    for j in 0..32 {
                        let (a, b) = ((orig >> (2 * j)) & 3, (v >> (2 * j)) & 3);
                        let chunk = seg + (w as u64 * 32 + j) * 16384;
                        free_delta += i64::from(b == 0) - i64::from(a == 0);
                        if a != 0 && b == 0 {
                            unmarked |= self.map.used_chunks.contains(&chunk);
                            reserved_freed |= must_not_be_free(chunk);
                        }
                    }
                    if free_delta != 0 || reserved_freed {
                        e.id("FREEMAP_STRUCT");
                    }
                    if unmarked {
                        e.id("FREEMAP_UNMARKED");
                    }
                    push(&format!("bitmap[{w}]"), format!("{v:#018x}"), n, e, false);
                }
            }
        }
    }

    /// Mutations of the fields of the header copy in use.
    pub(super) fn header(&self, out: &mut Vec<Mutation>) {
        let v: &VolumeData = &self.map.vol;
        let size = self.map.size;
        let version = v.version.get();
        let (bb, be, ab, ae) = (v.boot_beg.get(), v.boot_end.get(), v.aux_beg.get(), v.aux_end.get());
        let (asize, afree, abeg) = (v.allocator_size.get(), v.allocator_free.get(), v.allocator_beg.get());
        let total = v.total_size.get();
        let u64f = |x: u64| x.to_le_bytes().to_vec();
        let damage = || {
            let mut e = Expect::default();
            e.damage();
            e
        };
        let id = |i: &'static str| {
            let mut e = Expect::default();
            e.id(i);
            e
        };

        for m in [0u64, VOLUME_ID_ABO, v.magic.get() ^ 1] {
            self.hdr_field(out, "magic", offset_of!(VolumeData, magic), u64f(m), damage(), false);
        }
        // boot and aux areas: their order is fixed
        let areas = [
            ("boot_beg", offset_of!(VolumeData, boot_beg), 0usize),
            ("boot_end", offset_of!(VolumeData, boot_end), 1),
            ("aux_beg", offset_of!(VolumeData, aux_beg), 2),
            ("aux_end", offset_of!(VolumeData, aux_end), 3),
        ];
        for (name, at, k) in areas {
            let cur = [bb, be, ab, ae];
            let mut vals = u64_values(cur[k]);
            vals.extend([bb, ae, abeg + 1]);
            vals.retain(|&x| x != cur[k]);
            vals.sort_unstable();
            vals.dedup();
            for x in vals {
                let mut n = cur;
                n[k] = x;
                let mut e = Expect::default();
                if n[0] > n[1] || n[1] > n[2] || n[2] > n[3] || n[3] > abeg {
                    e.id("HDR_FIELD");
                }
                self.hdr_field(out, name, at, u64f(x), e, is_huge(x));
            }
        }
        let vsize = v.volu_size.get();
        for x in [0u64, 1, vsize - 1, vsize + 1, vsize / 2, vsize.saturating_mul(2), u64::MAX] {
            let e = if x > size {
                id("VOLSET")
            } else if version >= 2 && total == vsize {
                id("HDR_FIELD") // total_size no longer adds up
            } else {
                Expect::default()
            };
            self.hdr_field(out, "volu_size", offset_of!(VolumeData, volu_size), u64f(x), e, is_huge(x));
        }
        for x in [0u32, 1, 2, 3, u32::MAX] {
            if x == version {
                continue;
            }
            let e = if x == 0 || x >= 3 { id("VOLSET") } else { Expect::default() };
            self.hdr_field(
                out,
                "version",
                offset_of!(VolumeData, version),
                x.to_le_bytes().to_vec(),
                e,
                x == u32::MAX,
            );
        }
        if version >= 2 {
            for x in [0u8, 2, 63, 64, 65, 255] {
                if x != v.nvolumes {
                    self.hdr_field(
                        out,
                        "nvolumes",
                        offset_of!(VolumeData, nvolumes),
                        vec![x],
                        id("VOLSET"),
                        false,
                    );
                }
            }
        }
        for x in [1u8, 63, 255] {
            self.hdr_field(out, "volu_id", offset_of!(VolumeData, volu_id), vec![x], id("VOLSET"), false);
        }
        for (name, at, x) in [
            ("flags", offset_of!(VolumeData, flags), u32::MAX.to_le_bytes().to_vec()),
            ("copyid", offset_of!(VolumeData, copyid), vec![0xff]),
            ("freemap_version", offset_of!(VolumeData, freemap_version), vec![0xff]),
            ("peer_type", offset_of!(VolumeData, peer_type), vec![0xff]),
            ("fsid", offset_of!(VolumeData, fsid), vec![0; 16]),
            ("fstype", offset_of!(VolumeData, fstype), vec![0; 16]),
            ("copyexists", offset_of!(VolumeData, copyexists), vec![0xff; 32]),
        ] {
            self.hdr_field(out, name, at, x, Expect::default(), false);
        }
        let mut sizes = u64_values(asize);
        sizes.push(total.wrapping_add(1));
        sizes.retain(|&x| x != asize);
        for x in sizes {
            let e = if x > size.max(total) || x < afree { id("HDR_FIELD") } else { Expect::default() };
            self.hdr_field(
                out,
                "allocator_size",
                offset_of!(VolumeData, allocator_size),
                u64f(x),
                e,
                is_huge(x),
            );
        }
        let mut frees = u64_values(afree);
        frees.extend([asize + 1, afree.wrapping_add(16384), afree.wrapping_sub(16384)]);
        frees.retain(|&x| x != afree);
        frees.sort_unstable();
        frees.dedup();
        for x in frees {
            let e = if x > asize { id("HDR_FIELD") } else { Expect::default() };
            self.hdr_field(
                out,
                "allocator_free",
                offset_of!(VolumeData, allocator_free),
                u64f(x),
                e,
                is_huge(x),
            );
        }
        let mut begs = u64_values(abeg);
        begs.extend([ae - 1, size, abeg + (4 << 20)]);
        begs.retain(|&x| x != abeg);
        begs.sort_unstable();
        begs.dedup();
        for x in begs {
            let e = if x < ae {
                id("HDR_FIELD")
            } else if x > size && !self.map.leaves.is_empty() {
                damage() // every free block now lies below allocator_beg
            } else {
                Expect::default()
            };
            self.hdr_field(
                out,
                "allocator_beg",
                offset_of!(VolumeData, allocator_beg),
                u64f(x),
                e,
                is_huge(x),
            );
        }
        for (name, at, orig) in [
            ("mirror_tid", offset_of!(VolumeData, mirror_tid), v.mirror_tid.get()),
            ("freemap_tid", offset_of!(VolumeData, freemap_tid), v.freemap_tid.get()),
            ("bulkfree_tid", offset_of!(VolumeData, bulkfree_tid), v.bulkfree_tid.get()),
        ] {
            for x in u64_values(orig) {
                self.hdr_field(out, name, at, u64f(x), Expect::default(), is_huge(x));
            }
        }
        if version >= 2 {
            for x in u64_values(total) {
                self.hdr_field(
                    out,
                    "total_size",
                    offset_of!(VolumeData, total_size),
                    u64f(x),
                    id("HDR_FIELD"),
                    is_huge(x),
                );
            }
        }
        let loff = offset_of!(VolumeData, volu_loff);
        if version >= 2 {
            for x in [1u64, 0x4000, 1 << 30, 0x7fff_ffff_0000_0000, 1 << 63, u64::MAX] {
                self.hdr_field(out, "volu_loff[0]", loff, u64f(x), damage(), is_huge(x));
            }
            for x in [0u64, 1] {
                self.hdr_field(out, "volu_loff[1]", loff + 8, u64f(x), Expect::default(), false);
                self.hdr_field(out, "volu_loff[63]", loff + 63 * 8, u64f(x), Expect::default(), false);
            }
        }
    }
}

fn hex_le(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|b| format!("{b:02x}")).collect()
}
