//! Serving one mount: open the backup, bring the catalogue up to date,
//! start the restore queue, build the filesystem and hand it to the kernel
//! until unmounted or told to stop (SIGTERM, SIGINT, SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::catalog::{self, Catalog};
use crate::control::plane::QueuePlane;
use crate::format::{self, BackupReader, FormatChoice};
use crate::fs::{FsOptions, MailFs};
use crate::fuse::{mount_config, FuseAdapter};
use crate::restore::engine::RestoreSource;
use crate::restore::queue::RestoreQueue;

/// Everything a mount needs to know.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub backup: PathBuf,
    pub mountpoint: PathBuf,
    /// Index directory (catalogue, logs, restore jobs); `None` = default.
    pub index: Option<PathBuf>,
    pub format: FormatChoice,
    pub cache_mb: usize,
    /// Refresh the catalogue before mounting (always done when empty).
    pub refresh: bool,
    pub threads: usize,
}

/// A backup opened with its catalogue.
pub struct OpenedBackup {
    pub root: PathBuf,
    pub reader: Arc<dyn BackupReader>,
    pub catalog: Arc<Catalog>,
    pub index_dir: PathBuf,
}

/// Resolve the index directory of a backup.
pub fn index_dir(backup: &Path, index: Option<&Path>) -> Result<PathBuf> {
    let root = std::fs::canonicalize(backup)
        .with_context(|| format!("backup path {}", backup.display()))?;
    let dir = match index {
        Some(d) => d.to_path_buf(),
        None => catalog::default_index_dir(&root),
    };
    catalog::check_index_outside(&root, &dir)?;
    Ok(dir)
}

/// When to bring the catalogue up to date on opening a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Leave it as it is (the caller refreshes, or does not want to).
    Never,
    /// Only build it when it is empty.
    IfEmpty,
    /// Read again every account whose files changed.
    Always,
}

/// Open a backup and its catalogue, refreshing it as `refresh` says.
pub fn open_backup(
    backup: &Path,
    index: Option<&Path>,
    choice: FormatChoice,
    refresh: Refresh,
    progress: bool,
) -> Result<OpenedBackup> {
    let root = std::fs::canonicalize(backup)
        .with_context(|| format!("backup path {}", backup.display()))?;
    let index_dir = index_dir(&root, index)?;
    let reader: Arc<dyn BackupReader> = Arc::from(format::open(&root, choice)?);
    let catalog = Arc::new(Catalog::open(&index_dir.join("catalog.sqlite"))?);
    catalog.bind_backup(&root, reader.format_name())?;
    let needed = match refresh {
        Refresh::Never => false,
        Refresh::IfEmpty => catalog.accounts()?.is_empty(),
        Refresh::Always => true,
    };
    if needed {
        catalog::refresh(&catalog, &*reader, progress)?;
    }
    Ok(OpenedBackup {
        root,
        reader,
        catalog,
        index_dir,
    })
}

/// Mount and serve until unmounted or signalled. `ready` is called once the
/// kernel mount is in place.
pub fn serve(opts: &MountOptions, ready: impl FnOnce()) -> Result<()> {
    check_mountpoint(&opts.mountpoint)?;
    let started = Instant::now();
    let opened = open_backup(
        &opts.backup,
        opts.index.as_deref(),
        opts.format,
        if opts.refresh {
            Refresh::Always
        } else {
            Refresh::IfEmpty
        },
        false,
    )?;
    // The restore queue: jobs under the index directory, resumed now.
    let queue = RestoreQueue::open(
        &opened.index_dir,
        RestoreSource {
            catalog: opened.catalog.clone(),
            reader: opened.reader.clone(),
        },
    )?;
    queue.start();
    let fs = Arc::new(
        MailFs::new(
            opened.catalog.clone(),
            opened.reader.clone(),
            FsOptions {
                cache_bytes: opts.cache_mb.max(1) << 20,
            },
        )?
        .with_control(Arc::new(QueuePlane::new(queue))),
    );
    let source = format!("mailbackfs:{}", opened.root.display());
    let config = mount_config(&source, opts.threads);
    let mut session = fuser::Session::new(FuseAdapter::new(fs), &opts.mountpoint, &config)
        .with_context(|| format!("mounting on {}", opts.mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    log::info!(
        "mounted {} on {} in {:.2?}",
        opened.root.display(),
        opts.mountpoint.display(),
        started.elapsed()
    );
    let mountpoint = opts.mountpoint.clone();
    std::thread::spawn(move || {
        let mut signals = match signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ]) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot watch signals: {e}");
                return;
            }
        };
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = unmounter.unmount() {
                log::error!("unmounting {}: {e}", mountpoint.display());
            }
        }
    });
    ready();
    session.run().context("serving the mount")?;
    log::info!("unmounted {}", opts.mountpoint.display());
    Ok(())
}

fn check_mountpoint(mp: &Path) -> Result<()> {
    let meta = std::fs::metadata(mp).with_context(|| format!("mount point {}", mp.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", mp.display());
    }
    if is_mounted(mp) {
        bail!("{} is already a mount point", mp.display());
    }
    Ok(())
}

/// Whether `mp` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(mp: &Path) -> bool {
    let Ok(mp) = std::fs::canonicalize(mp) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = mp.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|p| unescape_mountinfo(p) == target)
            .unwrap_or(false)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount `mp` (fusermount3 -u, then umount for root).
pub fn unmount(mp: &Path) -> Result<()> {
    for (cmd, args) in [
        ("fusermount3", vec!["-u"]),
        ("fusermount", vec!["-u"]),
        ("umount", vec![]),
    ] {
        let status = std::process::Command::new(cmd)
            .args(&args)
            .arg(mp)
            .stderr(std::process::Stdio::null())
            .status();
        if matches!(status, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    bail!("could not unmount {}", mp.display())
}

/// Wait until `mp` is mounted and answers, or `alive` says the daemon died.
pub fn wait_mounted(mp: &Path, timeout: Duration, mut alive: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if is_mounted(mp) && std::fs::read_dir(mp).is_ok() {
            return Ok(());
        }
        if !alive() {
            bail!("the mount daemon exited before the mount answered");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} did not answer within {:?}", mp.display(), timeout)
}
