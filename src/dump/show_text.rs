//! `show`'s text form: one entry per blockref, laid out for a width.
//!
//! A million-file volume makes some twelve million lines, so the form is
//! written straight into a caller's buffer: numbers by hand, fields into
//! one reused scratch string, lines by [`layout::pack_into`]. Nothing is
//! allocated per line. [`write_text`] spreads the formatting over every
//! core: the walk fills batches of entries, worker threads format each
//! batch into its own buffer, and the buffers are written in walk order,
//! within a fixed window of batches (memory stays bounded whatever the
//! volume).

use super::layout;
use super::show::{Met, Plan, ShowEntry, ShowOptions, ShowStats, TreeKind};
use super::HEX_DIGITS;
use crate::volume::Hammer2;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

/// Entries per batch handed to a formatting thread.
const BATCH: usize = 1024;

/// Formats `show` entries; holds the reused scratch space.
pub struct TextForm {
    width: Option<usize>,
    /// The fields of the entry being formatted, one after another.
    fields: String,
    /// Where each field of `fields` ends.
    ends: Vec<usize>,
}

impl TextForm {
    /// A form laid out for `width` columns (`None`: one line per entry).
    pub fn new(width: Option<usize>) -> Self {
        TextForm { width, fields: String::with_capacity(512), ends: Vec::with_capacity(32) }
    }

    /// Appends the section heading of `tree` (`topology:`).
    pub fn section(out: &mut String, tree: TreeKind) {
        out.push_str(tree.name());
        out.push_str(":\n");
    }

    /// Appends the lines of `e`, each ending in a newline. First the
    /// blockref (slot, type, data_off) and its verdict (check code,
    /// status, compression), then the rest of the blockref and what it
    /// carries. One line when it fits the width (or without a width), else
    /// continued on lines indented four more. An entry's error stays whole
    /// on its first line, after the verdict, so that the blockref with the
    /// damage is one line to search for.
    pub fn entry(&mut self, e: &ShowEntry<'_>, out: &mut String) {
        let head = self.fields(e);
        let (indent, cont) = (e.depth * 2, e.depth * 2 + 4);
        let width = self.width;
        let newline = &mut |o: &mut String| o.push('\n');
        let all = self.slices(0, self.ends.len());
        match (&e.error, width) {
            (None, _) | (Some(_), None) => layout::pack_into(indent, cont, all, width, out, newline),
            (Some(_), Some(w)) => {
                // The head and the error on one line, indented as
                // `pack_into` indents deep entries; then the rest.
                layout::push_spaces(out, indent.min(w / 3));
                for (i, f) in self.slices(0, head).enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(f);
                }
                out.push('\n');
                layout::pack_into(cont, cont, self.slices(head, self.ends.len()), width, out, newline);
            }
        }
    }

    /// The fields `from..to` of the entry being formatted.
    fn slices(&self, from: usize, to: usize) -> impl Iterator<Item = &str> + '_ {
        (from..to).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.fields[start..self.ends[i]]
        })
    }

    /// Ends the field being written.
    fn close(&mut self) {
        self.ends.push(self.fields.len());
    }

    /// Writes the fields of `e` into `self.fields`; returns how many make
    /// its head (with the error, when there is one).
    fn fields(&mut self, e: &ShowEntry<'_>) -> usize {
        self.fields.clear();
        self.ends.clear();
        let b = &e.bref;
        let f = &mut self.fields;
        f.push('[');
        push_dec(f, e.index as u64);
        f.push(']');
        self.close();
        self.fields.push_str(&b.type_);
        self.close();
        self.fields.push_str("data_off=");
        push_hex(&mut self.fields, b.data_off);
        self.close();
        if e.check_status == "no_media" {
            self.fields.push_str("no-media");
            self.close();
        } else {
            let f = &mut self.fields;
            f.push_str("check=");
            f.push_str(&b.check);
            f.push(':');
            f.push_str(b.check_value.as_str());
            self.close();
            // The status and the compression together: `ok comp=none`.
            let f = &mut self.fields;
            f.push_str(e.check_status);
            f.push_str(" comp=");
            f.push_str(&b.comp);
            self.close();
        }
        if let Some(err) = &e.error {
            self.fields.push_str("ERROR: ");
            self.fields.push_str(err);
            self.close();
        }
        let head = self.ends.len();

        let f = &mut self.fields;
        f.push_str("key=0x");
        push_hex_digits(f, b.key, 16);
        f.push('/');
        push_dec(f, b.keybits.into());
        self.close();
        self.number("psize=", e.physical_size, false);
        self.number("mir=", b.mirror_tid, true);
        self.number("mod=", b.modify_tid, true);
        self.number("upd=", b.update_tid, true);
        if b.flags != 0 {
            self.number("flags=", b.flags.into(), true);
        }
        if b.leaf_count != 0 {
            self.number("leafcnt=", b.leaf_count.into(), false);
        }
        if let Some(st) = &e.stats {
            self.number("data_count=", st.data_count, false);
            self.number("inode_count=", st.inode_count, false);
        }
        if let Some(d) = &e.dirent {
            self.name(&d.name);
            self.number("inum=", d.inum, false);
            self.text("type=", &d.type_);
        }
        if let Some(i) = &e.inode {
            self.number("inum=", i.inum, false);
            self.text("type=", &i.type_);
            let f = &mut self.fields;
            f.push_str("mode=");
            push_octal4(f, i.mode);
            self.close();
            self.number("size=", i.size, false);
            self.number("nlinks=", i.nlinks, false);
            self.name(&i.name);
            if let (Some(t), Some(st)) = (&i.pfs_type, &i.pfs_subtype) {
                let f = &mut self.fields;
                f.push_str("pfs=");
                f.push_str(t);
                f.push('/');
                f.push_str(st);
                self.close();
            }
            if i.direct_data {
                self.text("", "embedded");
            }
        }
        if let Some(fm) = &e.freemap {
            let f = &mut self.fields;
            f.push_str("range=");
            push_hex(f, b.key);
            f.push('-');
            push_hex(f, e.key_end);
            self.close();
            self.number("avail=", fm.avail, true);
            self.number("bigmask=", fm.bigmask.into(), true);
        }
        if e.shared {
            self.text("", "shared (children shown above)");
        }
        if e.children_not_shown > 0 {
            let f = &mut self.fields;
            f.push_str("(+");
            push_dec(f, e.children_not_shown as u64);
            f.push_str(" children not shown)");
            self.close();
        }
        head
    }

    /// A field `label` + `v` (in hex as `0x..` when `hex`).
    fn number(&mut self, label: &str, v: u64, hex: bool) {
        self.fields.push_str(label);
        if hex {
            push_hex(&mut self.fields, v);
        } else {
            push_dec(&mut self.fields, v);
        }
        self.close();
    }

    fn text(&mut self, label: &str, v: &str) {
        self.fields.push_str(label);
        self.fields.push_str(v);
        self.close();
    }

    /// `name="..."`, quoted and escaped as Rust's `{:?}` does.
    fn name(&mut self, name: &str) {
        let f = &mut self.fields;
        f.push_str("name=");
        if name.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\') {
            f.push('"');
            f.push_str(name);
            f.push('"');
        } else {
            // Writing into a String cannot fail.
            let _ = write!(f, "{name:?}");
        }
        self.close();
    }
}

/// Appends `v` in decimal.
pub fn push_dec(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends `v` as `{:#x}` does: `0x` and the digits, no padding.
pub fn push_hex(out: &mut String, v: u64) {
    out.push_str("0x");
    let digits = (64 - v.leading_zeros() as usize).div_ceil(4).max(1);
    push_hex_digits(out, v, digits);
}

/// Appends the low `digits` hex digits of `v` (zero-padded).
pub fn push_hex_digits(out: &mut String, v: u64, digits: usize) {
    let mut buf = [0u8; 16];
    let digits = digits.min(16);
    for (i, d) in buf[..digits].iter_mut().rev().enumerate() {
        *d = HEX_DIGITS[(v >> (4 * i)) as usize & 0xf];
    }
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(&buf[..digits]).unwrap_or_default());
}

/// Appends `v` as `{:04o}` does.
fn push_octal4(out: &mut String, v: u32) {
    let digits = (32 - v.leading_zeros() as usize).div_ceil(3).max(4);
    let mut buf = [0u8; 11];
    for (i, d) in buf[..digits].iter_mut().rev().enumerate() {
        *d = b'0' + ((v >> (3 * i)) & 7) as u8;
    }
    out.push_str(std::str::from_utf8(&buf[..digits]).unwrap_or_default());
}

/// A batch on its way: entries (each with the section heading to put
/// before it), then their text.
struct Batch<'a> {
    seq: u64,
    entries: Vec<(Option<TreeKind>, Met<'a>)>,
    text: String,
}

/// Walks `plan` and writes its entries' text to `out` in walk order (a
/// section heading, `topology:` or `freemap:`, before the first entry of
/// each tree), formatting batches of entries on every core. Returns the
/// dump's totals; `Err` only when `out` fails.
pub fn write_text<'a>(
    fs: &'a Hammer2,
    plan: &'a Plan,
    opts: &ShowOptions,
    width: Option<usize>,
    out: &mut dyn Write,
) -> std::io::Result<ShowStats> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Batches in flight at most (walked, queued, formatted or waiting
    // their turn to be written): the bound on memory.
    let window = 4 * workers;
    // Empty batches go round: writer -> walker -> workers -> writer.
    let (free_tx, free_rx) = sync_channel::<Batch<'a>>(window);
    for _ in 0..window {
        let _ = free_tx.send(Batch { seq: 0, entries: Vec::with_capacity(BATCH), text: String::new() });
    }
    let (work_tx, work_rx) = sync_channel::<Batch<'a>>(window);
    let (done_tx, done_rx) = sync_channel::<Batch<'a>>(window);
    let work_rx = Mutex::new(work_rx);
    std::thread::scope(|s| {
        let walker = s.spawn(move || walk_batches(fs, plan, opts, &free_rx, &work_tx));
        for _ in 0..workers {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            s.spawn(move || {
                let mut form = TextForm::new(width);
                loop {
                    // The lock is held only to take a batch.
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(mut batch)) = next else { break };
                    for (section, met) in batch.entries.drain(..) {
                        if let Some(tree) = section {
                            TextForm::section(&mut batch.text, tree);
                        }
                        form.entry(&met.entry(), &mut batch.text);
                    }
                    if done_tx.send(batch).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Write the batches in order; one that comes early waits its turn.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut failed = None;
        for batch in done_rx.iter() {
            waiting.insert(batch.seq, batch);
            while let Some(mut batch) = waiting.remove(&next) {
                if failed.is_none() {
                    if let Err(e) = out.write_all(batch.text.as_bytes()) {
                        failed = Some(e);
                    }
                }
                next += 1;
                batch.text.clear();
                // The walker may be done: then the batch is no longer needed.
                let _ = free_tx.send(batch);
            }
        }
        drop(free_tx);
        let stats = walker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    })
}

/// The walk of [`write_text`]: fills free batches with blockrefs as met
/// (decoding them is the formatting threads' work) and queues them.
fn walk_batches<'a>(
    fs: &'a Hammer2,
    plan: &'a Plan,
    opts: &ShowOptions,
    free: &Receiver<Batch<'a>>,
    work: &std::sync::mpsc::SyncSender<Batch<'a>>,
) -> ShowStats {
    let mut seq = 0u64;
    let mut section = None;
    let mut batch: Option<Batch<'a>> = None;
    // An error means the writer stopped (its output failed): the batch is dropped.
    let send = |batch: Batch<'a>| drop(work.send(batch));
    let stats = plan.run_met(fs, opts, &mut |e| {
        if batch.is_none() {
            // None when the writer stopped: the walk runs on, unwritten.
            batch = free.recv().ok().map(|mut b| {
                b.seq = seq;
                seq += 1;
                b
            });
        }
        let Some(b) = batch.as_mut() else { return };
        let heading = (section != Some(e.tree)).then_some(e.tree);
        section = Some(e.tree);
        b.entries.push((heading, e));
        if b.entries.len() == BATCH {
            send(batch.take().expect("a batch is being filled"));
        }
    });
    if let Some(b) = batch.take() {
        send(b);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_format_writes_them() {
        let mut values =
            vec![0u64, 1, 7, 8, 9, 10, 15, 16, 255, 256, 0o777, 0o1000, 0x1000_0000, u32::MAX as u64];
        values.extend([u64::MAX, u64::MAX - 1, 1 << 63, 0x0123_4567_89ab_cdef]);
        values.extend((0..64).map(|s| 1u64 << s).chain((0..64).map(|s| (1u64 << s) - 1)));
        for v in values {
            let mut s = String::new();
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v:#x}"));
            s.clear();
            push_dec(&mut s, v);
            assert_eq!(s, v.to_string());
            s.clear();
            push_hex_digits(&mut s, v, 16);
            assert_eq!(s, format!("{v:016x}"));
            let m = v as u32;
            s.clear();
            push_octal4(&mut s, m);
            assert_eq!(s, format!("{m:04o}"));
        }
    }

    #[test]
    fn names_quoted_as_debug_quotes_them() {
        let mut form = TextForm::new(None);
        for name in
            ["f0001", "a b", "", "quote\"", "back\\slash", "tab\t", "nl\n", "\u{7f}", "é", "\u{301}x", "~"]
        {
            form.fields.clear();
            form.name(name);
            assert_eq!(form.fields, format!("name={name:?}"));
        }
    }
}
