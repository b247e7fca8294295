//! The data file's chunks: independent gzip members, decompressed one at a
//! time with their exact compressed length (so the next member is found
//! without an index), and a byte-bounded cache of decompressed chunks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use flate2::{Decompress, FlushDecompress, Status};

/// The gzip member header Cyrus writes (deflate, no flags, mtime 0, Unix).
pub const MEMBER_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// One decompressed chunk.
#[derive(Debug)]
pub struct Chunk {
    /// Offset of the gzip member in the data file.
    pub file_offset: u64,
    /// Compressed length (header to trailer), when the member ended cleanly.
    pub compressed_len: Option<u64>,
    /// The bytes that decompressed (all of them, or those before the damage).
    pub data: Vec<u8>,
    /// Why the member is damaged (bad deflate data, CRC, length, truncation).
    pub damage: Option<String>,
}

const READ_BUF: usize = 256 * 1024;

/// Skip the gzip header at the start of `buf`; returns its length, or an
/// error message. `None` when more bytes are needed.
fn header_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 10 {
        return Ok(None);
    }
    if buf[..3] != MEMBER_MAGIC {
        return Err("no gzip member starts here".into());
    }
    let flags = buf[3];
    let mut p = 10;
    if flags & 0x04 != 0 {
        if buf.len() < p + 2 {
            return Ok(None);
        }
        p += 2 + u16::from_le_bytes([buf[p], buf[p + 1]]) as usize;
    }
    for bit in [0x08u8, 0x10] {
        if flags & bit != 0 {
            match buf.get(p..).and_then(|s| s.iter().position(|&c| c == 0)) {
                Some(n) => p += n + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        p += 2;
    }
    if buf.len() < p {
        return Ok(None);
    }
    Ok(Some(p))
}

/// Decompress the gzip member at `offset` of `file`. Never fails for bad
/// data: damage is reported in [`Chunk::damage`] with the bytes that
/// decompressed before it.
pub fn inflate_member(file: &mut File, offset: u64) -> io::Result<Chunk> {
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Chunk {
        file_offset: offset,
        compressed_len: None,
        data: Vec::new(),
        damage: None,
    };
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut eof = false;
    let fill = |file: &mut File, inbuf: &mut Vec<u8>, eof: &mut bool| -> io::Result<()> {
        let old = inbuf.len();
        inbuf.resize(old + READ_BUF, 0);
        let n = file.read(&mut inbuf[old..])?;
        inbuf.truncate(old + n);
        if n == 0 {
            *eof = true;
        }
        Ok(())
    };
    // Header.
    let hlen = loop {
        match header_len(&inbuf) {
            Ok(Some(n)) => break n,
            Ok(None) if eof => {
                chunk.damage = Some("data file ends inside a gzip header".into());
                return Ok(chunk);
            }
            Ok(None) => fill(file, &mut inbuf, &mut eof)?,
            Err(e) => {
                chunk.damage = Some(e);
                return Ok(chunk);
            }
        }
    };
    let mut consumed = hlen; // bytes of inbuf already used
    let mut base = 0u64; // file bytes dropped from the front of inbuf
    let mut z = Decompress::new(false);
    let mut crc = flate2::Crc::new();
    loop {
        if consumed == inbuf.len() {
            base += inbuf.len() as u64;
            inbuf.clear();
            consumed = 0;
            fill(file, &mut inbuf, &mut eof)?;
        }
        let before_in = z.total_in();
        let out_start = chunk.data.len();
        if chunk.data.capacity() - chunk.data.len() < READ_BUF {
            chunk.data.reserve(READ_BUF * 4);
        }
        let res = z.decompress_vec(&inbuf[consumed..], &mut chunk.data, FlushDecompress::None);
        consumed += (z.total_in() - before_in) as usize;
        crc.update(&chunk.data[out_start..]);
        match res {
            Ok(Status::StreamEnd) => break,
            Ok(_) => {
                if eof && consumed == inbuf.len() {
                    chunk.damage = Some("data file ends inside a chunk (truncated)".into());
                    return Ok(chunk);
                }
            }
            Err(e) => {
                chunk.damage = Some(format!("corrupt compressed data: {e}"));
                return Ok(chunk);
            }
        }
    }
    // Trailer: CRC32 and ISIZE, little-endian.
    while inbuf.len() - consumed < 8 && !eof {
        fill(file, &mut inbuf, &mut eof)?;
    }
    let trailer = &inbuf[consumed..];
    if trailer.len() < 8 {
        chunk.damage = Some("data file ends inside a gzip trailer (truncated)".into());
        return Ok(chunk);
    }
    let want_crc = u32::from_le_bytes(trailer[..4].try_into().expect("4"));
    let want_len = u32::from_le_bytes(trailer[4..8].try_into().expect("4"));
    if want_crc != crc.sum() {
        chunk.damage = Some("gzip CRC mismatch".into());
    } else if want_len != chunk.data.len() as u32 {
        chunk.damage = Some("gzip length mismatch".into());
    }
    // `base` counts the bytes dropped since `offset`.
    chunk.compressed_len = Some(base + consumed as u64 + 8);
    chunk.data.shrink_to_fit();
    Ok(chunk)
}

/// Find the next gzip member header at or after `from` (used to skip a
/// damaged member when no index tells where the next one starts).
pub fn find_next_member(file: &mut File, from: u64) -> io::Result<Option<u64>> {
    // Cyrus writes exactly this 10-byte header.
    const FULL: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03];
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; READ_BUF];
    let mut pos = from;
    let mut keep = 0usize;
    loop {
        let n = file.read(&mut buf[keep..])?;
        if n == 0 {
            return Ok(None);
        }
        let have = keep + n;
        if let Some(i) = buf[..have].windows(FULL.len()).position(|w| w == FULL) {
            return Ok(Some(pos + i as u64));
        }
        keep = (FULL.len() - 1).min(have);
        let drop = have - keep;
        buf.copy_within(drop..have, 0);
        pos += drop as u64;
    }
}

/// A byte-bounded LRU of decompressed chunks, keyed by (data file, member
/// offset). Chunks larger than a quarter of the budget are not kept.
pub struct ChunkCache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

struct CacheInner {
    lru: lru::LruCache<(String, u64), Arc<Chunk>>,
    bytes: usize,
}

impl ChunkCache {
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                lru: lru::LruCache::new(NonZeroUsize::new(1024).expect("non-zero")),
                bytes: 0,
            }),
            budget,
        }
    }

    pub fn get(&self, key: &(String, u64)) -> Option<Arc<Chunk>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.lru.get(key).cloned()
    }

    pub fn put(&self, key: (String, u64), chunk: Arc<Chunk>) {
        let size = chunk.data.len();
        if size > self.budget / 4 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = g.lru.push(key, chunk) {
            g.bytes -= old.data.len();
        }
        g.bytes += size;
        while g.bytes > self.budget {
            match g.lru.pop_lru() {
                Some((_, old)) => g.bytes -= old.data.len(),
                None => break,
            }
        }
    }
}
