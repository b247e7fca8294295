//! Internal Cyrus mailbox names -> the folder tree (cyrus.md §1, §3.2).
//!
//! An internal name is `[<domain>!]user.<userid>[.<folder>...]`: with
//! `virtdomains` the domain comes first and ends with `!`
//! (`example.com!user.jane.Work`), and the user's INBOX is the name with no
//! folder part. The hierarchy separator is always `.` inside; a `.` that is
//! part of a userid or folder name (`unixhierarchysep: yes`) is stored as
//! `^` (`user.john^smith.v1^2`). Folder parts are IMAP modified UTF-7.
//! Delayed-deleted mailboxes are `[<domain>!]DELETED.<name>.<hex time>`.
//!
//! `^` is always read as `.`: with `unixhierarchysep: no` Cyrus 3.6 also
//! accepts a literal `^` in a folder name and stores it as it is
//! (`user.pat.a^b`), which then shows as `a.b`. The backup does not say
//! which setting wrote it; `yes` is the upstream default since Cyrus 3.0.

use super::text::decode_mutf7;

/// Prefix of delayed-deleted mailboxes (`deletedprefix`).
const DELETED_PREFIX: &str = "DELETED.";

/// The name without its `<domain>!` prefix, and where that part starts.
fn local(internal: &str) -> (usize, &str) {
    match internal.find('!') {
        Some(i) => (i + 1, &internal[i + 1..]),
        None => (0, internal),
    }
}

/// Whether the name is a user's INBOX: `[<domain>!]user.<userid>`.
fn is_inbox(internal: &str) -> bool {
    let (_, l) = local(internal);
    l.strip_prefix("user.")
        .is_some_and(|u| !u.is_empty() && !u.contains('.'))
}

/// Whether the mailbox was deleted with `delete_mode: delayed`.
pub fn is_deleted(internal: &str) -> bool {
    local(internal).1.starts_with(DELETED_PREFIX)
}

/// The internal name of the parent folder; `None` for an INBOX and for a
/// top-level name, which sit under the view root.
pub fn parent(internal: &str) -> Option<&str> {
    if is_inbox(internal) {
        return None;
    }
    let (start, l) = local(internal);
    l.rfind('.').map(|i| &internal[..start + i])
}

/// The folder name shown for an internal name: `INBOX`, or its last part
/// with `^` read as `.` and modified UTF-7 decoded.
pub fn display(internal: &str) -> String {
    if is_inbox(internal) {
        return "INBOX".to_string();
    }
    let (_, l) = local(internal);
    let last = l.rsplit('.').next().unwrap_or(l);
    decode_mutf7(&last.replace('^', "."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert_eq!(display("user.alice"), "INBOX");
        assert_eq!(parent("user.alice"), None);
        assert_eq!(
            parent("user.alice.Archive.2024"),
            Some("user.alice.Archive")
        );
        assert_eq!(display("user.alice.R&AOk-unions"), "Réunions");
        assert!(is_deleted("DELETED.user.alice.Projects.6B03F7FD"));
        assert!(!is_deleted("user.alice.DELETED"));
    }

    #[test]
    fn virtdomains() {
        assert_eq!(display("example.com!user.jane"), "INBOX");
        assert_eq!(parent("example.com!user.jane"), None);
        assert_eq!(
            parent("example.com!user.jane.Work"),
            Some("example.com!user.jane")
        );
        assert_eq!(
            parent("example.com!user.jane.Work.Y2025"),
            Some("example.com!user.jane.Work")
        );
        assert_eq!(display("example.com!user.jane.Work.Y2025"), "Y2025");
        assert!(is_deleted(
            "example.com!DELETED.user.jane.R&AOk-unions.6B0E8E3C"
        ));
    }

    #[test]
    fn unixhierarchysep() {
        assert_eq!(display("user.john^smith"), "INBOX");
        assert_eq!(parent("user.john^smith.v1^2"), Some("user.john^smith"));
        assert_eq!(display("user.john^smith.v1^2"), "v1.2");
        assert_eq!(display("user.john^smith.Projects.2025^Q1"), "2025.Q1");
    }

    #[test]
    fn other_names_sit_at_the_root() {
        assert_eq!(parent("shared"), None);
        assert_eq!(display("shared"), "shared");
        assert_eq!(parent("shared.x"), Some("shared"));
    }
}
