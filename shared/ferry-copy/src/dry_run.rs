//! Dry run as a decorator over any sink: reads go through to the real sink,
//! writes are counted and not sent, and later reads see the writes this run
//! would have made (so the counts equal what the real run then does, even
//! when two images share a manifest or a blob).
//!
//! Invariant: a `DryRun` never calls a write method of the sink it wraps.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ferry_store::{Descriptor, Digest};

use crate::sink::{BlobPut, Body, Sink, SinkError};

/// Writes a dry run would have made.
#[derive(Debug, Default)]
pub struct Writes {
    /// Blobs uploaded.
    pub uploads: AtomicU64,
    /// Blobs mounted.
    pub mounts: AtomicU64,
    /// Manifests and tags written.
    pub manifests: AtomicU64,
}

/// A sink that lets reads through and counts writes.
pub struct DryRun<'s> {
    inner: &'s dyn Sink,
    /// What would have been written.
    pub writes: Writes,
    blobs: Mutex<HashSet<(String, Digest)>>,
    manifests: Mutex<std::collections::HashMap<(String, String), Digest>>,
}

impl<'s> DryRun<'s> {
    /// Wraps `inner`.
    pub fn new(inner: &'s dyn Sink) -> DryRun<'s> {
        DryRun {
            inner,
            writes: Writes::default(),
            blobs: Mutex::new(HashSet::new()),
            manifests: Mutex::new(Default::default()),
        }
    }
}

impl Sink for DryRun<'_> {
    fn ping(&self) -> Result<(), SinkError> {
        self.inner.ping()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, SinkError> {
        let key = (repository.to_owned(), reference.to_owned());
        if let Some(d) = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Some(d.clone()));
        }
        self.inner.manifest_digest(repository, reference)
    }
    fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, SinkError> {
        self.inner.get_manifest(repository, reference)
    }
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        _media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SinkError> {
        self.writes.manifests.fetch_add(1, Ordering::Relaxed);
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (repository.to_owned(), reference.to_owned()),
                Digest::sha256_of(bytes),
            );
        Ok(())
    }
    fn has_blob(&self, repository: &str, desc: &Descriptor) -> Result<bool, SinkError> {
        let key = (repository.to_owned(), desc.digest.clone());
        if self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(true);
        }
        self.inner.has_blob(repository, desc)
    }
    fn put_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        _body: Body<'_>,
    ) -> Result<BlobPut, SinkError> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((repository.to_owned(), desc.digest.clone()));
        if mount_from.is_some() {
            self.writes.mounts.fetch_add(1, Ordering::Relaxed);
            Ok(BlobPut::Mounted)
        } else {
            self.writes.uploads.fetch_add(1, Ordering::Relaxed);
            Ok(BlobPut::Uploaded { resumed_from: 0 })
        }
    }
    fn read_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, SinkError> {
        self.inner.read_blob(repository, desc)
    }
    fn list_tags(&self, repository: &str) -> Result<Vec<String>, SinkError> {
        self.inner.list_tags(repository)
    }
    fn is_dry_run(&self) -> bool {
        true
    }
    fn remove_blob(&self, _repository: &str, _desc: &Descriptor) -> Result<bool, SinkError> {
        Ok(false)
    }
    fn holding_repository(&self) -> Option<String> {
        self.inner.holding_repository()
    }
    fn tokens_fetched(&self) -> u64 {
        self.inner.tokens_fetched()
    }
}
