//! The reference: the expected tree of every view of a backup, computed
//! from the model straight from `docs/design.md` and `formats/zextras.md`.
//!
//! Written without `catalog/`, `timeline.rs` or `fs/`: when the two disagree,
//! the documents decide which one is wrong. Where the documents leave a
//! choice open (the exact slug, the order of flag words, the text of
//! `.error`), the reference checks the rule's properties instead of one
//! spelling.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};
use mailbackfs::model::{Item, ItemKind, ItemState, Millis};

use super::gen::{Backup, Blob, Damage, DAY};

/// The view root and the mailbox root: both are the root of every view.
const VIEW_ROOT: i64 = 1;
const MAILBOX_ROOT: i64 = 11;
const NAME_MAX: usize = 255;

/// What a file's name must be.
#[derive(Clone, Debug)]
pub enum Name {
    Exact(String),
    /// `<label>-<slug>[.<ext>]`, the slug made from `source`, or `fallback`
    /// when `source` leaves no slug.
    Slug {
        label: String,
        source: String,
        fallback: &'static str,
        ext: Option<String>,
    },
    /// Where the documents allow either spelling.
    OneOf(Vec<String>),
}

/// What reading a file must give.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A vCard made from the contact's fields: its shape is checked.
    VCard,
    /// Reading fails with EIO.
    Eio,
    OneOf(Vec<Vec<u8>>),
}

/// What `<name>.salvaged` must hold.
#[derive(Clone, Debug)]
pub enum Salvage {
    Exact(Vec<u8>),
    /// A prefix of these bytes (what decompressed before the damage).
    Prefix(Vec<u8>),
}

/// The expected value of one `user.mailbackfs.*` attribute.
#[derive(Clone, Debug)]
pub enum X {
    Exact(String),
    /// IMAP words separated by one space, in any order.
    Flags(BTreeSet<String>),
    /// Comma-separated, in order; absent or empty when there are none.
    Tags(Vec<String>),
    /// A digest, `/` and `,` being one character.
    Digest(String),
    /// Present, and says one of these words.
    Says(Vec<&'static str>),
    Absent,
    Any,
}

/// The attributes the design defines for item files.
pub const ITEM_XATTRS: [&str; 8] = [
    "id",
    "folder_id",
    "state_start",
    "flags",
    "tags",
    "digest",
    "deleted_at",
    "error",
];

#[derive(Clone, Debug)]
pub struct EFile {
    pub name: Name,
    pub content: Content,
    /// `None`: not checked (a broken item).
    pub size: Option<u64>,
    pub mtime: Option<Millis>,
    pub xattrs: BTreeMap<&'static str, X>,
    pub salvage: Option<Salvage>,
}

#[derive(Clone, Debug, Default)]
pub struct EDir {
    pub dirs: BTreeMap<String, EDir>,
    pub files: Vec<EFile>,
}

// ----- instants ----------------------------------------------------------------

pub fn rfc3339(t: Millis) -> String {
    Utc.timestamp_millis_opt(t)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn compact(t: Millis) -> String {
    Utc.timestamp_millis_opt(t)
        .unwrap()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

pub fn day_name(day: i64) -> String {
    Utc.timestamp_millis_opt(day * DAY)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// Account directory names, in the order of `backup.accounts`: the
/// address; the second and later accounts with one address (by id) get
/// `ADDRESS~ID`.
pub fn account_dirs(backup: &Backup) -> Vec<String> {
    backup
        .accounts
        .iter()
        .map(|(a, _)| {
            // `.control` is taken by the control directory.
            let earlier = a.name == ".control"
                || backup
                    .accounts
                    .iter()
                    .any(|(b, _)| b.name == a.name && b.key < a.key);
            if earlier {
                format!("{}~{}", a.name, a.key)
            } else {
                a.name.clone()
            }
        })
        .collect()
}

// ----- names ---------------------------------------------------------------------

/// Cut on a UTF-8 boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A folder name as a directory entry (design, "Folder names that cannot be
/// shown as they are").
pub fn folder_name(raw: &str, id: i64) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return format!("_{id}");
    }
    cut(&cleaned, NAME_MAX).to_string()
}

/// The later of two siblings with one name gets `~<id>`, and the result is
/// still at most 255 bytes.
fn with_id(name: &str, id: i64) -> String {
    let suffix = format!("~{id}");
    format!("{}{suffix}", cut(name, NAME_MAX - suffix.len()))
}

/// Whether a name is one the design allows in a directory.
pub fn valid_entry_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && n.len() <= NAME_MAX
        && !n.chars().any(|c| c == '/' || c.is_control())
}

/// The document's own extension: what follows the last dot of a name
/// that has a stem, when it looks like an extension.
fn doc_extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_string())
}

fn extension(kind: ItemKind, name: Option<&str>) -> Option<String> {
    match kind {
        ItemKind::Message => Some("eml".into()),
        ItemKind::Contact => Some("vcf".into()),
        ItemKind::Appointment | ItemKind::Task => Some("ics".into()),
        ItemKind::Document => name.and_then(doc_extension),
        _ => None,
    }
}

fn file_name(item: &Item, s: &ItemState) -> Name {
    let kind = s.kind.unwrap();
    let ext = extension(kind, s.name.as_deref());
    let (source, fallback) = match kind {
        ItemKind::Document => {
            let n = s.name.clone().unwrap_or_default();
            let stem = match &ext {
                Some(e) => n[..n.len() - e.len() - 1].to_string(),
                None => n,
            };
            (stem, "unnamed")
        }
        ItemKind::Contact => (s.name.clone().unwrap_or_default(), "unnamed"),
        _ => (s.subject.clone().unwrap_or_default(), "no_subject"),
    };
    Name::Slug {
        label: item.label.clone(),
        source,
        fallback,
        ext,
    }
}

/// Whether `slug` is a readable slug of `source`: its letters and digits
/// are the first ones of the source, in order, a `_` standing for each gap.
fn slug_of(slug: &str, source: &str, fallback: &str) -> bool {
    let tokens: Vec<(char, bool)> = {
        let mut gap = false;
        let mut out = Vec::new();
        for c in source.chars() {
            if c.is_alphanumeric() {
                out.push((c, gap));
                gap = false;
            } else {
                gap = true;
            }
        }
        out
    };
    if tokens.is_empty() {
        return slug == fallback;
    }
    let mut next = tokens.iter();
    let mut pending_gap = false;
    let mut first = true;
    for c in slug.chars() {
        if c == '_' {
            if pending_gap || first {
                return false;
            }
            pending_gap = true;
            continue;
        }
        match next.next() {
            Some(&(t, gap)) if t == c && (gap == pending_gap || (first && !pending_gap)) => {}
            _ => return false,
        }
        pending_gap = false;
        first = false;
    }
    !first && !pending_gap
}

impl Name {
    pub fn matches(&self, n: &str) -> bool {
        match self {
            Name::Exact(e) => e == n,
            Name::OneOf(v) => v.iter().any(|e| e == n),
            Name::Slug {
                label,
                source,
                fallback,
                ext,
            } => {
                let Some(rest) = n.strip_prefix(&format!("{label}-")) else {
                    return false;
                };
                let slug = match ext {
                    Some(e) => match rest.strip_suffix(&format!(".{e}")) {
                        Some(s) => s,
                        None => return false,
                    },
                    None => rest,
                };
                n.len() <= NAME_MAX && slug_of(slug, source, fallback)
            }
        }
    }

    /// The unlisted name that resolves to the same file (`339.eml`).
    pub fn alias(&self) -> Option<String> {
        match self {
            Name::Slug { label, ext, .. } => Some(match ext {
                Some(e) => format!("{label}.{e}"),
                None => label.clone(),
            }),
            _ => None,
        }
    }
}

// ----- time -------------------------------------------------------------------

/// The state of `item` valid at `t` (zextras.md, "State validity"): the later
/// of two with one start wins; an explicit end or the next start ends a
/// state; a deletion is no state.
fn valid_state(item: &Item, t: Millis) -> Option<&ItemState> {
    let states = &item.states;
    for i in (0..states.len()).rev() {
        let s = &states[i];
        if s.start > t {
            continue;
        }
        let next = states.get(i + 1).map(|n| n.start);
        let end = match (s.end, next) {
            (Some(e), Some(n)) => Some(e.min(n)),
            (e, n) => e.or(n),
        };
        if end.is_none_or(|e| t < e) {
            return (!s.deleted).then_some(s);
        }
        // Its interval ended before t: an earlier state cannot be valid then.
        return None;
    }
    None
}

fn kind_of(item: &Item) -> Option<ItemKind> {
    item.states.iter().find_map(|s| s.kind)
}

fn is_file(k: Option<ItemKind>) -> bool {
    matches!(
        k,
        Some(
            ItemKind::Message
                | ItemKind::Contact
                | ItemKind::Appointment
                | ItemKind::Task
                | ItemKind::Document
        )
    )
}

/// Days with a directory: every UTC day on which a file item or a folder
/// got a new state.
pub fn days(items: &[Item]) -> BTreeSet<i64> {
    items
        .iter()
        .filter(|i| is_file(kind_of(i)) || kind_of(i) == Some(ItemKind::Folder))
        .flat_map(|i| i.states.iter().map(|s| s.start.div_euclid(DAY)))
        .collect()
}

// ----- folder trees --------------------------------------------------------------

enum Place {
    /// Shown; its parent directory id.
    Under(i64),
    /// Not shown: under the mailbox root only.
    Hidden,
}

/// The directories of a view at one instant.
struct Dirs {
    /// Directory id → (name, id) of its subdirectories, names unique.
    children: BTreeMap<i64, Vec<(String, i64)>>,
    /// Directory of each shown folder id or `unknown_<id>`.
    parent: BTreeMap<i64, i64>,
}

struct FolderAt {
    name: String,
    parent: i64,
}

fn folders_at(items: &[Item], t: Millis) -> BTreeMap<i64, FolderAt> {
    items
        .iter()
        .filter(|i| i.id != VIEW_ROOT && i.id != MAILBOX_ROOT)
        .filter_map(|i| {
            let s = valid_state(i, t)?;
            (s.kind == Some(ItemKind::Folder)).then(|| {
                (
                    i.id,
                    FolderAt {
                        name: s.name.clone().unwrap_or_default(),
                        parent: s.folder_id.unwrap_or(VIEW_ROOT),
                    },
                )
            })
        })
        .collect()
}

/// The folders at which parent cycles are broken (README, `check`): the
/// lowest id of each cycle, which is then shown like a missing folder,
/// `unknown_<id>` at the view root with the rest of the cycle below it.
fn cycle_breaks(folders: &BTreeMap<i64, FolderAt>) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for &id in folders.keys() {
        let mut chain = vec![id];
        let mut cur = id;
        while let Some(f) = folders.get(&cur) {
            if f.parent == VIEW_ROOT || f.parent == MAILBOX_ROOT {
                break;
            }
            if let Some(pos) = chain.iter().position(|&c| c == f.parent) {
                out.insert(*chain[pos..].iter().min().unwrap());
                break;
            }
            chain.push(f.parent);
            cur = f.parent;
        }
    }
    out
}

/// Where folder `id` (valid at the instant, in no cycle) hangs; the
/// unknown folder its chain breaks at goes into `unknown`.
fn place(folders: &BTreeMap<i64, FolderAt>, id: i64, unknown: &mut BTreeSet<i64>) -> Place {
    let mut cur = id;
    loop {
        let parent = folders[&cur].parent;
        if parent == VIEW_ROOT {
            break;
        }
        if parent == MAILBOX_ROOT {
            return Place::Hidden;
        }
        if !folders.contains_key(&parent) {
            unknown.insert(parent);
            break;
        }
        cur = parent;
    }
    Place::Under(folders[&id].parent)
}

/// The directory an item filed in folder `f` sits in, if shown.
fn dir_of(
    folders: &BTreeMap<i64, FolderAt>,
    hidden: &BTreeSet<i64>,
    f: i64,
    unknown: &mut BTreeSet<i64>,
) -> Option<i64> {
    if f == VIEW_ROOT || f == MAILBOX_ROOT {
        return Some(VIEW_ROOT);
    }
    if folders.contains_key(&f) {
        return (!hidden.contains(&f)).then_some(f);
    }
    unknown.insert(f);
    Some(f)
}

/// Directories at `t`, and the directory of each item shown then.
fn dirs_at(items: &[Item], t: Millis) -> (Dirs, Vec<(i64, &Item, &ItemState)>) {
    dirs_with(items, t, None)
}

/// The same, as if an item were also filed in folder `extra`.
fn dirs_with(
    items: &[Item],
    t: Millis,
    extra: Option<i64>,
) -> (Dirs, Vec<(i64, &Item, &ItemState)>) {
    let mut folders = folders_at(items, t);
    // A folder valid at the instant is a directory, empty or not: the one
    // a cycle is broken at too.
    let mut unknown = cycle_breaks(&folders);
    for broken in &unknown {
        folders.remove(broken);
    }
    let mut hidden = BTreeSet::new();
    let mut parent = BTreeMap::new();
    for &id in folders.keys() {
        match place(&folders, id, &mut unknown) {
            Place::Under(p) => {
                parent.insert(id, p);
            }
            Place::Hidden => {
                hidden.insert(id);
            }
        }
    }
    if let Some(f) = extra {
        dir_of(&folders, &hidden, f, &mut unknown);
    }
    let mut files = Vec::new();
    for item in items.iter().filter(|i| is_file(kind_of(i))) {
        let Some(s) = valid_state(item, t) else {
            continue;
        };
        let f = s.folder_id.unwrap_or(VIEW_ROOT);
        if let Some(d) = dir_of(&folders, &hidden, f, &mut unknown) {
            files.push((d, item, s));
        }
    }
    let mut raw: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for (&id, &p) in &parent {
        raw.entry(p)
            .or_default()
            .push((id, folder_name(&folders[&id].name, id)));
    }
    for &u in &unknown {
        parent.insert(u, VIEW_ROOT);
        raw.entry(VIEW_ROOT)
            .or_default()
            .push((u, format!("unknown_{u}")));
    }
    let mut children = BTreeMap::new();
    for (p, mut entries) in raw {
        entries.sort();
        let mut taken = BTreeSet::new();
        let mut named = Vec::new();
        for (id, name) in entries {
            let name = if taken.contains(&name) {
                with_id(&name, id)
            } else {
                name
            };
            taken.insert(name.clone());
            named.push((name, id));
        }
        children.insert(p, named);
    }
    (Dirs { children, parent }, files)
}

impl Dirs {
    /// Names from the root down to directory `d`.
    fn path(&self, d: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = d;
        while cur != VIEW_ROOT {
            let p = self.parent[&cur];
            let name = self.children[&p]
                .iter()
                .find(|(_, id)| *id == cur)
                .unwrap()
                .0
                .clone();
            out.push(name);
            cur = p;
        }
        out.reverse();
        out
    }

    fn tree(&self, d: i64, files: &mut BTreeMap<i64, Vec<EFile>>) -> EDir {
        let mut dir = EDir {
            files: files.remove(&d).unwrap_or_default(),
            ..Default::default()
        };
        for (name, id) in self.children.get(&d).into_iter().flatten() {
            dir.dirs.insert(name.clone(), self.tree(*id, files));
        }
        dir
    }
}

// ----- files ---------------------------------------------------------------------

fn is_calendar(k: ItemKind) -> bool {
    matches!(k, ItemKind::Appointment | ItemKind::Task)
}

/// The file of state `s` of `item`. `history`: the entry in `history/<id>/`,
/// where a blob that only fails its digest serves its stored bytes.
fn state_file(
    blobs: &BTreeMap<String, Blob>,
    item: &Item,
    s: &ItemState,
    name: Name,
    history: bool,
) -> EFile {
    let kind = s.kind.unwrap();
    let mut x: BTreeMap<&'static str, X> = BTreeMap::new();
    x.insert("id", X::Exact(item.label.clone()));
    x.insert(
        "folder_id",
        s.folder_id.map_or(X::Absent, |f| X::Exact(f.to_string())),
    );
    x.insert("state_start", X::Exact(rfc3339(s.start)));
    x.insert(
        "flags",
        if kind == ItemKind::Message {
            X::Flags(s.flags.iter().cloned().collect())
        } else {
            X::Absent
        },
    );
    x.insert("tags", X::Tags(s.tags.clone()));
    x.insert("deleted_at", X::Absent);
    x.insert("error", X::Absent);
    x.insert("digest", X::Absent);
    let mtime = match kind {
        ItemKind::Contact => s.start,
        _ => s.date.unwrap_or(s.start),
    };
    let mut file = EFile {
        name,
        content: Content::Bytes(Vec::new()),
        size: Some(0),
        mtime: Some(mtime),
        xattrs: x,
        salvage: None,
    };
    let Some(blob) = &s.blob else {
        if kind == ItemKind::Contact {
            file.content = Content::VCard;
            file.size = None;
        }
        return file;
    };
    let b = &blobs[&blob.locator];
    file.xattrs.insert("digest", X::Digest(b.digest.clone()));
    let served = match (&b.calendar, is_calendar(kind)) {
        (Some(ics), true) => ics.clone(),
        _ => b.bytes.clone(),
    };
    let broken = |f: &mut EFile, says: Vec<&'static str>, salvage: Option<Salvage>| {
        f.content = Content::Eio;
        f.size = None;
        f.xattrs.insert("error", X::Says(says));
        f.salvage = salvage;
    };
    match b.damage {
        Damage::None => {
            file.size = Some(served.len() as u64);
            file.content = Content::Bytes(served);
        }
        Damage::Missing => broken(&mut file, vec!["missing"], None),
        Damage::Corrupt => broken(
            &mut file,
            vec!["corrupt", "crc"],
            Some(Salvage::Prefix(b.bytes.clone())),
        ),
        Damage::Truncated => broken(
            &mut file,
            vec!["truncated", "corrupt"],
            Some(Salvage::Prefix(b.bytes.clone())),
        ),
        Damage::DigestMismatch if history => {
            file.size = Some(served.len() as u64);
            file.content = if is_calendar(kind) {
                Content::OneOf(vec![served, b.bytes.clone()])
            } else {
                Content::Bytes(served)
            };
            file.size = None;
            file.xattrs.insert("error", X::Says(vec!["digest"]));
        }
        Damage::DigestMismatch => broken(
            &mut file,
            vec!["digest"],
            Some(Salvage::Exact(b.bytes.clone())),
        ),
    }
    file
}

// ----- views -----------------------------------------------------------------------

/// A time view (`latest/` is `t = Millis::MAX`, a day its 23:59:59.999).
pub fn time_view(backup: &Backup, items: &[Item], t: Millis) -> EDir {
    let (dirs, shown) = dirs_at(items, t);
    let mut files: BTreeMap<i64, Vec<EFile>> = BTreeMap::new();
    for (d, item, s) in shown {
        let f = state_file(&backup.blobs, item, s, file_name(item, s), false);
        files.entry(d).or_default().push(f);
    }
    dirs.tree(VIEW_ROOT, &mut files)
}

/// `deleted/`: items whose last state is a deletion, under the folder path
/// they had just before it, as the last state before the deletion.
pub fn deleted_view(backup: &Backup, items: &[Item]) -> EDir {
    let mut root = EDir::default();
    for item in items.iter().filter(|i| is_file(kind_of(i))) {
        let [.., before, last] = &item.states[..] else {
            continue;
        };
        if !last.deleted || before.deleted {
            continue;
        }
        let t0 = last.start - 1;
        let f = last.folder_id.or(before.folder_id).unwrap_or(VIEW_ROOT);
        // The view just before the deletion, the item in it.
        let (dirs, _) = dirs_with(items, t0, Some(f));
        let path = if f == VIEW_ROOT || f == MAILBOX_ROOT {
            Vec::new()
        } else if dirs.parent.contains_key(&f) {
            dirs.path(f)
        } else {
            vec![format!("unknown_{f}")]
        };
        let mut file = state_file(&backup.blobs, item, before, file_name(item, before), false);
        file.xattrs
            .insert("deleted_at", X::Exact(rfc3339(last.start)));
        let mut dir = &mut root;
        for p in path {
            dir = dir.dirs.entry(p).or_default();
        }
        dir.files.push(file);
    }
    root
}

/// `history/`: one directory per item, one entry per recorded state.
pub fn history_view(backup: &Backup, items: &[Item]) -> EDir {
    let mut root = EDir::default();
    for item in items {
        if item.error.is_none() && !is_file(kind_of(item)) {
            continue;
        }
        let mut dir = EDir::default();
        if item.error.is_some() {
            let mut x = BTreeMap::new();
            x.insert("id", X::Exact(item.label.clone()));
            x.insert("error", X::Any);
            dir.files.push(EFile {
                name: Name::Exact("error".into()),
                content: Content::Eio,
                size: None,
                mtime: None,
                xattrs: x,
                salvage: None,
            });
        }
        for (i, s) in item.states.iter().enumerate() {
            let n = item.states[..i]
                .iter()
                .filter(|p| p.start == s.start)
                .count();
            let base = format!("{}-{n}", compact(s.start));
            let kind = s.kind.unwrap();
            let with = |ext: Option<String>| match ext {
                Some(e) => format!("{base}.{e}"),
                None => base.clone(),
            };
            if s.deleted {
                // Its name may or may not carry the item's extension when the
                // deletion records no name of its own.
                let prev = item.states[..i]
                    .iter()
                    .rev()
                    .find_map(|p| p.name.as_deref());
                let names: BTreeSet<String> = [
                    with(extension(kind, s.name.as_deref())),
                    with(extension(kind, prev)),
                ]
                .into();
                let mut x = BTreeMap::new();
                x.insert("id", X::Exact(item.label.clone()));
                x.insert("state_start", X::Exact(rfc3339(s.start)));
                x.insert("deleted_at", X::Exact(rfc3339(s.start)));
                x.insert("error", X::Absent);
                x.insert("digest", X::Absent);
                for k in ["folder_id", "flags", "tags"] {
                    x.insert(k, X::Any);
                }
                dir.files.push(EFile {
                    name: Name::OneOf(names.into_iter().collect()),
                    content: Content::Bytes(Vec::new()),
                    size: Some(0),
                    mtime: None,
                    xattrs: x,
                    salvage: None,
                });
                continue;
            }
            let name = Name::Exact(with(extension(kind, s.name.as_deref())));
            let mut f = state_file(&backup.blobs, item, s, name, true);
            f.salvage = None;
            dir.files.push(f);
        }
        root.dirs
            .insert(folder_name(&item.history_key, item.id), dir);
    }
    root
}

/// Instants worth looking at: every state start, a millisecond on either
/// side, and the ends of explicit intervals.
pub fn interesting_instants(items: &[Item]) -> Vec<Millis> {
    let mut out = BTreeSet::new();
    for s in items.iter().flat_map(|i| &i.states) {
        out.extend([s.start - 1, s.start, s.start + 1]);
        if let Some(e) = s.end {
            out.extend([e - 1, e]);
        }
    }
    out.into_iter().collect()
}
