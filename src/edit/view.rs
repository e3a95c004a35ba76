//! Read commands inside a writing run: they see the session, that is the
//! changes of the commands before them, not only the committed image.

use super::{stdout_error, Events};
use crate::cli::edit::EditCommand;
use crate::error::{Error, Result};
use crate::format::{Blockref, BlockrefType, InodeData, ObjType};
use crate::read::pfs::Inode;
use crate::write::session::{PfsRef, Session};
use std::io::Write;

/// The inode `path` names in the session ('/': the PFS root).
fn resolve(session: &Session, pfs: &PfsRef, path: &str) -> Result<(u64, InodeData)> {
    let (_, name, e) = session.resolve_parent(pfs, path)?;
    let inum = match (name.is_empty(), e) {
        (true, _) => pfs.root_inum,
        (false, Some(e)) => e.inum,
        (false, None) => return Err(Error::NotFound(path.to_string())),
    };
    Ok((inum, session.inode_data(pfs, inum)?))
}

/// Runs one read command on the session's state (`get` through the
/// session-side extraction of [`super::get`]).
pub(super) fn execute_in_session(
    session: &Session,
    pfs: &PfsRef,
    cmd: &EditCommand,
    out: &mut dyn Write,
    events: &mut dyn Events,
) -> Result<()> {
    let w = stdout_error;
    match cmd {
        EditCommand::Cat { path } => {
            let (inum, ip) = resolve(session, pfs, path)?;
            if ip.meta.obj_type() == ObjType::Directory {
                return Err(Error::IsADirectory(path.clone()));
            }
            let mut buf = std::io::BufWriter::new(&mut *out);
            session.read_data(pfs, inum, &mut buf)?;
            buf.flush().map_err(w)?;
        }
        EditCommand::Stat { json, path } => {
            let (inum, ip) = resolve(session, pfs, path)?;
            // The blockref as the session knows it is not meaningful before
            // the commit: show the inode's key alone.
            let mut bref = Blockref::zeroed();
            bref.type_ = BlockrefType::Inode.into();
            bref.key = inum.into();
            let ino = Inode { bref: &bref, loc: Default::default(), data: &ip };
            let report = crate::dump::inode::describe(&pfs.label, Some(path.clone()), &ino);
            if *json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::InvalidArgument(format!("cannot encode JSON: {e}")))?;
                writeln!(out, "{text}").map_err(w)?;
            } else {
                out.write_all(report.to_text().as_bytes()).map_err(w)?;
            }
        }
        EditCommand::Ls { long, all, path } => {
            let (inum, ip) = resolve(session, pfs, path)?;
            let mut out = std::io::BufWriter::new(out);
            if ip.meta.obj_type() != ObjType::Directory {
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                entry(session, pfs, inum, &ip, name.as_bytes(), *long, &mut out)?;
            } else {
                let mut entries = session.readdir(pfs, inum)?;
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, e) in entries.iter().filter(|(n, _)| *all || !n.starts_with(b".")) {
                    if *long {
                        let child = session.inode_data(pfs, e.inum)?;
                        entry(session, pfs, e.inum, &child, name, true, &mut out)?;
                    } else {
                        out.write_all(name).map_err(w)?;
                        out.write_all(b"\n").map_err(w)?;
                    }
                }
            }
            out.flush().map_err(w)?;
        }
        EditCommand::Get { force, path, hostdir } => {
            let opts = crate::host::extract::ExtractOptions { force: *force, ..Default::default() };
            let stats =
                super::get::get(session, pfs, path, std::path::Path::new(hostdir), &opts, &mut |s| {
                    events.extracting(s)
                })?;
            events.extracted(&stats);
        }
        EditCommand::Pfs { json }
        | EditCommand::Maint(crate::cli::edit_maint::MaintCommand::PfsList { json }) => {
            super::maint::list(&session.pfs_inodes()?.iter().collect::<Vec<_>>(), *json, out)?
        }
        _ => return Err(Error::Internal("not a read command".into())),
    }
    Ok(())
}

/// One `ls` line of the session's inode `inum`.
fn entry(
    session: &Session,
    pfs: &PfsRef,
    inum: u64,
    ip: &InodeData,
    name: &[u8],
    long: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut target = None;
    if long && ip.meta.obj_type() == ObjType::Softlink {
        let mut t = Vec::new();
        session.read_data(pfs, inum, &mut t)?;
        target = Some(t);
    }
    super::write_entry(ip, name, long, target.as_deref(), out)
}
