//! Restores into hostile or broken IMAP servers, written here as small
//! servers on 127.0.0.1: a literal of 100 GB announced, an endless line,
//! endless untagged responses, a server trickling one byte a second, and
//! a server that drops the connection after an APPEND. The mount must
//! survive each, report a timeout as a timeout, stop at once, and keep the
//! report of every job.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{sample, Mount, Sample};

const JOHN: &str = "john@example.com";

fn write_control(m: &Mount, file: &str, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join(".control").join(file))?
        .write_all(text.as_bytes())
}

fn read_control(m: &Mount, file: &str) -> String {
    std::fs::read_to_string(m.join(".control").join(file)).unwrap_or_default()
}

fn submit(m: &Mount, line: &str) -> u64 {
    write_control(m, "restore", &format!("{line}\n"))
        .unwrap_or_else(|e| panic!("{line}: {e}: {}", read_control(m, "last-error")));
    std::fs::read_dir(m.join(".control/jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .max()
        .unwrap()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The status of a job once it is finished.
fn wait_job(m: &Mount, id: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = read_control(m, &format!("jobs/{id}"));
        if matches!(
            field(&text, "state: ").as_str(),
            "done" | "failed" | "stopped"
        ) {
            return text;
        }
        assert!(Instant::now() < deadline, "job {id} not finished:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn password_file(s: &Sample) -> String {
    let p = s.dir.path().join("pw");
    std::fs::write(&p, "secret\n").unwrap();
    p.display().to_string()
}

/// A server on 127.0.0.1 running `serve` on each connection (the n-th
/// connection gets n, from 0). It takes at most 20 connections and stops
/// by itself after two minutes.
struct Server {
    port: u16,
    conns: Arc<AtomicUsize>,
}

fn server(serve: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end && counter.load(Ordering::SeqCst) < 20 {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(s, n));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Server { port, conns }
}

/// Send `chunk` again and again, `total` bytes at most or until the
/// client goes away.
fn flood(s: &mut TcpStream, chunk: &[u8], total: usize) {
    let mut sent = 0;
    while sent < total && s.write_all(chunk).is_ok() {
        sent += chunk.len();
    }
}

/// Run one account restore into `port` and return the finished status.
fn restore_into(s: &Sample, m: &Mount, port: u16, query: &str) -> String {
    let line = format!(
        "account {JOHN} last to=imap://u@127.0.0.1:{port}{query} password_file={}",
        password_file(s)
    );
    let status = wait_job(m, submit(m, &line));
    // The mount is alive and well.
    assert!(m.join(JOHN).join("latest").is_dir(), "the mount died");
    status
}

#[test]
fn a_hostile_server_fails_the_job_not_the_daemon() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let big_literal = server(|mut c, _| {
        let _ = c.write_all(b"* OK {99999999999}\r\n");
        let _ = c.read(&mut [0u8; 1]);
    });
    let endless_line = server(|mut c, _| {
        let _ = c.write_all(b"* OK ");
        flood(&mut c, &[b'a'; 64 * 1024], 8 << 20);
    });
    let endless_untagged = server(|mut c, _| {
        let _ = c.write_all(b"* OK hello\r\n");
        let mut line = String::new();
        let _ = BufReader::new(c.try_clone().unwrap()).read_line(&mut line);
        let mut chunk = b"* OK ".to_vec();
        chunk.extend_from_slice(&[b'x'; 64 * 1024]);
        chunk.extend_from_slice(b"\r\n");
        flood(&mut c, &chunk, 400 << 20);
    });
    for (srv, why) in [
        (&big_literal, "a literal of 99999999999 bytes"),
        (&endless_line, "a response line longer than"),
        (&endless_untagged, "MiB of responses to one command"),
    ] {
        let status = restore_into(&s, &m, srv.port, "");
        assert_eq!(field(&status, "state: "), "failed", "{status}");
        assert!(field(&status, "error: ").contains(why), "{why}: {status}");
        // The report is there, naming every item.
        assert!(
            status.contains("- stats -\nRestored Items: 0\n"),
            "{status}"
        );
        assert!(status.contains("not attempted, the job failed"), "{status}");
        // It gave up after a few new connections.
        assert!(srv.conns.load(Ordering::SeqCst) <= 4);
    }
}

/// A server that sends its greeting one byte a second.
fn trickle() -> Server {
    server(|mut c, _| {
        for b in b"* OK hello there, this is a very slow server\r\n" {
            if c.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

#[test]
fn a_slow_server_times_out_as_a_timeout_and_stop_is_immediate() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let slow = trickle();
    let status = restore_into(&s, &m, slow.port, "?timeout=2");
    assert_eq!(field(&status, "state: "), "failed", "{status}");
    let error = field(&status, "error: ");
    assert!(error.contains("timed out"), "{status}");
    assert!(!error.contains("os error"), "{status}");
    assert!(!status.contains("rejected by the target"), "{status}");

    // With a long deadline, a stop ends the job while it waits.
    let slow = trickle();
    let line = format!(
        "account {JOHN} last to=imap://u@127.0.0.1:{}?timeout=3600 password_file={}",
        slow.port,
        password_file(&s)
    );
    let id = submit(&m, &line);
    while slow.conns.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    write_control(&m, "stop", &format!("{id}\n")).unwrap();
    let status = wait_job(&m, id);
    assert_eq!(field(&status, "state: "), "stopped", "{status}");
}

/// What the fake server does after an APPEND.
#[derive(Clone, Copy, PartialEq)]
enum AfterAppend {
    /// Store it, then drop the connection without an answer (every time).
    StoreAndDrop,
    /// Answer the first APPEND; drop at the second and refuse every later
    /// connection.
    OneThenGone,
}

type Store = Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>;

/// Just enough IMAP for a restore: CAPABILITY, LOGIN, LIST, CREATE,
/// SELECT, UID FETCH of sizes and bodies, APPEND, LOGOUT.
fn fake_imap(mode: AfterAppend) -> (Server, Store) {
    let store: Store = Arc::new(Mutex::new(HashMap::new()));
    let st = store.clone();
    let srv = server(move |c, n| {
        if mode == AfterAppend::OneThenGone && n > 0 {
            return;
        }
        let _ = serve_imap(c, &st, mode);
    });
    (srv, store)
}

fn serve_imap(c: TcpStream, store: &Store, mode: AfterAppend) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    w.write_all(b"* OK fake\r\n")?;
    let mut selected = String::new();
    let mut appends = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let (tag, cmd) = line.split_once(' ').unwrap_or((line, ""));
        let upper = cmd.to_ascii_uppercase();
        let ok = |w: &mut TcpStream| w.write_all(format!("{tag} OK done\r\n").as_bytes());
        if upper.starts_with("CAPABILITY") {
            w.write_all(b"* CAPABILITY IMAP4rev1 LITERAL+\r\n")?;
            ok(&mut w)?;
        } else if upper.starts_with("LIST \"\" \"\"") {
            w.write_all(b"* LIST (\\Noselect) \".\" \"\"\r\n")?;
            ok(&mut w)?;
        } else if upper.starts_with("LIST") {
            for name in store.lock().unwrap().keys() {
                w.write_all(format!("* LIST () \".\" \"{name}\"\r\n").as_bytes())?;
            }
            ok(&mut w)?;
        } else if upper.starts_with("CREATE") || upper.starts_with("SELECT") {
            let name = cmd.split_once(' ').unwrap().1.trim_matches('"').to_string();
            let n = store.lock().unwrap().entry(name.clone()).or_default().len();
            if upper.starts_with("SELECT") {
                w.write_all(format!("* {n} EXISTS\r\n").as_bytes())?;
                selected = name;
            }
            ok(&mut w)?;
        } else if upper.starts_with("UID FETCH 1:* (UID RFC822.SIZE)") {
            let msgs = store.lock().unwrap()[&selected].clone();
            for (i, m) in msgs.iter().enumerate() {
                let n = i + 1;
                let line = format!("* {n} FETCH (UID {n} RFC822.SIZE {})\r\n", m.len());
                w.write_all(line.as_bytes())?;
            }
            ok(&mut w)?;
        } else if upper.starts_with("UID FETCH") {
            let set = cmd.split(' ').nth(2).unwrap();
            let msgs = store.lock().unwrap()[&selected].clone();
            for uid in set.split(',').map(|u| u.parse::<usize>().unwrap()) {
                let m = &msgs[uid - 1];
                let head = format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", m.len());
                w.write_all(head.as_bytes())?;
                w.write_all(m)?;
                w.write_all(b")\r\n")?;
            }
            ok(&mut w)?;
        } else if upper.starts_with("APPEND") {
            let name = cmd.split('"').nth(1).unwrap().to_string();
            let open = line.rfind('{').unwrap();
            let len: usize = line[open + 1..line.len() - 2].parse().unwrap();
            let mut body = vec![0u8; len + 2];
            r.read_exact(&mut body)?;
            body.truncate(len);
            appends += 1;
            match mode {
                AfterAppend::StoreAndDrop => {
                    store.lock().unwrap().entry(name).or_default().push(body);
                    return Ok(());
                }
                AfterAppend::OneThenGone if appends > 1 => return Ok(()),
                AfterAppend::OneThenGone => {
                    store.lock().unwrap().entry(name).or_default().push(body);
                    ok(&mut w)?;
                }
            }
        } else if upper.starts_with("LOGOUT") {
            w.write_all(b"* BYE\r\n")?;
            ok(&mut w)?;
            return Ok(());
        } else {
            ok(&mut w)?;
        }
    }
}

fn messages_shown(m: &Mount) -> usize {
    support::files_below(&m.join(JOHN).join("latest"))
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .count()
}

#[test]
fn a_connection_dropped_after_append_is_reopened_and_the_job_goes_on() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let want = messages_shown(&m);
    let (srv, store) = fake_imap(AfterAppend::StoreAndDrop);
    let status = restore_into(&s, &m, srv.port, "");
    assert_eq!(field(&status, "state: "), "done", "{status}");
    // Each message once, though no APPEND was ever answered: the copy
    // found after reconnecting counts as restored.
    assert_eq!(
        field(&status, "Restored Items:"),
        want.to_string(),
        "{status}"
    );
    let stored: usize = store.lock().unwrap().values().map(Vec::len).sum();
    assert_eq!(stored, want);
}

#[test]
fn a_job_that_fails_after_an_append_keeps_its_report() {
    let s = sample();
    let m = Mount::start(&s.backup, &s.index, &[]);
    let want = messages_shown(&m);
    let (srv, store) = fake_imap(AfterAppend::OneThenGone);
    let status = restore_into(&s, &m, srv.port, "");
    assert_eq!(field(&status, "state: "), "failed", "{status}");
    assert!(field(&status, "error: ").contains("connection"), "{status}");
    assert_eq!(field(&status, "Restored Items:"), "1", "{status}");
    assert_eq!(
        field(&status, "Unrestored Items:"),
        (want - 1).to_string(),
        "{status}"
    );
    assert_eq!(
        store.lock().unwrap().values().map(Vec::len).sum::<usize>(),
        1
    );
}
