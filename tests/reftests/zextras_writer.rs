//! Writes a generated backup as a Zextras / Carbonio backup path, from
//! `docs/formats/zextras.md` alone (not from the reader): key spellings,
//! the three timestamp forms, the flag encodings, gzip blobs with one or
//! several members or stored uncompressed, digests written with `/`, and
//! the damage of each blob (missing, corrupt, truncated, digest mismatch).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{FixedOffset, TimeZone, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use mailbackfs::model::{Account, Item, ItemKind, ItemState, Millis};
use serde_json::{json, Map, Value};

use super::gen::{Backup, Blob, Damage};

/// A small deterministic generator of choices (splitmix64).
pub struct Choices(u64);

impl Choices {
    pub fn new(seed: u64) -> Choices {
        Choices(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one<'a, T>(&mut self, of: &'a [T]) -> &'a T {
        &of[self.below(of.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One of the spellings the doc's key normalisation makes equal.
fn key(c: &mut Choices, spellings: &[&'static str]) -> String {
    c.one(spellings).to_string()
}

/// A timestamp in one of the doc's forms: milliseconds, RFC 3339 (UTC or
/// with an offset, with or without a fraction), or `dd/MM/yyyy HH:mm:ss`.
fn timestamp(c: &mut Choices, t: Millis) -> Value {
    let whole_second = t % 1000 == 0;
    match c.below(5) {
        0 | 1 => json!(t),
        2 => {
            let dt = Utc.timestamp_millis_opt(t).unwrap();
            json!(dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        }
        3 => {
            let off = FixedOffset::east_opt(2 * 3600).unwrap();
            let dt = off.timestamp_millis_opt(t).unwrap();
            json!(dt.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string())
        }
        _ if whole_second => {
            let dt = Utc.timestamp_millis_opt(t).unwrap();
            json!(dt.format("%d/%m/%Y %H:%M:%S").to_string())
        }
        _ => {
            let dt = Utc.timestamp_millis_opt(t).unwrap();
            if whole_second {
                json!(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            } else {
                json!(dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            }
        }
    }
}

/// The flag table of the doc: bit, character, IMAP word.
const FLAG_TABLE: [(u32, char, Option<&str>); 12] = [
    (0, 's', None),
    (1, 'a', None),
    (2, 'r', Some("\\Answered")),
    (3, 'w', Some("$Forwarded")),
    (5, 'f', Some("\\Flagged")),
    (6, 'd', Some("\\Draft")),
    (7, 'x', Some("\\Deleted")),
    (8, 'n', Some("$MDNSent")),
    (9, 'u', None),
    (10, '!', None),
    (11, '?', None),
    (19, '*', None),
];
const UNREAD: u32 = 9;

/// The `flags` value for IMAP words, or `None` to leave the key out (only
/// when no bit is set: the default is 0, read).
fn flags_value(c: &mut Choices, words: &[String]) -> Option<Value> {
    let mut bits: u64 = 0;
    if !words.iter().any(|w| w == "\\Seen") {
        bits |= 1 << UNREAD;
    }
    for (bit, _, word) in FLAG_TABLE {
        if word.is_some_and(|w| words.iter().any(|x| x == w)) {
            bits |= 1 << bit;
        }
    }
    // Bits without a word change nothing that is shown.
    if c.chance(30) {
        bits |= 1 << *c.one(&[0u32, 1, 10, 19]);
    }
    if bits == 0 && c.chance(40) {
        return None;
    }
    Some(match c.below(3) {
        0 => json!(bits),
        1 => json!(bits.to_string()),
        _ => {
            let chars: String = FLAG_TABLE
                .iter()
                .filter(|(bit, _, _)| bits & (1 << bit) != 0)
                .map(|(_, ch, _)| *ch)
                .collect();
            json!(chars)
        }
    })
}

fn type_value(c: &mut Choices, kind: ItemKind) -> Value {
    let (name, code) = match kind {
        ItemKind::Folder => ("folder", 1),
        ItemKind::Message => ("message", 5),
        ItemKind::Contact => ("contact", 6),
        ItemKind::Document => ("document", 8),
        ItemKind::Appointment => ("appointment", 11),
        ItemKind::Task => ("task", 15),
        ItemKind::Hidden => *c.one(&[
            ("tag", 3),
            ("conversation", 4),
            ("searchfolder", 2),
            ("mountpoint", 13),
            ("chat", 16),
            ("wiki", 14),
            ("note", 9),
            ("unheard-of", 99),
        ]),
    };
    match c.below(4) {
        0 => json!(code),
        1 => json!(name.to_uppercase()),
        _ => json!(name),
    }
}

/// A digest as metadata may write it: with `,` or with `/`.
fn digest_value(c: &mut Choices, d: &str) -> Value {
    if c.chance(50) {
        json!(d.replace(',', "/"))
    } else {
        json!(d)
    }
}

fn state_object(c: &mut Choices, id: i64, s: &ItemState, blobs: &BTreeMap<String, Blob>) -> Value {
    let mut o = Map::new();
    match c.below(20) {
        // The file name wins when they disagree.
        0 => {
            o.insert("id".into(), json!(id + 100_000));
        }
        1..=13 => {
            o.insert("id".into(), json!(id));
        }
        _ => {}
    }
    o.insert(
        key(c, &["start_date", "startDate", "start-date", "StartDate"]),
        timestamp(c, s.start),
    );
    match s.end {
        Some(e) => {
            o.insert(key(c, &["end_date", "endDate"]), timestamp(c, e));
        }
        None if c.chance(20) => {
            o.insert("end_date".into(), Value::Null);
        }
        None => {}
    }
    let kind = s.kind.unwrap();
    if s.deleted {
        // A deletion needs only its start and `deleted`.
        o.insert("deleted".into(), json!(true));
        if c.chance(50) {
            o.insert("type".into(), type_value(c, kind));
        }
        if let Some(f) = s.folder_id {
            o.insert(key(c, &["folder_id", "folderId"]), json!(f));
        }
        if c.chance(30) {
            if let Some(v) = flags_value(c, &s.flags) {
                o.insert("flags".into(), v);
            }
        }
        return Value::Object(o);
    }
    o.insert("type".into(), type_value(c, kind));
    if c.chance(20) {
        o.insert("deleted".into(), json!(false));
    }
    if let Some(f) = s.folder_id {
        o.insert(key(c, &["folder_id", "folderId", "FolderId"]), json!(f));
    }
    if let Some(n) = &s.name {
        o.insert("name".into(), json!(n));
    }
    if let Some(n) = &s.subject {
        o.insert("subject".into(), json!(n));
    }
    if let Some(b) = &s.blob {
        o.insert("digest".into(), digest_value(c, &b.locator));
        let real = blobs[&b.locator].bytes.len() as u64;
        match c.below(4) {
            // The blob decides the size: a wrong claim changes nothing.
            0 => {
                o.insert("size".into(), json!(real + 17));
            }
            1 => {}
            _ => {
                o.insert("size".into(), json!(real));
            }
        }
    }
    if let Some(d) = s.date {
        o.insert("date".into(), timestamp(c, d));
    }
    if let Some(v) = flags_value(c, &s.flags) {
        o.insert("flags".into(), v);
    }
    if !s.tags.is_empty() || c.chance(50) {
        o.insert("tags".into(), json!(s.tags));
    }
    if let Some(f) = &s.fields {
        o.insert("fields".into(), Value::Object(f.clone()));
    }
    if c.chance(30) {
        o.insert("revision".into(), json!(3));
        o.insert("someUnknownKey".into(), json!({"x": [1, 2]}));
    }
    Value::Object(o)
}

/// The states in a file order the reader must undo: groups of one start
/// in any order, each group in its own order ("sort by start_date, then by
/// position").
fn file_order(c: &mut Choices, states: &[ItemState]) -> Vec<usize> {
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
    for (i, s) in states.iter().enumerate() {
        match groups.last_mut() {
            Some((_, g)) if states[g[0]].start == s.start => g.push(i),
            _ => groups.push((c.next(), vec![i])),
        }
    }
    groups.sort_by_key(|(k, _)| *k);
    groups.into_iter().flat_map(|(_, g)| g).collect()
}

fn write_item(c: &mut Choices, dir: &Path, item: &Item, blobs: &BTreeMap<String, Blob>) {
    let nn = dir.join(format!("{:02}", item.id.rem_euclid(100)));
    std::fs::create_dir_all(&nn).unwrap();
    let bytes = if item.error.is_some() {
        br#"[{"id": 299, "type": "message", "start_date": "#.to_vec()
    } else {
        let order = file_order(c, &item.states);
        let arr: Vec<Value> = order
            .iter()
            .map(|&i| state_object(c, item.id, &item.states[i], blobs))
            .collect();
        let v = if arr.len() == 1 && c.chance(20) {
            // A metadata file that is an object is one state.
            arr.into_iter().next().unwrap()
        } else {
            Value::Array(arr)
        };
        let json = if c.chance(50) {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        };
        damage_text(c, json)
    };
    std::fs::write(nn.join(item.id.to_string()), bytes).unwrap();
}

/// U+FFFD in a metadata file written as what the doc says becomes U+FFFD:
/// an invalid UTF-8 byte, or an unpaired surrogate escape.
fn damage_text(c: &mut Choices, json: Vec<u8>) -> Vec<u8> {
    const FFFD: &[u8] = "\u{FFFD}".as_bytes();
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i..].starts_with(FFFD) {
            out.extend_from_slice(match c.below(3) {
                0 => b"\xff".as_slice(),
                1 => br"\ud800".as_slice(),
                _ => FFFD,
            });
            i += FFFD.len();
        } else {
            out.push(json[i]);
            i += 1;
        }
    }
    out
}

fn write_account_info(c: &mut Choices, dir: &Path, a: &Account) {
    let mut o = Map::new();
    o.insert(key(c, &["id", "Id"]), json!(a.key));
    o.insert(key(c, &["name", "Name"]), json!(a.name));
    o.insert(key(c, &["status", "Status"]), json!(a.status));
    if let Some(d) = a.deleted_at {
        o.insert(key(c, &["deleted_date", "deletedDate"]), timestamp(c, d));
    }
    o.insert("aliases".into(), json!([]));
    o.insert("attrs".into(), json!({"displayName": "Someone"}));
    std::fs::write(
        dir.join("account_info"),
        serde_json::to_vec(&Value::Object(o)).unwrap(),
    )
    .unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The stored form of a blob, with its damage.
fn stored_blob(c: &mut Choices, b: &Blob) -> Vec<u8> {
    match b.damage {
        Damage::Corrupt => {
            let mut g = gzip(&b.bytes);
            let n = g.len();
            match c.below(3) {
                0 => g[n - 8] ^= 0x55, // the CRC32 of the trailer
                1 => g[n - 1] ^= 0x10, // the length of the trailer
                _ => g.extend(b"trailing garbage after the last member"),
            }
            g
        }
        Damage::Truncated => {
            let g = gzip(&b.bytes);
            let cut = (g.len() / 2).max(12).min(g.len() - 1);
            g[..cut].to_vec()
        }
        _ => match c.below(4) {
            0 => b.bytes.clone(),
            1 => {
                // Several members, one after the other.
                let mid = b.bytes.len() / 3;
                let mut g = gzip(&b.bytes[..mid]);
                g.extend(gzip(&b.bytes[mid..]));
                g
            }
            _ => gzip(&b.bytes),
        },
    }
}

/// Write `backup` as a backup path under `root`.
pub fn write(backup: &Backup, root: &Path, seed: u64) {
    let mut c = Choices::new(seed);
    // What a backup path holds besides: ignored for browsing.
    std::fs::create_dir_all(root.join("servers")).unwrap();
    std::fs::write(
        root.join("servers/customizations_12_07_13#10_00_00.tar.gz"),
        b"x",
    )
    .unwrap();
    std::fs::write(root.join("map_server1"), b"{}").unwrap();
    std::fs::create_dir_all(root.join("accounts")).unwrap();
    std::fs::write(root.join("accounts/README"), b"not an account").unwrap();
    for (account, items) in &backup.accounts {
        let dir = root.join("accounts").join(&account.key);
        std::fs::create_dir_all(dir.join("items/00")).unwrap();
        std::fs::write(dir.join("items/00/notes.txt"), b"not an item").unwrap();
        std::fs::write(dir.join("id_mapper.log"), b"").unwrap();
        std::fs::create_dir_all(dir.join("items")).unwrap();
        if account.status != super::gen::NO_INFO {
            write_account_info(&mut c, &dir, account);
        }
        std::fs::write(dir.join("account_stat"), b"{}").unwrap();
        for item in items {
            write_item(&mut c, &dir.join("items"), item, &backup.blobs);
        }
    }
    let used: std::collections::BTreeSet<&str> = backup
        .accounts
        .iter()
        .flat_map(|(_, items)| items.iter().flat_map(|i| &i.states))
        .filter_map(|s| s.blob.as_ref().map(|b| b.locator.as_str()))
        .collect();
    for b in backup.blobs.values() {
        if b.damage == Damage::Missing || !used.contains(b.digest.as_str()) {
            continue;
        }
        let chars: Vec<char> = b.digest.chars().collect();
        // Where the doc puts it; sometimes where the fallback looks.
        let xx: String = if c.chance(20) {
            chars[chars.len() - 2..].iter().collect()
        } else {
            chars[..2].iter().collect()
        };
        // Or under the digest with `/` in place of `,` (nested directories).
        let name = if b.digest.contains(',') && c.chance(20) {
            b.digest.replace(',', "/")
        } else {
            b.digest.clone()
        };
        let path = root.join("items").join(xx).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = stored_blob(&mut c, b);
        std::fs::write(path, bytes).unwrap();
    }
}
