//! A parent cycle among folders (Inbox -> 3010 -> Inbox) hid every message
//! in it from every view, with no word from `check` or `restore`. The cycle
//! is broken at its lowest folder id, which hangs at the view root as
//! `unknown_<id>` with the rest of the cycle below it; `check` reports it.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use support::handmade::{Backup, T0};
use support::{files_below, Mount};

const ACCOUNT: &str = "cycle@example.com";
const T1: i64 = T0 + 60_000;
const T2: i64 = T1 + 60_000;

/// Inbox (2) under 3010, 3010 under Inbox from T2 on; 3011 under 3010.
fn backup(root: &std::path::Path) -> Backup {
    let b = Backup::new(root, "c0c0c0c0-0000-4000-8000-000000000001", ACCOUNT);
    b.item(
        2,
        json!([
            {"id": 2, "type": "folder", "start_date": T0, "folder_id": 1, "name": "Inbox"},
            {"id": 2, "type": "folder", "start_date": T2, "folder_id": 3010, "name": "Inbox"}
        ]),
    );
    b.folder(3010, 2, "Projects");
    b.folder(3011, 3010, "Deep");
    b.folder(5, 1, "Sent");
    b.message(400, 2, T1, "in inbox");
    b.message(401, 3010, T1, "in projects");
    b.message(402, 3011, T1, "in deep");
    b.message(403, 5, T1, "in sent");
    b
}

fn rel(files: Vec<std::path::PathBuf>) -> BTreeSet<String> {
    files
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_parent_cycle_hides_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    backup(&root);
    let m = Mount::start(&root, &t.path().join("index"), &[]);
    let latest = rel(files_below(&m.join(&format!("{ACCOUNT}/latest"))));
    let want: BTreeSet<String> = [
        "unknown_2/400-in_inbox.eml",
        "unknown_2/Projects/401-in_projects.eml",
        "unknown_2/Projects/Deep/402-in_deep.eml",
        "Sent/403-in_sent.eml",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(latest, want);
    // Before the cycle the tree is the ordinary one.
    let before = chrono::DateTime::from_timestamp_millis(T1 + 1000)
        .unwrap()
        .format("@%Y-%m-%dT%H:%M:%S")
        .to_string();
    let at = rel(files_below(&m.join(&format!("{ACCOUNT}/{before}"))));
    assert!(at.contains("Inbox/Projects/Deep/402-in_deep.eml"), "{at:?}");
}

#[test]
fn check_reports_a_parent_cycle() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    backup(&root);
    let (code, out, err) = support::cli(&["check", root.to_str().unwrap()]);
    assert_eq!(code, 1, "a cycle is a problem: {out}{err}");
    assert!(out.contains("folder cycle"), "{out}");
    assert!(out.contains("2 -> 3010"), "{out}");
}
