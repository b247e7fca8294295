//! Tests of the filesystem core without the kernel: an in-memory reader
//! feeds the real catalogue, and the tree is walked through `MailFs`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

use super::*;
use crate::catalog::{refresh, Catalog};
use crate::format::{AccountEntry, BackupReader};
use crate::model::{Account, BlobRef, Item, ItemState};

/// A backup held in memory: accounts with items, blobs by locator.
#[derive(Default)]
struct MemReader {
    accounts: Vec<(Account, Vec<Item>)>,
    blobs: HashMap<String, Vec<u8>>,
}

impl BackupReader for MemReader {
    fn format_name(&self) -> &'static str {
        "memory"
    }
    fn list_accounts(&self) -> anyhow::Result<Vec<AccountEntry>> {
        Ok(self
            .accounts
            .iter()
            .map(|(a, _)| AccountEntry {
                key: a.key.clone(),
                signature: "1".into(),
            })
            .collect())
    }
    fn read_account(&self, key: &str, sink: &mut dyn FnMut(Item)) -> anyhow::Result<Account> {
        let (a, items) = self.accounts.iter().find(|(a, _)| a.key == key).unwrap();
        items.iter().cloned().for_each(sink);
        Ok(a.clone())
    }
    fn open_blob(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        match self.blobs.get(&blob.locator) {
            Some(b) if blob.locator.starts_with("bad") => {
                // Hands out its bytes, then reports damage, like a bad CRC.
                let bytes = b.clone();
                Ok(Box::new(io::Cursor::new(bytes).chain(Failing)))
            }
            Some(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "missing blob")),
        }
    }
    fn blob_len(&self, blob: &BlobRef, _claimed: Option<u64>) -> io::Result<u64> {
        self.blobs
            .get(&blob.locator)
            .map(|b| b.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "missing blob"))
    }
}

struct Failing;
impl Read for Failing {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt gzip: crc mismatch",
        ))
    }
}

const H: i64 = 3_600_000;
/// 2013-07-12T00:00:00Z
const DAY0: i64 = 1_373_587_200_000;

fn folder(_id: i64, name: &str, parent: i64, start: i64) -> ItemState {
    ItemState {
        start,
        kind: Some(ItemKind::Folder),
        folder_id: Some(parent),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn message(folder: i64, subject: &str, blob: &str, start: i64, flags: &[&str]) -> ItemState {
    ItemState {
        start,
        kind: Some(ItemKind::Message),
        folder_id: Some(folder),
        subject: Some(subject.into()),
        blob: Some(BlobRef {
            locator: blob.into(),
            digest: Some(blob.into()),
        }),
        date: Some(start - 1000),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn item(id: i64, states: Vec<ItemState>) -> Item {
    Item {
        id,
        label: id.to_string(),
        history_key: id.to_string(),
        states,
        error: None,
    }
}

fn sample() -> MemReader {
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let mut deleted = message(
        3,
        "Service mailboxd started on test.example.com",
        "b339",
        DAY0 + 15 * H + 300_000,
        &[],
    );
    deleted.deleted = true;
    let items = vec![
        item(1, vec![folder(1, "USER_ROOT", 11, 0)]),
        item(2, vec![folder(2, "Inbox", 1, 0)]),
        item(3, vec![folder(3, "Trash", 1, 0)]),
        item(8, vec![folder(8, "Tags", 11, 0)]),
        item(
            257,
            vec![
                folder(257, "Projects", 2, DAY0),
                folder(257, "Projets clients", 2, DAY0 + 3 * 24 * H),
            ],
        ),
        item(258, vec![folder(258, "a/b", 1, DAY0)]),
        item(259, vec![folder(259, "a_b", 1, DAY0)]),
        item(
            339,
            vec![
                message(
                    2,
                    "Service mailboxd started on test.example.com",
                    "b339",
                    DAY0 + 14 * H,
                    &[],
                ),
                message(
                    3,
                    "Service mailboxd started on test.example.com",
                    "b339",
                    DAY0 + 15 * H,
                    &["\\Seen"],
                ),
                deleted,
            ],
        ),
        item(
            400,
            vec![message(
                257,
                "Big one",
                "big",
                DAY0 + 24 * H,
                &["\\Seen", "\\Flagged"],
            )],
        ),
        item(
            401,
            vec![message(777, "Lost folder", "b401", DAY0 + 24 * H, &[])],
        ),
        item(402, vec![message(8, "In tags", "b401", DAY0 + 24 * H, &[])]),
        item(
            403,
            vec![message(2, "Damaged", "bad403", DAY0 + 24 * H, &[])],
        ),
        Item {
            id: 500,
            label: "500".into(),
            history_key: "500".into(),
            states: vec![],
            error: Some("bad JSON".into()),
        },
    ];
    let account = Account {
        key: "uuid-1".into(),
        name: "john@example.com".into(),
        status: "active".into(),
        ..Default::default()
    };
    let blobs = HashMap::from([
        ("b339".to_string(), b"Subject: x\r\n\r\nhello\r\n".to_vec()),
        ("b401".to_string(), b"lost\r\n".to_vec()),
        ("bad403".to_string(), b"partial".to_vec()),
        ("big".to_string(), big),
    ]);
    MemReader {
        accounts: vec![(account, items)],
        blobs,
    }
}

fn mailfs(reader: MemReader) -> (tempfile::TempDir, MailFs) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(&dir.path().join("c.sqlite")).unwrap());
    refresh(&catalog, &reader, false).unwrap();
    let fs = MailFs::new(
        catalog,
        Arc::new(reader),
        FsOptions {
            cache_bytes: 1 << 20,
        },
    )
    .unwrap();
    (dir, fs)
}

fn names(fs: &MailFs, path: &str) -> Vec<String> {
    let ino = resolve(fs, path).unwrap();
    fs.readdir(ino)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

fn resolve(fs: &MailFs, path: &str) -> FsResult<u64> {
    let mut ino = MailFs::ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(ino, part)?.ino;
    }
    Ok(ino)
}

fn read_all(fs: &MailFs, path: &str) -> FsResult<Vec<u8>> {
    let ino = resolve(fs, path)?;
    let size = fs.getattr(ino)?.size;
    let fh = fs.open(ino, false)?;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let chunk = fs.read(fh, out.len() as u64, 100_000)?;
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk);
    }
    fs.release(fh);
    Ok(out)
}

#[test]
fn root_and_account_layout() {
    let (_d, fs) = mailfs(sample());
    assert_eq!(names(&fs, ""), vec!["john@example.com", ".control"]);
    assert_eq!(
        names(&fs, "john@example.com"),
        vec![
            "latest",
            "1970-01-01",
            "2013-07-12",
            "2013-07-13",
            "2013-07-15",
            "deleted",
            "history"
        ]
    );
}

#[test]
fn item_moves_through_time() {
    let (_d, fs) = mailfs(sample());
    let at = |t: &str, dir: &str| names(&fs, &format!("john@example.com/@{t}/{dir}"));
    assert!(at("2013-07-12T14:30:00", "Inbox")
        .contains(&"339-Service_mailboxd_started.eml".to_string()));
    assert!(at("2013-07-12T15:03:00", "Trash")
        .contains(&"339-Service_mailboxd_started.eml".to_string()));
    assert!(!at("2013-07-12T15:03:00", "Inbox")
        .iter()
        .any(|n| n.starts_with("339")));
    // Deleted at 15:05:00: a state ending exactly then is not shown.
    assert!(at("2013-07-12T15:05:00", "Trash").is_empty());
    assert!(at("2013-07-12T15:04:59.999Z", "Trash").len() == 1);
    // Before it arrived.
    assert_eq!(at("20130712.135959", "Inbox"), vec!["Projects"]);
    // The alias resolves but is not listed.
    assert!(resolve(&fs, "john@example.com/@2013-07-12T14:30:00/Inbox/339.eml").is_ok());
    assert_eq!(
        names(&fs, "john@example.com/deleted/Trash"),
        vec!["339-Service_mailboxd_started.eml"]
    );
}

#[test]
fn folder_rename_and_unknown_and_hidden() {
    let (_d, fs) = mailfs(sample());
    assert_eq!(
        names(&fs, "john@example.com/2013-07-13/Inbox"),
        vec!["Projects", "403-Damaged.eml"]
    );
    assert_eq!(
        names(&fs, "john@example.com/2013-07-15/Inbox"),
        vec!["Projets clients", "403-Damaged.eml"]
    );
    let root = names(&fs, "john@example.com/latest");
    assert_eq!(
        root,
        vec!["Inbox", "Trash", "a_b", "a_b~259", "unknown_777"]
    );
    assert_eq!(
        names(&fs, "john@example.com/latest/unknown_777"),
        vec!["401-Lost_folder.eml"]
    );
}

#[test]
fn bytes_sizes_and_offsets() {
    let (_d, fs) = mailfs(sample());
    let reader = sample();
    let big = &reader.blobs["big"];
    let data = read_all(
        &fs,
        "john@example.com/latest/Inbox/Projets clients/400-Big_one.eml",
    )
    .unwrap();
    assert_eq!(&data, big);
    let ino = resolve(&fs, "john@example.com/latest/Inbox/Projets clients/400.eml").unwrap();
    let fh = fs.open(ino, false).unwrap();
    for off in [
        0u64, 1, 262_143, 262_144, 500_000, 699_999, 700_000, 800_000,
    ] {
        let got = fs.read(fh, off, 4096).unwrap();
        let lo = (off as usize).min(big.len());
        let hi = (lo + 4096).min(big.len());
        assert_eq!(got, &big[lo..hi], "offset {off}");
    }
    assert!(fs.cache_bytes() <= 1 << 20);
    assert!(matches!(fs.open(ino, true), Err(FsError::ReadOnly)));
}

#[test]
fn broken_items_fail_with_eio_and_say_why() {
    let (_d, fs) = mailfs(sample());
    let path = "john@example.com/latest/Inbox/403-Damaged.eml";
    let err = read_all(&fs, path).unwrap_err();
    assert_eq!(err.to_errno(), libc::EIO);
    let ino = resolve(&fs, path).unwrap();
    let why = fs.getxattr(ino, "user.mailbackfs.error").unwrap();
    assert!(String::from_utf8(why).unwrap().contains("crc"));
    // The healthy item next door still reads.
    assert!(read_all(&fs, "john@example.com/latest/unknown_777/401.eml").is_ok());
    // Unparseable metadata: listed in history only, EIO on read.
    assert_eq!(names(&fs, "john@example.com/history/500"), vec!["error"]);
    assert_eq!(
        read_all(&fs, "john@example.com/history/500/error")
            .unwrap_err()
            .to_errno(),
        libc::EIO
    );
}

#[test]
fn history_and_xattrs() {
    let (_d, fs) = mailfs(sample());
    assert_eq!(
        names(&fs, "john@example.com/history/339"),
        vec![
            "20130712T140000.000Z-0.eml",
            "20130712T150000.000Z-0.eml",
            "20130712T150500.000Z-0.eml"
        ]
    );
    let ino = resolve(&fs, "john@example.com/latest/Inbox/Projets clients/400.eml").unwrap();
    let x: HashMap<String, String> = fs
        .xattrs(ino)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(x["user.mailbackfs.flags"], "\\Seen \\Flagged");
    assert_eq!(x["user.mailbackfs.folder_id"], "257");
    assert_eq!(x["user.mailbackfs.state_start"], "2013-07-13T00:00:00.000Z");
    let del = resolve(&fs, "john@example.com/deleted/Trash/339.eml").unwrap();
    assert_eq!(
        String::from_utf8(fs.getxattr(del, "user.mailbackfs.deleted_at").unwrap()).unwrap(),
        "2013-07-12T15:05:00.000Z"
    );
}

#[test]
fn salvaged_files_resolve_and_are_listed_once_the_damage_is_known() {
    let (_d, fs) = mailfs(sample());
    let inbox = "john@example.com/latest/Inbox";
    let broken = format!("{inbox}/403-Damaged.eml.salvaged");
    // Resolvable from the start, listed only once the blob is known broken.
    assert!(!names(&fs, inbox).iter().any(|n| n.ends_with(".salvaged")));
    assert_eq!(read_all(&fs, &broken).unwrap(), b"partial");
    assert!(read_all(&fs, &format!("{inbox}/403.eml")).is_err());
    let listed: Vec<String> = names(&fs, inbox)
        .into_iter()
        .filter(|n| n.ends_with(".salvaged"))
        .collect();
    assert_eq!(listed, vec!["403-Damaged.eml.salvaged"]);
    let ino = resolve(&fs, &broken).unwrap();
    let why = String::from_utf8(fs.getxattr(ino, "user.mailbackfs.error").unwrap()).unwrap();
    assert!(why.starts_with("corrupt gzip"), "{why}");
    // Offsets and a healthy blob's salvage (all of it).
    let fh = fs.open(ino, false).unwrap();
    assert_eq!(fs.read(fh, 3, 2).unwrap(), b"ti");
    assert_eq!(fs.read(fh, 0, 3).unwrap(), b"par");
    fs.release(fh);
    let big = read_all(
        &fs,
        "john@example.com/latest/Inbox/Projets clients/400.eml.salvaged",
    );
    assert_eq!(big.unwrap().len(), 700_000);
    // Missing blobs: nothing to salvage.
    let (_d2, fs2) = mailfs({
        let mut r = sample();
        r.blobs.remove("b401");
        r
    });
    let p = "john@example.com/latest/unknown_777/401.eml";
    let ino = resolve(&fs2, p).unwrap();
    fs2.getattr(ino).unwrap();
    let why = String::from_utf8(fs2.getxattr(ino, "user.mailbackfs.error").unwrap()).unwrap();
    assert!(
        why.starts_with("missing blob"),
        "known before a read: {why}"
    );
    assert_eq!(read_all(&fs2, &format!("{p}.salvaged")).unwrap(), b"");
}

#[test]
fn inodes_are_freed_when_the_kernel_forgets_them() {
    let (_d, fs) = mailfs(sample());
    let before = fs.inode_count();
    let dir = resolve(&fs, "john@example.com/latest/Inbox").unwrap();
    // Listing a directory gives out no inode numbers.
    let listing = fs.readdir(dir).unwrap();
    assert_eq!(
        fs.inode_count(),
        before + 3,
        "account, latest and Inbox only"
    );
    let mut held = Vec::new();
    for e in &listing.entries {
        let a = fs.entry_attr(e).unwrap();
        fs.remember(a.ino);
        held.push(a.ino);
    }
    assert_eq!(fs.inode_count(), before + 3 + held.len());
    for ino in &held {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.inode_count(), before + 3);
    // A forgotten entry resolves again by name.
    let name = &listing.entries[0].name;
    assert!(fs.lookup(dir, name).is_ok());
    // The root is never freed.
    fs.forget(MailFs::ROOT_INO, 100);
    assert!(fs.getattr(MailFs::ROOT_INO).is_ok());
}
