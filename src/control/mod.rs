//! The writable `.control/` directory. The filesystem core shows whatever a
//! [`ControlPlane`] offers under `.control/` and passes writes to it; the
//! plane validates requests and runs the restore queue.

use std::sync::Mutex;

pub mod plane;
pub mod request;

/// One entry of a control directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEntry {
    pub name: String,
    pub is_dir: bool,
    /// The mount owner (or root) may write it.
    pub writable: bool,
}

/// What `.control/` shows and does. Paths are relative to `.control/`,
/// with `/` between components (`""`, `"README"`, `"jobs"`, `"jobs/3"`).
pub trait ControlPlane: Send + Sync {
    /// Entries of a directory, or `None` when `dir` is not one.
    fn list(&self, dir: &str) -> Option<Vec<ControlEntry>>;
    /// The current bytes of a file, or `None` when there is no such file.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// Take the complete lines (each ended by `\n`) of one `write(2)` to a
    /// writable file. `Err(reason)` makes the write fail with EINVAL and
    /// must change nothing (the reason is kept for `last-error`). `writer`
    /// is the uid of the writing process.
    fn write(&self, path: &str, data: &[u8], writer: u32) -> Result<(), String>;
    /// Keep `why` for `last-error`: something the filesystem refused by
    /// itself (a line never ended, a line too long).
    fn refuse(&self, why: String);
}

/// The most `last-error` holds: a request line quoted in full could be
/// as long as the line limit.
pub const LAST_ERROR_MAX: usize = 4096;

/// `why` with a line end, cut to [`LAST_ERROR_MAX`] bytes (on a character
/// boundary, marked with `...`).
pub fn last_error_text(why: &str) -> String {
    let mut s = why.trim_end().to_string();
    if s.len() > LAST_ERROR_MAX {
        let mut cut = LAST_ERROR_MAX - 4;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s.push('\n');
    s
}

/// The control plane of a mount without a restore queue: the README and
/// `last-error` only; every write is refused.
#[derive(Default)]
pub struct ReadmeOnly {
    last_error: Mutex<String>,
}

impl ControlPlane for ReadmeOnly {
    fn list(&self, dir: &str) -> Option<Vec<ControlEntry>> {
        (dir.is_empty()).then(|| {
            ["README", "last-error"]
                .iter()
                .map(|n| ControlEntry {
                    name: n.to_string(),
                    is_dir: false,
                    writable: false,
                })
                .collect()
        })
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match path {
            "README" => Some(README.as_bytes().to_vec()),
            "last-error" => Some(self.last_error.lock().unwrap().clone().into_bytes()),
            _ => None,
        }
    }

    fn write(&self, path: &str, _data: &[u8], _writer: u32) -> Result<(), String> {
        let why = format!("{path}: this mount has no restore queue");
        self.refuse(why.clone());
        Err(why)
    }

    fn refuse(&self, why: String) {
        *self.last_error.lock().unwrap() = last_error_text(&why);
    }
}

/// The text of `.control/README`.
pub const README: &str = "\
mailbackfs control directory

This is the only writable part of the mount; only the mount's owner (or
root) may write here. Restores are requested by writing one line per
request to `restore`, e.g.

  echo 'item john@example.com 339 to=maildir:/srv/restore/john' > restore

  item     ACCOUNT ITEM_ID            to=TARGET [folder=NAME] [at=INSTANT]
  account  ACCOUNT DATE|last          to=TARGET
  undelete ACCOUNT FROM|first TO|last to=TARGET
  external [accounts=A,B] [domains=D] to=TARGET

TARGET is maildir:PATH (Maildir++), mbox:PATH (one mbox file per folder),
or imap://USER@HOST:PORT[/PREFIX] (imaps:// for TLS, ?starttls for
STARTTLS) with password_file=PATH: its first line is the password; it must
be a regular file of at most 4 KiB owned by you or by root, not a link. DATE is YYYY-MM-DD (end of that UTC day)
or an instant such as 2013-07-12T15:03:00Z.

A malformed request makes the write fail with EINVAL and creates no job;
`cat last-error` says why. Each accepted line becomes a job:

  queue        running and queued jobs, one per line
  jobs/<id>    state, progress, timings and the final report of a job
  stop         write a job id, or \"all\", to stop jobs

Jobs run one at a time, in order, survive a restart of the daemon, and skip
what the target already has: messages are recognised by their bytes, per
folder, with counts (m items with the same bytes where the folder holds k
copies append m-k). Only lines ended by a newline are taken.
Several request lines may be written at once: the complete lines of one
write(2) are either all accepted or none. A line without its newline is
held for the next write on the same open file; still held at close, it is
refused and close fails with EINVAL. Large writes are split by the kernel
(and by tools like cat): all-or-none holds per piece.

What is restored: `item` its newest non-deleted state (or the one valid at
at=); `account` every message as it was at DATE, in that moment's folders;
`undelete` messages whose deletion falls in [FROM, TO], into the folder
they were deleted from, with the keyword undelete_DD_MM_YY; `external`
every account (or those named / in the domains) at its newest state, into
TARGET/<address> for maildir and mbox, or under the folder <address> below
the IMAP prefix. Contacts, appointments and documents are not messages:
they are left out and listed in the report.

The report of a job (in jobs/<id>) counts restored, skipped and
unrestored items; each unrestored item is listed with its reason: read
error, broken item, or rejected by the target.
";
