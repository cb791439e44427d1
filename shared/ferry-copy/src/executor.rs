//! The executor: runs a [`Plan`] against a [`Sink`], written once for every
//! source. Images whose name already points at their digest are skipped
//! (unless forced); every needed blob is asked for once per repository, in
//! parallel; a blob is uploaded once and mounted into the other repositories
//! that need it; manifests go children-first, the tag last (the commit point),
//! then referrers are listed under their subjects' fallback tags.
//!
//! Random-access sources run the whole copy in [`copy`]; a single-pass
//! source ([`crate::stream`]) drives the same three steps itself:
//! [`Executor::prepare`], [`Executor::deliver`] as each blob goes by, and
//! [`Executor::commit`].
//!
//! Invariants: no manifest is written before every blob of its image was
//! delivered; no tag before its image's manifests; the report counts what
//! the sink was asked to do (the same for a [`crate::DryRun`] and a real sink).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ferry_store::{media, Descriptor, Digest};

use crate::plan::{ImagePlan, Plan};
use crate::pool::parallel;
use crate::referrer::{fallback_tag, listed_in, merged_fallback_index, Referrer};
use crate::report::{CopiedImage, CopyError, CopyEvent, CopyReport};
use crate::sink::{BlobPut, Body, Sink};
use crate::source::Source;

/// Presence checks (tags of images, blobs) and image commits in flight at
/// once, at least, whatever `--jobs` says: each is a small request whose cost
/// is its round trip (40 blob checks at 4 a time cost 10 round trips before
/// the first upload; at 50 ms that is half a second).
pub const MIN_REQUESTS_IN_FLIGHT: usize = 16;

/// Copy settings.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Concurrent transfers (presence checks and commits: at least
    /// [`MIN_REQUESTS_IN_FLIGHT`]).
    pub jobs: usize,
    /// Re-check every blob and manifest even of images whose tag already
    /// points at the right digest (tags are set last, so such an image was
    /// complete when it was copied).
    pub force: bool,
    /// After a complete copy, remove the blobs left in the sink's holding
    /// repository (where the sink allows deletes). Kept by default: they cost
    /// the registry no space (blobs are stored once) and let a rerun find
    /// every blob with one request.
    pub clean_holding: bool,
}

/// One leaf blob to make present.
#[derive(Debug, Clone)]
pub struct BlobTask {
    /// The blob.
    pub desc: Descriptor,
    /// Repositories that need it, each with whether the sink already has it there.
    pub repos: Vec<(String, bool)>,
    /// A repository of a complete image that holds it (mount source).
    pub mount_source: Option<String>,
}

impl BlobTask {
    /// True when every repository already has it.
    pub fn is_done(&self) -> bool {
        self.repos.iter().all(|(_, present)| *present)
    }
}

/// What [`Executor::prepare`] learned from the sink.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Per image of the plan: already complete in the sink.
    pub complete: Vec<bool>,
    /// Every blob still needed somewhere, by digest.
    pub tasks: BTreeMap<Digest, BlobTask>,
}

/// Runs the steps of a copy into one sink and counts what it did.
pub struct Executor<'a> {
    sink: &'a dyn Sink,
    options: CopyOptions,
    events: &'a (dyn Fn(CopyEvent) + Sync),
    report: Mutex<CopyReport>,
    started: Instant,
    /// Start of the first upload, end of the last one.
    blob_span: Mutex<Option<(Instant, Instant)>>,
}

/// Makes a presence check's key.
type Pair = (Digest, String);

impl<'a> Executor<'a> {
    /// An executor for `sink`; `events` is told what happens as it happens.
    pub fn new(
        sink: &'a dyn Sink,
        options: CopyOptions,
        events: &'a (dyn Fn(CopyEvent) + Sync),
    ) -> Executor<'a> {
        Executor {
            sink,
            options,
            events,
            report: Mutex::new(CopyReport::default()),
            started: Instant::now(),
            blob_span: Mutex::new(None),
        }
    }

    fn tally(&self) -> MutexGuard<'_, CopyReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Concurrent transfers this executor runs (`--jobs`).
    pub fn jobs(&self) -> usize {
        self.options.jobs.max(1)
    }

    /// Small requests (presence checks, commits) this executor keeps in flight.
    fn requests_in_flight(&self) -> usize {
        self.options.jobs.max(MIN_REQUESTS_IN_FLIGHT)
    }

    /// Blobs uploaded or mounted so far.
    pub fn blobs_written(&self) -> u64 {
        let t = self.tally();
        t.blobs_uploaded + t.blobs_mounted
    }

    /// The sink this executor writes to.
    pub fn sink(&self) -> &'a dyn Sink {
        self.sink
    }

    /// Reachability, then which images are complete (unless forced), then
    /// which blobs each repository lacks (in parallel; present ones are
    /// reported as skipped). Unattached entries of the plan are reported.
    pub fn prepare(&self, plan: &Plan) -> Result<Prepared, CopyError> {
        for u in &plan.unattached {
            (self.events)(CopyEvent::ReferrerSkipped {
                digest: u.digest.clone(),
                reason: u.reason.clone(),
            });
        }
        self.sink
            .ping()
            .map_err(CopyError::sink(self.sink.describe()))?;
        let complete = if self.options.force {
            vec![false; plan.images.len()]
        } else {
            parallel(&plan.images, self.requests_in_flight(), |image| {
                self.is_complete(image)
            })?
        };
        let needs = plan.blob_needs(&complete);
        let pairs: Vec<(&Descriptor, &String)> = needs
            .iter()
            .flat_map(|n| n.needed.iter().map(move |r| (&n.desc, r)))
            .collect();
        let found = parallel(&pairs, self.requests_in_flight(), |(desc, repo)| {
            self.sink
                .has_blob(repo, desc)
                .map_err(CopyError::sink(format!("blob {} in {repo}", desc.digest)))
        })?;
        let present: BTreeSet<Pair> = pairs
            .iter()
            .zip(found)
            .filter(|(_, here)| *here)
            .map(|((d, r), _)| (d.digest.clone(), (*r).clone()))
            .collect();
        let mut tasks = BTreeMap::new();
        for need in needs {
            let repos: Vec<(String, bool)> = need
                .needed
                .into_iter()
                .map(|r| {
                    let here = present.contains(&(need.desc.digest.clone(), r.clone()));
                    (r, here)
                })
                .collect();
            for (repo, _) in repos.iter().filter(|(_, here)| *here) {
                self.tally().blobs_skipped += 1;
                (self.events)(CopyEvent::BlobSkipped {
                    repository: repo.clone(),
                    digest: need.desc.digest.clone(),
                    size: need.desc.size,
                });
            }
            tasks.insert(
                need.desc.digest.clone(),
                BlobTask {
                    desc: need.desc,
                    repos,
                    mount_source: need.held_in.into_iter().next(),
                },
            );
        }
        Ok(Prepared { complete, tasks })
    }

    /// Whether an image's tag points at its digest and every referrer is listed.
    fn is_complete(&self, image: &ImagePlan) -> Result<bool, CopyError> {
        let Some(tag) = &image.dest.tag else {
            return Ok(false);
        };
        let context =
            |what: &str| format!("image {} → {}: {what}", image.source, image.dest.display);
        let current = self
            .sink
            .manifest_digest(&image.dest.repository, tag)
            .map_err(CopyError::sink(context("tag")))?;
        if current.as_ref() != Some(&image.root.digest) {
            return Ok(false);
        }
        for (subject, referrers) in by_subject(&image.referrers) {
            let existing = self
                .sink
                .get_manifest(&image.dest.repository, &fallback_tag(subject))
                .map_err(CopyError::sink(context("referrers")))?;
            let listed = listed_in(existing.as_deref());
            if referrers
                .iter()
                .any(|r| !listed.contains(&r.root.digest.to_string()))
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes one blob present in every repository of `task` that lacks it:
    /// mounted where the sink has it in another repository, else uploaded
    /// once (a [`Body::Once`] is read at most once) and then mounted.
    pub fn deliver(&self, task: &BlobTask, body: Body<'_>) -> Result<(), CopyError> {
        let desc = &task.desc;
        let mut have_in = task
            .repos
            .iter()
            .find(|(_, present)| *present)
            .map(|(r, _)| r.clone())
            .or_else(|| task.mount_source.clone());
        let mut body = Some(body);
        for (repo, present) in &task.repos {
            if *present {
                continue; // counted and reported by prepare
            }
            let context = format!("blob {} ({} bytes) in {repo}", desc.digest, desc.size);
            let reopen = match &body {
                Some(Body::Reopen(open)) => Some(Body::Reopen(*open)),
                Some(Body::ReopenChecked(open)) => Some(Body::ReopenChecked(*open)),
                _ => None,
            };
            let this = match (reopen, &have_in) {
                (Some(again), _) => again,
                (None, Some(_)) => Body::Gone,
                (None, None) => body.take().unwrap_or(Body::Gone),
            };
            let began = Instant::now();
            let put = self
                .sink
                .put_blob(repo, desc, have_in.as_deref(), this)
                .map_err(CopyError::sink(context))?;
            let dry = self.sink.is_dry_run();
            let mut tally = self.tally();
            match put {
                BlobPut::Mounted => {
                    tally.blobs_mounted += 1;
                    drop(tally);
                    if !dry {
                        (self.events)(CopyEvent::BlobMounted {
                            repository: repo.clone(),
                            digest: desc.digest.clone(),
                            from: have_in.clone().unwrap_or_default(),
                            size: desc.size,
                        });
                    }
                }
                BlobPut::Uploaded { resumed_from } => {
                    self.uploaded_between(began, Instant::now());
                    tally.blobs_uploaded += 1;
                    tally.bytes_uploaded += desc.size.saturating_sub(resumed_from);
                    drop(tally);
                    if !dry {
                        (self.events)(CopyEvent::BlobUploaded {
                            repository: repo.clone(),
                            digest: desc.digest.clone(),
                            size: desc.size,
                            resumed_from,
                        });
                    }
                }
            }
            have_in.get_or_insert_with(|| repo.clone());
        }
        Ok(())
    }

    /// Commits every image not already complete, in parallel: manifests
    /// children-first (each skipped when present), then the tag, then the
    /// referrers' fallback tags. `bytes_of` gives a manifest's exact bytes.
    pub fn commit(
        &self,
        plan: &Plan,
        prepared: &Prepared,
        bytes_of: &(dyn Fn(&Descriptor) -> Result<Vec<u8>, CopyError> + Sync),
    ) -> Result<(), CopyError> {
        let work: Vec<(&ImagePlan, bool)> = plan
            .images
            .iter()
            .zip(prepared.complete.iter().copied())
            .collect();
        let done = parallel(&work, self.requests_in_flight(), |(image, complete)| {
            if *complete {
                (self.events)(CopyEvent::ImageUpToDate {
                    source: image.source.clone(),
                    target: image.dest.display.clone(),
                    digest: image.root.digest.clone(),
                });
                return Ok::<_, CopyError>(None);
            }
            let written = self.commit_image(image, bytes_of)?;
            if !self.sink.is_dry_run() {
                (self.events)(CopyEvent::ImagePushed {
                    source: image.source.clone(),
                    target: image.dest.display.clone(),
                    digest: image.root.digest.clone(),
                });
            }
            Ok(Some(written))
        })?;
        let mut tally = self.tally();
        for ((image, _), written) in work.iter().zip(done) {
            match written {
                None => tally.images_up_to_date += 1,
                Some((manifests, tags)) => {
                    tally.manifests_pushed += manifests;
                    tally.tags_set += tags;
                    tally.referrers += image.referrers.len() as u64;
                }
            }
            tally.images.push(CopiedImage {
                source: image.source.clone(),
                target: image.dest.display.clone(),
                digest: image.root.digest.clone(),
            });
        }
        Ok(())
    }

    /// One image: (manifests written, tags written).
    fn commit_image(
        &self,
        image: &ImagePlan,
        bytes_of: &(dyn Fn(&Descriptor) -> Result<Vec<u8>, CopyError> + Sync),
    ) -> Result<(u64, u64), CopyError> {
        let context =
            |what: String| format!("image {} → {}: {what}", image.source, image.dest.display);
        let repo = &image.dest.repository;
        let (mut manifests, mut tags) = (0, 0);
        for m in &image.manifests {
            let digest = m.digest.to_string();
            let ctx = || context(format!("manifest {digest}"));
            if self
                .sink
                .manifest_digest(repo, &digest)
                .map_err(CopyError::sink(ctx()))?
                .is_some()
            {
                continue;
            }
            manifests += 1;
            let bytes = bytes_of(m)?;
            self.sink
                .put_manifest(repo, &digest, &m.media_type, &bytes)
                .map_err(CopyError::sink(ctx()))?;
        }
        if let Some(tag) = &image.dest.tag {
            let ctx = || context(format!("tag {tag}"));
            let current = self
                .sink
                .manifest_digest(repo, tag)
                .map_err(CopyError::sink(ctx()))?;
            if current.as_ref() != Some(&image.root.digest) {
                tags += 1;
                let bytes = bytes_of(&image.root)?;
                self.sink
                    .put_manifest(repo, tag, &image.root.media_type, &bytes)
                    .map_err(CopyError::sink(ctx()))?;
            }
        }
        for (subject, referrers) in by_subject(&image.referrers) {
            let tag = fallback_tag(subject);
            let ctx = || context(format!("referrers tag {tag}"));
            let existing = self
                .sink
                .get_manifest(repo, &tag)
                .map_err(CopyError::sink(ctx()))?;
            if let Some(index) = merged_fallback_index(existing.as_deref(), &referrers) {
                tags += 1;
                self.sink
                    .put_manifest(repo, &tag, media::OCI_INDEX, &index)
                    .map_err(CopyError::sink(ctx()))?;
            }
        }
        Ok((manifests, tags))
    }

    /// Widens the blob phase to cover an upload.
    fn uploaded_between(&self, began: Instant, ended: Instant) {
        let mut span = self.blob_span.lock().unwrap_or_else(|p| p.into_inner());
        *span = Some(match *span {
            None => (began, ended),
            Some((first, last)) => (first.min(began), last.max(ended)),
        });
    }

    /// The report so far: counts, images, tokens, wall time and the blob phase.
    pub fn report(&self) -> CopyReport {
        let mut report = self.tally().clone();
        report.blob_seconds = self
            .blob_span
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(0.0, |(first, last)| (last - first).as_secs_f64());
        report.tokens_fetched = self.sink.tokens_fetched();
        report.seconds = self.started.elapsed().as_secs_f64();
        report.dry_run = self.sink.is_dry_run();
        report
    }

    /// The final report.
    pub fn finish(self) -> CopyReport {
        self.report()
    }
}

/// Referrers grouped by subject, in digest order.
fn by_subject(referrers: &[Referrer]) -> Vec<(&Digest, Vec<&Referrer>)> {
    let subjects: BTreeSet<&Digest> = referrers.iter().map(|r| &r.subject).collect();
    subjects
        .into_iter()
        .map(|s| (s, referrers.iter().filter(|r| &r.subject == s).collect()))
        .collect()
}

/// The order blobs are handed to the workers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOrder {
    /// Largest first: the long transfers start early (pushes).
    LargestFirst,
    /// The order the plan lists them in (images in order, each image's
    /// blobs in walk order): a consumer reading them in that order (the
    /// package writer of ferry-pack) waits the least.
    PlanOrder,
}

/// Copies `plan` from a random-access `source` into `sink`: prepare, every
/// missing blob on `jobs` workers (largest first, re-openable so the sink can
/// retry and resume), then commit.
pub fn copy(
    plan: &Plan,
    source: &dyn Source,
    sink: &dyn Sink,
    options: CopyOptions,
    events: &(dyn Fn(CopyEvent) + Sync),
) -> Result<CopyReport, CopyError> {
    copy_in_order(plan, source, sink, options, BlobOrder::LargestFirst, events)
}

/// [`copy`], with the blobs handed to the workers in `order`.
pub fn copy_in_order(
    plan: &Plan,
    source: &dyn Source,
    sink: &dyn Sink,
    options: CopyOptions,
    order: BlobOrder,
    events: &(dyn Fn(CopyEvent) + Sync),
) -> Result<CopyReport, CopyError> {
    let executor = Executor::new(sink, options, events);
    let prepared = executor.prepare(plan)?;
    let mut tasks: Vec<&BlobTask> = prepared.tasks.values().filter(|t| !t.is_done()).collect();
    match order {
        BlobOrder::LargestFirst => tasks.sort_by_key(|t| std::cmp::Reverse(t.desc.size)),
        BlobOrder::PlanOrder => {
            let mut rank: std::collections::HashMap<&Digest, usize> = Default::default();
            for b in plan.images.iter().flat_map(|i| &i.blobs) {
                let next = rank.len();
                rank.entry(&b.digest).or_insert(next);
            }
            tasks.sort_by_key(|t| rank.get(&t.desc.digest).copied().unwrap_or(usize::MAX));
        }
    }
    parallel(&tasks, options.jobs.max(1), |task| {
        let open = |offset: u64| source.open_blob(&task.desc, offset);
        let body = if source.checks_blobs() {
            Body::ReopenChecked(&open)
        } else {
            Body::Reopen(&open)
        };
        executor.deliver(task, body)
    })?;
    executor.commit(plan, &prepared, &|m| source.manifest(m))?;
    Ok(executor.finish())
}
