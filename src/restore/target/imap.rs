//! `imap://USER@HOST:PORT[/PREFIX]` (also `imaps://`, `?starttls`): APPEND
//! to an IMAP server, keeping folders, flags and internal dates.
//!
//! - The password is the first line of `password_file`, read when the
//!   target opens.
//! - Mailbox names: PREFIX components, then the folder's components, joined
//!   with the server's hierarchy delimiter (`LIST "" ""`; `/` if it has
//!   none), each in modified UTF-7. A delimiter inside a component becomes
//!   `_`. Without a prefix a first component `Inbox` is the server's INBOX;
//!   under a prefix it is an ordinary folder named `INBOX`.
//! - Missing mailboxes (and their parents) are CREATEd; existing ones are
//!   learnt once with `LIST "" "*"`.
//! - Copies: the first time a folder is used it is SELECTed and the
//!   RFC822.SIZE of each message fetched once (`UID FETCH 1:*
//!   (RFC822.SIZE)`). A message to restore is compared by content digest
//!   (see the module `target`) with the messages of its size only: their
//!   bodies are fetched, digested and remembered the first time a message
//!   of that size comes, so a folder's bodies are read only where a copy
//!   is likely. (Not a `UID SEARCH` per message, which makes a server
//!   without a full-text index read the whole folder each time.)
//! - APPEND carries the system flags (`\Seen \Answered \Flagged \Deleted
//!   \Draft`; `\Recent` cannot be set) and every keyword that is a valid
//!   atom, and the internal date as `"dd-Mon-yyyy hh:mm:ss +0000"`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{
    clean_folder, content_digest, keywords, AppendOutcome, Copies, FolderPath, ImapSpec,
    RestoreMessage, Target,
};
use crate::model::Millis;
use crate::mutf7;
use crate::restore::cancel::Cancel;
use crate::restore::imap::ImapClient;
use crate::restore::secret::{own_uid, read_password, Owner};

const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

pub struct ImapTarget {
    client: ImapClient,
    delimiter: char,
    prefix: Vec<String>,
    /// Raw (wire) names of the mailboxes known to exist.
    existing: HashSet<String>,
    folders: HashMap<FolderPath, FolderState>,
}

/// What is known of one mailbox.
struct FolderState {
    /// The raw (wire) name.
    name: String,
    /// Copies of each content digest among the messages digested so far.
    copies: Copies,
    /// UIDs of the messages not digested yet, by RFC822.SIZE.
    by_size: HashMap<u64, Vec<u32>>,
}

impl ImapTarget {
    pub fn open(spec: &ImapSpec, cancel: &Arc<Cancel>) -> Result<ImapTarget> {
        // The writer of the request was root or the daemon's user.
        let password = read_password(&spec.password_file, Owner::RootOr(own_uid()))?;
        let mut client = ImapClient::connect_with(spec, &password, cancel)?;
        let delimiter = client.delimiter()?.unwrap_or('/');
        let existing = client.list()?.into_iter().map(|m| m.raw_name).collect();
        Ok(ImapTarget {
            client,
            delimiter,
            prefix: spec.prefix.clone(),
            existing,
            folders: HashMap::new(),
        })
    }

    /// The raw mailbox names of a folder and its parents, outermost first.
    fn mailbox_names(&self, folder: &FolderPath) -> Vec<String> {
        let comps: Vec<&String> = self.prefix.iter().chain(folder.0.iter()).collect();
        let delim = self.delimiter.to_string();
        let mut names = Vec::new();
        let mut name = String::new();
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                name.push(self.delimiter);
            }
            if i == 0 && self.prefix.is_empty() && c.as_str() == "INBOX" {
                name.push_str("INBOX");
            } else {
                name.push_str(&mutf7::encode(&c.replace(&delim, "_")));
            }
            names.push(name.clone());
        }
        names
    }

    fn folder(&mut self, folder: &[String]) -> Result<&mut FolderState> {
        let folder = clean_folder(folder);
        if !self.folders.contains_key(&folder) {
            let names = self.mailbox_names(&folder);
            for name in &names {
                if !name.eq_ignore_ascii_case("INBOX") && !self.existing.contains(name) {
                    self.client.create(name)?;
                    self.existing.insert(name.clone());
                }
            }
            let name = names.last().expect("a folder has a component").clone();
            let exists = self.client.select(&name)?;
            let mut by_size: HashMap<u64, Vec<u32>> = HashMap::new();
            if exists > 0 {
                for (uid, size) in self
                    .client
                    .sizes()
                    .with_context(|| format!("cannot list the messages of {name}"))?
                {
                    by_size.entry(size).or_default().push(uid);
                }
            }
            let state = FolderState {
                name,
                copies: Copies::new(),
                by_size,
            };
            self.folders.insert(folder.clone(), state);
        }
        Ok(self.folders.get_mut(&folder).expect("inserted above"))
    }

    /// How many copies of `msg` its folder holds: digests the folder's
    /// messages of the same size first, if not done yet.
    fn held(&mut self, msg: &RestoreMessage) -> Result<u32> {
        let size = msg.wire_len();
        let state = self.folder(msg.folder)?;
        if let Some(uids) = state.by_size.remove(&size) {
            let name = state.name.clone();
            if self.client.selected() != Some(name.as_str()) {
                self.client.select(&name)?;
            }
            let bodies = self
                .client
                .bodies(&uids)
                .with_context(|| format!("cannot read messages of {name}"))?;
            let state = self.folder(msg.folder)?;
            for (_, body) in bodies {
                *state.copies.entry(content_digest(&body)).or_default() += 1;
            }
        }
        let state = self.folder(msg.folder)?;
        Ok(state.copies.get(msg.digest).copied().unwrap_or(0))
    }
}

impl Target for ImapTarget {
    fn ensure_folder(&mut self, folder: &[String]) -> Result<()> {
        self.folder(folder).map(|_| ())
    }

    fn append(&mut self, msg: &RestoreMessage) -> Result<AppendOutcome> {
        let flags: Vec<&str> = SYSTEM_FLAGS
            .iter()
            .copied()
            .filter(|s| msg.flags.iter().any(|f| f.eq_ignore_ascii_case(s)))
            .chain(keywords(msg.flags))
            .collect();
        let date = imap_date(msg.internal_date);
        if self.held(msg)? >= msg.copy {
            return Ok(AppendOutcome::Skipped);
        }
        let state = self.folder(msg.folder)?;
        let name = state.name.clone();
        self.client
            .append(&name, &flags, &date, msg.bytes)
            .with_context(|| format!("cannot append to {name}"))?;
        let state = self.folder(msg.folder)?;
        *state.copies.entry(msg.digest.to_string()).or_default() += 1;
        Ok(AppendOutcome::Restored)
    }

    fn finish(&mut self) -> Result<()> {
        self.client.logout()
    }
}

/// `dd-Mon-yyyy hh:mm:ss +0000`.
pub fn imap_date(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%d-%b-%Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn imap_date_form() {
        assert_eq!(
            super::imap_date(1_373_641_380_250),
            "12-Jul-2013 15:03:00 +0000"
        );
        assert_eq!(super::imap_date(0), "01-Jan-1970 00:00:00 +0000");
    }
}
