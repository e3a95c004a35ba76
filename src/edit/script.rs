//! Scripts of editor commands: one command per line or per `;`, `#`
//! comments, words quoted as a POSIX shell quotes them.

use crate::error::{Error, Result};

/// One command of a script: the text as written (for echoing and error
/// messages), the line it starts on, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// 1-based line of the script (1 for a `-c` string).
    pub number: usize,
    pub words: Vec<String>,
}

/// Splits a script into commands: a newline or an unquoted `;` ends a
/// command; an unquoted `#` at the start of a word starts a comment that
/// runs to the end of the line; blank commands are dropped. Quoting is a
/// shell's: '...' keeps everything, "..." and a backslash escape.
/// Unbalanced quotes are a usage error naming the line.
pub fn split(text: &str) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start_line = 1;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    // Quote state: None, Some('\''), Some('"').
    let mut quote: Option<char> = None;
    let mut word_start = true;
    let finish = |cur: &mut String, number: usize, out: &mut Vec<Line>| -> Result<()> {
        let t = cur.trim();
        if !t.is_empty() {
            let words = shlex::split(t)
                .ok_or_else(|| Error::Usage(format!("line {number}: cannot split {t:?} into words")))?;
            out.push(Line { text: t.to_string(), number, words });
        }
        cur.clear();
        Ok(())
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\n') | (None, ';') => {
                finish(&mut cur, start_line, &mut out)?;
                if c == '\n' {
                    line += 1;
                }
                start_line = line;
                word_start = true;
                continue;
            }
            (None, '#') if word_start => {
                // A comment: skip to the end of the line (kept for the newline arm).
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
                continue;
            }
            (None, '\'') | (None, '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '\\') | (Some('"'), '\\') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    if n == '\n' {
                        line += 1;
                    }
                    cur.push(n);
                }
                word_start = false;
                continue;
            }
            _ => {}
        }
        if c == '\n' {
            line += 1;
        }
        word_start = quote.is_none() && c.is_whitespace();
        cur.push(c);
    }
    if quote.is_some() {
        return Err(Error::Usage(format!("line {start_line}: unbalanced quotes in {:?}", cur.trim())));
    }
    finish(&mut cur, start_line, &mut out)?;
    Ok(out)
}

/// Reads a script from `path` (`-`: standard input) and splits it.
pub fn read(path: &str) -> Result<Vec<Line>> {
    use std::io::Read;
    let io = |op: &'static str| move |source| Error::Io { path: path.into(), op, offset: 0, source };
    let mut text = String::new();
    if path == "-" {
        std::io::stdin().lock().read_to_string(&mut text).map_err(io("read"))?;
    } else {
        std::fs::File::open(path).map_err(io("open"))?.read_to_string(&mut text).map_err(io("read"))?;
    }
    split(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Vec<String>> {
        split(text).unwrap().into_iter().map(|l| l.words).collect()
    }

    #[test]
    fn lines_semicolons_comments_and_quotes() {
        let got = words("mkdir /a; put x '/a/b c'\n# comment; rm /z\n  ls /a # trailing\nrm \"/q;r\" '#x'\n");
        let want: Vec<Vec<&str>> =
            vec![vec!["mkdir", "/a"], vec!["put", "x", "/a/b c"], vec!["ls", "/a"], vec!["rm", "/q;r", "#x"]];
        assert_eq!(got, want);
        let lines = split("ls\n\nmkdir /x ; rm /y\n").unwrap();
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 3, 3]);
        assert_eq!(lines[2].text, "rm /y");
        assert_eq!(words("echo a\\;b"), vec![vec!["echo", "a;b"]]);
        assert_eq!(words("ls a#b"), vec![vec!["ls", "a#b"]], "# inside a word is not a comment");
    }

    #[test]
    fn unbalanced_quotes_name_the_line() {
        let e = split("ls\nput 'x /y\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unbalanced"), "{e}");
    }
}
