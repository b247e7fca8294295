//! Names shown in the tree: folder names made safe, item file names made
//! readable, unique and stable.

use crate::catalog::StateRow;
use crate::model::ItemKind;

/// Longest name a Linux directory entry may have, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest subject slug in an item file name, in bytes (cut on a word).
const SLUG_MAX: usize = 24;

/// Cut `s` to at most `max` bytes on a UTF-8 boundary.
pub fn cut_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `name` followed by `suffix` (a `~<id>` that tells siblings apart), the
/// name cut so that the suffix always fits in [`NAME_MAX`] bytes: cutting
/// the suffix instead would give two siblings one name again.
pub fn with_suffix(name: &str, suffix: &str) -> String {
    format!("{}{suffix}", cut_utf8(name, NAME_MAX - suffix.len()))
}

fn is_forbidden(c: char) -> bool {
    c == '/' || c == '\0' || c.is_control()
}

/// A folder (or account) name as a directory entry: `/` and control
/// characters become `_`; empty, `.` and `..` become `_<id>`; longer than
/// 255 bytes is cut on a UTF-8 boundary.
pub fn sanitize_component(name: &str, id: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if is_forbidden(c) { '_' } else { c })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return format!("_{id}");
    }
    cut_utf8(&cleaned, NAME_MAX).to_string()
}

/// A readable slug of a subject or name: letters and digits kept, every
/// other run of characters one `_`, at most 24 bytes cut on a word.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    if out.len() <= SLUG_MAX {
        return out;
    }
    let cut = cut_utf8(&out, SLUG_MAX);
    // Prefer ending on a whole word when the cut falls inside one.
    let next_is_gap = out[cut.len()..].starts_with('_');
    match cut.rfind('_') {
        Some(pos) if !next_is_gap && pos >= SLUG_MAX / 2 => cut[..pos].to_string(),
        _ => cut.trim_end_matches('_').to_string(),
    }
}

/// The extension of an item's file, by kind (documents keep their own).
pub fn extension(kind: ItemKind, name: Option<&str>) -> Option<String> {
    match kind {
        ItemKind::Message => Some("eml".into()),
        ItemKind::Contact => Some("vcf".into()),
        ItemKind::Appointment | ItemKind::Task => Some("ics".into()),
        ItemKind::Document => name.and_then(document_extension),
        _ => None,
    }
}

/// The extension of a document name, when it has a plausible one.
fn document_extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && !ext.is_empty()
        && ext.len() <= 16
        && ext.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| ext.to_ascii_lowercase())
}

/// The text an item's slug is made from.
fn slug_source(row: &StateRow) -> String {
    match row.kind {
        ItemKind::Document => {
            let name = row.name.clone().unwrap_or_default();
            match document_extension(&name) {
                Some(ext) => name[..name.len() - ext.len() - 1].to_string(),
                None => name,
            }
        }
        ItemKind::Contact => row.name.clone().unwrap_or_else(|| contact_name(row)),
        _ => row
            .subject
            .clone()
            .or_else(|| row.name.clone())
            .unwrap_or_default(),
    }
}

/// A contact's display name from its fields.
pub fn contact_name(row: &StateRow) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = row
        .fields
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let full = [get("firstName"), get("lastName")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !full.is_empty() {
        return full;
    }
    for k in ["fullName", "fileAs", "company", "email"] {
        let v = get(k);
        if !v.is_empty() {
            return v;
        }
    }
    String::new()
}

/// `339-Service_mailboxd_started.eml`: label, slug, extension.
///
/// A listed name always has the `-`, so that it never equals the unlisted
/// alias `339.eml`: a subject that leaves no slug gives `no_subject`, a
/// contact or document name that leaves none gives `unnamed`.
pub fn item_file_name(row: &StateRow) -> String {
    let ext = extension(row.kind, row.name.as_deref());
    let mut slug = slug(&slug_source(row));
    if slug.is_empty() {
        slug = empty_slug(row.kind).to_string();
    }
    let mut name = sanitize_component(&row.label, &row.item_id.to_string());
    name.push('-');
    name.push_str(&slug);
    finish_name(name, ext.as_deref())
}

/// The slug of an item whose subject or name leaves none.
fn empty_slug(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Contact | ItemKind::Document => "unnamed",
        _ => "no_subject",
    }
}

/// `339.eml`: the alias that resolves but is not listed.
pub fn item_alias_name(row: &StateRow) -> String {
    let ext = extension(row.kind, row.name.as_deref());
    finish_name(
        sanitize_component(&row.label, &row.item_id.to_string()),
        ext.as_deref(),
    )
}

fn finish_name(stem: String, ext: Option<&str>) -> String {
    match ext {
        Some(ext) => {
            let stem = cut_utf8(&stem, NAME_MAX - ext.len() - 1);
            format!("{stem}.{ext}")
        }
        None => cut_utf8(&stem, NAME_MAX).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_readable_and_short() {
        assert_eq!(
            slug("Service mailboxd started on test.example.com"),
            "Service_mailboxd_started"
        );
        assert_eq!(slug("Re: [list] Réunion à 10h!"), "Re_list_Réunion_à_10h");
        assert_eq!(slug("日本語のテスト"), "日本語のテスト");
        assert_eq!(slug("a/b\u{7}c"), "a_b_c");
        assert_eq!(slug("🎉🎉"), "");
        assert!(slug(&"x".repeat(100)).len() <= SLUG_MAX);
    }

    #[test]
    fn components_are_safe() {
        assert_eq!(sanitize_component("a/b\nc", "5"), "a_b_c");
        assert_eq!(sanitize_component("", "5"), "_5");
        assert_eq!(sanitize_component("..", "5"), "_5");
        let long = "é".repeat(200);
        let s = sanitize_component(&long, "5");
        assert!(s.len() <= NAME_MAX && s.chars().all(|c| c == 'é'));
        assert_eq!(sanitize_component("a\u{85}b", "1"), "a_b");
    }

    fn row(kind: ItemKind, subject: Option<&str>, name: Option<&str>) -> StateRow {
        StateRow {
            item_id: 295,
            seq: 0,
            label: "295".into(),
            history_key: "295".into(),
            start: 0,
            eff_end: None,
            last: true,
            deleted: false,
            kind,
            folder_id: Some(2),
            name: name.map(String::from),
            subject: subject.map(String::from),
            blob: None,
            size: None,
            date: None,
            flags: String::new(),
            tags: String::new(),
            fields: None,
        }
    }

    #[test]
    fn names_without_a_slug_keep_the_dash() {
        for subject in [None, Some(""), Some(".."), Some("!!! ???"), Some("🎉")] {
            let r = row(ItemKind::Message, subject, None);
            assert_eq!(item_file_name(&r), "295-no_subject.eml", "{subject:?}");
            assert_eq!(item_alias_name(&r), "295.eml");
        }
        let r = row(ItemKind::Appointment, Some("--"), None);
        assert_eq!(item_file_name(&r), "295-no_subject.ics");
        let r = row(ItemKind::Contact, None, Some("..."));
        assert_eq!(item_file_name(&r), "295-unnamed.vcf");
        let r = row(ItemKind::Document, None, Some("..pdf"));
        assert_eq!(item_file_name(&r), "295-unnamed.pdf");
        let r = row(ItemKind::Document, None, None);
        assert_eq!(item_file_name(&r), "295-unnamed");
    }

    #[test]
    fn suffixes_survive_the_length_cut() {
        let long = "x".repeat(300);
        let first = sanitize_component(&long, "5");
        let second = with_suffix(&first, "~261");
        assert_eq!(second.len(), NAME_MAX);
        assert!(second.ends_with("~261") && second != first);
        let e = with_suffix(&"é".repeat(127), "~7");
        assert!(e.len() <= NAME_MAX && e.ends_with("é~7"));
    }

    #[test]
    fn document_extensions() {
        assert_eq!(
            extension(ItemKind::Document, Some("report.PDF")).as_deref(),
            Some("pdf")
        );
        assert_eq!(extension(ItemKind::Document, Some(".bashrc")), None);
        assert_eq!(extension(ItemKind::Document, Some("README")), None);
    }
}
