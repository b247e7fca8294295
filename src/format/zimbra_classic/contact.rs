//! Contact fields from the BEncoded `metadata` column: a dictionary whose
//! `fld` dictionary holds the fields (`firstName`, `email`...); without
//! `fld`, the top level's string values are taken.

use serde_json::{Map, Value};

/// Nesting deeper than this is damage.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match *self.b.get(self.i)? {
            b'd' => {
                self.i += 1;
                let mut m = Map::new();
                while *self.b.get(self.i)? != b'e' {
                    let k = match self.value(depth + 1)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                }
                self.i += 1;
                Some(Value::Object(m))
            }
            b'l' => {
                self.i += 1;
                let mut v = Vec::new();
                while *self.b.get(self.i)? != b'e' {
                    v.push(self.value(depth + 1)?);
                }
                self.i += 1;
                Some(Value::Array(v))
            }
            b'i' => {
                let end = self.i + self.b[self.i..].iter().position(|&c| c == b'e')?;
                let n: i64 = std::str::from_utf8(&self.b[self.i + 1..end])
                    .ok()?
                    .parse()
                    .ok()?;
                self.i = end + 1;
                Some(Value::from(n))
            }
            c if c.is_ascii_digit() => {
                let colon = self.i + self.b[self.i..].iter().position(|&c| c == b':')?;
                let len: usize = std::str::from_utf8(&self.b[self.i..colon])
                    .ok()?
                    .parse()
                    .ok()?;
                let start = colon + 1;
                let s = self.b.get(start..start.checked_add(len)?)?;
                self.i = start + len;
                Some(Value::String(String::from_utf8_lossy(s).into_owned()))
            }
            _ => None,
        }
    }
}

/// The contact fields of a metadata value, `None` when it does not decode.
pub fn fields(metadata: &[u8]) -> Option<Map<String, Value>> {
    let mut p = Parser { b: metadata, i: 0 };
    let Value::Object(top) = p.value(0)? else {
        return None;
    };
    let src = match top.get("fld") {
        Some(Value::Object(f)) => f.clone(),
        _ => top,
    };
    let out: Map<String, Value> = src
        .into_iter()
        .filter(|(_, v)| matches!(v, Value::String(_)))
        .collect();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fld_dictionary() {
        let m = b"d3:fldd5:email8:a@x.test9:firstName5:Jos\xc3\xa9e1:vi10ee";
        let f = fields(m).unwrap();
        assert_eq!(f["email"], "a@x.test");
        assert_eq!(f["firstName"], "Jos\u{e9}");
        assert!(fields(b"d3:fld").is_none());
    }
}
