//! Broken blobs: what is wrong with them (the `user.mailbackfs.error`
//! value), and the `<name>.salvaged` files that hold the bytes that
//! decompress before the damage.
//!
//! A salvaged file is read through its own forward-only stream, never
//! through the window cache: the cache serves only blobs that read to the end
//! cleanly. The stream is always pulled in [`CHUNK`]-byte reads from a fresh
//! open, so the bytes it yields before the damage, and hence the size, do not
//! depend on how the caller reads.

use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::format::BackupReader;
use crate::model::BlobRef;

/// The suffix of salvage files.
pub const SUFFIX: &str = ".salvaged";

/// Size of every read pulled from a salvaged blob's stream.
const CHUNK: usize = 64 * 1024;

/// The error kind of a blob whose bytes decompress but hash wrong.
pub const DIGEST_MISMATCH: &str = "digest mismatch";

/// Whether an error value (from [`describe`]) is of damage `kind`.
pub fn kind_is(why: &str, kind: &str) -> bool {
    why.starts_with(kind)
}

/// The kind of damage an error of `open_blob`/`blob_len` reports, as the
/// `user.mailbackfs.error` value names it.
pub fn kind_of(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => "missing blob",
        io::ErrorKind::InvalidData => {
            let msg = e.to_string();
            if msg.contains(DIGEST_MISMATCH) {
                DIGEST_MISMATCH
            } else if msg.contains("truncated") || msg.contains("ended at") {
                "truncated gzip"
            } else {
                // Bad header or deflate data, CRC or length, trailing garbage.
                "corrupt gzip"
            }
        }
        _ => "unreadable blob",
    }
}

/// `<kind>: <what the reader said>` (the reader's message names the path),
/// or just the message when it starts with the kind already.
pub fn describe(e: &io::Error) -> String {
    let kind = kind_of(e);
    let msg = e.to_string();
    if msg.starts_with(kind) {
        msg
    } else {
        format!("{kind}: {msg}")
    }
}

/// Whether an error value (from [`describe`]) is one a `.salvaged` file is
/// offered for: the blob's bytes could be read, at least in part.
pub fn is_salvageable(why: &str) -> bool {
    ["corrupt gzip", "truncated gzip", DIGEST_MISMATCH]
        .iter()
        .any(|k| kind_is(why, k))
}

/// The bytes of a blob stream up to its first error, pulled in fixed chunks.
pub struct UntilDamage {
    inner: Option<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl UntilDamage {
    /// The salvageable bytes of `blob`; none when it cannot even be opened.
    pub fn open(reader: &dyn BackupReader, blob: &BlobRef) -> UntilDamage {
        UntilDamage {
            inner: reader.open_blob(blob).ok(),
            buf: vec![0u8; CHUNK],
            pos: 0,
            filled: 0,
        }
    }
}

impl Read for UntilDamage {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            let Some(inner) = self.inner.as_mut() else {
                return Ok(0);
            };
            let n = loop {
                match inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break 0,
                }
            };
            if n == 0 {
                self.inner = None;
                return Ok(0);
            }
            self.pos = 0;
            self.filled = n;
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Salvage sizes, computed once per blob (decompressing up to the damage).
pub struct SalvageSizes {
    lru: Mutex<LruCache<String, u64>>,
}

impl SalvageSizes {
    pub fn new(entries: usize) -> SalvageSizes {
        SalvageSizes {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(entries.max(1)).expect("nonzero"),
            )),
        }
    }

    pub fn size(&self, reader: &dyn BackupReader, blob: &BlobRef) -> u64 {
        if let Some(&n) = self.lru.lock().unwrap().get(&blob.locator) {
            return n;
        }
        let n = io::copy(&mut UntilDamage::open(reader, blob), &mut io::sink()).unwrap_or(0);
        self.lru.lock().unwrap().put(blob.locator.clone(), n);
        n
    }
}

/// An open `.salvaged` file: its blob, its size, and a forward-only stream.
pub struct SalvageFile {
    blob: BlobRef,
    size: u64,
    stream: Mutex<Option<(UntilDamage, u64)>>,
}

impl SalvageFile {
    pub fn new(blob: BlobRef, size: u64) -> SalvageFile {
        SalvageFile {
            blob,
            size,
            stream: Mutex::new(None),
        }
    }

    /// Up to `len` bytes at `offset`; reading backwards reopens the stream.
    pub fn read_at(&self, reader: &dyn BackupReader, offset: u64, len: usize) -> Vec<u8> {
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Vec::new();
        }
        let mut guard = self.stream.lock().unwrap();
        if !matches!(&*guard, Some((_, pos)) if *pos <= offset) {
            *guard = Some((UntilDamage::open(reader, &self.blob), 0));
        }
        let (stream, pos) = guard.as_mut().expect("stream just opened");
        *pos += io::copy(&mut stream.by_ref().take(offset - *pos), &mut io::sink()).unwrap_or(0);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let got = stream
            .by_ref()
            .take(end - offset)
            .read_to_end(&mut out)
            .unwrap_or(0);
        *pos += got as u64;
        out
    }
}

/// The error value of an item whose metadata cannot be parsed.
pub fn malformed(reader_error: &str) -> String {
    if reader_error.starts_with("malformed metadata") {
        reader_error.to_string()
    } else {
        format!("malformed metadata: {reader_error}")
    }
}

// The `.salvaged` nodes of the filesystem core.
impl super::MailFs {
    /// The name and node of the `.salvaged` file beside the file `name` of
    /// `row`, and whether it is listed (its blob is known broken in a salvageable way). Every state
    /// with a blob has one that resolves.
    pub(super) fn salvage_entry(
        &self,
        row: &crate::catalog::StateRow,
        name: &str,
        view: super::View,
        acct: i64,
    ) -> Option<(String, super::Node, bool)> {
        let blob = row.blob.as_ref()?;
        if row.deleted || !row.kind.is_file() {
            return None;
        }
        let listed = self
            .broken
            .lock()
            .unwrap()
            .get(&blob.locator)
            .is_some_and(|why| is_salvageable(why));
        let node = super::Node::Salvaged {
            acct,
            view,
            item: row.item_id,
            seq: row.seq,
        };
        let name = super::names::cut_utf8(name, super::names::NAME_MAX - SUFFIX.len());
        Some((format!("{name}{SUFFIX}"), node, listed))
    }

    fn salvage_state(&self, acct: i64, item: i64, seq: i64) -> super::FsResult<(BlobRef, i64)> {
        let row = self
            .catalog
            .state(acct, item, seq)?
            .ok_or(super::FsError::NotFound)?;
        let mtime = row.date.unwrap_or(row.start);
        Ok((row.blob.ok_or(super::FsError::NotFound)?, mtime))
    }

    pub(super) fn salvage_attr(
        &self,
        ino: u64,
        acct: i64,
        item: i64,
        seq: i64,
    ) -> super::FsResult<super::Attr> {
        let (blob, mtime) = self.salvage_state(acct, item, seq)?;
        Ok(super::Attr {
            ino,
            kind: super::EntryKind::File,
            size: self.salvage_sizes.size(&*self.reader, &blob),
            mtime,
            writable: false,
            volatile: false,
        })
    }

    pub(super) fn open_salvaged(
        &self,
        ino: u64,
        acct: i64,
        item: i64,
        seq: i64,
    ) -> super::FsResult<super::OpenFile> {
        let size = self.salvage_attr(ino, acct, item, seq)?.size;
        let (blob, _) = self.salvage_state(acct, item, seq)?;
        Ok(super::OpenFile::Salvaged(SalvageFile::new(blob, size)))
    }
}
