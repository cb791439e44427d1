//! Copying from a single-pass source (a package read in its own order) into
//! one or several sinks at once: the same executor per sink, driven as the
//! entries go by, with the source read once for all of them. Metadata and
//! manifests are held in memory until the plans can be made (bounded); from
//! then on each blob is delivered, as it is read, to every sink that needs
//! it: through the bounded read-ahead of the [`crate::spool`] when it is
//! small (held once, shared by every sink), else straight from the source
//! (teed to each sink that needs it, paced by the slowest). A delivery that
//! breaks off (a reset, a stall) is sent again from a further read of the
//! source (3 reads at most), only to the sink that missed it.
//!
//! Blobs that come before the plan can be made (a package whose `index.json`
//! comes last) go, as they are read, to each sink's holding repository
//! ([`Sink::holding_repository`]); once the plan is known they are mounted
//! from there into each image's repository. Mounts a sink refuses take
//! another read. A sink without a holding repository gets
//! [`StreamOutcome::NotStreamable`] before anything is written.
//!
//! Invariants: every byte read is verified against its digest; a failure of
//! one sink ends that sink's copy only (the others go on, and each gets its
//! own result); a dry run ([`Sink::is_dry_run`]) stops reading once the plan
//! is known; a failure or a panic of any thread ends the copy with an error,
//! never a hang.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use ferry_store::descriptor::{children_of, MAX_MANIFEST_BYTES};
use ferry_store::layout::IndexJson;
use ferry_store::verify_reader::{Mismatch, VerifyingReader};
use ferry_store::walk::memory_loader;
use ferry_store::{Descriptor, Digest};

use crate::chunk_pool::{ChunkPool, FillError, HeldBytes};
use crate::executor::{BlobTask, CopyOptions, Executor, Prepared};
use crate::plan::{plan, Destination, Plan, PlanError};
use crate::report::{CopyError, CopyEvent, CopyReport};
use crate::sink::{Body, Sink, SinkErrorKind};
use crate::spool::{CloseOnDrop, Spool, SPOOL_BUDGET, SPOOL_MAX_BLOB, SPOOL_WORKERS};

/// Manifests held in memory while the plan is not known yet.
const MAX_BUFFERED: u64 = 256 << 20;
/// Reads of the source in one run.
const MAX_PASSES: u32 = 3;
/// Chunks in flight to each sink of a teed blob.
const TEE_DEPTH: usize = 4;
/// Size of a teed chunk.
const TEE_CHUNK: usize = 1 << 20;

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

/// How a copy from a single-pass source into one sink ended.
pub enum StreamOutcome {
    /// Everything was copied.
    Copied(CopyReport),
    /// The source cannot be copied in one read in this order: nothing was
    /// written; stage it instead.
    NotStreamable(String),
}

type MapFn<'m> = &'m (dyn Fn(&str) -> Result<Destination, String> + Sync);

/// One sink of a copy from a single-pass source: where, how names map there,
/// and who is told what happens.
pub struct Target<'t> {
    /// The sink.
    pub sink: &'t dyn Sink,
    /// A source name's destination in this sink.
    pub map: MapFn<'t>,
    /// Told what happens in this sink.
    pub events: &'t (dyn Fn(CopyEvent) + Sync),
}

/// Everything the reader knows about one sink.
struct Lane<'e, 'a> {
    executor: &'e Executor<'a>,
    map: MapFn<'e>,
    events: &'e (dyn Fn(CopyEvent) + Sync),
    spool: &'e Spool<'a>,
    plan: Option<(Plan, Prepared)>,
    /// Blobs present everywhere this sink needs them.
    done: HashSet<Digest>,
    not_streamable: Option<String>,
    /// This sink failed: it takes nothing more.
    failure: Option<CopyError>,
    /// Blobs that still need bytes after this read.
    deferred: BTreeSet<Digest>,
    deferred_error: Option<CopyError>,
    /// Everything this sink needs was delivered in this read.
    finished: bool,
    /// The sink's holding repository, once blobs came before the plan.
    holding: Option<String>,
    /// Blobs known to be in the holding repository.
    held: HashSet<Digest>,
    /// Blobs came before the plan in a dry run: read on, write nothing.
    reading_through: bool,
    /// Remove the held blobs after a complete copy.
    clean_holding: bool,
}

/// Reads what is left of a straight-through blob and checks it.
fn verified<R: Read>(path: &str, verifying: VerifyingReader<R>) -> Result<(), EntryError> {
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
fn read_verified(
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
fn make_plan(
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
    fn idle(&self) -> bool {
        self.failure.is_some() || self.not_streamable.is_some() || self.finished
    }

    /// Makes the plan and asks the sink what it lacks; false when the plan
    /// cannot be made yet or the sink failed (recorded).
    fn start(
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
    fn first_layer(
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

    fn task_for(&self, digest: &Digest) -> Option<&BlobTask> {
        self.plan.as_ref()?.1.tasks.get(digest)
    }

    fn all_done(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|(_, p)| p.tasks.keys().all(|d| self.done.contains(d)))
    }

    /// Delivers the buffered blobs the plan needs (from memory).
    fn deliver_buffered(&mut self, buffered: &HashMap<Digest, Vec<u8>>) -> Result<(), CopyError> {
        let pending: Vec<Digest> = buffered
            .keys()
            .filter(|d| !self.done.contains(*d) && self.task_for(d).is_some())
            .cloned()
            .collect();
        for d in pending {
            let held: Arc<dyn HeldBytes> = Arc::new(buffered.get(&d).cloned().unwrap_or_default());
            let open = move |offset: u64| Ok(crate::chunk_pool::read_from(&held, offset));
            if let Some(task) = self.task_for(&d) {
                self.executor.deliver(task, Body::Reopen(&open))?;
            }
            self.done.insert(d);
        }
        Ok(())
    }

    /// What this sink needs of the blob now going by, if anything.
    fn wants(
        &mut self,
        digest: &Digest,
        size: u64,
        buffered: &HashMap<Digest, Vec<u8>>,
    ) -> Option<BlobTask> {
        if self.idle() {
            return None;
        }
        if self.plan.is_none() {
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
                    self.failure = Some(CopyError::Sink {
                        context: format!("blob {digest} in {holding}"),
                        source: e,
                    });
                    None
                }
            };
        }
        // Buffered leaves first (children before parents still holds: manifests go last).
        if let Err(e) = self.deliver_buffered(buffered) {
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

    /// Records a blob as handed over (queued, or delivered straight).
    fn delivered(&mut self, digest: Digest) {
        if self.plan.is_none() {
            self.held.insert(digest);
        } else {
            self.done.insert(digest);
            if self.all_done() {
                self.finished = true;
            }
        }
    }

    /// Records a straight delivery that failed.
    fn failed_delivery(&mut self, digest: Digest, e: CopyError) {
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
    fn settle(
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
        self.deliver_buffered(buffered)?;
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

    /// The end: what a dry run would deliver, the completeness check, commit.
    fn finish(mut self, buffered: &HashMap<Digest, Vec<u8>>) -> Result<StreamOutcome, CopyError> {
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
            return Err(CopyError::Incomplete(format!(
                "the package lacks blob {d} ({}, {} bytes)",
                t.desc.media_type, t.desc.size
            )));
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
    fn clean(&self, holding: &str) {
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

/// Reads the source once for every lane.
struct Reader<'e, 'a> {
    lanes: Vec<Lane<'e, 'a>>,
    memory: Arc<ChunkPool>,
    metadata: HashMap<String, Vec<u8>>,
    /// Manifests read before the plans were known.
    buffered: HashMap<Digest, Vec<u8>>,
    buffered_bytes: u64,
}

impl Reader<'_, '_> {
    fn visit(&mut self, entry: Entry<'_>) -> Result<Flow, EntryError> {
        match entry {
            Entry::Metadata { path, bytes } => {
                self.metadata.insert(path.to_owned(), bytes);
                Ok(Flow::Continue)
            }
            Entry::Foreign { why } => {
                for lane in self.lanes.iter_mut().filter(|l| !l.idle()) {
                    lane.not_streamable = Some(why.clone());
                }
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

    fn blob(
        &mut self,
        path: &str,
        digest: Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<Flow, EntryError> {
        let planning = self.lanes.iter().any(|l| l.plan.is_none() && !l.idle());
        // Before the plans are known, manifests (JSON, ≤ 4 MiB) are held in
        // memory; the first byte tells them from layers, which are never held.
        let mut first = [0u8; 1];
        let mut peeked = 0;
        let mut rest;
        let reader: &mut dyn Read = if planning && size > 0 {
            peeked = reader
                .read(&mut first)
                .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
            rest = (&first[..peeked]).chain(reader);
            &mut rest
        } else {
            reader
        };
        let json = peeked == 1 && first[0] == b'{';
        if planning
            && json
            && size <= MAX_MANIFEST_BYTES
            && self.buffered_bytes + size <= MAX_BUFFERED
        {
            let bytes = read_verified(path, &digest, size, reader)?;
            self.buffered_bytes += size;
            self.buffered.insert(digest, bytes);
            return Ok(Flow::Continue);
        }
        let (metadata, buffered) = (&self.metadata, &self.buffered);
        for lane in self.lanes.iter_mut() {
            lane.first_layer(metadata, buffered);
        }
        let mut takers: Vec<(usize, BlobTask)> = Vec::new();
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if let Some(task) = lane.wants(&digest, size, buffered) {
                takers.push((i, task));
            }
        }
        if self.lanes.iter().all(Lane::idle) {
            return Ok(Flow::Stop);
        }
        if takers.is_empty() {
            return Ok(Flow::Continue);
        }
        // Small: read once into the shared read-ahead memory, verified, queued for each sink.
        if size <= SPOOL_MAX_BLOB {
            if let Some(memory) = self.memory.try_lend(size) {
                let blob = memory.fill(reader, size, &digest).map_err(|e| match e {
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
                let blob: Arc<dyn HeldBytes> = Arc::new(blob);
                for (i, task) in takers {
                    let lane = &mut self.lanes[i];
                    lane.spool.submit(task, blob.clone());
                    lane.delivered(digest.clone());
                }
                return Ok(self.flow());
            }
        }
        // Large, or the read-ahead is full: straight from the source.
        let mut verifying = VerifyingReader::new(reader, &digest, Some(size));
        let results = if takers.len() == 1 {
            let (i, task) = &takers[0];
            vec![self.lanes[*i]
                .executor
                .deliver(task, Body::Once(&mut verifying))]
        } else {
            let executors: Vec<&Executor<'_>> = takers
                .iter()
                .map(|(i, _)| self.lanes[*i].executor)
                .collect();
            tee(&mut verifying, &takers, &executors)
        };
        verified(path, verifying)?;
        for ((i, _), result) in takers.into_iter().zip(results) {
            let lane = &mut self.lanes[i];
            match result {
                Ok(()) => lane.delivered(digest.clone()),
                Err(e) => lane.failed_delivery(digest.clone(), e),
            }
        }
        Ok(self.flow())
    }

    /// Stop when no lane needs anything more from this read.
    fn flow(&self) -> Flow {
        if self.lanes.iter().all(|l| l.idle() || l.spool.failed()) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// Reads a channel of chunks as a stream.
struct ChunkReader {
    chunks: Receiver<Arc<Vec<u8>>>,
    current: Arc<Vec<u8>>,
    position: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Err(_) => return Ok(0), // the sender is done
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Delivers one stream to several sinks at once: each gets its own reader
/// fed from `source` chunk by chunk (at most [`TEE_DEPTH`] chunks ahead of the
/// slowest); a sink that fails stops taking chunks and the others go on.
fn tee(
    source: &mut dyn Read,
    takers: &[(usize, BlobTask)],
    executors: &[&Executor<'_>],
) -> Vec<Result<(), CopyError>> {
    std::thread::scope(|scope| {
        let mut senders: Vec<Option<SyncSender<Arc<Vec<u8>>>>> = Vec::new();
        let mut handles = Vec::new();
        for ((_, task), executor) in takers.iter().zip(executors) {
            let (tx, rx) = sync_channel(TEE_DEPTH);
            senders.push(Some(tx));
            handles.push(scope.spawn(move || {
                let mut reader = ChunkReader {
                    chunks: rx,
                    current: Arc::new(Vec::new()),
                    position: 0,
                };
                let result = executor.deliver(task, Body::Once(&mut reader));
                // Leave nothing unread for the feeder to wait on.
                drop(reader);
                result
            }));
        }
        let mut buf = vec![0u8; TEE_CHUNK];
        let mut read_error = None;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            let chunk = Arc::new(buf[..n].to_vec());
            for sender in senders.iter_mut() {
                if let Some(s) = sender {
                    if s.send(chunk.clone()).is_err() {
                        *sender = None; // that sink stopped reading
                    }
                }
            }
            if senders.iter().all(Option::is_none) {
                break;
            }
        }
        drop(senders);
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => match &read_error {
                    Some(e) => r.and(Err(CopyError::Source(
                        format!("reading the package: {e}").into(),
                    ))),
                    None => r,
                },
                Err(_) => Err(CopyError::Source("an upload thread failed".into())),
            })
            .collect()
    })
}

/// Copies every image of a single-pass `source` into `sink` in one read; see
/// [`copy_stream_to_many`].
pub fn copy_stream(
    source: &dyn SinglePassSource,
    sink: &dyn Sink,
    options: CopyOptions,
    map: MapFn<'_>,
    progress: Arc<AtomicU64>,
    events: &(dyn Fn(CopyEvent) + Sync),
) -> Result<StreamOutcome, CopyError> {
    let target = Target { sink, map, events };
    copy_stream_to_many(source, &[target], options, progress)
        .pop()
        .unwrap_or_else(|| Err(CopyError::Incomplete("no destination".into())))
}

/// Copies every image of a single-pass `source` into every target, reading
/// the source once for all of them (again only for blobs a target still
/// needs after a read). One result per target, in order: a target that fails
/// does not stop the others.
pub fn copy_stream_to_many(
    source: &dyn SinglePassSource,
    targets: &[Target<'_>],
    options: CopyOptions,
    progress: Arc<AtomicU64>,
) -> Vec<Result<StreamOutcome, CopyError>> {
    let executors: Vec<Executor<'_>> = targets
        .iter()
        .map(|t| Executor::new(t.sink, options, t.events))
        .collect();
    let spools: Vec<Spool<'_>> = executors.iter().map(Spool::new).collect();
    let lanes = targets
        .iter()
        .zip(&executors)
        .zip(&spools)
        .map(|((t, executor), spool)| Lane {
            executor,
            map: t.map,
            events: t.events,
            spool,
            plan: None,
            done: HashSet::new(),
            not_streamable: None,
            failure: None,
            deferred: BTreeSet::new(),
            deferred_error: None,
            finished: false,
            holding: None,
            held: HashSet::new(),
            reading_through: false,
            clean_holding: options.clean_holding && !t.sink.is_dry_run(),
        })
        .collect();
    let mut r = Reader {
        lanes,
        memory: ChunkPool::new(SPOOL_BUDGET),
        metadata: HashMap::new(),
        buffered: HashMap::new(),
        buffered_bytes: 0,
    };
    let mut pass = 1;
    let mut position = progress;
    loop {
        let walked = std::thread::scope(|scope| {
            let _close: Vec<CloseOnDrop<'_, '_>> = spools.iter().map(CloseOnDrop).collect();
            for spool in &spools {
                for _ in 0..SPOOL_WORKERS.min(options.jobs.max(1)) {
                    scope.spawn(|| spool.work());
                }
            }
            let walked = source.read_once(position.clone(), &mut |e| r.visit(e));
            if walked.is_err() {
                spools.iter().for_each(Spool::cancel);
            }
            walked
        });
        let walked = walked.map_err(|e| e.to_string());
        let (metadata, buffered) = (&r.metadata, &r.buffered);
        for (lane, spool) in r.lanes.iter_mut().zip(&spools) {
            if let Err(e) = spool.finish() {
                lane.failure.get_or_insert(e);
            }
            if lane.failure.is_some() || lane.not_streamable.is_some() {
                continue;
            }
            let stopped_early = lane.finished;
            if !stopped_early {
                if let Err(e) = &walked {
                    lane.failure = Some(CopyError::Source(e.clone().into()));
                    continue;
                }
                if let Err(e) = lane.settle(metadata, buffered) {
                    lane.failure = Some(e);
                }
            }
        }
        let again: Vec<usize> = (0..r.lanes.len())
            .filter(|i| {
                let l = &r.lanes[*i];
                l.failure.is_none() && l.not_streamable.is_none() && !l.deferred.is_empty()
            })
            .collect();
        if again.is_empty() {
            break;
        }
        if pass == MAX_PASSES {
            for i in again {
                let lane = &mut r.lanes[i];
                let e = lane.deferred_error.take().unwrap_or_else(|| {
                    CopyError::Incomplete(format!(
                        "{} blob(s) still need to be sent after {MAX_PASSES} reads of the package",
                        lane.deferred.len()
                    ))
                });
                lane.failure = Some(e);
            }
            break;
        }
        pass += 1;
        for (i, lane) in r.lanes.iter_mut().enumerate() {
            if again.contains(&i) {
                if let Some(e) = lane.deferred_error.take() {
                    (lane.events)(CopyEvent::Retry {
                        message: format!(
                            "{} blob(s) broke off mid-upload ({e}); reading the package again (pass {pass} of {MAX_PASSES}) to send them",
                            lane.deferred.len(),
                        ),
                    });
                }
                lane.deferred.clear();
                lane.finished = false;
            } else {
                lane.finished = true; // nothing more for it in this read
            }
        }
        spools.iter().for_each(Spool::reopen);
        // The shown position stays where the first read ended (bars never go back).
        position = Arc::new(AtomicU64::new(0));
    }
    let buffered = &r.buffered;
    let lanes = std::mem::take(&mut r.lanes);
    // Commit every sink at once: a slow one does not hold the others back.
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| scope.spawn(move || lane.finish(buffered)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CopyError::Source("a commit thread failed".into())))
            })
            .collect()
    })
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
            let planned = plan(
                &index.manifests,
                self.map,
                memory_loader(&self.buffered, ""),
            );
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
                        let bytes = read_verified(path, &digest, size, reader)?;
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
    let planned = plan(
        &index.manifests,
        map,
        memory_loader(&planner.buffered, "the package"),
    )?;
    Ok(Ok(planned))
}
