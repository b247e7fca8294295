//! Minimal read-only parser for Cyrus' twoskip database format, enough to
//! read `backups.db` (userid -> data file path). Live keys are found by
//! following the level-0 links from the dummy record.

use anyhow::{bail, Context, Result};

const MAGIC: &[u8; 20] = b"\xa1\x02\x8b\x0dtwoskip file\0\0\0\0";
const HEADER_SIZE: usize = 64;

fn be64(b: &[u8], at: usize) -> Result<u64> {
    let s = b
        .get(at..at + 8)
        .context("twoskip: record runs past the end")?;
    Ok(u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .context("twoskip: record runs past the end")?;
    Ok(u32::from_be_bytes(s.try_into().expect("4 bytes")))
}

struct Record<'a> {
    kind: u8,
    ptrs: Vec<u64>,
    key: &'a [u8],
    val: &'a [u8],
}

fn record(b: &[u8], off: usize) -> Result<Record<'_>> {
    let head = b
        .get(off..off + 8)
        .context("twoskip: record header past the end")?;
    let kind = head[0];
    let level = head[1] as usize;
    let mut keylen = u16::from_be_bytes([head[2], head[3]]) as u64;
    let mut vallen = be32(b, off + 4)? as u64;
    let mut p = off + 8;
    if keylen == 0xFFFF {
        keylen = be64(b, p)?;
        p += 8;
    }
    if vallen == 0xFFFF_FFFF {
        vallen = be64(b, p)?;
        p += 8;
    }
    let mut ptrs = Vec::with_capacity(level + 1);
    for _ in 0..=level {
        ptrs.push(be64(b, p)?);
        p += 8;
    }
    let crc_head = be32(b, p)?;
    if crc32(&b[off..p]) != crc_head {
        bail!("twoskip: bad header checksum of the record at {off}");
    }
    p += 8; // crc32_head + crc32_tail
    let klen = usize::try_from(keylen)?;
    let vlen = usize::try_from(vallen)?;
    let key = b.get(p..p + klen).context("twoskip: key past the end")?;
    let val = b
        .get(p + klen..p + klen + vlen)
        .context("twoskip: value past the end")?;
    Ok(Record {
        kind,
        ptrs,
        key,
        val,
    })
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// Every live (key, value) pair of a twoskip file, in key order.
pub fn read_all(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.len() < HEADER_SIZE || &bytes[..20] != MAGIC {
        bail!("not a twoskip file (bad magic)");
    }
    if crc32(&bytes[..60]) != be32(bytes, 60)? {
        bail!("twoskip: bad header checksum");
    }
    let current = usize::try_from(be64(bytes, 48)?)?.min(bytes.len());
    let b = &bytes[..current];
    let dummy = record(b, HEADER_SIZE)?;
    if dummy.kind != b'=' {
        bail!("twoskip: first record is not the dummy");
    }
    let next0 = |r: &Record| -> usize {
        let a = r.ptrs.first().copied().unwrap_or(0);
        let c = r.ptrs.get(1).copied().unwrap_or(0);
        let pick = [a, c]
            .into_iter()
            .filter(|&x| (x as usize) < current)
            .max()
            .unwrap_or(0);
        pick as usize
    };
    let mut out = Vec::new();
    let mut off = next0(&dummy);
    let mut guard = 0usize;
    while off != 0 {
        guard += 1;
        if guard > current / 8 + 1 {
            bail!("twoskip: link loop");
        }
        let r = record(b, off)?;
        if r.kind == b'+' {
            out.push((r.key.to_vec(), r.val.to_vec()));
        }
        off = next0(&r);
    }
    Ok(out)
}
