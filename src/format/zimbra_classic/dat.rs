//! Rows of a MySQL `SELECT … INTO OUTFILE` dump (`db/mail_item.dat`):
//! fields separated by `,`, strings optionally enclosed in `"`, `\` escaping
//! the next byte, rows ending at an unescaped LF, NULL written `\N`.

use std::io::{self, BufRead, Read};

/// One field: `None` is SQL NULL.
pub type Field = Option<Vec<u8>>;

/// No real row comes near this (the metadata column is the largest); a
/// longer line is damage, and is dropped.
pub const MAX_ROW: usize = 16 * 1024 * 1024;

/// One line of a dump: its fields, or why it does not split.
#[derive(Debug, PartialEq)]
pub enum Line {
    Row(Vec<Field>),
    /// A malformed line: the reason, and the fields read before the damage
    /// (so that its id may still be known).
    Bad(String, Vec<Field>),
}

/// The byte an escape `\c` stands for (MySQL's LOAD DATA table).
fn unescape(c: u8) -> u8 {
    match c {
        b'0' => 0,
        b'b' => 8,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'Z' => 0x1a,
        other => other,
    }
}

/// Split one line (without its final LF) into fields.
pub fn split(line: &[u8]) -> Line {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let (field, next) = if line.get(i) == Some(&b'"') {
            match quoted(line, i + 1) {
                Ok(v) => v,
                Err(why) => return Line::Bad(why, fields),
            }
        } else {
            unquoted(line, i)
        };
        fields.push(field);
        match line.get(next) {
            None => return Line::Row(fields),
            Some(b',') => i = next + 1,
            Some(_) => {
                return Line::Bad(
                    format!("a quoted field is followed by text at byte {next}"),
                    fields,
                )
            }
        }
    }
}

/// A quoted field starting after its `"`: its bytes and the index after the
/// closing `"`.
fn quoted(line: &[u8], mut i: usize) -> Result<(Field, usize), String> {
    let mut out = Vec::new();
    while let Some(&c) = line.get(i) {
        match c {
            b'\\' => {
                let Some(&e) = line.get(i + 1) else {
                    return Err("the line ends in an escape".into());
                };
                out.push(unescape(e));
                i += 2;
            }
            b'"' => return Ok((Some(out), i + 1)),
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("a quoted field is not closed".into())
}

/// An unquoted field starting at `i`: its bytes (`\N` is NULL) and the index
/// of the `,` or end that ends it.
fn unquoted(line: &[u8], mut i: usize) -> (Field, usize) {
    let start = i;
    let mut out = Vec::new();
    while let Some(&c) = line.get(i) {
        match c {
            b',' => break,
            b'\\' => {
                match line.get(i + 1) {
                    Some(&e) => out.push(unescape(e)),
                    None => out.push(b'\\'),
                }
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let i = i.min(line.len());
    if &line[start..i] == b"\\N" {
        return (None, i);
    }
    (Some(out), i)
}

/// Whether `line` (ending in LF) ends in an escaped LF: an odd number of
/// backslashes before it.
fn lf_escaped(line: &[u8]) -> bool {
    let body = &line[..line.len() - 1];
    body.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The lines of a dump, read one at a time.
pub struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    pub line_no: u64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(inner: R) -> Self {
        Lines {
            inner,
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The next line, `None` at the end. A line longer than [`MAX_ROW`] is
    /// read to its end and returned as bad.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let (read_any, too_long) = self.read_raw()?;
        if !read_any {
            return Ok(None);
        }
        self.line_no += 1;
        if too_long {
            return Ok(Some(Line::Bad(
                format!("longer than {MAX_ROW} bytes"),
                Vec::new(),
            )));
        }
        if self.buf.is_empty() {
            // A row has at least the schema's columns: an empty line is
            // damage like any line that does not split.
            return Ok(Some(Line::Bad("an empty line".into(), Vec::new())));
        }
        Ok(Some(split(&self.buf)))
    }

    /// One raw line into `buf` without its LF: whether anything was read,
    /// and whether the line was too long (then `buf` is cleared).
    fn read_raw(&mut self) -> io::Result<(bool, bool)> {
        self.buf.clear();
        let mut any = false;
        let mut too_long = false;
        loop {
            let room = (MAX_ROW + 1).saturating_sub(self.buf.len()).max(1);
            let n = Read::by_ref(&mut self.inner)
                .take(room as u64)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok((any, too_long));
            }
            any = true;
            let ends_lf = self.buf.last() == Some(&b'\n');
            if ends_lf && !lf_escaped(&self.buf) {
                self.buf.pop();
                if too_long {
                    self.buf.clear();
                }
                return Ok((true, too_long));
            }
            if self.buf.len() > MAX_ROW {
                // Keep reading to the end of the line, holding nothing.
                too_long = true;
                let keep = usize::from(self.buf.last() == Some(&b'\\'));
                let cut = self.buf.len() - keep;
                self.buf.drain(..cut);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &[u8]) -> Vec<Field> {
        match split(s) {
            Line::Row(r) => r,
            Line::Bad(w, _) => panic!("bad: {w}"),
        }
    }

    #[test]
    fn fields_quoted_unquoted_null_and_escapes() {
        let r = row(b"1,\\N,\"a,b\",\"x\\\"y\\\\z\\0\\n\",7\\,8,\"\"");
        assert_eq!(
            r,
            vec![
                Some(b"1".to_vec()),
                None,
                Some(b"a,b".to_vec()),
                Some(b"x\"y\\z\0\n".to_vec()),
                Some(b"7,8".to_vec()),
                Some(Vec::new()),
            ]
        );
    }

    #[test]
    fn quote_not_followed_by_comma_is_bad() {
        assert!(matches!(split(b"1,\"ab\"c,3"), Line::Bad(..)));
        assert!(matches!(split(b"1,\"abc"), Line::Bad(..)));
    }

    #[test]
    fn escaped_lf_continues_the_row() {
        let data = b"1,\"a\\\nb\"\n2,\"c\\\\\"\n";
        let mut l = Lines::new(&data[..]);
        assert_eq!(
            l.next_line().unwrap(),
            Some(Line::Row(vec![Some(b"1".to_vec()), Some(b"a\nb".to_vec())]))
        );
        assert_eq!(
            l.next_line().unwrap(),
            Some(Line::Row(vec![Some(b"2".to_vec()), Some(b"c\\".to_vec())]))
        );
        assert_eq!(l.next_line().unwrap(), None);
    }

    #[test]
    fn an_empty_line_is_bad_and_counted() {
        let mut l = Lines::new(&b"1,2\n\n3,4\n"[..]);
        assert!(matches!(l.next_line().unwrap(), Some(Line::Row(_))));
        assert!(matches!(l.next_line().unwrap(), Some(Line::Bad(..))));
        assert!(matches!(l.next_line().unwrap(), Some(Line::Row(_))));
        assert_eq!(l.line_no, 3);
        assert_eq!(l.next_line().unwrap(), None);
    }
}
