//! The Zextras reader through the public API, on the generator's fixtures.

use std::collections::BTreeMap;
use std::io::Read;

use mailbackfs::format::{self, FormatChoice};
use mailbackfs::model::{ItemKind, VIEW_ROOT};
use mailbackfs::synth;

#[test]
fn sample_point_in_time_facts() {
    let d = tempfile::tempdir().unwrap();
    let info = synth::write_sample(d.path()).unwrap();
    let reader = format::open(d.path(), FormatChoice::Auto).unwrap();
    assert_eq!(reader.format_name(), "zextras");
    let listed = reader.list_accounts().unwrap();
    assert_eq!(listed.len(), info.accounts.len());

    let m = &info.moved;
    let mut items = BTreeMap::new();
    let acc = reader
        .read_account(&m.account, &mut |i| {
            items.insert(i.id, i);
        })
        .unwrap();
    assert_eq!(acc.name, "john@example.com");
    // The doc's item 339: Inbox at 15:00, Trash at 15:03, deleted from 15:05:08.
    let states = &items[&m.id].states;
    let at = |t: i64| states.iter().rev().find(|s| s.start <= t).unwrap();
    assert_eq!(at(m.arrived + 1).folder_id, Some(m.from_folder));
    assert_eq!(at(m.moved_to_trash).folder_id, Some(m.to_folder));
    assert!(at(m.deleted).deleted);

    let root = &items[&VIEW_ROOT];
    assert_eq!(root.states[0].kind, Some(ItemKind::Folder));
    let r = &info.renamed;
    let folder = &items[&r.id].states;
    assert_eq!(folder[0].name.as_deref(), Some(r.old_name.as_str()));
    assert_eq!(
        folder.last().unwrap().name.as_deref(),
        Some(r.new_name.as_str())
    );

    // The shared blob reads back whole through the reader.
    let shared = items[&info.shared_items[0].1].states[0]
        .blob
        .clone()
        .unwrap();
    let mut bytes = Vec::new();
    reader
        .open_blob(&shared)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(synth::SAMPLE_JOHN, info.shared_items[0].0);
    assert_eq!(
        bytes,
        info.item(&info.shared_items[0].0, info.shared_items[0].1)
            .unwrap()
            .content
            .clone()
            .unwrap()
    );
}
