//! Memory of a catalogue build follows the states, not a JSON tree of the
//! metadata: a 60 MB metadata file of 205,000 states took the build to
//! 670 MB (a `serde_json::Value` of the whole file plus a completed copy of
//! every state); parsed one state object at a time and completed one at a
//! time it stays near 250 MB (the file's bytes, the states, SQLite's cache).
//! The bound below catches a return to whole-tree parsing.

mod support;

use std::io::Write;
use std::process::Command;

use support::handmade::{message, Backup, T0};

const STATES: usize = 205_000;
/// Peak RSS of `mailbackfs index` allowed, in KiB.
const MAX_RSS_KIB: i64 = 380 * 1024;

#[test]
fn a_huge_item_history_is_indexed_without_a_json_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    let b = Backup::new(
        &root,
        "b1b1b1b1-0000-4000-8000-000000000001",
        "big@example.com",
    );
    b.folder(2, 1, "Inbox");
    b.folder(3, 1, "Trash");
    let digest = b.blob(&message("big"));
    let dir = b.acct_dir.join("items/77");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("177")).unwrap());
    f.write_all(b"[").unwrap();
    for i in 0..STATES {
        if i > 0 {
            f.write_all(b",").unwrap();
        }
        write!(
            f,
            r#"{{"id":177,"type":"message","start_date":{},"folder_id":{},"digest":"{digest}","size":60,"date":{T0},"flags":{},"tags":["t{}"],"subject":"A fairly ordinary subject line number {i}","sender":"someone@example.com"}}"#,
            T0 + 1000 + i as i64 * 1000,
            2 + i % 2,
            i % 1024,
            i % 7
        )
        .unwrap();
    }
    f.write_all(b"]").unwrap();
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(dir.join("177")).unwrap().len();
    assert!(size > 55_000_000, "the metadata file is {size} bytes");

    let status = Command::new(support::bin())
        .arg("index")
        .arg(&root)
        .arg("--index")
        .arg(t.path().join("index"))
        .status()
        .unwrap();
    assert!(status.success());
    // The largest RSS of any child waited for: this test binary runs no
    // other child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak = usage.ru_maxrss;
    assert!(
        peak < MAX_RSS_KIB,
        "indexing peaked at {} MiB (bound {} MiB)",
        peak / 1024,
        MAX_RSS_KIB / 1024
    );
    let (code, out, err) = support::cli(&[
        "accounts",
        root.to_str().unwrap(),
        "--index",
        t.path().join("index").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("big@example.com"), "{out}");
    assert!(!out.contains("unreadable"), "{out}");
}
