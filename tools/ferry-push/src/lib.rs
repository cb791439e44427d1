//! ferry-push as a library: only its command-line definition ([`cli::Cli`]),
//! for the umbrella `ferry` (shell completions, man pages). The work is in `main.rs`
//! and the `shared/` crates.

pub mod cli;
