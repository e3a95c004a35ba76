//! The read commands (`ls`, `cat`, `stat`, `get`), once, over the one read
//! interface ([`FsView`]): on the committed image in a reading run, on the
//! session's state (the changes of the commands before them) in a writing
//! run. `get`, on either, is [`crate::host::extract`], itself written
//! against [`FsView`].

use super::{stdout_error, write_entry};
use crate::cli::edit::EditCommand;
use crate::error::{Error, Result};
use crate::format::{Blockref, BlockrefType, ObjType};
use crate::read::pfs::Inode;
use crate::read::view::{FsView, ViewInode};
use std::io::Write;

/// Runs `cat`, `stat` or `ls` on `view`; `Ok(false)` for other commands.
pub(super) fn read_command(view: &dyn FsView, cmd: &EditCommand, out: &mut dyn Write) -> Result<bool> {
    let w = stdout_error;
    match cmd {
        EditCommand::Cat { path } => {
            let (inum, ip) = view.resolve(path)?;
            if ip.data.is_dir() {
                return Err(Error::IsADirectory(path.clone()));
            }
            let mut buf = std::io::BufWriter::new(&mut *out);
            view.read(inum, &mut buf)?;
            buf.flush().map_err(w)?;
        }
        EditCommand::Stat { json, path } => {
            let (inum, ip) = view.resolve(path)?;
            // Before a commit the session's blockref of an inode is not
            // meaningful: the inode's key alone is shown then.
            let (bref, loc) = ip.at.clone().map(|(b, loc)| (*b, loc)).unwrap_or_else(|| {
                let mut b = Blockref::zeroed();
                b.type_ = BlockrefType::Inode.into();
                b.key = inum.into();
                (b, Default::default())
            });
            let ino = Inode { bref: &bref, loc, data: &ip.data };
            let report = crate::dump::inode::describe(&view.label(), Some(path.clone()), &ino);
            if *json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::Internal(format!("cannot encode JSON: {e}")))?;
                writeln!(out, "{text}").map_err(w)?;
            } else {
                out.write_all(report.to_text().as_bytes()).map_err(w)?;
            }
        }
        EditCommand::Ls { long, all, path } => {
            let (inum, ip) = view.resolve(path)?;
            let mut out = std::io::BufWriter::new(out);
            if !ip.data.is_dir() {
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                entry(view, &ip, name.as_bytes(), *long, &mut out)?;
            } else {
                let mut entries = view.readdir(inum)?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for e in entries.iter().filter(|e| *all || !e.name.starts_with(b".")) {
                    if *long {
                        let child = view.inode(e.inum)?;
                        entry(view, &child, &e.name, true, &mut out)?;
                    } else {
                        out.write_all(&e.name).map_err(w)?;
                        out.write_all(b"\n").map_err(w)?;
                    }
                }
            }
            out.flush().map_err(w)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// One `ls` line of inode `ip`.
fn entry(view: &dyn FsView, ip: &ViewInode<'_>, name: &[u8], long: bool, out: &mut dyn Write) -> Result<()> {
    let target =
        if long && ip.data.obj_type() == ObjType::Softlink { Some(view.read_link(ip)?) } else { None };
    write_entry(&ip.data, name, long, target.as_deref(), out)
}
