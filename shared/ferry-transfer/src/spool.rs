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
//! [`SPOOL_BUDGET`]; a blob is handed over only after its digest was verified; after
//! the first failure no further upload starts and the failure is reported;
//! every worker has finished before [`Spool::finish`] returns, so manifests
//! are pushed only after all their blobs.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_registry::meter::TransferMeter;
use ferry_registry::push::PushEvent;
use ferry_registry::Client;

use crate::present::{make_present, BlobBody, BlobTask, Tally};
use crate::stream_push::StreamError;

/// Blobs up to this size go through the spool; larger ones stream straight
/// from the package to the registry.
pub(crate) const SPOOL_MAX_BLOB: u64 = 24 << 20;
/// Bytes of blobs held in memory at once: one large blob uploading from memory
/// while the walk streams the next one is enough to keep two uploads going, and
/// peak RSS stays under 100 MiB beside the multi-threaded xz decoder's buffers.
pub(crate) const SPOOL_BUDGET: u64 = 24 << 20;
/// Background upload threads.
pub(crate) const SPOOL_WORKERS: usize = 2;

type Job = (BlobTask, Arc<Vec<u8>>);

/// A bounded set of in-memory blobs being uploaded by worker threads.
pub(crate) struct Spool<'a> {
    client: &'a Client,
    meter: &'a TransferMeter,
    events: &'a (dyn Fn(PushEvent) + Sync),
    sender: Mutex<Option<Sender<Job>>>,
    receiver: Mutex<Receiver<Job>>,
    held: Mutex<u64>,
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
            held: Mutex::new(0),
            state: Mutex::new(SpoolState::default()),
        }
    }

    /// Whether a worker has failed (nothing more should be read or sent).
    pub fn failed(&self) -> bool {
        lock(&self.state).failure.is_some()
    }

    /// Reserves `size` bytes if they fit in the budget now (never waits).
    pub fn try_reserve(&self, size: u64) -> bool {
        let mut held = lock(&self.held);
        if *held + size > SPOOL_BUDGET {
            return false;
        }
        *held += size;
        true
    }

    /// Gives back `size` reserved bytes.
    pub fn release(&self, size: u64) {
        let mut held = lock(&self.held);
        *held = held.saturating_sub(size);
    }

    /// Queues a verified in-memory blob (its bytes were reserved).
    pub fn submit(&self, task: BlobTask, bytes: Arc<Vec<u8>>) {
        let size = bytes.len() as u64;
        let sent = lock(&self.sender)
            .as_ref()
            .is_some_and(|s| s.send((task, bytes)).is_ok());
        if !sent {
            self.release(size);
        }
    }

    /// A worker: uploads queued blobs until the queue is closed.
    pub fn work(&self) {
        loop {
            let job = lock(&self.receiver).recv();
            let Ok((task, bytes)) = job else {
                return;
            };
            let size = bytes.len() as u64;
            if !self.failed() {
                let result = make_present(
                    self.client,
                    self.meter,
                    self.events,
                    &task,
                    BlobBody::Memory(bytes),
                );
                let mut state = lock(&self.state);
                match result {
                    Ok(t) => state.tally.add(t),
                    Err(e) => {
                        state.failure.get_or_insert(e);
                    }
                }
            }
            self.release(size);
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
