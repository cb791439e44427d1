//! Copying from a single-pass source (a package read in its own order): the
//! same executor, driven as the entries go by. Metadata and manifests are
//! held in memory until the plan can be made (bounded); from then on each
//! needed blob is delivered as it is read, through the bounded read-ahead of
//! the [`crate::spool`] when it is small, straight from the source otherwise.
//! A straight-through delivery that breaks off (a reset, a stall) is sent
//! again from a further read of the source (3 reads at most).
//!
//! Blobs that come before the plan can be made (a package whose `index.json`
//! comes last) go, as they are read, to the sink's holding repository
//! ([`Sink::holding_repository`]); once the plan is known they are mounted
//! from there into each image's repository. Mounts the sink refuses take
//! another read. A sink without a holding repository gets
//! [`StreamOutcome::NotStreamable`] before anything is written.
//!
//! Invariants: every byte read is verified against its digest; a source in
//! another order (layers before its index or manifests) is reported as
//! [`StreamOutcome::NotStreamable`] before anything is written; a dry run
//! ([`Sink::is_dry_run`]) stops reading once the plan is known; a failure or a
//! panic of any thread stops the others and ends the copy with an error.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_store::descriptor::{children_of, MAX_MANIFEST_BYTES};
use ferry_store::layout::IndexJson;
use ferry_store::verify_reader::{Mismatch, VerifyingReader};
use ferry_store::{Descriptor, Digest, StoreError};

use crate::chunk_pool::{read_from, FillError, HeldBytes};
use crate::executor::{BlobTask, CopyOptions, Executor, Prepared};
use crate::plan::{plan, Destination, Plan, PlanError};
use crate::report::{CopyError, CopyEvent, CopyReport};
use crate::sink::{Body, Sink, SinkErrorKind};
use crate::spool::{CloseOnDrop, Spool, SPOOL_MAX_BLOB, SPOOL_WORKERS};

/// Manifests held in memory while the plan is not known yet.
const MAX_BUFFERED: u64 = 256 << 20;
/// Reads of the source in one run.
const MAX_PASSES: u32 = 3;

/// One entry of a single-pass source.
pub enum Entry<'r> {
    /// A metadata file (`index.json`, `oci-layout`, …), read whole.
    Metadata {
        /// Path in the source.
        path: &'r str,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A blob named by its digest; `reader` yields `size` bytes unless the
    /// source is truncated.
    Blob {
        /// Path in the source.
        path: &'r str,
        /// Its name.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Its bytes (not yet verified).
        reader: &'r mut dyn Read,
    },
    /// Anything else (a docker-archive file, a link): the source is not an
    /// OCI layout in streamable form.
    Foreign {
        /// Why.
        why: String,
    },
}

/// What the visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The next entry.
    Continue,
    /// Stop reading (not an error).
    Stop,
}

/// Why an entry could not be taken.
#[derive(Debug)]
pub enum EntryError {
    /// The source could not be read (decoder error, truncation).
    Read(String),
    /// An entry's bytes are not what its name says.
    Mismatch {
        /// Path in the source.
        entry: String,
        /// Digest named.
        expected: Digest,
        /// Digest of the bytes.
        actual: Digest,
    },
}

/// A source read once, from the start, in its own order.
pub trait SinglePassSource: Sync {
    /// Reads the source once, handing each entry to `visit` until it says
    /// [`Flow::Stop`] or the source ends; `progress` counts bytes read. An
    /// [`EntryError`] becomes the source's own error (naming the entry and
    /// where it is).
    fn read_once(
        &self,
        progress: Arc<AtomicU64>,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<Flow, EntryError>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// How a copy from a single-pass source ended.
pub enum StreamOutcome {
    /// Everything was copied.
    Copied(CopyReport),
    /// The source cannot be copied in one read in this order: nothing was
    /// written; stage it instead.
    NotStreamable(String),
}

type MapFn<'m> = &'m (dyn Fn(&str) -> Result<Destination, String> + Sync);

struct Reader<'e, 'a> {
    executor: &'e Executor<'a>,
    map: MapFn<'e>,
    spool: Option<&'e Spool<'a>>,
    metadata: HashMap<String, Vec<u8>>,
    /// Manifests (and small blobs) read before the plan was known.
    buffered: HashMap<Digest, Vec<u8>>,
    buffered_bytes: u64,
    plan: Option<(Plan, Prepared)>,
    /// Blobs present everywhere they are needed.
    done: HashSet<Digest>,
    not_streamable: Option<String>,
    failure: Option<CopyError>,
    /// Blobs whose straight-through delivery broke off in this read.
    deferred: BTreeSet<Digest>,
    deferred_error: Option<CopyError>,
    /// Every needed blob was delivered before the end of the source.
    finished_early: bool,
    /// Blobs came before the plan could be made: they wait in this
    /// repository of the sink until `index.json` arrives.
    holding: Option<String>,
    /// Blobs known to be in the holding repository.
    held: HashSet<Digest>,
    /// Blobs came before the plan could be made in a dry run: read on, write nothing.
    reading_through: bool,
    events: &'e (dyn Fn(CopyEvent) + Sync),
}

/// Reads what is left of a straight-through blob and checks it.
fn verified(path: &str, verifying: VerifyingReader<&mut dyn Read>) -> Result<(), EntryError> {
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

impl Reader<'_, '_> {
    fn make_plan(&self) -> Result<Plan, Result<String, CopyError>> {
        let index = self
            .metadata
            .get("index.json")
            .ok_or_else(|| Ok("index.json comes after the layers".to_owned()))?;
        let index: IndexJson =
            serde_json::from_slice(index).map_err(|e| Ok(format!("index.json: {e}")))?;
        plan(&index.manifests, self.map, |d| {
            self.buffered
                .get(&d.digest)
                .cloned()
                .ok_or_else(|| StoreError::MissingBlob {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    parent: String::new(),
                })
        })
        .map_err(|e| match e {
            PlanError::Graph { problem, .. } => {
                Ok(format!("manifests come after the layers ({problem})"))
            }
            other => Err(CopyError::Plan(other)),
        })
    }

    /// Makes the plan and asks the sink what it lacks; false when the source
    /// cannot be streamed or the sink failed (recorded).
    fn start(&mut self) -> bool {
        let plan = match self.make_plan() {
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
        true
    }

    fn task_for(&self, digest: &Digest) -> Option<&BlobTask> {
        self.plan.as_ref()?.1.tasks.get(digest)
    }

    fn all_done(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|(_, p)| p.tasks.keys().all(|d| self.done.contains(d)))
    }

    /// Delivers the buffered blobs the plan needs (from memory).
    fn deliver_buffered(&mut self) -> Result<(), CopyError> {
        let pending: Vec<Digest> = self
            .buffered
            .keys()
            .filter(|d| !self.done.contains(*d) && self.task_for(d).is_some())
            .cloned()
            .collect();
        for d in pending {
            let held: Arc<dyn HeldBytes> =
                Arc::new(self.buffered.get(&d).cloned().unwrap_or_default());
            let open = move |offset: u64| Ok(read_from(&held, offset));
            if let Some(task) = self.task_for(&d) {
                self.executor.deliver(task, Body::Reopen(&open))?;
            }
            self.done.insert(d);
        }
        Ok(())
    }

    /// Hands a needed blob that fits the spool to the workers: read into
    /// memory, verified, queued. False when it is too large or the spool is full.
    fn spool_blob(
        &mut self,
        path: &str,
        digest: &Digest,
        reader: &mut dyn Read,
    ) -> Result<bool, EntryError> {
        let Some(task) = self.task_for(digest).cloned() else {
            return Ok(false);
        };
        self.spool_task(path, &task, reader)
    }

    /// Reads a blob into the spool's memory, verifies it and queues `task`
    /// with it; false when it is too large or the spool is full.
    fn spool_task(
        &mut self,
        path: &str,
        task: &BlobTask,
        reader: &mut dyn Read,
    ) -> Result<bool, EntryError> {
        let (digest, size) = (&task.desc.digest, task.desc.size);
        let Some(spool) = self.spool else {
            return Ok(false);
        };
        if size > SPOOL_MAX_BLOB {
            return Ok(false);
        }
        let Some(memory) = spool.try_reserve(size) else {
            return Ok(false); // full: this one goes straight from the source
        };
        let blob = memory.fill(reader, size, digest).map_err(|e| match e {
            FillError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                EntryError::Read(format!("entry {path:?} is truncated"))
            }
            FillError::Read(e) => EntryError::Read(format!("reading entry {path:?}: {e}")),
            FillError::Digest { actual } => EntryError::Mismatch {
                entry: path.to_owned(),
                expected: digest.clone(),
                actual,
            },
        })?;
        spool.submit(task.clone(), blob);
        Ok(true)
    }

    fn blob(
        &mut self,
        path: &str,
        digest: Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<Flow, EntryError> {
        // Before the plan is known, manifests (JSON, ≤ 4 MiB) are held in memory;
        // the first byte tells them from layers, which are never held.
        let mut first = [0u8; 1];
        let mut peeked = 0;
        let mut rest;
        let reader: &mut dyn Read = if self.plan.is_none() && size > 0 {
            peeked = reader
                .read(&mut first)
                .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
            rest = (&first[..peeked]).chain(reader);
            &mut rest
        } else {
            reader
        };
        if self.plan.is_none() {
            let json = peeked == 1 && first[0] == b'{';
            if json && size <= MAX_MANIFEST_BYTES && self.buffered_bytes + size <= MAX_BUFFERED {
                let mut bytes = Vec::with_capacity(size as usize);
                reader
                    .take(size)
                    .read_to_end(&mut bytes)
                    .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
                if bytes.len() as u64 != size {
                    return Err(EntryError::Read(format!("entry {path:?} is truncated")));
                }
                let actual = digest.of_same_algorithm(&bytes);
                if actual != digest {
                    return Err(EntryError::Mismatch {
                        entry: path.to_owned(),
                        expected: digest,
                        actual,
                    });
                }
                self.buffered_bytes += size;
                self.buffered.insert(digest, bytes);
                return Ok(Flow::Continue);
            }
            if self.holding.is_none() && !self.reading_through {
                if self.start() {
                    (self.events)(CopyEvent::ReadPath {
                        path: "stream".into(),
                        reason: "index.json and the manifests come before the layers".into(),
                    });
                    if self.executor.sink().is_dry_run() {
                        self.finished_early = true;
                        return Ok(Flow::Stop); // the plan and the sink's answers are all a dry run needs
                    }
                } else if self.failure.is_some() {
                    return Ok(Flow::Stop);
                } else if let Some(reason) = self.not_streamable.take() {
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
                        return Ok(Flow::Stop);
                    }
                }
            }
            if self.plan.is_none() {
                return self.hold(path, digest, size, reader);
            }
        }
        // Buffered leaves first (children before parents still holds: manifests go last).
        if let Err(e) = self.deliver_buffered() {
            self.failure = Some(e);
            return Ok(Flow::Stop);
        }
        if self.all_done() {
            self.finished_early = true;
            return Ok(Flow::Stop); // everything needed is in the sink: stop reading
        }
        if self.done.contains(&digest) || self.buffered.contains_key(&digest) {
            return Ok(Flow::Continue);
        }
        if self.spool.is_some_and(Spool::failed) {
            return Ok(Flow::Stop);
        }
        if self.spool_blob(path, &digest, reader)? {
            self.done.insert(digest);
            return Ok(Flow::Continue); // finishing early waits for the spool anyway
        }
        let mut verifying = VerifyingReader::new(reader, &digest, Some(size));
        if let Some(task) = self.task_for(&digest).cloned() {
            if let Err(e) = self.executor.deliver(&task, Body::Once(&mut verifying)) {
                if !e.is_transient() {
                    self.failure = Some(e);
                    return Ok(Flow::Stop);
                }
                // Its bytes are gone: read on, and send it again from the next read.
                self.deferred.insert(digest.clone());
                self.deferred_error = Some(e);
            }
        }
        verified(path, verifying)?;
        if self.deferred.contains(&digest) {
            return Ok(Flow::Continue);
        }
        self.done.insert(digest);
        if self.all_done() {
            self.finished_early = true;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Before the plan is known: a blob goes to the holding repository (unless
    /// it is there already), or is passed over in a dry run.
    fn hold(
        &mut self,
        path: &str,
        digest: Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<Flow, EntryError> {
        let Some(holding) = self.holding.clone() else {
            return Ok(Flow::Continue); // reading through (dry run): written by nobody
        };
        if self.buffered.contains_key(&digest) || self.held.contains(&digest) {
            return Ok(Flow::Continue);
        }
        let task = BlobTask {
            desc: Descriptor::new("application/octet-stream", digest.clone(), size),
            repos: vec![(holding.clone(), false)],
            mount_source: None,
        };
        match self.executor.sink().has_blob(&holding, &task.desc) {
            Ok(true) => {
                self.held.insert(digest);
                return Ok(Flow::Continue);
            }
            Ok(false) => {}
            Err(e) => {
                self.failure = Some(CopyError::Sink {
                    context: format!("blob {digest} in {holding}"),
                    source: e,
                });
                return Ok(Flow::Stop);
            }
        }
        if self.spool.is_some_and(Spool::failed) {
            return Ok(Flow::Stop);
        }
        if self.spool_task(path, &task, reader)? {
            self.held.insert(digest);
            return Ok(Flow::Continue);
        }
        let mut verifying = VerifyingReader::new(reader, &digest, Some(size));
        let delivered = self.executor.deliver(&task, Body::Once(&mut verifying));
        verified(path, verifying)?;
        match delivered {
            Ok(()) => {
                self.held.insert(digest);
            }
            Err(e) if e.is_transient() => {
                // Not held: delivered from the next read.
                self.deferred.insert(digest);
                self.deferred_error = Some(e);
            }
            Err(e) => {
                self.failure = Some(e);
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// After a complete read: makes the plan if it is not made yet, mounts
    /// the held blobs into their images' repositories, delivers buffered
    /// ones, and marks for another read what still needs bytes.
    fn settle(&mut self) -> Result<(), CopyError> {
        if self.plan.is_none() {
            if !self.start() {
                if let Some(e) = self.failure.take() {
                    return Err(e);
                }
                let reason = self.not_streamable.take().unwrap_or_default();
                return Err(CopyError::Incomplete(format!(
                    "the package cannot be planned: {reason}"
                )));
            }
            if let Some(holding) = &self.holding {
                if let Some((_, prepared)) = &mut self.plan {
                    for (digest, task) in prepared.tasks.iter_mut() {
                        if self.held.contains(digest) {
                            task.mount_source.get_or_insert_with(|| holding.clone());
                        }
                    }
                }
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
        let mut refused = 0;
        for task in held {
            match self.executor.deliver(&task, Body::Gone) {
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
        self.deliver_buffered()?;
        if let Some((d, t)) = self
            .plan
            .iter()
            .flat_map(|(_, p)| p.tasks.iter())
            .find(|(d, _)| !self.done.contains(*d) && !self.deferred.contains(*d))
        {
            return Err(CopyError::Incomplete(format!(
                "the package lacks blob {d} ({}, {} bytes)",
                t.desc.media_type, t.desc.size
            )));
        }
        Ok(())
    }

    /// Marks a blob to be delivered from the next read, straight to its repositories.
    fn needs_read(&mut self, digest: &Digest) {
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

    fn visit(&mut self, entry: Entry<'_>) -> Result<Flow, EntryError> {
        match entry {
            Entry::Metadata { path, bytes } => {
                self.metadata.insert(path.to_owned(), bytes);
                Ok(Flow::Continue)
            }
            Entry::Foreign { why } => {
                self.not_streamable = Some(why);
                Ok(Flow::Stop)
            }
            Entry::Blob {
                path,
                digest,
                size,
                reader,
            } => self.blob(path, digest, size, reader),
        }
    }
}

/// Copies every image of a single-pass `source` into `sink` in one read when
/// its index and manifests come before its blobs; otherwise reports
/// [`StreamOutcome::NotStreamable`] before writing anything.
pub fn copy_stream(
    source: &dyn SinglePassSource,
    sink: &dyn Sink,
    options: CopyOptions,
    map: MapFn<'_>,
    progress: Arc<AtomicU64>,
    events: &(dyn Fn(CopyEvent) + Sync),
) -> Result<StreamOutcome, CopyError> {
    let executor = Executor::new(sink, options, events);
    let spool = Spool::new(&executor);
    let mut r = Reader {
        executor: &executor,
        map,
        spool: Some(&spool),
        metadata: HashMap::new(),
        buffered: HashMap::new(),
        buffered_bytes: 0,
        plan: None,
        done: HashSet::new(),
        not_streamable: None,
        failure: None,
        deferred: BTreeSet::new(),
        deferred_error: None,
        finished_early: false,
        holding: None,
        held: HashSet::new(),
        reading_through: false,
        events,
    };
    // The source is read on this thread while the spool's workers deliver;
    // blobs that still need bytes after a read (a delivery that broke off, a
    // refused mount from the holding repository) get another read.
    let mut pass = 1;
    let mut position = progress;
    loop {
        let walked = std::thread::scope(|scope| {
            for _ in 0..SPOOL_WORKERS.min(options.jobs.max(1)) {
                scope.spawn(|| spool.work());
            }
            let _close = CloseOnDrop(&spool);
            let walked = source.read_once(position.clone(), &mut |e| r.visit(e));
            if r.failure.is_some() || walked.is_err() {
                spool.cancel();
            }
            walked
        });
        if let Some(e) = r.failure.take() {
            return Err(e);
        }
        spool.finish()?;
        if let Some(reason) = r.not_streamable.take() {
            if executor.blobs_written() == 0 {
                return Ok(StreamOutcome::NotStreamable(reason));
            }
            return Err(CopyError::Source(reason.into()));
        }
        if !r.finished_early {
            walked.map_err(CopyError::Source)?;
            r.settle()?;
        }
        if r.deferred.is_empty() {
            break;
        }
        if pass == MAX_PASSES {
            return Err(r.deferred_error.take().unwrap_or_else(|| {
                CopyError::Incomplete(format!(
                    "{} blob(s) still need to be sent after {MAX_PASSES} reads of the package",
                    r.deferred.len()
                ))
            }));
        }
        pass += 1;
        if let Some(e) = r.deferred_error.take() {
            events(CopyEvent::Retry {
                message: format!(
                    "{} blob(s) broke off mid-upload ({e}); reading the package again (pass {pass} of {MAX_PASSES}) to send them",
                    r.deferred.len(),
                ),
            });
        }
        r.deferred.clear();
        r.finished_early = false;
        spool.reopen();
        // The shown position stays where the first read ended (bars never go back).
        position = Arc::new(AtomicU64::new(0));
    }
    r.spool = None;
    if sink.is_dry_run() {
        // Nothing was read past the manifests: count what delivering every pending blob would do.
        if let Some((_, prepared)) = &r.plan {
            for (digest, task) in &prepared.tasks {
                if !r.done.contains(digest) {
                    executor.deliver(task, Body::Gone)?;
                }
            }
        }
    }
    let (plan, prepared) = r
        .plan
        .take()
        .ok_or_else(|| CopyError::Incomplete("no plan".into()))?;
    if !sink.is_dry_run() {
        if let Some((d, t)) = prepared.tasks.iter().find(|(d, _)| !r.done.contains(*d)) {
            return Err(CopyError::Incomplete(format!(
                "the package lacks blob {d} ({}, {} bytes)",
                t.desc.media_type, t.desc.size
            )));
        }
    }
    let buffered = &r.buffered;
    let bytes_of = |m: &Descriptor| -> Result<Vec<u8>, CopyError> {
        let bytes = buffered.get(&m.digest).cloned().unwrap_or_default();
        children_of(m, &bytes).map_err(|e| CopyError::Store(e.into()))?;
        Ok(bytes)
    };
    executor.commit(&plan, &prepared, &bytes_of)?;
    Ok(StreamOutcome::Copied(executor.finish()))
}

/// Reads a single-pass source only as far as its plan needs, writing
/// nothing: metadata and manifests are held in memory (bounded as in a
/// copy), layers are passed over unread, and reading stops at the first layer
/// after which the plan is complete. `Ok(Err(reason))`: the source cannot be
/// planned in one read (not an OCI layout: stage it).
pub fn read_plan(
    source: &dyn SinglePassSource,
    map: MapFn<'_>,
    progress: Arc<AtomicU64>,
) -> Result<Result<Plan, String>, CopyError> {
    struct Planner<'m> {
        map: MapFn<'m>,
        metadata: HashMap<String, Vec<u8>>,
        buffered: HashMap<Digest, Vec<u8>>,
        buffered_bytes: u64,
        plan: Option<Result<Plan, CopyError>>,
        foreign: Option<String>,
    }
    impl Planner<'_> {
        fn try_plan(&self) -> Option<Result<Plan, CopyError>> {
            let index: IndexJson = serde_json::from_slice(self.metadata.get("index.json")?).ok()?;
            let planned = plan(&index.manifests, self.map, |d| {
                self.buffered
                    .get(&d.digest)
                    .cloned()
                    .ok_or_else(|| StoreError::MissingBlob {
                        digest: d.digest.clone(),
                        media_type: d.media_type.clone(),
                        size: d.size,
                        parent: String::new(),
                    })
            });
            match planned {
                Ok(p) => Some(Ok(p)),
                Err(PlanError::Graph { .. }) => None, // manifests still to come
                Err(e) => Some(Err(e.into())),
            }
        }
        fn visit(&mut self, entry: Entry<'_>) -> Result<Flow, EntryError> {
            match entry {
                Entry::Metadata { path, bytes } => {
                    self.metadata.insert(path.to_owned(), bytes);
                }
                Entry::Foreign { why } => {
                    self.foreign = Some(why);
                    return Ok(Flow::Stop);
                }
                Entry::Blob {
                    path,
                    digest,
                    size,
                    reader,
                } => {
                    if size <= MAX_MANIFEST_BYTES && self.buffered_bytes + size <= MAX_BUFFERED {
                        let mut bytes = Vec::with_capacity(size as usize);
                        reader.take(size).read_to_end(&mut bytes).map_err(|e| {
                            EntryError::Read(format!("reading entry {path:?}: {e}"))
                        })?;
                        if bytes.len() as u64 != size {
                            return Err(EntryError::Read(format!("entry {path:?} is truncated")));
                        }
                        let actual = digest.of_same_algorithm(&bytes);
                        if actual != digest {
                            return Err(EntryError::Mismatch {
                                entry: path.to_owned(),
                                expected: digest,
                                actual,
                            });
                        }
                        if bytes.first() == Some(&b'{') {
                            self.buffered_bytes += size;
                            self.buffered.insert(digest, bytes);
                            return Ok(Flow::Continue);
                        }
                    }
                    // A layer: if the plan is complete now, nothing further is needed.
                    if let Some(p) = self.try_plan() {
                        self.plan = Some(p);
                        return Ok(Flow::Stop);
                    }
                }
            }
            Ok(Flow::Continue)
        }
    }
    let mut planner = Planner {
        map,
        metadata: HashMap::new(),
        buffered: HashMap::new(),
        buffered_bytes: 0,
        plan: None,
        foreign: None,
    };
    source
        .read_once(progress, &mut |e| planner.visit(e))
        .map_err(CopyError::Source)?;
    if let Some(why) = planner.foreign.take() {
        return Ok(Err(why));
    }
    if let Some(p) = planner.plan.take() {
        return p.map(Ok);
    }
    if !planner.metadata.contains_key("index.json") {
        return Ok(Err("the package has no index.json".to_owned()));
    }
    let index: IndexJson = serde_json::from_slice(&planner.metadata["index.json"])
        .map_err(|e| CopyError::Source(format!("index.json: {e}").into()))?;
    let planned = plan(&index.manifests, map, |d| {
        planner
            .buffered
            .get(&d.digest)
            .cloned()
            .ok_or_else(|| StoreError::MissingBlob {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                parent: "the package".to_owned(),
            })
    })?;
    Ok(Ok(planned))
}
