//! Ctrl-C (SIGINT): finish the progress bar, say how far the run got and that
//! rerunning resumes, and exit 130 (128 + SIGINT, what shells expect).
//!
//! The handler runs on its own thread (the `ctrlc` crate), not in signal
//! context, so it may take locks and write. Ending the process there is safe
//! for every tool: stores and uploads are built to survive `kill -9` at any
//! point (complete-or-absent blobs, a journal whose torn last line is skipped),
//! so Ctrl-C needs no cleanup beyond the terminal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Duration;

use crate::human;

/// Exit code after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long the handler waits for the progress thread to draw its last frame.
const BAR_FINISH_WAIT: Duration = Duration::from_secs(1);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<Option<ActiveProgress>> = Mutex::new(None);

/// The progress of the run, as far as the interrupt message is concerned.
#[derive(Clone)]
pub(crate) struct ActiveProgress {
    /// What is being counted ("export", "push", …).
    pub label: String,
    /// Bytes to do.
    pub total: u64,
    /// Bytes done.
    pub counter: Arc<AtomicU64>,
    /// Set to stop the bar thread (absent when no bar is drawn).
    pub stop: Option<Arc<AtomicBool>>,
    /// Set (and notified) by the bar thread once its last frame is drawn.
    pub drawn: Arc<(Mutex<bool>, Condvar)>,
}

/// True once Ctrl-C was pressed: the bar thread then leaves its last frame on
/// screen instead of clearing it.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Makes `p` the progress reported if the run is interrupted.
pub(crate) fn set_active(p: ActiveProgress) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
}

/// Forgets the active progress if it is the one whose counter is `counter`.
pub(crate) fn clear_active(counter: &Arc<AtomicU64>) {
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    if active
        .as_ref()
        .is_some_and(|a| Arc::ptr_eq(&a.counter, counter))
    {
        *active = None;
    }
}

/// What rerunning `tool` does with the work already done.
fn resume_hint(tool: &str) -> &'static str {
    match tool {
        "ferry-export" => {
            "blobs already written are kept: rerun the same command to resume"
        }
        "ferry-push" => {
            "blobs and chunks already in the registry are not sent again: rerun the same command to resume"
        }
        _ => "nothing was left half-done: rerun the same command to start again",
    }
}

/// The line printed on Ctrl-C.
pub(crate) fn message(tool: &str, progress: Option<&ActiveProgress>) -> String {
    let done = match progress {
        Some(p) => format!(
            " during {}, after {} of {}",
            p.label,
            human::bytes(p.counter.load(Ordering::Relaxed).min(p.total)),
            human::bytes(p.total)
        ),
        None => String::new(),
    };
    format!("{tool}: interrupted (Ctrl-C){done}; {}", resume_hint(tool))
}

/// Installs the Ctrl-C handler for `tool` (once per process; later calls do nothing).
pub fn install(tool: &'static str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // If a handler cannot be installed, Ctrl-C keeps its default effect
        // (exit by signal, which the store survives); nothing else to do.
        let _ = ctrlc::set_handler(move || on_interrupt(tool));
    });
}

fn on_interrupt(tool: &str) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        return; // a second Ctrl-C while the first is being handled
    }
    let progress = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(p) = &progress {
        if let Some(stop) = &p.stop {
            stop.store(true, Ordering::SeqCst);
            let (lock, cvar) = &*p.drawn;
            let drawn = lock.lock().unwrap_or_else(|e| e.into_inner());
            let _ = cvar.wait_timeout_while(drawn, BAR_FINISH_WAIT, |d| !*d);
        }
    }
    eprintln!("{}", message(tool, progress.as_ref()));
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_says_how_far_and_how_to_resume() {
        let p = ActiveProgress {
            label: "export".into(),
            total: 4 << 20,
            counter: Arc::new(AtomicU64::new(1 << 20)),
            stop: None,
            drawn: Arc::default(),
        };
        assert_eq!(
            message("ferry-export", Some(&p)),
            "ferry-export: interrupted (Ctrl-C) during export, after 1.0 MiB of 4.0 MiB; \
             blobs already written are kept: rerun the same command to resume"
        );
        assert!(message("ferry-verify", None).starts_with("ferry-verify: interrupted (Ctrl-C); "));
    }
}
