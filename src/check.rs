//! `mailbackfs check`: the coherency check of a backup, without a mail
//! server and without the catalogue.
//!
//! Reads every metadata file through the reader (an item whose metadata does
//! not parse is a problem), then verifies every blob some state references,
//! once however many items share it: it must open, decompress to the end and
//! hash to its digest (the reader's `open_blob` stream gives that verdict),
//! and be as long as the metadata says. When every account is checked, blobs
//! that no state references are orphans. Blobs are verified in parallel, one
//! thread per core, with a progress bar on a terminal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::format::BackupReader;
use crate::fs::salvage::{kind_of, malformed};
use crate::fs::tree::{folder_cycles, FolderCycle, FolderPlace};
use crate::model::{BlobRef, Item, ItemId, ItemKind};

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Only these accounts (addresses, aliases or keys); all when empty.
    /// Orphan blobs are looked for only when all accounts are checked.
    pub accounts: Vec<String>,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Threads verifying blobs; 0 means four per core (see [`run`]).
    pub threads: usize,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// `malformed metadata`, `missing blob`, `unreadable blob`,
    /// `corrupt gzip`, `truncated gzip`, `digest mismatch`, `size mismatch`,
    /// `folder cycle`, `account`.
    pub kind: String,
    /// The item's label (its id), when the problem is an item's.
    pub item: Option<String>,
    /// Where the blob is (or should be), when a blob is at fault.
    pub blob: Option<String>,
    pub detail: String,
}

/// The problems of one account.
#[derive(Clone, Debug, Serialize)]
pub struct AccountReport {
    pub key: String,
    pub name: String,
    /// Item metadata files read.
    pub items: usize,
    /// Distinct blobs its states reference.
    pub blobs: usize,
    pub problems: Vec<Problem>,
}

/// A blob no state references.
#[derive(Clone, Debug, Serialize)]
pub struct Orphan {
    pub digest: String,
    pub path: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: String,
    /// Problems of the backup as a whole (an unreadable account list, an
    /// account without a usable data file, duplicate entries).
    pub backup_problems: Vec<String>,
    pub accounts: Vec<AccountReport>,
    /// Whether orphans were looked for (all accounts checked, and the format
    /// can list its blobs).
    pub orphans_checked: bool,
    pub orphans: Vec<Orphan>,
    pub items: usize,
    pub blobs_verified: usize,
    pub blob_bytes: u64,
    pub elapsed_ms: u128,
    /// Of which reading the metadata.
    pub metadata_ms: u128,
    /// Problems in all accounts plus orphans.
    pub problems: usize,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems == 0
    }

    /// Items checked per second.
    pub fn rate(&self) -> f64 {
        self.items as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for p in &self.backup_problems {
            out.push_str(&format!("backup: {}\n", printable(p)));
        }
        for a in &self.accounts {
            let (name, key) = (printable(&a.name), printable(&a.key));
            if a.problems.is_empty() {
                out.push_str(&format!(
                    "{name} ({key}): ok, {} items, {} blobs\n",
                    a.items, a.blobs
                ));
                continue;
            }
            out.push_str(&format!(
                "{name} ({key}): {} problem(s), {} items, {} blobs\n",
                a.problems.len(),
                a.items,
                a.blobs
            ));
            for p in &a.problems {
                let item = p
                    .item
                    .as_ref()
                    .map(|i| format!("item {}: ", printable(i)))
                    .unwrap_or_default();
                // Details often start with their kind already (`malformed
                // metadata: ...`): say it once.
                let kind_prefix = format!("{}: ", p.kind);
                let detail = p.detail.strip_prefix(&kind_prefix).unwrap_or(&p.detail);
                out.push_str(&format!(
                    "  {item}{}: {}\n",
                    printable(&p.kind),
                    printable(detail)
                ));
            }
        }
        if self.orphans_checked {
            out.push_str(&format!("orphan blobs: {}\n", self.orphans.len()));
            for o in &self.orphans {
                let shown = o.path.as_deref().unwrap_or(&o.digest);
                out.push_str(&format!("  {}\n", printable(shown)));
            }
        } else {
            out.push_str("orphan blobs: not looked for (only when every account is checked)\n");
        }
        out.push_str(&format!(
            "{}: {} accounts, {} items, {} blobs ({} MiB) verified in {:.2}s ({:.0} items/s; metadata {:.2}s)\n",
            if self.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problem(s)", self.problems)
            },
            self.accounts.len(),
            self.items,
            self.blobs_verified,
            self.blob_bytes >> 20,
            self.elapsed_ms as f64 / 1000.0,
            self.rate(),
            self.metadata_ms as f64 / 1000.0
        ));
        out
    }
}

/// `s` safe to print on a terminal: control characters (escape sequences,
/// newlines, NUL) as `\xNN` / `\u{NNNN}`, and `\` itself as `\\`, so that
/// a hostile name can neither forge report lines nor drive the terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// One referenced blob and who references it.
struct BlobUse {
    blob: BlobRef,
    /// (account index, item label, size the metadata claims)
    refs: Vec<(usize, String, Option<u64>)>,
}

/// The verdict on one blob: its decompressed length, or what is wrong.
pub fn verify_blob(reader: &dyn BackupReader, blob: &BlobRef) -> io::Result<u64> {
    let mut stream = reader.open_blob(blob)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The reader's summary of metadata problems, already reported item by item.
fn is_item_summary(problem: &str) -> bool {
    problem.ends_with("item(s) with unreadable metadata")
}

fn bar(show: bool, len: Option<u64>, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Check the backup `reader` reads.
/// The places in the tree a folder item ever had; `None` for other items.
fn folder_places(item: &Item) -> Option<Vec<FolderPlace>> {
    if !item.states.iter().any(|s| s.kind == Some(ItemKind::Folder)) {
        return None;
    }
    Some(
        item.states
            .iter()
            .map(|s| FolderPlace {
                start: s.start,
                end: s.end,
                deleted: s.deleted,
                parent: s.folder_id,
            })
            .collect(),
    )
}

/// A parent cycle hides nothing (the views break it), but the backup is
/// not coherent: say where.
fn cycle_problem(cycle: &FolderCycle) -> Problem {
    let ids: Vec<String> = cycle.folders.iter().map(|f| f.to_string()).collect();
    Problem {
        kind: "folder cycle".into(),
        item: cycle.folders.first().map(|f| f.to_string()),
        blob: None,
        detail: format!(
            "folders {} are each other's parents from {} on; shown under unknown_{}",
            ids.join(" -> "),
            crate::timeline::format_instant(cycle.since),
            ids[0]
        ),
    }
}

pub fn run(reader: &dyn BackupReader, opts: &CheckOptions) -> Result<Report> {
    let started = Instant::now();
    let entries = reader.list_accounts()?;
    let wanted: HashSet<&str> = opts.accounts.iter().map(|s| s.as_str()).collect();
    let mut matched: HashSet<String> = HashSet::new();

    let mut accounts: Vec<AccountReport> = Vec::new();
    let mut blobs: HashMap<String, BlobUse> = HashMap::new();
    let mut items = 0usize;
    let meta_bar = bar(
        opts.progress,
        None,
        "{spinner} reading metadata: {pos} items, account {msg} {elapsed}",
    );
    // Accounts named by their keys need not be read to be recognised.
    let keys_only =
        !wanted.is_empty() && wanted.iter().all(|w| entries.iter().any(|e| e.key == *w));
    for entry in &entries {
        if keys_only && !wanted.contains(entry.key.as_str()) {
            continue;
        }
        let idx = accounts.len();
        let mut report = AccountReport {
            key: entry.key.clone(),
            name: entry.key.clone(),
            items: 0,
            blobs: 0,
            problems: Vec::new(),
        };
        let mut uses: Vec<(String, BlobRef, String, Option<u64>)> = Vec::new();
        let mut folders: BTreeMap<ItemId, Vec<FolderPlace>> = BTreeMap::new();
        meta_bar.set_message(entry.key.clone());
        let account = match reader.read_account(&entry.key, &mut |item| {
            report.items += 1;
            meta_bar.inc(1);
            if let Some(places) = folder_places(&item) {
                folders.insert(item.id, places);
            }
            if let Some(err) = &item.error {
                report.problems.push(Problem {
                    kind: "malformed metadata".into(),
                    item: Some(item.label.clone()),
                    blob: None,
                    detail: malformed(err),
                });
            }
            let mut seen: HashSet<(&str, Option<u64>)> = HashSet::new();
            for st in &item.states {
                if let Some(b) = &st.blob {
                    if seen.insert((b.locator.as_str(), st.size)) {
                        uses.push((b.locator.clone(), b.clone(), item.label.clone(), st.size));
                    }
                }
            }
        }) {
            Ok(a) => a,
            Err(e) => {
                if !wanted.is_empty() && !wanted.contains(entry.key.as_str()) {
                    continue;
                }
                report.problems.push(Problem {
                    kind: "account".into(),
                    item: None,
                    blob: None,
                    detail: format!("{e:#}"),
                });
                accounts.push(report);
                continue;
            }
        };
        let names: Vec<&str> = [account.key.as_str(), account.name.as_str()]
            .into_iter()
            .chain(account.aliases.iter().map(|s| s.as_str()))
            .collect();
        if !wanted.is_empty() {
            let hits: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| wanted.contains(n))
                .collect();
            if hits.is_empty() {
                continue;
            }
            matched.extend(hits.into_iter().map(String::from));
        }
        report.name = account.name.clone();
        for p in account.problems.iter().filter(|p| !is_item_summary(p)) {
            report.problems.push(Problem {
                kind: "account".into(),
                item: None,
                blob: None,
                detail: p.clone(),
            });
        }
        for cycle in folder_cycles(&folders) {
            report.problems.push(cycle_problem(&cycle));
        }
        let mut own: HashSet<String> = HashSet::new();
        for (locator, blob, label, size) in uses {
            own.insert(locator.clone());
            blobs
                .entry(locator)
                .or_insert_with(|| BlobUse {
                    blob,
                    refs: Vec::new(),
                })
                .refs
                .push((idx, label, size));
        }
        report.blobs = own.len();
        items += report.items;
        accounts.push(report);
    }
    meta_bar.finish_and_clear();
    let metadata_ms = started.elapsed().as_millis();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !matched.contains(*w))
        .collect();
    if !missing.is_empty() {
        bail!("no account {} in the backup", missing.join(", "));
    }

    // Every referenced blob, verified once, in parallel.
    let mut uses: Vec<BlobUse> = blobs.into_values().collect();
    uses.sort_by(|a, b| a.blob.locator.cmp(&b.blob.locator));
    // Four threads per core: on a cold page cache verification waits on the
    // disk, and more reads in flight hide it (100,000 items on 2 cores,
    // cold: 2 threads ~50 s, 8 threads ~29 s; warm, CPU-bound: ~15 s both).
    let threads = if opts.threads == 0 {
        4 * std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let blob_bar = bar(
        opts.progress,
        Some(uses.len() as u64),
        "{spinner} verifying blobs [{bar:30}] {pos}/{len} {per_sec} {elapsed}",
    );
    let next = AtomicUsize::new(0);
    let verdicts: Mutex<Vec<Option<io::Result<u64>>>> =
        Mutex::new((0..uses.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, uses.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(u) = uses.get(i) else { break };
                let v = verify_blob(reader, &u.blob);
                verdicts.lock().unwrap()[i] = Some(v);
                blob_bar.inc(1);
            });
        }
    });
    blob_bar.finish_and_clear();
    let verdicts = verdicts.into_inner().unwrap();
    let mut blob_bytes = 0u64;
    for (u, verdict) in uses.iter().zip(verdicts) {
        let path = reader.blob_path(&u.blob).map(|p| p.display().to_string());
        let mut refs = u.refs.clone();
        refs.sort();
        refs.dedup();
        match verdict.expect("every blob verified") {
            Err(e) => {
                let mut seen = HashSet::new();
                for (acct, label, _) in &refs {
                    if seen.insert((*acct, label.clone())) {
                        accounts[*acct].problems.push(Problem {
                            kind: kind_of(&e).into(),
                            item: Some(label.clone()),
                            blob: path.clone(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
            Ok(len) => {
                blob_bytes += len;
                for (acct, label, claimed) in &refs {
                    if let Some(c) = claimed.filter(|c| *c != len) {
                        accounts[*acct].problems.push(Problem {
                            kind: "size mismatch".into(),
                            item: Some(label.clone()),
                            blob: path.clone(),
                            detail: format!(
                                "metadata says {c} bytes, the blob has {len}{}",
                                path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
                            ),
                        });
                    }
                }
            }
        }
    }

    // Orphans: stored blobs nothing references (only over every account).
    let referenced: HashSet<&str> = uses.iter().map(|u| u.blob.locator.as_str()).collect();
    let all = if opts.accounts.is_empty() {
        reader.all_blobs()
    } else {
        None
    };
    let orphans_checked = all.is_some();
    let orphans: Vec<Orphan> = all
        .unwrap_or_default()
        .into_iter()
        .filter(|b| !referenced.contains(b.locator.as_str()))
        .map(|b| Orphan {
            path: reader.blob_path(&b).map(|p| p.display().to_string()),
            digest: b.digest.unwrap_or(b.locator),
        })
        .collect();

    for a in &mut accounts {
        a.problems.sort();
    }
    let backup_problems = reader.problems();
    let problems = accounts.iter().map(|a| a.problems.len()).sum::<usize>()
        + orphans.len()
        + backup_problems.len();
    Ok(Report {
        format: reader.format_name().to_string(),
        backup_problems,
        accounts,
        orphans_checked,
        orphans,
        items,
        blobs_verified: uses.len(),
        blob_bytes,
        elapsed_ms: started.elapsed().as_millis(),
        metadata_ms,
        problems,
    })
}
