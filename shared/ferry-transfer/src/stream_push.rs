//! Pushing straight from a package stream (no staging).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use ferry_package::collect::{EntryFailure, MAX_METADATA_BYTES, METADATA_FILES};
use ferry_package::entries::{for_each_entry, EntryHandler};
use ferry_package::{detect, PackageError, PackageFormat};

use crate::chunk_pool::FillError;
use crate::present::{make_present, BlobBody, BlobTask};
use crate::spool::{Spool, SPOOL_MAX_BLOB, SPOOL_WORKERS};
use ferry_registry::client::Access;
use ferry_registry::commit::{commit_image, ImageCommit};
use ferry_registry::meter::TransferMeter;
use ferry_registry::push::{PushEvent, PushReport, PushedImage};
use ferry_registry::referrers::{all_listed, holds_subject, referrer_of, Referrer};
use ferry_registry::target::Mapped;
use ferry_registry::{Client, RegistryError};
use ferry_store::descriptor::{children_of, MAX_MANIFEST_BYTES};
use ferry_store::layout::IndexJson;
use ferry_store::walk::walk_in_memory;
use ferry_store::{media, Algorithm, Descriptor, Digest, Hasher, Reference, StoreError};

/// Blobs held in memory while the plan is not known yet.
const MAX_BUFFERED: u64 = 256 << 20;
/// Reads of the package in one run: blobs whose straight-through upload broke
/// off (a reset, a stall) are sent again from a further read of the package.
const MAX_PASSES: u32 = 3;
/// xz decoder threads. One: liblzma's threaded decoder holds two blocks per
/// thread (26 MiB with 8 MiB blocks, over 100 MiB with `xz -T0 -6` blocks), and
/// for layers (already compressed, so stored in the xz as-is) one thread decodes
/// at ~1 GB/s, faster than a registry takes them; the memory goes to the spool.
const DECODER_THREADS: u32 = 1;

/// Why a streaming push failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The package is unreadable, corrupt or hostile.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The registry failed (`source` says whether it may be retried).
    #[error("{context}: {source}")]
    Registry {
        /// Image and blob.
        context: String,
        /// Cause.
        #[source]
        source: RegistryError,
    },
}

impl StreamError {
    /// A network failure worth another attempt (not a refusal).
    fn is_transient(&self) -> bool {
        matches!(self, StreamError::Registry { source, .. } if source.is_retryable())
    }
}

/// How a streaming push ended.
pub enum StreamOutcome {
    /// Everything was pushed.
    Pushed(PushReport),
    /// The package cannot be streamed (layers before its index or manifests,
    /// or not a compressed tar): nothing was uploaded; stage it instead.
    NotStreamable(String),
}

struct ImagePlan {
    /// Tag already at the right digest: nothing to send (unless forced).
    up_to_date: bool,
    source: String,
    mapped: Mapped,
    target: String,
    root: Descriptor,
    /// Its manifests children-first, then its referrers' manifests.
    manifests: Vec<Descriptor>,
    /// Artifacts whose subject is in this image's graph.
    referrers: Vec<Referrer>,
}

struct Plan {
    images: Vec<ImagePlan>,
    /// A repository of an up-to-date image holding the blob (mount source).
    sources: HashMap<Digest, String>,
    /// Leaf blobs: descriptor and the repositories that need them.
    blobs: BTreeMap<Digest, (Descriptor, Vec<String>)>,
}

struct Streamer<'a> {
    client: &'a Client,
    jobs: usize,
    force: bool,
    /// Ask and count, send nothing, stop reading once the plan is known.
    dry_run: bool,
    sent: &'a TransferMeter,
    events: &'a (dyn Fn(PushEvent) + Sync),
    /// Background uploaders for blobs that fit in memory.
    spool: Option<&'a Spool<'a>>,
    metadata: HashMap<String, Vec<u8>>,
    /// Small blobs read before the plan was known.
    buffered: HashMap<Digest, Vec<u8>>,
    buffered_bytes: u64,
    plan: Option<Plan>,
    done: std::collections::HashSet<Digest>,
    not_streamable: Option<String>,
    report: PushReport,
    failure: Option<StreamError>,
    /// Blobs whose straight-through upload broke off in this pass (sent again in the next).
    deferred: std::collections::BTreeSet<Digest>,
    /// Why the last of them broke off.
    deferred_error: Option<StreamError>,
    /// Every needed blob was in the registry before the end of the package.
    finished_early: bool,
    /// (blob, repository) pairs the registry already has.
    present: std::collections::HashSet<(Digest, String)>,
}

/// Adds `leaf` to the blobs `repository` needs.
fn add_blob(
    blobs: &mut BTreeMap<Digest, (Descriptor, Vec<String>)>,
    leaf: Descriptor,
    repository: &str,
) {
    let e = blobs
        .entry(leaf.digest.clone())
        .or_insert_with(|| (leaf, Vec::new()));
    if !e.1.iter().any(|r| r == repository) {
        e.1.push(repository.to_owned());
    }
}

/// Reads an entry fully (≤ limit) into memory, hashing it.
fn read_all(reader: &mut dyn Read, size: u64, path: &str) -> Result<Vec<u8>, EntryFailure> {
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(EntryFailure::Input(format!("entry {path:?} is truncated")));
    }
    Ok(bytes)
}

/// Stops the archive walk early (not an error for the caller).
fn stop() -> EntryFailure {
    EntryFailure::Package(PackageError::Malformed {
        entry: String::new(),
        why: "stop".into(),
    })
}

impl Streamer<'_> {
    fn try_plan(&mut self) -> Result<Plan, String> {
        let index = self
            .metadata
            .get("index.json")
            .ok_or("index.json comes after the layers")?;
        let index: IndexJson =
            serde_json::from_slice(index).map_err(|e| format!("index.json: {e}"))?;
        let mut images = Vec::new();
        let mut blobs: BTreeMap<Digest, (Descriptor, Vec<String>)> = BTreeMap::new();
        let mut referrers = Vec::new();
        for root in index.manifests {
            let Some(name) = ferry_store::layout::image_name(&root)
                .filter(|n| Reference::is_full(n))
                .map(str::to_owned)
            else {
                // Unnamed: a referrer (signature, SBOM) if its manifest has a subject.
                match self
                    .buffered
                    .get(&root.digest)
                    .and_then(|bytes| referrer_of(&root, bytes))
                {
                    Some(r) => {
                        referrers.push(r);
                        continue;
                    }
                    None if self.buffered.contains_key(&root.digest) => {
                        return Err(format!(
                            "image {} has no full reference in index.json",
                            root.digest
                        ))
                    }
                    None => {
                        return Err(format!("manifests come after the layers ({})", root.digest))
                    }
                }
            };
            let mapped = self.client.target().map(&name).map_err(|e| e.to_string())?;
            let (manifests, leaves) = self.graph(&name, &root)?;
            for leaf in leaves {
                add_blob(&mut blobs, leaf, &mapped.repository);
            }
            let target = self.client.target().display_ref(&mapped);
            images.push(ImagePlan {
                up_to_date: false,
                source: name,
                mapped,
                target,
                root,
                manifests,
                referrers: Vec::new(),
            });
        }
        for r in referrers {
            let label = format!("referrer {} of {}", r.root.digest, r.subject);
            let (manifests, leaves) = self.graph(&label, &r.root)?;
            let mut attached = false;
            for image in images.iter_mut() {
                if !holds_subject(&image.root, &image.manifests, &r.subject)
                    || image
                        .referrers
                        .iter()
                        .any(|x| x.root.digest == r.root.digest)
                {
                    continue;
                }
                for m in &manifests {
                    if !image.manifests.iter().any(|x| x.digest == m.digest) {
                        image.manifests.push(m.clone());
                    }
                }
                for leaf in &leaves {
                    add_blob(&mut blobs, leaf.clone(), &image.mapped.repository);
                }
                image.referrers.push(r.clone());
                attached = true;
            }
            if !attached {
                (self.events)(PushEvent::ReferrerSkipped {
                    digest: r.root.digest.clone(),
                    reason: format!("its subject {} is not an image of the package", r.subject),
                });
            }
        }
        Ok(Plan {
            images,
            blobs,
            sources: HashMap::new(),
        })
    }

    /// The graph of `root` from the buffered manifests: its manifests
    /// children-first and its leaf blobs (those without external URLs).
    fn graph(
        &self,
        name: &str,
        root: &Descriptor,
    ) -> Result<(Vec<Descriptor>, Vec<Descriptor>), String> {
        let walk = walk_in_memory(&[(name.to_owned(), root.clone())], &self.buffered);
        if let Some(p) = walk.problems.first() {
            return Err(format!("manifests come after the layers ({p})"));
        }
        let (mut manifests, mut leaves) = (Vec::new(), Vec::new());
        for n in walk.nodes {
            if media::is_manifest_like(&n.descriptor.media_type) {
                manifests.push(n.descriptor);
            } else if n.descriptor.urls.is_empty() {
                leaves.push(n.descriptor);
            }
        }
        Ok((manifests, leaves))
    }

    /// Asks (in parallel) which blobs every repository already has; those are
    /// done before their bytes stream by, and once every blob is done the rest
    /// of the package need not be read at all.
    fn mark_present(&mut self) -> Result<(), StreamError> {
        if !self.force {
            if let Some(plan) = &mut self.plan {
                let client = self.client;
                let current =
                    ferry_registry::pool::parallel(&plan.images, self.jobs.max(4), |img| {
                        let ctx = |what: &str| {
                            let context = format!("image {} → {}: {what}", img.source, img.target);
                            move |source| StreamError::Registry { context, source }
                        };
                        // Complete when tagged and every referrer is listed.
                        Ok::<_, StreamError>(
                            client
                                .tag_points_at(&img.mapped, &img.root.digest)
                                .map_err(ctx("tag"))?
                                && all_listed(client, &img.mapped.repository, &img.referrers)
                                    .map_err(ctx("referrers"))?,
                        )
                    })?;
                for (img, done) in plan.images.iter_mut().zip(current) {
                    img.up_to_date = done;
                }
                // Only blobs of images still to push are needed.
                let needed: std::collections::HashSet<String> = plan
                    .images
                    .iter()
                    .filter(|i| !i.up_to_date)
                    .map(|i| i.mapped.repository.clone())
                    .collect();
                let sources = &mut plan.sources;
                plan.blobs.retain(|digest, (_, repos)| {
                    if let Some(src) = repos.iter().find(|r| !needed.contains(*r)) {
                        sources.insert(digest.clone(), src.clone());
                    }
                    repos.retain(|r| needed.contains(r));
                    !repos.is_empty()
                });
            }
        }
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        let pairs: Vec<(Digest, u64, String)> = plan
            .blobs
            .iter()
            .flat_map(|(d, (desc, repos))| {
                repos.iter().map(move |r| (d.clone(), desc.size, r.clone()))
            })
            .collect();
        let client = self.client;
        let found = ferry_registry::pool::parallel(&pairs, self.jobs, |(d, size, repo)| {
            client
                .blob_size(repo, d, Access::Push)
                .map(|s| (d.clone(), *size, repo.clone(), s == Some(*size)))
                .map_err(|source| StreamError::Registry {
                    context: format!("blob {d} in {repo}"),
                    source,
                })
        })?;
        let mut missing_somewhere: std::collections::HashSet<Digest> = Default::default();
        for (d, size, repo, present) in found {
            if present {
                self.report.blobs_skipped += 1;
                self.present.insert((d.clone(), repo.clone()));
                (self.events)(PushEvent::BlobSkipped {
                    repository: repo,
                    digest: d,
                    size,
                });
            } else {
                missing_somewhere.insert(d);
            }
        }
        let all: Vec<Digest> = plan.blobs.keys().cloned().collect();
        for d in all {
            if !missing_somewhere.contains(&d) {
                self.done.insert(d);
            }
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| p.blobs.keys().all(|d| self.done.contains(d)))
    }

    /// A dry run: counts what [`make_present`] would do for every blob still
    /// needed (one upload, then mounts into the other repositories; mounts
    /// only when another repository already has it) and marks it done.
    fn count_dry_run(&mut self) {
        let pending: Vec<Digest> = match &self.plan {
            Some(plan) => plan
                .blobs
                .keys()
                .filter(|d| !self.done.contains(*d))
                .cloned()
                .collect(),
            None => return,
        };
        for digest in pending {
            let Some(task) = self.task_for(&digest) else {
                continue;
            };
            let mut have_in = task.mount_source.is_some() || task.repos.iter().any(|(_, p)| *p);
            for (_, present) in &task.repos {
                if *present {
                    continue;
                }
                if have_in {
                    self.report.blobs_mounted += 1;
                } else {
                    self.report.blobs_uploaded += 1;
                    self.report.bytes_uploaded += task.desc.size;
                    have_in = true;
                }
            }
            self.done.insert(digest);
        }
    }

    /// What to do for one leaf blob of the plan (None: not needed).
    fn task_for(&self, digest: &Digest) -> Option<BlobTask> {
        let plan = self.plan.as_ref()?;
        let (desc, repos) = plan.blobs.get(digest)?;
        Some(BlobTask {
            desc: desc.clone(),
            // Presence was asked once, in parallel, by mark_present.
            repos: repos
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        self.present.contains(&(digest.clone(), r.clone())),
                    )
                })
                .collect(),
            mount_source: plan.sources.get(digest).cloned(),
        })
    }

    /// Makes one leaf blob present in every repository that needs it, now.
    fn push_blob(&mut self, digest: &Digest, body: BlobBody<'_>) -> Result<(), StreamError> {
        let Some(task) = self.task_for(digest) else {
            return Ok(());
        };
        let tally = make_present(self.client, self.sent, self.events, &task, body)?;
        self.report.blobs_uploaded += tally.uploaded;
        self.report.blobs_mounted += tally.mounted;
        self.report.bytes_uploaded += tally.bytes;
        Ok(())
    }

    /// Hands a needed blob that fits the spool to the background uploaders:
    /// read into memory, verified, queued. Returns false when it is too large
    /// or the spool is full (the caller streams it instead).
    fn spool_blob(
        &mut self,
        path: &str,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<bool, EntryFailure> {
        let Some(spool) = self.spool else {
            return Ok(false);
        };
        if size > SPOOL_MAX_BLOB {
            return Ok(false);
        }
        let Some(task) = self.task_for(digest) else {
            return Ok(false);
        };
        let Some(memory) = spool.try_reserve(size) else {
            return Ok(false); // full: this one streams straight to the registry
        };
        let blob = memory.fill(reader, size, digest).map_err(|e| match e {
            FillError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                EntryFailure::Input(format!("entry {path:?} is truncated"))
            }
            FillError::Read(e) => EntryFailure::Input(format!("reading entry {path:?}: {e}")),
            FillError::Digest { actual } => PackageError::Store(StoreError::DigestMismatch {
                what: format!("entry {path:?}"),
                expected: digest.clone(),
                actual,
            })
            .into(),
        })?;
        spool.submit(task, blob);
        Ok(true)
    }
}

/// Hashes what passes through, so the package's bytes are verified too.
struct HashingReader<'r> {
    inner: &'r mut dyn Read,
    hasher: Hasher,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl EntryHandler for Streamer<'_> {
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        if METADATA_FILES.contains(&path) {
            if size > MAX_METADATA_BYTES {
                return Err(PackageError::TooLarge {
                    entry: path.to_owned(),
                    size,
                    limit: MAX_METADATA_BYTES,
                    what: "a metadata file",
                }
                .into());
            }
            let bytes = read_all(reader, size, path)?;
            self.metadata.insert(path.to_owned(), bytes);
            return Ok(());
        }
        let Some(rest) = path.strip_prefix("blobs/") else {
            self.not_streamable = Some(format!(
                "{path} is not an OCI layout entry (docker-archive?)"
            ));
            return Err(stop());
        };
        let (alg, hex) = rest.split_once('/').unwrap_or(("", ""));
        let digest = Algorithm::from_name(alg)
            .and_then(|a| Digest::new(a, hex).ok())
            .ok_or_else(|| PackageError::BadBlobName {
                entry: path.to_owned(),
                why: "not a valid sha256/sha512 digest".into(),
            })?;
        let small = size <= MAX_MANIFEST_BYTES;
        if self.plan.is_none() {
            if small && self.buffered_bytes + size <= MAX_BUFFERED {
                let bytes = read_all(reader, size, path)?;
                let actual = digest.of_same_algorithm(&bytes);
                if actual != digest {
                    return Err(PackageError::Store(StoreError::DigestMismatch {
                        what: format!("entry {path:?}"),
                        expected: digest,
                        actual,
                    })
                    .into());
                }
                self.buffered_bytes += size;
                // Manifests start with '{'; the first layer means the plan must be complete now.
                let is_json = bytes.first() == Some(&b'{');
                self.buffered.insert(digest.clone(), bytes);
                if is_json {
                    return Ok(());
                }
            }
            match self.try_plan() {
                Ok(plan) => self.plan = Some(plan),
                Err(reason) => {
                    self.not_streamable = Some(reason);
                    return Err(stop());
                }
            }
            if let Err(e) = self.mark_present() {
                self.failure = Some(e);
                return Err(stop());
            }
            if self.dry_run {
                self.finished_early = true;
                return Err(stop()); // the plan and the registry's answers are all a dry run needs
            }
            if self.buffered.contains_key(&digest) {
                return Ok(()); // uploaded with the other buffered blobs below
            }
        }
        // Upload the buffered leaves first (children before parents still holds: manifests go last).
        let pending: Vec<Digest> = self
            .buffered
            .keys()
            .filter(|d| !self.done.contains(*d))
            .cloned()
            .collect();
        for d in pending {
            let bytes = self.buffered.get(&d).cloned().unwrap_or_default();
            if let Err(e) = self.push_blob(&d, BlobBody::Memory(Arc::new(bytes))) {
                self.failure = Some(e);
                return Err(stop());
            }
            self.done.insert(d);
        }
        if self.all_done() {
            self.finished_early = true;
            return Err(stop()); // everything needed is in the registry: stop reading
        }
        if self.done.contains(&digest) {
            return Ok(());
        }
        if self.spool.is_some_and(Spool::failed) {
            return Err(stop());
        }
        if self.spool_blob(path, &digest, size, reader)? {
            self.done.insert(digest);
            return Ok(()); // not all_done yet: finishing early waits for the spool anyway
        }
        let mut hashing = HashingReader {
            inner: reader,
            hasher: Hasher::new(digest.algorithm()),
        };
        let needed = self
            .plan
            .as_ref()
            .is_some_and(|p| p.blobs.contains_key(&digest));
        if needed {
            if let Err(e) = self.push_blob(&digest, BlobBody::Stream(&mut hashing)) {
                if !e.is_transient() {
                    self.failure = Some(e);
                    return Err(stop());
                }
                // Its bytes are gone: read on, and send it again from the next pass.
                self.deferred.insert(digest.clone());
                self.deferred_error = Some(e);
            }
        }
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
        let actual = hashing.hasher.finish();
        if actual != digest {
            return Err(PackageError::Store(StoreError::DigestMismatch {
                what: format!("entry {path:?}"),
                expected: digest,
                actual,
            })
            .into());
        }
        if self.deferred.contains(&digest) {
            return Ok(());
        }
        self.done.insert(digest);
        if self.all_done() {
            self.finished_early = true;
            return Err(stop());
        }
        Ok(())
    }

    fn link(&mut self, path: String, _target: String) -> Result<(), PackageError> {
        self.not_streamable = Some(format!("{path} is a link (docker-archive?)"));
        Err(PackageError::Malformed {
            entry: String::new(),
            why: "stop".into(),
        })
    }
}

/// Pushes a compressed OCI-layout package straight to the registry when its
/// index and manifests come before its layers; otherwise reports
/// [`StreamOutcome::NotStreamable`] before uploading anything.
#[allow(clippy::too_many_arguments)]
pub fn push_package_streaming(
    path: &Path,
    client: &Client,
    jobs: usize,
    force: bool,
    dry_run: bool,
    progress: Arc<AtomicU64>,
    sent: &TransferMeter,
    events: &(dyn Fn(PushEvent) + Sync),
) -> Result<StreamOutcome, StreamError> {
    let started = Instant::now();
    let compression = match detect(path)? {
        PackageFormat::Archive(c) => c,
        PackageFormat::LayoutDir => {
            return Ok(StreamOutcome::NotStreamable(
                "a directory is pushed in place".into(),
            ))
        }
    };
    let spool = Spool::new(client, sent, events);
    let mut s = Streamer {
        client,
        sent,
        events,
        spool: Some(&spool),
        metadata: HashMap::new(),
        buffered: HashMap::new(),
        buffered_bytes: 0,
        plan: None,
        done: Default::default(),
        not_streamable: None,
        report: PushReport::default(),
        failure: None,
        deferred: Default::default(),
        deferred_error: None,
        finished_early: false,
        present: Default::default(),
        jobs,
        force,
        dry_run,
    };
    // The archive is walked on this thread while the spool's workers upload;
    // blobs whose straight-through upload broke off get another read.
    let mut pass = 1;
    let mut position = progress;
    let (walked, spooled) = loop {
        let walked = std::thread::scope(|scope| {
            for _ in 0..SPOOL_WORKERS.min(jobs.max(1)) {
                scope.spawn(|| spool.work());
            }
            let walked =
                for_each_entry(path, compression, DECODER_THREADS, position.clone(), &mut s);
            spool.close();
            walked
        });
        let spooled = spool.finish();
        if let Ok(t) = &spooled {
            s.report.blobs_uploaded += t.uploaded;
            s.report.blobs_mounted += t.mounted;
            s.report.bytes_uploaded += t.bytes;
        }
        let again = spooled.is_ok()
            && s.failure.is_none()
            && s.not_streamable.is_none()
            && !s.deferred.is_empty()
            && pass < MAX_PASSES;
        if !again {
            break (walked, spooled);
        }
        pass += 1;
        events(PushEvent::Retry {
            message: format!(
                "{} blob(s) broke off mid-upload ({}); reading the package again (pass {pass} of {MAX_PASSES}) to send them",
                s.deferred.len(),
                s.deferred_error
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
            ),
        });
        s.deferred.clear();
        s.finished_early = false;
        spool.reopen();
        // The shown position stays where the first read ended (bars never go back).
        position = Arc::new(AtomicU64::new(0));
    };
    s.spool = None;
    if let Some(e) = s.failure.take() {
        return Err(e);
    }
    spooled?;
    if !s.deferred.is_empty() {
        if let Some(e) = s.deferred_error.take() {
            return Err(e);
        }
    }
    if let Some(reason) = s.not_streamable.take() {
        if s.report.blobs_uploaded == 0 {
            return Ok(StreamOutcome::NotStreamable(reason));
        }
    }
    if !s.finished_early {
        walked?;
    }
    // Small packages: every blob fitted in memory before any layer appeared.
    if s.plan.is_none() {
        match s.try_plan() {
            Ok(p) => s.plan = Some(p),
            Err(reason) => return Ok(StreamOutcome::NotStreamable(reason)),
        }
        s.mark_present()?;
    }
    if dry_run {
        s.count_dry_run();
    }
    let pending: Vec<Digest> = s
        .buffered
        .keys()
        .filter(|d| !s.done.contains(*d))
        .cloned()
        .collect();
    for d in pending {
        let bytes = s.buffered.get(&d).cloned().unwrap_or_default();
        s.push_blob(&d, BlobBody::Memory(Arc::new(bytes)))?;
        s.done.insert(d);
    }
    let plan = s.plan.take().expect("plan set above");
    if let Some((d, _)) = plan.blobs.iter().find(|(d, _)| !s.done.contains(*d)) {
        return Err(PackageError::Graph(vec![StoreError::MissingBlob {
            digest: d.clone(),
            media_type: plan.blobs[d].0.media_type.clone(),
            size: plan.blobs[d].0.size,
            parent: "the package".into(),
        }])
        .into());
    }
    // Images in parallel, each committed children-first with its tag last.
    let mut report = s.report;
    let buffered = &s.buffered;
    let committed = ferry_registry::pool::parallel(&plan.images, jobs.max(4), |image| {
        if image.up_to_date {
            events(PushEvent::ImageUpToDate {
                source: image.source.clone(),
                target: image.target.clone(),
                digest: image.root.digest.clone(),
            });
            return Ok(None);
        }
        let done = commit_image(
            client,
            &ImageCommit {
                source: &image.source,
                target: &image.target,
                repository: &image.mapped.repository,
                tag: image.mapped.tag.as_deref(),
                root: &image.root,
                manifests: &image.manifests,
                referrers: &image.referrers,
            },
            dry_run,
            |m| {
                let bytes = buffered.get(&m.digest).cloned().unwrap_or_default();
                children_of(m, &bytes).map_err(|e| PackageError::Store(e.into()))?;
                Ok(bytes)
            },
            |context, source| StreamError::Registry { context, source },
        )?;
        if !dry_run {
            events(PushEvent::ImagePushed {
                source: image.source.clone(),
                target: image.target.clone(),
                digest: image.root.digest.clone(),
            });
        }
        Ok::<_, StreamError>(Some(done))
    })?;
    for (image, done) in plan.images.iter().zip(committed) {
        match done {
            None => report.images_up_to_date += 1,
            Some(done) => {
                report.manifests_pushed += done.manifests;
                report.tags_set += done.tags;
                report.referrers += image.referrers.len() as u64;
            }
        }
        report.images.push(PushedImage {
            source: image.source.clone(),
            target: image.target.clone(),
            digest: image.root.digest.clone(),
        });
    }
    report.tokens_fetched = client.token_fetches();
    report.seconds = started.elapsed().as_secs_f64();
    report.dry_run = dry_run;
    Ok(StreamOutcome::Pushed(report))
}
