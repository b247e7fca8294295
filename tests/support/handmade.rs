//! Zextras backup paths written by hand from `docs/formats/zextras.md`
//! (JSON metadata files, gzip blobs named by their SHA-256), independent
//! of the project's generator and of its reader.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Before every state the tests write: folders start here.
pub const T0: i64 = 1_373_639_744_000 - 1000;

/// One backup path and one account in it.
pub struct Backup {
    pub root: PathBuf,
    pub acct_dir: PathBuf,
}

impl Backup {
    /// `accounts/<key>/account_info` naming `address`, and an empty `items/`.
    pub fn new(root: &Path, key: &str, address: &str) -> Backup {
        let acct_dir = root.join("accounts").join(key);
        fs::create_dir_all(&acct_dir).unwrap();
        fs::create_dir_all(root.join("items")).unwrap();
        fs::write(
            acct_dir.join("account_info"),
            json!({"id": key, "name": address, "status": "active"}).to_string(),
        )
        .unwrap();
        Backup {
            root: root.to_path_buf(),
            acct_dir,
        }
    }

    /// `items/<NN>/<id>`: the JSON array of states.
    pub fn item(&self, id: i64, states: Value) {
        let dir = self.acct_dir.join(format!("items/{:02}", id % 100));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(id.to_string()), states.to_string()).unwrap();
    }

    /// A folder valid from [`T0`] on.
    pub fn folder(&self, id: i64, parent: i64, name: &str) {
        self.item(
            id,
            json!([{"id": id, "type": "folder", "start_date": T0,
                    "folder_id": parent, "name": name, "flags": 0}]),
        );
    }

    /// Store `stored` gzipped under the digest of `claimed`; the digest.
    pub fn blob_named_for(&self, claimed: &[u8], stored: &[u8]) -> String {
        let digest = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(claimed))
            .replace('/', ",");
        let dir = self.root.join("items").join(&digest[..2]);
        fs::create_dir_all(&dir).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(stored).unwrap();
        fs::write(dir.join(&digest), gz.finish().unwrap()).unwrap();
        digest
    }

    /// Store `bytes` gzipped under their digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        self.blob_named_for(bytes, bytes)
    }

    /// A message in `folder` valid from `start` on, with flags 0.
    pub fn message(&self, id: i64, folder: i64, start: i64, subject: &str) -> Vec<u8> {
        let bytes = message(subject);
        let d = self.blob(&bytes);
        self.item(
            id,
            json!([{"id": id, "type": "message", "start_date": start, "folder_id": folder,
                    "digest": d, "size": bytes.len(), "date": start, "flags": 0,
                    "subject": subject}]),
        );
        bytes
    }
}

/// A small RFC 5322 message.
pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{}.{}@example.com>\r\n\r\nbody of {subject}\r\n",
        subject.len(),
        subject.bytes().map(u32::from).sum::<u32>()
    )
    .into_bytes()
}
