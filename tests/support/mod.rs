//! Shared pieces of the integration tests: real kernel mounts that are
//! always unmounted, and fingerprints of directory trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod dovecot;
pub mod handmade;
pub mod zimbra_gen;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailbackfs"))
}

/// Run the CLI and return (status, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("running mailbackfs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mount served by `mailbackfs mount -f` in a child process. Dropping it
/// unmounts and reaps the daemon, also when the test panicked.
pub struct Mount {
    pub path: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mount {
    pub fn start(backup: &Path, index: &Path, extra: &[&str]) -> Mount {
        Mount::start_logging(backup, index, extra, None)
    }

    /// [`Mount::start`] with the daemon's stderr (its log) going to `log`.
    pub fn start_logging(backup: &Path, index: &Path, extra: &[&str], log: Option<&Path>) -> Mount {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
            None => Stdio::inherit(),
        };
        let dir = tempfile::tempdir().expect("mount point");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let mut child = Command::new(bin())
            .arg("mount")
            .arg("-f")
            .arg(backup)
            .arg(&path)
            .arg("--index")
            .arg(index)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting mailbackfs mount -f");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if is_mounted(&path) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mailbackfs mount -f exited with {status} before mounting");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mount did not come up within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            path,
            child,
            _dir: dir,
        }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The daemon's process id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SIGTERM first: the daemon unmounts cleanly by itself.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_mounted(&self.path) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.path)
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Content hash, size, mode and mtime of every file and directory below
/// `root`: equal fingerprints mean nothing was written.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        out.insert(
            dir.clone(),
            format!(
                "dir {:o} {}",
                meta.mode(),
                meta.mtime_nsec() + meta.mtime() * 1_000_000_000
            ),
        );
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let mut h = Sha256::new();
                let mut f = std::fs::File::open(&p).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                out.insert(
                    p,
                    format!(
                        "{:x} {} {:o} {}",
                        h.finalize(),
                        m.len(),
                        m.mode(),
                        m.mtime()
                    ),
                );
            }
        }
    }
    out
}

/// gunzip a file (all members) into memory: the hand-made oracle.
pub fn gunzip(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    }
}

/// Every regular file below `root`, relative, sorted.
pub fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The value of an extended attribute, read with `getfattr` as an
/// administrator would; `None` when it is absent.
pub fn xattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names in a directory.
pub fn names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The README sample backup in a temporary directory, with an index
/// directory beside it and what the generator says it wrote.
pub struct Sample {
    pub dir: tempfile::TempDir,
    pub backup: PathBuf,
    pub index: PathBuf,
    pub info: mailbackfs::synth::SampleInfo,
}

pub fn sample() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let info = mailbackfs::synth::write_sample(&backup).unwrap();
    Sample {
        index: dir.path().join("index"),
        backup,
        info,
        dir,
    }
}

/// Run `cmd` to its end and return its output; panic (never hang) when it
/// runs longer than `limit`. The limit is a hang guard, not an assertion on
/// speed: it is far above what the command needs.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} hung: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// [`run_bounded`] of the CLI: (status, stdout bytes, stderr).
pub fn cli_bounded(args: &[&str], limit: Duration) -> (i32, Vec<u8>, String) {
    let out = run_bounded(Command::new(bin()).args(args), limit);
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared Cyrus corpus (`../shared/corpora/cyrus/main`).
pub fn cyrus_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/cyrus/main")
}

/// Copy the directory tree `from` to `to` (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The shared Cyrus corpus' `backup/` copied into a temporary directory
/// (as `DIR/backup`), for tests that damage it.
pub fn copy_cyrus_backup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&cyrus_corpus().join("backup"), &dir.path().join("backup"));
    dir
}
