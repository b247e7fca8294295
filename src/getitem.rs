//! `mailbackfs get-item`: every recorded state of one item, like the
//! vendor's `getItem ... date all`, from the catalogue; and the raw message of
//! a chosen state (`--dump-blob`), like `gunzip -c` of its blob path.

use std::io::{self, Write};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::catalog::{AccountRow, Catalog, StateRow};
use crate::check::printable;
use crate::check::verify_blob;
use crate::format::BackupReader;
use crate::fs::salvage::{describe, malformed};
use crate::fs::tree::FolderTimeline;
use crate::model::Millis;
use crate::timeline::{format_instant, parse_day, parse_instant, valid_at, PointInTime};

/// Which states `--date` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateChoice {
    All,
    Last,
    At(Millis),
}

impl DateChoice {
    /// `all`, `last`, a day `YYYY-MM-DD` (its end, as day directories) or an
    /// instant (`2013-07-12T15:03:00Z`, as `@INSTANT`).
    pub fn parse(s: &str) -> Result<DateChoice> {
        match s {
            "all" => return Ok(DateChoice::All),
            "last" => return Ok(DateChoice::Last),
            _ => {}
        }
        if let Some(day) = parse_day(s) {
            return Ok(DateChoice::At(PointInTime::end_of_day(day).millis()));
        }
        if let Some(t) = parse_instant(s) {
            return Ok(DateChoice::At(t));
        }
        if let Some(t) = crate::format::zextras::parse_timestamp_str(s) {
            return Ok(DateChoice::At(t));
        }
        bail!(
            "--date {s:?}: expected all, last, YYYY-MM-DD or an instant like 2013-07-12T15:03:00Z"
        )
    }
}

/// One state as `get-item` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StateView {
    /// Position in the item's history, from 1.
    pub n: usize,
    pub start: String,
    pub end: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub folder_id: Option<i64>,
    /// `/Inbox/Projects`: the folder's path then (just before the deletion
    /// for a deleted state), as the mounted views show it.
    pub folder_path: Option<String>,
    pub flags: String,
    pub tags: String,
    pub deleted: bool,
    pub subject: Option<String>,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub digest: Option<String>,
    pub blob_path: Option<String>,
    /// Whether the blob reads to the end, decompresses and hashes right;
    /// `None` when the state has no blob.
    pub readable: Option<bool>,
    /// The blob's length when readable, why not otherwise.
    pub blob_len: Option<u64>,
    pub error: Option<String>,
}

/// What `get-item` found.
#[derive(Clone, Debug, Serialize)]
pub struct ItemView {
    pub account: String,
    pub account_key: String,
    pub item: String,
    /// Every recorded state, or the one `--date` selected.
    pub states: Vec<StateView>,
    /// Set when the item's metadata cannot be parsed.
    pub metadata_error: Option<String>,
    #[serde(skip)]
    pub rows: Vec<StateRow>,
}

/// The account an address, alias directory name or key names.
pub fn find_account(catalog: &Catalog, account: &str) -> Result<AccountRow> {
    let accounts = catalog.accounts()?;
    accounts
        .iter()
        .find(|a| a.key == account)
        .or_else(|| accounts.iter().find(|a| a.name == account))
        .or_else(|| accounts.iter().find(|a| a.dir_name == account))
        .or_else(|| {
            accounts
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(account))
        })
        .cloned()
        .with_context(|| {
            format!("no account {account:?} in the backup (try `mailbackfs accounts`)")
        })
}

/// Look an item up and describe its states.
pub fn get_item(
    catalog: &Catalog,
    reader: &dyn BackupReader,
    account: &str,
    item: &str,
    date: DateChoice,
) -> Result<ItemView> {
    let acct = find_account(catalog, account)?;
    let mut rows = match item.parse::<i64>() {
        Ok(id) => catalog.item_states(acct.id, id)?,
        Err(_) => Vec::new(),
    };
    if rows.is_empty() {
        rows = catalog.history_states(acct.id, item)?;
    }
    let metadata_error = catalog
        .broken_items(acct.id, None)?
        .into_iter()
        .find(|b| b.label == item || b.history_key == item)
        .map(|b| malformed(&b.error));
    if rows.is_empty() && metadata_error.is_none() {
        bail!("no item {item} in account {}", acct.name);
    }
    let folders = FolderTimeline::new(catalog.folder_states(acct.id)?);
    let all = rows.len();
    let selected: Vec<(usize, StateRow)> = match date {
        DateChoice::All => rows.into_iter().enumerate().collect(),
        DateChoice::Last => rows
            .into_iter()
            .enumerate()
            .skip(all.saturating_sub(1))
            .collect(),
        DateChoice::At(t) => {
            let found: Vec<(usize, StateRow)> = rows
                .into_iter()
                .enumerate()
                .filter(|(_, r)| valid_at(r.start, r.eff_end, r.deleted, t))
                .collect();
            // Two states starting at one instant: the later wins.
            let last = found.into_iter().last();
            if last.is_none() && metadata_error.is_none() {
                bail!("item {item} does not exist at {}", format_instant(t));
            }
            last.into_iter().collect()
        }
    };
    let mut states = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in selected {
        let at = if r.deleted { r.start - 1 } else { r.start };
        let folder_path = r
            .folder_id
            .map(|f| format!("/{}", folders.path_at(f, at).join("/")));
        let (readable, blob_len, error) = match &r.blob {
            None => (None, None, None),
            Some(b) => match verify_blob(reader, b) {
                Ok(n) => (Some(true), Some(n), None),
                Err(e) => (Some(false), None, Some(describe(&e))),
            },
        };
        states.push(StateView {
            n: i + 1,
            start: format_instant(r.start),
            end: r.eff_end.map(format_instant),
            kind: r.kind.as_str().to_string(),
            folder_id: r.folder_id,
            folder_path,
            flags: r.flags.clone(),
            tags: r.tags.clone(),
            deleted: r.deleted,
            subject: r.subject.clone(),
            name: r.name.clone(),
            size: r.size,
            digest: r.blob.as_ref().and_then(|b| b.digest.clone()),
            blob_path: r
                .blob
                .as_ref()
                .and_then(|b| reader.blob_path(b))
                .map(|p| p.display().to_string()),
            readable,
            blob_len,
            error,
        });
        kept.push(r);
    }
    Ok(ItemView {
        account: acct.name.clone(),
        account_key: acct.key.clone(),
        item: item.to_string(),
        states,
        metadata_error,
        rows: kept,
    })
}

impl ItemView {
    /// The vendor-like text listing.
    pub fn to_text(&self, total: Option<usize>) -> String {
        // Every value from the backup goes through `printable`: a hostile
        // subject or name can neither forge lines nor drive the terminal.
        let p = |v: &str| printable(v);
        let mut out = format!(
            "account: {} ({})\nitem: {}\n",
            p(&self.account),
            p(&self.account_key),
            p(&self.item)
        );
        if let Some(e) = &self.metadata_error {
            out.push_str(&format!("metadata: {}\n", p(e)));
        }
        let total = total.unwrap_or(self.states.len());
        for s in &self.states {
            let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), p);
            out.push_str(&format!("\nstate {} of {}\n", s.n, total));
            out.push_str(&format!("  start date: {}\n", s.start));
            out.push_str(&format!("  end date:   {}\n", opt(&s.end)));
            out.push_str(&format!("  type:       {}\n", s.kind));
            out.push_str(&format!(
                "  folder:     {} {}\n",
                s.folder_id.map_or("-".into(), |f| f.to_string()),
                opt(&s.folder_path)
            ));
            out.push_str(&format!("  flags:      {}\n", p(&s.flags)));
            out.push_str(&format!("  tags:       {}\n", p(&s.tags)));
            out.push_str(&format!("  deleted:    {}\n", s.deleted));
            if let Some(t) = s.subject.as_ref().or(s.name.as_ref()) {
                out.push_str(&format!("  subject:    {}\n", p(t)));
            }
            if s.digest.is_some() || s.blob_path.is_some() {
                out.push_str(&format!("  digest:     {}\n", opt(&s.digest)));
                out.push_str(&format!("  blob path:  {}\n", opt(&s.blob_path)));
                let verdict = match (s.readable, s.blob_len, &s.error) {
                    (Some(true), Some(n), _) => format!("yes ({n} bytes)"),
                    (_, _, Some(e)) => format!("no: {}", p(e)),
                    _ => "-".into(),
                };
                out.push_str(&format!("  readable:   {verdict}\n"));
            }
        }
        out
    }

    /// Write the decompressed blob of the newest selected state that has
    /// one to `out`.
    pub fn dump_blob(&self, reader: &dyn BackupReader, out: &mut dyn Write) -> Result<u64> {
        let Some(row) = self.rows.iter().rev().find(|r| r.blob.is_some()) else {
            bail!("item {}: the selected state has no blob", self.item);
        };
        let blob = row.blob.as_ref().expect("has a blob");
        let mut stream = reader
            .open_blob(blob)
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        let n = io::copy(&mut stream, out).map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        out.flush()?;
        Ok(n)
    }
}
