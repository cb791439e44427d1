//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same target bodies the cargo-fuzz binaries run (`fuzz/src/targets.rs`), so CI
//! checks on stable Rust, without cargo-fuzz, that no known input panics.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no corpus files", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        let outcome = std::panic::catch_unwind(|| targets::run(target, &data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} panicked on {}",
            file.display()
        );
    }
    eprintln!("{target}: replayed {} corpus files", files.len());
}

#[test]
fn package_corpus() {
    replay("package");
}

#[test]
fn reference_corpus() {
    replay("reference");
}

#[test]
fn challenge_corpus() {
    replay("challenge");
}

#[test]
fn manifest_corpus() {
    replay("manifest");
}

#[test]
fn every_target_has_a_corpus() {
    for target in targets::TARGETS {
        assert!(corpus_dir(target).is_dir(), "no corpus for {target}");
    }
}
