//! Parser for the Cyrus replication "data list" (dlist) lines stored in a
//! backup chunk: `<ts> APPLY <key> <value>\r\n`, with literals read by byte
//! count (`{N}`, `{N+}`, and message literals `%{partition guid size}`), so
//! message bodies containing CRLF never split a line.

/// One dlist value. Strings are kept as bytes; message literals are not
/// copied, only located inside the chunk buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An atom, quoted string, literal or `\Flag`.
    Str(Vec<u8>),
    /// The atom `NIL`.
    Nil,
    /// `( … )`
    List(Vec<Value>),
    /// `%( key value … )`
    KvList(Vec<(Vec<u8>, Value)>),
    /// `%{partition guid size}\r\n<bytes>`: `start` is the offset of the
    /// bytes inside the buffer the line was parsed from.
    File {
        guid: String,
        size: u64,
        start: usize,
    },
}

impl Value {
    /// The value as text (lossy), when it is a string.
    pub fn as_str(&self) -> Option<String> {
        match self {
            Value::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value as a decimal number, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The value of `key` in a kvlist (first match).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::KvList(kv) => kv
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The elements of a list (empty for anything else).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(v) => v,
            _ => &[],
        }
    }
}

/// One parsed chunk line.
#[derive(Debug)]
pub struct Line {
    pub ts: i64,
    /// The verb (`APPLY`).
    pub verb: String,
    /// The command name (`MAILBOX`, `MESSAGE`...).
    pub name: String,
    pub value: Value,
}

/// Why a line could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends inside the line (truncated chunk).
    Truncated,
    /// The bytes do not follow the grammar at this offset.
    Syntax(usize),
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

type PResult<T> = Result<T, ParseError>;

const MAX_DEPTH: usize = 64;

impl<'a> Parser<'a> {
    fn peek(&self) -> PResult<u8> {
        self.buf.get(self.pos).copied().ok_or(ParseError::Truncated)
    }

    fn expect(&mut self, c: u8) -> PResult<()> {
        if self.peek()? == c {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::Syntax(self.pos))
        }
    }

    fn is_atom_byte(c: u8) -> bool {
        !matches!(c, b' ' | b'(' | b')' | b'\r' | b'\n' | b'"' | b'{')
    }

    fn atom(&mut self) -> PResult<&'a [u8]> {
        let start = self.pos;
        while self.pos < self.buf.len() && Self::is_atom_byte(self.buf[self.pos]) {
            self.pos += 1;
        }
        if self.pos == self.buf.len() {
            return Err(ParseError::Truncated);
        }
        if self.pos == start {
            return Err(ParseError::Syntax(start));
        }
        Ok(&self.buf[start..self.pos])
    }

    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                b'\r' | b'\n' => return Err(ParseError::Syntax(self.pos - 1)),
                _ => out.push(c),
            }
        }
    }

    fn number(&mut self) -> PResult<u64> {
        let start = self.pos;
        while self.peek()?.is_ascii_digit() {
            self.pos += 1;
        }
        std::str::from_utf8(&self.buf[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseError::Syntax(start))
    }

    fn crlf(&mut self) -> PResult<()> {
        if self.peek()? == b'\r' {
            self.pos += 1;
        }
        self.expect(b'\n')
    }

    /// `{N}` or `{N+}` then CRLF then N bytes.
    fn literal(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'{')?;
        let n = self.number()? as usize;
        if self.peek()? == b'+' {
            self.pos += 1;
        }
        self.expect(b'}')?;
        self.crlf()?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or(ParseError::Syntax(self.pos))?;
        if end > self.buf.len() {
            return Err(ParseError::Truncated);
        }
        let v = self.buf[self.pos..end].to_vec();
        self.pos = end;
        Ok(v)
    }

    fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => Ok(self.atom()?.to_vec()),
        }
    }

    fn file(&mut self) -> PResult<Value> {
        // after "%{"
        let _partition = self.atom()?;
        self.expect(b' ')?;
        let guid = String::from_utf8_lossy(self.atom()?).to_ascii_lowercase();
        self.expect(b' ')?;
        let size = self.number()?;
        self.expect(b'}')?;
        self.crlf()?;
        let start = self.pos;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .ok_or(ParseError::Syntax(start))?;
        if end > self.buf.len() {
            return Err(ParseError::Truncated);
        }
        self.pos = end;
        Ok(Value::File { guid, size, start })
    }

    fn value(&mut self, depth: usize) -> PResult<Value> {
        if depth > MAX_DEPTH {
            return Err(ParseError::Syntax(self.pos));
        }
        match self.peek()? {
            b'(' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek()? == b')' {
                        self.pos += 1;
                        return Ok(Value::List(items));
                    }
                    if !items.is_empty() {
                        self.expect(b' ')?;
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            b'%' => {
                self.pos += 1;
                match self.peek()? {
                    b'(' => {
                        self.pos += 1;
                        let mut kv = Vec::new();
                        loop {
                            if self.peek()? == b')' {
                                self.pos += 1;
                                return Ok(Value::KvList(kv));
                            }
                            if !kv.is_empty() {
                                self.expect(b' ')?;
                            }
                            let k = self.astring()?;
                            self.expect(b' ')?;
                            let v = self.value(depth + 1)?;
                            kv.push((k, v));
                        }
                    }
                    b'{' => {
                        self.pos += 1;
                        self.file()
                    }
                    _ => Err(ParseError::Syntax(self.pos)),
                }
            }
            b'"' => Ok(Value::Str(self.quoted()?)),
            b'{' => Ok(Value::Str(self.literal()?)),
            _ => {
                let a = self.atom()?;
                if a == b"NIL" {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Str(a.to_vec()))
                }
            }
        }
    }
}

/// Parse the line starting at `pos` in `buf`. Returns the line (or `None`
/// for a `#` comment line) and the offset just past its line end.
pub fn parse_line(buf: &[u8], pos: usize) -> Result<(Option<Line>, usize), ParseError> {
    let mut p = Parser { buf, pos };
    if p.peek()? == b'#' {
        let nl = buf[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .ok_or(ParseError::Truncated)?;
        return Ok((None, pos + nl + 1));
    }
    // Seconds that fit in milliseconds of an i64: 2^64-1 is damage, not
    // -1 (a 1969-12-31 state).
    let at = p.pos;
    let ts = i64::try_from(p.number()?)
        .ok()
        .filter(|t| t.checked_mul(1000).is_some())
        .ok_or(ParseError::Syntax(at))?;
    p.expect(b' ')?;
    let verb = String::from_utf8_lossy(p.atom()?).into_owned();
    p.expect(b' ')?;
    let name = String::from_utf8_lossy(&p.astring()?).to_ascii_uppercase();
    p.expect(b' ')?;
    let value = p.value(0)?;
    p.crlf()?;
    Ok((
        Some(Line {
            ts,
            verb,
            name,
            value,
        }),
        p.pos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_out_of_range_are_damage() {
        for ts in ["18446744073709551615", "9223372036854775807"] {
            let line = format!("{ts} APPLY SEEN %(A 1)\r\n");
            assert_eq!(
                parse_line(line.as_bytes(), 0).unwrap_err(),
                ParseError::Syntax(0),
                "{ts}"
            );
        }
        let ok = parse_line(b"1795422208 APPLY SEEN %(A 1)\r\n", 0).unwrap();
        assert_eq!(ok.0.unwrap().ts, 1_795_422_208);
    }

    #[test]
    fn parses_mailbox_with_plus_literal_and_file() {
        let buf = b"# cyrus backup: chunk start\r\n\
1 APPLY MAILBOX %(UNIQUEID abc MBOXNAME \"user.a.R b\" ANNOTATIONS (%(ENTRY /specialuse VALUE {5+}\r\n\\Sent)) RECORD (%(UID 1 FLAGS (\\Seen $X) GUID NIL)))\r\n\
2 APPLY MESSAGE (%{default 0123 3}\r\na\r\n %{default 4567 1}\r\nz)\r\n\
3 APPLY UNMAILBOX user.a.b\r\n";
        let (l, p) = parse_line(buf, 0).unwrap();
        assert!(l.is_none());
        let (l, p) = parse_line(buf, p).unwrap();
        let l = l.unwrap();
        assert_eq!(l.ts, 1);
        assert_eq!(l.name, "MAILBOX");
        assert_eq!(
            l.value.get("MBOXNAME").unwrap().as_str().unwrap(),
            "user.a.R b"
        );
        let rec = &l.value.get("RECORD").unwrap().items()[0];
        assert_eq!(
            rec.get("FLAGS").unwrap().items()[0].as_str().unwrap(),
            "\\Seen"
        );
        assert_eq!(rec.get("GUID"), Some(&Value::Nil));
        let ann = &l.value.get("ANNOTATIONS").unwrap().items()[0];
        assert_eq!(ann.get("VALUE").unwrap().as_str().unwrap(), "\\Sent");
        let (l, p) = parse_line(buf, p).unwrap();
        let l = l.unwrap();
        match &l.value.items()[0] {
            Value::File { guid, size, start } => {
                assert_eq!((guid.as_str(), *size), ("0123", 3));
                assert_eq!(&buf[*start..*start + 3], b"a\r\n");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(l.value.items().len(), 2);
        let (l, p) = parse_line(buf, p).unwrap();
        assert_eq!(l.unwrap().value.as_str().unwrap(), "user.a.b");
        assert_eq!(p, buf.len());
        assert_eq!(
            parse_line(&buf[..40], 29).unwrap_err(),
            ParseError::Truncated
        );
    }
}
