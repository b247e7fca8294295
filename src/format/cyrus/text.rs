//! Text decoding for names and headers: IMAP modified UTF-7 (RFC 3501
//! mailbox names) and message subjects (RFC 2047 words, 8-bit headers).

use mail_parser::MessageParser;

/// Decode an IMAP modified UTF-7 mailbox name (invalid ones stay as they are).
pub fn decode_mutf7(s: &str) -> String {
    crate::mutf7::decode_lossy(s)
}

/// The decoded `Subject:` of a message (RFC 2047 words decoded, raw 8-bit
/// bytes read as UTF-8, or as ISO-8859-1 on lines that are not UTF-8).
/// Only the header block is parsed.
pub fn subject_of(msg: &[u8]) -> Option<String> {
    let head = utf8_header_block(msg);
    MessageParser::new()
        .parse_headers(&head)
        .and_then(|m| m.subject().map(|s| s.trim().to_string()))
}

/// The header block (up to and with the empty line), each line that is not
/// valid UTF-8 read as ISO-8859-1: servers keep raw 8-bit headers
/// (`munge8bit: no`), and those that are not UTF-8 are mostly Latin-1.
fn utf8_header_block(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len().min(16 * 1024));
    for line in msg.split_inclusive(|b| *b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(_) => out.extend_from_slice(line),
            Err(_) => {
                let s: String = line.iter().map(|&b| char::from(b)).collect();
                out.extend_from_slice(s.as_bytes());
            }
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    out
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
    fn subjects() {
        let subject =
            |h: &str| subject_of(format!("From: a\r\n{h}\r\nTo: b\r\n\r\nSubject: no").as_bytes());
        assert_eq!(
            subject("Subject: =?UTF-8?B?Q2hsb8OpIENoZW4=?=").unwrap(),
            "Chloé Chen"
        );
        assert_eq!(
            subject("Subject: =?ISO-8859-1?Q?Gr=FC=DFe_x?= =?UTF-8?Q?y?= z").unwrap(),
            "Grüße xy z"
        );
        assert_eq!(subject("Subject: Hello\r\n world").unwrap(), "Hello world");
        assert_eq!(subject("Subject: Réunion 8-bit").unwrap(), "Réunion 8-bit");
        assert_eq!(subject("X-No: subject"), None);
        let latin1 = b"From: Fran\xe7oise\r\nSubject: R\xe9union \xe0 Z\xfcrich\r\n\r\nbody \xff";
        assert_eq!(subject_of(latin1).unwrap(), "Réunion à Zürich");
    }
}
