//! A hostile Zextras backup: blobs, metadata files and account directories
//! that are symbolic links (to secrets, to `/proc/self/environ`, to
//! `/dev/zero`), FIFOs and devices. Nothing outside the backup may be served,
//! nothing may hang, and every such file is a broken item or a reported
//! problem (issue 10, item 1).
//!
//! Every command through the mount runs bounded ([`support::run_bounded`]):
//! a hang fails the test instead of blocking it.

mod support;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use mailbackfs::format::zextras::blob_digest;
use mailbackfs::synth::{self, SAMPLE_ANNA, SAMPLE_JOHN, SAMPLE_OLD};
use support::{cli_bounded, run_bounded, Mount};

const T0: i64 = 1_373_900_000_000;
/// Hang guard for one command: far above what any of them needs.
const LIMIT: Duration = Duration::from_secs(120);
const SECRET: &[u8] =
    b"From: x@example.com\r\nSubject: top secret\r\n\r\nthe-secret-outside-the-backup\r\n";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn meta_dir(backup: &Path, account: &str, id: i64) -> PathBuf {
    backup
        .join("accounts")
        .join(account)
        .join("items")
        .join(format!("{:02}", id % 100))
}

fn state_json(id: i64, digest: &str, size: usize) -> String {
    format!(
        r#"[{{"id": {id}, "type": "message", "start_date": {T0}, "folder_id": 2, "digest": "{digest}",
            "size": {size}, "date": {T0}, "flags": 0, "tags": [], "subject": "Item {id}"}}]"#
    )
}

fn write_meta(backup: &Path, id: i64, digest: &str, size: usize) {
    let dir = meta_dir(backup, SAMPLE_JOHN, id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(id.to_string()), state_json(id, digest, size)).unwrap();
}

/// Where the blob of `digest` is looked for first.
fn blob_path(backup: &Path, digest: &str) -> PathBuf {
    backup.join("items").join(&digest[..2]).join(digest)
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

fn mknod_zero(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let dev = libc::makedev(1, 5);
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, dev) },
        0
    );
}

/// Hostile items planted in john's Inbox, by id.
struct Hostile {
    _dir: tempfile::TempDir,
    backup: PathBuf,
    index: PathBuf,
    shadow: Vec<u8>,
}

const SECRET_LINK: i64 = 9101; // blob -> a gzip of a secret outside, right digest
const SHADOW: i64 = 9102; // blob -> /etc/shadow, right digest
const ENVIRON: i64 = 9103; // blob -> /proc/self/environ
const ZERO_LINK: i64 = 9104; // blob -> /dev/zero
const ZERO_NODE: i64 = 9105; // blob is a character device (1,5)
const FIFO: i64 = 9106; // blob is a FIFO
const DIR_LINK: i64 = 9107; // items/<xx> is a link to a directory outside
const META_LINK: i64 = 9108; // metadata file -> a metadata file outside
const META_FIFO: i64 = 9109; // metadata file is a FIFO
const BLOB_ITEMS: [i64; 7] = [
    SECRET_LINK,
    SHADOW,
    ENVIRON,
    ZERO_LINK,
    ZERO_NODE,
    FIFO,
    DIR_LINK,
];

fn hostile() -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    synth::write_sample(&backup).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    let secret_gz = outside.join("secret.gz");
    std::fs::write(&secret_gz, gzip(SECRET)).unwrap();
    let d = blob_digest(SECRET);
    write_meta(&backup, SECRET_LINK, &d, SECRET.len());
    std::fs::create_dir_all(blob_path(&backup, &d).parent().unwrap()).unwrap();
    symlink(&secret_gz, blob_path(&backup, &d)).unwrap();

    let shadow = std::fs::read("/etc/shadow").expect("/etc/shadow (tests run as root)");
    let links: [(i64, &[u8], &str); 3] = [
        (SHADOW, &shadow, "/etc/shadow"),
        (ENVIRON, b"environ", "/proc/self/environ"),
        (ZERO_LINK, b"zero", "/dev/zero"),
    ];
    for (id, content, target) in links {
        let d = blob_digest(content);
        write_meta(&backup, id, &d, content.len());
        std::fs::create_dir_all(blob_path(&backup, &d).parent().unwrap()).unwrap();
        symlink(target, blob_path(&backup, &d)).unwrap();
    }
    for (id, make) in [(ZERO_NODE, mknod_zero as fn(&Path)), (FIFO, mkfifo)] {
        let d = blob_digest(format!("node {id}").as_bytes());
        write_meta(&backup, id, &d, 300);
        std::fs::create_dir_all(blob_path(&backup, &d).parent().unwrap()).unwrap();
        make(&blob_path(&backup, &d));
    }

    // items/<xx> a link to a directory outside holding the blob: a digest
    // whose first directory does not exist yet.
    let (content, d) = (0..)
        .map(|n| {
            let c = format!("Subject: linked dir {n}\r\n\r\nbody\r\n").into_bytes();
            let d = blob_digest(&c);
            (c, d)
        })
        .find(|(_, d)| !backup.join("items").join(&d[..2]).exists())
        .unwrap();
    let far = outside.join("far");
    std::fs::create_dir_all(&far).unwrap();
    std::fs::write(far.join(&d), gzip(&content)).unwrap();
    symlink(&far, backup.join("items").join(&d[..2])).unwrap();
    write_meta(&backup, DIR_LINK, &d, content.len());

    // A metadata file that is a link to one outside (naming a healthy
    // blob), and one that is a FIFO.
    let healthy = b"Subject: healthy\r\n\r\nbody\r\n";
    let d = blob_digest(healthy);
    std::fs::create_dir_all(blob_path(&backup, &d).parent().unwrap()).unwrap();
    std::fs::write(blob_path(&backup, &d), gzip(healthy)).unwrap();
    let far_meta = outside.join("meta");
    std::fs::write(&far_meta, state_json(META_LINK, &d, healthy.len())).unwrap();
    let md = meta_dir(&backup, SAMPLE_JOHN, META_LINK);
    std::fs::create_dir_all(&md).unwrap();
    symlink(&far_meta, md.join(META_LINK.to_string())).unwrap();
    let md = meta_dir(&backup, SAMPLE_JOHN, META_FIFO);
    std::fs::create_dir_all(&md).unwrap();
    mkfifo(&md.join(META_FIFO.to_string()));

    // The old account's account_info is a FIFO.
    let info = backup
        .join("accounts")
        .join(SAMPLE_OLD)
        .join("account_info");
    std::fs::remove_file(&info).unwrap();
    mkfifo(&info);

    // Anna's account directory is a link to a directory outside.
    let acct = backup.join("accounts").join(SAMPLE_ANNA);
    let moved = outside.join("anna");
    std::fs::rename(&acct, &moved).unwrap();
    symlink(&moved, &acct).unwrap();

    Hostile {
        index: dir.path().join("index"),
        backup,
        shadow,
        _dir: dir,
    }
}

fn bounded(cmd: &str, args: &[&OsArg<'_>]) -> std::process::Output {
    let mut c = Command::new(cmd);
    for a in args {
        c.arg(a.as_ref());
    }
    run_bounded(&mut c, LIMIT)
}

type OsArg<'a> = dyn AsRef<std::ffi::OsStr> + 'a;

fn error_xattr(p: &Path) -> Option<String> {
    let out = bounded(
        "getfattr",
        &[&"--only-values", &"-n", &"user.mailbackfs.error", &p],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every name of `dir` starting with `<id>-` or `<id>.`.
fn named(dir: &Path, id: i64) -> Vec<PathBuf> {
    let out = bounded("ls", &[&"-1a", &dir]);
    assert!(out.status.success(), "ls {}", dir.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&format!("{id}-")) || n.starts_with(&format!("{id}.")))
        .map(|n| dir.join(n))
        .collect()
}

#[test]
fn hostile_files_are_neither_followed_nor_hung_on_through_the_mount() {
    let h = hostile();
    let m = Mount::start(&h.backup, &h.index, &[]);

    // Walking and listing the whole mount ends.
    let out = bounded("find", &[&m.path]);
    assert!(
        out.status.success(),
        "find: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bounded("ls", &[&"-lR", &m.path]);
    assert!(out.status.success(), "ls -lR");

    let inbox = m.join("john@example.com/latest/Inbox");
    let history = m.join("john@example.com/history");
    for id in BLOB_ITEMS {
        let files = named(&inbox, id);
        let eml = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "eml"))
            .unwrap_or_else(|| panic!("{id} listed in Inbox: {files:?}"));
        let err = error_xattr(eml).unwrap_or_else(|| panic!("{id}: no error xattr"));
        assert!(
            err.starts_with("unreadable blob: not a regular file"),
            "{id}: {err}"
        );
        let cat = bounded("cat", &[eml]);
        assert!(!cat.status.success(), "{id}: reading must fail");
        let mut salvaged = eml.clone().into_os_string();
        salvaged.push(".salvaged");
        let s = bounded("cat", &[&salvaged]);
        for got in [&cat.stdout, &s.stdout] {
            assert!(!contains(got, b"the-secret-outside"), "{id}: secret served");
            assert!(!contains(got, &h.shadow), "{id}: /etc/shadow served");
            assert!(!contains(got, b"PATH="), "{id}: the environment served");
            assert!(got.len() < 1 << 20, "{id}: an endless stream served");
        }
        // Every state of it in history/ is refused the same way.
        let hist = history.join(id.to_string());
        let ls = bounded("ls", &[&"-1", &hist]);
        for name in String::from_utf8_lossy(&ls.stdout).lines() {
            let out = bounded("cat", &[&hist.join(name)]);
            assert!(!contains(&out.stdout, b"the-secret-outside"), "{id}");
            assert!(!contains(&out.stdout, &h.shadow), "{id}");
        }
    }

    // Metadata that is a link or a FIFO: a broken item, shown only in
    // history/ with its error, never its content.
    for id in [META_LINK, META_FIFO] {
        assert!(named(&inbox, id).is_empty(), "{id} must not be in Inbox");
        let err_file = history.join(format!("{id}/error"));
        let err = error_xattr(&err_file).unwrap_or_else(|| panic!("{id}: no error"));
        assert!(err.contains("not a regular file"), "{id}: {err}");
    }

    // The linked account directory is not read.
    let root = bounded("ls", &[&"-1", &m.path]);
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(!root.lines().any(|n| n == "anna@example.com"), "{root}");
}

#[derive(serde::Deserialize)]
struct CheckProblem {
    kind: String,
    item: Option<String>,
    detail: String,
}
#[derive(serde::Deserialize)]
struct CheckAccount {
    key: String,
    problems: Vec<CheckProblem>,
}
#[derive(serde::Deserialize)]
struct CheckReport {
    accounts: Vec<CheckAccount>,
    backup_problems: Vec<String>,
}

#[test]
fn check_and_get_item_refuse_hostile_files_and_end() {
    let h = hostile();
    let backup = h.backup.to_str().unwrap();
    let (code, out, err) = cli_bounded(&["check", backup, "--json"], LIMIT);
    assert_eq!(code, 1, "{err}");
    let report: CheckReport = serde_json::from_slice(&out).unwrap();
    let john = report
        .accounts
        .iter()
        .find(|a| a.key == SAMPLE_JOHN)
        .unwrap();
    let problem = |id: i64| {
        john.problems
            .iter()
            .find(|p| p.item.as_deref() == Some(&id.to_string()))
            .unwrap_or_else(|| panic!("no problem reported for {id}"))
    };
    for id in BLOB_ITEMS {
        let p = problem(id);
        assert_eq!(p.kind, "unreadable blob", "{id}: {}", p.detail);
        assert!(
            p.detail.starts_with("not a regular file"),
            "{id}: {}",
            p.detail
        );
    }
    for id in [META_LINK, META_FIFO] {
        let p = problem(id);
        assert_eq!(p.kind, "malformed metadata", "{id}");
        assert!(
            p.detail.contains("not a regular file"),
            "{id}: {}",
            p.detail
        );
    }
    assert!(
        report
            .backup_problems
            .iter()
            .any(|p| p.contains("/items/") && p.contains("symbolic link")),
        "the linked blob directory is reported: {:?}",
        report.backup_problems
    );
    let old = report
        .accounts
        .iter()
        .find(|a| a.key == SAMPLE_OLD)
        .unwrap();
    assert!(
        old.problems.iter().any(|p| p.kind == "account"
            && p.detail.contains("account_info")
            && p.detail.contains("not a regular file")),
        "the FIFO account_info is reported"
    );
    let anna = report
        .accounts
        .iter()
        .find(|a| a.key == SAMPLE_ANNA)
        .unwrap();
    assert!(
        anna.problems
            .iter()
            .any(|p| p.kind == "account" && p.detail.contains("symbolic link")),
        "the linked account directory is reported"
    );

    // get-item: the verdict and --dump-blob refuse, and end.
    let index = h.index.to_str().unwrap();
    for id in BLOB_ITEMS {
        let id = id.to_string();
        let (code, out, _) = cli_bounded(
            &[
                "get-item",
                backup,
                "--index",
                index,
                "john@example.com",
                &id,
            ],
            LIMIT,
        );
        assert_eq!(code, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("readable:   no: unreadable blob: not a regular file"),
            "{id}: {text}"
        );
        let (code, out, _) = cli_bounded(
            &[
                "get-item",
                backup,
                "--index",
                index,
                "john@example.com",
                &id,
                "--dump-blob",
            ],
            LIMIT,
        );
        assert_ne!(code, 0, "{id}: --dump-blob must fail");
        assert!(!contains(&out, b"the-secret-outside"), "{id}");
        assert!(!contains(&out, &h.shadow), "{id}");
        assert!(out.len() < 1 << 20, "{id}: an endless stream dumped");
    }
}

#[test]
fn check_escapes_non_printable_bytes() {
    let s = support::sample();
    let info = s
        .backup
        .join("accounts")
        .join(SAMPLE_JOHN)
        .join("account_info");
    let text = std::fs::read_to_string(&info).unwrap();
    let text = text.replace("john@example.com", "john\\u001b[2J\\u0007@example.com");
    assert!(text.contains("\\u001b"), "the name was replaced");
    std::fs::write(&info, text).unwrap();
    // An orphan blob whose name sets the terminal title.
    let odd = s.backup.join("items/zz");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(
        odd.join("zz\x1b]0;pwned\x07\nclean: 0 problem(s)"),
        gzip(b"x"),
    )
    .unwrap();
    let (code, out, _) = cli_bounded(&["check", s.backup.to_str().unwrap()], LIMIT);
    assert_eq!(code, 1, "the orphan is a problem");
    for bad in [0x1bu8, 0x07] {
        assert!(!out.contains(&bad), "raw byte {bad:#x} printed");
    }
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("john\\x1b[2J\\x07@example.com"), "{out}");
    assert!(out.contains("\\x1b]0;pwned\\x07\\x0aclean"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("clean: 0")), "{out}");
}

#[test]
fn a_size_mismatch_is_logged_once_by_the_mount() {
    let s = support::sample();
    let content = b"From: a@example.com\r\nSubject: longer than claimed\r\n\r\nbody body body\r\n";
    let d = blob_digest(content);
    std::fs::create_dir_all(blob_path(&s.backup, &d).parent().unwrap()).unwrap();
    std::fs::write(blob_path(&s.backup, &d), gzip(content)).unwrap();
    let id = 9201;
    write_meta(&s.backup, id, &d, 7);
    let log = s.dir.path().join("mount.log");
    {
        let m = Mount::start_logging(&s.backup, &s.index, &[], Some(&log));
        let inbox = m.join("john@example.com/latest/Inbox");
        let history = m.join(&format!("john@example.com/history/{id}"));
        let mut paths = named(&inbox, id);
        let ls = bounded("ls", &[&"-1", &history]);
        for n in String::from_utf8_lossy(&ls.stdout).lines() {
            paths.push(history.join(n));
        }
        assert!(paths.len() >= 2, "{paths:?}");
        for _ in 0..3 {
            for p in &paths {
                let out = bounded("cat", &[p]);
                if !p.to_string_lossy().ends_with(".salvaged") {
                    assert_eq!(out.stdout, content, "{}", p.display());
                }
            }
        }
    }
    let log = std::fs::read_to_string(&log).unwrap();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&d) && l.contains("size"))
        .collect();
    assert_eq!(said.len(), 1, "logged once: {log}");
    assert!(
        said[0].contains('7') && said[0].contains(&content.len().to_string()),
        "{}",
        said[0]
    );
}
