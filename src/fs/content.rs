//! Reading item bytes: streaming decompression through the reader, with a
//! byte-bounded cache of decompressed windows shared by all open files.
//!
//! A file is cut into fixed windows. A read copies from cached windows and
//! fills missing ones from the open file's stream, which moves forward only;
//! reading backwards past the cache reopens the stream. Memory is the cache
//! budget plus one stream per open file, whatever the size of a message.

use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::format::BackupReader;
use crate::model::BlobRef;

/// Window size: large enough for few decompressor calls, small enough to
/// cache many files.
pub const WINDOW: u64 = 256 * 1024;

type WindowKey = (Arc<str>, u64);

/// Decompressed windows of blobs, bounded in bytes.
pub struct BlobCache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

struct CacheInner {
    lru: LruCache<WindowKey, Arc<Vec<u8>>>,
    bytes: usize,
}

impl BlobCache {
    pub fn new(budget_bytes: usize) -> BlobCache {
        BlobCache {
            inner: Mutex::new(CacheInner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget: budget_bytes.max(WINDOW as usize),
        }
    }

    fn get(&self, key: &WindowKey) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().unwrap().lru.get(key).cloned()
    }

    fn put(&self, key: WindowKey, data: Arc<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap();
        inner.bytes += data.len();
        if let Some(old) = inner.lru.put(key, data) {
            inner.bytes -= old.len();
        }
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, old)) => inner.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Bytes held now (for tests and statistics).
    pub fn held_bytes(&self) -> usize {
        self.inner.lock().unwrap().bytes
    }
}

/// An open blob: what it is, its exact size, and a forward-only stream.
pub struct OpenBlob {
    blob: BlobRef,
    key: Arc<str>,
    size: u64,
    stream: Mutex<Option<(Box<dyn Read + Send>, u64)>>,
}

impl OpenBlob {
    pub fn new(blob: BlobRef, size: u64) -> OpenBlob {
        OpenBlob {
            key: Arc::from(blob.locator.as_str()),
            blob,
            size,
            stream: Mutex::new(None),
        }
    }

    pub fn locator(&self) -> &str {
        &self.blob.locator
    }

    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read up to `len` bytes at `offset` (fewer only at the end).
    pub fn read_at(
        &self,
        reader: &dyn BackupReader,
        cache: &BlobCache,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = pos / WINDOW;
            let window = self.window(reader, cache, idx)?;
            let from = (pos - idx * WINDOW) as usize;
            if from >= window.len() {
                // The blob is shorter than its size: the stream ended early.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} ended at {} bytes, expected {}",
                        self.blob.locator,
                        idx * WINDOW + window.len() as u64,
                        self.size
                    ),
                ));
            }
            let to = window.len().min(from + (end - pos) as usize);
            out.extend_from_slice(&window[from..to]);
            pos += (to - from) as u64;
        }
        Ok(out)
    }

    fn window(
        &self,
        reader: &dyn BackupReader,
        cache: &BlobCache,
        idx: u64,
    ) -> io::Result<Arc<Vec<u8>>> {
        let key = (self.key.clone(), idx);
        if let Some(w) = cache.get(&key) {
            return Ok(w);
        }
        let mut guard = self.stream.lock().unwrap();
        // Another reader of this file may have filled it meanwhile.
        if let Some(w) = cache.get(&key) {
            return Ok(w);
        }
        let start = idx * WINDOW;
        let reuse = matches!(&*guard, Some((_, pos)) if *pos <= start);
        if !reuse {
            *guard = Some((reader.open_blob(&self.blob)?, 0));
        }
        let (stream, pos) = guard.as_mut().expect("stream just opened");
        // Windows passed on the way are cached, not thrown away: the
        // kernel's readahead often asks for a later window first, and the
        // earlier one would otherwise cost a second decompression from the
        // start of the blob.
        while *pos < start {
            let at = *pos;
            let mut buf = vec![0u8; WINDOW.min(start - at) as usize];
            match fill(stream, &mut buf) {
                Ok(n) if n == buf.len() => {
                    *pos += n as u64;
                    if at % WINDOW == 0 && n as u64 == WINDOW {
                        cache.put((self.key.clone(), at / WINDOW), Arc::new(buf));
                    }
                }
                Ok(n) => {
                    *pos += n as u64;
                    break;
                }
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        }
        let want = WINDOW.min(self.size.saturating_sub(start)) as usize;
        let mut buf = vec![0u8; want];
        let got = match fill(stream, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                *guard = None;
                return Err(e);
            }
        };
        buf.truncate(got);
        *pos += got as u64;
        if *pos >= self.size {
            // At the end: pull once more so the reader checks the trailer
            // (CRC, length, digest) before the last bytes are served, and
            // so that a stream longer than its size (a lying trailer, a
            // member without an end) is broken, not served cut.
            let mut probe = [0u8; 1];
            let verdict = stream.read(&mut probe);
            *guard = None;
            if verdict? > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "corrupt gzip: blob {} is longer than its {} bytes",
                        self.blob.locator, self.size
                    ),
                ));
            }
        }
        let window = Arc::new(buf);
        cache.put(key, window.clone());
        Ok(window)
    }
}

/// Read until `buf` is full or the stream ends.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Sizes confirmed by the reader, so `stat` does not ask twice.
pub struct SizeCache {
    lru: Mutex<LruCache<String, u64>>,
    /// Blobs whose size mismatch was logged already.
    mismatch_logged: Mutex<std::collections::HashSet<String>>,
}

impl SizeCache {
    pub fn new(entries: usize) -> SizeCache {
        SizeCache {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(entries.max(1)).expect("nonzero"),
            )),
            mismatch_logged: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The size of `blob`, from the cache or `f`. A size other than the
    /// metadata's `claimed` one is logged, once per blob for the life of
    /// the mount (not again when the entry is evicted and computed again).
    pub fn get_or(
        &self,
        blob: &BlobRef,
        claimed: Option<u64>,
        f: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<u64> {
        if let Some(&n) = self.lru.lock().unwrap().get(&blob.locator) {
            return Ok(n);
        }
        let n = f()?;
        if let Some(c) = claimed.filter(|c| *c != n) {
            if self
                .mismatch_logged
                .lock()
                .unwrap()
                .insert(blob.locator.clone())
            {
                log::warn!(
                    "blob {}: size mismatch: the metadata says {c} bytes, the blob has {n}; serving {n}",
                    blob.locator
                );
            }
        }
        self.lru.lock().unwrap().put(blob.locator.clone(), n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::AccountEntry;
    use crate::model::{Account, Item};

    /// A reader whose every blob is 1000 bytes of `x`.
    struct Long;

    impl BackupReader for Long {
        fn format_name(&self) -> &'static str {
            "test"
        }
        fn list_accounts(&self) -> anyhow::Result<Vec<AccountEntry>> {
            Ok(Vec::new())
        }
        fn read_account(&self, _: &str, _: &mut dyn FnMut(Item)) -> anyhow::Result<Account> {
            anyhow::bail!("none")
        }
        fn open_blob(&self, _: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::repeat(b'x').take(1000)))
        }
        fn blob_len(&self, _: &BlobRef, _: Option<u64>) -> io::Result<u64> {
            Ok(1000)
        }
    }

    fn blob() -> BlobRef {
        BlobRef {
            locator: "b".into(),
            digest: None,
        }
    }

    #[test]
    fn a_stream_longer_than_its_size_is_broken() {
        let cache = BlobCache::new(1 << 20);
        let f = OpenBlob::new(blob(), 300);
        let e = f.read_at(&Long, &cache, 0, 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert_eq!(cache.held_bytes(), 0, "nothing of it cached");
        let f = OpenBlob::new(blob(), 1000);
        assert_eq!(f.read_at(&Long, &cache, 0, 4096).unwrap().len(), 1000);
    }
}
