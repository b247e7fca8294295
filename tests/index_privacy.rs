//! The index directory holds every subject, address and restore request of
//! the backup: it is private to its owner (directories 0700, files 0600)
//! whatever the umask, with the catalogue, the daemon's log and the jobs in
//! it. Issue: any local user could read `catalog.sqlite` (0644 in 0755).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mailbackfs::model::ItemKind;
use support::sample;

/// Every path below `root` (itself included) with group or other bits set.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bad.push(format!("{} {mode:o}", p.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    bad
}

#[test]
fn index_directory_is_private_whatever_the_umask() {
    // The widest umask: whatever is private here is private by its mode.
    unsafe {
        libc::umask(0);
    }
    let s = sample();
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let (code, _, err) = support::cli(&[
        "mount",
        s.backup.to_str().unwrap(),
        mp.to_str().unwrap(),
        "--index",
        s.index.to_str().unwrap(),
    ]);
    struct Guard<'a>(&'a Path);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if support::is_mounted(self.0) {
                let _ = Command::new("fusermount3").arg("-uz").arg(self.0).status();
            }
        }
    }
    let _guard = Guard(&mp);
    assert_eq!(code, 0, "mount failed: {err}");

    // A job, so that jobs/ and its files exist.
    let acct = &s.info.accounts[0];
    let item = s
        .info
        .items
        .iter()
        .find(|i| i.account == acct.key && i.kind == ItemKind::Message && !i.deleted)
        .expect("a message in the sample");
    let target = mnt.path().join("restored");
    let line = format!(
        "item {} {} to=maildir:{}\n",
        acct.name,
        item.id,
        target.display()
    );
    std::fs::write(mp.join(".control/restore"), line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(mp.join(".control/jobs/1")).unwrap_or_default();
        if status.contains("state: done") || status.contains("state: failed") {
            break;
        }
        assert!(Instant::now() < deadline, "job 1 did not finish: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = support::cli(&["umount", mp.to_str().unwrap()]);
    assert_eq!(code, 0, "umount failed: {err}");

    for name in ["catalog.sqlite", "mountd.log", "jobs"] {
        assert!(s.index.join(name).exists(), "{name} missing in the index");
    }
    assert!(
        std::fs::read_dir(s.index.join("jobs")).unwrap().count() > 0,
        "the job left no file"
    );
    let bad = open_to_others(&s.index);
    assert!(bad.is_empty(), "readable by others: {bad:#?}");
}
