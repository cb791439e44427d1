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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_skips_repeated_causes() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io).context("writing blob X: disk on fire");
        assert_eq!(error_chain(&e), "writing blob X: disk on fire");
        let e = anyhow::Error::new(std::io::Error::other("denied")).context("cannot create /x");
        assert_eq!(error_chain(&e), "cannot create /x: denied");
    }
}

/// Exit code text shared by every tool's `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  0  success (nothing to report)\n  1  findings (corruption, differences)\n  2  error (bad input, unreadable path, not enough space, unreachable registry)";

/// The error and its causes, skipping causes whose text the message already
/// contains (ferry's typed errors include their cause in their own message).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Runs a tool body: `Ok(Clean)` → 0, `Ok(Findings)` → 1, `Err` → message on stderr and 2.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<Outcome>) -> ExitCode {
    match body() {
        Ok(Outcome::Clean) => ExitCode::from(0),
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{tool}: error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}
