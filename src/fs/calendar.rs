//! Appointments and tasks as `.ics`: the `text/calendar` part of their blob,
//! transfer-decoded (base64, quoted-printable) but otherwise byte-exact.

use std::io::Read;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use mail_parser::{Encoding, MessageParser, MimeHeaders};

use crate::format::BackupReader;
use crate::model::BlobRef;

/// Blobs larger than this are served as they are, not parsed.
const PARSE_MAX: u64 = 64 << 20;

/// The decoded `text/calendar` part of a MIME message, if it has one.
///
/// The part is taken as the message carries it: only the transfer encoding
/// is undone, never the charset. The line break before a MIME boundary
/// belongs to the boundary (RFC 2046), so a calendar whose last line lost its
/// CRLF that way gets it back: iCalendar ends every line with one.
pub fn calendar_part(message: &[u8]) -> Option<Vec<u8>> {
    let parsed = MessageParser::default().parse(message)?;
    let part = parsed.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("calendar"))
        })
    })?;
    let raw = message.get(part.offset_body as usize..part.offset_end as usize)?;
    let mut bytes = match part.encoding {
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(raw)?,
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)?
        }
        Encoding::None => raw.to_vec(),
    };
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    Some(bytes)
}

/// The `.ics` bytes of calendar blobs, computed once and kept (they are
/// small); a blob without a calendar part is served as it is.
pub struct Calendars {
    lru: Mutex<LruCache<String, Option<Arc<Vec<u8>>>>>,
}

impl Calendars {
    pub fn new(entries: usize) -> Calendars {
        Calendars {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(entries.max(1)).expect("nonzero"),
            )),
        }
    }

    /// `Some(bytes)` of the calendar part, `None` when the blob is to be
    /// served whole; an error when the blob cannot be read.
    pub fn get(
        &self,
        reader: &dyn BackupReader,
        blob: &BlobRef,
        size: u64,
    ) -> std::io::Result<Option<Arc<Vec<u8>>>> {
        if let Some(v) = self.lru.lock().unwrap().get(&blob.locator) {
            return Ok(v.clone());
        }
        let v = if size > PARSE_MAX {
            None
        } else {
            let mut message = Vec::with_capacity(size as usize);
            // Bounded: a stream longer than its size is not held whole.
            reader
                .open_blob(blob)?
                .take(size.saturating_add(1))
                .read_to_end(&mut message)?;
            calendar_part(&message).map(Arc::new)
        };
        self.lru
            .lock()
            .unwrap()
            .put(blob.locator.clone(), v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_quoted_printable_parts_are_decoded() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nSUMMARY:Caf\u{e9} = ok\r\nEND:VCALENDAR\r\n";
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(ics);
        let msg = format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/calendar\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        assert_eq!(calendar_part(msg.as_bytes()).unwrap(), ics.as_bytes());
        let qp = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nSUMMARY:Caf=C3=A9 =3D ok\r\nEND:VCALENDAR\r\n";
        let msg = format!(
            "Subject: x\r\nContent-Type: text/calendar; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}"
        );
        assert_eq!(calendar_part(msg.as_bytes()).unwrap(), ics.as_bytes());
        assert!(calendar_part(b"Subject: x\r\n\r\nplain\r\n").is_none());
    }
}
