//! Measure the Zextras reader on a generated backup.
//!
//! `cargo run --release --example zextras_bench -- DIR [ACCOUNTS ITEMS_PER_ACCOUNT]`:
//! generates the backup into DIR when the counts are given, then times
//! `list_accounts`, `read_account` (metadata files per second) and reading
//! every blob once (MB/s of decompressed output).

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use mailbackfs::format::zextras::ZextrasReader;
use mailbackfs::format::BackupReader;
use mailbackfs::synth::{write_generated, GenOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        anyhow::bail!("usage: zextras_bench DIR [ACCOUNTS ITEMS_PER_ACCOUNT]");
    };
    let dir = Path::new(dir);
    if let (Some(a), Some(n)) = (args.get(1), args.get(2)) {
        let opts = GenOptions {
            accounts: a.parse()?,
            items_per_account: n.parse()?,
            seed: 1,
            big_folder: None,
        };
        let t = Instant::now();
        let info = write_generated(dir, &opts)?;
        println!(
            "generated {} metadata files, {} blobs ({} MB) in {:.2}s",
            info.metadata_files,
            info.blobs,
            info.blob_bytes / 1_000_000,
            t.elapsed().as_secs_f64()
        );
    }
    let r = ZextrasReader::open(dir)?;
    let t = Instant::now();
    let accounts = r.list_accounts()?;
    println!(
        "list_accounts: {} accounts in {:.3}s",
        accounts.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut blobs = Vec::new();
    let mut n = 0usize;
    for a in &accounts {
        r.read_account(&a.key, &mut |item| {
            n += 1;
            for s in &item.states {
                if let Some(b) = &s.blob {
                    blobs.push(b.clone());
                }
            }
        })?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read_account: {n} items in {secs:.3}s = {:.0} files/s",
        n as f64 / secs
    );
    blobs.sort_by(|a, b| a.locator.cmp(&b.locator));
    blobs.dedup();
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 128 * 1024];
    for b in &blobs {
        let mut rd = r.open_blob(b)?;
        loop {
            let k = rd.read(&mut buf)?;
            if k == 0 {
                break;
            }
            bytes += k as u64;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "open_blob: {} blobs, {} MB in {secs:.2}s = {:.0} MB/s (checked inflate + SHA-256)",
        blobs.len(),
        bytes / 1_000_000,
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}
