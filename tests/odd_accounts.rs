//! Account directories whose names would be lost or collide: an account
//! whose address is `.control` got a second root entry with the control
//! directory's inode.

mod support;

use support::handmade::{Backup, T0};
use support::{names, Mount};

#[test]
fn an_account_named_control_gets_the_collision_rule() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    let key = "c0c0c0c0-0000-4000-8000-00000000000c";
    let b = Backup::new(&root, key, ".control");
    b.folder(2, 1, "Inbox");
    b.message(300, 2, T0 + 1000, "hello");
    let m = Mount::start(&root, &t.path().join("index"), &[]);
    let root_names = names(&m.path);
    let control = root_names
        .iter()
        .filter(|n| n.as_str() == ".control")
        .count();
    assert_eq!(control, 1, "{root_names:?}");
    let renamed = format!(".control~{key}");
    assert!(root_names.contains(&renamed), "{root_names:?}");
    assert!(names(&m.join(".control")).contains("restore"));
    assert!(m
        .join(&format!("{renamed}/latest/Inbox/300-hello.eml"))
        .is_file());
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(m.join(".control")).unwrap().ino();
    let b = std::fs::metadata(m.join(&renamed)).unwrap().ino();
    assert_ne!(a, b);
}

/// An account directory whose name is not UTF-8 was dropped with no word:
/// it is named by its `account_info` address, else by its name escaped
/// (invalid bytes as `%XX`, `%` as `%25`), and `check` reports it.
#[test]
fn account_directories_that_are_not_utf8_are_shown_and_reported() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("backup");
    let named = Backup::new(&root, "placeholder-named", "cafe@example.com");
    named.folder(2, 1, "Inbox");
    named.message(300, 2, T0 + 1000, "named");
    let bare = Backup::new(&root, "placeholder-bare", "unused@example.com");
    bare.folder(2, 1, "Inbox");
    bare.message(301, 2, T0 + 1000, "bare");
    std::fs::remove_file(bare.acct_dir.join("account_info")).unwrap();
    let accounts = root.join("accounts");
    std::fs::rename(
        accounts.join("placeholder-named"),
        accounts.join(OsStr::from_bytes(b"caf\xe9")),
    )
    .unwrap();
    std::fs::rename(
        accounts.join("placeholder-bare"),
        accounts.join(OsStr::from_bytes(b"bad\xff%x")),
    )
    .unwrap();

    let m = Mount::start(&root, &t.path().join("index"), &[]);
    let root_names = names(&m.path);
    assert!(root_names.contains("cafe@example.com"), "{root_names:?}");
    assert!(root_names.contains("bad%FF%25x"), "{root_names:?}");
    assert!(m
        .join("cafe@example.com/latest/Inbox/300-named.eml")
        .is_file());
    assert!(m.join("bad%FF%25x/latest/Inbox/301-bare.eml").is_file());
    drop(m);

    let (code, out, err) = support::cli(&["check", root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not UTF-8"), "{out}");
}
