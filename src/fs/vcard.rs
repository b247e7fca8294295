//! Contacts as vCard 4.0 (RFC 6350), made from the contact's fields.

use crate::catalog::StateRow;
use crate::fs::names::contact_name;

/// Escape a vCard text value (RFC 6350 section 3.4).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The vCard of a contact state: FN and N always, then the fields it has.
pub fn from_row(row: &StateRow) -> Vec<u8> {
    let fields: serde_json::Map<String, serde_json::Value> = row
        .fields
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let get = |k: &str| -> String {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut lines = vec!["BEGIN:VCARD".to_string(), "VERSION:4.0".to_string()];
    let full = row
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| contact_name(row));
    lines.push(format!("FN:{}", escape(&full)));
    lines.push(format!(
        "N:{};{};{};;",
        escape(&get("lastName")),
        escape(&get("firstName")),
        escape(&get("middleName"))
    ));
    for (key, prop) in [
        ("email", "EMAIL"),
        ("email2", "EMAIL"),
        ("email3", "EMAIL"),
        ("mobilePhone", "TEL;TYPE=cell"),
        ("workPhone", "TEL;TYPE=work"),
        ("homePhone", "TEL;TYPE=home"),
        ("company", "ORG"),
        ("jobTitle", "TITLE"),
        ("notes", "NOTE"),
        ("birthday", "BDAY"),
    ] {
        let v = get(key);
        if !v.is_empty() {
            lines.push(format!("{prop}:{}", escape(&v)));
        }
    }
    lines.push(format!("UID:mailbackfs-{}", row.item_id));
    lines.push("END:VCARD".to_string());
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}
