//! Chains: the in-memory layer of modified nodes over the mapped media,
//! the write engine's working tree.
//!
//! A [`Table`] is a node's blockref table (an inode's blockset of four, an
//! indirect block's, or the volume header's super-root blockset). Each
//! slot is empty, *clean* (a blockref exactly as on media, nothing below it
//! loaded) or holds a loaded [`Chain`]. Loading a node for modification
//! copies its media into memory and replaces the clean slot by the chain:
//! that is HAMMER2's MODIFIED, and because a loaded node is always
//! rewritten at the next flush, every node on the path from the root to it
//! is loaded too (ONFLUSH: its blockref in the parent must be updated,
//! UPDATE). Nothing is written in place: the flush gives every loaded node a
//! new block (copy-on-write), so a node shared with a snapshot or reachable
//! from an older header copy is never disturbed.
//!
//! Tables keep HAMMER2's key rules: every entry covers `[key, key +
//! 2^keybits)`, ranges in one table are disjoint, an indirect block's
//! entries lie inside its range, and live entries are sorted by key (the
//! kernel's lookups depend on it; a table we change is rewritten sorted,
//! empty slots last). When a table is full, a new indirect block
//! takes over part of its entries exactly as `hammer2_chain_create_indirect`
//! decides: the range covering the table's entries and the new key is cut
//! in half at its top bit, the half holding more entries becomes the new
//! block's range, widened so that the block can hold a full fan-out of the
//! smallest entries below it (the fixtures show the result: 128 inode
//! numbers per indirect block of the inode index, 8 MiB of file per data
//! indirect block, hash ranges of 2^58..2^63 in large directories). New
//! indirect blocks are 16 KiB (128 entries), except the first level under
//! an inode's blockset for non-data keys, which is 4 KiB, as the kernel
//! sizes them. Indirect blocks left empty by deletions are removed; one
//! whose entries fit in its parent's free slots is folded back into it.
//!
//! Reads of clean subtrees go through the traversal engine
//! ([`crate::read::walk`]): every block loaded is bounds-checked and its check
//! code verified, so damage in a path being modified stops the edit with
//! its location before anything is committed.

use crate::error::{CorruptKind, Error, Location, Result};
use crate::format::{Blockref, BlockrefType, InodeData, BLOCKREF_BYTES, INODE_BYTES, PBUFSIZE, SET_COUNT};
use crate::read::tree::Tree;
use crate::read::walk::{DataBlocks, Engine, Flow, Node, Options, Reach, Step, Visitor, MAX_DEPTH};
use crate::Hammer2;

/// Bytes of a new indirect block (128 blockrefs), HAMMER2_IND_BYTES_NOM.
pub const IND_BYTES_NOM: usize = 16384;
/// Bytes of a first-level indirect block for non-data keys, HAMMER2_IND_BYTES_MIN.
pub const IND_BYTES_MIN: usize = 4096;

/// One slot of a table.
#[derive(Clone)]
pub enum Slot {
    Empty,
    /// A blockref as it stands on media.
    Clean(Blockref),
    /// A node loaded (or created) for modification.
    Node(Box<Chain>),
}

impl Slot {
    /// The blockref this slot holds (for a chain, as last written: its
    /// `data_off` is the old copy's, or 0 for a new node).
    pub fn bref(&self) -> Option<&Blockref> {
        match self {
            Slot::Empty => None,
            Slot::Clean(b) => Some(b),
            Slot::Node(c) => Some(&c.bref),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Slot::Empty)
    }

    fn key(&self) -> u64 {
        self.bref().map_or(0, |b| b.key.get())
    }

    fn key_end(&self) -> u64 {
        self.bref().map_or(0, |b| b.key_end())
    }

    fn keybits(&self) -> u8 {
        self.bref().map_or(0, |b| b.keybits)
    }

    fn is_indirect(&self) -> bool {
        self.bref().is_some_and(|b| b.kind() == BlockrefType::Indirect)
    }
}

/// A node loaded for modification.
#[derive(Clone)]
pub struct Chain {
    /// Type, key, keybits, methods and the rest; `data_off` is where the
    /// node was loaded from (0 for a new node) until the flush rewrites it.
    pub bref: Blockref,
    pub body: Body,
    /// What the loaded blockref's statistics held beyond the sum of its
    /// children's contributions (see [`contribution`]), kept when the flush
    /// recomputes them. Writers differ in one place: the kernel counts the
    /// inode of a PFS root it creates later (snapshot, `P=create`) in the
    /// super-root's statistics and maintains them incrementally, so a
    /// recomputation that dropped that difference would make its next
    /// change (deleting that PFS) leave wrong statistics behind.
    pub bias: Bias,
}

/// Statistics a loaded node held beyond its children's sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bias {
    pub data: i128,
    pub inodes: i128,
}

/// What a blockref contributes to its parent's statistics: (data bytes,
/// inodes, leaves). An inode or indirect block passes up its own media and
/// its statistics (an inode counts itself); a PFS root passes its
/// statistics only (the convention of the PFS roots created with the file
/// system); leaves their media.
pub fn contribution(b: &Blockref) -> (u64, u64, u64) {
    let own = b.physical_size();
    let s = b.stats();
    match b.kind() {
        BlockrefType::Inode if b.flags & crate::format::BREF_FLAG_PFSROOT != 0 => {
            (s.data_count.get(), s.inode_count.get(), u64::from(b.leaf_count.get()))
        }
        BlockrefType::Inode => (
            own.saturating_add(s.data_count.get()),
            s.inode_count.get().saturating_add(1),
            u64::from(b.leaf_count.get()).max(1),
        ),
        BlockrefType::Indirect => {
            (own.saturating_add(s.data_count.get()), s.inode_count.get(), u64::from(b.leaf_count.get()))
        }
        _ => (own, 0, 1),
    }
}

impl Bias {
    /// The bias of `bref` over the blockrefs of its table.
    fn of(bref: &Blockref, table: &[Blockref]) -> Bias {
        let (mut data, mut inodes) = (0i128, 0i128);
        for b in table.iter().filter(|b| b.kind() != BlockrefType::Empty) {
            let (d, i, _) = contribution(b);
            data += i128::from(d);
            inodes += i128::from(i);
        }
        let s = bref.stats();
        Bias { data: i128::from(s.data_count.get()) - data, inodes: i128::from(s.inode_count.get()) - inodes }
    }
}

/// What a chain holds.
#[derive(Clone)]
pub enum Body {
    /// An inode; `table` is its blockset (empty when it embeds data).
    Inode { ip: Box<InodeData>, table: Table },
    /// An indirect block's table.
    Indirect { table: Table },
    /// A leaf with new media (a directory entry's name block): physical bytes.
    Leaf { media: Vec<u8> },
}

impl Chain {
    /// Inserts `item` into this chain's table (see [`Table::insert`]).
    pub fn insert(&mut self, fs: &Hammer2, item: Slot) -> Result<()> {
        let methods = self.bref.methods;
        let table =
            self.table_mut().ok_or_else(|| Error::InvalidArgument("the node holds no table".into()))?;
        table.insert(fs, methods, item)
    }

    /// A new inode chain (blockref fields other than type/key are set at flush).
    pub fn new_inode(bref: Blockref, ip: InodeData) -> Chain {
        let table =
            if ip.meta.is_directdata() { Table::with_capacity(0) } else { Table::from_brefs(ip.blockset()) };
        Chain { bref, body: Body::Inode { ip: Box::new(ip), table }, bias: Bias::default() }
    }

    pub fn inode(&self) -> Option<&InodeData> {
        match &self.body {
            Body::Inode { ip, .. } => Some(ip),
            _ => None,
        }
    }

    pub fn inode_mut(&mut self) -> Option<&mut InodeData> {
        match &mut self.body {
            Body::Inode { ip, .. } => Some(ip),
            _ => None,
        }
    }

    pub fn table(&self) -> Option<&Table> {
        match &self.body {
            Body::Inode { table, .. } | Body::Indirect { table } => Some(table),
            Body::Leaf { .. } => None,
        }
    }

    pub fn table_mut(&mut self) -> Option<&mut Table> {
        match &mut self.body {
            Body::Inode { table, .. } | Body::Indirect { table } => Some(table),
            Body::Leaf { .. } => None,
        }
    }

    /// Loads the node `bref` points at, verifying its media.
    pub fn load(fs: &Hammer2, bref: &Blockref, loc: &Location) -> Result<Chain> {
        let tree = Tree::new(fs);
        let media = tree.media_at(bref, loc)?;
        let body = match bref.kind() {
            BlockrefType::Inode => {
                let ip = InodeData::from_bytes(media).ok_or_else(|| {
                    Error::corrupt(
                        CorruptKind::BadInode(format!("{} bytes, need {INODE_BYTES}", media.len())),
                        loc.clone(),
                    )
                })?;
                let table = if ip.meta.is_directdata() {
                    Table::with_capacity(0)
                } else {
                    Table::from_brefs(ip.blockset())
                };
                Body::Inode { ip: Box::new(*ip), table }
            }
            BlockrefType::Indirect => Body::Indirect { table: Table::from_brefs(Blockref::table(media)) },
            other => {
                return Err(Error::corrupt(
                    CorruptKind::WrongType { found: other.to_string(), expected: "inode or indirect block" },
                    loc.clone(),
                ))
            }
        };
        let bias = match &body {
            Body::Inode { ip, .. } if !ip.meta.is_directdata() => Bias::of(bref, ip.blockset()),
            Body::Indirect { .. } => Bias::of(bref, Blockref::table(media)),
            _ => Bias::of(bref, &[]),
        };
        Ok(Chain { bref: *bref, body, bias })
    }
}

/// What [`Table::scan`] calls for each leaf: the blockref, its chain when
/// loaded, and where it was found.
pub type ScanVisit<'v> = dyn FnMut(&Blockref, Option<&Chain>, &Location) -> Result<Flow> + 'v;

/// A node's blockref table.
#[derive(Clone, Default)]
pub struct Table {
    pub slots: Vec<Slot>,
    /// `data_off` of the node holding the table as it was read (0 for the
    /// volume header and for new nodes), for error locations.
    pub parent_off: u64,
}

/// Where a table lives, for the sizing of new indirect blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The volume header's blockset or an inode's.
    Blockset,
    Indirect,
}

/// A blockref found by a lookup, and whether it is loaded.
pub struct Found {
    pub bref: Blockref,
    /// The inode, when the blockref is an inode (loaded or read).
    pub inode: Option<Box<InodeData>>,
}

/// A leaf found by [`Table::find`]: loaded, or as on media.
pub enum Entry<'t> {
    Loaded(&'t Chain),
    /// As on media, with where it was found.
    Clean(Blockref, Location),
}

impl Entry<'_> {
    /// A copy of the inode it holds.
    pub fn inode(&self, fs: &Hammer2) -> Result<InodeData> {
        match self {
            Entry::Loaded(c) => {
                c.inode().copied().ok_or_else(|| Error::InvalidArgument("not an inode".into()))
            }
            Entry::Clean(b, loc) => Ok(*Tree::new(fs).inode(b, loc)?),
        }
    }

    /// Its table (an inode's blockset, empty when it embeds data):
    /// borrowed when loaded, read from media otherwise.
    pub fn table(&self, fs: &Hammer2) -> Result<TableRef<'_>> {
        match self {
            Entry::Loaded(c) => Ok(c.table().map_or(TableRef::Owned(Table::default()), TableRef::Loaded)),
            Entry::Clean(b, loc) => {
                let ip = Tree::new(fs).inode(b, loc)?;
                Ok(TableRef::Owned(if ip.meta.is_directdata() {
                    Table::with_capacity(0)
                } else {
                    Table::from_brefs_at(ip.blockset(), b.data_off.get())
                }))
            }
        }
    }
}

/// A table borrowed from a loaded chain, or read from media.
pub enum TableRef<'t> {
    Loaded(&'t Table),
    Owned(Table),
}

impl std::ops::Deref for TableRef<'_> {
    type Target = Table;
    fn deref(&self) -> &Table {
        match self {
            TableRef::Loaded(t) => t,
            TableRef::Owned(t) => t,
        }
    }
}

impl Table {
    pub fn with_capacity(n: usize) -> Self {
        Table { slots: vec![Slot::Empty; n], parent_off: 0 }
    }

    pub fn from_brefs(brefs: &[Blockref]) -> Self {
        Self::from_brefs_at(brefs, 0)
    }

    /// The table `brefs` read from the node at `parent_off`.
    pub fn from_brefs_at(brefs: &[Blockref], parent_off: u64) -> Self {
        Table {
            slots: brefs
                .iter()
                .map(|b| if b.kind() == BlockrefType::Empty { Slot::Empty } else { Slot::Clean(*b) })
                .collect(),
            parent_off,
        }
    }

    /// The blockrefs as they stand (chains with their current blockref).
    pub fn brefs(&self) -> Vec<Blockref> {
        self.slots.iter().map(|s| s.bref().copied().unwrap_or_else(Blockref::zeroed)).collect()
    }

    pub fn live(&self) -> usize {
        self.slots.iter().filter(|s| !s.is_empty()).count()
    }

    /// Orders the entries by key, empty slots last. HAMMER2's lookups
    /// (`hammer2_base_find`) rely on live entries being sorted: the kernel
    /// scans from a cached index and stops at the first key past the one
    /// sought, so an out-of-order entry is invisible to it.
    pub(crate) fn sort(&mut self) {
        self.slots.sort_by_key(|s| (s.is_empty(), s.key()));
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Slot::is_empty)
    }

    /// Visits every leaf (non-indirect blockref) whose range meets
    /// `[lo, hi]`, in memory and, below clean indirect blocks, through the
    /// traversal engine. Loaded inodes are handed over as chains.
    pub fn scan(&self, fs: &Hammer2, lo: u64, hi: u64, visit: &mut ScanVisit<'_>) -> Result<Flow> {
        self.scan_depth(fs, lo, hi, 0, visit)
    }

    fn scan_depth(
        &self,
        fs: &Hammer2,
        lo: u64,
        hi: u64,
        depth: usize,
        visit: &mut ScanVisit<'_>,
    ) -> Result<Flow> {
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(CorruptKind::TooDeep(MAX_DEPTH), Location::default()));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(b) = slot.bref() else { continue };
            if b.key_end() < lo || b.key.get() > hi {
                continue;
            }
            let loc = Location::of(b, self.parent_off, i);
            let flow = match slot {
                Slot::Node(c) => match &c.body {
                    Body::Indirect { table } => table.scan_depth(fs, lo, hi, depth + 1, visit)?,
                    _ => visit(b, Some(c), &loc)?,
                },
                Slot::Clean(b) if b.kind() == BlockrefType::Indirect => {
                    let tree = Tree::new(fs);
                    tree.scan_nodes(std::slice::from_ref(b), self.parent_off, lo, hi, &mut |n| {
                        visit(n.bref, None, &n.location())
                    })?
                }
                Slot::Clean(b) => visit(b, None, &loc)?,
                Slot::Empty => Flow::Continue,
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// The leaf with exactly `key` and type `kind`, with its inode when it is one.
    pub fn lookup(&self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<Found>> {
        let mut found = None;
        let mut failure = None;
        self.scan(fs, key, key, &mut |b, chain, loc| {
            if b.kind() != kind || b.key.get() != key {
                return Ok(Flow::Continue);
            }
            let inode = match (kind, chain) {
                (BlockrefType::Inode, Some(c)) => c.inode().map(|ip| Box::new(*ip)),
                (BlockrefType::Inode, None) => match Tree::new(fs).inode(b, loc) {
                    Ok(ip) => Some(Box::new(*ip)),
                    Err(e) => {
                        failure = Some(e);
                        return Ok(Flow::Stop);
                    }
                },
                _ => None,
            };
            found = Some(Found { bref: *b, inode });
            Ok(Flow::Stop)
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// The leaf `key`/`kind` (not an indirect block), without loading anything.
    pub fn find(&self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<Entry<'_>>> {
        self.locate(fs, key, kind, &mut Vec::new(), 0)
    }

    /// The chain of the leaf `key`/`kind`, loading it and every indirect
    /// block above it for modification. `None` when there is no such leaf.
    pub fn get_mut(&mut self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<&mut Chain>> {
        let Some(path) = self.find_path(fs, key, kind)? else { return Ok(None) };
        let mut table = self;
        let last = path.len() - 1;
        for (i, &slot) in path.iter().enumerate() {
            table.load_slot(fs, slot)?;
            let Slot::Node(chain) = &mut table.slots[slot] else { unreachable!("loaded above") };
            if i == last {
                return Ok(Some(chain));
            }
            table = chain.table_mut().expect("an indirect block on the path");
        }
        unreachable!("the path ends at the leaf")
    }

    /// The slot of the leaf `key`/`kind`, loading every indirect block
    /// above it (not the leaf itself).
    pub fn slot_mut(&mut self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<&mut Slot>> {
        let Some(path) = self.find_path(fs, key, kind)? else { return Ok(None) };
        let mut table = self;
        let (last, above) = path.split_last().expect("paths are not empty");
        for &slot in above {
            table.load_slot(fs, slot)?;
            let Slot::Node(chain) = &mut table.slots[slot] else { unreachable!("loaded above") };
            table = chain.table_mut().expect("an indirect block on the path");
        }
        Ok(Some(&mut table.slots[*last]))
    }

    /// Replaces a clean slot by its loaded chain.
    pub(crate) fn load_slot(&mut self, fs: &Hammer2, slot: usize) -> Result<()> {
        if let Slot::Clean(b) = &self.slots[slot] {
            let chain = Chain::load(fs, b, &Location::of(b, self.parent_off, slot))?;
            self.slots[slot] = Slot::Node(Box::new(chain));
        }
        Ok(())
    }

    /// Slot indices from this table down to the leaf `key`/`kind`.
    fn find_path(&self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<Vec<usize>>> {
        let mut path = Vec::new();
        Ok(self.locate(fs, key, kind, &mut path, 0)?.map(|_| path))
    }

    /// The one descent to a leaf: slot indices from this table down to the
    /// leaf `key`/`kind` are pushed on `path`, and the leaf is returned.
    fn locate(
        &self,
        fs: &Hammer2,
        key: u64,
        kind: BlockrefType,
        path: &mut Vec<usize>,
        depth: usize,
    ) -> Result<Option<Entry<'_>>> {
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(CorruptKind::TooDeep(MAX_DEPTH), Location::default()));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(b) = slot.bref() else { continue };
            if b.key.get() > key || b.key_end() < key {
                continue;
            }
            if !slot.is_indirect() {
                if b.kind() != kind || b.key.get() != key {
                    continue;
                }
                path.push(i);
                return Ok(Some(match slot {
                    Slot::Node(c) => Entry::Loaded(c),
                    _ => Entry::Clean(*b, Location::of(b, self.parent_off, i)),
                }));
            }
            path.push(i);
            let found = match slot {
                Slot::Node(c) => c.table().expect("indirect").locate(fs, key, kind, path, depth + 1)?,
                Slot::Clean(b) => locate_on_media(fs, b, self.parent_off, key, kind, path)?
                    .map(|(b, loc)| Entry::Clean(b, loc)),
                Slot::Empty => None,
            };
            if found.is_some() {
                return Ok(found);
            }
            path.pop();
        }
        Ok(None)
    }

    /// Inserts `item` (a clean blockref or a chain) into this table,
    /// descending into the indirect block covering its key and creating
    /// indirect blocks when a table is full. A blockset covers every key.
    /// `owner_methods` are the `methods` of the blockref owning the table:
    /// a new indirect block takes its parent's check method, as
    /// `hammer2_chain_create_indirect` does.
    pub fn insert(&mut self, fs: &Hammer2, owner_methods: u8, item: Slot) -> Result<()> {
        self.insert_depth(fs, TableKind::Blockset, 64, owner_methods, item, 0)
    }

    fn insert_depth(
        &mut self,
        fs: &Hammer2,
        kind: TableKind,
        range_bits: u32,
        owner_methods: u8,
        item: Slot,
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(CorruptKind::TooDeep(MAX_DEPTH), Location::default()));
        }
        let (key, end) = (item.key(), item.key_end());
        loop {
            // An indirect block covering the whole item takes it.
            if let Some(i) =
                self.slots.iter().position(|s| s.is_indirect() && s.key() <= key && s.key_end() >= end)
            {
                self.load_slot(fs, i)?;
                let Slot::Node(c) = &mut self.slots[i] else { unreachable!("loaded above") };
                let (bits, methods) = (c.bref.keybits as u32, c.bref.methods);
                let sub = c.table_mut().expect("indirect");
                return sub.insert_depth(fs, TableKind::Indirect, bits, methods, item, depth + 1);
            }
            if let Some(i) = self.free_slot() {
                self.slots[i] = item;
                self.sort();
                return Ok(());
            }
            if self.slots.is_empty() {
                return Err(Error::InvalidArgument("cannot insert into a table without slots".into()));
            }
            self.split(kind, range_bits, owner_methods, &item)?;
        }
    }

    /// Moves part of a full table's entries into a new indirect block
    /// (see the module docs for how its range and size are chosen).
    fn split(&mut self, kind: TableKind, range_bits: u32, owner_methods: u8, item: &Slot) -> Result<()> {
        let new_key = item.key();
        let is_data = item.bref().is_some_and(|b| b.kind() == BlockrefType::Data);
        // The range covering every entry and the new key, cut at its top bit.
        let mut cover = 0u32;
        for s in self.slots.iter().filter(|s| !s.is_empty()).chain(std::iter::once(item)) {
            cover = cover.max(s.keybits() as u32);
            while cover < 64 && (s.key() ^ new_key) >> cover != 0 {
                cover += 1;
            }
        }
        if cover == 0 {
            return Err(Error::corrupt(CorruptKind::DuplicateKey { key: new_key }, Location::default()));
        }
        let half = cover - 1;
        let bit = 1u64 << half;
        let (mut lo_n, mut hi_n) = (0usize, 0usize);
        for s in self.slots.iter().filter(|s| !s.is_empty()).chain(std::iter::once(item)) {
            if (s.keybits() as u32) < half + 1 && s.key() & bit != 0 {
                hi_n += 1;
            } else {
                lo_n += 1;
            }
        }
        let base = new_key & !((bit << 1).wrapping_sub(1));
        let nominal = if is_data || kind == TableKind::Indirect { IND_BYTES_NOM } else { IND_BYTES_MIN };
        // At least as large as this table (other writers make 64 KiB
        // indirect blocks): whatever half moves must fit.
        let bytes =
            nominal.max((self.slots.len() * BLOCKREF_BYTES).next_power_of_two()).min(PBUFSIZE as usize);
        let fanout_bits = (bytes / BLOCKREF_BYTES).trailing_zeros();
        let halves = if hi_n > lo_n { [base | bit, base] } else { [base, base | bit] };
        for start in halves {
            // Widen for a full fan-out of the smallest entries it takes.
            let inside = |s: &Slot, kb: u32| {
                let mask = if kb >= 64 { u64::MAX } else { (1u64 << kb) - 1 };
                let lo = start & !mask;
                !s.is_empty() && s.key() >= lo && s.key_end() <= lo | mask && (s.keybits() as u32) < kb
            };
            let smallest = self.slots.iter().filter(|s| inside(s, half)).map(|s| s.keybits() as u32).min();
            let mut kb = half;
            if let Some(small) = smallest {
                let want = (small + fanout_bits).min(range_bits.saturating_sub(1)).min(63);
                // Widening must not cut through an entry that stays.
                if want > kb
                    && self.slots.iter().all(|s| s.is_empty() || inside(s, want) || !overlaps(s, start, want))
                    && (item.keybits() as u32) < want
                {
                    kb = want;
                }
            }
            let mask = if kb >= 64 { u64::MAX } else { (1u64 << kb) - 1 };
            let lo = start & !mask;
            let moving: Vec<usize> = (0..self.slots.len()).filter(|&i| inside(&self.slots[i], kb)).collect();
            let takes_item = new_key >= lo && item.key_end() <= lo | mask;
            if moving.len() < 2 && !(moving.len() == 1 && takes_item) {
                continue; // would free nothing: try the other half
            }
            if self.slots.iter().any(|s| !s.is_empty() && overlaps(s, lo, kb) && !inside(s, kb)) {
                continue;
            }
            let mut table = Table::with_capacity(bytes / BLOCKREF_BYTES);
            for (n, i) in moving.iter().enumerate() {
                table.slots[n] = std::mem::replace(&mut self.slots[*i], Slot::Empty);
            }
            let mut bref = Blockref::zeroed();
            bref.type_ = BlockrefType::Indirect.into();
            bref.key = lo.into();
            bref.keybits = kb as u8;
            bref.methods = owner_methods & 0xf0;
            table.sort();
            let at = self.free_slot().expect("entries were moved out");
            self.slots[at] =
                Slot::Node(Box::new(Chain { bref, body: Body::Indirect { table }, bias: Bias::default() }));
            self.sort();
            return Ok(());
        }
        Err(Error::corrupt(CorruptKind::TableFull { key: new_key }, Location::default()))
    }

    /// Removes the leaf `key`/`kind` and returns it; indirect blocks left
    /// empty on the way are removed, and one whose entries fit in its
    /// parent's free slots is folded into it.
    pub fn remove(&mut self, fs: &Hammer2, key: u64, kind: BlockrefType) -> Result<Option<Slot>> {
        let Some(path) = self.find_path(fs, key, kind)? else { return Ok(None) };
        Ok(Some(self.remove_path(fs, &path)?))
    }

    fn remove_path(&mut self, fs: &Hammer2, path: &[usize]) -> Result<Slot> {
        let slot = path[0];
        if path.len() == 1 {
            return Ok(std::mem::replace(&mut self.slots[slot], Slot::Empty));
        }
        self.load_slot(fs, slot)?;
        let Slot::Node(c) = &mut self.slots[slot] else { unreachable!("loaded above") };
        let sub = c.table_mut().expect("indirect");
        let removed = sub.remove_path(fs, &path[1..])?;
        let live = sub.live();
        if live == 0 {
            self.slots[slot] = Slot::Empty;
        } else if live <= self.slots.iter().filter(|s| s.is_empty()).count() + 1 {
            // Fold the indirect block's entries back into this table.
            let Slot::Node(c) = std::mem::replace(&mut self.slots[slot], Slot::Empty) else { unreachable!() };
            let Body::Indirect { table } = c.body else { unreachable!("indirect") };
            for s in table.slots.into_iter().filter(|s| !s.is_empty()) {
                let at = self.free_slot().expect("counted above");
                self.slots[at] = s;
            }
            self.sort();
        }
        Ok(removed)
    }
}

fn overlaps(s: &Slot, start: u64, kb: u32) -> bool {
    let mask = if kb >= 64 { u64::MAX } else { (1u64 << kb) - 1 };
    let lo = start & !mask;
    s.key() <= lo | mask && s.key_end() >= lo
}

/// Finds the path below a clean indirect block to the leaf `key`/`kind`
/// with the traversal engine (bounded; shared nodes are not re-entered).
fn locate_on_media(
    fs: &Hammer2,
    b: &Blockref,
    parent_off: u64,
    key: u64,
    kind: BlockrefType,
    path: &mut Vec<usize>,
) -> Result<Option<(Blockref, Location)>> {
    struct PathFinder {
        key: u64,
        kind: BlockrefType,
        stack: Vec<usize>,
        found: Option<(Blockref, Location)>,
        error: Option<Error>,
    }
    impl<'a> Visitor<'a> for PathFinder {
        type Ctx = ();
        type Out = crate::read::walk::Nothing;
        fn visit(&mut self, n: &Node<'a>, _: &()) -> Step<(), crate::read::walk::Nothing> {
            self.stack.truncate(n.depth);
            self.stack.push(n.index);
            if n.bref.kind() == self.kind
                && n.bref.key.get() == self.key
                && n.bref.kind() != BlockrefType::Indirect
            {
                self.found = Some((*n.bref, n.location()));
                return Step::Stop;
            }
            if n.bref.kind() == BlockrefType::Indirect {
                if let Err(e) = n.result() {
                    self.error = Some(e);
                    return Step::Stop;
                }
                if !matches!(n.reach, Reach::Shared { .. }) {
                    return Step::Descend(());
                }
            }
            Step::Leaf(crate::read::walk::Nothing)
        }
    }
    let mut v = PathFinder { key, kind, stack: Vec::new(), found: None, error: None };
    let opts = Options { data: DataBlocks::Skip, ..Options::scan(key, key) };
    Engine::new(fs, opts).run(std::slice::from_ref(b), parent_off, &(), &mut v);
    if let Some(e) = v.error {
        return Err(e);
    }
    if v.found.is_some() {
        // stack[0] is the clean block itself (already on the path).
        path.extend_from_slice(&v.stack[1..]);
    }
    Ok(v.found)
}

/// An inode's blockset as a table of its four slots.
pub fn blockset_table(set: &[Blockref]) -> Table {
    debug_assert!(set.len() <= SET_COUNT);
    Table::from_brefs(set)
}
