//! ferry-mirror-config as a library: only its command-line definition
//! ([`cli::Cli`]), for the umbrella `ferry` (shell completions, man pages). The
//! work is in `main.rs` and `ferry_cli::mirror_config`.

pub mod cli;
