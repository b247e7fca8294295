//! How a plan meets its target while it runs: one connection per group
//! that is reopened when lost ([`Session`]), and folder names that the
//! target refuses shortened until it takes them ([`FolderNames`]). No
//! single item or folder ends a job: only a target that cannot be reached
//! (after a few attempts), a stop, or the job's own journal failing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::restore::cancel::Cancel;
use crate::restore::folder_tree::FolderTree;
use crate::restore::target::{open_target_with, Target, TargetSpec};
use crate::restore::wire::{is_connection_problem, is_protocol_error, is_stopped};

/// Connection troubles in a row (failed opens or lost connections with no
/// success between) after which the job gives up.
const MAX_TROUBLES: u32 = 3;

/// Why a group cannot go on.
#[derive(Debug)]
pub enum Fatal {
    Stopped,
    Failed(String),
}

/// The target of one group, opened on first use and again after a lost
/// connection.
pub struct Session<'a> {
    spec: &'a TargetSpec,
    account: &'a str,
    cancel: &'a Arc<Cancel>,
    target: Option<Box<dyn Target>>,
    troubles: u32,
    /// The last [`Session::call`] needed a new connection.
    retried: bool,
}

impl<'a> Session<'a> {
    pub fn new(spec: &'a TargetSpec, account: &'a str, cancel: &'a Arc<Cancel>) -> Session<'a> {
        Session {
            spec,
            account,
            cancel,
            target: None,
            troubles: 0,
            retried: false,
        }
    }

    /// Run `f` on the target. `Ok(Err(e))` is the target refusing (its
    /// words in `e`); a lost connection is reopened and `f` run again.
    pub fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut dyn Target) -> Result<T>,
    ) -> Result<Result<T>, Fatal> {
        self.retried = false;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Fatal::Stopped);
            }
            let target = match self.target.as_mut() {
                Some(t) => t,
                None => {
                    let t = self.open()?;
                    self.target.insert(t)
                }
            };
            match f(&mut **target) {
                Ok(v) => {
                    self.troubles = 0;
                    return Ok(Ok(v));
                }
                Err(e) if self.cancel.is_cancelled() || is_stopped(&e) => {
                    return Err(Fatal::Stopped)
                }
                Err(e) if is_protocol_error(&e) => return Err(Fatal::Failed(format!("{e:#}"))),
                Err(e) if is_connection_problem(&e) => {
                    self.target = None;
                    self.retried = true;
                    self.trouble(&format!("{e:#}"))?;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    fn open(&mut self) -> Result<Box<dyn Target>, Fatal> {
        loop {
            match open_target_with(self.spec, self.cancel) {
                Ok(t) => return Ok(t),
                Err(e) if self.cancel.is_cancelled() || is_stopped(&e) => {
                    return Err(Fatal::Stopped)
                }
                Err(e) if is_connection_problem(&e) && !is_protocol_error(&e) => {
                    self.trouble(&format!("opening the target for {}: {e:#}", self.account))?;
                }
                Err(e) => {
                    return Err(Fatal::Failed(format!(
                        "opening the target for {}: {e:#}",
                        self.account
                    )))
                }
            }
        }
    }

    /// Count one connection trouble; past the limit the group fails.
    fn trouble(&mut self, why: &str) -> Result<(), Fatal> {
        self.troubles += 1;
        if self.troubles > MAX_TROUBLES {
            return Err(Fatal::Failed(format!(
                "{why} (gave up after {MAX_TROUBLES} new connections)"
            )));
        }
        log::warn!("{why}: connecting again ({}/{MAX_TROUBLES})", self.troubles);
        std::thread::sleep(Duration::from_millis(200 * u64::from(self.troubles)));
        Ok(())
    }

    /// Whether the last call needed a new connection (an APPEND whose
    /// answer was lost, then found in the target, was restored by us).
    pub fn retried(&self) -> bool {
        self.retried
    }

    /// Close the target (errors only logged: everything is stored).
    pub fn finish(&mut self) {
        if let Some(mut t) = self.target.take() {
            if let Err(e) = t.finish() {
                log::warn!("closing the target for {}: {e:#}", self.account);
            }
        }
    }
}

/// Why a folder cannot be had.
pub enum Unresolved {
    /// The target refused every name tried: its words.
    Refused(String),
    Fatal(Fatal),
}

/// A folder renamed to fit the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renamed {
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// The names a group's folders have in the target, by node of the plan's
/// [`FolderTree`]: memory grows with the number of folders, not with their
/// depth times their number.
#[derive(Default)]
pub struct FolderNames {
    /// Per node: its name in the target, or why the target refused it.
    names: HashMap<usize, Result<String, String>>,
    last: Option<(usize, Vec<String>)>,
    pub renamed: Vec<Renamed>,
}

impl FolderNames {
    /// The folder's path in the target, creating it (and its parents)
    /// there; names the target refuses are shortened first.
    pub fn resolve(
        &mut self,
        tree: &FolderTree,
        node: usize,
        session: &mut Session,
    ) -> Result<Vec<String>, Unresolved> {
        if let Some((n, target)) = &self.last {
            if *n == node {
                return Ok(target.clone());
            }
        }
        // Up to the root: the nodes not resolved yet, deepest first, and
        // the target names of the resolved ones above them.
        let mut todo = Vec::new();
        let mut known = Vec::new();
        let mut n = node;
        while let Some((parent, name)) = tree.parent(n) {
            match self.names.get(&n) {
                Some(Err(why)) => return Err(Unresolved::Refused(why.clone())),
                Some(Ok(t)) => known.push(t.clone()),
                None if known.is_empty() => todo.push((n, name)),
                None => unreachable!("a node is resolved only after its parent"),
            }
            n = parent;
        }
        known.reverse();
        let mut mapped = known;
        for &(n, name) in todo.iter().rev() {
            let got = self.create(&mapped, name, session)?;
            self.names.insert(n, got.clone());
            match got {
                Ok(t) => {
                    if t != name {
                        let mut new = mapped.clone();
                        new.push(t.clone());
                        self.renamed.push(Renamed {
                            old: tree.path(n),
                            new,
                        });
                    }
                    mapped.push(t);
                }
                Err(why) => return Err(Unresolved::Refused(why)),
            }
        }
        self.last = Some((node, mapped.clone()));
        Ok(mapped)
    }

    /// Create `parent/name`, or a shortened name; the name it got, or the
    /// target's words for the last name refused.
    fn create(
        &mut self,
        parent: &[String],
        name: &str,
        session: &mut Session,
    ) -> Result<Result<String, String>, Unresolved> {
        let mut why = String::new();
        for cand in candidates(name) {
            let mut path = parent.to_vec();
            path.push(cand.clone());
            match session.call(|t| t.ensure_folder(&path)) {
                Ok(Ok(())) => return Ok(Ok(cand)),
                Ok(Err(e)) => {
                    log::debug!("the target refused folder {cand:?}: {e:#}");
                    why = format!("{e:#}");
                }
                Err(f) => return Err(Unresolved::Fatal(f)),
            }
        }
        Ok(Err(why))
    }
}

/// The names tried for a folder, in order: itself, then shorter and
/// plainer forms (see [`shorten`]).
pub fn candidates(name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    for (budget, plain) in [(120, false), (60, true), (24, true)] {
        let s = shorten(name, budget, plain);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `name` in at most `budget` bytes, deterministically: when it must
/// change, its start (with only letters, digits, blank, `_` and `-` when
/// `plain`, others becoming `_`) then `~` and 8 hex digits of its SHA-256,
/// so two long names with one start stay apart.
pub fn shorten(name: &str, budget: usize, plain: bool) -> String {
    let base: String = if plain {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || " _-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    } else {
        name.to_string()
    };
    if base == name && name.len() <= budget {
        return base;
    }
    let tag: String = Sha256::digest(name.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut keep = budget.saturating_sub(9).min(base.len());
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}~{tag}", &base[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_is_deterministic_and_fits() {
        let long = "é".repeat(150);
        let s = shorten(&long, 120, false);
        assert!(s.len() <= 120, "{}", s.len());
        assert_eq!(s, shorten(&long, 120, false));
        assert!(s.ends_with(&shorten(&long, 24, true)[15..]));
        assert_eq!(shorten("Inbox", 24, true), "Inbox");
        assert_ne!(shorten("a*b", 24, true), shorten("a%b", 24, true));
        let c = candidates(&"x".repeat(300));
        assert_eq!(c.len(), 4);
        assert_eq!(c[3].len(), 24);
        assert_eq!(candidates("Inbox"), vec!["Inbox".to_string()]);
    }
}
