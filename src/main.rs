//! `mailbackfs`: the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use mailbackfs::catalog;
use mailbackfs::format::FormatChoice;
use mailbackfs::mount::{self, MountOptions};
use mailbackfs::timeline::format_instant;

#[derive(Parser)]
#[command(
    name = "mailbackfs",
    version,
    about = "Mount a mail-server backup read-only as account/date/folder/item.eml trees",
    long_about = "Mount a Zextras/Carbonio backup path or a Cyrus backup partition read-only, \
                  so that mail as it was at any moment is `ls`, `grep` and `cp`.\n\n\
                  Example:\n  mailbackfs mount /opt/zextras/backup/zextras /mnt/backup\n  \
                  ls /mnt/backup/john@example.com/latest/Inbox\n  mailbackfs umount /mnt/backup"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the backup is and where its catalogue lives.
#[derive(Args, Clone)]
struct BackupArgs {
    /// The backup path (Zextras/Carbonio backup path, Cyrus backup partition).
    backup: PathBuf,
    /// Index directory for the catalogue, logs and restore jobs (never inside
    /// the backup). Default: under ~/.cache/mailbackfs/.
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Backup format; `auto` recognises it by its layout.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatChoice,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount a backup (in the background unless -f).
    Mount {
        #[command(flatten)]
        backup: BackupArgs,
        /// Where to mount it (an existing directory).
        mountpoint: PathBuf,
        /// Stay in the foreground and log to stderr.
        #[arg(short, long)]
        foreground: bool,
        /// Budget of the decompressed-data cache, in MiB.
        #[arg(long, default_value_t = 256)]
        cache_mb: usize,
        /// Mount with the catalogue as it is, without checking the backup for
        /// changes (the catalogue is still built when there is none).
        #[arg(long)]
        no_refresh: bool,
        /// Threads serving kernel requests.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Unmount a mailbackfs mount.
    Umount { mountpoint: PathBuf },
    /// Build or refresh the catalogue (only changed accounts are read again).
    Index {
        #[command(flatten)]
        backup: BackupArgs,
    },
    /// List the accounts of a backup: address, status, items, first and last backup instant.
    Accounts {
        #[command(flatten)]
        backup: BackupArgs,
        /// Print JSON, one object per account.
        #[arg(long)]
        json: bool,
    },
    /// Every recorded state of one item (the vendor's getItem): start date,
    /// type, folder, flags, tags, deleted, blob path and whether it reads.
    GetItem {
        #[command(flatten)]
        backup: BackupArgs,
        /// Account address, or its id (key).
        account: String,
        /// Item id (a message GUID for Cyrus).
        item: String,
        /// `all` (every state), `last` (the newest), or the state valid at
        /// a day (YYYY-MM-DD, its end) or instant (2013-07-12T15:03:00Z).
        #[arg(long, default_value = "all")]
        date: String,
        /// Write the raw message (decompressed blob) of the selected state
        /// (with `all`: the newest with a blob) to stdout instead.
        #[arg(long)]
        dump_blob: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Coherency check: every metadata file parses, every referenced blob
    /// exists, decompresses, hashes to its digest and has its size; blobs
    /// nothing references. Exit status 0 clean, 1 problems, 2 could not run.
    Check {
        /// The backup path.
        backup: PathBuf,
        /// Only these accounts (addresses or ids, comma-separated); orphan
        /// blobs are looked for only when all are checked.
        #[arg(long, value_delimiter = ',')]
        accounts: Vec<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        /// Accepted for symmetry; check reads the backup itself, never the catalogue.
        #[arg(long, value_name = "DIR")]
        index: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatChoice,
        /// Threads verifying blobs (default: four per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Run restore requests now, without a mount, with a progress bar, and
    /// print each report. Exit status: 0 when every item was restored or
    /// skipped, 1 when some were not, 2 for a refused request.
    #[command(
        long_about = "Run restore requests now, without a mount: the same requests \
        `.control/restore` takes, one quoted argument each.\n\n\
        Requests:\n  \
        item     ACCOUNT ITEM_ID            to=TARGET [folder=NAME] [at=INSTANT]\n  \
        account  ACCOUNT DATE|last          to=TARGET\n  \
        undelete ACCOUNT FROM|first TO|last to=TARGET\n  \
        external [accounts=A,B] [domains=D] to=TARGET\n\n\
        TARGET is maildir:/PATH, mbox:/PATH or imap://USER@HOST:PORT[/PREFIX] with \
        password_file=/PATH.\n\n\
        Example:\n  mailbackfs restore /opt/zextras/backup/zextras \\\n    \
        'undelete john@example.com 2013-07-12 last to=maildir:/srv/restore/john'\n\n\
        Exit status: 0 when every item was restored or skipped, 1 when some were not \
        (the report says why), 2 for a refused request."
    )]
    Restore {
        #[command(flatten)]
        backup: BackupArgs,
        /// Request lines, one quoted argument each.
        #[arg(required = true, value_name = "REQUEST")]
        requests: Vec<String>,
    },
    /// Write synthetic Zextras backups (the README sample, test fixtures,
    /// benchmark data): `synth sample DIR`, `synth tolerance DIR`,
    /// `synth generated DIR --accounts N --items N --seed S [--big-folder N]`.
    #[command(hide = true)]
    Synth {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Cmd::Restore { backup, requests } = &cli.command {
        return restore(backup, requests);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailbackfs: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Mount {
            backup,
            mountpoint,
            foreground,
            cache_mb,
            no_refresh,
            threads,
        } => {
            let opts = MountOptions {
                backup: backup.backup,
                mountpoint,
                index: backup.index,
                format: backup.format,
                cache_mb,
                refresh: !no_refresh,
                threads,
            };
            if foreground {
                mount::serve(&opts, || eprintln!("mailbackfs: mounted; Ctrl-C unmounts"))
            } else {
                mount_in_background(&opts)
            }
        }
        Cmd::Umount { mountpoint } => mount::unmount(&mountpoint),
        Cmd::Index { backup } => {
            let opened = mount::open_backup(
                &backup.backup,
                backup.index.as_deref(),
                backup.format,
                mount::Refresh::Never,
                true,
            )?;
            let stats = mailbackfs::catalog::refresh(&opened.catalog, &*opened.reader, true)?;
            let rate = stats.items as f64 / stats.elapsed.as_secs_f64().max(1e-9);
            println!(
                "{}: {} accounts read, {} unchanged, {} removed; {} metadata files in {:.2?} ({:.0}/s)",
                opened.catalog.path().display(),
                stats.accounts_read,
                stats.accounts_unchanged,
                stats.accounts_removed,
                stats.items,
                stats.elapsed,
                rate
            );
            Ok(())
        }
        Cmd::Accounts { backup, json } => accounts(&backup, json),
        Cmd::GetItem {
            backup,
            account,
            item,
            date,
            dump_blob,
            json,
        } => get_item(&backup, &account, &item, &date, dump_blob, json),
        Cmd::Check {
            backup,
            accounts,
            json,
            index: _,
            format,
            threads,
        } => check(&backup, accounts, json, format, threads),
        Cmd::Synth { args } => mailbackfs::synth::run_cli(&args),
        Cmd::Restore { .. } => unreachable!("handled in main"),
    }
}

/// `mailbackfs restore`: check every request, then run them in order.
fn restore(backup: &BackupArgs, requests: &[String]) -> ExitCode {
    use mailbackfs::control::request::parse_request;
    use mailbackfs::restore::engine::{self, RestoreSource};
    let opened = match mount::open_backup(
        &backup.backup,
        backup.index.as_deref(),
        backup.format,
        mount::Refresh::Always,
        false,
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mailbackfs: {e:#}");
            return ExitCode::from(2);
        }
    };
    let src = RestoreSource {
        catalog: opened.catalog.clone(),
        reader: opened.reader.clone(),
    };
    let mut parsed = Vec::new();
    for (n, line) in requests.iter().enumerate() {
        let checked = parse_request(line)
            .map_err(|e| e.0)
            .and_then(|r| engine::check(&src, &r).map(|()| r));
        match checked {
            Ok(r) => parsed.push(r),
            Err(why) => {
                eprintln!("mailbackfs: request {}: {line}: {why}", n + 1);
                return ExitCode::from(2);
            }
        }
    }
    let mut all_restored = true;
    let now = chrono::Utc::now().timestamp_millis();
    for (line, req) in requests.iter().zip(&parsed) {
        println!("request: {line}");
        let plan = match engine::plan(&src, req, now) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("mailbackfs: {line}: {why}");
                return ExitCode::from(2);
            }
        };
        let mut hooks = BarHooks(indicatif::ProgressBar::hidden());
        match engine::run(&src, &plan, &Default::default(), &mut hooks) {
            Ok(run) => {
                hooks.0.finish_and_clear();
                print!("{}", run.report.render());
                println!();
                if let Some(e) = &run.error {
                    eprintln!("mailbackfs: {line}: {e}");
                }
                all_restored &= run.report.unrestored.is_empty() && run.error.is_none();
            }
            Err(e) => {
                hooks.0.abandon();
                eprintln!("mailbackfs: {line}: {e:#}");
                all_restored = false;
            }
        }
    }
    if all_restored {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A progress bar over the items of one request.
struct BarHooks(indicatif::ProgressBar);

impl mailbackfs::restore::engine::RunHooks for BarHooks {
    fn planned(&mut self, total: u64) {
        self.0 = indicatif::ProgressBar::new(total);
        self.0.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} items {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }

    fn item_done(
        &mut self,
        _key: &str,
        _digest: Option<&str>,
        _outcome: &mailbackfs::restore::engine::ItemOutcome,
    ) -> Result<()> {
        self.0.inc(1);
        Ok(())
    }
}

fn get_item(
    backup: &BackupArgs,
    account: &str,
    item: &str,
    date: &str,
    dump_blob: bool,
    json: bool,
) -> Result<()> {
    use mailbackfs::getitem::{self, DateChoice};
    let date = DateChoice::parse(date)?;
    let opened = mount::open_backup(
        &backup.backup,
        backup.index.as_deref(),
        backup.format,
        mount::Refresh::Always,
        false,
    )?;
    let view = getitem::get_item(&opened.catalog, &*opened.reader, account, item, date)?;
    let mut stdout = std::io::stdout().lock();
    if dump_blob {
        view.dump_blob(&*opened.reader, &mut stdout)?;
    } else if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        write!(stdout, "{}", view.to_text(None))?;
    }
    Ok(())
}

fn check(
    backup: &Path,
    accounts: Vec<String>,
    json: bool,
    format: FormatChoice,
    threads: usize,
) -> Result<()> {
    let reader = mailbackfs::format::open(backup, format)?;
    let opts = mailbackfs::check::CheckOptions {
        accounts,
        progress: true,
        threads,
    };
    let report = mailbackfs::check::run(&*reader, &opts)?;
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(stdout, "{}", report.to_text())?;
    }
    stdout.flush()?;
    if !report.is_clean() {
        std::process::exit(1);
    }
    Ok(())
}

fn accounts(backup: &BackupArgs, json: bool) -> Result<()> {
    let opened = mount::open_backup(
        &backup.backup,
        backup.index.as_deref(),
        backup.format,
        mount::Refresh::Always,
        false,
    )?;
    let fmt = |t: Option<i64>| t.map(format_instant).unwrap_or_else(|| "-".into());
    for a in opened.catalog.accounts()? {
        if json {
            let v = serde_json::json!({
                "address": a.name, "directory": a.dir_name, "key": a.key, "status": a.status,
                "items": a.item_count, "first": a.first_ts.map(format_instant),
                "last": a.last_ts.map(format_instant), "problems": a.problems,
            });
            println!("{v}");
        } else {
            println!(
                "{:<32} {:<10} {:>8} items  {}  {}",
                a.dir_name,
                a.status,
                a.item_count,
                fmt(a.first_ts),
                fmt(a.last_ts)
            );
            for p in &a.problems {
                println!("    problem: {p}");
            }
        }
    }
    for note in opened.reader.notes() {
        if json {
            println!("{}", serde_json::json!({ "note": note }));
        } else {
            println!("{note}");
        }
    }
    Ok(())
}

/// The daemon binary: beside this one, else on PATH.
fn mountd_path() -> PathBuf {
    let name = "mailbackfs-mountd";
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Start the mount daemon detached and return once the mount answers.
fn mount_in_background(opts: &MountOptions) -> Result<()> {
    let index_dir = mount::index_dir(&opts.backup, opts.index.as_deref())?;
    catalog::private::create_dir(&index_dir)?;
    let log_path = index_dir.join("mountd.log");
    let log = catalog::private::append_file(&log_path)?;
    let mut cmd = Command::new(mountd_path());
    cmd.arg(&opts.backup)
        .arg(&opts.mountpoint)
        .arg("--index")
        .arg(&index_dir)
        .arg("--format")
        .arg(format_arg(opts.format))
        .arg("--cache-mb")
        .arg(opts.cache_mb.to_string())
        .arg("--threads")
        .arg(opts.threads.to_string());
    if !opts.refresh {
        cmd.arg("--no-refresh");
    }
    // A new session: the daemon outlives this command and its terminal.
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", mountd_path().display()))?;
    let waited = mount::wait_mounted(&opts.mountpoint, Duration::from_secs(600), || {
        matches!(child.try_wait(), Ok(None))
    });
    if let Err(e) = waited {
        let _ = child.kill();
        let tail = tail_of(&log_path);
        bail!("{e}; daemon log {}:\n{tail}", log_path.display());
    }
    println!(
        "mounted {} on {}",
        opts.backup.display(),
        opts.mountpoint.display()
    );
    Ok(())
}

fn format_arg(f: FormatChoice) -> &'static str {
    match f {
        FormatChoice::Auto => "auto",
        FormatChoice::Zextras => "zextras",
        FormatChoice::Cyrus => "cyrus",
        FormatChoice::ZimbraClassic => "zimbra-classic",
    }
}

fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
