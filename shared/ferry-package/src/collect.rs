//! The per-entry half of an import: every file entry of a package is checked,
//! hashed while it streams, and either stored as a verified blob, kept in
//! memory (small metadata files), or stored under its computed digest
//! (docker-archive files whose digest is not in their name). A blob already
//! at its final path is checked ([`PresentCheck`]) before it is kept; one that
//! fails is rewritten from the package and listed in [`Collector::replaced`].

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_store::audit::{check_stored_blob, ProblemKind};
use ferry_store::{journal, Algorithm, Digest, Store, StoreError};

use crate::detect::Compression;
use crate::error::PackageError;
use crate::nested::{image_archive, read_head, walk_image_archive, MAX_NESTING};

/// Metadata files kept in memory, and their size limit.
pub const METADATA_FILES: [&str; 4] = ["oci-layout", "index.json", "manifest.json", "repositories"];
/// Largest metadata file accepted (index.json of thousands of images fits easily).
pub const MAX_METADATA_BYTES: u64 = 8 << 20;
const CHUNK: usize = 1 << 20;

/// What happened to a file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its content digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// True if this run wrote it (false if it was already in the store).
    pub written_now: bool,
}

/// Counters for the import report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Blobs written and verified by this run.
    pub blobs_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
    /// Blobs already at their final path (skipped without rewriting).
    pub blobs_present: u64,
    /// Their bytes.
    pub bytes_present: u64,
}

/// A blob that was at its final path but failed its check, and was replaced
/// by the package's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedBlob {
    /// The blob.
    pub digest: Digest,
    /// What was wrong with the copy that was in the store.
    pub found: ProblemKind,
}

/// How blobs already in the store are checked before they are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresentCheck {
    /// Size, and blake3 against the journal's record (its full digest when it
    /// has no record): catches bit rot at about the cost of reading it.
    #[default]
    Recorded,
    /// Size and the full digest (sha256/sha512), whatever the journal says.
    Full,
}

/// Accumulates a package's entries into a store.
pub struct Collector<'s> {
    store: &'s Store,
    seen: HashSet<String>,
    /// Small metadata files by name.
    pub metadata: HashMap<String, Vec<u8>>,
    /// Every stored file by its normalised entry path.
    pub files: HashMap<String, StoredFile>,
    /// Links inside the archive: path → target path.
    pub aliases: HashMap<String, String>,
    /// Whether to store files that are neither blobs nor metadata (docker-archive).
    pub keep_other_files: bool,
    /// Counters.
    pub counts: Counts,
    /// Bytes of input consumed (for directory sources, where no reader counts).
    pub consumed: Option<Arc<AtomicU64>>,
    /// Blobs found bad in the store and rewritten from the package.
    pub replaced: Vec<ReplacedBlob>,
    /// Image archives found inside the package ([`crate::nested`]), each
    /// collected on its own: (entry path, what it held).
    pub nested: Vec<(String, Collector<'s>)>,
    /// 0 for the package, 1 inside one of its image archives.
    depth: u32,
    present_check: PresentCheck,
    /// The journal's blake3 records (`ferry-verify --fast`'s sidecar).
    recorded: HashMap<Digest, (u64, String)>,
    buf: Vec<u8>,
}

/// Reading an entry failed: either the input (corrupt/truncated) or the store.
pub enum EntryFailure {
    /// The package could not be read (decoder or tar error, or short entry).
    Input(String),
    /// Anything else, already typed.
    Package(PackageError),
}

impl From<PackageError> for EntryFailure {
    fn from(e: PackageError) -> Self {
        EntryFailure::Package(e)
    }
}

impl<'s> Collector<'s> {
    /// A collector writing into `store`, checking blobs already there with `present_check`.
    pub fn new(store: &'s Store, present_check: PresentCheck) -> Collector<'s> {
        // An unreadable journal only means no records: blobs are then checked by their digest.
        let recorded = journal::replay(&store.journal_path())
            .map(|r| r.blobs)
            .unwrap_or_default();
        Collector::with_records(store, present_check, recorded, vec![0; CHUNK], 0)
    }

    fn with_records(
        store: &'s Store,
        present_check: PresentCheck,
        recorded: HashMap<Digest, (u64, String)>,
        buf: Vec<u8>,
        depth: u32,
    ) -> Collector<'s> {
        Collector {
            replaced: Vec::new(),
            nested: Vec::new(),
            depth,
            present_check,
            recorded,
            store,
            seen: HashSet::new(),
            metadata: HashMap::new(),
            files: HashMap::new(),
            aliases: HashMap::new(),
            keep_other_files: true,
            counts: Counts::default(),
            consumed: None,
            buf,
        }
    }

    /// Every file stored by this collector and by those of its image archives.
    pub fn all_files(&self) -> Box<dyn Iterator<Item = &StoredFile> + '_> {
        Box::new(
            self.files
                .values()
                .chain(self.nested.iter().flat_map(|(_, c)| c.all_files())),
        )
    }

    /// The stored file at `path`, following in-archive links (at most 16 hops).
    pub fn lookup(&self, path: &str) -> Option<&StoredFile> {
        let mut current: String = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect::<Vec<_>>()
            .join("/");
        for _ in 0..16 {
            if let Some(f) = self.files.get(&current) {
                return Some(f);
            }
            current = self.aliases.get(&current)?.clone();
        }
        None
    }

    fn blob_entry(
        &mut self,
        path: &str,
        rest: &str,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        let bad = |why: String| PackageError::BadBlobName {
            entry: path.to_owned(),
            why,
        };
        let (alg, hex) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected blobs/<algorithm>/<hex>".into()))?;
        let algorithm = Algorithm::from_name(alg).ok_or_else(|| {
            bad(format!(
                "unsupported algorithm {alg:?} (sha256 and sha512 only)"
            ))
        })?;
        let digest = Digest::new(algorithm, hex).map_err(|e| bad(e.to_string()))?;
        if self.present_blob_is_sound(&digest, size) {
            self.drain(path, size, reader)?;
            self.counts.blobs_present += 1;
            self.counts.bytes_present += size;
            self.files.insert(
                path.to_owned(),
                StoredFile {
                    digest,
                    size,
                    written_now: false,
                },
            );
            return Ok(());
        }
        let stored = self.stream_to_store(path, size, reader, Some(&digest))?;
        self.files.insert(path.to_owned(), stored);
        Ok(())
    }

    /// True if the blob is at its final path and passes the check; a copy that
    /// fails it is recorded in [`Collector::replaced`] (and then rewritten).
    /// Files at final paths were verified when written, but media rot.
    fn present_blob_is_sound(&mut self, digest: &Digest, size: u64) -> bool {
        if !self.store.blob_path(digest).exists() {
            return false;
        }
        let record = match self.present_check {
            PresentCheck::Recorded => self.recorded.get(digest),
            PresentCheck::Full => None,
        };
        match check_stored_blob(self.store, digest, size, record) {
            Ok(()) => true,
            Err(ProblemKind::Missing) => false, // removed meanwhile: just write it
            Err(found) => {
                self.replaced.push(ReplacedBlob {
                    digest: digest.clone(),
                    found,
                });
                false
            }
        }
    }

    /// A file that is neither a blob nor metadata: an image archive
    /// ([`crate::nested`], decided from its first bytes) is walked in
    /// place; anything else is stored under its computed digest when
    /// `keep_other_files` (docker-archive layers and configs), else skipped.
    fn other_entry(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        let head = read_head(path, size, reader)?;
        let archive = image_archive(&head);
        let rest = size - head.len() as u64;
        let mut whole = Cursor::new(head).chain((&mut *reader).take(rest));
        if let Some(compression) = archive {
            return self.nested_archive(path, compression, &mut whole);
        }
        if !self.keep_other_files {
            return self.drain(path, size, &mut whole);
        }
        let stored = self.stream_to_store(path, size, &mut whole, None)?;
        self.files.insert(path.to_owned(), stored);
        Ok(())
    }

    /// Walks the image archive at entry `path` with the same safety rules,
    /// collecting it on its own into [`Collector::nested`]. Any failure names
    /// the entry ([`PackageError::Nested`]).
    fn nested_archive(
        &mut self,
        path: &str,
        compression: Compression,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        let nested = |inner: PackageError| PackageError::Nested {
            entry: path.to_owned(),
            inner: Box::new(inner),
        };
        if self.depth >= MAX_NESTING {
            return Err(nested(PackageError::UnsafeEntry {
                entry: path.to_owned(),
                why: "an image archive inside an image archive (one level of nesting at most)"
                    .into(),
            })
            .into());
        }
        let mut inner = Collector::with_records(
            self.store,
            self.present_check,
            std::mem::take(&mut self.recorded),
            std::mem::take(&mut self.buf),
            self.depth + 1,
        );
        let result = walk_image_archive(path, compression, reader, &mut inner);
        self.recorded = std::mem::take(&mut inner.recorded);
        self.buf = std::mem::take(&mut inner.buf);
        self.counts.blobs_written += inner.counts.blobs_written;
        self.counts.bytes_written += inner.counts.bytes_written;
        self.counts.blobs_present += inner.counts.blobs_present;
        self.counts.bytes_present += inner.counts.bytes_present;
        self.replaced.append(&mut inner.replaced);
        result.map_err(nested)?;
        self.nested.push((path.to_owned(), inner));
        Ok(())
    }

    fn metadata_entry(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        let bytes = read_metadata(path, size, reader)?;
        self.metadata.insert(path.to_owned(), bytes);
        Ok(())
    }

    fn drain(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = reader
                .read(&mut self.buf[..want])
                .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
            if n == 0 {
                return Err(short_entry(path, size, size - left));
            }
            left -= n as u64;
        }
        Ok(())
    }

    /// A tar header may declare any size (a decompression bomb declares 1 PiB and
    /// supplies zeros): refuse an entry that cannot fit in the store's free space
    /// before writing a byte of it, instead of filling the disk first. Reported as
    /// a full disk, so a legitimate package gets the same advice as when it fills.
    fn check_room(&self, path: &str, size: u64) -> Result<(), EntryFailure> {
        let root = self.store.root();
        match ferry_store::space::available_bytes(root) {
            Ok(available) if size > available => Err(PackageError::Store(StoreError::DiskFull {
                path: root.to_path_buf(),
                what: format!(
                    "entry {path:?} declares {size} bytes but only {available} are free; writing it"
                ),
            })
            .into()),
            _ => Ok(()),
        }
    }

    fn stream_to_store(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<StoredFile, EntryFailure> {
        self.check_room(path, size)?;
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut writer = self
            .store
            .new_blob_writer(algorithm)
            .map_err(PackageError::from)?;
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = reader
                .read(&mut self.buf[..want])
                .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
            if n == 0 {
                return Err(short_entry(path, size, size - left));
            }
            writer
                .write_chunk(&self.buf[..n])
                .map_err(PackageError::from)?;
            left -= n as u64;
        }
        let stored = match expected {
            Some(d) => writer.commit(&format!("entry {path:?}"), d, Some(size)),
            None => writer.commit_computed(),
        }
        .map_err(PackageError::from)?;
        self.counts.blobs_written += 1;
        self.counts.bytes_written += size;
        Ok(StoredFile {
            digest: stored.digest,
            size,
            written_now: true,
        })
    }
}

impl crate::entries::EntryHandler for Collector<'_> {
    /// Handles one regular-file entry at normalised `path` of `size` bytes.
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        if !self.seen.insert(path.to_owned()) {
            return Err(PackageError::DuplicateEntry {
                entry: path.to_owned(),
            }
            .into());
        }
        let result = if let Some(rest) = path.strip_prefix("blobs/") {
            self.blob_entry(path, rest, size, reader)
        } else if METADATA_FILES.contains(&path) {
            self.metadata_entry(path, size, reader)
        } else {
            self.other_entry(path, size, reader)
        };
        if let Some(c) = &self.consumed {
            c.fetch_add(size, Ordering::Relaxed);
        }
        result
    }

    /// Records an in-archive link (never created on disk).
    fn link(&mut self, path: String, target: String) -> Result<(), PackageError> {
        if !self.seen.insert(path.clone()) {
            return Err(PackageError::DuplicateEntry { entry: path });
        }
        self.aliases.insert(path, target);
        Ok(())
    }
}

fn short_entry(path: &str, expected: u64, got: u64) -> EntryFailure {
    EntryFailure::Input(format!(
        "entry {path:?} is truncated: header says {expected} bytes, only {got} present"
    ))
}

/// Reads a metadata file (`index.json`, `manifest.json`, …) whole, refusing
/// one larger than [`MAX_METADATA_BYTES`] before reading it.
pub(crate) fn read_metadata(
    path: &str,
    size: u64,
    reader: &mut dyn Read,
) -> Result<Vec<u8>, EntryFailure> {
    if size > MAX_METADATA_BYTES {
        return Err(PackageError::TooLarge {
            entry: path.to_owned(),
            size,
            limit: MAX_METADATA_BYTES,
            what: "a metadata file",
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(short_entry(path, size, bytes.len() as u64));
    }
    Ok(bytes)
}
