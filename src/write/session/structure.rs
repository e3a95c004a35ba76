//! Structure repairs for fsck: nodes of the tree addressed by where they
//! lie on media rather than by inode number or name, because what is
//! repaired here is the addressing itself (a table out of order, an entry
//! under the wrong key, statistics that disagree with the subtree).
//!
//! A node is named by its [`NodePath`]: the `data_off` of every node from
//! an entry of the volume header's super-root blockset down to it, as the
//! committed tree holds them. Loading a path makes every node on it part of
//! the transaction, so the flush rewrites them all (their statistics and
//! check codes recomputed, copy-on-write); the media below stays as it is.
//! Each primitive is one operation of the session and sets the older header
//! copies to be rewritten after the commit (they still name the damage,
//! see [`super::sync_header_copies`]).

use super::dir::{dirent_name, free_dirent_key};
use super::Session;
use crate::error::{Error, Location, Result};
use crate::format::{Blockref, BlockrefType};
use crate::write::chain::{Chain, Slot, Table};
use crate::Hammer2;

/// The `data_off` of every node from the super-root blockset down to one
/// node; empty names the super-root blockset itself (the volume header's
/// table).
pub type NodePath = [u64];

/// Loads every node of `path` below `table` and returns the table of the
/// last one (`table` itself for an empty path).
fn table_at<'t>(fs: &Hammer2, mut table: &'t mut Table, path: &NodePath) -> Result<&'t mut Table> {
    for &off in path {
        let chain = chain_in(fs, table, off)?;
        table = chain.table_mut().ok_or_else(|| Error::shape("a node on the path holds no table"))?;
    }
    Ok(table)
}

/// The chain of the entry of `table` whose blockref has `data_off`, loaded.
fn chain_in<'t>(fs: &Hammer2, table: &'t mut Table, off: u64) -> Result<&'t mut Chain> {
    let i =
        table.slots.iter().position(|s| s.bref().is_some_and(|b| b.data_off.get() == off)).ok_or_else(
            || Error::NotFound(format!("node at {off:#x} (the table changed since the check)")),
        )?;
    if let Slot::Clean(b) = &table.slots[i] {
        let chain = Chain::load(fs, b, &Location::of(b, table.parent_off, i))?;
        table.slots[i] = Slot::Node(Box::new(chain));
    }
    match &mut table.slots[i] {
        Slot::Node(c) => Ok(c),
        _ => unreachable!("loaded above"),
    }
}

/// The index in `table` of the entry `at` names: its slot when that still
/// holds it, else the one entry with its type, key and `data_off`.
fn entry_index(table: &Table, at: &Location) -> Result<usize> {
    let same = |s: &Slot| {
        s.bref().is_some_and(|b| {
            Some(b.kind()) == at.bref_type && b.key.get() == at.key && b.data_off.get() == at.data_off
        })
    };
    if table.slots.get(at.index).is_some_and(same) {
        return Ok(at.index);
    }
    table
        .slots
        .iter()
        .position(same)
        .ok_or_else(|| Error::NotFound(format!("entry {at} (the table changed)")))
}

/// Orders a table's live entries by key, empty slots last (what every
/// table the engine changes gets; HAMMER2's lookups depend on it).
pub fn sort_table(table: &mut Table) {
    table.slots.sort_by_key(|s| (s.is_empty(), s.bref().map_or(0, |b| b.key.get())));
}

impl Session {
    /// Loads the node at `path` (and every node above it) into the
    /// transaction and calls `f` with it.
    pub fn fix_node<R>(
        &mut self,
        path: &NodePath,
        f: impl FnOnce(&Hammer2, &mut Chain) -> Result<R>,
    ) -> Result<R> {
        let (last, above) = path.split_last().ok_or_else(|| Error::invalid("fix_node needs a node"))?;
        self.operation(|s| {
            let fs = &s.fs;
            let table = table_at(fs, &mut s.tx.root, above)?;
            let chain = chain_in(fs, table, *last)?;
            let r = f(fs, chain)?;
            s.tx.changes += 1;
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(r)
        })
    }

    /// Loads the node at `path` and calls `f` with its table (the
    /// super-root blockset for an empty path).
    pub fn fix_table<R>(
        &mut self,
        path: &NodePath,
        f: impl FnOnce(&Hammer2, &mut Table) -> Result<R>,
    ) -> Result<R> {
        self.operation(|s| {
            let fs = &s.fs;
            let table = table_at(fs, &mut s.tx.root, path)?;
            let r = f(fs, table)?;
            s.tx.changes += 1;
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(r)
        })
    }

    /// Takes the entry `at` out of the table of the node at `holder` and
    /// returns its blockref (what it referenced stays allocated until a
    /// bulkfree: nothing else is sure to be unshared).
    pub fn fix_take_entry(&mut self, holder: &NodePath, at: &Location) -> Result<Blockref> {
        self.fix_table(holder, |_, table| {
            let i = entry_index(table, at)?;
            let slot = std::mem::replace(&mut table.slots[i], Slot::Empty);
            let b = *slot.bref().expect("a live entry");
            sort_table(table);
            Ok(b)
        })
    }

    /// Moves the entry `at` from the table of `holder` into the table of
    /// the inode `owner` (a prefix of `holder`, or equal to it) under the
    /// key `key(fs, owner's table, blockref, name)` returns, where `name`
    /// is the entry's name for a DIRENT; the insertion goes through the
    /// engine's indirect blocks like any new entry. Either the entry moves
    /// or nothing changes. Returns the new key.
    pub fn fix_rekey_entry(
        &mut self,
        owner: &NodePath,
        holder: &NodePath,
        at: &Location,
        key: impl FnOnce(&Hammer2, &Table, &Blockref, Option<&[u8]>) -> Result<u64>,
    ) -> Result<u64> {
        let below = holder
            .strip_prefix(owner)
            .ok_or_else(|| Error::invalid("the owner of an entry lies above it"))?
            .to_vec();
        let (last, above) =
            owner.split_last().ok_or_else(|| Error::invalid("re-keying needs an owner inode"))?;
        self.operation(|s| {
            let fs = &s.fs;
            let table = table_at(fs, &mut s.tx.root, above)?;
            let chain = chain_in(fs, table, *last)?;
            let methods = chain.bref.methods;
            let otable = chain.table_mut().ok_or_else(|| Error::shape("the owner embeds its data"))?;
            // Everything that can fail and changes nothing first.
            let (b, name) = {
                let htable = table_at(fs, otable, &below)?;
                let i = entry_index(htable, at)?;
                let b = *htable.slots[i].bref().expect("a live entry");
                let name = match b.kind() {
                    BlockrefType::Dirent => Some(dirent_name(fs, &b, None, at)?),
                    _ => None,
                };
                (b, name)
            };
            let new_key = key(fs, otable, &b, name.as_deref())?;
            let htable = table_at(fs, otable, &below)?;
            let i = entry_index(htable, at)?;
            let slot = std::mem::replace(&mut htable.slots[i], Slot::Empty);
            // Taken by another entry (the entry itself no longer counts):
            // put it back where it was, nothing changed.
            let taken = otable.lookup(fs, new_key, b.kind()).map(|f| f.is_some());
            if !matches!(taken, Ok(false)) {
                let htable = table_at(fs, otable, &below)?;
                htable.slots[i] = slot;
                taken?;
                return Err(Error::invalid(format!("key {new_key:#x} is taken")));
            }
            let htable = table_at(fs, otable, &below)?;
            sort_table(htable);
            s.tx.changes += 1;
            let rekey = |b: &mut Blockref| {
                b.key = new_key.into();
                if b.kind() != BlockrefType::Indirect && b.kind() != BlockrefType::Data {
                    b.keybits = 0;
                }
            };
            let moved = match slot {
                Slot::Clean(mut b) => {
                    rekey(&mut b);
                    Slot::Clean(b)
                }
                Slot::Node(mut c) => {
                    rekey(&mut c.bref);
                    Slot::Node(c)
                }
                Slot::Empty => unreachable!("a live entry"),
            };
            otable.insert(fs, methods, moved)?;
            s.tx.dirty = true;
            s.resync_copies = true;
            Ok(new_key)
        })
    }
}

/// The free key in the collision space of `name`'s hash in a directory's
/// `table`, for a directory entry re-keyed by fsck.
pub fn free_name_key(fs: &Hammer2, table: &Table, name: &[u8]) -> Result<u64> {
    free_dirent_key(fs, table, name)
}
