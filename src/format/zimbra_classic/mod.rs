//! Zimbra classic backups (`zmbackup` sessions), as
//! `docs/formats/zimbra-classic.md` describes them: each readable
//! `db/mail_item.dat` of a session is a snapshot of its account; items get
//! a state when a shown column changes, a deleted state when a later
//! snapshot no longer has them. Blob copies are pooled across sessions and
//! `shared_blobs/`.

mod blobs;
mod contact;
mod dat;
mod redo;
mod staging;
mod xml;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Result};
use lru::LruCache;

use self::blobs::Copy;
use self::staging::{Row, SharedIndex, Staging};
use super::backup_root::{BackupRoot, EntryKind};
use super::{AccountEntry, BackupReader};
use crate::model::{Account, BlobRef, Item, ItemKind, ItemState, Millis};

/// Metadata files (XML) larger than this are damage.
const MAX_XML: u64 = 64 * 1024 * 1024;
/// Account directories are looked for this deep below `accounts/`.
const ACCOUNT_DEPTH: usize = 4;

/// `(full|incr)-YYYYMMDD.HHMMSS.mmm`: whether full, and the instant.
pub fn parse_label(name: &str) -> Option<(bool, Millis)> {
    let (kind, ts) = name.split_once('-')?;
    let full = match kind {
        "full" => true,
        "incr" => false,
        _ => return None,
    };
    let b = ts.as_bytes();
    if b.len() != 19 || b[8] != b'.' || b[15] != b'.' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &ts[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let date = chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(4..6)?, digits(6..8)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?,
        digits(16..19)?,
    )?;
    Some((full, date.and_time(time).and_utc().timestamp_millis()))
}

/// Whether `root` looks like a classic backup target: a `sessions/` holding
/// a labelled session with its `session.xml`, or `accounts.xml` beside
/// `sessions/`.
pub fn looks_like(root: &Path) -> bool {
    let Ok(root) = BackupRoot::open(root) else {
        return false;
    };
    let Ok(entries) = root.read_dir("sessions") else {
        return false;
    };
    root.is_file("accounts.xml")
        || entries.iter().any(|e| {
            e.kind == EntryKind::Dir
                && e.name.to_str().and_then(parse_label).is_some()
                && root.is_file(Path::new("sessions").join(&e.name).join("session.xml"))
        })
}

#[derive(Clone, Debug)]
struct Session {
    rel: PathBuf,
    instant: Millis,
}

#[derive(Clone, Debug)]
struct AcctDir {
    session: usize,
    rel: PathBuf,
}

#[derive(Clone, Debug, Default)]
struct ScanAccount {
    dirs: Vec<AcctDir>,
    name: String,
}

/// What the target holds, found once per listing.
#[derive(Debug, Default)]
struct Scan {
    sessions: Vec<Session>,
    accounts: BTreeMap<String, ScanAccount>,
    accounts_xml_sig: String,
    problems: Vec<String>,
    redologs: Vec<redo::RedoLog>,
    /// Every `shared_blobs/` tree, for the signatures.
    shared_sig: String,
    /// Shared copies by digest (found on first use).
    shared: OnceLock<Option<Arc<SharedIndex>>>,
}

pub struct ZimbraClassicReader {
    root: PathBuf,
    dir: BackupRoot,
    scan: Mutex<Option<Arc<Scan>>>,
    /// Which copy of a multi-copy locator was found intact.
    chosen: Mutex<LruCache<String, usize>>,
}

impl ZimbraClassicReader {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("backup path {} is not a directory", root.display());
        }
        Ok(ZimbraClassicReader {
            root: root.to_path_buf(),
            dir: BackupRoot::open(root)?,
            scan: Mutex::new(None),
            chosen: Mutex::new(LruCache::new(NonZeroUsize::new(4096).expect("nonzero"))),
        })
    }

    fn scan(&self) -> Arc<Scan> {
        let mut g = self.scan.lock().unwrap();
        if let Some(s) = g.as_ref() {
            return s.clone();
        }
        let s = Arc::new(self.scan_now());
        *g = Some(s.clone());
        s
    }

    fn read_xml(&self, rel: &Path) -> Option<Vec<u8>> {
        match self.dir.read_capped(rel, MAX_XML) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }

    /// Sessions, account directories, names and redo logs.
    fn scan_now(&self) -> Scan {
        let mut scan = Scan::default();
        let mut list: Vec<(Millis, String)> = Vec::new();
        if let Ok(entries) = self.dir.read_dir("sessions") {
            for e in entries {
                let Some(name) = e.name.to_str() else {
                    continue;
                };
                let Some((_, instant)) = parse_label(name) else {
                    continue;
                };
                let rel = Path::new("sessions").join(name);
                if e.kind == EntryKind::Dir && self.dir.is_file(rel.join("session.xml")) {
                    list.push((instant, name.to_string()));
                }
            }
        }
        // Equal instants: the later directory name comes later, and wins.
        list.sort();
        for (instant, name) in list {
            scan.sessions.push(Session {
                rel: Path::new("sessions").join(name),
                instant,
            });
        }
        for (i, s) in scan.sessions.iter().enumerate() {
            let mut found = Vec::new();
            find_account_dirs(
                &self.dir,
                &s.rel.join("accounts"),
                0,
                &mut found,
                &mut scan.problems,
            );
            for rel in found {
                let Some(id) = rel.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                    continue;
                };
                scan.accounts
                    .entry(id)
                    .or_default()
                    .dirs
                    .push(AcctDir { session: i, rel });
            }
        }
        redo::list(&self.dir, Path::new("redologs"), &mut scan.redologs);
        for s in &scan.sessions {
            redo::list(&self.dir, &s.rel.join("redologs"), &mut scan.redologs);
        }
        self.name_accounts(&mut scan);
        let mut shared = Signature::default();
        // Only sessions with shared blobs count: a new session without
        // them does not make every account read again.
        for s in &scan.sessions {
            shared.tree(&self.dir, &s.rel.join("shared_blobs"), 0);
        }
        scan.shared_sig = shared.finish();
        scan
    }

    /// Directory names: accounts.xml, newest meta.xml, newest ldap.xml
    /// `mail`, else the zimbraId; duplicates get `ADDRESS~ZIMBRAID`.
    fn name_accounts(&self, scan: &mut Scan) {
        let listed = self
            .read_xml(Path::new("accounts.xml"))
            .map(|b| xml::accounts(&b))
            .unwrap_or_default();
        scan.accounts_xml_sig = self
            .dir
            .stat("accounts.xml")
            .map(|s| format!("{}:{}:{}", s.st_size, s.st_mtime, s.st_mtime_nsec))
            .unwrap_or_default();
        let mut by_id: HashMap<&str, &str> = HashMap::new();
        let mut by_addr: HashMap<String, &str> = HashMap::new();
        for (id, addr) in &listed {
            by_id.entry(id.as_str()).or_insert(addr.as_str());
            by_addr.entry(addr.to_lowercase()).or_insert(id.as_str());
        }
        let mut wanted: Vec<(String, String, usize)> = Vec::new();
        for (id, acct) in &scan.accounts {
            let newest = acct.dirs.iter().map(|d| d.session).max().unwrap_or(0);
            let name = by_id
                .get(id.as_str())
                .map(|s| s.to_string())
                .or_else(|| {
                    acct.dirs.iter().rev().find_map(|d| {
                        self.read_xml(&d.rel.join("meta.xml"))
                            .and_then(|b| xml::meta(&b))
                            .and_then(|m| m.email)
                    })
                })
                .or_else(|| {
                    acct.dirs.iter().rev().find_map(|d| {
                        self.read_xml(&d.rel.join("ldap.xml"))
                            .and_then(|b| xml::ldap_value(&b, "mail"))
                    })
                })
                .unwrap_or_else(|| id.clone());
            wanted.push((id.clone(), name, newest));
        }
        let mut groups: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for (id, name, newest) in &wanted {
            groups
                .entry(name.to_lowercase())
                .or_default()
                .push((id.clone(), *newest));
        }
        for (id, name, _) in wanted {
            let group = &groups[&name.to_lowercase()];
            let keeper = if group.len() == 1 {
                id.clone()
            } else if let Some(k) = by_addr
                .get(&name.to_lowercase())
                .filter(|k| group.iter().any(|(g, _)| g == *k))
            {
                k.to_string()
            } else {
                group
                    .iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|g| g.0.clone())
                    .unwrap_or_default()
            };
            let shown = if keeper == id {
                name
            } else {
                format!("{name}~{id}")
            };
            if let Some(a) = scan.accounts.get_mut(&id) {
                a.name = shown;
            }
        }
    }

    /// Shared copies of every session, by digest (`None`: the index could
    /// not be made, and no shared copy is used).
    fn shared(&self, scan: &Scan) -> Option<Arc<SharedIndex>> {
        scan.shared
            .get_or_init(|| match self.index_shared(scan) {
                Ok(ix) => Some(Arc::new(ix)),
                Err(e) => {
                    log::error!("indexing shared blobs: {e:#}");
                    None
                }
            })
            .clone()
    }

    fn index_shared(&self, scan: &Scan) -> Result<SharedIndex> {
        let ix = SharedIndex::new()?;
        let mut problems = Vec::new();
        for (ord, s) in scan.sessions.iter().enumerate() {
            let mut batch = Vec::new();
            let rel = s.rel.join("shared_blobs");
            blobs::walk(&self.dir, &rel, &mut problems, &mut |name, copy, len| {
                if let Some(d) = blobs::shared_digest(name) {
                    batch.push((d, ord as i64, blobs::encode(&[copy]), len));
                }
            });
            ix.add_all(&batch)?;
        }
        for p in problems {
            log::warn!("{p}");
        }
        Ok(ix)
    }

    /// The account's signature: every file it is read from (its
    /// directories in every session, accounts.xml, every shared_blobs/).
    fn signature(&self, scan: &Scan, acct: &ScanAccount) -> String {
        let mut sig = Signature::default();
        sig.add(scan.accounts_xml_sig.as_bytes());
        sig.add(scan.shared_sig.as_bytes());
        for d in &acct.dirs {
            sig.add(d.rel.as_os_str().as_encoded_bytes());
            sig.tree(&self.dir, &d.rel, 0);
        }
        sig.finish()
    }

    /// The copy of a locator to serve: the first intact one (remembered),
    /// else the first that opens (the newest bad copy), else the first.
    fn choose(&self, blob: &BlobRef) -> Copy {
        let copies = blobs::decode(&blob.locator);
        if copies.len() <= 1 {
            return copies
                .into_iter()
                .next()
                .unwrap_or_else(|| Copy::Missing(blob.locator.clone()));
        }
        if let Some(&i) = self.chosen.lock().unwrap().get(&blob.locator) {
            if let Some(c) = copies.get(i) {
                return c.clone();
            }
        }
        let digest = blob.digest.as_deref();
        let pick = copies
            .iter()
            .position(|c| blobs::is_intact(&self.dir, c, digest))
            .or_else(|| {
                copies
                    .iter()
                    .position(|c| blobs::open_stored(&self.dir, c).is_ok())
            })
            .unwrap_or(0);
        self.chosen.lock().unwrap().put(blob.locator.clone(), pick);
        copies[pick].clone()
    }

    /// Read one account into `sink` through a staging database.
    fn read_into(&self, key: &str, sink: &mut dyn FnMut(Item)) -> Result<Account> {
        let scan = self.scan();
        let Some(acct) = scan.accounts.get(key) else {
            bail!("no account {key:?} in {}", self.root.display());
        };
        let mut account = Account {
            key: key.to_string(),
            name: acct.name.clone(),
            status: "unknown".into(),
            ..Account::default()
        };
        if let Some(st) = acct.dirs.iter().rev().find_map(|d| {
            self.read_xml(&d.rel.join("ldap.xml"))
                .and_then(|b| xml::ldap_value(&b, "zimbraAccountStatus"))
        }) {
            account.status = st.to_lowercase();
        }
        let mut staging = Staging::new()?;
        let snaps = self.load_snapshots(&scan, acct, &mut staging, &mut account.problems)?;
        for d in &acct.dirs {
            let rel = d.rel.join("blobs");
            let mut problems = Vec::new();
            let mut res = Ok(());
            blobs::walk(&self.dir, &rel, &mut problems, &mut |name, copy, len| {
                let base = name.rsplit('/').next().unwrap_or(name);
                if let Some((item, modc)) = blobs::parse_blob_name(base) {
                    if res.is_ok() {
                        res = staging.add_copy(
                            item,
                            modc,
                            d.session as i64,
                            &blobs::encode(&[copy]),
                            len,
                        );
                    }
                }
            });
            res?;
            account.problems.extend(problems);
        }
        let shared = self.shared(&scan);
        let shared = shared.as_deref();
        let newest = acct.dirs.last().map(|d| d.rel.clone()).unwrap_or_default();
        let mut broken = 0usize;
        staging.for_each_item(&mut |id, rows, bad| {
            if let Some(why) = bad {
                broken += 1;
                sink(Item {
                    id,
                    label: id.to_string(),
                    history_key: id.to_string(),
                    states: Vec::new(),
                    error: Some(format!("only bad rows: {why}")),
                });
                return Ok(());
            }
            let states = item_states(&rows, &snaps, &mut |row| {
                blob_ref(&staging, shared, &newest, row)
            })?;
            if !states.is_empty() {
                sink(Item {
                    id,
                    label: id.to_string(),
                    history_key: id.to_string(),
                    states,
                    error: None,
                });
            }
            Ok(())
        })?;
        if broken > 0 {
            account
                .problems
                .push(format!("{broken} item(s) with only malformed rows"));
        }
        Ok(account)
    }

    /// Stage every snapshot of the account; the snapshots in time order.
    fn load_snapshots(
        &self,
        scan: &Scan,
        acct: &ScanAccount,
        staging: &mut Staging,
        problems: &mut Vec<String>,
    ) -> Result<Vec<Snap>> {
        let mut snaps: Vec<Snap> = Vec::new();
        for (n, d) in acct.dirs.iter().enumerate() {
            let instant = scan.sessions[d.session].instant;
            // Of two sessions with one instant, the later one wins.
            if acct.dirs[n + 1..]
                .iter()
                .any(|o| scan.sessions[o.session].instant == instant)
            {
                continue;
            }
            let db = d.rel.join("db");
            let dat = ["mail_item.dat", "mail_item.csv"]
                .iter()
                .map(|f| db.join(f))
                .find(|p| self.dir.stat(p).is_ok());
            let Some(dat) = dat else { continue };
            let columns = self
                .read_xml(&db.join("db_schema.xml"))
                .and_then(|b| xml::columns(&b))
                .unwrap_or_else(|| {
                    staging::DEFAULT_COLUMNS
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                });
            let mailbox = self
                .read_xml(&d.rel.join("meta.xml"))
                .and_then(|b| xml::meta(&b))
                .and_then(|m| m.mailbox_id);
            let snap = n as i64;
            match staging.load(&self.dir, &dat, &columns, mailbox, snap) {
                Ok(Some(loaded)) => {
                    problems.extend(loaded.problems);
                    snaps.push(Snap {
                        id: snap,
                        start: instant,
                        damaged: loaded.bad > 0,
                    });
                }
                Ok(None) => problems.push(format!(
                    "{}: the schema has no id or type column: no snapshot",
                    self.dir.display_path(&dat).display()
                )),
                Err(e) => problems.push(format!("{e:#}: no snapshot")),
            }
        }
        Ok(snaps)
    }
}

/// One snapshot of an account.
#[derive(Clone, Copy, Debug)]
pub struct Snap {
    id: i64,
    start: Millis,
    damaged: bool,
}

fn find_account_dirs(
    root: &BackupRoot,
    rel: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    problems: &mut Vec<String>,
) {
    let Ok(mut entries) = root.read_dir(rel) else {
        return;
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let p = rel.join(&e.name);
        match e.kind {
            EntryKind::Dir => {
                if root.is_file(p.join("meta.xml"))
                    || root.is_file(p.join("ldap.xml"))
                    || root.is_dir(p.join("db"))
                {
                    out.push(p);
                } else if depth + 1 < ACCOUNT_DEPTH {
                    find_account_dirs(root, &p, depth + 1, out, problems);
                }
            }
            EntryKind::Symlink => problems.push(format!(
                "not a directory: {} (a symbolic link, not followed)",
                root.display_path(&p).display()
            )),
            _ => {}
        }
    }
}

fn kind_of(t: i64) -> Option<ItemKind> {
    Some(match t {
        1 => ItemKind::Folder,
        5 => ItemKind::Message,
        6 => ItemKind::Contact,
        8 => ItemKind::Document,
        11 => ItemKind::Appointment,
        15 => ItemKind::Task,
        _ => return None,
    })
}

/// The states of one item from its rows (in snapshot order).
fn item_states(
    rows: &[Row],
    snaps: &[Snap],
    blob: &mut dyn FnMut(&Row) -> Result<Option<BlobRef>>,
) -> Result<Vec<ItemState>> {
    let mut out: Vec<ItemState> = Vec::new();
    let mut prev: Option<&Row> = None;
    let mut present = false;
    for s in snaps {
        match rows.iter().find(|r| r.snap == s.id) {
            Some(row) => {
                let Some(kind) = kind_of(row.kind) else {
                    continue;
                };
                // The roots are no folders of their own.
                if kind == ItemKind::Folder && (row.id == 1 || row.id == 11) {
                    return Ok(Vec::new());
                }
                let changed =
                    !present || prev.is_none_or(|p| p.kind != row.kind || p.shown() != row.shown());
                if changed {
                    out.push(state_of(row, kind, s.start, blob)?);
                }
                prev = Some(row);
                present = true;
            }
            None if present && !s.damaged => {
                let p = prev.expect("present has a row");
                out.push(ItemState {
                    start: s.start,
                    deleted: true,
                    kind: kind_of(p.kind),
                    folder_id: p.folder,
                    ..ItemState::default()
                });
                present = false;
            }
            None => {}
        }
    }
    Ok(out)
}

fn state_of(
    row: &Row,
    kind: ItemKind,
    start: Millis,
    blob: &mut dyn FnMut(&Row) -> Result<Option<BlobRef>>,
) -> Result<ItemState> {
    let mut s = ItemState {
        start,
        kind: Some(kind),
        folder_id: row.folder,
        name: row.name.clone(),
        ..ItemState::default()
    };
    if kind == ItemKind::Folder {
        return Ok(s);
    }
    s.subject = row.subject.clone();
    s.date = row.date.map(staging::date_ms);
    s.size = row.size.and_then(|v| u64::try_from(v).ok());
    let mut bits = row.flags as u64 & !(1 << 9);
    if row.unread {
        bits |= 1 << 9;
    }
    s.flags = super::zextras::flag_words(bits);
    s.tags = row.tags.clone();
    if kind == ItemKind::Contact {
        s.fields = row.metadata.as_deref().and_then(contact::fields);
    } else {
        s.blob = blob(row)?;
    }
    Ok(s)
}

/// The locator of a row's blob: every copy that exists, in the order they
/// are tried, or where one was expected.
fn blob_ref(
    staging: &Staging,
    shared: Option<&SharedIndex>,
    newest: &Path,
    row: &Row,
) -> Result<Option<BlobRef>> {
    let size = row.size.unwrap_or(0);
    let placeholder = |len: u64| len == 0 && size > 0;
    let mut lines: Vec<String> = Vec::new();
    if let Some(modc) = row.modc {
        for (loc, len) in staging.copies(row.id, modc)? {
            if !placeholder(len) {
                lines.push(loc);
            }
        }
    }
    let digest = row.digest.as_deref().map(blobs::normalize_digest);
    if let (Some(d), Some(shared)) = (digest.as_deref(), shared) {
        for (loc, len) in shared.get(d)? {
            if !placeholder(len) && !lines.contains(&loc) {
                lines.push(loc);
            }
        }
    }
    if lines.is_empty() {
        let expect = newest.join("blobs").join(format!(
            "{}-{}.msg",
            row.id,
            row.modc
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into())
        ));
        lines.push(blobs::encode(&[Copy::Missing(
            expect.to_string_lossy().into_owned(),
        )]));
    }
    Ok(Some(BlobRef {
        locator: lines.join("\n"),
        digest: row.digest.clone(),
    }))
}

/// A commutative digest of the files an account is read from.
#[derive(Default)]
struct Signature {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Signature {
    fn add(&mut self, bytes: &[u8]) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h.rotate_left(17);
    }

    /// Every entry below `rel`, with size, mtime and inode; links counted,
    /// never followed.
    fn tree(&mut self, root: &BackupRoot, rel: &Path, depth: usize) {
        let Ok(entries) = root.read_dir(rel) else {
            return;
        };
        for e in entries {
            let p = rel.join(&e.name);
            if let Ok(st) = root.stat(&p) {
                let mut b = p.as_os_str().as_encoded_bytes().to_vec();
                b.extend_from_slice(&st.st_size.to_le_bytes());
                b.extend_from_slice(&st.st_mtime.to_le_bytes());
                b.extend_from_slice(&(st.st_mtime_nsec as i64).to_le_bytes());
                b.extend_from_slice(&st.st_ino.to_le_bytes());
                self.add(&b);
            }
            if e.kind == EntryKind::Dir && depth < 8 {
                self.tree(root, &p, depth + 1);
            }
        }
    }

    fn finish(&self) -> String {
        format!("zc1:{}:{:016x}:{:016x}", self.count, self.sum, self.xor)
    }
}

impl BackupReader for ZimbraClassicReader {
    fn format_name(&self) -> &'static str {
        "zimbra-classic"
    }

    fn list_accounts(&self) -> Result<Vec<AccountEntry>> {
        // A fresh listing sees new sessions and copies.
        *self.scan.lock().unwrap() = None;
        self.chosen.lock().unwrap().clear();
        let scan = self.scan();
        Ok(scan
            .accounts
            .iter()
            .map(|(key, acct)| AccountEntry {
                key: key.clone(),
                signature: self.signature(&scan, acct),
            })
            .collect())
    }

    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> Result<Account> {
        self.read_into(key, sink)
    }

    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        let copy = self.choose(blob);
        blobs::open_verified(&self.dir, &copy, blob.digest.as_deref())
    }

    fn blob_len(&self, blob: &BlobRef, claimed: Option<u64>) -> io::Result<u64> {
        let copy = self.choose(blob);
        blobs::plain_len(&self.dir, &copy, claimed)
    }

    fn blob_path(&self, blob: &BlobRef) -> Option<PathBuf> {
        Some(self.choose(blob).display(&self.root))
    }

    fn problems(&self) -> Vec<String> {
        self.scan().problems.clone()
    }

    fn notes(&self) -> Vec<String> {
        self.scan().redologs.iter().map(|r| r.describe()).collect()
    }

    fn all_blobs(&self) -> Option<Vec<BlobRef>> {
        // The locators the rows point at, and every stored copy none of
        // them lists (an orphan).
        let scan = self.scan();
        let mut refd: std::collections::HashSet<String> = Default::default();
        let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
        for key in scan.accounts.keys() {
            let _ = self.read_into(key, &mut |item| {
                for s in item.states {
                    if let Some(b) = s.blob {
                        for l in b.locator.lines() {
                            refd.insert(l.to_string());
                        }
                        out.insert(b.locator, b.digest);
                    }
                }
            });
        }
        let mut problems = Vec::new();
        // A 0-byte account copy is a placeholder for a shared blob, no blob.
        let mut stored = |name: &str, copy: Copy, len: u64, shared: bool| {
            let loc = blobs::encode(&[copy]);
            if (shared || len > 0) && !refd.contains(&loc) {
                let base = name.rsplit('/').next().unwrap_or(name);
                let shown = if shared {
                    blobs::shared_digest(name)
                } else {
                    Some(base.to_string())
                };
                out.entry(loc).or_insert(shown);
            }
        };
        for (_, acct) in scan.accounts.iter() {
            for d in &acct.dirs {
                blobs::walk(
                    &self.dir,
                    &d.rel.join("blobs"),
                    &mut problems,
                    &mut |n, c, l| stored(n, c, l, false),
                );
            }
        }
        for s in &scan.sessions {
            blobs::walk(
                &self.dir,
                &s.rel.join("shared_blobs"),
                &mut problems,
                &mut |n, c, l| stored(n, c, l, true),
            );
        }
        Some(
            out.into_iter()
                .map(|(locator, digest)| BlobRef { locator, digest })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("full-20070712.155951.123"),
            Some((true, 1_184_255_991_123))
        );
        assert!(parse_label("incr-20070712.155951.123.tmp").is_none());
        assert!(parse_label("full-2007071.155951.123").is_none());
    }
}
