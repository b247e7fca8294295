//! Reference-model tests (after mountpoint-s3's `tests/reftests/`): random
//! backups in the common model go through the real catalogue and the
//! filesystem core, and every view is compared with a reference written
//! from the design documents alone.
//!
//! `PROPTEST_CASES` (default 64) and `REFTEST_SIZE=large` run more locally.

#[path = "reftests/gen.rs"]
mod gen;
#[path = "reftests/harness.rs"]
mod harness;
#[path = "reftests/reference.rs"]
mod reference;

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;

use harness::{check_backup, mailfs, MemReader};

/// Cases per property: bounded in CI, more with `PROPTEST_CASES`.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// Instants to look at as `@INSTANT`, picked among the interesting ones.
fn instants(backup: &gen::Backup, picks: &[Index]) -> Vec<i64> {
    let all: Vec<i64> = backup
        .accounts
        .iter()
        .flat_map(|(_, items)| reference::interesting_instants(items))
        .collect();
    picks.iter().map(|p| all[p.index(all.len())]).collect()
}

fn check_model(backup: gen::Backup, picks: &[Index], reverse: bool) -> Result<(), String> {
    let at = instants(&backup, picks);
    let reader = Arc::new(MemReader {
        backup: backup.clone(),
        reverse,
    });
    let (_dir, fs) = mailfs(reader);
    check_backup(&fs, &backup, &at)
}

proptest! {
    #![proptest_config(config())]

    /// The core serves what the design says, for any backup in the model.
    #[test]
    fn core_matches_reference(
        spec in gen::spec(gen::Size::from_env()),
        picks in prop::collection::vec(any::<Index>(), 4),
        reverse in any::<bool>(),
    ) {
        let backup = gen::build(&spec);
        if let Err(e) = check_model(backup, &picks, reverse) {
            return Err(TestCaseError::fail(e));
        }
    }
}
