//! Backup readers: one module per format, all producing the common model
//! (`crate::model`). Nothing above this module knows which format it serves.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::model::{Account, BlobRef, Item};

pub mod backup_root;
pub mod cyrus;
pub mod zextras;
pub mod zimbra_classic;

/// An account as listed by a reader, before it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountEntry {
    /// The reader's key for the account (directory name, Cyrus userid).
    pub key: String,
    /// Changes whenever any file the account is read from changes; the
    /// catalogue reads an account again only when its signature moved.
    pub signature: String,
}

/// What every backup format provides. Implementations must never panic on
/// bad input: a broken item is reported in `Item::error`, a broken account
/// in `Account::problems`, and only an unreadable backup root is an `Err`.
pub trait BackupReader: Send + Sync {
    /// `zextras`, `cyrus`...
    fn format_name(&self) -> &'static str;

    /// Every account in the backup, deleted ones included.
    fn list_accounts(&self) -> Result<Vec<AccountEntry>>;

    /// Read one account: its description, and each of its items handed to
    /// `sink` one at a time (so an account of a million items is never held
    /// in memory at once). States of each item are sorted by start.
    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> Result<Account>;

    /// Stream the decompressed bytes of a blob. The stream ends with an
    /// `io::ErrorKind::InvalidData` error when the bytes turn out damaged
    /// (bad gzip, CRC or length, trailing garbage, digest mismatch), after
    /// handing out every byte that decompressed before the damage.
    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>>;

    /// The exact decompressed length of a blob. `claimed` is what the
    /// metadata says; readers confirm it cheaply where they can (the gzip
    /// trailer) and decompress to count only when it is wrong or absent.
    fn blob_len(&self, blob: &BlobRef, claimed: Option<u64>) -> io::Result<u64>;

    /// Where a blob's bytes live on disk, for display (`get-item`, errors):
    /// the file it is read from, or where it should be when it is missing.
    /// `None` for formats whose blobs are not files of their own.
    fn blob_path(&self, _blob: &BlobRef) -> Option<PathBuf> {
        None
    }

    /// Problems of the backup as a whole rather than of one account (an
    /// unreadable `backups.db`, duplicate entries, an account without a
    /// usable data file); `check` reports them and fails.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }

    /// Every blob stored in the backup, referenced or not, so that `check`
    /// can find orphans. `None` when the format cannot list them (a Cyrus
    /// chunk holds nothing that no index entry points at).
    fn all_blobs(&self) -> Option<Vec<BlobRef>> {
        None
    }

    /// Facts about the backup as a whole that `accounts` prints (the redo
    /// logs of a Zimbra classic target and their time ranges).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `--format`: which reader to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    Auto,
    Zextras,
    Cyrus,
    /// Zimbra classic (`zmbackup` sessions).
    ZimbraClassic,
}

/// Open the backup at `root` with the chosen reader, or the one whose layout
/// it has when `choice` is `Auto`.
pub fn open(root: &Path, choice: FormatChoice) -> Result<Box<dyn BackupReader>> {
    if !root.is_dir() {
        bail!("backup path {} is not a directory", root.display());
    }
    let choice = match choice {
        FormatChoice::Auto => detect(root)?,
        other => other,
    };
    Ok(match choice {
        FormatChoice::Zextras => Box::new(zextras::ZextrasReader::open(root)?),
        FormatChoice::Cyrus => Box::new(cyrus::CyrusReader::open(root)?),
        FormatChoice::ZimbraClassic => Box::new(zimbra_classic::ZimbraClassicReader::open(root)?),
        FormatChoice::Auto => unreachable!("detect never answers Auto"),
    })
}

/// Recognise a backup by its layout.
pub fn detect(root: &Path) -> Result<FormatChoice> {
    // Before Zextras: a classic target has no accounts/ at its root, but a
    // session has (sessions/<label>/accounts/).
    if zimbra_classic::looks_like(root) {
        return Ok(FormatChoice::ZimbraClassic);
    }
    if zextras::looks_like(root) {
        return Ok(FormatChoice::Zextras);
    }
    if cyrus::looks_like(root) {
        return Ok(FormatChoice::Cyrus);
    }
    bail!(
        "{} is not a backup this version knows: expected a Zextras/Carbonio \
         backup path (accounts/ and items/) or a Cyrus backup partition \
         (backups.db, or <h>/<user>_XXXXXX with its .index) or a Zimbra classic \
         target (sessions/<label>/session.xml); pass --format to force one",
        root.display()
    )
}
