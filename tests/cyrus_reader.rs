//! The Cyrus reader against the real corpus in `shared/corpora/cyrus/main`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use mailbackfs::format::cyrus::{looks_like, CyrusReader};
use mailbackfs::format::BackupReader;
use mailbackfs::model::{Item, ItemKind, ItemState, VIEW_ROOT};
use serde_json::Value;
use sha1::{Digest, Sha1};
use support::{copy_cyrus_backup as copy_backup, cyrus_corpus as corpus};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dora"];

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn read_items(r: &dyn BackupReader, user: &str) -> (Vec<Item>, mailbackfs::model::Account) {
    let mut items = Vec::new();
    let acct = r.read_account(user, &mut |i| items.push(i)).unwrap();
    (items, acct)
}

/// The state of `item` valid at `t`: the last one starting at or before it.
fn state_at(item: &Item, t: i64) -> Option<&ItemState> {
    item.states.iter().rfind(|s| s.start <= t)
}

/// The view at `t`: live folders by id and live messages.
struct View<'a> {
    folders: HashMap<i64, &'a ItemState>,
    messages: Vec<(&'a Item, &'a ItemState)>,
}

fn view_at(items: &[Item], t: i64) -> View<'_> {
    let mut v = View {
        folders: HashMap::new(),
        messages: Vec::new(),
    };
    for it in items {
        let Some(s) = state_at(it, t) else { continue };
        if s.deleted {
            continue;
        }
        match s.kind {
            Some(ItemKind::Folder) => {
                v.folders.insert(it.id, s);
            }
            Some(ItemKind::Message) => v.messages.push((it, s)),
            _ => {}
        }
    }
    v
}

impl View<'_> {
    /// IMAP-style path (`INBOX.Archive.2024`) of a live folder.
    fn path(&self, mut id: i64) -> String {
        let mut parts = Vec::new();
        while id != VIEW_ROOT {
            let s = self
                .folders
                .get(&id)
                .unwrap_or_else(|| panic!("folder {id} not live"));
            parts.push(s.name.clone().unwrap());
            id = s.folder_id.unwrap();
            assert!(parts.len() < 100, "folder loop");
        }
        parts.reverse();
        parts.join(".")
    }
}

type MsgKey = (String, u64, String, Vec<String>, i64, u64);

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn hash_tree(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            hash_tree(&p, out);
        } else {
            let b = std::fs::read(&p).unwrap();
            out.insert(p, format!("{:x}", Sha1::digest(&b)));
        }
    }
}

fn read_blob(r: &dyn BackupReader, s: &ItemState) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.open_blob(s.blob.as_ref().unwrap())?.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn detects_layouts() {
    let c = corpus();
    for root in [c.clone(), c.join("backup"), c.join("backup/partition")] {
        assert!(looks_like(&root), "{}", root.display());
        let r = CyrusReader::open(&root).unwrap();
        let keys: Vec<String> = r
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.key)
            .collect();
        assert_eq!(keys, USERS);
    }
    assert!(!looks_like(&c.join("oracle")));
}

#[test]
fn rounds_match_truth_and_corpus_is_unchanged() {
    let c = corpus();
    let mut before = BTreeMap::new();
    hash_tree(&c.join("backup"), &mut before);

    let r = CyrusReader::open(&c.join("backup")).unwrap();
    let rounds = json(&c.join("oracle/rounds.json"));
    for user in USERS {
        let truth = json(&c.join(format!("oracle/{user}/truth.json")));
        let (items, acct) = read_items(&r, user);
        assert_eq!(acct.name, user);
        assert!(acct.problems.is_empty(), "{user}: {:?}", acct.problems);
        for w in items.windows(2) {
            assert!(w[0].id < w[1].id);
        }
        for round in truth["rounds"].as_array().unwrap() {
            let n = round["round"].as_i64().unwrap();
            let t = rounds[n.to_string()]["finished"].as_i64().unwrap() * 1000;
            let view = view_at(&items, t);
            let mut want_folders = BTreeSet::new();
            let mut want_msgs = BTreeSet::<MsgKey>::new();
            for mb in round["mailboxes"].as_array().unwrap() {
                let path = mb["imap_name_utf8"].as_str().unwrap().to_string();
                want_folders.insert(path.clone());
                for m in mb["messages"].as_array().unwrap() {
                    let flags = m["flags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.as_str().unwrap().to_string())
                        .collect();
                    want_msgs.insert((
                        path.clone(),
                        m["uid"].as_u64().unwrap(),
                        m["guid"].as_str().unwrap().to_string(),
                        sorted(flags),
                        m["internaldate"].as_i64().unwrap(),
                        m["size"].as_u64().unwrap(),
                    ));
                }
            }
            let got_folders: BTreeSet<String> =
                view.folders.keys().map(|id| view.path(*id)).collect();
            assert_eq!(got_folders, want_folders, "{user} round {n} folders");
            let got_msgs: BTreeSet<MsgKey> = view
                .messages
                .iter()
                .map(|(it, s)| {
                    (
                        view.path(s.folder_id.unwrap()),
                        it.label.parse().unwrap(),
                        s.blob.as_ref().unwrap().digest.clone().unwrap(),
                        sorted(s.flags.clone()),
                        s.date.unwrap() / 1000,
                        s.size.unwrap(),
                    )
                })
                .collect();
            assert_eq!(got_msgs, want_msgs, "{user} round {n} messages");
            for (it, s) in &view.messages {
                assert_eq!(
                    it.history_key,
                    s.blob.as_ref().unwrap().digest.clone().unwrap()
                );
                assert!(!s.flags.iter().any(|f| f == "\\Expunged"));
            }
        }

        // Latest state: every live message reads byte-equal to the oracle.
        let view = view_at(&items, i64::MAX);
        assert!(!view.messages.is_empty());
        for (_, s) in &view.messages {
            let guid = s.blob.as_ref().unwrap().digest.clone().unwrap();
            let want = std::fs::read(c.join(format!("oracle/{user}/messages/{guid}.eml"))).unwrap();
            let got = read_blob(&r, s).unwrap();
            assert!(got == want, "{user} {guid} differs");
            let len = r.blob_len(s.blob.as_ref().unwrap(), s.size).unwrap();
            assert_eq!(len, want.len() as u64);
            assert!(
                s.subject.as_deref().is_some_and(|x| !x.is_empty()),
                "{guid} subject"
            );
        }

        // Stray messages (another user's) are no items.
        let strays = json(&c.join(format!("oracle/{user}/stray_messages.json")));
        let stray_text = strays.to_string();
        for it in &items {
            if it.states[0].kind == Some(ItemKind::Message) && stray_text.contains(&it.history_key)
            {
                panic!("{user}: stray message {} became an item", it.history_key);
            }
        }
    }

    let mut after = BTreeMap::new();
    hash_tree(&c.join("backup"), &mut after);
    assert_eq!(before, after, "the corpus changed");
}

#[test]
fn expunged_and_deleted_get_deleted_states() {
    let c = corpus();
    let r = CyrusReader::open(&c).unwrap();
    let rounds = json(&c.join("oracle/rounds.json"));
    let mut seen = 0;
    for user in USERS {
        let truth = json(&c.join(format!("oracle/{user}/truth.json")));
        let (items, _) = read_items(&r, user);
        let folder_of: HashMap<String, i64> = items
            .iter()
            .filter(|i| i.states[0].kind == Some(ItemKind::Folder))
            .map(|i| (i.history_key.clone(), i.id))
            .collect();
        for rec in truth["records"].as_array().unwrap() {
            let Some(gone) = rec["gone_in_round"].as_i64() else {
                continue;
            };
            let fid = folder_of[rec["mailbox_uniqueid"].as_str().unwrap()];
            let uid = rec["uid"].as_u64().unwrap().to_string();
            let it = items
                .iter()
                .find(|i| {
                    i.label == uid
                        && i.states.iter().any(|s| s.folder_id == Some(fid))
                        && i.states[0].kind == Some(ItemKind::Message)
                })
                .unwrap_or_else(|| panic!("{user}: record {rec} has no item"));
            let last = it.states.last().unwrap();
            assert!(last.deleted, "{user} {uid}: last state not deleted");
            assert_eq!(last.folder_id, Some(fid));
            let rd = &rounds[gone.to_string()];
            let (a, b) = (
                rd["started"].as_i64().unwrap(),
                rd["finished"].as_i64().unwrap(),
            );
            assert!(
                (a * 1000..=b * 1000).contains(&last.start),
                "{user} {uid}: deleted at {}",
                last.start
            );
            seen += 1;
        }
        // A deleted folder's deleted state names its last parent.
        for it in items
            .iter()
            .filter(|i| i.states[0].kind == Some(ItemKind::Folder))
        {
            let last = it.states.last().unwrap();
            if last.deleted {
                assert!(last.folder_id.is_some());
                assert!(it.states.len() >= 2);
            }
        }
    }
    assert!(seen > 10, "only {seen} gone records");
}

fn alice_file(root: &Path) -> PathBuf {
    let d = root.join("backup/partition/a");
    std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap()
}

/// Chunk id of a blob locator (`<id>@...`); 0 when the body was never located.
fn chunk_of(s: &ItemState) -> i64 {
    let loc = &s.blob.as_ref().unwrap().locator;
    loc.split('@').next().unwrap().parse().unwrap_or(0)
}

/// Every live message of alice at the latest state: those in `bad_chunk`
/// whose bytes are past the damage fail with InvalidData (those wholly
/// before it read and are proven by their SHA-1), the others read
/// byte-equal to the oracle. Returns (read, failed).
fn check_damaged(root: &Path, bad_chunk: i64) -> (usize, usize) {
    let cached = check_damaged_with(root, bad_chunk, u64::MAX);
    let streamed = check_damaged_with(root, bad_chunk, 0);
    assert_eq!(cached, streamed, "cached and streamed reads disagree");
    cached
}

fn check_damaged_with(root: &Path, bad_chunk: i64, small_chunk: u64) -> (usize, usize) {
    let r = CyrusReader::open(root)
        .unwrap()
        .with_small_chunk(small_chunk);
    let (items, acct) = read_items(&r, "alice");
    assert!(!acct.problems.is_empty());
    let view = view_at(&items, i64::MAX);
    let (mut good, mut bad) = (0, 0);
    for (_, s) in &view.messages {
        let guid = s.blob.as_ref().unwrap().digest.clone().unwrap();
        let want =
            std::fs::read(corpus().join(format!("oracle/alice/messages/{guid}.eml"))).unwrap();
        match read_blob(&r, s) {
            Ok(got) => {
                assert!(got == want, "{guid} differs");
                good += 1;
            }
            Err(e) => {
                assert!(
                    chunk_of(s) == bad_chunk || chunk_of(s) == 0,
                    "{guid} fails outside the damaged chunk: {e}"
                );
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{guid}: {e}");
                bad += 1;
            }
        }
    }
    (good, bad)
}

#[test]
fn corrupt_chunk_spares_the_others() {
    let dir = copy_backup();
    let f = alice_file(dir.path());
    let mut b = std::fs::read(&f).unwrap();
    // Chunk 1 spans 0..419306; damage its middle.
    for x in &mut b[200_000..200_064] {
        *x ^= 0x5a;
    }
    std::fs::write(&f, &b).unwrap();
    let (good, bad) = check_damaged(dir.path(), 1);
    assert!(good > 0 && bad > 0, "good {good} bad {bad}");

    // Without the index, the next member is found by its header.
    std::fs::remove_file(format!("{}.index", f.display())).unwrap();
    let (good2, bad2) = check_damaged(dir.path(), 1);
    assert!(good2 > 0 && bad2 > 0, "good {good2} bad {bad2}");
}

#[test]
fn truncated_data_file_still_reads() {
    let dir = copy_backup();
    let f = alice_file(dir.path());
    let b = std::fs::read(&f).unwrap();
    // Chunk 3 spans 432156..438931: cut it in the middle.
    std::fs::write(&f, &b[..436_000]).unwrap();
    let (good, bad) = check_damaged(dir.path(), 3);
    assert!(good > 10, "good {good} bad {bad}");
}

#[test]
fn backups_db_missing_falls_back_to_scan() {
    let dir = copy_backup();
    std::fs::write(dir.path().join("backup/config/backups.db"), b"garbage").unwrap();
    let r = CyrusReader::open(&dir.path().join("backup")).unwrap();
    let keys: Vec<String> = r
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert_eq!(keys, USERS);
    let (items, _) = read_items(&r, "dora");
    assert!(!items.is_empty());
}

/// Rough throughput of open_blob over every message state of the corpus
/// (run with `--ignored --nocapture`); compare with `gzip -dc` of the data files.
#[test]
#[ignore]
fn throughput() {
    let c = corpus();
    let mut blobs = Vec::new();
    let r = CyrusReader::open(&c).unwrap();
    for user in USERS {
        let (items, _) = read_items(&r, user);
        for it in items {
            let mut seen = BTreeSet::new();
            for s in it.states {
                if let Some(b) = s.blob {
                    if seen.insert(b.locator.clone()) {
                        blobs.push(b);
                    }
                }
            }
        }
    }
    for (label, fresh) in [
        ("cold reader per blob", true),
        ("shared reader (cached)", false),
    ] {
        let t = std::time::Instant::now();
        let mut bytes = 0u64;
        let rounds = 5;
        for _ in 0..rounds {
            let shared = CyrusReader::open(&c).unwrap();
            for b in &blobs {
                let own;
                let rr: &CyrusReader = if fresh {
                    own = CyrusReader::open(&c).unwrap();
                    &own
                } else {
                    &shared
                };
                let mut v = Vec::new();
                rr.open_blob(b).unwrap().read_to_end(&mut v).unwrap();
                bytes += v.len() as u64;
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{label}: {} blobs x{rounds}, {:.1} MB in {:.3}s = {:.1} MB/s",
            blobs.len(),
            bytes as f64 / 1e6,
            s,
            bytes as f64 / 1e6 / s
        );
    }
}

/// The independent `heldout` corpus: every account reads without problems and
/// every live message of the latest state matches the oracle bytes.
#[test]
fn heldout_corpus_reads() {
    let h = corpus().join("../heldout");
    if !h.is_dir() {
        return;
    }
    let r = CyrusReader::open(&h).unwrap();
    let accounts = r.list_accounts().unwrap();
    assert!(!accounts.is_empty());
    for a in accounts {
        let (items, acct) = read_items(&r, &a.key);
        assert!(acct.problems.is_empty(), "{}: {:?}", a.key, acct.problems);
        let view = view_at(&items, i64::MAX);
        for (_, s) in &view.messages {
            let guid = s.blob.as_ref().unwrap().digest.clone().unwrap();
            let want =
                std::fs::read(h.join(format!("oracle/{}/messages/{guid}.eml", a.key))).unwrap();
            assert!(read_blob(&r, s).unwrap() == want, "{} {guid}", a.key);
        }
    }
}

/// Streamed reads (no chunk cached whole): every message state of every
/// user reads equal to the oracle, also when read in small pieces.
#[test]
fn streamed_blobs_match_oracle() {
    let c = corpus();
    let r = CyrusReader::open(&c).unwrap().with_small_chunk(0);
    let mut n = 0;
    for user in USERS {
        let (items, _) = read_items(&r, user);
        let mut seen = BTreeSet::new();
        for it in &items {
            for s in &it.states {
                let Some(b) = &s.blob else { continue };
                if !seen.insert(b.locator.clone()) {
                    continue;
                }
                let guid = b.digest.clone().unwrap();
                let want =
                    std::fs::read(c.join(format!("oracle/{user}/messages/{guid}.eml"))).unwrap();
                let mut got = Vec::new();
                let mut rd = r.open_blob(b).unwrap();
                let mut buf = [0u8; 4099];
                loop {
                    let k = rd.read(&mut buf).unwrap();
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                assert!(got == want, "{user} {guid}");
                n += 1;
            }
        }
    }
    assert!(n > 60, "{n}");
}

/// A line-offset locator (what the index alone knows) is resolved by
/// streaming through the line's literals, for every message of the index.
#[test]
fn streamed_line_locators_resolve() {
    let c = corpus();
    let r = CyrusReader::open(&c).unwrap().with_small_chunk(0);
    for user in USERS {
        let csv =
            std::fs::read_to_string(c.join(format!("oracle/{user}/index/message.csv"))).unwrap();
        let chunks =
            std::fs::read_to_string(c.join(format!("oracle/{user}/index/chunk.csv"))).unwrap();
        let offs: HashMap<String, String> = chunks
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[0].parse::<i64>().ok()?;
                Some((f[0].to_string(), f[3].to_string()))
            })
            .collect();
        let mut n = 0;
        for l in csv.lines() {
            let f: Vec<&str> = l.split(',').collect();
            let Some(fo) = offs.get(f[3]) else { continue };
            let (guid, line, size) = (f[1], f[4], f[5]);
            let blob = mailbackfs::model::BlobRef {
                locator: format!("{}@{fo}:L{line}:{size}:{guid}:{user}", f[3]),
                digest: Some(guid.to_string()),
            };
            let mut got = Vec::new();
            r.open_blob(&blob).unwrap().read_to_end(&mut got).unwrap();
            let want = std::fs::read(c.join(format!("oracle/{user}/messages/{guid}.eml")));
            if let Ok(want) = want {
                assert!(got == want, "{user} {guid}");
            }
            n += 1;
        }
        assert!(n > 0, "{user}");
    }
}
