//! Pushing a store's images to a registry: blobs (HEAD, mount, upload) on a
//! bounded pool of workers, then manifests by digest children-first, then tags
//! last. Upload sessions are recorded in the store's journal so a rerun
//! resumes. A dry run asks the same questions and sends nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::journal::{self, JournalEntry, SessionKey};
use ferry_store::layout::image_name;
use ferry_store::walk::walk_graph;
use ferry_store::{media, Descriptor, Digest, Store, StoreError};
use serde::Serialize;

use crate::client::{Access, Client};
use crate::commit::{commit_image, ImageCommit};
use crate::error::RegistryError;
use crate::meter::TransferMeter;
use crate::referrers::{all_listed, find_referrers, holds_subject, Referrer};
use crate::target::Mapped;
use crate::upload::{SessionLog, UploadOptions, UploadOutcome};

/// Push settings.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// Plan only: HEAD requests, nothing sent.
    pub dry_run: bool,
    /// Upload tuning.
    pub upload: UploadOptions,
    /// Re-check every blob and manifest even of images whose tag already
    /// points at the right digest (tags are set last, so such an image was
    /// complete when it was pushed).
    pub force: bool,
}

/// Something that happened, for progress output.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PushEvent {
    /// A blob was already in the repository.
    BlobSkipped {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob was mounted from another repository.
    BlobMounted {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Source repository.
        from: String,
        /// Its size.
        size: u64,
    },
    /// A blob was uploaded.
    BlobUploaded {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Offset a previous session was resumed from.
        resumed_from: u64,
    },
    /// An image's tag already points at the package's digest: nothing to do.
    ImageUpToDate {
        /// Source reference.
        source: String,
        /// Destination reference.
        target: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// An image is complete and tagged.
    ImagePushed {
        /// Source reference.
        source: String,
        /// Destination reference.
        target: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// An unnamed artifact of the store whose subject is not an image being
    /// pushed (or that has no subject): nothing says where it belongs.
    ReferrerSkipped {
        /// The artifact's manifest.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// A request is being retried.
    Retry {
        /// What happened (redacted).
        message: String,
    },
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct PushedImage {
    /// Source reference.
    pub source: String,
    /// Destination reference.
    pub target: String,
    /// Manifest digest (unchanged from the source).
    pub digest: Digest,
}

/// What a push did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    /// Images.
    pub images: Vec<PushedImage>,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes of blobs uploaded (or to upload, in a dry run).
    pub bytes_uploaded: u64,
    /// Manifests and indexes pushed (by digest).
    pub manifests_pushed: u64,
    /// Tags set (image tags and referrers' fallback tags `sha256-<hex>`).
    pub tags_set: u64,
    /// Referrers (signatures, SBOMs, attestations) carried with their images,
    /// counted once per repository.
    pub referrers: u64,
    /// Images whose tag already pointed at the right digest (not re-checked without --force).
    pub images_up_to_date: u64,
    /// Tokens fetched from the token service.
    pub tokens_fetched: u64,
    /// Wall time.
    pub seconds: f64,
    /// True for a dry run.
    pub dry_run: bool,
}

/// A push failure, with the image and blob it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's images are incomplete.
    #[error("the source is incomplete; run ferry-export again or ferry-verify it: {0}")]
    Incomplete(String),
    /// The registry failed for one image or blob.
    #[error("{context}: {source}")]
    Registry {
        /// Image and blob concerned.
        context: String,
        /// What the registry said.
        #[source]
        source: RegistryError,
    },
}

/// One image, ready to push or compare.
pub(crate) struct Plan {
    pub(crate) source: String,
    pub(crate) mapped: Mapped,
    pub(crate) target: String,
    pub(crate) root: Descriptor,
    /// Manifests and indexes, children first.
    pub(crate) manifests: Vec<Descriptor>,
    /// Configs and layers (the image's, then its referrers').
    pub(crate) blobs: Vec<Descriptor>,
    /// Artifacts whose subject is in this image's graph (their manifests and
    /// blobs are in `manifests` and `blobs` too).
    pub(crate) referrers: Vec<Referrer>,
}

/// Upload sessions kept in the store's journal.
struct JournalSessions<'s> {
    store: &'s Store,
    registry: String,
    sessions: Mutex<HashMap<SessionKey, (String, u64)>>,
}

impl SessionLog for JournalSessions<'_> {
    fn load(&self, repository: &str, digest: &Digest) -> Option<(String, u64)> {
        let key = (self.registry.clone(), repository.to_owned(), digest.clone());
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }
    fn save(&self, repository: &str, digest: &Digest, location: &str, offset: u64) {
        let key = (self.registry.clone(), repository.to_owned(), digest.clone());
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (location.to_owned(), offset));
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
        let key = (self.registry.clone(), repository.to_owned(), digest.clone());
        if self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .is_some()
        {
            let _ = self.store.record(&JournalEntry::UploadCleared {
                registry: self.registry.clone(),
                repository: repository.to_owned(),
                digest: digest.clone(),
            });
        }
    }
}

/// The graph of one root: manifests children-first, and the leaf blobs (checked present).
fn graph_of(
    store: &Store,
    name: &str,
    root: &Descriptor,
) -> Result<(Vec<Descriptor>, Vec<Descriptor>), PushError> {
    let walk = walk_graph(&[(name.to_owned(), root.clone())], |d| {
        store.read_small_blob(d, MAX_MANIFEST_BYTES)
    });
    if let Some(p) = walk.problems.first() {
        return Err(PushError::Incomplete(format!("{name}: {p}")));
    }
    let (mut manifests, mut blobs) = (Vec::new(), Vec::new());
    for n in walk.nodes {
        if media::is_manifest_like(&n.descriptor.media_type) {
            manifests.push(n.descriptor);
        } else if n.descriptor.urls.is_empty() {
            if !store.has_blob(&n.descriptor.digest, n.descriptor.size) {
                return Err(PushError::Incomplete(format!(
                    "{name}: blob {} is missing",
                    n.descriptor.digest
                )));
            }
            blobs.push(n.descriptor);
        }
    }
    Ok((manifests, blobs))
}

/// Unnamed artifacts that belong to no image being pushed: (manifest, why).
pub(crate) type Unattached = Vec<(Digest, String)>;

/// The store's images, each with the referrers attached to it; plus the
/// unnamed artifacts that belong to no image being pushed.
pub(crate) fn plan_with_orphans(
    store: &Store,
    client: &Client,
) -> Result<(Vec<Plan>, Unattached), PushError> {
    let mut plans = named_plans(store, client)?;
    let (referrers, orphans) = find_referrers(store)?;
    let mut skipped: Unattached = orphans
        .into_iter()
        .map(|d| {
            (
                d.digest,
                "an unnamed index.json entry without a subject".to_owned(),
            )
        })
        .collect();
    for r in referrers {
        let label = format!("referrer {} of {}", r.root.digest, r.subject);
        let (manifests, blobs) = graph_of(store, &label, &r.root)?;
        let mut attached = false;
        for p in plans.iter_mut() {
            if !holds_subject(&p.root, &p.manifests, &r.subject)
                || p.referrers.iter().any(|x| x.root.digest == r.root.digest)
            {
                continue;
            }
            for m in &manifests {
                if !p.manifests.iter().any(|x| x.digest == m.digest) {
                    p.manifests.push(m.clone());
                }
            }
            for b in &blobs {
                if !p.blobs.iter().any(|x| x.digest == b.digest) {
                    p.blobs.push(b.clone());
                }
            }
            p.referrers.push(r.clone());
            attached = true;
        }
        if !attached {
            skipped.push((
                r.root.digest.clone(),
                format!("its subject {} is not an image of the store", r.subject),
            ));
        }
    }
    Ok((plans, skipped))
}

/// The store's named images (referrers not attached).
fn named_plans(store: &Store, client: &Client) -> Result<Vec<Plan>, PushError> {
    let mut plans = Vec::new();
    for entry in store.index_entries()? {
        let Some(name) = image_name(&entry).map(str::to_owned) else {
            continue;
        };
        let mapped = client
            .target()
            .map(&name)
            .map_err(|source| PushError::Registry {
                context: format!("image {name}"),
                source,
            })?;
        let (manifests, blobs) = graph_of(store, &name, &entry)?;
        let target = client.target().display_ref(&mapped);
        plans.push(Plan {
            source: name,
            mapped,
            target,
            root: entry,
            manifests,
            blobs,
            referrers: Vec::new(),
        });
    }
    Ok(plans)
}

/// Pushes every image named in `store` to the client's target.
pub fn push_store(
    store: &Store,
    client: &Client,
    options: &PushOptions,
    sent: &TransferMeter,
    events: &(dyn Fn(PushEvent) + Sync),
) -> Result<PushReport, PushError> {
    let started = Instant::now();
    let (plans, skipped_referrers) = plan_with_orphans(store, client)?;
    for (digest, reason) in skipped_referrers {
        events(PushEvent::ReferrerSkipped { digest, reason });
    }
    client.ping().map_err(|source| PushError::Registry {
        context: format!("registry {}", client.target().host),
        source,
    })?;

    // Images whose tag already points at their digest were complete when tagged.
    let up_to_date: Vec<bool> = if options.force {
        vec![false; plans.len()]
    } else {
        crate::pool::parallel(&plans, options.jobs.max(4), |p| {
            let ctx = |what: &str| {
                let context = format!("image {} → {}: {what}", p.source, p.target);
                move |source| PushError::Registry { context, source }
            };
            // Complete when tagged, and when every referrer is listed (they may come later).
            Ok::<_, PushError>(
                client
                    .tag_points_at(&p.mapped, &p.root.digest)
                    .map_err(ctx("tag"))?
                    && all_listed(client, &p.mapped.repository, &p.referrers)
                        .map_err(ctx("referrers"))?,
            )
        })?
    };

    // Blob work grouped by digest: repositories that need it, and repositories of
    // up-to-date images that hold it (mount sources, no request needed).
    let mut by_digest: BTreeMap<Digest, BlobWork> = BTreeMap::new();
    for (p, done) in plans.iter().zip(&up_to_date) {
        for b in &p.blobs {
            let e = by_digest
                .entry(b.digest.clone())
                .or_insert_with(|| BlobWork {
                    desc: b.clone(),
                    needed: Vec::new(),
                    sources: Vec::new(),
                });
            let list = if *done { &mut e.sources } else { &mut e.needed };
            if !list.contains(&p.mapped.repository) {
                list.push(p.mapped.repository.clone());
            }
        }
    }
    let mut work: Vec<BlobWork> = by_digest
        .into_values()
        .filter(|w| !w.needed.is_empty())
        .collect();
    work.sort_by_key(|w| std::cmp::Reverse(w.desc.size));

    let replay = journal::replay(&store.journal_path())?;
    let sessions = JournalSessions {
        store,
        registry: client.target().host.clone(),
        sessions: Mutex::new(replay.sessions),
    };
    let report = Mutex::new(PushReport {
        dry_run: options.dry_run,
        ..Default::default()
    });
    crate::pool::parallel(&work, options.jobs, |w| {
        push_blob(store, client, options, &sessions, w, sent, &report, events)
    })?;
    let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());

    // Manifests children-first by digest, then the tag (the commit point), images in parallel.
    let work: Vec<(&Plan, bool)> = plans.iter().zip(up_to_date).collect();
    let committed = crate::pool::parallel(&work, options.jobs.max(4), |(p, done)| {
        if *done {
            events(PushEvent::ImageUpToDate {
                source: p.source.clone(),
                target: p.target.clone(),
                digest: p.root.digest.clone(),
            });
            return Ok((0, 0, true));
        }
        let committed = commit_image(
            client,
            &ImageCommit {
                source: &p.source,
                target: &p.target,
                repository: &p.mapped.repository,
                tag: p.mapped.tag.as_deref(),
                root: &p.root,
                manifests: &p.manifests,
                referrers: &p.referrers,
            },
            options.dry_run,
            |m| Ok(store.read_small_blob(m, MAX_MANIFEST_BYTES)?),
            |context, source| PushError::Registry { context, source },
        )?;
        let (manifests, tags) = (committed.manifests, committed.tags);
        if !options.dry_run {
            events(PushEvent::ImagePushed {
                source: p.source.clone(),
                target: p.target.clone(),
                digest: p.root.digest.clone(),
            });
        }
        Ok::<_, PushError>((manifests, tags, false))
    })?;
    for ((p, _), (manifests, tags, done)) in work.iter().zip(committed) {
        report.referrers += p.referrers.len() as u64;
        report.manifests_pushed += manifests;
        report.tags_set += tags;
        report.images_up_to_date += u64::from(done);
        report.images.push(PushedImage {
            source: p.source.clone(),
            target: p.target.clone(),
            digest: p.root.digest.clone(),
        });
    }
    let _ = store.sync_journal();
    report.tokens_fetched = client.token_fetches();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One blob to make present.
struct BlobWork {
    desc: Descriptor,
    /// Repositories that need it (asked with HEAD).
    needed: Vec<String>,
    /// Repositories of up-to-date images, which hold it (mount sources).
    sources: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn push_blob(
    store: &Store,
    client: &Client,
    options: &PushOptions,
    sessions: &JournalSessions<'_>,
    work: &BlobWork,
    sent: &TransferMeter,
    report: &Mutex<PushReport>,
    events: &(dyn Fn(PushEvent) + Sync),
) -> Result<(), PushError> {
    let (desc, repos) = (&work.desc, &work.needed);
    let path = store.blob_path(&desc.digest);
    let open = move |offset: u64| -> std::io::Result<Box<dyn std::io::Read + Send>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    };
    // Ask every repository first, so a blob present anywhere is mounted, not re-sent.
    let mut present: Vec<bool> = Vec::with_capacity(repos.len());
    for repo in repos {
        let size = client
            .blob_size(repo, &desc.digest, Access::Push)
            .map_err(|source| PushError::Registry {
                context: format!("blob {} in {repo}", desc.digest),
                source,
            })?;
        present.push(size == Some(desc.size));
    }
    let mut have_in: Option<String> = repos
        .iter()
        .zip(&present)
        .find(|(_, p)| **p)
        .map(|(r, _)| r.clone())
        .or_else(|| work.sources.first().cloned());
    for (repo, present) in repos.iter().zip(present) {
        let ctx = || format!("blob {} ({} bytes) in {repo}", desc.digest, desc.size);
        if present {
            report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .blobs_skipped += 1;
            sent.add(desc.size);
            events(PushEvent::BlobSkipped {
                repository: repo.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
            });
            continue;
        }
        if options.dry_run {
            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
            if have_in.is_some() {
                r.blobs_mounted += 1;
            } else {
                r.blobs_uploaded += 1;
                r.bytes_uploaded += desc.size;
                have_in = Some(repo.clone());
            }
            continue;
        }
        let outcome = client
            .upload_blob(
                repo,
                desc,
                &open,
                have_in.as_deref(),
                sessions,
                &options.upload,
                sent,
            )
            .map_err(|source| PushError::Registry {
                context: ctx(),
                source,
            })?;
        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            UploadOutcome::Mounted => {
                r.blobs_mounted += 1;
                events(PushEvent::BlobMounted {
                    repository: repo.clone(),
                    digest: desc.digest.clone(),
                    from: have_in.clone().unwrap_or_default(),
                    size: desc.size,
                });
            }
            UploadOutcome::Uploaded { resumed_from } => {
                r.blobs_uploaded += 1;
                r.bytes_uploaded += desc.size - resumed_from;
                events(PushEvent::BlobUploaded {
                    repository: repo.clone(),
                    digest: desc.digest.clone(),
                    size: desc.size,
                    resumed_from,
                });
            }
        }
        have_in.get_or_insert_with(|| repo.clone());
    }
    Ok(())
}
