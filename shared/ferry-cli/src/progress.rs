//! Byte-progress bars (bytes, rate, ETA) drawn on stderr only when it is a TTY:
//! one total bar, plus one bar per blob in flight when a [`TransferMeter`] is
//! given. Bars follow monotonic counters, so they never go backwards on retries.
//! The bar running is the one [`crate::interrupt`] reports on Ctrl-C; it is then
//! left on screen at its last position (not cleared) before the message.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_copy::meter::{ActiveBlob, TransferMeter};
use std::fmt::Write as FmtWrite;

use crate::interrupt::{self, ActiveProgress};
use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};

/// At most this many per-blob bars are drawn (the rest are in the total).
const MAX_BLOB_BARS: usize = 8;

/// Polls a shared byte counter and draws a bar until finished.
pub struct ByteProgress {
    counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ByteProgress {
    /// Starts a bar for `total` bytes labelled `label`, if stderr is a terminal
    /// and `enabled`; otherwise only counts.
    pub fn start(label: &str, total: u64, enabled: bool) -> ByteProgress {
        ByteProgress::start_with_blobs(label, total, Arc::new(AtomicU64::new(0)), None, enabled)
    }

    /// Like [`ByteProgress::start`], following `counter` (owned elsewhere,
    /// e.g. a [`TransferMeter`]'s total), plus one bar per blob in flight in `blobs`.
    pub fn start_with_blobs(
        label: &str,
        total: u64,
        counter: Arc<AtomicU64>,
        blobs: Option<Arc<TransferMeter>>,
        enabled: bool,
    ) -> ByteProgress {
        let stop = Arc::new(AtomicBool::new(false));
        let drawn: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let draw = enabled && std::io::stderr().is_terminal();
        interrupt::set_active(ActiveProgress {
            label: label.to_owned(),
            total,
            counter: counter.clone(),
            stop: draw.then(|| stop.clone()),
            drawn: drawn.clone(),
        });
        let thread = draw.then(|| {
            // Every bar is set once per poll; the draw rate must let all of them through.
            let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(
                4 * (MAX_BLOB_BARS as u8 + 2),
            ));
            let bar = bars.add(ProgressBar::new(total).with_style(style(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )));
            bar.set_message(label.to_owned());
            let (counter, stop, drawn) = (counter.clone(), stop.clone(), drawn.clone());
            std::thread::spawn(move || {
                let mut shown: Vec<(Arc<ActiveBlob>, ProgressBar)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(counter.load(Ordering::Relaxed));
                    if let Some(meter) = &blobs {
                        sync_blob_bars(&bars, meter, &mut shown);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                for (_, b) in shown {
                    b.finish_and_clear();
                }
                if interrupt::interrupted() {
                    // Leave the total where it stopped; the interrupt message follows it.
                    bar.set_position(counter.load(Ordering::Relaxed));
                    bar.abandon();
                    // The cursor is at the end of the bar: end its line.
                    eprintln!();
                } else {
                    bar.finish_and_clear();
                    let _ = bars.clear();
                }
                let (lock, cvar) = &*drawn;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cvar.notify_all();
            })
        });
        ByteProgress {
            counter,
            stop,
            thread,
        }
    }

    /// The counter the worker advances.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }

    /// Stops and clears the bar.
    pub fn finish(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        interrupt::clear_active(&self.counter);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ByteProgress {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

/// A per-blob bar: bytes, average rate and ETA since the bar appeared (bytes
/// confirmed before it appeared, e.g. a resumed upload, do not count as speed).
fn blob_style(start: u64) -> ProgressStyle {
    let rate = move |state: &ProgressState| {
        let secs = state.elapsed().as_secs_f64();
        let moved = state.pos().saturating_sub(start) as f64;
        (secs > 0.2 && moved > 0.0).then(|| moved / secs)
    };
    style("  {msg} [{bar:20}] {bytes}/{total_bytes} {avg_rate} {avg_eta}")
        .with_key(
            "avg_rate",
            move |state: &ProgressState, w: &mut dyn FmtWrite| {
                let _ = match rate(state) {
                    Some(r) => write!(w, "{}/s", HumanBytes(r as u64)),
                    None => write!(w, "-"),
                };
            },
        )
        .with_key(
            "avg_eta",
            move |state: &ProgressState, w: &mut dyn FmtWrite| {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos()) as f64;
                let _ = match rate(state) {
                    Some(r) => write!(w, "ETA {}s", (left / r).ceil() as u64),
                    None => write!(w, "ETA -"),
                };
            },
        )
}

/// Adds a bar for each new blob in flight (up to [`MAX_BLOB_BARS`]), moves the
/// others, and removes the bars of blobs that are done.
fn sync_blob_bars(
    bars: &MultiProgress,
    meter: &TransferMeter,
    shown: &mut Vec<(Arc<ActiveBlob>, ProgressBar)>,
) {
    let active = meter.active();
    shown.retain(|(blob, bar)| {
        let live = active.iter().any(|a| Arc::ptr_eq(a, blob));
        if !live {
            bar.finish_and_clear();
            bars.remove(bar);
        }
        live
    });
    for blob in active {
        if shown.len() >= MAX_BLOB_BARS {
            break;
        }
        if !shown.iter().any(|(b, _)| Arc::ptr_eq(b, &blob)) {
            let bar = bars.add(
                ProgressBar::new(blob.size)
                    .with_position(blob.position())
                    .with_style(blob_style(blob.position())),
            );
            bar.set_message(blob.label.clone());
            shown.push((blob, bar));
        }
    }
    for (blob, bar) in shown.iter() {
        bar.set_position(blob.position());
    }
}
