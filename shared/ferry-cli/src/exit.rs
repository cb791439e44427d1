//! Exit codes and the top-level error printer.

use std::process::ExitCode;

/// How a successful run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is fine (exit 0).
    Clean,
    /// The tool ran and found problems or differences (exit 1).
    Findings,
}

/// Exit code text shared by every tool's `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  0  success (nothing to report)\n  1  findings (corruption, differences)\n  2  error (bad input, unreadable path, not enough space, unreachable registry)";

/// Runs a tool body: `Ok(Clean)` → 0, `Ok(Findings)` → 1, `Err` → message on stderr and 2.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<Outcome>) -> ExitCode {
    match body() {
        Ok(Outcome::Clean) => ExitCode::from(0),
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{tool}: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
