//! The on-disk store: a plain OCI image layout plus ferry's hidden state folder.
//!
//! ```text
//! STORE/oci-layout              {"imageLayoutVersion":"1.0.0"}
//! STORE/index.json              one entry per image, named by its full reference
//! STORE/blobs/<alg>/<hex>       verified content, complete whenever present
//! STORE/.ferry/lock             advisory lock, says which process holds it
//! STORE/.ferry/journal.jsonl    completed work (a hint; re-checked on use)
//! STORE/.ferry/tmp/             blobs being written; emptied when a writer opens the store
//! ```

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blob_writer::{fsync_dir, BlobWriter};
use crate::descriptor::{Descriptor, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::digest::{Algorithm, Digest};
use crate::error::StoreError;
use crate::journal::Journal;
use crate::lock::StoreLock;
use crate::media;

/// Name of ferry's hidden state folder inside a store.
pub const STATE_DIR: &str = ".ferry";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexJson {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The OCI index media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries (images).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image layout directory. Opened for writing it holds the store lock.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    journal: Option<Journal>,
    _lock: Option<StoreLock>,
}

impl Store {
    /// Opens the store at `root` for writing, creating the layout if needed.
    ///
    /// Takes the lock (failing at once if another process holds it) and removes
    /// temp files left by an interrupted writer.
    pub fn open_for_write(root: &Path) -> Result<Store, StoreError> {
        let state = root.join(STATE_DIR);
        let tmp = state.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        let lock = StoreLock::acquire(&state.join("lock"), root)?;
        for entry in fs::read_dir(&tmp).map_err(|e| StoreError::io("list", &tmp, e))? {
            let entry = entry.map_err(|e| StoreError::io("list", &tmp, e))?;
            let _ = fs::remove_file(entry.path());
        }
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = root.join("blobs").join(alg.name());
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        }
        let journal = Journal::open(&state.join("journal.jsonl"))?;
        let store = Store {
            root: root.to_path_buf(),
            journal: Some(journal),
            _lock: Some(lock),
        };
        if !root.join(LAYOUT_FILE).exists() {
            store.write_file_atomically(LAYOUT_FILE, LAYOUT_CONTENT)?;
        }
        if !root.join(INDEX_FILE).exists() {
            store.write_index(&[])?;
        }
        Ok(store)
    }

    /// Opens an existing layout for reading only (no lock, no journal writes).
    pub fn open_read_only(root: &Path) -> Result<Store, StoreError> {
        check_is_layout(root)?;
        Ok(Store {
            root: root.to_path_buf(),
            journal: None,
            _lock: None,
        })
    }

    /// Fails with [`StoreError::Locked`] naming the holder while a writer
    /// (an export, a push staging) holds the store's lock; takes nothing.
    pub fn check_no_writer(&self) -> Result<(), StoreError> {
        StoreLock::check_free(&self.state_dir().join("lock"), &self.root)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of ferry's state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// Path of the journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }

    /// The journal (only for a store opened for writing).
    pub(crate) fn journal(&self) -> &Journal {
        self.journal
            .as_ref()
            .expect("journal is open for writable stores")
    }

    /// Appends a record to the journal, if the store is open for writing.
    pub fn record(&self, entry: &crate::journal::JournalEntry) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => j.append(entry),
            None => Ok(()),
        }
    }

    /// Flushes the journal to disk.
    pub fn sync_journal(&self) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => j.sync(),
            None => Ok(()),
        }
    }

    /// Final path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// True when a blob with this digest and size is at its final path.
    ///
    /// Invariant 2 makes this cheap check enough for ferry-written stores:
    /// a file at a final path was verified before it was renamed there.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest))
            .map(|m| m.is_file() && m.len() == size)
            .unwrap_or(false)
    }

    /// Starts writing a new blob hashed with `algorithm`.
    pub fn new_blob_writer(&self, algorithm: Algorithm) -> Result<BlobWriter<'_>, StoreError> {
        self.blob_writer(Some(algorithm))
    }

    /// A writer for bytes that come through a verifying reader whose last
    /// read fails unless they are the blob asked for: it checks the size but
    /// does not hash them a second time. Commit only after that reader
    /// returned end-of-data (see [`crate::blob_writer`]).
    pub fn new_blob_writer_after_reader_check(&self) -> Result<BlobWriter<'_>, StoreError> {
        self.blob_writer(None)
    }

    fn blob_writer(&self, algorithm: Option<Algorithm>) -> Result<BlobWriter<'_>, StoreError> {
        assert!(
            self.journal.is_some(),
            "blob writes need a store opened for writing"
        );
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .state_dir()
            .join("tmp")
            .join(format!("blob-{}-{n}", std::process::id()));
        BlobWriter::new(self, algorithm, tmp)
    }

    /// Stores small content (a manifest, a config) already in memory.
    pub fn put_bytes(&self, expected: &Digest, bytes: &[u8], what: &str) -> Result<(), StoreError> {
        if self.has_blob(expected, bytes.len() as u64) {
            return Ok(());
        }
        let mut w = self.new_blob_writer(expected.algorithm())?;
        w.write_chunk(bytes)?;
        w.commit(what, expected, Some(bytes.len() as u64))?;
        Ok(())
    }

    /// Reads a whole blob of at most `limit` bytes (manifests, configs), verifying its digest.
    pub fn read_small_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(&desc.digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: desc.digest.clone(),
                    media_type: desc.media_type.clone(),
                    size: desc.size,
                    parent: String::from("the store"),
                }
            } else {
                StoreError::io("open blob", &path, e)
            }
        })?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("read blob", &path, e))?;
        if bytes.len() as u64 != desc.size {
            return Err(StoreError::SizeMismatch {
                what: path.display().to_string(),
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = desc.digest.of_same_algorithm(&bytes);
        if actual != desc.digest {
            return Err(StoreError::DigestMismatch {
                what: path.display().to_string(),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The entries of `index.json`.
    pub fn index_entries(&self) -> Result<Vec<Descriptor>, StoreError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        let index: IndexJson = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::BadIndex { path, source })?;
        Ok(index.manifests)
    }

    /// Rewrites `index.json` atomically (temp file, fsync, rename, fsync dir).
    pub fn write_index(&self, entries: &[Descriptor]) -> Result<(), StoreError> {
        let index = IndexJson {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_owned()),
            manifests: entries.to_vec(),
        };
        let mut bytes = serde_json::to_vec_pretty(&index).expect("index serialises");
        bytes.push(b'\n');
        self.write_file_atomically(INDEX_FILE, &bytes)
    }

    /// Adds or replaces named images in `index.json`, keeping entries of other
    /// names; an unnamed entry (a referrer) is added once per digest.
    pub fn upsert_index_entries(&self, new_entries: &[Descriptor]) -> Result<(), StoreError> {
        let mut entries = self.index_entries()?;
        for new in new_entries {
            let name = image_name(new);
            entries.retain(|e| match name {
                Some(_) => image_name(e) != name,
                None => image_name(e).is_some() || e.digest != new.digest,
            });
            entries.push(new.clone());
        }
        self.write_index(&entries)
    }

    /// Writes a small file in ferry's state folder atomically (e.g. staging markers).
    pub fn write_state_file(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_file_atomically(&format!("{STATE_DIR}/{name}"), bytes)
    }

    /// Reads a small file from ferry's state folder, if present.
    pub fn read_state_file(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.state_dir().join(name)).ok()
    }

    fn write_file_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.state_dir().join("tmp").join(format!(
            "{}.{}",
            name.replace('/', "_"),
            std::process::id()
        ));
        let final_path = self.root.join(name);
        let mut f = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &final_path)
            .map_err(|e| StoreError::io("rename into place", &final_path, e))?;
        fsync_dir(final_path.parent().unwrap_or(&self.root))
    }
}

/// The full reference an `index.json` entry is named by, if any.
pub fn image_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations
        .get(ANNOTATION_CONTAINERD_NAME)
        .or_else(|| desc.annotations.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// An `index.json` entry for an image named `reference`, annotated so that
/// skopeo (`oci:DIR:REF`) and containerd both find it by its full reference.
pub fn named_entry(mut desc: Descriptor, reference: &str) -> Descriptor {
    desc.annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), reference.to_owned());
    desc.annotations
        .insert(ANNOTATION_CONTAINERD_NAME.to_owned(), reference.to_owned());
    desc
}

fn check_is_layout(root: &Path) -> Result<(), StoreError> {
    let layout = root.join(LAYOUT_FILE);
    let bytes = fs::read(&layout).map_err(|e| StoreError::NotALayout {
        path: root.to_path_buf(),
        why: format!("cannot read {}: {e}", layout.display()),
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::NotALayout {
            path: root.to_path_buf(),
            why: format!("oci-layout is not JSON: {e}"),
        })?;
    if v.get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(StoreError::NotALayout {
            path: root.to_path_buf(),
            why: "oci-layout has no imageLayoutVersion".into(),
        });
    }
    if !root.join(INDEX_FILE).is_file() {
        return Err(StoreError::NotALayout {
            path: root.to_path_buf(),
            why: "index.json is missing".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_write_is_atomic_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let good = Digest::sha256_of(b"hello");
        let mut w = store.new_blob_writer(Algorithm::Sha256).unwrap();
        w.write_chunk(b"hel").unwrap();
        w.write_chunk(b"lo").unwrap();
        w.commit("test", &good, Some(5)).unwrap();
        assert!(store.has_blob(&good, 5));
        assert_eq!(fs::read(store.blob_path(&good)).unwrap(), b"hello");

        let bad = Digest::sha256_of(b"other");
        let mut w = store.new_blob_writer(Algorithm::Sha256).unwrap();
        w.write_chunk(b"hello!").unwrap();
        let err = w.commit("entry blobs/sha256/x", &bad, None).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.blob_path(&bad).exists());
        assert_eq!(
            fs::read_dir(store.state_dir().join("tmp")).unwrap().count(),
            0,
            "temp file left behind"
        );

        let replay = crate::journal::replay(&store.journal_path()).unwrap();
        assert!(replay.blobs.contains_key(&good));
        assert!(!replay.blobs.contains_key(&bad));
    }

    #[test]
    fn size_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let d = Digest::sha256_of(b"abc");
        let mut w = store.new_blob_writer(Algorithm::Sha256).unwrap();
        w.write_chunk(b"abc").unwrap();
        assert!(matches!(
            w.commit("x", &d, Some(4)),
            Err(StoreError::SizeMismatch { .. })
        ));
        assert!(!store.has_blob(&d, 3));
    }

    #[test]
    fn index_upsert_replaces_same_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let a = named_entry(
            Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(b"a"), 1),
            "gcr.io/x/a:1",
        );
        let b = named_entry(
            Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(b"b"), 1),
            "gcr.io/x/b:1",
        );
        let a2 = named_entry(
            Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(b"a2"), 2),
            "gcr.io/x/a:1",
        );
        store.upsert_index_entries(&[a, b.clone()]).unwrap();
        store.upsert_index_entries(&[a2.clone()]).unwrap();
        let entries = store.index_entries().unwrap();
        assert_eq!(entries, vec![b, a2]);
        drop(store);
        let ro = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.index_entries().unwrap().len(), 2);
    }

    #[test]
    fn reopening_cleans_temp_files_and_read_only_rejects_non_layouts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_for_write(dir.path()).unwrap();
            fs::write(
                store.state_dir().join("tmp").join("blob-dead-1"),
                b"partial",
            )
            .unwrap();
        }
        let store = Store::open_for_write(dir.path()).unwrap();
        assert_eq!(
            fs::read_dir(store.state_dir().join("tmp")).unwrap().count(),
            0
        );
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::open_read_only(other.path()),
            Err(StoreError::NotALayout { .. })
        ));
    }
}
