//! An account's rows of every snapshot, staged in a temporary SQLite
//! database (on disk, outside the backup path, deleted on close) and diffed
//! there one item at a time, so that no account is ever held in memory.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::dat::{Field, Line, Lines};
use crate::format::backup_root::BackupRoot;
use crate::model::Millis;

/// The 8.8 column order of `mail_item`, used without `db_schema.xml`.
pub const DEFAULT_COLUMNS: &[&str] = &[
    "mailbox_id",
    "id",
    "type",
    "parent_id",
    "folder_id",
    "prev_folders",
    "index_id",
    "imap_id",
    "date",
    "size",
    "locator",
    "blob_digest",
    "unread",
    "flags",
    "tags",
    "tag_names",
    "sender",
    "recipients",
    "subject",
    "name",
    "metadata",
    "mod_metadata",
    "change_date",
    "mod_content",
    "uuid",
];

/// At most this many bad lines of one file are reported one by one.
const REPORTED_LINES: usize = 20;

/// One staged row, as the diff reads it back.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub snap: i64,
    pub kind: i64,
    pub folder: Option<i64>,
    pub flags: i64,
    pub unread: bool,
    pub tags: Vec<String>,
    pub modc: Option<i64>,
    pub digest: Option<String>,
    pub size: Option<i64>,
    pub date: Option<i64>,
    pub subject: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<Vec<u8>>,
}

impl Row {
    /// The columns whose change gives a new state (folders: name and place).
    pub fn shown(&self) -> impl PartialEq + '_ {
        let folder = self.kind == 1;
        let tags: BTreeSet<&str> = self.tags.iter().map(String::as_str).collect();
        (
            self.folder,
            self.name.as_deref(),
            (!folder).then_some((
                self.flags,
                self.unread,
                tags,
                self.modc,
                self.digest.as_deref(),
                self.size,
                self.date,
                self.subject.as_deref(),
            )),
        )
    }
}

pub struct Staging {
    db: Connection,
}

/// Where the columns the reader uses are in a row.
struct Columns {
    count: usize,
    mailbox_id: Option<usize>,
    id: usize,
    kind: usize,
    parent_id: Option<usize>,
    folder_id: Option<usize>,
    date: Option<usize>,
    size: Option<usize>,
    blob_digest: Option<usize>,
    unread: Option<usize>,
    flags: Option<usize>,
    tag_names: Option<usize>,
    subject: Option<usize>,
    name: Option<usize>,
    metadata: Option<usize>,
    mod_content: Option<usize>,
}

impl Columns {
    fn new(names: &[String]) -> Option<Columns> {
        let at = |n: &str| names.iter().position(|c| c == n);
        Some(Columns {
            count: names.len(),
            mailbox_id: at("mailbox_id"),
            id: at("id")?,
            kind: at("type")?,
            parent_id: at("parent_id"),
            folder_id: at("folder_id"),
            date: at("date"),
            size: at("size"),
            blob_digest: at("blob_digest"),
            unread: at("unread"),
            flags: at("flags"),
            tag_names: at("tag_names"),
            subject: at("subject"),
            name: at("name"),
            metadata: at("metadata"),
            mod_content: at("mod_content"),
        })
    }
}

fn int(f: Option<&Field>) -> Option<i64> {
    let b = f?.as_ref()?;
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

fn text(f: Option<&Field>) -> Option<String> {
    f?.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `\0Work\0Urgent\0` as its names.
pub fn tag_names(s: &str) -> Vec<String> {
    s.split('\0')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// What loading one snapshot gave.
pub struct Loaded {
    pub rows: u64,
    pub bad: u64,
    pub problems: Vec<String>,
}

impl Staging {
    pub fn new() -> Result<Staging> {
        // "" is a private temporary database: on disk in SQLite's temporary
        // directory (never the backup path), deleted when closed.
        let db = Connection::open("").context("opening the staging database")?;
        db.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA cache_size = -8192;
             CREATE TABLE rows(id INTEGER, snap INTEGER, kind INTEGER, folder INTEGER,
               flags INTEGER, unread INTEGER, tags TEXT, modc INTEGER, digest TEXT,
               size INTEGER, date INTEGER, subject TEXT, name TEXT, metadata BLOB,
               PRIMARY KEY(id, snap)) WITHOUT ROWID;
             CREATE TABLE bad(id INTEGER, snap INTEGER, why TEXT,
               PRIMARY KEY(id, snap)) WITHOUT ROWID;
             CREATE TABLE copies(item INTEGER, modc INTEGER, ord INTEGER, loc TEXT,
               len INTEGER);
             CREATE INDEX copies_key ON copies(item, modc, ord);",
        )
        .context("creating the staging tables")?;
        Ok(Staging { db })
    }

    /// Stage the rows of `dat` (below `root`) as snapshot `snap`: rows of
    /// another mailbox than `mailbox_id` are ignored, bad lines recorded.
    pub fn load(
        &mut self,
        root: &BackupRoot,
        dat: &Path,
        columns: &[String],
        mailbox_id: Option<i64>,
        snap: i64,
    ) -> Result<Option<Loaded>> {
        let shown = root.display_path(dat);
        let Some(cols) = Columns::new(columns) else {
            return Ok(None);
        };
        let file = root.open_file(dat)?;
        let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file));
        let mut out = Loaded {
            rows: 0,
            bad: 0,
            problems: Vec::new(),
        };
        let tx = self.db.transaction()?;
        {
            let mut ins = tx.prepare(
                "INSERT OR REPLACE INTO rows VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
            )?;
            let mut ins_bad = tx.prepare("INSERT OR REPLACE INTO bad VALUES (?1, ?2, ?3)")?;
            loop {
                let line = match lines.next_line() {
                    Ok(Some(l)) => l,
                    Ok(None) => break,
                    Err(e) => {
                        out.bad += 1;
                        out.problems.push(format!(
                            "{}: read error after line {}: {e}",
                            shown.display(),
                            lines.line_no
                        ));
                        break;
                    }
                };
                let (fields, why) = match line {
                    Line::Row(f) if f.len() == cols.count => (f, None),
                    Line::Row(f) => {
                        let why = format!("{} fields, the schema has {}", f.len(), cols.count);
                        (f, Some(why))
                    }
                    Line::Bad(why, f) => (f, Some(why)),
                };
                let id = int(fields.get(cols.id));
                let kind = int(fields.get(cols.kind));
                let why = why.or_else(|| match (id, kind) {
                    (None, _) => Some("the id is not an integer".to_string()),
                    (_, None) => Some("the type is not an integer".to_string()),
                    _ => None,
                });
                if let Some(why) = why {
                    out.bad += 1;
                    if out.problems.len() < REPORTED_LINES {
                        out.problems.push(format!(
                            "{} line {}: bad row dropped ({why})",
                            shown.display(),
                            lines.line_no
                        ));
                    }
                    if let Some(id) = id {
                        ins_bad.execute(params![
                            id,
                            snap,
                            format!("{} line {}: {why}", shown.display(), lines.line_no)
                        ])?;
                    }
                    continue;
                }
                let (id, kind) = (id.unwrap_or_default(), kind.unwrap_or_default());
                let row_mailbox = cols.mailbox_id.and_then(|i| int(fields.get(i)));
                if let (Some(want), Some(got)) = (mailbox_id, row_mailbox) {
                    if want != got {
                        continue;
                    }
                }
                let get = |i: Option<usize>| i.and_then(|i| fields.get(i));
                let folder = int(get(cols.folder_id)).or_else(|| int(get(cols.parent_id)));
                let tags = text(get(cols.tag_names)).unwrap_or_default();
                // Only contacts need their metadata (their fields).
                let metadata = (kind == 6)
                    .then(|| get(cols.metadata).and_then(|f| f.clone()))
                    .flatten();
                ins.execute(params![
                    id,
                    snap,
                    kind,
                    folder,
                    int(get(cols.flags)).unwrap_or(0),
                    int(get(cols.unread)).unwrap_or(0) != 0,
                    tags,
                    int(get(cols.mod_content)),
                    text(get(cols.blob_digest)),
                    int(get(cols.size)),
                    int(get(cols.date)),
                    text(get(cols.subject)),
                    text(get(cols.name)),
                    metadata,
                ])?;
                out.rows += 1;
            }
        }
        tx.commit()?;
        if out.bad > REPORTED_LINES as u64 {
            out.problems.push(format!(
                "{}: {} bad rows dropped in all",
                shown.display(),
                out.bad
            ));
        }
        Ok(Some(out))
    }

    /// Record a stored copy of `(item, modc)` found in session `ord`.
    pub fn add_copy(&self, item: i64, modc: i64, ord: i64, loc: &str, len: u64) -> Result<()> {
        self.db
            .prepare_cached("INSERT INTO copies VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![item, modc, ord, loc, len as i64])?;
        Ok(())
    }

    /// The copies of `(item, modc)`, newest session first, with lengths.
    pub fn copies(&self, item: i64, modc: i64) -> Result<Vec<(String, u64)>> {
        let mut st = self.db.prepare_cached(
            "SELECT loc, len FROM copies WHERE item = ?1 AND modc = ?2 ORDER BY ord DESC, loc",
        )?;
        let rows = st.query_map(params![item, modc], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every staged item in id order: its rows (in snapshot order) and, when
    /// it has none, the first bad line recorded for it.
    pub fn for_each_item(
        &self,
        f: &mut dyn FnMut(i64, Vec<Row>, Option<String>) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.db.prepare(
            "SELECT id, snap, kind, folder, flags, unread, tags, modc, digest, size, date,
                    subject, name, metadata FROM rows ORDER BY id, snap",
        )?;
        let mut bad_ids = self
            .db
            .prepare("SELECT id, min(why) FROM bad WHERE id NOT IN (SELECT id FROM rows) GROUP BY id ORDER BY id")?;
        let mut bad = bad_ids.query([])?;
        let mut next_bad: Option<(i64, String)> = bad
            .next()?
            .map(|r| Ok::<_, rusqlite::Error>((r.get(0)?, r.get(1)?)))
            .transpose()?;
        let mut rows = st.query([])?;
        let mut group: Vec<Row> = Vec::new();
        let mut flush = |group: &mut Vec<Row>,
                         next_bad: &mut Option<(i64, String)>,
                         upto: Option<i64>,
                         bad: &mut rusqlite::Rows|
         -> Result<()> {
            // Bad-only items that come before `upto` in id order.
            while let Some((id, why)) = next_bad.clone() {
                if upto.is_some_and(|u| id >= u) {
                    break;
                }
                f(id, Vec::new(), Some(why))?;
                *next_bad = bad
                    .next()?
                    .map(|r| Ok::<_, rusqlite::Error>((r.get(0)?, r.get(1)?)))
                    .transpose()?;
            }
            if !group.is_empty() {
                let id = group[0].id;
                f(id, std::mem::take(group), None)?;
            }
            Ok(())
        };
        while let Some(r) = rows.next()? {
            let row = Row {
                id: r.get(0)?,
                snap: r.get(1)?,
                kind: r.get(2)?,
                folder: r.get(3)?,
                flags: r.get(4)?,
                unread: r.get(5)?,
                tags: tag_names(&r.get::<_, String>(6)?),
                modc: r.get(7)?,
                digest: r.get(8)?,
                size: r.get(9)?,
                date: r.get(10)?,
                subject: r.get(11)?,
                name: r.get(12)?,
                metadata: r.get(13)?,
            };
            if group.last().is_some_and(|g| g.id != row.id) {
                let id = row.id;
                let first = group[0].id;
                flush(&mut group, &mut next_bad, Some(first.min(id)), &mut bad)?;
            }
            group.push(row);
        }
        let first = group.first().map(|g| g.id);
        flush(&mut group, &mut next_bad, first, &mut bad)?;
        flush(&mut group, &mut next_bad, None, &mut bad)?;
        Ok(())
    }
}

/// `date` as milliseconds: seconds, unless it is already milliseconds.
pub fn date_ms(v: i64) -> Millis {
    if v.abs() >= 100_000_000_000 {
        v
    } else {
        v.saturating_mul(1000)
    }
}

/// The shared copies of a target by digest, in a temporary SQLite database
/// (outside the backup path) so that a target with millions of shared
/// blobs costs no memory.
#[derive(Debug)]
pub struct SharedIndex {
    db: std::sync::Mutex<Connection>,
}

impl SharedIndex {
    pub fn new() -> Result<SharedIndex> {
        let db = Connection::open("").context("opening the shared-blob index")?;
        db.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA cache_size = -2048;
             CREATE TABLE shared(digest TEXT, ord INTEGER, loc TEXT, len INTEGER);
             CREATE INDEX shared_digest ON shared(digest, ord);",
        )
        .context("creating the shared-blob table")?;
        Ok(SharedIndex {
            db: std::sync::Mutex::new(db),
        })
    }

    /// Add copies, in one transaction: (digest, session order, locator, length).
    pub fn add_all(&self, copies: &[(String, i64, String, u64)]) -> Result<()> {
        let mut db = self.db.lock().unwrap();
        let tx = db.transaction()?;
        {
            let mut ins = tx.prepare("INSERT INTO shared VALUES (?1, ?2, ?3, ?4)")?;
            for (d, ord, loc, len) in copies {
                ins.execute(params![d, ord, loc, *len as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The copies of `digest`, newest session first.
    pub fn get(&self, digest: &str) -> Result<Vec<(String, u64)>> {
        let db = self.db.lock().unwrap();
        let mut st = db.prepare_cached(
            "SELECT loc, len FROM shared WHERE digest = ?1 ORDER BY ord DESC, loc",
        )?;
        let rows = st.query_map([digest], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
