//! ferry-pack as a library: only its command-line definition ([`cli::Cli`]),
//! for the umbrella `ferry` (shell completions, man pages). The work is in `main.rs`
//! and the `shared/` crates (`ferry-gather`, `ferry_package::pack`).

pub mod cli;
