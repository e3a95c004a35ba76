//! `inode`: every field of one inode, decoded (`hammer2 printinode`).

use super::BlockrefSummary;
use crate::error::Result;
use crate::format::{
    uuid_from_disk, InodeData, EMBEDDED_BYTES, OPFLAG_COPYIDS, OPFLAG_DIRECTDATA, OPFLAG_PFSROOT,
};
use crate::read::pfs::{Inode, Pfs};
use crate::read::tree::Tree;
use crate::volume::Hammer2;
use serde::Serialize;
use std::fmt::Write;

/// Which inode to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// A path inside the PFS (symlinks are not followed).
    Path(String),
    /// An inode number of the PFS.
    Inum(u64),
}

/// A time stamp: microseconds since the epoch and its ISO-8601 UTC form.
#[derive(Debug, Clone, Serialize)]
pub struct Time {
    pub usec: u64,
    pub iso: String,
}

impl Time {
    pub fn new(usec: u64) -> Self {
        Time { usec, iso: crate::format::time::iso8601(usec) }
    }
}

/// A user or group id, stored as a UUID: DragonFly's `hammer2_to_unix_xid`
/// reads a host-order u32 at `uuid->node[2]`, i.e. bytes 12..16 (`node`
/// starts at byte 10 of `uuid_t`).
#[derive(Debug, Clone, Serialize)]
pub struct Xid {
    pub id: u32,
    pub uuid: String,
}

impl Xid {
    pub fn new(raw: &[u8; 16]) -> Self {
        Xid { id: crate::format::unix_xid(raw), uuid: uuid_from_disk(raw).to_string() }
    }
}

/// Fields that only mean something on a PFS root.
#[derive(Debug, Clone, Serialize)]
pub struct PfsFields {
    pub pfs_type: String,
    pub pfs_subtype: String,
    pub pfs_nmasters: u8,
    pub pfs_inum: u64,
    pub pfs_clid: String,
    pub pfs_fsid: String,
    pub pfs_lsnap_tid: u64,
}

/// Where the inode's content lives.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Content {
    /// Data embedded in the inode (at most 512 bytes).
    Embedded { bytes: u64 },
    /// The four-entry blockset; empty slots are omitted.
    Blockset { blockrefs: Vec<(usize, BlockrefSummary)> },
}

/// Every field of one inode.
#[derive(Debug, Clone, Serialize)]
pub struct InodeReport {
    pub pfs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The blockref that reaches the inode, and where it sits.
    pub bref: BlockrefSummary,
    pub parent_off: u64,
    pub index: usize,
    pub name: String,
    pub inum: u64,
    pub version: u16,
    #[serde(rename = "type")]
    pub type_: String,
    /// Mode bits in octal, e.g. "0755".
    pub mode: String,
    pub uid: Xid,
    pub gid: Xid,
    pub size: u64,
    pub nlinks: u64,
    pub iparent: u64,
    pub name_key: u64,
    pub name_len: u16,
    pub ctime: Time,
    pub mtime: Time,
    pub atime: Time,
    pub btime: Time,
    pub uflags: u32,
    pub uflags_names: Vec<&'static str>,
    pub op_flags: u8,
    pub op_flags_names: Vec<&'static str>,
    pub cap_flags: u16,
    pub rmajor: u32,
    pub rminor: u32,
    pub ncopies: u8,
    pub target_type: u8,
    pub comp_algo: String,
    pub comp_level: u8,
    pub check_algo: String,
    pub data_quota: u64,
    pub inode_quota: u64,
    pub decrypt_check: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pfs_fields: Option<PfsFields>,
    pub content: Content,
}

/// Finds the inode `which` in the PFS labelled `pfs` (default: [`Pfs::default`]) and describes it.
pub fn report(fs: &Hammer2, pfs: Option<&str>, which: &Which) -> Result<InodeReport> {
    let tree = Tree::new(fs);
    let pfs = match pfs {
        Some(label) => Pfs::find(&tree, label)?,
        None => Pfs::default(&tree)?,
    };
    let (ino, path) = match which {
        Which::Path(p) => (pfs.resolve(p)?, Some(p.clone())),
        Which::Inum(n) => (pfs.inode(*n)?, None),
    };
    Ok(describe(&pfs.name(), path, &ino))
}

/// UF_* and SF_* file flags (chflags) by their `ls -o` names.
const UFLAGS: &[(u32, &str)] = &[
    (0x0000_0001, "nodump"),
    (0x0000_0002, "uchg"),
    (0x0000_0004, "uappnd"),
    (0x0000_0008, "opaque"),
    (0x0000_0010, "uunlnk"),
    (0x0000_0040, "nouhistory"),
    (0x0000_0080, "cache"),
    (0x0000_0100, "uxlink"),
    (0x0001_0000, "arch"),
    (0x0002_0000, "schg"),
    (0x0004_0000, "sappnd"),
    (0x0010_0000, "sunlnk"),
    (0x0040_0000, "noshistory"),
    (0x0080_0000, "noscache"),
    (0x0100_0000, "sxlink"),
];

const OPFLAGS: &[(u8, &str)] =
    &[(OPFLAG_DIRECTDATA, "directdata"), (OPFLAG_PFSROOT, "pfsroot"), (OPFLAG_COPYIDS, "copyids")];

/// Describes an inode found in PFS `pfs` (by `path`, if it was).
pub fn describe(pfs: &str, path: Option<String>, ino: &Inode<'_>) -> InodeReport {
    let d: &InodeData = ino.data;
    let m = &d.meta;
    let uflags = m.uflags.get();
    let pfs_fields = m.is_pfsroot().then(|| PfsFields {
        pfs_type: m.pfs_type().to_string(),
        pfs_subtype: m.pfs_subtype().to_string(),
        pfs_nmasters: m.pfs_nmasters,
        pfs_inum: m.pfs_inum.get(),
        pfs_clid: uuid_from_disk(&m.pfs_clid).to_string(),
        pfs_fsid: uuid_from_disk(&m.pfs_fsid).to_string(),
        pfs_lsnap_tid: m.pfs_lsnap_tid.get(),
    });
    let content = if m.is_directdata() {
        Content::Embedded { bytes: m.size.get().min(EMBEDDED_BYTES as u64) }
    } else {
        Content::Blockset { blockrefs: BlockrefSummary::of_set(d.blockset()) }
    };
    InodeReport {
        pfs: pfs.to_string(),
        path,
        bref: BlockrefSummary::new(ino.bref),
        parent_off: ino.loc.parent_off,
        index: ino.loc.index,
        name: String::from_utf8_lossy(d.name()).into_owned(),
        inum: m.inum.get(),
        version: m.version.get(),
        type_: m.obj_type().to_string(),
        mode: format!("{:04o}", m.mode.get()),
        uid: Xid::new(&m.uid),
        gid: Xid::new(&m.gid),
        size: m.size.get(),
        nlinks: m.nlinks.get(),
        iparent: m.iparent.get(),
        name_key: m.name_key.get(),
        name_len: m.name_len.get(),
        ctime: Time::new(m.ctime.get()),
        mtime: Time::new(m.mtime.get()),
        atime: Time::new(m.atime.get()),
        btime: Time::new(m.btime.get()),
        uflags,
        uflags_names: UFLAGS.iter().filter(|(bit, _)| uflags & bit != 0).map(|(_, n)| *n).collect(),
        op_flags: m.op_flags,
        op_flags_names: OPFLAGS.iter().filter(|(bit, _)| m.op_flags & bit != 0).map(|(_, n)| *n).collect(),
        cap_flags: m.cap_flags.get(),
        rmajor: m.rmajor.get(),
        rminor: m.rminor.get(),
        ncopies: m.ncopies,
        target_type: m.target_type,
        comp_algo: m.comp().to_string(),
        comp_level: m.comp_algo >> 4,
        check_algo: m.check().to_string(),
        data_quota: m.data_quota.get(),
        inode_quota: m.inode_quota.get(),
        decrypt_check: m.decrypt_check.get(),
        pfs_fields,
        content,
    }
}

impl InodeReport {
    /// The report as aligned `field  value` lines (what `hammer2_dump inode` prints).
    /// The report as text that fits the terminal (80 columns when the
    /// output is not one): see [`InodeReport::to_text_width`].
    pub fn to_text(&self) -> String {
        self.to_text_width(Some(super::layout::width()))
    }

    /// The report as text: one `field  value` line per field, and one line
    /// per blockref of the blockset; a line longer than `width` continues
    /// on the next, indented (without a width, nothing is continued).
    pub fn to_text_width(&self, wrap: Option<usize>) -> String {
        use super::layout::{pack, words};
        let r = self;
        let mut out = String::new();
        let mut rows: Vec<(&str, String)> = vec![
            ("pfs", r.pfs.clone()),
            ("path", r.path.clone().unwrap_or_default()),
            ("blockref", format!("{} (parent {:#x} slot {})", brief_bref(&r.bref), r.parent_off, r.index)),
            ("name", format!("{:?}", r.name)),
            ("inum", r.inum.to_string()),
            ("version", r.version.to_string()),
            ("type", r.type_.clone()),
            ("mode", r.mode.clone()),
            ("uid", format!("{} ({})", r.uid.id, r.uid.uuid)),
            ("gid", format!("{} ({})", r.gid.id, r.gid.uuid)),
            ("size", r.size.to_string()),
            ("nlinks", r.nlinks.to_string()),
            ("iparent", r.iparent.to_string()),
            ("name_key", format!("{:#018x}", r.name_key)),
            ("name_len", r.name_len.to_string()),
            ("ctime", r.ctime.iso.clone()),
            ("mtime", r.mtime.iso.clone()),
            ("atime", r.atime.iso.clone()),
            ("btime", r.btime.iso.clone()),
            ("uflags", flags(u64::from(r.uflags), &r.uflags_names)),
            ("op_flags", flags(u64::from(r.op_flags), &r.op_flags_names)),
            ("cap_flags", hex_u64(u64::from(r.cap_flags))),
            ("rmajor / rminor", format!("{} / {}", r.rmajor, r.rminor)),
            ("ncopies", r.ncopies.to_string()),
            ("target_type", r.target_type.to_string()),
            ("comp_algo", format!("{} (level {})", r.comp_algo, r.comp_level)),
            ("check_algo", r.check_algo.clone()),
            ("data_quota", r.data_quota.to_string()),
            ("inode_quota", r.inode_quota.to_string()),
            ("decrypt_check", hex_u64(r.decrypt_check)),
        ];
        if r.path.is_none() {
            rows.remove(1);
        }
        if let Some(p) = &r.pfs_fields {
            rows.extend([
                ("pfs_type", format!("{} / {}", p.pfs_type, p.pfs_subtype)),
                ("pfs_nmasters", p.pfs_nmasters.to_string()),
                ("pfs_inum", p.pfs_inum.to_string()),
                ("pfs_clid", p.pfs_clid.clone()),
                ("pfs_fsid", p.pfs_fsid.clone()),
                ("pfs_lsnap_tid", hex_u64(p.pfs_lsnap_tid)),
            ]);
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &rows {
            let line = format!("{k:width$}  {v}");
            if wrap.is_none_or(|w| line.chars().count() <= w) {
                let _ = writeln!(out, "{line}");
                continue;
            }
            // Too long: continued under the value, at its spaces.
            let mut fields = vec![format!("{k:width$} ")];
            fields.extend(words(v));
            for l in pack(0, width + 2, &fields, wrap) {
                let _ = writeln!(out, "{l}");
            }
        }
        match &r.content {
            Content::Embedded { bytes } => {
                let _ = writeln!(out, "{:width$}  embedded data, {bytes} bytes", "content");
            }
            Content::Blockset { blockrefs } if blockrefs.is_empty() => {
                let _ = writeln!(out, "{:width$}  blockset, all slots empty", "content");
            }
            Content::Blockset { blockrefs } => {
                let _ = writeln!(out, "{:width$}  blockset:", "content");
                for (i, b) in blockrefs {
                    let mut fields = vec![format!("[{i}]")];
                    fields.extend(words(&brief_bref(b)));
                    fields.push(format!("key={:#018x}/{}", b.key, b.keybits));
                    fields.push(format!("check={}:{}", b.check, b.check_value));
                    fields.push(format!("comp={}", b.comp));
                    for l in pack(2, 6, &fields, wrap) {
                        let _ = writeln!(out, "{l}");
                    }
                }
            }
        }
        out
    }
}

fn brief_bref(b: &BlockrefSummary) -> String {
    format!("{} data_off={:#x} mir={:#x} mod={:#x}", b.type_, b.data_off, b.mirror_tid, b.modify_tid)
}

fn flags(v: u64, names: &[&str]) -> String {
    if names.is_empty() {
        hex_u64(v)
    } else {
        format!("{:#x} ({})", v, names.join(","))
    }
}

fn hex_u64(v: u64) -> String {
    format!("{v:#x}")
}
