//! A deterministic Zimbra classic backup target (`zmbackup` sessions),
//! written from `docs/formats/zimbra-classic.md` alone, and its truth: what
//! each view of each account must show.
//!
//! Scenario (UTC): full 03-01 (alice, bob, a bob duplicate), incremental
//! 03-02 (LDAP only), full 03-03 (alice, bob with a malformed row),
//! incremental 03-04 (LDAP, and carol's first full), auto-grouped full
//! 03-05 (alice, carol; redo logs inside), aborted full 03-06 (alice).
//! Ignored: a `sessions_tmp/` leftover, a session with only
//! `session.xml.tmp`, a `.tmp` label.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The 8.8 column order of `mail_item`.
const COLUMNS: &[&str] = &[
    "mailbox_id",
    "id",
    "type",
    "parent_id",
    "folder_id",
    "prev_folders",
    "index_id",
    "imap_id",
    "date",
    "size",
    "locator",
    "blob_digest",
    "unread",
    "flags",
    "tags",
    "tag_names",
    "sender",
    "recipients",
    "subject",
    "name",
    "metadata",
    "mod_metadata",
    "change_date",
    "mod_content",
    "uuid",
];

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const CAROL: &str = "carol@example.com";
pub const ALICE_ID: &str = "a11ce000-0000-4000-8000-000000000001";
pub const BOB_ID: &str = "b0b00000-0000-4000-8000-000000000002";
pub const CAROL_ID: &str = "ca401000-0000-4000-8000-000000000003";
pub const DUP_ID: &str = "d0d00000-0000-4000-8000-000000000004";

/// 2024-03-01T10:00:00Z.
/// Lines of the 2 MB message (303).
pub const BIG_LINES: usize = 40_000;

/// 2024-03-01T10:00:00Z.
pub const T1: i64 = 1_709_287_200_000;
const DAY: i64 = 86_400_000;

/// The SHA-256 of `b` as `blob_digest` writes it.
pub fn digest(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(b))
        .replace('/', ",")
}

/// The SHA-1 of `b` as old rows write `blob_digest` (28 characters).
pub fn digest_sha1(b: &[u8]) -> String {
    use sha1::Sha1;
    base64::engine::general_purpose::STANDARD
        .encode(Sha1::digest(b))
        .replace('/', ",")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

/// A message's bytes.
pub fn message(id: i64, subject: &str, body_lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@example.net>\r\nTo: someone@example.com\r\nSubject: {subject}\r\n\
         Date: Tue, 20 Feb 2024 10:00:00 +0000\r\nMessage-ID: <{id}.gen@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(format!("Body of item {id}: {subject}\r\n").as_bytes());
    for i in 0..body_lines {
        m.extend_from_slice(
            format!("line {i:07} of item {id}, filler filler filler filler\r\n").as_bytes(),
        );
    }
    m
}

#[derive(Clone, Debug, PartialEq)]
pub struct Folder {
    pub parent: i64,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub kind: i64,
    pub folder: i64,
    pub subject: String,
    pub bytes: Vec<u8>,
    pub date: i64,
    pub flags: i64,
    pub unread: bool,
    pub tags: Vec<String>,
    pub modc: i64,
    /// Not shown: a change gives no state.
    pub mod_metadata: i64,
    /// Contact fields (kind 6).
    pub fields: Vec<(String, String)>,
    /// A wrong `size` column (the bytes win).
    pub size_column: Option<i64>,
    /// A document's name (kind 8).
    pub name: Option<String>,
    /// `blob_digest` is an old row's SHA-1.
    pub sha1: bool,
    /// What the view shows when it is not the blob: an appointment's
    /// calendar part.
    pub shown_bytes: Option<Vec<u8>>,
}

impl Msg {
    /// `blob_digest` as the row writes it.
    pub fn digest(&self) -> String {
        if self.sha1 {
            digest_sha1(&self.bytes)
        } else {
            digest(&self.bytes)
        }
    }

    fn shown(&self) -> impl PartialEq + '_ {
        (
            self.kind,
            self.folder,
            &self.subject,
            &self.bytes,
            self.date,
            self.flags,
            self.unread,
            self.tags.iter().collect::<BTreeSet<_>>(),
            self.modc,
        )
    }
}

/// A mailbox at one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mailbox {
    pub folders: BTreeMap<i64, Folder>,
    pub items: BTreeMap<i64, Msg>,
}

impl Mailbox {
    fn same_shown(&self, o: &Mailbox) -> bool {
        self.folders == o.folders
            && self.items.len() == o.items.len()
            && self
                .items
                .iter()
                .all(|(id, m)| o.items.get(id).is_some_and(|n| n.shown() == m.shown()))
    }

    /// The folder path of `id` below the view root (`None`: hidden).
    pub fn path(&self, id: i64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = id;
        for _ in 0..64 {
            if cur == 1 {
                parts.reverse();
                return Some(parts.join("/"));
            }
            let Some(f) = self.folders.get(&cur) else {
                // A missing folder is shown as unknown_<id> at the root.
                if cur == 11 {
                    return None;
                }
                parts.push(format!("unknown_{cur}"));
                parts.reverse();
                return Some(parts.join("/"));
            };
            parts.push(f.name.clone());
            cur = f.parent;
        }
        None
    }
}

/// One file as a view must show it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileTruth {
    pub id: i64,
    pub ext: &'static str,
    /// `None`: broken (reading fails with EIO).
    pub bytes: Option<Vec<u8>>,
    /// The `.error` kind of a broken item.
    pub error: Option<&'static str>,
    pub flags: BTreeSet<String>,
    pub tags: BTreeSet<String>,
    /// Contact: lines the vCard holds.
    pub vcf_has: Vec<String>,
    /// `blob_digest` of a message.
    pub digest: Option<String>,
}

/// A view: its folder paths and, per folder path, its files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tree {
    pub folders: BTreeSet<String>,
    pub files: BTreeMap<String, Vec<FileTruth>>,
}

#[derive(Debug)]
pub struct AccountTruth {
    pub dir: String,
    pub zimbra_id: String,
    pub status: String,
    /// View name (`latest`, `2024-03-01`, `@2024-03-02T10:00:00Z`) and tree.
    pub views: Vec<(String, Tree)>,
    /// The day directories, exactly.
    pub days: BTreeSet<String>,
    pub deleted: Tree,
    /// Items and how many `history/<id>/` entries they have.
    pub history: BTreeMap<i64, usize>,
    /// Items listed only as `history/<id>/error`.
    pub bad_only: Vec<i64>,
    /// Every snapshot (instant, mailbox), for restores.
    pub snapshots: Vec<(i64, Mailbox)>,
}

pub struct Truth {
    pub accounts: Vec<AccountTruth>,
    /// Redo logs written, relative to the target, with their op time range.
    pub redologs: Vec<(String, i64, i64)>,
}

impl Truth {
    pub fn account(&self, dir: &str) -> &AccountTruth {
        self.accounts.iter().find(|a| a.dir == dir).unwrap()
    }
}

/// How one copy of a blob is stored.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Plain,
    PlainGz,
    /// Plain file named `<digest><id>-<modc>.msg1`.
    PlainDigestName,
    /// A 0-byte placeholder for a shared blob.
    Placeholder,
    /// Different bytes under the item's name (fails its digest).
    Corrupt,
    /// A gzip cut in half.
    Truncated,
    Zip(&'static str, bool),
    ZipGz(&'static str),
}

fn label(t: i64, full: bool) -> String {
    let d = chrono::DateTime::from_timestamp_millis(t).unwrap();
    format!(
        "{}-{}",
        if full { "full" } else { "incr" },
        d.format("%Y%m%d.%H%M%S%.3f")
    )
}

fn acct_rel(id: &str) -> PathBuf {
    PathBuf::from("accounts")
        .join(&id[0..3])
        .join(&id[3..6])
        .join(id)
}

/// MySQL OUTFILE quoting of a string.
fn quote(b: &[u8]) -> Vec<u8> {
    let mut o = vec![b'"'];
    for &c in b {
        match c {
            b'\\' | b'"' | b'\n' => {
                o.push(b'\\');
                o.push(c);
            }
            0 => o.extend_from_slice(b"\\0"),
            _ => o.push(c),
        }
    }
    o.push(b'"');
    o
}

fn bencode_str(s: &str) -> String {
    format!("{}:{s}", s.len())
}

/// One account dump of one session.
struct Dump {
    mailbox_id: i64,
    /// Column order and how db_schema.xml writes it: `Some(true)` with
    /// positions (in a shuffled document order), `Some(false)` without,
    /// `None` no db_schema.xml.
    columns: Vec<&'static str>,
    schema: Option<bool>,
    /// Items whose line is written malformed.
    malformed: Vec<i64>,
    /// Extra raw lines.
    extra_lines: Vec<Vec<u8>>,
}

fn row(mbox: &Mailbox, mailbox_id: i64, id: i64, cols: &[&str]) -> Vec<u8> {
    let folder = mbox.folders.get(&id);
    let item = mbox.items.get(&id);
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for c in cols {
        let null = b"\\N".to_vec();
        let num = |v: i64| v.to_string().into_bytes();
        let v = match (*c, folder, item) {
            ("mailbox_id", _, _) => num(mailbox_id),
            ("id", _, _) => num(id),
            ("type", Some(_), _) => num(1),
            ("type", _, Some(m)) => num(m.kind),
            ("parent_id" | "folder_id", Some(f), _) => num(f.parent),
            ("parent_id", _, Some(_)) => null,
            ("folder_id", _, Some(m)) => num(m.folder),
            ("name", Some(f), _) => quote(f.name.as_bytes()),
            ("name", _, Some(Msg { name: Some(n), .. })) => quote(n.as_bytes()),
            ("date", _, Some(m)) => num(m.date),
            ("size", _, Some(m)) if m.kind != 6 => {
                num(m.size_column.unwrap_or(m.bytes.len() as i64))
            }
            ("blob_digest", _, Some(m)) if m.kind != 6 => quote(m.digest().as_bytes()),
            ("unread", _, Some(m)) => num(i64::from(m.unread)),
            ("flags", _, Some(m)) => num(m.flags),
            ("flags", Some(_), _) => num(0),
            ("tags", _, _) => num(0),
            ("tag_names", _, Some(m)) if !m.tags.is_empty() => {
                let mut s = String::from("\0");
                for t in &m.tags {
                    s.push_str(t);
                    s.push('\0');
                }
                quote(s.as_bytes())
            }
            ("sender", _, Some(_)) => quote(b"Sender \"Quoted\" <sender@example.net>"),
            ("subject", _, Some(m)) if m.kind != 6 => quote(m.subject.as_bytes()),
            ("metadata", _, Some(m)) if m.kind == 6 => {
                let mut s = String::from("d3:fldd");
                for (k, v) in &m.fields {
                    s.push_str(&bencode_str(k));
                    s.push_str(&bencode_str(v));
                }
                s.push_str("e1:vi10ee");
                quote(s.as_bytes())
            }
            ("metadata", _, Some(_)) => quote(b"d1:vi10e\n2:xx3:a\\be"),
            ("mod_metadata", _, Some(m)) => num(m.mod_metadata),
            ("mod_content", _, Some(m)) => num(m.modc),
            ("mod_content", Some(_), _) => num(1),
            _ => null,
        };
        fields.push(v);
    }
    fields.join(&b","[..])
}

struct Writer {
    root: PathBuf,
    zips: BTreeMap<PathBuf, Vec<(String, Vec<u8>, bool)>>,
}

impl Writer {
    fn put(&self, rel: impl AsRef<Path>, bytes: &[u8]) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    fn session_xml(&self, sess: &str, kind: &str, t: i64, accts: &[(&str, &str)], extra: &str) {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<backupSet label=\"{sess}\" type=\"{kind}\" \
             startTime=\"{t}\" endTime=\"{}\"{extra}>\n<accounts>\n",
            t + 60_000
        );
        for (id, email) in accts {
            s.push_str(&format!("<account zimbraId=\"{id}\" email=\"{email}\"/>\n"));
        }
        s.push_str("</accounts>\n<unknownElement x=\"1\"/>\n</backupSet>\n");
        self.put(
            Path::new("sessions").join(sess).join("session.xml"),
            s.as_bytes(),
        );
    }

    fn ldap(&self, sess: &Path, id: &str, email: &str, status: &str) {
        let s = format!(
            "<attributes>\n<attribute name=\"mail\"><value>{email}</value></attribute>\n\
             <attribute name=\"zimbraAccountStatus\"><value>{status}</value></attribute>\n\
             <attribute name=\"zimbraId\"><value>{id}</value></attribute>\n</attributes>\n"
        );
        self.put(sess.join(acct_rel(id)).join("ldap.xml"), s.as_bytes());
    }

    fn meta(&self, sess: &Path, id: &str, email: &str, mailbox_id: i64) {
        let s = format!(
            "<?xml version=\"1.0\"?>\n<accountBackup zimbraId=\"{id}\" email=\"{email}\" \
             mailboxId=\"{mailbox_id}\" startTime=\"1\" endTime=\"2\"><other/></accountBackup>\n"
        );
        self.put(sess.join(acct_rel(id)).join("meta.xml"), s.as_bytes());
    }

    fn dump(&self, sess: &Path, id: &str, mbox: &Mailbox, d: &Dump) {
        let db = sess.join(acct_rel(id)).join("db");
        if let Some(positions) = d.schema {
            let mut s = String::from("<dbSchema>\n<table name=\"mail_item_dumpster\"><column name=\"zzz\"/></table>\n<table name=\"mail_item\">\n");
            let mut order: Vec<(usize, &str)> = d.columns.iter().copied().enumerate().collect();
            if positions {
                // Document order differs from the positions.
                order.reverse();
                for (i, c) in order {
                    s.push_str(&format!(
                        "<column name=\"{c}\" position=\"{}\" type=\"x\"/>\n",
                        i + 1
                    ));
                }
            } else {
                for (_, c) in order {
                    s.push_str(&format!("<column name=\"{c}\"/>\n"));
                }
            }
            s.push_str("</table>\n</dbSchema>\n");
            self.put(db.join("db_schema.xml"), s.as_bytes());
        }
        let mut out = Vec::new();
        let ids: BTreeSet<i64> = mbox
            .folders
            .keys()
            .chain(mbox.items.keys())
            .copied()
            .collect();
        for i in ids {
            let mut line = row(mbox, d.mailbox_id, i, &d.columns);
            if d.malformed.contains(&i) {
                // An unclosed quote, then too few fields.
                line = format!("{},{},5,\"broken", d.mailbox_id, i).into_bytes();
                if d.columns[0] != "mailbox_id" {
                    line = format!("{i},\"broken").into_bytes();
                }
            }
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
        for l in &d.extra_lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        self.put(db.join("mail_item.dat"), &out);
    }

    fn blob(&mut self, sess: &Path, acct: &str, id: i64, m: &Msg, how: Store) {
        let dir = sess.join(acct_rel(acct)).join("blobs");
        let name = format!("{id}-{}.msg", m.modc);
        let sub = dir.join((id % 4).to_string());
        match how {
            Store::Plain => self.put(sub.join(&name), &m.bytes),
            Store::PlainGz => self.put(sub.join(&name), &gzip(&m.bytes)),
            Store::PlainDigestName => self.put(
                sub.join(format!("{}{id}-{}.msg1", digest(&m.bytes), m.modc)),
                &m.bytes,
            ),
            Store::Placeholder => self.put(sub.join(&name), b""),
            Store::Corrupt => self.put(sub.join(&name), b"not the message\r\n"),
            Store::Truncated => {
                let gz = gzip(&m.bytes);
                self.put(sub.join(&name), &gz[..gz.len() / 2]);
            }
            Store::Zip(zip, deflate) => self.zips.entry(dir.join(zip)).or_default().push((
                format!("{}/{name}", id % 4),
                m.bytes.clone(),
                deflate,
            )),
            Store::ZipGz(zip) => {
                self.zips
                    .entry(dir.join(zip))
                    .or_default()
                    .push((name, gzip(&m.bytes), false))
            }
        }
    }

    fn finish_zips(&self) {
        for (rel, entries) in &self.zips {
            let p = self.root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut z = zip::ZipWriter::new(fs::File::create(&p).unwrap());
            for (name, bytes, deflate) in entries {
                let method = if *deflate {
                    zip::CompressionMethod::Deflated
                } else {
                    zip::CompressionMethod::Stored
                };
                let opts = zip::write::SimpleFileOptions::default().compression_method(method);
                z.start_file(name.as_str(), opts).unwrap();
                z.write_all(bytes).unwrap();
            }
            z.finish().unwrap();
        }
    }

    /// A redo log file with a 512-byte header giving its op time range.
    fn redolog(&self, rel: &str, first: i64, last: i64) {
        let mut h = Vec::new();
        h.extend_from_slice(b"ZM_REDO");
        h.push(0);
        h.extend_from_slice(&512i64.to_be_bytes());
        h.extend_from_slice(&7i64.to_be_bytes());
        let server = b"mail.example.com";
        h.push(server.len() as u8);
        let mut sid = server.to_vec();
        sid.resize(127, 0);
        h.extend_from_slice(&sid);
        h.extend_from_slice(&first.to_be_bytes());
        h.extend_from_slice(&last.to_be_bytes());
        h.extend_from_slice(&1i16.to_be_bytes());
        h.extend_from_slice(&10i16.to_be_bytes());
        h.extend_from_slice(&first.to_be_bytes());
        h.resize(512, 0);
        h.extend_from_slice(b"ZMREDO\0\0\0\0");
        self.put(rel, &h);
    }
}

fn system_folders(mb: &mut Mailbox) {
    for (id, parent, name) in [
        (2, 1, "Inbox"),
        (3, 1, "Trash"),
        (5, 1, "Sent"),
        (7, 1, "Contacts"),
        (8, 11, "Tags"),
        (10, 1, "Calendar"),
        (16, 1, "Briefcase"),
    ] {
        mb.folders.insert(
            id,
            Folder {
                parent,
                name: name.into(),
            },
        );
    }
}

fn msg(id: i64, folder: i64, subject: &str) -> Msg {
    Msg {
        kind: 5,
        folder,
        subject: subject.into(),
        bytes: message(id, subject, 3),
        date: 1_708_423_200 + id * 60,
        flags: 0,
        unread: false,
        tags: Vec::new(),
        modc: 1,
        mod_metadata: 10,
        fields: Vec::new(),
        size_column: None,
        name: None,
        sha1: false,
        shown_bytes: None,
    }
}

fn dump(mailbox_id: i64, columns: Vec<&'static str>, schema: Option<bool>) -> Dump {
    Dump {
        mailbox_id,
        columns,
        schema,
        malformed: Vec::new(),
        extra_lines: Vec::new(),
    }
}

/// Write the target below `root` and return its truth.
pub fn write(root: &Path) -> Truth {
    let mut w = Writer {
        root: root.to_path_buf(),
        zips: BTreeMap::new(),
    };
    let t = |day: i64| T1 + day * DAY;
    let (s1, s2, s3, s4, s5, s6) = (
        label(t(0), true),
        label(t(1), false),
        label(t(2), true),
        label(t(3), false),
        label(t(4), true),
        label(t(5), true),
    );
    let p = |s: &str| PathBuf::from("sessions").join(s);
    let all: Vec<&str> = COLUMNS.to_vec();
    let mut reversed = all.clone();
    reversed.reverse();
    let mut id_first = all.clone();
    id_first.swap(0, 1);

    // ---- alice
    let mut a1 = Mailbox::default();
    system_folders(&mut a1);
    a1.folders.insert(
        257,
        Folder {
            parent: 2,
            name: "Projects".into(),
        },
    );
    a1.folders.insert(
        258,
        Folder {
            parent: 1,
            name: "Données été".into(),
        },
    );
    a1.folders.insert(
        259,
        Folder {
            parent: 1,
            name: "Archive".into(),
        },
    );
    a1.items.insert(300, msg(300, 2, "Hello Alice"));
    a1.items.insert(
        301,
        Msg {
            flags: 4,
            ..msg(301, 257, "Projekt Übersicht")
        },
    );
    a1.items.insert(302, msg(302, 258, "Été 2024 — photos"));
    a1.items.insert(
        303,
        Msg {
            bytes: message(303, "Big one", BIG_LINES),
            ..msg(303, 2, "Big one")
        },
    );
    a1.items.insert(
        304,
        Msg {
            unread: true,
            tags: vec!["Work".into(), "Urgent".into()],
            ..msg(304, 2, "Tagged")
        },
    );
    a1.items.insert(305, msg(305, 5, "Shared announcement"));
    let (mime, ics) = invitation(450, "Réunion d'équipe");
    a1.items.insert(
        450,
        Msg {
            kind: 11,
            bytes: mime,
            shown_bytes: Some(ics),
            ..msg(450, 10, "Réunion d'équipe")
        },
    );
    a1.items.insert(
        460,
        Msg {
            kind: 8,
            bytes: b"notes, version 1\n".to_vec(),
            name: Some("notes été.txt".into()),
            ..msg(460, 16, "")
        },
    );
    a1.items.insert(306, msg(306, 2, "Lost"));
    a1.items.insert(307, msg(307, 2, "Cut short"));
    a1.items.insert(
        400,
        Msg {
            kind: 6,
            folder: 7,
            subject: String::new(),
            bytes: Vec::new(),
            fields: vec![
                ("firstName".into(), "José".into()),
                ("lastName".into(), "Müller".into()),
                ("email".into(), "jose@example.org".into()),
            ],
            ..msg(400, 7, "")
        },
    );
    assert!(a1.items[&303].bytes.len() > 2_000_000);
    let mut a2 = a1.clone();
    a2.folders.get_mut(&257).unwrap().name = "Projets 2024".into();
    a2.folders.get_mut(&259).unwrap().parent = 257;
    a2.items.get_mut(&300).unwrap().folder = 3;
    a2.items.get_mut(&301).unwrap().flags = 4 | 32;
    let a302 = a2.items.remove(&302).unwrap();
    a2.items.get_mut(&303).unwrap().mod_metadata = 99;
    {
        let m = a2.items.get_mut(&304).unwrap();
        m.unread = false;
        m.tags = vec!["Work".into()];
    }
    a2.items.insert(308, msg(308, 2, "Nouveau message"));
    a2.items.insert(309, msg(309, 5, "Only in a shared zip"));
    a2.items.insert(
        310,
        Msg {
            size_column: Some(5),
            ..msg(310, 2, "Size says five")
        },
    );
    a2.items.insert(311, msg(311, 2, "A link, not followed"));
    a2.items.insert(
        313,
        Msg {
            sha1: true,
            ..msg(313, 2, "An old row's SHA-1")
        },
    );
    a2.items.insert(314, msg(314, 2, "Only a wrong copy"));
    let mut a3 = a2.clone();
    a3.items.insert(302, Msg { folder: 2, ..a302 });
    a3.items.remove(&308);
    let mut a4 = a3.clone();
    a4.items.get_mut(&304).unwrap().flags |= 32;

    // ---- bob
    let mut b1 = Mailbox::default();
    system_folders(&mut b1);
    b1.items.insert(500, msg(500, 2, "Bob first"));
    b1.items.insert(501, msg(501, 2, "Bob second"));
    let mut b2 = b1.clone();
    b2.items.get_mut(&500).unwrap().flags = 32;
    b2.items.insert(503, msg(503, 2, "Bob third"));

    // ---- carol (first full in an incremental); a date in milliseconds
    let mut c1 = Mailbox::default();
    system_folders(&mut c1);
    c1.items.insert(
        600,
        Msg {
            date: 1_708_500_000_123,
            ..msg(600, 2, "Carol hello")
        },
    );
    let mut c2 = c1.clone();
    c2.folders.insert(
        262,
        Folder {
            parent: 2,
            name: "Été".into(),
        },
    );
    c2.items.insert(601, msg(601, 262, "Carol two"));
    // In a folder that no row has.
    c2.items.insert(602, msg(602, 9999, "Lost folder"));

    // ---- sessions
    let ps1 = p(&s1);
    w.session_xml(&s1, "full", t(0), &[(ALICE_ID, ALICE), (BOB_ID, BOB)], "");
    for (id, email, mb) in [(ALICE_ID, ALICE, 1), (BOB_ID, BOB, 2), (DUP_ID, BOB, 4)] {
        w.meta(&ps1, id, email, mb);
        w.ldap(&ps1, id, email, "active");
    }
    let mut d = dump(1, all.clone(), Some(true));
    // A row of another mailbox, and hidden items (a tag, a conversation).
    d.extra_lines.push(b"77,999,5,\\N,2,\\N,999,999,1708423200,5,\\N,\\N,0,0,0,\\N,\\N,\\N,\"stray\",\\N,\\N,1,1,1,\\N".to_vec());
    d.extra_lines.push(
        b"1,260,3,8,8,\\N,\\N,\\N,0,0,\\N,\\N,0,0,0,\\N,\\N,\\N,\\N,\"Work\",\\N,1,1,1,\\N"
            .to_vec(),
    );
    d.extra_lines.push(
        b"1,261,4,9,9,\\N,\\N,\\N,0,0,\\N,\\N,0,0,0,\\N,\\N,\\N,\"Hello\",\\N,\\N,1,1,1,\\N"
            .to_vec(),
    );
    w.dump(&ps1, ALICE_ID, &a1, &d);
    w.blob(&ps1, ALICE_ID, 300, &a1.items[&300], Store::Plain);
    w.blob(&ps1, ALICE_ID, 301, &a1.items[&301], Store::PlainGz);
    w.blob(
        &ps1,
        ALICE_ID,
        302,
        &a1.items[&302],
        Store::Zip("blobs-1.zip", false),
    );
    w.blob(
        &ps1,
        ALICE_ID,
        303,
        &a1.items[&303],
        Store::Zip("blobs-2.zip", true),
    );
    w.blob(
        &ps1,
        ALICE_ID,
        304,
        &a1.items[&304],
        Store::ZipGz("blobs-1.zip"),
    );
    w.blob(&ps1, ALICE_ID, 305, &a1.items[&305], Store::Placeholder);
    w.blob(&ps1, ALICE_ID, 450, &a1.items[&450], Store::PlainGz);
    w.blob(
        &ps1,
        ALICE_ID,
        460,
        &a1.items[&460],
        Store::Zip("blobs-1.zip", true),
    );
    w.blob(&ps1, ALICE_ID, 307, &a1.items[&307], Store::Truncated);
    let shared = &a1.items[&305].bytes;
    let sd = digest(shared);
    w.put(
        ps1.join("shared_blobs")
            .join(&sd[..2])
            .join(&sd)
            .join("blob.dat"),
        &gzip(shared),
    );
    w.dump(&ps1, BOB_ID, &b1, &dump(2, all.clone(), None));
    w.blob(&ps1, BOB_ID, 500, &b1.items[&500], Store::PlainDigestName);
    w.blob(&ps1, BOB_ID, 501, &b1.items[&501], Store::PlainGz);
    w.dump(
        &ps1,
        DUP_ID,
        &Mailbox::default(),
        &dump(4, all.clone(), None),
    );
    // A copy no row points at: an orphan.
    w.put(
        ps1.join(acct_rel(BOB_ID)).join("blobs/0/599-1.msg"),
        &message(599, "Orphan", 1),
    );

    let ps2 = p(&s2);
    w.session_xml(
        &s2,
        "incremental",
        t(1),
        &[(ALICE_ID, ALICE), (BOB_ID, BOB)],
        "",
    );
    w.ldap(&ps2, ALICE_ID, ALICE, "active");
    w.ldap(&ps2, BOB_ID, BOB, "active");
    w.put(ps2.join("sys/db_schema.xml"), b"<dbSchema/>");
    w.redolog(
        "redologs/redo-20240302.100000.000-seq1.log",
        t(0) + 1000,
        t(1) - 1000,
    );

    let ps3 = p(&s3);
    w.session_xml(&s3, "full", t(2), &[(ALICE_ID, ALICE), (BOB_ID, BOB)], "");
    w.meta(&ps3, ALICE_ID, ALICE, 1);
    w.meta(&ps3, BOB_ID, BOB, 2);
    w.ldap(&ps3, ALICE_ID, ALICE, "active");
    w.ldap(&ps3, BOB_ID, BOB, "active");
    w.dump(&ps3, ALICE_ID, &a2, &dump(1, reversed.clone(), Some(true)));
    // Newest copy of 300 fails its digest: the older intact one wins.
    w.blob(&ps3, ALICE_ID, 300, &a2.items[&300], Store::Corrupt);
    w.blob(
        &ps3,
        ALICE_ID,
        308,
        &a2.items[&308],
        Store::Zip("blobs-1.zip", false),
    );
    w.blob(
        &ps3,
        ALICE_ID,
        301,
        &a2.items[&301],
        Store::Zip("blobs-1.zip", false),
    );
    w.blob(&ps3, ALICE_ID, 310, &a2.items[&310], Store::PlainGz);
    w.blob(&ps3, ALICE_ID, 313, &a2.items[&313], Store::PlainGz);
    w.blob(&ps3, ALICE_ID, 314, &a2.items[&314], Store::Corrupt);
    let d309 = digest(&a2.items[&309].bytes);
    w.zips
        .entry(ps3.join("shared_blobs/shared-1.zip"))
        .or_default()
        .push((d309, a2.items[&309].bytes.clone(), true));
    // 311's only copy is a link to a file outside the target.
    let link = root.join(ps3.join(acct_rel(ALICE_ID)).join("blobs/3/311-1.msg"));
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    let mut d = dump(2, all.clone(), None);
    d.malformed.push(501);
    // A bad line of an item that has no other line.
    d.extra_lines.push(
        b"2,502,5,\\N,2,\\N,502,502,1708423200,10,\\N,\"x\",0,0,0,\\N,\\N,\\N,\"half".to_vec(),
    );
    w.dump(&ps3, BOB_ID, &b2, &d);
    w.blob(&ps3, BOB_ID, 503, &b2.items[&503], Store::Plain);

    let ps4 = p(&s4);
    w.session_xml(
        &s4,
        "incremental",
        t(3),
        &[(ALICE_ID, ALICE), (BOB_ID, BOB), (CAROL_ID, CAROL)],
        "",
    );
    w.ldap(&ps4, ALICE_ID, ALICE, "active");
    w.ldap(&ps4, BOB_ID, BOB, "locked");
    w.meta(&ps4, CAROL_ID, CAROL, 3);
    w.ldap(&ps4, CAROL_ID, CAROL, "active");
    w.dump(&ps4, CAROL_ID, &c1, &dump(3, id_first.clone(), Some(false)));
    w.blob(
        &ps4,
        CAROL_ID,
        600,
        &c1.items[&600],
        Store::Zip("blobs-1.zip", true),
    );

    let ps5 = p(&s5);
    w.session_xml(
        &s5,
        "full",
        t(4),
        &[(ALICE_ID, ALICE), (CAROL_ID, CAROL)],
        " mode=\"auto-grouped\"",
    );
    w.meta(&ps5, ALICE_ID, ALICE, 1);
    w.ldap(&ps5, ALICE_ID, ALICE, "active");
    w.dump(&ps5, ALICE_ID, &a3, &dump(1, all.clone(), Some(true)));
    w.meta(&ps5, CAROL_ID, CAROL, 3);
    w.ldap(&ps5, CAROL_ID, CAROL, "active");
    // Loses to the incremental of the same instant (a later name).
    let mut c_lose = c1.clone();
    c_lose.items.insert(699, msg(699, 2, "Loser"));
    w.dump(&ps5, CAROL_ID, &c_lose, &dump(3, all.clone(), None));
    let s5b = format!("incr-{}", &s5[5..]);
    let ps5b = p(&s5b);
    // A session.xml that does not parse still makes a session.
    w.put(ps5b.join("session.xml"), b"<backupSet label=\"x\" <<<");
    w.meta(&ps5b, CAROL_ID, CAROL, 3);
    w.dump(&ps5b, CAROL_ID, &c2, &dump(3, all.clone(), None));
    w.blob(&ps5b, CAROL_ID, 601, &c2.items[&601], Store::PlainGz);
    w.blob(&ps5b, CAROL_ID, 602, &c2.items[&602], Store::Plain);
    // Bob in the auto-grouped session, with a schema that has no id column:
    // no snapshot, and no deletion.
    w.meta(&ps5, BOB_ID, BOB, 2);
    let no_id: Vec<&str> = all.iter().copied().filter(|c| *c != "id").collect();
    w.dump(
        &ps5,
        BOB_ID,
        &Mailbox::default(),
        &dump(2, no_id, Some(true)),
    );
    let redo5 = format!("sessions/{s5}/redologs/redo-20240305.100000.000-seq2.log");
    w.redolog(&redo5, t(3) + 5000, t(4) - 5000);

    let ps6 = p(&s6);
    w.session_xml(
        &s6,
        "full",
        t(5),
        &[(ALICE_ID, ALICE)],
        " status=\"aborted\" aborted=\"true\"",
    );
    w.meta(&ps6, ALICE_ID, ALICE, 1);
    w.ldap(&ps6, ALICE_ID, ALICE, "active");
    w.dump(&ps6, ALICE_ID, &a4, &dump(1, all.clone(), Some(true)));

    // ---- ignored: each would empty alice.
    let empty = Mailbox::default();
    let tmp = PathBuf::from("sessions_tmp").join(label(t(6), true));
    w.put(tmp.join("session.xml"), b"<backupSet/>");
    w.meta(&tmp, ALICE_ID, ALICE, 1);
    w.dump(&tmp, ALICE_ID, &empty, &dump(1, all.clone(), None));
    let no_xml = p(&label(t(7), true));
    w.put(no_xml.join("session.xml.tmp"), b"<backupSet/>");
    w.dump(&no_xml, ALICE_ID, &empty, &dump(1, all.clone(), None));
    let dot_tmp = PathBuf::from("sessions").join(format!("{}.tmp", label(t(8), true)));
    w.put(dot_tmp.join("session.xml"), b"<backupSet/>");
    w.dump(&dot_tmp, ALICE_ID, &empty, &dump(1, all.clone(), None));

    w.put(
        "accounts.xml",
        format!(
            "<?xml version=\"1.0\"?>\n<allAccounts>\n<account zimbraId=\"{ALICE_ID}\" email=\"{ALICE}\" latestFullBackupLabel=\"{s6}\"/>\n\
             <account zimbraId=\"{BOB_ID}\" email=\"{BOB}\" latestFullBackupLabel=\"{s3}\"/>\n</allAccounts>\n"
        )
        .as_bytes(),
    );
    w.finish_zips();

    // ---- truth
    let broken: BTreeMap<i64, &'static str> = [
        (306, "missing blob"),
        (307, "truncated gzip"),
        (311, "missing blob"),
        (314, "digest mismatch"),
    ]
    .into();
    let alice = account_truth(
        ALICE,
        ALICE_ID,
        "active",
        &[(t(0), a1), (t(2), a2), (t(4), a3), (t(5), a4)],
        &[t(1), t(3)],
        &broken,
        &[],
    );
    // bob's second snapshot is damaged: 501 keeps its state.
    let bob = account_truth(
        BOB,
        BOB_ID,
        "locked",
        &[(t(0), b1), (t(2), b2)],
        &[t(1), t(3), t(4), t(5)],
        &broken,
        &[502],
    );
    let carol = account_truth(
        CAROL,
        CAROL_ID,
        "active",
        &[(t(3), c1), (t(4), c2)],
        &[t(0), t(1), t(5)],
        &broken,
        &[],
    );
    let dup = account_truth(
        &format!("{BOB}~{DUP_ID}"),
        DUP_ID,
        "active",
        &[(t(0), Mailbox::default())],
        &[t(2)],
        &broken,
        &[],
    );
    Truth {
        accounts: vec![alice, bob, carol, dup],
        redologs: vec![
            (
                "redologs/redo-20240302.100000.000-seq1.log".into(),
                t(0) + 1000,
                t(1) - 1000,
            ),
            (redo5, t(3) + 5000, t(4) - 5000),
        ],
    }
}

fn day_of(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn instant(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .format("@%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn tree_of(mb: &Mailbox, broken: &BTreeMap<i64, &'static str>) -> Tree {
    let mut t = Tree::default();
    for id in mb.folders.keys() {
        if let Some(p) = mb.path(*id) {
            t.folders.insert(p);
        }
    }
    for (id, m) in &mb.items {
        let Some(p) = mb.path(m.folder) else { continue };
        if p.starts_with("unknown_") {
            t.folders.insert(p.clone());
        }
        t.files
            .entry(p)
            .or_default()
            .push(file_truth(*id, m, broken));
    }
    t
}

fn file_truth(id: i64, m: &Msg, broken: &BTreeMap<i64, &'static str>) -> FileTruth {
    let contact = m.kind == 6;
    let mut flags = BTreeSet::new();
    if !contact {
        if !m.unread {
            flags.insert("\\Seen".to_string());
        }
        for (bit, w) in [
            (4, "\\Answered"),
            (8, "$Forwarded"),
            (32, "\\Flagged"),
            (64, "\\Draft"),
            (128, "\\Deleted"),
            (256, "$MDNSent"),
        ] {
            if m.flags & bit != 0 {
                flags.insert(w.to_string());
            }
        }
    }
    let ext = match m.kind {
        6 => "vcf",
        8 => "txt",
        11 | 15 => "ics",
        _ => "eml",
    };
    let shown = m.shown_bytes.clone().unwrap_or_else(|| m.bytes.clone());
    FileTruth {
        id,
        ext,
        bytes: (!contact && !broken.contains_key(&id)).then_some(shown),
        error: broken.get(&id).copied(),
        flags,
        tags: m.tags.iter().cloned().collect(),
        vcf_has: m
            .fields
            .iter()
            .filter(|(k, _)| k == "email")
            .map(|(_, v)| format!("EMAIL:{v}"))
            .collect(),
        digest: (!contact).then(|| m.digest()),
    }
}

/// An invitation: a MIME message with a plain and a calendar part, and the
/// calendar part's bytes.
fn invitation(id: i64, summary: &str) -> (Vec<u8>, Vec<u8>) {
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//gen//EN\r\nBEGIN:VEVENT\r\n\
         UID:{id}@gen.example.com\r\nDTSTART:20240310T090000Z\r\nDTEND:20240310T100000Z\r\n\
         SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    let mime = format!(
        "From: Organizer <org@example.net>\r\nTo: alice@example.com\r\nSubject: {summary}\r\n\
         Message-ID: <{id}.gen@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b-{id}\"\r\n\r\n\
         --b-{id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAn invitation.\r\n\
         --b-{id}\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n\
         {ics}\r\n--b-{id}--\r\n"
    );
    (mime.into_bytes(), ics.into_bytes())
}

fn account_truth(
    dir: &str,
    zimbra_id: &str,
    status: &str,
    snaps: &[(i64, Mailbox)],
    other_instants: &[i64],
    broken: &BTreeMap<i64, &'static str>,
    bad_only: &[i64],
) -> AccountTruth {
    let mut views = Vec::new();
    let mut days = BTreeSet::new();
    let mut prev: Option<&Mailbox> = None;
    let empty = Mailbox::default();
    let mut history: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last_seen: BTreeMap<i64, (String, Msg)> = BTreeMap::new();
    for (t, mb) in snaps {
        let changed = prev.is_none_or(|p| !p.same_shown(mb));
        if changed && !(prev.is_none() && mb.same_shown(&empty)) {
            days.insert(day_of(*t));
        }
        let before = prev.unwrap_or(&empty);
        for (id, m) in &mb.items {
            if before.items.get(id).is_none_or(|o| o.shown() != m.shown()) {
                *history.entry(*id).or_default() += 1;
            }
            last_seen.insert(*id, (mb.path(m.folder).unwrap_or_default(), m.clone()));
        }
        for id in before.items.keys() {
            if !mb.items.contains_key(id) {
                *history.entry(*id).or_default() += 1;
            }
        }
        views.push((instant(*t), tree_of(mb, broken)));
        prev = Some(mb);
    }
    for (day, mb) in snaps.iter().map(|(t, mb)| (day_of(*t), mb)) {
        if days.contains(&day) {
            views.push((day, tree_of(mb, broken)));
        }
    }
    let last = &snaps.last().unwrap().1;
    views.push(("latest".into(), tree_of(last, broken)));
    // Instants between snapshots show the preceding one; before the first,
    // nothing.
    for &t in other_instants {
        let mb = snaps
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .map(|(_, m)| m)
            .unwrap_or(&empty);
        views.push((instant(t), tree_of(mb, broken)));
    }
    views.push(("@2024-02-01T00:00:00Z".into(), Tree::default()));
    let mut deleted = Tree::default();
    for (id, (path, m)) in &last_seen {
        if !last.items.contains_key(id) {
            deleted
                .files
                .entry(path.clone())
                .or_default()
                .push(file_truth(*id, m, broken));
        }
    }
    AccountTruth {
        dir: dir.to_string(),
        zimbra_id: zimbra_id.to_string(),
        status: status.to_string(),
        views,
        days,
        deleted,
        history,
        bad_only: bad_only.to_vec(),
        snapshots: snaps.to_vec(),
    }
}
