//! Exit codes, the top-level error printer, and what every tool does before
//! its body runs: the Ctrl-C handler ([`crate::interrupt`]) and a quiet exit
//! when stdout is a closed pipe.

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

/// An error about `path`: `message` prefixed with the path, unless the
/// message already names it (typed errors often do), so that no error reads
/// `README.md: README.md is not an image package`.
pub fn about(path: &std::path::Path, message: impl std::fmt::Display) -> anyhow::Error {
    let message = message.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        anyhow::anyhow!(message)
    } else {
        anyhow::anyhow!("{shown}: {message}")
    }
}

/// True for the panic `print!`/`println!` raise when stdout is a pipe whose
/// reader has gone (`ferry-verify --json S | head -c 10`): EPIPE, as Rust
/// ignores SIGPIPE.
fn is_stdout_broken_pipe(message: &str) -> bool {
    let epipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
    message.starts_with("failed printing to stdout") && message.ends_with(&epipe)
}

/// Makes writing to a closed stdout pipe a clean, silent exit (0, like
/// ripgrep: the reader took what it wanted) in every thread, however the
/// tool prints; any other panic is reported as usual.
pub fn exit_quietly_on_closed_stdout() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if is_stdout_broken_pipe(message) {
                std::process::exit(0);
            }
            default(info)
        }));
    });
}

/// Runs a tool body: `Ok(Clean)` → 0, `Ok(Findings)` → 1, `Err` → message on
/// stderr and 2; Ctrl-C → a resume hint and 130; a closed stdout pipe → 0.
pub fn run(tool: &'static str, body: impl FnOnce() -> anyhow::Result<Outcome>) -> ExitCode {
    exit_quietly_on_closed_stdout();
    crate::interrupt::install(tool);
    match body() {
        Ok(Outcome::Clean) => ExitCode::from(0),
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{tool}: error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
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

    #[test]
    fn about_names_the_path_once() {
        let p = std::path::Path::new("README.md");
        assert_eq!(
            about(p, "README.md is not an image package").to_string(),
            "README.md is not an image package"
        );
        assert_eq!(
            about(p, "permission denied").to_string(),
            "README.md: permission denied"
        );
    }

    #[test]
    fn only_a_closed_stdout_counts_as_a_broken_pipe() {
        let epipe = std::io::Error::from_raw_os_error(libc::EPIPE);
        assert!(is_stdout_broken_pipe(&format!(
            "failed printing to stdout: {epipe}"
        )));
        assert!(!is_stdout_broken_pipe(&format!(
            "failed printing to stderr: {epipe}"
        )));
        let other = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(!is_stdout_broken_pipe(&format!(
            "failed printing to stdout: {other}"
        )));
    }
}
