//! Zimbra classic targets (`zmbackup` sessions) through real kernel mounts,
//! against the truth of the generator in `support/zimbra_gen.rs` (written
//! from the format doc, not from the reader).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::zimbra_gen::{self, FileTruth, Tree, Truth, ALICE, BOB, CAROL};
use support::{cli_bounded, names, xattr, Mount};

struct Target {
    _dir: tempfile::TempDir,
    backup: PathBuf,
    index: PathBuf,
    truth: Truth,
}

fn target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let truth = zimbra_gen::write(&backup);
    Target {
        index: dir.path().join("index"),
        backup,
        truth,
        _dir: dir,
    }
}

/// Folders (relative paths) and files (by folder) below a view.
fn walk(view: &Path) -> (BTreeSet<String>, BTreeMap<String, Vec<String>>) {
    let mut folders = BTreeSet::new();
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = view.join(&rel);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let sub = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                folders.insert(sub.clone());
                stack.push(sub);
            } else if !name.ends_with(".salvaged") {
                files.entry(rel.clone()).or_default().push(name);
            }
        }
    }
    (folders, files)
}

fn words(v: Option<String>, sep: char) -> BTreeSet<String> {
    v.unwrap_or_default()
        .split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Files compared, so that a vacuous pass shows.
static CHECKED: AtomicUsize = AtomicUsize::new(0);

fn check_file(path: &Path, want: &FileTruth, what: &str) {
    CHECKED.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{}-", want.id)), "{what}: {name}");
    assert!(name.ends_with(&format!(".{}", want.ext)), "{what}: {name}");
    assert_eq!(
        xattr(path, "user.mailbackfs.id").as_deref(),
        Some(want.id.to_string().as_str()),
        "{what}"
    );
    match (&want.bytes, want.error) {
        (Some(b), _) => {
            let got = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: reading {name}: {e}"));
            assert!(
                got == *b,
                "{what}: bytes of {name} ({} vs {})",
                got.len(),
                b.len()
            );
            assert_eq!(
                std::fs::metadata(path).unwrap().len(),
                b.len() as u64,
                "{what}: size of {name}"
            );
        }
        (None, Some(kind)) => {
            let e = std::fs::read(path).expect_err(&format!("{what}: {name} must fail"));
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {name}: {e}");
            let why = xattr(path, "user.mailbackfs.error").unwrap_or_default();
            assert!(
                why.starts_with(kind),
                "{what}: {name}: .error {why:?}, want {kind}"
            );
        }
        (None, None) => {
            let text = String::from_utf8(std::fs::read(path).unwrap()).unwrap();
            assert!(text.starts_with("BEGIN:VCARD"), "{what}: {text}");
            for l in &want.vcf_has {
                assert!(text.lines().any(|t| t == l), "{what}: {l} not in {text}");
            }
        }
    }
    if want.ext == "eml" {
        assert_eq!(
            xattr(path, "user.mailbackfs.digest"),
            want.digest,
            "{what}: digest of {name}"
        );
        assert_eq!(
            words(xattr(path, "user.mailbackfs.flags"), ' '),
            want.flags,
            "{what}: flags of {name}"
        );
        assert_eq!(
            words(xattr(path, "user.mailbackfs.tags"), ','),
            want.tags,
            "{what}: tags of {name}"
        );
    }
}

/// The files of `got` under each folder are exactly `want`'s, by id.
fn check_files(
    view: &Path,
    got: &BTreeMap<String, Vec<String>>,
    want: &BTreeMap<String, Vec<FileTruth>>,
    what: &str,
) {
    let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for k in keys {
        let g = got.get(k).cloned().unwrap_or_default();
        let w = want.get(k).cloned().unwrap_or_default();
        let gid: BTreeSet<i64> = g
            .iter()
            .map(|n| n.split(['-', '.']).next().unwrap().parse().unwrap())
            .collect();
        let wid: BTreeSet<i64> = w.iter().map(|f| f.id).collect();
        assert_eq!(gid, wid, "{what}: items of folder {k:?} (listed {g:?})");
        for f in &w {
            let name = g
                .iter()
                .find(|n| n.starts_with(&format!("{}-", f.id)))
                .unwrap();
            check_file(&view.join(k).join(name), f, &format!("{what}/{k}"));
        }
    }
}

fn check_view(view: &Path, want: &Tree, what: &str) {
    let (folders, files) = walk(view);
    assert_eq!(folders, want.folders, "{what}: folders");
    check_files(view, &files, &want.files, what);
}

#[test]
fn every_view_matches_the_truth_and_the_target_is_not_written() {
    let t = target();
    let before = support::fingerprint(&t.backup);
    let m = Mount::start(&t.backup, &t.index, &[]);
    let root = names(&m.path);
    let want_root: BTreeSet<String> = t
        .truth
        .accounts
        .iter()
        .map(|a| a.dir.clone())
        .chain([".control".to_string()])
        .collect();
    assert_eq!(root, want_root);
    for a in &t.truth.accounts {
        let acct = m.join(&a.dir);
        assert_eq!(
            xattr(&acct, "user.mailbackfs.status").as_deref(),
            Some(a.status.as_str()),
            "{}",
            a.dir
        );
        let days: BTreeSet<String> = names(&acct)
            .into_iter()
            .filter(|n| !matches!(n.as_str(), "latest" | "deleted" | "history"))
            .collect();
        assert_eq!(days, a.days, "{}: day directories", a.dir);
        for (view, tree) in &a.views {
            check_view(&acct.join(view), tree, &format!("{}/{view}", a.dir));
        }
        let (_, files) = walk(&acct.join("deleted"));
        check_files(
            &acct.join("deleted"),
            &files,
            &a.deleted.files,
            &format!("{}/deleted", a.dir),
        );
        for (id, n) in &a.history {
            let h = names(&acct.join("history").join(id.to_string()));
            let states: Vec<&String> = h.iter().filter(|n| !n.ends_with(".salvaged")).collect();
            assert_eq!(states.len(), *n, "{}: history/{id}: {h:?}", a.dir);
        }
        for id in &a.bad_only {
            let p = acct.join("history").join(id.to_string());
            assert_eq!(
                names(&p),
                BTreeSet::from(["error".to_string()]),
                "{}",
                a.dir
            );
            let e = std::fs::read(p.join("error")).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
        }
    }
    let checked = CHECKED.load(Ordering::Relaxed);
    assert!(checked > 120, "only {checked} files compared");
    drop(m);
    assert_eq!(
        support::fingerprint(&t.backup),
        before,
        "the backup path was written"
    );
}

#[test]
fn broken_items_have_salvaged_bytes_and_history_serves_old_states() {
    let t = target();
    let m = Mount::start(&t.backup, &t.index, &[]);
    let inbox = m.join(ALICE).join("latest/Inbox");
    let cut = names(&inbox)
        .into_iter()
        .find(|n| n.starts_with("307-"))
        .unwrap();
    let _ = std::fs::read(inbox.join(&cut));
    let salvaged = std::fs::read(inbox.join(format!("{cut}.salvaged"))).unwrap();
    let full = zimbra_gen::message(307, "Cut short", 3);
    assert!(
        !salvaged.is_empty() && full.starts_with(&salvaged),
        "{} bytes",
        salvaged.len()
    );
    // 314's only copy fails its digest: .salvaged and history/ serve the
    // stored bytes.
    let wrong = names(&inbox)
        .into_iter()
        .find(|n| n.starts_with("314-"))
        .unwrap();
    assert!(std::fs::read(inbox.join(&wrong)).is_err());
    assert_eq!(
        std::fs::read(inbox.join(format!("{wrong}.salvaged"))).unwrap(),
        b"not the message\r\n"
    );
    let h314 = m.join(ALICE).join("history/314");
    let entry = names(&h314)
        .into_iter()
        .find(|n| !n.ends_with(".salvaged"))
        .unwrap();
    assert_eq!(
        std::fs::read(h314.join(entry)).unwrap(),
        b"not the message\r\n"
    );
    // 302: in S1, deleted in S2, back in S3: three states.
    let h = m.join(ALICE).join("history/302");
    let entries: Vec<String> = names(&h).into_iter().collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    let deleted: Vec<&String> = entries
        .iter()
        .filter(|n| xattr(&h.join(n), "user.mailbackfs.deleted_at").is_some())
        .collect();
    assert_eq!(deleted.len(), 1, "{entries:?}");
    assert_eq!(
        xattr(&h.join(deleted[0]), "user.mailbackfs.deleted_at").as_deref(),
        Some("2024-03-03T10:00:00.000Z")
    );
    // The incremental of 03-04 has no account tables: alice as on 03-03.
    let shown = names(&m.join(ALICE).join("@2024-03-04T09:00:00Z/Inbox"));
    assert!(shown.iter().any(|n| n.starts_with("308-")), "{shown:?}");
    // Bob's damaged snapshot kept 501.
    let bob = names(&m.join(BOB).join("latest/Inbox"));
    assert!(bob.iter().any(|n| n.starts_with("501-")), "{bob:?}");
    // Carol's date was written in milliseconds.
    let c = m.join(CAROL).join("latest/Inbox");
    let f = names(&c)
        .into_iter()
        .find(|n| n.starts_with("600-"))
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(c.join(f)).unwrap().mtime(), 1_708_500_000);
}

#[test]
fn check_get_item_and_accounts_work_on_it() {
    let t = target();
    let backup = t.backup.to_str().unwrap();
    let index = t.index.to_str().unwrap();
    let limit = Duration::from_secs(300);
    let (code, out, err) = cli_bounded(&["check", backup, "--json"], limit);
    assert_eq!(code, 1, "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["format"], "zimbra-classic");
    let text = report.to_string();
    for what in [
        "missing blob",
        "truncated gzip",
        "malformed metadata",
        "bad row dropped",
    ] {
        assert!(text.contains(what), "{what} not in {text}");
    }
    // 300's corrupt newest copy is no problem (an older copy is intact);
    // 314 has only a wrong copy;
    // and the placeholder of the shared 305 is no orphan; 599 is one.
    let mismatched: Vec<&str> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["problems"].as_array().unwrap())
        .filter(|p| p["kind"] == "digest mismatch")
        .map(|p| p["item"].as_str().unwrap())
        .collect();
    assert_eq!(mismatched, vec!["314"], "{text}");
    assert!(report["orphans_checked"].as_bool().unwrap(), "{text}");
    let orphans = report["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(
        orphans[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/blobs/0/599-1.msg"),
        "{orphans:?}"
    );

    let (code, out, err) =
        cli_bounded(&["get-item", backup, "--index", index, ALICE, "301"], limit);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.matches("2024-03-0").count() >= 2, "{out}");
    let (code, out, err) = cli_bounded(
        &[
            "get-item",
            backup,
            "--index",
            index,
            ALICE,
            "303",
            "--dump-blob",
        ],
        limit,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        zimbra_gen::message(303, "Big one", zimbra_gen::BIG_LINES)
    );

    let (code, out, err) = cli_bounded(&["accounts", backup, "--index", index], limit);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    for (path, first, last) in &t.truth.redologs {
        let line = out
            .lines()
            .find(|l| l.contains(path.as_str()))
            .unwrap_or_else(|| panic!("{path} not in {out}"));
        let f = chrono::DateTime::from_timestamp_millis(*first)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let l = chrono::DateTime::from_timestamp_millis(*last)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        assert!(line.contains(&f) && line.contains(&l), "{line}");
    }
    assert!(out.contains(&format!("{BOB}~")), "{out}");
}

/// One `write(2)` of `line` to `.control/restore`; the new job's status
/// once it is finished.
fn restore_via_control(m: &Mount, line: &str) -> String {
    use std::io::Write;
    let control = m.join(".control");
    let jobs = |c: &Path| -> BTreeSet<String> { names(&c.join("jobs")) };
    let before = jobs(&control);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(control.join("restore"))
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    drop(f);
    let after = jobs(&control);
    let id = after.difference(&before).next().expect("a new job").clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let text = std::fs::read_to_string(control.join("jobs").join(&id)).unwrap_or_default();
        let state = text
            .lines()
            .find_map(|l| l.strip_prefix("state: "))
            .unwrap_or("");
        if matches!(state, "done" | "failed" | "stopped") {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} hangs:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report_number(status: &str, what: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(what))
        .unwrap_or_else(|| panic!("no {what} in {status}"))
        .trim()
        .parse()
        .unwrap()
}

/// A restored message: bytes, flags, date (seconds).
type Expected = (Vec<u8>, BTreeSet<String>, i64);

#[test]
fn account_restore_at_a_date_lands_in_dovecot() {
    use mailbackfs::restore::target::imap::imap_date;
    use support::dovecot::{chown_for_mail, Dovecot};
    let dc = Dovecot::start();
    let t = target();
    let m = Mount::start(&t.backup, &t.index, &[]);
    let root = dc.dir().join("alice-0303");
    let status = restore_via_control(
        &m,
        &format!("account {ALICE} 2024-03-03 to=maildir:{}", root.display()),
    );
    // As the snapshot of 03-03 had it: messages that read (306 and 307 are
    // broken), in their folders (renamed, nested), with flags and dates.
    let alice = t.truth.account(ALICE);
    let (_, snap) = &alice.snapshots[1];
    let mut want: BTreeMap<String, Vec<Expected>> = BTreeMap::new();
    let mut broken = 0;
    for (id, msg) in &snap.items {
        if msg.kind != 5 {
            continue;
        }
        if [306, 307, 311, 314].contains(id) {
            broken += 1;
            continue;
        }
        let path = snap.path(msg.folder).unwrap();
        let mut parts: Vec<&str> = path.split('/').collect();
        if parts[0] == "Inbox" {
            parts[0] = "INBOX";
        }
        let mut flags: BTreeSet<String> = BTreeSet::new();
        if !msg.unread {
            flags.insert("\\Seen".into());
        }
        for (bit, w) in [(4, "\\Answered"), (32, "\\Flagged")] {
            if msg.flags & bit != 0 {
                flags.insert(w.into());
            }
        }
        want.entry(parts.join("."))
            .or_default()
            .push((msg.bytes.clone(), flags, msg.date));
    }
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(
        report_number(&status, "Restored Items:"),
        total as u64,
        "{status}"
    );
    assert_eq!(
        report_number(&status, "Unrestored Items:"),
        broken,
        "{status}"
    );
    chown_for_mail(&root);
    dc.add_user("alice", "pw", Some(&format!("maildir:{}", root.display())));
    let mut c = dc.client("alice", "pw");
    let mut got_total = 0;
    for mb in c.list().unwrap() {
        if mb
            .attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        {
            continue;
        }
        c.select(&mb.raw_name).unwrap();
        let msgs = c.fetch_all().unwrap();
        got_total += msgs.len();
        if msgs.is_empty() {
            continue;
        }
        let w = want
            .get(&mb.name)
            .unwrap_or_else(|| panic!("unexpected mailbox {} (want {:?})", mb.name, want.keys()));
        assert_eq!(msgs.len(), w.len(), "{}", mb.name);
        for (bytes, flags, date) in w {
            let got = msgs
                .iter()
                .find(|g| &g.body == bytes)
                .unwrap_or_else(|| panic!("a message missing from {}", mb.name));
            let got_flags: BTreeSet<String> = got
                .flags
                .iter()
                .filter(|f| *f != "\\Recent")
                .cloned()
                .collect();
            assert_eq!(&got_flags, flags, "{}", mb.name);
            assert_eq!(got.internal_date, imap_date(date * 1000), "{}", mb.name);
        }
    }
    assert_eq!(got_total, total);
}

#[test]
fn links_and_fifos_in_the_target_are_never_followed_or_read() {
    let t = target();
    let s = t.backup.join("sessions");
    let bob_rel = "accounts/b0b/000/b0b00000-0000-4000-8000-000000000002";
    // A FIFO where bob's incremental would have its table: never opened.
    let db = s.join("incr-20240304.100000.000").join(bob_rel).join("db");
    std::fs::create_dir_all(&db).unwrap();
    let fifo = std::ffi::CString::new(db.join("mail_item.dat").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // A linked session, and a linked account directory in the newest
    // session: followed, they would give snapshots that delete items.
    std::os::unix::fs::symlink(
        s.join("full-20240301.100000.000"),
        s.join("full-20240310.100000.000"),
    )
    .unwrap();
    let newest = s.join("full-20240306.100000.000").join(bob_rel);
    std::fs::create_dir_all(newest.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(s.join("full-20240301.100000.000").join(bob_rel), &newest).unwrap();
    let m = Mount::start(&t.backup, &t.index, &[]);
    for who in [ALICE, BOB] {
        let a = t.truth.account(who);
        let (_, latest) = a.views.iter().find(|(v, _)| v == "latest").unwrap();
        check_view(&m.join(who).join("latest"), latest, who);
        assert_eq!(
            names(&m.join(who))
                .into_iter()
                .filter(|n| n.starts_with("20"))
                .collect::<BTreeSet<_>>(),
            a.days
        );
    }
    let (code, out, err) = cli_bounded(
        &[
            "accounts",
            t.backup.to_str().unwrap(),
            "--index",
            t.index.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("not a regular file") || out.contains("symbolic link"),
        "{out}"
    );
}

#[test]
fn a_new_session_reads_again_only_the_accounts_it_holds() {
    let t = target();
    let backup = t.backup.to_str().unwrap();
    let index = t.index.to_str().unwrap();
    let limit = Duration::from_secs(300);
    let said = |out: Vec<u8>, err: String| format!("{}{err}", String::from_utf8_lossy(&out));
    let (code, out, err) = cli_bounded(&["index", backup, "--index", index], limit);
    assert_eq!(code, 0, "{err}");
    let text = said(out, err);
    assert!(text.contains("4 accounts read"), "{text}");
    // A new session holding carol only, as the last one had her.
    let s = t.backup.join("sessions");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(s.join("incr-20240305.100000.000"))
        .arg(s.join("full-20240320.100000.000"))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out, err) = cli_bounded(&["index", backup, "--index", index], limit);
    assert_eq!(code, 0, "{err}");
    let text = said(out, err);
    assert!(text.contains("1 accounts read, 3 unchanged"), "{text}");
}
