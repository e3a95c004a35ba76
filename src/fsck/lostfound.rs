//! `/lost+found` (`-y`): an inode of a PFS's index that no directory entry
//! names (its names were in a block that was cut out, or the entry was
//! lost otherwise) is named `#INUM` in the PFS root's `/lost+found`,
//! created as e2fsck creates it (mode 0700, in the root directory) or
//! reused when present; its link count becomes 1 and its `iparent` that
//! directory. In the run's write session (one commit for the whole run).
//! Not done while the PFS still has unreadable node blocks: the names may
//! lie there.

use super::INODE_NLINKS;
use super::{FsckReport, Place, RepairMode};
use crate::error::Result;
use std::collections::BTreeMap;

pub(super) fn lost_found_pass(
    tx: &mut super::txn::RepairTx,
    mode: RepairMode,
    report: &mut FsckReport,
) -> Result<()> {
    let unreadable = super::rebuild::pfs_with_unreadable_nodes(report);
    // Unnamed inodes, by PFS: (finding, inum).
    let mut todo: BTreeMap<String, Vec<(usize, u64)>> = BTreeMap::new();
    for (i, f) in report.findings.iter().enumerate() {
        if let Place::Inode { pfs, inum, path: None, .. } = &f.location {
            if f.problem.id == INODE_NLINKS.id && !f.repaired && !unreadable.contains(pfs) {
                todo.entry(pfs.clone()).or_default().push((i, *inum));
            }
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    if mode != RepairMode::Yes {
        for (i, inum) in todo.values().flatten() {
            report.findings[*i].detail.push_str(&format!("; -y files it as /lost+found/#{inum}"));
        }
        return Ok(());
    }
    let outcome = (|| -> Result<Vec<(usize, std::result::Result<String, String>)>> {
        let s = tx.session()?;
        let mut each = Vec::new();
        for (label, list) in &todo {
            let opened = s.pfs(Some(label)).and_then(|pfs| {
                let dir = super::txn::undone_on_error(s, |s| s.fix_lost_found(&pfs))??;
                Ok((pfs, dir))
            });
            let (pfs, dir) = match opened {
                Ok(x) => x,
                Err(e) => {
                    each.extend(list.iter().map(|&(i, _)| (i, Err(e.to_string()))));
                    continue;
                }
            };
            for &(i, inum) in list {
                let cp = s.checkpoint();
                match s.fix_reattach(&pfs, dir, inum) {
                    Ok(path) => each.push((i, Ok(path))),
                    Err(e) => {
                        s.restore(cp)?;
                        each.push((i, Err(e.to_string())));
                    }
                }
            }
        }
        Ok(each)
    })();
    match outcome {
        Ok(each) => {
            for (i, r) in each {
                let f = &mut report.findings[i];
                match r {
                    Ok(path) => f.done(format!("filed as {path} (nlinks 1)")),
                    Err(why) => f.left(why),
                }
            }
        }
        Err(e) => {
            for (i, _) in todo.values().flatten() {
                report.findings[*i].left(&e);
            }
        }
    }
    Ok(())
}
