//! The filesystem core: the tree of accounts, views, folders and items,
//! inode numbers, attributes, reads and extended attributes. It never sees
//! `fuser` types, so it is tested without the kernel; `crate::fuse` adapts
//! it to the kernel.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};

use lru::LruCache;

use crate::catalog::{AccountRow, Catalog, DeletedItem, StateRow};
use crate::control::{ControlPlane, ReadmeOnly};
use crate::format::BackupReader;
use crate::model::{ItemId, ItemKind, Millis, VIEW_ROOT};
use crate::timeline::{self, day_name, parse_day, parse_instant, PointInTime};

pub mod calendar;
pub mod content;
pub mod names;
pub mod salvage;
pub mod tree;
pub mod vcard;

#[cfg(test)]
mod tests;

use calendar::Calendars;
use content::{BlobCache, OpenBlob, SizeCache};
use salvage::{SalvageFile, SalvageSizes};
use tree::{FolderTimeline, ViewTree};

/// Errors of filesystem operations, each with one errno.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such entry")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only file system")]
    ReadOnly,
    #[error("no such attribute")]
    NoAttr,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl FsError {
    pub fn to_errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoAttr => libc::ENODATA,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::Io(_) => libc::EIO,
        }
    }
}

impl From<anyhow::Error> for FsError {
    fn from(e: anyhow::Error) -> Self {
        FsError::Io(format!("{e:#}"))
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Which view of an account a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// A point in time (`latest/`, a day, `@INSTANT`).
    Time(PointInTime),
    /// `deleted/`: items whose last state is a deletion.
    Deleted,
    /// `history/`: every state of every item.
    History,
}

/// What an inode stands for. Small and hashable: everything else about a
/// node is looked up in the catalogue when needed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    Account(i64),
    /// A directory of a view: `dir` is a folder id in time views
    /// (`VIEW_ROOT` for the view's root), an index in `deleted/`.
    Dir {
        acct: i64,
        view: View,
        dir: ItemId,
    },
    /// `history/<key>/`.
    HistoryItem {
        acct: i64,
        key: String,
    },
    /// The file of one state of one item.
    File {
        acct: i64,
        view: View,
        item: ItemId,
        seq: i64,
    },
    /// `<name>.salvaged` beside the file of a state with a blob.
    Salvaged {
        acct: i64,
        view: View,
        item: ItemId,
        seq: i64,
    },
    /// `history/<key>/error` of an item whose metadata is unreadable.
    ErrorFile {
        acct: i64,
        item: ItemId,
    },
    /// `.control/` and below: a path relative to it (`""` is the directory).
    Control(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
}

/// What `stat` says.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: u64,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: Millis,
    /// Writable by the owner (only the control directory).
    pub writable: bool,
    /// Changes while mounted (the control directory): not to be cached.
    pub volatile: bool,
}

/// One entry of a listing: the node it names. Inode numbers are given out
/// only when the kernel is told of a node (lookup, readdirplus), so that a
/// `find` over a million items leaves no table behind once the kernel
/// forgets them.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: String,
    pub node: Node,
    pub kind: EntryKind,
}

/// A name that resolves to a node without being listed.
type NamedNode = (String, Node);

/// A directory's entries, with the names lookups may use.
pub struct Listing {
    pub entries: Vec<DirEntry>,
    by_name: HashMap<String, usize>,
    /// Names that resolve but are not listed (`339.eml`).
    aliases: HashMap<String, usize>,
    /// Nodes that resolve but are not listed (`.salvaged` of sound blobs);
    /// their inodes are made on lookup.
    hidden: HashMap<String, Node>,
}

impl Listing {
    fn new(entries: Vec<DirEntry>, aliases: Vec<(String, usize)>) -> Listing {
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let mut alias_map = HashMap::new();
        for (name, i) in aliases {
            alias_map.entry(name).or_insert(i);
        }
        Listing {
            entries,
            by_name,
            aliases: alias_map,
            hidden: HashMap::new(),
        }
    }

    fn with_hidden(mut self, hidden: Vec<NamedNode>) -> Listing {
        for (name, node) in hidden {
            if !self.by_name.contains_key(&name) {
                self.hidden.entry(name).or_insert(node);
            }
        }
        self
    }

    fn find(&self, name: &str) -> Option<&DirEntry> {
        self.by_name
            .get(name)
            .or_else(|| self.aliases.get(name))
            .map(|&i| &self.entries[i])
    }
}

/// How many directory entries the listing cache holds at most, over all
/// cached directories (a listing of 100,000 messages counts 100,000).
const LISTING_CACHE_ENTRIES: usize = 400_000;

/// How many item states are kept at hand for `stat` (about 300 bytes each).
const ROW_CACHE_ENTRIES: usize = 131_072;

/// Recently listed directories, bounded by their total number of entries so
/// that memory does not grow with the size of the backup.
struct ListingCache {
    lru: LruCache<u64, Arc<Listing>>,
    entries: usize,
    max_entries: usize,
}

impl ListingCache {
    fn new(max_entries: usize) -> ListingCache {
        ListingCache {
            lru: LruCache::unbounded(),
            entries: 0,
            max_entries,
        }
    }

    fn get(&mut self, ino: &u64) -> Option<&Arc<Listing>> {
        self.lru.get(ino)
    }

    fn put(&mut self, ino: u64, listing: Arc<Listing>) {
        self.entries += listing.entries.len() + 1;
        if let Some(old) = self.lru.put(ino, listing) {
            self.entries -= old.entries.len() + 1;
        }
        // The newest listing stays even when it alone is over the budget:
        // it is being read now.
        while self.entries > self.max_entries && self.lru.len() > 1 {
            if let Some((_, old)) = self.lru.pop_lru() {
                self.entries -= old.entries.len() + 1;
            }
        }
    }

    fn clear(&mut self) {
        self.lru.clear();
        self.entries = 0;
    }
}

/// Inode numbers: assigned on first sight, stable for the mount's life.
#[derive(Default)]
struct Inodes {
    by_node: HashMap<Node, u64>,
    /// Node and the kernel's lookup count of each inode number.
    by_ino: HashMap<u64, (Node, u64)>,
    last: u64,
}

impl Inodes {
    fn ino(&mut self, node: Node) -> u64 {
        if let Some(&ino) = self.by_node.get(&node) {
            return ino;
        }
        self.last += 1; // the root gets 1
        let ino = self.last;
        self.by_ino.insert(ino, (node.clone(), 0));
        self.by_node.insert(node, ino);
        ino
    }

    fn remember(&mut self, ino: u64) {
        if let Some(entry) = self.by_ino.get_mut(&ino) {
            entry.1 += 1;
        }
    }

    /// Drop `n` kernel references; an inode nobody refers to is freed
    /// (the root never is).
    fn forget(&mut self, ino: u64, n: u64) {
        let Some(entry) = self.by_ino.get_mut(&ino) else {
            return;
        };
        entry.1 = entry.1.saturating_sub(n);
        if entry.1 == 0 && ino != MailFs::ROOT_INO {
            if let Some((node, _)) = self.by_ino.remove(&ino) {
                self.by_node.remove(&node);
            }
        }
    }
}

/// Tunables of a mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Budget of the decompressed-bytes cache.
    pub cache_bytes: usize,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            cache_bytes: 256 << 20,
        }
    }
}

/// The filesystem: a catalogue and a reader, seen as a tree.
pub struct MailFs {
    catalog: Arc<Catalog>,
    reader: Arc<dyn BackupReader>,
    inodes: RwLock<Inodes>,
    accounts: Vec<AccountRow>,
    folders: Mutex<HashMap<i64, Arc<FolderTimeline>>>,
    trees: Mutex<LruCache<(i64, Millis), Arc<ViewTree>>>,
    listings: Mutex<ListingCache>,
    /// States of recently listed files, so `ls -l` needs no query per file.
    rows: Mutex<LruCache<(i64, ItemId, i64), Arc<StateRow>>>,
    deleted_trees: Mutex<HashMap<i64, Arc<DeletedTree>>>,
    blobs: BlobCache,
    sizes: SizeCache,
    salvage_sizes: SalvageSizes,
    calendars: Calendars,
    open_files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: Mutex<u64>,
    /// Blobs found damaged while reading, with why.
    broken: Mutex<HashMap<String, String>>,
    /// The newest instant of the backup: the mtime of directories that
    /// stand for no instant of their own, so that every view is a function
    /// of the backup alone (not of when it was mounted).
    backup_time: Millis,
    control: Arc<dyn ControlPlane>,
}

/// `deleted/` of one account: directories by index (1 is the root). Files
/// are the last states before each deletion; `deleted_at` holds the
/// deletion instants by item.
struct DeletedTree {
    children: HashMap<ItemId, Vec<(String, ItemId)>>,
    files: HashMap<ItemId, Vec<StateRow>>,
    deleted_at: HashMap<ItemId, Millis>,
}

/// What an open file reads from.
enum OpenFile {
    Blob(OpenBlob),
    /// A state's blob in `history/`: should it fail only its digest, the
    /// stored bytes are served from the salvage stream instead of EIO.
    HistoryBlob(OpenBlob, Mutex<Option<SalvageFile>>),
    Bytes(Arc<Vec<u8>>),
    Salvaged(SalvageFile),
    /// A control file: what it said when opened, its path for writes, and
    /// the start of a line not yet ended by a newline.
    Control(ControlHandle),
}

struct ControlHandle {
    path: String,
    bytes: Arc<Vec<u8>>,
    partial: Mutex<Vec<u8>>,
}

/// The longest line a control file holds while waiting for its newline.
const MAX_CONTROL_LINE: usize = 64 * 1024;

impl MailFs {
    pub fn new(
        catalog: Arc<Catalog>,
        reader: Arc<dyn BackupReader>,
        opts: FsOptions,
    ) -> FsResult<MailFs> {
        let accounts = catalog.accounts()?;
        let backup_time = accounts.iter().filter_map(|a| a.last_ts).max().unwrap_or(0);
        let fs = MailFs {
            catalog,
            reader,
            inodes: RwLock::new(Inodes::default()),
            accounts,
            folders: Mutex::new(HashMap::new()),
            trees: Mutex::new(LruCache::new(NonZeroUsize::new(64).unwrap())),
            listings: Mutex::new(ListingCache::new(LISTING_CACHE_ENTRIES)),
            rows: Mutex::new(LruCache::new(NonZeroUsize::new(ROW_CACHE_ENTRIES).unwrap())),
            deleted_trees: Mutex::new(HashMap::new()),
            blobs: BlobCache::new(opts.cache_bytes),
            sizes: SizeCache::new(1 << 20),
            salvage_sizes: SalvageSizes::new(1 << 16),
            calendars: Calendars::new(4096),
            open_files: Mutex::new(HashMap::new()),
            next_fh: Mutex::new(1),
            broken: Mutex::new(HashMap::new()),
            backup_time,
            control: Arc::new(ReadmeOnly::default()),
        };
        let root = fs.ino(Node::Root);
        debug_assert_eq!(root, 1);
        Ok(fs)
    }

    pub const ROOT_INO: u64 = 1;

    /// Serve `.control/` from `plane` (the restore queue of a mount).
    pub fn with_control(mut self, plane: Arc<dyn ControlPlane>) -> MailFs {
        self.control = plane;
        self
    }

    fn ino(&self, node: Node) -> u64 {
        if let Some(&ino) = self.inodes.read().unwrap().by_node.get(&node) {
            return ino;
        }
        self.inodes.write().unwrap().ino(node)
    }

    fn node(&self, ino: u64) -> FsResult<Node> {
        let inodes = self.inodes.read().unwrap();
        inodes
            .by_ino
            .get(&ino)
            .map(|(node, _)| node.clone())
            .ok_or(FsError::NotFound)
    }

    /// The kernel was told of `ino` once more (a lookup or readdirplus
    /// reply); it holds it until it forgets it.
    pub fn remember(&self, ino: u64) {
        self.inodes.write().unwrap().remember(ino);
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.write().unwrap().forget(ino, n);
    }

    /// Number of inodes held (for tests and statistics).
    pub fn inode_count(&self) -> usize {
        self.inodes.read().unwrap().by_ino.len()
    }

    /// The inode number a plain `readdir` reports for an entry: the real one
    /// when the node has one, else a stable stand-in (the kernel takes real
    /// numbers from lookups only).
    pub fn entry_ino(&self, e: &DirEntry) -> u64 {
        if let Some(&ino) = self.inodes.read().unwrap().by_node.get(&e.node) {
            return ino;
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.node.hash(&mut h);
        h.finish() | (1 << 63)
    }

    /// Attributes of a listed entry, giving it an inode number (readdirplus).
    pub fn entry_attr(&self, e: &DirEntry) -> FsResult<Attr> {
        self.getattr(self.ino(e.node.clone()))
    }

    /// One state of one item: from the rows of recent listings, else the
    /// catalogue.
    pub(crate) fn state_row(&self, acct: i64, item: ItemId, seq: i64) -> FsResult<Arc<StateRow>> {
        if let Some(row) = self.rows.lock().unwrap().get(&(acct, item, seq)) {
            return Ok(row.clone());
        }
        let row = Arc::new(
            self.catalog
                .state(acct, item, seq)?
                .ok_or(FsError::NotFound)?,
        );
        self.rows
            .lock()
            .unwrap()
            .put((acct, item, seq), row.clone());
        Ok(row)
    }

    fn account(&self, acct: i64) -> FsResult<&AccountRow> {
        self.accounts
            .iter()
            .find(|a| a.id == acct)
            .ok_or(FsError::NotFound)
    }

    // ----- directories -------------------------------------------------

    /// The entries of directory `ino` (cached).
    pub fn readdir(&self, ino: u64) -> FsResult<Arc<Listing>> {
        if let Some(l) = self.listings.lock().unwrap().get(&ino) {
            return Ok(l.clone());
        }
        let node = self.node(ino)?;
        let listing = Arc::new(self.list(&node)?);
        // The control directory changes while mounted: never cached.
        if !matches!(node, Node::Control(_)) {
            self.listings.lock().unwrap().put(ino, listing.clone());
        }
        Ok(listing)
    }

    fn list(&self, node: &Node) -> FsResult<Listing> {
        match node {
            Node::Root => Ok(self.list_root()),
            Node::Account(acct) => self.list_account(*acct),
            Node::Dir {
                acct,
                view: View::Time(t),
                dir,
            } => self.list_time_dir(*acct, *t, *dir),
            Node::Dir {
                acct,
                view: View::Deleted,
                dir,
            } => self.list_deleted_dir(*acct, *dir),
            Node::Dir {
                acct,
                view: View::History,
                ..
            } => self.list_history_root(*acct),
            Node::HistoryItem { acct, key } => self.list_history_item(*acct, key),
            Node::Control(dir) => {
                let entries = self.control.list(dir).ok_or(FsError::NotDir)?;
                let entries = entries
                    .into_iter()
                    .map(|e| {
                        let kind = if e.is_dir {
                            EntryKind::Dir
                        } else {
                            EntryKind::File
                        };
                        let node = Node::Control(control_join(dir, &e.name));
                        self.dir_entry(e.name, node, kind)
                    })
                    .collect();
                Ok(Listing::new(entries, vec![]))
            }
            _ => Err(FsError::NotDir),
        }
    }

    fn dir_entry(&self, name: String, node: Node, kind: EntryKind) -> DirEntry {
        DirEntry { name, node, kind }
    }

    fn list_root(&self) -> Listing {
        let mut entries: Vec<DirEntry> = self
            .accounts
            .iter()
            .map(|a| self.dir_entry(a.dir_name.clone(), Node::Account(a.id), EntryKind::Dir))
            .collect();
        entries.push(self.dir_entry(
            ".control".into(),
            Node::Control(String::new()),
            EntryKind::Dir,
        ));
        Listing::new(entries, vec![])
    }

    fn list_account(&self, acct: i64) -> FsResult<Listing> {
        let dir = |view| Node::Dir {
            acct,
            view,
            dir: VIEW_ROOT,
        };
        let mut entries = vec![self.dir_entry(
            "latest".into(),
            dir(View::Time(PointInTime::Latest)),
            EntryKind::Dir,
        )];
        for day in self.catalog.days(acct)? {
            entries.push(self.dir_entry(
                day_name(day),
                dir(View::Time(PointInTime::end_of_day(day))),
                EntryKind::Dir,
            ));
        }
        entries.push(self.dir_entry("deleted".into(), dir(View::Deleted), EntryKind::Dir));
        entries.push(self.dir_entry("history".into(), dir(View::History), EntryKind::Dir));
        Ok(Listing::new(entries, vec![]))
    }

    fn folder_timeline(&self, acct: i64) -> FsResult<Arc<FolderTimeline>> {
        if let Some(f) = self.folders.lock().unwrap().get(&acct) {
            return Ok(f.clone());
        }
        let f = Arc::new(FolderTimeline::new(self.catalog.folder_states(acct)?));
        self.folders.lock().unwrap().insert(acct, f.clone());
        Ok(f)
    }

    fn view_tree(&self, acct: i64, t: PointInTime) -> FsResult<Arc<ViewTree>> {
        let key = (acct, t.millis());
        if let Some(tree) = self.trees.lock().unwrap().get(&key) {
            return Ok(tree.clone());
        }
        let folders = self.folder_timeline(acct)?;
        let referenced = self.catalog.referenced_folders(acct)?;
        let tree = Arc::new(ViewTree::build(&folders, t.millis(), &referenced, |f| {
            self.catalog
                .folder_has_files(acct, f, t.millis())
                .unwrap_or(false)
        }));
        self.trees.lock().unwrap().put(key, tree.clone());
        Ok(tree)
    }

    fn list_time_dir(&self, acct: i64, t: PointInTime, dir: ItemId) -> FsResult<Listing> {
        let tree = self.view_tree(acct, t)?;
        let subdirs = tree.children.get(&dir).ok_or(FsError::NotFound)?;
        let mut entries: Vec<DirEntry> = subdirs
            .iter()
            .map(|(name, &id)| {
                let node = Node::Dir {
                    acct,
                    view: View::Time(t),
                    dir: id,
                };
                self.dir_entry(name.clone(), node, EntryKind::Dir)
            })
            .collect();
        let mut rows = self.catalog.files_in_folder(acct, dir, t.millis())?;
        if dir == VIEW_ROOT {
            // Items filed in the mailbox root sit at the view's root too.
            rows.extend(self.catalog.files_in_folder(
                acct,
                crate::model::MAILBOX_ROOT,
                t.millis(),
            )?);
        }
        let (aliases, hidden) = self.push_files(
            &mut entries,
            rows,
            View::Time(t),
            acct,
            names::item_file_name,
        );
        Ok(Listing::new(entries, aliases).with_hidden(hidden))
    }

    /// Add one file entry per state row, with unique names; returns the
    /// aliases (`339.eml`) pointing at them, and the `.salvaged` entries
    /// that resolve without being listed (those of blobs not known broken).
    fn push_files(
        &self,
        entries: &mut Vec<DirEntry>,
        rows: Vec<StateRow>,
        view: View,
        acct: i64,
        name_of: impl Fn(&StateRow) -> String,
    ) -> (Vec<(String, usize)>, Vec<NamedNode>) {
        let mut hidden = Vec::new();
        let mut salvaged_files = Vec::new();
        let mut taken: std::collections::HashSet<String> =
            entries.iter().map(|e| e.name.clone()).collect();
        let mut aliases = Vec::new();
        for row in rows {
            self.rows
                .lock()
                .unwrap()
                .put((acct, row.item_id, row.seq), Arc::new(row.clone()));
            let mut name = name_of(&row);
            if !taken.insert(name.clone()) {
                name = names::with_suffix(&name, &format!("~{}~{}", row.item_id, row.seq));
                taken.insert(name.clone());
            }
            let alias = names::item_alias_name(&row);
            let node = Node::File {
                acct,
                view,
                item: row.item_id,
                seq: row.seq,
            };
            entries.push(self.dir_entry(name.clone(), node, EntryKind::File));
            aliases.push((alias.clone(), entries.len() - 1));
            if let Some((salvaged, node, listed)) = self.salvage_entry(&row, &name, view, acct) {
                hidden.push((format!("{alias}{}", salvage::SUFFIX), node.clone()));
                if listed && taken.insert(salvaged.clone()) {
                    salvaged_files.push((salvaged, node));
                } else {
                    hidden.push((salvaged, node));
                }
            }
        }
        // Last: a blob found broken later adds its entry at the end, so the
        // offsets of a directory being read do not shift.
        for (name, node) in salvaged_files {
            entries.push(self.dir_entry(name, node, EntryKind::File));
        }
        (aliases, hidden)
    }

    fn deleted_tree(&self, acct: i64) -> FsResult<Arc<DeletedTree>> {
        if let Some(t) = self.deleted_trees.lock().unwrap().get(&acct) {
            return Ok(t.clone());
        }
        let folders = self.folder_timeline(acct)?;
        let mut tree = DeletedTree {
            children: HashMap::from([(VIEW_ROOT, Vec::new())]),
            files: HashMap::new(),
            deleted_at: HashMap::new(),
        };
        let mut by_path: HashMap<Vec<String>, ItemId> = HashMap::from([(Vec::new(), VIEW_ROOT)]);
        let mut next = VIEW_ROOT + 1;
        for DeletedItem { shown, deletion } in self.catalog.deleted_items_shown(acct)? {
            // The folder path the item had just before it was deleted.
            let path = match deletion.folder_id {
                Some(f) => folders.path_at(f, deletion.start - 1),
                None => Vec::new(),
            };
            tree.deleted_at.insert(deletion.item_id, deletion.start);
            let row = shown;
            let mut cur = VIEW_ROOT;
            for depth in 1..=path.len() {
                let prefix = path[..depth].to_vec();
                cur = match by_path.get(&prefix) {
                    Some(&d) => d,
                    None => {
                        let d = next;
                        next += 1;
                        tree.children
                            .entry(cur)
                            .or_default()
                            .push((path[depth - 1].clone(), d));
                        tree.children.entry(d).or_default();
                        by_path.insert(prefix, d);
                        d
                    }
                };
            }
            tree.files.entry(cur).or_default().push(row);
        }
        let tree = Arc::new(tree);
        self.deleted_trees
            .lock()
            .unwrap()
            .insert(acct, tree.clone());
        Ok(tree)
    }

    fn list_deleted_dir(&self, acct: i64, dir: ItemId) -> FsResult<Listing> {
        let tree = self.deleted_tree(acct)?;
        let subdirs = tree.children.get(&dir).ok_or(FsError::NotFound)?;
        let mut entries: Vec<DirEntry> = subdirs
            .iter()
            .map(|(name, d)| {
                let node = Node::Dir {
                    acct,
                    view: View::Deleted,
                    dir: *d,
                };
                self.dir_entry(name.clone(), node, EntryKind::Dir)
            })
            .collect();
        let rows = tree.files.get(&dir).cloned().unwrap_or_default();
        let (aliases, hidden) = self.push_files(
            &mut entries,
            rows,
            View::Deleted,
            acct,
            names::item_file_name,
        );
        Ok(Listing::new(entries, aliases).with_hidden(hidden))
    }

    fn list_history_root(&self, acct: i64) -> FsResult<Listing> {
        let entries = self
            .catalog
            .history_keys(acct)?
            .into_iter()
            .map(|key| {
                let name = names::sanitize_component(&key, &key);
                self.dir_entry(name, Node::HistoryItem { acct, key }, EntryKind::Dir)
            })
            .collect();
        Ok(Listing::new(entries, vec![]))
    }

    fn list_history_item(&self, acct: i64, key: &str) -> FsResult<Listing> {
        let mut entries = Vec::new();
        for broken in self.catalog.broken_items(acct, Some(key))? {
            let name = if entries.is_empty() {
                "error".to_string()
            } else {
                format!("error~{}", broken.item_id)
            };
            entries.push(self.dir_entry(
                name,
                Node::ErrorFile {
                    acct,
                    item: broken.item_id,
                },
                EntryKind::File,
            ));
        }
        let rows = self.catalog.history_states(acct, key)?;
        let mut same_start: HashMap<Millis, usize> = HashMap::new();
        let named: Vec<(String, StateRow)> = rows
            .into_iter()
            .map(|row| {
                let n = same_start.entry(row.start).or_default();
                let ext = names::extension(row.kind, row.name.as_deref());
                let base = format!("{}-{}", timeline::format_compact(row.start), n);
                *n += 1;
                (
                    match ext {
                        Some(e) => format!("{base}.{e}"),
                        None => base,
                    },
                    row,
                )
            })
            .collect();
        let names_by_row: HashMap<(ItemId, i64), String> = named
            .iter()
            .map(|(n, r)| ((r.item_id, r.seq), n.clone()))
            .collect();
        let rows = named.into_iter().map(|(_, r)| r).collect();
        let (_, hidden) = self.push_files(&mut entries, rows, View::History, acct, |r| {
            names_by_row[&(r.item_id, r.seq)].clone()
        });
        Ok(Listing::new(entries, vec![]).with_hidden(hidden))
    }

    // ----- lookups and attributes ----------------------------------------

    /// Resolve `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let node = self.node(parent)?;
        if let Node::Account(acct) = node {
            if let Some(rest) = name.strip_prefix('@') {
                let t = parse_instant(rest).ok_or(FsError::NotFound)?;
                let ino = self.ino(Node::Dir {
                    acct,
                    view: View::Time(PointInTime::At(t)),
                    dir: VIEW_ROOT,
                });
                return self.getattr(ino);
            }
            if let Some(day) = parse_day(name) {
                // Only days with changes exist.
                if !self.catalog.days(acct)?.contains(&day) {
                    return Err(FsError::NotFound);
                }
            }
        }
        let listing = self.readdir(parent)?;
        let node = match listing.find(name) {
            Some(entry) => entry.node.clone(),
            None => listing.hidden.get(name).ok_or(FsError::NotFound)?.clone(),
        };
        self.getattr(self.ino(node))
    }

    /// The newest instant of an account's backup (the backup's, if none).
    fn account_time(&self, acct: i64) -> FsResult<Millis> {
        Ok(self.account(acct)?.last_ts.unwrap_or(self.backup_time))
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.node(ino)?;
        let dir = |mtime| Attr {
            ino,
            kind: EntryKind::Dir,
            size: 0,
            mtime,
            writable: false,
            volatile: false,
        };
        match &node {
            Node::Root => Ok(dir(self.backup_time)),
            Node::Dir {
                view: View::Time(PointInTime::At(t)),
                ..
            } => Ok(dir(*t)),
            Node::Account(acct) | Node::Dir { acct, .. } | Node::HistoryItem { acct, .. } => {
                Ok(dir(self.account_time(*acct)?))
            }
            Node::Control(path) => self.control_attr(ino, path),
            Node::Salvaged {
                acct, item, seq, ..
            } => self.salvage_attr(ino, *acct, *item, *seq),
            Node::ErrorFile { acct, .. } => Ok(Attr {
                ino,
                kind: EntryKind::File,
                size: 0,
                mtime: self.account_time(*acct)?,
                writable: false,
                volatile: false,
            }),
            Node::File {
                acct,
                item,
                seq,
                view,
            } => {
                let row = self.state_row(*acct, *item, *seq)?;
                // A deleted state in history/ is an empty file (see `open`).
                let history_deleted = row.deleted && *view == View::History;
                let size = match self.content_of(&row) {
                    _ if history_deleted => 0,
                    // history/ serves the stored bytes of a digest mismatch.
                    Err(_) if *view == View::History && self.fails_only_digest(&row) => {
                        let blob = row.blob.as_ref().ok_or(FsError::NotFound)?;
                        self.salvage_sizes.size(&*self.reader, blob)
                    }
                    Ok(Content::Blob(_, size)) => size,
                    Ok(Content::Bytes(b)) => b.len() as u64,
                    Ok(Content::Empty) => 0,
                    // A broken item stays listed, with its claimed size.
                    Err(_) => row.size.unwrap_or(0),
                };
                let mtime = match row.kind {
                    ItemKind::Contact => row.start,
                    _ => row.date.unwrap_or(row.start),
                };
                Ok(Attr {
                    ino,
                    kind: EntryKind::File,
                    size,
                    mtime,
                    writable: false,
                    volatile: false,
                })
            }
        }
    }

    /// What a state's file holds.
    fn content_of(&self, row: &StateRow) -> FsResult<Content> {
        if row.kind == ItemKind::Contact && row.blob.is_none() {
            return Ok(Content::Bytes(Arc::new(vcard::from_row(row))));
        }
        if row.deleted && row.blob.is_none() {
            return Ok(Content::Empty);
        }
        let Some(blob) = &row.blob else {
            return Ok(Content::Empty);
        };
        if let Some(why) = self.broken.lock().unwrap().get(&blob.locator) {
            return Err(FsError::Io(why.clone()));
        }
        let size = self
            .sizes
            .get_or(blob, row.size, || self.reader.blob_len(blob, row.size))
            .map_err(|e| self.note_broken(&blob.locator, e))?;
        if matches!(row.kind, ItemKind::Appointment | ItemKind::Task) {
            let ics = self
                .calendars
                .get(&*self.reader, blob, size)
                .map_err(|e| self.note_broken(&blob.locator, e))?;
            if let Some(ics) = ics {
                return Ok(Content::Bytes(ics));
            }
        }
        Ok(Content::Blob(blob.clone(), size))
    }

    fn note_broken(&self, locator: &str, e: std::io::Error) -> FsError {
        let why = salvage::describe(&e);
        log::warn!("blob {locator}: {why}");
        if e.kind() != std::io::ErrorKind::Interrupted {
            let new = self
                .broken
                .lock()
                .unwrap()
                .insert(locator.to_string(), why.clone())
                .is_none();
            if new {
                // Listings made before show no `.salvaged` for it yet.
                self.listings.lock().unwrap().clear();
            }
        }
        FsError::Io(why)
    }

    // ----- reads -----------------------------------------------------------

    /// Open a file for reading; returns a handle for `read`.
    pub fn open(&self, ino: u64, write: bool) -> FsResult<u64> {
        let node = self.node(ino)?;
        if let Node::Control(path) = &node {
            return self.open_control(ino, path, write);
        }
        if write {
            return Err(FsError::ReadOnly);
        }
        let file = match &node {
            Node::File {
                acct,
                item,
                seq,
                view,
            } => {
                let row = self.state_row(*acct, *item, *seq)?;
                if row.deleted && *view == View::History {
                    OpenFile::Bytes(Arc::new(Vec::new()))
                } else if *view == View::History {
                    self.open_history_state(&row)?
                } else {
                    match self.content_of(&row)? {
                        Content::Blob(blob, size) => OpenFile::Blob(OpenBlob::new(blob, size)),
                        Content::Bytes(b) => OpenFile::Bytes(b),
                        Content::Empty => OpenFile::Bytes(Arc::new(Vec::new())),
                    }
                }
            }
            Node::Salvaged {
                acct, item, seq, ..
            } => self.open_salvaged(ino, *acct, *item, *seq)?,
            Node::ErrorFile { acct, item } => {
                let why = self
                    .catalog
                    .broken_items(*acct, None)?
                    .into_iter()
                    .find(|b| b.item_id == *item)
                    .map(|b| salvage::malformed(&b.error))
                    .unwrap_or_else(|| "malformed metadata".into());
                return Err(FsError::Io(why));
            }
            _ => return Err(FsError::IsDir),
        };
        Ok(self.add_handle(file))
    }

    /// A state's file in `history/`: like any view, except that a blob
    /// that fails only its digest serves its stored bytes.
    fn open_history_state(&self, row: &StateRow) -> FsResult<OpenFile> {
        match self.content_of(row) {
            Err(_) if self.fails_only_digest(row) => {
                let blob = row.blob.clone().ok_or(FsError::NotFound)?;
                let size = self.salvage_sizes.size(&*self.reader, &blob);
                Ok(OpenFile::Salvaged(SalvageFile::new(blob, size)))
            }
            Err(e) => Err(e),
            Ok(Content::Blob(blob, size)) => Ok(OpenFile::HistoryBlob(
                OpenBlob::new(blob, size),
                Mutex::new(None),
            )),
            Ok(Content::Bytes(b)) => Ok(OpenFile::Bytes(b)),
            Ok(Content::Empty) => Ok(OpenFile::Bytes(Arc::new(Vec::new()))),
        }
    }

    /// Whether the state's blob is known to fail its digest check and
    /// nothing else (its stored bytes decompress cleanly).
    fn fails_only_digest(&self, row: &StateRow) -> bool {
        let Some(blob) = &row.blob else {
            return false;
        };
        self.broken
            .lock()
            .unwrap()
            .get(&blob.locator)
            .is_some_and(|why| salvage::kind_is(why, salvage::DIGEST_MISMATCH))
    }

    fn add_handle(&self, file: OpenFile) -> u64 {
        let mut next = self.next_fh.lock().unwrap();
        let fh = *next;
        *next += 1;
        self.open_files.lock().unwrap().insert(fh, Arc::new(file));
        fh
    }

    // ----- the control directory -------------------------------------------

    fn control_attr(&self, ino: u64, path: &str) -> FsResult<Attr> {
        let mut attr = Attr {
            ino,
            kind: EntryKind::Dir,
            size: 0,
            mtime: chrono::Utc::now().timestamp_millis(),
            writable: false,
            volatile: true,
        };
        if self.control.list(path).is_some() {
            return Ok(attr);
        }
        let bytes = self.control.read(path).ok_or(FsError::NotFound)?;
        attr.kind = EntryKind::File;
        attr.size = bytes.len() as u64;
        attr.writable = self.control_writable(path);
        Ok(attr)
    }

    fn control_writable(&self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.control
            .list(dir)
            .unwrap_or_default()
            .iter()
            .any(|e| e.name == name && e.writable)
    }

    fn open_control(&self, ino: u64, path: &str, write: bool) -> FsResult<u64> {
        if self.control_attr(ino, path)?.kind == EntryKind::Dir {
            return Err(FsError::IsDir);
        }
        if write && !self.control_writable(path) {
            return Err(FsError::ReadOnly);
        }
        let bytes = self.control.read(path).unwrap_or_default();
        Ok(self.add_handle(OpenFile::Control(ControlHandle {
            path: path.to_string(),
            bytes: Arc::new(bytes),
            partial: Mutex::new(Vec::new()),
        })))
    }

    /// Whether `ino` is a writable control file (truncating it is allowed:
    /// `echo ... > .control/restore` opens with O_TRUNC).
    pub fn is_writable_control(&self, ino: u64) -> bool {
        matches!(self.node(ino), Ok(Node::Control(p)) if self.control_writable(&p))
    }

    /// The open file behind a handle.
    fn handle(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.open_files
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::Invalid("bad file handle".into()))
    }

    /// One `write(2)` to an open control file. Only lines ended by `\n`
    /// are taken, all together: a trailing partial line is held for the
    /// next write on the same handle. A refused write changes nothing,
    /// not even the held line.
    pub fn write(&self, fh: u64, data: &[u8], writer: u32) -> FsResult<usize> {
        let file = self.handle(fh)?;
        let OpenFile::Control(c) = &*file else {
            return Err(FsError::ReadOnly);
        };
        let mut partial = c.partial.lock().unwrap();
        let cut = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let (lines, rest) = data.split_at(cut);
        let held = if lines.is_empty() { partial.len() } else { 0 } + rest.len();
        if held > MAX_CONTROL_LINE {
            let why = format!("{}: a line is longer than {MAX_CONTROL_LINE} bytes", c.path);
            self.control.refuse(why.clone());
            return Err(FsError::Invalid(why));
        }
        if !lines.is_empty() {
            let mut complete = Vec::with_capacity(partial.len() + lines.len());
            complete.extend_from_slice(&partial);
            complete.extend_from_slice(lines);
            self.control
                .write(&c.path, &complete, writer)
                .map_err(FsError::Invalid)?;
            partial.clear();
        }
        partial.extend_from_slice(rest);
        Ok(data.len())
    }

    /// `close(2)` of a handle: a line still held (no newline came) is
    /// refused, so the close fails with EINVAL and `last-error` says why.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let file = self.handle(fh)?;
        let OpenFile::Control(c) = &*file else {
            return Ok(());
        };
        let held = std::mem::take(&mut *c.partial.lock().unwrap());
        if held.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let why = format!(
            "{}: the last line was not ended by a newline; nothing was taken from it: {:?}",
            c.path,
            String::from_utf8_lossy(&held)
        );
        self.control.refuse(why.clone());
        Err(FsError::Invalid(why))
    }

    /// Whether a handle needs FLUSH at close (only control files do).
    pub fn wants_flush(&self, fh: u64) -> bool {
        self.handle(fh)
            .is_ok_and(|f| matches!(&*f, OpenFile::Control(_)))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let file = self.handle(fh)?;
        match &*file {
            OpenFile::Bytes(b) | OpenFile::Control(ControlHandle { bytes: b, .. }) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size as usize).min(b.len());
                Ok(b[start..end].to_vec())
            }
            OpenFile::Blob(blob) => blob
                .read_at(&*self.reader, &self.blobs, offset, size as usize)
                .map_err(|e| self.note_broken(blob.locator(), e)),
            OpenFile::HistoryBlob(blob, stored) => {
                match blob.read_at(&*self.reader, &self.blobs, offset, size as usize) {
                    Ok(bytes) => Ok(bytes),
                    Err(e) => {
                        let err = self.note_broken(blob.locator(), e);
                        if !matches!(&err, FsError::Io(why) if salvage::kind_is(why, salvage::DIGEST_MISMATCH))
                        {
                            return Err(err);
                        }
                        let mut stored = stored.lock().unwrap();
                        let s = stored.get_or_insert_with(|| {
                            SalvageFile::new(blob.blob().clone(), blob.size())
                        });
                        Ok(s.read_at(&*self.reader, offset, size as usize))
                    }
                }
            }
            OpenFile::Salvaged(s) => Ok(s.read_at(&*self.reader, offset, size as usize)),
        }
    }

    pub fn release(&self, fh: u64) {
        self.open_files.lock().unwrap().remove(&fh);
    }

    // ----- extended attributes ---------------------------------------------

    /// `user.mailbackfs.*` attributes of a node, in a fixed order.
    pub fn xattrs(&self, ino: u64) -> FsResult<Vec<(String, Vec<u8>)>> {
        let node = match self.node(ino)? {
            // A salvage file says what its item's file says.
            Node::Salvaged {
                acct,
                view,
                item,
                seq,
            } => Node::File {
                acct,
                view,
                item,
                seq,
            },
            node => node,
        };
        let mut out: Vec<(String, String)> = Vec::new();
        match &node {
            Node::Account(acct) => {
                let a = self.account(*acct)?;
                out.push(("status".into(), a.status.clone()));
                out.push(("key".into(), a.key.clone()));
            }
            Node::File {
                acct,
                item,
                seq,
                view,
            } => {
                let row = self.state_row(*acct, *item, *seq)?;
                out.push(("id".into(), row.label.clone()));
                if let Some(f) = row.folder_id {
                    out.push(("folder_id".into(), f.to_string()));
                }
                out.push(("state_start".into(), timeline::format_instant(row.start)));
                if row.kind == ItemKind::Message {
                    out.push(("flags".into(), row.flags.clone()));
                }
                out.push(("tags".into(), row.tags.clone()));
                // A deletion in history/ is an empty file: the blob the
                // catalogue carries over from the state before is not its own.
                let blob = row
                    .blob
                    .as_ref()
                    .filter(|_| !(row.deleted && *view == View::History));
                if let Some(d) = blob.and_then(|b| b.digest.clone()) {
                    out.push(("digest".into(), d));
                }
                if let Some(at) = self.deleted_at(*acct, *view, &row)? {
                    out.push(("deleted_at".into(), timeline::format_instant(at)));
                }
                if let Some(blob) = blob {
                    // Finds what is cheaply knowable (missing, unreadable,
                    // a size that made the reader decompress) if not yet known.
                    let _ = self.content_of(&row);
                    if let Some(why) = self.broken.lock().unwrap().get(&blob.locator) {
                        out.push(("error".into(), why.clone()));
                    }
                }
            }
            Node::ErrorFile { acct, item } => {
                if let Some(b) = self
                    .catalog
                    .broken_items(*acct, None)?
                    .into_iter()
                    .find(|b| b.item_id == *item)
                {
                    out.push(("id".into(), b.label));
                    out.push(("error".into(), salvage::malformed(&b.error)));
                }
            }
            _ => {}
        }
        Ok(out
            .into_iter()
            .map(|(k, v)| (format!("user.mailbackfs.{k}"), v.into_bytes()))
            .collect())
    }

    /// When the item of a file in `deleted/` or `history/` was deleted:
    /// `deleted/` shows the state before the deletion, `history/` the
    /// deletion state itself.
    fn deleted_at(&self, acct: i64, view: View, row: &StateRow) -> FsResult<Option<Millis>> {
        Ok(match view {
            View::History => row.deleted.then_some(row.start),
            View::Deleted => self
                .deleted_tree(acct)?
                .deleted_at
                .get(&row.item_id)
                .copied(),
            View::Time(_) => None,
        })
    }

    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        self.xattrs(ino)?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .ok_or(FsError::NoAttr)
    }

    /// Sum of the bytes held by the decompressed cache.
    pub fn cache_bytes(&self) -> usize {
        self.blobs.held_bytes()
    }
}

enum Content {
    Blob(crate::model::BlobRef, u64),
    Bytes(Arc<Vec<u8>>),
    Empty,
}

/// `a/b` from a control directory and a name in it.
fn control_join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}
