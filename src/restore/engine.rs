//! Running one restore request: resolve it against the catalogue into the
//! item states to restore ([`plan`]), then read each blob and hand it to
//! its target ([`run`]), collecting a report in the vendor's shape.
//!
//! What each verb restores:
//! - `item`: the item's newest non-deleted state (or the state valid at
//!   `at=`), into the folder it had then (or `folder=`).
//! - `account`: every file item valid at the instant, in that instant's
//!   folder tree (the tree `ACCOUNT/@INSTANT/` shows). Folders holding
//!   only contacts, appointments or documents are not created.
//! - `undelete`: items whose last state is a deletion starting in
//!   `[FROM, TO]`, from the state before the deletion, into the folder
//!   they had just before it (as `deleted/` shows it), with the keyword
//!   `undelete_DD_MM_YY` (the day the job first ran, UTC).
//! - `external`: every account (or those named, or in the domains) at its
//!   newest state. Maildir and mbox targets get one tree per account,
//!   `TARGET/<address>`; an IMAP target gets the address as one more
//!   folder level under its prefix (`imap://admin@host/Restored` →
//!   `Restored/<address>/INBOX...`), since one login cannot write into
//!   several users' mailboxes.
//!
//! Only messages go to maildir, mbox and IMAP targets: contacts,
//! appointments, tasks and documents are left out of the totals and named
//! in the report's `- not messages -` section. Items whose metadata
//! cannot be read are unrestored (`broken item`).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use anyhow::Result;

use crate::catalog::{AccountRow, Catalog, StateRow};
use crate::control::request::Request;
use crate::format::BackupReader;
use crate::fs::tree::{FolderTimeline, ViewTree};
use crate::model::{ItemId, ItemKind, Millis, MAILBOX_ROOT, VIEW_ROOT};
use crate::restore::cancel::Cancel;
use crate::restore::folder_tree::FolderTree;
use crate::restore::runner::{Fatal, FolderNames, Session, Unresolved};
use crate::restore::target::{content_digest, AppendOutcome, RestoreMessage, TargetSpec};
use crate::timeline::valid_at;

/// The backup a restore reads from.
#[derive(Clone)]
pub struct RestoreSource {
    pub catalog: Arc<Catalog>,
    pub reader: Arc<dyn BackupReader>,
}

/// Why an item was not restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// The blob is missing or cannot be read.
    ReadError,
    /// The blob is damaged, or the item's metadata cannot be read.
    BrokenItem,
    /// The target refused the message.
    Rejected,
    /// The job ended before it got to the item.
    NotAttempted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReadError => "read error",
            Reason::BrokenItem => "broken item",
            Reason::Rejected => "rejected by the target",
            Reason::NotAttempted => "not attempted, the job failed",
        }
    }
}

/// What happened to one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    Restored,
    /// The target already had it, or the job's journal says it is done.
    Skipped,
    Unrestored(Reason, String),
}

/// One item state to restore.
#[derive(Clone, Debug)]
pub struct PlannedItem {
    pub item_id: ItemId,
    /// What the report names it by (the item id, the Cyrus UID).
    pub label: String,
    /// The state to restore; `None` with `broken` set when the item's
    /// metadata cannot be read.
    pub state: Option<StateRow>,
    pub broken: Option<String>,
    /// Its folder: a node of its group's [`FolderTree`].
    pub folder: usize,
    /// A keyword added to the state's flags (`undelete_DD_MM_YY`).
    pub extra_flag: Option<String>,
}

impl PlannedItem {
    /// The journal key: account, item and state, stable across restarts.
    pub fn key(&self, account_key: &str) -> String {
        let seq = self.state.as_ref().map_or(-1, |s| s.seq);
        format!("{account_key}\t{}\t{seq}", self.item_id)
    }
}

/// What one account contributes to a restore, into one target.
#[derive(Clone, Debug)]
pub struct PlanGroup {
    /// Account address (directory name) and reader key.
    pub account: String,
    pub account_key: String,
    pub target: TargetSpec,
    /// The folders of the group, each once.
    pub tree: FolderTree,
    /// Folders to create even if empty, parents first.
    pub folders: Vec<usize>,
    pub items: Vec<PlannedItem>,
    /// Labels of file items that are not messages (left out).
    pub not_messages: Vec<String>,
}

/// Everything a request restores.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub groups: Vec<PlanGroup>,
}

impl Plan {
    pub fn total(&self) -> u64 {
        self.groups.iter().map(|g| g.items.len() as u64).sum()
    }
}

/// An account by address (directory name), primary name or reader key.
pub fn find_account(catalog: &Catalog, name: &str) -> Result<AccountRow, String> {
    let accounts = catalog
        .accounts()
        .map_err(|e| format!("reading the catalogue: {e:#}"))?;
    accounts
        .iter()
        .find(|a| a.dir_name == name)
        .or_else(|| accounts.iter().find(|a| a.name == name || a.key == name))
        .cloned()
        .ok_or_else(|| format!("unknown account {name:?}: see `mailbackfs accounts`"))
}

/// Check what the parser cannot: that the accounts and the item exist
/// (and that an `item` request has a state to restore).
pub fn check(src: &RestoreSource, req: &Request) -> Result<(), String> {
    match req {
        Request::Item { .. } => plan(src, req, 0).map(|_| ()),
        Request::Account { account, .. } | Request::Undelete { account, .. } => {
            find_account(&src.catalog, account).map(|_| ())
        }
        Request::External {
            accounts, domains, ..
        } => select_external(&src.catalog, accounts, domains).map(|_| ()),
    }
}

fn select_external(
    catalog: &Catalog,
    names: &[String],
    domains: &[String],
) -> Result<Vec<AccountRow>, String> {
    let mut chosen: BTreeMap<i64, AccountRow> = BTreeMap::new();
    for n in names {
        let a = find_account(catalog, n)?;
        chosen.insert(a.id, a);
    }
    if !domains.is_empty() {
        let all = catalog
            .accounts()
            .map_err(|e| format!("reading the catalogue: {e:#}"))?;
        for d in domains {
            let d = d.trim_start_matches('@').to_ascii_lowercase();
            let in_domain: Vec<&AccountRow> = all
                .iter()
                .filter(|a| {
                    a.name
                        .rsplit_once('@')
                        .is_some_and(|(_, ad)| ad.eq_ignore_ascii_case(&d))
                })
                .collect();
            if in_domain.is_empty() {
                return Err(format!("no account in domain {d:?}"));
            }
            for a in in_domain {
                chosen.insert(a.id, a.clone());
            }
        }
    }
    if names.is_empty() && domains.is_empty() {
        for a in catalog
            .accounts()
            .map_err(|e| format!("reading the catalogue: {e:#}"))?
        {
            chosen.insert(a.id, a);
        }
    }
    if chosen.is_empty() {
        return Err("the backup has no account to restore".into());
    }
    Ok(chosen.into_values().collect())
}

/// Resolve a request into the states to restore. `run_day` is the instant
/// whose UTC date names the undelete keyword.
pub fn plan(src: &RestoreSource, req: &Request, run_day: Millis) -> Result<Plan, String> {
    let c = &*src.catalog;
    let db = |e: anyhow::Error| format!("reading the catalogue: {e:#}");
    match req {
        Request::Item {
            account,
            item,
            target,
            folder,
            at,
        } => {
            let acct = find_account(c, account)?;
            let states = c.item_states(acct.id, *item).map_err(db)?;
            let mut group = group_for(&acct, target.clone());
            if states.is_empty() {
                let broken = c
                    .broken_items(acct.id, None)
                    .map_err(db)?
                    .into_iter()
                    .find(|b| b.item_id == *item);
                let Some(b) = broken else {
                    return Err(format!("account {account} has no item {item}"));
                };
                let folder = group.tree.intern(folder.as_deref().unwrap_or_default());
                group.items.push(PlannedItem {
                    item_id: *item,
                    label: b.label,
                    state: None,
                    broken: Some(b.error),
                    folder,
                    extra_flag: None,
                });
                return Ok(Plan {
                    groups: vec![group],
                });
            }
            if !states[0].kind.is_file() {
                return Err(format!(
                    "item {item} of {account} is a {}, not a message",
                    states[0].kind.as_str()
                ));
            }
            let state =
                match at {
                    Some(t) => states
                        .iter()
                        .rev()
                        .find(|s| valid_at(s.start, s.eff_end, s.deleted, *t))
                        .ok_or_else(|| {
                            format!(
                                "item {item} of {account} did not exist at {}",
                                crate::timeline::format_instant(*t)
                            )
                        })?,
                    None => states.iter().rev().find(|s| !s.deleted).ok_or_else(|| {
                        format!("item {item} of {account} has no non-deleted state")
                    })?,
                };
            let path = match folder {
                Some(f) => f.clone(),
                None => {
                    let folders = FolderTimeline::new(c.folder_states(acct.id).map_err(db)?);
                    let t = at.unwrap_or(state.eff_end.map_or(Millis::MAX, |e| e - 1));
                    folder_path(&folders, state.folder_id, t)
                }
            };
            if state.kind == ItemKind::Message {
                let folder = group.tree.intern(&path);
                group.items.push(planned(state.clone(), folder, None));
            } else {
                group.not_messages.push(state.label.clone());
            }
            Ok(Plan {
                groups: vec![group],
            })
        }
        Request::Account {
            account,
            at,
            target,
        } => {
            let acct = find_account(c, account)?;
            let t = at.unwrap_or(Millis::MAX);
            let group = account_at(c, &acct, t, target.clone()).map_err(db)?;
            Ok(Plan {
                groups: vec![group],
            })
        }
        Request::Undelete {
            account,
            from,
            to,
            target,
        } => {
            let acct = find_account(c, account)?;
            let folders = FolderTimeline::new(c.folder_states(acct.id).map_err(db)?);
            let keyword = undelete_keyword(run_day);
            let mut group = group_for(&acct, target.clone());
            for del in c.deleted_items(acct.id).map_err(db)? {
                if from.is_some_and(|f| del.start < f) || to.is_some_and(|t| del.start > t) {
                    continue;
                }
                let states = c.item_states(acct.id, del.item_id).map_err(db)?;
                let Some(before) = states.iter().rev().find(|s| !s.deleted) else {
                    continue;
                };
                if before.kind != ItemKind::Message {
                    group.not_messages.push(before.label.clone());
                    continue;
                }
                let path = folder_path(&folders, del.folder_id, del.start - 1);
                let folder = group.tree.intern(&path);
                group
                    .items
                    .push(planned(before.clone(), folder, Some(keyword.clone())));
            }
            Ok(Plan {
                groups: vec![group],
            })
        }
        Request::External {
            accounts,
            domains,
            target,
        } => {
            let mut plan = Plan::default();
            for acct in select_external(c, accounts, domains)? {
                let target = per_account_target(target, &acct.dir_name);
                plan.groups
                    .push(account_at(c, &acct, Millis::MAX, target).map_err(db)?);
            }
            Ok(plan)
        }
    }
}

fn group_for(acct: &AccountRow, target: TargetSpec) -> PlanGroup {
    PlanGroup {
        account: acct.dir_name.clone(),
        account_key: acct.key.clone(),
        target,
        tree: FolderTree::default(),
        folders: Vec::new(),
        items: Vec::new(),
        not_messages: Vec::new(),
    }
}

fn planned(state: StateRow, folder: usize, extra_flag: Option<String>) -> PlannedItem {
    PlannedItem {
        item_id: state.item_id,
        label: state.label.clone(),
        state: Some(state),
        broken: None,
        folder,
        extra_flag,
    }
}

/// `TARGET/<address>` for maildir and mbox, one more prefix level for IMAP.
pub fn per_account_target(target: &TargetSpec, address: &str) -> TargetSpec {
    match target {
        TargetSpec::Maildir(p) => TargetSpec::Maildir(p.join(address)),
        TargetSpec::Mbox(p) => TargetSpec::Mbox(p.join(address)),
        TargetSpec::Imap(spec) => {
            let mut spec = spec.clone();
            spec.prefix.push(address.to_string());
            TargetSpec::Imap(spec)
        }
    }
}

/// `undelete_DD_MM_YY` for the UTC date of `t`.
pub fn undelete_keyword(t: Millis) -> String {
    let dt = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t).unwrap_or_default();
    format!("undelete_{}", dt.format("%d_%m_%y"))
}

fn folder_path(folders: &FolderTimeline, folder: Option<ItemId>, t: Millis) -> Vec<String> {
    match folder {
        Some(f) => folders.path_at(f, t),
        None => Vec::new(),
    }
}

/// Every file item of an account valid at `t`, in the folder tree of `t`,
/// plus the items whose metadata cannot be read.
fn account_at(c: &Catalog, acct: &AccountRow, t: Millis, target: TargetSpec) -> Result<PlanGroup> {
    let folders = FolderTimeline::new(c.folder_states(acct.id)?);
    let referenced = c.referenced_folders(acct.id)?;
    let tree = ViewTree::build(&folders, t, &referenced, |f| {
        c.folder_has_files(acct.id, f, t).unwrap_or(false)
    });
    let mut group = group_for(acct, target);
    // The node of every directory of the tree, root side first.
    let mut nodes: HashMap<ItemId, usize> = HashMap::from([(VIEW_ROOT, FolderTree::ROOT)]);
    let mut stack = vec![VIEW_ROOT];
    let mut order = Vec::new();
    while let Some(dir) = stack.pop() {
        order.push(dir);
        if let Some(children) = tree.children.get(&dir) {
            for (name, &child) in children.iter().rev() {
                let node = group.tree.child(nodes[&dir], name);
                nodes.insert(child, node);
                stack.push(child);
            }
        }
    }
    // Folders with messages below them, or with no file item at all.
    for &dir in &order {
        let mut rows = c.files_in_folder(acct.id, dir, t)?;
        if dir == VIEW_ROOT {
            rows.extend(c.files_in_folder(acct.id, MAILBOX_ROOT, t)?);
        }
        let (mut msgs, mut others) = (false, false);
        for row in rows {
            if row.kind == ItemKind::Message {
                msgs = true;
                group.items.push(planned(row, nodes[&dir], None));
            } else {
                others = true;
                group.not_messages.push(row.label.clone());
            }
        }
        if dir != VIEW_ROOT && (msgs || !others) {
            group.folders.push(nodes[&dir]);
        }
    }
    for b in c.broken_items(acct.id, None)? {
        group.items.push(PlannedItem {
            item_id: b.item_id,
            label: b.label,
            state: None,
            broken: Some(b.error),
            folder: FolderTree::ROOT,
            extra_flag: None,
        });
    }
    Ok(group)
}

/// One unrestored item in a report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unrestored {
    pub account: String,
    pub label: String,
    pub reason: Reason,
    pub detail: String,
}

/// The outcome of a job, rendered in the vendor's shape by [`Report::render`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub restored: u64,
    pub skipped: u64,
    pub unrestored: Vec<Unrestored>,
    /// (account, labels) of file items left out because they are not messages.
    pub not_messages: Vec<(String, Vec<String>)>,
    /// Folders the target refused under their own name, and the name they
    /// got instead.
    #[serde(default)]
    pub renamed: Vec<RenamedFolder>,
}

/// A folder restored under a shorter name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenamedFolder {
    pub account: String,
    pub old: String,
    pub new: String,
}

impl Report {
    pub fn count(&mut self, account: &str, label: &str, outcome: &ItemOutcome) {
        match outcome {
            ItemOutcome::Restored => self.restored += 1,
            ItemOutcome::Skipped => self.skipped += 1,
            ItemOutcome::Unrestored(reason, detail) => self.unrestored.push(Unrestored {
                account: account.to_string(),
                label: label.to_string(),
                reason: *reason,
                detail: detail.clone(),
            }),
        }
    }

    /// ```text
    /// - stats -
    /// Restored Items: 15233
    /// Skipped Items:  125
    /// Unrestored Items: 10
    ///
    /// - unrestored items -
    /// account: account1@example.com
    /// unrestored items: 1255,1369
    /// 1255: read error: blob 9f/9f3c... is missing
    /// 1369: rejected by the target: NO [OVERQUOTA] ...
    /// ```
    /// then, when some file items were left out, `- not messages -` with one
    /// `account:` / `items:` pair per account.
    pub fn render(&self) -> String {
        let mut out = format!(
            "- stats -\nRestored Items: {}\nSkipped Items:  {}\nUnrestored Items: {}\n\n- unrestored items -\n",
            self.restored,
            self.skipped,
            self.unrestored.len()
        );
        let mut by_account: BTreeMap<&str, Vec<&Unrestored>> = BTreeMap::new();
        for u in &self.unrestored {
            by_account.entry(&u.account).or_default().push(u);
        }
        for (account, items) in by_account {
            let labels: Vec<&str> = items.iter().map(|u| u.label.as_str()).collect();
            out.push_str(&format!(
                "account: {account}\nunrestored items: {}\n",
                labels.join(",")
            ));
            for u in items {
                let detail = u.detail.replace('\n', " ");
                out.push_str(&format!("{}: {}: {detail}\n", u.label, u.reason.as_str()));
            }
        }
        if !self.renamed.is_empty() {
            out.push_str("\n- renamed folders -\n");
            let mut last = "";
            for r in &self.renamed {
                if r.account != last {
                    out.push_str(&format!("account: {}\n", r.account));
                    last = &r.account;
                }
                out.push_str(&format!("{} -> {}\n", r.old, r.new));
            }
        }
        let left_out: Vec<_> = self
            .not_messages
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if !left_out.is_empty() {
            out.push_str("\n- not messages (left out) -\n");
            for (account, labels) in left_out {
                out.push_str(&format!(
                    "account: {account}\nitems: {}\n",
                    labels.join(",")
                ));
            }
        }
        out
    }
}

/// What a caller learns and decides while a plan runs.
pub trait RunHooks {
    /// Called once the plan is known, with the number of items.
    fn planned(&mut self, _total: u64) {}
    /// The outcome of the item with journal key `key` and content digest
    /// `digest` (when its bytes could be read); not called for items
    /// `done` already had.
    fn item_done(&mut self, key: &str, digest: Option<&str>, outcome: &ItemOutcome) -> Result<()>;
    /// Asked between items: stop now?
    fn stop_requested(&self) -> bool {
        false
    }
    /// The switch that stops the run at once, even while it waits on a
    /// server (see [`Cancel`]).
    fn cancel(&self) -> Arc<Cancel> {
        Arc::new(Cancel::default())
    }
}

/// How a run ended. There is a report whatever happened.
#[derive(Debug)]
pub struct RunResult {
    pub report: Report,
    /// Items handled, including those the journal had.
    pub done: u64,
    /// Stopped on request before the end.
    pub stopped: bool,
    /// Why the job could not go on (a target that cannot be reached); the
    /// items it did not get to are unrestored, `not attempted`.
    pub error: Option<String>,
}

/// An item an earlier run of the same job handled, as its journal says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoneItem {
    /// Restored (else skipped).
    pub restored: bool,
    /// Its content digest (journals of older versions lack it).
    pub digest: Option<String>,
}

/// Which copy of its bytes in its folder each item is: the n-th item of a
/// job with the same content digest in the same target folder is copy n.
#[derive(Default)]
struct CopyCounter(HashMap<(usize, String), u32>);

impl CopyCounter {
    fn next(&mut self, folder: usize, digest: &str) -> u32 {
        let n = self.0.entry((folder, digest.to_string())).or_default();
        *n += 1;
        *n
    }
}

/// How one group ended: on, or the index of the first item not handled.
enum Flow {
    Done,
    Stopped,
    Failed(String, usize),
}

/// Run a plan into its targets. `done` maps journal keys of items already
/// handled by an earlier run of the same job; they are counted as such and
/// not sent again. Items and folders the target refuses are unrestored
/// and the run goes on; a lost connection is reopened.
pub fn run(
    src: &RestoreSource,
    plan: &Plan,
    done: &HashMap<String, DoneItem>,
    hooks: &mut dyn RunHooks,
) -> Result<RunResult> {
    let cancel = hooks.cancel();
    let mut report = Report::default();
    let mut handled = 0u64;
    hooks.planned(plan.total());
    for (gi, group) in plan.groups.iter().enumerate() {
        report
            .not_messages
            .push((group.account.clone(), group.not_messages.clone()));
        let mut session = Session::new(&group.target, &group.account, &cancel);
        let mut names = FolderNames::default();
        let flow = run_group(
            src,
            group,
            done,
            hooks,
            &mut report,
            &mut handled,
            &mut session,
            &mut names,
        );
        session.finish();
        for r in names.renamed {
            report.renamed.push(RenamedFolder {
                account: group.account.clone(),
                old: r.old.join("/"),
                new: r.new.join("/"),
            });
        }
        match flow {
            Flow::Done => {}
            Flow::Stopped => {
                return Ok(RunResult {
                    report,
                    done: handled,
                    stopped: true,
                    error: None,
                })
            }
            Flow::Failed(why, first) => {
                log::warn!("restore failed: {why}");
                let rest = std::iter::once((group, first))
                    .chain(plan.groups[gi + 1..].iter().map(|g| (g, 0)));
                for (g, from) in rest {
                    for item in &g.items[from..] {
                        if !done.contains_key(&item.key(&g.account_key)) {
                            let why = ItemOutcome::Unrestored(Reason::NotAttempted, why.clone());
                            report.count(&g.account, &item.label, &why);
                        }
                    }
                }
                return Ok(RunResult {
                    report,
                    done: handled,
                    stopped: false,
                    error: Some(why),
                });
            }
        }
    }
    Ok(RunResult {
        report,
        done: handled,
        stopped: false,
        error: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_group(
    src: &RestoreSource,
    group: &PlanGroup,
    done: &HashMap<String, DoneItem>,
    hooks: &mut dyn RunHooks,
    report: &mut Report,
    handled: &mut u64,
    session: &mut Session,
    names: &mut FolderNames,
) -> Flow {
    let fatal = |f: Fatal, at: usize| match f {
        Fatal::Stopped => Flow::Stopped,
        Fatal::Failed(why) => Flow::Failed(why, at),
    };
    let pending = group
        .items
        .iter()
        .any(|i| !done.contains_key(&i.key(&group.account_key)));
    if pending {
        for &f in &group.folders {
            match names.resolve(&group.tree, f, session) {
                Ok(_) => {}
                Err(Unresolved::Refused(why)) => {
                    log::debug!("folder {} not created: {why}", group.tree.display(f));
                }
                Err(Unresolved::Fatal(f)) => return fatal(f, 0),
            }
        }
    }
    let mut copies = CopyCounter::default();
    for (i, item) in group.items.iter().enumerate() {
        let key = item.key(&group.account_key);
        if let Some(d) = done.get(&key) {
            if let Some(digest) = &d.digest {
                copies.next(item.folder, digest);
            }
            let outcome = if d.restored {
                ItemOutcome::Restored
            } else {
                ItemOutcome::Skipped
            };
            report.count(&group.account, &item.label, &outcome);
            *handled += 1;
            continue;
        }
        if hooks.stop_requested() {
            return Flow::Stopped;
        }
        let (outcome, digest) = match restore_one(src, group, item, session, names, &mut copies) {
            Ok(r) => r,
            Err(f) => return fatal(f, i),
        };
        if let Err(e) = hooks.item_done(&key, digest.as_deref(), &outcome) {
            report.count(&group.account, &item.label, &outcome);
            *handled += 1;
            return Flow::Failed(format!("{e:#}"), i + 1);
        }
        report.count(&group.account, &item.label, &outcome);
        *handled += 1;
    }
    Flow::Done
}

/// Restore one item; its outcome and, when its bytes were read, their
/// content digest. `Err` only when the job cannot go on.
fn restore_one(
    src: &RestoreSource,
    group: &PlanGroup,
    item: &PlannedItem,
    session: &mut Session,
    names: &mut FolderNames,
    copies: &mut CopyCounter,
) -> Result<(ItemOutcome, Option<String>), Fatal> {
    let bytes = match read_item(src, item) {
        Ok(b) => b,
        Err(outcome) => return Ok((outcome, None)),
    };
    let digest = content_digest(&bytes);
    let copy = copies.next(item.folder, &digest);
    let folder = match names.resolve(&group.tree, item.folder, session) {
        Ok(f) => f,
        Err(Unresolved::Refused(why)) => {
            let why = format!("folder {}: {why}", group.tree.display(item.folder));
            return Ok((ItemOutcome::Unrestored(Reason::Rejected, why), Some(digest)));
        }
        Err(Unresolved::Fatal(f)) => return Err(f),
    };
    let state = item.state.as_ref().expect("read_item checked it");
    let mut flags: Vec<String> = state
        .flags
        .split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(k) = &item.extra_flag {
        flags.push(k.clone());
    }
    let msg = RestoreMessage {
        folder: &folder,
        bytes: &bytes,
        flags: &flags,
        internal_date: clamp_date(state.date.unwrap_or(state.start)),
        digest: &digest,
        copy,
    };
    let outcome = match session.call(|t| t.append(&msg))? {
        Ok(AppendOutcome::Restored) => ItemOutcome::Restored,
        // Sent before the connection was lost, found after: ours.
        Ok(AppendOutcome::Skipped) if session.retried() => ItemOutcome::Restored,
        Ok(AppendOutcome::Skipped) => ItemOutcome::Skipped,
        Err(e) => ItemOutcome::Unrestored(Reason::Rejected, format!("{e:#}")),
    };
    Ok((outcome, Some(digest)))
}

/// An internal date every target can hold: 1970-01-01 to 9999-12-31.
fn clamp_date(t: Millis) -> Millis {
    const MAX: Millis = 253_402_300_799_000; // 9999-12-31T23:59:59Z
    t.clamp(0, MAX)
}

/// The bytes of an item's state, or why it cannot be restored.
fn read_item(src: &RestoreSource, item: &PlannedItem) -> Result<Vec<u8>, ItemOutcome> {
    let Some(state) = &item.state else {
        let why = item.broken.clone().unwrap_or_default();
        return Err(ItemOutcome::Unrestored(
            Reason::BrokenItem,
            format!("metadata: {why}"),
        ));
    };
    let Some(blob) = &state.blob else {
        return Err(ItemOutcome::Unrestored(
            Reason::ReadError,
            "the state has no blob".into(),
        ));
    };
    let mut bytes = Vec::with_capacity(state.size.unwrap_or(0).min(64 << 20) as usize);
    let read = src
        .reader
        .open_blob(blob)
        .and_then(|mut r| r.read_to_end(&mut bytes));
    if let Err(e) = read {
        let reason = if e.kind() == std::io::ErrorKind::InvalidData {
            Reason::BrokenItem
        } else {
            Reason::ReadError
        };
        return Err(ItemOutcome::Unrestored(
            reason,
            format!("blob {}: {e}", blob.locator),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::control::request::parse_request;

    fn sample() -> (tempfile::TempDir, RestoreSource) {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("backup");
        crate::synth::write_sample(&backup).unwrap();
        let opened = crate::mount::open_backup(
            &backup,
            Some(&dir.path().join("index")),
            crate::format::FormatChoice::Auto,
            crate::mount::Refresh::IfEmpty,
            false,
        )
        .unwrap();
        let src = RestoreSource {
            catalog: opened.catalog,
            reader: opened.reader,
        };
        (dir, src)
    }

    /// (item id, folder path) of a one-group plan.
    fn planned_items(src: &RestoreSource, line: &str) -> Vec<(ItemId, String)> {
        let plan = plan(src, &parse_request(line).unwrap(), 0).unwrap();
        let mut v: Vec<_> = plan
            .groups
            .iter()
            .flat_map(|g| g.items.iter())
            .map(|i| (i.item_id, plan.groups[0].tree.path(i.folder).join("/")))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plans_follow_the_verbs() {
        let (_dir, src) = sample();
        let at = planned_items(
            &src,
            "account john@example.com 2013-07-12T15:03:00Z to=maildir:/r",
        );
        let has =
            |v: &[(ItemId, String)], id: ItemId, f: &str| v.iter().any(|(i, p)| *i == id && p == f);
        assert!(has(&at, 339, "Trash"), "{at:?}");
        assert!(has(&at, 305, "Old stuff"), "{at:?}");
        assert!(has(&at, 302, "Inbox/Projects/2013"), "{at:?}");
        let last = planned_items(&src, "account john@example.com last to=maildir:/r");
        assert!(
            !last.iter().any(|(i, _)| *i == 339 || *i == 305),
            "{last:?}"
        );
        assert!(has(&last, 302, "Inbox/Projets clients/2013"), "{last:?}");
        let und = planned_items(
            &src,
            "undelete john@example.com 2013-07-12 2013-07-12 to=maildir:/r",
        );
        assert_eq!(und, vec![(339, "Trash".to_string())]);
        let und = planned_items(&src, "undelete john@example.com first last to=maildir:/r");
        assert_eq!(
            und,
            vec![(305, "Old stuff".to_string()), (339, "Trash".to_string())]
        );
        // item: newest non-deleted state, or the one valid at at=.
        assert_eq!(
            planned_items(&src, "item john@example.com 339 to=maildir:/r"),
            vec![(339, "Trash".to_string())]
        );
        assert_eq!(
            planned_items(
                &src,
                "item john@example.com 339 to=maildir:/r at=2013-07-12T15:00:00Z"
            ),
            vec![(339, "Inbox".to_string())]
        );
        // external: one target per account.
        let plan = plan(&src, &parse_request("external to=maildir:/r").unwrap(), 0).unwrap();
        let targets: Vec<_> = plan.groups.iter().map(|g| g.target.clone()).collect();
        assert!(targets.contains(&TargetSpec::Maildir("/r/anna@example.com".into())));
        assert_eq!(plan.groups.len(), 3);
        let by_domain = parse_request("external domains=EXAMPLE.com to=maildir:/r").unwrap();
        assert_eq!(super::plan(&src, &by_domain, 0).unwrap().groups.len(), 3);
        let nowhere = parse_request("external domains=nowhere.org to=maildir:/r").unwrap();
        assert!(check(&src, &nowhere)
            .unwrap_err()
            .contains("no account in domain"));
        let e = check(&src, &parse_request("item nobody 1 to=maildir:/r").unwrap());
        assert!(e.unwrap_err().contains("unknown account"));
    }

    #[test]
    fn keyword_is_the_utc_date() {
        // 2026-11-23T23:59:59Z
        assert_eq!(undelete_keyword(1_795_478_399_000), "undelete_23_11_26");
    }

    #[test]
    fn report_in_the_vendor_shape() {
        let mut r = Report::default();
        r.count("a@example.com", "1", &ItemOutcome::Restored);
        r.count("a@example.com", "2", &ItemOutcome::Skipped);
        r.count(
            "a@example.com",
            "1255",
            &ItemOutcome::Unrestored(Reason::ReadError, "missing".into()),
        );
        r.count(
            "a@example.com",
            "1369",
            &ItemOutcome::Unrestored(Reason::Rejected, "NO".into()),
        );
        assert_eq!(
            r.render(),
            "- stats -\nRestored Items: 1\nSkipped Items:  1\nUnrestored Items: 2\n\n\
             - unrestored items -\naccount: a@example.com\nunrestored items: 1255,1369\n\
             1255: read error: missing\n1369: rejected by the target: NO\n"
        );
    }
}
