//! A deterministic generator of Zextras/Carbonio backup paths, for the README
//! sample, integration-test fixtures and the benchmark.
//!
//! Nothing here asks the OS for randomness: a seeded splitmix64 ([`Rng`])
//! drives every choice, and gzip headers carry no time stamp, so the same
//! call writes byte-identical trees.
//!
//! - [`write_sample`]: a small, hand-written backup (three accounts, July 2013)
//!   with the facts an integration test needs returned in [`SampleInfo`].
//! - [`write_tolerance_fixture`]: one account whose items use every tolerance
//!   rule of `docs/formats/zextras.md`, with the expected reading.
//! - [`write_generated`]: many accounts and items of realistic sizes.
//! - [`run_cli`]: `sample DIR`, `tolerance DIR`, `generated DIR --accounts N
//!   --items N --seed S [--big-folder N]`, for a hidden CLI subcommand.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::format::zextras::{
    blob_digest, drive_item_id, flag_words, parse_flags, parse_timestamp_str, DRIVE_FOLDER,
};
use crate::model::{ItemId, ItemKind, Millis};

// ---------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, seeded, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Writing a backup path

/// Writes the files of a backup path: account_info, item metadata and
/// deduplicated gzip blobs named by their digest.
struct BackupWriter {
    root: PathBuf,
    blobs: HashSet<String>,
    made_dirs: HashSet<PathBuf>,
    level: Compression,
    gz_buf: Vec<u8>,
    blob_count: usize,
    blob_bytes: u64,
    /// When set, new blobs are compressed and written by another thread.
    offload: Option<mpsc::SyncSender<(String, Vec<u8>)>>,
}

/// Append one gzip member holding `data` to `out`, with a reused deflate
/// state. The header has no name and no time stamp (deterministic output).
fn gzip_member(z: &mut flate2::Compress, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    z.reset();
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let start_in = z.total_in();
    loop {
        out.reserve(data.len() / 2 + 1024);
        let used = (z.total_in() - start_in) as usize;
        let st = z.compress_vec(&data[used..], out, flate2::FlushCompress::Finish)?;
        if st == flate2::Status::StreamEnd {
            break;
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

/// Compress and write blobs handed over by [`BackupWriter::blob_owned`].
fn blob_worker(
    root: &Path,
    level: Compression,
    rx: mpsc::Receiver<(String, Vec<u8>)>,
) -> Result<()> {
    let mut made = HashSet::new();
    let mut buf = Vec::new();
    // One deflate state reused for every blob: setting one up per blob
    // (allocating and clearing its tables) costs more than compressing a
    // small message.
    let mut z = flate2::Compress::new(level, false);
    for (digest, data) in rx {
        let d = root.join("items").join(&digest[..2]);
        if made.insert(d.clone()) {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        buf.clear();
        gzip_member(&mut z, &data, &mut buf)?;
        let p = d.join(&digest);
        fs::write(&p, &buf).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

impl BackupWriter {
    fn new(root: &Path, level: Compression) -> Result<BackupWriter> {
        fs::create_dir_all(root.join("accounts"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        fs::create_dir_all(root.join("items"))?;
        Ok(BackupWriter {
            root: root.to_path_buf(),
            blobs: HashSet::new(),
            made_dirs: HashSet::new(),
            level,
            gz_buf: Vec::new(),
            blob_count: 0,
            blob_bytes: 0,
            offload: None,
        })
    }

    fn dir(&mut self, p: PathBuf) -> Result<PathBuf> {
        if !self.made_dirs.contains(&p) {
            fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
            self.made_dirs.insert(p.clone());
        }
        Ok(p)
    }

    fn account_dir(&self, key: &str) -> PathBuf {
        self.root.join("accounts").join(key)
    }

    fn account_info(&mut self, key: &str, info: &Value) -> Result<()> {
        let d = self.dir(self.account_dir(key))?;
        fs::write(d.join("account_info"), serde_json::to_vec_pretty(info)?)?;
        Ok(())
    }

    /// Write raw metadata bytes for item `id` (at `items/NN/id`).
    fn item_raw(&mut self, key: &str, id: ItemId, bytes: &[u8]) -> Result<()> {
        let nn = format!("{:02}", id.rem_euclid(100));
        let d = self.dir(self.account_dir(key).join("items").join(nn))?;
        fs::write(d.join(id.to_string()), bytes)?;
        Ok(())
    }

    fn item(&mut self, key: &str, id: ItemId, states: &[Value]) -> Result<()> {
        let bytes = serde_json::to_vec(states)?;
        self.item_raw(key, id, &bytes)
    }

    fn gzip(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut buf = std::mem::take(&mut self.gz_buf);
        buf.clear();
        let mut e = GzEncoder::new(buf, self.level);
        e.write_all(data)?;
        Ok(e.finish()?)
    }

    /// Store `stored` as the blob file `items/<dir>/<digest>`.
    fn blob_file(&mut self, dir: &str, digest: &str, stored: &[u8]) -> Result<()> {
        let d = self.dir(self.root.join("items").join(dir))?;
        fs::write(d.join(digest), stored)?;
        Ok(())
    }

    /// Store `data` gzip-compressed under its digest, once; returns the digest.
    fn blob(&mut self, data: &[u8]) -> Result<String> {
        let digest = blob_digest(data);
        if self.blobs.insert(digest.clone()) {
            let gz = self.gzip(data)?;
            self.blob_file(&digest[..2], &digest, &gz)?;
            self.gz_buf = gz;
            self.blob_count += 1;
            self.blob_bytes += data.len() as u64;
        }
        Ok(digest)
    }

    /// Like [`BackupWriter::blob`], but hands the bytes to the blob worker
    /// when there is one.
    fn blob_owned(&mut self, data: Vec<u8>) -> Result<String> {
        let Some(tx) = &self.offload else {
            return self.blob(&data);
        };
        let digest = blob_digest(&data);
        if self.blobs.insert(digest.clone()) {
            self.blob_count += 1;
            self.blob_bytes += data.len() as u64;
            if tx.send((digest.clone(), data)).is_err() {
                bail!("the blob writer stopped");
            }
        }
        Ok(digest)
    }
}

fn ts(s: &str) -> Millis {
    parse_timestamp_str(s).unwrap_or_else(|| panic!("bad literal timestamp {s}"))
}

fn day_of(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn rfc2822(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc2822())
        .unwrap_or_default()
}

/// A header value, RFC 2047-encoded (UTF-8, base64) when not ASCII.
pub fn encode_header(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Headers of an RFC 5322 message, CRLF line ends, ending with the blank line
/// only when `content_type` is given (the caller writes the body).
fn headers(out: &mut Vec<u8>, from: &str, to: &str, subject: &str, date: Millis, msgid: &str) {
    out.extend_from_slice(
        format!(
            "Message-ID: <{msgid}>\r\nDate: {}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {}\r\nMIME-Version: 1.0\r\n",
            rfc2822(date),
            encode_header(subject)
        )
        .as_bytes(),
    );
}

/// A plain-text RFC 5322 message.
pub fn text_message(
    from: &str,
    to: &str,
    subject: &str,
    date: Millis,
    msgid: &str,
    body: &str,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 512);
    headers(&mut m, from, to, subject, date, msgid);
    m.extend_from_slice(
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    for line in body.lines() {
        m.extend_from_slice(line.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn base64_lines(out: &mut Vec<u8>, data: &[u8]) {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    for chunk in enc.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------------------
// State builders

fn folder_state(start: Millis, parent: ItemId, name: &str) -> Value {
    json!({"type": "folder", "start_date": start, "folder_id": parent, "name": name, "flags": 0})
}

#[allow(clippy::too_many_arguments)]
fn blob_state(
    kind: &str,
    start: Millis,
    folder: ItemId,
    digest: &str,
    size: usize,
    date: Millis,
    flags: u64,
    subject: &str,
    sender: &str,
) -> Value {
    json!({"type": kind, "start_date": start, "folder_id": folder, "digest": digest,
           "size": size, "date": date, "flags": flags, "tags": [], "subject": subject,
           "sender": sender})
}

fn deleted_state(start: Millis, folder: ItemId) -> Value {
    json!({"start_date": start, "deleted": true, "folder_id": folder})
}

/// A copy of `base` with other values for some keys.
fn with(base: &Value, changes: &[(&str, Value)]) -> Value {
    let mut v = base.clone();
    if let Value::Object(m) = &mut v {
        for (k, val) in changes {
            m.insert((*k).to_string(), val.clone());
        }
    }
    v
}

const SYSTEM_FOLDERS: &[(ItemId, ItemId, &str)] = &[
    (1, 11, "USER_ROOT"),
    (2, 1, "Inbox"),
    (3, 1, "Trash"),
    (4, 1, "Junk"),
    (5, 1, "Sent"),
    (6, 1, "Drafts"),
    (7, 1, "Contacts"),
    (8, 11, "Tags"),
    (10, 1, "Calendar"),
    (16, 1, "Briefcase"),
];

// ---------------------------------------------------------------------------
// The README sample

/// An account of the sample.
#[derive(Clone, Debug)]
pub struct SampleAccount {
    /// Directory name under `accounts/` (the reader's key).
    pub key: String,
    pub name: String,
    pub status: String,
    pub deleted_at: Option<Millis>,
    /// Every UTC day (`YYYY-MM-DD`) on which some item or folder of the
    /// account got a new state, sorted.
    pub days: Vec<String>,
}

/// An item of the sample as it is at the end of its recorded life.
#[derive(Clone, Debug)]
pub struct SampleItem {
    /// Account key.
    pub account: String,
    pub id: ItemId,
    pub kind: ItemKind,
    /// Subject (messages, appointments) or name (folders, contacts, documents).
    pub title: String,
    /// Folder of the last state (for a deleted item: the folder before deletion).
    pub folder_id: ItemId,
    /// The last state is a deletion.
    pub deleted: bool,
    /// IMAP words of the last non-deleted state.
    pub flags: Vec<String>,
    pub digest: Option<String>,
    /// The uncompressed blob, when the item has one.
    pub content: Option<Vec<u8>>,
    /// Number of recorded states.
    pub states: usize,
}

/// The item moved Inbox -> Trash -> deleted (the doc's item 339).
#[derive(Clone, Debug)]
pub struct MovedItem {
    pub account: String,
    pub id: ItemId,
    pub subject: String,
    pub arrived: Millis,
    pub moved_to_trash: Millis,
    pub deleted: Millis,
    pub from_folder: ItemId,
    pub to_folder: ItemId,
}

#[derive(Clone, Debug)]
pub struct RenamedFolder {
    pub account: String,
    pub id: ItemId,
    pub parent: ItemId,
    pub old_name: String,
    pub new_name: String,
    pub renamed_at: Millis,
    /// A message inside the renamed folder's child folder (`.../2013`).
    pub nested_item: ItemId,
}

#[derive(Clone, Debug)]
pub struct DeletedFolder {
    pub account: String,
    pub id: ItemId,
    pub name: String,
    pub created: Millis,
    pub deleted_at: Millis,
    /// Items deleted with the folder (at the same instant).
    pub item_ids: Vec<ItemId>,
}

#[derive(Clone, Debug)]
pub struct FlagChange {
    pub account: String,
    pub id: ItemId,
    pub at: Millis,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// What [`write_sample`] wrote, for tests to assert against.
#[derive(Clone, Debug)]
pub struct SampleInfo {
    pub root: PathBuf,
    pub accounts: Vec<SampleAccount>,
    pub items: Vec<SampleItem>,
    pub moved: MovedItem,
    pub renamed: RenamedFolder,
    pub deleted_folder: DeletedFolder,
    /// Unread -> read and flagged.
    pub flag_change: FlagChange,
    /// A blob shared by two accounts: its digest and the (account key, item id)
    /// pairs that use it.
    pub shared_digest: String,
    pub shared_items: Vec<(String, ItemId)>,
    /// (account key, item id) of the appointment, and the exact bytes of its
    /// text/calendar part.
    pub appointment: (String, ItemId),
    pub appointment_ics: Vec<u8>,
    /// (account key, item id) of the `report.pdf` document and of the contact.
    pub document: (String, ItemId),
    pub contact: (String, ItemId),
}

impl SampleInfo {
    pub fn account(&self, name: &str) -> Option<&SampleAccount> {
        self.accounts
            .iter()
            .find(|a| a.name == name || a.key == name)
    }

    pub fn item(&self, account: &str, id: ItemId) -> Option<&SampleItem> {
        self.items
            .iter()
            .find(|i| i.account == account && i.id == id)
    }
}

pub const SAMPLE_JOHN: &str = "4a217bb3-6861-4c9f-80f8-f345ae2897b5";
pub const SAMPLE_ANNA: &str = "9b2c4d6e-1f3a-4b5c-8d7e-9f0a1b2c3d4e";
pub const SAMPLE_OLD: &str = "7d1e3c55-9a0b-4c2d-8e6f-0123456789ab";

/// Account key -> sorted UTC days with changes.
type DaysByAccount = BTreeMap<String, Vec<String>>;

/// Collects items' states in memory, then writes them and derives the facts.
struct SampleBuilder {
    w: BackupWriter,
    /// account key -> item id -> states
    items: BTreeMap<String, BTreeMap<ItemId, Vec<Value>>>,
    contents: HashMap<String, Vec<u8>>,
    msg_counter: u32,
}

impl SampleBuilder {
    fn push(&mut self, acc: &str, id: ItemId, state: Value) {
        self.items
            .entry(acc.to_string())
            .or_default()
            .entry(id)
            .or_default()
            .push(state);
    }

    fn system_folders(&mut self, acc: &str, at: Millis) {
        for (id, parent, name) in SYSTEM_FOLDERS {
            self.push(acc, *id, folder_state(at, *parent, name));
        }
    }

    fn folder(&mut self, acc: &str, id: ItemId, at: Millis, parent: ItemId, name: &str) {
        self.push(acc, id, folder_state(at, parent, name));
    }

    fn store(&mut self, data: Vec<u8>) -> Result<String> {
        let d = self.w.blob(&data)?;
        self.contents.insert(d.clone(), data);
        Ok(d)
    }

    /// A message arriving at `at` in `folder`; returns its first state.
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        acc: &str,
        id: ItemId,
        at: Millis,
        folder: ItemId,
        flags: u64,
        from: &str,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<Value> {
        self.msg_counter += 1;
        let msgid = format!("sample.{}.{id}@example.com", self.msg_counter);
        let data = text_message(from, to, subject, at - 1000, &msgid, body);
        let size = data.len();
        let d = self.store(data)?;
        let st = blob_state(
            "message",
            at,
            folder,
            &d,
            size,
            at - 1000,
            flags,
            subject,
            from,
        );
        self.push(acc, id, st.clone());
        Ok(st)
    }

    /// Write every item; answer the items' facts and each account's days.
    fn finish(mut self) -> Result<(Vec<SampleItem>, DaysByAccount)> {
        let mut out = Vec::new();
        let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (acc, items) in &self.items {
            let mut set = BTreeSet::new();
            for (id, states) in items {
                self.w.item(acc, *id, states)?;
                for s in states {
                    if let Some(t) = s.get("start_date").and_then(Value::as_i64) {
                        set.insert(day_of(t));
                    }
                }
                let last = states.last().cloned().unwrap_or(Value::Null);
                let deleted = last
                    .get("deleted")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let live = states
                    .iter()
                    .rev()
                    .find(|s| !s.get("deleted").and_then(Value::as_bool).unwrap_or(false))
                    .cloned()
                    .unwrap_or(Value::Null);
                let kind = live
                    .get("type")
                    .and_then(crate::format::zextras::parse_kind)
                    .unwrap_or(ItemKind::Hidden);
                let title = live
                    .get("subject")
                    .or_else(|| live.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let digest = live.get("digest").and_then(Value::as_str).map(String::from);
                out.push(SampleItem {
                    account: acc.clone(),
                    id: *id,
                    kind,
                    title,
                    folder_id: last.get("folder_id").and_then(Value::as_i64).unwrap_or(0),
                    deleted,
                    // An absent `flags` is 0: read.
                    flags: flag_words(live.get("flags").map(parse_flags).unwrap_or(0)),
                    content: digest.as_ref().and_then(|d| self.contents.get(d).cloned()),
                    digest,
                    states: states.len(),
                });
            }
            days.insert(acc.clone(), set.into_iter().collect());
        }
        Ok((out, days))
    }
}

const ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailbackfs//synth//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:weekly-meeting-450@example.com\r\nDTSTAMP:20130711T080000Z\r\nDTSTART:20130715T080000Z\r\nDTEND:20130715T090000Z\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\nSUMMARY:Weekly meeting\r\nORGANIZER:mailto:anna@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:john@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

fn appointment_blob(date: Millis) -> Vec<u8> {
    let mut m = Vec::new();
    headers(
        &mut m,
        "Anna Lind <anna@example.com>",
        "john@example.com",
        "Weekly meeting",
        date,
        "appt.450@example.com",
    );
    m.extend_from_slice(
        b"Content-Type: multipart/alternative; boundary=\"=_appt_450\"\r\n\r\n\
--=_appt_450\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWeekly meeting, Mondays 08:00 UTC.\r\n\
--=_appt_450\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\
Content-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.extend_from_slice(ICS.as_bytes());
    m.extend_from_slice(b"--=_appt_450--\r\n");
    m
}

fn fake_pdf() -> Vec<u8> {
    let mut v =
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            .to_vec();
    for i in 0..200u32 {
        v.extend_from_slice(format!("% quarterly report line {i}\n").as_bytes());
    }
    v.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    v
}

/// Write the small README sample backup into `dir` (created if needed).
pub fn write_sample(dir: &Path) -> Result<SampleInfo> {
    let mut b = SampleBuilder {
        w: BackupWriter::new(dir, Compression::default())?,
        items: BTreeMap::new(),
        contents: HashMap::new(),
        msg_counter: 0,
    };
    let (john, anna, old) = (SAMPLE_JOHN, SAMPLE_ANNA, SAMPLE_OLD);
    let john_addr = "John Smith <john@example.com>";
    let anna_addr = "Anna Lind <anna@example.com>";

    b.w.account_info(
        john,
        &json!({"id": john, "name": "john@example.com", "status": "active",
                "aliases": ["j.smith@example.com"],
                "attrs": {"displayName": "John Smith", "zimbraCOSId": "default"}}),
    )?;
    b.w.account_info(
        anna,
        &json!({"id": anna, "name": "anna@example.com", "status": "active", "aliases": [],
                "attrs": {"displayName": "Anna Lind"}}),
    )?;
    let old_deleted = ts("2013-07-16T08:00:00Z");
    b.w.account_info(
        old,
        &json!({"id": old, "name": "old@example.com", "status": "deleted",
                "deleted_date": old_deleted, "aliases": []}),
    )?;

    // --- john ---
    let d10 = ts("2013-07-10T09:00:00Z");
    b.system_folders(john, d10);
    b.push(
        john,
        600,
        json!({"type": "tag", "start_date": d10, "folder_id": 8, "name": "Important"}),
    );
    let projects_created = ts("2013-07-10T10:00:00Z");
    b.folder(john, 257, projects_created, 2, "Projects");
    b.folder(john, 258, projects_created + 60_000, 257, "2013");
    let old_stuff_created = ts("2013-07-10T10:30:00Z");
    b.folder(john, 259, old_stuff_created, 1, "Old stuff");

    let welcome = b.message(
        john,
        300,
        ts("2013-07-10T09:05:00Z"),
        2,
        512,
        "IT <it@example.com>",
        john_addr,
        "Welcome to example.com",
        "Hello John,\n\nyour mailbox is ready.\n\n-- \nIT",
    )?;
    b.push(
        john,
        300,
        with(
            &welcome,
            &[
                ("start_date", json!(ts("2013-07-11T08:00:00Z"))),
                ("flags", json!(0)),
            ],
        ),
    );

    let flag_before = ts("2013-07-11T10:00:00Z");
    let reunion = b.message(
        john,
        301,
        flag_before,
        2,
        512,
        anna_addr,
        john_addr,
        "Réunion à 10h",
        "Bonjour John,\n\nla réunion est déplacée à 10h.\n\nAnna",
    )?;
    let flag_at = ts("2013-07-12T09:00:00Z");
    b.push(
        john,
        301,
        with(
            &reunion,
            &[("start_date", json!(flag_at)), ("flags", json!(32))],
        ),
    );

    b.message(
        john,
        302,
        ts("2013-07-11T11:00:00Z"),
        258,
        0,
        "Tanaka <tanaka@example.jp>",
        john_addr,
        "日本語のテスト",
        "これはテストです。\nよろしくお願いします。",
    )?;
    b.message(
        john,
        303,
        ts("2013-07-11T12:00:00Z"),
        257,
        0,
        anna_addr,
        john_addr,
        "Party \u{1f389} tonight",
        "Bring snacks \u{1f355}!",
    )?;
    b.message(
        john,
        304,
        ts("2013-07-11T13:00:00Z"),
        5,
        0,
        john_addr,
        "Finance <finance@example.com>",
        "Q3/Q4 budget",
        "Attached are the Q3/Q4 numbers.",
    )?;
    b.message(
        john,
        305,
        ts("2013-07-10T11:00:00Z"),
        259,
        0,
        "Archive <archive@example.com>",
        john_addr,
        "Old newsletter",
        "Nothing to see here.",
    )?;
    let news = text_message(
        "News <news@example.com>",
        "staff@example.com",
        "Example staff newsletter, July",
        ts("2013-07-12T07:00:00Z"),
        "newsletter.2013-07@example.com",
        "Dear all,\n\nthe July newsletter.\n\nThe team",
    );
    let news_len = news.len();
    let news_digest = b.store(news)?;
    let news_at = ts("2013-07-12T07:00:05Z");
    b.push(
        john,
        306,
        blob_state(
            "message",
            news_at,
            2,
            &news_digest,
            news_len,
            news_at - 5000,
            512,
            "Example staff newsletter, July",
            "news@example.com",
        ),
    );
    b.message(
        john,
        307,
        ts("2013-07-15T16:00:00Z"),
        6,
        64,
        john_addr,
        anna_addr,
        "Draft: holiday plans",
        "Thinking about August...",
    )?;
    b.message(
        john,
        308,
        ts("2013-07-12T10:00:00Z"),
        2,
        4 | 8,
        anna_addr,
        john_addr,
        "Re: contract",
        "Thanks, forwarded to legal.",
    )?;

    // The doc's item 339, same timestamps.
    let (arr, trash, del) = (1373639744000, 1373641321000, 1373641508000);
    let subj339 = "Service mailboxd started on test.example.com";
    let s339 = b.message(
        john,
        339,
        arr,
        2,
        512,
        "zimbra@test.example.com",
        "admin@test.example.com",
        subj339,
        "Service mailboxd started on test.example.com at 14:35.",
    )?;
    b.push(
        john,
        339,
        with(
            &s339,
            &[
                ("start_date", json!(trash)),
                ("folder_id", json!(3)),
                ("flags", json!(0)),
            ],
        ),
    );
    b.push(john, 339, deleted_state(del, 3));

    // Rename and folder deletion on a later day.
    let renamed_at = ts("2013-07-15T09:30:00Z");
    b.folder(john, 257, renamed_at, 2, "Projets clients");
    let folder_deleted = ts("2013-07-15T12:00:00Z");
    b.push(john, 259, deleted_state(folder_deleted, 1));
    b.push(john, 305, deleted_state(folder_deleted, 259));

    // Contact, appointment, document.
    b.push(
        john,
        400,
        json!({"type": "contact", "start_date": ts("2013-07-10T12:00:00Z"), "folder_id": 7,
               "name": "Anna Lind", "flags": 0, "tags": [],
               "fields": {"firstName": "Anna", "lastName": "Lind", "email": "anna@example.com",
                          "company": "Example Ltd", "mobilePhone": "+46 70 123 45 67"}}),
    );
    let appt_at = ts("2013-07-11T08:00:00Z");
    let appt = appointment_blob(appt_at);
    let appt_len = appt.len();
    let appt_digest = b.store(appt)?;
    b.push(
        john,
        450,
        blob_state(
            "appointment",
            appt_at,
            10,
            &appt_digest,
            appt_len,
            appt_at,
            0,
            "Weekly meeting",
            "anna@example.com",
        ),
    );
    let pdf = fake_pdf();
    let pdf_len = pdf.len();
    let pdf_digest = b.store(pdf)?;
    let doc_at = ts("2013-07-12T11:00:00Z");
    b.push(
        john,
        500,
        json!({"type": "document", "start_date": doc_at, "folder_id": 16, "name": "report.pdf",
               "digest": pdf_digest, "size": pdf_len, "date": doc_at, "flags": 0, "tags": []}),
    );

    // --- anna ---
    b.system_folders(anna, d10);
    b.message(
        anna,
        257,
        ts("2013-07-10T09:30:00Z"),
        2,
        0,
        john_addr,
        anna_addr,
        "Hello Anna",
        "Hi!",
    )?;
    b.push(
        anna,
        258,
        blob_state(
            "message",
            news_at,
            2,
            &news_digest,
            news_len,
            news_at - 5000,
            0,
            "Example staff newsletter, July",
            "news@example.com",
        ),
    );
    b.message(
        anna,
        259,
        ts("2013-07-11T14:00:00Z"),
        5,
        0,
        anna_addr,
        john_addr,
        "Réunion à 10h",
        "Bonjour John,\n\nla réunion est déplacée à 10h.\n\nAnna",
    )?;

    // --- old (deleted account) ---
    b.system_folders(old, ts("2013-07-10T08:00:00Z"));
    b.message(
        old,
        257,
        ts("2013-07-10T08:30:00Z"),
        2,
        0,
        "HR <hr@example.com>",
        "Old Timer <old@example.com>",
        "Farewell",
        "All the best!",
    )?;
    b.message(
        old,
        258,
        ts("2013-07-12T08:30:00Z"),
        2,
        512,
        "HR <hr@example.com>",
        "Old Timer <old@example.com>",
        "Return your badge",
        "Please return your badge.",
    )?;

    let root = dir.to_path_buf();
    let (items, days) = b.finish()?;
    let acc = |key: &str, name: &str, status: &str, deleted_at| SampleAccount {
        key: key.to_string(),
        name: name.to_string(),
        status: status.to_string(),
        deleted_at,
        days: days.get(key).cloned().unwrap_or_default(),
    };
    Ok(SampleInfo {
        root,
        accounts: vec![
            acc(john, "john@example.com", "active", None),
            acc(anna, "anna@example.com", "active", None),
            acc(old, "old@example.com", "deleted", Some(old_deleted)),
        ],
        items,
        moved: MovedItem {
            account: john.into(),
            id: 339,
            subject: subj339.into(),
            arrived: arr,
            moved_to_trash: trash,
            deleted: del,
            from_folder: 2,
            to_folder: 3,
        },
        renamed: RenamedFolder {
            account: john.into(),
            id: 257,
            parent: 2,
            old_name: "Projects".into(),
            new_name: "Projets clients".into(),
            renamed_at,
            nested_item: 302,
        },
        deleted_folder: DeletedFolder {
            account: john.into(),
            id: 259,
            name: "Old stuff".into(),
            created: old_stuff_created,
            deleted_at: folder_deleted,
            item_ids: vec![305],
        },
        flag_change: FlagChange {
            account: john.into(),
            id: 301,
            at: flag_at,
            before: vec![],
            after: vec!["\\Seen".into(), "\\Flagged".into()],
        },
        shared_digest: news_digest,
        shared_items: vec![(john.into(), 306), (anna.into(), 258)],
        appointment: (john.into(), 450),
        appointment_ics: ICS.as_bytes().to_vec(),
        document: (john.into(), 500),
        contact: (john.into(), 400),
    })
}

// ---------------------------------------------------------------------------
// The tolerance fixture

/// How the reader must see one item of the tolerance fixture, in its last
/// state (for a deleted item: its last state is the deletion).
#[derive(Clone, Debug)]
pub struct ExpectedItem {
    pub id: ItemId,
    /// What the item exercises.
    pub case: &'static str,
    /// The metadata cannot be parsed: `Item::error` set, no states.
    pub broken: bool,
    pub kind: Option<ItemKind>,
    pub states: usize,
    /// Folder of the last state.
    pub folder_id: Option<ItemId>,
    pub deleted: bool,
    /// IMAP words of the last state.
    pub flags: Vec<String>,
    pub subject: Option<String>,
    pub name: Option<String>,
    /// Start of the first and of the last state.
    pub first_start: Option<Millis>,
    pub last_start: Option<Millis>,
    /// Normalised digest of the last state with a blob.
    pub digest: Option<String>,
    /// The bytes `open_blob` must hand out, without error.
    pub content: Option<Vec<u8>>,
}

/// What [`write_tolerance_fixture`] wrote.
#[derive(Clone, Debug)]
pub struct ToleranceInfo {
    pub root: PathBuf,
    /// The only account; it has no `account_info`, so its name is this key.
    pub account: String,
    pub items: Vec<ExpectedItem>,
    /// Paths under `items/NN/` that must be ignored.
    pub ignored: Vec<PathBuf>,
}

pub const TOLERANCE_ACCOUNT: &str = "0e6a2f0c-7d3b-4c1e-9a55-6b1f2e3d4c5b";

/// Write a backup whose items use every tolerance variant of the format doc.
pub fn write_tolerance_fixture(dir: &Path) -> Result<ToleranceInfo> {
    let mut w = BackupWriter::new(dir, Compression::fast())?;
    let acc = TOLERANCE_ACCOUNT;
    fs::create_dir_all(w.account_dir(acc).join("items"))?;
    let mut exp: Vec<ExpectedItem> = Vec::new();
    let t0 = ts("2013-07-12T00:00:00Z");
    let e = |id, case| ExpectedItem {
        id,
        case,
        broken: false,
        kind: Some(ItemKind::Message),
        states: 1,
        folder_id: Some(2),
        deleted: false,
        // No `flags` key: 0, read.
        flags: vec!["\\Seen".to_string()],
        subject: None,
        name: None,
        first_start: None,
        last_start: None,
        digest: None,
        content: None,
    };
    let seen = || vec!["\\Seen".to_string()];

    // Folders, with key spellings of their own.
    w.item_raw(
        acc,
        1,
        br#"[{"Type":"folder","StartDate":1373587200000,"FolderId":11,"Name":"USER_ROOT"}]"#,
    )?;
    w.item_raw(
        acc,
        2,
        br#"[{"TYPE":1,"START-DATE":"2013-07-12T00:00:00Z","FOLDER-ID":"1","NAME":"Inbox"}]"#,
    )?;
    w.item_raw(
        acc,
        3,
        br#"{"type":"Folder","start_date":"12/07/2013 00:00:00","folder_id":1,"name":"Trash"}"#,
    )?;
    for (id, name) in [(1, "USER_ROOT"), (2, "Inbox"), (3, "Trash")] {
        let mut x = e(id, "folder with odd key spellings");
        x.kind = Some(ItemKind::Folder);
        x.folder_id = Some(if id == 1 { 11 } else { 1 });
        x.name = Some(name.into());
        x.first_start = Some(t0);
        x.last_start = Some(t0);
        exp.push(x);
    }

    let mut counter = 0u32;
    let mut msg = |subject: &str| {
        counter += 1;
        text_message(
            "Tolerance <tol@example.com>",
            "x@example.com",
            subject,
            t0,
            &format!("tol.{counter}@example.com"),
            &format!("Body of {subject}.\nSecond line."),
        )
    };

    // 101: camelCase keys, int flags 0, integer ms.
    let c = msg("camel");
    let d = w.blob(&c)?;
    w.item_raw(acc, 101, format!(r#"[{{"id":101,"type":"message","startDate":{t0},"folderId":2,"digest":"{d}","flags":0,"subject":"camel"}}]"#).as_bytes())?;
    let mut x = e(101, "camelCase keys, integer flags, integer timestamp");
    x.flags = seen();
    x.subject = Some("camel".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 102: Upper-Kebab keys, numeric type, digit-string flags, RFC 3339 with fraction and offset.
    let c = msg("kebab");
    let d = w.blob(&c)?;
    w.item_raw(acc, 102, format!(r#"[{{"Start-Date":"2013-07-12T02:00:00.250+02:00","TYPE":5,"Folder_ID":2,"DIGEST":"{d}","FLAGS":"512","Subject":"kebab"}}]"#).as_bytes())?;
    let mut x = e(
        102,
        "kebab/upper keys, numeric type, digit-string flags, RFC 3339 with offset",
    );
    x.subject = Some("kebab".into());
    x.flags = vec![]; // 512: UNREAD
    x.first_start = Some(t0 + 250);
    x.last_start = Some(t0 + 250);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 103: type as digit string, flag characters, CLI date form, start as digit string.
    let c = msg("chars");
    let d = w.blob(&c)?;
    w.item_raw(acc, 103, format!(r#"[{{"type":"5","start_date":"{}","folder_id":2,"digest":"{d}","flags":"fr","subject":"chars","date":"12/07/2013 00:00:00"}},{{"type":"message","start_date":"12/07/2013 10:00:00","folder_id":2,"digest":"{d}","flags":"frwu","subject":"chars"}}]"#, t0 + 1000).as_bytes())?;
    let mut x = e(
        103,
        "digit-string type, flag characters, dd/MM/yyyy timestamps",
    );
    x.states = 2;
    x.flags = vec!["\\Answered".into(), "\\Flagged".into(), "$Forwarded".into()];
    x.subject = Some("chars".into());
    x.first_start = Some(t0 + 1000);
    x.last_start = Some(t0 + 36_000_000);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 104: states out of order (with two equal starts: file order wins).
    let c = msg("shuffled");
    let d = w.blob(&c)?;
    let st = |start: Millis, folder: ItemId| json!({"type":"message","start_date":start,"folder_id":folder,"digest":d,"flags":0,"subject":"shuffled"});
    let v = vec![
        st(t0 + 3000, 3),
        st(t0 + 1000, 2),
        st(t0 + 3000, 4),
        st(t0 + 2000, 2),
    ];
    w.item(acc, 104, &v)?;
    let mut x = e(104, "states out of order; equal starts keep file order");
    x.states = 4;
    x.folder_id = Some(4);
    x.flags = seen();
    x.subject = Some("shuffled".into());
    x.first_start = Some(t0 + 1000);
    x.last_start = Some(t0 + 3000);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 105: unknown keys everywhere.
    let c = msg("unknown keys");
    let d = w.blob(&c)?;
    w.item_raw(acc, 105, format!(r#"[{{"type":"message","start_date":{t0},"folder_id":2,"digest":"{d}","flags":0,"subject":"unknown keys","x_vendor":{{"a":[1,2,{{"b":null}}]}},"revision":7,"uuid":"u-105","modMetadata":123,"":0}}]"#).as_bytes())?;
    let mut x = e(105, "unknown keys ignored");
    x.flags = seen();
    x.subject = Some("unknown keys".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 106: a JSON object instead of an array.
    let c = msg("object");
    let d = w.blob(&c)?;
    w.item_raw(acc, 106, format!(r#"{{"type":"message","start_date":{t0},"folder_id":2,"digest":"{d}","flags":0,"subject":"object"}}"#).as_bytes())?;
    let mut x = e(106, "JSON object = one state");
    x.flags = seen();
    x.subject = Some("object".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 107: invalid UTF-8 in the subject.
    let c = msg("latin1");
    let d = w.blob(&c)?;
    let mut raw = format!(r#"[{{"type":"message","start_date":{t0},"folder_id":2,"digest":"{d}","flags":0,"subject":"Caf"#).into_bytes();
    raw.extend_from_slice(b"\xe9 au lait\"}]");
    w.item_raw(acc, 107, &raw)?;
    let mut x = e(107, "invalid UTF-8 becomes U+FFFD");
    x.flags = seen();
    x.subject = Some("Caf\u{fffd} au lait".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 108: an unpaired surrogate escape.
    let c = msg("surrogate");
    let d = w.blob(&c)?;
    w.item_raw(acc, 108, format!(r#"[{{"type":"message","start_date":{t0},"folder_id":2,"digest":"{d}","flags":0,"subject":"bad \ud83d pair \ud83d\ude00"}}]"#).as_bytes())?;
    let mut x = e(108, "unpaired surrogate becomes U+FFFD");
    x.flags = seen();
    x.subject = Some("bad \u{fffd} pair \u{1f600}".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 109: digest written with '/' in the metadata (find a content whose digest has one).
    let mut n = 0;
    let (c, d) = loop {
        let c = msg(&format!("slash digest {n}"));
        let d = blob_digest(&c);
        if d.contains(',') {
            break (c, d);
        }
        n += 1;
    };
    w.blob(&c)?;
    let subj = format!("slash digest {n}");
    w.item(acc, 109, &[json!({"type":"message","start_date":t0,"folder_id":2,"digest":d.replace(',', "/"),"flags":0,"subject":subj})])?;
    let mut x = e(109, "digest with '/' in metadata");
    x.flags = seen();
    x.subject = Some(subj);
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 110: blob stored under the last two characters.
    let mut n = 0;
    let (c, d) = loop {
        let c = msg(&format!("last two {n}"));
        let d = blob_digest(&c);
        if d[..2] != d[d.len() - 2..] {
            break (c, d);
        }
        n += 1;
    };
    let gz = w.gzip(&c)?;
    w.blob_file(&d[d.len() - 2..], &d, &gz)?;
    let subj = format!("last two {n}");
    w.item(acc, 110, &[json!({"type":"message","start_date":t0,"folder_id":2,"digest":d,"flags":0,"subject":subj})])?;
    let mut x = e(110, "blob under items/<last two chars>/");
    x.flags = seen();
    x.subject = Some(subj);
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 111: an uncompressed blob.
    let c = msg("stored");
    let d = blob_digest(&c);
    w.blob_file(&d[..2], &d, &c)?;
    w.item(acc, 111, &[json!({"type":"message","start_date":t0,"folder_id":2,"digest":d,"flags":0,"subject":"stored"})])?;
    let mut x = e(111, "blob stored uncompressed");
    x.flags = seen();
    x.subject = Some("stored".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 112: a multi-member gzip blob.
    let c = msg("multi member");
    let d = blob_digest(&c);
    let mut gz = w.gzip(&c[..c.len() / 3])?;
    gz.extend(w.gzip(&c[c.len() / 3..])?);
    w.blob_file(&d[..2], &d, &gz)?;
    w.item(acc, 112, &[json!({"type":"message","start_date":t0,"folder_id":2,"digest":d,"flags":0,"subject":"multi member","size":1})])?;
    let mut x = e(112, "multi-member gzip blob (and a wrong size)");
    x.flags = seen();
    x.subject = Some("multi member".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // 113: not JSON at all.
    w.item_raw(acc, 113, b"\x00\x01 this is not JSON {")?;
    let mut x = e(113, "metadata that is not JSON: broken item");
    x.broken = true;
    x.kind = None;
    x.states = 0;
    x.folder_id = None;
    exp.push(x);

    // 114: a contact, no blob, no flags key (default: unread, no words).
    w.item_raw(acc, 114, format!(r#"[{{"type":6,"start_date":{t0},"folder_id":7,"name":"Jane Roe","fields":{{"firstName":"Jane","lastName":"Roe","email":"jane@example.com"}}}}]"#).as_bytes())?;
    let mut x = e(114, "numeric contact type, no flags key");
    x.kind = Some(ItemKind::Contact);
    x.folder_id = Some(7);
    x.name = Some("Jane Roe".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    exp.push(x);

    // 115: a deleted state without folder_id takes the previous state's.
    let c = msg("deleted");
    let d = w.blob(&c)?;
    w.item(acc, 115, &[
        json!({"start_date": t0 + 5000, "deleted": true}),
        json!({"type":"message","start_date":t0,"folder_id":3,"digest":d,"flags":0,"subject":"deleted"}),
    ])?;
    let mut x = e(115, "deleted state without folder_id, listed first");
    x.states = 2;
    x.deleted = true;
    x.folder_id = Some(3);
    x.flags = seen();
    x.first_start = Some(t0);
    x.last_start = Some(t0 + 5000);
    x.content = None;
    exp.push(x);

    // 116: hidden types by name and code.
    w.item_raw(
        acc,
        116,
        format!(r#"[{{"type":"Tag","start_date":{t0},"folder_id":8,"name":"todo"}}]"#).as_bytes(),
    )?;
    let mut x = e(116, "tag type is hidden");
    x.kind = Some(ItemKind::Hidden);
    x.folder_id = Some(8);
    x.name = Some("todo".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    exp.push(x);
    w.item_raw(
        acc,
        117,
        format!(r#"[{{"type":16,"start_date":{t0},"folder_id":14,"subject":"chat"}}]"#).as_bytes(),
    )?;
    let mut x = e(117, "chat code 16 is hidden");
    x.kind = Some(ItemKind::Hidden);
    x.folder_id = Some(14);
    x.subject = Some("chat".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    exp.push(x);

    // A Drive item.
    let uuid = "5f0c3e1a-2b4d-4e6f-8a9b-0c1d2e3f40ab";
    let c = fake_pdf();
    let d = w.blob(&c)?;
    let dd = w.account_dir(acc).join("drive_items").join("ab");
    fs::create_dir_all(&dd)?;
    fs::write(
        dd.join(uuid),
        serde_json::to_vec(
            &json!([{"type":"document","start_date":t0,"name":"drive.pdf","digest":d,"flags":0}]),
        )?,
    )?;
    let mut x = e(drive_item_id(uuid), "Drive item");
    x.kind = Some(ItemKind::Document);
    x.folder_id = Some(DRIVE_FOLDER);
    x.flags = seen();
    x.name = Some("drive.pdf".into());
    x.first_start = Some(t0);
    x.last_start = Some(t0);
    x.digest = Some(d);
    x.content = Some(c);
    exp.push(x);

    // Names that must be ignored.
    let items = w.account_dir(acc).join("items");
    let ignored = vec![
        items.join("01").join("101.bak"),
        items.join("01").join("README"),
        items.join("01").join(".101.swp"),
        items.join("01").join("201"),
        items.join("notes.txt"),
    ];
    fs::write(&ignored[0], b"[]")?;
    fs::write(&ignored[1], b"readme")?;
    fs::write(&ignored[2], b"x")?;
    fs::create_dir_all(&ignored[3])?;
    fs::write(&ignored[4], b"x")?;

    Ok(ToleranceInfo {
        root: dir.to_path_buf(),
        account: acc.to_string(),
        items: exp,
        ignored,
    })
}

// ---------------------------------------------------------------------------
// Generated backups

/// Options of [`write_generated`].
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub accounts: usize,
    pub items_per_account: usize,
    pub seed: u64,
    /// In every account, the first this many messages all go to the Inbox
    /// (folder 2) and nowhere else.
    pub big_folder: Option<usize>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            accounts: 2,
            items_per_account: 1000,
            seed: 1,
            big_folder: None,
        }
    }
}

/// What [`write_generated`] wrote.
#[derive(Clone, Debug)]
pub struct GenInfo {
    pub root: PathBuf,
    /// Account keys (directory names), in creation order.
    pub accounts: Vec<String>,
    /// Account addresses, same order.
    pub names: Vec<String>,
    /// Metadata files written (folders and items, all accounts).
    pub metadata_files: usize,
    /// Item metadata files that are not folders.
    pub items: usize,
    /// Distinct blobs written, and their total uncompressed size.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Messages in the Inbox of each account from `big_folder`.
    pub big_folder_messages: usize,
}

const USER_FOLDERS: &[(ItemId, ItemId, &str)] = &[
    (257, 2, "Projects"),
    (258, 257, "Alpha"),
    (259, 257, "Beta"),
    (260, 2, "Receipts"),
    (261, 2, "Lists"),
    (262, 261, "rust-users"),
    (263, 261, "announce"),
    (264, 1, "Archive"),
    (265, 264, "2012"),
    (266, 264, "2013"),
    (267, 1, "Clients"),
    (268, 267, "Société Générale"),
];
const MAIL_FOLDERS: &[ItemId] = &[
    2, 2, 2, 2, 5, 5, 6, 4, 257, 258, 259, 260, 261, 262, 263, 265, 266, 267, 268,
];
const FIRST_ITEM_ID: ItemId = 300;

const WORDS: &[&str] = &[
    "the",
    "backup",
    "mailbox",
    "restore",
    "meeting",
    "report",
    "quarter",
    "budget",
    "please",
    "review",
    "attached",
    "server",
    "invoice",
    "project",
    "deadline",
    "thanks",
    "regards",
    "client",
    "schedule",
    "update",
    "release",
    "migration",
    "storage",
    "policy",
    "ticket",
    "customer",
    "team",
    "and",
    "of",
    "to",
    "in",
    "for",
    "on",
    "with",
    "is",
    "we",
    "our",
    "this",
    "that",
    "next",
    "week",
    "réunion",
    "données",
    "größe",
    "日本",
    "测试",
];

/// A pseudo-text corpus of fixed 72-byte lines (70 bytes + CRLF).
fn corpus(rng: &mut Rng, lines: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines * 72);
    for _ in 0..lines {
        let mut line = String::new();
        while line.len() < 70 {
            let w = *rng.pick(WORDS);
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        let mut cut = 70;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        while line.len() < 70 {
            line.push('.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A size with median ~8 KB and a long tail to a few MB.
fn message_size(rng: &mut Rng) -> usize {
    // Approximately normal: sum of 4 uniforms, centred, unit variance.
    let z = ((0..4).map(|_| rng.unit()).sum::<f64>() - 2.0) * 3f64.sqrt();
    let s = 8192.0 * (0.75 * z).exp();
    let s = if rng.chance(0.005) { s * 40.0 } else { s };
    s.clamp(700.0, 4.0 * 1024.0 * 1024.0) as usize
}

fn uuidish(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

struct MessageFactory {
    corpus: Vec<u8>,
    buf: Vec<u8>,
}

impl MessageFactory {
    /// Build a message of about `size` bytes into `self.buf`.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        rng: &mut Rng,
        from: &str,
        to: &str,
        subject: &str,
        date: Millis,
        msgid: &str,
        size: usize,
    ) {
        let corpus_lines = self.corpus.len() / 72;
        let mut m = std::mem::take(&mut self.buf);
        m.clear();
        headers(&mut m, from, to, subject, date, msgid);
        let attach = size > 30_000 && rng.chance(0.6);
        let body_len = if attach {
            2000
        } else {
            size.saturating_sub(m.len() + 100)
        };
        if attach {
            m.extend_from_slice(
                b"Content-Type: multipart/mixed; boundary=\"=_part_1\"\r\n\r\n--=_part_1\r\n",
            );
        }
        m.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        let mut left = body_len.div_ceil(72).max(1);
        while left > 0 {
            let start = rng.below(corpus_lines as u64) as usize;
            let n = left.min(corpus_lines - start);
            m.extend_from_slice(&self.corpus[start * 72..(start + n) * 72]);
            left -= n;
        }
        if attach {
            let raw = size.saturating_sub(m.len()) * 3 / 4;
            m.extend_from_slice(
                b"--=_part_1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            );
            let mut data = Vec::with_capacity(raw);
            while data.len() < raw {
                // Whole lines, so that base64 keeps the text's repetitions.
                let start = rng.below((self.corpus.len() / 72) as u64) as usize * 72;
                let n = (raw - data.len()).min(self.corpus.len() - start);
                data.extend_from_slice(&self.corpus[start..start + n]);
            }
            // Some incompressible bytes, as real attachments have.
            for b in data.iter_mut().step_by(61) {
                *b = rng.next_u64() as u8;
            }
            base64_lines(&mut m, &data);
            m.extend_from_slice(b"--=_part_1--\r\n");
        }
        self.buf = m;
    }
}

/// Write a generated backup: `opts.accounts` accounts of system and user
/// folders plus `opts.items_per_account` items each (90% messages, then
/// contacts, appointments, documents), some with several states (read later,
/// moved, deleted). Blobs are deduplicated (a few newsletters are shared by
/// all accounts) and compressed with the fastest gzip level.
pub fn write_generated(dir: &Path, opts: &GenOptions) -> Result<GenInfo> {
    let mut w = BackupWriter::new(dir, Compression::fast())?;
    // Compression and blob writes run on a second thread.
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(64);
        let worker = s.spawn(|| blob_worker(dir, Compression::fast(), rx));
        w.offload = Some(tx);
        let made = generate(&mut w, dir, opts);
        w.offload = None;
        let written = worker
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the blob writer panicked")));
        let info = made?;
        written?;
        Ok(info)
    })
}

fn generate(w: &mut BackupWriter, dir: &Path, opts: &GenOptions) -> Result<GenInfo> {
    let mut rng = Rng::new(opts.seed);
    let mut f = MessageFactory {
        corpus: corpus(&mut rng, 4096),
        buf: Vec::new(),
    };
    let mut info = GenInfo {
        root: dir.to_path_buf(),
        accounts: Vec::new(),
        names: Vec::new(),
        metadata_files: 0,
        items: 0,
        blobs: 0,
        blob_bytes: 0,
        big_folder_messages: 0,
    };
    let base = ts("2013-01-01T00:00:00Z");
    let span: Millis = 200 * 86_400_000;

    // Newsletters shared by every account.
    let mut newsletters = Vec::new();
    for i in 0..8 {
        let date = base + i * span / 8;
        let subject = format!("Example newsletter #{i}");
        f.build(
            &mut rng,
            "News <news@example.com>",
            "staff@example.com",
            &subject,
            date,
            &format!("news.{i}@example.com"),
            12_000,
        );
        let len = f.buf.len();
        let d = w.blob_owned(f.buf.clone())?;
        newsletters.push((d, len, date, subject));
    }

    for a in 0..opts.accounts {
        let key = uuidish(&mut rng);
        let name = format!("user{a:05}@example.com");
        w.account_info(&key, &json!({"id": key, "name": name, "status": "active", "aliases": [format!("alias{a:05}@example.com")]}))?;
        for nn in 0..100 {
            w.dir(w.account_dir(&key).join("items").join(format!("{nn:02}")))?;
        }
        let created = base - 86_400_000;
        for (id, parent, fname) in SYSTEM_FOLDERS.iter().chain(USER_FOLDERS) {
            w.item(&key, *id, &[folder_state(created, *parent, fname)])?;
            info.metadata_files += 1;
        }
        let n = opts.items_per_account;
        let big = opts.big_folder.unwrap_or(0);
        let mut in_big = 0;
        let mut states: Vec<Value> = Vec::with_capacity(4);
        for i in 0..n {
            let id = FIRST_ITEM_ID + i as ItemId;
            let at = base + (i as i64) * span / (n.max(1) as i64) + rng.below(3_600_000) as i64;
            states.clear();
            let r = rng.unit();
            if r < 0.90 {
                let pinned = in_big < big;
                let folder = if pinned {
                    in_big += 1;
                    2
                } else {
                    *rng.pick(MAIL_FOLDERS)
                };
                let mut flags: u64 = if rng.chance(0.4) { 512 } else { 0 };
                if rng.chance(0.05) {
                    flags |= 32;
                }
                if rng.chance(0.1) {
                    flags |= 4;
                }
                let st = if rng.chance(0.02) {
                    let (d, len, date, subject) = rng.pick(&newsletters).clone();
                    blob_state(
                        "message",
                        at.max(date),
                        folder,
                        &d,
                        len,
                        date,
                        flags,
                        &subject,
                        "news@example.com",
                    )
                } else {
                    let subject = format!("{} {} #{}", rng.pick(WORDS), rng.pick(WORDS), id);
                    let from = format!("sender{}@example.org", rng.below(500));
                    let size = message_size(&mut rng);
                    f.build(
                        &mut rng,
                        &from,
                        &name,
                        &subject,
                        at - 2000,
                        &format!("{id}.{a}.{}@gen.example.com", opts.seed),
                        size,
                    );
                    let len = f.buf.len();
                    let d = w.blob_owned(std::mem::take(&mut f.buf))?;
                    blob_state(
                        "message",
                        at,
                        folder,
                        &d,
                        len,
                        at - 2000,
                        flags,
                        &subject,
                        &from,
                    )
                };
                states.push(st);
                let mut t = at;
                if flags & 512 != 0 && rng.chance(0.5) {
                    t += rng.below(86_400_000) as i64 + 1;
                    let last = states[states.len() - 1].clone();
                    states.push(with(
                        &last,
                        &[("start_date", json!(t)), ("flags", json!(flags & !512))],
                    ));
                }
                if !pinned {
                    if rng.chance(0.05) {
                        t += rng.below(3 * 86_400_000) as i64 + 1;
                        let last = states[states.len() - 1].clone();
                        states.push(with(
                            &last,
                            &[
                                ("start_date", json!(t)),
                                ("folder_id", json!(*rng.pick(&[264, 265, 266, 3]))),
                            ],
                        ));
                    }
                    if rng.chance(0.03) {
                        t += rng.below(3 * 86_400_000) as i64 + 1;
                        let last = states[states.len() - 1].clone();
                        states.push(with(
                            &last,
                            &[("start_date", json!(t)), ("folder_id", json!(3))],
                        ));
                        t += rng.below(86_400_000) as i64 + 1;
                        states.push(deleted_state(t, 3));
                    }
                }
            } else if r < 0.95 {
                let first = *rng.pick(&["Anna", "John", "Marie", "Kenji", "Élodie", "Lars"]);
                let last = *rng.pick(&["Lind", "Smith", "Dupont", "Tanaka", "Müller"]);
                states.push(json!({"type": "contact", "start_date": at, "folder_id": 7,
                    "name": format!("{first} {last}"), "flags": 0, "tags": [],
                    "fields": {"firstName": first, "lastName": last,
                               "email": format!("{}.{}{}@example.net", first.to_lowercase(), last.to_lowercase(), id)}}));
            } else if r < 0.98 {
                let mut m = Vec::new();
                headers(
                    &mut m,
                    "cal@example.com",
                    &name,
                    "Meeting",
                    at,
                    &format!("appt.{id}.{a}@gen.example.com"),
                );
                m.extend_from_slice(
                    b"Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n",
                );
                m.extend_from_slice(format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:{id}.{a}@gen\r\nSUMMARY:Meeting {id}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").as_bytes());
                let len = m.len();
                let d = w.blob_owned(m)?;
                states.push(blob_state(
                    "appointment",
                    at,
                    10,
                    &d,
                    len,
                    at,
                    0,
                    &format!("Meeting {id}"),
                    "cal@example.com",
                ));
            } else {
                let size = message_size(&mut rng);
                let mut doc = format!("%PDF-1.4\n% document {id} of account {a}\n").into_bytes();
                while doc.len() < size {
                    let start = rng.below(f.corpus.len() as u64) as usize;
                    let n = (size - doc.len()).min(f.corpus.len() - start);
                    doc.extend_from_slice(&f.corpus[start..start + n]);
                }
                let len = doc.len();
                let d = w.blob_owned(doc)?;
                states.push(
                    json!({"type": "document", "start_date": at, "folder_id": 16,
                    "name": format!("document-{id}.pdf"), "digest": d, "size": len,
                    "date": at, "flags": 0, "tags": []}),
                );
            }
            w.item(&key, id, &states)?;
            info.metadata_files += 1;
            info.items += 1;
        }
        info.big_folder_messages = info.big_folder_messages.max(in_big);
        info.accounts.push(key);
        info.names.push(name);
    }
    info.blobs = w.blob_count;
    info.blob_bytes = w.blob_bytes;
    Ok(info)
}

// ---------------------------------------------------------------------------
// CLI

const CLI_USAGE: &str = "usage: synth sample DIR | synth tolerance DIR | \
synth generated DIR --accounts N --items N --seed S [--big-folder N]";

/// Handle `sample DIR`, `tolerance DIR` and `generated DIR --accounts N
/// --items N --seed S [--big-folder N]` (the arguments after `synth`).
pub fn run_cli(args: &[String]) -> Result<()> {
    let (Some(what), Some(dir)) = (args.first(), args.get(1)) else {
        bail!("{CLI_USAGE}");
    };
    let dir = Path::new(dir);
    match what.as_str() {
        "sample" => {
            let info = write_sample(dir)?;
            println!(
                "wrote the sample backup to {} ({} accounts, {} items)",
                dir.display(),
                info.accounts.len(),
                info.items.len()
            );
        }
        "tolerance" => {
            let info = write_tolerance_fixture(dir)?;
            println!(
                "wrote the tolerance fixture to {} ({} items)",
                dir.display(),
                info.items.len()
            );
        }
        "generated" => {
            let mut opts = GenOptions::default();
            let mut it = args[2..].iter();
            while let Some(flag) = it.next() {
                let val = it
                    .next()
                    .with_context(|| format!("{flag} needs a value; {CLI_USAGE}"))?;
                let num = || -> Result<u64> {
                    val.parse()
                        .with_context(|| format!("{flag}: {val:?} is not a number"))
                };
                match flag.as_str() {
                    "--accounts" => opts.accounts = num()? as usize,
                    "--items" => opts.items_per_account = num()? as usize,
                    "--seed" => opts.seed = num()?,
                    "--big-folder" => opts.big_folder = Some(num()? as usize),
                    _ => bail!("unknown option {flag}; {CLI_USAGE}"),
                }
            }
            let t = std::time::Instant::now();
            let info = write_generated(dir, &opts)?;
            println!(
                "wrote {} accounts, {} metadata files, {} blobs ({} MB uncompressed) to {} in {:.1}s",
                info.accounts.len(),
                info.metadata_files,
                info.blobs,
                info.blob_bytes / 1_000_000,
                dir.display(),
                t.elapsed().as_secs_f64()
            );
        }
        _ => bail!("unknown synth kind {what:?}; {CLI_USAGE}"),
    }
    Ok(())
}

/// SHA-256 of a file tree (relative paths and contents), for determinism tests.
pub fn tree_digest(root: &Path) -> Result<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                out.push((p.strip_prefix(root)?.to_path_buf(), b"<dir>".to_vec()));
                walk(&p, root, out)?;
            } else {
                out.push((p.strip_prefix(root)?.to_path_buf(), fs::read(&p)?));
            }
        }
        Ok(())
    }
    let mut v = Vec::new();
    walk(root, root, &mut v)?;
    v.sort();
    let mut h = Sha256::new();
    for (p, data) in v {
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::zextras::ZextrasReader;
    use crate::format::BackupReader;
    use crate::model::Item;
    use std::io::Read;

    fn read_items(root: &Path, key: &str) -> (crate::model::Account, BTreeMap<ItemId, Item>) {
        let r = ZextrasReader::open(root).unwrap();
        let mut m = BTreeMap::new();
        let acc = r.read_account(key, &mut |i| {
            m.insert(i.id, i);
        });
        (acc.unwrap(), m)
    }

    fn blob_bytes(root: &Path, b: &crate::model::BlobRef) -> Vec<u8> {
        let r = ZextrasReader::open(root).unwrap();
        let mut out = Vec::new();
        r.open_blob(b).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sample_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let info = write_sample(d.path()).unwrap();
        assert_eq!(
            crate::format::detect(d.path()).unwrap(),
            crate::format::FormatChoice::Zextras
        );
        let r = ZextrasReader::open(d.path()).unwrap();
        assert_eq!(r.list_accounts().unwrap().len(), 3);
        for a in &info.accounts {
            let (acc, items) = read_items(d.path(), &a.key);
            assert_eq!(acc.name, a.name);
            assert_eq!(acc.status, a.status);
            assert_eq!(acc.deleted_at, a.deleted_at);
            assert!(acc.problems.is_empty(), "{:?}", acc.problems);
            for si in info.items.iter().filter(|i| i.account == a.key) {
                let it = &items[&si.id];
                assert!(it.error.is_none());
                assert_eq!(it.states.len(), si.states);
                let last = it.states.last().unwrap();
                assert_eq!(last.deleted, si.deleted);
                assert_eq!(last.folder_id, Some(si.folder_id));
                let live = it.states.iter().rev().find(|s| !s.deleted).unwrap();
                assert_eq!(live.kind, Some(si.kind));
                assert_eq!(live.flags, si.flags, "item {}", si.id);
                if let Some(c) = &si.content {
                    assert_eq!(&blob_bytes(d.path(), live.blob.as_ref().unwrap()), c);
                    let len = r.blob_len(live.blob.as_ref().unwrap(), live.size).unwrap();
                    assert_eq!(len, c.len() as u64);
                }
            }
        }
        let john = info.account("john@example.com").unwrap();
        assert_eq!(
            john.days,
            ["2013-07-10", "2013-07-11", "2013-07-12", "2013-07-15"]
        );
        let m = &info.moved;
        let (_, items) = read_items(d.path(), &m.account);
        let s: Vec<_> = items[&m.id]
            .states
            .iter()
            .map(|s| (s.start, s.folder_id, s.deleted))
            .collect();
        assert_eq!(
            s,
            vec![
                (m.arrived, Some(2), false),
                (m.moved_to_trash, Some(3), false),
                (m.deleted, Some(3), true)
            ]
        );
        let ren = &items[&info.renamed.id].states;
        assert_eq!(ren[1].name.as_deref(), Some("Projets clients"));
        assert_eq!(ren[1].start, info.renamed.renamed_at);
        let shared: Vec<_> = info
            .shared_items
            .iter()
            .map(|(a, id)| info.item(a, *id).unwrap().digest.clone())
            .collect();
        assert!(shared
            .iter()
            .all(|d| d.as_deref() == Some(info.shared_digest.as_str())));
        let appt = info.item(&info.appointment.0, info.appointment.1).unwrap();
        let c = appt.content.as_ref().unwrap();
        assert!(c
            .windows(info.appointment_ics.len())
            .any(|w| w == info.appointment_ics));
        // Non-ASCII subjects are RFC 2047 in the header, UTF-8 in the metadata.
        let reunion = info.item(SAMPLE_JOHN, 301).unwrap();
        assert_eq!(reunion.title, "Réunion à 10h");
        assert!(String::from_utf8_lossy(reunion.content.as_ref().unwrap())
            .contains("Subject: =?UTF-8?B?"));
    }

    #[test]
    fn cli_arguments() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("g").to_string_lossy().into_owned();
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        run_cli(&args(&[
            "generated",
            &dir,
            "--accounts",
            "1",
            "--items",
            "20",
            "--seed",
            "3",
            "--big-folder",
            "5",
        ]))
        .unwrap();
        let r = ZextrasReader::open(Path::new(&dir)).unwrap();
        assert_eq!(r.list_accounts().unwrap().len(), 1);
        assert!(run_cli(&args(&["generated", &dir, "--items"])).is_err());
        assert!(run_cli(&args(&["generated", &dir, "--bogus", "1"])).is_err());
        assert!(run_cli(&args(&["nonsense", &dir])).is_err());
        assert!(run_cli(&args(&["sample"])).is_err());
    }

    #[test]
    fn tolerance_fixture_reads_as_expected() {
        let d = tempfile::tempdir().unwrap();
        let info = write_tolerance_fixture(d.path()).unwrap();
        let (acc, items) = read_items(d.path(), &info.account);
        assert_eq!(acc.name, info.account);
        assert!(acc.problems.iter().any(|p| p.contains("account_info")));
        let r = ZextrasReader::open(d.path()).unwrap();
        for e in &info.items {
            let it = items
                .get(&e.id)
                .unwrap_or_else(|| panic!("item {} ({}) missing", e.id, e.case));
            assert_eq!(it.error.is_some(), e.broken, "{}", e.case);
            assert_eq!(it.states.len(), e.states, "{}", e.case);
            let Some(last) = it.states.last() else {
                continue;
            };
            assert_eq!(last.kind, e.kind, "{}", e.case);
            assert_eq!(last.folder_id, e.folder_id, "{}", e.case);
            assert_eq!(last.deleted, e.deleted, "{}", e.case);
            assert_eq!(last.flags, e.flags, "{}", e.case);
            if !e.deleted {
                assert_eq!(last.subject, e.subject, "{}", e.case);
                assert_eq!(last.name, e.name, "{}", e.case);
            }
            assert_eq!(
                it.states.first().map(|s| s.start),
                e.first_start,
                "{}",
                e.case
            );
            assert_eq!(Some(last.start), e.last_start, "{}", e.case);
            if let Some(c) = &e.content {
                let blob = last.blob.as_ref().unwrap();
                assert_eq!(blob.digest, e.digest, "{}", e.case);
                assert_eq!(&blob_bytes(d.path(), blob), c, "{}", e.case);
                assert_eq!(
                    r.blob_len(blob, last.size).unwrap(),
                    c.len() as u64,
                    "{}",
                    e.case
                );
            }
        }
        let ids: BTreeSet<ItemId> = info.items.iter().map(|e| e.id).collect();
        let got: BTreeSet<ItemId> = items
            .keys()
            .copied()
            .filter(|id| *id != DRIVE_FOLDER)
            .collect();
        assert_eq!(ids, got, "ignored names must not become items");
    }

    #[test]
    fn generated_is_deterministic_and_readable() {
        let opts = GenOptions {
            accounts: 2,
            items_per_account: 150,
            seed: 7,
            big_folder: Some(40),
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ia = write_generated(a.path(), &opts).unwrap();
        write_generated(b.path(), &opts).unwrap();
        assert_eq!(
            tree_digest(a.path()).unwrap(),
            tree_digest(b.path()).unwrap()
        );
        let s1 = tempfile::tempdir().unwrap();
        let s2 = tempfile::tempdir().unwrap();
        write_sample(s1.path()).unwrap();
        write_sample(s2.path()).unwrap();
        assert_eq!(
            tree_digest(s1.path()).unwrap(),
            tree_digest(s2.path()).unwrap()
        );
        assert_eq!(ia.accounts.len(), 2);
        assert_eq!(ia.big_folder_messages, 40);
        let mut n = 0;
        for key in &ia.accounts {
            let (acc, items) = read_items(a.path(), key);
            assert!(acc.problems.is_empty());
            assert!(items.values().all(|i| i.error.is_none()));
            n += items.len();
            let inbox = items
                .values()
                .filter(|i| i.states.first().and_then(|s| s.folder_id) == Some(2))
                .count();
            assert!(inbox >= 40);
        }
        assert_eq!(n, ia.metadata_files);
        // Spot-check a few blobs.
        let (_, items) = read_items(a.path(), &ia.accounts[0]);
        for it in items.values().take(50) {
            if let Some(b) = it.states[0].blob.as_ref() {
                let bytes = blob_bytes(a.path(), b);
                assert_eq!(Some(bytes.len() as u64), it.states[0].size);
            }
        }
    }
}
