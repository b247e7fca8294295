//! The thin adapter between the kernel (`fuser`) and the filesystem core:
//! each callback calls one method of `MailFs` and turns its result into a
//! reply. Every operation that would change the tree answers EROFS.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow,
};

use crate::fs::{Attr, EntryKind, FsError, MailFs};
use crate::model::Millis;

/// How long the kernel may cache entries and attributes: the tree does not
/// change while mounted.
const TTL: Duration = Duration::from_secs(300);

/// Serves a `MailFs` to the kernel.
pub struct FuseAdapter {
    fs: Arc<MailFs>,
    uid: u32,
    gid: u32,
}

impl FuseAdapter {
    /// Only the mount's owner (or root) may write to `.control/`.
    fn may_write(&self, req: &Request) -> bool {
        req.uid() == self.uid || req.uid() == 0
    }

    pub fn new(fs: Arc<MailFs>) -> FuseAdapter {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FuseAdapter { fs, uid, gid }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        let mtime = to_system_time(a.mtime);
        let (kind, perm, nlink) = match a.kind {
            EntryKind::Dir => (
                FileType::Directory,
                if a.writable { 0o755 } else { 0o555 },
                2,
            ),
            EntryKind::File => (
                FileType::RegularFile,
                if a.writable { 0o644 } else { 0o444 },
                1,
            ),
        };
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }
}

/// Control files change under the kernel's feet: never cache them.
fn ttl(a: &Attr) -> Duration {
    if a.volatile {
        Duration::ZERO
    } else {
        TTL
    }
}

fn to_system_time(t: Millis) -> SystemTime {
    if t >= 0 {
        UNIX_EPOCH + Duration::from_millis(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.to_errno())
}

/// Log a failed operation with its errno (quietly for plain misses).
fn failed(op: &str, ino: u64, e: &FsError) -> Errno {
    match e {
        FsError::NotFound | FsError::NoAttr => log::debug!("{op}({ino}): {e}"),
        _ => log::warn!("{op}({ino}): {e}"),
    }
    errno(e)
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        // READDIRPLUS: `ls -l` gets names and attributes in one round trip
        // per buffer instead of one LOOKUP per entry. "Auto" lets the kernel
        // fall back to plain READDIR when nobody stats the entries (`find`).
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.fs.lookup(parent.0, name) {
            Ok(a) => {
                self.fs.remember(a.ino);
                reply.entry(&ttl(&a), &self.attr(&a), Generation(0));
            }
            Err(e) => reply.error(failed("lookup", parent.0, &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &self.attr(&a)),
            Err(e) => reply.error(failed("getattr", ino.0, &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = match self.fs.readdir(ino.0) {
            Ok(l) => l,
            Err(e) => return reply.error(failed("readdir", ino.0, &e)),
        };
        // Offsets: 1 is ".", 2 is "..", 3 + i is entry i.
        let dots = [(ino.0, "."), (ino.0, "..")];
        let mut next = offset;
        while (next as usize) < dots.len() {
            let (i, n) = dots[next as usize];
            if reply.add(INodeNo(i), next + 1, FileType::Directory, n) {
                return reply.ok();
            }
            next += 1;
        }
        for (i, e) in listing.entries.iter().enumerate().skip(next as usize - 2) {
            let kind = match e.kind {
                EntryKind::Dir => FileType::Directory,
                EntryKind::File => FileType::RegularFile,
            };
            if reply.add(INodeNo(self.fs.entry_ino(e)), (i + 3) as u64, kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listing = match self.fs.readdir(ino.0) {
            Ok(l) => l,
            Err(e) => return reply.error(failed("readdirplus", ino.0, &e)),
        };
        // Same offsets as `readdir`. "." and ".." carry no lookup count.
        let mut next = offset;
        while next < 2 {
            let a = match self.fs.getattr(ino.0) {
                Ok(a) => a,
                Err(e) => return reply.error(failed("readdirplus", ino.0, &e)),
            };
            let name = if next == 0 { "." } else { ".." };
            if reply.add(
                ino,
                next + 1,
                name,
                &Duration::ZERO,
                &self.attr(&a),
                Generation(0),
            ) {
                return reply.ok();
            }
            next += 1;
        }
        for (i, e) in listing.entries.iter().enumerate().skip(next as usize - 2) {
            // An entry whose attributes fail is sent with a zero TTL: the
            // kernel asks again with LOOKUP, which reports the error.
            let (a, valid) = match self.fs.entry_attr(e) {
                Ok(a) => (a, true),
                Err(err) => {
                    let ino = self.fs.entry_ino(e);
                    failed("readdirplus", ino, &err);
                    let a = Attr {
                        ino,
                        kind: e.kind,
                        size: 0,
                        mtime: 0,
                        writable: false,
                        volatile: true,
                    };
                    (a, false)
                }
            };
            let t = if valid { ttl(&a) } else { Duration::ZERO };
            if reply.add(
                INodeNo(a.ino),
                (i + 3) as u64,
                &e.name,
                &t,
                &self.attr(&a),
                Generation(0),
            ) {
                break;
            }
            // The kernel now holds a reference, as after a lookup.
            if valid {
                self.fs.remember(a.ino);
            }
        }
        reply.ok();
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        if write && !self.may_write(req) {
            return reply.error(Errno::EACCES);
        }
        // Control files are read fresh and need FLUSH at close (a line left
        // without its newline fails the close); every other file is cached
        // and closes without a round trip.
        let cache = if self.fs.getattr(ino.0).is_ok_and(|a| a.volatile) {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
        };
        match self.fs.open(ino.0, write) {
            Ok(fh) => reply.opened(FileHandle(fh), cache),
            Err(e) => reply.error(failed("open", ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(failed("read", ino.0, &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Only control files get here (the others are opened with
        // FOPEN_NOFLUSH); never ENOSYS, which would stop FLUSH for the
        // whole connection.
        match self.fs.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(failed("flush", ino.0, &e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // No ioctl is supported; said quietly (tools probe on every open).
        reply.error(Errno::ENOTTY);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Only `user.` attributes exist here. Saying ENOTSUP (not ENODATA)
        // for the other namespaces lets `ls -l` stop asking for SELinux
        // labels and ACLs after the first file: otherwise each listed file
        // costs two more round trips (scripts/bench, `ls -l` of a folder).
        if !name.as_encoded_bytes().starts_with(b"user.") {
            return reply.error(Errno::ENOTSUP);
        }
        let value = match self.fs.getxattr(ino.0, &name.to_string_lossy()) {
            Ok(v) => v,
            Err(e) => return reply.error(failed("getxattr", ino.0, &e)),
        };
        xattr_reply(reply, size, &value);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = match self.fs.xattrs(ino.0) {
            Ok(list) => list
                .into_iter()
                .flat_map(|(k, _)| k.into_bytes().into_iter().chain([0u8]))
                .collect::<Vec<u8>>(),
            Err(e) => return reply.error(failed("listxattr", ino.0, &e)),
        };
        xattr_reply(reply, size, &names);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    // ----- everything that would change the tree: read-only -------------

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo ... > .control/restore` truncates first: a no-op there.
        if self.fs.is_writable_control(ino.0) && self.may_write(req) {
            return match self.fs.getattr(ino.0) {
                Ok(a) => reply.attr(&Duration::ZERO, &self.attr(&a)),
                Err(e) => reply.error(failed("setattr", ino.0, &e)),
            };
        }
        reply.error(failed("setattr", ino.0, &FsError::ReadOnly));
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if !self.may_write(req) {
            return reply.error(Errno::EACCES);
        }
        match self.fs.write(fh.0, data, req.uid()) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(failed("write", ino.0, &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(failed("mknod", parent.0, &FsError::ReadOnly));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(failed("mkdir", parent.0, &FsError::ReadOnly));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(failed("unlink", parent.0, &FsError::ReadOnly));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(failed("rmdir", parent.0, &FsError::ReadOnly));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(failed("symlink", parent.0, &FsError::ReadOnly));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(failed("rename", parent.0, &FsError::ReadOnly));
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(failed("link", ino.0, &FsError::ReadOnly));
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(failed("create", parent.0, &FsError::ReadOnly));
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(failed("setxattr", ino.0, &FsError::ReadOnly));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(failed("removexattr", ino.0, &FsError::ReadOnly));
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// The mount options of a mailbackfs mount.
pub fn mount_config(source: &str, threads: usize) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(source.to_string()),
        MountOption::Subtype("mailbackfs".into()),
        MountOption::NoExec,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(threads.max(1));
    // One /dev/fuse descriptor per worker: no herd of threads woken for
    // each request.
    config.clone_fd = true;
    config
}
