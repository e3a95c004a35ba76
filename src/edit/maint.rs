//! The maintenance commands of the editor ([`MaintCommand`]) on a write
//! session: each appends one line per change, the same in the checking
//! pass and the applying pass (see [`super::run`]).

use crate::cli::edit_maint::MaintCommand;
use crate::error::Result;
use crate::write::session::{
    default_snapshot_name, now_us, parse_check, parse_comp, parse_pfs_type, Session,
};

/// The time a default snapshot name carries: taken once per process, so
/// that both passes of a run name the snapshot alike.
fn snapshot_time() -> u64 {
    static NOW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NOW.get_or_init(now_us)
}

/// Applies one maintenance write command; `pfs` is the editor's `--pfs`.
pub fn apply(
    session: &mut Session,
    pfs: Option<&str>,
    cmd: &MaintCommand,
    changes: &mut Vec<String>,
) -> Result<()> {
    match cmd {
        MaintCommand::PfsList { .. } => {}
        MaintCommand::PfsCreate { pfs_type, label } => {
            let t = parse_pfs_type(pfs_type)?;
            let p = session.pfs_create(label, t)?;
            changes.push(format!("create PFS {label} (type {t}, key {:#018x})", p.key));
        }
        MaintCommand::PfsDelete { label } => {
            session.pfs_delete(label)?;
            changes.push(format!("delete PFS {label} (its blocks are freed by bulkfree)"));
        }
        MaintCommand::Snapshot { name } => {
            let source = session.pfs(pfs)?;
            let name = name.clone().unwrap_or_else(|| default_snapshot_name(&source.label, snapshot_time()));
            session.snapshot(&source, &name)?;
            changes.push(format!("snapshot PFS {} as {name} (blocks shared, nothing copied)", source.label));
        }
        MaintCommand::Setcomp { recursive, rewrite, algo, path } => {
            let r = set_methods(session, pfs, path, parse_comp(algo)?, *recursive, *rewrite)?;
            changes.push(format!("set compression {algo} on {path}{r}"));
        }
        MaintCommand::Setcheck { recursive, rewrite, algo, path } => {
            let r = set_methods(session, pfs, path, parse_check(algo)?, *recursive, *rewrite)?;
            changes.push(format!("set check method {algo} on {path}{r}"));
        }
        MaintCommand::Bulkfree => {
            let r = session.bulkfree()?;
            changes.push(format!(
                "bulkfree: {} chunk(s) of 16 KiB in use; freed {} ({} bytes), staged {} (freed by the next \
                 bulkfree), in use but marked free {}, staged but in use {}, kept for older header copies {}",
                r.in_use,
                r.freed,
                r.freed_bytes(),
                r.staged,
                r.unmarked,
                r.restored,
                r.kept_for_older_copies
            ));
        }
        MaintCommand::Growfs { size } => {
            let r = session.growfs(*size)?;
            if r.new_size == r.old_size {
                changes.push(format!("growfs: the size stays {:#x}", r.old_size));
            } else {
                changes.push(format!(
                    "growfs from {:#x} to {:#x}: {} new zone(s), header copies {:?} added, {} bytes more free",
                    r.old_size, r.new_size, r.zones, r.header_copies, r.free_added
                ));
            }
        }
        MaintCommand::Destroy { path } => {
            let p = session.pfs(pfs)?;
            let e = session.destroy_entry(&p, path)?;
            changes.push(format!(
                "destroy directory entry {path} (inode {} left in the index: destroy-inum {} removes it)",
                e.inum, e.inum
            ));
        }
        MaintCommand::DestroyInum { inum } => {
            let p = session.pfs(pfs)?;
            session.destroy_inum(&p, *inum)?;
            changes
                .push(format!("destroy inode {inum} of PFS {} (its blocks are freed by bulkfree)", p.label));
        }
    }
    Ok(())
}

/// setcomp / setcheck; the change line's tail.
fn set_methods(
    session: &mut Session,
    pfs: Option<&str>,
    path: &str,
    methods: crate::write::session::Methods,
    recursive: bool,
    rewrite: bool,
) -> Result<String> {
    let p = session.pfs(pfs)?;
    let r = session.set_methods(&p, path, methods, recursive, rewrite)?;
    Ok(format!(
        "{}: {} inode(s) changed, {} data block(s) rewritten",
        if recursive { " and below" } else { "" },
        r.inodes,
        r.blocks
    ))
}

/// `pfs-list`: one line per PFS root inode of `roots` (label, type,
/// subtype, pfs_clid, pfs_fsid).
pub fn list(roots: &[&crate::format::InodeData], json: bool, out: &mut dyn std::io::Write) -> Result<()> {
    use crate::format::uuid_from_disk;
    let w = |source| crate::Error::Io { path: "standard output".into(), op: "write", offset: 0, source };
    if json {
        let rows: Vec<serde_json::Value> = roots
            .iter()
            .map(|ip| {
                let m = &ip.meta;
                serde_json::json!({
                    "label": String::from_utf8_lossy(ip.name()),
                    "type": m.pfs_type().to_string(),
                    "subtype": m.pfs_subtype().to_string(),
                    "pfs_clid": uuid_from_disk(&m.pfs_clid).to_string(),
                    "pfs_fsid": uuid_from_disk(&m.pfs_fsid).to_string(),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).map_err(|e| w(e.into()))?;
        return writeln!(out, "{text}").map_err(w);
    }
    // One line per PFS where the terminal is wide enough (--wide-like, 121
    // columns); else the two UUIDs go on lines of their own below it.
    let wide = crate::dump::layout::width() >= 121;
    if wide {
        writeln!(out, "{:<24} {:<12} {:<9} {:<36} PFS_FSID", "LABEL", "TYPE", "SUBTYPE", "PFS_CLID")
            .map_err(w)?;
    } else {
        writeln!(out, "{:<24} {:<12} {:<9} PFS_CLID / PFS_FSID", "LABEL", "TYPE", "SUBTYPE").map_err(w)?;
    }
    for ip in roots {
        let m = &ip.meta;
        let (label, kind, sub) =
            (String::from_utf8_lossy(ip.name()), m.pfs_type().to_string(), m.pfs_subtype().to_string());
        let (clid, fsid) = (uuid_from_disk(&m.pfs_clid), uuid_from_disk(&m.pfs_fsid));
        if wide {
            writeln!(out, "{label:<24} {kind:<12} {sub:<9} {clid:<36} {fsid}").map_err(w)?;
        } else {
            writeln!(out, "{label:<24} {kind:<12} {sub}\n    {clid}\n    {fsid}").map_err(w)?;
        }
    }
    Ok(())
}
