//! Which inodes own a slot: the join's lookups.
//!
//! A slot lies in an inode's blockset (a raw inode) or in an indirect
//! block that INDIRECT blockrefs name, each of which lies in a block of its
//! own, and so on up; the nearest inodes above are its owners. The owners
//! of every indirect block are worked out once, before the slots are
//! looked up (there are few such blocks next to the slots they hold);
//! a slot then costs a step of a cursor over the sorted raw inodes and
//! indirect blocks (slots come in media order, so the cursors mostly move
//! forward a little), and consecutive slots in the same block share one
//! answer.

use super::scan::{NodeRef, RawInode};
use crate::format::INODE_BYTES;

/// Longest chain of indirect blocks followed up from a slot (deeper
/// chains, or cycles, only come from damage or garbage).
const MAX_DEPTH: usize = 32;

/// A `spans` entry not yet worked out, or being worked out (a cycle).
const TODO: (u32, u32) = (0, u32::MAX);
const BUSY: (u32, u32) = (1, u32::MAX);

/// The first index of `v` (sorted by `key`) whose key is at least `want`,
/// searched forward from `hint` when `want` lies past it (galloping), else
/// by binary search over the whole.
pub(crate) fn seek<T>(v: &[T], hint: usize, want: u64, key: impl Fn(&T) -> u64) -> usize {
    gallop(v, hint, |x| key(x) < want)
}

/// The first index of `v` whose element is not `below` (those that are
/// come first), searched forward from `hint` when the element before it
/// is `below` (galloping: a step or two when the answer is near), else by
/// binary search over the whole.
pub(crate) fn gallop<T>(v: &[T], hint: usize, below: impl Fn(&T) -> bool) -> usize {
    if hint > v.len() || (hint > 0 && !below(&v[hint - 1])) {
        return v.partition_point(below);
    }
    // Everything before `lo` is below.
    let mut lo = hint;
    let mut step = 1;
    while lo + step <= v.len() && below(&v[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(v.len());
    lo + v[lo..hi].partition_point(below)
}

/// Raw inodes and indirect blocks, sorted, with the owners of each
/// indirect block.
pub(crate) struct Containers {
    /// Sorted by offset, one per offset.
    pub raws: Vec<RawInode>,
    /// `pfs_clid` of the PFS roots and super-roots among `raws`, by offset.
    pub clids: Vec<(u64, [u8; 16])>,
    /// Sorted by (offset, referrer), each pair once.
    pub nodes: Vec<NodeRef>,
    /// The owners of the block node `i` names: `flat[spans[i].0..][..spans[i].1]`.
    spans: Vec<(u32, u32)>,
    flat: Vec<u32>,
}

/// What a looking-up thread keeps from one slot to the next.
#[derive(Default)]
pub(crate) struct Seeker {
    raw: usize,
    node: usize,
    /// What the last slot's owners came from: the raw inode holding it
    /// (`u32::MAX` then its index) or the indirect blocks holding it.
    key: Vec<u32>,
    scratch: Vec<u32>,
    owners: Vec<u32>,
    /// Bumped whenever `owners` changes (callers key their own caches on it).
    pub generation: u64,
}

impl Seeker {
    /// The owners the last lookup gave.
    pub fn current(&self) -> &[u32] {
        &self.owners
    }
}

impl Containers {
    /// Sorts the tables and works out the owners of every indirect block.
    pub fn new(mut raws: Vec<RawInode>, mut clids: Vec<(u64, [u8; 16])>, mut nodes: Vec<NodeRef>) -> Self {
        raws.sort_by_key(|r| r.off());
        raws.dedup_by_key(|r| r.off());
        raws.shrink_to_fit();
        nodes.sort_by_key(|n| (n.off(), n.referrer));
        nodes.dedup_by_key(|n| (n.off(), n.referrer));
        nodes.shrink_to_fit();
        clids.sort_by_key(|c| c.0);
        clids.dedup_by_key(|c| c.0);
        let n = nodes.len();
        let mut c = Containers { raws, clids, nodes, spans: vec![TODO; n], flat: Vec::new() };
        for i in 0..n {
            c.resolve(i, 0);
        }
        c.flat.shrink_to_fit();
        c
    }

    /// The `pfs_clid` of the raw inode at `off` (zero for a plain inode).
    pub fn clid_of(&self, off: u64) -> [u8; 16] {
        self.clids.binary_search_by_key(&off, |c| c.0).map_or([0; 16], |i| self.clids[i].1)
    }

    /// The raw inode whose blockset holds the slot at `pos`, if one does.
    fn blockset_owner(&self, pos: u64, hint: &mut usize) -> Option<u32> {
        let base = pos & !(INODE_BYTES as u64 - 1);
        *hint = seek(&self.raws, *hint, base, |r| r.off());
        let r = self.raws.get(*hint)?;
        (r.off() == base && pos - base >= 512).then_some(*hint as u32)
    }

    /// The indirect blocks (at most 64 KiB) holding `pos`, other than one
    /// `pos` itself names, into `out`.
    fn holding(&self, pos: u64, hint: &mut usize, out: &mut Vec<u32>) {
        *hint = seek(&self.nodes, *hint, pos.saturating_add(1), |n| n.off());
        for (j, n) in self.nodes[..*hint].iter().enumerate().rev() {
            if n.off() + 65536 <= pos {
                break;
            }
            if pos < n.off() + (1u64 << n.radix()) && n.referrer != pos {
                out.push(j as u32);
            }
        }
    }

    /// Adds the owners of node `j`'s block to `out` (each once).
    fn add_owners(&self, j: u32, out: &mut Vec<u32>) {
        let (s, l) = self.spans[j as usize];
        if l == u32::MAX {
            return;
        }
        for &o in &self.flat[s as usize..(s + l) as usize] {
            if !out.contains(&o) {
                out.push(o);
            }
        }
    }

    /// Works out the owners of node `i`'s block: those of the slot naming it.
    fn resolve(&mut self, i: usize, depth: usize) {
        if self.spans[i] != TODO || depth > MAX_DEPTH {
            return;
        }
        self.spans[i] = BUSY;
        let pos = self.nodes[i].referrer;
        let mut out = Vec::new();
        let mut hint = 0;
        if let Some(r) = self.blockset_owner(pos, &mut hint) {
            out.push(r);
        } else {
            let mut held = Vec::new();
            self.holding(pos, &mut hint, &mut held);
            for &j in &held {
                self.resolve(j as usize, depth + 1);
                self.add_owners(j, &mut out);
            }
        }
        self.spans[i] = (self.flat.len() as u32, out.len() as u32);
        self.flat.extend(out);
    }

    /// The raw inodes (indices into `raws`) owning the slot at `at`.
    pub fn owners<'s>(&self, at: u64, s: &'s mut Seeker) -> &'s [u32] {
        s.scratch.clear();
        match self.blockset_owner(at, &mut s.raw) {
            Some(r) => s.scratch.extend([u32::MAX, r]),
            None => self.holding(at, &mut s.node, &mut s.scratch),
        }
        if s.generation == 0 || s.scratch != s.key {
            std::mem::swap(&mut s.key, &mut s.scratch);
            s.owners.clear();
            match s.key.as_slice() {
                [u32::MAX, r] => s.owners.push(*r),
                held => {
                    for &j in held {
                        self.add_owners(j, &mut s.owners);
                    }
                }
            }
            s.generation += 1;
        }
        &s.owners
    }
}

#[cfg(test)]
mod tests {
    use super::seek;

    #[test]
    fn seek_finds_the_lower_bound_from_any_hint() {
        let v: Vec<u64> = (0..100).map(|i| i * 10).collect();
        for hint in [0, 1, 5, 50, 99, 100, 101] {
            for want in [0, 1, 10, 11, 495, 500, 990, 991, 5000] {
                let expect = v.partition_point(|&x| x < want);
                assert_eq!(seek(&v, hint, want, |&x| x), expect, "hint {hint} want {want}");
            }
        }
        assert_eq!(seek(&[] as &[u64], 0, 5, |&x| x), 0);
    }
}
