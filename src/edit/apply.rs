//! The write commands: POSIX-like argument handling on top of the
//! [`Session`] operations, and the list of changes each one made.

use crate::cli::edit::EditCommand;
use crate::error::{Error, Result};
use crate::format::ObjType;
use crate::host::import::{import_tree, ImportOptions, ImportReport};
use crate::read::namespace;
use crate::write::session::{now_us, Attrs, DirEntry, PfsRef, Session, SetAttr};

/// The components of an image path (checked as the read commands check
/// them: no '..', no NUL), and the path written canonically.
pub(super) fn canonical(path: &str) -> Result<(Vec<&str>, String)> {
    let parts = namespace::user_path(path)?;
    let text = format!("/{}", parts.join("/"));
    Ok((parts, text))
}

/// What an entry is, in words.
fn kind_name(t: ObjType) -> String {
    match t {
        ObjType::Directory => "directory".into(),
        ObjType::Regfile => "file".into(),
        ObjType::Softlink => "symbolic link".into(),
        t => t.name().into_owned(),
    }
}

fn host_io(path: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_string();
    move |source| Error::Io { path: path.into(), op, offset: 0, source }
}

/// `path` joined with `name` (for "into this directory" targets).
fn join(dir: &str, name: &str) -> String {
    match canonical(dir) {
        Ok((_, text)) if text == "/" => format!("/{name}"),
        Ok((_, text)) => format!("{text}/{name}"),
        Err(_) => format!("{dir}/{name}"),
    }
}

/// The last component of a host or image path.
fn base_name(path: &str) -> Result<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| Error::invalid(format!("{path}: no usable name; give the full image path")))
}

/// Whether `path` names an existing directory of the image ('/' does).
fn is_dir(session: &Session, pfs: &PfsRef, path: &str) -> bool {
    matches!(session.resolve_parent(pfs, path),
        Ok((_, name, e)) if name.is_empty() || e.as_ref().is_some_and(|e| e.obj_type == ObjType::Directory))
}

/// `put [-r] HOST PATH`: the import path of `newfs_hammer2 --populate`
/// (see [`crate::host::import`]), for one object or (with `-r`) a tree.
pub(super) fn put(
    session: &mut Session,
    pfs: &PfsRef,
    (host, path, recursive): (&str, &str, bool),
    changes: &mut Vec<String>,
    progress: &mut dyn FnMut(&ImportReport),
) -> Result<()> {
    let meta = std::fs::symlink_metadata(host).map_err(host_io(host, "stat"))?;
    if meta.is_dir() && !recursive {
        return Err(Error::invalid(format!("{host}: is a directory (put -r copies trees)")));
    }
    if !recursive && !meta.is_file() && !meta.file_type().is_symlink() {
        return Err(Error::invalid(format!(
            "{host}: not a regular file (put -r copies special files as they are)"
        )));
    }
    // As cp -r, an existing directory receives HOSTPATH under its own name
    // (the import decides; `target` names the result in the report).
    let (_, mut target) = canonical(path)?;
    if is_dir(session, pfs, path) {
        target = join(&target, base_name(host)?);
    }
    let opts = ImportOptions { contents: false, ..Default::default() };
    let r = import_tree(session, pfs, std::path::Path::new(host), path, &opts, progress)?;
    changes.push(if meta.is_dir() {
        format!(
            "copy tree {host} to {target} ({} directories, {} files, {} symlinks, {} hard links, {} special files, {} bytes)",
            r.dirs, r.files, r.symlinks, r.hardlinks, r.specials, r.bytes
        )
    } else if meta.is_file() {
        format!("create file {target} ({} bytes from {host})", meta.len())
    } else {
        format!("create {target} (from {host})")
    });
    Ok(())
}

/// Applies one write command to `session`; appends what it changed.
pub(super) fn apply(
    session: &mut Session,
    pfs: &PfsRef,
    cmd: &EditCommand,
    changes: &mut Vec<String>,
) -> Result<()> {
    match cmd {
        EditCommand::Mkdir { parents, mode, paths } => {
            let mode = mode.unwrap_or(0o755);
            for path in paths {
                let (parts, text) = canonical(path)?;
                // Which directories this creates: with -p, the missing tail.
                let mut created = Vec::new();
                if *parents {
                    for i in 1..=parts.len() {
                        let prefix = format!("/{}", parts[..i].join("/"));
                        if created.is_empty() {
                            match session.resolve_parent(pfs, &prefix) {
                                Ok((_, _, None)) => created.push(prefix),
                                Ok(_) => {}
                                Err(_) => break, // mkdir says why
                            }
                        } else {
                            created.push(prefix);
                        }
                    }
                } else {
                    created.push(text);
                }
                session.mkdir(pfs, path, Attrs::now(mode), *parents)?;
                changes
                    .extend(created.into_iter().map(|d| format!("create directory {d} (mode {mode:04o})")));
            }
        }
        EditCommand::Put { recursive, host, path } => {
            put(session, pfs, (host, path, *recursive), changes, &mut |_| {})?;
        }
        EditCommand::Rm { dirs, recursive, force, paths } => {
            for path in paths {
                let (_, text) = canonical(path)?;
                if *force && matches!(session.resolve_parent(pfs, path), Ok((_, _, None))) {
                    continue;
                }
                if *recursive {
                    let (dir, name, e) = session.resolve_parent(pfs, path)?;
                    if name.is_empty() {
                        return Err(Error::invalid(format!("{path}: the root directory cannot be removed")));
                    }
                    let e = e.ok_or_else(|| Error::NotFound(text.clone()))?;
                    remove_tree(session, pfs, dir, &e, &text, changes)?;
                } else {
                    remove(session, pfs, path, *dirs, false, changes)?;
                }
            }
        }
        EditCommand::Rmdir { paths } => {
            for path in paths {
                remove(session, pfs, path, true, true, changes)?;
            }
        }
        EditCommand::Mv { no_target_directory, from, to } => {
            let (_, src) = canonical(from)?;
            let (_, mut dst) = canonical(to)?;
            if !no_target_directory && is_dir(session, pfs, to) {
                dst = join(&dst, base_name(&src)?);
            }
            // Say what rename(2) replaces (nothing when both name one inode).
            let (_, _, old) = session.resolve_parent(pfs, &dst)?;
            let (_, _, moved) = session.resolve_parent(pfs, &src)?;
            let replaced = match (old, moved) {
                (Some(o), Some(m)) if o.inum != m.inum => format!(" (replacing a {})", kind_name(o.obj_type)),
                _ => String::new(),
            };
            session.rename(pfs, &src, &dst)?;
            changes.push(format!("rename {src} to {dst}{replaced}"));
        }
        EditCommand::Ln { symbolic, target, link } => {
            let (_, mut name) = canonical(link)?;
            if is_dir(session, pfs, link) {
                name = join(&name, base_name(target)?);
            }
            if *symbolic {
                session.symlink(pfs, &name, target.as_bytes(), Attrs::now(0o777))?;
                changes.push(format!("create symbolic link {name} -> {target}"));
            } else {
                let (_, t) = canonical(target)?;
                session.link(pfs, &t, &name)?;
                changes.push(format!("create hard link {name} to {t}"));
            }
        }
        EditCommand::Chmod { mode, paths } => {
            for path in paths {
                let (_, text) = canonical(path)?;
                session.setattr(pfs, path, SetAttr { mode: Some(*mode), ..SetAttr::default() })?;
                changes.push(format!("set mode of {text} to {mode:04o}"));
            }
        }
        EditCommand::Chown { owner, paths } => {
            for path in paths {
                let (_, text) = canonical(path)?;
                session.setattr(
                    pfs,
                    path,
                    SetAttr { uid: owner.uid, gid: owner.gid, ..SetAttr::default() },
                )?;
                let show = |id: Option<u32>| id.map_or("-".to_string(), |i| i.to_string());
                changes.push(format!("set owner of {text} to {}:{}", show(owner.uid), show(owner.gid)));
            }
        }
        EditCommand::Touch { atime, mtime, no_create, date, paths } => {
            let t = date.unwrap_or_else(now_us);
            // Neither -a nor -m: both.
            let (set_a, set_m) = if *atime || *mtime { (*atime, *mtime) } else { (true, true) };
            for path in paths {
                let (_, text) = canonical(path)?;
                let (_, name, e) = session.resolve_parent(pfs, path)?;
                if e.is_none() && !name.is_empty() {
                    if *no_create {
                        continue;
                    }
                    session.create_file(pfs, &text, Attrs::now(0o644), std::io::empty(), 0)?;
                    changes.push(format!("create file {text} (empty)"));
                }
                let attr =
                    SetAttr { atime: set_a.then_some(t), mtime: set_m.then_some(t), ..SetAttr::default() };
                session.setattr(pfs, path, attr)?;
                changes.push(format!("set times of {text} to {}", crate::format::time::iso8601(t)));
            }
        }
        EditCommand::Truncate { size, paths } => {
            for path in paths {
                let (_, text) = canonical(path)?;
                session.truncate(pfs, path, *size)?;
                changes.push(format!("set size of {text} to {size}"));
            }
        }
        EditCommand::Write { path, offset, host } => {
            let (_, text) = canonical(path)?;
            let (len, from) = match host.as_deref() {
                None | Some("-") => {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .lock()
                        .read_to_end(&mut buf)
                        .map_err(host_io("standard input", "read"))?;
                    let len = buf.len() as u64;
                    session.write(pfs, path, *offset, buf.as_slice(), len)?;
                    (len, "standard input".to_string())
                }
                Some(h) => {
                    let f = std::fs::File::open(h).map_err(host_io(h, "open"))?;
                    let len = f.metadata().map_err(host_io(h, "stat"))?.len();
                    session.write(pfs, path, *offset, std::io::BufReader::new(f), len).map_err(
                        |e| match e {
                            Error::Io { path, op, offset, source } if path.as_os_str() == "input" => {
                                Error::Io { path: h.into(), op, offset, source }
                            }
                            e => e,
                        },
                    )?;
                    (len, h.to_string())
                }
            };
            changes.push(format!("write {len} bytes at offset {offset} of {text} from {from}"));
        }
        EditCommand::Mknod { mode, path, kind, major, minor } => {
            let (_, text) = canonical(path)?;
            let (t, dev) = match (kind.as_str(), major, minor) {
                ("c" | "u", Some(a), Some(b)) => (ObjType::Cdev, (*a, *b)),
                ("b", Some(a), Some(b)) => (ObjType::Bdev, (*a, *b)),
                ("p", None, None) => (ObjType::Fifo, (0, 0)),
                ("s", None, None) => (ObjType::Socket, (0, 0)),
                ("c" | "u" | "b", _, _) => {
                    return Err(Error::Usage(format!("mknod {path} {kind}: needs MAJOR and MINOR")))
                }
                _ => return Err(Error::Usage(format!("mknod {path} {kind}: takes no MAJOR or MINOR"))),
            };
            let mode = mode.unwrap_or(0o644);
            session.mknod(pfs, &text, t, Attrs::now(mode), dev)?;
            let what = match t {
                ObjType::Cdev | ObjType::Bdev => format!("{} {}:{}", t.name(), dev.0, dev.1),
                t => t.name().into_owned(),
            };
            changes.push(format!("create {what} {text} (mode {mode:04o})"));
        }
        EditCommand::Mkfifo { mode, paths } => {
            let mode = mode.unwrap_or(0o644);
            for path in paths {
                let (_, text) = canonical(path)?;
                session.mknod(pfs, &text, ObjType::Fifo, Attrs::now(mode), (0, 0))?;
                changes.push(format!("create fifo {text} (mode {mode:04o})"));
            }
        }
        _ => return Err(Error::Internal("not a write command".into())),
    }
    Ok(())
}

/// `rm` (`dirs`: `-d`) and `rmdir` (`only_dirs`).
fn remove(
    session: &mut Session,
    pfs: &PfsRef,
    path: &str,
    dirs: bool,
    only_dirs: bool,
    changes: &mut Vec<String>,
) -> Result<()> {
    let (_, text) = canonical(path)?;
    let (_, name, entry) = session.resolve_parent(pfs, path)?;
    if name.is_empty() {
        return Err(Error::invalid(format!("{path}: the root directory cannot be removed")));
    }
    let entry = entry.ok_or_else(|| Error::NotFound(text.clone()))?;
    let is_dir = entry.obj_type == ObjType::Directory;
    if only_dirs && !is_dir {
        return Err(Error::NotADirectory(text));
    }
    if is_dir && !dirs {
        return Err(Error::invalid(format!("{text}: is a directory (use rmdir, rm -d or rm -r)")));
    }
    session.remove(pfs, path, is_dir)?;
    changes.push(format!("remove {} {text}", kind_name(entry.obj_type)));
    Ok(())
}

/// `rm -r`: the entry `e` of directory `dir`, and below it first (depth
/// first, with an explicit stack: trees can be deep).
fn remove_tree(
    session: &mut Session,
    pfs: &PfsRef,
    dir: u64,
    e: &DirEntry,
    text: &str,
    changes: &mut Vec<String>,
) -> Result<()> {
    // (parent, entry, path, children pushed)
    let mut stack = vec![(dir, e.clone(), text.to_string(), false)];
    while let Some((parent, entry, path, expanded)) = stack.pop() {
        if entry.obj_type == ObjType::Directory && !expanded {
            stack.push((parent, entry.clone(), path.clone(), true));
            for (name, child) in session.readdir(pfs, entry.inum)? {
                let child_path = format!("{path}/{}", String::from_utf8_lossy(&name));
                stack.push((entry.inum, child, child_path, false));
            }
            continue;
        }
        session.remove_entry(pfs, parent, &entry, &path, true)?;
        changes.push(format!("remove {} {path}", kind_name(entry.obj_type)));
    }
    Ok(())
}
