//! Bounded read-ahead for a single-pass source: blobs small enough are read
//! into memory, verified, and handed to worker threads that deliver them
//! through the executor, so the source is read (and decompressed and hashed)
//! while earlier blobs are still being sent, and the sink receives several
//! blobs at once.
//!
//! When the spool is full the reader does not wait: it delivers the next blob
//! straight from the source itself, so the sink still receives several blobs
//! at once without more memory.
//!
//! Invariants: the bytes held (queued or delivering) never exceed
//! [`SPOOL_BUDGET`] (they live in one capped `ChunkPool`, shared by the spools
//! of every destination, each blob held once however many need it); a blob is handed over
//! only after its digest was verified; after the first failure (or a cancel)
//! no further delivery starts and queued blobs are dropped; a worker that
//! panics is a failure, not a hang; every worker has finished before
//! [`Spool::finish`] returns, so manifests are written only after all their
//! blobs.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chunk_pool::{read_from, HeldBytes};
use crate::executor::{BlobTask, Executor};
use crate::report::CopyError;
use crate::sink::Body;

/// Blobs up to this size go through the spool; larger ones are delivered
/// straight from the source.
pub(crate) const SPOOL_MAX_BLOB: u64 = 24 << 20;
/// Bytes of blobs held in memory at once: four 16 MiB layers, so both workers
/// have the next blob ready when one finishes (the registry syncs every blob to
/// disk before it answers, and a third upload from the reader covers that wait).
/// Peak RSS is about this plus the package's decompression window (8 MiB for
/// `xz -6`): ~62 MiB pushing the benchmark package (BENCHMARKS.md).
pub(crate) const SPOOL_BUDGET: u64 = 64 << 20;
/// Background delivery threads.
pub(crate) const SPOOL_WORKERS: usize = 2;

type Job = (BlobTask, Arc<dyn HeldBytes>);

/// A bounded set of in-memory blobs being delivered by worker threads.
pub(crate) struct Spool<'a> {
    executor: &'a Executor<'a>,
    sender: Mutex<Option<Sender<Job>>>,
    receiver: Mutex<Receiver<Job>>,
    state: Mutex<SpoolState>,
}

#[derive(Default)]
struct SpoolState {
    failure: Option<CopyError>,
    cancelled: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl<'a> Spool<'a> {
    pub fn new(executor: &'a Executor<'a>) -> Spool<'a> {
        let (sender, receiver) = channel();
        Spool {
            executor,
            sender: Mutex::new(Some(sender)),
            receiver: Mutex::new(receiver),
            state: Mutex::new(SpoolState::default()),
        }
    }

    /// Whether a worker has failed or the spool was cancelled (nothing more
    /// should be read or sent).
    pub fn failed(&self) -> bool {
        let state = lock(&self.state);
        state.failure.is_some() || state.cancelled
    }

    /// Stops every worker after its current blob; queued blobs are dropped.
    pub fn cancel(&self) {
        lock(&self.state).cancelled = true;
        self.close();
    }

    /// Queues a verified in-memory blob (shared with other spools: its
    /// memory goes back to the pool when the last of them is done with it).
    pub fn submit(&self, task: BlobTask, blob: Arc<dyn HeldBytes>) {
        if let Some(s) = lock(&self.sender).as_ref() {
            // A closed queue drops the job, which gives its memory back.
            let _ = s.send((task, blob));
        }
    }

    /// A worker: delivers queued blobs until the queue is closed.
    pub fn work(&self) {
        loop {
            let job = lock(&self.receiver).recv();
            let Ok((task, blob)) = job else {
                return;
            };
            if self.failed() {
                continue; // drain: dropping the job gives its memory back
            }
            let open = move |offset: u64| Ok(read_from(&blob, offset));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.executor.deliver(&task, Body::Reopen(&open))
            }));
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(CopyError::Source(
                    format!(
                        "an upload worker failed while sending blob {}: {}",
                        task.desc.digest,
                        panic_text(panic.as_ref())
                    )
                    .into(),
                )),
            };
            if let Some(e) = failure {
                lock(&self.state).failure.get_or_insert(e);
            }
        }
    }

    /// Opens a new queue after [`Spool::close`], for another read.
    pub fn reopen(&self) {
        let (sender, receiver) = channel();
        *lock(&self.sender) = Some(sender);
        *lock(&self.receiver) = receiver;
    }

    /// Closes the queue: workers return once it is drained.
    pub fn close(&self) {
        lock(&self.sender).take();
    }

    /// After the workers have returned: the first failure, if any.
    pub fn finish(&self) -> Result<(), CopyError> {
        match lock(&self.state).failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Closes the spool's queue when dropped, also while unwinding from a panic of
/// the reading thread, so workers never wait for work that will not come.
pub(crate) struct CloseOnDrop<'s, 'a>(pub &'s Spool<'a>);

impl Drop for CloseOnDrop<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.cancel();
        } else {
            self.0.close();
        }
    }
}
