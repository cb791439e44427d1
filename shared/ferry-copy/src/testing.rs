//! Test doubles for the engine's unit tests: images built in memory, a
//! random-access and a single-pass source over them, and a sink that records
//! every call in order (the engine's "request sequence") and can refuse
//! mounts or fail a given call.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use ferry_store::layout::IndexJson;
use ferry_store::{media, Descriptor, Digest};
use serde_json::json;

use crate::plan::{plan, Destination, Plan};
use crate::report::CopyError;
use crate::sink::{BlobPut, Body, Sink, SinkError, SinkErrorKind};
use crate::source::Source;
use crate::stream::{Entry, EntryError, Flow, SinglePassSource};

/// Blobs and manifests by digest, and the index entries naming images.
#[derive(Default, Clone)]
pub struct Images {
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    pub index: Vec<Descriptor>,
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
}

impl Images {
    pub fn put(&mut self, media_type: &str, bytes: Vec<u8>) -> Descriptor {
        let d = descriptor(media_type, &bytes);
        self.blobs.insert(d.digest.clone(), bytes);
        d
    }

    /// A manifest with a config and the given layers; returns its descriptor (unnamed).
    pub fn manifest(&mut self, config: &str, layers: &[&[u8]]) -> Descriptor {
        let config = self.put(media::OCI_CONFIG, config.as_bytes().to_vec());
        let layers: Vec<Descriptor> = layers
            .iter()
            .map(|l| self.put(media::OCI_LAYER_GZIP, l.to_vec()))
            .collect();
        let body = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": layers});
        self.put(media::OCI_MANIFEST, serde_json::to_vec(&body).unwrap())
    }

    /// An index over manifests.
    pub fn index_of(&mut self, manifests: &[Descriptor]) -> Descriptor {
        let body =
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
        self.put(media::OCI_INDEX, serde_json::to_vec(&body).unwrap())
    }

    /// A signature-like artifact whose subject is `subject`.
    pub fn referrer(&mut self, subject: &Descriptor, payload: &[u8]) -> Descriptor {
        let empty = self.put("application/vnd.oci.empty.v1+json", b"{}".to_vec());
        let layer = self.put(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            payload.to_vec(),
        );
        let body = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": empty, "layers": [layer], "subject": subject});
        let d = self.put(media::OCI_MANIFEST, serde_json::to_vec(&body).unwrap());
        self.index.push(d.clone());
        d
    }

    /// Names `root` in the index.
    pub fn name(&mut self, root: &Descriptor, name: &str) {
        self.index
            .push(ferry_store::layout::named_entry(root.clone(), name));
    }

    /// The plan with names mapped as the registry sink maps them (host dropped, namespace `ns`).
    pub fn plan(&self) -> Plan {
        plan(&self.index, map, |d| {
            self.blobs
                .get(&d.digest)
                .cloned()
                .ok_or_else(|| ferry_store::StoreError::MissingBlob {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    parent: String::new(),
                })
        })
        .unwrap()
    }

    /// A package: oci-layout and index.json first (`metadata_first`) or last, blobs in digest order
    /// (manifests before layers when metadata comes first).
    pub fn package(&self, metadata_first: bool) -> MemoryPackage {
        let index = serde_json::to_vec(&IndexJson {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_owned()),
            manifests: self.index.clone(),
        })
        .unwrap();
        let meta = vec![
            (
                "oci-layout".to_owned(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_owned(), index),
        ];
        let mut blobs: Vec<(String, Vec<u8>)> = self
            .blobs
            .iter()
            .map(|(d, b)| (format!("blobs/sha256/{}", d.hex()), b.clone()))
            .collect();
        // Manifests (JSON) first, then the rest.
        blobs.sort_by_key(|(_, b)| b.first() != Some(&b'{'));
        let entries = if metadata_first {
            meta.into_iter().chain(blobs).collect()
        } else {
            blobs.into_iter().chain(meta).collect()
        };
        MemoryPackage {
            entries,
            reads: AtomicU64::new(0),
        }
    }
}

pub fn map(name: &str) -> Result<Destination, String> {
    let r: ferry_store::Reference = name
        .parse()
        .map_err(|e: ferry_store::reference::ReferenceError| e.to_string())?;
    let repository = format!("ns/{}", r.repository);
    Ok(Destination {
        display: format!("reg/{repository}"),
        repository,
        tag: r.tag,
    })
}

impl Source for Images {
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, CopyError> {
        Ok(self.blobs[&desc.digest].clone())
    }
    fn open_blob(&self, desc: &Descriptor, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let bytes = self.blobs[&desc.digest][offset as usize..].to_vec();
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
}

/// A package as a list of (path, bytes), read once in order.
pub struct MemoryPackage {
    pub entries: Vec<(String, Vec<u8>)>,
    /// How many times it was read.
    pub reads: AtomicU64,
}

impl SinglePassSource for MemoryPackage {
    fn read_once(
        &self,
        _progress: Arc<AtomicU64>,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<Flow, EntryError>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (path, bytes) in &self.entries {
            let flow = if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                let digest = Digest::new(ferry_store::Algorithm::Sha256, hex).unwrap();
                let mut reader: &[u8] = bytes;
                visit(Entry::Blob {
                    path,
                    digest,
                    size: bytes.len() as u64,
                    reader: &mut reader,
                })
            } else {
                visit(Entry::Metadata {
                    path,
                    bytes: bytes.clone(),
                })
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return Ok(()),
                Err(EntryError::Read(e)) => return Err(e.into()),
                Err(EntryError::Mismatch {
                    entry,
                    expected,
                    actual,
                }) => {
                    return Err(format!("entry {entry}: expected {expected}, got {actual}").into())
                }
            }
        }
        Ok(())
    }
}

/// A sink in memory that records each call: "HEAD blob REPO DIGEST",
/// "MOUNT REPO DIGEST from REPO", "UPLOAD REPO DIGEST", "HEAD manifest REPO REF",
/// "GET manifest REPO REF", "PUT manifest REPO REF".
#[derive(Default)]
pub struct MemorySink {
    pub calls: Mutex<Vec<String>>,
    pub blobs: Mutex<HashSet<(String, Digest)>>,
    pub stored: Mutex<HashMap<Digest, Vec<u8>>>,
    pub manifests: Mutex<HashMap<(String, String), Vec<u8>>>,
    pub refuse_mounts: bool,
    /// Calls starting with this prefix fail (transiently when `fail_transient`).
    pub fail: Option<String>,
    pub fail_transient: bool,
    /// The holding repository it offers, if any.
    pub holding: Option<String>,
    /// Which thread made each upload, in order.
    pub upload_threads: Mutex<Vec<(Digest, std::thread::ThreadId)>>,
    /// When set, every presence check (`has_blob`) waits until this many are
    /// in flight at once (or fails after 30 s: the checks were not run that
    /// concurrently).
    pub presence_rendezvous: Option<usize>,
    pub presence_waiting: Mutex<usize>,
    pub presence_arrived: std::sync::Condvar,
}

impl MemorySink {
    fn call(&self, c: String) -> Result<(), SinkError> {
        let fail = self
            .fail
            .as_ref()
            .is_some_and(|f| c.starts_with(f.as_str()));
        self.calls.lock().unwrap().push(c.clone());
        if fail {
            let kind = if self.fail_transient {
                SinkErrorKind::Transient
            } else {
                SinkErrorKind::Permanent
            };
            return Err(SinkError::new(kind, format!("scripted failure of {c}")));
        }
        Ok(())
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// Calls that write.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("PUT") || c.starts_with("UPLOAD") || c.starts_with("MOUNT"))
            .collect()
    }
    pub fn holds(&self, repo: &str, d: &Digest) -> bool {
        self.blobs
            .lock()
            .unwrap()
            .contains(&(repo.to_owned(), d.clone()))
    }
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        self.manifests
            .lock()
            .unwrap()
            .get(&(repo.to_owned(), reference.to_owned()))
            .cloned()
    }
}

pub fn short(d: &Digest) -> String {
    d.hex()[..8].to_owned()
}

impl Sink for MemorySink {
    fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, SinkError> {
        self.call(format!(
            "HEAD manifest {repository} {}",
            short_ref(reference)
        ))?;
        Ok(self
            .manifest(repository, reference)
            .map(|b| Digest::sha256_of(&b)))
    }
    fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, SinkError> {
        self.call(format!(
            "GET manifest {repository} {}",
            short_ref(reference)
        ))?;
        Ok(self.manifest(repository, reference))
    }
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        _media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SinkError> {
        self.call(format!(
            "PUT manifest {repository} {}",
            short_ref(reference)
        ))?;
        let mut m = self.manifests.lock().unwrap();
        m.insert(
            (repository.to_owned(), reference.to_owned()),
            bytes.to_vec(),
        );
        m.insert(
            (repository.to_owned(), Digest::sha256_of(bytes).to_string()),
            bytes.to_vec(),
        );
        Ok(())
    }
    fn has_blob(&self, repository: &str, desc: &Descriptor) -> Result<bool, SinkError> {
        self.call(format!("HEAD blob {repository} {}", short(&desc.digest)))?;
        if let Some(want) = self.presence_rendezvous {
            let mut waiting = self.presence_waiting.lock().unwrap();
            *waiting += 1;
            self.presence_arrived.notify_all();
            let (waiting, timeout) = self
                .presence_arrived
                .wait_timeout_while(waiting, std::time::Duration::from_secs(30), |n| *n < want)
                .unwrap();
            if timeout.timed_out() {
                return Err(SinkError::new(
                    SinkErrorKind::Permanent,
                    format!(
                        "only {} presence checks in flight at once, not {want}",
                        *waiting
                    ),
                ));
            }
        }
        Ok(self.holds(repository, &desc.digest))
    }
    fn put_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        body: Body<'_>,
    ) -> Result<BlobPut, SinkError> {
        if let Some(from) = mount_from {
            self.call(format!(
                "MOUNT {repository} {} from {from}",
                short(&desc.digest)
            ))?;
            if !self.refuse_mounts && self.holds(from, &desc.digest) {
                self.blobs
                    .lock()
                    .unwrap()
                    .insert((repository.to_owned(), desc.digest.clone()));
                return Ok(BlobPut::Mounted);
            }
        }
        self.call(format!("UPLOAD {repository} {}", short(&desc.digest)))?;
        self.upload_threads
            .lock()
            .unwrap()
            .push((desc.digest.clone(), std::thread::current().id()));
        let mut bytes = Vec::new();
        match body {
            Body::Reopen(open) | Body::ReopenChecked(open) => {
                open(0)
                    .and_then(|mut r| r.read_to_end(&mut bytes))
                    .map_err(|e| SinkError::new(SinkErrorKind::Permanent, e))?;
            }
            Body::Once(r) => {
                r.read_to_end(&mut bytes)
                    .map_err(|e| SinkError::new(SinkErrorKind::Permanent, e))?;
            }
            Body::Gone => {
                return Err(SinkError::new(
                    SinkErrorKind::NeedsBytes,
                    "the blob streamed past already",
                ))
            }
        }
        if Digest::sha256_of(&bytes) != desc.digest {
            return Err(SinkError::new(SinkErrorKind::Permanent, "DIGEST_INVALID"));
        }
        self.stored
            .lock()
            .unwrap()
            .insert(desc.digest.clone(), bytes);
        self.blobs
            .lock()
            .unwrap()
            .insert((repository.to_owned(), desc.digest.clone()));
        Ok(BlobPut::Uploaded { resumed_from: 0 })
    }
    fn read_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, SinkError> {
        self.call(format!("GET blob {repository} {}", short(&desc.digest)))?;
        let bytes = self
            .stored
            .lock()
            .unwrap()
            .get(&desc.digest)
            .cloned()
            .unwrap_or_default();
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
    fn holding_repository(&self) -> Option<String> {
        self.holding.clone()
    }
    fn list_tags(&self, repository: &str) -> Result<Vec<String>, SinkError> {
        self.call(format!("LIST tags {repository}"))?;
        Ok(self
            .manifests
            .lock()
            .unwrap()
            .keys()
            .filter(|(r, t)| r == repository && !t.starts_with("sha256:"))
            .map(|(_, t)| t.clone())
            .collect())
    }
}

impl MemorySink {
    /// A sink offering `ns/ferry-holding`.
    pub fn with_holding() -> MemorySink {
        MemorySink {
            holding: Some("ns/ferry-holding".into()),
            ..Default::default()
        }
    }
}

fn short_ref(reference: &str) -> String {
    match reference.strip_prefix("sha256:") {
        Some(hex) => hex[..8].to_owned(),
        None => reference.to_owned(),
    }
}
