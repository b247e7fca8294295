//! Reading the small local files a request names (`password_file=`,
//! `ca_file=`) without ever blocking or filling memory: they are opened
//! with `O_NONBLOCK | O_NOFOLLOW` (a FIFO does not hang the open, a
//! symbolic link is refused), checked with `fstat` on the open descriptor
//! (only a regular file, of a bounded size) and read up to that bound.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The most a password file may hold.
pub const PASSWORD_FILE_MAX: u64 = 4096;
/// The most a CA file may hold.
pub const CA_FILE_MAX: u64 = 1 << 20;

/// Why a small file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {why}")]
pub struct SmallFileError {
    what: &'static str,
    path: String,
    why: String,
}

/// Who may own a file: root, and `owner` (the writer of the request, or
/// the daemon itself when a job runs).
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    Any,
    RootOr(u32),
}

/// The bytes of a regular file of at most `max` bytes owned as `owner` says.
pub fn read_small_file(
    what: &'static str,
    path: &Path,
    max: u64,
    owner: Owner,
) -> Result<Vec<u8>, SmallFileError> {
    let fail = |why: String| SmallFileError {
        what,
        path: path.display().to_string(),
        why,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => fail("is a symbolic link (name the file itself)".into()),
            _ => fail(format!("cannot be read: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot be read: {e}")))?;
    check_meta(&meta, max, owner).map_err(fail)?;
    read_bounded(file, max).map_err(fail)
}

fn check_meta(meta: &Metadata, max: u64, owner: Owner) -> Result<(), String> {
    if !meta.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    if let Owner::RootOr(uid) = owner {
        if meta.uid() != 0 && meta.uid() != uid {
            return Err(format!(
                "is owned by uid {}, not by root or uid {uid}",
                meta.uid()
            ));
        }
    }
    if meta.len() > max {
        return Err(format!("is larger than {max} bytes"));
    }
    Ok(())
}

/// Read at most `max` bytes; a file that grew past it is refused.
fn read_bounded(file: File, max: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!("is larger than {max} bytes"));
    }
    Ok(buf)
}

/// The password: the first line of `path`, without its line end.
pub fn read_password(path: &Path, owner: Owner) -> Result<String, SmallFileError> {
    let bytes = read_small_file("password file", path, PASSWORD_FILE_MAX, owner)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// The effective uid of this process (the daemon running a job).
pub fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &Path, owner: Owner) -> String {
        read_password(path, owner).unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(err(&fifo, Owner::Any).contains("not a regular file"));
        assert!(err(Path::new("/dev/zero"), Owner::Any).contains("not a regular file"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 5000]).unwrap();
        assert!(err(&big, Owner::Any).contains("larger than 4096"));
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\r\nsecond\n").unwrap();
        assert_eq!(read_password(&pw, Owner::Any).unwrap(), "s3cret");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&pw, &link).unwrap();
        assert!(err(&link, Owner::Any).contains("symbolic link"));
        let uid = std::fs::metadata(&pw).unwrap().uid();
        let other = uid.wrapping_add(1).max(1);
        if uid != 0 {
            assert!(err(&pw, Owner::RootOr(other)).contains("owned by"));
        }
        assert!(read_password(&pw, Owner::RootOr(uid)).is_ok());
    }
}
