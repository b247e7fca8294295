//! Redo logs, listed (not replayed): `<target>/redologs/` and any
//! `redologs/` inside a session. Each is named by its 512-byte header's
//! first and last op times.

use std::io::Read;
use std::path::Path;

use crate::format::backup_root::{BackupRoot, EntryKind};
use crate::model::Millis;
use crate::timeline::format_instant;

/// One redo log: its path below the target and its time range.
#[derive(Clone, Debug, PartialEq)]
pub struct RedoLog {
    pub path: String,
    pub first: Option<Millis>,
    pub last: Option<Millis>,
    pub problem: Option<String>,
}

impl RedoLog {
    pub fn describe(&self) -> String {
        let t = |v: Option<Millis>| v.map(format_instant).unwrap_or_else(|| "-".into());
        let mut s = format!(
            "redo log {}: {} .. {} (not replayed: instants between snapshots show the preceding one)",
            self.path,
            t(self.first),
            t(self.last)
        );
        if let Some(p) = &self.problem {
            s.push_str(&format!("; {p}"));
        }
        s
    }
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// The first and last op times of a redo log header.
fn header_times(h: &[u8]) -> Result<(Millis, Millis), String> {
    if h.len() < 512 {
        return Err(format!("header is {} bytes, not 512", h.len()));
    }
    if &h[..7] != b"ZM_REDO" {
        return Err("no ZM_REDO magic".into());
    }
    // magic 7, open 1, size 8, sequence 8, serverId 1 + 127.
    let at = 7 + 1 + 8 + 8 + 128;
    Ok((be_i64(&h[at..]), be_i64(&h[at + 8..])))
}

/// Every `redo-*.log` in `rel` (not below).
pub fn list(root: &BackupRoot, rel: &Path, out: &mut Vec<RedoLog>) {
    let Ok(mut entries) = root.read_dir(rel) else {
        return;
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let Some(name) = e.name.to_str() else {
            continue;
        };
        if !(name.starts_with("redo") && name.ends_with(".log")) || e.kind != EntryKind::File {
            continue;
        }
        let path = rel.join(name);
        let mut head = Vec::with_capacity(512);
        let read = root
            .open_file(&path)
            .and_then(|f| f.take(512).read_to_end(&mut head));
        let (first, last, problem) = match read
            .map_err(|e| e.to_string())
            .and_then(|_| header_times(&head))
        {
            Ok((a, b)) => (Some(a), Some(b), None),
            Err(p) => (None, None, Some(p)),
        };
        out.push(RedoLog {
            path: path.to_string_lossy().into_owned(),
            first,
            last,
            problem,
        });
    }
}
