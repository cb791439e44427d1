//! A ferry [`Store`] as a copy [`Sink`]: what `ferry-pack` pulls into (its
//! cache), on the one copy engine. A store has one content-addressed
//! namespace: a blob present for one repository is present for all, so a
//! blob the store holds is never fetched again (a rerun after a kill fetches
//! only what is missing), and a second repository needing a blob gets it as a
//! "mount" (no bytes).
//!
//! Names: an image named `REPOSITORY:TAG` in `index.json` (both annotations,
//! as [`named_entry`] writes them); the copy's [`crate::plan::Destination`]
//! repository is a full `HOST/PATH`, so the store names the image by its
//! full reference.
//!
//! Invariants (tested below):
//! 1. A blob is written through the store's [`ferry_store::BlobWriter`]:
//!    hashed as it is written, checked against the requested digest and size
//!    BEFORE the rename to its final path, fsynced (file and directory)
//!    before `Ok`. Bytes that do not match are never at a final path.
//! 2. `has_blob` = a file at the blob's final path with the right size (the
//!    store's invariant 2 makes that enough).
//! 3. A manifest is stored as its exact bytes under their digest; by digest,
//!    the bytes must hash to it. A tag is an `index.json` entry, rewritten
//!    atomically (one writer at a time inside the process, under a lock).
//! 4. Reads never write.

use std::io::Read;
use std::sync::Mutex;

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::{image_name, named_entry};
use ferry_store::read_ahead::read_up_to;
use ferry_store::{Descriptor, Digest, Store, StoreError};

use crate::sink::{BlobPut, Body, Sink, SinkError, SinkErrorKind};

/// Read buffer of a blob copy into the store: filled before each write, so
/// that the writer's own 1 MiB buffer is bypassed (one copy fewer).
const COPY_BUFFER: usize = 1 << 20;

/// A store opened for writing, as a sink.
pub struct StoreSink<'s> {
    store: &'s Store,
    /// Serialises `index.json` read-modify-writes of concurrent commits.
    index: Mutex<()>,
}

impl<'s> StoreSink<'s> {
    /// Writes into `store` (opened for writing).
    pub fn new(store: &'s Store) -> StoreSink<'s> {
        StoreSink {
            store,
            index: Mutex::new(()),
        }
    }

    /// The full reference a tag names in the store: `REPOSITORY:TAG`.
    pub fn name_of(repository: &str, tag: &str) -> String {
        format!("{repository}:{tag}")
    }

    /// The `index.json` entry named `REPOSITORY:TAG`, if any.
    fn entry(&self, repository: &str, tag: &str) -> Result<Option<Descriptor>, SinkError> {
        let name = Self::name_of(repository, tag);
        let entries = self.store.index_entries().map_err(permanent)?;
        Ok(entries
            .into_iter()
            .find(|e| image_name(e) == Some(name.as_str())))
    }

    /// Writes a blob from `reader`, verified against `desc` before it is
    /// renamed into place: hashed here, or by `reader` itself when
    /// `reader_checks` (its last read fails on a mismatch; the commit below
    /// comes only after it returned end-of-data).
    fn write_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        reader_checks: bool,
    ) -> Result<(), SinkError> {
        let mut writer = if reader_checks {
            self.store.new_blob_writer_after_reader_check()
        } else {
            self.store.new_blob_writer(desc.digest.algorithm())
        }
        .map_err(permanent)?;
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match read_up_to(reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                // The source's own verdict (a digest mismatch it found) or a read
                // failure it could not recover from: nothing reaches the final path.
                Err(e) => return Err(read_failure(desc, e)),
            };
            if writer.written() + n as u64 > desc.size {
                return Err(SinkError::new(
                    SinkErrorKind::Permanent,
                    StoreError::SizeMismatch {
                        what: format!("blob {}", desc.digest),
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        actual: writer.written() + n as u64,
                    },
                ));
            }
            writer.write_chunk(&buf[..n]).map_err(permanent)?;
        }
        writer
            .commit(
                &format!("blob {} ({} bytes)", desc.digest, desc.size),
                &desc.digest,
                Some(desc.size),
            )
            .map_err(|e| match &e {
                StoreError::DigestMismatch { actual, .. } => SinkError::new(
                    SinkErrorKind::Mismatch {
                        actual: actual.to_string(),
                    },
                    e,
                ),
                _ => permanent(e),
            })?;
        Ok(())
    }
}

fn permanent(e: StoreError) -> SinkError {
    SinkError::new(SinkErrorKind::Permanent, e)
}

/// A failed read of a blob's bytes: a mismatch the source found stays a
/// mismatch (never retried into success); anything else is transient.
fn read_failure(desc: &Descriptor, e: std::io::Error) -> SinkError {
    let kind = if e.kind() == std::io::ErrorKind::InvalidData {
        SinkErrorKind::Permanent
    } else {
        SinkErrorKind::Transient
    };
    let message = format!("reading blob {}: {e}", desc.digest);
    SinkError::new(kind, message)
}

impl Sink for StoreSink<'_> {
    fn describe(&self) -> String {
        format!("store {}", self.store.root().display())
    }

    fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, SinkError> {
        if let Ok(digest) = reference.parse::<Digest>() {
            let present = std::fs::metadata(self.store.blob_path(&digest))
                .map(|m| m.is_file())
                .unwrap_or(false);
            return Ok(present.then_some(digest));
        }
        Ok(self.entry(repository, reference)?.map(|e| e.digest))
    }

    fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, SinkError> {
        let desc = match reference.parse::<Digest>() {
            Ok(digest) => {
                let path = self.store.blob_path(&digest);
                let Ok(meta) = std::fs::metadata(&path) else {
                    return Ok(None);
                };
                Descriptor::new("", digest, meta.len())
            }
            Err(_) => match self.entry(repository, reference)? {
                Some(e) => e,
                None => return Ok(None),
            },
        };
        match self.store.read_small_blob(&desc, MAX_MANIFEST_BYTES) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StoreError::MissingBlob { .. }) => Ok(None),
            Err(e) => Err(permanent(e)),
        }
    }

    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SinkError> {
        let digest = match reference.parse::<Digest>() {
            Ok(asked) => {
                let actual = asked.of_same_algorithm(bytes);
                if actual != asked {
                    return Err(SinkError::new(
                        SinkErrorKind::Mismatch {
                            actual: actual.to_string(),
                        },
                        StoreError::DigestMismatch {
                            what: format!("manifest {asked} for {repository}"),
                            expected: asked,
                            actual,
                        },
                    ));
                }
                actual
            }
            Err(_) => Digest::sha256_of(bytes),
        };
        self.store
            .put_bytes(&digest, bytes, &format!("manifest {digest}"))
            .map_err(permanent)?;
        if reference.parse::<Digest>().is_err() {
            let entry = named_entry(
                Descriptor::new(media_type, digest, bytes.len() as u64),
                &Self::name_of(repository, reference),
            );
            let _one_writer = self.index.lock().unwrap_or_else(|p| p.into_inner());
            self.store
                .upsert_index_entries(&[entry])
                .map_err(permanent)?;
        }
        Ok(())
    }

    fn has_blob(&self, _repository: &str, desc: &Descriptor) -> Result<bool, SinkError> {
        Ok(self.store.has_blob(&desc.digest, desc.size))
    }

    fn put_blob(
        &self,
        _repository: &str,
        desc: &Descriptor,
        _mount_from: Option<&str>,
        body: Body<'_>,
    ) -> Result<BlobPut, SinkError> {
        if self.store.has_blob(&desc.digest, desc.size) {
            // One namespace: held for one repository is held for all.
            return Ok(BlobPut::Mounted);
        }
        match body {
            Body::Reopen(open) => {
                let mut reader = open(0).map_err(|e| read_failure(desc, e))?;
                self.write_blob(desc, &mut reader, false)?;
            }
            Body::ReopenChecked(open) => {
                let mut reader = open(0).map_err(|e| read_failure(desc, e))?;
                self.write_blob(desc, &mut reader, true)?;
            }
            Body::Once(reader) => self.write_blob(desc, reader, false)?,
            Body::Gone => {
                return Err(SinkError::new(
                    SinkErrorKind::NeedsBytes,
                    format!(
                        "blob {} is not in the store and no bytes came with it",
                        desc.digest
                    ),
                ))
            }
        }
        Ok(BlobPut::Uploaded { resumed_from: 0 })
    }

    fn read_blob(
        &self,
        _repository: &str,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, SinkError> {
        let path = self.store.blob_path(&desc.digest);
        let file = std::fs::File::open(&path)
            .map_err(|e| permanent(StoreError::io("open blob", &path, e)))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    }

    fn list_tags(&self, repository: &str) -> Result<Vec<String>, SinkError> {
        let prefix = format!("{repository}:");
        let entries = self.store.index_entries().map_err(permanent)?;
        let mut tags: Vec<String> = entries
            .iter()
            .filter_map(|e| image_name(e)?.strip_prefix(&prefix).map(str::to_owned))
            .filter(|t| !t.contains('/'))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::executor::{copy, CopyOptions};
    use crate::report::CopyEvent;
    use crate::source::Source;
    use crate::testing::Images;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A source over `Images` that counts blob opens and can corrupt one blob.
    struct Counting<'a> {
        images: &'a Images,
        opens: AtomicU64,
        corrupt: Option<Digest>,
    }

    impl Source for Counting<'_> {
        fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, crate::CopyError> {
            self.images.manifest(desc)
        }
        fn open_blob(
            &self,
            desc: &Descriptor,
            offset: u64,
        ) -> std::io::Result<Box<dyn Read + Send>> {
            self.opens.fetch_add(1, Ordering::Relaxed);
            let mut bytes = self.images.blobs[&desc.digest][offset as usize..].to_vec();
            if self.corrupt.as_ref() == Some(&desc.digest) {
                bytes[0] ^= 0xff;
            }
            Ok(Box::new(std::io::Cursor::new(bytes)))
        }
    }

    fn images() -> (Images, Descriptor, Descriptor) {
        let mut images = Images::default();
        let a = Images::manifest(&mut images, "cfg-a", &[b"base layer", b"layer a.."]);
        let b = Images::manifest(&mut images, "cfg-b", &[b"base layer", b"layer b.."]);
        images.name(&a, "reg.example/ns/a:1");
        images.name(&b, "reg.example/ns/b:1");
        images.referrer(&a, b"signature of a");
        (images, a, b)
    }

    /// Names map to `HOST/PATH` repositories, as ferry-pack maps them.
    fn plan_of(images: &Images) -> crate::Plan {
        crate::plan(
            &images.index,
            |name| {
                let r: ferry_store::Reference = name.parse().map_err(|e| format!("{e}"))?;
                let repository = format!("{}/{}", r.host, r.repository);
                Ok(crate::Destination {
                    display: name.to_owned(),
                    repository,
                    tag: r.tag,
                })
            },
            |d| Ok(images.blobs[&d.digest].clone()),
        )
        .unwrap()
    }

    fn quiet(_: CopyEvent) {}

    fn options() -> CopyOptions {
        CopyOptions {
            jobs: 4,
            force: false,
            clean_holding: false,
        }
    }

    #[test]
    fn a_copy_into_a_store_holds_every_blob_names_images_and_a_rerun_fetches_nothing() {
        let (images, a, _) = images();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let sink = StoreSink::new(&store);
        let source = Counting {
            images: &images,
            opens: AtomicU64::new(0),
            corrupt: None,
        };
        let plan = plan_of(&images);
        let report = copy(&plan, &source, &sink, options(), &quiet).unwrap();
        for (digest, bytes) in &images.blobs {
            assert_eq!(&std::fs::read(store.blob_path(digest)).unwrap(), bytes);
        }
        // The shared base layer is fetched once, "mounted" for the second repository.
        let leaf_blobs = images
            .blobs
            .keys()
            .filter(|d| {
                !plan
                    .images
                    .iter()
                    .any(|i| i.manifests.iter().any(|m| &m.digest == *d))
            })
            .count() as u64;
        assert_eq!(source.opens.load(Ordering::Relaxed), leaf_blobs);
        assert_eq!(report.blobs_uploaded, leaf_blobs);
        assert_eq!(report.blobs_mounted, 1);
        let entries = store.index_entries().unwrap();
        let named: Vec<&str> = entries.iter().filter_map(image_name).collect();
        assert!(named.contains(&"reg.example/ns/a:1") && named.contains(&"reg.example/ns/b:1"));
        let a_entry = entries
            .iter()
            .find(|e| image_name(e) == Some("reg.example/ns/a:1"))
            .unwrap();
        assert_eq!(a_entry.digest, a.digest);
        // The referrer is listed under its subject's fallback tag, as a registry would.
        let tag = crate::referrer::fallback_tag(&a.digest);
        assert!(sink.list_tags("reg.example/ns/a").unwrap().contains(&tag));
        assert_eq!(
            sink.manifest_digest("reg.example/ns/a", "1").unwrap(),
            Some(a.digest.clone())
        );

        // A rerun: every image complete, nothing opened.
        source.opens.store(0, Ordering::Relaxed);
        let again = copy(&plan, &source, &sink, options(), &quiet).unwrap();
        assert_eq!(source.opens.load(Ordering::Relaxed), 0);
        assert_eq!(again.images_up_to_date, 2);
    }

    #[test]
    fn a_partial_store_gets_only_what_it_lacks() {
        let (images, _, _) = images();
        let plan = plan_of(&images);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        // One layer already there (as after a kill during an earlier run).
        let layer = &plan.images[0].blobs[1];
        store
            .put_bytes(&layer.digest, &images.blobs[&layer.digest], "layer")
            .unwrap();
        let sink = StoreSink::new(&store);
        let source = Counting {
            images: &images,
            opens: AtomicU64::new(0),
            corrupt: None,
        };
        let report = copy(&plan, &source, &sink, options(), &quiet).unwrap();
        assert!(report.blobs_skipped >= 1);
        let all: std::collections::BTreeSet<&Digest> = plan
            .images
            .iter()
            .flat_map(|i| i.blobs.iter().map(|b| &b.digest))
            .collect();
        assert_eq!(source.opens.load(Ordering::Relaxed), all.len() as u64 - 1);
    }

    #[test]
    fn bytes_that_do_not_match_never_reach_a_final_path_and_nothing_is_named() {
        let (images, a, _) = images();
        let plan = plan_of(&images);
        let bad = plan.images[0].blobs[2].digest.clone();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let sink = StoreSink::new(&store);
        let source = Counting {
            images: &images,
            opens: AtomicU64::new(0),
            corrupt: Some(bad.clone()),
        };
        let err = copy(&plan, &source, &sink, options(), &quiet).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&bad.to_string()), "{text}");
        assert!(matches!(
            err,
            crate::CopyError::Sink { ref source, .. } if matches!(source.kind, SinkErrorKind::Mismatch { .. })
        ));
        assert!(!store.blob_path(&bad).exists());
        assert!(store.index_entries().unwrap().is_empty());
        assert!(
            !store.blob_path(&a.digest).exists(),
            "a manifest before its blobs"
        );
        assert_eq!(
            std::fs::read_dir(store.state_dir().join("tmp"))
                .unwrap()
                .count(),
            0,
            "a temp file was left behind"
        );
    }

    #[test]
    fn a_manifest_by_digest_must_hash_to_it_and_a_short_body_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let sink = StoreSink::new(&store);
        let asked = Digest::sha256_of(b"{\"a\":1}");
        let err = sink
            .put_manifest("h/r", &asked.to_string(), "x", b"{\"a\":2}")
            .unwrap_err();
        assert!(matches!(err.kind, SinkErrorKind::Mismatch { .. }), "{err}");
        assert!(!store.blob_path(&asked).exists());
        sink.put_manifest("h/r", &asked.to_string(), "x", b"{\"a\":1}")
            .unwrap();
        assert_eq!(
            sink.get_manifest("h/r", &asked.to_string())
                .unwrap()
                .unwrap(),
            b"{\"a\":1}"
        );
        assert!(
            store.index_entries().unwrap().is_empty(),
            "by digest names nothing"
        );

        let blob = Descriptor::new("x", Digest::sha256_of(b"12345"), 5);
        let mut short: &[u8] = b"1234";
        let err = sink
            .put_blob("h/r", &blob, None, Body::Once(&mut short))
            .unwrap_err();
        assert!(err.to_string().contains(&blob.digest.to_string()), "{err}");
        assert!(!sink.has_blob("h/r", &blob).unwrap());
        let mut long: &[u8] = b"123456";
        assert!(sink
            .put_blob("h/r", &blob, None, Body::Once(&mut long))
            .is_err());
        assert!(matches!(
            sink.put_blob("h/r", &blob, None, Body::Gone)
                .unwrap_err()
                .kind,
            SinkErrorKind::NeedsBytes
        ));
    }

    /// A reader that hands out `bytes`, then fails its last read when `verdict` says so
    /// (what a source's checking reader does on a mismatch).
    struct SelfChecking {
        bytes: Vec<u8>,
        at: usize,
        verdict: Option<&'static str>,
    }

    impl Read for SelfChecking {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (self.bytes.len() - self.at).min(buf.len());
            if n == 0 {
                if let Some(why) = self.verdict {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
                }
            }
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_body_that_checks_itself_is_committed_only_after_its_verdict_and_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let sink = StoreSink::new(&store);
        let bytes = vec![7u8; 3 << 20];
        let blob = Descriptor::new("x", Digest::sha256_of(&bytes), bytes.len() as u64);
        let tmp_files = || {
            std::fs::read_dir(store.state_dir().join("tmp"))
                .unwrap()
                .count()
        };

        // The reader's own mismatch at its last read: refused for good (never
        // retried into success), named, nothing at the final path.
        let failing = |_: u64| -> std::io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(SelfChecking {
                bytes: bytes.clone(),
                at: 0,
                verdict: Some("digest mismatch"),
            }))
        };
        let err = sink
            .put_blob("h/r", &blob, None, Body::ReopenChecked(&failing))
            .unwrap_err();
        assert_eq!(err.kind, SinkErrorKind::Permanent, "{err}");
        assert!(err.to_string().contains(&blob.digest.to_string()), "{err}");
        assert!(!store.blob_path(&blob.digest).exists());
        assert_eq!(tmp_files(), 0, "a temp file was left behind");

        // The size is still the store's own check.
        let short = |_: u64| -> std::io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(SelfChecking {
                bytes: bytes[..1000].to_vec(),
                at: 0,
                verdict: None,
            }))
        };
        assert!(sink
            .put_blob("h/r", &blob, None, Body::ReopenChecked(&short))
            .is_err());
        assert!(!store.blob_path(&blob.digest).exists());

        // The right bytes: stored, with the blake3 the --fast audit reads.
        let good = |_: u64| -> std::io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(SelfChecking {
                bytes: bytes.clone(),
                at: 0,
                verdict: None,
            }))
        };
        sink.put_blob("h/r", &blob, None, Body::ReopenChecked(&good))
            .unwrap();
        assert_eq!(std::fs::read(store.blob_path(&blob.digest)).unwrap(), bytes);
        let journal =
            ferry_store::journal::replay(&store.state_dir().join("journal.jsonl")).unwrap();
        let (size, blake3) = &journal.blobs[&blob.digest];
        assert_eq!(*size, blob.size);
        assert_eq!(blake3.len(), 64, "{blake3}");
        assert_eq!(tmp_files(), 0);
    }
}
