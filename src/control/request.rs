//! Restore request lines, as written to `.control/restore`:
//!
//! ```text
//! item     ACCOUNT ITEM_ID            to=TARGET [folder=NAME] [at=INSTANT]
//! account  ACCOUNT DATE|last          to=TARGET
//! undelete ACCOUNT FROM|first TO|last to=TARGET
//! external [accounts=A,B] [domains=D] to=TARGET
//! ```
//!
//! - Words are separated by blanks; a value may be double-quoted to hold
//!   blanks (`folder="Old Mail/2013"`, with `\"` and `\\` inside quotes).
//!   The positional words come first, in order; everything after them is
//!   `key=value`, each key at most once.
//! - TARGET is `maildir:/ABS/PATH`, `mbox:/ABS/PATH` (absolute, no `..`),
//!   or `imap://USER@HOST[:PORT][/PREFIX][?starttls][&timeout=SECS]` /
//!   `imaps://...[?timeout=SECS]` (a deadline per command, 120 s if unset)
//!   (ports default to 143 / 993; USER may contain `@` or be `%`-escaped;
//!   PREFIX components are separated by `/`). IMAP targets need
//!   `password_file=/ABS/PATH` (first line is the password; it must be
//!   readable now, a regular file of at most 4 KiB owned by the writer or
//!   by root, and not a symbolic link) and may add `ca_file=/ABS/PATH` (PEM certificates to
//!   trust). These two keys are refused for other targets.
//! - DATE and INSTANT: `YYYY-MM-DD` is the end of that UTC day
//!   (23:59:59.999); instants are `2013-07-12T15:03:00`, with `Z`, with
//!   `.250Z` (1 to 3 fraction digits), or `20130712.150300`, all UTC. For
//!   `undelete`, a FROM given as a day means the start of that day, so
//!   `undelete a 2013-07-12 2013-07-12` covers the whole day; FROM after TO
//!   is refused.
//! - `folder=` is a `/`-separated folder path (`Inbox/Projects`).
//! - Whether the account or item exists is checked by the caller.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{ItemId, Millis};
use crate::restore::secret::{read_password, read_small_file, Owner, CA_FILE_MAX};
use crate::restore::target::{ImapSpec, TargetSpec, TlsMode};
use crate::timeline::{self, DAY_MS};

/// Why a request line was refused (shown in `.control/last-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError(msg.into()))
}

/// One accepted request (serialisable, so queued jobs survive a restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// One item, as it was at `at` (the latest state when `None`), into its
    /// own folder or `folder`.
    Item {
        account: String,
        item: ItemId,
        target: TargetSpec,
        folder: Option<Vec<String>>,
        at: Option<Millis>,
    },
    /// The whole mailbox as it was at `at` (the latest state when `None`).
    Account {
        account: String,
        at: Option<Millis>,
        target: TargetSpec,
    },
    /// Items deleted in `[from, to]`; `None` is the first / last recorded.
    Undelete {
        account: String,
        from: Option<Millis>,
        to: Option<Millis>,
        target: TargetSpec,
    },
    /// Every account, or those named or in the given domains.
    External {
        accounts: Vec<String>,
        domains: Vec<String>,
        target: TargetSpec,
    },
}

impl Request {
    pub fn target(&self) -> &TargetSpec {
        match self {
            Request::Item { target, .. }
            | Request::Account { target, .. }
            | Request::Undelete { target, .. }
            | Request::External { target, .. } => target,
        }
    }
}

/// Parse one request line written by this process's user (a trailing
/// line end is ignored).
pub fn parse_request(line: &str) -> Result<Request, RequestError> {
    parse_request_by(line, crate::restore::secret::own_uid())
}

/// Parse one request line written by user `writer`: a password file must
/// be owned by `writer` or by root.
pub fn parse_request_by(line: &str, writer: u32) -> Result<Request, RequestError> {
    let words = split_words(line.trim_end_matches(['\n', '\r']))?;
    let Some((verb, rest)) = words.split_first() else {
        return err("empty request: write one of item, account, undelete, external");
    };
    let (positional, keys): (usize, &[&str]) = match verb.as_str() {
        "item" => (2, &["to", "folder", "at"]),
        "account" => (2, &["to"]),
        "undelete" => (3, &["to"]),
        "external" => (0, &["to", "accounts", "domains"]),
        other => {
            return err(format!(
                "unknown request {other:?}: write one of item, account, undelete, external"
            ))
        }
    };
    let usage = match verb.as_str() {
        "item" => "item ACCOUNT ITEM_ID to=TARGET [folder=NAME] [at=INSTANT]",
        "account" => "account ACCOUNT DATE|last to=TARGET",
        "undelete" => "undelete ACCOUNT FROM|first TO|last to=TARGET",
        _ => "external [accounts=A,B] [domains=D] to=TARGET",
    };
    if rest.len() < positional || rest[..positional].iter().any(|w| is_key_value(w)) {
        return err(format!(
            "{verb} needs {positional} words before the options: {usage}"
        ));
    }
    let (args, options) = rest.split_at(positional);
    let mut opts: Vec<(String, String)> = Vec::new();
    for o in options {
        let Some((k, v)) = o.split_once('=') else {
            return err(format!("unexpected word {o:?}: {usage}"));
        };
        let allowed = keys.contains(&k) || k == "password_file" || k == "ca_file";
        if !allowed {
            return err(format!("unknown option {k:?} for {verb}: {usage}"));
        }
        if opts.iter().any(|(seen, _)| seen == k) {
            return err(format!("option {k} given twice"));
        }
        if v.is_empty() {
            return err(format!("option {k} has an empty value"));
        }
        opts.push((k.to_string(), v.to_string()));
    }
    let get = |k: &str| {
        opts.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let Some(to) = get("to") else {
        return err(format!("missing to=TARGET: {usage}"));
    };
    let target = parse_target(to, get("password_file"), get("ca_file"), writer)?;

    match verb.as_str() {
        "item" => {
            let account = parse_account(&args[0])?;
            let item = match args[1].parse::<ItemId>() {
                Ok(id) if id >= 0 => id,
                _ => return err(format!("bad item id {:?}: expected a number", args[1])),
            };
            let folder = get("folder").map(parse_folder).transpose()?;
            let at = get("at")
                .map(|s| parse_when(s).ok_or_else(|| bad_date("at", s)))
                .transpose()?;
            Ok(Request::Item {
                account,
                item,
                target,
                folder,
                at,
            })
        }
        "account" => {
            let account = parse_account(&args[0])?;
            let at = match args[1].as_str() {
                "last" => None,
                s => Some(parse_when(s).ok_or_else(|| bad_date("DATE", s))?),
            };
            Ok(Request::Account {
                account,
                at,
                target,
            })
        }
        "undelete" => {
            let account = parse_account(&args[0])?;
            let from = match args[1].as_str() {
                "first" => None,
                s => Some(
                    timeline::parse_day(s)
                        .map(|d| d * DAY_MS)
                        .or_else(|| timeline::parse_instant(s))
                        .ok_or_else(|| bad_date("FROM", s))?,
                ),
            };
            let to = match args[2].as_str() {
                "last" => None,
                s => Some(parse_when(s).ok_or_else(|| bad_date("TO", s))?),
            };
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    return err(format!("FROM {} is after TO {}", args[1], args[2]));
                }
            }
            Ok(Request::Undelete {
                account,
                from,
                to,
                target,
            })
        }
        _ => {
            let list = |k: &str| -> Result<Vec<String>, RequestError> {
                match get(k) {
                    None => Ok(Vec::new()),
                    Some(v) => {
                        let items: Vec<String> = v.split(',').map(str::to_string).collect();
                        if items
                            .iter()
                            .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
                        {
                            return err(format!("{k}= has an empty or blank entry: {v:?}"));
                        }
                        Ok(items)
                    }
                }
            };
            Ok(Request::External {
                accounts: list("accounts")?,
                domains: list("domains")?,
                target,
            })
        }
    }
}

fn bad_date(what: &str, s: &str) -> RequestError {
    RequestError(format!(
        "bad {what} {s:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS[.mmm][Z] or YYYYMMDD.HHMMSS"
    ))
}

/// `key=value` with a key some request knows (so an account with `=` in it
/// is still a positional word).
fn is_key_value(w: &str) -> bool {
    const KEYS: [&str; 7] = [
        "to",
        "folder",
        "at",
        "accounts",
        "domains",
        "password_file",
        "ca_file",
    ];
    w.split_once('=').is_some_and(|(k, _)| KEYS.contains(&k))
}

fn parse_account(s: &str) -> Result<String, RequestError> {
    if s.is_empty() || s.chars().any(|c| c.is_control()) {
        return err(format!("bad account {s:?}"));
    }
    Ok(s.to_string())
}

fn parse_folder(s: &str) -> Result<Vec<String>, RequestError> {
    let comps: Vec<String> = s
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if comps.is_empty() {
        return err(format!(
            "bad folder {s:?}: expected a path like Inbox/Projects"
        ));
    }
    if comps
        .iter()
        .any(|c| c == "." || c == ".." || c.chars().any(char::is_control))
    {
        return err(format!(
            "bad folder {s:?}: no '.', '..' or control characters"
        ));
    }
    Ok(comps)
}

/// A day (its end) or an instant.
fn parse_when(s: &str) -> Option<Millis> {
    day_end(s).or_else(|| timeline::parse_instant(s))
}

/// `YYYY-MM-DD` → the last millisecond of that UTC day.
fn day_end(s: &str) -> Option<Millis> {
    timeline::parse_day(s).map(|d| timeline::PointInTime::end_of_day(d).millis())
}

/// Parse `to=` with the IMAP-only `password_file=` and `ca_file=`.
pub fn parse_target(
    to: &str,
    password_file: Option<&str>,
    ca_file: Option<&str>,
    writer: u32,
) -> Result<TargetSpec, RequestError> {
    if let Some(path) = to.strip_prefix("maildir:") {
        imap_only(password_file, ca_file, "maildir")?;
        return Ok(TargetSpec::Maildir(local_path("maildir", path)?));
    }
    if let Some(path) = to.strip_prefix("mbox:") {
        imap_only(password_file, ca_file, "mbox")?;
        return Ok(TargetSpec::Mbox(local_path("mbox", path)?));
    }
    let (tls, rest, default_port) = if let Some(r) = to.strip_prefix("imaps://") {
        (TlsMode::Implicit, r, 993)
    } else if let Some(r) = to.strip_prefix("imap://") {
        (TlsMode::Plain, r, 143)
    } else {
        return err(format!(
            "unknown target {to:?}: expected maildir:/PATH, mbox:/PATH, imap://USER@HOST[:PORT][/PREFIX] or imaps://..."
        ));
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let mut starttls = false;
    let mut timeout_secs = None;
    for q in query.into_iter().flat_map(|q| q.split('&')) {
        match q.split_once('=') {
            None if q == "starttls" => starttls = true,
            Some(("timeout", v)) => match v.parse::<u64>() {
                Ok(n) if (1..=86_400).contains(&n) => timeout_secs = Some(n),
                _ => return err(format!("bad ?timeout={v}: seconds, 1 to 86400")),
            },
            _ => {
                return err(format!(
                    "unknown IMAP option ?{q}: only ?starttls and ?timeout=SECS are known"
                ))
            }
        }
    }
    let tls = match (starttls, tls) {
        (false, t) => t,
        (true, TlsMode::Plain) => TlsMode::StartTls,
        (true, _) => return err("?starttls makes no sense with imaps:// (already TLS)"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let Some(at) = authority.rfind('@') else {
        return err(format!(
            "IMAP target {to:?} lacks USER@: imap://USER@HOST[:PORT]"
        ));
    };
    let user = percent_decode(&authority[..at])
        .ok_or_else(|| RequestError(format!("bad %-escape in IMAP user of {to:?}")))?;
    if user.is_empty() {
        return err(format!("IMAP target {to:?} has an empty user"));
    }
    let hostport = &authority[at + 1..];
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return err(format!("bad IPv6 host in {to:?}"));
        };
        (&v6[..end], v6[end + 1..].strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return err(format!("bad IMAP host {host:?} in {to:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return err(format!("bad IMAP port {p:?} in {to:?}")),
        },
    };
    let mut prefix = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let c = percent_decode(c)
            .ok_or_else(|| RequestError(format!("bad %-escape in IMAP prefix of {to:?}")))?;
        if c == "." || c == ".." || c.chars().any(char::is_control) {
            return err(format!("bad IMAP prefix component {c:?} in {to:?}"));
        }
        prefix.push(c);
    }
    let Some(pw) = password_file else {
        return err("IMAP targets need password_file=/PATH (its first line is the password)");
    };
    let password_file = local_path("password_file", pw)?;
    read_password(&password_file, Owner::RootOr(writer))
        .map_err(|e| RequestError(e.to_string()))?;
    let ca_file = ca_file.map(|c| local_path("ca_file", c)).transpose()?;
    if let Some(ca) = &ca_file {
        read_small_file("CA file", ca, CA_FILE_MAX, Owner::Any)
            .map_err(|e| RequestError(e.to_string()))?;
    }
    Ok(TargetSpec::Imap(ImapSpec {
        tls,
        user,
        host: host.to_string(),
        port,
        prefix,
        password_file,
        ca_file,
        timeout_secs,
    }))
}

fn imap_only(
    password_file: Option<&str>,
    ca_file: Option<&str>,
    kind: &str,
) -> Result<(), RequestError> {
    if password_file.is_some() {
        return err(format!(
            "password_file= only applies to imap targets, not {kind}"
        ));
    }
    if ca_file.is_some() {
        return err(format!("ca_file= only applies to imap targets, not {kind}"));
    }
    Ok(())
}

/// An absolute path without `..` (the daemon's working directory means
/// nothing to whoever writes the request).
fn local_path(what: &str, p: &str) -> Result<PathBuf, RequestError> {
    if p.is_empty() {
        return err(format!("{what} path is empty"));
    }
    let path = Path::new(p);
    if !path.is_absolute() {
        return err(format!("{what} path {p:?} must be absolute"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return err(format!("{what} path {p:?} must not contain '..'"));
    }
    Ok(path.to_path_buf())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Split on blanks; `"..."` groups (with `\"` and `\\`) inside a word.
fn split_words(line: &str) -> Result<Vec<String>, RequestError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return err("unterminated \" in request"),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => cur.push(e),
                            _ => return err("bad escape in quoted value: only \\\" and \\\\"),
                        },
                        Some(ch) => cur.push(ch),
                    }
                }
            }
            c if c == ' ' || c == '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c if c.is_control() => return err("control character in request"),
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_373_641_380_000; // 2013-07-12T15:03:00Z

    fn pwfile() -> (tempfile::NamedTempFile, String) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "secret\n").unwrap();
        let p = f.path().display().to_string();
        (f, p)
    }

    fn refused(line: &str, why: &str) {
        match parse_request(line) {
            Ok(r) => panic!("{line:?} accepted as {r:?}"),
            Err(e) => assert!(e.0.contains(why), "{line:?}: {:?} lacks {why:?}", e.0),
        }
    }

    #[test]
    fn days() {
        // A DATE is the end of that UTC day; the parsing itself is
        // timeline's (tested there).
        assert_eq!(day_end("2013-07-12"), Some(1_373_673_599_999));
        assert_eq!(day_end("1970-01-01"), Some(DAY_MS - 1));
        assert_eq!(day_end("2013-7-12"), None);
        assert_eq!(parse_when("2013-07-12T15:03:00.25Z"), Some(T0 + 250));
    }

    #[test]
    fn accepted_forms() {
        let (_f, pw) = pwfile();
        assert_eq!(
            parse_request("item john@example.com 339 to=maildir:/srv/r\n").unwrap(),
            Request::Item {
                account: "john@example.com".into(),
                item: 339,
                target: TargetSpec::Maildir("/srv/r".into()),
                folder: None,
                at: None,
            }
        );
        assert_eq!(
            parse_request("item a 1 to=mbox:/m folder=\"Old Mail/2013\" at=2013-07-12T15:03:00Z")
                .unwrap(),
            Request::Item {
                account: "a".into(),
                item: 1,
                target: TargetSpec::Mbox("/m".into()),
                folder: Some(vec!["Old Mail".into(), "2013".into()]),
                at: Some(T0),
            }
        );
        assert_eq!(
            parse_request("account a 2013-07-12 to=maildir:/x").unwrap(),
            Request::Account {
                account: "a".into(),
                at: Some(1_373_673_599_999),
                target: TargetSpec::Maildir("/x".into())
            }
        );
        assert!(matches!(
            parse_request("account a last to=maildir:/x").unwrap(),
            Request::Account { at: None, .. }
        ));
        assert!(matches!(
            parse_request("account a 20130712.150300 to=maildir:/x").unwrap(),
            Request::Account { at: Some(T0), .. }
        ));
        assert_eq!(
            parse_request("undelete a 2013-07-12 2013-07-12 to=maildir:/x").unwrap(),
            Request::Undelete {
                account: "a".into(),
                from: Some(1_373_587_200_000),
                to: Some(1_373_673_599_999),
                target: TargetSpec::Maildir("/x".into())
            }
        );
        assert!(matches!(
            parse_request("undelete a first last to=maildir:/x").unwrap(),
            Request::Undelete {
                from: None,
                to: None,
                ..
            }
        ));
        assert!(matches!(
            parse_request("undelete a 2013-07-12T15:03:00 2013-07-12T15:03:00.250Z to=maildir:/x")
                .unwrap(),
            Request::Undelete { from: Some(T0), to: Some(t), .. } if t == T0 + 250
        ));
        assert_eq!(
            parse_request("external accounts=a@x,b@x domains=y.org to=mbox:/m").unwrap(),
            Request::External {
                accounts: vec!["a@x".into(), "b@x".into()],
                domains: vec!["y.org".into()],
                target: TargetSpec::Mbox("/m".into())
            }
        );
        assert!(matches!(
            parse_request("  external\tto=mbox:/m  ").unwrap(),
            Request::External { ref accounts, .. } if accounts.is_empty()
        ));
        // An account with '=' in it is positional.
        assert!(matches!(
            parse_request("account a=b@x last to=mbox:/m").unwrap(),
            Request::Account { ref account, .. } if account == "a=b@x"
        ));

        let r = parse_request(&format!(
            "account a last to=imap://admin@example.com@127.0.0.1:1143/Restored/2013 password_file={pw}"
        ))
        .unwrap();
        assert_eq!(
            r.target(),
            &TargetSpec::Imap(ImapSpec {
                tls: TlsMode::Plain,
                user: "admin@example.com".into(),
                host: "127.0.0.1".into(),
                port: 1143,
                prefix: vec!["Restored".into(), "2013".into()],
                password_file: pw.clone().into(),
                ca_file: None,
                timeout_secs: None,
            })
        );
        let r = parse_request(&format!(
            "account a last to=imap://u%40x@mail.example.com?starttls password_file={pw} ca_file={pw}"
        ))
        .unwrap();
        let TargetSpec::Imap(s) = r.target() else {
            panic!()
        };
        assert_eq!(
            (
                s.tls,
                s.user.as_str(),
                s.port,
                s.prefix.len(),
                s.ca_file.is_some()
            ),
            (TlsMode::StartTls, "u@x", 143, 0, true)
        );
        let r = parse_request(&format!(
            "account a last to=imaps://u@[::1]/P password_file={pw}"
        ))
        .unwrap();
        let TargetSpec::Imap(s) = r.target() else {
            panic!()
        };
        assert_eq!(
            (s.tls, s.host.as_str(), s.port),
            (TlsMode::Implicit, "::1", 993)
        );
    }

    #[test]
    fn serialises_for_the_queue() {
        let r = parse_request("undelete a first 2013-07-12 to=maildir:/x").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
    }

    #[test]
    fn refused_forms() {
        let (_f, pw) = pwfile();
        refused("", "empty request");
        refused("   \n", "empty request");
        refused("restore a 1 to=maildir:/x", "unknown request");
        refused("item a to=maildir:/x", "needs 2 words");
        refused("item a 1", "missing to=");
        refused("item a x1 to=maildir:/x", "bad item id");
        refused("item a -1 to=maildir:/x", "bad item id");
        refused("item a 1 to=maildir:/x at=yesterday", "bad at");
        refused("item a 1 to=maildir:/x folder=/", "bad folder");
        refused("item a 1 to=maildir:/x folder=a/../b", "bad folder");
        refused("item a 1 to=maildir:/x bogus=1", "unknown option");
        refused("item a 1 to=maildir:/x stray", "unexpected word");
        refused("item a 1 to=maildir:/x to=maildir:/y", "given twice");
        refused("item a 1 to=", "empty value");
        refused("account a 2013-13-01 to=maildir:/x", "bad DATE");
        refused(
            "account a 2013-07-12 to=maildir:/x folder=a",
            "unknown option",
        );
        refused("account a latest to=maildir:/x", "bad DATE");
        refused("undelete a 2013-07-13 2013-07-12 to=maildir:/x", "after TO");
        refused("undelete a last first to=maildir:/x", "bad FROM");
        refused("undelete a first to=maildir:/x", "needs 3 words");
        refused("external a to=mbox:/m", "unexpected word");
        refused("external accounts=a,,b to=mbox:/m", "empty or blank");
        refused("external to=mbox:/m folder=x", "unknown option");
        refused("account a last to=pop3://x", "unknown target");
        refused("account a last to=maildir:relative/dir", "must be absolute");
        refused("account a last to=mbox:/a/../etc", "must not contain");
        refused("account a last to=maildir:", "path is empty");
        refused(
            &format!("account a last to=maildir:/x password_file={pw}"),
            "only applies",
        );
        refused("account a last to=imap://u@h:143", "need password_file");
        refused(
            "account a last to=imap://u@h:143 password_file=/nonexistent/pw",
            "password file /nonexistent/pw: cannot be read",
        );
        refused(
            &format!("account a last to=imap://h:143 password_file={pw}"),
            "lacks USER@",
        );
        refused(
            &format!("account a last to=imap://u@h:0 password_file={pw}"),
            "bad IMAP port",
        );
        refused(
            &format!("account a last to=imap://u@h:x password_file={pw}"),
            "bad IMAP port",
        );
        refused(
            &format!("account a last to=imap://u@h?tls password_file={pw}"),
            "unknown IMAP option",
        );
        refused(
            &format!("account a last to=imaps://u@h?starttls password_file={pw}"),
            "makes no sense",
        );
        refused(
            &format!("account a last to=imap://u@h/a/../b password_file={pw}"),
            "bad IMAP prefix",
        );
        refused(
            &format!("account a last to=imap://u@ho$t password_file={pw}"),
            "bad IMAP host",
        );
        refused("item a 1 to=\"maildir:/x", "unterminated");
        refused("item a 1 to=maildir:/x\u{1}", "control character");
    }
}
