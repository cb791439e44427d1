//! Background uploads during a streaming push: blobs small enough are read
//! from the package into memory, verified, and handed to worker threads, so
//! the package is decompressed and hashed while earlier blobs are still being
//! sent, and the registry receives several blobs at once.
//!
//! When the spool is full the walk does not wait: it streams the next blob
//! straight to the registry itself, so the registry still receives several
//! blobs at once without more memory.
//!
//! Invariants: the bytes held (queued or uploading) never exceed
//! [`SPOOL_BUDGET`] (they live in a capped [`ChunkPool`]); a blob is handed over
//! only after its digest was verified; after the first failure no further
//! upload starts and the failure is reported; every worker has finished before
//! [`Spool::finish`] returns, so manifests are pushed only after all their blobs.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_registry::meter::TransferMeter;
use ferry_registry::push::PushEvent;
use ferry_registry::Client;

use crate::chunk_pool::{ChunkPool, EmptyBlob, HeldBlob};
use crate::present::{make_present, BlobBody, BlobTask, Tally};
use crate::stream_push::StreamError;

/// Blobs up to this size go through the spool; larger ones stream straight
/// from the package to the registry.
pub(crate) const SPOOL_MAX_BLOB: u64 = 24 << 20;
/// Bytes of blobs held in memory at once: four 16 MiB layers, so both workers
/// have the next blob ready when one finishes (the registry syncs every blob to
/// disk before it answers, and a third upload from the walk covers that wait).
/// Peak RSS is about this plus the package's decompression window (8 MiB for
/// `xz -6`): ~62 MiB pushing the benchmark package (BENCHMARKS.md).
pub(crate) const SPOOL_BUDGET: u64 = 64 << 20;
/// Background upload threads.
pub(crate) const SPOOL_WORKERS: usize = 2;

type Job = (BlobTask, HeldBlob);

/// A bounded set of in-memory blobs being uploaded by worker threads.
pub(crate) struct Spool<'a> {
    client: &'a Client,
    meter: &'a TransferMeter,
    events: &'a (dyn Fn(PushEvent) + Sync),
    sender: Mutex<Option<Sender<Job>>>,
    receiver: Mutex<Receiver<Job>>,
    memory: Arc<ChunkPool>,
    state: Mutex<SpoolState>,
}

#[derive(Default)]
struct SpoolState {
    failure: Option<StreamError>,
    tally: Tally,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> Spool<'a> {
    pub fn new(
        client: &'a Client,
        meter: &'a TransferMeter,
        events: &'a (dyn Fn(PushEvent) + Sync),
    ) -> Spool<'a> {
        let (sender, receiver) = channel();
        Spool {
            client,
            meter,
            events,
            sender: Mutex::new(Some(sender)),
            receiver: Mutex::new(receiver),
            memory: ChunkPool::new(SPOOL_BUDGET),
            state: Mutex::new(SpoolState::default()),
        }
    }

    /// Whether a worker has failed (nothing more should be read or sent).
    pub fn failed(&self) -> bool {
        lock(&self.state).failure.is_some()
    }

    /// Memory for a blob of `size` bytes if it fits in the budget now (never
    /// waits); it is given back when the blob is dropped.
    pub fn try_reserve(&self, size: u64) -> Option<EmptyBlob> {
        self.memory.try_lend(size)
    }

    /// Queues a verified in-memory blob.
    pub fn submit(&self, task: BlobTask, blob: HeldBlob) {
        if let Some(s) = lock(&self.sender).as_ref() {
            // A closed queue drops the job, which gives its memory back.
            let _ = s.send((task, blob));
        }
    }

    /// A worker: uploads queued blobs until the queue is closed.
    pub fn work(&self) {
        loop {
            let job = lock(&self.receiver).recv();
            let Ok((task, blob)) = job else {
                return;
            };
            if !self.failed() {
                let result = make_present(
                    self.client,
                    self.meter,
                    self.events,
                    &task,
                    BlobBody::Memory(Arc::new(blob)),
                );
                let mut state = lock(&self.state);
                match result {
                    Ok(t) => state.tally.add(t),
                    Err(e) => {
                        state.failure.get_or_insert(e);
                    }
                }
            }
        }
    }

    /// Opens a new queue after [`Spool::close`], for another walk.
    pub fn reopen(&self) {
        let (sender, receiver) = channel();
        *lock(&self.sender) = Some(sender);
        *lock(&self.receiver) = receiver;
    }

    /// Closes the queue: workers return once it is drained.
    pub fn close(&self) {
        lock(&self.sender).take();
    }

    /// After the workers have returned: what they did, or the first failure.
    pub fn finish(&self) -> Result<Tally, StreamError> {
        let state = std::mem::take(&mut *lock(&self.state));
        match state.failure {
            Some(e) => Err(e),
            None => Ok(state.tally),
        }
    }
}
