//! Reader for the Zextras / Carbonio backup path ("Backup NG").
//!
//! Layout (see `docs/formats/zextras.md`):
//! `accounts/<accountId>/account_info`, `accounts/<accountId>/items/<NN>/<itemId>`
//! (a JSON array of states), `accounts/<accountId>/drive_items/<hh>/<uuid>`, and
//! the shared, deduplicated, gzip-compressed blobs `items/<xx>/<digest>`.
//!
//! Everything here is tolerant: a file that cannot be read or parsed becomes a
//! broken [`Item`] (or a problem of the [`Account`]), never an `Err` for the
//! account and never a panic.
//!
//! Drive items have UUIDs, not numeric ids. They get stable negative ids
//! ([`drive_item_id`]), their UUID as label and history key, and are all shown
//! flat in one synthetic folder [`DRIVE_FOLDER`] named `Drive` under the view
//! root; that folder is emitted by [`ZextrasReader::read_account`] as a folder
//! item starting with the earliest drive item state.
//!
//! Choices where the format doc leaves room:
//! - `flags` absent: flags 0, no bit set, so the item is read (`\Seen`),
//!   exactly like an explicit `0` or `""` (only the UNREAD bit unreads).
//! - A deleted state without `flags` or `type` takes them from the state
//!   before it, like its folder.
//! - `account_info` present without `status`: `active` (`deleted` when it has
//!   a `deleted_date`); absent or unreadable: `unknown`, and a problem.
//! - `read_account` hands items to the sink in no particular order (reading
//!   runs on several threads); each item's states are sorted.
//! - Blobs: the digest is checked only when it looks like a base64 SHA-256
//!   (44 characters ending in `=`); a corrupt deflate stream may hand out some
//!   garbage before its error, as nothing can tell it from data until then.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Result};
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::backup_root::{read_capped_into, BackupRoot, EntryKind, Stat};
use super::{AccountEntry, BackupReader};
use crate::model::{Account, BlobRef, Item, ItemId, ItemKind, ItemState, Millis, VIEW_ROOT};

/// The synthetic folder that holds every Drive item of an account: a folder
/// named [`DRIVE_FOLDER_NAME`] directly under [`VIEW_ROOT`]. Zimbra ids are
/// positive, so a negative id never collides with a real item.
pub const DRIVE_FOLDER: ItemId = -1;
/// Name of the [`DRIVE_FOLDER`].
pub const DRIVE_FOLDER_NAME: &str = "Drive";

/// The account key of an account directory: its name when that is UTF-8
/// without `%`; else the name with `%` written `%25` and every byte that
/// is not UTF-8 as `%XX`, so that no directory is dropped and no two share
/// a key. [`key_dir`] turns it back.
pub fn account_key(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('%') => s.to_string(),
        _ => {
            let mut out = String::new();
            for chunk in bytes.utf8_chunks() {
                out.push_str(&chunk.valid().replace('%', "%25"));
                for b in chunk.invalid() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
    }
}

/// The directory name of an account key (see [`account_key`]).
pub fn key_dir(key: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    if !key.contains('%') {
        return key.into();
    }
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Whether `root` has the layout of this format: an `accounts/` directory,
/// or an `items/` directory of two-character blob directories.
pub fn looks_like(root: &Path) -> bool {
    let Ok(root) = BackupRoot::open(root) else {
        return false;
    };
    if root.is_dir("accounts") {
        return true;
    }
    let Ok(entries) = root.read_dir("items") else {
        return false;
    };
    entries
        .iter()
        .any(|e| e.name.len() == 2 && e.kind == EntryKind::Dir)
}

/// The stable id of a Drive item: a negative number (at most -2) derived from
/// the SHA-256 of its UUID.
pub fn drive_item_id(uuid: &str) -> ItemId {
    let h = Sha256::digest(uuid.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    -((u64::from_be_bytes(b) >> 2) as i64) - 2
}

/// Normalise a digest for use in a path: `/` becomes `,`.
pub fn normalize_digest(d: &str) -> String {
    d.trim().replace('/', ",")
}

/// The digest of `data` as this format names blobs: SHA-256, standard
/// base64, `/` written as `,`.
pub fn blob_digest(data: &[u8]) -> String {
    digest_name(&Sha256::digest(data))
}

fn digest_name(sha: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(sha)
        .replace('/', ",")
}

/// Whether a (normalised) digest looks like a base64 SHA-256 we can verify.
fn is_sha256_digest(d: &str) -> bool {
    d.len() == 44
        && d.ends_with('=')
        && d[..43]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b',' | b'-' | b'_'))
}

// ---------------------------------------------------------------------------
// Lenient JSON

/// Key normalisation: lower-case, `_` and `-` removed.
fn norm_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parse JSON leniently: as is when possible; else after replacing invalid
/// UTF-8 and unpaired surrogate escapes by U+FFFD (and dropping a BOM).
fn parse_lenient(bytes: &[u8]) -> std::result::Result<Value, serde_json::Error> {
    lenient(bytes, |b| serde_json::from_slice(b))
}

/// Run `parse` on the bytes as they are, and when that fails on the bytes
/// repaired as [`parse_lenient`] says; the first error is the one reported.
fn lenient<T>(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> serde_json::Result<T>,
) -> serde_json::Result<T> {
    match parse(bytes) {
        Ok(v) => Ok(v),
        Err(first) => {
            let s = String::from_utf8_lossy(bytes);
            let s = s.trim_start_matches('\u{feff}');
            let fixed = fix_surrogates(s);
            parse(fixed.as_bytes()).map_err(|_| first)
        }
    }
}

/// The states of a metadata file (a JSON array of state objects, or one
/// object), parsed one object at a time: a file of 200,000 states never
/// exists as one JSON tree (that took 670 MB for a 60 MB file). Elements
/// that are not objects are skipped; a top level that is neither array
/// nor object gives no state.
fn parse_state_objects(bytes: &[u8]) -> serde_json::Result<Vec<ParsedState>> {
    lenient(bytes, |b| {
        let mut de = serde_json::Deserializer::from_slice(b);
        let states = serde::Deserializer::deserialize_any(&mut de, StatesVisitor)?;
        de.end()?;
        Ok(states)
    })
}

/// A state, and whether its object had a `folder_id` key.
type ParsedState = (ItemState, bool);

struct StatesVisitor;

impl<'de> serde::de::Visitor<'de> for StatesVisitor {
    type Value = Vec<ParsedState>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of item states, or one state object")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            if let Value::Object(m) = v {
                out.push(parse_state(&m));
            }
        }
        Ok(out)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let m: Map<String, Value> =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(vec![parse_state(&m)])
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(i..i + 4)?;
    let s = std::str::from_utf8(s).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Replace `\uXXXX` escapes of unpaired surrogates by `\uFFFD`.
fn fix_surrogates(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut last) = (0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(cp) = hex4(b, i + 2) else {
            i += 2;
            continue;
        };
        let lone = if (0xD800..0xDC00).contains(&cp) {
            let paired = b.get(i + 6) == Some(&b'\\')
                && b.get(i + 7) == Some(&b'u')
                && hex4(b, i + 8).is_some_and(|c| (0xDC00..0xE000).contains(&c));
            if paired {
                i += 12;
                continue;
            }
            true
        } else {
            (0xDC00..0xE000).contains(&cp)
        };
        if lone {
            out.push_str(&s[last..i]);
            out.push_str("\\uFFFD");
            last = i + 6;
        }
        i += 6;
    }
    out.push_str(&s[last..]);
    out
}

/// A timestamp: integer milliseconds, a string of digits, RFC 3339 (with
/// fractions and offsets), or `dd/MM/yyyy HH:mm:ss` (UTC).
pub fn parse_timestamp(v: &Value) -> Option<Millis> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => parse_timestamp_str(s),
        _ => None,
    }
}

/// See [`parse_timestamp`].
pub fn parse_timestamp_str(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    None
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

/// An item type: a name (case-insensitive) or a Zimbra numeric code.
pub fn parse_kind(v: &Value) -> Option<ItemKind> {
    let code = match v {
        Value::Number(_) => as_int(v)?,
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                n
            } else {
                return Some(ItemKind::parse(&s.to_ascii_lowercase()));
            }
        }
        _ => return None,
    };
    Some(match code {
        1 => ItemKind::Folder,
        5 => ItemKind::Message,
        6 => ItemKind::Contact,
        8 => ItemKind::Document,
        11 => ItemKind::Appointment,
        15 => ItemKind::Task,
        _ => ItemKind::Hidden,
    })
}

const FLAG_CHARS: &[(char, u32)] = &[
    ('s', 0),
    ('a', 1),
    ('r', 2),
    ('w', 3),
    ('f', 5),
    ('d', 6),
    ('x', 7),
    ('n', 8),
    ('u', 9),
    ('!', 10),
    ('?', 11),
    ('/', 12),
    ('p', 14),
    ('t', 15),
    ('+', 16),
    ('^', 17),
    ('(', 18),
    ('*', 19),
    ('b', 20),
    ('#', 21),
    ('i', 22),
    ('v', 23),
    ('y', 24),
    ('~', 25),
    ('o', 26),
    ('@', 27),
    ('g', 28),
];

/// Zimbra flags (integer bitmask, string of digits, or flag characters) as a
/// bitmask. Unknown characters are ignored.
pub fn parse_flags(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(|i| i as u64)
            .or_else(|| n.as_u64())
            .or_else(|| n.as_f64().map(|f| f as i64 as u64))
            .unwrap_or(0),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                if let Ok(i) = s.parse::<i64>() {
                    return i as u64;
                }
            }
            s.chars()
                .filter_map(|c| FLAG_CHARS.iter().find(|(fc, _)| *fc == c))
                .fold(0, |acc, (_, bit)| acc | (1u64 << bit))
        }
        _ => 0,
    }
}

/// The IMAP words of a Zimbra flag bitmask, in a fixed order:
/// `\Seen \Answered \Flagged \Deleted \Draft $Forwarded $MDNSent`.
pub fn flag_words(bits: u64) -> Vec<String> {
    let on = |b: u32| bits & (1u64 << b) != 0;
    let mut w = Vec::new();
    if !on(9) {
        w.push("\\Seen".to_string());
    }
    for (bit, word) in [
        (2, "\\Answered"),
        (5, "\\Flagged"),
        (7, "\\Deleted"),
        (6, "\\Draft"),
        (3, "$Forwarded"),
        (8, "$MDNSent"),
    ] {
        if on(bit) {
            w.push(word.to_string());
        }
    }
    w
}

fn parse_tags(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(as_string).collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// One state object, keys normalised. Returns the state and whether it had a
/// `folder_id` key.
///
/// Flags map through the doc's table; an absent `flags` key is the default
/// 0, so it reads `\Seen` like an explicit `0` or `""`.
fn parse_state(obj: &Map<String, Value>) -> ParsedState {
    let mut st = ItemState::default();
    let mut bits: Option<u64> = None;
    let mut has_start = false;
    for (k, v) in obj {
        match norm_key(k).as_str() {
            "type" => st.kind = parse_kind(v),
            "startdate" => {
                if let Some(t) = parse_timestamp(v) {
                    st.start = t;
                    has_start = true;
                }
            }
            "enddate" => st.end = parse_timestamp(v),
            "deleted" => st.deleted = as_bool(v),
            "folderid" => st.folder_id = as_int(v),
            "name" => st.name = as_string(v),
            "subject" => st.subject = as_string(v),
            "digest" => {
                st.blob = as_string(v)
                    .map(|d| normalize_digest(&d))
                    .filter(|d| !d.is_empty())
                    .map(|d| BlobRef {
                        locator: d.clone(),
                        digest: Some(d),
                    })
            }
            "size" => st.size = as_int(v).and_then(|s| u64::try_from(s).ok()),
            "date" => st.date = parse_timestamp(v),
            "flags" => bits = Some(parse_flags(v)),
            "tags" => st.tags = parse_tags(v),
            "fields" => {
                if let Value::Object(m) = v {
                    st.fields = Some(m.clone());
                }
            }
            _ => {}
        }
    }
    if !has_start {
        if let Some(d) = st.date {
            st.start = d;
        }
    }
    st.flags = flag_words(bits.unwrap_or(0));
    let has_folder = st.folder_id.is_some();
    (st, has_folder)
}

/// Turn the bytes of one metadata file into an item. Never fails: damage is
/// reported in `Item::error`.
fn item_from_bytes(id: ItemId, label: &str, path: &Path, bytes: &[u8]) -> Item {
    let mut item = Item {
        id,
        label: label.to_string(),
        history_key: label.to_string(),
        states: Vec::new(),
        error: None,
    };
    let mut states = match parse_state_objects(bytes) {
        Ok(v) => v,
        Err(e) => {
            item.error = Some(format!("cannot parse metadata {}: {e}", path.display()));
            return item;
        }
    };
    if states.is_empty() {
        item.error = Some(format!("no item state in metadata {}", path.display()));
        return item;
    }
    // Stable: equal starts keep their file order.
    states.sort_by_key(|(s, _)| s.start);
    // A deleted state needs only start_date and deleted: it takes its kind
    // and folder from the state before it; its flags and tags are the
    // defaults when it does not say (the doc's rule: only the folder
    // carries over), and `deleted/` shows the state before anyway.
    let first_kind = states.iter().find_map(|(s, _)| s.kind);
    let mut prev: Option<(Option<ItemKind>, Option<ItemId>)> = None;
    for (s, has_folder) in &mut states {
        if s.kind.is_none() {
            s.kind = prev.as_ref().and_then(|p| p.0).or(first_kind);
        }
        if s.deleted && !*has_folder {
            if let Some(p) = &prev {
                s.folder_id = p.1;
            }
        }
        prev = Some((s.kind, s.folder_id));
    }
    item.states = states.into_iter().map(|(s, _)| s).collect();
    item
}

/// Read the metadata file `name` of the directory `dir` into `buf`, and
/// make it an item. Anything but a regular file (a link, a FIFO) is a
/// broken item.
fn read_item_file(
    id: ItemId,
    label: &str,
    dir: &BackupRoot,
    name: &str,
    buf: &mut Vec<u8>,
) -> Item {
    let path = dir.display_path(Path::new(name));
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
    let read = dir.open_file(name).and_then(|f| {
        read_capped_into(f, MAX_METADATA, buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    });
    match read {
        Ok(()) => item_from_bytes(id, label, &path, buf),
        Err(e) => Item {
            id,
            label: label.to_string(),
            history_key: label.to_string(),
            states: Vec::new(),
            error: Some(format!("cannot read metadata: {e}")),
        },
    }
}

/// Make a Drive item fit the flat `Drive/` folder.
fn adapt_drive_item(item: &mut Item) {
    for s in &mut item.states {
        s.folder_id = Some(DRIVE_FOLDER);
        if s.kind == Some(ItemKind::Folder) {
            // Drive folders are not mapped: their files are all shown flat.
            s.kind = Some(ItemKind::Hidden);
        }
    }
}

// ---------------------------------------------------------------------------
// Accounts

fn parse_account_info(key: &str, dir: &BackupRoot, acc: &mut Account) {
    let path = dir.display_path(Path::new("account_info"));
    let path = path.as_path();
    let bytes = match dir.read_capped("account_info", MAX_METADATA) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            acc.problems
                .push(format!("account_info missing: {}", path.display()));
            return;
        }
        Err(e) => {
            acc.problems.push(format!("cannot read account_info: {e}"));
            return;
        }
    };
    let obj = match parse_lenient(&bytes) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            acc.problems.push(format!(
                "account_info {} is not a JSON object",
                path.display()
            ));
            return;
        }
        Err(e) => {
            acc.problems
                .push(format!("cannot parse account_info {}: {e}", path.display()));
            return;
        }
    };
    let mut id = None;
    let mut name = None;
    let mut status = None;
    for (k, v) in &obj {
        match norm_key(k).as_str() {
            "id" => id = as_string(v),
            "name" => name = as_string(v).filter(|n| !n.trim().is_empty()),
            "status" => status = as_string(v),
            "deleteddate" => acc.deleted_at = parse_timestamp(v),
            "aliases" => acc.aliases = parse_tags(v),
            _ => {}
        }
    }
    acc.name = name.or(id).unwrap_or_else(|| key.to_string());
    acc.status = match status {
        Some(s) => s.trim().to_ascii_lowercase(),
        None if acc.deleted_at.is_some() => "deleted".into(),
        None => "active".into(),
    };
}

/// A directory of item metadata files to read: its path below the
/// account directory.
struct WorkDir {
    rel: PathBuf,
    drive: bool,
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.len() <= 18 && s.bytes().all(|c| c.is_ascii_digit())
}

fn is_drive_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// No real item history comes near this; a bigger file is damage.
const MAX_METADATA: u64 = 64 * 1024 * 1024;

/// A read buffer larger than this is given back after use, so that one
/// huge metadata file does not keep its size allocated per thread.
const KEEP_BUFFER: usize = 1 << 20;

/// Read every item file of one directory, sending each item. Entries that
/// are not directories are read as items when their names are item names:
/// a link or a FIFO among them becomes a broken item, never followed.
fn read_work_dir(acct: &BackupRoot, w: &WorkDir, tx: &mpsc::SyncSender<Msg>) -> bool {
    let listed = acct
        .open_dir(&w.rel)
        .and_then(|d| d.read_dir("").map(|entries| (d, entries)));
    let (dir, entries) = match listed {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.send(Msg::Problem(format!("cannot list: {e}")));
            return true;
        }
    };
    let mut buf = Vec::with_capacity(16 * 1024);
    for e in entries {
        if e.kind == EntryKind::Dir {
            continue;
        }
        let Some(name) = e.name.to_str() else {
            continue;
        };
        let item = if w.drive {
            if !is_drive_name(name) {
                continue;
            }
            let id = drive_item_id(name);
            let mut item = read_item_file(id, name, &dir, name, &mut buf);
            adapt_drive_item(&mut item);
            item
        } else {
            if !is_decimal(name) {
                continue;
            }
            let Ok(id) = name.parse::<ItemId>() else {
                continue;
            };
            let label = id.to_string();
            read_item_file(id, &label, &dir, name, &mut buf)
        };
        if tx.send(Msg::Item(item, w.drive)).is_err() {
            return false;
        }
    }
    true
}

enum Msg {
    Item(Item, bool),
    Problem(String),
}

/// The item directories below `rel` (`items`, `drive_items`) of an account.
/// A link where a directory should be is refused and reported.
fn subdirs(
    acct: &BackupRoot,
    rel: &str,
    out: &mut Vec<WorkDir>,
    drive: bool,
    problems: &mut Vec<String>,
) {
    let entries = match acct.read_dir(rel) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            problems.push(format!("cannot list: {e}"));
            return;
        }
    };
    let mut v: Vec<PathBuf> = Vec::new();
    for e in entries {
        let sub = Path::new(rel).join(&e.name);
        match e.kind {
            EntryKind::Dir => v.push(sub),
            EntryKind::Symlink => problems.push(format!(
                "not a directory: {} (a symbolic link, not followed)",
                acct.display_path(&sub).display()
            )),
            _ => {}
        }
    }
    v.sort();
    out.extend(v.into_iter().map(|rel| WorkDir { rel, drive }));
}

/// A commutative digest of the files of an account, for [`AccountEntry::signature`].
#[derive(Default)]
struct Signature {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Signature {
    fn add(&mut self, name: &[u8], meta: &Stat) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        mix(name);
        mix(&meta.st_mtime.to_le_bytes());
        mix(&(meta.st_mtime_nsec as i64).to_le_bytes());
        mix(&(meta.st_size as u64).to_le_bytes());
        mix(&meta.st_ino.to_le_bytes());
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h.rotate_left(17);
    }

    /// Every entry below `rel` of `acct`, `depth` directories deep; links
    /// count as entries, never followed.
    fn add_dir(&mut self, acct: &BackupRoot, rel: &Path, depth: u32) {
        use std::os::unix::ffi::OsStrExt;
        let Ok(dir) = acct.open_dir(rel) else { return };
        self.add_open_dir(
            &dir,
            rel.file_name().map(|n| n.as_bytes()).unwrap_or_default(),
            Path::new(""),
            depth,
        );
    }

    fn add_open_dir(&mut self, dir: &BackupRoot, top: &[u8], sub: &Path, depth: u32) {
        use std::os::unix::ffi::OsStrExt;
        let Ok(entries) = dir.read_dir(sub) else {
            return;
        };
        for e in entries {
            let rel = sub.join(&e.name);
            let Ok(m) = dir.stat(&rel) else { continue };
            if e.kind == EntryKind::Dir {
                if depth > 0 {
                    self.add_open_dir(dir, top, &rel, depth - 1);
                }
            } else {
                let mut name = top.to_vec();
                name.push(b'/');
                name.extend_from_slice(rel.as_os_str().as_bytes());
                self.add(&name, &m);
            }
        }
    }

    fn finish(&self) -> String {
        format!("{}-{:016x}-{:016x}", self.count, self.sum, self.xor)
    }
}

/// The signature of the account directory `rel` of `root`: `-` when it is
/// not a directory (a link is refused when the account is read).
fn account_signature(root: &BackupRoot, rel: &Path) -> String {
    let Ok(acct) = root.open_dir(rel) else {
        return "-".into();
    };
    let mut sig = Signature::default();
    if let Ok(m) = acct.stat("account_info") {
        sig.add(b"account_info", &m);
    }
    sig.add_dir(&acct, Path::new("items"), 1);
    sig.add_dir(&acct, Path::new("drive_items"), 1);
    sig.finish()
}

/// Threads that read metadata: twice the cores (at least 4, at most 8), so
/// that reads waiting on a cold disk overlap; parsing is cheap next to them.
/// Overridable with `MAILBACKFS_READ_THREADS`.
fn worker_count() -> usize {
    if let Some(n) = std::env::var("MAILBACKFS_READ_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.clamp(1, 64);
    }
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(4, 8)
}

// ---------------------------------------------------------------------------
// Blobs

/// A streaming gzip decoder (one or more members) that reports every kind of
/// damage as an `InvalidData` error naming `path`, after handing out all the
/// bytes that decompressed before it.
pub(crate) struct GzipStream<R> {
    inner: R,
    path: PathBuf,
    z: Decompress,
    crc: Crc,
    state: GzState,
    /// How far the first member may inflate (see [`inflate_cap`]).
    cap: u64,
    /// Bytes the first member inflated so far; `None` past it.
    first_out: Option<u64>,
}

/// Slack past a trailer's length before a member is broken: one window.
const INFLATE_SLACK: u64 = 256 * 1024;

/// How far the first gzip member of `file` may inflate: the length its last
/// four bytes (the trailer's ISIZE) say, plus [`INFLATE_SLACK`]. ISIZE
/// counts modulo 2^32, and deflate inflates at least to about the
/// compressed length and at most 1032 times it: multiples of 2^32 are added
/// while that makes a consistent length (a blob over 4 GiB); a trailer no
/// length is consistent with (damage, a member without an end) is taken as
/// it is. A bomb whose metadata lies stops there, broken.
fn inflate_cap(file: &fs::File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len < 18 {
        return Ok(INFLATE_SLACK);
    }
    let mut t = [0u8; 4];
    file.read_exact_at(&mut t, len - 4)?;
    let isize = u64::from(u32::from_le_bytes(t));
    let least = len.saturating_sub(len / 100 + 64);
    let most = len.saturating_mul(1032);
    let mut cap = isize;
    if cap < least {
        cap += (least - cap).div_ceil(1 << 32) << 32;
    }
    if cap > most {
        cap = isize;
    }
    Ok(cap.saturating_add(INFLATE_SLACK))
}

/// How far a gzip stream of `compressed` bytes may inflate when its trailer
/// cannot be read first (a blob inside a zip entry): deflate's largest
/// ratio, 1032 to 1, plus [`INFLATE_SLACK`].
pub(crate) fn inflate_cap_for(compressed: u64) -> u64 {
    compressed
        .saturating_mul(1032)
        .saturating_add(INFLATE_SLACK)
}

#[derive(PartialEq)]
enum GzState {
    Header,
    Body,
    Trailer,
    Done,
    /// Damage met: every later read fails with this message.
    Failed(String),
}

fn data_err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: BufRead> GzipStream<R> {
    pub(crate) fn new(inner: R, path: PathBuf, cap: u64) -> Self {
        GzipStream {
            inner,
            path,
            z: Decompress::new(false),
            crc: Crc::new(),
            state: GzState::Header,
            cap,
            first_out: Some(0),
        }
    }

    fn truncated(&self, what: &str) -> io::Error {
        data_err(format!(
            "truncated gzip in {}: end of file in {what}",
            self.path.display()
        ))
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        match self.inner.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            Err(e) => Err(e),
        }
    }

    fn skip_zstring(&mut self) -> io::Result<()> {
        let mut b = [0u8; 1];
        loop {
            self.read_exact_or(&mut b, "gzip header")?;
            if b[0] == 0 {
                return Ok(());
            }
        }
    }

    fn read_header(&mut self) -> io::Result<()> {
        let mut h = [0u8; 10];
        self.read_exact_or(&mut h, "gzip header")?;
        if h[0] != 0x1f || h[1] != 0x8b {
            return Err(data_err(format!(
                "corrupt gzip in {}: bad magic",
                self.path.display()
            )));
        }
        if h[2] != 8 {
            return Err(data_err(format!(
                "corrupt gzip in {}: unknown compression method {}",
                self.path.display(),
                h[2]
            )));
        }
        let flg = h[3];
        if flg & 0x04 != 0 {
            let mut l = [0u8; 2];
            self.read_exact_or(&mut l, "gzip header")?;
            let mut extra = vec![0u8; usize::from(u16::from_le_bytes(l))];
            self.read_exact_or(&mut extra, "gzip header")?;
        }
        if flg & 0x08 != 0 {
            self.skip_zstring()?;
        }
        if flg & 0x10 != 0 {
            self.skip_zstring()?;
        }
        if flg & 0x02 != 0 {
            let mut c = [0u8; 2];
            self.read_exact_or(&mut c, "gzip header")?;
        }
        self.z.reset(false);
        self.crc.reset();
        self.state = GzState::Body;
        Ok(())
    }

    fn read_trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.read_exact_or(&mut t, "gzip trailer")?;
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() {
            return Err(data_err(format!(
                "gzip CRC mismatch in {}: trailer says {crc:08x}, data gives {:08x}",
                self.path.display(),
                self.crc.sum()
            )));
        }
        if isize != self.crc.amount() {
            return Err(data_err(format!(
                "gzip length mismatch in {}: trailer says {isize}, data gives {}",
                self.path.display(),
                self.crc.amount()
            )));
        }
        self.first_out = None;
        // Another member, the end, or trailing garbage.
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            self.state = GzState::Done;
        } else if buf[0] == 0x1f && (buf.len() < 2 || buf[1] == 0x8b) {
            self.state = GzState::Header;
        } else {
            return Err(data_err(format!(
                "trailing garbage after the last gzip member in {}",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                GzState::Done => return Ok(0),
                GzState::Failed(ref m) => return Err(data_err(m.clone())),
                GzState::Header => self.read_header()?,
                GzState::Trailer => self.read_trailer()?,
                GzState::Body => {
                    let input = self.inner.fill_buf()?;
                    let eof = input.is_empty();
                    let before_in = self.z.total_in();
                    let before_out = self.z.total_out();
                    let result = self.z.decompress(input, out, FlushDecompress::None);
                    let used = (self.z.total_in() - before_in) as usize;
                    let made = (self.z.total_out() - before_out) as usize;
                    self.inner.consume(used);
                    self.crc.update(&out[..made]);
                    if let Some(n) = &mut self.first_out {
                        *n += made as u64;
                        if *n > self.cap {
                            let msg = format!(
                                "corrupt gzip in {}: inflates past {} bytes, more than its \
                                 trailer says",
                                self.path.display(),
                                self.cap
                            );
                            self.state = GzState::Failed(msg.clone());
                            return Err(data_err(msg));
                        }
                    }
                    let status = match result {
                        Ok(status) => status,
                        Err(e) => {
                            let err =
                                data_err(format!("corrupt gzip in {}: {e}", self.path.display()));
                            // The bytes inflated before the damage go out first
                            // (salvage); the error comes with the next call.
                            self.state = GzState::Failed(err.to_string());
                            if made > 0 {
                                return Ok(made);
                            }
                            return Err(err);
                        }
                    };
                    if status == Status::StreamEnd {
                        // Hand out the bytes first; the trailer is checked next call.
                        self.state = GzState::Trailer;
                        if made > 0 {
                            return Ok(made);
                        }
                        continue;
                    }
                    if made > 0 {
                        return Ok(made);
                    }
                    if eof {
                        return Err(self.truncated("deflate data"));
                    }
                    if used == 0 {
                        return Err(data_err(format!(
                            "corrupt gzip in {}: deflate made no progress",
                            self.path.display()
                        )));
                    }
                }
            }
        }
    }
}

impl<R: BufRead> Read for GzipStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_inner(out)
    }
}

/// Passes bytes through, hashing them; at the end compares with the digest.
/// Errors are sticky: once failed, every later read fails the same way.
struct Checked<R> {
    inner: R,
    path: PathBuf,
    hasher: Option<Sha256>,
    expect: String,
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((k, m)) = &self.failed {
            return Err(io::Error::new(*k, m.clone()));
        }
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                if let Some(h) = self.hasher.take() {
                    let sha = h.finalize();
                    let std = digest_name(&sha);
                    let url = base64::engine::general_purpose::URL_SAFE.encode(sha);
                    if std != self.expect && url != self.expect {
                        let msg = format!(
                            "digest mismatch in {}: content hashes to {std}",
                            self.path.display()
                        );
                        self.failed = Some((io::ErrorKind::InvalidData, msg.clone()));
                        return Err(data_err(msg));
                    }
                }
                Ok(0)
            }
            Ok(n) => {
                if let Some(h) = &mut self.hasher {
                    h.update(&buf[..n]);
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

const BLOB_BUF: usize = 64 * 1024;

pub struct ZextrasReader {
    root: PathBuf,
    /// Every file is opened beneath it, never through a link.
    dir: BackupRoot,
}

impl ZextrasReader {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("backup path {} is not a directory", root.display());
        }
        let dir = BackupRoot::open(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            dir,
        })
    }

    /// The paths where the blob with (normalised) `digest` may be, in the
    /// order they are tried.
    pub fn blob_candidates(&self, digest: &str) -> Vec<PathBuf> {
        self.blob_candidates_rel(digest)
            .into_iter()
            .map(|p| self.root.join(p))
            .collect()
    }

    /// [`Self::blob_candidates`], relative to the backup root.
    fn blob_candidates_rel(&self, digest: &str) -> Vec<PathBuf> {
        let items = Path::new("items");
        let d = normalize_digest(digest);
        let safe = |s: &str| {
            !s.is_empty()
                && !s.contains('\0')
                && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        };
        let mut v = Vec::new();
        if d.contains('\0') || d.chars().count() < 2 {
            return v;
        }
        let chars: Vec<char> = d.chars().collect();
        let first: String = chars[..2].iter().collect();
        let last: String = chars[chars.len() - 2..].iter().collect();
        let slashed = d.replace(',', "/");
        let names = [d.as_str(), slashed.as_str()];
        for name in names.into_iter().filter(|n| safe(n)) {
            for sub in [&first, &last].into_iter().filter(|s| safe(s)) {
                let p = items.join(sub).join(name);
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        v
    }

    /// The blob's file, opened beneath the root: a link anywhere on the way
    /// or anything but a regular file is refused (`not a regular file`).
    fn open_blob_file(&self, blob: &BlobRef) -> io::Result<(fs::File, PathBuf)> {
        let digest = blob.digest.as_deref().unwrap_or(&blob.locator);
        let tried = self.blob_candidates_rel(digest);
        for p in &tried {
            match self.dir.open_file(p) {
                Ok(f) => return Ok((f, self.root.join(p))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(e),
            }
        }
        let list: Vec<String> = tried
            .iter()
            .map(|p| self.root.join(p).display().to_string())
            .collect();
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("blob {digest} not found (tried {})", list.join(", ")),
        ))
    }
}

fn is_gzip(r: &mut BufReader<fs::File>) -> io::Result<bool> {
    let buf = r.fill_buf()?;
    Ok(buf.len() >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
}

impl BackupReader for ZextrasReader {
    fn format_name(&self) -> &'static str {
        "zextras"
    }

    fn list_accounts(&self) -> Result<Vec<AccountEntry>> {
        let entries = match self.dir.read_dir("accounts") {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => bail!("cannot list accounts: {e}"),
        };
        // Links are listed so that reading them is refused and reported.
        let mut keys: Vec<String> = entries
            .into_iter()
            .filter(|e| matches!(e.kind, EntryKind::Dir | EntryKind::Symlink))
            .map(|e| account_key(&e.name))
            .filter(|k| !k.starts_with('.'))
            .collect();
        keys.sort();
        let dir = Path::new("accounts");
        let root = &self.dir;
        let next = AtomicUsize::new(0);
        let mut sigs: Vec<Option<String>> = vec![None; keys.len()];
        let results: Vec<Vec<(usize, String)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..worker_count().min(keys.len().max(1)))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(k) = keys.get(i) else { break };
                            out.push((i, account_signature(root, &dir.join(key_dir(k)))));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, sig) in results.into_iter().flatten() {
            sigs[i] = Some(sig);
        }
        Ok(keys
            .into_iter()
            .zip(sigs)
            .map(|(key, sig)| {
                let signature =
                    sig.unwrap_or_else(|| account_signature(root, &dir.join(key_dir(&key))));
                AccountEntry { key, signature }
            })
            .collect())
    }

    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> Result<Account> {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            bail!("no account {key:?} in {}", self.root.display());
        }
        let raw = key_dir(key);
        let rel = Path::new("accounts").join(&raw);
        let acct_dir = match self.dir.open_dir(&rel) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("no account {key:?} in {}", self.root.display())
            }
            // A link (refused) or not a directory: reported by the caller.
            Err(e) => bail!("account {key:?} refused: {e}"),
        };
        let mut acc = Account {
            key: key.to_string(),
            name: key.to_string(),
            status: "unknown".to_string(),
            ..Account::default()
        };
        parse_account_info(key, &acct_dir, &mut acc);
        if raw.to_str().is_none() {
            acc.problems.push(format!(
                "account directory name is not UTF-8: shown as {:?} (invalid bytes as %XX, % as %25) \
                 unless account_info names the account",
                key
            ));
        }

        let mut work = Vec::new();
        subdirs(&acct_dir, "items", &mut work, false, &mut acc.problems);
        subdirs(&acct_dir, "drive_items", &mut work, true, &mut acc.problems);

        let next = AtomicUsize::new(0);
        let mut broken = 0usize;
        let mut drive_start: Option<Millis> = None;
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel::<Msg>(1024);
            for _ in 0..worker_count().min(work.len().max(1)) {
                let tx = tx.clone();
                let (work, next, acct_dir) = (&work, &next, &acct_dir);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(w) = work.get(i) else { break };
                    if !read_work_dir(acct_dir, w, &tx) {
                        break;
                    }
                });
            }
            drop(tx);
            for msg in rx {
                match msg {
                    Msg::Item(item, drive) => {
                        if item.error.is_some() {
                            broken += 1;
                        }
                        if drive {
                            if let Some(t) = item.states.iter().map(|s| s.start).min() {
                                drive_start = Some(drive_start.map_or(t, |d| d.min(t)));
                            }
                        }
                        sink(item);
                    }
                    Msg::Problem(p) => acc.problems.push(p),
                }
            }
        });
        if let Some(start) = drive_start {
            sink(Item {
                id: DRIVE_FOLDER,
                label: DRIVE_FOLDER.to_string(),
                history_key: DRIVE_FOLDER.to_string(),
                states: vec![ItemState {
                    start,
                    kind: Some(ItemKind::Folder),
                    folder_id: Some(VIEW_ROOT),
                    name: Some(DRIVE_FOLDER_NAME.to_string()),
                    ..ItemState::default()
                }],
                error: None,
            });
        }
        if broken > 0 {
            acc.problems
                .push(format!("{broken} item(s) with unreadable metadata"));
        }
        Ok(acc)
    }

    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        let (file, path) = self.open_blob_file(blob)?;
        let mut r = BufReader::with_capacity(BLOB_BUF, file);
        let gz = is_gzip(&mut r)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let expect = blob
            .digest
            .as_deref()
            .map(normalize_digest)
            .unwrap_or_default();
        let hasher = is_sha256_digest(&expect).then(Sha256::new);
        let inner: Box<dyn Read + Send> = if gz {
            let cap = inflate_cap(r.get_ref())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Box::new(GzipStream::new(r, path.clone(), cap))
        } else {
            Box::new(r)
        };
        Ok(Box::new(Checked {
            inner,
            path,
            hasher,
            expect,
            failed: None,
        }))
    }

    fn blob_len(&self, blob: &BlobRef, claimed: Option<u64>) -> io::Result<u64> {
        let (file, path) = self.open_blob_file(blob)?;
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let len = file.metadata().map_err(with_path)?.len();
        // The common case reads six bytes: the gzip magic and the trailer's
        // length field (this runs for every `stat`).
        use std::os::unix::fs::FileExt;
        let mut magic = [0u8; 2];
        let magic_len = file.read_at(&mut magic, 0).map_err(with_path)?;
        if magic_len < 2 || magic != [0x1f, 0x8b] {
            return Ok(len);
        }
        if let Some(c) = claimed {
            if len >= 18 {
                let mut t = [0u8; 4];
                file.read_exact_at(&mut t, len - 4).map_err(with_path)?;
                if u64::from(u32::from_le_bytes(t)) == c % (1u64 << 32) {
                    return Ok(c);
                }
            }
        }
        let cap = inflate_cap(&file).map_err(with_path)?;
        let r = BufReader::with_capacity(BLOB_BUF, file);
        let mut gz = GzipStream::new(r, path.clone(), cap);
        let mut buf = vec![0u8; BLOB_BUF];
        let mut n = 0u64;
        loop {
            match gz.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn blob_path(&self, blob: &BlobRef) -> Option<PathBuf> {
        let digest = blob.digest.as_deref().unwrap_or(&blob.locator);
        let tried = self.blob_candidates(digest);
        tried
            .iter()
            .find(|p| fs::symlink_metadata(p).is_ok())
            .or(tried.first())
            .cloned()
    }

    fn problems(&self) -> Vec<String> {
        // Links where blob directories should be: their blobs are refused
        // item by item; the link itself is said once here.
        let Ok(entries) = self.dir.read_dir("items") else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .into_iter()
            .filter(|e| e.kind == EntryKind::Symlink)
            .map(|e| {
                format!(
                    "{} is a symbolic link, not followed",
                    self.root.join("items").join(&e.name).display()
                )
            })
            .collect();
        out.sort();
        out
    }

    fn all_blobs(&self) -> Option<Vec<BlobRef>> {
        // Every entry below items/ (a digest written with `/` nests deeper),
        // links and FIFOs included, none followed.
        let items = Path::new("items");
        let mut out = Vec::new();
        let mut stack = vec![items.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = self.dir.read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = dir.join(&e.name);
                let is_dir = e.kind == EntryKind::Dir;
                if dir == items {
                    if is_dir {
                        stack.push(path);
                    }
                    continue;
                }
                let Ok(rel) = path.strip_prefix(items) else {
                    continue;
                };
                let mut comps = rel.components();
                comps.next(); // the two-character folder
                let name: PathBuf = comps.collect();
                let name = name.to_string_lossy().replace('/', ",");
                // A nested directory, or a directory where a blob should be:
                // only the latter names a digest.
                if is_dir && !is_sha256_digest(&name) {
                    stack.push(path);
                    continue;
                }
                out.push(BlobRef {
                    locator: name.clone(),
                    digest: Some(name),
                });
            }
        }
        out.sort_by(|a, b| a.locator.cmp(&b.locator));
        Some(out)
    }
}

#[cfg(test)]
mod tests;
