//! `maildir:PATH`: a Maildir++ tree, as Dovecot, Courier and mutt read it.
//!
//! - PATH itself is the INBOX (`cur/ new/ tmp/`); every other folder is a
//!   directory `PATH/.A.B` (path components joined by `.`) holding
//!   `cur/ new/ tmp/` and an empty `maildirfolder` file. Parents are created
//!   too. Children of the INBOX are `.INBOX.Child`, as Dovecot names them.
//! - Folder names are stored the way Dovecot's Maildir++ layout stores them:
//!   non-ASCII in modified UTF-7 (`Entwürfe` → `Entw&APw-rfe`), and the
//!   characters that cannot appear in a component escaped as Dovecot's
//!   `listescape` plugin does: `.` → `\2e`, `/` → `\2f`, `\` → `\5c`, a
//!   leading `~` → `\7e`. (Dovecot without that plugin shows such a folder
//!   with the escapes visible; nothing is lost or merged.)
//! - Messages are written to `tmp/`, synced, then renamed into `cur/` as
//!   `SECS.MUSECPpidQn.HOST,S=SIZE[,mbd=DIGEST]:2,FLAGS`, with the file's
//!   mtime set to the internal date (Dovecot's INTERNALDATE). FLAGS are the
//!   Maildir letters in ASCII order: `D`raft, `F`lagged, `P`assed
//!   (`$Forwarded`), `R`eplied, `S`een, `T`rashed (`\Deleted`), then one
//!   lowercase letter per keyword as listed in the folder's
//!   `dovecot-keywords` file (`0 $Forwarded` → `a`). Only 26 keywords fit
//!   per folder; further ones are dropped with a warning.
//! - `,mbd=` (the backup digest, `%`-escaped) is written only for messages
//!   without a Message-ID: it is what recognises them on a second run.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::{
    check_root, clean_folder, dedup_key, header_value, keywords, known, usable_digest,
    AppendOutcome, FolderPath, KeySet, RestoreMessage, Target,
};
use crate::mutf7;

/// Maildir letters for system flags, in ASCII order.
const SYSTEM_LETTERS: [(&str, char); 6] = [
    ("\\Draft", 'D'),
    ("\\Flagged", 'F'),
    ("$Forwarded", 'P'),
    ("\\Answered", 'R'),
    ("\\Seen", 'S'),
    ("\\Deleted", 'T'),
];

const KEYWORDS_FILE: &str = "dovecot-keywords";

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct MaildirTarget {
    root: PathBuf,
    host: String,
    folders: HashMap<FolderPath, FolderState>,
}

struct FolderState {
    dir: PathBuf,
    keys: KeySet,
    /// Keyword names by letter index (`a` = 0), as in `dovecot-keywords`.
    keywords: Vec<String>,
}

impl MaildirTarget {
    pub fn open(root: &Path) -> Result<MaildirTarget> {
        check_root(root)?;
        if root.exists() && !root.is_dir() {
            bail!(
                "maildir target {} exists and is not a directory",
                root.display()
            );
        }
        make_maildir(root, false)?;
        Ok(MaildirTarget {
            root: root.to_path_buf(),
            host: hostname(),
            folders: HashMap::new(),
        })
    }

    /// The directory of a folder, relative to the root.
    fn folder_dir(&self, folder: &FolderPath) -> PathBuf {
        if folder.is_inbox() {
            return self.root.clone();
        }
        let mut name = String::new();
        for c in &folder.0 {
            name.push('.');
            name.push_str(&escape_component(c));
        }
        self.root.join(name)
    }

    fn folder(&mut self, folder: &[String]) -> Result<&mut FolderState> {
        let folder = clean_folder(folder);
        if !self.folders.contains_key(&folder) {
            // Parents first (the INBOX, the root, always exists).
            for n in 1..folder.0.len() {
                let parent = FolderPath(folder.0[..n].to_vec());
                if !parent.is_inbox() {
                    make_maildir(&self.folder_dir(&parent), true)?;
                }
            }
            let dir = self.folder_dir(&folder);
            make_maildir(&dir, !folder.is_inbox())?;
            let state = FolderState {
                keys: scan(&dir)?,
                keywords: read_keywords(&dir)?,
                dir,
            };
            self.folders.insert(folder.clone(), state);
        }
        Ok(self.folders.get_mut(&folder).expect("inserted above"))
    }
}

impl Target for MaildirTarget {
    fn ensure_folder(&mut self, folder: &[String]) -> Result<()> {
        self.folder(folder).map(|_| ())
    }

    fn append(&mut self, msg: &RestoreMessage) -> Result<AppendOutcome> {
        let host = self.host.clone();
        let state = self.folder(msg.folder)?;
        let key = dedup_key(msg.message_id, msg.digest);
        if known(&state.keys, &key) {
            return Ok(AppendOutcome::Skipped);
        }
        let letters = state.letters(msg.flags)?;

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut base = format!(
            "{}.M{}P{}Q{}.{},S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            host,
            msg.bytes.len()
        );
        let no_mid = msg.message_id.map(str::trim).is_none_or(str::is_empty);
        if let Some(digest) = usable_digest(msg.digest).filter(|_| no_mid) {
            base.push_str(",mbd=");
            base.push_str(&escape_digest(digest));
        }
        let tmp = state.dir.join("tmp").join(&base);
        let cur = state.dir.join("cur").join(format!("{base}:2,{letters}"));

        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let written = (|| {
            f.write_all(msg.bytes)?;
            let t = millis_to_time(msg.internal_date);
            f.set_times(FileTimes::new().set_modified(t).set_accessed(t))?;
            f.sync_data()
        })();
        drop(f);
        if let Err(e) = written.and_then(|_| fs::rename(&tmp, &cur)) {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", cur.display()));
        }
        state.keys.extend(key);
        Ok(AppendOutcome::Restored)
    }

    fn finish(&mut self) -> Result<()> {
        self.folders.clear();
        Ok(())
    }
}

impl FolderState {
    /// The info letters for `flags`, adding new keywords to
    /// `dovecot-keywords` as needed.
    fn letters(&mut self, flags: &[String]) -> Result<String> {
        let mut out = String::new();
        for (name, letter) in SYSTEM_LETTERS {
            if flags.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                out.push(letter);
            }
        }
        let mut kw_letters = Vec::new();
        let mut changed = false;
        for kw in keywords(flags) {
            let idx = match self.keywords.iter().position(|k| k == kw) {
                Some(i) => i,
                None if self.keywords.len() < 26 => {
                    self.keywords.push(kw.to_string());
                    changed = true;
                    self.keywords.len() - 1
                }
                None => {
                    log::warn!(
                        "{}: 26 keywords already, dropping keyword {kw}",
                        self.dir.display()
                    );
                    continue;
                }
            };
            kw_letters.push((b'a' + idx as u8) as char);
        }
        if changed {
            write_keywords(&self.dir, &self.keywords)?;
        }
        kw_letters.sort_unstable();
        out.extend(kw_letters);
        Ok(out)
    }
}

/// Create `dir/{cur,new,tmp}` (and `maildirfolder` for a subfolder).
fn make_maildir(dir: &Path, subfolder: bool) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if subfolder {
        let marker = dir.join("maildirfolder");
        if !marker.exists() {
            File::create(&marker).with_context(|| format!("cannot create {}", marker.display()))?;
        }
    }
    Ok(())
}

/// One folder name component as a Maildir++ directory name part.
pub fn escape_component(c: &str) -> String {
    let mut esc = String::with_capacity(c.len());
    for (i, ch) in c.chars().enumerate() {
        match ch {
            '.' => esc.push_str("\\2e"),
            '/' => esc.push_str("\\2f"),
            '\\' => esc.push_str("\\5c"),
            '~' if i == 0 => esc.push_str("\\7e"),
            _ => esc.push(ch),
        }
    }
    mutf7::encode(&esc)
}

fn escape_digest(d: &str) -> String {
    let mut out = String::new();
    for b in d.bytes() {
        if b.is_ascii_alphanumeric() || b"-_+=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape_digest(d: &str) -> String {
    let b = d.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = d
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The dedup keys of every message already in `dir` (`cur/` and `new/`).
fn scan(dir: &Path) -> Result<KeySet> {
    let mut keys = KeySet::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let entries = fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let head = match read_head(&e.path()) {
                Ok(h) => h,
                Err(err) => {
                    log::warn!("skipping unreadable {}: {err}", e.path().display());
                    continue;
                }
            };
            if let Some(mid) = header_value(&head, "Message-ID") {
                keys.extend(dedup_key(Some(&mid), ""));
            }
            let base = name.split(':').next().unwrap_or("");
            if let Some(pos) = base.find(",mbd=") {
                let rest = &base[pos + 5..];
                let digest = rest.split(',').next().unwrap_or("");
                keys.extend(dedup_key(None, &unescape_digest(digest)));
            }
        }
    }
    Ok(keys)
}

/// The start of a message file, enough to hold its header block.
/// Opened without blocking or following a link: a FIFO or device left
/// in the target is no message and must not hang the job.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(256 * 1024).read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_keywords(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(KEYWORDS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((idx, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        if idx < 26 {
            if out.len() <= idx {
                out.resize(idx + 1, String::new());
            }
            out[idx] = name.to_string();
        }
    }
    Ok(out)
}

fn write_keywords(dir: &Path, kws: &[String]) -> Result<()> {
    let mut text = String::new();
    for (i, k) in kws.iter().enumerate() {
        if !k.is_empty() {
            text.push_str(&format!("{i} {k}\n"));
        }
    }
    let tmp = dir.join(format!("{KEYWORDS_FILE}.tmp.{}", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(KEYWORDS_FILE))
        .with_context(|| format!("cannot replace {}", dir.join(KEYWORDS_FILE).display()))
}

fn millis_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// The host name for unique file names, with `/` and `:` escaped as the
/// Maildir spec asks.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // on success (and we cap at the first NUL or the buffer end anyway).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    name.replace('/', "\\057")
        .replace(':', "\\072")
        .replace(',', "\\054")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(folder: &'a [String], bytes: &'a [u8], flags: &'a [String]) -> RestoreMessage<'a> {
        RestoreMessage {
            folder,
            bytes,
            flags,
            internal_date: 1_373_641_380_250,
            message_id: header_value(bytes, "Message-ID").map(|s| &*Box::leak(s.into_boxed_str())),
            digest: "ab/cd+ef=",
        }
    }

    #[test]
    fn escapes_components() {
        assert_eq!(escape_component("a.b/c\\d"), "a\\2eb\\2fc\\5cd");
        assert_eq!(escape_component("~x~"), "\\7ex~");
        assert_eq!(escape_component("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(unescape_digest(&escape_digest("ab/cd+ef=%")), "ab/cd+ef=%");
    }

    #[test]
    fn writes_folders_flags_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("md");
        let mut t = MaildirTarget::open(&root).unwrap();
        let f: Vec<String> = vec!["Inbox".into(), "Pro.jects".into()];
        let flags: Vec<String> = vec!["\\Seen".into(), "$Forwarded".into(), "kw".into()];
        let body = b"Message-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            t.append(&msg(&f, body, &flags)).unwrap(),
            AppendOutcome::Restored
        );
        assert_eq!(
            t.append(&msg(&f, body, &flags)).unwrap(),
            AppendOutcome::Skipped
        );
        let nomid = b"Subject: no id\n\nx\n";
        let inbox: Vec<String> = vec![];
        assert_eq!(
            t.append(&msg(&inbox, nomid, &[])).unwrap(),
            AppendOutcome::Restored
        );
        t.finish().unwrap();

        let sub = root.join(".INBOX.Pro\\2ejects");
        assert!(sub.join("maildirfolder").exists());
        let names: Vec<String> = fs::read_dir(sub.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with(":2,PSab"), "{}", names[0]);
        let kw = fs::read_to_string(sub.join(KEYWORDS_FILE)).unwrap();
        assert_eq!(kw, "0 $Forwarded\n1 kw\n");
        let file = sub.join("cur").join(&names[0]);
        assert_eq!(fs::read(&file).unwrap(), body);
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        assert_eq!(mtime, millis_to_time(1_373_641_380_250));

        // A fresh target (second run) skips both by scanning.
        let mut t = MaildirTarget::open(&root).unwrap();
        assert_eq!(
            t.append(&msg(&f, body, &flags)).unwrap(),
            AppendOutcome::Skipped
        );
        assert_eq!(
            t.append(&msg(&inbox, nomid, &[])).unwrap(),
            AppendOutcome::Skipped
        );
        assert_eq!(fs::read_dir(root.join("cur")).unwrap().count(), 1);
    }
}
