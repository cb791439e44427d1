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

mod lane;
mod read_plan;
mod reader;
mod tee;

pub use read_plan::read_plan;

use lane::Lane;
use reader::Reader;

/// Manifests held in memory while the plan is not known yet.
pub(super) const MAX_BUFFERED: u64 = 256 << 20;
/// Reads of the source in one run.
pub(super) const MAX_PASSES: u32 = 3;
/// Chunks in flight to each sink of a teed blob.
pub(super) const TEE_DEPTH: usize = 4;
/// Size of a teed chunk.
pub(super) const TEE_CHUNK: usize = 1 << 20;

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

pub(super) type MapFn<'m> = &'m (dyn Fn(&str) -> Result<Destination, String> + Sync);

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
            holding_probed: false,
            holding_refused: false,
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
