//! Memory follows the cache, not the data (issue 10, items 1 and 15): gzip
//! bombs (256 MiB of zeros in about 256 KiB) whose metadata claims a few
//! hundred bytes are served exactly, while the mount daemon, `check` and
//! `get-item` never hold more than a fraction of them. The assertions are
//! on peak resident memory (`VmHWM`, `ru_maxrss`), not on time; every run
//! is bounded by a hang guard.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use mailbackfs::synth::SAMPLE_JOHN;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use support::{copy_cyrus_backup as copy_backup, run_bounded, Mount};

const LIMIT: Duration = Duration::from_secs(300);
const ZEROS: u64 = 256 << 20;
/// "Well below the size": half of it. The debug daemon itself needs ~30 MiB.
const CEILING_KB: u64 = (ZEROS / 2) >> 10;
const HEADER: &[u8] = b"From: bomb@example.com\r\nSubject: bomb\r\n\r\n";

/// The bomb's content: a header, then zeros.
fn bomb_len() -> u64 {
    HEADER.len() as u64 + ZEROS
}

/// Feed the bomb's content to `f` in 1 MiB pieces.
fn each_piece(mut f: impl FnMut(&[u8])) {
    f(HEADER);
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(ZEROS >> 20) {
        f(&zeros);
    }
}

fn gzip_bomb() -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    each_piece(|p| e.write_all(p).unwrap());
    e.finish().unwrap()
}

/// Run `cmd`, hashing its stdout with `H`; returns (exit code, stdout
/// length, hash, peak RSS of the process in KiB, from `wait4`).
// Reaped with wait4 (for its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn measured<H: Digest + Send + 'static>(cmd: &mut Command) -> (i32, u64, Vec<u8>, u64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let hasher = std::thread::spawn(move || {
        let mut h = H::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                }
            }
        }
        (n, h.finalize().to_vec())
    });
    let pid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let hung = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, hung) = (done.clone(), hung.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            while !done.load(Ordering::SeqCst) {
                if Instant::now() > deadline {
                    hung.store(true, Ordering::SeqCst);
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert_eq!(r, pid);
    assert!(!hung.load(Ordering::SeqCst), "{cmd:?} hung");
    let (n, hash) = hasher.join().unwrap();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, n, hash, ru.ru_maxrss as u64)
}

fn cli() -> Command {
    Command::new(support::bin())
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `sha256sum`/`sha1sum` of a file through the mount, bounded.
fn sum_through(tool: &str, p: &Path) -> String {
    let out = run_bounded(Command::new(tool).arg(p), LIMIT);
    assert!(out.status.success(), "{tool} {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn zextras_bomb_is_served_exactly_within_the_cache() {
    let s = support::sample();
    let mut sha = Sha256::new();
    each_piece(|p| sha.update(p));
    let sha = sha.finalize();
    let d = base64_digest(&sha);
    let blob = s.backup.join("items").join(&d[..2]).join(&d);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, gzip_bomb()).unwrap();
    let id = 9301;
    let meta = s
        .backup
        .join("accounts")
        .join(SAMPLE_JOHN)
        .join("items")
        .join(format!("{:02}", id % 100));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join(id.to_string()),
        format!(
            r#"[{{"id": {id}, "type": "message", "start_date": 1373900000000, "folder_id": 2,
                "digest": "{d}", "size": 300, "date": 1373900000000, "flags": 0, "subject": "bomb"}}]"#
        ),
    )
    .unwrap();
    let backup = s.backup.to_str().unwrap();
    let index = s.index.to_str().unwrap();

    // check: bounded memory, and the size mismatch reported.
    let (code, _, _, peak) = measured::<Sha256>(cli().args(["check", backup]));
    assert_eq!(code, 1, "the claimed size is wrong");
    eprintln!("zextras bomb: check peak {peak} KiB");
    assert!(peak < CEILING_KB, "check peaked at {peak} KiB");
    // get-item --dump-blob: every byte, bounded memory.
    let (code, n, hash, peak) = measured::<Sha256>(cli().args([
        "get-item",
        backup,
        "--index",
        index,
        "john@example.com",
        &id.to_string(),
        "--dump-blob",
    ]));
    assert_eq!(code, 0);
    assert_eq!(n, bomb_len());
    assert_eq!(hash, sha.to_vec());
    eprintln!("zextras bomb: get-item peak {peak} KiB");
    assert!(peak < CEILING_KB, "get-item peaked at {peak} KiB");

    // Through the mount, with a 16 MiB cache.
    let m = Mount::start(&s.backup, &s.index, &["--cache-mb", "16"]);
    let inbox = m.join("john@example.com/latest/Inbox");
    let name = support::names(&inbox)
        .into_iter()
        .find(|n| n.starts_with(&format!("{id}-")) && n.ends_with(".eml"))
        .unwrap();
    let p = inbox.join(name);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), bomb_len());
    assert_eq!(sum_through("sha256sum", &p), hex(&sha));
    let hwm = vm_hwm_kb(m.pid());
    eprintln!("zextras bomb: mount daemon VmHWM {hwm} KiB");
    assert!(hwm < CEILING_KB, "the daemon peaked at {hwm} KiB");
}

fn base64_digest(sha: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(sha)
        .replace('/', ",")
}

/// Append to dora's data file a chunk holding one 256 MiB message (the
/// bomb) and the mailbox record that files it in her INBOX as UID 99.
/// With `small_in_index`, the index also lists that chunk, as 100 bytes
/// long. Returns the message's GUID.
fn cyrus_bomb(root: &Path, small_in_index: bool) -> String {
    let dir = root.join("backup/partition/d");
    let data = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap();
    let mut sha = Sha1::new();
    each_piece(|p| sha.update(p));
    let guid = hex(&sha.finalize());
    let ts = 1_795_500_000;
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    write!(
        e,
        "# cyrus backup: chunk start\r\n{ts} APPLY MESSAGE (%{{default {guid} {}}}\r\n",
        bomb_len()
    )
    .unwrap();
    each_piece(|p| e.write_all(p).unwrap());
    write!(
        e,
        ")\r\n{ts} APPLY MAILBOX %(UNIQUEID o083q25rbqi4oicy1s0xikxg MBOXNAME user.dora \
         SINCE_MODSEQ 100 RECORD (%(UID 99 MODSEQ 101 LAST_UPDATED {ts} FLAGS () \
         INTERNALDATE {ts} SIZE {} GUID {guid})))\r\n",
        bomb_len()
    )
    .unwrap();
    let member = e.finish().unwrap();
    let offset = std::fs::metadata(&data).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap();
    f.write_all(&member).unwrap();
    if small_in_index {
        let idx = PathBuf::from(format!("{}.index", data.display()));
        let c = rusqlite::Connection::open(idx).unwrap();
        c.execute(
            "INSERT INTO chunk (id, ts_start, ts_end, offset, length) VALUES (99, ?1, ?1, ?2, 100)",
            rusqlite::params![ts, offset as i64],
        )
        .unwrap();
    }
    guid
}

#[test]
fn cyrus_bomb_chunk_is_streamed_within_budget() {
    for small_in_index in [false, true] {
        let dir = copy_backup();
        let guid = cyrus_bomb(dir.path(), small_in_index);
        let backup = dir.path().join("backup");
        let backup = backup.to_str().unwrap();
        let index = dir.path().join("index");
        let index = index.to_str().unwrap();

        let (code, _, _, peak) = measured::<Sha1>(cli().args(["check", backup]));
        assert!(code == 0 || code == 1);
        eprintln!("cyrus bomb (index says small: {small_in_index}): check peak {peak} KiB");
        assert!(
            peak < CEILING_KB,
            "check peaked at {peak} KiB ({small_in_index})"
        );
        let (code, n, hash, peak) = measured::<Sha1>(cli().args([
            "get-item",
            backup,
            "--index",
            index,
            "dora",
            &guid,
            "--dump-blob",
        ]));
        assert_eq!(code, 0, "{small_in_index}");
        assert_eq!(n, bomb_len());
        assert_eq!(hex(&hash), guid);
        eprintln!("cyrus bomb (index says small: {small_in_index}): get-item peak {peak} KiB");
        assert!(
            peak < CEILING_KB,
            "get-item peaked at {peak} KiB ({small_in_index})"
        );

        let m = Mount::start(Path::new(backup), Path::new(index), &["--cache-mb", "16"]);
        let out = run_bounded(
            Command::new("find")
                .arg(m.join("dora/latest"))
                .args(["-type", "f", "-size", "+100M"]),
            LIMIT,
        );
        let found = String::from_utf8_lossy(&out.stdout).into_owned();
        let p = PathBuf::from(found.lines().next().expect("the bomb is in dora/latest"));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), bomb_len());
        // Two concurrent readers of it.
        let p2 = p.clone();
        let other = std::thread::spawn(move || sum_through("sha1sum", &p2));
        assert_eq!(sum_through("sha1sum", &p), guid);
        assert_eq!(other.join().unwrap(), guid);
        let hwm = vm_hwm_kb(m.pid());
        eprintln!("cyrus bomb (index says small: {small_in_index}): daemon VmHWM {hwm} KiB");
        assert!(
            hwm < CEILING_KB,
            "the daemon peaked at {hwm} KiB ({small_in_index})"
        );
    }
}
