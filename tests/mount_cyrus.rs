//! The Cyrus corpus through a real kernel mount (`mailbackfs mount -f`):
//! message bytes against the oracle, point-in-time views against the
//! ground truth of every sync round, deleted messages, damage, no writes.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde_json::Value;
use sha1::{Digest, Sha1};
use support::{copy_cyrus_backup as copy_backup, cyrus_corpus as corpus, fingerprint, Mount};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dora"];

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn truth(user: &str) -> Value {
    json(&corpus().join(format!("oracle/{user}/truth.json")))
}

fn oracle_message(user: &str, guid: &str) -> Vec<u8> {
    let p = corpus().join(format!("oracle/{user}/messages/{guid}.eml"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn xattr(p: &Path, name: &str) -> Option<String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(String::from_utf8(buf).unwrap())
}

fn sha1_hex(b: &[u8]) -> String {
    Sha1::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Directories (relative, "" for the root) and files (relative) below `root`.
fn walk(root: &Path) -> (BTreeSet<String>, Vec<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rel = d.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        dirs.insert(rel);
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    (dirs, files)
}

/// The UID a message file name starts with (`12-Subject.eml`, `12.eml`).
fn uid_of(p: &Path) -> u32 {
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no UID prefix in {name}"))
}

/// IMAP folder name (`INBOX.Archive.2024`, UTF-8, `altnamespace: no`,
/// separator `.`) -> path in the mount (`INBOX/Archive/2024`).
fn mount_path(imap_utf8: &str) -> String {
    imap_utf8.split('.').collect::<Vec<_>>().join("/")
}

/// The directory of an instant (UTC, to the second).
fn instant_dir(t: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(t, 0).unwrap();
    format!("@{}", dt.format("%Y-%m-%dT%H:%M:%S"))
}

fn mtime(p: &Path) -> i64 {
    let m = std::fs::metadata(p).unwrap();
    m.modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn flags_of(p: &Path) -> BTreeSet<String> {
    xattr(p, "user.mailbackfs.flags")
        .unwrap_or_default()
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn index_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Check one message file against the oracle; returns its GUID.
fn check_message_file(user: &str, p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let sha = sha1_hex(&bytes);
    let digest = xattr(p, "user.mailbackfs.digest")
        .unwrap_or_else(|| panic!("{}: no digest xattr", p.display()));
    assert_eq!(
        digest,
        sha,
        "{}: digest xattr vs sha1 of the bytes",
        p.display()
    );
    assert!(
        bytes == oracle_message(user, &digest),
        "{}: differs from the oracle",
        p.display()
    );
    let len = std::fs::metadata(p).unwrap().len();
    assert_eq!(len, bytes.len() as u64, "{}: stat size", p.display());
    digest
}

/// Every `.eml` reachable in the mount equals the oracle, the latest view
/// holds every live message of the final round, and the corpus is not
/// written to.
#[test]
fn every_message_matches_the_oracle_and_nothing_is_written() {
    let before = fingerprint(&corpus());
    let idx = index_dir();
    {
        let m = Mount::start(&corpus(), idx.path(), &[]);
        let top: BTreeSet<String> = std::fs::read_dir(&m.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for u in USERS {
            assert!(top.contains(u), "{u} missing at the root: {top:?}");
        }
        for user in USERS {
            let acct = m.join(user);
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            for e in std::fs::read_dir(&acct).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                let kind = match name.as_str() {
                    "latest" | "deleted" | "history" => name.clone(),
                    n if n.len() == 10 && n.as_bytes()[4] == b'-' => "day".into(),
                    n => panic!("{user}: unexpected entry {n}"),
                };
                let (_, files) = walk(&acct.join(&name));
                for f in files {
                    if f.extension().is_some_and(|x| x == "eml") {
                        let empty = std::fs::metadata(&f).unwrap().len() == 0;
                        if empty && kind == "history" {
                            // A deleted state in history/: no bytes.
                            assert!(
                                xattr(&f, "user.mailbackfs.deleted_at").is_some(),
                                "{}: empty without deleted_at",
                                f.display()
                            );
                            assert!(std::fs::read(&f).unwrap().is_empty());
                            continue;
                        }
                        check_message_file(user, &f);
                        *kinds.entry(kind.clone()).or_default() += 1;
                    }
                }
            }
            for k in ["latest", "day", "history"] {
                assert!(
                    kinds.get(k).copied().unwrap_or(0) > 0,
                    "{user}: no {k} messages"
                );
            }

            // The final round's live messages, in latest/ at their folder path.
            let t = truth(user);
            let last = t["rounds"].as_array().unwrap().last().unwrap();
            for mb in last["mailboxes"].as_array().unwrap() {
                let dir = acct
                    .join("latest")
                    .join(mount_path(mb["imap_name_utf8"].as_str().unwrap()));
                assert!(dir.is_dir(), "{}: folder missing", dir.display());
                let by_uid: HashMap<u32, PathBuf> = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.is_file())
                    .map(|p| (uid_of(&p), p))
                    .collect();
                for msg in mb["messages"].as_array().unwrap() {
                    let uid = msg["uid"].as_u64().unwrap() as u32;
                    let guid = msg["guid"].as_str().unwrap();
                    let p = by_uid
                        .get(&uid)
                        .unwrap_or_else(|| panic!("{}: no file for UID {uid}", dir.display()));
                    assert_eq!(check_message_file(user, p), guid, "{}", p.display());
                    // `UID.eml` resolves too.
                    assert!(dir.join(format!("{uid}.eml")).is_file(), "{uid}.eml");
                }
            }
        }
    }
    let after = fingerprint(&corpus());
    assert!(before == after, "the corpus changed under the mount");
}

/// (folders, folder -> {(uid, flags, mtime)}) of a view directory.
type ViewShape = (
    BTreeSet<String>,
    BTreeMap<String, BTreeSet<(u32, BTreeSet<String>, i64)>>,
);

fn shape_of_mount(dir: &Path) -> ViewShape {
    let (dirs, files) = walk(dir);
    let folders: BTreeSet<String> = dirs.into_iter().filter(|d| !d.is_empty()).collect();
    let mut msgs: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for f in files {
        let folder = f
            .parent()
            .unwrap()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        msgs.entry(folder)
            .or_default()
            .insert((uid_of(&f), flags_of(&f), mtime(&f)));
    }
    (folders, msgs)
}

fn shape_of_truth(round: &Value) -> ViewShape {
    let mut folders = BTreeSet::new();
    let mut msgs: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for mb in round["mailboxes"].as_array().unwrap() {
        let path = mount_path(mb["imap_name_utf8"].as_str().unwrap());
        // Parents are directories too, whether or not they are folders.
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..=parts.len() {
            folders.insert(parts[..i].join("/"));
        }
        for m in mb["messages"].as_array().unwrap() {
            let flags = m["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            msgs.entry(path.clone()).or_default().insert((
                m["uid"].as_u64().unwrap() as u32,
                flags,
                m["internaldate"].as_i64().unwrap(),
            ));
        }
    }
    (folders, msgs)
}

/// The `@INSTANT` view at each round's sync finish equals that round's truth.
#[test]
fn instant_views_match_the_truth_of_every_round() {
    let rounds = json(&corpus().join("oracle/rounds.json"));
    let idx = index_dir();
    let m = Mount::start(&corpus(), idx.path(), &[]);
    let mut compared = 0;
    for user in USERS {
        let t = truth(user);
        let by_round: HashMap<i64, &Value> = t["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["round"].as_i64().unwrap(), r))
            .collect();
        for (n, r) in rounds.as_object().unwrap() {
            let n: i64 = n.parse().unwrap();
            let fin = r["finished"].as_i64().unwrap();
            let dir = m.join(user).join(instant_dir(fin));
            match by_round.get(&n) {
                Some(tr) => {
                    assert_eq!(tr["sync_finished"].as_i64().unwrap(), fin);
                    let got = shape_of_mount(&dir);
                    let want = shape_of_truth(tr);
                    assert_eq!(got.0, want.0, "{user} round {n}: folders");
                    assert_eq!(got.1, want.1, "{user} round {n}: messages");
                    compared += 1;
                }
                None => {
                    // Not backed up yet: nothing to show.
                    if dir.is_dir() {
                        let (_, files) = walk(&dir);
                        assert!(files.is_empty(), "{user} round {n}: {files:?}");
                    }
                }
            }
        }
    }
    assert_eq!(compared, 11);
}

/// Expunged messages are in deleted/ under their last folder path, with
/// their bytes and `deleted_at`.
#[test]
fn expunged_messages_are_in_deleted() {
    let idx = index_dir();
    let m = Mount::start(&corpus(), idx.path(), &[]);
    let mut found = 0;
    for user in USERS {
        let t = truth(user);
        let rounds = t["rounds"].as_array().unwrap();
        // uniqueid -> folder path, per round.
        let name_in = |round: i64, uniqueid: &str| -> Option<String> {
            let r = rounds.iter().find(|r| r["round"].as_i64() == Some(round))?;
            r["mailboxes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|mb| mb["uniqueid"].as_str() == Some(uniqueid))
                .map(|mb| mount_path(mb["imap_name_utf8"].as_str().unwrap()))
        };
        for rec in t["records"].as_array().unwrap() {
            if rec["gone_reason"].as_str() != Some("expunged") {
                continue;
            }
            let uid = rec["uid"].as_u64().unwrap() as u32;
            let guid = rec["guid"].as_str().unwrap();
            let uniqueid = rec["mailbox_uniqueid"].as_str().unwrap();
            let gone = rec["gone_in_round"].as_i64().unwrap();
            // The folder's name before the expunge, or its name when it was
            // seen (both come in the same sync).
            let candidates: BTreeSet<String> =
                [name_in(gone - 1, uniqueid), name_in(gone, uniqueid)]
                    .into_iter()
                    .flatten()
                    .collect();
            assert!(!candidates.is_empty(), "{user} {uniqueid}");
            let hit = candidates.iter().find_map(|folder| {
                let dir = m.join(user).join("deleted").join(folder);
                std::fs::read_dir(&dir).ok()?.find_map(|e| {
                    let p = e.unwrap().path();
                    (p.is_file()
                        && uid_of(&p) == uid
                        && xattr(&p, "user.mailbackfs.digest").as_deref() == Some(guid))
                    .then_some(p)
                })
            });
            let p = hit.unwrap_or_else(|| {
                panic!("{user}: expunged UID {uid} ({guid}) not in deleted/{candidates:?}")
            });
            let at = xattr(&p, "user.mailbackfs.deleted_at")
                .unwrap_or_else(|| panic!("{}: no deleted_at", p.display()));
            assert!(
                at.starts_with("2026-11-23T"),
                "{}: deleted_at {at}",
                p.display()
            );
            check_message_file(user, &p);
            found += 1;
        }
    }
    assert!(found >= 5, "{found}");
}

fn data_file(root: &Path, user: &str) -> PathBuf {
    let d = root.join("backup/partition").join(&user[..1]);
    std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap()
}

/// guid -> chunk id, from the oracle's dump of the index.
fn message_chunks(user: &str) -> HashMap<String, i64> {
    let csv =
        std::fs::read_to_string(corpus().join(format!("oracle/{user}/index/message.csv"))).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[3].parse().unwrap())
        })
        .collect()
}

/// Mount a damaged copy: messages outside `bad_chunks` of `user` (and all
/// of the other users) read equal to the oracle; messages inside read equal
/// to the oracle (when wholly before the damage) or fail with EIO, never
/// anything else, and the mount keeps serving. Returns (good, failed) for
/// `user`.
fn check_damaged_mount(root: &Path, user: &str, bad_chunks: &[i64]) -> (usize, usize) {
    let idx = index_dir();
    let m = Mount::start(root, idx.path(), &[]);
    let chunks = message_chunks(user);
    let (mut good, mut failed) = (0, 0);
    let mut last_good: Option<PathBuf> = None;
    for u in USERS {
        for part in ["latest", "deleted"] {
            let top = m.join(u).join(part);
            if !top.is_dir() {
                continue;
            }
            let (_, files) = walk(&top);
            // `.salvaged` files (listed once a read found the damage) hold
            // partial bytes by design; the items themselves are checked.
            for f in files
                .into_iter()
                .filter(|f| f.extension() != Some("salvaged".as_ref()))
            {
                let digest = xattr(&f, "user.mailbackfs.digest")
                    .unwrap_or_else(|| panic!("{}: no digest", f.display()));
                let in_bad = u == user && bad_chunks.contains(chunks.get(&digest).unwrap_or(&0));
                match std::fs::read(&f) {
                    Ok(bytes) => {
                        // Messages of the damaged chunk wholly before the
                        // damage still read: their SHA-1 proves them.
                        assert!(bytes == oracle_message(u, &digest), "{}", f.display());
                        assert_eq!(std::fs::metadata(&f).unwrap().len(), bytes.len() as u64);
                        if u == user {
                            good += 1;
                        }
                        last_good = Some(f.clone());
                    }
                    Err(e) => {
                        assert!(in_bad, "{}: {e}", f.display());
                        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{}: {e}", f.display());
                        failed += 1;
                        // The mount keeps serving.
                        if let Some(g) = &last_good {
                            let b = std::fs::read(g).unwrap();
                            assert_eq!(sha1_hex(&b), xattr(g, "user.mailbackfs.digest").unwrap());
                        }
                        // And fails the same way again.
                        let e2 = std::fs::read(&f).unwrap_err();
                        assert_eq!(e2.raw_os_error(), Some(libc::EIO));
                    }
                }
            }
        }
    }
    (good, failed)
}

/// (a) alice's data file cut inside chunk 3: what came before reads.
#[test]
fn truncated_data_file_mounts() {
    let dir = copy_backup();
    let f = data_file(dir.path(), "alice");
    let b = std::fs::read(&f).unwrap();
    // Chunk 3 spans 432156..438931 (gzip_members.json): cut in its middle.
    std::fs::write(&f, &b[..436_000]).unwrap();
    let (good, _failed) = check_damaged_mount(dir.path(), "alice", &[3, 4]);
    assert!(good > 10, "good {good}");
}

/// (b) bytes corrupted in the middle of alice's chunk 1: messages after the
/// damage fail with EIO, every other message reads.
#[test]
fn corrupt_chunk_mounts() {
    let dir = copy_backup();
    let f = data_file(dir.path(), "alice");
    let mut b = std::fs::read(&f).unwrap();
    // Chunk 1 spans 0..419306; damage its middle.
    for x in &mut b[200_000..200_064] {
        *x ^= 0x5a;
    }
    std::fs::write(&f, &b).unwrap();
    let (good, failed) = check_damaged_mount(dir.path(), "alice", &[1]);
    assert!(good > 0 && failed > 0, "good {good} failed {failed}");
}
