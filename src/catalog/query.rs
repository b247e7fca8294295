//! Read queries on the catalogue: what the filesystem, restores and the CLI
//! ask of it.

use std::collections::HashMap;

use anyhow::Result;
use rusqlite::{params, Row};

use super::Catalog;
use crate::model::{BlobRef, ItemId, ItemKind, Millis};

/// One account as catalogued.
#[derive(Clone, Debug)]
pub struct AccountRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub dir_name: String,
    pub status: String,
    pub deleted_at: Option<Millis>,
    pub problems: Vec<String>,
    pub item_count: i64,
    pub first_ts: Option<Millis>,
    pub last_ts: Option<Millis>,
}

/// One item state as catalogued, with its item's label.
#[derive(Clone, Debug)]
pub struct StateRow {
    pub item_id: ItemId,
    pub seq: i64,
    pub label: String,
    pub history_key: String,
    pub start: Millis,
    pub eff_end: Option<Millis>,
    pub last: bool,
    pub deleted: bool,
    pub kind: ItemKind,
    pub folder_id: Option<ItemId>,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub blob: Option<BlobRef>,
    pub size: Option<u64>,
    pub date: Option<Millis>,
    pub flags: String,
    pub tags: String,
    pub fields: Option<String>,
}

/// A deleted item: the state `deleted/` shows and the deletion state.
#[derive(Clone, Debug)]
pub struct DeletedItem {
    /// The last state before the deletion: bytes, size, mtime, flags, tags
    /// and `.state_start` come from it.
    pub shown: StateRow,
    /// The deletion: its start is `.deleted_at`, its folder the place shown.
    pub deletion: StateRow,
}

/// An item whose metadata could not be read.
#[derive(Clone, Debug)]
pub struct BrokenItem {
    pub item_id: ItemId,
    pub label: String,
    pub history_key: String,
    pub error: String,
}

const STATE_COLUMNS: &str = "s.item_id, s.seq, i.label, i.history_key, s.start, s.eff_end,
    s.last, s.deleted, s.kind, s.folder_id, s.name, s.subject, s.blob, s.digest, s.size,
    s.date, s.flags, s.tags, s.fields";

const FILE_KINDS: &str = "('message','contact','appointment','task','document')";

fn state_row(r: &Row) -> rusqlite::Result<StateRow> {
    let blob: Option<String> = r.get(12)?;
    Ok(StateRow {
        item_id: r.get(0)?,
        seq: r.get(1)?,
        label: r.get(2)?,
        history_key: r.get(3)?,
        start: r.get(4)?,
        eff_end: r.get(5)?,
        last: r.get::<_, i64>(6)? != 0,
        deleted: r.get::<_, i64>(7)? != 0,
        kind: ItemKind::parse(&r.get::<_, String>(8)?),
        folder_id: r.get(9)?,
        name: r.get(10)?,
        subject: r.get(11)?,
        blob: blob.map(|locator| BlobRef {
            locator,
            digest: r.get(13).ok().flatten(),
        }),
        size: r.get::<_, Option<i64>>(14)?.map(|v| v.max(0) as u64),
        date: r.get(15)?,
        flags: r.get(16)?,
        tags: r.get(17)?,
        fields: r.get(18)?,
    })
}

impl Catalog {
    pub fn accounts(&self) -> Result<Vec<AccountRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, key, name, dir_name, status, deleted_at, problems, item_count,
                        first_ts, last_ts FROM accounts ORDER BY dir_name",
            )?;
            let rows = st.query_map([], |r| {
                let problems: String = r.get(6)?;
                Ok(AccountRow {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    name: r.get(2)?,
                    dir_name: r.get(3)?,
                    status: r.get(4)?,
                    deleted_at: r.get(5)?,
                    problems: serde_json::from_str(&problems).unwrap_or_default(),
                    item_count: r.get(7)?,
                    first_ts: r.get(8)?,
                    last_ts: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// UTC day numbers on which the account changed.
    pub fn days(&self, account: i64) -> Result<Vec<i64>> {
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT day FROM days WHERE account_id=?1 ORDER BY day")?;
            let rows = st.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn states_where(&self, clause: &str, args: impl rusqlite::Params) -> Result<Vec<StateRow>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {STATE_COLUMNS} FROM states s JOIN items i
                   ON i.account_id = s.account_id AND i.item_id = s.item_id WHERE {clause}"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(args, state_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Every state of every folder of the account (folders are few).
    pub fn folder_states(&self, account: i64) -> Result<Vec<StateRow>> {
        self.states_where(
            "s.account_id=?1 AND s.kind='folder' ORDER BY s.item_id, s.seq",
            [account],
        )
    }

    /// File items valid in `folder` at `t`.
    pub fn files_in_folder(
        &self,
        account: i64,
        folder: ItemId,
        t: Millis,
    ) -> Result<Vec<StateRow>> {
        self.states_where(
            &format!(
                "s.account_id=?1 AND s.folder_id=?2 AND s.start<=?3 AND s.deleted=0
                 AND (s.eff_end IS NULL OR s.eff_end>?3) AND s.kind IN {FILE_KINDS}
                 ORDER BY s.item_id"
            ),
            params![account, folder, t],
        )
    }

    /// Whether some file item is valid in `folder` at `t`.
    pub fn folder_has_files(&self, account: i64, folder: ItemId, t: Millis) -> Result<bool> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT 1 FROM states s WHERE s.account_id=?1 AND s.folder_id=?2 AND s.start<=?3
                 AND s.deleted=0 AND (s.eff_end IS NULL OR s.eff_end>?3)
                 AND s.kind IN {FILE_KINDS} LIMIT 1"
            ))?;
            Ok(st.exists(params![account, folder, t])?)
        })
    }

    /// Folder ids that file items of the account ever referenced.
    pub fn referenced_folders(&self, account: i64) -> Result<Vec<ItemId>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT DISTINCT folder_id FROM states WHERE account_id=?1
                 AND folder_id IS NOT NULL AND kind IN {FILE_KINDS}"
            ))?;
            let rows = st.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// One state of one item.
    pub fn state(&self, account: i64, item: ItemId, seq: i64) -> Result<Option<StateRow>> {
        Ok(self
            .states_where(
                "s.account_id=?1 AND s.item_id=?2 AND s.seq=?3",
                params![account, item, seq],
            )?
            .pop())
    }

    /// Every state of one item, in order.
    pub fn item_states(&self, account: i64, item: ItemId) -> Result<Vec<StateRow>> {
        self.states_where(
            "s.account_id=?1 AND s.item_id=?2 ORDER BY s.seq",
            params![account, item],
        )
    }

    /// Last states of file items whose last state is a deletion.
    pub fn deleted_items(&self, account: i64) -> Result<Vec<StateRow>> {
        self.states_where(
            &format!(
                "s.account_id=?1 AND s.last=1 AND s.deleted=1 AND s.kind IN {FILE_KINDS}
                 ORDER BY s.item_id"
            ),
            [account],
        )
    }

    /// Deleted file items as `deleted/` shows them: each item's last state
    /// before its deletion (the deletion state itself when there is none),
    /// with the deletion state.
    pub fn deleted_items_shown(&self, account: i64) -> Result<Vec<DeletedItem>> {
        let before: HashMap<ItemId, StateRow> = self
            .states_where(
                &format!(
                    "s.account_id=?1 AND s.deleted=0 AND s.kind IN {FILE_KINDS} AND s.seq = (
                       SELECT MAX(p.seq) FROM states p WHERE p.account_id=s.account_id
                         AND p.item_id=s.item_id AND p.deleted=0 AND p.seq < (
                           SELECT d.seq FROM states d WHERE d.account_id=s.account_id
                             AND d.item_id=s.item_id AND d.last=1 AND d.deleted=1))"
                ),
                [account],
            )?
            .into_iter()
            .map(|r| (r.item_id, r))
            .collect();
        let mut out = Vec::new();
        for deletion in self.deleted_items(account)? {
            let shown = before
                .get(&deletion.item_id)
                .cloned()
                .unwrap_or_else(|| deletion.clone());
            out.push(DeletedItem { shown, deletion });
        }
        Ok(out)
    }

    /// Every state of every file item grouped under one `history/` key.
    pub fn history_states(&self, account: i64, key: &str) -> Result<Vec<StateRow>> {
        self.states_where(
            &format!(
                "s.account_id=?1 AND i.history_key=?2 AND s.kind IN {FILE_KINDS}
                 ORDER BY s.start, s.item_id, s.seq"
            ),
            params![account, key],
        )
    }

    /// The `history/` keys of the account: file items and broken items.
    pub fn history_keys(&self, account: i64) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT DISTINCT i.history_key FROM items i WHERE i.account_id=?1 AND
                   (i.error IS NOT NULL OR EXISTS (SELECT 1 FROM states s WHERE
                     s.account_id=i.account_id AND s.item_id=i.item_id AND s.seq=0
                     AND s.kind IN {FILE_KINDS}))
                 ORDER BY i.history_key"
            ))?;
            let rows = st.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Items whose metadata could not be read, under one history key.
    pub fn broken_items(&self, account: i64, key: Option<&str>) -> Result<Vec<BrokenItem>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT item_id, label, history_key, error FROM items WHERE account_id=?1
                 AND error IS NOT NULL AND (?2 IS NULL OR history_key=?2) ORDER BY item_id",
            )?;
            let rows = st.query_map(params![account, key], |r| {
                Ok(BrokenItem {
                    item_id: r.get(0)?,
                    label: r.get(1)?,
                    history_key: r.get(2)?,
                    error: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
