//! The small XML files of a session, matched by local name; unknown elements
//! and attributes are ignored, and a file that does not parse is as if
//! absent.

use roxmltree::{Document, Node, ParsingOptions};

/// The text of an XML file, or `None` when it does not parse.
fn parse(bytes: &[u8]) -> Option<Document<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 1_000_000,
        ..ParsingOptions::default()
    };
    match Document::parse_with_options(text, opts) {
        Ok(d) => Some(d),
        Err(e) => {
            log::debug!("XML does not parse: {e}");
            None
        }
    }
}

fn named<'a>(n: &Node<'a, 'a>, local: &str) -> bool {
    n.is_element() && n.tag_name().name().eq_ignore_ascii_case(local)
}

/// An attribute by local name, case-insensitively, trimmed, non-empty.
fn attr(n: &Node, local: &str) -> Option<String> {
    n.attributes()
        .find(|a| a.name().eq_ignore_ascii_case(local))
        .map(|a| a.value().trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `accounts.xml`: (zimbraId, address) of every `<account>`, in order.
pub fn accounts(bytes: &[u8]) -> Vec<(String, String)> {
    let Some(doc) = parse(bytes) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| named(n, "account"))
        .filter_map(|n| Some((attr(&n, "zimbraId")?, attr(&n, "email")?)))
        .collect()
}

/// What `meta.xml` says of an account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub email: Option<String>,
    pub mailbox_id: Option<i64>,
}

/// `meta.xml`: the `<accountBackup>` element's `email` and `mailboxId`.
pub fn meta(bytes: &[u8]) -> Option<Meta> {
    let doc = parse(bytes)?;
    let n = doc.descendants().find(|n| named(n, "accountBackup"))?;
    Some(Meta {
        email: attr(&n, "email"),
        mailbox_id: attr(&n, "mailboxId").and_then(|v| v.parse().ok()),
    })
}

/// `ldap.xml`: the first value of the attribute `name`.
pub fn ldap_value(bytes: &[u8], name: &str) -> Option<String> {
    let doc = parse(bytes)?;
    doc.descendants()
        .filter(|n| named(n, "attribute"))
        .filter(|n| attr(n, "name").is_some_and(|v| v.eq_ignore_ascii_case(name)))
        .flat_map(|n| {
            n.children()
                .filter(|c| named(c, "value"))
                .collect::<Vec<_>>()
        })
        .filter_map(|v| v.text().map(|t| t.trim().to_string()))
        .find(|t| !t.is_empty())
}

/// `db_schema.xml`: the column names of `<table name="mail_item">`, sorted
/// by `position` when every column has one, else in document order. `None`
/// when the file does not parse or has no such table.
pub fn columns(bytes: &[u8]) -> Option<Vec<String>> {
    let doc = parse(bytes)?;
    let table = doc.descendants().find(|n| {
        named(n, "table") && attr(n, "name").is_some_and(|v| v.eq_ignore_ascii_case("mail_item"))
    })?;
    let cols: Vec<(Option<i64>, String)> = table
        .descendants()
        .filter(|n| named(n, "column"))
        .filter_map(|n| {
            let name = attr(&n, "name")?.to_ascii_lowercase();
            Some((attr(&n, "position").and_then(|p| p.parse().ok()), name))
        })
        .collect();
    if cols.is_empty() {
        return None;
    }
    let mut cols = cols;
    if cols.iter().all(|(p, _)| p.is_some()) {
        cols.sort_by_key(|(p, _)| *p);
    }
    Some(cols.into_iter().map(|(_, n)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = br#"<allAccounts><account zimbraId="z1" email="a@x" latestFullBackupLabel="full-1"/><x/></allAccounts>"#;
        assert_eq!(accounts(a), vec![("z1".into(), "a@x".into())]);
        let m = br#"<?xml version="1.0"?><b:accountBackup xmlns:b="urn:x" zimbraId="z" email="e@x" mailboxId="7"/>"#;
        assert_eq!(meta(m).unwrap().mailbox_id, Some(7));
        let l = br#"<attributes><attribute name="zimbraAccountStatus"><value>locked</value></attribute></attributes>"#;
        assert_eq!(
            ldap_value(l, "zimbraaccountstatus").as_deref(),
            Some("locked")
        );
        let s = br#"<schema><table name="mail_item"><column name="id" position="2"/><column name="mailbox_id" position="1"/></table></schema>"#;
        assert_eq!(columns(s).unwrap(), vec!["mailbox_id", "id"]);
        assert_eq!(meta(b"<not xml"), None);
    }
}
