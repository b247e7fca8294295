//! The common model every backup format maps onto.
//!
//! A backup holds accounts; an account holds items (messages, contacts,
//! folders...); an item is a list of states over time. Everything above the
//! readers (catalogue, time resolution, filesystem, restores) knows only these
//! types, never the format that produced them.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// An item id, unique within one account.
pub type ItemId = i64;

/// The folder id every view is rooted at ("USER_ROOT" in Zimbra terms).
pub const VIEW_ROOT: ItemId = 1;
/// The mailbox root: folders that hang under it but not under [`VIEW_ROOT`]
/// (tags, conversations) are not shown.
pub const MAILBOX_ROOT: ItemId = 11;

/// What an item is. Only messages, contacts, appointments, tasks and
/// documents become files; folders become directories; the rest is hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemKind {
    Folder,
    Message,
    Contact,
    Appointment,
    Task,
    Document,
    /// Tags, conversations, search folders, mountpoints, chats, unknown types.
    Hidden,
}

impl ItemKind {
    /// Whether items of this kind are shown as files.
    pub fn is_file(self) -> bool {
        matches!(
            self,
            ItemKind::Message
                | ItemKind::Contact
                | ItemKind::Appointment
                | ItemKind::Task
                | ItemKind::Document
        )
    }

    /// Stable short name, used in the catalogue and in `get-item`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Folder => "folder",
            ItemKind::Message => "message",
            ItemKind::Contact => "contact",
            ItemKind::Appointment => "appointment",
            ItemKind::Task => "task",
            ItemKind::Document => "document",
            ItemKind::Hidden => "hidden",
        }
    }

    pub fn parse(s: &str) -> ItemKind {
        match s {
            "folder" => ItemKind::Folder,
            "message" => ItemKind::Message,
            "contact" => ItemKind::Contact,
            "appointment" => ItemKind::Appointment,
            "task" => ItemKind::Task,
            "document" => ItemKind::Document,
            _ => ItemKind::Hidden,
        }
    }
}

/// Where the bytes of a state live, in terms only its reader understands
/// (a digest path for Zextras, a chunk offset and GUID for Cyrus).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// Reader-specific locator; opaque above the reader.
    pub locator: String,
    /// The content digest, as the format writes it, when there is one.
    pub digest: Option<String>,
}

/// One recorded state of an item.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    /// When this state became valid.
    pub start: Millis,
    /// An explicit end, when the format records one. A state without one
    /// ends where the next state starts (resolved by the catalogue).
    pub end: Option<Millis>,
    /// This state records the deletion of the item.
    pub deleted: bool,
    pub kind: Option<ItemKind>,
    /// Parent folder (for folders: the parent folder). For a deleted state,
    /// the folder the item was in just before the deletion.
    pub folder_id: Option<ItemId>,
    /// Folder, document or contact name.
    pub name: Option<String>,
    /// Message, appointment or task subject.
    pub subject: Option<String>,
    pub blob: Option<BlobRef>,
    /// Uncompressed size of the blob as the metadata claims it.
    pub size: Option<u64>,
    /// The item's own date (received date of a message).
    pub date: Option<Millis>,
    /// Flags as IMAP words (`\Seen`, `\Flagged`, `$Forwarded`, keywords).
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    /// Contact fields (`firstName`, `email`...), when the item is a contact.
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One item and its whole recorded life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    /// What file names start with: the Zimbra item id, the Cyrus UID.
    pub label: String,
    /// The directory name under `history/` that groups this item's states:
    /// the item id for Zextras, the message GUID for Cyrus.
    pub history_key: String,
    /// States in the order they are valid (sorted by start, then by position).
    pub states: Vec<ItemState>,
    /// Why the item's metadata could not be read, if it could not. Such an
    /// item has no states and is listed only in `history/`.
    pub error: Option<String>,
}

/// An account as the backup describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The reader's key for this account (directory name, Cyrus userid).
    pub key: String,
    /// Primary address, used as the directory name.
    pub name: String,
    /// `active`, `locked`, `closed`, `deleted`...
    pub status: String,
    pub deleted_at: Option<Millis>,
    pub aliases: Vec<String>,
    /// Problems met while reading the account (shown by `accounts`/`check`).
    pub problems: Vec<String>,
}
