//! Unit tests of the Zextras reader: every tolerance rule of the format doc
//! and every kind of blob damage.

use super::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

const ACC: &str = "4a217bb3-6861-4c9f-80f8-f345ae2897b5";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("accounts").join(ACC).join("items")).unwrap();
        fs::create_dir_all(dir.path().join("items")).unwrap();
        Fx { dir }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn acc(&self) -> PathBuf {
        self.root().join("accounts").join(ACC)
    }
    fn item(&self, id: &str, body: &[u8]) {
        let nn = if id.len() >= 2 {
            &id[id.len() - 2..]
        } else {
            id
        };
        let d = self.acc().join("items").join(format!("{nn:0>2}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(id), body).unwrap();
    }
    fn info(&self, body: &str) {
        fs::write(self.acc().join("account_info"), body).unwrap();
    }
    /// Store `stored` as the blob of `content` under `items/<dir>/<digest>`.
    fn blob_raw(&self, digest: &str, dir: &str, stored: &[u8]) {
        let d = self.root().join("items").join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(digest), stored).unwrap();
    }
    fn blob(&self, content: &[u8]) -> BlobRef {
        let d = blob_digest(content);
        self.blob_raw(&d, &d[..2], &gz(content));
        BlobRef {
            locator: d.clone(),
            digest: Some(d),
        }
    }
    fn reader(&self) -> ZextrasReader {
        ZextrasReader::open(self.root()).unwrap()
    }
    fn read(&self) -> (Account, std::collections::BTreeMap<ItemId, Item>) {
        let mut items = std::collections::BTreeMap::new();
        let acc = self.reader().read_account(ACC, &mut |i| {
            items.insert(i.id, i);
        });
        (acc.unwrap(), items)
    }
}

fn read_all(r: &mut dyn Read) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[test]
fn layout_detection() {
    let fx = Fx::new();
    assert!(looks_like(fx.root()));
    let d = tempfile::tempdir().unwrap();
    assert!(!looks_like(d.path()));
    fs::create_dir_all(d.path().join("items/c0")).unwrap();
    assert!(looks_like(d.path()));
}

#[test]
fn doc_example_item_339() {
    let fx = Fx::new();
    fx.info(
        r#"{"id":"x","name":"john@example.com","status":"active","aliases":["j@example.com"]}"#,
    );
    fx.item(
        "339",
        br#"[
  {"id": 339, "type": "message", "start_date": 1373639744000,
   "folder_id": 2, "digest": "c0,gUlvzQfE21z6YRXJnNkKL85PrRHw0KMQUqo,pMmQ=",
   "size": 1187, "date": 1373639743000, "flags": 512, "tags": [],
   "subject": "Service mailboxd started on test.example.com",
   "sender": "zimbra@test.example.com"},
  {"id": 339, "type": "message", "start_date": 1373641321000,
   "folder_id": 3, "digest": "c0,gUlvzQfE21z6YRXJnNkKL85PrRHw0KMQUqo,pMmQ=",
   "size": 1187, "date": 1373639743000, "flags": 0, "tags": [],
   "subject": "Service mailboxd started on test.example.com"},
  {"id": 339, "type": "message", "start_date": 1373641508000, "deleted": true,
   "folder_id": 3}
]"#,
    );
    let (acc, items) = fx.read();
    assert_eq!(acc.name, "john@example.com");
    assert_eq!(acc.status, "active");
    assert_eq!(acc.aliases, vec!["j@example.com"]);
    assert!(acc.problems.is_empty(), "{:?}", acc.problems);
    let it = &items[&339];
    assert_eq!(it.label, "339");
    assert_eq!(it.history_key, "339");
    assert_eq!(it.states.len(), 3);
    let s = &it.states;
    assert_eq!(s[0].kind, Some(ItemKind::Message));
    assert_eq!(s[0].folder_id, Some(2));
    assert!(s[0].flags.is_empty());
    assert_eq!(s[1].flags, vec!["\\Seen"]);
    assert_eq!(s[1].folder_id, Some(3));
    assert!(s[2].deleted);
    assert_eq!(s[2].start, 1373641508000);
    assert_eq!(s[2].folder_id, Some(3));
    assert_eq!(
        s[0].blob.as_ref().unwrap().locator,
        "c0,gUlvzQfE21z6YRXJnNkKL85PrRHw0KMQUqo,pMmQ="
    );
    assert_eq!(s[0].size, Some(1187));
    assert_eq!(s[0].date, Some(1373639743000));
}

#[test]
fn key_spellings_and_defaults() {
    let fx = Fx::new();
    fx.info(r#"{"NAME":"a@b.c","Deleted-Date":"2013-07-12T00:00:00Z"}"#);
    fx.item(
        "5",
        br#"[{"Type":"MESSAGE","StartDate":1000,"folder-id":2,"Subject":"s","unknownKey":{"x":1}},
            {"TYPE":"message","start-date":2000,"FOLDERID":"3","Flags":"0"}]"#,
    );
    let (acc, items) = fx.read();
    assert_eq!(acc.name, "a@b.c");
    assert_eq!(acc.status, "deleted");
    assert_eq!(acc.deleted_at, Some(1373587200000));
    let s = &items[&5].states;
    assert_eq!(s[0].folder_id, Some(2));
    assert_eq!(s[0].subject.as_deref(), Some("s"));
    assert_eq!(s[0].flags, vec!["\\Seen"], "no flags = 0 = read");
    assert!(s[0].tags.is_empty());
    assert!(!s[0].deleted);
    assert_eq!(s[0].end, None);
    assert_eq!(s[1].folder_id, Some(3));
}

#[test]
fn file_name_wins_over_id() {
    let fx = Fx::new();
    fx.item(
        "42",
        br#"[{"id":43,"type":"message","start_date":1,"folder_id":2}]"#,
    );
    let (_, items) = fx.read();
    assert!(items.contains_key(&42));
    assert!(!items.contains_key(&43));
}

#[test]
fn timestamp_forms() {
    assert_eq!(
        parse_timestamp(&serde_json::json!(1373639744000i64)),
        Some(1373639744000)
    );
    assert_eq!(
        parse_timestamp(&serde_json::json!("1373639744000")),
        Some(1373639744000)
    );
    assert_eq!(
        parse_timestamp(&serde_json::json!("2013-07-12T14:35:44Z")),
        Some(1373639744000)
    );
    assert_eq!(
        parse_timestamp(&serde_json::json!("2013-07-12T16:35:44.250+02:00")),
        Some(1373639744250)
    );
    assert_eq!(
        parse_timestamp(&serde_json::json!("12/07/2013 14:35:44")),
        Some(1373639744000)
    );
    assert_eq!(parse_timestamp(&serde_json::json!("garbage")), None);
    assert_eq!(parse_timestamp(&serde_json::json!(null)), None);
}

#[test]
fn types_by_name_and_code() {
    use serde_json::json;
    for (v, k) in [
        (json!("message"), ItemKind::Message),
        (json!("Contact"), ItemKind::Contact),
        (json!("APPOINTMENT"), ItemKind::Appointment),
        (json!("task"), ItemKind::Task),
        (json!("document"), ItemKind::Document),
        (json!("folder"), ItemKind::Folder),
        (json!("tag"), ItemKind::Hidden),
        (json!("searchfolder"), ItemKind::Hidden),
        (json!("chat"), ItemKind::Hidden),
        (json!(1), ItemKind::Folder),
        (json!(2), ItemKind::Hidden),
        (json!(3), ItemKind::Hidden),
        (json!(4), ItemKind::Hidden),
        (json!(5), ItemKind::Message),
        (json!("5"), ItemKind::Message),
        (json!(6), ItemKind::Contact),
        (json!(8), ItemKind::Document),
        (json!(11), ItemKind::Appointment),
        (json!(13), ItemKind::Hidden),
        (json!(15), ItemKind::Task),
        (json!(16), ItemKind::Hidden),
    ] {
        assert_eq!(parse_kind(&v), Some(k), "{v}");
    }
}

#[test]
fn flags_forms_and_order() {
    use serde_json::json;
    let w = |v: Value| flag_words(parse_flags(&v)).join(" ");
    assert_eq!(w(json!(0)), "\\Seen");
    assert_eq!(w(json!(512)), "");
    assert_eq!(w(json!("512")), "");
    assert_eq!(w(json!("")), "\\Seen");
    assert_eq!(w(json!("u")), "");
    assert_eq!(w(json!("uf")), "\\Flagged");
    // every word, in the fixed order, from chars and from the bitmask
    assert_eq!(
        w(json!("nwdxfrsa!")),
        "\\Seen \\Answered \\Flagged \\Deleted \\Draft $Forwarded $MDNSent"
    );
    let all =
        (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 0) | (1 << 10);
    assert_eq!(
        w(json!(all)),
        "\\Seen \\Answered \\Flagged \\Deleted \\Draft $Forwarded $MDNSent"
    );
    assert_eq!(w(json!(all.to_string())), w(json!(all)));
}

#[test]
fn states_sorted_stably_and_object_is_one_state() {
    let fx = Fx::new();
    fx.item(
        "7",
        br#"[{"type":"message","start_date":3000,"folder_id":4},
             {"type":"message","start_date":1000,"folder_id":2},
             {"type":"message","start_date":3000,"folder_id":5},
             {"type":"message","start_date":2000,"folder_id":3}]"#,
    );
    fx.item("8", br#"{"type":"contact","start_date":"2013-07-12T00:00:00Z","folder_id":7,"name":"J","fields":{"firstName":"J"}}"#);
    let (_, items) = fx.read();
    let f: Vec<_> = items[&7]
        .states
        .iter()
        .map(|s| s.folder_id.unwrap())
        .collect();
    assert_eq!(f, vec![2, 3, 4, 5]);
    let c = &items[&8];
    assert_eq!(c.states.len(), 1);
    assert_eq!(c.states[0].kind, Some(ItemKind::Contact));
    assert_eq!(c.states[0].fields.as_ref().unwrap()["firstName"], "J");
}

#[test]
fn deleted_state_folder_inherits() {
    let fx = Fx::new();
    fx.item(
        "9",
        br#"[{"type":"message","start_date":1,"folder_id":2},{"start_date":5,"deleted":true}]"#,
    );
    let (_, items) = fx.read();
    let s = &items[&9].states[1];
    assert!(s.deleted);
    assert_eq!(s.folder_id, Some(2));
    assert_eq!(s.kind, Some(ItemKind::Message));
}

#[test]
fn invalid_utf8_and_lone_surrogates() {
    let fx = Fx::new();
    let mut bad = br#"[{"type":"message","start_date":1,"folder_id":2,"subject":"caf"#.to_vec();
    bad.extend_from_slice(b"\xe9 ok\"}]");
    fx.item("10", &bad);
    fx.item(
        "11",
        br#"[{"type":"message","start_date":1,"folder_id":2,"subject":"a\ud800b \udc00 \ud83d\ude00 \\ud800"}]"#,
    );
    let (_, items) = fx.read();
    assert_eq!(
        items[&10].states[0].subject.as_deref(),
        Some("caf\u{fffd} ok")
    );
    assert_eq!(
        items[&11].states[0].subject.as_deref(),
        Some("a\u{fffd}b \u{fffd} \u{1f600} \\ud800")
    );
}

#[test]
fn unparseable_metadata_is_a_broken_item() {
    let fx = Fx::new();
    fx.item("12", b"this is not json");
    fx.item("13", b"[1, 2]");
    fx.item(
        "14",
        br#"[{"type":"message","start_date":1,"folder_id":2}]"#,
    );
    let (acc, items) = fx.read();
    let b = &items[&12];
    assert!(b.states.is_empty());
    assert!(
        b.error.as_ref().unwrap().contains("items/12/12"),
        "{:?}",
        b.error
    );
    assert!(items[&13].error.is_some());
    assert!(items[&14].error.is_none());
    assert!(acc.problems.iter().any(|p| p.contains("2 item")));
}

#[test]
fn non_decimal_names_and_directories_ignored() {
    let fx = Fx::new();
    fx.item(
        "15",
        br#"[{"type":"message","start_date":1,"folder_id":2}]"#,
    );
    let d = fx.acc().join("items/15");
    fs::write(d.join("15.bak"), b"x").unwrap();
    fs::write(d.join("README"), b"x").unwrap();
    fs::create_dir_all(d.join("115")).unwrap();
    fs::write(fx.acc().join("items/stray"), b"x").unwrap();
    let (_, items) = fx.read();
    assert_eq!(items.keys().copied().collect::<Vec<_>>(), vec![15]);
}

#[test]
fn missing_or_bad_account_info() {
    let fx = Fx::new();
    let (acc, _) = fx.read();
    assert_eq!(acc.name, ACC);
    assert_eq!(acc.key, ACC);
    assert_eq!(acc.problems.len(), 1);
    assert!(acc.problems[0].contains("account_info"));
    fx.info("{{{");
    let (acc, _) = fx.read();
    assert_eq!(acc.name, ACC);
    assert!(acc.problems[0].contains("account_info"));
    fx.info(r#"{"id":"the-id"}"#);
    let (acc, _) = fx.read();
    assert_eq!(acc.name, "the-id");
    assert_eq!(acc.status, "active");
}

#[test]
fn drive_items_in_synthetic_folder() {
    let fx = Fx::new();
    let uuid = "0b7e4d2c-1111-2222-3333-4444555566ab";
    let d = fx.acc().join("drive_items/ab");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join(uuid),
        br#"[{"type":"document","start_date":5000,"name":"report.pdf","digest":"x/y","folder_id":"f00"}]"#,
    )
    .unwrap();
    let (_, items) = fx.read();
    let id = drive_item_id(uuid);
    assert!(id <= -2);
    let it = &items[&id];
    assert_eq!(it.label, uuid);
    assert_eq!(it.states[0].folder_id, Some(DRIVE_FOLDER));
    assert_eq!(it.states[0].blob.as_ref().unwrap().locator, "x,y");
    let f = &items[&DRIVE_FOLDER];
    assert_eq!(f.states[0].start, 5000);
    assert_eq!(f.states[0].kind, Some(ItemKind::Folder));
    assert_eq!(f.states[0].folder_id, Some(VIEW_ROOT));
    assert_eq!(f.states[0].name.as_deref(), Some("Drive"));
}

#[test]
fn signature_changes_with_files() {
    let fx = Fx::new();
    fx.item("1", br#"[{"type":"folder","start_date":1,"folder_id":11}]"#);
    let r = fx.reader();
    let a = r.list_accounts().unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].key, ACC);
    assert_eq!(r.list_accounts().unwrap(), a);
    fx.item("2", br#"[{"type":"folder","start_date":1,"folder_id":1}]"#);
    let b = r.list_accounts().unwrap();
    assert_ne!(a[0].signature, b[0].signature);
    fs::write(fx.root().join("accounts/not-a-dir"), b"x").unwrap();
    assert_eq!(r.list_accounts().unwrap().len(), 1);
}

// ---- blobs ----

fn content() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..5000 {
        v.extend_from_slice(format!("line {i} of a message body\r\n").as_bytes());
    }
    v
}

#[test]
fn blob_good_gzip_and_len() {
    let fx = Fx::new();
    let c = content();
    let b = fx.blob(&c);
    let r = fx.reader();
    let (got, err) = read_all(&mut *r.open_blob(&b).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, c);
    assert_eq!(
        r.blob_len(&b, Some(c.len() as u64)).unwrap(),
        c.len() as u64
    );
    assert_eq!(r.blob_len(&b, Some(12)).unwrap(), c.len() as u64);
    assert_eq!(r.blob_len(&b, None).unwrap(), c.len() as u64);
}

#[test]
fn blob_uncompressed_multimember_lasttwo_slash() {
    let fx = Fx::new();
    let r = fx.reader();
    // uncompressed
    let c = b"From: a\r\n\r\nplain".to_vec();
    let d = blob_digest(&c);
    fx.blob_raw(&d, &d[..2], &c);
    let b = BlobRef {
        locator: d.clone(),
        digest: Some(d.replace(',', "/")),
    };
    assert_eq!(read_all(&mut *r.open_blob(&b).unwrap()).0, c);
    assert_eq!(r.blob_len(&b, None).unwrap(), c.len() as u64);
    // multi-member, stored under the last two chars
    let c = content();
    let d = blob_digest(&c);
    let mut stored = gz(&c[..1000]);
    stored.extend(gz(&c[1000..]));
    fx.blob_raw(&d, &d[d.len() - 2..], &stored);
    let b = BlobRef {
        locator: d.clone(),
        digest: Some(d.clone()),
    };
    let (got, err) = read_all(&mut *r.open_blob(&b).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, c);
    assert_eq!(
        r.blob_len(&b, Some(c.len() as u64)).unwrap(),
        c.len() as u64
    );
    assert_eq!(r.blob_len(&b, None).unwrap(), c.len() as u64);
    // non-sha digest: no check
    fx.blob_raw("zz-notasha", "zz", &gz(b"hello"));
    let b = BlobRef {
        locator: "zz-notasha".into(),
        digest: Some("zz-notasha".into()),
    };
    let (got, err) = read_all(&mut *r.open_blob(&b).unwrap());
    assert!(err.is_none());
    assert_eq!(got, b"hello");
}

fn damaged(stored: Vec<u8>, c: &[u8], want: &str) {
    damaged_as(stored, c, want, true)
}

/// `prefix`: the bytes handed out before the error must be a prefix of the
/// content (not so for a corrupt deflate stream, which may decode to
/// garbage before the damage is detectable).
fn damaged_as(stored: Vec<u8>, c: &[u8], want: &str, prefix: bool) {
    let fx = Fx::new();
    let d = blob_digest(c);
    fx.blob_raw(&d, &d[..2], &stored);
    let b = BlobRef {
        locator: d.clone(),
        digest: Some(d.clone()),
    };
    let (got, err) = read_all(&mut *fx.reader().open_blob(&b).unwrap());
    let err = err.unwrap_or_else(|| panic!("no error for {want}"));
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(want), "{msg} lacks {want}");
    assert!(msg.contains(&d), "{msg} lacks the path");
    assert!(
        !prefix || c.starts_with(&got),
        "bytes handed out are a prefix of the content"
    );
}

#[test]
fn blob_damage_kinds() {
    let c = content();
    let g = gz(&c);
    let n = g.len();
    // CRC
    let mut x = g.clone();
    x[n - 8] ^= 0xff;
    damaged(x, &c, "CRC mismatch");
    // ISIZE
    let mut x = g.clone();
    x[n - 1] ^= 0x01;
    damaged(x, &c, "length mismatch");
    // truncated
    damaged(g[..n / 2].to_vec(), &c, "truncated gzip");
    damaged(g[..n - 3].to_vec(), &c, "truncated gzip");
    // trailing garbage
    let mut x = g.clone();
    x.extend_from_slice(b"garbage");
    damaged(x, &c, "trailing garbage");
    // corrupt deflate
    let mut x = g.clone();
    for b in &mut x[20..40] {
        *b = 0xff;
    }
    damaged_as(x, &c, "corrupt gzip", false);
    // digest mismatch
    let mut other = c.clone();
    other[0] = b'X';
    let fx_err = {
        let fx = Fx::new();
        let d = blob_digest(&c);
        fx.blob_raw(&d, &d[..2], &gz(&other));
        let b = BlobRef {
            locator: d.clone(),
            digest: Some(d),
        };
        let mut r = fx.reader().open_blob(&b).unwrap();
        let (got, err) = read_all(&mut *r);
        assert_eq!(got, other, "every stored byte is handed out");
        // sticky
        assert!(r.read(&mut [0u8; 4]).is_err());
        err.unwrap()
    };
    assert_eq!(fx_err.kind(), io::ErrorKind::InvalidData);
    assert!(fx_err.to_string().contains("digest mismatch"));
}

#[test]
fn blob_missing_and_len_of_damaged() {
    let fx = Fx::new();
    let r = fx.reader();
    let d = blob_digest(b"nothing");
    let b = BlobRef {
        locator: d.clone(),
        digest: Some(d.clone()),
    };
    let e = r.open_blob(&b).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains(&d[..2]));
    assert_eq!(
        r.blob_len(&b, None).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    let c = content();
    let g = gz(&c);
    let d = blob_digest(&c);
    fx.blob_raw(&d, &d[..2], &g[..g.len() / 2]);
    let b = BlobRef {
        locator: d.clone(),
        digest: Some(d),
    };
    assert_eq!(
        r.blob_len(&b, None).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}

#[test]
fn blob_path_traversal_refused() {
    let fx = Fx::new();
    let r = fx.reader();
    for p in r.blob_candidates("../../etc/passwd") {
        assert!(p.starts_with(fx.root().join("items")));
        assert!(
            !p.components().any(|c| c == std::path::Component::ParentDir),
            "{p:?}"
        );
    }
    assert!(r.blob_candidates("").is_empty());
}

/// A member whose trailer says 300 bytes but that inflates to 8 MiB (a
/// bomb, or a member without an end before its last bytes): streaming it
/// stops at the trailer's length plus one window, and it is broken.
#[test]
fn inflating_past_the_trailer_stops_at_one_window() {
    let fx = Fx::new();
    let content = vec![0u8; 8 << 20];
    let b = fx.blob(&content);
    let p = fx
        .root()
        .join("items")
        .join(&b.locator[..2])
        .join(&b.locator);
    let mut raw = fs::read(&p).unwrap();
    let n = raw.len();
    raw[n - 4..].copy_from_slice(&300u32.to_le_bytes());
    fs::write(&p, raw).unwrap();
    let r = fx.reader();
    let e = r.blob_len(&b, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("inflates past"), "{e}");
    let (got, err) = read_all(&mut *r.open_blob(&b).unwrap());
    let err = err.expect("broken");
    assert!(err.to_string().contains("inflates past"), "{err}");
    assert!(
        got.len() as u64 <= 300 + INFLATE_SLACK + BLOB_BUF as u64,
        "{}",
        got.len()
    );
    // The claimed size matching the lying trailer: that size, then broken.
    assert_eq!(r.blob_len(&b, Some(300)).unwrap(), 300);
}

#[test]
fn account_keys_of_any_directory_name_round_trip() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for raw in [
        &b"4a217bb3-6861-4c9f-80f8-f345ae2897b5"[..],
        b"caf\xe9",
        b"bad\xff%x",
        b"100%",
        b"%41",
        b"\xc3\xa9t\xc3\xa9",
    ] {
        let key = account_key(OsStr::from_bytes(raw));
        assert!(key.is_ascii() || std::str::from_utf8(raw).is_ok(), "{key}");
        assert_eq!(key_dir(&key).as_bytes(), raw, "{key}");
    }
    assert_eq!(account_key(OsStr::from_bytes(b"bad\xff%x")), "bad%FF%25x");
    assert_eq!(account_key(OsStr::from_bytes(b"plain")), "plain");
}
