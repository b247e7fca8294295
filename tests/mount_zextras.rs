//! A Zextras/Carbonio backup path mounted through the kernel: bytes, sizes,
//! offsets, points in time, folder renames, tolerance, read-only-ness.

mod support;

use support::{sample, Sample};

use support::{names, xattr};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailbackfs::model::ItemKind;
use mailbackfs::synth;
use mailbackfs::timeline::format_instant;
use support::{files_below, fingerprint, gunzip, Mount};

/// The blob a digest names, found and gunzipped by hand.
fn blob_by_hand(backup: &Path, digest: &str) -> Vec<u8> {
    let path = backup.join("items").join(&digest[..2]).join(digest);
    gunzip(&path)
}

fn account_dir(s: &Sample, key: &str) -> String {
    s.info.account(key).unwrap().name.clone()
}

#[test]
fn copy_of_latest_equals_blobs_gunzipped_by_hand() {
    let s = sample();
    let before = fingerprint(&s.backup);
    {
        let m = Mount::start(&s.backup, &s.index, &[]);
        let out = tempfile::tempdir().unwrap();
        for a in &s.info.accounts {
            let copy = out.path().join(&a.name);
            let status = Command::new("cp")
                .arg("-r")
                .arg(m.join(&format!("{}/latest", a.name)))
                .arg(&copy)
                .status()
                .unwrap();
            assert!(status.success(), "cp -r of {}", a.name);
            let files = files_below(&copy);
            let mut blobs_seen = 0;
            for rel in &files {
                let mounted = m.join(&format!("{}/latest", a.name)).join(rel);
                let copied = std::fs::read(copy.join(rel)).unwrap();
                let size = std::fs::metadata(&mounted).unwrap().len();
                assert_eq!(size, copied.len() as u64, "stat size of {}", rel.display());
                let ext = rel.extension().map(|e| e.to_string_lossy().into_owned());
                if matches!(ext.as_deref(), Some("eml") | Some("pdf")) {
                    let digest = xattr(&mounted, "user.mailbackfs.digest").expect("digest xattr");
                    assert_eq!(
                        copied,
                        blob_by_hand(&s.backup, &digest),
                        "{}",
                        rel.display()
                    );
                    blobs_seen += 1;
                }
            }
            // Every live item with a blob was copied.
            let expected = s
                .info
                .items
                .iter()
                .filter(|i| i.account == a.key && !i.deleted && i.content.is_some())
                .filter(|i| matches!(i.kind, ItemKind::Message | ItemKind::Document))
                .count();
            assert_eq!(blobs_seen, expected, "blob items of {}", a.name);
        }
    }
    assert_eq!(
        before,
        fingerprint(&s.backup),
        "the backup path was written to"
    );
}

#[test]
fn random_offset_reads_match() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    // The largest blob item of the sample.
    let item = s
        .info
        .items
        .iter()
        .filter(|i| !i.deleted && i.kind == ItemKind::Message)
        .max_by_key(|i| i.content.as_ref().map_or(0, |c| c.len()))
        .unwrap();
    let content = item.content.clone().unwrap();
    let latest = m.join(&format!("{}/latest", account_dir(&s, &item.account)));
    let path = find_alias(&latest, &format!("{}.eml", item.id)).expect("item in latest");
    for (skip, count) in [
        (0, 1),
        (1, 7),
        (content.len() / 2, 100),
        (content.len() - 1, 1),
        (content.len(), 5),
    ] {
        let out = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["bs=1", "status=none"])
            .arg(format!("skip={skip}"))
            .arg(format!("count={count}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let end = (skip + count).min(content.len());
        assert_eq!(
            out.stdout,
            &content[skip.min(end)..end],
            "dd skip={skip} count={count}"
        );
    }
    // Bigger blocks at odd offsets, through a plain file handle.
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).unwrap();
    for off in [content.len() as u64 / 3, 5, content.len() as u64 / 7] {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut buf = vec![0u8; 70_000];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &content[off as usize..off as usize + n]);
    }
}

/// `latest/` may hold the item in any folder: find the alias by walking.
fn find_alias(root: &Path, alias: &str) -> Option<PathBuf> {
    let direct = root.join(alias);
    if direct.exists() {
        return Some(direct);
    }
    for e in std::fs::read_dir(root).ok()? {
        let e = e.ok()?;
        if e.file_type().ok()?.is_dir() {
            if let Some(p) = find_alias(&e.path(), alias) {
                return Some(p);
            }
        }
    }
    None
}

#[test]
fn item_moved_then_deleted_at_every_instant() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let mv = &s.info.moved;
    let acct = m.join(&account_dir(&s, &mv.account));
    let prefix = format!("{}-", mv.id);
    let has = |instant: i64, folder: &str| {
        let dir = acct
            .join(format!("@{}", format_instant(instant)))
            .join(folder);
        names(&dir).iter().any(|n| n.starts_with(&prefix))
    };
    assert!(!has(mv.arrived - 1, "Inbox"), "before it arrived");
    assert!(
        has(mv.arrived, "Inbox"),
        "a state starting at the instant is shown"
    );
    assert!(has(mv.moved_to_trash - 1, "Inbox"));
    assert!(!has(mv.moved_to_trash - 1, "Trash"));
    assert!(has(mv.moved_to_trash, "Trash"));
    assert!(
        !has(mv.moved_to_trash, "Inbox"),
        "a state ending at the instant is not shown"
    );
    assert!(has(mv.deleted - 1, "Trash"));
    assert!(!has(mv.deleted, "Trash"));
    assert!(!names(&acct.join("latest/Trash"))
        .iter()
        .any(|n| n.starts_with(&prefix)));
    // The other instant spellings resolve to the same view.
    let compact = chrono::DateTime::from_timestamp_millis(mv.moved_to_trash)
        .unwrap()
        .format("@%Y%m%d.%H%M%S")
        .to_string();
    assert!(names(&acct.join(compact).join("Trash"))
        .iter()
        .any(|n| n.starts_with(&prefix)));
    // And it waits in deleted/, under Trash, with its deletion time.
    let deleted = acct.join("deleted/Trash").join(format!("{}.eml", mv.id));
    assert_eq!(
        xattr(&deleted, "user.mailbackfs.deleted_at").as_deref(),
        Some(format_instant(mv.deleted).as_str())
    );
}

#[test]
fn day_directories_are_exactly_the_days_with_changes() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    for a in &s.info.accounts {
        let listed: BTreeSet<String> = names(&m.join(&a.name))
            .into_iter()
            .filter(|n| n.len() == 10 && n.as_bytes()[4] == b'-')
            .collect();
        let expected: BTreeSet<String> = a.days.iter().cloned().collect();
        assert_eq!(listed, expected, "days of {}", a.name);
        let others = names(&m.join(&a.name));
        for fixed in ["latest", "deleted", "history"] {
            assert!(others.contains(fixed));
        }
        assert_eq!(
            others.len(),
            expected.len() + 3,
            "nothing else in {}",
            a.name
        );
    }
    let root = names(&m.path);
    let expected: BTreeSet<String> = s
        .info
        .accounts
        .iter()
        .map(|a| a.name.clone())
        .chain([".control".to_string()])
        .collect();
    assert_eq!(root, expected);
}

#[test]
fn folder_rename_shows_the_name_valid_at_each_instant() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let r = &s.info.renamed;
    let acct = m.join(&account_dir(&s, &r.account));
    let parent = "Inbox";
    let at = |t: i64| names(&acct.join(format!("@{}", format_instant(t))).join(parent));
    assert!(at(r.renamed_at - 1).contains(&r.old_name));
    assert!(!at(r.renamed_at - 1).contains(&r.new_name));
    assert!(at(r.renamed_at).contains(&r.new_name));
    assert!(!at(r.renamed_at).contains(&r.old_name));
    // The nested item follows its parent's name.
    let nested = format!("{}.eml", r.nested_item);
    let before = acct
        .join(format!("@{}", format_instant(r.renamed_at - 1)))
        .join(parent)
        .join(&r.old_name);
    let after = acct.join("latest").join(parent).join(&r.new_name);
    assert!(find_alias(&before, &nested).is_some());
    assert!(find_alias(&after, &nested).is_some());
}

#[test]
fn tolerance_variants_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let info = synth::write_tolerance_fixture(&backup).unwrap();
    let before = fingerprint(&backup);
    {
        let m = Mount::start(&backup, &dir.path().join("index"), &[]);
        let acct = m.join(&info.account);
        let history = names(&acct.join("history"));
        for item in &info.items {
            let key = item.id.to_string();
            if item.broken {
                assert!(
                    history.contains(&key),
                    "broken item {} in history ({})",
                    item.id,
                    item.case
                );
                let err = std::fs::read(acct.join("history").join(&key).join("error")).unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::EIO), "{}", item.case);
                continue;
            }
            let Some(kind) = item.kind else { continue };
            if !kind.is_file() {
                continue;
            }
            let ext = match kind {
                ItemKind::Message => "eml",
                ItemKind::Contact => "vcf",
                ItemKind::Appointment | ItemKind::Task => "ics",
                _ => continue,
            };
            let alias = format!("{}.{ext}", item.id);
            let root = if item.deleted {
                acct.join("deleted")
            } else {
                acct.join("latest")
            };
            let path = find_alias(&root, &alias).unwrap_or_else(|| {
                panic!(
                    "item {} ({}) not found under {}",
                    item.id,
                    item.case,
                    root.display()
                )
            });
            if kind == ItemKind::Message && !item.deleted {
                let flags = xattr(&path, "user.mailbackfs.flags").unwrap();
                assert_eq!(
                    flags,
                    item.flags.join(" "),
                    "flags of {} ({})",
                    item.id,
                    item.case
                );
                if let Some(content) = &item.content {
                    assert_eq!(
                        &std::fs::read(&path).unwrap(),
                        content,
                        "bytes of {} ({})",
                        item.id,
                        item.case
                    );
                }
            }
        }
        // Names that are not item ids are ignored, never shown.
        for p in &info.ignored {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!history.contains(&name), "{name} must be ignored");
        }
    }
    assert_eq!(before, fingerprint(&backup));
}

#[test]
fn writes_fail_with_erofs() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let latest = m.join(&format!("{}/latest", s.info.accounts[0].name));
    let inbox = latest.join("Inbox");
    let some_file = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let erofs = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::EROFS);
    assert!(erofs(std::fs::write(inbox.join("new.eml"), b"x")));
    assert!(erofs(std::fs::create_dir(inbox.join("sub"))));
    assert!(erofs(std::fs::remove_file(&some_file)));
    assert!(erofs(std::fs::rename(
        &some_file,
        inbox.join("renamed.eml")
    )));
    assert!(erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&some_file)
            .map(|_| ())
    ));
    let status = Command::new("setfattr")
        .args(["-n", "user.x", "-v", "1"])
        .arg(&some_file)
        .output()
        .unwrap();
    assert!(!status.status.success());
}

#[test]
fn background_mount_and_umount_through_the_cli() {
    let s = sample();
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let daemon = support::bin().with_file_name("mailbackfs-mountd");
    assert!(
        daemon.exists(),
        "{} is missing: run the tests with scripts/test (it builds the whole workspace)",
        daemon.display()
    );
    let (code, _, err) = support::cli(&[
        "mount",
        s.backup.to_str().unwrap(),
        mp.to_str().unwrap(),
        "--index",
        s.index.to_str().unwrap(),
    ]);
    // From here on the mount must be undone whatever happens.
    struct Guard<'a>(&'a Path);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if support::is_mounted(self.0) {
                let _ = Command::new("fusermount3").arg("-uz").arg(self.0).status();
            }
        }
    }
    let _guard = Guard(&mp);
    assert_eq!(code, 0, "mount failed: {err}");
    assert!(
        support::is_mounted(&mp),
        "mount returned before the mount answered"
    );
    assert!(names(&mp).contains(&s.info.accounts[0].name));
    let (code, _, err) = support::cli(&["umount", mp.to_str().unwrap()]);
    assert_eq!(code, 0, "umount failed: {err}");
    assert!(!support::is_mounted(&mp));
}

#[test]
fn accounts_and_incremental_index() {
    let s = sample();
    let idx = s.index.to_str().unwrap();
    let b = s.backup.to_str().unwrap();
    let (code, out, err) = support::cli(&["index", b, "--index", idx]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 accounts read, 0 unchanged"), "{out}");
    let (code, out, _) = support::cli(&["index", b, "--index", idx]);
    assert_eq!(code, 0);
    assert!(out.contains("0 accounts read, 3 unchanged"), "{out}");
    // Touch one account's metadata: only that account is read again.
    let key = &s.info.accounts[0].key;
    let meta = s.backup.join("accounts").join(key).join("account_info");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, format!("{text}\n")).unwrap();
    let (_, out, _) = support::cli(&["index", b, "--index", idx]);
    assert!(out.contains("1 accounts read, 2 unchanged"), "{out}");
    let (code, out, _) = support::cli(&["accounts", b, "--index", idx]);
    assert_eq!(code, 0);
    for a in &s.info.accounts {
        let line = out
            .lines()
            .find(|l| l.starts_with(&a.name))
            .expect("account listed");
        assert!(line.contains(&a.status), "{line}");
    }
    // The index never goes inside the backup.
    let inside = s.backup.join("idx");
    let (code, _, err) = support::cli(&["index", b, "--index", inside.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("inside the backup path"), "{err}");
}
