//! Drives the filesystem core (`MailFs`, no kernel) through readdir, lookup,
//! getattr, read and xattrs, and compares what it serves with the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::sync::Arc;

use mailbackfs::catalog::{refresh, Catalog};
use mailbackfs::format::{AccountEntry, BackupReader};
use mailbackfs::fs::{EntryKind, FsError, FsOptions, MailFs};
use mailbackfs::model::{Account, BlobRef, Item, Millis};

use super::gen::{Backup, Damage};
use super::reference::{self as r, Content, EDir, EFile, Salvage, X};

/// A backup held in memory. Blob damage is reported the way a reader
/// reports it: the bytes that decompress, then an `InvalidData` error.
pub struct MemReader {
    pub backup: Backup,
    /// Order in which items are handed to the catalogue (a permutation).
    pub reverse: bool,
}

struct Then<R>(R, io::ErrorKind, String);

impl<R: Read> Read for Then<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::new(self.1, self.2.clone())),
            n => Ok(n),
        }
    }
}

impl BackupReader for MemReader {
    fn format_name(&self) -> &'static str {
        "memory"
    }
    fn list_accounts(&self) -> anyhow::Result<Vec<AccountEntry>> {
        Ok(self
            .backup
            .accounts
            .iter()
            .map(|(a, _)| AccountEntry {
                key: a.key.clone(),
                signature: "1".into(),
            })
            .collect())
    }
    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> anyhow::Result<Account> {
        let (a, items) = self
            .backup
            .accounts
            .iter()
            .find(|(a, _)| a.key == key)
            .ok_or_else(|| anyhow::anyhow!("no account {key}"))?;
        let mut items = items.clone();
        if self.reverse {
            items.reverse();
        }
        items.into_iter().for_each(sink);
        Ok(a.clone())
    }
    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        let b = &self.backup.blobs[&blob.locator];
        let bytes = b.bytes.clone();
        let then = |bytes: Vec<u8>, msg: &str| -> Box<dyn Read + Send> {
            Box::new(Then(
                io::Cursor::new(bytes),
                io::ErrorKind::InvalidData,
                msg.to_string(),
            ))
        };
        Ok(match b.damage {
            Damage::None => Box::new(io::Cursor::new(bytes)),
            Damage::Missing => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {} not found", b.digest),
                ))
            }
            Damage::Corrupt => then(bytes, "corrupt gzip: crc mismatch"),
            Damage::Truncated => {
                let half = bytes[..bytes.len() / 2].to_vec();
                then(half, "truncated gzip: stream ended early")
            }
            Damage::DigestMismatch => then(bytes, "digest mismatch: content hashes elsewhere"),
        })
    }
    fn blob_len(&self, blob: &BlobRef, _claimed: Option<u64>) -> io::Result<u64> {
        let b = &self.backup.blobs[&blob.locator];
        match b.damage {
            Damage::Missing => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {} not found", b.digest),
            )),
            _ => Ok(b.bytes.len() as u64),
        }
    }
}

/// A catalogue built from `reader` in a temporary directory, and the core.
pub fn mailfs(reader: Arc<dyn BackupReader>) -> (tempfile::TempDir, MailFs) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(&dir.path().join("c.sqlite")).unwrap());
    refresh(&catalog, &*reader, false).unwrap();
    let fs = MailFs::new(
        catalog,
        reader,
        FsOptions {
            cache_bytes: 1 << 20,
        },
    )
    .unwrap();
    (dir, fs)
}

/// Differences found, each with its path.
#[derive(Default)]
pub struct Diffs(pub Vec<String>, pub usize);

impl Diffs {
    fn add(&mut self, path: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{path}: {what}"));
    }

    pub fn into_result(self) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let _ = self.1;
        let mut shown: Vec<String> = self.0.into_iter().take(25).collect();
        if n > 25 {
            shown.push(format!("... and {} more", n - 25));
        }
        Err(shown.join("\n"))
    }
}

fn read_all(fs: &MailFs, ino: u64, size: u64) -> Result<Vec<u8>, FsError> {
    let fh = fs.open(ino, false)?;
    let mut out = Vec::new();
    // Read past the size too: the end must be clean.
    let result = loop {
        match fs.read(fh, out.len() as u64, 65_536) {
            Ok(chunk) if chunk.is_empty() => break Ok(()),
            Ok(chunk) => out.extend(chunk),
            Err(e) => break Err(e),
        }
        if out.len() as u64 > size + (1 << 20) {
            break Ok(());
        }
    };
    fs.release(fh);
    result.map(|_| out)
}

fn xattr_map(fs: &MailFs, ino: u64) -> BTreeMap<String, String> {
    fs.xattrs(ino)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("user.mailbackfs.")?.to_string();
            Some((k, String::from_utf8_lossy(&v).into_owned()))
        })
        .collect()
}

fn check_xattr(d: &mut Diffs, path: &str, key: &str, want: &X, got: Option<&String>) {
    let ok = match (want, got) {
        (X::Any, _) => true,
        (X::Absent, None) => true,
        (X::Absent, Some(_)) => false,
        (X::Exact(w), Some(g)) => w == g,
        (X::Flags(w), Some(g)) => {
            let words: Vec<&str> = if g.is_empty() {
                vec![]
            } else {
                g.split(' ').collect()
            };
            let set: BTreeSet<String> = words.iter().map(|s| s.to_string()).collect();
            !words.contains(&"") && set.len() == words.len() && &set == w
        }
        (X::Flags(w), None) => w.is_empty(),
        (X::Tags(w), g) => {
            let g = g.map(String::as_str).unwrap_or("");
            g == w.join(",")
        }
        (X::Digest(w), Some(g)) => g.replace('/', ",") == w.replace('/', ","),
        (X::Says(words), Some(g)) => {
            let g = g.to_lowercase();
            words.iter().any(|w| g.contains(w))
        }
        (_, None) => false,
    };
    if !ok {
        d.add(path, format!("xattr .{key}: want {want:?}, got {got:?}"));
    }
}

fn is_vcard(b: &[u8]) -> bool {
    let s = String::from_utf8_lossy(b);
    s.starts_with("BEGIN:VCARD") && s.trim_end().ends_with("END:VCARD")
}

/// Reads at offsets around the cache windows and the end give the same
/// bytes as the whole file.
fn check_offsets(fs: &MailFs, d: &mut Diffs, ino: u64, path: &str, whole: &[u8]) {
    let Ok(fh) = fs.open(ino, false) else {
        return d.add(path, "second open failed");
    };
    let len = whole.len() as u64;
    let mut offsets = vec![len.saturating_sub(1), len, len + 10, 1];
    if len > 70_000 {
        offsets.extend([262_143, 262_144, 65_535, len - 4096, 7]);
    }
    for off in offsets {
        let lo = (off as usize).min(whole.len());
        let hi = (lo + 4096).min(whole.len());
        match fs.read(fh, off, 4096) {
            Ok(b) if b == whole[lo..hi] => {}
            other => d.add(
                path,
                format!("read at {off}: {:?} bytes", other.map(|b| b.len())),
            ),
        }
    }
    fs.release(fh);
}

/// Compare one file (found as `name` in directory `dir`) with `want`.
fn check_file(fs: &MailFs, d: &mut Diffs, dir: u64, name: &str, path: &str, want: &EFile) {
    d.1 += 1;
    let attr = match fs.lookup(dir, name) {
        Ok(a) => a,
        Err(e) => return d.add(path, format!("lookup of a listed file: {e}")),
    };
    if attr.kind != EntryKind::File {
        return d.add(path, "not a file");
    }
    if let Some(alias) = want.name.alias() {
        match fs.lookup(dir, &alias) {
            Ok(a) if a.ino == attr.ino => {}
            other => d.add(
                path,
                format!("alias {alias} resolves to {:?}", other.map(|a| a.ino)),
            ),
        }
    }
    if let Some(m) = want.mtime {
        if attr.mtime != m {
            d.add(
                path,
                format!(
                    "mtime {} instead of {}",
                    r::rfc3339(attr.mtime),
                    r::rfc3339(m)
                ),
            );
        }
    }
    match fs.getattr(attr.ino) {
        Ok(g) if g.size == attr.size && g.mtime == attr.mtime => {}
        other => d.add(path, format!("getattr {other:?} after lookup {attr:?}")),
    }
    if !matches!(fs.open(attr.ino, true), Err(FsError::ReadOnly)) {
        d.add(path, "opened for writing");
    }
    let got = read_all(fs, attr.ino, attr.size);
    if let (Ok(g), Content::Bytes(_)) = (&got, &want.content) {
        check_offsets(fs, d, attr.ino, path, g);
    }
    let ok = match (&want.content, &got) {
        (Content::Eio, Err(e)) => e.to_errno() == libc::EIO,
        (Content::Eio, Ok(_)) => false,
        (Content::Bytes(w), Ok(g)) => w == g,
        (Content::OneOf(ws), Ok(g)) => ws.iter().any(|w| w == g),
        (Content::VCard, Ok(g)) => is_vcard(g),
        (_, Err(_)) => false,
    };
    if !ok {
        let shown = got.as_ref().map(|g| {
            let head = String::from_utf8_lossy(&g[..g.len().min(60)]).into_owned();
            format!("{} bytes {head:?}", g.len())
        });
        let want_s = match &want.content {
            Content::Bytes(b) => format!("{} bytes", b.len()),
            other => format!("{other:?}").chars().take(80).collect(),
        };
        d.add(path, format!("read: want {want_s}, got {shown:?}"));
    }
    if let Ok(g) = &got {
        let size = want.size.unwrap_or(g.len() as u64);
        if attr.size != size || attr.size != g.len() as u64 {
            d.add(
                path,
                format!("size {} (read {} bytes, want {size})", attr.size, g.len()),
            );
        }
    }
    // After the read: damage found by reading is known now.
    let x = xattr_map(fs, attr.ino);
    for key in r::ITEM_XATTRS {
        let want_x = want.xattrs.get(key).unwrap_or(&X::Absent);
        check_xattr(d, path, key, want_x, x.get(key));
    }
    if let Some(s) = &want.salvage {
        let spath = format!("{path}.salvaged");
        match fs.lookup(dir, &format!("{name}.salvaged")) {
            Err(e) => d.add(&spath, format!("lookup: {e}")),
            Ok(a) => match read_all(fs, a.ino, a.size) {
                Err(e) => d.add(&spath, format!("read: {e}")),
                Ok(g) => {
                    let ok = match s {
                        Salvage::Exact(w) => &g == w,
                        Salvage::Prefix(w) => w.starts_with(&g),
                    };
                    if !ok || a.size != g.len() as u64 {
                        d.add(
                            &spath,
                            format!("{} bytes (size {}), want {s:?}", g.len(), a.size)
                                .chars()
                                .take(200)
                                .collect::<String>(),
                        );
                    }
                }
            },
        }
    }
}

/// Compare directory `ino` (at `path`) with `want`, recursively.
pub fn check_dir(fs: &MailFs, d: &mut Diffs, ino: u64, path: &str, want: &EDir) {
    let listing = match fs.readdir(ino) {
        Ok(l) => l,
        Err(e) => return d.add(path, format!("readdir: {e}")),
    };
    let mut seen = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    let mut files = Vec::new();
    let mut salvaged = Vec::new();
    for e in &listing.entries {
        // What readdirplus hands out is what a lookup finds.
        match (fs.entry_attr(e), fs.lookup(ino, &e.name)) {
            (Ok(a), Ok(b)) if a.ino == b.ino && a.kind == e.kind => {}
            (a, b) => d.add(
                path,
                format!("{:?}: readdirplus {a:?}, lookup {b:?}", e.name),
            ),
        }
        if !seen.insert(e.name.clone()) {
            d.add(path, format!("{:?} listed twice", e.name));
        }
        if !r::valid_entry_name(&e.name) {
            d.add(path, format!("invalid name {:?}", e.name));
        }
        match e.kind {
            EntryKind::Dir => {
                dirs.insert(e.name.clone());
            }
            EntryKind::File if e.name.ends_with(".salvaged") => salvaged.push(e.name.clone()),
            EntryKind::File => files.push(e.name.clone()),
        }
    }
    let want_dirs: BTreeSet<String> = want.dirs.keys().cloned().collect();
    for extra in dirs.difference(&want_dirs) {
        d.add(path, format!("unexpected directory {extra:?}"));
    }
    for missing in want_dirs.difference(&dirs) {
        d.add(path, format!("missing directory {missing:?}"));
    }
    for name in dirs.intersection(&want_dirs) {
        let sub = format!("{path}/{name}");
        match fs.lookup(ino, name) {
            Ok(a) if a.kind == EntryKind::Dir => check_dir(fs, d, a.ino, &sub, &want.dirs[name]),
            other => d.add(&sub, format!("lookup: {:?}", other.map(|a| a.kind))),
        }
    }
    let mut unmatched: BTreeSet<String> = files.iter().cloned().collect();
    let mut matched = BTreeSet::new();
    for w in &want.files {
        let hits: Vec<&String> = unmatched.iter().filter(|n| w.name.matches(n)).collect();
        match hits.as_slice() {
            [one] => {
                let name = (*one).clone();
                unmatched.remove(&name);
                check_file(fs, d, ino, &name, &format!("{path}/{name}"), w);
                matched.insert(name);
            }
            [] => d.add(path, format!("missing file {:?}", w.name)),
            many => d.add(path, format!("{:?} matches {many:?}", w.name)),
        }
    }
    for extra in unmatched {
        d.add(path, format!("unexpected file {extra:?}"));
    }
    for s in salvaged {
        let base = s.trim_end_matches(".salvaged");
        if !matched.contains(base) {
            d.add(path, format!("{s:?} beside no listed file"));
        }
    }
}

/// `@INSTANT` in the forms the design allows for `t`: to the millisecond,
/// and to the second (with or without `Z`, and compact) when `t` is whole.
pub fn instant_names(t: Millis) -> Vec<String> {
    let mut out = vec![format!("@{}", r::rfc3339(t))];
    if t % 1000 == 0 {
        let s = &r::rfc3339(t)[..19];
        let compact: String = s.replace(['-', ':'], "").replace('T', ".");
        out.extend([format!("@{s}"), format!("@{s}Z"), format!("@{compact}")]);
    }
    out
}

/// Compare every view of every account with the reference; `instants` are
/// looked up as `@INSTANT` directories.
pub fn check_backup(fs: &MailFs, backup: &Backup, instants: &[Millis]) -> Result<(), String> {
    let mut d = Diffs::default();
    let root = MailFs::ROOT_INO;
    let listing = fs.readdir(root).map_err(|e| e.to_string())?;
    let got: BTreeSet<String> = listing.entries.iter().map(|e| e.name.clone()).collect();
    let dir_names = r::account_dirs(backup);
    let mut want: BTreeSet<String> = dir_names.iter().cloned().collect();
    want.insert(".control".into());
    if got != want {
        d.add("/", format!("accounts {got:?}, want {want:?}"));
    }
    for ((account, items), dir_name) in backup.accounts.iter().zip(&dir_names) {
        let apath = format!("/{dir_name}");
        let Ok(a) = fs.lookup(root, dir_name) else {
            d.add(&apath, "account directory missing");
            continue;
        };
        let status = fs.getxattr(a.ino, "user.mailbackfs.status").ok();
        let any_status = account.status == super::gen::NO_INFO;
        if !any_status && status.as_deref() != Some(account.status.as_bytes()) {
            d.add(
                &apath,
                format!("status {status:?}, want {}", account.status),
            );
        }
        let days = r::days(items);
        let mut want: BTreeSet<String> = days.iter().map(|&day| r::day_name(day)).collect();
        want.extend(["latest", "deleted", "history"].map(String::from));
        let got: BTreeSet<String> = match fs.readdir(a.ino) {
            Ok(l) => l.entries.iter().map(|e| e.name.clone()).collect(),
            Err(e) => {
                d.add(&apath, format!("readdir: {e}"));
                continue;
            }
        };
        if got != want {
            let extra: Vec<_> = got.difference(&want).collect();
            let missing: Vec<_> = want.difference(&got).collect();
            d.add(
                &apath,
                format!("entries: extra {extra:?}, missing {missing:?}"),
            );
        }
        // A day without changes does not exist.
        let quiet = (days.first().copied().unwrap_or(0)..)
            .find(|day| !days.contains(day))
            .unwrap();
        if fs.lookup(a.ino, &r::day_name(quiet)).is_ok() {
            d.add(
                &apath,
                format!("{} exists without changes", r::day_name(quiet)),
            );
        }
        let mut views: Vec<(String, EDir)> = vec![
            ("latest".into(), r::time_view(backup, items, Millis::MAX)),
            ("deleted".into(), r::deleted_view(backup, items)),
            ("history".into(), r::history_view(backup, items)),
        ];
        for &day in &days {
            let end = day * super::gen::DAY + super::gen::DAY - 1;
            views.push((r::day_name(day), r::time_view(backup, items, end)));
        }
        for &t in instants {
            let tree = r::time_view(backup, items, t);
            for name in instant_names(t) {
                views.push((name, tree.clone()));
            }
        }
        for (name, want) in views {
            let vpath = format!("{apath}/{name}");
            match fs.lookup(a.ino, &name) {
                Ok(v) => check_dir(fs, &mut d, v.ino, &vpath, &want),
                Err(e) => d.add(&vpath, format!("lookup: {e}")),
            }
        }
    }
    log::debug!("{} files compared", d.1);
    if std::env::var_os("REFTEST_VERBOSE").is_some() {
        eprintln!("{} files compared", d.1);
    }
    d.into_result()
}
