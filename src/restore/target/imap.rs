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
//! - Idempotence: the first time a folder is used it is SELECTed and the
//!   Message-IDs of its messages are fetched once
//!   (`UID FETCH 1:* BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]`) into a set; a
//!   message whose Message-ID is in that set is skipped. (One fetch per
//!   folder rather than a `UID SEARCH HEADER Message-ID` per message: the
//!   latter makes a server without a full-text index read every header of
//!   the folder for every message, quadratic on large folders.) Messages
//!   without a Message-ID are always appended; the job journal is what
//!   keeps them from being restored twice.
//! - APPEND carries the system flags (`\Seen \Answered \Flagged \Deleted
//!   \Draft`; `\Recent` cannot be set) and every keyword that is a valid
//!   atom, and the internal date as `"dd-Mon-yyyy hh:mm:ss +0000"`.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

use super::{
    clean_folder, dedup_key, keywords, known, AppendOutcome, FolderPath, ImapSpec, KeySet,
    RestoreMessage, Target,
};
use crate::model::Millis;
use crate::mutf7;
use crate::restore::imap::ImapClient;
use crate::restore::secret::{own_uid, read_password, Owner};

const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

pub struct ImapTarget {
    client: ImapClient,
    delimiter: char,
    prefix: Vec<String>,
    /// Raw (wire) names of the mailboxes known to exist.
    existing: HashSet<String>,
    /// Per folder: its raw name and the Message-IDs it holds.
    folders: HashMap<FolderPath, (String, KeySet)>,
}

impl ImapTarget {
    pub fn open(spec: &ImapSpec) -> Result<ImapTarget> {
        // The writer of the request was root or the daemon's user.
        let password = read_password(&spec.password_file, Owner::RootOr(own_uid()))?;
        let mut client = ImapClient::connect(spec, &password)?;
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

    fn folder(&mut self, folder: &[String]) -> Result<&mut (String, KeySet)> {
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
            let mut keys = KeySet::new();
            if exists > 0 {
                for mid in self
                    .client
                    .message_ids()
                    .with_context(|| format!("cannot list Message-IDs in {name}"))?
                {
                    keys.extend(dedup_key(Some(&mid), ""));
                }
            }
            self.folders.insert(folder.clone(), (name, keys));
        }
        Ok(self.folders.get_mut(&folder).expect("inserted above"))
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
        let has_mid = msg.message_id.map(str::trim).is_some_and(|m| !m.is_empty());
        let key = dedup_key(msg.message_id, msg.digest);
        let (name, keys) = self.folder(msg.folder)?;
        if has_mid && known(keys, &key) {
            return Ok(AppendOutcome::Skipped);
        }
        let name = name.clone();
        self.client
            .append(&name, &flags, &date, msg.bytes)
            .with_context(|| format!("cannot append to {name}"))?;
        if has_mid {
            self.folders
                .get_mut(&clean_folder(msg.folder))
                .expect("folder() inserted it")
                .1
                .extend(key);
        }
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
