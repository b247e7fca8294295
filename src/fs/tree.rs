//! Folder trees: which folders exist at an instant, where each one sits,
//! and under which (unique, safe) name.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::catalog::StateRow;
use crate::fs::names::{sanitize_component, with_suffix};
use crate::model::{ItemId, Millis, MAILBOX_ROOT, VIEW_ROOT};
use crate::timeline::valid_at;

/// Every recorded state of every folder of one account.
pub struct FolderTimeline {
    states: HashMap<ItemId, Vec<StateRow>>,
    /// Folders by every name they ever had (as shown): the only ones that
    /// can ever be siblings with one name.
    by_name: HashMap<String, Vec<ItemId>>,
}

/// A folder as it is at one instant.
struct FolderAt<'a> {
    name: &'a str,
    parent: Option<ItemId>,
}

impl FolderTimeline {
    pub fn new(rows: Vec<StateRow>) -> FolderTimeline {
        let mut states: HashMap<ItemId, Vec<StateRow>> = HashMap::new();
        let mut by_name: HashMap<String, Vec<ItemId>> = HashMap::new();
        for r in rows {
            let name = sanitize_component(r.name.as_deref().unwrap_or(""), &r.item_id.to_string());
            let ids = by_name.entry(name).or_default();
            if !ids.contains(&r.item_id) {
                ids.push(r.item_id);
            }
            states.entry(r.item_id).or_default().push(r);
        }
        FolderTimeline { states, by_name }
    }

    fn at(&self, id: ItemId, t: Millis) -> Option<FolderAt<'_>> {
        let s = self.states.get(&id)?.iter().rev().find(|s| s.start <= t)?;
        valid_at(s.start, s.eff_end, s.deleted, t).then(|| FolderAt {
            name: s.name.as_deref().unwrap_or(""),
            parent: s.folder_id,
        })
    }

    /// Where folder `id` hangs at `t`: its ancestors from the view root,
    /// or `None` when it is hidden (under the mailbox root only). An
    /// ancestor with no valid state, or the lowest folder of a parent
    /// cycle, becomes `Unknown` at the root.
    fn placement(&self, id: ItemId, t: Millis) -> Option<Placement> {
        let mut chain = vec![id];
        let mut seen = HashSet::from([id]);
        let mut cur = id;
        loop {
            if cur == VIEW_ROOT {
                return Some(Placement::Root(ancestors(chain)));
            }
            if cur == MAILBOX_ROOT {
                return None;
            }
            let Some(f) = self.at(cur, t) else {
                return Some(Placement::Unknown(cur, ancestors(chain)));
            };
            let parent = f.parent.unwrap_or(VIEW_ROOT);
            if !seen.insert(parent) {
                return Some(break_cycle(chain, parent));
            }
            chain.push(parent);
            cur = parent;
        }
    }

    /// Folder ids with a valid state at `t`.
    fn valid_ids(&self, t: Millis) -> impl Iterator<Item = ItemId> + '_ {
        self.states
            .keys()
            .copied()
            .filter(move |&id| id != VIEW_ROOT && id != MAILBOX_ROOT && self.at(id, t).is_some())
    }

    /// The display path of folder `id` at `t` (used by `deleted/`): its
    /// shown names from the root, or `unknown_<id>` where the chain breaks.
    pub fn path_at(&self, id: ItemId, t: Millis) -> Vec<String> {
        if id == VIEW_ROOT || id == MAILBOX_ROOT {
            return Vec::new();
        }
        match self.placement(id, t) {
            Some(Placement::Root(chain)) => chain
                .into_iter()
                .chain([id])
                .map(|f| self.shown_name(f, t))
                .collect(),
            Some(Placement::Unknown(u, _)) if u == id => vec![self.shown_unknown(id, t)],
            Some(Placement::Unknown(u, chain)) => std::iter::once(self.shown_unknown(u, t))
                .chain(chain.into_iter().chain([id]).map(|f| self.shown_name(f, t)))
                .collect(),
            None => vec![self.shown_unknown(id, t)],
        }
    }

    /// The name of the `unknown_<u>` directory at the view root at `t`:
    /// `~<u>` is added when a folder with a lower id is named so there (as
    /// in [`ViewTree::build`], where lower ids keep their names).
    fn shown_unknown(&self, u: ItemId, t: Millis) -> String {
        let name = unknown_name(u);
        let taken = self.by_name.get(&name).into_iter().flatten().any(|&o| {
            o < u
                && self
                    .at(o, t)
                    .is_some_and(|f| f.parent.unwrap_or(VIEW_ROOT) == VIEW_ROOT)
                && self.display_name(o, t) == name
        });
        if taken {
            with_suffix(&name, &format!("~{u}"))
        } else {
            name
        }
    }

    /// The name folder `id` has in the view at `t`: its display name, with
    /// `~<id>` when a sibling with a lower id has that name (as in
    /// [`ViewTree::build`]).
    fn shown_name(&self, id: ItemId, t: Millis) -> String {
        let name = self.display_name(id, t);
        let Some(parent) = self.at(id, t).map(|f| f.parent.unwrap_or(VIEW_ROOT)) else {
            return name;
        };
        let taken = self.by_name.get(&name).into_iter().flatten().any(|&o| {
            o < id
                && self
                    .at(o, t)
                    .is_some_and(|f| f.parent.unwrap_or(VIEW_ROOT) == parent)
                && self.display_name(o, t) == name
                // Shown under that parent: not hidden, and not the folder a
                // cycle is cut at (that one is `unknown_<o>` at the root).
                && match self.placement(o, t) {
                    Some(Placement::Root(_)) => true,
                    Some(Placement::Unknown(u, _)) => u != o,
                    None => false,
                }
        });
        if taken {
            with_suffix(&name, &format!("~{id}"))
        } else {
            name
        }
    }

    fn display_name(&self, id: ItemId, t: Millis) -> String {
        match self.at(id, t) {
            Some(f) => sanitize_component(f.name, &id.to_string()),
            None => unknown_name(id),
        }
    }
}

/// Where a folder hangs whose chain of parents `chain` (`[id, parent, ...]`)
/// runs back into `again`: the cycle is broken at its lowest folder id,
/// which hangs at the view root as `unknown_<id>` with the rest of the
/// cycle below it, like a folder whose parent is missing. Nothing in a
/// cycle is hidden.
fn break_cycle(mut chain: Vec<ItemId>, again: ItemId) -> Placement {
    let start = chain.iter().position(|&c| c == again).unwrap_or(0);
    let lowest = chain[start..].iter().copied().min().unwrap_or(again);
    let at = chain.iter().position(|&c| c == lowest).unwrap_or(0);
    chain.truncate(at + 1);
    Placement::Unknown(lowest, ancestors(chain))
}

/// A parent cycle among the folders valid at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderCycle {
    /// The folders of the cycle, lowest id first, then following parents.
    pub folders: Vec<ItemId>,
    /// The first instant (a folder state's start) at which it was seen.
    pub since: Millis,
}

/// One recorded state of a folder, as far as its place in the tree goes.
#[derive(Clone, Copy, Debug)]
pub struct FolderPlace {
    pub start: Millis,
    pub end: Option<Millis>,
    pub deleted: bool,
    pub parent: Option<ItemId>,
}

/// Every distinct parent cycle the folders ever form, looked at each
/// instant a folder state starts (`check` reports them). `folders` holds
/// each folder's states sorted by start.
pub fn folder_cycles(folders: &BTreeMap<ItemId, Vec<FolderPlace>>) -> Vec<FolderCycle> {
    let mut instants: Vec<Millis> = folders.values().flatten().map(|p| p.start).collect();
    instants.sort_unstable();
    instants.dedup();
    let mut found: Vec<FolderCycle> = Vec::new();
    for t in instants {
        let parent_at = |id: ItemId| -> Option<ItemId> {
            let p = folders.get(&id)?.iter().rev().find(|p| p.start <= t)?;
            valid_at(p.start, p.end, p.deleted, t).then(|| p.parent.unwrap_or(VIEW_ROOT))
        };
        for &id in folders.keys() {
            let mut chain = vec![id];
            let mut cur = id;
            while let Some(parent) = parent_at(cur) {
                if parent == VIEW_ROOT || parent == MAILBOX_ROOT {
                    break;
                }
                if let Some(k) = chain.iter().position(|&c| c == parent) {
                    let cycle = rotate_to_lowest(&chain[k..]);
                    if !found.iter().any(|c| c.folders == cycle) {
                        found.push(FolderCycle {
                            folders: cycle,
                            since: t,
                        });
                    }
                    break;
                }
                chain.push(parent);
                cur = parent;
            }
        }
    }
    found
}

/// A cycle written from its lowest id on, so one cycle has one spelling.
fn rotate_to_lowest(cycle: &[ItemId]) -> Vec<ItemId> {
    let at = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
    cycle[at..].iter().chain(&cycle[..at]).copied().collect()
}

/// `chain` is `[id, parent, grandparent, ..., stop]`: keep the folders
/// strictly between the stop and `id`, root side first.
fn ancestors(mut chain: Vec<ItemId>) -> Vec<ItemId> {
    chain.pop();
    chain.reverse();
    chain.pop();
    chain
}

enum Placement {
    /// Under the view root, through these folders (root side first).
    Root(Vec<ItemId>),
    /// Under `unknown_<id>` at the root, then these folders.
    Unknown(ItemId, Vec<ItemId>),
}

pub fn unknown_name(id: ItemId) -> String {
    format!("unknown_{id}")
}

/// The directories of one view at one instant. Directory ids are folder
/// ids; `VIEW_ROOT` is the view's root; an `unknown_<id>` directory has the
/// id of the missing folder.
#[derive(Default)]
pub struct ViewTree {
    /// Children of each directory: unique name → directory id, sorted.
    pub children: HashMap<ItemId, BTreeMap<String, ItemId>>,
    /// Parent of each directory (the root has none).
    pub parent: HashMap<ItemId, ItemId>,
}

impl ViewTree {
    /// The tree at `t`. `item_folders` are folder ids that some file item
    /// references and `has_files(id)` says whether one is valid there at `t`
    /// (so that `unknown_<id>` directories appear only where something is).
    pub fn build(
        folders: &FolderTimeline,
        t: Millis,
        item_folders: &[ItemId],
        mut has_files: impl FnMut(ItemId) -> bool,
    ) -> ViewTree {
        let mut tree = ViewTree::default();
        tree.children.insert(VIEW_ROOT, BTreeMap::new());
        // Raw (unsanitised, not yet unique) entries per parent.
        let mut raw: BTreeMap<ItemId, Vec<(ItemId, String)>> = BTreeMap::new();
        let mut unknown: HashSet<ItemId> = HashSet::new();
        let mut ids: Vec<ItemId> = folders.valid_ids(t).collect();
        ids.sort_unstable();
        for id in ids {
            let Some(placement) = folders.placement(id, t) else {
                continue;
            };
            let parent = match placement {
                Placement::Root(chain) => chain.last().copied().unwrap_or(VIEW_ROOT),
                Placement::Unknown(u, chain) => {
                    unknown.insert(u);
                    if u == id {
                        // The lowest folder of a cycle is `unknown_<id>` itself.
                        continue;
                    }
                    chain.last().copied().unwrap_or(u)
                }
            };
            raw.entry(parent)
                .or_default()
                .push((id, folders.display_name(id, t)));
        }
        for &f in item_folders {
            let shown = f == VIEW_ROOT
                || f == MAILBOX_ROOT
                || folders.at(f, t).is_some()
                || unknown.contains(&f);
            if !shown && has_files(f) {
                unknown.insert(f);
            }
        }
        let mut unknown: Vec<ItemId> = unknown.into_iter().collect();
        unknown.sort_unstable();
        for u in unknown {
            raw.entry(VIEW_ROOT).or_default().push((u, unknown_name(u)));
        }
        for (parent, mut entries) in raw {
            entries.sort();
            let names = tree.children.entry(parent).or_default();
            for (id, name) in entries {
                let unique = if names.contains_key(&name) {
                    with_suffix(&name, &format!("~{id}"))
                } else {
                    name
                };
                names.insert(unique, id);
                tree.parent.insert(id, parent);
            }
        }
        for id in tree.parent.keys().copied().collect::<Vec<_>>() {
            tree.children.entry(id).or_default();
        }
        tree
    }

    pub fn contains(&self, dir: ItemId) -> bool {
        self.children.contains_key(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(start: Millis, parent: ItemId) -> FolderPlace {
        FolderPlace {
            start,
            end: None,
            deleted: false,
            parent: Some(parent),
        }
    }

    #[test]
    fn cycles_are_found_once_spelled_from_their_lowest_id() {
        let folders = BTreeMap::from([
            (2, vec![place(0, 1), place(10, 3010)]),
            (3010, vec![place(0, 2)]),
            (3011, vec![place(0, 3010)]),
            (5, vec![place(0, 1)]),
        ]);
        assert_eq!(
            folder_cycles(&folders),
            vec![FolderCycle {
                folders: vec![2, 3010],
                since: 10
            }]
        );
    }

    #[test]
    fn a_cycle_breaks_at_its_lowest_id() {
        // chain from 3011 up: 3011 -> 3010 -> 2 -> back to 3010.
        match break_cycle(vec![3011, 3010, 2], 3010) {
            Placement::Unknown(u, chain) => {
                assert_eq!(u, 2);
                assert_eq!(chain, vec![3010]);
            }
            Placement::Root(_) => panic!("a cycle never reaches the root"),
        }
        match break_cycle(vec![2, 3010], 2) {
            Placement::Unknown(u, chain) => assert_eq!((u, chain), (2, vec![])),
            Placement::Root(_) => panic!("a cycle never reaches the root"),
        }
    }
}
