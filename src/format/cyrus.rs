//! Reader for the Cyrus backup format. (Skeleton: being written.)

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{AccountEntry, BackupReader};
use crate::model::{Account, BlobRef, Item};

/// Whether `root` has the layout of this format.
pub fn looks_like(_root: &Path) -> bool {
    false
}

pub struct CyrusReader {
    #[allow(dead_code)]
    root: PathBuf,
}

impl CyrusReader {
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
        })
    }
}

impl BackupReader for CyrusReader {
    fn format_name(&self) -> &'static str {
        "cyrus"
    }
    fn list_accounts(&self) -> Result<Vec<AccountEntry>> {
        bail!("not yet")
    }
    fn read_account(&self, _key: &str, _sink: &mut dyn FnMut(Item)) -> Result<Account> {
        bail!("not yet")
    }
    fn open_blob(&self, _blob: &BlobRef) -> io::Result<Box<dyn Read + Send>> {
        Err(io::Error::other("not yet"))
    }
    fn blob_len(&self, _blob: &BlobRef, _claimed: Option<u64>) -> io::Result<u64> {
        Err(io::Error::other("not yet"))
    }
}
