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

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Input buffer of a streaming member decoder: small, whatever the chunk.
const STREAM_IN: usize = 64 * 1024;

/// A gzip member decompressed on demand, forward only: memory is the
/// decompressor's state and one input buffer, whatever the chunk's size.
/// The member's CRC is not checked (a reader stops before the member's
/// end); damage shows as `InvalidData` errors.
pub struct MemberStream {
    file: File,
    z: Decompress,
    inbuf: Vec<u8>,
    consumed: usize,
    eof: bool,
    ended: bool,
}

impl MemberStream {
    /// Start decompressing the member at `offset` of `file`.
    pub fn open(mut file: File, offset: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(offset))?;
        let mut s = MemberStream {
            file,
            z: Decompress::new(false),
            inbuf: Vec::with_capacity(STREAM_IN),
            consumed: 0,
            eof: false,
            ended: false,
        };
        loop {
            match header_len(&s.inbuf) {
                Ok(Some(n)) => {
                    s.consumed = n;
                    return Ok(s);
                }
                Ok(None) if s.eof => {
                    return Err(invalid("data file ends inside a gzip header".into()))
                }
                Ok(None) => s.fill()?,
                Err(e) => return Err(invalid(e)),
            }
        }
    }

    /// Read more input, keeping the unconsumed bytes.
    fn fill(&mut self) -> io::Result<()> {
        self.inbuf.drain(..self.consumed);
        self.consumed = 0;
        let old = self.inbuf.len();
        let want = STREAM_IN.max(old + 4096);
        self.inbuf.resize(want, 0);
        let n = loop {
            match self.file.read(&mut self.inbuf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.inbuf.truncate(old);
                return Err(e);
            }
        };
        self.inbuf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Uncompressed bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.z.total_out()
    }

    /// Skip `n` uncompressed bytes; fails if the member ends first.
    pub fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut scratch = [0u8; 16 * 1024];
        while n > 0 {
            let want = scratch.len().min(n as usize);
            let got = self.read(&mut scratch[..want])?;
            if got == 0 {
                return Err(invalid(format!(
                    "chunk ends at {} bytes, before the wanted offset",
                    self.position()
                )));
            }
            n -= got as u64;
        }
        Ok(())
    }
}

impl Read for MemberStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.ended {
            return Ok(0);
        }
        let mut stalls = 0;
        loop {
            if self.consumed == self.inbuf.len() && !self.eof {
                self.fill()?;
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let res = self
                .z
                .decompress(&self.inbuf[self.consumed..], buf, FlushDecompress::None);
            let used = (self.z.total_in() - in0) as usize;
            let made = (self.z.total_out() - out0) as usize;
            self.consumed += used;
            match res {
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    return Ok(made);
                }
                Ok(_) if made > 0 => return Ok(made),
                Ok(_) => {
                    if self.eof && self.consumed == self.inbuf.len() {
                        return Err(invalid("data file ends inside a chunk (truncated)".into()));
                    }
                    if used == 0 {
                        stalls += 1;
                        if stalls > 2 {
                            // No progress with input and room: read more.
                            self.fill()?;
                            if stalls > 64 {
                                return Err(invalid("compressed data makes no progress".into()));
                            }
                        }
                    }
                }
                Err(e) => return Err(invalid(format!("corrupt compressed data: {e}"))),
            }
        }
    }
}
