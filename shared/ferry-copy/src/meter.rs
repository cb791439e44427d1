//! Live byte meters for transfers, read by progress displays: a total and the
//! blobs in flight, each with its own position.
//!
//! Invariants: a position never goes backwards (a retry that re-sends bytes
//! does not move it until it passes the furthest point reached before), and
//! the total only grows by the forward movement of blob positions plus bytes
//! accounted without a transfer ([`TransferMeter::add`]). A blob leaves the
//! in-flight list when its [`BlobMeter`] is dropped, whatever the outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A total byte count plus the blobs currently being transferred.
#[derive(Debug, Default)]
pub struct TransferMeter {
    total: Arc<AtomicU64>,
    active: Mutex<Vec<Arc<ActiveBlob>>>,
}

/// One blob in flight.
#[derive(Debug)]
pub struct ActiveBlob {
    /// What is moving, e.g. `ns/a/b sha256:0123abcd…`.
    pub label: String,
    /// The blob's size in bytes.
    pub size: u64,
    position: AtomicU64,
}

impl ActiveBlob {
    /// Bytes of this blob confirmed so far (monotonic).
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
}

impl TransferMeter {
    /// A meter whose total starts at 0.
    pub fn new() -> TransferMeter {
        TransferMeter::default()
    }

    /// A meter that advances `total`, a counter owned elsewhere (a progress bar's).
    pub fn with_total(total: Arc<AtomicU64>) -> TransferMeter {
        TransferMeter {
            total,
            active: Mutex::new(Vec::new()),
        }
    }

    /// Bytes counted so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts `bytes` that needed no transfer (a blob already present).
    pub fn add(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Registers a blob in flight; it stays listed until the returned meter is dropped.
    pub fn begin(&self, label: String, size: u64) -> BlobMeter<'_> {
        let blob = Arc::new(ActiveBlob {
            label,
            size,
            position: AtomicU64::new(0),
        });
        self.lock().push(blob.clone());
        BlobMeter { meter: self, blob }
    }

    /// The blobs in flight, oldest first.
    pub fn active(&self) -> Vec<Arc<ActiveBlob>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ActiveBlob>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The position of one blob in flight; removes it from the list when dropped.
#[derive(Debug)]
pub struct BlobMeter<'a> {
    meter: &'a TransferMeter,
    blob: Arc<ActiveBlob>,
}

impl BlobMeter<'_> {
    /// The blob has reached byte `position` (of this attempt); only forward
    /// movement counts.
    pub fn reached(&self, position: u64) {
        let previous = self.blob.position.fetch_max(position, Ordering::Relaxed);
        if position > previous {
            self.meter.add(position - previous);
        }
    }

    /// Bytes of this blob counted so far.
    pub fn position(&self) -> u64 {
        self.blob.position()
    }
}

impl Drop for BlobMeter<'_> {
    fn drop(&mut self) {
        self.meter.lock().retain(|b| !Arc::ptr_eq(b, &self.blob));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_never_go_backwards_and_blobs_leave_when_done() {
        let meter = TransferMeter::new();
        meter.add(10);
        {
            let a = meter.begin("a".into(), 100);
            let b = meter.begin("b".into(), 50);
            a.reached(40);
            a.reached(20); // a retry starting over
            a.reached(60);
            b.reached(50);
            assert_eq!(meter.total(), 10 + 60 + 50);
            let labels: Vec<_> = meter.active().iter().map(|x| x.label.clone()).collect();
            assert_eq!(labels, ["a", "b"]);
            drop(b);
            assert_eq!(meter.active().len(), 1);
            assert_eq!(meter.active()[0].position(), 60);
        }
        assert!(meter.active().is_empty());
        assert_eq!(meter.total(), 120);
    }

    #[test]
    fn an_outside_counter_is_advanced() {
        let counter = Arc::new(AtomicU64::new(5));
        let meter = TransferMeter::with_total(counter.clone());
        meter.begin("x".into(), 9).reached(9);
        assert_eq!(counter.load(Ordering::Relaxed), 14);
    }
}
