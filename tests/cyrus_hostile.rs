//! A hostile Cyrus backup (issue 10, items 1, 13, 14 and 17): `backups.db`
//! paths leading out of the partition and duplicate keys, data files and
//! indexes that are links or FIFOs, indexes whose tables are views (one of
//! them endless) or carry triggers, an unreadable `backups.db` and an
//! account without a data file. Nothing outside the backup is read,
//! nothing hangs (every CLI run is bounded), every problem is reported.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailbackfs::format::cyrus::CyrusReader;
use mailbackfs::format::BackupReader;
use support::{cli_bounded, copy_cyrus_backup as copy_backup, cyrus_corpus as corpus};

const LIMIT: Duration = Duration::from_secs(120);

/// The data file of `user` (`<h>/<user>_XXXXXX`) in the copy.
fn data_file(root: &Path, user: &str) -> PathBuf {
    let d = root.join("backup/partition").join(&user[..1]);
    std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap()
}

fn index_of(data: &Path) -> PathBuf {
    PathBuf::from(format!("{}.index", data.display()))
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum()
}

/// A minimal twoskip file holding `pairs` in this order, each linked to
/// the next at level 0 (duplicates included, as a hostile file may).
fn twoskip(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn record(kind: u8, key: &[u8], val: &[u8], next: u64) -> Vec<u8> {
        let mut r = vec![kind, 0];
        r.extend_from_slice(&(key.len() as u16).to_be_bytes());
        r.extend_from_slice(&(val.len() as u32).to_be_bytes());
        r.extend_from_slice(&next.to_be_bytes());
        let crc = crc32(&r);
        r.extend_from_slice(&crc.to_be_bytes());
        r.extend_from_slice(&0u32.to_be_bytes());
        r.extend_from_slice(key);
        r.extend_from_slice(val);
        while r.len() % 8 != 0 {
            r.push(0);
        }
        r
    }
    // Record lengths do not depend on the links: lay out first.
    let mut offsets = Vec::new();
    let mut at = 64 + record(b'=', b"", b"", 0).len() as u64;
    for (k, v) in pairs {
        offsets.push(at);
        at += record(b'+', k.as_bytes(), v.as_bytes(), 0).len() as u64;
    }
    let mut body = record(b'=', b"", b"", offsets.first().copied().unwrap_or(0));
    for (i, (k, v)) in pairs.iter().enumerate() {
        let next = offsets.get(i + 1).copied().unwrap_or(0);
        body.extend(record(b'+', k.as_bytes(), v.as_bytes(), next));
    }
    let mut h = b"\xa1\x02\x8b\x0dtwoskip file\0\0\0\0".to_vec();
    h.resize(48, 0);
    h.extend_from_slice(&(64 + body.len() as u64).to_be_bytes());
    h.resize(60, 0);
    let crc = crc32(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h.extend(body);
    h
}

/// (guid of every message state) of `user`, as the reader sees them.
fn guids(r: &dyn BackupReader, user: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut out = BTreeSet::new();
    let acct = r
        .read_account(user, &mut |i| {
            for s in &i.states {
                if let Some(b) = &s.blob {
                    out.insert(b.digest.clone().unwrap());
                }
            }
        })
        .unwrap();
    (out, acct.problems)
}

fn all_problems(r: &CyrusReader, users: &[&str]) -> String {
    let mut v = r.problems();
    for u in users {
        if let Ok(a) = r.read_account(u, &mut |_| {}) {
            v.extend(a.problems);
        }
    }
    v.join("\n")
}

#[test]
fn backups_db_paths_stay_in_the_partition_and_duplicates_are_reported() {
    let clean = CyrusReader::open(&corpus()).unwrap();
    let (alice_guids, _) = guids(&clean, "alice");
    let (carol_guids, _) = guids(&clean, "carol");

    let dir = copy_backup();
    let root = dir.path();
    let outside = root.join("outside");
    // Carol's data file, outside the partition, under names the recorded
    // paths of alice and bob give.
    let carol = data_file(root, "carol");
    for sub in ["x", "b"] {
        std::fs::create_dir_all(outside.join(sub)).unwrap();
    }
    let alice_out = outside.join("x/alice_AAAAAA");
    let bob_out = outside.join("b/bob_BBBBBB");
    for p in [&alice_out, &bob_out] {
        std::fs::copy(&carol, p).unwrap();
        std::fs::copy(index_of(&carol), index_of(p)).unwrap();
    }
    let partition = root.join("backup/partition");
    let rel_bob = format!("{}/../../outside/b/bob_BBBBBB", partition.display());
    let dora = data_file(root, "dora");
    let alice = data_file(root, "alice");
    let db = twoskip(&[
        ("alice", alice_out.to_str().unwrap()),
        ("bob", &rel_bob),
        ("carol", carol.to_str().unwrap()),
        ("dora", dora.to_str().unwrap()),
        ("dora", alice.to_str().unwrap()),
        ("erin", "/etc/shadow"),
    ]);
    std::fs::write(root.join("backup/config/backups.db"), db).unwrap();

    let r = CyrusReader::open(&root.join("backup")).unwrap();
    let keys: Vec<String> = r
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert!(
        ["alice", "bob", "carol", "dora"]
            .iter()
            .all(|u| keys.contains(&u.to_string())),
        "{keys:?}"
    );
    let (a, _) = guids(&r, "alice");
    assert_eq!(
        a, alice_guids,
        "alice is read from the partition, not from outside"
    );
    assert!(a.is_disjoint(&carol_guids));
    let (b, _) = guids(&r, "bob");
    assert!(
        b.is_disjoint(&carol_guids),
        "bob is not carol's file outside"
    );
    let (d, _) = guids(&r, "dora");
    assert!(
        d.is_disjoint(&alice_guids),
        "the duplicate key does not swap dora"
    );

    let problems = all_problems(&r, &["alice", "bob", "dora"]);
    assert!(problems.contains("duplicate"), "{problems}");
    for user in ["alice", "bob", "erin"] {
        assert!(
            problems.lines().any(|l| l.contains(user)),
            "{user}: {problems}"
        );
    }
    // check says so, and fails.
    let (code, out, err) = cli_bounded(&["check", root.join("backup").to_str().unwrap()], LIMIT);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("duplicate"), "{out}");
    assert!(out.contains("erin"), "{out}");
}

/// Replace alice's index by `make(path)`; her account is still read (from
/// the data file), check ends, and the problem is reported.
fn hostile_index(make: impl FnOnce(&Path), says: &str) {
    let clean = CyrusReader::open(&corpus()).unwrap();
    let (want, _) = guids(&clean, "alice");
    let dir = copy_backup();
    let idx = index_of(&data_file(dir.path(), "alice"));
    make(&idx);
    let backup = dir.path().join("backup");
    let (code, out, err) = cli_bounded(&["check", backup.to_str().unwrap()], LIMIT);
    let out = String::from_utf8_lossy(&out);
    assert!(code == 0 || code == 1, "{out}{err}");
    assert!(out.contains(says), "{says}: {out}");
    let r = CyrusReader::open(&backup).unwrap();
    let (got, problems) = guids(&r, "alice");
    assert_eq!(got, want, "alice read from her data file");
    assert!(problems.iter().any(|p| p.contains(says)), "{problems:?}");
}

fn sql(path: &Path, script: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(script).unwrap();
}

#[test]
fn index_fifo_is_not_opened() {
    hostile_index(
        |idx| {
            std::fs::remove_file(idx).unwrap();
            let c = std::ffi::CString::new(idx.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        },
        "not a regular file",
    );
}

#[test]
fn index_link_is_not_followed() {
    hostile_index(
        |idx| {
            let far = idx.with_extension("far");
            std::fs::rename(idx, &far).unwrap();
            symlink(&far, idx).unwrap();
        },
        "not a regular file",
    );
}

#[test]
fn index_endless_view_is_refused() {
    hostile_index(
        |idx| {
            sql(
                idx,
                "ALTER TABLE message RENAME TO message_real;
                 CREATE VIEW message AS
                   WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
                   SELECT 'g' || n AS guid, 1 AS chunk_id, 0 AS offset, 0 AS size FROM r;",
            )
        },
        "view",
    );
}

#[test]
fn index_trigger_is_refused() {
    hostile_index(
        |idx| {
            sql(
                idx,
                "CREATE TRIGGER t AFTER INSERT ON chunk BEGIN SELECT 1; END;",
            )
        },
        "trigger",
    );
}

#[test]
fn index_expensive_generated_column_is_cut_short() {
    hostile_index(
        |idx| {
            sql(
                idx,
                "ALTER TABLE message RENAME TO message_real;
                 CREATE TABLE message (id INTEGER PRIMARY KEY, chunk_id, offset, size,
                   guid AS (hex(zeroblob(100000000))));
                 INSERT INTO message (id, chunk_id, offset, size)
                   SELECT id, chunk_id, offset, size FROM message_real;",
            )
        },
        "too big",
    );
}

#[test]
fn data_file_link_is_refused_and_reported() {
    let dir = copy_backup();
    let alice = data_file(dir.path(), "alice");
    let far = dir.path().join("far_alice");
    std::fs::rename(&alice, &far).unwrap();
    symlink(&far, &alice).unwrap();
    let backup = dir.path().join("backup");
    let (code, out, _) = cli_bounded(&["check", backup.to_str().unwrap()], LIMIT);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("alice") && out.contains("not a regular file"),
        "{out}"
    );
}

#[test]
fn check_fails_when_backups_db_is_unreadable_or_a_data_file_is_missing() {
    let dir = copy_backup();
    let backup = dir.path().join("backup");
    std::fs::write(backup.join("config/backups.db"), b"garbage").unwrap();
    let (code, out, _) = cli_bounded(&["check", backup.to_str().unwrap()], LIMIT);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("backups.db"), "{out}");

    let dir = copy_backup();
    let backup = dir.path().join("backup");
    let dora = data_file(dir.path(), "dora");
    std::fs::remove_file(&dora).unwrap();
    let (code, out, _) = cli_bounded(&["check", backup.to_str().unwrap()], LIMIT);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dora"), "{out}");
}
