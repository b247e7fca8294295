//! The index directory holds every subject, address and restore request of
//! a backup, which the mount itself shows only to its owner: it is created
//! 0700 and its files 0600, whatever the umask, and tightened when an older
//! version left them open.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Mode of the index directory and of every directory below it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the index directory.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) 0700; an existing one is tightened.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    tighten(dir, DIR_MODE)
}

/// Open `path` for appending, creating it 0600.
pub fn append_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    tighten(path, FILE_MODE)?;
    Ok(f)
}

/// Create (or truncate) `path` for writing, 0600.
pub fn create_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    tighten(path, FILE_MODE)?;
    Ok(f)
}

/// Make sure `path` exists with mode 0600 before another library (SQLite)
/// creates it with the umask's mode; SQLite gives its `-wal` and `-shm`
/// files the database file's mode.
pub fn touch_file(path: &Path) -> Result<()> {
    append_file(path).map(drop)
}

/// Remove group and other bits from `path` when it has any.
fn tighten(path: &Path, mode: u32) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(());
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Ok(()) => Ok(()),
        // Not ours to change (a shared index another user made): say so.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            log::warn!(
                "{} is readable by others and not ours to tighten",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("restricting {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_older_ones_tightened() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&t.path().join("a")), DIR_MODE);
        let f = dir.join("catalog.sqlite");
        fs::write(&f, b"").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        touch_file(&f).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&f), FILE_MODE);
        let g = dir.join("job.json");
        create_file(&g).unwrap();
        assert_eq!(mode(&g), FILE_MODE);
    }
}
