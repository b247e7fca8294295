//! `get-item` prints values from the backup: a subject with escape
//! sequences and newlines could drive the terminal or forge lines of the
//! listing. Every value is printed escaped, as `check` does.

mod support;

use serde_json::json;
use support::handmade::{message, Backup, T0};

#[test]
fn get_item_escapes_what_the_backup_says() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    let b = Backup::new(
        &root,
        "e5e5e5e5-0000-4000-8000-000000000001",
        "esc@example.com",
    );
    b.folder(2, 1, "Inbox");
    let bytes = message("x");
    let d = b.blob(&bytes);
    let subject = "\u{1b}[2J\u{1b}[31mred\nstate 9 of 9\n  deleted:    true";
    b.item(
        300,
        json!([{"id": 300, "type": "message", "start_date": T0 + 1000, "folder_id": 2,
                "digest": d, "size": bytes.len(), "date": T0, "flags": 0,
                "subject": subject, "tags": ["a\u{7}b"]}]),
    );
    let idx = t.path().join("index");
    let (code, out, err) = support::cli(&[
        "get-item",
        root.to_str().unwrap(),
        "esc@example.com",
        "300",
        "--index",
        idx.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(
        !out.lines().any(|l| l == "state 9 of 9"),
        "a forged line: {out}"
    );
    assert!(out.contains("\\x1b[31mred\\x0astate 9 of 9"), "{out}");
}
