//! Structure-aware mutations: the FIELDS of blockrefs, inodes, directory
//! entries, freemap leaves and the volume header set to interesting values
//! (0, 1, max, near max, off by one, values naming other structures), each
//! applied and resealed through a [`Map`] so the tools meet the hostile
//! value itself, not a check-code mismatch.
//!
//! Where the effect of a mutation is certain, the mutation carries what
//! fsck must report ([`Expect`]): e.g. a directory entry naming an inode
//! that does not exist must give `DIRENT_DANGLING`, a changed link count
//! `INODE_NLINKS`. Those rules are HAMMER2's semantics as written in
//! hammer2_disk.h and the fixtures, restated here independently of the
//! library.

mod media;

use super::reseal::{seal_slot, Container, Image, Map, Slot, TreeKind};
use hammer2::format::dirhash::dirhash;
use hammer2::format::{Blockref, BlockrefType as T, ObjType};
use zerocopy::IntoBytes;

/// What fsck must report for a mutation: every group must be met; a group
/// is met by a finding with one of its ids, or, when it is empty, by any
/// finding that is damage (not informational). No groups: nothing certain.
#[derive(Debug, Clone, Default)]
pub struct Expect(pub Vec<Vec<&'static str>>);

impl Expect {
    fn id(&mut self, id: &'static str) {
        self.0.push(vec![id]);
    }
    fn one_of(&mut self, ids: &[&'static str]) {
        self.0.push(ids.to_vec());
    }
    fn damage(&mut self) {
        self.0.push(Vec::new());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The groups not met by `ids` (damage judged through the problem table).
    /// Header-field expectations are met by any of the header problem ids:
    /// fsck splits them by kind (geometry refusing the open, boot/aux areas,
    /// allocator fields, the volume set).
    pub fn unmet(&self, ids: &[&str]) -> Vec<String> {
        const HEADER: &[&str] = &["HDR_FIELD", "HDR_GEOMETRY", "HDR_AREAS", "HDR_ALLOCATOR", "VOLSET"];
        let met = |w: &&str| {
            if HEADER.contains(w) {
                HEADER.iter().any(|f| ids.contains(f))
            } else {
                ids.contains(w)
            }
        };
        let damage = ids.iter().any(|id| {
            hammer2::fsck::PROBLEMS
                .iter()
                .any(|p| p.id.code() == *id && p.severity != hammer2::fsck::Severity::Info)
        });
        self.0
            .iter()
            .filter(|g| if g.is_empty() { !damage } else { !g.iter().any(met) })
            .map(|g| if g.is_empty() { "any damage".to_string() } else { g.join("|") })
            .collect()
    }
}

/// One mutation of one field.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// Structure and field, e.g. "inode.size", for per-class statistics.
    pub class: String,
    /// Where and what, for messages.
    pub what: String,
    pub writes: Vec<(u64, Vec<u8>)>,
    /// A blockref whose own check code is recomputed over what it now points at.
    pub seal: Option<u64>,
    pub expect: Expect,
    /// A hostile magnitude (max, near max, 2^63...): worth running the binaries on.
    pub huge: bool,
}

impl Mutation {
    /// Writes the mutation and reseals the image up to the header.
    pub fn apply(&self, img: &Image, map: &Map) {
        for (off, bytes) in &self.writes {
            img.write(*off, bytes);
        }
        if let Some(pos) = self.seal {
            seal_slot(img, pos);
        }
        let dirty: Vec<u64> = self.writes.iter().map(|w| w.0).chain(self.seal).collect();
        map.reseal(img, &dirty);
    }
}

/// Deterministic xorshift64 generator.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn shuffle<X>(&mut self, v: &mut [X]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

const HUGE: u64 = 1 << 62;

fn is_huge(v: u64) -> bool {
    v >= HUGE
}

/// Interesting values of a 64-bit field holding `orig`.
fn u64_values(orig: u64) -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 63) - 1,
        orig.wrapping_add(1),
        orig.wrapping_sub(1),
        orig.wrapping_mul(2),
    ];
    v.retain(|&x| x != orig);
    v.sort_unstable();
    v.dedup();
    v
}

/// Up to `per_kind` randomly chosen members of each group of `items`.
fn sample<X>(items: &[X], group: impl Fn(&X) -> String, per_kind: usize, rng: &mut Rng) -> Vec<usize> {
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, x) in items.iter().enumerate() {
        groups.entry(group(x)).or_default().push(i);
    }
    let mut out = Vec::new();
    for (_, mut members) in groups {
        rng.shuffle(&mut members);
        members.truncate(per_kind);
        out.extend(members);
    }
    out.sort_unstable();
    out
}

/// Builds the mutations of `img` (mapped as `map`): every field of every
/// structure, or with `per_kind`, of at most that many randomly chosen
/// structures of each kind (blockrefs by tree, type and container; inodes
/// by role, type and embedding), so a large image is covered by kind.
pub fn catalog(img: &Image, map: &Map, per_kind: usize, rng: &mut Rng) -> Vec<Mutation> {
    let mut out = Vec::new();
    let cx = Cx { img, map, inums: map.inums() };
    let slots = sample(
        &map.slots,
        |s| {
            format!(
                "{:?} {} {:?} {} {}",
                s.tree,
                s.bref.kind(),
                s.container,
                s.depth == 0,
                s.bref.dirent().namlen.get() > 64
            )
        },
        per_kind,
        rng,
    );
    for i in slots {
        let s = &map.slots[i];
        cx.blockref(s, &mut out);
        if s.bref.kind() == T::Dirent {
            cx.dirent(s, &mut out);
        }
    }
    let inodes = sample(
        &map.inodes,
        |i| format!("{:?} {} {}", i.role, i.obj_type(), i.data.meta.is_directdata()),
        per_kind,
        rng,
    );
    for i in inodes {
        cx.inode(&map.inodes[i], &mut out);
    }
    for &(off, slot) in &map.leaves {
        cx.leaf(off, &map.slots[slot], &mut out);
    }
    cx.header(&mut out);
    out
}

struct Cx<'a> {
    img: &'a Image,
    map: &'a Map,
    inums: std::collections::BTreeSet<u64>,
}

/// Blockref types that can never sit in a table owned by `c` (topology).
fn never_allowed(c: Container, t: T) -> bool {
    use Container as C;
    match t {
        T::Empty => false,
        T::Inode => matches!(c, C::File | C::Nothing),
        T::Indirect => matches!(c, C::Volume | C::Nothing),
        T::Data => !matches!(c, C::File),
        T::Dirent => matches!(c, C::Volume | C::SuperRoot | C::File | C::Nothing),
        _ => true,
    }
}

/// Whether a topology blockref's key/keybits are certainly wrong in a
/// parent allowing `[lo, hi]`.
fn key_bad(key: u64, keybits: u8, lo: u64, hi: u64) -> bool {
    match keybits {
        k if k > 64 => true,
        64 => key != 0 || lo != 0 || hi != u64::MAX,
        k => {
            let mask = (1u64 << k) - 1;
            key & mask != 0 || key < lo || key + mask > hi
        }
    }
}

/// Valid keybits of a freemap block: leaves 30, nodes 38, 46, 54, 62.
fn freemap_keybits_ok(t: T, keybits: u8) -> bool {
    match t {
        T::FreemapLeaf => keybits == 30,
        T::FreemapNode => matches!(keybits, 38 | 46 | 54 | 62),
        _ => false,
    }
}

impl Cx<'_> {
    /// Whether media at `[off, off+len)` overlaps a reserved area: a zone's
    /// first 4 MiB, the boot and aux areas.
    fn reserved(&self, off: u64, len: u64) -> bool {
        let v = &self.map.vol;
        let (boot, aux_end) = (v.boot_beg.get(), v.aux_end.get());
        off % (1 << 30) < 4 << 20 || (off < aux_end && off + len > boot)
    }

    fn blockref(&self, s: &Slot, out: &mut Vec<Mutation>) {
        let b = s.bref;
        let kind = b.kind();
        let topo = s.tree == TreeKind::Topology;
        let mut push = |field: &str, value: String, nb: Blockref, expect: Expect, huge: bool| {
            out.push(Mutation {
                class: format!("bref.{}.{field}", if topo { "topology" } else { "freemap" }),
                what: format!(
                    "{kind} blockref at {:#x} (parent {:#x}, depth {}): {field} = {value}",
                    s.pos,
                    s.parent.unwrap_or(0),
                    s.depth
                ),
                writes: vec![(s.pos, nb.as_bytes().to_vec())],
                seal: Some(s.pos),
                expect,
                huge,
            })
        };
        let children: Vec<&Slot> = self.map.children(b.offset()).collect();
        let has_media = (10..=16).contains(&b.radix()) && b.offset() + b.physical_size() <= self.map.size;

        // type
        for t in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0x7f, 0xff] {
            if t == b.type_ {
                continue;
            }
            let mut nb = b;
            nb.type_ = t;
            let mut e = Expect::default();
            let nt = T::from(t);
            if topo && never_allowed(s.container, nt) {
                e.id("BREF_TYPE");
            }
            if !topo && !matches!(nt, T::Empty | T::FreemapNode | T::FreemapLeaf) {
                e.id("FREEMAP_STRUCT");
            }
            push("type", nt.to_string(), nb, e, false);
        }

        // keybits
        for kb in [
            0u8,
            1,
            9,
            10,
            16,
            17,
            30,
            38,
            63,
            64,
            65,
            255,
            b.keybits.wrapping_add(1),
            b.keybits.wrapping_sub(1),
        ] {
            if kb == b.keybits {
                continue;
            }
            let mut nb = b;
            nb.keybits = kb;
            let mut e = self.key_expect(s, &children, b.key.get(), kb);
            if topo
                && kind == T::Data
                && s.container == Container::File
                && (10..=16).contains(&kb)
                && has_media
                && b.physical_size() > 1u64 << kb
                && !key_bad(b.key.get(), kb, s.lo, s.hi)
            {
                e.id("DATA_KEYBITS"); // more media than its logical size
            }
            push("keybits", kb.to_string(), nb, e, false);
        }

        // key
        let mut keys = u64_values(b.key.get());
        keys.push(b.key.get() ^ (1 << 63));
        if s.hi < u64::MAX {
            keys.push(s.hi + 1);
        }
        if s.lo > 0 {
            keys.push(s.lo - 1);
        }
        let sibling = match s.parent {
            Some(p) => self.map.children(p).find(|o| o.pos != s.pos),
            None => self.map.slots.iter().find(|o| o.parent.is_none() && o.tree == s.tree && o.pos != s.pos),
        };
        if let Some(sib) = sibling {
            keys.push(sib.bref.key.get());
        }
        keys.retain(|&k| k != b.key.get());
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            let mut nb = b;
            nb.key = k.into();
            let mut e = self.key_expect(s, &children, k, b.keybits);
            if topo && kind == T::Dirent && !key_bad(k, b.keybits, s.lo, s.hi) {
                // The key must be the hash of the name.
                let name = &b.check[..(b.dirent().namlen.get() as usize).min(64)];
                if k & !0x7fff != dirhash(name) & !0x7fff {
                    e.one_of(&["DIRENT_BAD", "BREF_KEY"]);
                }
            }
            if topo && sibling.is_some_and(|o| o.bref.key.get() == k && o.bref.keybits == b.keybits) {
                // Two entries of one table with one key (reported where the
                // table reads them: as a duplicate, or out of order).
                e.one_of(&["BREF_KEY_DUP", "BREF_ORDER", "BREF_KEY", "BREF_TYPE"]);
            }
            if topo
                && kind == T::Inode
                && s.container == Container::PfsRoot
                && b.key.get() >> 63 == 0
                && k >> 63 == 0
            {
                // An index inode is keyed by its number.
                e.one_of(&["INODE_BAD", "BREF_KEY"]);
            }
            push("key", format!("{k:#x}"), nb, e, is_huge(k));
        }

        // data_off: radix, then offset
        let size = self.map.size;
        for r in [0u8, 1, 9, 10, 15, 16, 17, 63] {
            if r == b.radix() {
                continue;
            }
            let mut nb = b;
            nb.data_off = (b.offset() | u64::from(r)).into();
            let mut e = Expect::default();
            if topo {
                let no_media = r == 0 && matches!(kind, T::Inode | T::Indirect);
                if no_media || (r != 0 && !(10..=16).contains(&r) && kind != T::Empty) {
                    e.id("BREF_RADIX");
                } else if r != 0 && b.offset() + (1u64 << r) > size {
                    e.id("BREF_RANGE");
                }
            } else if r == 0 {
                e.id("FREEMAP_STRUCT");
            } else if r != 15 {
                e.id("BREF_RADIX");
            }
            push("radix", r.to_string(), nb, e, false);
        }
        let r = b.radix();
        let others: Vec<u64> =
            {
                // Media of other structures: the first inode, an indirect
                // block, a freemap leaf, a data block (other than this one).
                let mut v = Vec::new();
                for want in [T::Inode, T::Indirect, T::FreemapLeaf, T::Data, T::FreemapNode] {
                    if let Some(o) = self.map.slots.iter().find(|o| {
                        o.bref.kind() == want && o.bref.offset() != b.offset() && o.bref.radix() != 0
                    }) {
                        v.push(o.bref.offset());
                    }
                }
                // An ancestor: the block holding this blockref.
                v.extend(s.parent);
                v
            };
        let mut offs = vec![
            0u64,
            1 << 10,
            size,
            size - 1024,
            0x7fff_ffff_0000_0000,
            !0x3f,
            b.offset() + 1024,
            b.offset().wrapping_sub(1024) & !0x3f,
            self.map.vol.boot_beg.get(),
            self.map.vol.aux_end.get() - 1024,
            (1 << 30) + 65536,
        ];
        offs.extend(others.iter().copied());
        offs.retain(|&o| o != b.offset());
        offs.sort_unstable();
        offs.dedup();
        if r == 0 {
            offs.clear(); // no media: the offset means nothing
        }
        for o in offs {
            let mut nb = b;
            nb.data_off = ((o & !0x3f) | u64::from(r)).into();
            let o = o & !0x3f;
            let len = 1u64 << r;
            let mut e = Expect::default();
            let in_range = o.checked_add(len).is_some_and(|end| end <= size);
            let node = others.contains(&o);
            if topo {
                if (10..=16).contains(&r) {
                    if !in_range {
                        e.id("BREF_RANGE");
                    } else if self.reserved(o, len) {
                        e.id("BREF_RESERVED");
                    } else if matches!(kind, T::Inode | T::Indirect) && node {
                        e.damage();
                    }
                }
            } else if r == 15 {
                if !in_range {
                    e.id("BREF_RANGE");
                } else {
                    // Freemap blocks live in the reserved 64 KiB slots 1..=40 of a zone.
                    let slot = (o % (1 << 30)) / 65536;
                    if o % 65536 != 0 || !(1..41).contains(&slot) {
                        e.id("FREEMAP_STRUCT");
                    } else {
                        e.damage();
                    }
                }
            }
            let label = if node { format!("{o:#x} (another structure)") } else { format!("{o:#x}") };
            push("data_off", label, nb, e, is_huge(o));
        }

        // methods: check (high nibble), compression (low nibble)
        for c in [0u8, 1, 2, 3, 4, 5, 6, 7, 15] {
            if c == b.methods >> 4 {
                continue;
            }
            let mut nb = b;
            nb.methods = (c << 4) | (b.methods & 15);
            let mut e = Expect::default();
            if c >= 6 && has_media {
                e.id("BREF_UNKNOWN_CHECK");
            }
            push("check_method", c.to_string(), nb, e, false);
        }
        for c in [0u8, 1, 2, 3, 4, 15] {
            if c == b.methods & 15 {
                continue;
            }
            let mut nb = b;
            nb.methods = (b.methods & 0xf0) | c;
            let mut e = Expect::default();
            if c >= 4 && kind == T::Data && has_media && topo && s.container == Container::File {
                e.damage(); // data in an unknown compression cannot be read
            }
            push("comp_method", c.to_string(), nb, e, false);
        }

        // statistics (inodes and indirect blocks)
        if topo && matches!(kind, T::Inode | T::Indirect) {
            let st = *b.stats();
            for (field, orig, thresh) in [
                ("data_count", st.data_count.get(), 1u64 << 20),
                ("inode_count", st.inode_count.get(), 1 << 10),
            ] {
                let mut vals = u64_values(orig);
                vals.push(orig.saturating_add(1 << 40));
                vals.retain(|&v| v != orig);
                for v in vals {
                    let mut nb = b;
                    if field == "data_count" {
                        nb.stats_mut().data_count = v.into();
                    } else {
                        nb.stats_mut().inode_count = v.into();
                    }
                    let mut e = Expect::default();
                    // Stats are exact below the header; the super-root may
                    // or may not count its PFS roots' own inodes.
                    if s.depth > 0 || v.abs_diff(orig) > thresh {
                        e.id("BREF_STATS");
                    }
                    push(field, format!("{v:#x}"), nb, e, is_huge(v));
                }
            }
        }

        // transaction ids, flags and small fields: no certain effect
        let hdr_tid = self.map.vol.mirror_tid.get();
        for (field, vals) in [
            ("mirror_tid", vec![0, u64::MAX, hdr_tid + 1, b.mirror_tid.get().wrapping_add(1)]),
            ("modify_tid", vec![0, u64::MAX, hdr_tid + 1]),
            ("update_tid", vec![u64::MAX]),
        ] {
            for v in vals {
                let mut nb = b;
                match field {
                    "mirror_tid" => nb.mirror_tid = v.into(),
                    "modify_tid" => nb.modify_tid = v.into(),
                    _ => nb.update_tid = v.into(),
                }
                push(field, format!("{v:#x}"), nb, Expect::default(), is_huge(v));
            }
        }
        for (field, v) in [("flags", b.flags ^ 1), ("flags", 0xff), ("vradix", 0xff), ("copyid", 0xff)] {
            let mut nb = b;
            match field {
                "flags" => nb.flags = v,
                "vradix" => nb.vradix = v,
                _ => nb.copyid = v,
            }
            push(field, format!("{v:#x}"), nb, Expect::default(), false);
        }
        for v in [0u16, 0xffff] {
            let mut nb = b;
            nb.leaf_count = v.into();
            push("leaf_count", v.to_string(), nb, Expect::default(), false);
        }
        if !topo {
            for (field, v) in [
                ("avail", 0u64),
                ("avail", u64::MAX),
                ("avail", (1 << 30) + 1),
                ("bigmask", 0),
                ("bigmask", u64::from(u32::MAX)),
            ] {
                let mut nb = b;
                if field == "avail" {
                    nb.freemap_check_mut().avail = v.into();
                } else {
                    nb.freemap_check_mut().bigmask = (v as u32).into();
                }
                push(field, format!("{v:#x}"), nb, Expect::default(), is_huge(v));
            }
        }
    }

    /// Findings certain after giving a blockref key `key` and keybits `kb`.
    fn key_expect(&self, s: &Slot, children: &[&Slot], key: u64, kb: u8) -> Expect {
        let b = s.bref;
        let kind = b.kind();
        let mut e = Expect::default();
        if s.tree == TreeKind::Topology {
            let mut bad = key_bad(key, kb, s.lo, s.hi);
            if kind == T::Data && s.container == Container::File && !(10..=16).contains(&kb) {
                bad = true;
            }
            if kind == T::Indirect && !key_bad(key, kb, 0, u64::MAX) {
                // Its children must still lie inside its range.
                let end = if kb >= 64 { u64::MAX } else { key + ((1u64 << kb) - 1) };
                let lo = key;
                bad |= children.iter().any(|c| {
                    let ck = c.bref.key.get();
                    ck < lo || c.bref.key_end() > end
                });
            }
            if bad {
                e.id("BREF_KEY");
            }
        } else if kb >= 64 || !freemap_keybits_ok(kind, kb) || key & ((1u64 << kb) - 1) != 0 {
            e.id("FREEMAP_STRUCT");
        } else if key != b.key.get() || kb != b.keybits {
            e.damage();
        }
        e
    }

    fn dirent(&self, s: &Slot, out: &mut Vec<Mutation>) {
        let b = s.bref;
        let head = *b.dirent();
        let (inum, namlen) = (head.inum.get(), head.namlen.get() as usize);
        let inline = namlen <= 64;
        let name: Vec<u8> = if inline { b.check[..namlen].to_vec() } else { Vec::new() };
        let mut push = |field: &str, value: String, nb: Blockref, expect: Expect, huge: bool| {
            out.push(Mutation {
                class: format!("dirent.{field}"),
                what: format!(
                    "dirent {:?} (inode {inum}) at {:#x}: {field} = {value}",
                    String::from_utf8_lossy(&name),
                    s.pos
                ),
                writes: vec![(s.pos, nb.as_bytes().to_vec())],
                seal: Some(s.pos),
                expect,
                huge,
            })
        };
        let owner_inum = s.owner.map(|o| self.map.inodes[o].data.meta.inum.get());
        let mut inums = u64_values(inum);
        inums.extend([0x7777_0000_0000_0001, 1]);
        inums.extend(owner_inum);
        inums.extend(self.inums.iter().copied().filter(|&i| i != inum).take(3));
        inums.retain(|&i| i != inum);
        inums.sort_unstable();
        inums.dedup();
        for i in inums {
            let mut nb = b;
            nb.dirent_mut().inum = i.into();
            let mut e = Expect::default();
            // The inode it named loses a name. Where the PFS shares subtrees
            // with a snapshot, fsck walks them once (under the first PFS)
            // and can only count names it walked: a lost name then shows as
            // the entry's own finding (dangling, wrong type, or a surplus
            // name on the inode it now names).
            e.one_of(&["INODE_NLINKS", "DIRENT_DANGLING", "DIRENT_BAD"]);
            if !self.inums.contains(&i) {
                e.id("DIRENT_DANGLING");
            }
            push("inum", format!("{i:#x}"), nb, e, is_huge(i));
        }
        for n in [0usize, 1, 63, 64, 65, 255, 256, 0xffff, namlen + 1, namlen.saturating_sub(1)] {
            if n == namlen {
                continue;
            }
            let mut nb = b;
            nb.dirent_mut().namlen = (n as u16).into();
            let mut e = Expect::default();
            let same_hash =
                inline && n <= 64 && n > 0 && dirhash(&b.check[..n]) & !0x7fff == b.key.get() & !0x7fff;
            if !same_hash {
                e.id("DIRENT_BAD");
            }
            push("namlen", n.to_string(), nb, e, n > 255);
        }
        for t in [0u8, 1, 2, 3, 4, 7, 8, 9, 10, 200] {
            if t == head.type_ {
                continue;
            }
            let mut nb = b;
            nb.dirent_mut().type_ = t;
            let mut e = Expect::default();
            if self.inums.contains(&inum) {
                e.id("DIRENT_BAD"); // the entry's type is not its inode's
            }
            push("type", ObjType::from(t).to_string(), nb, e, false);
        }
        if !inline || namlen == 0 {
            return;
        }
        let mut names: Vec<(&str, Vec<u8>)> = vec![
            ("'..'", b"..".to_vec()),
            ("'.'", b".".to_vec()),
            ("'/' first", [&b"/"[..], &name[1..]].concat()),
            ("'a/b'", b"a/b".to_vec()),
            ("NUL inside", [&name[..namlen / 2], &b"\0"[..], &name[namlen / 2 + 1..]].concat()),
            ("0xff first", [&[0xffu8][..], &name[1..]].concat()),
            ("letter changed", {
                let mut n = name.clone();
                n[0] = if n[0] == b'z' { b'y' } else { n[0].wrapping_add(1) };
                n
            }),
        ];
        names.retain(|(_, n)| n.len() <= 64 && !n.is_empty());
        for (label, n) in names {
            // Name only: the key no longer hashes it.
            let mut nb = b;
            nb.check = [0; 64];
            nb.check[..n.len()].copy_from_slice(&n);
            nb.dirent_mut().namlen = (n.len() as u16).into();
            let mut e = Expect::default();
            if dirhash(&n) & !0x7fff != b.key.get() & !0x7fff {
                e.id("DIRENT_BAD");
            }
            push("name", label.to_string(), nb, e.clone(), false);
            // Name and a matching key: only the name itself is wrong (or fine).
            let mut e = Expect::default();
            let hostile = n == b".." || n == b"." || n.contains(&b'/') || n.contains(&0);
            if hostile {
                e.id("DIRENT_BAD");
            }
            nb.key = ((dirhash(&n) & !0x7fff) | (b.key.get() & 0x7fff)).into();
            if key_bad(nb.key.get(), nb.keybits, s.lo, s.hi) {
                e = Expect::default();
                e.id("BREF_KEY");
            }
            push("name+key", label.to_string(), nb, e, false);
        }
    }
}
