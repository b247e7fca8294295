//! Broken items through the kernel, `check`, `get-item`, and the formats
//! non-message items are shown in.
//!
//! The corpus is the README sample plus, in john's Inbox, one item of every
//! broken kind, a big healthy message and an orphan blob:
//! - 9001: big healthy message (read concurrently while the others fail);
//! - 9002: unreadable blob: a directory stands where the blob file should be
//!   (tests run as root, for whom `chmod 000` denies nothing; reading a
//!   directory fails with EISDIR, an I/O error like a permission denial);
//! - 9003: missing blob;
//! - 9004: corrupt gzip (bytes flipped in the deflate stream), with an older
//!   healthy state;
//! - 9005: truncated gzip (cut at 60%);
//! - 9006: digest mismatch (valid gzip of other bytes under the digest name);
//! - 9007: malformed metadata;
//! - an orphan blob nothing references.

mod support;

use support::{names, xattr};

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use mailbackfs::format::zextras::blob_digest;
use mailbackfs::synth::{self, SAMPLE_ANNA, SAMPLE_JOHN};
use support::{cli, Mount};

const T0: i64 = 1_373_900_000_000; // 2013-07-15T14:53:20Z
const T1: i64 = T0 + 3_600_000;

/// A message of about `len` bytes of varied text (compresses, not too well).
fn message(id: i64, len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bulk <bulk@example.com>\r\nTo: john@example.com\r\nSubject: Item {id}\r\n\
         Message-ID: <item.{id}@example.com>\r\nDate: Mon, 15 Jul 2013 14:53:20 +0000\r\n\r\n"
    )
    .into_bytes();
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ id as u64;
    let mut line = 0;
    while m.len() < len {
        line += 1;
        m.extend_from_slice(format!("{id}:{line}").as_bytes());
        for _ in 0..10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(b' ');
            m.extend_from_slice(words[(x % 8) as usize].as_bytes());
            m.extend_from_slice(format!("{}", x % 1000).as_bytes());
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// What a streaming gunzip hands out before it fails.
fn streaming_gunzip(raw: &[u8]) -> Vec<u8> {
    let mut d = flate2::read::GzDecoder::new(raw);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

struct Corpus {
    _dir: tempfile::TempDir,
    backup: PathBuf,
    index: PathBuf,
    info: synth::SampleInfo,
    big: Vec<u8>,
    old_9004: Vec<u8>,
    corrupt_gz: Vec<u8>,
    truncated: Vec<u8>,
    truncated_gz: Vec<u8>,
    other_bytes: Vec<u8>,
    orphan: String,
}

fn blob_path(backup: &Path, digest: &str) -> PathBuf {
    backup.join("items").join(&digest[..2]).join(digest)
}

fn write_blob(backup: &Path, digest: &str, raw: &[u8]) {
    let p = blob_path(backup, digest);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, raw).unwrap();
}

fn write_meta(backup: &Path, id: i64, json: &str) {
    let dir = backup
        .join("accounts")
        .join(SAMPLE_JOHN)
        .join("items")
        .join(format!("{:02}", id % 100));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(id.to_string()), json).unwrap();
}

fn state(id: i64, at: i64, digest: &str, size: usize) -> String {
    format!(
        r#"{{"id": {id}, "type": "message", "start_date": {at}, "folder_id": 2, "digest": "{digest}",
            "size": {size}, "date": {at}, "flags": 0, "tags": [], "subject": "Item {id}"}}"#
    )
}

fn plant(backup: &Path, id: i64, content: &[u8], raw: Option<&[u8]>) -> String {
    let d = blob_digest(content);
    if let Some(raw) = raw {
        write_blob(backup, &d, raw);
    }
    write_meta(
        backup,
        id,
        &format!("[{}]", state(id, T0, &d, content.len())),
    );
    d
}

fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let info = synth::write_sample(&backup).unwrap();

    let big = message(9001, 8 << 20);
    plant(&backup, 9001, &big, Some(&gzip(&big)));

    let c2 = message(9002, 5000);
    let d2 = plant(&backup, 9002, &c2, None);
    std::fs::create_dir_all(blob_path(&backup, &d2)).unwrap();

    plant(&backup, 9003, &message(9003, 5000), None);

    let old_9004 = message(90040, 3000);
    let d_old = blob_digest(&old_9004);
    write_blob(&backup, &d_old, &gzip(&old_9004));
    let c4 = message(9004, 2 << 20);
    let d4 = blob_digest(&c4);
    let mut corrupt_gz = gzip(&c4);
    let mid = corrupt_gz.len() / 2;
    for b in &mut corrupt_gz[mid..mid + 64] {
        *b ^= 0xff;
    }
    write_blob(&backup, &d4, &corrupt_gz);
    write_meta(
        &backup,
        9004,
        &format!(
            "[{}, {}]",
            state(9004, T0, &d_old, old_9004.len()),
            state(9004, T1, &d4, c4.len())
        ),
    );

    let truncated = message(9005, 1 << 20);
    let full = gzip(&truncated);
    let truncated_gz = full[..full.len() * 6 / 10].to_vec();
    plant(&backup, 9005, &truncated, Some(&truncated_gz));

    let c6 = message(9006, 40_000);
    let mut other_bytes = c6.clone();
    other_bytes[100] ^= 1; // same length: only the digest can tell
    plant(&backup, 9006, &c6, Some(&gzip(&other_bytes)));

    write_meta(
        &backup,
        9007,
        "[{\"id\": 9007, \"type\": \"message\", \"start_date\": ",
    );

    let orphan_content = message(9999, 2000);
    let orphan = blob_digest(&orphan_content);
    write_blob(&backup, &orphan, &gzip(&orphan_content));

    Corpus {
        index: dir.path().join("index"),
        backup,
        info,
        big,
        old_9004,
        corrupt_gz,
        truncated,
        truncated_gz,
        other_bytes,
        orphan,
        _dir: dir,
    }
}

fn is_eio(r: std::io::Result<Vec<u8>>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EIO))
}

fn in_inbox(m: &Mount, id: i64) -> PathBuf {
    m.join(&format!("john@example.com/latest/Inbox/{id}.eml"))
}

/// The listed name of item `id` in `dir`.
fn listed(dir: &Path, id: i64) -> String {
    names(dir)
        .into_iter()
        .find(|n| n.starts_with(&format!("{id}-")) && n.ends_with(".eml"))
        .unwrap_or_else(|| panic!("item {id} not listed in {}", dir.display()))
}

#[test]
fn broken_items_through_the_mount() {
    let c = corpus();
    let m = Mount::start(&c.backup, &c.index, &[]);
    let inbox = m.join("john@example.com/latest/Inbox");

    // Every broken blob item is listed.
    for id in 9001..=9006 {
        listed(&inbox, id);
    }
    // Known before any read: missing, unreadable, and what the size check
    // (which decompresses a truncated blob) finds.
    for (id, kind) in [
        (9002, "unreadable blob"),
        (9003, "missing blob"),
        (9005, "truncated gzip"),
    ] {
        let p = in_inbox(&m, id);
        std::fs::metadata(&p).unwrap();
        let err = xattr(&p, "user.mailbackfs.error")
            .unwrap_or_else(|| panic!("no error xattr on {id} before a read"));
        assert!(err.starts_with(kind), "{id}: {err}");
        assert!(err.contains("/items/"), "{id}: the path is named: {err}");
    }
    assert!(xattr(&in_inbox(&m, 9001), "user.mailbackfs.error").is_none());

    // A big healthy item read in another thread while the broken ones fail.
    let big_path = in_inbox(&m, 9001);
    let big = c.big.clone();
    let reader = std::thread::spawn(move || {
        for _ in 0..3 {
            let got = std::fs::read(&big_path).expect("healthy read");
            assert!(got == big, "healthy item read back different");
        }
    });
    for _ in 0..20 {
        for id in 9002..=9006 {
            assert!(
                is_eio(std::fs::read(in_inbox(&m, id))),
                "reading {id} must fail with EIO"
            );
        }
    }
    reader.join().expect("healthy reader");

    // After the reads, every broken item names its kind.
    for (id, kind) in [
        (9002, "unreadable blob"),
        (9003, "missing blob"),
        (9004, "corrupt gzip"),
        (9005, "truncated gzip"),
        (9006, "digest mismatch"),
    ] {
        let err = xattr(&in_inbox(&m, id), "user.mailbackfs.error").unwrap();
        assert!(err.starts_with(kind), "{id}: {err}");
    }

    // Malformed metadata: listed in history/ only, EIO, its error.
    let err_file = m.join("john@example.com/history/9007/error");
    assert!(is_eio(std::fs::read(&err_file)));
    let err = xattr(&err_file, "user.mailbackfs.error").unwrap();
    assert!(err.starts_with("malformed metadata"), "{err}");

    // The older state of the corrupt item is still there.
    let hist = m.join("john@example.com/history/9004");
    let states: Vec<String> = names(&hist)
        .into_iter()
        .filter(|n| !n.ends_with(".salvaged"))
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(std::fs::read(hist.join(&states[0])).unwrap(), c.old_9004);
    assert!(is_eio(std::fs::read(hist.join(&states[1]))));

    // `.salvaged` beside salvageable broken files (listed), not beside the
    // others, and resolvable for any blob item.
    let now = names(&inbox);
    for id in [9004, 9005, 9006] {
        let name = format!("{}.salvaged", listed(&inbox, id));
        assert!(now.contains(&name), "{name} listed");
    }
    for id in [9001, 9002, 9003] {
        let name = format!("{}.salvaged", listed(&inbox, id));
        assert!(!now.contains(&name), "{name} not listed");
    }
    let healthy = inbox.join(format!("{}.salvaged", listed(&inbox, 9001)));
    assert_eq!(
        std::fs::metadata(&healthy).unwrap().len(),
        c.big.len() as u64
    );

    let salvaged = |id: i64| {
        let p = inbox.join(format!("{}.salvaged", listed(&inbox, id)));
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), bytes.len() as u64);
        bytes
    };
    // Corrupt: at least what a streaming gunzip yields before the error.
    let s4 = salvaged(9004);
    let oracle = streaming_gunzip(&c.corrupt_gz);
    assert!(oracle.len() > 256 * 1024, "the damage is mid-file");
    assert!(s4.len() >= oracle.len());
    assert!(
        s4.starts_with(&oracle),
        "salvage of 9004 is the intact prefix"
    );
    // Truncated: every byte that decompresses, a prefix of the message.
    let s5 = salvaged(9005);
    let oracle = streaming_gunzip(&c.truncated_gz);
    assert!(s5.len() >= oracle.len() && s5.len() < c.truncated.len());
    assert!(s5.starts_with(&oracle));
    assert_eq!(s5[..], c.truncated[..s5.len()]);
    // Digest mismatch: the stored bytes.
    assert_eq!(salvaged(9006), c.other_bytes);
}

#[derive(serde::Deserialize)]
struct CheckProblem {
    kind: String,
    item: Option<String>,
}
#[derive(serde::Deserialize)]
struct CheckAccount {
    key: String,
    problems: Vec<CheckProblem>,
}
#[derive(serde::Deserialize)]
struct CheckOrphan {
    digest: String,
}
#[derive(serde::Deserialize)]
struct CheckReport {
    accounts: Vec<CheckAccount>,
    orphans: Vec<CheckOrphan>,
    orphans_checked: bool,
}

fn check_json(args: &[&str]) -> (i32, CheckReport) {
    let (code, out, err) = cli(args);
    let report: CheckReport =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report)
}

#[test]
fn check_reports_exactly_the_planted_problems() {
    let c = corpus();
    let backup = c.backup.to_str().unwrap();
    let (code, report) = check_json(&["check", backup, "--json"]);
    assert_eq!(code, 1);
    let found: BTreeSet<(String, String, String)> = report
        .accounts
        .iter()
        .flat_map(|a| {
            a.problems.iter().map(|p| {
                (
                    a.key.clone(),
                    p.item.clone().unwrap_or_default(),
                    p.kind.clone(),
                )
            })
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        (9002, "unreadable blob"),
        (9003, "missing blob"),
        (9004, "corrupt gzip"),
        (9005, "truncated gzip"),
        (9006, "digest mismatch"),
        (9007, "malformed metadata"),
    ]
    .into_iter()
    .map(|(id, k)| (SAMPLE_JOHN.to_string(), id.to_string(), k.to_string()))
    .collect();
    assert_eq!(found, expected);
    assert!(report.orphans_checked);
    let orphans: Vec<&str> = report.orphans.iter().map(|o| o.digest.as_str()).collect();
    assert_eq!(orphans, [c.orphan.as_str()]);

    // The text report says the same, and the exit status too.
    let (code, text, _) = cli(&["check", backup]);
    assert_eq!(code, 1);
    assert!(text.contains("item 9004: corrupt gzip"), "{text}");
    assert!(text.contains(&c.orphan), "{text}");

    // One clean account: clean, and no orphan search.
    let (code, report) = check_json(&["check", backup, "--json", "--accounts", "anna@example.com"]);
    assert_eq!(code, 0);
    assert_eq!(report.accounts.len(), 1);
    assert_eq!(report.accounts[0].key, SAMPLE_ANNA);
    assert!(!report.orphans_checked);

    // Could not run.
    let (code, _, _) = cli(&["check", "/nonexistent/backup"]);
    assert_eq!(code, 2);
    let (code, _, _) = cli(&["check", backup, "--accounts", "nobody@example.com"]);
    assert_eq!(code, 2);
}

#[test]
fn check_of_the_clean_sample_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_sample(dir.path()).unwrap();
    let (code, report) = check_json(&["check", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert!(report.accounts.iter().all(|a| a.problems.is_empty()));
    assert!(report.orphans_checked && report.orphans.is_empty());
}

#[derive(serde::Deserialize, Debug)]
struct GetState {
    start: String,
    deleted: bool,
    folder_id: Option<i64>,
    folder_path: Option<String>,
}
#[derive(serde::Deserialize)]
struct GetItem {
    states: Vec<GetState>,
}

fn get_item(c: &Corpus, account: &str, id: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "get-item",
        c.backup.to_str().unwrap(),
        "--index",
        c.index.to_str().unwrap(),
        account,
        id,
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args);
    assert!(code == 0 || !err.is_empty(), "{err}");
    (code, out)
}

/// Every file below `dir` with its path relative to it.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let r = format!("{rel}/{name}");
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), &r, out);
        } else {
            out.push((r, e.path()));
        }
    }
}

#[test]
fn history_and_deleted_agree_with_get_item() {
    let c = corpus();
    let m = Mount::start(&c.backup, &c.index, &[]);
    let mut deleted_files = Vec::new();
    walk(&m.join("john@example.com/deleted"), "", &mut deleted_files);
    let mut checked_deleted = 0;
    let items: Vec<i64> = c
        .info
        .items
        .iter()
        .filter(|i| i.account == SAMPLE_JOHN && i.kind.is_file())
        .map(|i| i.id)
        .chain([9004])
        .collect();
    for id in items {
        let (code, out) = get_item(&c, "john@example.com", &id.to_string(), &["--json"]);
        assert_eq!(code, 0, "get-item {id}");
        let got: GetItem = serde_json::from_str(&out).unwrap();
        // history/<id>/: one file per state, in order, named by the start.
        let hist = m.join(&format!("john@example.com/history/{id}"));
        let files: Vec<String> = names(&hist)
            .into_iter()
            .filter(|n| !n.ends_with(".salvaged"))
            .collect();
        assert_eq!(files.len(), got.states.len(), "states of {id}");
        let mut counters: HashMap<String, usize> = HashMap::new();
        for s in &got.states {
            let compact = s.start.replace(['-', ':'], "");
            let n = counters.entry(compact.clone()).or_default();
            let prefix = format!("{compact}-{n}");
            *n += 1;
            let file = files
                .iter()
                .find(|f| f.starts_with(&format!("{prefix}.")) || **f == prefix)
                .unwrap_or_else(|| panic!("{id}: no history file {prefix} in {files:?}"));
            let p = hist.join(file);
            assert_eq!(
                xattr(&p, "user.mailbackfs.state_start").as_deref(),
                Some(s.start.as_str())
            );
            assert_eq!(
                xattr(&p, "user.mailbackfs.deleted_at").is_some(),
                s.deleted,
                "{id} {prefix}"
            );
            assert_eq!(
                xattr(&p, "user.mailbackfs.folder_id"),
                s.folder_id.map(|f| f.to_string())
            );
        }
        // deleted/: under the folder path the last state names.
        let last = got.states.last().unwrap();
        let in_deleted: Vec<&(String, PathBuf)> = deleted_files
            .iter()
            .filter(|(r, _)| {
                r.rsplit('/').next().is_some_and(|n| {
                    n.starts_with(&format!("{id}-")) || n.starts_with(&format!("{id}."))
                })
            })
            .collect();
        if last.deleted {
            assert_eq!(in_deleted.len(), 1, "{id} in deleted/");
            let (rel, p) = in_deleted[0];
            let dir = &rel[..rel.rfind('/').unwrap()];
            let want = last.folder_path.clone().unwrap_or_default();
            assert_eq!(if dir.is_empty() { "/" } else { dir }, want, "{id}");
            assert_eq!(
                xattr(p, "user.mailbackfs.deleted_at").as_deref(),
                Some(last.start.as_str())
            );
            checked_deleted += 1;
        } else {
            assert!(in_deleted.is_empty(), "{id} is not deleted");
        }
    }
    assert!(checked_deleted >= 2, "the sample has deleted items");

    // --date last is the newest state; --dump-blob the raw message.
    let moved = &c.info.moved;
    let (_, out) = get_item(
        &c,
        SAMPLE_JOHN,
        &moved.id.to_string(),
        &["--json", "--date", "last"],
    );
    let got: GetItem = serde_json::from_str(&out).unwrap();
    assert_eq!(got.states.len(), 1);
    assert!(got.states[0].deleted);
    let instant = mailbackfs::timeline::format_instant(moved.moved_to_trash + 1000);
    let (_, out) = get_item(
        &c,
        "john@example.com",
        &moved.id.to_string(),
        &["--json", "--date", &instant],
    );
    let got: GetItem = serde_json::from_str(&out).unwrap();
    assert_eq!(got.states[0].folder_id, Some(moved.to_folder));
    let (code, out) = get_item(&c, "john@example.com", "9001", &["--dump-blob"]);
    assert_eq!(code, 0);
    assert!(out.as_bytes() == c.big.as_slice());
    // A broken blob: the text says why.
    let (_, out) = get_item(&c, "john@example.com", "9004", &[]);
    assert!(out.contains("readable:   no: corrupt gzip"), "{out}");
    assert!(out.contains("state 2 of 2"), "{out}");
    // Unparseable metadata: said so, no states.
    let (code, out) = get_item(&c, "john@example.com", "9007", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("metadata: malformed metadata"), "{out}");
    // Unknown item or account: could not run.
    assert_eq!(get_item(&c, "john@example.com", "123456", &[]).0, 2);
    assert_eq!(get_item(&c, "nobody@example.com", "339", &[]).0, 2);
}

#[test]
fn contacts_calendars_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let info = synth::write_sample(&backup).unwrap();
    let m = Mount::start(&backup, &dir.path().join("index"), &[]);
    let latest = m.join("john@example.com/latest");

    let vcf = std::fs::read(latest.join(format!("Contacts/{}.vcf", info.contact.1))).unwrap();
    let cards: Vec<_> = ical::VcardParser::new(&vcf[..])
        .collect::<Result<Vec<_>, _>>()
        .expect("the .vcf parses as vCard");
    assert_eq!(cards.len(), 1);
    let prop = |name: &str| -> Vec<String> {
        cards[0]
            .properties
            .iter()
            .filter(|p| p.name == name)
            .filter_map(|p| p.value.clone())
            .collect()
    };
    assert_eq!(prop("VERSION"), ["4.0"]);
    assert_eq!(prop("FN"), ["Anna Lind"]);
    assert_eq!(prop("N"), ["Lind;Anna;;;"]);
    assert_eq!(prop("EMAIL"), ["anna@example.com"]);
    assert_eq!(prop("ORG"), ["Example Ltd"]);
    assert_eq!(prop("TEL"), ["+46 70 123 45 67"]);
    assert_eq!(prop("UID").len(), 1);
    assert!(String::from_utf8(vcf).unwrap().ends_with("END:VCARD\r\n"));

    let ics_path = latest.join(format!("Calendar/{}.ics", info.appointment.1));
    let ics = std::fs::read(&ics_path).unwrap();
    assert_eq!(ics, info.appointment_ics, "the calendar part, byte-exact");
    assert_eq!(
        std::fs::metadata(&ics_path).unwrap().len(),
        ics.len() as u64
    );
    let cals: Vec<_> = ical::IcalParser::new(&ics[..])
        .collect::<Result<Vec<_>, _>>()
        .expect("the .ics parses as iCalendar");
    assert_eq!(cals.len(), 1);
    assert_eq!(cals[0].events.len(), 1);
    let summary = cals[0].events[0]
        .properties
        .iter()
        .find(|p| p.name == "SUMMARY")
        .and_then(|p| p.value.clone());
    assert_eq!(summary.as_deref(), Some("Weekly meeting"));

    let doc = info.item(&info.document.0, info.document.1).unwrap();
    let briefcase = names(&latest.join("Briefcase"));
    let name = format!("{}-report.pdf", info.document.1);
    assert!(briefcase.contains(&name), "{briefcase:?}");
    assert_eq!(
        std::fs::read(latest.join("Briefcase").join(&name)).unwrap(),
        doc.content.clone().unwrap()
    );
}
