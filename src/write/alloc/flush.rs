//! Writing the freemap: every modified leaf and the nodes above it go
//! copy-on-write into the reserved rotation slots (`hammer2_freemap_reserve`),
//! with FREEMAP check codes and exact hints.

use super::{Allocator, Node};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::check::set_check;
use crate::format::{
    encode_methods, Blockref, BlockrefType, CheckMethod, CompMethod, FREEMAP_LEVELN_PSIZE, ROOT_VOLUME,
    SET_COUNT,
};
use crate::freemap::{
    home_zone, level_base, level_radix, next_rotation, rotation_slot, zone_of, Leaf, MEDIA_RADIX, ROTATIONS,
    TOP_LEVEL,
};
use crate::volume::read_headers;
use std::collections::{BTreeMap, HashMap, HashSet};
use zerocopy::IntoBytes;

impl Allocator {
    /// Writes every modified leaf and the freemap nodes above it into the
    /// reserved rotation slots, never over a block that a valid header copy
    /// of the root volume on `dev` references, with FREEMAP check codes,
    /// exact avail/bigmask hints and `mirror_tid = modify_tid = tid`. Returns
    /// the `freemap_blockset` for the next volume header, whose
    /// `freemap_tid` should be `tid` and `allocator_free`
    /// [`free_bytes`](Self::free_bytes).
    ///
    /// `dev` must map logical offsets (the device of a [`crate::Hammer2`]
    /// opened for writing) and hold the file system the freemap was loaded
    /// from. Nothing is synced: the caller's barrier precedes the header
    /// write. After an error the in-memory state may name blocks that were
    /// not written; reload before trying again.
    pub fn flush(&mut self, tid: u64, dev: &mut Device) -> Result<[Blockref; SET_COUNT]> {
        let protected = self.protected_slots(dev)?;
        // Leaves first.
        for (&key, leaf) in self.leaves.iter_mut().filter(|(_, l)| l.dirty) {
            let current = leaf.bref.map(|b| b.offset());
            let slot = choose_slot(1, key, current, &protected)?;
            let view = Leaf::new(zone_of(key), &leaf.data).expect("leaves in memory are whole");
            let (avail, bigmask) = view.hints(&self.areas);
            let bref = freemap_bref(BlockrefType::FreemapLeaf, key, 1, slot, tid, avail, bigmask, &leaf.data);
            dev.write(slot, &leaf.data)?;
            leaf.bref = Some(bref);
            leaf.bigmask = bigmask;
            leaf.dirty = false;
        }
        // Then the nodes, level by level, until the top fits the header.
        let mut items: Vec<Blockref> = self.leaves.values().filter_map(|l| l.bref).collect();
        let mut nodes = HashMap::new();
        let mut level = 1;
        while items.len() > SET_COUNT && level < TOP_LEVEL {
            level += 1;
            let keybits = level_radix(level).expect("levels 2 to 5 have a radix");
            let mut groups: BTreeMap<u64, Vec<Blockref>> = BTreeMap::new();
            for b in items {
                let base = level_base(level, b.key.get()).expect("levels 2 to 5 have a radix");
                groups.entry(base).or_default().push(b);
            }
            items = Vec::with_capacity(groups.len());
            for (key, children) in groups {
                let reuse = self.nodes.get(&(keybits, key)).filter(|n| same_brefs(&n.children, &children));
                let bref = match reuse {
                    Some(n) => n.bref,
                    None => {
                        let current = self.nodes.get(&(keybits, key)).map(|n| n.bref.offset());
                        let slot = choose_slot(level, key, current, &protected)?;
                        let mut data = vec![0u8; FREEMAP_LEVELN_PSIZE];
                        for (dst, c) in Blockref::table_mut(&mut data).iter_mut().zip(&children) {
                            *dst = *c;
                        }
                        let avail = children.iter().map(|c| c.freemap_check().avail.get()).sum();
                        let bigmask = children.iter().fold(0, |m, c| m | c.freemap_check().bigmask.get());
                        let kind = BlockrefType::FreemapNode;
                        let bref = freemap_bref(kind, key, level, slot, tid, avail, bigmask, &data);
                        dev.write(slot, &data)?;
                        bref
                    }
                };
                items.push(bref);
                nodes.insert((keybits, key), Node { bref, children });
            }
        }
        self.nodes = nodes;
        self.uncommitted.clear();
        let mut set = [Blockref::zeroed(); SET_COUNT];
        for (slot, b) in set.iter_mut().zip(items) {
            *slot = b;
        }
        Ok(set)
    }

    /// Media offsets of every freemap block reachable from a valid header
    /// copy of the root volume on `dev`.
    fn protected_slots(&self, dev: &Device) -> Result<HashSet<u64>> {
        let root = (0..dev.len()).map(|i| read_headers(dev.volume(i))).find(|h| {
            h.best()
                .and_then(|c| c.data.as_ref())
                .is_some_and(|d| d.fsid == self.fsid && d.volu_id == ROOT_VOLUME)
        });
        let Some(headers) = root else {
            return Err(Error::InvalidArgument(
                "flush to a device without this file system's root volume".into(),
            ));
        };
        let mut seen = HashSet::new();
        let mut stack: Vec<(Blockref, usize)> = Vec::new();
        for copy in headers.copies.iter().filter(|c| c.is_valid()) {
            let data = copy.data.as_ref().expect("valid copies have data");
            stack.extend(data.freemap_blockset.iter().map(|b| (*b, 0)));
        }
        while let Some((b, depth)) = stack.pop() {
            if b.kind() == BlockrefType::Empty || b.radix() == 0 || !seen.insert(b.offset()) {
                continue;
            }
            if b.kind() == BlockrefType::FreemapNode && depth < usize::from(TOP_LEVEL) {
                if let Ok(media) = dev.read(b.offset(), FREEMAP_LEVELN_PSIZE) {
                    stack.extend(Blockref::table(media).iter().map(|c| (*c, depth + 1)));
                }
            }
        }
        Ok(seen)
    }
}

/// The slot for a new version of the level-`level` block keyed `key`: the
/// first rotation set from [`next_rotation`] on (set 0 for a new block)
/// whose slot no valid header copy references.
fn choose_slot(level: u8, key: u64, current: Option<u64>, protected: &HashSet<u64>) -> Result<u64> {
    let start = next_rotation(current);
    let zone = home_zone(level, key);
    (0..ROTATIONS)
        .filter_map(|k| rotation_slot(level, zone?, (start + k) % ROTATIONS))
        .find(|s| !protected.contains(s))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "every rotation slot of freemap block {key:#x}/{} is in use",
                level_radix(level).unwrap_or(0)
            ))
        })
}

/// A freemap blockref for a block written at `slot`, with its check code.
#[allow(clippy::too_many_arguments)]
fn freemap_bref(
    kind: BlockrefType,
    key: u64,
    level: u8,
    slot: u64,
    tid: u64,
    avail: u64,
    bigmask: u32,
    data: &[u8],
) -> Blockref {
    let mut b = Blockref::zeroed();
    b.type_ = kind.into();
    b.methods = encode_methods(CheckMethod::Freemap, CompMethod::None);
    b.keybits = level_radix(level).expect("freemap blocks are levels 1 to 5");
    b.key = key.into();
    b.mirror_tid = tid.into();
    b.modify_tid = tid.into();
    b.data_off = (slot | u64::from(MEDIA_RADIX)).into();
    let hints = b.freemap_check_mut();
    hints.avail = avail.into();
    hints.bigmask = bigmask.into();
    set_check(&mut b, data);
    b
}

fn same_brefs(a: &[Blockref], b: &[Blockref]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_bytes() == y.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::PBUFSIZE;

    #[test]
    fn slots_rotate_past_protected_ones() {
        let none = HashSet::new();
        assert_eq!(choose_slot(1, 0, None, &none).unwrap(), 0x10000);
        assert_eq!(choose_slot(1, 0, Some(0x10000), &none).unwrap(), 0x60000);
        let busy: HashSet<u64> = [0x60000, 0xb0000].into();
        assert_eq!(choose_slot(1, 0, Some(0x10000), &busy).unwrap(), 0x100000);
        assert_eq!(choose_slot(2, 0, None, &none).unwrap(), 0x20000);
        assert_eq!(
            choose_slot(1, 1 << 30, Some((1 << 30) + 36 * PBUFSIZE), &none).unwrap(),
            (1 << 30) + PBUFSIZE
        );
        let all: HashSet<u64> = (0..8).map(|r| rotation_slot(1, 0, r).unwrap()).collect();
        assert!(choose_slot(1, 0, None, &all).is_err());
    }
}
