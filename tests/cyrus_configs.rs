//! Cyrus configurations that real sites run, through a real kernel mount:
//! the corpora under tests/corpora/cyrus-* were made with the real Cyrus
//! 3.6.1 tools (scripts/make-cyrus-corpora), each with its oracle (live
//! IMAP state per round, `cyr_backup dump message` per message). Every
//! round's `@<sync_finished>` view must equal that round's IMAP state:
//! folders, UIDs, flags, internal dates, sizes and bytes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use serde_json::Value;
use sha1::Digest;
use support::{cli, fingerprint, gunzip, Mount};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/corpora/cyrus-{name}"))
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// The users of a corpus: the oracle directories that hold a truth.json.
fn users(c: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(c.join("oracle"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path()
                .join("truth.json")
                .is_file()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out
}

/// The userids `ctl_backups -j list` printed (concatenated JSON objects).
fn ctl_backups_users(c: &Path) -> BTreeSet<String> {
    let raw = std::fs::read(c.join("oracle/ctl_backups_list.json")).unwrap();
    serde_json::Deserializer::from_slice(&raw)
        .into_iter::<Value>()
        .map(|v| v.unwrap()["userid"].as_str().unwrap().to_string())
        .collect()
}

/// `cyr_backup dump message GUID`, or `None` when the tool had nothing.
fn oracle_message(c: &Path, user: &str, guid: &str) -> Option<Vec<u8>> {
    let p = c.join(format!("oracle/{user}/messages/{guid}.eml.gz"));
    let b = p.is_file().then(|| gunzip(&p))?;
    (!b.is_empty()).then_some(b)
}

fn sha1_hex(b: &[u8]) -> String {
    sha1::Sha1::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
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
    Some(buf)
}

fn xattr_names(p: &Path) -> Vec<String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let r =
        unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    assert!(r >= 0, "{}: listxattr failed", p.display());
    buf.truncate(r as usize);
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    names
}

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The directory of an instant (UTC, to the second).
fn instant_dir(t: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(t, 0).unwrap();
    format!("@{}", dt.format("%Y-%m-%dT%H:%M:%S"))
}

/// IMAP name (modified UTF-7, with the server's separator) -> mount path.
/// With `altnamespace` (`alt`) clients see the folders beside INBOX; the
/// backup holds only internal names, where they are below it, and so does
/// the mount.
fn mount_path(mb: &Value, alt: bool) -> String {
    let sep = mb["separator"].as_str().unwrap_or(".");
    let name = mb["imap_name"].as_str().unwrap();
    let path = name
        .split(sep)
        .map(mailbackfs::mutf7::decode_lossy)
        .collect::<Vec<_>>()
        .join("/");
    if alt && name != "INBOX" {
        format!("INBOX/{path}")
    } else {
        path
    }
}

fn uid_of(p: &Path) -> u32 {
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no UID prefix in {name}"))
}

/// One message as the view shows it, or as the oracle says it must be.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Msg {
    uid: u32,
    flags: BTreeSet<String>,
    internaldate: i64,
    size: u64,
    guid: String,
}

type Shape = (BTreeSet<String>, BTreeMap<String, BTreeSet<Msg>>);

fn walk(root: &Path) -> (BTreeSet<String>, Vec<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        dirs.insert(d.strip_prefix(root).unwrap().to_string_lossy().into_owned());
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

fn shape_of_truth(round: &Value, alt: bool) -> Shape {
    let mut folders = BTreeSet::new();
    let mut msgs: BTreeMap<String, BTreeSet<Msg>> = BTreeMap::new();
    for mb in round["mailboxes"].as_array().unwrap() {
        let path = mount_path(mb, alt);
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..=parts.len() {
            folders.insert(parts[..i].join("/"));
        }
        for m in mb["messages"].as_array().unwrap() {
            msgs.entry(path.clone()).or_default().insert(Msg {
                uid: m["uid"].as_u64().unwrap() as u32,
                flags: m["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
                internaldate: m["internaldate"].as_i64().unwrap(),
                size: m["size"].as_u64().unwrap(),
                guid: m["guid"].as_str().unwrap().to_string(),
            });
        }
    }
    (folders, msgs)
}

/// The view's shape; every message's bytes are read and checked against
/// the oracle dump of its digest. A message whose body the tools could not
/// dump either (`lost`) must fail to read with EIO.
fn shape_of_view(c: &Path, user: &str, dir: &Path, lost: &mut usize) -> Shape {
    let (dirs, files) = walk(dir);
    let folders = dirs.into_iter().filter(|d| !d.is_empty()).collect();
    let mut msgs: BTreeMap<String, BTreeSet<Msg>> = BTreeMap::new();
    for f in files {
        let folder = f
            .parent()
            .unwrap()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let guid = String::from_utf8(
            xattr(&f, "user.mailbackfs.digest")
                .unwrap_or_else(|| panic!("{}: no digest", f.display())),
        )
        .unwrap();
        let size = std::fs::metadata(&f).unwrap().len();
        match oracle_message(c, user, &guid) {
            Some(want) => {
                let got = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                assert_eq!(sha1_hex(&got), guid, "{}: sha1 of the bytes", f.display());
                assert!(got == want, "{}: differs from cyr_backup dump", f.display());
                assert_eq!(size, got.len() as u64, "{}: stat size", f.display());
            }
            None => {
                let e = std::fs::read(&f).expect_err("a body the tools lost must not read");
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{}: {e}", f.display());
                *lost += 1;
            }
        }
        let flags = String::from_utf8(xattr(&f, "user.mailbackfs.flags").unwrap_or_default())
            .unwrap()
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        msgs.entry(folder).or_default().insert(Msg {
            uid: uid_of(&f),
            flags,
            internaldate: mtime(&f),
            size,
            guid,
        });
    }
    (folders, msgs)
}

/// What comparing a corpus found besides equality.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Messages whose bodies neither the tools nor the mount have.
    lost: usize,
    /// Rounds before a compaction whose views show less than the server had.
    short_rounds: usize,
}

/// Whether view `got` shows only what `want` has (folders and messages).
fn is_part_of(got: &Shape, want: &Shape) -> bool {
    got.0.is_subset(&want.0)
        && got
            .1
            .iter()
            .all(|(f, m)| want.1.get(f).is_some_and(|w| m.is_subset(w)))
}

/// Mount corpus `name` and compare every round of every user. After a
/// `ctl_backups compact`, the rounds before the last one it kept may show
/// less (the tools rewrote them), never something else.
fn check_corpus(name: &str) -> Outcome {
    let c = corpus(name);
    let before = fingerprint(&c);
    let idx = tempfile::tempdir().unwrap();
    let mut lost = 0;
    let mut short_rounds = 0;
    {
        let m = Mount::start(&c, idx.path(), &[]);
        let mut top = support::names(&m.path);
        top.remove(".control");
        let want: BTreeSet<String> = users(&c).into_iter().collect();
        assert_eq!(top, want, "{name}: accounts at the mount root");
        assert_eq!(top, ctl_backups_users(&c), "{name}: ctl_backups -j list");
        for user in users(&c) {
            let t = json(&c.join(format!("oracle/{user}/truth.json")));
            let rounds = t["rounds"].as_array().unwrap();
            let fin = |r: &Value| r["sync_finished"].as_i64().unwrap();
            // The last round synced before the compaction: its state is kept.
            let kept = t["compacted_at"]
                .as_i64()
                .and_then(|c| rounds.iter().map(fin).filter(|f| *f < c).max());
            for r in rounds {
                let n = r["round"].as_i64().unwrap();
                let dir = m.join(&user).join(instant_dir(fin(r)));
                let got = shape_of_view(&c, &user, &dir, &mut lost);
                let want = shape_of_truth(r, t["altnamespace"].as_bool().unwrap_or(false));
                if kept.is_some_and(|k| fin(r) < k) && got != want {
                    assert!(is_part_of(&got, &want), "{name} {user} round {n}: {got:?}");
                    short_rounds += 1;
                    continue;
                }
                assert_eq!(got.0, want.0, "{name} {user} round {n}: folders");
                assert_eq!(got.1, want.1, "{name} {user} round {n}: messages");
            }
            // No Cyrus mailbox ends up outside the tree.
            for view in ["latest", "deleted"] {
                let (dirs, _) = walk(&m.join(&user).join(view));
                assert!(
                    dirs.iter().all(|d| !d.contains("unknown_")),
                    "{name} {user} {view}: {dirs:?}"
                );
            }
        }
    }
    assert!(before == fingerprint(&c), "{name}: the corpus changed");
    Outcome { lost, short_rounds }
}

/// `virtdomains: userid`: `example.com!user.jane` is the INBOX of the
/// account `jane@example.com`; also the content cases (5 MB message, 8-bit
/// and ISO-8859-1 headers, one message in several folders and users, a date
/// after 2038, delayed delete, APPLY SEEN, sieve, annotations).
#[test]
fn virtdomains_userid_views_match_the_oracle() {
    assert_eq!(check_corpus("vdom-userid"), Outcome::default());
}

/// `virtdomains: on`: a user with a domain and one in the default domain.
#[test]
fn virtdomains_on_views_match_the_oracle() {
    assert_eq!(check_corpus("vdom-on"), Outcome::default());
}

/// `unixhierarchysep: yes`: `^` in internal names is a `.` (`v1^2` is
/// `v1.2`, `user.john^smith` is the INBOX of `john.smith`).
#[test]
fn unixhierarchysep_views_match_the_oracle() {
    assert_eq!(check_corpus("unixsep"), Outcome::default());
}

/// A folder deleted and re-created under its name between two syncs (twice).
#[test]
fn recreated_folder_views_match_the_oracle() {
    assert_eq!(check_corpus("recreate"), Outcome::default());
}

/// The same with `delete_mode: delayed`: the old mailbox goes to
/// `DELETED.*` by an `APPLY RENAME` and a new one takes the name; a folder
/// is renamed onto the name of a just-deleted one.
#[test]
fn recreated_folder_with_delayed_delete_views_match_the_oracle() {
    assert_eq!(check_corpus("recreate-delayed"), Outcome::default());
}

/// The upstream Cyrus 3 defaults, `altnamespace: yes` and
/// `unixhierarchysep: yes` (folders beside INBOX for clients, below it
/// inside and in the mount).
#[test]
fn upstream_default_namespace_views_match_the_oracle() {
    assert_eq!(check_corpus("defaults"), Outcome::default());
}

/// `expunge_mode: immediate`: sync_client leaves expunged records out of
/// a line without SINCE_MODSEQ; the SYNC_CRC says which went away.
#[test]
fn immediate_expunge_views_match_the_oracle() {
    assert_eq!(check_corpus("expunge-immediate"), Outcome::default());
}

/// A shared mailbox (`shared.News`, synced with `sync_client -m`) is in
/// the backup of the pseudo-user `%SHARED`: an account of its own, its
/// folders at the top.
#[test]
fn shared_mailbox_views_match_the_oracle() {
    assert_eq!(check_corpus("shared"), Outcome::default());
}

/// After `ctl_backups compact` (run after round 2): rounds 2 and 3 match,
/// round 1 shows less (the tool rewrote its chunk: records updated later
/// and the body of a message expunged later are gone), the pre-compaction
/// copies are not accounts, and `accounts` and `check` say so.
#[test]
fn compacted_backup_matches_the_oracle_and_says_so() {
    assert_eq!(
        check_corpus("compact"),
        Outcome {
            lost: 0,
            short_rounds: 1
        }
    );
    let c = corpus("compact");
    let idx = tempfile::tempdir().unwrap();
    let ix = idx.path().to_str().unwrap();
    let (code, out, err) = cli(&["accounts", "--index", ix, c.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("carl "), "{out}");
    assert!(out.contains("ctl_backups compact"), "{out}");
    let (code, out, err) = cli(&["check", c.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ctl_backups compact"), "{out}");
    // Without backups.db (the partition alone), the copies are no accounts either.
    let part = c.join("backup/partition");
    let idx2 = tempfile::tempdir().unwrap();
    let (code, out, err) = cli(&[
        "accounts",
        "--index",
        idx2.path().to_str().unwrap(),
        part.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("carl "), "{out}");
}

/// Every file of a mount: path -> (size, mtime, xattrs, sha1 of the bytes
/// or the read error), walking the listed trees and the given instants.
fn tree(root: &Path, instants: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = support::names(root)
        .into_iter()
        .filter(|n| n != ".control")
        .flat_map(|acct| {
            let a = root.join(&acct);
            let mut v: Vec<PathBuf> = support::names(&a).into_iter().map(|n| a.join(n)).collect();
            v.extend(instants.iter().map(|i| a.join(i)).filter(|p| p.is_dir()));
            v
        })
        .collect();
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = std::fs::metadata(&p).unwrap();
        let attrs: Vec<String> = xattr_names(&p)
            .into_iter()
            .map(|n| {
                let v = xattr(&p, &n).unwrap_or_default();
                format!("{n}={}", String::from_utf8_lossy(&v))
            })
            .collect();
        let mt = meta
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if meta.is_dir() {
            // Not mt: some directories carry the mount time, by design.
            out.insert(rel, format!("dir {attrs:?}"));
            stack.extend(support::names(&p).into_iter().map(|n| p.join(n)));
        } else {
            let body = match std::fs::read(&p) {
                Ok(b) => sha1_hex(&b),
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    format!("error {:?}", e.raw_os_error())
                }
                Err(e) => panic!("{}: {e}", p.display()),
            };
            out.insert(rel, format!("{} {mt} {body} {attrs:?}", meta.len()));
        }
    }
    out
}

/// Build the catalogue of `c` in a separate `mailbackfs index` process,
/// on one CPU or on all, and return the mounted tree.
fn tree_of_build(c: &Path, one_cpu: bool, instants: &[String]) -> BTreeMap<String, String> {
    let idx = tempfile::tempdir().unwrap();
    let mut cmd = if one_cpu {
        let mut t = Command::new("taskset");
        t.args(["-c", "0"]).arg(support::bin());
        t
    } else {
        Command::new(support::bin())
    };
    let st = cmd
        .arg("index")
        .arg("--index")
        .arg(idx.path())
        .arg(c)
        .status()
        .expect("mailbackfs index");
    assert!(st.success(), "mailbackfs index failed");
    let m = Mount::start(c, idx.path(), &["--no-refresh"]);
    tree(&m.path, instants)
}

/// Two catalogue builds of one backup, in two processes with different
/// thread counts, give identical trees (also the re-created folder, whose
/// two same-named mailboxes once came out in either order).
#[test]
fn catalogue_builds_are_deterministic() {
    for name in ["recreate", "recreate-delayed", "vdom-userid"] {
        let c = corpus(name);
        let rounds = json(&c.join("oracle/rounds.json"));
        let instants: Vec<String> = rounds["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| instant_dir(r["sync_finished"].as_i64().unwrap()))
            .collect();
        let a = tree_of_build(&c, true, &instants);
        let b = tree_of_build(&c, false, &instants);
        assert!(a.len() > 10, "{name}: {a:?}");
        let diff: Vec<_> = a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| (k, v, b.get(k)))
            .chain(
                b.keys()
                    .filter(|k| !a.contains_key(*k))
                    .map(|k| (k, &b[k], None)),
            )
            .take(10)
            .collect();
        assert!(diff.is_empty(), "{name}: builds differ: {diff:#?}");
    }
}

/// Parse an instant xattr (`2026-12-01T09:08:16.000Z`) to Unix seconds.
fn instant(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp()
}

/// Every message that was live in one round and gone in the next (expunged,
/// moved, its folder deleted, or its folder replaced by a re-created one of
/// the same name) is in `deleted/` under its last folder path, with its
/// bytes, deleted at an instant of the sync that carried the change.
#[test]
fn vanished_messages_are_in_deleted_at_their_sync() {
    for name in [
        "vdom-userid",
        "vdom-on",
        "unixsep",
        "recreate",
        "recreate-delayed",
        "defaults",
        "expunge-immediate",
    ] {
        let c = corpus(name);
        let idx = tempfile::tempdir().unwrap();
        let m = Mount::start(&c, idx.path(), &[]);
        let mut found = 0;
        for user in users(&c) {
            let del = m.join(&user).join("deleted");
            let (_, files) = walk(&del);
            // (folder path, uid, guid) -> deleted_at
            let mut shown: BTreeMap<(String, u32, String), Vec<i64>> = BTreeMap::new();
            for f in &files {
                let folder = f.parent().unwrap().strip_prefix(&del).unwrap();
                let guid = String::from_utf8(xattr(f, "user.mailbackfs.digest").unwrap()).unwrap();
                let at = xattr(f, "user.mailbackfs.deleted_at")
                    .unwrap_or_else(|| panic!("{}: no deleted_at", f.display()));
                let got = std::fs::read(f).unwrap();
                assert_eq!(sha1_hex(&got), guid, "{}", f.display());
                shown
                    .entry((folder.to_string_lossy().into_owned(), uid_of(f), guid))
                    .or_default()
                    .push(instant(&String::from_utf8(at).unwrap()));
            }
            let t = json(&c.join(format!("oracle/{user}/truth.json")));
            let rounds = t["rounds"].as_array().unwrap();
            for w in rounds.windows(2) {
                let live = |r: &Value| -> BTreeMap<(String, u64), (String, String)> {
                    let mut out = BTreeMap::new();
                    for mb in r["mailboxes"].as_array().unwrap() {
                        for msg in mb["messages"].as_array().unwrap() {
                            out.insert(
                                (
                                    mb["uniqueid"].as_str().unwrap().to_string(),
                                    msg["uid"].as_u64().unwrap(),
                                ),
                                (
                                    mount_path(mb, t["altnamespace"].as_bool().unwrap_or(false)),
                                    msg["guid"].as_str().unwrap().to_string(),
                                ),
                            );
                        }
                    }
                    out
                };
                let (before, after) = (live(&w[0]), live(&w[1]));
                let window = w[1]["sync_started"].as_i64().unwrap()
                    ..=w[1]["sync_finished"].as_i64().unwrap();
                for (key, (path, guid)) in &before {
                    if after.contains_key(key) {
                        continue;
                    }
                    let at = shown
                        .get(&(path.clone(), key.1 as u32, guid.clone()))
                        .unwrap_or_else(|| {
                            panic!(
                                "{name} {user}: {path} uid {} ({guid}) not in deleted/: {shown:?}",
                                key.1
                            )
                        });
                    assert!(
                        at.iter().any(|a| window.contains(a)),
                        "{name} {user}: {path} uid {}: deleted at {at:?}, not in {window:?}",
                        key.1
                    );
                    found += 1;
                }
            }
        }
        assert!(found > 0, "{name}: nothing vanished between rounds");
    }
}

/// Raw 8-bit headers name the files: UTF-8 as it is, and lines that are not
/// UTF-8 as ISO-8859-1 (`Réunion à Zürich`, not `R_union_Z_rich`).
#[test]
fn raw_8bit_subjects_name_the_files() {
    let c = corpus("vdom-userid");
    let idx = tempfile::tempdir().unwrap();
    let m = Mount::start(&c, idx.path(), &[]);
    let inbox = support::names(&m.join("jane@example.com/latest/INBOX"));
    assert!(
        inbox.iter().any(|n| n.starts_with("2-Réunion")),
        "{inbox:?}"
    );
    assert!(inbox.iter().any(|n| n.contains("Zürich")), "{inbox:?}");
    assert!(
        inbox.iter().any(|n| n.starts_with("3-Grüße_aus_Köln")),
        "{inbox:?}"
    );
}

/// Sieve scripts and another user's seen state (`APPLY SEEN`) are tolerated:
/// the accounts read without problems, and the catalogue build says what it
/// does not show.
#[test]
fn sieve_and_seen_are_tolerated_and_reported() {
    let c = corpus("vdom-userid");
    let idx = tempfile::tempdir().unwrap();
    let ix = idx.path().to_str().unwrap();
    let (code, _, err) = cli(&["index", "--index", ix, c.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = |who: &str| {
        err.lines()
            .find(|l| l.contains(who) && l.contains("the mount does not show"))
            .unwrap_or_else(|| panic!("no report for {who}: {err}"))
            .to_string()
    };
    assert!(
        line("jane@example.com").contains("2 sieve script line(s)"),
        "{err}"
    );
    assert!(line("max@example.com").contains("2 seen state(s)"), "{err}");
    let (code, out, err) = cli(&["accounts", "--index", ix, c.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "no problem lines: {out}");
}

/// `check` is clean on every corpus but the compacted one: in particular
/// the replay agrees with every `SYNC_CRC` the server sent (also in the
/// shared corpus), so the CRC check raises no false alarm.
#[test]
fn check_is_clean_on_every_uncompacted_corpus() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/cyrus/main");
    let mut roots: Vec<PathBuf> = [
        "vdom-userid",
        "vdom-on",
        "unixsep",
        "recreate",
        "recreate-delayed",
        "defaults",
        "expunge-immediate",
        "shared",
    ]
    .iter()
    .map(|n| corpus(n))
    .collect();
    roots.push(shared);
    for root in roots {
        let (code, out, err) = cli(&["check", root.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}{err}", root.display());
        assert!(!out.contains("SYNC_CRC"), "{out}");
    }
}
