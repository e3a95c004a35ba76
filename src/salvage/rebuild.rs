//! Reconstruction: a version's contents (every block verified; lost byte
//! ranges said) and its path (names and `iparent` up to the PFS root).

use super::{Index, PfsId, Version};
use crate::error::{Error, Result};
use crate::format::check::{self, CheckOutcome};
use crate::format::compress;
use crate::format::{Blockref, BlockrefType, CompMethod, InodeData, EMBEDDED_BYTES};
use crate::volume::Hammer2;
use std::collections::HashMap;

/// Deepest nesting of indirect blocks followed in a file.
const MAX_FILE_DEPTH: usize = 16;
/// Deepest directory nesting followed when naming.
const MAX_PATH_DEPTH: usize = 256;

/// How much of a version could be read.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Completeness {
    pub size: u64,
    /// Byte ranges `[start, end)` whose blocks are lost (failed their
    /// check code, could not be read or decoded, or lay under a damaged
    /// indirect block and were not found through its intact slots).
    pub lost: Vec<(u64, u64)>,
    /// Bytes read from blocks that carry no check code (only with `relaxed`).
    pub unverified: u64,
    /// Indirect blocks that failed their check code and were read slot by slot.
    pub damaged_nodes: u64,
}

impl Completeness {
    /// Every byte was found and verified.
    pub fn is_whole(&self) -> bool {
        self.lost.is_empty() && self.unverified == 0
    }

    /// Bytes lost.
    pub fn lost_bytes(&self) -> u64 {
        self.lost.iter().map(|(a, b)| b - a).sum()
    }
}

struct Reader<'a, 'o> {
    fs: &'a Hammer2,
    size: u64,
    relaxed: bool,
    out: &'o mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    c: Completeness,
    raw: Vec<u8>,
}

/// Produces the contents of the inode `ip` (one version's 1 KiB) through
/// `out(offset, bytes)`, holes and lost ranges left out; says what was lost.
/// Only an error of `out` (or Ctrl-C) is an error: damage is reported in
/// the [`Completeness`].
pub fn read_version(
    fs: &Hammer2,
    ip: &InodeData,
    relaxed: bool,
    out: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<Completeness> {
    let size = ip.meta.size.get();
    let io = |e| Error::Io { path: "output".into(), op: "write", offset: 0, source: e };
    let mut r =
        Reader { fs, size, relaxed, out, c: Completeness { size, ..Default::default() }, raw: Vec::new() };
    if ip.meta.is_directdata() {
        let n = (size as usize).min(EMBEDDED_BYTES);
        (r.out)(0, &ip.u[..n]).map_err(io)?;
        if size > EMBEDDED_BYTES as u64 {
            r.c.lost.push((EMBEDDED_BYTES as u64, size));
        }
        return Ok(r.c);
    }
    if size > 0 {
        r.table(ip.blockset(), 0, (0, u64::MAX), None)?;
    }
    r.c.lost.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in r.c.lost.drain(..) {
        match merged.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    r.c.lost = merged;
    Ok(r.c)
}

impl Reader<'_, '_> {
    /// Reads one table. `covered`: set while under a damaged indirect
    /// block, whose slots are then taken only when they fit its key range,
    /// and which collects what they produced.
    fn table(
        &mut self,
        set: &[Blockref],
        depth: usize,
        range: (u64, u64),
        mut covered: Option<&mut Vec<(u64, u64)>>,
    ) -> Result<()> {
        crate::interrupt::check()?;
        let limit = self.fs.device.logical_size();
        for b in set {
            if b.type_ == 0 {
                continue;
            }
            let (key, end) = (b.key.get(), b.key_end());
            if key >= self.size {
                continue;
            }
            if covered.is_some() && (key < range.0 || end > range.1 || !super::scan::plausible_bref(b, limit))
            {
                continue;
            }
            match b.kind() {
                BlockrefType::Data => {
                    let blen = if (10..=16).contains(&b.keybits) {
                        (1u64 << b.keybits).min(self.size - key)
                    } else {
                        (end.saturating_add(1)).min(self.size) - key
                    };
                    if self.data(b, key, blen)? {
                        if let Some(c) = covered.as_deref_mut() {
                            c.push((key, key + blen));
                        }
                    } else {
                        self.c.lost.push((key, key + blen));
                    }
                }
                BlockrefType::Indirect => {
                    let span = (key, end.min(self.size - 1).saturating_add(1));
                    let Some(media) = self.media(b) else {
                        self.c.lost.push(span);
                        continue;
                    };
                    if depth >= MAX_FILE_DEPTH {
                        self.c.lost.push(span);
                        continue;
                    }
                    let table = Blockref::table(&media).to_vec();
                    match self.checked(b, &media) {
                        Some(_) => self.table(&table, depth + 1, (key, end), covered.as_deref_mut())?,
                        None => {
                            self.c.damaged_nodes += 1;
                            let mut cov = Vec::new();
                            self.table(&table, depth + 1, (key, end), Some(&mut cov))?;
                            self.c.lost.extend(gaps(span, &mut cov));
                            if let Some(c) = covered.as_deref_mut() {
                                c.extend(cov);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The physical media of `b` (not yet verified), or None when it cannot be read.
    fn media(&self, b: &Blockref) -> Option<Vec<u8>> {
        let r = b.radix();
        if !(10..=16).contains(&r) {
            return None;
        }
        let mut buf = vec![0u8; 1 << r];
        self.fs.device.read_into(b.offset(), &mut buf).ok()?;
        Some(buf)
    }

    /// Whether `media` may be used: its check code holds (`Some(true)`),
    /// or it has none and relaxed reading takes it (`Some(false)`).
    fn checked(&self, b: &Blockref, media: &[u8]) -> Option<bool> {
        match check::verify(b, media) {
            CheckOutcome::Ok => Some(true),
            CheckOutcome::NotChecked if self.relaxed => Some(false),
            _ => None,
        }
    }

    /// Produces one data block; false when it is lost.
    fn data(&mut self, b: &Blockref, key: u64, blen: u64) -> Result<bool> {
        let io = |e| Error::Io { path: "output".into(), op: "write", offset: key, source: e };
        let r = b.radix();
        if !(10..=16).contains(&b.keybits) {
            return Ok(false);
        }
        if r == 0 {
            return Ok(true); // no media: zeros
        }
        if !(10..=16).contains(&r) {
            return Ok(false);
        }
        self.raw.resize(1 << r, 0);
        if self.fs.device.read_into(b.offset(), &mut self.raw).is_err() {
            return Ok(false);
        }
        let verified = match self.checked(b, &self.raw) {
            Some(v) => v,
            None => return Ok(false),
        };
        let logical = 1usize << b.keybits;
        let decoded = match b.comp_method() {
            CompMethod::Lz4 => compress::lz4_decompress(&self.raw, logical),
            CompMethod::Zlib => compress::zlib_decompress(&self.raw, logical),
            CompMethod::None | CompMethod::Autozero => Ok(std::mem::take(&mut self.raw)),
            CompMethod::Unknown(_) => return Ok(false),
        };
        let Ok(data) = decoded else { return Ok(false) };
        let n = (data.len() as u64).min(blen) as usize;
        (self.out)(key, &data[..n]).map_err(io)?;
        if !verified {
            self.c.unverified += blen;
        }
        if self.raw.is_empty() {
            self.raw = data;
        }
        Ok(true)
    }
}

/// The parts of `[span.0, span.1)` that `cov` leaves out.
fn gaps(span: (u64, u64), cov: &mut [(u64, u64)]) -> Vec<(u64, u64)> {
    cov.sort_unstable();
    let mut out = Vec::new();
    let mut pos = span.0;
    for &(a, b) in cov.iter() {
        if a > pos {
            out.push((pos, a.min(span.1)));
        }
        pos = pos.max(b);
        if pos >= span.1 {
            break;
        }
    }
    if pos < span.1 {
        out.push((pos, span.1));
    }
    out.retain(|(a, b)| a < b);
    out
}

/// Name, parent directory and type of a version, as its inode says.
#[derive(Debug, Clone)]
pub struct Naming {
    pub name: Vec<u8>,
    pub iparent: u64,
    pub kind: u8,
}

/// Paths of versions: each version's name under its parent directory,
/// named by that directory's newest version, up to the PFS root (inode 1).
pub struct Namer<'i> {
    fs: &'i Hammer2,
    index: &'i Index,
    latest: HashMap<(PfsId, u64), Option<Naming>>,
    paths: HashMap<(PfsId, u64), String>,
    /// Where the last search of the entries ended.
    hint: std::cell::Cell<usize>,
}

impl<'i> Namer<'i> {
    pub fn new(fs: &'i Hammer2, index: &'i Index) -> Self {
        Namer { fs, index, latest: HashMap::new(), paths: HashMap::new(), hint: std::cell::Cell::new(0) }
    }

    /// A version's name and place: its parent is the inode's `iparent`;
    /// its name that of the entry naming it in that directory (the newest
    /// not newer than the version, else the oldest), else of any entry
    /// naming it, else the inode's own name field (DragonFly fills it with
    /// the inode number in hex).
    pub fn naming(&self, v: &Version) -> Option<Naming> {
        let ip = Index::inode(self.fs, v).ok()?;
        self.naming_of(v, &ip)
    }

    /// [`Namer::naming`] of a version whose inode `ip` was read already;
    /// the entries are searched from where the last search ended (versions
    /// asked in index order cost a step or two each).
    pub fn naming_of(&self, v: &Version, ip: &InodeData) -> Option<Naming> {
        let iparent = ip.meta.iparent.get();
        let mut hint = self.hint.get();
        let entries = self.index.entries_near(v.pfs, v.inum, &mut hint).ok()?;
        self.hint.set(hint);
        let pick = |list: Vec<&super::Entry>| -> Option<Vec<u8>> {
            let before = list.iter().filter(|e| e.mirror_tid <= v.mirror_tid).max_by_key(|e| e.mirror_tid);
            before.or_else(|| list.iter().min_by_key(|e| e.mirror_tid)).map(|e| e.name.to_vec())
        };
        let name = pick(entries.iter().filter(|e| e.dir == iparent).collect())
            .or_else(|| pick(entries.iter().collect()))
            .unwrap_or_else(|| ip.name().to_vec());
        Some(Naming { name, iparent, kind: ip.meta.type_ })
    }

    /// The newest version of an inode (verified ones first).
    pub fn newest(index: &Index, pfs: PfsId, inum: u64) -> Option<Version> {
        let vs = index.versions(pfs, inum).ok()?;
        vs.iter().rev().find(|v| v.verified).or(vs.last()).copied()
    }

    fn latest(&mut self, pfs: PfsId, inum: u64) -> Option<Naming> {
        if let Some(n) = self.latest.get(&(pfs, inum)) {
            return n.clone();
        }
        let n = Self::newest(self.index, pfs, inum).and_then(|v| self.naming(&v));
        self.latest.insert((pfs, inum), n.clone());
        n
    }

    /// The path of directory `dir` from its PFS root: `/` for the root,
    /// `<orphan>/INUM/...` from the first directory whose own place is
    /// unknown (or past the depth bound).
    pub fn dir_path(&mut self, pfs: PfsId, dir: u64) -> String {
        if let Some(p) = self.paths.get(&(pfs, dir)) {
            return p.clone();
        }
        let mut parts: Vec<String> = Vec::new();
        let mut at = dir;
        let mut prefix = String::new();
        for _ in 0..MAX_PATH_DEPTH {
            if at == 1 {
                break;
            }
            match self.latest(pfs, at) {
                Some(n) if n.iparent != at => {
                    parts.push(String::from_utf8_lossy(&n.name).into_owned());
                    at = n.iparent;
                }
                _ => {
                    prefix = format!("<orphan>/{at}");
                    break;
                }
            }
        }
        if at != 1 && prefix.is_empty() {
            prefix = format!("<orphan>/{at}");
        }
        parts.reverse();
        let p = match (prefix.is_empty(), parts.is_empty()) {
            (true, true) => "/".to_string(),
            (true, false) => format!("/{}", parts.join("/")),
            (false, true) => prefix,
            (false, false) => format!("{prefix}/{}", parts.join("/")),
        };
        self.paths.insert((pfs, dir), p.clone());
        p
    }

    /// The path of a version (its own name under its parent's path).
    pub fn path(&mut self, v: &Version, n: &Naming) -> String {
        if v.inum == 1 {
            return "/".into();
        }
        let parent = self.dir_path(v.pfs, n.iparent);
        let name = String::from_utf8_lossy(&n.name);
        if parent == "/" {
            format!("/{name}")
        } else {
            format!("{parent}/{name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn gaps_are_what_the_covered_ranges_leave_out() {
        assert_eq!(gaps((0, 100), &mut []), vec![(0, 100)]);
        assert_eq!(gaps((0, 100), &mut [(0, 100)]), vec![]);
        assert_eq!(gaps((0, 100), &mut [(60, 80), (0, 10)]), vec![(10, 60), (80, 100)]);
        // Overlapping and out-of-span ranges.
        assert_eq!(gaps((10, 50), &mut [(0, 20), (15, 30), (45, 200)]), vec![(30, 45)]);
    }
}
