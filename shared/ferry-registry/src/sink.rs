//! The registry as a copy [`Sink`]: presence by HEAD, blobs mounted or
//! uploaded (resumable sessions recorded in a [`SessionLog`]), manifests and
//! tags by PUT of their exact bytes, reads for `ferry-diff`. No copy policy
//! lives here: what to send, in which order, is the engine's
//! (`ferry_copy::executor`).
//!
//! Invariants: a blob or manifest read by digest is checked against that
//! digest (a mismatch is [`SinkErrorKind::Mismatch`]); retryable failures
//! are [`SinkErrorKind::Transient`] (the one retry layer has already
//! retried them).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use ferry_copy::plan::Destination;
use ferry_copy::sink::{BlobPut, Body, Sink, SinkError, SinkErrorKind};
use ferry_store::journal::{JournalEntry, SessionKey};
use ferry_store::{Descriptor, Digest, Store};

use crate::client::{Access, Client};
use crate::error::RegistryError;
use crate::meter::TransferMeter;
use crate::target::Target;
use crate::upload::{NoSessionLog, SessionLog, UploadOptions, UploadOutcome};

/// A registry behind a [`Client`], as a copy sink.
pub struct RegistrySink<'c> {
    client: &'c Client,
    access: Access,
    meter: &'c TransferMeter,
    sessions: &'c dyn SessionLog,
    upload: UploadOptions,
    holding: Option<String>,
}

/// The holding repository's last path component: blobs of a package whose
/// `index.json` comes last wait there (under the namespace) until their
/// images are known, and are mounted from there.
pub const HOLDING_REPOSITORY: &str = "ferry-holding";

impl From<RegistryError> for SinkError {
    fn from(e: RegistryError) -> SinkError {
        let kind = match &e {
            RegistryError::DigestMismatch { actual, .. } => SinkErrorKind::Mismatch {
                actual: actual.clone(),
            },
            e if e.is_retryable() => SinkErrorKind::Transient,
            _ => SinkErrorKind::Permanent,
        };
        SinkError::new(kind, e)
    }
}

impl<'c> RegistrySink<'c> {
    /// A sink writing through `client`, showing transfers on `meter`, keeping
    /// upload sessions in `sessions`.
    pub fn new(
        client: &'c Client,
        meter: &'c TransferMeter,
        sessions: &'c dyn SessionLog,
        upload: UploadOptions,
    ) -> RegistrySink<'c> {
        RegistrySink {
            client,
            access: Access::Push,
            meter,
            sessions,
            upload,
            holding: None,
        }
    }

    /// Lets blobs wait in `NAMESPACE/ferry-holding` (or `ferry-holding`) on
    /// `target` before their images are known.
    pub fn with_holding(mut self, target: &Target) -> RegistrySink<'c> {
        self.holding = Some(match &target.namespace {
            Some(ns) => format!("{ns}/{HOLDING_REPOSITORY}"),
            None => HOLDING_REPOSITORY.to_owned(),
        });
        self
    }

    /// A sink that only reads (pull scopes): for comparisons.
    pub fn reading(client: &'c Client, meter: &'c TransferMeter) -> RegistrySink<'c> {
        RegistrySink {
            client,
            access: Access::Pull,
            meter,
            sessions: &NoSessionLog,
            upload: UploadOptions::default(),
            holding: None,
        }
    }
}

/// The destination of a source reference on `target`: namespace prefixed,
/// source host dropped, path and tag kept.
pub fn destination(target: &Target, name: &str) -> Result<Destination, String> {
    let mapped = target.map(name).map_err(|e| e.to_string())?;
    Ok(Destination {
        display: target.display_ref(&mapped),
        repository: mapped.repository,
        tag: mapped.tag,
    })
}

impl Sink for RegistrySink<'_> {
    fn ping(&self) -> Result<(), SinkError> {
        Ok(self.client.ping()?)
    }

    fn describe(&self) -> String {
        format!("registry {}", self.client.target().host)
    }

    fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, SinkError> {
        Ok(self
            .client
            .manifest_head(repository, reference, self.access)?
            .map(|m| m.digest))
    }

    fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(self
            .client
            .get_manifest(repository, reference)?
            .map(|(_, bytes)| bytes))
    }

    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SinkError> {
        self.client
            .put_manifest(repository, reference, media_type, bytes)?;
        Ok(())
    }

    /// A registry that answers a blob's HEAD with a server error every time
    /// (distribution does, for a blob whose link file a crash left empty)
    /// cannot say it has the blob: it is uploaded, which repairs it, rather
    /// than the push failing. Sending a content-addressed blob again is safe;
    /// a registry that is really down fails the upload too, and that is reported.
    fn has_blob(&self, repository: &str, desc: &Descriptor) -> Result<bool, SinkError> {
        match self.client.blob_size(repository, &desc.digest, self.access) {
            Ok(size) => Ok(size == Some(desc.size)),
            Err(e @ RegistryError::Status { status: 500.., .. }) => {
                self.client.log(&format!(
                    "{e}: cannot tell whether it is there; uploading it"
                ));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn put_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        body: Body<'_>,
    ) -> Result<BlobPut, SinkError> {
        let gone = |_: u64| -> std::io::Result<Box<dyn Read + Send>> {
            Err(std::io::Error::other(
                "the blob streamed past already; rerun to upload it",
            ))
        };
        let outcome = match body {
            Body::Once(reader) if mount_from.is_none() => {
                self.client
                    .upload_stream(repository, desc, reader, self.meter)?;
                UploadOutcome::Uploaded { resumed_from: 0 }
            }
            Body::Reopen(open) | Body::ReopenChecked(open) => self.client.upload_blob(
                repository,
                desc,
                open,
                mount_from,
                self.sessions,
                &self.upload,
                self.meter,
            )?,
            Body::Once(_) | Body::Gone => self
                .client
                .upload_blob(
                    repository,
                    desc,
                    &gone,
                    mount_from,
                    self.sessions,
                    &self.upload,
                    self.meter,
                )
                .map_err(|e| match e {
                    // The mount was refused and there are no bytes to send.
                    RegistryError::Local { .. } => SinkError::new(SinkErrorKind::NeedsBytes, e),
                    e => e.into(),
                })?,
        };
        Ok(match outcome {
            UploadOutcome::Mounted => BlobPut::Mounted,
            UploadOutcome::Uploaded { resumed_from } => BlobPut::Uploaded { resumed_from },
        })
    }

    fn read_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, SinkError> {
        Ok(Box::new(
            self.client.get_blob(repository, &desc.digest)?.reader(),
        ))
    }

    fn list_tags(&self, repository: &str) -> Result<Vec<String>, SinkError> {
        Ok(self.client.list_tags(repository)?)
    }

    fn tokens_fetched(&self) -> u64 {
        self.client.token_fetches()
    }

    fn holding_repository(&self) -> Option<String> {
        self.holding.clone()
    }

    fn remove_blob(&self, repository: &str, desc: &Descriptor) -> Result<bool, SinkError> {
        match self.client.delete_blob(repository, &desc.digest) {
            Ok(()) => Ok(true),
            // Deletes disabled (405 UNSUPPORTED), or already gone.
            Err(e) if matches!(e.status(), Some(404 | 405)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Upload sessions kept in a store's journal, so a rerun resumes them.
pub struct JournalSessions<'s> {
    store: &'s Store,
    registry: String,
    sessions: Mutex<HashMap<SessionKey, (String, u64)>>,
}

impl<'s> JournalSessions<'s> {
    /// The sessions recorded in `store`'s journal for `registry` (host:port).
    pub fn replay(
        store: &'s Store,
        registry: &str,
    ) -> Result<JournalSessions<'s>, ferry_store::StoreError> {
        let replay = ferry_store::journal::replay(&store.journal_path())?;
        Ok(JournalSessions {
            store,
            registry: registry.to_owned(),
            sessions: Mutex::new(replay.sessions),
        })
    }

    fn key(&self, repository: &str, digest: &Digest) -> SessionKey {
        (self.registry.clone(), repository.to_owned(), digest.clone())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, (String, u64)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionLog for JournalSessions<'_> {
    fn load(&self, repository: &str, digest: &Digest) -> Option<(String, u64)> {
        self.map().get(&self.key(repository, digest)).cloned()
    }
    fn save(&self, repository: &str, digest: &Digest, location: &str, offset: u64) {
        self.map()
            .insert(self.key(repository, digest), (location.to_owned(), offset));
        let _ = self.store.record(&JournalEntry::UploadSession {
            registry: self.registry.clone(),
            repository: repository.to_owned(),
            digest: digest.clone(),
            location: location.to_owned(),
            offset,
        });
        let _ = self.store.sync_journal();
    }
    fn clear(&self, repository: &str, digest: &Digest) {
        if self.map().remove(&self.key(repository, digest)).is_some() {
            let _ = self.store.record(&JournalEntry::UploadCleared {
                registry: self.registry.clone(),
                repository: repository.to_owned(),
                digest: digest.clone(),
            });
        }
    }
}

impl Drop for JournalSessions<'_> {
    fn drop(&mut self) {
        let _ = self.store.sync_journal();
    }
}
