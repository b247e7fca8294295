//! Random backups in the common model (`mailbackfs::model`).
//!
//! Proptest draws a [`Spec`] of small indices (each one shrinks towards its
//! plainest choice, index 0) and [`build`] turns it into a [`Backup`]:
//! accounts, folders with renames, moves, deletions and parent cycles, file
//! items with states over time (equal starts, explicit ends, deletions,
//! re-creations), odd and colliding names, flags, tags, and a shared pool of
//! blobs some of which are broken.

use std::collections::BTreeMap;

use base64::Engine as _;
use mailbackfs::model::{Account, BlobRef, Item, ItemKind, ItemState, Millis};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

pub const H: Millis = 3_600_000;
pub const DAY: Millis = 86_400_000;
/// 2013-07-12T00:00:00Z.
pub const DAY0: Millis = 1_373_587_200_000;

/// What is wrong with a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    None,
    /// No file at all.
    Missing,
    /// All bytes decompress, then the gzip CRC does not match.
    Corrupt,
    /// The gzip stream ends early: a prefix decompresses.
    Truncated,
    /// The bytes are sound but do not hash to the digest.
    DigestMismatch,
}

/// One blob: its digest as a path component (`/` written as `,`), the
/// bytes it should hold, and its damage.
#[derive(Clone)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub damage: Damage,
    /// For appointment blobs: the text/calendar part the file must serve.
    pub calendar: Option<Vec<u8>>,
}

impl std::fmt::Debug for Blob {
    // Blobs reach 300 kB: a failing case prints their size, not their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Blob({}, {} bytes, {:?})",
            self.digest,
            self.bytes.len(),
            self.damage
        )
    }
}

/// A generated backup: the model and its blobs by digest.
#[derive(Clone, Debug)]
pub struct Backup {
    pub accounts: Vec<(Account, Vec<Item>)>,
    pub blobs: BTreeMap<String, Blob>,
}

// ----- the spec proptest draws --------------------------------------------

#[derive(Clone, Debug)]
pub struct StateSpec {
    pub delta: u8,
    pub folder: u8,
    pub text: u8,
    pub blob: u8,
    pub flags: u8,
    pub tags: u8,
    pub deleted: bool,
    pub end: Option<u8>,
    pub date: u8,
    /// A deleted state keeps no folder of its own (it takes the previous).
    pub no_folder: bool,
}

#[derive(Clone, Debug)]
pub struct ItemSpec {
    pub kind: u8,
    pub id: u8,
    pub base: u8,
    pub states: Vec<StateSpec>,
}

#[derive(Clone, Debug)]
pub struct AccountSpec {
    pub status: u8,
    pub folders: Vec<ItemSpec>,
    pub items: Vec<ItemSpec>,
    pub broken_meta: bool,
    pub hidden_item: bool,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub accounts: Vec<AccountSpec>,
    /// Damage of each blob of the pool (index into [`DAMAGES`]).
    pub damage: Vec<u8>,
}

/// Bounds of a generated backup; larger with `REFTEST_SIZE=large`.
#[derive(Clone, Copy)]
pub struct Size {
    pub accounts: usize,
    pub folders: usize,
    pub items: usize,
    pub states: usize,
}

impl Size {
    pub fn from_env() -> Size {
        match std::env::var("REFTEST_SIZE").as_deref() {
            Ok("large") => Size {
                accounts: 3,
                folders: 12,
                items: 40,
                states: 6,
            },
            _ => Size {
                accounts: 2,
                folders: 6,
                items: 12,
                states: 4,
            },
        }
    }
}

fn state_spec() -> impl Strategy<Value = StateSpec> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<u8>(),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.15, any::<u8>()),
            any::<u8>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((delta, folder, text, blob, flags), (tags, deleted, end, date, no_folder))| {
                StateSpec {
                    delta,
                    folder,
                    text,
                    blob,
                    flags,
                    tags,
                    deleted,
                    end,
                    date,
                    no_folder,
                }
            },
        )
}

fn item_spec(max_states: usize) -> impl Strategy<Value = ItemSpec> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(state_spec(), 1..=max_states),
    )
        .prop_map(|(kind, id, base, states)| ItemSpec {
            kind,
            id,
            base,
            states,
        })
}

fn account_spec(size: Size) -> impl Strategy<Value = AccountSpec> {
    (
        any::<u8>(),
        prop::collection::vec(item_spec(size.states), 0..=size.folders),
        prop::collection::vec(item_spec(size.states), 0..=size.items),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(status, folders, items, broken_meta, hidden_item)| AccountSpec {
                status,
                folders,
                items,
                broken_meta,
                hidden_item,
            },
        )
}

pub fn spec(size: Size) -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(account_spec(size), 1..=size.accounts),
        prop::collection::vec(any::<u8>(), BLOB_POOL),
    )
        .prop_map(|(accounts, damage)| Spec { accounts, damage })
}

// ----- tables the indices pick from ----------------------------------------

/// Gaps between successive states: equal starts, a millisecond, day edges.
const DELTAS: [Millis; 9] = [H, 0, 1, 1000, DAY, DAY - 1, 3 * DAY, 60_000, DAY + 1];
/// Explicit ends, after the start.
const ENDS: [Millis; 5] = [30 * 60_000, 0, 1, DAY, 2 * DAY];
/// Where items start (relative to DAY0).
const BASES: [Millis; 6] = [0, DAY - 1, DAY, 2 * DAY + 12 * H, 5 * DAY - 1000, 2 * H + 1];

const FOLDER_NAMES: &[&str] = &[
    "Projects",
    "same",
    "Inbox",
    "",
    ".",
    "..",
    "a/b",
    "a_b",
    "tab\there",
    "del\u{7f}",
    "c1\u{85}x",
    // The name of the directory of the missing folder 777.
    "unknown_777",
    "Trash",
    "日本",
    "same",
    "LONG_X",
    "LONG_E",
    "Réunion",
];

const SUBJECTS: &[&str] = &[
    "Hello world",
    "",
    "..",
    "!!! ???",
    "Re: [list] Réunion à 10h!",
    "日本語のテスト",
    "🎉🎉",
    "a/b\u{7}c",
    "LONG_WORDS",
    "Service mailboxd started on test.example.com",
    ".",
    "x",
    // Written as invalid UTF-8 or an unpaired surrogate escape by the
    // Zextras writer: the reader must give U+FFFD.
    "bad \u{FFFD} bytes",
];

const CONTACT_NAMES: &[&str] = &["John Smith", "", "..", "--", "Zoë", "O'Brien, Ann"];

const DOC_NAMES: &[&str] = &[
    "report.pdf",
    "README",
    "..",
    "",
    "x.tar.gz",
    "???.odt",
    ".bashrc",
    "notes 2013.txt",
];

/// The words of Zimbra's flag table that `.flags` shows.
pub const FLAG_WORDS: [&str; 7] = [
    "\\Seen",
    "\\Answered",
    "$Forwarded",
    "\\Flagged",
    "\\Draft",
    "\\Deleted",
    "$MDNSent",
];

/// Flags of a state: mostly the common sets (read, unread, read and
/// flagged), else any combination of the words.
fn flag_words(pick: u8) -> Vec<String> {
    let bits = match pick {
        0..=63 => 1,
        64..=95 => 0,
        96..=127 => 0b1001,
        _ => pick & 0x7f,
    };
    FLAG_WORDS
        .iter()
        .enumerate()
        .filter(|(b, _)| bits & (1 << b) != 0)
        .map(|(_, w)| w.to_string())
        .collect()
}

const TAGS: &[&[&str]] = &[&[], &["work"], &["work", "urgent"], &["ünï"]];

pub const DAMAGES: [Damage; 8] = [
    Damage::None,
    Damage::None,
    Damage::None,
    Damage::None,
    Damage::Missing,
    Damage::Corrupt,
    Damage::Truncated,
    Damage::DigestMismatch,
];

/// Blobs per category (messages, calendars, documents, contacts).
const PER_CATEGORY: usize = 6;
const BLOB_POOL: usize = 4 * PER_CATEGORY;

/// Parent choices of folders and items: system folders, the generated
/// folders, the mailbox root, Tags (hidden) and a folder that never exists.
fn folder_choice(idx: u8, user_folders: &[i64]) -> i64 {
    let fixed = [2, 1, 3, 11, 8, 777];
    let n = fixed.len() + user_folders.len();
    let i = idx as usize % n;
    if i < fixed.len() {
        fixed[i]
    } else {
        user_folders[i - fixed.len()]
    }
}

fn pick<T: Copy>(table: &[T], idx: u8) -> T {
    table[idx as usize % table.len()]
}

fn long_name(name: &str) -> String {
    match name {
        "LONG_X" => "x".repeat(300),
        "LONG_E" => "é".repeat(200),
        "LONG_WORDS" => "word ".repeat(80),
        other => other.to_string(),
    }
}

/// The digest of `bytes` as the format names blobs (base64 SHA-256, `/`
/// written as `,`).
pub fn digest_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(bytes))
        .replace('/', ",")
}

fn message_bytes(i: usize) -> Vec<u8> {
    let mut b = format!(
        "Subject: message {i}\r\nFrom: a@example.com\r\nDate: Fri, 12 Jul 2013 14:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let len = match i {
        0 => 20,
        3 => 300_000,
        _ => 37 * i * i + 5,
    };
    b.extend((0..len).map(|k| {
        if k % 61 == 60 {
            b'\n'
        } else {
            (k * 7 + i) as u8 | 0x20
        }
    }));
    b
}

fn calendar_bytes(i: usize) -> (Vec<u8>, Vec<u8>) {
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ev{i}\r\nSUMMARY:Meeting {i}\r\n\
         DTSTART:20130712T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes();
    let mut msg = format!(
        "Subject: Meeting {i}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"BND{i}\"\r\n\r\n\
         --BND{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMeeting {i}\r\n\
         --BND{i}\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n"
    )
    .into_bytes();
    msg.extend(&ics);
    msg.extend(format!("\r\n--BND{i}--\r\n").as_bytes());
    (msg, ics)
}

fn document_bytes(i: usize) -> Vec<u8> {
    (0..(i * 1000 + 3))
        .map(|k| (k * 31 + i * 5) as u8)
        .collect()
}

fn contact_bytes(i: usize) -> Vec<u8> {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Contact {i}\r\nEND:VCARD\r\n").into_bytes()
}

fn blob_pool(damage: &[u8]) -> Vec<Blob> {
    (0..BLOB_POOL)
        .map(|n| {
            let (cat, i) = (n / PER_CATEGORY, n % PER_CATEGORY);
            let (bytes, calendar) = match cat {
                0 => (message_bytes(i), None),
                1 => {
                    let (m, ics) = calendar_bytes(i);
                    (m, Some(ics))
                }
                2 => (document_bytes(i), None),
                _ => (contact_bytes(i), None),
            };
            let damage = pick(&DAMAGES, damage[n]);
            let digest = if damage == Damage::DigestMismatch {
                digest_of(&[&bytes[..], b"tampered"].concat())
            } else {
                digest_of(&bytes)
            };
            Blob {
                digest,
                bytes,
                damage,
                calendar,
            }
        })
        .collect()
}

// ----- building the model ----------------------------------------------------

fn blob_ref(b: &Blob) -> BlobRef {
    BlobRef {
        locator: b.digest.clone(),
        digest: Some(b.digest.clone()),
    }
}

fn system_folder(id: i64, name: &str, parent: i64) -> Item {
    item(
        id,
        vec![ItemState {
            start: DAY0 - DAY,
            kind: Some(ItemKind::Folder),
            folder_id: Some(parent),
            name: Some(name.into()),
            ..Default::default()
        }],
    )
}

fn item(id: i64, states: Vec<ItemState>) -> Item {
    Item {
        id,
        label: id.to_string(),
        history_key: id.to_string(),
        states,
        error: None,
    }
}

/// Starts of an item's states: its base, then the gaps.
fn starts(spec: &ItemSpec) -> Vec<Millis> {
    let mut t = DAY0 + pick(&BASES, spec.base);
    spec.states
        .iter()
        .map(|s| {
            t += pick(&DELTAS, s.delta);
            t
        })
        .collect()
}

/// Whether state `i` of `spec` is a deletion: never the first state, never
/// right after another deletion.
fn deleted_flags(spec: &ItemSpec) -> Vec<bool> {
    let mut out: Vec<bool> = Vec::new();
    for (i, s) in spec.states.iter().enumerate() {
        let d = s.deleted && i > 0 && !out[i - 1];
        out.push(d);
    }
    out
}

fn folder_item(id: i64, spec: &ItemSpec, user_folders: &[i64]) -> Item {
    let starts = starts(spec);
    let deleted = deleted_flags(spec);
    let states = spec
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| ItemState {
            start: starts[i],
            end: s.end.map(|e| starts[i] + pick(&ENDS, e)),
            deleted: deleted[i],
            kind: Some(ItemKind::Folder),
            folder_id: Some(folder_choice(s.folder, user_folders)),
            name: Some(long_name(pick(FOLDER_NAMES, s.text))),
            ..Default::default()
        })
        .collect();
    item(id, states)
}

const FILE_KINDS: [ItemKind; 6] = [
    ItemKind::Message,
    ItemKind::Message,
    ItemKind::Contact,
    ItemKind::Document,
    ItemKind::Appointment,
    ItemKind::Task,
];

fn file_item(id: i64, spec: &ItemSpec, user_folders: &[i64], blobs: &[Blob]) -> Item {
    let kind = pick(&FILE_KINDS, spec.kind);
    let starts = starts(spec);
    let deleted = deleted_flags(spec);
    let mut states: Vec<ItemState> = Vec::new();
    for (i, s) in spec.states.iter().enumerate() {
        let flags = flag_words(s.flags);
        let tags: Vec<String> = pick(TAGS, s.tags).iter().map(|t| t.to_string()).collect();
        let mut st = ItemState {
            start: starts[i],
            end: s.end.map(|e| starts[i] + pick(&ENDS, e)),
            kind: Some(kind),
            flags,
            tags,
            ..Default::default()
        };
        if deleted[i] {
            // What a deletion records: its start, maybe its folder (the
            // previous one) and flags or tags of its own.
            st.deleted = true;
            st.folder_id = if s.no_folder {
                None
            } else {
                states[i - 1].folder_id
            };
            states.push(st);
            continue;
        }
        st.folder_id = Some(folder_choice(s.folder, user_folders));
        st.date = Some(starts[i] - 1000 * s.date as Millis);
        let cat_blob = |cat: usize| &blobs[cat * PER_CATEGORY + s.blob as usize % PER_CATEGORY];
        match kind {
            ItemKind::Message => {
                st.subject = Some(long_name(pick(SUBJECTS, s.text)));
                st.blob = Some(blob_ref(cat_blob(0)));
            }
            ItemKind::Appointment | ItemKind::Task => {
                st.subject = Some(long_name(pick(SUBJECTS, s.text)));
                st.blob = Some(blob_ref(cat_blob(1)));
            }
            ItemKind::Document => {
                st.name = Some(pick(DOC_NAMES, s.text).to_string());
                st.blob = Some(blob_ref(cat_blob(2)));
                st.date = None;
            }
            _ => {
                st.name = Some(pick(CONTACT_NAMES, s.text).to_string());
                let mut fields = serde_json::Map::new();
                fields.insert("firstName".into(), "Ann".into());
                fields.insert("email".into(), format!("c{id}@example.com").into());
                st.fields = Some(fields);
                st.date = None;
                // Most contacts have no blob: their file is made from fields.
                if s.blob % 3 == 0 {
                    st.blob = Some(blob_ref(cat_blob(3)));
                }
            }
        }
        st.size = st.blob.as_ref().map(|b| {
            blobs
                .iter()
                .find(|x| x.digest == b.locator)
                .unwrap()
                .bytes
                .len() as u64
        });
        states.push(st);
    }
    item(id, states)
}

/// Item ids: small and large, some sharing their last two digits.
fn item_id(n: usize, pick_id: u8) -> i64 {
    300 + n as i64 * 100 + (pick_id % 4) as i64 * 7
}

/// The status of an account without `account_info`: whatever the reader
/// says (the doc does not say); the Zextras writer writes no
/// `account_info` for such an account.
pub const NO_INFO: &str = "(no account_info)";

pub fn build(spec: &Spec) -> Backup {
    let pool = blob_pool(&spec.damage);
    let mut accounts = Vec::new();
    for (a, aspec) in spec.accounts.iter().enumerate() {
        let status = pick(&["active", "closed", "deleted", "locked"], aspec.status);
        // Some accounts share an address with the first one, one is named
        // like the control directory, one has no account_info (its id is
        // its name; status left to the reader, see [`NO_INFO`]).
        let name = match aspec.status {
            192.. => "user0@example.com".to_string(),
            176..=191 => ".control".to_string(),
            _ => format!("user{a}@example.com"),
        };
        let key = format!("4a217bb3-6861-4c9f-80f8-f345ae2897b{a}");
        let no_info = (160..176).contains(&aspec.status);
        let account = Account {
            name: if no_info { key.clone() } else { name },
            status: if no_info {
                NO_INFO.into()
            } else {
                status.to_string()
            },
            deleted_at: (status == "deleted" && !no_info).then_some(DAY0 + 10 * DAY),
            key,
            ..Default::default()
        };
        let user_folders: Vec<i64> = (0..aspec.folders.len()).map(|i| 257 + i as i64).collect();
        let mut root = system_folder(1, "USER_ROOT", 11);
        if aspec.status % 2 == 1 {
            // Folders 1 and 11 are the root of every view, whatever their
            // metadata says.
            root.states.push(ItemState {
                start: DAY0 + DAY + 5,
                kind: Some(ItemKind::Folder),
                folder_id: Some(257),
                name: Some("moved root".into()),
                ..Default::default()
            });
            root.states.push(ItemState {
                start: DAY0 + 2 * DAY,
                deleted: true,
                kind: Some(ItemKind::Folder),
                ..Default::default()
            });
        }
        let mut items = vec![
            root,
            system_folder(2, "Inbox", 1),
            system_folder(3, "Trash", 1),
            system_folder(8, "Tags", 11),
        ];
        for (i, f) in aspec.folders.iter().enumerate() {
            items.push(folder_item(user_folders[i], f, &user_folders));
        }
        for (i, s) in aspec.items.iter().enumerate() {
            items.push(file_item(item_id(i, s.id), s, &user_folders, &pool));
        }
        if aspec.hidden_item {
            let mut tag = system_folder(64, "urgent", 8);
            tag.states[0].kind = Some(ItemKind::Hidden);
            tag.states[0].start = DAY0 + 3 * DAY;
            items.push(tag);
        }
        if aspec.broken_meta {
            items.push(Item {
                id: 299,
                label: "299".into(),
                history_key: "299".into(),
                states: vec![],
                error: Some("unparseable metadata".into()),
            });
        }
        accounts.push((account, items));
    }
    let blobs = pool.into_iter().map(|b| (b.digest.clone(), b)).collect();
    Backup { accounts, blobs }
}

/// The seed property cases are drawn from: `PROPTEST_RNG_SEED` when set,
/// else a fixed one, so that a run (CI's too) is repeatable.
pub fn rng_seed() -> proptest::test_runner::RngSeed {
    match std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => proptest::test_runner::RngSeed::Fixed(n),
        None => proptest::test_runner::RngSeed::Fixed(0x6d61_696c_6261_636b),
    }
}
