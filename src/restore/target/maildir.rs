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
//! - `,mbs=DIGEST` is the message's content digest (see the module
//!   `target`): what recognises it on a second run without reading it.
//!   Message files without it (written by anyone else) are read and
//!   digested once, when their folder is first used.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::{
    check_root, clean_folder, is_content_digest, keywords, AppendOutcome, Copies, CrlfDigest,
    FolderPath, RestoreMessage, Target,
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
    copies: Copies,
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
                copies: scan(&dir)?,
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
        let held = state.copies.get(msg.digest).copied().unwrap_or(0);
        if held >= msg.copy {
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
        if is_content_digest(msg.digest) {
            base.push_str(",mbs=");
            base.push_str(msg.digest);
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
        *state.copies.entry(msg.digest.to_string()).or_default() += 1;
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

/// How many copies of each content digest `dir` holds (`cur/` and
/// `new/`): from `,mbs=` in a file's name, or else from its bytes.
fn scan(dir: &Path) -> Result<Copies> {
    let mut copies = Copies::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let entries = fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let base = name.split(':').next().unwrap_or("");
            let named = base
                .split(',')
                .find_map(|f| f.strip_prefix("mbs="))
                .filter(|d| is_content_digest(d))
                .map(str::to_string);
            let digest = match named {
                Some(d) => d,
                None => match digest_file(&e.path()) {
                    Ok(d) => d,
                    Err(err) => {
                        log::warn!("skipping unreadable {}: {err}", e.path().display());
                        continue;
                    }
                },
            };
            *copies.entry(digest).or_default() += 1;
        }
    }
    Ok(copies)
}

/// The content digest of a message file, opened without blocking or
/// following a link: a FIFO or device left in the target is no message
/// and must not hang the job.
fn digest_file(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = CrlfDigest::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
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
    use crate::restore::target::content_digest;

    fn msg<'a>(
        folder: &'a [String],
        bytes: &'a [u8],
        flags: &'a [String],
        copy: u32,
    ) -> RestoreMessage<'a> {
        RestoreMessage {
            folder,
            bytes,
            flags,
            internal_date: 1_373_641_380_250,
            digest: Box::leak(content_digest(bytes).into_boxed_str()),
            copy,
        }
    }

    #[test]
    fn escapes_components() {
        assert_eq!(escape_component("a.b/c\\d"), "a\\2eb\\2fc\\5cd");
        assert_eq!(escape_component("~x~"), "\\7ex~");
        assert_eq!(escape_component("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn writes_folders_flags_and_counts_copies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("md");
        let mut t = MaildirTarget::open(&root).unwrap();
        let f: Vec<String> = vec!["Inbox".into(), "Pro.jects".into()];
        let flags: Vec<String> = vec!["\\Seen".into(), "$Forwarded".into(), "kw".into()];
        let body = b"Message-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = |t: &mut MaildirTarget, m| t.append(&m).unwrap();
        assert_eq!(
            out(&mut t, msg(&f, body, &flags, 1)),
            AppendOutcome::Restored
        );
        assert_eq!(
            out(&mut t, msg(&f, body, &flags, 1)),
            AppendOutcome::Skipped
        );
        // A second item with the same bytes is a second copy.
        assert_eq!(out(&mut t, msg(&f, body, &[], 2)), AppendOutcome::Restored);
        let inbox: Vec<String> = vec![];
        let other = b"Subject: no id\n\nx\n";
        assert_eq!(
            out(&mut t, msg(&inbox, other, &[], 1)),
            AppendOutcome::Restored
        );
        t.finish().unwrap();

        let sub = root.join(".INBOX.Pro\\2ejects");
        assert!(sub.join("maildirfolder").exists());
        let mut names: Vec<String> = fs::read_dir(sub.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by_key(|n| n.ends_with(":2,"));
        assert_eq!(names.len(), 2);
        assert!(names[0].ends_with(":2,PSab"), "{}", names[0]);
        assert!(names[0].contains(&format!(",mbs={}", content_digest(body))));
        let kw = fs::read_to_string(sub.join(KEYWORDS_FILE)).unwrap();
        assert_eq!(kw, "0 $Forwarded\n1 kw\n");
        let file = sub.join("cur").join(&names[0]);
        assert_eq!(fs::read(&file).unwrap(), body);
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        assert_eq!(mtime, millis_to_time(1_373_641_380_250));

        // A fresh target (second run) counts what is there, also a file
        // it did not write (digested from its bytes, LF or CRLF alike).
        fs::write(root.join("cur/foreign:2,S"), b"Subject: f\n\nf\n").unwrap();
        let mut t = MaildirTarget::open(&root).unwrap();
        for (folder, bytes, copy) in [
            (&f, &body[..], 1),
            (&f, &body[..], 2),
            (&inbox, &other[..], 1),
        ] {
            assert_eq!(
                out(&mut t, msg(folder, bytes, &[], copy)),
                AppendOutcome::Skipped
            );
        }
        let crlf = b"Subject: f\r\n\r\nf\r\n";
        assert_eq!(
            out(&mut t, msg(&inbox, crlf, &[], 1)),
            AppendOutcome::Skipped
        );
        assert_eq!(
            out(&mut t, msg(&inbox, crlf, &[], 2)),
            AppendOutcome::Restored
        );
        assert_eq!(fs::read_dir(root.join("cur")).unwrap().count(), 3);
    }
}
