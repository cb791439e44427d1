//! One sink's side of a single-pass copy: its plan, what it has, what it
//! still needs from this read, its holding repository, its end.

use super::*;

/// Everything the reader knows about one sink.
pub(super) struct Lane<'e, 'a> {
    pub(super) executor: &'e Executor<'a>,
    pub(super) map: MapFn<'e>,
    pub(super) events: &'e (dyn Fn(CopyEvent) + Sync),
    pub(super) spool: &'e Spool<'a>,
    pub(super) plan: Option<(Plan, Prepared)>,
    /// Blobs present everywhere this sink needs them.
    pub(super) done: HashSet<Digest>,
    pub(super) not_streamable: Option<String>,
    /// This sink failed: it takes nothing more.
    pub(super) failure: Option<CopyError>,
    /// Blobs that still need bytes after this read.
    pub(super) deferred: BTreeSet<Digest>,
    pub(super) deferred_error: Option<CopyError>,
    /// Everything this sink needs was delivered in this read.
    pub(super) finished: bool,
    /// The sink's holding repository, once blobs came before the plan.
    pub(super) holding: Option<String>,
    /// Blobs known to be in the holding repository.
    pub(super) held: HashSet<Digest>,
    /// Blobs came before the plan in a dry run: read on, write nothing.
    pub(super) reading_through: bool,
    /// The first delivery to the holding repository went through (the sink
    /// takes blobs there); until then deliveries there are not queued.
    pub(super) holding_probed: bool,
    /// The sink refused the holding repository: every blob is sent from a
    /// second read, once the plan is known.
    pub(super) holding_refused: bool,
    /// Remove the held blobs after a complete copy.
    pub(super) clean_holding: bool,
}

/// Reads what is left of a straight-through blob and checks it.
pub(super) fn verified<R: Read>(
    path: &str,
    verifying: VerifyingReader<R>,
) -> Result<(), EntryError> {
    let verdict = verifying
        .drain()
        .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
    match verdict {
        Ok(_) => Ok(()),
        Err(Mismatch::Size { .. }) => Err(EntryError::Read(format!("entry {path:?} is truncated"))),
        Err(Mismatch::Digest { expected, actual }) => Err(EntryError::Mismatch {
            entry: path.to_owned(),
            expected,
            actual,
        }),
    }
}

/// Reads a whole (small) entry and checks it against its digest.
pub(super) fn read_verified(
    path: &str,
    digest: &Digest,
    size: u64,
    reader: &mut dyn Read,
) -> Result<Vec<u8>, EntryError> {
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(EntryError::Read(format!("entry {path:?} is truncated")));
    }
    let actual = digest.of_same_algorithm(&bytes);
    if actual != *digest {
        return Err(EntryError::Mismatch {
            entry: path.to_owned(),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// The plan from the metadata and manifests read so far: `Err(Ok(reason))`
/// when it cannot be made yet (something comes later in the source).
pub(super) fn make_plan(
    metadata: &HashMap<String, Vec<u8>>,
    buffered: &HashMap<Digest, Vec<u8>>,
    map: MapFn<'_>,
) -> Result<Plan, Result<String, CopyError>> {
    let index = metadata
        .get("index.json")
        .ok_or_else(|| Ok("index.json comes after the layers".to_owned()))?;
    let index: IndexJson =
        serde_json::from_slice(index).map_err(|e| Ok(format!("index.json: {e}")))?;
    plan(&index.manifests, map, memory_loader(buffered, "")).map_err(|e| match e {
        PlanError::Graph { problem, .. } => {
            Ok(format!("manifests come after the layers ({problem})"))
        }
        other => Err(CopyError::Plan(other)),
    })
}

impl Lane<'_, '_> {
    /// Out of this read: failed, refused, or everything delivered.
    pub(super) fn idle(&self) -> bool {
        self.failure.is_some() || self.not_streamable.is_some() || self.finished
    }

    /// Makes the plan and asks the sink what it lacks; false when the plan
    /// cannot be made yet or the sink failed (recorded).
    pub(super) fn start(
        &mut self,
        metadata: &HashMap<String, Vec<u8>>,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> bool {
        let plan = match make_plan(metadata, buffered, self.map) {
            Ok(p) => p,
            Err(Ok(reason)) => {
                self.not_streamable = Some(reason);
                return false;
            }
            Err(Err(e)) => {
                self.failure = Some(e);
                return false;
            }
        };
        let prepared = match self.executor.prepare(&plan) {
            Ok(p) => p,
            Err(e) => {
                self.failure = Some(e);
                return false;
            }
        };
        for (digest, task) in &prepared.tasks {
            if task.is_done() {
                self.done.insert(digest.clone());
            }
        }
        self.plan = Some((plan, prepared));
        if let (Some(holding), Some((_, prepared))) = (&self.holding, &mut self.plan) {
            for (digest, task) in prepared.tasks.iter_mut() {
                if self.held.contains(digest) {
                    task.mount_source.get_or_insert_with(|| holding.clone());
                }
            }
        }
        true
    }

    /// At the first layer with no plan yet: makes it, or takes the holding
    /// path (the read-through path in a dry run), or gives up (no holding
    /// repository: the source is not streamable for this sink).
    pub(super) fn first_layer(
        &mut self,
        metadata: &HashMap<String, Vec<u8>>,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) {
        if self.plan.is_some() || self.holding.is_some() || self.reading_through || self.idle() {
            return;
        }
        if self.start(metadata, buffered) {
            (self.events)(CopyEvent::ReadPath {
                path: "stream".into(),
                reason: "index.json and the manifests come before the layers".into(),
            });
            if self.executor.sink().is_dry_run() {
                self.finished = true; // the plan and the sink's answers are all a dry run needs
            }
            return;
        }
        let Some(reason) = (if self.failure.is_none() {
            self.not_streamable.take()
        } else {
            None
        }) else {
            return;
        };
        let sink = self.executor.sink();
        if sink.is_dry_run() {
            self.reading_through = true;
            (self.events)(CopyEvent::ReadPath {
                path: "read-through".into(),
                reason: format!("{reason}: reading on to it, writing nothing"),
            });
        } else if let Some(holding) = sink.holding_repository() {
            (self.events)(CopyEvent::ReadPath {
                path: "holding".into(),
                reason: format!(
                    "{reason}: blobs wait in {holding} as they are read and are mounted into their images' repositories once index.json arrives"
                ),
            });
            self.holding = Some(holding);
        } else {
            self.not_streamable = Some(reason);
        }
    }

    pub(super) fn task_for(&self, digest: &Digest) -> Option<&BlobTask> {
        self.plan.as_ref()?.1.tasks.get(digest)
    }

    pub(super) fn all_done(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|(_, p)| p.tasks.keys().all(|d| self.done.contains(d)))
    }

    /// The buffered blobs (configs read with the manifests) the plan needs
    /// and this sink has not had yet.
    fn pending_buffered(&self, buffered: &HashMap<Digest, Vec<u8>>) -> Vec<BlobTask> {
        buffered
            .keys()
            .filter(|d| !self.done.contains(*d))
            .filter_map(|d| self.task_for(d).cloned())
            .collect()
    }

    /// Delivers the buffered blobs the plan needs (from memory), on the
    /// copy's workers: each is a few round trips for a few bytes.
    pub(super) fn deliver_buffered(
        &mut self,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Result<(), CopyError> {
        let pending = self.pending_buffered(buffered);
        let executor = self.executor;
        crate::pool::parallel(&pending, executor.jobs(), |task| {
            let bytes = buffered.get(&task.desc.digest).cloned().unwrap_or_default();
            let held: Arc<dyn HeldBytes> = Arc::new(bytes);
            let open = move |offset: u64| Ok(crate::chunk_pool::read_from(&held, offset));
            executor.deliver(task, Body::Reopen(&open))
        })?;
        for task in pending {
            self.done.insert(task.desc.digest);
        }
        Ok(())
    }

    /// During a read: hands the buffered blobs the plan needs to the spool's
    /// workers, so that their round trips overlap the layers being read and
    /// sent instead of holding the reader back (copies of at most
    /// [`SPOOL_BUDGET`] bytes are queued at once; past that they are
    /// delivered here).
    pub(super) fn queue_buffered(
        &mut self,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Result<(), CopyError> {
        let pending = self.pending_buffered(buffered);
        let bytes: u64 = pending.iter().map(|t| t.desc.size).sum();
        if bytes > SPOOL_BUDGET {
            return self.deliver_buffered(buffered);
        }
        for task in pending {
            let held: Arc<dyn HeldBytes> =
                Arc::new(buffered.get(&task.desc.digest).cloned().unwrap_or_default());
            let digest = task.desc.digest.clone();
            self.spool.submit(task, held);
            self.done.insert(digest);
        }
        Ok(())
    }

    /// What this sink needs of the blob now going by, if anything.
    pub(super) fn wants(
        &mut self,
        digest: &Digest,
        size: u64,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Option<BlobTask> {
        if self.idle() {
            return None;
        }
        if self.plan.is_none() {
            if self.holding_refused {
                return None; // sent from the second read
            }
            let holding = self.holding.clone()?; // reading through: nothing to write
            if buffered.contains_key(digest) || self.held.contains(digest) {
                return None;
            }
            let task = BlobTask {
                desc: Descriptor::new("application/octet-stream", digest.clone(), size),
                repos: vec![(holding.clone(), false)],
                mount_source: None,
            };
            return match self.executor.sink().has_blob(&holding, &task.desc) {
                Ok(true) => {
                    self.held.insert(digest.clone());
                    None
                }
                Ok(false) => Some(task),
                Err(e) => {
                    let e = CopyError::Sink {
                        context: format!("blob {digest} in {holding}"),
                        source: e,
                    };
                    self.failed_delivery(digest.clone(), e);
                    None
                }
            };
        }
        // Buffered leaves first (children before parents still holds: manifests
        // are committed after every worker has finished).
        if let Err(e) = self.queue_buffered(buffered) {
            self.failure = Some(e);
            return None;
        }
        if self.all_done() {
            self.finished = true; // everything needed is in the sink
            return None;
        }
        if self.done.contains(digest) || buffered.contains_key(digest) {
            return None;
        }
        self.task_for(digest).cloned()
    }

    /// True while deliveries to the holding repository must go straight (the
    /// first one tells whether the sink takes them).
    pub(super) fn probing_holding(&self) -> bool {
        self.plan.is_none() && self.holding.is_some() && !self.holding_probed
    }

    /// Records a blob as handed over (queued, or delivered straight).
    pub(super) fn delivered(&mut self, digest: Digest) {
        if self.plan.is_none() {
            self.holding_probed = true;
            self.held.insert(digest);
        } else {
            self.done.insert(digest);
            if self.all_done() {
                self.finished = true;
            }
        }
    }

    /// Records a straight delivery that failed.
    pub(super) fn failed_delivery(&mut self, digest: Digest, e: CopyError) {
        if self.plan.is_none() && self.holding.is_some() && !e.is_transient() {
            // The sink will not take blobs before their images are known
            // (a registry that limits which repositories may be created).
            self.holding_refused = true;
            (self.events)(CopyEvent::ReadPath {
                path: "second-read".into(),
                reason: format!(
                    "the registry refused the holding repository {} ({e}): reading on to index.json, then reading the package again to send the blobs (nothing is written to disk)",
                    self.holding.as_deref().unwrap_or_default()
                ),
            });
            return;
        }
        if e.is_transient() {
            // Its bytes are gone: sent again from the next read.
            self.deferred.insert(digest);
            self.deferred_error = Some(e);
        } else {
            self.failure = Some(e);
            self.spool.cancel();
        }
    }

    /// After a complete read: makes the plan if it is not made yet, mounts
    /// the held blobs into their images' repositories, delivers buffered
    /// ones, and marks for another read what still needs bytes.
    pub(super) fn settle(
        &mut self,
        metadata: &HashMap<String, Vec<u8>>,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Result<(), CopyError> {
        if self.plan.is_none() {
            self.not_streamable = None;
            if !self.start(metadata, buffered) {
                if let Some(e) = self.failure.take() {
                    return Err(e);
                }
                let reason = self.not_streamable.take().unwrap_or_default();
                return Err(CopyError::Incomplete(format!(
                    "the package cannot be planned: {reason}"
                )));
            }
        }
        if self.executor.sink().is_dry_run() {
            return Ok(());
        }
        let held: Vec<BlobTask> = self
            .plan
            .iter()
            .flat_map(|(_, p)| p.tasks.values())
            .filter(|t| !self.done.contains(&t.desc.digest) && self.held.contains(&t.desc.digest))
            .cloned()
            .collect();
        // Mounts need no bytes: they go on the copy's workers at once.
        let executor = self.executor;
        let outcomes = crate::pool::parallel(&held, executor.jobs(), |task| {
            Ok::<_, std::convert::Infallible>(executor.deliver(task, Body::Gone))
        })
        .unwrap_or_else(|never| match never {});
        let mut refused = 0;
        for (task, outcome) in held.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.done.insert(task.desc.digest.clone());
                }
                Err(CopyError::Sink { source, .. }) if source.kind == SinkErrorKind::NeedsBytes => {
                    refused += 1;
                    self.needs_read(&task.desc.digest);
                }
                Err(e) if e.is_transient() => {
                    self.needs_read(&task.desc.digest);
                    self.deferred_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if refused > 0 {
            (self.events)(CopyEvent::ReadPath {
                path: "second-read".into(),
                reason: format!(
                    "the registry refused to mount {refused} blob(s) from {}: reading the package again to send them (nothing is written to disk)",
                    self.holding.as_deref().unwrap_or_default()
                ),
            });
        }
        self.deliver_buffered(buffered)?;
        if self.holding_refused {
            let unsent: Vec<Digest> = self
                .plan
                .iter()
                .flat_map(|(_, p)| p.tasks.keys())
                .filter(|d| !self.done.contains(*d))
                .cloned()
                .collect();
            for d in unsent {
                self.needs_read(&d);
            }
        }
        if let Some((d, t)) = self
            .plan
            .iter()
            .flat_map(|(_, p)| p.tasks.iter())
            .find(|(d, _)| !self.done.contains(*d) && !self.deferred.contains(*d))
        {
            return Err(lacks(d, t));
        }
        Ok(())
    }

    /// Marks a blob to be delivered from the next read, straight to its repositories.
    pub(super) fn needs_read(&mut self, digest: &Digest) {
        self.held.remove(digest);
        if let Some((_, prepared)) = &mut self.plan {
            if let Some(task) = prepared.tasks.get_mut(digest) {
                if task.mount_source.as_deref() == self.holding.as_deref() {
                    task.mount_source = None;
                }
            }
        }
        self.deferred.insert(digest.clone());
    }

    /// The end: what a dry run would deliver, the completeness check, commit.
    pub(super) fn finish(
        mut self,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Result<StreamOutcome, CopyError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if let Some(reason) = self.not_streamable.take() {
            if self.executor.blobs_written() == 0 {
                return Ok(StreamOutcome::NotStreamable(reason));
            }
            return Err(CopyError::Source(reason.into()));
        }
        let (plan, prepared) = self
            .plan
            .take()
            .ok_or_else(|| CopyError::Incomplete("no plan".into()))?;
        if self.executor.sink().is_dry_run() {
            // Nothing was read past the manifests: count what delivering every pending blob would do.
            for (digest, task) in &prepared.tasks {
                if !self.done.contains(digest) {
                    self.executor.deliver(task, Body::Gone)?;
                }
            }
        } else if let Some((d, t)) = prepared.tasks.iter().find(|(d, _)| !self.done.contains(*d)) {
            return Err(lacks(d, t));
        }
        let bytes_of = |m: &Descriptor| -> Result<Vec<u8>, CopyError> {
            let bytes = buffered.get(&m.digest).cloned().unwrap_or_default();
            children_of(m, &bytes).map_err(|e| CopyError::Store(e.into()))?;
            Ok(bytes)
        };
        self.executor.commit(&plan, &prepared, &bytes_of)?;
        if let (true, Some(holding)) = (self.clean_holding, &self.holding) {
            self.clean(holding);
        }
        Ok(StreamOutcome::Copied(self.executor.report()))
    }

    /// Removes the held blobs from the holding repository where the sink allows.
    pub(super) fn clean(&self, holding: &str) {
        let sink = self.executor.sink();
        let (mut removed, mut kept) = (0, 0);
        for digest in &self.held {
            let desc = Descriptor::new("application/octet-stream", digest.clone(), 0);
            match sink.remove_blob(holding, &desc) {
                Ok(true) => removed += 1,
                Ok(false) | Err(_) => kept += 1,
            }
        }
        (self.events)(CopyEvent::HoldingCleaned {
            repository: holding.to_owned(),
            removed,
            kept,
        });
    }
}

/// A blob the plan needs that the package never delivered.
fn lacks(digest: &Digest, task: &BlobTask) -> CopyError {
    CopyError::Incomplete(format!(
        "the package lacks blob {digest} ({}, {} bytes)",
        task.desc.media_type, task.desc.size
    ))
}
