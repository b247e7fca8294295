//! The SQLite catalogue of accounts, items and item states.
//!
//! Scanning millions of metadata files on every mount is too slow, so the
//! model read from a backup is stored once, outside the backup path, and
//! refreshed incrementally: only accounts whose signature moved are read
//! again. Blob bytes are never copied here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

mod build;
pub mod private;
mod query;

pub use build::{refresh, RefreshStats};
pub use query::{AccountRow, DeletedItem, StateRow};

/// Bumped whenever the schema or what is stored changes; an older
/// catalogue is rebuilt from scratch.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts(
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  dir_name TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  deleted_at INTEGER,
  aliases TEXT NOT NULL,
  problems TEXT NOT NULL,
  signature TEXT NOT NULL,
  item_count INTEGER NOT NULL,
  first_ts INTEGER,
  last_ts INTEGER
);
CREATE TABLE IF NOT EXISTS items(
  account_id INTEGER NOT NULL,
  item_id INTEGER NOT NULL,
  label TEXT NOT NULL,
  history_key TEXT NOT NULL,
  error TEXT,
  PRIMARY KEY(account_id, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_history ON items(account_id, history_key);
CREATE TABLE IF NOT EXISTS states(
  account_id INTEGER NOT NULL,
  item_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  start INTEGER NOT NULL,
  eff_end INTEGER,
  last INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  kind TEXT NOT NULL,
  folder_id INTEGER,
  name TEXT,
  subject TEXT,
  blob TEXT,
  digest TEXT,
  size INTEGER,
  date INTEGER,
  flags TEXT NOT NULL,
  tags TEXT NOT NULL,
  fields TEXT,
  PRIMARY KEY(account_id, item_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS states_folder ON states(account_id, folder_id, start);
CREATE INDEX IF NOT EXISTS states_kind ON states(account_id, kind, start);
CREATE TABLE IF NOT EXISTS days(
  account_id INTEGER NOT NULL,
  day INTEGER NOT NULL,
  PRIMARY KEY(account_id, day)
) WITHOUT ROWID;
";

/// A catalogue file and a small pool of connections to it, so that
/// concurrent filesystem requests do not queue on one connection.
pub struct Catalog {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Catalog {
    /// Open (creating if needed) the catalogue at `path`. An incompatible
    /// older catalogue is emptied so that the next refresh rebuilds it.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent() {
            private::create_dir(dir).context("creating the catalogue directory")?;
        }
        private::touch_file(path)?;
        let conn = Self::connect(path)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .context("reading catalogue version")?;
        if version != SCHEMA_VERSION {
            if version != 0 {
                log::info!(
                    "catalogue {} has version {version}; rebuilding",
                    path.display()
                );
            }
            conn.execute_batch(
                "DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS accounts;
                 DROP TABLE IF EXISTS items; DROP TABLE IF EXISTS states;
                 DROP TABLE IF EXISTS days;",
            )?;
            conn.execute_batch(SCHEMA)
                .context("creating catalogue schema")?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Catalog {
            path: path.to_path_buf(),
            pool: Mutex::new(vec![conn]),
        })
    }

    /// Open an existing catalogue read-only (for the mount daemon when it
    /// must not change it).
    fn connect(path: &Path) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening catalogue {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
        )?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` with a pooled connection.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.pool.lock().unwrap().pop() {
            Some(c) => c,
            None => Self::connect(&self.path)?,
        };
        let out = f(&conn);
        self.pool.lock().unwrap().push(conn);
        out
    }

    /// Remember which backup (and format) this catalogue describes, and
    /// refuse to mix two backups in one catalogue.
    pub fn bind_backup(&self, root: &Path, format: &str) -> Result<()> {
        let root = root.to_string_lossy().to_string();
        self.with(|c| {
            let old: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key='backup_root'", [], |r| {
                    r.get(0)
                })
                .ok();
            match old {
                Some(o) if o != root => bail!(
                    "catalogue {} describes backup {o}, not {root}; pass another --index",
                    self.path.display()
                ),
                _ => {
                    c.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES('backup_root', ?1), ('format', ?2)",
                        [&root, format],
                    )?;
                    Ok(())
                }
            }
        })
    }
}

/// The default index directory for a backup: under the user's cache
/// directory, named after the backup path so two backups never share one.
pub fn default_index_dir(backup_root: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    backup_root.hash(&mut h);
    let base = backup_root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "root".into());
    cache
        .join("mailbackfs")
        .join(format!("{base}-{:016x}", h.finish()))
}

/// Refuse an index directory inside the backup path: nothing may be
/// written there.
pub fn check_index_outside(backup_root: &Path, index_dir: &Path) -> Result<()> {
    let root = std::fs::canonicalize(backup_root)
        .with_context(|| format!("resolving backup path {}", backup_root.display()))?;
    let mut probe = index_dir.to_path_buf();
    // The index directory may not exist yet: resolve its nearest ancestor.
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    let probe = std::fs::canonicalize(&probe).unwrap_or(probe);
    if probe.starts_with(&root) {
        bail!(
            "index {} is inside the backup path {}; the backup is never written to, choose another --index",
            index_dir.display(),
            root.display()
        );
    }
    Ok(())
}
