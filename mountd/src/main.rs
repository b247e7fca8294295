//! `mailbackfs-mountd`: serves one mount, and runs its restore queue (jobs
//! in `<index>/jobs/`, resumed when it starts), until it is unmounted or
//! receives SIGTERM, then unmounts cleanly. `mailbackfs mount` starts it in the
//! background; it can also run under systemd or from `mount.mailbackfs`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mailbackfs::format::FormatChoice;
use mailbackfs::mount::{self, MountOptions};

#[derive(Parser)]
#[command(
    name = "mailbackfs-mountd",
    version,
    about = "Serve one mailbackfs mount"
)]
struct Args {
    /// The backup path.
    backup: PathBuf,
    /// The mount point.
    mountpoint: PathBuf,
    /// Index directory (catalogue, logs, restore jobs).
    #[arg(long)]
    index: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatChoice,
    #[arg(long, default_value_t = 256)]
    cache_mb: usize,
    #[arg(long)]
    no_refresh: bool,
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    let opts = MountOptions {
        backup: args.backup,
        mountpoint: args.mountpoint,
        index: args.index,
        format: args.format,
        cache_mb: args.cache_mb,
        refresh: !args.no_refresh,
        threads: args.threads,
    };
    match mount::serve(&opts, || log::info!("ready")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}
