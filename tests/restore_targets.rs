//! Restore targets end to end: IMAP (plain, STARTTLS, IMAPS) and Maildir
//! read back through a real Dovecot, mbox read back with `mail-parser`.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use mailbackfs::restore::target::mbox::DIGEST_HEADER;
use mailbackfs::restore::target::{
    content_digest, open_target, AppendOutcome, RestoreMessage, TargetSpec, TlsMode,
};
use support::dovecot::{chown_for_mail, Dovecot};

/// 2013-07-12T15:03:00.250Z
const T0: i64 = 1_373_641_380_250;

struct Fixture {
    folder: Vec<String>,
    bytes: Vec<u8>,
    flags: Vec<String>,
    date: i64,
    digest: String,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn fixtures() -> Vec<Fixture> {
    let f = |folder: &[&str], bytes: &[u8], flags: &[&str], date: i64, _name: &str| Fixture {
        folder: strings(folder),
        bytes: bytes.to_vec(),
        flags: strings(flags),
        date,
        digest: content_digest(bytes),
    };
    vec![
        f(
            &["Inbox"],
            b"Message-ID: <1@example.com>\r\nFrom: a@example.com\r\nSubject: first\r\n\r\nHello\r\nFrom here on\r\n>From quoted\r\n",
            &["\\Seen", "\\Flagged", "$Forwarded", "undelete_23_11_26"],
            T0,
            "d1",
        ),
        f(
            &["Inbox", "Projects"],
            "Message-ID: <2@example.com>\r\nSubject: Grüße aus Köln\r\nFrom: \"Jörg\" <j@example.com>\r\n\r\n8-bit body: é\r\n"
                .as_bytes(),
            &["\\Answered", "\\Draft"],
            T0 + 86_400_000,
            "d2",
        ),
        f(
            &["Entwürfe", "Ünter & Über"],
            b"Message-ID: <3@example.com>\r\nSubject: nested\r\n\r\nbody\r\n",
            &[],
            T0 - 86_400_000,
            "d3",
        ),
        f(
            &["Archive", "2013"],
            b"Subject: no message id\r\n\r\nbody without id\r\n",
            &["\\Seen", "\\Deleted"],
            T0,
            "d4/with+chars=",
        ),
    ]
}

fn message(f: &Fixture) -> RestoreMessage<'_> {
    RestoreMessage {
        folder: &f.folder,
        bytes: &f.bytes,
        flags: &f.flags,
        internal_date: f.date,
        digest: &f.digest,
        copy: 1,
    }
}

/// Restore every fixture; the outcomes in order.
fn restore(spec: &TargetSpec, fx: &[Fixture]) -> Vec<AppendOutcome> {
    let mut t = open_target(spec).unwrap_or_else(|e| panic!("open {spec:?}: {e:#}"));
    let mut out = Vec::new();
    for f in fx {
        let m = message(f);
        t.ensure_folder(&f.folder).unwrap();
        out.push(t.append(&m).unwrap_or_else(|e| panic!("append: {e:#}")));
    }
    t.finish().unwrap();
    out
}

/// The mailbox name Dovecot (Maildir++, `.` separator) shows for a folder.
fn mailbox_name(folder: &[String]) -> String {
    let mut comps = folder.to_vec();
    if comps[0] == "Inbox" {
        comps[0] = "INBOX".into();
    }
    comps.join(".")
}

fn flag_set(flags: &[String]) -> BTreeSet<String> {
    flags.iter().filter(|f| *f != "\\Recent").cloned().collect()
}

/// Read every fixture back over IMAP: bytes, flags, INTERNALDATE, folders.
fn check_over_imap(dc: &Dovecot, user: &str, fx: &[Fixture]) {
    let mut c = dc.client(user, "pw");
    let names: BTreeSet<String> = c.list().unwrap().into_iter().map(|m| m.name).collect();
    for f in fx {
        let name = mailbox_name(&f.folder);
        assert!(names.contains(&name), "{name} not in {names:?}");
        let raw = c
            .list()
            .unwrap()
            .into_iter()
            .find(|m| m.name == name)
            .unwrap()
            .raw_name;
        c.select(&raw).unwrap();
        let got = c.fetch_all().unwrap();
        let m = got
            .iter()
            .find(|m| m.body == f.bytes)
            .unwrap_or_else(|| panic!("{name}: no message with the restored bytes in {got:#?}"));
        assert_eq!(flag_set(&m.flags), flag_set(&f.flags), "flags in {name}");
        let want = mailbackfs::restore::target::imap::imap_date(f.date);
        assert_eq!(m.internal_date, want, "INTERNALDATE in {name}");
    }
    c.logout().unwrap();
}

#[test]
fn imap_round_trip_and_second_run_skips() {
    let dc = Dovecot::start();
    dc.add_user("alice", "pw", None);
    let spec = TargetSpec::Imap(dc.spec("alice", "pw", TlsMode::Plain));
    let fx = fixtures();
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Restored; 4]);
    check_over_imap(&dc, "alice", &fx);
    // Non-ASCII names travel in modified UTF-7.
    let mut c = dc.client("alice", "pw");
    let raw: Vec<String> = c.list().unwrap().into_iter().map(|m| m.raw_name).collect();
    assert!(
        raw.contains(&"Entw&APw-rfe.&ANw-nter &- &ANw-ber".to_string()),
        "{raw:?}"
    );
    // Second run: every message is recognised by its bytes, with or
    // without a Message-ID.
    let second = restore(&spec, &fx);
    assert_eq!(second, vec![AppendOutcome::Skipped; 4]);
    c.select("INBOX").unwrap();
    assert_eq!(c.fetch_all().unwrap().len(), 1);
}

#[test]
fn imap_prefix_starttls_and_imaps() {
    let dc = Dovecot::start();
    dc.add_user("bob", "pw", None);
    let fx = &fixtures()[..2];
    for (tls, prefix) in [
        (TlsMode::StartTls, "ViaStartTls"),
        (TlsMode::Implicit, "ViaImaps"),
    ] {
        let mut spec = dc.spec("bob", "pw", tls);
        spec.prefix = strings(&["Restored", prefix]);
        assert_eq!(
            restore(&TargetSpec::Imap(spec), fx),
            vec![AppendOutcome::Restored; 2]
        );
        let mut c = dc.client("bob", "pw");
        for f in fx {
            let mut comps = strings(&["Restored", prefix]);
            comps.extend(f.folder.iter().map(|c| {
                if c == "Inbox" {
                    "INBOX".into()
                } else {
                    c.clone()
                }
            }));
            c.select(&comps.join(".")).unwrap();
            let got = c.fetch_all().unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].body, f.bytes);
        }
    }
    // Both sessions really were encrypted (Dovecot logs ", TLS" on login).
    let tls_logins = dc
        .log()
        .lines()
        .filter(|l| l.contains("Login: user=<bob>") && l.contains(", TLS"))
        .count();
    assert!(tls_logins >= 2, "expected 2 TLS logins:\n{}", dc.log());
    // Without the test CA the certificate is refused.
    let mut spec = dc.spec("bob", "pw", TlsMode::Implicit);
    spec.ca_file = None;
    let e = open_target(&TargetSpec::Imap(spec))
        .err()
        .expect("untrusted certificate");
    assert!(format!("{e:#}").contains("TLS handshake"), "{e:#}");
    // A wrong password is a clear error.
    let spec = dc.spec("bob", "wrong", TlsMode::Plain);
    let e = open_target(&TargetSpec::Imap(spec))
        .err()
        .expect("bad password");
    assert!(format!("{e:#}").contains("cannot log in"), "{e:#}");
}

#[test]
fn imap_without_literal_plus_nor_sasl_ir() {
    // Synchronising literals, and AUTHENTICATE waiting for its `+`. (The
    // LOGIN command cannot be tested here: Dovecot offers it only along
    // with AUTH=PLAIN, which the client prefers.)
    let extra = "imap_capability = IMAP4rev1 IDLE\n";
    let dc = Dovecot::start_with(extra);
    dc.add_user("dave", "p\"w\\x", None);
    let spec = TargetSpec::Imap(dc.spec("dave", "p\"w\\x", TlsMode::Plain));
    let fx = fixtures();
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Restored; 4]);
    let mut c = dc.client("dave", "p\"w\\x");
    assert!(
        !c.has_cap("LITERAL+") && !c.has_cap("SASL-IR"),
        "test needs plain IMAP4rev1"
    );
    c.select("INBOX.Projects").unwrap();
    assert_eq!(c.fetch_all().unwrap()[0].body, fx[1].bytes);
}

#[test]
fn maildir_read_back_by_dovecot() {
    let dc = Dovecot::start();
    let root = dc.dir().join("restored-maildir");
    let spec = TargetSpec::Maildir(root.clone());
    let fx = fixtures();
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Restored; 4]);
    // Second run, before Dovecot has touched it: all skipped, digest
    // included for the message without a Message-ID.
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Skipped; 4]);
    chown_for_mail(&root);
    dc.add_user("carol", "pw", Some(&format!("maildir:{}", root.display())));
    check_over_imap(&dc, "carol", &fx);
    // And after Dovecot indexed it.
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Skipped; 4]);
}

#[test]
fn mbox_read_back_with_mail_parser() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TargetSpec::Mbox(dir.path().to_path_buf());
    let fx = fixtures();
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Restored; 4]);
    assert_eq!(restore(&spec, &fx), vec![AppendOutcome::Skipped; 4]);
    let files = [
        "Inbox",
        "Inbox.sbd/Projects",
        "Entwürfe.sbd/Ünter & Über",
        "Archive.sbd/2013",
    ];
    for (f, file) in fx.iter().zip(files) {
        let path = dir.path().join(file);
        let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let msgs: Vec<_> = mail_parser::mailbox::mbox::MessageIterator::new(reader)
            .map(Result::unwrap)
            .collect();
        assert_eq!(msgs.len(), 1, "{file}");
        let m = &msgs[0];
        assert_eq!(m.internal_date() as i64, f.date / 1000, "{file}");
        // Contents: our flag headers, the original bytes, the separator.
        let contents = m.contents().strip_suffix(b"\n").unwrap();
        let mut added = Vec::new();
        let mut rest = contents;
        while let Some(eol) = rest.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&rest[..eol]).trim_end().to_string();
            let ours = [
                "Status:",
                "X-Status:",
                "X-Keywords:",
                &format!("{DIGEST_HEADER}:"),
            ]
            .iter()
            .any(|p| line.starts_with(p));
            if !ours {
                break;
            }
            added.push(line);
            rest = &rest[eol + 1..];
        }
        assert_eq!(rest, &f.bytes[..], "{file}");
        let has = |h: &str| added.iter().any(|l| l == h);
        match file {
            "Inbox" => {
                assert!(has("Status: RO") && has("X-Status: F"), "{added:?}");
                assert!(has("X-Keywords: $Forwarded undelete_23_11_26"), "{added:?}");
            }
            "Inbox.sbd/Projects" => assert!(has("Status: O") && has("X-Status: AT"), "{added:?}"),
            "Archive.sbd/2013" => assert!(has("X-Status: D"), "{added:?}"),
            _ => assert_eq!(added[0], "Status: O"),
        }
        // Every message carries its content digest.
        assert!(
            has(&format!("{DIGEST_HEADER}: {}", f.digest)),
            "{file}: {added:?}"
        );
        // mail-parser parses the restored message itself too.
        let parsed = mail_parser::MessageParser::default().parse(rest).unwrap();
        assert!(parsed.subject().is_some(), "{file}");
    }
}

/// Append rate into Dovecot over IMAP: `cargo test --test restore_targets
/// -- --ignored --nocapture imap_append_rate`.
#[test]
#[ignore]
fn imap_append_rate() {
    let dc = Dovecot::start();
    dc.add_user("rate", "pw", None);
    let spec = TargetSpec::Imap(dc.spec("rate", "pw", TlsMode::Plain));
    let n = 2000;
    let fx: Vec<Fixture> = (0..n)
        .map(|i| Fixture {
            folder: strings(&["Inbox", "Bulk"]),
            bytes: format!(
                "Message-ID: <{i}@rate.example>\r\nSubject: message {i}\r\n\r\n{}\r\n",
                "x".repeat(1000)
            )
            .into_bytes(),
            flags: strings(&["\\Seen"]),
            date: T0,
            digest: format!("r{i}"),
        })
        .collect();
    // The round-trip floor: as many NOOPs.
    let mut c = dc.client("rate", "pw");
    let start = Instant::now();
    for _ in 0..n {
        c.command("NOOP").unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{n} NOOPs in {secs:.2} s: {:.0}/s", n as f64 / secs);
    let start = Instant::now();
    assert!(restore(&spec, &fx)
        .iter()
        .all(|o| *o == AppendOutcome::Restored));
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "appended {n} messages of ~1 KB in {secs:.2} s: {:.0} messages/s",
        n as f64 / secs
    );
    let start = Instant::now();
    assert!(restore(&spec, &fx)
        .iter()
        .all(|o| *o == AppendOutcome::Skipped));
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "second run skipped {n} in {secs:.2} s: {:.0} messages/s",
        n as f64 / secs
    );
}

#[test]
fn maildir_escapes_read_by_dovecot_listescape() {
    // Dovecot's listescape plugin with `/` as separator shows `\2e` as `.`.
    let extra = "mail_plugins = listescape\nnamespace inbox {\n  inbox = yes\n  separator = /\n}\n";
    let dc = Dovecot::start_with(extra);
    let root = dc.dir().join("escaped-maildir");
    let mk = |folder: &[&str], i: u32| Fixture {
        folder: strings(folder),
        bytes: format!("Message-ID: <e{i}@example.com>\r\nSubject: {i}\r\n\r\nx\r\n").into_bytes(),
        flags: strings(&["\\Seen"]),
        date: T0,
        digest: format!("e{i}"),
    };
    let fx = vec![
        mk(&["Inbox", "v1.2 notes"], 1),
        mk(&["Ümlaut.dir", "~home"], 2),
        mk(&["back\\slash"], 3),
    ];
    assert_eq!(
        restore(&TargetSpec::Maildir(root.clone()), &fx),
        vec![AppendOutcome::Restored; 3]
    );
    assert!(root.join(".INBOX.v1\\2e2 notes").is_dir());
    assert!(root.join(".&ANw-mlaut\\2edir.\\7ehome").is_dir());
    chown_for_mail(&root);
    dc.add_user("erin", "pw", Some(&format!("maildir:{}", root.display())));
    let mut c = dc.client("erin", "pw");
    let listed = c.list().unwrap();
    for (f, want) in fx
        .iter()
        .zip(["INBOX/v1.2 notes", "Ümlaut.dir/~home", "back\\slash"])
    {
        let m = listed
            .iter()
            .find(|m| m.name == want)
            .unwrap_or_else(|| panic!("{want} not in {listed:#?}\n{}", dc.log()));
        c.select(&m.raw_name).unwrap();
        assert_eq!(c.fetch_all().unwrap()[0].body, f.bytes, "{want}");
    }
}
