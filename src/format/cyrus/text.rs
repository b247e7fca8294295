//! Text decoding for names and headers: IMAP modified UTF-7 (RFC 3501
//! mailbox names) and RFC 2047 encoded words (message subjects).

use base64::Engine;

/// Decode an IMAP modified UTF-7 mailbox name (invalid ones stay as they are).
pub fn decode_mutf7(s: &str) -> String {
    crate::mutf7::decode_lossy(s)
}

/// The unfolded value of the first `Subject:` header of a message, decoded
/// (RFC 2047 words; raw 8-bit bytes read as UTF-8, lossily).
pub fn subject_of(msg: &[u8]) -> Option<String> {
    let head_end = find(msg, b"\r\n\r\n")
        .or_else(|| find(msg, b"\n\n"))
        .unwrap_or(msg.len().min(64 * 1024));
    let head = &msg[..head_end];
    let mut value: Option<Vec<u8>> = None;
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.extend_from_slice(line);
                continue;
            }
            break;
        }
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            value = Some(line[8..].to_vec());
        }
    }
    let raw = String::from_utf8_lossy(&value?).into_owned();
    Some(decode_rfc2047(raw.trim()))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Decode RFC 2047 encoded words; whitespace between two adjacent encoded
/// words is dropped. Unknown charsets are decoded as Latin-1.
pub fn decode_rfc2047(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    loop {
        let Some(start) = rest.find("=?") else {
            out.push_str(&pending_ws);
            out.push_str(rest);
            break;
        };
        let (before, from) = rest.split_at(start);
        match parse_word(from) {
            Some((text, used)) => {
                if !(last_was_word && before.chars().all(char::is_whitespace)) {
                    out.push_str(&pending_ws);
                    out.push_str(before);
                }
                pending_ws.clear();
                out.push_str(&text);
                last_was_word = true;
                rest = &from[used..];
                let ws_len = rest.len() - rest.trim_start().len();
                pending_ws.push_str(&rest[..ws_len]);
                rest = &rest[ws_len..];
            }
            None => {
                out.push_str(&pending_ws);
                pending_ws.clear();
                out.push_str(before);
                out.push_str("=?");
                rest = &from[2..];
                last_was_word = false;
            }
        }
    }
    out
}

/// Parse `=?charset?enc?text?=` at the start of `s`.
fn parse_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = body[..q1].split('*').next()?.to_ascii_lowercase();
    let rest = &body[q1 + 1..];
    let q2 = rest.find('?')?;
    let enc = &rest[..q2];
    let text_and = &rest[q2 + 1..];
    let end = text_and.find("?=")?;
    let text = &text_and[..end];
    if text.contains(' ') {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .ok()?,
        "Q" | "q" => {
            let b = text.as_bytes();
            let mut v = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'_' => v.push(b' '),
                    b'=' if i + 2 < b.len() => {
                        let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                        v.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    c => v.push(c),
                }
                i += 1;
            }
            v
        }
        _ => return None,
    };
    let text = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        _ => bytes.iter().map(|&c| c as char).collect(),
    };
    Some((text, 2 + q1 + 1 + q2 + 1 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutf7() {
        assert_eq!(decode_mutf7("R&AOk-unions"), "Réunions");
        assert_eq!(decode_mutf7("Entw&APw-rfe"), "Entwürfe");
        assert_eq!(decode_mutf7("&ZeVnLIqe-"), "日本語");
        assert_eq!(decode_mutf7("&ANE-and&APo- &- Co"), "Ñandú & Co");
        assert_eq!(decode_mutf7("plain"), "plain");
    }

    #[test]
    fn rfc2047() {
        assert_eq!(decode_rfc2047("=?UTF-8?B?Q2hsb8OpIENoZW4=?="), "Chloé Chen");
        assert_eq!(
            decode_rfc2047("=?ISO-8859-1?Q?Gr=FC=DFe_x?= =?UTF-8?Q?y?= z"),
            "Grüße xy z"
        );
        assert_eq!(decode_rfc2047("no words"), "no words");
        let m = b"From: a\r\nSubject: Hello\r\n  world\r\nTo: b\r\n\r\nSubject: no";
        assert_eq!(subject_of(m).unwrap(), "Hello  world");
    }
}
