//! Contacts as vCard 4.0 (RFC 6350), made from the contact's fields
//! (Zimbra's contact attribute names: `firstName`, `email`, `mobilePhone`,
//! `homeStreet`...). Lines end with CRLF and are folded at 75 octets.

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
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A structured value (N, ADR, ORG): components escaped, joined by `;`.
fn compound(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| escape(p))
        .collect::<Vec<_>>()
        .join(";")
}

/// Fold a content line at 75 octets (RFC 6350 section 3.2), on UTF-8
/// boundaries, and end it with CRLF.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// A date as vCard wants it: `1975-04-12` becomes `19750412`; other forms
/// are passed as text.
fn vcard_date(v: &str) -> (bool, String) {
    let digits: String = v.chars().filter(|c| *c != '-').collect();
    let iso = v.len() == 10
        && v.as_bytes()[4] == b'-'
        && v.as_bytes()[7] == b'-'
        && digits.len() == 8
        && digits.chars().all(|c| c.is_ascii_digit());
    if iso {
        (true, digits)
    } else {
        (false, v.to_string())
    }
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
                serde_json::Value::String(s) => Some(s.trim().to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut lines = vec!["BEGIN:VCARD".to_string(), "VERSION:4.0".to_string()];
    let mut full = row
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| contact_name(row));
    if full.trim().is_empty() {
        full = format!("Contact {}", row.label);
    }
    lines.push(format!("FN:{}", escape(&full)));
    lines.push(format!(
        "N:{}",
        compound(&[
            get("lastName"),
            get("firstName"),
            get("middleName"),
            get("namePrefix"),
            get("nameSuffix"),
        ])
    ));
    let nickname = get("nickname");
    if !nickname.is_empty() {
        lines.push(format!("NICKNAME:{}", escape(&nickname)));
    }
    for key in ["email", "email2", "email3", "workEmail1", "workEmail2"] {
        let v = get(key);
        if !v.is_empty() {
            let ty = if key.starts_with("work") {
                ";TYPE=work"
            } else {
                ""
            };
            lines.push(format!("EMAIL{ty}:{}", escape(&v)));
        }
    }
    for (key, ty) in [
        ("mobilePhone", "cell"),
        ("workPhone", "work,voice"),
        ("workPhone2", "work,voice"),
        ("homePhone", "home,voice"),
        ("homePhone2", "home,voice"),
        ("otherPhone", "voice"),
        ("workFax", "work,fax"),
        ("homeFax", "home,fax"),
        ("pager", "pager"),
        ("carPhone", "voice"),
    ] {
        let v = get(key);
        if !v.is_empty() {
            lines.push(format!("TEL;TYPE={ty}:{}", escape(&v)));
        }
    }
    for (prefix, ty) in [
        ("home", ";TYPE=home"),
        ("work", ";TYPE=work"),
        ("other", ""),
    ] {
        let parts: Vec<String> = ["Street", "City", "State", "PostalCode", "Country"]
            .iter()
            .map(|s| get(&format!("{prefix}{s}")))
            .collect();
        if parts.iter().any(|p| !p.is_empty()) {
            // ADR: PO box; extended; street; locality; region; code; country.
            let mut adr = vec![String::new(), String::new()];
            adr.extend(parts);
            lines.push(format!("ADR{ty}:{}", compound(&adr)));
        }
    }
    let (company, department) = (get("company"), get("department"));
    if !company.is_empty() || !department.is_empty() {
        let mut org = vec![company];
        if !department.is_empty() {
            org.push(department);
        }
        lines.push(format!("ORG:{}", compound(&org)));
    }
    let title = get("jobTitle");
    if !title.is_empty() {
        lines.push(format!("TITLE:{}", escape(&title)));
    }
    for (key, ty) in [("homeURL", ";TYPE=home"), ("workURL", ";TYPE=work")] {
        let v = get(key);
        if !v.is_empty() {
            lines.push(format!("URL{ty}:{v}"));
        }
    }
    let bday = get("birthday");
    if !bday.is_empty() {
        match vcard_date(&bday) {
            (true, d) => lines.push(format!("BDAY:{d}")),
            (false, t) => lines.push(format!("BDAY;VALUE=text:{}", escape(&t))),
        }
    }
    let note = get("notes");
    if !note.is_empty() {
        lines.push(format!("NOTE:{}", escape(&note)));
    }
    lines.push(format!("UID:urn:mailbackfs:item:{}", escape(&row.label)));
    lines.push("END:VCARD".to_string());
    let mut out = String::new();
    for l in &lines {
        fold(l, &mut out);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_on_char_boundaries() {
        let mut out = String::new();
        fold(&format!("NOTE:{}", "é".repeat(80)), &mut out);
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
        }
        assert_eq!(
            out.replace("\r\n ", ""),
            format!("NOTE:{}\r\n", "é".repeat(80))
        );
    }

    fn contact(fields: serde_json::Value) -> StateRow {
        StateRow {
            item_id: 12,
            seq: 0,
            label: "12".into(),
            history_key: "12".into(),
            start: 0,
            eff_end: None,
            last: true,
            deleted: false,
            kind: crate::model::ItemKind::Contact,
            folder_id: Some(7),
            name: None,
            subject: None,
            blob: None,
            size: None,
            date: None,
            flags: String::new(),
            tags: String::new(),
            fields: Some(fields.to_string()),
        }
    }

    #[test]
    fn every_field_parses_back_with_a_vcard_parser() {
        let row = contact(serde_json::json!({
            "firstName": "John", "lastName": "Smith, Jr.", "email": "john@example.com",
            "workEmail1": "js@corp.example", "mobilePhone": "+1 555 0100",
            "workPhone": "+1 555 0101", "homeStreet": "1 Main St\nApt 2", "homeCity": "Springfield",
            "homePostalCode": "12345", "homeCountry": "USA", "company": "ACME; Inc",
            "department": "R&D", "jobTitle": "Engineer", "birthday": "1975-04-12",
            "notes": "Line one\nLine two, with comma; and semicolon \\ backslash. ".repeat(3)
        }));
        let bytes = from_row(&row);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.split("\r\n").all(|l| l.len() <= 75));
        let cards: Vec<_> = ical::VcardParser::new(&bytes[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(cards.len(), 1);
        let get = |name: &str| -> Vec<(String, String)> {
            cards[0]
                .properties
                .iter()
                .filter(|p| p.name == name)
                .map(|p| {
                    let params = p
                        .params
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={}", v.join(",")))
                        .collect::<Vec<_>>()
                        .join(";");
                    (params, p.value.clone().unwrap_or_default())
                })
                .collect()
        };
        assert_eq!(get("FN")[0].1, "John Smith\\, Jr.");
        assert_eq!(get("N")[0].1, "Smith\\, Jr.;John;;;");
        assert_eq!(get("EMAIL").len(), 2);
        assert_eq!(get("EMAIL")[1].0, "TYPE=work");
        let tels = get("TEL");
        assert_eq!(tels[0], ("TYPE=cell".into(), "+1 555 0100".into()));
        assert_eq!(tels[1].0, "TYPE=work,voice");
        assert_eq!(
            get("ADR")[0],
            (
                "TYPE=home".into(),
                ";;1 Main St\\nApt 2;Springfield;;12345;USA".into()
            )
        );
        assert_eq!(get("ORG")[0].1, "ACME\\; Inc;R&D");
        assert_eq!(get("TITLE")[0].1, "Engineer");
        assert_eq!(get("BDAY")[0].1, "19750412");
        assert!(get("NOTE")[0]
            .1
            .starts_with("Line one\\nLine two\\, with comma\\; and"));
        assert_eq!(get("UID").len(), 1);
    }

    #[test]
    fn dates_and_escapes() {
        assert_eq!(vcard_date("1975-04-12"), (true, "19750412".into()));
        assert_eq!(vcard_date("April"), (false, "April".into()));
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }
}
