//! Output width: every table, dump and report fits the terminal, or 80
//! columns when the output is not a terminal, unless the user asks for
//! the wide form (`--wide`, where a tool has it).
//!
//! Text that cannot be shortened is laid out, never dropped: tables wrap
//! their cells, `show` lines continue on indented lines, and a line that
//! starts with a device path puts the path on a line of its own. A path is
//! never cut (so it can still be copied): only a path longer than the
//! whole width is wider than it.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, ContentArrangement, Table};

/// The width when nothing says otherwise (a pipe, a file).
pub const DEFAULT_WIDTH: usize = 80;
/// The narrowest width honoured: below it, layouts stop being readable.
pub const MIN_WIDTH: usize = 40;

/// Columns available: `$COLUMNS` when it holds a positive number, else the
/// width of the terminal on standard output, else [`DEFAULT_WIDTH`]; never
/// less than [`MIN_WIDTH`].
pub fn width() -> usize {
    let from_env = std::env::var("COLUMNS").ok().and_then(|s| s.trim().parse::<usize>().ok());
    let from_tty = || Table::new().width().map(usize::from);
    from_env
        .filter(|&n| n > 0)
        .or_else(|| from_tty().filter(|&n| n > 0))
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// The width to lay out for: `None` (unlimited) when `wide`, else [`width`].
pub fn limit(wide: bool) -> Option<usize> {
    (!wide).then(width)
}

/// A table as every tool draws them: borders only; with a width, cells
/// wrap so that the table fits it; without, columns are as wide as their
/// content.
pub fn table(width: Option<usize>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    match width {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(u16::try_from(w).unwrap_or(u16::MAX));
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// The widest line of `table` drawn without wrapping.
pub fn natural_width(table: &Table) -> usize {
    let mut t = table.clone();
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// A table of the columns `cols` of `header` and `rows`.
pub fn select(header: &[&str], rows: &[Vec<Cell>], cols: &[usize], width: Option<usize>) -> Table {
    let mut t = table(width);
    t.set_header(cols.iter().map(|&c| header[c]));
    for row in rows {
        t.add_row(cols.iter().map(|&c| row[c].clone()).collect::<Vec<_>>());
    }
    t
}

/// The table of the columns `full` when it fits `width` (or there is no
/// width); otherwise one table per group of columns (each group starts
/// with the key column, repeated), each wrapped to fit.
pub fn split_to_fit(
    header: &[&str],
    rows: &[Vec<Cell>],
    full: &[usize],
    groups: &[&[usize]],
    width: Option<usize>,
) -> Vec<Table> {
    let whole = select(header, rows, full, None);
    match width {
        Some(w) if natural_width(&whole) > w => {
            groups.iter().map(|g| select(header, rows, g, width)).collect()
        }
        _ => vec![whole],
    }
}

/// `"{path}: {rest}"` on one line when it fits `width`; otherwise the path
/// alone (`"{path}:"`) and the rest on the lines after it, indented by two
/// (wrapped at its spaces when it is still too long). A path wider than
/// the width keeps the rest on its line.
pub fn path_line(path: &str, rest: &str, width: Option<usize>) -> String {
    let one = format!("{path}: {rest}");
    match width {
        // A path wider than the whole width gains nothing from a line of
        // its own: the statement stays one line.
        Some(w) if one.chars().count() > w && path.chars().count() < w => {
            let mut lines = vec![format!("{path}:")];
            lines.extend(pack(2, 2, &words(rest), width));
            lines.join("\n")
        }
        _ => one,
    }
}

/// Lays out `fields` (each kept whole where it fits) as lines of at most
/// `width` columns: the first line starts with `indent` spaces, the lines
/// after it with `cont` spaces. Fields are separated by one space; a field
/// longer than a whole line is cut at the line's end and continues on the
/// next. Without a width, everything is one line.
pub fn pack(indent: usize, cont: usize, fields: &[String], width: Option<usize>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    pack_into(indent, cont, fields.iter().map(String::as_str), width, &mut line, &mut |l| {
        lines.push(std::mem::take(l))
    });
    lines
}

/// [`pack`]'s layout written into `out`, with no allocation of its own:
/// `end` is called with `out` at the end of every line (to add a newline,
/// or to take the line).
pub fn pack_into<'f>(
    indent: usize,
    cont: usize,
    fields: impl IntoIterator<Item = &'f str>,
    width: Option<usize>,
    out: &mut String,
    end: &mut dyn FnMut(&mut String),
) {
    let Some(width) = width else {
        push_spaces(out, indent);
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(f);
        }
        end(out);
        return;
    };
    // Deep trees: indentation never takes more than a third of the width.
    let third = width / 3;
    let (indent, cont) = (indent.min(third), cont.min(third + 4));
    let columns = |s: &str| if s.is_ascii() { s.len() } else { s.chars().count() };
    push_spaces(out, indent);
    let mut used = indent; // columns on the current line
    let mut empty = true; // no field on the current line yet
    for field in fields {
        let n = columns(field);
        if !empty && used + 1 + n > width {
            end(out);
            push_spaces(out, cont);
            used = cont;
            empty = true;
        }
        if !empty {
            out.push(' ');
            used += 1;
        }
        empty = false;
        if used + n <= width {
            out.push_str(field);
            used += n;
            continue;
        }
        // Cut a field that does not fit an empty line.
        let mut rest = field;
        while used + columns(rest) > width {
            let room = width.saturating_sub(used).max(1);
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            out.push_str(&rest[..cut]);
            end(out);
            push_spaces(out, cont);
            used = cont;
            rest = &rest[cut..];
        }
        used += columns(rest);
        out.push_str(rest);
    }
    end(out);
}

/// Appends `n` spaces.
pub fn push_spaces(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    let mut n = n;
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

/// The longest parenthesised group [`words`] keeps together.
const GROUP_MAX: usize = 40;

/// Words of a sentence, for [`pack`] to wrap it. A short parenthesised
/// group (`(parent 0x1480140a slot 0)`) stays one word.
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut group: Option<Vec<&str>> = None;
    for w in text.split(' ').filter(|w| !w.is_empty()) {
        if let Some(g) = group.as_mut() {
            g.push(w);
        } else if w.starts_with('(') && !w.ends_with(')') {
            group = Some(vec![w]);
        } else {
            out.push(w.to_string());
        }
        if group.is_some() && w.ends_with(')') {
            let g = group.take().unwrap_or_default();
            let joined = g.join(" ");
            if joined.chars().count() <= GROUP_MAX {
                out.push(joined);
            } else {
                out.extend(g.iter().map(|w| w.to_string()));
            }
        }
    }
    // An unclosed group: its words as they are.
    out.extend(group.unwrap_or_default().iter().map(|w| w.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pack_keeps_fields_whole_and_lines_short() {
        let fields = f(&["[0]", "inode", "data_off=0x1234", "key=0x0000000000000001/0", "name=\"a b\""]);
        assert_eq!(
            pack(2, 6, &fields, None),
            ["  [0] inode data_off=0x1234 key=0x0000000000000001/0 name=\"a b\""]
        );
        let lines = pack(2, 6, &fields, Some(40));
        assert_eq!(
            lines,
            ["  [0] inode data_off=0x1234", "      key=0x0000000000000001/0", "      name=\"a b\""]
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn pack_cuts_only_what_cannot_fit_a_line() {
        let long = "x".repeat(100);
        let lines = pack(0, 4, &f(&["a", &long, "b"]), Some(40));
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        let joined: String = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().concat();
        assert_eq!(joined.matches('x').count(), 100);
        assert!(joined.starts_with('a') && joined.ends_with('b'));
        // Deep indentation is capped at a third of the width.
        let deep = pack(70, 74, &f(&["[0]", "data"]), Some(40));
        assert!(deep.iter().all(|l| l.chars().count() <= 40), "{deep:?}");
    }

    #[test]
    fn words_keep_short_groups_together() {
        assert_eq!(
            words("inode mod=0x17 (parent 0x1480140a slot 0)"),
            ["inode", "mod=0x17", "(parent 0x1480140a slot 0)"]
        );
        assert_eq!(words("a (b c"), ["a", "(b", "c"]);
        let long = format!("x ({} y)", "z".repeat(50));
        assert_eq!(words(&long).len(), 3);
    }

    #[test]
    fn a_path_that_does_not_fit_gets_its_own_line() {
        assert_eq!(path_line("a.img", "clean", Some(80)), "a.img: clean");
        let p = "/".repeat(78);
        assert_eq!(path_line(&p, "clean", Some(80)), format!("{p}:\n  clean"));
        assert_eq!(path_line(&p, "clean", None), format!("{p}: clean"));
        let huge = "/".repeat(90);
        assert_eq!(path_line(&huge, "clean", Some(80)), format!("{huge}: clean"));
    }
}
