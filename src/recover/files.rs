//! `hammer2_recover list` and `files`: what the media scan
//! ([`crate::salvage`]) found, listed or written out to a host directory.
//!
//! # Output of `files`
//!
//! The objects matching PATH (an absolute path from a PFS root, or a bare
//! name matching anywhere, as DragonFly's `recover` takes it) are written
//! into DEST under their names; directories recursively, with every file
//! any version of them ever held (removed ones included). Versions of a
//! name are its distinct states found (same type, mode, owner, times,
//! size and contents count once), oldest first by transaction:
//! `NAME.00001`, `NAME.00002`, ...; the newest is also `NAME` (a hard link
//! to its numbered copy); with `latest` only `NAME` is written. A version
//! with lost byte ranges gets those ranges as holes and `.partial` after
//! its name, and is listed as partial: never passed off as whole.
//! Directories are merged: every directory version of a name gives its
//! children to one host directory, which gets the newest version's mode
//! and time. Symlinks, modes, owners and times are restored by the rules
//! `get` follows ([`crate::host::extract`]); device nodes, FIFOs and
//! sockets are skipped and listed, as `get` does. A hard-linked file (an
//! inode with more than one link, named by several entries) is written
//! once per version; its other names become hard links to that file, as
//! `get` restores them (counted as `links` in the summary).
//!
//! A raw inode no blockref names any more (see [`crate::salvage`]) is
//! vouched for by nothing: `list` shows it as `unrecoverable` with the
//! reason and `files` reports it so, unless `relaxed`, which recovers it
//! and lists it among the unverified (never as verified).
//!
//! Nothing is written outside DEST: every name read from the media is
//! checked (no `/`, NUL, `.` or `..`), files are created exclusively,
//! symlinks are created and never followed. The device is only read.

use crate::error::{Error, Result};
use crate::format::{ObjType, INODE_MAXNAME};
use crate::host::extract::{check_name, host_err, Host, ModePolicy};
use crate::salvage::{read_version, Completeness, Index, Namer, PfsId, Source, Version};
use crate::volume::Hammer2;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One line of `list`: a distinct version of an inode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub path: String,
    pub pfs: String,
    pub inum: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    /// Microseconds since the epoch.
    pub mtime: u64,
    pub modify_tid: u64,
    /// The transaction that wrote this copy (versions are ordered by it).
    pub mirror_tid: u64,
    pub source: Source,
    /// Some blockref naming the inode carries a check code that holds.
    pub verified: bool,
    /// `whole`, `whole (unverified)` (with `relaxed`: some bytes carry
    /// no check code), `partial` (with lost bytes) or, for what has no data, `-`.
    pub completeness: String,
    pub lost_bytes: u64,
    /// Why a version is not recovered (`completeness` is then `unrecoverable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a raw inode no blockref names is not recovered without `relaxed`.
const UNVOUCHED: &str =
    "no blockref names this inode any more: nothing vouches for its bytes (--relaxed recovers it, marked unverified)";

/// Options of `list`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only what the live tree does not reach (or reaches in another version).
    pub deleted: bool,
    pub pfs: Option<String>,
    /// Only what lies at or under this path (absolute), or bears this name.
    pub path: Option<String>,
    pub relaxed: bool,
}

/// The PFSs selected by a label (every one when none is given).
fn selected(index: &Index, label: Option<&str>) -> Result<HashSet<PfsId>> {
    match label {
        None => Ok((0..index.pfs().len() as PfsId).collect()),
        Some(l) => {
            let ids = index.pfs_named(l);
            if ids.is_empty() {
                let known: Vec<&str> = index.pfs().iter().map(|p| p.label.as_str()).collect();
                return Err(Error::invalid(format!(
                    "no PFS labelled '{l}' found (found: {})",
                    known.join(", ")
                )));
            }
            Ok(ids.into_iter().collect())
        }
    }
}

/// Distinct versions of an inode (one per identity, the newest copy of
/// each, live when any copy is), oldest first.
fn distinct(vs: &[Version], relaxed: bool) -> Vec<Version> {
    let mut out: Vec<Version> = Vec::new();
    for v in vs.iter().filter(|v| v.verified || relaxed) {
        match out.iter_mut().find(|o| o.ident == v.ident) {
            Some(o) => {
                let live = o.source == Source::Live || v.source == Source::Live;
                *o = *v;
                if live {
                    o.source = Source::Live;
                }
            }
            None => out.push(*v),
        }
    }
    out.sort_by_key(Version::order);
    out
}

fn path_matches(path: &str, name: &[u8], want: &str) -> bool {
    if want.starts_with('/') {
        let want = want.trim_end_matches('/');
        want.is_empty() || path == want || path.strip_prefix(want).is_some_and(|r| r.starts_with('/'))
    } else {
        name == want.as_bytes() || path.split('/').any(|c| c == want)
    }
}

/// What can be recovered, one line per distinct version.
pub fn list(fs: &Hammer2, index: &Index, opts: &ListOptions) -> Result<Vec<Listed>> {
    let pfs = selected(index, opts.pfs.as_deref())?;
    let mut namer = Namer::new(fs, index);
    let mut out = Vec::new();
    index.for_each_inode(|(id, inum), vs| {
        if !pfs.contains(&id) {
            return Ok(());
        }
        // Without `relaxed`, versions nothing vouches for (raw inodes no
        // blockref names) are listed as unrecoverable.
        let versions = distinct(vs, true);
        let live: Option<u64> = versions.iter().find(|v| v.source == Source::Live).map(|v| v.ident);
        for v in &versions {
            crate::interrupt::check()?;
            if opts.deleted && live == Some(v.ident) {
                continue;
            }
            let Ok(ip) = Index::inode(fs, v) else { continue };
            let Some(n) = namer.naming_of(v, &ip) else { continue };
            let path = namer.path(v, &n);
            if let Some(want) = &opts.path {
                if !path_matches(&path, &n.name, want) {
                    continue;
                }
            }
            let kind = ip.meta.obj_type();
            let unvouched = !v.verified && !opts.relaxed;
            let (completeness, lost) = if unvouched {
                ("unrecoverable".to_string(), 0)
            } else if matches!(kind, ObjType::Regfile | ObjType::Softlink) {
                let c = read_version(fs, &ip, opts.relaxed, &mut |_, _| Ok(()))?;
                let word = match (c.lost.is_empty(), c.unverified) {
                    (false, _) => "partial",
                    (true, 0) => "whole",
                    (true, _) => "whole (unverified)",
                };
                (word.to_string(), c.lost_bytes())
            } else {
                ("-".to_string(), 0)
            };
            out.push(Listed {
                path,
                pfs: index.pfs()[id as usize].label.clone(),
                inum,
                kind: kind.to_string(),
                size: ip.meta.size.get(),
                mtime: ip.meta.mtime.get(),
                modify_tid: v.modify_tid,
                mirror_tid: v.mirror_tid,
                source: v.source,
                verified: v.verified,
                completeness,
                lost_bytes: lost,
                note: unvouched.then(|| UNVOUCHED.to_string()),
            });
        }
        Ok(())
    })?;
    out.sort_by(|a, b| {
        (a.pfs.as_str(), a.path.as_str(), a.mirror_tid, a.modify_tid).cmp(&(
            b.pfs.as_str(),
            b.path.as_str(),
            b.mirror_tid,
            b.modify_tid,
        ))
    });
    Ok(out)
}

/// Options of `files`.
#[derive(Debug, Clone, Copy)]
pub struct FilesOptions<'a> {
    pub pfs: Option<&'a str>,
    /// Only the newest version of each name.
    pub latest: bool,
    /// Also what no check code vouches for.
    pub relaxed: bool,
    pub modes: ModePolicy,
}

/// What `files` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FilesReport {
    /// Versions matched (files, symlinks, directories, others).
    pub found: u64,
    /// Versions written whole.
    pub whole: u64,
    /// Versions written with lost ranges (as holes): their host paths.
    pub partial: Vec<String>,
    /// Versions written whole but with bytes no check code vouches for
    /// (only with `relaxed`): their host paths.
    pub unverified: Vec<String>,
    /// Versions that could not be written: path and why.
    pub unrecoverable: Vec<String>,
    /// Objects `get` does not extract either (device nodes, FIFOs, sockets), or refused names.
    pub skipped: Vec<String>,
    pub dirs: u64,
    /// Further names of hard-linked files, written as hard links to the
    /// version written under its first name (inside DEST).
    pub links: u64,
}

/// A version with what its inode says of its name and place.
#[derive(Clone)]
struct Found {
    v: Version,
    kind: u8,
}

/// Directory (PFS, inum) -> name -> versions of things named so in it.
type Children = HashMap<(PfsId, u64), BTreeMap<Vec<u8>, Vec<Found>>>;

/// Writes what matches `path` into `dest` (see the module documentation).
/// `/` writes the PFS root's contents into DEST itself, or each PFS's
/// into DEST/LABEL when several are selected; anything else is written as
/// DEST/NAME, every match (in every PFS selected, and for a bare name in
/// every directory) numbered as versions of one name. DEST/NAME must not
/// exist (an empty directory aside), as for `get`.
pub fn files(
    fs: &Hammer2,
    index: &Index,
    path: &str,
    dest: &Path,
    opts: &FilesOptions<'_>,
) -> Result<FilesReport> {
    let pfs = selected(index, opts.pfs)?;
    if path.is_empty() || path.as_bytes().contains(&0) || path.split('/').any(|c| c == "..") {
        return Err(Error::invalid(format!(
            "'{path}': give an absolute path from a PFS root, or a bare name"
        )));
    }
    let namer = Namer::new(fs, index);
    let mut children: Children = HashMap::new();
    let mut roots: Vec<Found> = Vec::new();
    index.for_each_inode(|(id, _), vs| {
        if !pfs.contains(&id) {
            return Ok(());
        }
        // An inode ever linked more than once keeps every name entries gave it.
        let linked = vs.iter().any(|v| Index::inode(fs, v).is_ok_and(|ip| ip.meta.nlinks.get() > 1));
        for v in distinct(vs, true) {
            crate::interrupt::check()?;
            let Some(n) = namer.naming(&v) else { continue };
            // What nothing vouches for is reported, not written, unless
            // `relaxed`; a directory known only so gives no children.
            if !v.verified && !opts.relaxed && is_dir(n.kind) {
                continue;
            }
            let f = Found { v, kind: n.kind };
            if v.inum == 1 {
                roots.push(f);
                continue;
            }
            let mut names = vec![(n.iparent, n.name)];
            // Further names of a hard-linked inode: the entries naming it.
            if linked {
                for e in index.entries_naming(id, v.inum)? {
                    if !names.iter().any(|(d, nm)| *d == e.dir && nm[..] == e.name[..]) {
                        names.push((e.dir, e.name.to_vec()));
                    }
                }
            }
            for (dir, name) in names {
                children.entry((id, dir)).or_default().entry(name).or_default().push(f.clone());
            }
        }
        Ok(())
    })?;
    // The groups PATH names: (PFS, name, versions), or the roots for "/".
    let mut w = Writer {
        fs,
        opts,
        children: &children,
        host: Host { force: false, modes: opts.modes },
        report: FilesReport::default(),
        depth: 0,
        open_dirs: Vec::new(),
        linked: HashMap::new(),
    };
    let host_dest = dest.to_path_buf();
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if path.starts_with('/') && comps.is_empty() {
        // The PFS roots: into DEST itself, or DEST/LABEL for each PFS when several are found.
        let mut ids: Vec<PfsId> = roots.iter().map(|r| r.v.pfs).filter(|id| pfs.contains(id)).collect();
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            let rs: Vec<Found> = roots.iter().filter(|r| r.v.pfs == id).cloned().collect();
            let label = &index.pfs()[id as usize].label;
            let target = if ids.len() == 1 { host_dest.clone() } else { host_dest.join(label) };
            if ids.len() == 1 {
                w.host.prepare_target(&host_dest, &target, true, true)?;
            } else {
                check_name(label.as_bytes(), 1, "<PFS labels>")?;
                w.host.prepare_target(&host_dest, &target, false, true)?;
                w.host.make_dir(&target, true)?;
            }
            w.report.found += rs.len() as u64;
            w.dir_contents(&[(id, 1)], &target, "/")?;
            w.finish_dir(&rs, &target)?;
        }
    } else {
        // Every group PATH names, in every PFS (and for a bare name, in
        // every directory), written as one name: versions numbered together.
        let mut merged: Vec<Found> = Vec::new();
        if path.starts_with('/') {
            for &id in &pfs {
                let mut dirs: Vec<u64> = vec![1];
                for (i, comp) in comps.iter().enumerate() {
                    let last = i + 1 == comps.len();
                    let mut next = Vec::new();
                    for d in &dirs {
                        if let Some(group) = children.get(&(id, *d)).and_then(|m| m.get(comp.as_bytes())) {
                            if last {
                                merged.extend(group.iter().cloned());
                            } else {
                                next.extend(group.iter().filter(|f| is_dir(f.kind)).map(|f| f.v.inum));
                            }
                        }
                    }
                    next.sort_unstable();
                    next.dedup();
                    dirs = next;
                }
            }
        } else {
            for ((id, _), m) in &children {
                if let (true, Some(g)) = (pfs.contains(id), m.get(path.as_bytes())) {
                    merged.extend(g.iter().cloned());
                }
            }
        }
        if let Some(name) = comps.last().filter(|_| !merged.is_empty()) {
            w.top(&host_dest, name.as_bytes(), &merged, path)?;
        }
    }
    if w.report.found == 0 {
        return Err(Error::invalid(format!("nothing named '{path}' was found on the media")));
    }
    Ok(w.report)
}

fn is_dir(kind: u8) -> bool {
    ObjType::from(kind) == ObjType::Directory
}

struct Writer<'a, 'c> {
    fs: &'a Hammer2,
    opts: &'a FilesOptions<'a>,
    children: &'c Children,
    host: Host,
    report: FilesReport,
    depth: usize,
    /// The directories being written (the current path).
    open_dirs: Vec<(PfsId, u64)>,
    /// Versions of hard-linked files written so far, by (PFS, inum,
    /// identity): where, and whether as `.partial`. Their other names
    /// become hard links to them.
    linked: HashMap<(PfsId, u64, u64), (std::path::PathBuf, bool)>,
}

impl Writer<'_, '_> {
    /// A group PATH matched, written into DEST.
    fn top(&mut self, dest: &Path, name: &[u8], group: &[Found], shown: &str) -> Result<()> {
        let target = dest.join(OsStr::from_bytes(name));
        let has_dir = group.iter().any(|f| is_dir(f.kind));
        self.host.prepare_target(dest, &target, false, has_dir)?;
        self.group(dest, name, group, shown)
    }

    /// Writes everything named `name` in one directory into `host_dir`.
    fn group(&mut self, host_dir: &Path, name: &[u8], group: &[Found], shown: &str) -> Result<()> {
        crate::interrupt::check()?;
        if let Err(e) = check_name(name, group[0].v.inum, shown) {
            self.report.skipped.push(e.to_string());
            return Ok(());
        }
        let mut dirs: Vec<Found> = group.iter().filter(|f| is_dir(f.kind)).cloned().collect();
        let mut others: Vec<Found> = group.iter().filter(|f| !is_dir(f.kind)).cloned().collect();
        self.report.found += (dirs.len() + others.len()) as u64;
        if !dirs.is_empty() {
            dirs.sort_by_key(|f| f.v.order());
            let host = host_dir.join(OsStr::from_bytes(name));
            if self.depth >= crate::host::extract::MAX_DIR_DEPTH {
                self.report.unrecoverable.push(format!("{shown}: deeper than {} directories", self.depth));
                return Ok(());
            }
            let mut inums: Vec<(PfsId, u64)> = dirs.iter().map(|f| (f.v.pfs, f.v.inum)).collect();
            inums.sort_unstable();
            inums.dedup();
            // A directory named inside itself (damaged or hostile media)
            // is written once, not followed round.
            inums.retain(|d| !self.open_dirs.contains(d));
            if inums.is_empty() {
                self.report.unrecoverable.push(format!("{shown}: a directory inside itself"));
                return Ok(());
            }
            match self.host.make_dir(&host, host.is_dir()) {
                Ok(()) => {
                    for f in dirs.iter().filter(|f| !f.v.verified) {
                        self.report.unverified.push(format!(
                            "{} (inode {}: no blockref vouches for it)",
                            host.display(),
                            f.v.inum
                        ));
                    }
                    self.depth += 1;
                    let mark = self.open_dirs.len();
                    self.open_dirs.extend(inums.iter().copied());
                    let r = self.dir_contents(&inums, &host, shown);
                    self.open_dirs.truncate(mark);
                    self.depth -= 1;
                    r?;
                    self.finish_dir(&dirs, &host)?;
                }
                Err(e) => self.report.unrecoverable.push(format!("{shown}: {e}")),
            }
        }
        if others.is_empty() {
            return Ok(());
        }
        others.sort_by_key(|f| f.v.order());
        // One identity across inodes too (a file copied back unchanged).
        let mut seen = HashSet::new();
        others.retain(|f| seen.insert((f.v.ident, f.kind)));
        let newest = others.len() - 1;
        let plain = String::from_utf8_lossy(name).into_owned();
        let numbered = !self.opts.latest && dirs.is_empty();
        for (k, f) in others.iter().enumerate() {
            if !numbered && k != newest {
                continue;
            }
            let base = if numbered { format!("{plain}.{:05}", k + 1) } else { plain.clone() };
            let shown_v = format!("{shown} (inode {}, tid {:#x})", f.v.inum, f.v.mirror_tid);
            match self.version(host_dir, &base, f, &shown_v) {
                Ok(Some(made)) => {
                    if numbered && k == newest {
                        let mut also = plain.clone();
                        if made.ends_with(".partial") {
                            also.push_str(".partial");
                        }
                        let (from, to) = (host_dir.join(&made), host_dir.join(&also));
                        if std::fs::symlink_metadata(&from).is_ok_and(|m| m.file_type().is_symlink()) {
                            let target = std::fs::read_link(&from).map_err(host_err(&from, "readlink"))?;
                            std::os::unix::fs::symlink(&target, &to).map_err(host_err(&to, "symlink"))?;
                        } else {
                            std::fs::hard_link(&from, &to).map_err(host_err(&to, "link"))?;
                        }
                    }
                }
                Ok(None) => {}
                Err(e @ Error::Interrupted) => return Err(e),
                Err(e) => self.report.unrecoverable.push(format!("{shown_v}: {e}")),
            }
        }
        Ok(())
    }

    /// The children of directories (merged) into `host`.
    fn dir_contents(&mut self, dirs: &[(PfsId, u64)], host: &Path, shown: &str) -> Result<()> {
        let mut merged: BTreeMap<&[u8], Vec<Found>> = BTreeMap::new();
        for d in dirs {
            if let Some(m) = self.children.get(d) {
                for (name, g) in m {
                    merged.entry(name.as_slice()).or_default().extend(g.iter().cloned());
                }
            }
        }
        for (name, group) in merged {
            let child = if shown == "/" {
                format!("/{}", String::from_utf8_lossy(name))
            } else {
                format!("{shown}/{}", String::from_utf8_lossy(name))
            };
            self.group(host, name, &group, &child)?;
        }
        Ok(())
    }

    fn finish_dir(&mut self, dirs: &[Found], host: &Path) -> Result<()> {
        let newest = dirs.iter().max_by_key(|f| f.v.order()).expect("a directory version");
        let ip = Index::inode(self.fs, &newest.v)?;
        self.host.finish_dir(host, &ip.meta)?;
        self.report.dirs += 1;
        Ok(())
    }

    /// Writes one version as `base` (plus `.partial` when bytes are
    /// lost); returns the name made, None when skipped.
    fn version(&mut self, host_dir: &Path, base: &str, f: &Found, shown: &str) -> Result<Option<String>> {
        if !f.v.verified && !self.opts.relaxed {
            self.report.unrecoverable.push(format!("{shown}: {UNVOUCHED}"));
            return Ok(None);
        }
        let ip = Index::inode(self.fs, &f.v)?;
        let meta = &ip.meta;
        let host = host_dir.join(base);
        if !f.v.verified {
            self.report.unverified.push(format!(
                "{} (inode {}: no blockref vouches for it)",
                host.display(),
                f.v.inum
            ));
        }
        match meta.obj_type() {
            ObjType::Regfile => {
                let key = (f.v.pfs, f.v.inum, f.v.ident);
                let hard = meta.nlinks.get() > 1;
                if let Some((first, partial)) = self.linked.get(&key).filter(|_| hard) {
                    // Another name of a version written already: a link to it.
                    let name = if *partial { format!("{base}.partial") } else { base.to_string() };
                    let to = host_dir.join(&name);
                    self.host.make_room(&to)?;
                    std::fs::hard_link(first, &to).map_err(host_err(&to, "link"))?;
                    self.report.links += 1;
                    return Ok(Some(name));
                }
                let file = self.host.create_file(&host, meta)?;
                let c: Completeness = read_version(self.fs, &ip, self.opts.relaxed, &mut |off, bytes| {
                    file.write_all_at(bytes, off)
                })?;
                self.host.finish_file(&file, &host, meta, 0)?;
                drop(file);
                if c.lost.is_empty() {
                    if hard {
                        self.linked.insert(key, (host.clone(), false));
                    }
                    self.report.whole += 1;
                    if c.unverified > 0 {
                        self.report.unverified.push(format!(
                            "{} ({} of {} bytes unverified)",
                            host.display(),
                            c.unverified,
                            c.size
                        ));
                    }
                    Ok(Some(base.to_string()))
                } else {
                    let name = format!("{base}.partial");
                    let to = host_dir.join(&name);
                    if to.exists() {
                        return Err(Error::invalid(format!("{}: already exists", to.display())));
                    }
                    std::fs::rename(&host, &to).map_err(host_err(&to, "rename"))?;
                    if hard {
                        self.linked.insert(key, (to.clone(), true));
                    }
                    self.report.partial.push(format!(
                        "{} ({} of {} bytes lost)",
                        to.display(),
                        c.lost_bytes(),
                        c.size
                    ));
                    Ok(Some(name))
                }
            }
            ObjType::Softlink => {
                let mut target = Vec::new();
                let c = read_version(self.fs, &ip, self.opts.relaxed, &mut |off, bytes| {
                    let end = off as usize + bytes.len();
                    if target.len() < end {
                        target.resize(end, 0);
                    }
                    target[off as usize..end].copy_from_slice(bytes);
                    Ok(())
                })?;
                if !c.is_whole()
                    || target.len() as u64 != meta.size.get()
                    || target.len() > 4 * INODE_MAXNAME * 16
                {
                    return Err(Error::invalid("symlink target lost".to_string()));
                }
                self.host.make_room(&host)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &host)
                    .map_err(host_err(&host, "symlink"))?;
                if self.host.modes == ModePolicy::Preserve {
                    std::os::unix::fs::lchown(&host, Some(meta.unix_uid()), Some(meta.unix_gid()))
                        .map_err(host_err(&host, "chown"))?;
                }
                self.report.whole += 1;
                Ok(Some(base.to_string()))
            }
            other => {
                self.report.skipped.push(format!("{shown}: {other} (inode {}) not extracted", f.v.inum));
                Ok(None)
            }
        }
    }
}
