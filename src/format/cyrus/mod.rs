//! Reader for Cyrus Backups (backupd): one data file of gzip-member chunks
//! plus a SQLite index per user, found through `backups.db` (twoskip) or by
//! scanning the backup partition. See `docs/formats/cyrus.md`.
//!
//! History comes from replaying every chunk (`replay`); the index is used
//! only to find chunks and message lines quickly, and as a fallback for
//! message locations when a chunk is damaged. Nothing is ever written into
//! the backup: the index is opened read-only and immutable.
//!
//! Blob locators: `<chunk id>@<member file offset>:<literal offset>:<size>:<guid>:<userid>`,
//! where the literal offset is the offset of the message bytes in the
//! uncompressed chunk, or `L<line offset>` when only the `APPLY MESSAGE`
//! line is known (from the index). The userid is last: it may hold `:`.

mod chunks;
mod dlist;
mod names;
mod replay;
mod synccrc;
mod text;
mod twoskip;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use sha1::{Digest, Sha1};

use self::chunks::{Chunk, ChunkCache, ChunkLines, MemberStream};
use super::backup_root::{BackupRoot, EntryKind};
use super::{AccountEntry, BackupReader};
use crate::model::{Account, BlobRef, Item, ItemKind};

pub use self::text::decode_mutf7;

/// Decompressed small chunks kept for `open_blob`.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Chunks at most this long (uncompressed, as the index says) are
/// decompressed whole once and cached; larger ones, or chunks the index
/// does not describe, are streamed message by message.
const SMALL_CHUNK: u64 = 4 * 1024 * 1024;

/// Where the backup's parts are, for a root the user passed: the directory
/// every file is opened beneath (the root's links resolved once), and the
/// partition and `backups.db` below it.
struct Layout {
    base: BackupRoot,
    partition: PathBuf,
    backups_db: Option<PathBuf>,
}

fn layout(root: &Path) -> Option<Layout> {
    let real = std::fs::canonicalize(root).ok()?;
    let base = BackupRoot::open(&real).ok()?;
    // Present in any form: what it is is found out (and reported) on open.
    let db_in = |b: &BackupRoot, dir: &Path| -> Option<PathBuf> {
        let p = dir.join("config").join("backups.db");
        b.stat(&p).is_ok().then_some(p)
    };
    let parent = || -> Option<(BackupRoot, PathBuf)> {
        let name = PathBuf::from(real.file_name()?);
        Some((BackupRoot::open(real.parent()?).ok()?, name))
    };
    // The corpus directory, holding backup/{config,partition}.
    if base.is_dir("backup/partition") {
        let backups_db = db_in(&base, Path::new("backup"));
        return Some(Layout {
            base,
            partition: "backup/partition".into(),
            backups_db,
        });
    }
    // The backup directory, holding config/ and partition/.
    if base.is_dir("partition") {
        let backups_db = db_in(&base, Path::new(""));
        return Some(Layout {
            base,
            partition: "partition".into(),
            backups_db,
        });
    }
    // The config directory itself.
    if base.stat("backups.db").is_ok() {
        if let Some((up, name)) = parent().filter(|(up, _)| up.is_dir("partition")) {
            return Some(Layout {
                base: up,
                partition: "partition".into(),
                backups_db: Some(name.join("backups.db")),
            });
        }
        return Some(Layout {
            base,
            partition: PathBuf::new(),
            backups_db: Some("backups.db".into()),
        });
    }
    // The partition: <h>/<user>_XXXXXX + .index.
    if !scan_partition(&base).0.is_empty() {
        if let Some((up, name)) = parent() {
            if let Some(db) = db_in(&up, Path::new("")) {
                return Some(Layout {
                    base: up,
                    partition: name,
                    backups_db: Some(db),
                });
            }
        }
        return Some(Layout {
            base,
            partition: PathBuf::new(),
            backups_db: None,
        });
    }
    None
}

/// Whether `root` has the layout of this format.
pub fn looks_like(root: &Path) -> bool {
    match layout(root) {
        Some(l) => {
            l.backups_db.is_some()
                || l.base
                    .open_dir(&l.partition)
                    .is_ok_and(|p| !scan_partition(&p).0.is_empty())
        }
        None => false,
    }
}

/// The user of a data file name `<userid>_XXXXXX`.
fn data_file_user(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(7)?;
    if !name.is_char_boundary(cut) || cut == 0 {
        return None;
    }
    let (user, suffix) = name.split_at(cut);
    (suffix.starts_with('_') && suffix[1..].bytes().all(|c| c.is_ascii_alphanumeric()))
        .then_some(user)
}

/// A problem of the backup, and the user it concerns when there is one.
type Problem = (Option<String>, String);

/// `<h>/<userid>_XXXXXX` data files (relative to the partition) that have
/// their `.index`, and the problems met: a link where a directory or data
/// file should be is not followed, and said.
fn scan_partition(partition: &BackupRoot) -> (Vec<(String, PathBuf)>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let Ok(dirs) = partition.read_dir("") else {
        return (out, problems);
    };
    for d in dirs {
        if d.kind == EntryKind::Symlink {
            problems.push((
                None,
                format!(
                    "partition entry {} is a symbolic link, not followed",
                    partition.display_path(Path::new(&d.name)).display()
                ),
            ));
        }
        if d.kind != EntryKind::Dir {
            continue;
        }
        let Ok(files) = partition.read_dir(&d.name) else {
            continue;
        };
        for f in files {
            let name = f.name.to_string_lossy().into_owned();
            let Some(user) = data_file_user(&name) else {
                continue;
            };
            let rel = Path::new(&d.name).join(&f.name);
            if f.kind != EntryKind::File {
                let why = match partition.open_file(&rel) {
                    Err(e) => e.to_string(),
                    Ok(_) => "changed while scanned".into(),
                };
                problems.push((
                    Some(user.to_string()),
                    format!("data file of {user}: {why}"),
                ));
                continue;
            }
            if partition.stat(index_path(&rel)).is_ok() {
                out.push((user.to_string(), rel));
            }
        }
    }
    out.sort();
    (out, problems)
}

/// The part of a path recorded in `backups.db` that is used: its last two
/// components, when they are `<h>/<userid>_XXXXXX`.
fn recorded_rel(recorded: &str) -> Option<PathBuf> {
    let comps: Vec<_> = Path::new(recorded).components().rev().take(2).collect();
    let [file, dir] = comps.as_slice() else {
        return None;
    };
    let (Component::Normal(file), Component::Normal(dir)) = (file, dir) else {
        return None;
    };
    data_file_user(file.to_str()?)?;
    Some(Path::new(dir).join(file))
}

/// No real `backups.db` comes near this.
const MAX_BACKUPS_DB: u64 = 256 * 1024 * 1024;

/// userid -> data file (relative to the partition), from backups.db (its
/// paths used only through `<h>/<userid>_XXXXXX`, beneath the partition),
/// and from a partition scan for users it does not know (or when it is
/// absent or unreadable).
fn find_backups(l: &Layout, part: &BackupRoot) -> (BTreeMap<String, PathBuf>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let Some(db) = &l.backups_db {
        let pairs = l
            .base
            .read_capped(db, MAX_BACKUPS_DB)
            .map_err(anyhow::Error::from)
            .and_then(|b| twoskip::read_all(&b));
        match pairs {
            Ok(pairs) => {
                let mut seen: HashMap<String, String> = HashMap::new();
                for (k, v) in pairs {
                    let user = String::from_utf8_lossy(&k).into_owned();
                    let recorded = String::from_utf8_lossy(&v).into_owned();
                    if let Some(first) = seen.get(&user) {
                        problems.push((
                            Some(user.clone()),
                            format!(
                                "backups.db: duplicate entry for {user}: {recorded} \
                                 ignored, {first} kept"
                            ),
                        ));
                        continue;
                    }
                    seen.insert(user.clone(), recorded.clone());
                    let Some(rel) = recorded_rel(&recorded) else {
                        problems.push((
                            Some(user.clone()),
                            format!(
                                "backups.db: the path of {user} ({recorded}) does not end in \
                                 <h>/<userid>_XXXXXX; scanning the partition"
                            ),
                        ));
                        continue;
                    };
                    if let Some((other, _)) = out.iter().find(|(_, p)| **p == rel) {
                        problems.push((
                            Some(user.clone()),
                            format!(
                                "backups.db: {user} and {other} name the same data file \
                                 {recorded}; kept for {other}"
                            ),
                        ));
                        continue;
                    }
                    match part.open_file(&rel) {
                        Ok(_) => {
                            out.insert(user, rel);
                        }
                        Err(e) => problems.push((
                            Some(user.clone()),
                            format!("backups.db: data file of {user} unusable: {e}"),
                        )),
                    }
                }
            }
            Err(e) => problems.push((
                None,
                format!("backups.db unreadable ({e:#}); scanning the partition"),
            )),
        }
    }
    let (scanned, scan_problems) = scan_partition(part);
    problems.extend(scan_problems);
    for (user, rel) in scanned {
        if out.values().any(|p| *p == rel) {
            continue;
        }
        out.entry(user).or_insert(rel);
    }
    (out, problems)
}

fn index_path(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// No real index comes near this: a bigger one is not read (the data file
/// is scanned instead).
const MAX_INDEX: u64 = 256 * 1024 * 1024;

/// Open the index of the data file `data` (relative to `part`) like any
/// backup file (a regular file, beneath the partition), and hand it to
/// SQLite as a read-only in-memory image: SQLite never opens a path, so no
/// journal, lock or temporary file appears anywhere, and nothing it reads
/// can be a link or a FIFO. Only plain tables are accepted (a view or a
/// trigger is refused), and every statement runs under a step budget.
fn open_index(part: &BackupRoot, data: &Path) -> Result<rusqlite::Connection> {
    let rel = index_path(data);
    let bytes = part.read_capped(&rel, MAX_INDEX)?;
    let what = part.display_path(&rel);
    let what = what.display();
    let mut conn = rusqlite::Connection::open_in_memory()?;
    let len = bytes.len();
    // SAFETY: SQLite takes ownership of memory it allocated itself; the
    // image is copied into exactly `len` bytes of it.
    let image = unsafe {
        let p = rusqlite::ffi::sqlite3_malloc64(len.max(1) as u64) as *mut u8;
        let p = std::ptr::NonNull::new(p).context("out of memory for the index image")?;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), len);
        rusqlite::serialize::OwnedData::from_raw_nonnull(p, len)
    };
    drop(bytes);
    conn.deserialize(rusqlite::DatabaseName::Main, image, true)
        .with_context(|| format!("index {what}"))?;
    conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA trusted_schema = OFF;")?;
    // No value of a real index comes near 16 MiB: a schema expression
    // building huge strings (a generated column) fails instead.
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 16 << 20);
    // A budget of VM steps, far above what the expected queries need over
    // an index this size: a hostile one cannot spin.
    let budget = 10_000_000u64 + 20 * len as u64;
    let steps = std::sync::atomic::AtomicU64::new(0);
    conn.progress_handler(
        1000,
        Some(move || steps.fetch_add(1000, std::sync::atomic::Ordering::Relaxed) > budget),
    );
    let mut st = conn.prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_master")?;
    let objects: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    drop(st);
    for (kind, name, _) in &objects {
        if kind == "view" || kind == "trigger" {
            bail!("index {what} has a {kind} ({name}): refused");
        }
    }
    for table in ["chunk", "message"] {
        let Some((_, _, sql)) = objects.iter().find(|(k, n, _)| k == "table" && n == table) else {
            bail!("index {what} has no table {table}");
        };
        if !sql
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("CREATE TABLE")
        {
            bail!("index {what}: {table} is not a plain table: refused");
        }
    }
    Ok(conn)
}

/// The index's chunk table: member offset -> chunk id.
fn index_chunks(conn: &rusqlite::Connection) -> Result<BTreeMap<u64, i64>> {
    let mut st = conn.prepare("SELECT id, offset FROM chunk ORDER BY offset")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (id, off) = r?;
        out.insert(u64::try_from(off)?, id);
    }
    Ok(out)
}

/// The index's chunk table: member offset -> uncompressed length.
fn index_chunk_lengths(conn: &rusqlite::Connection) -> Result<HashMap<u64, u64>> {
    let mut st = conn.prepare("SELECT offset, length FROM chunk")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = HashMap::new();
    for r in rows {
        let (off, len) = r?;
        out.insert(u64::try_from(off)?, u64::try_from(len)?);
    }
    Ok(out)
}

/// The index's message table: guid -> (chunk id, line offset, size).
fn index_messages(conn: &rusqlite::Connection) -> Result<IndexMessages> {
    let mut st = conn.prepare("SELECT guid, chunk_id, offset, size FROM message")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = HashMap::new();
    for r in rows {
        let (g, c, o, s) = r?;
        out.insert(
            g.to_ascii_lowercase(),
            (c, o.max(0) as u64, s.max(0) as u64),
        );
    }
    Ok(out)
}

pub struct CyrusReader {
    root: PathBuf,
    /// The partition: every data file and index is opened beneath it.
    part: BackupRoot,
    /// userid -> data file, relative to the partition.
    backups: BTreeMap<String, PathBuf>,
    problems: Vec<Problem>,
    cache: ChunkCache,
    /// userid -> (member offset -> uncompressed chunk length), from the index.
    chunk_lengths: Mutex<HashMap<String, Arc<HashMap<u64, u64>>>>,
    /// Chunks up to this length are cached whole; see [`SMALL_CHUNK`].
    small_chunk: u64,
    /// Chunks the index calls small that turned out too long to cache:
    /// streamed from then on, not inflated again up to the limit first.
    oversize: Mutex<std::collections::HashSet<(String, u64)>>,
}

impl CyrusReader {
    pub fn open(root: &Path) -> Result<Self> {
        let Some(l) = layout(root) else {
            bail!(
                "{} is not a Cyrus backup: expected a backup directory (config/backups.db, partition/) \
                 or a backup partition (<h>/<user>_XXXXXX with its .index)",
                root.display()
            );
        };
        let part = l
            .base
            .open_dir(&l.partition)
            .with_context(|| format!("partition of {}", root.display()))?;
        let (backups, problems) = find_backups(&l, &part);
        for (_, p) in &problems {
            log::warn!("{p}");
        }
        Ok(Self {
            root: root.to_path_buf(),
            part,
            backups,
            problems,
            cache: ChunkCache::new(CACHE_BYTES),
            chunk_lengths: Mutex::new(HashMap::new()),
            oversize: Mutex::new(std::collections::HashSet::new()),
            // For tests and benchmarks: 0 streams every message.
            small_chunk: std::env::var("MAILBACKFS_CYRUS_SMALL_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(SMALL_CHUNK),
        })
    }

    /// Cache chunks up to `bytes` (uncompressed) whole; stream messages of
    /// larger ones. 0 streams every message.
    pub fn with_small_chunk(mut self, bytes: u64) -> Self {
        self.small_chunk = bytes;
        self
    }

    fn data_file(&self, userid: &str) -> io::Result<&PathBuf> {
        self.backups.get(userid).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no Cyrus backup for {userid} under {}", self.root.display()),
            )
        })
    }

    /// Uncompressed length of the chunk at `file_offset`, when the index
    /// of `userid`'s backup says it.
    fn chunk_length(&self, userid: &str, file_offset: u64) -> Option<u64> {
        let mut g = self.chunk_lengths.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = g.get(userid) {
            return m.get(&file_offset).copied();
        }
        let lengths = self
            .data_file(userid)
            .ok()
            .and_then(|d| open_index(&self.part, d).ok())
            .and_then(|conn| index_chunk_lengths(&conn).ok())
            .unwrap_or_default();
        let m = Arc::new(lengths);
        g.insert(userid.to_string(), m.clone());
        m.get(&file_offset).copied()
    }

    /// The decompressed chunk at `file_offset` of `userid`'s data file;
    /// `None` when it is longer than the cache keeps (whatever the index
    /// said): its messages are then streamed.
    fn chunk(&self, userid: &str, file_offset: u64) -> io::Result<Option<Arc<Chunk>>> {
        let data = self.data_file(userid)?;
        let key = (userid.to_string(), file_offset);
        if let Some(c) = self.cache.get(&key) {
            return Ok(Some(c));
        }
        let lock = || self.oversize.lock().unwrap_or_else(|p| p.into_inner());
        if lock().contains(&key) {
            return Ok(None);
        }
        let mut f = self.part.open_file(data)?;
        let Some(c) = chunks::inflate_member(&mut f, file_offset, CACHE_BYTES / 4)? else {
            log::warn!(
                "chunk at {file_offset} of {userid}'s backup is longer than its index says: streamed"
            );
            lock().insert(key);
            return Ok(None);
        };
        let c = Arc::new(c);
        self.cache.put(key, c.clone());
        Ok(Some(c))
    }
}

fn signature(part: &BackupRoot, data: &Path) -> String {
    let stamp = |p: &Path| -> String {
        match part.stat(p) {
            Ok(m) => {
                let mt = m.st_mtime as i128 * 1_000_000_000 + m.st_mtime_nsec as i128;
                format!("{}:{}", m.st_size, mt.max(0))
            }
            Err(_) => "-".into(),
        }
    };
    format!("{}/{}", stamp(data), stamp(&index_path(data)))
}

/// A parsed blob locator.
struct Locator<'a> {
    file_offset: Option<u64>,
    offset: LitOffset,
    size: u64,
    guid: std::borrow::Cow<'a, str>,
    userid: &'a str,
}

enum LitOffset {
    Literal(u64),
    Line(u64),
    Unknown,
}

fn make_locator(
    chunk_id: i64,
    file_offset: u64,
    offset: LitOffset,
    size: u64,
    guid: &str,
    userid: &str,
) -> String {
    let off = match offset {
        LitOffset::Literal(o) => o.to_string(),
        LitOffset::Line(o) => format!("L{o}"),
        LitOffset::Unknown => return format!("-@-:-:{size}:{}:{userid}", escape_guid(guid)),
    };
    let guid = escape_guid(guid);
    format!("{chunk_id}@{file_offset}:{off}:{size}:{guid}:{userid}")
}

/// A GUID as a locator field: `%` and `:` (the field separator) escaped as
/// `%25` and `%3A`. A real GUID is hex; a hostile one must not move the
/// fields after it.
fn escape_guid(guid: &str) -> std::borrow::Cow<'_, str> {
    if guid.contains([':', '%']) {
        guid.replace('%', "%25").replace(':', "%3A").into()
    } else {
        guid.into()
    }
}

fn unescape_guid(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains('%') {
        field.replace("%3A", ":").replace("%25", "%").into()
    } else {
        field.into()
    }
}

fn parse_locator(s: &str) -> Option<Locator<'_>> {
    let mut it = s.splitn(5, ':');
    let chunk = it.next()?;
    let off = it.next()?;
    let size = it.next()?.parse().ok()?;
    let guid = unescape_guid(it.next()?);
    let userid = it.next()?;
    let file_offset = chunk.split_once('@').and_then(|(_, o)| o.parse().ok());
    let offset = if let Some(l) = off.strip_prefix('L') {
        LitOffset::Line(l.parse().ok()?)
    } else if off == "-" {
        LitOffset::Unknown
    } else {
        LitOffset::Literal(off.parse().ok()?)
    };
    Some(Locator {
        file_offset,
        offset,
        size,
        guid,
        userid,
    })
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Hands out `bytes[start..end]`, then an error if there is one.
struct SliceThenError {
    chunk: Arc<Chunk>,
    pos: usize,
    end: usize,
    error: Option<io::Error>,
}

impl Read for SliceThenError {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.end {
            let n = buf.len().min(self.end - self.pos);
            buf[..n].copy_from_slice(&self.chunk.data[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

/// guid -> (chunk id, `APPLY MESSAGE` line offset, size), from the index.
type IndexMessages = HashMap<String, (i64, u64, u64)>;

/// What replaying an account's data file gives.
struct ReplayOutcome {
    replay: replay::Replay,
    problems: Vec<String>,
    index_msgs: Option<IndexMessages>,
    /// chunk id -> gzip member offset in the data file.
    chunk_offsets: BTreeMap<i64, u64>,
}

impl CyrusReader {
    /// Replay one account's chunks; returns the replay and problems met.
    fn replay(&self, userid: &str) -> Result<ReplayOutcome> {
        let data = self.data_file(userid)?.clone();
        let mut problems = Vec::new();
        let (known, index_msgs) = match open_index(&self.part, &data) {
            Ok(conn) => {
                let k = index_chunks(&conn).unwrap_or_else(|e| {
                    problems.push(format!("index chunk table unreadable: {e:#}"));
                    BTreeMap::new()
                });
                let m = index_messages(&conn)
                    .map_err(|e| problems.push(format!("index message table unreadable: {e:#}")))
                    .ok();
                (k, m)
            }
            Err(e) => {
                problems.push(format!("index unreadable, scanning the data file: {e:#}"));
                (BTreeMap::new(), None)
            }
        };
        let mut f = self
            .part
            .open_file(&data)
            .with_context(|| format!("data file of {userid}"))?;
        let len = f.metadata()?.len();
        let mut rp = replay::Replay::new();
        let mut chunk_offsets: BTreeMap<i64, u64> = BTreeMap::new();
        let mut pos = 0u64;
        let mut ordinal = 0i64;
        while pos < len {
            let id = match known.get(&pos) {
                Some(id) => *id,
                None => ordinal + 1,
            };
            ordinal = id;
            chunk_offsets.insert(id, pos);
            let (compressed_len, damage) =
                self.replay_member(&mut rp, &f, pos, id, &mut problems)?;
            if let Some(d) = &damage {
                problems.push(format!("chunk {id} at offset {pos}: {d}"));
            }
            let next = match compressed_len {
                Some(l) => Some(pos + l),
                None => match known.range(pos + 1..).next() {
                    Some((o, _)) => Some(*o),
                    None => chunks::find_next_member(&mut f, pos + 1)?,
                },
            };
            match next {
                Some(n) if n > pos => pos = n,
                _ => break,
            }
        }
        for (off, id) in &known {
            chunk_offsets.entry(*id).or_insert(*off);
        }
        rp.finish();
        Ok(ReplayOutcome {
            replay: rp,
            problems,
            index_msgs,
            chunk_offsets,
        })
    }

    /// Replay the chunk whose member starts at `pos`, streamed line by line
    /// (memory is one line, message literals cut to their first bytes);
    /// returns its compressed length when it ended cleanly, and its damage.
    fn replay_member(
        &self,
        rp: &mut replay::Replay,
        f: &std::fs::File,
        pos: u64,
        id: i64,
        problems: &mut Vec<String>,
    ) -> io::Result<(Option<u64>, Option<String>)> {
        let s = match MemberStream::open(f.try_clone()?, pos) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok((None, Some(e.to_string())))
            }
            Err(e) => return Err(e),
        };
        let mut lines = ChunkLines::new(s);
        while let Some(l) = lines.next_line() {
            if l.too_long {
                problems.push(format!(
                    "chunk {id}: line at {} longer than {} bytes, skipped",
                    l.start,
                    chunks::LINE_MAX
                ));
                continue;
            }
            match dlist::parse_line(&l.bytes, 0) {
                Ok((Some(line), _)) if line.verb == "APPLY" => {
                    rp.apply(&line, id, pos, &l.bytes);
                    // The line holds the first bytes of each message: say
                    // where the message really is.
                    for lit in &l.literals {
                        if let Some(m) = rp.messages.get_mut(&lit.guid) {
                            if m.chunk_id == id && m.file_offset == pos {
                                m.literal_offset = lit.offset;
                                m.size = lit.size;
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(dlist::ParseError::Truncated) => {
                    problems.push(format!("chunk {id}: ends inside a line at {}", l.start));
                    break;
                }
                Err(dlist::ParseError::Syntax(at)) => problems.push(format!(
                    "chunk {id}: unparsable line at {} (byte {})",
                    l.start,
                    l.start + at as u64
                )),
            }
        }
        let (len, damage) = lines.finish()?;
        if damage.is_some() {
            // "ends inside a line" said twice otherwise.
            if let Some(last) = problems.last() {
                if last.starts_with(&format!("chunk {id}: ends inside a line")) {
                    problems.pop();
                }
            }
        }
        Ok((len, damage))
    }
}

impl BackupReader for CyrusReader {
    fn format_name(&self) -> &'static str {
        "cyrus"
    }

    fn list_accounts(&self) -> Result<Vec<AccountEntry>> {
        Ok(self
            .backups
            .iter()
            .map(|(user, data)| AccountEntry {
                key: user.clone(),
                signature: signature(&self.part, data),
            })
            .collect())
    }

    fn problems(&self) -> Vec<String> {
        self.problems
            .iter()
            .filter(|(u, _)| u.as_ref().is_none_or(|u| !self.backups.contains_key(u)))
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> Result<Account> {
        let ReplayOutcome {
            replay: rp,
            mut problems,
            index_msgs,
            chunk_offsets,
        } = self.replay(key)?;
        let blob = |guid: &str, size: Option<u64>| -> Option<BlobRef> {
            let locator = if let Some(m) = rp.messages.get(guid) {
                make_locator(
                    m.chunk_id,
                    m.file_offset,
                    LitOffset::Literal(m.literal_offset),
                    m.size,
                    guid,
                    key,
                )
            } else if let Some((c, line, sz)) = index_msgs.as_ref().and_then(|m| m.get(guid)) {
                let fo = chunk_offsets.get(c).copied().unwrap_or(0);
                make_locator(*c, fo, LitOffset::Line(*line), *sz, guid, key)
            } else {
                make_locator(0, 0, LitOffset::Unknown, size.unwrap_or(0), guid, key)
                // body never seen
            };
            Some(BlobRef {
                locator,
                digest: Some(guid.to_string()),
            })
        };
        let subject = |guid: &str| rp.subjects.get(guid).cloned();
        let mut items: Vec<Item> = Vec::new();
        for (id, hkey, states) in rp.folder_items() {
            items.push(Item {
                id,
                label: id.to_string(),
                history_key: hkey,
                states: states.to_vec(),
                error: None,
            });
        }
        for (id, t) in &rp.message_items {
            if t.states.is_empty() {
                continue;
            }
            items.push(Item {
                id: *id,
                label: t.uid.to_string(),
                history_key: t.guid.clone(),
                states: t.states.iter().map(|s| s.to_state(blob, subject)).collect(),
                error: None,
            });
        }
        items.sort_by_key(|i| i.id);
        debug_assert!(items
            .iter()
            .all(|i| i.states.iter().all(|s| s.kind != Some(ItemKind::Hidden))));
        for it in items {
            sink(it);
        }
        problems.extend(
            self.problems
                .iter()
                .filter(|(u, _)| u.as_deref() == Some(key))
                .map(|(_, p)| p.clone()),
        );
        if let Ok(data) = self.data_file(key) {
            problems.extend(compaction_problems(&self.part, data, rp.notes.history_gaps));
        }
        if let Some(p) = crc_problem(&rp.notes.crc_mismatches) {
            problems.push(p);
        }
        log_unshown(key, &rp.notes);
        Ok(Account {
            key: key.to_string(),
            name: key.to_string(),
            status: "active".into(),
            deleted_at: None,
            aliases: Vec::new(),
            problems,
        })
    }

    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        let loc = parse_locator(&blob.locator)
            .ok_or_else(|| bad(format!("not a Cyrus blob locator: {}", blob.locator)))?;
        let Some(fo) = loc.file_offset else {
            return Err(bad(format!(
                "message {} is not in the backup data file",
                loc.guid
            )));
        };
        let small = self
            .chunk_length(loc.userid, fo)
            .is_some_and(|l| l <= self.small_chunk);
        if small {
            self.open_cached(&loc, fo)
        } else {
            self.open_streamed(&loc, fo)
        }
    }

    fn blob_len(&self, blob: &BlobRef, claimed: Option<u64>) -> io::Result<u64> {
        match parse_locator(&blob.locator) {
            Some(l) if l.file_offset.is_some() => Ok(l.size),
            _ => claimed.ok_or_else(|| bad(format!("not a Cyrus blob locator: {}", blob.locator))),
        }
    }
}

/// What `ctl_backups compact` left: the copies of the data file it kept
/// (`<file>.<unix time>`, `backup_keep_previous`), and records whose
/// earlier states the rewritten chunks no longer hold.
fn compaction_problems(part: &BackupRoot, data: &Path, history_gaps: usize) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(dir), Some(name)) = (data.parent(), data.file_name()) else {
        return out;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    // Listed beneath the partition, like every other file of the backup.
    let mut times: Vec<i64> = part
        .read_dir(dir)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let n = e.name.to_string_lossy().into_owned();
                    let ts = n.strip_prefix(&prefix)?;
                    ts.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| ts.parse().ok())?
                })
                .collect()
        })
        .unwrap_or_default();
    times.sort_unstable();
    for t in times {
        let when = chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| t.to_string());
        out.push(format!(
            "compacted at {when} (ctl_backups compact): history before it may be incomplete; \
             the previous data file {prefix}{t} is kept beside it and not read"
        ));
    }
    if history_gaps > 0 {
        out.push(format!(
            "{history_gaps} message record(s) lost their earlier states: older chunks were \
             rewritten (ctl_backups compact), so views before that show less than the server had"
        ));
    }
    out
}

/// The replayed state differed from the server's (`SYNC_CRC`) after some
/// lines: views around them may show records the server no longer had, or
/// miss some it had.
fn crc_problem(mismatches: &[(i64, String)]) -> Option<String> {
    let (ts, name) = mismatches.first()?;
    let when = chrono::DateTime::from_timestamp(*ts, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ts.to_string());
    Some(format!(
        "{} mailbox state(s) differ from the server's (SYNC_CRC), the first {} at {when}: \
         records are missing (ctl_backups compact) or were expunged unseen",
        mismatches.len(),
        names::display(name)
    ))
}

/// Tolerated backup content the model does not show: sieve scripts and
/// other users' seen state are user data, so they are a warning; mailbox
/// annotations (special-use, comments) and replaced mailboxes only a note.
fn log_unshown(userid: &str, n: &replay::Notes) {
    let annotated = n.annotated_mailboxes.len();
    let mut parts = Vec::new();
    if n.sieve_lines > 0 {
        parts.push(format!(
            "{} sieve script line(s) (APPLY SIEVE/UNSIEVE)",
            n.sieve_lines
        ));
    }
    if n.seen_states > 0 {
        parts.push(format!(
            "{} seen state(s) of other users' mailboxes (APPLY SEEN)",
            n.seen_states
        ));
    }
    if !parts.is_empty() {
        if annotated > 0 {
            parts.push(format!("annotations of {annotated} mailbox(es)"));
        }
        log::warn!("{userid}: the mount does not show {}", parts.join(", "));
    } else if annotated > 0 {
        log::info!("{userid}: the mount does not show annotations of {annotated} mailbox(es)");
    }
    if n.inferred_expunges > 0 {
        log::info!(
            "{userid}: {} record(s) found expunged by the SYNC_CRC of a line that left them out",
            n.inferred_expunges
        );
    }
    if n.replaced_mailboxes > 0 {
        log::info!(
            "{userid}: {} mailbox(es) replaced by a re-created one of the same name",
            n.replaced_mailboxes
        );
    }
}

impl CyrusReader {
    /// A message of a small chunk: the chunk is decompressed whole, once,
    /// and kept in the byte-bounded cache.
    fn open_cached(&self, loc: &Locator<'_>, fo: u64) -> io::Result<Box<dyn Read + Send>> {
        let Some(chunk) = self.chunk(loc.userid, fo)? else {
            return self.open_streamed(loc, fo);
        };
        let start = match loc.offset {
            LitOffset::Literal(o) => o as usize,
            LitOffset::Line(line) => {
                // Literal by literal, as the streamed path does: a damaged
                // later literal does not hide the earlier ones.
                let mut cur = io::Cursor::new(chunk.data.get(line as usize..).unwrap_or(&[]));
                seek_literal(&mut cur, &loc.guid).map_err(|e| {
                    bad(match &chunk.damage {
                        Some(d) => format!("message {}: its chunk is damaged ({d}; {e})", loc.guid),
                        None => e.to_string(),
                    })
                })?;
                line as usize + cur.position() as usize
            }
            LitOffset::Unknown => {
                return Err(bad(format!(
                    "message {} is not in the backup data file",
                    loc.guid
                )))
            }
        };
        let size = loc.size as usize;
        let want_end = start.saturating_add(size);
        let avail_end = want_end
            .min(chunk.data.len())
            .max(start.min(chunk.data.len()));
        let start = start.min(chunk.data.len());
        // A damaged chunk still serves the messages that decompressed
        // completely before the damage: their SHA-1 (the GUID) proves them,
        // as in the streamed path.
        let error = if want_end > chunk.data.len() {
            Some(bad(match &chunk.damage {
                Some(d) => format!("message {}: its chunk is damaged ({d})", loc.guid),
                None => format!("message {}: chunk ends before the message does", loc.guid),
            }))
        } else {
            let digest = hex(&Sha1::digest(&chunk.data[start..want_end]));
            (!digest.eq_ignore_ascii_case(&loc.guid)).then(|| {
                bad(format!(
                    "message {}: SHA-1 of the stored bytes is {digest} (digest mismatch)",
                    loc.guid
                ))
            })
        };
        Ok(Box::new(SliceThenError {
            chunk,
            pos: start,
            end: avail_end,
            error,
        }))
    }

    /// A message streamed out of its chunk: the member is decompressed from
    /// its start only as far as the message's end, and only the message's
    /// bytes are handed out; memory does not grow with the chunk or the
    /// message.
    fn open_streamed(&self, loc: &Locator<'_>, fo: u64) -> io::Result<Box<dyn Read + Send>> {
        let file = self.part.open_file(self.data_file(loc.userid)?)?;
        let damaged = |e: io::Error| {
            if e.kind() == io::ErrorKind::InvalidData {
                bad(format!("message {}: its chunk is damaged ({e})", loc.guid))
            } else {
                e
            }
        };
        let mut s = MemberStream::open(file, fo).map_err(damaged)?;
        match loc.offset {
            LitOffset::Literal(o) => s.skip(o).map_err(damaged)?,
            LitOffset::Line(line) => {
                s.skip(line).map_err(damaged)?;
                seek_literal(&mut s, &loc.guid).map_err(damaged)?;
            }
            LitOffset::Unknown => {
                return Err(bad(format!(
                    "message {} is not in the backup data file",
                    loc.guid
                )))
            }
        }
        Ok(Box::new(BlobStream {
            stream: s,
            left: loc.size,
            sha: Sha1::new(),
            guid: loc.guid.to_string(),
            checked: false,
        }))
    }
}

/// `size` bytes of a message out of a member stream, then the SHA-1 check.
struct BlobStream {
    stream: MemberStream,
    left: u64,
    sha: Sha1,
    guid: String,
    checked: bool,
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left > 0 {
            if buf.is_empty() {
                return Ok(0);
            }
            let want = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let n = self.stream.read(&mut buf[..want]).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    bad(format!("message {}: its chunk is damaged ({e})", self.guid))
                } else {
                    e
                }
            })?;
            if n == 0 {
                return Err(bad(format!(
                    "message {}: chunk ends before the message does",
                    self.guid
                )));
            }
            self.sha.update(&buf[..n]);
            self.left -= n as u64;
            return Ok(n);
        }
        if !self.checked {
            self.checked = true;
            let digest = hex(&std::mem::take(&mut self.sha).finalize());
            if !digest.eq_ignore_ascii_case(&self.guid) {
                return Err(bad(format!(
                    "message {}: SHA-1 of the stored bytes is {digest} (digest mismatch)",
                    self.guid
                )));
            }
        }
        Ok(0)
    }
}

/// A forward-only byte source that can skip cheaply.
trait Skip: Read {
    fn skip_bytes(&mut self, n: u64) -> io::Result<()>;
}

impl Skip for MemberStream {
    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        self.skip(n)
    }
}

impl Skip for io::Cursor<&[u8]> {
    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        let to = self.position().saturating_add(n);
        if to > self.get_ref().len() as u64 {
            return Err(bad("chunk ends inside a message literal".into()));
        }
        self.set_position(to);
        Ok(())
    }
}

/// With `s` at the start of an `APPLY MESSAGE` line, move it to the first
/// byte of the literal of `guid`, skipping the other literals of the line.
fn seek_literal<S: Skip>(s: &mut S, guid: &str) -> io::Result<()> {
    fn byte<S: Read>(s: &mut S) -> io::Result<u8> {
        let mut b = [0u8; 1];
        match s.read(&mut b)? {
            0 => Err(bad("chunk ends inside an APPLY MESSAGE line".into())),
            _ => Ok(b[0]),
        }
    }
    let not_found = || {
        bad(format!(
            "message {guid} not found in its APPLY MESSAGE line"
        ))
    };
    // `<ts> APPLY MESSAGE (`
    let mut n = 0;
    while byte(s)? != b'(' {
        n += 1;
        if n > 256 {
            return Err(not_found());
        }
    }
    loop {
        match byte(s)? {
            b' ' => continue,
            b'%' => {}
            _ => return Err(not_found()),
        }
        if byte(s)? != b'{' {
            return Err(not_found());
        }
        let mut head = Vec::new();
        loop {
            match byte(s)? {
                b'}' => break,
                c if head.len() < 1024 => head.push(c),
                _ => return Err(not_found()),
            }
        }
        if byte(s)? != b'\r' || byte(s)? != b'\n' {
            return Err(not_found());
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut words = head.split_ascii_whitespace();
        let (_part, g, size) = (words.next(), words.next(), words.next());
        let size: u64 = size.and_then(|x| x.parse().ok()).ok_or_else(not_found)?;
        if g.is_some_and(|g| g.eq_ignore_ascii_case(guid)) {
            return Ok(());
        }
        s.skip_bytes(size)?;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_with_colons_keeps_the_locator_fields() {
        for guid in ["ab:cd", "%3A:%", "0123abcd"] {
            let l = make_locator(7, 99, LitOffset::Literal(5), 42, guid, "user:x");
            let p = parse_locator(&l).unwrap_or_else(|| panic!("{l}"));
            assert_eq!(p.guid, guid, "{l}");
            assert_eq!(p.userid, "user:x", "{l}");
            assert_eq!((p.file_offset, p.size), (Some(99), 42));
            let l = make_locator(0, 0, LitOffset::Unknown, 3, guid, "u");
            assert_eq!(parse_locator(&l).unwrap().guid, guid);
        }
    }
}
