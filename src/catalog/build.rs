//! Building and refreshing the catalogue from a reader.
//!
//! Accounts are read in parallel by worker threads (parsing is the cost);
//! one writer thread inserts into SQLite in a single transaction, since
//! SQLite has one writer anyway.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::{params, Connection, Transaction};

use super::Catalog;
use crate::format::{AccountEntry, BackupReader};
use crate::model::{Account, Item, ItemKind, ItemState};
use crate::timeline::{day_of, effective_ends};

/// What a refresh did.
#[derive(Debug, Default, Clone)]
pub struct RefreshStats {
    pub accounts_read: usize,
    pub accounts_unchanged: usize,
    pub accounts_removed: usize,
    /// Items (metadata files) read.
    pub items: u64,
    pub states: u64,
    pub elapsed: Duration,
}

enum Event {
    Item(usize, Item),
    Done(usize, Result<Account>),
}

/// Bring the catalogue up to date with the backup: read again only the
/// accounts whose signature changed, drop the ones that are gone.
pub fn refresh(
    catalog: &Catalog,
    reader: &dyn BackupReader,
    show_progress: bool,
) -> Result<RefreshStats> {
    let started = Instant::now();
    let entries = reader.list_accounts().context("listing accounts")?;
    let known: HashMap<String, String> = catalog.with(|c| {
        let mut st = c.prepare("SELECT key, signature FROM accounts")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    let current: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let gone: Vec<String> = known
        .keys()
        .filter(|k| !current.contains(k.as_str()))
        .cloned()
        .collect();
    let todo: Vec<AccountEntry> = entries
        .iter()
        .filter(|e| known.get(&e.key) != Some(&e.signature))
        .cloned()
        .collect();
    let mut stats = RefreshStats {
        accounts_unchanged: entries.len() - todo.len(),
        accounts_removed: gone.len(),
        ..Default::default()
    };

    let bar = progress_bar(show_progress, todo.len());
    catalog.with(|conn| {
        let tx = conn.unchecked_transaction()?;
        for key in &gone {
            delete_account(&tx, key)?;
        }
        write_accounts(&tx, reader, &todo, &bar, &mut stats)?;
        assign_dir_names(&tx)?;
        tx.commit().context("committing catalogue")?;
        Ok(())
    })?;
    bar.finish_and_clear();
    stats.elapsed = started.elapsed();
    log::info!(
        "catalogue refreshed: {} accounts read, {} unchanged, {} removed, {} items in {:.2?}",
        stats.accounts_read,
        stats.accounts_unchanged,
        stats.accounts_removed,
        stats.items,
        stats.elapsed
    );
    Ok(stats)
}

fn progress_bar(show: bool, accounts: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(accounts as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} indexing [{bar:30}] {pos}/{len} accounts, {msg} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Read `todo` with worker threads and write what they produce.
fn write_accounts(
    tx: &Transaction,
    reader: &dyn BackupReader,
    todo: &[AccountEntry],
    bar: &ProgressBar,
    stats: &mut RefreshStats,
) -> Result<()> {
    let (sender, events) = sync_channel::<Event>(4096);
    let next = Mutex::new(0usize);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(todo.len().max(1));
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let idx = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(entry) = todo.get(idx) else { break };
                let mut sink = |item: Item| {
                    let _ = sender.send(Event::Item(idx, item));
                };
                let res = reader.read_account(&entry.key, &mut sink);
                if sender.send(Event::Done(idx, res)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        receive(tx, todo, events, bar, stats)
    })
}

/// The writer side: one catalogue account row per account being read.
fn receive(
    tx: &Transaction,
    todo: &[AccountEntry],
    events: Receiver<Event>,
    bar: &ProgressBar,
    stats: &mut RefreshStats,
) -> Result<()> {
    let mut open: HashMap<usize, AccountBuild> = HashMap::new();
    for event in events {
        match event {
            Event::Item(idx, item) => {
                let build = match open.entry(idx) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(AccountBuild::start(tx, &todo[idx])?)
                    }
                };
                build.add(tx, &item)?;
                stats.items += 1;
                stats.states += item.states.len() as u64;
                if stats.items.is_multiple_of(4096) {
                    bar.set_message(format!("{} items", stats.items));
                }
            }
            Event::Done(idx, result) => {
                let entry = &todo[idx];
                let build = match open.remove(&idx) {
                    Some(b) => b,
                    None => AccountBuild::start(tx, entry)?,
                };
                match result {
                    Ok(account) => build.finish(tx, &account, &entry.signature)?,
                    Err(e) => {
                        // The account stays listed, with the reason, and is
                        // read again next time (empty signature).
                        log::error!("reading account {}: {e:#}", entry.key);
                        let account = Account {
                            key: entry.key.clone(),
                            name: entry.key.clone(),
                            status: "unreadable".into(),
                            problems: vec![format!("{e:#}")],
                            ..Default::default()
                        };
                        build.finish(tx, &account, "")?;
                    }
                }
                stats.accounts_read += 1;
                bar.inc(1);
            }
        }
    }
    Ok(())
}

fn delete_account(tx: &Connection, key: &str) -> Result<()> {
    let id: Option<i64> = tx
        .query_row("SELECT id FROM accounts WHERE key=?1", [key], |r| r.get(0))
        .ok();
    if let Some(id) = id {
        for table in ["states", "items", "days"] {
            tx.execute(&format!("DELETE FROM {table} WHERE account_id=?1"), [id])?;
        }
        tx.execute("DELETE FROM accounts WHERE id=?1", [id])?;
    }
    Ok(())
}

/// Rows of one account while it is being read.
struct AccountBuild {
    id: i64,
    days: BTreeSet<i64>,
    file_items: u64,
    first: Option<i64>,
    last: Option<i64>,
}

impl AccountBuild {
    fn start(tx: &Connection, entry: &AccountEntry) -> Result<AccountBuild> {
        delete_account(tx, &entry.key)?;
        tx.execute(
            "INSERT INTO accounts(key, name, status, aliases, problems, signature, item_count)
             VALUES(?1, ?1, '', '[]', '[]', '', 0)",
            [&entry.key],
        )?;
        Ok(AccountBuild {
            id: tx.last_insert_rowid(),
            days: BTreeSet::new(),
            file_items: 0,
            first: None,
            last: None,
        })
    }

    fn add(&mut self, tx: &Connection, item: &Item) -> Result<()> {
        let mut item_stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO items(account_id, item_id, label, history_key, error)
             VALUES(?1, ?2, ?3, ?4, ?5)",
        )?;
        item_stmt.execute(params![
            self.id,
            item.id,
            item.label,
            item.history_key,
            item.error
        ])?;
        let mut state_stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO states(account_id, item_id, seq, start, eff_end, last, deleted,
               kind, folder_id, name, subject, blob, digest, size, date, flags, tags, fields)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        // Completed one at a time from the previous one: an item of 200,000
        // states is not held twice.
        let states = &item.states;
        let ends = effective_ends(states);
        let mut counted = false;
        let mut prev: Option<ItemState> = None;
        for (seq, (raw, end)) in states.iter().zip(&ends).enumerate() {
            let s = completed(raw, prev.as_ref());
            let kind = s.kind.unwrap_or(ItemKind::Hidden);
            if kind.is_file() || kind == ItemKind::Folder {
                self.days.insert(day_of(s.start));
            }
            if kind.is_file() && !counted {
                self.file_items += 1;
                counted = true;
            }
            self.first = Some(self.first.map_or(s.start, |f| f.min(s.start)));
            self.last = Some(self.last.map_or(s.start, |l| l.max(s.start)));
            state_stmt.execute(params![
                self.id,
                item.id,
                seq as i64,
                s.start,
                end,
                (seq + 1 == states.len()) as i64,
                s.deleted as i64,
                kind.as_str(),
                s.folder_id,
                s.name,
                s.subject,
                s.blob.as_ref().map(|b| b.locator.as_str()),
                s.blob.as_ref().and_then(|b| b.digest.as_deref()),
                s.size.map(|v| v as i64),
                s.date,
                s.flags.join(" "),
                s.tags.join(","),
                s.fields.as_ref().map(fields_json),
            ])?;
            prev = Some(s);
        }
        Ok(())
    }

    fn finish(self, tx: &Connection, account: &Account, signature: &str) -> Result<()> {
        tx.execute(
            "UPDATE accounts SET name=?2, status=?3, deleted_at=?4, aliases=?5, problems=?6,
               signature=?7, item_count=?8, first_ts=?9, last_ts=?10 WHERE id=?1",
            params![
                self.id,
                if account.name.is_empty() {
                    &account.key
                } else {
                    &account.name
                },
                account.status,
                account.deleted_at,
                serde_json::to_string(&account.aliases)?,
                serde_json::to_string(&account.problems)?,
                signature,
                self.file_items as i64,
                self.first,
                self.last,
            ],
        )?;
        let mut day_stmt = tx.prepare_cached("INSERT INTO days(account_id, day) VALUES(?1, ?2)")?;
        for day in &self.days {
            day_stmt.execute(params![self.id, day])?;
        }
        Ok(())
    }
}

/// A state as the catalogue keeps it: without a kind it takes the previous
/// one's, and a deletion keeps what the item was (folder, name, subject,
/// blob) so that `history/` can name it. Its flags and tags stay its own:
/// `deleted/` shows the state before the deletion, not the deletion.
fn completed(s: &ItemState, prev: Option<&ItemState>) -> ItemState {
    let mut s = s.clone();
    let Some(prev) = prev else {
        return s;
    };
    if s.kind.is_none() {
        s.kind = prev.kind;
    }
    if s.deleted {
        s.folder_id = s.folder_id.or(prev.folder_id);
        s.name = s.name.or_else(|| prev.name.clone());
        s.subject = s.subject.or_else(|| prev.subject.clone());
        s.blob = s.blob.or_else(|| prev.blob.clone());
        s.size = s.size.or(prev.size);
        s.date = s.date.or(prev.date);
        s.fields = s.fields.or_else(|| prev.fields.clone());
    }
    s
}

/// Contact fields as the catalogue stores them.
fn fields_json(f: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(f).unwrap_or_default()
}

/// Names at the mount's root that no account directory may take.
pub const RESERVED_ROOT_NAMES: [&str; 1] = [".control"];

/// Directory names of accounts: the address, and `ADDRESS~KEY` for the
/// second and later accounts with one address (in key order), and for an
/// account whose address is a reserved root name (`.control`).
fn assign_dir_names(tx: &Connection) -> Result<()> {
    let rows: Vec<(i64, String, String)> = {
        let mut st = tx.prepare("SELECT id, name, key FROM accounts ORDER BY key")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut seen: std::collections::HashSet<String> =
        RESERVED_ROOT_NAMES.iter().map(|n| n.to_string()).collect();
    let mut upd = tx.prepare("UPDATE accounts SET dir_name=?2 WHERE id=?1")?;
    for (id, name, key) in rows {
        let base = crate::fs::names::sanitize_component(&name, &key);
        let dir = if seen.insert(base.clone()) {
            base
        } else {
            crate::fs::names::sanitize_component(&format!("{name}~{key}"), &key)
        };
        upd.execute(params![id, dir])?;
    }
    Ok(())
}
