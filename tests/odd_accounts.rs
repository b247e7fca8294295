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
