//! `mbox:PATH`: one mboxrd file per folder, in Thunderbird's layout.
//!
//! - The INBOX is `PATH/Inbox`; a folder's children live in the directory
//!   `<folder file>.sbd/` (`PATH/Inbox.sbd/Projects`, `PATH/Archive` and
//!   `PATH/Archive.sbd/2013`). Parent mbox files are created empty.
//! - Component names are kept as they are (UTF-8) except that `/`, `\`,
//!   `%` and a leading `.` are written `%2F`, `%5C`, `%25`, `%2E`, and a
//!   name ending in `.sbd` gets its dot escaped too, so it can never clash
//!   with a child directory.
//! - Each message starts with `From MAILER-DAEMON <asctime of the internal
//!   date, UTC>`; every body line matching `>*From ` gets one more `>`
//!   (mboxrd); a message not ending in a newline gets one; an empty line
//!   follows each message.
//! - Flags become headers added at the top of the stored copy only (the
//!   restored bytes follow unchanged, apart from the quoting): `Status: RO`
//!   or `O` (`\Seen`), `X-Status:` with `A`nswered `F`lagged `T` (draft)
//!   `D`eleted, `X-Keywords:` with the keywords separated by spaces (as
//!   Dovecot writes them), and `X-Mailbackfs-Digest:` with the content
//!   digest (see the module `target`), which recognises it on a second
//!   run; messages without that header (not written by a restore) are not
//!   counted as copies. Added
//!   lines end like the message's first line (CRLF or LF).
//! - Files are opened in append mode and locked with `flock` while written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{
    check_root, clean_folder, is_content_digest, keywords, AppendOutcome, Copies, FolderPath,
    RestoreMessage, Target,
};

pub const DIGEST_HEADER: &str = "X-Mailbackfs-Digest";

pub struct MboxTarget {
    root: PathBuf,
    folders: HashMap<FolderPath, (PathBuf, Copies)>,
}

impl MboxTarget {
    pub fn open(root: &Path) -> Result<MboxTarget> {
        check_root(root)?;
        if root.exists() && !root.is_dir() {
            bail!(
                "mbox target {} exists and is not a directory",
                root.display()
            );
        }
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        Ok(MboxTarget {
            root: root.to_path_buf(),
            folders: HashMap::new(),
        })
    }

    fn file_of(&self, folder: &FolderPath) -> PathBuf {
        let mut path = self.root.clone();
        for (i, c) in folder.0.iter().enumerate() {
            let name = if i == 0 && c == "INBOX" {
                "Inbox".to_string()
            } else {
                escape_component(c)
            };
            if i + 1 < folder.0.len() {
                path.push(format!("{name}.sbd"));
            } else {
                path.push(name);
            }
        }
        path
    }

    fn folder(&mut self, folder: &[String]) -> Result<&mut (PathBuf, Copies)> {
        let folder = clean_folder(folder);
        if !self.folders.contains_key(&folder) {
            for n in 1..=folder.0.len() {
                let file = self.file_of(&FolderPath(folder.0[..n].to_vec()));
                if let Some(dir) = file.parent() {
                    fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                if !file.exists() {
                    File::create(&file)
                        .with_context(|| format!("cannot create {}", file.display()))?;
                } else if !file.is_file() {
                    bail!("{} exists and is not an mbox file", file.display());
                }
            }
            let file = self.file_of(&folder);
            let keys = scan(&file)?;
            self.folders.insert(folder.clone(), (file, keys));
        }
        Ok(self.folders.get_mut(&folder).expect("inserted above"))
    }
}

impl Target for MboxTarget {
    fn ensure_folder(&mut self, folder: &[String]) -> Result<()> {
        self.folder(folder).map(|_| ())
    }

    fn append(&mut self, msg: &RestoreMessage) -> Result<AppendOutcome> {
        let (file, copies) = self.folder(msg.folder)?;
        if copies.get(msg.digest).copied().unwrap_or(0) >= msg.copy {
            return Ok(AppendOutcome::Skipped);
        }
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&*file)
            .with_context(|| format!("cannot open {}", file.display()))?;
        // SAFETY: a plain flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", file.display()));
        }
        let mut w = BufWriter::new(&f);
        // A file left without a final line end (another writer, a crash):
        // end its last line so our `From ` line starts a line.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut last = [b'\n'];
        if len > 0 && f.read_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
            w.write_all(b"\n\n")
                .with_context(|| format!("cannot append to {}", file.display()))?;
        }
        write_message(&mut w, msg)
            .and_then(|_| w.flush())
            .with_context(|| format!("cannot append to {}", file.display()))?;
        drop(w);
        f.sync_data()
            .with_context(|| format!("cannot sync {}", file.display()))?;
        *copies.entry(msg.digest.to_string()).or_default() += 1;
        Ok(AppendOutcome::Restored)
    }

    fn finish(&mut self) -> Result<()> {
        self.folders.clear();
        Ok(())
    }
}

/// Write one message with its flag and digest headers.
fn write_message(w: &mut impl Write, msg: &RestoreMessage) -> std::io::Result<()> {
    let date = chrono::DateTime::from_timestamp_millis(msg.internal_date)
        .unwrap_or_default()
        .format("%a %b %e %H:%M:%S %Y");
    writeln!(w, "From MAILER-DAEMON {date}")?;
    let eol: &[u8] = match msg.bytes.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && msg.bytes[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    };
    let has = |name: &str| msg.flags.iter().any(|f| f.eq_ignore_ascii_case(name));
    w.write_all(if has("\\Seen") {
        b"Status: RO"
    } else {
        b"Status: O"
    })?;
    w.write_all(eol)?;
    let mut xs = String::new();
    for (name, letter) in [
        ("\\Answered", 'A'),
        ("\\Flagged", 'F'),
        ("\\Draft", 'T'),
        ("\\Deleted", 'D'),
    ] {
        if has(name) {
            xs.push(letter);
        }
    }
    if !xs.is_empty() {
        write!(w, "X-Status: {xs}")?;
        w.write_all(eol)?;
    }
    let kws = keywords(msg.flags);
    if !kws.is_empty() {
        write!(w, "X-Keywords: {}", kws.join(" "))?;
        w.write_all(eol)?;
    }
    if is_content_digest(msg.digest) {
        write!(w, "{DIGEST_HEADER}: {}", msg.digest)?;
        w.write_all(eol)?;
    }
    for line in msg.bytes.split_inclusive(|&b| b == b'\n') {
        if is_from_line(line) {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
    }
    if !msg.bytes.ends_with(b"\n") {
        w.write_all(eol)?;
    }
    w.write_all(b"\n")
}

/// `>*From ` (mboxrd: such lines are quoted with one more `>`).
fn is_from_line(line: &[u8]) -> bool {
    let unquoted = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    unquoted.starts_with(b"From ")
}

/// Undo mboxrd quoting of one stored message (everything after its
/// `From ` line, without the separating empty line).
pub fn unquote(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len());
    for line in stored.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b">") && is_from_line(line) {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

pub fn escape_component(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for (i, ch) in c.chars().enumerate() {
        match ch {
            '/' => out.push_str("%2F"),
            '\\' => out.push_str("%5C"),
            '%' => out.push_str("%25"),
            '.' if i == 0 => out.push_str("%2E"),
            _ => out.push(ch),
        }
    }
    if let Some(stem) = out.strip_suffix(".sbd") {
        out = format!("{stem}%2Esbd");
    }
    out
}

/// How many copies of each content digest an mbox file holds, from the
/// `X-Mailbackfs-Digest` header of each message.
fn scan(file: &Path) -> Result<Copies> {
    let f = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut r = BufReader::new(f);
    let mut keys = Copies::new();
    let mut line = Vec::new();
    let mut in_headers = false;
    // The header being unfolded: (name, value).
    let mut current: Option<(String, String)> = None;
    let commit = |h: Option<(String, String)>, keys: &mut Copies| {
        if let Some((name, value)) = h {
            let value = value.trim();
            if name.eq_ignore_ascii_case(DIGEST_HEADER) && is_content_digest(value) {
                *keys.entry(value.to_string()).or_default() += 1;
            }
        }
    };
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.starts_with(b"From ") {
            commit(current.take(), &mut keys);
            in_headers = true;
            continue;
        }
        if !in_headers {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            commit(current.take(), &mut keys);
            in_headers = false;
        } else if text.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.as_mut() {
                v.push(' ');
                v.push_str(text.trim());
            }
        } else {
            commit(current.take(), &mut keys);
            if let Some((name, value)) = text.split_once(':') {
                current = Some((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    commit(current.take(), &mut keys);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::target::content_digest;

    const D1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn quoting_round_trips() {
        let body = b"A: b\n\nFrom me\n>From you\n>>From x\nFromage\n";
        let mut out = Vec::new();
        let flags = vec!["\\Seen".to_string(), "\\Flagged".into(), "$Label1".into()];
        let m = RestoreMessage {
            folder: &[],
            bytes: body,
            flags: &flags,
            internal_date: 1_373_641_380_000,
            digest: D1,
            copy: 1,
        };
        write_message(&mut out, &m).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "From MAILER-DAEMON Fri Jul 12 15:03:00 2013\nStatus: RO\nX-Status: F\n\
                 X-Keywords: $Label1\nX-Mailbackfs-Digest: {D1}\nA: b\n\n>From me\n>>From you\n\
                 >>>From x\nFromage\n\n"
            )
        );
        let stored = &out[out.iter().position(|&b| b == b'\n').unwrap() + 1..out.len() - 1];
        let un = unquote(stored);
        assert!(un.ends_with(body));
    }

    #[test]
    fn layout_and_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = MboxTarget::open(dir.path()).unwrap();
        let f: Vec<String> = vec!["Inbox".into(), "a/b".into(), ".x.sbd".into()];
        let body = b"Message-ID: <1@x>\r\n\r\nhi\r\n";
        let digest = content_digest(body);
        let m = RestoreMessage {
            folder: &f,
            bytes: body,
            flags: &[],
            internal_date: 0,
            digest: &digest,
            copy: 1,
        };
        assert_eq!(t.append(&m).unwrap(), AppendOutcome::Restored);
        assert_eq!(t.append(&m).unwrap(), AppendOutcome::Skipped);
        let second = RestoreMessage { copy: 2, ..m };
        assert_eq!(t.append(&second).unwrap(), AppendOutcome::Restored);
        let file = dir.path().join("Inbox.sbd/a%2Fb.sbd/%2Ex%2Esbd");
        assert!(file.is_file());
        assert!(dir.path().join("Inbox").is_file());
        // A second run counts both copies from the file.
        let mut t = MboxTarget::open(dir.path()).unwrap();
        assert_eq!(t.append(&m).unwrap(), AppendOutcome::Skipped);
        assert_eq!(t.append(&second).unwrap(), AppendOutcome::Skipped);
        let third = RestoreMessage { copy: 3, ..m };
        assert_eq!(t.append(&third).unwrap(), AppendOutcome::Restored);

        // A file without a final newline gets one before our From line.
        let inbox = dir.path().join("Inbox");
        std::fs::write(
            &inbox,
            "From x Thu Jan  1 00:00:00 1970\nA: b\n\nno newline",
        )
        .unwrap();
        let root: Vec<String> = vec![];
        let m2 = RestoreMessage { folder: &root, ..m };
        let mut t = MboxTarget::open(dir.path()).unwrap();
        assert_eq!(t.append(&m2).unwrap(), AppendOutcome::Restored);
        let text = std::fs::read_to_string(&inbox).unwrap();
        assert!(text.contains("no newline\n\nFrom MAILER-DAEMON "), "{text}");
    }
}
