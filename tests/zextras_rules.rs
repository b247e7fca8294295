//! The Zextras rules of `docs/formats/zextras.md` and `docs/design.md`
//! that independent backups showed wrong, through a real kernel mount. The
//! backup here is written by hand from the format doc (JSON metadata, gzip
//! blobs named by their SHA-256), not by the project's generator.
//!
//! - an item state without `flags` is read (`\Seen`), like an explicit 0;
//! - a listed name always has the `-` (`no_subject`, `unnamed`);
//! - `deleted/` shows the last state before the deletion;
//! - a digest mismatch is broken in the views but readable in `history/`.

mod support;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use support::handmade::{message, Backup};
use support::{names, xattr, Mount};

const ACCOUNT: &str = "rules@example.com";
const T1: i64 = 1_373_639_744_000; // 2013-07-12T14:35:44Z
const T2: i64 = T1 + 3_600_000;
const T3: i64 = T2 + 3_600_000;

/// The backup of every case, and what the tests need to know of it.
struct Cases {
    _dir: tempfile::TempDir,
    backup: PathBuf,
    index: PathBuf,
    deleted_msg: Vec<u8>,
    stored_350: Vec<u8>,
}

fn cases() -> Cases {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let b = Backup::new(&backup, "4a217bb3-0000-4c9f-80f8-f345ae2897b5", ACCOUNT);
    b.folder(2, 1, "Inbox");
    b.folder(3, 1, "Trash");
    b.folder(7, 1, "Contacts");
    b.folder(16, 1, "Briefcase");

    // 1. Flags default.
    let m = message("no flags key");
    let d = b.blob(&m);
    b.item(
        300,
        json!([{"id": 300, "type": "message", "start_date": T1, "folder_id": 2,
        "digest": d, "size": m.len(), "date": T1, "subject": "no flags key"}]),
    );
    let m = message("unread");
    let d = b.blob(&m);
    b.item(
        301,
        json!([{"id": 301, "type": "message", "start_date": T1, "folder_id": 2,
        "digest": d, "size": m.len(), "date": T1, "flags": 512, "subject": "unread"}]),
    );

    // 2. Names without a slug.
    for (id, subject) in [(295, ".."), (296, ""), (297, "!!! ???")] {
        let m = message(&format!("slugless {id}"));
        let d = b.blob(&m);
        b.item(
            id,
            json!([{"id": id, "type": "message", "start_date": T1, "folder_id": 2,
            "digest": d, "size": m.len(), "date": T1, "flags": 0, "subject": subject}]),
        );
    }
    b.item(
        310,
        json!([{"id": 310, "type": "contact", "start_date": T1, "folder_id": 7,
        "flags": 0, "fields": {}}]),
    );
    let pdf = b"%PDF-1.4 not really\n".to_vec();
    let d = b.blob(&pdf);
    b.item(
        320,
        json!([{"id": 320, "type": "document", "start_date": T1, "folder_id": 16,
        "digest": d, "size": pdf.len(), "date": T1, "flags": 0, "name": "!!.pdf"}]),
    );

    // 3. deleted/ shows the last state before the deletion, whatever the
    //    deletion state carries.
    let deleted_msg = message("moved flagged deleted");
    let d = b.blob(&deleted_msg);
    b.item(
        330,
        json!([
            {"id": 330, "type": "message", "start_date": T1, "folder_id": 2, "digest": d,
             "size": deleted_msg.len(), "date": T1 - 5000, "flags": 512, "tags": ["first"],
             "subject": "moved flagged deleted"},
            {"id": 330, "type": "message", "start_date": T2, "folder_id": 3, "digest": d,
             "size": deleted_msg.len(), "date": T1 - 5000, "flags": 32, "tags": ["second"],
             "subject": "moved flagged deleted"},
            {"id": 330, "start_date": T3, "deleted": true, "folder_id": 3, "flags": 640,
             "tags": ["at-deletion"]}
        ]),
    );
    b.item(
        340,
        json!([
            {"id": 340, "type": "contact", "start_date": T1, "folder_id": 7, "flags": 0,
             "fields": {"firstName": "Anna", "email": "anna@example.com"}},
            {"id": 340, "type": "contact", "start_date": T2, "folder_id": 7, "flags": 0,
             "fields": {"firstName": "Anna", "lastName": "Berg", "email": "anna@example.com"}},
            {"id": 340, "start_date": T3, "deleted": true}
        ]),
    );

    // 4. A blob whose bytes do not hash to its name.
    let claimed = message("digest mismatch");
    let mut stored_350 = claimed.clone();
    stored_350.extend_from_slice(b"tampered\r\n");
    let d = b.blob_named_for(&claimed, &stored_350);
    b.item(
        350,
        json!([{"id": 350, "type": "message", "start_date": T1, "folder_id": 2,
        "digest": d, "size": stored_350.len(), "date": T1, "flags": 0,
        "subject": "digest mismatch"}]),
    );

    Cases {
        index: dir.path().join("index"),
        backup,
        deleted_msg,
        stored_350,
        _dir: dir,
    }
}

fn mount(c: &Cases) -> Mount {
    Mount::start(&c.backup, &c.index, &[])
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    fs::File::open(path)?.read_to_end(&mut out)?;
    Ok(out)
}

fn mtime_ms(path: &Path) -> i64 {
    let t = fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[test]
fn an_item_without_flags_is_read() {
    let c = cases();
    let m = mount(&c);
    let inbox = m.join(&format!("{ACCOUNT}/latest/Inbox"));
    let f = inbox.join("300-no_flags_key.eml");
    assert_eq!(
        xattr(&f, "user.mailbackfs.flags").as_deref(),
        Some("\\Seen")
    );
    let f = inbox.join("301-unread.eml");
    assert_eq!(xattr(&f, "user.mailbackfs.flags").as_deref(), Some(""));
}

#[test]
fn listed_names_always_have_the_dash() {
    let c = cases();
    let m = mount(&c);
    let latest = m.join(&format!("{ACCOUNT}/latest"));
    let inbox = names(&latest.join("Inbox"));
    for id in [295, 296, 297] {
        let listed = format!("{id}-no_subject.eml");
        assert!(inbox.contains(&listed), "{listed} not in {inbox:?}");
        assert!(
            !inbox.contains(&format!("{id}.eml")),
            "alias listed: {inbox:?}"
        );
        assert_eq!(
            read(&latest.join("Inbox").join(&listed)).unwrap(),
            read(&latest.join(format!("Inbox/{id}.eml"))).unwrap(),
            "the alias resolves to the same item"
        );
    }
    assert!(names(&latest.join("Contacts")).contains("310-unnamed.vcf"));
    assert!(names(&latest.join("Briefcase")).contains("320-unnamed.pdf"));
    assert!(read(&latest.join("Contacts/310.vcf")).is_ok());
}

#[test]
fn deleted_shows_the_last_state_before_the_deletion() {
    let c = cases();
    let m = mount(&c);
    let deleted = m.join(&format!("{ACCOUNT}/deleted"));
    let f = deleted.join("Trash/330-moved_flagged_deleted.eml");
    assert_eq!(read(&f).unwrap(), c.deleted_msg);
    assert_eq!(fs::metadata(&f).unwrap().len(), c.deleted_msg.len() as u64);
    assert_eq!(
        mtime_ms(&f),
        (T1 - 5000) / 1000 * 1000,
        "a message's mtime is its date"
    );
    let x = |name: &str| xattr(&f, &format!("user.mailbackfs.{name}"));
    assert_eq!(x("flags").as_deref(), Some("\\Seen \\Flagged"));
    assert_eq!(x("tags").as_deref(), Some("second"));
    assert_eq!(x("state_start"), Some(instant(T2)));
    assert_eq!(x("deleted_at"), Some(instant(T3)));

    let v = deleted.join("Contacts/340-Anna_Berg.vcf");
    let card = String::from_utf8(read(&v).unwrap()).unwrap();
    assert!(card.contains("Berg"), "{card}");
    assert_eq!(mtime_ms(&v), T2, "a contact's mtime is its state's start");
    assert_eq!(xattr(&v, "user.mailbackfs.state_start"), Some(instant(T2)));
    assert_eq!(xattr(&v, "user.mailbackfs.deleted_at"), Some(instant(T3)));
}

#[test]
fn digest_mismatch_is_broken_in_views_and_readable_in_history() {
    let c = cases();
    let m = mount(&c);
    let acct = m.join(ACCOUNT);
    // history/ first, on a fresh mount: the first read finds the mismatch.
    let hist = acct.join("history/350");
    let entries: Vec<String> = names(&hist).into_iter().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let h = hist.join(&entries[0]);
    assert_eq!(read(&h).unwrap(), c.stored_350);
    let why = xattr(&h, "user.mailbackfs.error").expect(".error in history/");
    assert!(why.starts_with("digest mismatch"), "{why}");
    assert_eq!(fs::metadata(&h).unwrap().len(), c.stored_350.len() as u64);
    // Again, now that the mismatch is known.
    assert_eq!(read(&h).unwrap(), c.stored_350);

    let f = acct.join("latest/Inbox/350-digest_mismatch.eml");
    let err = read(&f).expect_err("a digest mismatch is broken in the views");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let why = xattr(&f, "user.mailbackfs.error").unwrap();
    assert!(why.starts_with("digest mismatch"), "{why}");
    let salvaged = acct.join("latest/Inbox/350-digest_mismatch.eml.salvaged");
    assert_eq!(read(&salvaged).unwrap(), c.stored_350);
    assert!(names(&acct.join("latest/Inbox")).contains("350-digest_mismatch.eml.salvaged"));
}

#[test]
fn digest_mismatch_in_history_on_a_mount_that_knows_it_from_the_view() {
    let c = cases();
    let m = mount(&c);
    let acct = m.join(ACCOUNT);
    let f = acct.join("latest/Inbox/350-digest_mismatch.eml");
    assert!(read(&f).is_err());
    let hist = acct.join("history/350");
    let entry = names(&hist).into_iter().next().unwrap();
    let h = hist.join(entry);
    assert_eq!(fs::metadata(&h).unwrap().len(), c.stored_350.len() as u64);
    assert_eq!(read(&h).unwrap(), c.stored_350);
}
