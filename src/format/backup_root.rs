//! Opening the files of a backup without ever leaving it.
//!
//! A backup is hostile input: any file in it may be a symbolic link (to
//! `/etc/shadow`, `/proc/self/environ`, `/dev/zero`), a FIFO or a device.
//! Every reader opens every file below its backup root through a
//! [`BackupRoot`]: relative to the root's directory descriptor, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so that no symbolic
//! link is followed in any component (`O_NOFOLLOW` checks only the last),
//! and `O_NONBLOCK`, so that opening a FIFO never blocks. The opened file is
//! then `fstat`ed: anything but a regular file is refused with an error
//! saying `not a regular file`.
//!
//! The root itself may be a symbolic link (a NAS mount point): it is
//! resolved once, when the root is opened.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use rustix::fs::Stat;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// An open directory of a backup, beneath which files are opened.
#[derive(Debug)]
pub struct BackupRoot {
    dir: OwnedFd,
    path: PathBuf,
}

/// What a directory entry is, without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// One entry of [`BackupRoot::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: EntryKind,
}

/// Set when the kernel (or a seccomp filter) refuses `openat2`: opening
/// then walks the path one `O_NOFOLLOW` component at a time.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Tests: take the fallback path on this thread.
    static WALK_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn refused(what: &str, path: &Path, why: &str) -> io::Error {
    io::Error::other(format!("{what}: {} ({why})", path.display()))
}

fn kind_name(m: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

/// The components of `rel`, refused when it could leave the root.
fn components(rel: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a path inside the backup", rel.display()),
                ))
            }
        }
    }
    Ok(out)
}

impl BackupRoot {
    /// Open the backup directory at `path` (a symbolic link to it is
    /// resolved here, once).
    pub fn open(path: &Path) -> io::Result<BackupRoot> {
        let real = std::fs::canonicalize(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let dir = rustix::fs::open(
            &real,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        })?;
        Ok(BackupRoot {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The path the root was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` below the root, for messages.
    pub fn display_path(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Open `rel` beneath the root with `flags`, following no symbolic link.
    fn open_beneath(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let comps = components(rel)?;
        // openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW
        // and O_CLOEXEC.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        if comps.is_empty() {
            return rustix::fs::openat(&self.dir, c".", flags, Mode::empty()).map_err(Into::into);
        }
        if cfg!(test) && WALK_ONLY.with(|w| w.get()) {
            return self.open_walk(&comps, flags);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let rel: PathBuf = comps.iter().collect();
            match rustix::fs::openat2(
                &self.dir,
                &rel,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            ) {
                Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                    log::warn!(
                        "openat2 is not available: opening backup files component by component"
                    );
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                r => return r.map_err(Into::into),
            }
        }
        self.open_walk(&comps, flags)
    }

    /// Without openat2: every directory on the way, then the file, opened
    /// with O_NOFOLLOW.
    fn open_walk(&self, comps: &[&std::ffi::OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        // O_NOFOLLOW on a link gives ELOOP, or ENOTDIR with O_DIRECTORY:
        // the latter is told apart from a real non-directory, as openat2
        // tells them apart.
        let open = |at: BorrowedFd<'_>, name: &std::ffi::OsStr, flags: OFlags| {
            rustix::fs::openat(at, name, flags | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| {
                let link = e == rustix::io::Errno::NOTDIR
                    && rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
                if link {
                    io::Error::from_raw_os_error(libc::ELOOP)
                } else {
                    io::Error::from(e)
                }
            })
        };
        let (last, dirs) = comps.split_last().expect("not empty");
        let mut cur: Option<OwnedFd> = None;
        for d in dirs {
            let at = cur.as_ref().map_or(self.dir.as_fd(), |f| f.as_fd());
            cur = Some(open(
                at,
                d,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            )?);
        }
        let at = cur.as_ref().map_or(self.dir.as_fd(), |f| f.as_fd());
        open(at, last, flags)
    }

    /// Maps "a symbolic link was on the way" to a refusal naming `what`.
    fn open_err(&self, rel: &Path, what: &str, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => refused(
                what,
                &self.display_path(rel),
                "a symbolic link, or below one",
            ),
            // The kind is kept (NotFound, NotADirectory): callers try
            // other places on those.
            _ => io::Error::new(
                e.kind(),
                format!("{}: {e}", self.display_path(rel).display()),
            ),
        }
    }

    /// Open the regular file `rel` for reading. A symbolic link anywhere on
    /// the way, or anything but a regular file, is refused with an error
    /// starting `not a regular file`; a missing file is `NotFound`.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> io::Result<File> {
        let rel = rel.as_ref();
        let fd = self
            .open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK)
            .map_err(|e| self.open_err(rel, "not a regular file", e))?;
        let f = File::from(fd);
        let m = f.metadata().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", self.display_path(rel).display()),
            )
        })?;
        if !m.file_type().is_file() {
            return Err(refused(
                "not a regular file",
                &self.display_path(rel),
                kind_name(&m),
            ));
        }
        Ok(f)
    }

    /// Open the directory `rel` as a root of its own ("" is this one).
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<BackupRoot> {
        let rel = rel.as_ref();
        let fd = self
            .open_beneath(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK)
            .map_err(|e| self.open_err(rel, "not a directory", e))?;
        Ok(BackupRoot {
            dir: fd,
            path: self.path.join(rel),
        })
    }

    /// What `rel` is, without following it (a link is a link). A single
    /// name is looked up with one `fstatat` on this directory; a longer
    /// path is opened (`O_PATH`, beneath the root) first.
    pub fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Stat> {
        let rel = rel.as_ref();
        let comps = components(rel)?;
        let r = if comps.len() == 1 {
            rustix::fs::statat(&self.dir, comps[0], AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
        } else {
            self.open_beneath(rel, OFlags::PATH)
                .and_then(|fd| rustix::fs::fstat(fd).map_err(Into::into))
        };
        r.map_err(|e| self.open_err(rel, "not reachable", e))
    }

    /// Whether `rel` is a directory (not a link to one).
    pub fn is_dir(&self, rel: impl AsRef<Path>) -> bool {
        self.stat(rel)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
    }

    /// Whether `rel` is a regular file (not a link to one).
    pub fn is_file(&self, rel: impl AsRef<Path>) -> bool {
        self.stat(rel)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile)
    }

    /// The entries of the directory `rel`, links not followed, `.` and `..`
    /// left out, in the order the directory gives them.
    pub fn read_dir(&self, rel: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
        let rel = rel.as_ref();
        let dir = self.open_dir(rel)?;
        let mut out = Vec::new();
        let it = rustix::fs::Dir::read_from(&dir.dir)?;
        for e in it {
            let e = e.map_err(|e| {
                let e = io::Error::from(e);
                io::Error::new(e.kind(), format!("{}: {e}", dir.path.display()))
            })?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            use FileType as T;
            let ft = match e.file_type() {
                T::Unknown => {
                    rustix::fs::statat(&dir.dir, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|s| T::from_raw_mode(s.st_mode))
                        .unwrap_or(T::Unknown)
                }
                t => t,
            };
            let kind = match ft {
                T::RegularFile => EntryKind::File,
                T::Directory => EntryKind::Dir,
                T::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            out.push(DirEntry {
                name: std::ffi::OsStr::from_bytes(name).to_os_string(),
                kind,
            });
        }
        Ok(out)
    }

    /// The whole regular file `rel`, refused when longer than `cap` bytes.
    pub fn read_capped(&self, rel: impl AsRef<Path>, cap: u64) -> io::Result<Vec<u8>> {
        let rel = rel.as_ref();
        let f = self.open_file(rel)?;
        let mut buf = Vec::new();
        read_capped_into(f, cap, &mut buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", self.display_path(rel).display()),
            )
        })?;
        Ok(buf)
    }
}

/// Read `f` into `buf` (cleared first); an error when it holds more than
/// `cap` bytes.
pub fn read_capped_into(f: File, cap: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    f.take(cap.saturating_add(1)).read_to_end(buf)?;
    if buf.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, BackupRoot) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("b/items/ab")).unwrap();
        std::fs::write(t.path().join("b/items/ab/blob"), b"data").unwrap();
        std::fs::write(t.path().join("outside"), b"secret").unwrap();
        let r = BackupRoot::open(&t.path().join("b")).unwrap();
        (t, r)
    }

    fn refused_as(r: io::Result<File>, what: &str) {
        let e = r.expect_err("refused");
        assert!(e.to_string().starts_with(what), "{e}");
        assert_ne!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn regular_files_open_and_nothing_else() {
        regular_files_only(false);
    }

    #[test]
    fn regular_files_open_and_nothing_else_without_openat2() {
        regular_files_only(true);
    }

    fn regular_files_only(walk: bool) {
        WALK_ONLY.with(|w| w.set(walk));
        let (t, r) = root();
        let mut s = String::new();
        r.open_file("items/ab/blob")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "data");
        let b = t.path().join("b");
        symlink(t.path().join("outside"), b.join("items/ab/abs")).unwrap();
        symlink("../../../outside", b.join("items/ab/rel")).unwrap();
        symlink("/dev/zero", b.join("items/ab/zero")).unwrap();
        symlink(b.join("items/ab"), b.join("items/cd")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            b.join("items/ab/fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        for p in [
            "items/ab/abs",
            "items/ab/rel",
            "items/ab/zero",
            "items/cd/blob",
        ] {
            refused_as(r.open_file(p), "not a regular file");
        }
        refused_as(r.open_file("items/ab/fifo"), "not a regular file");
        refused_as(r.open_file("items/ab"), "not a regular file");
        assert!(r.open_file("../outside").is_err());
        assert!(r.open_file("/etc/passwd").is_err());
        assert_eq!(
            r.open_file("items/ab/none").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(r.open_dir("items/cd").is_err());
        assert!(!r.is_dir("items/cd") && r.is_dir("items/ab"));
        let kinds: std::collections::BTreeMap<String, EntryKind> = r
            .read_dir("items/ab")
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_string_lossy().into_owned(), e.kind))
            .collect();
        assert_eq!(kinds["blob"], EntryKind::File);
        assert_eq!(kinds["abs"], EntryKind::Symlink);
        assert_eq!(kinds["fifo"], EntryKind::Other);
    }

    #[test]
    fn the_root_may_be_a_link() {
        let (t, _) = root();
        symlink(t.path().join("b"), t.path().join("link")).unwrap();
        let r = BackupRoot::open(&t.path().join("link")).unwrap();
        assert!(r.open_file("items/ab/blob").is_ok());
        let sub = r.open_dir("items").unwrap();
        assert!(sub.open_file("ab/blob").is_ok());
    }
}
