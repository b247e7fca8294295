//! Rebuild an account's history by replaying its chunk lines in order:
//! mailboxes (by UNIQUEID) become folder items, records (UNIQUEID, UID)
//! become message items, and every change seen at a line timestamp becomes
//! a new state starting at that timestamp.
//!
//! Changes are collected per timestamp and turned into states when the
//! timestamp moves on, so the transient tree in the middle of a subtree
//! rename (one `RENAME` per mailbox) never shows up as a state.
//!
//! Every map that is iterated is ordered (`BTreeMap`), so the states, and
//! the ids handed out, are a pure function of the data file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dlist::{Line, Value};
use super::names;
use super::synccrc;
use super::text::subject_of;
use crate::model::{ItemId, ItemKind, ItemState, VIEW_ROOT};

/// First id handed out to folders and messages.
pub const FIRST_ID: ItemId = 1000;

/// Where a message's bytes were seen.
#[derive(Clone, Debug)]
pub struct MessageLoc {
    pub chunk_id: i64,
    pub file_offset: u64,
    /// Offset of the literal's first byte in the uncompressed chunk.
    pub literal_offset: u64,
    pub size: u64,
}

struct Record {
    guid: String,
    flags: Vec<String>,
    internaldate: i64,
    size: Option<u64>,
    expunged: bool,
    /// Its term in the mailbox's `SYNC_CRC` (see `synccrc`).
    crc: u32,
}

struct Mailbox {
    name: String,
    /// Removed by `UNMAILBOX`, or replaced by a newer mailbox of its name.
    unmailboxed: bool,
    records: BTreeMap<u32, Record>,
    folder_id: ItemId,
    /// `LAST_UID` of the mailbox's first line, when it was complete (no
    /// `SINCE_MODSEQ`): every record up to it was listed there.
    full_last_uid: Option<u32>,
}

/// What the replay saw that the model does not show, and gaps in history.
#[derive(Default, Debug)]
pub struct Notes {
    /// Live records first seen in a partial update although an earlier
    /// complete line of their mailbox should have listed them: their
    /// earlier states are gone (`ctl_backups compact` rewrites old chunks).
    pub history_gaps: usize,
    /// Mailboxes replaced by a newer mailbox of the same name (deleted and
    /// re-created between two syncs).
    pub replaced_mailboxes: usize,
    /// `APPLY SEEN`: another user's seen state of a shared mailbox.
    pub seen_states: usize,
    /// `APPLY SIEVE` / `UNSIEVE` lines (sieve scripts).
    pub sieve_lines: usize,
    /// Mailbox lines carrying mailbox `ANNOTATIONS` (special-use, comments).
    pub annotated_mailboxes: BTreeSet<String>,
    /// Records found expunged by the `SYNC_CRC` difference of a line that
    /// did not list them (`expunge_mode: immediate`).
    pub inferred_expunges: usize,
    /// Lines after which the replayed mailbox does not have the server's
    /// `SYNC_CRC`: (line time, internal mailbox name).
    pub crc_mismatches: Vec<(i64, String)>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FolderKey {
    Mailbox(String),
    /// A folder synthesised for an intermediate name without a mailbox.
    Path(String),
}

/// A folder's shape at one time: name and parent.
type FolderShape = (String, ItemId);

struct FolderTrack {
    key: FolderKey,
    states: Vec<ItemState>,
    last: Option<FolderShape>,
}

/// What a message state records, before blobs are resolved.
#[derive(Clone, PartialEq)]
struct MsgShape {
    guid: String,
    flags: Vec<String>,
    internaldate: i64,
    size: Option<u64>,
}

/// A message state before its blob is resolved.
pub struct PendingState {
    pub start: i64,
    pub folder_id: ItemId,
    /// `None` = deleted.
    shape: Option<MsgShape>,
}

pub struct MessageTrack {
    pub uid: u32,
    pub guid: String,
    pub states: Vec<PendingState>,
    live: bool,
}

/// The replay state of one account.
pub struct Replay {
    mailboxes: BTreeMap<String, Mailbox>,
    byname: BTreeMap<String, String>,
    pub messages: HashMap<String, MessageLoc>,
    pub subjects: HashMap<String, String>,
    next_id: ItemId,
    folder_ids: HashMap<FolderKey, ItemId>,
    folders: BTreeMap<ItemId, FolderTrack>,
    record_ids: HashMap<(String, u32), ItemId>,
    pub message_items: BTreeMap<ItemId, MessageTrack>,
    dirty_records: BTreeSet<(String, u32)>,
    dirty_tree: bool,
    pending_ts: Option<i64>,
    /// Mailbox liveness as of the last flush.
    mailbox_live: BTreeMap<String, bool>,
    pub notes: Notes,
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    pub fn new() -> Self {
        Self {
            mailboxes: BTreeMap::new(),
            byname: BTreeMap::new(),
            messages: HashMap::new(),
            subjects: HashMap::new(),
            next_id: FIRST_ID,
            folder_ids: HashMap::new(),
            folders: BTreeMap::new(),
            record_ids: HashMap::new(),
            message_items: BTreeMap::new(),
            dirty_records: BTreeSet::new(),
            dirty_tree: false,
            pending_ts: None,
            mailbox_live: BTreeMap::new(),
            notes: Notes::default(),
        }
    }

    fn alloc(&mut self) -> ItemId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn folder_id(&mut self, key: FolderKey) -> ItemId {
        if let Some(id) = self.folder_ids.get(&key) {
            return *id;
        }
        let id = self.alloc();
        self.folder_ids.insert(key.clone(), id);
        self.folders.insert(
            id,
            FolderTrack {
                key,
                states: Vec::new(),
                last: None,
            },
        );
        id
    }

    /// Apply one line of chunk `chunk_id` (member at `file_offset`, bytes `data`).
    pub fn apply(&mut self, line: &Line, chunk_id: i64, file_offset: u64, data: &[u8]) {
        if let Some(t) = self.pending_ts {
            if t != line.ts {
                self.flush(t);
            }
        }
        self.pending_ts = Some(line.ts);
        let v = &line.value;
        match line.name.as_str() {
            "MAILBOX" => self.apply_mailbox(v, line.ts),
            "RENAME" => {
                let (Some(old), Some(new)) = (
                    v.get("OLDMBOXNAME").and_then(Value::as_str),
                    v.get("NEWMBOXNAME").and_then(Value::as_str),
                ) else {
                    return;
                };
                if let Some(u) = self.byname.remove(&old) {
                    self.claim_name(&new, &u);
                    if let Some(mb) = self.mailboxes.get_mut(&u) {
                        mb.name = new.clone();
                    }
                    self.byname.insert(new, u);
                    self.dirty_tree = true;
                }
            }
            "UNMAILBOX" => {
                let name = v
                    .as_str()
                    .or_else(|| v.get("MBOXNAME").and_then(Value::as_str));
                if let Some(u) = name.and_then(|n| self.byname.get(&n)) {
                    if let Some(mb) = self.mailboxes.get_mut(u) {
                        mb.unmailboxed = true;
                        self.dirty_tree = true;
                    }
                }
            }
            "EXPUNGE" => {
                let Some(u) = v.get("UNIQUEID").and_then(Value::as_str) else {
                    return;
                };
                let Some(mb) = self.mailboxes.get_mut(&u) else {
                    return;
                };
                for x in v.get("UID").map(Value::items).unwrap_or(&[]) {
                    let Some(uid) = x.as_i64().and_then(|n| u32::try_from(n).ok()) else {
                        continue;
                    };
                    if let Some(r) = mb.records.get_mut(&uid) {
                        r.expunged = true;
                        self.dirty_records.insert((u.clone(), uid));
                    }
                }
            }
            "MESSAGE" => {
                for f in v.items() {
                    if let Value::File { guid, size, start } = f {
                        self.messages.insert(
                            guid.clone(),
                            MessageLoc {
                                chunk_id,
                                file_offset,
                                literal_offset: *start as u64,
                                size: *size,
                            },
                        );
                        if !self.subjects.contains_key(guid) {
                            let end = (*start as u64 + *size).min(data.len() as u64) as usize;
                            if let Some(s) = subject_of(&data[*start..end]) {
                                self.subjects.insert(guid.clone(), s);
                            }
                        }
                    }
                }
            }
            "SEEN" => self.notes.seen_states += 1,
            "SIEVE" | "UNSIEVE" => self.notes.sieve_lines += 1,
            _ => {} // RESERVE, SUB, UNSUB: not part of the model
        }
    }

    /// Mailbox `u` takes `name`: a different live mailbox holding it was
    /// deleted and re-created between two syncs (no `UNMAILBOX` is sent),
    /// so it counts as deleted from this line on.
    fn claim_name(&mut self, name: &str, u: &str) {
        let Some(holder) = self.byname.get(name).filter(|h| *h != u).cloned() else {
            return;
        };
        if let Some(old) = self.mailboxes.get_mut(&holder) {
            if old.name == name && !old.unmailboxed {
                old.unmailboxed = true;
                self.notes.replaced_mailboxes += 1;
                self.dirty_tree = true;
            }
        }
    }

    fn apply_mailbox(&mut self, v: &Value, ts: i64) {
        let (Some(u), Some(name)) = (
            v.get("UNIQUEID").and_then(Value::as_str),
            v.get("MBOXNAME").and_then(Value::as_str),
        ) else {
            return;
        };
        let is_new = !self.mailboxes.contains_key(&u);
        if is_new {
            let fid = self.folder_id(FolderKey::Mailbox(u.clone()));
            self.mailboxes.insert(
                u.clone(),
                Mailbox {
                    name: String::new(),
                    unmailboxed: false,
                    records: BTreeMap::new(),
                    folder_id: fid,
                    full_last_uid: None,
                },
            );
        }
        self.claim_name(&name, &u);
        if v.get("ANNOTATIONS").is_some_and(|a| !a.items().is_empty()) {
            self.notes.annotated_mailboxes.insert(u.clone());
        }
        let partial = v.get("SINCE_MODSEQ").is_some();
        let last_uid = v
            .get("LAST_UID")
            .and_then(Value::as_i64)
            .and_then(|n| u32::try_from(n).ok());
        let mb = self.mailboxes.get_mut(&u).expect("just inserted");
        if mb.name != name || mb.unmailboxed {
            if self.byname.get(&mb.name) == Some(&u) {
                self.byname.remove(&mb.name);
            }
            mb.name = name.clone();
            mb.unmailboxed = false;
            self.dirty_tree = true;
        }
        self.byname.insert(name.clone(), u.clone());
        let mut new_records = Vec::new();
        let mut listed = BTreeSet::new();
        for r in v.get("RECORD").map(Value::items).unwrap_or(&[]) {
            let Some(uid) = r
                .get("UID")
                .and_then(Value::as_i64)
                .and_then(|n| u32::try_from(n).ok())
            else {
                continue;
            };
            let mut expunged = false;
            let mut flags = Vec::new();
            for f in r.get("FLAGS").map(Value::items).unwrap_or(&[]) {
                if let Some(f) = f.as_str() {
                    if f.eq_ignore_ascii_case("\\Expunged") {
                        expunged = true;
                    } else {
                        flags.push(f);
                    }
                }
            }
            let guid = r
                .get("GUID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let internaldate = r.get("INTERNALDATE").and_then(Value::as_i64).unwrap_or(0);
            let num = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
            let crc = if expunged {
                0
            } else {
                synccrc::record_crc(
                    uid,
                    u64::try_from(num("MODSEQ")).unwrap_or(0),
                    num("LAST_UPDATED"),
                    &flags,
                    internaldate,
                    &guid,
                )
            };
            listed.insert(uid);
            let rec = Record {
                guid,
                flags,
                internaldate,
                size: r
                    .get("SIZE")
                    .and_then(Value::as_i64)
                    .and_then(|n| u64::try_from(n).ok()),
                expunged,
                crc,
            };
            match mb.records.get_mut(&uid) {
                Some(old) => {
                    // The first \Expunged is kept (as the index's COALESCE does).
                    let was = old.expunged;
                    *old = rec;
                    old.expunged |= was;
                }
                None => {
                    if partial && !rec.expunged && mb.full_last_uid.is_some_and(|l| uid <= l) {
                        self.notes.history_gaps += 1;
                    }
                    mb.records.insert(uid, rec);
                    new_records.push(uid);
                }
            }
            self.dirty_records.insert((u.clone(), uid));
        }
        // Only the first line of a mailbox lists all its records; later
        // lines without SINCE_MODSEQ list only what changed, too.
        if is_new && !partial {
            mb.full_last_uid = last_uid;
        }
        for uid in new_records {
            let id = self.alloc();
            self.record_ids.insert((u.clone(), uid), id);
        }
        self.check_crc(&u, &name, v, ts, is_new && !partial, &listed);
    }

    /// Compare the replayed mailbox with the line's `SYNC_CRC`. A later
    /// line without `SINCE_MODSEQ` may leave out records the server
    /// expunged at once (`expunge_mode: immediate`): when exactly one set
    /// of unlisted records explains the difference, they are expunged at
    /// this line. Any other difference is a mismatch, reported.
    fn check_crc(
        &mut self,
        u: &str,
        name: &str,
        v: &Value,
        ts: i64,
        complete: bool,
        listed: &BTreeSet<u32>,
    ) {
        // Batched partial lines send SYNC_CRC 0 and no SYNC_CRC_ANNOT.
        if v.get("SYNC_CRC_ANNOT").is_none() {
            return;
        }
        let Some(want) = v
            .get("SYNC_CRC")
            .and_then(Value::as_i64)
            .and_then(|n| u32::try_from(n).ok())
        else {
            return;
        };
        let Some(mb) = self.mailboxes.get_mut(u) else {
            return;
        };
        let have = mb
            .records
            .values()
            .filter(|r| !r.expunged)
            .fold(0, |acc, r| acc ^ r.crc);
        if have == want {
            return;
        }
        if !complete && v.get("SINCE_MODSEQ").is_none() {
            let cands: Vec<u32> = mb
                .records
                .iter()
                .filter(|(uid, r)| !r.expunged && !listed.contains(uid))
                .map(|(uid, _)| *uid)
                .collect();
            let crcs: Vec<u32> = cands.iter().map(|uid| mb.records[uid].crc).collect();
            if let Some(gone) = synccrc::solve(have ^ want, &crcs) {
                for i in gone {
                    if let Some(r) = mb.records.get_mut(&cands[i]) {
                        r.expunged = true;
                        self.dirty_records.insert((u.to_string(), cands[i]));
                        self.notes.inferred_expunges += 1;
                    }
                }
                return;
            }
        }
        self.notes.crc_mismatches.push((ts, name.to_string()));
    }

    /// Whether a mailbox is live (not unmailboxed or replaced, not renamed
    /// to `DELETED.*`).
    fn is_live(mb: &Mailbox) -> bool {
        !mb.unmailboxed && !names::is_deleted(&mb.name)
    }

    fn flush(&mut self, ts: i64) {
        let start = ts.saturating_mul(1000);
        if self.dirty_tree {
            self.dirty_tree = false;
            self.flush_tree(start);
        }
        let dirty = std::mem::take(&mut self.dirty_records);
        for (u, uid) in dirty {
            self.flush_record(&u, uid, start);
        }
    }

    fn flush_tree(&mut self, start: i64) {
        // Live mailboxes by name.
        let mut live: BTreeMap<String, ItemId> = BTreeMap::new();
        let mut changed_liveness = Vec::new();
        for (u, mb) in &self.mailboxes {
            let l = Self::is_live(mb);
            // One live mailbox per name (claim_name); should two remain,
            // the one the name maps to wins.
            if l && (self.byname.get(&mb.name) == Some(u) || !live.contains_key(&mb.name)) {
                live.insert(mb.name.clone(), mb.folder_id);
            }
            if self.mailbox_live.get(u).copied().unwrap_or(false) != l {
                changed_liveness.push((u.clone(), l));
            }
        }
        for (u, l) in changed_liveness {
            self.mailbox_live.insert(u.clone(), l);
            if let Some(mb) = self.mailboxes.get(&u) {
                for uid in mb.records.keys() {
                    self.dirty_records.insert((u.clone(), *uid));
                }
            }
        }
        // Every folder node needed: live mailboxes and their ancestors.
        let mut nodes: BTreeMap<String, ItemId> = live.clone();
        let live_names: Vec<String> = live.keys().cloned().collect();
        for name in live_names {
            let mut cur = names::parent(&name).map(str::to_string);
            while let Some(p) = cur {
                if !nodes.contains_key(&p) {
                    let id = self.folder_id(FolderKey::Path(p.clone()));
                    nodes.insert(p.clone(), id);
                }
                cur = names::parent(&p).map(str::to_string);
            }
        }
        let mut desired: HashMap<ItemId, FolderShape> = HashMap::new();
        for (name, id) in &nodes {
            let parent = match names::parent(name) {
                Some(p) => nodes.get(p).copied().unwrap_or(VIEW_ROOT),
                None => VIEW_ROOT,
            };
            desired.insert(*id, (names::display(name), parent));
        }
        for (id, track) in self.folders.iter_mut() {
            let want = desired.remove(id);
            if want == track.last {
                continue;
            }
            match (&want, &track.last) {
                (Some((name, parent)), _) => track.states.push(ItemState {
                    start,
                    kind: Some(ItemKind::Folder),
                    folder_id: Some(*parent),
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                (None, Some((name, parent))) => track.states.push(ItemState {
                    start,
                    deleted: true,
                    kind: Some(ItemKind::Folder),
                    folder_id: Some(*parent),
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                (None, None) => {}
            }
            track.last = want;
        }
    }

    fn flush_record(&mut self, u: &str, uid: u32, start: i64) {
        let Some(mb) = self.mailboxes.get(u) else {
            return;
        };
        let Some(rec) = mb.records.get(&uid) else {
            return;
        };
        let Some(&id) = self.record_ids.get(&(u.to_string(), uid)) else {
            return;
        };
        let live = Self::is_live(mb) && !rec.expunged;
        let shape = MsgShape {
            guid: rec.guid.clone(),
            flags: rec.flags.clone(),
            internaldate: rec.internaldate,
            size: rec.size,
        };
        let folder_id = mb.folder_id;
        let track = self
            .message_items
            .entry(id)
            .or_insert_with(|| MessageTrack {
                uid,
                guid: rec.guid.clone(),
                states: Vec::new(),
                live: false,
            });
        if live {
            let same = track.live
                && track
                    .states
                    .last()
                    .and_then(|s| s.shape.as_ref())
                    .is_some_and(|s| *s == shape);
            if !same {
                track.states.push(PendingState {
                    start,
                    folder_id,
                    shape: Some(shape),
                });
            }
        } else if track.live {
            track.states.push(PendingState {
                start,
                folder_id,
                shape: None,
            });
        }
        track.live = live;
    }

    /// Turn the pending changes into states (call once after the last line).
    pub fn finish(&mut self) {
        if let Some(t) = self.pending_ts.take() {
            self.flush(t);
        }
    }

    /// Folder items: (id, history key, states).
    pub fn folder_items(&self) -> impl Iterator<Item = (ItemId, String, &[ItemState])> {
        self.folders
            .iter()
            .filter(|(_, t)| !t.states.is_empty())
            .map(|(id, t)| {
                let key = match &t.key {
                    FolderKey::Mailbox(u) => u.clone(),
                    FolderKey::Path(p) => format!("path:{p}"),
                };
                (*id, key, t.states.as_slice())
            })
    }
}

impl PendingState {
    /// The model state, with `blob` and `subject` supplied by the caller.
    pub fn to_state(
        &self,
        blob: impl Fn(&str, Option<u64>) -> Option<crate::model::BlobRef>,
        subject: impl Fn(&str) -> Option<String>,
    ) -> ItemState {
        match &self.shape {
            None => ItemState {
                start: self.start,
                deleted: true,
                kind: Some(ItemKind::Message),
                folder_id: Some(self.folder_id),
                ..Default::default()
            },
            Some(s) => ItemState {
                start: self.start,
                kind: Some(ItemKind::Message),
                folder_id: Some(self.folder_id),
                subject: subject(&s.guid),
                blob: blob(&s.guid, s.size),
                size: s.size,
                date: Some(s.internaldate.saturating_mul(1000)),
                flags: s.flags.clone(),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dlist::parse_line;
    use super::*;

    fn run(text: &str) -> Replay {
        let buf = text.replace('\n', "\r\n").into_bytes();
        let mut rp = Replay::new();
        let mut p = 0;
        while p < buf.len() {
            let (l, n) = parse_line(&buf, p).unwrap();
            rp.apply(&l.unwrap(), 1, 0, &buf);
            p = n;
        }
        rp.finish();
        rp
    }

    fn shapes(rp: &Replay) -> BTreeMap<ItemId, Vec<(i64, bool, String, ItemId)>> {
        rp.folder_items()
            .map(|(id, _, st)| {
                let v = st
                    .iter()
                    .map(|s| {
                        (
                            s.start / 1000,
                            s.deleted,
                            s.name.clone().unwrap(),
                            s.folder_id.unwrap(),
                        )
                    })
                    .collect();
                (id, v)
            })
            .collect()
    }

    #[test]
    fn synthesises_missing_parents_and_follows_renames() {
        let rp = run("1 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u RECORD ())
1 APPLY MAILBOX %(UNIQUEID b MBOXNAME user.u.X.Y RECORD (%(UID 1 FLAGS (\\Seen) INTERNALDATE 5 SIZE 3 GUID ab)))
2 APPLY MAILBOX %(UNIQUEID c MBOXNAME user.u.X RECORD ())
3 APPLY RENAME %(OLDMBOXNAME user.u.X NEWMBOXNAME DELETED.user.u.X.1)
4 APPLY RENAME %(OLDMBOXNAME user.u.X.Y NEWMBOXNAME user.u.Z)
4 APPLY UNMAILBOX user.u.Z
");
        let f = shapes(&rp);
        // ids: a=1000, b=1001, record=1002, synthetic X=1003, c=1004
        assert_eq!(f[&1000], vec![(1, false, "INBOX".into(), VIEW_ROOT)]);
        assert_eq!(
            f[&1003],
            vec![
                (1, false, "X".into(), 1000),
                (2, true, "X".into(), 1000),
                (3, false, "X".into(), 1000),
                (4, true, "X".into(), 1000),
            ]
        );
        assert_eq!(
            f[&1004],
            vec![(2, false, "X".into(), 1000), (3, true, "X".into(), 1000)]
        );
        // Y: under synthetic X, then real X, then synthetic X again; the
        // rename and the delete at ts 4 collapse into one deleted state.
        assert_eq!(
            f[&1001],
            vec![
                (1, false, "Y".into(), 1003),
                (2, false, "Y".into(), 1004),
                (3, false, "Y".into(), 1003),
                (4, true, "Y".into(), 1003),
            ]
        );
        let m = &rp.message_items[&1002];
        assert_eq!(m.states.len(), 2);
        assert!(m.states[0].shape.is_some() && m.states[1].shape.is_none());
        assert_eq!((m.states[1].start, m.states[1].folder_id), (4000, 1001));
    }

    /// An INTERNALDATE (or line time) at the end of i64 overflowed when
    /// turned into milliseconds: a panic in debug builds, a date in 1969
    /// after wrapping in release ones.
    #[test]
    fn dates_at_the_end_of_time_saturate() {
        let rp = run("1 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u RECORD (%(UID 1 FLAGS () INTERNALDATE 9223372036854775807 SIZE 3 GUID ab)))
");
        let m = &rp.message_items[&1001];
        let st = m.states[0].to_state(|_, _| None, |_| None);
        assert_eq!(st.date, Some(i64::MAX));
    }

    #[test]
    fn expunge_is_sticky_and_partial_updates_accumulate() {
        let rp = run("1 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u RECORD (%(UID 1 FLAGS () INTERNALDATE 5 SIZE 3 GUID ab) %(UID 2 FLAGS () INTERNALDATE 6 SIZE 4 GUID cd)))
2 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u SINCE_MODSEQ 3 RECORD (%(UID 2 FLAGS (\\Seen) INTERNALDATE 6 SIZE 4 GUID cd)))
3 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u SINCE_MODSEQ 4 RECORD (%(UID 1 FLAGS (\\Deleted \\Expunged) INTERNALDATE 5 SIZE 3 GUID ab)))
4 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u SINCE_MODSEQ 5 RECORD (%(UID 1 FLAGS (\\Deleted) INTERNALDATE 5 SIZE 3 GUID ab)))
");
        let one = &rp.message_items[&1001];
        let two = &rp.message_items[&1002];
        assert_eq!(
            one.states
                .iter()
                .map(|s| (s.start, s.shape.is_some()))
                .collect::<Vec<_>>(),
            vec![(1000, true), (3000, false)]
        );
        assert_eq!(two.states.len(), 2);
        assert_eq!(
            two.states[1].shape.as_ref().unwrap().flags,
            vec!["\\Seen".to_string()]
        );
    }

    #[test]
    fn a_recreated_mailbox_replaces_the_old_one_at_its_line() {
        let text = "1 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u RECORD ())
1 APPLY MAILBOX %(UNIQUEID old MBOXNAME user.u.R RECORD (%(UID 1 FLAGS () INTERNALDATE 5 SIZE 3 GUID ab)))
2 APPLY MAILBOX %(UNIQUEID new MBOXNAME user.u.R RECORD (%(UID 1 FLAGS (\\Flagged) INTERNALDATE 6 SIZE 4 GUID cd)))
3 APPLY MAILBOX %(UNIQUEID new MBOXNAME user.u.R SINCE_MODSEQ 3 RECORD (%(UID 1 FLAGS (\\Seen) INTERNALDATE 6 SIZE 4 GUID cd)))
";
        let rp = run(text);
        assert_eq!(rp.notes.replaced_mailboxes, 1);
        let f = shapes(&rp);
        // ids: a=1000, old=1001, its record=1002, new=1003, its record=1004
        assert_eq!(
            f[&1001],
            vec![(1, false, "R".into(), 1000), (2, true, "R".into(), 1000)]
        );
        assert_eq!(f[&1003], vec![(2, false, "R".into(), 1000)]);
        let old = &rp.message_items[&1002];
        assert_eq!(
            old.states
                .iter()
                .map(|s| (s.start, s.folder_id, s.shape.is_some()))
                .collect::<Vec<_>>(),
            vec![(1000, 1001, true), (2000, 1001, false)]
        );
        let new = &rp.message_items[&1004];
        assert_eq!(new.states.len(), 2);
        assert!(new.states.iter().all(|s| s.folder_id == 1003));
        // The same lines give the same ids and states every time.
        for _ in 0..5 {
            assert_eq!(shapes(&run(text)), f);
        }
    }

    #[test]
    fn records_missing_from_a_complete_line_are_history_gaps() {
        let rp = run("1 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u LAST_UID 3 RECORD (%(UID 1 FLAGS () INTERNALDATE 5 SIZE 3 GUID ab)))
2 APPLY MAILBOX %(UNIQUEID a MBOXNAME user.u LAST_UID 4 SINCE_MODSEQ 4 RECORD (%(UID 2 FLAGS (\\Deleted \\Expunged) INTERNALDATE 5 SIZE 3 GUID cd) %(UID 3 FLAGS () INTERNALDATE 5 SIZE 3 GUID ef) %(UID 4 FLAGS () INTERNALDATE 5 SIZE 3 GUID 01)))
");
        // uid 3 should have been in the complete line; uid 2 is expunged, uid 4 new.
        assert_eq!(rp.notes.history_gaps, 1);
    }
}
