//! A throwaway Dovecot IMAP server for integration tests.
//!
//! [`Dovecot::start`] writes a complete config into a temporary directory
//! and runs `/usr/sbin/dovecot -F -c CONFIG` (as root; `MAILBACKFS_DOVECOT`
//! names another binary) listening only on
//! 127.0.0.1: a plain port (STARTTLS offered) and an IMAPS port, with a
//! certificate signed by a throwaway CA made with `openssl`. Users live in a
//! passwd-file (`{PLAIN}` passwords) that serves both passdb and userdb;
//! mail is owned by `nobody` (65534), since Dovecot refuses mail access as
//! uid 0. Each user's mail is `maildir:DIR/mail/USER` unless
//! [`Dovecot::add_user`] is given another location (used to read back a
//! Maildir written by a restore). The server is stopped (SIGTERM, then
//! SIGKILL) and its directory removed in `Drop`, also when a test panics.
//!
//! Without the Dovecot binary (or `openssl`) `start` panics: a test that
//! needs the server fails without it (scripts/ci-deps installs it).

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailbackfs::restore::imap::ImapClient;
use mailbackfs::restore::target::{ImapSpec, TlsMode};

/// The Dovecot binary; `MAILBACKFS_DOVECOT` overrides it.
pub fn dovecot_binary() -> PathBuf {
    std::env::var_os("MAILBACKFS_DOVECOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/dovecot"))
}
/// The unprivileged user mail is stored as.
pub const MAIL_UID: u32 = 65534;
pub const MAIL_GID: u32 = 65534;

pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub tls_port: u16,
}

/// Panics, naming what is missing, when Dovecot or `openssl` is not
/// installed: a test that cannot reach its server fails, it never passes
/// as skipped.
fn require_installed() {
    let dovecot = dovecot_binary();
    let mut missing = Vec::new();
    if !dovecot.is_file() {
        missing.push(dovecot.display().to_string());
    }
    if !which("openssl") {
        missing.push("openssl".to_string());
    }
    assert!(
        missing.is_empty(),
        "{missing:?} not installed: run scripts/ci-deps (scripts/test does)"
    );
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make `path` and everything below it owned by the mail user.
pub fn chown_for_mail(path: &Path) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{MAIL_UID}:{MAIL_GID}"))
        .arg(path));
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with("")
    }

    /// Start with `extra` appended to the config (later settings win).
    pub fn start_with(extra: &str) -> Dovecot {
        require_installed();
        let dir = tempfile::Builder::new()
            .prefix("mailbackfs-dovecot")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Login and mail processes run unprivileged and must reach their
        // sockets and the mail directory.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(d.join("mail")).unwrap();
        chown_for_mail(&d.join("mail"));
        make_certs(d);
        fs::write(d.join("users"), "").unwrap();

        let mut dc = Dovecot {
            dir,
            child: None,
            port: 0,
            tls_port: 0,
        };
        // Ports are picked free, then bound by Dovecot: another process can
        // take one in between, so try again on "Address already in use".
        for attempt in 1..=3 {
            dc.port = free_port();
            dc.tls_port = free_port();
            dc.spawn(extra);
            match dc.wait_greeting() {
                Ok(()) => return dc,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    dc.stop();
                }
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(&mut self, extra: &str) {
        let d = self.dir.path();
        let (port, tls_port) = (self.port, self.tls_port);
        let p = d.display();
        let config = format!(
            r#"
base_dir = {p}/run
state_dir = {p}/state
log_path = {p}/dovecot.log
info_log_path = {p}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{p}/server.pem
ssl_key = <{p}/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{p}/mail/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {p}/users
}}
userdb {{
  driver = passwd-file
  args = {p}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service auth {{
  chroot =
}}
{extra}
"#
        );
        fs::write(d.join("dovecot.conf"), config).unwrap();
        let child = Command::new(dovecot_binary())
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(d.join("stderr")).unwrap()))
            .spawn()
            .expect("dovecot starts");
        self.child = Some(child);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Dovecot log so far (for assertion messages).
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default();
        s.push_str(&fs::read_to_string(self.dir().join("stderr")).unwrap_or_default());
        s
    }

    /// Wait until the server greets; the log as the error if it does not.
    fn wait_greeting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("dovecot exited with {status}:\n{}", self.log()));
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dovecot did not greet within 20 s:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Add a user (Dovecot re-reads the passwd-file when it changes).
    /// `mail` overrides the mail location, e.g. `maildir:/some/dir`.
    pub fn add_user(&self, user: &str, password: &str, mail: Option<&str>) {
        let users = self.dir().join("users");
        let mut text = fs::read_to_string(&users).unwrap();
        let extra = mail.map(|m| format!("userdb_mail={m}")).unwrap_or_default();
        let home = self.dir().join("mail").join(user);
        text.push_str(&format!(
            "{user}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{}::{extra}\n",
            home.display()
        ));
        let tmp = self.dir().join("users.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &users).unwrap();
    }

    /// A password file for `password` (readable by root only).
    pub fn password_file(&self, user: &str, password: &str) -> PathBuf {
        let path = self.dir().join(format!("{user}.password"));
        fs::write(&path, format!("{password}\n")).unwrap();
        path
    }

    /// The CA certificate that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// An IMAP target spec for `user` with a password file for `password`.
    pub fn spec(&self, user: &str, password: &str, tls: TlsMode) -> ImapSpec {
        ImapSpec {
            tls,
            user: user.to_string(),
            host: "127.0.0.1".to_string(),
            port: if tls == TlsMode::Implicit {
                self.tls_port
            } else {
                self.port
            },
            prefix: Vec::new(),
            password_file: self.password_file(user, password),
            ca_file: Some(self.ca_file()),
            timeout_secs: None,
        }
    }

    /// A logged-in client, for reading back what a restore wrote.
    pub fn client(&self, user: &str, password: &str) -> ImapClient {
        let spec = self.spec(user, password, TlsMode::Plain);
        ImapClient::connect(&spec, password)
            .unwrap_or_else(|e| panic!("login as {user}: {e:#}\n{}", self.log()))
    }
}

impl Dovecot {
    /// SIGTERM, then SIGKILL after 5 s.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost.
fn make_certs(d: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(d)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=mailbackfs test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .current_dir(d)
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]));
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(d)
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
        ])
        .args([
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]));
}
