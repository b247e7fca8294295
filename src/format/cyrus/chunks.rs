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

/// Decompress the gzip member at `offset` of `file`, whole, when it is at
/// most `limit` bytes long uncompressed; `None` when it is longer (nothing
/// more than `limit` and one read buffer is ever held: a chunk the index
/// calls small may be a bomb). Never fails for bad data: damage is reported
/// in [`Chunk::damage`] with the bytes that decompressed before it.
pub fn inflate_member(file: &mut File, offset: u64, limit: usize) -> io::Result<Option<Chunk>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Chunk {
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
                return Ok(Some(chunk));
            }
            Ok(None) => fill(file, &mut inbuf, &mut eof)?,
            Err(e) => {
                chunk.damage = Some(e);
                return Ok(Some(chunk));
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
        if chunk.data.len() > limit {
            return Ok(None);
        }
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
                    return Ok(Some(chunk));
                }
            }
            Err(e) => {
                chunk.damage = Some(format!("corrupt compressed data: {e}"));
                return Ok(Some(chunk));
            }
        }
    }
    // Trailer: CRC32 and ISIZE, little-endian.
    while inbuf.len() - consumed < 8 && !eof {
        fill(file, &mut inbuf, &mut eof)?;
    }
    let trailer = &inbuf[consumed..];
    if chunk.data.len() > limit {
        return Ok(None);
    }
    if trailer.len() < 8 {
        chunk.damage = Some("data file ends inside a gzip trailer (truncated)".into());
        return Ok(Some(chunk));
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
    Ok(Some(chunk))
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
    /// Length of the member's gzip header.
    hlen: u64,
    /// CRC of the bytes handed out, checked by [`MemberStream::end`].
    crc: flate2::Crc,
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
            hlen: 0,
            crc: flate2::Crc::new(),
        };
        loop {
            match header_len(&s.inbuf) {
                Ok(Some(n)) => {
                    s.consumed = n;
                    s.hlen = n as u64;
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

    /// After the last byte was read: the member's compressed length (header
    /// to trailer) and what is wrong with its trailer (CRC, length, absent).
    pub fn end(&mut self) -> io::Result<(Option<u64>, Option<String>)> {
        if !self.ended {
            return Ok((None, None));
        }
        while self.inbuf.len() - self.consumed < 8 && !self.eof {
            self.fill()?;
        }
        let t = &self.inbuf[self.consumed..];
        if t.len() < 8 {
            return Ok((
                None,
                Some("data file ends inside a gzip trailer (truncated)".into()),
            ));
        }
        let want_crc = u32::from_le_bytes(t[..4].try_into().expect("4"));
        let want_len = u32::from_le_bytes(t[4..8].try_into().expect("4"));
        let damage = if want_crc != self.crc.sum() {
            Some("gzip CRC mismatch".to_string())
        } else if want_len != self.z.total_out() as u32 {
            Some("gzip length mismatch".to_string())
        } else {
            None
        };
        Ok((Some(self.hlen + self.z.total_in() + 8), damage))
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
            self.crc.update(&buf[..made]);
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

/// Longest chunk line kept in memory (message literals cut to [`PREVIEW`]
/// do not count): a longer one is skipped and reported.
pub const LINE_MAX: usize = 64 << 20;

/// Bytes of each message literal kept in a [`CompactLine`]: its header
/// fields (the subject) are in them.
pub const PREVIEW: u64 = 64 * 1024;

/// A message literal of a [`CompactLine`]: where its bytes really are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub guid: String,
    /// Offset of its first byte in the uncompressed chunk.
    pub offset: u64,
    /// Its real size (the line holds at most [`PREVIEW`] bytes of it).
    pub size: u64,
}

/// One chunk line as the dlist parser reads it, with every message literal
/// `%{part guid size}` cut to its first [`PREVIEW`] bytes (its header says
/// the kept length); [`CompactLine::literals`] says where they really are.
#[derive(Debug, Default)]
pub struct CompactLine {
    pub bytes: Vec<u8>,
    /// Offset of the line's first byte in the uncompressed chunk.
    pub start: u64,
    pub literals: Vec<Literal>,
    /// Longer than [`LINE_MAX`]: skipped up to its end, `bytes` is partial.
    pub too_long: bool,
}

/// The lines of a chunk, streamed out of its member: memory is one line
/// (literals cut) and the decoder's buffers, whatever the chunk's size.
pub struct ChunkLines {
    s: MemberStream,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Uncompressed offset of `buf[pos]`.
    at: u64,
    done: bool,
    damage: Option<String>,
}

impl ChunkLines {
    pub fn new(s: MemberStream) -> Self {
        ChunkLines {
            s,
            buf: vec![0u8; STREAM_IN],
            pos: 0,
            len: 0,
            at: 0,
            done: false,
            damage: None,
        }
    }

    fn byte(&mut self) -> Option<u8> {
        if self.pos == self.len {
            if self.done {
                return None;
            }
            match self.s.read(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                }
                Err(e) => {
                    self.done = true;
                    self.damage = Some(e.to_string());
                    return None;
                }
            }
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        self.at += 1;
        Some(b)
    }

    /// Move `n` bytes to `out` (or drop them when `out` is `None`); false
    /// when the chunk ends first.
    fn take(&mut self, mut n: u64, mut out: Option<&mut Vec<u8>>) -> bool {
        while n > 0 {
            if self.pos == self.len {
                let Some(b) = self.byte() else { return false };
                if let Some(o) = out.as_deref_mut() {
                    o.push(b);
                }
                n -= 1;
                continue;
            }
            let k = (self.len - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            if let Some(o) = out.as_deref_mut() {
                o.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            }
            self.pos += k;
            self.at += k as u64;
            n -= k as u64;
        }
        true
    }

    /// Bytes up to and including `close` (at most `max`), or `None`.
    fn until(&mut self, close: u8, max: usize) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        loop {
            let b = self.byte()?;
            v.push(b);
            if b == close {
                return Some(v);
            }
            if v.len() > max {
                return None;
            }
        }
    }

    /// The next line; `None` at the end of the chunk (or its damage).
    pub fn next_line(&mut self) -> Option<CompactLine> {
        let mut line = CompactLine {
            start: self.at,
            ..CompactLine::default()
        };
        let first = self.byte()?;
        let comment = first == b'#';
        let mut next = Some(first);
        loop {
            let c = match next.take() {
                Some(c) => c,
                None => match self.byte() {
                    Some(c) => c,
                    None => return Some(line),
                },
            };
            line.bytes.push(c);
            if c == b'\n' {
                return Some(line);
            }
            if line.bytes.len() > LINE_MAX {
                line.too_long = true;
                while self.byte().is_some_and(|b| b != b'\n') {}
                return Some(line);
            }
            if comment {
                continue;
            }
            match c {
                b'"' => loop {
                    let Some(b) = self.byte() else {
                        return Some(line);
                    };
                    line.bytes.push(b);
                    match b {
                        b'\\' => {}
                        b'"' => break,
                        b'\n' => return Some(line),
                        _ => continue,
                    }
                    if let Some(b) = self.byte() {
                        line.bytes.push(b);
                    }
                },
                b'{' => {
                    let Some(head) = self.until(b'}', 24) else {
                        return Some(line);
                    };
                    line.bytes.extend_from_slice(&head);
                    let digits = head[..head.len() - 1]
                        .strip_suffix(b"+")
                        .unwrap_or(&head[..head.len() - 1]);
                    let n = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<u64>().ok());
                    if let Some(n) = n {
                        if !self.crlf(&mut line.bytes) {
                            continue;
                        }
                        if line.bytes.len() as u64 + n > LINE_MAX as u64 {
                            line.too_long = true;
                            self.take(n, None);
                            while self.byte().is_some_and(|b| b != b'\n') {}
                            return Some(line);
                        }
                        if !self.take(n, Some(&mut line.bytes)) {
                            return Some(line);
                        }
                    }
                }
                b'%' => match self.byte() {
                    Some(b'{') => {
                        if !self.file_literal(&mut line) {
                            return Some(line);
                        }
                    }
                    other => next = other,
                },
                _ => {}
            }
        }
    }

    /// After a literal's `}`: its CRLF (or LF) copied; false if absent.
    fn crlf(&mut self, out: &mut Vec<u8>) -> bool {
        match self.byte() {
            Some(b'\n') => {
                out.push(b'\n');
                true
            }
            Some(b'\r') => {
                out.push(b'\r');
                match self.byte() {
                    Some(b'\n') => {
                        out.push(b'\n');
                        true
                    }
                    Some(b) => {
                        out.push(b);
                        false
                    }
                    None => false,
                }
            }
            Some(b) => {
                out.push(b);
                false
            }
            None => false,
        }
    }

    /// After `%{`: the header rewritten with the kept length, the first
    /// [`PREVIEW`] bytes of the message, the rest skipped. False when the
    /// chunk ends inside it.
    fn file_literal(&mut self, line: &mut CompactLine) -> bool {
        line.bytes.push(b'{');
        let Some(head) = self.until(b'}', 512) else {
            return false;
        };
        let text = String::from_utf8_lossy(&head[..head.len() - 1]).into_owned();
        let words: Vec<&str> = text.split(' ').collect();
        let parsed = match words.as_slice() {
            [part, guid, size] => size.parse::<u64>().ok().map(|n| (*part, *guid, n)),
            _ => None,
        };
        let Some((part, guid, size)) = parsed else {
            // Not a message literal: left for the parser to refuse.
            line.bytes.extend_from_slice(&head);
            return true;
        };
        let keep = size.min(PREVIEW);
        line.bytes
            .extend_from_slice(format!("{part} {guid} {keep}}}").as_bytes());
        if !self.crlf(&mut line.bytes) {
            return true;
        }
        line.literals.push(Literal {
            guid: guid.to_ascii_lowercase(),
            offset: self.at,
            size,
        });
        self.take(keep, Some(&mut line.bytes)) && self.take(size - keep, None)
    }

    /// At the end of the lines: the member's compressed length, when it
    /// ended cleanly, and its damage.
    pub fn finish(mut self) -> io::Result<(Option<u64>, Option<String>)> {
        if let Some(d) = self.damage.take() {
            return Ok((None, Some(d)));
        }
        self.s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn member(data: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        let gz = e.finish().unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&gz).unwrap();
        (f, gz.len() as u64)
    }

    #[test]
    fn lines_stream_with_message_literals_cut() {
        let body = vec![b'x'; 200_000];
        let mut data = b"# chunk start\r\n1 APPLY MESSAGE (%{default abcd 200000}\r\n".to_vec();
        let lit_at = data.len() as u64;
        data.extend_from_slice(&body);
        data.extend_from_slice(b")\r\n2 APPLY SEEN %(A \"q\\\"{3}\" B {4}\r\n%{x})\r\n");
        let (f, clen) = member(&data);
        let s = MemberStream::open(f.reopen().unwrap(), 0).unwrap();
        let mut lines = ChunkLines::new(s);
        let l = lines.next_line().unwrap();
        assert_eq!(l.bytes, b"# chunk start\r\n");
        let l = lines.next_line().unwrap();
        assert_eq!(
            l.literals,
            [Literal {
                guid: "abcd".into(),
                offset: lit_at,
                size: 200_000
            }]
        );
        // The header says 65536 (one digit fewer than 200000).
        assert_eq!(l.bytes.len() as u64, lit_at - 1 + PREVIEW + 3 - l.start);
        let parsed = super::super::dlist::parse_line(&l.bytes, 0)
            .unwrap()
            .0
            .unwrap();
        assert_eq!(parsed.name, "MESSAGE");
        let l = lines.next_line().unwrap();
        assert_eq!(l.bytes, b"2 APPLY SEEN %(A \"q\\\"{3}\" B {4}\r\n%{x})\r\n");
        assert!(super::super::dlist::parse_line(&l.bytes, 0)
            .unwrap()
            .0
            .is_some());
        assert!(lines.next_line().is_none());
        assert_eq!(lines.finish().unwrap(), (Some(clen), None));
    }
}
