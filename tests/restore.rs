//! Restores end to end: requests written to `.control/restore` of a real
//! mount (and `mailbackfs restore` without one), read back from a real
//! Dovecot over IMAP, from a Maildir through Dovecot, and from mbox files
//! with `mail-parser`; point in time, undelete, idempotence, crash safety
//! of the queue (kill -9 of the daemon mid-job), stopping, bad requests.

mod support;

use support::{sample, Sample};

use support::xattr;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailbackfs::restore::imap::{FetchedMessage, ImapClient};
use mailbackfs::restore::target::imap::imap_date;
use mailbackfs::restore::target::TlsMode;
use mailbackfs::synth;
use support::dovecot::{chown_for_mail, Dovecot};
use support::{cli, is_mounted, Mount};

const JOHN: &str = "john@example.com";

fn john_key(s: &Sample) -> String {
    s.info.account(JOHN).unwrap().key.clone()
}

/// One `write(2)` of `text` to a control file, as `echo ... > FILE` does.
fn write_control(m: &Mount, file: &str, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join(".control").join(file))?;
    f.write_all(text.as_bytes())
}

fn read_control(m: &Mount, file: &str) -> String {
    std::fs::read_to_string(m.join(".control").join(file))
        .unwrap_or_else(|e| panic!("reading .control/{file}: {e}"))
}

fn job_ids(m: &Mount) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(m.join(".control/jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Submit one request and return its job id.
fn submit(m: &Mount, line: &str) -> u64 {
    let before = job_ids(m);
    write_control(m, "restore", &format!("{line}\n"))
        .unwrap_or_else(|e| panic!("{line}: {e}: {}", read_control(m, "last-error")));
    let after = job_ids(m);
    assert_eq!(after.len(), before.len() + 1, "{line}: one new job");
    *after.last().unwrap()
}

fn state_of(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("state: "))
        .unwrap_or("")
        .to_string()
}

/// Poll `jobs/<id>` until the job is finished; its status text.
fn wait_job_at(control: &Path, id: u64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text =
            std::fs::read_to_string(control.join("jobs").join(id.to_string())).unwrap_or_default();
        if matches!(state_of(&text).as_str(), "done" | "failed" | "stopped") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not finished in {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_job(m: &Mount, id: u64) -> String {
    wait_job_at(&m.join(".control"), id, Duration::from_secs(120))
}

/// A number from a report line (`Restored Items: 8`).
fn stat(status: &str, what: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(what))
        .unwrap_or_else(|| panic!("no {what:?} in:\n{status}"))
        .trim()
        .parse()
        .unwrap()
}

/// `done/total` of a status text.
fn progress(status: &str) -> (u64, u64) {
    let p = status
        .lines()
        .find_map(|l| l.strip_prefix("progress: "))
        .unwrap_or("0/0");
    let (a, b) = p.split_once('/').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// A message as a view of the mount shows it: the oracle.
#[derive(Debug)]
struct Shown {
    /// The mailbox name Dovecot (Maildir++, `.` separator) gives its folder.
    mailbox: String,
    id: i64,
    bytes: Vec<u8>,
    flags: BTreeSet<String>,
    /// Seconds (mtime is the item's date).
    date: i64,
}

/// Every `.eml` below a view directory of the mount.
fn shown_messages(view: &Path) -> Vec<Shown> {
    let mut out = Vec::new();
    for rel in support::files_below(view) {
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".eml") {
            continue;
        }
        let path = view.join(&rel);
        let mut comps: Vec<String> = rel
            .parent()
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if comps.is_empty() || comps[0].eq_ignore_ascii_case("inbox") {
            if comps.is_empty() {
                comps.push(String::new());
            }
            comps[0] = "INBOX".into();
        }
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        out.push(Shown {
            mailbox: comps.join("."),
            id: name.split(['-', '.']).next().unwrap().parse().unwrap(),
            bytes: std::fs::read(&path).unwrap(),
            flags: xattr(&path, "user.mailbackfs.flags")
                .unwrap_or_default()
                .split(' ')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
            date: meta.mtime(),
        });
    }
    out
}

/// Every message of every mailbox, by mailbox name.
fn mailboxes(c: &mut ImapClient) -> BTreeMap<String, Vec<FetchedMessage>> {
    let mut out = BTreeMap::new();
    for mb in c.list().unwrap() {
        if mb
            .attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        {
            continue;
        }
        c.select(&mb.raw_name).unwrap();
        out.insert(mb.name.clone(), c.fetch_all().unwrap());
    }
    out
}

fn flag_set(flags: &[String]) -> BTreeSet<String> {
    flags.iter().filter(|f| *f != "\\Recent").cloned().collect()
}

/// The server holds exactly the shown messages, each in its folder, byte
/// for byte, with its flags (plus `extra_flag`) and INTERNALDATE.
fn assert_restored(
    got: &BTreeMap<String, Vec<FetchedMessage>>,
    want: &[Shown],
    extra_flag: Option<&str>,
) {
    let total: usize = got.values().map(Vec::len).sum();
    assert_eq!(total, want.len(), "message count; server has {got:#?}");
    for w in want {
        let msgs = got
            .get(&w.mailbox)
            .unwrap_or_else(|| panic!("no mailbox {} in {:?}", w.mailbox, got.keys()));
        let mut flags = w.flags.clone();
        if let Some(k) = extra_flag {
            flags.insert(k.to_string());
        }
        // Items may share their bytes: the one with these flags.
        let same: Vec<&FetchedMessage> = msgs.iter().filter(|m| m.body == w.bytes).collect();
        assert!(
            !same.is_empty(),
            "item {} not in {} byte for byte",
            w.id,
            w.mailbox
        );
        let m = same
            .iter()
            .find(|m| flag_set(&m.flags) == flags)
            .unwrap_or_else(|| panic!("flags of item {}: {flags:?} not in {same:?}", w.id));
        assert_eq!(
            m.internal_date,
            imap_date(w.date * 1000),
            "INTERNALDATE of item {}",
            w.id
        );
    }
}

#[test]
fn imap_account_restore_read_back_and_second_run_skips() {
    let dc = Dovecot::start();
    dc.add_user("alice", "pw", None);
    let pw = dc.password_file("alice", "pw");
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let want = shown_messages(&m.join(JOHN).join("latest"));
    assert!(want.len() >= 5, "{want:?}");
    // The mount's bytes are the backup's bytes.
    for w in &want {
        let item = s.info.item(&john_key(&s), w.id).unwrap();
        assert_eq!(item.content.as_deref(), Some(&w.bytes[..]), "item {}", w.id);
    }
    let line = format!(
        "account {JOHN} last to=imap://alice@127.0.0.1:{} password_file={}",
        dc.port,
        pw.display()
    );
    let id = submit(&m, &line);
    let status = wait_job(&m, id);
    assert_eq!(state_of(&status), "done", "{status}");
    assert_eq!(
        stat(&status, "Restored Items:"),
        want.len() as u64,
        "{status}"
    );
    assert_eq!(stat(&status, "Unrestored Items:"), 0, "{status}");
    assert_eq!(progress(&status), (want.len() as u64, want.len() as u64));
    assert!(status.contains("- stats -\nRestored Items: "), "{status}");
    assert!(status.contains("\n\n- unrestored items -\n"), "{status}");
    // Contacts, appointments and documents are left out, and said so.
    assert!(status.contains("- not messages (left out) -"), "{status}");
    let mut c = dc.client("alice", "pw");
    assert_restored(&mailboxes(&mut c), &want, None);

    // The same request again: everything skipped, nothing added.
    let id2 = submit(&m, &line);
    let status = wait_job(&m, id2);
    assert_eq!(state_of(&status), "done", "{status}");
    assert_eq!(stat(&status, "Restored Items:"), 0, "{status}");
    assert_eq!(
        stat(&status, "Skipped Items:"),
        want.len() as u64,
        "{status}"
    );
    assert_restored(&mailboxes(&mut c), &want, None);

    // One item, into a folder of our choosing.
    let line = format!(
        "item {JOHN} 301 to=imap://alice@127.0.0.1:{}/Picked password_file={} folder=Again",
        dc.port,
        pw.display()
    );
    let id3 = submit(&m, &line);
    let status = wait_job(&m, id3);
    assert_eq!(stat(&status, "Restored Items:"), 1, "{status}");
    c.select("Picked.Again").unwrap();
    let got = c.fetch_all().unwrap();
    let w = want.iter().find(|w| w.id == 301).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, w.bytes);
    assert_eq!(flag_set(&got[0].flags), w.flags);
    // The queue lists no finished job; jobs/ keeps them all.
    assert_eq!(read_control(&m, "queue"), "");
    assert_eq!(job_ids(&m), vec![id, id2, id3]);
}

#[test]
fn maildir_point_in_time_read_back_by_dovecot() {
    let dc = Dovecot::start();
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let instant = "2013-07-12T15:03:00Z";
    let want = shown_messages(&m.join(JOHN).join("@2013-07-12T15:03:00"));
    let root = dc.dir().join("pit-maildir");
    let id = submit(
        &m,
        &format!("account {JOHN} {instant} to=maildir:{}", root.display()),
    );
    let status = wait_job(&m, id);
    assert_eq!(
        stat(&status, "Restored Items:"),
        want.len() as u64,
        "{status}"
    );
    chown_for_mail(&root);
    dc.add_user("pit", "pw", Some(&format!("maildir:{}", root.display())));
    let mut c = dc.client("pit", "pw");
    let got = mailboxes(&mut c);
    assert_restored(&got, &want, None);
    // That moment, not today: 339 was in the Trash (moved 15:02:01,
    // deleted 15:05:08), the folder had its old name, "Old stuff" (deleted
    // on the 15th) still held 305, and 301 had become read and flagged.
    let moved = &s.info.moved;
    assert!(moved.moved_to_trash < 1_373_641_380_000 && moved.deleted > 1_373_641_380_000);
    let in_box = |mb: &str, id: i64| {
        want.iter().any(|w| w.mailbox == mb && w.id == id) && got.contains_key(mb)
    };
    assert!(in_box("Trash", 339), "{:?}", got.keys());
    assert!(in_box("Old stuff", 305), "{:?}", got.keys());
    assert!(got.contains_key("INBOX.Projects"), "{:?}", got.keys());
    assert!(
        !got.keys().any(|k| k.contains("Projets")),
        "{:?}",
        got.keys()
    );
    let w301 = want.iter().find(|w| w.id == 301).unwrap();
    let after: BTreeSet<String> = s.info.flag_change.after.iter().cloned().collect();
    assert_eq!(w301.flags, after);
    // Items that arrived later are not there.
    let later = shown_messages(&m.join(JOHN).join("latest"));
    let now_ids: BTreeSet<i64> = want.iter().map(|w| w.id).collect();
    assert!(later.iter().any(|w| !now_ids.contains(&w.id)));
}

#[test]
fn undelete_only_the_interval_with_the_keyword() {
    let dc = Dovecot::start();
    dc.add_user("bob", "pw", None);
    let pw = dc.password_file("bob", "pw");
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let deleted = shown_messages(&m.join(JOHN).join("deleted"));
    // 339 was deleted on the 12th, 305 (with its folder) on the 15th.
    assert!(deleted.iter().any(|w| w.id == 339) && deleted.iter().any(|w| w.id == 305));
    let keyword = format!("undelete_{}", chrono::Utc::now().format("%d_%m_%y"));
    let id = submit(
        &m,
        &format!(
            "undelete {JOHN} 2013-07-12 2013-07-12 to=imap://bob@127.0.0.1:{} password_file={}",
            dc.port,
            pw.display()
        ),
    );
    let status = wait_job(&m, id);
    assert_eq!(stat(&status, "Restored Items:"), 1, "{status}");
    // Restored from the state before the deletion, as the mount shows it
    // a millisecond before: its folder, flags and date.
    let just_before = mailbackfs::timeline::format_instant(s.info.moved.deleted - 1);
    let want: Vec<Shown> = shown_messages(&m.join(JOHN).join(format!("@{just_before}")))
        .into_iter()
        .filter(|w| w.id == 339)
        .collect();
    assert_eq!(want.len(), 1);
    assert_eq!(want[0].mailbox, "Trash");
    let key = john_key(&s);
    let mut c = dc.client("bob", "pw");
    assert_restored(&mailboxes(&mut c), &want, Some(&keyword));

    // The whole history into mbox files, read back with mail-parser.
    let dir = tempfile::tempdir().unwrap();
    let id = submit(
        &m,
        &format!(
            "undelete {JOHN} first last to=mbox:{}",
            dir.path().display()
        ),
    );
    let status = wait_job(&m, id);
    assert_eq!(stat(&status, "Restored Items:"), 2, "{status}");
    for (file, item) in [("Trash", 339), ("Old stuff", 305)] {
        let reader = std::io::BufReader::new(std::fs::File::open(dir.path().join(file)).unwrap());
        let msgs: Vec<_> = mail_parser::mailbox::mbox::MessageIterator::new(reader)
            .map(Result::unwrap)
            .collect();
        assert_eq!(msgs.len(), 1, "{file}");
        let contents = msgs[0].contents();
        let want = s.info.item(&key, item).unwrap().content.clone().unwrap();
        assert!(
            contents.windows(want.len()).any(|w| w == &want[..]),
            "{file}: item {item} bytes"
        );
        let text = String::from_utf8_lossy(contents);
        assert!(
            text.lines()
                .any(|l| l.starts_with("X-Keywords:") && l.contains(&keyword)),
            "{file}: {text}"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(contents)
            .unwrap();
        assert!(parsed.subject().is_some());
    }
}

#[test]
fn bad_requests_fail_with_einval_and_create_no_job() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let out = s.dir.path().join("out");
    let to = format!("to=maildir:{}", out.display());
    let cases = [
        (format!("frobnicate {JOHN} {to}"), "unknown request"),
        (format!("item {JOHN} 339"), "missing to="),
        (
            format!("item nobody@example.com 339 {to}"),
            "unknown account",
        ),
        (format!("item {JOHN} 99999 {to}"), "no item 99999"),
        (
            format!("item {JOHN} 339 to=pop3://u@host"),
            "unknown target",
        ),
        (
            format!("account {JOHN} last to=imap://u@127.0.0.1:143 password_file=/nonexistent/pw"),
            "password file /nonexistent/pw: cannot be read",
        ),
        (format!("account {JOHN} 2013-13-45 {to}"), "bad DATE"),
        (format!("undelete {JOHN} last first {to}"), "bad FROM"),
        // All or none: a good line and a bad one make no job.
        (
            format!("item {JOHN} 339 {to}\nitem {JOHN} 77777 {to}\n"),
            "line 2",
        ),
    ];
    for (line, why) in &cases {
        let e = write_control(&m, "restore", &format!("{line}\n"))
            .expect_err(&format!("{line:?} accepted"));
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{line:?}: {e}");
        let last = read_control(&m, "last-error");
        assert!(
            last.contains(why),
            "{line:?}: last-error {last:?} lacks {why:?}"
        );
        assert!(job_ids(&m).is_empty(), "{line:?} made a job");
    }
    assert!(!out.exists());
    // stop: an unknown job, or junk.
    for what in ["42", "everything"] {
        let e = write_control(&m, "stop", &format!("{what}\n")).expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}");
    }
    assert!(read_control(&m, "last-error").contains("everything"));
    // Other control files are not writable.
    let e = write_control(&m, "queue", "x\n").expect_err("queue is read-only");
    assert_ne!(e.raw_os_error(), None);
    // And a good request still goes through.
    let id = submit(&m, &format!("item {JOHN} 339 {to}"));
    let status = wait_job(&m, id);
    assert_eq!(stat(&status, "Restored Items:"), 1, "{status}");
    assert!(
        status.contains(&format!("request: item {JOHN} 339 ")),
        "{status}"
    );
    // A target that cannot be reached is no bad request: the job fails
    // and says why.
    let pw = s.dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let id = submit(
        &m,
        &format!(
            "item {JOHN} 339 to=imap://u@127.0.0.1:1 password_file={}",
            pw.display()
        ),
    );
    let status = wait_job(&m, id);
    assert_eq!(state_of(&status), "failed", "{status}");
    assert!(status.contains("\nerror: opening the target"), "{status}");
}

#[test]
fn cli_restore_reports_and_exit_codes() {
    let s = sample();
    let key = john_key(&s);
    let out = s.dir.path().join("cli-maildir");
    let backup = s.backup.to_str().unwrap();
    let index = s.index.to_str().unwrap();
    let (code, stdout, stderr) = cli(&[
        "restore",
        backup,
        "--index",
        index,
        &format!("item {JOHN} 339 to=maildir:{}", out.display()),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("- stats -\nRestored Items: 1\nSkipped Items:  0\nUnrestored Items: 0\n"),
        "{stdout}"
    );
    let files = support::files_below(&out);
    let msgs: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with(".Trash/cur"))
        .collect();
    assert_eq!(msgs.len(), 1, "{files:?}");
    let bytes = std::fs::read(out.join(msgs[0])).unwrap();
    assert_eq!(Some(bytes), s.info.item(&key, 339).unwrap().content.clone());
    // external: one tree per account, named by its address.
    let ext = s.dir.path().join("cli-external");
    let (code, stdout, stderr) = cli(&[
        "restore",
        backup,
        "--index",
        index,
        &format!(
            "external accounts={JOHN},anna@example.com to=maildir:{}",
            ext.display()
        ),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut trees: Vec<String> = std::fs::read_dir(&ext)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    trees.sort();
    assert_eq!(trees, vec!["anna@example.com", JOHN]);
    let (anna_files, _) = maildir_messages(&ext.join("anna@example.com"));
    let (john_files, _) = maildir_messages(&ext.join(JOHN));
    assert_eq!(
        stat(&stdout, "Restored Items:"),
        (anna_files + john_files) as u64,
        "{stdout}"
    );
    assert!(anna_files > 0 && john_files > 0);
    // A refused request: exit 2, nothing run.
    let (code, _, stderr) = cli(&[
        "restore",
        backup,
        "--index",
        index,
        "item nobody 1 to=mbox:/x",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown account"), "{stderr}");
    // Damage two blobs: one truncated (broken item), one gone (read error).
    let msgs: Vec<&synth::SampleItem> = s
        .info
        .items
        .iter()
        .filter(|i| {
            i.account == key
                && i.kind == mailbackfs::model::ItemKind::Message
                && !i.deleted
                && i.digest
                    .as_deref()
                    .is_some_and(|d| d != s.info.shared_digest)
        })
        .collect();
    let blob = |i: &synth::SampleItem| {
        let d = i.digest.as_deref().unwrap();
        s.backup.join("items").join(&d[..2]).join(d)
    };
    let (broken, gone) = (msgs[0], msgs[1]);
    let raw = std::fs::read(blob(broken)).unwrap();
    std::fs::write(blob(broken), &raw[..raw.len() / 2]).unwrap();
    std::fs::remove_file(blob(gone)).unwrap();
    let out2 = s.dir.path().join("cli-maildir-2");
    let (code, stdout, stderr) = cli(&[
        "restore",
        backup,
        "--index",
        index,
        &format!("account {JOHN} last to=maildir:{}", out2.display()),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("Unrestored Items: 2\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("account: {JOHN}\nunrestored items: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("\n{}: broken item: ", broken.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("\n{}: read error: ", gone.id)),
        "{stdout}"
    );
}

/// `mailbackfs-mountd` in the background, killed and unmounted on drop.
struct Daemon {
    child: Child,
    mnt: PathBuf,
}

fn mountd() -> PathBuf {
    support::bin().with_file_name("mailbackfs-mountd")
}

impl Daemon {
    fn start(backup: &Path, mnt: &Path, index: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(index.with_extension("log"))
            .unwrap();
        let child = Command::new(mountd())
            .arg(backup)
            .arg(mnt)
            .arg("--index")
            .arg(index)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mailbackfs-mountd (cargo build --workspace builds it)");
        let mut d = Daemon {
            child,
            mnt: mnt.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !is_mounted(mnt) {
            assert!(
                matches!(d.child.try_wait(), Ok(None)),
                "mountd exited before mounting"
            );
            assert!(Instant::now() < deadline, "mountd did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        d.child.try_wait().unwrap();
        d
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Message files of a Maildir++ tree, and how many files each
/// (folder, Message-ID) has.
fn maildir_messages(root: &Path) -> (usize, BTreeMap<(PathBuf, String), usize>) {
    let mut n = 0;
    let mut ids: BTreeMap<(PathBuf, String), usize> = BTreeMap::new();
    for f in support::files_below(root) {
        let Some(dir) = f.parent() else { continue };
        let sub = dir.file_name().unwrap_or_default();
        if sub != "cur" && sub != "new" {
            continue;
        }
        n += 1;
        let bytes = std::fs::read(root.join(&f)).unwrap();
        let mid = mailbackfs::restore::target::header_value(&bytes, "Message-ID")
            .unwrap_or_else(|| format!("no id: {}", f.display()));
        let folder = dir.parent().unwrap().to_path_buf();
        *ids.entry((folder, mid)).or_default() += 1;
    }
    (n, ids)
}

#[test]
fn kill9_mid_job_then_restart_completes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let gen = synth::write_generated(
        &backup,
        &synth::GenOptions {
            accounts: 1,
            items_per_account: 2500,
            seed: 7,
            big_folder: None,
        },
    )
    .unwrap();
    let index = dir.path().join("index");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = dir.path().join("restored");
    let control = mnt.join(".control");

    let mut d = Daemon::start(&backup, &mnt, &index);
    let line = format!(
        "account {} last to=maildir:{}\n",
        gen.names[0],
        out.display()
    );
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(control.join("restore"))
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    // Kill it once some, not all, items are done.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (done, total) = loop {
        let text = std::fs::read_to_string(control.join("jobs/1")).unwrap_or_default();
        let (done, total) = progress(&text);
        if done >= 100 {
            break (done, total);
        }
        assert!(Instant::now() < deadline, "job did not progress:\n{text}");
        std::thread::sleep(Duration::from_millis(5));
    };
    d.kill9();
    assert!(
        done < total,
        "the job ended before the kill ({done}/{total})"
    );
    assert!(!is_mounted(&mnt));
    let stored = std::fs::read_to_string(index.join("jobs/1.json")).unwrap();
    assert!(stored.contains("\"state\": \"running\""), "{stored}");
    let (partial, _) = maildir_messages(&out);
    assert!(partial > 0 && (partial as u64) < total, "{partial}/{total}");

    // Restart: the job resumes and completes.
    let _d = Daemon::start(&backup, &mnt, &index);
    let status = wait_job_at(&control, 1, Duration::from_secs(300));
    assert_eq!(state_of(&status), "done", "{status}");
    assert!(status.contains("runs: 2"), "{status}");
    assert_eq!(progress(&status), (total, total), "{status}");
    let restored = stat(&status, "Restored Items:");
    let skipped = stat(&status, "Skipped Items:");
    assert_eq!(stat(&status, "Unrestored Items:"), 0, "{status}");
    assert_eq!(restored + skipped, total, "{status}");
    // Every item is in the target once: the target was empty, so each
    // item is one file (items with the same bytes in one folder are
    // copies, each restored). An item sent just before the kill but not
    // yet in the journal is skipped on resume: the target already has it.
    let (n, _) = maildir_messages(&out);
    assert_eq!(n as u64, total, "{status}");
    assert!(restored == total || restored + 1 == total, "{status}");
}

#[test]
fn stop_the_running_job_and_all_queued() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let gen = synth::write_generated(
        &backup,
        &synth::GenOptions {
            accounts: 1,
            items_per_account: 3000,
            seed: 3,
            big_folder: None,
        },
    )
    .unwrap();
    let m = Mount::start(&backup, &dir.path().join("index"), &[]);
    let req = |n: u32| {
        format!(
            "account {} last to=maildir:{}",
            gen.names[0],
            dir.path().join(format!("out{n}")).display()
        )
    };
    // Three jobs in one write; they run one at a time, in order.
    write_control(
        &m,
        "restore",
        &format!("{}\n{}\n{}\n", req(1), req(2), req(3)),
    )
    .unwrap();
    assert_eq!(job_ids(&m), vec![1, 2, 3]);
    let queue = read_control(&m, "queue");
    let lines: Vec<&str> = queue.lines().collect();
    assert_eq!(lines.len(), 3, "{queue}");
    assert!(lines[2].starts_with("3 queued account "), "{queue}");
    assert!(lines[2].contains(" submitted="), "{queue}");
    // Stop job 1 while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress(&read_control(&m, "jobs/1")).0 < 10 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    write_control(&m, "stop", "1\n").unwrap();
    let s1 = wait_job(&m, 1);
    assert_eq!(state_of(&s1), "stopped", "{s1}");
    let (done, total) = progress(&s1);
    assert!(done < total, "{s1}");
    // Job 2 starts; stop everything.
    while progress(&read_control(&m, "jobs/2")).0 < 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    write_control(&m, "stop", "all\n").unwrap();
    for id in [2, 3] {
        let s = wait_job(&m, id);
        assert_eq!(state_of(&s), "stopped", "{s}");
    }
    assert_eq!(progress(&read_control(&m, "jobs/3")).0, 0);
    assert_eq!(read_control(&m, "queue"), "");
    // A stopped job cannot be stopped again.
    let e = write_control(&m, "stop", "1\n").expect_err("already stopped");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

/// Restore throughput into Dovecot over IMAP, 10,000 messages:
/// `cargo test --release --test restore -- --ignored --nocapture imap_restore_rate`.
#[test]
#[ignore]
fn imap_restore_rate() {
    use mailbackfs::control::request::parse_request;
    use mailbackfs::restore::engine::{self, ItemOutcome, RestoreSource, RunHooks};
    let dc = Dovecot::start();
    dc.add_user("rate", "pw", None);
    let spec = dc.spec("rate", "pw", TlsMode::Plain);
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let gen = synth::write_generated(
        &backup,
        &synth::GenOptions {
            accounts: 1,
            items_per_account: 12_500,
            seed: 5,
            big_folder: None,
        },
    )
    .unwrap();
    let opened = mailbackfs::mount::open_backup(
        &backup,
        Some(&dir.path().join("index")),
        mailbackfs::format::FormatChoice::Auto,
        mailbackfs::mount::Refresh::IfEmpty,
        false,
    )
    .unwrap();
    let src = RestoreSource {
        catalog: opened.catalog.clone(),
        reader: opened.reader.clone(),
    };
    let req = parse_request(&format!(
        "account {} last to=imap://rate@127.0.0.1:{} password_file={}",
        gen.names[0],
        dc.port,
        spec.password_file.display()
    ))
    .unwrap();
    let mut plan = engine::plan(&src, &req, 0).unwrap();
    plan.groups[0].items.truncate(10_000);
    let n = plan.total();
    struct Count(u64);
    impl RunHooks for Count {
        fn item_done(&mut self, _: &str, _: Option<&str>, _: &ItemOutcome) -> anyhow::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }
    let start = Instant::now();
    let run = engine::run(&src, &plan, &Default::default(), &mut Count(0)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    // The generated mailbox has a few messages twice in one folder: the
    // second copy is skipped.
    assert_eq!(n, 10_000);
    assert_eq!(run.report.restored + run.report.skipped, n);
    assert!(run.report.unrestored.is_empty(), "{}", run.report.render());
    assert!(run.report.skipped < n / 50, "{}", run.report.skipped);
    let bytes: u64 = plan.groups[0]
        .items
        .iter()
        .filter_map(|i| i.state.as_ref().and_then(|s| s.size))
        .sum();
    eprintln!(
        "restored {n} messages ({:.1} MB) over IMAP in {secs:.2} s: {:.0} messages/s",
        bytes as f64 / 1e6,
        n as f64 / secs
    );
    let start = Instant::now();
    let run = engine::run(&src, &plan, &Default::default(), &mut Count(0)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(run.report.skipped, n);
    assert_eq!(run.report.restored, 0);
    eprintln!(
        "second run skipped {n} in {secs:.2} s: {:.0} messages/s",
        n as f64 / secs
    );
}

/// Close `f` with close(2) itself, so its error is seen (`File`'s drop
/// ignores it).
fn close_checked(f: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is ours (into_raw_fd) and closed once.
    if unsafe { libc::close(f.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_restore(m: &Mount) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join(".control/restore"))
        .unwrap()
}

/// One write(2) exactly (no retry on a short write).
fn write_once(f: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let n = f.write(bytes)?;
    assert_eq!(n, bytes.len(), "short write");
    Ok(())
}

/// The `request:` line of a job's status.
fn request_of(m: &Mount, id: u64) -> String {
    read_control(m, &format!("jobs/{id}"))
        .lines()
        .find_map(|l| l.strip_prefix("request: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_request_split_over_two_writes_is_one_request() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let out = s.dir.path().join("x");
    let line = format!("item {JOHN} 339 to=maildir:{}/split/john", out.display());
    let (a, b) = line.split_at(line.len() - 9);
    let mut f = open_restore(&m);
    write_once(&mut f, a.as_bytes()).unwrap();
    // Nothing is taken before its line ends.
    assert!(job_ids(&m).is_empty(), "a partial line made a job");
    write_once(&mut f, format!("{b}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}; last-error: {}", read_control(&m, "last-error")));
    close_checked(f).unwrap();
    assert_eq!(job_ids(&m), vec![1]);
    assert_eq!(request_of(&m, 1), line);
    let status = wait_job(&m, 1);
    assert_eq!(stat(&status, "Restored Items:"), 1, "{status}");
    assert!(out.join("split/john/.Trash/cur").is_dir());
    assert!(!out.join("sp").exists());
}

#[test]
fn cat_of_a_600_line_file_queues_600_exact_requests() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let out = s.dir.path().join("cat");
    // ~260 bytes a line: 600 lines are 156 KB, more than cat's 128 KiB
    // buffer, so one line is cut between two write(2) calls.
    let pad = "p".repeat(200);
    let lines: Vec<String> = (0..600)
        .map(|i| format!("item {JOHN} 339 to=maildir:{}/{pad}/{i:04}", out.display()))
        .collect();
    let file = s.dir.path().join("requests.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 150_000 && len < 170_000, "{len}");
    let st = Command::new("sh")
        .arg("-c")
        .arg(r#"cat "$1" > "$2""#)
        .arg("sh")
        .arg(&file)
        .arg(m.join(".control/restore"))
        .status()
        .unwrap();
    assert!(st.success(), "{}", read_control(&m, "last-error"));
    write_control(&m, "stop", "all\n").ok();
    let ids = job_ids(&m);
    assert_eq!(ids.len(), 600);
    for (id, want) in ids.iter().zip(&lines) {
        assert_eq!(&request_of(&m, *id), want, "job {id}");
    }
}

#[test]
fn a_partial_line_at_close_fails_with_einval() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let out = s.dir.path().join("p");
    let good = format!("item {JOHN} 339 to=maildir:{}/a", out.display());
    let cut = format!("item {JOHN} 339 to=maildir:{}/", out.display());
    let mut f = open_restore(&m);
    write_once(&mut f, format!("{good}\n{cut}").as_bytes()).unwrap();
    let e = close_checked(f).expect_err("a cut line at close");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    // The complete line was taken; the cut one was not.
    assert_eq!(job_ids(&m), vec![1]);
    assert_eq!(request_of(&m, 1), good);
    let last = read_control(&m, "last-error");
    assert!(last.contains("not ended by a newline"), "{last}");
    // A write whose complete lines hold a bad one queues none of them.
    let mut f = open_restore(&m);
    let e = write_once(
        &mut f,
        format!("{good}\nitem {JOHN} 77777 to=maildir:/x\n{good}\n").as_bytes(),
    )
    .expect_err("a bad line");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    close_checked(f).unwrap();
    assert_eq!(job_ids(&m), vec![1]);
    // Plain files still close cleanly (they get no FLUSH at all).
    let eml = support::files_below(&m.join(JOHN).join("latest"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .unwrap();
    let f = std::fs::File::open(m.join(JOHN).join("latest").join(eml)).unwrap();
    close_checked(f).unwrap();
}

#[test]
fn password_files_that_are_no_small_regular_file_of_the_writer_are_refused() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let d = s.dir.path();
    let fifo = d.join("pw.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = d.join("pw.big");
    std::fs::write(&big, "x".repeat(64 * 1024)).unwrap();
    let foreign = d.join("pw.foreign");
    std::fs::write(&foreign, "secret\n").unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let good = d.join("pw");
    std::fs::write(&good, "secret\n").unwrap();
    let link = d.join("pw.link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let cases = [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (d.to_path_buf(), "not a regular file"),
        (big, "larger than"),
        (foreign, "owned by"),
        (link, "symbolic link"),
    ];
    for (pw, why) in &cases {
        let line = format!(
            "account {JOHN} last to=imap://u@127.0.0.1:1 password_file={}\n",
            pw.display()
        );
        let e = write_control(&m, "restore", &line).expect_err(&format!("{pw:?} accepted"));
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{pw:?}: {e}");
        let last = read_control(&m, "last-error");
        assert!(last.contains(why), "{pw:?}: {last:?} lacks {why:?}");
        assert!(job_ids(&m).is_empty());
    }
    submit(
        &m,
        &format!(
            "account {JOHN} last to=imap://u@127.0.0.1:1 password_file={}",
            good.display()
        ),
    );
}

/// Add message items to an account of a sample backup (before it is
/// mounted): `(id, folder id, bytes, Zimbra flag bits)`.
fn add_messages(s: &Sample, account: &str, items: &[(i64, i64, &[u8], u64)]) {
    let key = s.info.account(account).unwrap().key.clone();
    for (id, folder, bytes, flags) in items {
        let digest = mailbackfs::format::zextras::blob_digest(bytes);
        let dir = s.backup.join("items").join(&digest[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        std::fs::write(dir.join(&digest), gz.finish().unwrap()).unwrap();
        let meta = serde_json::json!([{
            "type": "message", "start_date": 1_373_900_000_000i64, "folder_id": folder,
            "digest": digest, "size": bytes.len(), "date": 1_373_900_000_000i64,
            "flags": flags, "tags": [], "subject": "dup", "sender": "x@example.com"
        }]);
        let d = s
            .backup
            .join("accounts")
            .join(&key)
            .join("items")
            .join(format!("{:02}", id % 100));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(id.to_string()), meta.to_string()).unwrap();
    }
}

#[test]
fn distinct_items_with_one_digest_or_one_message_id_are_all_restored() {
    let dc = Dovecot::start();
    let s = sample();
    let same: &[u8] = b"Message-ID: <twin@example.com>\r\nSubject: twin\r\n\r\nsame bytes\r\n";
    let mid1: &[u8] = b"Message-ID: <one-id@example.com>\r\nSubject: a\r\n\r\nfirst\r\n";
    let mid2: &[u8] = b"Message-ID: <one-id@example.com>\r\nSubject: b\r\n\r\nsecond\r\n";
    // 9001 and 9002: one blob, different flags (read / unread + flagged).
    add_messages(
        &s,
        JOHN,
        &[
            (9001, 2, same, 0),
            (9002, 2, same, (1 << 9) | (1 << 5)),
            (9003, 2, mid1, 0),
            (9004, 2, mid2, 0),
        ],
    );
    let m = Mount::start(&s.backup, &s.index, &[]);
    let want = shown_messages(&m.join(JOHN).join("latest"));
    let ids: BTreeSet<i64> = want.iter().map(|w| w.id).collect();
    assert!((9001..=9004).all(|i| ids.contains(&i)), "{ids:?}");
    let root = dc.dir().join("twins-maildir");
    // Both users before any login: Dovecot reads the users file once a
    // second at most.
    dc.add_user("twins", "pw", None);
    dc.add_user(
        "twins-md",
        "pw",
        Some(&format!("maildir:{}", root.display())),
    );
    let pw = dc.password_file("twins", "pw");
    let targets = [
        format!("to=maildir:{}", root.display()),
        format!(
            "to=imap://twins@127.0.0.1:{} password_file={}",
            dc.port,
            pw.display()
        ),
    ];
    for to in &targets {
        let line = format!("account {JOHN} last {to}");
        let status = wait_job(&m, submit(&m, &line));
        assert_eq!(
            stat(&status, "Restored Items:"),
            want.len() as u64,
            "{to}: {status}"
        );
        assert_eq!(stat(&status, "Skipped Items:"), 0, "{to}: {status}");
        // A second run adds nothing.
        let status = wait_job(&m, submit(&m, &line));
        assert_eq!(stat(&status, "Restored Items:"), 0, "{to}: {status}");
        assert_eq!(
            stat(&status, "Skipped Items:"),
            want.len() as u64,
            "{to}: {status}"
        );
    }
    let mut c = dc.client("twins", "pw");
    let got = mailboxes(&mut c);
    assert_restored(&got, &want, None);
    let copies = |got: &BTreeMap<String, Vec<FetchedMessage>>, b: &[u8]| {
        got["INBOX"].iter().filter(|m| m.body == b).count()
    };
    assert_eq!(copies(&got, same), 2);
    assert_eq!((copies(&got, mid1), copies(&got, mid2)), (1, 1));
    chown_for_mail(&root);
    dc.add_user(
        "twins-md",
        "pw",
        Some(&format!("maildir:{}", root.display())),
    );
    let got = mailboxes(&mut dc.client("twins-md", "pw"));
    assert_restored(&got, &want, None);
    assert_eq!(copies(&got, same), 2);
}

/// Add folder items to an account of a sample backup (before it is
/// mounted): `(id, parent id, name)`.
fn add_folders(s: &Sample, account: &str, folders: &[(i64, i64, &str)]) {
    let key = s.info.account(account).unwrap().key.clone();
    for (id, parent, name) in folders {
        let meta = serde_json::json!([{
            "type": "folder", "start_date": 1_373_800_000_000i64, "folder_id": parent,
            "name": name, "flags": 0
        }]);
        let d = s
            .backup
            .join("accounts")
            .join(&key)
            .join("items")
            .join(format!("{:02}", id % 100));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(id.to_string()), meta.to_string()).unwrap();
    }
}

/// Every message body of every mailbox, counted.
fn bodies(got: &BTreeMap<String, Vec<FetchedMessage>>) -> BTreeMap<Vec<u8>, usize> {
    let mut out = BTreeMap::new();
    for m in got.values().flatten() {
        *out.entry(m.body.clone()).or_default() += 1;
    }
    out
}

#[test]
fn a_folder_name_the_target_refuses_is_shortened_and_the_job_goes_on() {
    let dc = Dovecot::start();
    let s = sample();
    let long = format!("Archive {}", "x".repeat(292));
    assert_eq!(long.len(), 300);
    add_folders(&s, JOHN, &[(9100, 1, &long), (9102, 9100, "child")]);
    let deep: &[u8] =
        b"Message-ID: <deep@example.com>\r\nSubject: deep\r\n\r\nin the long folder\r\n";
    let child: &[u8] = b"Message-ID: <child@example.com>\r\nSubject: c\r\n\r\nbelow it\r\n";
    add_messages(&s, JOHN, &[(9101, 9100, deep, 0), (9103, 9102, child, 0)]);
    let m = Mount::start(&s.backup, &s.index, &[]);
    let want = shown_messages(&m.join(JOHN).join("latest"));
    assert!(want.iter().any(|w| w.id == 9101) && want.iter().any(|w| w.id == 9103));
    let md = dc.dir().join("long-md");
    let ext = dc.dir().join("long-ext");
    dc.add_user("long", "pw", None);
    dc.add_user("long-md", "pw", Some(&format!("maildir:{}", md.display())));
    dc.add_user(
        "long-ext",
        "pw",
        Some(&format!("maildir:{}/{JOHN}", ext.display())),
    );
    let pw = dc.password_file("long", "pw");
    let lines = [
        format!(
            "account {JOHN} last to=imap://long@127.0.0.1:{} password_file={}",
            dc.port,
            pw.display()
        ),
        format!("account {JOHN} last to=maildir:{}", md.display()),
        format!("external accounts={JOHN} to=maildir:{}", ext.display()),
    ];
    for line in &lines {
        let status = wait_job(&m, submit(&m, line));
        assert_eq!(state_of(&status), "done", "{line}: {status}");
        assert_eq!(
            stat(&status, "Restored Items:"),
            want.len() as u64,
            "{line}: {status}"
        );
        assert_eq!(stat(&status, "Unrestored Items:"), 0, "{status}");
        // The report says which name replaced which.
        let renamed = status
            .split("- renamed folders -\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{line}: no renamed folders in:\n{status}"));
        // (The view itself may show the name cut to 255 bytes.)
        let (old, new) = renamed.lines().nth(1).unwrap().split_once(" -> ").unwrap();
        assert!(old.starts_with(&long[..250]), "{line}: {status}");
        assert!(
            new.starts_with("Archive xxx") && new.len() <= 120,
            "{status}"
        );
    }
    chown_for_mail(&md);
    chown_for_mail(&ext);
    for user in ["long", "long-md", "long-ext"] {
        let got = mailboxes(&mut dc.client(user, "pw"));
        let have = bodies(&got);
        for w in &want {
            assert!(have.contains_key(&w.bytes), "{user}: item {} missing", w.id);
        }
        assert_eq!(have.values().sum::<usize>(), want.len(), "{user}: {got:?}");
        // The child stays below its shortened parent.
        let short = got
            .iter()
            .find(|(_, msgs)| msgs.iter().any(|m| m.body == deep))
            .map(|(name, _)| name.clone())
            .unwrap();
        assert!(
            short.len() < 200 && short.contains("Archive xxx"),
            "{short}"
        );
        let under = got
            .iter()
            .find(|(_, msgs)| msgs.iter().any(|m| m.body == child))
            .map(|(name, _)| name.clone())
            .unwrap();
        assert!(
            under.starts_with(&short) && under.ends_with("child"),
            "{under}"
        );
    }
}
