//! Restore targets: where restored messages are written, behind one trait.
//!
//! Three kinds, named by [`TargetSpec`]: a Maildir++ tree ([`maildir`]), a
//! tree of mbox files ([`mbox`]) and an IMAP server ([`imap`]). Each keeps
//! folders, flags and internal dates, and skips what it already holds.
//!
//! What "already holds" means: messages are recognised by their bytes
//! alone ([`content_digest`], a SHA-256 of the bytes with every line ending
//! in CRLF, as IMAP serves them), per folder, with counts. The engine
//! numbers the items of a job that have the same bytes in one folder
//! (`copy` 1, 2, ...); a target that holds k copies skips copies 1..=k and
//! appends the others. So m distinct items with one content (differing in
//! flags only) become m messages, messages sharing a Message-ID but not
//! their bytes are all kept, and a run repeated adds nothing.
//!
use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::model::Millis;

pub mod imap;
pub mod maildir;
pub mod mbox;

/// One message to restore.
#[derive(Clone, Copy, Debug)]
pub struct RestoreMessage<'a> {
    /// Folder path components, e.g. `["Inbox", "Projects"]`.
    pub folder: &'a [String],
    /// The message exactly as it should be stored (RFC 5322, CRLF or LF).
    pub bytes: &'a [u8],
    /// IMAP words: system flags (`\Seen`) and keywords (`$Forwarded`,
    /// `undelete_23_11_26`).
    pub flags: &'a [String],
    /// The message's received date.
    pub internal_date: Millis,
    /// [`content_digest`] of `bytes`.
    pub digest: &'a str,
    /// Which copy of these bytes in this folder this is, from 1: the
    /// target skips it when it holds at least `copy` copies.
    pub copy: u32,
}

impl RestoreMessage<'_> {
    /// The length of the bytes with CRLF line ends (what IMAP counts).
    pub fn wire_len(&self) -> u64 {
        wire_len(self.bytes)
    }
}

/// What [`Target::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Restored,
    /// The target already had this message in that folder.
    Skipped,
}

/// A place restored messages are written to.
pub trait Target: Send {
    /// Make sure `folder` (and its parents) exist.
    fn ensure_folder(&mut self, folder: &[String]) -> Result<()>;
    /// Store one message in `msg.folder` (created if needed), unless that
    /// folder already holds it.
    fn append(&mut self, msg: &RestoreMessage) -> Result<AppendOutcome>;
    /// Flush and close; the target is not used afterwards.
    fn finish(&mut self) -> Result<()>;
}

/// How an IMAP target protects its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    /// `imap://` without `?starttls`: no TLS at all.
    Plain,
    /// `imap://...?starttls`: STARTTLS right after the greeting; refused
    /// when the server does not offer it.
    StartTls,
    /// `imaps://`: TLS from the first byte.
    Implicit,
}

/// Where an IMAP target is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapSpec {
    pub tls: TlsMode,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// Mailbox path components every restored folder is put under
    /// (`imap://u@h:143/Restored/2013` → `["Restored", "2013"]`).
    pub prefix: Vec<String>,
    /// A file whose first line is the password.
    pub password_file: PathBuf,
    /// PEM certificates to trust besides the public web roots (for a
    /// server with a private CA, or its own self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// How long one command may take (`?timeout=SECS`); 120 s if unset.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl ImapSpec {
    /// The deadline of one command.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(crate::restore::imap::DEFAULT_TIMEOUT)
    }
}

/// A parsed `to=` target (serialisable, so queued jobs can be stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetSpec {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Imap(ImapSpec),
}

/// Open a target, ready to take messages.
pub fn open_target(spec: &TargetSpec) -> Result<Box<dyn Target>> {
    open_target_with(
        spec,
        &std::sync::Arc::new(crate::restore::cancel::Cancel::default()),
    )
}

/// [`open_target`] for a job: `cancel` stops its connections at once.
pub fn open_target_with(
    spec: &TargetSpec,
    cancel: &std::sync::Arc<crate::restore::cancel::Cancel>,
) -> Result<Box<dyn Target>> {
    Ok(match spec {
        TargetSpec::Maildir(path) => Box::new(maildir::MaildirTarget::open(path)?),
        TargetSpec::Mbox(path) => Box::new(mbox::MboxTarget::open(path)?),
        TargetSpec::Imap(spec) => Box::new(imap::ImapTarget::open(spec, cancel)?),
    })
}

/// A folder as a target stores it: `None` is the INBOX, otherwise the path
/// of a folder below the root. The INBOX's children are `["INBOX", ...]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FolderPath(pub Vec<String>);

impl FolderPath {
    pub fn is_inbox(&self) -> bool {
        self.0.len() == 1 && self.0[0] == "INBOX"
    }
}

/// Neutralise folder components so no target can be steered outside its
/// root or into a name it cannot hold:
/// - an empty path is the INBOX; a first component `Inbox` (any case)
///   becomes `INBOX`;
/// - empty, `.` and `..` components become `_`, `_.`, `_..`;
/// - NUL and other control characters become `_`.
///
/// Characters that are special only to one target (`/`, `.`, the IMAP
/// hierarchy delimiter) are handled by that target.
pub fn clean_folder(folder: &[String]) -> FolderPath {
    let mut out = Vec::with_capacity(folder.len().max(1));
    for (i, c) in folder.iter().enumerate() {
        let c: String = c
            .chars()
            .map(|ch| if ch.is_control() { '_' } else { ch })
            .collect();
        let c = match c.as_str() {
            "" | "." | ".." => format!("_{c}"),
            _ if i == 0 && c.eq_ignore_ascii_case("inbox") => "INBOX".to_string(),
            _ => c,
        };
        out.push(c);
    }
    if out.is_empty() {
        out.push("INBOX".to_string());
    }
    FolderPath(out)
}

/// How many copies of each [`content_digest`] a folder holds.
pub(crate) type Copies = HashMap<String, u32>;

/// Hex SHA-256 of `bytes` with lone LF line ends read as CRLF.
pub fn content_digest(bytes: &[u8]) -> String {
    let mut h = CrlfDigest::default();
    h.update(bytes);
    h.finish()
}

/// The length of `bytes` with lone LF line ends read as CRLF.
pub fn wire_len(bytes: &[u8]) -> u64 {
    let mut n = bytes.len() as u64;
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

/// [`content_digest`] fed in pieces (a file read in chunks).
#[derive(Default)]
pub struct CrlfDigest {
    sha: sha2::Sha256,
    last_cr: bool,
}

impl CrlfDigest {
    pub fn update(&mut self, mut bytes: &[u8]) {
        use sha2::Digest;
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            let cr_before = if i == 0 {
                self.last_cr
            } else {
                bytes[i - 1] == b'\r'
            };
            self.sha.update(&bytes[..i]);
            self.sha
                .update(if cr_before { &b"\n"[..] } else { &b"\r\n"[..] });
            self.last_cr = false;
            bytes = &bytes[i + 1..];
        }
        if let Some(&last) = bytes.last() {
            self.last_cr = last == b'\r';
        }
        self.sha.update(bytes);
    }

    pub fn finish(self) -> String {
        use sha2::Digest;
        self.sha
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Whether `s` looks like a [`content_digest`] (64 lowercase hex digits).
pub(crate) fn is_content_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The unfolded, trimmed value of the first header `name` (case-insensitive)
/// in the header block of `bytes`, read up to the first empty line.
pub fn header_value(bytes: &[u8], name: &str) -> Option<String> {
    let mut found: Option<Vec<u8>> = None;
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(v) = found.as_mut() {
                v.push(b' ');
                v.extend_from_slice(trim_bytes(line));
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                found = Some(trim_bytes(&line[colon + 1..]).to_vec());
            }
        }
    }
    found.map(|v| String::from_utf8_lossy(&v).trim().to_string())
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Keywords (flags that are not `\System` flags) that are valid IMAP atoms;
/// others are dropped with a warning, since no target could store them.
pub(crate) fn keywords(flags: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    for f in flags {
        if f.starts_with('\\') {
            continue;
        }
        if f.is_empty() || !f.bytes().all(is_atom_char) {
            log::warn!("dropping flag {f:?}: not a valid IMAP keyword");
            continue;
        }
        if !out.iter().any(|k: &&str| k.eq_ignore_ascii_case(f)) {
            out.push(f.as_str());
        }
    }
    out
}

/// RFC 3501 ATOM-CHAR, minus `]` (resp-specials).
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

/// Refuse a target root that is empty.
pub(crate) fn check_root(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("the target path is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn clean_folder_neutralises() {
        assert_eq!(clean_folder(&[]).0, s(&["INBOX"]));
        assert_eq!(clean_folder(&s(&["inbox", "P"])).0, s(&["INBOX", "P"]));
        assert_eq!(clean_folder(&s(&["A", "inbox"])).0, s(&["A", "inbox"]));
        assert_eq!(
            clean_folder(&s(&["..", ".", "", "a\0b"])).0,
            s(&["_..", "_.", "_", "a_b"])
        );
        assert!(clean_folder(&s(&["Inbox"])).is_inbox());
    }

    #[test]
    fn header_value_unfolds() {
        let m = b"Subject: x\r\nMessage-ID:\r\n  <a@b>\r\nX: y\r\n\r\nMessage-ID: <no>\r\n";
        assert_eq!(header_value(m, "message-id").as_deref(), Some("<a@b>"));
        assert_eq!(
            header_value(b"A: b\n\nMessage-ID: <x>\n", "Message-ID"),
            None
        );
    }

    #[test]
    fn digests_read_lf_as_crlf() {
        let crlf = b"A: b\r\n\r\nx\r\n";
        assert_eq!(content_digest(b"A: b\n\nx\n"), content_digest(crlf));
        assert_eq!(wire_len(b"A: b\n\nx\n"), crlf.len() as u64);
        assert_ne!(content_digest(b"A: b\n\ny\n"), content_digest(crlf));
        // Fed in pieces, a CRLF cut in two is still one line end.
        let mut h = CrlfDigest::default();
        h.update(b"A: b\r");
        h.update(b"\n\r\nx\r\n");
        assert_eq!(h.finish(), content_digest(crlf));
        assert!(is_content_digest(&content_digest(b"")));
    }

    #[test]
    fn keywords_filtered() {
        let f = s(&[
            "\\Seen",
            "$Forwarded",
            "bad word",
            "undelete_23_11_26",
            "$forwarded",
        ]);
        assert_eq!(keywords(&f), vec!["$Forwarded", "undelete_23_11_26"]);
    }
}
