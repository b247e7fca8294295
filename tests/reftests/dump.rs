//! A full dump of the tree a catalogue serves (every account, `latest/`,
//! every day, `deleted/`, `history/`): path → kind, size, mtime, xattrs and
//! the SHA-256 of the bytes (or the errno of the read).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mailbackfs::catalog::Catalog;
use mailbackfs::format::BackupReader;
use mailbackfs::fs::{EntryKind, FsOptions, MailFs};
use sha2::{Digest as _, Sha256};

pub type Dump = BTreeMap<String, String>;

/// When this test process started, in milliseconds (a minute early).
fn started() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_millis() as i64 - 60_000
    })
}

fn content(fs: &MailFs, ino: u64) -> String {
    let fh = match fs.open(ino, false) {
        Ok(fh) => fh,
        Err(e) => return format!("open errno {}", e.to_errno()),
    };
    let mut sha = Sha256::new();
    let mut off = 0u64;
    let out = loop {
        match fs.read(fh, off, 1 << 17) {
            Ok(c) if c.is_empty() => break format!("sha256 {:x} len {off}", sha.finalize()),
            Ok(c) => {
                off += c.len() as u64;
                sha.update(&c);
            }
            Err(e) => break format!("read errno {} at {off}", e.to_errno()),
        }
    };
    fs.release(fh);
    out
}

fn walk(fs: &MailFs, ino: u64, path: &str, out: &mut Dump, read: bool) {
    let Ok(listing) = fs.readdir(ino) else {
        out.insert(path.to_string(), "readdir failed".into());
        return;
    };
    let names: Vec<String> = listing.entries.iter().map(|e| e.name.clone()).collect();
    out.insert(format!("{path}/"), names.join("\u{0}"));
    for e in listing.entries.iter() {
        let p = format!("{path}/{}", e.name);
        let Ok(attr) = fs.lookup(ino, &e.name) else {
            out.insert(p, "lookup failed".into());
            continue;
        };
        if e.kind == EntryKind::Dir {
            walk(fs, attr.ino, &p, out, read);
            continue;
        }
        let body = if read {
            content(fs, attr.ino)
        } else {
            String::new()
        };
        let x: Vec<String> = fs
            .xattrs(attr.ino)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
            .collect();
        // Entries with no date of their own (history/<id>/error) carry
        // the mount's time: not a property of the backup.
        let mtime = if attr.mtime >= started() {
            "now".to_string()
        } else {
            attr.mtime.to_string()
        };
        out.insert(
            p,
            format!("size {} mtime {mtime} {body} {}", attr.size, x.join(" ")),
        );
    }
}

/// Dump the tree of the catalogue at `index` over `reader`. Contents are
/// read in `latest/`, `deleted/` and `history/` (day views list and stat).
pub fn dump(index: &Path, reader: Arc<dyn BackupReader>) -> Dump {
    started();
    let catalog = Arc::new(Catalog::open(index).unwrap());
    let fs = MailFs::new(catalog, reader, FsOptions::default()).unwrap();
    let mut out = Dump::new();
    let root = fs.readdir(MailFs::ROOT_INO).unwrap();
    for acct in root.entries.iter().filter(|e| e.name != ".control") {
        let a = fs.lookup(MailFs::ROOT_INO, &acct.name).unwrap();
        let x: Vec<String> = fs
            .xattrs(a.ino)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
            .collect();
        out.insert(format!("/{}", acct.name), x.join(" "));
        for view in fs.readdir(a.ino).unwrap().entries.iter() {
            let v = fs.lookup(a.ino, &view.name).unwrap();
            let read = matches!(view.name.as_str(), "latest" | "deleted" | "history");
            walk(
                &fs,
                v.ino,
                &format!("/{}/{}", acct.name, view.name),
                &mut out,
                read,
            );
        }
    }
    out
}

/// The first differences between two dumps, for a failure message.
pub fn differences(a: &Dump, b: &Dump) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in the first: {k} {v}")),
            Some(w) if w != v => out.push(format!("{k}:\n  first:  {v}\n  second: {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("only in the second: {k} {v}"));
        }
    }
    out
}
