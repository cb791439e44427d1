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
pub mod progress;
pub mod registry_args;

pub use exit::{run, Outcome};
pub use help::{parse, ToolHelp};
