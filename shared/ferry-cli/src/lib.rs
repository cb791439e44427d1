//! ferry-cli: what every ferry binary shares, and nothing else.
//!
//! Owns the exit-code convention (0 ok, 1 findings, 2 error), the top-level
//! error printer, Ctrl-C and closed-pipe handling, paste-safe help,
//! byte/rate formatting, the TTY progress bar, JSON output and
//! argument groups common to several tools. It contains no tool logic.

pub mod args;
pub mod exit;
pub mod help;
pub mod human;
pub mod interrupt;
#[cfg(feature = "registry")]
pub mod mirror_config;
pub mod progress;
#[cfg(feature = "registry")]
pub mod registry_args;

pub use exit::{run, Outcome};
pub use help::{parse, ToolHelp};

/// What every tool's `--version` prints after its name: the workspace version and
/// the git commit it was built from (`0.1.0 (1a2b3c4)`, `-dirty` when built with
/// uncommitted changes, `unknown` when built outside a git checkout); see `build.rs`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FERRY_GIT_COMMIT"),
    ")"
);
