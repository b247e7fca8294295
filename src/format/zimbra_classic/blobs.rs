//! Blob copies: plain files and `*.zip` entries below an account's `blobs/`
//! or a session's `shared_blobs/`, and the streams that read them (gzip by
//! magic, verified against `blob_digest`).
//!
//! A state's locator lists the copies that existed at index time, in the
//! order they are tried (account copies newest session first, then shared
//! ones); the first intact one is served. Each line is `f\t<path>` (a file),
//! `z\t<zip>\t<entry>\t<data offset>\t<method>\t<stored len>\t<len>` (a zip
//! entry), or `m\t<path>` (no copy at all: where one was expected).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::format::backup_root::{BackupRoot, EntryKind};
use crate::format::zextras::GzipStream;

const BUF: usize = 64 * 1024;
/// Directories below `blobs/` or `shared_blobs/` that are walked.
const MAX_DEPTH: usize = 8;

/// One stored copy of a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copy {
    File(String),
    Zip {
        zip: String,
        entry: String,
        data_start: u64,
        deflated: bool,
        stored_len: u64,
        len: u64,
    },
    /// No copy: the path where one was expected.
    Missing(String),
}

impl Copy {
    fn encode(&self) -> String {
        match self {
            Copy::File(p) => format!("f\t{p}"),
            Copy::Zip {
                zip,
                entry,
                data_start,
                deflated,
                stored_len,
                len,
            } => format!(
                "z\t{zip}\t{entry}\t{data_start}\t{}\t{stored_len}\t{len}",
                u8::from(*deflated)
            ),
            Copy::Missing(p) => format!("m\t{p}"),
        }
    }

    fn decode(line: &str) -> Option<Copy> {
        let mut f = line.split('\t');
        let kind = f.next()?;
        let path = f.next()?.to_string();
        match kind {
            "f" => Some(Copy::File(path)),
            "m" => Some(Copy::Missing(path)),
            "z" => Some(Copy::Zip {
                zip: path,
                entry: f.next()?.to_string(),
                data_start: f.next()?.parse().ok()?,
                deflated: f.next()? == "1",
                stored_len: f.next()?.parse().ok()?,
                len: f.next()?.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The path shown for this copy.
    pub fn display(&self, root: &Path) -> PathBuf {
        match self {
            Copy::File(p) | Copy::Missing(p) => root.join(p),
            Copy::Zip { zip, entry, .. } => root.join(format!("{zip}!{entry}")),
        }
    }
}

/// A locator listing `copies` in the order they are tried.
pub fn encode(copies: &[Copy]) -> String {
    copies
        .iter()
        .map(Copy::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The copies a locator lists (undecodable lines are dropped).
pub fn decode(locator: &str) -> Vec<Copy> {
    locator.lines().filter_map(Copy::decode).collect()
}

/// `(itemId, mod_content)` of a blob file name
/// `[<digest>]<itemId>-<mod_content>.msg[<n>]`.
pub fn parse_blob_name(base: &str) -> Option<(i64, i64)> {
    let dot = base.rfind(".msg")?;
    let tail = &base[dot + 4..];
    if !tail.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let stem = &base[..dot];
    let stem = stem.rsplit('=').next().unwrap_or(stem);
    let (id, modc) = stem.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(id) || !digits(modc) {
        return None;
    }
    Some((id.parse().ok()?, modc.parse().ok()?))
}

/// The digest a shared copy is named by: `…/<digest>/blob.dat` or
/// `…/<digest>`, `/` in the digest written `,`.
pub fn shared_digest(rel_name: &str) -> Option<String> {
    let mut parts = rel_name.rsplit('/');
    let last = parts.next()?;
    let d = if last == "blob.dat" {
        parts.next()?
    } else {
        last
    };
    (!d.is_empty()).then(|| normalize_digest(d))
}

pub fn normalize_digest(d: &str) -> String {
    d.trim().replace('/', ",")
}

/// Every stored copy below `rel` of `root`: plain files (their path and
/// length) and the entries of `*.zip` files. Links, FIFOs and unreadable
/// zips are reported to `problems`, never followed.
pub fn walk(
    root: &BackupRoot,
    rel: &Path,
    problems: &mut Vec<String>,
    found: &mut dyn FnMut(&str, Copy, u64),
) {
    let mut stack = vec![(rel.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match root.read_dir(&dir) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                problems.push(format!("cannot list blobs: {e}"));
                continue;
            }
        };
        let mut entries = entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let Some(name) = e.name.to_str() else {
                continue;
            };
            let path = dir.join(name);
            let Some(path_s) = path.to_str().map(str::to_string) else {
                continue;
            };
            match e.kind {
                EntryKind::Dir if depth < MAX_DEPTH => stack.push((path, depth + 1)),
                EntryKind::Dir => {}
                EntryKind::File if name.ends_with(".zip") => {
                    zip_entries(root, &path_s, problems, found)
                }
                EntryKind::File => {
                    let len = root.stat(&path).map(|s| s.st_size as u64).unwrap_or(0);
                    let sub = path.strip_prefix(rel).unwrap_or(&path);
                    found(&sub.to_string_lossy(), Copy::File(path_s), len);
                }
                EntryKind::Symlink | EntryKind::Other => problems.push(format!(
                    "not a regular file: {} (not followed)",
                    root.display_path(&path).display()
                )),
            }
        }
    }
}

fn zip_entries(
    root: &BackupRoot,
    zip_path: &str,
    problems: &mut Vec<String>,
    found: &mut dyn FnMut(&str, Copy, u64),
) {
    let shown = root.display_path(Path::new(zip_path));
    let opened = root
        .open_file(zip_path)
        .and_then(|f| zip::ZipArchive::new(BufReader::new(f)).map_err(io::Error::other));
    let mut archive = match opened {
        Ok(a) => a,
        Err(e) => {
            problems.push(format!("unreadable zip {}: {e}", shown.display()));
            return;
        }
    };
    for i in 0..archive.len() {
        let entry = match archive.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("unreadable entry {i} of {}: {e}", shown.display()));
                continue;
            }
        };
        if !entry.is_file() {
            continue;
        }
        let Ok(name) = entry.name().map(|n| n.into_owned()) else {
            continue;
        };
        let deflated = match entry.compression() {
            zip::CompressionMethod::Stored => false,
            zip::CompressionMethod::Deflated => true,
            other => {
                problems.push(format!(
                    "zip entry {name} of {} uses {other}, which is not read",
                    shown.display()
                ));
                continue;
            }
        };
        let Some(data_start) = entry.data_start() else {
            continue;
        };
        if name.contains('\t') || name.contains('\n') {
            continue;
        }
        let len = entry.size();
        let copy = Copy::Zip {
            zip: zip_path.to_string(),
            entry: name.clone(),
            data_start,
            deflated,
            stored_len: entry.compressed_size(),
            len,
        };
        found(&name, copy, len);
    }
}

/// Checks that a stream holds exactly `want` bytes (a zip entry's length).
struct Exact<R> {
    inner: R,
    want: u64,
    got: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::Interrupted => e,
            // Bad deflate data is damage of the blob, as a bad gzip is.
            _ => io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "corrupt gzip (deflated zip entry) {}: {e}",
                    self.path.display()
                ),
            ),
        })?;
        self.got += n as u64;
        if (n == 0 && !buf.is_empty() && self.got != self.want) || self.got > self.want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "truncated zip entry {}: ended at {} of {} bytes",
                    self.path.display(),
                    self.got,
                    self.want
                ),
            ));
        }
        Ok(n)
    }
}

/// The stored bytes of a copy (a zip entry inflated), and its path.
pub fn open_stored(
    root: &BackupRoot,
    copy: &Copy,
) -> io::Result<(Box<dyn BufRead + Send>, PathBuf)> {
    let shown = copy.display(root.path());
    match copy {
        Copy::Missing(_) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no copy in any session's blobs/ or shared_blobs/ (expected {})",
                shown.display()
            ),
        )),
        Copy::File(p) => {
            let f = root.open_file(p)?;
            Ok((Box::new(BufReader::with_capacity(BUF, f)), shown))
        }
        Copy::Zip {
            zip,
            data_start,
            deflated,
            stored_len,
            len,
            ..
        } => {
            let mut f = root.open_file(zip)?;
            f.seek(SeekFrom::Start(*data_start))?;
            let raw = BufReader::with_capacity(BUF, f.take(*stored_len));
            let inner: Box<dyn Read + Send> = if *deflated {
                Box::new(flate2::bufread::DeflateDecoder::new(raw))
            } else {
                Box::new(raw)
            };
            let exact = Exact {
                inner,
                want: *len,
                got: 0,
                path: shown.clone(),
            };
            Ok((Box::new(BufReader::with_capacity(BUF, exact)), shown))
        }
    }
}

/// The decompressed bytes of a copy: gunzipped when they start 1f 8b.
pub fn open_plain(
    root: &BackupRoot,
    copy: &Copy,
) -> io::Result<(Box<dyn Read + Send>, PathBuf, bool)> {
    let (mut r, shown) = open_stored(root, copy)?;
    let head = r
        .fill_buf()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", shown.display())))?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if gz {
        let compressed = match copy {
            Copy::File(p) => root.stat(p)?.st_size.max(0) as u64,
            Copy::Zip { len, .. } => *len,
            Copy::Missing(_) => 0,
        };
        let cap = crate::format::zextras::inflate_cap_for(compressed);
        Ok((
            Box::new(GzipStream::new(r, shown.clone(), cap)),
            shown,
            true,
        ))
    } else {
        Ok((r, shown, false))
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha1(Sha1),
}

/// Passes bytes through and, at the end, compares them with `blob_digest`
/// (SHA-256 at 44 characters, SHA-1 at 28, other widths unchecked). Errors
/// are sticky.
pub struct Verified<R> {
    inner: R,
    path: PathBuf,
    hasher: Option<Hasher>,
    expect: String,
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, path: PathBuf, digest: Option<&str>) -> Self {
        let expect = digest.map(normalize_digest).unwrap_or_default();
        let hasher = match expect.len() {
            44 => Some(Hasher::Sha256(Sha256::new())),
            28 => Some(Hasher::Sha1(Sha1::new())),
            _ => None,
        };
        Verified {
            inner,
            path,
            hasher,
            expect,
            failed: None,
        }
    }

    fn finish(&mut self) -> Option<String> {
        let sum: Vec<u8> = match self.hasher.take()? {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
        };
        let std = base64::engine::general_purpose::STANDARD
            .encode(&sum)
            .replace('/', ",");
        let url = base64::engine::general_purpose::URL_SAFE.encode(&sum);
        (std != self.expect && url != self.expect).then_some(std)
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((k, m)) = &self.failed {
            return Err(io::Error::new(*k, m.clone()));
        }
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                if let Some(got) = self.finish() {
                    let msg = format!(
                        "digest mismatch in {}: content hashes to {got}, blob_digest is {}",
                        self.path.display(),
                        self.expect
                    );
                    self.failed = Some((io::ErrorKind::InvalidData, msg.clone()));
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                Ok(0)
            }
            Ok(n) => {
                match &mut self.hasher {
                    Some(Hasher::Sha256(h)) => h.update(&buf[..n]),
                    Some(Hasher::Sha1(h)) => h.update(&buf[..n]),
                    None => {}
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

/// A verified stream of one copy.
pub fn open_verified(
    root: &BackupRoot,
    copy: &Copy,
    digest: Option<&str>,
) -> io::Result<Box<dyn Read + Send>> {
    let (r, shown, _) = open_plain(root, copy)?;
    Ok(Box::new(Verified::new(r, shown, digest)))
}

/// Whether a copy reads to its end and matches its digest.
pub fn is_intact(root: &BackupRoot, copy: &Copy, digest: Option<&str>) -> bool {
    let Ok(mut r) = open_verified(root, copy, digest) else {
        return false;
    };
    io::copy(&mut r, &mut io::sink()).is_ok()
}

/// The decompressed length of a copy: the stored length when it is not
/// gzip, the gzip trailer when it agrees with `claimed`, else counted.
pub fn plain_len(root: &BackupRoot, copy: &Copy, claimed: Option<u64>) -> io::Result<u64> {
    if let Copy::File(p) = copy {
        let f = root.open_file(p)?;
        if let Some(n) = plain_file_len(&f, claimed, &copy.display(root.path()))? {
            return Ok(n);
        }
    }
    let (mut r, _, gz) = open_plain(root, copy)?;
    if !gz {
        if let Copy::Zip { len, .. } = copy {
            return Ok(*len);
        }
    }
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A plain file's length without decompressing: its size when it is not
/// gzip, the trailer's length when it equals `claimed`; `None` otherwise.
fn plain_file_len(f: &File, claimed: Option<u64>, shown: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", shown.display()));
    let len = f.metadata().map_err(with_path)?.len();
    let mut magic = [0u8; 2];
    let got = f.read_at(&mut magic, 0).map_err(with_path)?;
    if got < 2 || magic != [0x1f, 0x8b] {
        return Ok(Some(len));
    }
    if let Some(c) = claimed {
        if len >= 18 {
            let mut t = [0u8; 4];
            f.read_exact_at(&mut t, len - 4).map_err(with_path)?;
            if u64::from(u32::from_le_bytes(t)) == c % (1u64 << 32) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names() {
        assert_eq!(parse_blob_name("257-3.msg"), Some((257, 3)));
        assert_eq!(
            parse_blob_name("abcdEFGH,+12345678901234567890123456789012345=257-3.msg2"),
            Some((257, 3))
        );
        assert_eq!(parse_blob_name("257.msg"), None);
        assert_eq!(parse_blob_name("257-3.msgx"), None);
        assert_eq!(shared_digest("ab/abc=/blob.dat").as_deref(), Some("abc="));
        assert_eq!(shared_digest("abc=").as_deref(), Some("abc="));
    }

    #[test]
    fn locators_round_trip() {
        let v = vec![
            Copy::File("sessions/a/b.msg".into()),
            Copy::Zip {
                zip: "z.zip".into(),
                entry: "1-1.msg".into(),
                data_start: 30,
                deflated: true,
                stored_len: 10,
                len: 20,
            },
            Copy::Missing("x".into()),
        ];
        assert_eq!(decode(&encode(&v)), v);
    }
}
