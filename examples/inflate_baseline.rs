//! The in-process inflate floor of `scripts/bench`: decompress a list of
//! gzip blobs in this one process, with the same inflate backend the mount
//! uses (flate2 on zlib-rs), in N threads over contiguous parts of the list.
//!
//! `inflate_baseline LIST THREADS`: LIST holds NUL-separated blob paths.
//! Prints the decompressed bytes and the seconds taken, tab-separated.

use std::io::Read;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(list), Some(threads)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: inflate_baseline LIST THREADS");
    };
    let threads: usize = threads.parse()?;
    let raw = std::fs::read(list)?;
    let paths: Vec<&[u8]> = raw.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    let started = Instant::now();
    let parts: Vec<&[&[u8]]> = paths
        .chunks(paths.len().div_ceil(threads.max(1)).max(1))
        .collect();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| s.spawn(move || inflate_all(part)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    println!("{total}\t{:.4}", started.elapsed().as_secs_f64());
    Ok(())
}

/// Decompressed bytes of every blob of `paths` (stored blobs count as is).
fn inflate_all(paths: &[&[u8]]) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    for p in paths {
        let Ok(bytes) = std::fs::read(std::ffi::OsStr::from_bytes(p)) else {
            continue;
        };
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut d = flate2::read::MultiGzDecoder::new(&bytes[..]);
            while let Ok(n) = d.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        } else {
            total += bytes.len() as u64;
        }
    }
    total
}
