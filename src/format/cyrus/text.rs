//! Text decoding for names and headers: IMAP modified UTF-7 (RFC 3501
//! mailbox names) and message subjects (RFC 2047 words, 8-bit headers).

use mail_parser::MessageParser;

/// Decode an IMAP modified UTF-7 mailbox name (invalid ones stay as they are).
pub fn decode_mutf7(s: &str) -> String {
    crate::mutf7::decode_lossy(s)
}

/// The decoded `Subject:` of a message (RFC 2047 words decoded, raw 8-bit
/// bytes read as UTF-8). Only the header block is parsed.
pub fn subject_of(msg: &[u8]) -> Option<String> {
    MessageParser::new()
        .parse_headers(msg)
        .and_then(|m| m.subject().map(|s| s.trim().to_string()))
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
    }
}
