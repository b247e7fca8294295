//! A view is a pure function of the backup: two catalogue builds of one
//! backup give identical trees, whatever the order items are read in, the
//! number of reader threads, and across separate processes (each build
//! below is a `mailbackfs index` of its own), through the real readers.

#[allow(dead_code)]
#[path = "reftests/dump.rs"]
mod dump;
#[allow(dead_code)]
#[path = "reftests/gen.rs"]
mod gen;
#[allow(dead_code)]
#[path = "reftests/zextras_writer.rs"]
mod zextras_writer;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mailbackfs::format::{self, FormatChoice};
use proptest::prelude::*;

/// `mailbackfs index` in a process of its own, with `threads` readers.
fn index(backup: &Path, index: &Path, threads: usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailbackfs"))
        .arg("index")
        .arg("--index")
        .arg(index)
        .arg(backup)
        .env("MAILBACKFS_READ_THREADS", threads.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mailbackfs index failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build the catalogue of `backup` in two processes (1 and 4 reader
/// threads) and compare full dumps of what each serves.
fn two_builds_agree(backup: &Path, choice: FormatChoice) -> Result<usize, String> {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    index(backup, a.path(), 1);
    index(backup, b.path(), 4);
    let open =
        || -> Arc<dyn format::BackupReader> { Arc::from(format::open(backup, choice).unwrap()) };
    let first = dump::dump(&a.path().join("catalog.sqlite"), open());
    let second = dump::dump(&b.path().join("catalog.sqlite"), open());
    let diffs = dump::differences(&first, &second);
    if diffs.is_empty() {
        Ok(first.len())
    } else {
        let n = diffs.len();
        Err(format!(
            "{n} differences between two builds of {}:\n{}",
            backup.display(),
            diffs.into_iter().take(15).collect::<Vec<_>>().join("\n")
        ))
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n: u32| n.div_ceil(4))
        .unwrap_or(8)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Generated Zextras backup paths (see `reftests/zextras_writer.rs`).
    #[test]
    fn zextras_builds_give_identical_trees(
        spec in gen::spec(gen::Size::from_env()),
        seed in any::<u64>(),
    ) {
        let backup = gen::build(&spec);
        let dir = tempfile::tempdir().unwrap();
        zextras_writer::write(&backup, dir.path(), seed);
        if let Err(e) = two_builds_agree(dir.path(), FormatChoice::Zextras) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// The real Cyrus corpora: the shared one and each configuration made
/// with the Cyrus tools under `tests/corpora/` (re-created folders, virtual
/// domains, `unixhierarchysep`, compaction...).
#[test]
fn cyrus_corpus_builds_give_identical_trees() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut backups = vec![manifest.join("../shared/corpora/cyrus/main/backup")];
    let mut dirs: Vec<_> = std::fs::read_dir(manifest.join("tests/corpora"))
        .unwrap()
        .map(|e| e.unwrap().path().join("backup"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    backups.extend(dirs);
    let mut failures = Vec::new();
    for backup in &backups {
        assert!(
            backup.is_dir(),
            "Cyrus corpus missing at {}",
            backup.display()
        );
        match two_builds_agree(backup, FormatChoice::Cyrus) {
            Ok(n) => assert!(n > 20, "only {n} entries dumped from {}", backup.display()),
            Err(e) => failures.push(e),
        }
    }
    assert!(backups.len() > 5, "corpora missing: {backups:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
