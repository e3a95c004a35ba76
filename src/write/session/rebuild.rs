//! fsck's rebuild primitives: one node of a PFS's tree (an indirect block
//! or an inode, found by its blockref) replaced by another blockref or
//! chain, or cut out; an inode entered into its PFS's index again; and the
//! `/lost+found` directory fsck files unnamed inodes under.
//!
//! The commit contract holds as for every edit: the nodes on the path to
//! the replaced blockref are loaded (and must verify), so the flush gives
//! each a new block with its statistics recomputed from its children; the
//! replaced block is released (the committed header still reaches it, so
//! it only becomes possibly free, as [`crate::write::alloc::Allocator::release`]
//! says); every block the new subtree reaches is marked allocated in the
//! freemap the commit writes (it may come from an older header copy's tree,
//! which a bulkfree may have freed). The statistics of the nodes on the
//! path are recomputed from their children alone: what a loaded node held
//! beyond its children (its bias, see [`crate::write::chain::Chain::bias`])
//! was measured against the damaged entry's figures, which may be anything
//! (a loop names its ancestor's). A repair cuts damage out of the tree,
//! so the commit also rewrites the older header copies once it is durable
//! (as `destroy` does), so that no valid copy names the damage.

use super::{now_us, PfsRef, Session};
use crate::error::{Error, Location, Result};
use crate::format::{encode_methods, Blockref, BlockrefType, CheckMethod, CompMethod, InodeData, ObjType};
use crate::read::walk::{DataBlocks, Engine, Node, Nothing, Options, Step, Visitor};
use crate::write::chain::{Body, Chain, Slot, Table};

/// Name of the directory unnamed inodes are filed under, in a PFS root.
pub const LOST_FOUND: &str = "lost+found";

impl Session {
    /// Replaces the blockref found at `old` (its type, key, keybits and
    /// `data_off`) below inode `owner` of `pfs` (the PFS root for its inode
    /// index and root directory) by `new`, or cuts it out (`None`).
    /// Indirect blocks on the way are loaded by key range; an indirect
    /// block left empty by a cut is dropped with it.
    pub fn fix_replace_node(
        &mut self,
        pfs: &PfsRef,
        owner: u64,
        old: &Location,
        new: Option<Slot>,
    ) -> Result<()> {
        self.operation(|s| {
            s.tx.changes += 1;
            if let Some(slot) = &new {
                let mut marks = Vec::new();
                collect_blocks(&s.fs, slot, &mut marks);
                for (off, kind) in marks {
                    // Blocks below allocator_beg or of kinds the freemap
                    // does not hold are left alone.
                    let _ = s.tx.alloc.mark_allocated(off, kind);
                }
            }
            let fs = &s.fs;
            let chain = super::inode_mut(fs, &mut s.tx.root, pfs, owner)?;
            // Statistics on the path are recomputed from the children alone:
            // what a node held beyond them was measured against the damaged
            // entry (see the module documentation).
            chain.bias = Default::default();
            let table = chain.table_mut().ok_or_else(|| Error::shape("the owner embeds its data"))?;
            let mut new = new;
            let replaced = replace_in(fs, table, old, &mut new, 0)?
                .ok_or_else(|| Error::NotFound(format!("{old} below inode {owner} of PFS {}", pfs.label)))?;
            if replaced.radix() != 0 && replaced.data_off.get() != 0 {
                let _ = s.tx.alloc.release(replaced.data_off.get());
            }
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(())
        })
    }

    /// Enters inode `ip` (a copy read from the media) into the inode index
    /// of `pfs` as a new node under its number: the flush writes it with
    /// the check method of its own `check_algo`. What its blockset names is
    /// kept as found, and marked allocated.
    pub fn fix_insert_inode(&mut self, pfs: &PfsRef, ip: &InodeData) -> Result<()> {
        self.operation(|s| {
            let inum = ip.meta.inum.get();
            s.tx.changes += 1;
            let mut bref = Blockref::zeroed();
            bref.type_ = BlockrefType::Inode.into();
            bref.key = inum.into();
            bref.methods = encode_methods(CheckMethod::from(ip.meta.check_algo & 15), CompMethod::None);
            let chain = Chain::new_inode(bref, *ip);
            let slot = Slot::Node(Box::new(chain));
            let mut marks = Vec::new();
            collect_blocks(&s.fs, &slot, &mut marks);
            for (off, kind) in marks {
                let _ = s.tx.alloc.mark_allocated(off, kind);
            }
            let fs = &s.fs;
            let root = super::pfs_root_mut(fs, &mut s.tx.root, pfs)?;
            root.insert(fs, slot)?;
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(())
        })
    }

    /// Inserts blockrefs found on the media (data blocks of a file, by
    /// key) into the table of inode `owner` of `pfs`, creating indirect
    /// blocks as needed; what they reach is marked allocated.
    pub fn fix_insert_blocks(&mut self, pfs: &PfsRef, owner: u64, brefs: &[Blockref]) -> Result<()> {
        self.operation(|s| {
            s.tx.changes += 1;
            let mut marks = Vec::new();
            walk_blocks(&s.fs, brefs, &mut marks);
            for (off, kind) in marks {
                let _ = s.tx.alloc.mark_allocated(off, kind);
            }
            let fs = &s.fs;
            let chain = super::inode_mut(fs, &mut s.tx.root, pfs, owner)?;
            for b in brefs {
                chain.insert(fs, Slot::Clean(*b))?;
            }
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(())
        })
    }

    /// The `/lost+found` directory of `pfs`, created when missing as
    /// e2fsck creates it (mode 0700, owned by the invoking user, in the
    /// PFS root); an existing directory of that name is reused. Returns
    /// its inode number.
    pub fn fix_lost_found(&mut self, pfs: &PfsRef) -> Result<u64> {
        if let Some(e) = self.lookup(pfs, pfs.root_inum, LOST_FOUND.as_bytes())? {
            if e.obj_type == ObjType::Directory {
                return Ok(e.inum);
            }
            return Err(Error::invalid(format!("/{LOST_FOUND} of PFS {} is not a directory", pfs.label)));
        }
        self.mkdir(pfs, LOST_FOUND, super::Attrs::now(0o700), false)
    }

    /// Names inode `inum` `#INUM` in directory `dir`
    /// (`/lost+found`), and sets its link count to 1 and its `iparent` to
    /// `dir`.
    pub fn fix_reattach(&mut self, pfs: &PfsRef, dir: u64, inum: u64) -> Result<String> {
        self.operation(|s| {
            let name = format!("#{inum}");
            let kind = s.with_inode(pfs, inum, |ip, _| Ok(ip.meta.obj_type()))?;
            let (dkey, check) = s.with_inode(pfs, dir, |dip, dtable| {
                if s.lookup_in(dtable, name.as_bytes())?.is_some() {
                    return Err(Error::AlreadyExists(format!("/{LOST_FOUND}/{name}")));
                }
                Ok((
                    super::free_dirent_key(&s.fs, dtable, name.as_bytes())?,
                    CheckMethod::from(dip.meta.check_algo & 15),
                ))
            })?;
            s.add_dirent(pfs, dir, dkey, name.as_bytes(), inum, kind, check)?;
            let chain = s.inode_mut(pfs, inum)?;
            let ip = chain.inode_mut().ok_or_else(|| Error::shape("not an inode"))?;
            ip.meta.nlinks = 1.into();
            ip.meta.iparent = dir.into();
            ip.meta.ctime = now_us().into();
            s.tx.dirty = true;
            Ok(format!("/{LOST_FOUND}/{name}"))
        })
    }
}

/// Finds `old` in `table` or below it (by key range) and puts `new` in its
/// place; returns the blockref replaced.
fn replace_in(
    fs: &crate::Hammer2,
    table: &mut Table,
    old: &Location,
    new: &mut Option<Slot>,
    depth: usize,
) -> Result<Option<Blockref>> {
    if depth >= crate::read::walk::MAX_DEPTH {
        return Ok(None);
    }
    let old_end =
        old.key.saturating_add(if old.keybits >= 64 { u64::MAX } else { (1u64 << old.keybits) - 1 });
    for i in 0..table.slots.len() {
        let Some(b) = table.slots[i].bref().copied() else { continue };
        if Some(b.kind()) == old.bref_type
            && b.data_off.get() == old.data_off
            && b.key.get() == old.key
            && b.keybits == old.keybits
        {
            table.slots[i] = new.take().unwrap_or(Slot::Empty);
            table.sort();
            return Ok(Some(b));
        }
        if b.kind() == BlockrefType::Indirect && b.key.get() <= old.key && b.key_end() >= old_end {
            table.load_slot(fs, i)?;
            let Slot::Node(c) = &mut table.slots[i] else { continue };
            let bias = std::mem::take(&mut c.bias);
            let Some(sub) = c.table_mut() else { continue };
            if let Some(found) = replace_in(fs, sub, old, new, depth + 1)? {
                if sub.live() == 0 {
                    table.slots[i] = Slot::Empty;
                    table.sort();
                }
                return Ok(Some(found));
            }
            // Not on the path: its statistics stay as they were.
            if let Slot::Node(c) = &mut table.slots[i] {
                c.bias = bias;
            }
        }
    }
    Ok(None)
}

/// Every block a slot reaches: (data_off, type), its own and, below a
/// clean blockref or a chain's table, every node and data block of the
/// media tree (unverified ones too: they are referenced either way).
fn collect_blocks(fs: &crate::Hammer2, slot: &Slot, out: &mut Vec<(u64, BlockrefType)>) {
    match slot {
        Slot::Empty => {}
        Slot::Clean(b) => walk_blocks(fs, std::slice::from_ref(b), out),
        Slot::Node(c) => {
            if let Body::Leaf { .. } = c.body {
                return;
            }
            if let Some(t) = c.table() {
                for s in &t.slots {
                    collect_blocks(fs, s, out);
                }
            }
        }
    }
}

fn walk_blocks(fs: &crate::Hammer2, set: &[Blockref], out: &mut Vec<(u64, BlockrefType)>) {
    struct Marks<'o>(&'o mut Vec<(u64, BlockrefType)>);
    impl<'a> Visitor<'a> for Marks<'_> {
        type Ctx = ();
        type Out = Nothing;
        fn visit(&mut self, n: &Node<'a>, _: &()) -> Step<(), Nothing> {
            if n.bref.radix() != 0 {
                self.0.push((n.bref.data_off.get(), n.bref.kind()));
            }
            if n.children().is_empty() {
                Step::Leaf(Nothing)
            } else {
                Step::Descend(())
            }
        }
    }
    let opts = Options { data: DataBlocks::Skip, ..Options::default() };
    Engine::new(fs, opts).run(set, 0, &(), &mut Marks(out));
}
